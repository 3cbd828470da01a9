"""``tvts-train eval {retrieval,linear-probe}``: flags -> :class:`EvalRequest` -> JSON result.

Usage::

    tvts-train eval retrieval --encoder runs/tvts --config vit-b16-paper \\
        --manifest ssv2/val.csv --out results/ssv2-retrieval.json
    tvts-train eval linear-probe --encoder runs/tvts/video_encoder.safetensors \\
        --manifest ssv2/all.parquet --train-split train --eval-split val --epochs 100

``--config`` may be left out when the export stored its ``video_config`` (the trainer's export does).
``--crop`` defaults to the encoder's and must equal it (the spatial position table is fixed-size);
``--frames`` defaults to the protocol's (text-retrieval: Frozen's 4) or else the encoder's, and may
differ from the encoder's when it tiles into tubelets (the temporal table is resampled, see
``features.resample_temporal_table``); ``--temporal-views``/``--spatial-crops`` default to the
protocol's (finetune: VideoMAE's 2 x 3) or else 1; ``--short-side`` defaults to ``crop * 256 / 224``.

This module registers the ``eval`` command with :mod:`tvts_train.cli` on import (that CLI lists it in
``COMMAND_MODULES``); :func:`add_eval_commands` adds the same commands to any other argparse CLI.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from tvts_train.eval.clips import FRAME_ORDERS, ClipConfig, ManifestError
from tvts_train.eval.datasets import ADAPTERS, adapters_for, iter_splits, read_dataset, write_manifest
from tvts_train.eval.features import resolve_video_config
from tvts_train.eval.pictures import write_pictures
from tvts_train.eval.protocols import PROTOCOLS, EvalRequest, Protocol, run_protocol
from tvts_train.model import CheckpointMismatch

log = logging.getLogger(__name__)

EXIT_USAGE = 2  # a bad input, named in one line (as tvts_train.cli)

EVAL_HELP = "downstream evaluations of an exported video encoder"


def _add_common_arguments(parser: argparse.ArgumentParser, protocol: Protocol) -> None:
    parser.add_argument("--encoder", required=True, type=Path,
                        help="video_encoder.safetensors, or the run folder that holds it")
    parser.add_argument("--config", default=None,
                        help="preset name or YAML path of the encoder (default: the file's stored video_config)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path,
                        help=f"CSV/JSONL/Parquet with the columns video_path, {protocol.column} and split "
                             "(train / val / test); relative paths are read from the manifest's folder")
    source.add_argument("--dataset", choices=adapters_for(protocol.column),
                        help="read a benchmark's official files instead of a manifest (with --root)")
    parser.add_argument("--root", type=Path, default=None, help="with --dataset: the dataset's folder")
    parser.add_argument("--dataset-split", type=int, default=None, metavar="N",
                        help="with --dataset: the official split number (UCF-101, HMDB-51: 1, 2 or 3; default 1)")
    parser.add_argument("--frames", type=int, default=None,
                        help="M frames per clip (default: the protocol's, else the encoder's)")
    parser.add_argument("--crop", type=int, default=None, help="crop side in px (default: the encoder's)")
    parser.add_argument("--short-side", type=int, default=None, help="resize target (default: crop*256/224)")
    parser.add_argument("--temporal-views", type=int, default=None,
                        help="clips per video in time (default: the protocol's, else 1; VideoMAE: 2)")
    parser.add_argument("--spatial-crops", type=int, default=None,
                        help="crops per clip (default: the protocol's, else 1; VideoMAE: 3)")
    parser.add_argument("--frame-order", choices=FRAME_ORDERS, default="forward",
                        help="order of the M frames given to the encoder: forward (the protocol), or reversed / "
                             "shuffled as controls of how much a result depends on time order")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per encoder forward")
    parser.add_argument("--workers", type=int, default=4, help="decoding processes")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here too")


def add_protocol_parsers(eval_parser: argparse.ArgumentParser) -> None:
    """One sub-command per registered protocol under an ``eval`` parser."""
    protocols = eval_parser.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    for protocol in PROTOCOLS.values():
        parser = protocols.add_parser(protocol.name, help=protocol.help, description=protocol.help)
        _add_common_arguments(parser, protocol)
        protocol.add_arguments(parser)
        parser.set_defaults(func=run_eval_command)
    add_manifest_command(protocols)


def add_eval_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval <protocol>`` to a CLI; dispatch with ``args.func(args)`` (returns the exit code)."""
    eval_parser = subparsers.add_parser("eval", help=EVAL_HELP, description=EVAL_HELP)
    add_protocol_parsers(eval_parser)
    return eval_parser


def clip_config_from_args(args: argparse.Namespace) -> ClipConfig:
    """The clip decoding settings: flags, else the protocol's defaults, else the encoder's."""
    video = resolve_video_config(args.encoder, args.config)
    defaults = PROTOCOLS[args.protocol].clip_defaults
    frames = args.frames or defaults.get("frames", video.num_frames)
    crop = args.crop or video.img_size
    if crop != video.img_size:
        raise ValueError(f"--crop {crop} does not match the encoder's {video.img_size} px "
                         "(its spatial position table is fixed-size)")
    if frames % video.tubelet_size:
        raise ValueError(f"--frames {frames} does not tile into the encoder's tubelets of "
                         f"{video.tubelet_size} frames")
    short_side = args.short_side or round(crop * 256 / 224)  # the usual 256-resize / 224-crop ratio
    return ClipConfig(frames=frames, short_side=short_side, crop=crop,
                      temporal_views=args.temporal_views or defaults.get("temporal_views", 1),
                      spatial_crops=args.spatial_crops or defaults.get("spatial_crops", 1),
                      frame_order=args.frame_order)


def manifest_from_args(args: argparse.Namespace) -> tuple[Path, dict | None]:
    """``--manifest`` as given, or the manifest a ``--dataset`` adapter writes (beside ``--out``, else in a
    temporary folder), with what the adapter found."""
    if args.manifest is not None:
        return args.manifest, None
    if args.root is None:
        raise ValueError("--dataset needs --root, the folder the dataset was unpacked into")
    found = read_dataset(args.dataset, args.root, args.dataset_split)
    folder = args.out.parent if args.out is not None else Path(tempfile.mkdtemp(prefix="tvts-manifest-"))
    suffix = f"-split{args.dataset_split}" if args.dataset_split else ""
    path = write_manifest(found, folder / f"{args.dataset}{suffix}.manifest.csv")
    log.info("%s under %s: %d rows %s, %d videos missing; manifest %s", args.dataset, args.root, len(found.rows),
             iter_splits(found.rows), len(found.missing), path)
    return path, {"name": args.dataset, "root": str(args.root), "dataset_split": args.dataset_split,
                  "rows": len(found.rows), "missing_videos": len(found.missing), "manifest": str(path)}


def request_from_args(args: argparse.Namespace, manifest: Path) -> EvalRequest:
    return EvalRequest(encoder=args.encoder, config=args.config, manifest=manifest,
                       clip=clip_config_from_args(args), batch_size=args.batch_size,
                       num_workers=args.workers, device=args.device)


def run_eval_command(args: argparse.Namespace) -> int:
    """Run the chosen protocol, write ``--out`` if given and print the JSON result (the CLI's output).

    Inputs that cannot work (a flag that does not fit the encoder, a manifest without a needed column,
    a missing or mismatched encoder file) end in one line naming them and exit 2."""
    protocol = PROTOCOLS[args.protocol]
    try:
        manifest, dataset = manifest_from_args(args)
        request = request_from_args(args, manifest)  # flag checks: ValueError names the flag
        options = protocol.options(args)
    except (ValueError, FileNotFoundError, CheckpointMismatch) as err:  # ManifestError is a ValueError
        log.error("%s", err)
        return EXIT_USAGE
    try:
        result = run_protocol(protocol.name, request, options, dataset=dataset["name"] if dataset else None)
    except (ManifestError, FileNotFoundError, CheckpointMismatch) as err:
        log.error("%s", err)
        return EXIT_USAGE
    if dataset is not None:
        result["dataset"] = dataset
    return emit_result(result, args.out)


def add_manifest_command(protocols: argparse._SubParsersAction) -> None:
    """``eval manifest --dataset NAME --root PATH --out M.csv``: what an adapter reads, as a manifest."""
    parser = protocols.add_parser("manifest", help="write the manifest a --dataset adapter reads",
                                  description=add_manifest_command.__doc__)
    parser.add_argument("--dataset", required=True, choices=sorted(ADAPTERS))
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--dataset-split", type=int, default=None, metavar="N")
    parser.add_argument("--out", required=True, type=Path, help="the manifest CSV to write")
    parser.set_defaults(func=run_manifest_command)


def run_manifest_command(args: argparse.Namespace) -> int:
    try:
        found = read_dataset(args.dataset, args.root, args.dataset_split)
    except ManifestError as err:
        log.error("%s", err)
        return EXIT_USAGE
    write_manifest(found, args.out)
    print(json.dumps({"manifest": str(args.out), "rows": len(found.rows), "splits": iter_splits(found.rows),
                      "missing_videos": len(found.missing)}, indent=2))
    return 0


def emit_result(result: dict, out: Path | None) -> int:
    """Print the JSON result (the command's output); with ``out``, write it there and its pictures beside it."""
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        pictures = write_pictures(result, out)
        log.info("wrote %s%s", out, "".join(f", {p.name}" for p in pictures))
    print(text)
    return 0


def _register_with_tvts_train_cli() -> None:
    from tvts_train import cli

    if "eval" not in cli.COMMANDS:  # importing this module twice must not register twice
        cli.register(cli.Command("eval", EVAL_HELP, add_protocol_parsers, lambda args: args.func(args)))


_register_with_tvts_train_cli()


# ----------------------------------------------------------------------------- sort-eval

SORT_EVAL_HELP = "transcript-sorting accuracy of a pretraining run on held-out windows, with controls"


def add_sort_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from tvts_train.eval.sorting import CONTROLS, SortEvalOptions

    d = SortEvalOptions()
    parser.add_argument("--run", required=True, type=Path, help="run folder of `tvts-train pretrain`")
    parser.add_argument("--data", required=True, help="held-out corpus, shards folder, glob or list file")
    parser.add_argument("--tag", default=None, help="checkpoint tag (default: the latest)")
    parser.add_argument("--controls", nargs="+", choices=CONTROLS, default=list(CONTROLS))
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--mask-ratio", type=float, default=None, help="default: the run's training ratio")
    parser.add_argument("--seed", type=int, default=d.seed, help="masks and frame shuffles")
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here too")


def run_sort_eval_command(args: argparse.Namespace) -> int:
    from tvts_train.eval.sorting import SortEvalError, SortEvalOptions, evaluate_sorting

    options = SortEvalOptions(controls=tuple(args.controls), batch_size=args.batch_size, mask_ratio=args.mask_ratio,
                              seed=args.seed, max_windows=args.max_windows, tag=args.tag)
    try:
        result = evaluate_sorting(args.run, args.data, options, device=args.device)
    except (FileNotFoundError, SortEvalError) as err:
        log.error("%s", err)
        return EXIT_USAGE
    return emit_result(result, args.out)


def _register_sort_eval() -> None:
    from tvts_train import cli

    if "sort-eval" not in cli.COMMANDS:
        cli.register(cli.Command("sort-eval", SORT_EVAL_HELP, add_sort_eval_arguments, run_sort_eval_command))


_register_sort_eval()
