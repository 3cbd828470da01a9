"""`make reproduce-mini`: the paper's claim in miniature, end to end on one machine.

    generate   tvts-data synth world (train + held-out) and tvts-data synth temporal-bench
    prepare    tvts-data prepare, once per world, on the embedded Ray
    pretrain   tvts-train pretrain for every objective x seed (Tables 2 and 3), `--jobs` at a time
    evaluate   tvts-train eval linear-probe / retrieval on the bench's order pairs and appearance
               classes; tvts-train sort-eval with its controls on the held-out windows; order-blind
               baselines (the same encoder with shuffled frames, a probe on time-averaged pixels)
    report     report.json (every number), report.md (the tables), plots/*.png

Every step goes through the project's own commands, exactly as a user runs them (the commands are
logged and kept in report.json). A step whose output exists is skipped, so an interrupted run
continues where it stopped. ``--setting quick`` is the few-minute variant, ``smoke`` the test's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "reproduce"))

from report import OBJECTIVES, plot_world, write_report  # noqa: E402

log = logging.getLogger("reproduce-mini")
BIN = Path(sys.executable).parent  # the venv's console scripts (tvts-data, tvts-train)


@dataclass(frozen=True)
class Settings:
    """Size of the experiment; ``full`` is the one docs/reproduction.md reports."""

    name: str
    train_videos: int  # narrated-world videos to pretrain on (~10 windows each)
    heldout_videos: int  # another world, another seed: held-out windows for sort-eval
    steps: int  # optimizer steps per pretraining run (batch: the preset's)
    seeds: tuple[int, ...]
    bench_train: int  # temporal-bench clips per class, train split
    bench_val: int  # and val split
    # The linear probe, trained to convergence: full-batch AdamW (all ~300 train features in one batch),
    # lr 1e-2, 3,000 steps (train top-1 >= 0.97 on the order set). The protocol's defaults (100 epochs of
    # 256, lr 1e-3) suit SSV2's 168k videos; here they stop after ~200 steps, far from the optimum.
    probe_epochs: int = 3000
    probe_lr: float = 1e-2
    probe_batch: int = 1024
    preset: str = "mini"
    jobs: int = 2  # processes at a time (generation, pretraining); each gets cpus / jobs threads
    objectives: tuple[str, ...] = tuple(OBJECTIVES)


SETTINGS = {
    "full": Settings("full", train_videos=360, heldout_videos=24, steps=600, seeds=(0, 1, 2), bench_train=24,
                     bench_val=16),
    "quick": Settings("quick", train_videos=24, heldout_videos=6, steps=40, seeds=(0,), bench_train=8, bench_val=6,
                      probe_epochs=1000),
    # Fewer objectives, much longer: does the miniature's TVTS beat its M_base once the sort task is
    # learned? (docs/reproduction.md, "Longer runs"). Reuse the full setting's data with --reuse-data.
    "long": Settings("long", train_videos=360, heldout_videos=24, steps=3000, seeds=(0,), bench_train=24,
                     bench_val=16, objectives=("base", "tvts")),
    "smoke": Settings("smoke", train_videos=3, heldout_videos=2, steps=2, seeds=(0,), bench_train=2, bench_val=2,
                      probe_epochs=3),
}


@dataclass
class Ledger:
    """What ran: every command line and each phase's wall time."""

    commands: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        log.info("== %s", name)
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        log.info("== %s done in %.0f s", name, self.seconds[name])


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAY_AUTH_MODE="disabled")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_command(argv: list[str], log_file: Path, ledger: Ledger, threads: int) -> None:
    """Run one of the project's commands, its output to ``log_file``; raise with the log's tail on failure."""
    ledger.commands.append(" ".join(argv))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = _env(threads) | {"MASTER_PORT": str(_free_port())}
    with open(log_file, "w", encoding="utf-8") as fh:
        done = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO, check=False)
    if done.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{argv[0]} {argv[1]} failed (exit {done.returncode}); log {log_file}:\n{tail}")


def run_parallel(jobs: list[tuple[list[str], Path]], ledger: Ledger, workers: int) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run_command, argv, log_file, ledger, threads) for argv, log_file in jobs]:
            future.result()


# ----------------------------------------------------------------------------- phases


def generate(out: Path, s: Settings, ledger: Ledger) -> None:
    data = out / "data"
    jobs = []
    # The training world in `jobs` parts (one generator process each), the held-out world, the bench.
    parts = [s.train_videos // s.jobs + (i < s.train_videos % s.jobs) for i in range(s.jobs)]
    for i, n in enumerate(p for p in parts if p):
        jobs.append(([str(BIN / "tvts-data"), "synth", "world", "--output", str(data / "world" / f"part{i}"),
                      "--videos", str(n), "--seed", str(100 + i)], out / "logs" / f"world-part{i}.log"))
    jobs.append(([str(BIN / "tvts-data"), "synth", "world", "--output", str(data / "heldout"),
                  "--videos", str(s.heldout_videos), "--seed", "999"], out / "logs" / "world-heldout.log"))
    jobs.append(([str(BIN / "tvts-data"), "synth", "temporal-bench", "--output", str(data / "bench"),
                  "--train-per-class", str(s.bench_train), "--val-per-class", str(s.bench_val)],
                 out / "logs" / "bench.log"))
    todo = [(argv, log_file) for argv, log_file in jobs if not _done_marker(Path(argv[argv.index("--output") + 1]))]
    run_parallel(todo, ledger, s.jobs)


def _done_marker(folder: Path) -> bool:
    return (folder / "world.json").is_file() or (folder / "classes.json").is_file()


def prepare(out: Path, ledger: Ledger) -> None:
    config = REPO / "infra" / "data" / "world.yaml"
    for name, source in (("train", out / "data" / "world"), ("heldout", out / "data" / "heldout")):
        corpus = out / "corpus" / name
        if (corpus / "manifest.json").is_file():
            continue
        run_command([str(BIN / "tvts-data"), "prepare", "--input", str(source), "--output", str(corpus),
                     "--config", str(config)], out / "logs" / f"prepare-{name}.log", ledger, os.cpu_count() or 1)


def run_name(objective: str, seed: int) -> str:
    return f"{objective}-s{seed}"


def pretrain(out: Path, s: Settings, ledger: Ledger) -> None:
    jobs = []
    for objective in s.objectives:
        for seed in s.seeds:
            run = out / "runs" / run_name(objective, seed)
            if (run / "video_encoder.safetensors").is_file():
                continue
            steps = 0 if objective == "scratch" else s.steps
            argv = [str(BIN / "tvts-train"), "pretrain", "--deepspeed", str(REPO / "infra/deepspeed/cpu-zero0.json"),
                    "--config", s.preset, "--data", str(out / "corpus" / "train"), "--output", str(run),
                    "--max-steps", str(steps), "--set", f"train.seed={seed}", "--set", f"data.seed={seed}",
                    "--set", f"train.log_every={max(1, min(10, steps))}"]
            for key, value in OBJECTIVES[objective].overrides.items():
                argv += ["--set", f"{key}={value}"]
            if (run / "checkpoints" / "latest").is_file():
                argv.append("--resume")
            jobs.append((argv, out / "logs" / f"pretrain-{run.name}.log"))
    run_parallel(jobs, ledger, s.jobs)


def _cli(argv: list[str], out_file: Path, ledger: Ledger) -> dict[str, Any]:
    """One `tvts-train` command in this process (no start-up cost per evaluation); its JSON result."""
    from tvts_train.cli import main as tvts_train

    if not out_file.is_file():
        ledger.commands.append("tvts-train " + " ".join(argv + ["--out", str(out_file)]))
        quiet = logging.getLogger("tvts_train")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # one line per evaluation here, not one per probe epoch
        try:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                code = tvts_train(argv + ["--out", str(out_file)])
        finally:
            quiet.setLevel(level)
        if code != 0:
            raise RuntimeError(f"tvts-train {' '.join(argv)} exited {code}")
        log.info("%s -> %s", " ".join(argv[:2]), out_file.relative_to(out_file.parents[2]))
    return json.loads(out_file.read_text())


def evaluate(out: Path, s: Settings, ledger: Ledger) -> dict[str, Any]:
    """Every encoder on the bench (probe + retrieval, order and appearance) and every run's sort-eval."""
    bench, results = out / "data" / "bench", {}
    clip = ["--short-side", "64", "--workers", "0", "--batch-size", "32"]  # the bench at the model's 64 px
    for objective in s.objectives:
        for seed in s.seeds:
            name = run_name(objective, seed)
            run, folder = out / "runs" / name, out / "evals" / name
            evals: dict[str, Any] = {}
            if OBJECTIVES[objective].downstream:
                for subset in ("order", "appearance"):
                    manifest = ["--encoder", str(run), "--manifest", str(bench / f"{subset}.csv"), *clip]
                    evals[f"probe_{subset}"] = _cli(["eval", "linear-probe", *manifest, *_probe_flags(s)],
                                                    folder / f"probe_{subset}.json", ledger)
                    evals[f"retrieval_{subset}"] = _cli(["eval", "retrieval", *manifest, "--split", "val"],
                                                        folder / f"retrieval_{subset}.json", ledger)
            if OBJECTIVES[objective].sorts:
                evals["sort"] = _cli(["sort-eval", "--run", str(run), "--data", str(out / "corpus" / "heldout")],
                                     folder / "sort.json", ledger)
            results[name] = {"objective": objective, "seed": seed, "evals": evals,
                             "training": _training_curve(run)}
    return results


def _probe_flags(s: Settings) -> list[str]:
    return ["--epochs", str(s.probe_epochs), "--lr", str(s.probe_lr), "--probe-batch-size", str(s.probe_batch)]


def baselines(out: Path, s: Settings, ledger: Ledger) -> dict[str, Any]:
    """Order-blind references on the bench: measured, not assumed."""
    from pixels import pixel_probe

    bench, folder = out / "data" / "bench", out / "evals" / "baselines"
    clip = ["--short-side", "64", "--workers", "0", "--batch-size", "32", *_probe_flags(s)]
    found: dict[str, Any] = {}
    for objective in ("tvts", "scratch"):
        if objective in s.objectives:
            run = out / "runs" / run_name(objective, s.seeds[0])
            found[f"{objective}_shuffled_frames"] = _cli(
                ["eval", "linear-probe", "--encoder", str(run), "--manifest", str(bench / "order.csv"), *clip,
                 "--frame-order", "shuffled"], folder / f"{objective}_shuffled_frames.json", ledger)
    target = folder / "pixels_time_averaged.json"
    if not target.is_file():
        target.write_text(json.dumps(pixel_probe(bench / "order.csv", s.probe_epochs, s.probe_lr, s.probe_batch),
                                     indent=1))
    found["pixels_time_averaged"] = json.loads(target.read_text())
    found["classes"] = json.loads((bench / "classes.json").read_text())
    return found


def _training_curve(run: Path) -> list[dict[str, float]]:
    from tvts_train.train import read_metrics

    path = run / "metrics.csv"
    return read_metrics(path) if path.is_file() else []


def machine() -> dict[str, Any]:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"platform": platform.platform(), "cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "reproduce-mini")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="full")
    parser.add_argument("--jobs", type=int, default=None, help="processes at a time (default: the setting's)")
    parser.add_argument("--reuse-data", type=Path, default=None,
                        help="an earlier run's --out whose generated data and corpora this run links instead of "
                             "building its own (same world, held-out set and bench)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild report.json/md and the plots from a finished run's outputs (keeps its "
                             "wall times and commands)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    s = SETTINGS[args.setting]
    if args.jobs:
        s = Settings(**{**asdict(s), "jobs": args.jobs})
    out, ledger, t0 = args.out.resolve(), Ledger(), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return rebuild_report(out, s)
    if args.reuse_data:
        for name in ("data", "corpus"):
            link, target = out / name, (args.reuse_data / name).resolve()
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with ledger.phase("generate"):
        generate(out, s, ledger)
    with ledger.phase("prepare"):
        prepare(out, ledger)
    with ledger.phase("pretrain"):
        pretrain(out, s, ledger)
    with ledger.phase("evaluate"):
        runs = evaluate(out, s, ledger)
        references = baselines(out, s, ledger)
    ledger.seconds["total"] = round(time.perf_counter() - t0, 1)
    report = {"settings": asdict(s), "started": started, "machine": machine(), "wall_seconds": ledger.seconds,
              "commands": ledger.commands, "corpus": _corpus_stats(out), "baselines": references, "runs": runs}
    paths = write_report(report, out) + [plot_world(out / "data" / "heldout", out / "plots" / "world.png")]
    log.info("report: %s", ", ".join(str(p) for p in paths))
    return 0


def rebuild_report(out: Path, s: Settings) -> int:
    """The report of a finished run again (e.g. after a change to the report code), from its files."""
    previous = json.loads((out / "report.json").read_text())
    ledger = Ledger(commands=previous["commands"])
    runs, references = evaluate(out, s, ledger), baselines(out, s, ledger)
    report = {"settings": asdict(s), **{k: previous[k] for k in ("started", "machine", "wall_seconds")},
              "rebuilt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commands": ledger.commands, "corpus": _corpus_stats(out), "baselines": references, "runs": runs}
    paths = write_report(report, out) + [plot_world(out / "data" / "heldout", out / "plots" / "world.png")]
    log.info("report rebuilt: %s", ", ".join(str(p) for p in paths))
    return 0


def _corpus_stats(out: Path) -> dict[str, Any]:
    stats = {}
    for name in ("train", "heldout"):
        path = out / "corpus" / name / "stats.json"
        if path.is_file():
            data = json.loads(path.read_text())
            stats[name] = {"videos": data.get("videos"), "windows": data.get("windows")}
    return stats


if __name__ == "__main__":
    raise SystemExit(main())
