"""Small SHARD-schema Parquet files for the trainer's tests (JPEG frames drawn with PIL).

Every frame encodes where it came from, so tests can read the loader's choices back from pixels:
the red channel is ``40 + 8 * frame_index`` (index into the stored segment-major list), the green
channel is ``window_number * 4 % 256`` (which window), and a white square moves with time (so the
clip carries something temporal a model could use). Transcript k of window i reads
``"<ordinal k> part of clip i ..."`` so the sort task is learnable from text alone in a few steps.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from tvts_data.schema import SHARD, with_version

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")
RED_BASE, RED_STEP = 40, 8  # red = RED_BASE + RED_STEP * stored frame index (read back by tests)


def frame_red(index: int) -> int:
    return RED_BASE + RED_STEP * index


def red_to_index(red: float) -> int:
    """Stored frame index from a decoded red value (JPEG error is a few levels, the step is 8)."""
    return int(round((red - RED_BASE) / RED_STEP))


def draw_frame(window: int, index: int, n_frames: int, height: int, width: int) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)  # (H, W, 3)
    img[..., 0] = frame_red(index)
    img[..., 1] = (window * 4) % 256
    side = max(4, height // 6)
    x = int((width - side) * index / max(1, n_frames - 1))
    img[height // 3 : height // 3 + side, x : x + side, 2] = 255
    return img


def jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def window_row(
    window: int,
    segments: int = 8,
    candidates: int = 3,
    K: int = 4,
    height: int = 72,
    width: int = 80,
    frame_format: str = "jpeg",
) -> dict:
    n = segments * candidates
    frames = [draw_frame(window, i, n, height, width) for i in range(n)]
    blobs = [jpeg(f) if frame_format == "jpeg" else f.tobytes() for f in frames]
    l = 3.0
    starts = [10.0 + k * (l + 1) for k in range(K)]
    span = K * l + (K - 1)
    return {
        "window_id": f"vid{window:05d}:00000",
        "video_id": f"vid{window:05d}",
        "window_index": 0,
        "video_path": f"/videos/vid{window:05d}.mp4",
        "duration": 60.0,
        "language": "en",
        "timing": "word",
        "transcript_seconds": l,
        "starts": starts,
        "ends": [s + l for s in starts],
        "texts": [f"{ORDINALS[k]} part of clip {window} topic {window % 5}" for k in range(K)],
        "segments": segments,
        "candidates": candidates,
        "frame_format": frame_format,
        "height": height,
        "width": width,
        "frame_times": [starts[0] + span * (i + 0.5) / n for i in range(n)],
        "frames": blobs,
    }


def write_shard(path: Path, rows: list[dict], row_group_size: int = 4) -> Path:
    """Write ``rows`` as a version-stamped SHARD file with small row groups (the loader's units)."""
    schema = with_version(SHARD)
    table = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_corpus(
    directory: Path,
    n_windows: int = 24,
    per_file: int = 8,
    row_group_size: int = 4,
    **row_kwargs,
) -> list[Path]:
    """``n_windows`` windows numbered 0.. in files of ``per_file`` rows; returns the file paths."""
    paths = []
    for start in range(0, n_windows, per_file):
        rows = [window_row(i, **row_kwargs) for i in range(start, min(n_windows, start + per_file))]
        paths.append(write_shard(directory / f"shard-{start // per_file:05d}-000.parquet", rows, row_group_size))
    return paths


def ffmpeg(out: Path, source: str, *extra: str) -> Path:
    """Render a lavfi source to an H.264 mp4 (argv list: no shell)."""
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, *extra,
           "-pix_fmt", "yuv420p", "-c:v", "libx264", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out


# ----------------------------------------------------------------------------- a trivially sortable task

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 230), "yellow": (235, 220, 30),
           "white": (245, 245, 245), "black": (15, 15, 15)}


def colour_slot_row(window: int, rng: np.random.Generator, K: int = 4, frames_per_slot: int = 2,
                    side: int = 16) -> dict:
    """A window whose k-th transcript names the one flat colour of the clip's k-th temporal slot.

    The K colours are drawn without replacement, so the text alone says nothing about order (any
    arrangement is as likely) and the clip says everything: a model that sorts these reads the order
    off the video. ``frames_per_slot`` frames a slot (the tubelet size), one candidate per segment.
    """
    names = [str(c) for c in rng.choice(sorted(COLOURS), size=K, replace=False)]
    frames = [np.full((side, side, 3), COLOURS[name], np.uint8) for name in names for _ in range(frames_per_slot)]
    row = window_row(window, segments=K * frames_per_slot, candidates=1, K=K, height=side, width=side)
    row.update(frames=[jpeg(f) for f in frames], texts=[f"a {name} screen" for name in names],
               window_id=f"colour{window:05d}:00000", video_id=f"colour{window:05d}")
    return row


def write_colour_slots(directory: Path, n_windows: int, seed: int, per_file: int = 64, **kwargs) -> Path:
    """``n_windows`` colour-slot windows (see :func:`colour_slot_row`) in SHARD files under ``directory``."""
    rng = np.random.default_rng(seed)
    rows = [colour_slot_row(seed * 1_000_000 + i, rng, **kwargs) for i in range(n_windows)]
    for start in range(0, n_windows, per_file):
        write_shard(directory / f"shard-{start // per_file:05d}-000.parquet", rows[start:start + per_file], 16)
    return directory
