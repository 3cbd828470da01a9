"""The two pre-training objectives of TVTS (paper Sec. 3.2) and the sort-head variants of Table 3.

- ``InfoNCE``: L_base = NCE(t, v) + NCE(v, t) on cosine similarity at a fixed temperature, with the
  negatives of every data-parallel rank (Eq. 3).
- ``SortLoss``: L_sort = K-way cross-entropy of each transcript's position (Eq. 2).
- ``PairwiseSortLoss`` / ``FactorialSortLoss``: the ablations (relative order of each pair;
  one class per permutation).
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- distributed gather


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns, to each rank, the gradient of its own slice.

    Each rank's loss uses every rank's features, so the gradient for the features of rank r is the
    sum over ranks of d(loss_rank)/d(features_r): backward all-reduces (sums) the incoming gradient
    and keeps the local slice. With the data-parallel engine averaging gradients over ranks, this is
    exactly the gradient of the single-process loss on the concatenated batch. Requires the same
    local batch size on every rank (the loader drops the last incomplete batch).

    ``exact=False`` is the reference code's gather: backward keeps the local slice of this rank's own
    gradient only, dropping what the other ranks' losses contribute; after the engine's average the
    features get d(loss_r)/d(features_r) / W, about 1/W of the exact gradient (docs/differences.md).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, exact: bool = True) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.local, ctx.exact = dist.get_rank(), x.shape[0], exact
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # (W*B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        if ctx.exact:
            grad = grad.contiguous().clone()  # all_reduce works in place
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.local : (ctx.rank + 1) * ctx.local], None  # (B, ...)


def gather_with_grad(x: torch.Tensor, exact: bool = True) -> tuple[torch.Tensor, int]:
    """Features of every rank concatenated ``(W*B, ...)`` and the offset of the local slice."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    return _GatherWithGrad.apply(x, exact), dist.get_rank() * x.shape[0]


# ----------------------------------------------------------------------------- L_base


class InfoNCE(nn.Module):
    """Bidirectional InfoNCE on cosine similarity; the two directions are summed (paper Eq. 3).

    ``grad="exact"``: the gradient of the loss on the whole global batch; ``"reference"``: the
    reference code's data-parallel gradient (see :class:`_GatherWithGrad`)."""

    def __init__(self, temperature: float = 0.05, gather: bool = True, grad: str = "exact") -> None:
        super().__init__()
        if grad not in ("exact", "reference"):
            raise ValueError(f"InfoNCE grad={grad!r}: choose 'exact' or 'reference'")
        self.temperature = temperature
        self.gather = gather
        self.exact = grad == "exact"

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``video``, ``text``: ``(B, E)`` embeddings of the same B clips, in the same order."""
        # float32: a bf16 softmax over the global batch at tau=0.05 loses too much precision.
        v = F.normalize(video.float(), dim=-1)  # (B, E)
        t = F.normalize(text.float(), dim=-1)  # (B, E)
        if self.gather:
            v_all, offset = gather_with_grad(v, self.exact)  # (W*B, E)
            t_all, _ = gather_with_grad(t, self.exact)  # (W*B, E)
        else:
            v_all, t_all, offset = v, t, 0
        target = torch.arange(v.shape[0], device=v.device) + offset  # positive of local query i
        # Under autocast a matmul runs in bf16 whatever its inputs are: keep the similarities in float32.
        with torch.autocast(v.device.type, enabled=False):
            loss_v2t = F.cross_entropy(v @ t_all.T / self.temperature, target)  # NCE(v, t): (B, W*B)
            loss_t2v = F.cross_entropy(t @ v_all.T / self.temperature, target)  # NCE(t, v): (B, W*B)
        return loss_v2t + loss_t2v


# ----------------------------------------------------------------------------- L_sort and variants


class SortLoss(nn.Module):
    """K-way cross-entropy: for the transcript in slot i, the class is its true position (Eq. 2)."""

    def forward(self, logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """``logits (B, K, K)`` (slot i, position j), ``order (B, K)`` true positions."""
        K = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, K).float(), order.reshape(-1))  # over B*K transcripts


def pair_index(K: int) -> tuple[list[int], list[int]]:
    """The K(K-1)/2 slot pairs (i, j), i < j, in ``itertools.combinations`` order."""
    pairs = list(itertools.combinations(range(K), 2))
    return [i for i, _ in pairs], [j for _, j in pairs]


def pairwise_targets(order: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` positions -> ``(B, K(K-1)/2)`` floats: 1 where slot i's transcript comes before slot j's."""
    first, second = pair_index(order.shape[-1])
    return (order[:, first] < order[:, second]).float()


class PairwiseSortLoss(nn.Module):
    """Binary cross-entropy on the relative order of every pair of transcripts (Table 3, Pairwise)."""

    def forward(self, logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """``logits (B, K(K-1)/2)``: logit that slot i precedes slot j, pairs as in :func:`pair_index`."""
        return F.binary_cross_entropy_with_logits(logits.float(), pairwise_targets(order))


@lru_cache(maxsize=8)
def permutations_table(K: int) -> torch.Tensor:
    """All K! orders ``(K!, K)`` in ``itertools.permutations`` (lexicographic) order."""
    return torch.tensor(list(itertools.permutations(range(K))), dtype=torch.long)


def permutation_index(order: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` permutations -> ``(B,)`` their index in ``itertools.permutations(range(K))``.

    That order is lexicographic, so the index is the Lehmer code read in the factorial base:
    sum_i (number of later entries smaller than order[i]) * (K-1-i)!.
    """
    K = order.shape[-1]
    smaller_later = (order.unsqueeze(-1) > order.unsqueeze(-2)).triu(diagonal=1).sum(-1)  # (B, K)
    weights = torch.tensor([math.factorial(K - 1 - i) for i in range(K)], device=order.device)
    return (smaller_later * weights).sum(-1)


class FactorialSortLoss(nn.Module):
    """K!-way cross-entropy over whole orders (Table 3, Factorial)."""

    def forward(self, logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """``logits (B, K!)``; the class is the index of ``order`` among the permutations."""
        return F.cross_entropy(logits.float(), permutation_index(order))


# ----------------------------------------------------------------------------- metrics


def sort_accuracy(pred: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted vs true positions ``(B, K)``: share of transcripts placed right, share of samples all right."""
    right = pred == order  # (B, K)
    return right.float().mean(), right.all(dim=-1).float().mean()
