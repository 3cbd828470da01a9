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
from tvts_data.stages.frames import candidate_times, decode_video_windows, decode_window
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


def _ffmpeg_vfr(path: Path, seconds: float, rate: float, vf: str, audio_s: float | None = None) -> Path:
    """A real H.264 file from ffmpeg: ``testsrc`` at ``rate`` through the filter ``vf``, written with the
    timestamps the filter leaves (``-fps_mode vfr``: no frame duplicated or dropped to a constant rate)."""
    argv = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=128x96:rate={rate}:duration={seconds}"]
    if audio_s:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_s}", "-c:a", "aac"]
    argv += ["-vf", vf, "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "2", str(path)]
    subprocess.run(argv, check=True, timeout=120)
    return path


# name -> (seconds, rate, filter, audio seconds, expected (start, end) windows kept / dropped)
VFR_CASES = {
    # frames at (n + n//2)/25 s: intervals alternate 40 and 80 ms (phones, screen recorders)
    "alternating_40_80ms": (20, 25, "setpts='(N+floor(N/2))/25/TB'", None),
    # 5 of every 25 frames dropped, the others keep their times: 240 ms holes in a 25 fps stream
    "dropped_frames": (20, 25, "select='not(between(mod(n\\,25)\\,5\\,9))',setpts=PTS", None),
    # one frame every 2 s for 30 s
    "slideshow_0.5fps": (30, 0.5, "setpts=PTS", None),
}


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
@pytest.mark.parametrize("name", sorted(VFR_CASES))
def test_variable_frame_rate_video_keeps_its_windows(tmp_path, name, decoder):
    """The regression of issue 19: one nominal interval made a 40/80 ms stream lose every window."""
    seconds, rate, vf, audio = VFR_CASES[name]
    video = _ffmpeg_vfr(tmp_path / f"{name}.mp4", seconds, rate, vf, audio)
    reader = FrameReader(video, name, 64, decoder)
    times = reader.frame_times
    last = times[-1]
    windows = [_window(video, s, min(s + 4.0, last), n) for n, s in enumerate(np.arange(0.0, last - 1.0, 3.0))]
    cfg = FramesConfig(segments=4, candidates=3, short_side=64, format="raw", decoder=decoder)
    rows, dropped = decode_video_windows(windows, cfg)
    assert dropped == {} and len(rows) == len(windows)
    for row in rows:  # each stored frame is the one on screen at its candidate time
        wanted = candidate_times(row["starts"][0], row["ends"][-1], cfg.segments, cfg.candidates)
        shown = reader.frame_times[reader.index_at(wanted)]
        assert np.allclose(row["frame_times"], shown, atol=1e-4)
        assert np.all(np.asarray(row["frame_times"]) <= wanted + 1e-4)


def test_a_real_hole_and_the_end_of_the_stream_stay_uncovered(tmp_path):
    # 25 fps for 4 s, then a 5 s hole, then 4 s more; audio to 20 s
    video = _ffmpeg_vfr(tmp_path / "hole.mp4", 8, 25, "setpts='(N/25+5*gte(N\\,100))/TB'", audio_s=20)
    reader = FrameReader(video, "hole", 64, "pyav")
    times = reader.frame_times
    assert times[99] == pytest.approx(3.96, abs=1e-3) and times[100] == pytest.approx(9.0, abs=1e-3)
    probe = np.array([1.0, 3.99, 4.2, 6.0, 8.9, 9.5, 12.9, 13.2, 15.0])
    off = reader.off_frames(probe, reader.index_at(probe))
    assert off.tolist() == [False, False, True, True, True, False, False, True, True]
    with pytest.raises(StageError, match="inside a gap"):
        decode_window(reader, _window(video, 3.0, 10.0), CFG)
    # the threshold is documented and configurable: a 5 s hold can be accepted on purpose
    assert not reader.off_frames(probe[:5], reader.index_at(probe[:5]), gap_min_s=6.0).any()


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
    assert dropped == {"window_outside_frames": 1} and [r["window_index"] for r in rows] == [0]
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


def test_prepare_keeps_vfr_windows_and_accounts_for_every_planned_window(tmp_path):
    """End to end: a 40/80 ms VFR video keeps every window; one with a 5 s hole loses only those over it;
    stats.json says where each planned window went, per kind."""
    src = tmp_path / "src"
    src.mkdir()
    _ffmpeg_vfr(src / "vidVFRVFRVFR.mp4", 8, 25, "setpts='(N+floor(N/2))/25/TB'")  # 12 s of frames
    _ffmpeg_vfr(src / "vidHOLEHOLEH.mp4", 8, 25, "setpts='(N/25+5*gte(N\\,100))/TB'")  # frames 0-4 s, 9-13 s
    words = [Word(f"w{i}", 0.1 + 0.5 * i, 0.1 + 0.5 * i + 0.3) for i in range(24)]  # to 12 s
    for vid in ("vidVFRVFRVFR", "vidHOLEHOLEH"):
        (src / f"{vid}.en.json3").write_text(write_json3(words))
    cfg = load_prepare_config(None, ["windows.K=2", "windows.lengths=[1.0]", "windows.gap=0.5", "windows.stride=0.5",
                                     "frames.segments=4", "frames.candidates=1", "frames.short_side=64",
                                     "run.engine=local"])
    result = prepare(src, tmp_path / "out", cfg)
    rows = [r for p in sorted((tmp_path / "out" / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    accounting = result.stats["window_accounting"]
    assert accounting["adds_up"] and accounting["stored"] == len(rows) == result.stats["windows"]
    windows = [w for p in (tmp_path / "out" / "windows").glob("*.parquet") for w in pq.read_table(p).to_pylist()]
    cut = {vid: sum(w["video_id"] == vid for w in windows) for vid in ("vidVFRVFRVFR", "vidHOLEHOLEH")}
    stored = {vid: sum(r["video_id"] == vid for r in rows) for vid in cut}
    assert stored["vidVFRVFRVFR"] == cut["vidVFRVFRVFR"] > 10  # nothing good thrown away
    lost = accounting["dropped"]["window_outside_frames"]
    assert 0 < lost == cut["vidHOLEHOLEH"] - stored["vidHOLEHOLEH"] and stored["vidHOLEHOLEH"] > 0
    for r in rows:
        if r["video_id"] == "vidHOLEHOLEH":  # no stored window reaches into the hole
            assert r["ends"][-1] <= 4.05 or r["starts"][0] >= 9.0
    from tvts_data.cli import summary_table

    assert f"= {len(rows)} stored + " in summary_table(result.stats)


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
    accounting = result.stats["window_accounting"]
    assert accounting["adds_up"] and accounting["stored"] == len(rows)
    assert accounting["dropped"]["decode_timeout"] == accounting["planned"] - len(rows) > 0
    assert rows and {r["video_id"] for r in rows} == {"vidBBBBBBBB"}
