"""WebVTT captions, both YouTube's auto-caption layout (word timing) and plain cues.

A file with inline timestamps (``guys<00:00:00.179><c> this</c>``) is read as YouTube auto-captions,
where each caption line is written three times (blank lines between cues left out)::

    00:00:00.000 --> 00:00:02.310        build-up cue: carried previous line (or " "),
     (space)                                then the new line with inline word times
    guys<00:00:00.179><c> this</c>
    00:00:02.310 --> 00:00:02.320        finalize cue (10 ms): the finished line, then " "
    guys this
     (space)
    00:00:02.320 --> ...                 next build-up cue: the finished line carried on top
    guys this
    is<00:00:02.500><c> my</c>

Only the new line of each build-up cue gives words, so every word appears once. The new line is the
cue's last line unless that line is whitespace-only (a finalize cue). A new line of a single word has
no inline tags; when trimmed whitespace makes a finalize cue look like a one-line build-up cue, a
line equal to the previous new line is taken as the repeat it is. The first word of a new line
starts at the cue start; every word ends at the next word's start, capped by its cue's end.

Files without inline timestamps are segment-timed (``Timing.INTERPOLATED``, see ``cues``).
Timestamps may omit hours; cue settings, identifiers, NOTE/STYLE/REGION blocks are ignored; the
``Language:`` header gives the transcript language.
"""

from __future__ import annotations

import re

from .base import CaptionError, TimedText, Timing, Word, caption_parser, finish_words
from .cues import Cue, parse_timestamp, segment_items, split_cues, strip_markup

_INLINE_TIME = re.compile(r"<((?:\d+:)?\d{2}:\d{2}\.\d{3})>")
_LANGUAGE_HEADER = re.compile(r"^Language:\s*(\S+)", re.IGNORECASE)


def vtt_header_language(text: str) -> str | None:
    """The ``Language:`` value of the header block, if any."""
    for line in text.lstrip("\ufeff").splitlines()[1:]:
        if not line.strip() or "-->" in line:
            return None
        match = _LANGUAGE_HEADER.match(line)
        if match:
            return match.group(1)
    return None


def _looks_like_vtt(text: str) -> bool:
    return text.startswith("WEBVTT")


@caption_parser("vtt", extensions=("vtt", "webvtt"), sniff=_looks_like_vtt, language=vtt_header_language)
def parse_vtt(text: str) -> tuple[list[Word], Timing]:
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or not lines[0].startswith("WEBVTT"):
        raise CaptionError("first line is not 'WEBVTT'; this is not a WebVTT file (use fmt='srt' for SRT)")
    cues = split_cues(lines[1:])
    if not cues:
        raise CaptionError(
            "no cues ('00:00:01.000 --> 00:00:02.000' lines); the track is empty or was cut short", "captions_empty"
        )
    if any(_INLINE_TIME.search(line) for cue in cues for line in cue.lines):
        return finish_words(_auto_caption_items(cues)), Timing.WORD
    items = segment_items(cues)
    if not items:
        raise CaptionError(f"all {len(cues)} cues are empty; the track holds no text", "captions_empty")
    return finish_words(items), Timing.INTERPOLATED


def _auto_caption_items(cues: list[Cue]) -> list[TimedText]:
    items: list[TimedText] = []
    last_new: str | None = None
    for cue in cues:
        for line in _new_lines(cue, last_new):
            last_new = strip_markup(line)
            items.extend(_timed_line_items(line, cue))
    return items


def _new_lines(cue: Cue, last_new: str | None) -> list[str]:
    """The line(s) of ``cue`` that hold words not written before (see module doc)."""
    if not cue.lines or not cue.lines[-1].strip():
        return []
    tagged = [line for line in cue.lines if _INLINE_TIME.search(line)]
    if tagged:
        return tagged
    carried_and_new = sum(1 for line in cue.lines if line.strip()) >= 2
    last = cue.lines[-1]
    return [last] if carried_and_new or strip_markup(last) != last_new else []


def _timed_line_items(line: str, cue: Cue) -> list[TimedText]:
    """``first<t1><c> second</c>...`` -> items; the text before the first tag starts at the cue."""
    parts = _INLINE_TIME.split(line)  # [text, time, text, time, text, ...]
    starts = [cue.start] + [parse_timestamp(stamp) for stamp in parts[1::2]]
    texts = [strip_markup(chunk) for chunk in parts[0::2]]
    return [(text, start, cue.end) for text, start in zip(texts, starts) if text]
