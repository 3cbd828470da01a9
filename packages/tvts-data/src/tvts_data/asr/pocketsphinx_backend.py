"""PocketSphinx 5 backend: offline English ASR with word times, its model shipped inside the wheel.

Long audio is cut into speech regions by PocketSphinx's own voice-activity `Segmenter`, and each region
is decoded as one utterance, so memory stays bounded for long videos. Word times come from
``Decoder.seg()`` in frames of 10 ms, offset by the region's start. Dither is on: stretches of digital
silence (exact zeros) otherwise derail the feature normalisation and recognition collapses.
"""

from __future__ import annotations

import logging
import re
import wave
from pathlib import Path
from typing import Any

from tvts_data.asr.base import AsrConfig, AsrError, base_language, make_transcript, register_backend
from tvts_data.captions import Transcript, Word

log = logging.getLogger(__name__)

FRAMES_PER_S = 100.0  # PocketSphinx's default frame rate (-frate)
_ALTERNATE = re.compile(r"\(\d+\)$")  # "the(2)": second pronunciation of "the"


def _is_filler(token: str) -> bool:
    """<s>, </s>, <sil>, [NOISE], [SPEECH], ++GARBAGE++: not words."""
    return token.startswith(("<", "[", "+"))


def model_files(model_path: str | Path) -> dict[str, str]:
    """hmm/dict/lm of a PocketSphinx model folder: an acoustic model (a folder holding ``mdef``), a
    ``*.dict`` pronunciation dictionary and a ``*.lm.bin`` or ``*.lm`` word language model."""
    root = Path(model_path)
    hmm = next((p.parent for p in sorted(root.rglob("mdef"))), None)
    dic = next(iter(sorted(root.rglob("*.dict"))), None)
    lms = [p for pat in ("*.lm.bin", "*.lm", "*.lm.DMP") for p in sorted(root.rglob(pat))]
    lm = next((p for p in lms if "phone" not in p.name), None)  # the phone LM is for phoneme decoding
    if hmm is None or dic is None or lm is None:
        raise AsrError("asr_unavailable", f"asr.model_path={root}: a PocketSphinx model folder needs an "
                                          "acoustic model (a folder with mdef), a *.dict and a *.lm.bin")
    return {"hmm": str(hmm), "dict": str(dic), "lm": str(lm)}


class PocketsphinxBackend:
    name = "pocketsphinx"

    def __init__(self, cfg: AsrConfig):
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise AsrError("asr_unavailable",
                           "pocketsphinx is not installed: pip install 'pocketsphinx>=5'") from exc
        self.sample_rate = cfg.sample_rate
        # The wheel's model is US English; another language needs its own model folder.
        self.languages = None if cfg.model_path else ("en",)
        files: dict[str, Any] = model_files(cfg.model_path) if cfg.model_path else {}
        self.decoder = Decoder(samprate=cfg.sample_rate, dither=True, loglevel="FATAL", **files)

    def _check(self, wav: wave.Wave_read, path: Path, language: str) -> None:
        if self.languages and base_language(language) not in self.languages:
            raise AsrError("asr_language", f"{path}: the bundled PocketSphinx model is English; language "
                                           f"{language!r} needs asr.model_path with a model for it")
        shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        if shape != (1, 2, self.sample_rate):
            raise AsrError("asr_failed", f"{path}: expected mono 16-bit {self.sample_rate} Hz WAV, got "
                                         f"{shape[0]} channel(s), {8 * shape[1]}-bit, {shape[2]} Hz")

    def _decode(self, pcm: bytes, offset_s: float) -> list[Word]:
        d = self.decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        words = []
        for seg in d.seg():
            if _is_filler(seg.word):
                continue
            start = offset_s + seg.start_frame / FRAMES_PER_S
            end = offset_s + (seg.end_frame + 1) / FRAMES_PER_S  # end_frame is inclusive
            words.append(Word(_ALTERNATE.sub("", seg.word), round(start, 3), round(end, 3)))
        return words

    def transcribe(self, audio_wav_path: str | Path, language: str) -> Transcript:
        from pocketsphinx import Segmenter

        path = Path(audio_wav_path)
        words: list[Word] = []
        with wave.open(str(path), "rb") as wav:
            self._check(wav, path, language)
            segmenter = Segmenter(sample_rate=self.sample_rate)
            for region in segmenter.segment(wav.getfp()):
                words.extend(self._decode(region.pcm, region.start_time))
        return make_transcript(words, language, self.name)


register_backend("pocketsphinx")(PocketsphinxBackend)
