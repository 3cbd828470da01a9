"""Generated inputs: ``tvts-data synth {sample,bad,world,temporal-bench} ...``
(also ``python -m tvts_data.synth ...``).

- ``sample OUT``: narrated videos with captions in every format + truth.json (the quick-start corpus);
- ``bad OUT``: broken inputs + expected.json (video id -> expected error kind);
- ``world --output DIR``: the narrated world, speech that describes the video (world.json);
- ``temporal-bench --output DIR``: the order-only labelled benchmark (manifest.csv, classes.json).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

log = logging.getLogger("tvts_data.synth")


def add_synth_commands(commands: argparse._SubParsersAction) -> None:
    """The generator sub-commands, for ``tvts-data synth`` and ``python -m tvts_data.synth``."""
    sample = commands.add_parser("sample", help="narrated videos with captions in every format + truth.json")
    sample.add_argument("out", help="output folder (created)")
    sample.add_argument("--n", type=int, default=6, help="number of videos (default 6)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--seconds", type=float, nargs=2, default=(23.0, 28.0), metavar=("MIN", "MAX"),
                        help="video length range in seconds (default 23 28)")
    sample.set_defaults(synth=_sample)
    bad = commands.add_parser("bad", help="broken inputs + expected.json (video id -> expected error kind)")
    bad.add_argument("out", help="output folder (created)")
    bad.add_argument("--seed", type=int, default=0)
    bad.set_defaults(synth=_bad)

    from .world import WorldConfig

    w = WorldConfig()
    world = commands.add_parser("world", help="the narrated world: one spoken sentence per on-screen event")
    world.add_argument("--output", required=True, help="output folder (created)")
    world.add_argument("--videos", type=int, default=w.videos)
    world.add_argument("--events", type=int, nargs=2, default=w.events, metavar=("MIN", "MAX"),
                       help=f"events per video (default {w.events[0]} {w.events[1]})")
    world.add_argument("--event-seconds", type=float, nargs=2, default=w.event_seconds, metavar=("MIN", "MAX"))
    world.add_argument("--objects", type=int, default=w.objects_per_video, help="objects per video")
    world.add_argument("--fps", type=int, default=w.fps)
    world.add_argument("--size", type=int, default=w.size, help="square frame side in px (even)")
    world.add_argument("--seed", type=int, default=w.seed)
    world.set_defaults(synth=_world)

    from .temporal_bench import BenchConfig

    b = BenchConfig()
    bench = commands.add_parser("temporal-bench", help="order-only labelled videos (manifest.csv, classes.json)")
    bench.add_argument("--output", required=True, help="output folder (created)")
    bench.add_argument("--train-per-class", type=int, default=b.train_per_class)
    bench.add_argument("--val-per-class", type=int, default=b.val_per_class)
    bench.add_argument("--frames", type=int, default=b.frames)
    bench.add_argument("--size", type=int, default=b.size)
    bench.add_argument("--seed", type=int, default=b.seed)
    bench.set_defaults(synth=_temporal_bench)


def _sample(args: argparse.Namespace) -> None:
    from .corpus import make_sample_corpus

    corpus = make_sample_corpus(args.out, n_videos=args.n, seconds=tuple(args.seconds), seed=args.seed)
    log.info("wrote %d videos and %s", len(corpus.videos), corpus.truth_path)


def _bad(args: argparse.Namespace) -> None:
    from .badcorpus import make_bad_corpus

    expected = make_bad_corpus(args.out, seed=args.seed)
    log.info("wrote %d videos; expected error kinds in %s/expected.json", len(expected), args.out)


def _world(args: argparse.Namespace) -> None:
    from .world import WorldConfig, make_world

    cfg = WorldConfig(videos=args.videos, events=tuple(args.events), event_seconds=tuple(args.event_seconds),
                      objects_per_video=args.objects, fps=args.fps, size=args.size, seed=args.seed)
    world = make_world(args.output, cfg)
    log.info("wrote %d videos and %s", len(world.videos), world.truth_path)


def _temporal_bench(args: argparse.Namespace) -> None:
    from .temporal_bench import BenchConfig, make_temporal_bench

    cfg = BenchConfig(train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                      frames=args.frames, size=args.size, seed=args.seed)
    make_temporal_bench(args.output, cfg)


def run_synth(args: argparse.Namespace) -> int:
    args.synth(args)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tvts_data.synth", description=__doc__)
    add_synth_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_synth(args)


if __name__ == "__main__":
    raise SystemExit(main())
