"""`tvts-data captions` and `tvts-data inspect` as a user runs them; config errors name the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from tvts_data.captions import Word, write_json3
from tvts_data.cli import main
from tvts_data.config import ConfigError, load_prepare_config
from tvts_data.corpus import Corpus
from tvts_data.storage import measure_corpus
from tvts_data.runner import prepare
import pytest


def test_captions_prints_json_lines(tmp_path, capsys):
    words = [Word("hello", 0.5, 0.9), Word("world", 0.9, 1.4)]
    path = tmp_path / "v.en.json3"
    path.write_text(write_json3(words))
    assert main(["captions", str(path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["word"] for x in lines] == ["hello", "world"]
    assert lines[0]["start"] == pytest.approx(0.5, abs=1e-3) and lines[1]["start"] == pytest.approx(0.9, abs=1e-3)


def test_captions_piped_into_head_exits_quietly(tmp_path):
    words = [Word(f"w{i}", 0.5 * i, 0.5 * i + 0.4) for i in range(20000)]  # more than a pipe buffer
    path = tmp_path / "v.en.json3"
    path.write_text(write_json3(words))
    cli = Path(sys.executable).parent / "tvts-data"
    done = subprocess.run(f"'{cli}' captions '{path}' | head -n 2", shell=True, capture_output=True, text=True,
                          timeout=120)
    assert len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr[-2000:]


def test_captions_on_a_broken_file_fails_with_the_file_named(tmp_path, capsys):
    path = tmp_path / "bad.en.json3"
    path.write_text("{not json")
    assert main(["captions", str(path)]) == 1
    assert "bad.en.json3" in capsys.readouterr().err


def test_inspect_writes_a_contact_sheet(tmp_path):
    from tvts_data.synth import make_sample_corpus

    src = make_sample_corpus(tmp_path / "src", n_videos=1, seconds=(16, 16), seed=5, formats=("json3",))
    cfg = load_prepare_config(None, ["run.engine=local", "windows.K=3", "windows.lengths=[3.0]", "windows.stride=3"])
    prepare(src.root, tmp_path / "c", cfg)
    out = subprocess.run([sys.executable, "-m", "tvts_data.cli", "inspect", str(tmp_path / "c"),
                          "--project-videos", "1000", "--minutes-per-video", "2"],
                         capture_output=True, text=True, check=True).stdout
    assert "windows in shards" in out and "contact sheet" in out
    sheet = Image.open(tmp_path / "c" / "contact_sheet.png")
    assert sheet.width == 1280 and sheet.height > 100

    # the storage bill: what the shards and the source video weigh, and the projection
    bill = measure_corpus(Corpus(tmp_path / "c"))
    shards = list((tmp_path / "c" / "shards").glob("shard-*.parquet"))
    windows = sum(pq.read_metadata(p).num_rows for p in shards)
    assert bill.windows == windows > 0 and bill.videos == 1
    assert bill.shard_bytes == sum(p.stat().st_size for p in shards)
    assert bill.source_bytes == src.videos[0].video_path.stat().st_size
    assert bill.source_seconds == pytest.approx(src.videos[0].duration, abs=0.1)
    projection = bill.project(1000, minutes_per_video=2)
    assert projection["windows"] == pytest.approx(1000 * 2 * bill.windows_per_source_minute)
    assert projection["shard_bytes"] == pytest.approx(1000 * 2 * bill.bytes_per_source_minute)
    assert "projection for 1,000 videos of 2.0 min (given)" in out
    assert f"{bill.ratio_to_source:.1f}x the videos they come from" in out


def test_unknown_config_key_is_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("windows:\n  K: 3\n  strde: 2\n")
    with pytest.raises(ConfigError, match="strde"):
        load_prepare_config(cfg)
    with pytest.raises(ConfigError, match="windows.K"):
        load_prepare_config(None, ["windows.K=three"])
    # A wrong --set is named as the --set the user typed, not as "defaults.windows".
    with pytest.raises(ConfigError, match=r"--set 'windows.strid=2': no key 'strid' in windows; known: .*'stride'"):
        load_prepare_config(None, ["windows.strid=2"])
    with pytest.raises(ConfigError, match=r"--set 'window.K=3': no key 'window' in the top level"):
        load_prepare_config(None, ["window.K=3"])
    with pytest.raises(ConfigError, match=r"windows.K is a value, not a section"):
        load_prepare_config(None, ["windows.K.x=3"])


def test_default_yaml_lists_every_key_with_its_default():
    import dataclasses

    import yaml

    from tvts_data.config import PrepareConfig

    path = Path(__file__).resolve().parents[2] / "infra" / "data" / "default.yaml"
    written = yaml.safe_load(path.read_text())
    defaults = PrepareConfig()
    for section in dataclasses.fields(PrepareConfig):
        fields = {f.name for f in dataclasses.fields(getattr(defaults, section.name))}
        assert set(written[section.name]) == fields, section.name
    assert load_prepare_config(path) == defaults  # and the values are the defaults


def test_every_config_key_is_documented_in_data_md():
    """docs/data.md names every key of default.yaml: as `section.key` in the config table, or as `key`
    in its section's own prose or table ("YouTube download" for download.*, the ASR paragraph for asr.*)."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[2]
    written = yaml.safe_load((root / "infra" / "data" / "default.yaml").read_text())
    doc = (root / "docs" / "data.md").read_text()
    sections = {"download": doc.split("## YouTube download", 1)[1].split("\n## ", 1)[0],
                "asr": doc[doc.index("ASR (`asr.*`)"):].split("\n\n", 1)[0]}
    named = set(re.findall(r"`([A-Za-z_.]+)`", doc))
    missing = [f"{section}.{key}" for section, keys in written.items() for key in keys
               if f"{section}.{key}" not in named and f"`{key}`" not in sections.get(section, "")]
    assert not missing, f"keys of default.yaml missing from docs/data.md: {missing}"
