"""``contrastkit train --memory-size M``: a memory of past embeddings from the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli import (
    SMALL,
    assert_one_line_error,
    call,
    kill_after_first_epoch,
    same_weights,
)

from contrastkit.app.cli import main

MEMORY = ["--memory-size", "40"]  # 16 rows a batch: full in the third step, then wraps


@pytest.mark.parametrize("loss", ["supcon", "infonce"])
def test_a_memory_run_killed_after_its_first_epoch_resumes_bit_identically(
    capsys, tmp_path: Path, loss: str
) -> None:
    argv = ["train", *SMALL, "--loss", loss, *MEMORY]
    assert call(capsys, *argv, "-o", tmp_path / "straight")[0] == 0
    with pytest.MonkeyPatch.context() as mp:
        kill_after_first_epoch(mp)
        assert main([str(a) for a in (*argv, "-o", tmp_path / "killed")]) == 130
    capsys.readouterr()
    status, _, err = call(capsys, "train", "--resume", tmp_path / "killed")
    assert status == 0, err
    assert same_weights(tmp_path / "straight", tmp_path / "killed")
    # the memory changed what was learned: not the run without it
    assert call(capsys, "train", *SMALL, "--loss", loss, "-o", tmp_path / "plain")[0] == 0
    assert not same_weights(tmp_path / "straight", tmp_path / "plain")
    checkpoint = tmp_path / "straight" / "checkpoints"
    state = torch.load(next(checkpoint.glob("epoch-*")) / "state.pt", weights_only=True)
    assert int(state["objective"]["memory"]["seen"]) > 40


def test_the_report_says_the_batch_and_the_negatives(capsys, tmp_path: Path) -> None:
    argv = ["train", *SMALL, "--loss", "supcon", *MEMORY, "--no-batch-norm"]
    status, _, err = call(capsys, *argv, "--micro-batch", "6", "-o", tmp_path / "run")
    assert status == 0, err
    report = (tmp_path / "run" / "report.html").read_text()
    assert (
        "training batches of 16 samples: each anchor compared with the other 15 of its batch "
        "and 40 remembered embeddings of earlier batches, 55 candidates once the memory was "
        "full; the encoder embedded 6 rows at a time"
    ) in report
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert any("a memory of the last 40 training embeddings" in n for n in notes)
    assert "memory_size = 40" in (tmp_path / "run" / "config.toml").read_text()
    status, _, err = call(capsys, "train", *SMALL, "--loss", "infonce", "-o", tmp_path / "nce")
    assert status == 0, err
    report = (tmp_path / "nce" / "report.html").read_text()
    assert "each query picked its key among 8 keys, so 7 negatives" in report


def test_memory_size_in_a_config_file(capsys, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('loss = "supcon"\nmemory_size = 40\nepochs = 2\nsteps_per_epoch = 3\n')
    argv = ["--batch-size", "16", "--hidden", "16", "--embedding-dim", "2", "--quiet"]
    status, _, err = call(capsys, "train", "--config", config, *argv, "-o", tmp_path / "a")
    assert status == 0, err
    status, _, err = call(
        capsys, "train", *SMALL, "--loss", "supcon", *MEMORY, "-o", tmp_path / "b"
    )
    assert status == 0, err
    assert same_weights(tmp_path / "a", tmp_path / "b")
    weights = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--memory-size", "-1", "--loss", "supcon"], ["--memory-size", ">= 0", "-1"]),
        (["--memory-size", "8"], ["--memory-size", "supcon", "contrastive"]),
        (
            ["--memory-size", "8", "--loss", "supcon", "--objective", "reconstruction"],
            ["--memory-size", "reconstruction"],
        ),
    ],
)
def test_bad_memory_size_is_one_line_before_anything_is_written(
    capsys, tmp_path: Path, extra: list[str], named: list[str]
) -> None:
    status, _, err = call(capsys, "train", *SMALL, *extra, "-o", tmp_path / "run")
    assert_one_line_error(status, err, *named)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("loss", "drawn"), [("supcon", 40), ("triplet", 40), ("infonce", 20)])
def test_a_batch_larger_than_the_classes_can_fill_is_reported_as_drawn(
    capsys, tmp_path: Path, loss: str, drawn: int
) -> None:
    """The digits have 10 classes: 4 (or 2) of each make batches of 40 (20), not 200."""
    argv = ["train", "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--loss", loss]
    argv += ["--no-batch-norm", "--micro-batch", "16"]
    status, _, err = call(capsys, *argv, "--batch-size", "200", "-o", tmp_path / "run")
    assert status == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train_batch"] == drawn
    report = (tmp_path / "run" / "report.html").read_text()
    assert f"training batches of {drawn} samples" in report
    k = drawn // 10
    assert (
        f"the training batches hold {drawn} samples (10 classes × {k}), fewer than batch_size "
        f"200: the loss takes {k} samples of each class, and the training split has 10 classes "
        f"with {k} or more"
    ) in metrics["notes"]
    assert any(f"compared every row of each batch of {drawn} with" in n for n in metrics["notes"])
