"""A memory of past embeddings: a first-in-first-out queue of extra candidates.

:class:`MemoryBank` holds the last ``size`` detached embeddings, with their class
labels and sample ids, and hands them to the losses that compare anchors with a
separate set of candidates (:func:`~contrastkit.functional.supcon`,
:func:`~contrastkit.functional.all_pairs_contrastive_loss`, the triplet losses, through
:meth:`MemoryBank.extend`) or take shared extra negatives
(:func:`~contrastkit.functional.info_nce`, as MoCo does, through
:meth:`MemoryBank.candidates`). It is an :class:`torch.nn.Module` whose state is all
buffers, so that it goes into ``state_dict`` and therefore into checkpoints: a run
resumed from one holds the same queue and continues bit-identically.

**Across processes** ``enqueue(..., gather=True)`` first gathers every process's rows
(rank order, :func:`contrastkit.distributed.gather`, without gradient), so that every
process writes the same rows in the same order and holds the same queue, unlike a
memory that each process fills with its own rows.

**A loss that gathers** (``gather=True``, every process's batch as candidates) takes
the memory through ``extend(..., gather=True)`` / ``candidates(gather=True)``: each
process then hands the loss its own share of the held rows (every ``W``-th, from its
rank), so that the loss's gather brings the whole memory exactly once, next to every
process's batch, and the anchors get ids that are unique over the processes.

**Policy: usable from the first step.** Until it is full the memory simply holds fewer
rows (none at first: :meth:`MemoryBank.extend` then gives the batch alone, and the
loss is the plain one). A queue that starts with random rows (MoCo) compares the
anchors with noise, and the early embeddings of a model drift fast (XBM, Wang et al.
2020, starts its memory only after a warm-up); both are choices of the caller, made in
one line: ``if memory.full:`` or ``if step >= warm_up:``.
"""

from __future__ import annotations

from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from contrastkit import distributed
from contrastkit._candidates import check_ids
from contrastkit._validation import (
    check_bool,
    check_class_labels,
    check_embeddings,
    check_finite,
    check_positive_int,
)

__all__ = ["MemoryBank", "MemoryCandidates"]

_UNSET, _ABSENT, _GIVEN = -1, 0, 1
"""What a memory's rows hold of labels or ids: nothing yet (empty), none / generated, given."""


class MemoryCandidates(TypedDict):
    """The keyword arguments :meth:`MemoryBank.extend` gives the losses."""

    candidates: Tensor
    """``(B + M, D)`` the batch, then the held rows (oldest first)."""
    candidate_labels: Tensor
    """``(B + M,)`` their labels."""
    ids: Tensor
    """``(B,)`` the anchors' sample ids."""
    candidate_ids: Tensor
    """``(B + M,)`` the candidates' sample ids."""


class MemoryBank(nn.Module):
    """A first-in-first-out queue of the last ``size`` embeddings, labels and sample ids.

    Rows are written in order; once ``size`` rows are held each new row overwrites the
    oldest. Nothing written keeps a gradient: the rows are detached copies. The state is
    held in buffers, saved by ``state_dict``:

    * ``embeddings`` ``(size, dim)``, ``labels`` ``(size,)`` and ``ids`` ``(size,)``
      (``torch.long``), in storage order (use :meth:`candidates` for the held rows,
      oldest first);
    * ``seen``: the number of rows ever written (the next row goes to
      ``seen % size``; the memory holds ``min(seen, size)`` rows);
    * ``kinds``: whether the rows came with labels and with ids.

    **Labels and ids: on every call, or on none.** Rows enqueued without ``ids`` get
    generated ones: their number in the stream of rows written (``seen`` at the time,
    counted over every process's rows with ``gather``), unique across steps and saved
    with the state. Mixing the two would let a generated id equal a given one, so a
    memory refuses it, as it refuses labels once it was fed rows without them.

    The memory is usable from the first step (see the module notes): until it is full
    it holds fewer rows; :attr:`full` tells when it is.

    Example:
        >>> import torch
        >>> from contrastkit.functional import info_nce, supcon
        >>> memory = MemoryBank(size=8, dim=4)
        >>> z, y = torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 0])
        >>> loss = supcon(z, y, **memory.extend(z, y))  # the batch, then the memory
        >>> memory.enqueue(z, y)  # detached; gather=True under torchrun
        >>> len(memory), memory.full
        (3, False)
        >>> q, k = torch.randn(3, 4), torch.randn(3, 4)
        >>> loss = info_nce(q, k, negatives=memory.candidates()[0])  # MoCo's queue

    Args:
        size: the number of rows held once full, ``>= 1``.
        dim: the number of features of a row, ``>= 1``.
        dtype: the floating-point dtype of the stored embeddings; the rows enqueued
            must have it.
        device: where the buffers live (moved with the module's ``.to()``).

    Raises:
        TypeError: ``size`` or ``dim`` is not an integer, ``dtype`` not a floating-point
            :class:`torch.dtype`.
        ValueError: ``size`` or ``dim`` is below 1.
    """

    embeddings: Tensor
    labels: Tensor
    ids: Tensor
    seen: Tensor
    kinds: Tensor

    def __init__(
        self,
        size: int,
        dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        size = check_positive_int("size", size)
        dim = check_positive_int("dim", dim)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        super().__init__()
        self.size = size
        self.dim = dim
        self.register_buffer("embeddings", torch.zeros(size, dim, dtype=dtype, device=device))
        self.register_buffer("labels", torch.zeros(size, dtype=torch.long, device=device))
        self.register_buffer("ids", torch.zeros(size, dtype=torch.long, device=device))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long, device=device))
        self.register_buffer("kinds", torch.full((2,), _UNSET, dtype=torch.long, device=device))

    def extra_repr(self) -> str:
        """``size`` and ``dim``, for ``repr``."""
        return f"size={self.size}, dim={self.dim}"

    def __len__(self) -> int:
        """The number of rows held: ``min(seen, size)``."""
        return min(int(self.seen), self.size)

    @property
    def full(self) -> bool:
        """Whether the memory holds ``size`` rows."""
        return len(self) == self.size

    def _order(self) -> Tensor:
        """The storage rows of the held rows, oldest first."""
        seen = int(self.seen)
        device = self.embeddings.device
        if seen <= self.size:
            return torch.arange(seen, device=device)
        return (torch.arange(self.size, device=device) + seen) % self.size

    def candidates(
        self, *, gather: bool = False, group: Any = None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """The held rows, oldest first: ``(embeddings, labels, ids)``.

        New tensors (later writes do not change them), without gradient:
        ``(len(self), dim)``, ``(len(self),)`` or ``None`` if the rows came without
        labels, and ``(len(self),)`` sample ids (generated ones if none were given).

        Args:
            gather: for a loss that gathers its candidates from every process
                (``gather=True``, such as InfoNCE's shared ``negatives``): this process's
                share of the rows, every ``W``-th from its rank, so that the loss's
                gather brings each held row once. Needs a process group; at world size 1
                every row.
            group: the process group (``None``: the default one).
        """
        order = self._share(self._order(), gather, group)
        labels = None if int(self.kinds[0]) == _ABSENT else self.labels[order]
        return self.embeddings[order], labels, self.ids[order]

    def _share(self, rows: Tensor, gather: object, group: Any) -> Tensor:
        """``rows``, or with ``gather`` this process's share: every ``W``-th from its rank."""
        if not check_bool("gather", gather):
            return rows
        distributed.require_process_group()
        return rows[distributed.rank(group) :: distributed.world_size(group)]

    def _check_kind(self, which: int, name: str, given: bool) -> None:
        """Refuse ``name`` given (or not) against what the held rows came with."""
        kind = int(self.kinds[which])
        if kind == _UNSET or kind == (_GIVEN if given else _ABSENT):
            return
        if given:
            raise ValueError(
                f"{name} cannot be given: the memory was fed rows without {name} (give "
                f"{name} on every call or on none), got {name}=a tensor"
            )
        raise ValueError(
            f"{name} must be given: the memory was fed rows with {name} (give {name} on "
            f"every call or on none), got {name}=None"
        )

    def _check_rows(self, embeddings: object) -> Tensor:
        z = check_embeddings("embeddings", embeddings, allow_empty=True)
        if z.shape[1] != self.dim:
            raise ValueError(
                f"embeddings must have {self.dim} features like the memory, got shape "
                f"{tuple(z.shape)}"
            )
        if z.dtype != self.embeddings.dtype:
            raise TypeError(
                f"embeddings must have the memory's dtype {self.embeddings.dtype}, got {z.dtype}"
            )
        if z.device != self.embeddings.device:
            raise ValueError(
                f"embeddings must be on the memory's device {self.embeddings.device}, got "
                f"{z.device}"
            )
        return z

    @torch.no_grad()
    def enqueue(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        ids: Tensor | None = None,
        *,
        gather: bool = False,
        group: Any = None,
    ) -> None:
        """Write a batch's rows, detached, after the held ones (oldest overwritten).

        A batch of more than ``size`` rows leaves its last ``size`` rows. With
        ``gather=True`` every process's rows are gathered first (rank order, without
        gradient), so every process writes the same rows: call it on every process,
        each with its own batch (of any number of rows, none included).

        Args:
            embeddings: ``(B, dim)`` rows of the memory's dtype, on its device.
            labels: ``(B,)`` integer class labels, or ``None`` (on every call).
            ids: ``(B,)`` integer sample ids, or ``None`` (on every call) for generated
                ones (see the class notes).
            gather: take the rows of every process of the process group; at world size
                1 the batch itself. Raises :class:`RuntimeError` with no process group.
            group: the process group (``None``: the default one).

        Raises:
            TypeError: an argument of the wrong kind or dtype.
            ValueError: a wrong shape, device or value (NaN), or labels / ids given
                against what the memory was fed before.
        """
        z = self._check_rows(embeddings)
        y = None if labels is None else check_class_labels("labels", labels, "embeddings", z)
        i = check_ids("ids", ids, "embeddings", z)
        gather = check_bool("gather", gather)
        self._check_kind(0, "labels", y is not None)
        self._check_kind(1, "ids", i is not None)
        check_finite(embeddings=z)
        z = z.detach()
        if gather:
            distributed.require_process_group()
            all_sizes = distributed.sizes(z.shape[0], device=z.device, group=group)
            z = distributed.gather(z, group=group, all_sizes=all_sizes)
            if y is not None:
                y = distributed.gather(y.long(), group=group, all_sizes=all_sizes)
            if i is not None:
                i = distributed.gather(i.long(), group=group, all_sizes=all_sizes)
        n = z.shape[0]
        if n == 0:
            return
        position = self.seen + torch.arange(n, device=z.device)  # each row's number
        if i is None:
            i = position
        keep = min(n, self.size)
        rows = position[n - keep :] % self.size
        self.embeddings[rows] = z[n - keep :]
        self.ids[rows] = i[n - keep :].long()
        if y is not None:
            self.labels[rows] = y[n - keep :].long()
        self.seen += n
        self.kinds[0] = _ABSENT if y is None else _GIVEN
        self.kinds[1] = _ABSENT if ids is None else _GIVEN

    def extend(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ids: Tensor | None = None,
        *,
        gather: bool = False,
        group: Any = None,
    ) -> MemoryCandidates:
        """The batch and the held rows as the candidates of the batch's anchors.

        For the losses that take ``candidates=``: ``supcon(z, y, **memory.extend(z, y))``
        compares each anchor with the other rows of its batch (with gradient) and with
        every held row (without), never with itself: the batch's rows come first among
        the candidates, with the anchors' own ids. Without ``ids``, the anchors get the
        ids the batch would be enqueued with next (``seen, seen + 1, ...``), distinct
        from every held one. With an empty memory the loss is the plain one.

        Under a process group, either the loss compares this process's anchors with its
        own batch and the memory (``gather=False`` on both), or with every process's
        batch and the memory: ``gather=True`` on both,
        ``supcon(z, y, gather=True, **memory.extend(z, y, gather=True))``. Then each
        process's candidates are its batch and its share of the held rows (every
        ``W``-th), the loss's gather joins them into every process's batch and the whole
        memory once, and the generated anchor ids count the rows of the processes before
        this one (``seen + offset, ...``, the ids :meth:`enqueue` with ``gather=True``
        gives them next). A loss with ``gather=True`` on the whole memory of every
        process would count each held row ``W`` times.

        Args:
            embeddings: ``(B, dim)`` this step's rows (they keep their gradient), of the
                memory's dtype, on its device.
            labels: ``(B,)`` integer class labels (the memory must hold labels too, once
                it holds rows).
            ids: ``(B,)`` integer sample ids, or ``None`` (as given to :meth:`enqueue`).
            gather: for a loss with ``gather=True`` (above); needs a process group.
            group: the process group (``None``: the default one).

        Returns:
            The keyword arguments ``candidates``, ``candidate_labels``, ``ids`` and
            ``candidate_ids`` of the loss.

        Raises:
            TypeError: an argument of the wrong kind or dtype.
            ValueError: a wrong shape or device, no labels in the memory, or ids given
                against what the memory was fed.
        """
        z = self._check_rows(embeddings)
        y = check_class_labels("labels", labels, "embeddings", z)
        i = check_ids("ids", ids, "embeddings", z)
        if int(self.kinds[0]) == _ABSENT:
            raise ValueError(
                "the memory holds rows without labels: enqueue labels to use it as the "
                "candidates of a labelled loss"
            )
        self._check_kind(1, "ids", i is not None)
        gather = check_bool("gather", gather)
        if i is None:
            start = self.seen
            if gather:
                distributed.require_process_group()
                all_sizes = distributed.sizes(z.shape[0], device=z.device, group=group)
                start = start + distributed.offset(all_sizes, group)
            i = start + torch.arange(z.shape[0], device=z.device)
        rows, row_labels, row_ids = self.candidates(gather=gather, group=group)
        assert row_labels is not None  # labels were given, or nothing is held
        return MemoryCandidates(
            candidates=torch.cat([z, rows]),
            candidate_labels=torch.cat([y.long(), row_labels]),
            ids=i.long(),
            candidate_ids=torch.cat([i.long(), row_ids]),
        )
