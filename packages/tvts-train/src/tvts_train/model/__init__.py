"""The TVTS model library: video ViT, text encoder, sort heads, losses and the task module.

Importing this package first makes torchvision importable next to a CPU-only torch (see
:mod:`tvts_train._compat`), because timm and transformers import torchvision.
"""

from tvts_train._compat import ensure_torchvision_importable

ensure_torchvision_importable()

from tvts_train.model.heads import (  # noqa: E402
    SORT_HEADS,
    FactorialSortHead,
    PairwiseSortHead,
    SortHead,
    text_projection,
    video_projection,
)
from tvts_train.model.losses import (  # noqa: E402
    FactorialSortLoss,
    InfoNCE,
    PairwiseSortLoss,
    SortLoss,
    gather_with_grad,
    pairwise_targets,
    permutation_index,
    sort_accuracy,
)
from tvts_train.model.mae import CheckpointMismatch, LoadReport, load_imagemae_into  # noqa: E402
from tvts_train.model.text import TextEncoder, build_tokenizer, tokenize  # noqa: E402
from tvts_train.model.tvts import TVTS  # noqa: E402
from tvts_train.model.video import VideoViT, random_keep_per_slot  # noqa: E402

__all__ = [
    "SORT_HEADS",
    "TVTS",
    "CheckpointMismatch",
    "FactorialSortHead",
    "FactorialSortLoss",
    "InfoNCE",
    "LoadReport",
    "PairwiseSortHead",
    "PairwiseSortLoss",
    "SortHead",
    "SortLoss",
    "TextEncoder",
    "VideoViT",
    "build_tokenizer",
    "ensure_torchvision_importable",
    "gather_with_grad",
    "load_imagemae_into",
    "pairwise_targets",
    "permutation_index",
    "random_keep_per_slot",
    "sort_accuracy",
    "text_projection",
    "tokenize",
    "video_projection",
]
