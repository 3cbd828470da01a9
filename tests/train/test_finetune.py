"""Full fine-tuning protocol on CPU: layer-decay parameter groups, the warmup + cosine schedule, mixup
on 5-D clips, training-clip sampling, end to end on ffmpeg-rendered videos (with a corrupt file in both
splits), and ``run_finetune`` through a saved encoder with ``--save``."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tvts_train.config import VideoConfig
from tvts_train.eval import ClipConfig, LabelledVideo, read_manifest
from tvts_train.eval.finetune import (
    FinetuneConfig,
    FinetuneOptions,
    TrainClipDataset,
    VideoClassifier,
    add_finetune_arguments,
    build_classifier,
    build_mixup,
    build_optimizer,
    build_scheduler,
    finetune,
    finetune_options,
    load_classifier,
    mix_clips,
    run_finetune,
    videomae_lr,
)
from tvts_train.eval.clips import random_segment_indices
from tvts_train.eval.protocols import EvalRequest
from tvts_train.export import save_video_encoder
from synthetic import ffmpeg
from tvts_train.model import VideoViT

# ----------------------------------------------------------------------------- fixtures

CLIP = ClipConfig(frames=4, short_side=72, crop=64, temporal_views=2, spatial_crops=3)
# Three classes a tiny encoder from scratch tells apart from any crop within a few dozen updates (by
# colour: testsrc's colour bars are grey on average); each video of a class is a different variant.
SOURCES = {"testsrc": "testsrc=size=96x64:rate=10",
           "red": "color=c=0xc03030:size=96x64:rate=10,noise=alls=40:allf=t",
           "blue": "color=c=0x3040c0:size=96x64:rate=10,noise=alls=40:allf=t"}
TRAIN_VARIANTS = [("-t", "2"), ("-t", "3", "-vf", "hflip"), ("-t", "2", "-vf", "vflip")]
VAL_VARIANTS = [("-t", "2.5", "-vf", "hflip,vflip")]


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    """3 classes x (3 train + 1 val) videos, plus one file of garbage bytes in each split."""
    d = tmp_path_factory.mktemp("ft-videos")
    rows = []
    for label, source in SOURCES.items():
        for split, variants in (("train", TRAIN_VARIANTS), ("val", VAL_VARIANTS)):
            for i, extra in enumerate(variants):
                path = ffmpeg(d / f"{label}_{split}{i}.mp4", source, *extra)
                rows.append({"video_path": path.name, "label": label, "split": split})
    (d / "garbage.mp4").write_bytes(bytes(range(256)) * 20)
    rows += [{"video_path": "garbage.mp4", "label": "red", "split": s} for s in ("train", "val")]
    path = d / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is as fast, and OpenMP's spinning threads slow a busy CPU 5-10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cfg(depth: int = 2) -> VideoConfig:
    return VideoConfig(img_size=64, num_frames=4, patch_size=16, tubelet_size=2, width=32, depth=depth, heads=2)


def tiny_vit(depth: int = 2) -> VideoViT:
    torch.manual_seed(0)
    return VideoViT(tiny_cfg(depth)).eval()


# ----------------------------------------------------------------------------- optimisation


def test_layer_decay_groups_and_weight_decay():
    depth, decay = 2, 0.75
    cfg = FinetuneConfig(layer_decay=decay, weight_decay=0.05)
    model = build_classifier(tiny_vit(depth), num_classes=3, cfg=cfg)
    optimizer = build_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(n for n, p in model.named_parameters() if p.requires_grad)  # each exactly once
    assert isinstance(optimizer, torch.optim.AdamW)

    def expected_scale(name: str) -> float:
        if name.startswith(("encoder.patch_embed", "encoder.cls_token", "encoder.pos_embed")):
            return decay ** (depth + 1)
        if name.startswith("encoder.blocks."):
            return decay ** (depth - int(name.split(".")[2]))
        assert name.startswith(("encoder.norm.", "head.")), name
        return 1.0

    no_decay = {"encoder.cls_token", "encoder.pos_embed_spatial", "encoder.pos_embed_temporal"}
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            assert group["lr_scale"] == pytest.approx(expected_scale(name)), name
            wants_decay = p.ndim > 1 and name not in no_decay  # biases, norms, cls, position tables: none
            assert group["weight_decay"] == (0.05 if wants_decay else 0.0), name
    scales = {n: g["lr_scale"] for g in optimizer.param_groups for n in [names[id(p)] for p in g["params"]]}
    assert scales["head.weight"] == 1.0 and scales["encoder.blocks.1.attn.qkv.weight"] == pytest.approx(0.75)
    assert scales["encoder.blocks.0.mlp.fc1.bias"] == pytest.approx(0.75 ** 2)
    assert scales["encoder.patch_embed.proj.weight"] == pytest.approx(0.75 ** 3)


def test_drop_path_is_set_on_a_copy_and_head_starts_small():
    encoder = tiny_vit()
    model = build_classifier(encoder, 3, FinetuneConfig(drop_path=0.2, head_init_scale=0.001))
    assert model.encoder is not encoder and encoder.cfg.drop_path == 0.0  # the caller's encoder is untouched
    assert model.encoder.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)  # ramp 0 -> 0.2 over 2 blocks
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), model.encoder.state_dict().values()))
    assert 0 < model.head.weight.abs().max() < 0.001 * 0.02 * 5  # trunc-normal(std 0.02) x 0.001


def test_schedule_warms_up_linearly_then_cosine_to_min_lr():
    cfg = FinetuneConfig(epochs=6, warmup_epochs=2, lr=1e-3, min_lr=1e-5, warmup_lr=1e-6, layer_decay=0.5)
    model = build_classifier(tiny_vit(depth=1), 2, cfg)
    optimizer = build_optimizer(model, cfg)
    steps = 5  # per epoch: 10 warmup updates, 20 cosine updates
    scheduler = build_scheduler(optimizer, cfg, steps)
    head = next(g for g in optimizer.param_groups if g["lr_scale"] == 1.0)
    stem = min(optimizer.param_groups, key=lambda g: g["lr_scale"])
    assert stem["lr_scale"] == pytest.approx(0.5 ** 2)  # depth 1: stem 0.5^2, block 0.5, head 1

    def lr_at(step: int) -> tuple[float, float]:
        scheduler.step_update(step)
        return head["lr"], stem["lr"]

    assert lr_at(0) == pytest.approx((1e-6, 1e-6 * 0.25))
    assert lr_at(5)[0] == pytest.approx(1e-6 + 5 * (1e-3 - 1e-6) / 10)  # halfway through the warmup
    assert lr_at(10) == pytest.approx((1e-3, 1e-3 * 0.25))  # peak at the end of the warmup
    cosine = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 5 / 20))
    assert lr_at(15) == pytest.approx((cosine, cosine * 0.25))
    assert lr_at(20)[0] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # cosine midpoint
    assert lr_at(30) == pytest.approx((1e-5, 1e-5 * 0.25))  # min_lr (times the group's scale)
    lrs = [lr_at(s)[0] for s in range(30)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11])) and all(a > b for a, b in zip(lrs[10:29], lrs[11:30]))


def test_videomae_lr_scaling():
    assert videomae_lr(256) == 5e-4 and videomae_lr(8) == pytest.approx(1.5625e-5)
    assert FinetuneConfig().lr == videomae_lr(FinetuneConfig().batch_size)
    with pytest.raises(ValueError, match="epochs >= 1"):
        FinetuneConfig(epochs=0)
    with pytest.raises(ValueError, match="min_lr"):
        FinetuneConfig(lr=1e-8)  # below the default min_lr: the "decay" would climb


# ----------------------------------------------------------------------------- mixup


def test_mixup_and_cutmix_on_5d_clips():
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(4, 3, 4, 16, 16, generator=g)  # (B, 3, T, H, W)
    labels = torch.tensor([0, 1, 2, 1])
    for mixup_alpha, cutmix_alpha in ((0.8, 0.0), (0.0, 1.0)):
        mixup = build_mixup(FinetuneConfig(mixup=mixup_alpha, cutmix=cutmix_alpha, label_smoothing=0.1), 3)
        np.random.seed(0)  # timm's Mixup draws from numpy's global RNG
        mixed, targets = mix_clips(mixup, clips.clone(), labels)
        assert mixed.shape == clips.shape and targets.shape == (4, 3)
        assert torch.allclose(targets.sum(dim=1), torch.ones(4))
        assert (targets.max(dim=1).values < 1 - 0.1 + 0.1 / 3 - 1e-4).all()  # mixed beyond plain smoothing
        partner = clips.flip(0)
        if cutmix_alpha:
            # A cutmix box is a spatial tube: every frame of every channel has the same pixels swapped.
            swapped = (mixed == partner) & (mixed != clips)  # (B, 3, T, H, W)
            assert swapped.any()
            assert (swapped == swapped[:, :1, :1]).all()
            lam = 1 - swapped[0, 0, 0].float().mean().item()  # share of sample 0 kept
            assert targets[0, 0].item() == pytest.approx(lam * 0.9 + 0.1 / 3, abs=1e-5)  # label 0, partner label 1
        else:
            lam = (targets[0, 0] - 0.1 / 3) / 0.9  # the same weight mixes pixels and (smoothed) targets
            assert torch.allclose(mixed, lam * clips + (1 - lam) * partner, atol=1e-5)
    assert build_mixup(FinetuneConfig(mixup=0.0, cutmix=0.0), 3) is None
    odd, targets = mix_clips(build_mixup(FinetuneConfig(), 3), clips[:3].clone(), labels[:3])
    assert torch.equal(odd, clips[:3]) and targets.argmax(dim=1).tolist() == [0, 1, 2]  # odd batch: smoothed only


# ----------------------------------------------------------------------------- training clips


def test_random_segment_indices_stay_inside_their_segments():
    torch.manual_seed(0)
    draws = [random_segment_indices(20, 4) for _ in range(200)]
    for m in range(4):
        column = {d[m] for d in draws}
        assert column == set(range(5 * m, 5 * m + 5))  # every frame of segment m, and only those
    assert all(0 <= i <= 2 for i in random_segment_indices(3, 8))  # short video: repeats, in range


def test_training_clips_are_random_crops_and_failures_are_data(manifest_path):
    manifest = read_manifest(manifest_path)
    video = manifest.select("train")[0]
    dataset = TrainClipDataset([video, LabelledVideo(manifest_path.parent / "garbage.mp4", 0, "train")], CLIP,
                               FinetuneConfig())
    a, again = dataset[0], dataset[0]
    assert a.views.shape == (1, 3, 4, 64, 64) and a.error is None
    # Draws are fixed by (seed, epoch, video), not by the global RNG or the worker that decodes them...
    torch.manual_seed(123)
    assert torch.equal(a.views, again.views) and torch.equal(a.views, dataset[0].views)
    dataset.epoch = 1  # ...and change from epoch to epoch: a new crop / frames each pass
    assert not torch.equal(a.views, dataset[0].views)
    bad = dataset[1]
    assert bad.views is None and "garbage.mp4" in bad.path and bad.error


# ----------------------------------------------------------------------------- end to end


def test_finetune_learns_separable_classes_and_skips_corrupt_videos(manifest_path, tmp_path, one_thread):
    manifest = read_manifest(manifest_path)
    # The recipe (mixup + cutmix + label smoothing, layer decay, warmup + cosine), with more updates and
    # a higher lr than VideoMAE's: this encoder starts from random weights, not from pre-training.
    cfg = FinetuneConfig(epochs=30, warmup_epochs=1, batch_size=2, lr=5e-3, min_lr=1e-5, drop_path=0.0,
                         crop_scale=(0.3, 1.0), eval_every=10, seed=0)
    out = finetune(tiny_vit(), manifest, "train", "val", CLIP, cfg, torch.device("cpu"), tmp_path / "ft.safetensors",
                   eval_batch_size=6)
    assert out["metrics"]["top1"] == 1.0 and out["metrics"]["top5"] == 1.0  # 3 classes: chance is 1/3
    history = out["history"]
    assert [h["epoch"] for h in history] == list(range(1, 31))
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.2
    assert [i for i, h in enumerate(history) if "eval_top1" in h] == [9, 19, 29]  # every 10, and the final one
    assert history[-1]["eval_top1"] == 1.0
    assert history[-1]["lr"] < history[15]["lr"] < history[1]["lr"]  # cosine decay after the warmup
    videos = out["videos"]
    assert videos["classes"] == 3
    for split, total in (("train", 10), ("val", 4)):  # the garbage file is in both splits
        assert videos[split]["encoded"] == total - 1 and videos[split]["skipped"] == 1
        assert videos[split]["skipped_files"][0]["path"].endswith("garbage.mp4")
    model, classes = load_classifier(tmp_path / "ft.safetensors")
    assert classes == list(manifest.classes) and model.head.out_features == 3


def test_finetune_without_mixup_uses_label_smoothing(manifest_path, one_thread):
    manifest = read_manifest(manifest_path)
    cfg = FinetuneConfig(epochs=1, warmup_epochs=0, batch_size=5, mixup=0.0, cutmix=0.0, eval_every=0)
    out = finetune(tiny_vit(depth=1), manifest, "train", "val", replace(CLIP, temporal_views=1, spatial_crops=1),
                   cfg, torch.device("cpu"))
    assert len(out["history"]) == 1 and math.isfinite(out["history"][0]["train_loss"])
    assert 0.0 <= out["metrics"]["top1"] <= 1.0


# ----------------------------------------------------------------------------- protocol contract


def test_run_finetune_through_a_saved_encoder_and_save(manifest_path, tmp_path, one_thread):
    cfg = tiny_cfg(depth=1)
    save_video_encoder(VideoViT(cfg).state_dict(), tmp_path / "video_encoder.safetensors", cfg)
    parser = argparse.ArgumentParser()
    add_finetune_arguments(parser)
    defaults = finetune_options(parser.parse_args([]))
    assert defaults.finetune.lr == videomae_lr(8) and defaults.finetune.flip and defaults.output is None
    # VideoMAE scales min_lr and warmup_lr (1e-6 per 256 clips) with the batch as it scales lr
    assert defaults.finetune.min_lr == pytest.approx(videomae_lr(8, 1e-6)) == defaults.finetune.warmup_lr
    args = parser.parse_args(["--epochs", "2", "--warmup-epochs", "1", "--ft-batch-size", "4", "--no-flip",
                              "--mixup", "0.5", "--layer-decay", "0.65", "--save", str(tmp_path / "cls.safetensors")])
    options = finetune_options(args)
    assert isinstance(options, FinetuneOptions)
    assert options.finetune.lr == videomae_lr(4) and not options.finetune.flip
    assert options.finetune.min_lr == pytest.approx(videomae_lr(4, 1e-6))
    assert options.finetune.layer_decay == 0.65 and options.finetune.epochs == 2
    request = EvalRequest(encoder=tmp_path, config=None, manifest=manifest_path, clip=CLIP, batch_size=4,
                          num_workers=0, device="cpu")
    result = run_finetune(request, options)
    assert set(result["metrics"]) == {"top1", "top5"} and all(0 <= v <= 1 for v in result["metrics"].values())
    assert result["videos"]["train"]["skipped"] == 1 and result["videos"]["val"]["encoded"] == 3
    json.dumps(asdict(options))  # run_protocol puts the options into the CLI's JSON result
    state = load_file(str(tmp_path / "cls.safetensors"))
    assert state["head.weight"].shape == (3, 32) and "encoder.blocks.0.attn.qkv.weight" in state
    model, classes = load_classifier(tmp_path / "cls.safetensors")
    assert isinstance(model, VideoClassifier) and classes == ["blue", "red", "testsrc"]
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 4, 64, 64)).shape == (2, 3)
