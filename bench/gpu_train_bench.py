"""GPU step time of the paper-sized model: the project's recipe against the reference recipe.

What is timed: forward + backward + AdamW steps of the ``vit-b16-paper`` VIDEO ENCODER (ViT-B/16, 16 frames
at 224, 75% masking per temporal slot: 1 + 392 tokens) + the listwise SORT HEAD (2 blocks over
K + 393 tokens) + the video projection, with L = InfoNCE(video, text) + 2 * L_sort, at the paper's
per-GPU batch of 24 (``--batch-sizes 24,96,192`` sweeps micro-batches). Each variant runs ``--steps``
steps between two CUDA synchronisations, ``--windows`` times, on one batch already on the GPU (no loader):
steady-state throughput, the median window reported. Variants, in the same run on the same inputs:

- ``trainer``: the pretrainer's own recipe: a DeepSpeed engine built as ``tvts-train pretrain`` builds it
  (``--ds-config``, default infra/deepspeed/zero1.json: bf16 weights with fp32 master weights, ZeRO-1,
  fp32 gradient accumulation and reduction; torch's fused AdamW), SDPA flash attention. Needs DeepSpeed;
  reported as skipped where it is not installed;
- ``autocast``: bf16 autocast over fp32 weights, plain fused AdamW, SDPA flash: the same model without
  DeepSpeed (a bare-GPU figure; not what the trainer runs);
- ``reference``: the reference recipe: fp32 (TF32 off), attention as a materialised
  ``softmax(QK^T) V``, the same 75% masking;
- ``--compile``: ``autocast-compile``, the autocast variant under ``torch.compile``;
- ``--kept-cubes``: ``autocast-kept-cubes``, the patch projection applied to the kept cubes only
  (``model.video.embed_kept_only``: ~2% fewer FLOPs, no 1,568-token intermediate).

``--e2e-windows N`` adds an end-to-end figure: the trainer recipe fed by the real loader
(``tvts_train.data.build_loader``, JPEGs decoded on the GPU by nvJPEG where available) over N windows of
camera-like frames written as shards at the default storage settings, timed from the first batch
request to the last step's synchronisation.

The text encoder is left out by default: under the paper's stop-gradient the sort head sees detached
transcript features, so the video + sort graph is the same with random (B, K, 768) features in their
place, and the paper's DistilBERT needs local weights. ``--with-text`` adds a randomly initialised
DistilBERT (transformers' default DistilBertConfig: 6 layers, 768 wide, K x 50 tokens per clip),
trained through L_base as in the paper.

MFU = analytic matmul FLOPs per step / step time / peak dense bf16 TFLOP/s of the GPU (table below,
or ``--peak-tflops``). Every variant is divided by the same bf16 peak, so MFU ratios equal speed ratios.

Imports torch, tvts_train.config and tvts_train.model (timm, transformers) at the top: no Ray or decord, and
DeepSpeed only for the ``trainer`` variant, so the other variants run on a bare GPU machine.
``--device cpu --tiny-smoke`` checks that every branch executes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
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
TORCH_TF32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)  # torch's defaults
REPO = Path(__file__).resolve().parents[1]

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
        # all 1,568 cubes before masking; the 392 kept ones with model.video.embed_kept_only
        "patch_embed": 2 * (kept if v.embed_kept_only else slots * patches) * kernel * v.width,
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
    dtype: torch.dtype | None  # autocast dtype; None: plain fp32 (or the engine's own dtype for "trainer")
    attention: str  # "flash" | "plain"
    compile: bool = False
    kept_cubes: bool = False  # model.video.embed_kept_only
    deepspeed: bool = False  # the trainer's DeepSpeed engine


VARIANTS = {
    "trainer": Variant("trainer", None, "flash", deepspeed=True),
    "autocast": Variant("autocast", torch.bfloat16, "flash"),
    "reference": Variant("reference", None, "plain"),
    "autocast-compile": Variant("autocast-compile", torch.bfloat16, "flash", compile=True),
    "autocast-kept-cubes": Variant("autocast-kept-cubes", torch.bfloat16, "flash", kept_cubes=True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainerEngine:
    """The pretrainer's step, built the way ``tvts-train pretrain`` builds it (train.py): the resolved
    DeepSpeed JSON, torch's fused AdamW, ``deepspeed.initialize``; one rank."""

    def __init__(self, model: nn.Module, cfg_name: str, batch_size: int, ds_path: Path, device: torch.device) -> None:
        from tvts_train.config import load_config as load_experiment
        from tvts_train.train import compute_dtype, init_distributed, load_ds_json, make_optimizer, resolve_ds_config

        env, deepspeed = init_distributed(None)
        cfg = load_experiment(cfg_name, {"data.batch_size": batch_size, "train.grad_accum": 1})
        self.ds = resolve_ds_config(load_ds_json(ds_path), cfg, on_cpu=device.type != "cuda", allow_cpu_bf16=False)
        optimizer = make_optimizer(model.parameters(), cfg.optim, self.ds)
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=self.ds)
        self.dtype = compute_dtype(self.ds)
        self.env = env

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self.engine(batch)
        self.engine.backward(loss)
        self.engine.step()
        return loss


def time_variant(variant: Variant, cfg: ModelConfig, args: argparse.Namespace, device: torch.device,
                 flops_per_clip: float, peak: float | None, batch_size: int) -> dict[str, Any]:
    """Steady-state step time of one variant; a failure (OOM, no flash kernel, no DeepSpeed) is reported."""
    torch.manual_seed(args.seed)
    # The reference trained in true fp32 on V100s, which have no TF32: keep its matmuls in fp32 too. The
    # other variants run with torch's defaults, as the trainer does.
    reference = variant.name == "reference"
    torch.backends.cuda.matmul.allow_tf32 = False if reference else TORCH_TF32[0]
    torch.backends.cudnn.allow_tf32 = False if reference else TORCH_TF32[1]
    if variant.kept_cubes:
        cfg = dataclasses.replace(cfg, video=dataclasses.replace(cfg.video, embed_kept_only=True))
    model = VideoSortStep(cfg, args.with_text, variant.attention).to(device).train()
    batch = make_batch(cfg, batch_size, args.with_text, device, args.seed)
    if device.type == "cuda":
        gc.collect()  # a previous DeepSpeed engine sits in reference cycles (hooks that close over it)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    windows: list[float] = []
    engine = opt = step_fn = one_step = None
    try:
        if variant.deepspeed:
            try:
                engine = TrainerEngine(model, "tiny-random-text" if args.tiny_smoke else args.preset, batch_size,
                                       args.ds_config, device)
            except ImportError as err:
                return {"variant": variant.name, "status": f"skipped: DeepSpeed not importable here ({err})"}
            batch = {k: (t.to(engine.dtype) if t.is_floating_point() else t) for k, t in batch.items()}
            precision = f"{engine.dtype} weights (DeepSpeed {'bf16' if engine.ds['bf16']['enabled'] else 'fp32'}, " \
                        f"ZeRO-{engine.ds['zero_optimization']['stage']})"
            one_step = engine.step
        else:
            step_fn = torch.compile(model) if variant.compile else model
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0,
                                    fused=device.type == "cuda")
            autocast = (torch.autocast(device.type, dtype=variant.dtype) if variant.dtype is not None
                        else contextlib.nullcontext())
            precision = "bf16 autocast, fp32 weights" if variant.dtype is torch.bfloat16 else "fp32 (TF32 off)"

            def one_step(b: dict[str, torch.Tensor]) -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = step_fn(b)
                loss.backward()
                opt.step()
                return loss

        with attention_impl(variant.attention, device, allow_efficient=args.with_text) as used:
            for _ in range(args.warmup):
                loss = one_step(batch)
            for _ in range(args.windows):
                _sync(device)  # steady state: N steps between two synchronisations, no sync inside
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    loss = one_step(batch)
                _sync(device)
                windows.append((time.perf_counter() - t0) / args.steps)
    except (RuntimeError, torch.OutOfMemoryError) as err:  # no flash kernel, OOM, compile failure
        log.error("variant %s failed: %s", variant.name, str(err).splitlines()[0])
        return {"variant": variant.name, "status": f"failed: {str(err).splitlines()[0][:300]}"}
    finally:  # free this variant's memory before the next one
        model = step_fn = opt = batch = engine = one_step = None  # noqa: F841
    step_s = statistics.median(windows)
    achieved = flops_per_clip * batch_size / step_s / 1e12
    result = {
        "variant": variant.name, "status": "ok", "batch_size": batch_size, "precision": precision,
        "attention": used, "compiled": variant.compile, "kept_cubes": variant.kept_cubes,
        "loss_last": float(loss.detach().float()),
        "step_s_median": step_s, "step_s_windows": windows,
        "clips_per_s": batch_size / step_s, "achieved_tflops": achieved,
        "mfu_vs_bf16_peak": achieved / peak if peak else None,
    }
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    log.info("%-19s batch %d, %s, %s: %.1f ms/step, %.1f clips/s, %.1f TFLOP/s", variant.name, batch_size,
             precision, used, step_s * 1e3, result["clips_per_s"], achieved)
    return result


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
    names = ["trainer", "autocast", "reference"] + (["autocast-compile"] if args.compile else []) + \
        (["autocast-kept-cubes"] if args.kept_cubes else [])
    results: dict[str, dict[str, Any]] = {}
    for batch_size in args.batch_sizes:
        for name in names:
            if name == "reference" and batch_size != args.batch_sizes[0]:
                continue  # the fp32 baseline at the paper's batch only: larger ones add nothing but time
            variant = VARIANTS[name]
            per_clip = step_flops(_with_kept_cubes(cfg) if variant.kept_cubes else cfg, args.with_text)["total"]
            results[f"{name}@{batch_size}"] = time_variant(variant, cfg, args, device, per_clip, peak, batch_size)
    first = args.batch_sizes[0]
    ok = {n: r for n, r in results.items() if r["status"] == "ok"}
    ref = ok.get(f"reference@{first}")
    speedups = {n: r["clips_per_s"] / ref["clips_per_s"] for n, r in ok.items()
                if ref is not None and n != f"reference@{first}"}
    report: dict[str, Any] = {
        "benchmark": "video encoder + sort head fwd/bwd + AdamW steps: the trainer's recipe, autocast and the "
                     "reference recipe",
        "machine": info,
        "settings": {"preset": "tiny (smoke)" if args.tiny_smoke else args.preset, "batch_sizes": args.batch_sizes,
                     "frames": cfg.video.num_frames, "img_size": cfg.video.img_size, "mask_ratio": cfg.mask_ratio,
                     "tokens": token_counts(cfg), "steps_per_window": args.steps, "windows": args.windows,
                     "warmup": args.warmup, "with_text": args.with_text, "device": str(device),
                     "ds_config": str(args.ds_config), "flash_probe": probe},
        "timed_region": {
            "inputs": "one fixed batch already on the device (no loader, no host-to-device copy); the "
                      "end_to_end figure is the exception",
            "text_tower": "in (random-init DistilBERT)" if args.with_text else
                          "out: random (B, K, 768) features stand in for the detached text [CLS]",
            "step": "forward, backward, optimizer step (DeepSpeed engine.backward/step for 'trainer')",
            "synchronisation": f"{args.steps} steps between two CUDA synchronisations, {args.windows} windows, "
                               "median reported (per-window times in step_s_windows)",
        },
        "flops_per_clip": flops,
        "peak_bf16_tflops": peak,
        "variants": results,
        "clips_per_s_speedup_over_reference": speedups,
        "notes": [
            "trainer = tvts-train pretrain's own engine (the resolved DeepSpeed JSON, fused AdamW); autocast = bf16 "
            "autocast over fp32 weights without DeepSpeed (a bare-GPU figure, labelled: not what the trainer runs)",
            "reference = fp32 with TF32 off (V100s have no TF32), materialised softmax(QK^T)V, same 75% masking, "
            "at the first batch size only",
            "MFU divides analytic matmul FLOPs (x3 fwd+bwd, x2 for the patch embedding) by the dense bf16 peak "
            "for every variant; speedups compare clips/s",
        ] + (["tiny smoke run: shapes are the tiny preset, numbers are not meaningful"] if args.tiny_smoke else []),
    }
    if args.e2e_windows:
        try:
            report["end_to_end"] = time_end_to_end(cfg, args, device, flops["total"], peak)
        except (RuntimeError, OSError, ValueError) as err:  # keep the variants' figures whatever happens here
            log.error("end-to-end figure failed: %s", err)
            report["end_to_end"] = {"status": f"failed: {str(err).splitlines()[0][:300]}"}
    return report


def _with_kept_cubes(cfg: ModelConfig) -> ModelConfig:
    return dataclasses.replace(cfg, video=dataclasses.replace(cfg.video, embed_kept_only=True))


def time_end_to_end(cfg: ModelConfig, args: argparse.Namespace, device: torch.device, flops_per_clip: float,
                    peak: float | None) -> dict[str, Any]:
    """The trainer recipe fed by the real loader over shards of camera-like frames written here."""
    import tempfile

    from tvts_train.config import load_config as load_experiment
    from tvts_train.data import HFTokenize, build_loader, normalize_video, resolve_num_workers

    batch_size = args.batch_sizes[0]
    preset = "tiny-random-text" if args.tiny_smoke else args.preset
    exp = load_experiment(preset, {"data.batch_size": batch_size, "data.num_workers": args.e2e_workers})
    data = dataclasses.replace(exp.data, num_workers=resolve_num_workers(exp.data.num_workers))
    with tempfile.TemporaryDirectory(prefix="gpu-bench-shards-") as tmp:
        facts = write_camera_shards(Path(tmp), args.e2e_windows, K=cfg.num_transcripts,
                                    short_side=max(256, cfg.video.img_size), segments=cfg.video.num_frames)
        torch.manual_seed(args.seed)
        model = VideoSortStep(cfg, args.with_text, "flash").to(device).train()
        try:
            engine = TrainerEngine(model, preset, batch_size, args.ds_config, device)
        except ImportError as err:
            return {"status": f"skipped: DeepSpeed not importable here ({err})"}
        loader = build_loader(tmp, data, batch_size=batch_size, pin_memory=device.type == "cuda", device=device,
                              tokenize=HFTokenize(exp.model.text) if args.with_text else None)
        features = torch.randn(batch_size, cfg.num_transcripts, cfg.video.width, device=device, dtype=engine.dtype)
        keys = ["video", "order"] + (["input_ids", "attention_mask"] if args.with_text else [])

        def inputs_of(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
            # what the trainer's to_device does: copy, then normalise the uint8 video on the device
            out = {k: batch[k].to(device, non_blocking=True) for k in keys}
            out["video"] = normalize_video(out["video"], engine.dtype)
            if not args.with_text:
                out["text_features"] = features[: out["video"].shape[0]]
            return out

        batches, steps, clips = iter(loader), 0, 0
        with attention_impl("flash", device, allow_efficient=args.with_text):
            for _ in range(args.warmup):  # starts the workers and fills their prefetch
                engine.step(inputs_of(next(batches)))
            _sync(device)
            t0 = time.perf_counter()
            # long enough that the batches the workers prefetched during warm-up (2 each) are a small part
            for _ in range(max(args.steps * args.windows, 8 * max(1, data.num_workers))):
                inputs = inputs_of(next(batches))
                engine.step(inputs)
                steps, clips = steps + 1, clips + int(inputs["video"].shape[0])
            _sync(device)
        seconds = time.perf_counter() - t0
    achieved = flops_per_clip * clips / seconds / 1e12
    ship = loader.plan.spec.ship_jpeg
    return {"status": "ok", "shards": facts, "loader_workers": data.num_workers,
            "jpeg_decode": ("on the device (nvJPEG)" if device.type == "cuda" else "main process, CPU") if ship
            else "loader workers, CPU",
            "steps": steps, "clips": clips, "seconds": seconds, "clips_per_s": clips / seconds,
            "mfu_vs_bf16_peak": achieved / peak if peak else None,
            "timed": "from the first batch request after warm-up to the last step's synchronisation: loader, "
                     "host-to-device copy, JPEG decode, normalisation and the trainer's step"}


def write_camera_shards(root: Path, windows: int, K: int, short_side: int, segments: int = 16,
                        candidates: int = 3) -> dict[str, Any]:
    """SHARD files of ``windows`` windows of camera-like frames (CameraScene) at the default JPEG quality,
    without ffmpeg: the loader's input as a corpus would give it (16:9 frames, ``short_side`` high)."""
    import io

    from PIL import Image

    from tvts_data.config import FramesConfig
    from tvts_data.corpus import write_rows
    from tvts_data.schema import SHARD
    from tvts_data.synth.video import CameraScene

    quality = FramesConfig().jpeg_quality
    width = short_side * 16 // 9
    rows, n_frames = [], segments * candidates
    for w in range(windows):
        scene = CameraScene(width, short_side, seed=w)
        frames = []
        for i in range(n_frames):
            buf = io.BytesIO()
            Image.fromarray(scene.frame(i * 4)).save(buf, format="JPEG", quality=quality)
            frames.append(buf.getvalue())
        rows.append({"window_id": f"bench{w:05d}_0000", "video_id": f"bench{w:05d}", "window_index": 0,
                     "video_path": "", "duration": 20.0, "language": "en", "timing": "word",
                     "transcript_seconds": 3.0, "starts": [4.0 * k for k in range(K)],
                     "ends": [4.0 * k + 3.0 for k in range(K)],
                     "texts": [f"transcript {k} of window {w}" for k in range(K)],
                     "segments": segments, "candidates": candidates, "frame_format": "jpeg", "height": short_side,
                     "width": width, "frame_times": [0.1 * i for i in range(n_frames)], "frames": frames})
    nbytes = write_rows(rows, root / "shard-00000-000.parquet", SHARD, row_group_size=8)
    return {"windows": windows, "frame_size": [short_side, width], "jpeg_quality": quality,
            "bytes_per_window": nbytes / windows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout only)")
    p.add_argument("--preset", default="vit-b16-paper")
    p.add_argument("--batch-sizes", default="24", help="micro-batches per GPU, comma-separated (paper: 24)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed window (no synchronisation inside)")
    p.add_argument("--windows", type=int, default=3, help="timed windows; the median is reported")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda")
    p.add_argument("--ds-config", type=Path, default=REPO / "infra" / "deepspeed" / "zero1.json",
                   help="the DeepSpeed JSON of the trainer variant")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak when the GPU is not in the table")
    p.add_argument("--compile", action="store_true", help="also time the autocast recipe under torch.compile")
    p.add_argument("--kept-cubes", action="store_true", help="also time the patch projection of kept cubes only")
    p.add_argument("--with-text", action="store_true", help="include a random-init DistilBERT text encoder")
    p.add_argument("--e2e-windows", type=int, default=0, help="end-to-end figure over this many shard windows")
    p.add_argument("--e2e-workers", default="auto", help="loader workers of the end-to-end figure")
    p.add_argument("--tiny-smoke", action="store_true", help="tiny preset, batches <= 4, 2 steps: checks it runs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.e2e_workers = args.e2e_workers if args.e2e_workers == "auto" else int(args.e2e_workers)
    if args.tiny_smoke:
        args.batch_sizes = sorted({min(b, 4) for b in args.batch_sizes})[:2]
        args.steps, args.warmup, args.windows = min(args.steps, 2), min(args.warmup, 1), min(args.windows, 2)
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
    if "end_to_end" in report:
        summary["end_to_end"] = report["end_to_end"].get("clips_per_s", report["end_to_end"]["status"])
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
