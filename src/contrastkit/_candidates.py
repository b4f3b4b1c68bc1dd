"""Anchors against candidates: the form behind ``gather=True``, ``ids`` and ``candidates``.

Every loss over the pairs of a batch has a *local* form: this process's rows are the
anchors, and the candidates they are compared with are another set of rows:

* **the batch itself, gathered from every process** (``gather=True``): anchor ``i`` is
  candidate ``offset + i`` (its *self*, never compared with it), and each unordered pair
  is seen from both of its ends, once on each process that holds one of them;
* **a separate set** (``candidates=``): a gallery, a memory bank; no self.

Optional **sample ids** say which rows are one sample (duplicates, or the other views of
one example): a candidate with its anchor's id is neither a positive nor a negative.

Each loss then computes its part over this process's anchors, and its denominators
(positives, triplets, pairs, valid anchors) as counts that are summed over processes;
:func:`contrastkit.distributed.global_loss` returns the whole batch's loss on every
process, with the gradient that DistributedDataParallel's averaging turns into one
process's gradient on the whole batch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from contrastkit import distributed
from contrastkit._validation import (
    check_bool,
    check_class_labels,
    check_embeddings,
    check_finite,
    compute_dtype,
)

__all__ = ["Candidates", "check_ids", "excluded", "finish", "prepare", "prepare_paired"]


class Candidates(NamedTuple):
    """The anchors of this process and the candidates they are compared with."""

    rows: Tensor
    """``(M, D)`` the candidates (every process's rows with ``gather``)."""
    labels: Tensor | None
    """``(M,)`` their class labels."""
    ids: Tensor | None
    """``(M,)`` their sample ids."""
    self_index: Tensor | None
    """``(B,)`` each anchor's own column among the candidates; ``None`` for a separate set."""
    gathered: bool
    """Whether the candidates come from every process (denominators are then summed)."""
    group: Any
    """The process group."""


def check_ids(name: str, ids: object, like_name: str, like: Tensor) -> Tensor | None:
    """Sample ids: ``None``, or an integer tensor of shape ``(n,)`` like class labels."""
    if ids is None:
        return None
    if isinstance(ids, Tensor) and (ids.is_floating_point() or ids.is_complex()):
        raise TypeError(f"{name} must be an integer tensor of sample ids, got dtype {ids.dtype}")
    return check_class_labels(name, ids, like_name, like)


def _one_process(ids: Tensor | None, gather: bool, group: Any) -> bool:
    """Whether the plain one-process loss applies: no ids, and no group to gather from.

    ``gather=True`` with no process group initialised raises (see
    :func:`contrastkit.distributed.require_process_group`).
    """
    if gather:
        distributed.require_process_group()
    return ids is None and not (gather and distributed.is_distributed(group))


def _gather_all(
    gather: bool, group: Any, n: int, device: torch.device, *tensors: Tensor | None
) -> tuple[list[Tensor | None], int]:
    """Each tensor gathered from every process (with gradient), and this process's offset."""
    if not gather:
        return list(tensors), 0
    distributed.require_process_group()
    all_sizes = distributed.sizes(n, device=device, group=group)
    out = [
        None if t is None else distributed.gather(t, group=group, all_sizes=all_sizes)
        for t in tensors
    ]
    return out, distributed.offset(all_sizes, group)


def prepare(
    z: Tensor,
    labels: Tensor | None,
    *,
    ids: object,
    candidates: object,
    candidate_labels: object,
    candidate_ids: object,
    gather: object,
    group: Any,
) -> Candidates | None:
    """The candidates of a labelled batch, or ``None`` for the plain one-process loss.

    ``z`` and ``labels`` are the checked anchors. Checks the other arguments first.
    """
    gather = check_bool("gather", gather)
    ids_t = check_ids("ids", ids, "embeddings", z)
    if candidates is None:
        for name, value in (
            ("candidate_labels", candidate_labels),
            ("candidate_ids", candidate_ids),
        ):
            if value is not None:
                raise ValueError(f"{name} needs candidates, got candidates=None")
        if _one_process(ids_t, gather, group):
            return None
        (rows, row_labels, row_ids), offset = _gather_all(
            gather, group, z.shape[0], z.device, z, labels, ids_t
        )
        self_index = torch.arange(offset, offset + z.shape[0], device=z.device)
        assert rows is not None
        return Candidates(rows, row_labels, row_ids, self_index, gather, group)
    c = check_embeddings("candidates", candidates, allow_empty=gather)
    if c.shape[1] != z.shape[1]:
        raise ValueError(
            f"candidates must have {z.shape[1]} features like embeddings, got shape "
            f"{tuple(c.shape)}"
        )
    if c.device != z.device:
        raise ValueError(
            f"candidates must be on the device of embeddings ({z.device}), got {c.device}"
        )
    c_labels = None
    if labels is not None:
        if candidate_labels is None:
            raise ValueError("candidates need candidate_labels, got candidate_labels=None")
        c_labels = check_class_labels("candidate_labels", candidate_labels, "candidates", c)
    c_ids = check_ids("candidate_ids", candidate_ids, "candidates", c)
    if (ids_t is None) != (c_ids is None):
        raise ValueError(
            "ids and candidate_ids go together (a candidate is left out when its id is its "
            f"anchor's), got ids={'None' if ids_t is None else 'a tensor'} and "
            f"candidate_ids={'None' if c_ids is None else 'a tensor'}"
        )
    check_finite(candidates=c)
    # computed in the wider of the two dtypes (the caller brings the anchors to it)
    dtype = torch.promote_types(z.dtype, compute_dtype(c))
    (rows, row_labels, row_ids), _ = _gather_all(
        gather, group, c.shape[0], c.device, c.to(dtype), c_labels, c_ids
    )
    assert rows is not None
    return Candidates(rows, row_labels, row_ids, None, gather, group)


def prepare_paired(
    first: Tensor,
    second: Tensor,
    *,
    ids: object,
    gather: object,
    group: Any,
    anchors_name: str,
    gather_first: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, int] | None:
    """Gathered ``first``, ``second`` and ids of a paired batch (InfoNCE, NT-Xent).

    Returns ``(all_first, all_second, ids, all_ids, offset)``, or ``None`` for the
    plain one-process loss (no ids, no process group to gather from). With
    ``gather_first=False`` only ``second`` is exchanged (InfoNCE in one direction
    compares this process's queries with every key): ``all_first`` is ``first``.
    """
    gather = check_bool("gather", gather)
    ids_t = check_ids("ids", ids, anchors_name, first)
    if _one_process(ids_t, gather, group):
        return None
    (all_first, all_second, all_ids), offset = _gather_all(
        gather, group, first.shape[0], first.device, first if gather_first else None, second, ids_t
    )
    all_first = first if all_first is None else all_first
    assert all_second is not None
    return all_first, all_second, ids_t, all_ids, offset


def excluded(c: Candidates, anchor_ids: Tensor | None, n: int) -> Tensor | None:
    """``(B, M)``: the candidates each anchor is never compared with (self, same id)."""
    mask = None
    if anchor_ids is not None and c.ids is not None:
        mask = anchor_ids[:, None] == c.ids[None, :]
    if c.self_index is not None:
        own = torch.zeros(n, c.rows.shape[0], dtype=torch.bool, device=c.rows.device)
        own[torch.arange(n, device=own.device), c.self_index] = True
        mask = own if mask is None else mask | own
    return mask


def finish(
    per_anchor: Tensor, count: Tensor | int, reduction: str, *, gathered: bool, group: Any
) -> Tensor:
    """The loss of the whole batch from this process's part.

    ``"mean"``: the sum of every process's ``per_anchor`` over the sum of their
    ``count``; ``"sum"``: the sum; ``"none"``: ``per_anchor`` itself. With ``gathered``
    the value is the whole batch's on every process and the gradient is scaled for
    DistributedDataParallel's average (:func:`contrastkit.distributed.global_loss`).
    """
    if reduction == "none":
        return (
            distributed.global_loss(per_anchor, per_anchor, group=group) if gathered else per_anchor
        )
    local = per_anchor.sum()
    if reduction == "sum":
        if not gathered:
            return local
        return distributed.global_loss(
            local, distributed.all_reduce_sum(local, group=group), group=group
        )
    count_t = torch.as_tensor(count, device=local.device)
    if not gathered:
        return local / count_t.clamp_min(1).to(local.dtype)
    # in float64: counts of triplets exceed float32's integers
    both = torch.stack([local.detach().double(), count_t.double()])
    total, n = distributed.all_reduce_sum(both, group=group).unbind()
    n = n.clamp_min(1)
    return distributed.global_loss(
        local / n.to(local.dtype), (total / n).to(local.dtype), group=group
    )
