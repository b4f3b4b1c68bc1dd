"""The losses against naive references, worked numbers, gradients and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import contrastkit.functional as F
import reference as ref

DISTANCE_NAMES = ["euclidean", "squared_euclidean", "cosine", "manhattan"]
REDUCTIONS = ["mean", "sum", "none"]


def randn(*shape, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype)


def assert_matches(actual: torch.Tensor, expected, *, tol=1e-10):
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected_t.shape
    torch.testing.assert_close(actual.double(), expected_t, rtol=tol, atol=tol)


# --- against the naive references -------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCE_NAMES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_matches_reference(distance, reduction, legacy):
    x1, x2 = randn(9, 4, seed=1) * 0.5, randn(9, 4, seed=2) * 0.5
    y = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0, 0])
    actual = F.contrastive_loss(
        x1, x2, y, margin=1.3, distance=distance, reduction=reduction, caffe_legacy=legacy
    )
    expected = ref.contrastive(
        x1, x2, y, margin=1.3, dist=distance, legacy=legacy, reduction=reduction
    )
    assert_matches(actual, expected)


def test_contrastive_soft_labels_match_reference():
    x1, x2 = randn(6, 3, seed=3), randn(6, 3, seed=4)
    y = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.1], dtype=torch.float64)
    assert_matches(
        F.contrastive_loss(x1, x2, y, margin=2.0), ref.contrastive(x1, x2, y, margin=2.0)
    )


@pytest.mark.parametrize("distance", DISTANCE_NAMES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_matches_reference(distance, reduction):
    a, p, n = randn(7, 5, seed=5), randn(7, 5, seed=6), randn(7, 5, seed=7)
    actual = F.triplet_loss(a, p, n, margin=0.8, distance=distance, reduction=reduction)
    expected = ref.triplet(a, p, n, margin=0.8, dist=distance, reduction=reduction)
    assert_matches(actual, expected)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_info_nce_matches_reference(normalize, symmetric, reduction):
    q, k = randn(6, 4, seed=8), randn(6, 4, seed=9)
    kwargs = dict(temperature=0.3, normalize=normalize, symmetric=symmetric, reduction=reduction)
    assert_matches(F.info_nce(q, k, **kwargs), ref.info_nce(q, k, **kwargs))


@pytest.mark.parametrize("negatives_shape", [(5, 4), (6, 3, 4), (0, 4), (6, 0, 4)])
@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce_extra_negatives_match_reference(negatives_shape, normalize):
    q, k, negatives = randn(6, 4, seed=10), randn(6, 4, seed=11), randn(*negatives_shape, seed=12)
    kwargs = dict(temperature=0.5, normalize=normalize, reduction="none")
    expected = ref.info_nce(q, k, negatives=negatives, **kwargs)
    assert_matches(F.info_nce(q, k, negatives=negatives, **kwargs), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_nt_xent_matches_reference(reduction, temperature):
    z1, z2 = randn(5, 3, seed=13), randn(5, 3, seed=14)
    actual = F.nt_xent(z1, z2, temperature=temperature, reduction=reduction)
    expected = ref.nt_xent(z1, z2, temperature=temperature, reduction=reduction)
    assert_matches(actual, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 0, 1, 2, 2, 0, 3],  # a singleton class (3) and classes of 2 and 3
        [5, 5, 5, 5, 5, 5, 5, 5],  # one class
        [0, 1, 2, 3, 4, 5, 6, 0],  # mostly singletons
    ],
)
def test_supcon_matches_reference(reduction, normalize, labels):
    emb, labels = randn(8, 4, seed=15), torch.tensor(labels)
    kwargs = dict(temperature=0.7, normalize=normalize, reduction=reduction)
    assert_matches(F.supcon(emb, labels, **kwargs), ref.supcon(emb, labels, **kwargs))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_similarity_loss_matches_reference(reduction):
    x1, x2 = randn(6, 4, seed=16), randn(6, 4, seed=17)
    score = torch.tensor([1.0, -1.0, 0.0, 0.5, -0.3, 0.9], dtype=torch.float64)
    actual = F.cosine_similarity_loss(x1, x2, score, reduction=reduction)
    assert_matches(actual, ref.cosine_similarity_mse(x1, x2, score, reduction=reduction))


# --- worked numbers ---------------------------------------------------------------


def test_contrastive_mean_is_caffe_formula():
    # L = 1/(2N) sum [y d^2 + (1 - y) max(m - d, 0)^2] with d = 0.5, 1.0, 0.2, 3.0
    x1 = torch.zeros(4, 1)
    x2 = torch.tensor([[0.5], [1.0], [0.2], [3.0]])
    y = torch.tensor([1, 1, 0, 0])
    expected = (0.25 + 1.0 + 0.8**2 + 0.0) / (2 * 4)
    assert F.contrastive_loss(x1, x2, y, margin=1.0).item() == pytest.approx(expected)
    assert F.contrastive_loss(x1, x2, y, margin=1.0, reduction="sum").item() == pytest.approx(
        expected * 4
    )


def test_contrastive_caffe_legacy_puts_the_margin_on_d_squared():
    x1, x2 = torch.zeros(1, 1), torch.tensor([[0.5]])
    y = torch.tensor([0])
    # legacy: max(m - d^2, 0) / 2 = (1 - 0.25) / 2; default: max(m - d, 0)^2 / 2 = 0.25 / 2
    assert F.contrastive_loss(x1, x2, y, caffe_legacy=True).item() == pytest.approx(0.375)
    assert F.contrastive_loss(x1, x2, y).item() == pytest.approx(0.125)


def test_contrastive_label_convention_y1_is_similar():
    x1, x2 = torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])  # d = 5, beyond the margin
    assert F.contrastive_loss(x1, x2, torch.tensor([1])).item() == pytest.approx(12.5)
    assert F.contrastive_loss(x1, x2, torch.tensor([0])).item() == 0.0
    # bool, int and float labels mean the same thing
    for y in (torch.tensor([True]), torch.tensor([1]), torch.tensor([1.0])):
        assert F.contrastive_loss(x1, x2, y).item() == pytest.approx(12.5)


def test_triplet_worked_numbers_from_the_issue():
    a = torch.zeros(2, 1)
    p = torch.tensor([[0.7], [0.1]])
    n = torch.tensor([[0.5], [0.6]])
    losses = F.triplet_loss(a, p, n, margin=0.2, reduction="none")
    torch.testing.assert_close(losses, torch.tensor([0.4, 0.0]))


def test_info_nce_is_n_pair_loss_without_normalization_at_unit_temperature():
    # Sohn 2016: log(1 + sum_{j != i} exp(q_i.k_j - q_i.k_i))
    q, k = randn(5, 3, seed=20), randn(5, 3, seed=21)
    s = q @ k.T
    n_pair = torch.stack(
        [
            torch.log1p(sum(torch.exp(s[i, j] - s[i, i]) for j in range(5) if j != i))
            for i in range(5)
        ]
    ).mean()
    torch.testing.assert_close(F.info_nce(q, k, normalize=False, temperature=1.0), n_pair)


def test_symmetric_info_nce_is_clip_loss():
    q, k = randn(6, 4, seed=22), randn(6, 4, seed=23)
    logits = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(k, dim=1).T
    logits = logits / 0.07
    targets = torch.arange(6)
    clip = (
        torch.nn.functional.cross_entropy(logits, targets)
        + torch.nn.functional.cross_entropy(logits.T, targets)
    ) / 2
    torch.testing.assert_close(F.info_nce(q, k, symmetric=True), clip)


def test_supcon_with_two_views_and_distinct_labels_is_nt_xent():
    z1, z2 = randn(5, 3, seed=24), randn(5, 3, seed=25)
    labels = torch.arange(5).repeat(2)
    torch.testing.assert_close(
        F.supcon(torch.cat([z1, z2]), labels, temperature=0.5),
        F.nt_xent(z1, z2, temperature=0.5),
    )


def test_supcon_without_any_positive_is_zero_and_connected():
    emb = randn(4, 3, seed=26).requires_grad_()
    loss = F.supcon(emb, torch.tensor([0, 1, 2, 3]))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_supcon_single_sample_is_zero_and_connected():
    emb = randn(1, 3, seed=27).requires_grad_()
    for reduction in REDUCTIONS:
        loss = F.supcon(emb, torch.tensor([0]), reduction=reduction)
        assert torch.all(loss == 0.0)
        loss.sum().backward()
        assert torch.isfinite(emb.grad).all()


def test_triplet_agrees_with_torch_triplet_margin_loss():
    a, p, n = randn(16, 8, seed=28), randn(16, 8, seed=29), randn(16, 8, seed=30)
    for reduction in REDUCTIONS:
        torch_loss = torch.nn.TripletMarginLoss(margin=1.0, p=2, eps=0.0, reduction=reduction)
        ours = F.triplet_loss(a, p, n, margin=1.0, reduction=reduction)
        torch.testing.assert_close(ours, torch_loss(a, p, n))
    # torch's default eps=1e-6 is added to the differences: a tiny, bounded difference
    torch_default = torch.nn.TripletMarginLoss(margin=1.0)(a.float(), p.float(), n.float())
    ours = F.triplet_loss(a.float(), p.float(), n.float(), margin=1.0)
    assert abs(ours.item() - torch_default.item()) < 1e-4


def test_triplet_gradients_agree_with_torch():
    a, p, n = (randn(8, 4, seed=s).requires_grad_() for s in (31, 32, 33))
    F.triplet_loss(a, p, n, margin=0.5).backward()
    ours = [t.grad.clone() for t in (a, p, n)]
    for t in (a, p, n):
        t.grad = None
    torch.nn.TripletMarginLoss(margin=0.5, eps=0.0)(a, p, n).backward()
    for mine, theirs in zip(ours, (a.grad, p.grad, n.grad), strict=True):
        torch.testing.assert_close(mine, theirs)


# --- gradients --------------------------------------------------------------------


def _loss_calls():
    """(name, function of float64 leaf tensors, the leaves) for every loss and option."""
    y = torch.tensor([1, 0, 1, 0, 0])
    labels = torch.tensor([0, 1, 0, 1, 2])
    score = torch.tensor([0.5, -0.5, 1.0, 0.0, -1.0], dtype=torch.float64)
    calls = []
    for distance in DISTANCE_NAMES:
        for legacy in (False, True):
            calls.append(
                (
                    f"contrastive-{distance}-legacy{legacy}",
                    lambda a, b, d=distance, lg=legacy: F.contrastive_loss(
                        a, b, y, margin=2.0, distance=d, caffe_legacy=lg
                    ),
                    2,
                )
            )
        calls.append(
            (
                f"triplet-{distance}",
                lambda a, b, c, d=distance: F.triplet_loss(a, b, c, margin=1.0, distance=d),
                3,
            )
        )
    for normalize in (True, False):
        for symmetric in (False, True):
            calls.append(
                (
                    f"info_nce-norm{normalize}-sym{symmetric}",
                    lambda a, b, nm=normalize, sm=symmetric: F.info_nce(
                        a, b, temperature=0.5, normalize=nm, symmetric=sm
                    ),
                    2,
                )
            )
        calls.append(
            (
                f"info_nce-negatives-norm{normalize}",
                lambda a, b, c, nm=normalize: F.info_nce(
                    a, b, negatives=c, temperature=0.5, normalize=nm
                ),
                3,
            )
        )
        calls.append(
            (
                f"supcon-norm{normalize}",
                lambda a, nm=normalize: F.supcon(a, labels, temperature=0.5, normalize=nm),
                1,
            )
        )
    calls.append(("nt_xent", lambda a, b: F.nt_xent(a, b, temperature=0.5), 2))
    calls.append(("cosine_similarity", lambda a, b: F.cosine_similarity_loss(a, b, score), 2))
    return calls


LOSS_CALLS = _loss_calls()


@pytest.mark.parametrize(("name", "fn", "arity"), LOSS_CALLS, ids=[c[0] for c in LOSS_CALLS])
def test_gradcheck(name, fn, arity):
    inputs = [randn(5, 3, seed=40 + i).requires_grad_() for i in range(arity)]
    assert torch.autograd.gradcheck(fn, inputs)


def test_gradcheck_learnable_temperature():
    q, k = randn(4, 3, seed=50).requires_grad_(), randn(4, 3, seed=51).requires_grad_()
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: F.info_nce(a, b, temperature=c), (q, k, t))
    labels = torch.tensor([0, 0, 1, 1])
    assert torch.autograd.gradcheck(lambda a, c: F.supcon(a, labels, temperature=c), (q, t))
    assert torch.autograd.gradcheck(lambda a, b, c: F.nt_xent(a, b, temperature=c), (q, k, t))


@pytest.mark.parametrize(("name", "fn", "arity"), LOSS_CALLS, ids=[c[0] for c in LOSS_CALLS])
@pytest.mark.parametrize("where", ["identical", "zero"])
def test_gradients_finite_at_zero_distance_and_zero_vectors(name, fn, arity, where):
    base = randn(5, 3, seed=60)
    if where == "zero":
        base = torch.zeros(5, 3, dtype=torch.float64)
    inputs = [base.clone().requires_grad_() for _ in range(arity)]
    loss = fn(*inputs)
    assert torch.isfinite(loss)
    loss.backward()
    for t in inputs:
        assert torch.isfinite(t.grad).all()


def test_contrastive_at_zero_distance_is_zero_for_similar_and_half_margin_squared_otherwise():
    x = randn(2, 3, seed=61).requires_grad_()
    losses = F.contrastive_loss(x, x, torch.tensor([1, 0]), margin=1.5, reduction="none")
    torch.testing.assert_close(losses, torch.tensor([0.0, 1.125], dtype=torch.float64))
    losses.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


# --- numerics ---------------------------------------------------------------------


def test_large_logits_are_stable():
    q = randn(8, 4, seed=70) * 1e3
    k = q + randn(8, 4, seed=71)
    for temperature in (1e-4, 1e-2):
        loss = F.info_nce(q.float(), k.float(), temperature=temperature, normalize=False)
        assert torch.isfinite(loss)
        loss = F.info_nce(q.float(), k.float(), temperature=temperature)
        assert torch.isfinite(loss)
        assert torch.isfinite(F.nt_xent(q.float(), k.float(), temperature=temperature))
        labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        assert torch.isfinite(F.supcon(q.float(), labels, temperature=temperature))


def test_tiny_temperature_picks_the_hard_negative_exactly():
    # cos(q0, q0) = 1, cos(q0, q1) = 0.6: at tau -> 0 the loss tends to 0 (float64 exact)
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    loss = F.info_nce(q, q, temperature=1e-3, reduction="none")
    assert torch.all(loss < 1e-80)
    # and with the positive worse than a negative it is the gap divided by tau
    k = q.flip(0)
    loss = F.info_nce(q, k, temperature=1e-3, reduction="none")
    torch.testing.assert_close(loss, torch.full((2,), 0.4 / 1e-3, dtype=torch.float64))


HALF_CALLS = [
    ("contrastive", lambda a, b: F.contrastive_loss(a, b, torch.tensor([1, 0, 1, 0]))),
    ("triplet", lambda a, b: F.triplet_loss(a, b, a.flip(0), margin=1.0)),
    ("info_nce", lambda a, b: F.info_nce(a, b)),
    ("clip", lambda a, b: F.info_nce(a, b, symmetric=True)),
    ("nt_xent", lambda a, b: F.nt_xent(a, b)),
    ("supcon", lambda a, b: F.supcon(a, torch.tensor([0, 0, 1, 1]))),
    ("cosine", lambda a, b: F.cosine_similarity_loss(a, b, torch.tensor([1.0, 0, 0.5, -1]))),
]


@pytest.mark.parametrize(("name", "fn"), HALF_CALLS, ids=[c[0] for c in HALF_CALLS])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(name, fn, dtype):
    a = randn(4, 16, seed=80, dtype=torch.float32).to(dtype).requires_grad_()
    b = randn(4, 16, seed=81, dtype=torch.float32).to(dtype).requires_grad_()
    loss = fn(a, b)
    assert loss.dtype == torch.float32
    # the same values, upcast by hand, give the same float32 loss
    torch.testing.assert_close(loss, fn(a.detach().float(), b.detach().float()))
    loss.backward()
    assert a.grad.dtype == dtype
    assert torch.isfinite(a.grad.float()).all()


@pytest.mark.parametrize(("name", "fn"), HALF_CALLS, ids=[c[0] for c in HALF_CALLS])
def test_float32_close_to_float64(name, fn):
    a, b = randn(4, 16, seed=82), randn(4, 16, seed=83)
    loss32 = fn(a.float(), b.float())
    assert loss32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), fn(a, b), rtol=1e-5, atol=1e-6)


# --- properties (hypothesis) ------------------------------------------------------

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def batches(draw, *, count: int, min_rows: int = 1, max_rows: int = 6):
    """``count`` float64 tensors of one shape (N, D)."""
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(1, 4))
    rows = st.lists(st.lists(finite, min_size=d, max_size=d), min_size=n, max_size=n)
    return [torch.tensor(draw(rows), dtype=torch.float64) for _ in range(count)]


PROPERTY = settings(max_examples=40, deadline=None)


@PROPERTY
@given(
    batches(count=2),
    st.data(),
    st.floats(0, 5),
    st.sampled_from(DISTANCE_NAMES),
)
def test_contrastive_properties(xs, data, margin, distance):
    x1, x2 = xs
    n = x1.shape[0]
    y = torch.tensor(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    losses = F.contrastive_loss(x1, x2, y, margin=margin, distance=distance, reduction="none")
    assert torch.all(losses >= 0)
    # order of the batch does not matter
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    permuted = F.contrastive_loss(x1[perm], x2[perm], y[perm], margin=margin, distance=distance)
    torch.testing.assert_close(permuted, losses.mean())
    # a larger margin never lowers the loss; dissimilar pairs beyond the margin cost 0
    wider = F.contrastive_loss(x1, x2, y, margin=margin + 1, distance=distance, reduction="none")
    assert torch.all(wider >= losses - 1e-12)
    d = torch.tensor(
        [ref.distance(u, v, distance) for u, v in zip(x1.tolist(), x2.tolist(), strict=True)]
    )
    beyond = (y == 0) & (d > margin + 1e-9)
    assert torch.all(losses[beyond] == 0)


@PROPERTY
@given(batches(count=3), st.floats(0, 5), st.sampled_from(DISTANCE_NAMES))
def test_triplet_properties(xs, margin, distance):
    a, p, n = xs
    losses = F.triplet_loss(a, p, n, margin=margin, distance=distance, reduction="none")
    assert torch.all(losses >= 0)
    perm = torch.arange(a.shape[0]).flip(0)
    torch.testing.assert_close(
        F.triplet_loss(
            a[perm], p[perm], n[perm], margin=margin, distance=distance, reduction="sum"
        ),
        losses.sum(),
    )
    wider = F.triplet_loss(a, p, n, margin=margin + 0.5, distance=distance, reduction="none")
    assert torch.all(wider >= losses)
    # swapping positive and negative: the two hinges cover the gap from both sides
    swapped = F.triplet_loss(a, n, p, margin=margin, distance=distance, reduction="none")
    assert torch.all(losses + swapped >= 2 * margin - 1e-9)


@PROPERTY
@given(batches(count=2, min_rows=2), st.floats(0.05, 5), st.booleans(), st.booleans())
def test_info_nce_properties(xs, temperature, normalize, symmetric):
    q, k = xs
    n = q.shape[0]
    kwargs = dict(temperature=temperature, normalize=normalize, symmetric=symmetric)
    losses = F.info_nce(q, k, reduction="none", **kwargs)
    assert torch.all(losses >= 0)
    assert torch.isfinite(losses).all()
    perm = torch.arange(n).roll(1)
    torch.testing.assert_close(F.info_nce(q[perm], k[perm], **kwargs), losses.mean())
    # at a huge temperature every key is equally likely: the loss tends to log N
    flat = F.info_nce(q, k, temperature=1e9, normalize=True, symmetric=symmetric)
    assert flat.item() == pytest.approx(math.log(n), abs=1e-6)


@PROPERTY
@given(batches(count=2), st.floats(0.05, 5))
def test_nt_xent_properties(xs, temperature):
    z1, z2 = xs
    n = z1.shape[0]
    losses = F.nt_xent(z1, z2, temperature=temperature, reduction="none")
    assert losses.shape == (2 * n,)
    assert torch.all(losses >= 0)
    # swapping the views or permuting the examples leaves the mean unchanged
    mean = losses.mean()
    torch.testing.assert_close(F.nt_xent(z2, z1, temperature=temperature), mean)
    perm = torch.arange(n).flip(0)
    torch.testing.assert_close(F.nt_xent(z1[perm], z2[perm], temperature=temperature), mean)
    flat = F.nt_xent(z1, z2, temperature=1e9)
    assert flat.item() == pytest.approx(math.log(2 * n - 1), abs=1e-6)


@PROPERTY
@given(batches(count=1, max_rows=8), st.data(), st.floats(0.05, 5))
def test_supcon_properties(xs, data, temperature):
    (emb,) = xs
    n = emb.shape[0]
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    losses = F.supcon(emb, labels, temperature=temperature, reduction="none")
    # Jensen: the mean of -log p over |P| positives whose p sum to at most 1 is >= log |P|
    counts = torch.tensor([int((labels == labels[i]).sum()) - 1 for i in range(n)])
    has_positive = counts > 0
    lower = torch.log(counts[has_positive].double())
    assert torch.all(losses[has_positive] >= lower - 1e-9)
    assert torch.all(losses[~has_positive] == 0)
    perm = torch.arange(n).roll(1)
    torch.testing.assert_close(
        F.supcon(emb[perm], labels[perm], temperature=temperature),
        F.supcon(emb, labels, temperature=temperature),
    )


@PROPERTY
@given(batches(count=2), st.data())
def test_cosine_similarity_loss_properties(xs, data):
    x1, x2 = xs
    n = x1.shape[0]
    score = torch.tensor(
        data.draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n)), dtype=torch.float64
    )
    losses = F.cosine_similarity_loss(x1, x2, score, reduction="none")
    assert torch.all((losses >= 0) & (losses <= 4 + 1e-12))
    # symmetric in its two inputs
    torch.testing.assert_close(F.cosine_similarity_loss(x2, x1, score, reduction="none"), losses)


def test_a_row_shorter_than_1e_12_is_divided_by_1e_12_like_torch_normalize():
    # found by the property test above: the reference took such a row's true direction
    x1 = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    x2 = torch.tensor([[0.0, -3.8021e-151, 0.0, 0.0]], dtype=torch.float64)
    d = 1.0 - ref.cosine_similarity(x1[0].tolist(), x2[0].tolist())
    assert d == pytest.approx(1.0)
    loss = F.contrastive_loss(x1, x2, torch.tensor([0]), margin=1.5, distance="cosine")
    assert loss.item() == pytest.approx(0.5 * (1.5 - d) ** 2)
