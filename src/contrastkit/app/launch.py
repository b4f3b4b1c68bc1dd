"""Training on several processes: what ``contrastkit train`` does under ``torchrun``.

``torchrun --nproc-per-node N -m contrastkit train ...`` (or across machines, with
``--nnodes`` and a rendezvous) starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in their environment. The command then, in each process:

* checks its options and config alone, before any exchange (every process finds the
  same bad input and says it in one line, with exit status 2);
* joins the :mod:`torch.distributed` process group (:func:`process_group`): NCCL when the
  run's device is CUDA (each process takes the GPU of its ``LOCAL_RANK``), gloo on the
  CPU;
* trains one model (:func:`~contrastkit.app.run.train_run`): every process checks the
  data and builds the run alike, and an error found by any of them stops every one
  (:func:`agreed`) before anything is written; rank 0 alone creates the run folder and
  tells the others its path (:func:`on_rank0`), writes every file and evaluates;
* leaves the process group.

Importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "agreed",
    "backend_of",
    "launched_processes",
    "on_rank0",
    "process_device",
    "process_group",
]

_T = TypeVar("_T")


def launched_processes() -> int:
    """The number of processes ``torchrun`` started for this command (1 without it)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 1
    try:
        return max(1, int(os.environ["WORLD_SIZE"]))
    except ValueError:
        return 1


def _local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def process_device(name: str) -> torch.device:
    """The device of this process for the run's ``device`` option, under ``torchrun``.

    ``"cpu"`` is the CPU; ``"cuda"``, ``"cuda:N"`` and ``"auto"`` (with a GPU) are the
    GPU of this process's ``LOCAL_RANK``: each process of a machine takes its own.
    """
    import torch

    from contrastkit.app.build import resolve_device

    device = resolve_device(name)
    if device.type != "cuda":
        return device
    return torch.device("cuda", _local_rank())


def backend_of(device: torch.device) -> str:
    """The :mod:`torch.distributed` backend for a device: NCCL for CUDA, else gloo."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[None]:
    """Join the process group ``torchrun`` set up for this command, and leave it after.

    Nothing happens when the command was not launched by ``torchrun`` with more than one
    process, or when a group is already initialised (by the caller, who then keeps it).
    """
    if launched_processes() < 2:
        yield
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    device = process_device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_of(device))
    try:
        yield
    finally:
        # what still holds the group (a DistributedDataParallel in a reference cycle)
        # goes first: destroyed at the interpreter's exit, after the group, it aborts
        # the process ("terminate called without an active exception")
        gc.collect()
        dist.destroy_process_group()


def _portable(error: BaseException) -> BaseException:
    """``error``, or a :class:`RuntimeError` with its message if it cannot be pickled."""
    try:
        return pickle.loads(pickle.dumps(error))  # type: ignore[no-any-return]
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


@contextlib.contextmanager
def agreed() -> Iterator[None]:
    """Run the block on every process; an error of any process is raised on every one.

    Every process runs the block and then, error or not, tells the others how it ended
    (one exchange). A process that failed raises its own error; the others raise the
    error of the first process that failed (in rank order), so that every process stops
    with the same one-line message instead of waiting for the ones that stopped. With one
    process, the block simply runs.
    """
    from contrastkit import distributed

    if not distributed.is_distributed():
        yield
        return
    import torch.distributed as dist

    error: Exception | None = None
    try:
        yield
    except Exception as caught:
        error = caught
    outcomes: list[Any] = [None] * distributed.world_size()
    dist.all_gather_object(outcomes, None if error is None else _portable(error))
    if error is not None:
        raise error
    first = next((e for e in outcomes if e is not None), None)
    if first is not None:
        raise first


def on_rank0(fn: Callable[[], _T]) -> _T:
    """``fn()`` on rank 0 alone; every process returns what it returned, or raises its error.

    For what only rank 0 does (create the run folder, write a file): the others wait for
    it, then learn the result (the run folder's path) or raise the same error. With one
    process, it is ``fn()``.
    """
    from contrastkit import distributed

    if not distributed.is_distributed():
        return fn()
    import torch.distributed as dist

    message: list[Any] = [None]
    error: Exception | None = None
    if distributed.rank() == 0:
        try:
            message = [("ok", fn())]
        except Exception as caught:
            error = caught
            message = [("error", _portable(caught))]
    dist.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    kind, value = message[0]
    if kind == "error":
        raise value
    return value  # type: ignore[no-any-return]
