"""Core types of the caption library, the format registry, and dispatch.

Every format module registers one parser with :func:`caption_parser`. A parser turns the file's text
into ``(words, timing)``: words in time order with end times set (see :func:`finish_words`), not yet
cleaned. :func:`parse_caption_text` then cleans them (``clean.clean_words``) and wraps them in a
:class:`Transcript`, so cleaning rules are the same for every format.

Decisions a user should know:

- Word ends. A word ends where the next word starts, capped by the end of the event/cue/paragraph
  that holds it; the last word of an event ends at the event's end. Word-level caption formats only
  carry starts, so an end is an upper bound of the spoken word, not a measurement.
- Backward times. Starts may jitter backwards a little (YouTube's events overlap, tools round times);
  words are then stably re-sorted. A start more than ``BACKWARDS_TOLERANCE_S`` before an earlier word's
  start means a corrupt or concatenated file and raises :class:`CaptionError`.
- Language. An explicit ``language`` argument wins, then a language written inside the file (VTT's
  ``Language:`` header), then the file name (``ID.en.json3``, ``ID.en-orig.vtt``). Languages are
  reduced to their primary subtag (``en-US`` -> ``en``) so that corpus filters compare like with like.
- Translated tracks are recognised from yt-dlp's names only: ``ID.de-en.vtt`` (German translated from
  English). ``-orig`` marks the original track; regions and scripts (``pt-BR``, ``zh-Hans``) are not
  translations.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

BACKWARDS_TOLERANCE_S = 1.0


@dataclass(frozen=True, slots=True)
class Word:
    """One spoken word and its time span in seconds (``end >= start``)."""

    text: str
    start: float
    end: float


class Timing(str, Enum):
    """Where the word times of a transcript come from."""

    WORD = "word"  # per-word starts written by the caption source (YouTube auto-captions)
    INTERPOLATED = "interpolated"  # only segment times known; words placed by character count
    ASR = "asr"  # produced by our own speech recogniser
    ANNOTATION = "annotation"  # read from a dataset's annotation (YT-Temporal)

    def __str__(self) -> str:  # "word", not "Timing.WORD", in logs and tables
        return self.value


@dataclass(frozen=True)
class Transcript:
    """A cleaned, time-ordered word sequence and where it came from."""

    words: tuple[Word, ...]
    timing: Timing
    language: str | None
    source_format: str
    translated: bool = False

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


class CaptionError(ValueError):
    """A caption file that cannot give a usable transcript. The message names the file.

    ``kind`` sorts failures for corpus statistics: ``"captions_malformed"`` (damaged or not the format
    it claims), ``"captions_empty"`` (well formed, but no speech), ``"captions_unknown_format"``,
    ``"times_backwards"`` (word starts jump back by more than the tolerance).
    """

    def __init__(self, message: str, kind: str = "captions_malformed") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # keep ``kind`` when pickled across processes (Ray workers)
        return type(self), (str(self), self.kind)


Parser = Callable[[str], tuple[list[Word], Timing]]
TimedText = tuple[str, float, float | None]  # (text, start, end of its event/cue or None), seconds
Sniffer = Callable[[str], bool]
LanguageReader = Callable[[str], str | None]

CAPTION_PARSERS: dict[str, Parser] = {}
FORMAT_BY_EXTENSION: dict[str, str] = {}
_SNIFFERS: dict[str, Sniffer] = {}
_LANGUAGE_READERS: dict[str, LanguageReader] = {}


def caption_parser(
    name: str,
    *,
    extensions: Sequence[str] = (),
    sniff: Sniffer | None = None,
    language: LanguageReader | None = None,
) -> Callable[[Parser], Parser]:
    """Register a parser under ``name``; ``sniff`` recognises its content, ``language`` reads a
    language the file itself declares."""

    def register(parser: Parser) -> Parser:
        CAPTION_PARSERS[name] = parser
        for ext in extensions:
            FORMAT_BY_EXTENSION[ext] = name
        if sniff is not None:
            _SNIFFERS[name] = sniff
        if language is not None:
            _LANGUAGE_READERS[name] = language
        return parser

    return register


# --- shared helpers for parsers ---------------------------------------------------------------


def finish_words(items: Iterable[TimedText]) -> list[Word]:
    """Timed texts in file order -> words sorted by start, each ending at the next start or at the end
    of its event/cue, whichever comes first."""
    items = list(items)
    _check_times(items)
    items.sort(key=lambda item: item[1])  # stable: equal starts keep file order
    words = []
    for k, (text, start, limit) in enumerate(items):
        next_start = items[k + 1][1] if k + 1 < len(items) else math.inf
        end = min(next_start, math.inf if limit is None else limit)
        words.append(Word(text, start, start if math.isinf(end) else max(end, start)))
    return words


def _check_times(items: Sequence[TimedText]) -> None:
    latest = -math.inf
    for index, (text, start, _limit) in enumerate(items):
        if not math.isfinite(start):
            raise CaptionError(f"word {index} ({text!r}) starts at {start}; the file is damaged")
        if start < latest - BACKWARDS_TOLERANCE_S:
            raise CaptionError(
                f"times go backwards: word {index} ({text!r}) starts at {start:.3f}s, "
                f"{latest - start:.3f}s before an earlier word; the file is corrupt or holds two "
                "tracks one after the other. Download the captions again",
                kind="times_backwards",
            )
        latest = max(latest, start)


def interpolate_by_chars(text: str, start: float, end: float) -> list[Word]:
    """Split ``text`` on whitespace and spread the words over ``[start, end]`` by character count.

    Word i starts at ``start + (end - start) * chars_before_i / total_chars``, counting one character
    per gap between words, and ends where the next word starts; the last word ends at ``end``.
    """
    tokens = text.split()
    if len(tokens) <= 1:
        return [Word(token, start, end) for token in tokens]
    total = sum(map(len, tokens)) + len(tokens) - 1
    span = end - start
    starts, offset = [], 0
    for token in tokens:
        starts.append(start + span * offset / total)
        offset += len(token) + 1
    ends = [*starts[1:], end]
    return [Word(token, s, e) for token, s, e in zip(tokens, starts, ends)]


# --- names and languages ----------------------------------------------------------------------

_LANG_TAG = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_LANG_CODE = re.compile(r"^[a-z]{2,3}$")


class TrackName(NamedTuple):
    language: str | None
    translated: bool


def normalize_language(tag: str | None) -> str | None:
    """``"en-US"`` -> ``"en"``; None or an empty tag -> None."""
    if not tag or not tag.strip():
        return None
    return tag.strip().split("-")[0].split("_")[0].lower()


def caption_track_from_name(path: str | os.PathLike) -> TrackName:
    """Language and translation flag from a yt-dlp caption name such as ``ID.de-en.vtt``."""
    parts = Path(path).name.split(".")
    if len(parts) < 3 or not _LANG_TAG.match(parts[-2]):
        return TrackName(None, False)
    primary, *rest = parts[-2].split("-")
    # yt-dlp appends the source language to a translated track ("de-en"); "-orig" marks the
    # original; anything else after the language is a region or script ("pt-BR", "zh-Hans").
    translated = bool(rest) and rest[0] != "orig" and bool(_LANG_CODE.match(rest[0]))
    return TrackName(primary.lower(), translated)


def caption_language_from_name(path: str | os.PathLike) -> str | None:
    """``ID.en.json3`` -> ``"en"``, ``ID.en-orig.vtt`` -> ``"en"``, ``ID.vtt`` -> None."""
    return caption_track_from_name(path).language


# --- dispatch ---------------------------------------------------------------------------------


def parse_caption_text(text: str, fmt: str, *, source: str = "<string>", language: str | None = None) -> Transcript:
    """Parse caption ``text`` of format ``fmt``; ``source`` names it in errors and gives the track
    name (language, translation) when it is a file name."""
    from .clean import clean_words  # imported here: clean.py builds on this module's Word

    parser = _parser_for(fmt, source)
    try:
        raw, timing = parser(text)
    except CaptionError as err:
        raise CaptionError(f"{source}: {err}", err.kind) from err
    words = clean_words(raw)
    if not words:
        raise CaptionError(
            f"{source}: no speech words left after cleaning ({len(raw)} raw words were tags, speaker "
            "marks or empty); the track holds no usable speech: skip it or use another track",
            "captions_empty",
        )
    logger.debug("%s: %d words (%d before cleaning), timing %s", source, len(words), len(raw), timing.value)
    track = caption_track_from_name(source)
    lang = normalize_language(language) or _declared_language(fmt, text) or track.language
    return Transcript(tuple(words), timing, lang, fmt, track.translated)


def _declared_language(fmt: str, text: str) -> str | None:
    reader = _LANGUAGE_READERS.get(fmt)
    return normalize_language(reader(text)) if reader is not None else None


def parse_caption_file(path: str | os.PathLike, fmt: str | None = None, language: str | None = None) -> Transcript:
    """Read and parse a caption file; the format comes from the extension, else from the content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CaptionError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); caption downloads are "
            "UTF-8, so the file is probably not a caption file or was damaged: download it again"
        ) from err
    return parse_caption_text(text, fmt or infer_format(path, text), source=str(path), language=language)


def json_object(text: str) -> dict | None:
    """The top-level JSON object of ``text``, or None when it is not one (for sniffing by structure:
    a key name that merely appears somewhere in the text, e.g. in a video's tags, proves nothing)."""
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def infer_format(path: str | os.PathLike, text: str) -> str:
    """Format from the file extension, else from the content."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext in FORMAT_BY_EXTENSION:
        return FORMAT_BY_EXTENSION[ext]
    # Sniffers see the whole text: a YT-Temporal annotation may put a long "info" before "subtitles".
    content = text.lstrip("\ufeff \t\r\n")
    for name, sniff in _SNIFFERS.items():
        if sniff(content):
            return name
    raise CaptionError(
        f"{path}: cannot tell the caption format from the extension {ext!r} or the content; "
        f"pass fmt= one of {sorted(CAPTION_PARSERS)}",
        "captions_unknown_format",
    )


def _parser_for(fmt: str, source: str) -> Parser:
    try:
        return CAPTION_PARSERS[fmt]
    except KeyError:
        raise CaptionError(
            f"{source}: unknown caption format {fmt!r}; known formats: {sorted(CAPTION_PARSERS)}",
            "captions_unknown_format",
        ) from None
