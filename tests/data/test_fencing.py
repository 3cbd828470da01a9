"""A killed `prepare` leaves workers that may live on for seconds: they must not write into the corpus a
rerun is building. Each run claims the corpus with a new token; every rename into it checks the token."""

from __future__ import annotations

import pytest

from tvts_data.config import load_prepare_config
from tvts_data.corpus import Corpus, StaleRunError
from tvts_data.runner import prepare, run_stage_on_chunk
from tvts_data.schema import WORDS
from tvts_data.synth import make_sample_corpus


def test_a_stale_run_renames_nothing_into_the_corpus(tmp_path):
    earlier = Corpus(tmp_path).claim()
    rerun = Corpus(tmp_path).claim()  # a new prepare started on the same folder
    target = tmp_path / "words" / "chunk-00000.parquet"
    with pytest.raises(StaleRunError, match="another prepare run claimed this corpus"):
        earlier.write_rows([], target, WORDS)
    assert not target.exists() and not list((tmp_path / "words").glob(".tmp-*"))  # no temporary left either
    rerun.write_rows([], target, WORDS)
    assert target.exists()


def test_a_worker_of_a_killed_run_cannot_finish_its_chunk(tmp_path):
    src = make_sample_corpus(tmp_path / "src", n_videos=2, seconds=(15, 16), seed=5, formats=("json3",))
    cfg = load_prepare_config(None, ["windows.K=3", "windows.lengths=[3.0]", "frames.segments=2",
                                     "frames.short_side=64", "run.engine=local"])
    out = tmp_path / "out"
    prepare(src.root, out, cfg)
    old_token = Corpus(out).claim().run_token  # the killed run's token ...
    Corpus(out).claim()  # ... and a rerun that claimed the corpus since
    part = out / "ledger" / "windows" / "chunk-00000.parquet"
    windows = out / "windows" / "chunk-00000.parquet"
    part.unlink()
    before = windows.stat().st_mtime_ns
    with pytest.raises(StaleRunError):
        run_stage_on_chunk("windows", str(out), cfg, {"chunk": 0}, run_token=old_token)
    assert not part.exists() and windows.stat().st_mtime_ns == before  # nothing renamed into place
