"""A frame index painted into the pixels as a bar code, readable after the pipeline's resize and JPEG.

Layout (fractions of the frame, so any aspect-keeping resize keeps it)::

    rows 0.40H..0.60H   a white band across the whole width (the quiet zone)
    cols 0.15W..0.85W   CELLS equal cells: black start guard, DATA_BITS bits of the index
                        (most significant first, black = 1), one even-parity bit, black stop guard

Why this survives what the corpus builder does to frames:

- Resizing: cells are ~3.5% of the width (6 px at short side 128, 12 px at 256) and the reader
  measures the code's extent in the image it is given instead of assuming a size.
- JPEG q=75 and H.264: only black and white are used (luma survives, chroma is subsampled); the
  reader averages the middle half of each cell over several rows and thresholds at mid-grey.
- A centre crop of up to 12% per side: the band is centred vertically and the code spans the middle
  70% of the width, so it stays whole with a white margin on both sides; the reader finds the guards
  as the outermost dark columns of the band's middle rows.

A frame whose code cannot be read (no guards, a cell that is neither black nor white, wrong parity)
raises ValueError: a test must never mistake a damaged code for another frame index.
"""

from __future__ import annotations

import numpy as np

DATA_BITS = 17  # up to 131,071 frames: 87 minutes at 25 fps
CELLS = DATA_BITS + 3  # start guard, data, parity, stop guard
MAX_INDEX = (1 << DATA_BITS) - 1
BAND = (0.40, 0.60)  # rows of the white band, fractions of the height
CODE = (0.15, 0.85)  # columns of the code, fractions of the width
_READ_ROWS = 0.02  # the reader averages rows within +-2% of the height around the centre
_MIN_CONTRAST = 40  # a cell mean must be this far from mid-grey (128) to count as black or white


def _cells(frame_index: int) -> list[int]:
    """1 = black for every cell, guards included."""
    bits = [(frame_index >> k) & 1 for k in range(DATA_BITS - 1, -1, -1)]
    parity = sum(bits) & 1  # makes the number of black data+parity cells even
    return [1, *bits, parity, 1]


def paint_timecode(frame: np.ndarray, frame_index: int) -> None:
    """Paint ``frame_index`` into ``frame`` (H, W, 3) uint8, in place."""
    if not 0 <= frame_index <= MAX_INDEX:
        raise ValueError(f"frame index {frame_index} is outside 0..{MAX_INDEX}; the bar code holds {DATA_BITS} bits")
    height, width = frame.shape[:2]
    top, bottom = round(BAND[0] * height), round(BAND[1] * height)
    frame[top:bottom] = 255
    edges = np.linspace(CODE[0] * width, CODE[1] * width, CELLS + 1).round().astype(int)
    for cell, black in enumerate(_cells(frame_index)):
        if black:
            frame[top:bottom, edges[cell]:edges[cell + 1]] = 0


def _profile(frame: np.ndarray) -> np.ndarray:
    """Mean brightness of each column over the band's middle rows, shape (W,)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
    height = frame.shape[0]
    half = max(1, round(_READ_ROWS * height))
    middle = height // 2
    rows = frame[middle - half:middle + half].astype(np.float32)
    return rows.mean(axis=(0, 2))


def read_timecode(frame: np.ndarray) -> int:
    """The frame index painted by :func:`paint_timecode`; ValueError when it cannot be read."""
    profile = _profile(frame)
    dark = np.flatnonzero(profile < 128)
    if dark.size == 0:
        raise ValueError("no timecode: the band across the middle of the frame has no dark cells")
    left, right = float(dark[0]), float(dark[-1] + 1)
    cell = (right - left) / CELLS
    if cell < 2.0:
        raise ValueError(f"timecode too small to read: {right - left:.0f} px for {CELLS} cells")
    means = [_cell_mean(profile, left + (k + 0.5) * cell, cell) for k in range(CELLS)]
    weak = [k for k, m in enumerate(means) if abs(m - 128) < _MIN_CONTRAST]
    if weak:
        raise ValueError(f"timecode unreadable: cells {weak} are neither black nor white "
                         f"(means {[round(means[k]) for k in weak]})")
    return _decode([int(m < 128) for m in means])


def _cell_mean(profile: np.ndarray, centre: float, cell: float) -> float:
    """Mean of the middle half of a cell: its edges are blurred by resizing and compression."""
    lo = int(np.floor(centre - cell / 4))
    hi = max(lo + 1, int(np.ceil(centre + cell / 4)))
    return float(profile[lo:hi].mean())


def _decode(cells: list[int]) -> int:
    if cells[0] != 1 or cells[-1] != 1:
        raise ValueError(f"timecode unreadable: guard cells are {cells[0]}, {cells[-1]}, expected black")
    bits, parity = cells[1:1 + DATA_BITS], cells[1 + DATA_BITS]
    if (sum(bits) + parity) & 1:
        raise ValueError("timecode unreadable: parity check failed (a cell was misread)")
    return int("".join(map(str, bits)), 2)
