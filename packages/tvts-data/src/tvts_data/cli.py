"""`tvts-data`: build a corpus (prepare), check a caption file (captions), look at a corpus (inspect),
retry what failed for a passing reason (retry-failed), generate inputs (synth)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from tvts_data.config import ConfigError, load_prepare_config
from tvts_data.remote import StorageError, filesystem_of, is_remote

log = logging.getLogger("tvts_data")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def summary_table(stats: dict) -> str:
    lines = [f"{'stage':<10}{'ok':>8}{'error':>8}{'outputs':>10}  errors by kind"]
    for stage in ("input", "download", "words", "windows", "frames"):
        s = stats["stages"].get(stage)
        if not s:
            continue
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(stats["errors"].get(stage, {}).items()))
        lines.append(f"{stage:<10}{s.get('ok', 0):>8}{s.get('error', 0):>8}{s.get('outputs', 0):>10}  {kinds}")
    videos = ", ".join(f"{n} {status}" for status, n in sorted(stats["videos"].items())) or "none"
    lines.append(f"videos: {videos}   windows in shards: {stats['windows']}   "
                 f"frame bytes: {stats['frames_bytes'] / 2**20:.1f} MiB")
    accounting = stats.get("window_accounting")
    if accounting:
        drops = ", ".join(f"{n} {kind}" for kind, n in accounting["dropped"].items()) or "none dropped"
        check = "" if accounting["adds_up"] else "  (does NOT add up: run `tvts-data retry-failed` or report it)"
        lines.append(f"windows planned: {accounting['planned']} = {accounting['stored']} stored + {drops}{check}")
    elif stats.get("window_filters"):
        lines.append(f"window filters: {stats['window_filters']}")
    return "\n".join(lines)


def cmd_prepare(args: argparse.Namespace) -> int:
    from tvts_data.runner import prepare

    overrides = list(args.set or [])
    if args.ray_address:
        overrides.append(f"run.ray_address={args.ray_address}")
    cfg = load_prepare_config(args.config, overrides)
    stages = tuple(s.strip() for s in args.stages.split(",")) if args.stages else None
    result = prepare(args.input, args.output, cfg, **({"stages": stages} if stages else {}))
    print(summary_table(result.stats))
    print(f"corpus: {result.location}  ({result.seconds:.1f} s)")
    return 0


def cmd_captions(args: argparse.Namespace) -> int:
    from tvts_data.captions import CaptionError, parse_caption_file

    try:
        tr = parse_caption_file(args.file, fmt=args.format)
    except CaptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        for w in tr.words:
            print(json.dumps({"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}, ensure_ascii=False))
        sys.stdout.flush()
    except BrokenPipeError:  # `tvts-data captions F | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    log.info("%s: %d words, timing=%s, language=%s", args.file, len(tr.words), tr.timing, tr.language)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from tvts_data.inspect_corpus import contact_sheet
    from tvts_data.storage import format_bill, measure_corpus

    fs, root = filesystem_of(args.dir)
    try:
        with fs.open_input_stream(f"{root}/stats.json") as f:
            stats = json.loads(f.read())
    except FileNotFoundError:
        print(f"error: {args.dir}/stats.json not found: {args.dir} is not a corpus built by `tvts-data prepare`",
              file=sys.stderr)
        return 1
    print(summary_table(stats))
    print(format_bill(measure_corpus(args.dir), args.project_videos, args.minutes_per_video))
    # a corpus in a bucket gets its sheet in the working folder
    out = Path(args.png or ("contact_sheet.png" if is_remote(args.dir) else Path(args.dir) / "contact_sheet.png"))
    shown = contact_sheet(args.dir, out, n=args.windows)
    print(f"contact sheet: {out} ({shown} windows)" if shown else "no shards yet: no contact sheet")
    return 0


def cmd_retry_failed(args: argparse.Namespace) -> int:
    from tvts_data.runner import retry_failed

    reopened = retry_failed(args.dir)
    print(f"reopened {sum(reopened.values())} retryable failures in {len(reopened)} chunks")
    if reopened and args.input:
        return cmd_prepare(argparse.Namespace(input=args.input, output=args.dir, config=args.config,
                                              set=args.set, ray_address=args.ray_address, stages=None))
    if reopened:
        print(f"run `tvts-data prepare --input <same input> --output {args.dir}` to retry them")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts-data", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="build a corpus: download, words, windows, frames")
    prep.add_argument("--input", required=True, help="video folder, manifest, ID list, info-JSON folder or corpus")
    prep.add_argument("--output", required=True)
    prep.add_argument("--config", help="YAML config (sections: input, download, asr, words, windows, frames, write, run)")
    prep.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one config field")
    prep.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded Ray)")
    prep.add_argument("--stages", help="comma-separated subset of download,words,windows,frames")
    prep.set_defaults(fn=cmd_prepare)

    cap = sub.add_parser("captions", help="print the parsed words of one caption file as JSON lines")
    cap.add_argument("file")
    cap.add_argument("--format", help="json3|srv3|vtt|srt|yttemporal (default: from the file)")
    cap.set_defaults(fn=cmd_captions)

    ins = sub.add_parser("inspect", help="print a corpus's stats and write a contact-sheet PNG")
    ins.add_argument("dir")
    ins.add_argument("--png", help="where to write the sheet (default DIR/contact_sheet.png; for a URI, "
                                   "./contact_sheet.png)")
    ins.add_argument("--windows", type=int, default=4)
    ins.add_argument("--project-videos", type=int, default=6_000_000,
                     help="project the storage bill to this many videos (default: YT-Temporal's 6M)")
    ins.add_argument("--minutes-per-video", type=float,
                     help="mean video length for the projection (default: this corpus's mean)")
    ins.set_defaults(fn=cmd_inspect)

    retry = sub.add_parser("retry-failed", help="rerun only the retryable download failures")
    retry.add_argument("dir")
    retry.add_argument("--input", help="the original input; given, prepare runs right away")
    retry.add_argument("--config")
    retry.add_argument("--set", action="append")
    retry.add_argument("--ray-address")
    retry.set_defaults(fn=cmd_retry_failed)

    from tvts_data.synth.__main__ import add_synth_commands, run_synth

    synth = sub.add_parser("synth", help="generate inputs: sample corpus, bad inputs, narrated world, "
                                         "order-only temporal benchmark")
    add_synth_commands(synth.add_subparsers(dest="generator", required=True))
    synth.set_defaults(fn=run_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.fn(args)
    except (ConfigError, FileNotFoundError, ValueError, StorageError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
