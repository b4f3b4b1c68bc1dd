"""Contrastive losses as functions of tensors, exact to their papers.

Conventions shared by every function here:

* **Pair labels**: ``y = 1`` means *similar*, ``y = 0`` *dissimilar*. Bool, integer
  0/1 and float labels in ``[0, 1]`` (soft labels) are accepted; anything else is an
  error. **Class labels** are integer tensors.
* **Reduction**: ``"mean"`` (default), ``"sum"`` or ``"none"``; ``"none"`` returns one
  value per pair, triplet or anchor.
* **Checks first**: bad input raises :class:`TypeError` or :class:`ValueError` naming
  the argument, before any computation. Numbers may be Python or numpy numbers, never
  bools (see :mod:`contrastkit._validation`).
* **NaN and Inf**: the losses refuse non-finite embeddings with a
  :class:`ValueError` instead of returning a NaN loss (this costs one pass over the
  inputs, small next to the loss itself, and a read back to the host).
* **Value checks can be turned off**: :func:`contrastkit.set_validation` ``(False)``, or
  ``with contrastkit.validation(False):``, skips the checks that read tensor values
  (the NaN/Inf scan, the range of labels, scores, targets and of a temperature
  tensor); types, shapes, dtypes, devices and hyper-parameters are still checked. With
  them off every loss here compiles into one graph,
  ``torch.compile(loss, fullgraph=True)``, the tiled path (below) included: while
  compiling, the tiled kernels build their gradient in ``backward`` instead of checking
  on the host whether the one built in the forward pass applies.
* **Large finite inputs** never give a NaN: distances and norms are computed on rows
  divided by a power of two near their largest magnitude, so a distance is finite
  whenever it is representable (rows of ``1e20`` in float32, whose squares overflow,
  are still ``1.4e20`` apart, and their cosine is still their cosine). A loss that
  exceeds the largest float is ``inf`` (for example ``½ d²`` of a similar pair ``1e20``
  apart in float32), never NaN, and the gradients never NaN either (``±inf`` where the
  true gradient exceeds the largest float). Three cases are refused instead, with a
  :class:`ValueError` (value checks, see above): ``distance="squared_euclidean"`` with
  inputs beyond ``sqrt(max / (4 D))`` (about ``4e18`` for ``D = 5`` in float32), whose
  squared distances themselves overflow, and the Euclidean kinds on the tiled path with
  inputs beyond that bound divided by ``N``; and InfoNCE and SupCon with
  ``normalize=False`` (dot products, not rescaled) with inputs beyond
  ``sqrt(max · τ / (4 D))``, whose logits could overflow.
* **Precision**: float32 and float64 are computed in their own dtype; float16 and
  bfloat16 inputs are computed, and the loss returned, in float32. Gradients flow back
  to the inputs in their own dtype.
* **Gradients** are finite everywhere, including at zero distance and for zero vectors.

**Large batches**: the losses over all pairs of a batch (:func:`info_nce`,
:func:`nt_xent`, :func:`supcon`, :func:`all_pairs_contrastive_loss`,
:func:`batch_all_triplet_loss`, :func:`batch_hard_triplet_loss`) never build the
``N × N`` matrix once it would exceed ``2**22`` entries (about 2,048 rows against
2,048): they walk over tiles of rows instead, with the same value and gradient in
``O(N·D)`` memory plus one tile. ``chunk_size=k`` forces tiles of ``k`` rows at any
size; the simple implementation below each is the reference the tiled one is tested
against.

**Across processes, duplicates and galleries**: the same six losses take

* ``gather=True`` (and ``group``): negatives from every process of a
  :mod:`torch.distributed` group. This process's rows are the anchors and every
  process's rows, gathered with gradient (:func:`contrastkit.distributed.gather`), the
  candidates; positives are found through this process's offset, and every denominator
  (anchors, positives, pairs, triplets) is summed over processes. The value returned on
  every process is the loss of the whole batch (the processes' rows concatenated in
  rank order), and under :class:`~torch.nn.parallel.DistributedDataParallel` the
  parameter gradients are those of one process on the whole batch, for any numbers of
  rows per process (a process may hold none). ``reduction="none"`` returns this
  process's terms. At world size 1 it is the one-process loss; with no process group
  initialised it raises
  :class:`RuntimeError`. It takes the tiled path as one process does (per process
  ``O(B·N)`` compute and ``O(N·D)`` memory).
* ``ids``: optional sample ids, one per row (per pair for InfoNCE, per example for
  NT-Xent): a row with its anchor's id (a duplicate, or another view of one sample) is
  neither a positive nor a negative of it (its own positive excepted, for InfoNCE and
  NT-Xent).
* ``candidates`` (the labelled losses, with ``candidate_labels`` and, with ``ids``,
  ``candidate_ids``): the anchors are compared with these rows instead of with the batch
  itself (a gallery, a memory bank): every (anchor, candidate) pair counts; when the
  candidates hold the anchors themselves, ``ids`` keep each from being its own positive.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.nn.functional import cross_entropy

from contrastkit import _candidates, _tiled, distributed
from contrastkit._candidates import Candidates, excluded, finish
from contrastkit._validation import (
    Reduction,
    check_bool,
    check_choice,
    check_chunk_size,
    check_class_labels,
    check_embeddings,
    check_embeddings_and_labels,
    check_finite,
    check_magnitude,
    check_margin,
    check_negatives,
    check_pair_labels,
    check_paired_embeddings,
    check_reconstruction_inputs,
    check_reduction,
    check_same_device,
    check_score,
    check_temperature,
    compute_dtype,
    is_validation_enabled,
)
from contrastkit.distances import (
    SIMILARITIES,
    DistanceName,
    Metric,
    get_distance,
    matrix_euclidean_and_square,
    paired_euclidean_and_square,
)
from contrastkit.distances import normalize as unit_rows
from contrastkit.distributed import ProcessGroup
from contrastkit.mining import label_masks  # `normalize` is an argument name

ReconstructionKind = Literal["mse", "bce", "bce_with_logits", "cross_entropy"]
MeanOver = Literal["all", "nonzero"]
MEAN_OVER: tuple[MeanOver, ...] = ("all", "nonzero")

__all__ = [
    "MeanOver",
    "ReconstructionKind",
    "Reduction",
    "all_pairs_contrastive_loss",
    "batch_all_triplet_loss",
    "batch_hard_triplet_loss",
    "contrastive_loss",
    "cosine_similarity_loss",
    "info_nce",
    "nt_xent",
    "reconstruction_loss",
    "supcon",
    "triplet_loss",
]


def _reduce(per_item: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_item.mean()
    if reduction == "sum":
        return per_item.sum()
    return per_item


def _check_squared_magnitude(distance: str, **tensors: Tensor) -> None:
    """With the squared Euclidean distance, no squared distance may overflow.

    The Euclidean distance of rows up to ``sqrt(max / (4 D))`` is representable (it is
    computed on scaled rows); its square is beyond the largest float for rows of about
    ``1e19`` in float32, and a difference of two such infinities would be NaN.
    """
    if distance != "squared_euclidean":
        return
    first = next(iter(tensors.values()))
    dtype = compute_dtype(*tensors.values())
    limit = math.sqrt(torch.finfo(dtype).max / (4 * first.shape[-1]))
    for name, t in tensors.items():
        why = (
            f"with distance='squared_euclidean' ({t.shape[-1]} features in {dtype}: the "
            "squared distances would overflow; use distance='euclidean' or a smaller scale)"
        )
        check_magnitude(name, t, limit, why=why)


def _check_dot_magnitude(temperature: float | Tensor, **tensors: Tensor) -> None:
    """Without normalization the logits are dot products over ``τ``: none may overflow.

    A logit is at most ``D · max|a| · max|b| / τ`` in magnitude; log-sum-exp takes
    differences of two logits, and the loss adds one more, so each input is held to
    ``sqrt(max · τ / (4 D))``. A value check: skipped while validation is off.
    """
    if not is_validation_enabled():
        return
    first = next(iter(tensors.values()))
    dtype = compute_dtype(*tensors.values())
    tau = float(temperature.detach().min()) if isinstance(temperature, Tensor) else temperature
    limit = math.sqrt(torch.finfo(dtype).max * tau / (4 * first.shape[-1]))
    for name, t in tensors.items():
        why = (
            f"with normalize=False ({t.shape[-1]} features in {dtype} at temperature "
            f"{tau:.3g}: the dot products would overflow; normalize, or use a smaller scale)"
        )
        check_magnitude(name, t, limit, why=why)


def _check_tiled_magnitude(distance: str, n: int, **tensors: Tensor) -> None:
    """The Euclidean tile kernels take rows whose squared norms cannot overflow.

    ``n``: the rows the kernels compare (anchors and candidates together).
    """
    if distance in ("euclidean", "squared_euclidean"):
        first = next(iter(tensors.values()))
        d, dtype = first.shape[1], first.dtype
        why = (
            f"on the tiled path with distance={distance!r} ({n} rows of {d} features in "
            f"{dtype}: their squared norms would overflow; use a smaller scale)"
        )
        limit = _tiled.largest_safe_value(n, d, dtype)
        for name, t in tensors.items():
            check_magnitude(name, t, limit, why=why)


def contrastive_loss(
    x1: Tensor,
    x2: Tensor,
    y: Tensor,
    *,
    margin: float = 1.0,
    distance: DistanceName = "euclidean",
    reduction: Reduction = "mean",
    caffe_legacy: bool = False,
) -> Tensor:
    r"""Pairwise contrastive loss of Hadsell, Chopra & LeCun (2006).

    Pulls similar pairs together and pushes dissimilar pairs at least ``margin`` apart.
    Per pair, with :math:`d = d(x_1, x_2)`:

    .. math::
        \ell = \tfrac12 \left[ y\, d^2 + (1 - y) \max(m - d, 0)^2 \right]

    so that ``reduction="mean"`` is exactly Caffe's
    :math:`L = \frac{1}{2N} \sum_n \left[ y_n d_n^2 + (1 - y_n) \max(m - d_n, 0)^2 \right]`.

    With ``caffe_legacy=True`` the dissimilar term is Caffe's ``legacy_version``
    :math:`\max(m - d^2, 0)` (margin on the squared distance, not squared again).

    Args:
        x1: embeddings of the first elements of the pairs.
        x2: embeddings of the second elements of the pairs.
        y: pair labels, 1 = similar, 0 = dissimilar (bool, integer 0/1, or float in
            ``[0, 1]``).
        margin: :math:`m \ge 0`, the distance beyond which dissimilar pairs cost nothing.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        reduction: ``"mean"`` (sum over pairs divided by N), ``"sum"`` or ``"none"``.
        caffe_legacy: use Caffe's legacy dissimilar term :math:`\max(m - d^2, 0)`.

    Shape:
        ``x1``, ``x2``: :math:`(N, D)`; ``y``: :math:`(N,)`; output: scalar, or
        :math:`(N,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from contrastkit.functional import contrastive_loss
        >>> x1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
        >>> x2 = torch.tensor([[0.6, 0.8], [0.3, 0.4]])  # distances 1.0 and 0.5
        >>> y = torch.tensor([1, 0])  # similar, dissimilar
        >>> contrastive_loss(x1, x2, y, margin=1.0, reduction="none")
        tensor([0.5000, 0.1250])

    Relations:
        :func:`torch.nn.functional.cosine_embedding_loss` is a different loss (cosine,
        labels ±1, no square). sentence-transformers' ``ContrastiveLoss`` is this loss
        with ``distance="cosine", margin=0.5``.

    Reference:
        R. Hadsell, S. Chopra, Y. LeCun. *Dimensionality Reduction by Learning an
        Invariant Mapping.* CVPR 2006. Caffe ``ContrastiveLossLayer``.
    """
    margin = check_margin(margin)
    metric = get_distance(distance)
    reduction = check_reduction(reduction)
    caffe_legacy = check_bool("caffe_legacy", caffe_legacy)
    check_paired_embeddings(x1=x1, x2=x2)
    check_same_device(x1=x1, x2=x2)
    labels = check_pair_labels("y", y, "x1", x1)
    check_finite(x1=x1, x2=x2)
    _check_squared_magnitude(metric.name, x1=x1, x2=x2)

    dtype = compute_dtype(x1, x2)
    d, d_squared = _distance_and_square(metric, x1.to(dtype), x2.to(dtype), paired=True)
    per_pair = _contrastive_terms(d, d_squared, labels.to(dtype), margin, caffe_legacy)
    return _reduce(per_pair, reduction)


def _distance_and_square(
    metric: Metric, a: Tensor, b: Tensor, *, paired: bool
) -> tuple[Tensor, Tensor]:
    """``d`` and ``d²``; for the Euclidean distance ``d²`` comes without a sqrt round trip.

    Neither overflows before the result: ``d²`` is ``inf`` only where it exceeds the
    largest float (see :func:`contrastkit.distances.paired_euclidean_and_square`).
    """
    if metric.name == "euclidean":
        if paired:
            return paired_euclidean_and_square(a, b)
        return matrix_euclidean_and_square(a, b)
    d = metric.paired(a, b) if paired else metric.matrix(a, b)
    return d, d * d


def _contrastive_terms(
    d: Tensor, d_squared: Tensor, y: Tensor, margin: float, caffe_legacy: bool
) -> Tensor:
    """½ [y d² + (1 − y) max(m − d, 0)²], or Caffe's legacy ½ [y d² + (1 − y) max(m − d², 0)].

    A pair of weight ``y = 0`` contributes exactly 0 from ``d²`` even where ``d²``
    overflowed to ``inf`` (not ``0 · inf = NaN``); the dissimilar term is at most ``m²``.
    """
    if caffe_legacy:
        dissimilar = (margin - d_squared).clamp_min(0.0)
    else:
        dissimilar = (margin - d).clamp_min(0.0).pow(2)
    similar = torch.where(y > 0, y * d_squared, 0.0)
    return 0.5 * (similar + (1.0 - y) * dissimilar)


def all_pairs_contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 1.0,
    distance: DistanceName = "euclidean",
    reduction: Reduction = "mean",
    caffe_legacy: bool = False,
    chunk_size: int | None = None,
    ids: Tensor | None = None,
    candidates: Tensor | None = None,
    candidate_labels: Tensor | None = None,
    candidate_ids: Tensor | None = None,
    gather: bool = False,
    group: ProcessGroup = None,
) -> Tensor:
    r"""The contrastive loss over every pair of a labelled batch, from its distance matrix.

    Equal to ``contrastive_loss(emb[i], emb[j], y)`` with ``i, j, y = all_pairs(emb,
    labels)`` (each unordered pair once, ``y = 1`` for the same class), without indexing
    the ``N (N - 1) / 2`` pairs out of the batch:

    .. math::
        L = \frac{1}{2P} \sum_{i < j} \left[ y_{ij} d_{ij}^2
        + (1 - y_{ij}) \max(m - d_{ij}, 0)^2 \right], \qquad P = \frac{N (N - 1)}{2}

    A batch of one sample has no pair: the loss is 0, still connected to the graph.

    Args:
        embeddings: one row per sample.
        labels: integer class labels.
        margin: :math:`m \ge 0`.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        reduction: ``"mean"`` over the pairs, ``"sum"``, or ``"none"`` (one value per pair,
            in the order of :func:`contrastkit.mining.all_pairs`).
        caffe_legacy: Caffe's legacy dissimilar term, as in :func:`contrastive_loss`.
        chunk_size: rows per tile of the memory-efficient path; ``None`` takes it, with
            tiles of about ``2**23`` entries, once the batch's matrix would exceed
            ``2**22`` entries (see the module notes).
            The tiled path takes the Euclidean, squared Euclidean and cosine distances
            with ``reduction`` "mean" or "sum" (``"none"`` returns the :math:`N^2 / 2`
            values themselves, so it always builds them).
        ids: sample ids :math:`(N,)` (see the module notes): a row with its anchor's id
            is neither a positive nor a negative.
        candidates: rows :math:`(M, D)` to compare the anchors with, instead of the batch
            itself (a gallery, a memory bank; see the module notes).
        candidate_labels: the candidates' labels :math:`(M,)`, with ``candidates``.
        candidate_ids: the candidates' sample ids :math:`(M,)`, with ``candidates`` and
            ``ids``.
        gather: take the candidates from every process of the process group (see the
            module notes): every process returns the loss of the whole batch.
        group: the :mod:`torch.distributed` process group of ``gather`` (``None``: the
            default one).

    Shape:
        ``embeddings``: :math:`(N, D)`; ``labels``: :math:`(N,)`; output: scalar, or
        :math:`(N (N - 1) / 2,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0.0], [0.5], [0.2]])
        >>> all_pairs_contrastive_loss(emb, torch.tensor([0, 0, 1]), reduction="none")
        tensor([0.1250, 0.3200, 0.2450])

    Reference:
        R. Hadsell, S. Chopra, Y. LeCun. *Dimensionality Reduction by Learning an
        Invariant Mapping.* CVPR 2006.
    """
    margin = check_margin(margin)
    metric = get_distance(distance)
    reduction = check_reduction(reduction)
    caffe_legacy = check_bool("caffe_legacy", caffe_legacy)
    chunk_size = check_chunk_size(chunk_size)
    z, labels = check_embeddings_and_labels(embeddings, labels, allow_empty=gather is True)
    _check_squared_magnitude(metric.name, embeddings=z)
    n = z.shape[0]
    tileable = reduction != "none" and metric.name in _tiled.TILED_DISTANCES
    if chunk_size is not None and not tileable:
        raise ValueError(
            "chunk_size needs distance euclidean, squared_euclidean or cosine and reduction "
            f"'mean' or 'sum', got distance={metric.name!r}, reduction={reduction!r}"
        )
    c = _candidates.prepare(
        z,
        labels,
        ids=ids,
        candidates=candidates,
        candidate_labels=candidate_labels,
        candidate_ids=candidate_ids,
        gather=gather,
        group=group,
    )
    if c is not None:
        return _all_pairs_candidates(
            z, labels, ids, c, metric, margin, caffe_legacy, reduction, chunk_size
        )
    if tileable and _tiled.use_tiles(n, n, chunk_size):
        _check_tiled_magnitude(metric.name, n, embeddings=z)
        total = _tiled.all_pairs_contrastive_sum(
            z,
            labels,
            distance=metric.name,
            margin=margin,
            caffe_legacy=caffe_legacy,
            rows=_tiled.tile_rows(n, chunk_size),
        )
        return total / max(n * (n - 1) // 2, 1) if reduction == "mean" else total

    d, d_squared = _distance_and_square(metric, z, z, paired=False)
    same = (labels[:, None] == labels[None, :]).to(z.dtype)
    per_pair = _contrastive_terms(d, d_squared, same, margin, caffe_legacy)
    if reduction == "none":
        i, j = torch.triu_indices(n, n, offset=1, device=z.device)
        return per_pair[i, j]
    upper = torch.ones(n, n, dtype=torch.bool, device=z.device).triu(diagonal=1)
    total = torch.where(upper, per_pair, 0.0).sum()
    return total / max(n * (n - 1) // 2, 1) if reduction == "mean" else total


def batch_all_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float,
    distance: DistanceName = "euclidean",
    reduction: Reduction = "mean",
    mean_over: MeanOver = "all",
    chunk_size: int | None = None,
    ids: Tensor | None = None,
    candidates: Tensor | None = None,
    candidate_labels: Tensor | None = None,
    candidate_ids: Tensor | None = None,
    gather: bool = False,
    group: ProcessGroup = None,
) -> Tensor:
    r"""The triplet loss over every valid triplet of a labelled batch, without listing them.

    .. math::
        L = \frac{1}{|T|} \sum_{(a, p, n) \in T} \max(d_{ap} - d_{an} + m, 0)

    over the valid triplets :math:`T` (``labels[a] == labels[p]``, ``a != p``,
    ``labels[n] != labels[a]``).

    Equal to ``triplet_loss(emb[a], emb[p], emb[n], margin=m)`` over
    ``a, p, n = batch_all_triplets(emb, labels)``, but in :math:`O(N^2 \log N)` time and
    :math:`O(N^2)` memory instead of :math:`O(N^3)`: for each anchor the negative
    distances are sorted once, and for each positive the hinge
    :math:`\sum_n \max(d_{ap} - d_{an} + m, 0) = k\,(d_{ap} + m) - \sum_{\text{k nearest}} d_{an}`
    comes from a binary search (``k`` negatives closer than :math:`d_{ap} + m`) and a prefix
    sum, accumulated in float64.

    ``mean_over="all"`` averages over every valid triplet (Hermans et al.'s batch-all,
    "BA"); ``mean_over="nonzero"`` over the triplets with a positive loss ("BA≠0"). A
    batch without a valid triplet (one class, or only singletons) gives 0, connected to
    the graph.

    Args:
        embeddings: one row per sample.
        labels: integer class labels.
        margin: :math:`m \ge 0`.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        reduction: ``"mean"`` (see ``mean_over``), ``"sum"`` over triplets, or ``"none"``:
            one value per anchor, the sum over its triplets.
        mean_over: ``"all"`` or ``"nonzero"``.
        chunk_size: rows per tile of the memory-efficient path; ``None`` takes it, with
            tiles of about ``2**20`` entries, once the batch's matrix would exceed
            ``2**22`` entries (see the module notes).
            The tiled path takes the Euclidean, squared Euclidean and cosine distances.
        ids: sample ids :math:`(N,)` (see the module notes): a row with its anchor's id
            is neither a positive nor a negative.
        candidates: rows :math:`(M, D)` to compare the anchors with, instead of the batch
            itself (a gallery, a memory bank; see the module notes).
        candidate_labels: the candidates' labels :math:`(M,)`, with ``candidates``.
        candidate_ids: the candidates' sample ids :math:`(M,)`, with ``candidates`` and
            ``ids``.
        gather: take the candidates from every process of the process group (see the
            module notes): every process returns the loss of the whole batch.
        group: the :mod:`torch.distributed` process group of ``gather`` (``None``: the
            default one).

    Shape:
        ``embeddings``: :math:`(N, D)`; ``labels``: :math:`(N,)`; output: scalar, or
        :math:`(N,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> batch_all_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), margin=1.0)
        tensor(0.6875)

    Reference:
        A. Hermans, L. Beyer, B. Leibe. *In Defense of the Triplet Loss for Person
        Re-Identification.* arXiv:1703.07737, 2017.
    """
    margin = check_margin(margin)
    metric = get_distance(distance)
    reduction = check_reduction(reduction)
    mean_over = check_choice("mean_over", mean_over, MEAN_OVER)
    chunk_size = check_chunk_size(chunk_size)
    z, labels = check_embeddings_and_labels(embeddings, labels, allow_empty=gather is True)
    _check_squared_magnitude(metric.name, embeddings=z)
    n = z.shape[0]
    tileable = metric.name in _tiled.TILED_DISTANCES
    if chunk_size is not None and not tileable:
        raise ValueError(
            f"chunk_size needs distance euclidean, squared_euclidean or cosine, got {metric.name!r}"
        )
    c = _candidates.prepare(
        z,
        labels,
        ids=ids,
        candidates=candidates,
        candidate_labels=candidate_labels,
        candidate_ids=candidate_ids,
        gather=gather,
        group=group,
    )
    if c is not None:
        return _batch_all_candidates(
            z, labels, ids, c, metric, margin, reduction, mean_over, chunk_size
        )
    if tileable and _tiled.use_tiles(n, n, chunk_size):
        _check_tiled_magnitude(metric.name, n, embeddings=z)
        per_anchor, count_all, count_nonzero = _tiled.batch_all_triplet_sums(
            z,
            labels,
            distance=metric.name,
            margin=margin,
            rows=_tiled.tile_rows(n, chunk_size, share=8),
            eager=reduction != "none",
        )
        if reduction == "none":
            return per_anchor
        total = per_anchor.sum()
        if reduction == "sum":
            return total
        return total / (count_all if mean_over == "all" else count_nonzero).clamp_min(1)

    positive, negative = label_masks(labels)
    per_anchor, count_all, count_nonzero = _batch_all_sums(
        metric.matrix(z, z), positive, negative, margin
    )
    if reduction == "none":
        return per_anchor
    total = per_anchor.sum()
    if reduction == "sum":
        return total
    return total / (count_all if mean_over == "all" else count_nonzero).clamp_min(1)


def _batch_all_sums(
    d: Tensor, positive: Tensor, negative: Tensor, margin: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-anchor hinge sums over (positive, negative) columns of ``d``; triplet counts."""
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    sorted_negatives = torch.where(negative, d, inf).sort(dim=1).values
    # prefix sums of each row's sorted negative distances, in float64: S[a, k] is the
    # sum of the k nearest negatives of anchor a
    finite = torch.where(
        negative.sum(dim=1, keepdim=True) > torch.arange(d.shape[1], device=d.device),
        sorted_negatives,
        0.0,
    ).double()
    prefix = torch.cat([finite.new_zeros(d.shape[0], 1), finite.cumsum(dim=1)], dim=1)
    threshold = d + margin
    # k[a, p]: negatives of a strictly closer than d(a, p) + margin (the non-zero hinges)
    k = torch.searchsorted(sorted_negatives, threshold)
    hinge_sums = k.double() * threshold.double() - prefix.gather(1, k)
    hinge_sums = torch.where(positive, hinge_sums, 0.0)
    per_anchor = hinge_sums.sum(dim=1).to(d.dtype)
    count_all = (positive.sum(dim=1) * negative.sum(dim=1)).sum()
    count_nonzero = torch.where(positive, k, 0).sum()
    return per_anchor, count_all, count_nonzero


def batch_hard_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float,
    distance: DistanceName = "euclidean",
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    ids: Tensor | None = None,
    candidates: Tensor | None = None,
    candidate_labels: Tensor | None = None,
    candidate_ids: Tensor | None = None,
    gather: bool = False,
    group: ProcessGroup = None,
) -> Tensor:
    r"""Batch-hard triplet loss (Hermans et al. 2017): each anchor's hardest triplet.

    .. math::
        \ell_a = \max\left(\max_{p \in P(a)} d_{ap} - \min_{n \in N(a)} d_{an} + m,\ 0
    ight)

    Equal to ``triplet_loss(emb[a], emb[p], emb[n], margin=m)`` over
    ``a, p, n = batch_hard_triplets(emb, labels)``, from the distance matrix. Anchors
    without a positive or a negative are left out of the mean (``"none"`` gives them 0);
    a batch with no valid anchor gives 0, connected to the graph.

    Args:
        embeddings: one row per sample.
        labels: integer class labels.
        margin: :math:`m \ge 0`.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        reduction: ``"mean"`` over valid anchors, ``"sum"`` or ``"none"`` (one per anchor).
        chunk_size: rows per tile of the memory-efficient path; ``None`` takes it, with
            tiles of about ``2**23`` entries, once the batch's matrix would exceed
            ``2**22`` entries (see the module notes).
            The tiled path finds each anchor's pair of samples in tiles, then computes
            the loss from those ``2N`` distances alone.
        ids: sample ids :math:`(N,)` (see the module notes): a row with its anchor's id
            is neither a positive nor a negative.
        candidates: rows :math:`(M, D)` to compare the anchors with, instead of the batch
            itself (a gallery, a memory bank; see the module notes).
        candidate_labels: the candidates' labels :math:`(M,)`, with ``candidates``.
        candidate_ids: the candidates' sample ids :math:`(M,)`, with ``candidates`` and
            ``ids``.
        gather: take the candidates from every process of the process group (see the
            module notes): every process returns the loss of the whole batch.
        group: the :mod:`torch.distributed` process group of ``gather`` (``None``: the
            default one).

    Shape:
        ``embeddings``: :math:`(N, D)`; ``labels``: :math:`(N,)`; output: scalar, or
        :math:`(N,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> batch_hard_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), margin=1.0, reduction="none")
        tensor([0.5000, 1.5000, 2.0000, 0.5000])

    Reference:
        A. Hermans, L. Beyer, B. Leibe. *In Defense of the Triplet Loss for Person
        Re-Identification.* arXiv:1703.07737, 2017.
    """
    margin = check_margin(margin)
    metric = get_distance(distance)
    reduction = check_reduction(reduction)
    chunk_size = check_chunk_size(chunk_size)
    z, labels = check_embeddings_and_labels(embeddings, labels, allow_empty=gather is True)
    _check_squared_magnitude(metric.name, embeddings=z)
    c = _candidates.prepare(
        z,
        labels,
        ids=ids,
        candidates=candidates,
        candidate_labels=candidate_labels,
        candidate_ids=candidate_ids,
        gather=gather,
        group=group,
    )
    if c is not None:
        return _batch_hard_candidates(z, labels, ids, c, metric, margin, reduction, chunk_size)
    n = z.shape[0]
    if _tiled.use_tiles(n, n, chunk_size):
        farthest, closest, valid = _tiled.batch_hard_indices(
            z.detach(), labels, distance=metric.name, rows=_tiled.tile_rows(n, chunk_size)
        )
        gap = metric.paired(z, z[farthest]) - metric.paired(z, z[closest])
        per_anchor = torch.where(valid, (torch.where(valid, gap, 0.0) + margin).clamp_min(0.0), 0.0)
        if reduction == "mean":
            return per_anchor.sum() / valid.sum().clamp_min(1)
        return _reduce(per_anchor, reduction)

    d = metric.matrix(z, z)
    positive, negative = label_masks(labels)
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    valid = positive.any(dim=1) & negative.any(dim=1)
    # gather at argmax/argmin (lowest index on ties) so that values and gradients equal
    # the indexed form over batch_hard_triplets exactly
    farthest = torch.where(positive, d, -inf).argmax(dim=1, keepdim=True)
    closest = torch.where(negative, d, inf).argmin(dim=1, keepdim=True)
    hardest_positive = d.gather(1, farthest).squeeze(1)
    hardest_negative = d.gather(1, closest).squeeze(1)
    gap = torch.where(valid, hardest_positive - hardest_negative, 0.0)
    per_anchor = torch.where(valid, (gap + margin).clamp_min(0.0), 0.0)
    if reduction == "mean":
        return per_anchor.sum() / valid.sum().clamp_min(1)
    return _reduce(per_anchor, reduction)


def triplet_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    margin: float,
    distance: DistanceName = "euclidean",
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Triplet margin loss (Weinberger & Saul 2009; Schroff et al. 2015, FaceNet).

    Asks each anchor to be closer to its positive than to its negative by ``margin``:

    .. math::
        \ell = \max\left(d(a, p) - d(a, n) + m,\ 0\right)

    ``margin`` has no default: FaceNet uses 0.2 on unit-length embeddings with squared
    Euclidean distance, :class:`torch.nn.TripletMarginLoss` defaults to 1.0; the right
    value depends on the distance and the scale of the embeddings.

    Args:
        anchor: anchor embeddings.
        positive: embeddings of the same class as the anchors.
        negative: embeddings of another class.
        margin: :math:`m \ge 0`.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        reduction: ``"mean"`` over triplets, ``"sum"`` or ``"none"``.

    Shape:
        ``anchor``, ``positive``, ``negative``: :math:`(N, D)`; output: scalar, or
        :math:`(N,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from contrastkit.functional import triplet_loss
        >>> a = torch.zeros(2, 1)
        >>> p = torch.tensor([[0.7], [0.1]])
        >>> n = torch.tensor([[0.5], [0.6]])
        >>> triplet_loss(a, p, n, margin=0.2, reduction="none")
        tensor([0.4000, 0.0000])

    Relations:
        With ``distance="euclidean"`` this is :class:`torch.nn.TripletMarginLoss`
        (``p=2``, ``swap=False``) up to torch's ``eps=1e-6`` added to the differences.

    Reference:
        F. Schroff, D. Kalenichenko, J. Philbin. *FaceNet: A Unified Embedding for Face
        Recognition and Clustering.* CVPR 2015.
    """
    margin = check_margin(margin)
    metric = get_distance(distance)
    reduction = check_reduction(reduction)
    check_paired_embeddings(anchor=anchor, positive=positive, negative=negative)
    check_same_device(anchor=anchor, positive=positive, negative=negative)
    check_finite(anchor=anchor, positive=positive, negative=negative)
    _check_squared_magnitude(metric.name, anchor=anchor, positive=positive, negative=negative)

    dtype = compute_dtype(anchor, positive, negative)
    a, p, n = anchor.to(dtype), positive.to(dtype), negative.to(dtype)
    per_triplet = (metric.paired(a, p) - metric.paired(a, n) + margin).clamp_min(0.0)
    return _reduce(per_triplet, reduction)


def info_nce(
    query: Tensor,
    key: Tensor,
    *,
    temperature: float | Tensor = 0.07,
    normalize: bool = True,
    symmetric: bool = False,
    negatives: Tensor | None = None,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    ids: Tensor | None = None,
    gather: bool = False,
    group: ProcessGroup = None,
) -> Tensor:
    r"""InfoNCE (van den Oord et al. 2018): pick each query's own key out of the batch.

    Row ``i`` of ``key`` is the positive of row ``i`` of ``query``; every other key, and
    every row of ``negatives`` if given, is a negative. With
    :math:`s(q, k) = \cos(q, k)` (``normalize=True``) or :math:`q^\top k`
    (``normalize=False``) and temperature :math:`\tau`:

    .. math::
        \ell_i = -\log \frac{\exp(s(q_i, k_i) / \tau)}
        {\sum_{j=1}^{N} \exp(s(q_i, k_j) / \tau) + \sum_{n} \exp(s(q_i, n) / \tau)}

    which is the cross-entropy of the logits :math:`s / \tau` with target ``i``.

    * ``symmetric=True`` is CLIP's loss (Radford et al. 2021): per pair, the mean of the
      query-to-key and the key-to-query terms, where the key-to-query term picks query
      ``i`` among all queries for key ``i``.
    * ``normalize=False, temperature=1.0`` is Sohn's N-pair loss (NeurIPS 2016) in its
      multi-class form :math:`\log(1 + \sum_{j \ne i} \exp(q_i^\top k_j - q_i^\top k_i))`.

    Args:
        query: query embeddings.
        key: key embeddings; ``key[i]`` is the positive of ``query[i]``.
        temperature: :math:`\tau > 0`, a number or a one-element tensor (for example a
            learnable parameter).
        normalize: compare by cosine similarity (``True``) or by dot product.
        symmetric: average both directions (CLIP). Not combined with ``negatives``.
        negatives: extra negatives, shared by every query :math:`(M, D)` or per query
            :math:`(N, K, D)`.
        reduction: ``"mean"`` over queries, ``"sum"`` or ``"none"``.
        chunk_size: rows per tile of the memory-efficient path; ``None`` takes it, with
            tiles of about ``2**23`` entries, once the batch's matrix would exceed
            ``2**22`` entries (see the module notes).
            Shared ``negatives`` count as more keys.
        ids: sample ids :math:`(N,)`, one per pair: another key (and, with
            ``symmetric``, another query) with the same id is not a negative.
        gather: take the keys (queries, shared negatives) from every process of the
            process group (see the module notes): every process returns the loss of the
            whole batch.
        group: the :mod:`torch.distributed` process group of ``gather`` (``None``: the
            default one).

    Shape:
        ``query``, ``key``: :math:`(N, D)`; output: scalar, or :math:`(N,)` with
        ``reduction="none"``.

    Example:
        >>> import torch
        >>> from contrastkit.functional import info_nce
        >>> q = torch.eye(3)
        >>> round(info_nce(q, q, temperature=1.0).item(), 4)  # -log(e / (e + 2))
        0.5514

    Relations:
        lightly's ``NTXentLoss`` with a memory bank and sentence-transformers'
        ``MultipleNegativesRankingLoss`` (``scale = 1 / temperature``, default 20) compute
        this loss; open_clip's ``ClipLoss`` is ``symmetric=True``.

    Reference:
        A. van den Oord, Y. Li, O. Vinyals. *Representation Learning with Contrastive
        Predictive Coding.* arXiv:1807.03748, 2018.
    """
    normalize = check_bool("normalize", normalize)
    symmetric = check_bool("symmetric", symmetric)
    reduction = check_reduction(reduction)
    chunk_size = check_chunk_size(chunk_size)
    check_paired_embeddings(query=query, key=key, allow_empty=gather is True)
    temperature = check_temperature(temperature, device=query.device)
    n, d = query.shape
    inputs = {"query": query, "key": key}
    if negatives is not None:
        if symmetric:
            raise ValueError(
                "negatives cannot be combined with symmetric=True: extra negatives belong "
                "to the query-to-key direction only"
            )
        inputs["negatives"] = check_negatives(negatives, n, d)
    check_same_device(**inputs)
    check_finite(**inputs)
    if not normalize:
        _check_dot_magnitude(temperature, **inputs)

    dtype = compute_dtype(*inputs.values())
    q, k = query.to(dtype), key.to(dtype)
    if normalize:
        q, k = unit_rows(q), unit_rows(k)
    neg = None
    if negatives is not None:
        neg = negatives.to(dtype)
        if normalize:
            neg = unit_rows(neg)
    paired = _candidates.prepare_paired(
        q, k, ids=ids, gather=gather, group=group, anchors_name="query", gather_first=symmetric
    )
    if paired is not None:
        return _info_nce_candidates(
            q, k, neg, paired, temperature, symmetric, reduction, chunk_size, gather, group
        )
    shared = neg.shape[0] if neg is not None and neg.dim() == 2 else 0
    if _tiled.use_tiles(n, n + shared, chunk_size):
        per_query = _info_nce_tiles(q, k, neg, temperature, symmetric, reduction, chunk_size)
        return _reduce(per_query, reduction)
    logits = (q @ k.T) / temperature
    targets = torch.arange(n, device=q.device)
    if symmetric:
        per_query = 0.5 * (
            cross_entropy(logits, targets, reduction="none")
            + cross_entropy(logits.T, targets, reduction="none")
        )
        return _reduce(per_query, reduction)
    if neg is not None:
        extra = q @ neg.T if neg.dim() == 2 else torch.einsum("nd,nkd->nk", q, neg)
        logits = torch.cat([logits, extra / temperature], dim=1)
    per_query = cross_entropy(logits, targets, reduction="none")
    return _reduce(per_query, reduction)


def _info_nce_tiles(
    q: Tensor,
    k: Tensor,
    neg: Tensor | None,
    temperature: float | Tensor,
    symmetric: bool,
    reduction: str,
    chunk_size: int | None,
) -> Tensor:
    """Per-query InfoNCE from tiled log-sum-exps; the positives' logits in O(N·D)."""
    a = q / temperature
    positive = (a * k).sum(dim=1)
    eager = reduction != "none"
    if symmetric:
        rows = _tiled.tile_rows(k.shape[0], chunk_size)
        by_row, by_column = _tiled.row_column_logsumexp(a, k, rows=rows, eager=eager)
        return 0.5 * (by_row + by_column) - positive
    keys, extra = k, None
    if neg is not None and neg.dim() == 2:
        keys = torch.cat([k, neg])
    elif neg is not None:
        extra = torch.einsum("nd,nkd->nk", a, neg)
    hint = a.new_ones(a.shape[0]) if eager else None
    rows = _tiled.tile_rows(keys.shape[0], chunk_size)
    return _tiled.row_logsumexp(a, keys, rows=rows, extra=extra, hint=hint) - positive


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    *,
    temperature: float | Tensor = 0.5,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    ids: Tensor | None = None,
    gather: bool = False,
    group: ProcessGroup = None,
) -> Tensor:
    r"""NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

    ``z1[i]`` and ``z2[i]`` are two views of one example. Over the :math:`2N` views
    :math:`z = (z_1; z_2)`, each view's positive is its twin and the other
    :math:`2N - 2` views are its negatives:

    .. math::
        \ell_i = -\log \frac{\exp(\cos(z_i, z_{t(i)}) / \tau)}
        {\sum_{j \ne i} \exp(\cos(z_i, z_j) / \tau)}

    with :math:`t(i) = i \pm N` the twin. ``reduction="mean"`` averages over the
    :math:`2N` anchors.

    Args:
        z1: embeddings of the first views.
        z2: embeddings of the second views.
        temperature: :math:`\tau > 0` (SimCLR's default 0.5).
        reduction: ``"mean"`` over the 2N anchors, ``"sum"`` or ``"none"``.
        chunk_size: rows per tile of the memory-efficient path; ``None`` takes it, with
            tiles of about ``2**23`` entries, once the batch's matrix would exceed
            ``2**22`` entries (see the module notes).
        ids: sample ids :math:`(N,)`, one per example: the views of another example with
            the same id are not negatives.
        gather: take the views from every process of the
            process group (see the module notes): every process returns the loss of the
            whole batch.
        group: the :mod:`torch.distributed` process group of ``gather`` (``None``: the
            default one).

    Shape:
        ``z1``, ``z2``: :math:`(N, D)`; output: scalar, or :math:`(2N,)` with
        ``reduction="none"`` (the anchors of ``z1`` first, then those of ``z2``).

    Example:
        >>> import torch
        >>> from contrastkit.functional import nt_xent
        >>> z = torch.eye(2)
        >>> round(nt_xent(z, z, temperature=1.0).item(), 4)  # -log(e / (e + 2))
        0.5514

    Relations:
        ``info_nce(z1, z2, symmetric=True)`` differs: it never uses a view of the same
        side as a negative.

    Reference:
        T. Chen, S. Kornblith, M. Norouzi, G. Hinton. *A Simple Framework for Contrastive
        Learning of Visual Representations.* ICML 2020.
    """
    reduction = check_reduction(reduction)
    chunk_size = check_chunk_size(chunk_size)
    check_paired_embeddings(z1=z1, z2=z2, allow_empty=gather is True)
    temperature = check_temperature(temperature, device=z1.device)
    check_same_device(z1=z1, z2=z2)
    check_finite(z1=z1, z2=z2)

    n = z1.shape[0]
    dtype = compute_dtype(z1, z2)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    paired = _candidates.prepare_paired(
        z1, z2, ids=ids, gather=gather, group=group, anchors_name="z1"
    )
    if paired is not None:
        return _nt_xent_candidates(
            z1, z2, paired, temperature, reduction, chunk_size, gather, group
        )
    z = unit_rows(torch.cat([z1, z2]))
    twins = torch.arange(2 * n, device=z.device).roll(n)
    if _tiled.use_tiles(2 * n, 2 * n, chunk_size):
        a = z / temperature
        hint = a.new_ones(2 * n) if reduction != "none" else None
        rows = _tiled.tile_rows(2 * n, chunk_size)
        lse = _tiled.row_logsumexp(a, z, rows=rows, mask_self=True, hint=hint)
        return _reduce(lse - (a * z[twins]).sum(dim=1), reduction)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    per_anchor = cross_entropy(logits, twins, reduction="none")
    return _reduce(per_anchor, reduction)


def supcon(
    embeddings: Tensor,
    labels: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    ids: Tensor | None = None,
    candidates: Tensor | None = None,
    candidate_labels: Tensor | None = None,
    candidate_ids: Tensor | None = None,
    gather: bool = False,
    group: ProcessGroup = None,
) -> Tensor:
    r"""Supervised contrastive loss, :math:`L^{sup}_{out}` of Khosla et al. (2020).

    Every other sample of the anchor's class is a positive, every sample of another class
    a negative. With :math:`P(i)` the positives of anchor :math:`i` and
    :math:`A(i)` all samples but :math:`i`:

    .. math::
        \ell_i = \frac{-1}{|P(i)|} \sum_{p \in P(i)}
        \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)}

    Anchors with no positive are left out: ``"mean"`` averages over the anchors that
    have one, ``"none"`` gives 0 for the others. A batch with no positive pair at all
    gives a loss of 0 that is still connected to the graph (finite gradients of 0).
    For several views per example, concatenate the views and repeat the labels.

    Unlike the authors' reference code, the loss is not multiplied by
    ``temperature / base_temperature``: it is the formula of the paper.

    Args:
        embeddings: one row per sample.
        labels: integer class labels.
        temperature: :math:`\tau > 0` (the paper's 0.1).
        normalize: project the embeddings on the unit sphere first (as the paper does);
            ``False`` uses raw dot products.
        reduction: ``"mean"`` over anchors with a positive, ``"sum"`` or ``"none"``.
        chunk_size: rows per tile of the memory-efficient path; ``None`` takes it, with
            tiles of about ``2**23`` entries, once the batch's matrix would exceed
            ``2**22`` entries (see the module notes).
            The positives' logits come from per-class sums, so no label mask is built.
        ids: sample ids :math:`(N,)` (see the module notes): a row with its anchor's id
            is neither a positive nor a negative.
        candidates: rows :math:`(M, D)` to compare the anchors with, instead of the batch
            itself (a gallery, a memory bank; see the module notes).
        candidate_labels: the candidates' labels :math:`(M,)`, with ``candidates``.
        candidate_ids: the candidates' sample ids :math:`(M,)`, with ``candidates`` and
            ``ids``.
        gather: take the candidates from every process of the process group (see the
            module notes): every process returns the loss of the whole batch.
        group: the :mod:`torch.distributed` process group of ``gather`` (``None``: the
            default one).

    Shape:
        ``embeddings``: :math:`(N, D)`; ``labels``: :math:`(N,)`; output: scalar, or
        :math:`(N,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from contrastkit.functional import supcon
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> supcon(emb, torch.tensor([0, 0, 1]), temperature=1.0, reduction="none")
        tensor([0.3133, 0.3133, 0.0000])

    Relations:
        With two views per example and every label distinct, this is :func:`nt_xent`.

    Reference:
        P. Khosla et al. *Supervised Contrastive Learning.* NeurIPS 2020.
    """
    normalize = check_bool("normalize", normalize)
    reduction = check_reduction(reduction)
    chunk_size = check_chunk_size(chunk_size)
    check_embeddings("embeddings", embeddings, allow_empty=gather is True)
    temperature = check_temperature(temperature, device=embeddings.device)
    n = embeddings.shape[0]
    labels = check_class_labels("labels", labels, "embeddings", embeddings)
    check_finite(embeddings=embeddings)
    if not normalize:
        _check_dot_magnitude(temperature, embeddings=embeddings)

    z = embeddings.to(compute_dtype(embeddings))
    c = _candidates.prepare(
        z,
        labels,
        ids=ids,
        candidates=candidates,
        candidate_labels=candidate_labels,
        candidate_ids=candidate_ids,
        gather=gather,
        group=group,
    )
    if c is not None:
        if not normalize and candidates is not None:
            _check_dot_magnitude(temperature, embeddings=embeddings, candidates=c.rows)
        return _supcon_candidates(z, labels, ids, c, temperature, normalize, reduction, chunk_size)
    if normalize:
        z = unit_rows(z)
    if n == 1:  # no other sample: no positive, and no denominator to normalize over
        per_anchor = z.sum(dim=1) * 0.0
        return per_anchor.sum() if reduction != "none" else per_anchor
    if _tiled.use_tiles(n, n, chunk_size):
        return _supcon_tiles(z, labels, temperature, reduction, chunk_size)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = ((z @ z.T) / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    num_positives = positives.sum(dim=1)
    summed = torch.where(positives, log_prob, 0.0).sum(dim=1)
    per_anchor = 0.0 - summed / num_positives.clamp_min(1).to(z.dtype)  # +0.0, not -0.0
    if reduction == "mean":
        return per_anchor.sum() / num_positives.gt(0).sum().clamp_min(1)
    return _reduce(per_anchor, reduction)


def _supcon_tiles(
    z: Tensor, labels: Tensor, temperature: float | Tensor, reduction: str, chunk_size: int | None
) -> Tensor:
    """SupCon from tiled log-sum-exps; each anchor's positives through its class's sum."""
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    class_sums = z.new_zeros(counts.shape[0], z.shape[1]).index_add(0, inverse, z)
    positives = counts[inverse] - 1
    has_positive = positives > 0
    a = z / temperature
    # mean over p in P(i) of a_i · z_p = a_i · (sum of i's class - z_i) / |P(i)|
    mean_positive = (a * (class_sums[inverse] - z)).sum(dim=1) / positives.clamp_min(1)
    hint = has_positive.to(z.dtype) if reduction != "none" else None
    rows = _tiled.tile_rows(z.shape[0], chunk_size)
    lse = _tiled.row_logsumexp(a, z, rows=rows, mask_self=True, hint=hint)
    per_anchor = torch.where(has_positive, lse - mean_positive, 0.0)
    if reduction == "mean":
        return per_anchor.sum() / has_positive.sum().clamp_min(1)
    return _reduce(per_anchor, reduction)


def _masked_logsumexp(
    a: Tensor,
    b: Tensor,
    *,
    extra: Tensor | None,
    self_index: Tensor | None,
    row_ids: Tensor | None,
    column_ids: Tensor | None,
    keep_index: Tensor,
    hint: Tensor | None,
    chunk_size: int | None,
) -> Tensor:
    """Row log-sum-exp of ``[A Bᵀ, extra]`` over the columns each row is compared with.

    Left out: each row's own column (``self_index``) and the first columns that share
    its id (``column_ids``), but for ``keep_index``'s.
    """
    n, m = a.shape[0], b.shape[0]
    if _tiled.use_tiles(n, m, chunk_size):
        return _tiled.row_logsumexp(
            a,
            b,
            rows=_tiled.tile_rows(m, chunk_size),
            extra=extra,
            hint=hint,
            self_index=self_index,
            row_ids=row_ids,
            column_ids=column_ids,
            keep_index=keep_index,
        )
    logits = a @ b.T
    mask = torch.zeros(n, m, dtype=torch.bool, device=a.device)
    if row_ids is not None and column_ids is not None:
        mask[:, : column_ids.shape[0]] = row_ids[:, None] == column_ids[None, :]
        mask[torch.arange(n, device=a.device), keep_index] = False
    if self_index is not None:
        mask[torch.arange(n, device=a.device), self_index] = True
    logits = logits.masked_fill(mask, float("-inf"))
    if extra is not None:
        logits = torch.cat([logits, extra], dim=1)
    return torch.logsumexp(logits, dim=1)


def _nt_xent_candidates(
    z1: Tensor,
    z2: Tensor,
    paired: tuple[Tensor, Tensor, Tensor | None, Tensor | None, int],
    temperature: float | Tensor,
    reduction: str,
    chunk_size: int | None,
    gathered: bool,
    group: ProcessGroup,
) -> Tensor:
    """NT-Xent of this process's views against every process's (see :mod:`._candidates`)."""
    all1, all2, ids, all_ids, offset = paired
    b, n = z1.shape[0], all1.shape[0]
    anchors = unit_rows(torch.cat([z1, z2]))
    rows = unit_rows(torch.cat([all1, all2]))
    own = torch.arange(offset, offset + b, device=z1.device)
    self_index = torch.cat([own, own + n])
    twins = torch.cat([own + n, own])
    a = anchors / temperature
    lse = _masked_logsumexp(
        a,
        rows,
        extra=None,
        self_index=self_index,
        row_ids=None if ids is None else torch.cat([ids, ids]),
        column_ids=None if all_ids is None else torch.cat([all_ids, all_ids]),
        keep_index=twins,
        hint=a.new_ones(2 * b) if reduction != "none" else None,
        chunk_size=chunk_size,
    )
    per_anchor = lse - (a * rows[twins]).sum(dim=1)
    return finish(per_anchor, 2 * b, reduction, gathered=gathered, group=group)


def _info_nce_candidates(
    q: Tensor,
    k: Tensor,
    neg: Tensor | None,
    paired: tuple[Tensor, Tensor, Tensor | None, Tensor | None, int],
    temperature: float | Tensor,
    symmetric: bool,
    reduction: str,
    chunk_size: int | None,
    gathered: bool,
    group: ProcessGroup,
) -> Tensor:
    """InfoNCE of this process's queries against every process's keys (and negatives)."""
    all_q, all_k, ids, all_ids, offset = paired
    b = q.shape[0]
    own = torch.arange(offset, offset + b, device=q.device)
    a = q / temperature
    keys, extra = all_k, None
    if neg is not None and neg.dim() == 2:
        keys = torch.cat([all_k, distributed.gather(neg, group=group) if gathered else neg])
    elif neg is not None:
        extra = torch.einsum("nd,nkd->nk", a, neg)
    hint = a.new_ones(b) if reduction != "none" else None
    lse = _masked_logsumexp(
        a,
        keys,
        extra=extra,
        self_index=None,
        row_ids=ids,
        column_ids=all_ids,
        keep_index=own,
        hint=hint,
        chunk_size=chunk_size,
    )
    if symmetric:  # and each key picks its query out of every query
        backward_lse = _masked_logsumexp(
            k / temperature,
            all_q,
            extra=None,
            self_index=None,
            row_ids=ids,
            column_ids=all_ids,
            keep_index=own,
            hint=hint,
            chunk_size=chunk_size,
        )
        lse = 0.5 * (lse + backward_lse)
    per_query = lse - (a * k).sum(dim=1)
    return finish(per_query, b, reduction, gathered=gathered, group=group)


def _positive_sums(
    rows: Tensor, labels: Tensor, ids: Tensor | None, c: Candidates
) -> tuple[Tensor, Tensor]:
    """Each anchor's number of positive candidates and the sum of their rows, in O(N·D).

    From class sums over the candidates, less the excluded ones of the anchor's class:
    those sharing its id (sums per pair of id and label), or its own row.
    """
    assert c.labels is not None
    b = labels.shape[0]
    _, inverse = torch.unique(torch.cat([labels, c.labels]), return_inverse=True)
    classes = int(inverse.max()) + 1
    sums = rows.new_zeros(classes, rows.shape[1]).index_add(0, inverse[b:], rows)
    counts = torch.bincount(inverse[b:], minlength=classes)
    positive_sum, positives = sums[inverse[:b]], counts[inverse[:b]]
    if ids is not None and c.ids is not None:
        keys = torch.stack([torch.cat([ids, c.ids]), torch.cat([labels, c.labels])])
        _, inverse = torch.unique(keys, dim=1, return_inverse=True)
        kinds = int(inverse.max()) + 1
        same = rows.new_zeros(kinds, rows.shape[1]).index_add(0, inverse[b:], rows)
        positive_sum = positive_sum - same[inverse[:b]]
        positives = positives - torch.bincount(inverse[b:], minlength=kinds)[inverse[:b]]
    elif c.self_index is not None:
        positive_sum = positive_sum - rows[c.self_index]
        positives = positives - 1
    return positives, positive_sum


def _supcon_candidates(
    z: Tensor,
    labels: Tensor,
    ids: Tensor | None,
    c: Candidates,
    temperature: float | Tensor,
    normalize: bool,
    reduction: str,
    chunk_size: int | None,
) -> Tensor:
    """SupCon of this process's anchors against the candidates (see :mod:`._candidates`)."""
    rows = c.rows
    z = z.to(rows.dtype)
    if normalize:
        z, rows = unit_rows(z), unit_rows(rows)
    a = z / temperature
    b, m = z.shape[0], rows.shape[0]
    assert c.labels is not None
    if _tiled.use_tiles(b, m, chunk_size):
        positives, positive_sum = _positive_sums(rows, labels, ids, c)
        has_positive = positives > 0
        mean_positive = (a * positive_sum).sum(dim=1) / positives.clamp_min(1)
        hint = has_positive.to(z.dtype) if reduction != "none" else None
        lse = _tiled.row_logsumexp(
            a,
            rows,
            rows=_tiled.tile_rows(m, chunk_size),
            hint=hint,
            self_index=c.self_index,
            row_ids=ids,
            column_ids=c.ids,
        )
        per_anchor = torch.where(has_positive, lse - mean_positive, 0.0)
    else:
        logits = a @ rows.T
        positive = labels[:, None] == c.labels[None, :]
        left_out = excluded(c, ids, b)
        if left_out is not None:
            logits = logits.masked_fill(left_out, float("-inf"))
            positive &= ~left_out
        positives = positive.sum(dim=1)
        has_positive = positives > 0
        # an anchor without a positive is left out; its row may be all -inf
        logits = torch.where(has_positive[:, None], logits, 0.0)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        summed = torch.where(positive, log_prob, 0.0).sum(dim=1)
        per_anchor = 0.0 - summed / positives.clamp_min(1).to(z.dtype)
    return finish(per_anchor, has_positive.sum(), reduction, gathered=c.gathered, group=c.group)


def _anchors_and_rows(z: Tensor, c: Candidates, metric: Metric) -> tuple[Tensor, Tensor]:
    """The anchors in the candidates' dtype (the wider of the two), and the candidates.

    Checks that the candidates' squared distances cannot overflow, as the anchors' are.
    """
    _check_squared_magnitude(metric.name, candidates=c.rows)
    return z.to(c.rows.dtype), c.rows


def _candidate_masks(
    labels: Tensor, ids: Tensor | None, c: Candidates
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(B, M)`` positives and negatives of each anchor among the candidates.

    Also the candidates left out (or ``None``).
    """
    assert c.labels is not None
    same = labels[:, None] == c.labels[None, :]
    left_out = excluded(c, ids, labels.shape[0])
    if left_out is None:
        return same, ~same, None
    return same & ~left_out, ~same & ~left_out, left_out


def _all_pairs_candidates(
    z: Tensor,
    labels: Tensor,
    ids: Tensor | None,
    c: Candidates,
    metric: Metric,
    margin: float,
    caffe_legacy: bool,
    reduction: str,
    chunk_size: int | None,
) -> Tensor:
    """The all-pairs contrastive loss of the anchors against the candidates.

    With the batch itself as candidates every unordered pair is seen from both ends:
    its ``"sum"`` is half the sum over (anchor, candidate) pairs and its ``"none"`` keeps
    each anchor's pairs with the later rows (the order of one process's loss).
    """
    z, rows = _anchors_and_rows(z, c, metric)
    b, m = z.shape[0], rows.shape[0]
    both_ends = c.self_index is not None
    count: Tensor | int
    if (
        reduction != "none"
        and metric.name in _tiled.TILED_DISTANCES
        and _tiled.use_tiles(b, m, chunk_size)
    ):
        _check_tiled_magnitude(metric.name, b + m, embeddings=z, candidates=rows)
        assert c.labels is not None
        twice, count = _tiled.cross_contrastive_sum(
            z,
            rows,
            labels,
            c.labels,
            distance=metric.name,
            margin=margin,
            caffe_legacy=caffe_legacy,
            rows=_tiled.tile_rows(m, chunk_size),
            self_index=c.self_index,
            x_ids=ids,
            c_ids=c.ids,
        )
        total = 0.5 * twice
    else:
        d, d_squared = _distance_and_square(metric, z, rows, paired=False)
        assert c.labels is not None
        same = (labels[:, None] == c.labels[None, :]).to(z.dtype)
        per_pair = _contrastive_terms(d, d_squared, same, margin, caffe_legacy)
        left_out = excluded(c, ids, b)
        if left_out is not None:
            per_pair = torch.where(left_out, 0.0, per_pair)
        if reduction == "none":
            if both_ends:
                assert c.self_index is not None
                later = torch.arange(m, device=z.device)[None, :] > c.self_index[:, None]
                per_pair = per_pair[later]
            return finish(per_pair, 0, "none", gathered=c.gathered, group=c.group)
        total = per_pair.sum()
        count = left_out.logical_not().sum() if left_out is not None else b * m
    if reduction == "sum" and both_ends:
        total = 0.5 * total
    return finish(total, count, reduction, gathered=c.gathered, group=c.group)


def _batch_all_candidates(
    z: Tensor,
    labels: Tensor,
    ids: Tensor | None,
    c: Candidates,
    metric: Metric,
    margin: float,
    reduction: str,
    mean_over: str,
    chunk_size: int | None,
) -> Tensor:
    """Batch-all triplets with the anchors' positives and negatives among the candidates."""
    z, rows = _anchors_and_rows(z, c, metric)
    b, m = z.shape[0], rows.shape[0]
    if metric.name in _tiled.TILED_DISTANCES and _tiled.use_tiles(b, m, chunk_size):
        _check_tiled_magnitude(metric.name, b + m, embeddings=z, candidates=rows)
        assert c.labels is not None
        per_anchor, count_all, count_nonzero = _tiled.cross_batch_all_sums(
            z,
            rows,
            labels,
            c.labels,
            distance=metric.name,
            margin=margin,
            rows=_tiled.tile_rows(m, chunk_size, share=8),
            eager=reduction != "none",
            self_index=c.self_index,
            x_ids=ids,
            c_ids=c.ids,
        )
    else:
        positive, negative, _ = _candidate_masks(labels, ids, c)
        per_anchor, count_all, count_nonzero = _batch_all_sums(
            metric.matrix(z, rows), positive, negative, margin
        )
    count = count_all if mean_over == "all" else count_nonzero
    return finish(per_anchor, count, reduction, gathered=c.gathered, group=c.group)


def _batch_hard_candidates(
    z: Tensor,
    labels: Tensor,
    ids: Tensor | None,
    c: Candidates,
    metric: Metric,
    margin: float,
    reduction: str,
    chunk_size: int | None,
) -> Tensor:
    """Each anchor's hardest positive and negative among the candidates."""
    z, rows = _anchors_and_rows(z, c, metric)
    b, m = z.shape[0], rows.shape[0]
    if _tiled.use_tiles(b, m, chunk_size):
        assert c.labels is not None
        farthest, closest, valid = _tiled.cross_batch_hard_indices(
            z.detach(),
            rows.detach(),
            labels,
            c.labels,
            distance=metric.name,
            rows=_tiled.tile_rows(m, chunk_size),
            self_index=c.self_index,
            x_ids=ids,
            c_ids=c.ids,
        )
        gap = metric.paired(z, rows[farthest]) - metric.paired(z, rows[closest])
    else:
        d = metric.matrix(z, rows)
        positive, negative, _ = _candidate_masks(labels, ids, c)
        inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
        valid = positive.any(dim=1) & negative.any(dim=1)
        farthest = torch.where(positive, d, -inf).argmax(dim=1, keepdim=True)
        closest = torch.where(negative, d, inf).argmin(dim=1, keepdim=True)
        gap = (d.gather(1, farthest) - d.gather(1, closest)).squeeze(1)
    per_anchor = torch.where(valid, (torch.where(valid, gap, 0.0) + margin).clamp_min(0.0), 0.0)
    return finish(per_anchor, valid.sum(), reduction, gathered=c.gathered, group=c.group)


def cosine_similarity_loss(
    x1: Tensor,
    x2: Tensor,
    score: Tensor,
    *,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Regress the cosine similarity of each pair onto a target score.

    .. math::
        \ell = \left(\cos(x_1, x_2) - s\right)^2, \qquad s \in [-1, 1]

    ``reduction="mean"`` is the mean squared error over pairs, as in
    sentence-transformers' ``CosineSimilarityLoss`` (Reimers & Gurevych 2019).

    Args:
        x1: embeddings of the first elements of the pairs.
        x2: embeddings of the second elements of the pairs.
        score: target similarity of each pair, in ``[-1, 1]`` (float or integer).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        ``x1``, ``x2``: :math:`(N, D)`; ``score``: :math:`(N,)`; output: scalar, or
        :math:`(N,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from contrastkit.functional import cosine_similarity_loss
        >>> x1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> x2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines 1 and 0
        >>> cosine_similarity_loss(x1, x2, torch.tensor([1.0, 0.5]), reduction="none")
        tensor([0.0000, 0.2500])

    Reference:
        N. Reimers, I. Gurevych. *Sentence-BERT: Sentence Embeddings using Siamese
        BERT-Networks.* EMNLP 2019.
    """
    reduction = check_reduction(reduction)
    check_paired_embeddings(x1=x1, x2=x2)
    check_same_device(x1=x1, x2=x2)
    target = check_score("score", score, "x1", x1)
    check_finite(x1=x1, x2=x2)

    dtype = compute_dtype(x1, x2)
    cos = SIMILARITIES["cosine"].paired(x1.to(dtype), x2.to(dtype))
    return _reduce((cos - target.to(dtype)).pow(2), reduction)


# --- reconstruction (autoencoders) ----------------------------------------------------

RECONSTRUCTION_KINDS: tuple[ReconstructionKind, ...] = (
    "mse",
    "bce",
    "bce_with_logits",
    "cross_entropy",
)


def reconstruction_loss(
    reconstruction: Tensor,
    target: Tensor,
    *,
    kind: ReconstructionKind = "mse",
    reduction: Reduction = "mean",
) -> Tensor:
    r"""How far each reconstruction is from its target: the objective of an autoencoder.

    Each of the :math:`N` samples of shape ``(N, ...)`` gets one value, the mean of an
    element-wise loss over its :math:`D` non-batch elements. With :math:`\hat x` the
    reconstruction and :math:`x` the target:

    * ``"mse"``, squared error:

      .. math::
          \ell_n = \frac{1}{D} \sum_{k=1}^{D} (\hat x_{nk} - x_{nk})^2

    * ``"bce"``, binary cross-entropy of probabilities :math:`\hat x \in [0, 1]` against
      targets :math:`x \in [0, 1]`:

      .. math::
          \ell_n = -\frac{1}{D} \sum_{k=1}^{D} \left[ x_{nk} \log \hat x_{nk}
          + (1 - x_{nk}) \log (1 - \hat x_{nk}) \right]

      computed by :func:`torch.nn.functional.binary_cross_entropy`: each logarithm is
      clamped at :math:`-100`, so a reconstruction of exactly 0 or 1 costs at most 100 per
      element, and the gradient :math:`(\hat x - x) / (\hat x (1 - \hat x))` has its
      denominator clamped at :math:`10^{-12}`, so it stays finite there too.

    * ``"bce_with_logits"``, the same with :math:`\hat x = \sigma(z)` for logits :math:`z`,
      computed stably as :math:`\max(z, 0) - z x + \log(1 + e^{-|z|})` (finite values and
      gradients for any finite logit).

    * ``"cross_entropy"``, for logits of shape ``(N, C, ...)`` over :math:`C` classes
      (for example 256 intensity levels per pixel), with :math:`P` positions per sample
      (the product of the dimensions after ``C``; 1 for ``(N, C)``) and
      :math:`p_{n \cdot j} = \operatorname{softmax}_c(z_{n \cdot j})`:

      .. math::
          \ell_n = -\frac{1}{P} \sum_{j=1}^{P} \log p_{n c_{nj} j}
          \quad\text{or}\quad
          \ell_n = -\frac{1}{P} \sum_{j=1}^{P} \sum_{c=1}^{C} q_{ncj} \log p_{ncj}

      for a target of integer class indices :math:`c_{nj}` of shape ``(N, ...)`` (the
      logits' shape without ``C``), or of class probabilities :math:`q \in [0, 1]` of the
      logits' shape, as :func:`torch.nn.functional.cross_entropy` takes them (rows of
      ``q`` are expected to sum to 1 over ``C``; this is not checked). There is no
      ``ignore_index``, no class weights and no label smoothing.

    For a denoising autoencoder the target is the clean input, not the noisy one.

    Args:
        reconstruction: the decoder's output: values for ``"mse"``, probabilities in
            ``[0, 1]`` for ``"bce"``, logits for ``"bce_with_logits"`` and
            ``"cross_entropy"``.
        target: what should have been reconstructed (see ``kind`` for its form).
        kind: ``"mse"``, ``"bce"``, ``"bce_with_logits"`` or ``"cross_entropy"``.
        reduction: ``"mean"`` over samples, ``"sum"`` over samples, or ``"none"`` (one
            value per sample, for example as an anomaly score).

    Shape:
        ``reconstruction``: :math:`(N, *)`, at least 1-D (``(N,)`` is one element per
        sample), :math:`(N, C, *)` for ``"cross_entropy"``; ``target``: the same shape,
        or :math:`(N, *)` of class indices for ``"cross_entropy"``; output: scalar, or
        :math:`(N,)` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from contrastkit.functional import reconstruction_loss
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
        >>> x_hat = torch.tensor([[0.5, 1.0], [1.0, 0.0]])
        >>> reconstruction_loss(x_hat, x, reduction="none")  # 0.25 / 2 and 1 / 2
        tensor([0.1250, 0.5000])
        >>> reconstruction_loss(x_hat, x, reduction="sum")
        tensor(0.6250)

    Relations:
        Every sample has the same number of elements, so ``reduction="mean"`` equals
        torch's ``mse_loss``, ``binary_cross_entropy``, ``binary_cross_entropy_with_logits``
        and ``cross_entropy`` with their ``reduction="mean"``. ``"sum"`` is the sum of
        the per-sample means, torch's sum divided by :math:`D` (or :math:`P`).

    Reference:
        G. E. Hinton, R. R. Salakhutdinov. *Reducing the Dimensionality of Data with
        Neural Networks.* Science 313, 2006. P. Vincent, H. Larochelle, Y. Bengio,
        P.-A. Manzagol. *Extracting and Composing Robust Features with Denoising
        Autoencoders.* ICML 2008.
    """
    kind = check_choice("kind", kind, RECONSTRUCTION_KINDS)
    reduction = check_reduction(reduction)
    indices = check_reconstruction_inputs(reconstruction, target, kind)

    if indices:
        dtype = compute_dtype(reconstruction)
        goal = target.long()
    else:
        dtype = compute_dtype(reconstruction, target)
        goal = target.to(dtype)
    r = reconstruction.to(dtype)
    nnf = torch.nn.functional
    if kind == "mse":
        per_element = (r - goal).pow(2)
    elif kind == "bce":
        per_element = nnf.binary_cross_entropy(r, goal, reduction="none")
    elif kind == "bce_with_logits":
        per_element = nnf.binary_cross_entropy_with_logits(r, goal, reduction="none")
    else:
        per_element = nnf.cross_entropy(r, goal, reduction="none")
    per_sample = per_element.reshape(r.shape[0], -1).mean(dim=1)
    return _reduce(per_sample, reduction)
