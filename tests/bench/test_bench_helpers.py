"""The arithmetic the benchmarks report: GPU peak lookup, FLOPs per clip, the overlap estimate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_data import overlap_saving  # noqa: E402
from gpu_train_bench import peak_tflops, step_flops  # noqa: E402
from tvts_data.config import FramesConfig  # noqa: E402
from tvts_train.config import load_config  # noqa: E402


@pytest.mark.parametrize("name,peak", [("NVIDIA H200 NVL", 835.0), ("NVIDIA H200", 989.0),
                                       ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                       ("NVIDIA A100-SXM4-80GB", 312.0), ("Tesla T4", None)])
def test_peak_table_matches_the_specific_part_first(name, peak):
    assert peak_tflops(name, None) == peak
    assert peak_tflops(name, 123.0) == 123.0


def test_paper_preset_flops_per_clip():
    flops = step_flops(load_config("vit-b16-paper").model, with_text=True)
    assert flops["total"] / 1e9 == pytest.approx(312.9, abs=0.1)
    assert (flops["total"] - flops["text_distilbert"]) / 1e9 == pytest.approx(261.4, abs=0.1)


def test_overlap_saving_counts_each_moment_once():
    cfg = FramesConfig(segments=16, candidates=3)
    window = lambda a, b: {"starts": [a], "ends": [b]}  # noqa: E731
    assert overlap_saving([[window(0, 19), window(30, 49)]], cfg) == pytest.approx(0.0)
    assert overlap_saving([[window(0, 19), window(10, 29)]], cfg) == pytest.approx(1 - 29 / 38)
    assert overlap_saving([[window(0, 19), window(0, 19)]], cfg) == pytest.approx(0.5)


def test_gpu_benchmark_runs_every_branch_on_cpu(tmp_path):
    """gpu_train_bench.py --device cpu --tiny-smoke: the trainer's DeepSpeed recipe, autocast, the reference,
    the kept-cubes option and the end-to-end figure through the real loader all execute, and the JSON says
    what was timed. (Its numbers mean nothing on a CPU: a GPU run records them in docs/benchmarks.md.)"""
    import json
    import subprocess

    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "bench" / "gpu_train_bench.py"),
                           "--device", "cpu", "--tiny-smoke", "--kept-cubes", "--batch-sizes", "2,4",
                           "--e2e-windows", "4", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {n: r["status"] for n, r in report["variants"].items()} == {
        "trainer@2": "ok", "autocast@2": "ok", "reference@2": "ok", "autocast-kept-cubes@2": "ok",
        "trainer@4": "ok", "autocast@4": "ok", "autocast-kept-cubes@4": "ok"}
    assert "DeepSpeed" in report["variants"]["trainer@2"]["precision"]
    assert all(len(r["step_s_windows"]) == report["settings"]["windows"] for r in report["variants"].values())
    assert set(report["timed_region"]) == {"inputs", "text_tower", "step", "synchronisation"}
    e2e = report["end_to_end"]
    assert e2e["status"] == "ok" and e2e["clips"] > 0 and e2e["jpeg_decode"] == "loader workers, CPU"
    kept = step_flops(load_config("tiny-random-text").model, False)["patch_embed"]
    assert report["flops_per_clip"]["patch_embed"] == kept
