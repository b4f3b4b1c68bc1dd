"""A training step on a batch of N images, with and without gradient caching.

:class:`~contrastkit.training.CachedObjective` runs the encoder in micro-batches and
keeps the loss of the whole batch. This script measures what it costs (time per step)
and what it saves (peak memory), against the same step without it, for
``N = 1024 … 65536``.

**The step**, the same network in both: ``ConvEncoder(3, embedding_dim=128,
channels=(32, 64), norm="group")`` (GroupNorm: batch normalization couples the rows of a
batch and the cache refuses it), ``LabelObjective(SupConLoss(temperature=0.1))``, SGD
(``lr=0.01``, momentum 0.9). One step is ``objective(model, (x, y))``,
``loss.backward()``, ``optimizer.step()`` on random ``3 × 32 × 32`` images, uniform in
``[0, 1)``, with ``CLASSES`` balanced labels (``arange(N) % CLASSES``). **uncached**
calls the objective as it is; **cached** wraps it in ``CachedObjective(...,
micro_batch=256)``.

What is measured, for each N and each of the two, in a fresh Python process (so that
its peak memory is its own) with ``--threads`` torch threads (default 1, steadier on a
shared machine):

1. **Peak memory**: the process builds the model and the optimizer, then the high-water
   mark of its resident memory (``VmHWM``) is reset (``/proc/self/clear_refs``; where
   that is not available, ``getrusage``'s peak so far stands in) and the batch is made
   and the first step taken. **peak MB** is the rise of the high-water mark over the
   level before the batch existed: it counts the batch itself (``N × 3 × 32 × 32``
   float32 values, 12 KiB per image) and everything the step holds. **process peak MB**
   is the process's whole high-water mark (Python, torch and the model included). MB
   here are MiB. glibc's allocator keeps some freed memory, so resident memory can
   exceed the live tensors; the settings are left as a user gets them.
2. **Time per step**: that first step is the warm-up; then the median of ``repeats``
   further steps on the same batch (5 up to N = 4096, 3 up to 16384, 2 above; or
   ``--repeats``), in wall time and in the process's CPU time (user + system, from
   ``getrusage``), which leaves out the time spent waiting for a core on a busy
   machine.
3. **Check**: the first step's loss and the norm of its parameter update, which must
   agree between the two (the cache is exact; they differ by float32 rounding).

At each N the two run one after the other, so that a change in the machine's load
touches both alike; with ``--rounds 2`` they run again in the other order (ABBA) and
each time is the median over rounds; ``--merge`` adds rounds to the results already in
``--out`` (the sizes run again). The load average is recorded around each process.
The uncached step stops at the first N whose predicted peak exceeds
``--memory-budget-gb`` (default 16): the prediction extends the growth per image
measured between the two largest sizes that ran. The estimate for every larger N, the
last included, is written beside the skipped row.

Usage::

    python benchmarks/gradient_cache.py                  # N = 1024, 2048, ..., 65536
    python benchmarks/gradient_cache.py --quick          # N = 1024 and 2048, 2 repeats
    python benchmarks/gradient_cache.py --sizes 4096 16384 --rounds 2 --threads 2
    python benchmarks/gradient_cache.py --merge --sizes 16384   # one more round at 16384
    python benchmarks/gradient_cache.py --train --epochs 1 30 --seeds 0 1 2

It writes ``gradient-cache-cpu.md`` (a Markdown table) and ``gradient-cache-cpu.json``
(every number) into ``--out``, after each N, so that an interrupted run keeps what it
measured.

``--train`` runs the second comparison instead (see :func:`train_digits`): supervised
contrastive training on scikit-learn's digits with a large batch by micro-batches
against a small batch, written to ``gradient-cache-train.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine, peak_rss_bytes, run_child, status_kb

SIZES = tuple(1024 * 2**i for i in range(7))  # 1024 ... 65536
QUICK_SIZES = (1024, 2048)
MODES = ("uncached", "cached")
MICRO_BATCH = 256
CLASSES = 64
EMBEDDING_DIM = 128
CHANNELS = (32, 64)
IMAGE = (3, 32, 32)
TEMPERATURE = 0.1
MIB = 2**20


def default_repeats(n: int) -> int:
    """Timed steps after the warm-up: fewer as a step grows longer."""
    return 5 if n <= 4096 else 3 if n <= 16384 else 2


# --------------------------------------------------------------------------------------
# one process: one mode at one N


def measure(mode: str, n: int, *, micro_batch: int, repeats: int) -> dict:
    """Peak memory of the first step and the median time of ``repeats`` more."""
    import torch

    from contrastkit import SupConLoss
    from contrastkit.models import ConvEncoder
    from contrastkit.training import CachedObjective, LabelObjective

    torch.manual_seed(0)
    model = ConvEncoder(IMAGE[0], embedding_dim=EMBEDDING_DIM, channels=CHANNELS, norm="group")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    objective: Any = LabelObjective(SupConLoss(temperature=TEMPERATURE))
    if mode == "cached":
        objective = CachedObjective(objective, micro_batch=micro_batch)
    batch: list = []

    def make_batch() -> None:
        generator = torch.Generator().manual_seed(1)
        batch.append(torch.rand(n, *IMAGE, generator=generator))
        batch.append(torch.arange(n) % CLASSES)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = objective(model, (batch[0], batch[1]))["loss"]
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def first() -> tuple[float, float, float]:
        make_batch()
        before = [p.detach().clone() for p in model.parameters()]
        start = time.perf_counter()
        loss = step()
        seconds = time.perf_counter() - start
        update = torch.sqrt(
            sum(
                ((p.detach() - b) ** 2).sum()
                for p, b in zip(model.parameters(), before, strict=True)
            )
        )
        return loss, float(update), seconds

    def cpu() -> tuple[float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime, usage.ru_stime

    baseline = status_kb("VmRSS")
    peak, (loss, update, first_s) = peak_rss_bytes(first)
    times, cpu_times, sys_times = [], [], []
    for _ in range(repeats):
        start, (cpu_start, sys_start) = time.perf_counter(), cpu()
        step()
        (cpu_end, sys_end), end = cpu(), time.perf_counter()
        times.append(end - start)
        cpu_times.append(cpu_end - cpu_start)
        sys_times.append(sys_end - sys_start)
    return {
        "step_s": statistics.median(times),
        "steps_s": times,
        "cpu_s": statistics.median(cpu_times),
        "cpu_steps_s": cpu_times,
        "sys_s": statistics.median(sys_times),
        "first_step_s": first_s,
        "peak_mb": peak / MIB,
        "process_peak_mb": (status_kb("VmHWM") or 0) / 1024,
        "baseline_mb": (baseline or 0) / 1024,
        "batch_mb": n * IMAGE[0] * IMAGE[1] * IMAGE[2] * 4 / MIB,
        "first_loss": loss,
        "update_norm": update,
        "threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------
# the grid


def load() -> list[float] | None:
    """The load averages over 1, 5 and 15 minutes; None where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_case(mode: str, n: int, args: argparse.Namespace, repeats: int) -> dict:
    """One mode at one N in a fresh process, with the load average around it."""
    command = [sys.executable, os.path.abspath(__file__), "--child", mode, str(n)]
    command += ["--repeats", str(repeats), "--micro-batch", str(args.micro_batch)]
    command += ["--threads", str(args.threads)]
    before = load()
    start = time.perf_counter()
    result = run_child(command)
    return result | {
        "load_before": before,
        "load_after": load(),
        "wall_s": time.perf_counter() - start,
    }


def predict_uncached_bytes(rows: list[dict], n: int) -> float | None:
    """The uncached peak at ``n``, extended linearly from the two largest measured N."""
    done = sorted((r["n"], r["uncached"]["peak_mb"]) for r in rows if "step_s" in r["uncached"])
    if len(done) < 2:
        return None
    (n1, p1), (n2, p2) = done[-2], done[-1]
    per_image = (p2 - p1) / (n2 - n1)
    return (p2 + per_image * (n - n2)) * MIB


def combine(results: list[dict]) -> dict:
    """One mode's rounds at one N: each time the median over rounds, memory the largest."""
    good = [r for r in results if "step_s" in r]
    if not good:
        return results[0] | {"rounds": results}
    out = dict(good[0])
    out["step_s"] = statistics.median(r["step_s"] for r in good)
    with_cpu = [r for r in good if "cpu_s" in r]
    for key in ("cpu_s", "sys_s"):
        out.pop(key, None)
        if with_cpu:
            out[key] = statistics.median(r[key] for r in with_cpu)
    out["peak_mb"] = max(r["peak_mb"] for r in good)
    out["process_peak_mb"] = max(r["process_peak_mb"] for r in good)
    out["rounds"] = results
    return out


def measure_size(
    n: int, rows: list[dict], args: argparse.Namespace, earlier: dict | None = None
) -> dict:
    """Both modes at one N, interleaved over ``args.rounds`` (ABBA order).

    ``rows`` are the smaller sizes already measured (for the uncached prediction);
    ``earlier`` a row of this N from an earlier run (``--merge``), whose rounds the new
    ones join, continuing the ABBA order.
    """
    repeats = args.repeats or default_repeats(n)
    budget = args.memory_budget_gb * 2**30
    row: dict = {"n": n, "repeats": repeats}
    predicted = predict_uncached_bytes(rows, n)
    if predicted is not None:
        row["uncached_predicted_mb"] = predicted / MIB
    skip = any("skipped" in r["uncached"] for r in rows) or (
        predicted is not None and predicted > budget
    )
    modes = [m for m in MODES if not (skip and m == "uncached")]
    found: dict[str, list[dict]] = {
        m: list((earlier or {}).get(m, {}).get("rounds", [])) for m in modes
    }
    done = len(found[modes[0]])
    for i in range(done, done + (args.rounds if len(modes) == 2 else 1)):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            found[mode].append(run_case(mode, n, args, repeats))
    for mode in modes:
        row[mode] = combine(found[mode])
    if skip:
        why = f"predicted {predicted / 2**30:.1f} GiB" if predicted is not None else "skipped"
        row["uncached"] = {"skipped": f"{why} > {args.memory_budget_gb:g} GiB budget"}
    uncached, cached = row["uncached"], row["cached"]
    if "step_s" in uncached and "step_s" in cached:
        row["ratio"] = cached["step_s"] / uncached["step_s"]
        row["ratios"] = [
            c["step_s"] / u["step_s"]
            for u, c in zip(uncached["rounds"], cached["rounds"], strict=True)
            if "step_s" in u and "step_s" in c
        ]
        if "cpu_s" in uncached and "cpu_s" in cached:
            row["cpu_ratio"] = cached["cpu_s"] / uncached["cpu_s"]
        row["loss_rel_diff"] = abs(cached["first_loss"] - uncached["first_loss"]) / abs(
            uncached["first_loss"]
        )
        row["update_rel_diff"] = abs(cached["update_norm"] - uncached["update_norm"]) / abs(
            uncached["update_norm"]
        )
    return row


def _cell(result: dict, key: str, fmt: str) -> str:
    if "skipped" in result:
        return result["skipped"]
    if "error" in result:
        return f"failed: {result['error']}"
    return format(result[key], fmt)


HEADER = (
    "| N | uncached s/step | cached s/step | cached / uncached | uncached CPU s/step "
    "| cached CPU s/step | CPU cached / uncached | uncached peak MB | cached peak MB "
    "| uncached process peak MB | cached process peak MB | batch MB |"
)


def markdown_row(row: dict) -> str:
    u, c = row["uncached"], row["cached"]
    ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
    if len(row.get("ratios", [])) > 1:
        ratio += " (" + ", ".join(f"{r:.2f}" for r in row["ratios"]) + ")"
    peak_u = _cell(u, "peak_mb", ",.0f")
    if "skipped" in u and "uncached_predicted_mb" in row:
        peak_u = f"≈ {row['uncached_predicted_mb']:,.0f} (predicted)"
    cells = [
        f"{row['n']:,}",
        _cell(u, "step_s", ".3g"),
        _cell(c, "step_s", ".3g"),
        ratio,
        f"{u['cpu_s']:.3g}" if "cpu_s" in u else "",
        f"{c['cpu_s']:.3g}" if "cpu_s" in c else "",
        f"{row['cpu_ratio']:.2f}" if "cpu_ratio" in row else "",
        peak_u,
        _cell(c, "peak_mb", ",.0f"),
        "" if "skipped" in u else _cell(u, "process_peak_mb", ",.0f"),
        _cell(c, "process_peak_mb", ",.0f"),
        f"{row['n'] * 3 * 32 * 32 * 4 / MIB:,.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def check_lines(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        if "loss_rel_diff" in row:
            lines.append(
                f"- N = {row['n']:,}: first-step loss {row['uncached']['first_loss']:.6f} "
                f"uncached, {row['cached']['first_loss']:.6f} cached (relative difference "
                f"{row['loss_rel_diff']:.1e}); parameter update norm within "
                f"{row['update_rel_diff']:.1e}."
            )
    return lines


def markdown(rows: list[dict], info: dict, settings: dict) -> str:
    machine_line = (
        f"{info['cpu']}, {info['cores']} cores"
        + (f", {info['memory_gib']} GiB memory" if "memory_gib" in info else "")
        + f"; {settings['threads']} torch thread(s) in each process"
    )
    loads = [
        f"{r['n']:,}: "
        + "; ".join(
            f"{m} {x['load_before'][0]:.1f} → {x['load_after'][0]:.1f}"
            for m in MODES
            for x in r[m].get("rounds", [])
            if x.get("load_before") and x.get("load_after")
        )
        for r in rows
    ]
    lines = [
        "# A training step on N images: uncached against gradient caching",
        "",
        f"- Machine: {machine_line}.",
        f"- Software: Python {info['python']}, torch {info['torch']}.",
        f"- Date: {settings['date']}; command: `{settings['command']}`.",
        *([f"- Note: {settings['note']}"] if settings.get("note") else []),
        *(
            f"- Rounds added {m['date']} (N = {', '.join(f'{n:,}' for n in m['sizes'])}): "
            f"`{m['command']}`" + (f"; {m['note']}" if m.get("note") else "")
            for m in settings.get("merged", [])
        ),
        f"- Step: `ConvEncoder(3, embedding_dim={EMBEDDING_DIM}, channels={CHANNELS}, "
        f'norm="group")`, `LabelObjective(SupConLoss(temperature={TEMPERATURE}))`, '
        "backward, SGD step, on N random 3×32×32 images with "
        f"{CLASSES} balanced classes; **cached**: the same objective in "
        f"`CachedObjective(..., micro_batch={settings['micro_batch']})`.",
        "- **s/step**: median of the timed steps after a warm-up step (5 up to N = 4,096, "
        "3 up to 16,384, 2 above, unless `--repeats`), each mode in a fresh process"
        + "; where both run, the two alternate in ABBA order over the rounds, each "
        "time is the median over rounds and each round's ratio is in brackets. **CPU "
        "s/step**: the process's user + system CPU time per step, median of the same "
        "steps (from the rounds that recorded it): it leaves out the time spent waiting "
        "for a core, which a shared machine adds to the wall time.",
        "- **peak MB** (MiB): rise of the process's peak resident memory (VmHWM, reset "
        "just before) over its level with the model and optimizer built, while the batch "
        "is made and the first step taken: the batch (last column) is included. **process "
        "peak MB**: the process's whole VmHWM (Python and torch included). A skipped "
        "uncached row gives the peak predicted from the growth per image between the two "
        "largest sizes measured.",
        "- Load average (1 min) before → after each process, on "
        f"{info['cores']} cores: " + " · ".join(loads) + ".",
        "",
        HEADER,
        "|" + " ---: |" * (HEADER.count("|") - 1),
        *(markdown_row(r) for r in rows),
        "",
        "Checks (the cached step is the uncached one, up to float32 rounding):",
        "",
        *check_lines(rows),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help=f"batch sizes N (default {SIZES})")
    parser.add_argument("--micro-batch", type=int, default=MICRO_BATCH)
    parser.add_argument("--repeats", type=int, help="timed steps (default: 5, 3 or 2 by N)")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds where both run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--memory-budget-gb", type=float, default=16.0, help="GiB, uncached")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results")
    parser.add_argument("--note", help="a line for the results (what was measured, and where)")
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_SIZES}, 2 repeats")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add rounds to the results in --out (same threads): the sizes run again",
    )
    parser.add_argument("--train", action="store_true", help="the digits training comparison")
    parser.add_argument(
        "--epochs", type=int, nargs="+", default=[30], help="--train: epochs (default 30)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="--train: seeds (default 0 1 2)"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # mode N: JSON out
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or list(QUICK_SIZES)
        args.repeats = args.repeats or 2
    args.sizes = sorted(args.sizes or SIZES)
    for name in ("micro_batch", "rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
            )
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if min(args.sizes) < 2 * CLASSES:
        parser.error(f"--sizes must be at least {2 * CLASSES}, got {min(args.sizes)}")
    if min(args.epochs) < 1:
        parser.error(f"--epochs must be at least 1, got {min(args.epochs)}")
    if args.memory_budget_gb <= 0:
        parser.error(f"--memory-budget-gb must be positive, got {args.memory_budget_gb}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        mode, n = args.child
        result = measure(mode, int(n), micro_batch=args.micro_batch, repeats=args.repeats or 1)
        print(json.dumps(result))
        return
    command = "python benchmarks/gradient_cache.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    if args.train:
        run_training(args, command.strip())
        return

    info = machine()
    settings = {
        "command": command.strip(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "sizes": args.sizes,
        "micro_batch": args.micro_batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats or "5 up to N = 4096, 3 up to 16384, 2 above",
        "budget_gib": args.memory_budget_gb,
        "note": args.note,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "gradient-cache-cpu"
    rows: list[dict] = []
    if args.merge and stem.with_suffix(".json").exists():
        earlier = json.loads(stem.with_suffix(".json").read_text())
        if earlier["settings"]["threads"] != args.threads:
            raise SystemExit(
                f"--merge: {stem}.json was measured with {earlier['settings']['threads']} "
                f"thread(s), not {args.threads}"
            )
        rows = earlier["results"]
        merged = [*earlier["settings"].get("merged", []), settings]
        settings = earlier["settings"] | {"merged": merged}
    print(f"{info['cpu']}, torch {info['torch']}, {args.threads} thread(s)", flush=True)
    print(HEADER, flush=True)
    for n in args.sizes:
        before = next((r for r in rows if r["n"] == n), None)
        row = measure_size(n, [r for r in rows if r["n"] < n], args, before)
        rows = sorted([r for r in rows if r["n"] != n] + [row], key=lambda r: r["n"])
        print(markdown_row(row), flush=True)
        document = {"machine": info, "settings": settings, "results": rows}
        stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(rows, info, settings))
    print(f"wrote {stem}.md and .json", flush=True)


# --------------------------------------------------------------------------------------
# what the larger batch buys: supervised contrastive training on the digits

TRAIN_CLASSES = 10
"""The digits' classes: a class-balanced batch of B rows holds B / 10 of each."""
TRAIN_SETTINGS = (
    # name, batch, micro-batch (0: none), steps per epoch
    ("small batch", 250, 0, 64),
    ("large batch, equal samples", 1000, MICRO_BATCH, 16),
    ("large batch, equal steps", 1000, MICRO_BATCH, 64),
)
TRAIN_METRICS = (
    ("precision_at_1", "precision@1"),
    ("map_at_r", "MAP@R"),
    ("roc_auc", "ROC-AUC"),
    ("eer", "EER"),
    ("tar@far=0.01", "TAR@FAR=1%"),
)


@contextlib.contextmanager
def samples_per_class(k: int) -> Iterator[None]:
    """The command's supcon batches hold ``k`` samples of each class meanwhile.

    The command draws class-balanced batches of ``min(classes, B // 4)`` classes × 4
    samples (``contrastkit.app.build.LOSS_KINDS``): on the digits' 10 classes, 40 rows
    whatever ``--batch-size`` says. Here the 4 becomes ``k``, and nothing else changes.
    """
    from contrastkit.app import build

    saved = build.LOSS_KINDS["supcon"]
    build.LOSS_KINDS["supcon"] = dataclasses.replace(saved, samples_per_class=k)
    try:
        yield
    finally:
        build.LOSS_KINDS["supcon"] = saved


def train_digits(
    batch: int, micro_batch: int, steps: int, *, epochs: int, seed: int, folder: Path
) -> dict:
    """One run of the command's pipeline on the digits; its test metrics and times.

    ``contrastkit train --data digits --loss supcon --no-batch-norm --batch-size batch
    [--micro-batch micro_batch] --steps-per-epoch steps --epochs epochs --seed seed``,
    called as :func:`contrastkit.app.run.train_run`, with its class-balanced batches
    made of ``batch / 10`` samples of each of the 10 classes (:func:`samples_per_class`)
    so that a batch holds ``batch`` rows. Everything else is the command's: the split
    (70/15/15 per class), the MLP 64 → 512 → 256 → 128 → 32 without batch
    normalization, SupCon at temperature 0.1, AdamW with the one-cycle schedule (peak
    learning rate 0.003, the same for every batch size) and the evaluation on the test
    split.
    """
    from contrastkit.app.config import RunConfig
    from contrastkit.app.run import train_run

    config = RunConfig(
        data="digits",
        loss="supcon",
        batch_norm=False,
        batch_size=batch,
        micro_batch=micro_batch,
        steps_per_epoch=steps,
        epochs=epochs,
        seed=seed,
    )
    lines: list[str] = []
    with samples_per_class(batch // TRAIN_CLASSES):
        result = train_run(config, folder, progress=False, log=lines.append)
    assert result is not None  # one process
    metrics = json.loads(result.to_json())
    return {
        "test": {key: metrics["test"].get(key) for key, _ in TRAIN_METRICS},
        "last_epoch": metrics["history"][-1],
        "training_s": metrics["seconds"]["training"],
        "samples_seen": batch * steps * epochs,
        "notes": metrics.get("notes", []),
    }


def train_markdown(rows: list[dict], info: dict, settings: dict) -> str:
    """The training comparison: one row per setting, mean and range over the seeds."""
    head = ["epochs", "setting", "batch", "micro-batch", "steps", "samples seen", "training s"]
    head += [label for _, label in TRAIN_METRICS]
    lines = [
        "# SupCon on the digits: a large batch by micro-batches against a small batch",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, "
        f"{settings['threads']} torch thread(s); Python {info['python']}, "
        f"torch {info['torch']}.",
        f"- Date: {settings['date']}; command: `{settings['command']}`.",
        *([f"- Note: {settings['note']}"] if settings.get("note") else []),
        "- Each run is the command's pipeline (`contrastkit train --data digits --loss "
        "supcon --no-batch-norm --batch-size B [--micro-batch 256] --steps-per-epoch S "
        "--epochs E --seed SEED`) with class-balanced batches of B / "
        f"{TRAIN_CLASSES} samples of each of the {TRAIN_CLASSES} classes (the command "
        "itself draws 4 per class, 40 rows, whatever --batch-size says); the learning "
        "rate schedule is the same for all (one-cycle, peak 0.003, AdamW).",
        f"- Test-split metrics (269 digits): mean over seeds {settings['seeds']}, the "
        "lowest and highest in brackets. EER: lower is better; the others higher. "
        "**training s**: the mean time of training (validation included).",
        "",
        "| " + " | ".join(head) + " |",
        "| --- | " + " | ".join(["---:"] * (len(head) - 1)) + " |",
    ]
    for row in rows:
        runs = row["runs"]
        if not runs:
            continue
        cells = [
            str(row["epochs"]),
            row["name"],
            str(row["batch"]),
            str(row["micro_batch"] or "none"),
            f"{row['steps'] * row['epochs']:,}",
            f"{runs[0]['samples_seen']:,}",
            f"{statistics.mean(r['training_s'] for r in runs):.0f}",
        ]
        for key, _ in TRAIN_METRICS:
            values = [r["test"][key] for r in runs if r["test"][key] is not None]
            if not values:
                cells.append("not measurable")
                continue
            cells.append(f"{statistics.mean(values):.4f} ({min(values):.4f}–{max(values):.4f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_training(args: argparse.Namespace, command: str) -> None:
    """Every setting of :data:`TRAIN_SETTINGS` for every seed; writes the results."""
    info = machine()
    settings = {
        "command": command,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "epochs": args.epochs,
        "seeds": args.seeds,
        "threads": args.threads,
        "note": args.note,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "gradient-cache-train"
    rows = [
        {"epochs": e, "name": name, "batch": b, "micro_batch": k, "steps": s, "runs": []}
        for e in args.epochs
        for name, b, k, s in TRAIN_SETTINGS
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # the settings interleaved, seed by seed
            for row in rows:
                folder = Path(tmp) / f"{row['epochs']}-{row['batch']}-{row['steps']}-{seed}"
                run = train_digits(
                    row["batch"],
                    row["micro_batch"],
                    row["steps"],
                    epochs=row["epochs"],
                    seed=seed,
                    folder=folder,
                )
                row["runs"].append(run | {"seed": seed})
                test = run["test"]
                print(
                    f"{row['epochs']} epochs, {row['name']}, seed {seed}: "
                    f"precision@1 {test['precision_at_1']:.4f}, "
                    f"MAP@R {test['map_at_r']:.4f}, ROC-AUC {test['roc_auc']:.4f}, "
                    f"{run['training_s']:.0f} s",
                    flush=True,
                )
                document = {"machine": info, "settings": settings, "results": rows}
                stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
                stem.with_suffix(".md").write_text(train_markdown(rows, info, settings))
    print(f"wrote {stem}.md and .json", flush=True)


if __name__ == "__main__":
    main()
