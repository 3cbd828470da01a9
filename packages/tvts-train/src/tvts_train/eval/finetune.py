"""Full fine-tuning of the exported video encoder (paper Sec. 4, VideoMAE's recipe).

Paper: AdamW, layer-wise lr decay 0.75, 5 warmup epochs, 50 epochs, cosine decay, 2x3 test views;
top-1 SSV2 68.5, K400 78.8, UCF-101 95.1, HMDB-51 70.5. What this module does, and where it differs:

- Classifier: the encoder's [CLS] after its final LayerNorm -> dropout -> Linear(D, classes), the head
  initialised small (trunc-normal 0.02 times ``head_init_scale``, VideoMAE's init_scale). VideoMAE
  instead mean-pools the patch tokens and adds an fc_norm; [CLS] is what the paper's other downstream
  protocols (retrieval, linear probe) use, so fine-tuning starts from the same representation.
- Optimiser and schedule come from timm: ``create_optimizer_v2`` builds the layer-decay groups from
  :meth:`VideoClassifier.group_matcher` (stem = patch/cls/pos, one group per block; the final norm and
  the head share the top group, as BEiT/VideoMAE assign them), ``CosineLRScheduler`` warms up linearly
  and decays by cosine per update, scaling every group by its ``lr_scale``.
- ``lr`` is the lr actually used. VideoMAE quotes a base lr per 256 clips (5e-4 for ViT-B) and scales it
  linearly with the total batch; :func:`videomae_lr` does that, and the default is its value for the
  default batch of 8 (the CLI computes it from ``--ft-batch-size`` when ``--lr`` is not given).
- Mixup/CutMix (timm's ``Mixup``, label smoothing inside the soft targets) on clips flattened to
  ``(B, 3*T, H, W)``: timm slices the CutMix box out of dims 2 and 3, which for a 5-D clip would be
  time and height. Flattened, one box covers every frame (a spatial tube), as intended.
- Training clips: a random frame inside each of the M TSN segments, decoded with the short side at
  ``clip.short_side``, then one random resized crop (scale 0.08-1, ratio 3/4-4/3, VideoMAE's) and one
  optional horizontal flip shared by every frame. Not done: VideoMAE's RandAugment and random erasing.
  ``flip`` must be off for SSV2, whose labels name directions ("left to right").
- Test: the ``(V*S, 3, M, H, W)`` views of ``clips.decode_views`` (2x3 for the paper); the softmax
  scores are averaged over the views, as VideoMAE merges its test views. Evaluations during training
  use one centre view (VideoMAE's validation); the final one uses the given views.

An undecodable video is skipped and counted, in training (each epoch, logged once) and in evaluation;
it never becomes a blank clip. Randomness (init, dropout, drop path, crops, mixup) is seeded from
``seed`` through the global torch/numpy RNGs, as a training script does.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tvts_train._compat import ensure_torchvision_importable
from tvts_train.config import VideoConfig
from tvts_train.eval.clips import (
    ClipConfig,
    ClipDataset,
    ClipItem,
    LabelledVideo,
    Manifest,
    collate_clips,
    decode_train_frames,
    normalise,
    read_manifest,
    try_decode,
)
from tvts_train.eval.features import default_device, load_video_encoder
from tvts_train.eval.linear_probe import confusion_matrix, topk_accuracy
from tvts_train.model import VideoViT

ensure_torchvision_importable()  # timm and torchvision.transforms import torchvision

from timm.data import Mixup  # noqa: E402
from timm.data.mixup import mixup_target  # noqa: E402
from timm.loss import SoftTargetCrossEntropy  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402
from timm.scheduler import CosineLRScheduler  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

if TYPE_CHECKING:
    from tvts_train.eval.protocols import EvalRequest

log = logging.getLogger(__name__)

CLASSIFIER_FORMAT = "tvts-finetuned-classifier/1"  # metadata "format" of a saved classifier


def videomae_lr(batch_size: int, base: float = 5e-4) -> float:
    """VideoMAE's linear scaling rule: ``base * batch_size / 256`` (base lr quoted per 256 clips)."""
    return base * batch_size / 256


# VideoMAE quotes min_lr and warmup_lr (1e-6) per 256 clips too and scales them with the lr, so both
# stay this fraction of the lr whatever the batch.
VIDEOMAE_MIN_LR_RATIO = 1e-6 / 5e-4


@dataclass(frozen=True)
class FinetuneConfig:
    """VideoMAE's fine-tuning recipe (defaults: its ViT-B settings, batch 8)."""

    epochs: int = 50
    warmup_epochs: int = 5
    batch_size: int = 8  # training clips per update
    lr: float = videomae_lr(8)  # the lr used (head group); see videomae_lr for VideoMAE's scaling
    min_lr: float = videomae_lr(8, 1e-6)  # end of the cosine (times each group's lr_scale)
    warmup_lr: float = videomae_lr(8, 1e-6)  # start of the warmup (times each group's lr_scale)
    weight_decay: float = 0.05  # not on biases, norms, cls token and position tables
    layer_decay: float = 0.75  # block i of depth L trains at decay^(L-i) of lr, the stem at decay^(L+1)
    drop_path: float = 0.1  # stochastic depth of the last block (linear ramp from 0)
    head_dropout: float = 0.0  # dropout before the linear head (VideoMAE's fc_drop_rate)
    head_init_scale: float = 0.001  # head weights and bias start at this times their init
    label_smoothing: float = 0.1
    mixup: float = 0.8  # mixup alpha; mixing is on when mixup or cutmix is > 0 (as VideoMAE)
    cutmix: float = 1.0  # cutmix alpha
    mixup_prob: float = 1.0  # share of batches mixed; 0 turns mixing off
    mixup_switch_prob: float = 0.5  # share of mixed batches that use cutmix when both are on
    crop_scale: tuple[float, float] = (0.08, 1.0)  # random resized crop: area share of the frame
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # and aspect ratio
    flip: bool = True  # random horizontal flip; False for SSV2 (direction labels)
    grad_clip: float | None = None  # max gradient norm; None: no clipping (VideoMAE)
    seed: int = 0
    eval_every: int = 5  # epochs between single-view evaluations; 0: only the final multi-view one

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"fine-tuning needs epochs >= 1 and batch_size >= 1, got {self.epochs} and "
                             f"{self.batch_size}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr {self.min_lr} must lie in [0, lr={self.lr}]")

    @property
    def mixes(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0


# ----------------------------------------------------------------------------- model


class VideoClassifier(nn.Module):
    """The encoder's normed [CLS] -> dropout -> Linear(D, classes); every patch visible."""

    def __init__(self, encoder: VideoViT, num_classes: int, dropout: float = 0.0, head_init_scale: float = 1.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.width, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():  # a near-zero head keeps the first updates from wrecking the encoder
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        cls = self.encoder(video, mask_ratio=0.0)["cls"]  # (B, D), after the final LayerNorm
        return self.head(self.dropout(cls))  # (B, classes)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's layer grouping (a capture group is read as the layer number, hence ``(?:``); the
        parameters matched by neither pattern (final norm, head) form the top group."""
        return {"stem": r"^encoder\.(?:cls_token|pos_embed|patch_embed)", "blocks": r"^encoder\.blocks\.(\d+)"}

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay besides the 1-D ones (biases, norms), which timm skips itself."""
        return {"encoder.cls_token", "encoder.pos_embed_spatial", "encoder.pos_embed_temporal"}


def build_classifier(encoder: VideoViT, num_classes: int, cfg: FinetuneConfig) -> VideoClassifier:
    """A classifier on a copy of ``encoder`` rebuilt with ``cfg.drop_path`` (set at construction)."""
    copy = VideoViT(replace(encoder.cfg, drop_path=cfg.drop_path))
    copy.load_state_dict(encoder.state_dict(), strict=True)
    return VideoClassifier(copy, num_classes, cfg.head_dropout, cfg.head_init_scale)


# ----------------------------------------------------------------------------- optimisation


def build_optimizer(model: VideoClassifier, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW with one parameter group per (layer, decay / no decay), each carrying its ``lr_scale``."""
    return create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                               layer_decay=cfg.layer_decay, betas=(0.9, 0.999))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: FinetuneConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """Per-update schedule: linear warmup ``warmup_lr -> lr``, then cosine ``lr -> min_lr``; call
    ``step_update(s)`` before update ``s``. Every group gets the value times its ``lr_scale``."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)
    return CosineLRScheduler(optimizer, t_initial=max(1, total - warmup), lr_min=cfg.min_lr, warmup_t=warmup,
                             warmup_lr_init=cfg.warmup_lr, warmup_prefix=True, t_in_epochs=False)


def build_mixup(cfg: FinetuneConfig, num_classes: int) -> Mixup | None:
    if not cfg.mixes:
        return None
    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                 switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.label_smoothing,
                 num_classes=num_classes)


def mix_clips(mixup: Mixup, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup/CutMix on ``(B, 3, T, H, W)`` clips -> mixed clips and soft targets ``(B, classes)``."""
    if len(clips) % 2:  # timm pairs sample i with B-1-i and refuses odd batches (a skipped video makes one)
        return clips, mixup_target(labels, mixup.num_classes, 1.0, mixup.label_smoothing)
    flat, targets = mixup(clips.flatten(1, 2), labels)  # (B, 3*T, H, W): the box is cut from H, W
    return flat.view_as(clips), targets


# ----------------------------------------------------------------------------- training clips


class TrainClipDataset(Dataset):
    """One randomly sampled, cropped and flipped clip per video, ``(1, 3, M, crop, crop)``; decoding
    failures come back as a :class:`ClipItem` with an error (as :class:`clips.ClipDataset`)."""

    def __init__(self, videos: list[LabelledVideo], clip: ClipConfig, cfg: FinetuneConfig) -> None:
        self.videos = videos
        self.clip = clip
        self.seed = cfg.seed
        self.epoch = 0  # set by the training loop before each pass (see __getitem__)
        crop = v2.RandomResizedCrop(clip.crop, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True)
        # A plain (M, 3, h, w) tensor is one image batch to v2: the same box and flip for every frame.
        self.transform = v2.Compose([crop, v2.RandomHorizontalFlip()]) if cfg.flip else crop

    def __len__(self) -> int:
        return len(self.videos)

    def decode(self, path: Path) -> torch.Tensor:
        frames = decode_train_frames(path, self.clip)  # (M, h, w, 3) uint8; frames drawn from torch's RNG
        frames = self.transform(frames.permute(0, 3, 1, 2))  # (M, 3, crop, crop) uint8
        return normalise(frames.permute(0, 2, 3, 1), self.clip.mean, self.clip.std).unsqueeze(0)  # (1, 3, M, c, c)

    def __getitem__(self, i: int) -> ClipItem:
        video = self.videos[i]
        # The frame, crop and flip draws are fixed by (seed, epoch, video), not by which loader worker
        # decodes the video: results do not depend on --workers. torchvision's transforms draw from
        # torch's global RNG, hence a forked RNG seeded per item.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
            clip, error = try_decode(lambda: self.decode(video.path))
        return ClipItem(index=i, views=clip, label=video.label, path=str(video.path), error=error)


# ----------------------------------------------------------------------------- loop


def _note_failures(skipped: dict[str, str], failed: list[tuple[str, str]]) -> None:
    for path, error in failed:
        if path not in skipped:  # once per file, not once per epoch
            log.error("skipping unreadable video %s (%s)", path, error)
            skipped[path] = error


def _counts(total: int, skipped: dict[str, str]) -> dict[str, Any]:
    return {"encoded": total - len(skipped), "skipped": len(skipped),
            "skipped_files": [{"path": p, "error": e} for p, e in skipped.items()]}


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def evaluate(model: VideoClassifier, videos: list[LabelledVideo], clip: ClipConfig, device: torch.device,
             skipped: dict[str, str], batch_size: int = 8, num_workers: int = 0) -> dict[str, float]:
    """Top-1/top-5 of the view-averaged softmax scores; undecodable videos go to ``skipped``."""
    return topk_accuracy(*class_scores(model, videos, clip, device, skipped, batch_size, num_workers))


def class_scores(model: VideoClassifier, videos: list[LabelledVideo], clip: ClipConfig, device: torch.device,
                 skipped: dict[str, str], batch_size: int = 8, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """View-averaged softmax scores ``(N, classes)`` and labels ``(N,)`` of the decodable videos."""
    model.eval()
    loader = DataLoader(ClipDataset(videos, clip), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_clips)
    scores, labels = [], []
    for batch in loader:
        _note_failures(skipped, batch.failed)
        if batch.views is None:
            continue
        B, V = batch.views.shape[:2]
        flat = batch.views.flatten(0, 1)  # (B*V, 3, M, H, W)
        logits = []
        for start in range(0, len(flat), batch_size):
            with _autocast(device):
                logits.append(model(flat[start:start + batch_size].to(device)).float().cpu())
        probs = torch.cat(logits).softmax(dim=-1).view(B, V, -1)  # (B, V, classes)
        scores.append(probs.mean(dim=1))  # (B, classes)
        labels.append(batch.labels)
    if not scores:
        raise RuntimeError(f"none of the {len(videos)} evaluation videos could be decoded "
                           f"(first error: {next(iter(skipped.values()))})")
    return torch.cat(scores), torch.cat(labels)


def _train_epoch(model: VideoClassifier, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scheduler: CosineLRScheduler, mixup: Mixup | None, cfg: FinetuneConfig, device: torch.device,
                 first_step: int, skipped: dict[str, str]) -> tuple[float, int]:
    """One pass; returns (mean training loss per clip, clips trained on)."""
    model.train()
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    total, seen = 0.0, 0
    for i, batch in enumerate(loader):
        _note_failures(skipped, batch.failed)
        if batch.views is None:
            continue
        clips, labels = batch.views[:, 0].to(device), batch.labels.to(device)  # (B, 3, M, H, W), (B,)
        targets = labels
        if mixup is not None:
            clips, targets = mix_clips(mixup, clips, labels)  # targets: (B, classes) soft
        scheduler.step_update(first_step + i)  # the planned step: a failed batch does not shift the schedule
        with _autocast(device):
            logits = model(clips)  # (B, classes)
        loss = criterion(logits.float(), targets)
        value = loss.item()
        if not math.isfinite(value):  # before the update: the saved weights stay usable
            raise FloatingPointError(f"fine-tuning loss is {value} at step {first_step + i}: lower the lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        total += value * len(labels)
        seen += len(labels)
    return total / max(seen, 1), seen


def finetune(
    encoder: VideoViT,
    manifest: Manifest,
    train_split: str,
    eval_split: str,
    clip: ClipConfig,
    cfg: FinetuneConfig,
    device: torch.device,
    output: Path | None = None,
    eval_batch_size: int = 8,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Fine-tune a copy of ``encoder`` with a linear head on ``train_split``, score ``eval_split``.

    Returns ``{"metrics": {"top1", "top5"}, "history": [...], "videos": {...}}``. A history entry has the
    epoch, its mean training loss, the top group's lr at its last update and, when evaluated, ``eval_top1``
    (one centre view during training; the ``clip`` views at the last epoch, equal to ``metrics["top1"]``).
    ``videos`` counts the decoded and skipped files of each split. With ``output`` the classifier is
    saved there as safetensors (see :func:`load_classifier`). ``eval_batch_size`` videos per evaluation
    batch (and clips per forward), ``num_workers`` decoding processes for training and evaluation.
    """
    if (clip.frames, clip.crop) != (encoder.cfg.num_frames, encoder.cfg.img_size):
        raise ValueError(f"clips of {clip.frames} frames at {clip.crop}px do not fit the encoder "
                         f"({encoder.cfg.num_frames} frames at {encoder.cfg.img_size}px)")
    train, held_out = manifest.select(train_split), manifest.select(eval_split)
    for split, videos in ((train_split, train), (eval_split, held_out)):
        if not videos:
            raise ValueError(f"{manifest.source}: no videos in split {split!r}")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # timm's Mixup draws from numpy's global RNG
    model = build_classifier(encoder, len(manifest.classes), cfg).to(device)
    dataset = TrainClipDataset(train, clip, cfg)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=num_workers,
                        collate_fn=collate_clips,
                        generator=torch.Generator().manual_seed(cfg.seed))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(loader))
    mixup = build_mixup(cfg, len(manifest.classes))
    single_view = replace(clip, temporal_views=1, spatial_crops=1)
    train_skipped: dict[str, str] = {}
    eval_skipped: dict[str, str] = {}
    history = []
    log.info("fine-tuning on %d videos (%d classes), %d epochs of %d steps, lr %.3g, evaluating %d videos",
             len(train), len(manifest.classes), cfg.epochs, len(loader), cfg.lr, len(held_out))
    for epoch in range(cfg.epochs):
        dataset.epoch = epoch  # the workers of this pass get a copy with it
        loss, seen = _train_epoch(model, loader, optimizer, scheduler, mixup, cfg, device, epoch * len(loader),
                                  train_skipped)
        if seen == 0:
            raise RuntimeError(f"none of the {len(train)} training videos could be decoded "
                               f"(first error: {next(iter(train_skipped.values()))})")
        record = {"epoch": epoch + 1, "train_loss": loss, "lr": max(g["lr"] for g in optimizer.param_groups)}
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and epoch + 1 < cfg.epochs:
            record["eval_top1"] = evaluate(model, held_out, single_view, device, eval_skipped, eval_batch_size,
                                           num_workers)["top1"]
        log.info("fine-tune epoch %d/%d: %s", epoch + 1, cfg.epochs, record)
        history.append(record)
    scores, labels = class_scores(model, held_out, clip, device, eval_skipped, eval_batch_size, num_workers)
    metrics = topk_accuracy(scores, labels)
    history[-1]["eval_top1"] = metrics["top1"]
    log.info("fine-tuned: %s on %d x %d views of %s", metrics, clip.temporal_views, clip.spatial_crops, eval_split)
    if output is not None:
        save_classifier(model, manifest.classes, cfg, output)
    videos = {"train": _counts(len(train), train_skipped), eval_split: _counts(len(held_out), eval_skipped),
              "classes": len(manifest.classes)}
    confusion = {"classes": list(manifest.classes), "rows": "true class", "columns": "predicted class",
                 "matrix": confusion_matrix(scores, labels, len(manifest.classes))}
    return {"metrics": metrics, "history": history, "videos": videos, "confusion": confusion}


# ----------------------------------------------------------------------------- saving


def save_classifier(model: VideoClassifier, classes: tuple[str, ...], cfg: FinetuneConfig, path: Path) -> Path:
    """Weights (``encoder.*``, ``head.*``) plus the encoder config and class names as metadata."""
    from tvts_train.export import write_safetensors

    meta = {"format": CLASSIFIER_FORMAT, "video_config": json.dumps(asdict(model.encoder.cfg)),
            "classes": json.dumps(list(classes)), "finetune_config": json.dumps(asdict(cfg))}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = write_safetensors(state, path, meta)
    log.info("saved the fine-tuned classifier to %s", path)
    return path


def load_classifier(path: str | Path) -> tuple[VideoClassifier, list[str]]:
    """A classifier written by :func:`save_classifier` (in eval mode) and its class names."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{path} is not a fine-tuned classifier (format {meta.get('format')!r}); "
                         "it is written by `tvts-train eval finetune --save`")
    classes = json.loads(meta["classes"])
    model = VideoClassifier(VideoViT(VideoConfig(**json.loads(meta["video_config"]))), len(classes))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), classes


# ----------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class FinetuneOptions:
    train_split: str = "train"
    eval_split: str = "val"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # Where to save the fine-tuned classifier (safetensors). A str, not a Path: the options go into the
    # JSON result of ``tvts-train eval``.
    output: str | None = None


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    d = FinetuneConfig()
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="val")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    parser.add_argument("--lr", type=float, default=None,
                        help="lr used (default: VideoMAE's 5e-4 per 256 clips, scaled to --ft-batch-size)")
    parser.add_argument("--layer-decay", type=float, default=d.layer_decay)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--drop-path", type=float, default=d.drop_path)
    parser.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    parser.add_argument("--mixup", type=float, default=d.mixup, help="mixup alpha (0 with --cutmix 0: no mixing)")
    parser.add_argument("--cutmix", type=float, default=d.cutmix, help="cutmix alpha")
    parser.add_argument("--no-flip", action="store_true", help="no horizontal flips (SSV2: direction labels)")
    parser.add_argument("--ft-batch-size", type=int, default=d.batch_size, help="training clips per update")
    parser.add_argument("--eval-every", type=int, default=d.eval_every,
                        help="epochs between single-view evaluations (0: only the final one)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--save", type=Path, default=None, help="save the fine-tuned classifier here")


def finetune_options(args: argparse.Namespace) -> FinetuneOptions:
    lr = args.lr if args.lr is not None else videomae_lr(args.ft_batch_size)
    cfg = FinetuneConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.ft_batch_size, lr=lr,
                         min_lr=lr * VIDEOMAE_MIN_LR_RATIO, warmup_lr=lr * VIDEOMAE_MIN_LR_RATIO,
                         weight_decay=args.weight_decay, layer_decay=args.layer_decay, drop_path=args.drop_path,
                         label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix,
                         flip=not args.no_flip, eval_every=args.eval_every, seed=args.seed)
    return FinetuneOptions(train_split=args.train_split, eval_split=args.eval_split, finetune=cfg,
                           output=str(args.save) if args.save is not None else None)


def run_finetune(request: EvalRequest, options: FinetuneOptions) -> dict[str, Any]:
    encoder = load_video_encoder(request.encoder, request.config, num_frames=request.clip.frames)
    device = torch.device(request.device) if request.device else default_device()
    if (request.clip.temporal_views, request.clip.spatial_crops) != (2, 3):
        log.warning("testing on %d x %d views; the paper's protocol uses 2 x 3 (--temporal-views 2 "
                    "--spatial-crops 3)", request.clip.temporal_views, request.clip.spatial_crops)
    return finetune(encoder, read_manifest(request.manifest), options.train_split, options.eval_split,
                    request.clip, options.finetune, device, Path(options.output) if options.output else None,
                    eval_batch_size=request.batch_size, num_workers=request.num_workers)
