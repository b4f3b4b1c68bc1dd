r"""One registry of distances and similarities between embeddings.

Every part of contrastkit that compares embeddings (losses, miners, metrics)
looks its metric up here by name, so ``"cosine"`` means the same thing
everywhere. Each entry gives two functions:

* the *paired* form: row ``i`` of ``x`` against row ``i`` of ``y``, shape ``(N,)``;
* the *matrix* form: every row of ``x`` against every row of ``y``, shape ``(N, M)``.

Distances (smaller is closer):

==================== ==========================================================
``"euclidean"``      :math:`\lVert x - y \rVert_2`
``"squared_euclidean"`` :math:`\lVert x - y \rVert_2^2`
``"cosine"``         :math:`1 - \cos(x, y)` (in ``[0, 2]``)
``"manhattan"``      :math:`\lVert x - y \rVert_1`
==================== ==========================================================

Similarities (larger is closer):

==================== ==========================================================
``"cosine"``         :math:`\cos(x, y) = x^\top y / (\lVert x\rVert \lVert y\rVert)`
``"dot"``            :math:`x^\top y`
==================== ==========================================================

Gradients are finite everywhere. At identical rows the Euclidean distance is
exactly 0 and its gradient is 0 (a valid subgradient of the norm at its kink);
a zero vector has cosine similarity 0 with every vector, with gradient 0; other rows
are divided by ``max(norm, 1e-12)`` as :func:`torch.nn.functional.normalize` does. The
cosine distance is clamped to ``[0, 2]`` against rounding. NaN in gives NaN out.

**Large inputs.** The Euclidean kinds and the norms behind the cosine are computed on
rows divided by a power of two near their largest magnitude (one per row in the paired
forms and :func:`normalize`, one for both inputs in the matrix forms), then scaled back.
Dividing by a power of two is exact, so where nothing overflows or underflows the bits
are those of the direct formulas; where the direct formula would overflow (squares of
``1.9e19`` in float32) the distance stays finite and right, the cosine stays the cosine,
and only a result beyond the largest float is ``inf`` (the squared distance of rows
``1e20`` apart, say). Their backward passes take the same scaled rows and saturate an
infinite upstream gradient to the largest float first, so no gradient is ever
``0 · inf = NaN``. Manhattan distances and dot products are not rescaled: they overflow
only where their value itself exceeds the largest float.

The matrix forms of ``"euclidean"`` and ``"squared_euclidean"`` use the
expansion :math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2 x^\top y` so that
they cost one matrix product and never build an ``(N, M, D)`` tensor. The squared
distance is clamped at 0 and carries a rounding error of about ``1e-7`` times
:math:`\lVert x\rVert^2 + \lVert y\rVert^2` in float32, which the square root turns
into about ``1e-3`` for rows of unit scale that are nearly identical. A batch compared
with itself (``distance_matrix(x)``, or ``y`` the same tensor as ``x``) gets an exact
zero diagonal; use the paired form where near-duplicate distances must be exact.

Example:
    >>> import torch
    >>> from contrastkit.distances import paired_distance, distance_matrix
    >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    >>> paired_distance(x, torch.zeros(2, 2), "euclidean")
    tensor([0., 5.])
    >>> distance_matrix(x, x, "manhattan")
    tensor([[0., 7.],
            [7., 0.]])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from contrastkit._validation import check_same_device, check_same_shape, check_tensor, compute_dtype

__all__ = [
    "DISTANCES",
    "SIMILARITIES",
    "DistanceName",
    "Metric",
    "SimilarityName",
    "distance_matrix",
    "get_distance",
    "get_similarity",
    "matrix_euclidean_and_square",
    "normalize",
    "paired_distance",
    "paired_euclidean_and_square",
    "paired_similarity",
    "power_of_two_scale",
    "safe_sqrt",
    "similarity_matrix",
]

DistanceName = Literal["euclidean", "squared_euclidean", "cosine", "manhattan"]
SimilarityName = Literal["cosine", "dot"]

_NORM_EPS = 1e-12


@dataclass(frozen=True)
class Metric:
    """A named way of comparing embeddings, in paired and matrix form.

    Attributes:
        name: the registry key.
        paired: ``f(x, y) -> (N,)``, row ``i`` of ``x`` against row ``i`` of ``y``.
        matrix: ``f(x, y) -> (N, M)``, every row of ``x`` against every row of ``y``.
        higher_is_closer: ``True`` for similarities, ``False`` for distances.
    """

    name: str
    paired: Callable[[Tensor, Tensor], Tensor]
    matrix: Callable[[Tensor, Tensor], Tensor]
    higher_is_closer: bool


class _SafeSqrt(torch.autograd.Function):
    """sqrt with gradient 0 (not inf or NaN) where the input is 0: one pass each way."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, squared: Tensor) -> Tensor:
        root = squared.sqrt()
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (root,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.where(root > 0, grad / (2.0 * root), 0.0)


def safe_sqrt(squared: Tensor) -> Tensor:
    """Square root of a non-negative tensor whose gradient is 0, not inf or NaN, at 0.

    NaN stays NaN.
    """
    return _SafeSqrt.apply(squared)


# --- scaling by powers of two, so that no square overflows ----------------------------


def _power_of_two(largest: Tensor) -> Tensor:
    """The power of two ``s`` with ``largest / s`` in ``[1, 2)``; 1 where ``largest`` is 0.

    Dividing by a power of two is exact (short of the subnormal range), so a computation
    on ``x / s``, scaled back by ``s``, gives the bits of the direct one unless the
    direct one overflows or underflows. Used on detached values only; 1 for a
    non-finite ``largest`` too (NaN in gives NaN out).
    """
    mantissa, _ = torch.frexp(largest)  # largest = mantissa * 2**e, mantissa in [0.5, 1)
    scale = largest / (2.0 * mantissa)  # 2**(e - 1), exactly, and finite
    return torch.where((largest > 0) & torch.isfinite(largest), scale, 1.0)


def _largest(t: Tensor, *, rows: bool = False) -> Tensor:
    """The largest magnitude in ``t`` (per row, ``(..., 1)``, with ``rows``), detached."""
    # abs().amax(): many times faster than vector_norm(ord=inf) on the CPU
    if rows:
        return t.detach().abs().amax(dim=-1, keepdim=True)
    return t.detach().abs().amax() if t.numel() else t.new_zeros(())


def power_of_two_scale(*tensors: Tensor) -> Tensor:
    """A power of two near the largest magnitude in ``tensors`` (1 if all are 0), 0-D.

    Dividing by it is exact (short of the subnormal range) and brings the largest
    magnitude into ``[1, 2)``: distances of the scaled rows, times the scale, are those
    of the rows themselves, without their squares overflowing. Detached.
    """
    largest = _largest(tensors[0])
    for t in tensors[1:]:
        largest = torch.maximum(largest, _largest(t))
    return _power_of_two(largest)


def _saturate(t: Tensor) -> Tensor:
    """``t`` with ±inf brought to ±(largest float), in place (NaN stays NaN).

    Multiplied by a zero factor it then gives 0, not ``0 · inf = NaN``; where the true
    product overflows, the result still comes out ±inf.
    """
    largest = torch.finfo(t.dtype).max
    return t.clamp_(-largest, largest)


def normalize(x: Tensor) -> Tensor:
    """Rows scaled to unit length; a zero row stays zero, with a zero gradient.

    Each row is divided by a power of two near its largest magnitude before its norm is
    taken, so that a row of any finite size (``1e30`` in float32, whose squares
    overflow) keeps its direction instead of being taken for zero. Rows shorter than
    ``1e-12`` are divided by ``1e-12``, as :func:`torch.nn.functional.normalize` does.
    NaN rows stay NaN.
    """
    if x.shape[-1] == 0:
        return x * 1.0
    scale = _power_of_two(_largest(x, rows=True))
    u = x / scale
    length = torch.linalg.vector_norm(u, dim=-1, keepdim=True)  # >= 1 unless the row is 0
    norm = length * scale
    # u / (eps / s) is x / eps, exactly: s is a power of two
    divisor = torch.where(norm < _NORM_EPS, _NORM_EPS / scale, length)
    # exactly zero rows get 0 and gradient 0 (a gradient of 1/eps = 1e12 would overflow
    # float16 inputs); a NaN norm fails every comparison, so NaN rows stay NaN
    return torch.where(norm == 0, 0.0, u / divisor)


class _PairedEuclidean(torch.autograd.Function):
    """``(|x - y|, |x - y|²)`` per row, computed on the difference divided by a power of two.

    The gradients come from the scaled difference ``u`` and the scale ``s``:
    ``u / |u|`` for the distance (0 at distance 0) and ``2 s u`` for its square, with the
    per-row factors saturated first, so that a gradient is never ``0 · inf``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        # a difference beyond the largest float means a distance beyond it too (inf, as
        # before); saturated, it still gives the right direction for the gradient
        u = _saturate(x - y)
        scale = _power_of_two(_largest(u, rows=True))
        u.div_(scale)
        summed = u.pow(2).sum(dim=-1)
        s = scale.squeeze(-1)
        root = summed.sqrt()
        ctx.save_for_backward(u, root, s)
        ctx.set_materialize_grads(False)
        return root * s, summed.mul_(s).mul_(s)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_d: Tensor | None, grad_squared: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None]:
        if grad_d is None and grad_squared is None:
            return None, None
        u, root, s = ctx.saved_tensors
        # d|u s| / dx = u / |u| (0 at 0); d(s² |u|²) / dx = 2 s u: one factor per row
        factor = torch.zeros_like(root)
        if grad_d is not None:
            factor = factor + grad_d / torch.where(root > 0, root, 1.0)
        if grad_squared is not None:
            factor = factor + (2.0 * grad_squared) * s
        grad = u * _saturate(factor).unsqueeze(-1)
        return (
            grad if ctx.needs_input_grad[0] else None,
            -grad if ctx.needs_input_grad[1] else None,
        )


def paired_euclidean_and_square(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Row ``i`` of ``x`` against row ``i`` of ``y``: the Euclidean distance and its square.

    Both come from one pass over ``x - y`` divided, row by row, by a power of two near
    its largest magnitude, so nothing overflows before the result itself: the distance
    is finite whenever it is representable (rows of ``1e20``, whose squares overflow
    float32, are ``1.4e20`` apart, not ``inf``), and the square is ``inf`` only where it
    exceeds the largest float. Where nothing overflows or underflows, the bits are those
    of ``sqrt(sum((x - y)**2))`` and ``sum((x - y)**2)``. The gradients are never NaN
    (finite wherever the true gradient is representable) and 0 at distance 0.
    """
    if x.shape[-1] == 0:
        zero = (x - y).sum(dim=-1)
        return zero, zero
    d, squared = _PairedEuclidean.apply(x, y)
    return d, squared


def _paired_squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    return paired_euclidean_and_square(x, y)[1]


def _paired_euclidean(x: Tensor, y: Tensor) -> Tensor:
    return paired_euclidean_and_square(x, y)[0]


def _paired_manhattan(x: Tensor, y: Tensor) -> Tensor:
    return (x - y).abs().sum(dim=-1)


def _paired_cosine_similarity(x: Tensor, y: Tensor) -> Tensor:
    return (normalize(x) * normalize(y)).sum(dim=-1)


def _paired_cosine_distance(x: Tensor, y: Tensor) -> Tensor:
    # rounding can push cos a hair above 1; the distance stays in [0, 2]
    return (1.0 - _paired_cosine_similarity(x, y)).clamp(0.0, 2.0)


def _paired_dot(x: Tensor, y: Tensor) -> Tensor:
    return (x * y).sum(dim=-1)


def _scaled_squares(u: Tensor, v: Tensor, same: bool) -> Tensor:
    """``|u_i - v_j|²`` as ``|u|² + |v|² - 2 u·v``, clamped at 0, exact 0 on a self-diagonal."""
    u_norms = u.pow(2).sum(dim=-1)
    v_norms = u_norms if same else v.pow(2).sum(dim=-1)
    squared = torch.addmm(u_norms[:, None] + v_norms[None, :], u, v.T, alpha=-2.0)
    squared.clamp_min_(0.0)
    if same:  # a batch against itself: each row's distance to itself is exactly 0
        squared.fill_diagonal_(0.0)
    return squared


def _pull(weights: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``Σ_j w_ij (u_i - v_j)`` for each row ``i`` and ``Σ_i w_ij (v_j - u_i)`` for each ``j``."""
    grad_u = weights.sum(dim=1, keepdim=True) * u - weights @ v
    grad_v = weights.sum(dim=0).unsqueeze(1) * v - weights.T @ u
    return grad_u, grad_v


_DISTANCE, _SQUARED, _BOTH = 1, 2, 3


class _MatrixEuclidean(torch.autograd.Function):
    """Every row of ``x`` against every row of ``y``, on inputs divided by one power of two.

    ``want`` selects the distance, its square, or both (a tuple); ``y=None`` compares
    ``x`` with itself (one input, as :func:`torch.compile` wants). As in the paired
    form, nothing overflows before the result, and the gradients are built from the
    scaled rows ``u``, ``v``: ``Σ_j w_ij (u_i - v_j)`` with ``w = grad / |u - v|`` (0 at
    distance 0) for the distance, and ``2 s`` times that with ``w = grad`` for its
    square (0 where the square is 0). The weights are saturated and divided by a power
    of two near their largest before the sums, whose result the factors multiply last.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, y: Tensor | None, want: int
    ) -> Tensor | tuple[Tensor, Tensor]:
        scale = power_of_two_scale(x) if y is None else power_of_two_scale(x, y)
        u = x / scale
        v = u if y is None else y / scale
        summed = _scaled_squares(u, v, y is None)
        ctx.want = want
        ctx.set_materialize_grads(False)
        if want == _SQUARED:
            squared = summed.mul_(scale).mul_(scale)
            ctx.save_for_backward(x, y, scale, squared)
            return squared
        if want == _DISTANCE:
            d = summed.sqrt_().mul_(scale)
            ctx.save_for_backward(x, y, scale, d)
            return d
        d = summed.sqrt().mul_(scale)
        ctx.save_for_backward(x, y, scale, d)
        return d, summed.mul_(scale).mul_(scale)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad_d, grad_squared = (grads[0], None) if ctx.want == _DISTANCE else (None, grads[0])
        if ctx.want == _BOTH:
            grad_d, grad_squared = grads
        if grad_d is None and grad_squared is None:
            return None, None, None
        x, y, scale, saved = ctx.saved_tensors
        u = x / scale
        v = u if y is None else y / scale
        if ctx.want == _SQUARED:
            positive = saved > 0
        else:
            root = saved / scale  # exact: the distance is root * scale
            positive = root > 0
        if grad_d is None:
            assert grad_squared is not None
            weights = 2.0 * grad_squared
        else:
            weights = grad_d / torch.where(positive, root, 1.0)
            if grad_squared is not None:  # the factor s comes last, as for the square
                weights = weights.div_(scale).add_(grad_squared, alpha=2.0)
        weights = _saturate(torch.where(positive, weights, 0.0))
        weight_scale = power_of_two_scale(weights)
        grad_x, grad_y = _pull(weights.div_(weight_scale), u, v)
        grad_x, grad_y = grad_x.mul_(weight_scale), grad_y.mul_(weight_scale)
        if grad_squared is not None:
            grad_x, grad_y = grad_x.mul_(scale), grad_y.mul_(scale)
        if y is None:  # x on both sides
            return grad_x.add_(grad_y), None, None
        return (
            grad_x if ctx.needs_input_grad[0] else None,
            grad_y if ctx.needs_input_grad[1] else None,
            None,
        )


def matrix_euclidean_and_square(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Every row of ``x`` against every row of ``y``: Euclidean distances and their squares.

    The matrix counterpart of :func:`paired_euclidean_and_square`: the inputs are divided
    by one power of two near their largest magnitude, so nothing overflows before the
    result. ``y`` the same tensor as ``x`` gives an exact zero diagonal.
    """
    d, squared = _MatrixEuclidean.apply(x, None if y is x else y, _BOTH)
    return d, squared


def _matrix_squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    return _MatrixEuclidean.apply(x, None if y is x else y, _SQUARED)


def _matrix_euclidean(x: Tensor, y: Tensor) -> Tensor:
    return _MatrixEuclidean.apply(x, None if y is x else y, _DISTANCE)


def _matrix_manhattan(x: Tensor, y: Tensor) -> Tensor:
    # cdist with p=1 streams over the feature dimension: no (N, M, D) tensor.
    return torch.cdist(x.unsqueeze(0), y.unsqueeze(0), p=1.0).squeeze(0)


def _matrix_cosine_similarity(x: Tensor, y: Tensor) -> Tensor:
    return normalize(x) @ normalize(y).T


def _matrix_cosine_distance(x: Tensor, y: Tensor) -> Tensor:
    return (1.0 - _matrix_cosine_similarity(x, y)).clamp(0.0, 2.0)


def _matrix_dot(x: Tensor, y: Tensor) -> Tensor:
    return x @ y.T


DISTANCES: dict[str, Metric] = {
    "euclidean": Metric("euclidean", _paired_euclidean, _matrix_euclidean, False),
    "squared_euclidean": Metric(
        "squared_euclidean", _paired_squared_euclidean, _matrix_squared_euclidean, False
    ),
    "cosine": Metric("cosine", _paired_cosine_distance, _matrix_cosine_distance, False),
    "manhattan": Metric("manhattan", _paired_manhattan, _matrix_manhattan, False),
}
"""Distances by name: smaller is closer."""

SIMILARITIES: dict[str, Metric] = {
    "cosine": Metric("cosine", _paired_cosine_similarity, _matrix_cosine_similarity, True),
    "dot": Metric("dot", _paired_dot, _matrix_dot, True),
}
"""Similarities by name: larger is closer."""


def _lookup(registry: dict[str, Metric], name: object, argument: str, kind: str) -> Metric:
    if not isinstance(name, str):
        raise TypeError(
            f"{argument} must be the name of a {kind} (one of {sorted(registry)}), "
            f"got {type(name).__name__} {name!r}"
        )
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"{argument} must be one of {sorted(registry)}, got {name!r}") from None


def get_distance(name: str, *, argument: str = "distance") -> Metric:
    """Return the registered distance called ``name``.

    Args:
        name: one of ``"euclidean"``, ``"squared_euclidean"``, ``"cosine"``, ``"manhattan"``.
        argument: the argument name to use in error messages.

    Raises:
        ValueError: ``name`` is not registered (the message lists valid names).
        TypeError: ``name`` is not a string.
    """
    return _lookup(DISTANCES, name, argument, "distance")


def get_similarity(name: str, *, argument: str = "similarity") -> Metric:
    """Return the registered similarity called ``name`` (``"cosine"`` or ``"dot"``).

    Raises:
        ValueError: ``name`` is not registered (the message lists valid names).
        TypeError: ``name`` is not a string.
    """
    return _lookup(SIMILARITIES, name, argument, "similarity")


def _prepare(x: Tensor, y: Tensor, *, paired: bool) -> tuple[Tensor, Tensor]:
    x = check_tensor("x", x, ndim=2)
    y = check_tensor("y", y, ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same number of features, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if paired:
        check_same_shape(x=x, y=y)
    check_same_device(x=x, y=y)
    dtype = compute_dtype(x, y)
    if y is x:  # keep the identity: a batch against itself has an exact zero diagonal
        x = y = x.to(dtype)
        return x, y
    return x.to(dtype), y.to(dtype)


def paired_distance(x: Tensor, y: Tensor, distance: DistanceName = "euclidean") -> Tensor:
    """Distance between row ``i`` of ``x`` and row ``i`` of ``y``.

    Args:
        x: ``(N, D)`` embeddings.
        y: ``(N, D)`` embeddings.
        distance: a name from :data:`DISTANCES`.

    Returns:
        ``(N,)`` distances, in float32 for half-precision inputs.
    """
    metric = get_distance(distance)
    return metric.paired(*_prepare(x, y, paired=True))


def distance_matrix(
    x: Tensor, y: Tensor | None = None, distance: DistanceName = "euclidean"
) -> Tensor:
    """Distances between every row of ``x`` and every row of ``y`` (``y = x`` if omitted).

    Returns:
        ``(N, M)`` distances, in float32 for half-precision inputs.
    """
    metric = get_distance(distance)
    y = x if y is None else y
    return metric.matrix(*_prepare(x, y, paired=False))


def paired_similarity(x: Tensor, y: Tensor, similarity: SimilarityName = "cosine") -> Tensor:
    """Similarity between row ``i`` of ``x`` and row ``i`` of ``y``, shape ``(N,)``."""
    metric = get_similarity(similarity)
    return metric.paired(*_prepare(x, y, paired=True))


def similarity_matrix(
    x: Tensor, y: Tensor | None = None, similarity: SimilarityName = "cosine"
) -> Tensor:
    """Similarities between every row of ``x`` and every row of ``y``, shape ``(N, M)``."""
    metric = get_similarity(similarity)
    y = x if y is None else y
    return metric.matrix(*_prepare(x, y, paired=False))
