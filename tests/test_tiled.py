"""The tiled paths of the all-pairs losses equal the simple references, value and gradient.

Every loss is called twice on the same float64 inputs: without ``chunk_size`` (small
batches take the simple implementation, the reference) and with ``chunk_size=k`` (the
tiled kernels of ``contrastkit._tiled``), over tile sizes that divide the batch, leave a
remainder, hold one row or all of them.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit import _tiled
from contrastkit import functional as F
from contrastkit.losses import (
    AllPairsContrastiveLoss,
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    InfoNCELoss,
    NTXentLoss,
    SupConLoss,
)

CHUNKS = [1, 3, 7, 64]
DISTANCES = ["euclidean", "squared_euclidean", "cosine"]


def _value_and_grads(fn, *inputs, weights=None):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    total = out if weights is None else (out * weights).sum()
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return out.detach(), [
        torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves, strict=True)
    ]


def assert_same(reference, tiled, *inputs, weights=None, atol=1e-10):
    expected, expected_grads = _value_and_grads(reference, *inputs, weights=weights)
    got, got_grads = _value_and_grads(tiled, *inputs, weights=weights)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=atol)
    for g, e in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=atol)


def _data(n=23, d=5, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    return x, y, labels


# --------------------------------------------------------------------------------------
# softmax family


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce(chunk, reduction, normalize):
    q, k, _ = _data()
    opts = {"temperature": 0.2, "normalize": normalize, "reduction": reduction}
    weights = torch.linspace(-1, 2, q.shape[0], dtype=q.dtype) if reduction == "none" else None
    assert_same(
        lambda q, k: F.info_nce(q, k, **opts),
        lambda q, k: F.info_nce(q, k, chunk_size=chunk, **opts),
        q,
        k,
        weights=weights,
    )


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_clip_symmetric(chunk, reduction):
    q, k, _ = _data()
    opts = {"temperature": 0.1, "symmetric": True, "reduction": reduction}
    weights = torch.linspace(-1, 2, q.shape[0], dtype=q.dtype) if reduction == "none" else None
    assert_same(
        lambda q, k: F.info_nce(q, k, **opts),
        lambda q, k: F.info_nce(q, k, chunk_size=chunk, **opts),
        q,
        k,
        weights=weights,
    )


@pytest.mark.parametrize("chunk", [1, 5, 64])
@pytest.mark.parametrize("shape", ["shared", "per_query"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_info_nce_extra_negatives(chunk, shape, reduction):
    q, k, _ = _data()
    g = torch.Generator().manual_seed(1)
    size = (9, 5) if shape == "shared" else (q.shape[0], 4, 5)
    negatives = torch.randn(size, generator=g, dtype=q.dtype)
    weights = torch.linspace(0, 1, q.shape[0], dtype=q.dtype) if reduction == "none" else None
    assert_same(
        lambda q, k, n: F.info_nce(q, k, negatives=n, temperature=0.3, reduction=reduction),
        lambda q, k, n: F.info_nce(
            q, k, negatives=n, temperature=0.3, reduction=reduction, chunk_size=chunk
        ),
        q,
        k,
        negatives,
        weights=weights,
    )


@pytest.mark.parametrize("symmetric", [False, True])
def test_learnable_temperature(symmetric):
    q, k, _ = _data()
    tau = torch.tensor(0.15, dtype=q.dtype)
    assert_same(
        lambda q, k, t: F.info_nce(q, k, temperature=t, symmetric=symmetric),
        lambda q, k, t: F.info_nce(q, k, temperature=t, symmetric=symmetric, chunk_size=4),
        q,
        k,
        tau,
    )
    assert_same(
        lambda z1, z2, t: F.nt_xent(z1, z2, temperature=t),
        lambda z1, z2, t: F.nt_xent(z1, z2, temperature=t, chunk_size=4),
        q,
        k,
        tau,
    )
    _, _, labels = _data()
    assert_same(
        lambda z, t: F.supcon(z, labels, temperature=t),
        lambda z, t: F.supcon(z, labels, temperature=t, chunk_size=4),
        q,
        tau,
    )


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nt_xent(chunk, reduction):
    z1, z2, _ = _data(n=11)
    weights = torch.linspace(-1, 1, 22, dtype=z1.dtype) if reduction == "none" else None
    assert_same(
        lambda a, b: F.nt_xent(a, b, temperature=0.5, reduction=reduction),
        lambda a, b: F.nt_xent(a, b, temperature=0.5, reduction=reduction, chunk_size=chunk),
        z1,
        z2,
        weights=weights,
    )


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("normalize", [True, False])
def test_supcon(chunk, reduction, normalize):
    z, _, labels = _data(classes=6)
    labels[0] = 99  # an anchor without a positive
    weights = torch.linspace(-1, 1, z.shape[0], dtype=z.dtype) if reduction == "none" else None
    opts = {"temperature": 0.1, "normalize": normalize, "reduction": reduction}
    assert_same(
        lambda z: F.supcon(z, labels, **opts),
        lambda z: F.supcon(z, labels, chunk_size=chunk, **opts),
        z,
        weights=weights,
    )


def test_supcon_without_any_positive_is_zero_and_connected():
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    loss = F.supcon(z, torch.arange(5), chunk_size=2)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("chunk", [1, 4])
def test_softmax_ties_and_duplicates(chunk):
    # identical rows tie every logit of a row: the softmax splits evenly
    q = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 3, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    assert_same(
        lambda q: F.info_nce(q, q, temperature=0.5),
        lambda q: F.info_nce(q, q, temperature=0.5, chunk_size=chunk),
        q,
    )
    assert_same(lambda z: F.supcon(z, labels), lambda z: F.supcon(z, labels, chunk_size=chunk), q)
    assert_same(lambda z: F.nt_xent(z, z), lambda z: F.nt_xent(z, z, chunk_size=chunk), q)


def test_large_logits_stay_exact():
    # temperature 1e-3: logits span ±1000; rows and columns far below the largest entry
    q, k, _ = _data(n=9)
    k[3] = -q[3]  # the key whose every logit is far below the largest
    for symmetric in (False, True):
        assert_same(
            lambda q, k, s=symmetric: F.info_nce(q, k, temperature=1e-3, symmetric=s),
            lambda q, k, s=symmetric: F.info_nce(q, k, temperature=1e-3, symmetric=s, chunk_size=2),
            q,
            k,
            atol=1e-8,
        )


def test_float32_column_far_below_the_largest_entry_is_recomputed():
    # a column whose every logit is ~200 below the tile's largest underflows in the shared
    # shift of float32; it is recomputed exactly
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    a = q / 0.01
    by_row, by_column = _tiled.row_column_logsumexp(a, k, rows=3, eager=False)
    logits = a @ k.T
    torch.testing.assert_close(by_row, torch.logsumexp(logits, dim=1))
    torch.testing.assert_close(by_column, torch.logsumexp(logits, dim=0))
    assert torch.isfinite(by_column).all()


# --------------------------------------------------------------------------------------
# distance family


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("caffe_legacy", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_pairs_contrastive(chunk, distance, caffe_legacy, reduction):
    x, _, labels = _data()
    opts = {
        "margin": 1.5,
        "distance": distance,
        "caffe_legacy": caffe_legacy,
        "reduction": reduction,
    }
    assert_same(
        lambda x: F.all_pairs_contrastive_loss(x, labels, **opts),
        lambda x: F.all_pairs_contrastive_loss(x, labels, chunk_size=chunk, **opts),
        x,
    )


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mean_over", ["all", "nonzero"])
@pytest.mark.parametrize("by", ["slot", "sorting"])
def test_batch_all_triplet(chunk, distance, reduction, mean_over, by, monkeypatch):
    # classes of up to 32 samples go one positive at a time, larger ones by sorting
    monkeypatch.setattr(_tiled, "SLOT_CLASS_SIZE", 32 if by == "slot" else 0)
    x, _, labels = _data()
    margin = 0.2 if distance == "cosine" else 1.0
    weights = torch.linspace(-1, 1, x.shape[0], dtype=x.dtype) if reduction == "none" else None
    opts = {"margin": margin, "distance": distance, "reduction": reduction, "mean_over": mean_over}
    assert_same(
        lambda x: F.batch_all_triplet_loss(x, labels, **opts),
        lambda x: F.batch_all_triplet_loss(x, labels, chunk_size=chunk, **opts),
        x,
        weights=weights,
    )


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("distance", [*DISTANCES, "manhattan"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_batch_hard_triplet(chunk, distance, reduction):
    x, _, labels = _data()
    labels[0] = 99  # an anchor without a positive
    assert_same(
        lambda x: F.batch_hard_triplet_loss(
            x, labels, margin=0.5, distance=distance, reduction=reduction
        ),
        lambda x: F.batch_hard_triplet_loss(
            x, labels, margin=0.5, distance=distance, reduction=reduction, chunk_size=chunk
        ),
        x,
        weights=torch.ones(x.shape[0], dtype=x.dtype) if reduction == "none" else None,
    )


@pytest.mark.parametrize("chunk", [1, 2, 5])
@pytest.mark.parametrize("slot", [0, 32])
def test_distance_family_with_ties(chunk, slot, monkeypatch):
    monkeypatch.setattr(_tiled, "SLOT_CLASS_SIZE", slot)
    # points on a grid: many equal distances, exact in float64
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    x = x.double()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for distance in DISTANCES:
        assert_same(
            lambda x, d=distance: F.batch_hard_triplet_loss(x, labels, margin=1.0, distance=d),
            lambda x, d=distance: F.batch_hard_triplet_loss(
                x, labels, margin=1.0, distance=d, chunk_size=chunk
            ),
            x,
        )
        assert_same(
            lambda x, d=distance: F.batch_all_triplet_loss(x, labels, margin=1.0, distance=d),
            lambda x, d=distance: F.batch_all_triplet_loss(
                x, labels, margin=1.0, distance=d, chunk_size=chunk
            ),
            x,
        )
        assert_same(
            lambda x, d=distance: F.all_pairs_contrastive_loss(x, labels, margin=1.0, distance=d),
            lambda x, d=distance: F.all_pairs_contrastive_loss(
                x, labels, margin=1.0, distance=d, chunk_size=chunk
            ),
            x,
        )


def test_distance_family_zero_distance_has_finite_gradients():
    x = torch.zeros(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    for fn in (F.all_pairs_contrastive_loss, F.batch_all_triplet_loss, F.batch_hard_triplet_loss):
        z = x.clone().requires_grad_(True)
        fn(z, labels, margin=1.0, chunk_size=2).backward()
        assert torch.isfinite(z.grad).all()


def test_single_sample_batches():
    z = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    label = torch.tensor([0])
    for fn in (F.all_pairs_contrastive_loss, F.batch_all_triplet_loss, F.batch_hard_triplet_loss):
        loss = fn(z, label, margin=1.0, chunk_size=1)
        loss.backward()
        assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
        z.grad = None


# --------------------------------------------------------------------------------------
# gradcheck through the custom autograd functions


@pytest.mark.parametrize("chunk", [1, 3])
def test_gradcheck(chunk):
    q, k, labels = _data(n=7, d=3)
    q.requires_grad_(True)
    k.requires_grad_(True)
    w = torch.linspace(-1, 1, 7, dtype=q.dtype)
    checks = [
        lambda q, k: F.info_nce(q, k, temperature=0.5, chunk_size=chunk),
        lambda q, k: (F.info_nce(q, k, reduction="none", chunk_size=chunk) * w).sum(),
        lambda q, k: F.info_nce(q, k, symmetric=True, chunk_size=chunk),
        lambda q, k: (
            F.info_nce(q, k, symmetric=True, reduction="none", chunk_size=chunk) * w
        ).sum(),
        lambda q, k: F.nt_xent(q, k, chunk_size=chunk),
        lambda q, k: F.supcon(q, labels, chunk_size=chunk) + 0 * k.sum(),
        lambda q, k: F.all_pairs_contrastive_loss(q, labels, chunk_size=chunk) + 0 * k.sum(),
        lambda q, k: (
            (
                F.batch_all_triplet_loss(q, labels, margin=0.5, reduction="none", chunk_size=chunk)
                * w
            ).sum()
            + 0 * k.sum()
        ),
    ]
    for fn in checks:
        assert torch.autograd.gradcheck(fn, (q, k))


# --------------------------------------------------------------------------------------
# choice of path, no-grad, precision, Modules, errors


def test_large_batches_take_the_tiled_path_automatically(monkeypatch):
    calls = []
    original = _tiled.row_logsumexp

    def spy(*args, **kwargs):
        calls.append(kwargs["rows"])
        return original(*args, **kwargs)

    monkeypatch.setattr(_tiled, "row_logsumexp", spy)
    q, k, _ = _data(n=40)
    F.info_nce(q, k)
    assert calls == []  # 40 × 40 is small: the reference
    monkeypatch.setattr(_tiled, "AUTO_ELEMENTS", 100)
    monkeypatch.setattr(_tiled, "TILE_ELEMENTS", 400)
    F.info_nce(q, k)
    assert calls == [10]  # 400 entries per tile of 40 keys


def test_without_gradient_no_gradient_work(monkeypatch):
    seen = []
    original = _tiled._row_pass

    def spy(*args):
        seen.append(args[5] is not None)  # weights given: gradient work
        return original(*args)

    monkeypatch.setattr(_tiled, "_row_pass", spy)
    q, k, _ = _data()
    with torch.no_grad():
        F.info_nce(q, k, chunk_size=4)
    F.info_nce(q, k, chunk_size=4)  # inputs need no gradient either
    assert seen == [False, False]
    F.info_nce(q.requires_grad_(True), k, chunk_size=4)
    assert seen[-1] is True


def test_eager_gradient_is_reused_not_recomputed(monkeypatch):
    q, k, _ = _data()
    q.requires_grad_(True)
    passes = []
    original = _tiled._row_pass
    monkeypatch.setattr(_tiled, "_row_pass", lambda *a: passes.append(1) or original(*a))
    (3.0 * F.info_nce(q, k, chunk_size=5)).backward()
    assert len(passes) == 1  # the forward pass built the gradient; backward scaled it
    F.info_nce(q, k, chunk_size=5, reduction="none")[0].backward()
    assert len(passes) == 3  # weights unknown in advance: one more pass in backward


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_float32(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g).to(dtype)
    y = torch.randn(64, 16, generator=g).to(dtype)
    labels = torch.randint(0, 8, (64,), generator=g)
    cases = [
        lambda x, y: F.info_nce(x, y, chunk_size=7),
        lambda x, y: F.info_nce(x, y, symmetric=True, chunk_size=7),
        lambda x, y: F.nt_xent(x, y, chunk_size=7),
        lambda x, y: F.supcon(x, labels, chunk_size=7),
        lambda x, y: F.all_pairs_contrastive_loss(x, labels, chunk_size=7),
        lambda x, y: F.batch_hard_triplet_loss(x, labels, margin=1.0, chunk_size=7),
        lambda x, y: F.batch_all_triplet_loss(x, labels, margin=1.0, chunk_size=7),
    ]
    for fn in cases:
        half_x = x.clone().requires_grad_(True)
        loss = fn(half_x, y)
        loss.backward()
        assert loss.dtype == torch.float32 and half_x.grad.dtype == dtype
        reference = fn(x.float(), y.float())
        # the inputs are the same numbers; only the half-precision gradient is rounded
        torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
        assert torch.isfinite(half_x.grad.float()).all()


def test_modules_pass_chunk_size():
    q, k, labels = _data()
    modules = [
        (InfoNCELoss(chunk_size=3), (q, k)),
        (NTXentLoss(chunk_size=3), (q, k)),
        (SupConLoss(chunk_size=3), (q, labels)),
        (AllPairsContrastiveLoss(chunk_size=3), (q, labels)),
        (BatchAllTripletLoss(margin=1.0, chunk_size=3), (q, labels)),
        (BatchHardTripletLoss(margin=1.0, chunk_size=3), (q, labels)),
    ]
    for module, args in modules:
        assert "chunk_size=3" in repr(module)
        reference = type(module)(**{**module._options(), "chunk_size": None})
        torch.testing.assert_close(module(*args), reference(*args))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_chunk_size(bad):
    q, k, _ = _data()
    error = TypeError if isinstance(bad, bool | float | str) else ValueError
    with pytest.raises(error, match="chunk_size must be a positive int or None"):
        F.info_nce(q, k, chunk_size=bad)
    with pytest.raises(error, match="chunk_size"):
        SupConLoss(chunk_size=bad)


def test_chunk_size_refused_where_no_tiled_path():
    x, _, labels = _data()
    with pytest.raises(ValueError, match="chunk_size needs distance"):
        F.all_pairs_contrastive_loss(x, labels, distance="manhattan", chunk_size=4)
    with pytest.raises(ValueError, match="reduction='none'"):
        F.all_pairs_contrastive_loss(x, labels, reduction="none", chunk_size=4)
    with pytest.raises(ValueError, match="chunk_size needs distance"):
        F.batch_all_triplet_loss(x, labels, margin=1.0, distance="manhattan", chunk_size=4)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 20),
    chunk=st.integers(1, 25),
    classes=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    tau=st.floats(0.05, 2.0),
)
def test_property_tiled_equals_reference(n, chunk, classes, seed, tau):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(n, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    pairs = [
        (F.info_nce(x, y, temperature=tau), F.info_nce(x, y, temperature=tau, chunk_size=chunk)),
        (
            F.info_nce(x, y, temperature=tau, symmetric=True),
            F.info_nce(x, y, temperature=tau, symmetric=True, chunk_size=chunk),
        ),
        (F.nt_xent(x, y, temperature=tau), F.nt_xent(x, y, temperature=tau, chunk_size=chunk)),
        (
            F.supcon(x, labels, temperature=tau),
            F.supcon(x, labels, temperature=tau, chunk_size=chunk),
        ),
        (
            F.all_pairs_contrastive_loss(x, labels),
            F.all_pairs_contrastive_loss(x, labels, chunk_size=chunk),
        ),
        (
            F.batch_all_triplet_loss(x, labels, margin=tau),
            F.batch_all_triplet_loss(x, labels, margin=tau, chunk_size=chunk),
        ),
        (
            F.batch_hard_triplet_loss(x, labels, margin=tau),
            F.batch_hard_triplet_loss(x, labels, margin=tau, chunk_size=chunk),
        ),
    ]
    for expected, got in pairs:
        assert math.isclose(got.item(), expected.item(), rel_tol=1e-9, abs_tol=1e-12)


def test_batch_all_large_classes_take_the_sorting_path():
    # two classes of 40: above SLOT_CLASS_SIZE, each row's negatives are sorted
    g = torch.Generator().manual_seed(3)
    x = torch.randn(80, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(80) % 2
    assert_same(
        lambda x: F.batch_all_triplet_loss(x, labels, margin=0.5),
        lambda x: F.batch_all_triplet_loss(x, labels, margin=0.5, chunk_size=9),
        x,
    )
