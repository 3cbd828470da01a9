"""Linear probe: a single Linear(D, classes) on frozen, normed [CLS] features.

The features are the encoder's [CLS] after its final LayerNorm (already normalised, so no extra
BatchNorm as in MAE's probe). The head is trained with AdamW and cross-entropy on the train split
for a fixed number of epochs and scored top-1/top-5 on the evaluation split. A seed fixes the head's
initialisation and the shuffling (drawn from local generators, so the caller's global RNG is
untouched) and makes a run repeatable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeConfig:
    epochs: int = 100  # passes over the train features (cheap: the encoder is not run again)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4  # light: a linear head on LayerNormed features barely overfits
    seed: int = 0


def _init_head(dim: int, num_classes: int, seed: int, device: torch.device) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the global CPU RNG
        torch.manual_seed(seed)
        head = nn.Linear(dim, num_classes)
    return head.to(device)


def train_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: ProbeConfig) -> nn.Linear:
    """Fit ``Linear(D, num_classes)`` on ``(N, D)`` features and ``(N,)`` labels; returns the head."""
    device = features.device
    head = _init_head(features.shape[1], num_classes, cfg.seed, device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling order, on CPU for every device
    for epoch in range(cfg.epochs):
        order = torch.randperm(features.shape[0], generator=gen).to(device)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = F.cross_entropy(head(features[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch == 0 or (epoch + 1) % 10 == 0 or epoch + 1 == cfg.epochs:
            log.info("probe epoch %d/%d: train loss %.4f", epoch + 1, cfg.epochs, total / len(order))
    return head


@torch.no_grad()
def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}`` as fractions; K is clipped to the number of classes."""
    k_max = min(max(ks), logits.shape[1])
    hits = logits.topk(k_max, dim=1).indices == labels[:, None]  # (N, k_max)
    return {f"top{k}": hits[:, :min(k, k_max)].any(dim=1).float().mean().item() for k in ks}


@torch.no_grad()
def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Counts ``[true][predicted]`` of the top-1 predictions (rows: true class)."""
    pairs = labels.cpu() * num_classes + logits.argmax(dim=1).cpu()
    counts = torch.bincount(pairs, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).tolist()


@dataclass
class ProbeOutcome:
    metrics: dict[str, float]  # top1, top5 (evaluation split), train_top1; fractions
    confusion: list[list[int]]  # [true][predicted] counts on the evaluation split


def fit_and_score(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    eval_features: torch.Tensor,
    eval_labels: torch.Tensor,
    num_classes: int,
    cfg: ProbeConfig = ProbeConfig(),
) -> ProbeOutcome:
    """Train on one split, score on the other: metrics and the evaluation split's confusion matrix."""
    head = train_linear_probe(train_features, train_labels, num_classes, cfg)
    with torch.no_grad():
        logits = head(eval_features)
        metrics = topk_accuracy(logits, eval_labels)
        metrics["train_top1"] = topk_accuracy(head(train_features), train_labels, ks=(1,))["top1"]
    return ProbeOutcome(metrics, confusion_matrix(logits, eval_labels, num_classes))


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    eval_features: torch.Tensor,
    eval_labels: torch.Tensor,
    num_classes: int,
    cfg: ProbeConfig = ProbeConfig(),
) -> dict[str, float]:
    """Train on one split, score on the other: ``{"top1", "top5", "train_top1"}`` as fractions."""
    return fit_and_score(train_features, train_labels, eval_features, eval_labels, num_classes, cfg).metrics
