"""The reconstruction loss of autoencoders: values, gradients, properties and bad input.

Every kind is checked against a naive reference written here with loops over Python
floats (one value per sample: the mean of the element-wise loss over its elements).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import contrastkit
import contrastkit.functional as F
from contrastkit import ReconstructionLoss, reconstruction_loss

KINDS = ["mse", "bce", "bce_with_logits", "cross_entropy"]
REDUCTIONS = ["mean", "sum", "none"]


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- the naive reference ----------------------------------------------------------------


def _flat(values) -> list[float]:
    if isinstance(values, list):
        return [v for item in values for v in _flat(item)]
    return [float(values)]


def _clamped_log(p: float) -> float:
    return max(math.log(p), -100.0) if p > 0 else -100.0


def _element_loss(kind: str, r: float, t: float) -> float:
    if kind == "mse":
        return (r - t) ** 2
    if kind == "bce":
        return -(t * _clamped_log(r) + (1 - t) * _clamped_log(1 - r))
    if kind == "bce_with_logits":
        p = 1 / (1 + math.exp(-r))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))
    raise KeyError(kind)


def _neg_log_softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    log_total = top + math.log(sum(math.exp(v - top) for v in logits))
    return [log_total - v for v in logits]


def _reduce(values: list[float], reduction: str):
    if reduction == "mean":
        return sum(values) / len(values)
    if reduction == "sum":
        return sum(values)
    return values


def reference(reconstruction, target, kind: str, reduction: str):
    """One value per sample from Python loops; cross-entropy reads the class axis 1."""
    n = reconstruction.shape[0]
    per_sample = []
    for i in range(n):
        if kind != "cross_entropy":
            r, t = _flat(reconstruction[i].tolist()), _flat(target[i].tolist())
            losses = [_element_loss(kind, a, b) for a, b in zip(r, t, strict=True)]
        else:
            # logits of sample i as [class][position]
            classes = reconstruction.shape[1]
            logits = [_flat(reconstruction[i, c].tolist()) for c in range(classes)]
            positions = len(logits[0])
            losses = []
            for j in range(positions):
                nll = _neg_log_softmax([logits[c][j] for c in range(classes)])
                if target.is_floating_point():
                    q = [_flat(target[i, c].tolist())[j] for c in range(classes)]
                    losses.append(sum(qc * lc for qc, lc in zip(q, nll, strict=True)))
                else:
                    losses.append(nll[int(_flat(target[i].tolist())[j])])
        per_sample.append(sum(losses) / len(losses))
    return _reduce(per_sample, reduction)


def make_inputs(kind: str, shape: tuple[int, ...], *, seed: int = 0, indices: bool = True):
    """Valid (reconstruction, target) of ``shape`` (the logits' shape for cross-entropy)."""
    if kind == "mse":
        return randn(*shape, seed=seed), randn(*shape, seed=seed + 1)
    if kind == "bce":
        return rand(*shape, seed=seed) * 0.9 + 0.05, rand(*shape, seed=seed + 1)
    if kind == "bce_with_logits":
        return 3 * randn(*shape, seed=seed), rand(*shape, seed=seed + 1)
    logits = 2 * randn(*shape, seed=seed)
    if indices:
        g = torch.Generator().manual_seed(seed + 1)
        return logits, torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return logits, torch.softmax(randn(*shape, seed=seed + 1), dim=1)


SHAPES = {
    "mse": [(5,), (4, 3), (3, 2, 2, 3)],
    "bce": [(5,), (4, 3), (3, 2, 2, 3)],
    "bce_with_logits": [(5,), (4, 3), (3, 2, 2, 3)],
    "cross_entropy": [(4, 3), (3, 4, 2, 3), (2, 3, 5)],
}
GRID = [(kind, shape) for kind in KINDS for shape in SHAPES[kind]]


def grid_id(case):
    return f"{case[0]}-{'x'.join(map(str, case[1]))}"


# --- values against the reference -------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", GRID, ids=grid_id)
def test_matches_reference(case, reduction):
    kind, shape = case
    r, t = make_inputs(kind, shape)
    got = reconstruction_loss(r, t, kind=kind, reduction=reduction)
    expected = torch.tensor(reference(r, t, kind, reduction), dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    if reduction == "none":
        assert got.shape == (shape[0],)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES["cross_entropy"], ids=str)
def test_cross_entropy_with_probability_targets_matches_reference(shape, reduction):
    r, t = make_inputs("cross_entropy", shape, indices=False)
    got = reconstruction_loss(r, t, kind="cross_entropy", reduction=reduction)
    expected = torch.tensor(reference(r, t, "cross_entropy", reduction), dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_docstring_example_by_hand():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    x_hat = torch.tensor([[0.5, 1.0], [1.0, 0.0]])
    per_sample = reconstruction_loss(x_hat, x, reduction="none")
    torch.testing.assert_close(per_sample, torch.tensor([0.125, 0.5]))
    torch.testing.assert_close(reconstruction_loss(x_hat, x), torch.tensor(0.3125))


def test_integer_class_indices_of_any_integer_dtype():
    r, t = make_inputs("cross_entropy", (3, 4, 2))
    expected = reconstruction_loss(r, t, kind="cross_entropy")
    for dtype in (torch.int32, torch.int16, torch.uint8):
        torch.testing.assert_close(
            reconstruction_loss(r, t.to(dtype), kind="cross_entropy"), expected
        )


@pytest.mark.parametrize("kind", KINDS)
def test_mean_equals_torch_mean(kind):
    """Every sample has the same number of elements: the mean over samples of their means
    is torch's mean over all elements."""
    shape = (3, 4, 2, 2)
    r, t = make_inputs(kind, shape)
    nnf = torch.nn.functional
    torch_fn = {
        "mse": nnf.mse_loss,
        "bce": nnf.binary_cross_entropy,
        "bce_with_logits": nnf.binary_cross_entropy_with_logits,
        "cross_entropy": nnf.cross_entropy,
    }[kind]
    torch.testing.assert_close(reconstruction_loss(r, t, kind=kind), torch_fn(r, t))


# --- gradients --------------------------------------------------------------------------


@pytest.mark.parametrize("case", GRID, ids=grid_id)
def test_gradcheck(case):
    kind, shape = case
    r, t = make_inputs(kind, shape)
    r.requires_grad_()
    if t.is_floating_point():
        t.requires_grad_()
        inputs = (r, t)

        def fn(a, b):
            return reconstruction_loss(a, b, kind=kind, reduction="none")
    else:
        inputs = (r,)

        def fn(a):
            return reconstruction_loss(a, t, kind=kind, reduction="none")

    assert torch.autograd.gradcheck(fn, inputs)


def test_gradcheck_cross_entropy_probability_targets():
    r, t = make_inputs("cross_entropy", (3, 4, 2), indices=False)
    inputs = (r.requires_grad_(), t.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, b: reconstruction_loss(a, b, kind="cross_entropy", reduction="sum"), inputs
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_at_exactly_zero_and_one_is_finite(dtype):
    r = torch.tensor([[0.0, 1.0, 0.0, 1.0]], dtype=dtype, requires_grad=True)
    t = torch.tensor([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    loss = reconstruction_loss(r, t, kind="bce")
    # right answers cost 0, wrong ones the clamped -log 0 = 100
    torch.testing.assert_close(loss, torch.tensor(50.0, dtype=dtype))
    loss.backward()
    assert torch.isfinite(r.grad).all()
    assert r.grad[0, 0] == 0 and r.grad[0, 1] == 0
    assert r.grad[0, 2] < 0 < r.grad[0, 3]  # the wrong ones are pushed the right way


def test_bce_with_logits_is_stable_for_large_logits():
    z = torch.tensor([[-1e4, -100.0, 100.0, 1e4]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    per_element = [0.0, 100.0, 100.0, 0.0]
    loss = reconstruction_loss(z, t, kind="bce_with_logits")
    torch.testing.assert_close(loss, torch.tensor(sum(per_element) / 4))
    loss.backward()
    assert torch.isfinite(z.grad).all()
    torch.testing.assert_close(z.grad, torch.tensor([[0.0, -0.25, 0.25, 0.0]]))


# --- precision --------------------------------------------------------------------------


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision_is_computed_in_float32(kind, half):
    r, t = make_inputs(kind, (4, 3, 2))
    r = r.to(half)
    t = t.to(half) if t.is_floating_point() else t
    if kind == "bce":
        r = r.clamp(0, 1)  # rounding must not leave [0, 1]
    if kind == "cross_entropy":  # probability targets too
        _, probs = make_inputs(kind, (4, 3, 2), indices=False)
        probs = probs.to(half)
        got = reconstruction_loss(r, probs, kind=kind, reduction="none")
        assert got.dtype == torch.float32
        expected = reconstruction_loss(r.float(), probs.float(), kind=kind, reduction="none")
        torch.testing.assert_close(got, expected)
    leaf = r.clone().requires_grad_()
    got = reconstruction_loss(leaf, t, kind=kind, reduction="none")
    assert got.dtype == torch.float32
    t32 = t.float() if t.is_floating_point() else t
    torch.testing.assert_close(
        got, reconstruction_loss(r.float(), t32, kind=kind, reduction="none")
    )
    got.sum().backward()
    assert leaf.grad.dtype == half and torch.isfinite(leaf.grad.float()).all()


def test_mixed_precision_promotes():
    r, t = make_inputs("mse", (3, 2))
    assert reconstruction_loss(r.float(), t).dtype == torch.float64
    assert reconstruction_loss(r.half(), t.float()).dtype == torch.float32


# --- properties (hypothesis) ------------------------------------------------------------

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False)
unit = st.floats(0, 1, allow_nan=False, allow_subnormal=False)
PROPERTY = settings(max_examples=40, deadline=None)


@st.composite
def pairs(draw, first=finite, second=finite):
    """Two float64 tensors of one shape (N, D) or (N,)."""
    n = draw(st.integers(1, 5))
    d = draw(st.integers(0, 4))  # 0: one-dimensional input, one element per sample
    size = max(d, 1)
    rows = st.lists(st.lists(first, min_size=size, max_size=size), min_size=n, max_size=n)
    a = torch.tensor(draw(rows), dtype=torch.float64)
    other = st.lists(st.lists(second, min_size=size, max_size=size), min_size=n, max_size=n)
    b = torch.tensor(draw(other), dtype=torch.float64)
    if d == 0:
        a, b = a[:, 0], b[:, 0]
    return a, b


# multiples of 1/4: a difference never squares to an underflowing zero
quarters = st.integers(-40, 40).map(lambda v: v / 4)


@PROPERTY
@given(pairs(quarters, quarters), st.data())
def test_mse_is_nonnegative_and_zero_only_for_equal_samples(xs, data):
    a, b = xs
    n = a.shape[0]
    copy = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    b = torch.where(copy.reshape(-1, *[1] * (a.dim() - 1)), a, b)
    losses = reconstruction_loss(a, b, reduction="none")
    assert losses.shape == (n,)
    assert torch.all(losses >= 0)
    same = (a == b).reshape(n, -1).all(dim=1)
    assert torch.equal(losses == 0, same)
    assert reconstruction_loss(a, a, reduction="sum") == 0


@PROPERTY
@given(pairs(finite, unit))
def test_bce_with_logits_equals_bce_of_the_sigmoid(xs):
    z, t = xs
    with_logits = reconstruction_loss(z, t, kind="bce_with_logits", reduction="none")
    on_probabilities = reconstruction_loss(torch.sigmoid(z), t, kind="bce", reduction="none")
    torch.testing.assert_close(with_logits, on_probabilities, rtol=1e-9, atol=1e-12)


@PROPERTY
@given(pairs(unit, unit), st.sampled_from(["mse", "bce", "bce_with_logits"]))
def test_reductions_and_batch_order(xs, kind):
    r, t = xs
    if kind == "bce":
        r = r.clamp(1e-6, 1 - 1e-6)
    per_sample = reconstruction_loss(r, t, kind=kind, reduction="none")
    torch.testing.assert_close(reconstruction_loss(r, t, kind=kind), per_sample.mean())
    torch.testing.assert_close(
        reconstruction_loss(r, t, kind=kind, reduction="sum"), per_sample.sum()
    )
    perm = torch.arange(r.shape[0]).flip(0)
    torch.testing.assert_close(
        reconstruction_loss(r[perm], t[perm], kind=kind, reduction="none"), per_sample[perm]
    )


@PROPERTY
@given(st.integers(1, 4), st.integers(2, 5), st.integers(1, 3), st.data())
def test_one_hot_probabilities_equal_class_indices(n, classes, positions, data):
    logits = torch.tensor(
        data.draw(
            st.lists(
                st.lists(
                    st.lists(finite, min_size=positions, max_size=positions),
                    min_size=classes,
                    max_size=classes,
                ),
                min_size=n,
                max_size=n,
            )
        ),
        dtype=torch.float64,
    )
    flat = data.draw(
        st.lists(st.integers(0, classes - 1), min_size=n * positions, max_size=n * positions)
    )
    indices = torch.tensor(flat).reshape(n, positions)
    one_hot = torch.nn.functional.one_hot(indices, classes).permute(0, 2, 1).double()
    torch.testing.assert_close(
        reconstruction_loss(logits, one_hot, kind="cross_entropy", reduction="none"),
        reconstruction_loss(logits, indices, kind="cross_entropy", reduction="none"),
    )


# --- bad input --------------------------------------------------------------------------

GOOD = torch.rand(3, 4)
LOGITS = torch.randn(3, 5, 2)
INDICES = torch.tensor([[0, 4], [1, 2], [3, 3]])

BAD = [
    # (reconstruction, target, kind, error, message)
    ([[0.5]], GOOD, "mse", TypeError, "reconstruction must be a torch.Tensor, got list"),
    (GOOD, 0.5, "mse", TypeError, "target must be a torch.Tensor, got float"),
    (
        torch.ones(3, 4, dtype=torch.long),
        GOOD,
        "mse",
        TypeError,
        "reconstruction must be a real floating-point tensor, got dtype torch.int64",
    ),
    (
        GOOD,
        torch.ones(3, 4, dtype=torch.long),
        "mse",
        TypeError,
        "target must be a real floating-point tensor for kind='mse', got dtype torch.int64",
    ),
    (
        GOOD,
        GOOD.bool(),
        "bce",
        TypeError,
        "target must be a real floating-point tensor for kind='bce', got dtype torch.bool",
    ),
    (
        torch.tensor(0.5),
        torch.tensor(0.5),
        "mse",
        ValueError,
        "reconstruction must be at least 1-D (N, ...) for kind='mse', got shape ()",
    ),
    (
        torch.randn(3),
        torch.tensor([0, 1, 2]),
        "cross_entropy",
        ValueError,
        "reconstruction must be at least 2-D (N, C, ...) logits for kind='cross_entropy', "
        "got shape (3,)",
    ),
    (
        torch.rand(0, 4),
        torch.rand(0, 4),
        "mse",
        ValueError,
        "reconstruction must hold at least one sample with at least one element, got shape (0, 4)",
    ),
    (
        torch.rand(3, 0),
        torch.rand(3, 0),
        "bce",
        ValueError,
        "at least one sample with at least one element, got shape (3, 0)",
    ),
    (
        GOOD,
        torch.rand(3, 5),
        "mse",
        ValueError,
        "reconstruction and target must have the same shape, got reconstruction (3, 4), "
        "target (3, 5)",
    ),
    (
        GOOD,
        torch.rand(12),
        "bce",
        ValueError,
        "reconstruction and target must have the same shape, got reconstruction (3, 4), "
        "target (12,)",
    ),
    (
        LOGITS,
        torch.softmax(torch.randn(3, 5), dim=1),
        "cross_entropy",
        ValueError,
        "reconstruction and target must have the same shape, got reconstruction (3, 5, 2), "
        "target (3, 5)",
    ),
    (
        LOGITS,
        INDICES[:, :1],
        "cross_entropy",
        ValueError,
        "target of class indices must have shape (3, 2) (reconstruction (3, 5, 2) without "
        "its class dimension), got (3, 1)",
    ),
    (
        LOGITS,
        INDICES.bool(),
        "cross_entropy",
        TypeError,
        "target must be integer class indices or floating-point class probabilities for "
        "kind='cross_entropy', got dtype torch.bool",
    ),
    (
        LOGITS,
        torch.tensor([[0, 5], [1, 2], [3, 3]]),
        "cross_entropy",
        ValueError,
        "target class indices must lie in [0, 4] for 5 classes, got values from 0 to 5",
    ),
    (
        LOGITS,
        torch.tensor([[0, 4], [-1, 2], [3, 3]]),
        "cross_entropy",
        ValueError,
        "target class indices must lie in [0, 4] for 5 classes, got values from -1 to 4",
    ),
    (
        torch.tensor([[0.5, math.nan], [0.5, 0.5]]),
        torch.rand(2, 2),
        "mse",
        ValueError,
        "reconstruction must be finite, got 1 NaN or infinite value(s) out of 4",
    ),
    (
        torch.rand(2, 2),
        torch.tensor([[0.5, math.inf], [-math.inf, 0.5]]),
        "mse",
        ValueError,
        "target must be finite, got 2 NaN or infinite value(s) out of 4",
    ),
    (
        torch.tensor([[0.5, math.inf]]),
        torch.tensor([[0.5, 0.5]]),
        "bce",
        ValueError,
        "reconstruction must be finite",
    ),
    (
        torch.tensor([[[math.nan], [0.0]]]),
        torch.tensor([[1]]),
        "cross_entropy",
        ValueError,
        "reconstruction must be finite, got 1 NaN",
    ),
    (
        torch.tensor([[0.5, 1.5]]),
        torch.tensor([[0.5, 0.5]]),
        "bce",
        ValueError,
        "reconstruction must lie in [0, 1] for kind='bce' (probabilities; for logits use "
        "kind='bce_with_logits'), got values from 0.5 to 1.5",
    ),
    (
        torch.tensor([[-0.5, 0.5]]),
        torch.tensor([[0.5, 0.5]]),
        "bce",
        ValueError,
        "reconstruction must lie in [0, 1] for kind='bce'",
    ),
    (
        torch.tensor([[0.5, 0.5]]),
        torch.tensor([[0.5, 2.0]]),
        "bce",
        ValueError,
        "target must lie in [0, 1] for kind='bce', got values from 0.5 to 2.0",
    ),
    (
        torch.tensor([[7.0, -3.0]]),
        torch.tensor([[-0.25, 1.0]]),
        "bce_with_logits",
        ValueError,
        "target must lie in [0, 1] for kind='bce_with_logits', got values from -0.25 to 1.0",
    ),
    (
        torch.tensor([[1.0, 2.0]]),
        torch.tensor([[1.5, -0.5]]),
        "cross_entropy",
        ValueError,
        "target must lie in [0, 1] for kind='cross_entropy'",
    ),
]


@pytest.mark.parametrize(("r", "t", "kind", "error", "message"), BAD, ids=range(len(BAD)))
def test_bad_input_is_refused_with_a_clear_message(r, t, kind, error, message):
    with pytest.raises(error, match=re.escape(message)):
        reconstruction_loss(r, t, kind=kind)


def test_device_mismatch_names_the_devices():
    pattern = "all inputs must be on the same device, got reconstruction on cpu, target on meta"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        reconstruction_loss(GOOD, GOOD.to("meta"))
    with pytest.raises(ValueError, match=re.escape(pattern)):
        reconstruction_loss(LOGITS, INDICES.to("meta"), kind="cross_entropy")


def test_bad_options_are_refused():
    kinds = "['bce', 'bce_with_logits', 'cross_entropy', 'mse']"
    with pytest.raises(ValueError, match=re.escape(f"kind must be one of {kinds}, got 'l2'")):
        reconstruction_loss(GOOD, GOOD, kind="l2")
    reductions = "reduction must be one of ['mean', 'sum', 'none'], got 'avg'"
    with pytest.raises(ValueError, match=re.escape(reductions)):
        reconstruction_loss(GOOD, GOOD, reduction="avg")
    # options are checked before the tensors
    with pytest.raises(ValueError, match="kind must be one of"):
        reconstruction_loss("not a tensor", GOOD, kind="l1")


# --- the Module ---------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_module_equals_function(kind, reduction):
    shape = SHAPES[kind][1]
    r, t = make_inputs(kind, shape)
    module = ReconstructionLoss(kind=kind, reduction=reduction)
    torch.testing.assert_close(
        module(r, t), reconstruction_loss(r, t, kind=kind, reduction=reduction)
    )


def test_module_defaults_repr_and_no_state():
    module = ReconstructionLoss()
    assert module.kind == "mse" and module.reduction == "mean"
    assert (
        repr(ReconstructionLoss(kind="bce")) == "ReconstructionLoss(kind='bce', reduction='mean')"
    )
    assert list(module.parameters()) == [] and list(module.buffers()) == []


def test_module_checks_options_when_built():
    with pytest.raises(ValueError, match=re.escape("kind must be one of")):
        ReconstructionLoss(kind="MSE")
    with pytest.raises(ValueError, match=re.escape("reduction must be one of")):
        ReconstructionLoss(reduction=None)


def test_exported():
    assert contrastkit.reconstruction_loss is F.reconstruction_loss
    assert contrastkit.ReconstructionLoss is contrastkit.losses.ReconstructionLoss
    for name in ("reconstruction_loss", "ReconstructionLoss"):
        assert name in contrastkit.__all__
    assert "reconstruction_loss" in F.__all__
    assert "ReconstructionLoss" in contrastkit.losses.__all__
