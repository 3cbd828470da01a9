"""`tvts-data prepare` on a real two-node Ray cluster, started the way users start one: `ray start --head`
and a second `ray start --address` on loopback, one CPU each. The corpus must equal the local engine's,
both nodes must have run chunks, and the test stops exactly the processes it started."""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tvts_data.config import load_prepare_config
from tvts_data.runner import prepare
from tvts_data.synth import make_sample_corpus

pytestmark = pytest.mark.ray

OVERRIDES = ["windows.K=3", "windows.lengths=[3.0]", "windows.stride=3.0", "frames.segments=4",
             "frames.short_side=64", "write.videos_per_chunk=1"]
RAY = Path(sys.executable).parent / "ray"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def node_count(address: str, env: dict[str, str]) -> int:
    out = subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True, text=True, env=env,
                         timeout=60).stdout
    return len(re.findall(r"^\s*1 node_", out, flags=re.M)) if "Active:" in out else 0


@pytest.fixture
def two_node_cluster():
    # Ray's socket paths must stay under the AF_UNIX limit: a short temp dir, not pytest's deep one
    temp = Path(tempfile.mkdtemp(prefix="tvts-ray-"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    gcs, nm1, om1, nm2, om2 = free_ports(5)
    address = f"127.0.0.1:{gcs}"
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--block", "--node-ip-address=127.0.0.1"]
    nodes = [subprocess.Popen([str(RAY), "start", "--head", f"--port={gcs}", f"--temp-dir={temp}",
                               "--include-dashboard=false", f"--node-manager-port={nm1}",
                               f"--object-manager-port={om1}", "--min-worker-port=20000",
                               "--max-worker-port=20999", *common],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 120
        while node_count(address, env) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        nodes.append(subprocess.Popen([str(RAY), "start", f"--address={address}", f"--node-manager-port={nm2}",
                                       f"--object-manager-port={om2}", "--min-worker-port=21000",
                                       "--max-worker-port=21999", *common],
                                      env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        while node_count(address, env) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert node_count(address, env) == 2, "the two-node cluster did not come up in 120 s"
        yield address, env
    finally:
        groups = [p.pid for p in nodes]  # each `ray start --block` leads the session of the processes it started
        for p in reversed(nodes):
            os.killpg(p.pid, signal.SIGTERM)
        for p in nodes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        deadline = time.monotonic() + 30
        while _alive_in_groups(groups) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = _alive_in_groups(groups)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes of the test cluster outlived `ray start --block`: {leftovers}"


def _alive_in_groups(groups: list[int]) -> list[int]:
    """PIDs still running in the process groups the test started (and only those)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in groups and "Z" not in (entry / "stat").read_text().split()[2]:
                    alive.append(int(entry.name))
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
    return alive


def shard_keys(root: Path) -> list[tuple]:
    rows = [r for p in sorted((root / "shards").glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]
    return sorted((r["window_id"], tuple(r["starts"]), tuple(r["texts"]), tuple(r["frame_times"]),
                   tuple(r["frames"])) for r in rows)


def test_prepare_on_a_two_node_cluster_equals_the_local_engine(two_node_cluster, tmp_path):
    address, env = two_node_cluster
    src = make_sample_corpus(tmp_path / "src", n_videos=4, seconds=(14, 15), seed=21, formats=("json3",))
    local = prepare(src.root, tmp_path / "local", load_prepare_config(None, OVERRIDES + ["run.engine=local"]))

    args = [sys.executable, "-m", "tvts_data.cli", "prepare", "--input", str(src.root), "--output",
            str(tmp_path / "cluster"), "--ray-address", address] + [a for o in OVERRIDES for a in ("--set", o)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    assert shard_keys(tmp_path / "cluster") == shard_keys(local.corpus.root) != []
    by_node = re.search(r"chunks by node: (\{.*\})", done.stderr)
    assert by_node, done.stderr[-3000:]
    nodes = ast.literal_eval(by_node.group(1))
    assert len(nodes) == 2 and sum(nodes.values()) == 4, nodes
