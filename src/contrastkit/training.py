"""A plain training loop with callbacks, progress bars and resumable checkpoints.

An *objective* turns a batch into named loss terms: ``{"loss": tensor}``, or several
terms. The :class:`Trainer` minimises their sum, unless one of several terms is named
``"loss"``: that one is then the total, and the others are only logged. The objectives
here connect the batches of :mod:`contrastkit.data` to the losses:

================================  ==================================  ==============================
objective                         batch                               losses
================================  ==================================  ==============================
:class:`PairObjective`            ``(x1, x2, y)``                     contrastive, cosine-similarity
:class:`TripletObjective`         ``(anchor, positive, negative)``    triplet
:class:`LabelObjective`           ``(x, labels)``                     SupCon, batch-all / batch-hard
                                                                      triplet, all-pairs contrastive
:class:`TwoViewObjective`         ``(x, labels)``, P classes × 2      InfoNCE, NT-Xent
:class:`ReconstructionObjective`  any of the above, or ``x`` alone    reconstruction (autoencoders)
:class:`WeightedSum`              what each of its objectives takes   any: Σₖ wₖ·Lₖ
================================  ==================================  ==============================

:class:`WeightedSum` is the one way to combine objectives, for example an autoencoder's
reconstruction and a contrastive loss on its code: each term is logged raw under its own
name (progress bar, ``train_<name>`` and ``val_<name>`` in the history) and
``train_loss`` is the weighted total that is minimised; the weights are in
:attr:`WeightedSum.weights`.

Every epoch starts from ``torch.manual_seed`` of (seed, epoch) and tells the datasets
and batch samplers its number (``set_epoch``), so an epoch's batches, dropout masks and
draws depend only on the seed and the epoch. With the optimizer and scheduler state
saved in the checkpoint after each epoch, a run resumed from its last checkpoint ends
with exactly the weights of an uninterrupted run (on CPU).

Checkpoints live in ``run_dir/checkpoints/epoch-NNNN/``: ``model.safetensors`` (the
weights) and ``state.pt`` (optimizer, scheduler, history). Each is written to a
temporary folder that is renamed into place, so a run killed at any moment leaves only
complete checkpoints; older ones are removed once the new one is in place.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from contrastkit import ContrastiveLoss
    >>> from contrastkit.data import PairDataset
    >>> from contrastkit.models import MLPEncoder, SiameseNetwork
    >>> from contrastkit.training import PairObjective, Trainer
    >>> _ = torch.manual_seed(0)
    >>> inputs, labels = torch.randn(60, 8), torch.arange(60) % 3
    >>> pairs = PairDataset(inputs, labels, seed=0)
    >>> model = SiameseNetwork(MLPEncoder(8, embedding_dim=2, hidden=(16,)))
    >>> trainer = Trainer(
    ...     model,
    ...     PairObjective(ContrastiveLoss(margin=1.0)),
    ...     torch.optim.Adam(model.parameters(), lr=1e-2),
    ...     DataLoader(pairs, batch_size=20, shuffle=True),
    ...     epochs=2,
    ...     progress=False,
    ... )
    >>> history = trainer.fit()
    >>> [record["epoch"] for record in history], sorted(history[0])
    ([1, 2], ['epoch', 'epoch_seconds', 'train_loss'])
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

__all__ = [
    "LabelObjective",
    "Objective",
    "PairObjective",
    "ReconstructionObjective",
    "Trainer",
    "TripletObjective",
    "TwoViewObjective",
    "WeightedSum",
    "embed",
    "latest_checkpoint",
    "load_weights",
    "save_weights",
]

Event = Literal["on_batch_end", "on_epoch_end", "on_train_end"]
EVENTS: tuple[Event, ...] = ("on_batch_end", "on_epoch_end", "on_train_end")
Callback = Callable[["Trainer"], None]


class Objective(Protocol):
    """From a model and a batch to named loss terms (scalars), minimised as their sum.

    When several terms come back and one of them is named ``"loss"``, that one is the
    total the :class:`Trainer` minimises; the others are logged only.
    """

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Loss terms for one batch."""
        ...


def _unpack(batch: Any, n: int, what: str) -> tuple[Any, ...]:
    if not isinstance(batch, list | tuple) or len(batch) != n:
        got = f"{len(batch)} items" if isinstance(batch, list | tuple) else type(batch).__name__
        raise ValueError(f"a batch for {what} must have {n} items, got {got}")
    return tuple(batch)


class PairObjective:
    """``loss(model(x1), model(x2), y)`` for batches of pairs ``(x1, x2, y)``."""

    def __init__(self, loss: Callable[..., Tensor], *, name: str = "loss") -> None:
        self.loss, self.name = loss, name

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one batch of pairs."""
        x1, x2, y = _unpack(batch, 3, "PairObjective (x1, x2, y)")
        out1, out2 = model(x1, x2)
        return {self.name: self.loss(out1, out2, y)}


class TripletObjective:
    """``loss(model(a), model(p), model(n))`` for batches of triplets, in one pass."""

    def __init__(self, loss: Callable[..., Tensor], *, name: str = "loss") -> None:
        self.loss, self.name = loss, name

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one batch of triplets."""
        anchor, positive, negative = _unpack(batch, 3, "TripletObjective (a, p, n)")
        out = model(torch.cat([anchor, positive, negative]))
        return {self.name: self.loss(*out.chunk(3))}


class LabelObjective:
    """``loss(model(x), labels)`` for labelled batches, e.g. from a class-balanced sampler."""

    def __init__(self, loss: Callable[..., Tensor], *, name: str = "loss") -> None:
        self.loss, self.name = loss, name

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one labelled batch."""
        x, labels = _unpack(batch, 2, "LabelObjective (x, labels)")
        return {self.name: self.loss(model(x), labels)}


class TwoViewObjective:
    """``loss(model(views1), model(views2))`` where the views are consecutive samples.

    A batch ``(x, labels)`` from :class:`~contrastkit.data.ClassBalancedBatchSampler` with
    ``samples_per_class=2`` holds two samples of each of P classes, one after the other:
    rows ``0, 2, 4, …`` are the queries and rows ``1, 3, 5, …`` their positives, and no
    two queries share a class, so no negative is a false one (the N-pair setting of Sohn
    2016). Any batch whose rows come in positive pairs is accepted; if two pairs share a
    class (``samples_per_class`` above 2), their cross terms are false negatives.
    """

    def __init__(self, loss: Callable[..., Tensor], *, name: str = "loss") -> None:
        self.loss, self.name = loss, name

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one batch of consecutive positive pairs."""
        x, labels = _unpack(batch, 2, "TwoViewObjective (x, labels)")
        if x.shape[0] % 2 or not torch.equal(labels[0::2], labels[1::2]):
            raise ValueError(
                "TwoViewObjective needs rows in consecutive same-class pairs "
                "(use ClassBalancedBatchSampler with samples_per_class=2)"
            )
        out = model(x)
        return {self.name: self.loss(out[0::2], out[1::2])}


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
        return {self.name: value}


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

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Each objective's total, raw, and their weighted sum as ``"loss"``."""
        out = {name: _total(objective(model, batch)) for name, objective in self.objectives.items()}
        parts = [self.weights[name] * value for name, value in out.items()]
        out["loss"] = parts[0] if len(parts) == 1 else torch.stack(parts).sum()
        return out


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def _set_epoch(loader: Iterable[Any], epoch: int) -> None:
    for part in ("dataset", "sampler", "batch_sampler"):
        target = getattr(loader, part, None)
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch)  # type: ignore[union-attr]


class Trainer:
    """Train a model on an objective, one epoch after another.

    Args:
        model: the network (for example a :class:`~contrastkit.models.SiameseNetwork`).
        objective: from ``(model, batch)`` to named loss terms; see the table above.
        optimizer: any :class:`torch.optim.Optimizer` over the model's parameters.
        train_loader: an iterable of batches (usually a :class:`~torch.utils.data.DataLoader`).
        epochs: the number of epochs to reach (a resumed run continues up to it).
        val_loader: batches on which the mean loss terms are reported as ``val_*`` after
            each epoch (no gradient, eval mode; epoch 0 draws, so always the same batches).
        evaluate: called with the model after each epoch (in eval mode, no gradient);
            returns more values to log, such as validation metrics.
        scheduler: a learning-rate scheduler stepped after every batch.
        run_dir: where checkpoints go; ``None`` keeps none.
        seed: the seed of every epoch.
        device: where the model and batches go.
        progress: tqdm progress bars; ``None`` shows them only on a terminal.
        max_grad_norm: clip the gradient norm to this value if given.

    Callbacks are plain functions of the trainer, added with :meth:`add_callback` for
    ``"on_batch_end"``, ``"on_epoch_end"`` or ``"on_train_end"``. They can read
    ``trainer.epoch``, ``trainer.step``, ``trainer.last_terms`` (the batch's loss terms)
    and ``trainer.history`` (one dict per finished epoch).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        train_loader: Iterable[Any],
        *,
        epochs: int,
        val_loader: Iterable[Any] | None = None,
        evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
        scheduler: Any = None,
        run_dir: str | Path | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool | None = None,
        max_grad_norm: float | None = None,
    ) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm!r}")
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.train_loader, self.val_loader, self.evaluate = train_loader, val_loader, evaluate
        self.scheduler, self.epochs, self.seed = scheduler, epochs, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = torch.device(device)
        self.progress, self.max_grad_norm = progress, max_grad_norm
        self.callbacks: dict[str, list[Callback]] = {event: [] for event in EVENTS}
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.step = 0
        self.last_terms: dict[str, float] = {}

    def add_callback(self, event: Event, fn: Callback) -> None:
        """Call ``fn(trainer)`` at ``event``."""
        if event not in self.callbacks:
            raise ValueError(f"event must be one of {list(self.callbacks)}, got {event!r}")
        self.callbacks[event].append(fn)

    def _fire(self, event: Event) -> None:
        for fn in self.callbacks[event]:
            fn(self)

    def fit(self, *, resume: bool = False) -> list[dict[str, float]]:
        """Train up to ``epochs``; with ``resume=True`` start after the last checkpoint.

        Returns:
            The history: one dict per epoch with ``epoch``, ``train_<term>`` (the mean of
            each loss term, and ``train_loss`` the mean of the total minimised: the sum of
            the terms, or the objective's own ``"loss"`` term, such as the weighted
            total of a :class:`WeightedSum`), the ``val_<term>`` values and whatever
            ``evaluate`` returned.
        """
        self.model.to(self.device)
        if resume:
            self._resume()
        while self.epoch < self.epochs:
            record = {"epoch": self.epoch + 1}
            start = time.perf_counter()
            record.update(self._train_epoch())
            record.update(self._validate())
            record["epoch_seconds"] = time.perf_counter() - start
            self.epoch += 1
            self.history.append(record)
            if self.run_dir is not None:
                self._save()
            self._fire("on_epoch_end")
        self._fire("on_train_end")
        return self.history

    def _train_epoch(self) -> dict[str, float]:
        from tqdm.auto import tqdm

        torch.manual_seed(_epoch_seed(self.seed, self.epoch))
        _set_epoch(self.train_loader, self.epoch)
        self.model.train()
        sums: dict[str, float] = {}
        batches = 0
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            disable=(not self.progress) if self.progress is not None else None,
            leave=False,
            dynamic_ncols=True,
        )
        with bar:  # closed even when a step raises or the run is interrupted
            for batch in bar:
                terms = self.objective(self.model, _to(batch, self.device))
                loss = _total(terms)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss is {loss.item()} at epoch {self.epoch + 1}, step {self.step}; "
                        "lower the learning rate or check the inputs"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.step += 1
                batches += 1
                self.last_terms = _floats(terms, loss)
                for name, value in self.last_terms.items():
                    sums[name] = sums.get(name, 0.0) + value
                bar.set_postfix({k: f"{sums[k] / batches:.4g}" for k in sums})
                self._fire("on_batch_end")
        if batches == 0:
            raise ValueError("train_loader gave no batch")
        return {f"train_{name}": value / batches for name, value in sums.items()}

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        if self.val_loader is None and self.evaluate is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        rng = torch.get_rng_state()
        record: dict[str, float] = {}
        try:
            if self.val_loader is not None:
                _set_epoch(self.val_loader, 0)
                sums: dict[str, float] = {}
                batches = 0
                for batch in self.val_loader:
                    terms = self.objective(self.model, _to(batch, self.device))
                    for name, value in _floats(terms, _total(terms)).items():
                        sums[name] = sums.get(name, 0.0) + value
                    batches += 1
                record.update({f"val_{k}": v / max(batches, 1) for k, v in sums.items()})
            if self.evaluate is not None:
                record.update({k: float(v) for k, v in self.evaluate(self.model).items()})
        finally:
            torch.set_rng_state(rng)
            self.model.train(was_training)
        return record

    def _save(self) -> None:
        if self.run_dir is None:
            return
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"epoch-{self.epoch:04d}"
        tmp = folder / f".epoch-{self.epoch:04d}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_weights(self.model, tmp / "model.safetensors")
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }
        torch.save(state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in folder.glob("epoch-*"):
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    def _resume(self) -> None:
        if self.run_dir is None:
            raise ValueError("resume=True needs a run_dir with checkpoints")
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            return
        load_weights(self.model, checkpoint / "model.safetensors")
        state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])


def _total(terms: Mapping[str, Tensor]) -> Tensor:
    """What the trainer minimises: the ``"loss"`` term if there is one, else the sum."""
    if not terms:
        raise ValueError("the objective returned no loss term")
    if "loss" in terms:
        return terms["loss"]
    values = list(terms.values())
    return values[0] if len(values) == 1 else torch.stack(values).sum()


def _floats(terms: Mapping[str, Tensor], total: Tensor) -> dict[str, float]:
    out = {name: float(value.detach()) for name, value in terms.items()}
    if len(out) > 1 or "loss" not in out:
        out["loss"] = float(total.detach())
    return out


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s state dict to a ``.safetensors`` file (CPU, contiguous copies)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or ``None`` if there is none."""
    folder = Path(run_dir) / "checkpoints"
    found = sorted(
        (
            p
            for p in folder.glob("epoch-*")
            if p.name.removeprefix("epoch-").isdigit()
            and (p / "model.safetensors").is_file()
            and (p / "state.pt").is_file()
        ),
        key=lambda p: int(p.name.removeprefix("epoch-")),
    )
    return found[-1] if found else None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``model.safetensors`` file into ``model`` (every key must match)."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


@torch.no_grad()
def embed(
    model: nn.Module,
    inputs: Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> Tensor:
    """Embeddings of ``inputs`` in eval mode, batch by batch, returned on the CPU.

    The model's training mode is restored afterwards.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        parts = [
            model(inputs[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, inputs.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("inputs must hold at least one sample")
    out = torch.cat(parts)
    if not math.isfinite(float(out.abs().max())):
        raise FloatingPointError("the model produced NaN or infinite embeddings")
    return out
