"""Eq. 1 of the paper: K consecutive transcripts of l seconds separated by 1 s gaps.

    S_k = s_begin + (k - 1)(l + 1),   E_k = S_k + l,   span = K l + (K - 1)

A word belongs to transcript k when its start time lies in [S_k, E_k] (inclusive as in the paper; the
reference code is strict, `WindowsConfig.inclusive_end=False` gives that). Windows whose span does not
fit in the video are not cut: a video shorter than one window is rejected with ``too_short`` (the
reference code would use it whole and stretch the transcripts; we prefer to say why and drop it).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tvts_data.config import WindowsConfig
from tvts_data.schema import window_id
from tvts_data.stages.errors import StageError


@dataclass(frozen=True)
class Span:
    starts: tuple[float, ...]  # S_k
    ends: tuple[float, ...]  # E_k
    length: float  # l


def eq1_span(s_begin: float, length: float, K: int, gap: float) -> Span:
    starts = tuple(s_begin + k * (length + gap) for k in range(K))
    return Span(starts, tuple(s + length for s in starts), length)


def span_seconds(length: float, K: int, gap: float) -> float:
    return K * length + (K - 1) * gap


def video_rng(video_id: str, seed: int) -> np.random.Generator:
    """A generator that depends on the video and the seed only, so any worker cuts the same windows."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def window_starts(duration: float, cfg: WindowsConfig, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(s_begin, l) of every window to cut from a video of `duration` seconds."""
    picks: list[tuple[float, float]] = []
    if cfg.mode == "stride":
        s = 0.0
        while True:
            length = float(rng.choice(cfg.lengths))
            if s + span_seconds(length, cfg.K, cfg.gap) > duration:
                break
            picks.append((s, length))
            s += cfg.stride
    elif cfg.mode == "random":
        for _ in range(cfg.per_video):
            length = float(rng.choice(cfg.lengths))
            room = duration - span_seconds(length, cfg.K, cfg.gap)
            if room < 0:
                continue
            # Paper/reference: an integer in [0, dur - span - 1] plus U(0, 1); clipped so it fits.
            s = float(rng.integers(0, max(1, math.floor(room)))) + float(rng.random())
            picks.append((min(s, room), length))
    else:
        raise ValueError(f"windows.mode must be 'stride' or 'random', got {cfg.mode!r}")
    return picks


def assign_words(words: Sequence[dict[str, Any]], span: Span, inclusive_end: bool) -> list[list[dict[str, Any]]]:
    """The words of each transcript, by start time."""
    starts = np.array([w["start"] for w in words], dtype=np.float64)
    out = []
    for s, e in zip(span.starts, span.ends):
        lo = np.searchsorted(starts, s, side="left")
        hi = np.searchsorted(starts, e, side="right" if inclusive_end else "left")
        out.append([dict(words[i]) for i in range(lo, hi)])
    return out


def cut_windows(words_row: dict[str, Any], cfg: WindowsConfig) -> tuple[list[dict[str, Any]], Counter]:
    """All Eq. 1 windows of one video (schema.WINDOWS rows) and what each filter dropped.

    Raises StageError("too_short") when not one window fits in the video.
    """
    video_id, duration = words_row["video_id"], float(words_row["duration"])
    words = sorted(words_row["words"], key=lambda w: w["start"])
    shortest = span_seconds(min(cfg.lengths), cfg.K, cfg.gap)
    if duration < shortest:
        raise StageError("too_short", f"video {video_id}: {duration:.2f} s is shorter than one window "
                         f"({shortest:.0f} s for K={cfg.K}, l={min(cfg.lengths):g}, gap={cfg.gap:g}); "
                         "nothing to cut. Lower windows.K or windows.lengths to use short videos.")
    counts: Counter = Counter()
    rows = []
    for s_begin, length in window_starts(duration, cfg, video_rng(video_id, cfg.seed)):
        counts["candidates"] += 1
        span = eq1_span(s_begin, length, cfg.K, cfg.gap)
        per_transcript = assign_words(words, span, cfg.inclusive_end)
        if min(len(t) for t in per_transcript) < cfg.min_words:
            counts["dropped_min_words"] += 1
            continue
        rows.append(_window_row(words_row, len(rows), span, per_transcript))
    counts["kept"] = len(rows)
    return rows, counts


def _window_row(words_row: dict[str, Any], index: int, span: Span,
                per_transcript: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "window_id": window_id(words_row["video_id"], index),
        "video_id": words_row["video_id"],
        "window_index": index,
        "video_path": words_row["video_path"],
        "duration": words_row["duration"],
        "language": words_row["language"],
        "timing": words_row["timing"],
        "transcript_seconds": span.length,
        "starts": list(span.starts),
        "ends": list(span.ends),
        "texts": [" ".join(w["text"] for w in t) for t in per_transcript],
        "words": per_transcript,
    }
