"""The synthetic corpus generators: what they write must be true, since other tests measure against it.

Real ffmpeg, espeak-ng, decord and PyAV; no mocks except a missing espeak-ng.
"""

from __future__ import annotations

import io
import json
import re
import wave
from pathlib import Path

import av
import decord
import numpy as np
import pytest
from PIL import Image

from tvts_data.captions import CaptionError, parse_caption_file
from tvts_data.synth import (
    ERROR_KINDS,
    FORMATS,
    WORD_LEVEL_FORMATS,
    SpeechError,
    make_bad_corpus,
    make_sample_corpus,
    paint_timecode,
    read_timecode,
    render_video,
    speak_script,
)
from tvts_data.synth.badcorpus import TRUNCATE_AT
from tvts_data.synth.corpus import youtube_like_id
from tvts_data.synth.timecode import CELLS, CODE, MAX_INDEX

FPS = 25
BAD_GOOD_SECONDS = 12.0  # shorter than the default: only the files' faults are under test here


# --- timecode ---------------------------------------------------------------------------------


def _through_pipeline(frame: np.ndarray, short_side: int, crop: float) -> np.ndarray:
    """Centre crop (fraction per side), resize to ``short_side`` keeping the aspect, JPEG q=75, decode."""
    image = Image.fromarray(frame)
    w, h = image.size
    image = image.crop((round(w * crop), round(h * crop), round(w * (1 - crop)), round(h * (1 - crop))))
    scale = short_side / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.mark.parametrize("size", [(320, 240), (640, 360), (240, 320)])
@pytest.mark.parametrize("short_side", [256, 128])
@pytest.mark.parametrize("crop", [0.0, 0.12])
def test_timecode_survives_crop_resize_and_jpeg(size, short_side, crop):
    rng = np.random.default_rng(size[0] + short_side)
    indices = [0, 1, 2, 1023, 1024, MAX_INDEX - 1, MAX_INDEX, *rng.integers(0, MAX_INDEX, 30)]
    for index in indices:
        # noise is the worst background: nothing but the band may help the reader
        frame = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        paint_timecode(frame, int(index))
        assert read_timecode(_through_pipeline(frame, short_side, crop)) == index


def test_timecode_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="no timecode"):
        read_timecode(np.full((240, 320, 3), 255, np.uint8))
    frame = np.zeros((240, 320, 3), np.uint8)
    paint_timecode(frame, 12345)
    cell = 320 * (CODE[1] - CODE[0]) / CELLS
    x = round(320 * CODE[0] + 5.5 * cell)  # the middle of data cell 5: flip it black <-> white
    frame[96:144, x - 2:x + 3] = 255 - frame[120, x]
    with pytest.raises(ValueError, match="parity"):
        read_timecode(frame)
    with pytest.raises(ValueError, match="outside"):
        paint_timecode(frame, MAX_INDEX + 1)


# --- video ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    assert render_video(path, seconds=4.0, fps=FPS, size=(320, 240), seed=1, keyint=25) == 100
    return path


def test_rendered_video_frame_i_shows_index_i_at_i_over_fps(rendered):
    vr = decord.VideoReader(str(rendered))
    assert len(vr) == 100
    assert vr.get_avg_fps() == pytest.approx(FPS)
    assert vr[0].shape == (240, 320, 3)
    starts = vr.get_frame_timestamp(range(100))[:, 0]
    np.testing.assert_allclose(starts, np.arange(100) / FPS, atol=1e-6)
    order = [99, 0, 50, 13, 77, 1, 98]  # random access, backwards jumps included
    frames = vr.get_batch(order).asnumpy()
    assert [read_timecode(f) for f in frames] == order
    assert list(vr.get_key_indices()) == [0, 25, 50, 75]
    assert not np.array_equal(frames[1], frames[5]), "consecutive frames must differ (shapes move)"


def test_rendered_video_stream_is_h264_yuv420p_from_pts_zero(rendered):
    with av.open(str(rendered)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == FPS
        pts = sorted(float(f.pts * f.time_base) for f in container.decode(video=0))
        assert not container.streams.audio
    np.testing.assert_allclose(pts, np.arange(100) / FPS, atol=1e-6)


# --- speech -----------------------------------------------------------------------------------


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768, w.getframerate()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def test_speak_script_words_are_where_it_says(tmp_path):
    script = "the red square moves to the left and the blue ball stops".split()
    words = speak_script(script, tmp_path / "s.wav", start_at=0.3, gap_s=0.12)
    audio, rate = _read_wav(tmp_path / "s.wav")
    assert [w.text for w in words] == script
    assert words[0].start == pytest.approx(0.3, abs=1 / rate)
    for a, b in zip(words, words[1:]):
        assert a.start < a.end and b.start - a.end == pytest.approx(0.12, abs=1 / rate)
    assert words[-1].end <= len(audio) / rate + 1e-9
    for w in words:  # speech right at each start, silence in the middle of each gap
        onset = audio[round(w.start * rate):round((w.start + 0.03) * rate)]
        assert _rms(onset) > 0.005, w
        gap = audio[round((w.end + 0.02) * rate):round((w.end + 0.10) * rate)]
        assert np.abs(gap).max(initial=0) == 0, w
    assert _rms(audio[:round(0.29 * rate)]) == 0


def test_speak_script_stops_half_a_second_before_max_seconds(tmp_path):
    script = "one two three four five six seven eight nine ten".split() * 3
    cache: dict = {}
    words = speak_script(script, tmp_path / "s.wav", max_seconds=4.0, cache=cache)
    audio, rate = _read_wav(tmp_path / "s.wav")
    assert len(audio) == 4 * rate
    assert 0 < len(words) < len(script) and words[-1].end <= 3.5
    assert set(cache) == {(w, "en-us", 160) for w in script[:len(words) + 1]}


def test_speak_script_says_how_to_install_espeak(tmp_path, monkeypatch):
    import tvts_data.synth.speech as speech

    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(SpeechError, match="apt-get install espeak-ng"):
        speak_script(["hello"], tmp_path / "s.wav")


# --- sample corpus ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample_corpus(tmp_path_factory.mktemp("sample"), n_videos=6, seconds=(5, 7), seed=5)


def test_sample_corpus_writes_one_video_and_caption_per_format(sample):
    assert [v.format for v in sample.videos] == list(FORMATS)
    ids = [v.id for v in sample.videos]
    assert len(set(ids)) == 6 and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{10}", i) for i in ids)
    names = {p.name for p in sample.root.iterdir()}
    assert names == {"truth.json"} | {f"{i}.mp4" for i in ids} | {v.caption_path.name for v in sample.videos}
    suffix = {"json3": ".en.json3", "vtt": ".en.vtt", "srv3": ".en.srv3", "srt": ".en.srt",
              "yttemporal": ".json", "vtt_plain": ".en.vtt"}
    for v in sample.videos:
        assert v.caption_path.name == v.id + suffix[v.format]
    truth = json.loads(sample.truth_path.read_text())["videos"]
    assert [t["id"] for t in truth] == ids
    assert [[w["start"] for w in t["words"]] for t in truth] == [[w.start for w in v.words] for v in sample.videos]


def test_youtube_like_ids_are_deterministic():
    ids = [youtube_like_id(np.random.default_rng(7)) for _ in range(2)]
    assert ids[0] == ids[1] and len(ids[0]) == 11


def test_sample_videos_are_as_long_as_truth_and_speech_fills_them(sample):
    for v in sample.videos:
        with av.open(str(v.video_path)) as container:
            frames = container.streams.video[0].frames
            audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
            rate = container.streams.audio[0].rate
        assert frames == round(v.duration * v.fps)
        assert v.duration - 1.5 < v.words[-1].end <= v.duration - 0.5
        for w in v.words:  # the muxed AAC track still has speech where truth says a word starts
            assert _rms(audio[round(w.start * rate):round((w.start + 0.04) * rate)]) > 0.003, (v.id, w)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_caption_file_parses_back_to_the_spoken_words(sample, fmt):
    v = next(v for v in sample.videos if v.format == fmt)
    transcript = parse_caption_file(v.caption_path)
    assert [w.text for w in transcript.words] == [w.text for w in v.words]
    if fmt in WORD_LEVEL_FORMATS:
        for got, true in zip(transcript.words, v.words):
            assert abs(got.start - true.start) < 0.02, (got, true)
    else:  # segment-only: interpolated times stay inside the span the words were spoken in
        assert transcript.timing == "interpolated"
        assert transcript.words[0].start == pytest.approx(v.words[0].start, abs=0.002)
        assert all(got.start <= v.duration for got in transcript.words)


def test_yttemporal_annotation_is_noisy_asr_plus_clean_text(sample):
    v = next(v for v in sample.videos if v.format == "yttemporal")
    doc = json.loads(v.caption_path.read_text())
    assert doc["subtitles"][0]["word"] == "[Music]"  # non-speech tag that the builder must drop
    assert len(doc["subtitles"]) == len(v.words) + 1
    assert " ".join(d["cleanasr"] for d in doc["denoised"]).split() == [w.text for w in v.words]
    assert doc["info"]["duration"] == v.duration
    assert all(d["start"] <= d["end"] for d in doc["denoised"])


# --- bad corpus -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    expected = make_bad_corpus(root, good_seconds=BAD_GOOD_SECONDS)
    cases = {doc["case"]: vid for vid, doc in json.loads((root / "expected.json").read_text()).items()}
    return root, expected, cases


def test_bad_corpus_names_a_known_kind_for_every_video(bad):
    root, expected, cases = bad
    assert len(cases) == len(expected) == 12
    allowed = set(ERROR_KINDS) | {"ok"}
    for vid, kind in expected.items():
        assert set(kind.split("|")) <= allowed, kind
        assert (root / f"{vid}.mp4").exists()
    assert {k for kind in expected.values() for k in kind.split("|")} == allowed
    assert sorted(vid for vid, kind in expected.items() if kind == "ok") == sorted([cases["good_a"], cases["good_b"]])


def _probe(path: Path) -> tuple[int, int, float]:
    """(video streams, audio streams, duration in s)."""
    with av.open(str(path)) as c:
        return len(c.streams.video), len(c.streams.audio), float(c.duration or 0) / av.time_base


def test_bad_videos_are_broken_the_way_they_claim(bad):
    root, _, cases = bad
    mp4 = {name: root / f"{vid}.mp4" for name, vid in cases.items()}
    assert mp4["zero_bytes"].stat().st_size == 0
    for name in ("corrupt", "zero_bytes", "truncated_moov_at_end"):
        with pytest.raises(av.error.FFmpegError):
            av.open(str(mp4[name]))
    assert _probe(mp4["audio_only"])[:2] == (0, 1)
    assert mp4["truncated"].stat().st_size == int(mp4["good_a"].stat().st_size * TRUNCATE_AT)
    assert _probe(mp4["too_short"])[2] == pytest.approx(3.0, abs=0.05)
    for name in ("good_a", "good_b", "malformed_captions"):
        assert _probe(mp4[name])[:2] == (1, 1)
        assert len(decord.VideoReader(str(mp4[name]))) == BAD_GOOD_SECONDS * FPS


def test_bad_captions_are_broken_the_way_they_claim(bad):
    root, _, cases = bad
    json3 = {name: root / f"{vid}.en.json3" for name, vid in cases.items()}
    with pytest.raises(json.JSONDecodeError):
        json.loads(json3["malformed_captions"].read_text())
    assert json.loads(json3["empty_captions"].read_text())["events"] == []
    with pytest.raises(CaptionError, match="backwards"):
        parse_caption_file(json3["times_backwards"])
    foreign = sorted(p.name for p in root.glob(f"{cases['foreign_language']}.*"))
    assert foreign == [f"{cases['foreign_language']}.de.vtt", f"{cases['foreign_language']}.mp4"]
    german = parse_caption_file(root / foreign[0])
    assert german.language == "de" and "Kreis" in german.text
    for name in ("good_a", "too_short", "truncated"):
        assert parse_caption_file(json3[name]).words
    assert len(parse_caption_file(root / f"{cases['good_b']}.en.vtt").words) > 20


def test_camera_scene_has_the_detail_and_motion_of_footage():
    """CameraScene stands in for users' footage in the storage bench: detail at every scale (a JPEG many
    times the size of a shapes frame's), a different picture as the camera moves, the same video per seed."""
    from tvts_data.synth.video import CameraScene, Scene

    def jpeg_bytes(frame: np.ndarray) -> int:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=90)
        return len(buf.getvalue())

    scene = CameraScene(320, 180, seed=3)
    first, later = scene.frame(0), scene.frame(100)
    assert first.shape == (180, 320, 3) and first.dtype == np.uint8
    assert jpeg_bytes(first) > 4 * jpeg_bytes(Scene(320, 180, seed=3).frame(0))
    assert np.abs(first.astype(int) - later.astype(int)).mean() > 10  # the camera moved (and cut)
    again = CameraScene(320, 180, seed=3).frame(100)
    assert np.abs(again.astype(int) - later.astype(int)).mean() < 8  # same shot and framing; only the grain differs
