"""Projection heads and the transcript sort module (paper Sec. 3.1, Table 3).

The sort module concatenates the K transcript features (text first, as the paper reads "the first K
output representations") with every video output token ([CLS] included), marks each token with a
learnable type embedding (video / text, zero-initialised), and runs joint self-attention (pre-norm
blocks at the video width). The transcripts carry no position embedding, so the module is
permutation-equivariant in its text inputs: shuffling the transcripts shuffles the output rows the
same way and nothing else. Three readouts, one registry:

- ``listwise`` (paper): LayerNorm + Linear(D, K) per transcript -> ``(B, K, K)`` position logits;
- ``pairwise``: one logit per slot pair (i < j) from the concatenated pair features -> ``(B, K(K-1)/2)``;
- ``factorial``: one class per permutation from the flattened K features -> ``(B, K!)``.

In the paper both widths are 768 (DistilBERT and ViT-B) and the text features enter unchanged; when
the text width differs (the tiny presets) a Linear maps them to the video width first.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tvts_train.model.layers import Block, init_weights
from tvts_train.model.losses import (
    FactorialSortLoss,
    PairwiseSortLoss,
    SortLoss,
    pair_index,
    permutations_table,
)


def text_projection(text_width: int, embed_dim: int) -> nn.Module:
    """Transcript [CLS] -> contrastive space: ReLU then Linear (as the reference code)."""
    return nn.Sequential(nn.ReLU(), nn.Linear(text_width, embed_dim))


def video_projection(video_width: int, embed_dim: int) -> nn.Module:
    """Video [CLS] -> contrastive space: a single Linear."""
    return nn.Linear(video_width, embed_dim)


class SortHead(nn.Module):
    """K-way position classification for every transcript (the paper's sort module)."""

    VIDEO, TEXT = 0, 1  # rows of the type embedding

    def __init__(
        self,
        width: int,
        text_width: int,
        num_transcripts: int,
        depth: int = 2,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        ln_eps: float = 1e-6,
        text_centre: bool = False,
        text_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_transcripts = num_transcripts
        self.text_centre = text_centre
        text_in = nn.Identity() if text_width == width else nn.Linear(text_width, width)
        self.text_in = nn.Sequential(text_in, nn.LayerNorm(width, eps=ln_eps)) if text_norm else text_in
        self.type_embed = nn.Parameter(torch.zeros(2, width))  # zero-init: starts as plain attention
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, qkv_bias=True, ln_eps=ln_eps) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=ln_eps)  # on the K text positions only
        self.head = self._readout(width, num_transcripts)
        self.criterion = self._criterion()
        self.apply(init_weights)

    def _readout(self, width: int, K: int) -> nn.Module:
        return nn.Linear(width, K)

    def _criterion(self) -> nn.Module:
        return SortLoss()

    def encode(self, video_tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Joint attention over [text; video]: ``(B, 1+L, D)``, ``(B, K, D_text)`` -> ``(B, K, D)``."""
        K = text.shape[1]
        if self.text_centre:
            text = text - text.mean(dim=1, keepdim=True)  # what the K transcripts share cannot order them
        t = self.text_in(text) + self.type_embed[self.TEXT]  # (B, K, D)
        v = video_tokens + self.type_embed[self.VIDEO]  # (B, 1+L, D)
        x = torch.cat([t, v], dim=1)  # (B, K+1+L, D)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x[:, :K])  # (B, K, D)

    def forward(self, video_tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(video_tokens, text))  # (B, K, K): slot i, position j

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Predicted position of each slot ``(B, K)`` (argmax per transcript, as the paper scores it)."""
        return logits.argmax(dim=-1)


class PairwiseSortHead(SortHead):
    """Relative order of each transcript pair (i < j): binary logit "slot i comes before slot j"."""

    def _readout(self, width: int, K: int) -> nn.Module:
        return nn.Linear(2 * width, 1)

    def _criterion(self) -> nn.Module:
        return PairwiseSortLoss()

    def forward(self, video_tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.encode(video_tokens, text)  # (B, K, D)
        first, second = pair_index(h.shape[1])
        pairs = torch.cat([h[:, first], h[:, second]], dim=-1)  # (B, P, 2D), P = K(K-1)/2
        return self.head(pairs).squeeze(-1)  # (B, P)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Position of slot i = number of slots predicted to come before it."""
        K = self.num_transcripts
        first, second = pair_index(K)
        before = torch.zeros(logits.shape[0], K, K, dtype=torch.long, device=logits.device)  # [b, i, j]: i before j
        i_first = (logits > 0).long()  # (B, P)
        before[:, first, second] = i_first
        before[:, second, first] = 1 - i_first
        return before.sum(dim=1)  # (B, K): for each j, how many i precede it


class FactorialSortHead(SortHead):
    """One class per order of the K transcripts, from the concatenated K outputs (slot order matters)."""

    def _readout(self, width: int, K: int) -> nn.Module:
        return nn.Linear(K * width, math.factorial(K))

    def _criterion(self) -> nn.Module:
        return FactorialSortLoss()

    def forward(self, video_tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.encode(video_tokens, text)  # (B, K, D)
        return self.head(h.flatten(1))  # (B, K*D) -> (B, K!)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        table = permutations_table(self.num_transcripts).to(logits.device)  # (K!, K)
        return table[logits.argmax(dim=-1)]  # (B, K)


SORT_HEADS: dict[str, type[SortHead]] = {
    "listwise": SortHead,
    "pairwise": PairwiseSortHead,
    "factorial": FactorialSortHead,
}
