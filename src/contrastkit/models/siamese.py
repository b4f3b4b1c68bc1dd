"""The siamese network: one encoder, two branches, the weights shared by construction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SiameseNetwork", "embed_pairs"]


class SiameseNetwork(nn.Module):
    """One encoder, two branches: the weights are shared by construction.

    ``model(x1, x2)`` returns ``(encoder(x1), encoder(x2))``; ``model(x)`` returns
    ``encoder(x)``. When both inputs have the same shape they go through the encoder as
    one concatenated batch, so batch-normalization statistics are shared by the two
    branches, exactly as one network would see them.

    Args:
        encoder: any module from inputs to ``(N, D)`` embeddings.

    Example:
        >>> import torch
        >>> model = SiameseNetwork(torch.nn.Linear(3, 2))
        >>> x = torch.randn(5, 3)
        >>> a, b = model(x, x)
        >>> torch.equal(a, b), torch.equal(a, model(x))
        (True, True)
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        self.encoder = encoder

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Embed one batch, or two batches with the same weights."""
        return embed_pairs(self.encoder, x1, x2)


def embed_pairs(
    encoder: nn.Module, x1: Tensor, x2: Tensor | None
) -> Tensor | tuple[Tensor, Tensor]:
    """``encoder(x1)``, or ``(encoder(x1), encoder(x2))`` from one concatenated batch.

    Two batches of one sample shape, dtype and device go through the encoder together,
    so that batch-normalization statistics are shared by the two branches.
    """
    if x2 is None:
        return encoder(x1)
    if x1.shape[1:] == x2.shape[1:] and x1.dtype == x2.dtype and x1.device == x2.device:
        both = encoder(torch.cat([x1, x2]))
        return both[: x1.shape[0]], both[x1.shape[0] :]
    return encoder(x1), encoder(x2)
