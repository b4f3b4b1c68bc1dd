"""Negatives from every process: gather with gradient, offsets and sizes, on torch.distributed.

contrastkit builds on :mod:`torch.distributed` and never beside it: processes are
launched with ``torchrun`` (one machine, or many with its rendezvous or under SLURM) and
the process group is the one the user, or :class:`contrastkit.training.Trainer`, set up
with :func:`torch.distributed.init_process_group`. This module holds the few collective
steps the losses need:

* :func:`gather`: every process's rows, in rank order, **with gradient**: the backward
  pass sums the gradients of every process's copy (``all_reduce``) and keeps this
  process's rows. Processes may hold different numbers of rows (the last batch of an
  epoch): the sizes are exchanged first and the rows padded for the exchange, so the
  result is exact and gloo never aborts on a size mismatch.
* :func:`sizes`: every process's number of rows, and so this process's offset in the
  gathered batch (:func:`offset`).
* :func:`all_reduce_sum`: a sum over processes without gradient, for counts and the
  value of a loss.
* :func:`global_loss`: the form every loss with ``gather=True`` returns: the global value
  on every process, and the gradient that, averaged by
  :class:`~torch.nn.parallel.DistributedDataParallel`, is one process's gradient on the
  whole batch.

At world size 1 (no process group, or a group of one process) every function here is a
no-op: nothing is exchanged. A loss asked to gather (``gather=True``) with no process
group initialised raises :class:`RuntimeError` (:func:`require_process_group`): silently
computing a one-process loss would train a different model than the user asked for.

Example (under ``torchrun --nproc-per-node 2``)::

    import torch.distributed as dist
    from contrastkit.functional import supcon

    dist.init_process_group("gloo")
    loss = supcon(model(x), y, gather=True)  # negatives from both processes
    loss.backward()  # with the model in DistributedDataParallel
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_sum",
    "gather",
    "global_loss",
    "is_distributed",
    "offset",
    "rank",
    "require_process_group",
    "sizes",
    "world_size",
]

ProcessGroup = Any
"""A :mod:`torch.distributed` process group, or ``None`` for the default group."""


def is_distributed(group: ProcessGroup = None) -> bool:
    """Whether a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group: ProcessGroup = None) -> int:
    """The number of processes of ``group`` (1 with no process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def rank(group: ProcessGroup = None) -> int:
    """This process's rank in ``group`` (0 with no process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank(group)


def require_process_group(what: str = "gather=True") -> None:
    """Raise :class:`RuntimeError` unless a :mod:`torch.distributed` process group is up.

    Args:
        what: what needed the group, for the message.
    """
    if not dist.is_available():
        raise RuntimeError(f"{what} needs torch.distributed, which this build of torch lacks")
    if not dist.is_initialized():
        raise RuntimeError(
            f"{what} takes candidates from every process, but no torch.distributed process "
            "group is initialised: launch with torchrun and call "
            "torch.distributed.init_process_group() first (or leave gather=False)"
        )


def sizes(n: int, *, device: torch.device | str = "cpu", group: ProcessGroup = None) -> list[int]:
    """Every process's ``n``, in rank order (``[n]`` at world size 1).

    Args:
        n: this process's number of rows.
        device: where the exchange happens (a CUDA device for NCCL).
        group: the process group (``None``: the default one).
    """
    if not is_distributed(group):
        return [n]
    local = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.empty_like(local) for _ in range(world_size(group))]
    dist.all_gather(out, local, group=group)
    return [int(t.item()) for t in out]


def offset(all_sizes: list[int], group: ProcessGroup = None) -> int:
    """This process's first row in a batch gathered from processes of ``all_sizes`` rows."""
    return sum(all_sizes[: rank(group)])


def _all_gather(tensor: Tensor, all_sizes: list[int], group: ProcessGroup) -> Tensor:
    """Every process's ``tensor`` (rows ``all_sizes``), concatenated in rank order."""
    longest = max(all_sizes)
    padded = tensor.contiguous()
    if tensor.shape[0] < longest:
        padded = torch.cat([padded, padded.new_zeros(longest - tensor.shape[0], *tensor.shape[1:])])
    parts = [torch.empty_like(padded) for _ in all_sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:size] for part, size in zip(parts, all_sizes, strict=True)])


class _Gather(torch.autograd.Function):
    """All-gather forward; backward: all-reduce (sum) the gradient, keep this rank's rows."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, tensor: Tensor, all_sizes: list[int], group: ProcessGroup
    ) -> Tensor:
        ctx.group = group
        ctx.rows = (offset(all_sizes, group), tensor.shape[0])
        return _all_gather(tensor, all_sizes, group)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start, n = ctx.rows
        return grad[start : start + n], None, None


def gather(
    tensor: Tensor, *, group: ProcessGroup = None, all_sizes: list[int] | None = None
) -> Tensor:
    r"""Every process's rows of ``tensor``, concatenated in rank order, with gradient.

    The backward pass sums the gradient of the gathered tensor over processes and gives
    each process the rows it contributed: with every process computing its part of one
    loss on the gathered rows, each gets the gradient of the sum of those parts. Tensors
    that need no gradient (labels, sample ids) are gathered the same way, without one.

    Processes may hold different numbers of rows; all dimensions but the first must
    agree. At world size 1 the tensor itself is returned.

    Args:
        tensor: this process's rows, :math:`(B, \ldots)`.
        group: the process group (``None``: the default one).
        all_sizes: every process's number of rows, if known (:func:`sizes`); exchanged
            here otherwise.

    Returns:
        :math:`(\sum_r B_r, \ldots)`.
    """
    if not is_distributed(group):
        return tensor
    if all_sizes is None:
        all_sizes = sizes(tensor.shape[0], device=tensor.device, group=group)
    if tensor.dtype == torch.bool:  # not every backend exchanges bools
        return _all_gather(tensor.to(torch.uint8), all_sizes, group).bool()
    if tensor.requires_grad and torch.is_grad_enabled():
        return _Gather.apply(tensor, all_sizes, group)
    return _all_gather(tensor, all_sizes, group)


def all_reduce_sum(tensor: Tensor, *, group: ProcessGroup = None) -> Tensor:
    """The sum of ``tensor`` over processes, without gradient (a new tensor)."""
    out = tensor.detach().clone()
    if is_distributed(group):
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def global_loss(local: Tensor, total: Tensor, *, group: ProcessGroup = None) -> Tensor:
    """``total`` in value, with the gradient of ``world_size · local``.

    A loss over a gathered batch is a sum over processes of each process's part
    (``local``, this process's anchors against every process's candidates). The value
    every process returns is the whole (``total``, usually :func:`all_reduce_sum` of the
    parts divided by a global count); the gradient is that of this process's part
    scaled by the number of processes, so that
    :class:`~torch.nn.parallel.DistributedDataParallel`, which averages parameter
    gradients over processes, ends with the gradient of the whole: the gradient one
    process would get on the whole batch. With a gradient summed over processes instead
    of averaged, divide the loss by :func:`world_size` first.

    Args:
        local: this process's part, with gradient.
        total: the value to return, of ``local``'s shape (no gradient is taken from it).
        group: the process group (``None``: the default one).
    """
    w = world_size(group)
    if w == 1:
        return local
    scaled = local * w
    return (scaled - scaled.detach()) + total.detach()
