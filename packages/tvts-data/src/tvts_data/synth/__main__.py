"""``python -m tvts_data.synth sample OUT [--n N --seed S]`` | ``python -m tvts_data.synth bad OUT``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from .badcorpus import make_bad_corpus
from .corpus import make_sample_corpus

log = logging.getLogger("tvts_data.synth")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tvts_data.synth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="narrated videos with captions in every format + truth.json")
    sample.add_argument("out", help="output folder (created)")
    sample.add_argument("--n", type=int, default=6, help="number of videos (default 6)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--seconds", type=float, nargs=2, default=(23.0, 28.0), metavar=("MIN", "MAX"),
                        help="video length range in seconds (default 23 28)")
    bad = commands.add_parser("bad", help="broken inputs + expected.json (video id -> expected error kind)")
    bad.add_argument("out", help="output folder (created)")
    bad.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "sample":
        corpus = make_sample_corpus(args.out, n_videos=args.n, seconds=tuple(args.seconds), seed=args.seed)
        log.info("wrote %d videos and %s", len(corpus.videos), corpus.truth_path)
    else:
        expected = make_bad_corpus(args.out, seed=args.seed)
        log.info("wrote %d videos; expected error kinds in %s/expected.json", len(expected), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
