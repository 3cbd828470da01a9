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


def test_infonce_keeps_float32_similarities_under_autocast():
    """Under bf16 autocast the similarity matmul would run in bf16 (3 significant digits at tau=0.05): the
    loss and its gradient must be those of float32."""
    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(16, 32, generator=g, requires_grad=True), torch.randn(16, 32, generator=g)
    loss = InfoNCE(0.05, gather=False)
    want = loss(v, t)
    (want_grad,) = torch.autograd.grad(want, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(v, t)
    (got_grad,) = torch.autograd.grad(got, v)
    assert got.dtype == torch.float32 and torch.equal(got, want) and torch.equal(got_grad, want_grad)


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
        for grad in ("exact", "reference"):
            v = v_all[rows].clone().requires_grad_(True)  # this rank's share of the global batch
            t = t_all[rows].clone().requires_grad_(True)
            loss = InfoNCE(0.05, grad=grad)(v, t)
            loss.backward()
            torch.save({"loss": loss.detach(), "v": v.grad, "t": t.grad},
                       os.path.join(out_dir, f"{grad}-rank{rank}.pt"))
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

    ranks = [torch.load(tmp_path / f"exact-rank{r}.pt") for r in range(WORLD)]
    # The data-parallel engine averages over ranks, so the reference is the mean of the rank losses
    # and of the rank gradients; each rank's gradient covers only its own slice.
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / WORLD, single.detach())
    grad_v = torch.cat([r["v"] for r in ranks]) / WORLD
    grad_t = torch.cat([r["t"] for r in ranks]) / WORLD
    torch.testing.assert_close(grad_v, v_all.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad_t, t_all.grad, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ranks[0]["loss"], ranks[1]["loss"])  # the ranks did see different queries


def _rank_loss_alone(rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s loss (its queries against every rank's keys) and its gradient with respect to
    its own features only: what the reference code's gather gives that rank."""
    v_all, t_all = _features()
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    v, t = v_all[rows].clone().requires_grad_(True), t_all[rows].clone().requires_grad_(True)
    v_keys = torch.cat([v_all[: rank * LOCAL], v, v_all[(rank + 1) * LOCAL:]])  # others' rows: constants
    t_keys = torch.cat([t_all[: rank * LOCAL], t, t_all[(rank + 1) * LOCAL:]])
    vn, tn = torch.nn.functional.normalize(v, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    vk, tk = torch.nn.functional.normalize(v_keys, dim=-1), torch.nn.functional.normalize(t_keys, dim=-1)
    target = torch.arange(LOCAL) + rank * LOCAL
    loss = (torch.nn.functional.cross_entropy(vn @ tk.T / 0.05, target)
            + torch.nn.functional.cross_entropy(tn @ vk.T / 0.05, target))
    loss.backward()
    return loss.detach(), v.grad, t.grad


@pytest.mark.timeout(240)
def test_infonce_reference_gradient_is_each_rank_own_loss_over_world_size(tmp_path):
    """model.base_grad_scale=reference: what the authors' code trains on at W ranks (W=2 here)."""
    from conftest import free_port

    mp.spawn(_gather_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        ref = torch.load(tmp_path / f"reference-rank{rank}.pt")
        exact = torch.load(tmp_path / f"exact-rank{rank}.pt")
        loss, gv, gt = _rank_loss_alone(rank)
        torch.testing.assert_close(ref["loss"], loss)  # the forward is the same loss
        torch.testing.assert_close(ref["loss"], exact["loss"])
        torch.testing.assert_close(ref["v"], gv, atol=1e-6, rtol=1e-5)  # only this rank's own term
        torch.testing.assert_close(ref["t"], gt, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(ref["v"], exact["v"])  # and it is not the exact gradient
