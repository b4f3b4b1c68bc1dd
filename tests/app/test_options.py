"""The trainer's options as flags, and the rough edges of small or odd inputs, end to end.

Every run here is the real command, in-process, on tiny data (see ``test_cli``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_cli import (
    SMALL,
    assert_one_line_error,
    call,
    make_features,
    make_images,
    same_weights,
    snapshot,
    train_quietly,
)

from contrastkit.app import build, config
from contrastkit.app.cli import main
from contrastkit.training.trainer import PRECISIONS


def metrics_of(run):
    return json.loads((Path(run) / "metrics.json").read_text())


def state_of(run):
    checkpoints = sorted((Path(run) / "checkpoints").glob("epoch-*"))
    return torch.load(checkpoints[-1] / "state.pt", weights_only=True)


def make_classes(root, sizes, *, mode="L", size=8):
    """An image folder whose class ``c`` has ``sizes[c]`` images."""
    rng = np.random.default_rng(3)
    for c, n in enumerate(sizes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n):
            pixels = (rng.integers(0, 60, size=(size, size)) + 60 * c).astype(np.uint8)
            Image.fromarray(pixels, "L").convert(mode).save(root / f"c{c}" / f"{i}.png")
    return root


def make_pairs(folder, image_root, *, matching, non_matching):
    rel = image_root.relative_to(folder)
    rows = ["left,right,label"]
    rows += [
        f"{rel}/class{k % 3}/{k % 8}.png,{rel}/class{k % 3}/{(k + 1) % 8}.png,1"
        for k in range(matching)
    ]
    rows += [f"{rel}/class0/{k % 8}.png,{rel}/class1/{k % 8}.png,0" for k in range(non_matching)]
    path = folder / f"pairs-{matching}-{non_matching}.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def make_table(path, *, label="label", extra_id=True):
    """A .csv of 3 classes × 12 rows with an identifier column (not a feature)."""
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), 12)
    x = rng.normal(size=(len(y), 4)) + 3.0 * y[:, None]
    head = (["id"] if extra_id else []) + [f"f{i}" for i in range(4)] + [label]
    lines = [",".join(head)]
    for i, (row, c) in enumerate(zip(x, y, strict=True)):
        cells = ([f"row{i}"] if extra_id else []) + [f"{v:.5f}" for v in row] + [f"k{c}"]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("options")
    make_features(folder)
    make_images(folder / "images")
    make_classes(folder / "rgb", [8, 8, 8], mode="RGB")
    make_classes(folder / "small", [2, 3, 4, 5])
    make_classes(folder / "twos", [2, 2, 2])
    make_table(folder / "table.csv")
    make_table(folder / "species.csv", label="species")
    return folder


# --- Part A: the trainer's options ----------------------------------------------------


def test_the_precisions_are_the_trainers():
    assert config.PRECISIONS == PRECISIONS


def test_the_new_options_are_listed_with_their_choices(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--accumulate K",
        "--precision {32,bf16,fp16}",
        "--monitor METRIC",
        "--mode {min,max}",
        "--patience N",
        "--tensorboard",
        "--exclude-columns NAME1,NAME2,...",
        "one-cycle schedule spans epochs",
        "val_roc_auc",
        "pip install tensorboard",
        "for a pair file they are drawn from its training pairs",
    ):
        assert shown in text, shown
    for command in ("embed", "score", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--label-column NAME" in capsys.readouterr().out, command


def test_the_options_reach_config_toml_and_round_trip(tmp_path, capsys, files):
    run = tmp_path / "run"
    argv = ["train", *SMALL, "--data", files / "table.csv", "--exclude-columns", "id"]
    argv += ["--accumulate", "2", "--precision", "bf16", "--monitor", "val_roc_auc"]
    status, _, err = call(capsys, *argv, "--patience", "4", "-o", run)
    assert status == 0 and err == ""
    lines = (run / "config.toml").read_text().splitlines()
    for line in (
        'exclude_columns = ["id"]',
        "accumulate = 2",
        'precision = "bf16"',
        'monitor = "val_roc_auc"',
        'mode = "max"',  # the default mode of a metric where higher is better
        "patience = 4",
        "tensorboard = false",
    ):
        assert line in lines, line
    assert json.loads((run / "model.json").read_text())["in_features"] == 4
    again = tmp_path / "again"
    status, _, err = call(capsys, "train", "--config", run / "config.toml", "-o", again)
    assert status == 0 and err == ""
    assert (again / "config.toml").read_text() == (run / "config.toml").read_text()
    assert same_weights(run, again)


def test_a_config_file_takes_the_options_and_checks_their_types(tmp_path, capsys, files):
    good = tmp_path / "good.toml"
    good.write_text(
        f"data = {json.dumps(str(files / 'table.csv'))}\nexclude_columns = ['id']\n"
        "epochs = 1\nsteps_per_epoch = 2\nbatch_size = 16\nhidden = [8]\nmonitor = 'val_loss'\n"
    )
    status, _, err = call(capsys, "train", "--config", good, "--quiet", "-o", tmp_path / "run")
    assert status == 0 and err == ""
    assert 'mode = "min"' in (tmp_path / "run" / "config.toml").read_text().splitlines()
    before = snapshot(tmp_path)
    for text, named in (
        ("exclude_columns = 'id'\n", ["exclude_columns", "list of str", "'id'"]),
        ("exclude_columns = ['id', 3]\n", ["exclude_columns", "list of str"]),
        ("hidden = ['8']\n", ["hidden", "list of int"]),
        ("tensorboard = 1\n", ["tensorboard", "bool"]),
        ("precision = 'half'\n", ["precision", "32, bf16, fp16", "'half'"]),
        ("mode = 'down'\nmonitor = 'val_loss'\n", ["mode", "min, max", "'down'"]),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        status, _, err = call(capsys, "train", "--config", bad, "-o", tmp_path / "x")
        assert_one_line_error(status, err, *named)
        assert status == 2
        bad.unlink()
    assert snapshot(tmp_path) == before


def test_accumulation_spans_the_schedule_over_every_optimizer_step(tmp_path, capsys, files):
    run = tmp_path / "run"
    argv = ["train", *SMALL, "--data", files / "features.npz", "--accumulate", "2"]
    assert call(capsys, *argv, "-o", run)[0] == 0  # 2 epochs of 3 batches
    state = state_of(run)
    assert state["step"] == 6 and state["optimizer_steps"] == 4  # ceil(3 / 2) per epoch
    assert state["scheduler"]["total_steps"] == 4 and state["scheduler"]["last_epoch"] == 4
    # extending the run rebuilds the one-cycle schedule over the new total, same rule
    status, _, err = call(capsys, "train", "--resume", run, "--epochs", "3", "--quiet")
    assert status == 0, err
    state = state_of(run)
    assert state["optimizer_steps"] == 6 and state["scheduler"]["total_steps"] == 6
    assert state["scheduler"]["last_epoch"] == 6


@pytest.mark.parametrize(("batches", "k", "steps"), [(64, 1, 64), (64, 3, 22), (3, 5, 1)])
def test_the_schedule_has_epochs_times_ceil_batches_over_k_steps(batches, k, steps):
    settings = config.RunConfig(epochs=7, accumulate=k).checked()
    _, schedule = build.optimizer_and_schedule(settings, torch.nn.Linear(2, 2), batches)
    assert schedule.total_steps == 7 * steps == 7 * math.ceil(batches / k)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, files):
    """A run that keeps the epoch of the highest validation loss: never the last one here."""
    run = tmp_path_factory.mktemp("runs") / "monitored"
    train_quietly(
        *("train", *SMALL, "--epochs", "4", "--data", files / "features.npz"),
        *("--monitor", "val_loss", "--mode", "max", "-o", run),
    )
    return run


def test_a_monitor_keeps_the_best_epoch_and_evaluates_its_weights(capsys, monitored):
    metrics = metrics_of(monitored)
    values = [record["val_loss"] for record in metrics["history"]]
    best = 1 + values.index(max(values))
    assert metrics["best"] == {
        "monitor": "val_loss",
        "mode": "max",
        "epoch": best,
        "value": max(values),
        "epochs_trained": 4,
        "stopped_early": False,
        "patience": 0,
    }
    assert best != 4  # so that the best weights differ from the last epoch's
    final = load_file(str(monitored / "model.safetensors"))
    kept = load_file(str(monitored / "checkpoints" / "best" / "model.safetensors"))
    last = load_file(str(monitored / "checkpoints" / "epoch-0004" / "model.safetensors"))
    assert all(torch.equal(final[k], kept[k]) for k in final)
    assert not all(torch.equal(final[k], last[k]) for k in final)
    # the test metrics are those of the weights kept: evaluate finds them again
    status, out, _ = call(capsys, "evaluate", monitored, "--json")
    assert status == 0
    assert json.loads(out)["roc_auc"] == pytest.approx(metrics["test"]["roc_auc"], abs=1e-9)
    page = (monitored / "report.html").read_text()
    summary = page[page.index("<p class='summary'>") :].split("</p>")[0]
    assert f"the weights evaluated are epoch {best}'s, the best by validation loss" in summary
    assert any(f"those of epoch {best}" in note for note in metrics["notes"])


def test_patience_stops_early_and_says_so(tmp_path, capsys, files):
    run = tmp_path / "run"
    argv = ["train", *SMALL, "--epochs", "8", "--data", files / "features.npz"]
    argv += ["--monitor", "train_loss", "--mode", "max", "--patience", "1"]
    status, out, _ = call(capsys, *argv, "-o", run)
    assert status == 0
    best = metrics_of(run)["best"]
    trained = len(metrics_of(run)["history"])
    assert best["stopped_early"] is True and best["epochs_trained"] == trained < 8
    assert best["epoch"] == trained - 1  # one epoch without improvement, then stop
    assert f"stopped early after {trained} epochs" in (run / "report.html").read_text()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == trained
    assert f"test metrics of epoch {best['epoch']}, the best by train_loss" in out
    # extending it would stop again at once: refused, and nothing the run had is changed
    before = snapshot(run)
    status, _, err = call(capsys, "train", "--resume", run, "--epochs", "12")
    assert_one_line_error(status, err, "stopped early after epoch", "extending it would train")
    assert snapshot(run) == before


def history_names(capsys, *argv):
    """The values a run's history holds, as the refusal of an unknown monitor lists them."""
    status, _, err = call(capsys, "train", *argv, "--monitor", "nothing", "-o", "never")
    assert_one_line_error(status, err, "monitor 'nothing'", "not a value of this run's history")
    return set(err.strip().rsplit("; it has ", 1)[1].split(", "))


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--loss", "triplet"],
        ["--objective", "reconstruction"],
        ["--objective", "combined", "--loss", "supcon"],
    ],
    ids=["contrastive", "triplet", "reconstruction", "combined"],
)
def test_the_monitor_choices_are_the_history_s_values(tmp_path, capsys, files, extra):
    argv = [*SMALL, "--data", files / "features.npz", *extra]
    named = history_names(capsys, *argv)
    assert not Path("never").exists()
    assert call(capsys, "train", *argv, "-o", tmp_path / "run")[0] == 0
    history = metrics_of(tmp_path / "run")["history"]
    assert named == set(history[0]) - {"epoch", "epoch_seconds"}
    assert {"train_loss", "val_loss", "val_roc_auc"} <= named


def test_metrics_jsonl_holds_one_line_per_epoch(monitored):
    lines = (monitored / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == metrics_of(monitored)["history"]
    assert len(lines) == 4 and all("best_epoch" in json.loads(line) for line in lines)


def test_tensorboard_writes_its_logs(tmp_path, capsys, files):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    argv = ["train", *SMALL, "--data", files / "features.npz", "--tensorboard", "-o", run]
    status, _, err = call(capsys, *argv)
    assert status == 0 and err == ""
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert "tensorboard = true" in (run / "config.toml").read_text().splitlines()


def test_tensorboard_missing_is_one_line_naming_the_install(tmp_path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a),
    )
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "train", *SMALL, "--tensorboard", "-o", tmp_path / "run")
    assert_one_line_error(status, err, "pip install tensorboard")
    assert status == 2 and snapshot(tmp_path) == before


BAD_OPTIONS = [
    (["--monitor", "val_accuracy"], ["monitor 'val_accuracy'", "val_roc_auc", "val_loss"]),
    (["--data", "{files}/twos", "--monitor", "val_roc_auc"], ["val_roc_auc", "no similar pair"]),
    (["--patience", "3"], ["patience", "monitor"]),
    (["--mode", "max"], ["mode", "monitor"]),
    (["--monitor", "val_loss", "--patience", "-1"], ["patience", "-1"]),
    (["--accumulate", "0"], ["accumulate", "0"]),
    (["--precision", "16"], ["precision", "32, bf16, fp16", "'16'"]),
    (["--precision", "fp16"], ["fp16", "CUDA", "bf16"]),
    (["--precision", "fp16", "--device", "auto"], ["fp16", "CUDA"]),
    (["--exclude-columns", "id"], ["exclude_columns", "digits"]),
    (["--data", "{files}/table.csv", "--exclude-columns", "code"], ["table.csv", "'code'"]),
    (["--data", "{files}/table.csv"], ["table.csv", "'id'", "--exclude-columns"]),
    (["--data", "{files}/features.npz", "--exclude-columns", "id"], ["features.npz", ".npz"]),
    (["--data", "{files}/images", "--exclude-columns", "id"], ["exclude_columns", "image folder"]),
]


@pytest.mark.parametrize(("argv", "named"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line_before_anything_is_written(
    tmp_path, capsys, monkeypatch, files, argv, named
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto is the CPU
    before = snapshot(tmp_path, files)
    argv = [a.replace("{files}", str(files)) for a in argv]
    status, _, err = call(capsys, "train", *SMALL, "--image-size", "8", *argv, "-o", "run")
    assert_one_line_error(status, err, *named)
    assert status == 2
    assert snapshot(tmp_path, files) == before  # no run folder, nothing touched


# --- Part B: small classes and pair files ----------------------------------------------


@pytest.mark.parametrize(
    ("folder", "loss"),
    [("small", "contrastive"), ("small", "triplet"), ("twos", "contrastive")],
)
def test_small_classes_train_and_say_what_cannot_be_measured(tmp_path, capsys, files, folder, loss):
    run = tmp_path / "run"
    argv = ["train", *SMALL, "--data", files / folder, "--image-size", "8", "--loss", loss]
    status, out, err = call(capsys, *argv, "-o", run)
    assert status == 0 and err == ""
    metrics = metrics_of(run)
    # no split held out of classes of 2 to 5 images has 2 images of one class
    assert metrics["test"]["roc_auc"] is None and metrics["test"]["accuracy"] is None
    assert "no similar pair" in metrics["verification_skipped"]
    assert "no class has 2 samples in the test split" in metrics["retrieval_skipped"]
    assert any("validation split" in note and "not measurable" in note for note in metrics["notes"])
    assert "verification: not measurable: " in out and "retrieval: not measurable: " in out
    page = (run / "report.html").read_text()
    assert "Not measurable: the test split cannot be verified" in page
    assert (run / "model.safetensors").is_file() and (run / "reference.safetensors").is_file()
    if folder == "twos":  # every training class has one image: dissimilar pairs only
        assert any("pairs are all dissimilar" in note for note in metrics["notes"])
    status, out, _ = call(capsys, "evaluate", run)  # the saved run evaluates again
    assert status == 0 and "verification: not measurable" in out


def test_a_validation_split_without_a_similar_pair_leaves_only_the_threshold_unmeasured(
    tmp_path, capsys, files
):
    make_classes(tmp_path / "fives", [5, 5, 5])
    run = tmp_path / "run"
    argv = ["train", *SMALL, "--data", tmp_path / "fives", "--image-size", "8"]
    argv += ["--val-fraction", "0.05", "--test-fraction", "0.6"]  # 1 validation, 3 test each
    assert call(capsys, *argv, "-o", run)[0] == 0
    metrics = metrics_of(run)
    assert metrics["data"]["validation"] == 3 and metrics["data"]["test"] == 9
    test = metrics["test"]
    assert all(isinstance(test[k], float) for k in ("roc_auc", "eer", "precision_at_1"))
    assert test["threshold"] is None and test["accuracy"] is None
    assert (
        "no threshold could be chosen on the validation split" in (metrics["verification_skipped"])
    )
    assert {p.name for p in (run / "figures").glob("*.png")} >= {"roc.png", "distances.png"}
    assert "val_roc_auc" not in metrics["history"][0]


@pytest.mark.parametrize(
    ("matching", "non_matching", "named"),
    [(2, 10, "no matching (label 1) pair"), (10, 2, "no non-matching (label 0) pair")],
)
def test_a_pair_file_whose_splits_lack_a_kind_is_refused(
    tmp_path, capsys, files, matching, non_matching, named
):
    pairs = make_pairs(files, files / "images", matching=matching, non_matching=non_matching)
    before = snapshot(tmp_path, files)
    argv = ["train", *SMALL, "--data", pairs, "--image-size", "8", "-o", tmp_path / "run"]
    status, _, err = call(capsys, *argv)
    assert_one_line_error(status, err, pairs, named, "at least 3 of each")
    assert status == 2 and snapshot(tmp_path, files) == before


def test_steps_per_epoch_applies_to_pair_files(tmp_path, capsys, files):
    pairs = make_pairs(files, files / "images", matching=12, non_matching=12)
    run = tmp_path / "run"
    argv = ["train", *SMALL, "--data", pairs, "--image-size", "8", "--steps-per-epoch", "5"]
    assert call(capsys, *argv, "-o", run)[0] == 0
    assert state_of(run)["step"] == 2 * 5  # 2 epochs of 5 batches, from 8 training pairs


def test_a_csv_with_more_than_the_pair_columns_is_a_feature_file(tmp_path, capsys, files):
    table = tmp_path / "notes.csv"
    table.write_text("left,right,label,note\n1.png,2.png,1,x\n")
    status, _, err = call(capsys, "train", *SMALL, "--data", table, "-o", tmp_path / "run")
    assert_one_line_error(status, err, table, "exactly the columns left, right and label")


# --- Part B: evaluate, embed, score, plot-loss -----------------------------------------


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory, files):
    run = tmp_path_factory.mktemp("runs") / "rgb"
    train_quietly("train", *SMALL, "--data", files / "rgb", "--image-size", "8", "-o", run)
    return run


def test_evaluate_reads_images_with_the_run_s_channels(capsys, files, rgb_run):
    assert json.loads((rgb_run / "model.json").read_text())["channels"] == 3
    status, out, err = call(capsys, "evaluate", rgb_run, "--data", files / "images", "--json")
    assert status == 0 and err == ""  # grayscale images, made RGB
    assert 0.0 <= json.loads(out)["roc_auc"] <= 1.0


def test_evaluate_names_both_kinds_of_data(capsys, files, rgb_run):
    pairs = make_pairs(files, files / "images", matching=6, non_matching=6)
    for data, kind in (
        (files / "features.npz", "labelled feature vectors"),
        (pairs, "pairs of images (a pair file)"),
    ):
        status, _, err = call(capsys, "evaluate", rgb_run, "--data", data)
        assert_one_line_error(status, err, data, f"holds {kind}", "trained on labelled images")
        assert status == 2


@pytest.fixture(scope="module")
def table_run(tmp_path_factory, files):
    run = tmp_path_factory.mktemp("runs") / "table"
    train_quietly(
        *("train", *SMALL, "--data", files / "table.csv", "--exclude-columns", "id"),
        *("-o", run),
    )
    return run


def test_the_excluded_columns_are_left_out_wherever_the_run_reads(
    tmp_path, capsys, files, table_run
):
    table = files / "table.csv"
    status, out, _ = call(capsys, "evaluate", table_run, "--data", table, "--json")
    assert status == 0 and "roc_auc" in json.loads(out)
    status, _, err = call(capsys, "embed", table_run, table, "-o", tmp_path / "e.npy")
    assert status == 0, err
    assert np.load(tmp_path / "e.npy").shape == (36, 2)
    status, _, err = call(capsys, "score", table_run, table, "-o", tmp_path / "s.csv")
    assert status == 0, err
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 37
    # without its identifier column the file is read too (new, unlabelled data)
    bare = make_table(tmp_path / "bare.csv", extra_id=False)
    status, _, err = call(capsys, "embed", table_run, bare, "-o", tmp_path / "b.npy")
    assert status == 0, err


def test_embed_and_score_take_the_label_column_of_their_input(tmp_path, capsys, files, table_run):
    species = files / "species.csv"  # labels in "species", not the run's "label"
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "embed", table_run, species, "-o", tmp_path / "e.npy")
    assert_one_line_error(status, err, species, "'species'")
    assert snapshot(tmp_path) == before
    argv = ["--label-column", "species"]
    status, _, err = call(capsys, "embed", table_run, species, *argv, "-o", tmp_path / "e.npy")
    assert status == 0, err
    same = call(capsys, "embed", table_run, files / "table.csv", "-o", tmp_path / "t.npy")
    assert same[0] == 0
    assert np.array_equal(np.load(tmp_path / "e.npy"), np.load(tmp_path / "t.npy"))
    status, _, err = call(capsys, "score", table_run, species, *argv, "-o", tmp_path / "s.csv")
    assert status == 0, err
    status, out, err = call(
        capsys, "evaluate", table_run, "--data", species, "--label-column", "species", "--json"
    )
    assert status == 0 and "roc_auc" in json.loads(out), err
    status, _, err = call(capsys, "evaluate", table_run, "--label-column", "species")
    assert_one_line_error(status, err, "--label-column", "--data")


def test_embed_leaves_out_more_columns_when_asked(tmp_path, capsys, files, table_run):
    extra = tmp_path / "extra.csv"
    lines = (files / "table.csv").read_text().splitlines()
    extra.write_text(
        "\n".join(f"{line},{'when' if i == 0 else 'today'}" for i, line in enumerate(lines)) + "\n"
    )
    status, _, err = call(capsys, "embed", table_run, extra, "-o", tmp_path / "a.npy")
    assert_one_line_error(status, err, extra, "'when'")
    argv = ["--exclude-columns", "when", "-o", tmp_path / "a.npy"]
    status, _, err = call(capsys, "embed", table_run, extra, *argv)
    assert status == 0, err
    assert np.load(tmp_path / "a.npy").shape == (36, 2)


@pytest.mark.parametrize("margin", ["0", "-1", "nan", "inf"])
def test_plot_loss_with_a_bad_margin_is_one_line_exit_2(tmp_path, capsys, monkeypatch, margin):
    monkeypatch.chdir(tmp_path)
    status, _, err = call(capsys, "plot-loss", "--margin", margin, "-o", "m.png")
    assert_one_line_error(status, err, "--margin", "positive")
    assert status == 2 and not (tmp_path / "m.png").exists()


def test_the_printed_epochs_never_show_a_value_a_small_split_lacks(tmp_path, capsys, files):
    run = tmp_path / "run"
    argv = ["train", *SMALL[:-1], "--data", files / "twos", "--image-size", "8", "-o", run]
    status, out, _ = call(capsys, *argv)
    assert status == 0
    epochs = [line for line in out.splitlines() if re.match(r"epoch +\d+/2:", line)]
    assert len(epochs) == 2 and all("ROC-AUC" not in line for line in epochs)
