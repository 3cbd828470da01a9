"""Composes the stage units over chunks on a swappable engine and keeps the ledger.

Engines: `RayEngine` runs each chunk through the selected stages as a Ray Data pipeline (one `map` per
stage, fused by Ray into one task per chunk, chunks in parallel across the cluster); `LocalEngine` runs
the same units serially in-process, for debugging. Both call the same functions, so a result never
depends on the engine.

Resume: a chunk is done for a stage when its ledger part exists; that part is written after the
chunk's outputs were renamed into place. Rerunning the same command skips done chunks, and a chunk a
killed run left half-done is redone from scratch (its outputs are overwritten under the same names).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import pyarrow.parquet as pq

from tvts_data import __version__
from tvts_data.config import PrepareConfig, config_to_dict
from tvts_data.download import make_limiter
from tvts_data.corpus import Corpus, read_rows, remove_stale_temporaries, write_json, write_rows
from tvts_data.inputs import assign_chunks, read_sources
from tvts_data.schema import LEDGER, SCHEMA_VERSION, SOURCES
from tvts_data.stages.units import STAGE_ORDER, STAGE_UNITS, ledger_row

log = logging.getLogger(__name__)

ChunkFn = Callable[[dict[str, Any]], dict[str, Any]]


def run_stage_on_chunk(stage: str, root: str, cfg: PrepareConfig, item: dict[str, Any],
                       run_token: str | None = None) -> dict[str, Any]:
    """One Ray Data step: run `stage` on one chunk unless the ledger says it is done.

    Every rename into the corpus checks ``run_token``: a worker that outlived a killed driver stops
    (StaleRunError) instead of writing into the corpus a newer run is building."""
    corpus, chunk = Corpus(Path(root), run_token), int(item["chunk"])
    if not corpus.is_done(stage, chunk):
        t0 = time.perf_counter()
        ledger = STAGE_UNITS[stage](corpus, chunk, cfg)
        corpus.write_rows(ledger, corpus.ledger_part(stage, chunk), LEDGER)
        ok = sum(r["status"] == "ok" for r in ledger)
        log.info("chunk %d %s: %d/%d videos ok in %.1f s", chunk, stage, ok, len(ledger), time.perf_counter() - t0)
    return {**item, "node": current_node()}


def current_node() -> str:
    """Where this step runs: the Ray node (IP and short ID: two nodes may share a host) or the host name."""
    ray = sys.modules.get("ray")  # never import Ray just for a label (the local engine runs without it)
    try:
        if ray is not None and ray.is_initialized():
            context = ray.get_runtime_context()
            return f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"
    except Exception:  # noqa: BLE001 - a label for the log; never fail a chunk over it
        pass
    return socket.gethostname()


class Engine(Protocol):
    def run(self, chunks: list[int], steps: list[ChunkFn]) -> Iterable[dict[str, Any]]: ...


@dataclass
class LocalEngine:
    """Serial, in-process: the simplest way to debug a stage."""

    def run(self, chunks: list[int], steps: list[ChunkFn]) -> Iterable[dict[str, Any]]:
        for c in chunks:
            item: dict[str, Any] = {"chunk": c}
            for step in steps:
                item = step(item)
            yield item


@dataclass
class RayEngine:
    """Ray Data over chunks: embedded Ray by default, a cluster when an address is given."""

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_task: float = 1.0
    _started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        import ray

        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"address": address, "log_to_driver": True}
            if not address:
                # "local": our own embedded instance, never a cluster some earlier `ray start` left behind
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster needs no tokens
                kwargs.update(address="local", num_cpus=self.num_cpus, include_dashboard=False)
            ray.init(**kwargs)
            self._started = True

    def run(self, chunks: list[int], steps: list[ChunkFn]) -> Iterable[dict[str, Any]]:
        import ray

        if not chunks:
            return
        ds = ray.data.from_items([{"chunk": c} for c in chunks], override_num_blocks=len(chunks))
        # The stage maps share one CPU request, so Ray fuses them into a single operator: per-operator
        # reservation has nothing to protect here, and on a small cluster it held every task but the
        # first back for about a second (measured by `make bench-data`). Set on this dataset's own
        # context, never on the process-wide one.
        ds.context.op_resource_reservation_enabled = False
        for step in steps:
            ds = ds.map(step, num_cpus=self.cpus_per_task)
        yield from ds.iter_rows()

    def shutdown(self) -> None:
        import ray

        if self._started:
            ray.shutdown()


def make_engine(cfg: PrepareConfig) -> LocalEngine | RayEngine:
    if cfg.run.engine == "local":
        return LocalEngine()
    if cfg.run.engine == "ray":
        return RayEngine(cfg.run.ray_address, cfg.run.num_cpus, cfg.run.cpus_per_task)
    raise ValueError(f"run.engine must be 'ray' or 'local', got {cfg.run.engine!r}")


@dataclass(frozen=True)
class PrepareResult:
    corpus: Corpus
    stats: dict[str, Any]
    seconds: float


def write_sources(corpus: Corpus, input_path: Path, cfg: PrepareConfig) -> list[int]:
    """Resolve the input into sources.parquet (stable across reruns) and ledger rows for rejected lines."""
    sources, rejected = read_sources(input_path, cfg)
    rows = assign_chunks(sources, cfg.write.videos_per_chunk)
    if corpus.sources.exists():
        before = [(r["video_id"], r["chunk"]) for r in read_rows(corpus.sources)]
        if before != [(r["video_id"], r["chunk"]) for r in rows]:
            raise ValueError(f"{corpus.root} was built from another input (or another write.videos_per_chunk); "
                             "use a new --output, or delete the folder to start over")
    else:
        write_rows(rows, corpus.sources, SOURCES)
    rejected_rows = [ledger_row(r.video_id, "input", -1, status="error", kind=r.error_kind, message=r.message)
                     for r in rejected]
    write_rows(rejected_rows, corpus.ledger_dir("input") / "rejected.parquet", LEDGER)
    for r in rejected:
        log.warning("input: %s", r.message)
    return sorted({r["chunk"] for r in rows})


def seed_from_corpus(corpus: Corpus, previous: Path, first_stage: str) -> None:
    """Start a new corpus from an earlier one: copy the stages before `first_stage` (hard links where the
    file system allows) so that `first_stage` reruns alone on their output, with a new config."""
    prev = Corpus(previous)
    corpus.root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(prev.sources, corpus.sources)
    for stage in STAGE_ORDER[: STAGE_ORDER.index(first_stage)]:
        for src_dir, dst_dir in ((prev.stage_dir(stage), corpus.stage_dir(stage)),
                                 (prev.ledger_dir(stage), corpus.ledger_dir(stage))):
            if src_dir.exists() and not dst_dir.exists():
                shutil.copytree(src_dir, dst_dir, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def is_corpus(path: Path) -> bool:
    return path.is_dir() and Corpus(path).sources.exists()


def prepare(input_path: str | Path, output: str | Path, cfg: PrepareConfig,
            stages: tuple[str, ...] = STAGE_ORDER, engine: LocalEngine | RayEngine | None = None) -> PrepareResult:
    """Build (or finish building) a corpus; see the module docstring for resume."""
    t0 = time.perf_counter()
    unknown = [s for s in stages if s not in STAGE_UNITS]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGE_ORDER)}")
    stages = tuple(s for s in STAGE_ORDER if s in stages)
    corpus, input_path = Corpus(Path(output)), Path(input_path)
    corpus.root.mkdir(parents=True, exist_ok=True)
    corpus = corpus.claim()  # from here on, workers of an earlier run of this corpus write nothing
    removed = remove_stale_temporaries(corpus.root)
    if removed:
        log.info("removed %d temporary files of an interrupted run", removed)
    if is_corpus(input_path) and input_path.resolve() != corpus.root.resolve():
        seed_from_corpus(corpus, input_path, stages[0])
        chunks = sorted({r["chunk"] for r in read_rows(corpus.sources)})
    elif is_corpus(input_path):
        chunks = sorted({r["chunk"] for r in read_rows(corpus.sources)})
    else:
        chunks = write_sources(corpus, input_path, cfg)
    if "download" in stages and not _has_youtube(corpus):
        stages = tuple(s for s in stages if s != "download")
    pending = [c for c in chunks if not all(corpus.is_done(s, c) for s in stages)]
    log.info("%d chunks, %d to do, stages %s", len(chunks), len(pending), ",".join(stages))
    own_engine = engine is None
    engine = engine or make_engine(cfg)
    # The driver owns the job-wide request limiter (a named Ray actor under the Ray engine), so it lives
    # for the whole run; the download units of every worker find it by name.
    limiter = make_limiter(cfg.download) if "download" in stages else None
    try:
        steps = [partial(run_stage_on_chunk, s, str(corpus.root), cfg, run_token=corpus.run_token) for s in stages]
        by_node: Counter[str] = Counter()
        for n, item in enumerate(engine.run(pending, steps), 1):
            by_node[item.get("node", "?")] += 1
            log.info("progress: %d/%d chunks done (chunk %d on %s)", n, len(pending), item["chunk"], item.get("node"))
        if pending:
            log.info("chunks by node: %s", dict(sorted(by_node.items())))
    finally:
        del limiter
        if own_engine and isinstance(engine, RayEngine):
            engine.shutdown()
    stats = write_stats(corpus, cfg)
    return PrepareResult(corpus, stats, time.perf_counter() - t0)


def _has_youtube(corpus: Corpus) -> bool:
    kinds = pq.read_table(corpus.sources, columns=["kind"]).column("kind").to_pylist()
    return "youtube" in kinds


def read_ledger(corpus: Corpus, stage: str | None = None) -> list[dict[str, Any]]:
    """Every ledger row (of one stage, or all), in chunk order."""
    stages = [stage] if stage else ["input", *STAGE_ORDER]
    rows: list[dict[str, Any]] = []
    for s in stages:
        d = corpus.ledger_dir(s)
        for part in sorted(d.glob("*.parquet")) if d.exists() else []:
            rows.extend(read_rows(part))
    return rows


def latest_status(corpus: Corpus) -> dict[str, dict[str, Any]]:
    """Per video, the row of the furthest stage it reached (its error, or 'frames ok')."""
    rank = {s: i for i, s in enumerate(["input", *STAGE_ORDER])}
    out: dict[str, dict[str, Any]] = {}
    for row in read_ledger(corpus):
        prev = out.get(row["video_id"])
        if prev is None or rank[row["stage"]] >= rank[prev["stage"]]:
            out[row["video_id"]] = row
    return out


def summarise(corpus: Corpus) -> dict[str, Any]:
    per_stage: dict[str, Counter] = defaultdict(Counter)
    errors: dict[str, Counter] = defaultdict(Counter)
    filters: Counter = Counter()
    for row in read_ledger(corpus):
        per_stage[row["stage"]][row["status"]] += 1
        per_stage[row["stage"]]["outputs"] += row["outputs"] or 0
        if row["status"] == "error":
            errors[row["stage"]][row["error_kind"]] += 1
        if row["stage"] in ("windows", "frames") and row["details"]:
            details = json.loads(row["details"])
            filters.update({k: v for k, v in details.items() if isinstance(v, int) and k != "frames"})
    shards = sorted(corpus.stage_dir("frames").glob("shard-*.parquet")) if corpus.stage_dir("frames").exists() else []
    shard_list = [{"path": str(p.relative_to(corpus.root)), "rows": pq.ParquetFile(p).metadata.num_rows,
                   "bytes": p.stat().st_size} for p in shards]
    # A rejected input line (a bad ID, a duplicate, an unreadable info JSON) is not a video.
    latest = [r for r in latest_status(corpus).values() if r["stage"] != "input"]
    finals = Counter(r["status"] if r["stage"] == "frames" or r["status"] != "ok" else "incomplete" for r in latest)
    return {
        "schema_version": SCHEMA_VERSION,
        "videos": dict(finals),
        "rejected_inputs": per_stage["input"]["error"],
        "stages": {s: dict(c) for s, c in per_stage.items()},
        "errors": {s: dict(c) for s, c in errors.items()},
        "window_filters": dict(filters),
        "windows": sum(s["rows"] for s in shard_list),
        "frames_bytes": sum(s["bytes"] for s in shard_list),
        "shards": shard_list,
    }


def write_stats(corpus: Corpus, cfg: PrepareConfig) -> dict[str, Any]:
    summary = summarise(corpus)
    stats = {k: v for k, v in summary.items() if k != "shards"}
    write_json(stats, corpus.root / "stats.json")
    write_json({
        "schema_version": SCHEMA_VERSION,
        "tvts_data_version": __version__,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config_to_dict(cfg),
        "shards": summary["shards"],
        "windows": summary["windows"],
    }, corpus.root / "manifest.json")
    return stats


def retry_failed(corpus: Corpus) -> dict[str, int]:
    """Reopen exactly the chunks that hold retryable download failures for the next `prepare`.

    A reopened chunk's download ledger part moves to ``ledger/download/history/`` (each video's attempt
    history) and the chunk's ledger parts are removed. The next download of the chunk fetches only
    the retryable failures: a video already downloaded is found complete in raw/, and a final failure
    (404, private, removed...) is carried over from the history without any request."""
    reopened: dict[str, int] = {}
    d = corpus.ledger_dir("download")
    for part in sorted(d.glob("*.parquet")) if d.exists() else []:
        rows = read_rows(part)
        retry = [r for r in rows if r["status"] == "error" and json.loads(r["details"] or "{}").get("retryable")]
        if retry:
            chunk = rows[0]["chunk"]
            history = d / "history"
            history.mkdir(exist_ok=True)
            n = len(list(history.glob(f"{part.stem}-*.parquet")))
            part.replace(history / f"{part.stem}-{n:03d}.parquet")
            for stage in STAGE_ORDER:
                corpus.ledger_part(stage, chunk).unlink(missing_ok=True)
            reopened[str(chunk)] = len(retry)
    return reopened
