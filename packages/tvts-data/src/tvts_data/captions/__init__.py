"""Caption parsing: YouTube caption tracks and YT-Temporal annotations -> cleaned, word-timed transcripts.

``parse_caption_file(path)`` picks the parser from the registry ``CAPTION_PARSERS`` by extension or
content, cleans the words (``clean``) and returns a :class:`Transcript`. Importing this package
registers every format module; decisions about times, languages, cleaning and alignment are
documented in ``base``, ``clean``, ``align`` and each format module.
"""

from . import json3, srt, srv3, vtt, yttemporal  # noqa: F401  (importing registers the parsers)
from .align import align_clean_transcript
from .base import (
    CAPTION_PARSERS,
    CaptionError,
    Timing,
    TrackName,
    Transcript,
    Word,
    caption_language_from_name,
    caption_track_from_name,
    infer_format,
    interpolate_by_chars,
    parse_caption_file,
    parse_caption_text,
)
from .clean import clean_words
from .writers import (
    group_lines,
    write_json3,
    write_srt,
    write_srv1,
    write_srv3,
    write_vtt_auto,
    write_vtt_plain,
    write_yttemporal,
)

__all__ = [
    "CAPTION_PARSERS",
    "CaptionError",
    "Timing",
    "TrackName",
    "Transcript",
    "Word",
    "align_clean_transcript",
    "caption_language_from_name",
    "caption_track_from_name",
    "clean_words",
    "group_lines",
    "infer_format",
    "interpolate_by_chars",
    "parse_caption_file",
    "parse_caption_text",
    "write_json3",
    "write_srt",
    "write_srv1",
    "write_srv3",
    "write_vtt_auto",
    "write_vtt_plain",
    "write_yttemporal",
]
