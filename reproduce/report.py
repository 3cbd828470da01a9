"""The objectives of the paper's Tables 2 and 3, and the report of `make reproduce-mini`.

:data:`OBJECTIVES` says how each row is pretrained (``--set`` overrides of the ``mini`` preset) and
what the paper measured for it (fine-tuning top-1 on SSV2 / Kinetics-400). :func:`write_report`
turns the experiment's raw results into ``report.json`` (every number), ``report.md`` (the tables)
and ``plots/*.png``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Objective:
    label: str  # the paper's name for the row
    overrides: dict[str, str] = field(default_factory=dict)  # --set on top of the preset
    base: bool = True  # L_base trains
    sort: bool = True  # L_sort trains
    sg: bool | None = True  # stop-gradient of L_sort towards the transcripts
    head: str | None = "K-way"
    paper: tuple[float | str, float | str] | None = None  # fine-tuning top-1: SSV2, K400 (Tables 2, 3)
    downstream: bool = True  # evaluated on the temporal bench
    sorts: bool = True  # has a sort module: sort-eval on held-out windows


OBJECTIVES: dict[str, Objective] = {
    "scratch": Objective("M_scratch (no pretraining)", base=False, sort=False, sg=None, head=None,
                         paper=(64.5, 75.4), sorts=False),
    "base": Objective("M_base", {"model.objective": "base"}, sort=False, sg=None, head=None, paper=(67.0, 77.8),
                      sorts=False),
    "sort": Objective("M_sort", {"model.objective": "sort"}, base=False, paper=("failed", "failed")),
    "tvts_no_sg": Objective("M_ours\\sg", {"model.sort_stop_grad": "false"}, sg=False, paper=(66.2, 76.5)),
    "tvts": Objective("M_ours (TVTS)", paper=(68.5, 78.8)),
    "pairwise": Objective("Pairwise", {"model.sort_head": "pairwise"}, head="pairwise", paper=(67.4, 78.1)),
    "factorial": Objective("Factorial", {"model.sort_head": "factorial"}, head="factorial", paper=(67.2, 78.0)),
    "text_only": Objective("text-only sorter (floor)", {"model.objective": "sort", "model.sort_video": "false"},
                           base=False, head="K-way, no video", downstream=False),
}

# key in the aggregated row -> (evaluation, how to read the number from its JSON)
METRICS: dict[str, tuple[str, Any]] = {
    "order_top1": ("probe_order", lambda r, pairs: r["metrics"]["top1"]),
    "order_direction": ("probe_order", lambda r, pairs: direction_accuracy(r["confusion"], pairs)),
    "order_r1": ("retrieval_order", lambda r, pairs: r["metrics"]["R@1"]),
    "appearance_top1": ("probe_appearance", lambda r, pairs: r["metrics"]["top1"]),
    "appearance_r1": ("retrieval_appearance", lambda r, pairs: r["metrics"]["R@1"]),
    "sort_real": ("sort", lambda r, pairs: r["controls"]["real"]["sort_acc"]),
    "sort_real_all": ("sort", lambda r, pairs: r["controls"]["real"]["sort_acc_all"]),
    "sort_shuffled": ("sort", lambda r, pairs: r["controls"]["shuffled"]["sort_acc"]),
    "sort_constant": ("sort", lambda r, pairs: r["controls"]["constant"]["sort_acc"]),
    "sort_text_only": ("sort", lambda r, pairs: r["controls"]["text_only"]["sort_acc"]),
}


def direction_accuracy(confusion: dict[str, Any], pairs: Iterable[dict[str, str]]) -> float:
    """Of the order-pair clips whose prediction lands in their own pair, the share with the right
    direction: 0.5 for a model blind to frame order, whatever it knows about appearance."""
    index = {c: i for i, c in enumerate(confusion["classes"])}
    m = confusion["matrix"]
    right = total = 0
    for pair in pairs:
        a, b = index[pair["forward"]], index[pair["reverse"]]
        right += m[a][a] + m[b][b]
        total += m[a][a] + m[a][b] + m[b][b] + m[b][a]
    return right / total if total else float("nan")


def run_metrics(evals: dict[str, Any], pairs: list[dict[str, str]]) -> dict[str, float]:
    """The numbers of one run, flat (NaN where the run has no such evaluation)."""
    return {key: read(evals[name], pairs) if name in evals else float("nan")
            for key, (name, read) in METRICS.items()}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per objective: mean and std over seeds of every metric, and the final training numbers."""
    pairs = report["baselines"]["classes"]["order_pairs"]
    rows: dict[str, dict[str, Any]] = {}
    for name, run in report["runs"].items():
        row = rows.setdefault(run["objective"], {"seeds": [], "values": {}})
        row["seeds"].append(run["seed"])
        metrics = run_metrics(run["evals"], pairs)
        tail = run["training"][-3:]
        for k in ("loss_base", "loss_sort", "sort_acc"):
            metrics[f"train_{k}"] = statistics.fmean(r[k] for r in tail) if tail else float("nan")
        for k, v in metrics.items():
            row["values"].setdefault(k, []).append(v)
    return {obj: {"seeds": r["seeds"], **{k: mean_std(v) for k, v in r["values"].items()}}
            for obj, r in rows.items()}


def baseline_numbers(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    pairs = report["baselines"]["classes"]["order_pairs"]
    out = {}
    for name, result in report["baselines"].items():
        if name == "classes":
            continue
        out[name] = {"top1": result["metrics"]["top1"], "direction": direction_accuracy(result["confusion"], pairs)}
    return out


# ----------------------------------------------------------------------------- writing


def _fmt(pair: tuple[float, float], percent: bool = True) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    scale = 100 if percent else 1
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def _mark(flag: bool | None) -> str:
    return {True: "✓", False: "×", None: "-"}[flag]


def markdown(report: dict[str, Any], table: dict[str, dict[str, Any]]) -> str:
    s, classes = report["settings"], report["baselines"]["classes"]
    lines = [
        "# `make reproduce-mini` report",
        "",
        f"Setting `{s['name']}`: {s['train_videos']} training videos "
        f"({report['corpus'].get('train', {}).get('windows', '?')} windows), {s['steps']} steps per run, "
        f"seeds {list(s['seeds'])}, preset `{s['preset']}`. Started {report['started']}; "
        f"wall time {report['wall_seconds']['total'] / 60:.1f} min on {report['machine']['cpus']} CPUs "
        f"({report['machine']['cpu']}).",
        "",
        "## Tables 2 and 3 in miniature (mean ± std over seeds, %)",
        "",
        "Paper: fine-tuning top-1 after pretraining on YT-Temporal. Here: frozen encoders on the order-only "
        f"temporal bench ({len(classes['order_pairs'])} order pairs, {len(classes['appearance'])} appearance "
        "classes): linear-probe top-1 and direction accuracy (of the clips predicted inside their own pair, "
        "the share with the right direction; 50 = blind to order), video-to-video R@1 on the val split; "
        "and the pretext task itself on held-out windows (per-transcript sort accuracy, chance 25).",
        "",
        "| model | L_base | L_sort | sg | sort head | paper SSV2 | paper K400 | order probe top-1 | order direction "
        "| order R@1 | appearance probe top-1 | appearance R@1 | held-out sort acc | all-K right |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, o in OBJECTIVES.items():
        if key not in table:
            continue
        r = table[key]
        paper = o.paper or ("-", "-")
        lines.append(f"| {o.label} | {_mark(o.base)} | {_mark(o.sort)} | {_mark(o.sg)} | {o.head or '-'} | "
                     f"{paper[0]} | {paper[1]} | {_fmt(r['order_top1'])} | {_fmt(r['order_direction'])} | "
                     f"{_fmt(r['order_r1'])} | {_fmt(r['appearance_top1'])} | {_fmt(r['appearance_r1'])} | "
                     f"{_fmt(r['sort_real'])} | {_fmt(r['sort_real_all'])} |")
    chance = classes["chance"]
    lines += ["", f"Chance: order top-1 {100 * chance['order_top1']:.1f}, order-blind ceiling "
              f"{100 * chance['order_blind_ceiling_top1']:.0f}, direction 50, appearance top-1 "
              f"{100 * chance['appearance_top1']:.0f}, sort 25 per transcript / 4.2 all-K.", "",
              "## Controls on held-out windows (per-transcript sort accuracy, %)", "",
              "| model | real clip | frames shuffled | constant clip | no video tokens |", "|---|---|---|---|---|"]
    for key, o in OBJECTIVES.items():
        if key in table and o.sorts:
            r = table[key]
            lines.append(f"| {o.label} | {_fmt(r['sort_real'])} | {_fmt(r['sort_shuffled'])} | "
                         f"{_fmt(r['sort_constant'])} | {_fmt(r['sort_text_only'])} |")
    lines += ["", "## Order-blind baselines on the order pairs (linear probe, %)", "",
              "| baseline | top-1 | direction |", "|---|---|---|"]
    for name, b in baseline_numbers(report).items():
        lines.append(f"| {name} | {100 * b['top1']:.1f} | {100 * b['direction']:.1f} |")
    lines += ["", "## Wall time (s)", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in report["wall_seconds"].items()]
    lines += ["", "Plots: `plots/training.png`, `plots/controls.png`, `plots/downstream.png`.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], table: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = [k for k in OBJECTIVES if k in table]
    paths = [folder / "training.png", folder / "controls.png", folder / "downstream.png"]

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    colors = {key: plt.get_cmap("tab10")(i) for i, key in enumerate(OBJECTIVES)}  # one colour per objective
    for key in names:
        curves = [r["training"] for r in report["runs"].values() if r["objective"] == key and r["training"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = [c["step"] for c in curves[0][:n]]
        for ax, metric in zip(axes, ("loss_base", "loss_sort", "sort_acc")):
            ys = [statistics.fmean(c[i][metric] for c in curves) for i in range(n)]
            if not all(math.isnan(y) for y in ys):
                ax.plot(steps, ys, label=OBJECTIVES[key].label, color=colors[key])
    for ax, title in zip(axes, ("L_base (contrastive; reported, not trained, for M_sort)", "L_sort",
                                "sort accuracy (train, per transcript)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[2].axhline(0.25, color="grey", ls="--", lw=1)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    _bars(plt, paths[1], [k for k in names if OBJECTIVES[k].sorts], table,
          [("sort_real", "real clip"), ("sort_shuffled", "frames shuffled"), ("sort_constant", "constant clip"),
           ("sort_text_only", "no video tokens")], "held-out sort accuracy (per transcript)", chance=0.25)
    _bars(plt, paths[2], [k for k in names if OBJECTIVES[k].downstream], table,
          [("order_top1", "order probe top-1"), ("order_direction", "order direction"),
           ("appearance_top1", "appearance probe top-1")], "temporal bench, frozen encoder", chance=0.5)
    return paths


def _bars(plt: Any, path: Path, names: list[str], table: dict[str, Any], metrics: list[tuple[str, str]],
          title: str, chance: float) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names) + 2), 4.5))
    width = 0.8 / len(metrics)
    for i, (key, label) in enumerate(metrics):
        means = [table[n][key][0] for n in names]
        stds = [table[n][key][1] for n in names]
        xs = [j + (i - (len(metrics) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [0 if math.isnan(m) else m for m in means], width, yerr=[0 if math.isnan(s) else s for s in stds],
               label=label, capsize=2)
    ax.axhline(chance, color="grey", ls="--", lw=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([OBJECTIVES[n].label for n in names], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """``report.json``, ``report.md`` and the plots into ``out``; returns their paths."""
    table = aggregate(report)
    report = {**report, "table": {k: {m: list(v) if isinstance(v, tuple) else v for m, v in row.items()}
                                  for k, row in table.items()},
              "baseline_numbers": baseline_numbers(report)}
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=True))
    (out / "report.md").write_text(markdown(report, table))
    return [out / "report.json", out / "report.md", *plot(report, table, out / "plots")]


def plot_world(world_dir: Path, out: Path, events: int = 6) -> Path:
    """One narrated-world video as a picture: per event, its first, middle and last frame over the
    sentence spoken while it happens."""
    import av
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    video = json.loads((world_dir / "world.json").read_text())["videos"][0]
    shown = video["events"][:events]
    wanted = [(i, t) for i, e in enumerate(shown)
              for t in (e["start"] + 0.1 * (e["end"] - e["start"]), (e["start"] + e["end"]) / 2,
                        e["end"] - 0.1 * (e["end"] - e["start"]))]
    with av.open(str(world_dir / video["video"])) as container:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    per_row = 3  # events per row, three frames each
    rows = -(-len(shown) // per_row)
    fig, grid = plt.subplots(rows, 3 * per_row, figsize=(11, 1.9 * rows), squeeze=False)
    axes = grid.ravel()
    for ax in axes[len(wanted):]:
        ax.axis("off")
    for ax, (i, t) in zip(axes, wanted):
        ax.imshow(min(frames, key=lambda f: abs(f[0] - t))[1])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{t:.1f} s", fontsize=6)
    for i, e in enumerate(shown):
        axes[3 * i + 1].set_xlabel(f'"{e["sentence"]}"', fontsize=7)
    fig.suptitle(f"narrated world video {video['id']}: {len(video['events'])} events; first, middle and last "
                 "frame of each, with the sentence said while it happens", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
