"""``tvts-train``: the trainer's command line.

    tvts-train pretrain --deepspeed infra/deepspeed/zero2.json --config tiny --data out/sample \\
        --output runs/tiny [--max-steps N] [--resume] [--stop-after N] [--set key=value ...]
    tvts-train export --checkpoint runs/tiny/checkpoints [--tag step00000020] [--output FILE] [--config tiny]

Launch ``pretrain`` as a plain process (CPU or one GPU), under ``torchrun --nproc_per_node N -m
tvts_train.cli pretrain ...`` or under ``deepspeed [--hostfile H] --module tvts_train.cli pretrain ...``
(``--local_rank`` is accepted); see ``infra/deepspeed/README.md``.

Adding commands: a command is a :class:`Command` in :data:`COMMANDS`. Other modules contribute theirs
by calling :func:`register` at import time and being listed in :data:`COMMAND_MODULES` (the evaluation
commands will live in ``tvts_train/eval/cli.py``); a listed module that does not exist yet is skipped.
Arguments are parsed here and turned into config dataclasses; nothing below ``run`` sees the namespace.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EXIT_USAGE, EXIT_NONFINITE = 2, 3


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]  # returns the exit code


COMMANDS: dict[str, Command] = {}
COMMAND_MODULES: tuple[str, ...] = ("tvts_train.eval.cli",)  # each calls register() on import


def register(command: Command) -> Command:
    if command.name in COMMANDS:
        raise ValueError(f"tvts-train command {command.name!r} registered twice")
    COMMANDS[command.name] = command
    return command


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``["train.max_steps=5", ...]`` -> ``{"train.max_steps": "5"}`` (values are parsed by load_config)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def setup_logging() -> None:
    """INFO on rank 0, warnings only elsewhere (the rank is known from the launcher's env)."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [r{rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


# ----------------------------------------------------------------------------- pretrain


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deepspeed", type=Path, default=None,
                   help="DeepSpeed JSON (infra/deepspeed/*.json: cpu-zero0.json on a CPU, zero2.json on GPUs); "
                        "default: none, every DeepSpeed setting from the config (train.zero_stage, "
                        "train.precision, data.batch_size, train.grad_accum)")
    p.add_argument("--config", required=True, help="preset name (tiny, vit-b16-paper, ...) or YAML file")
    p.add_argument("--data", default=None,
                   help="corpus folder, shards folder, glob, or a text file of paths (default: data.shards)")
    p.add_argument("--output", required=True, type=Path, help="run folder (checkpoints, metrics, export)")
    p.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/latest")
    p.add_argument("--tag", dest="resume_tag", default=None,
                   help="with --resume: continue from this checkpoint (e.g. step00000300) instead of the latest")
    p.add_argument("--stop-after", type=int, default=None,
                   help="run at most N steps now, checkpoint and exit (time-limited jobs; the lr schedule "
                        "still spans max_steps)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)")
    p.add_argument("--allow-cpu-bf16", action="store_true", help="keep bf16/fp16 from the JSON on CPU")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def _pretrain_run(args: argparse.Namespace) -> int:
    from tvts_train.checkpoint import PoisonedWeightsError
    from tvts_train.config import ConfigError, load_config
    from tvts_train.train import NonFiniteLossError, RunOptions, RunSetupError, pretrain, replace_max_steps

    try:
        cfg = replace_max_steps(load_config(args.config, parse_overrides(args.overrides)), args.max_steps)
    except (ConfigError, argparse.ArgumentTypeError, ValueError) as err:
        log.error("%s", err)
        return EXIT_USAGE
    data = args.data or cfg.data.shards
    if not data:
        log.error("no training data: pass --data or set data.shards in the config")
        return EXIT_USAGE
    opts = RunOptions(deepspeed_config=args.deepspeed, data=data, output=args.output, resume=args.resume,
                      resume_tag=args.resume_tag, stop_after=args.stop_after, allow_cpu_bf16=args.allow_cpu_bf16,
                      local_rank=args.local_rank)
    try:
        result = pretrain(cfg, opts)
    except (NonFiniteLossError, PoisonedWeightsError) as err:
        log.error("%s", err)
        return EXIT_NONFINITE
    except (RunSetupError, FileNotFoundError) as err:
        log.error("%s", err)
        return EXIT_USAGE
    if result.export is not None:
        log.info("video encoder: %s", result.export)
    return 0


# ----------------------------------------------------------------------------- export


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder (RUN/checkpoints)")
    p.add_argument("--tag", default=None, help="checkpoint tag (default: the one in 'latest')")
    p.add_argument("--output", type=Path, default=None,
                   help="safetensors file (default: video_encoder.safetensors beside the checkpoint folder)")
    p.add_argument("--config", default=None,
                   help="preset/YAML to store as metadata (default: RUN/config.yaml when present)")


def _export_run(args: argparse.Namespace) -> int:
    from tvts_train.config import load_config
    from tvts_train.export import export_video_encoder

    run_config = args.checkpoint.parent / "config.yaml"
    config = args.config or (str(run_config) if run_config.is_file() else None)
    video_cfg = load_config(config).model.video if config else None
    out = args.output or args.checkpoint.parent / "video_encoder.safetensors"
    export_video_encoder(args.checkpoint, out, tag=args.tag, video_cfg=video_cfg)
    return 0


register(Command("pretrain", "pre-train TVTS with DeepSpeed ZeRO", _pretrain_args, _pretrain_run))
register(Command("export", "export the video encoder of a checkpoint as safetensors", _export_args, _export_run))


# ----------------------------------------------------------------------------- entry point


def _load_command_modules() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):  # a missing dependency inside it: real
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_command_modules()
    parser = argparse.ArgumentParser(prog="tvts-train", description=__doc__.split("\n\n")[0])
    # The deepspeed launcher puts --local_rank=N before the subcommand (`-m tvts_train.cli --local_rank=0
    # pretrain ...`); older launchers append it at the end, where `pretrain` accepts it too.
    parser.add_argument("--local_rank", "--local-rank", dest="launcher_local_rank", type=int, default=None,
                        help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    if args.launcher_local_rank is not None:
        os.environ["LOCAL_RANK"] = str(args.launcher_local_rank)
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    # Run the canonical module, not this __main__ copy: command modules register into tvts_train.cli.
    from tvts_train.cli import main as _main

    sys.exit(_main())
