"""A projection head: trained through, thrown away (SimCLR's nonlinear projection).

Chen et al. (2020, §4.2) train NT-Xent on ``z = g(h)``, where ``h`` is the network's
representation and ``g`` a small MLP, and then use ``h``: the loss makes ``z`` invariant
to the augmentations, and the head lets ``h`` keep what the invariance would erase (in
their measurements the representation before the head is more than 10 % better in
linear evaluation). :class:`ProjectedNetwork` trains a network through such a head and
:attr:`ProjectedNetwork.network` is what is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._validation import check_bool, check_positive_int
from contrastkit.models.siamese import embed_pairs

__all__ = ["ProjectedNetwork", "ProjectionHead", "unprojected"]

PROJECTION_HIDDEN = 128
"""The smallest hidden width of :class:`ProjectionHead` (its default: ``max(128, dim)``)."""


class ProjectionHead(nn.Sequential):
    """``Linear → BatchNorm → ReLU → Linear``: SimCLR's head, from ``dim`` to ``out_dim``.

    The two-layer MLP of SimCLR (Chen et al. 2020), with the batch normalization of
    SimCLR v2 (Chen et al. 2020b) on its hidden layer, which ``batch_norm=False`` leaves
    out (a head whose output for a row does not depend on the rest of its batch, as
    gradient caching needs).

    Args:
        dim: the size of the embeddings it takes.
        out_dim: the size of its output; ``None``: ``dim``.
        hidden: the hidden layer's width; ``None``: ``max(128, dim)``.
        batch_norm: batch normalization on the hidden layer.

    Shape:
        ``(N, dim) → (N, out_dim)``.

    Example:
        >>> import torch
        >>> [type(m).__name__ for m in ProjectionHead(32)]
        ['Linear', 'BatchNorm1d', 'ReLU', 'Linear']
        >>> ProjectionHead(32)[0]
        Linear(in_features=32, out_features=128, bias=True)
        >>> ProjectionHead(4, out_dim=2, hidden=8)(torch.randn(5, 4)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        dim: int,
        *,
        out_dim: int | None = None,
        hidden: int | None = None,
        batch_norm: bool = True,
    ) -> None:
        dim = check_positive_int("dim", dim)
        out = dim if out_dim is None else check_positive_int("out_dim", out_dim)
        width = (
            max(PROJECTION_HIDDEN, dim) if hidden is None else check_positive_int("hidden", hidden)
        )
        norm: list[nn.Module] = (
            [nn.BatchNorm1d(width)] if check_bool("batch_norm", batch_norm) else []
        )
        super().__init__(nn.Linear(dim, width), *norm, nn.ReLU(), nn.Linear(width, out))


class ProjectedNetwork(nn.Module):
    """A network trained through a projection head: ``head(network(x))``.

    Called like :class:`~contrastkit.models.SiameseNetwork` (``model(x)`` or
    ``model(x1, x2)``, two batches of one shape through the network as one), it returns
    the projections, which the loss compares. The embedding to keep, evaluate and save is
    ``network``'s: :attr:`network` is the network itself (not a copy), so training the
    projected network trains it, and loading a state dict of the projected network
    (keys ``network.*`` and ``head.*``) loads it.

    Args:
        network: from inputs to ``(N, D)`` embeddings (a siamese network, an encoder).
        head: from ``(N, D)`` to the projections, such as :class:`ProjectionHead`.

    Example:
        >>> import torch
        >>> from contrastkit.models import MLPEncoder, SiameseNetwork
        >>> network = SiameseNetwork(MLPEncoder(6, embedding_dim=4, hidden=[8]))
        >>> projected = ProjectedNetwork(network, ProjectionHead(4, hidden=16))
        >>> x = torch.randn(3, 6)
        >>> projected.eval()(x).shape, projected.network is network
        (torch.Size([3, 4]), True)
    """

    def __init__(self, network: nn.Module, head: nn.Module) -> None:
        super().__init__()
        for name, value in (("network", network), ("head", head)):
            if not isinstance(value, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
        self.network = network
        self.head = head

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """The projections of one batch, or of two batches through one network call."""
        out = embed_pairs(self.network, x1, x2)
        if isinstance(out, tuple):  # one head call: its batch statistics span both
            both = self.head(torch.cat(out))
            return both[: out[0].shape[0]], both[out[0].shape[0] :]
        return self.head(out)


def unprojected(model: nn.Module) -> nn.Module:
    """``model.network`` for a :class:`ProjectedNetwork`, else ``model`` itself."""
    return model.network if isinstance(model, ProjectedNetwork) else model
