"""What each stored JPEG quality costs in fidelity, next to what the video codec already cost.

Renders camera-like videos (`CameraScene`, 640x360, 25 fps, the H.264 settings of ``bench_train.py``),
decodes every ``--every``-th frame, resizes source and decoded frame alike to the stored size (short side
256, bilinear), and reports median PSNR of: the H.264 frame against its source, the stored JPEG against
the H.264 frame (what the frames stage adds), and the stored JPEG against the source (the whole
departure from the clean picture), for each quality. With ``bench_train.py --jpeg-quality Q`` (loader
speed, bytes per window) this is the trade-off behind ``frames.jpeg_quality`` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import decord
import numpy as np
from PIL import Image

from bench_train import BENCH_DIR, machine
from tvts_data.media import resized_size
from tvts_data.synth.video import CameraScene, render_video

log = logging.getLogger("bench_jpeg_quality")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    """Encode as the frames stage does (PIL, 4:2:0) and decode."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def measure(videos: int, seconds: float, every: int, qualities: list[int], short_side: int) -> dict:
    size = (640, 360)
    out_w, out_h = resized_size(*size, short_side)
    scores: dict[str, list[float]] = {"h264_vs_source": []}
    for q in qualities:
        scores[f"q{q}_vs_h264"], scores[f"q{q}_vs_source"] = [], []
    with tempfile.TemporaryDirectory(prefix="bench-jpeg-") as tmp:
        for v in range(videos):
            path = Path(tmp) / f"v{v}.mp4"
            render_video(path, seconds=seconds, fps=25, size=size, seed=v, keyint=250, scene=CameraScene(*size, seed=v))
            reader = decord.VideoReader(str(path), num_threads=1)
            picks = list(range(0, len(reader), every))
            decoded = reader.get_batch(picks).asnumpy()  # (N, H, W, 3)
            scene = CameraScene(*size, seed=v)  # a fresh scene replays the same frames (its grain is sequential)
            sources = {k: scene.frame(k) for k in range(picks[-1] + 1)}
            for j, k in enumerate(picks):
                src = np.asarray(Image.fromarray(sources[k]).resize((out_w, out_h), Image.BILINEAR))
                h264 = np.asarray(Image.fromarray(decoded[j]).resize((out_w, out_h), Image.BILINEAR))
                scores["h264_vs_source"].append(psnr(src, h264))
                for q in qualities:
                    stored = jpeg_roundtrip(h264, q)
                    scores[f"q{q}_vs_h264"].append(psnr(h264, stored))
                    scores[f"q{q}_vs_source"].append(psnr(src, stored))
            log.info("video %d: %d frames compared", v, len(picks))
    return {k: {"median_db": float(np.median(x)), "frames": len(x)} for k, x in scores.items()}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "jpeg_quality.json")
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--every", type=int, default=25, help="compare every N-th frame")
    p.add_argument("--qualities", default="95,90,85,80,75")
    p.add_argument("--short-side", type=int, default=256)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    qualities = [int(q) for q in args.qualities.split(",")]
    report = {"benchmark": "stored JPEG quality: PSNR against the H.264 frame and the source", "machine": machine(),
              "videos": args.videos, "seconds_per_video": args.seconds, "every": args.every,
              "stored_short_side": args.short_side,
              "psnr": measure(args.videos, args.seconds, args.every, qualities, args.short_side),
              "notes": ["source: CameraScene frames before H.264 (1/f texture, pans, cuts, sensor grain), resized "
                        "like the stored frame (PIL bilinear); h264: decord's decode of the rendered mp4 "
                        "(~1.5 Mbit/s at 640x360, keyframe every 10 s); stored: PIL JPEG 4:2:0 of the resized "
                        "h264 frame, as the frames stage writes it"]}
    report["total_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(" ".join(f"{k} {v['median_db']:.2f} dB" for k, v in report["psnr"].items()) + f"; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
