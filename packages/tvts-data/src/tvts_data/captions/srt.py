"""SubRip (SRT) captions: numbered cues ``00:00:01,000 --> 00:00:04,000`` with text lines.

SRT has segment timing only: words are spread over each cue by character count
(``Timing.INTERPOLATED``). Markup (``<i>``, ``<font>``, ``{\\an8}``) is removed and rolling repeats
are dropped as for plain VTT (see ``cues``). A dot instead of the comma and missing hours are
accepted, as converters write both.
"""

from __future__ import annotations

import re

from .base import CaptionError, Timing, Word, caption_parser, finish_words
from .cues import segment_items, split_cues

_SRT_START = re.compile(r"^\d+\s*\n\s*(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3}\s*-->")


def _looks_like_srt(text: str) -> bool:
    return bool(_SRT_START.match(text[:200].replace("\r\n", "\n")))


@caption_parser("srt", extensions=("srt",), sniff=_looks_like_srt)
def parse_srt(text: str) -> tuple[list[Word], Timing]:
    cues = split_cues(text.lstrip("\ufeff").splitlines())
    if not cues:
        raise CaptionError("no cues ('00:00:01,000 --> 00:00:02,000' lines); the file is empty or not SRT")
    items = segment_items(cues)
    if not items:
        raise CaptionError(f"all {len(cues)} cues are empty; the track holds no text", "captions_empty")
    return finish_words(items), Timing.INTERPOLATED
