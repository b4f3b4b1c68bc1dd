"""Finite inputs never give a NaN: large embeddings keep their distances and directions.

In float32 the square of ``1.9e19`` overflows. Distances and norms are computed on rows
divided by a power of two near their largest magnitude, so rows of ``1e20`` or ``1e30``
keep a finite distance and their true direction; a loss beyond the largest float is
``inf``, never NaN, and no gradient is NaN. Where nothing overflows the scaled results
carry the bits of the direct formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from contrastkit import functional as F
from contrastkit.distances import (
    distance_matrix,
    normalize,
    paired_distance,
    paired_similarity,
    similarity_matrix,
)

SCALES = [1e20, 1e30]
N, D = 6, 5
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
PAIRS = torch.tensor([1, 0, 1, 0, 1, 0])


def _emb(seed: int, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, D, generator=g, dtype=torch.float64) * scale).to(dtype)


def _pair(scale: float) -> tuple[Tensor, Tensor]:
    """Two batches with an identical row and a row sharing two coordinates."""
    a, b = _emb(0, scale), _emb(1, scale)
    b[0] = a[0]
    b[1, :2] = a[1, :2]
    return a, b


# --- distances ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e20, 1e30, 3e37])
def test_euclidean_distance_of_large_rows_is_finite_and_right(scale: float) -> None:
    a, b = _emb(0, scale), _emb(1, scale)
    expected = torch.linalg.vector_norm(a.double() - b.double(), dim=1)
    paired = paired_distance(a, b)
    assert torch.isfinite(paired).all()
    torch.testing.assert_close(paired.double(), expected, rtol=1e-6, atol=0.0)
    matrix = distance_matrix(a, b)
    torch.testing.assert_close(matrix.diagonal().double(), expected, rtol=1e-5, atol=0.0)
    assert (distance_matrix(a).diagonal() == 0).all()


def test_euclidean_distance_near_the_largest_float() -> None:
    big = torch.finfo(torch.float32).max
    x = torch.tensor([[big, 0.0], [big / 2, big / 2]])
    y = torch.tensor([[0.0, 0.0], [-big / 2, -big / 2]])
    d = paired_distance(x, y)
    assert d[0] == big
    assert d[1] == math.inf  # sqrt(2) * max: beyond the largest float, not NaN


def test_squared_distance_is_inf_only_beyond_the_largest_float() -> None:
    a, b = _emb(0, 1e15), _emb(1, 1e15)
    torch.testing.assert_close(
        paired_distance(a, b, "squared_euclidean").double(),
        (a.double() - b.double()).pow(2).sum(dim=1),
        rtol=1e-6,
        atol=0.0,
    )
    a, b = _emb(0, 1e20), _emb(1, 1e20)
    assert (paired_distance(a, b, "squared_euclidean") == math.inf).all()
    assert (distance_matrix(a, b, "squared_euclidean") == math.inf).all()


@pytest.mark.parametrize("scale", [*SCALES, 1e-10])
def test_cosine_of_large_and_small_rows_is_their_cosine(scale: float) -> None:
    a, b = _emb(0), _emb(1)
    expected = paired_similarity(a, b)
    torch.testing.assert_close(paired_similarity(a * scale, b * scale), expected)
    torch.testing.assert_close(similarity_matrix(a * scale, b * scale), similarity_matrix(a, b))
    unit = normalize(a * scale)
    torch.testing.assert_close(torch.linalg.vector_norm(unit, dim=1), torch.ones(N))
    torch.testing.assert_close(unit, normalize(a))


def test_normalize_keeps_its_small_row_rules() -> None:
    x = torch.tensor([[3e-13, 4e-13], [0.0, 0.0], [math.nan, 1.0]], requires_grad=True)
    out = normalize(x)
    # shorter than 1e-12: divided by 1e-12, as torch.nn.functional.normalize does
    torch.testing.assert_close(out[0], torch.tensor([0.3, 0.4]))
    assert (out[1] == 0).all()
    assert out[2].isnan().all()  # NaN in, NaN out
    out[:2].sum().backward()
    assert (x.grad[1] == 0).all()  # a zero row has gradient 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scaled_distances_carry_the_bits_of_the_direct_formulas(dtype: torch.dtype) -> None:
    a, b = _emb(0, 3.0, dtype), _emb(1, 3.0, dtype)
    squared = (a - b).pow(2).sum(dim=1)
    assert torch.equal(paired_distance(a, b, "squared_euclidean"), squared)
    assert torch.equal(paired_distance(a, b), squared.sqrt())
    norms = a.pow(2).sum(dim=1)
    direct = torch.addmm(norms[:, None] + b.pow(2).sum(dim=1)[None, :], a, b.T, alpha=-2.0)
    assert torch.equal(distance_matrix(a, b, "squared_euclidean"), direct.clamp_min(0.0))
    assert torch.equal(distance_matrix(a, b), direct.clamp_min(0.0).sqrt())
    length = torch.linalg.vector_norm(a, dim=1, keepdim=True)
    assert torch.equal(normalize(a), a / length)


@pytest.mark.parametrize("scale", SCALES)
def test_zero_distance_keeps_a_zero_gradient_at_any_scale(scale: float) -> None:
    x = _emb(0, scale).requires_grad_()
    d = paired_distance(x, x.detach().clone())
    assert (d == 0).all()
    d.sum().backward()
    assert (x.grad == 0).all()
    x.grad = None
    distance_matrix(x).diagonal().sum().backward()
    assert (x.grad == 0).all()


# --- losses ---------------------------------------------------------------------------

LOSSES: dict[str, tuple[Callable[..., Tensor], int]] = {
    "contrastive": (lambda a, b: F.contrastive_loss(a, b, PAIRS), 2),
    "contrastive-dissimilar": (lambda a, b: F.contrastive_loss(a, b, torch.zeros(N)), 2),
    "contrastive-soft": (lambda a, b: F.contrastive_loss(a, b, torch.linspace(0, 1, N)), 2),
    "contrastive-legacy": (lambda a, b: F.contrastive_loss(a, b, PAIRS, caffe_legacy=True), 2),
    "contrastive-cosine": (lambda a, b: F.contrastive_loss(a, b, PAIRS, distance="cosine"), 2),
    "contrastive-manhattan": (
        lambda a, b: F.contrastive_loss(a, b, PAIRS, distance="manhattan"),
        2,
    ),
    "triplet": (lambda a, b: F.triplet_loss(a, b, b.roll(1, 0), margin=1.0), 2),
    "triplet-cosine": (
        lambda a, b: F.triplet_loss(a, b, b.roll(1, 0), margin=0.2, distance="cosine"),
        2,
    ),
    "triplet-manhattan": (
        lambda a, b: F.triplet_loss(a, b, b.roll(1, 0), margin=1.0, distance="manhattan"),
        2,
    ),
    "cosine_similarity": (lambda a, b: F.cosine_similarity_loss(a, b, torch.zeros(N)), 2),
    "info_nce": (lambda a, b: F.info_nce(a, b), 2),
    "info_nce-clip": (lambda a, b: F.info_nce(a, b, symmetric=True), 2),
    "nt_xent": (lambda a, b: F.nt_xent(a, b), 2),
    "supcon": (lambda a: F.supcon(a, LABELS), 1),
    "supcon-tiled": (lambda a: F.supcon(a, LABELS, chunk_size=2), 1),
    "all_pairs": (lambda a: F.all_pairs_contrastive_loss(a, LABELS), 1),
    "all_pairs-cosine-tiled": (
        lambda a: F.all_pairs_contrastive_loss(a, LABELS, distance="cosine", chunk_size=2),
        1,
    ),
    "batch_all": (lambda a: F.batch_all_triplet_loss(a, LABELS, margin=1.0), 1),
    "batch_hard": (lambda a: F.batch_hard_triplet_loss(a, LABELS, margin=1.0), 1),
    "batch_hard-tiled": (
        lambda a: F.batch_hard_triplet_loss(a, LABELS, margin=1.0, chunk_size=2),
        1,
    ),
}

# losses whose value can exceed the largest float at these scales (½ d² of similar pairs)
MAY_BE_INF = {"contrastive", "contrastive-soft", "contrastive-legacy", "all_pairs"}
MAY_BE_INF |= {"contrastive-manhattan"}


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_large_finite_inputs_give_no_nan_loss_and_finite_gradients(name: str, scale: float) -> None:
    fn, count = LOSSES[name]
    inputs = [t.requires_grad_() for t in _pair(scale)[:count]]
    loss = fn(*inputs)
    assert not loss.isnan()
    if name not in MAY_BE_INF:
        assert torch.isfinite(loss)
    for grad in torch.autograd.grad(loss, inputs):
        assert torch.isfinite(grad).all(), name


@pytest.mark.parametrize("scale", SCALES)
def test_contrastive_loss_of_large_inputs_against_float64(scale: float) -> None:
    a, b = _pair(scale)
    y = PAIRS.double()
    d = torch.linalg.vector_norm(a.double() - b.double(), dim=1)
    per_pair = F.contrastive_loss(a, b, PAIRS, margin=1.0, reduction="none")
    expected = 0.5 * (y * d**2 + (1 - y) * (1.0 - d).clamp_min(0.0) ** 2)
    # float32 holds the dissimilar pairs' 0 and the identical pair's 0; the similar pairs'
    # ½ d² of about 1e40 or 1e60 is beyond the largest float32: inf, as float32 rounds it
    assert torch.equal(per_pair.double().isinf(), expected > torch.finfo(torch.float32).max)
    finite = ~per_pair.isinf()
    torch.testing.assert_close(per_pair[finite].double(), expected[finite])


@pytest.mark.parametrize("scale", SCALES)
def test_triplet_loss_of_large_inputs_against_float64(scale: float) -> None:
    a, p, n = _emb(0, scale), _emb(1, scale), _emb(2, scale)
    expected = (
        torch.linalg.vector_norm(a.double() - p.double(), dim=1)
        - torch.linalg.vector_norm(a.double() - n.double(), dim=1)
        + 1.0
    ).clamp_min(0.0)
    got = F.triplet_loss(a, p, n, margin=1.0, reduction="none").double()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=scale * 1e-6)


@pytest.mark.parametrize("scale", SCALES)
def test_a_large_vector_is_not_taken_for_zero(scale: float) -> None:
    a = _emb(0, scale)
    # cos(a, a) = 1: a perfect score of 1 costs nothing (a zero vector would cost 1)
    loss = F.cosine_similarity_loss(a, a, torch.ones(N))
    torch.testing.assert_close(loss, torch.tensor(0.0), rtol=0.0, atol=1e-6)
    torch.testing.assert_close(
        F.info_nce(a, a.flip(0)), F.info_nce(_emb(0), _emb(0).flip(0)), rtol=1e-5, atol=1e-6
    )


def test_squared_euclidean_losses_refuse_inputs_whose_squares_overflow() -> None:
    a, b = _pair(1e20)
    message = "must not exceed .* in magnitude with distance='squared_euclidean'"
    with pytest.raises(ValueError, match="^x1 " + message):
        F.contrastive_loss(a, b, PAIRS, distance="squared_euclidean")
    with pytest.raises(ValueError, match="^anchor " + message):
        F.triplet_loss(a, b, b, margin=1.0, distance="squared_euclidean")
    for loss in (F.all_pairs_contrastive_loss, F.batch_hard_triplet_loss):
        with pytest.raises(ValueError, match="^embeddings " + message):
            loss(a, LABELS, margin=1.0, distance="squared_euclidean")
    # below the bound every squared distance is finite, and so is the triplet loss
    small = _emb(0, 1e17)
    loss = F.triplet_loss(
        small, small.roll(1, 0), small.roll(2, 0), margin=1.0, distance="squared_euclidean"
    )
    assert torch.isfinite(loss)


def test_the_euclidean_tiles_refuse_inputs_whose_squared_norms_overflow() -> None:
    a = _emb(0, 1e20)
    message = "must not exceed .* in magnitude on the tiled path with distance='euclidean'"
    with pytest.raises(ValueError, match="^embeddings " + message):
        F.all_pairs_contrastive_loss(a, LABELS, chunk_size=2)
    with pytest.raises(ValueError, match="^embeddings " + message):
        F.batch_all_triplet_loss(a, LABELS, margin=1.0, chunk_size=2)
    # batch-hard takes the tiles for its choice only: large inputs are fine there
    torch.testing.assert_close(
        F.batch_hard_triplet_loss(a, LABELS, margin=1.0, chunk_size=2),
        F.batch_hard_triplet_loss(a, LABELS, margin=1.0),
    )


def test_float64_inputs_scale_as_far() -> None:
    a, b = _emb(0, 1e200, torch.float64), _emb(1, 1e200, torch.float64)
    d = paired_distance(a, b)
    assert torch.isfinite(d).all()
    torch.testing.assert_close(d / 1e200, paired_distance(a / 1e200, b / 1e200))


def test_dot_product_losses_refuse_inputs_whose_logits_could_overflow() -> None:
    a, b = _emb(0, 1e20), _emb(1, 1e20)
    message = "must not exceed .* in magnitude with normalize=False"
    with pytest.raises(ValueError, match="^query " + message):
        F.info_nce(a, b, normalize=False)
    with pytest.raises(ValueError, match="^negatives " + message):
        F.info_nce(a[:, :] * 1e-20, b * 1e-20, negatives=b, normalize=False)
    with pytest.raises(ValueError, match="^embeddings " + message):
        F.supcon(a, LABELS, normalize=False)
    # a learnable temperature enters the bound by its value
    tau = torch.tensor(0.5, requires_grad=True)
    with pytest.raises(ValueError, match=r"at temperature 0\.5"):
        F.info_nce(a, b, normalize=False, temperature=tau)
    # normalized, the same inputs are fine; and below the bound the loss is finite
    assert torch.isfinite(F.info_nce(a, b)) and torch.isfinite(F.supcon(a, LABELS))
    limit = math.sqrt(torch.finfo(torch.float32).max * 0.07 / (4 * D))
    big = _emb(2) / _emb(2).abs().amax() * limit * 0.99
    for loss in (
        F.info_nce(big, big.roll(1, 0), normalize=False),
        F.supcon(big, LABELS, normalize=False),
    ):
        assert torch.isfinite(loss)


def test_the_dot_product_bound_is_a_value_check() -> None:
    import contrastkit

    a, b = _emb(0, 1e20), _emb(1, 1e20)
    with contrastkit.validation(False):
        F.info_nce(a, b, normalize=False)  # not refused: the caller turned value checks off
