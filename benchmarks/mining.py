"""Cost of online mining as a multiple of one distance matrix, with peak memory.

Each case runs in a fresh Python process (so that its peak memory is its own): the
median time of several runs after a warm-up, and the growth of the process's peak
resident memory over the inputs alone. The baseline is one Euclidean distance matrix
of the same batch, timed the same way, so the ratio says how many distance matrices a
miner costs. pytorch-metric-learning's miners are measured beside ours when it is
installed (``pip install pytorch-metric-learning``); cases that would need more memory
than the machine has are left out and say so.

Usage::

    python benchmarks/mining.py                 # N = 4096, D = 128, 256 classes of 16
    python benchmarks/mining.py --n 1024 --out benchmarks/results/mining.md
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    # name: (what it is, peer?)
    "distance_matrix": "one Euclidean distance matrix (the unit)",
    "all_pairs": "contrastkit all_pairs",
    "hard_pairs": "contrastkit hard_pairs",
    "batch_hard_triplets": "contrastkit batch_hard_triplets",
    "semi_hard_triplets": "contrastkit semi_hard_triplets (margin 0.2)",
    "all_pairs_contrastive_loss": "contrastkit all_pairs_contrastive_loss (forward)",
    "batch_all_triplet_loss": "contrastkit batch_all_triplet_loss (forward)",
    "batch_hard_triplet_loss": "contrastkit batch_hard_triplet_loss (forward)",
    "pml_batch_hard": "pytorch-metric-learning BatchHardMiner",
    "pml_pair_margin": "pytorch-metric-learning PairMarginMiner (hard pairs)",
    "pml_semihard": "pytorch-metric-learning TripletMarginMiner('semihard', margin 0.2)",
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_case(name: str, emb, labels):
    import torch

    import contrastkit.functional as F
    from contrastkit import mining
    from contrastkit.distances import distance_matrix

    if name == "distance_matrix":
        return lambda: distance_matrix(emb)
    if name == "all_pairs":
        return lambda: mining.all_pairs(emb, labels)
    if name == "hard_pairs":
        return lambda: mining.hard_pairs(emb, labels)
    if name == "batch_hard_triplets":
        return lambda: mining.batch_hard_triplets(emb, labels)
    if name == "semi_hard_triplets":
        return lambda: mining.semi_hard_triplets(emb, labels, margin=0.2)
    if name.endswith("_loss"):
        fn = getattr(F, name)
        kwargs = {} if name.startswith("all_pairs") else {"margin": 0.2}

        def run():
            with torch.no_grad():
                return fn(emb, labels, **kwargs)

        return run
    from pytorch_metric_learning import miners

    miner = {
        "pml_batch_hard": miners.BatchHardMiner,
        "pml_pair_margin": lambda: miners.PairMarginMiner(pos_margin=0.0, neg_margin=1.0),
        "pml_semihard": lambda: miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
    }[name]()
    return lambda: miner(emb, labels)


def run_one(name: str, n: int, d: int, classes: int, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(n, d), dim=1)
    labels = torch.arange(n) % classes
    fn = make_case(name, emb, labels)
    before = peak_rss_mb()
    fn()  # warm-up, and the peak memory of one call
    peak = peak_rss_mb() - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"time_s": statistics.median(times), "peak_mb": peak}


def fits(name: str, n: int, memory_gb: float) -> bool:
    """Skip what would not fit: PML's triplet miner builds an N x N x N mask."""
    if name == "pml_semihard":
        return n**3 * 2 / 1e9 < memory_gb / 2
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--classes", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, JSON out
    args = parser.parse_args()

    if args.case:
        print(json.dumps(run_one(args.case, args.n, args.d, args.classes, args.repeats)))
        return

    try:
        import pytorch_metric_learning

        pml = f"pytorch-metric-learning {pytorch_metric_learning.__version__}"
    except ImportError:
        pml = None
    import torch

    rows, unit = [], None
    for name, what in CASES.items():
        if name.startswith("pml") and pml is None:
            continue
        if not fits(name, args.n, args.memory_gb):
            rows.append(f"| {what} | skipped: needs an N³ mask | |")
            continue
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--case",
                name,
                "--n",
                str(args.n),
                "--d",
                str(args.d),
                "--classes",
                str(args.classes),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            rows.append(f"| {what} | failed: {out.stderr.strip().splitlines()[-1][:80]} | |")
            continue
        result = json.loads(out.stdout)
        unit = unit or result["time_s"]
        rows.append(
            f"| {what} | {result['time_s'] * 1e3:.1f} ms = {result['time_s'] / unit:.2f}× "
            f"| {result['peak_mb']:.0f} MB |"
        )
        print(rows[-1], flush=True)

    table = "\n".join(
        [
            f"Mining N = {args.n} embeddings of D = {args.d} ({args.classes} classes), float32, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}"
            + (f", {pml}" if pml else "")
            + f", {platform.processor() or platform.machine()}.",
            "",
            "| case | median time (× one distance matrix) | peak memory over the inputs |",
            "| --- | --- | --- |",
            *rows,
        ]
    )
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
