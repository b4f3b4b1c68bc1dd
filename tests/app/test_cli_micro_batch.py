"""``contrastkit train --micro-batch K``: gradient caching from the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import SMALL, assert_one_line_error, call, relative_difference


@pytest.mark.parametrize("loss", ["supcon", "contrastive"])
def test_micro_batches_train_the_model_the_whole_batch_trains(
    capsys, tmp_path: Path, loss: str
) -> None:
    argv = ["train", *SMALL, "--loss", loss, "--no-batch-norm"]
    assert call(capsys, *argv, "-o", tmp_path / "whole")[0] == 0
    status, _, err = call(capsys, *argv, "--micro-batch", "5", "-o", tmp_path / "cached")
    assert status == 0, err
    # float32 sums in another order, which Adam magnifies where a gradient is 0 (the
    # last bias of a siamese pair loss): the measure of tests/app/test_cli_distributed.py
    assert relative_difference(tmp_path / "whole", tmp_path / "cached") < 5e-4
    notes = json.loads((tmp_path / "cached" / "metrics.json").read_text())["notes"]
    assert any("gradient caching: the encoder embedded 5 rows at a time" in n for n in notes)
    assert "micro_batch = 5" in (tmp_path / "cached" / "config.toml").read_text()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--micro-batch", "4"], ["--micro-batch", "--no-batch-norm"]),
        (["--micro-batch", "-1", "--no-batch-norm"], ["--micro-batch", ">= 0"]),
        (
            ["--micro-batch", "4", "--no-batch-norm", "--objective", "reconstruction"],
            ["--micro-batch", "reconstruction"],
        ),
    ],
)
def test_bad_micro_batch_is_one_line_before_anything_is_written(
    capsys, tmp_path: Path, extra: list[str], named: list[str]
) -> None:
    status, _, err = call(capsys, "train", *SMALL, *extra, "-o", tmp_path / "run")
    assert_one_line_error(status, err, *named)
    assert not (tmp_path / "run").exists()


def test_a_combined_objective_is_cached_whole_and_trains_the_uncached_model(
    capsys, tmp_path: Path
) -> None:
    """The reconstruction and the contrastive term both from the micro-batches' calls."""
    argv = ["train", *SMALL, "--objective", "combined", "--no-batch-norm"]
    assert call(capsys, *argv, "-o", tmp_path / "whole")[0] == 0
    status, _, err = call(capsys, *argv, "--micro-batch", "5", "-o", tmp_path / "run")
    assert status == 0, err
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert any("gradient caching" in n for n in notes)
    assert any("5 rows at a time, the decoder reconstructing them" in n for n in notes)
    assert relative_difference(tmp_path / "whole", tmp_path / "run") < 5e-4
    assert relative_difference(tmp_path / "whole", tmp_path / "run", prefix="decoder.") < 5e-4
