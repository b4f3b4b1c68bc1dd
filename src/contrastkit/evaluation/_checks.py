"""Checks of array inputs, shared by the metrics, the anomaly scores and the plots.

The numpy counterpart of :mod:`contrastkit._validation` (which stays torch-only), with
the same conventions: :class:`TypeError` for a wrong kind of object or dtype,
:class:`ValueError` for a wrong shape or value, and a message that names the argument,
says what was expected and what was received. Numbers (thresholds, rates, counts) are
checked with :mod:`contrastkit._validation`'s rule.

An *array-like* is a torch tensor (on any device, with or without gradient: it is
detached and copied to the CPU), a numpy array, or a list or tuple (any sequence) of
numbers. These checks always run, whatever :func:`contrastkit.set_validation` says:
the data is on the host already, so they cost no device synchronization.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_positive_int

__all__ = [
    "ArrayLike",
    "check_1d_array",
    "check_binary",
    "check_both_classes",
    "check_finite_array",
    "check_ks",
    "check_pairs",
    "check_real_array",
    "check_scores_and_labels",
    "check_values",
    "to_numpy",
]

ArrayLike = Tensor | np.ndarray | Sequence[Any]
"""What the metrics accept: a tensor (any device, gradient or not), an array or a list."""


def to_numpy(name: str, x: object) -> np.ndarray:
    """A tensor, numpy array or sequence of numbers as a numpy array (tensors detached).

    Raises:
        TypeError: ``x`` is none of those (a string, a mapping, a number, ...).
        ValueError: ``x`` is a ragged nested list.
    """
    if isinstance(x, Tensor):
        t = x.detach().cpu().resolve_conj().resolve_neg()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16
            t = t.float()
        return t.numpy()
    if isinstance(x, np.ndarray):
        return x
    readable = (isinstance(x, Sequence) or hasattr(x, "__array__")) and not isinstance(
        x, (str, bytes, Mapping)
    )
    if not readable:
        raise TypeError(
            f"{name} must be a tensor, numpy array or list of numbers, got {type(x).__name__}"
        )
    try:
        return np.asarray(x)
    except ValueError as error:  # a ragged nested list: the right kind, a wrong shape
        raise ValueError(f"{name} must be a rectangular array, got a ragged list") from error


def check_real_array(name: str, x: object) -> np.ndarray:
    """An array-like of real numbers (bool, integer or float dtype), of any shape."""
    a = to_numpy(name, x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def check_1d_array(name: str, x: object, *, item: str = "value") -> np.ndarray:
    """A non-empty 1-D array of real numbers (``item`` names one entry in the message)."""
    a = check_real_array(name, x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one {item}, got an empty array")
    return a


def check_finite_array(name: str, a: np.ndarray) -> None:
    """No NaN or infinity in ``a``."""
    finite = np.isfinite(a)
    if not finite.all():
        bad = int(finite.size - finite.sum())
        raise ValueError(
            f"{name} must be finite, got {bad} NaN or infinite value(s) out of {finite.size}"
        )


def check_values(
    name: str, x: object, *, item: str = "pair", what: str = "distances"
) -> np.ndarray:
    """Finite real values (``what``, not bools), one per ``item``, as a 1-D float64 array."""
    a = check_1d_array(name, x, item=item)
    if a.dtype.kind == "b":
        raise TypeError(f"{name} must hold real-valued {what}, got dtype bool")
    a = a.astype(np.float64)
    check_finite_array(name, a)
    return a


def check_binary(
    name: str,
    x: object,
    like_name: str,
    like: np.ndarray,
    *,
    meaning: tuple[str, str] = ("dissimilar", "similar"),
) -> np.ndarray:
    """Labels 0/1 (or bool), one per entry of ``like``; returned as bool."""
    a = check_1d_array(name, x, item="label")
    if a.shape[0] != like.shape[0]:
        raise ValueError(
            f"{name} must have shape {like.shape}, one label per entry of {like_name}, "
            f"got shape {a.shape}"
        )
    if a.dtype.kind != "b":
        bad = (a != 0) & (a != 1)
        if bad.any():
            found = [v.item() for v in np.unique(a[bad])[:5]]
            raise ValueError(
                f"{name} must be 0 ({meaning[0]}) or 1 ({meaning[1]}), got other values {found}"
            )
    return a.astype(bool)


def check_both_classes(name: str, same: np.ndarray) -> None:
    """Pair labels hold both similar (1) and dissimilar (0) pairs."""
    n_same = int(same.sum())
    if n_same == 0 or n_same == same.size:
        raise ValueError(
            f"{name} must contain both similar (1) and dissimilar (0) pairs, got "
            f"{n_same} similar and {same.size - n_same} dissimilar"
        )


def check_pairs(
    distances: object,
    same: object,
    *,
    both: bool,
    names: tuple[str, str] = ("distances", "same"),
) -> tuple[np.ndarray, np.ndarray]:
    """Verification pairs: ``(distances as float64, same as bool)``.

    ``both``: both similar and dissimilar pairs must occur.
    """
    d_name, s_name = names
    d = check_values(d_name, distances)
    s = check_binary(s_name, same, d_name, d)
    if both:
        check_both_classes(s_name, s)
    return d, s


def check_scores_and_labels(
    scores: object,
    is_anomaly: object,
    *,
    both: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly scores and labels: ``(scores as float64, is_anomaly as bool)``.

    ``both``: both anomalies and normal samples must occur.
    """
    s = check_values("scores", scores, item="score", what="scores")
    y = check_binary("is_anomaly", is_anomaly, "scores", s, meaning=("normal", "anomaly"))
    if both:
        n_anomalies = int(y.sum())
        if n_anomalies == 0 or n_anomalies == y.size:
            raise ValueError(
                f"is_anomaly must contain both anomalies (1) and normal samples (0), got "
                f"{n_anomalies} anomalies and {y.size - n_anomalies} normal"
            )
    return s, y


def check_ks(ks: object) -> list[int]:
    """``ks``: a non-empty sequence of distinct positive ints (the k of recall@k)."""
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence):
        raise TypeError(f"ks must be a sequence of positive ints, got {type(ks).__name__}")
    if len(ks) == 0:
        raise ValueError("ks must hold at least one k, got an empty sequence")
    values = [check_positive_int(f"ks[{i}]", k) for i, k in enumerate(ks)]
    if len(set(values)) != len(values):
        raise ValueError(f"ks must not repeat a value, got {list(ks)!r}")
    return values
