"""Gradient caching: a batch larger than the encoder's memory, with the exact loss.

A contrastive loss wants every negative of the batch at once, so gradient accumulation
(several small batches, one step) changes the loss: each small batch sees only its own
negatives. Gradient caching (Gao et al. 2021) keeps the loss of the whole batch and
bounds the encoder's memory by a micro-batch:

1. embed the batch in micro-batches **without a graph**, keeping only the embeddings
   (and each micro-batch's random state);
2. compute the loss from those embeddings (the tiled losses need O(N·D) memory), with
   a graph that stops at the embeddings;
3. in ``backward``: the loss's gradient with respect to the embeddings, then each
   micro-batch embedded **again, with a graph**, its random state replayed so that
   dropout draws the same masks, and its part of that gradient back-propagated into the
   parameters.

:class:`CachedObjective` wraps any objective that embeds with ``model(x)`` (pairs,
triplets, labelled batches, two views) so that the trainer's step is unchanged: it
returns the same loss terms, and the work of step 3 happens when ``backward()`` is
called on them. The cache belongs to each call (two calls before one backward each
replay their own), the outer gradient scales it (a loss multiplied by 0.5 gives half the
gradient), and a call without gradient (evaluation) only embeds in micro-batches.

Under :class:`~torch.nn.parallel.DistributedDataParallel` only the last micro-batch's
replay goes through DDP's forward; the others call the module inside it. Each process
then broadcasts buffers and exchanges its accumulated gradients once per step, whatever
its number of micro-batches, and a loss with ``gather=True`` gathers once, over the
cached embeddings. The cached objective must then be the only one that runs the model in
the step: a :class:`~contrastkit.training.WeightedSum` of a cached term and an uncached
one (an autoencoder's reconstruction) makes DDP see the encoder's parameters twice in
one step, which it refuses ("marked as ready twice"); in one process it is exact.

Exact: the loss and the parameter gradients are those of the uncached step, except for
what couples the rows of a batch inside the model. Batch normalization in training mode
normalizes each micro-batch with its own statistics and would update its running
statistics twice per step, so it is refused (:class:`ValueError`).

Reference:
    L. Gao, Y. Zhang, J. Han, J. Callan. *Scaling Deep Contrastive Learning Batch Size
    under Memory Limited Setup.* RepL4NLP 2021.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit._validation import check_int
from contrastkit.training.batches import batch_size
from contrastkit.training.objectives import load_objective_state, objective_state

__all__ = ["CachedObjective"]


def _chunks(x: Any, size: int) -> list[Any]:
    """``x`` (a tensor, or a mapping of tensors) split into micro-batches of ``size`` rows."""
    n = batch_size(x)
    if isinstance(x, Tensor):
        return list(x.split(size))
    if isinstance(x, Mapping):
        return [{k: v[start : start + size] for k, v in x.items()} for start in range(0, n, size)]
    raise TypeError(
        "CachedObjective embeds tensors or mappings of tensors (tokenized text), "
        f"got {type(x).__name__}"
    )


def _devices(*inputs: Any) -> list[torch.device]:
    """The CUDA devices of a micro-batch's tensors: their random state is replayed too."""
    tensors = [t for x in inputs for t in (x.values() if isinstance(x, Mapping) else [x])]
    return sorted(
        {t.device for t in tensors if isinstance(t, Tensor) and t.device.type == "cuda"},
        key=str,
    )


class _RandomState:
    """The CPU's and the chunk's CUDA devices' random states, to replay a forward pass."""

    def __init__(self, devices: list[torch.device]) -> None:
        self.devices = devices
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in devices]

    @contextlib.contextmanager
    def replayed(self) -> Iterator[None]:
        """Run with this state, then give the generators back the state they had."""
        indices = [
            d.index if d.index is not None else torch.cuda.current_device() for d in self.devices
        ]
        with torch.random.fork_rng(devices=indices, enabled=True):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.devices, self.cuda, strict=True):
                torch.cuda.set_rng_state(state, device)
            yield


def _unwrapped(model: Any) -> Any:
    """The module inside DDP or the trainer's stand-in for it; else the model itself.

    The trainer's stand-in gives it as ``local_model``. Calling it directly runs no
    collective: no buffer broadcast, and a backward that only accumulates gradients
    (DDP's hooks wait for a forward through DDP).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.module
    if isinstance(getattr(type(model), "local_model", None), property):
        return model.local_model
    return model


class _Replay(torch.autograd.Function):
    """Identity on the cached embeddings; backward embeds again and back-propagates."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        anchor: Tensor,
        replay: tuple[nn.Module, list[tuple[Any, ...]], list[_RandomState]],
        *embeddings: Tensor,
    ) -> tuple[Tensor, ...]:
        ctx.replay = replay
        return tuple(e.clone() for e in embeddings)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[None, ...]:
        model, chunks, states = ctx.replay
        ctx.replay = None  # the cache is used once
        start = 0
        with torch.enable_grad():
            for i, (chunk, state) in enumerate(zip(chunks, states, strict=True)):
                n = batch_size(chunk[0])
                # under DDP one forward through it per call, the last: its buffers are
                # broadcast and the accumulated gradients exchanged once, whatever the
                # number of micro-batches of each process
                last = i == len(chunks) - 1
                with state.replayed():
                    outs = _as_tuple((model if last else _unwrapped(model))(*chunk))
                    used = [(o, g) for o, g in zip(outs, grads, strict=True) if g is not None]
                    if used:
                        torch.autograd.backward(
                            [o for o, _ in used],
                            [g[start : start + n].to(o.dtype) for o, g in used],  # type: ignore[index]
                        )
                start += n
        return (None,) * (2 + len(grads))


def _as_tuple(out: Any) -> tuple[Tensor, ...]:
    """A model's output as a tuple of embedding tensors (one per input of a siamese net)."""
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(
                "CachedObjective needs a model that returns a tensor of embeddings (or one "
                f"per input), got {type(o).__name__}"
            )
    return outs


class _CachedModel:
    """Stands in for the model inside the wrapped objective: ``model(*x)`` is cached."""

    def __init__(self, model: nn.Module, micro_batch: int) -> None:
        self.model = model
        self.micro_batch = micro_batch

    def __call__(self, *inputs: Any) -> Any:
        n = batch_size(inputs[0])
        if any(batch_size(x) != n for x in inputs):
            raise ValueError(
                "CachedObjective splits the model's inputs row by row: they must hold one "
                f"number of rows, got {[batch_size(x) for x in inputs]}"
            )
        split = [_chunks(x, self.micro_batch) for x in inputs]
        chunks = list(zip(*split, strict=True))
        replay = torch.is_grad_enabled()  # without gradient (evaluation): embed only
        states, parts = [], []
        with torch.no_grad():
            for chunk in chunks:
                if replay:
                    states.append(_RandomState(_devices(*chunk)))
                parts.append(_as_tuple(_unwrapped(self.model)(*chunk)))
        out = tuple(torch.cat(list(p)) for p in zip(*parts, strict=True))
        if replay:
            anchor = out[0].new_zeros((), requires_grad=True)
            out = _Replay.apply(anchor, (self.model, chunks, states), *out)
        return out if len(out) > 1 else out[0]

    def __getattr__(self, name: str) -> Any:
        raise TypeError(
            f"CachedObjective caches model(x) only; the objective called model.{name}, "
            "which it cannot replay (wrap only the contrastive term of a WeightedSum)"
        )


def _batch_norm_in_training(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            return name or type(module).__name__
    return None


class CachedObjective:
    """An objective computed on the whole batch, its encoder run in micro-batches.

    See the module notes: the embeddings of the batch are computed in micro-batches of
    ``micro_batch`` rows without a graph, the loss on all of them, and in ``backward``
    each micro-batch is embedded again, with its random state replayed, and its part of
    the embeddings' gradient back-propagated. Peak memory is that of one micro-batch's
    graph plus the embeddings; time about one more forward pass of the encoder.

    Args:
        objective: an objective that embeds its inputs with ``model(x)``
            (:class:`~contrastkit.training.PairObjective`,
            :class:`~contrastkit.training.TripletObjective`,
            :class:`~contrastkit.training.LabelObjective`,
            :class:`~contrastkit.training.TwoViewObjective`, or your own).
        micro_batch: rows embedded at once (at least 1).

    Raises:
        ValueError: on a call, when the model has batch normalization in training mode
            (each micro-batch would be normalized with its own statistics, and the
            running statistics updated twice per step): use a model without it, or
            ``GroupNorm``/``LayerNorm``, or put those layers in eval mode.

    Example:
        >>> import torch
        >>> from contrastkit import SupConLoss
        >>> from contrastkit.training import LabelObjective
        >>> model = torch.nn.Linear(4, 2)
        >>> x, y = torch.randn(10, 4), torch.arange(10) % 3
        >>> objective = LabelObjective(SupConLoss())
        >>> cached = CachedObjective(objective, micro_batch=4)
        >>> loss = cached(model, (x, y))["loss"]
        >>> torch.allclose(loss, objective(model, (x, y))["loss"])
        True
        >>> loss.backward()  # three micro-batches embedded again, the gradient exact
    """

    def __init__(
        self, objective: Callable[[nn.Module, Any], dict[str, Tensor]], *, micro_batch: int
    ) -> None:
        if not callable(objective):
            raise TypeError(f"objective must be callable, got {type(objective).__name__}")
        self.objective = objective
        self.micro_batch = check_int("micro_batch", micro_batch, minimum=1)

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The wrapped objective's loss terms, computed with a cached encoder."""
        if torch.is_grad_enabled():
            found = _batch_norm_in_training(model)
            if found is not None:
                raise ValueError(
                    f"CachedObjective cannot replay batch normalization in training mode "
                    f"(layer {found!r}): each micro-batch would be normalized with its own "
                    "statistics, not the batch's, and the running statistics updated twice "
                    "per step; use a model without BatchNorm (GroupNorm or LayerNorm), or "
                    "put its BatchNorm layers in eval mode"
                )
        return self.objective(_CachedModel(model, self.micro_batch), batch)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        """The wrapped objective's state (a memory of past embeddings), for checkpoints."""
        return objective_state(self.objective)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Give the wrapped objective back its state."""
        load_objective_state(self.objective, state)

    def __repr__(self) -> str:
        return f"CachedObjective({self.objective!r}, micro_batch={self.micro_batch})"
