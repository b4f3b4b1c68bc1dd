"""The projection head and the network trained through it (SimCLR's g(·))."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastkit.models import (
    MLPEncoder,
    ProjectedNetwork,
    ProjectionHead,
    SiameseNetwork,
    unprojected,
)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def network(seed=0):
    torch.manual_seed(seed)
    return SiameseNetwork(MLPEncoder(6, embedding_dim=4, hidden=[8])).double()


def test_the_head_is_linear_norm_relu_linear_and_its_widths_follow_the_arguments():
    head = ProjectionHead(32)
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[3].out_features) == (32, 128, 32)
    wide = ProjectionHead(300, out_dim=16)  # the hidden width is never below the input's
    assert (wide[0].out_features, wide[-1].out_features) == (300, 16)
    plain = ProjectionHead(4, hidden=8, batch_norm=False)
    assert [type(m).__name__ for m in plain] == ["Linear", "ReLU", "Linear"]
    x = randn(5, 4).float()
    expected = plain[2](torch.relu(plain[0](x)))
    assert torch.equal(plain(x), expected)


def test_the_projected_network_is_the_head_of_the_network_and_shares_its_weights():
    net = network()
    head = ProjectionHead(4, hidden=16).double()
    model = ProjectedNetwork(net, head).eval()
    x = randn(7, 6)
    assert torch.equal(model(x), head(net(x)))
    assert unprojected(model) is net and unprojected(net) is net
    keys = set(model.state_dict())
    assert {k for k in keys if k.startswith("network.")} == {
        f"network.{k}" for k in net.state_dict()
    }
    assert {k for k in keys if k.startswith("head.")} == {f"head.{k}" for k in head.state_dict()}


def test_two_batches_go_through_network_and_head_as_one_batch():
    # in training, batch normalization sees both branches at once, as one network would
    net, head = network(), ProjectionHead(4, hidden=16).double()
    model = ProjectedNetwork(net, head).train()
    x1, x2 = randn(5, 6, seed=1), randn(3, 6, seed=2)
    out1, out2 = model(x1, x2)
    both = head(net(torch.cat([x1, x2])))
    torch.testing.assert_close(torch.cat([out1, out2]), both, rtol=0, atol=1e-12)
    assert not torch.allclose(out2, head(net(x2)))  # alone, other batch statistics


def test_gradients_reach_the_network_through_the_head_in_float64():
    net = network()
    model = ProjectedNetwork(net, ProjectionHead(4, hidden=6, batch_norm=False).double())
    x = randn(4, 6).requires_grad_()
    assert torch.autograd.gradcheck(model, (x,))
    model(x).pow(2).sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ProjectionHead(0), ValueError, "dim must be"),
        (lambda: ProjectionHead(4, out_dim=0), ValueError, "out_dim must be"),
        (lambda: ProjectionHead(4, hidden=2.5), TypeError, "hidden must be"),
        (lambda: ProjectionHead(4, batch_norm=1), TypeError, "batch_norm must be a bool"),
        (lambda: ProjectedNetwork("net", nn.Identity()), TypeError, "network must be"),
        (lambda: ProjectedNetwork(nn.Identity(), None), TypeError, "head must be"),
    ],
)
def test_bad_arguments_are_refused_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()
