"""Batches of any structure: moved to a device, measured, joined for one forward pass.

A batch is whatever a loader yields: a tensor, or tuples, lists, named tuples,
dataclasses and mappings (``dict``, or a ``dict``/``UserDict`` subclass such as a Hugging
Face ``BatchEncoding`` of tokenized text) nested in any way, with tensors and other
values (strings, numbers) as leaves.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["batch_size", "join", "to_device"]


def to_device(batch: Any, device: str | torch.device) -> Any:
    """``batch`` with every tensor in it moved to ``device``, containers rebuilt alike.

    Tensors are copied with ``non_blocking=True`` when the device is not the CPU (so a
    pinned-memory loader overlaps the copy with the computation). Containers keep their
    type: tuples, lists and named tuples; dataclass instances (through
    :func:`dataclasses.replace`); ``dict`` and other mappings (a copy of a mutable mapping,
    such as a ``BatchEncoding``, with its values replaced; any other mapping becomes a
    ``dict``). A :class:`~torch.nn.utils.rnn.PackedSequence`, or any other object with a
    ``to`` method other than a module, is moved by ``obj.to(device)``; every other value
    is left as it is. The batch given is never changed.

    Example:
        >>> import torch
        >>> batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "text": ["a", "b"]}
        >>> moved = to_device((batch, torch.zeros(2)), "cpu")
        >>> type(moved).__name__, sorted(moved[0]), moved[0]["text"]
        ('tuple', ['input_ids', 'text'], ['a', 'b'])
    """
    device = torch.device(device)
    non_blocking = device.type != "cpu"
    return _map(lambda t: t.to(device, non_blocking=non_blocking), batch, device)


def _map(fn: Callable[[Tensor], Tensor], batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, PackedSequence):  # its batch_sizes stay on the CPU
        packed: Any = batch  # the stubs of PackedSequence.to take no device
        return packed.to(device)
    if isinstance(batch, list | tuple):
        items = [_map(fn, item, device) for item in batch]
        if type(batch) in (list, tuple):
            return type(batch)(items)
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
            return type(batch)(*items)
        try:
            return type(batch)(items)
        except TypeError:
            return list(items) if isinstance(batch, list) else tuple(items)
    if isinstance(batch, Mapping):
        return _like(batch, {key: _map(fn, value, device) for key, value in batch.items()})
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {
            field.name: _map(fn, getattr(batch, field.name), device)
            for field in dataclasses.fields(batch)
            if field.init
        }
        return dataclasses.replace(batch, **changes)
    to = getattr(batch, "to", None)
    if callable(to) and not isinstance(batch, nn.Module | type | str | bytes):
        return to(device)
    return batch


def batch_size(inputs: Any) -> int:
    """The number of samples of a batch of inputs: the first dimension of its first tensor.

    A tensor gives its own first dimension; a mapping (tokenized text), tuple or list,
    that of the first tensor found in it, depth first.

    Raises:
        ValueError: no tensor of at least one dimension in ``inputs``.

    Example:
        >>> import torch
        >>> batch_size({"input_ids": torch.ones(4, 7), "attention_mask": torch.ones(4, 7)})
        4
    """
    found = _first_tensor(inputs)
    if found is None:
        raise ValueError(
            f"inputs must hold a tensor of at least one dimension, got {type(inputs).__name__}"
        )
    return int(found.shape[0])


def _first_tensor(inputs: Any) -> Tensor | None:
    if isinstance(inputs, Tensor):
        return inputs if inputs.dim() >= 1 else None
    if isinstance(inputs, Mapping):
        values: Any = list(inputs.values())
    elif isinstance(inputs, list | tuple):
        values = inputs
    else:
        return None
    for value in values:
        found = _first_tensor(value)
        if found is not None:
            return found
    return None


def join(parts: Sequence[Any]) -> Any | None:
    """The parts as one batch along the first dimension, or ``None`` if they cannot be joined.

    Tensors join when they have one dtype, device and shape after the first dimension.
    Mappings (tokenized text) join key by key when they have the same keys, every value
    is a tensor, and the tensors of each key join; the result is a copy of the first
    part's mapping type where possible, else a ``dict``. Anything else, or tokens padded
    to different lengths, does not join.

    Example:
        >>> import torch
        >>> a = {"ids": torch.zeros(2, 5), "mask": torch.ones(2, 5)}
        >>> b = {"ids": torch.ones(3, 5), "mask": torch.ones(3, 5)}
        >>> {k: tuple(v.shape) for k, v in join([a, b]).items()}
        {'ids': (5, 5), 'mask': (5, 5)}
        >>> join([a, {"ids": torch.ones(3, 9), "mask": torch.ones(3, 9)}]) is None
        True
    """
    if not parts:
        return None
    if all(isinstance(p, Tensor) for p in parts):
        return torch.cat(list(parts)) if _joinable(parts) else None
    if all(isinstance(p, Mapping) for p in parts):
        keys = list(parts[0])
        if not keys or any(set(p) != set(keys) for p in parts):
            return None
        joined: dict[Any, Tensor] = {}
        for key in keys:
            values = [p[key] for p in parts]
            if not all(isinstance(v, Tensor) for v in values) or not _joinable(values):
                return None
            joined[key] = torch.cat(values)
        sizes = {int(t.shape[0]) for t in joined.values()}
        if len(sizes) != 1:
            return None
        return _like(parts[0], joined)
    return None


def _like(mapping: Mapping[Any, Any], values: dict[Any, Any]) -> Any:
    """``values`` in a mapping of ``mapping``'s type where it can be copied, else a dict."""
    if type(mapping) is dict or not isinstance(mapping, MutableMapping):
        return values
    try:
        out = copy.copy(mapping)
        for key, value in values.items():
            out[key] = value
        return out
    except Exception:  # a mapping that cannot be copied: a plain dict is enough
        return values


def _joinable(tensors: Sequence[Tensor]) -> bool:
    first = tensors[0]
    return first.dim() >= 1 and all(
        t.dim() == first.dim()
        and t.shape[1:] == first.shape[1:]
        and t.dtype == first.dtype
        and t.device == first.device
        for t in tensors
    )
