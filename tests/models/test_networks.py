"""The siamese wrapper, the two encoders and the fixed input standardization."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from contrastkit.models import ConvEncoder, MLPEncoder, SiameseNetwork, Standardize


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Recorder(nn.Module):
    """Sums each sample through a linear layer and remembers the shape of every call."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 2)
        self.calls = []

    def forward(self, x):
        self.calls.append((tuple(x.shape), x.dtype))
        return self.linear(x.flatten(1).sum(1, keepdim=True).float())


# --- SiameseNetwork -------------------------------------------------------------------


def test_siamese_has_one_parameter_set():
    encoder = MLPEncoder(4, embedding_dim=3, hidden=(5,))
    model = SiameseNetwork(encoder)
    ids = [id(p) for p in model.parameters()]
    assert ids == [id(p) for p in encoder.parameters()]
    assert len(ids) == 4  # two Linear layers, weight and bias each


def test_siamese_branches_equal_the_encoder():
    torch.manual_seed(0)
    model = SiameseNetwork(MLPEncoder(4, embedding_dim=3, hidden=(5,)))
    x1, x2 = randn(6, 4, seed=1), randn(7, 4, seed=2)
    out1, out2 = model(x1, x2)
    assert out1.shape == (6, 3) and out2.shape == (7, 3)
    torch.testing.assert_close(out1, model.encoder(x1))
    torch.testing.assert_close(out2, model.encoder(x2))


def test_siamese_gradients_of_both_branches_accumulate():
    torch.manual_seed(0)
    model = SiameseNetwork(MLPEncoder(4, embedding_dim=3, hidden=(5,)))
    x1, x2 = randn(6, 4, seed=1), randn(6, 4, seed=2)
    expected = []
    for x in (x1, x2):
        model.zero_grad()
        (model.encoder(x) ** 2).sum().backward()
        expected.append([p.grad.clone() for p in model.parameters()])
    model.zero_grad()
    out1, out2 = model(x1, x2)
    ((out1**2).sum() + (out2**2).sum()).backward()
    for p, g1, g2 in zip(model.parameters(), *expected, strict=True):
        torch.testing.assert_close(p.grad, g1 + g2)
        assert not torch.allclose(p.grad, g1)  # the second branch did contribute


def test_siamese_one_batch_is_the_encoder():
    torch.manual_seed(0)
    model = SiameseNetwork(MLPEncoder(4, embedding_dim=3, hidden=(5,)))
    x = randn(6, 4)
    assert torch.equal(model(x), model.encoder(x))


def test_siamese_same_shapes_go_through_as_one_batch():
    model = SiameseNetwork(Recorder())
    model(randn(3, 2, 2), randn(5, 2, 2))
    assert model.encoder.calls == [((8, 2, 2), torch.float32)]


@pytest.mark.parametrize(
    "x2",
    [randn(3, 4), randn(3, 2, 2).double()],
    ids=["other shape", "other dtype"],
)
def test_siamese_different_inputs_go_through_separately(x2):
    model = SiameseNetwork(Recorder())
    x1 = randn(3, 2, 2, seed=1)
    out1, out2 = model(x1, x2)
    assert model.encoder.calls == [((3, 2, 2), torch.float32), (tuple(x2.shape), x2.dtype)]
    assert torch.equal(out1, model.encoder(x1)) and torch.equal(out2, model.encoder(x2))


def test_siamese_images_of_different_sizes():
    torch.manual_seed(0)
    model = SiameseNetwork(ConvEncoder(1, embedding_dim=2, channels=(4,))).eval()
    x1, x2 = torch.rand(2, 1, 8, 8), torch.rand(3, 1, 12, 10)
    out1, out2 = model(x1, x2)
    assert out1.shape == (2, 2) and out2.shape == (3, 2)
    torch.testing.assert_close(out1, model(x1))
    torch.testing.assert_close(out2, model(x2))


def test_siamese_branches_share_batch_norm_statistics():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    model = SiameseNetwork(encoder).train()
    x1, x2 = randn(5, 4, seed=1), randn(5, 4, seed=2) * 3 + 1
    out1, out2 = model(x1, x2)
    both = encoder(torch.cat([x1, x2]))
    torch.testing.assert_close(out1, both[:5])
    torch.testing.assert_close(out2, both[5:])
    assert not torch.allclose(out1, encoder(x1), atol=1e-3)  # not per-branch statistics


@pytest.mark.parametrize("encoder", [lambda x: x, None, "mlp"])
def test_siamese_rejects_a_non_module(encoder):
    with pytest.raises(TypeError, match=re.escape("encoder must be a torch.nn.Module")):
        SiameseNetwork(encoder)


# --- MLPEncoder -----------------------------------------------------------------------


@pytest.mark.parametrize("embedding_dim", [1, 2, 32])
def test_mlp_output_shape(embedding_dim):
    model = MLPEncoder(7, embedding_dim=embedding_dim, hidden=(16, 8))
    assert model(randn(5, 7)).shape == (5, embedding_dim)
    assert model.in_features == 7 and model.embedding_dim == embedding_dim


def test_mlp_default_layers():
    model = MLPEncoder(10)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 256), (256, 128), (128, 32)]


def test_mlp_layers_with_batch_norm_and_dropout():
    model = MLPEncoder(10, embedding_dim=4, hidden=(8, 6), batch_norm=True, dropout=0.25)
    block = [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout]
    assert [type(m) for m in model] == [*block, *block, nn.Linear]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 8), (8, 6), (6, 4)]
    assert [m.num_features for m in model if isinstance(m, nn.BatchNorm1d)] == [8, 6]
    assert all(m.p == 0.25 for m in model if isinstance(m, nn.Dropout))


def test_mlp_without_hidden_layers_is_one_linear():
    model = MLPEncoder(3, embedding_dim=2, hidden=())
    assert len(model) == 1 and isinstance(model[0], nn.Linear)


def test_mlp_standardize_comes_first():
    standardize = Standardize(torch.zeros(3), torch.ones(3))
    model = MLPEncoder(3, embedding_dim=2, hidden=(4,), standardize=standardize)
    assert model[0] is standardize
    assert {"0.mean", "0.std"} <= set(model.state_dict())


def test_mlp_ends_without_activation():
    torch.manual_seed(0)
    model = MLPEncoder(5, embedding_dim=3, hidden=(8,))
    assert isinstance(model[-1], nn.Linear)
    out = model(randn(200, 5))
    assert (out < 0).any() and (out > 0).any()


BAD_MLP_ARGUMENTS = [
    ({"in_features": True}, TypeError, "in_features"),
    ({"in_features": 4.0}, TypeError, "in_features"),
    ({"in_features": "4"}, TypeError, "in_features"),
    ({"in_features": 0}, ValueError, "in_features"),
    ({"in_features": -3}, ValueError, "in_features"),
    ({"embedding_dim": False}, TypeError, "embedding_dim"),
    ({"embedding_dim": 2.5}, TypeError, "embedding_dim"),
    ({"embedding_dim": 0}, ValueError, "embedding_dim"),
    ({"embedding_dim": -1}, ValueError, "embedding_dim"),
    ({"hidden": (8, True)}, TypeError, r"hidden\[1\]"),
    ({"hidden": (8.0,)}, TypeError, r"hidden\[0\]"),
    ({"hidden": (8, 0)}, ValueError, r"hidden\[1\]"),
    ({"hidden": (-4,)}, ValueError, r"hidden\[0\]"),
    ({"hidden": 8}, TypeError, "hidden"),
    ({"hidden": "8"}, TypeError, "hidden"),
    ({"hidden": None}, TypeError, "hidden"),
    ({"hidden": {8, 4}}, TypeError, "hidden"),
    ({"dropout": 1.0}, ValueError, "dropout"),
    ({"dropout": -0.1}, ValueError, "dropout"),
    ({"dropout": float("nan")}, ValueError, "dropout"),
    ({"dropout": True}, TypeError, "dropout"),
    ({"dropout": "0.1"}, TypeError, "dropout"),
]


@pytest.mark.parametrize(("kwargs", "error", "name"), BAD_MLP_ARGUMENTS)
def test_mlp_rejects_bad_arguments(kwargs, error, name):
    kwargs = {"in_features": 4, **kwargs}
    with pytest.raises(error, match=name):
        MLPEncoder(**kwargs)


# --- ConvEncoder ----------------------------------------------------------------------


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 33])
def test_conv_output_shape(in_channels, size):
    model = ConvEncoder(in_channels, embedding_dim=5, channels=(4, 8))
    x = torch.rand(2, in_channels, size, size)
    assert model(x).shape == (2, 5)


def test_conv_accepts_rectangular_images():
    model = ConvEncoder(1, embedding_dim=3, channels=(4, 4, 4))
    assert model.min_size == 8
    assert model(torch.rand(2, 1, 8, 21)).shape == (2, 3)


@pytest.mark.parametrize(("height", "width"), [(3, 3), (8, 3), (3, 8)])
def test_conv_rejects_too_small_images(height, width):
    model = ConvEncoder(1, embedding_dim=2, channels=(4, 4))
    with pytest.raises(ValueError, match=f"at least 4×4 pixels, got {height}×{width}"):
        model(torch.rand(2, 1, height, width))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 8, 8), (2, 1, 1, 8, 8)])
def test_conv_rejects_wrong_channels_or_dims(shape):
    model = ConvEncoder(1, embedding_dim=2, channels=(4,))
    with pytest.raises(ValueError, match=re.escape(f"(N, 1, H, W), got {shape}")):
        model(torch.rand(*shape))


def test_conv_rejects_empty_channels():
    with pytest.raises(ValueError, match="channels"):
        ConvEncoder(1, channels=())


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"in_channels": 0}, ValueError),
        ({"in_channels": True}, TypeError),
        ({"embedding_dim": 0}, ValueError),
        ({"channels": 8}, TypeError),
        ({"channels": (8, -1)}, ValueError),
    ],
)
def test_conv_rejects_bad_arguments(kwargs, error):
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        ConvEncoder(**kwargs)


def test_conv_standardize_comes_first():
    x = torch.rand(6, 3, 8, 8) * 50 + 10
    standardize = Standardize.from_data(x)
    model = ConvEncoder(3, embedding_dim=2, channels=(4,), standardize=standardize)
    assert model.standardize is standardize
    reference = ConvEncoder(3, embedding_dim=2, channels=(4,))
    reference.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(model(x), reference(standardize(x)))


# --- Standardize ----------------------------------------------------------------------


def test_standardize_per_feature():
    x = randn(50, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + torch.tensor([0.0, -5.0, 2.0, 100])
    layer = Standardize.from_data(x)
    assert layer.mean.shape == (4,) and layer.std.shape == (4,)
    torch.testing.assert_close(layer.mean, x.mean(0))
    torch.testing.assert_close(layer.std, x.std(0, unbiased=False))
    out = layer(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(4))


def test_standardize_per_channel():
    x = randn(6, 3, 5, 7) * torch.tensor([1.0, 4.0, 0.5]).view(3, 1, 1)
    x = x + torch.tensor([0.0, 2.0, -1.0]).view(3, 1, 1)
    layer = Standardize.from_data(x)
    assert layer.mean.shape == (3, 1, 1) and layer.std.shape == (3, 1, 1)
    for c in range(3):
        values = [float(v) for v in x[:, c].flatten()]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        assert float(layer.mean[c, 0, 0]) == pytest.approx(mean, abs=1e-5)
        assert float(layer.std[c, 0, 0]) == pytest.approx(std, rel=1e-5)
    out = layer(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


def test_standardize_from_integer_or_double_data():
    x = torch.tensor([[0, 10], [2, 30]])
    layer = Standardize.from_data(x)
    assert layer.mean.dtype == torch.float32 and layer.std.dtype == torch.float32
    torch.testing.assert_close(layer(x.float()), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert Standardize.from_data(x.double()).mean.dtype == torch.float32


@pytest.mark.parametrize("value", [0.0, 0.1, 3.7, 1000.3])
def test_standardize_constant_features_keep_their_scale(value):
    x = randn(40, 3)
    x[:, 1] = value
    layer = Standardize.from_data(x)
    assert float(layer.std[1]) == 1.0
    assert float(layer.mean[1]) == pytest.approx(value)
    later = torch.tensor([[0.0, value + 1.0, 0.0]])
    assert float(layer(later)[0, 1]) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("value", [0.0, 0.1, 1000.3])
def test_standardize_all_constant_inputs_are_not_blown_up(value):
    layer = Standardize.from_data(torch.full((30, 2, 4, 4), value))
    assert torch.equal(layer.std, torch.ones(2, 1, 1))
    assert torch.isfinite(layer(torch.full((1, 2, 4, 4), value + 1))).all()
    assert torch.equal(Standardize.from_data(torch.full((1, 5), value)).std, torch.ones(5))


def test_standardize_buffers_are_saved_and_restored():
    layer = Standardize.from_data(randn(20, 3) * 5 + 2)
    state = layer.state_dict()
    assert set(state) == {"mean", "std"}
    assert [name for name, _ in layer.named_parameters()] == []
    fresh = Standardize(torch.zeros(3), torch.ones(3))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.mean, layer.mean) and torch.equal(fresh.std, layer.std)
    x = randn(4, 3, seed=1)
    assert torch.equal(fresh(x), layer(x))


def test_standardize_buffers_travel_inside_an_encoder():
    model = MLPEncoder(
        3, embedding_dim=2, hidden=(4,), standardize=Standardize.from_data(randn(9, 3))
    )
    fresh = MLPEncoder(
        3, embedding_dim=2, hidden=(4,), standardize=Standardize(torch.zeros(3), torch.ones(3))
    )
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh[0].mean, model[0].mean) and torch.equal(fresh[0].std, model[0].std)


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        (torch.zeros(3), torch.ones(4), "same shape"),
        (torch.zeros(3, 1, 1), torch.ones(3), "same shape"),
        (torch.zeros(2), torch.tensor([1.0, 0.0]), "std"),
        (torch.zeros(2), torch.tensor([1.0, -2.0]), "std"),
        (torch.zeros(2), torch.tensor([1.0, float("nan")]), "std"),
        (torch.zeros(2), torch.tensor([1.0, float("inf")]), "std"),
        (torch.tensor([0.0, float("nan")]), torch.ones(2), "mean"),
        (torch.tensor([0.0, float("inf")]), torch.ones(2), "mean"),
    ],
)
def test_standardize_rejects_bad_statistics(mean, std, match):
    with pytest.raises(ValueError, match=match):
        Standardize(mean, std)


@pytest.mark.parametrize("shape", [(5,), (0, 3), ()])
def test_standardize_from_data_needs_a_batch(shape):
    with pytest.raises(ValueError, match="batch"):
        Standardize.from_data(torch.zeros(shape))


@pytest.mark.parametrize(
    ("norm", "kind"), [("batch", torch.nn.BatchNorm2d), ("group", torch.nn.GroupNorm)]
)
def test_conv_encoder_norm_chooses_the_normalization_and_keeps_the_layer_indices(norm, kind):
    model = ConvEncoder(1, embedding_dim=3, channels=(4, 12), norm=norm)
    norms = [m for m in model.modules() if isinstance(m, kind)]
    assert len(norms) == 2
    if norm == "group":
        assert [m.num_groups for m in norms] == [4, 4]  # gcd(8, 4), gcd(8, 12)
    plain = ConvEncoder(1, embedding_dim=3, channels=(4, 12), norm="none")
    assert not any(
        isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in plain.modules()
    )
    # the convolutions keep their names, so that weights map between the three
    assert [k for k in plain.state_dict() if "weight" in k and "features" in k] == [
        "features.0.weight",
        "features.4.weight",
    ]


def test_conv_encoder_without_batch_norm_embeds_each_image_alone():
    model = ConvEncoder(1, embedding_dim=3, channels=(4,), norm="group").train()
    x = torch.rand(5, 1, 6, 6)
    torch.testing.assert_close(model(x)[:2], model(x[:2]))


def test_conv_encoder_refuses_an_unknown_norm():
    with pytest.raises(ValueError, match="norm must be one of"):
        ConvEncoder(1, norm="layer")
