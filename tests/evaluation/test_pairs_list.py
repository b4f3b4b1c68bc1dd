"""Verification on a pairs list by LFW's protocol: 10 folds, each fold's threshold chosen
on the other nine."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from contrastkit.data.readers import read_images, read_pairs_list
from contrastkit.evaluation import (
    CrossValidatedAccuracy,
    cross_validated_accuracy,
    cross_validated_verification,
    equal_error_rate,
    pair_folds,
    pairs_list_verification,
    tar_at_far,
)

# --- brute force ---------------------------------------------------------------------


def brute_threshold(d, s):
    """The threshold with the best accuracy, by trying every candidate in a loop.

    Candidates: below the smallest distance (accept nothing), every midpoint between
    consecutive distinct distances, above the largest (accept all). Ties: the smallest.
    """
    values = sorted(set(d))
    candidates = [values[0] - 1.0]
    candidates += [(a + b) / 2.0 for a, b in itertools.pairwise(values)]
    candidates += [values[-1] + 1.0]
    best, best_correct = None, -1
    for t in candidates:
        correct = sum((x <= t) == bool(y) for x, y in zip(d, s, strict=True))
        if correct > best_correct:  # strictly better: the first (smallest) wins ties
            best, best_correct = t, correct
    return best


def brute_cross_validation(d, s, folds):
    """For each fold value in increasing order: (threshold, test accuracy, train accuracy)."""
    out = []
    for value in sorted(set(folds)):
        train = [i for i, f in enumerate(folds) if f != value]
        test = [i for i, f in enumerate(folds) if f == value]
        t = brute_threshold([d[i] for i in train], [s[i] for i in train])
        accuracy = sum((d[i] <= t) == bool(s[i]) for i in test) / len(test)
        train_accuracy = sum((d[i] <= t) == bool(s[i]) for i in train) / len(train)
        out.append((t, accuracy, train_accuracy))
    return out


def random_pairs(seed, n=120, *, levels=None):
    """Distances (with ties when ``levels`` rounds them), labels, folds 0..9 at random."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    d = rng.normal(size=n) - 0.8 * s  # similar pairs a little closer
    if levels is not None:
        d = np.round(d * levels) / levels
    folds = rng.permutation(np.arange(n) % 10)
    return d.tolist(), s.tolist(), folds.tolist()


# --- pair_folds ----------------------------------------------------------------------


def test_pair_folds_reproduce_lfw_sets_for_a_list_in_pairs_txt_order():
    # LFW's pairs.txt: per set, its matched pairs then its mismatched pairs, set after set
    same = ([1] * 6 + [0] * 6) * 10
    assert pair_folds(same).tolist() == [k for k in range(10) for _ in range(12)]


def test_pair_folds_cut_each_kind_into_contiguous_near_equal_blocks():
    same = [1] * 23 + [0] * 21
    folds = pair_folds(same, n_folds=4)
    assert folds.dtype == torch.int64
    assert folds[:23].tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 5
    assert folds[23:].tolist() == [0] * 6 + [1] * 5 + [2] * 5 + [3] * 5
    # interleaved kinds: each kind keeps its own order
    interleaved = pair_folds([1, 0] * 10, n_folds=5).tolist()
    assert interleaved == [k for k in range(5) for _ in range(4)]


def test_pair_folds_need_one_of_each_kind_per_fold():
    with pytest.raises(ValueError) as caught:
        pair_folds([1] * 9 + [0] * 30)
    assert str(caught.value) == (
        "same must hold at least n_folds=10 similar and 10 dissimilar pairs to form 10 folds "
        "with both kinds in each, got 9 similar and 30 dissimilar"
    )
    with pytest.raises(ValueError, match="n_folds must be >= 2, got 1"):
        pair_folds([1, 0], n_folds=1)


# --- the cross-validated accuracy against a brute-force loop -------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [None, 4])  # 4: distances on a grid of quarters, many ties
def test_cross_validated_accuracy_matches_a_brute_force_loop(seed, levels):
    d, s, folds = random_pairs(seed, levels=levels)
    cv = cross_validated_accuracy(d, s, folds=folds)
    assert isinstance(cv, CrossValidatedAccuracy)
    expected = brute_cross_validation(d, s, folds)
    assert cv.fold.tolist() == list(range(10))
    assert cv.threshold.tolist() == [t for t, _, _ in expected]  # exactly: same midpoints
    assert cv.accuracy.tolist() == pytest.approx([a for _, a, _ in expected], abs=1e-12)
    assert cv.train_accuracy.tolist() == pytest.approx([b for _, _, b in expected], abs=1e-12)


def test_a_tie_between_thresholds_goes_to_the_smallest():
    # training folds: 0.2 (same) 0.4 (same) 0.3 (diff) 0.8 (diff): thresholds 0.25 and 0.6
    # both give 3 of 4; the smaller wins, and the test fold is judged at 0.25
    d = [0.2, 0.4, 0.3, 0.8, 0.35, 0.5]
    s = [1, 1, 0, 0, 1, 0]
    folds = [0, 0, 0, 0, 1, 1]
    cv = cross_validated_accuracy(d, s, folds=folds)
    assert cv.threshold[1] == 0.25 == brute_threshold(d[:4], s[:4])
    assert cv.accuracy[1] == 0.5  # 0.35 is rejected: wrong; 0.5 rejected: right


def test_cross_validated_verification_summarises_the_folds_and_all_pairs():
    d, s, folds = random_pairs(11, n=300)
    out = cross_validated_verification(d, s, folds=folds, fars=(0.1, 0.01))
    assert list(out) == [
        "roc_auc",
        "eer",
        "tar@far=0.1",
        "tar@far=0.01",
        "accuracy",
        "accuracy_std",
        "accuracy_sem",
        "threshold",
        "train_accuracy",
        "folds",
    ]
    accuracies = [a for _, a, _ in brute_cross_validation(d, s, folds)]
    assert out["accuracy"] == pytest.approx(statistics.mean(accuracies))
    assert out["accuracy_std"] == pytest.approx(statistics.stdev(accuracies))  # ddof=1
    assert out["accuracy_sem"] == pytest.approx(statistics.stdev(accuracies) / math.sqrt(10))
    assert out["folds"] == 10.0
    # threshold-free metrics over all pairs, by the library's own functions and sklearn
    assert out["roc_auc"] == pytest.approx(roc_auc_score(s, -np.asarray(d)))
    assert out["eer"] == equal_error_rate(d, s)[0]
    assert out["tar@far=0.1"] == tar_at_far(d, s, far=0.1)


def test_without_a_fold_column_ten_folds_are_formed():
    d, s, _ = random_pairs(3, n=200)
    out = cross_validated_verification(d, s)
    expected = brute_cross_validation(d, s, pair_folds(s).tolist())
    assert out["folds"] == 10.0
    assert out["accuracy"] == pytest.approx(statistics.mean(a for _, a, _ in expected))
    five = cross_validated_verification(d, s, n_folds=5)
    assert five["folds"] == 5.0


def test_a_fold_column_is_respected():
    d, s, folds = random_pairs(5, n=200)
    given = cross_validated_verification(d, s, folds=folds)
    formed = cross_validated_verification(d, s)
    assert given["accuracy"] != formed["accuracy"]  # other folds, another estimate
    # the fold values are names only: renaming them changes nothing
    renamed = cross_validated_verification(d, s, folds=[100 - 7 * f for f in folds])
    assert renamed["accuracy"] == pytest.approx(given["accuracy"])
    assert renamed["accuracy_std"] == pytest.approx(given["accuracy_std"])


# --- pairs_list_verification ---------------------------------------------------------


def identity_list(n_people=40, per_person=4, n_pairs=1000, seed=0):
    """Paths ``p/k``; a balanced list of same- and different-person pairs."""
    rng = np.random.default_rng(seed)
    left, right, same = [], [], []
    for i in range(n_pairs):
        a = int(rng.integers(n_people))
        b = a if i % 2 == 0 else int((a + rng.integers(1, n_people)) % n_people)
        j, k = rng.choice(per_person, 2, replace=False)
        left.append(f"{a}/{j}")
        right.append(f"{b}/{k}")
        same.append(int(a == b))
    return left, right, same


def test_perfect_embeddings_verify_every_pair():
    left, right, same = identity_list()
    rng = np.random.default_rng(1)
    embeddings = {
        f"{p}/{k}": np.eye(40)[p] + 0.01 * rng.normal(size=40) for p in range(40) for k in range(4)
    }
    out = pairs_list_verification(left, right, same, embeddings)
    assert out["accuracy"] == 1.0 and out["accuracy_std"] == 0.0
    assert out["roc_auc"] == 1.0 and out["eer"] == 0.0


def test_random_embeddings_verify_at_chance():
    # many samples, so that pairs rarely repeat (a pair in a training fold and again in
    # the test fold would let the threshold learn it)
    left, right, same = identity_list(n_people=200, per_person=20, n_pairs=4000, seed=2)
    generator = torch.Generator().manual_seed(3)
    embeddings = {
        f"{p}/{k}": torch.randn(16, generator=generator) for p in range(200) for k in range(20)
    }
    out = pairs_list_verification(left, right, same, embeddings)
    assert abs(out["accuracy"] - 0.5) < 0.03
    assert abs(out["roc_auc"] - 0.5) < 0.03


def test_an_embedding_function_is_called_once_per_path_in_batches():
    left, right, same = identity_list(n_people=10, per_person=3, n_pairs=200)
    rng = np.random.default_rng(4)
    table = {f"{p}/{k}": rng.normal(size=8) for p in range(10) for k in range(3)}
    calls = []

    def embed(paths):
        calls.append(list(paths))
        assert not torch.is_grad_enabled()
        return torch.tensor(np.stack([table[p] for p in paths]), requires_grad=True)

    by_function = pairs_list_verification(left, right, same, embed, batch_size=7)
    by_mapping = pairs_list_verification(left, right, same, table, distance="cosine")
    assert by_function == pytest.approx(by_mapping)
    seen = [p for call in calls for p in call]
    assert seen == sorted(set(left) | set(right)) and all(len(c) <= 7 for c in calls)
    assert [len(c) for c in calls] == [7, 7, 7, 7, 2]


def test_the_distance_is_the_one_asked_for():
    left, right, same = identity_list(n_people=10, n_pairs=200)
    rng = np.random.default_rng(5)
    table = {f"{p}/{k}": rng.normal(size=4) + p for p in range(10) for k in range(4)}
    d = [float(np.linalg.norm(table[a] - table[b])) for a, b in zip(left, right, strict=True)]
    out = pairs_list_verification(left, right, same, table, distance="euclidean")
    assert out == pytest.approx(cross_validated_verification(d, same))


def test_a_pairs_list_file_end_to_end(tmp_path):
    # two people, gray levels 40-60 and 180-200; the fold column gives two folds
    rows = []
    for person, base in (("ann", 40), ("bob", 180)):
        for k in range(3):
            path = tmp_path / person / f"{k}.png"
            path.parent.mkdir(exist_ok=True)
            Image.new("L", (5, 5), base + 10 * k).save(path)
    for fold in (1, 2):
        rows += [f"ann/0.png,ann/{fold}.png,1,{fold}", f"bob/0.png,bob/{fold}.png,1,{fold}"]
        rows += [f"ann/{fold}.png,bob/{fold}.png,0,{fold}", f"ann/0.png,bob/0.png,0,{fold}"]
    csv = tmp_path / "pairs.csv"
    csv.write_text("left,right,label,fold\n" + "\n".join(rows) + "\n")
    pairs = read_pairs_list(csv)

    def embed(paths):  # mean gray level: people are far apart
        return read_images(paths, image_size=2).flatten(1).mean(dim=1, keepdim=True)

    out = pairs_list_verification(
        pairs.left, pairs.right, pairs.same, embed, folds=pairs.folds, distance="euclidean"
    )
    assert out["folds"] == 2.0 and out["accuracy"] == 1.0 and out["roc_auc"] == 1.0


# --- bad input -----------------------------------------------------------------------

D, S = [0.1, 0.5, 0.2, 0.6], [1, 0, 1, 0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"folds": [0, 0, 1]}, ValueError, r"folds must have shape \(4,\), one fold per pair"),
        ({"folds": [0.0, 0.0, 1.0, 1.0]}, TypeError, "folds must hold integer fold numbers"),
        ({"folds": [3, 3, 3, 3]}, ValueError, "at least 2 distinct folds .*, got only 3"),
        ({"folds": [0, 1, 0, 0]}, ValueError, r"outside fold 0 \(1\) are all dissimilar"),
        ({"folds": [0, 0, 1, 1], "n_folds": 3}, ValueError, "n_folds=3 disagrees with the 2"),
        ({"n_folds": 3}, ValueError, "at least n_folds=3 similar and 3 dissimilar"),
        ({}, ValueError, "at least n_folds=10 similar"),
        ({"n_folds": 2, "fars": (0.5, 2.0)}, ValueError, r"fars\[1\]"),
        ({"n_folds": 2, "fars": ()}, ValueError, "fars must hold at least one"),
    ],
)
def test_cross_validation_refuses_bad_folds(kwargs, error, message):
    with pytest.raises(error, match=message):
        cross_validated_verification(D, S, **kwargs)


@pytest.mark.parametrize(
    ("distances", "same", "message"),
    [
        ([0.1, 0.2], [1, 1], "both similar"),
        ([0.1, 0.2], [1, 2], "0 .dissimilar. or 1"),
        ([0.1, float("nan")], [1, 0], "distances must be finite"),
        ([0.1, 0.2, 0.3], [1, 0], r"same must have shape \(3,\)"),
    ],
)
def test_cross_validated_accuracy_refuses_bad_pairs(distances, same, message):
    with pytest.raises(ValueError, match=message):
        cross_validated_accuracy(distances, same, folds=[0, 1][: len(same)])


LEFT, RIGHT, SAME = ["a", "b", "a", "b"], ["a2", "b2", "b", "a2"], [1, 1, 0, 0]
TABLE = {k: np.ones(3) * i for i, k in enumerate(["a", "a2", "b", "b2"])}
FOLDS = [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((LEFT[:3], RIGHT, SAME, TABLE), {}, ValueError, "got lengths 3, 4 and 4"),
        (("abcd", RIGHT, SAME, TABLE), {}, TypeError, "left must be a sequence of paths, got str"),
        ((LEFT, [*RIGHT[:3], 7], SAME, TABLE), {}, TypeError, r"right\[3\] must be a path"),
        ((LEFT, RIGHT, [1, 1, 1, 1], TABLE), {}, ValueError, "both similar"),
        ((LEFT, RIGHT, SAME, torch.ones(4, 3)), {}, TypeError, "a mapping from path to emb"),
        ((LEFT, RIGHT, SAME, {"a": [1.0]}), {}, ValueError, "no entry for 'a2' .the right pa"),
        ((LEFT, RIGHT, SAME, {**TABLE, "b": [1.0, 2.0]}), {}, ValueError, "vector of 3 values"),
        ((LEFT, RIGHT, SAME, {**TABLE, "a": "x"}), {}, TypeError, r"embeddings\['a'\] must"),
        ((LEFT, RIGHT, SAME, {**TABLE, "b": [np.nan] * 3}), {}, ValueError, "of 'b' are not fin"),
        ((LEFT, RIGHT, SAME, TABLE), {"distance": "cosin"}, ValueError, "distance"),
        ((LEFT, RIGHT, SAME, TABLE), {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ],
)
def test_pairs_list_verification_refuses_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        pairs_list_verification(*args, **{"folds": FOLDS, **kwargs})


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        (lambda n: torch.ones(n - 1, 3), ValueError, r"shape \(4, D\) for 4 paths .*got \(3, 3\)"),
        (lambda n: torch.ones(n), ValueError, r"must return shape \(4, D\)"),
        (lambda n: "nope", TypeError, "must return a .len.paths., D. tensor or array"),
        (lambda n: torch.ones(n, 2, dtype=torch.bool), TypeError, "got dtype torch.bool"),
    ],
)
def test_an_embedding_function_must_return_one_row_per_path(returned, error, message):
    with pytest.raises(error, match=message):
        pairs_list_verification(LEFT, RIGHT, SAME, lambda paths: returned(len(paths)), folds=FOLDS)


def test_bad_options_are_refused_before_anything_is_embedded():
    calls = []

    def embed(paths):
        calls.append(paths)
        return torch.ones(len(paths), 2)

    for kwargs in ({"fars": (2.0,)}, {"distance": "nope"}, {"folds": [0, 0, 0, 0]}):
        with pytest.raises(ValueError):
            pairs_list_verification(LEFT, RIGHT, SAME, embed, **{"folds": FOLDS, **kwargs})
    assert calls == []
