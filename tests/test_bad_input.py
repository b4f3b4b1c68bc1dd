"""Bad input gets a clear TypeError or ValueError, before any computation.

Every loss in :mod:`contrastkit.functional` and every Module in :mod:`contrastkit.losses`
must refuse bad tensors and bad hyper-parameters with a message that names the argument,
says what was expected and shows what was received: never a NaN loss, a silent broadcast
or a stack trace from deep inside torch. Modules check their hyper-parameters in
``__init__``, so those tests build the Module inside ``pytest.raises`` and never call it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from contrastkit import (
    ContrastiveLoss,
    CosineSimilarityLoss,
    InfoNCELoss,
    NTXentLoss,
    SupConLoss,
    TripletLoss,
)
from contrastkit import functional as F

N, D = 4, 3
NAN, INF = math.nan, math.inf
DISTANCE_NAMES = "['cosine', 'euclidean', 'manhattan', 'squared_euclidean']"
REDUCTION_NAMES = "['mean', 'sum', 'none']"


def _emb(n: int = N, d: int = D, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@dataclass(frozen=True)
class Case:
    """One loss: its function, its Module and how to build valid inputs for it."""

    fn: Callable[..., Tensor]
    module: type[nn.Module]
    embeddings: tuple[str, ...]  # names of the embedding arguments, in call order
    target: str | None  # name of the trailing label / score argument, if any
    make_target: Callable[[int], Tensor] | None
    required: tuple[tuple[str, object], ...]  # required keyword hyper-parameters
    positional: object  # a hyper-parameter value to (wrongly) pass positionally

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def arg_names(self) -> tuple[str, ...]:
        return self.embeddings + ((self.target,) if self.target else ())

    def inputs(self, n: int = N, d: int = D) -> list[Tensor]:
        args = [_emb(n, d, seed=i) for i in range(len(self.embeddings))]
        if self.make_target is not None:
            args.append(self.make_target(n))
        return args

    def call(self, args: list[object], **hyper: object) -> Tensor:
        return self.fn(*args, **{**dict(self.required), **hyper})

    def build(self, **hyper: object) -> nn.Module:
        return self.module(**{**dict(self.required), **hyper})


CONTRASTIVE = Case(
    F.contrastive_loss,
    ContrastiveLoss,
    ("x1", "x2"),
    "y",
    lambda n: torch.arange(n) % 2,
    (),
    1.0,
)
TRIPLET = Case(
    F.triplet_loss,
    TripletLoss,
    ("anchor", "positive", "negative"),
    None,
    None,
    (("margin", 0.2),),
    0.2,
)
INFO_NCE = Case(F.info_nce, InfoNCELoss, ("query", "key"), None, None, (), 0.07)
NT_XENT = Case(F.nt_xent, NTXentLoss, ("z1", "z2"), None, None, (), 0.5)
SUPCON = Case(
    F.supcon,
    SupConLoss,
    ("embeddings",),
    "labels",
    lambda n: torch.arange(n) // 2,
    (),
    0.1,
)
COSINE = Case(
    F.cosine_similarity_loss,
    CosineSimilarityLoss,
    ("x1", "x2"),
    "score",
    lambda n: torch.linspace(-1.0, 1.0, n),
    (),
    "mean",
)

ALL_CASES = [CONTRASTIVE, TRIPLET, INFO_NCE, NT_XENT, SUPCON, COSINE]


def _params(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.name) for case in cases]


def _embedding_positions(cases: list[Case] = ALL_CASES) -> list[object]:
    return [
        pytest.param(case, i, id=f"{case.name}-{name}")
        for case in cases
        for i, name in enumerate(case.embeddings)
    ]


def _second_and_later_positions() -> list[object]:
    return [
        pytest.param(case, i, id=f"{case.name}-{case.embeddings[i]}")
        for case in ALL_CASES
        for i in range(1, len(case.embeddings))
    ]


def _replace(case: Case, position: int, value: object) -> list[object]:
    args: list[object] = list(case.inputs())
    args[position] = value
    return args


def _check_hyper(case: Case, kind: str, **hyper: object) -> None:
    """Apply ``hyper`` to the function (with valid inputs) or to the Module's __init__."""
    if kind == "function":
        case.call(case.inputs(), **hyper)
    else:
        case.build(**hyper)


KINDS = ["function", "module"]


# ---------------------------------------------------------------------------
# Sanity: the valid inputs used everywhere below are accepted.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_valid_inputs_are_accepted(case: Case) -> None:
    args = case.inputs()
    out_fn = case.call(args)
    out_module = case.build()(*args)
    assert out_fn.shape == () and torch.isfinite(out_fn)
    torch.testing.assert_close(out_module, out_fn)


# ---------------------------------------------------------------------------
# Embeddings: type, dtype, rank, size, pairing, finiteness, device.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case, position", _embedding_positions())
@pytest.mark.parametrize("bad", [[[0.0, 1.0, 2.0]] * N, (1.0, 2.0), 3.0, None])
def test_embedding_not_a_tensor_is_a_type_error(case: Case, position: int, bad: object) -> None:
    name = case.embeddings[position]
    pattern = f"{name} must be a torch.Tensor, got {type(bad).__name__}"
    with pytest.raises(TypeError, match=re.escape(pattern)):
        case.call(_replace(case, position, bad))


@pytest.mark.parametrize("case, position", _embedding_positions())
@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]
)
def test_embedding_non_real_float_dtype_is_a_type_error(
    case: Case, position: int, dtype: torch.dtype
) -> None:
    name = case.embeddings[position]
    bad = torch.ones(N, D, dtype=dtype)
    pattern = f"{name} must be a real floating-point tensor, got dtype {dtype}"
    with pytest.raises(TypeError, match=re.escape(pattern)):
        case.call(_replace(case, position, bad))


@pytest.mark.parametrize("case, position", _embedding_positions())
@pytest.mark.parametrize("shape", [(), (N,), (N, D, 1), (1, N, D)])
def test_embedding_not_2d_is_a_value_error(
    case: Case, position: int, shape: tuple[int, ...]
) -> None:
    name = case.embeddings[position]
    pattern = f"{name} must be 2-D, got shape {shape}"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        case.call(_replace(case, position, torch.ones(shape)))


@pytest.mark.parametrize("case, position", _embedding_positions())
def test_empty_batch_is_a_value_error(case: Case, position: int) -> None:
    name = case.embeddings[position]
    with pytest.raises(ValueError, match=re.escape(f"{name} must hold at least one row")):
        case.call(_replace(case, position, torch.ones(0, D)))


@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_all_inputs_empty_is_a_value_error(case: Case) -> None:
    # A consistent empty batch (labels of length 0 too) is refused, not a NaN mean.
    first = case.embeddings[0]
    with pytest.raises(ValueError, match=re.escape(f"{first} must hold at least one row")):
        case.call(case.inputs(n=0))


@pytest.mark.parametrize("case, position", _embedding_positions())
def test_zero_features_is_a_value_error(case: Case, position: int) -> None:
    name = case.embeddings[position]
    pattern = f"{name} must have at least one feature, got shape {(N, 0)}"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        case.call(_replace(case, position, torch.ones(N, 0)))


@pytest.mark.parametrize("case, position", _second_and_later_positions())
@pytest.mark.parametrize("shape", [(N + 1, D), (N - 1, D), (N, D + 2), (N, 1)], ids=str)
def test_mismatched_paired_shapes_list_every_shape(
    case: Case, position: int, shape: tuple[int, int]
) -> None:
    shapes = [(N, D)] * len(case.embeddings)
    shapes[position] = shape
    listed = ", ".join(f"{name} {s}" for name, s in zip(case.embeddings, shapes, strict=True))
    pattern = f"{' and '.join(case.embeddings)} must have the same shape, got {listed}"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        case.call(_replace(case, position, torch.ones(shape)))


@pytest.mark.parametrize("case, position", _embedding_positions())
@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "+inf", "-inf"])
def test_non_finite_embedding_is_a_value_error(case: Case, position: int, value: float) -> None:
    name = case.embeddings[position]
    bad = _emb(seed=position)
    bad[1, 2] = value
    pattern = f"{name} must be finite, got 1 NaN or infinite value(s) out of {N * D}"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        case.call(_replace(case, position, bad))


@pytest.mark.parametrize("case, position", _embedding_positions())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_non_finite_embedding_is_refused_in_every_float_dtype(
    case: Case, position: int, dtype: torch.dtype
) -> None:
    name = case.embeddings[position]
    args = case.inputs()
    for i in range(len(case.embeddings)):
        args[i] = args[i].to(dtype)
    args[position][0, 0] = NAN
    with pytest.raises(ValueError, match=re.escape(f"{name} must be finite")):
        case.call(args)


def _device_positions() -> list[object]:
    params = []
    for case in ALL_CASES:
        for i, name in enumerate(case.arg_names):
            params.append(pytest.param(case, i, id=f"{case.name}-{name}"))
    return params


@pytest.mark.parametrize("case, position", _device_positions())
def test_device_mismatch_names_the_devices(case: Case, position: int) -> None:
    name = case.arg_names[position]
    args = case.inputs()
    args[position] = args[position].to("meta")
    other = case.arg_names[0] if position else case.arg_names[1]
    pattern = rf"all inputs must be on the same device, got .*\b{name} on meta"
    with pytest.raises(ValueError, match=pattern) as excinfo:
        case.call(args)
    assert f"{other} on cpu" in str(excinfo.value)


def test_device_mismatch_with_bool_pair_labels_names_the_devices() -> None:
    # The device is checked before any value of the labels is read.
    args = CONTRASTIVE.inputs()
    args[2] = args[2].bool().to("meta")
    with pytest.raises(ValueError, match=re.escape("x1 on cpu, y on meta")):
        CONTRASTIVE.call(args)


@pytest.mark.parametrize("case", _params([INFO_NCE, NT_XENT, SUPCON]))
def test_temperature_on_another_device_names_the_devices(case: Case) -> None:
    temperature = torch.tensor(0.1, device="meta")
    with pytest.raises(ValueError, match=r"temperature.*meta"):
        case.call(case.inputs(), temperature=temperature)


@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_module_forward_checks_its_inputs(case: Case) -> None:
    loss_fn = case.build()
    name = case.embeddings[0]
    bad = _emb()
    bad[0, 0] = NAN
    with pytest.raises(ValueError, match=re.escape(f"{name} must be finite")):
        loss_fn(*_replace(case, 0, bad))
    with pytest.raises(TypeError, match=re.escape(f"{name} must be a torch.Tensor, got list")):
        loss_fn(*_replace(case, 0, _emb().tolist()))


# ---------------------------------------------------------------------------
# Pair labels y (contrastive_loss).
# ---------------------------------------------------------------------------

BAD_PAIR_LABELS = [
    pytest.param([1, 0, 1, 0], TypeError, "y must be a torch.Tensor, got list", id="list"),
    pytest.param(
        torch.tensor([1, 0, 1]),
        ValueError,
        f"y must have shape ({N},), one entry per row of x1 ({N}, {D}), got (3,)",
        id="too-short",
    ),
    pytest.param(
        torch.tensor([1, 0, 1, 0, 1]),
        ValueError,
        f"y must have shape ({N},), one entry per row of x1 ({N}, {D}), got (5,)",
        id="too-long",
    ),
    pytest.param(
        torch.ones(N, 1),
        ValueError,
        f"y must have shape ({N},), one entry per row of x1 ({N}, {D}), got ({N}, 1)",
        id="2-D-column",
    ),
    pytest.param(
        torch.ones(N, N),
        ValueError,
        f"y must have shape ({N},), one entry per row of x1 ({N}, {D}), got ({N}, {N})",
        id="2-D-square",
    ),
    pytest.param(
        torch.tensor(1),
        ValueError,
        "y must have shape (4,), one entry per row of x1 (4, 3), got ()",
        id="0-D",
    ),
    pytest.param(
        torch.tensor([1, 0, 2, 0]),
        ValueError,
        "y must be 0 (dissimilar) or 1 (similar), got other values [2]",
        id="int-2",
    ),
    pytest.param(
        torch.tensor([1, -1, 1, 0]),
        ValueError,
        "y must be 0 (dissimilar) or 1 (similar), got other values [-1]",
        id="int-minus-1",
    ),
    pytest.param(
        torch.tensor([3, -1, 1, 0], dtype=torch.int32),
        ValueError,
        "got other values [-1, 3]",
        id="int32-several",
    ),
    pytest.param(
        torch.tensor([1, 0, 255, 0], dtype=torch.uint8),
        ValueError,
        "got other values [255]",
        id="uint8-255",
    ),
    pytest.param(
        torch.tensor([1.0, 0.0, 1.5, 0.0]),
        ValueError,
        "y must lie in [0, 1] (1 = similar, 0 = dissimilar), got values from 0.0 to 1.5",
        id="float-1.5",
    ),
    pytest.param(
        torch.tensor([1.0, -0.1, 0.5, 0.0]),
        ValueError,
        "y must lie in [0, 1]",
        id="float-minus-0.1",
    ),
    pytest.param(
        torch.tensor([1.0, NAN, 1.0, 0.0]),
        ValueError,
        "y must be finite, got 1 NaN or infinite value(s) out of 4",
        id="float-nan",
    ),
    pytest.param(
        torch.tensor([1.0, INF, 1.0, 0.0]), ValueError, "y must be finite", id="float-inf"
    ),
    pytest.param(
        torch.tensor([1.0, NAN, 1.0, 0.0], dtype=torch.float16),
        ValueError,
        "y must be finite",
        id="half-nan",
    ),
    pytest.param(
        torch.tensor([1, 0, 1, 0], dtype=torch.complex64),
        TypeError,
        "y must be bool, integer or real floating-point, got torch.complex64",
        id="complex",
    ),
]


@pytest.mark.parametrize("y, error, message", BAD_PAIR_LABELS)
def test_bad_pair_labels(y: object, error: type[Exception], message: str) -> None:
    x1, x2, _ = CONTRASTIVE.inputs()
    with pytest.raises(error, match=re.escape(message)):
        F.contrastive_loss(x1, x2, y)
    with pytest.raises(error, match=re.escape(message)):
        ContrastiveLoss()(x1, x2, y)


@pytest.mark.parametrize(
    "y",
    [
        torch.tensor([True, False, True, False]),
        torch.tensor([1, 0, 1, 0]),
        torch.tensor([1, 0, 1, 0], dtype=torch.int32),
        torch.tensor([1, 0, 1, 0], dtype=torch.uint8),
        torch.tensor([1.0, 0.0, 1.0, 0.0]),
        torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64),
        torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float16),
    ],
    ids=lambda y: str(y.dtype),
)
def test_bool_int_and_float_pair_labels_are_accepted_and_agree(y: Tensor) -> None:
    x1, x2, _ = CONTRASTIVE.inputs()
    expected = F.contrastive_loss(x1, x2, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(F.contrastive_loss(x1, x2, y), expected)


def test_soft_float_pair_labels_in_unit_interval_are_accepted() -> None:
    x1, x2, _ = CONTRASTIVE.inputs()
    out = F.contrastive_loss(x1, x2, torch.tensor([0.0, 0.25, 0.75, 1.0]), reduction="none")
    assert out.shape == (N,) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------
# Class labels (supcon).
# ---------------------------------------------------------------------------

BAD_CLASS_LABELS = [
    pytest.param([0, 0, 1, 1], TypeError, "labels must be a torch.Tensor, got list", id="list"),
    pytest.param(
        torch.tensor([0.0, 0.0, 1.0, 1.0]),
        TypeError,
        "labels must be an integer tensor of class labels, got dtype torch.float32",
        id="float32",
    ),
    pytest.param(
        torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64),
        TypeError,
        "labels must be an integer tensor of class labels, got dtype torch.float64",
        id="float64",
    ),
    pytest.param(
        torch.tensor([0, 0, 1, 1], dtype=torch.complex64),
        TypeError,
        "labels must be an integer tensor of class labels",
        id="complex",
    ),
    pytest.param(
        torch.tensor([0, 0, 1]),
        ValueError,
        f"labels must have shape ({N},), one entry per row of embeddings ({N}, {D}), got (3,)",
        id="too-short",
    ),
    pytest.param(
        torch.tensor([0, 0, 1, 1, 2]),
        ValueError,
        f"labels must have shape ({N},), one entry per row of embeddings ({N}, {D}), got (5,)",
        id="too-long",
    ),
    pytest.param(
        torch.tensor([[0], [0], [1], [1]]),
        ValueError,
        f"labels must have shape ({N},), one entry per row of embeddings ({N}, {D}), got ({N}, 1)",
        id="2-D",
    ),
]


@pytest.mark.parametrize("labels, error, message", BAD_CLASS_LABELS)
def test_bad_class_labels(labels: object, error: type[Exception], message: str) -> None:
    embeddings = _emb()
    with pytest.raises(error, match=re.escape(message)):
        F.supcon(embeddings, labels)
    with pytest.raises(error, match=re.escape(message)):
        SupConLoss()(embeddings, labels)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_and_bool_class_labels_are_accepted(dtype: torch.dtype) -> None:
    labels = torch.tensor([0, 0, 1, 1]).to(dtype)
    expected = F.supcon(_emb(), torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(F.supcon(_emb(), labels), expected)


# ---------------------------------------------------------------------------
# Target scores (cosine_similarity_loss).
# ---------------------------------------------------------------------------

BAD_SCORES = [
    pytest.param([1.0, 0.0, 0.5, -1.0], TypeError, "score must be a torch.Tensor", id="list"),
    pytest.param(
        torch.tensor([1.0, 0.0, 1.5, -1.0]),
        ValueError,
        "score must lie in [-1, 1], got values from -1.0 to 1.5",
        id="float-1.5",
    ),
    pytest.param(
        torch.tensor([1.0, 0.0, 0.5, -1.01]),
        ValueError,
        "score must lie in [-1, 1], got values from",
        id="float-minus-1.01",
    ),
    pytest.param(
        torch.tensor([1, 0, 2, -1]),
        ValueError,
        "score must lie in [-1, 1], got values from -1.0 to 2.0",
        id="int-2",
    ),
    pytest.param(
        torch.tensor([1, 0, -2, -1]), ValueError, "score must lie in [-1, 1]", id="int-minus-2"
    ),
    pytest.param(
        torch.tensor([1.0, NAN, 0.5, -1.0]),
        ValueError,
        "score must be finite, got 1 NaN or infinite value(s) out of 4",
        id="nan",
    ),
    pytest.param(
        torch.tensor([1.0, -INF, 0.5, -1.0]), ValueError, "score must be finite", id="-inf"
    ),
    pytest.param(
        torch.tensor([True, False, True, False]),
        TypeError,
        "score must be a real number tensor in [-1, 1], got dtype torch.bool",
        id="bool",
    ),
    pytest.param(
        torch.tensor([1, 0, 1, 0], dtype=torch.complex64),
        TypeError,
        "score must be a real number tensor in [-1, 1], got dtype torch.complex64",
        id="complex",
    ),
    pytest.param(
        torch.tensor([1.0, 0.0, 0.5]),
        ValueError,
        f"score must have shape ({N},), one entry per row of x1 ({N}, {D}), got (3,)",
        id="too-short",
    ),
    pytest.param(
        torch.zeros(N, 1),
        ValueError,
        f"score must have shape ({N},), one entry per row of x1 ({N}, {D}), got ({N}, 1)",
        id="2-D",
    ),
]


@pytest.mark.parametrize("score, error, message", BAD_SCORES)
def test_bad_scores(score: object, error: type[Exception], message: str) -> None:
    x1, x2, _ = COSINE.inputs()
    with pytest.raises(error, match=re.escape(message)):
        F.cosine_similarity_loss(x1, x2, score)
    with pytest.raises(error, match=re.escape(message)):
        CosineSimilarityLoss()(x1, x2, score)


@pytest.mark.parametrize(
    "score",
    [
        torch.tensor([-1, 0, 1, 1]),
        torch.tensor([-1, 0, 1, 1], dtype=torch.int8),
        torch.tensor([-1.0, 0.0, 1.0, 1.0]),
        torch.tensor([-1.0, 0.0, 1.0, 1.0], dtype=torch.float64),
    ],
    ids=lambda s: str(s.dtype),
)
def test_integer_and_float_scores_in_range_are_accepted(score: Tensor) -> None:
    x1, x2, _ = COSINE.inputs()
    expected = F.cosine_similarity_loss(x1, x2, torch.tensor([-1.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(F.cosine_similarity_loss(x1, x2, score), expected)


# ---------------------------------------------------------------------------
# margin (contrastive_loss, triplet_loss and their Modules).
# ---------------------------------------------------------------------------

MARGIN_CASES = _params([CONTRASTIVE, TRIPLET])

BAD_MARGINS = [
    pytest.param(-0.5, ValueError, "margin must be >= 0, got -0.5", id="negative"),
    pytest.param(-1, ValueError, "margin must be >= 0, got -1", id="negative-int"),
    pytest.param(NAN, ValueError, "margin must be finite, got nan", id="nan"),
    pytest.param(INF, ValueError, "margin must be finite, got inf", id="+inf"),
    pytest.param(-INF, ValueError, "margin must be finite, got -inf", id="-inf"),
    pytest.param("1.0", TypeError, "margin must be a real number, got str '1.0'", id="str"),
    pytest.param(True, TypeError, "margin must be a real number, got bool True", id="True"),
    pytest.param(False, TypeError, "margin must be a real number, got bool False", id="False"),
    pytest.param(None, TypeError, "margin must be a real number, got NoneType None", id="None"),
    pytest.param([1.0], TypeError, "margin must be a real number, got list", id="list"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", MARGIN_CASES)
@pytest.mark.parametrize("margin, error, message", BAD_MARGINS)
def test_bad_margin(
    case: Case, kind: str, margin: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        _check_hyper(case, kind, margin=margin)


@pytest.mark.parametrize("case", MARGIN_CASES)
@pytest.mark.parametrize("margin", [0, 0.0, 1, 2.5])
def test_zero_and_positive_margins_are_accepted(case: Case, margin: float) -> None:
    args = case.inputs()
    out = case.call(args, margin=margin)
    torch.testing.assert_close(case.build(margin=margin)(*args), out)
    assert torch.isfinite(out)


def test_triplet_margin_is_required() -> None:
    a, p, n = TRIPLET.inputs()
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'margin'"):
        F.triplet_loss(a, p, n)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'margin'"):
        TripletLoss()


# ---------------------------------------------------------------------------
# temperature (info_nce, nt_xent, supcon and their Modules).
# ---------------------------------------------------------------------------

TEMPERATURE_CASES = _params([INFO_NCE, NT_XENT, SUPCON])

BAD_TEMPERATURES = [
    pytest.param(0, ValueError, "temperature must be > 0, got 0", id="zero-int"),
    pytest.param(0.0, ValueError, "temperature must be > 0, got 0.0", id="zero"),
    pytest.param(-0.0, ValueError, "temperature must be > 0, got -0.0", id="minus-zero"),
    pytest.param(-0.1, ValueError, "temperature must be > 0, got -0.1", id="negative"),
    pytest.param(NAN, ValueError, "temperature must be finite, got nan", id="nan"),
    pytest.param(INF, ValueError, "temperature must be finite, got inf", id="+inf"),
    pytest.param(-INF, ValueError, "temperature must be finite, got -inf", id="-inf"),
    pytest.param("0.1", TypeError, "temperature must be a real number, got str '0.1'", id="str"),
    pytest.param(True, TypeError, "temperature must be a real number, got bool True", id="bool"),
    pytest.param(None, TypeError, "temperature must be a real number, got NoneType", id="None"),
    pytest.param(
        torch.tensor([0.1, 0.2]),
        ValueError,
        "temperature must be a number or a one-element tensor, got shape (2,)",
        id="tensor-2",
    ),
    pytest.param(
        torch.full((2, 2), 0.1),
        ValueError,
        "temperature must be a number or a one-element tensor, got shape (2, 2)",
        id="tensor-2x2",
    ),
    pytest.param(
        torch.tensor([]),
        ValueError,
        "temperature must be a number or a one-element tensor, got shape (0,)",
        id="tensor-empty",
    ),
    pytest.param(
        torch.tensor(0.0),
        ValueError,
        "temperature must be finite and > 0, got 0.0",
        id="tensor-zero",
    ),
    pytest.param(
        torch.tensor(-1.0),
        ValueError,
        "temperature must be finite and > 0, got -1.0",
        id="tensor-negative",
    ),
    pytest.param(
        torch.tensor(NAN),
        ValueError,
        "temperature must be finite and > 0, got nan",
        id="tensor-nan",
    ),
    pytest.param(
        torch.tensor([INF]),
        ValueError,
        "temperature must be finite and > 0, got inf",
        id="tensor-inf",
    ),
    pytest.param(
        torch.tensor(1),
        TypeError,
        "temperature must be a floating-point tensor, got torch.int64",
        id="tensor-int",
    ),
    pytest.param(
        torch.tensor(True),
        TypeError,
        "temperature must be a floating-point tensor, got torch.bool",
        id="tensor-bool",
    ),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", TEMPERATURE_CASES)
@pytest.mark.parametrize("temperature, error, message", BAD_TEMPERATURES)
def test_bad_temperature(
    case: Case, kind: str, temperature: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        _check_hyper(case, kind, temperature=temperature)


@pytest.mark.parametrize("case", TEMPERATURE_CASES)
@pytest.mark.parametrize(
    "make_temperature, as_float",
    [
        pytest.param(lambda: 0.5, 0.5, id="float"),
        pytest.param(lambda: 2, 2.0, id="int"),
        pytest.param(lambda: torch.tensor(0.5), 0.5, id="tensor-0-D"),
        pytest.param(lambda: torch.tensor([0.5]), 0.5, id="tensor-1-element"),
        pytest.param(lambda: torch.tensor([[0.5]], dtype=torch.float64), 0.5, id="tensor-1x1-f64"),
        pytest.param(lambda: nn.Parameter(torch.tensor(0.5)), 0.5, id="parameter"),
    ],
)
def test_positive_temperatures_are_accepted(
    case: Case, make_temperature: Callable[[], object], as_float: float
) -> None:
    args = case.inputs()
    expected = case.call(args, temperature=as_float)
    torch.testing.assert_close(case.call(args, temperature=make_temperature()), expected)
    torch.testing.assert_close(case.build(temperature=make_temperature())(*args), expected)


@pytest.mark.parametrize("case", TEMPERATURE_CASES)
def test_parameter_temperature_is_registered_and_learns(case: Case) -> None:
    temperature = nn.Parameter(torch.tensor(0.5))
    loss_fn = case.build(temperature=temperature)
    assert any(p is temperature for p in loss_fn.parameters())
    loss_fn(*case.inputs()).backward()
    assert temperature.grad is not None and torch.isfinite(temperature.grad)


# ---------------------------------------------------------------------------
# distance (contrastive_loss, triplet_loss and their Modules).
# ---------------------------------------------------------------------------

DISTANCE_CASES = _params([CONTRASTIVE, TRIPLET])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", DISTANCE_CASES)
@pytest.mark.parametrize(
    "distance",
    ["l2", "Euclidean", "euclidian", "cosine_similarity", "", "dot"],
)
def test_unknown_distance_lists_the_valid_names(case: Case, kind: str, distance: str) -> None:
    pattern = f"distance must be one of {DISTANCE_NAMES}, got {distance!r}"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        _check_hyper(case, kind, distance=distance)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", DISTANCE_CASES)
@pytest.mark.parametrize("distance", [None, 2, F.contrastive_loss])
def test_non_string_distance_is_a_type_error(case: Case, kind: str, distance: object) -> None:
    pattern = f"distance must be the name of a distance (one of {DISTANCE_NAMES}), got"
    with pytest.raises(TypeError, match=re.escape(pattern)):
        _check_hyper(case, kind, distance=distance)


@pytest.mark.parametrize("case", DISTANCE_CASES)
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine", "manhattan"])
def test_every_registered_distance_is_accepted(case: Case, distance: str) -> None:
    args = case.inputs()
    out = case.call(args, distance=distance)
    torch.testing.assert_close(case.build(distance=distance)(*args), out)


# ---------------------------------------------------------------------------
# reduction (all six losses and Modules).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", _params(ALL_CASES))
@pytest.mark.parametrize(
    "reduction",
    ["avg", "batchmean", "Mean", "elementwise_mean", "", None, 0, ["mean"]],
    ids=repr,
)
def test_unknown_reduction_lists_the_valid_choices(
    case: Case, kind: str, reduction: object
) -> None:
    pattern = f"reduction must be one of {REDUCTION_NAMES}, got {reduction!r}"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        _check_hyper(case, kind, reduction=reduction)


# ---------------------------------------------------------------------------
# Boolean options.
# ---------------------------------------------------------------------------

BOOL_OPTIONS = [
    pytest.param(CONTRASTIVE, "caffe_legacy", id="contrastive_loss-caffe_legacy"),
    pytest.param(INFO_NCE, "normalize", id="info_nce-normalize"),
    pytest.param(INFO_NCE, "symmetric", id="info_nce-symmetric"),
    pytest.param(SUPCON, "normalize", id="supcon-normalize"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case, option", BOOL_OPTIONS)
@pytest.mark.parametrize(
    "value", ["yes", "False", 1, 0, None, torch.tensor(True)], ids=lambda v: repr(v)
)
def test_non_bool_option_is_a_type_error(case: Case, option: str, kind: str, value: object) -> None:
    pattern = f"{option} must be a bool, got {type(value).__name__}"
    with pytest.raises(TypeError, match=re.escape(pattern)):
        _check_hyper(case, kind, **{option: value})


@pytest.mark.parametrize("case, option", BOOL_OPTIONS)
@pytest.mark.parametrize("value", [True, False])
def test_bool_options_are_accepted(case: Case, option: str, value: bool) -> None:
    args = case.inputs()
    out = case.call(args, **{option: value})
    torch.testing.assert_close(case.build(**{option: value})(*args), out)


# ---------------------------------------------------------------------------
# info_nce negatives.
# ---------------------------------------------------------------------------

_NEG_SHAPES = f"negatives must have shape (M, {D}) (shared by all queries) or ({N}, K, {D})"

BAD_NEGATIVES = [
    pytest.param([[0.0] * D], TypeError, "negatives must be a torch.Tensor or None", id="list"),
    pytest.param(
        torch.ones(5, D, dtype=torch.int64),
        TypeError,
        "negatives must be a real floating-point tensor, got torch.int64",
        id="int64",
    ),
    pytest.param(
        torch.ones(5, D, dtype=torch.bool),
        TypeError,
        "negatives must be a real floating-point tensor, got torch.bool",
        id="bool",
    ),
    pytest.param(
        torch.ones(5, D + 1),
        ValueError,
        f"{_NEG_SHAPES} (K per query) to match query of shape ({N}, {D}), got (5, {D + 1})",
        id="2-D-wrong-features",
    ),
    pytest.param(
        torch.ones(N + 1, 2, D), ValueError, f"got ({N + 1}, 2, {D})", id="3-D-wrong-batch"
    ),
    pytest.param(
        torch.ones(N, 2, D + 1), ValueError, f"got ({N}, 2, {D + 1})", id="3-D-wrong-features"
    ),
    pytest.param(torch.ones(D), ValueError, f"got ({D},)", id="1-D"),
    pytest.param(torch.tensor(1.0), ValueError, "got ()", id="0-D"),
    pytest.param(torch.ones(N, 1, 2, D), ValueError, f"got ({N}, 1, 2, {D})", id="4-D"),
    pytest.param(
        torch.full((5, D), NAN),
        ValueError,
        f"negatives must be finite, got {5 * D} NaN or infinite value(s)",
        id="nan",
    ),
    pytest.param(
        torch.full((N, 2, D), -INF), ValueError, "negatives must be finite", id="3-D-minus-inf"
    ),
]


@pytest.mark.parametrize("negatives, error, message", BAD_NEGATIVES)
def test_bad_negatives(negatives: object, error: type[Exception], message: str) -> None:
    query, key = INFO_NCE.inputs()
    with pytest.raises(error, match=re.escape(message)):
        F.info_nce(query, key, negatives=negatives)
    with pytest.raises(error, match=re.escape(message)):
        InfoNCELoss()(query, key, negatives)


@pytest.mark.parametrize("kind", ["function", "module"])
def test_negatives_with_symmetric_is_a_value_error(kind: str) -> None:
    query, key = INFO_NCE.inputs()
    negatives = _emb(5, D, seed=9)
    message = "negatives cannot be combined with symmetric=True"
    with pytest.raises(ValueError, match=re.escape(message)):
        if kind == "function":
            F.info_nce(query, key, symmetric=True, negatives=negatives)
        else:
            InfoNCELoss(symmetric=True)(query, key, negatives)


def test_negatives_on_another_device_names_the_devices() -> None:
    query, key = INFO_NCE.inputs()
    negatives = torch.ones(5, D, device="meta")
    pattern = "got query on cpu, key on cpu, negatives on meta"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        F.info_nce(query, key, negatives=negatives)


@pytest.mark.parametrize("shape", [(5, D), (0, D), (N, 2, D)], ids=str)
def test_shared_and_per_query_negatives_are_accepted(shape: tuple[int, ...]) -> None:
    query, key = INFO_NCE.inputs()
    negatives = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    out = F.info_nce(query, key, negatives=negatives)
    torch.testing.assert_close(InfoNCELoss()(query, key, negatives), out)
    assert torch.isfinite(out)


# ---------------------------------------------------------------------------
# Hyper-parameters are keyword-only; misspelt keywords are reported by name.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_hyper_parameters_are_keyword_only_in_functions(case: Case) -> None:
    args = [*case.inputs(), case.positional]
    with pytest.raises(TypeError, match="positional argument"):
        case.fn(*args, **dict(case.required))


@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_hyper_parameters_are_keyword_only_in_modules(case: Case) -> None:
    with pytest.raises(TypeError, match="positional argument"):
        case.module(case.positional, **dict(case.required))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_misspelt_keyword_is_named(case: Case, kind: str) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'reductoin'"):
        _check_hyper(case, kind, reductoin="sum")
