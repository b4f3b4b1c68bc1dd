"""Tests for ``contrastkit.evaluation.anomaly``: anomaly scores and their evaluation.

The k-NN and centroid scores are compared with deliberately naive references: Python
loops over rows and :func:`reference.distance`, neighbours found with ``sorted()``. The
metrics are compared with scikit-learn and with a double loop (ROC-AUC) and a loop over
thresholds (average precision) written from the definitions. Reconstruction errors are
checked with a stand-in model that has a ``reconstruct`` method and records how it was
called (mode, gradient, batch sizes, devices).
"""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import sklearn.metrics
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import reference as ref
from contrastkit.evaluation import anomaly
from contrastkit.evaluation.anomaly import (
    anomaly_metrics,
    centroid_scores,
    knn_scores,
    reconstruction_errors,
)
from contrastkit.models import Autoencoder, MLPDecoder, MLPEncoder

FAST = settings(max_examples=25, deadline=None)
DISTANCES = ["euclidean", "squared_euclidean", "cosine", "manhattan"]
DISTANCE_ERROR = re.escape("distance must be one of ['cosine', 'euclidean', 'manhattan', 'sq")


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------
# Naive references
# --------------------------------------------------------------------------------------


def ref_knn(reference_rows, embedding_rows, k: int, name: str, exclude_self: bool) -> list[float]:
    reference_rows, embedding_rows = ref.as_rows(reference_rows), ref.as_rows(embedding_rows)
    out = []
    for i, z in enumerate(embedding_rows):
        d = [
            ref.distance(z, r, name)
            for j, r in enumerate(reference_rows)
            if not (exclude_self and j == i)
        ]
        nearest = sorted(d)[:k]
        out.append(sum(nearest) / k)
    return out


def ref_centroids(reference_rows, labels, name: str) -> list[list[float]]:
    reference_rows = ref.as_rows(reference_rows)
    labels = [int(v) for v in labels]
    centroids = []
    for c in sorted(set(labels)):
        members = [r for r, label in zip(reference_rows, labels, strict=True) if label == c]
        if name == "cosine":
            members = [
                [v / ref.norm(r) for v in r] if ref.norm(r) > 0 else [0.0] * len(r) for r in members
            ]
        dim = len(members[0])
        centroids.append([sum(r[f] for r in members) / len(members) for f in range(dim)])
    return centroids


def ref_centroid_scores(reference_rows, labels, embedding_rows, name: str) -> list[float]:
    centroids = ref_centroids(reference_rows, labels, name)
    return [min(ref.distance(z, c, name) for c in centroids) for z in ref.as_rows(embedding_rows)]


def ref_auc(scores, is_anomaly) -> float:
    anomalous = [s for s, y in zip(scores, is_anomaly, strict=True) if y]
    normal = [s for s, y in zip(scores, is_anomaly, strict=True) if not y]
    total = 0.0
    for a in anomalous:
        for n in normal:
            total += 1.0 if a > n else 0.5 if a == n else 0.0
    return total / (len(anomalous) * len(normal))


def ref_average_precision(scores, is_anomaly) -> float:
    n_anomalies = sum(1 for y in is_anomaly if y)
    ap, previous_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        flagged = [y for s, y in zip(scores, is_anomaly, strict=True) if s >= t]
        hits = sum(1 for y in flagged if y)
        recall = hits / n_anomalies
        ap += (recall - previous_recall) * hits / len(flagged)
        previous_recall = recall
    return ap


def ref_mse_per_sample(reconstruction: Tensor, target: Tensor) -> list[float]:
    out = []
    for r_row, x_row in zip(reconstruction.tolist(), target.tolist(), strict=True):
        r_flat, x_flat = np.ravel(r_row).tolist(), np.ravel(x_row).tolist()
        out.append(sum((a - b) ** 2 for a, b in zip(r_flat, x_flat, strict=True)) / len(x_flat))
    return out


# --------------------------------------------------------------------------------------
# A stand-in autoencoder
# --------------------------------------------------------------------------------------


class Recorder(nn.Module):
    """``reconstruct(x) = dropout(x @ W)``: records the mode, grad mode and batches it saw."""

    def __init__(self, features: int = 3, *, p: float = 0.5) -> None:
        super().__init__()
        self.weight = nn.Parameter(randn(features, features, seed=7))
        self.dropout = nn.Dropout(p)
        self.calls: list[dict] = []

    def reconstruct(self, x: Tensor) -> Tensor:
        self.calls.append(
            {
                "training": self.training,
                "dropout_training": self.dropout.training,
                "grad": torch.is_grad_enabled(),
                "size": x.shape[0],
                "device": x.device,
            }
        )
        flat = x.reshape(x.shape[0], -1)
        return self.dropout(flat @ self.weight).reshape(x.shape)


class Halve(nn.Module):
    """No parameters: ``reconstruct(x) = x / 2``."""

    def reconstruct(self, x: Tensor) -> Tensor:
        return x / 2


class Failing(Recorder):
    def reconstruct(self, x: Tensor) -> Tensor:
        super().reconstruct(x)
        raise RuntimeError("decoder exploded")


# --------------------------------------------------------------------------------------
# knn_scores
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("k", [1, 3, 8])
def test_knn_matches_brute_force(distance, k):
    reference, embeddings = randn(9, 4, seed=1), randn(6, 4, seed=2)
    scores = knn_scores(reference, embeddings, k=k, distance=distance)
    expected = ref_knn(reference, embeddings, k, distance, exclude_self=False)
    assert scores.shape == (6,) and scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("chunk_size", [1, 3, 5, 4096])
def test_knn_exclude_self_matches_brute_force(distance, chunk_size):
    reference = randn(11, 3, seed=3)
    scores = knn_scores(
        reference, reference, k=4, distance=distance, exclude_self=True, chunk_size=chunk_size
    )
    expected = ref_knn(reference, reference, 4, distance, exclude_self=True)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_knn_exclude_self_largest_k_uses_every_other_row():
    reference = randn(5, 2, seed=4)
    scores = knn_scores(reference, reference, k=4, exclude_self=True, chunk_size=2)
    expected = ref_knn(reference, reference, 4, "euclidean", exclude_self=True)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9)


def test_knn_worked_numbers_and_ties():
    reference = torch.tensor([[0.0], [0.0], [1.0], [3.0]])  # a duplicate row
    # exclusion is by index: the duplicate of a row still counts, at distance 0
    scores = knn_scores(reference, reference, k=1, exclude_self=True)
    assert scores.tolist() == [0.0, 0.0, 1.0, 2.0]
    scores = knn_scores(reference, reference, k=2, exclude_self=True, distance="manhattan")
    assert scores.tolist() == [0.5, 0.5, 1.0, 2.5]
    # 0.5 is equally far from 0, 0 and 1: whichever tied neighbour is taken, same value
    z = torch.tensor([[0.5], [2.0], [-1.0]])
    assert knn_scores(reference, z, k=1).tolist() == [0.5, 1.0, 1.0]
    assert knn_scores(reference, z, k=3).tolist() == pytest.approx([0.5, 4 / 3, 4 / 3])
    assert knn_scores(reference, z, k=4).tolist() == pytest.approx([1.0, 1.5, 2.0])


def test_knn_integer_ties_match_brute_force():
    gen = torch.Generator().manual_seed(5)
    reference = torch.randint(-2, 3, (20, 2), generator=gen).double()
    embeddings = torch.randint(-3, 4, (12, 2), generator=gen).double()
    for k in (1, 2, 5, 19):
        for exclude_self, z in ((False, embeddings), (True, reference)):
            scores = knn_scores(
                reference, z, k=k, distance="squared_euclidean", exclude_self=exclude_self
            )
            expected = ref_knn(reference, z, k, "squared_euclidean", exclude_self)
            assert scores.tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("distance", DISTANCES)
def test_knn_chunk_sizes_give_equal_results(exclude_self, distance):
    reference = randn(40, 6, seed=6, dtype=torch.float32)
    embeddings = reference if exclude_self else randn(37, 6, seed=7, dtype=torch.float32)
    results = [
        knn_scores(
            reference,
            embeddings,
            k=3,
            distance=distance,
            exclude_self=exclude_self,
            chunk_size=chunk,
        )
        for chunk in (1, 7, 13, 36, 37, 10_000)
    ]
    for result in results[1:]:
        torch.testing.assert_close(result, results[0])


def test_knn_chunks_bound_the_distance_matrix(monkeypatch):
    shapes = []
    original = anomaly.distance_matrix

    def spy(x, y, distance):
        shapes.append((tuple(x.shape), tuple(y.shape), distance))
        return original(x, y, distance)

    monkeypatch.setattr(anomaly, "distance_matrix", spy)
    knn_scores(randn(10, 2), randn(7, 2, seed=1), k=2, chunk_size=3, distance="cosine")
    assert shapes == [((3, 2), (10, 2), "cosine")] * 2 + [((1, 2), (10, 2), "cosine")]


def test_knn_dtypes_and_no_gradient():
    reference = randn(8, 3).requires_grad_()
    scores = knn_scores(reference, reference, k=2, exclude_self=True)
    assert not scores.requires_grad and scores.dtype == torch.float64
    half = knn_scores(reference.detach().half(), randn(4, 3, seed=1).half(), k=2)
    assert half.dtype == torch.float32
    mixed = knn_scores(reference.detach().float(), randn(4, 3, seed=1), k=2)
    assert mixed.dtype == torch.float64


@st.composite
def point_sets(draw: st.DrawFn) -> tuple[Tensor, Tensor]:
    m = draw(st.integers(2, 12))
    n = draw(st.integers(1, 8))
    dim = draw(st.integers(1, 3))
    coords = st.floats(-5.0, 5.0, allow_nan=False, allow_subnormal=False)
    reference = draw(st.lists(st.lists(coords, min_size=dim, max_size=dim), min_size=m))
    embeddings = draw(st.lists(st.lists(coords, min_size=dim, max_size=dim), min_size=n))
    return torch.tensor(reference, dtype=torch.float64), torch.tensor(
        embeddings, dtype=torch.float64
    )


@FAST
@given(point_sets(), st.sampled_from(DISTANCES), st.randoms(use_true_random=False))
def test_knn_properties(points, distance, rng):
    reference, embeddings = points
    m = reference.shape[0]
    scores = [knn_scores(reference, embeddings, k=k, distance=distance) for k in range(1, m + 1)]
    for smaller, larger in itertools.pairwise(scores):  # non-decreasing in k
        assert bool((smaller <= larger + 1e-9).all())
    order = list(range(m))
    rng.shuffle(order)
    shuffled = knn_scores(reference[order], embeddings, k=min(2, m), distance=distance)
    torch.testing.assert_close(shuffled, scores[min(2, m) - 1])
    # a reference row is its own nearest neighbour unless excluded
    own = knn_scores(reference, reference, k=1, distance="manhattan")
    assert own.tolist() == [0.0] * m


# --------------------------------------------------------------------------------------
# centroid_scores
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCES)
def test_centroid_matches_brute_force(distance):
    reference, embeddings = randn(15, 4, seed=8), randn(9, 4, seed=9)
    labels = torch.tensor([7, -3, 100, 7, 7, -3, 100, 100, 7, -3, 5, 7, -3, 100, 7])
    scores = centroid_scores(reference, labels, embeddings, distance=distance)
    expected = ref_centroid_scores(reference, labels.tolist(), embeddings, distance)
    assert scores.shape == (9,) and scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_centroid_worked_numbers():
    reference = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])  # centroids (1, 0) and (10, 1)
    z = torch.tensor([[1.0, 3.0], [10.0, 1.0], [5.5, 0.5]])
    scores = centroid_scores(reference, labels, z, distance="manhattan")
    assert scores.tolist() == [3.0, 0.0, 5.0]
    one_class = centroid_scores(reference, torch.zeros(4, dtype=torch.long), z)
    mean = reference.mean(dim=0)
    torch.testing.assert_close(one_class, (z - mean).norm(dim=1))


def test_centroid_cosine_averages_unit_rows():
    # the raw mean (5, 0.5) points along x; the mean of the unit rows is at 45 degrees
    reference = torch.tensor([[10.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    scores = centroid_scores(reference, labels, torch.tensor([[3.0, 3.0]]), distance="cosine")
    assert scores.item() == pytest.approx(0.0, abs=1e-12)
    raw = 1.0 - ref.cosine_similarity([3.0, 3.0], [5.0, 0.5])
    assert raw > 0.2  # the raw mean would have given a very different score


def test_centroid_cosine_zero_centroid_is_at_distance_one():
    reference = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])  # class 0 cancels; class 1 has a zero row
    z = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    scores = centroid_scores(reference, labels, z, distance="cosine")
    assert scores.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)


def test_centroid_bool_labels_dtypes_and_no_gradient():
    reference = randn(6, 2).requires_grad_()
    labels = torch.tensor([True, False, True, False, True, True])
    scores = centroid_scores(reference, labels, randn(3, 2, seed=1))
    assert not scores.requires_grad
    z = randn(3, 2, seed=1)
    expected = ref_centroid_scores(reference.detach(), labels.int().tolist(), z, "euclidean")
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9)
    half = centroid_scores(reference.detach().half(), labels, randn(3, 2, seed=1).half())
    assert half.dtype == torch.float32


# --------------------------------------------------------------------------------------
# reconstruction_errors
# --------------------------------------------------------------------------------------


def test_reconstruction_errors_match_manual_mse():
    model = Recorder(features=6)
    x = randn(10, 2, 3, seed=11)
    errors = reconstruction_errors(model, x, batch_size=4)
    with torch.no_grad():
        reconstruction = (x.reshape(10, 6) @ model.weight).reshape(10, 2, 3)  # dropout off
    assert errors.shape == (10,) and errors.dtype == torch.float64
    np.testing.assert_allclose(errors.numpy(), ref_mse_per_sample(reconstruction, x), rtol=1e-12)


def test_reconstruction_errors_worked_numbers_without_parameters():
    x = torch.tensor([[2.0, 2.0], [0.0, 4.0], [0.0, 0.0]])
    assert reconstruction_errors(Halve(), x).tolist() == [1.0, 2.0, 0.0]
    assert reconstruction_errors(Halve(), x, batch_size=1).tolist() == [1.0, 2.0, 0.0]


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 1024])
def test_reconstruction_errors_batches(batch_size):
    model = Recorder()
    x = randn(10, 3, seed=12)
    errors = reconstruction_errors(model, x, batch_size=batch_size)
    sizes = [call["size"] for call in model.calls]
    assert sum(sizes) == 10 and max(sizes) == min(batch_size, 10)
    assert sizes == [min(batch_size, 10 - start) for start in range(0, 10, batch_size)]
    reference = reconstruction_errors(Recorder(), x, batch_size=10)
    torch.testing.assert_close(errors, reference)


def test_reconstruction_errors_run_in_eval_mode_without_gradient():
    model = Recorder()
    model.train()
    x = randn(5, 3, seed=13)
    first = reconstruction_errors(model, x)
    second = reconstruction_errors(model, x)
    assert all(not c["training"] and not c["dropout_training"] for c in model.calls)
    assert all(not c["grad"] for c in model.calls)
    assert torch.equal(first, second)  # no dropout: deterministic
    assert not first.requires_grad
    assert model.weight.grad is None


def test_reconstruction_errors_restore_every_training_flag():
    model = Recorder()
    model.train()
    model.dropout.eval()  # a frozen submodule stays frozen
    reconstruction_errors(model, randn(4, 3))
    assert model.training and not model.dropout.training
    model.eval()
    reconstruction_errors(model, randn(4, 3))
    assert not model.training and not model.dropout.training


def test_reconstruction_errors_restore_the_mode_after_an_error():
    model = Failing()
    model.train()
    with pytest.raises(RuntimeError, match="decoder exploded"):
        reconstruction_errors(model, randn(4, 3))
    assert model.calls[0]["training"] is False
    assert model.training and model.dropout.training


class _Sigmoid(nn.Module):
    """Probabilities for ``kind="bce"``: ``sigmoid(inner.reconstruct(x))``."""

    def __init__(self, inner: Recorder) -> None:
        super().__init__()
        self.inner = inner

    def reconstruct(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.inner.reconstruct(x))


@pytest.mark.parametrize("kind", ["bce", "bce_with_logits"])
def test_reconstruction_errors_binary_kinds(kind):
    inner = Recorder(features=4)
    model = _Sigmoid(inner) if kind == "bce" else inner
    x = torch.rand(7, 4, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    errors = reconstruction_errors(model, x, kind=kind, batch_size=3)
    logits = (x @ inner.weight).tolist()
    expected = []
    for z_row, x_row in zip(logits, x.tolist(), strict=True):
        terms = []
        for z, t in zip(z_row, x_row, strict=True):
            p = 1.0 / (1.0 + math.exp(-z))
            terms.append(-(t * math.log(p) + (1.0 - t) * math.log(1.0 - p)))
        expected.append(sum(terms) / len(terms))
    np.testing.assert_allclose(errors.numpy(), expected, rtol=1e-9)


class _TokenAutoencoder(nn.Module):
    """Integer tokens ``(N, L)`` to logits ``(N, C, L)`` over ``C = 4`` classes."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(randn(4, 4, seed=15))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.logits[x].permute(0, 2, 1)  # (N, L, C) -> (N, C, L)


def test_reconstruction_errors_cross_entropy_of_class_indices():
    x = torch.tensor([[0, 1, 2], [3, 3, 3], [1, 0, 2]])
    model = _TokenAutoencoder()
    errors = reconstruction_errors(model, x, kind="cross_entropy", batch_size=2)
    table = model.logits.detach().tolist()
    expected = []
    for row in x.tolist():
        terms = []
        for token in row:
            logits = table[token]
            log_total = math.log(sum(math.exp(v) for v in logits))
            terms.append(log_total - logits[token])
        expected.append(sum(terms) / len(terms))
    np.testing.assert_allclose(errors.numpy(), expected, rtol=1e-9)


def test_reconstruction_errors_of_a_denoising_autoencoder_add_no_noise():
    x = randn(12, 6, seed=23)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        encoder = MLPEncoder(6, embedding_dim=2, hidden=(8,), dropout=0.5, batch_norm=True)
        decoder = MLPDecoder(2, 6, hidden=(8,), batch_norm=True)
        model = Autoencoder(encoder, decoder, noise_std=1.0).double()
        model.train()
        model.reconstruct(x)  # moves the batch-norm running statistics from their start
    errors = reconstruction_errors(model, x, batch_size=5)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(reconstruction_errors(model, x, batch_size=12), errors)
    model.eval()
    with torch.no_grad():
        reconstruction = model.reconstruct(x)
    np.testing.assert_allclose(errors.numpy(), ref_mse_per_sample(reconstruction, x), rtol=1e-9)


def test_reconstruction_errors_stay_on_the_inputs_device_for_a_model_without_parameters():
    errors = reconstruction_errors(Halve(), torch.ones(3, 2, dtype=torch.float16))
    assert errors.device == torch.device("cpu") and errors.dtype == torch.float32


# --------------------------------------------------------------------------------------
# anomaly_metrics
# --------------------------------------------------------------------------------------


def test_metrics_worked_numbers():
    out = anomaly_metrics([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert list(out) == ["roc_auc", "average_precision", "anomalies", "normal"]
    assert out["roc_auc"] == 0.75
    assert out["average_precision"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert (out["anomalies"], out["normal"]) == (2, 2)
    assert isinstance(out["anomalies"], int) and isinstance(out["roc_auc"], float)


def test_metrics_perfect_reversed_and_tied_scores():
    perfect = anomaly_metrics(torch.tensor([0.1, 0.2, 0.9, 1.5]), torch.tensor([0, 0, 1, 1]))
    assert perfect["roc_auc"] == 1.0 and perfect["average_precision"] == 1.0
    reversed_ = anomaly_metrics([0.9, 1.5, 0.1, 0.2], [0, 0, 1, 1])
    assert reversed_["roc_auc"] == 0.0
    # ranked last: precision 1/3 at the third, 2/4 at the fourth
    assert reversed_["average_precision"] == pytest.approx(0.5 / 3 + 0.5 * 2 / 4)
    tied = anomaly_metrics([1.0] * 5, [1, 0, 0, 0, 0])  # all tied: chance level
    assert tied["roc_auc"] == 0.5 and tied["average_precision"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "convert",
    [
        lambda s, y: (s, y),
        lambda s, y: (np.asarray(s), np.asarray(y, dtype=bool)),
        lambda s, y: (torch.tensor(s, requires_grad=True), torch.tensor(y, dtype=torch.bool)),
        lambda s, y: (torch.tensor(s, dtype=torch.float16), torch.tensor(y, dtype=torch.float32)),
    ],
)
def test_metrics_match_sklearn(convert):
    rng = np.random.default_rng(16)
    y = rng.integers(0, 2, 60)
    # rounded to 0.1: ties, and float16 keeps the order of these values
    s = np.round(rng.normal(size=60) + 1.2 * y, 1)
    out = anomaly_metrics(*convert(s.tolist(), y.tolist()))
    assert out["roc_auc"] == pytest.approx(sklearn.metrics.roc_auc_score(y, s))
    assert out["average_precision"] == pytest.approx(sklearn.metrics.average_precision_score(y, s))
    assert (out["anomalies"], out["normal"]) == (int(y.sum()), int(60 - y.sum()))


@st.composite
def scored_samples(draw: st.DrawFn) -> tuple[list[float], list[int]]:
    n = draw(st.integers(2, 25))
    pool = draw(st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=n))
    scores = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    i, j = draw(st.sampled_from([(a, b) for a in range(n) for b in range(n) if a != b]))
    labels[i], labels[j] = 1, 0
    return scores, labels


@FAST
@given(scored_samples())
def test_metrics_match_brute_force(data):
    scores, labels = data
    out = anomaly_metrics(scores, labels)
    assert out["roc_auc"] == pytest.approx(ref_auc(scores, labels))
    assert out["average_precision"] == pytest.approx(ref_average_precision(scores, labels))
    # a strictly increasing transform of the scores changes nothing
    squashed = anomaly_metrics([math.atan(s) for s in scores], labels)
    assert squashed["roc_auc"] == pytest.approx(out["roc_auc"])
    assert squashed["average_precision"] == pytest.approx(out["average_precision"])
    # negated scores: the ROC-AUC becomes its complement
    negated = anomaly_metrics([-s for s in scores], labels)
    assert negated["roc_auc"] == pytest.approx(1.0 - out["roc_auc"])


def test_knn_scores_find_planted_anomalies():
    normal = randn(200, 5, seed=17)
    test = torch.cat([randn(50, 5, seed=18), randn(10, 5, seed=19) + 6.0])
    is_anomaly = torch.cat([torch.zeros(50), torch.ones(10)])
    for scores in (
        knn_scores(normal, test, k=5),
        centroid_scores(normal, torch.zeros(200, dtype=torch.long), test),
    ):
        out = anomaly_metrics(scores, is_anomaly)
        assert out["roc_auc"] == 1.0 and out["average_precision"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

REF, EMB = randn(6, 3), randn(4, 3, seed=1)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        (([[0.0]], EMB), {}, TypeError, "reference must be a torch.Tensor, got list"),
        ((REF, EMB.numpy()), {}, TypeError, "embeddings must be a torch.Tensor, got ndarray"),
        ((REF.long(), EMB), {}, TypeError, "reference must be a real floating-point tensor"),
        ((REF[0], EMB), {}, ValueError, r"reference must be 2-D, got shape \(3,\)"),
        ((REF, EMB[None]), {}, ValueError, r"embeddings must be 2-D, got shape \(1, 4, 3\)"),
        ((REF[:0], EMB), {}, ValueError, "reference must hold at least one row"),
        ((REF, EMB[:0]), {}, ValueError, "embeddings must hold at least one row"),
        ((REF, EMB[:, :2]), {}, ValueError, r"same number of features, got shapes \(6, 3\) and"),
        (
            (REF, EMB.clone().index_fill_(0, torch.tensor([1]), math.nan)),
            {},
            ValueError,
            r"embeddings must be finite, got 3 NaN",
        ),
        (
            (REF.clone().fill_(math.inf), EMB),
            {},
            ValueError,
            "reference must be finite",
        ),
        ((REF, EMB), {"k": 0}, ValueError, "k must be >= 1, got 0"),
        ((REF, EMB), {"k": 2.0}, TypeError, "k must be an integer, got float 2.0"),
        ((REF, EMB), {"k": True}, TypeError, "k must be an integer, got bool"),
        ((REF, EMB), {"k": 7}, ValueError, r"k must be at most the number of reference rows \(6\)"),
        (
            (REF, REF),
            {"k": 6, "exclude_self": True},
            ValueError,
            r"k must be at most the number of other reference rows \(5 with exclude_self",
        ),
        (
            (REF[:1], REF[:1]),
            {"k": 1, "exclude_self": True},
            ValueError,
            r"other reference rows \(0",
        ),
        (
            (REF, EMB),
            {"exclude_self": True},
            ValueError,
            r"embeddings must be the reference rows, got shapes \(4, 3\) and \(6, 3\)",
        ),
        (
            (REF, REF + 1.0),
            {"exclude_self": True},
            ValueError,
            "must be the reference rows, .* with different values",
        ),
        ((REF, EMB), {"exclude_self": 1}, TypeError, "exclude_self must be a bool, got int"),
        ((REF, EMB), {"chunk_size": 0}, ValueError, "chunk_size must be >= 1, got 0"),
        ((REF, EMB), {"chunk_size": "8"}, TypeError, "chunk_size must be an integer"),
        ((REF, EMB), {"distance": "dot"}, ValueError, DISTANCE_ERROR),
        ((REF, EMB), {"distance": None}, TypeError, "distance must be the name of a distance"),
    ],
)
def test_knn_bad_input(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        knn_scores(*args, **kwargs)


def test_knn_positional_options_are_refused():
    with pytest.raises(TypeError):
        knn_scores(REF, EMB, 2)  # type: ignore[misc]


LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        ((REF, LABELS.float(), EMB), {}, TypeError, "reference_labels must be an integer tensor"),
        ((REF, LABELS.tolist(), EMB), {}, TypeError, "reference_labels must be a torch.Tensor"),
        ((REF, LABELS[:5], EMB), {}, ValueError, r"reference_labels must have shape \(6,\)"),
        ((REF, LABELS[None], EMB), {}, ValueError, r"reference_labels must have shape \(6,\)"),
        ((REF, LABELS, EMB[:, :1]), {}, ValueError, "same number of features"),
        ((REF, LABELS, EMB * math.nan), {}, ValueError, "embeddings must be finite"),
        ((REF.long(), LABELS, EMB), {}, TypeError, "reference must be a real floating"),
        ((REF, LABELS, EMB), {"distance": "cos"}, ValueError, "distance must be one of"),
    ],
)
def test_centroid_bad_input(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        centroid_scores(*args, **kwargs)


class NoReconstruct(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


@pytest.mark.parametrize(
    ("model", "inputs", "kwargs", "error", "pattern"),
    [
        (Halve, "x", {}, TypeError, "model must be a torch.nn.Module, got type"),
        (NoReconstruct(), "x", {}, TypeError, "model must have a reconstruct"),
        (Halve(), [[0.0]], {}, TypeError, "inputs must be a torch.Tensor, got list"),
        (Halve(), torch.ones(2, 2, dtype=torch.bool), {}, TypeError, "inputs must hold real"),
        (Halve(), torch.ones(2, 2, dtype=torch.long), {}, TypeError, "kind='mse'"),
        (Halve(), torch.tensor(1.0), {}, ValueError, r"batch \(N, \.\.\.\) .* got shape \(\)"),
        (Halve(), torch.ones(0, 3), {}, ValueError, r"at least one sample, got shape \(0, 3\)"),
        (Halve(), torch.tensor([[1.0, math.nan]]), {}, ValueError, "inputs must be finite"),
        (Halve(), "x", {"kind": "l1"}, ValueError, "kind must be one of"),
        (Halve(), "x", {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        (Halve(), "x", {"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
        (
            Halve(),
            torch.tensor([[0.5, 1.5]]),
            {"kind": "bce"},
            ValueError,
            r"inputs must lie in \[0, 1\] for kind='bce' .* from 0.5 to 1.5",
        ),
        (Halve(), torch.tensor([[-0.5]]), {"kind": "bce_with_logits"}, ValueError, "lie in"),
    ],
)
def test_reconstruction_errors_bad_input(model, inputs, kwargs, error, pattern):
    inputs = torch.ones(3, 2) if isinstance(inputs, str) else inputs
    with pytest.raises(error, match=pattern):
        reconstruction_errors(model, inputs, **kwargs)


def test_reconstruction_errors_check_before_running_the_model():
    model = Recorder()
    with pytest.raises(ValueError):
        reconstruction_errors(model, torch.tensor([[1.0, 2.0, math.inf]]))
    with pytest.raises(ValueError):
        reconstruction_errors(model, torch.ones(2, 3), batch_size=0)
    assert model.calls == []


def test_reconstruction_errors_report_a_reconstruction_of_the_wrong_shape():
    class Shrink(nn.Module):
        def reconstruct(self, x: Tensor) -> Tensor:
            return x[:, :1]

    with pytest.raises(ValueError, match="same shape"):
        reconstruction_errors(Shrink(), torch.ones(2, 3))


@pytest.mark.parametrize(
    ("scores", "is_anomaly", "error", "pattern"),
    [
        ([0.1, 0.2], [1, 1], ValueError, "is_anomaly must contain both anomalies .* got 2 anom"),
        ([0.1, 0.2], [0, 0], ValueError, "got 0 anomalies and 2 normal"),
        ([0.1, 0.2], [0, 2], ValueError, r"is_anomaly must be 0 \(normal\) or 1 .* \[2\]"),
        ([0.1, 0.2], [0.0, 0.5], ValueError, r"other values \[0.5\]"),
        ([0.1, 0.2, 0.3], [0, 1], ValueError, r"is_anomaly must have shape \(3,\)"),
        ([0.1, math.nan], [0, 1], ValueError, "scores must be finite, got 1 NaN"),
        ([0.1, math.inf], [0, 1], ValueError, "scores must be finite"),
        ([[0.1, 0.2]], [[0, 1]], ValueError, "scores must be 1-D"),
        ([], [], ValueError, "scores must hold at least one score"),
        ([True, False], [0, 1], TypeError, "scores must hold real-valued scores, got dtype bool"),
        ("0.1", [0], TypeError, "scores must be a tensor, numpy array or list"),
        ([0.1, 0.2], ["a", "b"], TypeError, "is_anomaly must hold real numbers"),
        ([0.1, 0.2], None, TypeError, "is_anomaly must be a tensor"),
    ],
)
def test_metrics_bad_input(scores, is_anomaly, error, pattern):
    with pytest.raises(error, match=pattern):
        anomaly_metrics(scores, is_anomaly)


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------


def test_module_exports_and_documents():
    assert sorted(anomaly.__all__) == [
        "anomaly_metrics",
        "centroid_scores",
        "knn_scores",
        "reconstruction_errors",
    ]
    for name in anomaly.__all__:
        doc = getattr(anomaly, name).__doc__
        assert "math::" in doc and "Example:" in doc and "Reference:" in doc, name
        assert "Args:" in doc and "Raises:" in doc, name


def test_import_contrastkit_stays_light():
    code = (
        "import sys, contrastkit; "
        "heavy = [m for m in ('sklearn', 'matplotlib', 'contrastkit.evaluation.anomaly') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from contrastkit.evaluation import anomaly as imported  # on use

    assert imported is anomaly


# --------------------------------------------------------------------------------------
# CUDA (run where PyTorch sees a device)
# --------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_scores_match_cpu():
    reference, embeddings = randn(50, 4, seed=20), randn(30, 4, seed=21)
    labels = torch.arange(50) % 3
    for distance in DISTANCES:
        expected = knn_scores(reference, embeddings, k=3, distance=distance, chunk_size=7)
        got = knn_scores(reference.cuda(), embeddings.cuda(), k=3, distance=distance, chunk_size=7)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expected)
        self_cpu = knn_scores(reference, reference, k=3, distance=distance, exclude_self=True)
        self_gpu = knn_scores(
            reference.cuda(), reference.cuda(), k=3, distance=distance, exclude_self=True
        )
        torch.testing.assert_close(self_gpu.cpu(), self_cpu)
        expected = centroid_scores(reference, labels, embeddings, distance=distance)
        got = centroid_scores(reference.cuda(), labels.cuda(), embeddings.cuda(), distance=distance)
        torch.testing.assert_close(got.cpu(), expected)
    with pytest.raises(ValueError, match="same device"):
        knn_scores(reference.cuda(), embeddings)


@cuda
def test_cuda_reconstruction_errors_move_batches_to_the_model():
    model = Recorder()
    x = randn(9, 3, seed=22)
    expected = reconstruction_errors(model, x, batch_size=4)
    model.calls.clear()
    model.cuda()
    errors = reconstruction_errors(model, x, batch_size=4)
    assert all(call["device"].type == "cuda" for call in model.calls)
    assert errors.device == x.device
    torch.testing.assert_close(errors, expected)
    on_gpu = reconstruction_errors(model, x.cuda(), batch_size=4)
    assert on_gpu.device.type == "cuda"
