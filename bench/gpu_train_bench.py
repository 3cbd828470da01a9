"""GPU step time of the paper-sized model: the project's recipe against the reference recipe.

What is timed: one forward + backward + AdamW step of the ``vit-b16-paper`` VIDEO ENCODER (ViT-B/16, 16 frames at
224, 75% masking per temporal slot: 1 + 392 tokens) + the listwise SORT HEAD (2 blocks over
K + 393 tokens) + the video projection, with L = InfoNCE(video, text) + 2 * L_sort, at the paper's
per-GPU batch of 24. Variants, in the same run on the same inputs:

- ``tvts``: bf16 autocast, ``F.scaled_dot_product_attention`` restricted to the flash kernel;
- ``reference``: the reference recipe: fp32 (TF32 off), attention as a materialised
  ``softmax(QK^T) V``, the same 75% masking;
- ``tvts-compile`` (``--compile``): ``tvts`` under ``torch.compile``.

The text encoder is left out by default: under the paper's stop-gradient the sort head sees detached
transcript features, so the video + sort graph is the same with random (B, K, 768) features in their
place, and the paper's DistilBERT needs local weights. ``--with-text`` adds a randomly initialised
DistilBERT (transformers' default DistilBertConfig: 6 layers, 768 wide, K x 50 tokens per clip),
trained through L_base as in the paper.

MFU = analytic matmul FLOPs per step / step time / peak dense bf16 TFLOP/s of the GPU (table below,
or ``--peak-tflops``). Every variant is divided by the same bf16 peak, so MFU ratios equal speed ratios.

Imports only torch, tvts_train.config and tvts_train.model (timm, transformers): no Ray, DeepSpeed or
decord, so it runs on a bare GPU machine. ``--device cpu --tiny-smoke`` checks that it executes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tvts_train.config import ModelConfig, load_config
from tvts_train.model import SORT_HEADS, InfoNCE, VideoViT, text_projection, video_projection
from tvts_train.model import layers as tvts_layers

log = logging.getLogger("gpu_train_bench")

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' datasheets. Matched as
# substrings of torch.cuda.get_device_name(), first match wins, so the specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),  # before "H200": the NVL part must not take the SXM figure
    ("H200", 989.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
)


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override is not None:
        return override
    for key, value in PEAK_BF16_TFLOPS:
        if key in device_name:
            return value
    return None


# ----------------------------------------------------------------------------- attention swap


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                    **_: Any) -> torch.Tensor:
    """softmax(QK^T / sqrt(d)) V with the (B, H, N, N) matrix materialised, as the reference's timm ViT."""
    if attn_mask is not None or is_causal:
        raise NotImplementedError("the benchmark's plain attention has no masks (the ViT uses none)")
    attn = (q * (scale or q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)  # (B, H, N, N)
    attn = attn.softmax(dim=-1)
    if dropout_p:
        attn = F.dropout(attn, dropout_p)
    return attn @ v  # (B, H, N, d)


class _PlainFunctional:
    """torch.nn.functional with scaled_dot_product_attention replaced; everything else delegated."""

    scaled_dot_product_attention = staticmethod(plain_attention)

    def __getattr__(self, name: str) -> Any:
        return getattr(F, name)


@contextlib.contextmanager
def attention_impl(kind: str, device: torch.device, allow_efficient: bool = False) -> Iterator[str]:
    """Run the project's Attention module with ``kind`` = "plain" or "flash"; yields what was used.

    The project's ``layers.Attention`` calls ``F.scaled_dot_product_attention`` through the module
    global ``F``, so swapping that global changes only the kernel and keeps the rest of its forward.
    ``allow_efficient`` also admits the memory-efficient kernel, for DistilBERT's padding mask (flash
    takes no mask); SDPA still prefers flash wherever it is eligible, as in the ViT.
    """
    if kind == "plain":
        saved = tvts_layers.F
        tvts_layers.F = _PlainFunctional()  # type: ignore[assignment]
        try:
            yield "plain softmax(QK^T)V"
        finally:
            tvts_layers.F = saved
        return
    if device.type != "cuda":  # the flash kernel is a CUDA kernel; on CPU SDPA picks its own
        yield "sdpa (cpu default)"
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [SDPBackend.FLASH_ATTENTION] + ([SDPBackend.EFFICIENT_ATTENTION] if allow_efficient else [])
    with sdpa_kernel(backends):  # raises "No available kernel" rather than fall back to the math kernel
        yield "sdpa flash" + (" (+ mem-efficient for the text mask)" if allow_efficient else "")


def flash_probe(cfg: ModelConfig, device: torch.device) -> str:
    """Whether the flash kernel takes the ViT's attention shape in bf16 (what the tvts variant relies on)."""
    if device.type != "cuda":
        return "not applicable (cpu)"
    from torch.nn.attention import SDPBackend, sdpa_kernel

    v = cfg.video
    tokens = token_counts(cfg)["video_encoder"]
    q = torch.randn(2, v.heads, tokens, v.width // v.heads, device=device, dtype=torch.bfloat16)
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(q, q, q)
    except RuntimeError as err:  # "No available kernel": flash does not take this shape/dtype/GPU
        return f"flash unavailable: {str(err).splitlines()[0][:200]}"
    return f"flash ok for (B, {v.heads}, {tokens}, {v.width // v.heads}) bf16"


# ----------------------------------------------------------------------------- the timed model


class VideoSortStep(nn.Module):
    """Video encoder + sort head + projections of TVTS, optionally with a random-init DistilBERT."""

    def __init__(self, cfg: ModelConfig, with_text: bool, text_attention: str) -> None:
        super().__init__()
        self.cfg = cfg
        self.video = VideoViT(cfg.video)
        self.text = build_distilbert(text_attention) if with_text else None
        text_width = self.text.config.dim if self.text is not None else cfg.video.width
        self.sort_head = SORT_HEADS[cfg.sort_head](
            width=cfg.video.width, text_width=text_width, num_transcripts=cfg.num_transcripts,
            depth=cfg.sort_depth, heads=cfg.sort_heads or cfg.video.heads, mlp_ratio=cfg.video.mlp_ratio,
            ln_eps=cfg.video.ln_eps)
        self.video_proj = video_projection(cfg.video.width, cfg.embed_dim)
        self.text_proj = text_projection(text_width, cfg.embed_dim)
        self.contrastive = InfoNCE(cfg.temperature, gather=False)  # one device: no negatives to gather

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.video(batch["video"], mask_ratio=self.cfg.mask_ratio)  # tokens (B, 1+L, D)
        if self.text is not None:
            B, K, L = batch["input_ids"].shape
            hidden = self.text(input_ids=batch["input_ids"].view(B * K, L),
                               attention_mask=batch["attention_mask"].view(B * K, L)).last_hidden_state
            text = hidden[:, 0].view(B, K, -1)  # (B, K, D_t) [CLS] per transcript
        else:
            text = batch["text_features"]  # (B, K, D_t) stand-in for the detached DistilBERT features
        v = self.video_proj(out["cls"])  # (B, E)
        t = self.text_proj(text).mean(dim=1)  # (B, E)
        logits = self.sort_head(out["tokens"], text.detach())  # (B, K, K), "sg" on the text side
        loss_sort = self.sort_head.criterion(logits, batch["order"])
        return self.contrastive(v.float(), t.float()) + self.cfg.sort_weight * loss_sort


def build_distilbert(attention: str) -> nn.Module:
    """Randomly initialised DistilBERT (transformers' default config = distilbert-base-uncased's shape)."""
    from transformers import AutoModel, DistilBertConfig

    impl = "eager" if attention == "plain" else "sdpa"
    return AutoModel.from_config(DistilBertConfig(), attn_implementation=impl)


def make_batch(cfg: ModelConfig, batch_size: int, with_text: bool, device: torch.device, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    v, K = cfg.video, cfg.num_transcripts
    batch = {
        "video": torch.randn(batch_size, v.in_chans, v.num_frames, v.img_size, v.img_size, generator=g),
        "order": torch.stack([torch.randperm(K, generator=g) for _ in range(batch_size)]),  # (B, K)
    }
    if with_text:
        L = 50  # the paper's max transcript length
        batch["input_ids"] = torch.randint(1000, 30000, (batch_size, K, L), generator=g)
        batch["attention_mask"] = torch.ones(batch_size, K, L, dtype=torch.long)
    else:
        batch["text_features"] = torch.randn(batch_size, K, v.width, generator=g)
    return {k: t.to(device) for k, t in batch.items()}


# ----------------------------------------------------------------------------- FLOPs


def block_flops(tokens: int, width: int, mlp_ratio: float) -> float:
    """Matmul FLOPs of one pre-norm transformer block forward (2 FLOPs per multiply-add)."""
    linear = 2 * tokens * width * width * (3 + 1 + 2 * mlp_ratio)  # qkv, proj, fc1 + fc2
    attention = 2 * 2 * tokens * tokens * width  # QK^T and AV over all heads
    return linear + attention


def step_flops(cfg: ModelConfig, with_text: bool) -> dict[str, float]:
    """Analytic matmul FLOPs per clip of one training step (forward + backward), by part.

    Backward costs 2x forward (input and weight gradients), hence x3, except the patch embedding:
    the video needs no gradient, so its Conv3d computes weight gradients only (x2). LayerNorm,
    softmax, GELU and the optimizer are not matmuls and are not counted.
    """
    v, K = cfg.video, cfg.num_transcripts
    slots, patches = v.num_frames // v.tubelet_size, (v.img_size // v.patch_size) ** 2
    kept = slots * max(1, round(patches * (1 - cfg.mask_ratio)))  # 392 at the paper's setting
    tokens = 1 + kept
    kernel = v.in_chans * v.tubelet_size * v.patch_size ** 2
    fwd = {
        "patch_embed": 2 * slots * patches * kernel * v.width,  # runs on all 1568 cubes, before masking
        "video_vit": v.depth * block_flops(tokens, v.width, v.mlp_ratio),
        "sort_head": cfg.sort_depth * block_flops(K + tokens, v.width, v.mlp_ratio) + 2 * K * v.width * K,
        "projections": 2 * v.width * cfg.embed_dim * (1 + K),
    }
    out = {name: (2 if name == "patch_embed" else 3) * f for name, f in fwd.items()}
    if with_text:
        L, d, layers, ffn = 50, 768, 6, 3072  # DistilBERT base
        per_seq = layers * (2 * L * d * d * 4 + 2 * 2 * L * d * ffn + 2 * 2 * L * L * d)
        out["text_distilbert"] = 3 * K * per_seq
    out["total"] = sum(out.values())
    return out


def token_counts(cfg: ModelConfig) -> dict[str, int]:
    v = cfg.video
    patches = (v.img_size // v.patch_size) ** 2
    video = 1 + (v.num_frames // v.tubelet_size) * max(1, round(patches * (1 - cfg.mask_ratio)))
    return {"video_encoder": video, "sort_head": cfg.num_transcripts + video}


# ----------------------------------------------------------------------------- one variant


@dataclass(frozen=True)
class Variant:
    name: str
    dtype: torch.dtype | None  # autocast dtype; None: plain fp32
    attention: str  # "flash" | "plain"
    compile: bool = False


VARIANTS = {
    "tvts": Variant("tvts", torch.bfloat16, "flash"),
    "reference": Variant("reference", None, "plain"),
    "tvts-compile": Variant("tvts-compile", torch.bfloat16, "flash", compile=True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(variant: Variant, cfg: ModelConfig, args: argparse.Namespace, device: torch.device,
                 flops_per_clip: float, peak: float | None) -> dict[str, Any]:
    """Median step time of one variant; a failure (OOM, no flash kernel) is reported, not raised."""
    torch.manual_seed(args.seed)
    # The reference trained in true fp32 on V100s, which have no TF32; keep H100 matmuls in fp32 too.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = VideoSortStep(cfg, args.with_text, variant.attention).to(device).train()
    step_fn: Callable[[dict], torch.Tensor] = torch.compile(model) if variant.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    batch = make_batch(cfg, args.batch_size, args.with_text, device, args.seed)
    autocast = (torch.autocast(device.type, dtype=variant.dtype) if variant.dtype is not None
                else contextlib.nullcontext())
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    try:
        with attention_impl(variant.attention, device, allow_efficient=args.with_text) as used:
            for i in range(args.warmup + args.steps):
                _sync(device)
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = step_fn(batch)
                loss.backward()
                opt.step()
                _sync(device)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
    except (RuntimeError, torch.OutOfMemoryError) as err:  # no flash kernel, OOM, compile failure
        log.error("variant %s failed: %s", variant.name, str(err).splitlines()[0])
        return {"variant": variant.name, "status": f"failed: {str(err).splitlines()[0][:300]}"}
    finally:
        del model, step_fn, opt, batch  # free this variant's memory before the next one
    step_s = statistics.median(times)
    achieved = flops_per_clip * args.batch_size / step_s / 1e12
    result = {
        "variant": variant.name, "status": "ok",
        "precision": "bf16 autocast" if variant.dtype is torch.bfloat16 else "fp32 (TF32 off)",
        "attention": used, "compiled": variant.compile, "loss_last": float(loss.detach()),
        "step_s_median": step_s, "step_s_p10": _quantile(times, 0.1), "step_s_p90": _quantile(times, 0.9),
        "clips_per_s": args.batch_size / step_s, "achieved_tflops": achieved,
        "mfu_vs_bf16_peak": achieved / peak if peak else None,
    }
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    log.info("%-13s %s, %s: %.1f ms/step, %.1f clips/s, %.1f TFLOP/s", variant.name, result["precision"],
             used, step_s * 1e3, result["clips_per_s"], achieved)
    return result


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


# ----------------------------------------------------------------------------- main


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "loadavg": list(os.getloadavg())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def model_config(args: argparse.Namespace) -> ModelConfig:
    if args.tiny_smoke:
        # Tiny shapes, only to show the script runs end to end; its numbers mean nothing.
        return load_config("tiny-random-text").model  # no text weights to carry to the GPU machine
    return load_config(args.preset).model


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu --tiny-smoke for a smoke run")
    cfg = model_config(args)
    flops = step_flops(cfg, args.with_text)
    info = machine(device)
    peak = peak_tflops(info.get("gpu", ""), args.peak_tflops)
    probe = flash_probe(cfg, device)
    log.info("attention probe: %s", probe)
    names = ["tvts", "reference"] + (["tvts-compile"] if args.compile else [])
    results = {n: time_variant(VARIANTS[n], cfg, args, device, flops["total"], peak) for n in names}
    ok = all(results[n]["status"] == "ok" for n in ("tvts", "reference"))
    speedup = results["reference"]["step_s_median"] / results["tvts"]["step_s_median"] if ok else None
    return {
        "benchmark": "video encoder + sort head fwd/bwd + AdamW step: TVTS recipe vs reference recipe",
        "machine": info,
        "settings": {"preset": "tiny (smoke)" if args.tiny_smoke else args.preset, "batch_size": args.batch_size,
                     "frames": cfg.video.num_frames, "img_size": cfg.video.img_size, "mask_ratio": cfg.mask_ratio,
                     "tokens": token_counts(cfg), "steps": args.steps, "warmup": args.warmup,
                     "with_text": args.with_text, "device": str(device),
                     "flash_probe": probe},
        "flops_per_clip": flops,
        "peak_bf16_tflops": peak,
        "variants": results,
        "speedup_tvts_over_reference": speedup,
        "notes": [
            "timed: forward + backward + AdamW step of ViT video encoder + listwise sort head + projections; "
            "median over steps after warm-up, CUDA synchronised around each step",
            "text encoder " + ("included: random-init DistilBERT (transformers default config)" if args.with_text else
                               "left out: random (B, K, 768) features stand in for the detached DistilBERT "
                               "[CLS] (the sort head gets them under stop-gradient); pass --with-text to include it"),
            "reference = fp32 with TF32 off (V100s have no TF32), materialised softmax(QK^T)V, same 75% masking",
            "MFU divides analytic matmul FLOPs (x3 fwd+bwd, x2 for the patch embedding) by the dense bf16 peak "
            "for every variant",
        ] + (["tiny smoke run: shapes are the tiny preset, numbers are not meaningful"] if args.tiny_smoke else []),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout only)")
    p.add_argument("--preset", default="vit-b16-paper")
    p.add_argument("--batch-size", type=int, default=24, help="paper: 24 clips per GPU")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak when the GPU is not in the table")
    p.add_argument("--compile", action="store_true", help="also time the tvts recipe under torch.compile")
    p.add_argument("--with-text", action="store_true", help="include a random-init DistilBERT text encoder")
    p.add_argument("--tiny-smoke", action="store_true", help="tiny preset, batch 2, 2 steps: checks it runs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.tiny_smoke:
        args.batch_size, args.steps, args.warmup = min(args.batch_size, 2), min(args.steps, 2), min(args.warmup, 1)
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    v = report["variants"]
    summary = {n: (f"{r['clips_per_s']:.1f} clips/s, MFU {r['mfu_vs_bf16_peak']:.1%}" if r.get("mfu_vs_bf16_peak")
                   else r.get("clips_per_s", r["status"])) for n, r in v.items()}
    print(json.dumps({"speedup_tvts_over_reference": report["speedup_tvts_over_reference"], **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
