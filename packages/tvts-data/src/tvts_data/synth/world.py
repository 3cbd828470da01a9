"""The narrated world: videos whose speech describes what happens on screen, while it happens.

Each video is a sequence of events, one at a time, each lasting about as long as a transcript
(3-5 s by default). An event is one object (shape x colour) doing one thing with a clear temporal
signature: entering from the left or right, leaving through the top or bottom, growing, shrinking,
turning into another colour, splitting apart, merging, bouncing. While it happens, espeak-ng says
one sentence about it; the captions (YouTube json3 / auto-VTT / srv3, cycling) carry the true word
times, so the corpus builder reads this folder like any user's videos.

What makes the transcript-sorting task need the video:

- a sentence never says where it stands ("first", "then", "finally", numbers) or what comes next;
  every template can describe an event at any position;
- each video reuses a small pool of objects (2 by default) across all its events, so the K
  transcripts of a window often name the same object and only the action, seen in the frames,
  tells them apart in time.

``world.json`` beside the videos holds every event (kind, object, colours, start, end, sentence and
its timed words). No frame carries a timecode: a visible clock would give the order away.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from tvts_data.captions import Word

from .corpus import write_captions, youtube_like_id
from .shapes import COLORS, SHAPES, Backdrop, Sprite, blend, plural
from .speech import WordCache, sentence_seconds, speak_sentences
from .video import render_video

log = logging.getLogger(__name__)

# Words a sentence may never contain: they would tell where it stands or what surrounds it.
POSITIONAL_WORDS = frozenset(
    "first second third fourth fifth last then next now finally before after again later earlier "
    "begin begins beginning start starts end ends another once twice one two three four five".split()
)
WORLD_FORMATS = ("json3", "vtt", "srv3")  # YouTube's word-timed caption formats


@dataclass(frozen=True)
class WorldObject:
    shape: str  # one of shapes.SHAPES
    color: str  # a key of shapes.COLORS

    def words(self) -> dict[str, str]:
        return {"c": self.color, "s": self.shape, "ss": plural(self.shape)}


@dataclass(frozen=True)
class Event:
    """One thing one object does between ``start`` and ``end`` (seconds in the video)."""

    kind: str
    obj: WorldObject
    start: float
    end: float
    sentence: tuple[str, ...]
    color2: str | None = None  # the colour a "recolours" event ends in
    anchor: tuple[float, float] = (0.5, 0.5)  # where it happens, fractions of (width, height)
    speech_at: float = 0.0  # when the sentence starts (seconds in the video)
    words: tuple[Word, ...] = ()  # the spoken sentence with true times (filled after speech)

    def progress(self, t: float) -> float:
        """0 -> 1 across the event, holding still for the first and last 10% (the motion is unmistakable)."""
        u = (t - self.start) / (self.end - self.start)
        return min(1.0, max(0.0, (u - 0.1) / 0.8))

    def sprites(self, t: float, width: int, height: int) -> list[Sprite]:
        return EVENT_KINDS[self.kind].pose(self, self.progress(t), width, height)

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("obj", "words", "sentence")}
        return {**out, "shape": self.obj.shape, "color": self.obj.color, "sentence": " ".join(self.sentence),
                "words": [{"text": w.text, "start": w.start, "end": w.end} for w in self.words]}


Pose = Callable[[Event, float, int, int], list[Sprite]]


@dataclass(frozen=True)
class EventKind:
    templates: tuple[str, ...]  # {c} colour, {s} shape, {ss} shapes, {c2} the new colour
    pose: Pose  # (event, progress in [0, 1], width, height) -> what is on screen


def _lerp(a: float, b: float, u: float) -> float:
    return a + (b - a) * u


def _base(e: Event, width: int, height: int, **changes: float) -> Sprite:
    """The event's object at its anchor, normal size (13% of the width)."""
    sprite = Sprite(e.obj.shape, COLORS[e.obj.color], e.anchor[0] * width, e.anchor[1] * height, 0.13 * width)
    return sprite.moved(**changes) if changes else sprite


# Entering and leaving objects start (end) centred on the frame's edge: half of them is on screen,
# so the object the sentence names is visible for the whole event.
def _enter(side: int) -> Pose:  # side -1: from the left, +1: from the right
    def pose(e: Event, u: float, w: int, h: int) -> list[Sprite]:
        s = _base(e, w, h)
        return [s.moved(cx=_lerp(0.0 if side < 0 else float(w), s.cx, u))]
    return pose


def _leave(side: int) -> Pose:  # side -1: through the top, +1: through the bottom
    def pose(e: Event, u: float, w: int, h: int) -> list[Sprite]:
        s = _base(e, w, h)
        return [s.moved(cy=_lerp(s.cy, 0.0 if side < 0 else float(h), u))]
    return pose


def _scale(a: float, b: float) -> Pose:
    def pose(e: Event, u: float, w: int, h: int) -> list[Sprite]:
        s = _base(e, w, h)
        return [s.moved(size=s.size * _lerp(a, b, u))]
    return pose


def _recolour(e: Event, u: float, w: int, h: int) -> list[Sprite]:
    return [_base(e, w, h, size=0.17 * w).moved(color=blend(e.obj.color, e.color2 or e.obj.color, u))]


def _spread(a: float, b: float) -> Pose:  # halves apart by a -> b (fractions of the width)
    def pose(e: Event, u: float, w: int, h: int) -> list[Sprite]:
        s = _base(e, w, h, cx=0.5 * w, size=0.1 * w)
        offset = _lerp(a, b, u) * w
        return [s.moved(cx=s.cx - offset), s.moved(cx=s.cx + offset)]
    return pose


def _bounce(e: Event, u: float, w: int, h: int) -> list[Sprite]:
    s = _base(e, w, h, cy=0.7 * h)
    return [s.moved(cy=s.cy - 0.35 * h * abs(math.sin(2 * math.pi * u)))]  # two hops


EVENT_KINDS: dict[str, EventKind] = {
    "enters_left": EventKind(("the {c} {s} comes in from the left", "a {c} {s} enters from the left side",
                              "a {c} {s} slides in from the left"), _enter(-1)),
    "enters_right": EventKind(("the {c} {s} comes in from the right", "a {c} {s} enters from the right side",
                               "a {c} {s} slides in from the right"), _enter(+1)),
    "leaves_top": EventKind(("the {c} {s} leaves through the top", "the {c} {s} rises up out of view",
                             "a {c} {s} flies up and away"), _leave(-1)),
    "leaves_bottom": EventKind(("the {c} {s} drops out at the bottom", "the {c} {s} sinks down out of view",
                                "a {c} {s} falls down and away"), _leave(+1)),
    "grows": EventKind(("the {c} {s} grows bigger", "a {c} {s} swells up", "the {c} {s} gets larger and larger"),
                       _scale(0.35, 1.7)),
    "shrinks": EventKind(("the {c} {s} shrinks", "a {c} {s} gets smaller and smaller", "the {c} {s} shrinks to a dot"),
                         _scale(1.7, 0.35)),
    "recolours": EventKind(("the {c} {s} turns {c2}", "a {c} {s} changes colour to {c2}", "the {c} {s} fades to {c2}"),
                           _recolour),
    "splits": EventKind(("the {c} {s} splits apart", "a {c} {s} breaks in half", "the {c} {s} comes apart"),
                        _spread(0.0, 0.3)),
    "merges": EventKind(("a pair of {c} {ss} join together", "the {c} {ss} merge into a single {s}",
                         "a pair of {c} {ss} come together"), _spread(0.3, 0.0)),
    "bounces": EventKind(("the {c} {s} bounces up and down", "a {c} {s} hops in place", "the {c} {s} jumps up and down"),
                         _bounce),
}


@dataclass(frozen=True)
class WorldConfig:
    videos: int = 8
    events: tuple[int, int] = (7, 10)  # events per video, inclusive range
    event_seconds: tuple[float, float] = (3.0, 5.0)  # drawn per event, lengthened if the sentence needs it
    objects_per_video: int = 2  # the pool every event of a video draws its object from
    fps: int = 10
    size: int = 96  # square frames, px
    formats: tuple[str, ...] = WORLD_FORMATS
    seed: int = 0
    lead_seconds: float = 0.5  # silence and empty backdrop before the first event and after the last
    kinds: tuple[str, ...] = tuple(EVENT_KINDS)


@dataclass(frozen=True)
class WorldVideo:
    id: str
    video_path: Path
    caption_path: Path
    format: str
    fps: int
    duration: float
    size: int
    events: tuple[Event, ...]

    @property
    def words(self) -> list[Word]:
        return [w for e in self.events for w in e.words]

    def to_json(self) -> dict:
        return {"id": self.id, "video": self.video_path.name, "caption": self.caption_path.name,
                "format": self.format, "fps": self.fps, "duration": self.duration, "size": self.size,
                "events": [e.to_json() for e in self.events]}


class WorldScene:
    """Frame ``i`` of a world video: the backdrop and whatever the event at ``i / fps`` shows."""

    def __init__(self, events: Sequence[Event], fps: int, size: int, rng: np.random.Generator) -> None:
        self.events, self.fps, self.size = list(events), fps, size
        self.starts = [e.start for e in self.events]
        self.backdrop = Backdrop(size, size, rng)

    def event_at(self, t: float) -> Event | None:
        i = bisect.bisect_right(self.starts, t) - 1
        return self.events[i] if i >= 0 and t < self.events[i].end else None

    def frame(self, index: int) -> np.ndarray:
        t = index / self.fps
        event = self.event_at(t)
        return self.backdrop.render(event.sprites(t, self.size, self.size) if event else [])


def make_sentence(kind: str, obj: WorldObject, color2: str | None, rng: np.random.Generator) -> tuple[str, ...]:
    template = EVENT_KINDS[kind].templates[int(rng.integers(len(EVENT_KINDS[kind].templates)))]
    words = template.format(c2=color2 or "", **obj.words()).split()
    # "a orange square" -> "an orange square"
    return tuple("an" if w == "a" and nxt[0] in "aeiou" else w for w, nxt in zip(words, words[1:] + ["x"]))


def draw_objects(rng: np.random.Generator, n: int) -> list[WorldObject]:
    """``n`` objects that differ in shape and in colour (so a sentence names one of them unambiguously)."""
    shapes = rng.choice(SHAPES, size=n, replace=False)
    colors = rng.choice(list(COLORS), size=n, replace=False)
    return [WorldObject(str(s), str(c)) for s, c in zip(shapes, colors)]


def plan_events(rng: np.random.Generator, cfg: WorldConfig, cache: WordCache | None = None,
                speech_seconds: Callable[[Sequence[str]], float] | None = None) -> list[Event]:
    """Draw one video's events and sentences; each event lasts at least as long as its sentence needs.

    ``speech_seconds`` says how long a sentence takes to say (default: espeak-ng, cached); each
    sentence is placed 0.2-0.5 s into its event and ends at least 0.3 s before the event does.
    """
    say = speech_seconds or (lambda words: sentence_seconds(words, cache=cache))
    pool = draw_objects(rng, cfg.objects_per_video)
    n = int(rng.integers(cfg.events[0], cfg.events[1] + 1))
    events, cursor = [], cfg.lead_seconds
    for _ in range(n):
        kind = str(rng.choice(cfg.kinds))
        obj = pool[int(rng.integers(len(pool)))]
        color2 = str(rng.choice([c for c in COLORS if c != obj.color])) if kind == "recolours" else None
        sentence = make_sentence(kind, obj, color2, rng)
        lead = float(rng.uniform(0.2, 0.5))
        seconds = max(float(rng.uniform(*cfg.event_seconds)), lead + say(sentence) + 0.3)
        anchor = (float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65)))
        events.append(Event(kind, obj, round(cursor, 3), round(cursor + seconds, 3), sentence, color2, anchor,
                            speech_at=round(cursor + lead, 3)))
        cursor += seconds
    return events


def _narrate(events: list[Event], wav: Path, duration: float, cache: WordCache | None) -> list[Event]:
    """Speak every sentence at its planned start; the events with their true word times."""
    spoken = speak_sentences([(e.speech_at, e.sentence) for e in events], wav, duration, cache=cache)
    return [replace(e, words=tuple(words)) for e, words in zip(events, spoken)]


def make_world_video(root: Path, rng: np.random.Generator, cfg: WorldConfig, fmt: str,
                     cache: WordCache | None = None) -> WorldVideo:
    vid = youtube_like_id(rng)
    planned = plan_events(rng, cfg, cache)
    duration = math.ceil((planned[-1].end + cfg.lead_seconds) * cfg.fps) / cfg.fps  # whole frames
    video_path = root / f"{vid}.mp4"
    with tempfile.TemporaryDirectory(prefix="tvts-world-") as tmp:
        wav = Path(tmp) / "speech.wav"
        events = _narrate(planned, wav, duration, cache)
        scene = WorldScene(events, cfg.fps, cfg.size, rng)
        render_video(video_path, duration, fps=cfg.fps, size=(cfg.size, cfg.size), audio_wav=wav,
                     keyint=5 * cfg.fps, scene=scene)
    words = [w for e in events for w in e.words]
    sentences = [list(e.sentence) for e in events]
    caption = write_captions(video_path, fmt, words, sentences, duration, rng)
    return WorldVideo(vid, video_path, caption, fmt, cfg.fps, duration, cfg.size, tuple(events))


@dataclass(frozen=True)
class World:
    root: Path
    videos: list[WorldVideo] = field(default_factory=list)

    @property
    def truth_path(self) -> Path:
        return self.root / "world.json"


def make_world(out_dir: str | Path, cfg: WorldConfig = WorldConfig()) -> World:
    """Generate ``cfg.videos`` narrated videos with captions into ``out_dir``, and ``world.json``."""
    unknown = [k for k in cfg.kinds if k not in EVENT_KINDS]
    if unknown:
        raise ValueError(f"unknown event kinds {unknown}; choose from {sorted(EVENT_KINDS)}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    cache: WordCache = {}
    videos, t0 = [], time.perf_counter()
    for i in range(cfg.videos):
        videos.append(make_world_video(root, rng, cfg, cfg.formats[i % len(cfg.formats)], cache))
        log.info("world video %d/%d: %s (%.1f s, %d events)", i + 1, cfg.videos, videos[-1].id,
                 videos[-1].duration, len(videos[-1].events))
    world = World(root, videos)
    payload = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
               "videos": [v.to_json() for v in videos]}
    world.truth_path.write_text(json.dumps(payload, indent=1))
    log.info("narrated world of %d videos in %s (%.1f s)", len(videos), root, time.perf_counter() - t0)
    return world
