"""Benchmark: download throughput (videos/s) with 1 vs N concurrent downloads in one worker process.

The loopback server (tests/data/loopback.py) adds a fixed latency to every request, standing in for
the network; each video costs two requests (captions, then the video). Downloads are network-bound,
so N threads should overlap the waits: the ratio N/1 shows how much one worker gains from running
several downloads at once. Real YouTube adds extraction requests and rate limits, so absolute numbers
here are an upper bound; the ratio is the point.

    .venv/bin/python bench/bench_download.py --videos 24 --concurrency 8 --latency-ms 200
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tvts_data.download import DownloadConfig, download_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
from loopback import LoopbackServer, Rule  # noqa: E402

log = logging.getLogger("bench_download")


def make_fixture(folder: Path) -> bytes:
    out = folder / "fx.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "10",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", "-movflags", "+faststart", str(out)], check=True)
    return out.read_bytes()


def make_infos(srv: LoopbackServer, video: bytes, n: int, latency_s: float) -> list[dict[str, Any]]:
    caption = json.dumps({"events": [{"tStartMs": 0, "dDurationMs": 1000, "segs": [{"utf8": "hi"}]}]}).encode()
    infos = []
    for i in range(n):
        vid = f"bench{i:06d}"  # 11 characters, like a YouTube ID
        v = srv.add(f"/{vid}/v.mp4", video, "video/mp4", Rule(latency_s=latency_s))
        c = srv.add(f"/{vid}/c.json3", caption, "application/json", Rule(latency_s=latency_s))
        infos.append({
            "id": vid, "extractor": "youtube", "extractor_key": "Youtube", "title": vid, "duration": 10,
            "webpage_url": f"https://www.youtube.com/watch?v={vid}",
            "formats": [{"format_id": "18", "url": v, "ext": "mp4", "protocol": "http",
                         "vcodec": "avc1.42c01e", "acodec": "mp4a.40.2", "height": 240, "width": 320}],
            "automatic_captions": {"en-orig": [{"ext": "json3", "url": c}]},
        })
    return infos


def run(infos: list[dict[str, Any]], concurrency: int, raw_dir: Path) -> dict[str, Any]:
    cfg = DownloadConfig(retries=0)
    cpu0, start = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda info: download_video(info, raw_dir, cfg), infos))
    seconds = time.perf_counter() - start
    ok = sum(r.status == "ok" for r in results)
    cpu = time.process_time() - cpu0  # this process's CPU (downloads and the server's threads)
    return {"concurrency": concurrency, "videos": len(infos), "ok": ok, "seconds": round(seconds, 3),
            "videos_per_s": round(len(infos) / seconds, 3), "cpu_s": round(cpu, 2),
            "mb": round(sum(r.bytes for r in results) / 1e6, 2)}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8, help="N of the N-vs-1 comparison")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="added to every request")
    parser.add_argument("--out", type=Path, default=Path("bench/results/download.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if shutil.which("ffmpeg") is None:
        log.error("ffmpeg is needed to make the fixture video")
        return 2
    with tempfile.TemporaryDirectory(prefix="tvts-bench-") as tmp, LoopbackServer() as srv:
        video = make_fixture(Path(tmp))
        results = []
        for conc in (1, args.concurrency):
            infos = make_infos(srv, video, args.videos, args.latency_ms / 1000)
            results.append(run(infos, conc, Path(tmp) / f"raw-{conc}"))
            log.info("concurrency %d: %.2f videos/s (%d/%d ok, %.1f s)", conc, results[-1]["videos_per_s"],
                     results[-1]["ok"], args.videos, results[-1]["seconds"])
            srv.resources.clear()
    report = {
        "benchmark": "download_video through yt-dlp against a loopback server with per-request latency",
        "machine": machine(),
        "settings": {"videos": args.videos, "latency_ms_per_request": args.latency_ms,
                     "requests_per_video": 2, "video_bytes": len(video)},
        "results": results,
        "ratio_n_over_1": round(results[1]["videos_per_s"] / results[0]["videos_per_s"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("ratio %d/1 = %.2f; wrote %s", args.concurrency, report["ratio_n_over_1"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
