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

**Retrieval** (precision@1, recall@k, MAP@R) lives in
:mod:`contrastkit.evaluation.retrieval`; :func:`precision_at_1`, :func:`recall_at_k`,
:func:`map_at_r` and :func:`retrieval_metrics` are re-exported here.

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

import numpy as np
import torch
from sklearn.metrics import roc_auc_score as _sk_roc_auc_score  # type: ignore[import-untyped]
from sklearn.metrics import roc_curve as _sk_roc_curve
from torch import Tensor

from contrastkit._validation import (
    check_fraction,
    check_int,
    check_positive_int,
    check_real,
)
from contrastkit.evaluation._checks import ArrayLike, check_1d_array, check_pairs
from contrastkit.evaluation.retrieval import (
    map_at_r,
    precision_at_1,
    recall_at_k,
    retrieval_metrics,
)

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
# Retrieval: its own module, re-exported here
# --------------------------------------------------------------------------------------
