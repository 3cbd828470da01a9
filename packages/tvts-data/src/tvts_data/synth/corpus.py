"""The sample corpus: videos with real speech and caption files whose every word time is known.

Per video, in ``out_dir``: ``<id>.mp4`` (moving shapes, frame index painted in, espeak-ng narration)
and one caption file beside it, the format cycling over ``formats``:

==============  ====================  =========================================================
format          file                  content
==============  ====================  =========================================================
``json3``       ``<id>.en.json3``     YouTube auto-captions, word offsets
``vtt``         ``<id>.en.vtt``       YouTube auto-caption VTT (inline word times, triplicated)
``srv3``        ``<id>.en.srv3``      YouTube srv3, word offsets
``srt``         ``<id>.en.srt``       segments of ~6 words, no word timing
``yttemporal``  ``<id>.json``         YT-Temporal annotation (``subtitles``/``denoised``/``info``)
``vtt_plain``   ``<id>.en.vtt``       plain WebVTT segments of ~6 words, no word timing
==============  ====================  =========================================================

``truth.json`` holds, per video, the spoken words with their true times (from :mod:`.speech`), fps,
duration and format. The YT-Temporal annotation imitates the release: its ``subtitles`` are "ASR"
words with a few homophone errors ("to" heard as "two"), its ``denoised`` ``cleanasr`` text is the
script as spoken; the builder aligns the second onto the first, so the expected transcript is the
true script with the subtitles' times.

Durations are whole frames. The default length, 23-28 s, gives every video at least one window with
the default window settings whatever transcript length is drawn: K=4 transcripts of l in {3, 4, 5} s
with 1 s gaps span up to 4 * 5 + 3 = 23 s, and stride mode stops at the first span that does not fit.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvts_data.captions import Word, write_json3, write_srt, write_srv3, write_vtt_auto, write_vtt_plain

from .speech import WordCache, speak_script
from .video import render_video

log = logging.getLogger(__name__)

FORMATS = ("json3", "vtt", "srv3", "srt", "yttemporal", "vtt_plain")
WORD_LEVEL_FORMATS = frozenset({"json3", "vtt", "srv3", "yttemporal"})
SEGMENT_WORDS = 6  # words per segment of the segment-only formats (srt, plain VTT)
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

COLORS = ("red", "blue", "green", "yellow", "orange", "purple", "white", "black")
SHAPES = ("square", "circle", "box", "ball", "block")
PLACES = ("left", "right", "top", "bottom", "middle", "corner")
TEMPLATES = (
    "the {c} {s} moves to the {p}",
    "now the {s} turns {c}",
    "a {c} {s} slides across the screen",
    "look at the {c} {s} near the {p}",
    "the {s} stops and then moves again",
    "two shapes pass each other",
    "the {c} {s} is bigger than the {c2} {s2}",
    "it bounces off the {p} edge",
)
# what a speech recogniser may write for a word: the YT-Temporal "subtitles" noise
HOMOPHONES = {"to": "two", "two": "to", "right": "write", "red": "read", "blue": "blew"}


@dataclass(frozen=True)
class SampleVideo:
    """One generated video and the truth about it."""

    id: str
    video_path: Path
    caption_path: Path
    words: list[Word]  # spoken words, true times in seconds
    fps: int
    duration: float  # seconds, whole frames
    format: str  # one of FORMATS
    language: str = "en"

    def to_json(self) -> dict:
        return {"id": self.id, "video": self.video_path.name, "caption": self.caption_path.name,
                "format": self.format, "language": self.language, "fps": self.fps,
                "duration": self.duration, "frames": round(self.duration * self.fps),
                "words": [{"text": w.text, "start": w.start, "end": w.end} for w in self.words]}


@dataclass(frozen=True)
class SampleCorpus:
    root: Path
    videos: list[SampleVideo] = field(default_factory=list)

    @property
    def truth_path(self) -> Path:
        return self.root / "truth.json"


def youtube_like_id(rng: np.random.Generator) -> str:
    """11 characters of YouTube's id alphabet; the first is alphanumeric so no tool reads it as an option."""
    first = _ID_ALPHABET[int(rng.integers(0, 62))]
    return first + "".join(_ID_ALPHABET[int(k)] for k in rng.integers(0, 64, size=10))


def make_script(rng: np.random.Generator, n_words: int) -> list[list[str]]:
    """Sentences of simple narration, at least ``n_words`` words in all."""
    sentences: list[list[str]] = []
    while sum(map(len, sentences)) < n_words:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        c, c2 = rng.choice(COLORS, size=2, replace=False)
        s, s2 = rng.choice(SHAPES, size=2, replace=False)
        sentences.append(template.format(c=c, c2=c2, s=s, s2=s2, p=rng.choice(PLACES)).split())
    return sentences


def segments(words: Sequence[Word], size: int = SEGMENT_WORDS) -> list[tuple[float, float, str]]:
    """Consecutive runs of ``size`` words as (start, end, text), as a manual caption would have them."""
    runs = [words[k:k + size] for k in range(0, len(words), size)]
    return [(run[0].start, run[-1].end, " ".join(w.text for w in run)) for run in runs]


def write_captions(video_path: Path, fmt: str, words: list[Word], sentences: list[list[str]],
                   duration: float, rng: np.random.Generator) -> Path:
    """Write the caption file of ``fmt`` beside ``video_path``; return its path."""
    stem = video_path.with_suffix("")
    writers = {
        "json3": (".en.json3", lambda: write_json3(words)),
        "vtt": (".en.vtt", lambda: write_vtt_auto(words)),
        "srv3": (".en.srv3", lambda: write_srv3(words)),
        "srt": (".en.srt", lambda: write_srt(segments(words))),
        "vtt_plain": (".en.vtt", lambda: write_vtt_plain(segments(words), language="en")),
        "yttemporal": (".json", lambda: json.dumps(yttemporal_annotation(words, sentences, duration, rng,
                                                                         title=video_path.stem))),
    }
    if fmt not in writers:
        raise ValueError(f"unknown sample caption format {fmt!r}; choose from {FORMATS}")
    suffix, write = writers[fmt]
    path = stem.with_name(stem.name + suffix)
    path.write_text(write(), encoding="utf-8")
    return path


def yttemporal_annotation(words: list[Word], sentences: list[list[str]], duration: float,
                          rng: np.random.Generator, title: str) -> dict:
    """A YT-Temporal per-video annotation: noisy timed ASR words plus the clean spoken text."""
    heard = [HOMOPHONES.get(w.text, w.text) if rng.random() < 0.15 else w.text for w in words]
    subtitles = [{"word": "[Music]", "time": 0.0}]  # ASR tags non-speech; the builder must drop it
    subtitles += [{"word": h, "time": round(w.start, 3)} for h, w in zip(heard, words)]
    denoised, k = [], 0
    for sentence in sentences:
        spoken = words[k:k + len(sentence)]
        if not spoken:
            break
        denoised.append({"cleanasr": " ".join(w.text for w in spoken),
                         "start": round(spoken[0].start, 3), "end": round(spoken[-1].end, 3)})
        k += len(spoken)
    return {"subtitles": subtitles, "denoised": denoised,
            "info": {"duration": duration, "title": f"Synthetic shapes {title}", "display_id": title}}


def narrated_video(video_path: Path, duration: float, fps: int, seed: int, sentences: list[list[str]],
                   voice: str = "en-us", size: tuple[int, int] = (320, 240), faststart: bool = True,
                   cache: WordCache | None = None) -> list[Word]:
    """Render ``video_path`` with ``sentences`` spoken until 0.5 s before the end; the spoken words."""
    script = [w for sentence in sentences for w in sentence]
    with tempfile.TemporaryDirectory(prefix="tvts-synth-") as tmp:
        wav = Path(tmp) / "speech.wav"
        words = speak_script(script, wav, voice=voice, max_seconds=duration, cache=cache)
        render_video(video_path, duration, fps=fps, size=size, seed=seed, audio_wav=wav, faststart=faststart)
    return words


def make_sample_corpus(
    out_dir: str | Path,
    n_videos: int = 6,
    seconds: tuple[float, float] = (23, 28),
    seed: int = 0,
    formats: Sequence[str] = FORMATS,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
) -> SampleCorpus:
    """Generate ``n_videos`` narrated videos with captions (format cycling over ``formats``) and truth.json."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    videos = []
    t0 = time.perf_counter()
    for i in range(n_videos):
        videos.append(_sample_video(root, rng, formats[i % len(formats)], seconds, fps, size))
        log.info("sample video %d/%d: %s (%s, %.2f s, %d words)", i + 1, n_videos, videos[-1].id,
                 videos[-1].format, videos[-1].duration, len(videos[-1].words))
    corpus = SampleCorpus(root, videos)
    corpus.truth_path.write_text(json.dumps({"videos": [v.to_json() for v in videos]}, indent=1))
    _warn_stale(corpus)
    log.info("sample corpus of %d videos in %s (%.1f s)", n_videos, root, time.perf_counter() - t0)
    return corpus


def _sample_video(root: Path, rng: np.random.Generator, fmt: str, seconds: tuple[float, float], fps: int,
                  size: tuple[int, int]) -> SampleVideo:
    vid = youtube_like_id(rng)
    duration = round(rng.uniform(*seconds) * fps) / fps
    sentences = make_script(rng, n_words=int(duration * 4))  # more than fits: speech stops near the end
    video_path = root / f"{vid}.mp4"
    words = narrated_video(video_path, duration, fps, int(rng.integers(2**31)), sentences, size=size)
    caption = write_captions(video_path, fmt, words, sentences, duration, rng)
    return SampleVideo(vid, video_path, caption, words, fps, duration, fmt)


def _warn_stale(corpus: SampleCorpus) -> None:
    """Files we did not write (an earlier, larger run) would be read as part of the corpus: say so."""
    ours = {corpus.truth_path} | {p for v in corpus.videos for p in (v.video_path, v.caption_path)}
    stale = sorted(p.name for p in corpus.root.iterdir() if p not in ours)
    if stale:
        log.warning("%s also holds %d files this run did not write (%s); a corpus builder pointed at it "
                    "will read them too: use an empty folder", corpus.root, len(stale), ", ".join(stale[:5]))
