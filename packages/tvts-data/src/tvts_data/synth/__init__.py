"""Synthetic inputs with known truth, for the demo (`make prepare-data`), the tests and the benchmarks.

- :mod:`.timecode`: a frame's index painted into its pixels as a bar code, readable after resize+JPEG.
- :mod:`.video`: H.264 videos of moving shapes, constant frame rate, every frame carrying its index.
- :mod:`.speech`: espeak-ng narration with exact word times.
- :mod:`.corpus`: the sample corpus (videos + captions in every supported format + ``truth.json``).
- :mod:`.badcorpus`: broken inputs, each with the error kind the builder must record.

Command line: ``python -m tvts_data.synth sample OUT [--n N --seed S]`` and
``python -m tvts_data.synth bad OUT [--seed S]``.
"""

from .badcorpus import ERROR_KINDS, make_bad_corpus
from .corpus import FORMATS, WORD_LEVEL_FORMATS, SampleCorpus, SampleVideo, make_sample_corpus
from .speech import SpeechError, speak_script
from .timecode import paint_timecode, read_timecode
from .video import VideoError, render_video

__all__ = [
    "ERROR_KINDS",
    "FORMATS",
    "WORD_LEVEL_FORMATS",
    "SampleCorpus",
    "SampleVideo",
    "SpeechError",
    "VideoError",
    "make_bad_corpus",
    "make_sample_corpus",
    "paint_timecode",
    "read_timecode",
    "render_video",
    "speak_script",
]
