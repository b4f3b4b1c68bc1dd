"""The retrieval benchmark script runs end to end on a tiny grid and writes what it promises.

Not a benchmark itself: N = 300 and 600, D = 8, one repeat, only to check that every
implementation runs through the script, agrees with the others where it should, and
lands in its Markdown table and JSON. faiss and pytorch-metric-learning rows say that
they were skipped where those packages are not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval.py"
SMALL = ["--sizes", "300", "600", "--dim", "8", "--classes", "10", "--repeats", "1"]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_retrieval", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[:2] == [
        "| N | implementation | median s | CPU s | runs | peak MB | P@1 | R@10 | MAP@R "
        "| vs top-k |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_every_implementation_in_process(bench, tmp_path, capsys):
    bench.main([*SMALL, "--old-max", "300", "--in-process", "--out", str(tmp_path)])
    document = json.loads((tmp_path / "retrieval-cpu.json").read_text())
    rows = document["results"]
    order = ["torch", "old", "faiss", "pml"]
    assert [(r["n"], r["impl"]) for r in rows] == [(n, i) for n in (300, 600) for i in order]
    installed = {
        "faiss": document["machine"]["faiss"] is not None,
        "pml": document["machine"]["pytorch_metric_learning"] is not None
        and document["machine"]["faiss"] is not None,
    }
    by = {(r["n"], r["impl"]): r for r in rows}
    for n in (300, 600):
        torch_row = by[n, "torch"]
        assert torch_row["time_s"] > 0 and torch_row["peak_mb"] >= 0
        assert set(torch_row["values"]) == {
            "precision_at_1",
            "recall_at_1",
            "recall_at_5",
            "recall_at_10",
            "map_at_r",
        }
        assert 0 < torch_row["values"]["map_at_r"] < 1
        for impl in ("faiss", "pml"):
            row = by[n, impl]
            if not installed[impl]:
                assert row["skipped"].startswith("skipped:") and "time_s" not in row
                continue
            assert "error" not in row, row
            assert row["agreement"] == "identical" or row["agreement"].startswith("max abs")
            for key, value in row["values"].items():
                assert value == pytest.approx(torch_row["values"][key], abs=0.02), (impl, key)
    # the old full sort: the same values, bit for bit, then an estimate past --old-max
    assert by[300, "old"]["values"] == by[300, "torch"]["values"]
    assert by[300, "old"]["agreement"] == "identical"
    assert by[600, "old"]["skipped"].startswith("skipped: about")
    assert "(N² log N from N = 300)" in by[600, "old"]["skipped"]

    markdown = (tmp_path / "retrieval-cpu.md").read_text()
    assert "--in-process" in markdown and "--old-max" in markdown
    table = _table_rows(markdown)
    assert [(row[0], row[1]) for row in table] == [
        (f"{r['n']:,}", bench.DESCRIPTIONS[r["impl"]]) for r in rows
    ]
    for row, r in zip(table, rows, strict=True):
        if "time_s" in r:
            assert float(row[2]) > 0 and float(row[3]) > 0 and row[4] == "1"
            assert float(row[5]) >= 0
            assert float(row[6]) == pytest.approx(r["values"]["precision_at_1"], abs=1e-4)
        else:
            assert row[2].startswith("skipped") and row[3:] == [""] * 7
    printed = capsys.readouterr().out
    assert all(f"| {r['n']:,} | {bench.DESCRIPTIONS[r['impl']]} |" in printed for r in rows)


def test_cases_run_in_a_fresh_process(bench, tmp_path):
    argv = ["--sizes", "300", "--dim", "8", "--classes", "10", "--impls", "torch", "old"]
    bench.main([*argv, "--repeats", "2", "--threads", "1", "--out", str(tmp_path)])
    document = json.loads((tmp_path / "retrieval-cpu.json").read_text())
    torch_row, old_row = document["results"]
    assert not document["settings"]["in_process"]
    for row in (torch_row, old_row):
        assert "error" not in row, row
        assert len(row["times_s"]) == 2 and row["time_s"] > 0 and row["peak_mb"] >= 0
        assert row["cpu_s"] > 0
    assert old_row["values"] == torch_row["values"] and old_row["agreement"] == "identical"
    markdown = (tmp_path / "retrieval-cpu.md").read_text()
    assert "fresh process" in markdown and "--threads" in markdown


@pytest.mark.parametrize(
    "argv",
    [
        ["--sizes", "10"],  # fewer than two samples per class
        ["--classes", "0"],
        ["--dim", "0"],
        ["--repeats", "0"],
        ["--threads", "0"],
        ["--impls", "numpy"],
    ],
)
def test_bad_options_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
