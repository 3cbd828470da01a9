"""Input adapters: folders, manifests, YT-Temporal annotations and ID lists become source rows; bad rows
become rejections with reasons, never exceptions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tvts_data.config import load_prepare_config
from tvts_data.inputs import assign_chunks, choose_caption, read_sources

CFG = load_prepare_config(None)


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_folder_pairs_videos_with_their_best_caption(tmp_path):
    touch(tmp_path / "aaa.mp4")
    touch(tmp_path / "aaa.en.vtt")
    touch(tmp_path / "aaa.en.json3")  # json3 is preferred over vtt
    touch(tmp_path / "aaa.de.json3")
    touch(tmp_path / "bbb.mp4")
    touch(tmp_path / "bbb.json", json.dumps({"subtitles": [], "info": {"duration": 1}}))  # YT-Temporal
    touch(tmp_path / "ccc.mp4")  # no captions at all
    sources, rejected = read_sources(tmp_path, CFG)
    by_id = {s["video_id"]: s for s in sources}
    assert rejected == []
    assert Path(by_id["aaa"]["caption_path"]).name == "aaa.en.json3"
    assert by_id["bbb"]["kind"] == "yttemporal" and by_id["bbb"]["annotation_path"].endswith("bbb.json")
    assert by_id["ccc"]["caption_path"] is None and by_id["ccc"]["kind"] == "local"


def test_original_language_track_preferred_and_foreign_only_kept_for_the_ledger(tmp_path):
    a = [touch(tmp_path / n) for n in ("v.en-de.json3", "v.en-orig.vtt")]
    assert choose_caption(a, "v", CFG).name == "v.en-orig.vtt"
    only_foreign = [touch(tmp_path / "w.de.vtt")]
    assert choose_caption(only_foreign, "w", CFG).name == "w.de.vtt"  # the words stage says why it is refused


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_with_relative_paths_missing_files_and_duplicates(tmp_path, fmt):
    touch(tmp_path / "videos" / "one.mp4")
    touch(tmp_path / "videos" / "one.en.srt")
    touch(tmp_path / "videos" / "two.mp4")
    rows = [{"video_path": "videos/one.mp4"}, {"video_path": "videos/gone.mp4"},
            {"video_path": "videos/two.mp4"}, {"video_path": "videos/one.mp4"}]
    path = tmp_path / f"m.{fmt}"
    if fmt == "csv":
        path.write_text("video_path\n" + "\n".join(r["video_path"] for r in rows) + "\n")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    sources, rejected = read_sources(path, CFG)
    assert [s["video_id"] for s in sources] == ["one", "two"]
    assert Path(sources[0]["caption_path"]).name == "one.en.srt"
    assert sorted(r.error_kind for r in rejected) == ["duplicate", "missing_file"]
    assert any("gone.mp4" in r.message for r in rejected)


def test_id_list_becomes_youtube_sources_and_bad_lines_rejections(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("# a comment\ndQw4w9WgXcQ\nhttps://youtu.be/abcdefghijk?t=3\nnot an id\ndQw4w9WgXcQ\n")
    sources, rejected = read_sources(ids, CFG)
    assert [s["video_id"] for s in sources] == ["abcdefghijk", "dQw4w9WgXcQ"]
    assert all(s["kind"] == "youtube" and s["video_path"] is None for s in sources)
    assert [r.error_kind for r in rejected] == ["bad_id", "duplicate"] and "not an id" in rejected[0].message
    assert "already on line 2" in rejected[1].message


def test_info_json_folder_rejects_unreadable_and_duplicate_files(tmp_path):
    good = {"id": "dQw4w9WgXcQ", "title": "x"}
    (tmp_path / "a.info.json").write_text(json.dumps(good))
    (tmp_path / "b.info.json").write_text(json.dumps(good))  # the same video again
    (tmp_path / "c.info.json").write_text("{not json")
    (tmp_path / "d.info.json").write_text(json.dumps({"title": "no id"}))
    sources, rejected = read_sources(tmp_path, CFG)
    assert [s["video_id"] for s in sources] == ["dQw4w9WgXcQ"]
    assert sorted((r.video_id, r.error_kind) for r in rejected) == [
        ("b.info.json", "duplicate"), ("c.info.json", "bad_info_json"), ("d.info.json", "bad_info_json")]


def test_chunks_are_stable_and_sized():
    rows = assign_chunks([{"video_id": f"v{i}"} for i in range(5)], 2)
    assert [r["chunk"] for r in rows] == [0, 0, 1, 1, 2]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sources(tmp_path / "nope", CFG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos"):
        read_sources(tmp_path / "empty", CFG)


@pytest.mark.parametrize("allow", [False, True])
def test_translated_track_is_known_from_the_info_json_beside_the_video(tmp_path, allow):
    """A track named plainly (ID.en.json3) that the info JSON shows was asked for with tlang= is a machine
    translation: refused, or (allowed) never labelled word-timed."""
    import subprocess

    from tvts_data.captions import Word, write_json3
    from tvts_data.config import load_prepare_config
    from tvts_data.stages.errors import StageError
    from tvts_data.stages.words import extract_words

    video = tmp_path / "vidAAAAAAAA.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5",
                    "-t", "3", "-pix_fmt", "yuv420p", str(video)], check=True, timeout=60)
    caption = tmp_path / "vidAAAAAAAA.en.json3"
    caption.write_text(write_json3([Word("hallo", 0.5, 0.9), Word("welt", 1.0, 1.4)]))
    (tmp_path / "vidAAAAAAAA.info.json").write_text(json.dumps({
        "id": "vidAAAAAAAA", "language": "de",
        "automatic_captions": {"en": [{"ext": "json3", "url": "https://www.youtube.com/api/timedtext?v=x&tlang=en"}],
                               "de-orig": [{"ext": "json3", "url": "https://www.youtube.com/api/timedtext?v=x"}]}}))
    cfg = load_prepare_config(None, [f"words.allow_translated={str(allow).lower()}"])
    source = {"video_id": "vidAAAAAAAA", "video_path": str(video), "caption_path": str(caption),
              "annotation_path": None, "kind": "local"}
    if not allow:
        with pytest.raises(StageError) as err:
            extract_words(source, tmp_path, cfg)
        assert err.value.kind == "translated_captions"
    else:
        assert extract_words(source, tmp_path, cfg)["timing"] == "interpolated"
