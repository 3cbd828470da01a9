"""YT-Temporal per-video annotations, read as the TVTS reference reads them.

``{"subtitles": [{"word": "hey", "time": 0.0}, ...], "denoised": [{"cleanasr": "Hey guys, ..."}, ...],
"info": {"duration": 183.2, ...}}``

- Timed words come from ``subtitles``: a word starts at ``time`` and ends at the next word's start;
  the last word ends ``LAST_WORD_S`` after its start, or at the video's end if that comes first.
- When ``denoised`` holds text, its ``cleanasr`` strings are joined and aligned onto the timed words
  (``align.align_clean_transcript``): the transcript is the clean text with ASR times. Without it,
  the timed ASR words are the transcript.
- ``Timing.ANNOTATION`` either way. The language is not in the annotation: pass it, or name the file
  like a caption track (``ID.en.json``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .align import align_clean_transcript
from .base import CaptionError, Timing, Word, caption_parser, finish_words, json_object
from .clean import clean_words

LAST_WORD_S = 0.5


def _looks_like_yttemporal(text: str) -> bool:
    data = json_object(text)
    return data is not None and isinstance(data.get("subtitles"), list)


@caption_parser("yttemporal", extensions=(), sniff=_looks_like_yttemporal)
def parse_yttemporal(text: str) -> tuple[list[Word], Timing]:
    data = _annotation(text)
    timed = clean_words(_timed_words(data))
    clean_text = " ".join(_denoised_texts(data))
    if timed and clean_text.strip():
        return align_clean_transcript(timed, clean_text), Timing.ANNOTATION
    return timed, Timing.ANNOTATION


def _annotation(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CaptionError(
            f"malformed annotation JSON ({err.msg} at line {err.lineno} column {err.colno}); "
            "the file was cut short: extract it from the release again"
        ) from err
    if not isinstance(data, dict) or not isinstance(data.get("subtitles"), list):
        raise CaptionError("no 'subtitles' list; not a YT-Temporal annotation: give the caption format with fmt=")
    return data


def _timed_words(data: dict[str, Any]) -> list[Word]:
    duration = _duration(data)
    items = [(*_subtitle(entry, index), duration) for index, entry in enumerate(data["subtitles"])]
    if not items:
        raise CaptionError("'subtitles' is empty; the video has no ASR words", "captions_empty")
    words = finish_words(items)
    last = words[-1]
    last_end = max(last.start, min(last.start + LAST_WORD_S, duration if duration is not None else math.inf))
    return [*words[:-1], Word(last.text, last.start, last_end)]


def _subtitle(entry: Any, index: int) -> tuple[str, float]:
    try:
        return str(entry["word"]), float(entry["time"])
    except (KeyError, TypeError, ValueError) as err:
        raise CaptionError(
            f"subtitle {index} ({entry!r:.60}) lacks a 'word' or a numeric 'time'; the file is damaged"
        ) from err


def _duration(data: dict[str, Any]) -> float | None:
    info = data.get("info")
    raw = info.get("duration") if isinstance(info, dict) else None
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):  # a missing duration only loosens the last word's end
        return None


def _denoised_texts(data: dict[str, Any]) -> list[str]:
    denoised = data.get("denoised")
    if not isinstance(denoised, list):
        return []
    return [str(x["cleanasr"]) for x in denoised if isinstance(x, dict) and x.get("cleanasr")]
