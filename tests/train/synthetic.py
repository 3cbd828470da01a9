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
