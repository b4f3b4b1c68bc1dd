"""Exact all-pairs losses over row tiles: O(N·D + tile) memory instead of O(N²).

The public functions of :mod:`contrastkit.functional` call these when a batch is large
(or when asked to with ``chunk_size``); their simple implementations stay the reference
these are tested against, in value and in gradient.

Each kernel walks over tiles of ``rows`` rows against every column, so the largest
temporary is one ``(rows, M)`` tile, never the ``(N, M)`` matrix:

* **log-sum-exp over rows** (:func:`row_logsumexp`, InfoNCE, NT-Xent, SupCon): each tile
  ``S = A_t Bᵀ`` is shifted by its row maxima and exponentiated in place. The loss only
  needs each row's log-sum-exp; the terms that pick the positives out are linear in the
  embeddings and are computed outside, by ordinary autograd, in O(N·D).
* **log-sum-exp over rows and columns** (:func:`row_column_logsumexp`, CLIP's loss): the
  column sums are accumulated across tiles with a running shift; a column whose sum
  would underflow is recomputed exactly.
* **distance tiles** (:func:`all_pairs_contrastive_sum`, :func:`batch_all_triplet_sums`,
  :func:`batch_hard_indices`): distances of a tile of rows to every row, label masks
  built inside the tile.

Gradients are built while the tiles are at hand, in the forward pass, for the weights a
``"mean"`` or ``"sum"`` reduction will give them; ``backward`` then only scales them. If
the upstream gradient has other weights (``reduction="none"`` followed by anything), the
tiles are computed again with those weights. With no gradient needed, no gradient work
is done.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from contrastkit.distances import DISTANCES, normalize, power_of_two_scale

__all__ = [
    "TILED_DISTANCES",
    "all_pairs_contrastive_sum",
    "batch_all_triplet_sums",
    "batch_hard_indices",
    "cross_batch_all_sums",
    "cross_batch_hard_indices",
    "cross_contrastive_sum",
    "largest_safe_value",
    "row_column_logsumexp",
    "row_logsumexp",
    "tile_rows",
    "use_tiles",
]

TILE_ELEMENTS = 1 << 23
"""Elements of one tile when the size is chosen automatically (32 MiB in float32)."""

AUTO_ELEMENTS = 1 << 22
"""Above this many elements in the full matrix, the tiled path is taken automatically."""

TILED_DISTANCES = ("euclidean", "squared_euclidean", "cosine")
"""Distances whose gradient the distance kernels build from matrix products."""


def largest_safe_value(n: int, d: int, dtype: torch.dtype) -> float:
    """The largest magnitude of ``n`` rows of ``d`` features the Euclidean kernels take.

    The distance tiles come from ``|x|² + |y|² - 2 x·y`` and the similar pairs' sum from
    class sums of squared norms: below this bound (``sqrt(max / (4 d)) / n``) none of
    them overflows.
    """
    return math.sqrt(torch.finfo(dtype).max / (4 * max(d, 1))) / max(n, 1)


def use_tiles(n_rows: int, n_cols: int, chunk_size: int | None) -> bool:
    """Whether to take the tiled path: asked for, or the full matrix would be large."""
    return chunk_size is not None or n_rows * n_cols > AUTO_ELEMENTS


def tile_rows(n_cols: int, chunk_size: int | None, *, share: int = 1) -> int:
    """Rows per tile: ``chunk_size``, or as many as fit in ``TILE_ELEMENTS / share``."""
    if chunk_size is not None:
        return chunk_size
    return max(1, TILE_ELEMENTS // share // max(n_cols, 1))


def _tiny(dtype: torch.dtype) -> float:
    # sums of exponentials below this are recomputed with their own shift: above it, every
    # term that matters is a normal number
    return float(torch.finfo(dtype).tiny) ** 0.5


def _proportional(grad: Tensor, weights: Tensor, first: int) -> Tensor | None:
    """``c`` with ``grad == c * weights`` exactly (weights of 0 and 1), else None."""
    c = grad[first] if weights[first] > 0 else grad.new_zeros(())
    return c if torch.equal(grad, c * weights) else None


# --------------------------------------------------------------------------------------
# log-sum-exp over the rows of A Bᵀ


_RowMasks = tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]
"""``(self_index, row_ids, column_ids, keep_index)`` of :func:`row_logsumexp`."""

_NO_MASKS: _RowMasks = (None, None, None, None)


def _mask_rows(s: Tensor, start: int, stop: int, masks: _RowMasks) -> None:
    """Set the masked entries of rows ``start:stop`` of ``A Bᵀ`` (the tile ``s``) to -inf."""
    self_index, row_ids, column_ids, keep_index = masks
    if self_index is not None:
        s.scatter_(1, self_index[start:stop, None], float("-inf"))
    if row_ids is not None and column_ids is not None:
        k = column_ids.shape[0]
        hit = row_ids[start:stop, None] == column_ids[None, :]
        if keep_index is not None:
            kept = torch.arange(k, device=s.device)[None, :] == keep_index[start:stop, None]
            hit &= ~kept
        s[:, :k].masked_fill_(hit, float("-inf"))


def _row_pass(
    a: Tensor,
    b: Tensor,
    extra: Tensor | None,
    mask_self: bool,
    rows: int,
    weights: Tensor | None,
    needs: tuple[bool, bool, bool],
    masks: _RowMasks = _NO_MASKS,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Row log-sum-exp of ``[A Bᵀ, extra]`` and, with ``weights``, its weighted gradients.

    A row whose every entry is masked gets ``-inf`` and a zero gradient: its shift is 0
    instead of ``-inf`` (no ``-inf - -inf``), and since a row with any entry left sums to
    at least 1 (its largest entry gives ``exp(0)``), dividing by the sum clamped at 1
    changes nothing else.
    """
    n, m = a.shape[0], b.shape[0]
    lse = a.new_empty(n)
    work = weights is not None
    grad_a = a.new_empty(a.shape) if work and needs[0] else None
    grad_b = torch.zeros_like(b) if work and needs[1] else None
    grad_e = extra.new_empty(extra.shape) if work and needs[2] and extra is not None else None
    buffer = a.new_empty(min(rows, n), m)
    b_t = b.T
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        a_t = a[start:stop]
        s = torch.mm(a_t, b_t, out=buffer[: stop - start])
        if mask_self:
            s.diagonal(offset=start).fill_(float("-inf"))
        _mask_rows(s, start, stop, masks)
        top = s.amax(dim=1, keepdim=True)
        if extra is not None:
            e = extra[start:stop]
            top = torch.maximum(top, e.amax(dim=1, keepdim=True))
        top.masked_fill_(top == float("-inf"), 0.0)  # a row with every entry masked
        p = s.sub_(top).exp_()
        total = p.sum(dim=1, keepdim=True)
        if extra is not None:
            pe = (e - top).exp()
            total += pe.sum(dim=1, keepdim=True)
        lse[start:stop] = (top + total.log()).squeeze(1)
        if weights is None:
            continue
        scale = weights[start:stop, None] / total.clamp_min(1.0)
        if grad_a is not None:
            torch.mm(p, b, out=grad_a[start:stop])
            grad_a[start:stop] *= scale
        if grad_b is not None:
            grad_b.addmm_(p.T, a_t * scale)
        if grad_e is not None:
            grad_e[start:stop] = pe * scale
    return lse, grad_a, grad_b, grad_e


class _RowLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        a: Tensor,
        b: Tensor,
        extra: Tensor | None,
        mask_self: bool,
        rows: int,
        hint: Tensor | None,
        self_index: Tensor | None,
        row_ids: Tensor | None,
        column_ids: Tensor | None,
        keep_index: Tensor | None,
    ) -> Tensor:
        needs = tuple(ctx.needs_input_grad[:3])
        masks = (self_index, row_ids, column_ids, keep_index)
        ctx.options = (mask_self, rows, masks)
        ctx.save_for_backward(a, b, extra)
        ctx.eager = None
        if hint is not None and any(needs):
            lse, *grads = _row_pass(a, b, extra, mask_self, rows, hint, needs, masks)  # type: ignore[arg-type]
            ctx.eager = (hint, int(hint.argmax()), grads)
            return lse
        return _row_pass(a, b, extra, mask_self, rows, None, needs, masks)[0]  # type: ignore[arg-type]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b, extra = ctx.saved_tensors
        mask_self, rows, masks = ctx.options
        unused = (None,) * (3 + len(masks))
        if ctx.eager is not None:
            hint, first, grads = ctx.eager
            c = _proportional(grad, hint, first)
            if c is not None:
                return (*(None if g is None else g * c for g in grads), *unused)
        needs = tuple(ctx.needs_input_grad[:3])
        _, *grads = _row_pass(a, b, extra, mask_self, rows, grad, needs, masks)  # type: ignore[arg-type]
        return (*grads, *unused)


def row_logsumexp(
    a: Tensor,
    b: Tensor,
    *,
    rows: int,
    extra: Tensor | None = None,
    mask_self: bool = False,
    hint: Tensor | None = None,
    self_index: Tensor | None = None,
    row_ids: Tensor | None = None,
    column_ids: Tensor | None = None,
    keep_index: Tensor | None = None,
) -> Tensor:
    """``logsumexp`` of each row of ``[A Bᵀ, extra]``, differentiable, in tiles of ``rows``.

    ``mask_self`` leaves out entry ``(i, i)`` (``A`` and ``B`` hold the same samples).
    ``self_index`` (``(n,)``) leaves out entry ``(i, self_index[i])``: row ``i`` of ``A``
    is column ``self_index[i]`` of ``B`` (``B`` gathered from several batches).
    ``row_ids`` (``(n,)``) and ``column_ids`` (``(k,)``, labelling the first ``k`` rows
    of ``B``, ``k <= len(B)``; the others are never left out by id) leave out entry
    ``(i, j)`` where ``row_ids[i] == column_ids[j]`` (the same sample), except column
    ``keep_index[i]`` (``(n,)``, e.g. the row's positive; ``None``: none kept).
    ``extra`` is never masked. A row with every entry left out gets ``-inf`` and a zero
    gradient.

    ``hint``: 0/1 weights the upstream gradient is expected to be proportional to (the
    gradient is then built in the forward pass); ``None`` defers it to ``backward``.
    Under :func:`torch.compile` the gradient is always deferred: checking the upstream
    gradient against ``hint`` is a decision on the host that would break the graph.
    """
    if (row_ids is None) != (column_ids is None):
        raise ValueError(
            "row_ids and column_ids go together, got "
            f"row_ids={_given(row_ids)}, column_ids={_given(column_ids)}"
        )
    if torch.compiler.is_compiling() or a.shape[0] == 0:  # nothing to build it from
        hint = None
    return _RowLogSumExp.apply(
        a, b, extra, mask_self, rows, hint, self_index, row_ids, column_ids, keep_index
    )


def _given(t: Tensor | None) -> str:
    return "None" if t is None else f"a tensor of shape {tuple(t.shape)}"


# --------------------------------------------------------------------------------------
# log-sum-exp over the rows and the columns of A Bᵀ (CLIP)


def _column_statistics(a: Tensor, b: Tensor, rows: int) -> tuple[Tensor, Tensor]:
    n, m = a.shape[0], b.shape[0]
    row_lse = a.new_empty(n)
    column_sum = a.new_zeros(m)
    shift = a.new_full((), float("-inf"))
    buffer = a.new_empty(min(rows, n), m)
    b_t = b.T
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        s = torch.mm(a[start:stop], b_t, out=buffer[: stop - start])
        top = s.amax(dim=1, keepdim=True)
        p = s.sub_(top).exp_()
        row_lse[start:stop] = (top + p.sum(dim=1, keepdim=True).log()).squeeze(1)
        # Σ_i exp(s_ij - K) = Σ_i p_ij exp(top_i - K): one shift K for the whole tile
        tile_shift = top.max()
        tile_sum = torch.mv(p.T, (top.squeeze(1) - tile_shift).exp())
        new_shift = torch.maximum(shift, tile_shift)
        column_sum = (
            column_sum * (shift - new_shift).exp() + tile_sum * (tile_shift - new_shift).exp()
        )
        shift = new_shift
    column_lse = shift + column_sum.log()
    low = column_sum < _tiny(a.dtype)
    if torch.compiler.is_compiling():
        # which columns need it is known on the device only: recompute every column in
        # two more passes (their maxima, then their sums) and keep the exact ones
        column_lse = torch.where(low, _column_logsumexp(a, b, rows), column_lse)
        return row_lse, column_lse
    low_columns = low.nonzero().squeeze(1)
    if low_columns.numel():  # rare: a column far below the largest entry; recompute it exactly
        column_lse[low_columns] = torch.logsumexp(a @ b[low_columns].T, dim=0)
    return row_lse, column_lse


def _column_logsumexp(a: Tensor, b: Tensor, rows: int) -> Tensor:
    """``logsumexp`` of each column of ``A Bᵀ``, exact, in two passes over row tiles."""
    n = a.shape[0]
    b_t = b.T
    top = a.new_full((b.shape[0],), float("-inf"))
    for start in range(0, n, rows):
        top = torch.maximum(top, (a[start : start + rows] @ b_t).amax(dim=0))
    total = torch.zeros_like(top)
    for start in range(0, n, rows):
        total = total + (a[start : start + rows] @ b_t - top).exp().sum(dim=0)
    return top + total.log()


def _column_gradients(
    a: Tensor,
    b: Tensor,
    row_lse: Tensor,
    column_lse: Tensor,
    rows: int,
    row_weights: Tensor | None,
    column_weights: Tensor | None,
    needs: tuple[bool, bool],
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of ``Σ w_i row_lse_i + Σ v_j column_lse_j`` (weights None: all ones)."""
    n, m = a.shape[0], b.shape[0]
    grad_a = a.new_empty(a.shape) if needs[0] else None
    grad_b = torch.zeros_like(b) if needs[1] else None
    buffer = a.new_empty(min(rows, n), m)
    other = a.new_empty(min(rows, n), m)
    b_t = b.T
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        a_t = a[start:stop]
        s = torch.mm(a_t, b_t, out=buffer[: stop - start])
        by_column = torch.sub(s, column_lse, out=other[: stop - start]).exp_()
        g = s.sub_(row_lse[start:stop, None]).exp_()
        if row_weights is None:
            g += by_column
        else:
            g *= row_weights[start:stop, None]
            g.addcmul_(by_column, column_weights)  # type: ignore[arg-type]
        if grad_a is not None:
            torch.mm(g, b, out=grad_a[start:stop])
        if grad_b is not None:
            grad_b.addmm_(g.T, a_t)
    return grad_a, grad_b


class _RowColumnLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, rows: int, eager: bool) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        needs = tuple(ctx.needs_input_grad[:2])
        row_lse, column_lse = _column_statistics(a, b, rows)
        ctx.rows = rows
        ctx.save_for_backward(a, b, row_lse, column_lse)
        ctx.eager = None
        if eager and any(needs):
            ctx.eager = _column_gradients(a, b, row_lse, column_lse, rows, None, None, needs)  # type: ignore[arg-type]
        return row_lse, column_lse

    @staticmethod
    def backward(ctx: Any, grad_row: Tensor, grad_column: Tensor) -> tuple[Tensor | None, ...]:
        a, b, row_lse, column_lse = ctx.saved_tensors
        if ctx.eager is not None:
            c = grad_row[0]
            if torch.equal(grad_row, c.expand_as(grad_row)) and torch.equal(
                grad_column, c.expand_as(grad_column)
            ):
                return (*(None if g is None else g * c for g in ctx.eager), None, None)
        needs = tuple(ctx.needs_input_grad[:2])
        weights = (grad_row, grad_column)
        grads = _column_gradients(a, b, row_lse, column_lse, ctx.rows, *weights, needs)
        return (*grads, None, None)


def row_column_logsumexp(a: Tensor, b: Tensor, *, rows: int, eager: bool) -> tuple[Tensor, Tensor]:
    """``logsumexp`` of each row and each column of ``A Bᵀ``, differentiable, in tiles.

    ``eager``: the upstream gradients are expected to be one constant for every row and
    column (a mean or sum of both), so the gradient is built in the forward pass (never
    under :func:`torch.compile`, see :func:`row_logsumexp`).
    """
    if torch.compiler.is_compiling():
        eager = False
    return _RowColumnLogSumExp.apply(a, b, rows, eager)


# --------------------------------------------------------------------------------------
# distance tiles


def _operands(name: str, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``L, R`` whose product ``L Rᵀ`` is the distance matrix of ``x`` (to ``c``, if given).

    Squared Euclidean as ``[x, |x|², 1]·[-2c, 1, |c|²]``, cosine distance as
    ``[x̂, 1]·[-ĉ, 1]`` (unit rows): one matrix product gives a tile of distances, with
    no pass to add the norms.
    """
    c = x if c is None else c
    if name == "cosine":
        return (
            torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1),
            torch.cat([-c, c.new_ones(c.shape[0], 1)], dim=1),
        )
    squares = x.pow(2).sum(dim=1, keepdim=True)
    c_squares = squares if c is x else c.pow(2).sum(dim=1, keepdim=True)
    return (
        torch.cat([x, squares, x.new_ones(x.shape[0], 1)], dim=1),
        torch.cat([-2.0 * c, c.new_ones(c.shape[0], 1), c_squares], dim=1),
    )


def _cross_tile(
    name: str, operands: tuple[Tensor, Tensor], start: int, stop: int, out: Tensor
) -> Tensor:
    """Rows ``start:stop`` of the distances of the rows of ``L`` to those of ``R``.

    Squared Euclidean (clamped at 0) for both Euclidean kinds, ``1 - x̂_i·ĉ_j`` for cosine.
    """
    left, right = operands
    d = torch.mm(left[start:stop], right.T, out=out)
    if name != "cosine":
        d.clamp_min_(0.0)
    return d


def _distance_tile(
    name: str, operands: tuple[Tensor, Tensor], start: int, stop: int, out: Tensor
) -> Tensor:
    """Rows ``start:stop`` of the distances of the batch to itself, each row's own entry 0.

    Squared Euclidean (clamped at 0) for both Euclidean kinds, ``1 - x̂_i·x̂_j`` for cosine.
    """
    d = _cross_tile(name, operands, start, stop, out)
    d.diagonal(offset=start).fill_(0.0)
    return d


def _accumulate(
    name: str,
    x: Tensor,
    coefficient: Tensor,
    start: int,
    stop: int,
    grad: Tensor,
    *,
    columns: bool,
) -> None:
    """Add a tile's ``Σ_j c_ij ∂(d_ij)/∂x`` to ``grad``.

    ``c`` is the coefficient on the *squared* Euclidean distance (Euclidean kinds) or on
    the similarity ``x̂_i·x̂_j`` (cosine); ``columns`` adds the columns' side too.
    """
    _accumulate_cross(
        name, x[start:stop], x, coefficient, grad[start:stop], grad if columns else None
    )


def _accumulate_cross(
    name: str,
    x_t: Tensor,
    c: Tensor,
    coefficient: Tensor,
    grad_x: Tensor | None,
    grad_c: Tensor | None,
) -> None:
    """Add a tile's ``Σ_j c_ij ∂d_ij/∂x_i`` to ``grad_x`` and ``Σ_i c_ij ∂d_ij/∂c_j`` to ``grad_c``.

    ``x_t`` holds the tile's rows, ``c`` every column's; ``c_ij`` is the coefficient on
    the *squared* Euclidean distance (Euclidean kinds) or on the similarity ``x̂_i·ĉ_j``
    (cosine). Either gradient may be None (not wanted).
    """
    if name == "cosine":
        if grad_x is not None:
            grad_x.addmm_(coefficient, c)
        if grad_c is not None:
            grad_c.addmm_(coefficient.T, x_t)
        return
    # ∂|x_i - c_j|² / ∂x_i = 2 (x_i - c_j), / ∂c_j = 2 (c_j - x_i)
    if grad_x is not None:
        grad_x.addmm_(coefficient, c, alpha=-2.0)
        grad_x.addcmul_(coefficient.sum(dim=1, keepdim=True), x_t, value=2.0)
    if grad_c is not None:
        grad_c.addmm_(coefficient.T, x_t, alpha=-2.0)
        grad_c.addcmul_(coefficient.sum(dim=0)[:, None], c, value=2.0)


def _contrastive_pass(
    name: str,
    x: Tensor,
    labels: Tensor,
    margin: float,
    caffe_legacy: bool,
    rows: int,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """``Σ_{i<j}`` of the un-halved contrastive terms and its gradient.

    For the Euclidean distance only the dissimilar pairs' terms: the similar pairs' sum
    of squared distances comes from class sums (:func:`_same_class_squared_sum`). ``x``
    holds unit rows for cosine.
    """
    n = x.shape[0]
    operands = _operands(name, x)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    grad = torch.zeros_like(x) if want_grad else None
    buffer = x.new_empty(min(rows, n), n)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        raw = _distance_tile(name, operands, start, stop, buffer[: stop - start])
        same = labels[start:stop, None] == labels[None, :]
        if name == "euclidean" and not caffe_legacy:
            # -max(m - d, 0), in place: the tile is all this path needs
            pushed = raw.sqrt_().sub_(margin).clamp_(max=0.0).masked_fill_(same, 0.0)
            flat = pushed.view(-1)
            total += torch.dot(flat, flat).double()
            if grad is None:
                continue
            # ∂ max(m - d, 0)² / ∂ d² = -max(m - d, 0) / d, and 0 at d = 0
            coefficient = pushed.div_(pushed + margin).nan_to_num_(0.0, 0.0, 0.0)
        elif name == "euclidean":  # Caffe's legacy max(m - d², 0) on dissimilar pairs
            pushed = torch.rsub(raw, margin).clamp_min_(0.0).masked_fill_(same, 0.0)
            total += pushed.sum(dtype=torch.float64)
            if grad is None:
                continue
            # ∂ max(m - d², 0) / ∂ d² = -1 wherever m - d² >= 0 (as clamp_min's gradient)
            coefficient = ((raw <= margin) & ~same).to(x.dtype).neg_()
        else:
            d = raw.clamp(0.0, 2.0) if name == "cosine" else raw
            squared = d * d
            gap = (margin - squared) if caffe_legacy else (margin - d)
            pushed = gap.clamp_min(0.0) if caffe_legacy else gap.clamp_min(0.0).square_()
            terms = torch.where(same, squared, pushed)
            terms.diagonal(offset=start).fill_(0.0)
            total += terms.sum(dtype=torch.float64)
            if grad is None:
                continue
            # the coefficient on d
            if caffe_legacy:
                on_d = torch.where(same | (gap >= 0.0), 2.0 * d, 0.0)
                on_d = torch.where(same, on_d, -on_d)
            else:
                on_d = torch.where(same, 2.0 * d, -2.0 * gap.clamp_min_(0.0))
            if name == "squared_euclidean":
                coefficient = on_d  # d is the squared distance itself
            else:  # cosine: d = 1 - x̂_i·x̂_j, so the coefficient on the similarity is -∂/∂d
                coefficient = on_d.neg_().mul_((raw >= 0.0) & (raw <= 2.0))
        coefficient.diagonal(offset=start).fill_(0.0)
        # the sum over i < j is half the sum over ordered pairs; by symmetry the column
        # side of each ordered pair's gradient equals the row side of its mirror
        _accumulate(name, x, coefficient, start, stop, grad, columns=False)  # type: ignore[arg-type]
    return (0.5 * total).to(x.dtype), grad


def _same_class_squared_sum(x: Tensor, labels: Tensor) -> Tensor:
    """``Σ_{i<j, same class} |x_i - x_j|²`` from class sums, differentiable, in O(N·D).

    Per class of size n: ``n Σ|x_i|² - |Σ x_i|²``, on rows centred first (distances do
    not change) so that the difference does not cancel.
    """
    centred = x - x.mean(dim=0)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = centred.new_zeros(counts.shape[0], x.shape[1]).index_add(0, inverse, centred)
    squares = centred.new_zeros(counts.shape[0]).index_add(0, inverse, centred.pow(2).sum(dim=1))
    return (counts.to(x.dtype) * squares - sums.pow(2).sum(dim=1)).sum()


class _AllPairsContrastive(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        labels: Tensor,
        name: str,
        margin: float,
        caffe_legacy: bool,
        rows: int,
    ) -> Tensor:
        total, grad = _contrastive_pass(
            name, x, labels, margin, caffe_legacy, rows, ctx.needs_input_grad[0]
        )
        ctx.grad = grad
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return (None if ctx.grad is None else ctx.grad * grad, None, None, None, None, None)


def all_pairs_contrastive_sum(
    x: Tensor, labels: Tensor, *, distance: str, margin: float, caffe_legacy: bool, rows: int
) -> Tensor:
    """``Σ_{i<j} ½ [y d² + (1 - y) max(m - d, 0)²]`` over every pair of a labelled batch."""
    if distance == "cosine":
        x = normalize(x)
    total = _AllPairsContrastive.apply(x, labels, distance, margin, caffe_legacy, rows)
    if distance == "euclidean":
        total = total + _same_class_squared_sum(x, labels)
    return 0.5 * total


SLOT_CLASS_SIZE = 32
"""Up to this many samples in the largest class, batch-all compares each anchor's row with
one positive at a time; above it, it sorts each row's negatives."""


def _classmates(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, K)`` indices of each sample's classmates, ``K`` the largest class size.

    Also which slots hold one: the others, and the sample itself, are masked.
    """
    n = labels.shape[0]
    order = torch.argsort(labels, stable=True)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    starts = counts.cumsum(0) - counts
    slots = torch.arange(int(counts.max()), device=labels.device)
    held = slots < counts[inverse][:, None]
    index = order[(starts[inverse][:, None] + slots).clamp_max(n - 1)]
    own = torch.arange(n, device=labels.device)[:, None]
    held &= index != own
    return torch.where(held, index, own), held


def _hinges_by_positive(
    d: Tensor, same: Tensor, mates: Tensor, held: Tensor, margin: float, want: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per anchor ``Σ_p Σ_n max(d_ap - d_an + m, 0)``, one positive slot at a time.

    Also the number of non-zero terms and, with ``want``, the coefficients on ``d``. For
    few samples per class: a few passes over the tile per classmate.
    """
    negatives = d.masked_fill(same, float("inf"))
    # an empty slot gets threshold -inf: its hinges are all 0
    thresholds = torch.where(held, d.gather(1, mates) + margin, float("-inf"))
    sums = torch.zeros(d.shape[0], dtype=torch.float64, device=d.device)
    closer = d.new_zeros(mates.shape)
    on_d = torch.zeros_like(d) if want else None
    hinge = torch.empty_like(d)
    for slot in range(mates.shape[1]):
        torch.sub(thresholds[:, slot : slot + 1], negatives, out=hinge).clamp_min_(0.0)
        sums += hinge.sum(dim=1).double()
        active = hinge.gt_(0.0)  # in place, as 0.0 / 1.0: the hinges are summed already
        closer[:, slot] = active.sum(dim=1)
        if on_d is not None:
            on_d -= active  # each active (anchor, positive, negative): -1 on d_an
    if on_d is not None:
        on_d.scatter_add_(1, mates, closer)  # and +1 on d_ap
    return sums, closer.sum().long(), on_d


def _hinges_by_sorting(
    d: Tensor, same: Tensor, positive: Tensor, margin: float, want: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The same as :func:`_hinges_by_positive`, from each row's sorted negatives.

    A binary search per positive and prefix sums in float64: for many samples per class.
    """
    n = d.shape[1]
    ranks = torch.arange(n, device=d.device)[None, :]
    negative = ~same
    sorted_d, order = d.masked_fill(same, float("inf")).sort(dim=1)
    negatives = negative.sum(dim=1, keepdim=True)
    finite = torch.where(negatives > ranks, sorted_d, 0.0).double()
    prefix = torch.cat([finite.new_zeros(d.shape[0], 1), finite.cumsum(dim=1)], dim=1)
    threshold = d + margin
    closer = torch.searchsorted(sorted_d, threshold)  # negatives with d_an < d_ap + m
    sums = closer.double() * threshold.double() - prefix.gather(1, closer)
    sums = torch.where(positive, sums, 0.0).sum(dim=1)
    count = torch.where(positive, closer, 0).sum()
    if not want:
        return sums, count, None
    # coefficient of d_ap: the number of negatives it is compared with; of d_an: minus
    # the number of positives p with d_an < d_ap + m, i.e. with closer[a, p] > rank(n)
    positives = positive.sum(dim=1)
    closer = torch.where(positive, closer, n)
    histogram = torch.zeros(d.shape[0], n + 1, dtype=torch.long, device=d.device)
    histogram.scatter_add_(1, closer, torch.ones_like(closer))
    behind = positives[:, None] - histogram[:, :n].cumsum(dim=1)
    behind = torch.where(negatives > ranks, behind, 0)
    on_d = torch.where(positive, closer, 0).to(d.dtype)
    on_d.scatter_add_(1, order, -behind.to(d.dtype))
    return sums, count, on_d


def _batch_all_pass(
    name: str,
    x: Tensor,
    labels: Tensor,
    margin: float,
    rows: int,
    weights: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Per-anchor hinge sums and the triplet counts (all, non-zero).

    With ``weights``, also the gradient of ``Σ_a w_a · sum_a``.
    """
    n = x.shape[0]
    operands = _operands(name, x)
    per_anchor = x.new_empty(n)
    if torch.compiler.is_compiling():
        # the slot kernel's width is the largest class size, read on the host: under
        # torch.compile every batch takes the sorting kernel
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        mates = held = None
        positives = counts[inverse] - 1
    else:
        mates, held = _classmates(labels)
        positives = held.sum(dim=1)
    by_slot = mates is not None and mates.shape[1] <= SLOT_CLASS_SIZE
    count_all = (positives * (n - 1 - positives)).sum()
    count_nonzero = torch.zeros((), dtype=torch.long, device=x.device)
    grad = torch.zeros_like(x) if weights is not None else None
    buffer = x.new_empty(min(rows, n), n)
    index = torch.arange(n, device=x.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        raw = _distance_tile(name, operands, start, stop, buffer[: stop - start])
        if name == "euclidean":
            d = raw.sqrt()
        elif name == "cosine":
            d = raw.clamp(0.0, 2.0)
        else:
            d = raw
        same = labels[start:stop, None] == labels[None, :]
        if by_slot:
            assert mates is not None and held is not None
            sums, count, on_d = _hinges_by_positive(
                d, same, mates[start:stop], held[start:stop], margin, grad is not None
            )
        else:
            positive = same & (index[None, :] != index[start:stop, None])
            sums, count, on_d = _hinges_by_sorting(d, same, positive, margin, grad is not None)
        per_anchor[start:stop] = sums.to(x.dtype)
        count_nonzero += count
        if grad is None or on_d is None:
            continue
        on_d *= weights[start:stop, None]  # type: ignore[index]
        if name == "euclidean":
            coefficient = torch.where(d > 0, on_d / (2.0 * torch.where(d > 0, d, 1.0)), 0.0)
        elif name == "squared_euclidean":
            coefficient = on_d
        else:
            coefficient = -on_d * ((raw >= 0.0) & (raw <= 2.0))
        coefficient.diagonal(offset=start).fill_(0.0)
        _accumulate(name, x, coefficient, start, stop, grad, columns=True)
    return per_anchor, count_all, count_nonzero, grad


class _BatchAllTriplet(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, labels: Tensor, name: str, margin: float, rows: int, eager: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        weights = x.new_ones(x.shape[0]) if eager and ctx.needs_input_grad[0] else None
        per_anchor, count_all, count_nonzero, grad = _batch_all_pass(
            name, x, labels, margin, rows, weights
        )
        ctx.save_for_backward(x, labels)
        ctx.options = (name, margin, rows)
        ctx.grad = grad
        ctx.mark_non_differentiable(count_all, count_nonzero)
        return per_anchor, count_all, count_nonzero

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        if not ctx.needs_input_grad[0]:
            return (None,) * 6
        c = grad[0]
        if ctx.grad is not None and torch.equal(grad, c.expand_as(grad)):
            return (ctx.grad * c, *(None,) * 5)
        x, labels = ctx.saved_tensors
        name, margin, rows = ctx.options
        grad_x = _batch_all_pass(name, x, labels, margin, rows, grad)[3]
        return (grad_x, *(None,) * 5)


def batch_all_triplet_sums(
    x: Tensor, labels: Tensor, *, distance: str, margin: float, rows: int, eager: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-anchor sums of ``max(d_ap - d_an + m, 0)`` over its valid triplets.

    Also the number of valid and of non-zero triplets.
    """
    if distance == "cosine":
        x = normalize(x)
    if torch.compiler.is_compiling():  # see row_logsumexp
        eager = False
    return _BatchAllTriplet.apply(x, labels, distance, margin, rows, eager)


@torch.no_grad()
def batch_hard_indices(
    x: Tensor, labels: Tensor, *, distance: str, rows: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Each anchor's farthest positive and closest negative, from distance tiles.

    Lowest index on ties; ``valid`` says whether the anchor has both. The Euclidean kinds
    and cosine compare squared distances or similarities (the same order, without a
    square root); other distances use their own matrix.
    """
    n = x.shape[0]
    farthest = torch.empty(n, dtype=torch.long, device=x.device)
    closest = torch.empty(n, dtype=torch.long, device=x.device)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    valid = (counts[inverse] > 1) & (counts[inverse] < n)
    fast = distance in TILED_DISTANCES
    name = "squared_euclidean" if distance == "euclidean" else distance
    if name == "squared_euclidean":  # the same order, and no square overflows
        x = x / power_of_two_scale(x)
    operands = _operands(name, normalize(x) if name == "cosine" else x) if fast else None
    buffer = x.new_empty(min(rows, n), n) if fast else None
    masked = x.new_empty(min(rows, n), n)
    inf = x.new_tensor(float("inf"))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        if operands is not None:
            d = _distance_tile(name, operands, start, stop, buffer[: stop - start])  # type: ignore[index]
        else:
            d = DISTANCES[distance].matrix(x[start:stop], x)
        same = labels[start:stop, None] == labels[None, :]
        out = masked[: stop - start]
        closest[start:stop] = torch.where(same, inf, d, out=out).argmin(dim=1)
        same.diagonal(offset=start).fill_(False)
        farthest[start:stop] = torch.where(same, d, -inf, out=out).argmax(dim=1)
    return farthest, closest, valid


# --------------------------------------------------------------------------------------
# anchors against separate candidates (other processes' rows, a gallery, a memory bank)

_Exclusions = tuple[Tensor | None, Tensor | None, Tensor | None]
"""``(self_index, x_ids, c_ids)`` of the cross kernels."""


def _check_ids(x_ids: Tensor | None, c_ids: Tensor | None) -> None:
    if (x_ids is None) != (c_ids is None):
        raise ValueError(
            f"x_ids and c_ids go together, got x_ids={_given(x_ids)}, c_ids={_given(c_ids)}"
        )


def _excluded(start: int, stop: int, m: int, exclusions: _Exclusions) -> Tensor | None:
    """``(stop - start, m)``: which candidates each anchor of the tile leaves out (None: none).

    Candidate ``j`` is left out for anchor ``i`` if it is the anchor itself
    (``j == self_index[i]``) or the same sample (``x_ids[i] == c_ids[j]``).
    """
    self_index, x_ids, c_ids = exclusions
    mask = None
    if x_ids is not None and c_ids is not None:
        mask = x_ids[start:stop, None] == c_ids[None, :]
    if self_index is not None:
        own = torch.arange(m, device=self_index.device)[None, :] == self_index[start:stop, None]
        mask = own if mask is None else mask | own
    return mask


def _cross_contrastive_pass(
    name: str,
    x: Tensor,
    c: Tensor,
    x_labels: Tensor,
    c_labels: Tensor,
    margin: float,
    caffe_legacy: bool,
    rows: int,
    exclusions: _Exclusions,
    needs: tuple[bool, bool],
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """The un-halved contrastive terms summed over the kept (anchor, candidate) pairs.

    Also the number of kept pairs and the gradients wanted. ``x`` and ``c`` hold unit
    rows for cosine.
    """
    b, m = x.shape[0], c.shape[0]
    operands = _operands(name, x, c)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    count = torch.zeros((), dtype=torch.long, device=x.device)
    grad_x = torch.zeros_like(x) if needs[0] else None
    grad_c = torch.zeros_like(c) if needs[1] else None
    buffer = x.new_empty(min(rows, b), m)
    for start in range(0, b, rows):
        stop = min(start + rows, b)
        raw = _cross_tile(name, operands, start, stop, buffer[: stop - start])
        same = x_labels[start:stop, None] == c_labels[None, :]
        excluded = _excluded(start, stop, m, exclusions)
        count += (stop - start) * m - (0 if excluded is None else excluded.sum())
        if name == "euclidean":
            d, squared = raw.sqrt(), raw
        else:
            d = raw.clamp(0.0, 2.0) if name == "cosine" else raw
            squared = d * d
        gap = (margin - squared) if caffe_legacy else (margin - d)
        pushed = gap.clamp_min(0.0) if caffe_legacy else gap.clamp_min(0.0).square_()
        terms = torch.where(same, squared, pushed)
        if excluded is not None:
            terms.masked_fill_(excluded, 0.0)
        total += terms.sum(dtype=torch.float64)
        if grad_x is None and grad_c is None:
            continue
        if name == "euclidean":  # the coefficient on d²
            if caffe_legacy:  # ∂ max(m - d², 0) / ∂ d² = -1 wherever m - d² >= 0
                dissimilar = (gap >= 0.0).to(x.dtype).neg_()
            else:  # ∂ max(m - d, 0)² / ∂ d² = -max(m - d, 0) / d, and 0 at d = 0
                positive = d > 0
                dissimilar = torch.where(
                    positive, -gap.clamp_min(0.0) / torch.where(positive, d, 1.0), 0.0
                )
            coefficient = torch.where(same, 1.0, dissimilar)
        else:  # the coefficient on d
            if caffe_legacy:
                on_d = torch.where(same | (gap >= 0.0), 2.0 * d, 0.0)
                on_d = torch.where(same, on_d, -on_d)
            else:
                on_d = torch.where(same, 2.0 * d, -2.0 * gap.clamp_min(0.0))
            if name == "squared_euclidean":
                coefficient = on_d  # d is the squared distance itself
            else:  # cosine: d = 1 - x̂_i·ĉ_j, so the coefficient on the similarity is -∂/∂d
                coefficient = on_d.neg_().mul_((raw >= 0.0) & (raw <= 2.0))
        if excluded is not None:
            coefficient.masked_fill_(excluded, 0.0)
        _accumulate_cross(
            name,
            x[start:stop],
            c,
            coefficient,
            None if grad_x is None else grad_x[start:stop],
            grad_c,
        )
    return total.to(x.dtype), count, grad_x, grad_c


class _CrossContrastive(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        c: Tensor,
        x_labels: Tensor,
        c_labels: Tensor,
        name: str,
        margin: float,
        caffe_legacy: bool,
        rows: int,
        self_index: Tensor | None,
        x_ids: Tensor | None,
        c_ids: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        needs = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]))
        exclusions = (self_index, x_ids, c_ids)
        total, count, grad_x, grad_c = _cross_contrastive_pass(
            name, x, c, x_labels, c_labels, margin, caffe_legacy, rows, exclusions, needs
        )
        ctx.grads = (grad_x, grad_c)
        ctx.mark_non_differentiable(count)
        return total, count

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        grads = tuple(None if g is None else g * grad for g in ctx.grads)
        return (*grads, *(None,) * 9)


def cross_contrastive_sum(
    x: Tensor,
    c: Tensor,
    x_labels: Tensor,
    c_labels: Tensor,
    *,
    distance: str,
    margin: float,
    caffe_legacy: bool,
    rows: int,
    self_index: Tensor | None = None,
    x_ids: Tensor | None = None,
    c_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``Σ y d² + (1 - y) max(m - d, 0)²`` over every kept (anchor, candidate) pair.

    Not halved; ``y = 1`` where ``x_labels[i] == c_labels[j]``; with ``caffe_legacy`` the
    dissimilar term is ``max(m - d², 0)``. Candidate ``j`` is left out for anchor ``i``
    where ``j == self_index[i]`` (the anchor itself among the candidates) or
    ``x_ids[i] == c_ids[j]`` (the same sample). Also the number of kept pairs (long, no
    gradient). Differentiable with respect to ``x`` and ``c``: the gradient is built in
    the forward pass and scaled in ``backward``.
    """
    _check_ids(x_ids, c_ids)
    if distance == "cosine":
        x, c = normalize(x), normalize(c)
    return _CrossContrastive.apply(
        x, c, x_labels, c_labels, distance, margin, caffe_legacy, rows, self_index, x_ids, c_ids
    )


def _cross_batch_all_pass(
    name: str,
    x: Tensor,
    c: Tensor,
    x_labels: Tensor,
    c_labels: Tensor,
    margin: float,
    rows: int,
    exclusions: _Exclusions,
    weights: Tensor | None,
    needs: tuple[bool, bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Per-anchor hinge sums over its kept candidates and the triplet counts.

    With ``weights``, also the gradients (those in ``needs``) of ``Σ_a w_a · sum_a``.
    """
    b, m = x.shape[0], c.shape[0]
    operands = _operands(name, x, c)
    per_anchor = x.new_empty(b)
    count_all = torch.zeros((), dtype=torch.long, device=x.device)
    count_nonzero = torch.zeros((), dtype=torch.long, device=x.device)
    work = weights is not None
    grad_x = torch.zeros_like(x) if work and needs[0] else None
    grad_c = torch.zeros_like(c) if work and needs[1] else None
    want = grad_x is not None or grad_c is not None
    buffer = x.new_empty(min(rows, b), m)
    for start in range(0, b, rows):
        stop = min(start + rows, b)
        raw = _cross_tile(name, operands, start, stop, buffer[: stop - start])
        if name == "euclidean":
            d = raw.sqrt()
        elif name == "cosine":
            d = raw.clamp(0.0, 2.0)
        else:
            d = raw
        same = x_labels[start:stop, None] == c_labels[None, :]
        excluded = _excluded(start, stop, m, exclusions)
        if excluded is None:
            not_negative, positive = same, same
        else:
            not_negative, positive = same | excluded, same & ~excluded
        sums, count, on_d = _hinges_by_sorting(d, not_negative, positive, margin, want)
        per_anchor[start:stop] = sums.to(x.dtype)
        count_nonzero += count
        count_all += (positive.sum(dim=1) * (m - not_negative.sum(dim=1))).sum()
        if on_d is None:
            continue
        on_d *= weights[start:stop, None]  # type: ignore[index]
        if name == "euclidean":
            coefficient = torch.where(d > 0, on_d / (2.0 * torch.where(d > 0, d, 1.0)), 0.0)
        elif name == "squared_euclidean":
            coefficient = on_d
        else:
            coefficient = -on_d * ((raw >= 0.0) & (raw <= 2.0))
        _accumulate_cross(
            name,
            x[start:stop],
            c,
            coefficient,
            None if grad_x is None else grad_x[start:stop],
            grad_c,
        )
    return per_anchor, count_all, count_nonzero, grad_x, grad_c


class _CrossBatchAll(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        c: Tensor,
        x_labels: Tensor,
        c_labels: Tensor,
        name: str,
        margin: float,
        rows: int,
        eager: bool,
        self_index: Tensor | None,
        x_ids: Tensor | None,
        c_ids: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        needs = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]))
        weights = x.new_ones(x.shape[0]) if eager and any(needs) else None
        exclusions = (self_index, x_ids, c_ids)
        per_anchor, count_all, count_nonzero, *grads = _cross_batch_all_pass(
            name, x, c, x_labels, c_labels, margin, rows, exclusions, weights, needs
        )
        ctx.save_for_backward(x, c, x_labels, c_labels)
        ctx.options = (name, margin, rows, exclusions, needs)
        ctx.grads = grads if weights is not None else None
        ctx.mark_non_differentiable(count_all, count_nonzero)
        return per_anchor, count_all, count_nonzero

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        name, margin, rows, exclusions, needs = ctx.options
        unused = (None,) * 9
        if not any(needs):
            return (None, None, *unused)
        if ctx.grads is not None:
            scale = grad[0] if grad.numel() else grad.new_zeros(())
            if torch.equal(grad, scale.expand_as(grad)):
                return (*(None if g is None else g * scale for g in ctx.grads), *unused)
        x, c, x_labels, c_labels = ctx.saved_tensors
        grads = _cross_batch_all_pass(
            name, x, c, x_labels, c_labels, margin, rows, exclusions, grad, needs
        )[3:]
        return (*grads, *unused)


def cross_batch_all_sums(
    x: Tensor,
    c: Tensor,
    x_labels: Tensor,
    c_labels: Tensor,
    *,
    distance: str,
    margin: float,
    rows: int,
    eager: bool,
    self_index: Tensor | None = None,
    x_ids: Tensor | None = None,
    c_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-anchor sums of ``max(d_ip - d_in + m, 0)`` over its kept candidates.

    ``p`` runs over anchor ``i``'s kept candidates of its label, ``n`` over its kept
    candidates of another label (left out: see :func:`cross_contrastive_sum`). Also
    ``Σ_i |P(i)|·|N(i)|`` and the number of triplets with a positive hinge (long, no
    gradient). Differentiable with respect to ``x`` and ``c``; ``eager``: the upstream
    gradient is expected to be one constant for every anchor, so the gradient is built
    in the forward pass (never under :func:`torch.compile`, see :func:`row_logsumexp`).
    """
    _check_ids(x_ids, c_ids)
    if distance == "cosine":
        x, c = normalize(x), normalize(c)
    if torch.compiler.is_compiling():
        eager = False
    return _CrossBatchAll.apply(
        x, c, x_labels, c_labels, distance, margin, rows, eager, self_index, x_ids, c_ids
    )


@torch.no_grad()
def cross_batch_hard_indices(
    x: Tensor,
    c: Tensor,
    x_labels: Tensor,
    c_labels: Tensor,
    *,
    distance: str,
    rows: int,
    self_index: Tensor | None = None,
    x_ids: Tensor | None = None,
    c_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Each anchor's farthest kept positive and closest kept negative among the candidates.

    Candidate indices, lowest on ties (left out: see :func:`cross_contrastive_sum`);
    ``valid`` says whether the anchor has both. The Euclidean kinds and cosine compare
    squared distances or similarities (the same order, without a square root); other
    distances use their own matrix.
    """
    _check_ids(x_ids, c_ids)
    b, m = x.shape[0], c.shape[0]
    farthest = torch.zeros(b, dtype=torch.long, device=x.device)
    closest = torch.zeros(b, dtype=torch.long, device=x.device)
    valid = torch.zeros(b, dtype=torch.bool, device=x.device)
    if m == 0:
        return farthest, closest, valid
    exclusions = (self_index, x_ids, c_ids)
    fast = distance in TILED_DISTANCES
    name = "squared_euclidean" if distance == "euclidean" else distance
    if name == "squared_euclidean":  # the same order, and no square overflows
        scale = power_of_two_scale(x, c)
        x, c = x / scale, c / scale
    elif name == "cosine":
        x, c = normalize(x), normalize(c)
    operands = _operands(name, x, c) if fast else None
    buffer = x.new_empty(min(rows, b), m) if fast else None
    masked = x.new_empty(min(rows, b), m)
    inf = x.new_tensor(float("inf"))
    for start in range(0, b, rows):
        stop = min(start + rows, b)
        if operands is not None:
            d = _cross_tile(name, operands, start, stop, buffer[: stop - start])  # type: ignore[index]
        else:
            d = DISTANCES[distance].matrix(x[start:stop], c)
        same = x_labels[start:stop, None] == c_labels[None, :]
        negative = ~same
        excluded = _excluded(start, stop, m, exclusions)
        if excluded is not None:
            same &= ~excluded
            negative &= ~excluded
        out = masked[: stop - start]
        closest[start:stop] = torch.where(negative, d, inf, out=out).argmin(dim=1)
        farthest[start:stop] = torch.where(same, d, -inf, out=out).argmax(dim=1)
        valid[start:stop] = same.any(dim=1) & negative.any(dim=1)
    return farthest, closest, valid
