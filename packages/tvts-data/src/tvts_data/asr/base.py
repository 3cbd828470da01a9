"""ASR interface and registry: a backend turns a 16 kHz mono WAV into a word-timed `Transcript`.

Backends register under a name in `ASR_BACKENDS` (a factory taking the `AsrConfig`); the words stage
picks one by ``asr.backend``. A backend loads its model once per process and thread (`get_backend`),
because loading dominates the cost of a short video. Its words go through the caption library's
`clean_words`, so ASR transcripts are cleaned exactly like caption transcripts.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

from tvts_data.captions import Timing, Transcript, Word, clean_words

log = logging.getLogger(__name__)

ASR_MODES = ("captions", "asr", "captions_then_asr")


@dataclass(frozen=True)
class AsrConfig:
    backend: str = "pocketsphinx"  # a key of ASR_BACKENDS
    model_path: str | None = None  # local model folder; required by faster-whisper (nothing is downloaded)
    language: str = "en"  # spoken language passed to the backend
    mode: str = "captions_then_asr"  # "captions": never ASR; "asr": always; else ASR when no captions
    device: str = "cpu"  # faster-whisper: "cpu" | "cuda" | "auto"
    compute_type: str = "int8"  # faster-whisper: "int8" on CPU, "float16" on GPU
    sample_rate: int = 16000  # Hz of the extracted audio; pocketsphinx's model expects 16000

    def __post_init__(self) -> None:
        if self.mode not in ASR_MODES:
            raise ValueError(f"asr.mode={self.mode!r}; expected one of {list(ASR_MODES)}")


class AsrError(RuntimeError):
    """A video that ASR cannot transcribe, or a backend that cannot run; ``kind`` is a ledger reason
    ("no_audio", "asr_unavailable", "asr_language", "asr_failed")."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __reduce__(self):  # keep kind across Ray's pickling
        return (AsrError, (self.kind, self.message))


class AsrBackend(Protocol):
    name: str

    def transcribe(self, audio_wav_path: str | Path, language: str) -> Transcript:
        """Words of a 16-bit mono WAV at the configured sample rate, times in seconds from its start."""
        ...


BackendFactory = Callable[[AsrConfig], AsrBackend]
ASR_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def add(factory: BackendFactory) -> BackendFactory:
        ASR_BACKENDS[name] = factory
        return factory
    return add


def base_language(lang: str | None) -> str | None:
    return lang.split("-")[0].split("_")[0].lower() if lang else None


def make_transcript(words: Iterable[Word], language: str | None, backend: str) -> Transcript:
    """A cleaned, time-ordered ASR transcript labelled ``asr:<backend>``."""
    ordered = sorted(words, key=lambda w: w.start)
    return Transcript(tuple(clean_words(ordered)), Timing.ASR, base_language(language), f"asr:{backend}")


_local = threading.local()  # decoders are not thread-safe: one per thread


def get_backend(cfg: AsrConfig) -> AsrBackend:
    """The backend for cfg, built once per process and thread."""
    cache: dict[AsrConfig, AsrBackend] = _local.__dict__.setdefault("backends", {})
    if cfg not in cache:
        if cfg.backend not in ASR_BACKENDS:
            raise AsrError("asr_unavailable", f"asr.backend={cfg.backend!r} is unknown; "
                                              f"registered: {sorted(ASR_BACKENDS)}")
        cache[cfg] = ASR_BACKENDS[cfg.backend](cfg)
    return cache[cfg]


def transcribe_video(video_path: str | Path, cfg: AsrConfig, scratch: Path | None = None) -> Transcript:
    """Extract the audio track of a video and transcribe it with the configured backend.

    The audio goes to a temporary folder under ``scratch`` (the corpus's, so that a killed run's leftovers
    are removed by the next run instead of piling up in /tmp); None: the system's temporary folder."""
    from tvts_data.asr.audio import extract_audio  # keeps ffmpeg-python out of `import tvts_data.asr`

    backend = get_backend(cfg)
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-asr-", dir=scratch) as tmp:
        wav = extract_audio(video_path, Path(tmp) / "audio.wav", cfg.sample_rate)
        transcript = backend.transcribe(wav, cfg.language)
    log.debug("%s: %d words by %s", video_path, len(transcript.words), backend.name)
    return transcript
