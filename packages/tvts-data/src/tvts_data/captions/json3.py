"""YouTube json3 captions: ``{"events": [{"tStartMs", "dDurationMs", "segs": [{"utf8", "tOffsetMs"}]}]}``.

- A word starts at ``tStartMs + tOffsetMs`` (the first seg of an event has no offset).
- Events without ``segs`` define windows; ``aAppend`` events holding only ``"\\n"`` are line breaks;
  both carry no words and are skipped, as are whitespace-only segs.
- Auto-caption events overlap (an event lasts until the line after it ends): a word's end is capped
  by the next word's start, so times stay monotonic.
- Manual captions have one seg per event and no offsets: they are marked ``Timing.INTERPOLATED`` and
  the event's words are spread over the event by character count during cleaning.
"""

from __future__ import annotations

import json
from typing import Any

from .base import CaptionError, TimedText, Timing, Word, caption_parser, finish_words, json_object


def _looks_like_json3(text: str) -> bool:
    data = json_object(text)
    return data is not None and isinstance(data.get("events"), list)


@caption_parser("json3", extensions=("json3",), sniff=_looks_like_json3)
def parse_json3(text: str) -> tuple[list[Word], Timing]:
    items: list[TimedText] = []
    word_level = False
    for index, event in enumerate(_events(text)):
        segs = _spoken_segs(event, index)
        if segs:
            word_level = word_level or len(segs) > 1 or any("tOffsetMs" in seg for seg in segs)
            items.extend(_seg_items(event, segs, index))
    if not items:
        raise CaptionError("no caption text in any event; the track is empty", "captions_empty")
    return finish_words(items), Timing.WORD if word_level else Timing.INTERPOLATED


def _spoken_segs(event: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """Segs with text: none for window definitions, line breaks (``aAppend`` "\\n") or empty events."""
    segs = event.get("segs") or []
    if not isinstance(segs, list) or not all(isinstance(seg, dict) for seg in segs):
        raise CaptionError(f"event {index}: 'segs' is not a list of objects; the file is damaged: download it again")
    return [seg for seg in segs if str(seg.get("utf8", "")).strip()]


def _seg_items(event: dict[str, Any], segs: list[dict[str, Any]], index: int) -> list[TimedText]:
    start_ms, end_ms = _event_span(event, index)
    limit = None if end_ms is None else end_ms / 1000
    offsets = [_number(seg.get("tOffsetMs", 0), f"event {index} tOffsetMs") for seg in segs]
    return [(str(seg["utf8"]), (start_ms + offset) / 1000, limit) for seg, offset in zip(segs, offsets)]


def _events(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CaptionError(
            f"malformed json3 ({err.msg} at line {err.lineno} column {err.colno}); the download was "
            "probably cut short: download the captions again"
        ) from err
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise CaptionError("no 'events' list of objects; not a json3 caption file: give its real format with fmt=")
    return events


def _event_span(event: dict[str, Any], index: int) -> tuple[float, float | None]:
    """Start and end in ms; end is None when the event has no duration."""
    if "tStartMs" not in event:
        raise CaptionError(f"event {index} has text but no tStartMs; the file is damaged: download it again")
    start = _number(event["tStartMs"], f"event {index} tStartMs")
    if "dDurationMs" not in event:
        return start, None
    return start, start + _number(event["dDurationMs"], f"event {index} dDurationMs")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CaptionError(f"{what} is {value!r}, not a number; the file is damaged: download it again")
    return float(value)
