"""Autoencoders: the decoders' shapes, the code as a siamese embedding, denoising, training."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import contrastkit
from contrastkit import ReconstructionLoss
from contrastkit.models import (
    Autoencoder,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    SiameseNetwork,
)
from contrastkit.training import embed


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Recorder(nn.Module):
    """A linear encoder that remembers the shape of every batch it sees."""

    def __init__(self, in_features=4, out_features=3):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return self.linear(x.float())


def mlp_autoencoder(noise_std=0.0, *, batch_norm=False, seed=0):
    torch.manual_seed(seed)
    encoder = MLPEncoder(6, embedding_dim=3, hidden=(8,), batch_norm=batch_norm)
    decoder = MLPDecoder(3, 6, hidden=(8,), batch_norm=batch_norm)
    return Autoencoder(encoder, decoder, noise_std=noise_std)


# --- MLPDecoder -----------------------------------------------------------------------


def test_mlp_decoder_shapes():
    decoder = MLPDecoder(4, 10)
    assert decoder(randn(5, 4)).shape == (5, 10)
    assert (decoder.embedding_dim, decoder.out_features, decoder.output_shape) == (4, 10, None)
    images = MLPDecoder(2, 64, hidden=(16,), output_shape=(1, 8, 8))
    assert images(randn(3, 2)).shape == (3, 1, 8, 8)
    assert images.output_shape == (1, 8, 8)
    assert MLPDecoder(2, 12, output_shape=[3, 4])(randn(1, 2)).shape == (1, 3, 4)


def test_mlp_decoder_layers():
    linear_only = MLPDecoder(3, 5, hidden=())
    assert [type(m) for m in linear_only] == [nn.Linear]
    with_bn = MLPDecoder(3, 5, hidden=(7, 9), batch_norm=True)
    assert [type(m) for m in with_bn] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
    ]
    assert [m.out_features for m in with_bn if isinstance(m, nn.Linear)] == [7, 9, 5]
    # the default widths grow from the code outwards, and the output is linear
    default = MLPDecoder(3, 5)
    assert [m.out_features for m in default if isinstance(m, nn.Linear)] == [128, 256, 512, 5]
    assert isinstance(default[-1], nn.Linear)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"embedding_dim": 0, "out_features": 4}, ValueError, "embedding_dim must be >= 1, got 0"),
        ({"embedding_dim": 2, "out_features": "4"}, TypeError, "out_features must be an integer"),
        ({"embedding_dim": 2.0, "out_features": 4}, TypeError, "embedding_dim must be an integer"),
        (
            {"embedding_dim": 2, "out_features": 4, "hidden": 5},
            TypeError,
            "hidden must be a sequence of layer widths, got 5",
        ),
        (
            {"embedding_dim": 2, "out_features": 4, "hidden": (5, 0)},
            ValueError,
            "hidden[1] must be >= 1, got 0",
        ),
        (
            {"embedding_dim": 2, "out_features": 4, "batch_norm": "yes"},
            TypeError,
            "batch_norm must be a bool, got str 'yes'",
        ),
        (
            {"embedding_dim": 2, "out_features": 60, "output_shape": (1, 8, 8)},
            ValueError,
            "output_shape (1, 8, 8) holds 64 values, but out_features is 60",
        ),
        (
            {"embedding_dim": 2, "out_features": 4, "output_shape": ()},
            ValueError,
            "output_shape must hold at least one size, got ()",
        ),
        (
            {"embedding_dim": 2, "out_features": 4, "output_shape": 4},
            TypeError,
            "output_shape must be a sequence of sizes, got 4",
        ),
        (
            {"embedding_dim": 2, "out_features": 4, "output_shape": (4, 0)},
            ValueError,
            "output_shape[1] must be >= 1, got 0",
        ),
    ],
)
def test_mlp_decoder_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        MLPDecoder(**kwargs)


# --- ConvDecoder ----------------------------------------------------------------------

SIZES = [8, 28, 32, 7, 1, 2, 5, (7, 10), (32, 5), [9, 9]]


@pytest.mark.parametrize("channels", [(64, 32), (4,), (4, 4, 4)], ids=str)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_conv_decoder_gives_exactly_the_requested_size(size, channels):
    decoder = ConvDecoder(5, 3, size, channels=channels)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    assert decoder.image_size == (height, width)
    out = decoder(randn(2, 5))
    assert out.shape == (2, 3, height, width)
    assert torch.isfinite(out).all()


def test_conv_decoder_mirrors_the_conv_encoder():
    torch.manual_seed(0)
    encoder = ConvEncoder(1, embedding_dim=4, channels=(8, 16))
    decoder = ConvDecoder(4, 1, 28, channels=(16, 8))
    x = torch.rand(3, 1, 28, 28)
    assert decoder(encoder(x)).shape == x.shape
    # feature maps of 7×7 → 14×14 → 28×28, as the encoder pooled 28 → 14 → 7
    assert decoder.start_shape == (16, 7, 7)
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(16, 8), (8, 1)]
    assert isinstance(decoder.features[-1], nn.Conv2d)  # linear output: values or logits


def test_conv_decoder_odd_size_upsamples_by_at_most_two():
    decoder = ConvDecoder(2, 1, 7, channels=(4, 4))
    sizes = [m.size for m in decoder.modules() if isinstance(m, nn.Upsample)]
    assert decoder.start_shape == (4, 2, 2)
    assert sizes == [(4, 4), (7, 7)]


def test_conv_decoder_checks_its_input():
    decoder = ConvDecoder(5, 1, 8)
    with pytest.raises(ValueError, match=re.escape("code must have shape (N, 5), got (2, 4)")):
        decoder(randn(2, 4))
    with pytest.raises(ValueError, match=re.escape("code must have shape (N, 5), got (5,)")):
        decoder(randn(5))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0, 1, 8), {}, ValueError, "embedding_dim must be >= 1, got 0"),
        ((2, 0, 8), {}, ValueError, "out_channels must be >= 1, got 0"),
        ((2, 1, 0), {}, ValueError, "image_size must be >= 1, got 0"),
        ((2, 1, "8"), {}, TypeError, "image_size must be an integer or a pair (H, W), got '8'"),
        ((2, 1, True), {}, TypeError, "image_size must be an integer or a pair (H, W), got True"),
        ((2, 1, (8,)), {}, TypeError, "image_size must be an integer or a pair (H, W), got (8,)"),
        ((2, 1, (8, 0)), {}, ValueError, "image_size[1] must be >= 1, got 0"),
        ((2, 1, (8, 2.5)), {}, TypeError, "image_size[1] must be an integer, got float 2.5"),
        ((2, 1, 8), {"channels": ()}, ValueError, "channels must name at least one block, got ()"),
        ((2, 1, 8), {"channels": 16}, TypeError, "channels must be a sequence of layer widths"),
    ],
)
def test_conv_decoder_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        ConvDecoder(*args, **kwargs)


# --- Autoencoder: the code is the embedding -------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_forward_is_encode(training):
    model = mlp_autoencoder(noise_std=0.5).train(training)
    x = randn(5, 6)
    assert torch.equal(model(x), model.encode(x))
    assert torch.equal(model.encode(x), model.encoder(x))
    assert torch.equal(model.decode(model(x)), model.decoder(model.encoder(x)))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_pair_forward_equals_the_siamese_network(batch_norm):
    model = mlp_autoencoder(batch_norm=batch_norm)
    siamese = SiameseNetwork(model.encoder)
    x1, x2 = randn(5, 6, seed=1), randn(4, 6, seed=2)
    out1, out2 = model(x1, x2)
    expected1, expected2 = siamese(x1, x2)
    assert out1.shape == (5, 3) and out2.shape == (4, 3)
    assert torch.equal(out1, expected1) and torch.equal(out2, expected2)


def test_pair_forward_goes_through_the_encoder_as_siamese_does():
    encoder = Recorder()
    model = Autoencoder(encoder, nn.Linear(3, 4))
    x1, x2 = randn(5, 4, seed=1), randn(2, 4, seed=2)
    a, b = model(x1, x2)
    assert encoder.calls == [(7, 4)]  # one concatenated batch
    torch.testing.assert_close(a, encoder.linear(x1))
    torch.testing.assert_close(b, encoder.linear(x2))
    encoder.calls.clear()
    model(x1, x2.double())  # different dtypes: two passes
    assert encoder.calls == [(5, 4), (2, 4)]


def test_training_embed_uses_the_code():
    model = mlp_autoencoder(noise_std=1.0, batch_norm=True).train()
    x = randn(20, 6)
    codes = embed(model, x, batch_size=7)
    assert model.training  # restored
    model.eval()
    torch.testing.assert_close(codes, model.encode(x))


def test_one_parameter_set_and_state_dict():
    model = mlp_autoencoder()
    ids = [id(p) for p in model.parameters()]
    assert ids == [id(p) for p in model.encoder.parameters()] + [
        id(p) for p in model.decoder.parameters()
    ]
    keys = list(model.state_dict())
    assert all(k.startswith(("encoder.", "decoder.")) for k in keys)
    assert "noise_std" not in "".join(keys)


# --- Autoencoder: reconstruction and noise --------------------------------------------


def test_noise_std_zero_is_exact_in_training_mode():
    model = mlp_autoencoder(noise_std=0.0).train()
    x = randn(5, 6)
    assert torch.equal(model.reconstruct(x), model.decode(model.encode(x)))


def test_noise_only_in_training_mode():
    model = mlp_autoencoder(noise_std=0.3)
    x = randn(5, 6)
    clean = model.decode(model.encode(x))
    model.train()
    torch.manual_seed(1)
    first = model.reconstruct(x)
    second = model.reconstruct(x)
    assert not torch.equal(first, second)
    assert not torch.equal(first, clean)
    torch.manual_seed(1)
    assert torch.equal(model.reconstruct(x), first)  # torch's global generator
    model.eval()
    assert torch.equal(model.reconstruct(x), clean)
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))


def test_noise_is_gaussian_with_the_given_std_and_leaves_the_input_alone():
    model = Autoencoder(nn.Identity(), nn.Identity(), noise_std=0.5).train()
    x = torch.zeros(20_000)
    torch.manual_seed(0)
    noisy = model.reconstruct(x)
    assert torch.equal(x, torch.zeros(20_000))
    assert abs(float(noisy.mean())) < 0.02
    assert abs(float(noisy.std()) - 0.5) < 0.02
    assert torch.equal(model(x), x)  # forward never adds noise


def test_noise_needs_a_floating_point_input():
    model = Autoencoder(nn.Identity(), nn.Identity(), noise_std=0.1)
    x = torch.arange(4)
    assert torch.equal(model.eval().reconstruct(x), x)  # no noise: any input
    with pytest.raises(TypeError, match=re.escape("x must be a floating-point tensor")):
        model.train().reconstruct(x)


def test_noise_std_can_be_changed_and_is_checked():
    model = mlp_autoencoder()
    model.noise_std = 0.25
    assert model.noise_std == 0.25 and isinstance(model.noise_std, float)
    assert "noise_std=0.25" in repr(model)
    with pytest.raises(ValueError, match=re.escape("noise_std must be >= 0, got -1")):
        model.noise_std = -1
    assert model.noise_std == 0.25


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("encoder", nn.Identity()), {}, TypeError, "encoder must be a torch.nn.Module, got str"),
        ((nn.Identity(), None), {}, TypeError, "decoder must be a torch.nn.Module, got NoneType"),
        ((nn.Identity(), nn.Identity()), {"noise_std": -0.1}, ValueError, "noise_std must be >= 0"),
        ((nn.Identity(), nn.Identity()), {"noise_std": math.nan}, ValueError, "must be finite"),
        ((nn.Identity(), nn.Identity()), {"noise_std": math.inf}, ValueError, "must be finite"),
        (
            (nn.Identity(), nn.Identity()),
            {"noise_std": "0.1"},
            TypeError,
            "noise_std must be a real number, got str '0.1'",
        ),
        (
            (nn.Identity(), nn.Identity()),
            {"noise_std": True},
            TypeError,
            "noise_std must be a real number, got bool True",
        ),
        (
            (nn.Identity(), nn.Identity()),
            {"noise_std": torch.tensor(0.1)},
            TypeError,
            "noise_std must be a real number, got Tensor",
        ),
    ],
)
def test_autoencoder_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        Autoencoder(*args, **kwargs)


def test_noise_std_is_keyword_only():
    with pytest.raises(TypeError):
        Autoencoder(nn.Identity(), nn.Identity(), 0.1)


# --- training -------------------------------------------------------------------------


def _train(model, x, loss_fn, steps, lr=1e-2):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model.reconstruct(x), x)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_tiny_mlp_autoencoder_learns():
    torch.manual_seed(0)
    x = randn(64, 3, seed=1) @ randn(3, 12, seed=2)  # rank 3 data in 12 dimensions
    model = Autoencoder(
        MLPEncoder(12, embedding_dim=3, hidden=(32,)), MLPDecoder(3, 12, hidden=(32,))
    )
    model.eval()
    before = ReconstructionLoss()(model.reconstruct(x), x).item()
    _train(model, x, ReconstructionLoss(), steps=150)
    model.eval()
    after = ReconstructionLoss()(model.reconstruct(x), x).item()
    assert after < 0.05 * before


def test_tiny_denoising_conv_autoencoder_learns_with_bce_logits():
    torch.manual_seed(0)
    x = (torch.rand(16, 1, 7, 7, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    model = Autoencoder(
        ConvEncoder(1, embedding_dim=8, channels=(8, 8)),
        ConvDecoder(8, 1, 7, channels=(8, 8)),
        noise_std=0.1,
    )
    loss_fn = ReconstructionLoss(kind="bce_with_logits")
    losses = _train(model, x, loss_fn, steps=40)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5


def test_exported():
    for name in ("Autoencoder", "MLPDecoder", "ConvDecoder"):
        assert name in contrastkit.__all__
        assert name in contrastkit.models.__all__
        assert getattr(contrastkit, name) is getattr(contrastkit.models, name)
