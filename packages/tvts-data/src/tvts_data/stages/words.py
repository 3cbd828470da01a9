"""Words stage: one source row (a local video plus its captions) -> one row of timed words (schema.WORDS).

The seam for other inputs: `locate_media` turns a source row into a local video and caption file;
for YouTube rows it looks in ``OUTPUT/raw/`` where the download stage left them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from tvts_data.captions import CaptionError, Timing, Transcript, parse_caption_file
from tvts_data.config import PrepareConfig
from tvts_data.download.ytdlp import SUMMARY_KEY
from tvts_data.inputs import choose_caption, find_captions
from tvts_data.media import probe_video
from tvts_data.stages.errors import StageError

log = logging.getLogger(__name__)

Transcriber = Callable[[str], Transcript]


def locate_media(source: dict[str, Any], raw_dir: Path, cfg: PrepareConfig) -> tuple[Path, Path | None, str | None]:
    """(video, caption or annotation file, its format or None to infer) for a source row."""
    if source["kind"] == "youtube":
        videos = sorted(p for p in raw_dir.glob(f"{source['video_id']}.*")
                        if p.suffix in cfg.input.video_extensions)
        if not videos:
            raise StageError("not_downloaded", f"video {source['video_id']}: no video in {raw_dir}; "
                             "run the download stage first (tvts-data prepare --stages download)")
        caption = choose_caption(find_captions(videos[0]), source["video_id"], cfg)
        return videos[0], caption, None
    if source.get("annotation_path"):
        return Path(source["video_path"]), Path(source["annotation_path"]), "yttemporal"
    caption = source.get("caption_path")
    return Path(source["video_path"]), Path(caption) if caption else None, None


def read_transcript(video_id: str, caption: Path, fmt: str | None, video: Path | None = None) -> Transcript:
    try:
        transcript = parse_caption_file(caption, fmt=fmt)
    except CaptionError as exc:
        raise StageError(getattr(exc, "kind", "captions_malformed"), f"video {video_id}: {exc}") from exc
    if not transcript.translated and video is not None and translated_per_info_json(video, caption):
        # A machine translation has no word timing of its own, whatever its file says.
        transcript = dataclasses.replace(transcript, translated=True, timing=Timing.INTERPOLATED)
    return transcript


def translated_per_info_json(video: Path, caption: Path) -> bool:
    """Whether the yt-dlp info JSON beside ``video`` says ``caption`` is a machine-translated track: our
    download summary says so, or the track's URLs carry YouTube's ``tlang=`` (a translation request)."""
    info_path = video.with_name(f"{video.stem}.info.json")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    summary = info.get(SUMMARY_KEY) or {}
    if summary.get("caption") == caption.name:
        return bool(summary.get("caption_translated"))
    key = caption.name.rsplit(".", 2)[-2] if caption.name.count(".") >= 2 else ""
    tracks = (info.get("automatic_captions") or {}).get(key) or []
    return any("tlang=" in urlsplit(str(t.get("url") or "")).query for t in tracks if isinstance(t, dict))


def check_transcript(video_id: str, caption: Path | str, tr: Transcript, cfg: PrepareConfig) -> None:
    """``caption`` names where the transcript came from (a caption file, or the ASR run)."""
    langs = cfg.words.languages
    base = (tr.language or "").split("-")[0]
    if langs and tr.language and base not in langs:
        raise StageError("language", f"video {video_id}: captions {caption} are in {tr.language!r}, not in "
                         f"words.languages={list(langs)}; add the language to the config to keep it")
    if tr.translated and not cfg.words.allow_translated:
        raise StageError("translated_captions", f"video {video_id}: {caption} is a machine-translated track "
                         "with no word timing; set words.allow_translated=true to use it anyway")
    if tr.timing == "interpolated" and not cfg.words.allow_interpolated:
        raise StageError("no_word_timing", f"video {video_id}: {caption} has segment timing only; "
                         "set words.allow_interpolated=true to interpolate word times")
    if not tr.words:
        if isinstance(caption, Path):
            raise StageError("captions_empty", f"video {video_id}: {caption} holds no spoken words")
        raise StageError("no_speech", f"video {video_id}: {caption} found no speech, and the video has no "
                         "captions: nothing to build transcripts from")


def extract_words(source: dict[str, Any], raw_dir: Path, cfg: PrepareConfig,
                  transcribe: Transcriber | None = None) -> dict[str, Any]:
    """A WORDS row for the video, or StageError with the reason."""
    video_id = source["video_id"]
    video, caption, fmt = locate_media(source, raw_dir, cfg)
    info = probe_video(video, video_id)
    mode = cfg.asr.mode
    transcript = None
    if caption is not None and mode != "asr":
        transcript = read_transcript(video_id, caption, fmt, video)
        check_transcript(video_id, caption, transcript, cfg)
    elif transcribe is not None and mode in ("asr", "captions_then_asr"):
        transcript = transcribe(str(video))
        check_transcript(video_id, f"ASR ({cfg.asr.backend}) on {video.name}", transcript, cfg)
    if transcript is None:
        raise StageError("no_captions", f"video {video_id}: no caption file beside {video} "
                         f"(looked for {video.stem}.<lang>.json3/.srv3/.vtt/.srt) and ASR is off "
                         f"(asr.mode={mode!r}); add captions or set asr.mode=captions_then_asr")
    return {
        "video_id": video_id,
        "video_path": str(video),
        "duration": info.duration,
        "language": transcript.language,
        "timing": str(getattr(transcript.timing, "value", transcript.timing)),
        "source_format": transcript.source_format,
        "words": [asdict(w) for w in transcript.words],
    }
