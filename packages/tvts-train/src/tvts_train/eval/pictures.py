"""Pictures of an evaluation, written next to its JSON: what people would rather look at than read.

- ``<out>.confusion.png``: the confusion matrix (rows: true class, row-normalised) and the most frequent
  confusions by name, for the classification protocols (linear probe, fine-tuning);
- ``<out>.retrieval.png``: a few queries with their top-5 neighbours, right ones framed green, wrong
  ones red, for video-to-video retrieval;
- ``<out>.curves.png``: the per-epoch history of the training protocols (fine-tuning, text retrieval).

Each is drawn from what the result JSON holds (``confusion``, ``examples``, ``history``), so a JSON kept
from an earlier run can be drawn again (:func:`write_pictures`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAX_MATRIX_CLASSES = 40  # above this a matrix is unreadable: only the top confusions are drawn


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def top_confusions(confusion: dict[str, Any], n: int = 15) -> list[tuple[str, str, int]]:
    """The ``n`` most frequent (true class, predicted class, count) pairs off the diagonal."""
    matrix, classes = np.asarray(confusion["matrix"]), confusion["classes"]
    off = [(classes[i], classes[j], int(matrix[i, j])) for i in range(len(classes)) for j in range(len(classes))
           if i != j and matrix[i, j] > 0]
    return sorted(off, key=lambda t: -t[2])[:n]


def confusion_png(confusion: dict[str, Any], path: Path, title: str = "") -> Path:
    plt = _pyplot()
    matrix, classes = np.asarray(confusion["matrix"], dtype=float), confusion["classes"]
    worst = top_confusions(confusion)
    show_matrix = len(classes) <= MAX_MATRIX_CLASSES
    fig, axes = plt.subplots(1, 2 if show_matrix else 1, figsize=(14 if show_matrix else 8, 6.5), squeeze=False)
    if show_matrix:
        ax = axes[0, 0]
        rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)))
        ax.set_yticks(range(len(classes)))
        ax.set_xticklabels([c[:24] for c in classes], rotation=90, fontsize=6)
        ax.set_yticklabels([c[:24] for c in classes], fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        accuracy = np.trace(matrix) / max(matrix.sum(), 1)
        ax.set_title(f"confusion (row-normalised), top-1 {100 * accuracy:.1f}%", fontsize=9)
    ax = axes[0, -1]
    labels = [f"{t[:28]} -> {p[:28]}" for t, p, _ in worst][::-1]
    ax.barh(range(len(worst)), [c for _, _, c in worst][::-1], color="#c44")
    ax.set_yticks(range(len(worst)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("clips")
    ax.set_title("most frequent confusions (true -> predicted)" if worst else "no confusions", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _middle_frame(video: str, size: int = 96) -> np.ndarray:
    """The middle frame of a video, short side ``size`` (grey when it cannot be read)."""
    import av

    try:
        with av.open(video) as container:
            stream = container.streams.video[0]
            frames = stream.frames or 0
            for n, frame in enumerate(container.decode(video=0)):
                if n >= frames // 2:
                    scale = size / min(frame.width, frame.height)
                    return frame.to_ndarray(format="rgb24", width=round(frame.width * scale) // 2 * 2,
                                            height=round(frame.height * scale) // 2 * 2)
    except (av.error.FFmpegError, IndexError, OSError) as err:
        log.warning("retrieval picture: cannot read %s (%s)", video, err)
    return np.full((size, size, 3), 128, np.uint8)


def retrieval_png(examples: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    plt = _pyplot()
    k = max((len(e["neighbours"]) for e in examples), default=0)
    fig, axes = plt.subplots(len(examples), k + 1, figsize=(1.6 * (k + 1), 1.6 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples):
        row[0].imshow(_middle_frame(example["query"]))
        row[0].set_title(f"query: {example['label'][:22]}", fontsize=6)
        for ax, hit in zip(row[1:], example["neighbours"]):
            ax.imshow(_middle_frame(hit["path"]))
            color = "#2a2" if hit["right"] else "#c22"
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(3)
            ax.set_title(f"{hit['label'][:18]} ({hit['similarity']:.2f})", fontsize=6, color=color)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title or "queries and their top neighbours (green: same class)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_png(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    plt = _pyplot()
    keys = [k for k in history[0] if k not in ("epoch",) and isinstance(history[0][k], (int, float))]
    keys += [k for k in {k for h in history for k in h} - set(keys) - {"epoch"}
             if isinstance(next(h[k] for h in history if k in h), (int, float))]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_pictures(result: dict[str, Any], out: Path) -> list[Path]:
    """The pictures a result JSON supports, next to ``out`` (``<out stem>.<kind>.png``)."""
    title = f"{result.get('protocol', '')}: {result.get('manifest', '')}"
    written = []
    stem = out.with_suffix("")
    if result.get("confusion"):
        written.append(confusion_png(result["confusion"], stem.with_name(stem.name + ".confusion.png"), title))
    if result.get("examples"):
        written.append(retrieval_png(result["examples"], stem.with_name(stem.name + ".retrieval.png"), title))
    if result.get("history"):
        written.append(curves_png(result["history"], stem.with_name(stem.name + ".curves.png"), title))
    return written
