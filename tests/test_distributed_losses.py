"""Every loss over the pairs of a batch, with ``gather=True``, equals one process's loss.

The contract, checked in float64 in the session's gloo groups at W = 2 and 3 processes
with equal and unequal rows per process (a process with none among them): every rank's
loss is the one-process loss of the whole batch (the ranks' rows concatenated in rank
order), and a model in DistributedDataParallel gets the one-process parameter
gradients; for every loss × reduction × simple and tiled path × with and without
sample ids.

With ``reduction="none"`` each rank holds its own anchors' terms; the model is trained
on a fixed weighting of them, and the one process on the same weighting of its terms.

The peers' bugs each fail here:

* a gather whose backward does not sum over processes (lightly #1528, Barlow Twins
  #1977): every gradient 1/W of the right one; and a loss without the world-size factor
  under DDP's average (pytorch-metric-learning #363): gradients off by W;
* positives found at the wrong offset when keys and extra negatives are concatenated
  before gathering (sentence-transformers PR #3453): ``info_nce_shared_negatives``,
  whose shared negatives are split unevenly over the ranks;
* unequal rows per process (gloo aborts an all-gather of unequal sizes): the layouts
  ``(4, 1)`` and ``(3, 1, 2)``;
* per-process means of SupCon with positives spread unevenly:
  :func:`test_supcon_with_positives_spread_unevenly_is_the_global_loss_not_a_mean_of_ranks`;
* a crash at world size 1 (pytorch-metric-learning #542): ``test_distributed.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import contrastkit.functional as F
from contrastkit import distributed
from process_group import ProcessGroups

FEATURES, DIM = 5, 4
LAYOUTS = [(3, 3), (4, 1), (2, 2, 2), (3, 1, 2), (3, 0), (0, 2, 2)]
REDUCTIONS = ["mean", "sum", "none"]


def _labelled(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def run(z: Tensor, z2: Tensor, batch: dict[str, Tensor], **kw: Any) -> Tensor:
        return loss(z, batch["labels"], **kw)

    return run


def _paired(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def run(z: Tensor, z2: Tensor, batch: dict[str, Tensor], **kw: Any) -> Tensor:
        return loss(z, z2, **kw)

    return run


def _with_negatives(z: Tensor, z2: Tensor, batch: dict[str, Tensor], **kw: Any) -> Tensor:
    return F.info_nce(z, z2, negatives=batch["negatives"], temperature=0.3, **kw)


def _with_query_negatives(z: Tensor, z2: Tensor, batch: dict[str, Tensor], **kw: Any) -> Tensor:
    return F.info_nce(z, z2, negatives=batch["query_negatives"], temperature=0.3, **kw)


LOSSES: dict[str, Callable[..., Tensor]] = {
    "supcon": _labelled(lambda z, y, **kw: F.supcon(z, y, temperature=0.5, **kw)),
    "all_pairs_contrastive": _labelled(
        lambda z, y, **kw: F.all_pairs_contrastive_loss(z, y, margin=2.0, **kw)
    ),
    "all_pairs_cosine": _labelled(
        lambda z, y, **kw: F.all_pairs_contrastive_loss(z, y, margin=0.7, distance="cosine", **kw)
    ),
    "batch_all": _labelled(lambda z, y, **kw: F.batch_all_triplet_loss(z, y, margin=1.0, **kw)),
    "batch_all_nonzero": _labelled(
        lambda z, y, **kw: F.batch_all_triplet_loss(
            z, y, margin=0.5, mean_over="nonzero", distance="squared_euclidean", **kw
        )
    ),
    "batch_hard": _labelled(lambda z, y, **kw: F.batch_hard_triplet_loss(z, y, margin=1.0, **kw)),
    "nt_xent": _paired(lambda a, b, **kw: F.nt_xent(a, b, temperature=0.5, **kw)),
    "info_nce": _paired(lambda a, b, **kw: F.info_nce(a, b, temperature=0.2, **kw)),
    "clip": _paired(lambda a, b, **kw: F.info_nce(a, b, symmetric=True, **kw)),
    "info_nce_shared_negatives": _with_negatives,
    "info_nce_query_negatives": _with_query_negatives,
}
PAIRED = {"nt_xent", "info_nce", "clip", "info_nce_shared_negatives", "info_nce_query_negatives"}


def _global_batch(layout: tuple[int, ...], seed: int) -> dict[str, Tensor]:
    """The whole batch, the same on every process; ids with duplicates, labels to match."""
    n = sum(layout)
    g = torch.Generator().manual_seed(seed)
    ids = torch.arange(n)
    duplicated = torch.randperm(n, generator=g)[: max(2, n // 3)]
    ids[duplicated[1:]] = int(ids[duplicated[0]])  # some rows are one sample
    labels = torch.randint(0, 3, (n,), generator=g)
    labels[duplicated[1:]] = int(labels[duplicated[0]])
    x = torch.randn(n, FEATURES, generator=g, dtype=torch.float64)
    x[duplicated[1]] = x[duplicated[0]]  # a duplicate: zero distance, one sample
    return {
        "x": x,
        "x2": torch.randn(n, FEATURES, generator=g, dtype=torch.float64),
        "labels": labels,
        "ids": ids,
        "negatives": torch.randn(2 * len(layout) + 1, FEATURES, generator=g, dtype=torch.float64),
        "query_negatives": torch.randn(n, 2, FEATURES, generator=g, dtype=torch.float64),
        "weights": torch.rand(n * n, generator=g, dtype=torch.float64),
    }


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(FEATURES, DIM).double()


def _none_selection(loss: str, layout: tuple[int, ...], rank: int) -> Tensor:
    """Which terms of the one-process ``reduction="none"`` output belong to ``rank``."""
    n, start = sum(layout), sum(layout[:rank])
    stop = start + layout[rank]
    index = torch.arange(n)
    if loss.startswith("all_pairs"):
        i, _ = torch.triu_indices(n, n, offset=1)
        return (i >= start) & (i < stop)
    mine = (index >= start) & (index < stop)
    return torch.cat([mine, mine]) if loss == "nt_xent" else mine


def _negatives_part(negatives: Tensor, layout: tuple[int, ...], rank: int) -> Tensor:
    """Shared negatives, split unevenly over the ranks (rank r holds r + 1 of them... or fewer)."""
    bounds = torch.linspace(0, negatives.shape[0], len(layout) + 1).round().long().tolist()
    return negatives[bounds[rank] : bounds[rank + 1]]


def _local_batch(batch: dict[str, Tensor], layout: tuple[int, ...], rank: int) -> dict[str, Tensor]:
    start = sum(layout[:rank])
    stop = start + layout[rank]
    local = {k: v[start:stop] for k, v in batch.items() if k not in ("negatives", "weights")}
    local["negatives"] = _negatives_part(batch["negatives"], layout, rank)
    return local


def _objective(
    loss: str, model: nn.Module, batch: dict[str, Tensor], reduction: str, kw: dict[str, Any]
) -> tuple[Tensor, Tensor]:
    z = model(batch["x"])
    z2 = model(batch["x2"]) if loss in PAIRED else z
    if loss.endswith("negatives"):  # the negatives are embedded by the model too
        key = "negatives" if loss == "info_nce_shared_negatives" else "query_negatives"
        batch = {**batch, key: model(batch[key])}
    if "with_ids" in kw:
        if kw.pop("with_ids"):
            kw["ids"] = batch["ids"]
    out = LOSSES[loss](z, z2, batch, reduction=reduction, **kw)
    return out, z


def _on_rank(
    loss: str, reduction: str, chunk_size: int | None, with_ids: bool, layout: tuple[int, ...]
) -> tuple[Tensor, list[Tensor]]:
    """One rank's loss (all ranks' batch gathered) and its DDP-averaged parameter gradients."""
    rank = distributed.rank()
    batch = _global_batch(layout, seed=len(layout) * 10 + layout[0])
    local = _local_batch(batch, layout, rank)
    model = nn.parallel.DistributedDataParallel(_model(seed=1))
    out, _ = _objective(
        loss,
        model,
        local,
        reduction,
        {"gather": True, "chunk_size": chunk_size, "with_ids": with_ids},
    )
    if reduction == "none":
        weights = batch["weights"][: _none_selection(loss, layout, rank).shape[0]]
        objective = (out * weights[_none_selection(loss, layout, rank)]).sum()
    else:
        objective = out
    objective.backward()
    return out.detach(), [p.grad.detach().clone() for p in model.parameters()]  # type: ignore[union-attr]


def _one_process(
    loss: str, reduction: str, with_ids: bool, layout: tuple[int, ...]
) -> tuple[Tensor, list[Tensor]]:
    batch = _global_batch(layout, seed=len(layout) * 10 + layout[0])
    model = _model(seed=1)
    out, _ = _objective(loss, model, batch, reduction, {"with_ids": with_ids})
    objective = out if reduction != "none" else (out * batch["weights"][: out.shape[0]]).sum()
    objective.backward()
    return out.detach(), [p.grad.detach().clone() for p in model.parameters()]  # type: ignore[union-attr]


CASES = [
    case
    for case in itertools.product(LOSSES, REDUCTIONS, [None, 2], [False, True], LAYOUTS)
    # the all-pairs "none" output is the N (N - 1) / 2 values themselves: never tiled
    if not (case[0].startswith("all_pairs") and case[1] == "none" and case[2] is not None)
]


@pytest.mark.parametrize(
    ("loss", "reduction", "chunk_size", "with_ids", "layout"),
    CASES,
    ids=[
        f"{loss}-{red}-{'tiled' if chunk else 'simple'}-{'ids' if ids else 'no_ids'}-"
        + "_".join(map(str, layout))
        for loss, red, chunk, ids, layout in CASES
    ],
)
def test_gathered_loss_and_ddp_gradients_equal_one_process_on_the_whole_batch(
    process_groups: ProcessGroups,
    loss: str,
    reduction: str,
    chunk_size: int | None,
    with_ids: bool,
    layout: tuple[int, ...],
) -> None:
    expected, expected_grads = _one_process(loss, reduction, with_ids, layout)
    results = process_groups(len(layout)).run(
        _on_rank, loss, reduction, chunk_size, with_ids, layout
    )
    # The simple path compares in float64 to 1e-10. The distance tiles take Euclidean
    # distances from |x|² + |y|² - 2 x·y, exact to about sqrt(eps)·|x| ≈ 1.5e-8 at zero
    # distance (the batch holds a duplicated row): the same bound as one process's tiles.
    tight = chunk_size is None or loss.startswith(("supcon", "nt_xent", "info_nce", "clip"))
    rtol, atol = (1e-10, 1e-12) if tight else (1e-7, 1e-7)
    for rank, (value, grads) in enumerate(results):
        want = expected[_none_selection(loss, layout, rank)] if reduction == "none" else expected
        torch.testing.assert_close(value, want, rtol=rtol, atol=atol)
        for got, want_grad in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(got, want_grad, rtol=10 * rtol, atol=10 * atol)


def _supcon_per_rank_and_gathered(
    z: Tensor, labels: Tensor, layout: tuple[int, ...]
) -> tuple[float, float]:
    rank = distributed.rank()
    start = sum(layout[:rank])
    mine = slice(start, start + layout[rank])
    local = F.supcon(z[mine], labels[mine])
    gathered = F.supcon(z[mine], labels[mine], gather=True)
    return float(local), float(gathered)


def test_supcon_with_positives_spread_unevenly_is_the_global_loss_not_a_mean_of_ranks(
    process_groups: ProcessGroups,
) -> None:
    """Per-process means of SupCon differ from the global loss; the gathered loss does not.

    Rank 0 holds pairs of classes, rank 1 mostly singletons: averaging the ranks' own
    losses (what a per-rank loss under DDP optimises) weighs them wrongly.
    """
    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, DIM, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 0, 1])
    layout = (4, 4)
    results = process_groups(2).run(_supcon_per_rank_and_gathered, z, labels, layout)
    expected = float(F.supcon(z, labels))
    per_rank_mean = sum(local for local, _ in results) / 2
    assert abs(per_rank_mean - expected) > 0.05  # the case tells the two apart
    for _, gathered in results:
        assert gathered == pytest.approx(expected, rel=1e-12)
