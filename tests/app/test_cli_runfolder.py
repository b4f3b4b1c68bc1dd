"""The run folder through the command: made safely, resumed from any kill, checked on use.

Each case is the real command in-process on tiny data, tried as a user would: a bad
input ends with one ``contrastkit: error:`` line (status 2; 1 for a failed write, which
names the file) and leaves what the user had untouched.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_cli import (
    SMALL,
    assert_one_line_error,
    call,
    kill_after_first_epoch,
    make_features,
    same_weights,
    snapshot,
    train_quietly,
)

from contrastkit.app import report as report_module
from contrastkit.app import run as run_module
from contrastkit.app import rundir
from contrastkit.app.cli import main
from contrastkit.app.config import MAX_SEED
from contrastkit.training import Trainer


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rf-data")
    make_features(folder)
    return folder / "features.npz"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, features):
    """A finished 2-epoch run, copied before each case that damages or extends it."""
    run = tmp_path_factory.mktemp("rf-finished") / "run"
    train_quietly("train", *SMALL, "--data", features, "-o", run)
    return run


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory, features):
    """A run killed after its first epoch: one checkpoint, no final weights."""
    run = tmp_path_factory.mktemp("rf-unfinished") / "run"
    with pytest.MonkeyPatch.context() as mp:
        kill_after_first_epoch(mp)
        status = main([str(a) for a in ("train", *SMALL, "--data", features, "-o", run)])
    assert status == 130
    return run


def copy_of(run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- default folders ---------------------------------------------------------------------


def test_two_trains_started_together_take_two_folders(tmp_path, monkeypatch, features):
    """The second run starts and finishes while the first is still reading its data.

    The first run's folder is taken only once its data is read, so it takes the next
    free name instead of failing with [Errno 17] (as when names were chosen up front).
    """
    monkeypatch.chdir(tmp_path)
    read_data = run_module.read_data
    outputs: list[str] = []
    started = []

    def read_while_another_run_starts(config):
        if not started:  # the first run: the second one starts (and ends) now
            started.append(True)
            outputs.append(train_quietly("train", *SMALL, "--data", features))
        return read_data(config)

    monkeypatch.setattr(run_module, "read_data", read_while_another_run_starts)
    first = train_quietly("train", *SMALL, "--data", features)
    second = outputs[0]
    assert second.splitlines()[-1].endswith(str(Path("runs/features-contrastive-1/report.html")))
    assert first.splitlines()[-1].endswith(str(Path("runs/features-contrastive-2/report.html")))
    for n in (1, 2):
        assert (tmp_path / "runs" / f"features-contrastive-{n}" / "model.safetensors").is_file()
    # the same config and data: the same network, each in its own folder
    assert same_weights(*(tmp_path / "runs" / f"features-contrastive-{n}" for n in (1, 2)))


def test_a_failed_default_run_leaves_no_folder(tmp_path, capsys, monkeypatch, features):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    before = snapshot(tmp_path)

    def no_optimizer(*_, **__):
        raise ValueError("no optimizer today")

    monkeypatch.setattr(run_module, "optimizer_and_schedule", no_optimizer)
    status, _, err = call(capsys, "train", *SMALL, "--data", features)
    assert_one_line_error(status, err, "no optimizer today", code=1)
    assert "--resume" not in err  # nothing was kept to resume
    assert snapshot(tmp_path) == before


def test_compare_takes_its_default_folder_after_checking_its_options(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    taken = tmp_path / "runs" / "compare-1"
    taken.mkdir(parents=True)
    (taken / "mine.txt").write_text("keep")
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "compare", "--epochs", "0")
    assert_one_line_error(status, err, "epochs", "0")
    assert snapshot(tmp_path) == before  # no runs/compare-2 for a bad option

    def stop_after_the_folder(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "train_run", stop_after_the_folder)
    status, _, _ = call(capsys, "compare", "--quiet")
    assert status == 130
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["compare-1", "compare-2"]
    assert snapshot(taken) == {k: v for k, v in before.items() if k.startswith(f"{taken}/")}


# --- kills and resume --------------------------------------------------------------------


def kill_in_the_first_epoch(monkeypatch):
    """Stop the run at its second batch: no checkpoint written yet."""
    train_batch = Trainer.train_batch

    def die_at_step_1(self, batch):
        if self.step == 1:
            raise KeyboardInterrupt
        return train_batch(self, batch)

    monkeypatch.setattr(Trainer, "train_batch", die_at_step_1)


def kill_right_after_the_config(monkeypatch):
    """Stop the run once config.toml is written, before model.json is."""
    write = run_module.write_text_atomic

    def die_before_model_json(path, text):
        if Path(path).name == "model.json":
            raise KeyboardInterrupt
        return write(path, text)

    monkeypatch.setattr(run_module, "write_text_atomic", die_before_model_json)


@pytest.mark.parametrize(
    ("kill", "left"),
    [
        (kill_right_after_the_config, {"config.toml"}),
        (kill_in_the_first_epoch, {"config.toml", "model.json", "metrics.jsonl"}),
    ],
    ids=["after-config", "first-epoch"],
)
def test_a_run_killed_before_its_first_checkpoint_resumes_from_epoch_0(
    tmp_path, capsys, monkeypatch, features, finished, kill, left
):
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as m:
        kill(m)
        status, _, err = call(capsys, "train", *SMALL, "--data", features)
    run = Path("runs") / "features-contrastive-1"
    assert status == 130
    assert err == f"contrastkit: interrupted; continue with --resume {run}\n"
    found = {p.name for p in run.iterdir() if p.is_file()}
    assert found == left
    assert not list(run.glob("checkpoints/epoch-*"))

    status, out, err = call(capsys, "train", "--resume", run)
    assert status == 0 and err == ""
    assert f"resuming {run} from epoch 0" in out
    assert same_weights(run, finished)  # the same config as the uninterrupted run
    spec = json.loads((run / "model.json").read_text())
    assert spec == json.loads((finished / "model.json").read_text())
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]


def test_resume_removes_what_a_killed_writer_left(tmp_path, capsys, unfinished, finished):
    run = copy_of(unfinished, tmp_path)
    pid = dead_pid()
    stale_checkpoint = run / "checkpoints" / f".epoch-0002.tmp-{pid}"
    stale_checkpoint.mkdir()
    (stale_checkpoint / "model.safetensors").write_bytes(b"half a file")
    stale_file = run / f".model.safetensors.tmp-{pid}-0123abcd"
    stale_file.write_bytes(b"half a file")
    status, out, err = call(capsys, "train", "--resume", run)
    assert status == 0 and err == ""
    assert f"resuming {run} after epoch 1" in out
    assert not stale_checkpoint.exists() and not stale_file.exists()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0002"]
    assert [p for p in run.rglob("*") if ".tmp-" in p.name] == []
    assert same_weights(run, finished)


def test_resume_keeps_the_temporary_of_a_live_writer(tmp_path, capsys, unfinished):
    """A temporary file of a process still running (here: this one) is kept."""
    run = copy_of(unfinished, tmp_path)
    live = run / f".notes.txt.tmp-{os.getpid()}-0123abcd"
    live.write_text("being written")
    status, _, _ = call(capsys, "train", "--resume", run)
    assert status == 0 and live.read_text() == "being written"


# --- damaged run folders -----------------------------------------------------------------


def truncate_weights(run):
    path = run / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-7])
    return path, "is damaged"


def truncate_checkpoint_weights(run):
    path = next(run.glob("checkpoints/epoch-*")) / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return path, "is damaged"


def empty_state(run):
    path = next(run.glob("checkpoints/epoch-*")) / "state.pt"
    path.write_bytes(b"")
    return path, "is empty"


def random_state(run):
    path = next(run.glob("checkpoints/epoch-*")) / "state.pt"
    path.write_bytes(bytes(range(256)) * 4)
    return path, "damaged or not a torch file"


def spec_without_a_key(run):
    path = run / "model.json"
    spec = json.loads(path.read_text())
    del spec["in_features"]
    path.write_text(json.dumps(spec))
    return path, "has no 'in_features'"


def spec_not_json(run):
    path = run / "model.json"
    path.write_text('{"kind": "vectors",')
    return path, "is not valid JSON"


def spec_of_another_network(run):
    path = run / "model.json"
    spec = json.loads(path.read_text())
    spec["embedding_dim"] = 3
    path.write_text(json.dumps(spec))
    return "model.json", "embedding_dim"  # the reference or the run's config disagrees


def reference_without_embeddings(run):
    path = run / "reference.safetensors"
    save_file({"labels": torch.zeros(4, dtype=torch.int64)}, str(path))
    return path, "no tensor 'embeddings'"


def no_config(run):
    (run / "config.toml").unlink()
    return run, "no config.toml"


# which commands each damage stops: (damage, run, commands)
DAMAGES = [
    (truncate_weights, "finished", ["evaluate", "embed", "score"]),
    (truncate_checkpoint_weights, "unfinished", ["evaluate", "embed", "score", "resume"]),
    (empty_state, "unfinished", ["resume"]),
    (random_state, "unfinished", ["resume"]),
    (random_state, "finished", ["resume"]),
    (spec_without_a_key, "finished", ["evaluate", "embed", "score", "resume"]),
    (spec_not_json, "finished", ["evaluate", "embed", "score", "resume"]),
    (spec_of_another_network, "finished", ["evaluate", "embed", "score", "resume"]),
    (reference_without_embeddings, "finished", ["evaluate", "embed", "score"]),
    (no_config, "finished", ["evaluate", "embed", "score", "resume"]),
]


def commands(run, features, tmp_path):
    return {
        "evaluate": ["evaluate", run],
        "embed": ["embed", run, features, "-o", tmp_path / "out.npy"],
        "score": ["score", run, features, "-o", tmp_path / "out.csv"],
        "resume": ["train", "--resume", run],
    }


@pytest.mark.parametrize(
    ("damage", "which", "stopped"),
    DAMAGES,
    ids=[f"{d.__name__}-{w}" for d, w, _ in DAMAGES],
)
def test_a_damaged_run_folder_is_one_line_and_touches_nothing(
    tmp_path, capsys, features, finished, unfinished, damage, which, stopped
):
    run = copy_of(finished if which == "finished" else unfinished, tmp_path / "runs")
    path, what = damage(run)
    before = snapshot(tmp_path)
    for name in stopped:
        status, out, err = call(capsys, *commands(run, features, tmp_path)[name])
        assert_one_line_error(status, err, path, what)
        assert status == 2, (name, err)
        assert "Traceback" not in err and out == ""
        assert snapshot(tmp_path) == before, name


def test_a_damaged_file_a_command_does_not_read_does_not_stop_it(
    tmp_path, capsys, features, finished
):
    """evaluate, embed and score read the final weights, never the checkpoint's state."""
    run = copy_of(finished, tmp_path / "runs")
    random_state(run)
    for name in ("evaluate", "embed", "score"):
        status, _, err = call(capsys, *commands(run, features, tmp_path)[name])
        assert status == 0 and err == "", (name, err)


def test_resume_repairs_damaged_final_files_from_the_checkpoint(tmp_path, capsys, finished):
    run = copy_of(finished, tmp_path)
    truncate_weights(run)
    reference_without_embeddings(run)
    status, _, err = call(capsys, "train", "--resume", run)
    assert status == 0 and err == ""
    assert same_weights(run, finished)
    rundir.check_run_folder(run, need_reference=True)


# --- a full disk -------------------------------------------------------------------------


def full_disk_at(monkeypatch, name):
    """Every write of a file called ``name`` fails as on a full disk."""
    real_replace, real_write_bytes = os.replace, pathlib.Path.write_bytes

    def replace(src, dst, *args, **kwargs):  # the end of each atomic write
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    def write_bytes(self, data):  # the trainer's checkpoint files
        if self.name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(rundir.os, "replace", replace)
    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("name", ["config.toml", "model.json"])
def test_a_full_disk_before_training_names_the_file_and_leaves_nothing(
    tmp_path, capsys, monkeypatch, features, name
):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    with monkeypatch.context() as m:
        full_disk_at(m, name)
        status, _, err = call(capsys, "train", *SMALL, "--data", features, "-o", "run")
    assert_one_line_error(
        status, err, f"cannot write {Path('run') / name}", "No space left", code=1
    )
    assert status == 1 and "--resume" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("state.pt", Path("checkpoints") / ".epoch-0001.tmp-{pid}" / "state.pt"),
        ("model.safetensors", Path("checkpoints") / ".epoch-0001.tmp-{pid}" / "model.safetensors"),
        ("metrics.json", Path("metrics.json")),
        ("roc.png", Path("figures") / "roc.png"),
    ],
)
def test_a_full_disk_while_training_names_the_file_and_the_run_resumes(
    tmp_path, capsys, monkeypatch, features, finished, name, where
):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        full_disk_at(m, name)
        if name == "roc.png":
            monkeypatch_save_figure(m)
        status, _, err = call(capsys, "train", *SMALL, "--data", features, "-o", run)
    file = run / str(where).format(pid=os.getpid())
    assert_one_line_error(status, err, file, "No space left on device", code=1)
    assert status == 1
    assert err.rstrip().endswith(f"continue with --resume {run}")
    assert [p for p in run.rglob("*") if ".tmp-" in p.name] == []  # no half-written file

    status, _, err = call(capsys, "train", "--resume", run)  # once there is room again
    assert status == 0 and err == ""
    assert same_weights(run, finished)
    assert (run / "report.html").is_file()


def monkeypatch_save_figure(monkeypatch):
    """matplotlib writes through its own file object: fail its PNG like a full disk."""
    from contrastkit import plots

    save_figure = plots.save_figure

    def full(fig, path, **kwargs):
        if Path(path).name == "roc.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return save_figure(fig, path, **kwargs)

    monkeypatch.setattr(plots, "save_figure", full)


def test_a_full_disk_writing_the_report_names_it(tmp_path, capsys, monkeypatch, features):
    run = tmp_path / "run"

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(report_module, "write_report", full)
        status, _, err = call(capsys, "train", *SMALL, "--data", features, "-o", run)
    assert_one_line_error(status, err, f"cannot write {run / 'report.html'}", "--resume", code=1)
    assert status == 1


# --- config files and flags --------------------------------------------------------------


@pytest.fixture
def configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big_seed.toml").write_text(f"seed = {2**64}\n")
    (tmp_path / "latin1.toml").write_bytes("label_column = 'espèce'\n".encode("latin-1"))
    (tmp_path / "fine.toml").write_text("seed = 3\nmargin = 0.5\n")
    (tmp_path / "locked.toml").write_text("seed = 3\n")
    return tmp_path


BAD_CONFIG = [
    (["--seed", str(2**64)], ["--seed", f"between 0 and {MAX_SEED}", str(2**64)]),
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--config", "big_seed.toml"], ["big_seed.toml", "seed", str(2**64)]),
    (["--config", "latin1.toml"], ["latin1.toml", "not UTF-8", "save it as UTF-8"]),
    (["--config", "locked.toml"], ["locked.toml", "cannot read", "Permission denied"]),
    (["--config", "fine.toml", "--margin", "-2"], ["--margin", "-2"]),
    (["--config", "big_seed.toml", "--margin", "2"], ["big_seed.toml", "seed"]),
]


@pytest.mark.parametrize(("argv", "named"), BAD_CONFIG, ids=[" ".join(a) for a, _ in BAD_CONFIG])
def test_config_errors_name_the_flag_or_the_file(configs, capsys, monkeypatch, argv, named):
    real_open = pathlib.Path.open

    def locked(self, *args, **kwargs):
        if self.name == "locked.toml":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(self, *args, **kwargs)

    before = snapshot(configs)
    with monkeypatch.context() as m:  # as if locked.toml were the file of another user
        m.setattr(pathlib.Path, "open", locked)
        status, _, err = call(capsys, "train", *SMALL, *argv)
    assert_one_line_error(status, err, *named)
    assert status == 2 and snapshot(configs) == before
    assert "options:" not in err


def test_a_flag_error_is_not_blamed_on_the_config_file(configs, capsys):
    status, _, err = call(capsys, "train", *SMALL, "--config", "fine.toml", "--seed", str(2**64))
    assert_one_line_error(status, err, "--seed")
    assert "fine.toml" not in err


def test_the_largest_seed_trains(tmp_path, capsys, features):
    run = tmp_path / "run"
    status, _, err = call(
        capsys, "train", *SMALL, "--data", features, "--seed", str(MAX_SEED), "-o", run
    )
    assert status == 0 and err == ""
    assert f"seed = {MAX_SEED}" in (run / "config.toml").read_text().splitlines()


# --- the app extra -----------------------------------------------------------------------


def test_a_missing_app_package_is_one_line_before_anything_runs(tmp_path, capsys, monkeypatch):
    import importlib.util

    monkeypatch.chdir(tmp_path)
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "sklearn" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for argv in (["train", *SMALL], ["plot-loss"], ["evaluate", "nowhere"]):
        status, out, err = call(capsys, *argv)
        assert_one_line_error(status, err, "scikit-learn", "pip install 'contrastkit[app]'")
        assert status == 2 and out == ""
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as stop:  # --help needs none of them
        main(["train", "--help"])
    assert stop.value.code == 0
