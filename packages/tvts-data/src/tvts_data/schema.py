"""The on-disk contract between the corpus builder and the trainer.

This module is the one thing both packages read (the trainer imports it, never Ray). It imports only
pyarrow, so importing it is cheap everywhere. Any change to a table below bumps ``SCHEMA_VERSION``; a
reader refuses files whose version it does not know instead of guessing.

Layout of a corpus directory (``tvts-data prepare --output DIR``)::

    DIR/
      sources.parquet            every input row, normalised (SOURCES), with its chunk number
      words/chunk-00000.parquet  one row per video: the timed words (WORDS)
      windows/chunk-00000.parquet one row per Eq. 1 window: spans, transcripts, word timings (WINDOWS)
      shards/shard-00000-000.parquet  one row per window: WINDOWS' metadata + decoded frames (SHARD)
      ledger/<stage>/chunk-00000.parquet  one row per video and stage (LEDGER); written last
      manifest.json              schema version, config, shard list with row counts and bytes
      stats.json                 counts per stage, per filter, per error kind

Videos are split into chunks of a fixed number of videos in sorted video-id order. A chunk is the unit
of work and of resume: its outputs are written to a temporary name and renamed, then its ledger part is
written. A chunk counts as done for a stage exactly when its ledger part exists.

Frames of a window (SHARD.frames) are stored segment-major: the span [S_1, E_K] is cut into
``segments`` (M) equal parts and each part keeps ``candidates`` (C) frames at evenly spaced times, so
``frames[m * C + c]`` is candidate c of segment m. The trainer draws one candidate per segment at
random every epoch (a fresh TSN sample) and the middle candidate (C odd) for evaluation.
``frame_times`` holds the presentation time in seconds of each stored frame, as decoded.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
VERSION_KEY = b"tvts.schema_version"

WORD = pa.struct([("text", pa.string()), ("start", pa.float64()), ("end", pa.float64())])

SOURCES = pa.schema(
    [
        ("video_id", pa.string()),  # unique key of a video everywhere downstream
        ("video_path", pa.string()),  # local file (or null before download)
        ("caption_path", pa.string()),  # caption file beside the video, null if none
        ("annotation_path", pa.string()),  # YT-Temporal annotation JSON, null if none
        ("kind", pa.string()),  # "local" | "yttemporal" | "youtube"
        ("chunk", pa.int32()),
    ]
)

WORDS = pa.schema(
    [
        ("video_id", pa.string()),
        ("video_path", pa.string()),
        ("duration", pa.float64()),  # seconds, from the container
        ("language", pa.string()),
        ("timing", pa.string()),  # "word" | "interpolated" | "asr" | "annotation"
        ("source_format", pa.string()),  # "json3" | "srv3" | "vtt" | "srt" | "yttemporal" | "asr:<backend>"
        ("words", pa.list_(WORD)),
    ]
)

_WINDOW_FIELDS = [
    ("window_id", pa.string()),  # "<video_id>:<window_index:05d>", unique in a corpus
    ("video_id", pa.string()),
    ("window_index", pa.int32()),
    ("video_path", pa.string()),
    ("duration", pa.float64()),
    ("language", pa.string()),
    ("timing", pa.string()),
    ("transcript_seconds", pa.float32()),  # l of Eq. 1
    ("starts", pa.list_(pa.float64())),  # S_k, k = 1..K, seconds
    ("ends", pa.list_(pa.float64())),  # E_k = S_k + l
    ("texts", pa.list_(pa.string())),  # the K transcripts in true temporal order
]

WINDOWS = pa.schema(_WINDOW_FIELDS + [("words", pa.list_(pa.list_(WORD)))])

SHARD = pa.schema(
    _WINDOW_FIELDS
    + [
        ("segments", pa.int16()),  # M
        ("candidates", pa.int16()),  # C frames kept per segment
        ("frame_format", pa.string()),  # "jpeg" | "raw" (raw: H*W*3 uint8, row-major RGB)
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("frame_times", pa.list_(pa.float32())),  # M*C seconds, segment-major
        ("frames", pa.list_(pa.binary())),  # M*C encoded frames, segment-major
    ]
)

LEDGER = pa.schema(
    [
        ("video_id", pa.string()),
        ("stage", pa.string()),  # "download" | "words" | "windows" | "frames"
        ("status", pa.string()),  # "ok" | "error" | "skipped"
        ("error_kind", pa.string()),  # stable machine-readable reason, null when ok
        ("message", pa.string()),  # the original error text, for a person
        ("outputs", pa.int64()),  # rows this stage produced for the video
        ("attempts", pa.int32()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        ("chunk", pa.int32()),
        ("details", pa.string()),  # JSON: per-filter drop counts and other per-stage facts
    ]
)

TABLES: dict[str, pa.Schema] = {
    "sources": SOURCES,
    "words": WORDS,
    "windows": WINDOWS,
    "shard": SHARD,
    "ledger": LEDGER,
}


class SchemaVersionError(ValueError):
    """A file was written by a schema version this code does not read."""


def with_version(schema: pa.Schema) -> pa.Schema:
    """The schema with the version stamped into its metadata, as every writer must store it."""
    return schema.with_metadata({VERSION_KEY: str(SCHEMA_VERSION).encode()})


def check_version(schema: pa.Schema, path: str) -> None:
    """Refuse a file whose stamped version differs from ours; say how to fix it."""
    meta = schema.metadata or {}
    found = meta.get(VERSION_KEY)
    if found is None:
        raise SchemaVersionError(f"{path}: no {VERSION_KEY.decode()} in the Parquet metadata; "
                                 "it was not written by tvts-data. Rebuild it with `tvts-data prepare`.")
    try:
        version = int(found)
    except ValueError:
        raise SchemaVersionError(f"{path}: schema version {found!r} in the Parquet metadata is not a number; "
                                 "the file was not written by tvts-data (or was edited). Rebuild it with "
                                 "`tvts-data prepare`.") from None
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(f"{path}: schema version {version}, this code reads {SCHEMA_VERSION}. "
                                 "Rebuild the corpus with this version of tvts-data, or install the "
                                 "tvts-data version that wrote it.")


def window_id(video_id: str, index: int) -> str:
    return f"{video_id}:{index:05d}"


# Columns written uncompressed and without a dictionary: JPEG bytes do not compress, and plain pages let a
# reader copy them straight out of a memory-mapped file (`make bench-train` measures the read). An
# encoding, not a schema change: files written either way read the same.
PLAIN_COLUMNS = frozenset({"frames"})


def chunk_name(chunk: int) -> str:
    return f"chunk-{chunk:05d}.parquet"


def shard_name(chunk: int, part: int) -> str:
    return f"shard-{chunk:05d}-{part:03d}.parquet"
