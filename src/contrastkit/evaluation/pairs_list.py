r"""Verification on a standard pairs list, by LFW's cross-validated accuracy.

A *pairs list* (LFW's ``pairs.txt``, or a CSV ``left,right,label`` read by
:func:`contrastkit.data.readers.read_pairs_list`) fixes which pairs a verification
result is computed on, so results of different models are comparable. The protocol is
LFW's (Huang et al. 2007, View 2, "unrestricted" and its successors):

* the pairs are divided into :math:`k` folds (10 by default); for each fold the
  distance threshold is the one with the best accuracy on the other :math:`k - 1` folds
  (:func:`~contrastkit.evaluation.metrics.best_threshold`: midpoints between
  consecutive distinct distances, the smallest on ties) and the accuracy is measured on
  the fold itself (:func:`~contrastkit.evaluation.metrics.accuracy_at_threshold`);
* the result is the mean of the :math:`k` fold accuracies :math:`\hat\mu` with their
  sample standard deviation :math:`\hat\sigma` (``ddof=1``) and LFW's standard error
  :math:`\hat\sigma / \sqrt{k}`. (Some code, such as insightface's, prints
  ``np.std`` with ``ddof=0``: smaller by :math:`\sqrt{(k-1)/k}`.)
* The threshold-free metrics, ROC-AUC, EER and TAR@FAR, need no threshold and are
  computed over all pairs (:func:`~contrastkit.evaluation.metrics.verification_metrics`).

**Folds.** A pairs list with a ``fold`` column keeps its folds. Without one,
:func:`pair_folds` forms them without randomness: the similar pairs, in the order of
the list, are cut into :math:`k` contiguous blocks of near-equal size (the first ones a
pair larger when :math:`k` does not divide their number, as :func:`numpy.array_split`),
and so are the dissimilar pairs; fold :math:`i` is block :math:`i` of each. Every fold
then holds about :math:`1/k` of each kind, and a list written in the order of LFW's
``pairs.txt`` (300 matched then 300 mismatched pairs per set, set after set) gets
exactly LFW's ten folds.

Example:
    >>> import torch
    >>> from contrastkit.evaluation.pairs_list import pairs_list_verification
    >>> emb = {"a1": [1.0, 0.0], "a2": [0.9, 0.1], "b1": [0.0, 1.0], "b2": [0.1, 0.9]}
    >>> left = ["a1", "b1", "a1", "a2"] * 5
    >>> right = ["a2", "b2", "b1", "b2"] * 5
    >>> same = [1, 1, 0, 0] * 5
    >>> out = pairs_list_verification(left, right, same, emb, n_folds=5)
    >>> out["accuracy"], out["accuracy_std"], out["roc_auc"]
    (1.0, 0.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_int, check_positive_int
from contrastkit.distances import DistanceName, get_distance, paired_distance
from contrastkit.evaluation._checks import (
    ArrayLike,
    check_1d_array,
    check_binary,
    check_both_classes,
    check_pairs,
    check_real_array,
    to_numpy,
)
from contrastkit.evaluation.metrics import (
    accuracy_at_threshold,
    best_threshold,
    verification_metrics,
)

__all__ = [
    "CrossValidatedAccuracy",
    "cross_validated_accuracy",
    "cross_validated_verification",
    "pair_folds",
    "pairs_list_verification",
]

DEFAULT_FOLDS = 10
"""LFW's number of folds."""

Embeddings = Mapping[Any, Any] | Callable[[list[str]], Any]
"""Embeddings keyed by path, or a function from a list of paths to their embeddings."""


class CrossValidatedAccuracy(NamedTuple):
    """The accuracy of each fold, its threshold chosen on the other folds.

    Every field is a numpy array with one entry per fold, in increasing order of fold.

    Attributes:
        fold: the fold values (those of the ``folds`` given, or ``0 .. k-1``).
        threshold: the distance threshold chosen on the other folds' pairs.
        accuracy: the accuracy on the fold's own pairs at that threshold.
        train_accuracy: the accuracy on the other folds at that threshold (optimistic:
            it chose the threshold).
    """

    fold: np.ndarray
    threshold: np.ndarray
    accuracy: np.ndarray
    train_accuracy: np.ndarray


def _labels(same: object) -> np.ndarray:
    """Pair labels 0/1 (or bool) as a bool array."""
    a = check_1d_array("same", same, item="label")
    return check_binary("same", a, "same", a)


def pair_folds(same: ArrayLike, *, n_folds: int = DEFAULT_FOLDS) -> Tensor:
    """LFW-style folds of a pairs list without a fold column, formed without randomness.

    The similar pairs (``same = 1``), in their order, are cut into ``n_folds``
    contiguous blocks whose sizes differ by at most one (the larger ones first); so are
    the dissimilar pairs; fold ``i`` is block ``i`` of each. Every fold holds both kinds.

    Args:
        same: ``(n,)`` pair labels, 1 = similar, 0 = dissimilar.
        n_folds: the number of folds, at least 2.

    Returns:
        ``(n,)`` int64 fold of each pair, in ``0 .. n_folds - 1``.

    Raises:
        ValueError: fewer than ``n_folds`` similar or dissimilar pairs.

    Example:
        >>> from contrastkit.evaluation.pairs_list import pair_folds
        >>> pair_folds([1, 1, 1, 0, 0, 0, 0], n_folds=2).tolist()
        [0, 0, 1, 0, 0, 1, 1]
    """
    n_folds = check_int("n_folds", n_folds, minimum=2)
    s = _labels(same)
    n_similar = int(s.sum())
    n_dissimilar = s.size - n_similar
    if min(n_similar, n_dissimilar) < n_folds:
        raise ValueError(
            f"same must hold at least n_folds={n_folds} similar and {n_folds} dissimilar "
            f"pairs to form {n_folds} folds with both kinds in each, got {n_similar} similar "
            f"and {n_dissimilar} dissimilar"
        )
    folds = np.empty(s.size, dtype=np.int64)
    for kind in (True, False):
        for i, block in enumerate(np.array_split(np.flatnonzero(s == kind), n_folds)):
            folds[block] = i
    return torch.from_numpy(folds)


def _checked_folds(s: np.ndarray, folds: ArrayLike | None, n_folds: int | None) -> np.ndarray:
    """The fold of each pair, given (checked) or formed by :func:`pair_folds`."""
    if folds is None:
        k = DEFAULT_FOLDS if n_folds is None else n_folds
        return pair_folds(s, n_folds=k).numpy()
    f = check_1d_array("folds", folds, item="fold")
    if f.dtype.kind not in "iu":
        raise TypeError(f"folds must hold integer fold numbers, got dtype {f.dtype}")
    if f.shape != s.shape:
        raise ValueError(
            f"folds must have shape {s.shape}, one fold per pair of same, got shape {f.shape}"
        )
    values = np.unique(f)
    if values.size < 2:
        raise ValueError(
            f"folds must hold at least 2 distinct folds for cross-validation, got only "
            f"{values[0].item()}"
        )
    if n_folds is not None and check_int("n_folds", n_folds) != values.size:
        raise ValueError(
            f"n_folds={n_folds} disagrees with the {values.size} distinct folds of folds; "
            "leave n_folds out when folds are given"
        )
    for value in values.tolist():
        outside = s[f != value]
        n_similar = int(outside.sum())
        if n_similar == 0 or n_similar == outside.size:
            raise ValueError(
                f"folds: the pairs outside fold {value} ({outside.size}) are all "
                f"{'dissimilar' if n_similar == 0 else 'similar'}; the threshold of each fold "
                "is chosen on the other folds, which need both similar and dissimilar pairs"
            )
    return f.astype(np.int64)


def _cross_validate(d: np.ndarray, s: np.ndarray, f: np.ndarray) -> CrossValidatedAccuracy:
    values = np.unique(f)
    thresholds, accuracies, train_accuracies = [], [], []
    for value in values.tolist():
        test = f == value
        train = ~test
        t = best_threshold(d[train], s[train])
        thresholds.append(t)
        accuracies.append(accuracy_at_threshold(d[test], s[test], threshold=t))
        train_accuracies.append(accuracy_at_threshold(d[train], s[train], threshold=t))
    return CrossValidatedAccuracy(
        values, np.array(thresholds), np.array(accuracies), np.array(train_accuracies)
    )


def cross_validated_accuracy(
    distances: ArrayLike,
    same: ArrayLike,
    *,
    folds: ArrayLike | None = None,
    n_folds: int | None = None,
) -> CrossValidatedAccuracy:
    """Each fold's accuracy at the threshold chosen on the other folds (LFW's protocol).

    For each fold, :func:`~contrastkit.evaluation.metrics.best_threshold` on the pairs
    of the other folds (the smallest best threshold on ties), then
    :func:`~contrastkit.evaluation.metrics.accuracy_at_threshold` on the fold's pairs.

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different; both must occur.
        folds: ``(n,)`` integer fold of each pair (any values; at least 2 distinct, the
            pairs outside each fold of both kinds), or ``None`` for :func:`pair_folds`.
        n_folds: without ``folds``, the number of folds (10 if ``None``); with them,
            ``None`` or their number of distinct values.

    Returns:
        A :class:`CrossValidatedAccuracy` of one entry per fold.

    Example:
        >>> from contrastkit.evaluation.pairs_list import cross_validated_accuracy
        >>> cv = cross_validated_accuracy(
        ...     [0.1, 0.5, 0.2, 0.25], [1, 0, 1, 0], folds=[1, 1, 2, 2]
        ... )
        >>> cv.fold.tolist(), cv.threshold.tolist(), cv.accuracy.tolist()
        ([1, 2], [0.225, 0.3], [1.0, 0.5])
    """
    d, s = check_pairs(distances, same, both=True)
    f = _checked_folds(s, folds, n_folds)
    return _cross_validate(d, s, f)


def _summary(
    d: np.ndarray, s: np.ndarray, f: np.ndarray, fars: Sequence[float]
) -> dict[str, float]:
    every = verification_metrics(d, s, d, s, fars=fars)
    result = {k: v for k, v in every.items() if k not in ("threshold", "accuracy", "val_accuracy")}
    cv = _cross_validate(d, s, f)
    k = cv.accuracy.size
    std = float(np.std(cv.accuracy, ddof=1))
    result["accuracy"] = float(np.mean(cv.accuracy))
    result["accuracy_std"] = std
    result["accuracy_sem"] = std / math.sqrt(k)
    result["threshold"] = float(np.mean(cv.threshold))
    result["train_accuracy"] = float(np.mean(cv.train_accuracy))
    result["folds"] = float(k)
    return result


def _check_fars(fars: Sequence[float]) -> None:
    """``fars`` as :func:`verification_metrics` checks them, before anything is computed."""
    verification_metrics((0.0, 1.0), (1, 0), (0.0, 1.0), (1, 0), fars=fars)


def cross_validated_verification(
    distances: ArrayLike,
    same: ArrayLike,
    *,
    folds: ArrayLike | None = None,
    n_folds: int | None = None,
    fars: Sequence[float] = (1e-2, 1e-3),
) -> dict[str, float]:
    """Verification metrics of a pairs list by LFW's protocol, from pair distances.

    Keys, in this order:

    * ``"roc_auc"``, ``"eer"``, ``"tar@far=<far>"``: over all pairs, as
      :func:`~contrastkit.evaluation.metrics.verification_metrics` computes them;
    * ``"accuracy"``: the mean over folds of the accuracy at the threshold chosen on
      the other folds (:func:`cross_validated_accuracy`);
    * ``"accuracy_std"``: their sample standard deviation (``ddof=1``);
    * ``"accuracy_sem"``: LFW's standard error, ``accuracy_std / sqrt(folds)``;
    * ``"threshold"``: the mean of the folds' thresholds (a distance);
    * ``"train_accuracy"``: the mean accuracy on the training folds (optimistic);
    * ``"folds"``: the number of folds.

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different; both must occur.
        folds: ``(n,)`` integer fold of each pair, or ``None`` for :func:`pair_folds`.
        n_folds: without ``folds``, the number of folds (10 if ``None``).
        fars: the false accept rates of TAR@FAR, in ``(0, 1)``.

    Returns:
        A dict from the keys above to Python floats.

    Example:
        >>> from contrastkit.evaluation.pairs_list import cross_validated_verification
        >>> out = cross_validated_verification([0.1, 0.5, 0.2, 0.6], [1, 0, 1, 0], n_folds=2)
        >>> out["accuracy"], out["roc_auc"], out["folds"]
        (1.0, 1.0, 2.0)
    """
    d, s = check_pairs(distances, same, both=True)
    f = _checked_folds(s, folds, n_folds)
    _check_fars(fars)
    return _summary(d, s, f, fars)


def _keys(name: str, paths: object) -> list[str]:
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        raise TypeError(f"{name} must be a sequence of paths, got {type(paths).__name__}")
    keys = []
    for i, p in enumerate(paths):
        if not isinstance(p, (str, PathLike)):
            raise TypeError(f"{name}[{i}] must be a path (str), got {type(p).__name__} {p!r}")
        keys.append(str(p))
    return keys


def _row(key: str, value: object, width: int | None) -> np.ndarray:
    """One embedding of a mapping, checked: a non-empty 1-D vector of ``width`` numbers."""
    row = check_real_array(f"embeddings[{key!r}]", value)
    if row.ndim != 1 or row.size == 0 or (width is not None and row.size != width):
        expected = "a non-empty 1-D vector" if width is None else f"a vector of {width} values"
        raise ValueError(f"embeddings[{key!r}] must be {expected}, got shape {row.shape}")
    return row.astype(np.float64)


def _from_mapping(embeddings: Mapping[Any, Any], paths: list[str], where: dict[str, str]) -> Tensor:
    lookup = {str(k): v for k, v in embeddings.items()}
    rows: list[np.ndarray] = []
    for key in paths:
        if key not in lookup:
            raise ValueError(f"embeddings has no entry for {key!r} ({where[key]})")
        rows.append(_row(key, lookup[key], rows[0].size if rows else None))
    return torch.from_numpy(np.stack(rows))


def _from_function(embed: Callable[[list[str]], Any], paths: list[str], batch_size: int) -> Tensor:
    parts: list[Tensor] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        with torch.no_grad():
            out = embed(chunk)
        if isinstance(out, Tensor):
            block = out.detach().cpu()
        else:
            try:
                block = torch.as_tensor(to_numpy("embeddings(paths)", out))
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"embeddings(paths) must return a (len(paths), D) tensor or array: {error}"
                ) from None
        width = parts[0].shape[1] if parts else None
        if (
            block.ndim != 2
            or block.shape[0] != len(chunk)
            or block.shape[1] == 0
            or (width is not None and block.shape[1] != width)
        ):
            d = "D" if width is None else str(width)
            raise ValueError(
                f"embeddings(paths) must return shape ({len(chunk)}, {d}) for {len(chunk)} "
                f"paths (from {chunk[0]!r}), got {tuple(block.shape)}"
            )
        if block.dtype == torch.bool or block.dtype.is_complex:
            raise TypeError(f"embeddings(paths) must return real numbers, got dtype {block.dtype}")
        parts.append(block.double())
    return torch.cat(parts)


def pairs_list_verification(
    left: Sequence[str],
    right: Sequence[str],
    same: ArrayLike,
    embeddings: Embeddings,
    *,
    folds: ArrayLike | None = None,
    n_folds: int | None = None,
    distance: DistanceName = "cosine",
    fars: Sequence[float] = (1e-2, 1e-3),
    batch_size: int = 256,
) -> dict[str, float]:
    """Verification of a pairs list by LFW's protocol, from embeddings of its samples.

    Every path named by a pair is embedded once, the distance of each pair is taken
    (:func:`contrastkit.distances.paired_distance`, cosine by default) and
    :func:`cross_validated_verification` gives the metrics. With a list read by
    :func:`contrastkit.data.readers.read_pairs_list`::

        pairs = read_pairs_list("lfw/pairs.csv")
        pairs_list_verification(pairs.left, pairs.right, pairs.same, embed, folds=pairs.folds)

    Args:
        left: the first path of each pair.
        right: the second path of each pair.
        same: ``(n,)`` pair labels, 1 = same identity, 0 = different; both must occur.
        embeddings: either a mapping from path (``str``, or a path whose ``str`` is
            one) to a 1-D embedding, with an entry for every path of the pairs; or a
            function that takes a list of paths (up to ``batch_size``, sorted) and
            returns their ``(len(paths), D)`` embeddings as a tensor or array, called
            under :func:`torch.no_grad` (for example ``lambda paths:
            model(read_images(paths, image_size=64))``).
        folds: ``(n,)`` integer fold of each pair, or ``None`` for :func:`pair_folds`.
        n_folds: without ``folds``, the number of folds (10 if ``None``).
        distance: a name of :data:`contrastkit.distances.DISTANCES`.
        fars: the false accept rates of TAR@FAR, in ``(0, 1)``.
        batch_size: the most paths given to an embedding function at once.

    Returns:
        The dict of :func:`cross_validated_verification`; its ``"threshold"`` is a
        ``distance``.

    Raises:
        ValueError: lengths that differ, a path without an embedding, embeddings of
            different sizes or not finite, bad labels, folds or ``fars``; all checked
            before anything is embedded, except what the embeddings themselves hold.
        TypeError: inputs of the wrong kind.
    """
    left_keys = _keys("left", left)
    right_keys = _keys("right", right)
    s = _labels(same)
    if not len(left_keys) == len(right_keys) == s.size:
        raise ValueError(
            f"left, right and same must have one entry per pair, got lengths "
            f"{len(left_keys)}, {len(right_keys)} and {s.size}"
        )
    check_both_classes("same", s)
    f = _checked_folds(s, folds, n_folds)
    get_distance(distance)
    _check_fars(fars)
    batch_size = check_positive_int("batch_size", batch_size)
    where: dict[str, str] = {}  # where each path is first named, for the messages
    for i, pair in enumerate(zip(left_keys, right_keys, strict=True)):
        for side, key in zip(("left", "right"), pair, strict=True):
            where.setdefault(key, f"the {side} path of pair {i}")
    paths = sorted(where)
    if isinstance(embeddings, Mapping):
        table = _from_mapping(embeddings, paths, where)
    elif callable(embeddings):
        table = _from_function(embeddings, paths, batch_size)
    else:
        raise TypeError(
            "embeddings must be a mapping from path to embedding or a function of a list of "
            f"paths, got {type(embeddings).__name__}"
        )
    finite = torch.isfinite(table).all(dim=1)
    if not bool(finite.all()):
        bad = paths[int(torch.nonzero(~finite)[0])]
        raise ValueError(f"embeddings of {bad!r} are not finite (NaN or infinite)")
    position = {key: i for i, key in enumerate(paths)}
    li = torch.tensor([position[k] for k in left_keys])
    ri = torch.tensor([position[k] for k in right_keys])
    d = paired_distance(table[li], table[ri], distance).numpy()
    return _summary(d, s, f, fars)
