"""Download one YouTube video with yt-dlp's Python API: video, original-language captions, info JSON.

One video, one call: `download_video(ref, raw_dir, cfg)`. The ref is an ID (one ``extract_info`` with
``process=False``, then the metadata filters, then ``process_ie_result(download=True)``) or an info dict
saved earlier (as ``--load-info-json``: no extraction at all). Failures come back as data in
`DownloadResult`, classified by `errors.classify`; only retryable kinds are retried, with bounded
exponential backoff, and the shared limiter is asked before every request phase.

Files never appear half-written under their final names: yt-dlp writes into ``raw_dir/.tmp-<ID>/``
(``.part`` files, resumable), and only a complete set is moved into place with ``os.replace``, the info
JSON last. The info JSON carries a ``tvts_download`` summary; a video whose summary and files are all
present is complete and is not fetched again.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import ffmpeg
import yt_dlp
from yt_dlp.utils import YoutubeDLError

from tvts_data.download.errors import (
    DurationMismatch,
    ErrorKind,
    FragmentMissing,
    MetadataRejected,
    classify,
    redact,
    redact_mapping,
    retry_after_s,
    secret_values,
)
from tvts_data.download.ids import VIDEO_ID, BadVideoRef, parse_video_ref
from tvts_data.download.ratelimit import RequestLimiter

log = logging.getLogger(__name__)

SUMMARY_KEY = "tvts_download"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")  # info dicts of other sites: a safe file stem
_LIVE_STATUSES = ("is_live", "is_upcoming", "post_live")
_CAPTION_FAILURE = "Unable to download video subtitles"  # yt-dlp's text when the caption fetch failed
# Keys our contract depends on (temp folder then rename, resume, our logger): not overridable.
PROTECTED_YTDLP_OPTS = frozenset({"outtmpl", "paths", "logger", "overwrites", "continuedl", "ignoreerrors",
                                  "writesubtitles", "writeautomaticsub", "subtitleslangs", "noplaylist",
                                  "skip_unavailable_fragments"})


@dataclass(frozen=True)
class DownloadConfig:
    max_height: int = 360  # cap of the format selector; frames are resized later anyway
    format: str | None = None  # a yt-dlp format selector; None: `format_selector(max_height)`
    caption_formats: tuple[str, ...] = ("json3", "srv3", "vtt")  # preference order; all carry word timing
    languages: tuple[str, ...] = ("en",)  # spoken/caption languages kept; empty = any
    allow_translated_captions: bool = False  # machine-translated tracks have no word timing
    max_duration_s: float | None = None  # longer videos are refused from metadata ("too_long")
    skip_live: bool = True  # live streams, premieres and just-ended streams ("live")
    cookies_file: str | None = field(default=None, repr=False)  # Netscape cookies.txt; copied privately
    proxy: str | None = field(default=None, repr=False)  # may hold user:pass@, never logged
    sleep_interval_requests: float | None = None  # yt-dlp's pause between extraction requests
    sleep_interval_subtitles: float | None = None  # yt-dlp's pause before each caption request
    ratelimit_bytes: int | None = None  # bytes/s cap per download
    retries: int = 5  # extra attempts for retryable kinds (attempts <= retries + 1)
    backoff_base_s: float = 1.0  # first retry waits this long, doubling per retry
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 600.0  # a server's Retry-After (429/503) is honoured up to this
    jitter: bool = True  # spread retries of many workers (equal jitter: delay/2 + U(0, delay/2))
    requests_per_s: float | None = None  # global request rate over all workers (see ratelimit.py)
    requests_burst: int = 1
    socket_timeout_s: float = 30.0
    fragment_retries: int = 10  # yt-dlp's retries of one HLS/DASH fragment; a fragment is never skipped
    duration_tolerance_s: float = 2.0  # downloaded stream vs metadata duration (and 2% of it), else an error
    extra_ytdlp_opts: dict[str, Any] = field(default_factory=dict)  # merged last into YoutubeDL params
    enable_file_urls: bool = False  # file:// format URLs (tests)
    # Set by the runner from asr.mode=captions: a video without usable captions is not downloaded at all
    # (it could give no transcript), it ends as no_captions / translated_captions.
    require_captions: bool = False
    delete_raw_after_frames: bool = False  # the runner deletes raw files once frames are written
    concurrent_downloads: int = 8  # per worker: downloads overlap their network waits (bench-download)

    def __post_init__(self) -> None:
        clash = sorted(PROTECTED_YTDLP_OPTS & set(self.extra_ytdlp_opts))
        if clash:
            raise ValueError(f"download.extra_ytdlp_opts may not set {clash}: the download unit owns them "
                             "(files go to a temporary folder and are renamed when complete)")


@dataclass(frozen=True)
class DownloadResult:
    video_id: str
    status: str  # "ok" | "error"
    error_kind: str | None  # errors.FINAL_KINDS | RETRYABLE_KINDS; None when ok
    retryable: bool
    message: str  # the original error, or a note ("no captions ...") when ok; secrets redacted
    attempts: int  # 0: already complete in raw_dir
    bytes: int  # size of the files in place
    seconds: float
    video_path: str | None = None
    caption_path: str | None = None  # None: no usable captions (the runner may fall back to ASR)
    caption_language: str | None = None
    caption_translated: bool = False
    info_path: str | None = None


@dataclass(frozen=True)
class CaptionChoice:
    key: str  # track key in the info dict ("en-orig", "en")
    language: str  # base language in the file name ("en")
    ext: str  # "json3" | "srv3" | "vtt" ...
    automatic: bool  # an auto-caption track (word timing) rather than an uploaded one
    translated: bool
    source_language: str | None = None  # what a translated track was translated from

    def file_name(self, video_id: str) -> str:
        """``ID.en.json3``; a translation is named as yt-dlp names them, ``ID.<to>-<from>.<ext>``
        (``ID.en-de.json3``), which is how the caption parser recognises it."""
        label = f"{self.language}-{self.source_language or 'und'}" if self.translated else self.language
        return f"{video_id}.{label}.{self.ext}"


def format_selector(max_height: int) -> str:
    """H.264 first (every decoder reads it); a single muxed file before a merge (one request, no
    ffmpeg), then any codec, then anything at all rather than nothing."""
    h = f"[height<={max_height}]"
    return "/".join([
        f"b{h}[vcodec^=avc1]", f"bv{h}[vcodec^=avc1]+ba[ext=m4a]", f"bv{h}[vcodec^=avc1]+ba",
        f"b{h}", f"bv{h}+ba", "b", "bv*+ba",
    ])


def _base(lang: str) -> str:
    return lang.lower().removesuffix("-orig").split("-")[0]


def spoken_language(info: dict[str, Any]) -> str | None:
    """The video's language: that of its ``-orig`` auto-caption track (what YouTube's ASR heard), else
    the metadata's ``language``."""
    for key in info.get("automatic_captions") or {}:
        if key.endswith("-orig"):
            return key.removesuffix("-orig")
    lang = info.get("language")
    return lang if isinstance(lang, str) and lang else None


def is_translated(key: str, tracks: list[dict[str, Any]], info: dict[str, Any]) -> bool:
    """Whether an auto-caption track is a machine translation of another language."""
    if key.endswith("-orig"):
        return False
    # YouTube serves every translation with a tlang= query parameter and never the original with one.
    if any("tlang=" in urlsplit(t.get("url") or "").query for t in tracks):
        return True
    spoken = spoken_language(info)
    return spoken is not None and _base(spoken) != _base(key)


def check_metadata(info: dict[str, Any], cfg: DownloadConfig) -> None:
    """Raise `MetadataRejected` for a video the config refuses, before any video byte is fetched."""
    vid = info.get("id")
    status = info.get("live_status")
    if cfg.skip_live and (info.get("is_live") or status in _LIVE_STATUSES):
        raise MetadataRejected("live", f"video {vid}: live_status={status or 'is_live'}; live streams and "
                                       "premieres are skipped (download.skip_live=false keeps them)")
    duration = info.get("duration")
    if cfg.max_duration_s and isinstance(duration, (int, float)) and duration > cfg.max_duration_s:
        raise MetadataRejected("too_long", f"video {vid}: {duration:.0f} s is longer than "
                                           f"download.max_duration_s={cfg.max_duration_s:g}")
    lang = spoken_language(info)
    wanted = {_base(x) for x in cfg.languages}
    if wanted and lang and _base(lang) not in wanted:
        raise MetadataRejected("language", f"video {vid}: spoken language {lang!r} is not in "
                                           f"download.languages={list(cfg.languages)}")


def _candidates(lang: str, auto: dict[str, Any], manual: dict[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """Caption tracks for one language, best first: the original auto track (word timing), the plain
    auto track, regional auto tracks, then uploaded captions (segment timing only)."""
    yield f"{lang}-orig", auto.get(f"{lang}-orig"), True
    yield lang, auto.get(lang), True
    for key in sorted(k for k in auto if _base(k) == lang and k not in (lang, f"{lang}-orig")):
        yield key, auto[key], True
    yield lang, manual.get(lang), False
    for key in sorted(k for k in manual if _base(k) == lang and k != lang):
        yield key, manual[key], False


def _pick_format(tracks: list[dict[str, Any]], formats: tuple[str, ...]) -> str | None:
    exts = {t.get("ext") for t in tracks if t.get("url") or t.get("data")}
    return next((f for f in formats if f in exts), None)


def choose_caption_track(info: dict[str, Any], cfg: DownloadConfig) -> tuple[CaptionChoice | None, str]:
    """The caption track to fetch, or None with a note saying why there is none."""
    auto, manual = info.get("automatic_captions") or {}, info.get("subtitles") or {}
    spoken = spoken_language(info)
    langs = [_base(x) for x in cfg.languages] or ([_base(spoken)] if spoken else [])
    refused: list[str] = []
    for lang in langs:
        for key, tracks, automatic in _candidates(lang, auto, manual):
            ext = _pick_format(tracks or [], cfg.caption_formats)
            if ext is None:
                continue
            translated = is_translated(key, tracks, info)
            if translated and not cfg.allow_translated_captions:
                refused.append(key)
                continue
            source = _base(spoken) if (translated and spoken) else None
            return CaptionChoice(key, lang, ext, automatic, translated, source), ""
    if refused:
        return None, (f"no original-language captions: machine-translated track(s) {refused} refused "
                      "(no word timing; download.allow_translated_captions=true keeps them)")
    if auto or manual:
        keys = sorted(set(auto) | set(manual))
        return None, (f"no captions in {langs or 'any language'} as {list(cfg.caption_formats)}; "
                      f"the video has {keys[:8]}{' ...' if len(keys) > 8 else ''}")
    return None, "no captions: the video has no caption tracks"


class _YtdlpLog:
    """yt-dlp's logger interface onto `logging`, with secrets masked."""

    def __init__(self, video_id: str, secrets: tuple[str, ...]):
        self.video_id, self.secrets = video_id, secrets

    def _emit(self, level: int, msg: str) -> None:
        if log.isEnabledFor(level):
            log.log(level, "%s: %s", self.video_id, redact(str(msg), self.secrets))

    def debug(self, msg: str) -> None:
        self._emit(logging.DEBUG, msg)

    def info(self, msg: str) -> None:
        self._emit(logging.DEBUG, msg)

    def warning(self, msg: str) -> None:
        self._emit(logging.WARNING, msg)

    def error(self, msg: str) -> None:
        self._emit(logging.DEBUG, msg)  # raised as DownloadError and reported once, in the result


def secrets_of(cfg: DownloadConfig) -> tuple[str, ...]:
    """Strings that must never reach a log or a result message: proxy credentials, and every value
    under a password-, token-, cookie- or auth-like key of the extra yt-dlp options (headers included)."""
    found = secret_values(cfg.extra_ytdlp_opts)
    if cfg.proxy:
        parts = urlsplit(cfg.proxy if "://" in cfg.proxy else f"http://{cfg.proxy}")
        found += [s for s in (parts.password, parts.username) if s]
    return tuple(dict.fromkeys(found))


@contextlib.contextmanager
def _private_cookies(cfg: DownloadConfig, folder: Path) -> Iterator[str | None]:
    """A private copy of the cookies file: yt-dlp writes cookies back on close, and many workers
    rewriting the user's one file at once would corrupt it. It lives in the video's temporary folder
    under the corpus (named ``.tmp-*``: a killed run's copy is removed by the next run)."""
    if not cfg.cookies_file:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=".tmp-cookies-", suffix=".txt", dir=folder)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as dst, open(cfg.cookies_file, "rb") as src:
            shutil.copyfileobj(src, dst)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def ytdlp_options(cfg: DownloadConfig, tmp_dir: Path, logger: _YtdlpLog, cookies: str | None,
                  choice: CaptionChoice | None = None) -> dict[str, Any]:
    """YoutubeDL params. yt-dlp's own retries are off: attempts are counted, limited and backed off here."""
    opts: dict[str, Any] = {
        "format": cfg.format or format_selector(cfg.max_height),
        "merge_output_format": "mp4",
        "outtmpl": {"default": str(tmp_dir / "%(id)s.%(ext)s")},
        "overwrites": False, "continuedl": True,  # keep complete files and resume .part after a kill
        "noplaylist": True, "ignoreerrors": False,
        "quiet": True, "noprogress": True, "color": "no_color", "logger": logger,
        "retries": 0, "extractor_retries": 0,
        # A fragmented (HLS/DASH) download retries each fragment and never merges without one: yt-dlp's
        # default skips a fragment that keeps failing and publishes a video with a hole.
        "fragment_retries": cfg.fragment_retries, "skip_unavailable_fragments": False,
        "socket_timeout": cfg.socket_timeout_s,
        "enable_file_urls": cfg.enable_file_urls,
        "writesubtitles": bool(choice and not choice.automatic),
        "writeautomaticsub": bool(choice and choice.automatic),
        "subtitleslangs": [re.escape(choice.key)] if choice else [],
        "subtitlesformat": choice.ext if choice else "best",
    }
    optional = {"cookiefile": cookies, "proxy": cfg.proxy, "ratelimit": cfg.ratelimit_bytes,
                "sleep_interval_requests": cfg.sleep_interval_requests,
                "sleep_interval_subtitles": cfg.sleep_interval_subtitles}
    opts.update({k: v for k, v in optional.items() if v is not None})
    opts.update(cfg.extra_ytdlp_opts)
    return opts


@dataclass
class _Job:
    video_id: str
    url: str  # for (re-)extraction
    info: dict[str, Any] | None  # extracted or given; reused across attempts (saves API requests)
    can_extract: bool = True  # an ID/URL input may be extracted again; a saved info dict may not
    fragmented: bool = False  # yt-dlp reported fragment progress: an HLS/DASH download
    skip_captions: bool = False  # set when the chosen caption track failed for good
    note: str = ""  # said in the result of an ok download


def _job_for(ref: str | dict[str, Any]) -> _Job:
    if isinstance(ref, dict):
        vid = str(ref.get("id") or "")
        if not _SAFE_ID.match(vid):
            raise BadVideoRef(str(vid), "the info dict id is not a usable video id (letters, digits, _ - .)")
        info = {k: v for k, v in ref.items() if not k.startswith("__")}  # e.g. __info_path
        info.pop(SUMMARY_KEY, None)
        url = info.get("webpage_url") or (f"https://www.youtube.com/watch?v={vid}" if VIDEO_ID.match(vid) else vid)
        return _Job(vid, url, info, can_extract=False)
    vid = parse_video_ref(ref)
    return _Job(vid, f"https://www.youtube.com/watch?v={vid}", None)


def completed_download(raw_dir: Path, video_id: str) -> dict[str, Any] | None:
    """The ``tvts_download`` summary of a video already complete in raw_dir, else None."""
    info_path = raw_dir / f"{video_id}.info.json"
    try:
        summary = json.loads(info_path.read_text(encoding="utf-8")).get(SUMMARY_KEY)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):  # absent or not ours
        return None
    if not isinstance(summary, dict) or not summary.get("video"):
        return None
    files = [summary["video"], summary.get("caption")]
    return summary if all((raw_dir / f).is_file() for f in files if f) else None


class _LimitedYoutubeDL(yt_dlp.YoutubeDL):
    """YoutubeDL whose every HTTP request (extraction pages, caption files, each HLS/DASH fragment)
    first takes a token from the job-wide limiter: the rate holds per request, not per video."""

    def __init__(self, params: dict[str, Any], limiter: RequestLimiter | None) -> None:
        super().__init__(params)
        self._limiter = limiter

    def urlopen(self, req: Any) -> Any:
        if self._limiter is not None:
            self._limiter.acquire()
        return super().urlopen(req)


def _run_ytdlp(job: _Job, tmp_dir: Path, cfg: DownloadConfig, limiter: RequestLimiter | None,
               logger: _YtdlpLog) -> tuple[dict[str, Any], CaptionChoice | None, str]:
    """One attempt: extract if needed, filter, then let yt-dlp fetch captions and video into tmp_dir."""
    with _private_cookies(cfg, tmp_dir) as cookies:
        if job.info is None:
            with _LimitedYoutubeDL(ytdlp_options(cfg, tmp_dir, logger, cookies), limiter) as ydl:
                job.info = ydl.extract_info(job.url, download=False, process=False)
        check_metadata(job.info, cfg)
        choice, note = (None, job.note) if job.skip_captions else choose_caption_track(job.info, cfg)
        if choice is None and cfg.require_captions:
            kind = "translated_captions" if "machine-translated" in note else "no_captions"
            raise MetadataRejected(kind, f"video {job.video_id}: {note}; asr.mode=captions needs captions, so the "
                                         "video is not downloaded (asr.mode=captions_then_asr transcribes it)")
        opts = ytdlp_options(cfg, tmp_dir, logger, cookies, choice)
        opts["progress_hooks"] = [lambda d: _note_fragments(job, d)]
        with _LimitedYoutubeDL(opts, limiter) as ydl:
            try:
                # A deep copy: yt-dlp mutates the dict, and a retry must start from the pristine one.
                result = ydl.process_ie_result(copy.deepcopy(job.info), download=True)
            except YoutubeDLError as exc:
                kind = classify(exc)
                if job.fragmented and kind.kind == "unavailable":  # one piece of a video that exists
                    raise FragmentMissing(f"a fragment failed after {cfg.fragment_retries} retries "
                                          f"({kind.message}); never merged without it") from None
                raise
            return result, choice, note


def _note_fragments(job: _Job, progress: dict[str, Any]) -> None:
    """yt-dlp's progress hook: fragment indices mean an HLS/DASH download (remembered across attempts,
    since a resumed attempt may fail before it reports progress)."""
    if "fragment_index" in progress:
        job.fragmented = True


def _downloaded_paths(result: dict[str, Any], choice: CaptionChoice | None) -> tuple[Path, Path | None]:
    downloads = result.get("requested_downloads") or [result]
    video = Path(downloads[0].get("filepath") or downloads[0]["_filename"])
    subs = downloads[0].get("requested_subtitles") or result.get("requested_subtitles") or {}
    caption = subs.get(choice.key, {}).get("filepath") if choice else None
    return video, Path(caption) if caption else None


def check_duration(path: Path, expected: Any, cfg: DownloadConfig) -> None:
    """Raise :class:`DurationMismatch` when the file's video stream and the metadata's duration differ
    by more than the tolerance (a lost fragment, a cut transfer that still merged)."""
    if not isinstance(expected, (int, float)) or expected <= 0:
        return  # the metadata says nothing to check against
    try:
        probe = ffmpeg.probe(str(path))
    except ffmpeg.Error as exc:
        raise DurationMismatch(f"{path.name}: ffprobe cannot read the downloaded file: "
                               f"{(exc.stderr or b'').decode(errors='replace').strip()[-300:]}") from exc
    streams = [s for s in probe.get("streams", []) if s.get("codec_type") == "video"]
    got = float((streams[0].get("duration") if streams else None) or probe.get("format", {}).get("duration") or 0)
    tolerance = max(cfg.duration_tolerance_s, 0.02 * expected)
    if abs(got - expected) > tolerance:
        raise DurationMismatch(f"downloaded video lasts {got:.1f} s but the metadata says {expected:.1f} s "
                               f"(tolerance {tolerance:.1f} s): a part is missing; not published")


def _publish(job: _Job, result: dict[str, Any], choice: CaptionChoice | None, note: str,
             tmp_dir: Path, raw_dir: Path, cfg: DownloadConfig) -> dict[str, Any]:
    """Move a complete download into place, info JSON last (its presence marks the video complete)."""
    video_src, caption_src = _downloaded_paths(result, choice)
    if not video_src.is_file():
        raise OSError(f"yt-dlp reported {video_src} but it is not there")
    check_duration(video_src, result.get("duration"), cfg)
    summary = {
        "video": f"{job.video_id}{video_src.suffix}",
        "caption": choice.file_name(job.video_id) if (choice and caption_src) else None,
        "caption_track": choice.key if (choice and caption_src) else None,
        "caption_language": choice.language if (choice and caption_src) else None,
        "caption_translated": bool(choice and caption_src and choice.translated),
        "note": note,
    }
    info = _info_json(result)
    info[SUMMARY_KEY] = summary
    info_tmp = tmp_dir / f"{job.video_id}.info.json.tmp"
    info_tmp.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    if caption_src is not None:
        os.replace(caption_src, raw_dir / summary["caption"])
    os.replace(video_src, raw_dir / summary["video"])
    os.replace(info_tmp, raw_dir / f"{job.video_id}.info.json")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return summary


def _scrub_cookies(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub_cookies(v) for k, v in obj.items() if k.lower() not in ("cookies", "cookie")}
    if isinstance(obj, list):
        return [_scrub_cookies(v) for v in obj]
    return obj


def _info_json(result: dict[str, Any]) -> dict[str, Any]:
    """The info dict as yt-dlp writes it to .info.json (no file paths, no private keys), without the
    cookies yt-dlp attaches to formats and without any secret-looking header or option value (the
    user's Authorization header is copied into every format's http_headers): the file may be shared."""
    return redact_mapping(_scrub_cookies(yt_dlp.YoutubeDL.sanitize_info(dict(result), remove_private_keys=True)))


def backoff_delay(attempt: int, cfg: DownloadConfig, rng: random.Random) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential, capped, optionally jittered."""
    delay = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2) if cfg.jitter else delay


def _ok(job_id: str, summary: dict[str, Any], raw_dir: Path, attempts: int, start: float,
        message: str) -> DownloadResult:
    files = [raw_dir / summary["video"], raw_dir / f"{job_id}.info.json"]
    caption = raw_dir / summary["caption"] if summary.get("caption") else None
    size = sum(p.stat().st_size for p in files + ([caption] if caption else []))
    return DownloadResult(
        video_id=job_id, status="ok", error_kind=None, retryable=False, message=message,
        attempts=attempts, bytes=size, seconds=time.monotonic() - start,
        video_path=str(files[0]), caption_path=str(caption) if caption else None,
        caption_language=summary.get("caption_language"),
        caption_translated=bool(summary.get("caption_translated")), info_path=str(files[1]))


def _error(video_id: str, kind: ErrorKind, attempts: int, start: float) -> DownloadResult:
    return DownloadResult(video_id=video_id, status="error", error_kind=kind.kind, retryable=kind.retryable,
                          message=kind.message, attempts=attempts, bytes=0, seconds=time.monotonic() - start)


def _ref_label(ref: str | dict[str, Any]) -> str:
    return str(ref.get("id") if isinstance(ref, dict) else ref).strip()[:64]


def download_video(ref: str | dict[str, Any], raw_dir: str | Path, cfg: DownloadConfig,
                   limiter: RequestLimiter | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> DownloadResult:
    """Fetch one video into raw_dir (see the module docstring); never raises for a bad video."""
    start = time.monotonic()
    raw_dir = Path(raw_dir)
    try:
        job = _job_for(ref)
    except BadVideoRef as exc:
        return _error(_ref_label(ref), ErrorKind("bad_ref", False, str(exc)), 0, start)
    done = completed_download(raw_dir, job.video_id)
    if done is not None:
        return _ok(job.video_id, done, raw_dir, 0, start, "already downloaded")
    raw_dir.mkdir(parents=True, exist_ok=True)
    return _attempts(job, raw_dir, cfg, limiter, sleep, start)


def _attempts(job: _Job, raw_dir: Path, cfg: DownloadConfig, limiter: RequestLimiter | None,
              sleep: Callable[[float], None], start: float) -> DownloadResult:
    """Attempt until ok, a final kind, or ``cfg.retries`` retries of retryable kinds."""
    secrets = secrets_of(cfg)
    logger, tmp_dir, rng = _YtdlpLog(job.video_id, secrets), raw_dir / f".tmp-{job.video_id}", random.Random()
    attempt, retries_left = 0, cfg.retries
    while True:
        attempt += 1
        try:
            result, choice, note = _run_ytdlp(job, tmp_dir, cfg, limiter, logger)
            summary = _publish(job, result, choice, note, tmp_dir, raw_dir, cfg)
            return _ok(job.video_id, summary, raw_dir, attempt, start, note)
        except (YoutubeDLError, MetadataRejected, OSError) as exc:  # every failure becomes a kind
            kind = classify(exc, secrets)
            caption_failed = _CAPTION_FAILURE in str(exc)
            asked = retry_after_s(exc)
        if kind.kind == "forbidden" and not job.can_extract:
            # A saved info dict's signed URLs expired: only a new extraction would help, and the input (an
            # .info.json) asked for no contact with the site beyond its own URLs. Say so; do not retry.
            kind = ErrorKind("expired_url", False, f"{kind.message}: the saved info JSON's signed URLs no longer "
                             "work (they expire after hours); download this video again by its ID")
        if caption_failed and not kind.retryable and not job.skip_captions:
            # A caption track that is gone for good must not cost the video: fetch it without captions
            # (the runner can fall back to ASR) and say so in the result.
            job.skip_captions = True
            job.note = f"captions not downloadable ({kind.kind}: {kind.message}); downloaded without them"
            continue
        if not kind.retryable or retries_left <= 0:
            break
        retries_left -= 1
        if kind.kind == "forbidden":
            job.info = None  # expired signed URLs of an ID input: extract fresh ones next time
        delay = backoff_delay(cfg.retries - retries_left, cfg, rng)
        if asked is not None and kind.kind in ("rate_limited", "server_error"):
            delay = max(delay, min(asked, cfg.retry_after_max_s))  # the server said when; never sooner
        log.info("%s: %s (%s), retry %d/%d in %.1f s", job.video_id, kind.kind, kind.message,
                 cfg.retries - retries_left, cfg.retries, delay)
        sleep(delay)
    if not kind.retryable:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # final: nothing to resume
    log.info("%s: %s after %d attempt(s): %s", job.video_id, kind.kind, attempt, kind.message)
    return _error(job.video_id, kind, attempt, start)
