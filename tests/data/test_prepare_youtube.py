"""The YouTube path end to end: saved yt-dlp info JSONs -> real yt-dlp download from a loopback server ->
words (captions, or ASR when there are none) -> windows -> frames, on the session Ray."""

from __future__ import annotations

import json
from pathlib import Path

import ffmpeg
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from loopback import LoopbackServer, Rule
from tvts_data.config import load_prepare_config
from tvts_data.corpus import Corpus
from tvts_data.runner import latest_status, prepare, read_ledger, retry_failed
from tvts_data.synth import make_sample_corpus

pytestmark = pytest.mark.ray

OVERRIDES = ["windows.K=3", "windows.lengths=[3.0]", "windows.stride=3.0", "frames.segments=4",
             "frames.short_side=96", "write.videos_per_chunk=2", "download.socket_timeout_s=3",
             "download.backoff_base_s=0.05", "download.backoff_max_s=0.2", "download.retries=2",
             "download.requests_per_s=50", "download.requests_burst=10", "asr.mode=captions_then_asr"]


def info_dict(srv: LoopbackServer, vid: str, video: Path, caption: Path | None, *,
              video_rule: Rule | None = None, caption_rule: Rule | None = None) -> dict:
    v = srv.add(f"/{vid}/v.mp4", video.read_bytes(), "video/mp4", video_rule)
    captions = {}
    if caption is not None:
        c = srv.add(f"/{vid}/c.json3", caption.read_bytes(), "application/json", caption_rule)
        captions = {"en-orig": [{"ext": "json3", "url": c}]}
    return {"id": vid, "extractor": "youtube", "extractor_key": "Youtube", "title": vid,
            "webpage_url": f"https://www.youtube.com/watch?v={vid}", "language": "en",
            "duration": round(float(ffmpeg.probe(str(video))["format"]["duration"])),  # whole seconds, as YouTube
            "formats": [{"format_id": "18", "url": v, "ext": "mp4", "protocol": "http", "vcodec": "avc1.42c00d",
                         "acodec": "mp4a.40.2", "height": 240, "width": 320}],
            "automatic_captions": captions}


@pytest.fixture(scope="module")
def youtube(tmp_path_factory):
    src = make_sample_corpus(tmp_path_factory.mktemp("yt-src"), n_videos=4, seconds=(17, 19), seed=11,
                             formats=("json3",))
    infos = tmp_path_factory.mktemp("infos")
    a, b, c, d = src.videos
    with LoopbackServer() as srv:
        dicts = {
            "good": info_dict(srv, a.id, a.video_path, a.caption_path),
            "429": info_dict(srv, b.id, b.video_path, b.caption_path, caption_rule=Rule(fail_status=429, fail_times=1)),
            "no_captions": info_dict(srv, c.id, c.video_path, None),
            "gone": info_dict(srv, d.id, d.video_path, d.caption_path, video_rule=Rule(fail_status=404, fail_times=-1)),
        }
        for name, info in dicts.items():
            (infos / f"{info['id']}.info.json").write_text(json.dumps(info))
        yield srv, infos, {name: info["id"] for name, info in dicts.items()}, src


def test_download_words_windows_frames_and_ledger(youtube, tmp_path, ray_session):
    srv, infos, ids, src = youtube
    cfg = load_prepare_config(None, OVERRIDES)
    out = tmp_path / "corpus"
    result = prepare(infos, out, cfg)
    final = latest_status(result.corpus)
    downloads = {r["video_id"]: r for r in read_ledger(result.corpus, "download")}

    assert final[ids["good"]]["stage"] == "frames" and final[ids["good"]]["status"] == "ok", final[ids["good"]]
    assert downloads[ids["429"]]["status"] == "ok" and downloads[ids["429"]]["attempts"] == 2
    assert downloads[ids["gone"]]["status"] == "error"
    assert not json.loads(downloads[ids["gone"]]["details"])["retryable"]
    assert "404" in downloads[ids["gone"]]["message"]
    assert srv.hits[f"/{ids['gone']}/v.mp4"] == 1  # final: never retried

    words = {r["video_id"]: r for p in sorted((out / "words").glob("*.parquet")) for r in pq.read_table(p).to_pylist()}
    assert words[ids["good"]]["timing"] == "word"
    assert words[ids["no_captions"]]["timing"] == "asr"  # the ASR fallback ran on the downloaded audio
    assert words[ids["no_captions"]]["source_format"] == "asr:pocketsphinx"
    shard_videos = {r["video_id"] for p in (out / "shards").glob("*.parquet")
                    for r in pq.read_table(p, columns=["video_id"]).to_pylist()}
    assert {ids["good"], ids["429"]} <= shard_videos

    # a rerun skips every finished video: nothing is fetched again
    hits = dict(srv.hits)
    prepare(infos, out, cfg)
    assert srv.hits == hits
    assert not list((out / "raw").glob(".tmp-*"))


def test_retry_failed_reruns_only_retryable_failures(youtube, tmp_path, ray_session):
    """Only the retryable failure is fetched again; the final one (404) and the finished video are not
    asked for; the attempt history is kept."""
    srv, infos, ids, src = youtube
    v, w = src.videos[1], src.videos[0]
    folder = tmp_path / "infos"
    folder.mkdir()
    dicts = [info_dict(srv, "flakyVideo1", v.video_path, v.caption_path,
                       caption_rule=Rule(fail_status=503, fail_times=-1)),
             info_dict(srv, "goneVideo01", v.video_path, v.caption_path, video_rule=Rule(fail_status=404, fail_times=-1)),
             info_dict(srv, "fineVideo01", w.video_path, w.caption_path)]
    for info in dicts:
        (folder / f"{info['id']}.info.json").write_text(json.dumps(info))
    cfg = load_prepare_config(None, OVERRIDES + ["write.videos_per_chunk=4"])
    out = tmp_path / "corpus"
    prepare(folder, out, cfg)
    rows = {r["video_id"]: r for r in read_ledger(Corpus(out), "download")}
    assert rows["flakyVideo1"]["status"] == "error" and json.loads(rows["flakyVideo1"]["details"])["retryable"]
    assert rows["goneVideo01"]["error_kind"] == "unavailable" and rows["fineVideo01"]["status"] == "ok"

    srv.resources["/flakyVideo1/c.json3"].rule = Rule()  # the server recovers
    hits = dict(srv.hits)
    assert retry_failed(Corpus(out)) == {"0": 1}
    assert len(list((out / "ledger" / "download" / "history").glob("chunk-00000-*.parquet"))) == 1
    prepare(folder, out, cfg)
    final = latest_status(Corpus(out))
    assert final["flakyVideo1"]["stage"] == "frames" and final["fineVideo01"]["stage"] == "frames"
    assert final["goneVideo01"]["error_kind"] == "unavailable"
    assert srv.hits["/goneVideo01/v.mp4"] == hits["/goneVideo01/v.mp4"]  # a final failure: never asked again
    assert srv.hits["/fineVideo01/v.mp4"] == hits["/fineVideo01/v.mp4"]  # downloaded already
    assert srv.hits["/flakyVideo1/c.json3"] > hits["/flakyVideo1/c.json3"]
    again = {r["video_id"]: r for r in read_ledger(Corpus(out), "download")}
    assert again["flakyVideo1"]["attempts"] == rows["flakyVideo1"]["attempts"] + 1  # history kept


def test_downloads_into_a_bucket_retry_and_delete_raw_after_frames(youtube, s3_server, tmp_path, ray_session):
    """--output s3://...: raw downloads are built on local scratch and uploaded (info JSON last), the
    words point at them in the bucket, `retry-failed` reopens the failed chunk in the bucket, the video
    downloaded already is not fetched again, and delete_raw_after_frames empties raw/ of videos there."""
    srv, infos, ids, src = youtube
    v, w = src.videos[1], src.videos[0]
    folder = tmp_path / "infos"
    folder.mkdir()
    for info in [info_dict(srv, "flakyS3vid1", v.video_path, v.caption_path, caption_rule=Rule(fail_status=503,
                                                                                                 fail_times=-1)),
                 info_dict(srv, "fineS3vid01", w.video_path, w.caption_path)]:
        (folder / f"{info['id']}.info.json").write_text(json.dumps(info))
    s3_server.create_dir("tvts-youtube")
    uri = "s3://tvts-youtube/corpus"
    cfg = load_prepare_config(None, OVERRIDES + ["write.videos_per_chunk=4", f"run.scratch_dir={tmp_path / 's'}"])
    prepare(folder, uri, cfg)

    def objects(prefix: str) -> set[str]:
        selector = pafs.FileSelector(f"tvts-youtube/corpus/{prefix}", recursive=True, allow_not_found=True)
        return {i.path.split("/corpus/", 1)[1] for i in s3_server.get_file_info(selector)
                if i.type == pafs.FileType.File}

    assert {"raw/fineS3vid01.mp4", "raw/fineS3vid01.info.json"} <= objects("raw")
    assert not [o for o in objects("raw") if o.startswith("raw/flakyS3vid1")]
    (words_file,) = objects("words")
    words = pq.read_table(f"tvts-youtube/corpus/{words_file}", filesystem=s3_server).to_pylist()
    assert [r["video_path"] for r in words] == [f"{uri}/raw/fineS3vid01.mp4"]

    srv.resources["/flakyS3vid1/c.json3"].rule = Rule()  # the server recovers
    hits = dict(srv.hits)
    assert retry_failed(uri) == {"0": 1}
    assert objects("ledger/download/history") == {"ledger/download/history/chunk-00000-000.parquet"}
    assert not objects("ledger/frames")
    result = prepare(folder, uri, load_prepare_config(None, OVERRIDES + [
        "write.videos_per_chunk=4", f"run.scratch_dir={tmp_path / 's'}", "download.delete_raw_after_frames=true"]))
    assert result.stats["videos"] == {"ok": 2}
    assert srv.hits["/fineS3vid01/v.mp4"] == hits["/fineS3vid01/v.mp4"]  # found downloaded in the bucket
    raw = objects("raw")
    assert {"raw/fineS3vid01.info.json", "raw/flakyS3vid1.info.json"} <= raw
    assert not [o for o in raw if o.endswith(".mp4")]  # frames are in the shards: the videos went
