"""Configuration of the corpus builder: one frozen dataclass per stage, loaded strictly from YAML.

A YAML file mirrors `PrepareConfig`: top-level sections named like its fields, each holding that
stage's keys. An unknown section or key is an error that names it, so a typo never silently falls back
to a default. Command-line flags override single fields with ``--set section.key=value``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tvts_data.download import DownloadConfig
from tvts_data.asr import AsrConfig


@dataclass(frozen=True)
class InputConfig:
    video_extensions: tuple[str, ...] = (".mp4", ".webm", ".mkv", ".mov", ".avi")  # folder scan
    path_column: str = "video_path"  # manifest column with the video path (also: path, video)


@dataclass(frozen=True)
class WordsConfig:
    languages: tuple[str, ...] = ("en",)  # caption languages accepted; empty = any
    allow_translated: bool = False  # machine-translated tracks carry no word timing
    allow_interpolated: bool = True  # segment-only captions: word times interpolated by characters
    caption_formats: tuple[str, ...] = ("json3", "srv3", "vtt", "srt")  # preference order beside a video


@dataclass(frozen=True)
class WindowsConfig:
    K: int = 4  # transcripts per window (paper: 4)
    lengths: tuple[float, ...] = (3.0, 4.0, 5.0)  # l drawn per window from these seconds (paper: {3,4,5})
    gap: float = 1.0  # seconds between adjacent transcripts (paper: 1)
    mode: str = "stride"  # "stride": every `stride` seconds; "random": `per_video` random s_begin
    stride: float = 10.0  # seconds between window starts in stride mode
    per_video: int = 4  # windows per video in random mode
    seed: int = 0  # fixes l draws and random starts, per video
    min_words: int = 1  # per transcript; a window with a thinner transcript is dropped and counted
    inclusive_end: bool = True  # paper: S_k <= t <= E_k; reference code: strict


@dataclass(frozen=True)
class FramesConfig:
    segments: int = 16  # M of TSN sampling
    candidates: int = 3  # frames kept per segment, evenly spaced; odd so that the middle is the centre
    short_side: int = 256  # resize so the short side is this many pixels (paper: 256)
    format: str = "jpeg"  # "jpeg" | "raw"
    # 85: the trainer's CPU loader >= 100 clips/s per core on camera-like frames, 22% fewer bytes than 90, for
    # 0.65 dB PSNR against the source (docs/benchmarks.md, "Stored JPEG quality").
    jpeg_quality: int = 85
    decoder: str = "auto"  # "auto" (decord, PyAV where decord fails) | "decord" | "pyav"
    # Each video decodes in a helper process killed after this many seconds ("decode_timeout"): a
    # decoder stuck on a damaged file never stalls a worker. None: decode in-process, no deadline.
    decode_timeout_s: float | None = 600.0
    # A hole between two frames is a gap (windows over it are dropped as window_outside_frames) when it
    # is longer than gap_factor x the stream's own frame intervals around it and than gap_min_s. Frames
    # held for a while (variable frame rate, dropped frames, slideshows) show what is on screen.
    gap_factor: float = 4.0
    gap_min_s: float = 0.5


@dataclass(frozen=True)
class WriteConfig:
    videos_per_chunk: int = 16  # unit of work and of resume
    shard_target_mb: float = 256.0  # a chunk's windows are split into shards of at most this size
    row_group_windows: int = 8  # windows per Parquet row group: the loader's streaming unit


@dataclass(frozen=True)
class RunConfig:
    ray_address: str | None = None  # None: embedded Ray; "auto" or ray://... for a cluster
    num_cpus: int | None = None  # embedded Ray only
    engine: str = "ray"  # "ray" | "local" (serial, in-process: debugging)
    cpus_per_task: float = 1.0
    # Local disk where each worker builds its chunks (and the driver mirrors the ledger) when --output is
    # an object-store URI; None: the system temp dir. Needs room for a chunk's raw videos and shards.
    scratch_dir: str | None = None
    # --output a URI: hand the driver's AWS_*/GOOGLE_*/GCS_*/AZURE_* variables to the chunk tasks (Ray's
    # runtime environment), so workers reach the bucket as the driver does. They are then visible in Ray's
    # job metadata and dashboard: on a cluster whose nodes have their own credentials, set false.
    forward_store_env: bool = True


@dataclass(frozen=True)
class PrepareConfig:
    input: InputConfig = field(default_factory=InputConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    words: WordsConfig = field(default_factory=WordsConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    run: RunConfig = field(default_factory=RunConfig)


class ConfigError(ValueError):
    """A config file or override names something that does not exist or has the wrong type."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(v, inner, where) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    if tp in (int, float, str) and value is not None:
        try:
            return tp(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from exc
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name}: expected a section (mapping), got {value!r}")
            kwargs[name] = _build(tp, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, tp, f"{where}.{name}")
    return cls(**kwargs)


def _nested_update(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _check_override_key(cls: type, dotted: str, item: str) -> None:
    """``--set`` names an existing ``section.key``; the error names the ``--set`` itself, not the file."""
    node: Any = cls
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if node is dict or typing.get_origin(node) is dict:
            return  # a free mapping (extra_ytdlp_opts, ...): any key
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"--set {item!r}: {'.'.join(parts[:depth])} is a value, not a section")
        fields = {f.name for f in dataclasses.fields(node)}
        if part not in fields:
            section = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(f"--set {item!r}: no key {part!r} in {section}; known: {sorted(fields)}")
        node = typing.get_type_hints(node)[part]


def load_prepare_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PrepareConfig:
    """Read a YAML config (or the defaults) and apply ``section.key=value`` overrides."""
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        _check_override_key(PrepareConfig, key.strip(), item)
        _nested_update(data, key.strip(), yaml.safe_load(raw))
    return _build(PrepareConfig, data, where)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-safe dict of a config (for the manifest), with secrets left out."""
    from tvts_data.download.errors import redact_mapping

    raw = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    download = raw.get("download", {})
    for secret in ("cookies_file", "proxy"):
        if download.get(secret):
            download[secret] = "<redacted>"
    return redact_mapping(raw)  # and any password/token/cookie/auth-like value (extra_ytdlp_opts, headers)
