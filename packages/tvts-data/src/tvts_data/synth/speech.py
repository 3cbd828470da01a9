"""Speech with known word times: espeak-ng says each word alone, we place the words ourselves.

Synthesising a whole sentence would sound better but hide where each word starts. Here every word is
synthesised on its own, its leading and trailing silence is cut (energy threshold), and the words are
laid end to end with a fixed gap, so a word's start and end in the output wav are exact (to one
sample) and the gaps between words are silent.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tvts_data.captions import Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050  # espeak-ng's native rate: no resampling, no new error in the word times
SILENCE_THRESHOLD = 0.02  # of full scale; espeak's own lead-in/out is far below, speech far above
_ENVELOPE_S = 0.005  # smoothing window of the energy envelope

WordCache = dict[tuple[str, str, int], np.ndarray]
# words synthesised in this process: corpora reuse a small vocabulary, and espeak-ng costs a process per word
_SHARED_CACHE: WordCache = {}
_SHARED_CACHE_MAX = 5000  # ~100 MB at worst; a real vocabulary for fixtures is a few hundred words


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechError("espeak-ng is not installed; run `make install` or `apt-get install espeak-ng`")
    return path


def synthesize_word(word: str, voice: str = "en-us", rate: int = 160) -> np.ndarray:
    """One word as int16 samples at SAMPLE_RATE, silence trimmed."""
    with tempfile.TemporaryDirectory(prefix="tvts-espeak-") as tmp:
        out = Path(tmp) / "word.wav"
        # a list argv and "--" before the text: a word is never parsed as a shell string or an option
        argv = [espeak_binary(), "-v", voice, "-s", str(rate), "-w", str(out), "--", word]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out.exists():
            raise SpeechError(f"espeak-ng failed on {word!r} (exit {done.returncode}): {done.stderr.strip()}")
        samples = read_wav(out)
    trimmed = trim_silence(samples)
    if trimmed.size == 0:
        raise SpeechError(f"espeak-ng produced only silence for {word!r} with voice {voice!r}")
    return trimmed


def read_wav(path: Path) -> np.ndarray:
    """Mono 16-bit samples of a wav at SAMPLE_RATE (what espeak-ng writes)."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != SAMPLE_RATE:
            raise SpeechError(f"{path}: expected mono 16-bit {SAMPLE_RATE} Hz, got {w.getnchannels()} ch, "
                              f"{8 * w.getsampwidth()} bit, {w.getframerate()} Hz")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype(np.int16).tobytes())


def envelope(samples: np.ndarray, window_s: float = _ENVELOPE_S) -> np.ndarray:
    """Moving mean of |x| as a fraction of full scale, same length as ``samples``."""
    n = max(1, round(window_s * SAMPLE_RATE))
    magnitude = np.abs(samples.astype(np.float32)) / 32768.0
    return np.convolve(magnitude, np.ones(n, dtype=np.float32) / n, mode="same")


def trim_silence(samples: np.ndarray, threshold: float = SILENCE_THRESHOLD) -> np.ndarray:
    """Cut everything before the envelope first rises above ``threshold`` and after it last does."""
    loud = np.flatnonzero(envelope(samples) > threshold)
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0]:loud[-1] + 1]


def speak_script(
    words: Sequence[str],
    out_wav: str | Path,
    start_at: float = 0.3,
    gap_s: float = 0.12,
    voice: str = "en-us",
    rate: int = 160,
    *,
    max_seconds: float | None = None,
    cache: WordCache | None = None,
) -> list[Word]:
    """Say ``words`` one after another into ``out_wav``; return them with their true times.

    With ``max_seconds`` the wav is exactly that long (silence-padded) and speech stops at the first
    word that would end later than 0.5 s before that: the returned list says which words were spoken.
    ``cache`` maps (word, voice, rate) to trimmed samples; by default one cache serves the process.
    """
    cache = _cache_or_shared(cache)
    pieces: list[tuple[int, np.ndarray]] = []
    timed: list[Word] = []
    cursor = round(start_at * SAMPLE_RATE)  # in samples, so times are exact multiples of 1/SAMPLE_RATE
    limit = None if max_seconds is None else round((max_seconds - 0.5) * SAMPLE_RATE)
    for text in words:
        audio = _cached_word(text, voice, rate, cache)
        if limit is not None and cursor + audio.size > limit:
            break
        pieces.append((cursor, audio))
        timed.append(Word(text, cursor / SAMPLE_RATE, (cursor + audio.size) / SAMPLE_RATE))
        cursor += audio.size + round(gap_s * SAMPLE_RATE)
    total = cursor if max_seconds is None else round(max_seconds * SAMPLE_RATE)
    write_wav(Path(out_wav), _mix(pieces, total))
    log.debug("spoke %d words (%.2f s of audio) into %s", len(timed), total / SAMPLE_RATE, out_wav)
    return timed


def sentence_seconds(words: Sequence[str], gap_s: float = 0.12, voice: str = "en-us", rate: int = 160,
                     cache: WordCache | None = None) -> float:
    """How long :func:`speak_sentences` takes to say ``words`` (first word's start to last word's end)."""
    cache = _cache_or_shared(cache)
    samples = sum(_cached_word(w, voice, rate, cache).size for w in words)
    return (samples + round(gap_s * SAMPLE_RATE) * max(0, len(words) - 1)) / SAMPLE_RATE


def speak_sentences(
    sentences: Sequence[tuple[float, Sequence[str]]],
    out_wav: str | Path,
    total_seconds: float,
    gap_s: float = 0.12,
    voice: str = "en-us",
    rate: int = 160,
    *,
    cache: WordCache | None = None,
) -> list[list[Word]]:
    """Say each sentence starting at its own time (seconds) into a wav of ``total_seconds``.

    For narration that must happen while something is on screen: the caller decides when each
    sentence starts (``sentence_seconds`` says how long it lasts). Sentences must not overlap and must
    end inside the wav; returns the words of each sentence with their true times.
    """
    cache = _cache_or_shared(cache)
    total = round(total_seconds * SAMPLE_RATE)
    pieces: list[tuple[int, np.ndarray]] = []
    spoken: list[list[Word]] = []
    previous_end = 0
    for start, words in sentences:
        cursor = round(start * SAMPLE_RATE)
        if cursor < previous_end:
            raise ValueError(f"sentence {' '.join(words)!r} at {start:.3f} s overlaps the one before it")
        timed = []
        for text in words:
            audio = _cached_word(text, voice, rate, cache)
            pieces.append((cursor, audio))
            timed.append(Word(text, cursor / SAMPLE_RATE, (cursor + audio.size) / SAMPLE_RATE))
            cursor += audio.size + round(gap_s * SAMPLE_RATE)
        previous_end = round(timed[-1].end * SAMPLE_RATE) if timed else cursor
        if previous_end > total:
            raise ValueError(f"sentence {' '.join(words)!r} ends at {timed[-1].end:.3f} s, after the wav's "
                             f"{total_seconds:.3f} s")
        spoken.append(timed)
    write_wav(Path(out_wav), _mix(pieces, total))
    return spoken


def _cache_or_shared(cache: WordCache | None) -> WordCache:
    if cache is not None:
        return cache
    if len(_SHARED_CACHE) > _SHARED_CACHE_MAX:
        _SHARED_CACHE.clear()
    return _SHARED_CACHE


def _cached_word(text: str, voice: str, rate: int, cache: WordCache) -> np.ndarray:
    key = (text, voice, rate)
    if key not in cache:
        cache[key] = synthesize_word(text, voice, rate)
    return cache[key]


def _mix(pieces: list[tuple[int, np.ndarray]], total: int) -> np.ndarray:
    track = np.zeros(total, dtype=np.int16)
    for offset, audio in pieces:
        track[offset:offset + audio.size] = audio
    return track
