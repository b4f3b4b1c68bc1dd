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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from contrastkit.training.checkpoints import latest_checkpoint, load_weights, save_weights
from contrastkit.training.objectives import Objective, total_loss

__all__ = ["Trainer", "embed"]


Event = Literal["on_batch_end", "on_epoch_end", "on_train_end"]
EVENTS: tuple[Event, ...] = ("on_batch_end", "on_epoch_end", "on_train_end")
Callback = Callable[["Trainer"], None]


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
                loss = total_loss(terms)
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
                    for name, value in _floats(terms, total_loss(terms)).items():
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


def _floats(terms: Mapping[str, Tensor], total: Tensor) -> dict[str, float]:
    out = {name: float(value.detach()) for name, value in terms.items()}
    if len(out) > 1 or "loss" not in out:
        out["loss"] = float(total.detach())
    return out


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
