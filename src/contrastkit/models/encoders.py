"""Small encoders: an MLP for feature vectors, a ConvNet and a ResNet for images.

:class:`MLPEncoder` embeds feature vectors, :class:`ConvEncoder` and :class:`ResNetEncoder`
embed images; all take the output dimension as ``embedding_dim`` (2 gives a DrLIM-style map
directly).
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

__all__ = [
    "CONV_NORMS",
    "RESNET_STEMS",
    "BasicBlock",
    "ConvEncoder",
    "ConvNorm",
    "MLPEncoder",
    "ResNetEncoder",
    "ResNetStem",
    "Standardize",
    "mlp_layers",
]


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


ResNetStem = Literal["small", "imagenet"]
RESNET_STEMS: tuple[ResNetStem, ...] = ("small", "imagenet")


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, norm: str) -> nn.Conv2d:
    """A square convolution padded to keep ``ceil(size / stride)``; a bias only without norm."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=kernel // 2,
        bias=norm == "none",
    )


class BasicBlock(nn.Module):
    """The basic residual unit of He et al. (2016): ``relu(branch(x) + shortcut(x))``.

    The branch is ``Conv3×3 (stride) → norm → ReLU → Conv3×3 → norm``; the shortcut is
    the identity, or ``Conv1×1 (stride) → norm`` (``downsample``) when the stride or the
    width changes. The attribute names are torchvision's, so its ResNet-18/34 weights
    map onto a :class:`ResNetEncoder` of the same shape key for key.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: 1, or 2 to halve the height and width (rounding up).
        norm: ``"batch"``, ``"group"`` or ``"none"``, as in :class:`ConvEncoder`.
        zero_init_residual: start the branch at zero (the last norm's scale, or without
            a norm the last convolution), so that the block starts as
            ``relu(shortcut(x))``.

    Shape:
        ``(N, in_channels, H, W) → (N, out_channels, ⌈H / stride⌉, ⌈W / stride⌉)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        norm: ConvNorm = "batch",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, stride, norm)
        self.bn1 = _norm_layer(norm, out_channels)
        self.relu = nn.ReLU()
        self.conv2 = _conv(out_channels, out_channels, 3, 1, norm)
        self.bn2 = _norm_layer(norm, out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                _conv(in_channels, out_channels, 1, stride, norm), _norm_layer(norm, out_channels)
            )
        _init_resnet_weights(self)
        if zero_init_residual:
            if isinstance(self.bn2, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.zeros_(self.bn2.weight)
            else:  # no norm: the last convolution itself (as in Fixup)
                nn.init.zeros_(self.conv2.weight)
                if self.conv2.bias is not None:
                    nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``relu(branch(x) + shortcut(x))``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        h = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(h)) + shortcut)


def _init_resnet_weights(module: nn.Module) -> None:
    """He (fan-out) initialization of the convolutions, unit scale and zero shift of norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetEncoder(nn.Module):
    """A small residual network (He et al. 2016) from images to embeddings.

    A stem, then one stage of :class:`BasicBlock` units per entry of ``widths`` (each
    stage after the first halves the height and width with a stride-2 first block),
    global average pooling, and a final ``Linear`` to ``embedding_dim``.

    ``stem="small"`` (the default, for images of 32×32 pixels or so, as He et al. used on
    CIFAR-10) is one ``Conv3×3 → norm → ReLU`` at full resolution; ``stem="imagenet"``
    is ``Conv7×7 stride 2 → norm → ReLU → MaxPool3×3 stride 2``, for photos of 100
    pixels and more. Any image at least as large as the total stride (``min_size``: 4
    for the default, 32 for the ImageNet stem with 4 stages) on each side is accepted.

    With the defaults (3 channels, ``widths=(32, 64, 128)``, ``blocks=(2, 2, 2)``,
    batch norm, 128 dimensions) the network has 711,840 parameters in 15 convolutions
    and the ``Linear`` (``ConvEncoder(3, embedding_dim=128)`` has 27,904).

    The module names are torchvision's (``conv1``, ``bn1``, ``layer1``…, ``fc``):
    ``ResNetEncoder(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem="imagenet",
    embedding_dim=1000)`` is torchvision's ResNet-18 key for key (11,689,512
    parameters), so a ResNet-18 state dict loads into it with
    :func:`~contrastkit.models.load_pretrained`; ``strict=False`` leaves out an ``fc`` of
    another size and the ``standardize.*`` buffers such a file lacks (give ImageNet's
    per-channel mean and std as ``standardize`` for those weights).

    ``norm`` is as in :class:`ConvEncoder`: ``"group"`` (GroupNorm, up to 8 groups per
    layer) or ``"none"`` makes each image's embedding independent of the rest of its
    batch, as gradient caching (:class:`~contrastkit.training.CachedObjective`) needs.

    ``zero_init_residual`` (on by default) starts every residual branch at zero, so each
    block starts as ``relu(shortcut(x))``: Goyal et al. (2017) found it eases the
    first steps of training, and without a norm it is what keeps the activations'
    scale from growing with depth at initialization (as in Fixup, Zhang et al. 2019).

    There is no projection head here: the output is the embedding that the losses take
    and that evaluation uses. SimCLR's MLP head, used only by the loss and dropped after
    training, belongs to the training objective or to the caller
    (``nn.Sequential(encoder, head)`` in training, ``encoder`` alone afterwards).

    Args:
        in_channels: 1 for grayscale, 3 for colour.
        embedding_dim: size of each embedding.
        widths: channels of each stage.
        blocks: number of residual blocks in each stage (as many entries as ``widths``).
        norm: ``"batch"`` (the default), ``"group"`` or ``"none"``.
        standardize: an optional :class:`Standardize` (per channel) applied first.
        stem: ``"small"`` (the default) or ``"imagenet"``.
        zero_init_residual: start each residual branch at zero (default ``True``).

    Shape:
        ``(N, in_channels, H, W) → (N, embedding_dim)``.

    Example:
        >>> import torch
        >>> model = ResNetEncoder(3, embedding_dim=16, widths=(8, 16), blocks=(1, 1))
        >>> model(torch.rand(4, 3, 32, 32)).shape, model.min_size
        (torch.Size([4, 16]), 2)
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        embedding_dim: int = 128,
        widths: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (2, 2, 2),
        norm: ConvNorm = "batch",
        standardize: Standardize | None = None,
        stem: ResNetStem = "small",
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        stage_widths = check_int_sequence("widths", widths, what="stage widths")
        stage_blocks = check_int_sequence("blocks", blocks, what="numbers of blocks")
        if not stage_widths:
            raise ValueError("widths must name at least one stage, got ()")
        if len(stage_blocks) != len(stage_widths):
            raise ValueError(
                f"blocks must have one entry per stage of widths ({len(stage_widths)}), "
                f"got {len(stage_blocks)}: {stage_blocks}"
            )
        self.norm = check_choice("norm", norm, CONV_NORMS)
        self.stem = check_choice("stem", stem, RESNET_STEMS)
        zero_init = check_bool("zero_init_residual", zero_init_residual)
        if standardize is not None and not isinstance(standardize, nn.Module):
            raise TypeError(
                f"standardize must be a Standardize module or None, got "
                f"{type(standardize).__name__}"
            )
        self.widths, self.blocks = stage_widths, stage_blocks
        self.standardize = standardize if standardize is not None else nn.Identity()

        first = stage_widths[0]
        if self.stem == "small":
            self.conv1 = _conv(self.in_channels, first, 3, 1, self.norm)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = _conv(self.in_channels, first, 7, 2, self.norm)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = _norm_layer(self.norm, first)
        self.relu = nn.ReLU()
        _init_resnet_weights(self)

        width = first
        for i, (w, n) in enumerate(zip(stage_widths, stage_blocks, strict=True)):
            units = [
                BasicBlock(
                    width if j == 0 else w,
                    w,
                    stride=2 if (i > 0 and j == 0) else 1,
                    norm=self.norm,
                    zero_init_residual=zero_init,
                )
                for j in range(n)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
            width = w
        self.fc = nn.Linear(width, self.embedding_dim)
        self.min_size = (4 if self.stem == "imagenet" else 1) * 2 ** (len(stage_widths) - 1)

    def stages(self) -> list[nn.Sequential]:
        """The stages ``layer1``, ``layer2``, … in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.widths))]

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
        h = self.maxpool(self.relu(self.bn1(self.conv1(self.standardize(x)))))
        for stage in self.stages():
            h = stage(h)
        return self.fc(h.mean(dim=(2, 3)))
