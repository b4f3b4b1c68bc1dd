"""Tests for ``contrastkit.distances``: the one registry of distances and similarities.

Values are checked against a deliberately naive reference: explicit Python loops
over rows and features, with :mod:`math` on float64 Python floats, written from the
formulas in the module docstring and never from torch's vectorized ops.

Tolerances depend on the dtype the library computes in (``eps`` below) and on the
size of the inputs (``scale`` = 1 + the largest squared row norm): sums of
products are accurate to a few ``eps * scale`` in absolute terms. The matrix forms
of the Euclidean distances use the expansion ``|x|^2 + |y|^2 - 2 x.y`` clamped at
0, so the squared distance is off by up to ``delta = C * eps * scale`` and, after
the square root, the distance ``e`` is off by up to ``min(sqrt(delta), delta / e)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from contrastkit.distances import (
    DISTANCES,
    SIMILARITIES,
    Metric,
    distance_matrix,
    get_distance,
    get_similarity,
    paired_distance,
    paired_similarity,
    safe_sqrt,
    similarity_matrix,
)

DISTANCE_NAMES = ("euclidean", "squared_euclidean", "cosine", "manhattan")
SIMILARITY_NAMES = ("cosine", "dot")
METRICS = [("distance", name) for name in DISTANCE_NAMES] + [
    ("similarity", name) for name in SIMILARITY_NAMES
]
METRIC_IDS = [f"{kind}-{name}" for kind, name in METRICS]
HALF_DTYPES = [torch.float16, torch.bfloat16]
FULL_DTYPES = [torch.float32, torch.float64]

# The norm clamp documented in the module docstring (as in F.normalize).
NORM_EPS = 1e-12
# Headroom over the unit roundoff for the few-term sums used in these tests.
ROUNDING = 64.0

Pair = Callable[[Tensor, Tensor], Tensor]
MatrixFn = Callable[[Tensor, "Tensor | None"], Tensor]


# --------------------------------------------------------------------------------------
# Naive reference: loops over rows and features, math on float64 Python floats.
# --------------------------------------------------------------------------------------


def _ref_squared_euclidean(u: list[float], v: list[float]) -> float:
    terms = []
    for a, b in zip(u, v, strict=True):
        terms.append((a - b) * (a - b))
    return math.fsum(terms)


def _ref_euclidean(u: list[float], v: list[float]) -> float:
    return math.sqrt(_ref_squared_euclidean(u, v))


def _ref_manhattan(u: list[float], v: list[float]) -> float:
    terms = []
    for a, b in zip(u, v, strict=True):
        terms.append(abs(a - b))
    return math.fsum(terms)


def _ref_dot(u: list[float], v: list[float]) -> float:
    terms = []
    for a, b in zip(u, v, strict=True):
        terms.append(a * b)
    return math.fsum(terms)


def _ref_norm(u: list[float]) -> float:
    return math.sqrt(_ref_dot(u, u))


def _ref_cosine_similarity(u: list[float], v: list[float]) -> float:
    # A zero vector has similarity 0 with everything: its norm is clamped to 1e-12.
    return _ref_dot(u, v) / (max(_ref_norm(u), NORM_EPS) * max(_ref_norm(v), NORM_EPS))


def _ref_cosine_distance(u: list[float], v: list[float]) -> float:
    return 1.0 - _ref_cosine_similarity(u, v)


REFERENCE = {
    ("distance", "euclidean"): _ref_euclidean,
    ("distance", "squared_euclidean"): _ref_squared_euclidean,
    ("distance", "cosine"): _ref_cosine_distance,
    ("distance", "manhattan"): _ref_manhattan,
    ("similarity", "cosine"): _ref_cosine_similarity,
    ("similarity", "dot"): _ref_dot,
}


def _rows(t: Tensor) -> list[list[float]]:
    return t.detach().to("cpu", torch.float64).tolist()


def _reference_paired(kind: str, name: str, x: Tensor, y: Tensor) -> Tensor:
    fn = REFERENCE[(kind, name)]
    out = []
    for u, v in zip(_rows(x), _rows(y), strict=True):
        out.append(fn(u, v))
    return torch.tensor(out, dtype=torch.float64)


def _reference_matrix(kind: str, name: str, x: Tensor, y: Tensor) -> Tensor:
    fn = REFERENCE[(kind, name)]
    out = []
    for u in _rows(x):
        row = []
        for v in _rows(y):
            row.append(fn(u, v))
        out.append(row)
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape[0], y.shape[0])


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _registry(kind: str) -> dict[str, Metric]:
    return DISTANCES if kind == "distance" else SIMILARITIES


def _paired_fn(kind: str, name: str, api: str = "function") -> Pair:
    if api == "registry":
        return _registry(kind)[name].paired
    if kind == "distance":
        return lambda x, y: paired_distance(x, y, name)
    return lambda x, y: paired_similarity(x, y, name)


def _matrix_fn(kind: str, name: str, api: str = "function") -> MatrixFn:
    if api == "registry":
        matrix = _registry(kind)[name].matrix
        return lambda x, y: matrix(x, x if y is None else y)
    if kind == "distance":
        return lambda x, y: distance_matrix(x, y, name)
    return lambda x, y: similarity_matrix(x, y, name)


def _compute_eps(*tensors: Tensor) -> float:
    """Unit roundoff of the dtype the library computes in (at least float32)."""
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return torch.finfo(dtype).eps


def _scale(*tensors: Tensor) -> float:
    """1 + the largest squared row norm among the inputs."""
    norms = [float(t.detach().double().pow(2).sum(dim=1).max()) for t in tensors if t.numel()]
    return 1.0 + max(norms, default=0.0)


def _tolerance(kind: str, name: str, form: str, expected: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Per-element absolute tolerance for a computed value near ``expected``."""
    eps, scale = _compute_eps(x, y), _scale(x, y)
    if name == "cosine":
        return torch.full_like(expected, ROUNDING * eps)
    if name == "euclidean" and form == "paired":
        return torch.full_like(expected, ROUNDING * eps * math.sqrt(scale))
    delta = ROUNDING * eps * scale
    if name == "euclidean":  # matrix: square root of the clamped expansion
        # |sqrt(a) - sqrt(b)| <= min(sqrt(|a - b|), |a - b| / sqrt(b)); delta / 0 = inf.
        return (delta / expected.abs()).clamp_max(math.sqrt(delta))
    return torch.full_like(expected, delta)


def _assert_within(actual: Tensor, expected: Tensor, tol: Tensor) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = (actual.detach().double() - expected.double()).abs()
    bad = err > tol
    assert not bool(bad.any()), (
        f"{int(bad.sum())} element(s) out of tolerance; worst error {float(err.max()):.3g}\n"
        f"actual:\n{actual}\nexpected:\n{expected}\ntolerance:\n{tol}"
    )


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(case: str, dtype: torch.dtype, *, n: int = 5, d: int = 7) -> tuple[Tensor, Tensor]:
    """Two ``(n, d)`` inputs for the paired form (and the matrix form)."""
    g = _generator(1234)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, d, generator=g, dtype=torch.float64)
    if case == "identical":
        y = x.clone()
    elif case == "zero":
        x[1] = 0.0  # zero against zero
        y[1] = 0.0
        y[3] = 0.0  # nonzero against zero
        x[4] = 0.0  # zero against nonzero
    elif case == "large":
        x, y = 50.0 * x, 50.0 * y
        y[2] = x[2]
    elif case == "tiny":  # norms ~1e-8: far below 1, still above the 1e-12 norm clamp
        x, y = 1e-8 * x, 1e-8 * y
        y[2] = x[2]
    elif case != "random":
        raise AssertionError(case)
    return x.to(dtype), y.to(dtype)


def _matrix_inputs(case: str, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """``(x, y)`` for the matrix form; ``y`` is None for the ``"self"`` case."""
    if case == "self":
        x, _ = _inputs("random", dtype)
        x[2] = 0.0
        return x, None
    if case == "rectangular":
        x, y = _inputs("random", dtype)
        return x, torch.cat([y[:2], x[3:4], torch.zeros_like(y[:1])])
    return _inputs(case, dtype)


PAIRED_CASES = ["random", "identical", "zero", "large", "tiny"]
MATRIX_CASES = [*PAIRED_CASES, "rectangular", "self"]


# --------------------------------------------------------------------------------------
# 0. The registry itself
# --------------------------------------------------------------------------------------


def test_registry_names_and_direction():
    assert set(DISTANCES) == set(DISTANCE_NAMES)
    assert set(SIMILARITIES) == set(SIMILARITY_NAMES)
    for name, metric in DISTANCES.items():
        assert metric.name == name
        assert metric.higher_is_closer is False
    for name, metric in SIMILARITIES.items():
        assert metric.name == name
        assert metric.higher_is_closer is True


@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_get_returns_registry_entry(kind, name):
    getter = get_distance if kind == "distance" else get_similarity
    assert getter(name) is _registry(kind)[name]


def test_known_values():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    torch.testing.assert_close(paired_distance(x, y, "euclidean"), torch.tensor([5.0, 5**0.5, 0]))
    torch.testing.assert_close(
        paired_distance(x, y, "squared_euclidean"), torch.tensor([25.0, 5.0, 0.0])
    )
    torch.testing.assert_close(paired_distance(x, y, "manhattan"), torch.tensor([7.0, 3.0, 0.0]))
    # Orthogonal rows have cosine distance 1; a zero vector has cosine distance 1 too.
    torch.testing.assert_close(paired_distance(x, y, "cosine"), torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(paired_similarity(x, y, "cosine"), torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(paired_similarity(x, y, "dot"), torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(
        paired_similarity(x, -2.0 * x, "cosine"), torch.tensor([-1.0, -1.0, 0.0])
    )
    torch.testing.assert_close(
        paired_distance(x, -2.0 * x, "cosine"), torch.tensor([2.0, 2.0, 1.0])
    )


def test_safe_sqrt_value_and_gradient():
    s = torch.tensor([0.0, 0.25, 4.0], dtype=torch.float64, requires_grad=True)
    out = safe_sqrt(s)
    assert torch.equal(out, torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64))
    out.sum().backward()
    assert torch.equal(s.grad, torch.tensor([0.0, 1.0, 0.25], dtype=torch.float64))


# --------------------------------------------------------------------------------------
# 1. Against the naive reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", PAIRED_CASES)
@pytest.mark.parametrize("dtype", FULL_DTYPES, ids=str)
@pytest.mark.parametrize("api", ["function", "registry"])
@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_paired_matches_reference(kind, name, api, dtype, case):
    x, y = _inputs(case, dtype)
    out = _paired_fn(kind, name, api)(x, y)
    assert out.dtype == dtype
    expected = _reference_paired(kind, name, x, y)
    _assert_within(out, expected, _tolerance(kind, name, "paired", expected, x, y))


@pytest.mark.parametrize("case", MATRIX_CASES)
@pytest.mark.parametrize("dtype", FULL_DTYPES, ids=str)
@pytest.mark.parametrize("api", ["function", "registry"])
@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_matrix_matches_reference(kind, name, api, dtype, case):
    x, y = _matrix_inputs(case, dtype)
    out = _matrix_fn(kind, name, api)(x, y)
    assert out.dtype == dtype
    y_full = x if y is None else y
    expected = _reference_matrix(kind, name, x, y_full)
    _assert_within(out, expected, _tolerance(kind, name, "matrix", expected, x, y_full))


@pytest.mark.parametrize("form", ["paired", "matrix"])
def test_cosine_of_zero_vector(form):
    zero = torch.zeros(2, 3)
    other = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    if form == "paired":
        sim, dist = paired_similarity(zero, other), paired_distance(zero, other, "cosine")
    else:
        sim, dist = similarity_matrix(zero, other), distance_matrix(zero, other, "cosine")
    assert torch.equal(sim, torch.zeros_like(sim))
    assert torch.equal(dist, torch.ones_like(dist))


# --------------------------------------------------------------------------------------
# 2. Matrix form == paired form over every pair of rows
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [*HALF_DTYPES, *FULL_DTYPES], ids=str)
@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_matrix_consistent_with_paired(kind, name, dtype):
    compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    g = _generator(7)
    x = (3.0 * torch.randn(6, 5, generator=g)).to(dtype)
    y = torch.cat([(3.0 * torch.randn(3, 5, generator=g)).to(dtype), x[4:5], x[:1] * 0])
    n, m = x.shape[0], y.shape[0]
    matrix = _matrix_fn(kind, name)(x, y)
    paired_fn = _paired_fn(kind, name)
    paired = torch.stack(
        [torch.cat([paired_fn(x[i : i + 1], y[j : j + 1]) for j in range(m)]) for i in range(n)]
    )
    assert matrix.shape == (n, m)
    assert matrix.dtype == paired.dtype == compute_dtype
    _assert_within(matrix, paired, _tolerance(kind, name, "matrix", paired, x, y))


# --------------------------------------------------------------------------------------
# 3. gradcheck in float64 at generic points
# --------------------------------------------------------------------------------------


def _generic_points(n: int = 4, m: int = 3, d: int = 5) -> tuple[Tensor, Tensor]:
    g = _generator(99)
    x = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(m, d, generator=g, dtype=torch.float64, requires_grad=True)
    return x, y


@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_gradcheck_paired(kind, name):
    x, y = _generic_points(4, 4)
    assert torch.autograd.gradcheck(_paired_fn(kind, name), (x, y))


@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_gradcheck_matrix(kind, name):
    x, y = _generic_points(4, 3)
    assert torch.autograd.gradcheck(_matrix_fn(kind, name), (x, y))


@pytest.mark.parametrize("name", SIMILARITY_NAMES)
def test_gradcheck_self_similarity_matrix(name):
    # y omitted: x feeds both sides; similarities are smooth on the diagonal too.
    x, _ = _generic_points()
    assert torch.autograd.gradcheck(lambda t: similarity_matrix(t, None, name), (x,))


# --------------------------------------------------------------------------------------
# 4. Finite gradients at the kinks, and an exact 0 for identical rows
# --------------------------------------------------------------------------------------


def _kink_inputs(case: str, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    g = _generator(5)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    if case == "identical":
        y = x.clone()
    elif case == "zero_x":
        x[1] = 0.0
        y = torch.randn(4, 6, generator=g, dtype=torch.float64)
    elif case == "zero_both":
        x[1] = 0.0
        y = torch.zeros_like(x)
    elif case == "self":
        x[2] = 0.0
        y = None
    else:
        raise AssertionError(case)
    x = x.to(dtype).requires_grad_(True)
    if y is not None:
        y = y.to(dtype).requires_grad_(True)
    return x, y


KINKS = [
    (form, case)
    for form in ("paired", "matrix")
    for case in ("identical", "zero_x", "zero_both", "self")
    if not (form == "paired" and case == "self")  # y may only be omitted in the matrix form
]


@pytest.mark.parametrize(("form", "case"), KINKS, ids=[f"{f}-{c}" for f, c in KINKS])
@pytest.mark.parametrize("dtype", [torch.bfloat16, *FULL_DTYPES], ids=str)
@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_gradients_finite_at_kinks(kind, name, dtype, form, case):
    x, y = _kink_inputs(case, dtype)
    out = _paired_fn(kind, name)(x, y) if form == "paired" else _matrix_fn(kind, name)(x, y)
    assert bool(torch.isfinite(out).all())
    weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * weights).sum().backward()
    for t in (x, y):
        if t is not None:
            assert t.grad is not None
            assert t.grad.dtype == dtype
            assert bool(torch.isfinite(t.grad).all()), t.grad


@pytest.mark.parametrize("form", ["paired", "matrix"])
@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_float16_gradients_finite_at_zero_vector(kind, name, form):
    x, y = _kink_inputs("zero_x", torch.float16)
    out = _paired_fn(kind, name)(x, y) if form == "paired" else _matrix_fn(kind, name)(x, y)
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all()), x.grad
    assert bool(torch.isfinite(y.grad).all()), y.grad


@pytest.mark.parametrize("dtype", [*HALF_DTYPES, *FULL_DTYPES], ids=str)
def test_paired_euclidean_identical_rows_exactly_zero(dtype):
    x = (10.0 * torch.randn(6, 9, generator=_generator(3))).to(dtype).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    out = paired_distance(x, y, "euclidean")
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert torch.equal(y.grad, torch.zeros_like(y))


@pytest.mark.parametrize("dtype", FULL_DTYPES, ids=str)
def test_euclidean_matrix_diagonal_gradient_exactly_zero(dtype):
    x = torch.randn(32, 16, generator=_generator(11), dtype=dtype, requires_grad=True)
    distance_matrix(x, None, "euclidean").diagonal().sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_euclidean_matrix_identical_rows_exactly_zero():
    # a batch against itself gets an exact zero diagonal despite the expansion
    x = torch.randn(32, 16, generator=_generator(11))
    diagonal = distance_matrix(x, None, "euclidean").diagonal()
    assert torch.equal(diagonal, torch.zeros_like(diagonal))


# --------------------------------------------------------------------------------------
# 5. Half and mixed precision
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["paired", "matrix"])
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_half_precision_computes_in_float32(kind, name, dtype, form):
    g = _generator(21)
    x = torch.randn(5, 8, generator=g).to(dtype).requires_grad_(True)
    y = torch.randn(5, 8, generator=g).to(dtype).requires_grad_(True)
    x32 = x.detach().float().requires_grad_(True)
    y32 = y.detach().float().requires_grad_(True)
    fn = _paired_fn(kind, name) if form == "paired" else _matrix_fn(kind, name)
    out, out32 = fn(x, y), fn(x32, y32)
    assert out.dtype == torch.float32
    assert torch.equal(out, out32)
    weights = torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    (out32 * weights).sum().backward()
    for t, t32 in ((x, x32), (y, y32)):
        assert t.grad.dtype == dtype
        assert torch.equal(t.grad, t32.grad.to(dtype))


@pytest.mark.parametrize("form", ["paired", "matrix"])
@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_mixed_float32_float64_promotes_to_float64(kind, name, form):
    g = _generator(22)
    x = torch.randn(4, 6, generator=g, requires_grad=True)
    y = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    fn = _paired_fn(kind, name) if form == "paired" else _matrix_fn(kind, name)
    out = fn(x, y)
    assert out.dtype == torch.float64
    assert torch.equal(out, fn(x.detach().double(), y.detach()))
    out.sum().backward()
    assert x.grad.dtype == torch.float32
    assert y.grad.dtype == torch.float64
    assert fn(y, x).dtype == torch.float64


@pytest.mark.parametrize(
    ("dtype_x", "dtype_y", "expected"),
    [
        (torch.float16, torch.bfloat16, torch.float32),
        (torch.float16, torch.float32, torch.float32),
        (torch.bfloat16, torch.float64, torch.float64),
    ],
    ids=str,
)
def test_dtype_promotion_table(dtype_x, dtype_y, expected):
    x, y = torch.ones(2, 3, dtype=dtype_x), torch.ones(2, 3, dtype=dtype_y)
    assert paired_distance(x, y).dtype == expected
    assert distance_matrix(x, y).dtype == expected
    assert paired_similarity(x, y).dtype == expected
    assert similarity_matrix(x, y).dtype == expected


# --------------------------------------------------------------------------------------
# 6. Properties (hypothesis)
# --------------------------------------------------------------------------------------

COORDINATES = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False, allow_infinity=False)
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def same_shape_matrices(draw: st.DrawFn, count: int) -> tuple[Tensor, ...]:
    """``count`` float64 matrices of one random small shape ``(n, d)``."""
    n = draw(st.integers(min_value=1, max_value=4))
    d = draw(st.integers(min_value=1, max_value=5))
    size = n * d
    flat = draw(st.lists(COORDINATES, min_size=count * size, max_size=count * size))
    return tuple(
        torch.tensor(flat[k * size : (k + 1) * size], dtype=torch.float64).reshape(n, d)
        for k in range(count)
    )


@st.composite
def matrix_pairs(draw: st.DrawFn) -> tuple[Tensor, Tensor]:
    """``(n, d)`` and ``(m, d)`` float64 matrices."""
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    d = draw(st.integers(1, 5))
    x = draw(st.lists(COORDINATES, min_size=n * d, max_size=n * d))
    y = draw(st.lists(COORDINATES, min_size=m * d, max_size=m * d))
    return (
        torch.tensor(x, dtype=torch.float64).reshape(n, d),
        torch.tensor(y, dtype=torch.float64).reshape(m, d),
    )


def _cosine_slack(t: Tensor) -> float:
    return ROUNDING * torch.finfo(t.dtype).eps


@PROPERTY_SETTINGS
@given(xy=same_shape_matrices(2))
def test_property_paired_nonnegative_and_symmetric(xy):
    x, y = xy
    for name in DISTANCE_NAMES:
        d_xy, d_yx = paired_distance(x, y, name), paired_distance(y, x, name)
        assert torch.equal(d_xy, d_yx), name
        floor = -_cosine_slack(x) if name == "cosine" else 0.0
        assert bool((d_xy >= floor).all()), (name, d_xy)


@PROPERTY_SETTINGS
@given(xy=matrix_pairs())
def test_property_matrix_nonnegative_and_symmetric(xy):
    x, y = xy
    for name in DISTANCE_NAMES:
        d_xy, d_yx = distance_matrix(x, y, name), distance_matrix(y, x, name)
        assert d_xy.shape == (x.shape[0], y.shape[0])
        floor = -_cosine_slack(x) if name == "cosine" else 0.0
        assert bool((d_xy >= floor).all()), (name, d_xy)
        _assert_within(d_yx.T, d_xy, _tolerance("distance", name, "matrix", d_xy, x, y))
        d_xx = distance_matrix(x, None, name)
        _assert_within(d_xx.T, d_xx, _tolerance("distance", name, "matrix", d_xx, x, x))


@PROPERTY_SETTINGS
@given(xy=same_shape_matrices(1))
def test_property_zero_on_identical_rows(xy):
    (x,) = xy
    for name in DISTANCE_NAMES:
        paired = paired_distance(x, x.clone(), name)
        if name == "cosine":
            # 1 - cos(x, x) is 0 up to rounding; but 1 for a zero row, and 1 - |x|^2 / 1e-24
            # for a row of norm below the 1e-12 clamp.
            expected = _reference_paired("distance", "cosine", x, x)
            assert bool(((paired - expected).abs() <= _cosine_slack(x)).all()), paired
        else:
            assert torch.equal(paired, torch.zeros_like(paired)), (name, paired)
        diagonal = distance_matrix(x, None, name).diagonal()
        tol = _tolerance("distance", name, "matrix", paired, x, x)
        _assert_within(diagonal, paired, tol)


@PROPERTY_SETTINGS
@given(xyz=same_shape_matrices(3))
def test_property_triangle_inequality(xyz):
    x, y, z = xyz
    slack = ROUNDING * torch.finfo(x.dtype).eps * _scale(x, y, z)
    for name in ("euclidean", "manhattan"):
        d_xz = paired_distance(x, z, name)
        d_xy, d_yz = paired_distance(x, y, name), paired_distance(y, z, name)
        assert bool((d_xz <= d_xy + d_yz + slack).all()), (name, d_xz, d_xy + d_yz)
        # The matrix form, across all triples (i, j, k) of rows of x, y, z.
        m_xz = distance_matrix(x, z, name)
        m_xy, m_yz = distance_matrix(x, y, name), distance_matrix(y, z, name)
        through = (m_xy.unsqueeze(2) + m_yz.unsqueeze(0)).amin(dim=1)
        expansion = math.sqrt(slack) if name == "euclidean" else slack
        assert bool((m_xz <= through + 3 * expansion).all()), (name, m_xz, through)


@PROPERTY_SETTINGS
@given(xy=matrix_pairs())
def test_property_cosine_distance_in_zero_two(xy):
    x, y = xy
    slack = _cosine_slack(x)
    y_paired = y[:1].expand_as(x)
    for d in (distance_matrix(x, y, "cosine"), paired_distance(x, y_paired, "cosine")):
        assert bool(((d >= -slack) & (d <= 2.0 + slack)).all()), d
    s = similarity_matrix(x, y, "cosine")
    assert bool(((s >= -1.0 - slack) & (s <= 1.0 + slack)).all()), s


@PROPERTY_SETTINGS
@given(xy=matrix_pairs())
def test_property_euclidean_squared_is_squared_euclidean(xy):
    x, y = xy
    eps = torch.finfo(x.dtype).eps
    squared = distance_matrix(x, y, "squared_euclidean")
    torch.testing.assert_close(
        distance_matrix(x, y, "euclidean").pow(2), squared, rtol=8 * eps, atol=0.0
    )
    y_paired = y[:1].expand_as(x)
    torch.testing.assert_close(
        paired_distance(x, y_paired, "euclidean").pow(2),
        paired_distance(x, y_paired, "squared_euclidean"),
        rtol=8 * eps,
        atol=0.0,
    )


# --------------------------------------------------------------------------------------
# 7. Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("getter", "argument", "names"),
    [(get_distance, "distance", DISTANCE_NAMES), (get_similarity, "similarity", SIMILARITY_NAMES)],
    ids=["distance", "similarity"],
)
def test_unknown_name_lists_valid_names(getter, argument, names):
    with pytest.raises(ValueError, match=rf"^{argument} must be one of .*'nope'") as info:
        getter("nope")
    for name in names:
        assert repr(name) in str(info.value)
    with pytest.raises(ValueError, match=r"^margin_metric must be one of"):
        getter("Cosine", argument="margin_metric")


@pytest.mark.parametrize("bad", [3, None, b"cosine", ["cosine"], get_distance])
@pytest.mark.parametrize(
    ("getter", "argument"),
    [(get_distance, "distance"), (get_similarity, "similarity")],
    ids=["distance", "similarity"],
)
def test_non_string_name_is_type_error(getter, argument, bad):
    with pytest.raises(TypeError, match=rf"^{argument} must be the name of a"):
        getter(bad)


def test_similarity_name_is_not_a_distance():
    with pytest.raises(ValueError, match=r"^distance must be one of .*'dot'"):
        get_distance("dot")
    with pytest.raises(ValueError, match=r"^distance must be one of .*'dot'"):
        paired_distance(torch.ones(2, 3), torch.ones(2, 3), "dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^distance must be one of .*'dot'"):
        distance_matrix(torch.ones(2, 3), None, "dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^similarity must be one of .*'euclidean'"):
        similarity_matrix(torch.ones(2, 3), None, "euclidean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^similarity must be one of .*'manhattan'"):
        paired_similarity(torch.ones(2, 3), torch.ones(2, 3), "manhattan")  # type: ignore[arg-type]


PUBLIC = {
    "paired_distance": paired_distance,
    "paired_similarity": paired_similarity,
    "distance_matrix": distance_matrix,
    "similarity_matrix": similarity_matrix,
}
PAIRED_PUBLIC = ["paired_distance", "paired_similarity"]
MATRIX_PUBLIC = ["distance_matrix", "similarity_matrix"]


@pytest.mark.parametrize("function", list(PUBLIC))
@pytest.mark.parametrize(
    ("x", "y", "error", "pattern"),
    [
        ([[1.0, 2.0]], torch.ones(1, 2), TypeError, r"^x must be a torch\.Tensor, got list"),
        (torch.ones(1, 2), 1.5, TypeError, r"^y must be a torch\.Tensor, got float"),
        (torch.ones(1, 2, dtype=torch.int64), torch.ones(1, 2), TypeError, r"^x must be a real"),
        (torch.ones(1, 2), torch.ones(1, 2, dtype=torch.int32), TypeError, r"^y must be a real"),
        (torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2), TypeError, r"^x must be a real"),
        (torch.ones(1, 2, dtype=torch.cfloat), torch.ones(1, 2), TypeError, r"^x must be a real"),
        (torch.ones(2), torch.ones(1, 2), ValueError, r"^x must be 2-D, got shape \(2,\)"),
        (torch.ones(1, 2), torch.ones(2), ValueError, r"^y must be 2-D, got shape \(2,\)"),
        (
            torch.ones(1, 1, 2),
            torch.ones(1, 2),
            ValueError,
            r"^x must be 2-D, got shape \(1, 1, 2\)",
        ),
        (
            torch.ones(1, 2),
            torch.ones(1, 1, 2),
            ValueError,
            r"^y must be 2-D, got shape \(1, 1, 2\)",
        ),
        (
            torch.ones(2, 3),
            torch.ones(2, 4),
            ValueError,
            r"^x and y must have the same number of features, got shapes \(2, 3\) and \(2, 4\)",
        ),
        (
            torch.ones(2, 3),
            torch.ones(2, 3, device="meta"),
            ValueError,
            r"^all inputs must be on the same device, got x on cpu, y on meta",
        ),
    ],
    ids=[
        "x-list",
        "y-float",
        "x-int64",
        "y-int32",
        "x-bool",
        "x-complex",
        "x-1d",
        "y-1d",
        "x-3d",
        "y-3d",
        "features",
        "device",
    ],
)
def test_invalid_inputs(function, x, y, error, pattern):
    with pytest.raises(error, match=pattern):
        PUBLIC[function](x, y)


@pytest.mark.parametrize("function", MATRIX_PUBLIC)
def test_matrix_form_without_y_checks_x(function):
    with pytest.raises(ValueError, match=r"^x must be 2-D"):
        PUBLIC[function](torch.ones(3))
    with pytest.raises(TypeError, match=r"^x must be a real"):
        PUBLIC[function](torch.ones(3, 2, dtype=torch.long))


@pytest.mark.parametrize("function", PAIRED_PUBLIC)
def test_paired_row_count_mismatch(function):
    with pytest.raises(
        ValueError, match=r"^x and y must have the same shape, got x \(3, 4\), y \(2, 4\)"
    ):
        PUBLIC[function](torch.ones(3, 4), torch.ones(2, 4))


@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_matrix_row_counts_may_differ(kind, name):
    out = _matrix_fn(kind, name)(torch.randn(3, 4), torch.randn(5, 4))
    assert out.shape == (3, 5)


def test_metric_name_passed_as_y_is_rejected():
    # A common slip: the metric given positionally where y belongs.
    with pytest.raises(TypeError, match=r"^y must be a torch\.Tensor, got str"):
        distance_matrix(torch.ones(2, 3), "cosine")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^y must be a torch\.Tensor, got str"):
        similarity_matrix(torch.ones(2, 3), "dot")  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["paired", "matrix"])
def test_euclidean_propagates_nan(form):
    x = torch.tensor([[float("nan"), 1.0]])
    y = torch.zeros(1, 2)
    if form == "paired":
        out = paired_distance(x, y, "euclidean")
    else:
        out = distance_matrix(x, y, "euclidean")
    assert bool(out.isnan().all()), out


@pytest.mark.parametrize("form", ["paired", "matrix"])
def test_cosine_distance_exactly_in_documented_range(form):
    x = torch.tensor([[1.0, 1.0, 4.0]])
    out = (
        paired_distance(x, x, "cosine") if form == "paired" else distance_matrix(x, None, "cosine")
    )
    assert bool((out >= 0).all()), out


# --------------------------------------------------------------------------------------
# 8. Empty inputs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), METRICS, ids=METRIC_IDS)
def test_empty_inputs(kind, name):
    empty = torch.zeros(0, 3, requires_grad=True)
    full = torch.randn(4, 3, generator=_generator(8))
    paired = _paired_fn(kind, name)(empty, torch.zeros(0, 3))
    assert paired.shape == (0,)
    assert paired.dtype == torch.float32
    matrix = _matrix_fn(kind, name)
    assert matrix(empty, full).shape == (0, 4)
    assert matrix(full, torch.zeros(0, 3)).shape == (4, 0)
    assert matrix(empty, None).shape == (0, 0)
    matrix(empty, full).sum().backward()
    assert empty.grad is not None
    assert empty.grad.shape == (0, 3)
