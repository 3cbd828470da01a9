"""Align a cleaned ("denoised") transcript onto timed words, keeping the timing.

The TVTS reference aligned YT-Temporal's denoised text (punctuation, casing, fixed words) onto the
ASR words with an edit-distance DTW. This module does the same job as a word-level edit-distance
alignment (Levenshtein over words; substituting word x by y costs the character edit distance of
their lower-cased alphanumerics divided by the longer length, inserting or deleting a word costs 1),
which keeps the alignment one-to-one so that every clean word gets exactly one time.

Speed: exact matches are found first (``difflib.SequenceMatcher``) and only the stretches between
them are aligned by dynamic programming, so a 10-minute transcript aligns in milliseconds. A
stretch larger than ``MAX_GAP_CELLS`` (the two texts disagree on a long passage) is paired by
position instead, with a warning.

Times of the result:

- a clean word paired with a timed word takes that word's start and end;
- clean words inserted after a paired word share, with it, the span from its start to the next
  paired word's start (its own end when none follows), divided by character count; inserted words
  before the first paired word share that word's span the same way;
- timed words with no clean partner are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from difflib import SequenceMatcher

from .base import Word, interpolate_by_chars
from .clean import clean_tokens

logger = logging.getLogger(__name__)

MAX_GAP_CELLS = 40_000  # a 200 x 200 word disagreement; the DP is pure Python
_INDEL = 1.0


def align_clean_transcript(timed: Sequence[Word], clean_text: str) -> list[Word]:
    """Words of ``clean_text`` (cleaned like captions) with times taken from ``timed``."""
    clean = clean_tokens(clean_text)
    if not timed or not clean:
        return []
    owner = align_words([_key(w.text) for w in timed], [_key(t) for t in clean])
    return _place(timed, clean, owner)


def align_words(a: Sequence[str], b: Sequence[str]) -> list[int | None]:
    """For each word of ``b``, the index of its partner in ``a``, or None when it was inserted."""
    owner: list[int | None] = [None] * len(b)
    a_done = b_done = 0
    for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        _align_gap(a, b, (a_done, block.a), (b_done, block.b), owner)
        for k in range(block.size):
            owner[block.b + k] = block.a + k
        a_done, b_done = block.a + block.size, block.b + block.size
    return owner


def _align_gap(
    a: Sequence[str],
    b: Sequence[str],
    a_range: tuple[int, int],
    b_range: tuple[int, int],
    owner: list[int | None],
) -> None:
    (a0, a1), (b0, b1) = a_range, b_range
    n, m = a1 - a0, b1 - b0
    if n == 0 or m == 0:
        return
    if n * m > MAX_GAP_CELLS:
        logger.warning("aligning %d timed with %d clean words by position: too far apart", n, m)
        for k in range(min(n, m)):
            owner[b0 + k] = a0 + k
        return
    for i, j in _edit_path(a[a0:a1], b[b0:b1]):
        owner[b0 + j] = a0 + i


def _edit_path(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs (i, j) of the cheapest word-level edit script from ``a`` to ``b``."""
    n, m = len(a), len(b)
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i * _INDEL
    for j in range(m + 1):
        cost[0][j] = j * _INDEL
    for i in range(1, n + 1):
        row, prev = cost[i], cost[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + word_distance(a[i - 1], b[j - 1]), prev[j] + _INDEL, row[j - 1] + _INDEL)
    return _backtrack(cost, a, b)


def _backtrack(cost: list[list[float]], a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    pairs, i, j = [], len(a), len(b)
    while i > 0 and j > 0:
        if cost[i][j] == cost[i - 1][j - 1] + word_distance(a[i - 1], b[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + _INDEL:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def word_distance(x: str, y: str) -> float:
    """Character edit distance divided by the longer length: 0 for equal words, 1 for unrelated."""
    if x == y:
        return 0.0
    if not x or not y:
        return 1.0
    prev = list(range(len(y) + 1))
    for i, cx in enumerate(x, 1):
        cur = [i]
        for j, cy in enumerate(y, 1):
            cur.append(min(prev[j - 1] + (cx != cy), prev[j] + 1, cur[j - 1] + 1))
        prev = cur
    return prev[-1] / max(len(x), len(y))


def _key(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _place(timed: Sequence[Word], clean: Sequence[str], owner: Sequence[int | None]) -> list[Word]:
    groups = _groups(owner)
    words: list[Word] = []
    for g, (anchor, members) in enumerate(groups):
        first = timed[anchor]
        end = first.end
        if owner[members[-1]] is None and g + 1 < len(groups):
            end = max(first.start, timed[groups[g + 1][0]].start)
        texts = [clean[j] for j in members]
        words.extend(interpolate_by_chars(" ".join(texts), first.start, end))
    return words


def _groups(owner: Sequence[int | None]) -> list[tuple[int, list[int]]]:
    """Clean indices grouped under the timed word they share time with (see module doc)."""
    groups: list[tuple[int, list[int]]] = []
    leading: list[int] = []
    for j, i in enumerate(owner):
        if i is not None:
            groups.append((i, [*leading, j]))
            leading = []
        elif groups:
            groups[-1][1].append(j)
        else:
            leading.append(j)
    return groups
