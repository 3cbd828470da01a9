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

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tvts_data import __version__
from tvts_data.config import PrepareConfig, config_to_dict
from tvts_data.download import make_limiter
from tvts_data.corpus import OUTPUT_DIRS, Corpus, read_rows, remove_stale_temporaries, write_json, write_rows
from tvts_data.inputs import assign_chunks, read_sources
from tvts_data.remote import (
    ObjectCorpus,
    delete_file,
    filesystem_of,
    is_remote,
    list_files,
    scratch_root,
    store_environment,
)
from tvts_data.schema import LEDGER, SCHEMA_VERSION, SOURCES, chunk_name
from tvts_data.stages.units import STAGE_ORDER, STAGE_UNITS, ledger_row

log = logging.getLogger(__name__)

ChunkFn = Callable[[dict[str, Any]], dict[str, Any]]


def run_stage_on_chunk(stage: str, root: str, cfg: PrepareConfig, item: dict[str, Any],
                       run_token: str | None = None, location: str | None = None) -> dict[str, Any]:
    """One Ray Data step: run `stage` on one chunk unless the ledger says it is done.

    Every rename into the corpus checks ``run_token``: a worker that outlived a killed driver stops
    (StaleRunError) instead of writing into the corpus a newer run is building. ``location``: where the
    corpus is published when ``root`` is a local workspace of it."""
    corpus, chunk = Corpus(Path(root), run_token, location), int(item["chunk"])
    if not corpus.is_done(stage, chunk):
        t0 = time.perf_counter()
        ledger = STAGE_UNITS[stage](corpus, chunk, cfg)
        corpus.write_rows(ledger, corpus.ledger_part(stage, chunk), LEDGER)
        ok = sum(r["status"] == "ok" for r in ledger)
        log.info("chunk %d %s: %d/%d videos ok in %.1f s", chunk, stage, ok, len(ledger), time.perf_counter() - t0)
    return {**item, "node": current_node()}


def run_chunk_in_store(stages: tuple[str, ...], uri: str, cfg: PrepareConfig, run_token: str | None,
                       item: dict[str, Any]) -> dict[str, Any]:
    """One Ray Data step for a corpus in object storage: every pending stage of one chunk, built in a local
    workspace and published stage by stage, ledger part last (`tvts_data.remote`)."""
    store, chunk = ObjectCorpus(uri), int(item["chunk"])
    work = store.workspace(scratch_root(cfg.run.scratch_dir), chunk, run_token)
    for stage in stages:
        if work.is_done(stage, chunk):
            continue
        store.pull_inputs(work, stage, chunk)
        run_stage_on_chunk(stage, str(work.root), cfg, item, location=store.uri)
        store.publish(work, stage, chunk, run_token)
    shutil.rmtree(work.root, ignore_errors=True)
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
    def run(self, chunks: list[int], steps: list[ChunkFn],
            env: dict[str, str] | None = None) -> Iterable[dict[str, Any]]: ...


@dataclass
class LocalEngine:
    """Serial, in-process: the simplest way to debug a stage."""

    def run(self, chunks: list[int], steps: list[ChunkFn],
            env: dict[str, str] | None = None) -> Iterable[dict[str, Any]]:
        for c in chunks:  # in this process: ``env`` is already this process's own
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

    def run(self, chunks: list[int], steps: list[ChunkFn],
            env: dict[str, str] | None = None) -> Iterable[dict[str, Any]]:
        """``env``: variables the chunk tasks need as the driver has them (the object store's), set in
        their workers through Ray's runtime environment."""
        import ray

        if not chunks:
            return
        ds = ray.data.from_items([{"chunk": c} for c in chunks], override_num_blocks=len(chunks))
        # The stage maps share one CPU request, so Ray fuses them into a single operator: per-operator
        # reservation has nothing to protect here, and on a small cluster it held every task but the
        # first back for about a second (measured by `make bench-data`). Set on this dataset's own
        # context, never on the process-wide one.
        ds.context.op_resource_reservation_enabled = False
        remote_args: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
        for step in steps:
            ds = ds.map(step, num_cpus=self.cpus_per_task, **remote_args)
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
    corpus: Corpus  # for a corpus in object storage: the local mirror of its sources and ledger
    stats: dict[str, Any]
    seconds: float
    location: str = ""  # the --output as given (a folder or a URI)


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
        # one row group per chunk: a chunk's rows are read without reading the others' (filters prune groups)
        write_rows(rows, corpus.sources, SOURCES, row_group_size=cfg.write.videos_per_chunk)
    rejected_rows = [ledger_row(r.video_id, "input", -1, status="error", kind=r.error_kind, message=r.message)
                     for r in rejected]
    write_rows(rejected_rows, corpus.ledger_dir("input") / "rejected.parquet", LEDGER)
    for r in rejected:
        log.warning("input: %s", r.message)
    return sorted({r["chunk"] for r in rows})


def seed_from_corpus(output: str, previous: str, first_stage: str) -> None:
    """Start a new corpus from an earlier one: copy the stages before `first_stage` so that `first_stage`
    reruns alone on their output, with a new config. Either may be a folder or a URI. File by file,
    skipping files already there with their size (a killed seed finishes on the rerun), outputs before
    ledgers (a stage never looks done before its outputs are in); folder to folder by hard links where
    the file system allows."""
    earlier = STAGE_ORDER[: STAGE_ORDER.index(first_stage)]
    src_fs, src_root = filesystem_of(previous)
    dst_fs, dst_root = filesystem_of(output)
    local = isinstance(src_fs, pafs.LocalFileSystem) and isinstance(dst_fs, pafs.LocalFileSystem)
    dst_fs.create_dir(dst_root, recursive=True)
    for rel in ["sources.parquet"] + [OUTPUT_DIRS[s] for s in earlier] + [f"ledger/{s}" for s in earlier]:
        src = src_fs.get_file_info(f"{src_root}/{rel}")
        if src.type == pafs.FileType.Directory:
            files = [i for i in src_fs.get_file_info(pafs.FileSelector(src.path, recursive=True))
                     if i.type == pafs.FileType.File and not i.base_name.startswith(".tmp-")
                     and "/.tmp-" not in i.path[len(src_root):]]
        else:
            files = [src] if src.type == pafs.FileType.File else []
        for info in files:
            dst = f"{dst_root}/{info.path[len(src_root) + 1:]}"
            if dst_fs.get_file_info(dst).size == info.size:
                continue
            dst_fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
            if local:
                Path(dst).unlink(missing_ok=True)
                _link_or_copy(info.path, dst)
            else:
                pafs.copy_files(info.path, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def is_corpus(location: str | Path) -> bool:
    """Whether ``location`` (a folder or a URI) holds a corpus: its sources.parquet exists."""
    fs, root = filesystem_of(str(location))
    return fs.get_file_info(f"{root}/sources.parquet").type == pafs.FileType.File


def _same_location(a: str, b: str) -> bool:
    if is_remote(a) or is_remote(b):
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def prepare(input_path: str | Path, output: str | Path, cfg: PrepareConfig,
            stages: tuple[str, ...] = STAGE_ORDER, engine: LocalEngine | RayEngine | None = None) -> PrepareResult:
    """Build (or finish building) a corpus in a folder or under an object-store URI; see the module
    docstring for resume and `tvts_data.remote` for object stores."""
    t0 = time.perf_counter()
    unknown = [s for s in stages if s not in STAGE_UNITS]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGE_ORDER)}")
    stages = tuple(s for s in STAGE_ORDER if s in stages)
    input_path, output = str(input_path), str(output)
    store = ObjectCorpus(output) if is_remote(output) else None
    if store is None:
        corpus = Corpus(Path(output))
        corpus.root.mkdir(parents=True, exist_ok=True)
        corpus = corpus.claim()  # from here on, workers of an earlier run of this corpus write nothing
        removed = remove_stale_temporaries(corpus.root)
        if removed:
            log.info("removed %d temporary files of an interrupted run", removed)
    else:
        corpus = store.claim(scratch_root(cfg.run.scratch_dir) / store.key / "driver")
    input_is_corpus = is_corpus(input_path)
    if input_is_corpus and not _same_location(input_path, output):
        seed_from_corpus(output, input_path, stages[0])
    if store is not None:
        store.pull_metadata(corpus)
    if input_is_corpus:
        chunks = sorted({r["chunk"] for r in read_rows(corpus.sources)})
    else:
        chunks = write_sources(corpus, Path(input_path), cfg)
        if store is not None:
            store.push(corpus, "sources.parquet", "ledger/input/rejected.parquet")
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
        if store is None:
            steps = [partial(run_stage_on_chunk, s, str(corpus.root), cfg, run_token=corpus.run_token)
                     for s in stages]
        else:
            steps = [partial(run_chunk_in_store, stages, store.uri, cfg, corpus.run_token)]
        by_node: Counter[str] = Counter()
        env = store_environment() if store is not None and cfg.run.forward_store_env else None
        for n, item in enumerate(engine.run(pending, steps, env), 1):
            by_node[item.get("node", "?")] += 1
            log.info("progress: %d/%d chunks done (chunk %d on %s)", n, len(pending), item["chunk"], item.get("node"))
        if pending:
            log.info("chunks by node: %s", dict(sorted(by_node.items())))
    finally:
        del limiter
        if own_engine and isinstance(engine, RayEngine):
            engine.shutdown()
    if store is None:
        stats = write_stats(corpus, cfg)
    else:
        store.check_fence(corpus.run_token)
        store.pull_metadata(corpus)
        stats = write_stats(corpus, cfg, store.shard_list())
        store.push(corpus, "stats.json", "manifest.json")
    return PrepareResult(corpus, stats, time.perf_counter() - t0, output)


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


def local_shards(corpus: Corpus) -> list[dict[str, Any]]:
    """manifest.json's shard entries for a corpus folder: path, rows, bytes."""
    d = corpus.stage_dir("frames")
    return [{"path": str(p.relative_to(corpus.root)), "rows": pq.ParquetFile(p).metadata.num_rows,
             "bytes": p.stat().st_size} for p in (sorted(d.glob("shard-*.parquet")) if d.exists() else [])]


def window_accounting(corpus: Corpus, stored: int) -> dict[str, Any]:
    """Where every planned window went: ``planned == stored + sum(dropped.values())`` when it adds up.

    Planned: the windows stage's candidates. Dropped, per kind: its filters (``min_words``), the frames
    stage's per-window drops (``window_outside_frames``) and, for a video whose frames stage failed
    as a whole (``video_unreadable``, ``decode_timeout``), every window it had. Each video counts once,
    by its latest ledger row per stage (a retried video is not counted twice).
    """
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in read_ledger(corpus):
        if row["stage"] in ("windows", "frames"):
            latest[(row["video_id"], row["stage"])] = row
    planned, dropped = 0, Counter()
    for (video_id, stage), row in latest.items():
        details = json.loads(row["details"]) if row["details"] else {}
        if stage == "windows" and row["status"] == "ok":
            planned += details.get("candidates", 0)
        dropped.update({k.removeprefix("dropped_"): v for k, v in details.items()
                        if k.startswith("dropped_") and isinstance(v, int) and row["status"] == "ok"})
        if stage == "frames" and row["status"] == "error":
            cut = latest.get((video_id, "windows"))
            dropped[row["error_kind"]] += (cut["outputs"] or 0) if cut and cut["status"] == "ok" else 0
    return {"planned": planned, "stored": stored, "dropped": dict(sorted(dropped.items())),
            "adds_up": planned == stored + sum(dropped.values())}


def summarise(corpus: Corpus, shard_list: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Counts from the ledger and the shard list (``shard_list``: that of a published corpus, else the
    folder's own)."""
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
    shard_list = local_shards(corpus) if shard_list is None else shard_list
    stored = sum(s["rows"] for s in shard_list)
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
        "window_accounting": window_accounting(corpus, stored),
        "windows": stored,
        "frames_bytes": sum(s["bytes"] for s in shard_list),
        "shards": shard_list,
    }


def write_stats(corpus: Corpus, cfg: PrepareConfig, shard_list: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    summary = summarise(corpus, shard_list)
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


def retry_failed(corpus: Corpus | str) -> dict[str, int]:
    """Reopen exactly the chunks that hold retryable download failures for the next `prepare`, in a corpus
    folder or under a URI.

    A reopened chunk's later stages lose their ledger parts first, then its download ledger part moves to
    ``ledger/download/history/`` (each video's attempt history): a run killed in between leaves at worst
    later stages to redo. The next download of the chunk fetches only the retryable failures: a video
    already downloaded is found complete in raw/, and a final failure (404, private, removed...) is carried
    over from the history without any request."""
    location = corpus if isinstance(corpus, str) else str(corpus.root)
    if not is_corpus(location):
        raise FileNotFoundError(f"{location}: not a corpus (no sources.parquet); give the --output of "
                                "`tvts-data prepare`")
    fs, parts = list_files(location, "ledger/download")
    _, root = filesystem_of(location)
    _, history = list_files(location, "ledger/download/history")
    earlier = Counter(h.base_name.rsplit("-", 1)[0] for h in history)  # "chunk-00003-001.parquet" -> chunk-00003
    reopened: dict[str, int] = {}
    for info in parts:
        rows = read_rows(info.path, fs)
        retry = [r for r in rows if r["status"] == "error" and json.loads(r["details"] or "{}").get("retryable")]
        if retry:
            chunk = rows[0]["chunk"]
            stem = info.base_name.removesuffix(".parquet")
            n = earlier[stem]
            for stage in STAGE_ORDER[1:]:
                delete_file(fs, f"{root}/ledger/{stage}/{chunk_name(chunk)}")
            fs.create_dir(f"{root}/ledger/download/history")
            fs.move(info.path, f"{root}/ledger/download/history/{stem}-{n:03d}.parquet")
            reopened[str(chunk)] = len(retry)
    return reopened
