"""Checkpoints: DeepSpeed's own files plus a small client state, always loaded with ``weights_only``.

Layout (``RUN/checkpoints/``, written by ``engine.save_checkpoint``)::

    latest                               the tag of the newest complete checkpoint
    step00000300/
      mp_rank_00_model_states.pt         module weights + client state (below)
      zero_pp_rank_<r>_mp_rank_00_optim_states.pt   one optimizer partition per rank (ZeRO 1-3)
      tvts.json                          step and world size, readable without loading any tensor

A checkpoint is written only when every rank's weights are finite; the newest ``keep`` are kept.

Client state (plain Python, lists and tensors only, so ``weights_only=True`` reads it)::

    step     optimizer steps done
    loader   one ShardLoader.state_dict() per rank (gathered on rank 0, which writes the file)
    rng      one {python, numpy, torch[, cuda]} per rank

DeepSpeed loads its files with ``weights_only=False``; :class:`WeightsOnlyCheckpointEngine` replaces
its loader so nothing in a checkpoint can run code. DeepSpeed pickles a few of its own classes into
optimizer files (loss scaler, ZeRO stage enum, fragment addresses); those, and only those, are
allowlisted in :func:`deepspeed_safe_globals`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

TAG_FORMAT = "step{:08d}"


def deepspeed_safe_globals() -> list[Any]:
    """DeepSpeed classes its checkpoint files pickle (checked with ``get_unsafe_globals_in_checkpoint``)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def load_weights_only(path: str | os.PathLike, map_location: Any = "cpu", **kwargs: Any) -> Any:
    """``torch.load`` with ``weights_only=True`` that also accepts DeepSpeed's few data classes."""
    kwargs["weights_only"] = True
    with torch.serialization.safe_globals(deepspeed_safe_globals()):
        return torch.load(path, map_location=map_location, **kwargs)


def use_weights_only_loading(engine: Any) -> None:
    """Make ``engine.load_checkpoint`` read every file with ``weights_only=True``."""
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location: Any = None) -> Any:
            return load_weights_only(path, map_location=map_location)

    current = engine.checkpoint_engine
    if type(current) is not TorchCheckpointEngine:
        # A decoupled/async engine configured in the JSON keeps its own loader; say so, do not guess.
        log.warning("checkpoint engine %s kept: its loads are not forced to weights_only", type(current).__name__)
        return
    replacement = WeightsOnlyCheckpointEngine.__new__(WeightsOnlyCheckpointEngine)
    replacement.__dict__.update(current.__dict__)  # same settings, only load() differs
    engine.checkpoint_engine = replacement


# ----------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch generator states as plain data (numpy's array becomes a tensor)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------------------- save / resume


def _gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (a list of one without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def latest_tag(ckpt_dir: str | os.PathLike) -> str | None:
    path = Path(ckpt_dir) / "latest"
    return path.read_text().strip() if path.is_file() else None


INFO_FILE = "tvts.json"


class PoisonedWeightsError(RuntimeError):
    """The weights are not finite: the checkpoint was not written (the last good one is named)."""


def weights_finite(engine: Any) -> bool:
    """Whether every rank's parameters are finite (a collective). Under ZeRO-3 a rank checks its shard."""
    ok = True
    for p in engine.module.parameters():
        t = getattr(p, "ds_tensor", None)  # ZeRO-3: this rank's partition; p.data is a placeholder
        t = p.data if t is None or t.numel() == 0 else t
        if t.numel() and not bool(torch.isfinite(t).all()):
            ok = False
            break
    flag = torch.tensor([1.0 if ok else 0.0], device=next(engine.module.parameters()).device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def save(engine: Any, ckpt_dir: str | os.PathLike, step: int, loader_state: dict[str, Any], keep: int = 3) -> str:
    """Save a checkpoint of ``step`` on every rank (a collective); returns its tag.

    Refuses (:class:`PoisonedWeightsError`) when any rank's weights are not finite, so ``latest`` always
    names weights a run can continue from; then keeps only the newest ``keep`` checkpoints."""
    tag = TAG_FORMAT.format(step)
    if not weights_finite(engine):
        raise PoisonedWeightsError(f"non-finite weights at step {step}: checkpoint {tag} not written. Last good "
                                   f"checkpoint: {latest_tag(ckpt_dir)} (continue from an older one with "
                                   "--resume --tag)")
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    client = {"step": step, "loader": _gather(loader_state), "rng": _gather(rng_state())}
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client)
    if _is_main():
        (Path(ckpt_dir) / tag / INFO_FILE).write_text(json.dumps(
            {"step": step, "world_size": world, "loader_workers": loader_state.get("num_workers")}))
        prune(ckpt_dir, keep)
    log.info("saved checkpoint %s/%s", ckpt_dir, tag)
    return tag


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def tags(ckpt_dir: str | os.PathLike) -> list[str]:
    """The checkpoint tags in the folder, oldest first."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("step") and p.name[4:].isdigit())


def prune(ckpt_dir: str | os.PathLike, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` checkpoints (never the one ``latest`` names); returns the deleted."""
    current = latest_tag(ckpt_dir)
    old = [t for t in tags(ckpt_dir)[:-keep] if t != current]
    for tag in old:
        shutil.rmtree(Path(ckpt_dir) / tag, ignore_errors=True)
    if old:
        log.info("deleted old checkpoints %s (train.keep_checkpoints=%d)", old, keep)
    return old


def checkpoint_info(ckpt_dir: str | os.PathLike, tag: str) -> dict[str, Any]:
    """What ``tvts.json`` says of a checkpoint (step, world size); {} for checkpoints written before it."""
    path = Path(ckpt_dir) / tag / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def resume(engine: Any, ckpt_dir: str | os.PathLike, rank: int, tag: str | None = None
           ) -> tuple[int, dict[str, Any]] | None:
    """Load checkpoint ``tag`` (default: the latest) into ``engine``; returns (step, this rank's loader
    state) or None when there is none.

    The caller restores the RNG states last (:func:`restore_rng`), after anything that draws numbers.
    """
    if tag is None and latest_tag(ckpt_dir) is None:
        return None
    path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag)
    if path is None:
        raise RuntimeError(f"could not load the checkpoint named in {ckpt_dir}/latest")
    if len(client["loader"]) <= rank:
        raise ValueError(f"{path} was written by {len(client['loader'])} ranks; this run has rank {rank}. "
                         "Resume with the same world size.")
    log.info("resumed from %s (step %d)", path, client["step"])
    return int(client["step"]), {"loader": client["loader"][rank], "rng": client["rng"][rank]}
