"""Online miners: from a batch of ``(embeddings, labels)`` to informative pairs or triplets.

Every miner runs without gradient and returns index tensors into the batch, so it
composes with the losses by indexing::

    i, j, y = hard_pairs(emb, labels)
    loss = F.contrastive_loss(emb[i], emb[j], y)

    a, p, n = batch_hard_triplets(emb, labels)
    loss = F.triplet_loss(emb[a], emb[p], emb[n], margin=0.2)

Pairs are ``(i, j, y)`` with ``i < j`` and ``y = 1`` for the same class, ``0`` otherwise
(the pair-label convention of the losses). Triplets are ``(a, p, n)`` with
``labels[a] == labels[p]``, ``a != p`` and ``labels[n] != labels[a]``. Distances come
from :mod:`contrastkit.distances` (the matrix form). Ties are broken towards the lowest
index. When nothing qualifies, a miner returns empty index tensors (the losses refuse an
empty batch: skip the step, or use the label-form losses of
:mod:`contrastkit.functional`, which return a zero loss connected to the graph).

No Python loop runs over the batch: each miner costs one distance matrix plus a few
passes over it (and, for semi-hard mining, one sort of its rows).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from contrastkit._validation import (
    check_choice,
    check_class_labels,
    check_embeddings_and_labels,
    check_margin,
)
from contrastkit.distances import DistanceName, get_distance

__all__ = [
    "all_pairs",
    "batch_all_triplets",
    "batch_hard_triplets",
    "hard_pairs",
    "label_masks",
    "semi_hard_triplets",
]

SemiHardFallback = Literal["drop", "tensorflow"]
SEMI_HARD_FALLBACKS: tuple[SemiHardFallback, ...] = ("drop", "tensorflow")


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean ``(N, N)`` masks of positive pairs (same class, ``i != j``) and negative pairs.

    Example:
        >>> import torch
        >>> positive, negative = label_masks(torch.tensor([0, 0, 1]))
        >>> positive.int()
        tensor([[0, 1, 0],
                [1, 0, 0],
                [0, 0, 0]], dtype=torch.int32)
    """
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        shown = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor of class labels, got {shown}")
    check_class_labels("labels", labels, "labels", labels)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _upper_pairs(mask: Tensor, same: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    i, j = torch.nonzero(torch.triu(mask, diagonal=1), as_tuple=True)
    return i, j, same[i, j].long()


@torch.no_grad()
def all_pairs(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every unordered pair ``i < j`` of the batch once, with ``y = 1`` for the same class.

    Returns ``N (N - 1) / 2`` pairs in row-major order of the upper triangle.

    Example:
        >>> import torch
        >>> i, j, y = all_pairs(torch.zeros(3, 2), torch.tensor([0, 0, 1]))
        >>> i.tolist(), j.tolist(), y.tolist()
        ([0, 0, 1], [1, 2, 2], [1, 0, 0])
    """
    _, labels = check_embeddings_and_labels(embeddings, labels)
    n = labels.shape[0]
    same = labels[:, None] == labels[None, :]
    return _upper_pairs(torch.ones(n, n, dtype=torch.bool, device=labels.device), same)


@torch.no_grad()
def hard_pairs(
    embeddings: Tensor, labels: Tensor, *, distance: DistanceName = "euclidean"
) -> tuple[Tensor, Tensor, Tensor]:
    """Hard pairs: positives beyond the closest negative, negatives within the farthest positive.

    The thresholds are over the whole batch, as in sentence-transformers'
    ``OnlineContrastiveLoss``: a positive pair is hard when its distance exceeds the
    smallest negative-pair distance, a negative pair when its distance is below the
    largest positive-pair distance. A batch without negative pairs has no hard positive,
    and one without positive pairs no hard negative.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0.0], [3.0], [1.0], [10.0]])
        >>> i, j, y = hard_pairs(emb, torch.tensor([0, 0, 1, 1]))
        >>> list(zip(i.tolist(), j.tolist(), y.tolist()))
        [(0, 1, 1), (0, 2, 0), (1, 2, 0), (1, 3, 0), (2, 3, 1)]
    """
    metric = get_distance(distance)
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    d = metric.matrix(embeddings, embeddings)
    positive, negative = label_masks(labels)
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    closest_negative = torch.where(negative, d, inf).min()
    farthest_positive = torch.where(positive, d, -inf).max()
    hard = (positive & (d > closest_negative)) | (negative & (d < farthest_positive))
    return _upper_pairs(hard, ~negative)


@torch.no_grad()
def batch_all_triplets(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float | None = None,
    distance: DistanceName = "euclidean",
) -> tuple[Tensor, Tensor, Tensor]:
    """Every valid triplet of the batch, or with ``margin`` only those with a positive loss.

    With ``margin`` given, keeps the triplets where ``d(a, p) - d(a, n) + margin > 0``.
    The result can hold up to ``N^3`` triplets: for large batches use
    :func:`contrastkit.functional.batch_all_triplet_loss`, which never lists them. The
    work runs over anchors in chunks so that memory stays near the size of the result.

    Example:
        >>> import torch
        >>> a, p, n = batch_all_triplets(torch.zeros(3, 2), torch.tensor([0, 0, 1]))
        >>> list(zip(a.tolist(), p.tolist(), n.tolist()))
        [(0, 1, 2), (1, 0, 2)]
    """
    metric = get_distance(distance)
    checked_margin = None if margin is None else check_margin(margin)
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    positive, negative = label_masks(labels)
    d = metric.matrix(embeddings, embeddings) if checked_margin is not None else None
    n = labels.shape[0]
    chunk = max(1, (1 << 24) // (n * n))
    found: list[tuple[Tensor, Tensor, Tensor]] = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        valid = positive[start:stop, :, None] & negative[start:stop, None, :]
        if d is not None and checked_margin is not None:
            rows = d[start:stop]
            valid &= (rows[:, :, None] - rows[:, None, :] + checked_margin) > 0
        a, p, neg = torch.nonzero(valid, as_tuple=True)
        found.append((a + start, p, neg))
    anchors, positives, negatives = (torch.cat(parts) for parts in zip(*found, strict=True))
    return anchors, positives, negatives


@torch.no_grad()
def batch_hard_triplets(
    embeddings: Tensor, labels: Tensor, *, distance: DistanceName = "euclidean"
) -> tuple[Tensor, Tensor, Tensor]:
    """For each anchor, its farthest positive and its closest negative (Hermans et al. 2017).

    Anchors without a positive or without a negative give no triplet.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0.0], [1.0], [5.0], [2.0], [9.0]])
        >>> a, p, n = batch_hard_triplets(emb, torch.tensor([0, 0, 0, 1, 1]))
        >>> list(zip(a.tolist(), p.tolist(), n.tolist()))
        [(0, 2, 3), (1, 2, 3), (2, 0, 3), (3, 4, 1), (4, 3, 2)]

    Reference:
        A. Hermans, L. Beyer, B. Leibe. *In Defense of the Triplet Loss for Person
        Re-Identification.* arXiv:1703.07737, 2017.
    """
    metric = get_distance(distance)
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    d = metric.matrix(embeddings, embeddings)
    positive, negative = label_masks(labels)
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    hardest_positive = torch.where(positive, d, -inf).argmax(dim=1)
    hardest_negative = torch.where(negative, d, inf).argmin(dim=1)
    anchors = torch.nonzero(positive.any(dim=1) & negative.any(dim=1), as_tuple=True)[0]
    return anchors, hardest_positive[anchors], hardest_negative[anchors]


@torch.no_grad()
def semi_hard_triplets(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float,
    distance: DistanceName = "euclidean",
    fallback: SemiHardFallback = "drop",
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Semi-hard triplets (Schroff et al. 2015, FaceNet): one per anchor-positive pair.

    For every positive pair :math:`(a, p)`, the closest negative that is farther than the
    positive but within the margin: :math:`d(a,p) < d(a,n) < d(a,p) + m`.

    When a pair has no semi-hard negative:

    * ``fallback="drop"`` (default) gives no triplet for it (as pytorch-metric-learning's
      ``TripletMarginMiner(type_of_triplets="semihard")``);
    * ``fallback="tensorflow"`` follows TensorFlow Addons' ``triplet_semihard_loss``: the
      closest negative farther than the positive even beyond the margin, else the
      farthest negative.

    Costs one distance matrix and one pass over a row of it per anchor-positive pair
    (in bounded chunks), so about K distance matrices for K samples per class.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> a, p, n = semi_hard_triplets(emb, torch.tensor([0, 0, 1, 1]), margin=1.0)
        >>> list(zip(a.tolist(), p.tolist(), n.tolist()))
        [(0, 1, 2), (3, 2, 1)]

    Reference:
        F. Schroff, D. Kalenichenko, J. Philbin. *FaceNet: A Unified Embedding for Face
        Recognition and Clustering.* CVPR 2015.
    """
    metric = get_distance(distance)
    margin = check_margin(margin)
    fallback = check_choice("fallback", fallback, SEMI_HARD_FALLBACKS)
    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    d = metric.matrix(embeddings, embeddings)
    positive, negative = label_masks(labels)
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    num_negatives = negative.sum(dim=1)
    a, p = torch.nonzero(positive & (num_negatives > 0)[:, None], as_tuple=True)
    d_ap = d[a, p]
    chosen = torch.empty_like(a)
    found = torch.empty_like(a, dtype=torch.bool)
    # one row of candidates per (a, p), in chunks of pairs so memory stays bounded
    chunk = max(1, (1 << 22) // d.shape[1])
    for start in range(0, len(a), chunk):
        rows = slice(start, start + chunk)
        row_d, row_neg = d[a[rows]], negative[a[rows]]
        farther = row_neg & (row_d > d_ap[rows, None])
        closest, index = torch.where(farther, row_d, inf).min(dim=1)
        if fallback == "drop":
            found[rows] = closest < d_ap[rows] + margin
        else:
            found[rows] = True
            farthest = torch.where(row_neg, row_d, -inf).argmax(dim=1)
            index = torch.where(torch.isfinite(closest), index, farthest)
        chosen[rows] = index
    return a[found], p[found], chosen[found]
