"""Autoencoders: an encoder (the siamese one) and a mirrored decoder; the code is the embedding.

:class:`Autoencoder` pairs an encoder with a decoder (:class:`MLPDecoder` for vectors,
:class:`ConvDecoder` for images); called like a siamese network it returns the code, so
the same encoder serves siamese objectives, reconstruction and
:func:`contrastkit.training.embed` alike.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from contrastkit._validation import (
    check_bool,
    check_int_sequence,
    check_nonnegative,
    check_positive_int,
)
from contrastkit.models.encoders import mlp_layers
from contrastkit.models.siamese import embed_pairs

__all__ = ["Autoencoder", "ConvDecoder", "MLPDecoder"]


def _shape(name: str, value: object) -> tuple[int, ...]:
    shape = check_int_sequence(name, value, what="sizes")
    if not shape:
        raise ValueError(f"{name} must hold at least one size, got {value!r}")
    return shape


def _image_size(value: object) -> tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        size = check_positive_int("image_size", value)
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
        embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        out_features = check_positive_int("out_features", out_features)
        widths = check_int_sequence("hidden", hidden, what="layer widths")
        batch_norm = check_bool("batch_norm", batch_norm)
        shape = None if output_shape is None else _shape("output_shape", output_shape)
        if shape is not None and math.prod(shape) != out_features:
            raise ValueError(
                f"output_shape {shape} holds {math.prod(shape)} values, but out_features is "
                f"{out_features}"
            )
        layers = mlp_layers(embedding_dim, widths, out_features, batch_norm=batch_norm)
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
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.image_size = _image_size(image_size)
        widths = check_int_sequence("channels", channels, what="layer widths")
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
        self._noise_std = check_nonnegative("noise_std", value)

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """The code of one batch, or the codes of two batches (as :class:`SiameseNetwork`)."""
        return embed_pairs(self.encoder, x1, x2)

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
