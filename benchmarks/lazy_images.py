"""An image folder read eagerly or lazily: peak memory and images per second against N.

``read_image_folder`` decodes every image into one ``(N, C, S, S)`` tensor before the
first batch; :class:`~contrastkit.data.ImageFolderDataset` lists the files and decodes
each image when a batch asks for it, in the DataLoader's worker processes. This script
measures, for folders of ``N`` images (default 1,000, 5,000, 20,000 and 50,000), how the
peak memory and the speed of one epoch of batches grow with N, in three modes:

* ``eager``: ``read_image_folder(folder, image_size=S)``, then one epoch over
  ``DataLoader(TensorDataset(inputs, labels), batch_size=B, shuffle=True)``;
* ``lazy-0``: ``DataLoader(ImageFolderDataset(folder, image_size=S), batch_size=B,
  shuffle=True)``, decoding in the main process (``num_workers=0``);
* ``lazy-K``: the same with ``num_workers=K`` worker processes (default K = 2).

Each batch is touched (its sum is taken), nothing is trained: the time is that of
reading. Shuffling draws from ``torch.Generator().manual_seed(0)``. ``eager`` runs up to
``--eager-max`` images (default 20,000); above, its peak is predicted from its growth
per image between the two largest sizes it ran.

**The folders**: ``--sizes`` folders of 10 classes, ``root/nN/cK/I.png``, each image a
``--stored``-pixel (default 64 × 64) RGB PNG: 8 × 8 random colours scaled up
(bilinear) plus noise, so that files compress like photographs rather than like flat
colour (about 10 KB each). One pool of images is made for the largest N, seeded; a
smaller folder holds hard links to the first images of the pool (copies where links
fail). Making the pool is timed and reported. ``--data DIR`` keeps the folders there
for another run (otherwise a temporary folder is removed at the end).

**Memory**, each mode at each N in a fresh Python process (``benchmarks/_child.py``)
with 1 torch thread: after ``import torch`` and contrastkit the high-water mark of its
resident memory (``VmHWM``) is reset (``/proc/self/clear_refs``), then the folder is
read and the epoch run:

* **main peak MB**: the rise of the main process's VmHWM over its level before reading
  (the data, the batches in flight, the loader); **main process MB** its whole VmHWM;
* **worker peak MB**: each worker's own VmHWM, read from ``/proc/PID/status`` once the
  last batch has arrived (the workers are still alive then; VmHWM only grows), summed
  over the workers. A worker is forked from the main process and shares its pages
  (torch's libraries, Python) until it writes to them, and the resident memory of
  each counts those shared pages again: the sum overstates what the workers add.
* **workers' own MB**: the pages only the workers map (``Private_Clean`` +
  ``Private_Dirty`` in ``/proc/PID/smaps_rollup``), read at the same moment, summed;
  **main + workers MB**: the main process's whole VmHWM plus the workers' own: every
  page once, the workers' at the end of the epoch rather than at their peak;
* **total PSS MB**: the largest sum of the proportional set size (``Pss`` in
  ``smaps_rollup``: each shared page divided among the processes sharing it, other
  programs' included) of the main process and its workers, sampled every 0.05 s during
  the epoch. Sampled, it can miss a short peak.

MB are MiB. **listing s**: building the dataset (eager: reading every image);
**epoch s**: the epoch's wall time; **images/s**: N over listing plus epoch. The load
average (1 minute) before and after each process is recorded: on a shared machine
the times depend on it, the memory does not.

Usage::

    python benchmarks/lazy_images.py                # N = 1,000, 5,000, 20,000, 50,000
    python benchmarks/lazy_images.py --sizes 500 2000 --workers 0 2 --rounds 2
    python benchmarks/lazy_images.py --data /tmp/lazy-folders   # keep the folders

It writes ``lazy-images.md`` (a Markdown table) and ``lazy-images.json`` (every number)
into ``--out``, after each N.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine, run_child, status_kb

SIZES = (1000, 5000, 20000, 50000)
EAGER_MAX = 20000
CLASSES = 10
MIB = 2**20
SAMPLE_EVERY_S = 0.05


# --------------------------------------------------------------------------------------
# the folders


def make_pool(pool: Path, n: int, stored: int, seed: int = 0) -> float:
    """``n`` seeded RGB PNGs ``pool/I.png`` (those missing); the seconds it took."""
    import numpy as np
    from PIL import Image

    pool.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(n):
        path = pool / f"{i:07d}.png"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        big = np.asarray(small.resize((stored, stored), Image.Resampling.BILINEAR), np.int16)
        noisy = big + rng.integers(-12, 13, big.shape, dtype=np.int16)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path)
    return time.perf_counter() - start


def make_folder(root: Path, pool: Path, n: int) -> Path:
    """``root/nN/cK/I.png``: the first ``n`` images of the pool, in 10 classes."""
    folder = root / f"n{n}"
    done = folder / ".complete"
    if done.exists():
        return folder
    for i in range(n):
        target = folder / f"c{i % CLASSES}" / f"{i:07d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(pool / f"{i:07d}.png", target)
            except OSError:
                shutil.copyfile(pool / f"{i:07d}.png", target)
    done.write_text("")
    return folder


# --------------------------------------------------------------------------------------
# one process: one mode at one N


def children() -> list[int]:
    """The process ids of this process's children (its DataLoader workers)."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    return sorted(set(pids))


def proc_kb(pid: int | str, field: str, file: str = "status") -> int | None:
    """A ``kB`` field of ``/proc/PID/status`` (or ``smaps_rollup``); None if unreadable."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/{file}") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def uss_kb(pid: int | str) -> int:
    """The memory only process ``pid`` maps (private clean + dirty pages), in KiB."""
    clean = proc_kb(pid, "Private_Clean", "smaps_rollup") or 0
    return clean + (proc_kb(pid, "Private_Dirty", "smaps_rollup") or 0)


class PssSampler:
    """The largest total PSS of this process and its children, sampled in a thread."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        total = proc_kb("self", "Pss", "smaps_rollup") or 0
        for pid in children():
            total += proc_kb(pid, "Pss", "smaps_rollup") or 0
        self.peak_kb = max(self.peak_kb, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def __enter__(self) -> PssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(mode: str, folder: Path, *, image_size: int, batch_size: int) -> dict:
    """Read ``folder`` in ``mode`` and run one epoch; memory and times."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from contrastkit.data import ImageFolderDataset
    from contrastkit.data.readers import read_image_folder

    torch.set_num_threads(1)
    workers = 0 if mode == "eager" else int(mode.split("-")[1])
    baseline_kb = status_kb("VmRSS") or 0
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before_kb = status_kb("VmHWM") or baseline_kb
    cpu_start = time.process_time()
    with PssSampler() as sampler:
        start = time.perf_counter()
        if mode == "eager":
            data = read_image_folder(folder, image_size=image_size)
            dataset: Any = TensorDataset(data.inputs, data.labels)
        else:
            dataset = ImageFolderDataset(folder, image_size=image_size)
        listing_s = time.perf_counter() - start
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
            num_workers=workers,
        )
        epoch_start = time.perf_counter()
        iterator = iter(loader)
        seen, checksum, worker_kb, worker_uss_kb = 0, 0.0, [], []
        for step in range(len(loader)):
            x, y = next(iterator)
            seen += int(y.shape[0])
            checksum += float(x.sum())
            if step == len(loader) - 1:  # the workers are alive until the next call
                sampler.sample()
                pids = children()
                worker_kb = [proc_kb(pid, "VmHWM") or 0 for pid in pids]
                worker_uss_kb = [uss_kb(pid) for pid in pids]
        with contextlib.suppress(StopIteration):
            next(iterator)
        epoch_s = time.perf_counter() - epoch_start
    peak_kb = status_kb("VmHWM") or before_kb
    return {
        "mode": mode,
        "workers": workers,
        "n": len(dataset),
        "seen": seen,
        "checksum": checksum,
        "listing_s": listing_s,
        "epoch_s": epoch_s,
        "images_per_s": len(dataset) / (listing_s + epoch_s),
        "main_cpu_s": time.process_time() - cpu_start,
        "main_peak_mb": max(peak_kb - before_kb, 0) / 1024,
        "main_process_mb": peak_kb / 1024,
        "baseline_mb": baseline_kb / 1024,
        "worker_peaks_mb": [kb / 1024 for kb in worker_kb],
        "worker_peak_mb": sum(worker_kb) / 1024,
        "worker_uss_mb": [kb / 1024 for kb in worker_uss_kb],
        "workers_own_mb": sum(worker_uss_kb) / 1024,
        "total_mb": (peak_kb + sum(worker_uss_kb)) / 1024,
        "total_pss_mb": sampler.peak_kb / 1024,
        "pss_samples": sampler.samples,
    }


# --------------------------------------------------------------------------------------
# the grid


def load() -> list[float] | None:
    """The load averages over 1, 5 and 15 minutes; None where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_case(mode: str, folder: Path, args: argparse.Namespace) -> dict:
    """One mode on one folder in a fresh process, with the load average around it."""
    command = [sys.executable, os.path.abspath(__file__), "--child", mode, str(folder)]
    command += ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]
    before = load()
    result = run_child(command)
    return result | {"load_before": before, "load_after": load()}


def combine(results: list[dict]) -> dict:
    """One mode's rounds at one N: times the median, memory the largest."""
    good = [r for r in results if "epoch_s" in r]
    if not good:
        return results[0] | {"rounds": results}
    out = dict(good[0])
    for key in ("listing_s", "epoch_s", "images_per_s", "main_cpu_s"):
        out[key] = statistics.median(r[key] for r in good)
    for key in (
        "main_peak_mb",
        "main_process_mb",
        "worker_peak_mb",
        "workers_own_mb",
        "total_mb",
        "total_pss_mb",
    ):
        out[key] = max(r[key] for r in good)
    out["rounds"] = results
    return out


def predicted(rows: list[dict], n: int, eager_max: int) -> str:
    """Why eager did not run at ``n``, with its peak extended from the largest two sizes."""
    done = [(r["n"], r["eager"]["main_peak_mb"]) for r in rows if "epoch_s" in r["eager"]]
    why = f"not run above --eager-max {eager_max:,}"
    if len(done) < 2:
        return why
    (n1, m1), (n2, m2) = done[-2], done[-1]
    return why + f"; main peak predicted ≈ {m2 + (m2 - m1) / (n2 - n1) * (n - n2):,.0f} MB"


def slopes(rows: list[dict], modes: list[str]) -> dict[str, dict[str, float]]:
    """Each mode's growth in MB per 1,000 images: least squares over the sizes measured."""
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        for key in ("main_peak_mb", "total_mb", "total_pss_mb"):
            points = [(r["n"], r[mode][key]) for r in rows if key in r.get(mode, {})]
            if len(points) < 2:
                continue
            mean_n = statistics.fmean(n for n, _ in points)
            mean_m = statistics.fmean(m for _, m in points)
            var = sum((n - mean_n) ** 2 for n, _ in points)
            cov = sum((n - mean_n) * (m - mean_m) for n, m in points)
            out.setdefault(mode, {})[key] = 1000 * cov / var
    return out


HEADER = (
    "| N | mode | main peak MB | main process MB | worker peak MB (sum) | workers' own MB "
    "| main + workers MB | total PSS MB | listing s | epoch s | images/s "
    "| load before → after |"
)


def _num(value: float, fmt: str) -> str:
    return format(value, fmt)


def markdown_row(n: int, result: dict) -> str:
    if "skipped" in result:
        return f"| {n:,} | {result['mode']} | {result['skipped']} |" + " |" * 9
    if "epoch_s" not in result:
        return f"| {n:,} | {result.get('mode', '?')} | failed: {result.get('error')} |"
    loads = "; ".join(
        f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}"
        for r in result.get("rounds", [result])
        if r.get("load_before") and r.get("load_after")
    )
    workers = (
        _num(result["worker_peak_mb"], ",.0f")
        + " ("
        + " + ".join(f"{m:,.0f}" for m in result["worker_peaks_mb"])
        + ")"
        if result["workers"]
        else "–"
    )
    cells = [
        f"{n:,}",
        result["mode"],
        _num(result["main_peak_mb"], ",.0f"),
        _num(result["main_process_mb"], ",.0f"),
        workers,
        _num(result["workers_own_mb"], ",.0f") if result["workers"] else "–",
        _num(result["total_mb"], ",.0f"),
        _num(result["total_pss_mb"], ",.0f"),
        _num(result["listing_s"], ".2f"),
        _num(result["epoch_s"], ".2f"),
        _num(result["images_per_s"], ",.0f"),
        loads,
    ]
    return "| " + " | ".join(cells) + " |"


def check_lines(rows: list[dict], modes: list[str]) -> list[str]:
    lines = []
    for row in rows:
        sums = {m: row[m]["checksum"] for m in modes if "checksum" in row.get(m, {})}
        same = len(set(sums.values())) == 1
        values = ", ".join(f"{m} {v:.6f}" for m, v in sums.items())
        lines.append(f"- N = {row['n']:,}: {values}" + (" (equal)." if same else " (DIFFER)."))
    return lines


def markdown(rows: list[dict], info: dict, settings: dict) -> str:
    modes = settings["modes"]
    growth = slopes(rows, modes)
    growth_lines = [
        f"- {mode}: main peak {g['main_peak_mb']:+.2f} MB, main + workers "
        f"{g['total_mb']:+.2f} MB, total PSS {g['total_pss_mb']:+.2f} MB per 1,000 images"
        for mode, g in growth.items()
    ]
    lines = [
        "# An image folder read eagerly or lazily: peak memory and images/s against N",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores"
        + (f", {info['memory_gib']} GiB memory" if "memory_gib" in info else "")
        + "; 1 torch thread in each process.",
        f"- Software: Python {info['python']}, torch {info['torch']}, Pillow {settings['pillow']}.",
        f"- Date: {settings['date']}; command: `{settings['command']}`.",
        *([f"- Note: {settings['note']}"] if settings.get("note") else []),
        f"- Folders: N RGB PNGs of {settings['stored']}×{settings['stored']} pixels "
        f"(about {settings['file_kb']:.0f} KB each) in {CLASSES} classes, read at "
        f"image_size={settings['image_size']} (3 × {settings['image_size']}² float32, "
        f"{3 * settings['image_size'] ** 2 * 4 / 1024:.0f} KiB per image); made in "
        f"{settings['pool_s']:.0f} s. Batches of {settings['batch_size']}, shuffled, one "
        "epoch; each batch summed, nothing trained.",
        "- **eager**: `read_image_folder`, then a DataLoader over the tensor; **lazy-K**: "
        "`DataLoader(ImageFolderDataset(...), num_workers=K)`. Each mode at each N in a "
        f"fresh process, {settings['rounds']} round(s), the modes in ABBA order: each "
        "time is the median over rounds, each memory the largest.",
        "- **main peak MB**: rise of the main process's peak resident memory (VmHWM, "
        "reset after the imports) while reading and iterating; **main process MB**: its "
        "whole VmHWM. **worker peak MB**: each worker's own VmHWM when the last batch has "
        "arrived, summed: it counts again the pages a forked worker shares with the main "
        "process (torch, Python), so it overstates them. **workers' own MB**: the pages "
        "only the workers map (private clean + dirty, `smaps_rollup`) at that moment, "
        "summed; **main + workers MB**: main process MB plus workers' own MB, each page "
        "counted once. **total PSS MB**: the largest sum of proportional set sizes of the "
        "main process and its workers (each shared page divided among the processes "
        "mapping it, other programs' included), sampled every 0.05 s: it can miss a "
        "short peak. MB are MiB.",
        "- **images/s**: N / (listing s + epoch s); **listing s**: building the dataset "
        "(eager: decoding every image). The times depend on the machine's load (1-minute "
        "load average before → after each process, on "
        f"{info['cores']} cores); the memory does not.",
        "",
        HEADER,
        "| ---: | --- |" + " ---: |" * 9 + " --- |",
        *(markdown_row(r["n"], r[m]) for r in rows for m in modes if m in r),
        "",
        "Growth with N (least squares over the sizes):",
        "",
        *growth_lines,
        "",
        "Check: the sum of every pixel of the epoch, the same in every mode (the same "
        "images, decoded alike, in the same shuffled order):",
        "",
        *check_lines(rows, modes),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help=f"images N (default {SIZES})")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="lazy workers")
    parser.add_argument("--image-size", type=int, default=64, help="pixels read (default 64)")
    parser.add_argument("--stored", type=int, default=64, help="pixels stored (default 64)")
    parser.add_argument("--batch-size", type=int, default=256, help="default 256")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every case")
    parser.add_argument(
        "--eager-max", type=int, default=EAGER_MAX, help=f"largest eager N (default {EAGER_MAX})"
    )
    parser.add_argument("--data", help="folder for the image folders (kept; default: temp)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results")
    parser.add_argument("--note", help="a line for the results (what was measured, and where)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # mode folder: JSON out
    args = parser.parse_args(argv)
    args.sizes = sorted(args.sizes or SIZES)
    if min(args.sizes) < 2 * CLASSES:
        parser.error(f"--sizes must be at least {2 * CLASSES}, got {min(args.sizes)}")
    for name in ("image_size", "stored", "batch_size", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.workers) < 0:
        parser.error(f"--workers must be at least 0, got {min(args.workers)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        mode, folder = args.child
        result = measure(mode, Path(folder), image_size=args.image_size, batch_size=args.batch_size)
        print(json.dumps(result))
        return
    import PIL

    command = "python benchmarks/lazy_images.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    modes = ["eager", *(f"lazy-{k}" for k in args.workers)]
    temporary = None if args.data else tempfile.mkdtemp(prefix="lazy-images-")
    root = Path(args.data or temporary or ".")
    try:
        pool_s = make_pool(root / "pool", max(args.sizes), args.stored)
        files = list((root / "pool").glob("*.png"))[:200]
        info = machine()
        settings = {
            "command": command.strip(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "sizes": args.sizes,
            "modes": modes,
            "image_size": args.image_size,
            "stored": args.stored,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "pool_s": pool_s,
            "file_kb": statistics.fmean(f.stat().st_size for f in files) / 1024,
            "pillow": PIL.__version__,
            "note": args.note,
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / "lazy-images"
        print(f"made {max(args.sizes):,} images in {pool_s:.1f} s under {root}", flush=True)
        print(HEADER, flush=True)
        rows: list[dict] = []
        for n in args.sizes:
            folder = make_folder(root, root / "pool", n)
            run = [m for m in modes if m != "eager" or n <= args.eager_max]
            found: dict[str, list[dict]] = {m: [] for m in run}
            for i in range(args.rounds):
                for mode in run if i % 2 == 0 else run[::-1]:
                    found[mode].append(run_case(mode, folder, args))
            row: dict = {"n": n} | {m: combine(found[m]) for m in run}
            if "eager" not in run:
                row["eager"] = {"mode": "eager", "skipped": predicted(rows, n, args.eager_max)}
            rows.append(row)
            for m in modes:
                print(markdown_row(n, row[m]), flush=True)
            document = {"machine": info, "settings": settings, "results": rows}
            stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
            stem.with_suffix(".md").write_text(markdown(rows, info, settings))
        print(f"wrote {stem}.md and .json", flush=True)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
