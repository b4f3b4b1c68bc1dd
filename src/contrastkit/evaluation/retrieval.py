r"""Retrieval metrics for embeddings: precision@1, recall@k and MAP@R.

Each query ranks a gallery by a distance from :data:`contrastkit.distances.DISTANCES`
and the metrics check whether the nearest items share the query's class label. Without
a separate gallery every sample queries all the others (leave-one-out); with
``gallery=`` and ``gallery_labels=`` the queries search the gallery and nothing is
excluded. Ties in distance are broken by gallery index (the lower index ranks first). A
query with no relevant item (no other sample of its class) is left out of every
average; if no query is left a :class:`ValueError` is raised.

* :func:`precision_at_1`, :func:`recall_at_k`, :func:`map_at_r`;
* :func:`retrieval_metrics`: all three from one ranking.

**Cost.** Only the first :math:`K` items of each ranking are looked at: :math:`K = 1`
for precision@1, the largest ``k`` for recall@k and, for MAP@R, the largest number
:math:`R` of relevant items of a query (its class size, less one in leave-one-out
mode). Distances are computed for a chunk of queries at a time (so memory stays
proportional to ``chunk * gallery size``, never to the square of the number of
samples), and :func:`torch.topk` picks each query's :math:`K` nearest items, which are
then put in the order a stable sort of the whole row would give: by distance, ties by
index, also where items tied with the :math:`K`-th are left out. Where :math:`K`
exceeds half the gallery, the chunk is sorted in full instead. The values are those of
a full stable sort of every row, bit for bit.

**Backends.** ``backend="torch"`` (the default) is the exact computation above.
``backend="faiss"`` searches a flat (exact, brute-force) `faiss
<https://github.com/facebookresearch/faiss>`_ index instead, which needs the optional
``faiss`` package (``pip install faiss-cpu``); ``backend="auto"`` takes faiss where it
can be imported and torch otherwise. faiss computes the distances in float32 with its
own arithmetic (squared L2 for ``"euclidean"`` and ``"squared_euclidean"``, inner
products of unit rows for ``"cosine"``, L1 for ``"manhattan"``), so:

* on data without ties its values are those of the torch backend, except where two
  distances are so close that rounding (about ``1e-7`` relative) orders them
  differently;
* among exactly equal distances (duplicate embeddings, for instance) the order is
  faiss's, not the lower index first, and so is the choice of which tied items make
  the first :math:`K`: with ties the two backends may differ.

Inputs may be torch tensors (on any device, with or without gradient: they are
detached and copied to the CPU), numpy arrays or lists. Every function checks its
inputs before computing and returns Python floats.

Example:
    >>> import torch
    >>> from contrastkit.evaluation.retrieval import retrieval_metrics
    >>> emb = torch.tensor([[0.0], [0.1], [1.0], [1.3], [2.0], [9.0]])
    >>> labels = torch.tensor([0, 0, 1, 1, 0, 2])  # 9.0 is alone in class 2: left out
    >>> retrieval_metrics(emb, labels, ks=(1, 3))
    {'precision_at_1': 0.8, 'recall_at_1': 0.8, 'recall_at_3': 1.0, 'map_at_r': 0.6}
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import (
    check_choice,
    check_class_labels,
    check_embeddings,
    check_finite,
    check_positive_int,
    compute_dtype,
)
from contrastkit.distances import (
    DistanceName,
    distance_matrix,
    get_distance,
    normalize,
    power_of_two_scale,
)
from contrastkit.evaluation._checks import ArrayLike, check_ks, to_numpy

__all__ = [
    "RetrievalBackend",
    "map_at_r",
    "precision_at_1",
    "recall_at_k",
    "retrieval_metrics",
]

RetrievalBackend = Literal["torch", "faiss", "auto"]
"""How the nearest items are found: torch (exact, the default), faiss, or faiss if installed."""

_BACKENDS = ("torch", "faiss", "auto")

# Upper bound on the number of distance-matrix entries held at once by the torch
# backend: a chunk of queries has max(1, _CHUNK_ELEMENTS // gallery_size) rows. The
# same chunks group the sums, whichever the backend.
_CHUNK_ELEMENTS = 1 << 22

# Where the K nearest of a row are more than this fraction of the row, the chunk is
# sorted in full: torch.topk and then sorting the K would cost as much.
_TOPK_MAX_FRACTION = 0.5

# The faiss backend searches this many queries at once (at least one chunk), so that
# its matrix products are large enough to be efficient.
_FAISS_QUERIES = 4096


# --------------------------------------------------------------------------------------
# Input checks
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


def _import_faiss() -> ModuleType | None:
    """The faiss module, or None where it cannot be imported."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


def _check_backend(backend: object) -> str:
    """``"torch"`` or ``"faiss"``: the backend to use (``"auto"`` resolved)."""
    if not isinstance(backend, str):  # the wrong kind of object: a TypeError, not a value
        raise TypeError(
            f"backend must be one of {sorted(_BACKENDS)}, got {type(backend).__name__} {backend!r}"
        )
    backend = check_choice("backend", backend, _BACKENDS)
    if backend == "torch":
        return "torch"
    if _import_faiss() is None:
        if backend == "faiss":
            raise ImportError(
                "backend='faiss' needs the faiss package (pip install faiss-cpu), which "
                "cannot be imported; use backend='torch' or backend='auto'"
            )
        return "torch"
    return "faiss"


def _prepare_retrieval(
    embeddings: object,
    labels: object,
    distance: str,
    gallery: object,
    gallery_labels: object,
    backend: object,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, str, str]:
    """Validated (queries, query labels, gallery or None, gallery labels, distance, backend)."""
    metric = get_distance(distance)
    if (gallery is None) != (gallery_labels is None):
        missing = "gallery_labels" if gallery_labels is None else "gallery"
        raise ValueError(f"gallery and gallery_labels go together: {missing} is missing")
    queries = _as_float_tensor("embeddings", embeddings)
    query_labels = _as_label_tensor("labels", labels, "embeddings", queries)
    items: Tensor | None = None
    item_labels = query_labels
    if gallery is not None:
        items = _as_float_tensor("gallery", gallery)
        if items.shape[1] != queries.shape[1]:
            raise ValueError(
                f"gallery must have as many features as embeddings, got shapes "
                f"{tuple(items.shape)} and {tuple(queries.shape)}"
            )
        item_labels = _as_label_tensor("gallery_labels", gallery_labels, "gallery", items)
        dtype = torch.promote_types(queries.dtype, items.dtype)
        queries, items = queries.to(dtype), items.to(dtype)
    resolved = _check_backend(backend)
    return queries, query_labels, items, item_labels, metric.name, resolved


def _relevant_counts(query_labels: Tensor, item_labels: Tensor, leave_one_out: bool) -> Tensor:
    """Number of relevant gallery items per query, from labels alone."""
    classes, counts = torch.unique(item_labels, return_counts=True)
    where = torch.searchsorted(classes, query_labels).clamp_max(classes.numel() - 1)
    found = classes[where] == query_labels
    r = torch.where(found, counts[where], 0)
    return r - 1 if leave_one_out else r


def _check_ks(ks: object, gallery_size: int, leave_one_out: bool) -> list[int]:
    values = check_ks(ks)
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


# --------------------------------------------------------------------------------------
# The first K items of each ranking
# --------------------------------------------------------------------------------------


class _Distances:
    """Distances from chunks of queries to one gallery, those of :func:`distance_matrix`.

    What depends on the gallery alone is computed once, not once per chunk: for the
    Euclidean kinds, queries and gallery divided by one power of two near their largest
    magnitude (:func:`~contrastkit.distances.power_of_two_scale`, as
    :func:`distance_matrix` does for its inputs) and the gallery's squared norms; for
    the cosine, the gallery's unit rows. Dividing by a power of two is exact, so each
    chunk's distances are ``distance_matrix(queries[rows], gallery)`` bit for bit, and
    rows too large to square keep finite distances.
    """

    def __init__(self, queries: Tensor, items: Tensor, distance: str) -> None:
        self.queries, self.items, self.distance = queries, items, distance
        if distance in ("euclidean", "squared_euclidean"):
            self.scale = power_of_two_scale(queries, items)
            self.queries, self.items = queries / self.scale, items / self.scale
            self.item_norms = self.items.pow(2).sum(dim=-1)
        elif distance == "cosine":
            self.unit_items = normalize(items)

    def __call__(self, rows: Tensor) -> Tensor:
        x = self.queries[rows]
        # in place where distance_matrix makes a new tensor: the same values, less memory
        if self.distance in ("euclidean", "squared_euclidean"):
            sums = x.pow(2).sum(dim=-1)[:, None] + self.item_norms[None, :]
            squared = torch.addmm(sums, x, self.items.T, alpha=-2.0).clamp_min_(0.0)
            if self.distance == "euclidean":
                return squared.sqrt_().mul_(self.scale)
            return squared.mul_(self.scale).mul_(self.scale)
        if self.distance == "cosine":  # 1 - s computed as -s + 1: the same rounding
            return (normalize(x) @ self.unit_items.T).neg_().add_(1.0).clamp_(0.0, 2.0)
        return distance_matrix(x, self.items, self.distance)  # type: ignore[arg-type]


def _lowest_tied(d: Tensor, kth: Tensor, k: int) -> Tensor:
    """The columns below ``kth``, then the lowest-index ones equal to it: ``k`` per row."""
    below = d < kth
    equal = d == kth
    room = k - below.sum(dim=1, keepdim=True)
    take = below | (equal & (equal.cumsum(dim=1) <= room))
    return take.nonzero()[:, 1].view(d.shape[0], k)


def _smallest(d: Tensor, k: int) -> Tensor:
    """``torch.sort(d, dim=1, stable=True).indices[:, :k]``, without sorting whole rows.

    :func:`torch.topk` finds the ``k + 1`` smallest of each row in order of distance, ties
    in any order. Where the ``k``-th and the ``(k + 1)``-th differ, the first ``k`` are the
    right items; where they are equal, other items may tie with them too, and the row's
    items below the ``k``-th distance are taken with the lowest-index ones equal to it.
    Then the ``k`` are ordered by distance, ties by index.
    """
    m = d.shape[1]
    if k >= m or k > _TOPK_MAX_FRACTION * m:
        return torch.sort(d, dim=1, stable=True).indices[:, :k]
    values, index = torch.topk(d, k + 1, dim=1, largest=False, sorted=True)
    kth, after = values[:, k - 1], values[:, k]
    values, index = values[:, :k], index[:, :k]
    tied = (kth == after).nonzero().squeeze(1)
    if tied.numel():
        index[tied] = _lowest_tied(d[tied], kth[tied, None], k)
    # NaN (an overflowed distance) among the first k: a full sort places NaN last
    odd = kth.isnan().nonzero().squeeze(1)
    if odd.numel():
        index[odd] = torch.sort(d[odd], dim=1, stable=True).indices[:, :k]
    if tied.numel() or odd.numel():
        values = d.gather(1, index)
    index, by_index = index.sort(dim=1)
    order = torch.sort(values.gather(1, by_index), dim=1, stable=True).indices
    return index.gather(1, order)


def _drop_self(ranking: Tensor, rows: Tensor, k: int) -> Tensor:
    """The first ``k`` of ``k + 1`` ranked items once each query's own index is removed."""
    is_self = ranking == rows[:, None]
    where = torch.where(is_self.any(dim=1), is_self.long().argmax(dim=1), k)
    columns = torch.arange(k)[None, :]
    return ranking.gather(1, columns + (columns >= where[:, None]).long())


def _nearest_torch(distances: _Distances, rows: Tensor, k: int, leave_one_out: bool) -> Tensor:
    """The ``k`` nearest items of the queries ``rows``: ``(len(rows), k)`` item indices."""
    d = distances(rows)
    if not leave_one_out:
        return _smallest(d, k)
    if k + 1 > _TOPK_MAX_FRACTION * d.shape[1]:  # as before: sort, then drop the query
        ranking = torch.sort(d, dim=1, stable=True).indices
        ranking = ranking[ranking != rows[:, None]].view(rows.numel(), d.shape[1] - 1)
        return ranking[:, :k]
    return _drop_self(_smallest(d, k + 1), rows, k)


class _FaissSearch:
    """A flat faiss index over the gallery, searched for the nearest items of queries."""

    def __init__(self, faiss: ModuleType, queries: Tensor, items: Tensor, distance: str) -> None:
        def rows(t: Tensor) -> np.ndarray:
            if distance == "cosine":
                t = normalize(t)
            return np.ascontiguousarray(t.numpy(), dtype=np.float32)

        dim = items.shape[1]
        if distance == "cosine":
            self.index = faiss.IndexFlatIP(dim)
        elif distance == "manhattan":
            self.index = faiss.IndexFlat(dim, faiss.METRIC_L1)
        else:
            self.index = faiss.IndexFlatL2(dim)
        self.queries = rows(queries)
        self.index.add(self.queries if items is queries else rows(items))

    def nearest(self, rows: Tensor, k: int, leave_one_out: bool) -> Tensor:
        """The ``k`` nearest items of the queries ``rows``, as faiss orders them."""
        want = k + 1 if leave_one_out else k
        _, found = self.index.search(self.queries[rows.numpy()], want)
        if (found < 0).any():
            raise RuntimeError(f"faiss found fewer than {want} items for some queries")
        ranking = torch.from_numpy(found).long()
        return _drop_self(ranking, rows, k) if leave_one_out else ranking


# --------------------------------------------------------------------------------------
# The metrics from the rankings
# --------------------------------------------------------------------------------------


def _chunks(valid: Tensor, chunk: int) -> Iterator[Tensor]:
    """Each chunk's rows that have a relevant item (chunks without any are skipped)."""
    for start in range(0, valid.numel(), chunk):
        stop = min(start + chunk, valid.numel())
        keep = valid[start:stop]
        if bool(keep.any()):
            yield torch.arange(start, stop)[keep]


def _retrieval(
    queries: Tensor,
    query_labels: Tensor,
    gallery: Tensor | None,
    gallery_labels: Tensor,
    distance: str,
    ks: Sequence[int],
    *,
    need_map: bool = True,
    backend: str = "torch",
) -> dict[str, float]:
    """The first ``K`` of each query's ranking, reduced to P@1, R@k for each k and MAP@R."""
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
    k_recall = max(ks, default=1)

    def depth(rows: Tensor) -> int:
        """How many of the ranked items the metrics of these queries look at."""
        return max(k_recall, int(relevant[rows].max())) if need_map else k_recall

    chunk = max(1, _CHUNK_ELEMENTS // n_items)
    chunks = list(_chunks(valid, chunk))
    rankings: Iterator[Tensor]
    if backend == "faiss":
        search = _FaissSearch(_faiss_module(), queries, items, distance)
        rankings = _faiss_rankings(search, chunks, depth, leave_one_out)
    else:
        distances = _Distances(queries, items, distance)
        rankings = (_nearest_torch(distances, rows, depth(rows), leave_one_out) for rows in chunks)

    hits_at_1 = 0.0
    recall_hits = dict.fromkeys(ks, 0.0)
    map_sum = 0.0
    for rows, ranking in zip(chunks, rankings, strict=True):
        rel = gallery_labels[ranking] == query_labels[rows, None]
        hits_at_1 += float(rel[:, 0].sum())
        for k in ks:
            recall_hits[k] += float(rel[:, :k].any(dim=1).sum())
        if not need_map:
            continue
        # MAP@R: mean over the first R ranks of precision@i at each relevant rank i
        r = relevant[rows]
        top = rel[:, : int(r.max())]
        ranks = torch.arange(1, top.shape[1] + 1, dtype=torch.float64)
        precision = top.cumsum(dim=1, dtype=torch.float64) / ranks
        within_r = ranks[None, :] <= r[:, None]
        ap = (precision * (top & within_r)).sum(dim=1) / r
        map_sum += float(ap.sum())

    result = {"precision_at_1": hits_at_1 / n_valid}
    for k in ks:
        result[f"recall_at_{k}"] = recall_hits[k] / n_valid
    if need_map:
        result["map_at_r"] = map_sum / n_valid
    return result


def _faiss_module() -> ModuleType:
    faiss = _import_faiss()
    if faiss is None:  # checked before computing; only if it disappeared since
        raise ImportError("backend='faiss' needs the faiss package (pip install faiss-cpu)")
    return faiss


def _faiss_rankings(
    search: _FaissSearch,
    chunks: list[Tensor],
    depth: Callable[[Tensor], int],
    leave_one_out: bool,
) -> Iterator[Tensor]:
    """Each chunk's ranking, from one faiss search per group of chunks."""
    group: list[Tensor] = []
    for i, rows in enumerate(chunks):
        group.append(rows)
        if sum(g.numel() for g in group) < _FAISS_QUERIES and i + 1 < len(chunks):
            continue
        depths = [depth(g) for g in group]
        ranking = search.nearest(torch.cat(group), max(depths), leave_one_out)
        for part, k in zip(ranking.split([g.numel() for g in group]), depths, strict=True):
            yield part[:, :k]
        group = []


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def precision_at_1(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    distance: DistanceName = "euclidean",
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    backend: RetrievalBackend = "torch",
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
        backend: ``"torch"`` (exact), ``"faiss"`` or ``"auto"`` (faiss if installed);
            see the module's notes on faiss and ties.

    Returns:
        P@1 in ``[0, 1]``.

    Raises:
        ValueError: bad shapes, non-finite embeddings, an unknown ``distance`` or
            ``backend``, or no query with a relevant item.
        ImportError: ``backend="faiss"`` without faiss installed.

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
    q, ql, g, gl, name, how = _prepare_retrieval(
        embeddings, labels, distance, gallery, gallery_labels, backend
    )
    return _retrieval(q, ql, g, gl, name, (), need_map=False, backend=how)["precision_at_1"]


def recall_at_k(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 1,
    distance: DistanceName = "euclidean",
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    backend: RetrievalBackend = "torch",
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
        backend: ``"torch"`` (exact), ``"faiss"`` or ``"auto"`` (faiss if installed);
            see the module's notes on faiss and ties.

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
    q, ql, g, gl, name, how = _prepare_retrieval(
        embeddings, labels, distance, gallery, gallery_labels, backend
    )
    n_candidates = q.shape[0] - 1 if g is None else g.shape[0]
    _check_k_fits("k", k, n_candidates, g is None)
    return _retrieval(q, ql, g, gl, name, (k,), need_map=False, backend=how)[f"recall_at_{k}"]


def map_at_r(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    distance: DistanceName = "euclidean",
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    backend: RetrievalBackend = "torch",
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
    Only the first :math:`R` items of each ranking are found, not the whole ranking.

    Args:
        embeddings: ``(N, D)`` finite floating-point query embeddings.
        labels: ``(N,)`` integer class labels of the queries.
        distance: a name from :data:`contrastkit.distances.DISTANCES`.
        gallery: optional ``(M, D)`` gallery embeddings; without it each query searches
            the other ``N - 1`` queries (leave-one-out).
        gallery_labels: ``(M,)`` integer class labels of the gallery (with ``gallery``).
        backend: ``"torch"`` (exact), ``"faiss"`` or ``"auto"`` (faiss if installed);
            see the module's notes on faiss and ties.

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
    q, ql, g, gl, name, how = _prepare_retrieval(
        embeddings, labels, distance, gallery, gallery_labels, backend
    )
    return _retrieval(q, ql, g, gl, name, (), backend=how)["map_at_r"]


def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    distance: DistanceName = "euclidean",
    ks: Sequence[int] = (1, 5, 10),
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    backend: RetrievalBackend = "torch",
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
        backend: ``"torch"`` (exact), ``"faiss"`` or ``"auto"`` (faiss if installed);
            see the module's notes on faiss and ties.

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
    q, ql, g, gl, name, how = _prepare_retrieval(
        embeddings, labels, distance, gallery, gallery_labels, backend
    )
    n_candidates = q.shape[0] - 1 if g is None else g.shape[0]
    k_values = _check_ks(ks, n_candidates, g is None)
    return _retrieval(q, ql, g, gl, name, k_values, backend=how)
