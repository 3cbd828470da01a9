"""Eq. 1 windows against hand-computed boundaries."""

from __future__ import annotations

import pytest

from tvts_data.config import WindowsConfig
from tvts_data.stages.errors import StageError
from tvts_data.stages.windows import assign_words, cut_windows, eq1_span, span_seconds


def words_at(*starts: float) -> list[dict]:
    return [{"text": f"w{i}", "start": s, "end": s + 0.2} for i, s in enumerate(starts)]


def row(words: list[dict], duration: float, vid: str = "abcdefghijk") -> dict:
    return {"video_id": vid, "video_path": "/v.mp4", "duration": duration, "language": "en",
            "timing": "word", "words": words}


def test_eq1_boundaries_by_hand():
    # s_begin = 2.5, l = 4, K = 4, gap 1: S = 2.5, 7.5, 12.5, 17.5; E = S + 4; span = 4*4 + 3 = 19.
    span = eq1_span(2.5, 4.0, K=4, gap=1.0)
    assert span.starts == (2.5, 7.5, 12.5, 17.5)
    assert span.ends == (6.5, 11.5, 16.5, 21.5)
    assert span_seconds(4.0, 4, 1.0) == 19.0
    assert span.ends[-1] - span.starts[0] == 19.0


def test_words_assigned_by_start_time_inclusive_and_strict():
    span = eq1_span(0.0, 3.0, K=2, gap=1.0)  # [0, 3], [4, 7]
    ws = words_at(0.0, 1.0, 3.0, 3.5, 4.0, 7.0, 7.5)
    inclusive = assign_words(ws, span, inclusive_end=True)
    assert [[w["start"] for w in t] for t in inclusive] == [[0.0, 1.0, 3.0], [4.0, 7.0]]
    strict = assign_words(ws, span, inclusive_end=False)
    assert [[w["start"] for w in t] for t in strict] == [[0.0, 1.0], [4.0]]
    # a word in the 1 s gap (3.5) and one after the window (7.5) belong to no transcript
    assert 3.5 not in [w["start"] for t in inclusive for w in t]


def test_stride_windows_fit_and_carry_transcripts():
    cfg = WindowsConfig(K=4, lengths=(3.0,), gap=1.0, mode="stride", stride=5.0)
    ws = words_at(*[i * 0.5 for i in range(80)])  # a word every 0.5 s for 40 s
    rows, counts = cut_windows(row(ws, 40.0), cfg)
    # span = 15 s; starts 0,5,...,25 fit (25 + 15 = 40), 30 does not
    assert [r["starts"][0] for r in rows] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    first = rows[0]
    assert first["starts"] == [0.0, 4.0, 8.0, 12.0] and first["ends"] == [3.0, 7.0, 11.0, 15.0]
    assert first["texts"][0] == " ".join(f"w{i}" for i in range(7))  # 0.0 .. 3.0 inclusive
    assert all(first["starts"][k] <= w["start"] <= first["ends"][k]
               for k in range(4) for w in first["words"][k])
    assert first["window_id"] == "abcdefghijk:00000"
    assert counts["kept"] == 6 and counts["candidates"] == 6


def test_random_windows_are_seeded_and_in_range():
    cfg = WindowsConfig(mode="random", per_video=5, seed=7)
    ws = words_at(*[i * 0.3 for i in range(300)])
    a, _ = cut_windows(row(ws, 90.0), cfg)
    b, _ = cut_windows(row(ws, 90.0), cfg)
    c, _ = cut_windows(row(ws, 90.0), WindowsConfig(mode="random", per_video=5, seed=8))
    assert [r["starts"] for r in a] == [r["starts"] for r in b]
    assert [r["starts"] for r in a] != [r["starts"] for r in c]
    for r in a:
        length = r["transcript_seconds"]
        assert length in (3.0, 4.0, 5.0)
        assert 0 <= r["starts"][0] and r["ends"][-1] <= 90.0
        assert r["starts"][1] - r["starts"][0] == pytest.approx(length + 1.0)


def test_empty_transcripts_dropped_and_counted():
    cfg = WindowsConfig(K=2, lengths=(3.0,), gap=1.0, stride=7.0)
    # words only in the first 3 s: the first window [0,3],[4,7] has an empty 2nd transcript
    rows, counts = cut_windows(row(words_at(0.5, 1.0, 8.5, 11.0), 14.0), cfg)
    assert [r["starts"][0] for r in rows] == [7.0]
    assert counts["dropped_min_words"] == 1 and counts["kept"] == 1


def test_too_short_video_is_an_error_with_reason():
    with pytest.raises(StageError) as err:
        cut_windows(row(words_at(0.5), 10.0), WindowsConfig())
    assert err.value.kind == "too_short" and "shorter than one window" in err.value.message
