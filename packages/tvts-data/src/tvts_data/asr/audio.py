"""Audio extraction for ASR: any video -> mono 16-bit PCM WAV at the requested rate, via ffmpeg.

ffmpeg-python passes arguments as a list (no shell), so a file name can never become a command.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ffmpeg

from tvts_data.asr.base import AsrError

log = logging.getLogger(__name__)

_NO_AUDIO = ("matches no streams", "does not contain any stream", "Output file is empty")


def extract_audio(video_path: str | Path, out_wav: str | Path, sample_rate: int = 16000) -> Path:
    """Write the first audio stream of video_path as mono s16le WAV at sample_rate; return out_wav."""
    out_wav = Path(out_wav)
    stream = (
        ffmpeg.input(str(video_path))
        .output(str(out_wav), map="0:a:0", ac=1, ar=sample_rate, acodec="pcm_s16le", format="wav")
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .overwrite_output()
    )
    try:
        stream.run(capture_stdout=True, capture_stderr=True)
    except FileNotFoundError as exc:  # the ffmpeg binary itself
        raise AsrError("asr_unavailable", "ffmpeg is not installed (apt-get install ffmpeg)") from exc
    except ffmpeg.Error as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        text = " | ".join(detail[-3:]) or str(exc)
        kind = "no_audio" if any(m in text for m in _NO_AUDIO) else "asr_failed"
        raise AsrError(kind, f"{video_path}: ffmpeg could not extract audio: {text}") from exc
    return out_wav
