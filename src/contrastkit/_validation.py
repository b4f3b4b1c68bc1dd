"""Input checks shared by every public function: fail early, name the argument.

Each check raises :class:`TypeError` (wrong kind of object or dtype) or
:class:`ValueError` (wrong shape, range or value) with a message that names the
argument, says what was expected and what was received. Checks run before any
computation.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Literal, cast

import torch
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")


def check_tensor(name: str, t: object, *, ndim: int) -> Tensor:
    """``t`` is a real floating-point tensor with ``ndim`` dimensions."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    return t


def check_embeddings(name: str, t: object) -> Tensor:
    """``t`` is a non-empty ``(batch, features)`` floating-point tensor."""
    t = check_tensor(name, t, ndim=2)
    if t.shape[0] == 0:
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


def check_same_device(**tensors: Tensor) -> None:
    """All tensors live on one device."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"all inputs must be on the same device, got {listed}")


def check_finite(**tensors: Tensor) -> None:
    """No NaN or infinity in any tensor (the losses' documented NaN/Inf policy)."""
    for name, t in tensors.items():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise ValueError(
                f"{name} must be finite, got {bad} NaN or infinite value(s) out of {t.numel()}"
            )


def check_reduction(reduction: object) -> Reduction:
    """``reduction`` is one of "mean", "sum", "none"."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    return cast(Reduction, reduction)


def _check_real_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_margin(margin: object, name: str = "margin") -> float:
    """``margin`` is a finite number >= 0."""
    value = _check_real_number(name, margin)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {margin!r}")
    return value


def check_temperature(
    temperature: object, name: str = "temperature", *, device: torch.device | None = None
) -> float | Tensor:
    """``temperature`` is a finite number > 0, or a positive one-element tensor.

    A tensor (for example a learnable ``nn.Parameter``) is passed through so that
    gradients reach it; given ``device``, it must live there.
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
        value = float(temperature.detach())
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        return temperature.reshape(())
    value = _check_real_number(name, temperature)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {temperature!r}")
    return value


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` is one of ``choices`` (the message lists them)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return str(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` is a Python bool (so that a stray string or tensor is not truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


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

    Returns the labels as a floating-point tensor (float32 for non-float input).
    """
    t = _check_1d(name, y, like_name, like)
    if t.is_complex():
        raise TypeError(f"{name} must be bool, integer or real floating-point, got {t.dtype}")
    if t.dtype == torch.bool:
        return t.float()
    if t.is_floating_point():
        check_finite(**{name: t})
        if bool(((t < 0) | (t > 1)).any()):
            raise ValueError(
                f"{name} must lie in [0, 1] (1 = similar, 0 = dissimilar), got values from "
                f"{float(t.min())} to {float(t.max())}"
            )
        return t
    if bool(((t != 0) & (t != 1)).any()):
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
    if bool(((t < -1) | (t > 1)).any()):
        raise ValueError(
            f"{name} must lie in [-1, 1], got values from {float(t.min())} to {float(t.max())}"
        )
    return t


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype to compute in: the promoted input dtype, at least float32."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return dtype


def check_embeddings_and_labels(embeddings: object, labels: object) -> tuple[Tensor, Tensor]:
    """A labelled batch: finite ``(N, D)`` embeddings and ``(N,)`` integer class labels.

    Returns the embeddings in their compute dtype (float32 for half precision).
    """
    embeddings = check_embeddings("embeddings", embeddings)
    labels = check_class_labels("labels", labels, "embeddings", embeddings)
    check_finite(embeddings=embeddings)
    return embeddings.to(compute_dtype(embeddings)), labels


def check_chunk_size(chunk_size: object) -> int | None:
    """``chunk_size`` is None (chosen from the sizes) or a positive int (rows per tile)."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(
            f"chunk_size must be a positive int or None, got {type(chunk_size).__name__} "
            f"{chunk_size!r}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
    return chunk_size
