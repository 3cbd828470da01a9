"""faster-whisper backend (optional extra ``tvts-data[whisper]``): better accuracy, any language.

The model is never downloaded: ``asr.model_path`` names a local CTranslate2 model folder (for example a
copy of Systran/faster-whisper-small). faster-whisper is imported only when this backend is built, so
the package works without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tvts_data.asr.base import AsrConfig, AsrError, base_language, make_transcript, register_backend
from tvts_data.captions import Transcript, Word

log = logging.getLogger(__name__)

_HOW = ("pip install 'tvts-data[whisper]' and set asr.model_path to a local faster-whisper model folder "
        "(a CTranslate2 conversion such as Systran/faster-whisper-small, copied to this machine)")


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, cfg: AsrConfig):
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise AsrError("asr_unavailable",
                           f"asr.backend=faster-whisper: faster-whisper is not installed; {_HOW}") from exc
        if not cfg.model_path or not (Path(cfg.model_path) / "model.bin").is_file():
            raise AsrError("asr_unavailable", f"asr.backend=faster-whisper: asr.model_path={cfg.model_path!r} "
                                              f"is not a model folder (no model.bin); {_HOW}")
        self.model = WhisperModel(cfg.model_path, device=cfg.device, compute_type=cfg.compute_type,
                                  local_files_only=True)

    def transcribe(self, audio_wav_path: str | Path, language: str) -> Transcript:
        segments, info = self.model.transcribe(str(audio_wav_path), language=base_language(language),
                                               word_timestamps=True, condition_on_previous_text=False)
        words = [Word(w.word.strip(), float(w.start), float(max(w.end, w.start)))
                 for seg in segments for w in (seg.words or []) if w.word.strip()]
        return make_transcript(words, info.language or language, self.name)


register_backend("faster-whisper")(FasterWhisperBackend)
