"""Reading videos: probe with ffprobe, decode chosen frames with decord (PyAV where decord fails).

Both decoders return frames resized so the short side has the requested length, as RGB uint8, with the
presentation time of each frame as the container states it (not index / fps, which drifts on VFR files).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import ffmpeg
import numpy as np

from tvts_data.stages.errors import StageError

log = logging.getLogger(__name__)

LOCAL_SPAN = 9  # frame intervals over which FrameReader.local_intervals takes the stream's own pace


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds in which the video stream has frames (not the container's, which audio may extend)
    width: int
    height: int
    fps: float
    container_duration: float = 0.0


def probe_video(path: str | Path, video_id: str) -> VideoInfo:
    """Container facts, or StageError naming what is wrong with the file."""
    path = Path(path)
    if not path.exists():
        raise StageError("missing_file", f"video {video_id}: {path} does not exist")
    if path.stat().st_size == 0:
        raise StageError("video_unreadable", f"video {video_id}: {path} is empty (0 bytes); download it again")
    try:
        info = ffmpeg.probe(str(path))
    except ffmpeg.Error as exc:  # ffprobe exits non-zero on corrupt/truncated containers
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise StageError("video_unreadable", f"video {video_id}: ffprobe cannot read {path}: "
                         f"{detail[-1] if detail else exc}; the file is corrupt or truncated") from exc
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"
               and s.get("disposition", {}).get("attached_pic", 0) == 0]
    if not streams:
        raise StageError("no_video_stream", f"video {video_id}: {path} has no video stream "
                         "(audio only?); it cannot give frames")
    stream = streams[0]
    container = float(info.get("format", {}).get("duration") or 0.0)
    # The video stream's own duration where the container states it (mp4, mov): an audio track or a
    # trailing gap may make the container longer, and windows must stay where frames exist.
    video = float(stream.get("duration") or 0.0)
    duration = min(video, container) if video > 0 and container > 0 else (video or container)
    if duration <= 0:
        raise StageError("video_unreadable", f"video {video_id}: {path} reports no duration")
    num, _, den = str(stream.get("avg_frame_rate", "0/1")).partition("/")
    fps = float(num) / float(den or 1) if float(den or 1) else 0.0
    return VideoInfo(duration, int(stream["width"]), int(stream["height"]), fps, container or duration)


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side`, both even (yuv420 scalers want that)."""
    scale = short_side / min(width, height)
    even = lambda v: max(2, int(round(v * scale / 2)) * 2)  # noqa: E731
    return even(width), even(height)


class FrameReader:
    """Random access to frames by time. One instance per video; close() frees the decoder."""

    def __init__(self, path: str | Path, video_id: str, short_side: int, decoder: str = "auto"):
        self.path, self.video_id, self.short_side = str(path), video_id, short_side
        self._impl: _DecordReader | _PyAVReader
        if decoder in ("auto", "decord"):
            try:
                self._impl = _DecordReader(self.path, short_side)
                return
            except (RuntimeError, ValueError, _decord_error()) as exc:
                if decoder == "decord":
                    raise StageError("video_unreadable", f"video {video_id}: decord cannot open {path}: {exc}") from exc
                log.info("video %s: decord cannot open %s (%s); using PyAV", video_id, path, exc)
        self._impl = _PyAVReader(self.path, video_id, short_side)

    @property
    def decoder(self) -> str:
        return self._impl.name

    @property
    def frame_times(self) -> np.ndarray:
        """Presentation time (s) of every frame, ascending."""
        return self._impl.times

    @property
    def frame_interval(self) -> float:
        """The typical time between frames (median), seconds."""
        times = self.frame_times
        return float(np.median(np.diff(times))) if len(times) > 1 else float("inf")

    def index_at(self, t: np.ndarray) -> np.ndarray:
        """Index of the frame on screen at each time t: the last frame whose time is <= t."""
        idx = np.searchsorted(self.frame_times, np.asarray(t) + 1e-6, side="right") - 1
        return np.clip(idx, 0, len(self.frame_times) - 1)

    @cached_property
    def local_intervals(self) -> np.ndarray:
        """(N-1,) the stream's own frame interval around each hole between frames: the median of the
        ``LOCAL_SPAN`` intervals centred on it (a variable-frame-rate stream changes its pace). Computed
        once per video: every window of it asks."""
        gaps = np.diff(self.frame_times)
        if len(gaps) <= LOCAL_SPAN:
            return np.full(len(gaps), np.median(gaps) if len(gaps) else np.inf)
        half = LOCAL_SPAN // 2
        padded = np.pad(gaps, half, mode="edge")
        return np.median(np.lib.stride_tricks.sliding_window_view(padded, LOCAL_SPAN), axis=1)

    def off_frames(self, t: np.ndarray, idx: np.ndarray, gap_factor: float = 4.0,
                   gap_min_s: float = 0.5) -> np.ndarray:
        """Which requested times ``t`` the frames ``idx`` (from ``index_at``) do not show.

        A time is covered when the frame on screen at that moment is a real frame of the stream: the
        next frame has not started yet, and the hole up to it is not a gap. A gap is a hole longer than
        ``gap_factor`` x the stream's own intervals around it (``local_intervals``) and longer than
        ``gap_min_s``: frames held at 40/80 ms (VFR), a 2 s slideshow frame or a few dropped frames are
        covered; a 5 s hole in a 25 fps stream is not. Before the first frame and more than one interval
        past the last frame stay uncovered. ``index_at`` clamps such times; they must never be stored.
        """
        t, idx, times = np.asarray(t, dtype=np.float64), np.asarray(idx), self.frame_times
        off = t < times[0] - 1e-3
        if len(times) == 1:
            return off | (t > times[0] + 1e-3)
        local = self.local_intervals[np.minimum(idx, len(times) - 2)]
        inside = idx < len(times) - 1
        hole = np.where(inside, times[np.minimum(idx + 1, len(times) - 1)] - times[idx], np.inf)
        gap = hole > np.maximum(gap_factor * local, gap_min_s)  # the last frame: an endless hole
        # A frame before a gap (and the last frame) still shows for one of its stream's intervals.
        return off | (gap & (t - times[idx] > 1.01 * local + 1e-6))

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """(N, H, W, 3) uint8 frames at these indices, in the order asked."""
        try:
            return self._impl.get(np.asarray(indices, dtype=np.int64))
        except (RuntimeError, ValueError, EOFError, _decord_error()) as exc:  # mid-stream: truncated files
            raise StageError("video_unreadable", f"video {self.video_id}: decoding {self.path} failed "
                             f"({self._impl.name}): {exc}") from exc

    def close(self) -> None:
        self._impl = None  # type: ignore[assignment]


def _decord_error() -> type[Exception]:
    """decord's DECORDError derives from neither RuntimeError nor ValueError."""
    from decord._ffi.base import DECORDError

    return DECORDError


class _DecordReader:
    name = "decord"

    def __init__(self, path: str, short_side: int):
        import decord  # deferred: importing decord starts no threads, but keeps imports cheap for the trainer

        probe = decord.VideoReader(path, num_threads=1)
        h, w = probe[0].shape[:2] if len(probe) else (0, 0)
        del probe
        if not h:
            raise ValueError("no frames")
        width, height = resized_size(w, h, short_side)
        self.vr = decord.VideoReader(path, width=width, height=height, num_threads=1)
        self.times = np.asarray(self.vr.get_frame_timestamp(np.arange(len(self.vr))))[:, 0].astype(np.float64)

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.vr.get_batch(list(indices)).asnumpy()


class _PyAVReader:
    """Sequential decode: slower than decord's seeking but reads what decord cannot (odd codecs)."""

    name = "pyav"

    def __init__(self, path: str, video_id: str, short_side: int):
        import av

        self.path, self.short_side = path, short_side
        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                base = float(stream.time_base)
                self.times = np.array(sorted(float(p.pts) * base for p in container.demux(stream)
                                             if p.pts is not None), dtype=np.float64)
        except (av.error.FFmpegError, IndexError) as exc:
            raise StageError("video_unreadable", f"video {video_id}: PyAV cannot read {path}: {exc}") from exc
        if len(self.times) == 0:
            raise StageError("video_unreadable", f"video {video_id}: {path} has no decodable frames")
        self.shift = self.times[0] if self.times[0] < 0 else 0.0
        self.times -= self.shift

    def get(self, indices: np.ndarray) -> np.ndarray:
        import av

        wanted = {int(i) for i in indices}
        found: dict[int, np.ndarray] = {}
        half = 0.5 * (float(np.median(np.diff(self.times))) if len(self.times) > 1 else 1.0)
        with av.open(self.path) as container:
            for n, frame in enumerate(container.decode(video=0)):
                if n in wanted:
                    # the decoded frame's own time, checked against the index: a decoder that returns
                    # another frame than the one asked for is caught here, whatever the cause
                    if frame.time is not None and abs(frame.time - self.shift - self.times[n]) > half:
                        raise ValueError(f"frame {n} decoded with time {frame.time - self.shift:.3f} s, "
                                         f"expected {self.times[n]:.3f} s")
                    w, h = resized_size(frame.width, frame.height, self.short_side)
                    found[n] = frame.to_ndarray(format="rgb24", width=w, height=h)
                if n >= max(wanted):
                    break
        missing = wanted - found.keys()
        if missing:
            raise EOFError(f"frames {sorted(missing)[:5]} are past the decodable end")
        return np.stack([found[int(i)] for i in indices])
