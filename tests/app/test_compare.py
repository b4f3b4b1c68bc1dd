"""``contrastkit compare`` end to end on tiny settings: files, tables and their numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_cli import assert_one_line_error, call, snapshot, train_quietly

from contrastkit.app import run as run_module
from contrastkit.app.run import RunConfig, run_splits
from contrastkit.data.readers import load_digits

TINY = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--hidden", "16"]


def never(*_, **__):
    raise AssertionError("compare reloaded a finished run instead of using its result")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """The comparison, with loading a run back from disk made to fail."""
    folder = tmp_path_factory.mktemp("compare") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "load_run", never)
        mp.setattr(run_module, "load_reference", never)
        out = train_quietly("compare", *TINY, "--anomaly-class", "5", "-o", folder)
    return folder, out


def test_compare_writes_the_report_the_numbers_and_every_run(comparison):
    folder, out = comparison
    assert out.splitlines()[-1].endswith(f"report: {folder / 'report.html'}")
    assert "maps: training the autoencoder's 2-D code (1 epochs)" in out
    assert (folder / "report.html").is_file() and (folder / "comparison.json").is_file()
    assert {p.name for p in (folder / "figures").iterdir()} == {"maps.png", "anomaly_roc.png"}
    assert {p.name for p in (folder / "runs").iterdir()} == {
        "map-autoencoder",
        "map-siamese",
        "anomaly-reconstruction",
        "anomaly-contrastive",
        "anomaly-combined",
    }
    result = json.loads((folder / "comparison.json").read_text())
    assert list(result["maps"]) == ["pca", "autoencoder", "siamese"]
    assert result["settings"]["epochs"] == 1 and result["settings"]["hidden"] == [16]
    assert result["anomaly"]["class"] == "5"


def test_the_map_table_holds_each_run_measured_on_the_test_split(comparison):
    folder, _ = comparison
    result = json.loads((folder / "comparison.json").read_text())
    for name, run in (("autoencoder", "map-autoencoder"), ("siamese", "map-siamese")):
        metrics = json.loads((folder / "runs" / run / "metrics.json").read_text())
        assert json.loads((folder / "runs" / run / "model.json").read_text())["embedding_dim"] == 2
        for key in ("precision_at_1", "map_at_r", "roc_auc", "eer"):
            assert result["maps"][name][key] == metrics["test"][key]
    page = (folder / "report.html").read_text()
    for values in result["maps"].values():
        assert f"{values['precision_at_1']:.4f}" in page and f"{values['eer']:.4f}" in page
    assert page.count("data:image/png;base64,") == 2
    assert "runs/anomaly-combined/report.html" in page


def pca_precision_at_1_by_loops():
    """Independently of the command: PCA by SVD of the training pixels, then 1-NN by loops."""
    digits = load_digits()
    train, _, test, _ = run_splits(RunConfig().checked(), digits)
    x = train.inputs.double().numpy()
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    points = ((test.inputs.double().numpy() - mean) @ vt[:2].T).tolist()
    labels = test.labels.tolist()
    hits = 0
    for i, p in enumerate(points):
        nearest = min(
            (j for j in range(len(points)) if j != i), key=lambda j: math.dist(p, points[j])
        )
        hits += labels[nearest] == labels[i]
    return hits / len(points)


def test_the_pca_row_is_pca(comparison):
    folder, _ = comparison
    result = json.loads((folder / "comparison.json").read_text())
    expected = pca_precision_at_1_by_loops()
    assert result["maps"]["pca"]["precision_at_1"] == pytest.approx(expected, abs=1 / 269)


def test_the_anomaly_table_holds_each_objective_and_its_scores(comparison):
    folder, _ = comparison
    result = json.loads((folder / "comparison.json").read_text())
    runs = result["anomaly"]["runs"]
    assert list(runs) == ["reconstruction", "contrastive", "combined"]
    assert list(runs["contrastive"]) == ["knn", "centroid"]  # no decoder, no reconstruction
    assert list(runs["combined"]) == ["reconstruction", "knn", "centroid"]
    for objective, scores in runs.items():
        metrics = json.loads(
            (folder / "runs" / f"anomaly-{objective}" / "metrics.json").read_text()
        )
        assert metrics["anomaly"]["class"] == "5"
        for method, values in scores.items():
            for key in ("roc_auc", "average_precision"):
                assert values[key] == metrics["anomaly"]["scores"][method][key]
    page = (folder / "report.html").read_text()
    assert "Anomaly detection" in page and "—" in page
    assert f"{runs['combined']['knn']['roc_auc']:.4f}" in page


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["-o", "taken"], ["taken", "already exists"]),
        (["--anomaly-class", "12", "-o", "new"], ["anomaly_class", "'12'"]),
        (["--epochs", "0", "-o", "new"], ["epochs", "0"]),
    ],
)
def test_bad_compare_options_are_one_line_and_create_nothing(
    tmp_path, capsys, monkeypatch, argv, named
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "compare", *TINY, *argv)
    assert_one_line_error(status, err, *named)
    assert status == 2 and snapshot(tmp_path) == before
