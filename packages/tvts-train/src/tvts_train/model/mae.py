"""Initialise the video ViT from an ImageMAE (image ViT) checkpoint.

ImageMAE's encoder is a timm ViT: ``patch_embed.proj`` (Conv2d), ``cls_token``, ``pos_embed``
(CLS + 14x14 rows), ``blocks.N.*`` and ``norm.*``. Onto the video ViT:

- the 2D patch kernel ``(D, 3, p, p)`` is inflated to the cube kernel ``(D, 3, t, p, p)``. The
  reference code *repeats* it over the t frames of a tubelet without dividing by t, so a static clip
  gives t times the image response; ``inflate="average"`` divides by t and keeps the response equal;
- ``pos_embed`` becomes the learnable spatial table (resized bicubically if the grid differs); the
  temporal table has no source and keeps its own initialisation (``model.video.temporal_init``);
- ``blocks.*`` and ``norm.*`` map key for key (our block uses timm's names). Fine-tuned MAE
  checkpoints replace ``norm`` by ``fc_norm`` (global pooling); that is used when ``norm`` is absent.

Strict by default: a shape mismatch, a video parameter left without a source (other than the
temporal table), or an unexpected encoder key is an error, because a silently half-loaded encoder
trains for days before anyone notices.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from tvts_train.model.video import VideoViT

log = logging.getLogger(__name__)

# Parameters of the video ViT that an image checkpoint cannot provide.
EXPECTED_MISSING = frozenset({"pos_embed_temporal"})
# Checkpoint keys that are part of MAE but not of an encoder (decoder, mask token, classifier).
_IGNORED = re.compile(r"^(decoder_|decoder\.|mask_token|head\.|head_dist\.)")


class CheckpointMismatch(RuntimeError):
    """The checkpoint does not fit the video ViT (and ``strict`` asked to refuse that)."""


@dataclass
class LoadReport:
    """What :func:`load_imagemae_into` did, key by key (our names)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # our parameters left as initialised
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no destination
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape vs ours"
    ignored: list[str] = field(default_factory=list)  # MAE-only keys (decoder, mask token, head)
    notes: list[str] = field(default_factory=list)  # inflation / interpolation performed

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)}, missing {self.missing}, unexpected {self.unexpected}, "
                f"mismatched {self.mismatched}, ignored {len(self.ignored)}; {'; '.join(self.notes)}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin`` (safe ``weights_only`` load) or ``.safetensors`` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        # Training checkpoints of the MAE code also pickle their argparse.Namespace of arguments: a
        # plain container, allowed explicitly; everything else stays under the weights-only loader.
        with torch.serialization.safe_globals([argparse.Namespace]):
            sd = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "module"):  # MAE saves {"model": ...}; others nest too
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise CheckpointMismatch(f"{path}: no state dict inside (got {type(sd).__name__})")
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def inflate_patch_kernel(weight: torch.Tensor, tubelet: int, mode: Literal["repeat", "average"]) -> torch.Tensor:
    """``(D, C, p, p)`` -> ``(D, C, t, p, p)``: the image kernel on each of the t frames."""
    w = weight.unsqueeze(2).repeat(1, 1, tubelet, 1, 1)  # (D, C, t, p, p)
    if mode == "average":
        w = w / tubelet
    elif mode != "repeat":
        raise ValueError(f"inflate must be 'repeat' or 'average', got {mode!r}")
    return w


def resize_spatial_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(1, 1 + G*G, D)`` -> ``(1, 1 + H'*W', D)``, bicubic on the patch rows; [CLS] row kept."""
    cls, patches = pos[:, :1], pos[:, 1:]
    side = int(round(patches.shape[1] ** 0.5))
    if side * side != patches.shape[1]:
        raise CheckpointMismatch(f"pos_embed has {patches.shape[1]} patch rows, not a square grid")
    D = patches.shape[-1]
    patches = patches.reshape(1, side, side, D).permute(0, 3, 1, 2)  # (1, D, G, G)
    patches = F.interpolate(patches.float(), size=grid, mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], D)  # (1, H'*W', D)
    return torch.cat([cls, patches.to(pos.dtype)], dim=1)


def _translate(sd: dict[str, torch.Tensor], model: VideoViT, inflate: str,
               report: LoadReport) -> dict[str, torch.Tensor]:
    """Checkpoint keys/values -> our keys/values (no shape checks yet)."""
    out: dict[str, torch.Tensor] = {}
    has_norm = "norm.weight" in sd
    for key, value in sd.items():
        if _IGNORED.match(key):
            report.ignored.append(key)
        elif key == "patch_embed.proj.weight" and value.dim() == 4:
            out[key] = inflate_patch_kernel(value, model.cfg.tubelet_size, inflate)  # type: ignore[arg-type]
            report.notes.append(f"patch kernel {tuple(value.shape)} inflated by {inflate} over "
                                f"{model.cfg.tubelet_size} frames")
        elif key == "pos_embed":
            if value.shape[1] != model.pos_embed_spatial.shape[1]:
                report.notes.append(f"pos_embed {tuple(value.shape)} resized to grid {model.grid}")
                value = resize_spatial_pos_embed(value, model.grid)
            out["pos_embed_spatial"] = value
        elif key.startswith("fc_norm.") and not has_norm:
            out[key.replace("fc_norm.", "norm.", 1)] = value
        else:
            out[key] = value
    return out


def load_imagemae_into(
    video_vit: VideoViT,
    path: str | Path,
    inflate: Literal["repeat", "average"] = "repeat",
    strict: bool = True,
) -> LoadReport:
    """Copy an ImageMAE ViT checkpoint into ``video_vit`` in place and report what happened.

    ``strict=True`` raises :class:`CheckpointMismatch` on any shape mismatch, any unexpected encoder
    key, or any parameter left without a source (except the temporal table). ``strict=False`` loads
    what fits and reports the rest; even then a checkpoint that matches nothing is an error.
    """
    report = LoadReport()
    ours = video_vit.state_dict()
    mapped = _translate(read_state_dict(path), video_vit, inflate, report)
    to_load = {}
    for key, value in mapped.items():
        if key not in ours:
            report.unexpected.append(key)
        elif value.shape != ours[key].shape:
            report.mismatched.append(f"{key}: {tuple(value.shape)} vs {tuple(ours[key].shape)}")
        else:
            to_load[key] = value
    report.loaded = sorted(to_load)
    report.missing = sorted(set(ours) - set(to_load))
    unexplained_missing = [k for k in report.missing if k not in EXPECTED_MISSING]
    if not to_load:
        raise CheckpointMismatch(f"{path}: no key matches the video ViT ({report.summary()})")
    if strict and (report.mismatched or report.unexpected or unexplained_missing):
        raise CheckpointMismatch(f"{path} does not fit the video ViT: {report.summary()}")
    video_vit.load_state_dict(to_load, strict=False)
    log.info("ImageMAE init from %s: %s", path, report.summary())
    return report
