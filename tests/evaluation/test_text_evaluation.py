"""Evaluation of sentence embeddings: the STS correlations against scipy, anchor-positive
retrieval against a brute-force ranking, the verification of labelled pairs, bad input."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from contrastkit.data.text import text_ids
from contrastkit.evaluation import text as text_eval
from contrastkit.evaluation.metrics import verification_metrics
from contrastkit.evaluation.text import (
    anchor_positive_retrieval,
    cosine_similarities,
    pair_verification_metrics,
    similarity_correlation,
)

FAST = settings(max_examples=60, deadline=None)


def ref_cosines(left, right):
    left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    return np.where(norms == 0, 0.0, (left * right).sum(1) / np.where(norms == 0, 1, norms))


def exact_pearson(x, y):
    """Pearson's r from the float values in exact rational arithmetic, one rounding."""
    xs, ys = [Fraction(float(v)) for v in x], [Fraction(float(v)) for v in y]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    vx = sum((a - mx) ** 2 for a in xs)
    vy = sum((b - my) ** 2 for b in ys)
    return math.copysign(math.sqrt(float(cov * cov / (vx * vy))), cov)


def scipy_correlations(cosines, scores):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.NearConstantInputWarning)
        return (
            float(scipy.stats.pearsonr(cosines, scores)[0]),
            float(scipy.stats.spearmanr(cosines, scores)[0]),
        )


# --- cosine similarities -------------------------------------------------------------


def test_cosine_similarities_match_the_formula():
    g = np.random.default_rng(0)
    left, right = g.normal(size=(20, 7)), g.normal(size=(20, 7))
    right[3] = 0.0  # a zero row: similarity 0
    out = cosine_similarities(torch.tensor(left), right)
    assert out.dtype == torch.float64 and out.shape == (20,)
    np.testing.assert_allclose(out.numpy(), ref_cosines(left, right), rtol=1e-13, atol=1e-15)
    assert out[3].item() == 0.0


def test_cosine_similarities_take_float16_and_tensors_with_gradient():
    left = torch.tensor([[1.0, 0.0], [3.0, 4.0]], dtype=torch.float16, requires_grad=True)
    out = cosine_similarities(left, [[2.0, 0.0], [-3.0, -4.0]])
    assert out.tolist() == [1.0, -1.0] and out.dtype == torch.float64


# --- similarity_correlation ------------------------------------------------------------


def test_correlation_by_hand():
    left = [[1.0, 0.0]] * 4
    right = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]]  # cosines 1, 0.707, 0, -1
    out = similarity_correlation(left, right, [4.0, 4.0, 1.0, 0.0])
    # ranks of the cosines 4, 3, 2, 1; of the scores 3.5, 3.5, 2, 1 (a tie, averaged)
    c, s = np.array([4, 3, 2, 1.0]), np.array([3.5, 3.5, 2, 1])
    rho = ((c - c.mean()) @ (s - s.mean())) / np.sqrt(
        ((c - c.mean()) ** 2).sum() * ((s - s.mean()) ** 2).sum()
    )
    assert out["spearman"] == pytest.approx(rho, abs=1e-15)
    assert list(out) == ["pearson", "spearman"]


def test_a_perfect_order_gives_exactly_one():
    left = [[1.0, 0.0]] * 3
    right = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    assert similarity_correlation(left, right, [5.0, 3.0, 0.5])["spearman"] == 1.0
    assert similarity_correlation(left, right, [0.0, 1.0, 2.0])["spearman"] == -1.0


def test_cosines_a_unit_in_the_last_place_apart_still_order_two_pairs():
    # found by hypothesis: cos([1, 2], [1, 2]) is 1 - 2**-53 and cos([1, 0], [1, 0]) is 1;
    # with x - mean(x) the mean rounds onto 1 and r came out 0.707
    embeddings = np.array([[1.0, 2.0], [1.0, 0.0]])
    cosines = cosine_similarities(embeddings, embeddings).numpy()
    assert 0 < cosines[1] - cosines[0] < 1e-15
    out = similarity_correlation(embeddings, embeddings, [0.0, 1.0])
    assert out == {"pearson": 1.0, "spearman": 1.0}


@st.composite
def pairs_with_ties(draw):
    """Small-integer embeddings (so cosines tie) and scores from a few values."""
    n = draw(st.integers(2, 25))
    d = draw(st.integers(1, 4))
    ints = hnp.arrays(np.int64, (n, d), elements=st.integers(-2, 2))
    left, right = draw(ints), draw(ints)
    scores = draw(hnp.arrays(np.float64, (n,), elements=st.sampled_from([0.0, 1.0, 2.5, 5.0])))
    return left.astype(np.float64), right.astype(np.float64), scores


@given(pairs_with_ties())
@FAST
def test_correlations_equal_scipy_with_ties(data):
    left, right, scores = data
    cosines = cosine_similarities(left, right).numpy()
    if cosines.min() == cosines.max() or scores.min() == scores.max():
        with pytest.raises(ValueError, match="are all equal"):
            similarity_correlation(left, right, scores)
        return
    out = similarity_correlation(left, right, scores)
    assert -1.0 <= out["pearson"] <= 1.0 and -1.0 <= out["spearman"] <= 1.0
    # exact references: cosines that differ in the last place still order the pairs
    assert out["pearson"] == pytest.approx(exact_pearson(cosines, scores), abs=1e-12)
    ranks = scipy.stats.rankdata(cosines), scipy.stats.rankdata(scores)
    assert out["spearman"] == pytest.approx(exact_pearson(*ranks), abs=1e-12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pearson, spearman = (
            float(scipy.stats.pearsonr(cosines, scores)[0]),
            float(scipy.stats.spearmanr(cosines, scores)[0]),
        )
    assert out["spearman"] == pytest.approx(spearman, abs=1e-12)
    if not caught:  # scipy's Pearson is inaccurate where it warns of a near-constant input
        assert out["pearson"] == pytest.approx(pearson, abs=1e-12)


@given(st.integers(2, 200), st.integers(0, 2**32 - 1))
@FAST
def test_correlations_equal_scipy_on_random_data(n, seed):
    g = np.random.default_rng(seed)
    left, right = g.normal(size=(n, 16)), g.normal(size=(n, 16))
    scores = g.uniform(0, 5, size=n).round(1)  # STS-like, with ties
    if scores.min() == scores.max():
        scores[0] += 1.0
    out = similarity_correlation(left, right, scores)
    pearson, spearman = scipy_correlations(cosine_similarities(left, right).numpy(), scores)
    assert out["pearson"] == pytest.approx(pearson, abs=1e-12)
    assert out["spearman"] == pytest.approx(spearman, abs=1e-12)


def test_the_scores_scale_does_not_matter_even_near_overflow():
    g = np.random.default_rng(1)
    left, right = g.normal(size=(30, 4)), g.normal(size=(30, 4))
    scores = g.uniform(0, 5, size=30)
    plain = similarity_correlation(left, right, scores)
    huge = similarity_correlation(left, right, scores * 3e307)
    shifted = similarity_correlation(left, right, 2 * scores - 7)
    for out in (huge, shifted):
        assert out["pearson"] == pytest.approx(plain["pearson"], abs=1e-12)
        assert out["spearman"] == pytest.approx(plain["spearman"], abs=1e-12)


@pytest.mark.parametrize(
    ("left", "right", "scores", "error", "match"),
    [
        ([[1.0, 0.0]], [[0.0, 1.0]], [1.0], ValueError, "at least 2 pairs, got 1"),
        ([[1.0, 0.0]] * 2, [[0.0, 1.0], [1.0, 1.0]], [3.0, 3.0], ValueError, "scores are all"),
        ([[1.0, 0.0]] * 2, [[1.0, 0.0], [2.0, 0.0]], [1.0, 3.0], ValueError, "cosine similar"),
        ([[1.0, 0.0]] * 2, [[0.0, 1.0]] * 2, [1.0], ValueError, "one score per pair, 2"),
        ([[1.0, 0.0]] * 2, [[0.0, 1.0]] * 3, [1.0, 2.0], ValueError, "one shape"),
        ([[1.0, 0.0]] * 2, [[0.0, 1.0, 0.0]] * 2, [1.0, 2.0], ValueError, "one shape"),
        ([1.0, 0.0], [0.0, 1.0], [1.0, 2.0], ValueError, "left must be 2-D"),
        ([[1.0, 0.0]] * 2, [[0.0, 1.0]] * 2, [1.0, np.nan], ValueError, "scores must be finite"),
        ([[1.0, np.inf]] * 2, [[0.0, 1.0]] * 2, [1.0, 2.0], ValueError, "left must be finite"),
        ([[1.0, 0.0]] * 2, [[0.0, 1.0]] * 2, [True, False], TypeError, "scores must hold real"),
        ([[True]] * 2, [[1.0]] * 2, [1.0, 2.0], TypeError, "left must hold real-valued"),
        ("ab", [[1.0]], [1.0], TypeError, "left must be a tensor"),
        ([["a"]] * 2, [[1.0]] * 2, [1.0, 2.0], TypeError, "left must hold real numbers"),
        (np.zeros((2, 0)), np.zeros((2, 0)), [1.0, 2.0], ValueError, "at least one feature"),
        (np.zeros((0, 3)), np.zeros((0, 3)), [], ValueError, "left must hold at least one row"),
    ],
)
def test_correlation_bad_input(left, right, scores, error, match):
    with pytest.raises(error, match=match):
        similarity_correlation(left, right, scores)


# --- anchor_positive_retrieval -----------------------------------------------------------


def brute_force_ranks(anchors, positives, ids=None):
    """Each anchor's rank of its own document, from the definition, one loop per anchor."""
    n = len(positives)
    ids = list(range(n)) if ids is None else list(ids)
    a = np.asarray(anchors, np.float64)
    p = np.asarray(positives, np.float64)
    ranks = []
    for i in range(n):
        sims = [ref_cosines(a[i : i + 1], p[j : j + 1])[0] for j in range(n)]
        order = sorted(range(n), key=lambda j: (-sims[j], j))
        documents_before = set()
        for j in order:
            if ids[j] == ids[i]:
                break
            documents_before.add(ids[j])
        ranks.append(1 + len(documents_before))
    return ranks


def metrics_from_ranks(ranks, ks, mrr_at):
    out = {f"mrr_at_{mrr_at}": float(np.mean([1 / r if r <= mrr_at else 0.0 for r in ranks]))}
    for k in ks:
        out[f"recall_at_{k}"] = float(np.mean([r <= k for r in ranks]))
    return out


def assert_metrics_equal(got, expected):
    assert list(got) == list(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_mrr_by_hand():
    anchors = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    positives = [[1.0, 0.1], [1.0, 0.2], [0.0, 1.0]]
    # anchor 0: its positive is nearest (rank 1); anchor 1: row 2 is nearer (rank 2);
    # anchor 2: rows 1 and 0 are nearer (rank 3)
    out = anchor_positive_retrieval(anchors, positives, ks=(1, 2, 3))
    assert out == pytest.approx(
        {
            "mrr_at_10": (1 + 1 / 2 + 1 / 3) / 3,
            "recall_at_1": 1 / 3,
            "recall_at_2": 2 / 3,
            "recall_at_3": 1.0,
        }
    )
    cut = anchor_positive_retrieval(anchors, positives, ks=(1,), mrr_at=2)
    assert cut["mrr_at_2"] == pytest.approx((1 + 1 / 2 + 0) / 3)  # rank 3 is past the cut


def test_the_default_keys_and_a_k_larger_than_the_corpus():
    out = anchor_positive_retrieval([[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]])
    assert list(out) == ["mrr_at_10", "recall_at_1", "recall_at_5", "recall_at_10"]
    assert out["recall_at_1"] == 0.0 and out["recall_at_5"] == 1.0 and out["recall_at_10"] == 1.0
    assert out["mrr_at_10"] == 0.5


def test_copies_of_the_positive_are_one_document():
    p, q = [1.0, 0.0], [0.0, 1.0]
    anchors = [[1.0, 0.1], [1.0, 0.1], [0.2, 1.0]]
    positives = [p, p, q]  # rows 0 and 1 are copies of one text
    ids = text_ids(["p", "p", "q"])
    without = anchor_positive_retrieval(anchors, positives, ks=(1,))
    # anchor 1's own row ties with row 0, which ranks first (the lower index): rank 2
    assert without["recall_at_1"] == pytest.approx(2 / 3)
    with_ids = anchor_positive_retrieval(anchors, positives, ks=(1,), ids=ids)
    assert with_ids == {"mrr_at_10": 1.0, "recall_at_1": 1.0}


def test_copies_of_another_document_count_once():
    q = [0.0, 1.0]
    anchors = [[0.0, 1.0], [0.0, 1.0], [0.9, 1.0]]
    positives = [q, q, [1.0, 0.0]]  # anchor 2 is nearer to q (two copies) than to its own
    ranks_without = brute_force_ranks(anchors, positives)
    ranks_with = brute_force_ranks(anchors, positives, [0, 0, 1])
    assert ranks_without == [1, 2, 3] and ranks_with == [1, 1, 2]
    out = anchor_positive_retrieval(anchors, positives, ks=(1, 2), ids=[7, 7, -3])
    assert_metrics_equal(out, metrics_from_ranks(ranks_with, (1, 2), 10))


@given(st.integers(1, 40), st.integers(1, 8), st.integers(0, 2**32 - 1))
@FAST
def test_retrieval_equals_brute_force_on_random_data(n, d, seed):
    g = np.random.default_rng(seed)
    anchors, positives = g.normal(size=(n, d)), g.normal(size=(n, d))
    ks = (1, 3, 5)
    out = anchor_positive_retrieval(torch.tensor(anchors), positives, ks=ks, mrr_at=4)
    assert_metrics_equal(out, metrics_from_ranks(brute_force_ranks(anchors, positives), ks, 4))


@st.composite
def tied_corpus(draw):
    """Signed, scaled one-hot rows (cosines exactly -1, 0 or 1) and ids from few values."""
    n = draw(st.integers(1, 20))
    d = draw(st.integers(1, 3))

    def rows():
        axis = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, d - 1)))
        scale = draw(hnp.arrays(np.float64, (n,), elements=st.sampled_from([-3.0, -1.0, 0.5, 2.0])))
        out = np.zeros((n, d))
        out[np.arange(n), axis] = scale
        return out

    anchors, positives = rows(), rows()
    ids = draw(st.none() | hnp.arrays(np.int64, (n,), elements=st.integers(0, 4)))
    return anchors, positives, ids


@given(tied_corpus())
@FAST
def test_retrieval_equals_brute_force_with_ties_and_copies(data):
    anchors, positives, ids = data
    ks = (1, 2, 4)
    out = anchor_positive_retrieval(anchors, positives, ks=ks, mrr_at=3, ids=ids)
    expected = metrics_from_ranks(brute_force_ranks(anchors, positives, ids), ks, 3)
    assert_metrics_equal(out, expected)


def test_retrieval_in_chunks_equals_one_piece(monkeypatch):
    g = np.random.default_rng(3)
    anchors, positives = g.normal(size=(37, 5)), g.normal(size=(37, 5))
    positives[5] = positives[9]
    ids = np.arange(37)
    ids[9] = 5
    whole = anchor_positive_retrieval(anchors, positives, ids=ids)
    monkeypatch.setattr(text_eval, "_CHUNK_ELEMENTS", 50)  # 1 anchor per chunk
    assert anchor_positive_retrieval(anchors, positives, ids=ids) == whole
    monkeypatch.setattr(text_eval, "_CHUNK_ELEMENTS", 100)  # 2 per chunk, one left over
    assert anchor_positive_retrieval(anchors, positives, ids=ids) == whole


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ks": ()}, ValueError, "at least one k"),
        ({"ks": (1, 1)}, ValueError, "must not repeat"),
        ({"ks": (0,)}, ValueError, r"ks\[0\] must be >= 1"),
        ({"ks": (1, 2.0)}, TypeError, r"ks\[1\] must be an integer"),
        ({"ks": 5}, TypeError, "ks must be a sequence"),
        ({"ks": "15"}, TypeError, "ks must be a sequence"),
        ({"mrr_at": 0}, ValueError, "mrr_at must be >= 1"),
        ({"mrr_at": True}, TypeError, "mrr_at must be an integer"),
        ({"ids": [0, 1]}, ValueError, "one id per positive, 3"),
        ({"ids": [0.0, 1.0, 2.0]}, TypeError, "ids must be integer ids"),
        ({"ids": [[0, 1, 2]]}, ValueError, "ids must be 1-D"),
        ({"ids": "abc"}, TypeError, "ids must be a tensor"),
    ],
)
def test_retrieval_bad_arguments(kwargs, error, match):
    embeddings = np.eye(3)
    with pytest.raises(error, match=match):
        anchor_positive_retrieval(embeddings, embeddings, **kwargs)


@pytest.mark.parametrize(
    ("anchors", "positives", "error", "match"),
    [
        (np.eye(3), np.eye(2), ValueError, "anchors and positives must have one shape"),
        (np.eye(3), np.ones((3, 4)), ValueError, "one shape"),
        (np.full((2, 2), np.nan), np.eye(2), ValueError, "anchors must be finite"),
        (np.eye(2), [[1.0, 0.0], [0.0, np.inf]], ValueError, "positives must be finite"),
        (np.ones(3), np.ones(3), ValueError, "anchors must be 2-D"),
        (np.zeros((0, 2)), np.zeros((0, 2)), ValueError, "anchors must hold at least one row"),
        (np.eye(2, dtype=bool), np.eye(2), TypeError, "anchors must hold real-valued"),
    ],
)
def test_retrieval_bad_embeddings(anchors, positives, error, match):
    with pytest.raises(error, match=match):
        anchor_positive_retrieval(anchors, positives)


# --- pair_verification_metrics -------------------------------------------------------------


def test_pair_verification_is_the_verification_metrics_of_the_cosine_distance():
    g = np.random.default_rng(4)
    val_l, val_r = g.normal(size=(40, 6)), g.normal(size=(40, 6))
    test_l, test_r = g.normal(size=(50, 6)), g.normal(size=(50, 6))
    val_y, test_y = np.arange(40) % 2, (np.arange(50) % 3 == 0).astype(int)
    val_r[val_y == 1] += val_l[val_y == 1]  # similar pairs are nearer
    test_r[test_y == 1] += test_l[test_y == 1]
    out = pair_verification_metrics(val_l, val_r, val_y, test_l, test_r, test_y, fars=(0.1,))
    expected = verification_metrics(
        1 - ref_cosines(val_l, val_r), val_y, 1 - ref_cosines(test_l, test_r), test_y, fars=(0.1,)
    )
    assert list(out) == list(expected)
    for key in expected:
        assert out[key] == pytest.approx(expected[key], abs=1e-12), key
    assert out["roc_auc"] > 0.8


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"val_labels": [1, 1, 1, 1]}, ValueError, "val_labels must contain both"),
        ({"test_labels": [0, 2, 1, 0]}, ValueError, "test_labels must be 0"),
        ({"test_labels": [0, 1, 1]}, ValueError, "test_labels must have shape"),
        ({"val_right": np.eye(3)}, ValueError, "val_left and val_right must have one shape"),
        ({"test_left": np.full((4, 2), np.nan)}, ValueError, "test_left must be finite"),
        ({"test_right": "x"}, TypeError, "test_right must be a tensor"),
    ],
)
def test_pair_verification_bad_input(changes, error, match):
    left = np.array([[1.0, 0.0]] * 4)
    right = np.array([[1.0, 0.1], [1.0, 0.5], [0.0, 1.0], [-1.0, 0.2]])
    args = {
        "val_left": left,
        "val_right": right,
        "val_labels": [1, 1, 0, 0],
        "test_left": left,
        "test_right": right,
        "test_labels": [1, 1, 0, 0],
    }
    args.update(changes)
    with pytest.raises(error, match=match):
        pair_verification_metrics(**args)
