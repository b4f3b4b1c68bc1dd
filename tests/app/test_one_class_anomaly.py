"""One normal class and unlabelled tables through the command: anomaly detection as users meet it.

Scikit-learn's breast-cancer table, written to a CSV with ``malignant`` held out, leaves one
normal class (``benign``); the autoencoder and NT-Xent on noisy views of each row train on
it, per-feature scaling keeps the reconstruction error readable, and the report and
``metrics.json`` hold a raw-input baseline (k-NN and LocalOutlierFactor on standardized
rows) checked here against scikit-learn and a brute-force loop.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from tests.app.test_cli import (
    assert_one_line_error,
    call,
    same_weights,
    train_whole_and_killed,
)

from contrastkit.app.build import BatchAugment, batch_augment, scale_inputs
from contrastkit.app.config import RunConfig
from contrastkit.app.evaluate import raw_baseline, standardized_rows
from contrastkit.data import FeatureNoise
from contrastkit.plots import plot_score_histograms

TINY = ["--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "32", "--hidden", "16"]
TINY += ["--embedding-dim", "4", "--quiet"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """The breast-cancer table as a labelled CSV (one row in 3 kept) and without labels."""
    folder = tmp_path_factory.mktemp("cancer")
    data = load_breast_cancer()
    keep = np.arange(0, len(data.target), 3)
    names = [n.replace(" ", "_") for n in data.feature_names]
    with (folder / "cancer.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, "label"])
        for i in keep:
            w.writerow([*map(repr, data.data[i].tolist()), data.target_names[data.target[i]]])
    with (folder / "unlabelled.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for i in keep:
            w.writerow(list(map(repr, data.data[i].tolist())))
    return folder


def metrics_of(run):
    return json.loads((run / "metrics.json").read_text())


# --- through the command ------------------------------------------------------------


def test_an_autoencoder_of_one_normal_class_scores_the_held_out_class(tables, tmp_path, capsys):
    run = tmp_path / "ae"
    status, out, err = call(
        capsys, "train", *TINY, "--data", tables / "cancer.csv",
        "--anomaly-class", "malignant", "--objective", "reconstruction", "-o", run,
    )  # fmt: skip
    assert status == 0, err
    anomaly = metrics_of(run)["anomaly"]
    assert anomaly["class"] == "malignant" and set(anomaly["scores"]) == {
        "reconstruction",
        "knn",
        "centroid",
    }
    assert set(anomaly["baseline"]) == {"raw_knn", "raw_lof"}
    assert anomaly["baseline"]["raw_knn"]["roc_auc"] > 0.85  # the raw rows do find them
    assert "anomaly baseline, no training:" in out
    spec = json.loads((run / "model.json").read_text())
    scaling = spec["autoencoder"]["feature_scaling"]
    assert scaling["kind"] == "standardize" and len(scaling["center"]) == 30
    # per-feature scaling: the error is in standardized units, far from 0.0000
    assert metrics_of(run)["test"]["reconstruction_error"] > 0.01
    page = (run / "report.html").read_text()
    assert "Baseline: the raw inputs, no training" in page
    assert f"{anomaly['baseline']['raw_lof']['roc_auc']:.4f}" in page
    assert (run / "figures" / "anomaly_reconstruction.png").is_file()


def test_ntxent_on_noisy_views_trains_without_labels_on_one_class(tables, tmp_path, capsys):
    run = tmp_path / "ntxent"
    status, _, err = call(
        capsys, "train", *TINY, "--data", tables / "cancer.csv",
        "--anomaly-class", "malignant", "--loss", "ntxent", "-o", run,
    )  # fmt: skip
    assert status == 0, err
    metrics = metrics_of(run)
    assert 'augment = "noise"' in (run / "config.toml").read_text()
    assert set(metrics["anomaly"]["scores"]) == {"knn", "centroid"}
    assert any("noisy" in note for note in metrics["notes"])
    assert metrics["retrieval_skipped"].startswith("the test split holds one class")


def test_an_unlabelled_table_trains_and_its_rows_are_scored(tables, tmp_path, capsys):
    run = tmp_path / "unlabelled"
    status, _, err = call(
        capsys, "train", *TINY, "--data", tables / "unlabelled.csv",
        "--objective", "reconstruction", "-o", run,
    )  # fmt: skip
    assert status == 0, err
    assert any("no labels" in note for note in metrics_of(run)["notes"])
    scores = tmp_path / "scores.csv"
    status, _, err = call(capsys, "score", run, tables / "unlabelled.csv", "-o", scores)
    assert status == 0, err
    header = scores.read_text().splitlines()[0]
    assert "reconstruction" in header and "knn" in header


def test_a_killed_one_class_run_resumes_to_the_uninterrupted_weights(
    tables, tmp_path, capsys, monkeypatch
):
    options = [*TINY, "--data", tables / "cancer.csv", "--anomaly-class", "malignant"]
    options += ["--loss", "ntxent"]
    train_whole_and_killed(capsys, monkeypatch, tmp_path, options)
    assert same_weights(tmp_path / "killed", tmp_path / "whole")


def test_an_old_autoencoder_run_keeps_its_one_range_on_resume(tables, tmp_path, capsys):
    options = [*TINY, "--data", tables / "cancer.csv", "--anomaly-class", "malignant"]
    options += ["--objective", "reconstruction"]
    run = tmp_path / "old"
    assert call(capsys, "train", *options, "-o", run)[0] == 0
    spec = json.loads((run / "model.json").read_text())
    del spec["autoencoder"]["feature_scaling"]  # as a run made before per-feature scaling
    (run / "model.json").write_text(json.dumps(spec))
    status, _, err = call(capsys, "train", "--resume", run, "--epochs", "3")
    assert status == 0, err
    assert "feature_scaling" not in json.loads((run / "model.json").read_text())["autoencoder"]
    x = torch.tensor([[0.0] * 29 + [1.0]])
    low, high = spec["autoencoder"]["input_range"]
    assert torch.allclose(scale_inputs(spec, x), (x - low) / (high - low))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ([], ["malignant", "at least 2 normal classes", "--loss ntxent", "reconstruction"]),
        (["--loss", "triplet"], ["triplet", "--loss ntxent"]),
        (["--loss", "ntxent", "--augment", "light"], ["augment light", "image data"]),
        (["--loss", "ntxent", "--augment", "none"], ["ntxent", "noise"]),
    ],
    ids=["default-loss", "triplet", "image-augment", "no-views"],
)
def test_a_loss_that_needs_classes_is_refused_in_one_line(tables, tmp_path, capsys, extra, named):
    run = tmp_path / "bad"
    status, _, err = call(
        capsys, "train", *TINY, "--data", tables / "cancer.csv",
        "--anomaly-class", "malignant", *extra, "-o", run,
    )  # fmt: skip
    assert_one_line_error(status, err, *named)
    assert not run.exists()


def test_an_unlabelled_table_is_refused_by_a_loss_that_needs_labels(tables, tmp_path, capsys):
    run = tmp_path / "bad"
    status, _, err = call(capsys, "train", *TINY, "--data", tables / "unlabelled.csv", "-o", run)
    assert_one_line_error(status, err, "no column 'label'")
    status, _, err = call(
        capsys, "train", *TINY, "--data", tables / "unlabelled.csv", "--objective",
        "reconstruction", "--anomaly-class", "benign", "-o", run,
    )  # fmt: skip
    assert_one_line_error(status, err, "anomaly_class")
    only = tables / "only_malignant.csv"
    lines = (tables / "cancer.csv").read_text().splitlines()
    only.write_text("\n".join([lines[0], *(x for x in lines[1:] if x.endswith("malignant"))]))
    status, _, err = call(
        capsys, "train", *TINY, "--data", only, "--objective", "reconstruction",
        "--anomaly-class", "malignant", "-o", run,
    )  # fmt: skip
    assert_one_line_error(status, err, "no normal sample")
    assert not run.exists()


# --- the baseline, against scikit-learn and a loop -------------------------------------


def test_the_raw_baseline_matches_a_brute_force_knn_and_sklearns_lof() -> None:
    rng = np.random.default_rng(0)
    train = torch.tensor(rng.normal(size=(60, 4)) * [1, 10, 100, 1000], dtype=torch.float32)
    test = torch.tensor(rng.normal(size=(15, 4)) * [1, 10, 100, 1000], dtype=torch.float32)
    odd = torch.tensor(rng.normal(3, 1, size=(10, 4)) * [1, 10, 100, 1000], dtype=torch.float32)
    found = raw_baseline(train, test, odd, k=5)
    mean, std = train.double().mean(0), train.double().std(0, correction=0)
    z = [((t.double() - mean) / std).numpy() for t in (train, test, odd)]
    rows = np.concatenate([z[1], z[2]])
    knn = [np.sort(np.sqrt(((z[0] - r) ** 2).sum(1)))[:5].mean() for r in rows]
    truth = np.r_[np.zeros(15), np.ones(10)]
    assert found["raw_knn"]["roc_auc"] == pytest.approx(roc_auc_score(truth, knn))
    lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(z[0])
    expected = roc_auc_score(truth, -lof.score_samples(rows))
    assert found["raw_lof"]["roc_auc"] == pytest.approx(expected)
    # standardized: multiplying one column by 1000 changes nothing
    scaled = [t * torch.tensor([1.0, 1.0, 1.0, 1000.0]) for t in (train, test, odd)]
    assert raw_baseline(*scaled, k=5)["raw_knn"]["roc_auc"] == pytest.approx(
        found["raw_knn"]["roc_auc"]
    )


def test_standardized_rows_divide_a_constant_feature_by_one() -> None:
    train = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    z_train, z_new = standardized_rows(train, torch.tensor([[2.0, 7.0]]))
    assert z_train.tolist() == [[-1.0, 0.0], [1.0, 0.0]] and z_new.tolist() == [[0.0, 2.0]]


# --- noisy views, scaling, histograms ------------------------------------------------


def test_feature_noise_is_in_units_of_each_feature_and_drops_to_the_mean() -> None:
    rows = torch.tensor(np.random.default_rng(0).normal(size=(4000, 2)) * [1.0, 100.0]).float()
    noise = FeatureNoise.from_data(rows, noise=0.5, drop=0.0)
    delta = noise(rows, torch.Generator().manual_seed(0)) - rows
    assert delta.std(0).tolist() == pytest.approx(
        (0.5 * rows.double().std(0, correction=0)).tolist(), rel=0.05
    )
    dropped = FeatureNoise.from_data(rows, noise=0.0, drop=0.3)
    out = dropped(rows, torch.Generator().manual_seed(1))
    changed = out != rows
    assert 0.25 < float(changed.double().mean()) < 0.35
    assert torch.allclose(out[changed[:, 0], 0], rows[:, 0].mean().expand(int(changed[:, 0].sum())))
    assert torch.equal(dropped.eval()(rows), rows)  # evaluation: unchanged
    first = noise(rows, torch.Generator().manual_seed(3))
    assert torch.equal(first, noise(rows, torch.Generator().manual_seed(3)))  # seeded


def test_feature_noise_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="scale must be positive"):
        FeatureNoise(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="drop must be in"):
        FeatureNoise(torch.zeros(2), torch.ones(2), drop=1.0)
    with pytest.raises(TypeError, match="noise must be a real number"):
        FeatureNoise(torch.zeros(2), torch.ones(2), noise="0.1")
    with pytest.raises(ValueError, match=r"rows must be \(N, 2\)"):
        FeatureNoise(torch.zeros(2), torch.ones(2))(torch.zeros(3, 5))


def test_ntxent_batches_of_rows_become_two_noisy_views() -> None:
    config = RunConfig(loss="ntxent", augment="noise").checked()
    rows = torch.randn(8, 3)
    transform = batch_augment(config, 0, rows)
    assert isinstance(transform, BatchAugment) and transform.two_views
    views, ids = transform((rows, torch.zeros(8)), torch.Generator().manual_seed(0))
    assert views.shape == (16, 3) and ids.tolist() == [i // 2 for i in range(16)]
    assert not torch.equal(views[0::2], views[1::2])


def test_per_feature_scaling_standardizes_or_maps_to_zero_one() -> None:
    spec = {
        "autoencoder": {
            "reconstruction_loss": "mse",
            "input_range": [0.0, 1000.0],
            "feature_scaling": {
                "kind": "standardize",
                "center": [1.0, 100.0],
                "scale": [2.0, 50.0],
            },
        }
    }
    x = torch.tensor([[3.0, 200.0]])
    assert scale_inputs(spec, x).tolist() == [[1.0, 2.0]]
    spec["autoencoder"]["reconstruction_loss"] = "bce"
    spec["autoencoder"]["feature_scaling"] = {
        "kind": "min_max",
        "center": [0.0, 0.0],
        "scale": [2.0, 400.0],
    }
    assert scale_inputs(spec, x).tolist() == [[1.0, 0.5]]


def test_heavy_tailed_scores_are_drawn_on_a_log_axis_or_clipped_with_the_count() -> None:
    normal = list(np.linspace(0.01, 0.1, 95))
    _, ax = plot_score_histograms(normal + [50.0] * 5, [0] * 95 + [1] * 5)
    assert ax.get_xscale() == "log" and "log scale" in ax.get_xlabel()
    for patch in ax.patches:  # shares of each group, summing to 1
        assert patch.get_data().values.sum() == pytest.approx(1.0)
    _, ax = plot_score_histograms(
        [0.0, *normal[1:], 50.0, 60.0, 70.0, 80.0, 90.0], [0] * 95 + [1] * 5
    )
    assert ax.get_xscale() == "linear" and "not shown" in ax.get_xlabel()
    long = "mean distance to the 5 nearest training embeddings (class malignant is the anomaly)"
    _, ax = plot_score_histograms([1.0, 2.0], [0, 1], title=long)
    assert "\n" in ax.get_title() and ax.get_title().replace("\n", " ") == long
    with pytest.raises(ValueError, match="scale='log' needs positive scores"):
        plot_score_histograms([0.0, 1.0], [0, 1], scale="log")
    with pytest.raises(ValueError, match="scale must be one of"):
        plot_score_histograms([0.0, 1.0], [0, 1], scale="sqrt")
