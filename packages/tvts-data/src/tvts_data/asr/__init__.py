"""ASR for videos without usable captions: ffmpeg audio extraction + a registered backend.

``transcribe_video(video_path, AsrConfig())`` returns a `Transcript` with ``timing=Timing.ASR`` and
``source_format="asr:<backend>"``. Backends: see `ASR_BACKENDS`.
"""

from tvts_data.asr import pocketsphinx_backend, whisper_backend  # noqa: F401  (importing registers them)
from tvts_data.asr.base import (
    ASR_BACKENDS,
    ASR_MODES,
    AsrBackend,
    AsrConfig,
    AsrError,
    get_backend,
    make_transcript,
    register_backend,
    transcribe_video,
)

__all__ = [
    "ASR_BACKENDS", "ASR_MODES", "AsrBackend", "AsrConfig", "AsrError", "extract_audio", "get_backend",
    "make_transcript", "register_backend", "transcribe_video",
]


def __getattr__(name: str):  # extract_audio without importing ffmpeg-python at package import
    if name == "extract_audio":
        from tvts_data.asr.audio import extract_audio
        return extract_audio
    raise AttributeError(name)
