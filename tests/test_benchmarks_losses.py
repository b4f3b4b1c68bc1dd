"""The loss benchmark script runs end to end on a tiny grid and writes what it promises.

Not a benchmark itself: N = 64, D = 8, one repeat, only to check that every loss and
implementation runs through the script and lands in its Markdown table, JSON and plot.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "losses.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_losses", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected(bench, losses):
    return [
        (loss, impl)
        for loss in losses
        for impl in bench.IMPLS
        if impl != "pml" or loss in bench.PML_LOSSES
    ]


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0] == "| loss | N | D | impl | fwd+bwd s | × floor | peak MB |"
    assert lines[1].startswith("| --- |")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_every_loss_and_implementation_in_process(bench, tmp_path, capsys):
    argv = ["--sizes", "64", "--dims", "8", "--repeats", "1", "--in-process"]
    bench.main([*argv, "--out", str(tmp_path)])
    expected = _expected(bench, bench.LOSSES)

    document = json.loads((tmp_path / "losses-cpu.json").read_text())
    results = document["results"]
    assert [(r["loss"], r["impl"]) for r in results] == expected
    assert document["settings"]["sizes"] == [64] and document["settings"]["in_process"]
    assert document["machine"]["torch"]
    pml_installed = document["machine"]["pytorch_metric_learning"] is not None
    for r in results:
        assert (r["n"], r["d"]) == (64, 8)
        if r["impl"] == "pml" and not pml_installed:
            assert "not installed" in r["skipped"]
            continue
        assert "error" not in r and "skipped" not in r, r
        assert r["time_s"] > 0 and r["floor_s"] > 0 and r["peak_mb"] >= 0
        assert r["ratio"] == pytest.approx(r["time_s"] / r["floor_s"])
        assert r["floor_s"] == min(r["floors_s"]) and len(r["floors_s"]) == 2
    # at N = 64 the automatic choice is the simple path
    assert {r["path"] for r in results if r["impl"] == "contrastkit"} == {"simple"}

    markdown = (tmp_path / "losses-cpu.md").read_text()
    assert "--in-process" in markdown and "torch" in markdown
    table = _table_rows(markdown)
    assert [(row[0], row[3]) for row in table] == expected
    for row, r in zip(table, results, strict=True):
        assert row[1:3] == ["64", "8"]
        if "time_s" in r:
            assert float(row[4]) > 0 and float(row[5]) > 0 and float(row[6]) >= 0
    # rows are printed as they are measured
    printed = capsys.readouterr().out
    assert all(f"| {loss} | 64 | 8 | {impl} |" in printed for loss, impl in expected)
    assert (tmp_path / "losses-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cases_run_in_a_fresh_process(bench, tmp_path):
    argv = ["--sizes", "64", "--dims", "8", "--losses", "ntxent", "--impls", "reference"]
    bench.main([*argv, "--repeats", "1", "--out", str(tmp_path)])
    document = json.loads((tmp_path / "losses-cpu.json").read_text())
    [r] = document["results"]
    assert not document["settings"]["in_process"]
    assert (r["loss"], r["impl"], r["n"], r["d"]) == ("ntxent", "reference", 64, 8)
    assert "error" not in r and r["time_s"] > 0 and r["peak_mb"] >= 0, r
    assert "fresh process" in (tmp_path / "losses-cpu.md").read_text()


def test_cases_over_the_memory_budget_are_skipped(bench, tmp_path):
    argv = ["--sizes", "4096", "--dims", "8", "--losses", "supcon", "batch_all"]
    bench.main([*argv, "--memory-budget-gb", "0.01", "--in-process", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "losses-cpu.json").read_text())["results"]
    assert len(results) == 6
    for r in results:
        assert r["skipped"].startswith("skipped: needs about") or "not installed" in r["skipped"]
        assert "time_s" not in r
    table = _table_rows((tmp_path / "losses-cpu.md").read_text())
    assert all(row[4].startswith("skipped") and row[5:] == ["", ""] for row in table)
    # the estimates that decide the full grid: the tiled paths fit at every N, the N x N
    # references not at N = 65536, pytorch-metric-learning's N³ NT-Xent not at N = 1024
    budget = 16e9
    for loss in bench.LOSSES:
        assert bench.estimate_bytes(loss, "contrastkit", 65536, 512) < budget
        assert bench.estimate_bytes(loss, "reference", 65536, 128) > budget
        assert bench.estimate_bytes(loss, "reference", 4096, 512) < budget
    assert bench.estimate_bytes("infonce", "pml", 1024, 128) > budget
    assert bench.estimate_bytes("batch_all", "reference", 16384, 128) > budget
    assert bench.estimate_bytes("infonce", "reference", 16384, 512) < budget


@pytest.mark.parametrize(
    "argv",
    [["--sizes", "6"], ["--sizes", "30"], ["--repeats", "0"], ["--device", "tpu"]],
)
def test_bad_options_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
