r"""Evaluation metrics for embeddings: pair verification and retrieval.

**Verification** scores a list of pairs from their distances. Pair labels follow the
library convention: ``same = 1`` for a pair of the same identity or class, ``0`` for a
different one. Every function takes *distances* (smaller is more similar) and predicts
"same" iff :math:`d \le t` for a threshold :math:`t`. With :math:`P` positive and
:math:`N` negative pairs,

.. math::
    \mathrm{TPR}(t) = \frac{|\{d_p \le t\}|}{P}, \qquad
    \mathrm{FPR}(t) = \frac{|\{d_n \le t\}|}{N}, \qquad
    \mathrm{FNR}(t) = 1 - \mathrm{TPR}(t).

* :func:`roc_curve`, :func:`roc_auc`: the ROC curve and the area under it
  (:mod:`sklearn.metrics` on the negated distances);
* :func:`equal_error_rate`: where FPR = FNR on the ROC curve;
* :func:`tar_at_far`: the true accept rate at a fixed false accept rate;
* :func:`best_threshold`, :func:`accuracy_at_threshold`: the accuracy protocol of LFW
  (choose the threshold on validation pairs, report accuracy on test pairs);
* :func:`verification_metrics`: all of the above in one dict, with the threshold chosen
  on a validation split only;
* :func:`verification_pairs`: a balanced set of pairs ``(i, j, same)`` from class labels.

**Retrieval** ranks a gallery for each query by a distance from
:data:`contrastkit.distances.DISTANCES` and checks whether the nearest items share the
query's class label. Without a separate gallery every sample queries all the others
(leave-one-out); with ``gallery=`` and ``gallery_labels=`` the queries search the
gallery and nothing is excluded. Ties in distance are broken by gallery index (the
lower index ranks first). A query with no relevant item (no other sample of its class)
is left out of every average; if no query is left a :class:`ValueError` is raised.

* :func:`precision_at_1`, :func:`recall_at_k`, :func:`map_at_r`;
* :func:`retrieval_metrics`: all three from one ranking.

Distances are computed in chunks of query rows, so memory stays proportional to
``chunk * gallery size``, never to the square of the number of samples.

Inputs may be torch tensors (on any device, with or without gradient: they are
detached and copied to the CPU), numpy arrays or lists. Every function checks its
inputs before computing and returns Python floats (numpy arrays for curves).

Example:
    >>> from contrastkit.evaluation.metrics import roc_auc, equal_error_rate
    >>> distances = [0.1, 0.4, 0.35, 0.8]
    >>> same = [1, 1, 0, 0]
    >>> roc_auc(distances, same)
    0.75
    >>> equal_error_rate(distances, same)
    (0.5, 0.35)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score as _sk_roc_auc_score  # type: ignore[import-untyped]
from sklearn.metrics import roc_curve as _sk_roc_curve
from torch import Tensor

from contrastkit._validation import (
    check_class_labels,
    check_embeddings,
    check_finite,
    check_fraction,
    check_int,
    check_positive_int,
    check_real,
    compute_dtype,
)
from contrastkit.distances import DistanceName, distance_matrix, get_distance
from contrastkit.evaluation._checks import check_1d_array, check_pairs, to_numpy

__all__ = [
    "accuracy_at_threshold",
    "best_threshold",
    "equal_error_rate",
    "map_at_r",
    "precision_at_1",
    "recall_at_k",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verification_metrics",
    "verification_pairs",
]

ArrayLike = Tensor | np.ndarray | Sequence[Any]
"""What the metrics accept: a tensor (any device, gradient or not), an array or a list."""

# Upper bound on the number of distance-matrix entries held at once by the retrieval
# metrics: a chunk of queries has max(1, _CHUNK_ELEMENTS // gallery_size) rows.
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------
# Input conversion and checks: contrastkit.evaluation._checks (arrays) and
# contrastkit._validation (numbers), shared with the anomaly scores and the plots
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------


def step_roc(d: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full step ROC ``(fpr, tpr, thresholds)`` of checked inputs, in distance units.

    Shared with :func:`contrastkit.plots.plot_roc` (not in ``__all__``).

    ``d``: float distances, ``s``: bool labels, as :func:`check_pairs` returns them; every
    threshold is kept (no collinear point dropped), the first is ``-inf`` (accept nothing).
    """
    fpr, tpr, thresholds = _sk_roc_curve(s.astype(np.int64), -d, drop_intermediate=False)
    return fpr, tpr, -thresholds


def roc_curve(distances: ArrayLike, same: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The receiver operating characteristic of a verification task, from distances.

    For each threshold :math:`t` the pairs with :math:`d \le t` are accepted as "same":

    .. math::
        \mathrm{TPR}(t) = \frac{|\{p : d_p \le t\}|}{P}, \qquad
        \mathrm{FPR}(t) = \frac{|\{n : d_n \le t\}|}{N}

    over the :math:`P` positive and :math:`N` negative pairs. One point is returned per
    distinct distance, in increasing order (the full step curve: no point is dropped),
    after a first point ``(0, 0)`` at threshold ``-inf`` (accept nothing). This is
    :func:`sklearn.metrics.roc_curve` on the scores ``-distances`` with
    ``drop_intermediate=False``, its thresholds negated back to distances.

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different (bool, int or float 0/1);
            both classes must occur.

    Returns:
        ``(fpr, tpr, thresholds)``: three float64 numpy arrays of one length, ``fpr`` and
        ``tpr`` non-decreasing from ``(0, 0)`` to ``(1, 1)`` and ``thresholds`` increasing.

    Raises:
        ValueError: inputs of different lengths, empty or non-finite, labels other than
            0/1, or only one class present.
        TypeError: inputs that are not numeric array-likes.

    Example:
        >>> from contrastkit.evaluation.metrics import roc_curve
        >>> fpr, tpr, thresholds = roc_curve([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0])
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
        >>> thresholds.tolist()
        [-inf, 0.1, 0.35, 0.4, 0.8]

    Reference:
        T. Fawcett. *An introduction to ROC analysis.* Pattern Recognition Letters 27(8),
        2006.
    """
    d, s = check_pairs(distances, same, both=True)
    return step_roc(d, s)


def roc_auc(distances: ArrayLike, same: ArrayLike) -> float:
    r"""Area under the ROC curve of a verification task, from distances.

    The probability that a random positive pair is closer than a random negative pair,
    ties counting one half:

    .. math::
        \mathrm{AUC} = \frac{1}{PN} \sum_{p} \sum_{n}
            \left( [d_p < d_n] + \tfrac12 [d_p = d_n] \right)

    which is the trapezoidal area under :func:`roc_curve`. Computed by
    :func:`sklearn.metrics.roc_auc_score` on the scores ``-distances``.

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different; both classes must occur.

    Returns:
        The AUC in ``[0, 1]`` (1 = every positive pair closer than every negative pair).

    Example:
        >>> from contrastkit.evaluation.metrics import roc_auc
        >>> roc_auc([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0])  # 3 of 4 (pos, neg) ordered
        0.75

    Reference:
        J. A. Hanley, B. J. McNeil. *The meaning and use of the area under a receiver
        operating characteristic (ROC) curve.* Radiology 143(1), 1982.
    """
    d, s = check_pairs(distances, same, both=True)
    return float(_sk_roc_auc_score(s.astype(np.int64), -d))


def _eer(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    # g = FPR - FNR rises from -1 at (0, 0) to +1 at (1, 1); find where it crosses 0.
    g = fpr + tpr - 1.0
    i = int(np.argmax(g >= 0.0))  # g[-1] = 1, so a crossing exists; g[0] = -1, so i >= 1
    # The accept-nothing point (threshold -inf) behaves as a threshold just below the
    # smallest distance: interpolate from thresholds[1] there.
    t_low = thresholds[i - 1] if i - 1 > 0 else thresholds[1]
    t_high = thresholds[i]
    if g[i] == 0.0:
        return float(fpr[i]), float(t_high)
    alpha = -g[i - 1] / (g[i] - g[i - 1])
    eer = fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1])
    threshold = t_low + alpha * (t_high - t_low)
    return float(eer), float(threshold)


def equal_error_rate(distances: ArrayLike, same: ArrayLike) -> tuple[float, float]:
    r"""Equal error rate: the error where false accepts and false rejects balance.

    On the ROC curve (:func:`roc_curve`) the EER is the rate at which

    .. math::
        \mathrm{FPR} = \mathrm{FNR} = 1 - \mathrm{TPR}.

    The step curve rarely hits that point exactly, so the EER is found by linear
    interpolation: take the first ROC point :math:`k` (in order of increasing threshold)
    with :math:`\mathrm{FPR}_k \ge \mathrm{FNR}_k`, and on the segment from point
    :math:`k-1` to point :math:`k` take the fraction

    .. math::
        \alpha = \frac{\mathrm{FNR}_{k-1} - \mathrm{FPR}_{k-1}}
            {(\mathrm{FNR}_{k-1} - \mathrm{FPR}_{k-1}) + (\mathrm{FPR}_k - \mathrm{FNR}_k)}

    at which both rates are equal; the EER is
    :math:`\mathrm{FPR}_{k-1} + \alpha (\mathrm{FPR}_k - \mathrm{FPR}_{k-1})` and the
    threshold is interpolated with the same :math:`\alpha` between the thresholds of the
    two points (the accept-nothing point, threshold ``-inf``, counts as the smallest
    distance). If point :math:`k` has FPR = FNR exactly, its rate and threshold are
    returned. The EER always lies between the smallest :math:`(\mathrm{FPR} +
    \mathrm{FNR}) / 2` and the smallest :math:`\max(\mathrm{FPR}, \mathrm{FNR})` over
    thresholds.

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different; both classes must occur.

    Returns:
        ``(eer, threshold)``: the equal error rate in ``[0, 1]`` and the (interpolated)
        distance threshold at which it is reached.

    Example:
        >>> from contrastkit.evaluation.metrics import equal_error_rate
        >>> equal_error_rate([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0])  # perfectly separated
        (0.0, 0.2)
        >>> equal_error_rate([1.0, 2.0, 2.0, 3.0], [1, 1, 0, 0])  # halfway along a tie
        (0.25, 1.5)

    Reference:
        A. K. Jain, A. Ross, K. Nandakumar. *Introduction to Biometrics*, Springer 2011,
        section 1.5 (the equal error rate of a verification system).
    """
    d, s = check_pairs(distances, same, both=True)
    return _eer(*step_roc(d, s))


def tar_from_roc(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """The largest TPR of a step ROC (:func:`step_roc`) whose FPR is at most ``far``.

    Shared with :func:`contrastkit.plots.plot_roc` (not in ``__all__``).
    """
    # fpr[0] = 0, so at least the accept-nothing point qualifies
    return float(tpr[fpr <= far].max())


def tar_at_far(distances: ArrayLike, same: ArrayLike, *, far: float = 1e-3) -> float:
    r"""True accept rate at a fixed false accept rate.

    The largest true accept rate over thresholds whose false accept rate stays within
    ``far``, read off the step ROC curve (no interpolation):

    .. math::
        \mathrm{TAR@FAR}(f) = \max \{ \mathrm{TPR}(t) : \mathrm{FPR}(t) \le f \}.

    If only accepting nothing keeps FPR within ``far`` (for example when the closest
    pair is negative and ``far < 1/N``), the result is 0.0.

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different; both classes must occur.
        far: the false accept rate, in ``(0, 1)``. With ``N`` negative pairs, rates below
            ``1/N`` cannot be told apart from 0.

    Returns:
        The true accept rate in ``[0, 1]``.

    Example:
        >>> from contrastkit.evaluation.metrics import tar_at_far
        >>> tar_at_far([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0], far=0.5)
        1.0
        >>> tar_at_far([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0], far=0.1)
        0.5

    Reference:
        S. Liao, Z. Lei, D. Yi, S. Z. Li. *A Benchmark Study of Large-scale Unconstrained
        Face Recognition* (BLUFR). IJCB 2014.
    """
    far = check_fraction("far", far, "()")
    d, s = check_pairs(distances, same, both=True)
    fpr, tpr, _ = step_roc(d, s)
    return tar_from_roc(fpr, tpr, far)


def _best_threshold(d: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising the accuracy, the smallest threshold on ties."""
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]
    s_sorted = s[order]
    n = d.size
    n_negative = n - int(s.sum())
    # last index of each group of equal distances
    last = np.flatnonzero(np.append(d_sorted[1:] != d_sorted[:-1], True))
    tp = np.cumsum(s_sorted)[last]
    fp = (last + 1) - tp
    # correct[k] for accepting the first k groups, k = 0 (accept nothing) .. m (accept all)
    correct = np.concatenate(([n_negative], tp + (n_negative - fp)))
    k = int(np.argmax(correct))  # first maximum = smallest threshold
    values = d_sorted[last].tolist()  # Python floats: overflow gives inf, not a warning
    if k == 0:
        threshold = values[0] - 1.0
        if not threshold < values[0]:  # too large for 1 to register
            threshold = math.nextafter(values[0], -math.inf)
    elif k == len(values):
        threshold = values[-1] + 1.0
        if not math.isfinite(threshold):
            threshold = values[-1]  # d <= max(d) accepts every pair as well
    else:
        low, high = values[k - 1], values[k]
        threshold = (low + high) / 2.0
        if not math.isfinite(threshold):  # the sum overflowed
            threshold = low / 2.0 + high / 2.0
        if not low <= threshold < high:  # neighbouring floats: keep the split exact
            threshold = low
    return float(threshold), float(correct[k]) / n


def best_threshold(distances: ArrayLike, same: ArrayLike) -> float:
    r"""The distance threshold with the highest verification accuracy on these pairs.

    Accuracy at threshold :math:`t` is
    :math:`\frac{1}{n} \sum_i [\,(d_i \le t) = \mathrm{same}_i\,]` (see
    :func:`accuracy_at_threshold`). The candidates are every midpoint between two
    consecutive distinct sorted distances, plus :math:`\min d - 1` (accept nothing; the
    next float below :math:`\min d` if the 1 is lost to rounding) and :math:`\max d + 1`
    (accept everything); between them every possible split of the
    sorted pairs is covered. On ties the smallest candidate wins. One sort and one
    cumulative sum: :math:`O(n \log n)`.

    Choose the threshold on validation pairs and report accuracy on separate test pairs
    (as :func:`verification_metrics` does): the accuracy at a threshold chosen on the
    same pairs is optimistically biased.

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different; both classes must occur.

    Returns:
        The threshold, a finite float.

    Example:
        >>> from contrastkit.evaluation.metrics import best_threshold
        >>> best_threshold([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0])
        0.25
        >>> best_threshold([0.1, 0.4, 0.3, 0.8], [1, 1, 0, 0])  # 0.2 and 0.6 tie: the smaller
        0.2

    Reference:
        G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller. *Labeled Faces in the Wild: A
        Database for Studying Face Recognition in Unconstrained Environments.* University
        of Massachusetts, Amherst, Technical Report 07-49, 2007.
    """
    d, s = check_pairs(distances, same, both=True)
    return _best_threshold(d, s)[0]


def _accuracy(d: np.ndarray, s: np.ndarray, threshold: float) -> float:
    return float(np.mean((d <= threshold) == s))


def accuracy_at_threshold(distances: ArrayLike, same: ArrayLike, *, threshold: float) -> float:
    r"""Verification accuracy when pairs with :math:`d \le t` are predicted "same".

    .. math::
        \mathrm{acc}(t) = \frac{1}{n} \sum_{i=1}^{n} [\,(d_i \le t) = \mathrm{same}_i\,]

    Args:
        distances: ``(n,)`` finite pair distances, smaller = more similar.
        same: ``(n,)`` pair labels, 1 = same, 0 = different (one class alone is fine).
        threshold: a finite distance threshold :math:`t`.

    Returns:
        The fraction of pairs classified correctly.

    Example:
        >>> from contrastkit.evaluation.metrics import accuracy_at_threshold
        >>> accuracy_at_threshold([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0], threshold=0.375)
        0.5

    Reference:
        G. B. Huang et al. *Labeled Faces in the Wild*, Technical Report 07-49, 2007.
    """
    threshold = check_real("threshold", threshold)
    d, s = check_pairs(distances, same, both=False)
    return _accuracy(d, s, threshold)


def _far_key(far: float) -> str:
    return f"tar@far={far:g}"


def verification_metrics(
    val_distances: ArrayLike,
    val_same: ArrayLike,
    test_distances: ArrayLike,
    test_same: ArrayLike,
    *,
    fars: Sequence[float] = (1e-2, 1e-3),
) -> dict[str, float]:
    r"""All verification metrics, with the accuracy threshold chosen on validation pairs.

    The threshold-free metrics are computed on the test pairs; the accuracy threshold
    is chosen by :func:`best_threshold` on the validation pairs alone and then applied
    to the test pairs, so the test pairs never influence it (the LFW protocol).

    Keys, in this order:

    * ``"roc_auc"``: :func:`roc_auc` on test;
    * ``"eer"``: the rate from :func:`equal_error_rate` on test;
    * ``"tar@far=<far>"`` for each ``far`` in ``fars``, formatted with ``:g``
      (``1e-2`` gives ``"tar@far=0.01"``, ``1e-3`` ``"tar@far=0.001"``, ``1e-5``
      ``"tar@far=1e-05"``): :func:`tar_at_far` on test;
    * ``"threshold"``: :func:`best_threshold` on validation;
    * ``"accuracy"``: :func:`accuracy_at_threshold` on test at that threshold;
    * ``"val_accuracy"``: the same on validation (optimistic: it chose the threshold).

    Args:
        val_distances: ``(n_val,)`` validation pair distances.
        val_same: ``(n_val,)`` validation pair labels; both classes must occur.
        test_distances: ``(n_test,)`` test pair distances.
        test_same: ``(n_test,)`` test pair labels; both classes must occur.
        fars: false accept rates in ``(0, 1)`` at which to report the true accept rate;
            their keys must be distinct.

    Returns:
        A dict from the keys above to Python floats.

    Example:
        >>> from contrastkit.evaluation.metrics import verification_metrics
        >>> val_d, val_same = [0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0]
        >>> test_d, test_same = [0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0]
        >>> out = verification_metrics(val_d, val_same, test_d, test_same, fars=(0.1, 1e-3))
        >>> list(out)
        ['roc_auc', 'eer', 'tar@far=0.1', 'tar@far=0.001', 'threshold', 'accuracy', 'val_accuracy']
        >>> out["roc_auc"], out["eer"], out["tar@far=0.1"]
        (0.75, 0.5, 0.5)
        >>> out["threshold"], out["accuracy"], out["val_accuracy"]
        (0.25, 0.75, 1.0)

    Reference:
        G. B. Huang et al. *Labeled Faces in the Wild*, Technical Report 07-49, 2007
        (threshold from training folds); S. Liao et al., BLUFR, IJCB 2014 (TAR@FAR).
    """
    if isinstance(fars, (str, bytes)) or not isinstance(fars, Sequence):
        raise TypeError(f"fars must be a sequence of false accept rates, got {type(fars).__name__}")
    if len(fars) == 0:
        raise ValueError("fars must hold at least one false accept rate, got an empty sequence")
    far_values = [check_fraction(f"fars[{i}]", far, "()") for i, far in enumerate(fars)]
    keys = [_far_key(far) for far in far_values]
    if len(set(keys)) != len(keys):
        raise ValueError(f"fars must give distinct keys, got {list(fars)!r} -> {keys}")
    val_d, val_s = check_pairs(
        val_distances, val_same, both=True, names=("val_distances", "val_same")
    )
    test_d, test_s = check_pairs(
        test_distances, test_same, both=True, names=("test_distances", "test_same")
    )

    fpr, tpr, thresholds = step_roc(test_d, test_s)
    result = {
        "roc_auc": float(_sk_roc_auc_score(test_s.astype(np.int64), -test_d)),
        "eer": _eer(fpr, tpr, thresholds)[0],
    }
    for key, far in zip(keys, far_values, strict=True):
        result[key] = tar_from_roc(fpr, tpr, far)
    threshold, val_accuracy = _best_threshold(val_d, val_s)
    result["threshold"] = threshold
    result["accuracy"] = _accuracy(test_d, test_s, threshold)
    result["val_accuracy"] = val_accuracy
    return result


def _sample_distinct(total: int, k: int, generator: torch.Generator) -> Tensor:
    """``k`` distinct integers drawn uniformly from ``range(total)``, sorted."""
    if k >= total:
        return torch.arange(total)
    if 4 * k >= total:
        return torch.randperm(total, generator=generator)[:k].sort().values
    # Sparse case: draw with replacement until k distinct values are seen. The set of
    # distinct values is a uniform subset given its size, so a uniform k of it is too.
    seen = torch.empty(0, dtype=torch.long)
    while seen.numel() < k:
        draws = torch.randint(0, total, (2 * k,), generator=generator)
        seen = torch.cat((seen, draws)).unique()
    keep = torch.randperm(seen.numel(), generator=generator)[:k]
    return seen[keep].sort().values


def _decode_rows(linear: Tensor, row_start: Tensor) -> tuple[Tensor, Tensor]:
    """Row and offset within the row of linear pair indices, rows given by their starts."""
    row = torch.searchsorted(row_start, linear, right=True) - 1
    return row, linear - row_start[row]


def verification_pairs(
    labels: ArrayLike, *, max_pairs: int | None = None, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    r"""A balanced set of verification pairs ``(i, j, same)`` from class labels.

    The positive pairs are the pairs :math:`i < j` with ``labels[i] == labels[j]``, the
    negative pairs those with different labels. The same number :math:`m` of each is
    returned,

    .. math::
        m = \min(\#\text{positive}, \#\text{negative}, \lfloor \text{max\_pairs} / 2
        \rfloor),

    so with enough negatives and no ``max_pairs`` every positive pair is kept. Where a
    kind has more than :math:`m` pairs, :math:`m` distinct ones are drawn uniformly at
    random with a :class:`torch.Generator` seeded by ``seed`` (same inputs and seed,
    same pairs). Never builds the :math:`N \times N` matrix: pairs are sampled by index.

    Args:
        labels: ``(N,)`` integer (or bool) class labels.
        max_pairs: the largest total number of pairs to return (at least 2), or ``None``
            for no limit.
        seed: seed of the random draws.

    Returns:
        ``(i, j, same)``: three int64 CPU tensors of length :math:`2m` with ``i < j``,
        the :math:`m` positive pairs (``same = 1``) first, then the :math:`m` negative
        pairs (``same = 0``), each part in lexicographic order of ``(i, j)``. No pair
        repeats. Pair embeddings with ``emb[i]``, ``emb[j]``.

    Raises:
        ValueError: no positive pair (no class with two samples) or no negative pair
            (a single class), or bad ``max_pairs``.

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.metrics import verification_pairs
        >>> i, j, same = verification_pairs(torch.tensor([0, 0, 1, 1]))
        >>> i.tolist()[:2], j.tolist()[:2], same.tolist()
        ([0, 2], [1, 3], [1, 1, 0, 0])

    Reference:
        G. B. Huang et al. *Labeled Faces in the Wild*, Technical Report 07-49, 2007
        (balanced sets of matched and mismatched pairs).
    """
    if max_pairs is not None:
        max_pairs = check_positive_int("max_pairs", max_pairs)
        if max_pairs < 2:
            raise ValueError(
                f"max_pairs must be at least 2 (one positive and one negative pair), "
                f"got {max_pairs}"
            )
    seed = check_int("seed", seed)
    y = check_1d_array("labels", labels)
    if y.dtype.kind not in "biu":
        raise TypeError(f"labels must be integer class labels, got dtype {y.dtype}")
    y_t = torch.from_numpy(y.astype(np.int64))
    n = y_t.numel()

    # Positions in class-sorted order; each row lists its partners further right.
    order = torch.argsort(y_t, stable=True)
    _, counts = torch.unique_consecutive(y_t[order], return_counts=True)
    class_end = torch.repeat_interleave(torch.cumsum(counts, 0), counts)  # exclusive end
    position = torch.arange(n)
    pos_per_row = class_end - position - 1
    neg_per_row = n - class_end
    n_pos = int(pos_per_row.sum())
    n_neg = int(neg_per_row.sum())
    if n_pos == 0:
        raise ValueError(
            f"labels must contain a positive pair (two samples of one class), got {n} "
            f"samples in {counts.numel()} distinct classes"
        )
    if n_neg == 0:
        raise ValueError(
            f"labels must contain a negative pair (two classes), got one class for all {n} samples"
        )
    m = min(n_pos, n_neg)
    if max_pairs is not None:
        m = min(m, max_pairs // 2)

    generator = torch.Generator().manual_seed(int(seed))
    zero = torch.zeros(1, dtype=torch.long)
    pos_start = torch.cat((zero, torch.cumsum(pos_per_row, 0)[:-1]))
    neg_start = torch.cat((zero, torch.cumsum(neg_per_row, 0)[:-1]))
    row_p, off_p = _decode_rows(_sample_distinct(n_pos, m, generator), pos_start)
    row_n, off_n = _decode_rows(_sample_distinct(n_neg, m, generator), neg_start)
    parts = []
    for a, b in ((row_p, row_p + 1 + off_p), (row_n, class_end[row_n] + off_n)):
        first, second = order[a], order[b]
        i, j = torch.minimum(first, second), torch.maximum(first, second)
        key = torch.argsort(i * n + j)
        parts.append((i[key], j[key]))
    i = torch.cat((parts[0][0], parts[1][0]))
    j = torch.cat((parts[0][1], parts[1][1]))
    same = torch.cat((torch.ones(m, dtype=torch.long), torch.zeros(m, dtype=torch.long)))
    return i, j, same


# --------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------


def _as_float_tensor(name: str, x: object) -> Tensor:
    a = to_numpy(name, x)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(a))
    t = check_embeddings(name, t)
    check_finite(**{name: t})
    return t.to(compute_dtype(t))


def _as_label_tensor(name: str, x: object, like_name: str, like: Tensor) -> Tensor:
    a = to_numpy(name, x)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be integer class labels, got dtype {a.dtype}")
    t = check_class_labels(name, torch.from_numpy(np.ascontiguousarray(a)), like_name, like)
    return t.long()


def _prepare_retrieval(
    embeddings: object,
    labels: object,
    distance: str,
    gallery: object,
    gallery_labels: object,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, str]:
    """Validated (queries, query labels, gallery or None, gallery labels, distance)."""
    metric = get_distance(distance)
    if (gallery is None) != (gallery_labels is None):
        missing = "gallery_labels" if gallery_labels is None else "gallery"
        raise ValueError(f"gallery and gallery_labels go together: {missing} is missing")
    queries = _as_float_tensor("embeddings", embeddings)
    query_labels = _as_label_tensor("labels", labels, "embeddings", queries)
    if gallery is None:
        return queries, query_labels, None, query_labels, metric.name
    items = _as_float_tensor("gallery", gallery)
    if items.shape[1] != queries.shape[1]:
        raise ValueError(
            f"gallery must have as many features as embeddings, got shapes "
            f"{tuple(items.shape)} and {tuple(queries.shape)}"
        )
    item_labels = _as_label_tensor("gallery_labels", gallery_labels, "gallery", items)
    dtype = torch.promote_types(queries.dtype, items.dtype)
    return queries.to(dtype), query_labels, items.to(dtype), item_labels, metric.name


def _relevant_counts(query_labels: Tensor, item_labels: Tensor, leave_one_out: bool) -> Tensor:
    """Number of relevant gallery items per query, from labels alone."""
    classes, counts = torch.unique(item_labels, return_counts=True)
    where = torch.searchsorted(classes, query_labels).clamp_max(classes.numel() - 1)
    found = classes[where] == query_labels
    r = torch.where(found, counts[where], 0)
    return r - 1 if leave_one_out else r


def _check_ks(ks: object, gallery_size: int, leave_one_out: bool) -> list[int]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence):
        raise TypeError(f"ks must be a sequence of positive ints, got {type(ks).__name__}")
    if len(ks) == 0:
        raise ValueError("ks must hold at least one k, got an empty sequence")
    values = [check_positive_int(f"ks[{i}]", k) for i, k in enumerate(ks)]
    if len(set(values)) != len(values):
        raise ValueError(f"ks must not repeat a value, got {list(ks)!r}")
    for i, k in enumerate(values):
        _check_k_fits(f"ks[{i}]", k, gallery_size, leave_one_out)
    return values


def _check_k_fits(name: str, k: int, gallery_size: int, leave_one_out: bool) -> None:
    if k > gallery_size:
        where = (
            f"each query has {gallery_size} other sample(s) (leave-one-out)"
            if leave_one_out
            else f"the gallery holds {gallery_size} item(s)"
        )
        raise ValueError(f"{name} must be at most the number of candidates: {where}, got {k}")


def _retrieval(
    queries: Tensor,
    query_labels: Tensor,
    gallery: Tensor | None,
    gallery_labels: Tensor,
    distance: str,
    ks: Sequence[int],
) -> dict[str, float]:
    """One ranking per query, reduced to P@1, R@k for each k and MAP@R."""
    leave_one_out = gallery is None
    items = queries if gallery is None else gallery
    n_items = items.shape[0]
    relevant = _relevant_counts(query_labels, gallery_labels, leave_one_out)
    valid = relevant > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        where = "another sample" if leave_one_out else "a gallery item"
        raise ValueError(
            f"labels must give some query a relevant item ({where} of its class), got "
            f"none among {queries.shape[0]} queries"
        )

    hits_at_1 = 0.0
    recall_hits = dict.fromkeys(ks, 0.0)
    map_sum = 0.0
    chunk = max(1, _CHUNK_ELEMENTS // n_items)
    for start in range(0, queries.shape[0], chunk):
        stop = min(start + chunk, queries.shape[0])
        keep = valid[start:stop]
        if not bool(keep.any()):
            continue
        rows = torch.arange(start, stop)[keep]
        d = distance_matrix(queries[rows], items, distance)  # type: ignore[arg-type]
        ranking = torch.sort(d, dim=1, stable=True).indices  # ties: lower index first
        if leave_one_out:  # drop each query itself from its own ranking
            ranking = ranking[ranking != rows[:, None]].view(rows.numel(), n_items - 1)
        rel = gallery_labels[ranking] == query_labels[rows, None]
        r = relevant[rows]
        hits_at_1 += float(rel[:, 0].sum())
        for k in ks:
            recall_hits[k] += float(rel[:, :k].any(dim=1).sum())
        # MAP@R: mean over the first R ranks of precision@i at each relevant rank i
        top = rel[:, : int(r.max())]
        ranks = torch.arange(1, top.shape[1] + 1, dtype=torch.float64)
        precision = top.cumsum(dim=1, dtype=torch.float64) / ranks
        within_r = ranks[None, :] <= r[:, None]
        ap = (precision * (top & within_r)).sum(dim=1) / r
        map_sum += float(ap.sum())

    result = {"precision_at_1": hits_at_1 / n_valid}
    for k in ks:
        result[f"recall_at_{k}"] = recall_hits[k] / n_valid
    result["map_at_r"] = map_sum / n_valid
    return result


def precision_at_1(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    distance: DistanceName = "euclidean",
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
) -> float:
    r"""Precision at 1: the fraction of queries whose nearest neighbour shares their class.

    .. math::
        \mathrm{P@1} = \frac{1}{|Q|} \sum_{q \in Q} \mathrm{rel}_q(1)

    where :math:`\mathrm{rel}_q(i) = 1` if the :math:`i`-th nearest gallery item has the
    label of query :math:`q`, and :math:`Q` are the queries with at least one relevant
    item (others are left out). Leave-one-out unless a gallery is given; ties in distance
    go to the lower gallery index. Equal to :func:`recall_at_k` with ``k=1``.

    Args:
        embeddings: ``(N, D)`` finite floating-point query embeddings.
        labels: ``(N,)`` integer class labels of the queries.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        gallery: optional ``(M, D)`` gallery embeddings; without it each query searches
            the other ``N - 1`` queries (leave-one-out).
        gallery_labels: ``(M,)`` integer class labels of the gallery (with ``gallery``).

    Returns:
        P@1 in ``[0, 1]``.

    Raises:
        ValueError: bad shapes, non-finite embeddings, an unknown ``distance``, or no
            query with a relevant item.

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.metrics import precision_at_1
        >>> emb = torch.tensor([[0.0], [0.1], [1.0], [1.3], [2.0], [9.0]])
        >>> labels = torch.tensor([0, 0, 1, 1, 0, 2])  # 9.0 is alone in class 2: left out
        >>> precision_at_1(emb, labels)  # 2.0 is nearest to 1.3, of another class
        0.8

    Reference:
        K. Musgrave, S. Belongie, S.-N. Lim. *A Metric Learning Reality Check.* ECCV 2020.
    """
    q, ql, g, gl, name = _prepare_retrieval(embeddings, labels, distance, gallery, gallery_labels)
    return _retrieval(q, ql, g, gl, name, ())["precision_at_1"]


def recall_at_k(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 1,
    distance: DistanceName = "euclidean",
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
) -> float:
    r"""Recall at k as in deep metric learning: a same-class item among the k nearest.

    .. math::
        \mathrm{R@}k = \frac{1}{|Q|} \sum_{q \in Q}
            \Big[ \textstyle\sum_{i \le k} \mathrm{rel}_q(i) \ge 1 \Big]

    over the queries :math:`Q` with at least one relevant item (others are left out).
    This is the definition of Song et al. (2016) used across metric learning, not the
    information-retrieval recall (relevant items found among the k nearest divided by
    all relevant items): one hit is enough. Leave-one-out unless a gallery is given;
    ties in distance go to the lower gallery index.

    Args:
        embeddings: ``(N, D)`` finite floating-point query embeddings.
        labels: ``(N,)`` integer class labels of the queries.
        k: how many nearest items to look at, a positive int no larger than the number
            of candidates per query (``N - 1`` leave-one-out, ``M`` with a gallery).
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        gallery: optional ``(M, D)`` gallery embeddings; without it each query searches
            the other ``N - 1`` queries (leave-one-out).
        gallery_labels: ``(M,)`` integer class labels of the gallery (with ``gallery``).

    Returns:
        R@k in ``[0, 1]``, non-decreasing in ``k``.

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.metrics import recall_at_k
        >>> emb = torch.tensor([[0.0], [0.1], [1.0], [1.3], [2.0], [9.0]])
        >>> labels = torch.tensor([0, 0, 1, 1, 0, 2])  # 9.0 is alone in class 2: left out
        >>> recall_at_k(emb, labels, k=2), recall_at_k(emb, labels, k=3)
        (0.8, 1.0)

    Reference:
        H. O. Song, Y. Xiang, S. Jegelka, S. Savarese. *Deep Metric Learning via Lifted
        Structured Feature Embedding.* CVPR 2016.
    """
    k = check_positive_int("k", k)
    q, ql, g, gl, name = _prepare_retrieval(embeddings, labels, distance, gallery, gallery_labels)
    n_candidates = q.shape[0] - 1 if g is None else g.shape[0]
    _check_k_fits("k", k, n_candidates, g is None)
    return _retrieval(q, ql, g, gl, name, (k,))[f"recall_at_{k}"]


def map_at_r(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    distance: DistanceName = "euclidean",
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
) -> float:
    r"""Mean average precision at R (MAP@R) of Musgrave, Belongie & Lim (2020).

    For a query with :math:`R` relevant gallery items (same label; the query itself
    excluded in leave-one-out mode), rank the gallery by distance and average the
    precision at each relevant rank within the first :math:`R`:

    .. math::
        \mathrm{MAP@R} = \frac{1}{R} \sum_{i=1}^{R} P(i)\, \mathrm{rel}(i), \qquad
        P(i) = \frac{1}{i} \sum_{j \le i} \mathrm{rel}(j),

    then average over the queries with :math:`R \ge 1` (others are left out). It is 1
    only when the :math:`R` nearest items are exactly the relevant ones, and never
    exceeds R-precision :math:`P(R)`. Ties in distance go to the lower gallery index.

    Args:
        embeddings: ``(N, D)`` finite floating-point query embeddings.
        labels: ``(N,)`` integer class labels of the queries.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        gallery: optional ``(M, D)`` gallery embeddings; without it each query searches
            the other ``N - 1`` queries (leave-one-out).
        gallery_labels: ``(M,)`` integer class labels of the gallery (with ``gallery``).

    Returns:
        MAP@R in ``[0, 1]``.

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.metrics import map_at_r
        >>> emb = torch.tensor([[0.0], [0.1], [1.0], [1.3], [2.0], [9.0]])
        >>> labels = torch.tensor([0, 0, 1, 1, 0, 2])  # 9.0 is alone in class 2: left out
        >>> map_at_r(emb, labels)  # per query: 1/2, 1/2, 1, 1, 0
        0.6

    Reference:
        K. Musgrave, S. Belongie, S.-N. Lim. *A Metric Learning Reality Check.* ECCV 2020.
    """
    q, ql, g, gl, name = _prepare_retrieval(embeddings, labels, distance, gallery, gallery_labels)
    return _retrieval(q, ql, g, gl, name, ())["map_at_r"]


def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    distance: DistanceName = "euclidean",
    ks: Sequence[int] = (1, 5, 10),
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
) -> dict[str, float]:
    r"""Precision@1, Recall@k for each ``k`` and MAP@R from a single ranking.

    Distances are computed once (in chunks of queries) and every metric is read off the
    same ranking, so this is cheaper than calling :func:`precision_at_1`,
    :func:`recall_at_k` and :func:`map_at_r` in turn and gives the same values.

    Keys, in this order: ``"precision_at_1"``, ``"recall_at_<k>"`` for each ``k`` in
    ``ks`` (``"recall_at_1"``, ``"recall_at_5"``, ...), ``"map_at_r"``.

    Args:
        embeddings: ``(N, D)`` finite floating-point query embeddings.
        labels: ``(N,)`` integer class labels of the queries.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        ks: distinct positive ints, each at most the number of candidates per query
            (``N - 1`` leave-one-out, ``M`` with a gallery); larger ``k`` is an error,
            not clamped.
        gallery: optional ``(M, D)`` gallery embeddings; without it each query searches
            the other ``N - 1`` queries (leave-one-out).
        gallery_labels: ``(M,)`` integer class labels of the gallery (with ``gallery``).

    Returns:
        A dict from the keys above to Python floats.

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.metrics import retrieval_metrics
        >>> emb = torch.tensor([[0.0], [0.1], [1.0], [1.3], [2.0], [9.0]])
        >>> labels = torch.tensor([0, 0, 1, 1, 0, 2])  # 9.0 is alone in class 2: left out
        >>> retrieval_metrics(emb, labels, ks=(1, 3))
        {'precision_at_1': 0.8, 'recall_at_1': 0.8, 'recall_at_3': 1.0, 'map_at_r': 0.6}

    Reference:
        K. Musgrave, S. Belongie, S.-N. Lim. *A Metric Learning Reality Check.* ECCV 2020;
        H. O. Song et al. *Deep Metric Learning via Lifted Structured Feature Embedding.*
        CVPR 2016.
    """
    q, ql, g, gl, name = _prepare_retrieval(embeddings, labels, distance, gallery, gallery_labels)
    n_candidates = q.shape[0] - 1 if g is None else g.shape[0]
    k_values = _check_ks(ks, n_candidates, g is None)
    return _retrieval(q, ql, g, gl, name, k_values)
