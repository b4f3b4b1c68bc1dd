"""The k-NN and linear-probe accuracies, against brute-force loops and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from contrastkit.evaluation import (
    knn_accuracy,
    knn_predict,
    linear_probe,
    linear_probe_accuracy,
)


def _blobs(seed: int, n: int, classes: int = 4, dim: int = 8, spread: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 2
    labels = torch.arange(n) % classes
    return centres[labels] + spread * torch.randn(n, dim, generator=g), labels


def _brute_knn(train, y_train, test, k, temperature, weighting):
    """One query at a time, every neighbour in a Python loop."""
    out = []
    for q in test.tolist():
        sims = []
        qn = math.sqrt(sum(v * v for v in q))
        for row, y in zip(train.tolist(), y_train.tolist(), strict=True):
            rn = math.sqrt(sum(v * v for v in row))
            sims.append((sum(a * b for a, b in zip(q, row, strict=True)) / (qn * rn), y))
        sims.sort(key=lambda s: -s[0])
        votes: dict[int, float] = {}
        for s, y in sims[:k]:
            w = math.exp(s / temperature) if weighting == "temperature" else 1.0
            votes[y] = votes.get(y, 0.0) + w
        best = max(votes.values())
        out.append(min(c for c, v in votes.items() if v == best))
    return np.array(out)


@pytest.mark.parametrize("weighting", ["temperature", "majority"])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_predict_matches_a_brute_force_loop(k, weighting):
    train, y_train = _blobs(0, 60, spread=2.5)
    test, _ = _blobs(1, 25, spread=2.5)
    got = knn_predict(train, y_train, test, k=k, temperature=0.1, weighting=weighting)
    want = _brute_knn(train, y_train, test, k, 0.1, weighting)
    np.testing.assert_array_equal(got, want)


def test_knn_accuracy_is_the_share_of_right_predictions():
    train, y_train = _blobs(2, 80, spread=3.0)
    test, y_test = _blobs(3, 40, spread=3.0)
    predicted = _brute_knn(train, y_train, test, 20, 0.07, "temperature")
    want = float(np.mean(predicted == y_test.numpy()))
    assert 0.0 < want < 1.0  # a test that could fail both ways
    assert knn_accuracy(train, y_train, test, y_test) == pytest.approx(want)


def test_temperature_weights_can_overturn_a_majority():
    # two far neighbours of class 1 against one very close neighbour of class 0
    train = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.01]])
    assert knn_predict(train, labels, query, k=3, weighting="majority").tolist() == [1]
    assert knn_predict(train, labels, query, k=3, weighting="temperature").tolist() == [0]


def test_knn_is_scale_invariant_and_takes_numpy_and_lists():
    train, y_train = _blobs(4, 30)
    test, y_test = _blobs(5, 10)
    a = knn_accuracy(train, y_train, test, y_test, k=3)
    b = knn_accuracy((train * 7).numpy(), y_train.numpy(), test.tolist(), y_test.tolist(), k=3)
    assert b == a


def test_knn_handles_more_queries_than_one_chunk():
    train, y_train = _blobs(6, 50)
    test, _ = _blobs(7, 2100)
    got = knn_predict(train, y_train, test, k=5)
    want = np.concatenate([knn_predict(train, y_train, part, k=5) for part in test.split(700)])
    np.testing.assert_array_equal(got, want)


def test_linear_probe_matches_sklearn_on_standardized_embeddings():
    train, y_train = _blobs(8, 120, spread=2.5)
    test, y_test = _blobs(9, 60, spread=2.5)
    scaler = StandardScaler().fit(train.numpy().astype(np.float64))
    clf = LogisticRegression(max_iter=1000).fit(
        scaler.transform(train.numpy().astype(np.float64)), y_train.numpy()
    )
    predicted = clf.predict(scaler.transform(test.numpy().astype(np.float64)))
    want = float(np.mean(predicted == y_test.numpy()))
    assert 0.0 < want < 1.0
    probe = linear_probe(train, y_train, test, y_test)
    assert probe.accuracy == pytest.approx(want)
    assert probe.converged and probe.iterations >= 1
    assert linear_probe_accuracy(train, y_train, test, y_test) == probe.accuracy


def test_linear_probe_reports_no_convergence_instead_of_warning():
    train, y_train = _blobs(10, 80, spread=3.0)
    test, y_test = _blobs(11, 20, spread=3.0)
    probe = linear_probe(train, y_train, test, y_test, max_iter=1)  # warnings are errors here
    assert probe.converged is False
    assert probe.iterations == 1


def test_linear_probe_keeps_a_constant_dimension_finite():
    train, y_train = _blobs(12, 40)
    test, y_test = _blobs(13, 20)
    train[:, 0] = 3.0
    test[:, 0] = 3.0
    assert 0.0 <= linear_probe_accuracy(train, y_train, test, y_test) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be >= 1"),
        ({"k": -3}, ValueError, "k must be >= 1"),
        ({"k": 11}, ValueError, "k must be at most the 10 rows"),
        ({"k": 2.0}, TypeError, "k must be an integer"),
        ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
        ({"weighting": "vote"}, ValueError, "weighting must be one of"),
    ],
)
def test_knn_refuses_bad_options(kwargs, error, match):
    train, y = _blobs(0, 10)
    with pytest.raises(error, match=match):
        knn_accuracy(train, y, train, y, **{"k": 3, **kwargs})


@pytest.mark.parametrize("probe", [knn_accuracy, linear_probe_accuracy])
def test_bad_inputs_are_refused_naming_the_argument(probe):
    train, y = _blobs(0, 10)
    with pytest.raises(ValueError, match="train_embeddings must be 2-D"):
        probe(train[0], y, train, y)
    with pytest.raises(ValueError, match="test_embeddings must have the 8 columns"):
        probe(train, y, train[:, :3], y)
    with pytest.raises(ValueError, match="train_labels must have shape \\(10,\\)"):
        probe(train, y[:5], train, y)
    with pytest.raises(ValueError, match="test_labels must have shape \\(10,\\)"):
        probe(train, y, train, y[:4])
    with pytest.raises(TypeError, match="train_labels must be integer class labels"):
        probe(train, y.float(), train, y)
    with pytest.raises(ValueError, match="train_labels must be class indices >= 0"):
        probe(train, y - 1, train, y)
    bad = train.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="test_embeddings must be finite"):
        probe(train, y, bad, y)
    with pytest.raises(ValueError, match="train_embeddings must hold at least one row"):
        probe(train[:0], y[:0], train, y)
    with pytest.raises(TypeError, match="test_embeddings must be a tensor"):
        probe(train, y, "rows", y)


def test_linear_probe_refuses_one_class_and_bad_options():
    train, y = _blobs(0, 10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe_accuracy(train, torch.zeros(10, dtype=torch.long), train, y)
    with pytest.raises(ValueError, match="c must be > 0"):
        linear_probe_accuracy(train, y, train, y, c=0.0)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        linear_probe_accuracy(train, y, train, y, max_iter=0)
