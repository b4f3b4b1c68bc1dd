"""Forward + backward time of the all-pairs losses against a matrix-product floor, and memory.

Every exact loss over all pairs of a batch must at least form the ``N × N`` matrix of
products ``S = X Yᵀ`` and, for the gradient, multiply an ``N × N`` matrix ``G`` (the
gradient with respect to ``S``) back into both sides: ``G Y`` and ``Gᵀ X``. Those three
matrix products, timed at the same ``N``, ``D`` and dtype, are the **floor**; each loss's
forward + backward time is reported as a multiple of it, beside the peak memory of one
forward + backward.

What is measured, for each loss, implementation, ``N`` and ``D``, in a fresh Python
process (so that its peak memory is its own):

1. **Peak memory**: the inputs are created, then one forward + backward runs, the first
   in the process. The peak is the growth of the process's high-water resident memory
   (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the call) over the
   memory it held with its inputs; where that reset is not available, the growth of
   ``getrusage``'s peak. On CUDA, ``torch.cuda.max_memory_allocated`` over the memory
   allocated before the call. The first call of a fresh process is the one measured:
   later calls reuse memory the allocator kept, and their peaks say less.
2. That call is also the warm-up. Then the floor (best of the repeats), the loss (best
   of the repeats of forward + ``loss.backward()``), and the floor again; the ratio
   ``× floor`` is the loss's time over the faster of the two floor measurements.

The floor is the three full products up to ``N = 16384`` (one ``N × N`` buffer, which
stands in for ``G`` too). Above that the ``N × N`` matrix would not fit (16 GiB at
``N = 65536``), so the floor is summed over blocks of 4096 rows: ``S_b = X_b Yᵀ``,
``S_b Y`` and ``Gᵀ X += S_bᵀ X_b`` per block, the same arithmetic in tiles.

The losses and how they are called (float32 inputs on the unit sphere, with gradients;
class labels ``arange(N) % (N // 4)``: four samples per class, as a P×K sampler gives):

* ``infonce``: ``info_nce(q, k, temperature=0.07)``, ``q`` and ``k`` of ``N`` rows;
* ``clip``: the same with ``symmetric=True``;
* ``ntxent``: ``nt_xent(z1, z2, temperature=0.5)`` with ``z1`` and ``z2`` of ``N / 2``
  rows each, so that its logit matrix is ``N × N`` like the others';
* ``supcon``: ``supcon(z, labels, temperature=0.1)``;
* ``contrastive``: ``all_pairs_contrastive_loss(z, labels, margin=1.0)``;
* ``batch_hard``: ``batch_hard_triplet_loss(z, labels, margin=0.2)``;
* ``batch_all``: ``batch_all_triplet_loss(z, labels, margin=0.2)``.

Implementations:

* ``contrastkit``: the public function as users call it (``chunk_size=None``): it takes
  its tiled path once the matrix exceeds ``2**22`` entries (``N > 2048``) and runs the
  simple implementation below that, so the two rows coincide up to noise at small ``N``.
* ``reference``: the same function forced onto its simple implementation (the child
  process raises ``contrastkit._tiled.AUTO_ELEMENTS`` out of reach).
* ``pml``: pytorch-metric-learning where it is installed: ``NTXentLoss`` for ``infonce``
  (the usual way: embeddings ``cat(q, k)``, labels ``cat(arange(N), arange(N))``, so its
  matrix is ``2N × 2N``) and for ``ntxent`` (``cat(z1, z2)``: the same loss as
  ``nt_xent``), ``SupConLoss(temperature=0.1)``, ``ContrastiveLoss(pos_margin=0,
  neg_margin=1)`` over all pairs, ``TripletMarginLoss(margin=0.2)`` with a
  ``BatchHardMiner`` and over all triplets. Its losses differ in details (normalized
  embeddings, non-zero averaging): they are compared by cost, not by value.

Cases whose estimated memory exceeds ``--memory-budget-gb`` are skipped and say so (the
estimates are peaks measured at ``N ≤ 4096`` on CPU, scaled as ``N²``, or ``N³`` where
pytorch-metric-learning builds a mask per positive pair or triplet).

Usage::

    python benchmarks/losses.py                   # N = 1024 ... 65536, D = 128 and 512
    python benchmarks/losses.py --quick           # N = 1024 and 4096, D = 128, one repeat
    python benchmarks/losses.py --losses infonce supcon --sizes 4096 --impls contrastkit
    python benchmarks/losses.py --device cuda --memory-budget-gb 70

Time it on a quiet machine: with other processes on its cores, torch's intra-op threads
wait on one another, and small operations can take milliseconds each (``--threads 1``
is steadier on a busy machine, and says so in the table).

It writes ``losses-<device>.md`` (a Markdown table), ``losses-<device>.json`` (every
number) and ``losses-<device>.png`` (ratio to the floor and peak memory against ``N``)
into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine, peak_rss_bytes, run_child

LOSSES = {
    "infonce": "info_nce(q, k, temperature=0.07)",
    "clip": "info_nce(q, k, temperature=0.07, symmetric=True)",
    "ntxent": "nt_xent(z1, z2, temperature=0.5), N/2 rows each",
    "supcon": "supcon(z, labels, temperature=0.1)",
    "contrastive": "all_pairs_contrastive_loss(z, labels, margin=1.0)",
    "batch_hard": "batch_hard_triplet_loss(z, labels, margin=0.2)",
    "batch_all": "batch_all_triplet_loss(z, labels, margin=0.2)",
}
IMPLS = ("contrastkit", "reference", "pml")
PML_LOSSES = ("infonce", "ntxent", "supcon", "contrastive", "batch_hard", "batch_all")
SIZES = (1024, 4096, 16384, 65536)
DIMS = (128, 512)
QUICK_SIZES = (1024, 4096)
QUICK_DIMS = (128,)
SAMPLES_PER_CLASS = 4
FLOOR_FULL_MAX = 16384
"""Up to this N the floor is the three full products; above it, blocks of rows."""
FLOOR_BLOCK = 4096
BIG = 65536
"""From this N on, one timed repeat unless ``--repeats`` says otherwise."""
MIB = 2**20

# Peak memory of one forward + backward in a fresh process, in bytes per N² (or per N³),
# measured on CPU at N = 4096 (N³: N = 512, and 1024 for the triplet mask), D = 128,
# and rounded up; `estimate_bytes` adds 10 % and the inputs.
PER_N2 = {
    "reference": {
        "infonce": 14,
        "clip": 18,
        "ntxent": 15,
        "supcon": 23,
        "contrastive": 46,
        "batch_hard": 24,
        "batch_all": 86,
    },
    "pml": {
        "supcon": 52,
        "contrastive": 36,
        "batch_hard": 36,
        "batch_all": 192,  # N > 1290: triplet indices built anchor by anchor, 3N² of them
    },
}
PML_PER_N3 = {
    "infonce": 140,  # a 2N² row of negatives for each of the 2N positive pairs, in float32
    "ntxent": 18,  # the same with N rows
    "batch_all": 2,  # N ≤ 1290: a byte mask of the N³ triplets, then their indices
}
PML_TRIPLET_MASK_MAX = 1290
"""pytorch-metric-learning builds the N³ triplet mask while N³ < 2**31."""


# --------------------------------------------------------------------------------------
# one case


def make_inputs(loss: str, n: int, d: int, device: str) -> tuple[list, object]:
    """The leaves (unit rows, with gradients) and the class labels (None where unused)."""
    import torch

    def leaf(rows: int):
        x = torch.nn.functional.normalize(torch.randn(rows, d, device=device), dim=1)
        return x.requires_grad_(True)

    if loss in ("infonce", "clip"):
        return [leaf(n), leaf(n)], None
    if loss == "ntxent":
        return [leaf(n // 2), leaf(n // 2)], None
    labels = torch.arange(n, device=device) % max(n // SAMPLES_PER_CLASS, 1)
    return [leaf(n)], labels


def make_loss(loss: str, impl: str, leaves: list, labels) -> Callable:
    """A function of no argument returning the loss (a scalar tensor) of these inputs."""
    import torch

    if impl in ("contrastkit", "reference"):
        import contrastkit.functional as F

        calls = {
            "infonce": lambda: F.info_nce(*leaves, temperature=0.07),
            "clip": lambda: F.info_nce(*leaves, temperature=0.07, symmetric=True),
            "ntxent": lambda: F.nt_xent(*leaves, temperature=0.5),
            "supcon": lambda: F.supcon(leaves[0], labels, temperature=0.1),
            "contrastive": lambda: F.all_pairs_contrastive_loss(leaves[0], labels, margin=1.0),
            "batch_hard": lambda: F.batch_hard_triplet_loss(leaves[0], labels, margin=0.2),
            "batch_all": lambda: F.batch_all_triplet_loss(leaves[0], labels, margin=0.2),
        }
        return calls[loss]

    from pytorch_metric_learning import losses, miners

    if loss in ("infonce", "ntxent"):
        module = losses.NTXentLoss(temperature=0.07 if loss == "infonce" else 0.5)
        rows = leaves[0].shape[0]
        twins = torch.arange(rows, device=leaves[0].device).repeat(2)
        return lambda: module(torch.cat(leaves), twins)
    if loss == "batch_hard":
        module, miner = losses.TripletMarginLoss(margin=0.2), miners.BatchHardMiner()
        return lambda: module(leaves[0], labels, miner(leaves[0], labels))
    module = {
        "supcon": lambda: losses.SupConLoss(temperature=0.1),
        "contrastive": lambda: losses.ContrastiveLoss(pos_margin=0, neg_margin=1),
        "batch_all": lambda: losses.TripletMarginLoss(margin=0.2),
    }[loss]()
    return lambda: module(leaves[0], labels)


@contextlib.contextmanager
def reference_path(active: bool) -> Iterator[None]:
    """Force the simple implementations of contrastkit's losses while active."""
    from contrastkit import _tiled

    saved = _tiled.AUTO_ELEMENTS
    if active:
        _tiled.AUTO_ELEMENTS = 1 << 62
    try:
        yield
    finally:
        _tiled.AUTO_ELEMENTS = saved


def _synchronizer(device: str) -> Callable[[], None]:
    import torch

    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def peak_bytes(fn: Callable[[], object], device: str) -> int:
    """How far memory rises above its current level while ``fn`` runs."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    return peak_rss_bytes(fn)[0]


def floor_seconds(n: int, d: int, *, device: str, repeats: int) -> float:
    """Best time of ``S = X Yᵀ``, ``G Y`` and ``Gᵀ X`` (``N × D`` inputs, ``N × N`` G)."""
    import torch

    sync = _synchronizer(device)
    x = torch.randn(n, d, device=device)
    y = torch.randn(n, d, device=device)
    block = n if n <= FLOOR_FULL_MAX else FLOOR_BLOCK
    s = torch.empty(block, n, device=device)  # S, and G in its place
    gy = torch.empty(n, d, device=device)
    gx = torch.empty(n, d, device=device)

    def products(stop_at: int = n) -> None:
        if block == n:
            torch.mm(x, y.T, out=s)
            torch.mm(s, y, out=gy)
            torch.mm(s.T, x, out=gx)
            return
        gx.zero_()
        for start in range(0, stop_at, block):
            stop = min(start + block, n)
            tile = torch.mm(x[start:stop], y.T, out=s[: stop - start])
            torch.mm(tile, y, out=gy[start:stop])
            gx.addmm_(tile.T, x[start:stop])

    products(stop_at=min(block, n))  # warm-up: one block (the whole of it up to 16384)
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        products()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def measure(loss: str, impl: str, n: int, d: int, *, device: str, repeats: int) -> dict:
    """Peak memory of a first forward + backward, then its best time against the floor."""
    import torch

    torch.manual_seed(0)
    leaves, labels = make_inputs(loss, n, d, device)
    fn = make_loss(loss, impl, leaves, labels)
    sync = _synchronizer(device)

    def step() -> None:
        fn().backward()

    def clear() -> None:
        for t in leaves:
            t.grad = None

    with reference_path(impl == "reference"):
        peak = peak_bytes(step, device)  # the first call, and the warm-up
        clear()
        floors = [floor_seconds(n, d, device=device, repeats=repeats)]
        times = []
        for _ in range(repeats):
            clear()
            sync()
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        floors.append(floor_seconds(n, d, device=device, repeats=repeats))
    time_s, floor_s = min(times), min(floors)
    return {
        "time_s": time_s,
        "floor_s": floor_s,
        "floors_s": floors,
        "ratio": time_s / floor_s,
        "peak_mb": peak / MIB,
    }


# --------------------------------------------------------------------------------------
# the grid


def tiled(loss: str, n: int) -> bool:
    """Whether contrastkit's own call takes its tiled path at this N."""
    from contrastkit import _tiled

    return _tiled.use_tiles(n, n, None)


def estimate_bytes(loss: str, impl: str, n: int, d: int) -> float:
    """A generous estimate of a case's peak memory: loss, inputs and the floor's buffer."""
    inputs = 8 * n * d * 4  # inputs, gradients, and the floor's X, Y, GY, GX
    floor = min(n, FLOOR_FULL_MAX if n <= FLOOR_FULL_MAX else FLOOR_BLOCK) * n * 4
    if impl == "contrastkit" and tiled(loss, n):
        from contrastkit import _tiled

        work = 16 * _tiled.TILE_ELEMENTS * 4 + 16 * n * d * 4
    elif impl == "pml" and loss == "batch_all" and n <= PML_TRIPLET_MASK_MAX:
        work = PML_PER_N3["batch_all"] * n**3 + PER_N2["pml"]["batch_all"] * n**2
    elif impl == "pml" and loss in PML_PER_N3 and loss != "batch_all":
        work = PML_PER_N3[loss] * n**3
    else:
        work = PER_N2["pml" if impl == "pml" else "reference"][loss] * n**2
    return 1.1 * max(work, floor) + inputs


def run_case(
    loss: str,
    impl: str,
    n: int,
    d: int,
    *,
    device: str,
    repeats: int,
    in_process: bool,
    threads: int | None = None,
) -> dict:
    """Measure one case, in a fresh process unless ``in_process``; errors are reported."""
    if in_process:
        try:
            return measure(loss, impl, n, d, device=device, repeats=repeats)
        except Exception as error:  # report it in the table; the grid goes on
            return {"error": f"{type(error).__name__}: {error}"[:200]}
    command = [sys.executable, os.path.abspath(__file__), "--child", loss, impl, str(n), str(d)]
    command += ["--repeats", str(repeats), "--device", device]
    command += ["--threads", str(threads)] if threads else []
    return run_child(command)


def machine_info(device: str) -> dict:
    info = machine(device)
    try:
        import pytorch_metric_learning

        info["pytorch_metric_learning"] = pytorch_metric_learning.__version__
    except ImportError:
        info["pytorch_metric_learning"] = None
    return info


def _cell_time(row: dict) -> list[str]:
    if "time_s" not in row:
        return [row.get("skipped") or f"failed: {row.get('error', '?')}", "", ""]
    return [f"{row['time_s']:.4g}", f"{row['ratio']:.2f}", f"{row['peak_mb']:.0f}"]


def markdown_row(row: dict) -> str:
    cells = [row["loss"], str(row["n"]), str(row["d"]), row["impl"], *_cell_time(row)]
    return "| " + " | ".join(cells) + " |"


def markdown(rows: list[dict], info: dict, settings: dict) -> str:
    pml = info["pytorch_metric_learning"]
    machine = (
        f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads"
        + (f", {info['memory_gib']} GiB memory" if "memory_gib" in info else "")
        + (f"; GPU {info['gpu']}" if "gpu" in info else "")
    )
    lines = [
        "# All-pairs losses: forward + backward against the matrix-product floor",
        "",
        f"- Machine: {machine}.",
        f"- Software: Python {info['python']}, torch {info['torch']}, "
        + (f"pytorch-metric-learning {pml}." if pml else "pytorch-metric-learning not installed."),
        f"- Date: {settings['date']}; device {info['device']}; command: `{settings['command']}`.",
        f"- Float32 inputs on the unit sphere, {SAMPLES_PER_CLASS} samples per class; "
        f"time: best of {settings['repeats']} forward + backward after a warm-up; "
        f"memory budget {settings['budget_gb']:g} GB.",
        "- **× floor**: the time over the best of the three products S = X·Yᵀ, G·Y, Gᵀ·X "
        "(N×N S and G, N×D X and Y) measured in the same process before and after the "
        f"loss; full products up to N = {FLOOR_FULL_MAX}, summed over blocks of "
        f"{FLOOR_BLOCK} rows above.",
        "- **peak MB** (MiB): growth of peak memory over the inputs during the first "
        + (
            "forward + backward of each case, all cases in one process (`--in-process`: "
            "allocator caches make these lower than a fresh process's)."
            if settings["in_process"]
            else "forward + backward of a fresh process."
        ),
        "- contrastkit takes its tiled path above 2**22 matrix entries (N > 2048); below, "
        "it runs the same code as the reference. ntxent's two views hold N/2 rows each; "
        "pml's infonce is NT-Xent over the 2N rows of (q, k).",
        "",
        "| loss | N | D | impl | fwd+bwd s | × floor | peak MB |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
        *(markdown_row(row) for row in rows),
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Ratio to the floor and peak memory against N, one row of panels per D."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    dims = sorted({row["d"] for row in rows})
    losses = list(dict.fromkeys(row["loss"] for row in rows))
    styles = {"contrastkit": "-", "reference": "--", "pml": ":"}
    colors = {loss: f"C{i}" for i, loss in enumerate(losses)}
    fig = Figure(figsize=(12, 4 * len(dims)))
    axes = fig.subplots(len(dims), 2, squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.85, bottom=0.12 / len(dims), top=1 - 0.08 / len(dims))
    fig.subplots_adjust(wspace=0.25, hspace=0.35)
    for (ratio_ax, memory_ax), d in zip(axes, dims, strict=True):
        for loss in losses:
            for impl, style in styles.items():
                done = [
                    r
                    for r in rows
                    if r["loss"] == loss and r["impl"] == impl and r["d"] == d and "time_s" in r
                ]
                if not done:
                    continue
                done.sort(key=lambda r: r["n"])
                sizes = [r["n"] for r in done]
                kwargs = {"color": colors[loss], "linestyle": style, "marker": "o", "ms": 3}
                ratio_ax.plot(sizes, [r["ratio"] for r in done], **kwargs)
                memory_ax.plot(sizes, [max(r["peak_mb"], 1e-3) for r in done], **kwargs)
        for ax in (ratio_ax, memory_ax):
            ax.set_xscale("log", base=2)
            sizes = sorted({r["n"] for r in rows if r["d"] == d})
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.minorticks_off()
            ax.set_xlabel("N")
        ratio_ax.set_yscale("log")
        ratio_ax.set_title(f"D = {d}: forward + backward time / matrix-product floor")
        ratio_ax.set_ylabel("× floor")
        memory_ax.set_yscale("log")
        memory_ax.set_title(f"D = {d}: peak memory of one forward + backward")
        memory_ax.set_ylabel("MiB")
    handles = [Line2D([], [], color=colors[loss], label=loss) for loss in losses]
    handles += [Line2D([], [], color="k", linestyle=s, label=impl) for impl, s in styles.items()]
    fig.legend(handles=handles, loc="center right")
    fig.savefig(path, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help=f"batch sizes N (default {SIZES})")
    parser.add_argument("--dims", type=int, nargs="+", help=f"embedding sizes D (default {DIMS})")
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--repeats", type=int, help=f"timed repeats (default 3; 1 from N = {BIG})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:K)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--memory-budget-gb", type=float, default=16.0)
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results")
    parser.add_argument(
        "--quick", action="store_true", help=f"N = {QUICK_SIZES}, D = {QUICK_DIMS}, one repeat"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every case in this process (for tests; memory is then not a fresh process's)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # loss impl N D: JSON out
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or list(QUICK_SIZES)
        args.dims = args.dims or list(QUICK_DIMS)
        args.repeats = args.repeats or 1
    args.sizes = args.sizes or list(SIZES)
    args.dims = args.dims or list(DIMS)
    for n in args.sizes:
        if n < 2 * SAMPLES_PER_CLASS or n % SAMPLES_PER_CLASS:
            parser.error(f"--sizes must be multiples of {SAMPLES_PER_CLASS} from 8, got {n}")
    if min(args.dims) < 1:
        parser.error(f"--dims must be positive, got {args.dims}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.memory_budget_gb <= 0:
        parser.error(f"--memory-budget-gb must be positive, got {args.memory_budget_gb}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child:
        loss, impl, n, d = args.child
        result = measure(loss, impl, int(n), int(d), device=args.device, repeats=args.repeats or 1)
        print(json.dumps(result))
        return

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    info = machine_info(args.device)
    has_pml = info["pytorch_metric_learning"] is not None
    budget = args.memory_budget_gb * 1e9
    command = "python benchmarks/losses.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    settings = {
        "command": command.strip(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "sizes": args.sizes,
        "dims": args.dims,
        "losses": args.losses,
        "impls": args.impls,
        "repeats": args.repeats or f"3 (1 from N = {BIG})",
        "budget_gb": args.memory_budget_gb,
        "in_process": args.in_process,
    }
    print(f"{info['cpu']}, torch {info['torch']}, device {args.device}", flush=True)
    print("| loss | N | D | impl | fwd+bwd s | × floor | peak MB |", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"losses-{args.device.replace(':', '')}"
    rows: list[dict] = []
    for loss, n, d, impl in itertools.product(args.losses, args.sizes, args.dims, args.impls):
        if impl == "pml" and loss not in PML_LOSSES:
            continue
        row: dict = {"loss": loss, "n": n, "d": d, "impl": impl}
        estimate = estimate_bytes(loss, impl, n, d)
        row["estimate_gb"] = round(estimate / 1e9, 3)
        if impl == "contrastkit":
            row["path"] = "tiled" if tiled(loss, n) else "simple"
        if impl == "pml" and not has_pml:
            row["skipped"] = "skipped: pytorch-metric-learning not installed"
        elif estimate > budget:
            row["skipped"] = (
                f"skipped: needs about {estimate / 1e9:.1f} GB > {args.memory_budget_gb:g} GB"
            )
        else:
            repeats = args.repeats or (1 if n >= BIG else 3)
            row |= run_case(
                loss,
                impl,
                n,
                d,
                device=args.device,
                repeats=repeats,
                in_process=args.in_process,
                threads=args.threads,
            )
        rows.append(row)
        print(markdown_row(row), flush=True)
        # written as it goes, so that an interrupted run keeps what it measured
        stem.with_suffix(".md").write_text(markdown(rows, info, settings))
        document = {"machine": info, "settings": settings, "results": rows}
        stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    plot(rows, stem.with_suffix(".png"))
    print(f"wrote {stem}.md, .json and .png", flush=True)


if __name__ == "__main__":
    main()
