"""From labelled data to pairs, triplets and class-balanced batches.

* :class:`PairDataset` turns labelled samples into ``(x1, x2, y)`` pairs with balanced
  negative sampling (``y = 1`` same class, ``y = 0`` different classes).
* :class:`TripletDataset` gives ``(anchor, positive, negative)`` triplets.
* :class:`ClassBalancedBatchSampler` yields batches of P classes × K samples for the
  online miners and label-form losses.
* :class:`RandomBatchSampler` yields shuffled batches of any dataset (the pairs and
  triplets above, a :class:`~torch.utils.data.TensorDataset` of pairs), as the
  ``batch_sampler`` of a :class:`~torch.utils.data.DataLoader`.

The source is either a :class:`torch.utils.data.Dataset` whose items are
``(input, label)`` or a tensor (or array) of inputs with a sequence of class labels.
Every draw is reproducible from ``seed`` and the epoch: call ``set_epoch(epoch)`` at the
start of each epoch (as with :class:`torch.utils.data.DistributedSampler`) for a fresh
draw; the batch sampler advances its epoch by itself each time it is iterated.

**Several processes** (``torch.distributed``, launched with ``torchrun``): both batch
samplers draw every *global* batch (``batch_size`` rows, or P × K) from the same seeded
generator on every process, from the seed and the epoch alone, and each process keeps
its contiguous part (``world_size`` and ``rank``, by default those of the default
process group). Concatenating the parts in rank order gives the batch one process
would draw. A sample never appears twice in a global batch and nothing is padded
(unlike :class:`torch.utils.data.DistributedSampler`, which repeats samples to even
out the parts: a repeated sample would be a false negative of itself); the parts differ
by at most one row (one class for the class-balanced batches), and the losses that
gather from every process take parts of any size.

Classes with a single sample cannot give a positive pair. They are reported (a
:class:`UserWarning` when the object is built, and the ``singleton_classes`` attribute)
and used only as negatives; if no class has two samples, asking for positives is an
error.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from contrastkit.data import PairDataset
    >>> inputs, labels = torch.randn(100, 8), torch.arange(100) % 5
    >>> pairs = PairDataset(inputs, labels, seed=0)
    >>> loader = DataLoader(pairs, batch_size=32, shuffle=True)
    >>> for epoch in range(2):
    ...     pairs.set_epoch(epoch)
    ...     for x1, x2, y in loader:
    ...         pass
    >>> x1.shape, y.dtype
    (torch.Size([4, 8]), torch.int64)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from contrastkit import distributed
from contrastkit._validation import check_bool, check_fraction, check_int

__all__ = [
    "ClassBalancedBatchSampler",
    "PairDataset",
    "RandomBatchSampler",
    "TripletDataset",
    "part_bounds",
]

_ORDER_STREAM = 0x5DEECE66D
"""Added to the seed of :class:`RandomBatchSampler`'s generator: its order is not drawn
from the very generator that draws the pairs or triplets of the same seed and epoch."""


def _generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + stream)


def _process(world_size: int | None, rank: int | None) -> tuple[int, int]:
    """``(world_size, rank)`` as given, or those of the default process group."""
    w = distributed.world_size() if world_size is None else check_int("world_size", world_size)
    r = distributed.rank() if rank is None else check_int("rank", rank)
    if w < 1:
        raise ValueError(f"world_size must be >= 1, got {w}")
    if not 0 <= r < w:
        raise ValueError(f"rank must be between 0 and world_size - 1 ({w - 1}), got {r}")
    return w, r


def part_bounds(count: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, stop)`` of process ``rank``'s contiguous part of ``count`` units.

    The parts follow the rank order and differ by at most one unit: the first
    ``count % world_size`` processes take one more.

    Example:
        >>> [part_bounds(7, 3, r) for r in range(3)]
        [(0, 3), (3, 5), (5, 7)]
    """
    size, extra = divmod(count, world_size)
    start = rank * size + min(rank, extra)
    return start, start + size + (1 if rank < extra else 0)


def _as_class_labels(labels: object, n: int | None = None) -> Tensor:
    """Integer class labels as a 1-D long tensor (from a tensor, array or sequence)."""
    try:
        t = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"labels must be a sequence of integer class labels, got {type(labels).__name__}"
        ) from error
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"labels must be integer class labels, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(t.shape)}")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"labels must have one entry per input ({n}), got {t.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError("labels must not be empty")
    return t.long()


class _Classes:
    """The samples of each class, grouped: ``members[start[c] : start[c] + count[c]]``."""

    def __init__(self, labels: Tensor) -> None:
        self.labels = labels
        self.values, inverse, self.count = torch.unique(
            labels, return_inverse=True, return_counts=True
        )
        self.members = torch.argsort(inverse, stable=True)
        self.start = torch.cumsum(self.count, 0) - self.count

    def random_member(self, classes: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """A random sample of each given class (by class position), and its rank in it."""
        rank = (torch.rand(classes.shape, generator=g) * self.count[classes]).long()
        return self.members[self.start[classes] + rank], rank

    def other_member(self, classes: Tensor, rank: Tensor, g: torch.Generator) -> Tensor:
        """A random sample of each class other than the one at ``rank`` (count >= 2)."""
        count = self.count[classes]
        offset = 1 + (torch.rand(classes.shape, generator=g) * (count - 1)).long()
        return self.members[self.start[classes] + (rank + offset) % count]

    def other_class(self, classes: Tensor, g: torch.Generator) -> Tensor:
        """A random class position different from each given one (needs 2+ classes)."""
        num = len(self.values)
        offset = 1 + (torch.rand(classes.shape, generator=g) * (num - 1)).long()
        return (classes + offset) % num


def _in_turn(candidates: Tensor, count: int, g: torch.Generator) -> Tensor:
    """``count`` entries of ``candidates``, each used in turn (random order) before any repeats."""
    if count == 0:
        return candidates[:0]
    turn = torch.randperm(len(candidates), generator=g)
    return candidates[turn.repeat(-(-count // len(candidates)))[:count]]


class _LabelledSource:
    """Uniform access to ``(input, label)`` samples from a Dataset or from arrays."""

    def __init__(self, data: Any, labels: Any) -> None:
        if isinstance(data, Dataset):
            self.dataset: Dataset | None = data
            self.inputs = None
            n = len(data)  # type: ignore[arg-type]
            if labels is None:
                labels = getattr(data, "targets", None)
            if labels is None:  # read every item once: may be slow for large image sets
                labels = [int(data[i][1]) for i in range(n)]
        else:
            if labels is None:
                raise TypeError(
                    "labels are required when data is not a torch Dataset of (input, label)"
                )
            self.dataset = None
            self.inputs = data if isinstance(data, Tensor) else torch.as_tensor(data)
            n = len(self.inputs)
        if n == 0:
            raise ValueError("data must hold at least one sample, got an empty dataset")
        self.labels = _as_class_labels(labels, n)

    def input(self, index: int) -> Any:
        if self.inputs is not None:
            return self.inputs[index]
        return self.dataset[index][0]  # type: ignore[index]


def _report_singletons(classes: _Classes, what: str, *, warn: bool = True) -> list[int]:
    singletons = classes.values[classes.count < 2].tolist()
    if singletons and warn:
        shown = ", ".join(map(str, singletons[:10])) + (" ..." if len(singletons) > 10 else "")
        warnings.warn(
            f"{len(singletons)} class(es) have a single sample and cannot give {what}; "
            f"they are used only as negatives: {shown}",
            UserWarning,
            stacklevel=3,
        )
    return singletons


class _EpochDraws(Dataset):
    """Labelled samples, grouped by class, and a reproducible draw of items per epoch."""

    def __init__(
        self, data: Any, labels: Any, *, per_epoch: int | None, per_epoch_name: str, seed: int
    ) -> None:
        self.seed = check_int("seed", seed, minimum=0)
        self.source = _LabelledSource(data, labels)
        self.labels = self.source.labels
        self.classes = _Classes(self.labels)
        count = len(self.labels) if per_epoch is None else per_epoch
        self.per_epoch = check_int(per_epoch_name, count, minimum=1)
        # classes that can give two different samples (a positive pair)
        self.paired_classes = torch.nonzero(self.classes.count >= 2).squeeze(1)

    def set_epoch(self, epoch: int) -> None:
        """Draw the items of ``epoch`` (the same items for the same seed and epoch)."""
        self.epoch = check_int("epoch", epoch, minimum=0)
        self._draw(_generator(self.seed, self.epoch))

    def _draw(self, g: torch.Generator) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.per_epoch


class PairDataset(_EpochDraws):
    """Pairs ``(x1, x2, y)`` from labelled samples, with balanced negative sampling.

    Each epoch draws ``pairs_per_epoch`` pairs (default: one per sample), a fraction
    ``positive_fraction`` of them positive (same class, ``y = 1``, two different samples)
    and the rest negative (two classes, ``y = 0``). The first element's class is taken in
    turn over the classes, so every class is represented equally; samples are uniform
    within a class; the pairs are shuffled. Reproducible from ``seed`` and the epoch.

    Args:
        data: a Dataset of ``(input, label)`` items, or a tensor/array of inputs.
        labels: integer class labels, one per sample (optional for a Dataset: taken from
            its ``targets`` attribute, else read from every item once).
        positive_fraction: share of positive pairs, in ``[0, 1]`` (default one half).
        pairs_per_epoch: pairs drawn per epoch (default: the number of samples).
        seed: the seed of every draw.

    Attributes:
        labels: the class label of every sample.
        singleton_classes: labels of the classes with a single sample.
        pairs: ``(first, second, y)`` index tensors of the current epoch.
    """

    def __init__(
        self,
        data: Any,
        labels: Sequence[int] | Tensor | None = None,
        *,
        positive_fraction: float = 0.5,
        pairs_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        positive_fraction = check_fraction("positive_fraction", positive_fraction)
        super().__init__(
            data, labels, per_epoch=pairs_per_epoch, per_epoch_name="pairs_per_epoch", seed=seed
        )
        self.num_positive = round(positive_fraction * self.per_epoch)
        self.num_negative = self.per_epoch - self.num_positive
        if self.num_negative and len(self.classes.values) < 2:
            raise ValueError(
                "negative pairs need at least two classes, got one class "
                f"({self.classes.values.tolist()}); use positive_fraction=1.0"
            )
        if self.num_positive and len(self.paired_classes) == 0:
            raise ValueError(
                "positive pairs need a class with at least two samples, but every class "
                "has a single sample; use positive_fraction=0.0"
            )
        self.singleton_classes = _report_singletons(
            self.classes, "positive pairs", warn=self.num_positive > 0
        )
        self.set_epoch(0)

    def _draw(self, g: torch.Generator) -> None:
        classes = self.classes
        # positives: anchor classes in turn over the classes that have two samples
        pos_classes = _in_turn(self.paired_classes, self.num_positive, g)
        pos_first, rank = classes.random_member(pos_classes, g)
        pos_second = classes.other_member(pos_classes, rank, g)
        # negatives: anchor classes in turn over all classes, partner from another class
        all_classes = torch.arange(len(classes.values))
        neg_classes = _in_turn(all_classes, self.num_negative, g)
        neg_first, _ = classes.random_member(neg_classes, g)
        neg_second, _ = classes.random_member(classes.other_class(neg_classes, g), g)
        first = torch.cat([pos_first, neg_first])
        second = torch.cat([pos_second, neg_second])
        y = torch.cat(
            [
                torch.ones(len(pos_first), dtype=torch.long),
                torch.zeros(len(neg_first), dtype=torch.long),
            ]
        )
        order = torch.randperm(len(first), generator=g)
        self.pairs = (first[order], second[order], y[order])

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        first, second, y = self.pairs
        i, j = int(first[index]), int(second[index])
        return self.source.input(i), self.source.input(j), int(y[index])


class TripletDataset(_EpochDraws):
    """Triplets ``(anchor, positive, negative)`` from labelled samples.

    Each epoch draws ``triplets_per_epoch`` triplets (default: one per sample). Anchor
    classes are taken in turn over the classes with at least two samples; the positive
    is another sample of the anchor's class, the negative a sample of another class, all
    uniform. Reproducible from ``seed`` and the epoch (call :meth:`set_epoch`).

    Args:
        data: a Dataset of ``(input, label)`` items, or a tensor/array of inputs.
        labels: integer class labels (optional for a Dataset, as in :class:`PairDataset`).
        triplets_per_epoch: triplets drawn per epoch (default: the number of samples).
        seed: the seed of every draw.

    Attributes:
        labels, singleton_classes: as in :class:`PairDataset`.
        triplets: ``(anchor, positive, negative)`` index tensors of the current epoch.
    """

    def __init__(
        self,
        data: Any,
        labels: Sequence[int] | Tensor | None = None,
        *,
        triplets_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            data,
            labels,
            per_epoch=triplets_per_epoch,
            per_epoch_name="triplets_per_epoch",
            seed=seed,
        )
        if len(self.classes.values) < 2:
            raise ValueError(
                f"triplets need at least two classes, got one ({self.classes.values.tolist()})"
            )
        if len(self.paired_classes) == 0:
            raise ValueError(
                "triplets need a class with at least two samples, but every class has one"
            )
        self.singleton_classes = _report_singletons(self.classes, "an anchor-positive pair")
        self.set_epoch(0)

    def _draw(self, g: torch.Generator) -> None:
        classes = self.classes
        count = self.per_epoch
        anchor_classes = _in_turn(self.paired_classes, count, g)
        anchor, rank = classes.random_member(anchor_classes, g)
        positive = classes.other_member(anchor_classes, rank, g)
        negative, _ = classes.random_member(classes.other_class(anchor_classes, g), g)
        order = torch.randperm(count, generator=g)
        self.triplets = (anchor[order], positive[order], negative[order])

    def __getitem__(self, index: int) -> tuple[Any, Any, Any]:
        anchor, positive, negative = (self.source.input(int(t[index])) for t in self.triplets)
        return anchor, positive, negative


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of P classes × K samples each: the "M per class" sampler.

    Use it as the ``batch_sampler`` of a :class:`torch.utils.data.DataLoader`. Each batch
    takes ``classes_per_batch`` distinct classes at random, and ``samples_per_class``
    distinct samples of each. Only classes with at least K samples take part (the others
    are reported by a warning and the ``excluded_classes`` attribute). Reproducible from
    ``seed``: iteration ``e`` of the sampler uses epoch ``e`` (or set it with
    :meth:`set_epoch`).

    With several processes, P × K is the *global* batch: every process draws it alike
    and keeps a contiguous run of its classes, with the K samples of each (the first
    ``P % world_size`` processes take one class more), so a process's part always
    holds whole classes: the consecutive positive pairs of
    :class:`~contrastkit.training.TwoViewObjective` stay together.

    Args:
        labels: integer class labels of the dataset, one per sample.
        classes_per_batch: P, the classes in each batch (at least 1).
        samples_per_class: K, the samples of each class in a batch (at least 1; 2 or
            more for positives to exist).
        batches_per_epoch: batches per iteration (default: ``len(labels) // (P * K)``,
            at least 1).
        seed: the seed of every draw.
        world_size: the number of processes sharing each batch (default: that of the
            default :mod:`torch.distributed` process group, 1 without one).
        rank: this process's rank among them (default: that of the default group).

    Raises:
        ValueError: fewer than P classes have K samples (the batch cannot be filled), or
            P is below ``world_size`` (a process would get no class).

    Example:
        >>> import torch
        >>> sampler = ClassBalancedBatchSampler(
        ...     torch.arange(40) % 8, classes_per_batch=4, samples_per_class=2
        ... )
        >>> batch = next(iter(sampler))
        >>> len(batch), len(set((torch.tensor(batch) % 8).tolist()))
        (8, 4)
    """

    def __init__(
        self,
        labels: Sequence[int] | Tensor,
        *,
        classes_per_batch: int,
        samples_per_class: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        world_size: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.labels = _as_class_labels(labels)
        self.classes_per_batch = check_int("classes_per_batch", classes_per_batch, minimum=1)
        self.samples_per_class = check_int("samples_per_class", samples_per_class, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.world_size, self.rank = _process(world_size, rank)
        if self.classes_per_batch < self.world_size:
            raise ValueError(
                f"classes_per_batch ({self.classes_per_batch}) must be at least world_size "
                f"({self.world_size}): each process takes whole classes of every batch"
            )
        batch_size = self.classes_per_batch * self.samples_per_class
        default = max(1, len(self.labels) // batch_size)
        count = default if batches_per_epoch is None else batches_per_epoch
        self.batches_per_epoch = check_int("batches_per_epoch", count, minimum=1)
        self.classes = _Classes(self.labels)
        eligible = self.classes.count >= samples_per_class
        self.eligible = torch.nonzero(eligible).squeeze(1)
        if len(self.eligible) < classes_per_batch:
            raise ValueError(
                f"cannot fill a batch of {classes_per_batch} classes x {samples_per_class} "
                f"samples: only {len(self.eligible)} of {len(self.classes.values)} classes "
                f"have at least {samples_per_class} samples"
            )
        self.excluded_classes = self.classes.values[~eligible].tolist()
        if self.excluded_classes:
            warnings.warn(
                f"{len(self.excluded_classes)} class(es) have fewer than {samples_per_class} "
                f"samples and are left out of the batches",
                UserWarning,
                stacklevel=2,
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration draw the batches of ``epoch``."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        g = _generator(self.seed, self.epoch)
        self.epoch += 1
        classes, k = self.classes, self.samples_per_class
        first, stop = part_bounds(self.classes_per_batch, self.world_size, self.rank)
        for _ in range(self.batches_per_epoch):
            chosen = self.eligible[torch.randperm(len(self.eligible), generator=g)]
            batch = []
            # every process draws the whole batch (the same draws), and keeps its classes
            for i, c in enumerate(chosen[: self.classes_per_batch].tolist()):
                ranks = torch.randperm(int(classes.count[c]), generator=g)[:k]
                if first <= i < stop:
                    batch.extend(classes.members[classes.start[c] + ranks].tolist())
            yield batch


class RandomBatchSampler(Sampler[list[int]]):
    """Shuffled batches of a dataset's indices, each split between processes.

    Use it as the ``batch_sampler`` of a :class:`torch.utils.data.DataLoader`, for
    :class:`PairDataset`, :class:`TripletDataset` or any map-style dataset. Each epoch
    goes through the indices in an order drawn from ``seed`` and the epoch alone (call
    :meth:`set_epoch`, as the :class:`~contrastkit.training.Trainer` does), cut into
    batches of ``batch_size``. With ``batches_per_epoch`` an epoch is that many full
    batches, taking as many passes over the dataset as it needs (each index is used
    once per pass); without it, an epoch is one pass, whose last batch may be smaller
    (dropped with ``drop_last``).

    ``batch_size`` is the **global** batch: with several processes, every process draws
    the same batch and keeps its contiguous part of it (the first ``batch_size %
    world_size`` processes take one row more). No index appears twice in a batch, even
    where a batch spans two passes, and nothing is padded; a last batch with fewer rows
    than processes, which would leave a process without any, is dropped.

    Args:
        data: the dataset (anything with a length) or its number of samples.
        batch_size: the rows of each global batch, at least ``world_size`` and at most
            the number of samples (a larger batch would repeat samples).
        batches_per_epoch: full batches per epoch; ``None``: one pass over the data.
        shuffle: draw the order; ``False`` keeps the indices in order (each pass).
        drop_last: drop a last batch smaller than ``batch_size`` (one pass only).
        seed: the seed of the order.
        world_size: the number of processes sharing each batch (default: that of the
            default :mod:`torch.distributed` process group, 1 without one).
        rank: this process's rank among them (default: that of the default group).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = TensorDataset(torch.arange(10.0))
        >>> parts = [RandomBatchSampler(data, batch_size=4, world_size=2, rank=r) for r in (0, 1)]
        >>> whole = RandomBatchSampler(data, batch_size=4, world_size=1, rank=0)
        >>> [a + b for a, b in zip(*parts)] == list(whole)
        True
        >>> [len(b) for b in parts[0]], [len(b) for b in parts[1]]
        ([2, 2, 1], [2, 2, 1])
    """

    def __init__(
        self,
        data: Sized | int,
        *,
        batch_size: int,
        batches_per_epoch: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        world_size: int | None = None,
        rank: int | None = None,
    ) -> None:
        if isinstance(data, bool | str | bytes) or not isinstance(data, int | Sized):
            raise TypeError(
                f"data must be a dataset with a length or a number of samples, got "
                f"{type(data).__name__}"
            )
        self.num_samples = check_int(
            "data", data if isinstance(data, int) else len(data), minimum=1
        )
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.shuffle = check_bool("shuffle", shuffle)
        self.drop_last = check_bool("drop_last", drop_last)
        self.seed = check_int("seed", seed, minimum=0)
        self.world_size, self.rank = _process(world_size, rank)
        if batches_per_epoch is not None:
            batches_per_epoch = check_int("batches_per_epoch", batches_per_epoch, minimum=1)
        self.batches_per_epoch = batches_per_epoch
        if self.batch_size > self.num_samples:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be at most the {self.num_samples} "
                "samples: a larger batch would repeat samples"
            )
        if self.batch_size < self.world_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be at least world_size "
                f"({self.world_size}): every process takes a part of each batch"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration draw the order of ``epoch``."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def _total(self) -> int:
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch * self.batch_size
        return self.num_samples

    def __len__(self) -> int:
        full, rest = divmod(self._total(), self.batch_size)
        keep_rest = rest >= self.world_size and not self.drop_last
        return full + (1 if rest and keep_rest else 0)

    def order(self) -> Tensor:
        """The indices of the current epoch's global batches, one after the other."""
        g = _generator(self.seed, self.epoch, _ORDER_STREAM)
        n, b, total = self.num_samples, self.batch_size, self._total()
        taken: list[Tensor] = []
        used = 0
        while used < total:
            order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
            tail = used % b  # the rows of the batch under way, from the previous pass
            if tail:
                # the indices that batch holds come last in this pass: never twice in it
                clash = torch.isin(order, torch.cat(taken)[used - tail :])
                order = torch.cat([order[~clash], order[clash]])
            taken.append(order[: total - used])
            used += len(taken[-1])
        return torch.cat(taken)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.batch_size and (self.drop_last or len(batch) < self.world_size):
                break
            first, stop = part_bounds(len(batch), self.world_size, self.rank)
            yield batch[first:stop].tolist()
