"""Paths and atomic file operations of a corpus directory (layout documented in `tvts_data.schema`)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tvts_data.schema import PLAIN_COLUMNS, chunk_name, check_version, with_version

OUTPUT_DIRS = {"download": "raw", "words": "words", "windows": "windows", "frames": "shards"}


class StaleRunError(RuntimeError):
    """A newer `prepare` owns the corpus: a worker of an earlier, killed run must not write into it."""


TOKEN_FILE = ".run-token"


@dataclass(frozen=True)
class Corpus:
    root: Path
    run_token: str | None = None  # the run this process works for; None: no fencing (reading, tests)
    # Where the corpus is published when ``root`` is a local workspace of it (an object-store URI, see
    # `tvts_data.remote`); None: ``root`` is the corpus itself.
    location: str | None = None

    def claim(self) -> Corpus:
        """Start a run: a new token in the corpus; workers of any earlier run stop writing (see write_rows)."""
        token = uuid.uuid4().hex
        write_json({"token": token}, self.root / TOKEN_FILE)
        return Corpus(self.root, token, self.location)

    def public_path(self, path: Path) -> str:
        """The name a file of this corpus has where readers find it: its URI for a workspace of a published
        corpus, else the local path itself."""
        if self.location is None:
            return str(path)
        base, _, query = self.location.partition("?")  # s3://b/c?endpoint_override=...: the query goes last
        return f"{base}/{path.relative_to(self.root).as_posix()}" + (f"?{query}" if query else "")

    def check_fence(self) -> None:
        """Raise :class:`StaleRunError` when another run has claimed the corpus since this one did."""
        if self.run_token is None:
            return
        try:
            current = json.loads((self.root / TOKEN_FILE).read_text())["token"]
        except (OSError, ValueError, KeyError):
            current = None
        if current != self.run_token:
            raise StaleRunError(f"{self.root}: another prepare run claimed this corpus; this worker of an earlier "
                                "run stops without writing")

    def write_rows(self, rows: list[dict[str, Any]], path: Path, schema: pa.Schema,
                   row_group_size: int | None = None) -> int:
        """:func:`write_rows`, renamed into place only while this run still owns the corpus."""
        return write_table(pa.Table.from_pylist(rows, schema=schema), path, schema, row_group_size,
                           before_rename=self.check_fence)

    @property
    def sources(self) -> Path:
        return self.root / "sources.parquet"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    def stage_dir(self, stage: str) -> Path:
        return self.root / OUTPUT_DIRS[stage]

    def chunk_file(self, stage: str, chunk: int) -> Path:
        return self.stage_dir(stage) / chunk_name(chunk)

    def ledger_dir(self, stage: str) -> Path:
        return self.root / "ledger" / stage

    def ledger_part(self, stage: str, chunk: int) -> Path:
        return self.ledger_dir(stage) / chunk_name(chunk)

    def is_done(self, stage: str, chunk: int) -> bool:
        return self.ledger_part(stage, chunk).exists()


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")


def write_table(table: pa.Table, path: Path, schema: pa.Schema, row_group_size: int | None = None,
                before_rename: Callable[[], None] | None = None) -> int:
    """Write a versioned Parquet file under a temporary name, then rename: readers never see half a file.
    ``before_rename`` may refuse the rename by raising (the temporary is removed). Returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    table = table.cast(with_version(schema)) if table.schema != schema else table.replace_schema_metadata(
        with_version(schema).metadata)
    plain = [path for f in table.schema if f.name in PLAIN_COLUMNS for path in _leaf_paths(f.name, f.type)]
    if plain:  # per-leaf settings: Parquet names a list's leaf "frames.list.element", not "frames"
        leaves = [path for f in table.schema for path in _leaf_paths(f.name, f.type)]
        pq.write_table(table, tmp, row_group_size=row_group_size,
                       compression={p: "none" if p in plain else "zstd" for p in leaves},
                       use_dictionary=[p for p in leaves if p not in plain])
    else:
        pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")
    size = tmp.stat().st_size
    try:
        if before_rename is not None:
            before_rename()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return size


def _leaf_paths(name: str, tp: pa.DataType) -> list[str]:
    """Parquet column paths of an Arrow field (lists as ``name.list.element``, structs as ``name.child``)."""
    if pa.types.is_list(tp) or pa.types.is_large_list(tp):
        return _leaf_paths(f"{name}.list.element", tp.value_type)
    if pa.types.is_struct(tp):
        return [p for i in range(tp.num_fields) for p in _leaf_paths(f"{name}.{tp.field(i).name}", tp.field(i).type)]
    return [name]


def write_rows(rows: list[dict[str, Any]], path: Path, schema: pa.Schema, row_group_size: int | None = None) -> int:
    return write_table(pa.Table.from_pylist(rows, schema=schema), path, schema, row_group_size)


def read_rows(path: Path | str, filesystem: pafs.FileSystem | None = None) -> list[dict[str, Any]]:
    """The rows of a versioned Parquet file (``filesystem``: where ``path`` lives; default local)."""
    table = pq.read_table(path, filesystem=filesystem)
    check_version(table.schema, str(path))
    return table.to_pylist()


def write_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def remove_stale_temporaries(root: Path) -> int:
    """Temporary files of a killed run: never renamed, so never valid, and the scratch folder (ASR audio,
    private cookie copies). Returns how many files were removed. A download's ``raw/.tmp-<id>/`` folder
    stays: its ``.part`` files let the download resume."""
    stale = [p for p in root.rglob(".tmp-*") if p.is_file()] if root.exists() else []
    scratch = root / ".scratch"
    if scratch.exists():
        stale += [p for p in scratch.rglob("*") if p.is_file() and p not in stale]
    for p in stale:
        p.unlink(missing_ok=True)
    if scratch.exists():
        shutil.rmtree(scratch, ignore_errors=True)
    return len(stale)
