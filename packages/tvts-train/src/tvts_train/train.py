"""The TVTS pretrainer: one DeepSpeed ZeRO engine, one streaming loader, one loop.

Runs the same way as one plain process (a single-rank gloo group is set up here), under ``torchrun``
and under the ``deepspeed`` launcher. ZeRO stage, precision, micro batch and gradient accumulation
come from the DeepSpeed JSON; a value written ``"auto"`` there is taken from the experiment config
(``data.batch_size``, ``train.grad_accum``, ``train.zero_stage``, ``train.precision``,
``optim.grad_clip``). The optimizer is a ``torch.optim.AdamW`` built here and the schedule a
``LambdaLR`` (``schedule.py``); a JSON ``optimizer``/``scheduler`` section is refused.

Outputs in ``RUN/``: ``config.yaml`` and ``ds_config.json`` (as resolved by the latest start),
``starts.jsonl`` (one line per start: the checkpoint it resumed and any config field it changed),
``metrics.csv``, ``tb/``
(TensorBoard), ``checkpoints/`` (see ``checkpoint.py``) and, when ``max_steps`` is reached,
``video_encoder.safetensors`` (see ``export.py``).

Test-only hooks: ``TVTS_FAULT_NAN_AT_STEP=N`` makes the loss of optimizer step N non-finite, to test
that a NaN stops the run before anything is saved after it; ``TVTS_FAULT_BLOWUP_AT_STEP=N`` makes a
weight infinite right after update N while the loss was still finite, to test that such weights are
never checkpointed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from tvts_train import checkpoint
from tvts_train.config import ExperimentConfig, to_dict
from tvts_train.data import normalize_video

log = logging.getLogger(__name__)

MODEL_KEYS = ("video", "input_ids", "attention_mask", "order")
METRICS = ("loss", "loss_base", "loss_sort", "sort_acc", "sort_acc_all")
CSV_FIELDS = ("step", "epoch", *METRICS, "lr", "samples_per_s", "data_wait_s", "step_time_s",
              "samples", "skipped_samples", "skipped_units", "bad_files", "skipped_steps")
FAULT_NAN_ENV = "TVTS_FAULT_NAN_AT_STEP"  # test-only, see the module docstring
FAULT_BLOWUP_ENV = "TVTS_FAULT_BLOWUP_AT_STEP"  # test-only, see the module docstring


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped before the optimizer step and saved nothing after it."""


class RunSetupError(ValueError):
    """A run that cannot start as asked (bad DeepSpeed JSON, corpus that does not fit the config, resume
    that does not match the checkpoint...). Raised before anything is written; the CLI exits 2."""


# Fields that may change when a run is resumed: they change what is logged or kept, not what is trained.
RESUMABLE_CHANGES = ("train.log_every", "train.ckpt_every", "train.keep_checkpoints", "train.output_dir",
                     "data.shards", "data.cache_dir", "data.decode")


@dataclass(frozen=True)
class RunOptions:
    """What the command line adds to the experiment config."""

    deepspeed_config: Path | None  # None: every DeepSpeed setting from the experiment config
    data: str
    output: Path
    resume: bool = False
    resume_tag: str | None = None  # --resume --tag T: continue from checkpoint T instead of the latest
    stop_after: int | None = None  # optimizer steps in this invocation, then checkpoint and exit
    allow_cpu_bf16: bool = False
    local_rank: int | None = None  # from the deepspeed launcher's --local_rank


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class RunResult:
    step: int
    finished: bool  # reached max_steps
    export: Path | None


# ----------------------------------------------------------------------------- setup


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _import_deepspeed(on_cpu: bool) -> Any:
    """Import deepspeed for this machine, without its ~55 s shared-memory op build on CPU.

    ``DS_ACCELERATOR=cpu`` must be set before the import or DeepSpeed probes for CUDA. Its CPU comm
    backend JIT-compiles a shared-memory all-reduce at the first ``init_distributed``; that op serves
    only ``inference_all_reduce`` (training collectives go through torch.distributed/gloo), so it is
    marked incompatible in DeepSpeed's op table (a cached dict DeepSpeed reads, and documents as
    editable) and never built.
    """
    if on_cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    if on_cpu:
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    return deepspeed


def init_distributed(local_rank: int | None) -> tuple[DistEnv, Any]:
    """Join (or create) the process group; returns the rank layout and the deepspeed module."""
    on_cpu = not torch.cuda.is_available()
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        # A plain `python`/`tvts-train` process: a group of one (DeepSpeed would look for MPI).
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT") or str(_free_port()),
                          RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    if local_rank is not None:
        os.environ["LOCAL_RANK"] = str(local_rank)
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cpu") if on_cpu else torch.device("cuda", local)
    if not on_cpu:
        torch.cuda.set_device(device)  # before the process group: NCCL binds to the current device
    deepspeed = _import_deepspeed(on_cpu)
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo" if on_cpu else "nccl")
    if on_cpu and "OMP_NUM_THREADS" not in os.environ:
        # Ranks on one CPU host share its cores; each taking all of them oversubscribes (the deepspeed
        # launcher, unlike torchrun, does not set OMP_NUM_THREADS).
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or dist.get_world_size())
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    return DistEnv(dist.get_rank(), dist.get_world_size(), local, device), deepspeed


def load_ds_json(path: Path | None) -> dict[str, Any]:
    """The DeepSpeed JSON as a dict; :class:`RunSetupError` naming the file when it cannot be read.

    No file is an empty JSON: every value is ``"auto"``, i.e. taken from the experiment config
    (``train.zero_stage``, ``train.precision``, ``data.batch_size``, ``train.grad_accum``).
    """
    if path is None:
        return {}
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunSetupError(f"DeepSpeed config {path} not found (see infra/deepspeed/*.json)") from None
    except json.JSONDecodeError as err:
        raise RunSetupError(f"DeepSpeed config {path} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise RunSetupError(f"DeepSpeed config {path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def resolve_ds_config(raw: dict[str, Any], cfg: ExperimentConfig, on_cpu: bool, allow_cpu_bf16: bool) -> dict[str, Any]:
    """Fill ``"auto"`` values from ``cfg``, refuse optimizer sections, keep CPU runs in fp32."""
    ds = json.loads(json.dumps(raw))  # a deep copy
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise RunSetupError(f"DeepSpeed JSON has a '{key}' section; remove it: tvts-train builds AdamW "
                                "and the lr schedule from the experiment config (optim.*)")
    auto = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip or 0.0,
    }
    for key, value in auto.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
        elif ds[key] != value and not (key == "gradient_clipping" and not cfg.optim.grad_clip):
            # Two sources for one number: the run would silently not be what --set or the preset says.
            raise RunSetupError(f"DeepSpeed JSON sets {key}={ds[key]} but the experiment config says {value}: "
                                f'write "auto" in the JSON (the shipped ones do) or make the two agree')
    if ds.get("train_batch_size") == "auto":
        del ds["train_batch_size"]  # DeepSpeed derives it from micro batch x accumulation x world size
    zero = ds.setdefault("zero_optimization", {})
    if zero.get("stage", "auto") == "auto":
        zero["stage"] = cfg.train.zero_stage
    for name in ("bf16", "fp16"):
        section = ds.setdefault(name, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = cfg.train.precision == name
        if on_cpu and section["enabled"] and not allow_cpu_bf16:
            log.warning("%s requested on CPU: using fp32 instead (bf16 is ~7x slower than fp32 on this "
                        "CPU; pass --allow-cpu-bf16 to keep it)", name)
            section["enabled"] = False
    ds.setdefault("steps_per_print", 10**9)  # the loop logs; DeepSpeed's own step prints are noise
    return ds


def seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compute_dtype(ds: dict[str, Any]) -> torch.dtype:
    if ds["bf16"]["enabled"]:
        return torch.bfloat16
    return torch.float16 if ds["fp16"]["enabled"] else torch.float32


# ----------------------------------------------------------------------------- logging sinks


class MetricsSink:
    """Rank 0's console (tqdm), TensorBoard and CSV; the other ranks get a sink that does nothing."""

    def __init__(self, run: Path, enabled: bool, start_step: int, max_steps: int) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self.csv_path = run / "metrics.csv"
        _truncate_csv(self.csv_path, start_step)  # a resumed run rewrites what came after its checkpoint
        new = not self.csv_path.exists()
        self.csv_file = open(self.csv_path, "a", newline="", encoding="utf-8")
        self.csv = csv.DictWriter(self.csv_file, fieldnames=CSV_FIELDS)
        if new:
            self.csv.writeheader()
        self.tb = SummaryWriter(str(run / "tb"), purge_step=start_step + 1 if start_step else None)
        self.bar = tqdm(total=max_steps, initial=start_step, desc="pretrain", dynamic_ncols=True)

    def advance(self) -> None:
        if self.enabled:
            self.bar.update(1)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.csv.writerow(row)
        self.csv_file.flush()
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(f"train/{key}", value, row["step"])
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['sort_acc']:.3f}", lr=f"{row['lr']:.2e}")
        log.info("step %d " + " ".join(f"{k}=%.4g" for k in CSV_FIELDS[2:]), row["step"],
                 *(row[k] for k in CSV_FIELDS[2:]))

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.tb.close()
            self.csv_file.close()


def _truncate_csv(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= last_step]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """``metrics.csv`` as a list of rows of floats (for tests and notebooks)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


# ----------------------------------------------------------------------------- small loop helpers


def to_device(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's inputs on ``device``; the uint8 video normalised there, in the engine's compute dtype
    (bf16 engines hold bf16 weights)."""
    out = {k: batch[k].to(device, non_blocking=True) for k in MODEL_KEYS}
    out["video"] = normalize_video(out["video"], dtype)
    return out


def all_finite(*losses: torch.Tensor) -> bool:
    """Whether every loss is finite on EVERY rank (so all ranks stop together instead of hanging); one
    host synchronisation."""
    # stays on the losses' device (NCCL needs CUDA)
    flag = torch.stack([torch.isfinite(x.detach()).all() for x in losses]).all().float().reshape(1)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def mean_over_ranks(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    values = values.detach().float().to(device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values.cpu()


def sum_over_ranks(counts: dict[str, int], device: torch.device) -> dict[str, int]:
    keys = sorted(counts)
    values = torch.tensor([counts[k] for k in keys], dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values)
    return {k: int(v) for k, v in zip(keys, values.tolist())}


def _fault_step(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def config_changes(run: Path, cfg: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (checkpointed run's value, this start's value)}`` for every field that differs."""
    path = run / "config.yaml"
    if not path.is_file():
        return {}
    before, now = _flat(yaml.safe_load(path.read_text()) or {}), _flat(to_dict(cfg))
    # A key the run's config.yaml lacks did not exist when it was written: the run had its default behaviour.
    # num_workers "auto" resumes with the checkpoint's own count (resumed_num_workers).
    return {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
            if k in before and before.get(k) != now.get(k) and not (k == "data.num_workers" and now.get(k) == "auto")}


def preflight(cfg: ExperimentConfig, opts: RunOptions, env: DistEnv) -> dict[str, tuple[Any, Any]]:
    """Every check that can fail before anything is written; returns the (allowed) config changes.

    Raises :class:`RunSetupError` naming what to do."""
    from tvts_train.data import CorpusMismatchError, check_corpus, is_remote

    run, ckpt_dir = Path(opts.output), Path(opts.output) / "checkpoints"
    latest = checkpoint.latest_tag(ckpt_dir)
    if latest and not opts.resume:
        raise RunSetupError(f"{run} already has checkpoints (latest {latest}); pass --resume to continue it "
                            "or use a new --output")
    if opts.resume_tag and not opts.resume:
        raise RunSetupError("--tag needs --resume")
    changes: dict[str, tuple[Any, Any]] = {}
    if opts.resume and (latest or opts.resume_tag):
        tag = opts.resume_tag or latest
        if tag not in checkpoint.tags(ckpt_dir):
            raise RunSetupError(f"--tag {tag}: no such checkpoint in {ckpt_dir}; there are {checkpoint.tags(ckpt_dir)}")
        written_by = checkpoint.checkpoint_info(ckpt_dir, tag).get("world_size")
        if written_by is not None and written_by != env.world_size:
            raise RunSetupError(f"{ckpt_dir}/{tag} was written by {written_by} processes; this run has "
                                f"{env.world_size}. Resume with the same number of processes.")
        changes = config_changes(run, cfg)
        refused = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES}
        if refused:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
            raise RunSetupError(f"--resume with a config that differs from the checkpointed run ({listed}). The "
                                "optimizer, schedule and loader state come from the checkpoint and would not "
                                f"follow; only {', '.join(RESUMABLE_CHANGES)} may change. Start a new run "
                                "(--output) instead.")
    try:
        check_corpus(opts.data, cfg.data)
    except (CorpusMismatchError, FileNotFoundError) as err:
        raise RunSetupError(str(err)) from None
    except OSError as err:  # a remote store that refuses or cannot be reached; a local permission error
        hint = ("check the store's credentials and endpoint in its standard environment (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL; GOOGLE_APPLICATION_CREDENTIALS)"
                if is_remote(str(opts.data)) else "check that the files are readable")
        raise RunSetupError(f"cannot read the shards at {opts.data}: {err}; {hint}") from None
    return changes


def _record_start(run: Path, cfg: ExperimentConfig, ds: dict[str, Any], opts: RunOptions,
                  changes: dict[str, tuple[Any, Any]]) -> None:
    """config.yaml/ds_config.json as this start resolved them, and a line per start in starts.jsonl."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    (run / "ds_config.json").write_text(json.dumps(ds, indent=2))
    tag = (opts.resume_tag or checkpoint.latest_tag(run / "checkpoints")) if opts.resume else None
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resume_from": tag,
              "changed": {k: list(v) for k, v in changes.items()}}
    with open(run / "starts.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    for key, (before, now) in changes.items():
        log.info("--resume: %s changed from %r to %r (recorded in starts.jsonl)", key, before, now)


# ----------------------------------------------------------------------------- the run


def make_optimizer(params: Any, o: Any, ds: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW built here, not by DeepSpeed (a JSON optimizer compiles fused Adam, ~90 s on CPU).

    With the optimizer offloaded to CPU (zero3-offload.json) the step runs on CPU tensors, where
    DeepSpeed's vectorised CPUAdam (AdamW mode; a one-time C++ build cached in TORCH_EXTENSIONS_DIR)
    is several times faster than torch's, and DeepSpeed requires it by default. Parameters that do not
    require gradients are left out.
    """
    params = [p for p in params if p.requires_grad]  # frozen ones (a fixed temporal table) have no state
    offload = ds.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    if offload == "cpu":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, adamw_mode=True)
    # torch's fused AdamW: one kernel over all parameters (measured 5x faster than the default
    # for-each step on CPU for the tiny presets, where the text embedding table dominates the update).
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True)


def build(cfg: ExperimentConfig, opts: RunOptions, env: DistEnv, deepspeed: Any, ds: dict[str, Any]) -> tuple[Any, Any]:
    """The DeepSpeed engine (model + AdamW + schedule) and this rank's loader."""
    from tvts_train.data import HFTokenize, build_loader
    from tvts_train.model import TVTS
    from tvts_train.schedule import build_scheduler

    seed_all(cfg.train.seed)  # identical initial weights on every rank (DeepSpeed also broadcasts rank 0's)
    model = TVTS(cfg.model)
    optimizer = make_optimizer(model.parameters(), cfg.optim, ds)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.train.max_steps)
    t0 = time.perf_counter()
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds)
    log.info("deepspeed.initialize: %.1f s (ZeRO-%d, %s)", time.perf_counter() - t0,
             ds["zero_optimization"]["stage"], compute_dtype(ds))
    checkpoint.use_weights_only_loading(engine)
    workers = resumed_num_workers(opts) if cfg.data.num_workers == "auto" and opts.resume else None
    data = dataclasses.replace(cfg.data, num_workers=workers if workers is not None
                               else agreed_num_workers(cfg.data.num_workers, env))
    loader = build_loader(opts.data, data, batch_size=engine.train_micro_batch_size_per_gpu(),
                          rank=env.rank, world_size=env.world_size, tokenize=HFTokenize(cfg.model.text),
                          pin_memory=env.device.type == "cuda", device=env.device)
    return engine, loader


def resumed_num_workers(opts: RunOptions) -> int | None:
    """The loader workers of the checkpoint a ``data.num_workers=auto`` run resumes from: the stream is
    split by the global worker count, so an exact resume keeps it, whatever this node's cores say."""
    ckpt_dir = Path(opts.output) / "checkpoints"
    tag = opts.resume_tag or checkpoint.latest_tag(ckpt_dir)
    saved = checkpoint.checkpoint_info(ckpt_dir, tag).get("loader_workers") if tag else None
    if saved is None and (Path(opts.output) / "config.yaml").is_file():  # checkpoints from before the record
        saved = (yaml.safe_load((Path(opts.output) / "config.yaml").read_text()) or {}).get("data", {}).get(
            "num_workers")
    if isinstance(saved, int):
        log.info("data.num_workers=auto: %d loader workers per rank, as in the checkpoint resumed from", saved)
        return saved
    return None


def agreed_num_workers(setting: int | str, env: DistEnv) -> int:
    """``data.num_workers`` resolved on this node, then the minimum over ranks: every rank must split the
    stream by the same global worker count."""
    from tvts_train.data import resolve_num_workers

    # torchrun sets LOCAL_WORLD_SIZE, the deepspeed launcher LOCAL_SIZE; unknown: assume one node
    per_node = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or str(env.world_size)
    workers = resolve_num_workers(setting, int(per_node))
    if setting == "auto" and dist.is_initialized() and env.world_size > 1:
        agreed = torch.tensor([workers], device=env.device if env.device.type == "cuda" else "cpu")
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        workers = int(agreed.item())
    if setting == "auto" and env.is_main:
        log.info("data.num_workers=auto: %d loader workers per rank", workers)
    return workers


def pretrain(cfg: ExperimentConfig, opts: RunOptions) -> RunResult:
    """Train ``cfg`` with ``opts``; returns where it stopped. Raises NonFiniteLossError on NaN/inf."""
    t_init = time.perf_counter()
    env, deepspeed = init_distributed(opts.local_rank)
    ds = resolve_ds_config(load_ds_json(opts.deepspeed_config), cfg, env.device.type == "cpu", opts.allow_cpu_bf16)
    run, ckpt_dir = Path(opts.output), Path(opts.output) / "checkpoints"
    changes = preflight(cfg, opts, env)  # validate everything first: a failed start writes nothing
    dist.barrier()  # every rank passed its checks before rank 0 writes
    if env.is_main:
        _record_start(run, cfg, ds, opts, changes)
    dist.barrier()  # nobody reads the run folder before rank 0 made it

    engine, loader = build(cfg, opts, env, deepspeed, ds)
    torch.manual_seed(cfg.train.seed + env.rank)  # masking/dropout noise differs per rank
    start = 0
    if opts.resume:
        restored = checkpoint.resume(engine, ckpt_dir, env.rank, opts.resume_tag)
        if restored is None:
            log.warning("--resume: no checkpoint in %s yet; starting from step 0", ckpt_dir)
        else:
            start, state = restored
            loader.load_state_dict(state["loader"])
            checkpoint.set_rng_state(state["rng"])  # last: nothing may draw numbers after this
    log.info("rank %d/%d ready on %s in %.1f s (start step %d)", env.rank, env.world_size, env.device,
             time.perf_counter() - t_init, start)
    warn_small_contrastive_batch(cfg, engine.train_micro_batch_size_per_gpu(), env.world_size)
    step = train_loop(cfg, opts, env, engine, loader, ds, start)
    log.info("rank %d loader counters: %s", env.rank, loader.counters())
    return finish(cfg, env, run, ckpt_dir, step)


def warn_small_contrastive_batch(cfg: ExperimentConfig, micro_batch: int, world_size: int) -> int:
    """InfoNCE's negatives come from one micro-batch of every rank: gradient accumulation adds none.
    Warn when that is fewer than the recipe's ``model.contrastive_batch``; returns the number."""
    negatives = micro_batch * world_size if cfg.model.gather_negatives else micro_batch
    wanted = cfg.model.contrastive_batch
    if wanted and negatives < wanted:
        log.warning("InfoNCE compares each clip with %d (micro-batch %d x %d ranks), fewer than the recipe's "
                    "model.contrastive_batch=%d: gradient accumulation does not add negatives. Raise "
                    "data.batch_size (bf16 activations take ~182 MiB a clip) or use more GPUs",
                    negatives, micro_batch, world_size if cfg.model.gather_negatives else 1, wanted)
    return negatives


@dataclass
class LogWindow:
    """Sums over the steps since the last log line (the metric sums stay on the training device)."""

    metrics: torch.Tensor | None = None
    steps: int = 0
    wait: float = 0.0  # seconds spent waiting for batches
    seconds: float = 0.0  # wall time of the steps

    def add(self, values: torch.Tensor) -> None:
        self.metrics = values if self.metrics is None else self.metrics + values


def train_loop(cfg: ExperimentConfig, opts: RunOptions, env: DistEnv, engine: Any, loader: Any,
               ds: dict[str, Any], start: int) -> int:
    """Optimizer steps from ``start`` to ``max_steps`` (or ``start + stop_after``); returns the last step."""
    tc, ckpt_dir = cfg.train, Path(opts.output) / "checkpoints"
    end = tc.max_steps if opts.stop_after is None else min(tc.max_steps, start + opts.stop_after)
    accum, dtype = engine.gradient_accumulation_steps(), compute_dtype(ds)
    global_batch = engine.train_micro_batch_size_per_gpu() * accum * env.world_size
    sink = MetricsSink(Path(opts.output), env.is_main, start, tc.max_steps)
    fault_at, batches, window = _fault_step(FAULT_NAN_ENV), iter(loader), LogWindow()
    fault_blowup = _fault_step(FAULT_BLOWUP_ENV)
    engine.train()
    step, skipped = start, 0
    try:
        while step < end:
            t0 = time.perf_counter()
            lr = engine.get_lr()[0]  # the lr this update uses
            losses: list[torch.Tensor] = []
            for micro in range(accum):
                t_wait = time.perf_counter()
                batch = to_device(next(batches), env.device, dtype)
                window.wait += time.perf_counter() - t_wait

                out = engine(batch)
                loss = out["loss"] * float("nan") if fault_at == step + 1 else out["loss"]
                engine.backward(loss)
                losses.append(loss.detach())
                # One host sync per optimizer step, once the last backward is queued (the device is busy
                # meanwhile) and before the update: the optimizer never applies a non-finite step.
                if micro == accum - 1 and not all_finite(*losses):
                    bad = [float(x) for x in losses if not torch.isfinite(x)]
                    raise NonFiniteLossError(f"non-finite loss ({bad[0] if bad else 'on another rank'}) at step "
                                             f"{step + 1}; stopping. Last good checkpoint: "
                                             f"{checkpoint.latest_tag(ckpt_dir)}")
                engine.step()  # DeepSpeed updates the weights only at the accumulation boundary
                # kept on the device: moved to the host once per log line, not at every micro-step
                window.add(torch.stack([out[k].detach().float() for k in METRICS]) / accum)
            step += 1
            window.steps += 1
            window.seconds += time.perf_counter() - t0
            sink.advance()

            if step % tc.log_every == 0 or step == end:
                row = _log_row(step, window, lr, global_batch, loader, env.device)
                # DeepSpeed skips an update whose gradients overflowed (fp16/bf16 loss scaling) without
                # stepping the schedule: count it where people look, and say so when it happens.
                row["skipped_steps"] = int(getattr(engine, "skipped_steps", 0) or 0)
                if row["skipped_steps"] > skipped:
                    log.warning("DeepSpeed skipped %d optimizer steps (overflow) by step %d", row["skipped_steps"], step)
                skipped = row["skipped_steps"]
                sink.write(row)
                window = LogWindow()
            if fault_blowup == step:  # test hook: weights blow up while the loss was still finite
                with torch.no_grad():
                    next(engine.module.parameters()).mul_(float("inf"))
            if step % tc.ckpt_every == 0 or step == end:
                checkpoint.save(engine, ckpt_dir, step, loader.state_dict(), keep=tc.keep_checkpoints)
        if tc.max_steps == 0 and not checkpoint.latest_tag(ckpt_dir):
            # No training asked for: the initial weights are the result (a "scratch" encoder to export).
            checkpoint.save(engine, ckpt_dir, 0, loader.state_dict(), keep=tc.keep_checkpoints)
    finally:
        sink.close()
    return step


def _log_row(step: int, window: LogWindow, lr: float, global_batch: int, loader: Any,
             device: torch.device) -> dict[str, Any]:
    """One metrics row: window means, averaged over ranks (a collective: every rank calls it)."""
    n = window.steps
    metrics = mean_over_ranks(window.metrics / n, device).tolist()  # the one host sync of the log window
    counters = loader.counters()
    # Every rank scans the same file list: its unreadable files are counted once, not once per rank.
    totals = sum_over_ranks({k: v for k, v in counters.items() if k not in ("epoch", "bad_files")}, device)
    totals["bad_files"] = counters["bad_files"]
    return {
        "step": step,
        "epoch": counters["epoch"],
        **dict(zip(METRICS, metrics)),
        "lr": lr,
        "samples_per_s": global_batch * n / window.seconds,
        "data_wait_s": window.wait / n,
        "step_time_s": window.seconds / n,
        **totals,
    }


def finish(cfg: ExperimentConfig, env: DistEnv, run: Path, ckpt_dir: Path, step: int) -> RunResult:
    """Export the video encoder once training is complete (rank 0 reads the final checkpoint)."""
    if step < cfg.train.max_steps:
        log.info("stopped at step %d of %d; continue with --resume", step, cfg.train.max_steps)
        return RunResult(step, False, None)
    export = None
    if env.is_main:
        from tvts_train.export import export_video_encoder

        export = export_video_encoder(ckpt_dir, run / "video_encoder.safetensors", video_cfg=cfg.model.video)
    dist.barrier()
    return RunResult(step, True, export)


def replace_max_steps(cfg: ExperimentConfig, max_steps: int | None) -> ExperimentConfig:
    """``cfg`` with ``train.max_steps`` replaced (the --max-steps flag; 0 exports the initial weights)."""
    if max_steps is None:
        return cfg
    if max_steps < 0:
        raise ValueError(f"--max-steps {max_steps}: the number of optimizer steps must be >= 0 "
                         "(0 saves and exports the initial weights)")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=max_steps))
