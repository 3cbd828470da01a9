"""Frozen video features for the downstream protocols: load the exported encoder, encode clips.

The representation is the paper's: the [CLS] token after the encoder's final LayerNorm, every patch
visible (mask ratio 0), no gradients. On CUDA the forward runs under bf16 autocast; on CPU it stays
fp32 (bf16 is several times slower on CPUs without bf16 units). Features come back as fp32 on the CPU.

The encoder file is ``RUN/video_encoder.safetensors`` written by the trainer's export: the VideoViT
``state_dict`` under its own key names. It is read with safetensors only (no pickle), and a file
whose keys or shapes differ from the configured VideoViT is refused with the lists of differences:
an encoder evaluated half-initialised would give plausible-looking, meaningless numbers. When the
export stored its ``video_config`` in the file's metadata, the architecture fields are checked against
the given config too (or taken from there when no config is given).

Another frame count than the encoder's (the Frozen retrieval protocol uses 4 frames, the paper's
encoder 16) is supported by resampling the temporal position table: :func:`resample_temporal_table`
interpolates linearly at the time centre of each new slot (``align_corners=False``, as timm resamples
position tables): a slot covers a span of the clip, so 4 frames (2 slots, centres at 1/4 and 3/4 of
the clip) read the 16-frame table (8 slots) at old positions 1.5 and 5.5. Every other weight
is independent of the frame count. The strict key and shape checks run against the file's own frame
count first; only then is the table resampled.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tvts_train.config import ExperimentConfig, ModelConfig, VideoConfig, load_config
from tvts_train.eval.clips import ClipConfig, ClipDataset, LabelledVideo, collate_clips
from tvts_train.model import CheckpointMismatch, VideoViT

log = logging.getLogger(__name__)

ENCODER_FILE = "video_encoder.safetensors"  # name of the export inside a run folder


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- loading

ConfigLike = str | Path | ExperimentConfig | ModelConfig | VideoConfig
# Fields that change what the encoder computes. The others (drop_path, grad_checkpointing,
# init_checkpoint, inflate) only matter in training and may differ between export and evaluation.
ARCHITECTURE_FIELDS = ("img_size", "num_frames", "patch_size", "tubelet_size", "in_chans", "width", "depth",
                       "heads", "mlp_ratio", "qkv_bias", "ln_eps")


def video_config_of(preset_or_config: ConfigLike) -> VideoConfig:
    """The VideoConfig inside a preset name, a YAML path or any of the config dataclasses."""
    if isinstance(preset_or_config, VideoConfig):
        return preset_or_config
    if isinstance(preset_or_config, ModelConfig):
        return preset_or_config.video
    if isinstance(preset_or_config, ExperimentConfig):
        return preset_or_config.model.video
    return load_config(preset_or_config).model.video


def encoder_file(path: str | Path) -> Path:
    """A ``.safetensors`` file as given, or ``video_encoder.safetensors`` inside a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / ENCODER_FILE
    if path.suffix != ".safetensors":
        # Pickle-based checkpoints (.pt/.pth/.bin) can run code when loaded; the export is safetensors.
        raise CheckpointMismatch(f"{path}: expected a .safetensors file or a run folder holding {ENCODER_FILE}")
    if not path.is_file():
        raise FileNotFoundError(f"no encoder file at {path}")
    return path


def exported_video_config(path: str | Path) -> dict[str, Any] | None:
    """The ``video_config`` the export stored in the file's metadata (see ``tvts_train.export``), if any."""
    from safetensors import safe_open

    with safe_open(str(encoder_file(path)), framework="pt") as fh:
        meta = fh.metadata() or {}
    return json.loads(meta["video_config"]) if "video_config" in meta else None


def resolve_video_config(path: str | Path, preset_or_config: ConfigLike | None = None) -> VideoConfig:
    """The configured VideoConfig, checked against the file's metadata; from the metadata alone if None.

    A head count or LayerNorm eps does not show in tensor shapes, so only the metadata can catch it.
    """
    stored = exported_video_config(path)
    if preset_or_config is None:
        if stored is None:
            raise CheckpointMismatch(f"{encoder_file(path)} stores no video_config: pass a preset or config")
        try:
            return VideoConfig(**stored)
        except TypeError as err:  # a field this version of VideoConfig does not know
            raise CheckpointMismatch(f"{encoder_file(path)}: stored video_config does not fit: {err}") from err
    cfg = video_config_of(preset_or_config)
    if stored is not None:
        differ = [f"{k}: file {stored[k]!r} vs config {getattr(cfg, k)!r}"
                  for k in ARCHITECTURE_FIELDS if k in stored and stored[k] != getattr(cfg, k)]
        if differ:
            raise CheckpointMismatch(f"{encoder_file(path)} was exported for another architecture: {differ}")
    return cfg


def _differences(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    shared = sorted(set(ours) & set(theirs))
    return {
        "missing": sorted(set(ours) - set(theirs)),
        "unexpected": sorted(set(theirs) - set(ours)),
        "mismatched": [f"{k}: file {tuple(theirs[k].shape)} vs model {tuple(ours[k].shape)}"
                       for k in shared if theirs[k].shape != ours[k].shape],
    }


def resample_temporal_table(table: torch.Tensor, num_slots: int) -> torch.Tensor:
    """``(1, T', D)`` temporal position table -> ``(1, num_slots, D)``; unchanged when T' = num_slots.

    Linear interpolation at slot centres: new slot j covers ``[j, j + 1) / num_slots`` of the clip and
    reads the old table at ``(j + 0.5) * T' / num_slots - 0.5`` (clamped to the end slots).
    """
    if table.shape[1] == num_slots:
        return table
    x = table.transpose(1, 2).float()  # (1, D, T')
    x = F.interpolate(x, size=num_slots, mode="linear", align_corners=False)  # (1, D, num_slots)
    return x.transpose(1, 2).to(table.dtype).contiguous()  # (1, num_slots, D)


def load_video_encoder(
    path: str | Path, preset_or_config: ConfigLike | None = None, num_frames: int | None = None
) -> VideoViT:
    """Build the configured VideoViT and load the exported weights into it; returns it in eval mode.

    ``preset_or_config`` None: the architecture stored in the file's metadata. Raises
    :class:`CheckpointMismatch` naming the missing, unexpected and mis-shaped keys (or the differing
    architecture fields) when the file does not fit the configuration exactly. ``num_frames`` (None:
    the configured count) builds the encoder for clips of that many frames, with the temporal
    position table resampled (see :func:`resample_temporal_table`).
    """
    from safetensors.torch import load_file

    file = encoder_file(path)
    cfg = resolve_video_config(file, preset_or_config)
    encoder = VideoViT(cfg)
    state = load_file(str(file))
    diff = _differences(encoder.state_dict(), state)
    log.info("encoder %s: %d tensors; missing %s, unexpected %s, mismatched %s",
             file, len(state), diff["missing"], diff["unexpected"], diff["mismatched"])
    if any(diff.values()):
        raise CheckpointMismatch(f"{file} does not fit the configured VideoViT: " +
                                 "; ".join(f"{k} {v}" for k, v in diff.items() if v))
    if num_frames is not None and num_frames != cfg.num_frames:
        encoder = VideoViT(replace(cfg, num_frames=num_frames))  # raises when frames do not tile into tubelets
        old = state["pos_embed_temporal"]
        state["pos_embed_temporal"] = resample_temporal_table(old, encoder.num_slots)
        log.info("encoder %s: %d frames -> %d; temporal table resampled %d -> %d slots",
                 file, cfg.num_frames, num_frames, old.shape[1], encoder.num_slots)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


# ----------------------------------------------------------------------------- encoding


def _check_clip_shape(encoder: VideoViT, clips: torch.Tensor) -> None:
    T, H, W = clips.shape[-3:]
    cfg = encoder.cfg
    if (T, H, W) != (cfg.num_frames, cfg.img_size, cfg.img_size):
        raise ValueError(f"clips of {T} frames at {H}x{W} do not fit the encoder "
                         f"({cfg.num_frames} frames at {cfg.img_size}x{cfg.img_size})")


@torch.no_grad()
def _encode(encoder: VideoViT, clips: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """``(N, 3, T, H, W)`` -> ``(N, D)`` fp32 CPU [CLS] features, ``batch_size`` clips per forward."""
    out = []
    for start in range(0, clips.shape[0], batch_size):
        chunk = clips[start:start + batch_size].to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            cls = encoder(chunk, mask_ratio=0.0)["cls"]  # (b, D), after the final LayerNorm
        out.append(cls.float().cpu())
    return torch.cat(out)


def extract_features(
    encoder: VideoViT,
    clips: torch.Tensor | Iterable[torch.Tensor],
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """[CLS] features ``(N, D)`` of clips ``(N, 3, T, H, W)`` or multi-view clips ``(N, V, 3, T, H, W)``.

    Multi-view features are the mean over the V views. That also averages the logits of any linear
    head put on top (a linear map commutes with the mean), so the probe needs no separate path.
    ``clips`` may also be an iterable of such tensors (e.g. batches from a loader).
    """
    device = torch.device(device) if device is not None else default_device()
    if not isinstance(clips, torch.Tensor):
        parts = [extract_features(encoder, c, batch_size, device) for c in clips]
        return torch.cat(parts) if parts else torch.empty(0, encoder.width)
    _check_clip_shape(encoder, clips)
    encoder.eval().to(device)
    if clips.dim() == 5:
        return _encode(encoder, clips, batch_size, device)
    N, V = clips.shape[:2]
    flat = _encode(encoder, clips.flatten(0, 1), batch_size, device)  # (N*V, D)
    return flat.view(N, V, -1).mean(dim=1)  # (N, D)


@dataclass
class EncodedVideos:
    features: torch.Tensor  # (N, D) fp32, one row per decoded video, in manifest order
    labels: torch.Tensor  # (N,) class indices
    paths: list[str]  # (N,) the decoded videos
    skipped: list[tuple[str, str]]  # (path, error) of the videos that could not be decoded


def encode_videos(
    encoder: VideoViT,
    videos: list[LabelledVideo],
    clip_cfg: ClipConfig,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    num_workers: int = 0,
) -> EncodedVideos:
    """Decode and encode labelled videos; unreadable ones are skipped, logged by name and counted."""
    if not videos:
        raise ValueError("no videos to encode")
    loader = DataLoader(ClipDataset(videos, clip_cfg), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate_clips)
    feats, index, skipped = [], [], []
    for batch in loader:
        for path, error in batch.failed:
            log.error("skipping unreadable video %s (%s)", path, error)
        skipped += batch.failed
        if batch.views is not None:
            feats.append(extract_features(encoder, batch.views, batch_size, device))  # (B, D)
            index.append(batch.index)
    if not feats:
        raise RuntimeError(f"none of the {len(videos)} videos could be decoded (first error: {skipped[0][1]})")
    if skipped:
        log.warning("skipped %d of %d videos that could not be decoded", len(skipped), len(videos))
    order = torch.cat(index)
    return EncodedVideos(
        features=torch.cat(feats),
        labels=torch.tensor([videos[i].label for i in order.tolist()], dtype=torch.long),
        paths=[str(videos[i].path) for i in order.tolist()],
        skipped=skipped,
    )
