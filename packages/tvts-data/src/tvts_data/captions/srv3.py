"""YouTube's XML caption formats: srv3 (word timing) and srv1 (segment timing).

srv3: ``<timedtext format="3"><body><p t="15519" d="4241"><s>for</s><s t="281"> years</s></p>``,
times in ms, ``<s t>`` an offset from its ``<p t>``. Appended line-break paragraphs (``a="1"``
holding only whitespace) are skipped. A ``<p>`` with text but no ``<s>`` (manual captions) is
segment-timed: ``Timing.INTERPOLATED``, words spread over the paragraph by character count.

srv1: ``<transcript><text start="1.2" dur="3.4">text</text></transcript>``, times in seconds,
segment-timed. Its text is often escaped twice (``&amp;#39;``); cleaning unescapes it.

The XML is parsed with the standard library; its expat (2.4.1 and later) caps entity expansion.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .base import CaptionError, TimedText, Timing, Word, caption_parser, finish_words


def _looks_like_srv3(text: str) -> bool:
    return text.startswith("<") and "<timedtext" in text


def _looks_like_srv1(text: str) -> bool:
    return text.startswith("<") and "<transcript" in text


@caption_parser("srv3", extensions=("srv3",), sniff=_looks_like_srv3)
def parse_srv3(text: str) -> tuple[list[Word], Timing]:
    root = _xml_root(text, "srv3")
    items: list[TimedText] = []
    word_level = False
    for index, para in enumerate(root.iter("p")):
        spans = list(para.iter("s"))
        word_level = word_level or len(spans) > 1 or any("t" in s.attrib for s in spans)
        items.extend(_paragraph_items(para, spans, index))
    if not items:
        raise CaptionError("no <p> paragraph with text; the track is empty", "captions_empty")
    return finish_words(items), Timing.WORD if word_level else Timing.INTERPOLATED


def _paragraph_items(para: ET.Element, spans: list[ET.Element], index: int) -> list[TimedText]:
    start_ms = _ms(para, "t", index)
    end = (start_ms + _ms(para, "d", index)) / 1000 if "d" in para.attrib else None
    if not spans:
        text = _element_text(para)
        return [(text, start_ms / 1000, end)] if text.strip() else []
    return [(s.text or "", (start_ms + _ms(s, "t", index)) / 1000, end) for s in spans if (s.text or "").strip()]


@caption_parser("srv1", extensions=("srv1",), sniff=_looks_like_srv1)
def parse_srv1(text: str) -> tuple[list[Word], Timing]:
    root = _xml_root(text, "srv1")
    items: list[TimedText] = []
    for index, node in enumerate(root.iter("text")):
        start = _seconds(node, "start", index)
        end = start + _seconds(node, "dur", index) if "dur" in node.attrib else None
        if _element_text(node).strip():
            items.append((_element_text(node), start, end))
    if not items:
        raise CaptionError("no <text> element with text; the track is empty", "captions_empty")
    return finish_words(items), Timing.INTERPOLATED


def _xml_root(text: str, fmt: str) -> ET.Element:
    try:
        return ET.fromstring(text.lstrip("\ufeff"))
    except ET.ParseError as err:
        line, column = err.position
        raise CaptionError(
            f"malformed {fmt} XML ({err.msg.split(':')[0]} at line {line} column {column}); the "
            "download was probably cut short: download the captions again"
        ) from err


def _element_text(node: ET.Element) -> str:
    """All text inside ``node``, with ``<br/>`` read as a line break."""
    parts = [node.text or ""]
    for child in node:
        parts.append("\n" if child.tag == "br" else _element_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _ms(node: ET.Element, attr: str, index: int) -> int:
    raw = node.get(attr, "0")
    try:
        return int(raw)
    except ValueError as err:
        raise CaptionError(f"paragraph {index}: {attr}={raw!r} is not whole milliseconds; the file is damaged") from err


def _seconds(node: ET.Element, attr: str, index: int) -> float:
    raw = node.get(attr, "0")
    try:
        return float(raw)
    except ValueError as err:
        raise CaptionError(f"text {index}: {attr}={raw!r} is not a number of seconds; the file is damaged") from err
