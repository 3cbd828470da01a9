"""Frames stage: the windows of one video -> shard rows with decoded frames (schema.SHARD).

For each window the span [S_1, E_K] is cut into M equal segments and C frames are kept per segment at
evenly spaced times, so the trainer can draw a fresh TSN sample (one candidate per segment) every epoch
without touching the video again, and takes the middle candidate (the segment centre) for evaluation.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Sequence

import numpy as np
from PIL import Image

from tvts_data.config import FramesConfig
from tvts_data.media import FrameReader
from tvts_data.stages.deadline import hang_if_asked
from tvts_data.stages.errors import StageError

log = logging.getLogger(__name__)


def candidate_times(start: float, end: float, segments: int, candidates: int) -> np.ndarray:
    """(M*C,) times, segment-major: candidate c of segment m sits at (c + 0.5) / C of that segment."""
    seg = (end - start) / segments
    m = np.arange(segments)[:, None]
    c = (np.arange(candidates)[None, :] + 0.5) / candidates
    return (start + seg * (m + c)).reshape(-1)  # (M*C,)


def encode_frame(frame: np.ndarray, cfg: FramesConfig) -> bytes:
    if cfg.format == "raw":
        return np.ascontiguousarray(frame, dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=cfg.jpeg_quality)
    return buf.getvalue()


def decode_window(reader: FrameReader, window: dict[str, Any], cfg: FramesConfig) -> dict[str, Any]:
    """One window's shard row; StageError when a requested time has no frame (never a frozen copy)."""
    times = candidate_times(window["starts"][0], window["ends"][-1], cfg.segments, cfg.candidates)
    idx = reader.index_at(times)
    off = reader.off_frames(times, idx, cfg.gap_factor, cfg.gap_min_s)
    if off.any():
        first = int(np.argmax(off))
        raise StageError("window_outside_frames", f"window {window['window_id']}: no frame at {times[first]:.2f} s "
                         f"(the nearest decodable frame is at {reader.frame_times[idx[first]]:.2f} s; "
                         f"{int(off.sum())} of {len(times)} times off): past the end of the video stream or "
                         "inside a gap; the window is dropped")
    frames = reader.get(idx)  # (M*C, H, W, 3)
    row = {k: v for k, v in window.items() if k != "words"}
    row.update(
        segments=cfg.segments,
        candidates=cfg.candidates,
        frame_format=cfg.format,
        height=int(frames.shape[1]),
        width=int(frames.shape[2]),
        frame_times=reader.frame_times[idx].astype(np.float32).tolist(),
        frames=[encode_frame(f, cfg) for f in frames],
    )
    return row


def decode_video_windows(windows: Sequence[dict[str, Any]],
                         cfg: FramesConfig) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Shard rows for the windows of one video (one decoder opened per video), in window order, and the
    windows that could not be decoded, counted by error kind. A window past the end of a truncated file
    is dropped and counted, the others are kept; a video none of whose windows decode raises the first
    window's StageError."""
    if not windows:
        return [], {}
    first = windows[0]
    hang_if_asked(first["video_id"])
    if cfg.candidates % 2 == 0:
        log.warning("frames.candidates=%d is even: evaluation takes the candidate right of the segment centre",
                    cfg.candidates)
    reader = FrameReader(first["video_path"], first["video_id"], cfg.short_side, cfg.decoder)
    rows, failures = [], []
    try:
        for w in sorted(windows, key=lambda w: w["window_index"]):
            try:
                rows.append(decode_window(reader, w, cfg))
            except StageError as exc:
                log.info("window %s: %s", w["window_id"], exc.message)
                failures.append(exc)
    finally:
        reader.close()
    if not rows and failures:
        raise failures[0]
    dropped: dict[str, int] = {}
    for exc in failures:
        dropped[exc.kind] = dropped.get(exc.kind, 0) + 1
    return rows, dropped
