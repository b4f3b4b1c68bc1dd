"""``contrastkit train`` on an image folder, eager or lazy: peak memory against N.

The companion of ``lazy_images.py`` (which reads folders without training): this script
runs the command itself, ``python -m contrastkit train --data FOLDER`` with
``--image-loading eager``, ``lazy`` (``--workers 0``) and ``lazy`` with ``--workers K``,
on generated folders of N images (default 2,000 and 8,000; the folders of
``lazy_images.py``: 10 classes of seeded RGB PNGs, ``--stored`` pixels a side), each
case in a fresh process, and records:

* **train process MB**: the peak resident memory (``ru_maxrss`` of the ``contrastkit``
  process, from ``wait4``): everything it held at its peak, torch's libraries included;
* **total PSS MB**: the largest sum of the proportional set sizes (``Pss`` of
  ``/proc/PID/smaps_rollup``, shared pages divided among the processes sharing them) of
  the process and its DataLoader workers, sampled every 0.05 s (it can miss a short
  peak);
* **seconds**: the command's wall time (data, training, evaluation, report), on a
  machine whose load is recorded;
* **test precision@1** and the final training loss, which must be the same in every
  mode (a lazy run is the eager run, bit for bit).

The run is short (``--epochs 1 --steps-per-epoch 20`` by default): training draws the
same batches whatever N is, while the data (eager: every image decoded; lazy: the file
list) and the evaluation (every image embedded, a batch at a time) grow with N.

Usage::

    python benchmarks/lazy_train.py                       # N = 2,000 and 8,000
    python benchmarks/lazy_train.py --sizes 500 1000 --workers 2 --data /tmp/folders

It writes ``lazy-train.md`` and ``lazy-train.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine
from lazy_images import load, make_folder, make_pool, proc_kb

SIZES = (2000, 8000)
SAMPLE_EVERY_S = 0.05


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (its DataLoader workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with (
                    contextlib.suppress(OSError),
                    open(f"/proc/{current}/task/{task}/children") as f,
                ):
                    todo += [int(p) for p in f.read().split()]
    return found


def run_train(mode: str, folder: Path, run: Path, args: argparse.Namespace) -> dict:
    """One ``contrastkit train`` in a fresh process; its memory, time and result."""
    loading, workers = ("eager", 0) if mode == "eager" else ("lazy", int(mode.split("-")[1]))
    command = [sys.executable, "-m", "contrastkit", "train", "--data", str(folder)]
    command += ["--image-size", str(args.image_size), "--image-loading", loading]
    command += ["--workers", str(workers), "--epochs", str(args.epochs)]
    command += ["--steps-per-epoch", str(args.steps), "--batch-size", str(args.batch_size)]
    command += ["--quiet", "-o", str(run)]
    environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = load()
    start = time.perf_counter()
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would block
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=errors, env=environment, text=True
    )
    peak = {"pss_kb": 0, "processes": 1, "trained_kb": 0, "trained_pss_kb": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_EVERY_S):
            pids = descendants(process.pid)
            total = sum(proc_kb(pid, "Pss", "smaps_rollup") or 0 for pid in pids)
            peak["pss_kb"] = max(peak["pss_kb"], total)
            peak["processes"] = max(peak["processes"], len(pids))
            if not peak["trained_kb"]:
                peak["trained_pss_kb"] = peak["pss_kb"]
                if (run / "model.safetensors").exists():  # trained: evaluation starts
                    peak["trained_kb"] = proc_kb(process.pid, "VmHWM") or 0

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    with errors:
        errors.seek(0)
        err = errors.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    result = {"mode": mode, "seconds": seconds, "load_before": before}
    result["load_after"] = load()
    if process.returncode != 0:
        return result | {"error": (err.strip().splitlines() or ["?"])[-1][:200]}
    metrics = json.loads((run / "metrics.json").read_text())
    return result | {
        "train_process_mb": usage.ru_maxrss / 1024,
        "until_trained_mb": peak["trained_kb"] / 1024,
        "until_trained_pss_mb": peak["trained_pss_kb"] / 1024,
        "total_pss_mb": peak["pss_kb"] / 1024,
        "processes": peak["processes"],
        "precision_at_1": metrics["test"].get("precision_at_1"),  # None: not measurable
        "train_loss": metrics["history"][-1]["train_loss"],
        "source": metrics["data"]["source"],
    }


HEADER = (
    "| N | mode | until trained MB | until trained PSS MB | train process MB "
    "| total PSS MB | processes | seconds "
    "| test precision@1 | last train loss | load before → after |"
)


def _value(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def row(n: int, r: dict) -> str:
    if "error" in r:
        return f"| {n:,} | {r['mode']} | failed: {r['error']} |" + " |" * 8
    loads = f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}" if r["load_before"] else ""
    return (
        f"| {n:,} | {r['mode']} | {r['until_trained_mb']:,.0f} "
        f"| {r['until_trained_pss_mb']:,.0f} "
        f"| {r['train_process_mb']:,.0f} | {r['total_pss_mb']:,.0f} "
        f"| {r['processes']} | {r['seconds']:.1f} | {_value(r['precision_at_1'])} "
        f"| {r['train_loss']:.6f} | {loads} |"
    )


def markdown(rows: list[dict], info: dict, settings: dict) -> str:
    modes = settings["modes"]
    growth = []
    for mode in modes:
        for key, what in (("until_trained_mb", "until trained"), ("train_process_mb", "whole run")):
            points = [(r["n"], r[mode][key]) for r in rows if "error" not in r[mode]]
            if len(points) >= 2:
                (n1, m1), (n2, m2) = points[0], points[-1]
                growth.append(
                    f"- {mode}, {what}: {m1:,.0f} → {m2:,.0f} MB from {n1:,} to {n2:,} "
                    f"images, {1000 * (m2 - m1) / (n2 - n1):+.2f} MB per 1,000 images"
                )
    same = []
    for r in rows:
        results = [
            (r[m]["precision_at_1"], r[m]["train_loss"]) for m in modes if "error" not in r[m]
        ]
        same.append(
            f"- N = {r['n']:,}: "
            + ("the same in every mode." if len(set(results)) == 1 else "DIFFER.")
        )
    lines = [
        "# `contrastkit train` on an image folder, eager or lazy: peak memory against N",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores"
        + (f", {info['memory_gib']} GiB memory" if "memory_gib" in info else "")
        + "; OMP_NUM_THREADS=1.",
        f"- Software: Python {info['python']}, torch {info['torch']}.",
        f"- Date: {settings['date']}; command: `{settings['command']}`.",
        *([f"- Note: {settings['note']}"] if settings.get("note") else []),
        f"- Folders: N RGB PNGs of {settings['stored']}×{settings['stored']} pixels in 10 "
        f"classes, read at --image-size {settings['image_size']}. Each case: `python -m "
        f"contrastkit train --data FOLDER --image-size {settings['image_size']} "
        f"--image-loading eager|lazy --workers K --epochs {settings['epochs']} "
        f"--steps-per-epoch {settings['steps']} --batch-size {settings['batch_size']} "
        "--quiet`, the default loss (contrastive pairs) and network, in a fresh process.",
        "- **until trained MB**: the peak resident memory (`VmHWM`) of the `contrastkit` "
        "process when the trained weights appear (reading the data, the standardization, "
        "training; sampled every 0.05 s, so up to 0.05 s of the evaluation too); **until "
        "trained PSS MB**: the largest total PSS (below) until then. "
        "**train process MB**: the peak resident memory of the `contrastkit` process over "
        "the whole command (`ru_maxrss`), evaluation and report included (the test "
        "split's all-pairs distances grow with N in every mode), torch's libraries "
        "included; **total PSS MB**: the largest sum of "
        "the proportional set sizes of the process and its DataLoader workers, sampled "
        "every 0.05 s; **processes**: the most seen at once. **seconds**: the whole "
        "command (reading, training, evaluating every image, the report); the times "
        "depend on the machine's load, the memory does not. MB are MiB.",
        "",
        HEADER,
        "| ---: | --- |" + " ---: |" * 8 + " --- |",
        *(row(r["n"], r[m]) for r in rows for m in modes),
        "",
        "Growth with N:",
        "",
        *growth,
        "",
        "Check: test precision@1 and the last training loss of each N:",
        "",
        *same,
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help=f"images N (default {SIZES})")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="lazy workers > 0")
    parser.add_argument("--image-size", type=int, default=32, help="pixels read (default 32)")
    parser.add_argument("--stored", type=int, default=32, help="pixels stored (default 32)")
    parser.add_argument("--epochs", type=int, default=1, help="default 1")
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch (default 20)")
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    parser.add_argument("--data", help="folder for the image folders (kept; default: temp)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results")
    parser.add_argument("--note", help="a line for the results")
    args = parser.parse_args(argv)
    args.sizes = sorted(args.sizes or SIZES)
    if min(args.sizes) < 40:
        parser.error(f"--sizes must be at least 40, got {min(args.sizes)}")
    if min(args.workers) < 1:
        parser.error("--workers lists worker counts above 0 (lazy with 0 workers always runs)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/lazy_train.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    modes = ["eager", "lazy-0", *(f"lazy-{k}" for k in args.workers)]
    temporary = tempfile.mkdtemp(prefix="lazy-train-")
    root = Path(args.data) if args.data else Path(temporary)
    try:
        make_pool(root / "pool", max(args.sizes), args.stored)
        info = machine()
        settings = {
            "command": command.strip(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "sizes": args.sizes,
            "modes": modes,
            "image_size": args.image_size,
            "stored": args.stored,
            "epochs": args.epochs,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "note": args.note,
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / "lazy-train"
        print(HEADER, flush=True)
        rows: list[dict] = []
        for n in args.sizes:
            folder = make_folder(root, root / "pool", n)
            found: dict = {"n": n}
            for mode in modes:
                run = Path(temporary) / f"run-{n}-{mode}"
                found[mode] = run_train(mode, folder, run, args) | {"n": n}
                shutil.rmtree(run, ignore_errors=True)
                print(row(n, found[mode]), flush=True)
            rows.append(found)
            document = {"machine": info, "settings": settings, "results": rows}
            stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
            stem.with_suffix(".md").write_text(markdown(rows, info, settings))
        print(f"wrote {stem}.md and .json", flush=True)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
