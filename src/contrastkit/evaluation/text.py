r"""Evaluation of sentence embeddings as the field reports it.

* :func:`similarity_correlation`: the STS protocol. The cosine similarity of each pair
  of embeddings against the gold scores, by the Pearson and the Spearman correlation (as
  sentence-transformers' ``EmbeddingSimilarityEvaluator``; Reimers & Gurevych 2019 report
  Spearman's :math:`\rho`, Agirre et al. define the task).
* :func:`anchor_positive_retrieval`: each anchor searches every row's positive; MRR@10
  and recall@k (the definitions of sentence-transformers'
  ``InformationRetrievalEvaluator`` for one relevant document).
* :func:`pair_verification_metrics`: labelled pairs, by
  :func:`contrastkit.evaluation.metrics.verification_metrics` on the cosine distance
  :math:`1 - \cos`.
* :func:`cosine_similarities`: the cosine similarity of each row pair, in float64.

Embeddings may be torch tensors (on any device, with or without gradient: they are
detached and copied to the CPU), numpy arrays or lists; they are compared in float64.
Every function checks its inputs before computing and returns Python floats.

Example:
    >>> import torch
    >>> from contrastkit.evaluation.text import similarity_correlation
    >>> left = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    >>> right = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # cosines 1, 0.71, 0
    >>> similarity_correlation(left, right, [5.0, 3.0, 0.5])["spearman"]
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_embeddings, check_positive_int
from contrastkit.distances import normalize, paired_distance, paired_similarity
from contrastkit.evaluation._checks import (
    ArrayLike,
    check_1d_array,
    check_binary,
    check_both_classes,
    check_finite_array,
    check_ks,
    check_real_array,
    check_values,
)
from contrastkit.evaluation.metrics import verification_metrics

__all__ = [
    "anchor_positive_retrieval",
    "cosine_similarities",
    "pair_verification_metrics",
    "similarity_correlation",
]

# Entries of the similarity matrix held at once: a chunk of anchors has
# max(1, _CHUNK_ELEMENTS // number of positives) rows.
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _embeddings(name: str, x: object) -> Tensor:
    """Finite ``(N, D)`` real embeddings, as a float64 CPU tensor."""
    a = check_real_array(name, x)
    if a.dtype.kind == "b":
        raise TypeError(f"{name} must hold real-valued embeddings, got dtype bool")
    t = check_embeddings(name, torch.from_numpy(np.ascontiguousarray(a)))
    check_finite_array(name, a)
    return t.to(torch.float64)


def _row_pairs(
    left: object, right: object, names: tuple[str, str] = ("left", "right")
) -> tuple[Tensor, Tensor]:
    x, y = _embeddings(names[0], left), _embeddings(names[1], right)
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have one shape (row i of one pairs with row i "
            f"of the other), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y


def cosine_similarities(left: ArrayLike, right: ArrayLike) -> Tensor:
    r"""The cosine similarity of row ``i`` of ``left`` with row ``i`` of ``right``.

    .. math::
        \cos(u, v) = \frac{u^\top v}{\lVert u \rVert \, \lVert v \rVert}

    computed in float64 by :func:`contrastkit.distances.paired_similarity` (a zero row
    has similarity 0 with every row).

    Args:
        left: ``(N, D)`` finite embeddings.
        right: ``(N, D)`` finite embeddings.

    Returns:
        ``(N,)`` float64 similarities in ``[-1, 1]``, on the CPU.

    Example:
        >>> cosine_similarities([[1.0, 0.0], [3.0, 4.0]], [[2.0, 0.0], [-3.0, -4.0]]).tolist()
        [1.0, -1.0]
    """
    x, y = _row_pairs(left, right)
    return paired_similarity(x, y, "cosine")


# --------------------------------------------------------------------------------------
# STS: correlation with gold scores
# --------------------------------------------------------------------------------------


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of ``a``, tied values sharing the mean of their ranks.

    ``scipy.stats.rankdata(a, method="average")``: a group of tied values that would take
    the ranks :math:`s+1, …, e` takes :math:`(s + 1 + e) / 2` each.
    """
    order = np.argsort(a, kind="stable")
    ordered = a[order]
    starts_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], a.size)
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(starts_group) - 1]
    return ranks


def _centred(x: np.ndarray) -> np.ndarray:
    """``x`` less its mean, on a scale where the spread of ``x`` is 1.

    The smallest value is subtracted first: where values are close this is exact
    (Sterbenz), so differences of a few units in the last place survive (``x - mean(x)``
    would round them away when the mean falls on one of the values).
    """
    d = x - x.min()
    d = d / d.max()  # in [0, 1]: x is not constant
    return d - d.mean()


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two non-constant float64 vectors with values of magnitude <= 1.

    ``scipy.stats.pearsonr``'s value; the denominator is the square root of one product,
    so that a vector against itself gives exactly 1.
    """
    xm, ym = _centred(x), _centred(y)
    r = float(np.dot(xm, ym) / math.sqrt(float(np.dot(xm, xm)) * float(np.dot(ym, ym))))
    return min(1.0, max(-1.0, r))


def _not_constant(name: str, a: np.ndarray, meaning: str) -> None:
    if a.min() == a.max():
        raise ValueError(
            f"{name} are all equal ({a[0]:g} for each of the {a.size} pairs): {meaning}, "
            "and a correlation with a constant is undefined"
        )


def similarity_correlation(
    left: ArrayLike, right: ArrayLike, scores: ArrayLike
) -> dict[str, float]:
    r"""Pearson and Spearman correlation of the pairs' cosine similarities with gold scores.

    The semantic textual similarity (STS) protocol: embed both texts of each pair, take
    their cosine similarity :math:`c_i = \cos(u_i, v_i)` (:func:`cosine_similarities`)
    and correlate it with the gold scores :math:`s_i` over the :math:`n` pairs:

    .. math::
        r = \frac{\sum_i (c_i - \bar c)(s_i - \bar s)}
            {\sqrt{\sum_i (c_i - \bar c)^2} \sqrt{\sum_i (s_i - \bar s)^2}}, \qquad
        \rho = r\big(\mathrm{rank}(c), \mathrm{rank}(s)\big)

    where :math:`\mathrm{rank}` gives tied values the mean of the ranks they span
    (``scipy.stats.rankdata(method="average")``), so :math:`\rho` is
    ``scipy.stats.spearmanr`` and :math:`r` is ``scipy.stats.pearsonr``, computed in
    float64. This is sentence-transformers' ``EmbeddingSimilarityEvaluator`` with the
    cosine similarity (its ``pearson_cosine`` and ``spearman_cosine``); Spearman's
    :math:`\rho` is the number papers report. Both are invariant to a linear map of the
    scores with a positive slope, so the scores go in as written (0 to 5 for STS).

    Args:
        left: ``(n, D)`` embeddings of the first texts.
        right: ``(n, D)`` embeddings of the second texts.
        scores: ``(n,)`` finite gold similarity scores.

    Returns:
        ``{"pearson": r, "spearman": rho}``, floats in ``[-1, 1]``.

    Raises:
        ValueError: shapes that do not match, fewer than 2 pairs, non-finite values, or
            constant similarities or scores (a correlation would be NaN).
        TypeError: inputs that are not real arrays.

    Example:
        >>> import torch
        >>> left = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
        >>> right = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> out = similarity_correlation(left, right, [4.0, 4.0, 1.0, 0.0])  # a tie
        >>> round(out["pearson"], 4), round(out["spearman"], 4)
        (0.9518, 0.9487)

    References:
        N. Reimers, I. Gurevych. *Sentence-BERT: Sentence Embeddings using Siamese
        BERT-Networks.* EMNLP 2019, section 4.1 (Spearman's rank correlation between
        the cosine similarity and the gold labels).
        E. Agirre, D. Cer, M. Diab, A. Gonzalez-Agirre. *SemEval-2012 Task 6: A Pilot on
        Semantic Textual Similarity.* SemEval 2012 (the task and its 0-5 scores).
    """
    x, y = _row_pairs(left, right)
    s = check_values("scores", scores, item="score", what="scores")
    if s.shape[0] != x.shape[0]:
        raise ValueError(
            f"scores must hold one score per pair, {x.shape[0]} (the rows of left and "
            f"right), got {s.shape[0]}"
        )
    if s.shape[0] < 2:
        raise ValueError(f"a correlation needs at least 2 pairs, got {s.shape[0]}")
    _not_constant("scores", s, "the gold scores do not order the pairs")
    c = paired_similarity(x, y, "cosine").numpy()
    _not_constant(
        "the cosine similarities of left and right",
        c,
        "the embeddings do not order the pairs",
    )
    # scaling by a power of two is exact and changes neither correlation; it keeps the
    # differences of huge scores from overflowing
    s = np.ldexp(s, -int(np.frexp(np.abs(s).max())[1]))
    return {
        "pearson": _pearson(c, s),
        "spearman": _pearson(_average_ranks(c), _average_ranks(s)),
    }


# --------------------------------------------------------------------------------------
# Retrieval: anchors searching the positives
# --------------------------------------------------------------------------------------


def _document_ids(ids: object, n: int) -> Tensor:
    """``ids`` as ``0 … m-1`` (equal ids equal), or each row its own document."""
    if ids is None:
        return torch.arange(n)
    a = check_1d_array("ids", ids, item="id")
    if a.dtype.kind not in "iu":
        raise TypeError(f"ids must be integer ids (text_ids(positives)), got dtype {a.dtype}")
    if a.shape[0] != n:
        raise ValueError(f"ids must hold one id per positive, {n}, got shape {a.shape}")
    return torch.unique(torch.from_numpy(a.astype(np.int64)), return_inverse=True)[1]


def _ranks(u: Tensor, v: Tensor, doc: Tensor) -> Tensor:
    """The rank (1-based) of each anchor's own document among the documents it searches."""
    n, n_docs = v.shape[0], int(doc.max()) + 1
    chunk = max(1, _CHUNK_ELEMENTS // n)
    index = torch.arange(n)
    ranks = []
    for start in range(0, u.shape[0], chunk):
        rows = torch.arange(start, min(start + chunk, u.shape[0]))
        sim = u[rows] @ v.T
        relevant = doc[None, :] == doc[rows, None]
        best = torch.where(relevant, sim, -math.inf).amax(dim=1, keepdim=True)
        # the first copy in ranking order: the best similarity, then the lowest index
        first = (relevant & (sim == best)).to(torch.uint8).argmax(dim=1, keepdim=True)
        ahead = (sim > best) | ((sim == best) & (index[None, :] < first))
        if n_docs == n:  # no copies: each row ahead is one document ahead
            ranks.append(1 + ahead.sum(dim=1))
            continue
        row, column = ahead.nonzero(as_tuple=True)
        documents_ahead = torch.zeros(rows.numel(), n_docs, dtype=torch.bool)
        documents_ahead[row, doc[column]] = True
        ranks.append(1 + documents_ahead.sum(dim=1))
    return torch.cat(ranks)


def anchor_positive_retrieval(
    anchors: ArrayLike,
    positives: ArrayLike,
    *,
    ks: Sequence[int] = (1, 5, 10),
    mrr_at: int = 10,
    ids: ArrayLike | None = None,
) -> dict[str, float]:
    r"""Retrieval of each anchor's positive among all the positives: MRR@k and recall@k.

    Row :math:`i` is a query (``anchors[i]``) whose one relevant document is its own
    positive (``positives[i]``); the corpus is every positive. Each anchor ranks the
    corpus by cosine similarity, largest first, ties going to the lower row. With
    :math:`r_i` the rank of the relevant document of anchor :math:`i` (1 = first),

    .. math::
        \mathrm{MRR@}m = \frac{1}{n} \sum_{i=1}^{n}
            \begin{cases} 1 / r_i & r_i \le m \\ 0 & \text{otherwise} \end{cases},
        \qquad
        \mathrm{recall@}k = \frac{1}{n} \sum_{i=1}^{n} [\, r_i \le k \,],

    the definitions of sentence-transformers' ``InformationRetrievalEvaluator`` for one
    relevant document per query (its recall@k, the relevant documents among the top
    :math:`k` over all relevant documents, is then 0 or 1). A :math:`k` as large as the
    corpus looks at all of it (recall 1), as there.

    **Copies.** With ``ids`` (the positives' text ids, :func:`contrastkit.data.text.text_ids`
    of the positive texts) the positives that share an id are copies of one document: a
    copy of its own positive is no wrong answer to an anchor, and a copy of another
    document does not push its answer down twice. The corpus is then the distinct ids,
    each placed where its best-ranked copy is: :math:`r_i` is one plus the number of other
    documents with a copy ranked before the first copy of anchor :math:`i`'s own. Without
    ``ids`` every row is its own document.

    Args:
        anchors: ``(n, D)`` embeddings of the anchors (queries).
        positives: ``(n, D)`` embeddings of their positives, row by row.
        ks: the cut-offs of recall@k, positive and distinct.
        mrr_at: the cut-off :math:`m` of the reciprocal rank.
        ids: optional ``(n,)`` integer ids of the positives; equal ids, one document.

    Returns:
        ``{"mrr_at_<m>": …, "recall_at_<k>": …}`` (each ``k`` in the order given), floats
        in ``[0, 1]``.

    Raises:
        ValueError: shapes that do not match, non-finite values, bad ``ks`` or ``mrr_at``.
        TypeError: inputs that are not real arrays, ids that are not integers.

    Example:
        >>> import torch
        >>> anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> positives = torch.tensor([[1.0, 0.1], [1.0, 0.2], [0.0, 1.0]])
        >>> out = anchor_positive_retrieval(anchors, positives, ks=(1, 2))  # ranks 1, 2, 3
        >>> {key: round(value, 4) for key, value in out.items()}  # MRR (1 + 1/3 + 1/2) / 3
        {'mrr_at_10': 0.6111, 'recall_at_1': 0.3333, 'recall_at_2': 0.6667}

    References:
        E. M. Voorhees. *The TREC-8 Question Answering Track Report.* TREC 1999 (the
        mean reciprocal rank). N. Reimers, I. Gurevych. *Sentence-BERT*, EMNLP 2019, and
        sentence-transformers' ``InformationRetrievalEvaluator`` (MRR@10, recall@k).
    """
    values = check_ks(ks)
    m = check_positive_int("mrr_at", mrr_at)
    a, p = _row_pairs(anchors, positives, ("anchors", "positives"))
    doc = _document_ids(ids, p.shape[0])
    r = _ranks(normalize(a), normalize(p), doc).to(torch.float64)
    result = {f"mrr_at_{m}": float(torch.where(r <= m, 1.0 / r, 0.0).mean())}
    for k in values:
        result[f"recall_at_{k}"] = float((r <= k).to(torch.float64).mean())
    return result


# --------------------------------------------------------------------------------------
# Verification of labelled pairs
# --------------------------------------------------------------------------------------


def pair_verification_metrics(
    val_left: ArrayLike,
    val_right: ArrayLike,
    val_labels: ArrayLike,
    test_left: ArrayLike,
    test_right: ArrayLike,
    test_labels: ArrayLike,
    *,
    fars: Sequence[float] = (1e-2, 1e-3),
) -> dict[str, float]:
    r"""Verification metrics of labelled text pairs, from their cosine distance.

    :func:`contrastkit.evaluation.metrics.verification_metrics` on the distance
    :math:`d = 1 - \cos(u, v)` of each pair (a pair is accepted as similar when
    :math:`d \le t`): ROC-AUC, EER and TAR@FAR on the test pairs, and the accuracy at
    the threshold :math:`t` chosen on the validation pairs. The ``"threshold"`` is a
    cosine *distance*; the similarity threshold is :math:`1 - t`. With a single set of
    pairs, pass it as both: the accuracy is then that at its own best threshold
    (optimistic).

    Args:
        val_left: ``(n_val, D)`` embeddings of the first texts of the validation pairs.
        val_right: ``(n_val, D)`` embeddings of the second texts.
        val_labels: ``(n_val,)`` labels, 1 = similar, 0 = dissimilar; both occur.
        test_left: ``(n_test, D)`` embeddings of the first texts of the test pairs.
        test_right: ``(n_test, D)`` embeddings of the second texts.
        test_labels: ``(n_test,)`` labels; both occur.
        fars: the false accept rates of TAR@FAR, in ``(0, 1)``.

    Returns:
        The dict of :func:`~contrastkit.evaluation.metrics.verification_metrics`.

    Example:
        >>> import torch
        >>> left = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
        >>> right = torch.tensor([[1.0, 0.1], [1.0, 0.5], [0.0, 1.0], [-1.0, 0.2]])
        >>> out = pair_verification_metrics(left, right, [1, 1, 0, 0], left, right, [1, 1, 0, 0])
        >>> out["roc_auc"], out["accuracy"]
        (1.0, 1.0)
    """
    val_d = _pair_distances(val_left, val_right, val_labels, "val")
    test_d = _pair_distances(test_left, test_right, test_labels, "test")
    return verification_metrics(val_d, val_labels, test_d, test_labels, fars=fars)


def _pair_distances(left: object, right: object, labels: object, split: str) -> np.ndarray:
    """The cosine distance of each pair, its labels checked under the caller's names."""
    x, y = _row_pairs(left, right, (f"{split}_left", f"{split}_right"))
    d = paired_distance(x, y, "cosine").numpy()
    same = check_binary(f"{split}_labels", labels, f"{split}_left", d)
    check_both_classes(f"{split}_labels", same)
    return d
