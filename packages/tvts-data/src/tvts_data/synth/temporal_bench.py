"""An order-only temporal benchmark: classes that differ only in the order of the same frames.

It plays the role of Something-Something V2 for the miniature reproduction of the paper: a labelled
video set whose *order pairs* cannot be told apart without knowing which frame comes first.

Classes (``classes.json`` lists them with their descriptions):

==================  =================  =======================================================
forward class       reversed class     what the forward clip shows
==================  =================  =======================================================
``moves_right``     ``moves_left``     an object crosses the frame left to right
``moves_down``      ``moves_up``       an object crosses the frame top to bottom
``grows``           ``shrinks``        an object grows from small to large
``appears``         ``disappears``     an empty backdrop, then an object is there
``turns_blue``      ``turns_red``      a red object turns blue
``approaches``      ``recedes``        an object grows while it moves down (comes closer)
==================  =================  =======================================================

and appearance-only classes ``square``, ``circle``, ``triangle``, ``diamond``: the shape wobbles
sideways and back (a palindromic motion, so time order tells nothing) in a random colour.

For every drawn clip of a forward class the *same frames reversed* form a clip of its partner class,
and both land in the same split. Shapes, colours (except for the colour pair), positions, speeds and
backdrops are drawn at random per clip from this generator's own seed, never from the pretraining
world's. Clips are ``frames`` long (default 24 = 3 x 8: the TSN segment centres of an 8- or 16-frame
evaluation are then mirror images of each other, so reversing a clip reverses exactly the frames an
evaluation sees).

Output: ``DIR/videos/<class>/<class>-<n>.mp4``, ``manifest.csv`` (``video_path,label,split``, every
clip), ``order.csv`` (the order pairs only), ``appearance.csv`` (the appearance classes only) and
``classes.json`` (pairs, descriptions, counts, config).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .shapes import COLORS, SHAPES, Backdrop, Sprite, blend
from .video import write_clip

log = logging.getLogger(__name__)

Params = dict[str, float | str]
Pose = Callable[[Params, float, int], list[Sprite]]  # (params, progress in [0, 1], size) -> sprites


def _lerp(a: float, b: float, u: float) -> float:
    return a + (b - a) * u


def _sprite(p: Params, size: int, **changes: float) -> Sprite:
    sprite = Sprite(str(p["shape"]), COLORS[str(p["color"])], float(p["x"]) * size, float(p["y"]) * size,
                    float(p["radius"]) * size)
    return sprite.moved(**changes) if changes else sprite


def _cross(axis: str) -> Pose:
    def pose(p: Params, u: float, size: int) -> list[Sprite]:
        position = _lerp(0.15, 0.85, u) * size
        return [_sprite(p, size, **{"cx" if axis == "x" else "cy": position})]
    return pose


def _grow(p: Params, u: float, size: int) -> list[Sprite]:
    s = _sprite(p, size)
    return [s.moved(size=s.size * _lerp(0.3, 1.6, u))]


def _appear(p: Params, u: float, size: int) -> list[Sprite]:
    return [_sprite(p, size)] if u >= float(p["cut"]) else []


def _turn_blue(p: Params, u: float, size: int) -> list[Sprite]:
    return [_sprite(p, size).moved(color=blend("red", "blue", u))]


def _approach(p: Params, u: float, size: int) -> list[Sprite]:
    s = _sprite(p, size)
    return [s.moved(cy=_lerp(0.3, 0.7, u) * size, size=s.size * _lerp(0.4, 1.5, u))]


def _wobble(p: Params, u: float, size: int) -> list[Sprite]:
    s = _sprite(p, size)
    return [s.moved(cx=s.cx + float(p["amplitude"]) * size * math.sin(math.pi * u))]  # out and back


@dataclass(frozen=True)
class OrderPair:
    forward: str
    reverse: str
    description: str  # of the forward clip
    pose: Pose


ORDER_PAIRS: tuple[OrderPair, ...] = (
    OrderPair("moves_right", "moves_left", "an object crosses the frame left to right", _cross("x")),
    OrderPair("moves_down", "moves_up", "an object crosses the frame top to bottom", _cross("y")),
    OrderPair("grows", "shrinks", "an object grows from small to large", _grow),
    OrderPair("appears", "disappears", "an empty backdrop, then an object is there", _appear),
    OrderPair("turns_blue", "turns_red", "a red object turns blue", _turn_blue),
    OrderPair("approaches", "recedes", "an object grows while it moves down (comes closer)", _approach),
)
APPEARANCE_CLASSES: tuple[str, ...] = SHAPES  # the shape wobbling sideways and back


@dataclass(frozen=True)
class BenchConfig:
    train_per_class: int = 24
    val_per_class: int = 16
    frames: int = 24  # per clip; 3 x 8 keeps the TSN centres of 8/16-frame evaluations mirror-symmetric
    fps: int = 10
    size: int = 96  # square frames, px
    seed: int = 1000  # its own seed: never the pretraining world's


def _draw_params(rng: np.random.Generator, cls: str) -> Params:
    colors = [c for c in COLORS if c not in ("red", "blue")] if cls != "turns_blue" else ["red"]
    return {
        "shape": str(rng.choice(SHAPES)) if cls not in APPEARANCE_CLASSES else cls,
        "color": str(rng.choice(colors if cls not in APPEARANCE_CLASSES else list(COLORS))),
        "x": float(rng.uniform(0.3, 0.7)),
        "y": float(rng.uniform(0.3, 0.7)),
        "radius": float(rng.uniform(0.1, 0.15)),
        "cut": float(rng.uniform(0.3, 0.7)),
        "amplitude": float(rng.uniform(0.1, 0.2)) * float(rng.choice([-1, 1])),
    }


def clip_frames(pose: Pose, params: Params, backdrop: Backdrop, cfg: BenchConfig) -> np.ndarray:
    """``(frames, size, size, 3)`` uint8: the pose sampled at evenly spaced progress values."""
    progress = np.linspace(0.0, 1.0, cfg.frames)
    return np.stack([backdrop.render(pose(params, float(u), cfg.size)) for u in progress])


def _write_clip(path: Path, frames: np.ndarray, cfg: BenchConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(path, frames, fps=cfg.fps)


def make_temporal_bench(out_dir: str | Path, cfg: BenchConfig = BenchConfig()) -> dict:
    """Write the benchmark into ``out_dir``; returns the contents of ``classes.json``."""
    root = Path(out_dir)
    rng = np.random.default_rng(cfg.seed)
    rows: list[dict[str, str]] = []
    t0 = time.perf_counter()
    splits = ["train"] * cfg.train_per_class + ["val"] * cfg.val_per_class
    for pair in ORDER_PAIRS:
        for n, split in enumerate(splits):
            frames = clip_frames(pair.pose, _draw_params(rng, pair.forward), Backdrop(cfg.size, cfg.size, rng), cfg)
            for label, clip in ((pair.forward, frames), (pair.reverse, frames[::-1])):
                path = root / "videos" / label / f"{label}-{n:04d}.mp4"
                _write_clip(path, np.ascontiguousarray(clip), cfg)
                rows.append({"video_path": str(path.relative_to(root)), "label": label, "split": split})
        log.info("temporal bench: %s / %s done", pair.forward, pair.reverse)
    for label in APPEARANCE_CLASSES:
        for n, split in enumerate(splits):
            frames = clip_frames(_wobble, _draw_params(rng, label), Backdrop(cfg.size, cfg.size, rng), cfg)
            path = root / "videos" / label / f"{label}-{n:04d}.mp4"
            _write_clip(path, frames, cfg)
            rows.append({"video_path": str(path.relative_to(root)), "label": label, "split": split})
    order_labels = {c for p in ORDER_PAIRS for c in (p.forward, p.reverse)}
    _write_manifest(root / "manifest.csv", rows)
    _write_manifest(root / "order.csv", [r for r in rows if r["label"] in order_labels])
    _write_manifest(root / "appearance.csv", [r for r in rows if r["label"] not in order_labels])
    classes = {
        "order_pairs": [{"forward": p.forward, "reverse": p.reverse, "forward_shows": p.description}
                        for p in ORDER_PAIRS],
        "appearance": {c: f"a {c} wobbling sideways and back (palindromic), random colour" for c in APPEARANCE_CLASSES},
        "per_class": {"train": cfg.train_per_class, "val": cfg.val_per_class},
        "config": asdict(cfg),
        "chance": {"order_top1": 1 / (2 * len(ORDER_PAIRS)), "order_blind_ceiling_top1": 0.5,
                   "appearance_top1": 1 / len(APPEARANCE_CLASSES)},
    }
    (root / "classes.json").write_text(json.dumps(classes, indent=1))
    log.info("temporal bench: %d clips in %s (%.1f s)", len(rows), root, time.perf_counter() - t0)
    return classes


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["video_path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
