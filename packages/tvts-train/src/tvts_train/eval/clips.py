"""Labelled videos for the downstream evaluations: the manifest and the evaluation clip decoder.

Manifest: a CSV, JSONL or Parquet table with the columns ``video_path`` and ``label`` and an optional
``split`` (train / val / test). Relative paths are read from the manifest's folder. Labels may be
names or integers; they become class indices in sorted order (numeric order when every label is an
integer), so every split of one manifest shares one index.

Clip (evaluation protocol, as VideoMAE's test transform): the whole video is cut into M equal
segments (TSN) and the frame at the centre of each segment is taken; frames are decoded by decord
already resized so that the short side is 256 px, centre-cropped to 224 and normalised with the
ImageNet mean/std (the normalisation the trainer's loader uses) into a float tensor ``(3, M, H, W)``.
With V temporal views the v-th view takes the frame at ``(v + 0.5) / V`` of each segment instead of
the centre; with S spatial crops the crops are spread evenly along the long side (S=3: start, centre,
end, as VideoMAE's 2x3 test views). A decoded video is ``(V*S, 3, M, crop, crop)``.

A video that cannot be decoded is never replaced by a blank clip: :class:`ClipDataset` returns the
error as data and the caller skips the video and counts it (see ``features.encode_videos``).
"""

from __future__ import annotations

import csv
import json
import logging
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")
FRAME_ORDERS = ("forward", "reversed", "shuffled")


class ManifestError(ValueError):
    """A manifest that cannot be read as labelled videos (names the file and the row)."""


# ----------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class LabelledVideo:
    path: Path  # absolute, or relative to the working directory when the manifest's was
    label: int  # index into Manifest.classes
    split: str | None  # "train" | "val" | "test" | None (no split column / empty cell)


@dataclass(frozen=True)
class Manifest:
    source: Path
    videos: tuple[LabelledVideo, ...]
    classes: tuple[str, ...]  # class names (labels as written), index = class id

    def select(self, split: str | None) -> list[LabelledVideo]:
        """The videos of one split; ``None`` selects every row."""
        if split is None:
            return list(self.videos)
        if split not in SPLITS:
            raise ManifestError(f"{self.source}: unknown split {split!r}; expected one of {SPLITS}")
        require_split_column(self.source, [v.split for v in self.videos], split)
        return [v for v in self.videos if v.split == split]


def require_split_column(source: Path, splits: list[str | None], wanted: str) -> None:
    """A protocol that reads split ``wanted`` needs a ``split`` column; say so instead of "no videos"."""
    if splits and all(s is None for s in splits):
        raise ManifestError(f"{source}: no 'split' column (or every cell of it empty), and this protocol reads "
                            f"split {wanted!r}: add a split column with {'/'.join(SPLITS)} per row")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # only needed for this format

        return pq.read_table(path).to_pylist()
    raise ManifestError(f"{path}: unsupported manifest format {suffix!r} (use .csv, .jsonl or .parquet)")


def _class_names(raw_labels: list[str]) -> tuple[str, ...]:
    unique = set(raw_labels)
    # Integer labels sort numerically ("10" after "9"); names sort as text.
    if all(s.lstrip("-").isdigit() for s in unique):
        return tuple(sorted(unique, key=int))
    return tuple(sorted(unique))


def _split_of(value: Any, path: Path, row: int) -> str | None:
    if value is None or value == "":
        return None
    if value not in SPLITS:
        raise ManifestError(f"{path} row {row}: split {value!r} is not one of {SPLITS}")
    return str(value)


def read_manifest(path: str | Path) -> Manifest:
    """Read a labelled-video manifest (see the module docstring for the columns)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise ManifestError(f"{path}: no rows")
    for i, row in enumerate(rows):
        missing = [c for c in ("video_path", "label") if row.get(c) in (None, "")]
        if missing:
            raise ManifestError(f"{path} row {i}: missing {missing} (columns: video_path, label[, split])")
    raw_labels = [str(row["label"]) for row in rows]
    classes = _class_names(raw_labels)
    index = {name: i for i, name in enumerate(classes)}
    videos = tuple(
        LabelledVideo(path=path.parent / str(row["video_path"]), label=index[label],
                      split=_split_of(row.get("split"), path, i))
        for i, (row, label) in enumerate(zip(rows, raw_labels))
    )
    log.info("manifest %s: %d videos, %d classes", path, len(videos), len(classes))
    return Manifest(source=path, videos=videos, classes=classes)


# ----------------------------------------------------------------------------- clip geometry


@dataclass(frozen=True)
class ClipConfig:
    """How an evaluation clip is decoded (defaults: the paper's M=16 at 224 px, one view)."""

    frames: int = 16  # M; must equal the encoder's num_frames
    short_side: int = 256  # resize target of the short side before cropping
    crop: int = 224  # square crop side; must equal the encoder's img_size
    temporal_views: int = 1  # V clips per video at shifted positions inside the segments
    spatial_crops: int = 1  # S crops along the long side (1: centre; 3: start/centre/end)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    decode_threads: int = 1  # decord threads per video (loader workers give the parallelism)
    # The order the M frames are given to the encoder: "forward" (the protocol), "reversed" or
    # "shuffled" (a fixed permutation per video): controls that show whether a result needs time order.
    frame_order: str = "forward"

    def __post_init__(self) -> None:
        if self.frame_order not in FRAME_ORDERS:
            raise ValueError(f"frame_order {self.frame_order!r}: choose from {FRAME_ORDERS}")
        if self.crop > self.short_side:
            raise ValueError(f"crop {self.crop} is larger than the resized short side {self.short_side}")
        if min(self.frames, self.temporal_views, self.spatial_crops) < 1:
            raise ValueError("frames, temporal_views and spatial_crops must be >= 1")

    @property
    def num_views(self) -> int:
        return self.temporal_views * self.spatial_crops


def segment_indices(num_frames: int, segments: int, view: int = 0, views: int = 1) -> list[int]:
    """TSN evaluation sampling: one frame per segment, at ``(view + 0.5) / views`` of the segment.

    ``views=1`` gives the segment centres. A video shorter than M frames repeats frames.
    """
    seg = num_frames / segments
    offset = (view + 0.5) / views
    return [min(num_frames - 1, int(seg * (m + offset))) for m in range(segments)]


def random_segment_indices(num_frames: int, segments: int, rng: random.Random | None = None) -> list[int]:
    """TSN training sampling: one frame at a uniformly random place inside each of ``segments``.

    ``rng`` None draws from torch's RNG, which a DataLoader seeds differently in each worker.
    """
    seg = num_frames / segments
    offsets = [rng.random() for _ in range(segments)] if rng is not None else torch.rand(segments).tolist()
    return [min(num_frames - 1, int(seg * (m + u))) for m, u in enumerate(offsets)]


def reorder(index: list[int], order: str, key: str) -> list[int]:
    """``index`` in the requested ``order``; "shuffled" is a fixed permutation per ``key`` (the video)."""
    if order == "forward":
        return index
    if order == "reversed":
        return index[::-1]
    if order == "shuffled":
        perm = random.Random(zlib.crc32(key.encode())).sample(range(len(index)), len(index))
        return [index[i] for i in perm]
    raise ValueError(f"frame order {order!r}: choose from {FRAME_ORDERS}")


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(h, w)`` with the short side at ``short_side`` and the aspect ratio kept."""
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def crop_offsets(length: int, crop: int, count: int) -> list[int]:
    """Start positions of ``count`` crops spread evenly over ``length`` (1 crop: centred)."""
    if count == 1:
        return [(length - crop) // 2]
    return [round(i * (length - crop) / (count - 1)) for i in range(count)]


def spatial_crops(frames: torch.Tensor, crop: int, count: int) -> list[torch.Tensor]:
    """``(T, H, W, C)`` -> ``count`` crops ``(T, crop, crop, C)`` along the long side, centred on the short."""
    _, H, W, _ = frames.shape
    if H > W:  # portrait: crops move down the frame
        left = (W - crop) // 2
        return [frames[:, top:top + crop, left:left + crop] for top in crop_offsets(H, crop, count)]
    top = (H - crop) // 2
    return [frames[:, top:top + crop, left:left + crop] for left in crop_offsets(W, crop, count)]


def normalise(frames: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float ``(3, T, H, W)`` with per-channel mean/std."""
    x = frames.permute(3, 0, 1, 2).float().div_(255.0)  # (3, T, H, W)
    m = torch.tensor(mean).view(3, 1, 1, 1)
    s = torch.tensor(std).view(3, 1, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------------- decoding


def _open_resized(path: Path, short_side: int, threads: int) -> Any:
    """A decord VideoReader whose frames come out with the short side at ``short_side``."""
    from decord import VideoReader, cpu  # imported here: the features-only code paths need no decord

    probe = VideoReader(str(path), ctx=cpu(0), num_threads=threads)
    height, width = probe.next().shape[:2]  # decord has no size query without decoding a frame
    if min(height, width) == short_side:
        return probe
    new_h, new_w = resized_size(height, width, short_side)
    return VideoReader(str(path), ctx=cpu(0), width=new_w, height=new_h, num_threads=threads)


def decode_views(path: str | Path, cfg: ClipConfig) -> torch.Tensor:
    """Decode the evaluation views of one video: ``(V*S, 3, M, crop, crop)``, temporal-view-major.

    Raises what decord raises on an unreadable file (see :func:`try_decode_views`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    reader = _open_resized(path, cfg.short_side, cfg.decode_threads)
    views = []
    for v in range(cfg.temporal_views):
        index = reorder(segment_indices(len(reader), cfg.frames, v, cfg.temporal_views), cfg.frame_order, str(path))
        frames = torch.from_numpy(np.ascontiguousarray(reader.get_batch(index).asnumpy()))  # (M, h, w, 3)
        views += [normalise(c, cfg.mean, cfg.std) for c in spatial_crops(frames, cfg.crop, cfg.spatial_crops)]
    return torch.stack(views)  # (V*S, 3, M, crop, crop)


def decode_train_frames(path: str | Path, cfg: ClipConfig, rng: random.Random | None = None) -> torch.Tensor:
    """Training frames of one video, uint8 ``(M, h, w, 3)`` resized to ``short_side``, not cropped:
    a random frame inside each of the M segments (:func:`random_segment_indices`). The fine-tuning
    protocols crop, flip and normalise them in their own way."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    reader = _open_resized(path, cfg.short_side, cfg.decode_threads)
    index = random_segment_indices(len(reader), cfg.frames, rng)
    return torch.from_numpy(np.ascontiguousarray(reader.get_batch(index).asnumpy()))  # (M, h, w, 3)


def try_decode(decode: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a decoding call with the failure returned as data: ``(result, None)`` or ``(None, error)``."""
    from decord import DECORDError

    try:
        return decode(), None
    # decord raises RuntimeError when it cannot open a file, DECORDError when a frame fails to decode
    # and AssertionError for a container that reports zero frames; a missing file is FileNotFoundError.
    except (RuntimeError, DECORDError, AssertionError, OSError) as err:
        return None, f"{type(err).__name__}: {str(err).strip() or 'no message'}"


def try_decode_views(path: str | Path, cfg: ClipConfig) -> tuple[torch.Tensor | None, str | None]:
    """:func:`decode_views` with the failure returned as data: ``(views, None)`` or ``(None, error)``."""
    return try_decode(lambda: decode_views(path, cfg))


# ----------------------------------------------------------------------------- dataset


@dataclass
class ClipItem:
    index: int  # position in the list of videos given to the dataset
    views: torch.Tensor | None  # (V*S, 3, M, crop, crop); None when decoding failed
    label: int
    path: str
    error: str | None


@dataclass
class ClipBatch:
    index: torch.Tensor  # (B,) positions of the decoded videos
    views: torch.Tensor | None  # (B, V*S, 3, M, crop, crop); None when no video of the batch decoded
    labels: torch.Tensor  # (B,)
    failed: list[tuple[str, str]]  # (path, error) of the videos skipped in this batch


class ClipDataset(Dataset):
    """Evaluation views of labelled videos; failures come back as :class:`ClipItem` with an error."""

    def __init__(self, videos: list[LabelledVideo], cfg: ClipConfig) -> None:
        self.videos = videos
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> ClipItem:
        video = self.videos[i]
        views, error = try_decode_views(video.path, self.cfg)
        return ClipItem(index=i, views=views, label=video.label, path=str(video.path), error=error)


def collate_clips(items: list[ClipItem]) -> ClipBatch:
    """Stack the decoded items and carry the failed ones by name (for ``DataLoader(collate_fn=...)``)."""
    ok = [it for it in items if it.views is not None]
    return ClipBatch(
        index=torch.tensor([it.index for it in ok], dtype=torch.long),
        views=torch.stack([it.views for it in ok]) if ok else None,  # type: ignore[misc]
        labels=torch.tensor([it.label for it in ok], dtype=torch.long),
        failed=[(it.path, it.error or "unknown error") for it in items if it.views is None],
    )
