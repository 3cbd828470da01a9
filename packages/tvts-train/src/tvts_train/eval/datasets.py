"""Dataset adapters: the paper's benchmarks read as their releases ship them, turned into manifests.

``--dataset NAME --root PATH [--split N]`` works wherever ``--manifest`` does: the adapter reads the
official annotation files under ``root``, finds the videos, and writes the manifest the protocols read
(``video_path,label,split`` or ``video_path,caption,split``); ``tvts-train eval manifest`` writes the
same file for inspection. Videos the annotations name but the disk does not hold (many Kinetics clips
are gone from YouTube) are left out, counted and listed, never fatal.

===========  =====================================================================================
dataset      files read (under ``root``, searched recursively by name)
===========  =====================================================================================
``ssv2``     ``something-something-v2-labels.json`` (template -> class index), ``-train.json`` and
             ``-validation.json`` (``id``, ``template`` with ``[something]`` brackets), ``<id>.webm``.
             The literature's "test" set is the official validation set: split ``val``.
``k400``     ``train.csv``, ``validate.csv``/``val.csv``, ``test.csv`` (``label,youtube_id,time_start,
             time_end,split``), clips ``<youtube_id>_<start:06d>_<end:06d>.mp4``
``ucf101``   ``classInd.txt``, ``trainlist0N.txt`` (``Class/v_X.avi 1``), ``testlist0N.txt``, ``.avi``
``hmdb51``   ``testTrainMulti_7030_splits/<class>_test_splitN.txt`` (``video.avi 1|2|0``: train, test,
             unused), ``<class>/<video>.avi``
``msrvtt``   ``MSRVTT_data.json`` (``sentences``: ``video_id``, ``caption``), ``MSRVTT_train.9k.csv``
             (``video_id``) and ``MSRVTT_JSFUSION_test.csv`` (``video_id``, ``sentence``: the 1k-A test,
             one caption a video), ``<video_id>.mp4``
``didemo``   ``train_data.json``/``val_data.json``/``test_data.json`` (``video``, ``description``,
             ``times``): paragraph-to-video, each video's descriptions in time order joined
``msvd``     ``youtube_mapping.txt`` (``<clip> vidN``), ``AllVideoDescriptions.txt`` (``<clip> caption``),
             ``<clip>.avi``; splits by ``vidN``: 1-1200 train, 1201-1300 val, 1301-1970 test
``lsmdc``    ``LSMDC16_annos_training.csv``, ``LSMDC16_annos_val.csv``,
             ``LSMDC16_challenge_1000_publictect.csv`` (tab-separated: clip, 4 times, sentence),
             ``<clip>.avi`` (or ``.mp4``)
===========  =====================================================================================
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvts_train.eval.clips import ManifestError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov")


@dataclass
class DatasetRows:
    """What an adapter found: manifest rows for the videos on disk and the names of those that are not."""

    column: str  # "label" (classification) or "caption" (text retrieval)
    rows: list[dict[str, str]] = field(default_factory=list)  # video_path (absolute), label|caption, split
    missing: list[str] = field(default_factory=list)  # videos named by the annotations, absent on disk

    def add(self, video: Path | None, name: str, value: str, split: str) -> None:
        if video is None:
            self.missing.append(name)
        else:
            self.rows.append({"video_path": str(video), self.column: value, "split": split})


class VideoIndex:
    """Every video file under a root, by file name and by stem (datasets nest their videos differently)."""

    def __init__(self, root: Path) -> None:
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                self.by_name.setdefault(path.name, path)
                self.by_stem.setdefault(path.stem, path)

    def find(self, name: str) -> Path | None:
        """A video by file name (``v_X.avi``) or by stem (``78687``, any container)."""
        return self.by_name.get(Path(name).name) or self.by_stem.get(Path(name).stem)


def _find_file(root: Path, *names: str) -> Path:
    for name in names:
        hits = sorted(root.rglob(name))
        if hits:
            return hits[0]
    raise ManifestError(f"{root}: none of {list(names)} found; is --root the dataset's folder?")


def _lines(path: Path) -> list[str]:
    """The non-blank lines of a release's text file, as written (fields may be tab-separated)."""
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _two_columns(path: Path) -> dict[str, str]:
    """A release's whitespace-separated ``key value`` lines (classInd.txt, youtube_mapping.txt) as a dict."""
    return dict(line.split() for line in _lines(path))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None


# ----------------------------------------------------------------------------- classification


def _ssv2(root: Path, split_no: int | None) -> DatasetRows:
    labels = _read_json(_find_file(root, "something-something-v2-labels.json", "labels.json"))
    index, out = VideoIndex(root), DatasetRows("label")
    for split, name in (("train", "something-something-v2-train.json"), ("val", "something-something-v2-validation.json")):
        for item in _read_json(_find_file(root, name)):
            template = item["template"].replace("[", "").replace("]", "")  # "Putting [something] on a surface"
            if template not in labels:
                raise ManifestError(f"{name}: template {item['template']!r} of video {item['id']} is not in the labels file")
            out.add(index.find(str(item["id"])), str(item["id"]), template, split)  # the class, readable
    return out


_K400_SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def _k400(root: Path, split_no: int | None) -> DatasetRows:
    index, out = VideoIndex(root), DatasetRows("label")
    files = [p for n in ("train.csv", "validate.csv", "val.csv", "test.csv") for p in sorted(root.rglob(n))]
    if not files:
        raise ManifestError(f"{root}: no Kinetics train.csv / validate.csv / test.csv found")
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                clip = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
                split = _K400_SPLITS.get(row.get("split") or path.stem, path.stem)
                if row.get("label"):
                    out.add(index.find(clip + ".mp4"), clip, row["label"], split)
    return out


def _ucf101(root: Path, split_no: int | None) -> DatasetRows:
    n = split_no or 1
    classes = set(_two_columns(_find_file(root, "classInd.txt")).values())  # "1 ApplyEyeMakeup"
    index, out = VideoIndex(root), DatasetRows("label")
    for split, name in (("train", f"trainlist0{n}.txt"), ("test", f"testlist0{n}.txt")):
        for line in _lines(_find_file(root, name)):
            relative = line.split()[0]  # "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
            label = relative.split("/")[0]
            if label not in classes:
                raise ManifestError(f"{name}: class {label!r} is not in classInd.txt")
            out.add(index.find(relative), relative, label, split)
    return out


_HMDB_SPLITS = {"1": "train", "2": "test"}  # 0: not used in this split


def _hmdb51(root: Path, split_no: int | None) -> DatasetRows:
    n = split_no or 1
    files = sorted(root.rglob(f"*_test_split{n}.txt"))
    if not files:
        raise ManifestError(f"{root}: no testTrainMulti_7030_splits/*_test_split{n}.txt found")
    index, out = VideoIndex(root), DatasetRows("label")
    for path in files:
        label = path.name[: -len(f"_test_split{n}.txt")]
        for line in _lines(path):
            parts = line.split()
            if len(parts) == 2 and parts[1] in _HMDB_SPLITS:
                out.add(index.find(parts[0]), parts[0], label, _HMDB_SPLITS[parts[1]])
    return out


# ----------------------------------------------------------------------------- text retrieval


def _msrvtt(root: Path, split_no: int | None) -> DatasetRows:
    data = _read_json(_find_file(root, "MSRVTT_data.json"))
    train_ids = []
    with open(_find_file(root, "MSRVTT_train.9k.csv"), newline="", encoding="utf-8") as fh:
        train_ids = [row["video_id"] for row in csv.DictReader(fh)]
    captions: dict[str, list[str]] = {}
    for sentence in data["sentences"]:
        captions.setdefault(sentence["video_id"], []).append(sentence["caption"])
    index, out = VideoIndex(root), DatasetRows("caption")
    for vid in train_ids:
        video = index.find(vid + ".mp4")
        for caption in captions.get(vid, []):
            out.add(video, vid, caption, "train")
    with open(_find_file(root, "MSRVTT_JSFUSION_test.csv"), newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):  # the 1k-A test: one caption per video
            out.add(index.find(row["video_id"] + ".mp4"), row["video_id"], row["sentence"], "test")
    return out


def _didemo(root: Path, split_no: int | None) -> DatasetRows:
    index, out = VideoIndex(root), DatasetRows("caption")
    for split, name in (("train", "train_data.json"), ("val", "val_data.json"), ("test", "test_data.json")):
        paragraphs: dict[str, list[tuple[float, str]]] = {}
        for item in _read_json(_find_file(root, name)):
            first_time = min((t[0] for t in item.get("times") or [[0, 0]]), default=0)
            paragraphs.setdefault(item["video"], []).append((first_time, item["description"].strip()))
        for video, parts in paragraphs.items():  # paragraph-to-video: the descriptions in time order
            out.add(index.find(video), video, " ".join(d for _, d in sorted(parts, key=lambda p: p[0])), split)
    return out


def _msvd_split(vid: str) -> str:
    n = int(re.sub(r"\D", "", vid) or 0)
    return "train" if n <= 1200 else "val" if n <= 1300 else "test"


def _msvd(root: Path, split_no: int | None) -> DatasetRows:
    clips = _two_columns(_find_file(root, "youtube_mapping.txt"))  # "<youtube clip> vid<n>"
    index, out = VideoIndex(root), DatasetRows("caption")
    for line in _lines(_find_file(root, "AllVideoDescriptions.txt")):
        if line.startswith("#"):
            continue
        clip, _, caption = line.partition(" ")
        if clip in clips and caption.strip():
            out.add(index.find(clip + ".avi"), clip, caption.strip(), _msvd_split(clips[clip]))
    return out


def _lsmdc(root: Path, split_no: int | None) -> DatasetRows:
    index, out = VideoIndex(root), DatasetRows("caption")
    files = (("train", "LSMDC16_annos_training.csv"), ("val", "LSMDC16_annos_val.csv"),
             ("test", "LSMDC16_challenge_1000_publictect.csv"))
    for split, name in files:
        for line in _lines(_find_file(root, name)):
            fields = line.split("\t")
            if len(fields) >= 6 and fields[-1].strip():
                out.add(index.find(fields[0] + ".avi") or index.find(fields[0]), fields[0], fields[-1].strip(), split)
    return out


@dataclass(frozen=True)
class Adapter:
    name: str
    read: Callable[[Path, int | None], DatasetRows]
    splits: tuple[int, ...] = ()  # the official numbered splits (--split N), if any
    column: str = "label"  # what its rows carry: "label" (classification) or "caption" (text retrieval)


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    Adapter("ssv2", _ssv2), Adapter("k400", _k400), Adapter("ucf101", _ucf101, (1, 2, 3)),
    Adapter("hmdb51", _hmdb51, (1, 2, 3)), Adapter("msrvtt", _msrvtt, column="caption"),
    Adapter("didemo", _didemo, column="caption"), Adapter("msvd", _msvd, column="caption"),
    Adapter("lsmdc", _lsmdc, column="caption"),
)}


def adapters_for(column: str) -> list[str]:
    """The adapters whose rows a protocol reading ``column`` ("label" / "caption") can use."""
    return sorted(name for name, adapter in ADAPTERS.items() if adapter.column == column)


def read_dataset(name: str, root: str | Path, split: int | None = None) -> DatasetRows:
    """The manifest rows of dataset ``name`` under ``root`` (see the module docstring)."""
    if name not in ADAPTERS:
        raise ManifestError(f"unknown dataset {name!r}; adapters: {sorted(ADAPTERS)}")
    adapter, root = ADAPTERS[name], Path(root)
    if not root.is_dir():
        raise ManifestError(f"--root {root}: not a folder")
    if split is not None and split not in adapter.splits:
        raise ManifestError(f"{name} has {'splits ' + str(list(adapter.splits)) if adapter.splits else 'one official split'}; "
                            f"--dataset-split {split} is not one of them")
    found = adapter.read(root, split)
    if not found.rows:
        raise ManifestError(f"{name} under {root}: the annotations name {len(found.missing)} videos and none is on "
                            f"disk (first: {found.missing[:3]}); is --root the folder that holds the videos?")
    if found.missing:
        log.warning("%s: %d of %d videos named by the annotations are not on disk (left out, listed in the "
                    "manifest's .missing.txt)", name, len(found.missing), len(found.missing) + len(found.rows))
    return found


def write_manifest(found: DatasetRows, path: str | Path) -> Path:
    """Write the rows as a CSV manifest (and ``<path>.missing.txt`` when videos were missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["video_path", found.column, "split"])
        writer.writeheader()
        writer.writerows(found.rows)
    missing = path.with_name(path.name + ".missing.txt")
    if found.missing:
        missing.write_text("\n".join(found.missing) + "\n", encoding="utf-8")
    return path


def iter_splits(rows: Iterable[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    return counts
