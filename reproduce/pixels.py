"""An order-blind reference for the temporal bench: a linear probe on time-averaged pixels.

Each clip is decoded exactly as the encoders see it (8 segment-centre frames, short side 64, centre
crop 64, normalised), averaged over time, pooled to 16 x 16 and probed with the project's linear probe.
The time average cannot tell a clip from the same frames reversed, so on the order pairs its
direction accuracy measures how well the benchmark hides order from appearance (0.5 if it does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tvts_train.eval.clips import ClipConfig, decode_views, read_manifest
from tvts_train.eval.linear_probe import ProbeConfig, fit_and_score


def time_averaged_pixels(paths: list[Path], clip: ClipConfig) -> torch.Tensor:
    """``(N, 3 * 16 * 16)`` features: the clip's mean frame, average-pooled to 16 x 16."""
    feats = []
    for path in paths:
        views = decode_views(path, clip)  # (1, 3, T, H, W)
        mean_frame = views[0].mean(dim=1)  # (3, H, W): the order of the frames is gone
        feats.append(F.adaptive_avg_pool2d(mean_frame, 16).flatten())  # (768,)
    return torch.stack(feats)


def pixel_probe(manifest_path: Path, epochs: int, lr: float = 1e-3, batch_size: int = 256, frames: int = 8,
                size: int = 64) -> dict[str, Any]:
    """Probe result in the shape of ``tvts-train eval linear-probe``'s JSON (metrics, confusion)."""
    manifest = read_manifest(manifest_path)
    clip = ClipConfig(frames=frames, short_side=size, crop=size)
    train, val = manifest.select("train"), manifest.select("val")
    xtr = time_averaged_pixels([v.path for v in train], clip)
    xva = time_averaged_pixels([v.path for v in val], clip)
    ytr = torch.tensor([v.label for v in train])
    yva = torch.tensor([v.label for v in val])
    mean, std = xtr.mean(0), xtr.std(0).clamp(min=1e-6)  # standardised: the probe assumes normed inputs
    outcome = fit_and_score((xtr - mean) / std, ytr, (xva - mean) / std, yva, len(manifest.classes),
                            ProbeConfig(epochs=epochs, lr=lr, batch_size=batch_size))
    return {"protocol": "linear-probe on time-averaged pixels", "metrics": outcome.metrics,
            "confusion": {"classes": list(manifest.classes), "rows": "true class", "columns": "predicted class",
                          "matrix": outcome.confusion}}
