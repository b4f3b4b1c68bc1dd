"""Deliberately naive references: explicit loops over Python floats, from the papers.

Written independently of contrastkit's vectorized code (no torch arithmetic) so that
agreement means something. Inputs are nested lists (or tensors turned into lists).
"""

from __future__ import annotations

import math


def as_rows(t) -> list[list[float]]:
    return [[float(v) for v in row] for row in t.tolist()] if hasattr(t, "tolist") else t


def norm(u: list[float]) -> float:
    return math.sqrt(sum(v * v for v in u))


def cosine_similarity(u: list[float], v: list[float]) -> float:
    # rows shorter than 1e-12 are divided by 1e-12, as torch.nn.functional.normalize does
    # (a zero row has similarity 0 with everything)
    nu, nv = max(norm(u), 1e-12), max(norm(v), 1e-12)
    return sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv)


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def distance(u: list[float], v: list[float], name: str) -> float:
    if name == "euclidean":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True)))
    if name == "squared_euclidean":
        return sum((a - b) ** 2 for a, b in zip(u, v, strict=True))
    if name == "manhattan":
        return sum(abs(a - b) for a, b in zip(u, v, strict=True))
    if name == "cosine":
        return 1.0 - cosine_similarity(u, v)
    raise KeyError(name)


def similarity(u: list[float], v: list[float], normalize: bool) -> float:
    return cosine_similarity(u, v) if normalize else dot(u, v)


def reduce(values: list[float], reduction: str):
    if reduction == "mean":
        return sum(values) / len(values)
    if reduction == "sum":
        return sum(values)
    return values


def contrastive(x1, x2, y, *, margin, dist="euclidean", legacy=False, reduction="mean"):
    """Hadsell et al. 2006 / Caffe: 1/(2N) sum y d^2 + (1-y) max(m - d, 0)^2."""
    x1, x2 = as_rows(x1), as_rows(x2)
    labels = [float(v) for v in y.tolist()] if hasattr(y, "tolist") else y
    losses = []
    for u, v, label in zip(x1, x2, labels, strict=True):
        d = distance(u, v, dist)
        far = max(margin - d * d, 0.0) if legacy else max(margin - d, 0.0) ** 2
        losses.append((label * d * d + (1.0 - label) * far) / 2.0)
    return reduce(losses, reduction)


def triplet(anchor, positive, negative, *, margin, dist="euclidean", reduction="mean"):
    losses = []
    for a, p, n in zip(as_rows(anchor), as_rows(positive), as_rows(negative), strict=True):
        losses.append(max(distance(a, p, dist) - distance(a, n, dist) + margin, 0.0))
    return reduce(losses, reduction)


def _neg_log_softmax_at(logits: list[float], target: int) -> float:
    top = max(logits)
    total = sum(math.exp(v - top) for v in logits)
    return -(logits[target] - top - math.log(total))


def info_nce(
    query,
    key,
    *,
    temperature,
    normalize=True,
    symmetric=False,
    negatives=None,
    reduction="mean",
):
    """van den Oord et al. 2018; CLIP (Radford et al. 2021) when symmetric."""
    q, k = as_rows(query), as_rows(key)
    n = len(q)
    losses = []
    for i in range(n):
        logits = [similarity(q[i], k[j], normalize) / temperature for j in range(n)]
        if negatives is not None:
            if negatives.dim() == 2:
                extra = as_rows(negatives)
            else:
                extra = as_rows(negatives[i])
            logits += [similarity(q[i], e, normalize) / temperature for e in extra]
        loss = _neg_log_softmax_at(logits, i)
        if symmetric:
            column = [similarity(q[j], k[i], normalize) / temperature for j in range(n)]
            loss = (loss + _neg_log_softmax_at(column, i)) / 2.0
        losses.append(loss)
    return reduce(losses, reduction)


def nt_xent(z1, z2, *, temperature, reduction="mean"):
    """SimCLR, Algorithm 1: l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t)."""
    a, b = as_rows(z1), as_rows(z2)
    n = len(a)
    views = []
    for i in range(n):  # SimCLR interleaves the two views of example k at 2k-1 and 2k
        views.append(a[i])
        views.append(b[i])

    def ell(i: int, j: int) -> float:
        numerator = math.exp(cosine_similarity(views[i], views[j]) / temperature)
        denominator = sum(
            math.exp(cosine_similarity(views[i], views[k]) / temperature)
            for k in range(2 * n)
            if k != i
        )
        return -math.log(numerator / denominator)

    per_anchor_first = [ell(2 * k, 2 * k + 1) for k in range(n)]
    per_anchor_second = [ell(2 * k + 1, 2 * k) for k in range(n)]
    # contrastkit orders "none" as all anchors of z1, then all anchors of z2
    return reduce(per_anchor_first + per_anchor_second, reduction)


def supcon(embeddings, labels, *, temperature, normalize=True, reduction="mean"):
    """Khosla et al. 2020, L_out; anchors without positives left out of the mean."""
    z = as_rows(embeddings)
    labels = [int(v) for v in labels.tolist()]
    n = len(z)

    def s(i: int, j: int) -> float:
        return similarity(z[i], z[j], normalize) / temperature

    losses, counted = [], 0
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            losses.append(0.0)
            continue
        counted += 1
        denominator = sum(math.exp(s(i, a)) for a in range(n) if a != i)
        total = sum(math.log(math.exp(s(i, p)) / denominator) for p in positives)
        losses.append(-total / len(positives))
    if reduction == "mean":
        return sum(losses) / counted if counted else 0.0
    return reduce(losses, reduction)


def cosine_similarity_mse(x1, x2, score, *, reduction="mean"):
    scores = [float(v) for v in score.tolist()]
    losses = [
        (cosine_similarity(u, v) - s) ** 2
        for u, v, s in zip(as_rows(x1), as_rows(x2), scores, strict=True)
    ]
    return reduce(losses, reduction)
