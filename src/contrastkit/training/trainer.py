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

Batches may be of any structure (tensors in tuples, lists, named tuples, dataclasses
and mappings such as tokenized text); :func:`~contrastkit.training.batches.to_device`
moves every tensor in them to the device.

Every epoch starts from ``torch.manual_seed`` of (seed, epoch) and tells the datasets
and batch samplers its number (``set_epoch``), so an epoch's batches, dropout masks and
draws depend only on the seed and the epoch. With the optimizer, scheduler and gradient
scaler state saved in the checkpoint after each epoch (accumulation groups never cross
an epoch), a run resumed from its last checkpoint ends with exactly the weights of an
uninterrupted run (on CPU, in float32 or bfloat16).

**Several processes.** Launched with ``torchrun`` and with a :mod:`torch.distributed`
process group of more than one process initialised, the trainer wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel` and trains one model on every
process's part of each global batch (give each process its part: the batch samplers of
:mod:`contrastkit.data` take ``world_size`` and ``rank``). Rank 0 alone writes the
checkpoints, ``metrics.jsonl`` and TensorBoard logs and shows progress bars; every
process resumes from rank 0's checkpoint; ``evaluate`` runs on rank 0 only and its
values reach every process, so that every process keeps the same history and stops at
the same epoch. Each epoch seeds the random number generator from (seed, epoch, rank)
(so dropout masks differ between processes; rank 0's are those of a one-process run),
while the data order comes from the samplers, from (seed, epoch) alone. See
:class:`Trainer` (``distributed``, ``sync_batch_norm``) for the details.

Checkpoints live in ``run_dir/checkpoints/epoch-NNNN/``: ``model.safetensors`` (the
weights) and ``state.pt`` (optimizer, scheduler, scaler, history, best epoch, and the
objective's own state, such as a memory of past embeddings:
:func:`~contrastkit.training.objectives.objective_state`). Each is
written to a temporary folder that is renamed into place, so a run killed at any moment
leaves only complete checkpoints; older ones are removed once the new one is in place,
and temporary folders a killed run left are removed when the next run starts. With a
``monitor``, ``run_dir/checkpoints/best/`` holds the best epoch's weights.

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

import contextlib
import functools
import importlib.util
import inspect
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from contrastkit import distributed as _dist
from contrastkit.training.batches import to_device
from contrastkit.training.checkpoints import (
    latest_checkpoint,
    remove_stale,
    save_state,
    save_weights,
)
from contrastkit.training.objectives import (
    Objective,
    load_objective_state,
    objective_state,
    total_loss,
)

__all__ = ["Trainer", "embed"]


Event = Literal["on_batch_end", "on_epoch_end", "on_train_end"]
EVENTS: tuple[Event, ...] = ("on_batch_end", "on_epoch_end", "on_train_end")
Callback = Callable[["Trainer"], None]
Precision = Literal["32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("32", "bf16", "fp16")


_T = TypeVar("_T")
_RANK_STREAM = 0x9E3779B97F4A7C15  # the seeds of ranks 1, 2, … lie far from each other


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of an epoch's random state; rank 0's is that of a one-process run."""
    return (seed * 1_000_003 + epoch + rank * _RANK_STREAM) % (2**63 - 1)


_STEP_STREAM = 0xD1B54A32D192ED03  # the transform's seeds lie far from the epochs' own


def _step_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The seed of a training batch's ``transform`` generator: (seed, epoch, step, rank)."""
    return (_epoch_seed(seed, epoch, rank) * 1_000_033 + step + _STEP_STREAM) % (2**63 - 1)


class _Methods(nn.Module):
    """The model, with each of its methods callable through ``forward``.

    :class:`~torch.nn.parallel.DistributedDataParallel` prepares the gradients' exchange
    in its ``forward`` only; wrapping this module lets a call of any method of the
    model (an autoencoder's ``reconstruct``) go through it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, method: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``model(*args)``, ``model.<method>(*args)``, or ``method(model, *args)``.

        Given a function, it runs with the model: several calls in one forward.
        """
        if callable(method):
            return method(self.model, *args, **kwargs)
        if method == "forward":
            return self.model(*args, **kwargs)
        return getattr(self.model, method)(*args, **kwargs)


class _Replica:
    """The model as the objective sees it under DDP: every call goes through the wrapper.

    Calling it calls the model's ``forward``, and a method the model's class defines
    beyond :class:`~torch.nn.Module`'s own (``reconstruct``) is called the same way;
    anything else (attributes, ``parameters()``) is the model's own.
    """

    def __init__(self, wrapper: nn.Module, model: nn.Module) -> None:
        self._wrapper, self._model = wrapper, model

    @property
    def local_model(self) -> nn.Module:
        """The model itself: a call through it runs no collective.

        No exchange of gradients, no broadcast of buffers: what
        :class:`~contrastkit.training.CachedObjective` needs for all but the last of its
        micro-batches.
        """
        return self._model

    def run_in_forward(self, fn: Callable[[nn.Module], _T]) -> _T:
        """``fn(model)`` as one forward through the wrapper, whatever it calls.

        However many calls of the model ``fn`` makes (``model(x)`` and
        ``model.reconstruct(x)``), DDP sees one forward and prepares one exchange of
        gradients for the backward of what it returns: how
        :class:`~contrastkit.training.CachedObjective` replays the last micro-batch of
        each of its calls.
        """
        return self._wrapper(fn)  # type: ignore[no-any-return]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper("forward", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if inspect.ismethod(value) and not hasattr(nn.Module, name):
            return functools.partial(self._wrapper, name)
        return value


def _set_epoch(loader: Iterable[Any], epoch: int) -> None:
    for part in ("dataset", "sampler", "batch_sampler"):
        target = getattr(loader, part, None)
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch)  # type: ignore[union-attr]


def _len(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _positive_int(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


class _Sums:
    """The loss terms of every step, kept on the device and read back only when asked.

    :meth:`add` writes each term, detached, into a buffer on the device (one small copy
    per term, no synchronisation). :meth:`read` sums what was written since the last
    read, finds the first step whose total is not finite, and brings both back in one
    transfer; the host keeps the running sums of the epoch.
    """

    def __init__(self, device: torch.device, capacity: int) -> None:
        # float64 sums float32 terms without loss of precision; MPS has no float64
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.capacity = max(1, capacity)
        self.buffers: dict[str, Tensor] = {}
        self.pending = 0  # steps written since the last read
        self.first_step = 0  # the step of the first of them
        self.count = 0  # steps added in all
        self.totals: dict[str, float] = {}

    def add(self, terms: Mapping[str, Tensor], step: int = 0) -> None:
        if self.pending == 0:
            self.first_step = step
        if self.pending == self.capacity:
            self.capacity *= 2
            for name, old in list(self.buffers.items()):
                grown = old.new_zeros(self.capacity)
                grown[: self.pending] = old
                self.buffers[name] = grown
        for name, value in terms.items():
            buffer = self.buffers.get(name)
            if buffer is None:
                buffer = torch.zeros(self.capacity, dtype=self.dtype, device=value.device)
                self.buffers[name] = buffer
            buffer[self.pending] = value.detach()
        self.pending += 1
        self.count += 1

    def read(
        self, check: str | None = None, reduce: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[dict[str, float], int, tuple[int, float] | None]:
        """The sums of the steps since the last read, how many, and the first bad step.

        The first bad step is the first whose ``check`` term is not finite, as ``(step,
        value)``; ``None`` if every one is, or if ``check`` is ``None``. ``reduce``
        combines every process's terms, step by step (the mean over processes), first.
        """
        names, steps = list(self.buffers), self.pending
        if steps == 0:
            return dict.fromkeys(names, 0.0), 0, None
        table = torch.stack([self.buffers[name][:steps] for name in names])
        if reduce is not None:
            table = reduce(table)
        parts = [table.sum(1)]
        if check is not None:
            checked = table[names.index(check)]
            nonfinite = ~torch.isfinite(checked)
            first = torch.where(nonfinite.any(), nonfinite.to(torch.uint8).argmax(), -1)
            first = first.reshape(1)
            parts += [first.to(self.dtype), checked.gather(0, first.clamp(min=0))]
        values = torch.cat(parts).tolist()
        for buffer in self.buffers.values():
            buffer.zero_()  # a term some steps lack adds nothing for them
        self.pending = 0
        segment = dict(zip(names, values[: len(names)], strict=True))
        for name, value in segment.items():
            self.totals[name] = self.totals.get(name, 0.0) + value
        bad: tuple[int, float] | None = None
        if check is not None and values[len(names)] >= 0:
            bad = (self.first_step + int(values[len(names)]), values[len(names) + 1])
        return segment, steps, bad

    def means(self) -> dict[str, float]:
        """The mean of each term over every step read so far."""
        return {name: total / max(self.count, 1) for name, total in self.totals.items()}


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Name ``path`` in an :class:`OSError` raised inside that names no file.

    A full disk is ``[Errno 28] No space left on device`` with no file name; it becomes
    ``[Errno 28] cannot write PATH: No space left on device`` (same errno and type).
    """
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from None


def _logged(terms: Mapping[str, Tensor], total: Tensor) -> dict[str, Tensor]:
    out = {name: value.detach() for name, value in terms.items()}
    if len(out) > 1 or "loss" not in out:
        out["loss"] = total.detach()
    return out


class Trainer:
    """Train a model on an objective, one epoch after another.

    Args:
        model: the network (for example a :class:`~contrastkit.models.SiameseNetwork`).
        objective: from ``(model, batch)`` to named loss terms; see the table above.
        optimizer: any :class:`torch.optim.Optimizer` over the model's parameters.
        train_loader: an iterable of batches (usually a :class:`~torch.utils.data.DataLoader`).
        epochs: the number of epochs to reach (a resumed run continues up to it, so a
            finished run is extended by resuming it with more epochs).
        val_loader: batches on which the mean loss terms are reported as ``val_*`` after
            each epoch (no gradient, eval mode; epoch 0 draws, so always the same batches).
        evaluate: called with the model after each epoch (in eval mode, no gradient);
            returns more values to log, such as validation metrics.
        scheduler: a learning-rate scheduler stepped after every optimizer step.
        run_dir: where checkpoints, ``metrics.jsonl`` and TensorBoard logs go; ``None``
            keeps none.
        seed: the seed of every epoch.
        device: where the model and batches go.
        progress: tqdm progress bars; ``None`` shows them only on a terminal.
        max_grad_norm: clip the gradient norm to this value if given.
        accumulate: batches whose gradients are summed per optimizer step; each batch's
            total is divided by the number of batches of its group, so the step follows
            the mean gradient. Groups do not cross epochs: the last group of an epoch
            may be smaller (divided by its own size when the loader has a length, else
            by ``accumulate``).
        precision: ``"32"`` (float32), ``"bf16"`` (``torch.autocast`` to bfloat16, on
            CPU and CUDA) or ``"fp16"`` (autocast to float16 with a
            :class:`torch.amp.GradScaler`, whose check for infinite gradients waits
            for the device once per optimizer step; CUDA only). The forward passes of
            training and validation run under it; the weights stay float32.
        log_every: read the loss terms back from the device every this many steps (and
            at each epoch's end): the progress bar's values, the check for a non-finite
            loss and TensorBoard's per-step values; ``None``: at each epoch's end only.
        monitor: the value of the epoch record that decides the best epoch, such as
            ``"val_loss"`` or a value ``evaluate`` returns; its weights are kept in
            ``run_dir/checkpoints/best`` (with ``record.json``, naming the epoch). An
            epoch improves on the best only if strictly better; a NaN never does.
        mode: whether the best value of ``monitor`` is the lowest (``"min"``) or the
            highest (``"max"``).
        patience: stop once this many epochs in a row have not improved ``monitor``;
            ``None`` never stops early.
        tensorboard: write every value of the history (and the running means of the
            training terms at each ``log_every``) to ``run_dir/tensorboard``; needs the
            ``tensorboard`` package, which contrastkit does not require.
        distributed: train on several processes (see below): ``None`` (the default)
            does when a :mod:`torch.distributed` process group of more than one process
            is initialised when the trainer is made; ``True`` requires one; ``False``
            never does (every process then trains on its own).
        sync_batch_norm: under several processes, replace the model's BatchNorm layers
            by :class:`torch.nn.SyncBatchNorm`, which normalizes with the statistics of
            the whole global batch, as one process would. ``None``: on CUDA, where it
            works; on the CPU (torch's SyncBatchNorm refuses CPU tensors) each process
            normalizes its part with the part's own statistics and a
            :class:`UserWarning` says so. ``True`` asks for it (an error on the CPU);
            ``False`` keeps the layers, without a warning.
        ddp_options: more keyword arguments of
            :class:`~torch.nn.parallel.DistributedDataParallel`, such as
            ``{"find_unused_parameters": True}`` for a model whose steps leave some
            parameters without a gradient.
        transform: called as ``transform(batch, generator)`` on every training batch once
            it is on the device, before :meth:`training_step`; what it returns is the
            batch trained on (augmented views, for example
            :class:`~contrastkit.data.Augment`). ``generator`` is a CPU
            :class:`torch.Generator` seeded from (seed, epoch, step, rank), so a resumed
            run draws the same numbers. Validation batches are never transformed.

    **The step.** :meth:`fit` runs epochs; each batch goes through :meth:`train_batch`,
    which moves it to the device, computes the loss terms with :meth:`training_step`
    under the chosen precision, back-propagates their total (:meth:`backward`) and, at
    the end of each group of ``accumulate`` batches, steps the optimizer and scheduler
    (:meth:`optimizer_step`). Validation batches go through :meth:`validation_step`. A
    subclass overrides :meth:`training_step` to compute the terms otherwise (the default
    calls the objective), or :meth:`train_batch` to take over the whole step.

    **No waiting for the device.** The loss terms stay on the device: each step adds
    them, detached, to sums there, and they are read back once per ``log_every`` steps
    and once per epoch. So a non-finite loss is found at that read, not at its step: the
    :class:`FloatingPointError` then names its epoch and step, and the weights have
    already been updated past it (resume from the last checkpoint).

    **Files.** With a ``run_dir``, each epoch ends with its checkpoint
    (``checkpoints/epoch-NNNN``), the best one when ``monitor`` improved
    (``checkpoints/best``), and one JSON line of its record appended to
    ``metrics.jsonl``. On resume, ``metrics.jsonl`` is rewritten from the checkpoint's
    history, so it equals that of an uninterrupted run. A write that fails (a full disk)
    raises an :class:`OSError` that names the file, and a checkpoint that could not be
    written leaves no temporary folder behind.

    **Extending a run.** Resuming with a larger ``epochs`` continues a finished run; it
    ends with exactly the weights of a run trained for that many epochs from the start,
    provided the scheduler does not depend on the total (``OneCycleLR`` is built for a
    number of steps: extend only a scheduler built for the longer run, or none) and
    ``patience`` did not stop it (its count of epochs without improvement is restored,
    so an early-stopped run stops again at once).

    **Several processes.** With ``distributed``, each process is given its part of
    every global batch (``train_loader`` and ``val_loader`` yield this process's parts,
    as many batches on every process), and :meth:`fit` wraps the model in
    :class:`~torch.nn.parallel.DistributedDataParallel` (its parameters are rank 0's from
    then on); :attr:`model` stays the model itself, and :attr:`step_model` is the model
    the objective is called with (calls go through DDP, so that the gradients are
    averaged): a subclass overriding :meth:`training_step` must call that one. The
    objectives of :mod:`contrastkit.training.objectives` make each term the global
    batch's (:func:`~contrastkit.training.objectives.global_value`), so the averaged
    gradient is that of one process on the whole batch, and the logged ``train_*`` and
    ``val_*`` values are the means over the processes of each process's terms (the
    global values, for those objectives). Accumulated batches exchange their gradients
    only at the group's last batch (``no_sync``). Only rank 0 writes files and shows
    progress; a failure of rank 0's writes or of ``evaluate`` stops every process
    (the others raise a :class:`RuntimeError` naming it) rather than leaving them
    waiting. Callbacks run on every process (:attr:`rank`, :attr:`is_main`).

    Callbacks are plain functions of the trainer, added with :meth:`add_callback` for
    ``"on_batch_end"``, ``"on_epoch_end"`` or ``"on_train_end"``. They can read
    ``trainer.epoch``, ``trainer.step`` (batches trained), ``trainer.optimizer_steps``,
    ``trainer.last_terms`` (the batch's loss terms as floats: reading them waits for the
    device), ``trainer.history`` (one dict per finished epoch), and ``best_epoch``,
    ``best_value`` and ``stopped_early`` when monitoring.
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
        accumulate: int = 1,
        precision: Precision = "32",
        log_every: int | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] = "min",
        patience: int | None = None,
        tensorboard: bool = False,
        distributed: bool | None = None,
        sync_batch_norm: bool | None = None,
        ddp_options: Mapping[str, Any] | None = None,
        transform: Callable[[Any, torch.Generator], Any] | None = None,
    ) -> None:
        _positive_int("epochs", epochs)
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform must be a callable (batch, generator) or None, got "
                f"{type(transform).__name__}"
            )
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm!r}")
        _positive_int("accumulate", accumulate)
        _positive_int("log_every", log_every, optional=True)
        _positive_int("patience", patience, optional=True)
        device = torch.device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise ValueError(
                f"precision='fp16' needs a CUDA device (it scales the loss with "
                f"torch.amp.GradScaler), got device {str(device)!r}; use precision='bf16'"
            )
        if precision == "bf16" and not torch.amp.is_autocast_available(device.type):
            raise ValueError(f"precision='bf16' has no autocast on device {str(device)!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if monitor is not None and not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str or None, got {type(monitor).__name__}")
        if patience is not None and monitor is None:
            raise ValueError(f"patience={patience} needs monitor, the value to watch")
        if (
            monitor is not None
            and monitor.startswith("val_")
            and val_loader is None
            and evaluate is None
        ):
            raise ValueError(f"monitor={monitor!r} needs a val_loader or evaluate")
        if not isinstance(tensorboard, bool):
            raise TypeError(f"tensorboard must be True or False, got {tensorboard!r}")
        if tensorboard:
            if run_dir is None:
                raise ValueError("tensorboard=True needs a run_dir to write the logs to")
            if importlib.util.find_spec("tensorboard") is None:
                raise ImportError(
                    "tensorboard=True needs the tensorboard package, which is not installed "
                    "(pip install tensorboard)"
                )
        for name, flag in (("distributed", distributed), ("sync_batch_norm", sync_batch_norm)):
            if flag is not None and not isinstance(flag, bool):
                raise TypeError(f"{name} must be True, False or None, got {flag!r}")
        if ddp_options is not None and not isinstance(ddp_options, Mapping):
            raise TypeError(
                f"ddp_options must be a mapping of keyword arguments, got "
                f"{type(ddp_options).__name__}"
            )
        if distributed is True:
            _dist.require_process_group("distributed=True")
        self.distributed = _dist.is_distributed() if distributed is None else distributed
        self.rank = _dist.rank() if self.distributed else 0
        self.world_size = _dist.world_size() if self.distributed else 1
        if self.distributed and sync_batch_norm is True and device.type != "cuda":
            raise ValueError(
                f"sync_batch_norm=True needs a CUDA device: torch.nn.SyncBatchNorm refuses "
                f"CPU tensors, got device {str(device)!r}; use sync_batch_norm=False (each "
                "process normalizes its part of the batch) or a model without BatchNorm"
            )
        self.sync_batch_norm = sync_batch_norm
        self.ddp_options = dict(ddp_options or {})
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.train_loader, self.val_loader, self.evaluate = train_loader, val_loader, evaluate
        self.scheduler, self.epochs, self.seed = scheduler, epochs, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = device
        self.progress, self.max_grad_norm = progress, max_grad_norm
        self.accumulate, self.precision, self.log_every = accumulate, precision, log_every
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.tensorboard = tensorboard
        self.transform = transform
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.callbacks: dict[str, list[Callback]] = {event: [] for event in EVENTS}
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.step = 0
        self.optimizer_steps = 0
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.epochs_without_improvement = 0
        self.stopped_early = False
        self._last_terms: dict[str, Tensor] = {}
        self._group: tuple[int, int] = (0, 0)  # (size, batches so far) of the current group
        self._batches_left: int | None = None  # in the epoch, this batch included
        self._writer: Any = None
        self._wrapper: nn.Module | None = None  # the DistributedDataParallel around the model
        self._replica: _Replica | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes the files and shows progress: rank 0, or alone."""
        return self.rank == 0

    @property
    def step_model(self) -> Any:
        """The model the objective is called with: :attr:`model`, or it through DDP."""
        return self._replica if self._replica is not None else self.model

    # --- callbacks ----------------------------------------------------------------------

    def add_callback(self, event: Event, fn: Callback) -> None:
        """Call ``fn(trainer)`` at ``event``."""
        if event not in self.callbacks:
            raise ValueError(f"event must be one of {list(self.callbacks)}, got {event!r}")
        self.callbacks[event].append(fn)

    def _fire(self, event: Event) -> None:
        for fn in self.callbacks[event]:
            fn(self)

    @property
    def last_terms(self) -> dict[str, float]:
        """The last training batch's loss terms (and their total as ``"loss"``) as floats.

        Reading them waits for the device to finish that batch.
        """
        if not self._last_terms:
            return {}
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        values = torch.stack([v.to(dtype) for v in self._last_terms.values()]).tolist()
        return dict(zip(self._last_terms, values, strict=True))

    # --- the step -----------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context of the forward passes: ``torch.autocast`` for ``precision``."""
        if self.precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def training_step(self, batch: Any) -> dict[str, Tensor]:
        """The loss terms of one batch already on the device: ``objective(model, batch)``.

        Runs under :meth:`autocast`, in train mode. Override it to compute the terms
        otherwise (with :attr:`step_model`, so that several processes average their
        gradients); the rules of the objective's terms apply (a ``"loss"`` term among
        several is the total minimised).
        """
        return dict(self.objective(self.step_model, batch))

    def validation_step(self, batch: Any) -> dict[str, Tensor]:
        """The loss terms of one validation batch: :meth:`training_step` by default.

        Runs under :meth:`autocast`, in eval mode, without gradients.
        """
        return self.training_step(batch)

    def backward(self, loss: Tensor) -> None:
        """Back-propagate ``loss`` (scaled by the gradient scaler under ``"fp16"``)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def optimizer_step(self) -> None:
        """Clip, step the optimizer and scheduler, and clear the gradients."""
        if self.scaler is not None:
            if self.max_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer_steps += 1

    def train_batch(self, batch: Any) -> dict[str, Tensor]:
        """One training batch: forward, backward, and the optimizer step ending a group.

        Moves the batch to the device (and applies ``transform``), computes its terms with
        :meth:`training_step`
        under :meth:`autocast`, back-propagates their total divided by the size of the
        accumulation group and, after the group's last batch, calls
        :meth:`optimizer_step`.

        Returns:
            The terms to log, detached and still on the device, with their total as
            ``"loss"``.
        """
        batch = to_device(batch, self.device)
        if self.transform is not None:
            generator = torch.Generator().manual_seed(
                _step_seed(self.seed, self.epoch, self.step, self.rank)
            )
            batch = self.transform(batch, generator)
        size, done = self._group
        if done >= size:  # the last group is complete: this batch opens the next one
            left = self._batches_left  # None, or below 1 if the loader's length was wrong
            size = self.accumulate if left is None or left < 1 else min(self.accumulate, left)
            done = 0
        # under DDP, a group's batches before its last keep their gradients to themselves
        # (when the loader's length says which batch is the last)
        deferred: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self._wrapper is not None and done + 1 < size and self._batches_left is not None:
            deferred = self._wrapper.no_sync()  # type: ignore[operator]
        with deferred:
            with self.autocast():
                terms = self.training_step(batch)
            total = total_loss(terms)
            self.backward(total / size if size > 1 else total)
        done += 1
        self._group = (size, done)
        if done == size:
            self.optimizer_step()
        return _logged(terms, total)

    # --- the loop -----------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> list[dict[str, float]]:
        """Train up to ``epochs``; with ``resume=True`` start after the last checkpoint.

        Returns:
            The history: one dict per epoch with ``epoch``, ``train_<term>`` (the mean of
            each loss term, and ``train_loss`` the mean of the total minimised: the sum of
            the terms, or the objective's own ``"loss"`` term, such as the weighted
            total of a :class:`WeightedSum`), the ``val_<term>`` values, whatever
            ``evaluate`` returned, ``epoch_seconds``, and ``best_epoch`` (so far) when
            ``monitor`` is set.
        """
        self.model.to(self.device)
        resumed = False
        if resume:
            if self.run_dir is None:
                raise ValueError("resume=True needs a run_dir with checkpoints")
            resumed = self._resume()
        elif self.run_dir is not None:
            run_dir = self.run_dir
            self._on_main(lambda: remove_stale(run_dir))
        if self.run_dir is not None:
            self._on_main(lambda: self._start_files(resumed))
        self._wrap()
        try:
            while self.epoch < self.epochs:
                if self.patience is not None and self.epochs_without_improvement >= self.patience:
                    self.stopped_early = True
                    break
                record: dict[str, float] = {"epoch": self.epoch + 1}
                start = time.perf_counter()
                record.update(self._train_epoch())
                record.update(self._validate())
                # evaluate runs once, on rank 0, whose record every process then keeps
                record = self._on_main(functools.partial(self._finish_record, record, start))
                self.epoch += 1
                improved = self._track(record)
                self.history.append(record)
                if self.run_dir is not None:
                    self._on_main(functools.partial(self._write_epoch, record, improved))
                self._fire("on_epoch_end")
            self._fire("on_train_end")
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            # the DDP wrapper holds the process group: let it go with the run (a later
            # fit wraps the model again)
            self._wrapper = self._replica = None
        return self.history

    def _write_epoch(self, record: dict[str, float], improved: bool) -> None:
        if improved:
            self._save_best(record)
        self._save()
        self._log_epoch(record)

    # --- several processes --------------------------------------------------------------

    def _wrap(self) -> None:
        """Under several processes, the model in DistributedDataParallel (once)."""
        if not self.distributed or self._wrapper is not None:
            return
        from torch.nn.parallel import DistributedDataParallel

        has_batch_norm = any(isinstance(m, _BatchNorm) for m in self.model.modules())
        sync = self.sync_batch_norm
        if sync is None:
            sync = self.device.type == "cuda"
            if has_batch_norm and not sync:
                warnings.warn(
                    f"BatchNorm on {self.world_size} CPU processes: each process normalizes "
                    "its part of the batch with that part's statistics (torch.nn."
                    "SyncBatchNorm runs on CUDA only), and the running statistics kept are "
                    "rank 0's; the model differs from one trained by one process on the "
                    "whole batch. Pass sync_batch_norm=False to accept this silently",
                    UserWarning,
                    stacklevel=3,
                )
        if sync and has_batch_norm:
            converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            if converted is not self.model:  # the model is itself a BatchNorm layer
                self.model = converted
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        if device_ids == [None]:
            device_ids = [torch.cuda.current_device()]
        self._wrapper = DistributedDataParallel(
            _Methods(self.model), device_ids=device_ids, **self.ddp_options
        )
        self._replica = _Replica(self._wrapper, self.model)

    def _on_main(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` on rank 0, its result on every process; a failure stops every process.

        Rank 0 runs ``fn`` and sends what it returned, or the error it raised, to the
        others: they return the same value, or raise a :class:`RuntimeError` naming
        rank 0's error (rank 0 raises its own), instead of waiting forever for a rank 0
        that is gone. Alone, it is ``fn()``.
        """
        if not self.distributed:
            return fn()
        message: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                message = [("ok", fn())]
            except Exception as caught:
                error = caught
                message = [("error", f"{type(caught).__name__}: {caught}")]
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if self.device.type == "cuda"
            else None
        )
        dist.broadcast_object_list(message, src=0, device=device)
        if error is not None:
            raise error
        kind, value = message[0]
        if kind == "error":
            raise RuntimeError(f"rank 0 failed, so this process stops: {value}")
        return value  # type: ignore[no-any-return]

    def _mean_over_processes(self, values: Tensor) -> Tensor:
        """The mean over processes of each process's ``values`` (itself, alone)."""
        if not self.distributed:
            return values
        return _dist.all_reduce_sum(values) / self.world_size

    # --- the epoch ----------------------------------------------------------------------

    def _train_epoch(self) -> dict[str, float]:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        torch.manual_seed(_epoch_seed(self.seed, self.epoch, self.rank))
        _set_epoch(self.train_loader, self.epoch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._group = (0, 0)  # groups of accumulated batches do not cross epochs
        batches = _len(self.train_loader)
        sums = _Sums(self.device, self.log_every or batches or 64)
        # counted by hand (cheap, host-only): its values change only when the sums are read
        bar = tqdm(
            total=batches,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            disable=self._bar_disabled(),
            leave=False,
            dynamic_ncols=True,
        )
        with bar:  # closed even when a step raises or the run is interrupted
            for index, batch in enumerate(self.train_loader):
                self._batches_left = None if batches is None else batches - index
                logged = self.train_batch(batch)
                sums.add(logged, self.step)
                self._last_terms = logged
                self.step += 1
                bar.update()
                if self.log_every is not None and self.step % self.log_every == 0:
                    self._read(sums, bar)
                self._fire("on_batch_end")
            if sums.count == 0:
                raise ValueError("train_loader gave no batch")
            size, done = self._group
            if 0 < done < size:  # a loader without a length ended inside a group
                self.optimizer_step()
            means = self._read(sums, bar)
        return {f"train_{name}": value for name, value in means.items()}

    def _bar_disabled(self) -> bool | None:
        """The progress bar's ``disable``: off but on rank 0; ``None``: on a terminal."""
        if not self.is_main:
            return True
        return (not self.progress) if self.progress is not None else None

    def _read(self, sums: _Sums, bar: Any) -> dict[str, float]:
        """Bring the new terms back (one transfer), check and show them; the epoch means."""
        if sums.pending == 0:
            return sums.means()
        first = sums.first_step
        segment, steps, bad = sums.read(check="loss", reduce=self._mean_over_processes)
        if bad is not None:
            step, value = bad
            raise FloatingPointError(
                f"the loss is {value} at epoch {self.epoch + 1}, step {step} (steps count "
                f"from 0; found when steps {first} to {self.step - 1} were read back); "
                "lower the learning rate or check the inputs. The weights were updated "
                "after that step: resume from the last checkpoint"
            )
        means = sums.means()
        bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()})
        if self._writer is not None:
            for name, value in segment.items():
                self._writer.add_scalar(f"step/train_{name}", value / steps, self.step)
        return means

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """The mean loss terms of the validation batches (every process, its parts)."""
        if self.val_loader is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        rng = torch.get_rng_state()
        record: dict[str, float] = {}
        try:
            _set_epoch(self.val_loader, 0)
            sums = _Sums(self.device, _len(self.val_loader) or 64)
            for batch in self.val_loader:
                batch = to_device(batch, self.device)
                with self.autocast():
                    terms = self.validation_step(batch)
                sums.add(_logged(terms, total_loss(terms)))
            sums.read(reduce=self._mean_over_processes)
            record.update({f"val_{k}": v for k, v in sums.means().items()})
        finally:
            torch.set_rng_state(rng)
            self.model.train(was_training)
        return record

    def _finish_record(self, record: dict[str, float], start: float) -> dict[str, float]:
        """The epoch's record with what ``evaluate`` returns and the epoch's seconds."""
        record = {**record, **self._evaluate()}
        record["epoch_seconds"] = time.perf_counter() - start
        return record

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        """What ``evaluate`` returns for the model (eval mode, no gradient)."""
        if self.evaluate is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        rng = torch.get_rng_state()
        try:
            return {k: float(v) for k, v in self.evaluate(self.model).items()}
        finally:
            torch.set_rng_state(rng)
            self.model.train(was_training)

    def _track(self, record: dict[str, float]) -> bool:
        """Update the best epoch from ``record``; whether this epoch is the new best."""
        if self.monitor is None:
            return False
        if self.monitor not in record:
            raise ValueError(
                f"monitor {self.monitor!r} is not among the values of epoch {self.epoch}: "
                f"{sorted(record)}"
            )
        value = float(record[self.monitor])
        best = self.best_value
        improved = math.isfinite(value) and (
            best is None or (value < best if self.mode == "min" else value > best)
        )
        if improved:
            self.best_epoch, self.best_value = self.epoch, value
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        if self.best_epoch is not None:
            record["best_epoch"] = self.best_epoch
        return improved

    # --- files --------------------------------------------------------------------------

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
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "optimizer_steps": self.optimizer_steps,
            "history": self.history,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "objective": objective_state(self.objective),
            "best": {
                "epoch": self.best_epoch,
                "value": self.best_value,
                "epochs_without_improvement": self.epochs_without_improvement,
            },
        }
        try:
            with _writing(tmp / "model.safetensors"):
                save_weights(self.model, tmp / "model.safetensors")
            with _writing(tmp / "state.pt"):
                save_state(state, tmp / "state.pt")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed checkpoint leaves nothing
            raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in folder.glob("epoch-*"):
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    def _save_best(self, record: dict[str, float]) -> None:
        if self.run_dir is None:
            return
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        tmp, old = folder / f".best.tmp-{os.getpid()}", folder / f".best.old-{os.getpid()}"
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)
        tmp.mkdir()
        with _writing(tmp / "model.safetensors"):
            save_weights(self.model, tmp / "model.safetensors")
        about = {
            "epoch": self.epoch,
            "monitor": self.monitor,
            "mode": self.mode,
            "value": self.best_value,
            "record": record,
        }
        with _writing(tmp / "record.json"):
            (tmp / "record.json").write_text(json.dumps(about, indent=2) + "\n")
        best = folder / "best"
        if best.exists():
            os.replace(best, old)  # a kill from here on leaves old, which remove_stale restores
        os.replace(tmp, best)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)

    def _read_checkpoint(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        """The last checkpoint's weights and state (after clearing stale temporaries)."""
        assert self.run_dir is not None
        remove_stale(self.run_dir)
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            return None
        from safetensors.torch import load_file

        weights = load_file(str(checkpoint / "model.safetensors"))
        state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
        return weights, state

    def _resume(self) -> bool:
        # rank 0 reads the checkpoint and every process resumes from what it read
        found = self._on_main(self._read_checkpoint)
        if found is None:
            return False
        weights, state = found
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        if "objective" in state:  # a memory of past embeddings
            load_objective_state(self.objective, state["objective"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.optimizer_steps = int(state.get("optimizer_steps", self.step))
        self.history = list(state["history"])
        best = state.get("best") or {}
        self.best_epoch, self.best_value = best.get("epoch"), best.get("value")
        self.epochs_without_improvement = int(best.get("epochs_without_improvement", 0))
        return True

    def _start_files(self, resumed: bool) -> None:
        """``metrics.jsonl`` as the history so far (empty when fresh), and TensorBoard."""
        assert self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resumed and not self.history:  # a fresh run: an older run's best is not its
            shutil.rmtree(self.run_dir / "checkpoints" / "best", ignore_errors=True)
        path = self.run_dir / "metrics.jsonl"
        tmp = self.run_dir / f".metrics.jsonl.tmp-{os.getpid()}"
        with _writing(path):
            tmp.write_text("".join(json.dumps(record) + "\n" for record in self.history))
        os.replace(tmp, path)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops what a killed run logged after the checkpoint resumed from
            self._writer = SummaryWriter(
                str(self.run_dir / "tensorboard"), purge_step=self.step + 1 if resumed else None
            )

    def _log_epoch(self, record: dict[str, float]) -> None:
        assert self.run_dir is not None
        path = self.run_dir / "metrics.jsonl"
        with _writing(path), open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self._writer is not None:
            for name, value in record.items():
                if name != "epoch":
                    self._writer.add_scalar(name, value, self.step)
            self._writer.flush()


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
