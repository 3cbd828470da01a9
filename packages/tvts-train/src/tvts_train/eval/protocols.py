"""The registry of downstream protocols: what each one needs, runs and is compared with.

A protocol is a :class:`Protocol`: its CLI flags, a typed options dataclass built from them, a
``run(request, options) -> {"metrics", "videos"}`` function, and the paper's numbers for context.
Every protocol shares the :class:`EvalRequest` (encoder, config, manifest, clip decoding, batching).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tvts_train.eval.clips import ClipConfig, Manifest, ManifestError, read_manifest
from tvts_train.eval import finetune as ft
from tvts_train.eval import text_retrieval as tr
from tvts_train.eval.features import EncodedVideos, default_device, encode_videos, load_video_encoder
from tvts_train.eval.linear_probe import ProbeConfig, fit_and_score
from tvts_train.eval.retrieval import nearest_examples, video_to_video_recall
from tvts_train.model import VideoViT

log = logging.getLogger(__name__)

UNIT_NOTE = "metrics and paper numbers are fractions in [0, 1]; the paper prints them as percentages"


@dataclass(frozen=True)
class EvalRequest:
    """What every protocol needs (built from the common CLI flags, or directly from Python)."""

    encoder: Path  # video_encoder.safetensors or the run folder holding it
    config: str | None  # preset name or YAML path of the encoder; None: the file's stored video_config
    manifest: Path  # labelled videos (see eval.clips)
    clip: ClipConfig = field(default_factory=ClipConfig)
    batch_size: int = 8  # clips per encoder forward (and videos per decoding batch)
    num_workers: int = 0  # decoding processes
    device: str | None = None  # None: cuda when available, else cpu


@dataclass(frozen=True)
class Protocol:
    name: str
    help: str
    reference: dict[str, Any]  # the paper's numbers (fractions) and where they come from
    add_arguments: Callable[[argparse.ArgumentParser], None]  # protocol-specific flags
    options: Callable[[argparse.Namespace], Any]  # flags -> the protocol's options dataclass
    run: Callable[[EvalRequest, Any], dict[str, Any]]  # -> {"metrics": {...}, "videos": {...}[, ...]}
    # The protocol's own clip settings where the CLI flags leave them out (e.g. Frozen's 4 frames,
    # VideoMAE's 2x3 test views); anything else defaults to the encoder's frames and one view.
    clip_defaults: dict[str, int] = field(default_factory=dict)
    column: str = "label"  # the manifest column it reads besides video_path (and split)


def _encode_split(request: EvalRequest, encoder: VideoViT, manifest: Manifest, split: str | None) -> EncodedVideos:
    videos = manifest.select(split)
    if not videos:
        raise ManifestError(f"{manifest.source}: no videos in split {split!r}")
    return encode_videos(encoder, videos, request.clip, request.batch_size, request.device, request.num_workers)


def _video_counts(encoded: EncodedVideos) -> dict[str, Any]:
    return {
        "encoded": len(encoded.paths),
        "skipped": len(encoded.skipped),
        "skipped_files": [{"path": p, "error": e} for p, e in encoded.skipped],
    }


# ----------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class RetrievalOptions:
    split: str | None = None  # manifest split to retrieve within; None: every row (a manifest of SSV2 val alone)
    ks: tuple[int, ...] = (1, 5, 10)
    chunk_size: int = 1024  # queries per similarity block


def _retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=None, help="manifest split to use (default: all rows)")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], help="the K of R@K")
    parser.add_argument("--chunk-size", type=int, default=1024, help="queries per similarity block")


def _retrieval_options(args: argparse.Namespace) -> RetrievalOptions:
    return RetrievalOptions(split=args.split, ks=tuple(args.ks), chunk_size=args.chunk_size)


def run_retrieval(request: EvalRequest, options: RetrievalOptions) -> dict[str, Any]:
    encoder = load_video_encoder(request.encoder, request.config, num_frames=request.clip.frames)
    manifest = read_manifest(request.manifest)
    encoded = _encode_split(request, encoder, manifest, options.split)
    device = torch.device(request.device) if request.device else default_device()
    # On a GPU the all-vs-all similarity (25k x 25k x 768 for SSV2) takes seconds instead of minutes.
    metrics = video_to_video_recall(encoded.features.to(device), encoded.labels, options.ks, options.chunk_size)
    examples = nearest_examples(encoded.features, encoded.labels, manifest.classes, encoded.paths)
    return {"metrics": metrics, "videos": _video_counts(encoded), "examples": examples}


# ----------------------------------------------------------------------------- linear probe


@dataclass(frozen=True)
class LinearProbeOptions:
    train_split: str = "train"
    eval_split: str = "val"
    probe: ProbeConfig = field(default_factory=ProbeConfig)


def _probe_arguments(parser: argparse.ArgumentParser) -> None:
    d = ProbeConfig()
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="val")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--probe-batch-size", type=int, default=d.batch_size, help="features per probe step")
    parser.add_argument("--seed", type=int, default=d.seed)


def _probe_options(args: argparse.Namespace) -> LinearProbeOptions:
    probe = ProbeConfig(epochs=args.epochs, batch_size=args.probe_batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, seed=args.seed)
    return LinearProbeOptions(train_split=args.train_split, eval_split=args.eval_split, probe=probe)


def run_linear_probe(request: EvalRequest, options: LinearProbeOptions) -> dict[str, Any]:
    encoder = load_video_encoder(request.encoder, request.config, num_frames=request.clip.frames)
    manifest = read_manifest(request.manifest)
    train = _encode_split(request, encoder, manifest, options.train_split)
    held_out = _encode_split(request, encoder, manifest, options.eval_split)
    device = torch.device(request.device) if request.device else default_device()
    outcome = fit_and_score(train.features.to(device), train.labels.to(device), held_out.features.to(device),
                            held_out.labels.to(device), len(manifest.classes), options.probe)
    counts = {"train": _video_counts(train), options.eval_split: _video_counts(held_out),
              "classes": len(manifest.classes)}
    return {"metrics": outcome.metrics, "videos": counts,
            "confusion": {"classes": list(manifest.classes), "rows": "true class", "columns": "predicted class",
                          "matrix": outcome.confusion}}


# ----------------------------------------------------------------------------- registry

PROTOCOLS: dict[str, Protocol] = {
    "retrieval": Protocol(
        name="retrieval",
        help="zero-shot video-to-video retrieval (cosine on [CLS], self excluded, R@K)",
        reference={"dataset": "SSV2 val (24,777 videos)", "R@1": 0.147, "R@5": 0.384, "R@10": 0.505,
                   "source": "TVTS paper, zero-shot video retrieval on SSV2: R@1/5/10 = 14.7/38.4/50.5"},
        add_arguments=_retrieval_arguments,
        options=_retrieval_options,
        run=run_retrieval,
    ),
    "linear-probe": Protocol(
        name="linear-probe",
        help="linear probe on frozen [CLS] features (AdamW, cross-entropy; top-1/top-5)",
        reference={"dataset": "SSV2", "top1": 0.315, "source": "TVTS paper, linear probe on SSV2: 31.5 top-1"},
        add_arguments=_probe_arguments,
        options=_probe_options,
        run=run_linear_probe,
    ),
    "finetune": Protocol(
        name="finetune",
        help="full fine-tuning, VideoMAE recipe (layer decay 0.75, warmup + cosine, mixup/cutmix, 2x3 test views)",
        reference={"dataset": "SSV2", "top1": 0.685,
                   "source": "TVTS paper, full fine-tuning: SSV2 68.5, K400 78.8, UCF-101 95.1, HMDB-51 70.5 top-1"},
        add_arguments=ft.add_finetune_arguments,
        options=ft.finetune_options,
        run=ft.run_finetune,
        clip_defaults={"temporal_views": 2, "spatial_crops": 3},
    ),
    "text-retrieval": Protocol(
        name="text-retrieval",
        help="text-to-video retrieval after fine-tuning both towers with InfoNCE (Frozen protocol, 4 frames)",
        reference=tr.REFERENCE,
        add_arguments=tr.add_text_retrieval_arguments,
        options=tr.text_retrieval_options,
        run=tr.run_text_retrieval,
        clip_defaults={"frames": 4},
        column="caption",
    ),
}


# The paper's number for each (protocol, dataset adapter): Tables 1, 4, 5, 6 and 7 (fractions).
PAPER_BY_DATASET: dict[tuple[str, str], dict[str, Any]] = {
    ("retrieval", "ssv2"): {"R@1": 0.147, "R@5": 0.384, "R@10": 0.505, "source": "Table 4"},
    ("linear-probe", "ssv2"): {"top1": 0.315, "source": "Table 4"},
    ("linear-probe", "ucf101"): {"top1": 0.834, "source": "Table 1"},
    ("linear-probe", "hmdb51"): {"top1": 0.584, "source": "Table 1"},
    ("finetune", "ssv2"): {"top1": 0.685, "source": "Tables 2, 5"},
    ("finetune", "k400"): {"top1": 0.788, "source": "Tables 2, 5"},
    ("finetune", "ucf101"): {"top1": 0.951, "source": "Table 7"},
    ("finetune", "hmdb51"): {"top1": 0.705, "source": "Table 7"},
    ("text-retrieval", "msrvtt"): {"R@1": 0.346, "MedR": 3, "source": "Table 6"},
    ("text-retrieval", "didemo"): {"R@1": 0.324, "MedR": 3, "source": "Table 6"},
    ("text-retrieval", "msvd"): {"R@1": 0.459, "MedR": 2, "source": "Table 6"},
    ("text-retrieval", "lsmdc"): {"R@1": 0.172, "MedR": 17, "source": "Table 6"},
}


def paper_reference(protocol: str, dataset: str) -> dict[str, Any] | None:
    """The paper's number for this protocol on this dataset adapter; None where the paper reports none.

    (SSV2 has 24,777 validation videos: 220,847 = 168,913 train + 24,777 val + 27,157 test.)
    """
    if (protocol, dataset) in PAPER_BY_DATASET:
        return {"dataset": dataset, **PAPER_BY_DATASET[(protocol, dataset)]}
    return None


def run_protocol(name: str, request: EvalRequest, options: Any | None = None,
                 dataset: str | None = None) -> dict[str, Any]:
    """Run a registered protocol and return the full result (metrics, settings, and the paper's number).

    The paper's number comes only with ``dataset`` (one of the paper's, read through ``--dataset``): a
    user's own manifest is another benchmark, and "paper: SSV2 31.5 top-1" next to it would mislead.
    """
    protocol = PROTOCOLS[name]
    if options is None:  # the protocol's defaults
        options = protocol.options(_default_namespace(protocol))
    outcome = protocol.run(request, options)
    paper = paper_reference(name, dataset) if dataset is not None else None
    if paper is not None:
        log.info("%s: %s (paper, %s: %s)", name, outcome["metrics"], dataset, paper)
    else:
        log.info("%s: %s", name, outcome["metrics"])
    return {
        "protocol": name,
        "metrics": outcome["metrics"],
        "paper": paper,  # None on a user's own manifest
        "unit": UNIT_NOTE,
        **{k: v for k, v in outcome.items() if k != "metrics"},  # videos, and history/captions where kept
        "encoder": str(request.encoder),
        "config": request.config,
        "manifest": str(request.manifest),
        "clip": dataclasses.asdict(request.clip),
        "options": dataclasses.asdict(options),
    }


def _default_namespace(protocol: Protocol) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    protocol.add_arguments(parser)
    return parser.parse_args([])
