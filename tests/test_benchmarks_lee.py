"""The Lee benchmark script runs end to end on tiny fake Lee files, without MiniLM.

Not a benchmark itself: one epoch of two steps of a tiny encoder from nothing, only to
check that TF-IDF and the command's run land in the table and the JSON the README's
numbers come from, and that a model folder that is not all-MiniLM-L6-v2 is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")  # the text extra

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lee.py"
TINY = (
    "--epochs 1 --steps-per-epoch 2 --batch-size 8 --text-width 16 --text-layers 1 "
    "--text-heads 2 --vocab-size 200 --max-length 24"
)


def _lee(folder: Path) -> str:
    topics = [
        ["Fires burn.", "Crews fight fires.", "Smoke rises.", "Homes burn."],
        ["Banks lend.", "Rates rise.", "Markets fall.", "Loans cost more."],
        ["Teams play.", "Fans cheer.", "Goals count.", "Coaches shout."],
    ]
    (folder / "lee_background.cor").write_text("".join(" ".join(t) + "\n" for t in topics))
    (folder / "lee.cor").write_text("Crews fight fires.\nBanks lend.\nFans cheer.\nFires burn.\n")
    ratings = ["1\t0.2\t0.3\t0.9", "0\t1\t0.25\t0.2", "0\t0\t1\t0.22", "0\t0\t0\t1"]
    (folder / "similarities0-1.txt").write_text("\n".join(ratings) + "\n")
    return f"lee:{folder}"


def test_the_script_measures_tfidf_and_the_encoder_from_nothing(tmp_path: Path) -> None:
    lee = _lee(tmp_path)
    command = [sys.executable, str(SCRIPT), "--lee", lee, "--nothing", TINY]
    command += ["--bag", TINY.replace("--text-layers 1", "--text-layers 0")]
    command += ["--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    results = json.loads((tmp_path / "out" / "lee.json").read_text())
    methods = [row["method"] for row in results["results"]]
    assert methods[2:] == ["bag of words from nothing", "2-layer BERT from nothing"]
    for row in results["results"]:
        assert -1.0 <= row["pearson"] <= 1.0 and -1.0 <= row["spearman"] <= 1.0
        assert row["seconds"] > 0
    for row, folder, model_type in ((2, "bag", "contrastkit-word-bag"), (3, "nothing", "bert")):
        run = tmp_path / "runs" / folder
        metrics = json.loads((run / "metrics.json").read_text())
        assert results["results"][row]["pearson"] == metrics["test"]["pearson"]
        config = json.loads((run / "text-model" / "config.json").read_text())
        assert config["model_type"] == model_type
    table = (tmp_path / "out" / "lee.md").read_text()
    assert "| bag of words from nothing |" in table and "contrastkit train --data lee:" in table


def test_a_folder_that_is_not_minilm_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    command = [sys.executable, str(SCRIPT), "--lee", _lee(tmp_path), "--minilm", str(tmp_path)]
    command += ["--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "15 bytes" in done.stderr and "not using it" in done.stderr
    assert not (tmp_path / "out").exists()
