"""The storage bill of a corpus: bytes per window, per source-video minute, against the source videos,
and projected to a corpus of any size (`tvts-data inspect --project-videos`).

Pre-decoded frames are bigger than the videos they come from: a window stores ``segments x candidates``
JPEGs, and windows overlap. The levers (candidates, short side, JPEG quality, window stride) and their
measured effect are in docs/benchmarks.md ("Storage"), from ``bench/bench_data.py --sections storage``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.compute as pc
import pyarrow.parquet as pq

from tvts_data.corpus import OUTPUT_DIRS, Corpus
from tvts_data.remote import file_size, list_files

YT_TEMPORAL_VIDEOS = 6_000_000  # the paper's pretraining corpus (Sec. 4.1)


@dataclass(frozen=True)
class StorageBill:
    """What a built corpus occupies, over the videos that gave at least one window."""

    videos: int
    windows: int
    shard_bytes: int  # the Parquet shards on disk (frames, times, texts, metadata)
    source_seconds: float  # summed duration of those videos
    source_bytes: int | None  # their video files, None when the files are gone (delete_raw_after_frames)

    @property
    def bytes_per_window(self) -> float:
        return self.shard_bytes / max(self.windows, 1)

    @property
    def bytes_per_source_minute(self) -> float:
        return self.shard_bytes / max(self.source_seconds / 60, 1e-9)

    @property
    def windows_per_source_minute(self) -> float:
        return self.windows / max(self.source_seconds / 60, 1e-9)

    @property
    def ratio_to_source(self) -> float | None:
        """Shard bytes per byte of source video (> 1: the frames outweigh the videos)."""
        return self.shard_bytes / self.source_bytes if self.source_bytes else None

    def project(self, videos: int, minutes_per_video: float | None = None) -> dict[str, float]:
        """Windows and bytes for ``videos`` videos of ``minutes_per_video`` (default: this corpus's mean)."""
        minutes = minutes_per_video if minutes_per_video is not None else self.source_seconds / 60 / max(self.videos, 1)
        total_minutes = videos * minutes
        out = {"videos": float(videos), "minutes_per_video": minutes,
               "windows": total_minutes * self.windows_per_source_minute,
               "shard_bytes": total_minutes * self.bytes_per_source_minute}
        if self.source_bytes:
            out["source_bytes"] = total_minutes * self.source_bytes / max(self.source_seconds / 60, 1e-9)
        return out


def measure_corpus(corpus: Corpus | str) -> StorageBill:
    """The bill of a corpus built by `tvts-data prepare` (a folder or a URI), from its shards and words."""
    location = corpus if isinstance(corpus, str) else str(corpus.root)
    fs, shard_files = list_files(location, OUTPUT_DIRS["frames"])
    windows, shard_bytes, with_windows = 0, 0, set()
    for info in shard_files:
        if not info.base_name.startswith("shard-"):
            continue
        table = pq.read_table(info.path, columns=["video_id"], filesystem=fs)
        windows += table.num_rows
        shard_bytes += info.size
        with_windows.update(pc.unique(table.column("video_id")).to_pylist())
    seconds, source_bytes, missing = 0.0, 0, False
    seen: set[str] = set()
    fs, words_files = list_files(location, OUTPUT_DIRS["words"])
    for info in words_files:
        for row in pq.read_table(info.path, columns=["video_id", "video_path", "duration"],
                                 filesystem=fs).to_pylist():
            if row["video_id"] not in with_windows or row["video_id"] in seen:
                continue
            seen.add(row["video_id"])
            seconds += row["duration"] or 0.0
            size = file_size(row["video_path"]) if row["video_path"] else None
            missing = missing or size is None
            source_bytes += size or 0
    return StorageBill(videos=len(seen), windows=windows, shard_bytes=shard_bytes, source_seconds=seconds,
                       source_bytes=None if missing or not seen else source_bytes)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    raise AssertionError("unreachable")


def format_bill(bill: StorageBill, project_videos: int = YT_TEMPORAL_VIDEOS,
                minutes_per_video: float | None = None) -> str:
    """The lines `tvts-data inspect` prints."""
    if not bill.windows:
        return "storage: no windows in shards yet"
    lines = [f"storage: {human_bytes(bill.shard_bytes)} of shards for {bill.windows} windows of {bill.videos} videos "
             f"({bill.source_seconds / 60:.1f} source minutes): {human_bytes(bill.bytes_per_window)} per window, "
             f"{bill.windows_per_source_minute:.1f} windows and {human_bytes(bill.bytes_per_source_minute)} "
             "per source minute"]
    if bill.ratio_to_source is not None:
        lines.append(f"source videos: {human_bytes(bill.source_bytes or 0)}; the shards are "
                     f"{bill.ratio_to_source:.1f}x the videos they come from")
    else:
        lines.append("source videos: not all on disk (deleted after frames?), no ratio")
    p = bill.project(project_videos, minutes_per_video)
    whose = "given" if minutes_per_video is not None else "this corpus's mean"
    line = (f"projection for {project_videos:,} videos of {p['minutes_per_video']:.1f} min ({whose}): "
            f"{p['windows']:,.0f} windows, {human_bytes(p['shard_bytes'])} of shards")
    if "source_bytes" in p:
        line += f" vs {human_bytes(p['source_bytes'])} of source video at this corpus's bitrate"
    lines.append(line)
    return "\n".join(lines)
