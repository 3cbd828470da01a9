"""Cue blocks shared by the text-track formats (WebVTT, SRT).

Splitting is driven by timing lines (``start --> end``), not by blank lines: YouTube's VTT puts
whitespace-only lines inside cues, and an editor that trims trailing spaces turns them into blank
lines, which would break a blank-line splitter. A non-blank line directly above a timing line and
below a blank line is that cue's identifier (SRT's index). NOTE, STYLE and REGION blocks are skipped.

Rolling captions repeat the previous cue's last line as the first line of the next cue. Plain cues
(segment timing) drop a first line only when it equals the previous cue's last line exactly: a
conservative rule that keeps nearly all genuine speech; an utterance that a caption writer really
repeated as a whole cue right after itself is lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_TIMESTAMP = r"(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3}"
_TIMING_LINE = re.compile(rf"^\s*({_TIMESTAMP})\s*-->\s*({_TIMESTAMP})")
_TIMESTAMP_PARTS = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})$")
_MARKUP = re.compile(r"<[^>\n]*>|\{\\[^}\n]*\}")  # VTT/HTML tags, SSA overrides such as {\an8}
_COMMENT_BLOCK = re.compile(r"^(?:NOTE|STYLE|REGION)(?:\s|$)")


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float  # seconds
    lines: tuple[str, ...]  # payload as written, whitespace-only lines kept, trailing empty lines removed


def parse_timestamp(text: str) -> float:
    """``"01:02:03.450"``, ``"02:03,450"`` -> seconds. Raises ValueError on anything else."""
    match = _TIMESTAMP_PARTS.match(text.strip())
    if match is None:
        raise ValueError(f"not a timestamp: {text!r}")
    hours, minutes, seconds, frac = match.groups()
    whole_seconds = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    return (whole_seconds * 1000 + int(frac.ljust(3, "0"))) / 1000  # exact to the written ms


def split_cues(lines: Sequence[str]) -> list[Cue]:
    """Cues of a VTT/SRT body, in file order. Lines before the first timing line are ignored."""
    cues: list[Cue] = []
    timing: tuple[float, float] | None = None
    payload: list[str] = []
    in_comment, previous = False, ""
    for line in lines:
        match = _TIMING_LINE.match(line)
        if match:
            if timing is not None:
                cues.append(_cue(timing, _without_identifier(payload)))
            timing, payload, in_comment = _span(match), [], False
        elif in_comment or (not previous.strip() and _COMMENT_BLOCK.match(line)):
            in_comment = bool(line.strip())
        elif timing is not None:
            payload.append(line)
        previous = line
    if timing is not None:
        cues.append(_cue(timing, payload))
    return cues


def _span(match: re.Match[str]) -> tuple[float, float]:
    return parse_timestamp(match.group(1)), parse_timestamp(match.group(2))


def _without_identifier(payload: list[str]) -> list[str]:
    if len(payload) >= 2 and payload[-1].strip() and not payload[-2].strip():
        return payload[:-1]
    return payload


def _cue(timing: tuple[float, float], payload: list[str]) -> Cue:
    lines = [line.rstrip("\r\n") for line in payload]
    while lines and lines[-1] == "":  # the block separator; whitespace-only lines stay
        lines.pop()
    return Cue(timing[0], timing[1], tuple(lines))


def strip_markup(line: str) -> str:
    return _MARKUP.sub("", line).strip()


def segment_items(cues: Sequence[Cue]) -> list[tuple[str, float, float]]:
    """Plain cues -> ``(text, start, end)`` with rolling repeats removed (see module doc)."""
    items: list[tuple[str, float, float]] = []
    previous_last: str | None = None
    for cue in cues:
        lines = [text for text in map(strip_markup, cue.lines) if text]
        if not lines:
            continue
        last = lines[-1]
        if lines[0] == previous_last:
            lines = lines[1:]
        previous_last = last
        if lines:
            items.append(("\n".join(lines), cue.start, cue.end))
    return items
