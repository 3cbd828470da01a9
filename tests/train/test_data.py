"""The streaming shard loader: splitting, TSN sampling, crops, transcript shuffles, bad data, resume.

These tests need no model and no DeepSpeed: batches carry the raw texts and no token ids.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from synthetic import ORDINALS, red_to_index, window_row, write_corpus, write_shard
from tvts_train.config import DataConfig
from tvts_train.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SampleError,
    WorkerPos,
    build_loader,
    decode_frame,
    normalize_video,
    pick_decoder,
    split_units,
    tsn_indices,
    worker_batches,
)

N_WINDOWS, SEGMENTS, CANDIDATES, HEIGHT, WIDTH = 24, 8, 3, 72, 80


def data_cfg(**kw) -> DataConfig:
    base = dict(frames=8, crop_size=64, K=4, max_text_len=16, batch_size=4, shuffle_buffer=8, num_workers=0, seed=3)
    return DataConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, n_windows=N_WINDOWS, per_file=8, row_group_size=4)  # 3 files x 2 row groups
    return root


def window_number(window_id: str) -> int:
    return int(window_id[3:8])


def all_ids(loader, n_batches: int | None = None) -> list[str]:
    return [w for b in islice(loader, n_batches) for w in b["window_id"]]


def one_epoch(plan, rank: int, role: int) -> list[str]:
    """The window ids one (rank, worker) reads in epoch 0, straight from its stream."""
    plan = dataclasses.replace(plan, rank=rank, epochs=1)
    return [w for b in worker_batches(plan, role, WorkerPos(), None) for w in b.get("window_id", [])]


@pytest.mark.parametrize("world_size,workers", [(2, 3), (2, 2), (4, 3)])
def test_ranks_and_workers_split_without_overlap_and_cover_all(corpus, world_size, workers):
    cfg = data_cfg(num_workers=workers, batch_size=1)
    plan = build_loader(corpus, cfg, batch_size=1, world_size=world_size).plan
    parts = [one_epoch(plan, r, w) for r in range(world_size) for w in range(workers)]
    flat = [w for p in parts for w in p]
    assert all(parts), "every worker gets at least one unit (row groups are split when too few)"
    assert len(flat) == len(set(flat)) == N_WINDOWS


def test_split_units_cuts_row_groups_only_when_needed(corpus):
    units = build_loader(corpus, data_cfg(), batch_size=1).plan.units
    assert len(units) == 6 and split_units(list(units), 6) == list(units)
    split = split_units(list(units), 12)
    assert len(split) >= 12 and sum(u.rows for u in split) == N_WINDOWS
    with pytest.raises(ValueError, match="cannot feed"):
        split_units(list(units), 100)


def unnormalise_red(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) uint8 as the loader ships it -> (B, T) mean red value in 0..255."""
    return video[:, 0].float().mean(dim=(2, 3))  # (B, T)


def test_normalize_video_is_imagenet_normalisation():
    video = torch.randint(0, 256, (2, 3, 4, 5, 5), dtype=torch.uint8)
    out = normalize_video(video)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    assert out.dtype == torch.float32
    assert torch.allclose(out, (video.float() / 255.0 - mean) / std, atol=1e-5)
    assert normalize_video(video, torch.bfloat16).dtype == torch.bfloat16


def test_tsn_is_fresh_each_epoch_and_stays_in_its_segment(corpus):
    loader = build_loader(corpus, data_cfg(), batch_size=4, train=True, epochs=2)
    seen: dict[str, list[list[int]]] = {}
    for batch in loader:
        reds = unnormalise_red(batch["video"])
        for i, wid in enumerate(batch["window_id"]):
            idx = batch["frame_index"][i].tolist()
            seen.setdefault(wid, []).append(idx)
            # segment t holds stored frames 3t, 3t+1, 3t+2 (segment-major)
            assert all(CANDIDATES * t <= f < CANDIDATES * (t + 1) for t, f in enumerate(idx))
            # the pixels are those of the frames the labels name
            assert [red_to_index(r) for r in reds[i].tolist()] == idx
    assert len(seen) == N_WINDOWS and all(len(v) == 2 for v in seen.values())
    changed = sum(a != b for a, b in seen.values())
    assert changed >= N_WINDOWS - 1, "a fresh TSN draw per epoch (8 segments x 3 candidates)"


def test_eval_takes_middle_candidates_and_centre_crop(corpus):
    loader = build_loader(corpus, data_cfg(), batch_size=5, train=False)
    batches = list(loader)
    assert sum(len(b["window_id"]) for b in batches) == N_WINDOWS  # one pass, last batch smaller
    for batch in batches:
        assert (batch["frame_index"] == torch.arange(SEGMENTS) * CANDIDATES + CANDIDATES // 2).all()
        assert (batch["crop_yx"] == torch.tensor([(HEIGHT - 64) // 2, (WIDTH - 64) // 2])).all()
    again = [b["order"] for b in build_loader(corpus, data_cfg(), batch_size=5, train=False)]
    assert all(torch.equal(a, b["order"]) for a, b in zip(again, batches)), "eval is deterministic"


def test_tsn_resamples_other_segment_counts():
    # 4 stored segments x 3 candidates -> 8 frames: each pair of frames shares one stored segment
    assert tsn_indices(12, 8, None).tolist() == [0, 2, 3, 5, 6, 8, 9, 11]
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = tsn_indices(12, 8, rng)
        edges = (np.arange(9) * 12) // 8
        assert ((edges[:-1] <= idx) & (idx < edges[1:])).all()
    assert tsn_indices(4, 8, None).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # fewer stored: repeat


def test_crop_sizes_and_random_train_crops(corpus):
    batch = next(iter(build_loader(corpus, data_cfg(), batch_size=8, train=True)))
    assert batch["video"].shape == (8, 3, 8, 64, 64) and batch["video"].dtype == torch.uint8
    ys, xs = batch["crop_yx"][:, 0], batch["crop_yx"][:, 1]
    assert (ys >= 0).all() and (ys <= HEIGHT - 64).all() and (xs >= 0).all() and (xs <= WIDTH - 64).all()
    assert len(set(map(tuple, batch["crop_yx"].tolist()))) > 1
    small = build_loader(corpus, data_cfg(crop_size=48, frames=4), batch_size=2, train=False)
    assert next(iter(small))["video"].shape == (2, 3, 4, 48, 48)


def test_order_labels_are_permutations_and_texts_follow_them(corpus):
    shuffled = 0
    for batch in islice(build_loader(corpus, data_cfg(), batch_size=4), 6):
        assert batch["order"].dtype == torch.long
        for texts, order, wid in zip(batch["texts"], batch["order"].tolist(), batch["window_id"]):
            assert sorted(order) == [0, 1, 2, 3]
            for slot, true_pos in enumerate(order):
                n = window_number(wid)
                assert texts[slot] == f"{ORDINALS[true_pos]} part of clip {n} topic {n % 5}"
            shuffled += order != [0, 1, 2, 3]
    assert shuffled > 12


def test_corrupt_samples_are_skipped_and_counted(tmp_path, caplog):
    rows = [window_row(i) for i in range(8)]
    rows[1]["frames"] = [b[:40] for b in rows[1]["frames"]]  # truncated JPEGs
    rows[3]["frames"] = rows[3]["frames"][:-1]  # wrong frame count
    rows[5]["texts"] = rows[5]["texts"][:3]  # a bad row: 3 transcripts
    rows[6]["frames"] = [b"not a jpeg at all"] * len(rows[6]["frames"])
    write_shard(tmp_path / "s.parquet", rows)
    loader = build_loader(tmp_path, data_cfg(), batch_size=1, train=True, epochs=1)
    with caplog.at_level(logging.WARNING, logger="tvts_train.data"):
        ids = all_ids(loader)
    assert sorted(window_number(w) for w in ids) == [0, 2, 4, 7]
    assert loader.counters()["skipped_samples"] == 4 and loader.counters()["samples"] == 4
    text = caplog.text
    assert "undecodable JPEG" in text and "wrong frame count" in text and "3 transcripts" in text


def test_corrupt_shard_files_are_skipped_with_an_error_naming_them(corpus, tmp_path, caplog):
    good = sorted(corpus.glob("*.parquet"))
    for p in good[:2]:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    data = good[2].read_bytes()
    (tmp_path / "truncated.parquet").write_bytes(data[: len(data) // 2])
    table = pq.read_table(good[2]).replace_schema_metadata({b"tvts.schema_version": b"99"})
    pq.write_table(table, tmp_path / "future.parquet")
    pq.write_table(table.replace_schema_metadata({b"tvts.schema_version": b"v1"}), tmp_path / "edited.parquet")
    with caplog.at_level(logging.ERROR, logger="tvts_train.data"):
        loader = build_loader(tmp_path, data_cfg(), batch_size=4, epochs=1)
    for name in ("garbage.parquet", "truncated.parquet", "future.parquet", "edited.parquet"):
        assert name in caplog.text
    assert "schema version 99" in caplog.text and "is not a number" in caplog.text
    assert loader.counters()["bad_files"] == 4
    assert len(set(all_ids(loader))) == 16  # the two good files


def _corrupt(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["frames"] = row["frames"][:-1]  # wrong frame count: every row is skipped
    return rows


@pytest.mark.parametrize("workers", [0, 2])
def test_a_worker_whose_share_is_all_corrupt_goes_on(tmp_path, workers, caplog):
    """Half the corpus is bad: some epochs deal a worker only bad units; training must go on."""
    write_shard(tmp_path / "good.parquet", [window_row(i) for i in range(8)])
    write_shard(tmp_path / "bad.parquet", _corrupt([window_row(i) for i in range(8, 24)]))
    loader = build_loader(tmp_path, data_cfg(num_workers=workers, shuffle_buffer=1), batch_size=2)
    with caplog.at_level(logging.WARNING, logger="tvts_train.data"):
        ids = all_ids(loader, 30)  # many epochs: the bad units land alone on a worker again and again
    assert len(ids) == 60 and {window_number(w) for w in ids} <= set(range(8))
    assert loader.counters()["skipped_samples"] > 0


def test_a_corpus_without_one_valid_sample_is_an_error(tmp_path):
    write_shard(tmp_path / "bad.parquet", _corrupt([window_row(i) for i in range(8)]))
    loader = build_loader(tmp_path, data_cfg(), batch_size=2)
    with pytest.raises(RuntimeError, match="no valid sample in any of the 2 row groups"):
        all_ids(loader, 1)


def test_unreadable_row_group_is_skipped_once_and_counted(corpus, monkeypatch, caplog):
    from tvts_train import data as data_mod

    original = data_mod._RowCache._load

    def failing(self, u):
        if self.units[u].row_group == 1 and self.units[u].path.endswith("00001-000.parquet"):
            raise OSError("simulated damaged page")
        return original(self, u)

    monkeypatch.setattr(data_mod._RowCache, "_load", failing)
    loader = build_loader(corpus, data_cfg(), batch_size=2, epochs=1)
    with caplog.at_level(logging.ERROR, logger="tvts_train.data"):
        ids = all_ids(loader)
    assert len(ids) == N_WINDOWS - 4 and loader.counters()["skipped_units"] == 1
    assert "simulated damaged page" in caplog.text and "00001-000.parquet" in caplog.text


@pytest.mark.parametrize("workers,cut", [(0, 5), (0, 4), (2, 3)])  # (0, 4): cut at an epoch's end
def test_state_dict_resume_reproduces_the_stream(corpus, workers, cut):
    cfg = data_cfg(num_workers=workers)
    kw = dict(batch_size=3, train=True, rank=1, world_size=2)
    full = list(islice(build_loader(corpus, cfg, **kw), 11))  # 33 samples of this rank's 12: 3 epochs

    first = build_loader(corpus, cfg, **kw)
    head = list(islice(first, cut))
    state = first.state_dict()
    resumed = build_loader(corpus, cfg, **kw)
    resumed.load_state_dict(state)
    tail = list(islice(resumed, 11 - cut))

    for a, b in zip(full, head + tail, strict=True):
        assert a["window_id"] == b["window_id"] and a["texts"] == b["texts"]
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["order"], b["order"])
    assert resumed.counters()["samples"] == 33 and resumed.counters()["epoch"] >= 2


def test_load_state_dict_refuses_a_different_layout(corpus):
    state = build_loader(corpus, data_cfg(), batch_size=3).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        build_loader(corpus, data_cfg(), batch_size=3, world_size=2).load_state_dict(state)


def test_raw_frames_decode_like_jpeg(tmp_path):
    write_shard(tmp_path / "raw.parquet", [window_row(i, frame_format="raw") for i in range(4)])
    batch = next(iter(build_loader(tmp_path, data_cfg(), batch_size=4, train=False)))
    reds = unnormalise_red(batch["video"])
    assert [[red_to_index(r) for r in row] for row in reds.tolist()] == batch["frame_index"].tolist()


def test_every_jpeg_decoder_gives_the_same_pixels():
    """simplejpeg (the default where it imports), PIL and the chosen 'auto' decode the same pixels bit for
    bit, so a batch does not depend on the machine's decoder: exact resume across machines holds."""
    import io

    from PIL import Image

    from tvts_data.synth.video import CameraScene

    frame = CameraScene(128, 72, seed=1).frame(30)

    def jpeg(img: Image.Image, **options) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", **options)
        return buf.getvalue()

    rgb = Image.fromarray(frame)
    blobs = {"4:2:0 q90": jpeg(rgb, quality=90), "4:4:4": jpeg(rgb, subsampling=0), "progressive":
             jpeg(rgb, progressive=True), "grey": jpeg(rgb.convert("L")), "cmyk": jpeg(rgb.convert("CMYK"))}
    assert pick_decoder("auto") == "simplejpeg"
    for name, blob in blobs.items():
        want = decode_frame(blob, "jpeg", 72, 128, "pil")
        got = decode_frame(blob, "jpeg", 72, 128, "simplejpeg")
        assert want.shape == (72, 128, 3) and np.array_equal(got, want), name
    for bad in (b"not a jpeg", blobs["4:2:0 q90"][:300]):
        with pytest.raises(SampleError, match="undecodable JPEG"):
            decode_frame(bad, "jpeg", 72, 128, "simplejpeg")
    with pytest.raises(ValueError, match="unknown JPEG decoder"):
        pick_decoder("libjpeg")


def _expected_video(corpus: Path, batch: dict, crop: int) -> torch.Tensor:
    """The batch's clips rebuilt from the shard rows by hand: PIL decode of the chosen stored frames,
    the reported crop, stacked channels-first."""
    rows = {r["window_id"]: r for p in sorted(corpus.glob("*.parquet")) for r in pq.read_table(p).to_pylist()}
    clips = []
    for b, wid in enumerate(batch["window_id"]):
        row, (y, x) = rows[wid], batch["crop_yx"][b].tolist()
        frames = [decode_frame(row["frames"][i], row["frame_format"], row["height"], row["width"], "pil")
                  for i in batch["frame_index"][b].tolist()]
        clips.append(np.stack([f[y : y + crop, x : x + crop] for f in frames]))  # (T, S, S, 3)
    return torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3)  # (B, 3, T, S, S)


@pytest.mark.parametrize("workers", [0, 2])
def test_jpegs_decoded_in_the_main_process_give_the_same_batches(corpus, workers):
    """data.decode=device on a machine without a GPU: workers ship JPEG bytes and crop origins, the main
    process decodes with the CPU decoder (no torchvision): the same batches, bit for bit, as decoding in
    the workers, and both equal the stored frames decoded and cropped by hand."""
    kw = dict(batch_size=3, train=True, rank=0, world_size=1)
    in_workers = list(islice(build_loader(corpus, data_cfg(num_workers=workers, decode="worker"), **kw), 6))
    shipped = build_loader(corpus, data_cfg(num_workers=workers, decode="device"), **kw)
    assert shipped.plan.spec.ship_jpeg and not build_loader(corpus, data_cfg(), **kw).plan.spec.ship_jpeg
    in_main = list(islice(shipped, 6))
    for a, b in zip(in_workers, in_main, strict=True):
        assert a["window_id"] == b["window_id"] and a["texts"] == b["texts"]
        assert torch.equal(a["order"], b["order"]) and torch.equal(a["crop_yx"], b["crop_yx"])
        assert a["video"].shape == b["video"].shape == (3, 3, 8, 64, 64) and b["video"].dtype == torch.uint8
        assert torch.equal(a["video"], b["video"])
        assert torch.equal(b["video"], _expected_video(corpus, b, 64))
        assert "jpeg_data" not in b


def test_the_batch_video_is_a_channels_first_view_normalised_contiguous(corpus):
    """The crops are written once into a (B, T, H, W, 3) buffer and handed out as a channels-first view
    (no transpose copy in the workers); normalize_video returns a contiguous tensor all the same."""
    batch = next(iter(build_loader(corpus, data_cfg(), batch_size=4, train=True)))
    video = batch["video"]
    assert video.shape == (4, 3, 8, 64, 64) and not video.is_contiguous()
    assert video.permute(0, 2, 3, 4, 1).is_contiguous()
    out = normalize_video(video)
    assert out.is_contiguous() and torch.equal(out, normalize_video(video.contiguous()))


def test_a_bad_jpeg_shipped_to_the_main_process_is_skipped_and_counted(tmp_path, caplog):
    """data.decode=device: a frame whose header is bad (or of another size) is skipped in the worker, so the
    batches are those of decode=worker; one that fails only in full decoding drops its sample from its
    batch in the main process. Either way the sample counts as skipped, never as a sample."""
    rows = [window_row(i) for i in range(6)]
    rows[2]["frames"] = [b[:40] for b in rows[2]["frames"]]  # truncated inside the header
    write_shard(tmp_path / "header" / "s.parquet", rows)
    worker = list(build_loader(tmp_path / "header", data_cfg(decode="worker"), batch_size=3, train=False))
    shipped = build_loader(tmp_path / "header", data_cfg(decode="device"), batch_size=3, train=False)
    for a, b in zip(worker, list(shipped), strict=True):
        assert a["window_id"] == b["window_id"] and torch.equal(a["video"], b["video"])
    assert shipped.counters()["skipped_samples"] == 1 and shipped.counters()["samples"] == 5

    rows = [window_row(i) for i in range(6)]
    rows[2]["frames"] = [b[: b.index(b"\xff\xda") + 16] for b in rows[2]["frames"]]  # headers whole, scan cut
    write_shard(tmp_path / "body" / "s.parquet", rows)
    loader = build_loader(tmp_path / "body", data_cfg(decode="device"), batch_size=3, train=False)
    with caplog.at_level(logging.WARNING, logger="tvts_train.data"):
        batches = list(loader)
    assert [len(b["window_id"]) for b in batches] == [2, 3]
    assert all(b["video"].shape[0] == b["order"].shape[0] == len(b["texts"]) for b in batches)
    assert sorted(window_number(w) for b in batches for w in b["window_id"]) == [0, 1, 3, 4, 5]
    assert loader.counters()["skipped_samples"] == 1 and loader.counters()["samples"] == 5
    assert "undecodable JPEG" in caplog.text and loader.state_dict()["decode_skipped"] == 1


def test_num_workers_auto_divides_the_cores_among_the_ranks_of_a_node():
    from tvts_train.data import resolve_num_workers

    assert resolve_num_workers("auto", local_world_size=8, cores=192) == 23  # one core per rank's own process
    assert resolve_num_workers("auto", local_world_size=1, cores=2) == 1
    assert resolve_num_workers("auto", local_world_size=8, cores=8) == 1  # never zero: one worker at least
    assert resolve_num_workers("auto", local_world_size=1, cores=256) == 32  # capped
    assert resolve_num_workers(3, local_world_size=8, cores=192) == 3  # a number stays as given
    with pytest.raises(ValueError, match="num_workers"):
        build_loader(Path("."), data_cfg(num_workers="auto"), batch_size=1)


def test_a_corpus_whose_jpegs_never_decode_on_the_device_is_an_error(tmp_path, monkeypatch):
    """Shipped JPEGs are decoded only in the main process, so the workers cannot tell that no sample is
    usable: the loader stops with an error instead of looping over empty batches."""
    import tvts_train.data as data_mod

    monkeypatch.setattr(data_mod, "MAX_EMPTY_BATCHES", 5)
    rows = [window_row(i) for i in range(4)]
    for row in rows:  # headers whole (the workers pass them), every scan cut short
        row["frames"] = [b[: b.index(b"\xff\xda") + 16] for b in row["frames"]]
    write_shard(tmp_path / "s.parquet", rows)
    loader = build_loader(tmp_path, data_cfg(decode="device"), batch_size=2, train=True)
    with pytest.raises(RuntimeError, match="none of the last 5 batches"):
        next(iter(loader))


@pytest.mark.parametrize("decode", ["worker", "device"])
def test_null_frames_and_frames_of_two_sizes_in_a_clip_are_skipped_and_counted(tmp_path, decode, caplog):
    """A null frame (or a null frame list) in a shard, and a clip whose frames have two sizes, cost their
    sample only: skipped with a warning that says why, every good sample still comes out."""
    rows = [window_row(i) for i in range(6)]
    rows[1]["frames"] = [None] * len(rows[1]["frames"])
    rows[2]["frames"] = None
    small = window_row(2, height=HEIGHT + 16, width=WIDTH + 16)["frames"]  # every TSN pick meets both sizes
    rows[4]["frames"] = [small[i] if (i // CANDIDATES) % 2 else b for i, b in enumerate(rows[4]["frames"])]
    write_shard(tmp_path / "s.parquet", rows)
    loader = build_loader(tmp_path, data_cfg(decode=decode), batch_size=1, train=True, epochs=1)
    with caplog.at_level(logging.WARNING, logger="tvts_train.data"):
        ids = all_ids(loader)
    assert sorted(window_number(w) for w in ids) == [0, 3, 5]
    assert loader.counters()["skipped_samples"] == 3 and loader.counters()["samples"] == 3
    assert "null frame" in caplog.text and "bad row" in caplog.text
    assert ("differ in size" if decode == "worker" else "a JPEG of") in caplog.text


def test_stored_frames_are_a_row_of_their_own_indexed_like_a_list(tmp_path):
    """A row's frames are one Arrow array of its own (so a row waiting in the shuffle buffer never pins its
    whole row group) handed out as zero-copy views; indexing works like a list's."""
    from tvts_train.data import StoredFrames

    rows = [window_row(i) for i in range(3)]
    rows[1]["frames"][2] = None
    write_shard(tmp_path / "s.parquet", rows)
    frames = pq.read_table(tmp_path / "s.parquet", columns=["frames"]).slice(1, 2).column("frames").chunk(0)
    stored = StoredFrames.of_row(frames, 0)  # row 1 of the file
    assert len(stored) == len(rows[1]["frames"])
    assert stored[0].tobytes() == rows[1]["frames"][0] and stored[-1].tobytes() == rows[1]["frames"][-1]
    assert stored[np.int64(1)].tobytes() == rows[1]["frames"][1] and stored[2] is None
    assert [v.tobytes() for v in stored[:2]] == rows[1]["frames"][:2]
    with pytest.raises(IndexError):
        stored[len(stored)]
    with pytest.raises(TypeError):
        stored[1.5]
    assert stored[0].format == "B"  # unsigned bytes, as the decoders and comparisons with bytes want
    assert stored._values.buffers()[2].address != frames.values.buffers()[2].address  # not the row group's
    assert StoredFrames.of_row(pq.read_table(tmp_path / "s.parquet", columns=["frames"]).column("frames").chunk(0),
                               1)[2] is None


class _SharedProbe(torch.utils.data.IterableDataset):
    def __iter__(self):
        from tvts_train.data import new_uint8_buffer

        yield new_uint8_buffer((2, 3)).is_shared()


def test_batch_buffers_are_made_in_shared_memory_inside_loader_workers():
    """In a DataLoader worker the batch buffer starts in shared memory, so sending it to the main process
    copies nothing; in the main process it is ordinary memory."""
    from tvts_train.data import new_uint8_buffer

    assert not new_uint8_buffer((2, 3)).is_shared()
    assert list(torch.utils.data.DataLoader(_SharedProbe(), batch_size=None, num_workers=1)) == [True]
