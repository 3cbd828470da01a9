"""The four stages as units with one input and one output each, run one chunk at a time.

A unit reads its chunk's input (the previous stage's output on disk), applies a pure per-video function,
writes its chunk's output (temporary name, then rename) and returns the ledger rows. The runner writes
the ledger part last, which marks the chunk done. Each unit can run alone on the previous stage's
output, so a stage can be rerun with a new config to build a new corpus.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from tvts_data.config import PrepareConfig
from tvts_data.corpus import Corpus, read_rows
from tvts_data.schema import SHARD, WINDOWS, WORDS, shard_name
from tvts_data.stages.deadline import DecodeHelper
from tvts_data.stages.errors import StageError
from tvts_data.stages.frames import decode_video_windows
from tvts_data.stages.windows import cut_windows
from tvts_data.stages.words import extract_words

log = logging.getLogger(__name__)

# apply(item, cfg) -> (output rows, details for the ledger)
Apply = Callable[[dict[str, Any]], tuple[list[dict[str, Any]], dict[str, Any]]]


def ledger_row(video_id: str, stage: str, chunk: int, *, status: str, outputs: int = 0, kind: str | None = None,
               message: str | None = None, attempts: int = 1, nbytes: int = 0, seconds: float = 0.0,
               details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"video_id": video_id, "stage": stage, "status": status, "error_kind": kind, "message": message,
            "outputs": outputs, "attempts": attempts, "bytes": nbytes, "seconds": round(seconds, 4),
            "chunk": chunk, "details": json.dumps(details, sort_keys=True) if details else None}


def apply_per_video(stage: str, chunk: int, items: list[tuple[str, Any]], apply: Apply,
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run `apply` on each video; a bad video becomes an error row and the others go on."""
    outputs: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    for video_id, item in items:
        t0 = time.perf_counter()
        try:
            rows, details = apply(item)
        except StageError as exc:
            ledger.append(ledger_row(video_id, stage, chunk, status="error", kind=exc.kind, message=exc.message,
                                     attempts=exc.attempts, seconds=time.perf_counter() - t0))
            log.info("%s: video %s: %s", stage, video_id, exc.message)
            continue
        except Exception as exc:  # a bug or an unforeseen file: record it, keep the run going
            log.error("%s: video %s: unexpected %s\n%s", stage, video_id, type(exc).__name__, traceback.format_exc())
            ledger.append(ledger_row(video_id, stage, chunk, status="error", kind="internal_error",
                                     message=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0))
            continue
        outputs.extend(rows)
        nbytes = sum(sum(len(f) for f in r.get("frames", ())) for r in rows)
        ledger.append(ledger_row(video_id, stage, chunk, status="ok", outputs=len(rows), nbytes=nbytes,
                                 seconds=time.perf_counter() - t0, details=details))
    return outputs, ledger


def _by_video(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["video_id"], []).append(r)
    return list(groups.items())


def _require(corpus: Corpus, stage: str, before: str, chunk: int) -> None:
    if not corpus.is_done(before, chunk):
        raise FileNotFoundError(f"{corpus.public_path(corpus.ledger_part(before, chunk))} is missing: stage "
                                f"{stage!r} needs stage "
                                f"{before!r} done for chunk {chunk}; run `tvts-data prepare --stages {before},{stage}`")


def sources_of_chunk(corpus: Corpus, chunk: int) -> list[dict[str, Any]]:
    table = pq.read_table(corpus.sources, filters=[("chunk", "=", chunk)])
    return table.to_pylist()


def run_words(corpus: Corpus, chunk: int, cfg: PrepareConfig) -> list[dict[str, Any]]:
    sources = sources_of_chunk(corpus, chunk)
    if any(s["kind"] == "youtube" for s in sources):
        _require(corpus, "words", "download", chunk)
        ok = {r["video_id"] for r in read_rows(corpus.ledger_part("download", chunk)) if r["status"] == "ok"}
        sources = [s for s in sources if s["kind"] != "youtube" or s["video_id"] in ok]
    transcribe = make_transcriber(cfg, corpus.root / ".scratch")

    def apply(src: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        row = extract_words(src, corpus.raw, cfg, transcribe)
        if src["kind"] == "youtube":  # where readers find the download (a bucket URI for a published corpus)
            row["video_path"] = corpus.public_path(Path(row["video_path"]))
        return [row], {"words": len(row["words"]), "timing": row["timing"], "format": row["source_format"]}

    outputs, ledger = apply_per_video("words", chunk, [(s["video_id"], s) for s in sources], apply)
    corpus.write_rows(outputs, corpus.chunk_file("words", chunk), WORDS)
    return ledger


def make_transcriber(cfg: PrepareConfig, scratch: Path | None = None) -> Callable[[str], Any] | None:
    """The ASR fallback, or None when the config keeps to captions; its temporaries go under ``scratch``."""
    if cfg.asr.mode == "captions":
        return None
    from tvts_data.asr import AsrError, transcribe_video

    def transcribe(video_path: str) -> Any:
        try:
            return transcribe_video(video_path, cfg.asr, scratch)
        except AsrError as exc:
            raise StageError(exc.kind, f"ASR ({cfg.asr.backend}) on {video_path}: {exc.message}") from exc

    return transcribe


def run_windows(corpus: Corpus, chunk: int, cfg: PrepareConfig) -> list[dict[str, Any]]:
    _require(corpus, "windows", "words", chunk)
    words_rows = read_rows(corpus.chunk_file("words", chunk))

    def apply(row: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        windows, counts = cut_windows(row, cfg.windows)
        if not windows:
            raise StageError("no_windows", f"video {row['video_id']}: none of its {counts['candidates']} windows "
                             f"passed the filters ({dict(counts)}); lower windows.min_words to keep them")
        return windows, dict(counts)

    outputs, ledger = apply_per_video("windows", chunk, [(r["video_id"], r) for r in words_rows], apply)
    corpus.write_rows(outputs, corpus.chunk_file("windows", chunk), WINDOWS)
    return ledger


def run_frames(corpus: Corpus, chunk: int, cfg: PrepareConfig) -> list[dict[str, Any]]:
    _require(corpus, "frames", "windows", chunk)
    windows = read_rows(corpus.chunk_file("windows", chunk))
    # A download is read from this corpus's raw/, wherever the words stage saw it (looked up once per video).
    downloaded = {s["video_id"] for s in sources_of_chunk(corpus, chunk) if s["kind"] == "youtube"}
    in_raw = {vid: str(raw_video(corpus, vid, cfg)) for vid in {w["video_id"] for w in windows} & downloaded}
    for w in windows:
        w["video_path"] = in_raw.get(w["video_id"], w["video_path"])
    timeout = cfg.frames.decode_timeout_s

    with DecodeHelper() as helper:
        def apply(group: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            if timeout is None:
                rows, dropped = decode_video_windows(group, cfg.frames)
            else:
                rows, dropped = helper.call(decode_video_windows, (group, cfg.frames), timeout,
                                            f"video {group[0]['video_id']}")
            # "dropped_<kind>" as the windows stage counts its filters: stats.json adds them up per kind
            return rows, {"frames": sum(len(r["frames"]) for r in rows),
                          **{f"dropped_{kind}": n for kind, n in sorted(dropped.items())}}

        outputs, ledger = apply_per_video("frames", chunk, _by_video(windows), apply)
    write_shards(corpus, chunk, outputs, cfg)
    if cfg.download.delete_raw_after_frames:
        delete_raw_videos(corpus, ledger)
    return ledger


def raw_video(corpus: Corpus, video_id: str, cfg: PrepareConfig) -> Path:
    """The downloaded video of ``video_id`` in the corpus's raw/ (a path that does not exist when it is gone:
    the frames stage then records the video as unreadable)."""
    found = sorted(p for p in corpus.raw.glob(f"{video_id}.*") if p.suffix in cfg.input.video_extensions)
    return found[0] if found else corpus.raw / f"{video_id}.mp4"


def write_shards(corpus: Corpus, chunk: int, rows: list[dict[str, Any]], cfg: PrepareConfig) -> list[str]:
    """Split a chunk's windows into shards of at most the target size (one window never splits)."""
    corpus.check_fence()
    for old in corpus.stage_dir("frames").glob(f"shard-{chunk:05d}-*.parquet"):
        old.unlink()  # a killed earlier attempt at this chunk: its parts are replaced, never duplicated
    target = cfg.write.shard_target_mb * 2**20
    parts: list[list[dict[str, Any]]] = [[]]
    size = 0.0
    for row in rows:
        row_bytes = sum(len(f) for f in row["frames"])
        if parts[-1] and size + row_bytes > target:
            parts.append([])
            size = 0.0
        parts[-1].append(row)
        size += row_bytes
    names = []
    for i, part in enumerate(p for p in parts if p):
        path = corpus.stage_dir("frames") / shard_name(chunk, i)
        corpus.write_rows(part, path, SHARD, row_group_size=cfg.write.row_group_windows)
        names.append(path.name)
    return names


def run_download(corpus: Corpus, chunk: int, cfg: PrepareConfig) -> list[dict[str, Any]]:
    """Downloads of a chunk overlap in threads (their time is network waits); the request limiter is the
    job-wide one the driver started, so the rate holds across all workers together."""
    from tvts_data.download import download_video, make_limiter

    sources = [s for s in sources_of_chunk(corpus, chunk) if s["kind"] == "youtube"]
    download_cfg = dataclasses.replace(cfg.download, require_captions=cfg.asr.mode == "captions")
    limiter = make_limiter(download_cfg)
    before = download_history(corpus, chunk)

    def fetch(src: dict[str, Any]) -> dict[str, Any]:
        earlier = before.get(src["video_id"])
        if earlier is not None and earlier["status"] == "error" and not json.loads(earlier["details"] or "{}").get(
                "retryable"):
            return earlier  # a final failure (404, private...) is not asked for again
        row = _download_row(src)
        if earlier is not None:
            row["attempts"] += earlier["attempts"]  # the video's whole attempt history
        return row

    def _download_row(src: dict[str, Any]) -> dict[str, Any]:
        ref: Any = src["video_id"]
        if src.get("annotation_path"):  # a saved info JSON: re-fetch without extracting again
            ref = json.loads(Path(src["annotation_path"]).read_text())
        result = download_video(ref, corpus.raw, download_cfg, limiter=limiter)
        # "files": the raw files of the video, its info JSON (the mark of a complete download) last
        details = {"retryable": result.retryable} if result.status != "ok" else {
            "caption": Path(result.caption_path).name if result.caption_path else None,
            "translated": result.caption_translated,
            "files": [Path(p).name for p in (result.video_path, result.caption_path, result.info_path) if p]}
        return ledger_row(src["video_id"], "download", chunk, status=result.status, kind=result.error_kind,
                          message=result.message or None, attempts=result.attempts, nbytes=result.bytes,
                          seconds=result.seconds, outputs=int(result.status == "ok"), details=details)

    with ThreadPoolExecutor(max(1, cfg.download.concurrent_downloads)) as pool:
        return list(pool.map(fetch, sources))


def download_history(corpus: Corpus, chunk: int) -> dict[str, dict[str, Any]]:
    """The latest download ledger row per video of a chunk from ``retry-failed``'s history (or {})."""
    history = corpus.ledger_dir("download") / "history"
    latest: dict[str, dict[str, Any]] = {}
    for part in sorted(history.glob(f"chunk-{chunk:05d}-*.parquet")) if history.exists() else []:
        latest.update({r["video_id"]: r for r in read_rows(part)})
    return latest


def delete_raw_videos(corpus: Corpus, ledger: list[dict[str, Any]]) -> None:
    """`download.delete_raw_after_frames`: a downloaded video goes once its frames are in a shard
    (captions and info JSON stay, so the words and windows stages can still rerun; frames cannot)."""
    for row in ledger:
        if row["status"] == "ok":
            for video in corpus.raw.glob(f"{row['video_id']}.*"):
                if video.suffix in (".mp4", ".webm", ".mkv", ".mov"):
                    video.unlink(missing_ok=True)


STAGE_UNITS: dict[str, Callable[[Corpus, int, PrepareConfig], list[dict[str, Any]]]] = {
    "download": run_download,
    "words": run_words,
    "windows": run_windows,
    "frames": run_frames,
}
STAGE_ORDER = tuple(STAGE_UNITS)
