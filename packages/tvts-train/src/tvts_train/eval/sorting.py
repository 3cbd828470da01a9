"""Transcript sorting on held-out windows, with the controls that show whether the video is used.

A pretraining run is loaded whole (video and text towers, sort module) from its checkpoint and
``config.yaml``; held-out SHARD files are read once in evaluation mode (segment-centre frames, centre
crop, the transcripts shuffled by a seeded generator) and every batch is scored under each control:

=============  =================================================================================
control        what the sort module sees
=============  =================================================================================
``real``       the clip as it is
``shuffled``   the clip with its frames put in a random order (a fresh permutation per clip)
``constant``   a clip of mid-grey frames (the normalisation mean): no visual information at all
``text_only``  no video tokens at all: the K transcripts alone
=============  =================================================================================

If the model reads the order off the video, its accuracy falls towards chance (1/K per transcript,
1/K! for all K) under ``shuffled`` and ``constant``; ``text_only`` shows what the transcripts alone
give this model. The video is masked as in training (the reference code validates masked too), with
one seeded mask per batch shared by every control, so the controls differ only in the pixels.
"""

from __future__ import annotations

import dataclasses

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tvts_train.config import ExperimentConfig, load_config
from tvts_train.model import TVTS
from tvts_train.model.losses import sort_accuracy

log = logging.getLogger(__name__)

CONTROLS = ("real", "shuffled", "constant", "text_only")


class SortEvalError(ValueError):
    """A run or held-out set that sort-eval cannot score (names it and why)."""


@dataclass(frozen=True)
class SortEvalOptions:
    controls: tuple[str, ...] = CONTROLS
    batch_size: int = 32
    mask_ratio: float | None = None  # None: the run's training ratio
    seed: int = 0  # masks and frame shuffles
    max_windows: int | None = None  # stop after this many windows (None: all)
    tag: str | None = None  # checkpoint tag (None: the latest)


def load_run(run: str | Path, tag: str | None = None) -> tuple[TVTS, ExperimentConfig]:
    """The whole TVTS module of a pretraining run (``RUN/config.yaml`` + ``RUN/checkpoints``), eval mode."""
    from tvts_train.export import consolidated_state_dict

    run = Path(run)
    config = run / "config.yaml"
    if not config.is_file():
        raise SortEvalError(f"{config} not found: {run} is not a run folder written by `tvts-train pretrain`")
    cfg = load_config(config)
    model = TVTS(cfg.model)
    state = consolidated_state_dict(run / "checkpoints", tag)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SortEvalError(f"{run}: checkpoint does not fit its config.yaml: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.eval(), cfg


def control_video(video: torch.Tensor, control: str, generator: torch.Generator) -> torch.Tensor:
    """``(B, 3, T, H, W)`` normalised clips as the control shows them (``text_only`` keeps them)."""
    if control in ("real", "text_only"):
        return video
    if control == "shuffled":
        B, T = video.shape[0], video.shape[2]
        perm = torch.stack([torch.randperm(T, generator=generator) for _ in range(B)])  # (B, T)
        index = perm.view(B, 1, T, 1, 1).expand_as(video).to(video.device)
        return video.gather(2, index)
    if control == "constant":
        return torch.zeros_like(video)  # the normalisation mean in every pixel
    raise ValueError(f"unknown control {control!r}; choose from {CONTROLS}")


@torch.no_grad()
def _score(model: TVTS, batch: dict[str, torch.Tensor], control: str, mask_ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-transcript right, all-K right) counts of one batch under ``control``."""
    text = model.text(batch["input_ids"], batch["attention_mask"])  # (B, K, D_t)
    video = None
    if control != "text_only" and model.cfg.sort_video:
        clip = control_video(batch["video"], control, torch.Generator().manual_seed(seed))
        mask_gen = torch.Generator().manual_seed(seed)  # the same mask under every control
        video = model.video(clip, mask_ratio=mask_ratio, generator=mask_gen)
    logits = model.sort_head(model.sort_tokens(video, text), text)
    acc, acc_all = sort_accuracy(model.sort_head.decode(logits), batch["order"])
    n = batch["order"].shape[0]
    return acc * n, acc_all * n


def evaluate_sorting(run: str | Path, data: str | Path, options: SortEvalOptions = SortEvalOptions(),
                     device: str | None = None) -> dict[str, Any]:
    """Sort accuracy of ``run`` on the windows of ``data`` under each control, with chance levels."""
    from tvts_train.data import HFTokenize, build_loader, normalize_video, resolve_num_workers

    unknown = [c for c in options.controls if c not in CONTROLS]
    if unknown:
        raise SortEvalError(f"unknown controls {unknown}; choose from {CONTROLS}")
    model, cfg = load_run(run, options.tag)
    if model.sort_head is None:
        raise SortEvalError(f"{run} was trained with objective 'base': it has no sort module to evaluate")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)
    # "auto" sizes a training loader; a held-out corpus may have fewer row groups than that: two at most
    workers = cfg.data.num_workers if cfg.data.num_workers != "auto" else min(2, resolve_num_workers("auto"))
    data_cfg = dataclasses.replace(cfg.data, num_workers=workers)
    loader = build_loader(data, data_cfg, batch_size=options.batch_size, train=False, epochs=1,
                          tokenize=HFTokenize(cfg.model.text))
    K = cfg.model.num_transcripts
    mask_ratio = cfg.model.mask_ratio if options.mask_ratio is None else options.mask_ratio
    totals = {c: torch.zeros(2, dtype=torch.float64) for c in options.controls}
    windows = 0
    for b, batch in enumerate(loader):
        inputs = {k: batch[k].to(dev) for k in ("input_ids", "attention_mask", "order")}
        inputs["video"] = normalize_video(batch["video"].to(dev))
        for c in options.controls:
            right, all_right = _score(model, inputs, c, mask_ratio, options.seed * 100_003 + b)
            totals[c] += torch.stack([right.double().cpu(), all_right.double().cpu()])
        windows += batch["order"].shape[0]
        if options.max_windows is not None and windows >= options.max_windows:
            break
    if windows == 0:
        raise SortEvalError(f"no readable windows in {data}")
    controls = {c: {"sort_acc": (t[0] / windows).item(), "sort_acc_all": (t[1] / windows).item()}
                for c, t in totals.items()}
    log.info("sort-eval %s on %d windows: %s", run, windows, controls)
    return {
        "run": str(run),
        "data": str(data),
        "windows": windows,
        "controls": controls,
        "chance": {"sort_acc": 1 / K, "sort_acc_all": 1 / math.factorial(K)},
        "mask_ratio": mask_ratio,
        "sort_video": cfg.model.sort_video,
        "objective": cfg.model.objective,
    }
