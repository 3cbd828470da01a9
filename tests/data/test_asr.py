"""ASR unit tests: a speech fixture spoken word by word by espeak-ng, so every word's true start is known.

Each word is synthesised to its own WAV, trimmed to where its sound starts, and placed at a known
offset with silence between words and a low noise floor (a real recording is never digital silence).
The fixture is muxed into an MP4 so `transcribe_video` runs its real path: ffmpeg extraction, then the
backend. Measured here (PocketSphinx 5, bundled en-us model, 25 words): word recall 0.56-0.64, median
|start error| 0.03-0.04 s; the asserted bounds keep a margin below/above those.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tvts_data.asr import ASR_BACKENDS, AsrConfig, AsrError, extract_audio, get_backend, transcribe_video
from tvts_data.asr.pocketsphinx_backend import PocketsphinxBackend, model_files
from tvts_data.captions import Timing, Word

log = logging.getLogger(__name__)

SCRIPT = ("the quick brown fox jumps over the lazy dog while seven children watch from the garden "
          "and their mother reads a book about the weather").split()
RATE = 16000
GAP_S = 0.15
NOISE_RMS = 50.0  # about -56 dBFS of room tone
MIN_RECALL = 0.40
MAX_MEDIAN_START_ERROR_S = 0.10
MATCH_WINDOW_S = 0.5

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _speak(word: str, tmp: Path) -> np.ndarray:
    """One word at RATE Hz, trimmed to its audible part (espeak pads words with silence)."""
    out = tmp / "word.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(out), word], check=True)
    with wave.open(str(out)) as f:
        x = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).astype(np.float32)
        src_rate = f.getframerate()
    t = np.arange(0, len(x) / src_rate, 1 / RATE)
    y = np.interp(t, np.arange(len(x)) / src_rate, x)  # resample to RATE
    loud = np.nonzero(np.abs(y) > 500)[0]
    return y[loud[0]:loud[-1] + 1]


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(samples.clip(-32768, 32767).astype(np.int16).tobytes())


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> SimpleNamespace:
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.skip("espeak-ng and ffmpeg are needed for the speech fixture")
    tmp = tmp_path_factory.mktemp("speech")
    pieces, truth, t = [np.zeros(int(0.5 * RATE))], [], 0.5
    for word in SCRIPT:
        y = _speak(word, tmp)
        truth.append((word, t))
        pieces += [y, np.zeros(int(GAP_S * RATE))]
        t += len(y) / RATE + GAP_S
    pieces.append(np.zeros(int(0.5 * RATE)))
    audio = np.concatenate(pieces)
    audio += np.random.default_rng(0).normal(0.0, NOISE_RMS, audio.shape)
    wav, mp4 = tmp / "speech.wav", tmp / "speech.mp4"
    _write_wav(wav, audio)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=gray:size=64x48:rate=5", "-i", str(wav), "-shortest", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(mp4)], check=True)
    return SimpleNamespace(wav=wav, mp4=mp4, truth=truth, duration=len(audio) / RATE)


def score(truth: list[tuple[str, float]], words: tuple[Word, ...]) -> tuple[float, float]:
    """(recall, median |start error|): a true word counts when an unused recognised word with the same
    text starts within MATCH_WINDOW_S of it; the closest one is taken."""
    used: set[int] = set()
    errors = []
    for text, start in truth:
        near = [(abs(w.start - start), i) for i, w in enumerate(words)
                if i not in used and w.text.lower() == text and abs(w.start - start) <= MATCH_WINDOW_S]
        if near:
            err, i = min(near)
            used.add(i)
            errors.append(err)
    return len(errors) / len(truth), float(np.median(errors)) if errors else float("inf")


@needs_espeak
@needs_ffmpeg
def test_pocketsphinx_recall_and_timing_on_spoken_fixture(speech, request, record_property) -> None:
    transcript = transcribe_video(speech.mp4, AsrConfig(backend="pocketsphinx"))
    recall, median_err = score(speech.truth, transcript.words)
    report = (f"pocketsphinx on {len(speech.truth)} espeak-ng words ({speech.duration:.1f} s): recall "
              f"{recall:.2f}, median |start error| {median_err:.3f} s; heard: {transcript.text}")
    log.info(report)
    record_property("asr_recall", recall)
    record_property("asr_median_start_error_s", median_err)
    if request.config.getoption("capture") == "no":  # -s: show the measured numbers behind the bounds
        sys.stderr.write(f"\n{report}\n")
    assert transcript.timing == Timing.ASR
    assert transcript.source_format == "asr:pocketsphinx"
    assert transcript.language == "en"
    assert all(w.end >= w.start for w in transcript.words)
    assert [w.start for w in transcript.words] == sorted(w.start for w in transcript.words)
    assert recall >= MIN_RECALL
    assert median_err <= MAX_MEDIAN_START_ERROR_S


@needs_ffmpeg
def test_extract_audio_gives_mono_16k_s16(speech, tmp_path) -> None:
    out = extract_audio(speech.mp4, tmp_path / "a.wav")
    with wave.open(str(out)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 16000)
        assert abs(f.getnframes() / 16000 - speech.duration) < 0.2


@needs_ffmpeg
def test_extract_audio_without_audio_stream_is_no_audio(tmp_path) -> None:
    silent_video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=red:size=32x32:rate=5", "-t", "1", "-pix_fmt", "yuv420p", str(silent_video)],
                   check=True)
    with pytest.raises(AsrError) as err:
        extract_audio(silent_video, tmp_path / "a.wav")
    assert err.value.kind == "no_audio"


@pytest.mark.parametrize("name", sorted(ASR_BACKENDS))
def test_every_registered_backend_builds_or_says_how(name: str, tmp_path) -> None:
    silence = tmp_path / "silence.wav"
    _write_wav(silence, np.zeros(RATE))
    try:
        backend = get_backend(AsrConfig(backend=name))
    except AsrError as exc:  # an optional backend without its package or model: the message says how
        assert exc.kind == "asr_unavailable"
        assert "pip install 'tvts-data[whisper]'" in str(exc) and "model_path" in str(exc)
        return
    transcript = backend.transcribe(silence, "en")
    assert transcript.words == ()
    assert transcript.source_format == f"asr:{name}" and transcript.timing == Timing.ASR


def test_unknown_backend_and_mode_are_refused() -> None:
    with pytest.raises(AsrError, match="registered"):
        get_backend(AsrConfig(backend="nope"))
    with pytest.raises(ValueError, match="asr.mode"):
        AsrConfig(mode="sometimes")


def test_bundled_model_is_english_only(tmp_path) -> None:
    wav = tmp_path / "s.wav"
    _write_wav(wav, np.zeros(RATE // 10))
    with pytest.raises(AsrError) as err:
        get_backend(AsrConfig()).transcribe(wav, "de")
    assert err.value.kind == "asr_language"


def test_model_folder_resolution_uses_word_lm() -> None:
    from pocketsphinx import get_model_path

    files = model_files(get_model_path())
    assert Path(files["hmm"], "mdef").is_file()
    assert files["dict"].endswith(".dict") and files["lm"].endswith("en-us.lm.bin")
    with pytest.raises(AsrError, match="mdef"):
        model_files(Path(__file__).parent)


def test_segments_drop_fillers_and_alternates() -> None:
    """seg() frames are 10 ms and end frames inclusive; fillers and "(2)" marks never become words."""
    segs = [SimpleNamespace(word=w, start_frame=s, end_frame=e) for w, s, e in [
        ("<s>", 0, 9), ("<sil>", 10, 19), ("the(2)", 20, 29), ("[NOISE]", 30, 39), ("dog", 40, 69),
        ("++GARBAGE++", 70, 79), ("</s>", 80, 89)]]
    fake = SimpleNamespace(start_utt=lambda: None, process_raw=lambda *a, **k: None, end_utt=lambda: None,
                           seg=lambda: segs)
    backend = PocketsphinxBackend.__new__(PocketsphinxBackend)
    backend.decoder = fake
    assert backend._decode(b"", offset_s=1.0) == [Word("the", 1.2, 1.3), Word("dog", 1.4, 1.7)]


def test_asr_finding_no_speech_says_so(tmp_path) -> None:
    """A video without captions whose audio holds no speech: its own kind, and the message names the
    ASR run, never a missing caption path ("None")."""
    from tvts_data.config import load_prepare_config
    from tvts_data.stages.errors import StageError
    from tvts_data.stages.units import make_transcriber
    from tvts_data.stages.words import extract_words

    video = tmp_path / "quiet.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=red:size=32x32:rate=5",
                    "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "2", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", str(video)], check=True, timeout=60)
    cfg = load_prepare_config(None, ["asr.mode=captions_then_asr"])
    source = {"video_id": "quiet", "video_path": str(video), "caption_path": None, "annotation_path": None,
              "kind": "local"}
    with pytest.raises(StageError) as err:
        extract_words(source, tmp_path, cfg, make_transcriber(cfg))
    assert err.value.kind == "no_speech" and "None" not in err.value.message
    assert "ASR (pocketsphinx) on quiet.mp4 found no speech" in err.value.message
