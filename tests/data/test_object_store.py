"""A corpus in object storage, end to end against a real S3-protocol server on loopback (moto's server
mode): `tvts-data prepare --output s3://...` killed with SIGKILL and resumed to the corpus the local
folder gets, a stage rerun from one bucket corpus into another, fencing, and the trainer reading it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tvts_data.config import load_prepare_config
from tvts_data.corpus import StaleRunError
from tvts_data.remote import ObjectCorpus
from tvts_data.runner import prepare
from tvts_data.synth import make_sample_corpus

pytestmark = pytest.mark.ray

# K=4 transcripts and 8 segments: what the trainer's tiny preset reads
OVERRIDES = ["windows.K=4", "windows.lengths=[2.0]", "windows.stride=2.0", "write.videos_per_chunk=1",
             "frames.segments=8", "frames.candidates=3", "frames.short_side=72", "write.shard_target_mb=0.03"]
REPO = Path(__file__).resolve().parents[2]
BUCKET = "tvts-corpora"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample_corpus(tmp_path_factory.mktemp("s3-src"), n_videos=4, seconds=(14, 16), seed=5)


@pytest.fixture(scope="module")
def local(sample, tmp_path_factory, ray_session):
    """The same input built into a folder: what the bucket must end up holding."""
    return prepare(sample.root, tmp_path_factory.mktemp("local"), load_prepare_config(None, OVERRIDES))


@pytest.fixture(scope="module")
def bucket(s3_server):
    s3_server.create_dir(BUCKET)
    return s3_server


def bucket_files(s3: pafs.S3FileSystem, prefix: str) -> dict[str, pafs.FileInfo]:
    infos = s3.get_file_info(pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True))
    return {i.path[len(BUCKET) + len(prefix) + 2:]: i for i in infos if i.type == pafs.FileType.File}


def read_bytes(s3: pafs.S3FileSystem, path: str) -> bytes:
    with s3.open_input_stream(path) as f:
        return f.read()


def shard_keys(rows: list[dict]) -> list[tuple]:
    return [(r["window_id"], r["starts"], r["texts"], r["frame_times"], r["frames"]) for r in rows]


def s3_rows(s3: pafs.S3FileSystem, prefix: str) -> list[dict]:
    names = sorted(n for n in bucket_files(s3, prefix) if n.startswith("shards/"))
    return [r for n in names for r in pq.read_table(f"{BUCKET}/{prefix}/{n}", filesystem=s3).to_pylist()]


def local_rows(root: Path) -> list[dict]:
    return [r for p in sorted((root / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def killed_and_resumed(sample, bucket, tmp_path_factory):
    """`tvts-data prepare --output s3://...` killed with SIGKILL (driver and workers) once a chunk is
    published, then resumed: (URI, the ledger parts published before the kill, the result, scratch)."""
    uri, scratch = f"s3://{BUCKET}/killed", tmp_path_factory.mktemp("scratch")
    argv = [sys.executable, "-m", "tvts_data.cli", "prepare", "--input", str(sample.root), "--output", uri,
            "--set", "run.num_cpus=1", "--set", f"run.scratch_dir={scratch}"]
    argv += [a for o in OVERRIDES for a in ("--set", o)]
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    deadline = time.monotonic() + 240
    done = lambda: [n for n in bucket_files(bucket, "killed") if n.startswith("ledger/frames/")]  # noqa: E731
    while not done() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed; make the corpus larger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {n: read_bytes(bucket, f"{BUCKET}/killed/{n}") for n in done()}
    assert 1 <= len(finished) < len(sample.videos)
    result = prepare(sample.root, uri, load_prepare_config(None, OVERRIDES + [f"run.scratch_dir={scratch}"]))
    return uri, finished, result, scratch


def test_killed_prepare_into_a_bucket_resumes_to_the_local_corpus(killed_and_resumed, sample, local, bucket):
    uri, finished, result, scratch = killed_and_resumed
    assert result.location == uri
    files = bucket_files(bucket, "killed")
    assert shard_keys(s3_rows(bucket, "killed")) == shard_keys(local_rows(local.corpus.root))
    assert sorted(n for n in files if n.startswith("shards/")) == \
        sorted(f"shards/{p.name}" for p in (local.corpus.root / "shards").iterdir())
    assert not [n for n in files if ".tmp-" in n]
    # chunks published before the kill were not redone: their ledger parts are byte for byte the same
    assert {n: read_bytes(bucket, f"{BUCKET}/killed/{n}") for n in finished} == finished
    assert result.stats["videos"] == local.stats["videos"] == {"ok": len(sample.videos)}
    stats = json.loads(read_bytes(bucket, f"{BUCKET}/killed/stats.json"))
    manifest = json.loads(read_bytes(bucket, f"{BUCKET}/killed/manifest.json"))
    assert stats["windows"] == manifest["windows"] == local.stats["windows"]
    assert {s["path"]: s["rows"] for s in manifest["shards"]} == \
        {s["path"]: s["rows"] for s in json.loads((local.corpus.root / "manifest.json").read_text())["shards"]}
    # every chunk's workspace is gone once published; only the driver's mirror stays on local disk
    assert sorted(p.name for p in (scratch / ObjectCorpus(uri).key).iterdir()) == ["driver"]


def test_a_stage_reruns_from_one_bucket_corpus_into_another(killed_and_resumed, bucket, tmp_path):
    uri, _, _, scratch = killed_and_resumed
    files = bucket_files(bucket, "killed")
    cfg_k2 = load_prepare_config(None, OVERRIDES + ["windows.K=2", f"run.scratch_dir={scratch}"])
    rerun = prepare(uri, f"s3://{BUCKET}/k2", cfg_k2, stages=("windows", "frames"))
    rows = s3_rows(bucket, "k2")
    assert rows and all(len(r["texts"]) == 2 for r in rows)
    assert rerun.stats["windows"] == len(rows)
    k2 = bucket_files(bucket, "k2")
    assert {n for n in k2 if n.startswith(("words/", "ledger/words/"))} == \
        {n for n in files if n.startswith(("words/", "ledger/words/"))}


def test_inspect_and_pretrain_read_the_bucket_corpus(killed_and_resumed, local, tmp_path, capsys):
    """`tvts-data inspect s3://...`, then `tvts-train pretrain --data s3://...` and `export`, as users run
    them (the trainer's tiny preset, DeepSpeed on CPU)."""
    from tvts_data.cli import main

    uri = killed_and_resumed[0]
    assert main(["inspect", uri, "--png", str(tmp_path / "sheet.png")]) == 0
    printed = capsys.readouterr().out
    assert f"windows in shards: {local.stats['windows']}" in printed and "per window" in printed
    assert (tmp_path / "sheet.png").stat().st_size > 0

    bin_dir = Path(sys.executable).parent
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(bin_dir / "tvts-train"), "pretrain", "--deepspeed",
                           str(REPO / "infra" / "deepspeed" / "cpu-zero2.json"), "--config", "tiny", "--data", uri,
                           "--output", str(run), "--max-steps", "2", "--set", "train.ckpt_every=2",
                           "--set", "data.batch_size=2", "--set", "train.log_every=1"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2"]
    done = subprocess.run([str(bin_dir / "tvts-train"), "export", "--checkpoint", str(run / "checkpoints"),
                           "--output", str(tmp_path / "encoder.safetensors"), "--config", "tiny"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "encoder.safetensors").stat().st_size > 0


def test_a_worker_of_an_earlier_run_writes_nothing_into_the_bucket(bucket, tmp_path):
    store = ObjectCorpus(f"s3://{BUCKET}/fenced")
    earlier = store.claim(tmp_path / "a").run_token
    store.claim(tmp_path / "b")  # a new prepare started on the same corpus
    with pytest.raises(StaleRunError, match="another prepare run"):
        store.check_fence(earlier)


def test_a_missing_bucket_is_one_clear_error(sample, bucket, tmp_path, caplog):
    from tvts_data.cli import main

    code = main(["prepare", "--input", str(sample.root), "--output", "s3://no-such-bucket/corpus",
                 "--set", "run.engine=local", "--set", f"run.scratch_dir={tmp_path}"])
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "s3://no-such-bucket/corpus" in errors[0] and "AWS_" in errors[0]


def test_extra_shard_parts_go_from_the_top_so_a_kill_never_leaves_a_gap(bucket, tmp_path, monkeypatch):
    """An earlier attempt left parts 0-4 of a chunk; the new one has 2. A kill during the deletions leaves
    the extras contiguous, so the next publish still finds and deletes every one of them."""
    store = ObjectCorpus(f"s3://{BUCKET}/parts")
    (tmp_path / "p").write_bytes(b"x")
    for part in range(5):
        store.put(tmp_path / "p", f"shards/shard-00007-{part:03d}.parquet")
    real_delete, calls = store.delete, []

    def killed_after_one(rel: str) -> None:
        if calls:
            raise KeyboardInterrupt  # the kill
        calls.append(rel)
        real_delete(rel)

    monkeypatch.setattr(store, "delete", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        store._delete_extra_parts(7, 2, None)
    assert sorted(bucket_files(bucket, "parts")) == [f"shards/shard-00007-{p:03d}.parquet" for p in range(4)]
    monkeypatch.setattr(store, "delete", real_delete)
    store._delete_extra_parts(7, 2, None)
    assert sorted(bucket_files(bucket, "parts")) == [f"shards/shard-00007-{p:03d}.parquet" for p in range(2)]


def test_public_paths_keep_the_uri_query_last(tmp_path):
    from tvts_data.corpus import Corpus

    work = Corpus(tmp_path, location="s3://b/c?endpoint_override=http://127.0.0.1:9000")
    assert work.public_path(tmp_path / "raw" / "v.mp4") == "s3://b/c/raw/v.mp4?endpoint_override=http://127.0.0.1:9000"
    assert Corpus(tmp_path).public_path(tmp_path / "raw" / "v.mp4") == str(tmp_path / "raw" / "v.mp4")


def test_retry_failed_on_a_uri_without_a_corpus_is_an_error(bucket):
    from tvts_data.runner import retry_failed

    with pytest.raises(FileNotFoundError, match="not a corpus"):
        retry_failed(f"s3://{BUCKET}/nothing-here")


def test_a_seed_cut_short_is_finished_by_the_rerun(killed_and_resumed, bucket, tmp_path):
    """seed_from_corpus copies file by file and skips what is there: a copy the kill cut short (a missing
    object) is finished by the next run instead of the folder being taken as done."""
    from tvts_data.runner import seed_from_corpus

    uri = killed_and_resumed[0]
    seed_from_corpus(f"s3://{BUCKET}/seeded", uri, "frames")
    copied = bucket_files(bucket, "seeded")
    assert {n for n in copied if n.startswith("windows/")} == {n for n in bucket_files(bucket, "killed")
                                                                if n.startswith("windows/")}
    victim = sorted(n for n in copied if n.startswith("windows/"))[0]
    bucket.delete_file(f"{BUCKET}/seeded/{victim}")
    seed_from_corpus(f"s3://{BUCKET}/seeded", uri, "frames")
    assert set(bucket_files(bucket, "seeded")) == set(copied)


def test_an_unreachable_store_is_not_mistaken_for_a_newer_run(bucket):
    """The fence reads the run token: a network error must surface as itself, never as 'another prepare
    run claimed this corpus' (which would stop a live run with the wrong reason)."""
    store = ObjectCorpus("s3://b/c?endpoint_override=http://127.0.0.1:1&scheme=http")
    with pytest.raises(OSError) as err:
        store.check_fence("abc")
    assert not isinstance(err.value, StaleRunError) and "Could not connect" in str(err.value)
