"""Siamese networks and the small encoders they share.

* :class:`SiameseNetwork` wraps one encoder: called on ``(x1, x2)`` it returns both
  embeddings, computed by the same weights; called on one batch it returns one.
* :class:`MLPEncoder` embeds feature vectors, :class:`ConvEncoder` embeds images; both
  take the output dimension as ``embedding_dim`` (2 gives a DrLIM-style map directly).
* :class:`Standardize` holds fixed input statistics as buffers, so a saved model carries
  its own preprocessing.
* :class:`Autoencoder` pairs an encoder with a decoder (:class:`MLPDecoder` for
  vectors, :class:`ConvDecoder` for images); called like :class:`SiameseNetwork` it
  returns the code, so the same encoder serves siamese objectives, reconstruction and
  :func:`contrastkit.training.embed` alike.

Models never compute a loss: the losses take the embeddings.

Example:
    >>> import torch
    >>> from contrastkit import ContrastiveLoss
    >>> from contrastkit.models import MLPEncoder, SiameseNetwork
    >>> _ = torch.manual_seed(0)
    >>> model = SiameseNetwork(MLPEncoder(64, embedding_dim=2))
    >>> x1, x2 = torch.randn(8, 64), torch.randn(8, 64)
    >>> out1, out2 = model(x1, x2)
    >>> out1.shape, out2.shape
    (torch.Size([8, 2]), torch.Size([8, 2]))
    >>> loss = ContrastiveLoss(margin=1.0)(out1, out2, torch.tensor([1, 0] * 4))
    >>> loss.backward()
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from contrastkit._validation import check_bool, check_margin

__all__ = [
    "Autoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "SiameseNetwork",
    "Standardize",
]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _widths(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, int | str) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of layer widths, got {value!r}")
    return tuple(_positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def _dropout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"dropout must be a number, got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {value}")
    return float(value)


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
        if not bool(torch.isfinite(mean).all()):
            bad = int((~torch.isfinite(mean)).sum())
            raise ValueError(
                f"mean must be finite, got {bad} NaN or infinite value(s) out of {mean.numel()}"
            )
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


def _mlp_layers(
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
        in_features = _positive_int("in_features", in_features)
        embedding_dim = _positive_int("embedding_dim", embedding_dim)
        widths, p = _widths("hidden", hidden), _dropout(dropout)
        layers: list[nn.Module] = [standardize] if standardize is not None else []
        layers += _mlp_layers(in_features, widths, embedding_dim, batch_norm=batch_norm, dropout=p)
        super().__init__(*layers)
        self.in_features, self.embedding_dim = in_features, embedding_dim


class ConvEncoder(nn.Module):
    """A small convolutional network from images to embeddings.

    Each block is ``Conv3×3 → BatchNorm → ReLU → MaxPool2×2``; global average pooling
    then makes the network accept any image size at least ``2 ** len(channels)`` pixels
    on a side, and a final ``Linear`` gives ``embedding_dim`` values.

    Args:
        in_channels: 1 for grayscale, 3 for colour.
        embedding_dim: size of each embedding.
        channels: output channels of each block.
        standardize: an optional :class:`Standardize` (per channel) applied first.

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
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int("in_channels", in_channels)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        widths = _widths("channels", channels)
        if not widths:
            raise ValueError("channels must name at least one block, got ()")
        self.standardize = standardize if standardize is not None else nn.Identity()
        blocks: list[nn.Module] = []
        width = self.in_channels
        for c in widths:
            blocks += [
                nn.Conv2d(width, c, kernel_size=3, padding=1),
                nn.BatchNorm2d(c),
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
        return _embed(self.encoder, x1, x2)


def _embed(encoder: nn.Module, x1: Tensor, x2: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
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


def _shape(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, int | str) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of sizes, got {value!r}")
    if not value:
        raise ValueError(f"{name} must hold at least one size, got {value!r}")
    return tuple(_positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def _image_size(value: object) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        size = _positive_int("image_size", value)
        return size, size
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"image_size must be an integer or a pair (H, W), got {value!r}")
    height, width = _shape("image_size", value)
    return height, width


def _check_codes(code: Tensor, embedding_dim: int) -> None:
    if code.dim() != 2 or code.shape[1] != embedding_dim:
        raise ValueError(f"code must have shape (N, {embedding_dim}), got {tuple(code.shape)}")


class MLPDecoder(nn.Sequential):
    """A multilayer perceptron from codes back to vectors, the mirror of :class:`MLPEncoder`.

    ``Linear (→ BatchNorm) → ReLU`` for each hidden width, then a final ``Linear`` to
    ``out_features`` with no activation: the output is a reconstruction for ``"mse"`` or
    logits for ``"bce_with_logits"`` (see :func:`contrastkit.functional.reconstruction_loss`).
    With ``output_shape`` the output is reshaped, for example to images ``(1, 8, 8)``.

    Args:
        embedding_dim: size of each code (the encoder's ``embedding_dim``).
        out_features: number of values per reconstructed sample.
        hidden: widths of the hidden layers, from the code outwards.
        batch_norm: batch normalization after each hidden ``Linear``.
        output_shape: optional shape of one reconstructed sample; its product must be
            ``out_features``.

    Shape:
        ``(N, embedding_dim) → (N, out_features)``, or ``(N, *output_shape)``.

    Example:
        >>> import torch
        >>> MLPDecoder(2, 64, hidden=(16,), output_shape=(1, 8, 8))(torch.zeros(3, 2)).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(
        self,
        embedding_dim: int,
        out_features: int,
        *,
        hidden: Sequence[int] = (128, 256, 512),
        batch_norm: bool = False,
        output_shape: Sequence[int] | None = None,
    ) -> None:
        embedding_dim = _positive_int("embedding_dim", embedding_dim)
        out_features = _positive_int("out_features", out_features)
        widths = _widths("hidden", hidden)
        batch_norm = check_bool("batch_norm", batch_norm)
        shape = None if output_shape is None else _shape("output_shape", output_shape)
        if shape is not None and math.prod(shape) != out_features:
            raise ValueError(
                f"output_shape {shape} holds {math.prod(shape)} values, but out_features is "
                f"{out_features}"
            )
        layers = _mlp_layers(embedding_dim, widths, out_features, batch_norm=batch_norm)
        if shape is not None:
            layers.append(nn.Unflatten(1, shape))
        super().__init__(*layers)
        self.embedding_dim, self.out_features, self.output_shape = (
            embedding_dim,
            out_features,
            shape,
        )


class ConvDecoder(nn.Module):
    """A small upsampling network from codes back to images, the mirror of :class:`ConvEncoder`.

    A ``Linear → ReLU`` maps the code to ``channels[0]`` feature maps of about
    ``image_size / 2 ** len(channels)`` pixels; each further width is a block
    ``Upsample×2 → Conv3×3 → BatchNorm → ReLU``, and a last ``Upsample×2 → Conv3×3`` gives
    ``out_channels`` maps with no activation (values for ``"mse"``, logits for
    ``"bce_with_logits"``). The sizes before each upsampling are rounded up and the
    upsampling (nearest neighbour) goes to an exact size, so any image size, odd ones
    included, comes out exactly.

    Args:
        embedding_dim: size of each code (the encoder's ``embedding_dim``).
        out_channels: 1 for grayscale, 3 for colour.
        image_size: ``H`` (square images) or ``(H, W)``.
        channels: channels of the feature maps, from the code outwards (the encoder's
            ``channels`` reversed mirror it).

    Shape:
        ``(N, embedding_dim) → (N, out_channels, H, W)``.

    Example:
        >>> import torch
        >>> ConvDecoder(2, 1, 7)(torch.zeros(4, 2)).shape
        torch.Size([4, 1, 7, 7])
    """

    def __init__(
        self,
        embedding_dim: int,
        out_channels: int,
        image_size: int | tuple[int, int],
        *,
        channels: Sequence[int] = (64, 32),
    ) -> None:
        super().__init__()
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.image_size = _image_size(image_size)
        widths = _widths("channels", channels)
        if not widths:
            raise ValueError("channels must name at least one block, got ()")
        steps = len(widths)
        height, width = self.image_size
        # sizes[i]: the maps' size after i upsamplings, ceil(size / 2 ** (steps - i))
        sizes = [
            (-(-height // 2 ** (steps - i)), -(-width // 2 ** (steps - i)))
            for i in range(steps + 1)
        ]
        self.start_shape = (widths[0], *sizes[0])
        self.head = nn.Sequential(
            nn.Linear(self.embedding_dim, math.prod(self.start_shape)), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        for i, c in enumerate(widths[1:], start=1):
            blocks += [
                nn.Upsample(size=sizes[i], mode="nearest"),
                nn.Conv2d(widths[i - 1], c, kernel_size=3, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(),
            ]
        blocks += [
            nn.Upsample(size=sizes[steps], mode="nearest"),
            nn.Conv2d(widths[-1], self.out_channels, kernel_size=3, padding=1),
        ]
        self.features = nn.Sequential(*blocks)

    def forward(self, code: Tensor) -> Tensor:
        """Decode a batch of codes into images."""
        _check_codes(code, self.embedding_dim)
        h = self.head(code).reshape(code.shape[0], *self.start_shape)
        return self.features(h)


class Autoencoder(nn.Module):
    r"""An encoder and a decoder; called like :class:`SiameseNetwork`, it returns codes.

    * ``model(x)`` is ``encode(x)``, the code, and ``model(x1, x2)`` the codes of both
      batches, computed exactly as :class:`SiameseNetwork` computes them (same-shape
      batches in one pass). So every siamese loss, :func:`contrastkit.training.embed` and
      the metrics use the code as the embedding, unchanged.
    * ``decode(code)`` is the reconstruction, ``reconstruct(x) = decode(encode(x̃))``.

    With ``noise_std`` :math:`= \sigma > 0` this is a denoising autoencoder (Vincent et al.
    2008): in training mode ``reconstruct`` corrupts its input,
    :math:`\tilde x = x + \sigma \varepsilon` with :math:`\varepsilon \sim \mathcal N(0, 1)`
    drawn from torch's global generator, and the loss compares the reconstruction with
    the *clean* ``x``. In eval mode, and in ``forward``, ``encode`` and ``decode``, no
    noise is ever added.

    Args:
        encoder: any module from inputs to ``(N, D)`` codes, for example an
            :class:`MLPEncoder` or :class:`ConvEncoder`.
        decoder: any module from codes back to the inputs' shape, for example an
            :class:`MLPDecoder` or :class:`ConvDecoder`.
        noise_std: standard deviation :math:`\sigma \ge 0` of the Gaussian input noise
            in training mode (0, the default, is a plain autoencoder).

    Example:
        One encoder, trained by reconstruction, then shared with a siamese network:

        >>> import torch
        >>> from contrastkit import ReconstructionLoss
        >>> from contrastkit.models import Autoencoder, MLPDecoder, MLPEncoder, SiameseNetwork
        >>> _ = torch.manual_seed(0)
        >>> encoder = MLPEncoder(64, embedding_dim=8, hidden=(32,))
        >>> model = Autoencoder(encoder, MLPDecoder(8, 64, hidden=(32,)), noise_std=0.1)
        >>> x = torch.randn(16, 64)
        >>> loss = ReconstructionLoss()(model.reconstruct(x), x)  # target: the clean x
        >>> loss.backward()
        >>> siamese = SiameseNetwork(encoder)  # the same weights
        >>> torch.equal(model(x), siamese(x)), model(x).shape
        (True, torch.Size([16, 8]))

    Reference:
        G. E. Hinton, R. R. Salakhutdinov. *Reducing the Dimensionality of Data with
        Neural Networks.* Science 313, 2006. P. Vincent, H. Larochelle, Y. Bengio,
        P.-A. Manzagol. *Extracting and Composing Robust Features with Denoising
        Autoencoders.* ICML 2008.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, noise_std: float = 0.0) -> None:
        super().__init__()
        for name, module in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
        self.encoder = encoder
        self.decoder = decoder
        self.noise_std = noise_std

    @property
    def noise_std(self) -> float:
        """Standard deviation of the input noise of ``reconstruct`` in training mode."""
        return self._noise_std

    @noise_std.setter
    def noise_std(self, value: float) -> None:
        self._noise_std = check_margin(value, "noise_std")

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """The code of one batch, or the codes of two batches (as :class:`SiameseNetwork`)."""
        return _embed(self.encoder, x1, x2)

    def encode(self, x: Tensor) -> Tensor:
        """The code of a batch (never noisy)."""
        return self.encoder(x)

    def decode(self, code: Tensor) -> Tensor:
        """The reconstruction from a batch of codes."""
        return self.decoder(code)

    def reconstruct(self, x: Tensor) -> Tensor:
        """``decode(encode(x̃))``: ``x̃`` is ``x`` plus noise in training mode, ``x`` in eval."""
        if self.training and self._noise_std > 0:
            if not x.is_floating_point():
                raise TypeError(
                    f"x must be a floating-point tensor to add noise_std={self._noise_std} "
                    f"noise, got dtype {x.dtype}"
                )
            x = x + self._noise_std * torch.randn_like(x)
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        """The noise level, shown in ``repr(self)``."""
        return f"noise_std={self._noise_std!r}"
