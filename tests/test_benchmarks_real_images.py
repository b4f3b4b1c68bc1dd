"""The real-images benchmark runs ``contrastkit train`` and tables it beside its baselines.

Not a benchmark itself: a closed-set and an open-set run of one epoch of two steps on 12
of scikit-learn's digits per class, only to check that the script writes the folder,
runs the command, rebuilds the run's split for the baselines (raw pixels, checked
against a NumPy 1-NN, and PCA), and writes the table and JSON the README's numbers come
from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import real_images

METRICS = ("precision_at_1", "map_at_r", "roc_auc", "knn_accuracy", "linear_probe_accuracy")


@pytest.mark.slow
def test_runs_and_baselines_are_tabled(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = ["--datasets", "digits", "--runs", "contrastive", "open-contrastive"]
    argv += ["--per-class", "12", "--epochs", "1", "--steps-per-epoch", "2"]
    argv += ["--batch-size", "32", "--threads", "1", "--pca", "8"]
    argv += ["--work", str(tmp_path / "work"), "--out", str(out)]
    rows = real_images.main(argv)

    methods = [(r["split"], r["method"]) for r in rows]
    assert methods == [
        ("closed", "contrastive"),
        ("closed", "1-NN raw pixels (baseline)"),
        ("closed", "PCA-8 pixels (baseline)"),
        ("open", "open-contrastive"),
        ("open", "1-NN raw pixels (baseline)"),
        ("open", "PCA-8 pixels (baseline)"),
    ]
    for r in rows:
        assert "error" not in r, r
        assert r["split_sizes"]["test"] > 0
        measured = METRICS if r["split"] == "closed" else METRICS[:3]
        for key in measured:
            assert 0 <= r[key] <= 1, (r["method"], key, r[key])
        if r["split"] == "open":  # no classifier of training classes names a test class
            assert r["knn_accuracy"] is None and r["linear_probe_accuracy"] is None
    trained = [r for r in rows if r["labels"] == "yes"]
    assert all(r["seconds"] > 0 and r["peak_mb"] > 0 for r in trained)
    assert rows[0]["split_sizes"] == rows[1]["split_sizes"]  # baselines on the run's split
    assert rows[1]["raw_check"]["agrees"] and rows[4]["raw_check"]["agrees"]
    assert rows[1]["precision_at_1"] == pytest.approx(rows[1]["raw_check"]["precision_at_1"])

    table = (out / "real-images.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| digits |")]
    assert len(lines) == 6
    assert all(line.count("|") == real_images.HEADER.count("|") for line in lines)
    assert "--split-by classes" in table and "agrees" in table
    saved = json.loads((out / "real-images.json").read_text())
    assert [(r["split"], r["method"]) for r in saved["rows"]] == methods
    assert saved["invocations"][0]["threads"] == 1 and "metrics" not in saved["rows"][0]


def test_unknown_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset must be 'mnist' or 'digits', got 'faces'"):
        real_images.write_folder("faces", tmp_path)


def test_appended_rows_replace_those_run_again_in_order() -> None:
    def row(dataset: str, split: str, method: str, value: float) -> dict:
        return {"dataset": dataset, "split": split, "method": method, "roc_auc": value}

    previous = [row("mnist", "closed", "a", 0.1), row("mnist", "open", "b", 0.2)]
    new = [row("digits", "closed", "a", 0.3), row("mnist", "closed", "a", 0.4)]
    new.append(row("mnist", "closed", "c", 0.5))
    out = real_images.merged(previous, new)
    assert [(r["dataset"], r["split"], r["method"], r["roc_auc"]) for r in out] == [
        ("mnist", "closed", "a", 0.4),
        ("mnist", "closed", "c", 0.5),
        ("mnist", "open", "b", 0.2),
        ("digits", "closed", "a", 0.3),
    ]
