"""Tests for ``contrastkit.evaluation.metrics``: the verification metrics.

The ROC curve and its area are compared with scikit-learn. Everything else is compared
with deliberately naive references written here from the definitions: Python loops over
every candidate threshold. The retrieval metrics, re-exported by this module, are tested
in ``test_retrieval.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import sklearn.metrics
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.evaluation import metrics
from contrastkit.evaluation.metrics import (
    accuracy_at_threshold,
    best_threshold,
    equal_error_rate,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_metrics,
    verification_pairs,
)

FAST = settings(max_examples=25, deadline=None)

# --------------------------------------------------------------------------------------
# Naive references
# --------------------------------------------------------------------------------------


def _rates(d: Sequence[float], s: Sequence[int], t: float) -> tuple[float, float]:
    """(FPR, TPR) at threshold t by counting."""
    pos = [x for x, y in zip(d, s, strict=True) if y == 1]
    neg = [x for x, y in zip(d, s, strict=True) if y == 0]
    tp = sum(1 for x in pos if x <= t)
    fp = sum(1 for x in neg if x <= t)
    return fp / len(neg), tp / len(pos)


def _ref_thresholds(d: Sequence[float]) -> list[float]:
    return [-math.inf, *sorted(set(d))]


def _ref_eer(d: Sequence[float], s: Sequence[int]) -> tuple[float, float]:
    ts = _ref_thresholds(d)
    points = [_rates(d, s, t) for t in ts]
    for k in range(1, len(ts)):
        fpr, tpr = points[k]
        fnr = 1.0 - tpr
        if fpr >= fnr:
            prev_fpr, prev_tpr = points[k - 1]
            prev_fnr = 1.0 - prev_tpr
            if fpr == fnr:
                return fpr, ts[k]
            gap_before = prev_fnr - prev_fpr
            gap_after = fpr - fnr
            alpha = gap_before / (gap_before + gap_after)
            t_before = ts[k - 1] if k > 1 else ts[1]
            return (
                prev_fpr + alpha * (fpr - prev_fpr),
                t_before + alpha * (ts[k] - t_before),
            )
    raise AssertionError("no crossing")


def _ref_tar(d: Sequence[float], s: Sequence[int], far: float) -> float:
    best = 0.0
    for t in _ref_thresholds(d):
        fpr, tpr = _rates(d, s, t)
        if fpr <= far and tpr > best:
            best = tpr
    return best


def _ref_accuracy(d: Sequence[float], s: Sequence[int], t: float) -> float:
    correct = 0
    for x, y in zip(d, s, strict=True):
        predicted = 1 if x <= t else 0
        correct += predicted == y
    return correct / len(d)


def _ref_best_threshold(d: Sequence[float], s: Sequence[int]) -> tuple[float, float]:
    values = sorted(set(d))
    candidates = [values[0] - 1.0]
    for a, b in itertools.pairwise(values):
        middle = (a + b) / 2.0
        candidates.append(middle if a <= middle < b else a)  # neighbouring floats
    candidates.append(values[-1] + 1.0)
    best_t, best_acc = None, -1.0
    for t in sorted(candidates):
        acc = _ref_accuracy(d, s, t)
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t, best_acc


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


@st.composite
def pair_data(draw: st.DrawFn, *, integers: bool = False) -> tuple[list[float], list[int]]:
    """Distances (with ties likely) and labels holding both classes."""
    n = draw(st.integers(2, 30))
    if integers:
        d = draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n))
        d = [float(x) for x in d]
    else:
        pool = draw(
            st.lists(
                st.floats(0.0, 10.0, allow_nan=False, allow_subnormal=False),
                min_size=1,
                max_size=n,
            )
        )
        d = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    s = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    i, j = draw(st.sampled_from([(a, b) for a in range(n) for b in range(n) if a != b]))
    s[i], s[j] = 1, 0
    return d, s


# --------------------------------------------------------------------------------------
# ROC and AUC against scikit-learn
# --------------------------------------------------------------------------------------


@FAST
@given(pair_data())
def test_roc_curve_matches_sklearn(data: tuple[list[float], list[int]]) -> None:
    d, s = data
    fpr, tpr, thresholds = roc_curve(d, s)
    ref_fpr, ref_tpr, ref_t = sklearn.metrics.roc_curve(s, -np.asarray(d), drop_intermediate=False)
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)
    np.testing.assert_array_equal(thresholds, -ref_t)
    # thresholds are the distinct distances after -inf, and each point is exact
    assert thresholds.tolist() == _ref_thresholds(d)
    for f, t, thr in zip(fpr, tpr, thresholds, strict=True):
        assert (f, t) == _rates(d, s, thr)


@FAST
@given(pair_data())
def test_roc_auc_matches_sklearn_and_pair_count(data: tuple[list[float], list[int]]) -> None:
    d, s = data
    auc = roc_auc(d, s)
    assert isinstance(auc, float)
    assert auc == pytest.approx(sklearn.metrics.roc_auc_score(s, -np.asarray(d)), abs=1e-12)
    pos = [x for x, y in zip(d, s, strict=True) if y]
    neg = [x for x, y in zip(d, s, strict=True) if not y]
    wins = sum(1.0 if p < n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert auc == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-12)


def test_roc_curve_tiny_case() -> None:
    fpr, tpr, thresholds = roc_curve([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thresholds.tolist() == [-math.inf, 0.1, 0.35, 0.4, 0.8]
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0]) == 0.75


# --------------------------------------------------------------------------------------
# EER, TAR@FAR, best threshold, accuracy against loops over thresholds
# --------------------------------------------------------------------------------------


@FAST
@given(pair_data())
def test_equal_error_rate_matches_reference(data: tuple[list[float], list[int]]) -> None:
    d, s = data
    eer, threshold = equal_error_rate(d, s)
    ref_eer, ref_threshold = _ref_eer(d, s)
    assert eer == pytest.approx(ref_eer, abs=1e-12)
    assert threshold == pytest.approx(ref_threshold, abs=1e-9)
    assert min(d) <= threshold <= max(d)
    # bracketed by the best mean error and the best worst error over thresholds
    rates = [_rates(d, s, t) for t in _ref_thresholds(d)]
    assert min((f + 1 - t) / 2 for f, t in rates) - 1e-12 <= eer
    assert eer <= min(max(f, 1 - t) for f, t in rates) + 1e-12


@FAST
@given(pair_data(), st.floats(1e-4, 0.999))
def test_tar_at_far_matches_reference(data: tuple[list[float], list[int]], far: float) -> None:
    d, s = data
    assert tar_at_far(d, s, far=far) == _ref_tar(d, s, far)


@FAST
@given(pair_data())
def test_tar_at_far_exact_at_achievable_rates(data: tuple[list[float], list[int]]) -> None:
    d, s = data
    n_neg = s.count(0)
    for fp in range(1, n_neg):
        far = fp / n_neg
        assert tar_at_far(d, s, far=far) == _ref_tar(d, s, far)


@FAST
@given(pair_data())
def test_best_threshold_matches_reference(data: tuple[list[float], list[int]]) -> None:
    d, s = data
    threshold = best_threshold(d, s)
    ref_threshold, ref_accuracy = _ref_best_threshold(d, s)
    assert threshold == ref_threshold
    assert accuracy_at_threshold(d, s, threshold=threshold) == ref_accuracy
    # no threshold at all does better than the chosen one
    for t in _ref_thresholds(d)[1:]:
        assert _ref_accuracy(d, s, t) <= ref_accuracy


@FAST
@given(pair_data(), st.floats(-1.0, 11.0))
def test_accuracy_matches_reference(data: tuple[list[float], list[int]], t: float) -> None:
    d, s = data
    assert accuracy_at_threshold(d, s, threshold=t) == _ref_accuracy(d, s, t)


def test_verification_tiny_cases() -> None:
    d, s = [0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0]
    # ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FPR = FNR = .5 exactly at t = 0.35
    assert equal_error_rate(d, s) == (0.5, 0.35)
    assert tar_at_far(d, s, far=0.49) == 0.5
    assert tar_at_far(d, s, far=0.5) == 1.0
    # splits after 0.1 and after 0.4 both give 3/4: the smaller midpoint wins
    assert best_threshold(d, s) == (0.1 + 0.35) / 2
    assert accuracy_at_threshold(d, s, threshold=0.375) == 0.5
    assert accuracy_at_threshold(d, s, threshold=0.6) == 0.75
    # a tie between a positive and a negative: EER halfway along the diagonal segment
    assert equal_error_rate([1.0, 2.0, 2.0, 3.0], [1, 1, 0, 0]) == (0.25, 1.5)
    # the closest pair is negative: only accepting nothing keeps FPR below 1/2
    assert tar_at_far([0.0, 1.0, 2.0, 3.0], [0, 1, 1, 0], far=0.4) == 0.0
    # accept-nothing and accept-everything candidates
    assert best_threshold([1.0, 2.0, 3.0], [0, 0, 1]) == 0.0
    assert best_threshold([1.0, 2.0, 3.0], [1, 1, 0]) == 2.5
    assert best_threshold([1.0, 2.0, 3.0], [0, 1, 1]) == 4.0
    assert best_threshold([5.0, 5.0, 5.0], [1, 1, 0]) == 6.0
    assert accuracy_at_threshold([1.0, 2.0], [1, 1], threshold=1.5) == 0.5


def test_best_threshold_extreme_values_stay_finite_and_exact() -> None:
    # min - 1 == min for huge values: the reject-all threshold is still below the minimum
    t = best_threshold([1e300, 1.5e300], [0, 1])  # reject all and accept all tie at 1/2
    assert math.isfinite(t) and t < 1e300
    # the midpoint of neighbouring floats still splits them
    a, b = 1.0, float(np.nextafter(1.0, 2.0))
    t = best_threshold([a, b], [1, 0])
    assert a <= t < b
    assert accuracy_at_threshold([a, b], [1, 0], threshold=t) == 1.0
    # a + b overflows
    t = best_threshold([1.5e308, 1.7e308], [1, 0])
    assert 1.5e308 < t < 1.7e308
    # max + 1 == max: the accept-all threshold stays finite
    t = best_threshold([1.0, 1.0, 1.7e308], [0, 1, 1])
    assert math.isfinite(t) and t >= 1.7e308


@FAST
@given(st.data())
def test_perfect_separation(data: st.DataObject) -> None:
    pos = data.draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10))
    neg = data.draw(st.lists(st.floats(1.5, 3.0), min_size=1, max_size=10))
    d = pos + neg
    s = [1] * len(pos) + [0] * len(neg)
    assert roc_auc(d, s) == 1.0
    eer, threshold = equal_error_rate(d, s)
    assert eer == 0.0
    assert max(pos) <= threshold < min(neg)
    assert tar_at_far(d, s, far=1e-6) == 1.0
    assert accuracy_at_threshold(d, s, threshold=best_threshold(d, s)) == 1.0
    assert max(pos) <= best_threshold(d, s) < min(neg)


@FAST
@given(pair_data(integers=True), st.sampled_from(["affine", "cube", "exp"]))
def test_invariant_to_monotone_rescaling(data: tuple[list[float], list[int]], f: str) -> None:
    d, s = data
    transform: Callable[[float], float] = {
        "affine": lambda x: 3.0 * x + 7.0,
        "cube": lambda x: x**3,
        "exp": math.exp,
    }[f]
    g = [transform(x) for x in d]
    assert roc_auc(g, s) == roc_auc(d, s)
    assert equal_error_rate(g, s)[0] == equal_error_rate(d, s)[0]
    for far in (0.1, 0.3, 0.5):
        assert tar_at_far(g, s, far=far) == tar_at_far(d, s, far=far)
    acc_d = accuracy_at_threshold(d, s, threshold=best_threshold(d, s))
    acc_g = accuracy_at_threshold(g, s, threshold=best_threshold(g, s))
    assert acc_g == acc_d


@FAST
@given(pair_data())
def test_flipping_labels_complements_auc(data: tuple[list[float], list[int]]) -> None:
    d, s = data
    flipped = [1 - y for y in s]
    assert roc_auc(d, flipped) == pytest.approx(1.0 - roc_auc(d, s), abs=1e-12)


def test_accepts_tensors_arrays_and_lists() -> None:
    d = [0.3, 0.1, 0.7, 0.5, 0.2]
    s = [1, 1, 0, 0, 0]
    expected = (roc_auc(d, s), equal_error_rate(d, s), best_threshold(d, s))
    as_tensor = torch.tensor(d, dtype=torch.float64, requires_grad=True)
    variants = [
        (as_tensor, torch.tensor(s)),
        (as_tensor * 1.0, torch.tensor(s, dtype=torch.bool)),
        (np.asarray(d), np.asarray(s, dtype=np.float32)),
        (tuple(d), [bool(y) for y in s]),
    ]
    for dd, ss in variants:
        assert (roc_auc(dd, ss), equal_error_rate(dd, ss), best_threshold(dd, ss)) == expected
    half = torch.tensor(d, dtype=torch.bfloat16)
    assert 0.0 <= roc_auc(half, s) <= 1.0


# --------------------------------------------------------------------------------------
# verification_metrics
# --------------------------------------------------------------------------------------


def test_verification_metrics_keys_and_values() -> None:
    rng = np.random.default_rng(0)
    val_d, val_s = rng.random(50), rng.integers(0, 2, 50)
    test_d, test_s = rng.random(40), rng.integers(0, 2, 40)
    out = verification_metrics(val_d, val_s, test_d, test_s, fars=(1e-2, 1e-3, 0.25, 1e-5))
    assert list(out) == [
        "roc_auc",
        "eer",
        "tar@far=0.01",
        "tar@far=0.001",
        "tar@far=0.25",
        "tar@far=1e-05",
        "threshold",
        "accuracy",
        "val_accuracy",
    ]
    assert all(type(v) is float for v in out.values())
    assert out["roc_auc"] == roc_auc(test_d, test_s)
    assert out["eer"] == equal_error_rate(test_d, test_s)[0]
    assert out["tar@far=0.25"] == tar_at_far(test_d, test_s, far=0.25)
    assert out["threshold"] == best_threshold(val_d, val_s)
    assert out["accuracy"] == accuracy_at_threshold(test_d, test_s, threshold=out["threshold"])
    assert out["val_accuracy"] == accuracy_at_threshold(val_d, val_s, threshold=out["threshold"])
    assert list(verification_metrics(val_d, val_s, test_d, test_s)) == [
        "roc_auc",
        "eer",
        "tar@far=0.01",
        "tar@far=0.001",
        "threshold",
        "accuracy",
        "val_accuracy",
    ]


@FAST
@given(pair_data(), pair_data(), pair_data())
def test_test_data_never_moves_the_threshold(
    val: tuple[list[float], list[int]],
    test_a: tuple[list[float], list[int]],
    test_b: tuple[list[float], list[int]],
) -> None:
    a = verification_metrics(*val, *test_a)
    b = verification_metrics(*val, *test_b)
    assert a["threshold"] == b["threshold"] == best_threshold(*val)
    assert a["val_accuracy"] == b["val_accuracy"]


# --------------------------------------------------------------------------------------
# verification_pairs
# --------------------------------------------------------------------------------------


def _check_pairs(labels: list[int], i: torch.Tensor, j: torch.Tensor, same: torch.Tensor) -> None:
    assert i.dtype == j.dtype == same.dtype == torch.int64
    assert i.shape == j.shape == same.shape
    pairs = list(zip(i.tolist(), j.tolist(), strict=True))
    assert all(a < b for a, b in pairs)  # i < j: no self pair
    assert len(set(pairs)) == len(pairs)  # no duplicate
    for (a, b), y in zip(pairs, same.tolist(), strict=True):
        assert y == int(labels[a] == labels[b])
    m = len(pairs) // 2
    assert same.tolist() == [1] * m + [0] * m  # balanced, positives first
    assert pairs[:m] == sorted(pairs[:m]) and pairs[m:] == sorted(pairs[m:])


@pytest.mark.parametrize(
    "labels",
    [
        [0, 0, 1, 1],
        [3, 1, 3, 2, 1, 3, 7, 7, 7, 7],
        [0] * 10 + [1],  # fewer negatives (10) than positives (45)
        [c // 2 for c in range(200)],  # many negatives: sparse sampling
        [c % 4 for c in range(60)],
    ],
)
def test_verification_pairs_properties(labels: list[int]) -> None:
    i, j, same = verification_pairs(torch.tensor(labels))
    _check_pairs(labels, i, j, same)
    n = len(labels)
    n_pos = sum(labels[a] == labels[b] for a in range(n) for b in range(a + 1, n))
    n_neg = n * (n - 1) // 2 - n_pos
    assert same.numel() == 2 * min(n_pos, n_neg)
    if n_pos <= n_neg:  # every positive pair is there
        positives = {(a, b) for a in range(n) for b in range(a + 1, n) if labels[a] == labels[b]}
        assert set(zip(i[same == 1].tolist(), j[same == 1].tolist(), strict=True)) == positives
    again = verification_pairs(np.asarray(labels))
    assert all(torch.equal(x, y) for x, y in zip((i, j, same), again, strict=True))


def test_verification_pairs_max_pairs_and_seed() -> None:
    labels = [c % 5 for c in range(40)]
    i, j, same = verification_pairs(labels, max_pairs=21, seed=3)
    _check_pairs(labels, i, j, same)
    assert same.numel() == 20
    again = verification_pairs(labels, max_pairs=21, seed=3)
    assert all(torch.equal(x, y) for x, y in zip((i, j, same), again, strict=True))
    other = verification_pairs(labels, max_pairs=21, seed=4)
    assert not all(torch.equal(x, y) for x, y in zip((i, j, same), other, strict=True))
    i, j, same = verification_pairs(labels, max_pairs=2)
    _check_pairs(labels, i, j, same)
    assert same.tolist() == [1, 0]


@FAST
@given(
    st.lists(st.integers(0, 4), min_size=2, max_size=40),
    st.none() | st.integers(2, 50),
    st.integers(0, 10),
)
def test_verification_pairs_random(labels: list[int], max_pairs: int | None, seed: int) -> None:
    n = len(labels)
    n_pos = sum(labels[a] == labels[b] for a in range(n) for b in range(a + 1, n))
    n_neg = n * (n - 1) // 2 - n_pos
    if n_pos == 0 or n_neg == 0:
        with pytest.raises(ValueError, match="labels"):
            verification_pairs(labels, max_pairs=max_pairs, seed=seed)
        return
    i, j, same = verification_pairs(labels, max_pairs=max_pairs, seed=seed)
    _check_pairs(labels, i, j, same)
    limit = math.inf if max_pairs is None else max_pairs // 2
    assert same.numel() == 2 * min(n_pos, n_neg, limit)


# --------------------------------------------------------------------------------------
# Bad input: every case names the argument
# --------------------------------------------------------------------------------------

D, S = [0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]
VERIFICATION_BAD = [
    ("distances", lambda: roc_auc("abc", S), TypeError),
    ("distances", lambda: roc_auc(None, S), TypeError),
    ("distances", lambda: roc_auc([[0.1, 0.2]], [1, 0]), ValueError),
    ("distances", lambda: roc_auc([], []), ValueError),
    ("distances", lambda: roc_auc([0.1, math.nan, 0.3, 0.4], S), ValueError),
    ("distances", lambda: roc_auc([0.1, math.inf, 0.3, 0.4], S), ValueError),
    ("distances", lambda: roc_auc([True, False, True, False], S), TypeError),
    ("distances", lambda: roc_auc(np.array(["a", "b"]), [1, 0]), TypeError),
    ("distances", lambda: roc_auc([[0.1], [0.2, 0.3]], [1, 0]), ValueError),
    ("same", lambda: roc_auc(D, [1, 0, 1]), ValueError),
    ("same", lambda: roc_auc(D, [1, 0, 2, 0]), ValueError),
    ("same", lambda: roc_auc(D, [1.0, 0.0, 0.5, 0.0]), ValueError),
    ("same", lambda: roc_auc(D, [1, 0, -1, 0]), ValueError),
    ("same", lambda: roc_auc(D, [1, 1, 1, 1]), ValueError),
    ("same", lambda: roc_curve(D, [0, 0, 0, 0]), ValueError),
    ("same", lambda: equal_error_rate(D, [1, 1, 1, 1]), ValueError),
    ("same", lambda: tar_at_far(D, [0, 0, 0, 0]), ValueError),
    ("same", lambda: best_threshold(D, [0, 0, 0, 0]), ValueError),
    ("same", lambda: accuracy_at_threshold(D, "1010", threshold=0.2), TypeError),
    ("far", lambda: tar_at_far(D, S, far=0.0), ValueError),
    ("far", lambda: tar_at_far(D, S, far=1.0), ValueError),
    ("far", lambda: tar_at_far(D, S, far=math.nan), ValueError),
    ("far", lambda: tar_at_far(D, S, far="0.1"), TypeError),
    ("threshold", lambda: accuracy_at_threshold(D, S, threshold=math.inf), ValueError),
    ("threshold", lambda: accuracy_at_threshold(D, S, threshold=None), TypeError),
    ("threshold", lambda: accuracy_at_threshold(D, S, threshold=True), TypeError),
    ("fars", lambda: verification_metrics(D, S, D, S, fars=()), ValueError),
    ("fars", lambda: verification_metrics(D, S, D, S, fars=0.1), TypeError),
    (r"fars\[1\]", lambda: verification_metrics(D, S, D, S, fars=(0.1, 2.0)), ValueError),
    ("fars", lambda: verification_metrics(D, S, D, S, fars=(0.1, 0.1)), ValueError),
    ("val_same", lambda: verification_metrics(D, [1, 1, 1, 1], D, S), ValueError),
    ("val_distances", lambda: verification_metrics(D[:2], S, D, S), ValueError),
    ("test_same", lambda: verification_metrics(D, S, D, [0, 0, 0, 0]), ValueError),
    ("test_distances", lambda: verification_metrics(D, S, [math.nan] * 4, S), ValueError),
    ("labels", lambda: verification_pairs([0, 1, 2]), ValueError),
    ("labels", lambda: verification_pairs([4, 4, 4]), ValueError),
    ("labels", lambda: verification_pairs([0.0, 0.0, 1.0]), TypeError),
    ("labels", lambda: verification_pairs([]), ValueError),
    ("labels", lambda: verification_pairs(torch.zeros(2, 2, dtype=torch.long)), ValueError),
    ("max_pairs", lambda: verification_pairs([0, 0, 1], max_pairs=1), ValueError),
    ("max_pairs", lambda: verification_pairs([0, 0, 1], max_pairs=0), ValueError),
    ("max_pairs", lambda: verification_pairs([0, 0, 1], max_pairs=2.0), TypeError),
    ("seed", lambda: verification_pairs([0, 0, 1], seed="a"), TypeError),
]


@pytest.mark.parametrize(
    ("name", "call", "error"),
    VERIFICATION_BAD,
    ids=[f"{i}-{case[0]}" for i, case in enumerate(VERIFICATION_BAD)],
)
def test_bad_input_names_the_argument(
    name: str, call: Callable[[], object], error: type[Exception]
) -> None:
    with pytest.raises(error, match=name):
        call()


def test_metrics_module_does_not_import_matplotlib() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(metrics))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "matplotlib" not in imported
    assert set(metrics.__all__) == {
        "accuracy_at_threshold",
        "best_threshold",
        "equal_error_rate",
        "map_at_r",
        "precision_at_1",
        "recall_at_k",
        "retrieval_metrics",
        "roc_auc",
        "roc_curve",
        "tar_at_far",
        "verification_metrics",
        "verification_pairs",
    }
