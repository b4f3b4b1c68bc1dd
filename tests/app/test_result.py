"""The typed result of a run, the command as people expect it, and what data cannot measure.

Every run here is the real command or :func:`train_run` on tiny settings, in-process; the
``python -m contrastkit`` checks run a real process.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
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

import contrastkit
from contrastkit.app import build
from contrastkit.app.cli import main
from contrastkit.app.config import LOSSES, ConfigError, RunConfig, read_config_file
from contrastkit.app.report import history_name, metric_name, metric_text
from contrastkit.app.result import RunResult, far_of, measurable
from contrastkit.app.run import train_run
from contrastkit.training import Trainer

SRC = Path(contrastkit.__file__).parent


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    make_features(folder)
    return folder / "features.npz"


def small_config(data, **options):
    """The settings of SMALL as a RunConfig."""
    values = {
        "data": str(data),
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 16,
        "hidden": [16],
        "embedding_dim": 2,
    }
    return RunConfig(**{**values, **options}).checked()


@pytest.fixture(scope="module")
def result(tmp_path_factory, features):
    run = tmp_path_factory.mktemp("runs") / "typed"
    return train_run(small_config(features), run, progress=False, log=lambda _: None)


# --- the typed result ------------------------------------------------------------------


def test_train_run_returns_a_typed_result_whose_json_is_metrics_json(result):
    assert isinstance(result, RunResult)
    assert (result.run_dir / "metrics.json").read_text() == result.to_json()
    metrics = json.loads(result.to_json())
    assert metrics["test"] == result.test and metrics["history"] == result.history
    assert metrics["objective"] == {"name": "contrastive", "terms": {"loss": 1.0}}
    assert metrics["data"]["test"] == result.data.test and metrics["data"]["classes"] == 3
    assert not any(key.startswith("_") for key in metrics)
    assert set(result.figures) == {p.stem for p in (result.run_dir / "figures").glob("*.png")}
    assert result.config.hidden == [16] and result.config.data == str(
        Path(result.config.data).resolve()
    )


def test_the_figure_tensors_are_fields_of_their_own(result):
    evaluation = result.evaluation
    d, same = evaluation.test_distances, evaluation.test_same
    assert isinstance(d, torch.Tensor) and d.shape == same.shape == (evaluation.pairs["test"],)
    assert evaluation.pairs["test_negative"] == int((same == 0).sum())
    auc = roc_auc_score(same.numpy(), -d.numpy())  # the ROC-AUC of these very pairs
    assert result.test["roc_auc"] == pytest.approx(auc, rel=1e-9)
    assert evaluation.test_embeddings.shape == (result.data.test, 2)
    assert result.test_labels is not None and len(result.test_labels) == result.data.test
    assert result.class_names == ["0", "1", "2"]


def test_the_printed_summary_reads_as_words(tmp_path, capsys, features):
    status, out, err = call(capsys, "train", *SMALL, "--data", features, "-o", tmp_path / "r")
    assert status == 0 and err == ""
    test_line = next(line for line in out.splitlines() if line.startswith("test: "))
    for words in ("ROC-AUC ", "equal error rate ", "accuracy at the threshold ", "MAP@R "):
        assert words in test_line
    assert "roc_auc" not in out and "map_at_r" not in out


def test_metric_names_read_as_words():
    assert metric_name("tar@far=0.01") == "TAR at FAR 1%"
    assert metric_name("tar@far=0.001") == "TAR at FAR 0.1%"
    assert metric_name("recall_at_5") == "recall@5" and metric_name("eer") == "equal error rate"
    assert history_name("val_roc_auc") == "validation ROC-AUC"
    assert history_name("train_reconstruction") == "training reconstruction"
    assert metric_text(None, negative_pairs=150) == "not measurable (150 negative pairs)"
    assert metric_text(0.5) == "0.5000"


# --- what the data cannot measure ------------------------------------------------------


@pytest.mark.parametrize(
    ("far", "negatives", "expected"),
    [(0.01, 100, True), (0.01, 99, False), (0.001, 1000, True), (0.001, 150, False)],
)
def test_a_far_needs_one_over_far_negative_pairs(far, negatives, expected):
    assert measurable(far, negatives) is expected
    assert far_of(f"tar@far={far:g}") == far and far_of("roc_auc") is None


def test_a_tar_the_test_pairs_cannot_measure_is_none_never_zero(result, capsys):
    negatives = result.evaluation.pairs["test_negative"]
    assert 0 < negatives < 100  # 9 test samples: too few for a FAR of 1% or 0.1%
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["test"]["tar@far=0.01"] is None and metrics["test"]["tar@far=0.001"] is None
    assert result.evaluation.measured_fars() == []
    page = (result.run_dir / "report.html").read_text()
    assert "TAR at FAR 1%" in page and "TAR at FAR 0.1%" in page
    assert page.count(f"not measurable ({negatives} negative pairs)") == 2
    status, out, _ = call(capsys, "evaluate", result.run_dir, "--json")
    assert status == 0 and json.loads(out)["tar@far=0.01"] is None
    status, out, _ = call(capsys, "evaluate", result.run_dir)
    assert status == 0
    line = next(line for line in out.splitlines() if "TAR at FAR 1%" in line)
    assert line.endswith(f"not measurable ({negatives} negative pairs)")


def test_a_measurable_tar_is_a_number(tmp_path):
    run = tmp_path / "digits"
    found = train_run(small_config("digits", epochs=1), run, progress=False, log=lambda _: None)
    assert found.evaluation.pairs["test_negative"] >= 1000
    assert isinstance(found.test["tar@far=0.001"], float)
    assert found.evaluation.measured_fars() == [0.01, 0.001]
    assert "not measurable" not in (run / "report.html").read_text()


# --- versions, date, device; the figures -----------------------------------------------


def test_the_run_records_versions_date_and_the_device_used(tmp_path, capsys, features):
    run = tmp_path / "auto"
    status, _, _ = call(capsys, "train", *SMALL, "--data", features, "--device", "auto", "-o", run)
    assert status == 0
    used = str(build.resolve_device("auto"))  # cpu, or cuda where there is one
    assert f'device = "{used}"' in (run / "config.toml").read_text().splitlines()
    environment = json.loads((run / "metrics.json").read_text())["environment"]
    assert environment["contrastkit"] == contrastkit.__version__
    assert environment["torch"] == str(torch.__version__)
    assert environment["python"] == platform.python_version()
    assert environment["device"].startswith(used) and environment["device_name"]
    date = datetime.datetime.fromisoformat(environment["date"])
    assert date.tzinfo is not None
    page = (run / "report.html").read_text()
    assert f"contrastkit {contrastkit.__version__}, torch {torch.__version__}" in page
    assert f"Python {platform.python_version()}" in page and environment["date"] in page


def test_the_report_plots_the_validation_metrics_by_epoch(result):
    assert "val_metrics" in result.figures
    page = (result.run_dir / "report.html").read_text()
    assert "Validation metrics after each epoch" in page
    assert ">validation ROC-AUC</th>" in page and ">validation precision@1</th>" in page


def test_a_class_named_like_mathtext_trains_and_draws(tmp_path, capsys):
    images = make_images(tmp_path / "images", classes=3, per_class=8)
    (images / "class0").rename(images / r"$\foo$")
    run = tmp_path / "run"
    argv = ("train", *SMALL, "--data", images, "--image-size", "8")
    status, _, err = call(capsys, *argv, "--anomaly-class", r"$\foo$", "-o", run)
    assert status == 0, err
    figures = {p.name for p in (run / "figures").glob("*.png")}
    assert {"embedding.png", "anomaly_knn.png", "anomaly_roc.png"} <= figures
    assert r"Class $\foo$ was held out" in (run / "report.html").read_text()


# --- --json, the fractions -------------------------------------------------------------


def test_json_prints_the_metrics_and_nothing_else(tmp_path, capsys, features):
    run = tmp_path / "run"
    loud = [a for a in SMALL if a != "--quiet"]
    status, out, err = call(capsys, "train", *loud, "--data", features, "--json", "-o", run)
    assert status == 0
    assert json.loads(out) == json.loads((run / "metrics.json").read_text())
    assert out == (run / "metrics.json").read_text()
    assert "epoch   2/2: training loss" in err  # the progress lines go to stderr


def test_the_fractions_are_flags(tmp_path, capsys, features):
    run = tmp_path / "run"
    argv = ("train", *SMALL, "--data", features, "--val-fraction", "0.3", "--test-fraction", "0.2")
    status, _, _ = call(capsys, *argv, "-o", run)
    assert status == 0
    text = (run / "config.toml").read_text().splitlines()
    assert "val_fraction = 0.3" in text and "test_fraction = 0.2" in text
    config = small_config(features, val_fraction=0.3, test_fraction=0.2)
    _, val, test, _ = build.run_splits(config, build.read_data(config))
    data = json.loads((run / "metrics.json").read_text())["data"]
    assert (data["validation"], data["test"]) == (len(val), len(test))
    default = build.run_splits(small_config(features), build.read_data(config))
    assert (len(val), len(test)) != (len(default[1]), len(default[2]))
    before = snapshot(tmp_path)
    bad = ("--val-fraction", "0.6", "--test-fraction", "0.5", "-o", tmp_path / "bad")
    status, _, err = call(capsys, "train", *SMALL, "--data", features, *bad)
    assert_one_line_error(status, err, "val_fraction and test_fraction", "(0.6, 0.5)")
    assert snapshot(tmp_path) == before


# --- extending a run -------------------------------------------------------------------


def kill_after_epoch(monkeypatch, epoch):
    save = Trainer._save

    def save_then_die(self):
        save(self)
        if self.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", save_then_die)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, features):
    """A finished 2-epoch run, to be copied before each extension."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train_quietly("train", *SMALL, "--data", features, "-o", run)
    return run


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path, capsys, finished):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    status, out, err = call(capsys, "train", "--resume", run, "--epochs", "4")
    assert status == 0 and err == ""
    assert f"resuming {run} after epoch 2" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["history"][:2] == json.loads((finished / "metrics.json").read_text())["history"]
    assert metrics["extended_from"] == 2
    assert "epochs = 4" in (run / "config.toml").read_text().splitlines()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0004"]
    page = (run / "report.html").read_text()
    assert "extended from 2 to 4 epochs" in page and "4 epochs (extended from 2)" in page
    assert not same_weights(run, finished)


def test_a_killed_extension_resumes_to_the_uninterrupted_one(
    tmp_path, capsys, monkeypatch, finished
):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    shutil.copytree(finished, whole)
    shutil.copytree(finished, killed)
    assert call(capsys, "train", "--resume", whole, "--epochs", "4")[0] == 0
    with monkeypatch.context() as m:
        kill_after_epoch(m, 3)
        status, _, err = call(capsys, "train", "--resume", killed, "--epochs", "4")
    assert status == 130 and "--resume" in err
    status, _, _ = call(capsys, "train", "--resume", killed)  # config.toml now says 4 epochs
    assert status == 0
    assert same_weights(killed, whole)


def test_an_extension_is_not_a_run_of_that_length_from_the_start(
    tmp_path, capsys, features, finished
):
    """Documented: the schedule of the first epochs was the shorter run's."""
    extended, fresh = tmp_path / "extended", tmp_path / "fresh"
    shutil.copytree(finished, extended)
    assert call(capsys, "train", "--resume", extended, "--epochs", "3")[0] == 0
    argv = ("train", *SMALL, "--data", features, "--epochs", "3", "-o", fresh)
    assert call(capsys, *argv)[0] == 0
    assert not same_weights(extended, fresh)


def test_resume_cannot_shorten_a_run_or_change_its_options(tmp_path, capsys, finished):
    before = snapshot(finished)
    status, _, err = call(capsys, "train", "--resume", finished, "--epochs", "1")
    assert_one_line_error(status, err, "--epochs 1", "2 epochs", "not shorten")
    status, _, err = call(capsys, "train", "--resume", finished, "--hidden", "8")
    assert_one_line_error(status, err, "--hidden", "only --epochs")
    assert snapshot(finished) == before
    config = RunConfig.from_mapping(read_config_file(finished / "config.toml"))
    with pytest.raises(ConfigError, match="margin"):
        train_run(dataclasses.replace(config, margin=0.5), finished, resume=True)
    with pytest.raises(ConfigError, match="fewer than the 2"):
        train_run(dataclasses.replace(config, epochs=1), finished, resume=True)
    assert snapshot(finished) == before


def test_the_schedule_keeps_its_length_when_a_checkpoint_loads():
    def schedule(total, steps):
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        found = build.OneCycleSchedule(optimizer, max_lr=0.1, total_steps=total)
        for _ in range(steps):
            optimizer.step()
            found.step()
        return optimizer, found

    _, short = schedule(10, 10)  # a finished 10-step run
    optimizer, longer = schedule(20, 0)
    longer.load_state_dict(short.state_dict())
    assert longer.total_steps == 20 and longer.last_epoch == 10
    optimizer.step()
    longer.step()
    _, fresh = schedule(20, 11)  # the 20-step cycle at the same step
    assert longer.get_last_lr() == pytest.approx(fresh.get_last_lr())
    _, same = schedule(10, 0)  # a plain resume changes nothing
    same.load_state_dict(short.state_dict())
    assert same.state_dict() == short.state_dict()


# --- the command as people expect it ---------------------------------------------------

PROBE = """
import runpy, sys
sys.argv = ["contrastkit", *sys.argv[1:]]
try:
    runpy.run_module("contrastkit", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    print("exit", stop.code, "torch" in sys.modules, file=sys.stderr)
"""


def run_process(argv, cwd):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"]])
def test_help_and_version_answer_without_importing_torch(tmp_path, argv):
    done = run_process([sys.executable, "-c", PROBE, *argv], tmp_path)
    assert done.stderr.splitlines()[-1] == "exit 0 False", done.stderr
    if argv == ["--version"]:
        assert done.stdout == f"contrastkit {contrastkit.__version__}\n"
    else:
        assert done.stdout.startswith("usage: contrastkit")


def test_python_m_contrastkit_is_the_command(tmp_path):
    done = run_process([sys.executable, "-m", "contrastkit", "--version"], tmp_path)
    assert done.returncode == 0 and done.stdout == f"contrastkit {contrastkit.__version__}\n"
    argv = [sys.executable, "-m", "contrastkit", "plot-loss", "-o", "loss.png"]
    done = run_process(argv, tmp_path)
    assert done.returncode == 0 and done.stdout == "wrote loss.png\n"
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    done = run_process(argv, tmp_path)  # never overwrites
    assert_one_line_error(done.returncode, done.stderr, "loss.png", "already exists")
    assert done.returncode == 2


def test_the_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--loss {contrastive,triplet,infonce,supcon,ntxent,cosine}",
        "--augment {none,crop,light,strong,simclr}",
        "--projection {none,mlp}",
        "--objective {contrastive,reconstruction,combined}",
        "--reconstruction-loss {mse,bce}",
        "--distance {euclidean,squared_euclidean,cosine,manhattan}",
        "--device {cpu,cuda,cuda:N,auto}",
        "--val-fraction FRACTION",
        "--test-fraction FRACTION",
        "--json",
    ):
        assert shown in text, shown


# --- layout ----------------------------------------------------------------------------


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_only_plots_imports_matplotlib():
    importers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if any(name.split(".")[0] == "matplotlib" for name in imported_modules(path))
    )
    assert importers == ["plots.py"]


def test_config_result_report_and_cli_import_no_torch():
    probe = (
        "import sys\n"
        "import contrastkit.app.cli, contrastkit.app.config, contrastkit.app.result\n"
        "import contrastkit.app.report\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.stdout == "False\n", done.stderr


def test_every_loss_has_its_kind():
    assert list(build.LOSS_KINDS) == list(LOSSES)
    config = small_config("digits")
    for loss, kind in build.LOSS_KINDS.items():
        objective = kind.objective(dataclasses.replace(config, loss=loss, distance="cosine"))
        assert callable(objective)
        assert (kind.batches in ("pairs", "random")) == (kind.samples_per_class == 0)


def test_a_result_holds_no_tensor_in_its_json(result):
    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)
        else:
            yield value

    leaves = list(walk(result.metrics()))
    assert all(v is None or isinstance(v, str | int | float) for v in leaves)
    assert not any(isinstance(v, np.ndarray | torch.Tensor) for v in leaves)
