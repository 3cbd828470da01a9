"""Synthetic videos: coloured shapes moving over a gradient, every frame carrying its index; and
camera-like footage (:class:`CameraScene`) for benchmarks whose results depend on the content.

Frames are drawn with numpy and piped as raw RGB into ffmpeg (through ``ffmpeg-python``), which
encodes H.264 yuv420p at a constant frame rate starting at pts 0, so frame i is shown at exactly
i / fps; a test reads the index back from the pixels (:mod:`.timecode`) to check which frame a
decoder or a sampler really returned. Keyframes come every ``keyint`` frames and nowhere else, so
random-access cost is predictable.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ffmpeg
import numpy as np

from .timecode import paint_timecode

log = logging.getLogger(__name__)


class VideoError(RuntimeError):
    """ffmpeg is missing or failed to encode."""


@dataclass(frozen=True)
class Shape:
    """A shape bouncing inside the frame; positions in pixels, velocity in pixels per frame."""

    kind: str  # "rect" | "disc"
    size: int  # side (rect) or diameter (disc)
    color: tuple[int, int, int]
    x0: float
    y0: float
    vx: float
    vy: float

    def position(self, index: int, width: int, height: int) -> tuple[int, int]:
        """Top-left corner at frame ``index``: straight motion reflected off the frame edges."""
        return (_bounce(self.x0 + self.vx * index, width - self.size),
                _bounce(self.y0 + self.vy * index, height - self.size))


def _bounce(p: float, span: int) -> int:
    period = 2 * max(span, 1)
    p = p % period
    return int(period - p if p > span else p)


def random_shapes(rng: np.random.Generator, width: int, height: int, count: int = 4) -> list[Shape]:
    shapes = []
    for k in range(count):
        size = int(rng.integers(height // 8, height // 3))
        speed = rng.uniform(1.0, 4.0)
        angle = rng.uniform(0, 2 * np.pi)
        color = tuple(int(c) for c in rng.integers(30, 226, size=3))
        shapes.append(Shape("rect" if k % 2 == 0 else "disc", size, color,  # type: ignore[arg-type]
                            rng.uniform(0, width - size), rng.uniform(0, height - size),
                            speed * np.cos(angle), speed * np.sin(angle)))
    return shapes


class FrameSource(Protocol):
    """Anything that draws frame ``index`` as ``(H, W, 3)`` uint8 RGB."""

    def frame(self, index: int) -> np.ndarray: ...


class Scene:
    """Draws frame i of a seeded scene: a gradient background and moving shapes."""

    def __init__(self, width: int, height: int, seed: int):
        rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        self.shapes = random_shapes(rng, width, height)
        top, bottom = rng.integers(0, 256, size=(2, 3))
        ramp = np.linspace(0.0, 1.0, height)[:, None, None]  # (H, 1, 1)
        gradient = np.broadcast_to(top + (bottom - top) * ramp, (height, width, 3))
        # contiguous: copying a broadcast view once per frame costs 40x more
        self.background = np.ascontiguousarray(gradient, dtype=np.uint8)
        self.masks = {s.size: _disc(s.size) for s in self.shapes if s.kind == "disc"}

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB with the timecode painted in."""
        out = self.background.copy()
        for shape in self.shapes:
            x, y = shape.position(index, self.width, self.height)
            patch = out[y:y + shape.size, x:x + shape.size]
            if shape.kind == "rect":
                patch[:] = shape.color
            else:
                patch[self.masks[shape.size]] = shape.color
        paint_timecode(out, index)
        return out


class CameraScene:
    """Camera-like footage for storage and speed benchmarks: each shot is a slow pan and zoom over a
    texture whose amplitude spectrum falls as 1/f (the statistics of natural images), a cut every
    ``shot_seconds``, and fresh sensor grain on every frame. JPEG and H.264 sizes are set by exactly
    these statistics (detail at every scale, motion, noise), which flat synthetic frames lack; this is
    still an approximation of users' footage, not a sample of it."""

    def __init__(self, width: int, height: int, seed: int, fps: int = 25, shot_seconds: float = 6.0,
                 grain: float = 2.0):
        self.width, self.height, self.seed, self.grain = width, height, seed, grain
        self.shot_frames = max(1, round(shot_seconds * fps))
        self._shot: tuple[int, np.ndarray, np.ndarray] | None = None  # (shot index, texture, pan/zoom)
        self._noise = np.random.default_rng(seed + 1)

    def _texture(self, shot: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, shot))
        h, w = int(self.height * 1.6), int(self.width * 1.6)
        fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
        amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))  # 1/f, capped at the lowest frequency
        channels = []
        for weight in (1.0, 0.35, 0.35):  # luminance-like detail, weaker chroma detail
            spectrum = amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape))
            field = np.fft.irfft2(spectrum, s=(h, w))
            channels.append(weight * (field - field.mean()) / field.std())
        mix = rng.normal(size=(3, 3)) * 0.3 + np.eye(3)  # a random colour cast per shot
        rgb = np.tensordot(np.stack(channels, -1), mix, axes=1) * 40 + rng.uniform(70, 180, size=3)
        motion = rng.uniform(-1, 1, size=3) * np.array([0.25 * (w - self.width), 0.25 * (h - self.height), 0.15])
        return np.clip(rgb, 0, 255).astype(np.uint8), motion

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        from PIL import Image

        shot, k = divmod(index, self.shot_frames)
        if self._shot is None or self._shot[0] != shot:
            self._shot = (shot, *self._texture(shot))
        _, texture, (dx, dy, dz) = self._shot
        progress = k / self.shot_frames
        th, tw = texture.shape[:2]
        zoom = 1.0 + dz * progress  # crop side relative to the frame: < 1 zooms in
        ch, cw = min(th, int(self.height * 1.2 * zoom)), min(tw, int(self.width * 1.2 * zoom))
        y = int(np.clip((th - ch) / 2 + dy * (progress - 0.5), 0, th - ch))
        x = int(np.clip((tw - cw) / 2 + dx * (progress - 0.5), 0, tw - cw))
        crop = Image.fromarray(texture[y:y + ch, x:x + cw]).resize((self.width, self.height), Image.BILINEAR)
        noisy = np.asarray(crop, dtype=np.float32) + self._noise.normal(0, self.grain, (self.height, self.width, 1))
        return np.clip(noisy, 0, 255).astype(np.uint8)


def _disc(diameter: int) -> np.ndarray:
    r = (diameter - 1) / 2
    yy, xx = np.mgrid[:diameter, :diameter]
    return (yy - r) ** 2 + (xx - r) ** 2 <= r * r


@functools.lru_cache(maxsize=1)
def _cfr_option() -> dict[str, str]:
    """``-fps_mode cfr`` on ffmpeg >= 5.1, ``-vsync cfr`` before (the old name is deprecated there)."""
    version = subprocess.run([ffmpeg_binary(), "-version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"ffmpeg version n?(\d+)\.(\d+)", version)
    if match and (int(match[1]), int(match[2])) >= (5, 1):
        return {"fps_mode": "cfr"}
    return {"vsync": "cfr"}


def ffmpeg_binary() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise VideoError("ffmpeg is not installed; run `make install` or `apt-get install ffmpeg`")
    return path


def render_video(
    path: str | Path,
    seconds: float,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    audio_wav: Path | None = None,
    keyint: int = 50,
    faststart: bool = True,
    scene: FrameSource | None = None,
) -> int:
    """Write an H.264 mp4 of ``round(seconds * fps)`` frames (AAC audio from ``audio_wav`` if given).

    ``size`` is (width, height), both even (yuv420p). ``faststart`` puts the index (moov) first, as
    web video has it. ``scene`` draws the frames (default: bouncing shapes with the frame index
    painted in, seeded by ``seed``). Returns the number of frames.
    """
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size {size}: width and height must be even for yuv420p")
    n_frames = round(seconds * fps)
    scene = scene if scene is not None else Scene(width, height, seed)
    process = _encoder(Path(path), width, height, fps, n_frames, audio_wav, keyint, faststart).run_async(
        cmd=ffmpeg_binary(), pipe_stdin=True, pipe_stderr=True)
    try:
        for index in range(n_frames):
            process.stdin.write(scene.frame(index).tobytes())
        process.stdin.close()
    except BrokenPipeError:  # ffmpeg died; its stderr below says why
        pass
    except BaseException:  # our side failed (or was interrupted): leave no ffmpeg behind
        process.kill()
        process.wait()
        raise
    stderr = process.stderr.read().decode(errors="replace")
    if process.wait() != 0:
        raise VideoError(f"ffmpeg failed writing {path} (exit {process.returncode}): {stderr.strip()[-2000:]}")
    log.debug("rendered %s: %d frames at %d fps, %dx%d", path, n_frames, fps, width, height)
    return n_frames


def _encoder(path: Path, width: int, height: int, fps: int, n_frames: int, audio_wav: Path | None,
             keyint: int, faststart: bool) -> ffmpeg.nodes.OutputStream:
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
    streams = [video]
    options: dict[str, object] = {
        "vcodec": "libx264", "pix_fmt": "yuv420p", "preset": "veryfast", "crf": 18,
        # fixed GOPs: a keyframe every `keyint` frames and no scene-cut keyframes in between
        "g": keyint, "keyint_min": keyint, "sc_threshold": 0,
        "t": f"{n_frames / fps:.6f}", **_cfr_option(),
    }
    if audio_wav is not None:
        streams.append(ffmpeg.input(str(audio_wav)).audio)
        # the default AAC coder (twoloop) costs 6x more CPU than "fast" and speech does not need it
        options.update({"acodec": "aac", "aac_coder": "fast", "audio_bitrate": "64k"})
    if faststart:
        options["movflags"] = "+faststart"
    out = ffmpeg.output(*streams, str(path), **options)
    # errors only on stderr: a chatty ffmpeg could fill the pipe while we are still writing frames
    return out.global_args("-hide_banner", "-nostats", "-loglevel", "error").overwrite_output()


def write_clip(path: str | Path, frames: np.ndarray, fps: int = 25, crf: int = 18) -> None:
    """A short silent H.264 mp4 of ``frames`` ``(N, H, W, 3)`` uint8, encoded in-process with PyAV.

    The same encoder settings as :func:`render_video` (yuv420p, constant frame rate from pts 0, one
    GOP for the whole clip) without an ffmpeg process per file: labelled clip sets of hundreds of
    files are written ~10x faster.
    """
    import av

    n, height, width = frames.shape[:3]
    if width % 2 or height % 2:
        raise ValueError(f"frames of {width}x{height}: width and height must be even for yuv420p")
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "g": str(n), "sc_threshold": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())  # flush
    tmp.replace(path)
