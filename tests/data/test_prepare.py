"""End to end: `prepare` on a generated corpus with a real (session) Ray, real ffmpeg and decord.

Checks counts, that every stored frame is the one the shard says (each frame has its index painted in as
a bar code, read back through JPEG), that transcripts hold exactly the words spoken in their spans, that
bad videos end as ledger rows while good ones still yield windows, and that a killed run resumes to the
same corpus.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tvts_data.config import load_prepare_config
from tvts_data.corpus import Corpus
from tvts_data.runner import latest_status, prepare, read_ledger
from tvts_data.synth import make_bad_corpus, make_sample_corpus, read_timecode

pytestmark = pytest.mark.ray

OVERRIDES = ["windows.K=3", "windows.lengths=[3.0, 4.0]", "windows.stride=1.5", "write.videos_per_chunk=2",
             "frames.segments=4", "frames.candidates=3", "frames.short_side=128", "write.shard_target_mb=0.05"]
WORD_LEVEL = {"json3", "vtt", "srv3", "yttemporal"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample_corpus(tmp_path_factory.mktemp("sample-src"), n_videos=6, seconds=(15, 18), seed=3)


@pytest.fixture(scope="module")
def built(sample, tmp_path_factory, ray_session):
    out = tmp_path_factory.mktemp("corpus")
    cfg = load_prepare_config(None, OVERRIDES)
    result = prepare(sample.root, out, cfg)
    return result, cfg


def shard_rows(root: Path) -> list[dict]:
    rows = []
    for p in sorted((root / "shards").glob("shard-*.parquet")):
        rows.extend(pq.read_table(p).to_pylist())
    return rows


def test_every_video_yields_windows_and_stats_count_them(built, sample):
    result, _ = built
    stats = result.stats
    assert stats["videos"] == {"ok": len(sample.videos)}
    rows = shard_rows(result.corpus.root)
    assert stats["windows"] == len(rows) > 0
    assert {r["video_id"] for r in rows} == {v.id for v in sample.videos}
    assert len({r["window_id"] for r in rows}) == len(rows)
    manifest = json.loads((result.corpus.root / "manifest.json").read_text())
    assert sum(s["rows"] for s in manifest["shards"]) == len(rows)
    assert len(manifest["shards"]) > 3  # the small shard target split chunks into several shards
    assert json.loads((result.corpus.root / "stats.json").read_text())["windows"] == len(rows)


def test_each_stored_frame_is_from_the_time_the_shard_says(built, sample):
    result, cfg = built
    fps = {v.id: v.fps for v in sample.videos}
    M, C = cfg.frames.segments, cfg.frames.candidates
    checked = 0
    for row in shard_rows(result.corpus.root):
        assert len(row["frames"]) == len(row["frame_times"]) == M * C
        assert min(row["height"], row["width"]) == cfg.frames.short_side
        seg = (row["ends"][-1] - row["starts"][0]) / M
        for i, (jpeg, t) in enumerate(zip(row["frames"], row["frame_times"])):
            frame = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
            assert read_timecode(frame) == round(t * fps[row["video_id"]]), (row["window_id"], i)
            m = i // C
            lo = row["starts"][0] + m * seg
            assert lo - 1.0 / fps[row["video_id"]] - 1e-3 <= t <= lo + seg + 1e-3
            checked += 1
    assert checked > 100


def test_transcripts_hold_the_words_spoken_in_their_spans(built, sample):
    result, _ = built
    truth = {v.id: v for v in sample.videos}
    compared = 0
    for row in shard_rows(result.corpus.root):
        v = truth[row["video_id"]]
        if v.format not in WORD_LEVEL:
            continue
        for s, e, text in zip(row["starts"], row["ends"], row["texts"]):
            expected = [w.text for w in v.words if s <= w.start <= e]
            # a word starting within 20 ms of a boundary may fall either side after millisecond rounding
            edge = [w for w in v.words if abs(w.start - s) < 0.02 or abs(w.start - e) < 0.02]
            if not edge:
                assert text.split() == expected, (row["window_id"], text, expected)
                compared += 1
    assert compared > 20


def test_bad_input_ends_in_the_ledger_and_good_videos_survive(tmp_path, ray_session):
    expected = make_bad_corpus(tmp_path / "bad")
    cfg = load_prepare_config(None, OVERRIDES)
    result = prepare(tmp_path / "bad", tmp_path / "out", cfg)
    final = latest_status(result.corpus)
    good = [vid for vid, kind in expected.items() if kind == "ok"]
    assert len(good) >= 2
    for vid, kind in expected.items():
        row = final[vid]
        allowed = kind.split("|")
        got = "ok" if row["status"] == "ok" and row["stage"] == "frames" else row["error_kind"]
        assert got in allowed, (vid, row)
        if got != "ok":
            assert row["message"] and (vid in row["message"] or "video" in row["message"])
    windows = {r["video_id"] for r in shard_rows(result.corpus.root)}
    assert set(good) <= windows
    assert all(r["error_kind"] != "internal_error" for r in read_ledger(result.corpus))


def _done_parts(root: Path) -> int:
    d = root / "ledger" / "frames"
    return len(list(d.glob("*.parquet"))) if d.exists() else 0


def test_killed_run_resumes_to_the_same_corpus(built, sample, tmp_path, ray_session):
    reference, cfg = built
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "tvts_data.cli", "prepare", "--input", str(sample.root), "--output", str(out),
            "--set", "run.num_cpus=1"] + [a for o in OVERRIDES for a in ("--set", o)]
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    deadline = time.monotonic() + 240
    while _done_parts(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed; make the corpus larger"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every process it started
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in (out / "ledger" / "frames").glob("*.parquet")}
    assert 1 <= len(finished) < 3

    result = prepare(sample.root, out, cfg)
    assert not list(out.rglob(".tmp-*"))
    ref_rows, new_rows = shard_rows(reference.corpus.root), shard_rows(out)
    key = lambda r: (r["window_id"], r["starts"], r["texts"], r["frame_times"])  # noqa: E731
    assert [key(r) for r in new_rows] == [key(r) for r in ref_rows]
    assert sorted(p.name for p in (out / "shards").iterdir()) == \
        sorted(p.name for p in (reference.corpus.root / "shards").iterdir())
    assert result.stats["videos"] == reference.stats["videos"]
    # chunks finished before the kill were not redone: their ledger parts were not rewritten
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert len(read_ledger(Corpus(out), "frames")) == len(sample.videos)


def test_a_stage_reruns_alone_on_the_previous_output(built, tmp_path, ray_session):
    reference, _ = built
    cfg = load_prepare_config(None, OVERRIDES + ["windows.K=2"])
    result = prepare(reference.corpus.root, tmp_path / "k2", cfg, stages=("windows", "frames"))
    rows = shard_rows(result.corpus.root)
    assert rows and all(len(r["texts"]) == 2 for r in rows)
    assert not (tmp_path / "k2" / "ledger" / "words").samefile(reference.corpus.root / "ledger" / "words")
    assert (tmp_path / "k2" / "words").exists()
