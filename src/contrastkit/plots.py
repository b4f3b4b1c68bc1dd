r"""The figures of a contrastive-learning run, drawn with matplotlib.

* :func:`plot_loss_curve`: the pairwise contrastive loss per pair against the distance,
  as in DrLIM (Hadsell, Chopra & LeCun 2006) and the Caffe siamese tutorial.
* :func:`plot_embedding`: a 2-D map of the embeddings coloured by class (the network
  output itself, PCA or t-SNE).
* :func:`plot_neighbours`: query images beside their nearest neighbours (thumbnails).
* :func:`plot_roc`: the ROC curve of the verification rule :math:`d \le t`, on a linear
  or a logarithmic false-accept axis.
* :func:`plot_anomaly_roc`: the ROC curves of anomaly scores, one colour per score.
* :func:`plot_distance_histograms`: the distances of similar and dissimilar pairs.
* :func:`plot_score_histograms`: the anomaly scores of normal samples and anomalies.
* :func:`plot_history`: training and validation curves per epoch.
* :func:`subplots`: a new figure of several panels, to draw into with ``ax=``.
* :func:`save_figure`: a PNG on disk, never overwriting by accident.

Conventions shared by every plotting function here:

* It returns ``(fig, ax)``. Given ``ax``, it draws into it and returns
  ``(ax.figure, ax)``; otherwise it makes a new
  :class:`matplotlib.figure.Figure` with constrained layout. :mod:`matplotlib.pyplot`
  is never used: no global state, no GUI backend, and ``fig.savefig(path)`` works
  anywhere.
* Data are array-likes: torch tensors (detached and moved to the CPU), numpy arrays or
  lists. They are checked before anything is drawn; bad input raises
  :class:`TypeError` or :class:`ValueError` naming the argument, what was expected and
  what was received.
* Pair labels: ``1`` = similar, ``0`` = dissimilar; similar pairs are drawn in red,
  dissimilar pairs in blue.
* Anomaly labels: ``1`` = anomaly, ``0`` = normal; anomalies are drawn in red, normal
  samples in blue.
* Text is drawn as written: titles, axis labels, legend entries and notes are never
  read as mathtext or TeX, so a class named ``$x$`` shows its dollar signs.

This is the only module of contrastkit that imports matplotlib.

Example:
    >>> import io
    >>> import torch
    >>> from contrastkit.plots import plot_distance_histograms
    >>> d = torch.tensor([0.1, 0.3, 0.2, 1.1, 0.9, 1.4])
    >>> same = torch.tensor([1, 1, 1, 0, 0, 0])
    >>> fig, ax = plot_distance_histograms(d, same, threshold=0.6, bins=10)
    >>> fig.savefig(io.BytesIO(), format="png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import auc, roc_curve
from threadpoolctl import threadpool_limits

from contrastkit._validation import check_bool, check_choice, check_int, check_positive, check_real
from contrastkit.evaluation._checks import (
    check_finite_array,
    check_pairs,
    check_real_array,
    check_scores_and_labels,
    check_values,
)
from contrastkit.evaluation.metrics import step_roc, tar_from_roc
from contrastkit.functional import contrastive_loss

__all__ = [
    "plot_anomaly_roc",
    "plot_distance_histograms",
    "plot_embedding",
    "plot_history",
    "plot_loss_curve",
    "plot_neighbours",
    "plot_roc",
    "plot_score_histograms",
    "plot_similarity_scatter",
    "save_figure",
    "subplots",
]

EmbeddingMethod = Literal["auto", "identity", "pca", "tsne"]
FarAxis = Literal["linear", "log"]

_SIMILAR_COLOR = "tab:red"
_DISSIMILAR_COLOR = "tab:blue"
_ANOMALY_COLOR = "tab:red"
_NORMAL_COLOR = "tab:blue"
_METHODS: tuple[EmbeddingMethod, ...] = ("auto", "identity", "pca", "tsne")
_MAX_LEGEND_CLASSES = 20
_TSNE_SERIAL_BELOW = 1000  # points; smaller t-SNE maps run on one thread
_FAR_AXES = ("linear", "log")
# each anomaly score keeps one colour in every figure; other scores take the next ones
_SCORE_COLORS = {"reconstruction": "C0", "knn": "C1", "centroid": "C2"}
_CHANCE_GID = "contrastkit-chance"
_TAR_GID = "contrastkit-tar-at-far"
# prefix of a history key -> line style; the rest of the key picks the colour
_HISTORY_PREFIXES = {
    "train_": "-",
    "training_": "-",
    "val_": "--",
    "valid_": "--",
    "validation_": "--",
    "test_": ":",
}


# --- checks ------------------------------------------------------------------------


def _figure_and_axes(ax: object, figsize: tuple[float, float]) -> tuple[Figure | SubFigure, Axes]:
    """The figure and axes to draw into: ``ax`` and its figure, or new ones."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.figure, ax


# --- the loss --------------------------------------------------------------------


def plot_loss_curve(
    *,
    margin: float = 1.0,
    caffe_legacy: bool = False,
    max_distance: float | None = None,
    ax: Axes | None = None,
) -> tuple[Figure | SubFigure, Axes]:
    r"""Draw the pairwise contrastive loss of one pair against its distance.

    The curves are computed by :func:`contrastkit.functional.contrastive_loss` itself
    (``reduction="none"``) on 1-D embeddings :math:`x_1 = 0`, :math:`x_2 = d`, so the
    figure shows the library's loss, not a copy of its formula:

    * similar pairs (:math:`y = 1`): :math:`\tfrac12 d^2`, red dashed line;
    * dissimilar pairs (:math:`y = 0`): :math:`\tfrac12 \max(m - d, 0)^2`, blue solid
      line (:math:`\tfrac12 \max(m - d^2, 0)` with ``caffe_legacy=True``).

    A dotted vertical line marks the margin: the distance beyond which a dissimilar
    pair costs nothing, :math:`d = m` (:math:`d = \sqrt m` with ``caffe_legacy=True``,
    whose margin bounds :math:`d^2`). It is drawn when it falls inside the plotted range.

    Args:
        margin: :math:`m > 0`.
        caffe_legacy: draw Caffe's legacy dissimilar term, as in
            :func:`contrastkit.functional.contrastive_loss`.
        max_distance: right end of the distance axis, ``> 0``; by default twice the
            margin distance (:math:`2m`, or :math:`2\sqrt m` with ``caffe_legacy``).
        ax: the axes to draw into; a new figure when ``None``.

    Returns:
        ``(fig, ax)``: the similar-pair line is ``ax.lines[0]``, the dissimilar-pair
        line ``ax.lines[1]`` and the margin marker ``ax.lines[2]``.

    Raises:
        TypeError: ``margin`` or ``max_distance`` is not a real number, ``caffe_legacy``
            not a bool, or ``ax`` not an Axes.
        ValueError: ``margin`` or ``max_distance`` is not finite and > 0.

    Example:
        >>> from contrastkit.plots import plot_loss_curve
        >>> fig, ax = plot_loss_curve(margin=1.0)
        >>> ax.lines[2].get_label()
        'margin m = 1'
        >>> float(ax.lines[1].get_ydata()[0])  # ½ m² at d = 0
        0.5

    Reference:
        R. Hadsell, S. Chopra, Y. LeCun. *Dimensionality Reduction by Learning an
        Invariant Mapping.* CVPR 2006, figure 2.
    """
    margin = check_positive("margin", margin)
    caffe_legacy = check_bool("caffe_legacy", caffe_legacy)
    margin_distance = math.sqrt(margin) if caffe_legacy else margin
    if max_distance is None:
        max_distance = 2.0 * margin_distance
    else:
        max_distance = check_positive("max_distance", max_distance)
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))

    d = np.linspace(0.0, max_distance, 501)
    if margin_distance <= max_distance:  # put the kink of the hinge on the grid
        d = np.union1d(d, [margin_distance])
    distance = torch.from_numpy(d)
    origin = torch.zeros(d.size, 1, dtype=torch.float64)
    losses = {}
    for y in (1, 0):
        labels = torch.full((d.size,), y, dtype=torch.float64)
        losses[y] = contrastive_loss(
            origin,
            distance[:, None],
            labels,
            margin=margin,
            caffe_legacy=caffe_legacy,
            reduction="none",
        ).numpy()

    dissimilar_term = "½ max(m − d², 0)" if caffe_legacy else "½ max(m − d, 0)²"
    ax.plot(d, losses[1], color=_SIMILAR_COLOR, linestyle="--", label="similar pairs (y = 1): ½ d²")
    ax.plot(
        d,
        losses[0],
        color=_DISSIMILAR_COLOR,
        linestyle="-",
        label=f"dissimilar pairs (y = 0): {dissimilar_term}",
    )
    if margin_distance <= max_distance:
        label = f"margin m = {margin:g}" + (" (d² = m)" if caffe_legacy else "")
        ax.axvline(margin_distance, color="0.4", linestyle=":", label=label)
    ax.set_xlim(0.0, max_distance)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("distance d")
    ax.set_ylabel("loss per pair")
    variant = "Caffe legacy " if caffe_legacy else ""
    ax.set_title(f"{variant}contrastive loss (Hadsell, Chopra & LeCun 2006)")
    ax.legend(loc="upper center")
    _literal_text(ax)
    return fig, ax


# --- embeddings ------------------------------------------------------------------


def _check_class_names(
    class_names: object, classes: np.ndarray
) -> Mapping[object, str] | Sequence[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, Mapping):
        missing = [c.item() for c in classes if c.item() not in class_names]
        if missing:
            raise ValueError(
                f"class_names has no name for label(s) {missing[:10]}, got names for "
                f"{sorted(class_names, key=repr)[:10]}"
            )
        return class_names
    if isinstance(class_names, Sequence) and not isinstance(class_names, (str, bytes)):
        out_of_range = [c.item() for c in classes if not 0 <= c < len(class_names)]
        if out_of_range:
            raise ValueError(
                f"class_names is a sequence of {len(class_names)} names, indexed by label, "
                f"but labels include {out_of_range[:10]}"
            )
        return class_names
    raise TypeError(
        f"class_names must be a mapping from label to name, a sequence of names indexed by "
        f"label, or None, got {type(class_names).__name__}"
    )


def _class_colors(n: int) -> list:
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        return list(colormaps["tab20"](np.arange(n)))  # its first n colours
    return list(colormaps["turbo"](np.linspace(0.0, 1.0, n)))


def _project(
    z: np.ndarray, method: str, seed: int
) -> tuple[np.ndarray, str, tuple[str, str], bool]:
    """2-D coordinates, title, axis labels and whether the axes share one scale."""
    n, dim = z.shape
    if method == "auto":
        method = "identity" if dim == 2 else "pca"
    if method == "identity":
        if dim != 2:
            raise ValueError(
                f'method="identity" needs 2-D embeddings, got shape {z.shape}; '
                f'use method="pca" or "tsne"'
            )
        return z, "network output (2-D)", ("dimension 1", "dimension 2"), True
    if n < 2:
        raise ValueError(f'method="{method}" needs at least 2 embeddings, got shape {z.shape}')
    if method == "pca":
        # constant embeddings have no variance: their explained ratio is 0/0, not a warning
        with np.errstate(divide="ignore", invalid="ignore"):
            pca = PCA(n_components=2, random_state=seed).fit(z)
        xy = pca.transform(z)
        labels = tuple(
            f"PC {i + 1}" + (f" ({ratio:.0%} of variance)" if np.isfinite(ratio) else "")
            for i, ratio in enumerate(pca.explained_variance_ratio_)
        )
        return xy, f"PCA of the {dim}-D embedding", (labels[0], labels[1]), True
    if bool((z == z[0]).all()):  # t-SNE of identical points divides by zero (and can crash)
        raise ValueError(
            f'method="tsne" needs at least two distinct embeddings, got {n} identical rows'
        )
    tsne = TSNE(n_components=2, random_state=seed, init="pca", perplexity=min(30.0, n - 1.0))
    # t-SNE's OpenMP loop meets at a barrier 1000 times: for small maps on a busy machine
    # the waits cost seconds (30 s for 30 points measured on 2 loaded cores, 0.05 s serial)
    threads = 1 if n < _TSNE_SERIAL_BELOW else None
    with threadpool_limits(limits=threads, user_api="openmp"):
        xy = tsne.fit_transform(z)
    return xy, f"t-SNE of the {dim}-D embedding", ("t-SNE 1", "t-SNE 2"), False


def plot_embedding(
    embeddings: object,
    labels: object | None,
    *,
    method: EmbeddingMethod = "auto",
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    seed: int = 0,
    ax: Axes | None = None,
) -> tuple[Figure | SubFigure, Axes]:
    r"""Draw a 2-D map of the embeddings, one colour per class.

    The map is the network output itself when it is 2-D (DrLIM's figures), or a
    projection of it:

    * ``"identity"``: the embeddings as they are (they must be 2-D); equal axis scales.
    * ``"pca"``: :class:`sklearn.decomposition.PCA` onto the two main axes; equal axis
      scales, each labelled with its share of the variance.
    * ``"tsne"``: :class:`sklearn.manifold.TSNE` with ``init="pca"``,
      ``perplexity=min(30, N - 1)`` and ``random_state=seed`` (neighbourhoods are
      kept, distances are not); maps of fewer than 1000 points run on one thread.
    * ``"auto"``: ``"identity"`` for 2-D embeddings, ``"pca"`` otherwise.

    The title names the map: ``"network output (2-D)"``, ``"PCA of the 64-D
    embedding"`` or ``"t-SNE of the 64-D embedding"``. Each class is one scatter
    collection, in increasing label order; up to 20 classes get a legend. Without
    labels (``labels=None``: unlabelled data) every point is one colour, in one
    collection, with no legend.

    Args:
        embeddings: ``(N, D)`` real numbers, :math:`D \ge 2`.
        labels: ``(N,)`` integer class labels, or ``None`` (no classes: one colour).
        method: ``"auto"``, ``"identity"``, ``"pca"`` or ``"tsne"``.
        class_names: the legend's name of each label: a mapping from label to name, or a
            sequence indexed by label; the labels themselves when ``None``.
        seed: random state of PCA and t-SNE.
        ax: the axes to draw into; a new figure when ``None``.

    Returns:
        ``(fig, ax)``; ``ax.collections[k]`` holds the points of the ``k``-th class.

    Raises:
        TypeError: non-numeric embeddings, non-integer labels, or a bad ``class_names``,
            ``seed`` or ``ax``.
        ValueError: wrong shapes, non-finite embeddings, :math:`D < 2`, an unknown
            ``method``, or a label without a name in ``class_names``.

    Example:
        >>> import torch
        >>> from contrastkit.plots import plot_embedding
        >>> z = torch.tensor([[0.0, 0.5], [0.5, 0.0], [2.0, 2.5], [2.5, 2.0]])
        >>> fig, ax = plot_embedding(z, torch.tensor([0, 0, 1, 1]), class_names=["cat", "dog"])
        >>> ax.get_title()
        'network output (2-D)'
        >>> ax.collections[1].get_offsets().tolist()
        [[2.0, 2.5], [2.5, 2.0]]
    """
    z = check_real_array("embeddings", embeddings)
    if z.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {z.shape}")
    if z.shape[0] == 0:
        raise ValueError(f"embeddings must hold at least one row, got shape {z.shape}")
    if z.shape[1] < 2:
        raise ValueError(
            f"embeddings must have at least 2 features (columns) to be drawn as a 2-D map, "
            f"got shape {z.shape}"
        )
    z = z.astype(np.float64)
    check_finite_array("embeddings", z)
    unlabelled = labels is None
    y = (
        np.zeros(z.shape[0], dtype=np.int64)
        if labels is None
        else check_real_array("labels", labels)
    )
    if y.shape != (z.shape[0],):
        raise ValueError(
            f"labels must have shape ({z.shape[0]},), one label per row of embeddings "
            f"{z.shape}, got shape {y.shape}"
        )
    if y.dtype.kind not in "biu":
        raise TypeError(f"labels must be integer class labels, got dtype {y.dtype}")
    method = check_choice("method", method, _METHODS)
    seed = check_int("seed", seed, minimum=0)
    classes = np.unique(y)
    names = _check_class_names(class_names, classes)
    fig, ax = _figure_and_axes(ax, (5.5, 5.0))

    xy, title, (xlabel, ylabel), equal = _project(z, method, seed)
    colors = _class_colors(classes.size)
    size = 20.0 if z.shape[0] <= 2000 else 6.0
    for color, c in zip(colors, classes, strict=True):
        name = str(c.item()) if names is None else str(names[c.item()])
        points = xy[y == c]
        ax.scatter(points[:, 0], points[:, 1], s=size, color=color, alpha=0.8, label=name)
    if unlabelled:
        title += f" ({z.shape[0]} samples, no labels)"
    if equal:
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not unlabelled and classes.size <= _MAX_LEGEND_CLASSES:
        ax.legend(title="class", loc="best", fontsize="small", markerscale=1.5)
    _literal_text(ax)
    return fig, ax


def _image_batch(name: str, x: object, ndim: int) -> np.ndarray:
    """Images ``(..., C, H, W)`` with C of 1 or 3, finite, as float64 clipped to [0, 1]."""
    a = check_real_array(name, x)
    if a.ndim != ndim or a.shape[-3] not in (1, 3):
        dims = "(Q, C, H, W)" if ndim == 4 else "(Q, K, C, H, W)"
        raise ValueError(f"{name} must be images {dims} with C = 1 or 3, got shape {a.shape}")
    if 0 in a.shape:
        raise ValueError(f"{name} must hold at least one image, got shape {a.shape}")
    a = a.astype(np.float64)
    check_finite_array(name, a)
    return np.clip(a, 0.0, 1.0)


def _titles(name: str, titles: object, shape: tuple[int, ...]) -> np.ndarray | None:
    if titles is None:
        return None
    if isinstance(titles, (str, bytes)) or not isinstance(titles, Sequence):
        raise TypeError(f"{name} must be a sequence of strings or None, got {titles!r}")
    a = np.asarray(titles, dtype=object)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, one per image, got {a.shape}")
    return a


def plot_neighbours(
    queries: object,
    neighbours: object,
    *,
    similarities: object | None = None,
    query_titles: Sequence[str] | None = None,
    neighbour_titles: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
) -> tuple[Figure, list[Axes]]:
    r"""Draw each query image beside its nearest neighbours: one row per query.

    Column 0 holds the query, columns 1 to K its neighbours, nearest first, each
    captioned with its similarity (when given) and title. Given both kinds of title (the
    classes of labelled data), a neighbour whose title is the query's is framed in
    green, another in red. Pixel values are drawn as they are, clipped to
    :math:`[0, 1]`; one channel is drawn in grey.

    Args:
        queries: ``(Q, C, H, W)`` images, ``C`` = 1 or 3.
        neighbours: ``(Q, K, C, H, W)`` the ``K`` neighbours of each query, same C.
        similarities: ``(Q, K)`` real numbers shown under each neighbour, or ``None``.
        query_titles: ``Q`` strings (a class, a file name), or ``None``.
        neighbour_titles: ``Q`` sequences of ``K`` strings, or ``None``.
        title: the figure's title, or ``None``.

    Returns:
        ``(fig, axes)``: the ``Q × (K + 1)`` panels row by row.

    Raises:
        TypeError: non-numeric images or similarities, titles that are not sequences.
        ValueError: wrong shapes, channels other than 1 or 3, non-finite values, or
            titles not one per image.

    Example:
        >>> import torch
        >>> from contrastkit.plots import plot_neighbours
        >>> q, n = torch.rand(2, 1, 8, 8), torch.rand(2, 3, 1, 8, 8)
        >>> fig, axes = plot_neighbours(q, n, similarities=torch.rand(2, 3))
        >>> len(axes)
        8
    """
    q = _image_batch("queries", queries, 4)
    n = _image_batch("neighbours", neighbours, 5)
    rows, k = q.shape[0], n.shape[1]
    if n.shape[0] != rows or n.shape[2:] != q.shape[1:]:
        raise ValueError(
            f"neighbours must have shape ({rows}, K, {', '.join(map(str, q.shape[1:]))}) "
            f"for queries of shape {q.shape}, got {n.shape}"
        )
    sims = None
    if similarities is not None:
        sims = check_real_array("similarities", similarities)
        if sims.shape != (rows, k):
            raise ValueError(
                f"similarities must have shape ({rows}, {k}), one per neighbour, got {sims.shape}"
            )
        sims = sims.astype(np.float64)
        check_finite_array("similarities", sims)
    qt = _titles("query_titles", query_titles, (rows,))
    nt = _titles("neighbour_titles", neighbour_titles, (rows, k))
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    fig = Figure(figsize=(1.25 * (k + 1) + 0.3, 1.45 * rows + 0.4), layout="constrained")
    axes = [fig.add_subplot(rows, k + 1, i + 1) for i in range(rows * (k + 1))]

    def show(ax: Axes, image: np.ndarray, caption: str, color: str | None) -> None:
        if image.shape[0] == 1:
            ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(image.transpose(1, 2, 0))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(caption, fontsize="x-small")
        if color is not None:
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2.5)
        _literal_text(ax)

    for r in range(rows):
        row = axes[r * (k + 1) : (r + 1) * (k + 1)]
        show(row[0], q[r], "query" + (f"\n{qt[r]}" if qt is not None else ""), "black")
        for j in range(k):
            parts = []
            if sims is not None:
                parts.append(f"{sims[r, j]:.3f}")
            if nt is not None:
                parts.append(str(nt[r, j]))
            color = None
            if qt is not None and nt is not None:
                color = "tab:green" if nt[r, j] == qt[r] else "tab:red"
            show(row[j + 1], n[r, j], "\n".join(parts), color)
    if title is not None:
        fig.suptitle(title, fontsize="small").set_parse_math(False)
    return fig, axes


# --- verification ----------------------------------------------------------------


def plot_roc(
    distances: object,
    same: object,
    *,
    ax: Axes | None = None,
    label: str | None = None,
    mark_fars: Sequence[float] = (1e-2, 1e-3),
    far_axis: FarAxis = "linear",
) -> tuple[Figure | SubFigure, Axes]:
    r"""Draw the ROC curve of the verification rule "same if :math:`d \le t`".

    The curve is :func:`sklearn.metrics.roc_curve` of the scores :math:`-d` (a lower
    distance means more similar): the false accept rate (FAR, dissimilar pairs
    accepted) against the true accept rate (TAR, similar pairs accepted) as the
    threshold :math:`t` sweeps. The legend gives the area under the curve; a dashed
    diagonal shows chance. For each FAR in ``mark_fars`` a point marks the best TAR
    whose FAR does not exceed it, annotated ``"TAR = … @ FAR ≤ …"``.

    With ``far_axis="log"`` the FAR axis is logarithmic, which spreads out the low
    false accept rates where verification is judged. It starts at the power of ten at
    or below :math:`1/(2N)`, with :math:`N` dissimilar pairs (the smallest rate above 0
    is :math:`1/N`); the part of the curve and the marks at FAR = 0 are drawn at that
    left edge.

    Drawing several curves into one ``ax`` compares models; the chance line is drawn
    once.

    Args:
        distances: ``(P,)`` finite distances of ``P`` pairs.
        same: ``(P,)`` pair labels, 1 = similar, 0 = dissimilar; both must occur.
        ax: the axes to draw into; a new figure when ``None``.
        label: the curve's name in the legend (``"ROC"`` when ``None``).
        mark_fars: false accept rates in ``(0, 1]`` at which to mark the TAR.
        far_axis: ``"linear"`` or ``"log"``, the scale of the FAR axis.

    Returns:
        ``(fig, ax)``; the ROC line is the first line this call drew.

    Raises:
        TypeError: non-numeric inputs, a non-string ``label`` or a bad ``ax``.
        ValueError: shapes that differ, non-finite distances, labels other than 0/1,
            only one class of pairs, a FAR outside ``(0, 1]`` or an unknown
            ``far_axis``.

    Example:
        >>> from contrastkit.plots import plot_roc
        >>> fig, ax = plot_roc([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0], mark_fars=(0.5,))
        >>> ax.get_legend().get_texts()[0].get_text()
        'ROC (AUC = 0.750)'
        >>> fig, ax = plot_roc([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0], far_axis="log")
        >>> ax.get_xscale(), float(ax.get_xlim()[0])  # 2 dissimilar pairs: FAR 0, 0.5 or 1
        ('log', 0.1)
    """
    d, similar = check_pairs(distances, same, both=True)
    y = similar.astype(np.int64)
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str or None, got {type(label).__name__}")
    if isinstance(mark_fars, (str, bytes)) or not isinstance(mark_fars, Sequence):
        raise TypeError(f"mark_fars must be a sequence of numbers, got {type(mark_fars).__name__}")
    fars = [check_real("mark_fars", far) for far in mark_fars]
    for far in fars:
        if not 0 < far <= 1:
            raise ValueError(f"mark_fars must lie in (0, 1], got {far!r}")
    check_choice("far_axis", far_axis, _FAR_AXES)
    fig, ax = _figure_and_axes(ax, (5.0, 5.0))

    fpr, tpr, _ = roc_curve(y, -d)
    # the marks come from every threshold (contrastkit.evaluation.metrics' full step curve and its
    # TAR at a FAR): the drawn curve drops collinear vertices
    all_fpr, all_tpr, _ = step_roc(d, similar)
    area = auc(fpr, tpr)
    left = 0.0
    if far_axis == "log":
        negatives = int((~similar).sum())
        left = 10.0 ** math.floor(math.log10(0.5 / negatives))
        if ax.get_xscale() == "log":  # earlier curves may reach further left
            left = min(left, ax.get_xlim()[0])
        ax.set_xscale("log")

    def at(x: np.ndarray) -> np.ndarray:  # FAR 0 at the left edge of a log axis
        return np.maximum(x, left) if far_axis == "log" else x

    name = "ROC" if label is None else label
    (line,) = ax.plot(at(fpr), tpr, linewidth=1.8, label=f"{name} (AUC = {area:.3f})")
    if not any(other.get_gid() == _CHANCE_GID for other in ax.lines):
        diagonal = np.geomspace(left, 1.0, 200) if far_axis == "log" else np.array([0, 1])
        (chance,) = ax.plot(diagonal, diagonal, color="0.6", linestyle="--", label="chance")
        chance.set_gid(_CHANCE_GID)
    # the marked points crowd near FAR = 0: their labels are stacked in the free middle
    # of the axes, below those of earlier curves, each tied to its point by a thin line
    slot = sum(text.get_gid() == _TAR_GID for text in ax.texts)
    color = line.get_color()
    for k, far in enumerate(fars):
        tar = tar_from_roc(all_fpr, all_tpr, far)
        point = (float(all_fpr[(all_tpr == tar) & (all_fpr <= far)][0]), tar)
        ax.plot(at(np.array([point[0]])), [point[1]], marker="o", color=color, linestyle="none")
        note = ax.annotate(
            f"TAR = {point[1]:.3f} @ FAR ≤ {far:g}",
            xy=(float(at(np.array([point[0]]))[0]), point[1]),
            xytext=(0.3, 0.66 - 0.07 * (slot + k)),
            textcoords="axes fraction",
            fontsize="small",
            color=color,
            va="center",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": color},
            arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.6},
        )
        note.set_gid(_TAR_GID)
    ax.set_xlim(left if far_axis == "log" else 0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    scale = ", log scale" if far_axis == "log" else ""
    ax.set_xlabel(f"false accept rate (FAR{scale})")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title("ROC of the rule d ≤ t")
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(handles)), key=lambda j: handles[j].get_gid() == _CHANCE_GID)
    ax.legend([handles[j] for j in order], [labels[j] for j in order], loc="lower right")
    _literal_text(ax)
    return fig, ax


def plot_anomaly_roc(
    scores: Mapping[str, object],
    is_anomaly: object,
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> tuple[Figure | SubFigure, Axes]:
    """Draw the ROC curve of each anomaly score: anomalies flagged against normal flagged.

    One curve per score, for the rule "anomaly if score ≥ t" as ``t`` sweeps: the share
    of normal samples flagged (false positive rate) against the share of anomalies
    flagged (true positive rate), with the area under each curve in the legend and a
    dashed chance line. Each score keeps one colour in every figure (reconstruction
    blue, knn orange, centroid green; other names take the next colours), so panels of
    different runs compare at a glance.

    Args:
        scores: score name → ``(n,)`` finite scores of the same ``n`` samples, higher =
            more anomalous; at least one score.
        is_anomaly: ``(n,)`` labels, 1 (or ``True``) = anomaly, 0 = normal; both must occur.
        ax: the axes to draw into; a new figure when ``None``.
        title: the axes title; ``"ROC of the rule score ≥ t"`` when ``None``.

    Returns:
        ``(fig, ax)``; the curve of the ``k``-th score is the first line of its call
        to :func:`plot_roc` (``ax.lines[0]`` for the first score).

    Raises:
        TypeError: ``scores`` is not a mapping of names to numbers, a bad ``title`` or
            ``ax``.
        ValueError: no score, shapes that differ, non-finite scores, or labels other
            than 0/1 or of one class only.

    Example:
        >>> from contrastkit.plots import plot_anomaly_roc
        >>> is_anomaly = [0, 0, 0, 1, 1]
        >>> scores = {"knn": [0.1, 0.2, 0.9, 0.8, 1.0], "centroid": [0.1, 0.2, 0.3, 0.8, 1.0]}
        >>> fig, ax = plot_anomaly_roc(scores, is_anomaly)
        >>> [text.get_text() for text in ax.get_legend().get_texts()]
        ['knn (AUC = 0.833)', 'centroid (AUC = 1.000)', 'chance']
    """
    if not isinstance(scores, Mapping):
        raise TypeError(
            f"scores must be a mapping of score names to scores, got {type(scores).__name__}"
        )
    if len(scores) == 0:
        raise ValueError("scores must hold at least one score, got an empty mapping")
    checked = {}
    for method, values in scores.items():
        if not isinstance(method, str):
            raise TypeError(f"scores' names must be str, got {type(method).__name__} {method!r}")
        try:
            checked[method] = check_scores_and_labels(values, is_anomaly, both=True)
        except (TypeError, ValueError) as error:
            raise type(error)(f"scores[{method!r}]: {error}") from None
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__} {title!r}")
    fig, ax = _figure_and_axes(ax, (5.0, 5.0))

    spare = (f"C{i}" for i in range(10) if f"C{i}" not in _SCORE_COLORS.values())
    for method, (values, anomalous) in checked.items():
        drawn = len(ax.lines)
        # plot_roc accepts "similar" pairs when d <= t: with d = -score and the anomalies
        # as the "similar" class, it draws the rule "anomaly if score >= t"
        plot_roc(-values, anomalous, ax=ax, label=method, mark_fars=())
        ax.lines[drawn].set_color(_SCORE_COLORS.get(method) or next(spare, "0.3"))
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda j: handles[j].get_gid() == _CHANCE_GID)
    ax.legend([handles[j] for j in order], [labels[j] for j in order], loc="lower right")
    ax.set_xlabel("false positive rate (normal samples flagged)")
    ax.set_ylabel("true positive rate (anomalies flagged)")
    ax.set_title("ROC of the rule score ≥ t" if title is None else title)
    _literal_text(ax)
    return fig, ax


def _check_bins(bins: object, d: np.ndarray) -> np.ndarray:
    """Shared bin edges from a number of bins or from explicit edges."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        return np.histogram_bin_edges(d, bins=check_int("bins", bins, minimum=1))
    if isinstance(bins, (str, bytes, bool)) or not isinstance(
        bins, (Sequence, np.ndarray, torch.Tensor)
    ):
        raise TypeError(
            f"bins must be a number of bins or a sequence of bin edges, got "
            f"{type(bins).__name__} {bins!r}"
        )
    edges = check_real_array("bins", bins).astype(np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(
            f"bins as edges must be 1-D with at least 2 edges, got shape {edges.shape}"
        )
    check_finite_array("bins", edges)
    if not (np.diff(edges) > 0).all():
        raise ValueError(f"bins as edges must increase strictly, got {edges.tolist()[:10]}")
    return edges


def _draw_histograms(
    ax: Axes,
    values: np.ndarray,
    groups: Sequence[tuple[np.ndarray, str, str]],
    edges: np.ndarray,
    threshold: float | None,
    *,
    shares: bool = False,
) -> None:
    """Overlaid density histograms, one per ``(mask, color, label)`` group, and legend.

    Each group's ``values[mask]`` is drawn on the shared ``edges`` (an empty group is
    left out), then the ``threshold`` line if any; sets the y label and the legend.
    With ``shares`` each bar is the share of the group's values in its bin (the bars of
    a group sum to 1), as bins of unequal width on a log axis need.
    """
    for mask, color, label in groups:
        selected = values[mask]
        if selected.size == 0:
            continue
        if shares:
            density = np.histogram(selected, bins=edges)[0] / selected.size
        else:
            density = np.histogram(selected, bins=edges, density=True)[0]
        ax.stairs(
            density,
            edges,
            fill=True,
            alpha=0.45,
            color=color,
            edgecolor=color,
            linewidth=1.2,
            label=label,
        )
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold = {threshold:.4g}")
    ax.set_ylabel("share of samples per bin" if shares else "density")
    ax.legend(loc="best")


def plot_distance_histograms(
    distances: object,
    same: object,
    *,
    threshold: float | None = None,
    bins: int | Sequence[float] = 50,
    ax: Axes | None = None,
) -> tuple[Figure | SubFigure, Axes]:
    """Draw the distributions of the distances of similar and dissimilar pairs.

    Two overlaid density histograms (each integrates to 1) on shared bin edges: similar
    pairs in red (``"similar pairs (y = 1)"``), dissimilar pairs in blue
    (``"dissimilar pairs (y = 0)"``). A class without pairs is left out. A good
    embedding separates them; ``threshold``, drawn as a vertical line, is where the
    verification rule "same if d ≤ t" cuts.

    Args:
        distances: ``(P,)`` finite distances of ``P`` pairs.
        same: ``(P,)`` pair labels, 1 = similar, 0 = dissimilar.
        threshold: a finite distance threshold to mark, or ``None``.
        bins: the number of bins over the range of all distances, or the bin edges.
        ax: the axes to draw into; a new figure when ``None``.

    Returns:
        ``(fig, ax)``; each histogram is a :class:`matplotlib.patches.StepPatch` in
        ``ax.patches`` whose ``get_data()`` gives its densities and edges.

    Raises:
        TypeError: non-numeric inputs, or a bad ``threshold``, ``bins`` or ``ax``.
        ValueError: shapes that differ, non-finite values, labels other than 0/1, or
            bins that are not positive or not increasing.

    Example:
        >>> from contrastkit.plots import plot_distance_histograms
        >>> d, same = [0.2, 0.4, 0.6, 1.2], [1, 1, 0, 0]
        >>> fig, ax = plot_distance_histograms(d, same, bins=[0.0, 0.5, 1.0, 1.5])
        >>> [patch.get_label() for patch in ax.patches]
        ['similar pairs (y = 1)', 'dissimilar pairs (y = 0)']
        >>> ax.patches[1].get_data().values.tolist()  # densities: each integrates to 1
        [0.0, 1.0, 1.0]
    """
    d, similar = check_pairs(distances, same, both=False)
    if threshold is not None:
        threshold = check_real("threshold", threshold)
    edges = _check_bins(bins, d)
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))

    groups = (
        (similar, _SIMILAR_COLOR, "similar pairs (y = 1)"),
        (~similar, _DISSIMILAR_COLOR, "dissimilar pairs (y = 0)"),
    )
    _draw_histograms(ax, d, groups, edges, threshold)
    ax.set_xlabel("distance d")
    ax.set_title("distances of pairs")
    _literal_text(ax)
    return fig, ax


def plot_similarity_scatter(
    similarity: object,
    gold: object,
    *,
    correlations: dict[str, float] | None = None,
    ax: Axes | None = None,
) -> tuple[Figure | SubFigure, Axes]:
    """Draw the predicted similarity of each pair against its gold score (the STS view).

    One point per pair: the gold score on the x axis, the cosine similarity of the two
    embeddings on the y axis. A good encoder orders the points upwards (Spearman's ρ
    measures exactly that order); ``correlations`` (such as ``{"spearman": 0.8,
    "pearson": 0.7}``) go into the title.

    Args:
        similarity: ``(P,)`` finite predicted similarities.
        gold: ``(P,)`` finite gold scores, as written.
        correlations: name → value, shown in the title; ``None`` for none.
        ax: the axes to draw into; a new figure when ``None``.

    Returns:
        ``(fig, ax)``; the points are ``ax.collections[0]`` (``get_offsets()`` gives
        ``(gold, similarity)`` per pair).

    Raises:
        TypeError: non-numeric inputs, or a bad ``ax``.
        ValueError: shapes that differ, or non-finite values.

    Example:
        >>> from contrastkit.plots import plot_similarity_scatter
        >>> fig, ax = plot_similarity_scatter([0.9, 0.1, 0.5], [5.0, 0.0, 2.5])
        >>> ax.collections[0].get_offsets().tolist()
        [[5.0, 0.9], [0.0, 0.1], [2.5, 0.5]]
    """
    y = check_values("similarity", similarity, what="similarities")
    x = check_values("gold", gold, what="scores")
    if x.shape != y.shape:
        raise ValueError(
            f"similarity and gold must hold one value per pair, got {y.shape[0]} and {x.shape[0]}"
        )
    fig, ax = _figure_and_axes(ax, (6.0, 4.5))
    ax.scatter(x, y, s=14, alpha=0.6, color=_DISSIMILAR_COLOR, edgecolors="none")
    ax.set_xlabel("gold score")
    ax.set_ylabel("cosine similarity of the embeddings")
    title = "test pairs"
    if correlations:
        shown = ", ".join(
            f"{name.capitalize()} {value:.3f}" for name, value in correlations.items()
        )
        title += f": {shown}"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _literal_text(ax)
    return fig, ax


def _heavy_tail(s: np.ndarray, normal: np.ndarray) -> bool:
    """Whether the scores span over 10 times the lowest 90% of the normal samples' scores.

    Those normal scores would then share a tenth of a linear axis (with no normal
    sample, the lowest 90% of all scores count).
    """
    bulk_of = normal if normal.size else s
    bulk = float(np.percentile(bulk_of, 90) - s.min())
    return bulk > 0 and float(s.max() - s.min()) > 10 * bulk


def _wrapped(title: str, width: int = 60) -> str:
    """A long title broken into lines of at most ``width`` characters (never cut off)."""
    import textwrap

    return title if len(title) <= width else "\n".join(textwrap.wrap(title, width))


def plot_score_histograms(
    scores: object,
    is_anomaly: object,
    *,
    ax: Axes | None = None,
    bins: int | Sequence[float] = 40,
    title: str | None = None,
    threshold: float | None = None,
    scale: str = "auto",
) -> tuple[Figure | SubFigure, Axes]:
    """Draw the distributions of the anomaly scores of normal samples and anomalies.

    Two overlaid density histograms (each integrates to 1, whatever the number of
    samples behind it) on shared bin edges: normal samples in blue (``"normal (n =
    …)"``), anomalies in red (``"anomalies (n = …)"``); the legend gives each count. A
    class without samples is left out. A good score puts the anomalies to the right
    (higher = more anomalous, as :mod:`contrastkit.evaluation.anomaly` scores); ``threshold``, drawn
    as a vertical line, is where the rule "anomaly if score ≥ t" cuts.

    Heavy tails (a few anomalies scoring a thousand times the normal samples, as
    reconstruction errors do) would squeeze every normal sample into the first bin.
    ``scale`` chooses the x axis: ``"linear"``; ``"log"`` (positive scores only: a log
    axis with bins of equal width on it); ``"clip"`` (the range of the lowest 99% of the
    scores, the rest counted in the x label, ``"N scores above X not shown"``); or
    ``"auto"`` (the default): ``"log"`` when the scores span more than 10 times the
    range of the lowest 90% of the normal samples' scores (which would then share a
    tenth of a linear axis) and every score is positive, ``"clip"`` for such a tail
    with a score of 0 or less, else ``"linear"``. On a log axis each bar is the share
    of its group's samples in the bin (the bins widen to the right, so a density would
    mislead), and the y label says so. Explicit bin edges are drawn as given
    (``"auto"`` is then ``"linear"``). A title longer than 60 characters is wrapped onto
    several lines, never cut off.

    Args:
        scores: ``(n,)`` finite anomaly scores, higher = more anomalous.
        is_anomaly: ``(n,)`` labels, 1 (or ``True``) = anomaly, 0 = normal.
        ax: the axes to draw into; a new figure when ``None``.
        bins: the number of bins over the range of all scores, or the bin edges.
        title: the axes title; ``"anomaly scores"`` when ``None``.
        threshold: a finite score threshold to mark, or ``None``.
        scale: ``"auto"``, ``"linear"``, ``"log"`` or ``"clip"``, as above.

    Returns:
        ``(fig, ax)``; each histogram is a :class:`matplotlib.patches.StepPatch` in
        ``ax.patches`` (normal samples first) whose ``get_data()`` gives its densities
        and edges.

    Raises:
        TypeError: non-numeric or boolean scores, or a bad ``threshold``, ``title``,
            ``bins`` or ``ax``.
        ValueError: shapes that differ, empty or non-finite scores, labels other than
            0/1, bins that are not positive or not increasing, an unknown ``scale``, or
            ``scale="log"`` with a score of 0 or less.

    Example:
        >>> from contrastkit.plots import plot_score_histograms
        >>> scores, is_anomaly = [0.2, 0.4, 0.6, 1.2], [0, 0, 0, 1]
        >>> fig, ax = plot_score_histograms(scores, is_anomaly, bins=[0.0, 0.5, 1.0, 1.5])
        >>> [patch.get_label() for patch in ax.patches]
        ['normal (n = 3)', 'anomalies (n = 1)']
        >>> ax.patches[1].get_data().values.tolist()  # densities: each integrates to 1
        [0.0, 0.0, 2.0]
        >>> tail = [0.01 * (i + 1) for i in range(99)] + [500.0]
        >>> _, ax = plot_score_histograms(tail, [0] * 99 + [1])
        >>> ax.get_xscale()
        'log'
    """
    s, anomalous = check_scores_and_labels(scores, is_anomaly, both=False)
    if threshold is not None:
        threshold = check_real("threshold", threshold)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__} {title!r}")
    if scale not in ("auto", "linear", "log", "clip"):
        raise ValueError(f"scale must be one of auto, linear, log, clip, got {scale!r}")
    edges = _check_bins(bins, s)
    counted = isinstance(bins, (int, np.integer))
    if scale == "auto":
        tail = counted and _heavy_tail(s, s[~anomalous])
        scale = "linear" if not tail else "log" if s.min() > 0 else "clip"
    if scale == "log" and s.min() <= 0:
        raise ValueError(
            f"scale='log' needs positive scores, got a minimum of {float(s.min()):.4g}"
        )
    xlabel = "anomaly score (higher = more anomalous)"
    if scale == "log" and counted:
        if s.max() > s.min():
            edges = np.geomspace(s.min(), s.max(), edges.size)
            edges[0], edges[-1] = s.min(), s.max()  # every score inside, whatever the rounding
    elif scale == "clip":
        top = float(np.percentile(s, 99))
        if counted and top > s.min():
            edges = np.linspace(s.min(), top, edges.size)
        top = float(edges[-1])
        hidden = int((s > top).sum())
        if hidden:
            xlabel += f"; {hidden} score{'s' if hidden > 1 else ''} above {top:.4g} not shown"
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))

    n_anomalies = int(anomalous.sum())
    groups = (
        (~anomalous, _NORMAL_COLOR, f"normal (n = {s.size - n_anomalies})"),
        (anomalous, _ANOMALY_COLOR, f"anomalies (n = {n_anomalies})"),
    )
    if scale == "log":  # bins widen to the right: shares per bin, not densities
        _draw_histograms(ax, s, groups, edges, threshold, shares=True)
    else:
        _draw_histograms(ax, s, groups, edges, threshold)
    if scale == "log":
        ax.set_xscale("log")
        xlabel += ", log scale"
    ax.set_xlabel(xlabel)
    ax.set_title(_wrapped("anomaly scores" if title is None else title))
    _literal_text(ax)
    return fig, ax


# --- training --------------------------------------------------------------------


def _history_value(where: str, value: object) -> float:
    """A logged number (Python, numpy or one-element tensor) as a float; NaN stays NaN."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _history_style(key: str) -> tuple[str, str]:
    """(line style, quantity) of a history key: ``"val_loss"`` -> ``("--", "loss")``."""
    for prefix, style in _HISTORY_PREFIXES.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return style, key[len(prefix) :]
    return "-", key


def plot_history(
    history: Sequence[Mapping[str, object]],
    *,
    keys: Sequence[str] | None = None,
    ax: Axes | None = None,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> tuple[Figure | SubFigure, Axes]:
    """Draw training and validation curves per epoch.

    ``history`` is the list of per-epoch records a training loop keeps, such as
    ``{"epoch": 1, "train_loss": 0.3, "val_loss": 0.35, "val_roc_auc": 0.98}``. Each key
    is one line against ``"epoch"``, in the order the keys first appear. Keys of one
    quantity share a colour and differ by style: ``train_*`` solid, ``val_*`` dashed
    (``test_*`` dotted). An epoch without a key, or with a NaN or infinite value, leaves
    a gap in that line.

    Args:
        history: per-epoch mappings, each with an ``"epoch"`` number.
        keys: the keys to draw; by default every key containing ``"loss"``.
        ax: the axes to draw into; a new figure when ``None``.
        labels: the legend's name of some keys (``{"val_roc_auc": "validation
            ROC-AUC"}``); the others show their key.
        title: the axes title; ``"training history"`` when ``None``.

    Returns:
        ``(fig, ax)``; ``ax.lines[k]`` is the line of the ``k``-th key.

    Raises:
        TypeError: ``history`` is not a sequence of mappings, ``keys`` not a sequence of
            strings, ``labels`` not a mapping of strings, ``title`` not a string, or a
            value is not a number.
        ValueError: ``history`` is empty, an entry has no ``"epoch"``, a key is unknown
            (the message lists the available keys), or no key contains ``"loss"``.

    Example:
        >>> from contrastkit.plots import plot_history
        >>> history = [
        ...     {"epoch": 1, "train_loss": 0.30, "val_loss": 0.35},
        ...     {"epoch": 2, "train_loss": 0.20, "val_loss": 0.28},
        ... ]
        >>> fig, ax = plot_history(history)
        >>> [(line.get_label(), line.get_linestyle()) for line in ax.lines]
        [('train_loss', '-'), ('val_loss', '--')]
    """
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a list of per-epoch dicts, got {type(history).__name__}")
    if len(history) == 0:
        raise ValueError("history must hold at least one epoch, got an empty history")
    available: dict[str, None] = {}  # ordered set
    epochs = []
    for i, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            raise TypeError(f"history[{i}] must be a dict, got {type(entry).__name__}")
        if "epoch" not in entry:
            raise ValueError(f'history[{i}] has no "epoch" key, got keys {sorted(map(str, entry))}')
        epoch = _history_value(f'history[{i}]["epoch"]', entry["epoch"])
        if not math.isfinite(epoch):
            raise ValueError(f'history[{i}]["epoch"] must be finite, got {epoch!r}')
        epochs.append(epoch)
        available.update(dict.fromkeys(k for k in entry if k != "epoch"))

    if keys is None:
        keys = [k for k in available if isinstance(k, str) and "loss" in k]
        if not keys:
            raise ValueError(
                f'history has no key containing "loss"; pass keys=, available: {list(available)}'
            )
    else:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
            raise TypeError(
                f"keys must be a sequence of key names such as ['train_loss'], got "
                f"{type(keys).__name__} {keys!r}"
            )
        if len(keys) == 0:
            raise ValueError(f"keys must name at least one key, available: {list(available)}")
        unknown = [k for k in keys if k not in available]
        if unknown:
            raise ValueError(f"keys {unknown} are not in history, available: {list(available)}")
        keys = list(keys)
    if labels is None:
        labels = {}
    elif not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise TypeError(
            f"labels must be a mapping from key to legend name (str to str), got {labels!r}"
        )
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__} {title!r}")
    values = {
        key: [
            _history_value(f"history[{i}][{key!r}]", entry[key]) if key in entry else math.nan
            for i, entry in enumerate(history)
        ]
        for key in keys
    }
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))

    colors: dict[str, str] = {}
    marker = "o" if len(history) <= 50 else None
    for key in keys:
        style, quantity = _history_style(key)
        color = colors.setdefault(quantity, f"C{len(colors) % 10}")
        ax.plot(
            epochs,
            values[key],
            color=color,
            linestyle=style,
            marker=marker,
            markersize=3,
            label=labels.get(key, key),
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if all("loss" in key for key in keys) else "value")
    ax.set_title("training history" if title is None else title)
    ax.legend(loc="best")
    _literal_text(ax)
    return fig, ax


# --- figures and text -----------------------------------------------------------


def subplots(
    ncols: int = 1, *, nrows: int = 1, figsize: tuple[float, float] | None = None
) -> tuple[Figure, list[Axes]]:
    """A new figure of ``nrows × ncols`` panels, to draw into with the ``ax=`` of this module.

    The figure has constrained layout and is made without :mod:`matplotlib.pyplot`, as
    every figure here.

    Args:
        ncols: panels per row, ``>= 1``.
        nrows: rows of panels, ``>= 1``.
        figsize: ``(width, height)`` in inches; by default 5.5 × 5 inches per panel.

    Returns:
        ``(fig, axes)``: the panels row by row.

    Raises:
        TypeError: ``ncols`` or ``nrows`` is not an int, or ``figsize`` not two numbers.
        ValueError: ``ncols`` or ``nrows`` is below 1, or a size is not > 0.

    Example:
        >>> from contrastkit.plots import plot_loss_curve, subplots
        >>> fig, axes = subplots(2)
        >>> for ax, margin in zip(axes, (1.0, 2.0)):
        ...     _ = plot_loss_curve(margin=margin, ax=ax)
        >>> len(fig.axes)
        2
    """
    ncols = check_int("ncols", ncols, minimum=1)
    nrows = check_int("nrows", nrows, minimum=1)
    if figsize is None:
        size = (5.5 * ncols, 5.0 * nrows)
    else:
        if not isinstance(figsize, (tuple, list)) or len(figsize) != 2:
            raise TypeError(f"figsize must be (width, height), got {figsize!r}")
        size = (
            check_positive("figsize", figsize[0]),
            check_positive("figsize", figsize[1]),
        )
    fig = Figure(figsize=size, layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(nrows * ncols)]
    return fig, axes


def _literal_text(ax: Axes) -> None:
    r"""Draw every title, axis label, legend entry and note of ``ax`` as written.

    Matplotlib reads text between two ``$`` as mathtext (and hands all text to TeX when
    ``text.usetex`` is set): a class named ``$\foo$`` would stop the figure from being
    drawn. Tick labels keep mathtext, which a log axis writes its powers of ten in.
    """
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
    legend = ax.get_legend()
    if legend is not None:
        texts += [*legend.get_texts(), legend.get_title()]
    for text in texts:
        text.set_parse_math(False)
        text.set_usetex(False)


# --- files -----------------------------------------------------------------------


def save_figure(
    fig: Figure,
    path: str | os.PathLike[str],
    *,
    dpi: float = 120,
    overwrite: bool = False,
) -> Path:
    r"""Save a figure as a PNG file, refusing to replace an existing file by accident.

    Only the file itself is created: not its folder, and no partial file is left behind
    when drawing fails.

    Args:
        fig: the figure to save.
        path: where to write it; the name must end in ``.png`` and its folder must exist.
        dpi: resolution in dots per inch, ``> 0``.
        overwrite: replace an existing file at ``path``.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        TypeError: ``fig`` is not a Figure, or ``path``, ``dpi`` or ``overwrite`` has the
            wrong type.
        ValueError: ``path`` does not end in ``.png`` or ``dpi`` is not > 0.
        FileNotFoundError: the folder of ``path`` does not exist.
        FileExistsError: ``path`` exists and ``overwrite`` is ``False``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from contrastkit.plots import plot_loss_curve, save_figure
        >>> fig, _ = plot_loss_curve()
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_figure(fig, Path(folder) / "loss.png")
        ...     path.read_bytes()[:8]
        b'\x89PNG\r\n\x1a\n'
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    dpi = check_positive("dpi", dpi)
    overwrite = check_bool("overwrite", overwrite)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path's folder {str(path.parent)!r} does not exist")
    try:
        file = path.open("wb" if overwrite else "xb")
    except FileExistsError:
        raise FileExistsError(
            f"path {str(path)!r} already exists; pass overwrite=True to replace it"
        ) from None
    try:
        with file:
            fig.savefig(file, format="png", dpi=dpi)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
