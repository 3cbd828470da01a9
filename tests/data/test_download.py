"""Download unit tests through yt-dlp's real code path, without the internet.

YouTube-shaped info dicts point at a loopback HTTP server (tests/data/loopback.py) that serves a
fixture MP4 and captions and misbehaves on purpose per path (429, 404, cut bodies, stalls, slow
bodies). `download_video(info)` hands them to ``process_ie_result(download=True)``, so format choice,
caption fetch, resume and error reporting are yt-dlp's own.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ffmpeg
import pytest
import yt_dlp
from yt_dlp.networking import Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError, ExtractorError

from tvts_data.download import (
    BadVideoRef,
    DownloadConfig,
    LocalLimiter,
    RayLimiter,
    choose_caption_track,
    classify,
    download_video,
    make_limiter,
    parse_video_ref,
    read_id_list,
    read_info_json_dir,
)

sys.path.insert(0, str(Path(__file__).parent))  # loopback.py sits beside this file, not in a package
from loopback import LoopbackServer, Rule  # noqa: E402

VID = "dQw4w9WgXcQ"
JSON3 = json.dumps({"events": [
    {"tStartMs": 0, "dDurationMs": 3000, "id": 1},
    {"tStartMs": 100, "dDurationMs": 2500, "wWinId": 1,
     "segs": [{"utf8": "hello"}, {"utf8": " tiny", "tOffsetMs": 600}, {"utf8": " world", "tOffsetMs": 1200}]},
]}).encode()
VTT = b"WEBVTT\nKind: captions\nLanguage: en\n\n00:00:00.100 --> 00:00:02.600\nhello<00:00:00.700><c> tiny</c>\n"
FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05, socket_timeout_s=1.0)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fixture_mp4(tmp_path_factory) -> bytes:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    out = tmp_path_factory.mktemp("media") / "fx.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=10", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "3",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", "-movflags", "+faststart", str(out)], check=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as srv:
        yield srv


def youtube_info(srv: LoopbackServer, name: str, video: bytes, *, vid: str = VID,
                 video_rule: Rule | None = None, caption_rule: Rule | None = None,
                 captions: dict[str, list[dict[str, Any]]] | None = None, **extra: Any) -> dict[str, Any]:
    """An info dict shaped like yt-dlp's YouTube extractor output; resources live under /<name>/."""
    v = srv.add(f"/{name}/v.mp4", video, "video/mp4", video_rule)
    c = srv.add(f"/{name}/c.json3", JSON3, "application/json", caption_rule)
    if captions is None:
        captions = {"en-orig": [{"ext": "json3", "url": c}], "en": [{"ext": "json3", "url": c}],
                    "de": [{"ext": "json3", "url": f"{c}?tlang=de"}]}
    return {
        "id": vid, "extractor": "youtube", "extractor_key": "Youtube", "title": "fixture",
        "webpage_url": f"https://www.youtube.com/watch?v={vid}", "duration": 3,
        "formats": [
            {"format_id": "18", "url": v, "ext": "mp4", "protocol": "http", "vcodec": "avc1.42c00d",
             "acodec": "mp4a.40.2", "height": 120, "width": 160},
            {"format_id": "243", "url": srv.url(f"/{name}/never.webm"), "ext": "webm", "protocol": "http",
             "vcodec": "vp9", "acodec": "none", "height": 120, "width": 160},
        ],
        "automatic_captions": captions, **extra,
    }


class CountingLimiter:
    def __init__(self) -> None:
        self.calls = 0

    def acquire(self) -> float:
        self.calls += 1
        return 0.0


def _final_names(raw: Path) -> list[str]:
    return sorted(p.name for p in raw.iterdir() if not p.name.startswith("."))


# --- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", [
    VID, f"  {VID}  ", f"https://www.youtube.com/watch?v={VID}",
    f"https://youtube.com/watch?feature=x&v={VID}&t=42s",
    f"youtube.com/watch?v={VID}", f"https://youtu.be/{VID}?t=10", f"https://www.youtube.com/shorts/{VID}",
    f"https://www.youtube.com/embed/{VID}?start=3", f"https://music.youtube.com/watch?v={VID}&list=RD1",
    f"https://m.youtube.com/watch?v={VID}", f"https://www.youtube-nocookie.com/embed/{VID}",
])
def test_parse_video_ref_normalises_ids_and_urls(ref: str) -> None:
    assert parse_video_ref(ref) == VID


@pytest.mark.parametrize("ref", ["", "abc", "dQw4w9WgXcQX", "dQw4w9WgXc!",
                                 "https://www.youtube.com/playlist?list=PL1",
                                 f"https://vimeo.com/{VID}", "https://youtu.be/short"])
def test_parse_video_ref_refuses_with_a_reason(ref: str) -> None:
    with pytest.raises(BadVideoRef, match="not"):
        parse_video_ref(ref)


def test_read_id_list_txt_keeps_first_and_reports_bad_lines(tmp_path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text(f"# my list\n\n{VID}\nhttps://youtu.be/aaaaaaaaaaa  # a comment\nnot-an-id\n"
                    f"https://www.youtube.com/watch?v={VID}\n")
    ids, bad = read_id_list(path)
    assert ids == [VID, "aaaaaaaaaaa"]
    assert [(b.line, b.text, b.kind) for b in bad] == [(5, "not-an-id", "bad_id"),
                                                       (6, f"https://www.youtube.com/watch?v={VID}", "duplicate")]
    assert "not a YouTube video ID" in bad[0].reason and "already on line 3" in bad[1].reason
    assert "not-an-id" not in bad[0].reason  # the message shows the line once, next to its number


def test_read_id_list_tables(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text(f"title,url\nx,https://youtu.be/{VID}\ny,bad\nz,bbbbbbbbbbb\n")
    (tmp_path / "b.csv").write_text(f"{VID},first\nbbbbbbbbbbb,second\n")  # no header: first column
    (tmp_path / "c.tsv").write_text(f"video_id\tn\n{VID}\t1\n")
    (tmp_path / "d.jsonl").write_text(f'{{"youtube_id": "{VID}"}}\n{{broken\n"bbbbbbbbbbb"\n')
    pq.write_table(pa.table({"n": [1, 2], "id": [VID, VID]}), tmp_path / "e.parquet")
    ids, bad = read_id_list(tmp_path / "a.csv")
    assert ids == [VID, "bbbbbbbbbbb"] and [(b.line, b.text) for b in bad] == [(3, "bad")]
    assert read_id_list(tmp_path / "b.csv") == ([VID, "bbbbbbbbbbb"], [])
    assert read_id_list(tmp_path / "c.tsv") == ([VID], [])
    ids, bad = read_id_list(tmp_path / "d.jsonl")
    assert ids == [VID, "bbbbbbbbbbb"] and bad[0].line == 2
    ids, bad = read_id_list(tmp_path / "e.parquet")
    assert ids == [VID] and [(b.line, b.kind) for b in bad] == [(2, "duplicate")]


def test_read_info_json_dir(tmp_path) -> None:
    (tmp_path / "b.info.json").write_text(json.dumps({"id": "bbbbbbbbbbb", "title": "b"}))
    (tmp_path / "a.info.json").write_text(json.dumps({"id": VID}))
    (tmp_path / "broken.info.json").write_text("{")
    (tmp_path / "other.json").write_text("{}")
    infos = read_info_json_dir(tmp_path)
    assert [i["id"] for i in infos] == [VID, "bbbbbbbbbbb"]
    assert infos[0]["__info_path"].endswith("a.info.json")


# --- error classification -----------------------------------------------------------------------


def _http_error(status: int) -> HTTPError:
    return HTTPError(Response(io.BytesIO(b""), "http://x/", {}, status=status, reason="r"))


def _wrapped(inner: BaseException, outer_message: str) -> DownloadError:
    """A DownloadError as YoutubeDL.trouble raises it: the original in exc_info."""
    return DownloadError(outer_message, (type(inner), inner, None))


@pytest.mark.parametrize("exc, kind, retryable", [
    (_wrapped(_http_error(429), "ERROR: unable to download video data: HTTP Error 429: Too Many Requests"),
     "rate_limited", True),
    (_wrapped(_http_error(503), "ERROR: HTTP Error 503"), "server_error", True),
    (_wrapped(_http_error(404), "ERROR: unable to download video data: HTTP Error 404"), "unavailable", False),
    (DownloadError("ERROR: [youtube] x: Sign in to confirm you\u2019re not a bot. Use --cookies"),
     "bot_check", True),
    (DownloadError("ERROR: [youtube] x: Sign in to confirm your age. This video may be inappropriate"),
     "age_restricted", False),
    (DownloadError("ERROR: [youtube] x: Private video. Sign in if you've been granted access"), "private", False),
    (DownloadError("ERROR: [youtube] x: Video unavailable. This video has been removed by the uploader"),
     "removed", False),
    (DownloadError("ERROR: [youtube] x: Video unavailable"), "unavailable", False),
    (DownloadError("ERROR: [youtube] x: Join this channel to get access to members-only content"),
     "members_only", False),
    (DownloadError("ERROR: [youtube] x: Requested format is not available. Use --list-formats"),
     "no_format", False),
    (DownloadError("ERROR: [youtube] x: This live event will begin in 3 hours."), "live", False),
    (DownloadError("ERROR: \r[download] Got error: 1000 bytes read, 5000 more expected"), "truncated", True),
    (DownloadError("ERROR: \r[download] Got error: The read operation timed out"), "timeout", True),
    (_wrapped(TransportError(cause=ConnectionRefusedError(111, "Connection refused")), "ERROR: x"),
     "connection", True),
    (DownloadError("ERROR: something nobody has seen"), "unknown", False),
])
def test_classify(exc: BaseException, kind: str, retryable: bool) -> None:
    got = classify(exc)
    assert (got.kind, got.retryable) == (kind, retryable), got.message


def test_classify_keeps_the_original_error_not_a_secondary_one() -> None:
    """The bot check is the real failure; the missing temp file came from cleaning up after it."""
    original = ExtractorError("Sign in to confirm you're not a bot", expected=True)
    try:
        try:
            raise original
        except ExtractorError:
            raise FileNotFoundError(2, "No such file or directory", "/raw/x.mp4.part")
    except FileNotFoundError as secondary:
        outer = _wrapped(secondary, "ERROR: unable to rename file: [Errno 2] No such file or directory")
    got = classify(outer)
    assert got.kind == "bot_check" and got.retryable
    assert "not a bot" in got.message and "rename" not in got.message


def test_classify_redacts_proxy_credentials() -> None:
    got = classify(DownloadError("ERROR: Unable to connect to proxy http://bob:hunter2@10.0.0.1:3128"),
                   secrets=("hunter2",))
    assert got.kind == "connection" and "hunter2" not in got.message and "bob" not in got.message


# --- caption choice (pure) ----------------------------------------------------------------------


def test_caption_choice_prefers_original_auto_track_then_format_order() -> None:
    info = {"id": VID, "automatic_captions": {
        "en-orig": [{"ext": "vtt", "url": "u1"}, {"ext": "json3", "url": "u2"}],
        "en": [{"ext": "json3", "url": "u3"}], "fr": [{"ext": "json3", "url": "u4?tlang=fr"}]},
        "subtitles": {"en": [{"ext": "vtt", "url": "u5"}]}}
    choice, note = choose_caption_track(info, DownloadConfig())
    assert (choice.key, choice.ext, choice.automatic, choice.translated) == ("en-orig", "json3", True, False)
    assert choice.file_name(VID) == f"{VID}.en.json3"
    choice, _ = choose_caption_track(info, DownloadConfig(caption_formats=("vtt",)))
    assert (choice.key, choice.ext) == ("en-orig", "vtt")
    no_auto = {**info, "automatic_captions": {}}
    choice, _ = choose_caption_track(no_auto, DownloadConfig(caption_formats=("vtt",)))
    assert (choice.key, choice.automatic) == ("en", False)  # uploaded captions: segment timing only


def test_caption_choice_refuses_translations_unless_allowed() -> None:
    info = {"id": VID, "automatic_captions": {"de-orig": [{"ext": "json3", "url": "a"}],
                                              "en": [{"ext": "json3", "url": "b?tlang=en"}]}}
    choice, note = choose_caption_track(info, DownloadConfig(languages=("en", "de")))
    assert choice.key == "de-orig"  # the original beats a translation even when listed second
    choice, note = choose_caption_track(info, DownloadConfig(languages=("en",)))
    assert choice is None and "translated" in note
    choice, _ = choose_caption_track(info, DownloadConfig(languages=("en",), allow_translated_captions=True))
    assert choice.translated and choice.file_name(VID) == f"{VID}.en-de.json3"  # yt-dlp's <to>-<from>


# --- downloads through yt-dlp -------------------------------------------------------------------


def test_download_info_dict_writes_complete_files_once(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "ok", fixture_mp4)
    limiter = CountingLimiter()
    res = download_video(info, tmp_path, DownloadConfig(**FAST), limiter=limiter)
    assert res.status == "ok", res.message
    assert (res.attempts, res.caption_language, res.caption_translated) == (1, "en", False)
    assert _final_names(tmp_path) == [f"{VID}.en.json3", f"{VID}.info.json", f"{VID}.mp4"]
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())
    assert Path(res.video_path).read_bytes() == fixture_mp4
    assert Path(res.caption_path).read_bytes() == JSON3
    saved = json.loads(Path(res.info_path).read_text())
    assert saved["tvts_download"]["caption_track"] == "en-orig" and saved["format_id"] == "18"
    assert res.bytes == sum(p.stat().st_size for p in tmp_path.iterdir())
    assert server.hits == {**server.hits, "/ok/v.mp4": 1, "/ok/c.json3": 1} and "/ok/never.webm" not in server.hits
    assert limiter.calls == 2  # one token per HTTP request: the caption and the video (no extraction)
    again = download_video(info, tmp_path, DownloadConfig(**FAST), limiter=limiter)
    assert (again.status, again.attempts, again.message) == ("ok", 0, "already downloaded")
    assert (server.hits["/ok/v.mp4"], server.hits["/ok/c.json3"], limiter.calls) == (1, 1, 2)
    assert again.caption_path == res.caption_path and again.bytes == res.bytes


def test_saved_info_json_downloads_again_without_extraction(server, fixture_mp4, tmp_path, monkeypatch) -> None:
    """raw/<ID>.info.json is a valid --load-info-json input: a folder of them re-downloads as is."""
    first = download_video(youtube_info(server, "again", fixture_mp4), tmp_path / "a", DownloadConfig(**FAST))

    def no_extraction(*args, **kwargs):
        raise AssertionError("an info dict must not be extracted again")

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", no_extraction)
    (info,) = read_info_json_dir(tmp_path / "a")
    second = download_video(info, tmp_path / "b", DownloadConfig(**FAST))
    assert second.status == "ok" and Path(second.video_path).read_bytes() == fixture_mp4
    assert Path(second.caption_path).name == Path(first.caption_path).name


def test_429_is_retried_with_backoff_and_counted(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "r429", fixture_mp4, caption_rule=Rule(fail_status=429, fail_times=2))
    sleeps: list[float] = []
    limiter = CountingLimiter()
    cfg = DownloadConfig(backoff_base_s=1.0, backoff_max_s=60.0, jitter=True)
    res = download_video(info, tmp_path, cfg, limiter=limiter, sleep=sleeps.append)
    assert res.status == "ok" and res.attempts == 3
    assert server.hits["/r429/c.json3"] == 3 and server.hits["/r429/v.mp4"] == 1
    assert limiter.calls == 4  # every request, the refused ones included
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # equal jitter: [d/2, d], d = 1, 2


def test_429_gives_up_after_retries(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "r429x", fixture_mp4, caption_rule=Rule(fail_status=429, fail_times=-1))
    sleeps: list[float] = []
    res = download_video(info, tmp_path, DownloadConfig(retries=2, jitter=False), sleep=sleeps.append)
    assert (res.status, res.error_kind, res.retryable, res.attempts) == ("error", "rate_limited", True, 3)
    assert "429" in res.message and sleeps == [1.0, 2.0]
    assert _final_names(tmp_path) == []


def test_404_is_final_and_attempted_once(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "r404", fixture_mp4, video_rule=Rule(fail_status=404, fail_times=-1))
    res = download_video(info, tmp_path, DownloadConfig(**FAST), sleep=lambda s: None)
    assert (res.status, res.error_kind, res.retryable, res.attempts) == ("error", "unavailable", False, 1)
    assert "404" in res.message
    assert server.hits["/r404/v.mp4"] == 1
    assert list(tmp_path.iterdir()) == []  # final: no temp folder kept for a resume


def test_truncated_body_resumes_on_retry(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "trunc", fixture_mp4, video_rule=Rule(truncate_times=1))
    res = download_video(info, tmp_path, DownloadConfig(**FAST), sleep=lambda s: None)
    assert res.status == "ok" and res.attempts == 2
    assert Path(res.video_path).read_bytes() == fixture_mp4
    assert server.range_starts["/trunc/v.mp4"][0] > 0  # the second request continued the .part file
    assert server.hits["/trunc/c.json3"] == 1  # the caption finished in attempt 1 is not fetched again


def test_truncated_every_time_is_retryable_error(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "truncx", fixture_mp4, video_rule=Rule(truncate_times=-1))
    res = download_video(info, tmp_path, DownloadConfig(retries=2, **FAST), sleep=lambda s: None)
    assert (res.status, res.error_kind, res.retryable, res.attempts) == ("error", "truncated", True, 3)
    assert _final_names(tmp_path) == []  # nothing under a final name, the .part stays for a resume


def test_stall_past_socket_timeout_is_retried(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "stall", fixture_mp4, video_rule=Rule(stall_times=1, stall_s=1.6))
    res = download_video(info, tmp_path, DownloadConfig(**FAST), sleep=lambda s: None)
    assert res.status == "ok" and res.attempts == 2
    info = youtube_info(server, "stallx", fixture_mp4, vid="stallxxxxxx",
                        video_rule=Rule(stall_times=-1, stall_s=1.6))
    res = download_video(info, tmp_path, DownloadConfig(retries=0, **FAST), sleep=lambda s: None)
    assert (res.error_kind, res.retryable, res.attempts) == ("timeout", True, 1)


def test_no_captions_still_downloads_and_says_so(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "nocap", fixture_mp4, captions={})
    res = download_video(info, tmp_path, DownloadConfig(**FAST))
    assert res.status == "ok" and res.caption_path is None and res.video_path
    assert "no captions" in res.message
    assert _final_names(tmp_path) == [f"{VID}.info.json", f"{VID}.mp4"]


def test_caption_gone_for_good_does_not_cost_the_video(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "cap404", fixture_mp4, caption_rule=Rule(fail_status=404, fail_times=-1))
    res = download_video(info, tmp_path, DownloadConfig(**FAST), sleep=lambda s: None)
    assert res.status == "ok" and res.caption_path is None and res.attempts == 2
    assert "captions not downloadable" in res.message and "404" in res.message
    assert (server.hits["/cap404/c.json3"], server.hits["/cap404/v.mp4"]) == (1, 1)


def test_extra_options_cannot_break_the_temp_then_rename_contract() -> None:
    assert DownloadConfig(extra_ytdlp_opts={"http_headers": {"X-A": "1"}}).extra_ytdlp_opts
    with pytest.raises(ValueError, match="outtmpl"):
        DownloadConfig(extra_ytdlp_opts={"outtmpl": "%(title)s.%(ext)s"})


def test_translated_only_track_is_refused_then_allowed(server, fixture_mp4, tmp_path) -> None:
    url = server.add("/tr/c.json3", JSON3, "application/json") + "?tlang=en"
    info = youtube_info(server, "tr", fixture_mp4, captions={"en": [{"ext": "json3", "url": url}]})
    res = download_video(info, tmp_path / "a", DownloadConfig(**FAST))
    assert res.status == "ok" and res.caption_path is None and "translated" in res.message
    assert "/tr/c.json3" not in server.hits
    res = download_video(info, tmp_path / "b", DownloadConfig(allow_translated_captions=True, **FAST))
    assert res.caption_translated and Path(res.caption_path).name == f"{VID}.en-und.json3"


@pytest.mark.parametrize("extra, cfg, kind", [
    ({"duration": 4000}, DownloadConfig(max_duration_s=600), "too_long"),
    ({"live_status": "is_upcoming"}, DownloadConfig(), "live"),
    ({"language": "ja"}, DownloadConfig(languages=("en",)), "language"),
])
def test_metadata_filters_fetch_no_video_bytes(server, fixture_mp4, tmp_path, extra, cfg, kind) -> None:
    name = f"meta-{kind}"
    info = youtube_info(server, name, fixture_mp4, captions={}, **extra)
    res = download_video(info, tmp_path, cfg)
    assert (res.status, res.error_kind, res.retryable, res.attempts) == ("error", kind, False, 1)
    assert f"/{name}/v.mp4" not in server.hits


def test_id_ref_extracts_once_then_filters_before_download(server, fixture_mp4, tmp_path, monkeypatch) -> None:
    """An ID goes through one extract_info(process=False); the filters see its result first."""
    infos = {VID: youtube_info(server, "byid", fixture_mp4),
             "longlonglon": youtube_info(server, "byid-long", fixture_mp4, vid="longlonglon", duration=9999)}
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_extract(self, url, download=True, process=True, **kw):
        calls.append((url, {"download": download, "process": process}))
        return copy.deepcopy(infos[parse_video_ref(url)])

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", fake_extract)
    limiter = CountingLimiter()
    res = download_video(f"https://youtu.be/{VID}", tmp_path, DownloadConfig(**FAST), limiter=limiter)
    assert res.status == "ok" and Path(res.video_path).read_bytes() == fixture_mp4
    assert calls == [(f"https://www.youtube.com/watch?v={VID}", {"download": False, "process": False})]
    assert limiter.calls == 2  # extraction, then the download phase
    res = download_video("longlonglon", tmp_path, DownloadConfig(max_duration_s=60))
    assert res.error_kind == "too_long" and "/byid-long/v.mp4" not in server.hits
    assert download_video("nope", tmp_path, DownloadConfig()).error_kind == "bad_ref"


def test_secrets_never_reach_logs_or_results(server, fixture_mp4, tmp_path, caplog) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tcookie-secret-value\n")
    before = cookies.read_bytes()
    info = youtube_info(server, "secret", fixture_mp4)
    caplog.set_level(logging.DEBUG, logger="tvts_data")
    res = download_video(info, tmp_path / "ok", DownloadConfig(cookies_file=str(cookies), **FAST))
    assert res.status == "ok"
    assert cookies.read_bytes() == before  # yt-dlp saved cookies into a private copy, not the user's file
    assert "cookie-secret-value" not in Path(res.info_path).read_text()
    proxy = "http://bob:hunter2@127.0.0.1:9"  # nothing listens on port 9: a connection error
    res = download_video(info, tmp_path / "px", DownloadConfig(proxy=proxy, retries=0, **FAST))
    assert res.status == "error" and res.retryable
    assert "hunter2" not in res.message and "hunter2" not in caplog.text and "cookie-secret" not in caplog.text
    assert "hunter2" not in repr(DownloadConfig(proxy=proxy))


def test_secret_headers_and_options_never_reach_files_or_logs(server, fixture_mp4, tmp_path, caplog) -> None:
    """Authorization/Cookie headers and password-like options given through extra_ytdlp_opts."""
    from tvts_data.config import config_to_dict, load_prepare_config

    extra = {"http_headers": {"Authorization": "Bearer tok-SECRET-1", "Cookie": "SID=ck-SECRET-2"},
             "videopassword": "pw-SECRET-3"}
    caplog.set_level(logging.DEBUG)
    res = download_video(youtube_info(server, "hdr", fixture_mp4), tmp_path, DownloadConfig(extra_ytdlp_opts=extra,
                                                                                           **FAST))
    assert res.status == "ok", res.message
    saved = Path(res.info_path).read_text()
    manifest = json.dumps(config_to_dict(load_prepare_config(None, [f"download.extra_ytdlp_opts={json.dumps(extra)}"])))
    for secret in ("tok-SECRET-1", "ck-SECRET-2", "pw-SECRET-3"):
        assert secret not in saved and secret not in caplog.text and secret not in manifest, secret


_CHILD = """
import json, sys
from tvts_data.download import DownloadConfig, download_video
info = json.loads(open(sys.argv[1]).read())
download_video(info, sys.argv[2], DownloadConfig(socket_timeout_s=5))
"""


def test_killed_download_resumes_without_refetching(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "kill", fixture_mp4, video_rule=Rule(bytes_per_s=20_000))
    (tmp_path / "info.json").write_text(json.dumps(info))
    raw = tmp_path / "raw"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "info.json"), str(raw)])
    try:
        deadline = time.monotonic() + 30
        while server.sent.get("/kill/v.mp4", 0) < 16_384 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert child.poll() is None, "the child finished before it could be killed"
    finally:
        child.kill()  # SIGKILL: no cleanup handlers run
        child.wait()
    assert _final_names(raw) == []  # a partial file never sits under a final name
    assert any(p.suffix == ".part" for p in (raw / f".tmp-{VID}").iterdir())

    server.resources["/kill/v.mp4"].rule.bytes_per_s = None
    res = download_video(info, raw, DownloadConfig(**FAST))
    assert res.status == "ok" and res.attempts == 1
    assert server.hits["/kill/c.json3"] == 1  # complete before the kill: not fetched again
    assert server.range_starts["/kill/v.mp4"][0] > 0  # the video resumed where the .part ended
    assert server.sent["/kill/v.mp4"] < 2 * len(fixture_mp4)

    clean = download_video(info, tmp_path / "clean", DownloadConfig(**FAST))
    assert (res.status, res.bytes, res.caption_language) == (clean.status, clean.bytes, clean.caption_language)
    for a, b in [(res.video_path, clean.video_path), (res.caption_path, clean.caption_path)]:
        assert Path(a).name == Path(b).name and Path(a).read_bytes() == Path(b).read_bytes()
    drop_epoch = lambda p: {k: v for k, v in json.loads(Path(p).read_text()).items() if k != "epoch"}  # noqa: E731
    assert drop_epoch(res.info_path) == drop_epoch(clean.info_path)


# --- rate limiter -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_local_limiter_spacing_and_burst() -> None:
    clock = FakeClock()
    lim = LocalLimiter(rate_per_s=10, burst=3, sleep=clock.sleep, clock=clock)
    waits = [lim.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0] and waits[3:] == pytest.approx([0.1, 0.1, 0.1])
    clock.now += 10  # idle: the burst refills, never more than `burst`
    assert [lim.acquire() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_local_limiter_holds_across_threads() -> None:
    lim = LocalLimiter(rate_per_s=40, burst=1)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [lim.acquire() for _ in range(4)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 15 / 40 - 0.02  # 16 requests: 15 intervals at 40/s


def test_make_limiter_picks_none_local_or_ray() -> None:
    assert make_limiter(DownloadConfig()) is None
    assert isinstance(make_limiter(DownloadConfig(requests_per_s=5), use_ray=False), LocalLimiter)


@pytest.mark.ray
def test_ray_limiter_is_one_bucket_for_all_workers(ray_session) -> None:
    ray = ray_session
    driver = make_limiter(DownloadConfig(requests_per_s=0.1), use_ray=True, name="tvts-test-bucket")
    assert isinstance(driver, RayLimiter)
    worker_copy = pickle.loads(pickle.dumps(driver))  # what a Ray worker receives; it reconnects by name
    driver._sleep = worker_copy._sleep = lambda s: None  # record reservations without waiting for them

    @ray.remote(num_cpus=0)
    def in_worker(lim: RayLimiter) -> float:
        lim._sleep = lambda s: None
        return lim.acquire()

    waits = [driver.acquire(), worker_copy.acquire(), ray.get(in_worker.remote(worker_copy)), driver.acquire()]
    # One shared bucket at 0.1/s: each reservation lands 10 s after the previous one (less the few
    # seconds of real time that pass between the calls, e.g. starting a worker process).
    assert waits[0] == 0
    assert all(7.0 <= b - a <= 10.01 for a, b in zip(waits, waits[1:])), waits


# --- fragmented downloads (HLS) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def hls_fixture(tmp_path_factory) -> dict[str, bytes]:
    """A 6 s HLS stream in 1 s MPEG-TS fragments: playlist and segments by name."""
    out = tmp_path_factory.mktemp("hls")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
                    "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "10",
                    "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
                    "-hls_segment_filename", str(out / "seg%d.ts"), str(out / "v.m3u8")], check=True)
    return {p.name: p.read_bytes() for p in out.iterdir()}


def hls_info(srv: LoopbackServer, name: str, files: dict[str, bytes], rules: dict[str, Rule]) -> dict[str, Any]:
    for file, body in files.items():
        srv.add(f"/{name}/{file}", body, "application/vnd.apple.mpegurl" if file.endswith("m3u8") else "video/mp2t",
                rules.get(file))
    return {"id": VID, "extractor": "youtube", "extractor_key": "Youtube", "title": "hls fixture",
            "webpage_url": f"https://www.youtube.com/watch?v={VID}", "duration": 6,
            "formats": [{"format_id": "hls-1", "url": srv.url(f"/{name}/v.m3u8"), "ext": "mp4",
                         "protocol": "m3u8_native", "vcodec": "avc1.42c00d", "acodec": "none",
                         "height": 120, "width": 160}]}


def test_a_fragment_that_keeps_failing_is_never_skipped(server, hls_fixture, tmp_path) -> None:
    """yt-dlp's default skips it and merges a video 1 s short; that video must never be published."""
    info = hls_info(server, "hls404", hls_fixture, {"seg2.ts": Rule(fail_status=404, fail_times=-1)})
    res = download_video(info, tmp_path, DownloadConfig(retries=1, fragment_retries=2, **FAST), sleep=lambda s: None)
    assert (res.status, res.error_kind, res.retryable) == ("error", "fragment_missing", True), res.message
    assert server.hits["/hls404/seg2.ts"] == 2 * 3  # 2 attempts x (1 + 2 fragment retries)
    assert _final_names(tmp_path) == []


def test_a_flaky_fragment_is_retried_and_the_video_is_whole(server, hls_fixture, tmp_path) -> None:
    info = hls_info(server, "hls503", hls_fixture, {"seg3.ts": Rule(fail_status=503, fail_times=2)})
    limiter = CountingLimiter()
    res = download_video(info, tmp_path, DownloadConfig(fragment_retries=3, **FAST), limiter=limiter,
                         sleep=lambda s: None)
    assert res.status == "ok", res.message
    # the rate limit counts HTTP requests: the playlist and every fragment, each time it is asked for
    assert limiter.calls == sum(n for path, n in server.hits.items() if path.startswith("/hls503/"))
    assert server.hits["/hls503/seg3.ts"] == 3  # failed twice, then whole
    assert server.hits["/hls503/seg0.ts"] == 1  # fragments already fetched are not fetched again
    duration = float(ffmpeg.probe(res.video_path)["format"]["duration"])
    assert duration == pytest.approx(6.0, abs=0.2)


def test_a_download_shorter_than_its_metadata_is_not_published(server, fixture_mp4, tmp_path) -> None:
    info = youtube_info(server, "short", fixture_mp4, duration=10)  # the file holds 3 s
    res = download_video(info, tmp_path, DownloadConfig(retries=1, **FAST), sleep=lambda s: None)
    assert (res.status, res.error_kind, res.retryable) == ("error", "duration_mismatch", True)
    assert "3.0 s but the metadata says 10.0 s" in res.message
    assert _final_names(tmp_path) == []


def test_403_on_a_saved_info_json_is_its_own_final_kind_and_never_extracts(server, fixture_mp4, tmp_path,
                                                                             monkeypatch) -> None:
    def no_extraction(*args, **kwargs):
        raise AssertionError("an .info.json input must never be extracted from the site again")

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", no_extraction)
    info = youtube_info(server, "r403", fixture_mp4, video_rule=Rule(fail_status=403, fail_times=-1))
    res = download_video(info, tmp_path, DownloadConfig(**FAST), sleep=lambda s: None)
    assert (res.status, res.error_kind, res.retryable, res.attempts) == ("error", "expired_url", False, 1)
    assert "403" in res.message and "download this video again by its ID" in res.message
    assert server.hits["/r403/v.mp4"] == 1


@pytest.mark.parametrize("header,cap,expected", [("7", 600.0, 7.0), ("5000", 30.0, 30.0)])
def test_retry_after_is_honoured_up_to_its_cap(server, fixture_mp4, tmp_path, header, cap, expected) -> None:
    info = youtube_info(server, f"ra{header}", fixture_mp4,
                        caption_rule=Rule(fail_status=429, fail_times=1, retry_after=header))
    sleeps: list[float] = []
    cfg = DownloadConfig(backoff_base_s=1.0, jitter=False, retry_after_max_s=cap)
    res = download_video(info, tmp_path, cfg, sleep=sleeps.append)
    assert res.status == "ok" and res.attempts == 2
    assert sleeps == [expected]  # not the 1 s backoff: the server said when


@pytest.mark.parametrize("captions,kind", [({}, "no_captions"),
                                           ({"en": [{"ext": "json3", "url": "http://127.0.0.1:9/c?tlang=en"}]},
                                            "translated_captions")])
def test_captions_required_and_none_usable_downloads_nothing(server, fixture_mp4, tmp_path, captions, kind) -> None:
    """asr.mode=captions: a video that could give no transcript is not downloaded at all."""
    info = youtube_info(server, f"nocap-{kind}", fixture_mp4, captions=captions, language="en")
    res = download_video(info, tmp_path, DownloadConfig(require_captions=True, **FAST), sleep=lambda s: None)
    assert (res.status, res.error_kind, res.retryable, res.attempts) == ("error", kind, False, 1)
    assert "None" not in res.message and "asr.mode=captions" in res.message
    assert f"/nocap-{kind}/v.mp4" not in server.hits


def test_a_killed_runs_temporaries_live_in_the_corpus_and_the_next_run_removes_them(tmp_path) -> None:
    """ASR audio and private cookie copies go under the corpus (not /tmp), named so a rerun cleans them;
    a download's resumable .part folder stays."""
    from tvts_data.corpus import remove_stale_temporaries

    left = [tmp_path / ".scratch" / ".tmp-asr-x1" / "audio.wav", tmp_path / "raw" / ".tmp-vid" / ".tmp-cookies-1.txt"]
    keep = tmp_path / "raw" / ".tmp-vid" / "vid.mp4.part"
    for path in [*left, keep]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in left) and not (tmp_path / ".scratch").exists() and keep.exists()
