"""Streaming loader over SHARD Parquet files (``tvts_data.schema.SHARD``) for the pretrainer.

What one batch holds (the contract with :class:`tvts_train.model.TVTS`)::

    video           uint8   (B, 3, T, H, W)  RGB, T = data.frames, H = W = data.crop_size; the trainer
                                             normalises it on the device (`normalize_video`). A
                                             channels-first VIEW of a (B, T, H, W, 3) buffer the crops
                                             were written into once: no transpose copy in the workers
                                             (`normalize_video` makes it contiguous as it converts)
    input_ids       long    (B, K, L)        the K transcripts in their SHUFFLED slot order
    attention_mask  long    (B, K, L)
    order           long    (B, K)           order[b, i] = true position of the transcript in slot i
    texts           list[list[str]]          the shuffled transcripts (for inspection and tests)
    window_id       list[str]
    frame_index     long    (B, T)           index into the stored segment-major frame list
    crop_yx         long    (B, 2)           top-left corner of the crop

How the data is split. The unit of work is a Parquet row group (a few windows; ``tvts-data`` writes
``row_group_windows`` per group). Every rank lists the same files in sorted order and reads only the
footers. Each epoch the units are permuted with ``seed`` and ``epoch`` and dealt round-robin to the
``world_size * num_workers`` global loader workers (global index = rank * num_workers + worker), so no
two workers read the same unit in an epoch and together they read all of them. A unit is read whole
(one row group, never a whole shard), its rows go through a shuffle buffer, and each row becomes one
sample with a per-sample random generator seeded by (seed, epoch, file, row group, row): the TSN
frame choice, the crop and the transcript shuffle of a window change every epoch and do not depend on
what came before it in the stream.

Uneven counts. The training stream is infinite: a worker that finishes its units of epoch e starts its
units of epoch e + 1 at once (its buffer drains first), so an epoch is a per-worker notion and a worker
with fewer rows repeats sooner (repeat, never drop). The trainer takes exactly ``max_steps x
grad_accum`` batches on every rank, so all ranks run the same number of steps and none waits on a
collective that never comes. Evaluation streams (``epochs=1``) are finite and meant for one process.

Where JPEGs are decoded (``data.decode``). ``worker``: each loader worker decodes its samples' frames
(simplejpeg, see `pick_decoder`) and ships uint8 clips. ``device``: workers ship each sample's TSN-chosen
JPEG bytes (one uint8 buffer per batch, with offsets) and crop origins, and the main process decodes the
batch where training runs (`decode_batch`: nvJPEG through ``torchvision.io.decode_jpeg`` on CUDA; the
workers' own CPU decoder elsewhere, so the CPU fallback needs no torchvision and gives the same batches
bit for bit). ``auto``: ``device`` when the loader feeds a CUDA device whose nvJPEG decode works, else
``worker``. The frame choice, crop and transcript order never depend on where decoding happens.

Bad data. A sample that cannot be used (an undecodable frame, a wrong frame count, a row with the
wrong number of transcripts) is skipped and counted, never replaced by zeros; a shard file whose
footer cannot be read or whose schema version differs, and a row group that fails to read, are
skipped with a logged error naming the file. The counts travel with every batch and are summed by
:meth:`ShardLoader.counters`.

Resume. Each worker reports, with every batch, its position (epoch, rows taken from its buffer in that
epoch) at the end of that batch. :meth:`ShardLoader.state_dict` keeps the positions of the batches the
trainer actually consumed (not the ones prefetched) and which worker's batch comes next. On
:meth:`ShardLoader.load_state_dict` each worker replays its shuffle buffer over row *indices* up to its
position without reading or decoding anything, then continues: the resumed stream equals the
uninterrupted one batch for batch (for the same world size, worker count, batch size and seed).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import glob
import io
import logging
import math
import operator
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tvts_data.remote import is_remote, resolve_uri
from tvts_data.schema import SchemaVersionError, check_version

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The columns a sample needs; the window metadata we do not use stays on disk.
COLUMNS = ("window_id", "texts", "segments", "candidates", "frame_format", "height", "width", "frames")
MAX_LOGGED_SKIPS = 10  # per worker; later skips are logged at DEBUG (the counters still count them)
MAX_EMPTY_BATCHES = 100  # data.decode=device: batches in a row with no decodable sample before giving up
Tokenize = Callable[[list[list[str]]], dict[str, torch.Tensor]]
Blob = bytes | memoryview  # one encoded frame: bytes, or a view into a row group (StoredFrames)


class SampleError(ValueError):
    """A row that cannot become a sample; it is skipped and counted."""


class CorpusMismatchError(ValueError):
    """The corpus does not fit the experiment config (K, frame size); found before anything is built."""


# ----------------------------------------------------------------------------- files and units


@dataclass(frozen=True)
class Unit:
    """A slice of one row group: what one worker reads at once."""

    file: int  # index in the sorted file list: a stable key for per-sample seeds
    path: str
    row_group: int
    start: int  # first row of the slice within the row group
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def list_shards(spec: str | os.PathLike) -> list[str]:
    """Shard files of a corpus folder (its ``shards/``), any folder, a glob, or a text file of paths;
    or the same folder layout behind a URI (``s3://bucket/corpus``), listed without copying anything.
    Credentials and endpoints come from each store's standard environment (for S3: ``AWS_*`` variables,
    ``AWS_ENDPOINT_URL`` for a non-AWS server), never from the config."""
    spec = str(spec)
    if is_remote(spec):
        paths = _list_remote(spec)
    elif os.path.isdir(spec):
        root = os.path.join(spec, "shards") if os.path.isdir(os.path.join(spec, "shards")) else spec
        paths = glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True)
    elif os.path.isfile(spec) and not spec.endswith(".parquet"):
        with open(spec, encoding="utf-8") as fh:
            paths = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    else:
        paths = glob.glob(spec, recursive=True)
    if not paths:
        raise FileNotFoundError(f"no shard files found for {spec!r} (a folder, a glob or a list file)")
    return sorted(paths)


def _list_remote(uri: str) -> list[str]:
    """File URIs under ``uri``, each built from ``uri`` itself so that its query (``?endpoint_override=``,
    ``?region=``) travels with every file."""
    base, _, query = uri.partition("?")
    suffix = f"?{query}" if query else ""
    fs, root = resolve_uri(uri)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [uri]
    if info.type != pafs.FileType.Directory:
        return []
    base, root = base.rstrip("/"), root.rstrip("/")
    if fs.get_file_info(root + "/shards").type == pafs.FileType.Directory:
        base, root = base + "/shards", root + "/shards"
    return [base + f.path[len(root):] + suffix for f in fs.get_file_info(pafs.FileSelector(root, recursive=True))
            if f.type == pafs.FileType.File and f.path.endswith(".parquet")]


def open_shard(path: str, cache_dir: str | None = None) -> pq.ParquetFile:
    """A shard to read row groups from. Local files open directly. A remote file is read by range
    requests, one row group at a time (nothing is copied), or, with ``cache_dir``, copied there once on
    first use (by whichever worker gets there first; the copy is renamed into place whole) and read
    locally from then on."""
    if not is_remote(path):
        return pq.ParquetFile(path, memory_map=True)
    fs, inner = resolve_uri(path)  # per process and call: S3 clients must not cross a fork
    if cache_dir is None:
        return pq.ParquetFile(fs.open_input_file(inner))
    local = os.path.join(cache_dir, path.split("://", 1)[0], inner.lstrip("/"))
    if not os.path.exists(local):
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = f"{local}.tmp-{os.getpid()}"
        try:
            pafs.copy_files(inner, tmp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):  # a failed copy leaves nothing half-written behind
                os.remove(tmp)
    return pq.ParquetFile(local, memory_map=True)


def _file_row_groups(path: str) -> list[int]:
    """Row counts per row group; raises for a file the loader must not read."""
    meta = open_shard(path).metadata
    schema = meta.schema.to_arrow_schema()
    check_version(schema, path)
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise SchemaVersionError(f"{path}: missing columns {missing}; not a SHARD file")
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def scan_units(paths: list[str], verbose: bool = True) -> tuple[list[Unit], list[str]]:
    """All row groups of the readable files, and one error line per file that was skipped."""
    units: list[Unit] = []
    errors: list[str] = []
    for i, path in enumerate(paths):
        try:
            counts = _file_row_groups(path)
        except (OSError, pa.ArrowException, SchemaVersionError) as err:  # unreadable, truncated, foreign
            errors.append(str(err) if path in str(err) else f"{path}: {err}")
            if verbose:
                log.error("skipping shard file: %s", errors[-1])
            continue
        units.extend(Unit(i, path, g, 0, n) for g, n in enumerate(counts) if n > 0)
    return units, errors


def check_corpus(shards: str | os.PathLike, data: Any) -> None:
    """Read one window of the corpus and check it against ``data`` (a ``DataConfig``) before training.

    Raises :class:`CorpusMismatchError` when its transcripts per window or its frame size cannot feed
    the model, FileNotFoundError when there is no readable shard; warns when the corpus stores fewer
    segments than the clip has frames (frames would repeat: the clip is stretched in time).
    """
    units, bad = scan_units(list_shards(shards), verbose=False)
    if not units:
        raise FileNotFoundError(f"no readable shard in {shards!r}: " + "; ".join(bad[:3]))
    unit = units[0]
    columns = ["texts", "segments", "height", "width"]
    row = open_shard(unit.path).read_row_group(unit.row_group, columns=columns).slice(0, 1).to_pylist()[0]
    K, height, width = len(row["texts"] or []), row["height"] or 0, row["width"] or 0
    problems = []
    if K != data.K:
        problems.append(f"its windows hold K={K} transcripts, the config wants data.K={data.K}")
    if min(height, width) < data.crop_size:
        problems.append(f"its frames are {height}x{width}, smaller than data.crop_size={data.crop_size}")
    if problems:
        raise CorpusMismatchError(f"corpus {shards} ({unit.path}) does not fit the config: {'; '.join(problems)}. "
                                  "Rebuild it (tvts-data prepare --set windows.K=... --set frames.short_side=...) "
                                  "or use a config that matches it.")
    if (row["segments"] or 0) < data.frames:
        log.warning("corpus %s stores %d segments per window, fewer than data.frames=%d: frames will repeat "
                    "(the clip is stretched in time); rebuild with --set frames.segments=%d to avoid it",
                    shards, row["segments"], data.frames, data.frames)


def split_units(units: list[Unit], workers: int) -> list[Unit]:
    """Cut row groups into row slices when there are fewer units than global workers.

    Every worker must own at least one unit each epoch, otherwise its rank would wait forever for
    batches. Only tiny corpora (tests, smoke runs) need this; a slice still reads its row group.
    """
    if len(units) >= workers:
        return units
    pieces = -(-workers // max(1, len(units)))  # ceil
    out = []
    for u in units:
        bounds = np.linspace(u.start, u.stop, min(pieces, u.rows) + 1).round().astype(int)
        out.extend(dataclasses.replace(u, start=int(a), stop=int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
    if len(out) < workers:
        raise ValueError(f"{sum(u.rows for u in units)} windows cannot feed {workers} loader workers "
                         "(world_size x num_workers); use fewer workers or more data")
    return out


# ----------------------------------------------------------------------------- one sample


@dataclass(frozen=True)
class SampleSpec:
    """What a sample is cut to; built from ``DataConfig`` by :meth:`from_config`."""

    frames: int = 16  # T
    crop_size: int = 224
    K: int = 4
    train: bool = True  # random candidate + random crop; else middle candidate + centre crop
    decoder: str = "pil"  # "simplejpeg" | "pil" | "torchvision" (see pick_decoder)
    ship_jpeg: bool = False  # workers ship JPEG bytes and crop origins; the main process decodes (decode_batch)

    @classmethod
    def from_config(cls, data: Any, train: bool, decoder: str = "pil", ship_jpeg: bool = False) -> SampleSpec:
        return cls(frames=data.frames, crop_size=data.crop_size, K=data.K, train=train, decoder=decoder,
                   ship_jpeg=ship_jpeg)


def tsn_indices(n_stored: int, n_frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """Pick ``n_frames`` of ``n_stored`` time-ordered frames, TSN style.

    The stored list is segment-major with candidates evenly spaced inside each segment, so it is in
    time order. Cutting it into ``n_frames`` equal index ranges and taking one frame per range is the
    paper's sampling when ``n_stored = M * C`` and ``n_frames = M`` (range m = candidates of segment m),
    and resamples the segments evenly when the stored M differs. ``rng`` None: the middle of each
    range (evaluation; the middle candidate for odd C). Fewer stored frames than wanted: the frame
    nearest each range centre, repeated.
    """
    if n_stored >= n_frames:
        edges = (np.arange(n_frames + 1) * n_stored) // n_frames  # (T+1,) range bounds
        lo, width = edges[:-1], np.diff(edges)
        offset = width // 2 if rng is None else rng.integers(0, width)
        return lo + offset
    return np.floor((np.arange(n_frames) + 0.5) * n_stored / n_frames).astype(np.int64)


def _decode_pil(blob: Blob) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"))  # (H, W, 3) uint8; convert() forces the full decode


def _decode_simplejpeg(blob: Blob) -> np.ndarray:
    import simplejpeg

    if simplejpeg.decode_jpeg_header(blob)[2] in ("CMYK", "YCCK"):  # PIL's conversion is the reference there
        return _decode_pil(blob)
    # libjpeg-turbo's defaults (accurate integer DCT, fancy upsampling), as PIL decodes: the same pixels
    return simplejpeg.decode_jpeg(blob, colorspace="RGB", fastdct=False, fastupsample=False)


def _decode_torchvision(blob: Blob) -> np.ndarray:
    from torchvision.io import ImageReadMode, decode_jpeg

    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    return decode_jpeg(data, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()  # (3,H,W) -> (H,W,3)


_DECODERS: dict[str, Callable[[Blob], np.ndarray]] = {
    "simplejpeg": _decode_simplejpeg, "pil": _decode_pil, "torchvision": _decode_torchvision}


@functools.lru_cache(maxsize=None)  # the probes import libraries: once per process is enough
def pick_decoder(preferred: str = "auto") -> str:
    """The JPEG decoder of the loader workers: ``"simplejpeg"`` where it imports (2.1x faster than PIL
    on camera-like frames, measured in docs/benchmarks.md), else ``"torchvision"`` where its image
    extension loads, else ``"pil"``. simplejpeg and PIL give the same pixels bit for bit (tested), so
    batches do not depend on which of the two a machine has."""
    if preferred != "auto":
        if preferred not in _DECODERS:
            raise ValueError(f"unknown JPEG decoder {preferred!r}; one of auto, {', '.join(_DECODERS)}")
        return preferred
    probe = io.BytesIO()
    Image.new("RGB", (8, 8)).save(probe, format="JPEG")
    try:
        _decode_simplejpeg(probe.getvalue())
        return "simplejpeg"
    except ImportError as err:
        log.debug("simplejpeg unavailable (%s)", err)
    try:
        from tvts_train._compat import ensure_torchvision_importable

        ensure_torchvision_importable()
        _decode_torchvision(probe.getvalue())
    except (ImportError, RuntimeError, OSError) as err:  # missing, or its C++ extension will not load
        log.debug("torchvision JPEG decoder unavailable (%s); using PIL", err)
        return "pil"
    return "torchvision"


def decode_frame(blob: Blob, fmt: str, height: int, width: int, decoder: str = "pil") -> np.ndarray:
    """One stored frame -> ``(H, W, 3)`` uint8; raises :class:`SampleError` when it cannot."""
    if fmt == "raw":
        if len(blob) != height * width * 3:
            raise SampleError(f"raw frame has {len(blob)} bytes, expected {height}x{width}x3")
        return np.frombuffer(blob, np.uint8).reshape(height, width, 3)
    if fmt != "jpeg":
        raise SampleError(f"unknown frame_format {fmt!r}")
    try:
        return _DECODERS[decoder](blob)
    except (OSError, SyntaxError, ValueError, RuntimeError) as err:  # the decoders' failure types
        if decoder == "simplejpeg":  # a JPEG flavour it does not take (CMYK, ...): PIL's conversions
            try:
                return _decode_pil(blob)
            except (OSError, SyntaxError, ValueError) as pil_err:
                raise SampleError(f"undecodable JPEG: {pil_err}") from pil_err
        raise SampleError(f"undecodable JPEG: {err}") from err


def decode_crops_into(out: np.ndarray, blobs: list[Blob], fmt: str, height: int, width: int, decoder: str,
                      origin: tuple[int, int] | Callable[[int, int], tuple[int, int]],
                      exact_size: bool = False) -> tuple[int, int]:
    """Decode a clip's T stored frames and copy one square crop of each into ``out`` (T, S, S, 3) uint8;
    returns the crop's top-left corner. ``origin``: the corner, or a function of the decoded frame size
    that draws it (called once, after the first frame). Frames must share one size (``exact_size``: the
    row's ``height`` x ``width``); raises :class:`SampleError` when they do not or do not decode.

    One frame is alive at a time, cropped straight into the batch buffer: keeping a batch's full frames
    until collation (128 x 350 kB in the paper preset) made the allocator hand that memory back to the
    kernel after every batch and fault it in again, ~20% of a worker's CPU (docs/benchmarks.md)."""
    size = out.shape[1]
    first: tuple[int, ...] | None = None
    y = x = 0
    for t, blob in enumerate(blobs):
        frame = decode_frame(blob, fmt, height, width, decoder)
        if first is None:
            first = frame.shape
            if exact_size and first[:2] != (height, width):
                raise SampleError(f"frames are {first[0]}x{first[1]}, not {height}x{width} as their row says")
            y, x = origin(*first[:2]) if callable(origin) else origin
        elif frame.shape != first:
            raise SampleError(f"frames of one clip differ in size: {first} and {frame.shape}")
        out[t] = frame[y : y + size, x : x + size]
    return y, x


def new_uint8_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor for a batch to be written into. In a DataLoader worker it is
    allocated in shared memory, as torch's default collate does, so sending the batch to the main
    process copies nothing (a tensor in private memory is copied into shared memory on the way).
    Elsewhere numpy allocates it: numpy asks for transparent huge pages for large arrays, which makes
    first writes to a fresh 19 MB batch ~10 page faults instead of ~5,000 (torch.empty's 4 kB pages)."""
    if get_worker_info() is None:
        return torch.from_numpy(np.empty(shape, np.uint8))
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def check_jpeg_header(blob: Blob, height: int, width: int) -> None:
    """Raise :class:`SampleError` unless ``blob`` starts like a JPEG of ``height`` x ``width`` (its header
    only: microseconds, where decoding takes milliseconds). Without simplejpeg, only the magic bytes."""
    if blob[:2] != b"\xff\xd8":
        raise SampleError("undecodable JPEG: no JPEG start marker")
    try:
        import simplejpeg
    except ImportError:
        return
    try:
        h, w = simplejpeg.decode_jpeg_header(blob)[:2]
    except ValueError as err:
        raise SampleError(f"undecodable JPEG: {err}") from err
    if (h, w) != (height, width):
        raise SampleError(f"a JPEG of {h}x{w} in a row of {height}x{width} frames")


def crop_origin(height: int, width: int, size: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left corner of a ``size`` square: random (train) or centred (``rng`` None)."""
    if height < size or width < size:
        raise SampleError(f"frames are {height}x{width}, smaller than crop_size {size}")
    if rng is None:
        return (height - size) // 2, (width - size) // 2
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def _check_row(row: dict[str, Any], K: int) -> int:
    """Validate the fields a sample needs; returns the number of stored frames."""
    texts, frames = row.get("texts"), row.get("frames")
    if not isinstance(texts, list) or len(texts) != K or any(not isinstance(t, str) for t in texts):
        raise SampleError(f"bad row: {len(texts) if isinstance(texts, list) else texts!r} transcripts, expected {K}")
    segments, candidates = row.get("segments") or 0, row.get("candidates") or 0
    if not isinstance(frames, (list, StoredFrames)):
        raise SampleError(f"bad row: no frame list ({type(frames).__name__})")
    if segments <= 0 or candidates <= 0:
        raise SampleError(f"bad row: segments={segments} candidates={candidates}")
    if len(frames) != segments * candidates:
        raise SampleError(f"wrong frame count: {len(frames)} frames for {segments}x{candidates}")
    return len(frames)


def make_sample(row: dict[str, Any], spec: SampleSpec, rng: np.random.Generator,
                out: np.ndarray | None = None) -> dict[str, Any]:
    """A SHARD row -> one sample: TSN frames, one crop for the whole clip, shuffled transcripts.

    The frames come as ``clip``, (T, S, S, 3) uint8 crops decoded into ``out`` (a slot of the batch
    buffer, see `worker_batches`; a new array when None), or, with ``spec.ship_jpeg``, as ``jpegs`` (the
    T chosen frames' bytes, cropped after decoding). On a :class:`SampleError` ``out`` may hold part of
    the clip: the slot is simply reused."""
    n_stored = _check_row(row, spec.K)
    pick = tsn_indices(n_stored, spec.frames, rng if spec.train else None)  # (T,)
    fmt, height, width = row.get("frame_format"), row.get("height") or 0, row.get("width") or 0
    sample: dict[str, Any] = {"window_id": row.get("window_id"), "frame_index": pick}
    blobs = [row["frames"][i] for i in pick]
    if any(blob is None for blob in blobs):
        raise SampleError(f"null frame at stored index {[int(i) for i, b in zip(pick, blobs) if b is None][0]}")
    if spec.ship_jpeg:
        if fmt not in ("jpeg", "raw"):
            raise SampleError(f"unknown frame_format {fmt!r}")
        jpegs = blobs
        if fmt == "jpeg":
            for blob in jpegs:  # a bad header is caught here, so the batch is filled as with decode=worker
                check_jpeg_header(blob, height, width)
        sample.update(jpegs=jpegs, frame_format=fmt, frame_hw=(height, width))
        y, x = crop_origin(height, width, spec.crop_size, rng if spec.train else None)
    else:
        s = spec.crop_size
        clip = out if out is not None else np.empty((spec.frames, s, s, 3), np.uint8)
        # The corner is drawn from the decoded size, after the TSN draw and before the shuffle, as always.
        y, x = decode_crops_into(clip, blobs, fmt, height, width, spec.decoder,
                                 lambda h, w: crop_origin(h, w, s, rng if spec.train else None))
        sample["clip"] = clip
    perm = rng.permutation(spec.K)  # slot i shows the transcript at true position perm[i]
    sample.update(texts=[row["texts"][j] for j in perm], order=perm, crop_yx=(y, x))
    return sample


def channels_first(clips: torch.Tensor) -> torch.Tensor:
    """(B, T, S, S, 3) uint8 -> the (B, 3, T, S, S) view the model takes; the transpose copy is left to
    `normalize_video` on the training device."""
    return clips.permute(0, 4, 1, 2, 3)


@functools.lru_cache(maxsize=8)
def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and 1/std in uint8 units on ``device``, made once: building them per batch would copy from
    the host (and wait for the device) at every step."""
    mean = torch.tensor(IMAGENET_MEAN).mul(255.0).view(1, 3, 1, 1, 1).to(device)
    inv_std = (1.0 / torch.tensor(IMAGENET_STD).mul(255.0)).view(1, 3, 1, 1, 1).to(device)
    return mean, inv_std


def normalize_video(video: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 3, T, H, W) uint8 RGB -> ImageNet-normalised `dtype`, computed where the tensor lives."""
    mean, inv_std = _imagenet_stats(video.device)
    # A new, contiguous float tensor (the in-place ops below never touch the caller's): the loader's
    # channels-first view is transposed here in the same pass as the conversion, where it costs nothing.
    out = video.to(torch.float32, memory_format=torch.contiguous_format)
    return out.sub_(mean).mul_(inv_std).to(dtype)


def collate(samples: list[dict[str, Any]], tokenize: Tokenize | None,
            clips: torch.Tensor | None = None) -> dict[str, Any]:
    """Stack samples into the batch of the module docstring.

    The video stays uint8: normalising is float work over every pixel, the largest CPU cost of a loader
    worker after JPEG decoding, while on the training device it is nearly free; uint8 also makes the
    host-to-device copy 4x smaller. The trainer calls `normalize_video` after the copy. Samples that
    carry JPEG bytes (``data.decode=device``) become one uint8 buffer with offsets instead (tensors
    travel from the workers through shared memory; Python bytes would be pickled through a pipe), for
    `decode_batch` in the main process. ``clips``: the (B', T, S, S, 3) buffer whose first B rows the
    samples' crops were decoded into (`worker_batches`); without it they are copied into a new one."""
    texts = [s["texts"] for s in samples]
    batch: dict[str, Any] = {
        "order": torch.from_numpy(np.stack([s["order"] for s in samples])).long(),  # (B, K)
        "texts": texts,
        "window_id": [s["window_id"] for s in samples],
        "frame_index": torch.from_numpy(np.stack([s["frame_index"] for s in samples])).long(),  # (B, T)
        "crop_yx": torch.tensor([s["crop_yx"] for s in samples], dtype=torch.long),  # (B, 2)
    }
    if "jpegs" in samples[0]:
        blobs = [blob for s in samples for blob in s["jpegs"]]
        offsets = np.cumsum([0] + [len(b) for b in blobs])  # (B*T+1,)
        data = new_uint8_buffer((int(offsets[-1]),))  # (sum bytes,): each blob copied once
        flat = data.numpy()
        for i, blob in enumerate(blobs):
            flat[offsets[i] : offsets[i + 1]] = np.frombuffer(blob, np.uint8)
        batch["jpeg_data"], batch["jpeg_offsets"] = data, torch.from_numpy(offsets).long()
        batch["frame_format"] = [s["frame_format"] for s in samples]
        batch["frame_hw"] = torch.tensor([s["frame_hw"] for s in samples], dtype=torch.long)  # (B, 2)
    else:
        B = len(samples)
        if clips is None:
            clips = new_uint8_buffer((B, *samples[0]["clip"].shape))
            np.stack([s["clip"] for s in samples], out=clips.numpy())
        batch["video"] = channels_first(clips[:B])  # (B, 3, T, H, W) uint8
    if tokenize is not None:
        batch.update(tokenize(texts))  # input_ids, attention_mask (B, K, L)
    return batch


def nvjpeg_available(device: torch.device) -> bool:
    """Whether ``torchvision.io.decode_jpeg`` decodes on ``device`` (a CUDA device with torchvision's
    image extension and nvJPEG); probed once per device."""
    return device.type == "cuda" and _nvjpeg_probe(str(device))


@functools.lru_cache(maxsize=None)
def _nvjpeg_probe(device: str) -> bool:
    try:
        from tvts_train._compat import ensure_torchvision_importable

        ensure_torchvision_importable()
        from torchvision.io import decode_jpeg

        probe = io.BytesIO()
        Image.new("RGB", (16, 16)).save(probe, format="JPEG")
        decode_jpeg([torch.frombuffer(bytearray(probe.getvalue()), dtype=torch.uint8)], device=device)
        return True
    except (ImportError, RuntimeError, OSError) as err:
        log.warning("nvJPEG decoding on %s unavailable (%s): JPEGs are decoded on the CPU", device, err)
        return False


def decode_batch(batch: dict[str, Any], spec: SampleSpec, device: torch.device) -> tuple[dict[str, Any], int]:
    """A batch of shipped JPEGs (``jpeg_data``/``jpeg_offsets``, see `collate`) -> the same batch with
    ``video`` (B, 3, T, S, S) uint8 on ``device``, and how many samples were dropped because a frame did
    not decode or had another size than its row says (every key loses those rows, as the workers skip them).

    On CUDA with nvJPEG: the whole batch in one ``decode_jpeg`` call, cropped and stacked on the device.
    Elsewhere: the workers' CPU decoder in this process, the same pixels as ``data.decode=worker``."""
    B, T = batch["frame_index"].shape
    data, offsets = batch.pop("jpeg_data"), batch.pop("jpeg_offsets").tolist()
    formats, frame_hw = batch.pop("frame_format"), batch.pop("frame_hw").tolist()
    blobs = [data[offsets[i] : offsets[i + 1]] for i in range(B * T)]  # 1-D uint8 views
    crops = batch["crop_yx"].tolist()
    s = spec.crop_size
    good: list[int] = []
    if nvjpeg_available(device) and all(f == "jpeg" for f in formats):
        # nvJPEG writes its output on a private stream that does not wait for ours, into memory the caching
        # allocator hands out on the current stream: memory that backward may have freed with kernels still
        # queued (pytorch/vision#9606). On a stream of our own, idle once synchronised, nothing is pending.
        current, side = torch.cuda.current_stream(device), _decode_stream(device)
        side.synchronize()
        with torch.cuda.stream(side):
            frames = _decode_on_cuda(blobs, device, spec.decoder)
            clips = []
            for b in range(B):
                mine = frames[b * T : (b + 1) * T]
                if any(f is None or tuple(f.shape[1:]) != tuple(frame_hw[b]) for f in mine):
                    log.warning("skipping sample %s: a frame does not decode to %dx%d", batch["window_id"][b],
                                *frame_hw[b])
                    continue
                (y, x) = crops[b]
                clips.append(torch.stack([f[:, y : y + s, x : x + s] for f in mine], dim=1))  # (3, T, S, S)
                good.append(b)
            video = torch.stack(clips) if clips else torch.empty(0, 3, T, s, s, dtype=torch.uint8, device=device)
        current.wait_stream(side)
        video.record_stream(current)  # the training stream uses it next: the allocator must know
    else:
        buf = new_uint8_buffer((B, T, s, s, 3))
        for b in range(B):
            try:
                mine = [memoryview(blob.numpy()) for blob in blobs[b * T : (b + 1) * T]]
                decode_crops_into(buf.numpy()[len(good)], mine, formats[b], *frame_hw[b], spec.decoder,
                                  tuple(crops[b]), exact_size=True)
            except SampleError as err:
                log.warning("skipping sample %s: %s", batch["window_id"][b], err)
                continue
            good.append(b)
        video = channels_first(buf[: len(good)]).to(device)
    dropped = B - len(good)
    if dropped:
        batch = _select_rows(batch, good, B)
    batch["video"] = video
    return batch, dropped


@functools.lru_cache(maxsize=None)
def _decode_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device=device)


def _decode_on_cuda(blobs: list[torch.Tensor], device: torch.device, cpu_decoder: str) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 frames decoded by nvJPEG. The batch call fails as a whole on one bad frame, so then
    each frame is retried alone; a frame nvJPEG does not take (CMYK, a flavour it lacks) is decoded on the
    CPU and copied over; one that nothing decodes is None."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        out: list[torch.Tensor | None] = []
        for blob in blobs:
            try:
                out.append(decode_jpeg(blob, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                try:
                    frame = decode_frame(blob.numpy().tobytes(), "jpeg", 0, 0, cpu_decoder)
                except SampleError:
                    out.append(None)
                    continue
                out.append(torch.from_numpy(frame).permute(2, 0, 1).to(device))
        return out


def _select_rows(batch: dict[str, Any], keep: list[int], B: int) -> dict[str, Any]:
    """The rows ``keep`` of every per-sample entry of a batch (tensors and lists of length B)."""
    index = torch.tensor(keep, dtype=torch.long)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == B:
            out[key] = value.index_select(0, index.to(value.device))
        elif isinstance(value, list) and len(value) == B:
            out[key] = [value[i] for i in keep]
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- one worker's stream


@dataclass
class WorkerPos:
    """Where one worker stands, after the last batch the trainer consumed from it."""

    epoch: int = 0
    consumed: int = 0  # rows taken out of the shuffle buffer in this epoch (skipped ones included)
    samples: int = 0  # samples yielded, all epochs
    skipped_samples: int = 0
    skipped_units: int = 0


def shuffle_buffer(items: list[Any], size: int, rng: np.random.Generator | None) -> Iterator[Any]:
    """Streaming shuffle: hold ``size`` items, emit a random one as each new item arrives."""
    if size <= 1 or rng is None:
        yield from items
        return
    buf: list[Any] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        yield buf[j]
        buf[j] = item
    rng.shuffle(buf)
    yield from buf


class StoredFrames(Sequence):
    """One row's encoded frames as one Arrow binary array of its own; item i is a zero-copy view
    (``memoryview``, unsigned bytes) of frame i, None for a null frame.

    Turning a row group into Python ``bytes`` objects cost ~1.5 ms per camera-like window (48 stored
    frames, a sample decodes 16); one C++ copy of the row's frames costs ~0.24 ms. The copy is kept on
    purpose: views into the row group itself would pin every row group for as long as any of its rows
    waits in the shuffle buffer (~3x the memory of a worker); a row of its own is freed with its sample.
    """

    __slots__ = ("_values",)

    def __init__(self, values: pa.Array) -> None:
        self._values = values

    @classmethod
    def of_row(cls, frames: pa.ListArray, i: int) -> StoredFrames | None:
        """Row ``i`` of a ``list<binary>`` array (None where the list itself is null), copied."""
        if not frames[i].is_valid:
            return None
        start, stop = frames.offsets[i].as_py(), frames.offsets[i + 1].as_py()  # into frames.values
        return cls(pa.concat_arrays([frames.values.slice(start, stop - start)]))  # concat copies: a row of its own

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: int | slice) -> memoryview | None | list[memoryview | None]:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i, n = operator.index(i), len(self._values)
        if not -n <= i < n:
            raise IndexError(f"frame {i} of {n}")
        value = self._values[i % n]
        # Arrow exports signed chars; the decoders (and comparisons with bytes) want unsigned ones.
        return memoryview(value.as_buffer()).cast("B") if value.is_valid else None


class _RowCache:
    """Rows of the units a worker has opened, released row by row as the buffer emits them (each row's
    frames are its own copy, `StoredFrames`, so an emitted row frees its memory).

    Only references ``(unit, row)`` go through the shuffle buffer; a unit's row group is read when the
    first of its rows is emitted, so fast-forwarding on resume reads nothing.
    """

    def __init__(self, units: list[Unit], cache_dir: str | None = None) -> None:
        self.units, self.cache_dir = units, cache_dir
        self.rows: dict[int, dict[int, dict[str, Any]]] = {}
        self.remaining: dict[int, int] = {}
        self.failed: set[int] = set()
        self._files: dict[str, pq.ParquetFile] = {}

    def _open(self, path: str) -> pq.ParquetFile:
        if path not in self._files:
            if len(self._files) >= 8:  # a few open files are plenty; each holds a footer
                self._files.pop(next(iter(self._files))).close()
            self._files[path] = open_shard(path, self.cache_dir)
        return self._files[path]

    def _load(self, u: int) -> None:
        unit = self.units[u]
        table = self._open(unit.path).read_row_group(unit.row_group, columns=list(COLUMNS))
        table = table.slice(unit.start, unit.rows)
        rows = table.drop_columns(["frames"]).to_pylist()
        # chunk by chunk: combining them would copy the whole column, and overflow 2 GiB of int32 offsets
        row_iter = iter(rows)
        for chunk in table.column("frames").chunks:
            for i in range(len(chunk)):
                next(row_iter)["frames"] = StoredFrames.of_row(chunk, i)
        self.rows[u] = {unit.start + i: r for i, r in enumerate(rows)}

    def take(self, ref: tuple[int, int], load: bool) -> tuple[dict[str, Any] | None, bool]:
        """The row for ``ref`` (None when its unit failed or ``load`` is False) and whether the
        unit failed just now, at its first row (so a damaged unit is counted once)."""
        u, r = ref
        first = u not in self.remaining
        self.remaining.setdefault(u, self.units[u].rows)
        row, failed_now = None, False
        if load and u not in self.rows and u not in self.failed:
            try:
                self._load(u)
            except (OSError, pa.ArrowException) as err:  # a damaged row group: skip the unit, say which
                self.failed.add(u)
                failed_now = first
                log.error("skipping row group %d of %s: %s", self.units[u].row_group, self.units[u].path, err)
        if u in self.rows:
            row = self.rows[u].pop(r)
        self.remaining[u] -= 1
        if self.remaining[u] == 0:
            self.rows.pop(u, None)
            self.remaining.pop(u)
        return row, failed_now


@dataclass(frozen=True)
class StreamPlan:
    """Everything a worker needs to compute its stream; the same on every rank."""

    units: tuple[Unit, ...]
    spec: SampleSpec
    batch_size: int
    shuffle_buffer: int
    seed: int
    rank: int
    world_size: int
    num_workers: int  # per rank; 0 counts as 1 (the main process)
    epochs: int | None = None  # None: infinite (training)
    cache_dir: str | None = None  # local copies of remote shards (data.cache_dir)

    @property
    def global_workers(self) -> int:
        return self.world_size * max(1, self.num_workers)

    def epoch_refs(self, epoch: int, gid: int) -> list[tuple[int, int]]:
        """Row references of global worker ``gid`` in ``epoch``, in reading order."""
        n = len(self.units)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.spec.train else np.arange(n)
        mine = order[gid :: self.global_workers]
        return [(int(u), r) for u in mine for r in range(self.units[u].start, self.units[u].stop)]

    def buffer_rng(self, epoch: int, gid: int) -> np.random.Generator | None:
        return np.random.default_rng([self.seed, epoch, gid, 1]) if self.spec.train else None

    def sample_rng(self, epoch: int, ref: tuple[int, int]) -> np.random.Generator:
        unit = self.units[ref[0]]
        return np.random.default_rng([self.seed, epoch, unit.file, unit.row_group, ref[1]])


def worker_batches(plan: StreamPlan, role: int, pos: WorkerPos, tokenize: Tokenize | None) -> Iterator[dict[str, Any]]:
    """The batches of one worker (``role`` within its rank), starting at ``pos``."""
    gid = plan.rank * max(1, plan.num_workers) + role
    cache = _RowCache(list(plan.units), plan.cache_dir)
    pos = dataclasses.replace(pos)
    batch: list[dict[str, Any]] = []
    clips = None  # this batch's (B, T, S, S, 3) buffer; samples decode their crops into its rows
    while plan.epochs is None or pos.epoch < plan.epochs:
        refs = plan.epoch_refs(pos.epoch, gid)
        samples_before, whole_epoch = pos.samples, pos.consumed == 0
        for i, ref in enumerate(shuffle_buffer(refs, plan.shuffle_buffer, plan.buffer_rng(pos.epoch, gid))):
            if i < pos.consumed:  # fast-forward on resume: replay the buffer, read nothing
                cache.take(ref, load=False)
                continue
            row, failed_now = cache.take(ref, load=True)
            pos.consumed = i + 1
            pos.skipped_units += failed_now
            # A batch's first sample decodes into its own array; the buffer (shared memory in a worker,
            # 19 MB at the paper preset) is made once a sample exists to fill it.
            out = None if clips is None else clips.numpy()[len(batch)]
            sample = None if row is None else _try_sample(row, ref, plan, pos, out)
            if sample is None:
                continue
            if clips is None and "clip" in sample:
                clips = new_uint8_buffer((plan.batch_size, *sample["clip"].shape))
                clips.numpy()[0] = sample["clip"]
                sample["clip"] = clips.numpy()[0]
            batch.append(sample)
            pos.samples += 1
            if len(batch) == plan.batch_size:
                yield _finish(batch, tokenize, gid, role, pos, clips)
                batch, clips = [], None
        if whole_epoch and pos.samples == samples_before and refs and plan.epochs is None:
            # Its share of this epoch was all bad; the next epoch deals it other units. Go on, unless
            # the corpus holds no usable sample at all (then no epoch ever would).
            log.warning("loader worker %d: epoch %d gave no valid sample from its %d rows; going on",
                        gid, pos.epoch, len(refs))
            if not has_valid_sample(plan):
                raise RuntimeError(f"no valid sample in any of the {len(plan.units)} row groups of the corpus "
                                   "(every row was skipped: see the warnings above); check the shards with "
                                   "`tvts-data inspect` or rebuild them")
        pos.epoch, pos.consumed = pos.epoch + 1, 0
    if batch:  # finite streams only: the last, smaller batch
        yield _finish(batch, tokenize, gid, role, pos, clips)
    # A finite stream ends with its final counters (skips after the last batch), no data.
    yield {"meta": {"worker": gid, "role": role, **dataclasses.asdict(pos)}}


@functools.lru_cache(maxsize=4)
def has_valid_sample(plan: StreamPlan) -> bool:
    """Whether any row of the corpus makes a sample (reads units in order until one does)."""
    cache = _RowCache(list(plan.units), plan.cache_dir)
    for u, unit in enumerate(plan.units):
        for r in range(unit.start, unit.stop):
            row, _ = cache.take((u, r), load=True)
            if row is None:
                break  # the unit does not read
            try:
                make_sample(row, plan.spec, plan.sample_rng(0, (u, r)))
                return True
            except SampleError:
                continue
    return False


def _try_sample(row: dict[str, Any], ref: tuple[int, int], plan: StreamPlan, pos: WorkerPos,
                out: np.ndarray | None = None) -> dict | None:
    try:
        return make_sample(row, plan.spec, plan.sample_rng(pos.epoch, ref), out)
    except SampleError as err:
        pos.skipped_samples += 1
        level = logging.WARNING if pos.skipped_samples <= MAX_LOGGED_SKIPS else logging.DEBUG
        log.log(level, "skipping sample %s (%s, row group %d): %s", row.get("window_id"),
                plan.units[ref[0]].path, plan.units[ref[0]].row_group, err)
        return None


def _finish(batch: list[dict], tokenize: Tokenize | None, gid: int, role: int, pos: WorkerPos,
            clips: torch.Tensor | None = None) -> dict[str, Any]:
    out = collate(batch, tokenize, clips)
    out["meta"] = {"worker": gid, "role": role, **dataclasses.asdict(pos)}
    return out


class ShardStream(IterableDataset):
    """The per-worker streams of one rank; each DataLoader worker plays one role (see ShardLoader)."""

    def __init__(self, plan: StreamPlan, tokenize: Tokenize | None) -> None:
        super().__init__()
        self.plan = plan
        self.tokenize = tokenize
        self.first_role = 0  # DataLoader worker i plays role (first_role + i) % num_workers
        self.start: list[WorkerPos] = [WorkerPos() for _ in range(max(1, plan.num_workers))]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is not None:
            # A forked worker (Linux's default start method) inherits the trainer's objects (the model, the
            # optimizer, DeepSpeed: over a million). None of them is the worker's to free, yet every full
            # collection would walk them all and, writing their GC headers, copy their memory pages.
            gc.freeze()
        local = info.id if info is not None else 0
        role = (self.first_role + local) % len(self.start)
        return worker_batches(self.plan, role, self.start[role], self.tokenize)


# ----------------------------------------------------------------------------- the loader the trainer uses


@dataclass
class ShardLoader:
    """Batches of one rank, with counters and a checkpointable position.

    Build it with :func:`build_loader`. Iterating starts the workers; the state reflects the batches
    handed out by the iterator, not those prefetched.
    """

    stream: ShardStream
    bad_files: list[str] = field(default_factory=list)
    pin_memory: bool = False
    decode_device: torch.device | None = None  # where shipped JPEGs are decoded (data.decode=device)
    positions: list[WorkerPos] = field(init=False)
    next_role: int = field(init=False, default=0)
    decode_skipped: int = field(init=False, default=0)  # samples dropped by decode_batch (consumed batches)

    def __post_init__(self) -> None:
        self.positions = [dataclasses.replace(p) for p in self.stream.start]

    @property
    def plan(self) -> StreamPlan:
        return self.stream.plan

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.stream.first_role = self.next_role
        self.stream.start = [dataclasses.replace(p) for p in self.positions]
        workers = self.plan.num_workers
        # Its own generator: DataLoader draws a base seed when iterated, and drawing it from the global
        # torch RNG would shift the model's masking noise on resume (our workers never use it).
        generator = torch.Generator().manual_seed(self.plan.seed)
        loader = DataLoader(self.stream, batch_size=None, num_workers=workers, pin_memory=self.pin_memory,
                            prefetch_factor=2 if workers else None, generator=generator)
        empty_in_a_row = 0
        for batch in loader:
            meta = batch.pop("meta")
            self.positions[meta["role"]] = WorkerPos(**{k: meta[k] for k in ("epoch", "consumed", "samples",
                                                                            "skipped_samples", "skipped_units")})
            if not batch:  # the end-of-stream counters of a finite stream
                continue
            self.next_role = (meta["role"] + 1) % len(self.positions)
            if "jpeg_data" in batch:
                batch, dropped = decode_batch(batch, self.plan.spec, self.decode_device or torch.device("cpu"))
                self.decode_skipped += dropped
                if not batch["window_id"]:
                    empty_in_a_row += 1
                    if empty_in_a_row >= MAX_EMPTY_BATCHES:  # the workers cannot see it: they never decode
                        raise RuntimeError(f"none of the last {empty_in_a_row} batches had a frame that decodes "
                                           f"({self.decode_skipped} samples dropped so far); check the shards "
                                           "with `tvts-data inspect` or rebuild them")
                    continue
            empty_in_a_row = 0
            yield batch

    def counters(self) -> dict[str, int]:
        """Totals over this rank's workers (consumed batches only), plus unreadable files."""
        return {  # a sample dropped by decode_batch was counted by its worker: it is a skip, not a sample
            "samples": sum(p.samples for p in self.positions) - self.decode_skipped,
            "skipped_samples": sum(p.skipped_samples for p in self.positions) + self.decode_skipped,
            "skipped_units": sum(p.skipped_units for p in self.positions),
            "bad_files": len(self.bad_files),
            "epoch": min(p.epoch for p in self.positions),
        }

    def state_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "version": 1,
            "rank": plan.rank,
            "world_size": plan.world_size,
            "num_workers": plan.num_workers,
            "batch_size": plan.batch_size,
            "seed": plan.seed,
            "next_role": self.next_role,
            "workers": [dataclasses.asdict(p) for p in self.positions],
            "decode_skipped": self.decode_skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        plan = self.plan
        expect = {"world_size": plan.world_size, "num_workers": plan.num_workers,
                  "batch_size": plan.batch_size, "seed": plan.seed}
        differ = {k: (state.get(k), v) for k, v in expect.items() if state.get(k) != v}
        if differ:
            raise ValueError("loader state does not match this run (saved, now): "
                             + ", ".join(f"{k}={a}->{b}" for k, (a, b) in differ.items())
                             + "; resume with the same world size, workers, batch size and seed")
        self.positions = [WorkerPos(**w) for w in state["workers"]]
        self.next_role = int(state["next_role"])
        self.decode_skipped = int(state.get("decode_skipped", 0))


def build_loader(
    shards: str | os.PathLike,
    data: Any,
    *,
    batch_size: int,
    train: bool = True,
    rank: int = 0,
    world_size: int = 1,
    tokenize: Tokenize | None = None,
    epochs: int | None = None,
    decoder: str = "auto",
    pin_memory: bool = False,
    device: torch.device | None = None,
) -> ShardLoader:
    """A :class:`ShardLoader` over ``shards`` for ``data`` (a ``DataConfig``: frames, crop, K, ...).
    ``device``: where the batches go (``data.decode=auto`` decodes JPEGs there when it is a CUDA device
    with nvJPEG). ``data.num_workers`` must be resolved already (`resolve_num_workers`)."""
    if not isinstance(data.num_workers, int):
        raise ValueError(f"data.num_workers={data.num_workers!r}: resolve it first (resolve_num_workers)")
    decode = getattr(data, "decode", "worker")
    if decode not in ("auto", "worker", "device"):
        raise ValueError(f"data.decode must be auto, worker or device, got {decode!r}")
    units, bad = scan_units(list_shards(shards), verbose=rank == 0)
    if not units:
        raise FileNotFoundError(f"no readable shard in {shards!r}: " + "; ".join(bad[:5]))
    ship_jpeg = decode == "device" or (decode == "auto" and device is not None and nvjpeg_available(device))
    plan = StreamPlan(
        units=tuple(split_units(units, world_size * max(1, data.num_workers))),
        spec=SampleSpec.from_config(data, train, pick_decoder(decoder), ship_jpeg),
        batch_size=batch_size,
        shuffle_buffer=data.shuffle_buffer if train else 0,
        seed=data.seed,
        rank=rank,
        world_size=world_size,
        num_workers=data.num_workers,
        epochs=epochs if epochs is not None else (None if train else 1),
        cache_dir=getattr(data, "cache_dir", None),
    )
    if rank == 0:
        where = (f"in the main process on {device or 'cpu'}" + (" (nvJPEG)" if device is not None
                 and nvjpeg_available(device) else f" ({plan.spec.decoder})")) if ship_jpeg else \
            f"in the workers ({plan.spec.decoder})"
        log.info("loader: %d files (%d skipped), %d units, %d windows, %d global workers, JPEGs decoded %s",
                 len(list_shards(shards)), len(bad), len(plan.units), sum(u.rows for u in plan.units),
                 plan.global_workers, where)
    return ShardLoader(ShardStream(plan, tokenize), bad_files=bad, pin_memory=pin_memory, decode_device=device)


MAX_AUTO_WORKERS = 32


def resolve_num_workers(setting: int | str, local_world_size: int = 1, cores: int | None = None) -> int:
    """``data.num_workers``: a number as given, or ``"auto"``: the cores this process may use divided
    among the ranks of this node, less one for each rank's own process (at most 32, at least 1). The
    ranks of a job must agree (the stream is split by the global worker count): the trainer takes the
    minimum over ranks."""
    if setting != "auto":
        if not isinstance(setting, int) or setting < 0:
            raise ValueError(f"data.num_workers must be a count >= 0 or 'auto', got {setting!r}")
        return setting
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, cores // max(1, local_world_size) - 1))


class HFTokenize:
    """Picklable tokenisation step for the collate: ``texts (B, K) -> input_ids/attention_mask (B, K, L)``."""

    def __init__(self, text_cfg: Any) -> None:
        # Loader workers are forked after the tokenizer ran once; its Rust thread pool must stay off.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from tvts_train.model.text import build_tokenizer

        self.tokenizer = build_tokenizer(text_cfg)
        self.max_len = text_cfg.max_len

    def __call__(self, texts: list[list[str]]) -> dict[str, torch.Tensor]:
        from tvts_train.model.text import tokenize

        return tokenize(self.tokenizer, texts, self.max_len)
