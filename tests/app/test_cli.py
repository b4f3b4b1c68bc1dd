"""The ``contrastkit`` command, driven in-process on tiny data, and once as a real process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from contrastkit.app.cli import main
from contrastkit.data.readers import DataError
from contrastkit.training import Trainer

# Small enough that a run takes about half a second once torch is warm.
SMALL = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "3",
    "--batch-size",
    "16",
    "--hidden",
    "16",
    "--embedding-dim",
    "2",
    "--quiet",
]
RUN_FILES = ["config.toml", "model.json", "model.safetensors", "metrics.json", "report.html"]
TEST_METRICS = ["roc_auc", "eer", "threshold", "accuracy", "precision_at_1", "map_at_r"]


def call(capsys, *argv):
    """Run the command in-process; returns (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *named, code=2):
    """One line ``contrastkit: error: ...`` naming each of ``named``, and exit status
    ``code``: 2 for bad input (the default), 1 for a failure such as a full disk."""
    assert status == code, (status, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("contrastkit: error: "), err
    for name in named:
        assert str(name) in lines[0], (name, err)


def snapshot(*roots):
    """Every file and folder under ``roots``, with each file's bytes and mtime."""
    state = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                state[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
            else:
                state[str(path)] = "folder"
    return state


def weights(run):
    return load_file(str(Path(run) / "model.safetensors"))


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def relative_difference(a, b, *, prefix=""):
    """|w_b - w_a| / |w_a| over the floating weights of two runs (keys starting ``prefix``).

    The measure of runs equal up to float32 sums in another order (several processes,
    micro-batches), which Adam magnifies where a gradient is 0.
    """
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    keys = [k for k in wa if wa[k].is_floating_point() and k.startswith(prefix)]
    assert keys, prefix
    diff = torch.cat([(wb[k].double() - wa[k].double()).flatten() for k in keys])
    scale = torch.cat([wa[k].double().flatten() for k in keys])
    return float(diff.norm() / scale.norm())


# --- data ----------------------------------------------------------------------------


def make_features(folder, *, classes=3, per_class=20, features=5):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(len(y), features)) + 3.0 * y[:, None]
    np.savez(folder / "features.npz", features=x, label=y)
    names = np.array(["cat", "dog", "eel", "fox"])[y % 4]
    lines = [",".join([*(f"f{i}" for i in range(features)), "species"])]
    lines += [
        ",".join([*(f"{v:.5f}" for v in row), name]) for row, name in zip(x, names, strict=True)
    ]
    (folder / "features.csv").write_text("\n".join(lines) + "\n")
    return x, y


def make_images(root, *, classes=3, per_class=8, size=8):
    rng = np.random.default_rng(1)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size)) + 90 * c
            Image.fromarray(pixels.astype(np.uint8), "L").save(root / f"class{c}" / f"{i}.png")
    return root


def make_pair_csv(folder, image_root):
    rng = np.random.default_rng(2)
    rel = image_root.relative_to(folder)
    rows = ["left,right,label"]
    for k in range(48):
        c = k % 3
        i, j = rng.choice(8, size=2, replace=False)
        other = c if k % 2 == 0 else (c + 1) % 3
        rows.append(f"{rel}/class{c}/{i}.png,{rel}/class{other}/{j}.png,{int(other == c)}")
    path = folder / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny user data, by absolute path: features (.npz, .csv), images, pairs."""
    folder = tmp_path_factory.mktemp("data")
    make_features(folder)
    images = make_images(folder / "images")
    make_pair_csv(folder, images)
    return folder


def train_quietly(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    assert status == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The default command's shape: only --epochs, --steps-per-epoch and -o."""
    folder = tmp_path_factory.mktemp("default")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        out = train_quietly("train", "--epochs", "1", "--steps-per-epoch", "2", "-o", "run")
    return folder / "run", out


@pytest.fixture(scope="module")
def feature_run(tmp_path_factory, data):
    run = tmp_path_factory.mktemp("runs") / "features"
    train_quietly("train", *SMALL, "--data", data / "features.npz", "-o", run)
    return run


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, data):
    run = tmp_path_factory.mktemp("runs") / "images"
    train_quietly("train", *SMALL, "--data", data / "images", "--image-size", "8", "-o", run)
    return run


# --- train: the default run ----------------------------------------------------------


def test_default_train_writes_every_file(digits_run):
    run, out = digits_run
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert {p.name for p in (run / "figures").glob("*.png")} == {
        "loss_curve.png",
        "embedding.png",
        "roc.png",
        "distances.png",
        "history.png",
        "val_metrics.png",
    }
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0001"]
    assert out.splitlines()[-1].endswith(f"report: {Path('run') / 'report.html'}")
    assert "test: ROC-AUC " in out and ", equal error rate " in out


def test_default_config_is_the_documented_default(digits_run):
    text = (digits_run[0] / "config.toml").read_text()
    for line in (
        'data = "digits"',
        'loss = "contrastive"',
        "margin = 1.0",
        'distance = "euclidean"',
        "embedding_dim = 32",
        "epochs = 1",
        "steps_per_epoch = 2",
        "seed = 0",
    ):
        assert line in text.splitlines()


def test_metrics_json_has_the_test_metrics_and_history(digits_run):
    metrics = json.loads((digits_run[0] / "metrics.json").read_text())
    for key in TEST_METRICS:
        assert isinstance(metrics["test"][key], float), key
    assert 0.0 <= metrics["test"]["roc_auc"] <= 1.0
    assert len(metrics["history"]) == 1 and metrics["history"][0]["epoch"] == 1
    assert metrics["data"]["classes"] == 10
    assert sum(metrics["data"][k] for k in ("train", "validation", "test")) == 1797
    assert metrics["distance"] == "euclidean"
    assert not any(key.startswith("_") for key in metrics)


def test_report_is_self_contained(digits_run):
    run = digits_run[0]
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(list((run / "figures").glob("*.png")))
    for name in ("ROC-AUC", "equal error rate", "precision@1", "MAP@R", "threshold"):
        assert name in page
    assert "embedding_dim = 32" in page and "steps_per_epoch = 2" in page
    assert "src='http" not in page and "<link" not in page  # nothing fetched from outside


def test_train_picks_a_free_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    taken = tmp_path / "runs" / "digits-triplet-1"
    taken.mkdir(parents=True)
    (taken / "mine.txt").write_text("keep me")
    before = snapshot(taken)
    status, out, err = call(capsys, "train", *SMALL, "--loss", "triplet")
    assert status == 0 and err == ""
    assert out.splitlines()[-1].endswith(str(Path("runs/digits-triplet-2/report.html")))
    assert (tmp_path / "runs" / "digits-triplet-2" / "report.html").is_file()
    assert snapshot(taken) == before


# --- train: options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "distance"),
    [
        ("contrastive", "euclidean"),
        ("triplet", "euclidean"),
        ("infonce", "cosine"),
        ("supcon", "cosine"),
    ],
)
def test_each_loss_trains_on_digits(tmp_path, capsys, loss, distance):
    status, _, err = call(capsys, "train", *SMALL, "--loss", loss, "-o", tmp_path / "run")
    assert status == 0 and err == ""
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(TEST_METRICS) <= set(metrics["test"])
    assert len(metrics["history"]) == 2 and metrics["distance"] == distance
    config = (tmp_path / "run" / "config.toml").read_text()
    assert f'loss = "{loss}"' in config and f'distance = "{distance}"' in config
    assert (tmp_path / "run" / "figures" / "loss_curve.png").exists() == (loss == "contrastive")


def test_margin_distance_seed_and_dim_reach_the_config(tmp_path, capsys, data):
    run = tmp_path / "run"
    status, _, _ = call(
        capsys,
        *("train", *SMALL, "--data", data / "features.npz", "--loss", "triplet"),
        *("--margin", "0.25", "--distance", "manhattan", "--seed", "3", "--embedding-dim", "4"),
        *("--lr", "0.01", "-o", run),
    )
    assert status == 0
    text = (run / "config.toml").read_text().splitlines()
    for line in ("margin = 0.25", 'distance = "manhattan"', "seed = 3", "embedding_dim = 4"):
        assert line in text
    assert json.loads((run / "model.json").read_text())["embedding_dim"] == 4


def test_config_file_round_trips(tmp_path, capsys, feature_run):
    again = tmp_path / "again"
    status, _, err = call(capsys, "train", "--config", feature_run / "config.toml", "-o", again)
    assert status == 0 and err == ""
    assert (again / "config.toml").read_text() == (feature_run / "config.toml").read_text()
    assert same_weights(again, feature_run)  # the same config trains the same network


def test_flags_override_the_config_file(tmp_path, capsys, data):
    config = tmp_path / "mine.toml"
    config.write_text(
        f"data = {json.dumps(str(data / 'features.npz'))}\n"
        "loss = 'triplet'\nmargin = 0.5\nepochs = 1\nsteps_per_epoch = 2\nbatch_size = 16\n"
        "hidden = [8]\nembedding_dim = 3\n"
    )
    before = snapshot(tmp_path)
    run = tmp_path / "run"
    status, _, _ = call(
        capsys, "train", "--config", config, "--margin", "0.75", "--quiet", "-o", run
    )
    assert status == 0
    text = (run / "config.toml").read_text().splitlines()
    assert "margin = 0.75" in text and 'loss = "triplet"' in text and "hidden = [8]" in text
    assert "epochs = 1" in text and "embedding_dim = 3" in text
    assert "temperature = 0.1" in text  # not in the file: the default
    assert config.read_bytes() == before[str(config)][0]


# --- train: user data ----------------------------------------------------------------


def test_image_folder_trains(image_run):
    spec = json.loads((image_run / "model.json").read_text())
    assert spec == {
        "kind": "images",
        "embedding_dim": 2,
        "hidden": [16],
        "channels": 1,
        "image_size": 8,
    }
    metrics = json.loads((image_run / "metrics.json").read_text())
    assert metrics["data"]["classes"] == 3 and "image folder" in metrics["data"]["source"]
    assert (image_run / "figures" / "embedding.png").is_file()


def test_npz_trains(feature_run):
    spec = json.loads((feature_run / "model.json").read_text())
    assert spec["kind"] == "vectors" and spec["in_features"] == 5
    metrics = json.loads((feature_run / "metrics.json").read_text())
    assert metrics["data"]["classes"] == 3 and set(TEST_METRICS) <= set(metrics["test"])


def test_csv_with_a_label_column_trains(tmp_path, capsys, data):
    run = tmp_path / "run"
    argv = ("train", *SMALL, "--data", data / "features.csv", "--label-column", "species")
    status, _, err = call(capsys, *argv, "-o", run)
    assert status == 0 and err == ""
    assert 'label_column = "species"' in (run / "config.toml").read_text()
    assert json.loads((run / "model.json").read_text())["in_features"] == 5


def test_pair_csv_trains(tmp_path, capsys, data):
    run = tmp_path / "run"
    argv = ("train", *SMALL, "--data", data / "pairs.csv", "--image-size", "8")
    status, _, err = call(capsys, *argv, "-o", run)
    assert status == 0 and err == ""
    metrics = json.loads((run / "metrics.json").read_text())
    assert "pair file" in metrics["data"]["source"] and metrics["data"]["classes"] is None
    assert {"roc_auc", "eer", "threshold", "accuracy"} <= set(metrics["test"])
    assert not (run / "figures" / "embedding.png").exists()  # pairs have no classes to draw
    assert "data:image/png;base64," in (run / "report.html").read_text()


# --- resume --------------------------------------------------------------------------


def kill_after_first_epoch(monkeypatch):
    save = Trainer._save

    def save_then_die(self):
        save(self)
        if self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", save_then_die)


def train_whole_and_killed(capsys, monkeypatch, tmp_path, options):
    """Train ``options`` into ``whole``; again into ``killed``, killed after its first epoch
    and resumed. Both runs must succeed; the two folders, to compare."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert call(capsys, "train", *options, "-o", whole)[0] == 0
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, err = call(capsys, "train", *options, "-o", killed)
    assert status == 130 and "--resume" in err
    status, _, err = call(capsys, "train", "--resume", killed)
    assert status == 0, err
    return whole, killed


@pytest.mark.parametrize(
    "extra",
    [
        ["--data", "features.npz"],
        ["--data", "features.npz", "--loss", "triplet"],
        ["--data", "pairs.csv", "--image-size", "8"],
    ],
    ids=["contrastive", "triplet", "pairs"],
)
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(
    tmp_path, capsys, monkeypatch, data, extra
):
    monkeypatch.chdir(data)
    options = [*SMALL, "--epochs", "3", *extra]
    assert call(capsys, "train", *options, "-o", tmp_path / "whole")[0] == 0

    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, err = call(capsys, "train", *options, "-o", tmp_path / "killed")
    assert status == 130 and "--resume" in err
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    assert [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()] == ["epoch-0001"]

    status, out, err = call(capsys, "train", "--resume", tmp_path / "killed")
    assert status == 0 and err == ""
    assert f"resuming {tmp_path / 'killed'} after epoch 1" in out
    assert same_weights(tmp_path / "killed", tmp_path / "whole")
    history = json.loads((tmp_path / "killed" / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]


def test_resume_refuses_other_options(tmp_path, capsys, feature_run):
    before = snapshot(feature_run)
    status, _, err = call(capsys, "train", "--resume", feature_run, "--margin", "5", "-o", "x")
    assert_one_line_error(status, err, "--margin", "--out")
    status, _, err = call(capsys, "train", "--resume", tmp_path)
    assert_one_line_error(status, err, str(tmp_path), "not a contrastkit run folder")
    assert snapshot(feature_run) == before


# --- evaluate ------------------------------------------------------------------------


def test_evaluate_on_the_run_test_split_as_json(capsys, feature_run):
    status, out, err = call(capsys, "evaluate", feature_run, "--json")
    assert status == 0 and err == ""
    result = json.loads(out)
    saved = json.loads((feature_run / "metrics.json").read_text())["test"]
    for key in TEST_METRICS:
        assert result[key] == pytest.approx(saved[key], rel=1e-6, abs=1e-9)


def test_evaluate_on_other_data(capsys, data, feature_run):
    status, out, err = call(capsys, "evaluate", feature_run, "--data", data / "features.npz")
    assert status == 0 and err == ""
    assert out.startswith(f"evaluated on {data / 'features.npz'}")
    assert "ROC-AUC" in out and "MAP@R" in out
    status, out, _ = call(
        capsys, "evaluate", feature_run, "--data", data / "features.npz", "--json"
    )
    assert status == 0 and set(TEST_METRICS) <= set(json.loads(out))


def test_evaluate_an_image_run(capsys, data, image_run):
    status, out, _ = call(capsys, "evaluate", image_run, "--data", data / "images", "--json")
    assert status == 0 and 0.0 <= json.loads(out)["roc_auc"] <= 1.0


# --- embed ---------------------------------------------------------------------------


def test_embed_features(tmp_path, capsys, data, feature_run):
    out_file = tmp_path / "emb.npy"
    status, out, err = call(capsys, "embed", feature_run, data / "features.npz", "-o", out_file)
    assert status == 0 and err == ""
    assert np.load(out_file).shape == (60, 2) and np.load(out_file).dtype == np.float32
    assert str(out_file) in out
    assert not out_file.with_suffix(".txt").exists()


def test_embed_features_without_labels_or_of_one_class(tmp_path, capsys, feature_run):
    unlabelled = tmp_path / "new.csv"
    unlabelled.write_text("a,b,c,d,e\n" + "1,2,3,4,5\n" * 3)
    status, _, _ = call(capsys, "embed", feature_run, unlabelled, "-o", tmp_path / "a.npy")
    assert status == 0 and np.load(tmp_path / "a.npy").shape == (3, 2)
    one_class = tmp_path / "one.csv"
    one_class.write_text("a,b,c,d,e,label\n1,2,3,4,5,x\n2,3,4,5,6,x\n")
    status, _, err = call(capsys, "embed", feature_run, one_class, "-o", tmp_path / "b.npy")
    assert status == 0, err
    assert np.load(tmp_path / "b.npy").shape == (2, 2)


def test_embed_images_writes_their_names(tmp_path, capsys, data, image_run):
    out_file = tmp_path / "emb.npy"
    status, _, err = call(capsys, "embed", image_run, data / "images", "-o", out_file)
    assert status == 0 and err == ""
    names = (tmp_path / "emb.txt").read_text().splitlines()
    assert np.load(out_file).shape == (24, 2) and len(names) == 24
    assert names[0] == str(data / "images" / "class0" / "0.png")
    one = data / "images" / "class2" / "5.png"
    status, _, _ = call(capsys, "embed", image_run, one, "-o", tmp_path / "one.npy")
    assert status == 0 and np.load(tmp_path / "one.npy").shape == (1, 2)
    assert (tmp_path / "one.txt").read_text() == f"{one}\n"


def test_embed_never_overwrites(tmp_path, capsys, data, feature_run, image_run):
    mine = tmp_path / "mine.npy"
    np.save(mine, np.arange(3))
    names = tmp_path / "taken.txt"
    names.write_text("my notes\n")
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "embed", feature_run, data / "features.npz", "-o", mine)
    assert_one_line_error(status, err, mine, "already exists")
    # the names file of an image run is checked before anything is written
    status, _, err = call(capsys, "embed", image_run, data / "images", "-o", tmp_path / "taken.npy")
    assert_one_line_error(status, err, names, "already exists")
    assert snapshot(tmp_path) == before


# --- plot-loss -----------------------------------------------------------------------


def test_plot_loss_writes_a_png_and_never_overwrites(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = call(capsys, "plot-loss", "--margin", "2")
    assert status == 0 and err == "" and "contrastive-loss.png" in out
    assert (tmp_path / "contrastive-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    status, _, _ = call(capsys, "plot-loss", "--caffe-legacy", "-o", "legacy.png")
    assert status == 0 and (tmp_path / "legacy.png").is_file()
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "plot-loss", "--margin", "3")
    assert_one_line_error(status, err, "contrastive-loss.png", "already exists")
    assert snapshot(tmp_path) == before


# --- bad input -----------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path, monkeypatch, data):
    """A folder of the user's own files, the current folder of the command."""
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "one_image", classes=2, per_class=2)
    (tmp_path / "one_image" / "class1" / "1.png").unlink()
    make_images(tmp_path / "corrupt", classes=2, per_class=2)
    (tmp_path / "corrupt" / "class1" / "broken.png").write_text("not a png")
    make_images(tmp_path / "empty_class", classes=2, per_class=2)
    (tmp_path / "empty_class" / "class2").mkdir()
    make_images(tmp_path / "one_class", classes=1, per_class=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "nolabel.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "wide.csv").write_text("a,b,c\n1,2,3\n")
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "notes.txt").write_text("precious")
    (tmp_path / "unknown.toml").write_text("epochs = 2\nbogus = 1\n")
    (tmp_path / "invalid.toml").write_text("epochs = [1,\n")
    (tmp_path / "wrongtype.toml").write_text('margin = "big"\n')
    (tmp_path / "pairs_missing.csv").write_text("left,right,label\na.png,b.png,1\na.png,c.png,0\n")
    shutil.copy(data / "features.npz", tmp_path / "features.npz")
    return tmp_path


BAD_TRAIN = [
    (["--data", "missing"], ["missing", "does not exist"]),
    (["--data", "empty"], ["empty", "no class subfolders"]),
    (["--data", "one_image"], [Path("one_image/class1"), "1 image"]),
    (["--data", "corrupt"], [Path("corrupt/class1/broken.png"), "cannot read image"]),
    (["--data", "empty_class"], [Path("empty_class/class2"), "no images"]),
    (["--data", "one_class"], ["one_class", "1 class"]),
    (["--data", "nolabel.csv"], ["nolabel.csv", "'label'", "--label-column"]),
    (["--data", "wide.csv", "--label-column", "c"], ["wide.csv", "1 class"]),
    (["--data", "pairs_missing.csv"], ["pairs_missing.csv", "a.png"]),
    (["--data", "features.npz", "--loss", "triplet", "--label-column", "y"], ["features.npz"]),
    (["-o", "existing"], ["existing", "already exists"]),
    (["-o", "features.npz"], ["features.npz", "already exists"]),
    (["--loss", "hinge"], ["loss", "hinge"]),
    (["--margin", "-1"], ["margin", "-1"]),
    (["--margin", "nan"], ["margin"]),
    (["--distance", "l3"], ["distance", "l3"]),
    (["--batch-size", "2"], ["batch_size"]),
    (["--device", "tpu"], ["device", "tpu"]),
    (["--config", "unknown.toml"], ["unknown.toml", "bogus"]),
    (["--config", "invalid.toml"], ["invalid.toml", "not valid TOML"]),
    (["--config", "missing.toml"], ["missing.toml", "does not exist"]),
    (["--config", "wrongtype.toml"], ["margin", "'big'"]),
    (["--data", "pairs.csv", "--loss", "triplet"], ["pair file", "triplet"]),
]


@pytest.mark.parametrize(("argv", "named"), BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_input_is_one_line_and_touches_nothing(workspace, capsys, data, argv, named):
    if "pairs.csv" in argv:
        shutil.copytree(data / "images", workspace / "images")
        shutil.copy(data / "pairs.csv", workspace)
    before = snapshot(workspace)
    status, _, err = call(capsys, "train", *SMALL, *argv)
    assert_one_line_error(status, err, *named)
    assert snapshot(workspace) == before  # nothing changed, nothing created (no run folder)


def test_bad_evaluate_and_embed_input(workspace, capsys, feature_run, image_run):
    runs = (feature_run, image_run)
    before = snapshot(workspace, *runs)
    cases = [
        (["evaluate", "existing"], ["existing", "not a contrastkit run folder"]),
        (["evaluate", "nowhere"], ["nowhere", "does not exist"]),
        (["evaluate", feature_run, "--data", "one_image"], ["one_image"]),
        (["evaluate", feature_run, "--data", "wide.csv"], ["wide.csv"]),
        (["evaluate", feature_run, "--data", workspace / "corrupt"], ["broken.png"]),
        (["embed", "existing", "features.npz", "-o", "e.npy"], ["existing", "no config.toml"]),
        (["embed", feature_run, "wide.csv", "-o", "e.npy"], ["wide.csv", "3 features", "5"]),
        (["embed", feature_run, "missing.npz", "-o", "e.npy"], ["missing.npz", "does not exist"]),
        (["embed", feature_run, "empty", "-o", "e.npy"], ["empty", "folder"]),
        (["embed", feature_run, "features.npz", "-o", "e.csv"], ["e.csv", ".npy"]),
        (["embed", feature_run, "features.npz", "-o", "no/e.npy"], ["no", "does not exist"]),
        (["embed", image_run, "empty", "-o", "e.npy"], ["empty", "no images"]),
        (["embed", image_run, "nolabel.csv", "-o", "e.npy"], ["nolabel.csv"]),
        (["plot-loss", "-o", "nolabel.csv"], ["nolabel.csv", "already exists"]),
        (["plot-loss", "--margin", "0", "-o", "m.png"], ["margin"]),
        (["plot-loss", "-o", "m.jpg"], ["m.jpg", ".png"]),
    ]
    for argv, named in cases:
        status, _, err = call(capsys, *argv)
        assert_one_line_error(status, err, *named)
    assert snapshot(workspace, *runs) == before


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["train", "--epochs", "many"], ["--epochs", "many"]),
        (["train", "--hidden", "16,x"], ["--hidden", "16,x"]),
        (["train", "--colour", "red"], ["--colour"]),
        (["fit"], ["fit"]),
        ([], ["COMMAND"]),
        (["embed", "run", "input"], ["-o"]),
    ],
)
def test_usage_errors_are_one_line(workspace, capsys, argv, named):
    before = snapshot(workspace)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    _, err = capsys.readouterr()
    assert_one_line_error(stop.value.code, err, *named)
    assert snapshot(workspace) == before


def test_debug_shows_the_exception(workspace, monkeypatch):
    monkeypatch.setenv("CONTRASTKIT_DEBUG", "1")
    with pytest.raises(DataError, match="one_class"):
        main(["train", "--data", "one_class"])


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("contrastkit ")


# --- the installed command -----------------------------------------------------------


def run_process(argv, cwd):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_installed_console_script(tmp_path):
    script = shutil.which("contrastkit")
    if script is None:
        pytest.skip("the contrastkit console script is not installed")
    done = run_process([script, "plot-loss", "--margin", "1.5", "-o", "loss.png"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "wrote loss.png\n"
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_real_process_exits_with_status_2_and_one_line(tmp_path):
    (tmp_path / "loss.png").write_bytes(b"mine")
    argv = [sys.executable, "-m", "contrastkit.app.cli", "plot-loss", "-o", "loss.png"]
    done = run_process(argv, tmp_path)
    assert_one_line_error(done.returncode, done.stderr, "loss.png", "already exists")
    assert done.returncode == 2 and (tmp_path / "loss.png").read_bytes() == b"mine"
