"""Open-set verification through the command: ``--split-by classes`` and ``--pairs-list``.

Tiny generated image folders (8 identities of 4 images of 8×8 pixels): the open-set run
holds whole identities out of training, resumes bit-identically, and ``evaluate
--pairs-list`` gives LFW's fold metrics; bad inputs end in one line with status 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import (
    assert_one_line_error,
    call,
    kill_after_first_epoch,
    same_weights,
    snapshot,
    train_quietly,
)

from contrastkit.app.build import open_set_note

IDENTITIES, PER_IDENTITY = 8, 4
TINY = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "2",
    "--batch-size",
    "8",
    "--hidden",
    "4",
    "--embedding-dim",
    "4",
    "--image-size",
    "8",
    "--quiet",
]


def make_faces(folder: Path) -> Path:
    """8 identities × 4 images, 8×8 RGB: each identity a colour, each image noisy."""
    rng = np.random.default_rng(0)
    for i in range(IDENTITIES):
        person = folder / f"person{i}"
        person.mkdir(parents=True)
        base = rng.integers(0, 256, size=3)
        for j in range(PER_IDENTITY):
            pixels = np.clip(base + rng.normal(0, 30, size=(8, 8, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(person / f"{j}.png")
    return folder


def make_pairs(folder: Path, name: str = "pairs.csv") -> Path:
    """20 same-identity and 20 different-identity pairs of the folder's images."""
    rows = []
    for k in range(20):
        i = k % IDENTITIES
        rows.append(f"person{i}/{k % 2}.png,person{i}/{2 + k % 2}.png,1")
    for k in range(20):
        i, j = k % IDENTITIES, (k + 1 + k // IDENTITIES) % IDENTITIES
        rows.append(f"person{i}/{k % 4}.png,person{j}/{(k + 1) % 4}.png,0")
    path = folder / name
    path.write_text("left,right,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("faces") / "faces")


@pytest.fixture(scope="module")
def open_run(tmp_path_factory, faces):
    run = tmp_path_factory.mktemp("open") / "run"
    train_quietly("train", *TINY, "--data", faces, "--split-by", "classes", "-o", run)
    return run


def test_split_by_classes_holds_whole_identities_out(open_run):
    metrics = json.loads((open_run / "metrics.json").read_text())
    split = metrics["data"]["split"]
    train, val, test = (set(split[f"{k}_classes"]) for k in ("train", "validation", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == {f"person{i}" for i in range(IDENTITIES)}
    # round(8 × 0.15) = 1, raised to 2 each: 4 identities train, 2 + 2 held out
    assert (len(train), len(val), len(test)) == (4, 2, 2)
    sizes = metrics["data"]
    assert (sizes["train"], sizes["validation"], sizes["test"]) == (16, 8, 8)
    note = "open set: 4 training identities, 2 validation, 2 test; no test identity was seen"
    assert note in (open_run / "report.html").read_text()
    assert 'split_by = "classes"' in (open_run / "config.toml").read_text()


def test_the_default_split_spreads_each_identity(tmp_path, faces):
    run = tmp_path / "run"
    train_quietly("train", *TINY, "--data", faces, "-o", run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "split" not in metrics["data"]
    assert "open set" not in (run / "report.html").read_text()


def test_open_set_note_says_when_an_identity_was_seen():
    split = {"train_classes": ["a", "b"], "validation_classes": ["c"], "test_classes": ["a"]}
    assert "some held-out identities were seen in training" in open_set_note(split)


def test_an_open_set_run_resumes_bit_identically(tmp_path, capsys, monkeypatch, faces, open_run):
    killed = tmp_path / "killed"
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, err = call(
            capsys, "train", *TINY, "--data", faces, "--split-by", "classes", "-o", killed
        )
    assert status == 130, err
    status, _, err = call(capsys, "train", "--resume", killed, "--quiet")
    assert status == 0, err
    assert same_weights(open_run, killed)


def test_evaluate_pairs_list_gives_the_fold_metrics(capsys, faces, open_run):
    pairs = make_pairs(faces)
    status, out, err = call(capsys, "evaluate", open_run, "--pairs-list", pairs, "--json")
    assert status == 0, err
    metrics = json.loads(out)
    assert metrics["pairs"] == 40 and metrics["folds"] == 10.0
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["accuracy_std"] >= 0.0
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and 0.0 <= metrics["eer"] <= 1.0
    status, out, err = call(capsys, "evaluate", open_run, "--pairs-list", pairs)
    assert status == 0, err
    assert "LFW's protocol (10 folds" in out
    assert f"{metrics['accuracy']:.4f} ± {metrics['accuracy_std']:.4f}" in out
    assert "ROC" in out


def test_evaluate_pairs_list_bad_inputs(tmp_path, capsys, faces, open_run):
    missing = tmp_path / "pairs.csv"
    missing.write_text(
        "left,right,label\nperson0/0.png,nobody/0.png,0\nperson0/0.png,person0/1.png,1\n"
    )
    shutil.copytree(faces / "person0", tmp_path / "person0")
    status, _, err = call(capsys, "evaluate", open_run, "--pairs-list", missing)
    assert_one_line_error(status, err, "nobody")
    status, _, err = call(capsys, "evaluate", open_run, "--pairs-list", tmp_path / "none.csv")
    assert_one_line_error(status, err, "none.csv")
    status, _, err = call(
        capsys, "evaluate", open_run, "--pairs-list", make_pairs(faces), "--data", faces
    )
    assert_one_line_error(status, err, "--data")


def test_evaluate_pairs_list_refuses_a_feature_run(tmp_path, capsys, faces):
    run = tmp_path / "run"
    train_quietly(
        "train", "--epochs", "1", "--steps-per-epoch", "1", "--hidden", "4", "--quiet", "-o", run
    )
    status, _, err = call(capsys, "evaluate", run, "--pairs-list", make_pairs(faces, "p2.csv"))
    assert_one_line_error(status, err, "feature vectors", "image run")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--anomaly-class", "person0"], "anomaly_class"),
        (["--split-by", "identities"], "--split-by"),
    ],
)
def test_split_by_classes_refuses_what_cannot_work(tmp_path, capsys, faces, extra, named):
    args = ["--split-by", "classes", *extra] if extra[0] != "--split-by" else extra
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "train", *TINY, "--data", faces, *args, "-o", tmp_path / "r")
    assert_one_line_error(status, err, named)
    assert snapshot(tmp_path) == before


def test_split_by_classes_refuses_a_pair_file_and_too_few_identities(tmp_path, capsys, faces):
    pairs = make_pairs(faces, "train-pairs.csv")
    status, _, err = call(
        capsys, "train", *TINY, "--data", pairs, "--split-by", "classes", "-o", tmp_path / "r"
    )
    assert_one_line_error(status, err, "pair file", "split_by samples")
    few = tmp_path / "few"
    for i in range(5):
        shutil.copytree(faces / f"person{i}", few / f"person{i}")
    status, _, err = call(
        capsys, "train", *TINY, "--data", few, "--split-by", "classes", "-o", tmp_path / "r"
    )
    assert_one_line_error(status, err, "at least 6")
    assert not (tmp_path / "r").exists()
