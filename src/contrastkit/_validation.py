"""Input checks shared by the whole library: one rule per kind of input, and one switch.

Each check raises :class:`TypeError` (wrong kind of object or dtype) or
:class:`ValueError` (wrong shape, range or value) with a message that names the
argument, says what was expected and what was received. Checks run before any
computation. Every module of contrastkit validates its inputs with the functions here
(the array inputs of :mod:`contrastkit.evaluation` and :mod:`contrastkit.plots`, which
are numpy arrays, with :mod:`contrastkit.evaluation._checks`, built on the same rules).

**Numbers.** A hyper-parameter that is a number (a margin, a temperature, a rate, a
count) may be any real number object: a Python ``int`` or ``float`` or a numpy scalar
such as ``np.float32(0.5)`` or ``np.int64(3)`` (whatever is registered as
:class:`numbers.Real`; where an integer is needed, as :class:`numbers.Integral`). A
``bool`` (Python or numpy) is never a number, and an integer-valued float is not an
integer. A tensor is not a number either: reading its value would copy it from the
device and break a :func:`torch.compile` graph. The one exception is the temperature,
which may be learned: it also takes a one-element floating-point tensor, passed through
unchanged. Checked numbers come back as a Python ``float`` or ``int``.

**The value checks can be turned off.** Some checks read the *values* held by tensors:
the NaN/Inf scan of embeddings and inputs, the range of pair labels, scores and
reconstruction targets, the sign of a temperature tensor. Each costs a pass over the
data and a read back to the host, which on an accelerator waits for the device, and
which :func:`torch.compile` cannot capture in one graph. They can be turned off, for
the whole process (not per thread)::

    import contrastkit

    contrastkit.set_validation(False)  # from now on
    with contrastkit.validation(False):  # inside the block only (also a decorator)
        ...
    contrastkit.is_validation_enabled()  # True by default

With the value checks off, every loss of :mod:`contrastkit.functional` traces into one
graph (``torch.compile(loss, fullgraph=True)``), and a bad value is no longer caught: a
NaN embedding gives a NaN loss, a label of 2 is used as a weight of 2. The checks of
types, dtypes, shapes, devices and hyper-parameters cost nothing on the device and
always run. The numpy checks of :mod:`contrastkit.evaluation` and
:mod:`contrastkit.plots` always run too: their data is on the host already.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, TypeVar

import torch
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "check_bool",
    "check_choice",
    "check_chunk_size",
    "check_class_labels",
    "check_embeddings",
    "check_embeddings_and_labels",
    "check_finite",
    "check_fraction",
    "check_in_range",
    "check_int",
    "check_int_sequence",
    "check_magnitude",
    "check_margin",
    "check_negatives",
    "check_nonnegative",
    "check_pair_labels",
    "check_paired_embeddings",
    "check_positive",
    "check_positive_int",
    "check_real",
    "check_reconstruction_inputs",
    "check_reduction",
    "check_same_device",
    "check_same_shape",
    "check_score",
    "check_temperature",
    "check_tensor",
    "compute_dtype",
    "is_validation_enabled",
    "set_validation",
    "validation",
]

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")

_Choice = TypeVar("_Choice", bound=str)

# --------------------------------------------------------------------------------------
# The switch for the value checks
# --------------------------------------------------------------------------------------

_enabled = True


def set_validation(enabled: bool) -> None:
    """Turn the checks of tensor values on (the default) or off, for the whole process.

    Off, the losses skip their NaN/Inf scans and the range checks of labels, scores and
    targets, so that they read nothing back from the device and compile into one graph;
    bad values then give bad results instead of an error. Types, dtypes, shapes,
    devices and hyper-parameters are always checked.

    Args:
        enabled: ``True`` to check values, ``False`` to trust them.

    Example:
        >>> import contrastkit
        >>> contrastkit.set_validation(False)
        >>> contrastkit.is_validation_enabled()
        False
        >>> contrastkit.set_validation(True)
    """
    global _enabled
    _enabled = check_bool("enabled", enabled)


def is_validation_enabled() -> bool:
    """Whether the checks of tensor values run (see :func:`set_validation`)."""
    return _enabled


@contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """Turn the checks of tensor values on or off inside a ``with`` block (or a function).

    The previous setting comes back when the block ends, even on an error. Usable as a
    decorator too.

    Example:
        >>> import torch
        >>> import contrastkit
        >>> from contrastkit.functional import triplet_loss
        >>> a, p, n = torch.zeros(2, 3), torch.ones(2, 3), torch.full((2, 3), 2.0)
        >>> with contrastkit.validation(False):
        ...     loss = triplet_loss(a, p, n, margin=0.5)
        >>> loss, contrastkit.is_validation_enabled()
        (tensor(0.), True)
    """
    global _enabled
    previous = _enabled
    _enabled = check_bool("enabled", enabled)
    try:
        yield
    finally:
        _enabled = previous


# --------------------------------------------------------------------------------------
# Numbers and options
# --------------------------------------------------------------------------------------


def check_real(name: str, value: object) -> float:
    """``value`` is a finite real number (not a bool, not a tensor), as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def check_nonnegative(name: str, value: object) -> float:
    """``value`` is a finite real number ``>= 0``."""
    result = check_real(name, value)
    if result < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return result


def check_positive(name: str, value: object) -> float:
    """``value`` is a finite real number ``> 0``."""
    result = check_real(name, value)
    if result <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return result


_INTERVALS = {"[]": "[0, 1]", "[)": "[0, 1)", "(]": "(0, 1]", "()": "(0, 1)"}


def check_fraction(name: str, value: object, interval: str = "[]") -> float:
    """``value`` is a real number in the unit interval, closed or open at each end.

    Args:
        name: the argument's name, for the message.
        value: the number to check.
        interval: ``"[]"`` for :math:`[0, 1]`, ``"[)"``, ``"(]"`` or ``"()"``.
    """
    if interval not in _INTERVALS:
        raise ValueError(f"interval must be one of {sorted(_INTERVALS)}, got {interval!r}")
    result = check_real(name, value)
    low_ok = result >= 0.0 if interval[0] == "[" else result > 0.0
    high_ok = result <= 1.0 if interval[1] == "]" else result < 1.0
    if not (low_ok and high_ok):
        raise ValueError(f"{name} must lie in {_INTERVALS[interval]}, got {value!r}")
    return result


def check_margin(margin: object, name: str = "margin") -> float:
    """``margin`` is a finite number >= 0 (:func:`check_nonnegative`)."""
    return check_nonnegative(name, margin)


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` is an integer (not a bool, not an integer-valued float), ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    result = int(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return result


def check_positive_int(name: str, value: object) -> int:
    """``value`` is an integer ``>= 1``."""
    return check_int(name, value, minimum=1)


def check_int_sequence(
    name: str, value: object, *, what: str = "integers", minimum: int = 1
) -> tuple[int, ...]:
    """``value`` is a sequence (not a string) of integers ``>= minimum``, as a tuple.

    ``what`` names the entries in the message ("layer widths", "sizes"); each entry is
    checked as ``name[i]``.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of {what}, got {value!r}")
    return tuple(check_int(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(value))


def check_temperature(
    temperature: object, name: str = "temperature", *, device: torch.device | None = None
) -> float | Tensor:
    """``temperature`` is a finite number > 0, or a positive one-element tensor.

    A tensor (for example a learnable ``nn.Parameter``) is passed through, reshaped to a
    scalar, so that gradients reach it; given ``device``, it must live there. Whether
    the tensor's value is finite and positive is a value check (see
    :func:`set_validation`).
    """
    if isinstance(temperature, Tensor):
        if device is not None and temperature.device != device:
            raise ValueError(
                f"{name} must be on the same device as the inputs ({device}), "
                f"got {temperature.device}"
            )
        if temperature.numel() != 1:
            raise ValueError(
                f"{name} must be a number or a one-element tensor, got shape "
                f"{tuple(temperature.shape)}"
            )
        if not temperature.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {temperature.dtype}")
        if _enabled:
            value = float(temperature.detach())
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        return temperature.reshape(())
    return check_positive(name, temperature)


def check_reduction(reduction: object) -> Reduction:
    """``reduction`` is one of "mean", "sum", "none"."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    return reduction  # type: ignore[return-value]


def check_choice(name: str, value: object, choices: Collection[_Choice]) -> _Choice:
    """``value`` is one of ``choices`` (the message lists them, sorted)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_bool(name: str, value: object) -> bool:
    """``value`` is a Python bool (so that a stray string or tensor is not truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_chunk_size(chunk_size: object) -> int | None:
    """``chunk_size`` is None (chosen from the sizes) or a positive int (rows per tile)."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(
            f"chunk_size must be a positive int or None, got {type(chunk_size).__name__} "
            f"{chunk_size!r}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
    return int(chunk_size)


# --------------------------------------------------------------------------------------
# Tensors: kind, shape, device
# --------------------------------------------------------------------------------------


def check_tensor(name: str, t: object, *, ndim: int) -> Tensor:
    """``t`` is a real floating-point tensor with ``ndim`` dimensions."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    return t


def check_embeddings(name: str, t: object, *, allow_empty: bool = False) -> Tensor:
    """``t`` is a non-empty ``(batch, features)`` floating-point tensor.

    ``allow_empty``: a batch of no rows is valid too (one process's part of a gathered
    batch, when the processes outnumber its rows).
    """
    t = check_tensor(name, t, ndim=2)
    if t.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} must hold at least one row, got an empty batch {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {tuple(t.shape)}")
    return t


def check_same_shape(**tensors: Tensor) -> None:
    """All tensors have one shape; the message lists every shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{' and '.join(shapes)} must have the same shape, got {listed}")


def check_paired_embeddings(*, allow_empty: bool = False, **tensors: object) -> None:
    """Each tensor is a batch of embeddings (:func:`check_embeddings`); all of one shape."""
    checked = {
        name: check_embeddings(name, t, allow_empty=allow_empty) for name, t in tensors.items()
    }
    check_same_shape(**checked)


def check_same_device(**tensors: Tensor) -> None:
    """All tensors live on one device."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"all inputs must be on the same device, got {listed}")


def check_negatives(negatives: object, n: int, d: int) -> Tensor:
    """Extra negatives of :func:`contrastkit.functional.info_nce`: ``(M, d)`` or ``(n, K, d)``."""
    if not isinstance(negatives, Tensor):
        raise TypeError(f"negatives must be a torch.Tensor or None, got {type(negatives).__name__}")
    if not negatives.is_floating_point():
        raise TypeError(f"negatives must be a real floating-point tensor, got {negatives.dtype}")
    shared = negatives.dim() == 2 and negatives.shape[1] == d
    per_query = negatives.dim() == 3 and negatives.shape[0] == n and negatives.shape[2] == d
    if not (shared or per_query):
        raise ValueError(
            f"negatives must have shape (M, {d}) (shared by all queries) or ({n}, K, {d}) "
            f"(K per query) to match query of shape ({n}, {d}), got {tuple(negatives.shape)}"
        )
    return negatives


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype to compute in: the promoted input dtype, at least float32."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return dtype


# --------------------------------------------------------------------------------------
# Tensor values (skipped while validation is off)
# --------------------------------------------------------------------------------------


def check_finite(**tensors: Tensor) -> None:
    """No NaN or infinity in any tensor (the losses' documented NaN/Inf policy).

    A value check: skipped while validation is off (:func:`set_validation`).
    """
    if not _enabled:
        return
    for name, t in tensors.items():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise ValueError(
                f"{name} must be finite, got {bad} NaN or infinite value(s) out of {t.numel()}"
            )


def check_in_range(name: str, t: Tensor, low: int, high: int, *, context: str = "") -> None:
    """Every value of ``t`` lies in ``[low, high]``; ``context`` follows the interval.

    A value check: skipped while validation is off. NaN is not caught here (run
    :func:`check_finite` first).
    """
    if not _enabled:
        return
    if bool(((t < low) | (t > high)).any()):
        raise ValueError(
            f"{name} must lie in [{low}, {high}]{context}, got values from "
            f"{float(t.min())} to {float(t.max())}"
        )


def check_magnitude(name: str, t: Tensor, limit: float, *, why: str) -> None:
    """No value of ``t`` exceeds ``limit`` in magnitude; ``why`` explains the limit.

    A value check: skipped while validation is off.
    """
    if not _enabled or t.numel() == 0:
        return
    largest = float(t.detach().abs().amax())
    if largest > limit:
        raise ValueError(
            f"{name} must not exceed {limit:.3g} in magnitude {why}, got values up to {largest:.3g}"
        )


def _check_1d(name: str, t: object, like_name: str, like: Tensor) -> Tensor:
    """``t`` is a 1-D tensor with one entry per row of ``like``, on its device."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    n = like.shape[0]
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},), one entry per row of {like_name} "
            f"{tuple(like.shape)}, got {tuple(t.shape)}"
        )
    check_same_device(**{like_name: like, name: t})
    return t


def check_pair_labels(name: str, y: object, like_name: str, like: Tensor) -> Tensor:
    """Pair labels: bool, integer 0/1, or float in [0, 1]; shape ``(n,)``.

    Returns the labels as a floating-point tensor (float32 for non-float input). The
    values are checked only while validation is on.
    """
    t = _check_1d(name, y, like_name, like)
    if t.is_complex():
        raise TypeError(f"{name} must be bool, integer or real floating-point, got {t.dtype}")
    if t.dtype == torch.bool:
        return t.float()
    if t.is_floating_point():
        check_finite(**{name: t})
        check_in_range(name, t, 0, 1, context=" (1 = similar, 0 = dissimilar)")
        return t
    if _enabled and bool(((t != 0) & (t != 1)).any()):
        found = sorted({int(v) for v in t.unique().tolist()} - {0, 1})[:5]
        raise ValueError(f"{name} must be 0 (dissimilar) or 1 (similar), got other values {found}")
    return t.float()


def check_class_labels(name: str, labels: object, like_name: str, like: Tensor) -> Tensor:
    """Class labels: an integer (or bool) tensor of shape ``(n,)``."""
    t = _check_1d(name, labels, like_name, like)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(
            f"{name} must be an integer tensor of class labels, got dtype {t.dtype} "
            f"(for 0/1 pair labels use a pair loss)"
        )
    return t


def check_score(name: str, score: object, like_name: str, like: Tensor) -> Tensor:
    """Target similarity scores: a real (non-bool) tensor of shape ``(n,)`` in [-1, 1]."""
    t = _check_1d(name, score, like_name, like)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be a real number tensor in [-1, 1], got dtype {t.dtype}")
    if t.is_floating_point():
        check_finite(**{name: t})
    check_in_range(name, t, -1, 1)
    return t


def check_embeddings_and_labels(
    embeddings: object, labels: object, *, allow_empty: bool = False
) -> tuple[Tensor, Tensor]:
    """A labelled batch: finite ``(N, D)`` embeddings and ``(N,)`` integer class labels.

    Returns the embeddings in their compute dtype (float32 for half precision).
    ``allow_empty``: as in :func:`check_embeddings`.
    """
    embeddings = check_embeddings("embeddings", embeddings, allow_empty=allow_empty)
    labels = check_class_labels("labels", labels, "embeddings", embeddings)
    check_finite(embeddings=embeddings)
    return embeddings.to(compute_dtype(embeddings)), labels


def check_reconstruction_inputs(reconstruction: object, target: object, kind: str) -> bool:
    """Inputs of :func:`contrastkit.functional.reconstruction_loss` for ``kind``.

    Returns whether ``target`` holds class indices (``kind="cross_entropy"`` with an
    integer target).
    """
    if not isinstance(reconstruction, Tensor):
        raise TypeError(
            f"reconstruction must be a torch.Tensor, got {type(reconstruction).__name__}"
        )
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if not reconstruction.is_floating_point():
        raise TypeError(
            f"reconstruction must be a real floating-point tensor, got dtype {reconstruction.dtype}"
        )
    shape = tuple(reconstruction.shape)
    min_dim = 2 if kind == "cross_entropy" else 1
    if reconstruction.dim() < min_dim:
        expected = "(N, C, ...) logits" if kind == "cross_entropy" else "(N, ...)"
        raise ValueError(
            f"reconstruction must be at least {min_dim}-D {expected} for kind={kind!r}, "
            f"got shape {shape}"
        )
    if reconstruction.numel() == 0:
        raise ValueError(
            f"reconstruction must hold at least one sample with at least one element, "
            f"got shape {shape}"
        )
    indices = kind == "cross_entropy" and not target.is_floating_point()
    if indices:
        if target.dtype == torch.bool or target.is_complex():
            raise TypeError(
                "target must be integer class indices or floating-point class probabilities "
                f"for kind='cross_entropy', got dtype {target.dtype}"
            )
        expected_shape = (shape[0], *shape[2:])
        if tuple(target.shape) != expected_shape:
            raise ValueError(
                f"target of class indices must have shape {expected_shape} (reconstruction "
                f"{shape} without its class dimension), got {tuple(target.shape)}"
            )
    else:
        if not target.is_floating_point():
            raise TypeError(
                f"target must be a real floating-point tensor for kind={kind!r}, got dtype "
                f"{target.dtype} (convert it with .float())"
            )
        check_same_shape(reconstruction=reconstruction, target=target)
    check_same_device(reconstruction=reconstruction, target=target)
    if indices:
        check_finite(reconstruction=reconstruction)
        classes = shape[1]
        if _enabled and bool(((target < 0) | (target >= classes)).any()):
            raise ValueError(
                f"target class indices must lie in [0, {classes - 1}] for {classes} classes, "
                f"got values from {int(target.min())} to {int(target.max())}"
            )
        return True
    check_finite(reconstruction=reconstruction, target=target)
    context = f" for kind={kind!r}"
    if kind == "bce":
        hint = " (probabilities; for logits use kind='bce_with_logits')"
        check_in_range("reconstruction", reconstruction, 0, 1, context=context + hint)
    if kind in ("bce", "bce_with_logits", "cross_entropy"):
        check_in_range("target", target, 0, 1, context=context)
    return False
