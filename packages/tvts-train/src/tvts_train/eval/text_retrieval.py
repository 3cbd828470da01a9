"""Text-to-video retrieval after fine-tuning: the Frozen-in-Time protocol as the TVTS paper uses it.

The pretrained video encoder (mask ratio 0, [CLS] after the final LayerNorm) and a BERT-family text
encoder ([CLS] of the last hidden state; paper: DistilBERT) are fine-tuned jointly with the
pretraining model's projections to a shared 256-d space (video: Linear; text: ReLU + Linear) and its
bidirectional InfoNCE on cosine similarity (temperature 0.05). The text encoder and the projections
start fresh: the exported artefact is the video encoder only. Paper (Table 6, 4 frames), R@1 / MedR:
MSR-VTT 34.6 / 3, DiDeMo 32.4 / 3, MSVD 45.9 / 2, LSMDC 17.2 / 17.

Manifest: CSV/JSONL/Parquet with ``video_path``, ``caption`` and an optional ``split``; several rows
may name one video (MSVD: ~40 captions a video). Relative paths are read from the manifest's folder.

Training: one sample per video and epoch with one of its captions drawn at random (so a batch never
holds the same video twice, which InfoNCE would count as a negative); TSN sampling with a random
frame in each of the M segments, a random ``crop`` square of the frames resized to ``short_side``,
ImageNet mean/std. AdamW (Frozen: lr 3e-5), an optional linear warmup, then a constant (Frozen) or
cosine learning rate. A video that cannot be decoded is skipped, named, counted and not tried again.

Evaluation: every test video once (segment-centre frames, centre crop, ``clips.decode_views``), every
test caption a query against all test videos. R@K are fractions, ranks are 1-based; a query's rank
counts the wrong videos whose similarity is >= that of its right one (ties count against the model,
so a collapsed model cannot score well). Video-to-text: a video's rank is the best rank among its
captions. Captions whose test video could not be decoded are dropped from the queries and counted.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tvts_train.config import OptimConfig, TextConfig, list_presets, load_config
from tvts_train.eval.clips import (
    SPLITS, ClipConfig, LabelledVideo, ManifestError, _read_rows, _split_of, decode_train_frames, normalise,
    require_split_column,
    try_decode,
)
from tvts_train.eval.features import default_device, encode_videos, load_video_encoder
from tvts_train.model import InfoNCE, TextEncoder, VideoViT, text_projection, video_projection
from tvts_train.schedule import build_scheduler

if TYPE_CHECKING:
    from tvts_train.eval.protocols import EvalRequest

log = logging.getLogger(__name__)

REFERENCE: dict[str, Any] = {
    "dataset": "MSR-VTT", "R@1": 0.346, "MedR": 3,
    "source": "TVTS paper Table 6, text-to-video, fine-tuned (Frozen protocol, 4 frames): R@1 MSR-VTT 34.6, "
              "DiDeMo 32.4, MSVD 45.9, LSMDC 17.2; MedR 3, 3, 2, 17",
}


@dataclass(frozen=True)
class TextRetrievalConfig:
    epochs: int = 10  # passes over the train videos; 0: only evaluate (fresh projections: near chance)
    batch_size: int = 32  # (video, caption) pairs per step, also videos/captions per eval forward
    lr: float = 3e-5  # Frozen's fine-tuning rate, for every parameter
    weight_decay: float = 0.0  # Frozen fine-tunes without decay
    warmup_steps: int = 0  # linear warmup from 0
    schedule: Literal["constant", "cosine"] = "constant"  # after warmup (Frozen: constant)
    temperature: float = 0.05  # InfoNCE tau, as in pretraining
    embed_dim: int = 256  # shared space of the projections
    max_text_len: int = 50  # tokens per caption (truncation and padding); DiDeMo paragraphs need more
    text_model: str = "distilbert-base-uncased"  # local folder, cached HF name, package alias or preset name
    eval_every: int = 0  # also evaluate after every N-th epoch (0: only after the last)
    seed: int = 0  # projections' init, shuffling, frame/crop/caption draws, dropout

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch_size {self.batch_size}: InfoNCE needs >= 2 (video, caption) pairs per step")
        if self.epochs < 0:
            raise ValueError(f"epochs {self.epochs} must be >= 0 (0: evaluate only)")


@dataclass(frozen=True)
class TextRetrievalOptions:
    train_split: str = "train"
    eval_split: str = "test"
    retrieval: TextRetrievalConfig = field(default_factory=TextRetrievalConfig)


def text_config(cfg: TextRetrievalConfig) -> TextConfig:
    """The text encoder of ``cfg.text_model``: a preset's ``model.text`` if it names one, else a model."""
    if cfg.text_model in list_presets() and not Path(cfg.text_model).exists():
        base = load_config(cfg.text_model).model.text
    else:
        base = TextConfig(name_or_path=cfg.text_model)
    return replace(base, max_len=cfg.max_text_len)


# ----------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class CaptionedVideos:
    """One split: each video once, and every caption with the index of its video."""

    videos: tuple[Path, ...]
    captions: tuple[str, ...]
    video_of: tuple[int, ...]  # (Q,) index into videos of each caption


@dataclass(frozen=True)
class CaptionManifest:
    source: Path
    rows: tuple[tuple[Path, str, str | None], ...]  # (video path, caption, split)

    def select(self, split: str | None) -> CaptionedVideos:
        """The rows of one split (``None``: every row), videos in first-appearance order."""
        if split is not None and split not in SPLITS:
            raise ManifestError(f"{self.source}: unknown split {split!r}; expected one of {SPLITS}")
        if split is not None:
            require_split_column(self.source, [row_split for _, _, row_split in self.rows], split)
        index: dict[Path, int] = {}
        captions, video_of = [], []
        for path, caption, row_split in self.rows:
            if split is None or row_split == split:
                video_of.append(index.setdefault(path, len(index)))
                captions.append(caption)
        if not captions:
            raise ManifestError(f"{self.source}: no captions in split {split!r}")
        return CaptionedVideos(tuple(index), tuple(captions), tuple(video_of))


def read_caption_manifest(path: str | Path) -> CaptionManifest:
    """Read a ``video_path, caption[, split]`` manifest (see the module docstring)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise ManifestError(f"{path}: no rows")
    out = []
    for i, row in enumerate(rows):
        missing = [c for c in ("video_path", "caption") if row.get(c) is None]
        if missing:
            raise ManifestError(f"{path} row {i}: missing {missing} (columns: video_path, caption[, split])")
        caption = str(row["caption"]).strip()
        if not caption or not str(row["video_path"]):
            raise ManifestError(f"{path} row {i}: empty {'caption' if not caption else 'video_path'}; "
                                "fill it or drop the row")
        out.append((path.parent / str(row["video_path"]), caption, _split_of(row.get("split"), path, i)))
    log.info("caption manifest %s: %d captions of %d videos", path, len(out), len({r[0] for r in out}))
    return CaptionManifest(source=path, rows=tuple(out))


# ----------------------------------------------------------------------------- metrics


def _best_positive_ranks(sims: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """``(Q, N)`` similarities and right answers -> ``(Q,)`` 1-based rank of each query's best right answer."""
    if not torch.isfinite(sims).all():
        raise ValueError("similarities contain NaN/inf: the model diverged")
    best = sims.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)  # (Q, 1)
    return 1 + ((sims >= best) & ~positive).sum(dim=1)  # ties with wrong answers count against


def _summary(ranks: torch.Tensor) -> dict[str, float]:
    r = ranks.double()
    recall = {f"R@{k}": (r <= k).double().mean().item() for k in (1, 5, 10)}
    # np.median's convention (mean of the two middle ranks), as Frozen reports MedR.
    return {**recall, "MedR": float(np.median(r.cpu().numpy())), "MeanR": r.mean().item()}


def _positives(sims: torch.Tensor, gt_video_index: torch.Tensor) -> torch.Tensor:
    Q, N = sims.shape
    gt = gt_video_index.to(sims.device).long()
    if gt.shape != (Q,) or Q == 0 or gt.min() < 0 or gt.max() >= N:
        raise ValueError(f"need one video index in [0, {N}) per caption, got {tuple(gt.shape)} for {Q} captions")
    return F.one_hot(gt, N).bool()  # (Q, N)


def text_to_video_metrics(sims: torch.Tensor, gt_video_index: torch.Tensor) -> dict[str, float]:
    """``sims (Q captions, N videos)``, ``gt_video_index (Q,)`` -> R@1/5/10 (fractions), MedR, MeanR."""
    return _summary(_best_positive_ranks(sims, _positives(sims, gt_video_index)))


def video_to_text_metrics(sims: torch.Tensor, gt_video_index: torch.Tensor) -> dict[str, float]:
    """Each video queries all captions; its rank is the best rank among its own captions."""
    positive = _positives(sims, gt_video_index).T  # (N, Q)
    if not positive.any(dim=1).all():
        raise ValueError("every video needs at least one caption")
    return _summary(_best_positive_ranks(sims.T, positive))


# ----------------------------------------------------------------------------- model


class RetrievalModel(nn.Module):
    """Video ViT + text encoder + the pretraining projections; ``forward -> {"loss", "batch_r1"}``."""

    def __init__(self, video: VideoViT, text_cfg: TextConfig, embed_dim: int = 256, temperature: float = 0.05):
        super().__init__()
        self.video = video
        self.text = TextEncoder(text_cfg)
        self.video_proj = video_projection(video.width, embed_dim)
        self.text_proj = text_projection(self.text.width, embed_dim)
        self.contrastive = InfoNCE(temperature, gather=False)  # one process: nothing to gather

    def project_video(self, cls: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video_proj(cls).float(), dim=-1)  # (B, D) -> (B, E) unit rows

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.project_video(self.video(clips, mask_ratio=0.0)["cls"])  # (B, 3, M, H, W) -> (B, E)

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        tokens = self.text.tokenize([[c] for c in captions])  # (B, 1, L) each
        device = self.video_proj.weight.device
        cls = self.text(tokens["input_ids"].to(device), tokens["attention_mask"].to(device))[:, 0]  # (B, D_t)
        return F.normalize(self.text_proj(cls).float(), dim=-1)  # (B, E)

    def forward(self, clips: torch.Tensor, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        v, t = self.encode_video(clips), self.encode_text(captions)  # (B, E) each
        with torch.no_grad():
            hits = (t @ v.T).argmax(dim=1) == torch.arange(len(captions), device=v.device)
        return {"loss": self.contrastive(v, t), "batch_r1": hits.float().mean()}


# ----------------------------------------------------------------------------- training clips


def decode_train_clip(path: Path, cfg: ClipConfig, rng: random.Random) -> torch.Tensor:
    """Random TSN frames, a random ``crop`` square, ImageNet normalisation: ``(3, M, crop, crop)``."""
    frames = decode_train_frames(path, cfg, rng)  # (M, h, w, 3) uint8
    top, left = rng.randint(0, frames.shape[1] - cfg.crop), rng.randint(0, frames.shape[2] - cfg.crop)
    return normalise(frames[:, top:top + cfg.crop, left:left + cfg.crop], cfg.mean, cfg.std)


class _TrainPairs(Dataset):
    """One (clip, caption) pair per usable video; draws are fixed by (seed, epoch, video), not by worker."""

    def __init__(self, data: CaptionedVideos, usable: list[int], clip: ClipConfig, seed: int, epoch: int):
        self.data, self.usable, self.clip, self.seed, self.epoch = data, usable, clip, seed, epoch
        self.captions: list[list[str]] = [[] for _ in data.videos]
        for caption, v in zip(data.captions, data.video_of):
            self.captions[v].append(caption)

    def __len__(self) -> int:
        return len(self.usable)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str, str | None]:
        v = self.usable[i]
        rng = random.Random(f"{self.seed}/{self.epoch}/{v}")
        caption = rng.choice(self.captions[v])
        clip, error = try_decode(lambda: decode_train_clip(self.data.videos[v], self.clip, rng))
        return v, clip, caption, error


def _collate_pairs(items: list[tuple[int, torch.Tensor | None, str, str | None]]) -> dict[str, Any]:
    ok = [it for it in items if it[1] is not None]
    return {"clips": torch.stack([it[1] for it in ok]) if ok else None,  # (B, 3, M, crop, crop)
            "captions": [it[2] for it in ok], "failed": [(it[0], it[3]) for it in items if it[1] is None]}


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: RetrievalModel, data: CaptionedVideos, clip: ClipConfig, batch_size: int,
             device: torch.device, num_workers: int = 0) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """-> metrics ``{"t2v", "v2t"}``, video counts, caption counts (captions of skipped videos dropped)."""
    model.eval()
    videos = [LabelledVideo(p, i, None) for i, p in enumerate(data.videos)]  # label = video index
    encoded = encode_videos(model.video, videos, clip, batch_size, device, num_workers)  # (N', D) [CLS]
    v = model.project_video(encoded.features.to(device))  # (N', E)
    row_of = {int(video): row for row, video in enumerate(encoded.labels.tolist())}
    kept = [(c, row_of[video]) for c, video in zip(data.captions, data.video_of) if video in row_of]
    t = torch.cat([model.encode_text([c for c, _ in kept[s:s + batch_size]])
                   for s in range(0, len(kept), batch_size)])  # (Q', E)
    sims = (t @ v.T).cpu()  # (Q', N') cosine
    gt = torch.tensor([row for _, row in kept])
    metrics = {"t2v": text_to_video_metrics(sims, gt), "v2t": video_to_text_metrics(sims, gt)}
    counts = {"encoded": len(encoded.paths), "skipped": len(encoded.skipped),
              "skipped_files": [{"path": p, "error": e} for p, e in encoded.skipped]}
    if len(kept) < len(data.captions):
        log.warning("%d captions of undecodable videos dropped from the queries", len(data.captions) - len(kept))
    return metrics, counts, {"queries": len(kept), "dropped": len(data.captions) - len(kept)}


# ----------------------------------------------------------------------------- fine-tune + evaluate


def text_to_video_retrieval(
    encoder: VideoViT,
    text_cfg: TextConfig | None,
    manifest_path: Path,
    train_split: str | None,
    eval_split: str | None,
    clip: ClipConfig,
    cfg: TextRetrievalConfig,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    eval_batch_size: int | None = None,
) -> dict[str, Any]:
    """Fine-tune ``encoder`` with a text tower on ``train_split``, then retrieve within ``eval_split``.

    ``text_cfg`` None: :func:`text_config` of ``cfg``. ``eval_batch_size`` (None: ``cfg.batch_size``):
    videos and captions per forward in the evaluation. Returns ``{"metrics": {"t2v", "v2t"},
    "history": [per epoch], "videos", "captions"}``. ``encoder`` is fine-tuned in place; the caller's
    global RNG is left untouched.
    """
    device = torch.device(device) if device is not None else default_device()
    manifest = read_caption_manifest(manifest_path)
    test = manifest.select(eval_split)
    train = manifest.select(train_split) if cfg.epochs > 0 else CaptionedVideos((), (), ())
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = RetrievalModel(encoder, text_cfg or text_config(cfg), cfg.embed_dim, cfg.temperature).to(device)
        history, failed = _fine_tune(model, train, clip, cfg, device, num_workers, test)
        metrics, eval_videos, eval_captions = evaluate(model, test, clip, eval_batch_size or cfg.batch_size,
                                                       device, num_workers)
    log.info("text-to-video %s, video-to-text %s", metrics["t2v"], metrics["v2t"])
    train_videos = {"used": len(train.videos) - len(failed), "skipped": len(failed),
                    "skipped_files": [{"path": str(train.videos[v]), "error": e} for v, e in failed.items()]}
    return {"metrics": metrics, "history": history, "videos": {"train": train_videos, "eval": eval_videos},
            "captions": {"train": len(train.captions), "eval": eval_captions}}


def _fine_tune(model: RetrievalModel, train: CaptionedVideos, clip: ClipConfig, cfg: TextRetrievalConfig,
               device: torch.device, num_workers: int, test: CaptionedVideos) -> tuple[list[dict], dict[int, str]]:
    """The training epochs; returns the per-epoch history and the undecodable train videos (index -> error)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * math.ceil(len(train.videos) / cfg.batch_size)
    # The pretrainer's schedules: linear warmup, then constant (Frozen) or cosine to 0.
    sched = build_scheduler(opt, OptimConfig(schedule=cfg.schedule, warmup_steps=cfg.warmup_steps), total_steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    failed: dict[int, str] = {}
    history: list[dict[str, Any]] = []
    for epoch in range(cfg.epochs):
        usable = [v for v in range(len(train.videos)) if v not in failed]  # a failed video is not retried
        order = torch.randperm(len(usable), generator=gen).tolist()
        loader = DataLoader(_TrainPairs(train, usable, clip, cfg.seed, epoch), batch_size=cfg.batch_size,
                            sampler=order, num_workers=num_workers, collate_fn=_collate_pairs)
        model.train()
        losses, r1s = [], []
        for batch in loader:
            for v, error in batch["failed"]:
                log.error("skipping unreadable train video %s (%s)", train.videos[v], error)
                failed[v] = error
            if len(batch["captions"]) < 2:  # a lone pair has no negative: no contrastive signal
                continue
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model(batch["clips"].to(device, non_blocking=True), batch["captions"])
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            sched.step()
            losses.append(out["loss"].item())
            r1s.append(out["batch_r1"].item())
        if len(failed) == len(train.videos):
            raise RuntimeError(f"none of the {len(train.videos)} train videos could be decoded "
                               f"(first error: {next(iter(failed.values()))})")
        if not losses:  # every batch had fewer than 2 decodable pairs: reporting this epoch would be a lie
            raise RuntimeError(f"epoch {epoch + 1} made no update: {len(usable) - len(failed)} usable train "
                               f"videos in batches of {cfg.batch_size} never gave 2 pairs; add train videos")
        entry: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "batch_r1": float(np.mean(r1s)),
                                 "lr": sched.get_last_lr()[0], "skipped_videos": len(failed)}
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and epoch + 1 < cfg.epochs:
            entry["t2v"] = evaluate(model, test, clip, cfg.batch_size, device, num_workers)[0]["t2v"]
        log.info("text retrieval epoch %d/%d: %s", epoch + 1, cfg.epochs, entry)
        history.append(entry)
    return history, failed


# ----------------------------------------------------------------------------- protocol contract


def add_text_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    d = TextRetrievalConfig()
    parser.add_argument("--text-model", default=d.text_model,
                        help="text encoder: local folder, cached Hugging Face name, or preset name")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="test")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="0: evaluate without fine-tuning")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default=d.schedule)
    parser.add_argument("--tr-batch-size", type=int, default=d.batch_size, help="(video, caption) pairs per step")
    parser.add_argument("--temperature", type=float, default=d.temperature)
    parser.add_argument("--embed-dim", type=int, default=d.embed_dim)
    parser.add_argument("--max-text-len", type=int, default=d.max_text_len, help="tokens per caption")
    parser.add_argument("--eval-every", type=int, default=d.eval_every, help="epochs between evaluations (0: last)")
    parser.add_argument("--seed", type=int, default=d.seed)


def text_retrieval_options(args: argparse.Namespace) -> TextRetrievalOptions:
    cfg = TextRetrievalConfig(
        epochs=args.epochs, batch_size=args.tr_batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, schedule=args.schedule, temperature=args.temperature,
        embed_dim=args.embed_dim, max_text_len=args.max_text_len, text_model=args.text_model,
        eval_every=args.eval_every, seed=args.seed)
    return TextRetrievalOptions(train_split=args.train_split, eval_split=args.eval_split, retrieval=cfg)


def run_text_retrieval(request: EvalRequest, options: TextRetrievalOptions) -> dict[str, Any]:
    # The request's frame count (Frozen: 4) may differ from the encoder's: its temporal table is resampled.
    encoder = load_video_encoder(request.encoder, request.config, num_frames=request.clip.frames)
    return text_to_video_retrieval(encoder, None, request.manifest, options.train_split, options.eval_split,
                                   request.clip, options.retrieval, request.device, request.num_workers,
                                   eval_batch_size=request.batch_size)
