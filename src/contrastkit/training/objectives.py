"""Objectives: from a model and a batch to named loss terms.

An *objective* turns a batch into named loss terms: ``{"loss": tensor}``, or several
terms. The trainer minimises their sum, unless one of several terms is named ``"loss"``:
that one is then the total, and the others are only logged (:func:`total_loss`).

The inputs of a batch may be tensors or mappings of tensors, such as tokenized text
(``{"input_ids": ..., "attention_mask": ...}``) for a model that takes one. Where an
objective embeds several inputs (the anchor, positive and negative of a triplet), they
go through the model as one joined batch when they can be joined (:func:`embed_parts`),
and one after the other when they cannot (tokens padded to different lengths).

**Several processes.** Under :class:`~torch.nn.parallel.DistributedDataParallel` each
process holds its part of the global batch, and DDP averages the processes' gradients.
A per-sample loss (pairs, triplets, reconstruction) averaged over each process's rows
would make that average the global mean only when every part has as many rows; the
objectives here return each term through :func:`global_value` instead: its value is the
term of the whole global batch on every process (so every process logs the same), and
its gradient is that of this process's rows weighted by their share of the batch, so
that DDP's average is exactly the gradient of the whole batch's mean. A loss that
gathers every process's rows itself (``gather=True``, which sets its ``gather``
attribute) already returns the global value and is left as it is. A batch-level loss
(SupCon, batch-all triplet, InfoNCE) without ``gather=True`` sees only this process's
part (its negatives come from this part alone); its terms are then combined by the
same weights, which is not the loss of the whole batch: build it with ``gather=True``.
At world size 1 nothing changes and nothing is exchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from contrastkit import distributed
from contrastkit.training.batches import batch_size, join
from contrastkit.training.memory import MemoryBank

__all__ = [
    "LabelObjective",
    "Objective",
    "PairObjective",
    "ReconstructionObjective",
    "TripletObjective",
    "TwoViewObjective",
    "WeightedSum",
    "embed_parts",
    "global_value",
    "load_objective_state",
    "objective_state",
    "total_loss",
]


class Objective(Protocol):
    """From a model and a batch to named loss terms (scalars), minimised as their sum.

    When several terms come back and one of them is named ``"loss"``, that one is the
    total the :class:`Trainer` minimises; the others are logged only.
    """

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Loss terms for one batch."""
        ...


def embed_parts(model: nn.Module, parts: Sequence[Any]) -> list[Any]:
    """``[model(part) for part in parts]``, in one forward pass when the parts can be joined.

    Tensors of one shape after the first dimension (and one dtype and device), or
    mappings of such tensors with the same keys (tokenized text padded to one length),
    are joined along the first dimension (:func:`~contrastkit.training.batches.join`),
    embedded at once, and the embeddings split back into one tensor per part; batch
    normalization then sees every part together, as one network would. Parts that cannot
    be joined go through the model one after the other.

    Raises:
        TypeError: the model does not return a tensor for a joined batch.

    Example:
        >>> import torch
        >>> class Bag(torch.nn.Module):  # a text encoder: mean of the token embeddings
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embedding = torch.nn.Embedding(10, 2)
        ...     def forward(self, tokens):
        ...         return self.embedding(tokens["input_ids"]).mean(1)
        >>> short = {"input_ids": torch.tensor([[1, 2], [3, 4]])}
        >>> long = {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 6]])}
        >>> [tuple(e.shape) for e in embed_parts(Bag(), [short, short, long])]
        [(2, 2), (2, 2), (2, 2)]
    """
    joined = join(parts)
    if joined is None:
        return [model(part) for part in parts]
    out = model(joined)
    if not isinstance(out, Tensor):
        raise TypeError(
            "the model must return a tensor of embeddings for a joined batch, "
            f"got {type(out).__name__}"
        )
    return list(out.split([batch_size(part) for part in parts]))


def global_value(value: Tensor, rows: int, loss: object = None) -> Tensor:
    r"""This process's loss term as the term of the whole global batch (several processes).

    With :math:`W` processes holding :math:`B_r` rows each and :math:`\ell_r` the mean
    loss over this process's rows, the global mean is
    :math:`\bar\ell = \sum_r B_r \ell_r / \sum_r B_r`. The result has the value
    :math:`\bar\ell` on every process and the gradient of
    :math:`W B_r \ell_r / \sum_r B_r`, so that
    :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the processes'
    gradients, ends with the gradient of :math:`\bar\ell`: that of one process on the
    whole batch. A loss whose ``reduction`` is ``"sum"`` is summed over processes
    instead. One scalar collective per call (two numbers).

    ``value`` is returned as it is at world size 1, when it is not a scalar, and when
    ``loss`` gathers every process's rows itself (its ``gather`` attribute is true: its
    value is already the global one).

    Args:
        value: this process's loss, a scalar (the mean, or the sum, over its rows).
        rows: this process's rows (samples, pairs, triplets) of the batch.
        loss: the loss that computed ``value``: its ``reduction`` and ``gather``
            attributes are read, when it has them.
    """
    if (
        not distributed.is_distributed()
        or getattr(loss, "gather", False) is True
        or not isinstance(value, Tensor)
        or value.dim() != 0
    ):
        return value
    summed = getattr(loss, "reduction", "mean") == "sum"
    weight = 1.0 if summed else float(rows)
    local = value * weight  # this process's share of the sum over the global batch
    shares = torch.stack(
        [
            local.detach().to(torch.float64),
            torch.tensor(weight, dtype=torch.float64, device=value.device),
        ]
    )
    total, count = distributed.all_reduce_sum(shares).unbind()
    if summed:
        return distributed.global_loss(local, total.to(value.dtype))
    count = count.to(value.dtype)
    return distributed.global_loss(local / count, (total / count).to(value.dtype))


def _unpack(batch: Any, n: int, what: str) -> tuple[Any, ...]:
    if not isinstance(batch, list | tuple) or len(batch) != n:
        got = f"{len(batch)} items" if isinstance(batch, list | tuple) else type(batch).__name__
        raise ValueError(f"a batch for {what} must have {n} items, got {got}")
    return tuple(batch)


class PairObjective:
    """``loss(model(x1), model(x2), y)`` for batches of pairs ``(x1, x2, y)``.

    Tensor inputs go through ``model(x1, x2)`` (a
    :class:`~contrastkit.models.SiameseNetwork` embeds them with one encoder); other
    inputs, such as tokenized text, through ``model(x)`` with :func:`embed_parts`.
    """

    def __init__(self, loss: Callable[..., Tensor], *, name: str = "loss") -> None:
        self.loss, self.name = loss, name

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one batch of pairs."""
        x1, x2, y = _unpack(batch, 3, "PairObjective (x1, x2, y)")
        if isinstance(x1, Tensor) and isinstance(x2, Tensor):
            out1, out2 = model(x1, x2)
        else:
            out1, out2 = embed_parts(model, [x1, x2])
        return {self.name: global_value(self.loss(out1, out2, y), batch_size(x1), self.loss)}


class TripletObjective:
    """``loss(model(a), model(p), model(n))`` for batches of triplets.

    The three inputs go through the model in one pass when they can be joined (tensors
    of one shape, or tokenized text padded to one length), else one after the other
    (:func:`embed_parts`).
    """

    def __init__(self, loss: Callable[..., Tensor], *, name: str = "loss") -> None:
        self.loss, self.name = loss, name

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one batch of triplets."""
        anchor, positive, negative = _unpack(batch, 3, "TripletObjective (a, p, n)")
        value = self.loss(*embed_parts(model, [anchor, positive, negative]))
        return {self.name: global_value(value, batch_size(anchor), self.loss)}


class _Remembering:
    """An objective that may keep a :class:`MemoryBank`, saved with its state.

    The trainer saves :meth:`state_dict` in each checkpoint and gives it back with
    :meth:`load_state_dict` on resume, so that a resumed run holds the same memory.
    """

    def __init__(
        self,
        loss: Callable[..., Tensor],
        *,
        name: str = "loss",
        memory: MemoryBank | None = None,
    ) -> None:
        if memory is not None and not isinstance(memory, MemoryBank):
            raise TypeError(f"memory must be a MemoryBank or None, got {type(memory).__name__}")
        self.loss, self.name, self.memory = loss, name, memory

    def _memory_for(self, z: Tensor) -> tuple[MemoryBank, Tensor, bool] | None:
        """The memory (moved to the embeddings' device), ``z`` in its dtype, and gather.

        ``None`` without a memory or in a call without gradient (validation: the plain
        loss of the batch, and nothing enqueued).
        """
        if self.memory is None or not torch.is_grad_enabled():
            return None
        if self.memory.embeddings.device != z.device:
            self.memory.to(z.device)
        return (
            self.memory,
            z.to(self.memory.embeddings.dtype),
            bool(getattr(self.loss, "gather", False)),
        )

    def state_dict(self) -> dict[str, Any]:
        """The memory's state (``{}`` without one), for checkpoints."""
        return {} if self.memory is None else {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave.

        Raises:
            ValueError: the state holds a memory and this objective has none, or the
                other way round.
        """
        if (self.memory is None) != ("memory" not in state):
            has = "holds a memory" if "memory" in state else "holds no memory"
            raise ValueError(
                f"the saved objective state {has}, unlike this objective (memory="
                f"{'None' if self.memory is None else 'a MemoryBank'})"
            )
        if self.memory is not None:
            self.memory.load_state_dict(state["memory"])


class LabelObjective(_Remembering):
    """``loss(model(x), labels)`` for labelled batches, e.g. from a class-balanced sampler.

    With a ``memory`` (:class:`~contrastkit.training.MemoryBank`), in training the
    anchors are compared with the batch and with the embeddings of earlier batches,
    ``loss(z, labels, **memory.extend(z, labels))``, and the batch is then enqueued: a
    loss that takes ``candidates`` (SupCon, the all-pairs contrastive and the triplet
    losses). A loss built with ``gather=True`` gets the memory in the form that gathers
    (:meth:`~contrastkit.training.MemoryBank.extend`), and every process enqueues every
    process's rows. A call without gradient (validation) gives the plain loss of the
    batch and leaves the memory as it is. The memory's state goes into checkpoints
    (:meth:`state_dict`).
    """

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one labelled batch."""
        x, labels = _unpack(batch, 2, "LabelObjective (x, labels)")
        z = model(x)
        found = self._memory_for(z)
        if found is None:
            value = self.loss(z, labels)
        else:
            memory, z, gather = found
            value = self.loss(z, labels, **memory.extend(z, labels, gather=gather))
            memory.enqueue(z, labels, gather=gather)
        return {self.name: global_value(value, batch_size(x), self.loss)}


class TwoViewObjective(_Remembering):
    """``loss(model(views1), model(views2))`` where the views are consecutive samples.

    A batch ``(x, labels)`` from :class:`~contrastkit.data.ClassBalancedBatchSampler` with
    ``samples_per_class=2`` holds two samples of each of P classes, one after the other:
    rows ``0, 2, 4, …`` are the queries and rows ``1, 3, 5, …`` their positives, and no
    two queries share a class, so no negative is a false one (the N-pair setting of Sohn
    2016). Any batch whose rows come in positive pairs is accepted; if two pairs share a
    class (``samples_per_class`` above 2), their cross terms are false negatives.

    With a ``memory`` (:class:`~contrastkit.training.MemoryBank`), in training the keys
    of earlier batches are extra negatives shared by every query, as in MoCo (He et al.
    2020): ``loss(queries, keys, negatives=memory.candidates()[0])`` (InfoNCE), and this
    batch's keys are then enqueued. They are of any class, a false negative where a
    remembered key shares its query's class. A loss built with ``gather=True`` gets this
    process's share of the memory, which it gathers. Validation (no gradient) gives the
    plain loss. The memory's state goes into checkpoints (:meth:`state_dict`).
    """

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one batch of consecutive positive pairs."""
        x, labels = _unpack(batch, 2, "TwoViewObjective (x, labels)")
        if batch_size(x) % 2 or not torch.equal(labels[0::2], labels[1::2]):
            raise ValueError(
                "TwoViewObjective needs rows in consecutive same-class pairs "
                "(use ClassBalancedBatchSampler with samples_per_class=2)"
            )
        out = model(x)
        found = self._memory_for(out)
        if found is None:
            value = self.loss(out[0::2], out[1::2])
        else:
            memory, out, gather = found
            negatives = memory.candidates(gather=gather)[0]
            value = self.loss(out[0::2], out[1::2], negatives=negatives)
            memory.enqueue(out[1::2], gather=gather)
        return {self.name: global_value(value, batch_size(x) // 2, self.loss)}


class ReconstructionObjective:
    r"""``loss(model.reconstruct(x), x)`` over every input of a batch: an autoencoder's term.

    .. math::
        L = \operatorname{loss}\bigl(g(f(\tilde x)),\, x\bigr)

    where :math:`f` is the encoder, :math:`g` the decoder and :math:`\tilde x` the input
    the model's ``reconstruct`` feeds its encoder (``x`` itself, or ``x`` with noise for
    a denoising autoencoder in train mode); the target is always the clean ``x``.

    Which items of a batch are inputs: a bare tensor is one batch of inputs; in a tuple
    or list, the first item and every other tensor of exactly its shape. So ``(x,)`` and
    ``(x, labels)`` reconstruct ``x``; ``(x1, x2, y)`` reconstructs ``x1`` and ``x2``; and
    ``(a, p, n)`` reconstructs all three. Labels (shape ``(N,)``) are never inputs, since
    inputs are at least 2-D. ``inputs`` names the items explicitly instead. The inputs go
    through the model as one concatenated batch, and ``loss`` sees the concatenation, so
    its ``"mean"`` is the mean over every input sample of the batch.

    Args:
        loss: from ``(reconstruction, target)`` to a scalar, such as
            :class:`~contrastkit.losses.ReconstructionLoss`.
        name: the name of the term (``train_<name>`` in the history).
        inputs: the positions of the batch items to reconstruct; ``None`` for the rule
            above.

    Shape:
        every input: :math:`(N, *)`, at least 2-D; all inputs of a batch have one shape.

    Example:
        >>> import torch
        >>> from contrastkit import ReconstructionLoss
        >>> class Halve(torch.nn.Module):  # any model with a ``reconstruct`` method
        ...     def reconstruct(self, x):
        ...         return x / 2
        >>> x1, x2, y = torch.ones(3, 4), torch.zeros(3, 4), torch.tensor([1, 0, 1])
        >>> objective = ReconstructionObjective(ReconstructionLoss())
        >>> objective(Halve(), (x1, x2, y))  # (0.25 for x1 + 0 for x2) / 2
        {'reconstruction': tensor(0.1250)}

    Reference:
        G. E. Hinton, R. R. Salakhutdinov. *Reducing the Dimensionality of Data with
        Neural Networks.* Science 313, 2006.
    """

    def __init__(
        self,
        loss: Callable[[Tensor, Tensor], Tensor],
        *,
        name: str = "reconstruction",
        inputs: Sequence[int] | None = None,
    ) -> None:
        if not callable(loss):
            raise TypeError(f"loss must be callable, got {type(loss).__name__}")
        _check_name("name", name)
        if inputs is not None:
            if isinstance(inputs, str) or not isinstance(inputs, Sequence):
                raise TypeError(
                    f"inputs must be a sequence of batch positions, got {type(inputs).__name__} "
                    f"{inputs!r}"
                )
            if not inputs:
                raise ValueError("inputs must name at least one batch position, got []")
            for i in inputs:
                if isinstance(i, bool) or not isinstance(i, int):
                    raise TypeError(f"inputs must be integer positions, got {list(inputs)}")
            if min(inputs) < 0:
                raise ValueError(f"inputs must be positions >= 0, got {list(inputs)}")
            if len(set(inputs)) != len(inputs):
                raise ValueError(f"inputs must not repeat a position, got {list(inputs)}")
            inputs = tuple(inputs)
        self.loss, self.name, self.inputs = loss, name, inputs

    def _inputs(self, batch: Any) -> list[Tensor]:
        if isinstance(batch, Tensor):
            items: list[Any] = [batch]
        elif isinstance(batch, list | tuple) and batch:
            items = list(batch)
        else:
            raise ValueError(
                "a batch for ReconstructionObjective must be a tensor or a non-empty tuple, "
                f"got {type(batch).__name__}"
            )
        if self.inputs is not None:
            if max(self.inputs) >= len(items):
                raise ValueError(
                    f"inputs {list(self.inputs)} name a position beyond the batch's "
                    f"{len(items)} items"
                )
            chosen = [items[i] for i in self.inputs]
        else:
            chosen = [items[0]]
            if isinstance(items[0], Tensor):
                chosen += [
                    t for t in items[1:] if isinstance(t, Tensor) and t.shape == items[0].shape
                ]
        shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in chosen]
        if not all(isinstance(t, Tensor) and t.dim() >= 2 for t in chosen):
            raise ValueError(
                f"the inputs to reconstruct must be tensors of at least 2 dimensions (N, ...), "
                f"got {shapes}"
            )
        if len({tuple(t.shape[1:]) for t in chosen}) > 1:
            raise ValueError(f"the inputs to reconstruct must have one shape, got {shapes}")
        return chosen

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The reconstruction loss of every input of one batch."""
        reconstruct = getattr(model, "reconstruct", None)
        if not callable(reconstruct):
            raise TypeError(
                "ReconstructionObjective needs a model with a reconstruct method "
                f"(an Autoencoder), got {type(model).__name__}"
            )
        inputs = self._inputs(batch)
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs)
        value = self.loss(reconstruct(x), x)
        if not isinstance(value, Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"the loss of ReconstructionObjective must return a scalar (reduction 'mean' "
                f"or 'sum'), got {shape}"
            )
        return {self.name: global_value(value, x.shape[0], self.loss)}


def _check_name(where: str, name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{where} must be a str, got {type(name).__name__} {name!r}")
    if not name.isidentifier():
        raise ValueError(f"{where} must be a name of letters, digits and underscores, got {name!r}")
    return name


class WeightedSum:
    r"""Several objectives on the same batch, minimised as one weighted sum.

    .. math::
        L = \sum_k w_k L_k

    where :math:`L_k` is the total of the :math:`k`-th objective's terms (their sum, or
    its ``"loss"`` term). Called on a batch, it returns each :math:`L_k` **raw**
    (unweighted) under its name, and :math:`L` under ``"loss"``: the :class:`Trainer`
    minimises :math:`L` and logs every term, so the history holds ``train_<name>`` and
    ``val_<name>`` for each objective next to ``train_loss`` and ``val_loss`` (the
    weighted totals). The weights are kept in :attr:`weights`. Objectives may be of any
    kind and in any number, :class:`WeightedSum` included.

    Args:
        terms: name → ``(objective, weight)``; names are identifiers other than
            ``"loss"``; weights are finite numbers > 0.

    Example:
        >>> import torch
        >>> from contrastkit import ContrastiveLoss, ReconstructionLoss
        >>> from contrastkit.models import Autoencoder, MLPDecoder, MLPEncoder
        >>> _ = torch.manual_seed(0)
        >>> model = Autoencoder(MLPEncoder(8, embedding_dim=2), MLPDecoder(2, 8))
        >>> objective = WeightedSum({
        ...     "reconstruction": (ReconstructionObjective(ReconstructionLoss()), 1.0),
        ...     "contrastive": (PairObjective(ContrastiveLoss(margin=1.0)), 0.5),
        ... })
        >>> x1, x2, y = torch.randn(6, 8), torch.randn(6, 8), torch.tensor([1, 0] * 3)
        >>> terms = objective(model, (x1, x2, y))
        >>> sorted(terms), objective.weights
        (['contrastive', 'loss', 'reconstruction'], {'reconstruction': 1.0, 'contrastive': 0.5})
        >>> bool(terms["loss"] == terms["reconstruction"] + 0.5 * terms["contrastive"])
        True
    """

    def __init__(self, terms: Mapping[str, tuple[Objective, float]]) -> None:
        if not isinstance(terms, Mapping):
            raise TypeError(
                "terms must be a mapping of name -> (objective, weight), got "
                f"{type(terms).__name__}"
            )
        if not terms:
            raise ValueError("terms must name at least one objective, got an empty mapping")
        self.objectives: dict[str, Objective] = {}
        self.weights: dict[str, float] = {}
        for name, entry in terms.items():
            _check_name("each name in terms", name)
            if name == "loss":
                raise ValueError("terms must not be named 'loss': that name is the weighted total")
            if not isinstance(entry, tuple | list) or len(entry) != 2:
                raise TypeError(
                    f"terms[{name!r}] must be a pair (objective, weight), got {entry!r}"
                )
            objective, weight = entry
            if not callable(objective):
                raise TypeError(
                    f"terms[{name!r}]: the objective must be callable, got "
                    f"{type(objective).__name__}"
                )
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise TypeError(
                    f"terms[{name!r}]: the weight must be a real number, got "
                    f"{type(weight).__name__} {weight!r}"
                )
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(
                    f"terms[{name!r}]: the weight must be finite and > 0, got {weight!r}"
                )
            self.objectives[name], self.weights[name] = objective, float(weight)

    def state_dict(self) -> dict[str, Any]:
        """The state of each objective that has one (a memory), by name."""
        return objective_state(self.objectives)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Give each objective back its state."""
        load_objective_state(self.objectives, state)

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Each objective's total, raw, and their weighted sum as ``"loss"``."""
        out = {
            name: total_loss(objective(model, batch)) for name, objective in self.objectives.items()
        }
        parts = [self.weights[name] * value for name, value in out.items()]
        out["loss"] = parts[0] if len(parts) == 1 else torch.stack(parts).sum()
        return out


def total_loss(terms: Mapping[str, Tensor]) -> Tensor:
    """What the trainer minimises: the ``"loss"`` term if there is one, else the sum."""
    if not terms:
        raise ValueError("the objective returned no loss term")
    if "loss" in terms:
        return terms["loss"]
    values = list(terms.values())
    return values[0] if len(values) == 1 else torch.stack(values).sum()


def objective_state(objective: Any) -> dict[str, Any]:
    """What an objective must keep across a resume (a memory of past embeddings).

    ``objective.state_dict()`` when it has one; for a mapping of objectives, each one's
    state by name; else ``{}``. The :class:`Trainer` saves it in every checkpoint.
    """
    if isinstance(objective, Mapping):
        return {name: objective_state(o) for name, o in objective.items()}
    state_dict = getattr(objective, "state_dict", None)
    return dict(state_dict()) if callable(state_dict) else {}


def load_objective_state(objective: Any, state: Mapping[str, Any]) -> None:
    """Give an objective back what :func:`objective_state` took from it."""
    if isinstance(objective, Mapping):
        for name, o in objective.items():
            load_objective_state(o, state.get(name, {}))
        return
    load = getattr(objective, "load_state_dict", None)
    if callable(load):
        load(state)
