"""Gradient caching: a batch larger than the encoder's memory, with the exact loss.

A contrastive loss wants every negative of the batch at once, so gradient accumulation
(several small batches, one step) changes the loss: each small batch sees only its own
negatives. Gradient caching (Gao et al. 2021) keeps the loss of the whole batch and
bounds the encoder's memory by a micro-batch:

1. run the model on the batch in micro-batches **without a graph**, keeping only its
   outputs (and each micro-batch's random state);
2. compute the loss terms from those outputs (the tiled losses need O(N·D) memory),
   with a graph that stops at the outputs;
3. in ``backward``: the terms' gradient with respect to the outputs, then each
   micro-batch run **again, with a graph**, its random state replayed so that dropout
   (and a denoising autoencoder's input noise) draws the same numbers, and its part of
   that gradient back-propagated into the parameters.

:class:`CachedObjective` wraps any objective that runs the model on the rows of its
batch: ``model(x)`` (pairs, triplets, labelled batches, two views) and any method the
model's class defines beyond :class:`~torch.nn.Module`'s own, such as an autoencoder's
``model.reconstruct(x)``, so that a :class:`~contrastkit.training.WeightedSum` of a
reconstruction and a contrastive term is cached as a whole. A per-sample term (the
reconstruction loss) is then exact too, its encoder and decoder graph one micro-batch
at a time. The trainer's step is unchanged: the wrapper returns the same loss terms,
and the work of step 3 happens when ``backward()`` is called on them.

Each call opens one *session* that records every call of the model it makes (the
method, the micro-batches, their random states and autocast state). Its terms pass
through one autograd node whose backward does all of step 3: the gradient of the terms
(which also reaches anything else they depend on, such as a learnable temperature), then
the replay of every recorded call. The cache belongs to each call (two calls before one
backward each replay their own), the outer gradient scales it (a loss multiplied by 0.5
gives half the gradient), ``backward(retain_graph=True)`` keeps it for another backward
(which replays again, as autograd would go through the graph again), a second backward
without it is autograd's own error, and a call without gradient (evaluation) only runs
the model in micro-batches.

Under several processes the gradients must be exchanged once per step, whatever the
number of micro-batches of each process: every micro-batch is replayed through the
module itself, except the last one of each call. With the
:class:`~contrastkit.training.Trainer`'s model, those last micro-batches of every call
(``model(x)`` and ``model.reconstruct(x)`` alike) run together in **one** forward
through :class:`~torch.nn.parallel.DistributedDataParallel`, whose backward then
broadcasts the buffers and exchanges the accumulated gradients once. With a
``DistributedDataParallel`` of your own, which runs ``forward`` only, the last
micro-batch of the last call goes through it (an objective calling another method of
the model gets the error it would get without caching). A loss with ``gather=True``
gathers once, over the cached embeddings.

Exact: the loss and the parameter gradients are those of the uncached step, except for
what couples the rows of a batch inside the model. Batch normalization in training mode
normalizes each micro-batch with its own statistics and would update its running
statistics twice per step, so it is refused (:class:`ValueError`). The gradients reach
the parameters' ``.grad``, as ``backward()`` puts them there (not the results of
:func:`torch.autograd.grad`).

Reference:
    L. Gao, Y. Zhang, J. Han, J. Callan. *Scaling Deep Contrastive Learning Batch Size
    under Memory Limited Setup.* RepL4NLP 2021.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit._validation import check_int
from contrastkit.training.batches import batch_size
from contrastkit.training.objectives import load_objective_state, objective_state

__all__ = ["CachedObjective"]


def _chunks(x: Any, size: int) -> list[Any]:
    """``x`` (a tensor, or a mapping of tensors) split into micro-batches of ``size`` rows.

    An empty batch is one empty micro-batch: every process of a step runs the model.
    """
    n = batch_size(x)
    if isinstance(x, Tensor):
        return list(x.split(size))
    if isinstance(x, Mapping):
        starts = range(0, max(n, 1), size)
        return [{k: v[start : start + size] for k, v in x.items()} for start in starts]
    raise TypeError(
        "CachedObjective splits tensors or mappings of tensors (tokenized text), "
        f"got {type(x).__name__}"
    )


def _tensors(*inputs: Any) -> list[Any]:
    return [t for x in inputs for t in (x.values() if isinstance(x, Mapping) else [x])]


def _devices(*inputs: Any) -> list[torch.device]:
    """The CUDA devices of a micro-batch's tensors: their random state is replayed too."""
    return sorted(
        {t.device for t in _tensors(*inputs) if isinstance(t, Tensor) and t.device.type == "cuda"},
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


class _Autocast:
    """The autocast state of the CPU and the inputs' devices when a call was made.

    The replay runs in ``backward``, outside the trainer's ``autocast``: it enters the
    state the first forward had, so that it computes the same numbers.
    """

    def __init__(self, devices: list[torch.device]) -> None:
        types = ["cpu", *sorted({d.type for d in devices})]
        self.states = [
            (
                kind,
                torch.is_autocast_enabled(kind),
                torch.get_autocast_dtype(kind),
                torch.is_autocast_cache_enabled(),
            )
            for kind in types
        ]

    @contextlib.contextmanager
    def replayed(self) -> Iterator[None]:
        """Run under the recorded autocast state."""
        with contextlib.ExitStack() as stack:
            for kind, enabled, dtype, cache in self.states:
                stack.enter_context(
                    torch.autocast(kind, dtype=dtype, enabled=enabled, cache_enabled=cache)
                )
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


def _one_forward(model: Any) -> Callable[[Callable[[nn.Module], Any]], Any] | None:
    """The trainer's stand-in's ``run_in_forward``: ``fn(module)`` in one forward of DDP."""
    if isinstance(getattr(type(model), "local_model", None), property):
        run = getattr(model, "run_in_forward", None)
        if callable(run):
            return run  # type: ignore[no-any-return]
    return None


def _as_tuple(out: Any, method: str, rows: int) -> tuple[Tensor, ...]:
    """A call's output as a tuple of tensors (one per input of a siamese net), checked."""
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(
                f"CachedObjective needs {_called(method)} to return a tensor (or one per "
                f"input), got {type(o).__name__}"
            )
        if o.dim() == 0 or o.shape[0] != rows:
            raise ValueError(
                f"CachedObjective splits the rows of {_called(method)}: its output must have "
                f"one row per input row, got shape {tuple(o.shape)} for {rows} rows"
            )
    return outs


def _called(method: str) -> str:
    return "model(x)" if method == "forward" else f"model.{method}(x)"


def _backward(outs: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
    """Back-propagate ``grads`` from ``outs``, skipping outputs without gradient."""
    used = [
        (o, g.to(o.dtype))
        for o, g in zip(outs, grads, strict=True)
        if g is not None and o.requires_grad
    ]
    if used:
        torch.autograd.backward([o for o, _ in used], [g for _, g in used])


class _Call:
    """One cached call of the model: its method, micro-batches, states and outputs."""

    def __init__(
        self,
        method: str,
        chunks: list[tuple[Any, ...]],
        states: list[_RandomState],
        autocast: _Autocast,
        outputs: tuple[Tensor, ...],
    ) -> None:
        self.method, self.chunks, self.states = method, chunks, states
        self.autocast, self.outputs = autocast, outputs
        self.bounds: list[tuple[int, int]] = []
        start = 0
        for chunk in chunks:
            n = batch_size(chunk[0])
            self.bounds.append((start, start + n))
            start += n

    def run(self, module: Any, i: int) -> tuple[Tensor, ...]:
        """Micro-batch ``i`` through ``module`` again, its random state replayed."""
        chunk = self.chunks[i]
        fn = module if self.method == "forward" else getattr(module, self.method)
        with self.states[i].replayed(), self.autocast.replayed():
            return _as_tuple(fn(*chunk), self.method, batch_size(chunk[0]))

    def grads(self, grads: Sequence[Tensor | None], i: int) -> list[Tensor | None]:
        """Micro-batch ``i``'s rows of the gradients of the outputs."""
        start, stop = self.bounds[i]
        return [None if g is None else g[start:stop] for g in grads]


class _Session:
    """The calls of the model one call of :class:`CachedObjective` made, to replay."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[_Call] = []
        self.terms: list[Tensor] = []  # the terms, with their graph back to the outputs

    def backward(self, grads: Sequence[Tensor | None], keep_graph: bool) -> None:
        """The terms' gradient into the outputs (and the rest), then every replay."""
        used = [(t, g) for t, g in zip(self.terms, grads, strict=True) if g is not None]
        if used:
            torch.autograd.backward(
                [t for t, _ in used], [g for _, g in used], retain_graph=keep_graph
            )
        todo = []
        for call in self.calls:
            out_grads = [leaf.grad for leaf in call.outputs]
            for leaf in call.outputs:
                leaf.grad = None
            if any(g is not None for g in out_grads):
                todo.append((call, out_grads))
        if not keep_graph:
            self.terms, self.calls = [], []
        one_forward, local = _one_forward(self.model), _unwrapped(self.model)
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        last: list[tuple[_Call, list[Tensor | None]]] = []
        with torch.enable_grad():
            for k, (call, out_grads) in enumerate(todo):
                for i in range(len(call.chunks)):
                    final = i == len(call.chunks) - 1
                    # under DDP the last micro-batch goes through it, after all the others:
                    # of every call in one forward (the trainer's model), or of the last
                    # call (a DistributedDataParallel of your own, which runs forward only)
                    if final and (one_forward is not None or (ddp and k == len(todo) - 1)):
                        last.append((call, call.grads(out_grads, i)))
                        continue
                    _backward(call.run(local, i), call.grads(out_grads, i))
            if not last:
                return
            if one_forward is not None:
                outs = one_forward(
                    lambda module: [call.run(module, len(call.chunks) - 1) for call, _ in last]
                )
            else:
                ((call, _),) = last
                outs = [call.run(self.model, len(call.chunks) - 1)]
            _backward([o for out in outs for o in out], [g for _, gs in last for g in gs])


def _keep_graph() -> bool:
    """Whether the running backward keeps the graph (``retain_graph=True``)."""
    keep = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return bool(keep()) if keep is not None else False


class _Replay(torch.autograd.Function):
    """Identity on a session's terms; backward runs the session's backward and replays."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, anchor: Tensor, session: _Session, *terms: Tensor
    ) -> tuple[Tensor, ...]:
        ctx.session = session
        ctx.set_materialize_grads(False)
        # a backward after one that freed the graph is autograd's own error
        ctx.save_for_backward(anchor)
        return tuple(t.clone() for t in terms)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[None, ...]:
        ctx.saved_tensors  # noqa: B018 - raises once the graph is freed
        if ctx.session is None:
            raise RuntimeError(
                "CachedObjective's cache was used by a backward that did not keep it: "
                "call the objective again, or pass retain_graph=True to the first backward"
            )
        keep = _keep_graph()
        ctx.session.backward(grads, keep)
        if not keep:
            ctx.session = None  # the cache is used once
        return (None,) * (2 + len(grads))


class _CachedModel:
    """Stands in for the model inside the wrapped objective: its calls are cached."""

    def __init__(self, model: Any, micro_batch: int, session: _Session | None) -> None:
        self.model = model
        self.micro_batch = micro_batch
        self.session = session  # None without gradient: run the model only

    def __call__(self, *inputs: Any) -> Any:
        return self._cached("forward", *inputs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(_unwrapped(self.model), name, None)
        method = inspect.ismethod(value) and not hasattr(nn.Module, name)
        if method and isinstance(self.model, nn.parallel.DistributedDataParallel):
            raise TypeError(
                f"CachedObjective cannot replay model.{name}(x) through a "
                "DistributedDataParallel of your own, which runs forward only; train with "
                "contrastkit.training.Trainer, whose model runs every method through DDP"
            )
        getattr(self.model, name)  # what the model has not, the objective is told as usual
        if method:
            return functools.partial(self._cached, name)
        raise TypeError(
            f"CachedObjective caches model(x) and the methods the model's class defines "
            f"(such as reconstruct(x)), called on the rows of the batch; the objective "
            f"used model.{name}, which it cannot replay"
        )

    def _cached(self, method: str, *inputs: Any) -> Any:
        if not inputs:
            raise TypeError(f"CachedObjective needs {_called(method)} called with inputs")
        n = batch_size(inputs[0])
        if any(batch_size(x) != n for x in inputs):
            raise ValueError(
                "CachedObjective splits the model's inputs row by row: they must hold one "
                f"number of rows, got {[batch_size(x) for x in inputs]}"
            )
        if any(isinstance(t, Tensor) and t.requires_grad for t in _tensors(*inputs)):
            raise ValueError(
                f"CachedObjective caches calls on the batch's inputs; {_called(method)} got "
                "an input that requires gradient (the output of another call?), which it "
                "cannot replay"
            )
        chunks = list(zip(*[_chunks(x, self.micro_batch) for x in inputs], strict=True))
        local = _unwrapped(self.model)
        fn = local if method == "forward" else getattr(local, method)
        session = self.session if torch.is_grad_enabled() else None
        autocast = _Autocast(_devices(*inputs))
        states, parts = [], []
        with torch.no_grad():
            for chunk in chunks:
                if session is not None:
                    states.append(_RandomState(_devices(*chunk)))
                parts.append(_as_tuple(fn(*chunk), method, batch_size(chunk[0])))
        out = tuple(torch.cat(list(p)) for p in zip(*parts, strict=True))
        if session is not None:
            out = tuple(o.requires_grad_() for o in out)
            session.calls.append(_Call(method, chunks, states, autocast, out))
        return out if len(out) > 1 else out[0]


def _batch_norm_in_training(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            return name or type(module).__name__
    return None


class CachedObjective:
    """An objective computed on the whole batch, its model run in micro-batches.

    See the module notes: every call the objective makes of the model (``model(x)``,
    ``model.reconstruct(x)``) runs in micro-batches of ``micro_batch`` rows without a
    graph, the loss terms are computed on all of their outputs, and in ``backward`` each
    micro-batch runs again, with its random state replayed, and its part of the outputs'
    gradient is back-propagated. Peak memory is that of one micro-batch's graph plus the
    outputs; time about one more forward pass of the model.

    Args:
        objective: an objective that runs the model on its batch with ``model(x)`` or a
            method of the model's class (:class:`~contrastkit.training.PairObjective`,
            :class:`~contrastkit.training.TripletObjective`,
            :class:`~contrastkit.training.LabelObjective`,
            :class:`~contrastkit.training.TwoViewObjective`,
            :class:`~contrastkit.training.ReconstructionObjective`, a
            :class:`~contrastkit.training.WeightedSum` of them, or your own).
        micro_batch: rows the model runs on at once (at least 1).

    Raises:
        ValueError: on a call, when the model has batch normalization in training mode
            (each micro-batch would be normalized with its own statistics, and the
            running statistics updated twice per step): use a model without it, or
            ``GroupNorm``/``LayerNorm``, or put those layers in eval mode.
        TypeError: on a call, when the objective uses something of the model other than
            a call on the batch's rows (a submodule, an attribute).

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
        >>> loss.backward()  # three micro-batches run again, the gradient exact
    """

    def __init__(
        self, objective: Callable[[nn.Module, Any], dict[str, Tensor]], *, micro_batch: int
    ) -> None:
        if not callable(objective):
            raise TypeError(f"objective must be callable, got {type(objective).__name__}")
        self.objective = objective
        self.micro_batch = check_int("micro_batch", micro_batch, minimum=1)

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The wrapped objective's loss terms, computed with a cached model."""
        if not torch.is_grad_enabled():  # evaluation: run the model in micro-batches only
            return self.objective(_CachedModel(model, self.micro_batch, None), batch)  # type: ignore[arg-type]
        found = _batch_norm_in_training(model)
        if found is not None:
            raise ValueError(
                f"CachedObjective cannot replay batch normalization in training mode "
                f"(layer {found!r}): each micro-batch would be normalized with its own "
                "statistics, not the batch's, and the running statistics updated twice "
                "per step; use a model without BatchNorm (GroupNorm or LayerNorm), or "
                "put its BatchNorm layers in eval mode"
            )
        session = _Session(model)
        terms = self.objective(_CachedModel(model, self.micro_batch, session), batch)  # type: ignore[arg-type]
        if not isinstance(terms, Mapping):
            raise TypeError(
                "CachedObjective needs an objective that returns a mapping of loss terms, "
                f"got {type(terms).__name__}"
            )
        names = [k for k, v in terms.items() if isinstance(v, Tensor) and v.requires_grad]
        if not session.calls or not names:
            return dict(terms)  # nothing cached reaches the terms: plain autograd
        session.terms = [terms[k] for k in names]
        anchor = session.terms[0].new_zeros((), requires_grad=True)
        replayed = _Replay.apply(anchor, session, *(t.detach() for t in session.terms))
        out = dict(terms)
        out.update(zip(names, replayed, strict=True))
        return out

    def state_dict(self) -> dict[str, Any]:
        """The wrapped objective's state (a memory of past embeddings), for checkpoints."""
        return objective_state(self.objective)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Give the wrapped objective back its state."""
        load_objective_state(self.objective, state)

    def __repr__(self) -> str:
        return f"CachedObjective({self.objective!r}, micro_batch={self.micro_batch})"
