"""Retrieval metrics at scale: the old full sort, top-k, faiss and pytorch-metric-learning.

Times ``retrieval_metrics`` (precision@1, recall@1, 5, 10 and MAP@R, leave-one-out,
Euclidean distance) on ``N`` float32 embeddings of ``D`` features in ``C`` classes of
equal size (default N = 10,000 and 100,000, D = 128, C = 100: MAP@R then looks at the
first R = N / C - 1 items of each ranking), with:

* ``old``: the implementation before top-k, kept here as :func:`full_sort_retrieval`:
  chunks of queries, each row of distances sorted in full (stable), the query removed;
* ``torch``: ``retrieval_metrics(..., backend="torch")``: the same chunks, the first K
  of each row from :func:`torch.topk`, ordered as a stable sort would;
* ``faiss``: ``retrieval_metrics(..., backend="faiss")`` (a flat faiss index), where
  faiss is installed;
* ``pml``: pytorch-metric-learning's ``AccuracyCalculator`` (precision@1 and MAP@R,
  ``k="max_bin_count"``, its default faiss k-NN) where it is installed. It is measured
  for comparison only; contrastkit does not depend on it.

Each case runs in a fresh Python process: the data are made (seeded), the libraries
imported, then the call is made ``--repeats`` times (default 3, and 1 from N = 100,000).
The time is the median of those calls (wall clock, and the process's CPU time), and
the peak memory is the growth of the process's high-water resident memory (``VmHWM``,
reset through ``/proc/self/clear_refs``; ``getrusage`` elsewhere) during the first
call, over what the process held with its data. Every value is compared with the
``torch`` row's: ``old`` must match it exactly; faiss and pml compute float32 distances
with their own arithmetic, and may order near-equal distances differently.

The old full sort costs ``O(N² log N)`` and takes minutes from N = 100,000: by default
it runs up to ``--old-max`` (10,000) and is estimated beyond, from its measured time at
the largest N it ran, scaled by ``N² log N``.

On cores shared with other jobs, torch's and faiss's threads wait on one another:
``--threads 1`` is steadier there (and the report says so).

Usage::

    python benchmarks/retrieval.py                    # N = 10,000 and 100,000
    python benchmarks/retrieval.py --sizes 10000 --repeats 5 --impls torch faiss

It writes ``retrieval-cpu.md`` (a Markdown table) and ``retrieval-cpu.json`` into
``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine, peak_rss_bytes, run_child

IMPLS = ("old", "torch", "faiss", "pml")
DESCRIPTIONS = {
    "old": "full sort (before)",
    "torch": "top-k, torch",
    "faiss": "faiss backend",
    "pml": "pml AccuracyCalculator",
}
SIZES = (10_000, 100_000)
DIM = 128
CLASSES = 100
KS = (1, 5, 10)
NOISE = 2.0
"""Within-class spread relative to the class centres (both standard normal)."""
OLD_MAX = 10_000
BIG = 100_000
"""From this N on, one call per case unless ``--repeats`` says otherwise."""
CHUNK_ELEMENTS = 1 << 22
"""The old implementation's bound on distance-matrix entries per chunk of queries."""
MIB = 2**20


# --------------------------------------------------------------------------------------
# The implementation before top-k (the reference: every row sorted in full)


def full_sort_retrieval(
    queries: Any,
    query_labels: Any,
    gallery: Any | None,
    gallery_labels: Any,
    distance: Any,
    ks: Sequence[int],
    *,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> dict[str, float]:
    """Precision@1, recall@k and MAP@R as contrastkit computed them before top-k.

    ``queries`` and ``gallery`` are float tensors of one dtype, the labels int64
    tensors (``gallery_labels`` is ``query_labels`` in leave-one-out mode, where
    ``gallery`` is None). The ranking is a stable sort of each whole row of distances
    (ties: lower index first), with the query itself removed in leave-one-out mode.
    """
    import torch

    from contrastkit.distances import distance_matrix

    leave_one_out = gallery is None
    items = queries if gallery is None else gallery
    n_items = items.shape[0]
    classes, counts = torch.unique(gallery_labels, return_counts=True)
    where = torch.searchsorted(classes, query_labels).clamp_max(classes.numel() - 1)
    found = classes[where] == query_labels
    relevant = torch.where(found, counts[where], 0)
    relevant = relevant - 1 if leave_one_out else relevant
    valid = relevant > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError("no query has a relevant item")

    hits_at_1 = 0.0
    recall_hits = dict.fromkeys(ks, 0.0)
    map_sum = 0.0
    chunk = max(1, chunk_elements // n_items)
    for start in range(0, queries.shape[0], chunk):
        stop = min(start + chunk, queries.shape[0])
        keep = valid[start:stop]
        if not bool(keep.any()):
            continue
        rows = torch.arange(start, stop)[keep]
        d = distance_matrix(queries[rows], items, distance)
        ranking = torch.sort(d, dim=1, stable=True).indices  # ties: lower index first
        if leave_one_out:  # drop each query itself from its own ranking
            ranking = ranking[ranking != rows[:, None]].view(rows.numel(), n_items - 1)
        rel = gallery_labels[ranking] == query_labels[rows, None]
        r = relevant[rows]
        hits_at_1 += float(rel[:, 0].sum())
        for k in ks:
            recall_hits[k] += float(rel[:, :k].any(dim=1).sum())
        # MAP@R: mean over the first R ranks of precision@i at each relevant rank i
        top = rel[:, : int(r.max())]
        ranks = torch.arange(1, top.shape[1] + 1, dtype=torch.float64)
        precision = top.cumsum(dim=1, dtype=torch.float64) / ranks
        within_r = ranks[None, :] <= r[:, None]
        ap = (precision * (top & within_r)).sum(dim=1) / r
        map_sum += float(ap.sum())

    result = {"precision_at_1": hits_at_1 / n_valid}
    for k in ks:
        result[f"recall_at_{k}"] = recall_hits[k] / n_valid
    result["map_at_r"] = map_sum / n_valid
    return result


# --------------------------------------------------------------------------------------
# One case


def make_data(n: int, d: int, classes: int, seed: int = 0) -> tuple[Any, Any]:
    """``n`` float32 embeddings around ``classes`` centres, labels ``arange(n) % classes``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=generator)
    labels = torch.arange(n) % classes
    noise = torch.randn(n, d, generator=generator)
    return centres[labels] + NOISE * noise, labels


def installed(module: str) -> str | None:
    """The version of ``module`` where it can be imported, else None."""
    try:
        imported = importlib.import_module(module)
    except ImportError:
        return None
    return str(getattr(imported, "__version__", "?"))


def make_call(impl: str, emb: Any, labels: Any) -> Callable[[], dict[str, float]]:
    """A function of no argument that computes the metrics of ``impl`` on these data."""
    if impl == "old":
        return lambda: full_sort_retrieval(emb, labels, None, labels, "euclidean", KS)
    if impl in ("torch", "faiss"):
        from contrastkit.evaluation.retrieval import retrieval_metrics

        backend: Any = impl
        return lambda: retrieval_metrics(emb, labels, ks=KS, backend=backend)
    import torch

    module = importlib.import_module("pytorch_metric_learning.utils.accuracy_calculator")
    calculator = module.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )

    def call() -> dict[str, float]:
        out = calculator.get_accuracy(emb, labels)
        return {
            "precision_at_1": float(out["precision_at_1"]),
            "map_at_r": float(out["mean_average_precision_at_r"]),
        }

    return call


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch and (where installed) faiss."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(ImportError):
        importlib.import_module("faiss").omp_set_num_threads(threads)


def measure(impl: str, n: int, d: int, classes: int, repeats: int) -> dict:
    """The metrics, the median time of ``repeats`` calls and the first call's peak memory."""
    emb, labels = make_data(n, d, classes)
    call = make_call(impl, emb, labels)
    if impl in ("faiss", "pml"):
        importlib.import_module("faiss")  # imported before the timing
    times, cpu = [], []
    start, start_cpu = time.perf_counter(), time.process_time()
    peak, values = peak_rss_bytes(call)
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
    for _ in range(repeats - 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        again = call()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if again != values:
            raise RuntimeError(f"{impl}: a repeated call gave other values: {again} != {values}")
    return {
        "time_s": statistics.median(times),
        "times_s": times,
        "cpu_s": statistics.median(cpu),
        "peak_mb": peak / MIB,
        "values": values,
    }


def run_case(impl: str, n: int, args: argparse.Namespace) -> dict:
    """Measure one case, in a fresh process unless ``args.in_process``; errors are reported."""
    repeats = args.repeats or (1 if n >= BIG else 3)
    if args.in_process:
        try:
            return measure(impl, n, args.dim, args.classes, repeats)
        except Exception as error:  # report it in the table; the grid goes on
            return {"error": f"{type(error).__name__}: {error}"[:200]}
    command = [sys.executable, os.path.abspath(__file__), "--child", impl, str(n)]
    command += ["--dim", str(args.dim), "--classes", str(args.classes)]
    command += ["--repeats", str(repeats)]
    command += ["--threads", str(args.threads)] if args.threads else []
    return run_child(command)


# --------------------------------------------------------------------------------------
# The grid and its report


def compare(values: dict[str, float], baseline: dict[str, float] | None) -> str:
    """How ``values`` agree with the torch backend's on their common keys."""
    if baseline is None:
        return ""
    keys = [key for key in values if key in baseline]
    diff = max(abs(values[key] - baseline[key]) for key in keys)
    return "identical" if diff == 0 else f"max abs diff {diff:.2g}"


def machine_info() -> dict:
    info = machine()
    info["faiss"] = installed("faiss")
    info["pytorch_metric_learning"] = installed("pytorch_metric_learning")
    return info


def markdown_row(row: dict) -> str:
    if "time_s" in row:
        values = row["values"]
        metric = [
            f"{values[key]:.4f}" if key in values else "—"
            for key in ("precision_at_1", "recall_at_10", "map_at_r")
        ]
        timing = [
            f"{row['time_s']:.3g}",
            f"{row['cpu_s']:.3g}",
            str(len(row["times_s"])),
            f"{row['peak_mb']:.0f}",
        ]
        cells = [*timing, *metric, row.get("agreement", "")]
    else:
        cells = [row.get("skipped") or f"failed: {row.get('error', '?')}", *[""] * 7]
    return "| " + " | ".join([f"{row['n']:,}", DESCRIPTIONS[row["impl"]], *cells]) + " |"


HEADER = [
    "| N | implementation | median s | CPU s | runs | peak MB | P@1 | R@10 | MAP@R | vs top-k |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
]


def markdown(rows: list[dict], info: dict, settings: dict) -> str:
    threads = f"{info['torch_threads']} torch thread(s)" + (
        " and as many faiss threads (`--threads`)" if settings.get("threads") else ""
    )
    machine = f"{info['cpu']}, {info['cores']} cores, {threads}" + (
        f", {info['memory_gib']} GiB memory" if "memory_gib" in info else ""
    )
    faiss, pml = info["faiss"], info["pytorch_metric_learning"]
    lines = [
        "# Retrieval metrics at scale: full sort, top-k, faiss, pytorch-metric-learning",
        "",
        f"- Machine: {machine}. {settings['note']}".rstrip(),
        *(
            [
                "- Load average (1, 5, 15 min) at the start: "
                + ", ".join(f"{x:.1f}" for x in settings["load_start"])
                + "; at the last row: "
                + ", ".join(f"{x:.1f}" for x in settings.get("load_now", settings["load_start"]))
                + "."
            ]
            if settings.get("load_start")
            else []
        ),
        f"- Software: Python {info['python']}, torch {info['torch']}, "
        + (f"faiss {faiss}, " if faiss else "faiss not installed, ")
        + (f"pytorch-metric-learning {pml}." if pml else "pytorch-metric-learning not installed."),
        f"- Date: {settings['date']}; command: `{settings['command']}`.",
        f"- Data: N float32 embeddings, D = {settings['dim']}, {settings['classes']} classes "
        f"of N / {settings['classes']} (class centres and noise × {NOISE:g} standard normal); "
        f"leave-one-out, Euclidean; `retrieval_metrics(emb, labels, ks={KS})`. MAP@R looks "
        "at the first R = N / classes - 1 items of each ranking.",
        f"- **median s**: median of the runs ({settings['repeats']}), each a full call, in a "
        "fresh process per row; "
        "**peak MB** (MiB): growth of the process's peak resident memory during its first "
        + (
            "call, all rows in one process (`--in-process`: lower than a fresh process's)."
            if settings["in_process"]
            else "call, over the memory it held with its data."
        ),
        "- **CPU s**: the process's CPU time (all its threads) over the same calls, median; "
        "on shared cores it says more than the wall time.",
        "- **vs top-k**: the largest difference from the torch top-k row's values at the "
        "same N. pml reports no recall@k. faiss and pml compute float32 distances with "
        "their own arithmetic: near-equal distances can swap, and exact ties are ordered "
        "their way.",
        *(f"- {note}" for note in settings["notes"]),
        "",
        *HEADER,
        *(markdown_row(row) for row in rows),
    ]
    return "\n".join(lines) + "\n"


def old_estimate(rows: list[dict], n: int) -> str | None:
    """The old full sort's time at ``n``, scaled by N² log N from its largest measured N."""
    done = [r for r in rows if r["impl"] == "old" and "time_s" in r]
    if not done:
        return None
    base = max(done, key=lambda r: r["n"])
    m = base["n"]
    seconds = base["time_s"] * (n / m) ** 2 * math.log(n) / math.log(m)
    return f"skipped: about {seconds:,.0f} s (N² log N from N = {m:,})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--classes", type=int, default=CLASSES)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument(
        "--repeats",
        type=int,
        help=f"calls per case, for the median (default 3; 1 from N = {BIG:,})",
    )
    parser.add_argument("--threads", type=int, help="CPU threads of torch and faiss")
    parser.add_argument("--old-max", type=int, default=OLD_MAX, help="largest N for the old")
    parser.add_argument("--note", default="", help="a line about the machine for the report")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every case in this process (for tests; memory is then not a fresh process's)",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # impl N: JSON out
    args = parser.parse_args(argv)
    if args.classes < 1:
        parser.error(f"--classes must be positive, got {args.classes}")
    for n in args.sizes:
        if n < 2 * args.classes or n <= max(KS):
            parser.error(
                f"--sizes must hold at least two samples per class and more than {max(KS)}, "
                f"got {n} for {args.classes} classes"
            )
    if args.dim < 1:
        parser.error(f"--dim must be positive, got {args.dim}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    if args.child:
        impl, n = args.child
        print(json.dumps(measure(impl, int(n), args.dim, args.classes, args.repeats or 1)))
        return

    info = machine_info()
    command = "python benchmarks/retrieval.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    settings: dict[str, Any] = {
        "command": command.strip(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "sizes": args.sizes,
        "dim": args.dim,
        "classes": args.classes,
        "impls": args.impls,
        "repeats": args.repeats or f"3, and 1 from N = {BIG:,}",
        "load_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "old_max": args.old_max,
        "in_process": args.in_process,
        "threads": args.threads,
        "note": args.note,
        "notes": [],
    }
    print(f"{info['cpu']}, torch {info['torch']}", flush=True)
    print(*HEADER, sep="\n", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "retrieval-cpu"
    rows: list[dict] = []
    for n in args.sizes:
        baseline: dict[str, float] | None = None
        # torch first: the others are compared with it
        for impl in sorted(args.impls, key=lambda i: i != "torch"):
            row: dict = {"n": n, "impl": impl}
            if impl == "faiss" and not info["faiss"]:
                row["skipped"] = "skipped: faiss not installed"
            elif impl == "pml" and not info["pytorch_metric_learning"]:
                row["skipped"] = "skipped: pytorch-metric-learning not installed"
            elif impl == "pml" and not info["faiss"]:
                row["skipped"] = "skipped: pml's default k-NN needs faiss, not installed"
            elif impl == "old" and n > args.old_max:
                row["skipped"] = old_estimate(rows, n) or f"skipped: N > --old-max {args.old_max}"
                note = (
                    f"The old full sort runs up to N = {args.old_max:,} (`--old-max`); above, "
                    "its time is estimated from the largest N it ran, scaled by N² log N."
                )
                if note not in settings["notes"]:
                    settings["notes"].append(note)
            else:
                row |= run_case(impl, n, args)
            if "values" in row:
                if impl == "torch":
                    baseline = row["values"]
                row["agreement"] = "—" if impl == "torch" else compare(row["values"], baseline)
            rows.append(row)
            print(markdown_row(row), flush=True)
            # written as it goes, so that an interrupted run keeps what it measured
            if hasattr(os, "getloadavg"):
                settings["load_now"] = os.getloadavg()
            stem.with_suffix(".md").write_text(markdown(rows, info, settings))
            document = {"machine": info, "settings": settings, "results": rows}
            stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {stem}.md and .json", flush=True)


if __name__ == "__main__":
    main()
