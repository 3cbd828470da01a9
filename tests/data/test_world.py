"""The narrated world and the order-only temporal benchmark, checked on the pixels they produce."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from tvts_data.captions import parse_caption_file
from tvts_data.synth.shapes import COLORS, color_centroid, color_share
from tvts_data.synth.temporal_bench import APPEARANCE_CLASSES, ORDER_PAIRS, BenchConfig, make_temporal_bench
from tvts_data.synth.world import (
    EVENT_KINDS,
    POSITIONAL_WORDS,
    Event,
    WorldConfig,
    make_world,
    plan_events,
)

VISIBLE = 0.002  # share of the frame an object covers at the least (a 96 px frame: ~18 px)


def _frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every decoded frame ``(N, H, W, 3)`` and its presentation time in seconds."""
    with av.open(str(path)) as container:
        decoded = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    return np.array([t for t, _ in decoded]), np.stack([f for _, f in decoded])


def _frame_at(times: np.ndarray, frames: np.ndarray, t: float) -> np.ndarray:
    return frames[int(np.argmin(np.abs(times - t)))]


# ----------------------------------------------------------------------------- the narrated world


def _fake_speech(words) -> float:  # planning without espeak-ng: 0.35 s a word
    return 0.35 * len(words)


def test_sentences_never_say_where_they_stand_and_every_kind_appears_anywhere():
    cfg = WorldConfig()
    positions: dict[str, set[int]] = {k: set() for k in EVENT_KINDS}
    reused = 0
    for seed in range(300):
        events = plan_events(np.random.default_rng(seed), cfg, speech_seconds=_fake_speech)
        assert cfg.events[0] <= len(events) <= cfg.events[1]
        for i, event in enumerate(events):
            words = set(event.sentence)
            assert not words & POSITIONAL_WORDS, f"{' '.join(event.sentence)!r} says where it stands"
            assert not any(w.isdigit() for w in words)
            positions[event.kind].add(min(i, 3))  # first, second, third, later
            assert event.end - event.start >= cfg.event_seconds[0] - 1e-9
            assert event.speech_at - event.start >= 0.2 - 1e-9
            assert event.speech_at + _fake_speech(event.sentence) <= event.end - 0.3 + 1e-9
        starts = [e.start for e in events]
        assert starts == sorted(starts) and all(a.end == b.start for a, b in zip(events, events[1:]))
        objects = Counter(e.obj for e in events)
        reused += max(objects.values()) > 1
    assert all(p == {0, 1, 2, 3} for p in positions.values()), positions  # every template at every position
    assert reused == 300  # objects come back within every video: the action tells transcripts apart


def _check_event_on_screen(event: Event, times: np.ndarray, frames: np.ndarray) -> None:
    first, last = event.words[0].start, event.words[-1].end
    color = COLORS[event.obj.color]
    before, after = _frame_at(times, frames, first), _frame_at(times, frames, last)
    for w in event.words:  # the object is on screen while each word is said
        frame = _frame_at(times, frames, (w.start + w.end) / 2)
        seen = color_share(frame, color) + (color_share(frame, COLORS[event.color2]) if event.color2 else 0)
        assert seen > VISIBLE or event.kind == "recolours", (event.kind, w.text, seen)
    what = f"{event.kind} ({' '.join(event.sentence)})"
    if event.kind == "recolours":  # the blend between: the new colour is closer at the end
        assert color_share(before, color) > VISIBLE, what
        assert color_share(after, COLORS[event.color2]) > color_share(before, COLORS[event.color2]), what
        return
    (y1, x1), (y2, x2) = color_centroid(before, color), color_centroid(after, color)
    a1, a2 = color_share(before, color), color_share(after, color)
    expect = {
        "enters_left": x2 > x1 + 3, "enters_right": x2 < x1 - 3,
        "leaves_top": y2 < y1 - 3, "leaves_bottom": y2 > y1 + 3,
        "grows": a2 > 1.5 * a1, "shrinks": a1 > 1.5 * a2,
    }
    if event.kind in ("splits", "merges"):
        spread = [np.ptp(np.nonzero(color_share_mask(f, color))[1]) for f in (before, after)]
        expect[event.kind] = spread[1] > spread[0] + 3 if event.kind == "splits" else spread[0] > spread[1] + 3
    assert expect.get(event.kind, True), f"{what}: not visible in the pixels between {first:.2f} and {last:.2f} s"


def color_share_mask(frame: np.ndarray, rgb) -> np.ndarray:
    return np.linalg.norm(frame.astype(np.float32) - np.asarray(rgb, dtype=np.float32), axis=-1) < 60


def test_world_speech_falls_inside_its_event_and_the_pixels_show_it(tmp_path):
    kinds = tuple(EVENT_KINDS)
    world = make_world(tmp_path, WorldConfig(videos=3, events=(4, 4), seed=7, kinds=kinds))
    truth = json.loads(world.truth_path.read_text())
    assert len(truth["videos"]) == 3
    seen_kinds = set()
    for video in world.videos:
        times, frames = _frames(video.video_path)
        assert frames.shape[1:] == (96, 96, 3)
        assert abs(len(frames) / video.fps - video.duration) < 1e-6
        for event in video.events:
            seen_kinds.add(event.kind)
            assert [w.text for w in event.words] == list(event.sentence)
            assert event.start <= event.words[0].start and event.words[-1].end <= event.end
            _check_event_on_screen(event, times, frames)
        # the captions carry the same words and times, in a YouTube format the builder reads
        parsed = parse_caption_file(video.caption_path)
        assert [w.text for w in parsed.words] == [w.text for w in video.words]
        assert np.allclose([w.start for w in parsed.words], [w.start for w in video.words], atol=0.011)
    assert {v.format for v in world.videos} == {"json3", "vtt", "srv3"}
    assert len(seen_kinds) >= 6


# ----------------------------------------------------------------------------- the temporal benchmark


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    make_temporal_bench(root, BenchConfig(train_per_class=2, val_per_class=1, seed=3))
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_bench_manifests_and_classes(bench):
    classes = json.loads((bench / "classes.json").read_text())
    order = {c for p in ORDER_PAIRS for c in (p.forward, p.reverse)}
    rows = _rows(bench / "manifest.csv")
    assert Counter(r["label"] for r in rows) == {c: 3 for c in (*order, *APPEARANCE_CLASSES)}
    assert Counter(r["split"] for r in rows) == {"train": 2 * len(rows) // 3, "val": len(rows) // 3}
    assert {r["label"] for r in _rows(bench / "order.csv")} == order
    assert {r["label"] for r in _rows(bench / "appearance.csv")} == set(APPEARANCE_CLASSES)
    assert len(classes["order_pairs"]) == len(ORDER_PAIRS)
    assert all((bench / r["video_path"]).is_file() for r in rows)


def test_bench_order_pairs_are_the_same_frames_reversed(bench):
    split = {r["video_path"]: r["split"] for r in _rows(bench / "manifest.csv")}
    for pair in ORDER_PAIRS:
        for n in range(3):
            fwd = bench / "videos" / pair.forward / f"{pair.forward}-{n:04d}.mp4"
            rev = bench / "videos" / pair.reverse / f"{pair.reverse}-{n:04d}.mp4"
            _, a = _frames(fwd)
            _, b = _frames(rev)
            assert a.shape == b.shape and len(a) == 24
            same = np.abs(a.astype(np.int16) - b[::-1].astype(np.int16)).mean()
            unlike = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
            assert same < 1.5, (pair.forward, n, same)  # equal up to the codec
            assert unlike > 3 * same + 0.5, (pair.forward, n, unlike)  # and the order matters
            assert split[str(fwd.relative_to(bench))] == split[str(rev.relative_to(bench))]


def test_bench_appearance_classes_carry_no_order(bench):
    for label in APPEARANCE_CLASSES:
        _, a = _frames(bench / "videos" / label / f"{label}-0000.mp4")
        assert np.abs(a.astype(np.int16) - a[::-1].astype(np.int16)).mean() < 1.5  # palindromic
