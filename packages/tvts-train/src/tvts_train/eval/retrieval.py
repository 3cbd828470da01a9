"""Zero-shot video-to-video retrieval (the paper's SSV2 protocol).

Every video is a query against all the others: cosine similarity of the frozen [CLS] features, the
query itself excluded. R@K is the share of queries with at least one video of the same class among
their K most similar videos. Queries whose class has no other video count as misses (they stay in the
denominator, as in an all-vs-all evaluation of the whole val set).

The similarity matrix is built ``chunk_size`` queries at a time: at SSV2 scale (24,777 videos) the
full matrix would be 2.5 GB in fp32, a chunk of 1,024 rows is 100 MB.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _hits_in_top(sims: torch.Tensor, query_labels: torch.Tensor, labels: torch.Tensor, k_max: int) -> torch.Tensor:
    """``(q, N)`` similarities -> ``(q, k_max)`` bool: is the j-th nearest video of the query's class."""
    top = sims.topk(k_max, dim=1).indices  # (q, k_max)
    return labels[top] == query_labels[:, None]  # (q, k_max)


def video_to_video_recall(
    features: torch.Tensor,
    labels: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """R@K for each K in ``ks`` as fractions in [0, 1]: ``{"R@1": ..., "R@5": ..., "R@10": ...}``.

    ``features`` ``(N, D)`` need not be normalised (cosine similarity normalises them); ``labels``
    ``(N,)`` are class ids. K larger than N - 1 is clipped to N - 1 (every other video).
    """
    N = features.shape[0]
    if N < 2 or labels.shape != (N,):
        raise ValueError(f"need >= 2 videos with one label each, got features {tuple(features.shape)} "
                         f"and labels {tuple(labels.shape)}")
    x = F.normalize(features.float(), dim=1)  # (N, D) unit rows: dot product = cosine
    labels = labels.to(x.device)
    k_max = min(max(ks), N - 1)
    found = torch.zeros(len(ks), device=x.device)
    for start in range(0, N, chunk_size):
        q = x[start:start + chunk_size]  # (q, D)
        sims = q @ x.T  # (q, N)
        rows = torch.arange(q.shape[0], device=x.device)
        sims[rows, start + rows] = float("-inf")  # a video never retrieves itself
        hits = _hits_in_top(sims, labels[start:start + chunk_size], labels, k_max)  # (q, k_max)
        for i, k in enumerate(ks):
            found[i] += hits[:, :min(k, k_max)].any(dim=1).sum()
    return {f"R@{k}": (found[i] / N).item() for i, k in enumerate(ks)}


def nearest_examples(
    features: torch.Tensor,
    labels: torch.Tensor,
    names: Sequence[str],
    paths: Sequence[str],
    queries: int = 6,
    k: int = 5,
) -> list[dict]:
    """``queries`` queries spread over the set, each with its ``k`` most similar other videos (for the
    retrieval picture): ``{"query", "label", "neighbours": [{"path", "label", "similarity", "right"}]}``."""
    N = features.shape[0]
    x = F.normalize(features.float(), dim=1)
    picks = sorted({round(i * (N - 1) / max(queries - 1, 1)) for i in range(min(queries, N))})
    out = []
    for q in picks:
        sims = x @ x[q]  # (N,)
        sims[q] = float("-inf")
        top = sims.topk(min(k, N - 1))
        out.append({"query": paths[q], "label": names[int(labels[q])],
                    "neighbours": [{"path": paths[j], "label": names[int(labels[j])], "similarity": float(s),
                                    "right": bool(labels[j] == labels[q])}
                                   for s, j in zip(top.values.tolist(), top.indices.tolist())]})
    return out
