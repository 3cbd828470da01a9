"""Learning-rate schedules as ``LambdaLR`` multipliers of the base lr.

The paper's recipe is ``step``: AdamW at 1e-4, multiplied by 0.1 at epochs 12 and 16 of 20, i.e. at
60% and 80% of training; no warmup. ``cosine`` and a linear ``warmup_steps`` ramp are options.
The multiplier of ``s`` is the one the (0-indexed) update ``s`` uses, so a milestone at fraction f
applies from update ``ceil(f * max_steps)``: with one update per epoch and 20 epochs, updates 12 and
16 are the first at 0.1x and 0.01x, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from tvts_train.config import OptimConfig

LrLambda = Callable[[int], float]


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def step_decay(milestones: tuple[float, ...], gamma: float, max_steps: int) -> LrLambda:
    """``gamma ** (number of milestones passed)``; milestones are fractions of ``max_steps``."""
    bounds = sorted(math.ceil(f * max_steps) for f in milestones)
    return lambda step: gamma ** sum(step >= b for b in bounds)


def cosine(max_steps: int, warmup_steps: int, floor: float = 0.0) -> LrLambda:
    """Half a cosine from 1 to ``floor`` over the steps after warmup."""
    span = max(1, max_steps - warmup_steps)

    def f(step: int) -> float:
        t = min(1.0, max(0, step - warmup_steps) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


def lr_lambda(cfg: OptimConfig, max_steps: int) -> LrLambda:
    """The multiplier for ``cfg.schedule`` with ``cfg.warmup_steps`` of linear warmup in front."""
    if cfg.schedule == "step":
        base = step_decay(cfg.step_milestones, cfg.step_gamma, max_steps)
    elif cfg.schedule == "cosine":
        base = cosine(max_steps, cfg.warmup_steps)
    elif cfg.schedule == "constant":
        base = lambda step: 1.0  # noqa: E731
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    return lambda step: _warmup(step, cfg.warmup_steps) * base(step)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, lr_lambda(cfg, max_steps))
