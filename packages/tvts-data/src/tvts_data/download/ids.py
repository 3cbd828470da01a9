"""YouTube video references: IDs and URLs in, normalised 11-character IDs out.

A bad line never stops a run: the list readers return it as a `BadRef` row (line, text, reason) for the
ledger, and drop duplicates keeping the first occurrence.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
ID_COLUMNS = ("id", "video_id", "youtube_id", "url")
_HOSTS = {"youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com", "youtu.be"}
_PATH_PREFIXES = ("shorts", "embed", "live", "v", "e")
_INLINE_COMMENT = re.compile(r"\s+#.*$")


class BadVideoRef(ValueError):
    """A line that is neither a YouTube video ID nor a YouTube video URL.

    ``str()`` names the text; ``reason`` is the rest, for messages that show the text already.
    """

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r}: {reason}")
        self.text, self.reason = text, reason


@dataclass(frozen=True)
class BadRef:
    line: int  # 1-based line (or row) in the input file
    text: str
    reason: str
    kind: str = "bad_id"  # "bad_id" | "duplicate"


def _id_from_url(text: str) -> str | None:
    url = urlsplit(text if "://" in text else f"https://{text}")
    host = (url.hostname or "").lower().removeprefix("www.")
    if host not in _HOSTS:
        return None
    parts = [p for p in url.path.split("/") if p]
    if host == "youtu.be":
        return parts[0] if parts else None
    if parts[:1] == ["watch"] or not parts:
        values = parse_qs(url.query).get("v")
        return values[0] if values else None
    if len(parts) >= 2 and parts[0] in _PATH_PREFIXES:
        return parts[1]
    return None


def parse_video_ref(line: str) -> str:
    """The 11-character video ID of an ID or a YouTube URL (watch, youtu.be, shorts, embed, music)."""
    text = line.strip()
    if VIDEO_ID.match(text):
        return text
    found = _id_from_url(text) if ("youtu" in text.lower()) else None
    if found is not None and VIDEO_ID.match(found):
        return found
    if found is not None:
        raise BadVideoRef(text, f"the URL names video {found!r}, which is not 11 characters of A-Z a-z 0-9 _ -")
    raise BadVideoRef(text, "not a YouTube video ID (11 characters of A-Z a-z 0-9 _ -) nor a "
                      "youtube.com/watch?v=, youtu.be/, /shorts/ or /embed/ URL")


def _pick_column(names: list[str]) -> str | None:
    lower = {n.lower().strip(): n for n in names}
    return next((lower[c] for c in ID_COLUMNS if c in lower), None)


def _txt_rows(path: Path) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        text = _INLINE_COMMENT.sub("", raw).strip()
        if text and not text.startswith("#"):
            yield number, text


def _looks_like_ref(text: str) -> bool:
    try:
        parse_video_ref(text)
    except BadVideoRef:
        return False
    return True


def _csv_rows(path: Path) -> Iterator[tuple[int, str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    if not rows:
        return
    column = _pick_column(rows[0])
    # A first row that is itself a video is data, not a header; any other first row is a header.
    has_header = column is not None or not (rows[0] and _looks_like_ref(rows[0][0]))
    index = rows[0].index(column) if column is not None else 0
    for number, row in enumerate(rows, start=1):
        if (has_header and number == 1) or not any(cell.strip() for cell in row):
            continue
        yield number, row[index].strip() if index < len(row) else ""


def _value_of(record: Any) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict) and record:
        column = _pick_column(list(record)) or next(iter(record))
        return "" if record[column] is None else str(record[column])
    raise ValueError(f"expected a JSON object or string, got {type(record).__name__}")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, str | BadRef]]:
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, _value_of(json.loads(raw))
        except (json.JSONDecodeError, ValueError) as exc:  # one bad line is a row, not a crash
            yield number, BadRef(number, raw.strip()[:200], f"not a JSON object with an id: {exc}")


def _parquet_rows(path: Path) -> Iterator[tuple[int, str]]:
    import pyarrow.parquet as pq  # only for this input type

    table = pq.read_table(path)
    column = _pick_column(table.column_names) or table.column_names[0]
    for number, value in enumerate(table.column(column).to_pylist(), start=1):
        yield number, "" if value is None else str(value)


def _rows(path: Path) -> Iterable[tuple[int, str | BadRef]]:
    suffix = path.suffix.lower()
    readers = {".txt": _txt_rows, ".csv": _csv_rows, ".tsv": _csv_rows, ".jsonl": _jsonl_rows,
               ".parquet": _parquet_rows}
    if suffix not in readers:
        raise ValueError(f"{path}: unknown ID list type {suffix!r}; use .txt, .csv, .tsv, .jsonl or .parquet")
    return readers[suffix](path)


def read_id_list(path: str | Path) -> tuple[list[str], list[BadRef]]:
    """Video IDs of a list file in first-seen order, and the lines that are not (a bad reference, or a
    duplicate of an earlier line: the first is kept)."""
    ids: dict[str, int] = {}
    bad: list[BadRef] = []
    for number, value in _rows(Path(path)):
        if isinstance(value, BadRef):
            bad.append(value)
            continue
        try:
            video_id = parse_video_ref(value)
        except BadVideoRef as exc:
            bad.append(BadRef(number, value, exc.reason))  # the text is shown next to it already
            continue
        if video_id in ids:
            bad.append(BadRef(number, value, f"video {video_id} already on line {ids[video_id]}; kept the first",
                              kind="duplicate"))
            continue
        ids[video_id] = number
    duplicates = sum(b.kind == "duplicate" for b in bad)
    if duplicates:
        log.info("%s: %d duplicate video id(s), kept the first of each", path, duplicates)
    return list(ids), bad


def scan_info_json_dir(path: str | Path) -> tuple[list[dict[str, Any]], list[BadRef]]:
    """The yt-dlp info dicts of a folder's ``*.info.json`` files, sorted by file name, one per video id,
    and a :class:`BadRef` (``text`` = the file) for every file that is unreadable, has no id or repeats an id.

    Each dict gains ``__info_path`` (its file); keys starting with ``__`` are dropped before yt-dlp sees
    the dict.
    """
    infos: dict[str, dict[str, Any]] = {}
    bad: list[BadRef] = []
    for number, file in enumerate(sorted(Path(path).glob("*.info.json")), start=1):
        try:
            info = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            bad.append(BadRef(number, str(file), f"not a readable info JSON: {exc}", kind="bad_info_json"))
            continue
        if not isinstance(info, dict) or not info.get("id"):
            bad.append(BadRef(number, str(file), "no video id in it", kind="bad_info_json"))
            continue
        vid = str(info["id"])
        if vid in infos:
            bad.append(BadRef(number, str(file), f"video {vid} already in {infos[vid]['__info_path']}; kept the first",
                              kind="duplicate"))
            continue
        infos[vid] = {**info, "__info_path": str(file)}
    for b in bad:
        log.warning("%s: skipped: %s", b.text, b.reason)
    return list(infos.values()), bad


def read_info_json_dir(path: str | Path) -> list[dict[str, Any]]:
    """The usable info dicts of :func:`scan_info_json_dir` (the rejected files are logged)."""
    return scan_info_json_dir(path)[0]
