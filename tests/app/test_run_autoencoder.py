"""Autoencoder and combined runs, held-out anomaly classes and ``contrastkit score``, end to end.

Every run is the real command on tiny settings (a few steps of small batches), in-process.
The scores are checked against plain-loop computations from the run folder's own files.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_cli import (
    SMALL,
    assert_one_line_error,
    call,
    kill_after_first_epoch,
    make_images,
    same_weights,
    snapshot,
    train_quietly,
)

from contrastkit.app.cli import main
from contrastkit.app.run import RunConfig, load_run, run_splits
from contrastkit.data.readers import load_digits

DIGITS = load_digits()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """User files: some digits as feature files, images of 3 classes, 2-class features."""
    root = tmp_path_factory.mktemp("ae-data")
    x, y = DIGITS.inputs.numpy(), DIGITS.labels.numpy()
    np.savez(root / "threes.npz", features=x[y == 3][:12])
    np.savez(root / "mixed.npz", features=x[:20], label=y[:20])
    make_images(root / "images")
    rng = np.random.default_rng(0)
    two = rng.normal(size=(40, 4)) + 3 * np.repeat([0, 1], 20)[:, None]
    np.savez(root / "two.npz", features=two, label=np.repeat([0, 1], 20))
    return root


@pytest.fixture(scope="module")
def reconstruction_run(tmp_path_factory):
    """Without -o: the run folder is named by the objective."""
    here = tmp_path_factory.mktemp("here")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(here)
        out = train_quietly("train", *SMALL, "--objective", "reconstruction")
    assert out.splitlines()[-1].endswith(str(Path("runs/digits-reconstruction-1/report.html")))
    return here / "runs" / "digits-reconstruction-1"


@pytest.fixture(scope="module")
def contrastive_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "contrastive"
    train_quietly("train", *SMALL, "-o", run)
    return run


@pytest.fixture(scope="module")
def combined_run(tmp_path_factory):
    """A combined run with digit 3 held out, not quiet: its epoch lines are kept."""
    run = tmp_path_factory.mktemp("runs") / "combined"
    argv = [a for a in SMALL if a != "--quiet"]
    out = train_quietly(
        "train",
        *argv,
        *("--objective", "combined", "--contrastive-weight", "0.5", "--anomaly-class", "3"),
        *("-o", run),
    )
    return run, out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, folder):
    """A denoising autoencoder with binary cross-entropy on images (the ConvDecoder path)."""
    run = tmp_path_factory.mktemp("runs") / "images"
    train_quietly(
        "train",
        *SMALL,
        *("--data", folder / "images", "--image-size", "8", "--objective", "reconstruction"),
        *("--reconstruction-loss", "bce", "--noise-std", "0.1", "-o", run),
    )
    return run


def metrics_of(run):
    return json.loads((Path(run) / "metrics.json").read_text())


def read_scores(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


# --- the runs --------------------------------------------------------------------------


def test_a_reconstruction_run_is_an_autoencoder_of_the_siamese_encoder(reconstruction_run):
    spec = json.loads((reconstruction_run / "model.json").read_text())
    assert spec == {
        "kind": "vectors",
        "embedding_dim": 2,
        "hidden": [16],
        "in_features": 64,
        "autoencoder": {"noise_std": 0.0, "reconstruction_loss": "mse", "input_range": [0, 16]},
    }
    config, model = load_run(reconstruction_run)
    assert config.objective == "reconstruction"
    assert [type(m).__name__ for m in (model, model.encoder, model.decoder)] == [
        "Autoencoder",
        "MLPEncoder",
        "MLPDecoder",
    ]
    weights = load_file(str(reconstruction_run / "model.safetensors"))
    assert weights["encoder.1.weight"].shape == (16, 64)  # 64 pixels -> 16 -> code 2
    assert weights["decoder.0.weight"].shape == (16, 2)  # code 2 -> 16 -> 64 pixels
    metrics = metrics_of(reconstruction_run)
    assert {"roc_auc", "precision_at_1", "map_at_r", "reconstruction_error"} <= set(metrics["test"])
    assert metrics["objective"] == {"name": "reconstruction", "terms": {"reconstruction": 1.0}}
    record = metrics["history"][-1]
    assert record["train_reconstruction"] == record["train_loss"]
    assert "val_reconstruction" in record and "anomaly" not in metrics
    figures = {p.name for p in (reconstruction_run / "figures").glob("*.png")}
    assert figures == {
        "embedding.png",
        "roc.png",
        "distances.png",
        "history.png",
        "val_metrics.png",
    }
    page = (reconstruction_run / "report.html").read_text()
    assert "autoencoder trained on reconstruction (mse)" in page
    assert "mean reconstruction error" in page


def test_the_test_reconstruction_error_is_the_mean_squared_error_of_scaled_pixels(
    reconstruction_run,
):
    config, model = load_run(reconstruction_run)
    _, _, test, _ = run_splits(config, load_digits())
    x = test.inputs / 16.0
    with torch.no_grad():
        rebuilt = model.reconstruct(x)
    per_sample = [
        sum((a - b) ** 2 for a, b in zip(r, t, strict=True)) / len(t)
        for r, t in zip(rebuilt.tolist(), x.tolist(), strict=True)
    ]
    saved = metrics_of(reconstruction_run)["test"]["reconstruction_error"]
    assert saved == pytest.approx(sum(per_sample) / len(per_sample), rel=1e-5)


def test_a_combined_run_logs_each_term_everywhere(combined_run):
    run, out = combined_run
    metrics = metrics_of(run)
    assert metrics["objective"] == {
        "name": "combined",
        "terms": {"reconstruction": 1.0, "contrastive": 0.5},
    }
    for record in metrics["history"]:
        for part in ("train", "val"):
            total = record[f"{part}_reconstruction"] + 0.5 * record[f"{part}_contrastive"]
            assert record[f"{part}_loss"] == pytest.approx(total, rel=1e-6)
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2
    assert "(reconstruction " in epochs[0] and ", contrastive " in epochs[0]
    config = (run / "config.toml").read_text().splitlines()
    for line in (
        'objective = "combined"',
        "contrastive_weight = 0.5",
        "reconstruction_weight = 1.0",
        'anomaly_class = "3"',
    ):
        assert line in config
    page = (run / "report.html").read_text()
    assert "1 × reconstruction (mse) + 0.5 × contrastive loss" in page
    assert ">training reconstruction</th>" in page and ">validation contrastive</th>" in page
    assert "Each term is logged unweighted" in page


def test_a_held_out_class_is_scored_as_the_anomaly(combined_run):
    run, out = combined_run
    metrics = metrics_of(run)
    threes = int((DIGITS.labels == 3).sum())
    data = metrics["data"]
    assert data["train"] + data["validation"] + data["test"] == len(DIGITS) - threes
    anomaly = metrics["anomaly"]
    assert (anomaly["class"], anomaly["anomalies"], anomaly["normal"]) == (
        "3",
        threes,
        data["test"],
    )
    assert list(anomaly["scores"]) == ["reconstruction", "knn", "centroid"]
    for values in anomaly["scores"].values():
        assert 0 <= values["roc_auc"] <= 1 and 0 <= values["average_precision"] <= 1
        assert 0 <= values["detected"] <= 1 and 0 <= values["false_alarms"] <= 1
    # no 3 anywhere in training: the reference labels are those of the training split
    labels = load_file(str(run / "reference.safetensors"))["labels"]
    assert len(labels) == data["train"] and 3 not in labels.tolist()
    figures = {p.name for p in (run / "figures").glob("anomaly_*.png")}
    assert figures == {f"anomaly_{m}.png" for m in ("reconstruction", "knn", "centroid", "roc")}
    page = (run / "report.html").read_text()
    assert "Anomaly detection" in page and "distance to the nearest class centroid" in page
    assert page.count("data:image/png;base64,") == len(list((run / "figures").glob("*.png")))
    assert "anomaly (class 3): reconstruction error: ROC-AUC " in out


def test_the_report_of_a_held_out_class_has_the_measured_numbers(combined_run):
    run, _ = combined_run
    page = (run / "report.html").read_text()
    for values in metrics_of(run)["anomaly"]["scores"].values():
        assert f"{values['roc_auc']:.4f}" in page and f"{values['average_precision']:.4f}" in page


def test_a_denoising_bce_image_autoencoder(image_run):
    spec = json.loads((image_run / "model.json").read_text())
    assert spec["autoencoder"]["noise_std"] == 0.1
    assert spec["autoencoder"]["reconstruction_loss"] == "bce"
    low, high = spec["autoencoder"]["input_range"]
    assert 0.0 <= low < high <= 1.0
    config, model = load_run(image_run)
    assert type(model.decoder).__name__ == "ConvDecoder" and model.noise_std == 0.1
    assert config.reconstruction_loss == "bce"
    assert metrics_of(image_run)["test"]["reconstruction_error"] > 0


def test_evaluate_and_embed_scale_the_inputs_of_an_autoencoder(
    tmp_path, capsys, folder, reconstruction_run
):
    status, out, _ = call(capsys, "evaluate", reconstruction_run, "--json")
    assert status == 0
    metrics = metrics_of(reconstruction_run)
    saved = metrics["test"]
    found = json.loads(out)
    raw = found.pop("raw_inputs")  # evaluate --json adds the raw-input baseline
    for key, value in found.items():
        assert value == pytest.approx(saved[key], rel=1e-6, abs=1e-9), key
    assert raw == pytest.approx(
        {**metrics["raw_inputs"]["test"], **metrics["probes"]["raw_inputs"]}, rel=1e-6, abs=1e-9
    )
    status, _, _ = call(
        capsys, "embed", reconstruction_run, folder / "mixed.npz", "-o", tmp_path / "e.npy"
    )
    assert status == 0
    _, model = load_run(reconstruction_run)
    with torch.no_grad():
        expected = model(DIGITS.inputs[:20] / 16.0)
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_an_anomaly_run_evaluates_on_its_normal_test_samples(capsys, combined_run):
    run, _ = combined_run
    status, out, _ = call(capsys, "evaluate", run, "--json")
    assert status == 0
    assert json.loads(out)["roc_auc"] == pytest.approx(metrics_of(run)["test"]["roc_auc"])


# --- score -----------------------------------------------------------------------------


def loop_knn(reference, embeddings, k):
    out = []
    for z in embeddings.tolist():
        d = sorted(math.dist(z, r) for r in reference.tolist())
        out.append(sum(d[:k]) / k)
    return out


def loop_centroid(reference, labels, embeddings):
    centroids = {}
    for c in sorted(set(labels.tolist())):
        rows = [r for r, y in zip(reference.tolist(), labels.tolist(), strict=True) if y == c]
        centroids[c] = [sum(col) / len(rows) for col in zip(*rows, strict=True)]
    return [min(math.dist(z, m) for m in centroids.values()) for z in embeddings.tolist()]


def test_score_gives_every_score_of_new_inputs(tmp_path, capsys, folder, combined_run):
    run, _ = combined_run
    out_file = tmp_path / "scores.csv"
    status, out, err = call(capsys, "score", run, folder / "threes.npz", "-o", out_file)
    assert status == 0 and err == ""
    assert str(out_file) in out and "12 inputs" in out
    header, rows = read_scores(out_file)
    assert header == ["input", "reconstruction", "knn", "centroid"]
    assert [r[0] for r in rows] == [str(i) for i in range(12)]
    values = np.array([[float(v) for v in r[1:]] for r in rows])

    _, model = load_run(run)
    x = DIGITS.inputs[DIGITS.labels == 3][:12] / 16.0  # the run's scaling of the pixels
    reference = load_file(str(run / "reference.safetensors"))
    with torch.no_grad():
        codes, rebuilt = model(x), model.reconstruct(x)
    mse = [
        sum((a - b) ** 2 for a, b in zip(r, t, strict=True)) / len(t)
        for r, t in zip(rebuilt.tolist(), x.tolist(), strict=True)
    ]
    np.testing.assert_allclose(values[:, 0], mse, rtol=1e-4)
    np.testing.assert_allclose(values[:, 1], loop_knn(reference["embeddings"], codes, 5), rtol=1e-4)
    expected = loop_centroid(reference["embeddings"], reference["labels"], codes)
    np.testing.assert_allclose(values[:, 2], expected, rtol=1e-4, atol=1e-5)


def test_score_with_chosen_methods_and_of_a_contrastive_run(
    tmp_path, capsys, folder, combined_run, contrastive_run
):
    run, _ = combined_run
    status, _, _ = call(
        capsys,
        "score",
        run,
        folder / "mixed.npz",
        "-o",
        tmp_path / "a.csv",
        "--method",
        "centroid,knn",
    )
    assert status == 0
    header, rows = read_scores(tmp_path / "a.csv")
    assert header == ["input", "centroid", "knn"] and len(rows) == 20
    status, _, _ = call(
        capsys, "score", contrastive_run, folder / "mixed.npz", "-o", tmp_path / "b.csv"
    )
    assert status == 0
    assert read_scores(tmp_path / "b.csv")[0] == ["input", "knn", "centroid"]


def test_score_images_names_each_file(tmp_path, capsys, folder, image_run):
    out_file = tmp_path / "images.csv"
    status, _, err = call(capsys, "score", image_run, folder / "images", "-o", out_file)
    assert status == 0 and err == ""
    header, rows = read_scores(out_file)
    assert header == ["input", "reconstruction", "knn", "centroid"] and len(rows) == 24
    assert rows[0][0] == str(folder / "images" / "class0" / "0.png")
    assert all(float(v) >= 0 for row in rows for v in row[1:])


def test_bad_score_input_is_one_line_and_touches_nothing(
    tmp_path, capsys, monkeypatch, folder, combined_run, contrastive_run
):
    run, _ = combined_run
    contrastive = contrastive_run
    monkeypatch.chdir(tmp_path)
    Path("taken.csv").write_text("mine\n")
    old = tmp_path / "old"  # a run folder from before reference.safetensors
    shutil.copytree(contrastive, old)
    (old / "reference.safetensors").unlink()
    before = snapshot(tmp_path, run, contrastive)
    threes = folder / "threes.npz"
    cases = [
        (["score", run, threes, "-o", "taken.csv"], ["taken.csv", "already exists"]),
        (["score", run, threes, "-o", "s.npy"], ["s.npy", ".csv"]),
        (["score", run, threes, "-o", "no/s.csv"], ["no", "does not exist"]),
        (["score", run, "missing.npz", "-o", "s.csv"], ["missing.npz", "does not exist"]),
        (["score", run, folder / "images", "-o", "s.csv"], ["images", "feature vectors"]),
        (["score", run, folder / "two.npz", "-o", "s.csv"], ["two.npz", "4 features", "64"]),
        (["score", "nowhere", threes, "-o", "s.csv"], ["nowhere", "does not exist"]),
        (
            ["score", contrastive, threes, "-o", "s.csv", "--method", "reconstruction"],
            ["--method reconstruction", "not available", "knn, centroid"],
        ),
        (["score", old, threes, "-o", "s.csv"], ["reference.safetensors"]),
    ]
    for argv, named in cases:
        status, _, err = call(capsys, *argv)
        assert_one_line_error(status, err, *named)
        assert status == 2
    with pytest.raises(SystemExit) as stop:
        main(["score", str(run), str(threes), "-o", "s.csv", "--method", "knn,lof"])
    assert_one_line_error(stop.value.code, capsys.readouterr().err, "--method", "knn,lof")
    assert snapshot(tmp_path, run, contrastive) == before


# --- resume and bad options ----------------------------------------------------------------


def test_a_killed_combined_run_resumes_to_the_uninterrupted_weights(tmp_path, capsys, monkeypatch):
    options = [*SMALL, "--objective", "combined", "--noise-std", "0.2"]
    assert call(capsys, "train", *options, "-o", tmp_path / "whole")[0] == 0
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, err = call(capsys, "train", *options, "-o", tmp_path / "killed")
    assert status == 130 and "--resume" in err
    status, _, err = call(capsys, "train", "--resume", tmp_path / "killed")
    assert status == 0 and err == ""
    assert same_weights(tmp_path / "killed", tmp_path / "whole")
    history = metrics_of(tmp_path / "killed")["history"]
    whole = metrics_of(tmp_path / "whole")["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    for a, b in zip(history, whole, strict=True):
        assert a["train_contrastive"] == b["train_contrastive"]
        assert a["train_reconstruction"] == b["train_reconstruction"]


BAD = [
    (["--objective", "pca"], ["objective", "'pca'", "contrastive, reconstruction, combined"]),
    (["--objective", "reconstruction", "--reconstruction-loss", "l1"], ["reconstruction_loss"]),
    (["--objective", "reconstruction", "--noise-std", "-1"], ["noise_std", "-1"]),
    (["--objective", "reconstruction", "--noise-std", "inf"], ["noise_std"]),
    (["--noise-std", "0.1"], ["noise_std", "reconstruction or combined", "'contrastive'"]),
    (["--reconstruction-loss", "bce"], ["reconstruction_loss", "'contrastive'"]),
    (["--objective", "combined", "--contrastive-weight", "0"], ["contrastive_weight", "0"]),
    (["--objective", "combined", "--reconstruction-weight", "nan"], ["reconstruction_weight"]),
    (
        ["--objective", "reconstruction", "--contrastive-weight", "0.5"],
        ["contrastive_weight", "combined", "'reconstruction'"],
    ),
    (["--anomaly-class", "11"], ["anomaly_class", "'11'", "0, 1, 2"]),
    (["--data", "two.npz", "--anomaly-class", "1"], ["two.npz", "at least 2 normal classes"]),
    (["--data", "pairs.csv", "--anomaly-class", "x"], ["anomaly_class", "pairs"]),
    (["--config", "bad_objective.toml"], ["objective", "str", "3"]),
]


@pytest.mark.parametrize(("argv", "named"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_options_are_one_line_and_create_nothing(
    tmp_path, capsys, monkeypatch, folder, argv, named
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_objective.toml").write_text("objective = 3\n")
    np.savez(tmp_path / "two.npz", **np.load(folder / "two.npz"))
    make_images(tmp_path / "images")
    rows = ["left,right,label"] + [
        f"images/class{c}/{i}.png,images/class{(c + k) % 3}/{i + 1}.png,{int(k == 0)}"
        for c in range(3)
        for i in range(6)
        for k in (0, 1)
    ]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "train", *SMALL, *argv, "--image-size", "8")
    assert_one_line_error(status, err, *named)
    assert status == 2
    assert snapshot(tmp_path) == before


def test_a_config_with_the_new_options_round_trips(tmp_path):
    config = RunConfig(
        objective="combined",
        reconstruction_loss="bce",
        noise_std=0.25,
        reconstruction_weight=2.0,
        contrastive_weight=0.5,
        anomaly_class="7",
    ).checked()
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    from contrastkit.app.run import read_config_file

    again = RunConfig.from_mapping(read_config_file(path))
    assert again == config
