"""Online miners and the label-form losses built on them.

* every miner against a brute-force loop over the batch, written from its docstring and
  run on the library's own distance matrix (so that the selection logic is tested, not
  rounding), on random batches, batches with exact ties and degenerate batches;
* miners take no gradient and return long index tensors;
* composition: miner + indexed loss equals the label-form loss, values and gradients;
* the label-form losses against triple loops over Python floats, and gradcheck;
* zero losses that stay connected to the graph, properties, bad input, a large batch.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import contrastkit.functional as F
import reference as ref
from contrastkit import AllPairsContrastiveLoss, BatchAllTripletLoss, BatchHardTripletLoss
from contrastkit import mining as M
from contrastkit.distances import distance_matrix

DISTANCE_NAMES = ["euclidean", "squared_euclidean", "cosine", "manhattan"]
REDUCTIONS = ["mean", "sum", "none"]
MARGINS = [0.0, 0.3, 2.0]
VALID_DISTANCES = r"\['cosine', 'euclidean', 'manhattan', 'squared_euclidean'\]"

# float64 tolerance; the label forms take Euclidean distances from the matrix expansion
# |x|^2 + |y|^2 - 2 x.y, the indexed forms from the differences: a few ulps apart
TOL = {"rtol": 1e-8, "atol": 1e-10}


# --- batches ---------------------------------------------------------------------------


def random_batch(seed: int, n: int, num_classes: int, dim: int = 3) -> tuple[Tensor, Tensor]:
    """Generic float64 embeddings: no two distances tie."""
    generator = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(num_classes, (n,), generator=generator)
    return emb, labels


def tied_batch(seed: int, n: int, num_classes: int, dim: int = 1) -> tuple[Tensor, Tensor]:
    """Small integer coordinates: distances repeat exactly (and are exact in float64)."""
    generator = torch.Generator().manual_seed(1000 + seed)
    emb = torch.randint(-3, 4, (n, dim), generator=generator).double()
    labels = torch.randint(num_classes, (n,), generator=generator)
    return emb, labels


# every size 1..12 with every number of classes 1..4
RANDOM_CASES = [
    (seed, 1 + seed % 12, 1 + (seed // 12) % 4, (2, 3, 5)[seed % 3]) for seed in range(48)
]
TIED_CASES = [(seed, 2 + seed % 11, 1 + seed % 4, 1 + seed % 2) for seed in range(24)]


def special_batches() -> list[tuple[str, Tensor, Tensor]]:
    emb6 = random_batch(7, 6, 1)[0]
    return [
        ("single sample", emb6[:1], torch.tensor([0])),
        ("two, same class", emb6[:2], torch.tensor([4, 4])),
        ("two, two classes", emb6[:2], torch.tensor([4, 1])),
        ("single class", emb6, torch.zeros(6, dtype=torch.long)),
        ("all singletons", emb6, torch.tensor([5, 3, 0, 1, 2, 4])),
        ("some singletons", emb6, torch.tensor([0, 0, 1, 2, 2, 3])),
        ("one pair among singletons", emb6, torch.tensor([9, 1, 2, 9, 3, 4])),
        ("duplicate rows", torch.cat([emb6[:3], emb6[:3]]), torch.tensor([0, 1, 0, 0, 1, 1])),
        ("all rows equal", torch.ones(5, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 2])),
        ("zero rows", torch.zeros(4, 3, dtype=torch.float64), torch.tensor([0, 0, 1, 1])),
        ("bool labels", emb6[:4], torch.tensor([True, False, True, False])),
    ]


def all_batches() -> list[tuple[str, Tensor, Tensor]]:
    batches = [(f"random {case}", *random_batch(*case)) for case in RANDOM_CASES]
    batches += [(f"tied {case}", *tied_batch(*case)) for case in TIED_CASES]
    return batches + special_batches()


# --- brute-force miners: loops over the batch, from the docstrings --------------------


def matrix(emb: Tensor, distance: str) -> list[list[float]]:
    return distance_matrix(emb, distance=distance).tolist()


def as_labels(labels: Tensor) -> list[int]:
    return [int(v) for v in labels.tolist()]


def bf_label_masks(labels: list[int]) -> tuple[list[list[bool]], list[list[bool]]]:
    n = len(labels)
    positive = [[labels[i] == labels[j] and i != j for j in range(n)] for i in range(n)]
    negative = [[labels[i] != labels[j] for j in range(n)] for i in range(n)]
    return positive, negative


def bf_all_pairs(d, labels):
    n = len(labels)
    return [(i, j, int(labels[i] == labels[j])) for i in range(n) for j in range(i + 1, n)]


def bf_hard_pairs(d, labels):
    n = len(labels)
    positive, negative = bf_label_masks(labels)
    negatives = [d[i][j] for i in range(n) for j in range(n) if negative[i][j]]
    positives = [d[i][j] for i in range(n) for j in range(n) if positive[i][j]]
    closest_negative = min(negatives, default=math.inf)
    farthest_positive = max(positives, default=-math.inf)
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            if positive[i][j] and d[i][j] > closest_negative:
                pairs.append((i, j, 1))
            elif negative[i][j] and d[i][j] < farthest_positive:
                pairs.append((i, j, 0))
    return pairs


def bf_batch_all(d, labels, margin=None):
    n = len(labels)
    triplets = []
    for a, p, q in itertools.product(range(n), repeat=3):
        if a == p or labels[a] != labels[p] or labels[q] == labels[a]:
            continue
        if margin is None or d[a][p] - d[a][q] + margin > 0:
            triplets.append((a, p, q))
    return triplets


def _lowest_index_best(candidates, d_row, better):
    """The candidate with the best distance; ties go to the lowest index."""
    best = None
    for c in sorted(candidates):
        if best is None or better(d_row[c], d_row[best]):
            best = c
    return best


def bf_batch_hard(d, labels):
    n = len(labels)
    triplets = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [q for q in range(n) if labels[q] != labels[a]]
        if positives and negatives:
            p = _lowest_index_best(positives, d[a], lambda x, y: x > y)
            q = _lowest_index_best(negatives, d[a], lambda x, y: x < y)
            triplets.append((a, p, q))
    return triplets


def bf_semi_hard(d, labels, margin, fallback="drop"):
    n = len(labels)
    triplets = []
    for a, p in itertools.product(range(n), repeat=2):
        if a == p or labels[a] != labels[p]:
            continue
        negatives = [q for q in range(n) if labels[q] != labels[a]]
        if not negatives:
            continue
        d_ap = d[a][p]
        semi_hard = [q for q in negatives if d_ap < d[a][q] < d_ap + margin]
        farther = [q for q in negatives if d[a][q] > d_ap]
        if semi_hard:
            triplets.append((a, p, _lowest_index_best(semi_hard, d[a], lambda x, y: x < y)))
        elif fallback == "drop":
            continue
        elif farther:
            triplets.append((a, p, _lowest_index_best(farther, d[a], lambda x, y: x < y)))
        else:
            triplets.append((a, p, _lowest_index_best(negatives, d[a], lambda x, y: x > y)))
    return triplets


def farthest_fallback_ties(d, labels) -> int:
    """Positive pairs whose fallback is the farthest negative, tied with another."""
    n, ties = len(labels), 0
    for a, p in itertools.product(range(n), repeat=2):
        negatives = [d[a][q] for q in range(n) if labels[q] != labels[a]]
        if a == p or labels[a] != labels[p] or not negatives:
            continue
        if max(negatives) <= d[a][p] and negatives.count(max(negatives)) > 1:
            ties += 1
    return ties


def tuples(*indices: Tensor) -> list[tuple[int, ...]]:
    return list(zip(*(t.tolist() for t in indices), strict=True))


def assert_index_tensors(out: tuple[Tensor, ...], device: torch.device) -> None:
    assert len(out) == 3
    for t in out:
        assert t.dtype == torch.long
        assert t.dim() == 1 and t.shape == out[0].shape
        assert t.device == device
        assert not t.requires_grad and t.grad_fn is None


# (call the miner, call the brute force on the distance matrix and labels)
MINERS = {
    "all_pairs": (lambda e, y, dist: M.all_pairs(e, y), bf_all_pairs),
    "hard_pairs": (lambda e, y, dist: M.hard_pairs(e, y, distance=dist), bf_hard_pairs),
    "batch_all": (lambda e, y, dist: M.batch_all_triplets(e, y, distance=dist), bf_batch_all),
    **{
        f"batch_all margin={m}": (
            lambda e, y, dist, m=m: M.batch_all_triplets(e, y, margin=m, distance=dist),
            lambda d, y, m=m: bf_batch_all(d, y, m),
        )
        for m in MARGINS
    },
    "batch_hard": (lambda e, y, dist: M.batch_hard_triplets(e, y, distance=dist), bf_batch_hard),
    **{
        f"semi_hard {fallback} margin={m}": (
            lambda e, y, dist, m=m, f=fallback: M.semi_hard_triplets(
                e, y, margin=m, distance=dist, fallback=f
            ),
            lambda d, y, m=m, f=fallback: bf_semi_hard(d, y, m, f),
        )
        for fallback in ("drop", "tensorflow")
        for m in MARGINS
    },
}


# --- 1. miners against the brute force ------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCE_NAMES)
@pytest.mark.parametrize("miner", list(MINERS))
def test_miner_matches_brute_force(miner, distance):
    mine, brute_force = MINERS[miner]
    for name, emb, labels in all_batches():
        out = mine(emb, labels, distance)
        assert_index_tensors(out, emb.device)
        expected = brute_force(matrix(emb, distance), as_labels(labels))
        actual = tuples(*out)
        assert sorted(actual) == sorted(expected), name
        assert len(set(actual)) == len(actual), name


def test_tied_batches_have_ties():
    """The integer batches repeat distances, down to the semi-hard fallback's farthest."""
    tied_rows = farthest_ties = 0
    for case in TIED_CASES:
        emb, labels = tied_batch(*case)
        for row in matrix(emb, "euclidean"):
            tied_rows += len(set(row)) < len(row)
        farthest_ties += farthest_fallback_ties(matrix(emb, "euclidean"), as_labels(labels))
    assert tied_rows > 100
    assert farthest_ties > 5


def test_all_pairs_order_is_row_major_upper_triangle():
    emb, labels = random_batch(3, 7, 3)
    i, j, y = M.all_pairs(emb, labels)
    assert tuples(i, j, y) == bf_all_pairs(None, as_labels(labels))
    assert len(i) == 7 * 6 // 2


@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_batch_hard_one_triplet_per_valid_anchor_in_order(distance):
    for name, emb, labels in all_batches():
        a, p, n = M.batch_hard_triplets(emb, labels, distance=distance)
        assert a.tolist() == sorted(set(a.tolist())), name
        assert bool((labels[a] == labels[p]).all() & (a != p).all()), name
        assert bool((labels[a] != labels[n]).all()), name


def test_label_masks_match_brute_force():
    for name, _, labels in all_batches():
        positive, negative = M.label_masks(labels)
        assert positive.dtype == negative.dtype == torch.bool
        expected_positive, expected_negative = bf_label_masks(as_labels(labels))
        assert positive.tolist() == expected_positive, name
        assert negative.tolist() == expected_negative, name


def test_docstring_examples_by_hand():
    """The worked examples of the docstrings, checked against the brute force as well."""
    emb = torch.tensor([[0.0], [3.0], [1.0], [10.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    assert tuples(*M.hard_pairs(emb, labels)) == bf_hard_pairs(
        matrix(emb, "euclidean"), [0, 0, 1, 1]
    )
    emb = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
    a, p, n = M.semi_hard_triplets(emb, torch.tensor([0, 0, 1, 1]), margin=1.0)
    assert tuples(a, p, n) == [(0, 1, 2), (3, 2, 1)]


@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_distance_matrix_agrees_with_reference(distance):
    for name, emb, _ in all_batches()[::3]:
        rows = ref.as_rows(emb)
        expected = [[ref.distance(u, v, distance) for v in rows] for u in rows]
        torch.testing.assert_close(
            distance_matrix(emb, distance=distance),
            torch.tensor(expected, dtype=torch.float64),
            rtol=1e-9,
            atol=1e-9,
            msg=name,
        )


@pytest.mark.parametrize(
    "mine",
    [
        lambda e, y: M.hard_pairs(e, y),
        lambda e, y: M.batch_all_triplets(e, y),
        lambda e, y: M.batch_all_triplets(e, y, margin=0.5),
        lambda e, y: M.batch_hard_triplets(e, y),
        lambda e, y: M.semi_hard_triplets(e, y, margin=0.5),
        lambda e, y: M.semi_hard_triplets(e, y, margin=0.5, fallback="tensorflow"),
    ],
    ids=["hard_pairs", "batch_all", "batch_all_margin", "batch_hard", "semi_drop", "semi_tf"],
)
@pytest.mark.parametrize(
    "labels",
    [[0], [0, 0, 0, 0], [0, 1, 2, 3], [3, 1, 7, 0, 5]],
    ids=["single sample", "single class", "all singletons", "all singletons 5"],
)
def test_nothing_to_mine_gives_empty_long_tensors(mine, labels):
    emb = random_batch(0, len(labels), 1)[0].float().requires_grad_()
    out = mine(emb, torch.tensor(labels))
    assert_index_tensors(out, emb.device)
    assert all(t.numel() == 0 for t in out)


def test_hard_pairs_without_positives_or_negatives_is_empty():
    emb = random_batch(0, 4, 1)[0]
    for labels in ([0, 0, 0, 0], [0, 1, 2, 3]):
        assert all(t.numel() == 0 for t in M.hard_pairs(emb, torch.tensor(labels)))
    assert [t.numel() for t in M.all_pairs(emb[:1], torch.tensor([0]))] == [0, 0, 0]


def test_semi_hard_tensorflow_farthest_tie_goes_to_lowest_index():
    # anchor 0 at 0 with its positive at 5: no negative is farther than 5, and the two
    # negatives (at 1 and -1) tie for the farthest
    emb = torch.tensor([[0.0], [5.0], [1.0], [-1.0]], dtype=torch.float64)
    a, p, n = M.semi_hard_triplets(
        emb, torch.tensor([0, 0, 1, 1]), margin=0.5, fallback="tensorflow"
    )
    assert tuples(a, p, n) == [(0, 1, 2), (1, 0, 3), (2, 3, 1), (3, 2, 1)]


# --- 2. no gradient, dtype, device, half precision -----------------------------------


ALL_MINER_CALLS = {name: mine for name, (mine, _) in MINERS.items()}


@pytest.mark.parametrize("miner", list(ALL_MINER_CALLS))
def test_miners_take_no_gradient(miner):
    emb, labels = random_batch(1, 9, 3)
    emb.requires_grad_()
    out = ALL_MINER_CALLS[miner](emb, labels, "euclidean")
    assert_index_tensors(out, emb.device)
    assert emb.grad is None
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("miner", list(ALL_MINER_CALLS))
def test_miners_half_precision_mine_the_float32_values(miner, dtype):
    emb, labels = random_batch(2, 10, 3)
    low = emb.to(dtype)
    out = ALL_MINER_CALLS[miner](low, labels, "euclidean")
    assert_index_tensors(out, low.device)
    expected = ALL_MINER_CALLS[miner](low.float(), labels, "euclidean")
    assert tuples(*out) == tuples(*expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("miner", list(ALL_MINER_CALLS))
def test_miners_on_cuda_match_cpu(miner):
    emb, labels = random_batch(4, 10, 3)
    out = ALL_MINER_CALLS[miner](emb.cuda(), labels.cuda(), "euclidean")
    assert_index_tensors(out, emb.cuda().device)
    assert tuples(*(t.cpu() for t in out)) == tuples(
        *ALL_MINER_CALLS[miner](emb, labels, "euclidean")
    )


# --- 3. composition: miner + indexed loss == label-form loss -------------------------


def weights_for(out: Tensor, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(out.shape, generator=generator, dtype=out.dtype)


def grad(out: Tensor, emb: Tensor) -> Tensor:
    """Gradient of the loss (or of a fixed random weighting of its items) wrt emb."""
    scalar = out if out.dim() == 0 else (out * weights_for(out)).sum()
    return torch.autograd.grad(scalar, emb)[0]


def assert_same(label_form: Tensor, indexed: Tensor, emb: Tensor, *, grads: bool = True) -> None:
    assert label_form.shape == indexed.shape
    assert label_form.dtype == indexed.dtype
    torch.testing.assert_close(label_form, indexed, **TOL)
    if grads:
        torch.testing.assert_close(grad(label_form, emb), grad(indexed, emb), **TOL)


def indexed_all_pairs(emb, labels, **kwargs):
    i, j, y = M.all_pairs(emb, labels)
    return F.contrastive_loss(emb[i], emb[j], y, **kwargs)


def per_anchor(emb: Tensor, anchors: Tensor, per_triplet: Tensor) -> Tensor:
    return emb.new_zeros(emb.shape[0]).index_add(0, anchors, per_triplet)


def indexed_batch_all(emb, labels, *, margin, distance, reduction, mean_over="all"):
    mined_margin = margin if (reduction == "mean" and mean_over == "nonzero") else None
    a, p, n = M.batch_all_triplets(emb, labels, margin=mined_margin, distance=distance)
    if a.numel() == 0:  # nothing with a positive loss: the label form gives 0
        zeros = emb.sum(dim=1) * 0.0
        return zeros if reduction == "none" else zeros.sum()
    inner = "none" if reduction == "none" else reduction
    out = F.triplet_loss(emb[a], emb[p], emb[n], margin=margin, distance=distance, reduction=inner)
    return per_anchor(emb, a, out) if reduction == "none" else out


def indexed_batch_hard(emb, labels, *, margin, distance, reduction):
    a, p, n = M.batch_hard_triplets(emb, labels, distance=distance)
    out = F.triplet_loss(
        emb[a], emb[p], emb[n], margin=margin, distance=distance, reduction=reduction
    )
    return per_anchor(emb, a, out) if reduction == "none" else out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_all_pairs_contrastive_equals_indexed(distance, reduction, legacy, seed):
    emb, labels = random_batch(seed, 5 + 2 * seed, 3)
    emb = (emb * 0.5).requires_grad_()
    kwargs = dict(
        margin=(0.5, 1.0, 2.0)[seed], distance=distance, reduction=reduction, caffe_legacy=legacy
    )
    assert_same(
        F.all_pairs_contrastive_loss(emb, labels, **kwargs),
        indexed_all_pairs(emb, labels, **kwargs),
        emb,
    )


@pytest.mark.parametrize("margin", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_all_pairs_contrastive_equals_indexed_with_ties(distance, reduction, legacy, margin):
    for case in TIED_CASES[::4]:
        emb, labels = tied_batch(*case)
        emb.requires_grad_()
        kwargs = dict(margin=margin, distance=distance, reduction=reduction, caffe_legacy=legacy)
        assert_same(
            F.all_pairs_contrastive_loss(emb, labels, **kwargs),
            indexed_all_pairs(emb, labels, **kwargs),
            emb,
        )


BATCH_ALL_REDUCTIONS = [("mean", "all"), ("mean", "nonzero"), ("sum", "all"), ("none", "all")]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("reduction,mean_over", BATCH_ALL_REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_batch_all_equals_indexed(distance, reduction, mean_over, margin, seed):
    emb, labels = random_batch(10 + seed, 8 + 3 * seed, 3)
    emb.requires_grad_()
    kwargs = dict(margin=margin, distance=distance, reduction=reduction)
    assert_same(
        F.batch_all_triplet_loss(emb, labels, mean_over=mean_over, **kwargs),
        indexed_batch_all(emb, labels, mean_over=mean_over, **kwargs),
        emb,
    )


def has_hinge_kink(emb: Tensor, labels: Tensor, margin: float, distance: str) -> bool:
    d = matrix(emb.detach(), distance)
    triplets = bf_batch_all(d, as_labels(labels))
    return any(d[a][p] - d[a][n] + margin == 0 for a, p, n in triplets)


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("reduction,mean_over", BATCH_ALL_REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_batch_all_equals_indexed_with_ties(distance, reduction, mean_over, margin):
    kinks = 0
    for case in TIED_CASES[::3]:
        emb, labels = tied_batch(*case)
        emb.requires_grad_()
        kwargs = dict(margin=margin, distance=distance, reduction=reduction)
        # at a hinge of exactly 0 both gradients are valid subgradients, not equal ones
        kink = has_hinge_kink(emb, labels, margin, distance)
        kinks += kink
        assert_same(
            F.batch_all_triplet_loss(emb, labels, mean_over=mean_over, **kwargs),
            indexed_batch_all(emb, labels, mean_over=mean_over, **kwargs),
            emb,
            grads=not kink,
        )
    if margin == 0.3:  # integer distances never meet a hinge at 0.3
        assert kinks == 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_batch_hard_equals_indexed(distance, reduction, margin, seed):
    # a singleton class: its anchor has no positive and is left out
    emb, labels = random_batch(20 + seed, 9, 1)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 0, 3, 2])
    emb.requires_grad_()
    kwargs = dict(margin=margin, distance=distance, reduction=reduction)
    assert_same(
        F.batch_hard_triplet_loss(emb, labels, **kwargs),
        indexed_batch_hard(emb, labels, **kwargs),
        emb,
    )


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_batch_hard_equals_indexed_with_ties(distance, reduction, margin):
    """Ties for the hardest go to the lowest index in both forms, gradients included."""
    for case in TIED_CASES:
        emb, labels = tied_batch(*case)
        if M.batch_hard_triplets(emb, labels)[0].numel() == 0:
            continue
        emb.requires_grad_()
        kwargs = dict(margin=margin, distance=distance, reduction=reduction)
        assert_same(
            F.batch_hard_triplet_loss(emb, labels, **kwargs),
            indexed_batch_hard(emb, labels, **kwargs),
            emb,
        )


def test_batch_hard_gradient_at_tied_hardest_positive_equals_indexed():
    # anchor 0 at 0: its positives at 1 and -1 tie for the farthest
    emb = torch.tensor([[0.0], [1.0], [-1.0], [3.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1])
    kwargs = dict(margin=5.0, distance="euclidean", reduction="sum")
    assert_same(
        F.batch_hard_triplet_loss(emb, labels, **kwargs),
        indexed_batch_hard(emb, labels, **kwargs),
        emb,
    )


# --- 4. label-form losses against triple loops over Python floats --------------------


def bf_reduce(values: list[float], reduction: str, count: int) -> float | list[float]:
    if reduction == "none":
        return values
    total = sum(values)
    return total / max(count, 1) if reduction == "mean" else total


def bf_all_pairs_contrastive(emb, labels, *, margin, distance, reduction, legacy):
    rows, y = ref.as_rows(emb), as_labels(labels)
    per_pair = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            d = ref.distance(rows[i], rows[j], distance)
            far = max(margin - d * d, 0.0) if legacy else max(margin - d, 0.0) ** 2
            per_pair.append(0.5 * (d * d if y[i] == y[j] else far))
    return bf_reduce(per_pair, reduction, len(per_pair))


def bf_batch_all_loss(emb, labels, *, margin, distance, reduction, mean_over="all"):
    rows, y = ref.as_rows(emb), as_labels(labels)
    n = len(rows)
    sums, hinges = [0.0] * n, []
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if a != p and y[a] == y[p] and y[q] != y[a]:
                    d_ap = ref.distance(rows[a], rows[p], distance)
                    d_an = ref.distance(rows[a], rows[q], distance)
                    hinge = max(d_ap - d_an + margin, 0.0)
                    hinges.append(hinge)
                    sums[a] += hinge
    count = len(hinges) if mean_over == "all" else sum(h > 0 for h in hinges)
    return (
        bf_reduce(sums, reduction, count)
        if reduction == "none"
        else bf_reduce(hinges, reduction, count)
    )


def bf_batch_hard_loss(emb, labels, *, margin, distance, reduction):
    rows, y = ref.as_rows(emb), as_labels(labels)
    n = len(rows)
    per_anchor_loss, valid = [], 0
    for a in range(n):
        d = [ref.distance(rows[a], rows[q], distance) for q in range(n)]
        positives = [d[p] for p in range(n) if p != a and y[p] == y[a]]
        negatives = [d[q] for q in range(n) if y[q] != y[a]]
        if positives and negatives:
            valid += 1
            per_anchor_loss.append(max(max(positives) - min(negatives) + margin, 0.0))
        else:
            per_anchor_loss.append(0.0)
    return bf_reduce(per_anchor_loss, reduction, valid)


def assert_matches(actual: Tensor, expected, *, tol: float = 1e-9, msg: str = "") -> None:
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected_t.shape, msg
    torch.testing.assert_close(actual.double(), expected_t, rtol=tol, atol=tol, msg=msg)


def reference_batches() -> list[tuple[str, Tensor, Tensor]]:
    return all_batches()[::4] + special_batches()


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_all_pairs_contrastive_matches_triple_loop(distance, reduction, legacy):
    for name, emb, labels in reference_batches():
        kwargs = dict(margin=1.5, distance=distance, reduction=reduction)
        actual = F.all_pairs_contrastive_loss(emb, labels, caffe_legacy=legacy, **kwargs)
        expected = bf_all_pairs_contrastive(emb, labels, legacy=legacy, **kwargs)
        assert_matches(actual, expected, msg=name)


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("reduction,mean_over", BATCH_ALL_REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_batch_all_matches_triple_loop(distance, reduction, mean_over, margin):
    for name, emb, labels in reference_batches():
        kwargs = dict(margin=margin, distance=distance, reduction=reduction, mean_over=mean_over)
        actual = F.batch_all_triplet_loss(emb, labels, **kwargs)
        assert_matches(actual, bf_batch_all_loss(emb, labels, **kwargs), msg=name)


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_batch_hard_matches_triple_loop(distance, reduction, margin):
    for name, emb, labels in reference_batches():
        kwargs = dict(margin=margin, distance=distance, reduction=reduction)
        actual = F.batch_hard_triplet_loss(emb, labels, **kwargs)
        assert_matches(actual, bf_batch_hard_loss(emb, labels, **kwargs), msg=name)


def test_worked_example_by_hand():
    """Docstring batch, by hand: d = |x|, labels [0, 0, 1, 1], margin 1."""
    emb = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # triplets (a, p, n): hinge = d(a,p) - d(a,n) + 1, clamped at 0
    # (0,1,2) 0.5  (0,1,3) 0    (1,0,2) 1.5  (1,0,3) 0
    # (2,3,0) 1    (2,3,1) 2    (3,2,0) 0    (3,2,1) 0.5
    assert F.batch_all_triplet_loss(emb, labels, margin=1.0).item() == pytest.approx(5.5 / 8)
    assert F.batch_all_triplet_loss(
        emb, labels, margin=1.0, mean_over="nonzero"
    ).item() == pytest.approx(5.5 / 5)
    torch.testing.assert_close(
        F.batch_all_triplet_loss(emb, labels, margin=1.0, reduction="none"),
        torch.tensor([0.5, 1.5, 3.0, 0.5]),
    )


# --- 5. gradcheck -----------------------------------------------------------------------


GRADCHECK_LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2])


def gradcheck_input(seed: int) -> Tensor:
    return random_batch(seed, 7, 1)[0].requires_grad_()


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_gradcheck_all_pairs_contrastive(distance, reduction, legacy):
    def fn(emb):
        return F.all_pairs_contrastive_loss(
            emb,
            GRADCHECK_LABELS,
            margin=1.5,
            distance=distance,
            reduction=reduction,
            caffe_legacy=legacy,
        )

    assert torch.autograd.gradcheck(fn, (gradcheck_input(30),))


@pytest.mark.parametrize("reduction,mean_over", BATCH_ALL_REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_gradcheck_batch_all(distance, reduction, mean_over):
    def fn(emb):
        return F.batch_all_triplet_loss(
            emb,
            GRADCHECK_LABELS,
            margin=0.3,
            distance=distance,
            reduction=reduction,
            mean_over=mean_over,
        )

    assert torch.autograd.gradcheck(fn, (gradcheck_input(31),))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_gradcheck_batch_hard(distance, reduction):
    def fn(emb):
        return F.batch_hard_triplet_loss(
            emb, GRADCHECK_LABELS, margin=0.3, distance=distance, reduction=reduction
        )

    assert torch.autograd.gradcheck(fn, (gradcheck_input(32),))


# --- 6. zero losses that stay connected to the graph ---------------------------------


ZERO_BATCHES = {
    "single sample": (1, [0]),
    "single class": (5, [2, 2, 2, 2, 2]),
    "all singletons": (4, [3, 0, 2, 1]),
}


def assert_connected_zero(out: Tensor, emb: Tensor) -> None:
    assert bool((out == 0).all())
    assert out.requires_grad
    out.sum().backward()
    assert emb.grad is not None
    assert bool(torch.isfinite(emb.grad).all())
    assert bool((emb.grad == 0).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", ["batch_all", "batch_all nonzero", "batch_hard"])
@pytest.mark.parametrize("batch", list(ZERO_BATCHES))
def test_triplet_losses_without_triplet_are_connected_zeros(batch, loss, reduction, dtype):
    n, labels = ZERO_BATCHES[batch]
    for distance in DISTANCE_NAMES:
        emb = random_batch(5, n, 1)[0].to(dtype).requires_grad_()
        kwargs = dict(margin=0.5, distance=distance, reduction=reduction)
        if loss == "batch_hard":
            out = F.batch_hard_triplet_loss(emb, torch.tensor(labels), **kwargs)
        else:
            mean_over = "nonzero" if loss.endswith("nonzero") else "all"
            out = F.batch_all_triplet_loss(emb, torch.tensor(labels), mean_over=mean_over, **kwargs)
        assert out.shape == ((n,) if reduction == "none" else ()), distance
        assert out.dtype == (torch.float32 if dtype == torch.float16 else dtype)
        assert_connected_zero(out, emb)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("legacy", [False, True])
def test_all_pairs_contrastive_single_sample_is_connected_zero(reduction, distance, legacy, dtype):
    emb = torch.randn(1, 3, dtype=dtype).requires_grad_()
    out = F.all_pairs_contrastive_loss(
        emb, torch.tensor([0]), distance=distance, reduction=reduction, caffe_legacy=legacy
    )
    assert out.shape == ((0,) if reduction == "none" else ())
    assert_connected_zero(out, emb)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_batch_all_nonzero_mean_with_every_hinge_zero_is_connected_zero(reduction):
    # two classes far apart: every triplet is satisfied with margin 0.5
    emb = torch.tensor([[0.0], [0.1], [10.0], [10.2]], dtype=torch.float64, requires_grad=True)
    out = F.batch_all_triplet_loss(
        emb, torch.tensor([0, 0, 1, 1]), margin=0.5, reduction=reduction, mean_over="nonzero"
    )
    assert_connected_zero(out, emb)


def test_all_singletons_all_pairs_is_all_dissimilar():
    emb, _ = random_batch(6, 5, 1)
    emb = emb * 0.2
    labels = torch.arange(5)
    out = F.all_pairs_contrastive_loss(emb, labels, margin=2.0, reduction="none")
    assert bool((out > 0).all())  # every pair is a negative pair inside the margin
    assert M.all_pairs(emb, labels)[2].tolist() == [0] * 10


def test_single_class_all_pairs_is_all_similar():
    emb, _ = random_batch(6, 5, 1)
    out = F.all_pairs_contrastive_loss(emb, torch.zeros(5, dtype=torch.long), reduction="none")
    d = distance_matrix(emb)
    i, j = torch.triu_indices(5, 5, offset=1)
    torch.testing.assert_close(out, 0.5 * d[i, j] ** 2)


# --- 7. properties ------------------------------------------------------------------------


@st.composite
def labelled_batches(draw, min_size=1, max_size=8):
    n = draw(st.integers(min_size, max_size))
    dim = draw(st.integers(1, 3))
    # dyadic coordinates: distances exact in float64 (except cosine), ties frequent
    values = draw(st.lists(st.integers(-8, 8), min_size=n * dim, max_size=n * dim))
    emb = torch.tensor(values, dtype=torch.float64).reshape(n, dim) / 4
    labels = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    return emb, labels


def all_label_forms(emb, labels, margin, distance):
    """Every label-form loss and reduction, as a dict of outputs."""
    out = {}
    for reduction in REDUCTIONS:
        out["pairs", reduction] = F.all_pairs_contrastive_loss(
            emb, labels, margin=margin, distance=distance, reduction=reduction
        )
        out["hard", reduction] = F.batch_hard_triplet_loss(
            emb, labels, margin=margin, distance=distance, reduction=reduction
        )
        for mean_over in ("all", "nonzero"):
            out["all", reduction, mean_over] = F.batch_all_triplet_loss(
                emb,
                labels,
                margin=margin,
                distance=distance,
                reduction=reduction,
                mean_over=mean_over,
            )
    return out


PROPERTY_TOL = {"rtol": 1e-9, "atol": 1e-9}


@settings(max_examples=40, deadline=None)
@given(
    batch=labelled_batches(),
    data=st.data(),
    margin=st.sampled_from(MARGINS),
    distance=st.sampled_from(DISTANCE_NAMES),
)
def test_label_forms_invariant_to_permuting_the_batch(batch, data, margin, distance):
    emb, labels = batch
    perm = torch.tensor(data.draw(st.permutations(range(emb.shape[0]))), dtype=torch.long)
    before = all_label_forms(emb, labels, margin, distance)
    after = all_label_forms(emb[perm], labels[perm], margin, distance)
    for key, value in before.items():
        if key == ("pairs", "none"):  # pairs come in another order: compare the multisets
            torch.testing.assert_close(
                after[key].sort().values, value.sort().values, **PROPERTY_TOL
            )
        elif "none" in key:  # one value per anchor: permuted with the batch
            torch.testing.assert_close(after[key], value[perm], **PROPERTY_TOL)
        else:
            torch.testing.assert_close(after[key], value, **PROPERTY_TOL, msg=str(key))


@settings(max_examples=40, deadline=None)
@given(
    batch=labelled_batches(),
    margin=st.sampled_from(MARGINS),
    distance=st.sampled_from(DISTANCE_NAMES),
)
def test_label_forms_invariant_to_relabelling(batch, margin, distance):
    emb, labels = batch
    before = all_label_forms(emb, labels, margin, distance)
    after = all_label_forms(emb, labels * 7 + 3, margin, distance)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    # the miners too
    for mine in ALL_MINER_CALLS.values():
        assert tuples(*mine(emb, labels, distance)) == tuples(*mine(emb, labels * 7 + 3, distance))


@settings(max_examples=40, deadline=None)
@given(
    batch=labelled_batches(),
    margin=st.sampled_from(MARGINS),
    distance=st.sampled_from(DISTANCE_NAMES),
)
def test_label_forms_non_negative_and_ordered(batch, margin, distance):
    emb, labels = batch
    out = all_label_forms(emb, labels, margin, distance)
    for key, value in out.items():
        assert bool((value >= 0).all()), key
    # dropping the zero hinges from the mean can only raise it
    assert out["all", "mean", "nonzero"] >= out["all", "mean", "all"] - 1e-12
    # "sum" of batch-all is the sum of the per-anchor sums
    torch.testing.assert_close(out["all", "sum", "all"], out["all", "none", "all"].sum())


@settings(max_examples=40, deadline=None)
@given(
    batch=labelled_batches(min_size=2),
    margin=st.sampled_from(MARGINS),
    distance=st.sampled_from(DISTANCE_NAMES),
)
def test_batch_hard_anchor_loss_bounds_each_of_its_triplets(batch, margin, distance):
    emb, labels = batch
    hardest = F.batch_hard_triplet_loss(
        emb, labels, margin=margin, distance=distance, reduction="none"
    )
    per_anchor_sum = F.batch_all_triplet_loss(
        emb, labels, margin=margin, distance=distance, reduction="none"
    )
    d = matrix(emb, distance)
    y = as_labels(labels)
    counts = [0] * len(y)
    for a, p, n in bf_batch_all(d, y):
        counts[a] += 1
        assert hardest[a].item() >= max(d[a][p] - d[a][n] + margin, 0.0) - 1e-12
    for a, count in enumerate(counts):  # hence >= the anchor's mean triplet loss
        assert hardest[a].item() * count >= per_anchor_sum[a].item() - 1e-9


@settings(max_examples=30, deadline=None)
@given(
    num_classes=st.integers(2, 4),
    per_class=st.integers(2, 4),
    seed=st.integers(0, 2**16),
    margin=st.sampled_from(MARGINS),
    distance=st.sampled_from(DISTANCE_NAMES),
)
def test_batch_hard_mean_bounds_batch_all_mean_for_balanced_classes(
    num_classes, per_class, seed, margin, distance
):
    """With P classes of K samples, every anchor has (K-1)(N-K) triplets: the batch-all
    mean is the mean over anchors of each anchor's mean hinge, which its hardest bounds."""
    n = num_classes * per_class
    emb = random_batch(seed, n, 1)[0]
    labels = torch.arange(n) % num_classes
    hard = F.batch_hard_triplet_loss(emb, labels, margin=margin, distance=distance)
    every = F.batch_all_triplet_loss(emb, labels, margin=margin, distance=distance)
    assert hard.item() >= every.item() - 1e-12


# --- 8. bad input ---------------------------------------------------------------------------


ALL_CALLS = {
    "all_pairs": lambda e, y, **kw: M.all_pairs(e, y),
    "hard_pairs": lambda e, y, **kw: M.hard_pairs(e, y, **kw),
    "batch_all_triplets": lambda e, y, **kw: M.batch_all_triplets(e, y, **kw),
    "batch_hard_triplets": lambda e, y, **kw: M.batch_hard_triplets(e, y, **kw),
    "semi_hard_triplets": lambda e, y, **kw: M.semi_hard_triplets(e, y, margin=0.2, **kw),
    "all_pairs_contrastive_loss": lambda e, y, **kw: F.all_pairs_contrastive_loss(e, y, **kw),
    "batch_all_triplet_loss": lambda e, y, **kw: F.batch_all_triplet_loss(e, y, margin=0.2, **kw),
    "batch_hard_triplet_loss": lambda e, y, **kw: F.batch_hard_triplet_loss(e, y, margin=0.2, **kw),
}
WITH_DISTANCE = [k for k in ALL_CALLS if k != "all_pairs"]
LOSSES = ["all_pairs_contrastive_loss", "batch_all_triplet_loss", "batch_hard_triplet_loss"]


def emb4() -> Tensor:
    return random_batch(0, 4, 1)[0].float()


@pytest.mark.parametrize("call", list(ALL_CALLS))
@pytest.mark.parametrize(
    "labels,error,match",
    [
        (torch.tensor([0, 1, 0]), ValueError, r"labels must have shape \(4,\).*got \(3,\)"),
        (torch.tensor([0, 1, 0, 1, 1]), ValueError, r"labels must have shape \(4,\).*got \(5,\)"),
        (torch.tensor([[0, 1, 0, 1]]), ValueError, r"labels must have shape \(4,\).*got \(1, 4\)"),
        (torch.tensor([[0], [1], [0], [1]]), ValueError, r"labels must have shape \(4,\)"),
        (
            torch.tensor([0.0, 1.0, 0.0, 1.0]),
            TypeError,
            "labels must be an integer tensor of class labels",
        ),
        ([0, 1, 0, 1], TypeError, "labels must be a torch.Tensor"),
    ],
    ids=["short", "long", "2-D row", "2-D column", "float", "list"],
)
def test_bad_labels(call, labels, error, match):
    with pytest.raises(error, match=match):
        ALL_CALLS[call](emb4(), labels)


@pytest.mark.parametrize("call", list(ALL_CALLS))
@pytest.mark.parametrize(
    "emb,labels,error,match",
    [
        (
            torch.randn(4),
            torch.tensor([0, 1, 0, 1]),
            ValueError,
            r"embeddings must be 2-D, got shape \(4,\)",
        ),
        (torch.randn(2, 2, 2), torch.tensor([0, 1]), ValueError, r"embeddings must be 2-D"),
        (
            torch.zeros(0, 3),
            torch.zeros(0, dtype=torch.long),
            ValueError,
            "embeddings must hold at least one row",
        ),
        (
            torch.zeros(4, 0),
            torch.tensor([0, 1, 0, 1]),
            ValueError,
            "embeddings must have at least one feature",
        ),
        (
            torch.ones(4, 2, dtype=torch.long),
            torch.tensor([0, 1, 0, 1]),
            TypeError,
            "embeddings must be a real floating-point",
        ),
        ([[0.0]] * 4, torch.tensor([0, 1, 0, 1]), TypeError, "embeddings must be a torch.Tensor"),
    ],
    ids=["1-D", "3-D", "empty batch", "no feature", "integer", "list"],
)
def test_bad_embeddings(call, emb, labels, error, match):
    with pytest.raises(error, match=match):
        ALL_CALLS[call](emb, labels)


@pytest.mark.parametrize("call", LOSSES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_label_form_losses_refuse_non_finite_embeddings(call, bad):
    emb = emb4()
    emb[2, 1] = bad
    with pytest.raises(ValueError, match=r"embeddings must be finite, got 1 NaN or infinite"):
        ALL_CALLS[call](emb, torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("call", WITH_DISTANCE)
@pytest.mark.parametrize("distance", ["cosine_similarity", "Euclidean", "dot", ""])
def test_unknown_distance(call, distance):
    with pytest.raises(ValueError, match=rf"distance must be one of {VALID_DISTANCES}"):
        ALL_CALLS[call](emb4(), torch.tensor([0, 1, 0, 1]), distance=distance)


@pytest.mark.parametrize("call", WITH_DISTANCE)
def test_distance_not_a_string(call):
    with pytest.raises(TypeError, match="distance must be the name of a distance"):
        ALL_CALLS[call](emb4(), torch.tensor([0, 1, 0, 1]), distance=None)


@pytest.mark.parametrize("fallback", ["semihard", "TF", "", None])
def test_unknown_fallback(fallback):
    with pytest.raises(ValueError, match=r"fallback must be one of \['drop', 'tensorflow'\]"):
        M.semi_hard_triplets(emb4(), torch.tensor([0, 1, 0, 1]), margin=0.2, fallback=fallback)


@pytest.mark.parametrize("mean_over", ["nonzero_only", "positive", "", None])
def test_unknown_mean_over(mean_over):
    with pytest.raises(ValueError, match=r"mean_over must be one of \['all', 'nonzero'\]"):
        F.batch_all_triplet_loss(
            emb4(), torch.tensor([0, 1, 0, 1]), margin=0.2, mean_over=mean_over
        )
    with pytest.raises(ValueError, match=r"mean_over must be one of \['all', 'nonzero'\]"):
        BatchAllTripletLoss(margin=0.2, mean_over=mean_over)


@pytest.mark.parametrize(
    "margin,error,match",
    [
        (-0.1, ValueError, r"margin must be >= 0, got -0.1"),
        (math.nan, ValueError, "margin must be finite"),
        (math.inf, ValueError, "margin must be finite"),
        ("0.2", TypeError, "margin must be a real number"),
        (True, TypeError, "margin must be a real number"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda m: M.batch_all_triplets(emb4(), torch.tensor([0, 1, 0, 1]), margin=m),
        lambda m: M.semi_hard_triplets(emb4(), torch.tensor([0, 1, 0, 1]), margin=m),
        lambda m: F.all_pairs_contrastive_loss(emb4(), torch.tensor([0, 1, 0, 1]), margin=m),
        lambda m: F.batch_all_triplet_loss(emb4(), torch.tensor([0, 1, 0, 1]), margin=m),
        lambda m: F.batch_hard_triplet_loss(emb4(), torch.tensor([0, 1, 0, 1]), margin=m),
        lambda m: AllPairsContrastiveLoss(margin=m),
        lambda m: BatchAllTripletLoss(margin=m),
        lambda m: BatchHardTripletLoss(margin=m),
    ],
    ids=[
        "batch_all_triplets",
        "semi_hard_triplets",
        "all_pairs_contrastive_loss",
        "batch_all_triplet_loss",
        "batch_hard_triplet_loss",
        "AllPairsContrastiveLoss",
        "BatchAllTripletLoss",
        "BatchHardTripletLoss",
    ],
)
def test_bad_margin(call, margin, error, match):
    with pytest.raises(error, match=match):
        call(margin)


@pytest.mark.parametrize("call", LOSSES)
@pytest.mark.parametrize("reduction", ["avg", "elementwise_mean", None])
def test_unknown_reduction(call, reduction):
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'sum', 'none'\]"):
        ALL_CALLS[call](emb4(), torch.tensor([0, 1, 0, 1]), reduction=reduction)


def test_caffe_legacy_must_be_bool():
    with pytest.raises(TypeError, match="caffe_legacy must be a bool"):
        F.all_pairs_contrastive_loss(emb4(), torch.tensor([0, 1, 0, 1]), caffe_legacy="yes")


MODULES = {
    "AllPairsContrastiveLoss": lambda **kw: AllPairsContrastiveLoss(**kw),
    "BatchAllTripletLoss": lambda **kw: BatchAllTripletLoss(margin=0.2, **kw),
    "BatchHardTripletLoss": lambda **kw: BatchHardTripletLoss(margin=0.2, **kw),
}


@pytest.mark.parametrize("module", list(MODULES))
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            {"distance": "cosine_similarity"},
            ValueError,
            rf"distance must be one of {VALID_DISTANCES}",
        ),
        ({"distance": 2}, TypeError, "distance must be the name of a distance"),
        ({"reduction": "avg"}, ValueError, r"reduction must be one of \['mean', 'sum', 'none'\]"),
    ],
    ids=["distance", "distance type", "reduction"],
)
def test_modules_validate_in_init(module, kwargs, error, match):
    with pytest.raises(error, match=match):
        MODULES[module](**kwargs)


def test_module_specific_validation_in_init():
    with pytest.raises(TypeError, match="caffe_legacy must be a bool"):
        AllPairsContrastiveLoss(caffe_legacy=1)
    with pytest.raises(TypeError, match="margin"):
        BatchAllTripletLoss()  # margin has no default
    with pytest.raises(TypeError, match="margin"):
        BatchHardTripletLoss()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
def test_modules_equal_functions(distance, reduction):
    emb, labels = random_batch(40, 9, 3)
    torch.testing.assert_close(
        AllPairsContrastiveLoss(
            margin=1.2, distance=distance, reduction=reduction, caffe_legacy=True
        )(emb, labels),
        F.all_pairs_contrastive_loss(
            emb, labels, margin=1.2, distance=distance, reduction=reduction, caffe_legacy=True
        ),
        rtol=0,
        atol=0,
    )
    for mean_over in ("all", "nonzero"):
        torch.testing.assert_close(
            BatchAllTripletLoss(
                margin=0.3, distance=distance, reduction=reduction, mean_over=mean_over
            )(emb, labels),
            F.batch_all_triplet_loss(
                emb, labels, margin=0.3, distance=distance, reduction=reduction, mean_over=mean_over
            ),
            rtol=0,
            atol=0,
        )
    torch.testing.assert_close(
        BatchHardTripletLoss(margin=0.3, distance=distance, reduction=reduction)(emb, labels),
        F.batch_hard_triplet_loss(emb, labels, margin=0.3, distance=distance, reduction=reduction),
        rtol=0,
        atol=0,
    )


# --- 9. a large batch ----------------------------------------------------------------------


@pytest.mark.slow
def test_large_batch_all_equals_indexed():
    """N = 512 in 16 classes of 32: 512 * 31 * 480 = 7,618,560 listed triplets."""
    emb, _ = random_batch(50, 512, 1, dim=4)
    labels = torch.arange(512) % 16
    a, p, n = M.batch_all_triplets(emb, labels)
    assert a.numel() == 512 * 31 * 480
    total = 0.0
    step = 1 << 20  # the indexed form in slices, to keep memory small
    for start in range(0, a.numel(), step):
        s = slice(start, start + step)
        total += F.triplet_loss(emb[a[s]], emb[p[s]], emb[n[s]], margin=0.5, reduction="sum").item()
    label_form = F.batch_all_triplet_loss(emb, labels, margin=0.5)
    assert label_form.item() == pytest.approx(total / a.numel(), rel=1e-9)


def test_miners_refuse_nan_embeddings():
    emb = torch.tensor([[0.0], [float("nan")], [1.0], [2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    for miner in (M.all_pairs, M.hard_pairs, M.batch_hard_triplets, M.batch_all_triplets):
        with pytest.raises(ValueError, match="embeddings must be finite"):
            miner(emb, labels)


@pytest.mark.parametrize(
    ("labels", "error"),
    [
        (torch.tensor([[0, 1]]), ValueError),
        (torch.tensor([0.0, 1.0]), TypeError),
        ([0, 1], ValueError),
    ],
)
def test_label_masks_checks_its_labels(labels, error):
    with pytest.raises(error, match="labels"):
        M.label_masks(labels)
