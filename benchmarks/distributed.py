"""A training step with ``gather=True`` on 1 and W processes: time, collectives, memory.

One global batch of ``G`` rows is split over ``W`` processes (``B = G / W`` each) and
the same training step runs at every ``W``: a small MLP encoder (``--in-dim`` →
``--hidden`` → ReLU → ``D``), one of contrastkit's losses over the pairs of a batch with
``gather=True`` (each process's rows are the anchors, every process's rows the
candidates), backward, the parameter gradients averaged over processes, and an SGD step.
The processes are launched by ``torchrun --standalone`` (one fresh process per rank, for
every case), on gloo for ``--device cpu`` and NCCL for ``--device cuda`` (one GPU per
rank, ``LOCAL_RANK``). At ``W = 1`` the group has one process and the loss is the
one-process loss (``gather=True`` is then a no-op).

What is measured in each process, for each ``W``, ``G`` and ``D``:

1. **Memory**: the model, the optimizer and this process's rows are made (the same data
   and initial weights at every ``W``: the global batch is drawn from one seed and each
   rank takes its rows), then one training step runs, the first in the process. Its
   peak is the growth of the process's high-water resident memory (``VmHWM``, reset
   through ``/proc/self/clear_refs`` just before the step) over what the process held
   before it, and the same for the loss's forward and backward alone (reset again when
   the loss starts); the table also gives the process's whole peak (torch and the
   process group included). On CUDA: ``torch.cuda.max_memory_allocated`` over the
   memory allocated at each reset. This first step is also the warm-up. Resident memory
   includes what the C allocator keeps after a free; with glibc,
   ``MALLOC_MMAP_THRESHOLD_=65536`` in the environment makes it follow the live tensors.
2. **Time**: ``--repeats`` more steps, each started after a barrier. Each step is timed
   in four parts, every rank's times are collected, and the table shows the step whose
   slowest rank was fastest (best of the repeats), each part's time being the slowest
   rank's:

   * **encoder**: the encoder's forward and its backward (the embeddings are cut from
     the graph, ``z.detach().requires_grad_()``, so that the loss's backward and the
     encoder's run, and are timed, apart; the gradients are those of one backward);
   * **loss**: the loss's forward and backward, collectives included;
   * **collectives**: the time inside ``torch.distributed.all_gather`` and
     ``all_reduce`` while the loss runs: the sizes' exchange, the rows' and the labels'
     all-gathers, the all-reduce of the counts and the loss value, and the backward's
     all-reduce of the gathered rows' gradient. They are timed by wrapping those two
     functions (``contrastkit.distributed`` calls them through ``torch.distributed``),
     with a device synchronisation around each on CUDA. A collective's time includes
     waiting for the slowest rank to reach it;
   * **grad sync**: one ``all_reduce`` of every parameter gradient, flattened, then
     divided by ``W``: what :class:`~torch.nn.parallel.DistributedDataParallel` does,
     without its buckets and without overlapping the backward;

   the rest of the step is the SGD update. The collectives' bytes (what each call's
   buffers hold, on this process) are counted too.
3. **Check**: the first step's loss value and the norm of its parameter update, which
   must agree across ``W`` (one process's step on the whole batch); the table's last
   lines give the largest relative difference.

The losses and their inputs, as in ``benchmarks/losses.py`` (four samples per class,
``G`` the side of the loss's matrix): ``supcon(z, y, temperature=0.1)`` (the default),
``info_nce(q, k, temperature=0.07)`` and ``clip`` (the same with ``symmetric=True``) with
``q`` and ``k`` of ``B`` rows each (the encoder embeds ``2B`` rows), ``nt_xent(z1, z2,
temperature=0.5)`` with ``B / 2`` rows each, ``all_pairs_contrastive_loss(z, y,
margin=1.0)``, ``batch_hard_triplet_loss(z, y, margin=0.2)`` and
``batch_all_triplet_loss(z, y, margin=0.2)``.

Several processes on one machine's CPU share its cores and memory bandwidth: there,
``W = 2`` is not a faster way to train than ``W = 1``; what these runs measure is the
share of a step spent in the collectives and how memory per process follows ``G``. Set
the threads per process with ``--threads`` (default 1: ``W`` processes then use ``W``
cores).

``--plan`` prints, on paper, what a step costs per process at larger ``W`` (bytes
exchanged at given bandwidths, memory, arithmetic): see :func:`plan`.

Usage::

    python benchmarks/distributed.py                          # W = 1, 2; G = 1024 ... 16384
    python benchmarks/distributed.py --sizes 4096 --dims 128 --loss clip --repeats 5
    python benchmarks/distributed.py --device cuda --worlds 1 2 4 8   # NCCL, a GPU per rank
    python benchmarks/distributed.py --plan                   # the table for W = 8 ... 1024

It writes ``distributed-<device>.md`` (a Markdown table) and ``distributed-<device>.json``
(every number) into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine, maxrss_bytes, status_kb

LOSSES = ("supcon", "infonce", "clip", "ntxent", "contrastive", "batch_hard", "batch_all")
CALLS = {
    "supcon": "supcon(z, y, temperature=0.1, gather=True)",
    "infonce": "info_nce(q, k, temperature=0.07, gather=True)",
    "clip": "info_nce(q, k, temperature=0.07, symmetric=True, gather=True)",
    "ntxent": "nt_xent(z1, z2, temperature=0.5, gather=True)",
    "contrastive": "all_pairs_contrastive_loss(z, y, margin=1.0, gather=True)",
    "batch_hard": "batch_hard_triplet_loss(z, y, margin=0.2, gather=True)",
    "batch_all": "batch_all_triplet_loss(z, y, margin=0.2, gather=True)",
}
WORLDS = (1, 2)
SIZES = (1024, 4096, 16384)
DIMS = (128, 512)
SAMPLES_PER_CLASS = 4
IN_DIM = 64
HIDDEN = 256
MIB = 2**20
TIMEOUT_S = 1800
"""Longest one case may take (the processes are then killed and the case reports it)."""

PLAN_WORLDS = (8, 64, 256, 1024)
PLAN_BATCH = 256
PLAN_DIMS = (256, 768)
PLAN_BANDWIDTHS_GBS = (25.0, 100.0, 400.0)
PLAN_COPIES = 8
"""``N × D`` buffers a gathered loss holds at its peak, per process (see :func:`plan`)."""
PLAN_TILE_BUFFERS = 1
"""Tile-sized buffers the tiled kernels hold at once (one ``rows × N`` buffer)."""
TILE_ELEMENTS = 1 << 23
"""contrastkit's automatic tile size in elements (``_tiled.TILE_ELEMENTS``)."""


# --------------------------------------------------------------------------------------
# on paper


def plan(
    worlds: tuple[int, ...] = PLAN_WORLDS,
    batch: int = PLAN_BATCH,
    dims: tuple[int, ...] = PLAN_DIMS,
    bandwidths_gbs: tuple[float, ...] = PLAN_BANDWIDTHS_GBS,
    bytes_per_value: int = 4,
) -> list[dict]:
    """Per process and per step: bytes exchanged, their time, memory and arithmetic.

    For ``W`` processes of ``B`` rows of ``D`` features (``N = W·B`` candidates), one
    step of a loss with ``gather=True`` exchanges, per gathered tensor of embeddings:

    * forward, an all-gather of the ``N × D`` rows: with a ring, each process sends and
      receives ``(W − 1)/W`` of the gathered buffer, ``(W − 1)·B·D`` values;
    * backward, an all-reduce of their ``N × D`` gradient: a ring all-reduce sends and
      receives ``2·(W − 1)/W`` of the buffer, ``2·(W − 1)·B·D`` values;

    ``3·(W − 1)·B·D·bytes_per_value`` bytes received (and as many sent) in all, at the
    bandwidth one process sustains in a collective (what nccl-tests calls bus
    bandwidth). CLIP gathers and reduces two such tensors (queries and keys), InfoNCE
    gathers two and reduces one. Left out: the labels' all-gather (8 bytes per row),
    the sizes' exchange (``W`` integers) and the all-reduce of the counts (two numbers),
    small in bytes; the latency of each collective, which grows with ``W`` for a ring
    (``W − 1`` steps; NCCL may choose a tree for an all-reduce, ``log W``); any overlap
    with computation (none here: the loss waits for the rows, and the encoder's
    backward for their gradient); and the parameter gradients' all-reduce, which does
    not depend on the loss.

    Memory of the loss's forward and backward, per process: ``PLAN_COPIES`` buffers of
    ``N × D`` values plus ``PLAN_TILE_BUFFERS`` tile of ``min(B·N, max(TILE_ELEMENTS,
    N))`` values (a tile holds at least one row of ``N``, and at most the ``B × N``
    matrix). The copies are the gathered rows (twice while the all-gather's parts are
    concatenated), their unit-length copy, the per-class sums, the gradient the tiled
    kernel builds in the forward pass, the gradients handed back through the
    normalisation and the gather, and the backward all-reduce's buffer; not all live at
    once. 8 is measured: supcon's peak grew by 6.75 and 7.9 ``N × D`` float32 buffers
    from ``D = 128`` to ``D = 512`` at ``G = 8192`` and ``16384``, ``W = 2`` on CPU,
    with glibc's ``MALLOC_MMAP_THRESHOLD_=65536`` so that resident memory follows the
    live tensors (without it, freed memory the allocator keeps nearly doubles the
    growth); at ``G = 16384`` the plan gives 96 and 288 MiB, the step measured 97 and
    287 MiB.
    Arithmetic per process: the three products of a ``B × N`` tile with ``N × D`` rows
    (``S = A·Cᵀ``, ``P·C`` and ``Pᵀ·A``), ``6·B·N·D`` floating-point operations.

    Args:
        worlds: the numbers of processes ``W``.
        batch: rows per process ``B``.
        dims: embedding sizes ``D``.
        bandwidths_gbs: per-process bandwidths, in GB/s (10⁹ bytes per second).
        bytes_per_value: 4 for float32 (contrastkit computes half-precision inputs in
            float32, so it gathers float32).

    Returns:
        One dict per ``(D, W)``: ``w``, ``b``, ``d``, ``n``, ``gathered_bytes`` (the
        ``N × D`` buffer), ``forward_bytes``, ``backward_bytes``, ``moved_bytes`` (their
        sum), ``seconds`` (``{bandwidth: moved / bandwidth}``), ``memory_bytes`` and
        ``flops``.
    """
    out = []
    for d in dims:
        for w in worlds:
            n = w * batch
            gathered = n * d * bytes_per_value
            forward = (w - 1) * batch * d * bytes_per_value
            backward = 2 * (w - 1) * batch * d * bytes_per_value
            moved = forward + backward
            tile = min(batch * n, max(TILE_ELEMENTS, n))  # B·N below, as one process
            tiles = PLAN_TILE_BUFFERS * tile * bytes_per_value
            out.append(
                {
                    "w": w,
                    "b": batch,
                    "d": d,
                    "n": n,
                    "gathered_bytes": gathered,
                    "forward_bytes": forward,
                    "backward_bytes": backward,
                    "moved_bytes": moved,
                    "seconds": {bw: moved / (bw * 1e9) for bw in bandwidths_gbs},
                    "memory_bytes": PLAN_COPIES * gathered + tiles,
                    "flops": 6 * batch * n * d,
                }
            )
    return out


def _size(n_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} B"


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms"


def plan_markdown(rows: list[dict]) -> str:
    """The plan as a Markdown table (one row per ``D`` and ``W``)."""
    bandwidths = list(rows[0]["seconds"])
    head = [
        "D",
        "W",
        "N = W·B",
        "gathered N×D",
        "received (= sent)",
        *(f"at {bw:g} GB/s" for bw in bandwidths),
        "loss memory",
        "loss TFLOP",
    ]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---:"] * len(head)) + " |"]
    for r in rows:
        cells = [
            str(r["d"]),
            str(r["w"]),
            f"{r['n']:,}",
            _size(r["gathered_bytes"]),
            _size(r["moved_bytes"]),
            *(_duration(r["seconds"][bw]) for bw in bandwidths),
            _size(r["memory_bytes"]),
            f"{r['flops'] / 1e12:.3g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# one process of one case


class Memory:
    """Peak memory since a mark: ``VmHWM`` on Linux, CUDA's allocator on a GPU.

    :meth:`mark` resets the high-water mark to the current level (through
    ``/proc/self/clear_refs`` on Linux) and returns that level; :meth:`peak` is the
    high-water mark since. Where the mark cannot be reset, the process's peak so far
    (``getrusage``) stands in for both.
    """

    def __init__(self, device: str) -> None:
        self.device = device

    def mark(self) -> int:
        """Reset the peak to the current level; that level, in bytes."""
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return int(torch.cuda.memory_allocated(self.device))
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            return maxrss_bytes()
        level = status_kb("VmHWM")
        return level * 1024 if level is not None else maxrss_bytes()

    def peak(self) -> int:
        """The peak since the last mark, in bytes."""
        return process_peak_bytes(self.device)


def process_peak_bytes(device: str) -> int:
    """The process's peak (since the last mark): ``VmHWM``, ``getrusage``, or CUDA's."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    hwm = status_kb("VmHWM")
    return hwm * 1024 if hwm is not None else maxrss_bytes()


class Collectives:
    """Time and bytes inside ``torch.distributed.all_gather`` and ``all_reduce``.

    While :meth:`watch` is active, both functions are replaced by wrappers that time
    each call (synchronising a CUDA device before and after it) and count the bytes of
    its buffers; everything that calls them through ``torch.distributed`` is seen.
    """

    def __init__(self, device: str) -> None:
        import torch.distributed as dist

        self.device = device
        self.all_gather = dist.all_gather
        self.all_reduce = dist.all_reduce
        self.reset()

    def reset(self) -> None:
        """Start counting again from zero."""
        self.seconds = 0.0
        self.bytes = 0
        self.calls: dict[str, int] = {"all_gather": 0, "all_reduce": 0}

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    def _timed(self, name: str, fn: Callable[..., Any], n_bytes: int) -> Callable[[], Any]:
        def call() -> Any:
            self._sync()
            start = time.perf_counter()
            out = fn()
            self._sync()
            self.seconds += time.perf_counter() - start
            self.bytes += n_bytes
            self.calls[name] += 1
            return out

        return call

    @contextlib.contextmanager
    def watch(self) -> Iterator[Collectives]:
        """Count the collectives called through ``torch.distributed`` meanwhile."""
        import torch.distributed as dist

        def all_gather(tensor_list: list, tensor: Any, *args: Any, **kwargs: Any) -> Any:
            n_bytes = sum(t.numel() * t.element_size() for t in tensor_list)
            run = self._timed(
                "all_gather", lambda: self.all_gather(tensor_list, tensor, *args, **kwargs), n_bytes
            )
            return run()

        def all_reduce(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            n_bytes = tensor.numel() * tensor.element_size()
            run = self._timed(
                "all_reduce", lambda: self.all_reduce(tensor, *args, **kwargs), n_bytes
            )
            return run()

        dist.all_gather, dist.all_reduce = all_gather, all_reduce  # type: ignore[assignment]
        try:
            yield self
        finally:
            dist.all_gather, dist.all_reduce = self.all_gather, self.all_reduce


def make_batch(loss: str, g: int, rank: int, world: int, in_dim: int, device: str) -> tuple:
    """This rank's inputs and labels: its rows of one global batch drawn from seed 0."""
    import torch

    b = g // world
    generator = torch.Generator().manual_seed(0)
    if loss in ("infonce", "clip"):  # B pairs: queries' inputs, then keys'
        x = torch.randn(2, g, in_dim, generator=generator)[:, rank * b : (rank + 1) * b]
        return x.reshape(2 * b, in_dim).to(device), None
    if loss == "ntxent":  # B / 2 examples, two views each
        h = b // 2
        x = torch.randn(2, g // 2, in_dim, generator=generator)[:, rank * h : (rank + 1) * h]
        return x.reshape(b, in_dim).to(device), None
    x = torch.randn(g, in_dim, generator=generator)[rank * b : (rank + 1) * b]
    labels = torch.arange(g) % max(g // SAMPLES_PER_CLASS, 1)
    return x.to(device), labels[rank * b : (rank + 1) * b].to(device)


def make_loss(loss: str, labels: Any) -> Callable[[Any], Any]:
    """The loss with ``gather=True``, as a function of this rank's embeddings."""
    import contrastkit.functional as F

    def halves(z: Any) -> tuple[Any, Any]:
        return z[: z.shape[0] // 2], z[z.shape[0] // 2 :]

    calls: dict[str, Callable[[Any], Any]] = {
        "supcon": lambda z: F.supcon(z, labels, temperature=0.1, gather=True),
        "infonce": lambda z: F.info_nce(*halves(z), temperature=0.07, gather=True),
        "clip": lambda z: F.info_nce(*halves(z), temperature=0.07, symmetric=True, gather=True),
        "ntxent": lambda z: F.nt_xent(*halves(z), temperature=0.5, gather=True),
        "contrastive": lambda z: F.all_pairs_contrastive_loss(z, labels, margin=1.0, gather=True),
        "batch_hard": lambda z: F.batch_hard_triplet_loss(z, labels, margin=0.2, gather=True),
        "batch_all": lambda z: F.batch_all_triplet_loss(z, labels, margin=0.2, gather=True),
    }
    return calls[loss]


def measure(
    loss: str,
    g: int,
    d: int,
    *,
    device: str,
    repeats: int,
    in_dim: int = IN_DIM,
    hidden: int = HIDDEN,
) -> dict:
    """One rank's part of a case, in the initialised process group; every rank's result.

    Returns, on every rank, the first step's peak memory and check values, and the
    parts of the best step (each the slowest rank's), as described in the module notes.
    """
    import torch
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else lambda: None
    x, labels = make_batch(loss, g, rank, world, in_dim, device)
    torch.manual_seed(0)  # the same initial weights on every rank and at every W
    model = torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d)
    ).to(device)
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    fn = make_loss(loss, labels)
    collectives = Collectives(device)

    def step(memory: dict | None = None) -> tuple[list[float], float]:
        """The step's part times (encoder, loss, collectives, grad sync, total), loss.

        With ``memory`` (a dict), its peaks are measured and put there: ``step`` (the
        growth over the level before the step), ``loss`` (the growth during the loss's
        forward and backward over the level before it) and ``level`` (before the step).
        """
        collectives.all_reduce(torch.zeros(1, device=device))  # a barrier on any backend
        if memory is not None:
            memory["level"] = meter.mark()
        sync()
        start = time.perf_counter()
        z = model(x)
        cut = z.detach().requires_grad_(True)
        sync()
        t_forward = time.perf_counter()
        if memory is not None:
            before_loss = meter.peak()
            loss_level = meter.mark()
        collectives.reset()
        with collectives.watch():
            value = fn(cut)
            value.backward()
        sync()
        t_loss = time.perf_counter()
        if memory is not None:
            memory["loss"] = meter.peak() - loss_level
        z.backward(cut.grad)
        sync()
        t_encoder = time.perf_counter()
        flat = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
        collectives.all_reduce(flat)
        flat /= world
        for p, g_p in zip(params, flat.split([p.numel() for p in params]), strict=True):
            assert p.grad is not None
            p.grad.copy_(g_p.view_as(p))
        sync()
        t_sync = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        stop = time.perf_counter()
        if memory is not None:
            memory["step"] = max(before_loss, meter.peak()) - memory["level"]
        encoder = (t_forward - start) + (t_encoder - t_loss)
        parts = [encoder, t_loss - t_forward, collectives.seconds, t_sync - t_encoder]
        return [*parts, stop - start], float(value.detach())

    before = [p.detach().clone() for p in params]
    meter = Memory(device)
    history = process_peak_bytes(device)  # before the first mark: the peak so far
    memory: dict = {}
    _, first_loss = step(memory)  # the first step in the process, and the warm-up
    process_peak = max(history, memory["level"] + memory["step"])
    update = torch.cat(
        [
            (p.detach().double() - q.double()).reshape(-1)
            for p, q in zip(params, before, strict=True)
        ]
    ).norm()
    traffic = {"bytes": collectives.bytes, "calls": dict(collectives.calls)}
    steps = [step()[0] for _ in range(repeats)]

    # every rank's numbers, to every rank
    mine = torch.tensor(
        [memory["step"], memory["loss"], process_peak, *(t for s in steps for t in s)],
        dtype=torch.float64,
        device=device,
    )
    every = [torch.empty_like(mine) for _ in range(world)]
    collectives.all_gather(every, mine)
    table = torch.stack(every).cpu()
    per_step = table[:, 3:].reshape(world, repeats, 5).amax(dim=0)  # slowest rank
    best = per_step[per_step[:, 4].argmin()].tolist()
    encoder_s, loss_s, collectives_s, grad_sync_s, step_s = best
    return {
        "w": world,
        "g": g,
        "b": g // world,
        "d": d,
        "step_s": step_s,
        "encoder_s": encoder_s,
        "loss_s": loss_s,
        "collectives_s": collectives_s,
        "collectives_share": collectives_s / step_s,
        "grad_sync_s": grad_sync_s,
        "steps_s": per_step[:, 4].tolist(),
        "step_peak_mb": float(table[:, 0].max()) / MIB,
        "loss_peak_mb": float(table[:, 1].max()) / MIB,
        "process_peak_mb": float(table[:, 2].max()) / MIB,
        "step_peak_mb_per_rank": (table[:, 0] / MIB).tolist(),
        "loss_peak_mb_per_rank": (table[:, 1] / MIB).tolist(),
        "collective_bytes": traffic["bytes"],
        "collective_calls": traffic["calls"],
        "first_loss": first_loss,
        "first_update_norm": float(update),
        "parameters": sum(p.numel() for p in params),
    }


def child(args: argparse.Namespace) -> None:
    """One rank under torchrun: join the group, measure, print the result on rank 0."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    try:
        loss, g, d = args.child[0], int(args.child[1]), int(args.child[2])
        result = measure(
            loss, g, d, device=device, repeats=args.repeats, in_dim=args.in_dim, hidden=args.hidden
        )
        result["backend"] = backend
        result["threads"] = torch.get_num_threads()
        if dist.get_rank() == 0:
            print(json.dumps(result), flush=True)
        dist.barrier()  # no rank leaves while another is still exchanging
    finally:
        dist.destroy_process_group()
    # Done and printed. Skip the interpreter's teardown: with gloo under torchrun it
    # sometimes ends in std::terminate ("terminate called without an active exception",
    # SIGABRT) after destroy_process_group, in about one exit in ten on this machine with
    # torch 2.13, which torchrun then reports as a failed case.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------------------
# the grid


def _failure(stderr: str, returncode: int) -> str:
    """The most telling line of a failed run's standard error."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [
        line
        for line in lines
        if ("Error" in line or "error:" in line) and "ChildFailedError" not in line
    ]
    if errors:
        return errors[-1][:200]
    if returncode < 0:
        return f"killed by signal {-returncode}" + (" (out of memory?)" if returncode == -9 else "")
    return (lines[-1] if lines else f"exit status {returncode}")[:200]


def run_case(loss: str, w: int, g: int, d: int, args: argparse.Namespace) -> dict:
    """Run one case on ``w`` fresh processes under torchrun; errors are reported."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    command += ["--nproc-per-node", str(w), os.path.abspath(__file__)]
    command += ["--child", loss, str(g), str(d), "--repeats", str(args.repeats)]
    command += ["--device", args.device, "--threads", str(args.threads)]
    command += ["--in-dim", str(args.in_dim), "--hidden", str(args.hidden)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {TIMEOUT_S} s"}
    if out.returncode != 0:
        return {"error": _failure(out.stderr, out.returncode)}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no result from the processes: {out.stdout[-200:]!r}"}


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes) and cores, as ``uptime`` says."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def machine_info(device: str) -> dict:
    return machine(device)


HEADER = (
    "| W | G | B | D | step ms | collectives ms (share) | loss ms | encoder ms | grad sync ms "
    "| step peak MiB | loss peak MiB | process peak MiB | exchanged MiB | first loss |"
)


def markdown_row(row: dict) -> str:
    cells = [str(row["w"]), str(row["g"]), str(row["g"] // row["w"]), str(row["d"])]
    if "step_s" not in row:
        cells += [f"failed: {row.get('error', '?')}"] + [""] * 9
    else:
        cells += [
            f"{row['step_s'] * 1e3:.1f}",
            f"{row['collectives_s'] * 1e3:.1f} ({100 * row['collectives_share']:.0f} %)",
            f"{row['loss_s'] * 1e3:.1f}",
            f"{row['encoder_s'] * 1e3:.1f}",
            f"{row['grad_sync_s'] * 1e3:.2f}",
            f"{row['step_peak_mb']:.0f}",
            f"{row['loss_peak_mb']:.0f}",
            f"{row['process_peak_mb']:.0f}",
            f"{row['collective_bytes'] / MIB:.2f}",
            f"{row['first_loss']:.6f}",
        ]
    return "| " + " | ".join(cells) + " |"


def agreement(rows: list[dict]) -> list[str]:
    """For each ``(G, D)``: the largest relative difference of the checks across ``W``."""
    lines = []
    done = [r for r in rows if "step_s" in r]
    for g, d in dict.fromkeys((r["g"], r["d"]) for r in done):
        same = [r for r in done if (r["g"], r["d"]) == (g, d)]
        if len(same) < 2:
            continue
        gaps = []
        for key in ("first_loss", "first_update_norm"):
            values = [r[key] for r in same]
            gaps.append((max(values) - min(values)) / max(abs(min(values)), 1e-30))
        worlds = ", ".join(str(r["w"]) for r in same)
        lines.append(
            f"- G = {g}, D = {d}, W = {worlds}: first-step loss within {gaps[0]:.1e} "
            f"(relative), parameter update norm within {gaps[1]:.1e}."
        )
    return lines


def markdown(rows: list[dict], info: dict, settings: dict) -> str:
    machine = (
        f"{info['cpu']}, {info['cores']} cores"
        + (f", {info['memory_gib']} GiB memory" if "memory_gib" in info else "")
        + (f"; {info['gpus']} × {info['gpu']}" if "gpu" in info else "")
    )
    lines = [
        f"# A training step with `gather=True` on W processes ({settings['loss']})",
        "",
        f"- Machine: {machine}; load average (1, 5, 15 min) {settings['load_before']} "
        f"before the run, {settings['load_after']} after it.",
        f"- Software: Python {info['python']}, torch {info['torch']}; backend "
        f"{'nccl' if info['device'].startswith('cuda') else 'gloo'}, processes launched by "
        f"torchrun, {settings['threads']} torch thread(s) per process.",
        f"- Date: {settings['date']}; command: `{settings['command']}`.",
        *([f"- Note: {settings['note']}"] if settings.get("note") else []),
        f"- Step: MLP encoder {settings['in_dim']} → {settings['hidden']} → ReLU → D, "
        f"`{CALLS[settings['loss']]}` over a global batch of G rows (B = G / W per "
        f"process, {SAMPLES_PER_CLASS} samples per class), backward, gradients averaged "
        "over processes (one all-reduce), SGD. Times: best of "
        f"{settings['repeats']} steps after a warm-up step, each part the slowest rank's.",
        "- **collectives**: time inside `torch.distributed.all_gather` / `all_reduce` "
        "during the loss's forward and backward (wrapped functions; waiting for the other "
        "rank included), and its share of the step. **loss**: the loss's forward + "
        "backward, collectives included. **encoder**: the encoder's forward + backward. "
        "**grad sync**: the all-reduce of the parameter gradients.",
        "- **step peak MiB**: growth of the process's peak resident memory (VmHWM) during "
        "its first step over the memory it held before (model, data), the largest over "
        "ranks; **loss peak MiB**: the same during the loss's forward + backward, over the "
        "memory held when it starts (the embeddings made); **process peak MiB**: the "
        "process's whole VmHWM (Python, torch and gloo included). **exchanged MiB**: the "
        "bytes of the loss's collective buffers on one process in one step (gathered rows "
        "and labels, the gradient's all-reduce, sizes and counts).",
        f"- W processes run {settings['threads']} thread(s) each on this one machine: W = 1 "
        f"uses {settings['threads']} core(s), W = 2 twice as many, all sharing one memory "
        "bus (and the machine with other work). A step that is faster at W = 2 here has "
        "more cores, not a better algorithm; what these rows measure is the collectives' "
        "share of a step and how memory per process follows G.",
        "",
        HEADER,
        "|" + " ---: |" * 14,
        *(markdown_row(row) for row in rows),
        "",
        "Checks (one process's step on the whole batch at every W):",
        "",
        *agreement(rows),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=list(WORLDS))
    parser.add_argument("--sizes", type=int, nargs="+", help=f"global batches G (default {SIZES})")
    parser.add_argument("--dims", type=int, nargs="+", help=f"embedding sizes D (default {DIMS})")
    parser.add_argument("--loss", choices=LOSSES, default="supcon")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--in-dim", type=int, default=IN_DIM, help="the encoder's input size")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="the encoder's hidden size")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results")
    parser.add_argument("--note", help="a line for the results (what was measured, and where)")
    parser.add_argument(
        "--plan", action="store_true", help="print the plan for large W, run nothing"
    )
    parser.add_argument("--plan-worlds", type=int, nargs="+", default=list(PLAN_WORLDS))
    parser.add_argument("--plan-batch", type=int, default=PLAN_BATCH, help="rows per process")
    parser.add_argument("--plan-dims", type=int, nargs="+", default=list(PLAN_DIMS))
    parser.add_argument(
        "--plan-bandwidths", type=float, nargs="+", default=list(PLAN_BANDWIDTHS_GBS), help="GB/s"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # loss G D, under torchrun
    args = parser.parse_args(argv)
    args.sizes = args.sizes or list(SIZES)
    args.dims = args.dims or list(DIMS)
    for name in ("worlds", "dims", "plan_worlds", "plan_dims"):
        values = getattr(args, name)
        if min(values) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {values}")
    for w in args.worlds:
        for g in args.sizes:
            if g % w or (g // w) % 2 or g % SAMPLES_PER_CLASS or g < 2 * SAMPLES_PER_CLASS:
                parser.error(
                    f"--sizes must split into an even number of rows per process for every W "
                    f"in --worlds, and be multiples of {SAMPLES_PER_CLASS} from "
                    f"{2 * SAMPLES_PER_CLASS}; got G = {g} for W = {w}"
                )
    for name in ("repeats", "threads", "in_dim", "hidden", "plan_batch"):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
            )
    if min(args.plan_bandwidths) <= 0:
        parser.error(f"--plan-bandwidths must be positive, got {args.plan_bandwidths}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    if args.plan:
        planned = plan(
            tuple(args.plan_worlds),
            args.plan_batch,
            tuple(args.plan_dims),
            tuple(args.plan_bandwidths),
        )
        print(f"B = {args.plan_batch} rows per process, float32; per process and per step:\n")
        print(plan_markdown(planned), end="")
        return

    import torch

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
        if max(args.worlds) > torch.cuda.device_count():
            raise SystemExit(
                f"--worlds {max(args.worlds)} needs as many GPUs, this machine has "
                f"{torch.cuda.device_count()}"
            )
    info = machine_info(args.device)
    command = "python benchmarks/distributed.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    settings: dict[str, Any] = {
        "command": command.strip(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "loss": args.loss,
        "worlds": args.worlds,
        "sizes": args.sizes,
        "dims": args.dims,
        "repeats": args.repeats,
        "threads": args.threads,
        "in_dim": args.in_dim,
        "hidden": args.hidden,
        "load_before": load(),
        "note": args.note,
    }
    print(f"{info['cpu']}, torch {info['torch']}, device {args.device}", flush=True)
    print(HEADER, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"distributed-{args.device.split(':')[0]}"
    rows: list[dict] = []
    for g in args.sizes:
        for d in args.dims:
            for w in args.worlds:
                row = {"loss": args.loss, "w": w, "g": g, "d": d}
                row |= run_case(args.loss, w, g, d, args)
                rows.append(row)
                print(markdown_row(row), flush=True)
                # written as it goes, so that an interrupted run keeps what it measured
                settings["load_after"] = load()
                stem.with_suffix(".md").write_text(markdown(rows, info, settings))
                document = {"machine": info, "settings": settings, "results": rows}
                stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    print("\n".join(agreement(rows)))
    print(f"wrote {stem}.md and .json", flush=True)


if __name__ == "__main__":
    main()
