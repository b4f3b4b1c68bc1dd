"""The gradient-cache benchmark script runs end to end on one tiny size.

Not a benchmark itself: N = 128 in micro-batches of 32, one timed step, only to check
that both modes run in their own processes, agree on the first step, and land in the
Markdown table and the JSON the README's numbers come from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gradient_cache.py"


def test_the_script_measures_both_modes_and_checks_they_agree(tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPT), "--sizes", "128", "--micro-batch", "32"]
    command += ["--repeats", "1", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    results = json.loads((tmp_path / "gradient-cache-cpu.json").read_text())
    assert results["settings"]["micro_batch"] == 32 and results["settings"]["sizes"] == [128]
    (row,) = results["results"]
    uncached, cached = row["uncached"], row["cached"]
    for mode in (uncached, cached):
        assert "error" not in mode, mode
        assert mode["step_s"] > 0 and mode["peak_mb"] > 0
    # the same weights and batch: the first step's loss is the same, float32 aside
    assert abs(uncached["first_loss"] - cached["first_loss"]) <= 1e-5 * abs(uncached["first_loss"])
    table = (tmp_path / "gradient-cache-cpu.md").read_text()
    assert "| 128 |" in table and "first-step loss" in table
