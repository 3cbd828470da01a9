"""Caption writers: the inverse of the parsers, for sample corpora and tests with known word times.

Word-level writers (json3, srv3, auto-caption VTT) group words into caption lines the way YouTube
does: a new line after ``words_per_line`` words or a pause longer than ``segment_gap`` seconds. Times
are written in whole milliseconds, so parsed starts are the given starts rounded to 1 ms. Word ends
are not stored by these formats (a parsed word ends where the next starts), except that the last
word of a line ends at its line's end.

Segment writers (SRT, plain VTT, srv1) take ``(start, end, text)`` segments.

Text is written as given; only characters the format reserves are escaped (srv1's text twice, as
YouTube serves it).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from xml.sax.saxutils import escape as xml_escape

from .base import Word

Segment = tuple[float, float, str]

FINALIZE_MS = 10  # YouTube's auto-caption VTT holds each finished line for 10 ms


def group_lines(words: Sequence[Word], segment_gap: float = 1.5, words_per_line: int = 7) -> list[list[Word]]:
    """Split words into caption lines: at most ``words_per_line`` words, no pause above ``segment_gap``."""
    lines: list[list[Word]] = []
    for word in words:
        if lines and len(lines[-1]) < words_per_line and word.start - lines[-1][-1].end <= segment_gap:
            lines[-1].append(word)
        else:
            lines.append([word])
    return lines


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# --- json3 --------------------------------------------------------------------------------------


def write_json3(words: Sequence[Word], segment_gap: float = 1.5, words_per_line: int = 7) -> str:
    """YouTube auto-caption json3: a window event, overlapping line events, ``aAppend`` line breaks."""
    lines = group_lines(words, segment_gap, words_per_line)
    total_ms = _ms(lines[-1][-1].end) if lines else 0
    events: list[dict] = [{"tStartMs": 0, "dDurationMs": total_ms, "id": 1, "wpWinPosId": 1, "wsWinStyleId": 1}]
    for k, line in enumerate(lines):
        if k > 0:
            events.append(_json3_line_break(lines[k - 1], line, _line_hold_end(lines, k)))
        events.append(_json3_line(line, _line_hold_end(lines, k)))
    document = {
        "wireMagic": "pb3",
        "pens": [{}],
        "wsWinStyles": [{}, {"mhModeHint": 2, "juJustifCode": 0, "sdScrollDir": 3}],
        "wpWinPositions": [{}, {"apPoint": 6, "ahHorPos": 20, "avVerPos": 100, "rcRows": 2, "ccCols": 40}],
        "events": events,
    }
    return json.dumps(document, ensure_ascii=False)


def _line_hold_end(lines: list[list[Word]], k: int) -> int:
    """A line stays on screen (its event lasts) until the line after the next one starts."""
    if k + 2 < len(lines):
        return _ms(lines[k + 2][0].start)
    return max(_ms(lines[k][0].start), _ms(lines[-1][-1].end))


def _json3_line(line: list[Word], hold_end_ms: int) -> dict:
    start = _ms(line[0].start)
    segs = [{"utf8": line[0].text, "acAsrConf": 0}]
    segs += [{"utf8": f" {w.text}", "tOffsetMs": _ms(w.start) - start, "acAsrConf": 0} for w in line[1:]]
    return {"tStartMs": start, "dDurationMs": hold_end_ms - start, "wWinId": 1, "segs": segs}


def _json3_line_break(previous: list[Word], line: list[Word], hold_end_ms: int) -> dict:
    start = min(_ms(previous[-1].end), _ms(line[0].start))
    return {"tStartMs": start, "dDurationMs": hold_end_ms - start, "wWinId": 1, "aAppend": 1, "segs": [{"utf8": "\n"}]}


# --- srv3 / srv1 --------------------------------------------------------------------------------

_SRV3_HEAD = (
    '<?xml version="1.0" encoding="utf-8" ?><timedtext format="3">\n<head>\n<ws id="0"/>\n'
    '<ws id="1" mh="2" ju="0" sd="3"/>\n<wp id="0"/>\n<wp id="1" ap="6" ah="20" av="100" rc="2" cc="40"/>\n'
    "</head>\n<body>\n"
)


def write_srv3(words: Sequence[Word], segment_gap: float = 1.5, words_per_line: int = 7) -> str:
    """YouTube auto-caption srv3: ``<p t d>`` per line, ``<s t>`` offsets, appended line breaks."""
    lines = group_lines(words, segment_gap, words_per_line)
    body = ['<w t="0" id="1" wp="1" ws="1"/>\n']
    for k, line in enumerate(lines):
        start, hold_end = _ms(line[0].start), _line_hold_end(lines, k)
        if k > 0:
            gap = min(_ms(lines[k - 1][-1].end), start)
            body.append(f'<p t="{gap}" d="{hold_end - gap}" w="1" a="1">\n</p>\n')
        spans = [f'<s ac="0">{xml_escape(line[0].text)}</s>']
        spans += [f'<s t="{_ms(w.start) - start}" ac="0"> {xml_escape(w.text)}</s>' for w in line[1:]]
        body.append(f'<p t="{start}" d="{hold_end - start}" w="1">{"".join(spans)}</p>\n')
    return _SRV3_HEAD + "".join(body) + "</body>\n</timedtext>\n"


def write_srv1(segments: Sequence[Segment]) -> str:
    """srv1 transcript: ``<text start dur>`` in seconds; text escaped twice, as YouTube serves it."""
    rows = [
        f'<text start="{start:.3f}" dur="{end - start:.3f}">{xml_escape(html.escape(text))}</text>'
        for start, end, text in segments
    ]
    return '<?xml version="1.0" encoding="utf-8" ?><transcript>' + "".join(rows) + "</transcript>\n"


# --- VTT / SRT ----------------------------------------------------------------------------------


def _clock(ms: int, decimal: str = ".") -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal}{millis:03d}"


def _vtt_cue(start_ms: int, end_ms: int, payload: Sequence[str]) -> str:
    timing = f"{_clock(start_ms)} --> {_clock(end_ms)} align:start position:0%"
    return "\n".join([timing, *payload]) + "\n"


def write_vtt_auto(
    words: Sequence[Word], segment_gap: float = 1.5, words_per_line: int = 7, language: str = "en"
) -> str:
    """YouTube auto-caption VTT: per line a build-up cue with inline word times, a 10 ms finalize
    cue, and the finished line carried on top of the next build-up cue."""
    lines = group_lines(words, segment_gap, words_per_line)
    cues, carried = [], " "
    for k, line in enumerate(lines):
        start = _ms(line[0].start)
        switch = _ms(lines[k + 1][0].start) - FINALIZE_MS if k + 1 < len(lines) else _ms(line[-1].end)
        switch = max(switch, start)
        plain = " ".join(html.escape(w.text, quote=False) for w in line)
        cues.append(_vtt_cue(start, switch, [carried, _tagged_line(line)]))
        cues.append(_vtt_cue(switch, switch + FINALIZE_MS, [plain, " "]))
        carried = plain
    return f"WEBVTT\nKind: captions\nLanguage: {language}\n\n" + "\n".join(cues)


def _tagged_line(line: list[Word]) -> str:
    first = html.escape(line[0].text, quote=False)
    rest = (f"<{_clock(_ms(w.start))}><c> {html.escape(w.text, quote=False)}</c>" for w in line[1:])
    return first + "".join(rest)


def write_vtt_plain(segments: Sequence[Segment], language: str | None = None) -> str:
    """Plain WebVTT: one cue per segment, no inline times."""
    header = "WEBVTT\n" + (f"Kind: captions\nLanguage: {language}\n" if language else "")
    cues = [
        f"{_clock(_ms(start))} --> {_clock(_ms(end))}\n{html.escape(text, quote=False)}\n"
        for start, end, text in segments
    ]
    return header + "\n" + "\n".join(cues)


def write_srt(segments: Sequence[Segment]) -> str:
    """SubRip: numbered cues with comma decimals."""
    cues = [
        f"{n}\n{_clock(_ms(start), ',')} --> {_clock(_ms(end), ',')}\n{text}\n"
        for n, (start, end, text) in enumerate(segments, 1)
    ]
    return "\n".join(cues)


# --- YT-Temporal --------------------------------------------------------------------------------


def write_yttemporal(words: Sequence[Word], clean_text: str | None = None, duration: float | None = None) -> str:
    """A YT-Temporal annotation: ``subtitles`` from the words, ``denoised`` from ``clean_text``."""
    document = {
        "subtitles": [{"word": w.text, "time": round(w.start, 3)} for w in words],
        "denoised": [{"cleanasr": clean_text}] if clean_text else [],
        "info": {"duration": duration if duration is not None else (words[-1].end if words else 0.0)},
    }
    return json.dumps(document, ensure_ascii=False)
