"""Downstream evaluations on CPU: R@K by hand, the linear probe, the clip decoder on generated mp4s,
encoder loading, and ``tvts-train eval <protocol>`` end to end for every registered protocol."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import stat
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from tvts_train.cli import main
from tvts_train.config import VideoConfig, load_config
from tvts_train.eval import (
    PROTOCOLS,
    ClipConfig,
    LabelledVideo,
    ManifestError,
    ProbeConfig,
    decode_views,
    encode_videos,
    extract_features,
    add_eval_commands,
    linear_probe,
    load_video_encoder,
    read_manifest,
    segment_indices,
    train_linear_probe,
    video_to_video_recall,
)
from tvts_train.eval.clips import IMAGENET_MEAN, IMAGENET_STD, crop_offsets, resized_size
from synthetic import ffmpeg
from tvts_train.model import CheckpointMismatch, VideoViT

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """testsrc / smptebars clips (96x64, 10 fps, 2 s = 20 frames) and a frame-index brightness ramp."""
    d = tmp_path_factory.mktemp("videos")
    out = {
        "testsrc": ffmpeg(d / "testsrc.mp4", "testsrc=size=96x64:rate=10", "-t", "2"),
        "testsrc_b": ffmpeg(d / "testsrc_b.mp4", "testsrc=size=96x64:rate=10", "-t", "2", "-vf", "hflip"),
        "bars": ffmpeg(d / "bars.mp4", "smptebars=size=96x64:rate=10", "-t", "2"),
        "bars_b": ffmpeg(d / "bars_b.mp4", "smptebars=size=96x64:rate=10", "-t", "2", "-vf", "vflip"),
        # Flat frames whose brightness is the frame number: a decoded frame tells which index it was.
        "ramp": ffmpeg(d / "ramp.mp4", "color=c=black:size=96x64:rate=10:duration=2",
                       "-vf", "geq=lum='N*10+16':cb=128:cr=128", "-crf", "1"),
    }
    (d / "garbage.mp4").write_bytes(bytes(range(256)) * 20)
    out["garbage"] = d / "garbage.mp4"
    return out


def tiny_vit(frames: int = 4, size: int = 64) -> VideoViT:
    torch.manual_seed(0)
    cfg = VideoConfig(img_size=size, num_frames=frames, patch_size=16, tubelet_size=2, width=32, depth=1, heads=2)
    return VideoViT(cfg).eval()


# ----------------------------------------------------------------------------- retrieval

# Six 2-D vectors at these angles (degrees), with unequal lengths so that cosine and dot product rank
# differently, in three classes. Nearest neighbours by angle, self excluded (first same-class rank):
#   q0   0 A: v1 10 B, v2 25 A                     -> rank 2
#   q1  10 B: v0 10 A, v2 15 A, v3 80 C, v4 90 B   -> rank 4
#   q2  25 A: v1 15 B, v0 25 A                     -> rank 2
#   q3  90 C: v4 10 B, v2 65 A, v1 80 B, v0 90 A, v5 120 C -> rank 5
#   q4 100 B: v3 10 C, v2 75 A, v1 90 B            -> rank 3
#   q5 210 C: v4 110 B, v3 120 C                   -> rank 2
# R@1 = 0, R@2 = 3/6, R@3 = 4/6, R@4 = 5/6, R@5 = 6/6. Without self-exclusion R@1 would be 1.
ANGLES = [0.0, 10.0, 25.0, 90.0, 100.0, 210.0]
LENGTHS = [1.0, 2.0, 0.5, 3.0, 1.5, 4.0]
CLASSES = [0, 1, 0, 2, 1, 2]


def hand_example() -> tuple[torch.Tensor, torch.Tensor]:
    rad = torch.tensor(ANGLES) * math.pi / 180
    feats = torch.stack([rad.cos(), rad.sin()], dim=1) * torch.tensor(LENGTHS)[:, None]  # (6, 2)
    return feats, torch.tensor(CLASSES)


def test_recall_matches_the_hand_computed_example():
    feats, labels = hand_example()
    got = video_to_video_recall(feats, labels, ks=(1, 2, 3, 4, 5, 10))
    want = {"R@1": 0.0, "R@2": 3 / 6, "R@3": 4 / 6, "R@4": 5 / 6, "R@5": 1.0, "R@10": 1.0}
    assert got == pytest.approx(want)


def test_recall_excludes_the_query_itself():
    feats, labels = hand_example()
    # Duplicating a video gives its copy as the nearest neighbour (same class): only that hits at R@1.
    dup_feats = torch.cat([feats, feats[:1]])
    dup_labels = torch.cat([labels, labels[:1]])
    assert video_to_video_recall(dup_feats, dup_labels, ks=(1,))["R@1"] == pytest.approx(2 / 7)


def brute_force_recall(feats: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    x = torch.nn.functional.normalize(feats, dim=1)
    sims = x @ x.T
    sims.fill_diagonal_(float("-inf"))
    ranked = labels[sims.argsort(dim=1, descending=True)[:, :-1]]  # (N, N-1), self (last) dropped
    same = ranked == labels[:, None]
    return {f"R@{k}": same[:, :k].any(dim=1).float().mean().item() for k in ks}


def test_chunked_recall_equals_unchunked_and_brute_force():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(53, 8, generator=g)
    labels = torch.randint(0, 5, (53,), generator=g)
    one_block = video_to_video_recall(feats, labels, chunk_size=10_000)
    chunked = video_to_video_recall(feats, labels, chunk_size=7)  # 53 = 7 * 7 + 4: a ragged last chunk
    assert chunked == one_block
    assert one_block == pytest.approx(brute_force_recall(feats, labels, (1, 5, 10)))
    assert 0 < one_block["R@1"] < one_block["R@10"] < 1  # the example is not degenerate


# ----------------------------------------------------------------------------- linear probe


def separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes in 16-D: unit-distance class means (fixed) plus small noise."""
    means = torch.eye(4, 16) * 3
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    return means[labels] + 0.3 * torch.randn(n, 16, generator=g), labels


def test_linear_probe_separates_separable_features():
    (xtr, ytr), (xva, yva) = separable(200, 1), separable(100, 2)
    cfg = ProbeConfig(epochs=20, batch_size=32, lr=1e-2, seed=0)
    metrics = linear_probe(xtr, ytr, xva, yva, num_classes=4, cfg=cfg)
    assert metrics["top1"] > 0.9
    assert metrics["top5"] == 1.0  # 4 classes: top-5 is clipped to top-4, always a hit


def test_linear_probe_is_deterministic_given_the_seed():
    xtr, ytr = separable(64, 1)
    cfg = ProbeConfig(epochs=3, batch_size=16, lr=1e-2, seed=7)
    a = train_linear_probe(xtr, ytr, 4, cfg)
    torch.manual_seed(123)  # the global RNG must not matter
    b = train_linear_probe(xtr, ytr, 4, cfg)
    c = train_linear_probe(xtr, ytr, 4, ProbeConfig(epochs=3, batch_size=16, lr=1e-2, seed=8))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


# ----------------------------------------------------------------------------- clips


def test_segment_indices_are_tsn_centres():
    assert segment_indices(20, 4) == [2, 7, 12, 17]
    assert segment_indices(20, 4, view=0, views=2) == [1, 6, 11, 16]
    assert segment_indices(20, 4, view=1, views=2) == [3, 8, 13, 18]
    short = segment_indices(3, 8)  # fewer frames than segments: repeats, stays in range
    assert short == sorted(short) and set(short) == {0, 1, 2}


def test_resize_and_crop_geometry():
    assert resized_size(64, 96, 256) == (256, 384)
    assert resized_size(640, 360, 256) == (455, 256)
    assert crop_offsets(100, 60, 1) == [20]
    assert crop_offsets(100, 60, 3) == [0, 20, 40]


def unnormalise(views: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return views * std + mean


def test_decoder_gives_normalised_crops(videos):
    views = decode_views(videos["testsrc"], ClipConfig(frames=4, short_side=73, crop=64))
    assert views.shape == (1, 3, 4, 64, 64) and views.dtype == torch.float32
    pixels = unnormalise(views[0])
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # was in [0, 1] before mean/std
    assert views.min() < -1.5 and views.max() > 1.5  # and it *was* normalised (not raw [0, 1])


def test_decoder_multi_view_shapes_and_distinct_crops(videos):
    cfg = ClipConfig(frames=4, short_side=64, crop=48, temporal_views=2, spatial_crops=3)
    views = decode_views(videos["testsrc"], cfg)  # resized to 64x96: crops at x = 0, 24, 48
    assert views.shape == (6, 3, 4, 48, 48)
    left, centre, right = views[0], views[1], views[2]
    assert not torch.equal(left, right) and not torch.equal(left, centre)
    # Crops overlap by 24 px: the right half of the left crop is the left half of the centre crop.
    assert torch.allclose(left[..., 24:], centre[..., :24])


def frame_indices_of(views: torch.Tensor, ramp_levels: torch.Tensor) -> list[int]:
    """Which ramp frame each clip frame is: nearest brightness level."""
    means = unnormalise(views).mean(dim=(0, 2, 3)) * 255  # (M,)
    return (means[:, None] - ramp_levels[None, :]).abs().argmin(dim=1).tolist()


def test_decoder_picks_segment_centres(videos):
    from decord import VideoReader

    reader = VideoReader(str(videos["ramp"]))
    assert len(reader) == 20
    levels = torch.from_numpy(reader.get_batch(list(range(20))).asnumpy()).float().mean(dim=(1, 2, 3))  # (20,)
    assert (levels.diff() > 5).all()  # the ramp really encodes the index
    views = decode_views(videos["ramp"], ClipConfig(frames=4, short_side=64, crop=64, temporal_views=2))
    assert frame_indices_of(views[0], levels) == [1, 6, 11, 16]
    assert frame_indices_of(views[1], levels) == [3, 8, 13, 18]
    one = decode_views(videos["ramp"], ClipConfig(frames=4, short_side=64, crop=64))
    assert frame_indices_of(one[0], levels) == [2, 7, 12, 17]


def test_unreadable_videos_are_skipped_counted_and_logged(videos, tmp_path, caplog):
    encoder = tiny_vit()
    items = [LabelledVideo(videos["garbage"], 0, None), LabelledVideo(videos["testsrc"], 1, None),
             LabelledVideo(tmp_path / "missing.mp4", 0, None), LabelledVideo(videos["bars"], 0, None)]
    cfg = ClipConfig(frames=4, short_side=64, crop=64)
    with caplog.at_level(logging.ERROR, logger="tvts_train.eval.features"):
        out = encode_videos(encoder, items, cfg, batch_size=2, device="cpu", num_workers=1)
    assert out.features.shape == (2, 32)
    assert out.paths == [str(videos["testsrc"]), str(videos["bars"])]
    assert out.labels.tolist() == [1, 0]
    assert [p for p, _ in out.skipped] == [str(videos["garbage"]), str(tmp_path / "missing.mp4")]
    assert "garbage.mp4" in caplog.text and "missing.mp4" in caplog.text
    with pytest.raises(RuntimeError, match="none of the 1 videos"):
        encode_videos(encoder, items[:1], cfg, device="cpu")


# ----------------------------------------------------------------------------- manifest


def write_manifest(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".csv":
        columns = list(dict.fromkeys(key for r in rows for key in r))
        lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_manifest_formats_resolve_paths_and_classes(tmp_path, suffix):
    rows = [{"video_path": "clips/a.mp4", "label": "10", "split": "train"},
            {"video_path": "/abs/b.mp4", "label": "9", "split": "val"},
            {"video_path": "c.mp4", "label": "10", "split": ""}]
    m = read_manifest(write_manifest(tmp_path / f"m{suffix}", rows))
    assert m.classes == ("9", "10")  # integer labels in numeric order
    assert [v.path for v in m.videos] == [tmp_path / "clips/a.mp4", Path("/abs/b.mp4"), tmp_path / "c.mp4"]
    assert [v.label for v in m.videos] == [1, 0, 1]
    assert [v.path.name for v in m.select("train")] == ["a.mp4"] and len(m.select(None)) == 3


def test_manifest_errors_name_the_problem(tmp_path):
    bad_split = write_manifest(tmp_path / "s.jsonl", [{"video_path": "a.mp4", "label": "x", "split": "dev"}])
    with pytest.raises(ManifestError, match="row 0: split 'dev'"):
        read_manifest(bad_split)
    (tmp_path / "n.jsonl").write_text(json.dumps({"video_path": "a.mp4"}) + "\n")
    with pytest.raises(ManifestError, match="missing \\['label'\\]"):
        read_manifest(tmp_path / "n.jsonl")


# ----------------------------------------------------------------------------- features


def test_features_are_unmasked_normed_cls_and_views_average():
    encoder = tiny_vit()
    clips = torch.randn(3, 2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(0))  # (N, V, 3, T, H, W)
    feats = extract_features(encoder, clips, batch_size=4, device="cpu")
    assert feats.shape == (3, 32)
    with torch.no_grad():
        per_view = encoder.forward_features(clips.flatten(0, 1))[:, 0].view(3, 2, 32)  # all tokens visible
    assert torch.allclose(feats, per_view.mean(dim=1), atol=1e-5)
    # Same answer per view through the single-view path, in any batch size: nothing random (no masking).
    single = extract_features(encoder, clips[:, 0], batch_size=1, device="cpu")
    assert torch.allclose(single, per_view[:, 0], atol=1e-5)


def test_load_video_encoder_round_trip_and_refusals(tmp_path):
    cfg = load_config("tiny")
    model = VideoViT(cfg.model.video)
    run = tmp_path / "run"
    run.mkdir()
    save_file(model.state_dict(), str(run / "video_encoder.safetensors"))
    loaded = load_video_encoder(run, "tiny")  # a run folder works
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))

    state = model.state_dict()
    save_file({k: v for k, v in state.items() if k != "norm.weight"}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointMismatch, match="missing \\['norm.weight'\\]"):
        load_video_encoder(tmp_path / "missing.safetensors", cfg)
    save_file({**state, "head.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointMismatch, match="unexpected \\['head.weight'\\]"):
        load_video_encoder(tmp_path / "extra.safetensors", cfg.model)
    with pytest.raises(CheckpointMismatch, match="mismatched.*file \\(96,\\) vs model \\(64,\\)"):
        load_video_encoder(run, replace(cfg.model.video, width=64, heads=2))  # narrower than the file
    torch.save(state, tmp_path / "enc.pt")  # a pickle
    with pytest.raises(CheckpointMismatch, match="safetensors"):
        load_video_encoder(tmp_path / "enc.pt", cfg)  # never unpickled


def test_load_video_encoder_uses_and_checks_the_exported_metadata(tmp_path):
    from tvts_train.export import save_video_encoder

    video_cfg = load_config("tiny").model.video
    model = VideoViT(video_cfg)
    path = save_video_encoder(model.state_dict(), tmp_path / "video_encoder.safetensors", video_cfg)
    assert load_video_encoder(path).cfg == video_cfg  # no config given: the stored one
    # Readable by teammates like the run's other files (safetensors alone writes 0600).
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    # 3 heads vs 2 heads: identical tensor shapes, different encoder; only the metadata can tell.
    other_heads = replace(video_cfg, heads=2)
    VideoViT(other_heads).load_state_dict(model.state_dict())  # (shapes really do fit)
    with pytest.raises(CheckpointMismatch, match="heads: file 3 vs config 2"):
        load_video_encoder(path, other_heads)
    assert load_video_encoder(path, replace(video_cfg, drop_path=0.1)).cfg.drop_path == 0.1  # training-only
    save_file(model.state_dict(), str(tmp_path / "bare.safetensors"))
    with pytest.raises(CheckpointMismatch, match="stores no video_config"):
        load_video_encoder(tmp_path / "bare.safetensors")


# ----------------------------------------------------------------------------- CLI, every protocol

EXTRA_FLAGS = {
    "retrieval": [],
    "linear-probe": ["--epochs", "3", "--probe-batch-size", "2"],
    "finetune": ["--epochs", "1", "--ft-batch-size", "2", "--eval-every", "0"],
    "text-retrieval": ["--epochs", "1", "--tr-batch-size", "2", "--eval-split", "val",
                       "--text-model", "tiny-random-text"],
}


def test_every_protocol_has_cli_flags_and_paper_numbers():
    assert set(EXTRA_FLAGS) == set(PROTOCOLS)  # a new protocol must be added to the CLI test below
    for name, protocol in PROTOCOLS.items():
        assert protocol.name == name and protocol.reference["dataset"]
        assert all(0 < v < 1 for v in protocol.reference.values() if isinstance(v, float))


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_eval_cli_end_to_end(name, videos, tmp_path, capsys):
    cfg = load_config("tiny")  # 8 frames at 64 px
    save_file(VideoViT(cfg.model.video).state_dict(), str(tmp_path / "video_encoder.safetensors"))
    # label for the classification protocols, caption for text retrieval: one manifest serves all
    rows = [{"video_path": str(videos["testsrc"]), "label": "testsrc", "caption": "a test pattern", "split": "train"},
            {"video_path": str(videos["bars"]), "label": "bars", "caption": "colour bars", "split": "train"},
            {"video_path": str(videos["testsrc_b"]), "label": "testsrc", "caption": "a mirrored test pattern",
             "split": "val"},
            {"video_path": str(videos["bars_b"]), "label": "bars", "caption": "upside-down colour bars",
             "split": "val"}]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "res" / "results.json"
    argv = ["eval", name, "--encoder", str(tmp_path), "--config", "tiny", "--manifest", str(manifest),
            "--batch-size", "2", "--workers", "0", "--device", "cpu", "--out", str(out), *EXTRA_FLAGS[name]]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result  # stdout carries the same result
    pictures = {"retrieval": {"retrieval"}, "linear-probe": {"confusion"}, "finetune": {"confusion", "curves"},
                "text-retrieval": {"curves"}}[name]
    written = {p.name.split(".")[-2] for p in out.parent.glob("results.*.png")}
    assert written == pictures and all(p.stat().st_size > 5000 for p in out.parent.glob("results.*.png"))
    defaults = PROTOCOLS[name].clip_defaults  # text-retrieval: 4 frames; finetune: 2 x 3 views
    assert result["protocol"] == name and result["clip"]["frames"] == defaults.get("frames", 8)
    assert result["clip"]["crop"] == 64 and result["clip"]["spatial_crops"] == defaults.get("spatial_crops", 1)
    metrics = result["metrics"]["t2v"] if name == "text-retrieval" else result["metrics"]
    paper_metrics = {k for k, v in PROTOCOLS[name].reference.items() if isinstance(v, float)}
    assert paper_metrics <= set(metrics)  # every paper number has its measured counterpart
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if k.startswith(("R@", "top")))
    if name == "retrieval":
        assert set(result["metrics"]) == {"R@1", "R@5", "R@10"}
        assert result["videos"]["encoded"] == 4 and result["videos"]["skipped"] == 0
    elif name == "text-retrieval":
        assert result["captions"]["eval"]["queries"] == 2
        assert 1 <= metrics["MedR"] <= 2 and set(result["metrics"]) == {"t2v", "v2t"}
    else:
        assert result["videos"]["train"]["encoded"] == 2 and result["videos"]["val"]["encoded"] == 2
    assert result["paper"] is None  # the user's own manifest: no paper number next to it


def test_eval_cli_bad_inputs_end_in_one_line_and_exit_2(videos, tmp_path, caplog):
    save_file(VideoViT(load_config("tiny").model.video).state_dict(), str(tmp_path / "video_encoder.safetensors"))
    no_label = write_manifest(tmp_path / "m.csv", [{"video_path": str(videos["bars"]), "split": "val"}])
    argv = ["eval", "retrieval", "--encoder", str(tmp_path), "--config", "tiny", "--manifest", str(no_label)]
    cases = [(["--frames", "3"], "--frames 3 does not tile into the encoder's tubelets of 2"),
             (["--crop", "32"], "--crop 32 does not match the encoder's 64 px"),
             ([], "row 0: missing ['label']"),
             (["--encoder", str(tmp_path / "nowhere")], "expected a .safetensors file or a run folder")]
    no_split = write_manifest(tmp_path / "n.csv", [{"video_path": str(videos["bars"]), "label": "bars"}])
    probe = ["eval", "linear-probe", "--encoder", str(tmp_path), "--config", "tiny", "--manifest", str(no_split)]
    cases = [(argv + extra, message) for extra, message in cases]
    cases.append((probe, "no 'split' column (or every cell of it empty), and this protocol reads split 'train'"))
    for args, message in cases:
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert main(args) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and message in errors[0], (args, errors)


def test_each_protocol_offers_the_manifest_and_datasets_it_can_read(capsys):
    from tvts_train.eval.datasets import ADAPTERS

    parser = argparse.ArgumentParser(prog="t")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    for name, protocol in PROTOCOLS.items():
        with pytest.raises(SystemExit):
            parser.parse_args(["eval", name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"video_path, {protocol.column} and split" in text, name
        captions = {"msrvtt", "didemo", "msvd", "lsmdc"}
        offered = {d for d in ADAPTERS if d in text.split("--dataset")[1].split("}")[0]}
        assert offered == (captions if protocol.column == "caption" else set(ADAPTERS) - captions), name


def test_frame_order_controls_reverse_and_shuffle_the_clip(videos):
    """--frame-order: the same segment-centre frames, reversed or in a fixed per-video permutation."""
    def brightness(order: str) -> list[int]:
        clip = decode_views(videos["ramp"], ClipConfig(frames=8, short_side=64, crop=64, frame_order=order))
        return [round(v, 2) for v in clip[0, 0, :, 32, 32].tolist()]  # normalised red at the centre, per frame

    forward, backward, shuffled = brightness("forward"), brightness("reversed"), brightness("shuffled")
    assert backward == forward[::-1] and sorted(shuffled) == sorted(forward) and shuffled != forward
    assert brightness("shuffled") == shuffled  # fixed per video: every encoder sees the same permutation


def test_add_eval_commands_plugs_into_another_cli():
    parser = argparse.ArgumentParser(prog="other")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    for name in PROTOCOLS:
        args = parser.parse_args(["eval", name, "--encoder", "e.safetensors", "--manifest", "m.csv"])
        assert args.protocol == name and args.func.__name__ == "run_eval_command"
        assert args.frames is None and args.batch_size == 8 and args.config is None
