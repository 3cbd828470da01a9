"""Export the video encoder of a DeepSpeed checkpoint as one safetensors file.

The file holds the fp32 state dict of :class:`tvts_train.model.VideoViT`, under the names that
``VideoViT.state_dict()`` uses (the ``video.`` prefix of the TVTS module is removed), so::

    from safetensors.torch import load_file
    vit = VideoViT(video_cfg)
    vit.load_state_dict(load_file("RUN/video_encoder.safetensors"))   # strict: every key matches

Key names (D = width, N = (img_size / patch)^2 spatial patches, T' = frames / tubelet, i = block):

    ====================================  ===================  ==========================================
    key                                   shape                what
    ====================================  ===================  ==========================================
    patch_embed.proj.weight / .bias       (D, 3, 2, 16, 16)    cube embedding (Conv3d, kernel = stride)
    cls_token                             (1, 1, D)            learnable [CLS]
    pos_embed_spatial                     (1, 1 + N, D)        spatial table, row 0 belongs to [CLS]
    pos_embed_temporal                    (1, T', D)           temporal table (added over space)
    blocks.{i}.norm1.weight / .bias       (D,)                 pre-attention LayerNorm
    blocks.{i}.attn.qkv.weight / .bias    (3D, D) / (3D,)      fused q, k, v
    blocks.{i}.attn.proj.weight / .bias   (D, D) / (D,)
    blocks.{i}.norm2.weight / .bias       (D,)                 pre-MLP LayerNorm
    blocks.{i}.mlp.fc1.weight / .bias     (4D, D) / (4D,)
    blocks.{i}.mlp.fc2.weight / .bias     (D, 4D) / (D,)
    norm.weight / .bias                   (D,)                 final LayerNorm over all tokens
    ====================================  ===================  ==========================================

The block-internal names are those of ``tvts_train.model.layers.Block``; the table above is checked
by the tests against a fresh ``VideoViT``. The safetensors metadata carries ``format``
(``tvts-video-vit``), ``video_config`` (the ``VideoConfig`` as JSON, enough to rebuild the module with
:func:`load_video_encoder`), ``source`` (checkpoint folder and tag) and ``step``.

The weights are the fp32 master weights: for ZeRO 1-3 checkpoints they are consolidated from the
optimizer partitions (DeepSpeed's ``zero_to_fp32``), otherwise read from the module state. Every file
is read with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import logging
import os
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from tvts_train.checkpoint import latest_tag, load_weights_only

log = logging.getLogger(__name__)

PREFIX = "video."  # where the TVTS task module keeps its VideoViT
FORMAT = "tvts-video-vit"


class _WeightsOnlyTorch:
    """The ``torch`` module as seen by ``zero_to_fp32``, except that ``load`` is weights-only."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("weights_only", None)
        return load_weights_only(f, *args, **kwargs)


@contextmanager
def _zero_to_fp32_weights_only() -> Iterator[Any]:
    """DeepSpeed's consolidation module, reading its files with ``weights_only=True``.

    ``zero_to_fp32`` calls ``torch.load(..., weights_only=False)`` itself; swapping its module-level
    ``torch`` name for a proxy changes that one module for the duration, nothing global.
    """
    from deepspeed.utils import zero_to_fp32

    saved = zero_to_fp32.torch
    zero_to_fp32.torch = _WeightsOnlyTorch()
    try:
        yield zero_to_fp32
    finally:
        zero_to_fp32.torch = saved


def consolidated_state_dict(ckpt_dir: str | os.PathLike, tag: str | None = None) -> dict[str, torch.Tensor]:
    """The full fp32 state dict of the trained module (TVTS names) from a DeepSpeed checkpoint folder."""
    tag = tag or latest_tag(ckpt_dir)
    if tag is None:
        raise FileNotFoundError(f"{ckpt_dir}: no 'latest' file; pass --tag")
    folder = Path(ckpt_dir) / tag
    if glob.glob(str(folder / "*zero_pp_rank_*_optim_states.pt")):
        chatter = io.StringIO()  # zero_to_fp32 print()s its progress; keep it for DEBUG logs
        with _zero_to_fp32_weights_only() as z, redirect_stdout(chatter):
            state = z.get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)
        log.debug("zero_to_fp32: %s", chatter.getvalue().strip())
        return state
    states = load_weights_only(folder / "mp_rank_00_model_states.pt")
    return {k: v.float() for k, v in states["module"].items()}


def video_state_dict(full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VideoViT entries of a TVTS state dict, prefix removed, contiguous fp32."""
    out = {k[len(PREFIX) :]: v.detach().float().contiguous() for k, v in full.items() if k.startswith(PREFIX)}
    if not out:
        raise KeyError(f"no '{PREFIX}*' keys in the checkpoint; is it a TVTS checkpoint?")
    return out


def save_video_encoder(state: dict[str, torch.Tensor], path: str | os.PathLike, video_cfg: Any = None,
                       **metadata: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **{k: str(v) for k, v in metadata.items()}}
    if video_cfg is not None:
        meta["video_config"] = json.dumps(dataclasses.asdict(video_cfg))
    return write_safetensors(state, path, meta)


def write_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """``save_file`` through a temporary name, with the permissions of any other file of the run.

    safetensors creates its file 0600 whatever the umask, so teammates on a shared cluster could not
    read an exported encoder; it gets ``0666 & ~umask`` (0644 usually) like the run's other files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp.replace(path)  # a reader never sees half a file
    return path


def export_video_encoder(ckpt_dir: str | os.PathLike, out: str | os.PathLike, tag: str | None = None,
                         video_cfg: Any = None) -> Path:
    """Checkpoint folder -> ``out`` safetensors file of the video encoder; returns ``out``."""
    tag = tag or latest_tag(ckpt_dir)
    state = video_state_dict(consolidated_state_dict(ckpt_dir, tag))
    step = int(tag[len("step"):]) if tag and tag[len("step"):].isdigit() else -1  # our tags: step%08d
    path = save_video_encoder(state, out, video_cfg, source=f"{ckpt_dir}/{tag}", step=step)
    log.info("exported %d video-encoder tensors to %s", len(state), path)
    return path


def load_video_encoder(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Any]:
    """``(state_dict, VideoConfig or None)`` of an exported file; build ``VideoViT(cfg)`` and load it."""
    from safetensors import safe_open

    from tvts_train.config import VideoConfig

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    cfg = None
    if "video_config" in meta:
        values = json.loads(meta["video_config"])
        cfg = VideoConfig(**values)
    return load_file(str(path)), cfg
