"""Small encoders: an MLP for feature vectors, a ConvNet for images, fixed standardization.

:class:`MLPEncoder` embeds feature vectors, :class:`ConvEncoder` embeds images; both take
the output dimension as ``embedding_dim`` (2 gives a DrLIM-style map directly).
:class:`Standardize` holds fixed input statistics as buffers, so a saved model carries its
own preprocessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from contrastkit._validation import (
    check_bool,
    check_choice,
    check_finite,
    check_fraction,
    check_int_sequence,
    check_positive_int,
)

__all__ = ["CONV_NORMS", "ConvEncoder", "ConvNorm", "MLPEncoder", "Standardize", "mlp_layers"]


class Standardize(nn.Module):
    """``(x − mean) / std`` with fixed statistics, saved with the model's weights.

    Args:
        mean: broadcastable to one input without its batch dimension: ``(features,)`` for
            vectors, ``(channels, 1, 1)`` for images.
        std: same shape as ``mean``; every entry must be positive.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
        >>> Standardize.from_data(x)(x)
        tensor([[-1., -1.],
                [ 1.,  1.]])
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std)
        if mean.shape != std.shape:
            raise ValueError(
                f"mean and std must have the same shape, got {tuple(mean.shape)} "
                f"and {tuple(std.shape)}"
            )
        check_finite(mean=mean)
        bad = int((~(torch.isfinite(std) & (std > 0))).sum())
        if bad:
            raise ValueError(
                f"std must be finite and positive, got {bad} bad value(s) out of {std.numel()}"
            )
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.to(torch.float32))

    @classmethod
    def from_data(cls, x: Tensor) -> Standardize:
        """Statistics of a training batch: per feature for ``(N, F)``, per channel for images.

        A feature or channel that never varies keeps its scale (std 1), so an input that
        is constant in training is not blown up by a tiny standard deviation later.
        """
        if x.dim() < 2 or x.shape[0] < 1:
            raise ValueError(f"x must be a batch (N, ...) with N >= 1, got {tuple(x.shape)}")
        x = x.float()
        dims = (0,) if x.dim() == 2 else (0, *range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)[0]
        std = x.std(dim=dims, keepdim=True, unbiased=False)[0]
        std = torch.where(std > 1e-6 * std.max().clamp_min(1e-12), std, torch.ones_like(std))
        return cls(mean, std)

    def forward(self, x: Tensor) -> Tensor:
        """Standardize a batch."""
        return (x - self.mean) / self.std


def mlp_layers(
    width: int, hidden: Sequence[int], out: int, *, batch_norm: bool, dropout: float = 0.0
) -> list[nn.Module]:
    """``Linear (→ BatchNorm) → ReLU (→ Dropout)`` per hidden width, then a last ``Linear``."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out))
    return layers


class MLPEncoder(nn.Sequential):
    """A multilayer perceptron from feature vectors to embeddings.

    ``Linear (→ BatchNorm) → ReLU (→ Dropout)`` for each hidden width, then a final ``Linear`` to
    ``embedding_dim`` with no activation, so the embedding can take any value (as the
    contrastive loss expects; DrLIM maps to 2 dimensions this way).

    Args:
        in_features: size of each input vector.
        embedding_dim: size of each embedding.
        hidden: widths of the hidden layers.
        dropout: dropout probability after each hidden layer (0 disables it).
        batch_norm: batch normalization after each hidden ``Linear``.
        standardize: an optional :class:`Standardize` applied first.

    Shape:
        ``(N, in_features) → (N, embedding_dim)``.
    """

    def __init__(
        self,
        in_features: int,
        *,
        embedding_dim: int = 32,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        batch_norm: bool = False,
        standardize: Standardize | None = None,
    ) -> None:
        in_features = check_positive_int("in_features", in_features)
        embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        widths = check_int_sequence("hidden", hidden, what="layer widths")
        p = check_fraction("dropout", dropout, "[)")
        batch_norm = check_bool("batch_norm", batch_norm)
        layers: list[nn.Module] = [standardize] if standardize is not None else []
        layers += mlp_layers(in_features, widths, embedding_dim, batch_norm=batch_norm, dropout=p)
        super().__init__(*layers)
        self.in_features, self.embedding_dim = in_features, embedding_dim


ConvNorm = Literal["batch", "group", "none"]
CONV_NORMS: tuple[ConvNorm, ...] = ("batch", "group", "none")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalization of a ConvEncoder block (an Identity keeps the layers' indices)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.Identity()


class ConvEncoder(nn.Module):
    """A small convolutional network from images to embeddings.

    Each block is ``Conv3×3 → BatchNorm → ReLU → MaxPool2×2``; global average pooling
    then makes the network accept any image size at least ``2 ** len(channels)`` pixels
    on a side, and a final ``Linear`` gives ``embedding_dim`` values.

    Batch normalization couples the rows of a batch in training: ``norm="group"``
    (GroupNorm, up to 8 groups per layer) or ``"none"`` gives a network whose embedding
    of an image does not depend on the rest of its batch, as gradient caching
    (:class:`~contrastkit.training.CachedObjective`) and several CPU processes need.

    Args:
        in_channels: 1 for grayscale, 3 for colour.
        embedding_dim: size of each embedding.
        channels: output channels of each block.
        standardize: an optional :class:`Standardize` (per channel) applied first.
        norm: ``"batch"`` (the default), ``"group"`` or ``"none"``.

    Shape:
        ``(N, in_channels, H, W) → (N, embedding_dim)``.

    Example:
        >>> import torch
        >>> ConvEncoder(1, embedding_dim=2)(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        embedding_dim: int = 32,
        channels: Sequence[int] = (32, 64),
        standardize: Standardize | None = None,
        norm: ConvNorm = "batch",
    ) -> None:
        super().__init__()
        self.norm = check_choice("norm", norm, CONV_NORMS)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        widths = check_int_sequence("channels", channels, what="layer widths")
        if not widths:
            raise ValueError("channels must name at least one block, got ()")
        self.standardize = standardize if standardize is not None else nn.Identity()
        blocks: list[nn.Module] = []
        width = self.in_channels
        for c in widths:
            blocks += [
                nn.Conv2d(width, c, kernel_size=3, padding=1),
                _norm_layer(self.norm, c),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            width = c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(width, self.embedding_dim)
        self.min_size = 2 ** len(widths)

    def forward(self, x: Tensor) -> Tensor:
        """Embed a batch of images."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must be images (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(
                f"images must be at least {self.min_size}×{self.min_size} pixels, "
                f"got {x.shape[2]}×{x.shape[3]}"
            )
        h = self.features(self.standardize(x))
        return self.head(h.mean(dim=(2, 3)))
