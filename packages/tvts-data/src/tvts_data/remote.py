"""A corpus in object storage: ``s3://``, ``gs://``, ``hdfs://`` or any URI pyarrow.fs (or fsspec) resolves.

Object stores have no atomic rename, so nothing is built in place. Each chunk is built on the worker's
local scratch disk (``run.scratch_dir``) as an ordinary corpus, raw downloads included, by the same
stage units as on POSIX, and then published stage by stage:

1. the stage's outputs are uploaded under their final names (a PUT is all or nothing: no reader ever
   sees half a file), raw files with each video's info JSON last, as on disk;
2. outputs an earlier attempt at the chunk left beyond the new ones (extra shard parts) are deleted,
   from the highest down, so a kill midway never leaves a gap;
3. the chunk's ledger part is uploaded, last.

The run token in the bucket is checked before every write (fencing, as POSIX checks it before every
rename: a worker of an earlier, killed run writes nothing). A chunk is done for a stage exactly when its
ledger part exists, as on POSIX. A run killed anywhere in between leaves no ledger part; the next run
redoes the chunk and overwrites the same names. A chunk's workspace belongs to one run; the next run's
workspace on that node takes over its raw downloads (an interrupted download resumes from its ``.part``
files), and a workspace is removed once its chunk is published.

The driver keeps a local mirror of the small files (sources, ledger) to plan the run and to write
``stats.json`` and ``manifest.json``, which it uploads at the end. Credentials and endpoints come from
each store's standard environment (for S3: the ``AWS_*`` variables and ``~/.aws``, ``AWS_ENDPOINT_URL``
for a non-AWS server, or ``?endpoint_override=`` in the URI), never from the config or the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tvts_data.corpus import OUTPUT_DIRS, TOKEN_FILE, Corpus, StaleRunError, read_rows, write_rows
from tvts_data.schema import SOURCES, shard_name

log = logging.getLogger(__name__)


class StorageError(OSError):
    """The object store refused the corpus (no such bucket, no credentials, no access)."""


def is_remote(location: str | os.PathLike) -> bool:
    """A URI for a filesystem other than the local one (``file://`` and plain paths are local)."""
    location = str(location)
    return "://" in location and not location.startswith("file://")


def resolve_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a URI: pyarrow's own filesystems first (S3, GCS, HDFS), then any
    scheme an installed fsspec implementation knows (``az://`` with adlfs...), through pyarrow's handler."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as arrow_error:
        try:
            import fsspec.core
        except ImportError:
            raise arrow_error from None
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"{uri}: neither pyarrow ({arrow_error}) nor fsspec ({exc}) can open this URI; "
                             "install the fsspec implementation for its scheme") from exc
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def filesystem_of(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path in it) for a folder or a URI, so one reader serves both."""
    location = str(location)
    if is_remote(location):
        fs, path = resolve_uri(location)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(location.removeprefix("file://")).resolve())


def list_files(location: str | os.PathLike, rel_dir: str) -> tuple[pafs.FileSystem, list[pafs.FileInfo]]:
    """The files of a corpus folder (``rel_dir`` of ``location``, a folder or a URI), sorted by path."""
    fs, root = filesystem_of(location)
    return fs, files_in(fs, f"{root}/{rel_dir}")


def files_in(fs: pafs.FileSystem, folder: str, recursive: bool = False) -> list[pafs.FileInfo]:
    """The files under ``folder`` (none when it does not exist), sorted by path."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=recursive))
    return sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path)


def delete_file(fs: pafs.FileSystem, path: str) -> None:
    """Delete one file; one that is already gone is fine (a rerun may repeat a delete)."""
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def file_size(location: str | os.PathLike) -> int | None:
    """The size of one file (a path or a URI); None when it is not there."""
    try:
        fs, path = filesystem_of(location)
        info = fs.get_file_info(path)
    except (OSError, ValueError):
        return None
    return info.size if info.type == pafs.FileType.File else None


# The standard variables that tell a client where an object store is and who is asking.
STORE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCS_", "AZURE_")


def store_environment() -> dict[str, str]:
    """The driver's object-store variables (``AWS_*``, ``GOOGLE_*``...), for the chunk tasks: a worker
    reaches the bucket the way the driver does, also on cluster nodes started without them. They travel
    in Ray's runtime environment; on a cluster whose nodes carry their own credentials (instance roles),
    leave them unset on the driver."""
    return {k: v for k, v in os.environ.items() if k.startswith(STORE_ENV_PREFIXES)}


def scratch_root(scratch_dir: str | None) -> Path:
    """Where workers build chunks and the driver mirrors the ledger: ``run.scratch_dir`` or the temp dir."""
    return Path(scratch_dir) if scratch_dir else Path(tempfile.gettempdir()) / "tvts-data"


class ObjectCorpus:
    """The corpus layout of `tvts_data.schema` under a URI; paths below are relative to its root."""

    def __init__(self, uri: str) -> None:
        self.uri = str(uri).rstrip("/")
        self.fs, base = resolve_uri(self.uri)
        self.base = base.rstrip("/")
        self.key = hashlib.sha1(self.uri.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"ObjectCorpus({self.uri!r})"

    def path(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def files(self, rel_dir: str, recursive: bool = False) -> list[pafs.FileInfo]:
        return files_in(self.fs, self.path(rel_dir), recursive)

    def relative(self, info: pafs.FileInfo) -> str:
        return info.path[len(self.base) + 1:]

    def get(self, rel: str, dest: Path) -> bool:
        """Copy one object to ``dest`` (written whole, then renamed); False when it does not exist."""
        if not self.exists(rel):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{dest.name}")
        try:
            pafs.copy_files(self.path(rel), str(tmp), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def get_tree(self, rel_dir: str, dest: Path) -> None:
        """Copy a folder's objects into ``dest`` (replacing what is there)."""
        shutil.rmtree(dest, ignore_errors=True)
        if self.files(rel_dir, recursive=True):
            dest.parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(self.path(rel_dir), str(dest), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())

    def put(self, src: Path, rel: str) -> None:
        pafs.copy_files(str(src), self.path(rel), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    def delete(self, rel: str) -> None:
        delete_file(self.fs, self.path(rel))

    def read_json(self, rel: str) -> Any:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return json.loads(f.read())

    def write_json(self, obj: Any, rel: str) -> None:
        with self.fs.open_output_stream(self.path(rel)) as f:
            f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    # --- the run token: fencing as on POSIX (`Corpus.check_fence`) ---

    def claim(self, mirror: Path) -> Corpus:
        """Start a run: a new token in the bucket, and a fresh local mirror of its sources and ledger.
        Creating the root first gives a clear error for a missing bucket or bad credentials."""
        token = uuid.uuid4().hex
        try:
            self.fs.create_dir(self.base, recursive=True)
            self.write_json({"token": token}, TOKEN_FILE)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot write the corpus there ({exc}); check that the bucket exists "
                               "and the credentials (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws, "
                               "AWS_ENDPOINT_URL for a non-AWS server) allow writing") from exc
        shutil.rmtree(mirror, ignore_errors=True)
        mirror.mkdir(parents=True)
        return Corpus(mirror, token, location=self.uri)

    def check_fence(self, run_token: str | None) -> None:
        if run_token is None:
            return
        try:
            current = self.read_json(TOKEN_FILE)["token"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):  # gone or not ours; a network error propagates
            current = None
        if current != run_token:
            raise StaleRunError(f"{self.uri}: another prepare run claimed this corpus; this worker of an earlier "
                                "run stops without writing")

    # --- the driver's mirror ---

    def pull_metadata(self, mirror: Corpus) -> None:
        """sources.parquet and the whole ledger into the mirror (what planning and stats read)."""
        self.get("sources.parquet", mirror.sources)
        self.get_tree("ledger", mirror.root / "ledger")

    def push(self, mirror: Corpus, *rels: str) -> None:
        for rel in rels:
            self.put(mirror.root / rel, rel)

    def shard_list(self) -> list[dict[str, Any]]:
        """manifest.json's shard entries (path, rows, bytes), row counts from each file's footer."""
        shards = [i for i in self.files(OUTPUT_DIRS["frames"])
                  if i.base_name.startswith("shard-") and i.base_name.endswith(".parquet")]

        def footer_rows(info: pafs.FileInfo) -> int:
            with self.fs.open_input_file(info.path) as f:
                return pq.ParquetFile(f).metadata.num_rows

        with ThreadPoolExecutor(16) as pool:  # one small range read per shard: latency-bound, so overlap them
            rows = list(pool.map(footer_rows, shards))
        return [{"path": self.relative(i), "rows": n, "bytes": i.size} for i, n in zip(shards, rows)]

    # --- a worker's chunk ---

    def workspace(self, scratch: Path, chunk: int, run_token: str | None) -> Corpus:
        """A local corpus for one chunk and run, holding what its pending stages read.

        One folder per run (``chunk-NNNNN.<token>``), so a worker of an earlier run that is still going
        never shares files with this one. Only the partial downloads of an earlier attempt on this node
        (``raw/.tmp-<id>/``, whose ``.part`` files let a download resume) move over, and complete raw files
        too while the chunk's download is not published; everything else an earlier attempt left is
        dropped: an unpublished ledger part must never pass for a done stage."""
        base = scratch / self.key
        root = base / f"chunk-{chunk:05d}.{(run_token or 'none')[:12]}"
        root.mkdir(parents=True, exist_ok=True)
        work = Corpus(root, location=self.uri)
        for old in base.glob(f"chunk-{chunk:05d}.*"):
            if old != root:
                if (old / "raw").is_dir() and not work.raw.exists():
                    (old / "raw").rename(work.raw)
                shutil.rmtree(old, ignore_errors=True)
        # The chunk's sources only: sources.parquet has one row group per chunk, so this reads one.
        table = pq.read_table(self.path("sources.parquet"), filesystem=self.fs, filters=[("chunk", "=", chunk)])
        write_rows(table.to_pylist(), work.sources, SOURCES)
        for stage in OUTPUT_DIRS:
            work.ledger_part(stage, chunk).unlink(missing_ok=True)
            self.get(self._rel(work, work.ledger_part(stage, chunk)), work.ledger_part(stage, chunk))
        shutil.rmtree(work.ledger_dir("download") / "history", ignore_errors=True)
        for info in self.files("ledger/download/history"):
            if info.base_name.startswith(f"chunk-{chunk:05d}-"):
                self.get(self.relative(info), work.ledger_dir("download") / "history" / info.base_name)
        if work.is_done("download", chunk) and work.raw.exists():
            # Published downloads come from the bucket, never from an unpublished attempt's copies.
            for entry in work.raw.iterdir():
                if not entry.name.startswith(".tmp-"):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return work

    def pull_inputs(self, work: Corpus, stage: str, chunk: int) -> None:
        """What ``stage`` reads for the chunk: the previous stage's output, and the raw files of the chunk's
        downloaded videos (listed in the download ledger) that are not in the workspace yet. A listed file
        missing from the bucket is logged (deleted after frames?) and left for the stage to report."""
        previous = {"windows": "words", "frames": "windows"}.get(stage)
        if previous is not None:
            self.get(self._rel(work, work.chunk_file(previous, chunk)), work.chunk_file(previous, chunk))
        if stage in ("download", "words", "frames"):
            for name in raw_files(work, chunk, self):
                if not (work.raw / name).exists() and not self.get(f"{OUTPUT_DIRS['download']}/{name}",
                                                                     work.raw / name):
                    log.warning("%s/%s/%s is listed in the download ledger of chunk %d but not in the bucket "
                                "(download.delete_raw_after_frames?)", self.uri, OUTPUT_DIRS["download"], name, chunk)

    def publish(self, work: Corpus, stage: str, chunk: int, run_token: str | None) -> None:
        """Upload one stage's outputs of the chunk, then its ledger part (see the module docstring). The run
        token is checked before every write, as POSIX checks it before every rename."""
        ledger = read_rows(work.ledger_part(stage, chunk))
        if stage == "download":
            outputs = [work.raw / name for row in ledger for name in _row_files(row)]
        elif stage == "frames":
            outputs = sorted(work.stage_dir("frames").glob(f"shard-{chunk:05d}-*.parquet"))
        else:
            outputs = [work.chunk_file(stage, chunk)]
        for path in outputs:
            rel = self._rel(work, path)
            if stage == "download" and self.size(rel) == path.stat().st_size:
                continue  # a retried chunk's videos that were downloaded already: in the bucket as they are
            self.check_fence(run_token)
            self.put(path, rel)
        if stage == "frames":
            self._delete_extra_parts(chunk, len(outputs), run_token)
            for name in raw_files(work, chunk):  # what the stage deleted (download.delete_raw_after_frames)
                if not (work.raw / name).exists():
                    self.check_fence(run_token)
                    self.delete(f"{OUTPUT_DIRS['download']}/{name}")
        self.check_fence(run_token)
        self.put(work.ledger_part(stage, chunk), self._rel(work, work.ledger_part(stage, chunk)))

    def _delete_extra_parts(self, chunk: int, keep: int, run_token: str | None) -> None:
        """Shard parts ``keep``.. of the chunk that an earlier attempt left. Parts are uploaded in order and
        deleted from the highest down, so the extras are always contiguous, even after a kill midway."""
        top = keep
        while self.exists(f"{OUTPUT_DIRS['frames']}/{shard_name(chunk, top)}"):
            top += 1
        for part in range(top - 1, keep - 1, -1):
            self.check_fence(run_token)
            self.delete(f"{OUTPUT_DIRS['frames']}/{shard_name(chunk, part)}")

    def size(self, rel: str) -> int | None:
        info = self.fs.get_file_info(self.path(rel))
        return info.size if info.type == pafs.FileType.File else None

    @staticmethod
    def _rel(work: Corpus, path: Path) -> str:
        return path.relative_to(work.root).as_posix()


def _row_files(row: dict[str, Any]) -> list[str]:
    if row["status"] != "ok" or not row["details"]:
        return []
    return list(json.loads(row["details"]).get("files") or [])


def raw_files(corpus: Corpus, chunk: int, store: ObjectCorpus | None = None) -> list[str]:
    """Names of the raw files of the chunk's downloaded videos, per its download ledger part (and the
    history `retry-failed` keeps), each video's info JSON last. A row written before the ledger listed
    them: read from the video's info JSON in ``store`` (our download summary names the video and caption)."""
    rows: list[dict[str, Any]] = []
    history = corpus.ledger_dir("download") / "history"
    for part in sorted(history.glob(f"chunk-{chunk:05d}-*.parquet")) if history.exists() else []:
        rows.extend(read_rows(part))
    if corpus.ledger_part("download", chunk).exists():
        rows.extend(read_rows(corpus.ledger_part("download", chunk)))
    names: list[str] = []
    for row in rows:
        files = _row_files(row)
        if not files and row["status"] == "ok" and store is not None:
            files = _files_from_info_json(store, row["video_id"])
        names.extend(files)
    return list(dict.fromkeys(names))


def _files_from_info_json(store: ObjectCorpus, video_id: str) -> list[str]:
    info_name = f"{video_id}.info.json"
    try:
        # "tvts_download": download.ytdlp.SUMMARY_KEY (not imported here: that module loads yt-dlp)
        summary = store.read_json(f"{OUTPUT_DIRS['download']}/{info_name}").get("tvts_download") or {}
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in (summary.get("video"), summary.get("caption")) if f] + [info_name]
