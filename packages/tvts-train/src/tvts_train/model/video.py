"""The video encoder of TVTS (paper Sec. 3.3).

A clip of M frames is cut into 2x16x16 cubes (a Conv3d with kernel = stride), giving
M/2 x H/16 x W/16 tokens in time-major order. Each token gets a divided space-time position
embedding (a spatial table shared over time plus a temporal table shared over space), a learnable
[CLS] token is prepended, and during pre-training a random 75% of the patches of every temporal slot
are dropped (no [MASK] token, no reconstruction). A plain pre-norm ViT then runs joint space-time
attention over the visible tokens; a final LayerNorm normalises all output tokens.

The temporal table starts non-zero by default (``VideoConfig.temporal_init``): the reference's zero
table makes the encoder exactly equivariant to permuting its temporal slots, so at initialisation it
cannot tell the sort module which slot came first, and the sort task sits at chance.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tvts_train.config import VideoConfig
from tvts_train.model.layers import Block, init_weights


class CubeEmbed(nn.Module):
    """Tubelet embedding: non-overlapping ``t x p x p`` cubes -> D-dim tokens, time-major."""

    def __init__(self, in_chans: int, width: int, tubelet_size: int, patch_size: int) -> None:
        super().__init__()
        size = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, width, kernel_size=size, stride=size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.proj(video)  # (B, D, T', H', W')
        return x.flatten(2).transpose(1, 2)  # (B, T'*H'*W', D): all patches of slot 0, then slot 1, ...

    def forward_kept(self, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The tokens of the cubes ``keep`` (B, L) only, equal to ``forward(video)[b, keep[b]]`` up to float
        rounding: the kept cubes are gathered into a batch of single-cube clips and go through the same
        Conv3d (through its forward, so ZeRO-3 gathers its weights as for the full path)."""
        B, C, T, H, W = video.shape
        t, p = self.proj.kernel_size[0], self.proj.kernel_size[1]
        cubes = video.reshape(B, C, T // t, t, H // p, p, W // p, p)
        cubes = cubes.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, -1, C * t * p * p)  # (B, T'*N, C*t*p*p)
        kept = torch.gather(cubes, 1, keep.unsqueeze(-1).expand(-1, -1, cubes.shape[-1]))  # (B, L, C*t*p*p)
        out = self.proj(kept.reshape(-1, C, t, p, p))  # (B*L, D, 1, 1, 1)
        return out.reshape(B, keep.shape[1], -1)  # (B, L, D)


def random_keep_per_slot(
    batch: int,
    num_slots: int,
    num_patches: int,
    keep_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Indices of the patch tokens to keep: ``round(N * keep_ratio)`` per temporal slot, at random.

    Every (sample, slot) draws its own subset, so different frames of a clip show different
    places. Returns a long tensor ``(B, T' * n_keep)`` of positions in the time-major token sequence
    ``t * N + s``, sorted within each slot (keeps a stable, readable order; attention does not care).
    """
    n_keep = max(1, round(num_patches * keep_ratio))  # never drop a whole slot
    # A seeded generator fixes the device the noise is drawn on; the indices then move to `device`.
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch, num_slots, num_patches, generator=generator, device=noise_device)
    keep = noise.argsort(dim=-1)[..., :n_keep].sort(dim=-1).values  # (B, T', n_keep) spatial indices
    offsets = torch.arange(num_slots, device=keep.device).view(1, num_slots, 1) * num_patches
    index = (keep + offsets).flatten(1)  # (B, T'*n_keep)
    return index if device is None else index.to(device)


def sincos_table(num_positions: int, width: int) -> torch.Tensor:
    """The 1D sine-cosine position table of MAE and VideoMAE, ``(num_positions, width)``: the first half
    of the channels ``sin(p * w_i)``, the second ``cos(p * w_i)``, with ``w_i = 10000 ** (-i / (width/2))``."""
    if width % 2:
        raise ValueError(f"a sine-cosine table needs an even width, got {width}")
    omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float64) / (width / 2))  # (D/2,)
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None]  # (P, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (P, D)


def temporal_table(cfg: VideoConfig, num_slots: int) -> torch.Tensor:
    """The initial temporal position table ``(1, T', D)`` that ``cfg.temporal_init`` names."""
    if cfg.temporal_init == "zero":
        return torch.zeros(1, num_slots, cfg.width)
    if cfg.temporal_init == "sincos":
        return sincos_table(num_slots, cfg.width).unsqueeze(0)
    std = cfg.temporal_init_std
    return nn.init.trunc_normal_(torch.empty(1, num_slots, cfg.width), std=std, a=-2 * std, b=2 * std)


class VideoViT(nn.Module):
    """ViT over cubes with divided space-time position embedding and per-slot random masking."""

    def __init__(self, cfg: VideoConfig) -> None:
        super().__init__()
        if cfg.img_size % cfg.patch_size or cfg.num_frames % cfg.tubelet_size:
            raise ValueError(f"{cfg.img_size}px/{cfg.num_frames} frames do not tile into cubes of "
                             f"{cfg.tubelet_size}x{cfg.patch_size}x{cfg.patch_size}")
        self.cfg = cfg
        self.width = cfg.width
        self.grid = (cfg.img_size // cfg.patch_size, cfg.img_size // cfg.patch_size)  # (H', W')
        self.num_slots = cfg.num_frames // cfg.tubelet_size  # T'
        self.num_patches = self.grid[0] * self.grid[1]  # N spatial patches per slot

        self.patch_embed = CubeEmbed(cfg.in_chans, cfg.width, cfg.tubelet_size, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        # Spatial table includes the [CLS] row (index 0), as in the ImageMAE table it is loaded from.
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, 1 + self.num_patches, cfg.width))
        # Temporal table: see VideoConfig.temporal_init (zero is the reference; it starts blind to order).
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, self.num_slots, cfg.width),
                                               requires_grad=cfg.temporal_learnable)
        # Stochastic depth ramps linearly from 0 to drop_path (plain floats: works on the meta device).
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.qkv_bias, drop_path=r, ln_eps=cfg.ln_eps)
            for r in rates
        )
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed_spatial, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        w = self.patch_embed.proj.weight  # like MAE: xavier on the flattened kernel
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        self.apply(init_weights)
        with torch.no_grad():
            self.pos_embed_temporal.copy_(temporal_table(self.cfg, self.num_slots))

    def pos_embed(self) -> torch.Tensor:
        """Position embedding of every patch token: spatial[1 + s] + temporal[t], ``(1, T'*N, D)``."""
        spatial = self.pos_embed_spatial[:, 1:, :].unsqueeze(1)  # (1, 1, N, D)
        temporal = self.pos_embed_temporal.unsqueeze(2)  # (1, T', 1, D)
        return (spatial + temporal).flatten(1, 2)  # (1, T'*N, D), time-major like the tokens

    def forward_features(
        self, video: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> normed tokens ``(B, 1 + L, D)``; L = T'*N, or T'*round(N*(1-mask_ratio))."""
        B = video.shape[0]
        expected = (self.cfg.in_chans, self.cfg.num_frames, self.cfg.img_size, self.cfg.img_size)
        if tuple(video.shape[1:]) != expected:
            raise ValueError(f"video {tuple(video.shape)} does not match the configured "
                             f"{self.cfg.num_frames} frames at {self.cfg.img_size}px")
        if mask_ratio and self.cfg.embed_kept_only:
            keep = random_keep_per_slot(B, self.num_slots, self.num_patches, 1.0 - mask_ratio, generator,
                                        video.device)
            pos = self.pos_embed().expand(B, -1, -1)
            x = self.patch_embed.forward_kept(video, keep) + torch.gather(
                pos, 1, keep.unsqueeze(-1).expand(-1, -1, pos.shape[-1]))  # (B, L, D)
        else:
            x = self.patch_embed(video) + self.pos_embed()  # (B, T'*N, D)
            if mask_ratio:  # None or 0: every token is visible (evaluation)
                keep = random_keep_per_slot(B, self.num_slots, self.num_patches, 1.0 - mask_ratio, generator,
                                            x.device)
                x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, L, D)
        cls = (self.cls_token + self.pos_embed_spatial[:, :1, :]).expand(B, -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + L, D)
        for blk in self.blocks:
            if self.cfg.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.norm(x)

    def forward(
        self, video: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        tokens = self.forward_features(video, mask_ratio, generator)  # (B, 1 + L, D)
        return {"tokens": tokens, "cls": tokens[:, 0]}
