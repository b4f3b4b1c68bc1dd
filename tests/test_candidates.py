"""Sample ids and separate candidates for the losses over the pairs of a batch.

Each loss with ``ids`` (and, for the labelled ones, with ``candidates``) is checked in
float64 against a brute-force loop written from the documented semantics (module notes
of :mod:`contrastkit.functional`), in value and in gradient with respect to the
embeddings and the candidates:

* ``ids`` alone: pairs ``(i, j)``, ``i != j``, with ``ids[i] != ids[j]`` only;
* ``candidates``: every (anchor, candidate) pair counts, no self exclusion; with
  ``ids``/``candidate_ids`` a candidate with its anchor's id is left out;
* InfoNCE and NT-Xent: a key (query, view) with the anchor's id is not a negative, the
  anchor's own positive excepted.

The batches hold exact duplicates at distance zero (one with its anchor's id, one
without), an anchor with no positive, and in separate tests anchors whose every
candidate is excluded. Then identities (distinct ids are no ids; the batch as its own
candidates is the batch), the tiled path against the simple one, and bad input.

The brute force uses per-pair torch scalar operations (so that autograd gives its
gradient), never the library's matrices or masks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor

import contrastkit
import contrastkit._tiled
import contrastkit.functional as F
from contrastkit.losses import (
    AllPairsContrastiveLoss,
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    InfoNCELoss,
    NTXentLoss,
    SupConLoss,
)

DTYPE = torch.float64
REDUCTIONS = ["mean", "sum", "none"]
SEEDS = [0, 1, 2]
MODES = ["ids", "candidates", "candidates_ids"]

# --------------------------------------------------------------------------------------
# brute force: torch scalars, one pair at a time


def _f(t: Tensor) -> float:
    return t.detach().item()


def _cos(u: Tensor, v: Tensor) -> Tensor:
    # rows shorter than 1e-12 divided by 1e-12, as torch.nn.functional.normalize does
    return (u * v).sum() / (u.norm().clamp_min(1e-12) * v.norm().clamp_min(1e-12))


def _similarity(u: Tensor, v: Tensor, normalize: bool) -> Tensor:
    return _cos(u, v) if normalize else (u * v).sum()


def _distance(u: Tensor, v: Tensor, name: str) -> Tensor:
    diff = u - v
    squared = (diff * diff).sum()
    if name == "squared_euclidean":
        return squared
    if name == "euclidean":
        # gradient 0 at distance 0 (the library's subgradient of the norm at its kink)
        return squared.sqrt() if _f(squared) > 0 else squared * 0.0
    if name == "cosine":
        return (1.0 - _cos(u, v)).clamp(0.0, 2.0)
    raise KeyError(name)


def _lse(values: list[Tensor]) -> Tensor:
    return torch.logsumexp(torch.stack(values), dim=0)


def _reduce(per: list[Tensor], count: int, reduction: str, zero: Tensor) -> Tensor:
    if reduction == "none":
        return torch.stack(per) if per else zero.reshape(0)
    total = zero + sum(per, start=zero * 0.0)
    if reduction == "sum":
        return total
    return total / max(count, 1)


class _Pairs:
    """Anchors against candidates: either the batch itself (self excluded) or a set."""

    def __init__(
        self,
        x: Tensor,
        labels: Tensor,
        ids: Tensor | None,
        c: Tensor | None,
        c_labels: Tensor | None,
        c_ids: Tensor | None,
    ) -> None:
        self.x, self.own = x, c is None
        self.c = x if c is None else c
        self.labels = labels.tolist()
        self.c_labels = self.labels if c is None else c_labels.tolist()  # type: ignore[union-attr]
        self.ids = None if ids is None else ids.tolist()
        self.c_ids = self.ids if c is None else (None if c_ids is None else c_ids.tolist())
        self.b, self.m = x.shape[0], self.c.shape[0]
        self.zero = x.sum() * 0.0 + self.c.sum() * 0.0

    def excluded(self, i: int, j: int) -> bool:
        if self.own and i == j:
            return True
        return self.ids is not None and self.ids[i] == self.c_ids[j]  # type: ignore[index]

    def kept(self, i: int) -> list[int]:
        return [j for j in range(self.m) if not self.excluded(i, j)]

    def positives(self, i: int) -> list[int]:
        return [j for j in self.kept(i) if self.c_labels[j] == self.labels[i]]

    def negatives(self, i: int) -> list[int]:
        return [j for j in self.kept(i) if self.c_labels[j] != self.labels[i]]

    def distances(self, name: str) -> list[list[Tensor]]:
        return [
            [_distance(self.x[i], self.c[j], name) for j in range(self.m)] for i in range(self.b)
        ]


def bf_supcon(p: _Pairs, reduction: str, *, temperature: float, normalize: bool) -> Tensor:
    per, counted = [], 0
    for i in range(p.b):
        positives = p.positives(i)
        if not positives:
            per.append(p.zero)
            continue
        counted += 1
        logit = {j: _similarity(p.x[i], p.c[j], normalize) / temperature for j in p.kept(i)}
        lse = _lse(list(logit.values()))
        log_probs = torch.stack([logit[j] - lse for j in positives])
        per.append(-log_probs.sum() / len(positives))
    return _reduce(per, counted, reduction, p.zero)


def bf_all_pairs(p: _Pairs, reduction: str, *, margin: float, distance: str) -> Tensor:
    d = p.distances(distance)
    per, counted = [], 0
    for i in range(p.b):
        # the batch itself: each unordered pair once, in the order of mining.all_pairs
        for j in range(i + 1, p.m) if p.own else range(p.m):
            if p.excluded(i, j):
                per.append(p.zero)
                continue
            counted += 1
            dij = d[i][j]
            if p.labels[i] == p.c_labels[j]:
                per.append(0.5 * dij * dij)
            else:
                per.append(0.5 * (margin - dij).clamp_min(0.0) ** 2)
    out = _reduce(per, counted, reduction, p.zero)
    return out.reshape(p.b, p.m) if reduction == "none" and not p.own else out


def bf_batch_all(
    p: _Pairs, reduction: str, *, margin: float, distance: str, mean_over: str
) -> Tensor:
    d = p.distances(distance)
    per, count_all, count_nonzero = [], 0, 0
    for i in range(p.b):
        total = p.zero
        for j in p.positives(i):
            for k in p.negatives(i):
                hinge = (d[i][j] - d[i][k] + margin).clamp_min(0.0)
                total = total + hinge
                count_all += 1
                count_nonzero += _f(hinge) > 0
        per.append(total)
    return _reduce(per, count_all if mean_over == "all" else count_nonzero, reduction, p.zero)


def bf_batch_hard(p: _Pairs, reduction: str, *, margin: float, distance: str) -> Tensor:
    d = p.distances(distance)
    per, valid = [], 0
    for i in range(p.b):
        positives, negatives = p.positives(i), p.negatives(i)
        if not positives or not negatives:
            per.append(p.zero)
            continue
        valid += 1
        far = positives[0]  # the lowest index among equals, as the library's argmax
        for j in positives:
            if _f(d[i][j]) > _f(d[i][far]):
                far = j
        near = negatives[0]
        for k in negatives:
            if _f(d[i][k]) < _f(d[i][near]):
                near = k
        per.append((d[i][far] - d[i][near] + margin).clamp_min(0.0))
    return _reduce(per, valid, reduction, p.zero)


def bf_nt_xent(
    z1: Tensor, z2: Tensor, ids: Tensor, reduction: str, *, temperature: float
) -> Tensor:
    n = z1.shape[0]
    views = [*z1, *z2]
    example = [int(ids[v % n]) for v in range(2 * n)]
    per = []
    for v in range(2 * n):
        twin = (v + n) % (2 * n)
        kept = [u for u in range(2 * n) if u != v and (u == twin or example[u] != example[v])]
        logits = [_cos(views[v], views[u]) / temperature for u in kept]
        per.append(_lse(logits) - _cos(views[v], views[twin]) / temperature)
    return _reduce(per, 2 * n, reduction, z1.sum() * 0.0)


def bf_info_nce(
    q: Tensor,
    k: Tensor,
    ids: Tensor,
    reduction: str,
    *,
    temperature: float,
    normalize: bool,
    symmetric: bool,
    negatives: Tensor | None,
) -> Tensor:
    n = q.shape[0]
    same = [[int(ids[i]) == int(ids[j]) and i != j for j in range(n)] for i in range(n)]
    per = []
    for i in range(n):
        positive = _similarity(q[i], k[i], normalize) / temperature
        logits = [
            _similarity(q[i], k[j], normalize) / temperature for j in range(n) if not same[i][j]
        ]
        if negatives is not None:
            extra = negatives if negatives.dim() == 2 else negatives[i]
            logits += [_similarity(q[i], e, normalize) / temperature for e in extra]
        loss = _lse(logits) - positive
        if symmetric:  # key i picks query i among the queries without its id
            column = [
                _similarity(q[j], k[i], normalize) / temperature for j in range(n) if not same[i][j]
            ]
            loss = 0.5 * (loss + _lse(column) - positive)
        per.append(loss)
    return _reduce(per, n, reduction, q.sum() * 0.0)


# --------------------------------------------------------------------------------------
# the losses under test, each with its brute force


class Labelled:
    def __init__(self, fn: Callable[..., Tensor], bf: Callable[..., Tensor], **hp: Any) -> None:
        self.fn, self.bf, self.hp = fn, bf, hp

    def lib(self, z: Tensor, y: Tensor, **kw: Any) -> Tensor:
        return self.fn(z, y, **self.hp, **kw)

    def brute(self, pairs: _Pairs, reduction: str) -> Tensor:
        return self.bf(pairs, reduction, **self.hp)


LABELLED: dict[str, Labelled] = {
    "supcon": Labelled(F.supcon, bf_supcon, temperature=0.5, normalize=True),
    "supcon_dot": Labelled(F.supcon, bf_supcon, temperature=2.0, normalize=False),
    "all_pairs_euclidean": Labelled(
        F.all_pairs_contrastive_loss, bf_all_pairs, margin=1.5, distance="euclidean"
    ),
    "all_pairs_squared": Labelled(
        F.all_pairs_contrastive_loss, bf_all_pairs, margin=2.0, distance="squared_euclidean"
    ),
    "all_pairs_cosine": Labelled(
        F.all_pairs_contrastive_loss, bf_all_pairs, margin=0.7, distance="cosine"
    ),
    "batch_all_euclidean": Labelled(
        F.batch_all_triplet_loss, bf_batch_all, margin=1.0, distance="euclidean", mean_over="all"
    ),
    "batch_all_cosine_nonzero": Labelled(
        F.batch_all_triplet_loss, bf_batch_all, margin=0.3, distance="cosine", mean_over="nonzero"
    ),
    "batch_all_squared_nonzero": Labelled(
        F.batch_all_triplet_loss,
        bf_batch_all,
        margin=1.0,
        distance="squared_euclidean",
        mean_over="nonzero",
    ),
    "batch_hard_euclidean": Labelled(
        F.batch_hard_triplet_loss, bf_batch_hard, margin=1.0, distance="euclidean"
    ),
    "batch_hard_cosine": Labelled(
        F.batch_hard_triplet_loss, bf_batch_hard, margin=0.3, distance="cosine"
    ),
}


def _info_nce_case(**hp: Any) -> dict[str, Any]:
    return {"temperature": 0.4, "normalize": True, "symmetric": False, "negatives": None, **hp}


PAIRED: dict[str, tuple[str, dict[str, Any]]] = {
    "nt_xent": ("nt_xent", {"temperature": 0.5}),
    "info_nce": ("info_nce", _info_nce_case()),
    "info_nce_dot": ("info_nce", _info_nce_case(normalize=False, temperature=1.5)),
    "info_nce_symmetric": ("info_nce", _info_nce_case(symmetric=True)),
    "info_nce_shared_negatives": ("info_nce", _info_nce_case(negatives="shared")),
    "info_nce_query_negatives": ("info_nce", _info_nce_case(negatives="per_query")),
}


# --------------------------------------------------------------------------------------
# batches


def _labelled_batch(seed: int, mode: str) -> dict[str, Any]:
    """Odd sizes; exact duplicates at distance 0 with and without the anchor's id.

    Rows 0 and 1 are one sample (same id, same row); row 2 the same row under another id
    and the same label (a positive at distance 0), row 3 the same row under another id
    and another label (a negative at distance 0); row 4 another view of row 2 (its id and
    label, another row); the last row's label is unique (an anchor with no positive).
    The candidates hold row 0 under its id, row 0 under another id (a positive at
    distance 0), row 2 under another label, another view of row 2 (its id and label),
    and never label 7.
    """
    g = torch.Generator().manual_seed(seed)
    b, m = (6, 7, 9)[seed % 3], (6, 9, 7)[seed % 3]
    z = torch.randn(b, 3, generator=g, dtype=DTYPE)
    labels = torch.randint(0, 3, (b,), generator=g)
    ids = torch.randint(9, 13, (b,), generator=g)
    z[1] = z[2] = z[3] = z[0]
    labels[1] = labels[2] = labels[0]
    labels[3] = (labels[0] + 1) % 3
    labels[4] = labels[2]
    ids[0:5] = torch.tensor([10, 10, 11, 12, 11])
    labels[-1] = 7
    out: dict[str, Any] = {"z": z, "labels": labels, "ids": ids}
    if mode == "ids":
        return out
    c = torch.randn(m, 3, generator=g, dtype=DTYPE)
    c_labels = torch.randint(0, 3, (m,), generator=g)
    c_ids = torch.randint(9, 14, (m,), generator=g)
    c[0] = c[1] = z[0]
    c[2] = z[2]
    c_labels[0] = c_labels[1] = labels[0]
    c_labels[2] = (labels[2] + 1) % 3
    c_labels[3] = labels[2]
    c_ids[0:4] = torch.tensor([10, 99, 98, 11])
    out.update(candidates=c, candidate_labels=c_labels, candidate_ids=c_ids)
    if mode == "candidates":
        del out["ids"], out["candidate_ids"]
    return out


def _paired_batch(seed: int, negatives: str | None) -> dict[str, Any]:
    g = torch.Generator().manual_seed(100 + seed)
    n = (5, 7, 6)[seed % 3]
    q = torch.randn(n, 3, generator=g, dtype=DTYPE)
    k = torch.randn(n, 3, generator=g, dtype=DTYPE)
    ids = torch.randint(0, 3, (n,), generator=g)
    ids[0] = ids[1] = 5  # two pairs of one sample, with their rows equal too
    q[1], k[1] = q[0], k[0]
    ids[2] = 6  # a pair whose id is its own
    out: dict[str, Any] = {"q": q, "k": k, "ids": ids}
    if negatives == "shared":
        out["negatives"] = torch.randn(4, 3, generator=g, dtype=DTYPE)
    elif negatives == "per_query":
        out["negatives"] = torch.randn(n, 3, 3, generator=g, dtype=DTYPE)
    return out


def _leaves(batch: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = dict(batch)
    for name in names:
        if name in out:
            out[name] = out[name].clone().requires_grad_(True)
    return out


def _scalar(out: Tensor, seed: int = 7) -> Tensor:
    """A scalar of the output: itself, or a fixed weighting of its terms."""
    if out.dim() == 0:
        return out
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return (w * out).sum()


def _grads(out: Tensor, inputs: list[Tensor]) -> tuple[Tensor, ...]:
    return torch.autograd.grad(_scalar(out), inputs, retain_graph=True, materialize_grads=True)


def _assert_same(got: Tensor, want: Tensor, inputs: list[Tensor], **tol: Any) -> None:
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, **tol)
    for g_got, g_want in zip(_grads(got, inputs), _grads(want, inputs), strict=True):
        assert torch.isfinite(g_got).all()
        torch.testing.assert_close(g_got, g_want, **tol)


def _lib_labelled(
    name: str, b: dict[str, Any], reduction: str, **kw: Any
) -> tuple[Tensor, list[Tensor]]:
    """The library's loss of a batch of leaves, and the tensors to differentiate by."""
    extra = {k: b[k] for k in ("ids", "candidates", "candidate_labels", "candidate_ids") if k in b}
    got = LABELLED[name].lib(b["z"], b["labels"], reduction=reduction, **extra, **kw)
    return got, [b["z"]] + ([b["candidates"]] if "candidates" in b else [])


def _brute_labelled(name: str, b: dict[str, Any], reduction: str) -> Tensor:
    pairs = _Pairs(
        b["z"],
        b["labels"],
        b.get("ids"),
        b.get("candidates"),
        b.get("candidate_labels"),
        b.get("candidate_ids"),
    )
    return LABELLED[name].brute(pairs, reduction)


def _run_labelled(
    name: str, batch: dict[str, Any], reduction: str
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The library's loss, its brute force, and the tensors to differentiate by."""
    b = _leaves(batch, ("z", "candidates"))
    got, inputs = _lib_labelled(name, b, reduction)
    return got, _brute_labelled(name, b, reduction), inputs


def _paired_lib(name: str, b: dict[str, Any], reduction: Any, **kw: Any) -> Tensor:
    kind, hp = PAIRED[name]
    if kind == "nt_xent":
        return F.nt_xent(b["q"], b["k"], reduction=reduction, **hp, **kw)
    hp = {**hp, "negatives": b.get("negatives")}
    return F.info_nce(b["q"], b["k"], reduction=reduction, **hp, **kw)


def _brute_paired(name: str, b: dict[str, Any], reduction: str) -> Tensor:
    kind, hp = PAIRED[name]
    if kind == "nt_xent":
        return bf_nt_xent(b["q"], b["k"], b["ids"], reduction, **hp)
    hp = {**hp, "negatives": b.get("negatives")}
    return bf_info_nce(b["q"], b["k"], b["ids"], reduction, **hp)


def _run_paired(
    name: str, batch: dict[str, Any], reduction: str
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The library's loss with ids, its brute force, and the tensors to differentiate by."""
    b = _leaves(batch, ("q", "k", "negatives"))
    got = _paired_lib(name, b, reduction, ids=b["ids"])
    inputs = [b[k] for k in ("q", "k", "negatives") if k in b]
    return got, _brute_paired(name, b, reduction), inputs


# --------------------------------------------------------------------------------------
# 1. brute force


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(LABELLED))
def test_labelled_loss_with_ids_or_candidates_equals_brute_force(
    name: str, mode: str, reduction: str
) -> None:
    for seed in SEEDS:  # batches of 6, 7 and 9 anchors against 6, 9 and 7 candidates
        got, want, inputs = _run_labelled(name, _labelled_batch(seed, mode), reduction)
        _assert_same(got, want, inputs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(PAIRED))
def test_paired_loss_with_ids_equals_brute_force(name: str, reduction: str) -> None:
    _, hp = PAIRED[name]
    for seed in SEEDS:  # 5, 7 and 6 pairs
        got, want, inputs = _run_paired(name, _paired_batch(seed, hp.get("negatives")), reduction)
        _assert_same(got, want, inputs)


def test_the_batches_hold_the_cases_they_claim() -> None:
    """Duplicates at distance 0 kept and left out, an anchor with no positive."""
    for seed in SEEDS:
        for mode in MODES:
            batch = _labelled_batch(seed, mode)
            pairs = _Pairs(
                batch["z"],
                batch["labels"],
                batch.get("ids"),
                batch.get("candidates"),
                batch.get("candidate_labels"),
                batch.get("candidate_ids"),
            )
            d = pairs.distances("euclidean")
            assert not pairs.positives(pairs.b - 1)
            zero_positive = [j for j in pairs.positives(0) if _f(d[0][j]) == 0]
            zero_negative = [j for j in pairs.negatives(0) if _f(d[0][j]) == 0]
            assert zero_positive and zero_negative
            if mode != "candidates":
                left_out = [
                    j for j in range(pairs.m) if pairs.excluded(0, j) and not (pairs.own and j == 0)
                ]
                assert any(_f(d[0][j]) == 0 for j in left_out)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(LABELLED))
def test_an_anchor_whose_every_candidate_is_excluded_adds_zero(name: str, reduction: str) -> None:
    batch = _labelled_batch(1, "candidates_ids")
    batch["candidate_ids"] = torch.full_like(batch["candidate_ids"], 10)  # rows 0 and 1's id
    got, want, inputs = _run_labelled(name, batch, reduction)
    assert torch.isfinite(got).all()
    _assert_same(got, want, inputs)
    if reduction == "none":
        assert (got[:2] == 0).all()  # per anchor, or the anchors' rows of (B, M) pairs
    # and the anchors excluded from everything get no gradient from it
    (grad_z,) = _grads(got, inputs[:1])
    assert (grad_z[:2] == 0).all()
    assert grad_z[2:].abs().sum() > 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("mode", ["ids", "candidates_ids"])
@pytest.mark.parametrize("name", list(LABELLED))
def test_every_pair_excluded_gives_a_finite_zero(name: str, mode: str, reduction: str) -> None:
    batch = _labelled_batch(0, mode)
    batch["ids"] = torch.zeros_like(batch["ids"])
    if mode != "ids":
        batch["candidate_ids"] = torch.zeros_like(batch["candidate_ids"])
    got, want, inputs = _run_labelled(name, batch, reduction)
    _assert_same(got, want, inputs)
    assert (got == 0).all()
    for g in _grads(got, inputs):
        assert (g == 0).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(PAIRED))
def test_paired_loss_with_one_id_keeps_only_the_own_positive(name: str, reduction: str) -> None:
    """Every row one id: the only logit left (in-batch) is the positive's own."""
    _, hp = PAIRED[name]
    batch = _paired_batch(0, hp.get("negatives"))
    batch["ids"] = torch.zeros_like(batch["ids"])
    got, want, inputs = _run_paired(name, batch, reduction)
    _assert_same(got, want, inputs)
    if hp.get("negatives") is None:  # log(exp(s) / exp(s)), to rounding
        torch.testing.assert_close(got, torch.zeros_like(got), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------------------
# 2. identities


def _distinct_ids(n: int, seed: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)) * 3 + 1


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(LABELLED))
def test_distinct_ids_are_no_ids_labelled(name: str, reduction: str) -> None:
    batch = _labelled_batch(2, "candidates_ids")
    z, y = batch["z"], batch["labels"]
    spec = LABELLED[name]
    ids = _distinct_ids(z.shape[0], 0)
    tol: dict[str, Any] = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(
        spec.lib(z, y, reduction=reduction, ids=ids), spec.lib(z, y, reduction=reduction), **tol
    )
    # with candidates: distinct from every anchor's id
    c = {k: batch[k] for k in ("candidates", "candidate_labels")}
    c_ids = _distinct_ids(c["candidates"].shape[0], 1) + 1000
    torch.testing.assert_close(
        spec.lib(z, y, reduction=reduction, ids=ids, candidate_ids=c_ids, **c),
        spec.lib(z, y, reduction=reduction, **c),
        **tol,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(PAIRED))
def test_distinct_ids_are_no_ids_paired(name: str, reduction: str) -> None:
    _, hp = PAIRED[name]
    b = _paired_batch(1, hp.get("negatives"))
    ids = _distinct_ids(b["q"].shape[0], 2)
    torch.testing.assert_close(
        _paired_lib(name, b, reduction, ids=ids),
        _paired_lib(name, b, reduction),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(LABELLED))
def test_the_batch_as_its_own_candidates_is_the_batch(name: str, reduction: str) -> None:
    batch = _labelled_batch(2, "ids")
    z = batch["z"].clone().requires_grad_(True)
    y = batch["labels"]
    spec = LABELLED[name]
    n = z.shape[0]
    own = spec.lib(
        z,
        y,
        reduction=reduction,
        candidates=z,
        candidate_labels=y,
        ids=torch.arange(n),
        candidate_ids=torch.arange(n),
    )
    plain = spec.lib(z, y, reduction=reduction)
    if name.startswith("all_pairs"):
        if reduction == "none":  # (B, M) against N (N - 1) / 2: the upper triangle
            i, j = torch.triu_indices(n, n, offset=1)
            assert own.shape == (n, n)
            own = own[i, j]
        elif reduction == "sum":
            # every (anchor, candidate) pair counts: each unordered pair from both ends
            own = own / 2
    _assert_same(own, plain, [z], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# 3. the tiled path


# all-pairs with reduction="none" has no tiled path: chunk_size is refused (tested below)
_TILED_LABELLED = [
    (name, mode, reduction, chunk_size)
    for name, mode, reduction, chunk_size in itertools.product(LABELLED, MODES, REDUCTIONS, [2, 3])
    if not (name.startswith("all_pairs") and reduction == "none")
]


@pytest.mark.parametrize(("name", "mode", "reduction", "chunk_size"), _TILED_LABELLED)
def test_tiled_path_equals_simple_path_labelled(
    name: str, mode: str, reduction: str, chunk_size: int
) -> None:
    batch = _labelled_batch(1, mode)
    simple, inputs = _lib_labelled(name, _leaves(batch, ("z", "candidates")), reduction)
    b = _leaves(batch, ("z", "candidates"))
    tiled, tiled_inputs = _lib_labelled(name, b, reduction, chunk_size=chunk_size)
    torch.testing.assert_close(tiled, simple)
    for g_tiled, g_simple in zip(_grads(tiled, tiled_inputs), _grads(simple, inputs), strict=True):
        torch.testing.assert_close(g_tiled, g_simple)


@pytest.mark.parametrize("chunk_size", [2, 3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(PAIRED))
def test_tiled_path_equals_simple_path_paired(name: str, reduction: str, chunk_size: int) -> None:
    _, hp = PAIRED[name]
    batch = _paired_batch(1, hp.get("negatives"))
    names = ("q", "k", "negatives")
    b, tb = _leaves(batch, names), _leaves(batch, names)
    simple = _paired_lib(name, b, reduction, ids=b["ids"])
    tiled = _paired_lib(name, tb, reduction, ids=tb["ids"], chunk_size=chunk_size)
    torch.testing.assert_close(tiled, simple)
    inputs = [b[k] for k in names if k in b]
    tiled_inputs = [tb[k] for k in names if k in tb]
    for g_tiled, g_simple in zip(_grads(tiled, tiled_inputs), _grads(simple, inputs), strict=True):
        torch.testing.assert_close(g_tiled, g_simple)


def test_all_pairs_none_refuses_chunk_size_with_candidates() -> None:
    batch = _labelled_batch(0, "candidates_ids")
    with pytest.raises(ValueError, match=r"chunk_size needs .*reduction"):
        F.all_pairs_contrastive_loss(
            batch["z"],
            batch["labels"],
            reduction="none",
            chunk_size=2,
            ids=batch["ids"],
            candidates=batch["candidates"],
            candidate_labels=batch["candidate_labels"],
            candidate_ids=batch["candidate_ids"],
        )


# --------------------------------------------------------------------------------------
# 4. bad input

Z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
Y = torch.tensor([0, 0, 1, 1, 2])
C = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
CY = torch.tensor([0, 1, 1, 2])

LABELLED_CALLS: dict[str, Callable[..., Tensor]] = {
    "supcon": lambda **kw: F.supcon(Z, Y, **kw),
    "all_pairs": lambda **kw: F.all_pairs_contrastive_loss(Z, Y, **kw),
    "batch_all": lambda **kw: F.batch_all_triplet_loss(Z, Y, margin=1.0, **kw),
    "batch_hard": lambda **kw: F.batch_hard_triplet_loss(Z, Y, margin=1.0, **kw),
}
ALL_CALLS: dict[str, Callable[..., Tensor]] = {
    **LABELLED_CALLS,
    "nt_xent": lambda **kw: F.nt_xent(Z, Z + 1, **kw),
    "info_nce": lambda **kw: F.info_nce(Z, Z + 1, **kw),
    "info_nce_symmetric": lambda **kw: F.info_nce(Z, Z + 1, symmetric=True, **kw),
}


@pytest.mark.parametrize("name", list(ALL_CALLS))
@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        (torch.arange(5.0), TypeError, r"^ids must be an integer tensor.*float"),
        (torch.arange(4), ValueError, r"^ids must have shape \(5,\).*got \(4,\)"),
        (torch.arange(6), ValueError, r"^ids must have shape \(5,\).*got \(6,\)"),
        (torch.zeros(5, 1, dtype=torch.long), ValueError, r"^ids must have shape.*got \(5, 1\)"),
        ([0, 1, 2, 3, 4], TypeError, r"^ids must be"),
    ],
)
def test_bad_ids(name: str, ids: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ALL_CALLS[name](ids=ids)


_BAD_CANDIDATES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"candidate_labels": CY}, ValueError, r"^candidate_labels needs candidates"),
    ({"candidate_ids": CY}, ValueError, r"^candidate_ids needs candidates"),
    ({"ids": torch.arange(5), "candidate_ids": CY}, ValueError, r"^candidate_ids needs candidates"),
    ({"candidates": C}, ValueError, r"candidates need candidate_labels.*candidate_labels=None"),
    (
        {"candidates": C, "candidate_labels": CY, "ids": torch.arange(5)},
        ValueError,
        r"ids and candidate_ids go together.*ids=a tensor and candidate_ids=None",
    ),
    (
        {"candidates": C, "candidate_labels": CY, "candidate_ids": torch.arange(4)},
        ValueError,
        r"ids and candidate_ids go together.*ids=None and candidate_ids=a tensor",
    ),
    (
        {"candidates": C[:, :2], "candidate_labels": CY},
        ValueError,
        r"^candidates must have 3 features like embeddings, got shape \(4, 2\)",
    ),
    (
        {"candidates": torch.cat([C, C[:1] * float("nan")]), "candidate_labels": torch.arange(5)},
        ValueError,
        r"^candidates must be finite",
    ),
    (
        {"candidates": torch.cat([C, C[:1] * float("inf")]), "candidate_labels": torch.arange(5)},
        ValueError,
        r"^candidates must be finite",
    ),
    (
        {"candidates": C, "candidate_labels": CY[:3]},
        ValueError,
        r"^candidate_labels must have shape \(4,\)",
    ),
    (
        {"candidates": C, "candidate_labels": CY.double()},
        TypeError,
        r"^candidate_labels must be an integer tensor",
    ),
    (
        {
            "candidates": C,
            "candidate_labels": CY,
            "ids": torch.arange(5),
            "candidate_ids": torch.arange(3),
        },
        ValueError,
        r"^candidate_ids must have shape \(4,\)",
    ),
    (
        {
            "candidates": C,
            "candidate_labels": CY,
            "ids": torch.arange(5),
            "candidate_ids": torch.arange(4.0),
        },
        TypeError,
        r"^candidate_ids must be an integer tensor",
    ),
    ({"candidates": C[0], "candidate_labels": CY[:1]}, ValueError, r"^candidates must"),
]


@pytest.mark.parametrize("name", list(LABELLED_CALLS))
@pytest.mark.parametrize(("kwargs", "error", "match"), _BAD_CANDIDATES)
def test_bad_candidates(
    name: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LABELLED_CALLS[name](**kwargs)


@pytest.mark.parametrize("name", list(ALL_CALLS))
@pytest.mark.parametrize("gather", ["yes", 1, 1.0, None, torch.tensor(True)])
def test_gather_must_be_a_bool(name: str, gather: Any) -> None:
    with pytest.raises(TypeError, match=r"^gather must be a bool"):
        ALL_CALLS[name](gather=gather)


@pytest.mark.parametrize("name", list(ALL_CALLS))
@pytest.mark.parametrize("with_ids", [False, True])
def test_gather_without_a_process_group_names_torchrun(name: str, with_ids: bool) -> None:
    assert not (dist.is_available() and dist.is_initialized())
    kw: dict[str, Any] = {"ids": torch.arange(5)} if with_ids else {}
    with pytest.raises(RuntimeError, match=r"torchrun.*init_process_group"):
        ALL_CALLS[name](gather=True, **kw)


@pytest.mark.parametrize("name", list(LABELLED_CALLS))
def test_gather_without_a_process_group_with_candidates(name: str) -> None:
    with pytest.raises(RuntimeError, match=r"torchrun.*init_process_group"):
        LABELLED_CALLS[name](gather=True, candidates=C, candidate_labels=CY)


# --------------------------------------------------------------------------------------
# found by these tests: the magnitude and the dtype of candidates


def test_supcon_without_normalize_refuses_candidates_whose_logits_overflow() -> None:
    z = torch.ones(2, 3, dtype=DTYPE) * 1e150  # within the embeddings' bound (1.2e153)
    c = torch.ones(2, 3, dtype=DTYPE) * 1e160
    with pytest.raises(ValueError, match="candidates"):
        F.supcon(z, torch.tensor([0, 1]), normalize=False, candidates=c, candidate_labels=Y[:2])


@pytest.mark.parametrize("name", list(LABELLED_CALLS))
def test_finite_float64_candidates_beyond_float32_give_no_nan(name: str) -> None:
    z, y = torch.ones(2, 3), torch.tensor([0, 1])
    c = torch.full((2, 3), 1e39, dtype=DTYPE)
    calls = {
        "supcon": lambda **kw: F.supcon(z, y, **kw),
        "all_pairs": lambda **kw: F.all_pairs_contrastive_loss(z, y, **kw),
        "batch_all": lambda **kw: F.batch_all_triplet_loss(z, y, margin=1.0, **kw),
        "batch_hard": lambda **kw: F.batch_hard_triplet_loss(z, y, margin=1.0, **kw),
    }
    try:  # either refused, naming candidates, or computed without NaN
        loss = calls[name](candidates=c, candidate_labels=torch.tensor([0, 1]))
    except ValueError as error:
        assert "candidates" in str(error)
        return
    assert not torch.isnan(loss).any()


# --------------------------------------------------------------------------------------
# the Modules

MODULES: dict[str, tuple[type[Any], dict[str, Any], str]] = {
    "supcon": (SupConLoss, {"temperature": 0.5}, "supcon"),
    "all_pairs": (AllPairsContrastiveLoss, {"margin": 1.5}, "all_pairs_euclidean"),
    "batch_all": (BatchAllTripletLoss, {"margin": 1.0}, "batch_all_euclidean"),
    "batch_hard": (BatchHardTripletLoss, {"margin": 1.0}, "batch_hard_euclidean"),
    "nt_xent": (NTXentLoss, {"temperature": 0.5}, "nt_xent"),
    "info_nce": (InfoNCELoss, {"temperature": 0.4}, "info_nce"),
}


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("gather", [1, "yes", None])
def test_module_gather_must_be_a_bool(name: str, gather: Any) -> None:
    cls, hp, _ = MODULES[name]
    with pytest.raises(TypeError, match=r"^gather must be a bool"):
        cls(gather=gather, **hp)


@pytest.mark.parametrize("name", list(MODULES))
def test_module_repr_shows_gather(name: str) -> None:
    cls, hp, _ = MODULES[name]
    assert "gather=False" in repr(cls(**hp))
    assert "gather=True" in repr(cls(gather=True, **hp))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(MODULES))
def test_module_forward_with_ids_equals_brute_force(name: str, reduction: str) -> None:
    cls, hp, case = MODULES[name]
    loss_fn = cls(reduction=reduction, **hp)
    if case in LABELLED:
        for mode in ("ids", "candidates_ids"):
            b = _leaves(_labelled_batch(0, mode), ("z", "candidates"))
            extra = {k: b[k] for k in ("candidates", "candidate_labels", "candidate_ids") if k in b}
            got = loss_fn(b["z"], b["labels"], ids=b["ids"], **extra)
            inputs = [b["z"]] + ([b["candidates"]] if "candidates" in b else [])
            _assert_same(got, _brute_labelled(case, b, reduction), inputs)
        return
    b = _leaves(_paired_batch(0, None), ("q", "k"))
    got = loss_fn(b["q"], b["k"], ids=b["ids"])
    _assert_same(got, _brute_paired(case, b, reduction), [b["q"], b["k"]])


def test_module_gather_true_without_a_process_group_raises_in_forward() -> None:
    loss_fn = SupConLoss(gather=True)
    with pytest.raises(RuntimeError, match=r"torchrun.*init_process_group"):
        loss_fn(Z, Y, ids=torch.arange(5))


def test_contrastkit_exports_the_modules() -> None:
    assert contrastkit.SupConLoss is SupConLoss
