"""`make reproduce-mini`'s pipeline end to end on a very small setting: structure, not values."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "reproduce"))

from report import METRICS, OBJECTIVES, direction_accuracy  # noqa: E402


def _finite_numbers(value, where: str = "") -> list[str]:
    """Paths of every number in ``value`` that is not finite."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _finite_numbers(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _finite_numbers(v, f"{where}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [where]
    return []


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("reproduce")
    done = subprocess.run([sys.executable, str(REPO / "reproduce" / "mini.py"), "--setting", "smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "report.json").read_text())


def test_pipeline_writes_every_part_of_the_report(smoke_report):
    out, report = smoke_report
    for name in ("report.md", "plots/training.png", "plots/controls.png", "plots/downstream.png"):
        assert (out / name).stat().st_size > 0, name
    assert set(report["table"]) == set(OBJECTIVES)
    assert set(report["wall_seconds"]) == {"generate", "prepare", "pretrain", "evaluate", "total"}
    assert report["corpus"]["train"]["windows"] > 0 and report["corpus"]["heldout"]["windows"] > 0
    assert any(c.startswith(str(Path(sys.executable).parent / "tvts-train") + " pretrain") for c in report["commands"])
    for name, run in report["runs"].items():
        o = OBJECTIVES[run["objective"]]
        assert ("probe_order" in run["evals"]) == o.downstream, name
        assert ("sort" in run["evals"]) == o.sorts, name
        if run["objective"] != "scratch":
            assert run["training"], name  # the loss curve of every trained run
    md = (out / "report.md").read_text()
    assert all(o.label in md for o in OBJECTIVES.values())


def test_every_reported_number_is_finite(smoke_report):
    _, report = smoke_report
    table = report["table"]
    for objective, row in table.items():
        o = OBJECTIVES[objective]
        for key, (name, _) in METRICS.items():
            expected = o.sorts if name == "sort" else o.downstream
            mean, std = row[key]
            assert math.isfinite(mean) == expected, (objective, key, mean)
            if expected:
                assert 0.0 <= mean <= 1.0 and math.isfinite(std), (objective, key)
    for name, b in report["baseline_numbers"].items():
        assert 0.0 <= b["top1"] <= 1.0, name
    # beyond the table: every number the runs produced (NaN only where a loss does not exist)
    for name, run in report["runs"].items():
        assert not _finite_numbers(run["evals"]), name


def test_direction_accuracy_counts_only_within_pair_predictions():
    confusion = {"classes": ["a_fwd", "a_rev", "other"],
                 "matrix": [[3, 1, 5],   # a_fwd: 3 right, 1 reversed, 5 elsewhere (ignored)
                            [2, 2, 0],
                            [0, 0, 9]]}
    assert direction_accuracy(confusion, [{"forward": "a_fwd", "reverse": "a_rev"}]) == pytest.approx(5 / 8)
