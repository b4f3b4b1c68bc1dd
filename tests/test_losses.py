"""The Modules: thin wrappers that hold hyper-parameters and call the functions."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import contrastkit
import contrastkit.functional as F


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


x1, x2, x3 = randn(6, 4, seed=1), randn(6, 4, seed=2), randn(6, 4, seed=3)
y = torch.tensor([1, 0, 1, 1, 0, 0])
labels = torch.tensor([0, 1, 0, 2, 1, 2])
score = torch.tensor([0.1, -0.2, 0.3, 1.0, -1.0, 0.0])

CASES = [
    (
        contrastkit.ContrastiveLoss(margin=0.7, distance="cosine", reduction="none"),
        (x1, x2, y),
        lambda: F.contrastive_loss(x1, x2, y, margin=0.7, distance="cosine", reduction="none"),
    ),
    (
        contrastkit.ContrastiveLoss(caffe_legacy=True),
        (x1, x2, y),
        lambda: F.contrastive_loss(x1, x2, y, caffe_legacy=True),
    ),
    (
        contrastkit.TripletLoss(margin=0.3, distance="manhattan", reduction="sum"),
        (x1, x2, x3),
        lambda: F.triplet_loss(x1, x2, x3, margin=0.3, distance="manhattan", reduction="sum"),
    ),
    (
        contrastkit.InfoNCELoss(temperature=0.2, symmetric=True),
        (x1, x2),
        lambda: F.info_nce(x1, x2, temperature=0.2, symmetric=True),
    ),
    (
        contrastkit.InfoNCELoss(normalize=False, temperature=1.0),
        (x1, x2, x3),
        lambda: F.info_nce(x1, x2, negatives=x3, normalize=False, temperature=1.0),
    ),
    (
        contrastkit.NTXentLoss(temperature=0.3, reduction="none"),
        (x1, x2),
        lambda: F.nt_xent(x1, x2, temperature=0.3, reduction="none"),
    ),
    (
        contrastkit.SupConLoss(temperature=0.2, normalize=False),
        (x1, labels),
        lambda: F.supcon(x1, labels, temperature=0.2, normalize=False),
    ),
    (
        contrastkit.CosineSimilarityLoss(reduction="sum"),
        (x1, x2, score),
        lambda: F.cosine_similarity_loss(x1, x2, score, reduction="sum"),
    ),
]


@pytest.mark.parametrize(("module", "args", "expected"), CASES, ids=lambda c: type(c).__name__)
def test_module_equals_function(module, args, expected):
    torch.testing.assert_close(module(*args), expected())


def test_defaults_are_the_papers():
    assert contrastkit.ContrastiveLoss().margin == 1.0
    assert contrastkit.ContrastiveLoss().distance == "euclidean"
    assert contrastkit.InfoNCELoss().temperature == 0.07
    assert contrastkit.NTXentLoss().temperature == 0.5
    assert contrastkit.SupConLoss().temperature == 0.1
    for cls in (contrastkit.ContrastiveLoss, contrastkit.InfoNCELoss, contrastkit.SupConLoss):
        assert cls().reduction == "mean"


def test_quick_start_call_convention():
    loss_fn = contrastkit.ContrastiveLoss(margin=1.0)
    out1, out2 = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    loss = loss_fn(out1, out2, y)
    loss.backward()
    assert out1.grad is not None and out2.grad is not None


def test_repr_shows_hyper_parameters():
    text = repr(contrastkit.ContrastiveLoss(margin=2.0, distance="cosine"))
    assert text == (
        "ContrastiveLoss(margin=2.0, distance='cosine', reduction='mean', caffe_legacy=False)"
    )
    assert "temperature=0.07" in repr(contrastkit.InfoNCELoss())
    assert "margin=0.2" in repr(contrastkit.TripletLoss(margin=0.2))
    learnable = contrastkit.NTXentLoss(temperature=nn.Parameter(torch.tensor(0.25)))
    assert "temperature=0.25 (tensor)" in repr(learnable)


def test_learnable_temperature_is_registered_and_learned():
    temperature = nn.Parameter(torch.tensor(0.5))
    loss_fn = contrastkit.InfoNCELoss(temperature=temperature)
    assert [p for p in loss_fn.parameters()] == [temperature]
    assert "temperature" in loss_fn.state_dict()
    loss_fn(x1, x2).backward()
    assert temperature.grad is not None and torch.isfinite(temperature.grad)
    for cls in (contrastkit.NTXentLoss, contrastkit.SupConLoss):
        assert list(cls(temperature=temperature).parameters()) == [temperature]


def test_modules_have_no_state_but_their_options():
    for module, *_ in CASES:
        assert list(module.buffers()) == []
        assert list(module.parameters()) == []


def test_public_names_are_exported_and_documented():
    for name in contrastkit.__all__:
        obj = getattr(contrastkit, name)
        if callable(obj):
            assert obj.__doc__, name
    for name in F.__all__:
        fn = getattr(F, name)
        if inspect.isfunction(fn):
            assert "Reference:" in fn.__doc__ and "math::" in fn.__doc__, name
