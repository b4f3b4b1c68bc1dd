"""One validation path for the whole library: one rule for numbers, one switch.

* Every hyper-parameter that is a number takes Python and numpy numbers alike (so
  ``np.float32(0.5)`` is a margin, a temperature and a false accept rate everywhere),
  and refuses a bool everywhere, with a TypeError that names the argument.
* ``contrastkit.set_validation`` / ``contrastkit.validation`` turn off the checks that
  read tensor values, and nothing else.
* No module of the library imports another module's private names.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import contrastkit
from contrastkit import _validation, losses, mining
from contrastkit import functional as F
from contrastkit.data import ClassBalancedBatchSampler, PairDataset
from contrastkit.evaluation import anomaly, metrics
from contrastkit.models import Autoencoder, MLPDecoder, MLPEncoder, Standardize

N, D = 6, 3


def _emb(seed: int = 0, n: int = N) -> Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


X1, X2, X3 = _emb(0), _emb(1), _emb(2)
PAIRS = torch.tensor([1, 0, 1, 0, 1, 0])
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
DISTANCES = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
SAME = [1, 1, 0, 0, 1, 0]


class _Halve(nn.Module):
    def reconstruct(self, x: Tensor) -> Tensor:
        return x / 2


# --------------------------------------------------------------------------------------
# One rule for numbers
# --------------------------------------------------------------------------------------

# (argument name as the message gives it, a call taking the value, a valid value)
REAL_ARGUMENTS: list[tuple[str, Callable[[object], object], float]] = [
    ("margin", lambda v: F.contrastive_loss(X1, X2, PAIRS, margin=v), 0.5),
    ("margin", lambda v: F.triplet_loss(X1, X2, X3, margin=v), 0.5),
    ("margin", lambda v: F.all_pairs_contrastive_loss(X1, LABELS, margin=v), 0.5),
    ("margin", lambda v: F.batch_all_triplet_loss(X1, LABELS, margin=v), 0.5),
    ("margin", lambda v: F.batch_hard_triplet_loss(X1, LABELS, margin=v), 0.5),
    ("margin", lambda v: losses.ContrastiveLoss(margin=v)(X1, X2, PAIRS), 0.5),
    ("margin", lambda v: losses.TripletLoss(margin=v)(X1, X2, X3), 0.5),
    ("margin", lambda v: losses.AllPairsContrastiveLoss(margin=v)(X1, LABELS), 0.5),
    ("margin", lambda v: losses.BatchAllTripletLoss(margin=v)(X1, LABELS), 0.5),
    ("margin", lambda v: losses.BatchHardTripletLoss(margin=v)(X1, LABELS), 0.5),
    ("margin", lambda v: mining.semi_hard_triplets(X1, LABELS, margin=v), 0.5),
    ("margin", lambda v: mining.batch_all_triplets(X1, LABELS, margin=v), 0.5),
    ("temperature", lambda v: F.info_nce(X1, X2, temperature=v), 0.5),
    ("temperature", lambda v: F.nt_xent(X1, X2, temperature=v), 0.5),
    ("temperature", lambda v: F.supcon(X1, LABELS, temperature=v), 0.5),
    ("temperature", lambda v: losses.InfoNCELoss(temperature=v)(X1, X2), 0.5),
    ("temperature", lambda v: losses.NTXentLoss(temperature=v)(X1, X2), 0.5),
    ("temperature", lambda v: losses.SupConLoss(temperature=v)(X1, LABELS), 0.5),
    ("far", lambda v: metrics.tar_at_far(DISTANCES, SAME, far=v), 0.5),
    (
        "fars[0]",
        lambda v: metrics.verification_metrics(DISTANCES, SAME, DISTANCES, SAME, fars=(v,)),
        0.5,
    ),
    ("threshold", lambda v: metrics.accuracy_at_threshold(DISTANCES, SAME, threshold=v), 0.5),
    ("noise_std", lambda v: Autoencoder(nn.Identity(), nn.Identity(), noise_std=v).noise_std, 0.5),
    ("dropout", lambda v: len(MLPEncoder(D, hidden=(4,), dropout=v)), 0.5),
    (
        "positive_fraction",
        lambda v: PairDataset(_emb(3, 8), LABELS.repeat(2)[:8], positive_fraction=v).num_positive,
        0.5,
    ),
]

INT_ARGUMENTS: list[tuple[str, Callable[[object], object], int]] = [
    ("k", lambda v: anomaly.knn_scores(X1, X2, k=v), 2),
    ("chunk_size", lambda v: anomaly.knn_scores(X1, X2, chunk_size=v), 2),
    ("batch_size", lambda v: anomaly.reconstruction_errors(_Halve(), X1, batch_size=v), 2),
    ("chunk_size", lambda v: F.info_nce(X1, X2, chunk_size=v), 2),
    ("k", lambda v: metrics.recall_at_k(X1, LABELS, k=v), 1),
    ("max_pairs", lambda v: metrics.verification_pairs(LABELS, max_pairs=v), 4),
    ("seed", lambda v: metrics.verification_pairs(LABELS, seed=v), 3),
    ("in_features", lambda v: MLPEncoder(v).in_features, 3),
    ("embedding_dim", lambda v: MLPEncoder(D, embedding_dim=v).embedding_dim, 2),
    ("hidden[0]", lambda v: len(MLPEncoder(D, hidden=(v,))), 4),
    ("out_features", lambda v: MLPDecoder(2, v).out_features, 4),
    ("seed", lambda v: PairDataset(X1, LABELS, seed=v).seed, 3),
    ("pairs_per_epoch", lambda v: len(PairDataset(X1, LABELS, pairs_per_epoch=v)), 4),
    ("epoch", lambda v: PairDataset(X1, LABELS).set_epoch(v), 3),
    (
        "classes_per_batch",
        lambda v: len(ClassBalancedBatchSampler(LABELS, classes_per_batch=v, samples_per_class=2)),
        2,
    ),
]


def _params(table: list) -> list[object]:
    return [
        pytest.param(name, call, value, id=f"{i}-{name}")
        for i, (name, call, value) in enumerate(table)
    ]


def _same(a: object, b: object) -> None:
    if isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):  # type: ignore[call-overload]
            _same(x, y)
    elif isinstance(a, Tensor):
        torch.testing.assert_close(a, b)
    else:
        assert a == b


@pytest.mark.parametrize(("name", "call", "value"), _params(REAL_ARGUMENTS))
@pytest.mark.parametrize("kind", [np.float32, np.float64, np.float16, float])
def test_numpy_and_python_numbers_are_real_numbers(
    name: str, call: Callable[[object], object], value: float, kind: type
) -> None:
    _same(call(kind(value)), call(float(kind(value))))


@pytest.mark.parametrize(("name", "call", "value"), _params(REAL_ARGUMENTS[:18]))
@pytest.mark.parametrize("kind", [np.int64, np.uint8, int])
def test_integers_are_real_numbers(
    name: str, call: Callable[[object], object], value: float, kind: type
) -> None:
    assert name in ("margin", "temperature")
    _same(call(kind(2)), call(2.0))


@pytest.mark.parametrize(("name", "call", "value"), _params(INT_ARGUMENTS))
@pytest.mark.parametrize("kind", [np.int64, np.int32, np.uint8, int])
def test_numpy_and_python_integers_are_integers(
    name: str, call: Callable[[object], object], value: int, kind: type
) -> None:
    _same(call(kind(value)), call(value))


@pytest.mark.parametrize(("name", "call", "value"), _params(REAL_ARGUMENTS + INT_ARGUMENTS))
@pytest.mark.parametrize("flag", [True, False, np.bool_(True)], ids=["True", "False", "np-True"])
def test_a_bool_is_never_a_number(
    name: str, call: Callable[[object], object], value: float, flag: object
) -> None:
    with pytest.raises(TypeError, match=f"^{re.escape(name)} must be"):
        call(flag)


@pytest.mark.parametrize(("name", "call", "value"), _params(INT_ARGUMENTS))
def test_an_integer_valued_float_is_not_an_integer(
    name: str, call: Callable[[object], object], value: int
) -> None:
    with pytest.raises(TypeError, match=f"^{re.escape(name)} must be"):
        call(float(value))


@pytest.mark.parametrize(("name", "call", "value"), _params(REAL_ARGUMENTS))
@pytest.mark.parametrize("bad", [math.nan, math.inf, np.float32("nan")], ids=str)
def test_a_non_finite_number_is_refused(
    name: str, call: Callable[[object], object], value: float, bad: object
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(name)} must be finite"):
        call(bad)


@pytest.mark.parametrize("margin", [torch.tensor(0.5), np.array(0.5)], ids=["tensor", "0-d array"])
def test_a_tensor_or_array_is_not_a_number(margin: object) -> None:
    with pytest.raises(TypeError, match=r"^margin must be a real number, got"):
        F.contrastive_loss(X1, X2, PAIRS, margin=margin)
    with pytest.raises(TypeError, match=r"^far must be a real number, got"):
        metrics.tar_at_far(DISTANCES, SAME, far=margin)


def test_the_temperature_alone_also_takes_a_one_element_tensor() -> None:
    expected = F.info_nce(X1, X2, temperature=0.5)
    torch.testing.assert_close(F.info_nce(X1, X2, temperature=torch.tensor([0.5])), expected)
    torch.testing.assert_close(F.info_nce(X1, X2, temperature=np.float32(0.5)), expected)


def test_checked_numbers_come_back_as_python_numbers() -> None:
    assert type(_validation.check_real("x", np.float32(0.25))) is float
    assert type(_validation.check_int("n", np.int64(3))) is int
    assert type(losses.ContrastiveLoss(margin=np.float32(0.5)).margin) is float
    assert type(losses.InfoNCELoss(temperature=np.float64(0.5)).temperature) is float
    assert type(PairDataset(X1, LABELS, seed=np.int64(3)).seed) is int


@pytest.mark.parametrize(
    ("interval", "inside", "outside", "shown"),
    [
        ("[]", [0, 0.5, 1], [-0.1, 1.1], "[0, 1]"),
        ("[)", [0, 0.5], [1, -0.1], "[0, 1)"),
        ("(]", [0.5, 1], [0, 1.1], "(0, 1]"),
        ("()", [0.5], [0, 1], "(0, 1)"),
    ],
)
def test_check_fraction_intervals(
    interval: str, inside: list[float], outside: list[float], shown: str
) -> None:
    for value in inside:
        assert _validation.check_fraction("p", value, interval) == value
    for value in outside:
        with pytest.raises(ValueError, match=re.escape(f"p must lie in {shown}, got {value!r}")):
            _validation.check_fraction("p", value, interval)


# --------------------------------------------------------------------------------------
# The switch for the value checks
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _validation_back_on() -> object:
    yield
    contrastkit.set_validation(True)


def test_the_switch_is_exported_lazily_from_the_package() -> None:
    for name in ("set_validation", "validation", "is_validation_enabled"):
        assert name in contrastkit.__all__
        assert getattr(contrastkit, name) is getattr(_validation, name)


def test_validation_is_on_by_default_and_the_switch_turns_it_off_and_on() -> None:
    assert contrastkit.is_validation_enabled()
    contrastkit.set_validation(False)
    assert not contrastkit.is_validation_enabled()
    contrastkit.set_validation(True)
    assert contrastkit.is_validation_enabled()


def test_the_context_manager_restores_the_setting_even_on_error() -> None:
    with pytest.raises(RuntimeError, match="inside"):
        with contrastkit.validation(False):
            assert not contrastkit.is_validation_enabled()
            with contrastkit.validation(True):
                assert contrastkit.is_validation_enabled()
            assert not contrastkit.is_validation_enabled()
            raise RuntimeError("inside")
    assert contrastkit.is_validation_enabled()


def test_the_context_manager_is_also_a_decorator() -> None:
    @contrastkit.validation(False)
    def loss_of_nan() -> Tensor:
        return F.triplet_loss(X1 * math.nan, X2, X3, margin=0.5)

    assert loss_of_nan().isnan()
    assert contrastkit.is_validation_enabled()


@pytest.mark.parametrize("bad", [0, "off", None, np.bool_(False)], ids=repr)
def test_the_switch_takes_a_bool_only(bad: object) -> None:
    with pytest.raises(TypeError, match=r"^enabled must be a bool"):
        contrastkit.set_validation(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^enabled must be a bool"):
        with contrastkit.validation(bad):  # type: ignore[arg-type]
            pass
    assert contrastkit.is_validation_enabled()


NAN_X1 = X1.clone()
NAN_X1[0, 0] = math.nan

# calls that a value check refuses, and that run (to a garbage result) with the checks off
VALUE_CHECKED: list[tuple[str, Callable[[], object]]] = [
    ("x1 must be finite", lambda: F.contrastive_loss(NAN_X1, X2, PAIRS)),
    ("anchor must be finite", lambda: F.triplet_loss(NAN_X1, X2, X3, margin=0.5)),
    ("query must be finite", lambda: F.info_nce(NAN_X1, X2)),
    ("z1 must be finite", lambda: F.nt_xent(NAN_X1, X2)),
    ("embeddings must be finite", lambda: F.supcon(NAN_X1, LABELS)),
    ("embeddings must be finite", lambda: F.batch_hard_triplet_loss(NAN_X1, LABELS, margin=1.0)),
    ("x1 must be finite", lambda: F.cosine_similarity_loss(NAN_X1, X2, torch.zeros(N))),
    ("embeddings must be finite", lambda: anomaly.knn_scores(X1, NAN_X1, k=2)),
    ("mean must be finite", lambda: Standardize(torch.tensor([math.nan]), torch.ones(1))),
    (
        "y must be 0 (dissimilar) or 1 (similar)",
        lambda: F.contrastive_loss(X1, X2, torch.full((N,), 2)),
    ),
    ("y must lie in [0, 1]", lambda: F.contrastive_loss(X1, X2, torch.full((N,), 1.5))),
    ("score must lie in [-1, 1]", lambda: F.cosine_similarity_loss(X1, X2, torch.full((N,), 2.0))),
    (
        "temperature must be finite and > 0",
        lambda: F.info_nce(X1, X2, temperature=torch.tensor(-1.0)),
    ),
    (
        "target must lie in [0, 1]",
        lambda: F.reconstruction_loss(X1, X2.abs() + 1, kind="bce_with_logits"),
    ),
    (
        "inputs must lie in [0, 1]",
        lambda: anomaly.reconstruction_errors(_Halve(), X1.abs() + 1, kind="bce_with_logits"),
    ),
    (
        "x1 must not exceed",
        lambda: F.contrastive_loss(X1 * 1e30, X2, PAIRS, distance="squared_euclidean"),
    ),
]


@pytest.mark.parametrize(("message", "call"), [pytest.param(m, c, id=m) for m, c in VALUE_CHECKED])
def test_value_checks_run_by_default_and_are_skipped_when_off(
    message: str, call: Callable[[], object]
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
    with contrastkit.validation(False):
        call()  # no error: the values are trusted


# calls with a wrong type, dtype, shape, device or hyper-parameter: refused either way
STRUCTURE_CHECKED: list[tuple[type[Exception], str, Callable[[], object]]] = [
    (
        TypeError,
        "x1 must be a real floating-point tensor",
        lambda: F.contrastive_loss(X1.long(), X2, PAIRS),
    ),
    (
        ValueError,
        "x1 and x2 must have the same shape",
        lambda: F.contrastive_loss(X1, X2[:3], PAIRS),
    ),
    (ValueError, "y must have shape (6,)", lambda: F.contrastive_loss(X1, X2, PAIRS[:3])),
    (TypeError, "labels must be an integer tensor", lambda: F.supcon(X1, LABELS.float())),
    (ValueError, "margin must be >= 0", lambda: F.triplet_loss(X1, X2, X3, margin=-1.0)),
    (TypeError, "temperature must be a real number", lambda: F.nt_xent(X1, X2, temperature=True)),
    (ValueError, "reduction must be one of", lambda: F.info_nce(X1, X2, reduction="avg")),
    (
        ValueError,
        "temperature must be a number or a one-element tensor",
        lambda: F.info_nce(X1, X2, temperature=torch.ones(2)),
    ),
    (ValueError, "distances must be finite", lambda: metrics.roc_auc([0.1, math.nan], [0, 1])),
    (ValueError, "same must be 0", lambda: metrics.roc_auc([0.1, 0.2], [0, 2])),
]


@pytest.mark.parametrize(
    ("error", "message", "call"),
    [pytest.param(e, m, c, id=m) for e, m, c in STRUCTURE_CHECKED],
)
def test_other_checks_run_with_the_value_checks_off(
    error: type[Exception], message: str, call: Callable[[], object]
) -> None:
    with contrastkit.validation(False), pytest.raises(error, match=re.escape(message)):
        call()


def test_with_the_checks_off_a_nan_embedding_gives_a_nan_loss() -> None:
    with contrastkit.validation(False):
        assert F.contrastive_loss(NAN_X1, X2, PAIRS).isnan()
        assert F.info_nce(NAN_X1, X2).isnan()


# --------------------------------------------------------------------------------------
# No module imports another module's private names
# --------------------------------------------------------------------------------------

PACKAGE = Path(contrastkit.__file__).parent
# every module, the application's (app/) included
LIBRARY_FILES = sorted(PACKAGE.rglob("*.py"))


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
            continue
        if node.module != "contrastkit" and not node.module.startswith("contrastkit."):
            continue
        for alias in node.names:
            name = alias.name
            if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
                continue
            if _is_module(f"{node.module}.{name}"):
                continue  # a module (from contrastkit import _tiled), not a private name
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module}.{name}")
    return found


def test_the_import_check_finds_a_private_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from contrastkit.evaluation.metrics import _chunk, roc_auc\n"
        "from contrastkit import _tiled, __version__\n"
        "from .x import _y\n",
        encoding="utf-8",
    )
    original = PACKAGE
    try:
        globals()["PACKAGE"] = tmp_path
        assert _private_imports(bad) == ["bad.py:1 contrastkit.evaluation.metrics._chunk"]
    finally:
        globals()["PACKAGE"] = original


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_private_name_of_another(path: Path) -> None:
    assert _private_imports(path) == []


def test_the_library_files_were_found() -> None:
    names = {str(p.relative_to(PACKAGE)) for p in LIBRARY_FILES}
    assert {"plots.py", "evaluation/anomaly.py", "models/autoencoder.py"} <= names
