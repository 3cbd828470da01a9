"""Input adapters: whatever the user points `--input` at becomes a list of source rows (schema.SOURCES).

Accepted inputs:
- a folder of local videos with caption files beside them (``ID.mp4`` + ``ID.en.json3`` / ``.srv3`` /
  ``.vtt`` / ``.srt``), or with a YT-Temporal annotation ``ID.json`` (``subtitles``/``denoised``/``info``);
- a manifest (CSV, JSONL or Parquet) with a path column (``video_path``, ``path`` or ``video``) and an
  optional ``caption_path`` / ``annotation_path``; relative paths are taken from the manifest's folder;
- a list of YouTube IDs or URLs (``.txt``, or CSV/JSONL/Parquet with an id column and no path column);
- a folder of yt-dlp ``*.info.json`` files (re-download from saved metadata, no extraction).

Rows that cannot be used (a bad ID, a missing file, a duplicate) come back as ledger rows, not
exceptions, so one bad line never stops a run.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tvts_data.config import PrepareConfig
from tvts_data.download import read_id_list, scan_info_json_dir

log = logging.getLogger(__name__)

CAPTION_EXTENSIONS = (".json3", ".srv3", ".vtt", ".srt")
PATH_COLUMNS = ("video_path", "path", "video")
ID_COLUMNS = ("video_id", "id", "youtube_id", "url")
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Rejected:
    """An input row that cannot become a video; it becomes a ledger row of the 'input' stage."""

    video_id: str
    error_kind: str
    message: str


def video_id_for(path: Path) -> str:
    """A local video's id: its file stem, with characters unsafe in file names replaced."""
    return _SAFE_ID.sub("_", path.stem)


def caption_language(caption: Path, stem: str) -> str | None:
    """``ID.en-orig.json3`` -> "en-orig"; ``ID.json3`` -> None."""
    middle = caption.name[len(stem):].rsplit(".", 1)[0].strip(".")
    return middle or None


def find_captions(video: Path) -> list[Path]:
    """Caption files beside a video: same stem, optional language, a known caption extension."""
    stem = video.stem
    found = []
    for p in video.parent.glob(f"{glob_escape(stem)}*"):
        if p.suffix not in CAPTION_EXTENSIONS or p == video:
            continue
        lang = caption_language(p, stem)
        if lang is None or "." not in lang:
            found.append(p)
    return sorted(found)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def choose_caption(captions: list[Path], stem: str, cfg: PrepareConfig) -> Path | None:
    """The best caption beside a video: accepted language first (original tracks before others),
    then the configured format order. A caption in no accepted language is still returned when it is
    the only one, so that the words stage records *why* it is refused instead of silently skipping."""
    if not captions:
        return None
    langs = cfg.words.languages
    formats = cfg.words.caption_formats

    def rank(p: Path) -> tuple[int, int, int]:
        lang = caption_language(p, stem) or ""
        base = lang.split("-")[0]
        lang_rank = langs.index(base) if base in langs else (0 if not langs or not lang else len(langs))
        orig = 0 if lang.endswith("-orig") or "-" not in lang else 1
        fmt = p.suffix.lstrip(".")
        return lang_rank, orig, formats.index(fmt) if fmt in formats else len(formats)

    return min(captions, key=rank)


def is_yttemporal_annotation(path: Path) -> bool:
    try:
        with path.open() as f:
            head = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(head, dict) and "subtitles" in head


def local_source(video: Path, cfg: PrepareConfig, caption: Path | None = None,
                 annotation: Path | None = None) -> dict[str, Any]:
    if caption is None and annotation is None:
        ann = video.with_suffix(".json")
        if ann.exists() and is_yttemporal_annotation(ann):
            annotation = ann
        else:
            caption = choose_caption(find_captions(video), video.stem, cfg)
    return {
        "video_id": video_id_for(video),
        "video_path": str(video.resolve()),
        "caption_path": str(caption.resolve()) if caption else None,
        "annotation_path": str(annotation.resolve()) if annotation else None,
        "kind": "yttemporal" if annotation else "local",
    }


def youtube_source(video_id: str, info_path: str | None = None) -> dict[str, Any]:
    return {"video_id": video_id, "video_path": None, "caption_path": None,
            "annotation_path": info_path, "kind": "youtube"}


def _read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix in (".csv", ".tsv"):
        opts = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
        return pacsv.read_csv(path, parse_options=opts)
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return pa.Table.from_pylist(rows)
    raise ValueError(f"{path}: unknown manifest type {suffix!r}; use .csv, .tsv, .jsonl or .parquet")


def _manifest_sources(path: Path, table: pa.Table, column: str,
                      cfg: PrepareConfig) -> tuple[list[dict[str, Any]], list[Rejected]]:
    sources, rejected = [], []
    cols = table.column_names
    for i, row in enumerate(table.to_pylist()):
        raw = row.get(column)
        if not raw:
            rejected.append(Rejected(f"{path.name}:{i + 1}", "bad_input", f"{path}: line {i + 1} has no {column}"))
            continue
        video = Path(raw) if Path(raw).is_absolute() else path.parent / raw
        if not video.exists():
            rejected.append(Rejected(video_id_for(video), "missing_file",
                                     f"{path}: line {i + 1}: {video} does not exist; fix the path in the manifest"))
            continue
        cap = row.get("caption_path") if "caption_path" in cols else None
        ann = row.get("annotation_path") if "annotation_path" in cols else None
        resolve = (lambda p: None if not p else (Path(p) if Path(p).is_absolute() else path.parent / p))
        sources.append(local_source(video, cfg, resolve(cap), resolve(ann)))
    return sources, rejected


def _id_sources(ids: list[str], bad: list[Any]) -> tuple[list[dict[str, Any]], list[Rejected]]:
    rejected = [Rejected(f"line-{b.line}", b.kind, f"line {b.line}: {b.text!r}: {b.reason}") for b in bad]
    return [youtube_source(i) for i in ids], rejected


def read_sources(path: str | Path, cfg: PrepareConfig) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Every usable input row (deduplicated by video id, sorted) and every rejected one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--input {path} does not exist")
    if path.is_dir():
        sources, rejected = _folder_sources(path, cfg)
    elif path.suffix.lower() == ".txt":
        sources, rejected = _id_sources(*read_id_list(path))
    else:
        table = _read_table(path)
        column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
        if column == "video" and any(c in table.column_names for c in ID_COLUMNS[:1]):
            column = None
        if column is not None:
            sources, rejected = _manifest_sources(path, table, column, cfg)
        else:
            sources, rejected = _id_sources(*read_id_list(path))
    return _dedupe(sources, rejected)


def _folder_sources(path: Path, cfg: PrepareConfig) -> tuple[list[dict[str, Any]], list[Rejected]]:
    exts = {e.lower() for e in cfg.input.video_extensions}
    videos = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in exts
                    and not p.name.startswith("."))
    if videos:
        return [local_source(v, cfg) for v in videos], []
    infos, bad = scan_info_json_dir(path)
    if infos or bad:
        rejected = [Rejected(Path(b.text).name, b.kind, f"{b.text}: {b.reason}") for b in bad]
        return [youtube_source(info["id"], info.get("__info_path")) for info in infos], rejected
    raise ValueError(f"--input {path}: no videos ({', '.join(sorted(exts))}) and no *.info.json files found")


def _dedupe(sources: list[dict[str, Any]], rejected: list[Rejected]) -> tuple[list[dict[str, Any]], list[Rejected]]:
    seen: dict[str, dict[str, Any]] = {}
    for src in sources:
        if src["video_id"] in seen:
            rejected.append(Rejected(src["video_id"], "duplicate",
                                     f"{src['video_path'] or src['video_id']}: same video id as "
                                     f"{seen[src['video_id']]['video_path'] or 'an earlier row'}; kept the first"))
            continue
        seen[src["video_id"]] = src
    return [seen[k] for k in sorted(seen)], rejected


def assign_chunks(sources: list[dict[str, Any]], videos_per_chunk: int) -> list[dict[str, Any]]:
    """Chunks follow sorted video-id order, so the same input always cuts the same chunks."""
    return [{**src, "chunk": i // videos_per_chunk} for i, src in enumerate(sources)]
