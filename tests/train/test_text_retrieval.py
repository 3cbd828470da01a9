"""Text-to-video retrieval after fine-tuning (Frozen protocol): ranks by hand, temporal-table
resampling for another frame count, the caption manifest, and fine-tuning end to end on rendered mp4s
with the offline MiniLM text encoder."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from synthetic import ffmpeg

from tvts_train.config import TextConfig, VideoConfig, load_config
from tvts_train.eval import ClipConfig, ManifestError, load_video_encoder
from tvts_train.eval.protocols import EvalRequest
from tvts_train.eval.text_retrieval import (
    TextRetrievalConfig,
    TextRetrievalOptions,
    add_text_retrieval_arguments,
    read_caption_manifest,
    run_text_retrieval,
    text_config,
    text_retrieval_options,
    text_to_video_metrics,
    text_to_video_retrieval,
    video_to_text_metrics,
)
from tvts_train.export import save_video_encoder
from tvts_train.model import CheckpointMismatch, VideoViT

# ----------------------------------------------------------------------------- metrics

# 5 captions x 3 videos; captions 0, 1 describe v0, caption 2 v1, captions 3, 4 v2 (MSVD-like).
# Rank = 1 + wrong videos scoring >= the right one (a tie counts against the model):
#   c0: v0 0.9 best                        -> 1
#   c1: v1 0.5, v2 0.4 above v0 0.3        -> 3
#   c2: v0 0.95 above, v2 0.6 ties v1 0.6  -> 3
#   c3: v0 0.7, v1 0.1 above v2 0.0        -> 3
#   c4: v2 0.8 best                        -> 1      t2v ranks [1, 3, 3, 3, 1]
# Video to text (a video's rank = its best caption's):
#   v0: best own c0 0.9; c2 0.95 above     -> 2
#   v1: own c2 0.6; c4 0.6 ties            -> 2
#   v2: best own c4 0.8, nothing above     -> 1      v2t ranks [2, 2, 1]
SIMS = torch.tensor([[0.9, 0.1, 0.2],
                     [0.3, 0.5, 0.4],
                     [0.95, 0.6, 0.6],
                     [0.7, 0.1, 0.0],
                     [0.1, 0.6, 0.8]])
GT = torch.tensor([0, 0, 1, 2, 2])


def test_text_to_video_metrics_by_hand():
    got = text_to_video_metrics(SIMS, GT)
    assert got == pytest.approx({"R@1": 2 / 5, "R@5": 1.0, "R@10": 1.0, "MedR": 3.0, "MeanR": 11 / 5})


def test_video_to_text_takes_the_best_caption_and_ties_count_against():
    got = video_to_text_metrics(SIMS, GT)
    assert got == pytest.approx({"R@1": 1 / 3, "R@5": 1.0, "R@10": 1.0, "MedR": 2.0, "MeanR": 5 / 3})


def test_median_of_an_even_count_and_degenerate_similarities():
    # One caption per video, right video at ranks 1, 2, 3, 4: MedR is the mean of the middle two.
    sims = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.9, 0.5, 0.0, 0.0], [0.9, 0.8, 0.5, 0.0], [0.9, 0.8, 0.7, 0.5]])
    got = text_to_video_metrics(sims, torch.arange(4))
    assert got["MedR"] == 2.5 and got["MeanR"] == 2.5 and got["R@1"] == 0.25
    # A collapsed model (all similarities equal) ranks every right answer last, never first.
    flat = text_to_video_metrics(torch.zeros(4, 4), torch.arange(4))
    assert flat["R@1"] == 0.0 and flat["MedR"] == 4.0
    with pytest.raises(ValueError, match="NaN"):
        text_to_video_metrics(torch.full((2, 2), float("nan")), torch.arange(2))
    with pytest.raises(ValueError, match="one video index"):
        text_to_video_metrics(SIMS, torch.tensor([0, 3, 1, 2, 2]))  # video 3 does not exist


# ----------------------------------------------------------------------------- frame resampling


def tiny_cfg(frames: int) -> VideoConfig:
    return VideoConfig(img_size=64, num_frames=frames, patch_size=16, tubelet_size=2, width=32, depth=1, heads=2)


def test_temporal_table_resampling_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VideoViT(tiny_cfg(4))  # 2 temporal slots
    with torch.no_grad():
        model.pos_embed_temporal.normal_()  # zero-initialised otherwise: resampling would be invisible
    a, b = model.pos_embed_temporal[0, 0].detach(), model.pos_embed_temporal[0, 1].detach()
    path = save_video_encoder(model.state_dict(), tmp_path / "four.safetensors", model.cfg)

    same = load_video_encoder(path, num_frames=4)  # equal count: identity
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), same.state_dict().values()))

    # 4 new slots centred at 1/8, 3/8, 5/8, 7/8 of the clip read the old slots (centres 1/4, 3/4) at
    # -0.25, 0.25, 0.75, 1.25: the outer two clamp to the end slots.
    eight = load_video_encoder(path, num_frames=8)
    table = eight.pos_embed_temporal.detach()[0]
    assert eight.cfg.num_frames == 8 and table.shape == (4, 32)
    want = torch.stack([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b])
    assert torch.allclose(table, want, atol=1e-6) and torch.equal(table[0], a) and torch.equal(table[-1], b)
    others = {k: v for k, v in eight.state_dict().items() if k != "pos_embed_temporal"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in others.items())
    assert eight(torch.randn(1, 3, 8, 64, 64))["cls"].shape == (1, 32)

    # Down: 2 new slots each cover two old ones and read the mean of the pair (the 16 -> 4 frame case).
    with torch.no_grad():
        eight.pos_embed_temporal.normal_()
    t = eight.pos_embed_temporal.detach()[0]
    back_path = save_video_encoder(eight.state_dict(), tmp_path / "eight.safetensors", eight.cfg)
    back = load_video_encoder(back_path, num_frames=4).pos_embed_temporal.detach()[0]
    assert torch.allclose(back, torch.stack([(t[0] + t[1]) / 2, (t[2] + t[3]) / 2]), atol=1e-6)


def test_resampling_keeps_the_strict_checks(tmp_path):
    state = VideoViT(tiny_cfg(4)).state_dict()
    save_file({k: v for k, v in state.items() if k != "norm.weight"}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointMismatch, match="missing \\['norm.weight'\\]"):
        load_video_encoder(tmp_path / "missing.safetensors", tiny_cfg(4), num_frames=8)
    save_file(state, str(tmp_path / "bare.safetensors"))
    # The file is checked against the configured frame count before any resampling.
    with pytest.raises(CheckpointMismatch, match="pos_embed_temporal: file \\(1, 2, 32\\) vs model \\(1, 4, 32\\)"):
        load_video_encoder(tmp_path / "bare.safetensors", tiny_cfg(8), num_frames=4)
    with pytest.raises(ValueError, match="do not tile"):
        load_video_encoder(tmp_path / "bare.safetensors", tiny_cfg(4), num_frames=3)


# ----------------------------------------------------------------------------- manifest


def test_caption_manifest_groups_videos_and_names_bad_rows(tmp_path):
    (tmp_path / "m.csv").write_text("video_path,caption,split\na.mp4,a dog,train\na.mp4,a puppy,train\n"
                                    "b.mp4,a cat,test\n")
    m = read_caption_manifest(tmp_path / "m.csv")
    train = m.select("train")
    assert train.videos == (tmp_path / "a.mp4",) and train.captions == ("a dog", "a puppy")
    assert train.video_of == (0, 0) and len(m.select(None).videos) == 2

    (tmp_path / "nocap.csv").write_text("video_path,label\na.mp4,dog\n")
    with pytest.raises(ManifestError, match="nocap.csv row 0: missing \\['caption'\\]"):
        read_caption_manifest(tmp_path / "nocap.csv")
    (tmp_path / "empty.jsonl").write_text('{"video_path": "a.mp4", "caption": "ok"}\n'
                                          '{"video_path": "b.mp4", "caption": "  "}\n')
    with pytest.raises(ManifestError, match="empty.jsonl row 1: empty caption"):
        read_caption_manifest(tmp_path / "empty.jsonl")
    with pytest.raises(ManifestError, match="no captions in split 'val'"):
        m.select("val")


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def captioned(tmp_path_factory) -> Path:
    """Four visually distinct 2 s clips (96x64, 10 fps), five captions, and an undecodable file."""
    d = tmp_path_factory.mktemp("captioned")
    ffmpeg(d / "testsrc.mp4", "testsrc=size=96x64:rate=10", "-t", "2")
    ffmpeg(d / "bars.mp4", "smptebars=size=96x64:rate=10", "-t", "2")
    ffmpeg(d / "red.mp4", "color=c=red:size=96x64:rate=10", "-t", "2")
    ffmpeg(d / "fractal.mp4", "mandelbrot=size=96x64:rate=10", "-t", "2")
    (d / "garbage.mp4").write_bytes(bytes(range(256)) * 20)
    captions = [("testsrc.mp4", "a test pattern with a counter"), ("bars.mp4", "colour bars"),
                ("bars.mp4", "vertical stripes of colour"), ("red.mp4", "a plain red screen"),
                ("fractal.mp4", "a fractal zoom"), ("garbage.mp4", "a broken file")]
    lines = ["video_path,caption,split"] + [f"{v},{c},{s}" for s in ("train", "test") for v, c in captions]
    (d / "captions.csv").write_text("\n".join(lines) + "\n")
    return d / "captions.csv"


CLIP = ClipConfig(frames=4, short_side=64, crop=64)


@pytest.fixture
def one_thread():
    """These ops are tiny: a second OpenMP thread gains little and, when another process holds a core,
    spins (measured: 4 s on one thread vs 14-70 s on two while a neighbouring job ran)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fine_tuning_learns_the_captions_and_skips_unreadable_videos(captioned, minilm_path, caplog, one_thread):
    text = TextConfig(name_or_path=minilm_path, max_len=12)
    cfg = TextRetrievalConfig(epochs=0, batch_size=8, lr=2e-4, embed_dim=32, seed=0)  # 1 step an epoch

    def run(cfg: TextRetrievalConfig) -> dict:
        torch.manual_seed(0)
        encoder = VideoViT(tiny_cfg(4))
        return text_to_video_retrieval(encoder, text, captioned, "train", "train", CLIP, cfg, "cpu")

    before = run(cfg)
    assert before["history"] == [] and before["videos"]["train"]["used"] == 0  # epochs=0: evaluation only
    with caplog.at_level(logging.ERROR, logger="tvts_train.eval.text_retrieval"):
        after = run(replace(cfg, epochs=25))
    t2v = after["metrics"]["t2v"]
    assert before["metrics"]["t2v"]["R@1"] <= 0.6 and before["metrics"]["t2v"]["MedR"] >= 2  # fresh projections
    assert t2v["R@1"] == 1.0 and t2v["MedR"] == 1.0 and after["metrics"]["v2t"]["R@1"] >= 0.75
    losses = [h["loss"] for h in after["history"]]  # one noisy step per epoch: compare averages
    assert len(losses) == 25 and sum(losses[-5:]) / 5 < 0.3 * sum(losses[:3]) / 3

    train = after["videos"]["train"]
    assert train["used"] == 4 and train["skipped"] == 1 and "garbage.mp4" in train["skipped_files"][0]["path"]
    assert "garbage.mp4" in caplog.text and all(h["skipped_videos"] == 1 for h in after["history"])
    assert after["videos"]["eval"]["encoded"] == 4 and after["videos"]["eval"]["skipped"] == 1
    assert after["captions"] == {"train": 6, "eval": {"queries": 5, "dropped": 1}}


def test_run_text_retrieval_through_a_saved_encoder(captioned, tmp_path, one_thread):
    video_cfg = load_config("tiny").model.video  # 8 frames; the protocol asks for 4
    save_video_encoder(VideoViT(video_cfg).state_dict(), tmp_path / "video_encoder.safetensors", video_cfg)
    request = EvalRequest(encoder=tmp_path, config=None, manifest=captioned, clip=CLIP, batch_size=2, device="cpu")
    # A preset's text tower (its name as --text-model): this one's small random BERT keeps the test fast.
    options = TextRetrievalOptions(retrieval=TextRetrievalConfig(epochs=1, batch_size=4, text_model="tiny-random-text",
                                                                 max_text_len=10, embed_dim=16))
    assert text_config(options.retrieval).tiny and text_config(options.retrieval).max_len == 10
    result = run_text_retrieval(request, options)
    assert set(result["metrics"]) == {"t2v", "v2t"}
    assert set(result["metrics"]["t2v"]) == {"R@1", "R@5", "R@10", "MedR", "MeanR"}
    assert all(0.0 <= result["metrics"]["t2v"][k] <= 1.0 for k in ("R@1", "R@5", "R@10"))
    assert 1.0 <= result["metrics"]["t2v"]["MedR"] <= 4.0  # 4 decodable test videos
    assert result["videos"]["train"]["skipped"] == 1 and result["videos"]["eval"]["skipped"] == 1
    assert result["captions"]["eval"] == {"queries": 5, "dropped": 1} and len(result["history"]) == 1


def test_cli_flags_build_the_options():
    import argparse

    parser = argparse.ArgumentParser()
    add_text_retrieval_arguments(parser)
    assert text_retrieval_options(parser.parse_args([])) == TextRetrievalOptions()  # defaults agree
    args = parser.parse_args(["--text-model", "/models/distilbert", "--epochs", "0", "--lr", "1e-4",
                              "--tr-batch-size", "16", "--temperature", "0.07", "--max-text-len", "64",
                              "--train-split", "val", "--seed", "3", "--schedule", "cosine"])
    options = text_retrieval_options(args)
    assert options.train_split == "val" and options.eval_split == "test"
    assert options.retrieval == TextRetrievalConfig(epochs=0, lr=1e-4, batch_size=16, temperature=0.07,
                                                    max_text_len=64, text_model="/models/distilbert", seed=3,
                                                    schedule="cosine")


def test_config_refuses_settings_that_cannot_train():
    with pytest.raises(ValueError, match="InfoNCE needs >= 2"):
        TextRetrievalConfig(batch_size=1)  # every batch would be skipped: a run that trains nothing
    with pytest.raises(ValueError, match="epochs -1"):
        TextRetrievalConfig(epochs=-1)
