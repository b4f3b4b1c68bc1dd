"""The lazy-images benchmark script runs end to end on two tiny folders.

Not a benchmark itself: 40 and 80 images of 16 × 16 pixels, batches of 16, eager up to
40 images, lazy with 0 and 1 worker, only to check that every mode runs in its own
process, that the epochs agree pixel for pixel, and that the numbers land in the
Markdown table and the JSON the README's numbers come from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lazy_images.py"


@pytest.mark.slow
def test_the_script_measures_every_mode_and_the_epochs_agree(tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPT), "--sizes", "40", "80", "--eager-max", "40"]
    command += ["--workers", "0", "1", "--batch-size", "16", "--image-size", "16"]
    command += ["--stored", "16", "--data", str(tmp_path / "data"), "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    results = json.loads((tmp_path / "lazy-images.json").read_text())
    assert results["settings"]["modes"] == ["eager", "lazy-0", "lazy-1"]
    small, large = results["results"]
    assert (small["n"], large["n"]) == (40, 80)
    for row in (small, large):
        for mode in ("lazy-0", "lazy-1"):
            result = row[mode]
            assert "error" not in result, result
            assert result["seen"] == row["n"] and result["images_per_s"] > 0
            assert result["main_process_mb"] > 0 and result["total_pss_mb"] > 0
        assert row["lazy-0"]["checksum"] == row["lazy-1"]["checksum"]
        assert len(row["lazy-1"]["worker_peaks_mb"]) == 1 and row["lazy-0"]["worker_peaks_mb"] == []
    assert small["eager"]["checksum"] == small["lazy-0"]["checksum"]  # the same pixels
    assert "not run above --eager-max 40" in large["eager"]["skipped"]
    table = (tmp_path / "lazy-images.md").read_text()
    assert "| 80 | lazy-1 |" in table and "(equal)" in table and "DIFFER" not in table
    # the folders were kept, as --data asks
    assert len(list((tmp_path / "data" / "n80").glob("c*/*.png"))) == 80
