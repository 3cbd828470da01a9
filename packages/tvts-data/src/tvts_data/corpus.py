"""Paths and atomic file operations of a corpus directory (layout documented in `tvts_data.schema`)."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tvts_data.schema import chunk_name, check_version, with_version

OUTPUT_DIRS = {"download": "raw", "words": "words", "windows": "windows", "frames": "shards"}


@dataclass(frozen=True)
class Corpus:
    root: Path

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


def write_table(table: pa.Table, path: Path, schema: pa.Schema, row_group_size: int | None = None) -> int:
    """Write a versioned Parquet file under a temporary name, then rename: readers never see half a file.
    Returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    table = table.cast(with_version(schema)) if table.schema != schema else table.replace_schema_metadata(
        with_version(schema).metadata)
    pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")
    size = tmp.stat().st_size
    os.replace(tmp, path)
    return size


def write_rows(rows: list[dict[str, Any]], path: Path, schema: pa.Schema, row_group_size: int | None = None) -> int:
    return write_table(pa.Table.from_pylist(rows, schema=schema), path, schema, row_group_size)


def read_rows(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    check_version(table.schema, str(path))
    return table.to_pylist()


def write_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def remove_stale_temporaries(root: Path) -> int:
    """Temporary files of a killed run: never renamed, so never valid. Returns how many were removed."""
    stale = [p for p in root.rglob(".tmp-*") if p.is_file()] if root.exists() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)
