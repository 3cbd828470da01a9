"""TVTS: the task module (encoders + projections + sort module + losses) the trainer wraps.

    video --VideoViT(masked)--> tokens (B, 1+L, D) ----------------------------+
       [CLS] --Linear--> v (B, E)                                               |
    K transcripts --TextEncoder--> t_k (B, K, D_t) --sg--> SortHead(tokens, t) --> (B, K, K) -> L_sort
       mean_k ReLU-Linear(t_k) --> t (B, E)
    L_base = InfoNCE(v, t);   L = L_base + lambda * L_sort   (lambda = 2)

The loader shuffles the K transcripts and gives ``order[b, i]``, the true position of the transcript
in slot i; the global text embedding is a mean over slots, so the shuffle does not change it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from tvts_train.config import ModelConfig
from tvts_train.model.heads import SORT_HEADS, text_projection, video_projection
from tvts_train.model.losses import InfoNCE, sort_accuracy
from tvts_train.model.mae import load_imagemae_into
from tvts_train.model.text import TextEncoder
from tvts_train.model.video import VideoViT

log = logging.getLogger(__name__)


def _millions(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


class TVTS(nn.Module):
    """Turning to Video for Transcript Sorting: ``forward(batch) -> {"loss", "loss_base", "loss_sort", ...}``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.video = VideoViT(cfg.video)
        if cfg.video.init_checkpoint:
            load_imagemae_into(self.video, cfg.video.init_checkpoint, inflate=cfg.video.inflate)
        self.text = TextEncoder(cfg.text)
        self.video_proj = video_projection(self.video.width, cfg.embed_dim)
        self.text_proj = text_projection(self.text.width, cfg.embed_dim)
        # The "base" ablation has no sort module at all: parameters without gradients would only
        # confuse the data-parallel engine.
        self.sort_head = None if cfg.objective == "base" else SORT_HEADS[cfg.sort_head](
            width=self.video.width,
            text_width=self.text.width,
            num_transcripts=cfg.num_transcripts,
            depth=cfg.sort_depth,
            heads=cfg.sort_heads or cfg.video.heads,
            mlp_ratio=cfg.video.mlp_ratio,
            ln_eps=cfg.video.ln_eps,
            text_centre=cfg.sort_text_centre,
            text_norm=cfg.sort_text_norm,
        )
        self.contrastive = InfoNCE(cfg.temperature, gather=cfg.gather_negatives, grad=cfg.base_grad_scale)
        log.info("TVTS: video %.1fM, text %.1fM, sort head (%s) %.1fM parameters", _millions(self.video),
                 _millions(self.text), cfg.sort_head, _millions(self.sort_head) if self.sort_head else 0.0)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Downstream representation: the [CLS] after the final LayerNorm, no masking ``(B, D)``."""
        return self.video(video, mask_ratio=0.0)["cls"]

    def sort_tokens(self, video: dict[str, torch.Tensor] | None, text: torch.Tensor) -> torch.Tensor:
        """The video tokens the sort module attends to: all of them, or none for a text-only sorter."""
        if video is None or not self.cfg.sort_video:
            return text.new_zeros(text.shape[0], 0, self.video.width)  # (B, 0, D)
        return video["tokens"]  # (B, 1+L, D)

    def forward(self, batch: dict[str, torch.Tensor], mask_ratio: float | None = None) -> dict[str, torch.Tensor]:
        """Losses and sort metrics of one batch (see the batch contract in ``tvts_train.data``).

        ``mask_ratio`` defaults to ``cfg.mask_ratio`` in train and eval mode alike (the task is
        defined on masked clips); pass 0.0 to see every token.
        """
        cfg, order = self.cfg, batch["order"]
        ratio = cfg.mask_ratio if mask_ratio is None else mask_ratio
        # A text-only sorter trained on L_sort alone never looks at the video: do not encode it.
        video = None
        if cfg.sort_video or cfg.objective != "sort":
            video = self.video(batch["video"], mask_ratio=ratio)  # tokens (B, 1+L, D), cls (B, D)
        # With "sort" + stop-gradient no loss reaches the text encoder: skip building its graph.
        text_needs_grad = cfg.objective != "sort" or not cfg.sort_stop_grad
        with torch.set_grad_enabled(torch.is_grad_enabled() and text_needs_grad):
            text = self.text(batch["input_ids"], batch["attention_mask"])  # (B, K, D_t)

        nan = torch.full((), float("nan"), device=text.device)
        loss_base = nan
        if video is not None:
            # In the "sort" ablation L_base is only reported: no graph for it.
            with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.objective != "sort"):
                v = self.video_proj(video["cls"])  # (B, E)
                t = self.text_proj(text).mean(dim=1)  # (B, K, E) -> (B, E): order-invariant
                loss_base = self.contrastive(v, t)

        loss_sort, acc, acc_all = nan, nan, nan
        if self.sort_head is not None:
            sort_text = text.detach() if cfg.sort_stop_grad else text  # "sg" of Table 2
            logits = self.sort_head(self.sort_tokens(video, text), sort_text)
            loss_sort = self.sort_head.criterion(logits, order)
            with torch.no_grad():
                acc, acc_all = sort_accuracy(self.sort_head.decode(logits), order)

        if cfg.objective == "both":
            loss = loss_base + cfg.sort_weight * loss_sort
        elif cfg.objective == "base":
            loss = loss_base
        else:  # "sort": L = lambda * L_sort; L_base is still reported but trains nothing
            loss = cfg.sort_weight * loss_sort
        return {"loss": loss, "loss_base": loss_base, "loss_sort": loss_sort, "sort_acc": acc, "sort_acc_all": acc_all}
