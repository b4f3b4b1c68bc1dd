"""``contrastkit train`` on several processes: one model, one run folder, written by rank 0.

Most cases run the command in the session's gloo groups (``process_groups``): with a
process group already initialised, the command trains on it as under ``torchrun``. One
slow case launches ``torchrun`` itself, end to end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import relative_difference

import contrastkit
from contrastkit.app import launch
from contrastkit.app.cli import main
from process_group import ProcessGroups

# the digits, small: a couple of seconds a run
SMALL = ["--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "20", "--hidden", "16"]
SMALL += ["--embedding-dim", "4"]


def command(*argv: str) -> tuple[int, str, str]:
    """The command in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def history(run: Path) -> list[dict[str, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "epoch_seconds"} for line in lines]


def assert_same_run(one: Path, two: Path, tolerance: float) -> None:
    """Two runs that trained the same model: files, config, history, weights."""
    assert files(two) == files(one)
    assert (two / "config.toml").read_text() == (one / "config.toml").read_text()
    assert relative_difference(one, two) < tolerance
    for mine, alone in zip(history(two), history(one), strict=True):
        assert mine.keys() == alone.keys()
        for key, value in alone.items():
            assert mine[key] == pytest.approx(value, rel=1e-4), key
    environment = json.loads((two / "metrics.json").read_text())["environment"]
    assert environment["processes"] == 2


@pytest.mark.slow
def test_two_processes_write_one_run_of_the_model_one_process_trains(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    two = tmp_path / "two"
    (status0, out0, err0), (status1, out1, err1) = process_groups(2).run(
        command, "train", *SMALL, "--no-batch-norm", "-o", str(two)
    )
    assert (status0, status1) == (0, 0), (err0, err1)
    assert (out1, err1) == ("", "")  # rank 1 prints nothing
    assert "note: trained on 2 processes (gloo)" in out0
    assert [line[:11] for line in out0.splitlines() if line.startswith("epoch")] == [
        "epoch   1/2",
        "epoch   2/2",
    ]
    assert sum(line.startswith("test: ") for line in out0.splitlines()) == 1
    status, _, err = command("train", *SMALL, "--no-batch-norm", "--quiet", "-o", tmp_path / "one")
    assert status == 0, err
    # float32 sums in another order, magnified by Adam where a gradient is near 0:
    # measured 2e-5 relative; batch normalization per process gives 6e-3
    assert_same_run(tmp_path / "one", two, tolerance=5e-4)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["supcon", "infonce", "triplet"])
def test_losses_over_the_batch_take_negatives_from_both_processes(
    process_groups: ProcessGroups, tmp_path: Path, loss: str
) -> None:
    """SupCon, InfoNCE and batch-all triplets gather: the model one process trains."""
    argv = ["train", *SMALL, "--loss", loss, "--no-batch-norm", "--quiet"]
    two = tmp_path / "two"
    outcomes = process_groups(2).run(command, *argv, "-o", str(two))
    assert [status for status, _, _ in outcomes] == [0, 0], outcomes
    assert "compares the samples of its own part" not in outcomes[0][1]
    status, _, err = command(*argv, "-o", tmp_path / "one")
    assert status == 0, err
    assert_same_run(tmp_path / "one", two, tolerance=5e-4)


@pytest.mark.slow
def test_two_processes_resume_a_run_as_one_process_does(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    runs = {}
    for processes in (1, 2):
        run = tmp_path / f"run{processes}"
        first = ["train", *SMALL, "--epochs", "1", "--no-batch-norm", "--quiet", "-o", run]
        then = ["train", "--resume", run, "--epochs", "2", "--quiet"]
        for argv in (first, then):
            if processes == 1:
                outcomes = [command(*map(str, argv))]
            else:
                outcomes = process_groups(2).run(command, *map(str, argv))
            assert [status for status, _, _ in outcomes] == [0] * processes, outcomes
        runs[processes] = run
    assert [r["epoch"] for r in history(runs[2])] == [1, 2]
    assert_same_run(runs[1], runs[2], tolerance=5e-4)


def test_batch_norm_on_cpu_processes_is_noted(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    argv = ["train", *SMALL, "--epochs", "1", "--steps-per-epoch", "1", "-o", tmp_path / "run"]
    (status, out, err), _ = process_groups(2).run(command, *map(str, argv))
    assert status == 0, err
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert any(
        "batch normalization on 2 CPU processes" in note and "--no-batch-norm" in note
        for note in notes
    )
    assert "note: batch normalization on 2 CPU processes" in out


def test_bad_input_ends_every_process_with_one_line_before_anything_is_written(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.csv"
    outcomes = process_groups(2).run(
        command, "train", *SMALL, "--data", str(missing), "-o", str(tmp_path / "run")
    )
    for status, out, err in outcomes:
        assert status == 2 and out == ""
        assert err.splitlines() == [f"contrastkit: error: data {missing} does not exist "
                                    "(give 'digits', a folder or a file)"]  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_failure_of_rank_0_s_writes_ends_every_process_with_its_line(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = blocker / "run"  # rank 0 cannot make it; the others never try
    outcomes = process_groups(2).run(command, "train", *SMALL, "-o", str(run))
    (status0, _, err0), (status1, _, err1) = outcomes
    assert status0 == status1 == 1
    assert err0 == err1 and len(err0.splitlines()) == 1 and str(blocker) in err0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_batch_too_small_for_the_processes_is_refused_on_every_process(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    argv = ["train", *SMALL, "--loss", "infonce", "--batch-size", "4", "-o", tmp_path / "run"]
    for status, _, err in process_groups(3).run(command, *map(str, argv)):
        assert status == 2
        assert err.startswith("contrastkit: error: ") and len(err.splitlines()) == 1
        assert "fewer than the 3 processes" in err and "raise batch_size to 6" in err
    assert list(tmp_path.iterdir()) == []


# --- torchrun's environment ---------------------------------------------------------


def test_only_train_runs_under_torchrun(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    status, out, err = command("embed", tmp_path, tmp_path / "x.csv", "-o", tmp_path / "e.npy")
    assert status == 2 and out == ""
    assert err == (
        "contrastkit: error: embed runs in one process; only train runs under torchrun "
        "(launch it without torchrun)\n"
    )


def test_the_process_count_device_and_backend_come_from_torchrun_s_environment(
    monkeypatch,
) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch.launched_processes() == 1
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch.launched_processes() == 4
    assert launch.process_device("cpu") == torch.device("cpu")
    assert launch.backend_of(torch.device("cpu")) == "gloo"
    assert launch.backend_of(torch.device("cuda", 1)) == "nccl"
    if torch.cuda.is_available():
        assert launch.process_device("cuda:0") == torch.device("cuda", 1)


# --- agreed and on_rank0, the exchanges of the command --------------------------------


def _agreed(failing_rank: int) -> str:
    from contrastkit import distributed
    from contrastkit.data.readers import DataError

    try:
        with launch.agreed():
            if distributed.rank() == failing_rank:
                raise DataError(f"rank {failing_rank} found bad data")
    except DataError as error:
        return f"DataError: {error}"
    return "ok"


def test_an_error_of_any_process_is_raised_on_every_one(process_groups: ProcessGroups) -> None:
    assert process_groups(3).run(_agreed, 1) == ["DataError: rank 1 found bad data"] * 3
    assert process_groups(3).run(_agreed, -1) == ["ok"] * 3


def _on_rank0(fail: bool) -> str:
    from contrastkit import distributed

    def make() -> str:
        if fail:
            raise FileExistsError("taken")
        return f"made by rank {distributed.rank()}"

    try:
        return launch.on_rank0(make)
    except FileExistsError as error:
        return f"FileExistsError: {error}"


def test_on_rank0_runs_once_and_tells_every_process(process_groups: ProcessGroups) -> None:
    assert process_groups(2).run(_on_rank0, False) == ["made by rank 0"] * 2
    assert process_groups(2).run(_on_rank0, True) == ["FileExistsError: taken"] * 2


# --- end to end, under torchrun -----------------------------------------------------


@pytest.mark.slow
def test_torchrun_trains_on_two_processes_the_model_one_process_trains(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(contrastkit.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    two = tmp_path / "two"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    train = ["train", *SMALL, "--no-batch-norm", "--quiet", "-o", str(two)]
    launched = subprocess.run(
        [*torchrun, "--nproc-per-node", "2", "-m", "contrastkit", *train],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert launched.returncode == 0, launched.stderr
    assert "Traceback" not in launched.stderr
    lines = launched.stdout.splitlines()
    assert sum(line.startswith("test: ") for line in lines) == 1  # rank 0 alone prints
    assert sum(line.startswith("took ") for line in lines) == 1
    status, _, err = command("train", *SMALL, "--no-batch-norm", "--quiet", "-o", tmp_path / "one")
    assert status == 0, err
    assert_same_run(tmp_path / "one", two, tolerance=5e-4)


@pytest.mark.slow
def test_micro_batches_of_a_combined_objective_train_on_several_processes(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    """The whole objective cached, model(x) and model.reconstruct(x) in one DDP forward.

    Once refused (DDP saw the encoder's parameters twice in one step); now the model one
    process trains with the same micro-batches.
    """
    argv = ["train", *SMALL, "--objective", "combined", "--no-batch-norm", "--micro-batch", "4"]
    argv += ["--quiet"]
    two = tmp_path / "two"
    outcomes = process_groups(2).run(command, *argv, "-o", str(two))
    assert [status for status, _, _ in outcomes] == [0, 0], outcomes
    notes = json.loads((two / "metrics.json").read_text())["notes"]
    assert any(
        "gradient caching: the encoder embedded 4 rows at a time, the decoder "
        "reconstructing them" in note
        for note in notes
    )
    assert "micro_batch = 4" in (two / "config.toml").read_text()
    status, _, err = command(*argv, "-o", tmp_path / "one")
    assert status == 0, err
    assert_same_run(tmp_path / "one", two, tolerance=5e-4)
