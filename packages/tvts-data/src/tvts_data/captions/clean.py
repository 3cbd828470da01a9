"""Cleaning shared by every caption format: text repair, word splitting, non-speech removal.

Rules, in order:

1. HTML entities are unescaped until none is left (YouTube's srv1 and some json3 tracks escape twice:
   ``&amp;#39;`` -> ``&#39;`` -> ``'``).
2. ``ftfy.fix_text`` repairs mojibake (``donâ€™t`` -> ``don't``); it also straightens curly quotes.
   Pure-ASCII text without control characters skips it: ftfy has nothing to fix there and it is the
   slowest step.
3. A caption item holding several words (a manual caption line, a multi-word seg) is split on
   whitespace and its words are spread over its time span by character count
   (``base.interpolate_by_chars``).
4. Non-speech is dropped: bracketed and parenthesised tags of up to ``MAX_TAG_WORDS`` words
   (``[Music]``, ``[ __ ]`` for censored words, ``(laughs)``, ``(door slams)``), music notes
   (``♪``; the sung words between notes are kept), speaker marks (``>>``, a lone ``-``), ellipses,
   tokens without a letter or digit (full-width ``。``, a lone ``!``) and empty tokens. A leading ``>>``
   or dialogue dash glued to a word (``>>Hi``, ``-Hi``) is removed.

Before step 3, ``>>`` marks and a speaker label at the start of a line (``JOHN:``, ``DR. SMITH:``, all
capitals) are removed and ``--`` between two words becomes a space, so they take no share of the item's
time: the first spoken word starts when the item does.
   Parenthesised text is treated as a sound description, as manual captions use it; speech written
   in parentheses is lost, a deliberate trade-off.

Times of the words that stay are not changed; a dropped word leaves a gap.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

import ftfy

from .base import Word, interpolate_by_chars

MAX_TAG_WORDS = 6
_CLOSER = {"[": "]", "(": ")"}
_TRAILING_PUNCT = ".,!?;:'\""
_MUSIC_NOTES = str.maketrans("", "", "♪♫♬♩")
_DASHES = "-\u2013\u2014"  # hyphen, en dash, em dash: dialogue marks in manual captions
_NON_WORD = re.compile(rf"^(?:>+|[{_DASHES}]+|\.{{2,}}|\u2026+)$")
_GLUED_MARK = re.compile(rf"^(?:>>+|[{_DASHES}](?=[^\W\d_]))")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPEAKER_CHANGE = re.compile(r">>+")
# "JOHN:", "DR. SMITH:" at the start of a line: manual captions name the speaker, nobody says it
_SPEAKER_LABEL = re.compile(r"^[ \t]*(?:[A-Z][A-Z.'\-]+(?: [A-Z][A-Z.'\-]*){0,2}):\s+(?=\S)", re.M)
_WORD_DASH = re.compile(r"(?<=\w)(?:--|\u2014)(?=\w)")


def clean_text(text: str) -> str:
    """Unescape HTML entities (repeatedly) and repair broken Unicode with ftfy."""
    for _ in range(3):
        if "&" not in text:
            break
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if not text.isascii() or _CONTROL.search(text):
        text = ftfy.fix_text(text)
    return text


def clean_words(words: Iterable[Word]) -> list[Word]:
    """Repair text, split multi-word items into timed words, drop non-speech (see module doc)."""
    tokens: list[Word] = []
    for word in words:
        tokens.extend(interpolate_by_chars(_unmark(clean_text(word.text)), word.start, word.end))
    return _drop_non_speech(tokens)


def _unmark(text: str) -> str:
    """Remove what is not speech before times are spread over the characters: a ``>>`` speaker change
    or a leading ``NAME:`` label would otherwise take a share of the item's time and make the first
    spoken word start late; ``--`` between two words separates them."""
    text = _SPEAKER_LABEL.sub("", _SPEAKER_CHANGE.sub(" ", text))
    return _WORD_DASH.sub(" ", text).strip()


def clean_tokens(text: str) -> list[str]:
    """The words :func:`clean_words` would keep from an untimed text."""
    return [word.text for word in clean_words([Word(text, 0.0, 0.0)])]


def _drop_non_speech(tokens: list[Word]) -> list[Word]:
    kept, i = [], 0
    while i < len(tokens):
        tag_end = _tag_end(tokens, i)
        if tag_end is not None:
            i = tag_end + 1
            continue
        text = _strip_marks(tokens[i].text)
        if text:
            kept.append(tokens[i] if text == tokens[i].text else Word(text, tokens[i].start, tokens[i].end))
        i += 1
    return kept


def _tag_end(tokens: list[Word], i: int) -> int | None:
    """Index of the token that closes a ``[...]``/``(...)`` tag opened at ``i``; None if no tag.

    An opening bracket left unclosed within MAX_TAG_WORDS is kept as text, so a stray ``(`` cannot
    swallow the rest of a transcript.
    """
    closer = _CLOSER.get(tokens[i].text[:1])
    if closer is None:
        return None
    for j in range(i, min(i + MAX_TAG_WORDS, len(tokens))):
        if tokens[j].text.rstrip(_TRAILING_PUNCT).endswith(closer):
            return j
    return None


def _spoken(ch: str) -> bool:
    """A character someone says: letters, digits, symbols ("$", "+") and "&", "%", "@", "#"."""
    return ch.isalnum() or ch in "&%@#" or unicodedata.category(ch).startswith("S")


def _strip_marks(text: str) -> str:
    text = text.translate(_MUSIC_NOTES)
    if _NON_WORD.match(text) or not any(_spoken(ch) for ch in text):  # marks, lone punctuation ("。", "!")
        return ""
    return _GLUED_MARK.sub("", text, count=1)
