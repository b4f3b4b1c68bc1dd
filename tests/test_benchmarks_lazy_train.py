"""The lazy-train benchmark measures one ``contrastkit train`` and tables it.

Not a benchmark itself: one lazy run on a folder of 40 images of 16 × 16 pixels, only
to check that the script runs the command, reads its memory and result, and writes the
table row the README's numbers come from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lazy_train
from lazy_images import make_folder, make_pool


@pytest.mark.slow
def test_one_lazy_run_is_measured_and_tabled(tmp_path: Path) -> None:
    make_pool(tmp_path / "pool", 40, 16)
    folder = make_folder(tmp_path, tmp_path / "pool", 40)
    args = argparse.Namespace(image_size=16, epochs=1, steps=2, batch_size=16)
    result = lazy_train.run_train("lazy-0", folder, tmp_path / "run", args)
    assert "error" not in result, result
    assert "read lazily" in result["source"]
    assert 0 < result["until_trained_mb"] <= result["train_process_mb"]
    assert result["total_pss_mb"] > 0 and result["processes"] == 1
    assert result["precision_at_1"] is None or 0 <= result["precision_at_1"] <= 1
    assert result["train_loss"] > 0
    line = lazy_train.row(40, result)
    assert line.startswith("| 40 | lazy-0 | ") and line.count("|") == lazy_train.HEADER.count("|")
