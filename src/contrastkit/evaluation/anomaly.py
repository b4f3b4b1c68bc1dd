r"""Anomaly scores from a trained model, and how well they find the anomalies.

An anomaly detector trained on normal data alone gives every sample a *score*; the
higher the score, the more anomalous the sample. Three scores:

* :func:`reconstruction_errors`: how badly an autoencoder rebuilds the sample (a model
  trained on normal data rebuilds normal data well);
* :func:`knn_scores`: the mean distance from the sample's embedding to its ``k``
  nearest embeddings of normal (reference) data;
* :func:`centroid_scores`: the distance from the sample's embedding to the nearest
  class centroid of the reference data.

:func:`anomaly_metrics` then checks the scores against known anomalies: the area under
the ROC curve and the average precision, with the anomalies as the positive class.

Conventions shared by every function here:

* **Higher score = more anomalous.** Anomaly labels: ``is_anomaly = 1`` (or ``True``)
  for an anomaly, ``0`` for a normal sample.
* **Scores for evaluation**: they are computed without gradient (the returned tensors
  do not require grad), in the inputs' dtype (float32 for half precision), on the
  inputs' device.
* **Memory**: :func:`knn_scores` compares ``chunk_size`` embeddings at a time with the
  reference, so it holds ``chunk_size * M`` distances at most, never ``N * M``;
  :func:`reconstruction_errors` runs the model on ``batch_size`` samples at a time.
* **Checks first**: bad input raises :class:`TypeError` or :class:`ValueError` naming
  the argument, before any computation.

Example:
    >>> import torch
    >>> from contrastkit.evaluation.anomaly import anomaly_metrics, knn_scores
    >>> train = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> test = torch.tensor([[0.5, 0.5], [0.0, 0.2], [5.0, 5.0]])
    >>> scores = knn_scores(train, test, k=2)
    >>> scores
    tensor([0.7071, 0.5000, 6.0300])
    >>> anomaly_metrics(scores, [0, 0, 1])
    {'roc_auc': 1.0, 'average_precision': 1.0, 'anomalies': 1, 'normal': 2}
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import (  # type: ignore[import-untyped]
    average_precision_score as _sk_average_precision_score,
)
from sklearn.metrics import roc_auc_score as _sk_roc_auc_score
from torch import Tensor, nn

from contrastkit._validation import (
    check_bool,
    check_choice,
    check_class_labels,
    check_embeddings,
    check_finite,
    check_in_range,
    check_positive_int,
    check_same_device,
    compute_dtype,
)
from contrastkit.distances import DistanceName, distance_matrix, get_distance
from contrastkit.distances import normalize as unit_rows
from contrastkit.evaluation._checks import ArrayLike, check_scores_and_labels
from contrastkit.functional import (
    RECONSTRUCTION_KINDS,
    ReconstructionKind,
    reconstruction_loss,
)

__all__ = [
    "anomaly_metrics",
    "centroid_scores",
    "knn_scores",
    "reconstruction_errors",
]


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def _check_reference_and_embeddings(reference: object, embeddings: object) -> tuple[Tensor, Tensor]:
    """Finite ``(M, D)`` and ``(N, D)`` embeddings on one device, in one compute dtype."""
    reference = check_embeddings("reference", reference)
    embeddings = check_embeddings("embeddings", embeddings)
    if reference.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"reference and embeddings must have the same number of features, got shapes "
            f"{tuple(reference.shape)} and {tuple(embeddings.shape)}"
        )
    check_same_device(reference=reference, embeddings=embeddings)
    check_finite(reference=reference, embeddings=embeddings)
    dtype = compute_dtype(reference, embeddings)
    return reference.to(dtype), embeddings.to(dtype)


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


def _check_inputs(inputs: object, kind: str) -> None:
    """A non-empty batch of finite samples that can be the target of ``kind``."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dtype == torch.bool or inputs.is_complex():
        raise TypeError(f"inputs must hold real numbers, got dtype {inputs.dtype}")
    if not inputs.is_floating_point() and kind != "cross_entropy":
        raise TypeError(
            f"inputs must be a floating-point tensor for kind={kind!r} (integer inputs are "
            f"class indices, for kind='cross_entropy' only), got dtype {inputs.dtype}"
        )
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs must be a batch (N, ...) of at least one sample, got shape "
            f"{tuple(inputs.shape)}"
        )
    check_finite(inputs=inputs)
    if inputs.is_floating_point() and kind != "mse":
        context = f" for kind={kind!r} (they are the targets of the reconstruction)"
        check_in_range("inputs", inputs, 0, 1, context=context)


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter or buffer (``fallback`` if it has none)."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return fallback


def reconstruction_errors(
    model: nn.Module,
    inputs: Tensor,
    *,
    kind: ReconstructionKind = "mse",
    batch_size: int = 1024,
) -> Tensor:
    r"""Per-sample reconstruction error of an autoencoder: the anomaly score.

    An autoencoder trained on normal data alone rebuilds normal samples well and
    anomalies badly. Sample :math:`x_i` with reconstruction
    :math:`\hat x_i = \mathrm{model.reconstruct}(x_i)` scores

    .. math::
        s_i = \frac{1}{|x_i|} \sum_{j} \ell(\hat x_{ij}, x_{ij}),

    the mean of the elementwise loss :math:`\ell` over the :math:`|x_i|` elements of
    the sample: :func:`contrastkit.functional.reconstruction_loss` with
    ``reduction="none"`` (``kind="mse"``: :math:`\ell = (\hat x - x)^2`).

    The model runs in evaluation mode (no dropout, batch-normalization running
    statistics, no denoising noise) without gradient, ``batch_size`` samples at a time,
    each batch moved to the device of the model's parameters. Afterwards every submodule
    gets back the training flag it had, so this can be called in the middle of
    training.

    Args:
        model: an autoencoder with a ``reconstruct(x)`` method, such as
            :class:`contrastkit.models.Autoencoder`.
        inputs: ``(N, ...)`` samples, a batch of at least one; each is both the model's
            input and the target of its reconstruction. Floating-point, in ``[0, 1]``
            for the kinds other than ``"mse"``; integer class indices are accepted for
            ``"cross_entropy"`` (the model then returns ``(N, C, ...)`` logits).
        kind: the elementwise loss: ``"mse"``, ``"bce"`` (reconstructions are
            probabilities), ``"bce_with_logits"`` (reconstructions are logits) or
            ``"cross_entropy"``, as in :func:`contrastkit.functional.reconstruction_loss`.
        batch_size: how many samples go through the model at once, a positive int.

    Shape:
        ``inputs``: :math:`(N, *)`; output: :math:`(N,)`, on the device of ``inputs``.

    Returns:
        The reconstruction error of each sample, without gradient, in the compute dtype
        of the reconstruction (float32 for half precision).

    Raises:
        TypeError: ``model`` is not a Module with a ``reconstruct`` method, ``inputs`` not
            a real tensor (or integer for a kind other than ``"cross_entropy"``), or
            ``batch_size`` not an int.
        ValueError: ``inputs`` has no sample, holds NaN or infinity or, for a kind
            other than ``"mse"``, values outside ``[0, 1]``; ``kind`` or ``batch_size`` is
            invalid; or a reconstruction does not fit its target (raised by
            :func:`contrastkit.functional.reconstruction_loss`).

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.anomaly import reconstruction_errors
        >>> class Halve(torch.nn.Module):  # a stand-in autoencoder: x -> x / 2
        ...     def reconstruct(self, x):
        ...         return x / 2
        >>> x = torch.tensor([[2.0, 2.0], [0.0, 4.0], [0.0, 0.0]])
        >>> reconstruction_errors(Halve(), x)  # mean of (x / 2 - x)² per sample
        tensor([1., 2., 0.])

    Reference:
        M. Sakurada, T. Yairi. *Anomaly Detection Using Autoencoders with Nonlinear
        Dimensionality Reduction.* MLSDA workshop 2014.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    reconstruct: Callable[[Tensor], Tensor] | None = getattr(model, "reconstruct", None)
    if not callable(reconstruct):
        raise TypeError(
            f"model must have a reconstruct(x) method (as contrastkit.models.Autoencoder "
            f"has), got {type(model).__name__} without one"
        )
    kind = check_choice("kind", kind, RECONSTRUCTION_KINDS)
    batch_size = check_positive_int("batch_size", batch_size)
    _check_inputs(inputs, kind)

    device = _model_device(model, inputs.device)
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        errors = []
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                batch = inputs[start : start + batch_size].to(device)
                reconstruction = reconstruct(batch)
                per_sample = reconstruction_loss(reconstruction, batch, kind=kind, reduction="none")
                errors.append(per_sample.to(inputs.device))
    finally:
        for module, training in flags:
            module.training = training
    return torch.cat(errors)


def knn_scores(
    reference: Tensor,
    embeddings: Tensor,
    *,
    k: int = 5,
    distance: DistanceName = "euclidean",
    exclude_self: bool = False,
    chunk_size: int = 4096,
) -> Tensor:
    r"""Mean distance to the ``k`` nearest reference embeddings: the k-NN anomaly score.

    The reference embeddings :math:`r_1, \dots, r_M` are those of normal (training)
    data. An embedding :math:`z` scores the mean of its ``k`` smallest distances to
    them:

    .. math::
        s(z) = \frac{1}{k} \sum_{j=1}^{k} d\big(z, r_{(j)}\big), \qquad
        d(z, r_{(1)}) \le d(z, r_{(2)}) \le \dots \le d(z, r_{(M)}).

    Ties do not matter: the ``k`` smallest distances are the same numbers whichever
    tied neighbour is taken.

    To score the reference set itself (each row against the others, as needed to
    calibrate a threshold on normal data), pass it as ``embeddings`` too with
    ``exclude_self=True``: row :math:`i` is then not compared with reference row
    :math:`i` (by index; a duplicate of it at another index still counts, at distance 0).

    Distances come from :func:`contrastkit.distances.distance_matrix`, ``chunk_size``
    rows of ``embeddings`` at a time, so memory stays proportional to
    ``chunk_size * M``. Its Euclidean distances use a matrix product and carry a small
    rounding error for nearly identical rows (see :mod:`contrastkit.distances`).

    Args:
        reference: ``(M, D)`` finite embeddings of normal data.
        embeddings: ``(N, D)`` finite embeddings to score; with ``exclude_self=True``
            they must be the reference rows themselves (same shape and values).
        k: how many nearest reference embeddings to average, a positive int at most
            ``M`` (``M - 1`` with ``exclude_self=True``). ``k=1`` gives the distance to
            the nearest neighbour.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        exclude_self: leave out reference row ``i`` when scoring embedding row ``i``.
        chunk_size: how many embeddings are compared with the reference at once.

    Shape:
        ``reference``: :math:`(M, D)`; ``embeddings``: :math:`(N, D)`; output:
        :math:`(N,)`.

    Returns:
        The score of each embedding, without gradient, in the compute dtype of the inputs
        (float32 for half precision), on their device.

    Raises:
        TypeError: non-tensor or non-floating-point embeddings, or a non-int ``k`` or
            ``chunk_size`` or non-bool ``exclude_self``.
        ValueError: bad shapes, different feature sizes or devices, NaN or infinity,
            ``k`` out of range, an unknown ``distance``, or ``exclude_self=True`` with
            ``embeddings`` that are not the reference rows.

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.anomaly import knn_scores
        >>> reference = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
        >>> knn_scores(reference, torch.tensor([[0.0], [7.0]]), k=2)  # (0+1)/2, (3+5)/2
        tensor([0.5000, 4.0000])
        >>> knn_scores(reference, reference, k=1, exclude_self=True)
        tensor([1., 1., 1., 8.])

    Reference:
        F. Angiulli, C. Pizzuti. *Fast Outlier Detection in High Dimensional Spaces.*
        PKDD 2002; L. Bergman, N. Cohen, Y. Hoshen. *Deep Nearest Neighbor Anomaly
        Detection.* arXiv:2002.10445, 2020.
    """
    metric = get_distance(distance)
    k = check_positive_int("k", k)
    exclude_self = check_bool("exclude_self", exclude_self)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    reference, embeddings = _check_reference_and_embeddings(reference, embeddings)
    m, n = reference.shape[0], embeddings.shape[0]
    if exclude_self:
        if embeddings.shape != reference.shape or not torch.equal(embeddings, reference):
            raise ValueError(
                f"exclude_self=True scores the reference set against itself: embeddings must "
                f"be the reference rows, got shapes {tuple(embeddings.shape)} and "
                f"{tuple(reference.shape)}"
                + ("" if embeddings.shape != reference.shape else " with different values")
            )
        if k > m - 1:
            raise ValueError(
                f"k must be at most the number of other reference rows ({m - 1} with "
                f"exclude_self=True), got {k}"
            )
    elif k > m:
        raise ValueError(f"k must be at most the number of reference rows ({m}), got {k}")

    scores = torch.empty(n, dtype=reference.dtype, device=reference.device)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            d = distance_matrix(embeddings[start:stop], reference, metric.name)  # type: ignore[arg-type]
            if exclude_self:
                rows = torch.arange(stop - start, device=d.device)
                d[rows, rows + start] = torch.inf
            nearest = torch.topk(d, k, dim=1, largest=False, sorted=False).values
            scores[start:stop] = nearest.mean(dim=1)
    return scores


def centroid_scores(
    reference: Tensor,
    reference_labels: Tensor,
    embeddings: Tensor,
    *,
    distance: DistanceName = "euclidean",
) -> Tensor:
    r"""Distance to the nearest class centroid of the reference embeddings.

    The reference embeddings of normal data come with class labels; class :math:`c`,
    with reference rows :math:`R_c`, has the centroid (class mean)

    .. math::
        \mu_c = \frac{1}{|R_c|} \sum_{i \in R_c} r_i, \qquad
        s(z) = \min_c d(z, \mu_c).

    With ``distance="cosine"`` the centroids are means of the *unit-normalized*
    reference rows, :math:`\mu_c = \frac{1}{|R_c|} \sum_{i \in R_c} r_i / \lVert r_i
    \rVert`, so that every reference row pulls its class direction equally whatever its
    norm (a zero row counts as zero). A centroid of zero length (rows that cancel) is at
    cosine distance 1 from everything.

    Relations:
        With ``distance="squared_euclidean"`` this is the Mahalanobis score of Lee et al.
        (2018) with the identity as covariance; with a single class it is the distance
        to the mean of the normal data.

    Args:
        reference: ``(M, D)`` finite embeddings of normal data.
        reference_labels: ``(M,)`` integer class labels of ``reference``.
        embeddings: ``(N, D)`` finite embeddings to score.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.

    Shape:
        ``reference``: :math:`(M, D)`; ``reference_labels``: :math:`(M,)`;
        ``embeddings``: :math:`(N, D)`; output: :math:`(N,)`.

    Returns:
        The score of each embedding, without gradient, in the compute dtype of the inputs
        (float32 for half precision), on their device.

    Raises:
        TypeError: non-tensor or non-floating-point embeddings, or labels that are not
            integers.
        ValueError: bad shapes, different feature sizes or devices, NaN or infinity, or an
            unknown ``distance``.

    Example:
        >>> import torch
        >>> from contrastkit.evaluation.anomaly import centroid_scores
        >>> reference = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0]])
        >>> labels = torch.tensor([0, 0, 1, 1])  # centroids (1, 0) and (10, 1)
        >>> centroid_scores(reference, labels, torch.tensor([[1.0, 3.0], [10.0, 1.0]]))
        tensor([3., 0.])

    Reference:
        K. Lee, K. Lee, H. Lee, J. Shin. *A Simple Unified Framework for Detecting
        Out-of-Distribution Samples and Adversarial Attacks.* NeurIPS 2018; J. Snell,
        K. Swersky, R. Zemel. *Prototypical Networks for Few-shot Learning.* NeurIPS 2017
        (class means as prototypes).
    """
    metric = get_distance(distance)
    reference, embeddings = _check_reference_and_embeddings(reference, embeddings)
    labels = check_class_labels("reference_labels", reference_labels, "reference", reference)

    with torch.no_grad():
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        rows = unit_rows(reference) if metric.name == "cosine" else reference
        sums = torch.zeros(
            counts.numel(), rows.shape[1], dtype=rows.dtype, device=rows.device
        ).index_add_(0, inverse, rows)
        centroids = sums / counts.to(rows.dtype)[:, None]
        d = distance_matrix(embeddings, centroids, metric.name)  # type: ignore[arg-type]
        return d.min(dim=1).values


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def anomaly_metrics(scores: ArrayLike, is_anomaly: ArrayLike) -> dict[str, float]:
    r"""How well anomaly scores rank the anomalies first: ROC-AUC and average precision.

    The anomalies are the positive class and a higher score means more anomalous. With
    :math:`A` anomalies and :math:`N` normal samples, the ROC-AUC is the probability
    that a random anomaly outscores a random normal sample, ties counting one half,

    .. math::
        \mathrm{AUC} = \frac{1}{AN} \sum_{a} \sum_{n}
            \left( [s_a > s_n] + \tfrac12 [s_a = s_n] \right),

    and the average precision summarizes the precision-recall curve over the thresholds
    :math:`t_1 > t_2 > \dots` (one per distinct score; "anomaly" iff :math:`s \ge t`),

    .. math::
        \mathrm{AP} = \sum_{j} (R_j - R_{j-1})\, P_j,

    with :math:`P_j` and :math:`R_j` the precision and recall at :math:`t_j` and
    :math:`R_0 = 0`, no interpolation. Chance level is 0.5 for the AUC and the share of
    anomalies :math:`A / (A + N)` for the AP, which makes the AP the stricter measure when
    anomalies are rare. Computed by :func:`sklearn.metrics.roc_auc_score` and
    :func:`sklearn.metrics.average_precision_score`.

    Args:
        scores: ``(n,)`` finite anomaly scores, higher = more anomalous (a tensor on any
            device, a numpy array or a list).
        is_anomaly: ``(n,)`` labels, 1 (or ``True``) = anomaly, 0 = normal; both must
            occur.

    Returns:
        A dict with, in this order, ``"roc_auc"`` and ``"average_precision"`` (floats in
        ``[0, 1]``) and the counts ``"anomalies"`` and ``"normal"`` (ints).

    Raises:
        TypeError: inputs that are not numeric array-likes, or boolean scores.
        ValueError: inputs of different lengths, empty or non-finite, labels other than
            0/1, or only one class present.

    Example:
        >>> from contrastkit.evaluation.anomaly import anomaly_metrics
        >>> anomaly_metrics([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])  # AP = ½·1 + ½·⅔
        {'roc_auc': 0.75, 'average_precision': 0.8333333333333333, 'anomalies': 2, 'normal': 2}

    Reference:
        T. Fawcett. *An introduction to ROC analysis.* Pattern Recognition Letters 27(8),
        2006; J. Davis, M. Goadrich. *The Relationship Between Precision-Recall and ROC
        Curves.* ICML 2006.
    """
    s, y = check_scores_and_labels(scores, is_anomaly, both=True)
    target = y.astype(np.int64)
    n_anomalies = int(y.sum())
    return {
        "roc_auc": float(_sk_roc_auc_score(target, s)),
        "average_precision": float(_sk_average_precision_score(target, s)),
        "anomalies": n_anomalies,
        "normal": int(y.size - n_anomalies),
    }
