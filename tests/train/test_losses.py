"""The TVTS objectives against hand computations, and the cross-rank InfoNCE against one process."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from tvts_train.model import (
    FactorialSortLoss,
    InfoNCE,
    PairwiseSortLoss,
    SortLoss,
    permutation_index,
    sort_accuracy,
)


def _hand_nce(queries: list[list[float]], keys: list[list[float]], tau: float) -> float:
    """NCE(q, k) = mean_i -log( exp(q_i.k_i / tau) / sum_j exp(q_i.k_j / tau) ), cosine similarities."""

    def unit(x: list[float]) -> list[float]:
        n = math.sqrt(sum(a * a for a in x))
        return [a / n for a in x]

    q, k = [unit(x) for x in queries], [unit(x) for x in keys]
    total = 0.0
    for i in range(len(q)):
        sims = [sum(a * b for a, b in zip(q[i], k[j])) / tau for j in range(len(k))]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return total / len(q)


def test_infonce_matches_the_formula_written_out():
    v = [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3], [-0.4, 0.1, 1.0]]
    t = [[0.9, 0.1, 0.4], [0.0, 0.8, 0.1], [0.3, -0.2, 0.7]]
    tau = 0.05
    expected = _hand_nce(t, v, tau) + _hand_nce(v, t, tau)  # both directions, summed
    got = InfoNCE(tau)(torch.tensor(v), torch.tensor(t))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert InfoNCE(0.5)(torch.tensor(v), torch.tensor(t)).item() == pytest.approx(
        _hand_nce(t, v, 0.5) + _hand_nce(v, t, 0.5), rel=1e-5
    )


def test_infonce_ignores_scale_of_embeddings():
    v, t = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(InfoNCE()(v, t), InfoNCE()(3 * v, 0.5 * t))  # cosine, not dot product


def test_sort_loss_is_cross_entropy_of_true_positions():
    logits = torch.tensor([[[2.0, 0.1, -1.0], [0.0, 0.5, 0.2], [1.0, 1.0, 3.0]],
                           [[0.3, 0.2, 0.1], [-2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # (B=2, K=3, K=3)
    order = torch.tensor([[0, 2, 1], [2, 1, 0]])
    total = 0.0
    for b in range(2):
        for i in range(3):  # -log softmax(p^i)[o_i], averaged over transcripts and samples
            row = logits[b, i].tolist()
            total += -(row[order[b, i]] - math.log(sum(math.exp(x) for x in row)))
    assert SortLoss()(logits, order).item() == pytest.approx(total / 6, rel=1e-6)


def test_pairwise_loss_is_bce_of_relative_orders():
    order = torch.tensor([[1, 2, 0]])  # pairs (0,1): 1<2 yes, (0,2): 1<0 no, (1,2): 2<0 no
    logits = torch.tensor([[0.5, -1.0, 2.0]])
    targets = [1.0, 0.0, 0.0]
    hand = 0.0
    for x, y in zip(logits[0].tolist(), targets):
        p = 1 / (1 + math.exp(-x))
        hand += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    assert PairwiseSortLoss()(logits, order).item() == pytest.approx(hand / 3, rel=1e-6)


def test_factorial_loss_is_cross_entropy_over_permutations():
    order = torch.tensor([[1, 0, 2]])  # itertools.permutations(range(3)) index 2
    assert permutation_index(order).item() == 2
    logits = torch.tensor([[0.1, 0.2, 1.5, -0.3, 0.0, 0.4]])
    row = logits[0].tolist()
    hand = -(row[2] - math.log(sum(math.exp(x) for x in row)))
    assert FactorialSortLoss()(logits, order).item() == pytest.approx(hand, rel=1e-6)


def test_sort_accuracy_per_transcript_and_all_k():
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    pred = torch.tensor([[0, 1, 2, 3], [3, 2, 0, 1]])
    acc, acc_all = sort_accuracy(pred, order)
    assert acc.item() == pytest.approx(6 / 8) and acc_all.item() == pytest.approx(1 / 2)


# ----------------------------------------------------------------------------- negatives from every rank

WORLD, LOCAL, DIM = 2, 3, 5


def _features() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(WORLD * LOCAL, DIM, generator=g), torch.randn(WORLD * LOCAL, DIM, generator=g)


def _gather_worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        v_all, t_all = _features()
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        v = v_all[rows].clone().requires_grad_(True)  # this rank's share of the global batch
        t = t_all[rows].clone().requires_grad_(True)
        loss = InfoNCE(0.05)(v, t)
        loss.backward()
        torch.save({"loss": loss.detach(), "v": v.grad, "t": t.grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(240)  # two fresh interpreters; never hang the suite on a stuck rendezvous
def test_infonce_all_gather_equals_single_process_on_the_whole_batch(tmp_path):
    from conftest import free_port

    mp.spawn(_gather_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    v_all, t_all = _features()
    v_all.requires_grad_(True)
    t_all.requires_grad_(True)
    single = InfoNCE(0.05)(v_all, t_all)  # no process group: the whole batch in one place
    single.backward()

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    # The data-parallel engine averages over ranks, so the reference is the mean of the rank losses
    # and of the rank gradients; each rank's gradient covers only its own slice.
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / WORLD, single.detach())
    grad_v = torch.cat([r["v"] for r in ranks]) / WORLD
    grad_t = torch.cat([r["t"] for r in ranks]) / WORLD
    torch.testing.assert_close(grad_v, v_all.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad_t, t_all.grad, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ranks[0]["loss"], ranks[1]["loss"])  # the ranks did see different queries
