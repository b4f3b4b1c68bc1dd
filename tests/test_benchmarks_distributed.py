"""The multi-process benchmark script: its plan's arithmetic, one rank's step, the whole run.

Not a benchmark itself: G = 48, D = 8, one timed step, only to check that a step with
``gather=True`` runs through the script's measurement on 2 and 3 processes (the test
session's gloo groups) and gives one process's step on the whole batch, that the plan's
bytes are those of ring collectives counted chunk by chunk, and that a run under torchrun
writes the table and the JSON it promises.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from process_group import ProcessGroups

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "distributed.py"
_MODULE: ModuleType | None = None


def _bench() -> ModuleType:
    """The script as a module (loaded once per process: the test's and each rank's)."""
    global _MODULE
    if _MODULE is None:
        spec = importlib.util.spec_from_file_location("benchmark_distributed", SCRIPT)
        assert spec is not None and spec.loader is not None
        _MODULE = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_MODULE)
    return _MODULE


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _bench()


# --------------------------------------------------------------------------------------
# the plan


def _ring_all_gather_received(world: int, chunk: int) -> int:
    """Bytes process 0 receives in a ring all-gather of one ``chunk`` per process."""
    held, received = {0}, 0
    for step in range(world - 1):  # at each step, the chunk its left neighbour got last
        held.add((-1 - step) % world)
        received += chunk
    assert held == set(range(world))
    return received


def _ring_all_reduce_received(world: int, buffer: int) -> int:
    """Bytes process 0 receives in a ring all-reduce: reduce-scatter, then all-gather."""
    piece, received = buffer // world, 0
    for _ in range(world - 1):  # reduce-scatter: a piece in, to add to its own
        received += piece
    for _ in range(world - 1):  # all-gather of the summed pieces
        received += piece
    return received


@pytest.mark.parametrize("world", [1, 2, 8, 64])
def test_plan_bytes_are_those_of_ring_collectives(bench, world):
    b, d = 256, 32
    [row] = bench.plan(worlds=(world,), batch=b, dims=(d,), bandwidths_gbs=(10.0,))
    n = world * b
    assert (row["w"], row["b"], row["d"], row["n"]) == (world, b, d, n)
    assert row["gathered_bytes"] == n * d * 4
    assert row["forward_bytes"] == _ring_all_gather_received(world, b * d * 4)
    assert row["backward_bytes"] == _ring_all_reduce_received(world, n * d * 4)
    assert row["moved_bytes"] == row["forward_bytes"] + row["backward_bytes"]
    assert row["moved_bytes"] == 3 * (world - 1) * b * d * 4
    assert row["seconds"] == {10.0: pytest.approx(row["moved_bytes"] / 10e9)}
    assert row["flops"] == 6 * b * n * d
    tile = min(b * n, max(bench.TILE_ELEMENTS, n))
    copies = bench.PLAN_COPIES * n * d * 4
    assert row["memory_bytes"] == copies + bench.PLAN_TILE_BUFFERS * tile * 4


def test_plan_table_covers_every_world_and_dim(bench, capsys):
    bench.main(["--plan", "--plan-worlds", "8", "1024", "--plan-dims", "256", "768"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| D | W | N = W·B | gathered N×D | received (= sent) |")
    assert "at 25 GB/s" in lines[0] and "at 400 GB/s" in lines[0]
    body = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert [(row[0], row[1], row[2]) for row in body] == [
        ("256", "8", "2,048"),
        ("256", "1024", "262,144"),
        ("768", "8", "2,048"),
        ("768", "1024", "262,144"),
    ]
    # W = 1024, B = 256, D = 768: 3 · 1023 · 256 · 768 · 4 bytes = 2.41 GB, 96.5 ms at 25 GB/s
    assert body[3][4] == "2.41 GB" and body[3][5] == "96.5 ms"


# --------------------------------------------------------------------------------------
# one case, in the session's process groups


def _measure_in_rank(loss: str, g: int, d: int) -> dict:
    return _bench().measure(loss, g, d, device="cpu", repeats=2, in_dim=6, hidden=10)


def _one_process_loss(bench: ModuleType, loss: str, g: int, d: int) -> float:
    """The first step's loss computed directly: the same batch and weights, no gather."""
    import contrastkit.functional as F

    x, labels = bench.make_batch(loss, g, 0, 1, 6, "cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, d))
    z = model(x)
    half = z.shape[0] // 2
    values = {
        "supcon": lambda: F.supcon(z, labels, temperature=0.1),
        "clip": lambda: F.info_nce(z[:half], z[half:], temperature=0.07, symmetric=True),
        "batch_all": lambda: F.batch_all_triplet_loss(z, labels, margin=0.2),
    }
    return float(values[loss]().detach())


@pytest.mark.parametrize("loss", ["supcon", "clip", "batch_all"])
def test_a_step_on_w_processes_is_one_process_step_on_the_whole_batch(
    bench, process_groups: ProcessGroups, loss
):
    g, d = 48, 8
    by_world = {w: process_groups(w).run(_measure_in_rank, loss, g, d) for w in (2, 3)}
    expected = _one_process_loss(bench, loss, g, d)
    for w, results in by_world.items():
        assert all(r == results[0] for r in results)  # every rank returns every rank's result
        r = results[0]
        assert (r["w"], r["g"], r["b"], r["d"]) == (w, g, g // w, d)
        assert r["first_loss"] == pytest.approx(expected, rel=1e-5)
        assert r["step_s"] == min(r["steps_s"]) and len(r["steps_s"]) == 2
        parts = ("encoder_s", "loss_s", "collectives_s", "grad_sync_s")
        assert all(r[p] > 0 for p in parts)
        assert r["collectives_s"] <= r["loss_s"]
        assert r["collectives_share"] == pytest.approx(r["collectives_s"] / r["step_s"])
        assert len(r["step_peak_mb_per_rank"]) == w and r["step_peak_mb"] >= 0
        assert r["process_peak_mb"] > r["step_peak_mb"]
        # sizes, rows (q and k for CLIP) and labels gathered; counts and gradients reduced
        gathers, reduces = {"clip": (3, 3)}.get(loss, (3, 2))
        assert r["collective_calls"] == {"all_gather": gathers, "all_reduce": reduces}
        rows = 2 * g * d * 4 if loss == "clip" else g * d * 4 + g * 8  # float32, int64 labels
        backward = 2 * g * d * 4 if loss == "clip" else g * d * 4
        assert r["collective_bytes"] == rows + backward + w * 8 + 2 * 8
    # the same update of the weights on 2 and 3 processes
    norms = [by_world[w][0]["first_update_norm"] for w in (2, 3)]
    assert norms[0] > 0 and norms[0] == pytest.approx(norms[1], rel=1e-5)


# --------------------------------------------------------------------------------------
# the whole run, under torchrun


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0] == _bench().HEADER
    assert lines[1].startswith("| ---: |")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.slow
def test_a_run_under_torchrun_writes_its_table_and_json(bench, tmp_path, capsys):
    argv = ["--worlds", "1", "2", "--sizes", "32", "--dims", "8", "--repeats", "1"]
    bench.main([*argv, "--in-dim", "6", "--hidden", "10", "--out", str(tmp_path)])
    document = json.loads((tmp_path / "distributed-cpu.json").read_text())
    results = document["results"]
    assert [(r["w"], r["g"], r["d"]) for r in results] == [(1, 32, 8), (2, 32, 8)]
    for r in results:
        assert "error" not in r, r
        assert r["backend"] == "gloo" and r["threads"] == 1
        assert r["step_s"] > 0 and r["process_peak_mb"] > 0
    assert results[0]["collective_bytes"] == 0  # W = 1: gather=True exchanges nothing
    assert results[1]["collective_bytes"] > 0
    assert results[0]["first_loss"] == pytest.approx(results[1]["first_loss"], rel=1e-5)
    assert document["settings"]["loss"] == "supcon" and document["settings"]["load_before"]

    markdown = (tmp_path / "distributed-cpu.md").read_text()
    assert "--worlds 1 2" in markdown and "load average" in markdown
    table = _table_rows(markdown)
    assert [row[:4] for row in table] == [["1", "32", "32", "8"], ["2", "32", "16", "8"]]
    assert all(float(row[4]) > 0 for row in table)
    assert "G = 32, D = 8, W = 1, 2: first-step loss within" in markdown
    printed = capsys.readouterr().out
    assert "| 2 | 32 | 16 | 8 |" in printed


def test_a_failed_case_becomes_a_row(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "run_case", lambda *args: {"error": "RuntimeError: boom"})
    argv = ["--worlds", "2", "--sizes", "32", "--dims", "8", "--note", "on a test machine"]
    bench.main([*argv, "--out", str(tmp_path)])
    markdown = (tmp_path / "distributed-cpu.md").read_text()
    [row] = _table_rows(markdown)
    assert row[:5] == ["2", "32", "16", "8", "failed: RuntimeError: boom"]
    assert "- Note: on a test machine" in markdown


def test_failure_lines_name_the_error_not_the_launcher(bench):
    stderr = (
        "Traceback (most recent call last):\n"
        "RuntimeError: the rank's own error\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
        "=====\n"
    )
    assert bench._failure(stderr, 1) == "RuntimeError: the rank's own error"
    assert bench._failure("", -9) == "killed by signal 9 (out of memory?)"
    assert bench._failure("last words\n", 3) == "last words"


def test_sizes_split_over_every_world(bench):
    args = bench.parse_args(["--sizes", "36", "--worlds", "1", "2", "3"])
    assert args.sizes == [36] and args.worlds == [1, 2, 3]  # 36, 18 and 12 rows: even


@pytest.mark.parametrize(
    "argv",
    [
        ["--sizes", "30"],  # not a multiple of 4
        ["--sizes", "12", "--worlds", "4"],  # 3 rows per process: odd
        ["--sizes", "32", "--worlds", "3"],  # not divisible
        ["--worlds", "0"],
        ["--repeats", "0"],
        ["--threads", "0"],
        ["--device", "tpu"],
        ["--plan-bandwidths", "0"],
    ],
)
def test_bad_options_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_the_plan_tiles_are_contrastkits(bench):
    from contrastkit import _tiled

    assert bench.TILE_ELEMENTS == _tiled.TILE_ELEMENTS
