"""A corpus of broken inputs, each with the error kind the corpus builder must record for it.

``make_bad_corpus(out_dir)`` returns ``{video_id: expected}`` and writes the same, with the case name,
to ``expected.json``. ``expected`` is one kind or several joined by ``|`` (any of them is right).
Error kinds (the ``error_kind`` of the ledger row that ends the video):

- ``video_unreadable``: the video file cannot be opened or decoded. Cases: ``corrupt`` (random
  bytes named .mp4), ``zero_bytes`` (empty file), ``truncated_moov_at_end`` (an mp4 with its index at
  the end, cut at 40%: no index, nothing decodes).
- ``video_unreadable|window_outside_frames|ok``: ``truncated`` is a web-style mp4 (index first) cut
  at 40%. Its index still promises the full length, so probing succeeds and the first 40% decodes; a
  builder may reject it when a frame past the cut fails, drop every window that reaches past the last
  decodable frame (``window_outside_frames``, when no window fits before the cut), or keep the windows
  that do fit. All are right; a window of frozen frames past the cut, or an internal error, is not.
- ``no_video_stream``: ``audio_only``, an mp4 holding only an AAC track.
- ``captions_malformed``: ``malformed_captions``, a json3 file cut short (invalid JSON).
- ``captions_empty``: ``empty_captions``, a json3 file with an empty ``events`` list.
- ``language``: ``foreign_language``, German speech with only ``<id>.de.vtt`` beside it.
- ``times_backwards``: ``times_backwards``, a json3 whose events from the middle on start 5 s earlier
  than they should (a corrupt or concatenated track).
- ``too_short``: ``too_short``, a good 3 s video with good captions: shorter than any window.
- ``ok``: ``good_a``, ``good_b``: good videos with good captions, which must still yield windows.

Every video except the good ones has exactly one thing wrong, so the expected kind is unambiguous.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from tvts_data.captions import Word, write_json3, write_vtt_auto

from .corpus import make_script, narrated_video, youtube_like_id
from .speech import speak_script
from .video import VideoError, ffmpeg_binary

log = logging.getLogger(__name__)

ERROR_KINDS = ("video_unreadable", "window_outside_frames", "no_video_stream", "captions_malformed",
               "captions_empty", "language", "times_backwards", "too_short")
GOOD_SECONDS = 16.0  # long enough for one window of the default span (15 s) and of the tests' configs
SHORT_SECONDS = 3.0
TRUNCATE_AT = 0.4
GERMAN = ("der rote Würfel bewegt sich nach links und der blaue Kreis springt nach oben "
          "jetzt wird das Quadrat grün und die Kugel rollt in die Ecke").split()


@dataclass(frozen=True)
class BadCase:
    name: str
    video_id: str
    expected: str  # an error kind, "ok", or alternatives joined by "|"


class _Builder:
    """Writes the cases into one folder, sharing rendered videos where the video is not the point."""

    def __init__(self, root: Path, seed: int, good_seconds: float):
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.good_seconds = good_seconds
        self.cases: list[BadCase] = []

    def new_id(self, name: str, expected: str) -> str:
        vid = youtube_like_id(self.rng)
        self.cases.append(BadCase(name, vid, expected))
        return vid

    def narrated(self, vid: str, seconds: float, faststart: bool = True, voice: str = "en-us",
                 sentences: list[list[str]] | None = None) -> list[Word]:
        sentences = sentences or make_script(self.rng, int(seconds * 4))
        return narrated_video(self.root / f"{vid}.mp4", seconds, 25, int(self.rng.integers(2**31)),
                              sentences, voice=voice, faststart=faststart)

    def caption(self, vid: str, text: str, suffix: str = ".en.json3") -> None:
        (self.root / f"{vid}{suffix}").write_text(text, encoding="utf-8")


def make_bad_corpus(out_dir: str | Path, seed: int = 0, good_seconds: float = GOOD_SECONDS) -> dict[str, str]:
    """Write the broken (and two good) inputs; return ``{video_id: expected error kind}``.

    ``good_seconds`` is the length of every video that is not meant to be too short; a run whose
    windows are longer than the default ones needs longer videos for the good ones to yield windows.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    # seed offset: the ids never collide with those of a sample corpus made with the same seed
    b = _Builder(root, seed + 7919, good_seconds)
    _good_videos(b)
    _broken_videos(b)
    _broken_captions(b)
    _too_short_and_foreign(b)
    expected = {c.video_id: c.expected for c in b.cases}
    doc = {c.video_id: {"case": c.name, "expected": c.expected} for c in b.cases}
    (root / "expected.json").write_text(json.dumps(doc, indent=1))
    log.info("bad corpus of %d videos in %s: %s", len(b.cases), root,
             ", ".join(f"{c.name}={c.video_id}" for c in b.cases))
    return expected


def _good_videos(b: _Builder) -> None:
    """Two good videos, and a copy of the first (index first, as on the web) cut at 40%."""
    vid = b.new_id("good_a", "ok")
    captions = write_json3(b.narrated(vid, b.good_seconds, faststart=True))
    b.caption(vid, captions)
    _truncated_copy(b, vid, "truncated", "video_unreadable|window_outside_frames|ok", captions)
    vid = b.new_id("good_b", "ok")
    b.caption(vid, write_vtt_auto(b.narrated(vid, b.good_seconds)), ".en.vtt")


def _broken_videos(b: _Builder) -> None:
    """Bad video files, each with good captions, so that the video is the only problem."""
    words = _any_words()
    vid = b.new_id("corrupt", "video_unreadable")
    (b.root / f"{vid}.mp4").write_bytes(b.rng.bytes(200_000))
    b.caption(vid, write_json3(words))
    vid = b.new_id("zero_bytes", "video_unreadable")
    (b.root / f"{vid}.mp4").write_bytes(b"")
    b.caption(vid, write_json3(words))
    vid = b.new_id("audio_only", "no_video_stream")
    _audio_only(b, b.root / f"{vid}.mp4", words)
    b.caption(vid, write_json3(words))


def _any_words() -> list[Word]:
    """Plausible timed words for captions of a video that never plays."""
    return [Word(w, 0.5 + 0.6 * k, 0.5 + 0.6 * k + 0.45) for k, w in enumerate("the red box moves left".split())]


def _audio_only(b: _Builder, path: Path, words: list[Word]) -> None:
    with tempfile.TemporaryDirectory(prefix="tvts-synth-") as tmp:
        wav = Path(tmp) / "speech.wav"
        speak_script([w.text for w in words], wav, max_seconds=b.good_seconds)
        stream = ffmpeg.output(ffmpeg.input(str(wav)).audio, str(path), acodec="aac", aac_coder="fast",
                               audio_bitrate="64k")
        try:
            stream.global_args("-hide_banner", "-loglevel", "error").overwrite_output().run(
                cmd=ffmpeg_binary(), capture_stdout=True, capture_stderr=True)
        except ffmpeg.Error as exc:
            raise VideoError(f"ffmpeg failed writing {path}: {exc.stderr.decode(errors='replace')}") from exc


def _truncated_copy(b: _Builder, source: str, name: str, expected: str, captions: str) -> None:
    """The first 40% of the bytes of ``source``'s mp4, with its good captions."""
    vid = b.new_id(name, expected)
    data = (b.root / f"{source}.mp4").read_bytes()
    (b.root / f"{vid}.mp4").write_bytes(data[:int(len(data) * TRUNCATE_AT)])
    b.caption(vid, captions)


def _broken_captions(b: _Builder) -> None:
    """A good video with its index at the end, rendered once; copies of it with broken caption files,
    and one cut at 40% (no index left) with good captions."""
    base = b.new_id("malformed_captions", "captions_malformed")
    good = write_json3(b.narrated(base, b.good_seconds, faststart=False))
    b.caption(base, good[:int(len(good) * 0.6)])
    _truncated_copy(b, base, "truncated_moov_at_end", "video_unreadable", good)
    vid = b.new_id("empty_captions", "captions_empty")
    shutil.copyfile(b.root / f"{base}.mp4", b.root / f"{vid}.mp4")
    b.caption(vid, json.dumps({"wireMagic": "pb3", "pens": [{}], "events": []}))
    vid = b.new_id("times_backwards", "times_backwards")
    shutil.copyfile(b.root / f"{base}.mp4", b.root / f"{vid}.mp4")
    b.caption(vid, json.dumps(backwards_json3(good, b.good_seconds / 2, 5.0)))


def backwards_json3(json3_text: str, after: float, jump: float) -> dict:
    """The json3 document with every event starting at or after ``after`` seconds moved ``jump`` s earlier."""
    doc = json.loads(json3_text)
    for event in doc["events"]:
        if event["tStartMs"] >= after * 1000:
            event["tStartMs"] = max(0, event["tStartMs"] - round(jump * 1000))
    return doc


def _too_short_and_foreign(b: _Builder) -> None:
    vid = b.new_id("too_short", "too_short")
    b.caption(vid, write_json3(b.narrated(vid, SHORT_SECONDS)))
    vid = b.new_id("foreign_language", "language")
    words = b.narrated(vid, b.good_seconds, voice="de", sentences=[list(GERMAN)])
    b.caption(vid, write_vtt_auto(words, language="de"), ".de.vtt")
