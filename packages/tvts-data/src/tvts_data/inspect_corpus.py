"""`tvts-data inspect`: the stats of a corpus and a contact sheet of a few windows.

One band per window: the middle candidate of every segment as a strip of thumbnails, and under it a
time axis over [S_1, E_K] with the K transcripts drawn under their spans [S_k, E_k] (gaps visible),
so a person sees at once whether frames, times and words line up.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from tvts_data.corpus import OUTPUT_DIRS, Corpus
from tvts_data.remote import list_files
from tvts_data.schema import check_version

THUMB_H = 72
TEXT_H = 86
COLOURS = [(230, 85, 13), (49, 130, 189), (49, 163, 84), (117, 107, 177), (99, 99, 99)]


def sample_windows(corpus: Corpus | str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` windows of a corpus (a folder or a URI: one row group read per shard it opens)."""
    fs, shard_files = list_files(corpus if isinstance(corpus, str) else corpus.root, OUTPUT_DIRS["frames"])
    rows: list[dict[str, Any]] = []
    for info in (i for i in shard_files if i.base_name.startswith("shard-")):
        with fs.open_input_file(info.path) as f:
            pf = pq.ParquetFile(f)
            check_version(pf.schema_arrow, info.path)
            rows.extend(pf.read_row_group(0).slice(0, n - len(rows)).to_pylist())
        if len(rows) >= n:
            break
    return rows


def frame_image(row: dict[str, Any], i: int) -> Image.Image:
    data = row["frames"][i]
    if row["frame_format"] == "raw":
        arr = np.frombuffer(data, np.uint8).reshape(row["height"], row["width"], 3)
        return Image.fromarray(arr)
    return Image.open(io.BytesIO(data)).convert("RGB")


def window_band(row: dict[str, Any], width: int) -> Image.Image:
    M, C = row["segments"], row["candidates"]
    thumb_w = width // M
    band = Image.new("RGB", (width, THUMB_H + TEXT_H), "white")
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default()
    for m in range(M):
        img = frame_image(row, m * C + C // 2).resize((thumb_w, THUMB_H))
        band.paste(img, (m * thumb_w, 0))
    t0, t1 = row["starts"][0], row["ends"][-1]
    x = lambda t: int((t - t0) / (t1 - t0) * (width - 1))  # noqa: E731
    for k, (s, e, text) in enumerate(zip(row["starts"], row["ends"], row["texts"])):
        colour = COLOURS[k % len(COLOURS)]
        draw.rectangle([x(s), THUMB_H + 2, x(e), THUMB_H + 8], fill=colour)
        draw.text((x(s), THUMB_H + 10), f"{s:.1f}-{e:.1f}s", fill=colour, font=font)
        lines = textwrap.wrap(text or "(empty)", max(8, (x(e) - x(s)) // 6))[:5]
        for j, line in enumerate(lines):
            draw.text((x(s), THUMB_H + 22 + 12 * j), line, fill="black", font=font)
    draw.text((2, 2), row["window_id"], fill="yellow", font=font)
    return band


def contact_sheet(corpus: Corpus | str, out_png: Path, n: int = 4, width: int = 1280) -> int:
    """Write the sheet; returns how many windows it shows (0: no shards yet, nothing written)."""
    rows = sample_windows(corpus, n)
    if not rows:
        return 0
    bands = [window_band(r, width) for r in rows]
    sheet = Image.new("RGB", (width, sum(b.height + 6 for b in bands)), (40, 40, 40))
    y = 0
    for b in bands:
        sheet.paste(b, (0, y))
        y += b.height + 6
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return len(rows)
