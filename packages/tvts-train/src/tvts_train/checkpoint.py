"""Checkpoints: DeepSpeed's own files plus a small client state, always loaded with ``weights_only``.

Layout (``RUN/checkpoints/``, written by ``engine.save_checkpoint``)::

    latest                               the tag of the newest complete checkpoint
    step00000300/
      mp_rank_00_model_states.pt         module weights + client state (below)
      zero_pp_rank_<r>_mp_rank_00_optim_states.pt   one optimizer partition per rank (ZeRO 1-3)

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

import logging
import os
import random
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


def save(engine: Any, ckpt_dir: str | os.PathLike, step: int, loader_state: dict[str, Any]) -> str:
    """Save a checkpoint of ``step`` on every rank (a collective); returns its tag."""
    tag = TAG_FORMAT.format(step)
    client = {"step": step, "loader": _gather(loader_state), "rng": _gather(rng_state())}
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client)
    log.info("saved checkpoint %s/%s", ckpt_dir, tag)
    return tag


def resume(engine: Any, ckpt_dir: str | os.PathLike, rank: int) -> tuple[int, dict[str, Any]] | None:
    """Load the latest checkpoint into ``engine``; returns (step, this rank's loader state) or None.

    The caller restores the RNG states last (:func:`restore_rng`), after anything that draws numbers.
    """
    if latest_tag(ckpt_dir) is None:
        return None
    path, client = engine.load_checkpoint(str(ckpt_dir))
    if path is None:
        raise RuntimeError(f"could not load the checkpoint named in {ckpt_dir}/latest")
    if len(client["loader"]) <= rank:
        raise ValueError(f"{path} was written by {len(client['loader'])} ranks; this run has rank {rank}. "
                         "Resume with the same world size.")
    log.info("resumed from %s (step %d)", path, client["step"])
    return int(client["step"]), {"loader": client["loader"][rank], "rng": client["rng"][rank]}
