"""A raw-input baseline in every report, and pair files split by image.

The baseline's numbers are checked against brute-force loops on tiny data; the command
line is checked end to end: ``metrics.json`` (``raw_inputs``), the report's tables, the
summary line; a pair file's split (no image shared), and old runs keeping their split.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from test_cli import (
    SMALL,
    assert_one_line_error,
    call,
    kill_after_first_epoch,
    make_images,
    make_pair_csv,
    same_weights,
)

from contrastkit.app.build import read_data, run_splits
from contrastkit.app.config import RunConfig, read_config_file
from contrastkit.app.evaluate import evaluate_raw, pairs_of
from contrastkit.data.readers import LabelledData, PairData

# --- brute force ----------------------------------------------------------------------


def standardized(train, x):
    """(x - mean) / std over the training rows, per feature (std over the rows, ddof 0)."""
    t = np.asarray(train, dtype=np.float64).reshape(len(train), -1)
    v = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return (v - t.mean(0)) / t.std(0)


def per_channel(train, x):
    """Images standardized by one mean and std per channel, flattened."""
    t, v = np.asarray(train, dtype=np.float64), np.asarray(x, dtype=np.float64)
    mean = t.mean(axis=(0, 2, 3), keepdims=True)
    std = t.std(axis=(0, 2, 3), keepdims=True)
    return ((v - mean) / std).reshape(len(v), -1)


def euclid(a, b):
    return math.sqrt(sum((p - q) ** 2 for p, q in zip(a, b, strict=True)))


def precision_at_1(z, labels):
    hits = 0
    for i in range(len(z)):
        nearest = min((j for j in range(len(z)) if j != i), key=lambda j: euclid(z[i], z[j]))
        hits += labels[nearest] == labels[i]
    return hits / len(z)


def map_at_r(z, labels):
    total = 0.0
    for i in range(len(z)):
        others = sorted((j for j in range(len(z)) if j != i), key=lambda j: euclid(z[i], z[j]))
        r = sum(labels[j] == labels[i] for j in others)
        found, ap = 0, 0.0
        for k, j in enumerate(others[:r], start=1):
            if labels[j] == labels[i]:
                found += 1
                ap += found / k
        total += ap / r
    return total / len(z)


def auc(distances, same):
    pos = [d for d, s in zip(distances, same, strict=True) if s == 1]
    neg = [d for d, s in zip(distances, same, strict=True) if s == 0]
    wins = sum((p < n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def accuracy(distances, same, threshold):
    return sum((d <= threshold) == bool(s) for d, s in zip(distances, same, strict=True)) / len(
        same
    )


def labelled(x, y):
    return LabelledData(
        torch.tensor(x, dtype=torch.float32), torch.tensor(y), ["a", "b", "c"], "vectors", "t"
    )


def test_the_raw_baseline_of_feature_vectors_matches_brute_force():
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 100.0, 0.01, 5.0])  # columns of very different ranges
    y = {k: np.repeat(np.arange(3), n) for k, n in (("train", 10), ("val", 6), ("test", 7))}
    x = {k: (rng.normal(size=(len(v), 4)) + 0.8 * v[:, None]) * scale for k, v in y.items()}
    config = RunConfig(seed=3).checked()
    train, val, test = (labelled(x[k], y[k]) for k in ("train", "val", "test"))
    raw, why = evaluate_raw(config, train, val, test)
    assert why is None and raw is not None and raw.distance == "euclidean"

    z = standardized(x["train"], x["test"])
    labels = y["test"].tolist()
    assert raw.test["precision_at_1"] == pytest.approx(precision_at_1(z, labels), abs=1e-6)
    assert raw.test["map_at_r"] == pytest.approx(map_at_r(z, labels), abs=1e-6)

    i, j, same = pairs_of(test, config.seed + 3).tolist()  # the trained run's own pairs
    d = [euclid(z[a], z[b]) for a, b in zip(i, j, strict=True)]
    assert raw.test["roc_auc"] == pytest.approx(auc(d, same), abs=1e-6)
    # the threshold is chosen on validation (the best accuracy there), applied to test
    zv = standardized(x["train"], x["val"])
    vi, vj, vsame = pairs_of(val, config.seed + 2).tolist()
    vd = [euclid(zv[a], zv[b]) for a, b in zip(vi, vj, strict=True)]
    best = max(accuracy(vd, vsame, t) for t in [*vd, min(vd) - 1])
    threshold = raw.test["threshold"]
    assert raw.test["val_accuracy"] == pytest.approx(best, abs=1e-6)
    assert accuracy(vd, vsame, threshold) == pytest.approx(best, abs=1e-6)
    assert raw.test["accuracy"] == pytest.approx(accuracy(d, same, threshold), abs=1e-6)


def test_the_raw_baseline_of_pairs_is_the_distance_between_the_raw_images():
    g = torch.Generator().manual_seed(1)

    def pairs(n):
        left = torch.rand(n, 3, 4, 4, generator=g)
        same = torch.arange(n) % 2
        noise = torch.rand(n, 3, 4, 4, generator=g)
        right = torch.where(same.bool()[:, None, None, None], left + 0.3 * noise, noise)
        return PairData(left, right, same, "images", "p")

    train, val, test = pairs(10), pairs(8), pairs(12)
    config = RunConfig().checked()
    raw, _ = evaluate_raw(config, train, val, test)
    assert raw is not None and "precision_at_1" not in raw.test  # pairs have no classes
    every = torch.cat([train.left, train.right]).numpy()
    zl, zr = per_channel(every, test.left.numpy()), per_channel(every, test.right.numpy())
    d = [euclid(a, b) for a, b in zip(zl, zr, strict=True)]
    same = test.same.tolist()
    assert raw.test["roc_auc"] == pytest.approx(auc(d, same), abs=1e-6)
    assert raw.test["accuracy"] == pytest.approx(accuracy(d, same, raw.test["threshold"]), abs=1e-6)
    assert torch.allclose(
        raw.test_distances.double(), torch.tensor(d, dtype=torch.float64), atol=1e-4
    )


def test_unlabelled_images_have_no_baseline():
    x = torch.rand(6, 1, 4, 4)
    flat = LabelledData(x, torch.full((6,), -1), [], "images", "flat")
    raw, why = evaluate_raw(RunConfig().checked(), flat, flat, flat)
    assert raw is None and "no labels" in why


# --- the command line -----------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("baseline")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = (rng.normal(size=(90, 5)) + 2.0 * y[:, None]) * np.array([1, 50, 1, 0.1, 3])
    np.savez(folder / "features.npz", features=x.astype(np.float32), label=y)
    make_pair_csv(folder, make_images(folder / "images"))
    return folder


def test_every_report_has_the_raw_baseline_beside_the_embedding(tmp_path, capsys, data):
    run = tmp_path / "run"
    status, out, err = call(capsys, "train", *SMALL, "--data", data / "features.npz", "-o", run)
    assert status == 0 and err == ""
    metrics = json.loads((run / "metrics.json").read_text())
    raw = metrics["raw_inputs"]
    assert raw["inputs"] == "vectors" and raw["distance"] == "euclidean"
    # the same metrics, every one; the k-NN and linear-probe accuracies' raw baseline is
    # beside them in "probes"
    probed = {"knn_accuracy", "linear_probe_accuracy"}
    assert set(raw["test"]) == set(metrics["test"]) - probed
    assert set(metrics["probes"]["raw_inputs"]) == probed
    assert raw["pairs"] == metrics["pairs"]  # on the same pairs
    assert raw["test"] != metrics["test"]

    # the same numbers as the baseline computed on the run's own splits
    config = RunConfig.from_mapping(read_config_file(run / "config.toml"))
    train, val, test, _ = run_splits(config, read_data(config))
    again, _ = evaluate_raw(config, train, val, test)
    assert again is not None and again.test == pytest.approx(raw["test"])

    line = next(line for line in out.splitlines() if line.startswith("raw inputs"))
    assert f"precision@1 {raw['test']['precision_at_1']:.4f}" in line
    assert f"ROC-AUC {raw['test']['roc_auc']:.4f}" in line

    page = (run / "report.html").read_text()
    assert page.count("<th>trained embedding</th><th>raw inputs</th>") == 2
    row = re.search(
        r"<td>precision@1</td><td class='num'>([^<]*)</td><td class='num'>([^<]*)<", page
    )
    assert row is not None
    assert row.groups() == (
        f"{metrics['test']['precision_at_1']:.4f}",
        f"{raw['test']['precision_at_1']:.4f}",
    )
    assert "what training bought" in page


def pair_image_sets(part):
    return set(part.left_image.tolist()) | set(part.right_image.tolist())


def test_a_pair_file_is_split_by_image(tmp_path, capsys, data):
    run = tmp_path / "run"
    argv = ("train", *SMALL, "--data", data / "pairs.csv", "--image-size", "8", "-o", run)
    status, out, err = call(capsys, *argv)
    assert status == 0 and err == ""
    assert 'pair_split = "images"' in (run / "config.toml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    split = metrics["data"]["split"]
    assert split["by"] == "images"
    assert split["shared_images"] == {"train_validation": 0, "train_test": 0, "validation_test": 0}
    counts = [metrics["data"][k] for k in ("train", "validation", "test")]
    assert [split["pairs"][k] for k in ("train", "validation", "test")] == counts
    assert split["dropped_pairs"] == 48 - sum(counts)  # make_pair_csv writes 48 pairs

    # the run's own split, reproduced from its config: no image on two sides
    config = RunConfig.from_mapping(read_config_file(run / "config.toml"))
    train, val, test, _ = run_splits(config, read_data(config))
    sets = [pair_image_sets(p) for p in (train, val, test)]
    assert not sets[0] & sets[2] and not sets[0] & sets[1] and not sets[1] & sets[2]
    assert [len(s) for s in sets] == [split["images"][k] for k in ("train", "validation", "test")]
    assert [len(p) for p in (train, val, test)] == counts

    note = f"{split['dropped_pairs']} pairs whose two images fell in different splits dropped"
    assert note in " ".join(metrics["notes"])
    page = (run / "report.html").read_text()
    assert "pair file split by image" in page and note in page
    assert metrics["raw_inputs"]["inputs"] == "images"
    assert "roc_auc" in metrics["raw_inputs"]["test"]
    assert "raw inputs (baseline, no training): ROC-AUC" in out


def test_split_by_pairs_is_still_there_and_says_what_it_shares(tmp_path, capsys, data):
    run = tmp_path / "run"
    argv = ("train", *SMALL, "--data", data / "pairs.csv", "--image-size", "8", "-o", run)
    assert call(capsys, *argv, "--pair-split", "pairs")[0] == 0
    split = json.loads((run / "metrics.json").read_text())["data"]["split"]
    assert split["by"] == "pairs" and split["dropped_pairs"] == 0
    assert split["shared_images"]["train_test"] > 0  # what splitting by image prevents
    assert "split by pair (pair_split pairs)" in (run / "report.html").read_text()


def forget_pair_split(run):
    """Make a run look like one made before pair_split (its config.toml has none)."""
    config = run / "config.toml"
    lines = config.read_text().splitlines()
    assert 'pair_split = "pairs"' in lines
    config.write_text("\n".join(line for line in lines if not line.startswith("pair_split")))


def test_old_pair_runs_keep_their_split_when_evaluated(tmp_path, capsys, data):
    run = tmp_path / "run"
    argv = ("train", *SMALL, "--data", data / "pairs.csv", "--image-size", "8", "-o", run)
    assert call(capsys, *argv, "--pair-split", "pairs")[0] == 0
    forget_pair_split(run)
    status, out, err = call(capsys, "evaluate", run, "--json")
    assert status == 0 and err == ""
    found, saved = json.loads(out), json.loads((run / "metrics.json").read_text())
    raw = found.pop("raw_inputs")  # evaluate --json adds the raw-input baseline
    assert found == pytest.approx(saved["test"])
    assert raw == pytest.approx(saved["raw_inputs"]["test"])


def test_old_pair_runs_resume_with_their_own_split(tmp_path, capsys, monkeypatch, data):
    monkeypatch.chdir(data)
    options = [*SMALL, "--epochs", "3", "--data", "pairs.csv", "--image-size", "8"]
    options += ["--pair-split", "pairs"]
    assert call(capsys, "train", *options, "-o", tmp_path / "whole")[0] == 0
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        assert call(capsys, "train", *options, "-o", tmp_path / "killed")[0] == 130
    forget_pair_split(tmp_path / "killed")
    status, _, err = call(capsys, "train", "--resume", tmp_path / "killed")
    assert status == 0 and err == ""
    assert same_weights(tmp_path / "killed", tmp_path / "whole")
    split = json.loads((tmp_path / "killed" / "metrics.json").read_text())["data"]["split"]
    assert split["by"] == "pairs"


def test_pair_split_applies_to_pair_files_only(tmp_path, capsys, data):
    argv = ("train", *SMALL, "--data", data / "features.npz", "--pair-split", "images")
    status, _, err = call(capsys, *argv, "-o", tmp_path / "run")
    assert_one_line_error(status, err, "pair_split applies to a pair file")
    assert not (tmp_path / "run").exists()
    status, _, err = call(capsys, "train", "--pair-split", "faces", "-o", tmp_path / "run")
    assert status == 2 and "faces" in err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_text_run_says_it_has_no_raw_baseline(tmp_path, capsys):
    from test_cli_text import TINY

    words = ["cat", "dog", "bird", "fish", "home", "river", "park", "road", "runs", "eats"]
    rows = ["sentence1\tsentence2\tlabel"]
    for i in range(40):
        a = " ".join(words[(i + k) % 10] for k in range(3))
        b = " ".join(words[(i + k + (0 if i % 2 else 5)) % 10] for k in range(3))
        rows.append(f"{a}\t{b}\t{int(i % 2 == 1)}")
    (tmp_path / "pairs.tsv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    status, out, err = call(capsys, "train", "--data", tmp_path / "pairs.tsv", *TINY, "-o", run)
    assert status == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["raw_inputs"] == {
        "skipped": "texts have no raw input vector to compare (tokens, not features)"
    }
    assert "raw inputs (baseline): not measured: texts have no raw input vector" in out
    assert (
        "No raw-input baseline: texts have no raw input vector" in (run / "report.html").read_text()
    )
