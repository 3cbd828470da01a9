"""Never publish a wrong frame: windows stay where the video stream has frames, and a requested time
without a frame (past the end, inside a gap) drops the window instead of storing a frozen copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from tvts_data.captions import Word, write_json3
from tvts_data.config import FramesConfig, load_prepare_config
from tvts_data.media import FrameReader, probe_video
from tvts_data.runner import prepare
from tvts_data.stages.errors import StageError
from tvts_data.stages.frames import decode_video_windows, decode_window
from tvts_data.synth.timecode import paint_timecode, read_timecode

FPS = 10


def _audio_longer(path: Path, video_s: float, audio_s: float) -> Path:
    """H.264 video of ``video_s`` seconds (frame index painted in) muxed with ``audio_s`` of tone."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size=160x96:rate={FPS}:duration={video_s}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_s}",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)], check=True, timeout=60)
    return path


def _with_gap(path: Path, before_s: float, gap_s: float, after_s: float) -> Path:
    """Frames at 10 fps for ``before_s``, then nothing for ``gap_s``, then ``after_s`` more (VFR mp4)."""
    times = [i / FPS for i in range(round(before_s * FPS))]
    times += [before_s + gap_s + i / FPS for i in range(round(after_s * FPS))]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.time_base = stream.time_base = __import__("fractions").Fraction(1, 1000)
        for n, t in enumerate(times):
            image = np.full((96, 128, 3), 90, np.uint8)
            paint_timecode(image, n)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(t * 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _window(video: Path, start: float, end: float, n: int = 0) -> dict:
    return {"window_id": f"v:{n:05d}", "window_index": n, "video_id": "v", "video_path": str(video),
            "starts": [start], "ends": [end], "texts": ["x"], "words": [[]]}


CFG = FramesConfig(segments=4, candidates=3, short_side=64, format="raw")


def test_duration_is_the_video_streams_not_the_containers(tmp_path):
    info = probe_video(_audio_longer(tmp_path / "a.mp4", 4.0, 7.0), "a")
    assert info.duration == pytest.approx(4.0, abs=0.11)  # the frames end at 4 s
    assert info.container_duration == pytest.approx(7.0, abs=0.11)  # the audio goes on


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_a_window_past_the_last_frame_is_dropped_not_frozen(tmp_path, decoder):
    video = _audio_longer(tmp_path / "a.mp4", 4.0, 7.0)
    reader = FrameReader(video, "a", 64, decoder)
    with pytest.raises(StageError) as err:
        decode_window(reader, _window(video, 2.0, 6.0), CFG)
    assert err.value.kind == "window_outside_frames" and "no frame at 4." in err.value.message
    rows, dropped = decode_video_windows([_window(video, 0.5, 3.5, 0), _window(video, 2.0, 6.0, 1)],
                                         FramesConfig(segments=4, candidates=3, short_side=64, format="raw",
                                                      decoder=decoder))
    assert dropped == 1 and [r["window_index"] for r in rows] == [0]
    assert max(rows[0]["frame_times"]) < 3.5


def test_a_window_over_a_gap_in_the_stream_is_dropped(tmp_path):
    video = _with_gap(tmp_path / "gap.mp4", before_s=2.0, gap_s=3.0, after_s=2.0)
    reader = FrameReader(video, "gap", 64, "pyav")
    assert reader.frame_times[19] == pytest.approx(1.9) and reader.frame_times[20] == pytest.approx(5.0)
    with pytest.raises(StageError, match="inside a gap"):
        decode_window(reader, _window(video, 1.0, 6.0), CFG)
    row = decode_window(reader, _window(video, 5.0, 6.9), CFG)  # after the gap: every frame is its own
    frames = np.frombuffer(b"".join(row["frames"]), np.uint8).reshape(-1, row["height"], row["width"], 3)
    indices = [read_timecode(f) for f in frames]
    assert indices == [20 + round((t - 5.0) * FPS) for t in row["frame_times"]]


def test_prepare_never_cuts_windows_past_the_video_stream(tmp_path):
    """Speech (and captions) run to 12 s over a video stream of 6 s: no window, no word beyond 6 s."""
    src = tmp_path / "src"
    src.mkdir()
    _audio_longer(src / "vidAAAAAAAA.mp4", 6.0, 12.0)
    words = [Word(f"w{i}", 0.2 + 0.5 * i, 0.2 + 0.5 * i + 0.3) for i in range(23)]  # to 11.5 s
    (src / "vidAAAAAAAA.en.json3").write_text(write_json3(words))
    (src / "copy").mkdir()  # the same video id twice: a rejected input line, not a second video
    for name in ("vidAAAAAAAA.mp4", "vidAAAAAAAA.en.json3"):
        (src / "copy" / name).write_bytes((src / name).read_bytes())
    cfg = load_prepare_config(None, ["windows.K=2", "windows.lengths=[1.0]", "windows.gap=0.5", "windows.stride=0.5",
                                     "frames.segments=4", "frames.candidates=1", "frames.short_side=64",
                                     "run.engine=local"])
    result = prepare(src, tmp_path / "out", cfg)
    rows = [r for p in sorted((tmp_path / "out" / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert rows and result.stats["videos"] == {"ok": 1} and result.stats["rejected_inputs"] == 1
    assert max(r["ends"][-1] for r in rows) <= 6.0 + 1e-6
    assert max(r["frame_times"][-1] for r in rows) < 6.0
    windows = pq.read_table(next((tmp_path / "out" / "windows").glob("*.parquet"))).to_pylist()
    assert max(w["start"] for r in windows for t in r["words"] for w in t) < 6.0


def _stuck(seconds: float) -> str:
    import time as _time

    _time.sleep(seconds)
    return "done"


def test_decode_helper_kills_an_overrun_and_serves_the_next_call():
    from tvts_data.stages.deadline import DecodeHelper

    with DecodeHelper() as helper:
        with pytest.raises(StageError) as err:
            helper.call(_stuck, (60.0,), 1.0, "video X")
        assert err.value.kind == "decode_timeout" and "video X" in err.value.message
        assert helper.call(_stuck, (0.0,), 30.0, "video Y") == "done"  # a fresh helper
        with pytest.raises(StageError) as err:  # errors raised in the helper come back whole
            helper.call(probe_video, ("/nonexistent.mp4", "v"), 30.0, "video Z")
        assert err.value.kind == "missing_file"


@pytest.mark.timeout(120)  # without the deadline this test would hang
def test_a_stuck_decoder_never_stalls_the_run(tmp_path, monkeypatch):
    """One video's decode never returns (decord#373): it ends as decode_timeout, the others go on."""
    src = tmp_path / "src"
    src.mkdir()
    words = [Word(f"w{i}", 0.2 + 0.5 * i, 0.5 + 0.5 * i) for i in range(8)]
    for vid in ("vidAAAAAAAA", "vidBBBBBBBB"):
        _audio_longer(src / f"{vid}.mp4", 4.5, 4.5)
        (src / f"{vid}.en.json3").write_text(write_json3(words))
    monkeypatch.setenv("TVTS_FAULT_DECODE_HANG", "vidAAAAAAAA")
    cfg = load_prepare_config(None, ["windows.K=2", "windows.lengths=[1.0]", "windows.gap=0.5", "frames.segments=2",
                                     "frames.candidates=1", "frames.short_side=64", "frames.decode_timeout_s=3",
                                     "run.engine=local"])
    result = prepare(src, tmp_path / "out", cfg)
    assert result.stats["errors"]["frames"] == {"decode_timeout": 1}
    rows = [r for p in sorted((tmp_path / "out" / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert rows and {r["video_id"] for r in rows} == {"vidBBBBBBBB"}
