"""The TVTS model library on CPU at toy sizes: compat, video ViT, MAE init, text encoder, sort heads,
the task module and the presets."""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import tvts_train._compat as compat
from tvts_train.config import (
    ConfigError,
    ExperimentConfig,
    VideoConfig,
    list_presets,
    load_config,
)
from tvts_train.model import (
    SORT_HEADS,
    TVTS,
    CheckpointMismatch,
    TextEncoder,
    VideoViT,
    load_imagemae_into,
    pairwise_targets,
    permutation_index,
    random_keep_per_slot,
)
from tvts_train.model import layers as layers_mod

# ----------------------------------------------------------------------------- compat


def test_compat_makes_timm_and_transformers_importable_in_a_fresh_interpreter():
    code = (
        "import tvts_train.model, timm, transformers, torch\n"
        "from transformers import BertModel\n"
        "import tvts_train._compat as c\n"
        "assert hasattr(torch.ops.torchvision, 'nms')\n"
        "print(c.ensure_torchvision_importable())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] in {"ok", "patched"}


def test_a_plain_interpreter_of_the_venv_imports_timm_and_transformers():
    """No tvts_train import first: the venv's start-up hook (infra/install.sh) does the step."""
    code = "import timm, transformers\nfrom transformers import BertModel\nimport torchvision\nprint('ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_the_import_hook_is_idempotent_and_inert_once_torchvision_is_loaded():
    import torchvision  # noqa: F401  (loaded already by the model imports of this module)

    before = list(sys.meta_path)
    compat.install_import_hook()
    assert sys.meta_path == before


def test_compat_is_a_no_op_without_torchvision(monkeypatch):
    monkeypatch.setattr(compat, "_status", None)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise ModuleNotFoundError
    assert compat.ensure_torchvision_importable() == "absent"


# ----------------------------------------------------------------------------- video ViT


@pytest.mark.parametrize("mask_ratio, tokens", [(None, 1 + 2 * 16), (0.0, 1 + 2 * 16), (0.75, 1 + 2 * 4)])
def test_video_vit_shapes(tiny_video_cfg, mask_ratio, tokens):
    vit = VideoViT(tiny_video_cfg)
    out = vit(torch.randn(2, 3, 4, 64, 64), mask_ratio=mask_ratio)
    assert out["tokens"].shape == (2, tokens, 64)
    assert torch.equal(out["cls"], out["tokens"][:, 0])
    assert vit.forward_features(torch.randn(1, 3, 4, 64, 64)).shape == (1, 1 + 2 * 16, 64)


def test_video_vit_rejects_wrong_clip_size(tiny_video_cfg):
    with pytest.raises(ValueError, match="does not match"):
        VideoViT(tiny_video_cfg)(torch.randn(1, 3, 8, 64, 64))


def test_random_keep_per_slot_keeps_round_n_keep_per_slot_and_slots_differ():
    B, T, N = 3, 4, 16
    idx = random_keep_per_slot(B, T, N, 0.25, torch.Generator().manual_seed(0))
    assert idx.shape == (B, T * 4) and idx.dtype == torch.long
    per_slot = idx.view(B, T, 4)
    for b, t in itertools.product(range(B), range(T)):
        slot = per_slot[b, t]
        assert ((slot >= t * N) & (slot < (t + 1) * N)).all()  # indices stay inside their slot
        assert slot.unique().numel() == 4  # exactly round(16 * 0.25), no repeats
    spatial = per_slot - torch.arange(T).view(1, T, 1) * N
    assert any(not torch.equal(spatial[0, 0], spatial[0, t]) for t in range(1, T))  # independent per slot
    assert not torch.equal(spatial[0], spatial[1])  # and per sample
    assert random_keep_per_slot(1, 2, 196, 0.25).shape == (1, 2 * 49)  # the paper's 49 of 196


def test_pos_embed_is_divided(tiny_video_cfg):
    vit = VideoViT(tiny_video_cfg)
    assert vit.pos_embed_spatial.shape == (1, 1 + 16, 64) and vit.pos_embed_temporal.shape == (1, 2, 64)
    pos, sp, tp = vit.pos_embed()[0], vit.pos_embed_spatial[0], vit.pos_embed_temporal[0]
    for t, s in [(0, 0), (0, 15), (1, 3), (1, 15)]:
        torch.testing.assert_close(pos[t * 16 + s], sp[1 + s] + tp[t])  # time-major, CLS row skipped


def _permute_slots(video: torch.Tensor, perm: torch.Tensor, tubelet: int) -> torch.Tensor:
    B, C, T, H, W = video.shape
    return video.view(B, C, T // tubelet, tubelet, H, W)[:, :, perm].reshape(B, C, T, H, W)


@pytest.mark.parametrize("init", ["zero", "normal", "sincos"])
def test_only_the_zero_temporal_table_is_blind_to_slot_order(tiny_video_cfg, init):
    """The defect of issue 18 at its root: with a zero table, permuting the temporal slots of a clip just
    permutes the output tokens (attention is permutation-equivariant), so nothing downstream can tell
    which slot came first. A non-zero table makes the tokens of a slot depend on where it stands."""
    cfg = replace(tiny_video_cfg, num_frames=8, temporal_init=init)  # 4 slots of 16 patches
    vit = VideoViT(cfg).eval()
    video = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a = vit.forward_features(video)[:, 1:].unflatten(1, (4, 16))  # (B, T', N, D)
        b = vit.forward_features(_permute_slots(video, perm, 2))[:, 1:].unflatten(1, (4, 16))
    change = (b - a[:, perm]).abs().max().item()  # b's slot i holds a's slot perm[i]
    if init == "zero":
        assert change < 1e-5
        assert torch.count_nonzero(vit.pos_embed_temporal) == 0
    else:
        assert change > 0.1  # (LayerNorm'd tokens of unit scale)


def test_temporal_table_inits():
    from tvts_train.model.video import sincos_table, temporal_table

    table = sincos_table(4, 8)
    torch.testing.assert_close(table[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin 0, cos 0
    torch.testing.assert_close(table[:, 0], torch.arange(4.0).sin())  # the fastest channel: w = 1
    normal = temporal_table(VideoConfig(width=768, temporal_init="normal", temporal_init_std=1.0), 8)
    assert normal.shape == (1, 8, 768) and 0.8 < normal.std().item() < 1.0  # truncated at 2 std
    assert normal.abs().max().item() <= 2.0
    with pytest.raises(ValueError, match="even width"):
        sincos_table(4, 7)


def test_a_fixed_temporal_table_is_not_trained(tiny_model_cfg, batch_factory):
    """model.video.temporal_learnable=false: no gradient, no optimizer state, the same values after a step."""
    from tvts_train.train import make_optimizer

    cfg = replace(tiny_model_cfg, video=replace(tiny_model_cfg.video, temporal_learnable=False))
    model = TVTS(cfg)
    table = model.video.pos_embed_temporal.detach().clone()
    optimizer = make_optimizer(model.parameters(), load_config("tiny").optim, {})
    assert all(p is not model.video.pos_embed_temporal for g in optimizer.param_groups for p in g["params"])
    model(batch_factory(cfg))["loss"].backward()
    optimizer.step()
    assert model.video.pos_embed_temporal.grad is None
    torch.testing.assert_close(model.video.pos_embed_temporal.detach(), table, rtol=0, atol=0)


def test_masking_gathers_after_position_embedding(tiny_video_cfg):
    """With no blocks each output token is LN(patch + pos): the masked output must be exactly the
    unmasked output at the kept positions, and the [CLS] is LN(cls + spatial[0])."""
    vit = VideoViT(replace(tiny_video_cfg, depth=0)).eval()
    with torch.no_grad():
        vit.pos_embed_temporal.normal_()
    video = torch.randn(2, 3, 4, 64, 64)
    full = vit.forward_features(video)
    masked = vit.forward_features(video, 0.75, generator=torch.Generator().manual_seed(3))
    keep = random_keep_per_slot(2, 2, 16, 0.25, torch.Generator().manual_seed(3))
    torch.testing.assert_close(masked[:, 1:], torch.gather(full[:, 1:], 1, keep.unsqueeze(-1).expand(-1, -1, 64)))
    cls = vit.norm(vit.cls_token + vit.pos_embed_spatial[:, :1])[0, 0]
    torch.testing.assert_close(full[:, 0], cls.expand(2, -1))


def test_projecting_only_the_kept_cubes_is_the_same_function(tiny_video_cfg):
    """model.video.embed_kept_only: the kept cubes gathered and projected by the Conv3d's weights as a
    matmul give the tokens (and gradients) of projecting every cube and dropping the masked ones."""
    torch.manual_seed(0)
    full = VideoViT(tiny_video_cfg)
    kept = VideoViT(replace(tiny_video_cfg, embed_kept_only=True))
    kept.load_state_dict(full.state_dict())
    with torch.no_grad():
        full.pos_embed_temporal.normal_()
        kept.pos_embed_temporal.copy_(full.pos_embed_temporal)
    video = torch.randn(2, 3, 4, 64, 64)
    a = full.forward_features(video, 0.75, generator=torch.Generator().manual_seed(5))
    b = kept.forward_features(video, 0.75, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    torch.testing.assert_close(full.patch_embed.proj.weight.grad, kept.patch_embed.proj.weight.grad,
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(kept.forward_features(video), full.forward_features(video))  # eval: no masking


def test_attention_goes_through_sdpa(tiny_video_cfg, monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(layers_mod.F, "scaled_dot_product_attention", spy)
    VideoViT(tiny_video_cfg)(torch.randn(1, 3, 4, 64, 64), mask_ratio=0.75)
    assert calls == [(1, 2, 1 + 8, 32)] * 2  # (B, heads, 1+L, head_dim), once per block


# ----------------------------------------------------------------------------- ImageMAE init


@pytest.fixture
def mae_vit():
    """A tiny timm ViT standing in for ImageMAE (same key layout: patch_embed.proj, pos_embed, blocks...)."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=64, depth=2, num_heads=2, num_classes=5)
    with torch.no_grad():
        for p in vit.parameters():  # non-trivial LayerNorms and biases, so a wrong mapping shows
            p.add_(torch.randn_like(p) * 0.05)
    return vit.eval()


def _mae_file(tmp_path, vit, fmt="pth"):
    sd = {k: v.clone() for k, v in vit.state_dict().items()}
    sd["decoder_embed.weight"] = torch.randn(32, 64)  # MAE decoder keys must be ignored
    sd["mask_token"] = torch.zeros(1, 1, 32)
    if fmt == "pth":
        path = tmp_path / "mae.pth"
        torch.save({"model": sd, "epoch": 799, "args": argparse.Namespace(lr=1.5e-4)}, path)  # as MAE saves
    else:
        from safetensors.torch import save_file

        path = tmp_path / "mae.safetensors"
        save_file(sd, str(path))
    return path


def _video_cfg_for_mae(**kw) -> VideoConfig:
    base = dict(img_size=32, num_frames=2, patch_size=16, tubelet_size=2, width=64, depth=2, heads=2)
    return VideoConfig(**{**base, **kw})


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_mae_inflation_repeats_the_kernel_and_maps_every_key(tmp_path, mae_vit, fmt):
    vid = VideoViT(_video_cfg_for_mae())
    report = load_imagemae_into(vid, _mae_file(tmp_path, mae_vit, fmt))
    w2d = mae_vit.patch_embed.proj.weight
    assert vid.patch_embed.proj.weight.shape == (64, 3, 2, 16, 16)
    for t in range(2):
        torch.testing.assert_close(vid.patch_embed.proj.weight[:, :, t], w2d, rtol=0, atol=0)  # not halved
    torch.testing.assert_close(vid.pos_embed_spatial, mae_vit.pos_embed, rtol=0, atol=0)
    torch.testing.assert_close(vid.cls_token, mae_vit.cls_token, rtol=0, atol=0)
    torch.testing.assert_close(vid.blocks[1].mlp.fc2.weight, mae_vit.blocks[1].mlp.fc2.weight, rtol=0, atol=0)
    torch.testing.assert_close(vid.norm.bias, mae_vit.norm.bias, rtol=0, atol=0)
    assert report.missing == ["pos_embed_temporal"]  # kept at its own initialisation
    assert {"decoder_embed.weight", "mask_token", "head.weight", "head.bias"} <= set(report.ignored)
    assert not report.unexpected and not report.mismatched


def test_mae_average_inflation_makes_a_static_clip_equal_the_image_model(tmp_path, mae_vit):
    """Averaged kernel + zero temporal table: a clip of two identical frames is the image, token for token."""
    vid = VideoViT(_video_cfg_for_mae(inflate="average", temporal_init="zero")).eval()
    load_imagemae_into(vid, _mae_file(tmp_path, mae_vit), inflate="average")
    torch.testing.assert_close(vid.patch_embed.proj.weight[:, :, 0], mae_vit.patch_embed.proj.weight / 2)
    image = torch.randn(2, 3, 32, 32)
    clip = image.unsqueeze(2).expand(-1, -1, 2, -1, -1)  # (B, 3, 2, H, W): the same frame twice
    with torch.no_grad():
        torch.testing.assert_close(vid.forward_features(clip), mae_vit.forward_features(image), atol=1e-5, rtol=1e-4)


def test_mae_pos_embed_is_resized_for_another_grid(tmp_path, mae_vit):
    vid = VideoViT(_video_cfg_for_mae(img_size=64))  # 4x4 grid from the checkpoint's 2x2
    report = load_imagemae_into(vid, _mae_file(tmp_path, mae_vit))
    assert vid.pos_embed_spatial.shape == (1, 17, 64)
    torch.testing.assert_close(vid.pos_embed_spatial[:, 0], mae_vit.pos_embed[:, 0], rtol=0, atol=0)  # CLS row kept
    assert any("resized" in n for n in report.notes)


def test_mae_refuses_silent_mismatches(tmp_path, mae_vit):
    path = _mae_file(tmp_path, mae_vit)
    with pytest.raises(CheckpointMismatch, match="blocks.2"):  # deeper model: blocks.2.* have no source
        load_imagemae_into(VideoViT(_video_cfg_for_mae(depth=3)), path)
    with pytest.raises(CheckpointMismatch, match="mismatched"):  # other width: every shape differs
        load_imagemae_into(VideoViT(_video_cfg_for_mae(width=32)), path)
    shallow = VideoViT(_video_cfg_for_mae(depth=1))
    with pytest.raises(CheckpointMismatch, match="unexpected"):
        load_imagemae_into(shallow, path)
    report = load_imagemae_into(shallow, path, strict=False)  # opt-in: load what fits, report the rest
    assert any(k.startswith("blocks.1.") for k in report.unexpected)
    torch.testing.assert_close(shallow.blocks[0].attn.qkv.weight, mae_vit.blocks[0].attn.qkv.weight)


# ----------------------------------------------------------------------------- text encoder


def test_tiny_text_encoder_tokenizes_each_transcript_and_returns_cls(tiny_text_cfg):
    enc = TextEncoder(tiny_text_cfg).eval()
    texts = [["we cut the onions", "then fry them", "", "serve"], ["a", "b", "c", "d"]]
    tok = enc.tokenize(texts)
    assert tok["input_ids"].shape == tok["attention_mask"].shape == (2, 4, 12)
    assert (tok["input_ids"][..., 0] == 101).all()  # [CLS] of bert-base-uncased
    assert tok["attention_mask"][0, 2].sum() == 2  # empty transcript: [CLS] [SEP]
    feats = enc(**tok)
    assert feats.shape == (2, 4, 48)
    single = enc(tok["input_ids"][:1, 1:2], tok["attention_mask"][:1, 1:2])  # encoded on its own
    torch.testing.assert_close(feats[0, 1], single[0, 0], atol=1e-5, rtol=1e-5)
    hidden = enc.backbone(input_ids=tok["input_ids"][1], attention_mask=tok["attention_mask"][1]).last_hidden_state
    torch.testing.assert_close(feats[1], hidden[:, 0])  # the [CLS] position of the last hidden state


def test_pretrained_minilm_text_encoder_loads_offline(minilm_path):
    cfg = load_config("tiny").model.text
    enc = TextEncoder(cfg).eval()
    assert enc.width == 384 and getattr(enc.backbone, "pooler", None) is None
    tok = enc.tokenize([["the cat sat", "on the mat", "then it left", "the end"]])
    with torch.no_grad():
        feats = enc(**tok)
    assert feats.shape == (1, 4, 384) and feats.std() > 0.05  # real weights, not an empty shell


# ----------------------------------------------------------------------------- sort heads


def _head(name: str, text_width: int = 48, text_centre: bool = False):
    torch.manual_seed(0)
    return SORT_HEADS[name](width=64, text_width=text_width, num_transcripts=4, depth=2, heads=2,
                            text_centre=text_centre).eval()


@pytest.mark.parametrize("name, shape", [("listwise", (2, 4, 4)), ("pairwise", (2, 6)), ("factorial", (2, 24))])
def test_sort_head_shapes(name, shape):
    head = _head(name)
    logits = head(torch.randn(2, 9, 64), torch.randn(2, 4, 48))
    assert logits.shape == shape
    assert head.decode(logits).shape == (2, 4)
    assert torch.count_nonzero(head.type_embed) == 0  # type embedding starts at zero


@pytest.mark.parametrize("text_centre", [False, True])
@pytest.mark.parametrize("text_width", [64, 48])  # same width: identity; other width: Linear to 64
def test_listwise_sort_head_is_permutation_equivariant(text_width, text_centre):
    head = _head("listwise", text_width, text_centre)
    with torch.no_grad():
        head.type_embed.normal_()  # make sure the equivariance does not rely on zero embeddings
    video, text = torch.randn(2, 9, 64), torch.randn(2, 4, text_width)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(head(video, text[:, perm]), head(video, text)[:, perm], atol=1e-5, rtol=1e-5)


def test_centred_sort_head_ignores_what_the_transcripts_share():
    head = _head("listwise", text_centre=True)
    video, text = torch.randn(2, 9, 64), torch.randn(2, 4, 48)
    shared = 10 * torch.randn(2, 1, 48)  # the same vector added to every transcript of a window
    with torch.no_grad():
        torch.testing.assert_close(head(video, text + shared), head(video, text), atol=1e-5, rtol=1e-5)


def test_pairwise_labels_and_decoding():
    order = torch.tensor([[2, 0, 1, 3]])  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert pairwise_targets(order).tolist() == [[0, 0, 1, 1, 1, 1]]
    head = _head("pairwise")
    for perm in itertools.permutations(range(4)):
        o = torch.tensor([perm])
        assert torch.equal(head.decode(pairwise_targets(o) * 2 - 1), o)  # consistent logits -> the order


def test_factorial_labels_follow_itertools_permutations():
    perms = list(itertools.permutations(range(4)))
    order = torch.tensor(perms)
    assert permutation_index(order).tolist() == list(range(24))
    assert permutation_index(torch.tensor([[3, 1, 0, 2]])).item() == perms.index((3, 1, 0, 2))
    head = _head("factorial")
    assert torch.equal(head.decode(F.one_hot(torch.tensor([17]), 24).float()), torch.tensor([perms[17]]))


# ----------------------------------------------------------------------------- task module


def test_tvts_forward_combines_losses(tiny_model_cfg, batch_factory):
    model = TVTS(tiny_model_cfg)
    out = model(batch_factory(tiny_model_cfg))
    assert set(out) == {"loss", "loss_base", "loss_sort", "sort_acc", "sort_acc_all"}
    torch.testing.assert_close(out["loss"], out["loss_base"] + 2.0 * out["loss_sort"])
    assert 0 <= out["sort_acc_all"] <= out["sort_acc"] <= 1
    out["loss"].backward()
    assert model.video.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.text.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # via L_base


def _text_grads(model: TVTS) -> list[torch.Tensor]:
    return [p.grad for p in model.text.parameters() if p.grad is not None and p.grad.abs().sum() > 0]


@pytest.mark.parametrize("stop_grad", [True, False])
def test_sort_loss_stop_gradient_towards_text(tiny_model_cfg, batch_factory, stop_grad):
    model = TVTS(replace(tiny_model_cfg, sort_stop_grad=stop_grad))
    model(batch_factory(tiny_model_cfg))["loss_sort"].backward()
    assert bool(_text_grads(model)) is not stop_grad
    assert model.video.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # the video is what L_sort trains


def test_tvts_is_invariant_to_how_the_loader_shuffles(tiny_model_cfg, batch_factory):
    """Shuffling the slots (and their labels) changes neither loss: the text mean is order-invariant
    and the listwise sort module is permutation-equivariant."""
    model = TVTS(tiny_model_cfg).eval()
    batch = batch_factory(tiny_model_cfg)
    perm = torch.tensor([3, 1, 0, 2])
    shuffled = {**batch, **{k: batch[k][:, perm] for k in ("input_ids", "attention_mask", "order")}}
    with torch.no_grad():
        a, b = model(batch, mask_ratio=0.0), model(shuffled, mask_ratio=0.0)
    torch.testing.assert_close(a["loss_base"], b["loss_base"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["loss_sort"], b["loss_sort"], atol=1e-5, rtol=1e-5)


def test_objective_ablations(tiny_model_cfg, batch_factory):
    batch = batch_factory(tiny_model_cfg)
    base = TVTS(replace(tiny_model_cfg, objective="base"))
    out = base(batch)
    assert base.sort_head is None and torch.equal(out["loss"], out["loss_base"]) and out["loss_sort"].isnan()
    sort = TVTS(replace(tiny_model_cfg, objective="sort"))
    out = sort(batch)
    torch.testing.assert_close(out["loss"], 2.0 * out["loss_sort"])
    assert not out["loss_base"].requires_grad  # reported only
    out["loss"].backward()
    assert not _text_grads(sort) and sort.video_proj.weight.grad is None


@pytest.mark.parametrize("head", sorted(SORT_HEADS))
def test_every_sort_head_trains_through_tvts(tiny_model_cfg, batch_factory, head):
    model = TVTS(replace(tiny_model_cfg, sort_head=head))
    out = model(batch_factory(tiny_model_cfg))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and 0 <= out["sort_acc"] <= 1
    assert model.sort_head.head.weight.grad.abs().sum() > 0
    assert model.video.patch_embed.proj.weight.grad.abs().sum() > 0


def test_encode_video_is_unmasked_normed_cls(tiny_model_cfg):
    model = TVTS(tiny_model_cfg).eval()
    video = torch.randn(2, 3, 4, 64, 64)
    feats = model.encode_video(video)
    assert feats.shape == (2, 64) and not feats.requires_grad
    torch.testing.assert_close(feats, model.video.forward_features(video)[:, 0])


# ----------------------------------------------------------------------------- presets and config


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_builds(name):
    cfg = load_config(name)
    assert isinstance(cfg, ExperimentConfig)
    if name.startswith("tiny") or name == "mini":  # CPU-sized: build them whole
        model = TVTS(cfg.model)
        assert model.sort_head.num_transcripts == cfg.data.K
    else:  # full size: build the video encoder and sort module without allocating memory
        with torch.device("meta"):
            vit = VideoViT(cfg.model.video)
            head = SORT_HEADS[cfg.model.sort_head](768, 768, cfg.model.num_transcripts, cfg.model.sort_depth, 12)
        assert all(p.is_meta for p in [*vit.parameters(), *head.parameters()])
        n = sum(p.numel() for p in vit.parameters())
        assert 85e6 < n < 88e6, n  # ViT-B/16 with a 2x16x16 cube kernel: 86.4M
        assert isinstance(head.text_in, torch.nn.Identity)  # 768 DistilBERT -> 768 ViT: no projection


def test_paper_preset_is_the_paper_recipe():
    cfg = load_config("vit-b16-paper")
    m, v = cfg.model, cfg.model.video
    assert (v.depth, v.width, v.heads, v.num_frames, v.img_size, v.tubelet_size) == (12, 768, 12, 16, 224, 2)
    assert (m.num_transcripts, m.mask_ratio, m.embed_dim, m.temperature, m.sort_weight) == (4, 0.75, 256, 0.05, 2.0)
    assert m.text.name_or_path == "distilbert-base-uncased" and m.text.max_len == 50 and m.sort_stop_grad
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.optim.step_milestones) == (1e-4, "step", (0.6, 0.8))
    assert cfg.optim.eps == 1e-6  # the reference: transformers.AdamW(eps=1e-6)


def test_config_loading_is_strict(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  video:\n    widht: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*model\.video\.widht"):
        load_config(bad)
    with pytest.raises(ConfigError, match="sort_head"):
        load_config("tiny", {"model.sort_head": "bubble"})
    with pytest.raises(ConfigError, match="data.K"):  # model and loader must agree on K
        load_config("tiny", {"data": {"K": 3}})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("no-such-preset")


def test_config_overrides_dotted_nested_and_from_strings():
    cfg = load_config("tiny", {"model.mask_ratio": "0.5", "optim": {"betas": "[0.9, 0.98]"},
                               "model.text.tokenizer": "null", "data.K": 3, "model.num_transcripts": 3})
    assert cfg.model.mask_ratio == 0.5 and cfg.optim.betas == (0.9, 0.98)
    assert cfg.model.text.tokenizer is None and cfg.data.K == 3
    assert load_config("tiny").model.mask_ratio == 0.75  # presets are not mutated


def test_float_fields_accept_exponent_notation():
    # YAML 1.1 reads "1e-3" (no dot) as a string; a float field must still take it, and refuse words.
    from tvts_train.config import ConfigError, load_config

    assert load_config("tiny", {"optim.lr": "1e-3"}).optim.lr == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config("tiny", {"optim.lr": "fast"})
