"""Sort-eval's controls and the text-only sorter (the floor the video has to beat)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tvts_train.eval.sorting import CONTROLS, control_video
from tvts_train.model import TVTS


def test_controls_change_only_what_they_say():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, 3, 8, 4, 4, generator=g)  # (B, 3, T, H, W)
    assert control_video(video, "real", g) is video and control_video(video, "text_only", g) is video
    assert torch.count_nonzero(control_video(video, "constant", g)) == 0
    shuffled = control_video(video, "shuffled", torch.Generator().manual_seed(1))
    for b in range(3):  # the same frames, in another order, per clip
        frames = [video[b, :, t] for t in range(8)]
        order = [next(i for i, f in enumerate(frames) if torch.equal(f, shuffled[b, :, t])) for t in range(8)]
        assert sorted(order) == list(range(8))
    assert not torch.equal(shuffled, video)
    with pytest.raises(ValueError, match="unknown control"):
        control_video(video, "upside_down", g)
    assert CONTROLS == ("real", "shuffled", "constant", "text_only")


def test_text_only_sorter_never_encodes_the_video(tiny_model_cfg, batch_factory):
    cfg = replace(tiny_model_cfg, objective="sort", sort_video=False)
    model = TVTS(cfg)
    batch = batch_factory(cfg)
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss_sort"]) and torch.isnan(out["loss_base"])
    assert all(p.grad is None for p in model.video.parameters())  # not even run
    assert any(p.grad is not None for p in model.sort_head.parameters())
    # the same transcripts sort the same whatever the clip: the video plays no part
    other = dict(batch, video=torch.randn_like(batch["video"]))
    model.eval()  # no dropout: the same transcripts give the same features
    with torch.no_grad():
        text = model.text(batch["input_ids"], batch["attention_mask"])
        a = model.sort_head(model.sort_tokens(None, text), text)
        assert model.sort_tokens(model.video(other["video"]), text).shape[1] == 0
        torch.testing.assert_close(model(batch)["loss_sort"], model(other)["loss_sort"])
    assert a.shape == (batch["order"].shape[0], cfg.num_transcripts, cfg.num_transcripts)


def test_a_text_only_sorter_needs_a_sort_module(tiny_model_cfg):
    with pytest.raises(ValueError, match="sort_video=false"):
        replace(tiny_model_cfg, objective="base", sort_video=False)
