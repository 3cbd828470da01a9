"""Flat coloured shapes drawn with numpy: the visual vocabulary of the narrated world and the
order-only temporal benchmark.

A :class:`Sprite` is one shape at one moment (centre, half-size, colour, rotation); a
:class:`Backdrop` is a static, slightly textured background. Colours are far apart in RGB and far
from the dark, unsaturated backdrops, so "which object is on screen" survives H.264, JPEG and a
resize to 64 px, and a test can find an object by its colour.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Names are what the narration says; the RGB values what the pixels show.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 100, 240),
    "yellow": (240, 220, 40),
    "purple": (160, 60, 215),
    "white": (240, 240, 240),
    "orange": (250, 140, 25),
}
SHAPES = ("square", "circle", "triangle", "diamond")


def plural(shape: str) -> str:
    return shape + "s"


@dataclass(frozen=True)
class Sprite:
    """One shape at one moment; positions in pixels, ``size`` is the half-extent (radius)."""

    shape: str
    color: tuple[float, float, float]  # RGB, may be a blend of two palette colours
    cx: float
    cy: float
    size: float
    angle: float = 0.0  # radians, counter-clockwise

    def moved(self, **changes: float) -> Sprite:
        return replace(self, **changes)


def shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, size: float, angle: float = 0.0) -> np.ndarray:
    """Boolean mask of ``shape`` for pixel offsets ``(dy, dx)`` from its centre."""
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    if shape == "square":
        return (np.abs(dx) <= size) & (np.abs(dy) <= size)
    if shape == "circle":
        return dx * dx + dy * dy <= size * size
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= size * 1.3
    if shape == "triangle":  # apex up; base at +size, apex at -size
        return (dy <= size) & (dy >= -size) & (np.abs(dx) <= (dy + size) * 0.6)
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def draw(frame: np.ndarray, sprite: Sprite) -> None:
    """Paint ``sprite`` into ``frame`` (H, W, 3) uint8 in place; parts outside the frame are clipped."""
    height, width = frame.shape[:2]
    reach = sprite.size * 1.5 + 1  # bounding half-extent of every shape, any rotation
    y0, y1 = max(0, int(sprite.cy - reach)), min(height, int(sprite.cy + reach) + 1)
    x0, x1 = max(0, int(sprite.cx - reach)), min(width, int(sprite.cx + reach) + 1)
    if y0 >= y1 or x0 >= x1 or sprite.size <= 0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    mask = shape_mask(sprite.shape, yy - sprite.cy, xx - sprite.cx, sprite.size, sprite.angle)
    frame[y0:y1, x0:x1][mask] = np.clip(np.round(sprite.color), 0, 255).astype(np.uint8)


def blend(a: str, b: str, t: float) -> tuple[float, float, float]:
    """The colour ``t`` of the way from palette colour ``a`` to ``b``."""
    ca, cb = np.array(COLORS[a], dtype=np.float64), np.array(COLORS[b], dtype=np.float64)
    return tuple(float(v) for v in ca + (cb - ca) * t)  # type: ignore[return-value]


class Backdrop:
    """A static background: a dark, low-saturation vertical gradient with a faint fixed texture."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        top = rng.uniform(35, 85, size=3)
        bottom = top + rng.uniform(-20, 20, size=3)
        ramp = np.linspace(0.0, 1.0, height)[:, None, None]  # (H, 1, 1)
        texture = rng.normal(0.0, 4.0, size=(height, width, 1))  # the same in every frame
        image = top + (bottom - top) * ramp + texture  # (H, W, 3)
        self.image = np.ascontiguousarray(np.clip(image, 0, 255), dtype=np.uint8)

    def render(self, sprites: list[Sprite]) -> np.ndarray:
        frame = self.image.copy()
        for sprite in sprites:
            draw(frame, sprite)
        return frame


def color_share(frame: np.ndarray, rgb: tuple[float, float, float], tolerance: float = 60.0) -> float:
    """Share of pixels within ``tolerance`` (RGB distance) of ``rgb``: tests find objects by colour."""
    distance = np.linalg.norm(frame.astype(np.float32) - np.asarray(rgb, dtype=np.float32), axis=-1)
    return float((distance < tolerance).mean())


def color_centroid(frame: np.ndarray, rgb: tuple[float, float, float], tolerance: float = 60.0) -> tuple[float, float] | None:
    """(y, x) centre of the pixels near ``rgb``, or None when there are none."""
    distance = np.linalg.norm(frame.astype(np.float32) - np.asarray(rgb, dtype=np.float32), axis=-1)
    ys, xs = np.nonzero(distance < tolerance)
    return (float(ys.mean()), float(xs.mean())) if ys.size else None
