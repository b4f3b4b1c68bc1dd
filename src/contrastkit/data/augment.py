"""Augmented views of image batches, as in SimCLR: crop, flip, colour jitter, grayscale, blur.

Torch only, and batched: every operation takes a ``(N, C, H, W)`` floating-point tensor
of pixels in ``[0, 1]`` (``ToTensor``'s range; not standardized, since colour jitter
and grayscale are defined on pixel intensities: standardize *after* augmenting) and
draws its own random parameters for each sample, with no Python loop over samples. It
runs wherever the images are, a GPU included.

* :class:`RandomResizedCrop`: a box of random area (``scale``, a fraction of the
  image) and aspect ratio (``ratio``), resized to ``size`` with bilinear interpolation;
  torchvision's algorithm (ten tries, then a central crop), integer boxes.
* :class:`RandomHorizontalFlip`, :class:`RandomGrayscale` (ITU-R 601-2 luma, kept on
  every channel) and :class:`GaussianBlur` (a kernel a tenth of the image's side,
  sigma drawn per sample, reflected borders), each applied with probability ``p``.
* :class:`ColorJitter`: brightness, contrast, saturation and hue, by torchvision's
  definitions, in a random order drawn per sample, applied with probability ``p``.
* :class:`Augment` composes them in SimCLR's order (crop, flip, jitter, grayscale,
  blur), with the presets :meth:`Augment.simclr`, :meth:`Augment.strong`,
  :meth:`Augment.light`, :meth:`Augment.crop_only` and :meth:`Augment.none`, and
  :meth:`Augment.two_views` for NT-Xent. It is an :class:`torch.nn.Module`:
  ``augment.eval()`` turns the randomness off (evaluation), and its ``repr`` lists every
  setting, for the log.
* :class:`FeatureNoise`: noisy views of feature vectors (table rows) rather than
  images: Gaussian noise in units of each feature's spread, and features dropped to
  their mean, for NT-Xent on a table without labels.

**Randomness.** Every call takes ``generator``, a :class:`torch.Generator`, and draws
every random number from it; with ``generator=None`` it draws from torch's global CPU
generator (seeded by :func:`torch.manual_seed`). The numbers are drawn on the
generator's device and the parameters moved to the images' device, so a CPU generator
gives the same crops, flips and factors whatever device the images are on, and a
trainer that seeds a generator per ``(seed, epoch, step)`` replays a resumed run bit for
bit. How many numbers a call draws depends only on the batch size and the settings,
never on the draws themselves (nor on ``p``). With a CPU generator nothing is read back
from an accelerator to choose samples; with a CUDA generator the choice of which samples
an operation applies to waits for the device. Every operation used is deterministic on
CUDA (``grid_sample`` forward, element-wise arithmetic, reductions, gathers and index
copies; no cuDNN convolution).

**Channels.** Colour jitter and grayscale need 1 or 3 channels (RGB). On 1-channel
images, grayscale is the identity, and jitter applies brightness and contrast only
(saturation and hue do not exist without colour; torchvision does the same). Crop, flip
and blur take any number of channels.

The functions :func:`resized_crop`, :func:`gaussian_blur`, :func:`adjust_brightness`,
:func:`adjust_contrast`, :func:`adjust_saturation`, :func:`adjust_hue`,
:func:`rgb_to_grayscale`, :func:`rgb_to_hsv` and :func:`hsv_to_rgb` apply given
per-sample parameters, without randomness.

Example:
    >>> import torch
    >>> from contrastkit.data import Augment
    >>> augment = Augment.simclr(32)
    >>> images = torch.rand(8, 3, 40, 40)
    >>> generator = torch.Generator().manual_seed(0)
    >>> first, second = augment.two_views(images, generator)
    >>> first.shape, bool((first >= 0).all() and (first <= 1).all())
    (torch.Size([8, 3, 32, 32]), True)
    >>> again = augment.two_views(images, torch.Generator().manual_seed(0))
    >>> torch.equal(first, again[0]) and torch.equal(second, again[1])
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_bool,
    check_finite,
    check_fraction,
    check_in_range,
    check_int,
    check_nonnegative,
    check_real,
    check_tensor,
    compute_dtype,
)

__all__ = [
    "Augment",
    "ColorJitter",
    "FeatureNoise",
    "GaussianBlur",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "gaussian_blur",
    "hsv_to_rgb",
    "resized_crop",
    "rgb_to_grayscale",
    "rgb_to_hsv",
]

_CROP_TRIES = 10
"""Boxes drawn per sample before the central fallback (torchvision's number)."""

# HSV to RGB: in sector i = floor(6 h) of the hue circle, each of R, G, B is one of
# (v, q, p, t) (colorsys.hsv_to_rgb); these are the positions in that tuple.
_SECTOR_CHANNELS = ((0, 3, 2), (1, 0, 2), (2, 0, 3), (2, 1, 0), (3, 2, 0), (0, 2, 1))


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def _check_images(images: object, *, colour: bool = False) -> Tensor:
    """``images`` is a ``(N, C, H, W)`` float tensor of values in ``[0, 1]``.

    ``colour``: the operation needs 1 or 3 channels. The value checks (finite, in range)
    are skipped while validation is off (:func:`contrastkit.set_validation`).
    """
    t = check_tensor("images", images, ndim=4)
    if t.shape[1] < 1 or t.shape[2] < 1 or t.shape[3] < 1:
        raise ValueError(
            "images must be (N, C, H, W) with at least one channel, row and column, "
            f"got shape {tuple(t.shape)}"
        )
    if colour and t.shape[1] not in (1, 3):
        raise ValueError(
            "images must have 1 (grayscale) or 3 (RGB) channels for colour jitter and "
            f"grayscale, got {t.shape[1]} channels (shape {tuple(t.shape)})"
        )
    check_finite(images=t)
    check_in_range("images", t, 0, 1, context=" (pixels scaled to [0, 1], not standardized)")
    return t


def _check_generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def _check_range(
    name: str, value: object, *, low: float, high: float | None, closed_low: bool
) -> tuple[float, float]:
    """A pair ``(a, b)`` of numbers with ``low <(=) a <= b <= high``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a pair of numbers (low, high), got {value!r}")
    a, b = (check_real(f"{name}[{i}]", v) for i, v in enumerate(value))
    above = a >= low if closed_low else a > low
    if not above or a > b or (high is not None and b > high):
        bound = f"{'<=' if closed_low else '<'} low <= high" + (
            f" <= {high}" if high is not None else ""
        )
        raise ValueError(f"{name} must satisfy {low} {bound}, got {value!r}")
    return a, b


def _check_size(name: str, size: object) -> tuple[int, int]:
    """An output size: one integer (square) or a pair ``(height, width)``, each >= 1."""
    if isinstance(size, Sequence) and not isinstance(size, (str, bytes)):
        if len(size) != 2:
            raise ValueError(f"{name} must be an int or a pair (height, width), got {size!r}")
        return (
            check_int(f"{name}[0]", size[0], minimum=1),
            check_int(f"{name}[1]", size[1], minimum=1),
        )
    side = check_int(name, size, minimum=1)
    return side, side


def _check_factors(name: str, factors: object, images: Tensor, *, columns: int = 1) -> Tensor:
    """One parameter per sample: a float tensor of shape ``(N,)`` (or ``(N, columns)``)."""
    n = images.shape[0]
    shape = (n,) if columns == 1 else (n, columns)
    if not isinstance(factors, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape}, got {type(factors).__name__}"
        )
    if tuple(factors.shape) != shape:
        raise ValueError(
            f"{name} must have shape {shape} (one per image), got {tuple(factors.shape)}"
        )
    return factors


# --------------------------------------------------------------------------------------
# Drawing random numbers
# --------------------------------------------------------------------------------------


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Uniform numbers on ``[0, 1)`` from ``generator``, on its device (float64 there)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32).double()


def _between(u: Tensor, low: float, high: float) -> Tensor:
    return low + (high - low) * u


def _chosen(mask: Tensor, device: torch.device) -> Tensor:
    """The indices where ``mask`` holds, on ``device`` (found where the mask lies)."""
    return mask.nonzero().flatten().to(device)


# --------------------------------------------------------------------------------------
# The operations with given parameters (no checks: the public functions check)
# --------------------------------------------------------------------------------------


def _sample_grid(boxes: Tensor, size: tuple[int, int], height: int, width: int) -> Tensor:
    """The ``grid_sample`` grid that resizes each box as ``F.interpolate`` would.

    ``F.interpolate(mode="bilinear", align_corners=False)`` reads output pixel ``x`` of a
    crop ``w`` wide at ``(x + 0.5) w / out_w - 0.5`` of the crop, clamped to the crop's
    first and last pixel; the same coordinate in the whole image is that plus the box's
    left edge, normalized for ``grid_sample(align_corners=False)``.
    """
    top, left, h, w = boxes.unbind(1)
    out_h, out_w = size

    def axis(start: Tensor, extent: Tensor, out: int, whole: int) -> Tensor:
        steps = torch.arange(out, device=boxes.device, dtype=torch.float64) + 0.5
        inside = steps[None, :] * (extent / out)[:, None] - 0.5
        inside = torch.minimum(inside.clamp(min=0.0), (extent - 1)[:, None])
        return (2.0 * (start[:, None] + inside) + 1.0) / whole - 1.0

    ys = axis(top.double(), h.double(), out_h, height)
    xs = axis(left.double(), w.double(), out_w, width)
    n = boxes.shape[0]
    grid = torch.stack(
        (xs[:, None, :].expand(n, out_h, out_w), ys[:, :, None].expand(n, out_h, out_w)), dim=-1
    )
    return grid


def _resized_crop(x: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    grid = _sample_grid(boxes, size, x.shape[2], x.shape[3]).to(x.device, x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)


def _gray(x: Tensor) -> Tensor:
    """``(N, 3, H, W)`` to ``(N, 1, H, W)``: ITU-R 601-2 luma, torchvision's weights."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``factor x + (1 - factor) other``, clamped to ``[0, 1]`` (torchvision's ``_blend``)."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)


def _brightness(x: Tensor, factor: Tensor) -> Tensor:
    return (factor.view(-1, 1, 1, 1) * x).clamp_(0.0, 1.0)


def _contrast(x: Tensor, factor: Tensor) -> Tensor:
    gray = _gray(x) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def _saturation(x: Tensor, factor: Tensor) -> Tensor:
    if x.shape[1] != 3:
        return x
    return _blend(x, _gray(x), factor)


def _rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    delta = maxc - minc
    grey = delta == 0
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(grey, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(grey, torch.zeros_like(h), h)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    table = torch.tensor(_SECTOR_CHANNELS, device=x.device)
    index = table[sector.long().remainder(6)].permute(0, 3, 1, 2)  # (N, 3, H, W)
    return torch.gather(torch.stack((v, q, p, t), dim=1), 1, index)


def _hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue, keeping HSV's saturation and value, without building HSV.

    A hue rotation keeps each pixel's largest and smallest channel (``max`` and
    ``max - delta``); channel ``n`` (5 for R, 3 for G, 1 for B) of the new hue ``h`` is
    ``max - delta clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 h) mod 6``: the same as
    :func:`hsv_to_rgb` of the shifted :func:`rgb_to_hsv`, in 60% of the time.
    """
    if x.shape[1] != 3:
        return x
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    delta = maxc - x.amin(dim=1)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    sixths = torch.where(
        maxc == r,
        (g - b) / safe,
        torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe),
    )
    sixths = torch.remainder(sixths + 6.0 * shift.view(-1, 1, 1), 6.0)
    channel = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(channel + sixths.unsqueeze(1), 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return (maxc.unsqueeze(1) - delta.unsqueeze(1) * weight).clamp_(0.0, 1.0)


def _blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur, one sigma per sample, reflected borders (torchvision's)."""
    radius = kernel_size // 2
    if radius == 0:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).view(-1, 1, 1, 1, kernel_size)
    height, width = x.shape[2], x.shape[3]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    # one multiply-add per tap (a Python loop over the kernel, not the samples): 9 times
    # faster on the CPU than unfolding, and no cuDNN convolution to choose an algorithm
    rows = padded[..., :width] * kernel[..., 0]
    for tap in range(1, kernel_size):
        rows.add_(padded[..., tap : tap + width] * kernel[..., tap])
    out = rows[:, :, :height] * kernel[..., 0]
    for tap in range(1, kernel_size):
        out.add_(rows[:, :, tap : tap + height] * kernel[..., tap])
    return out.clamp_(0.0, 1.0)


def _blur_kernel_size(height: int, width: int) -> int:
    """SimCLR's kernel: a tenth of the side, made odd (``2 (side // 10 // 2) + 1``)."""
    return 2 * (min(height, width) // 10 // 2) + 1


# --------------------------------------------------------------------------------------
# The operations with given parameters, public
# --------------------------------------------------------------------------------------


def _as_compute(images: Tensor) -> Tensor:
    return images.to(compute_dtype(images))


def resized_crop(images: Tensor, boxes: Tensor, size: int | Sequence[int]) -> Tensor:
    """Crop a box out of each image and resize it to ``size`` (bilinear).

    The same result as slicing each box and calling
    ``F.interpolate(crop, size, mode="bilinear", align_corners=False)`` (no
    antialiasing: to shrink an image many times over, read it near the output size),
    computed for the whole batch by one ``grid_sample``.

    Args:
        images: ``(N, C, H, W)`` pixels in ``[0, 1]``.
        boxes: ``(N, 4)`` integers ``(top, left, height, width)``, each box inside its
            image and at least one pixel high and wide.
        size: the output's side, or ``(height, width)``.

    Returns:
        ``(N, C, *size)``, in the images' dtype, on their device.

    Example:
        >>> import torch
        >>> images = torch.rand(2, 3, 8, 8)
        >>> boxes = torch.tensor([[0, 0, 8, 8], [2, 2, 4, 4]])
        >>> out = resized_crop(images, boxes, 8)
        >>> out.shape, torch.allclose(out[0], images[0])
        (torch.Size([2, 3, 8, 8]), True)
    """
    images = _check_images(images)
    out_size = _check_size("size", size)
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor of shape (N, 4), got {type(boxes).__name__}")
    n, _, height, width = images.shape
    if tuple(boxes.shape) != (n, 4):
        raise ValueError(
            f"boxes must have shape ({n}, 4): (top, left, height, width) per image, "
            f"got {tuple(boxes.shape)}"
        )
    if boxes.is_floating_point() or boxes.is_complex() or boxes.dtype == torch.bool:
        raise TypeError(f"boxes must be an integer tensor, got dtype {boxes.dtype}")
    boxes = boxes.long().cpu()
    top, left, h, w = boxes.unbind(1)
    bad = (top < 0) | (left < 0) | (h < 1) | (w < 1) | (top + h > height) | (left + w > width)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise ValueError(
            f"boxes must lie inside the {height}x{width} images with height and width >= 1, "
            f"got box {boxes[first].tolist()} (top, left, height, width) for image {first}"
        )
    return _resized_crop(_as_compute(images), boxes, out_size).to(images.dtype)


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """ITU-R 601-2 luma ``0.2989 R + 0.587 G + 0.114 B`` (torchvision's), ``(N, 1, H, W)``."""
    images = _check_images(images)
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 channels (RGB), got shape {tuple(images.shape)}")
    return _gray(_as_compute(images)).to(images.dtype)


def rgb_to_hsv(images: Tensor) -> Tensor:
    """RGB to HSV, each in ``[0, 1]`` (hue as a fraction of the circle; ``colorsys``'s rule).

    A pixel with no colour (R = G = B) has hue 0 and saturation 0.
    """
    images = _check_images(images)
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 channels (RGB), got shape {tuple(images.shape)}")
    return _rgb_to_hsv(_as_compute(images)).to(images.dtype)


def hsv_to_rgb(images: Tensor) -> Tensor:
    """HSV (each in ``[0, 1]``) to RGB, the inverse of :func:`rgb_to_hsv`."""
    images = _check_images(images)
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 channels (HSV), got shape {tuple(images.shape)}")
    return _hsv_to_rgb(_as_compute(images)).clamp_(0.0, 1.0).to(images.dtype)


def _factor_op(name: str, images: Tensor, factor: Tensor, op_name: str, *, signed: bool) -> Tensor:
    images = _check_images(images, colour=True)
    factor = _check_factors(name, factor, images)
    if not factor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {factor.dtype}")
    x = _as_compute(images)
    f = factor.to(x.device, x.dtype)
    check_finite(**{name: f})
    if signed:
        check_in_range(name, f, -1, 1, context=" (hue shifts; 0.5 is half the circle)")
    elif bool((f < 0).any()):
        raise ValueError(f"{name} must be >= 0 ({op_name} factors), got {float(f.min())}")
    ops = {"brightness": _brightness, "contrast": _contrast, "saturation": _saturation}
    out = _hue(x, f) if op_name == "hue" else ops[op_name](x, f)
    return out.to(images.dtype)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor * images, 0, 1)``, one factor per image (torchvision's definition)."""
    return _factor_op("factor", images, factor, "brightness", signed=False)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with the mean of its grayscale: ``clamp(f x + (1 - f) mean, 0, 1)``.

    The mean is over the whole image's luma (over its one channel for grayscale images),
    as torchvision's ``adjust_contrast``.
    """
    return _factor_op("factor", images, factor, "contrast", signed=False)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its grayscale, pixel by pixel: ``clamp(f x + (1 - f) gray, 0, 1)``.

    The identity on 1-channel images.
    """
    return _factor_op("factor", images, factor, "saturation", signed=False)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate each image's hue by ``shift`` (a fraction of the circle, in ``[-1, 1]``).

    As through HSV (:func:`rgb_to_hsv`, hue plus ``shift`` modulo 1, :func:`hsv_to_rgb`;
    torchvision's ``adjust_hue``), computed directly: saturation and value stay. The
    identity on 1-channel images.
    """
    return _factor_op("shift", images, shift, "hue", signed=True)


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int | None = None) -> Tensor:
    """Blur each image with a Gaussian of its own ``sigma`` (pixels), reflected borders.

    The same as a ``conv2d`` of the reflection-padded images with the normalized 2-D
    kernel ``g gᵀ``, ``g[i] ∝ exp(-i² / (2 sigma²))`` for ``i`` in ``[-r, r]``
    (torchvision's ``gaussian_blur``), computed as two 1-D passes.

    Args:
        images: ``(N, C, H, W)`` pixels in ``[0, 1]``.
        sigma: ``(N,)`` standard deviations, > 0.
        kernel_size: odd, smaller than twice each side; by default SimCLR's, a tenth of
            the shorter side made odd (1 for images under 20 pixels: no blur).
    """
    images = _check_images(images)
    sigma = _check_factors("sigma", sigma, images)
    if not sigma.is_floating_point():
        raise TypeError(f"sigma must be a floating-point tensor, got dtype {sigma.dtype}")
    height, width = images.shape[2], images.shape[3]
    size = _blur_kernel_size(height, width) if kernel_size is None else kernel_size
    size = _check_kernel_size(size, height, width)
    x = _as_compute(images)
    s = sigma.to(x.device, x.dtype)
    check_finite(sigma=s)
    if bool((s <= 0).any()):
        raise ValueError(f"sigma must be > 0, got {float(s.min())}")
    return _blur(x, s, size).to(images.dtype)


def _check_kernel_size(kernel_size: object, height: int, width: int) -> int:
    size = check_int("kernel_size", kernel_size, minimum=1)
    if size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {size}")
    if size // 2 >= min(height, width):
        raise ValueError(
            f"kernel_size must be below twice the images' shorter side ({min(height, width)}) "
            f"for reflected borders, got {size}"
        )
    return size


# --------------------------------------------------------------------------------------
# Random operations
# --------------------------------------------------------------------------------------


class _RandomOp(nn.Module):
    """An operation that draws its parameters per sample from a generator."""

    colour = False
    """Needs 1 or 3 channels."""

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Apply to each image with its own random parameters.

        Args:
            images: ``(N, C, H, W)`` floating-point pixels in ``[0, 1]``.
            generator: the source of every random number; ``None``: torch's global CPU
                generator.

        Returns:
            A new tensor of the images' dtype on their device (in evaluation mode,
            ``images`` itself, or resized by a crop).
        """
        images = _check_images(images, colour=self.colour)
        generator = _check_generator(generator)
        if images.shape[0] == 0:
            return images.clone()
        if not self.training:
            return self._evaluate(images)
        x = _as_compute(images)
        if x is images:
            x = x.clone()
        return self._transform(x, generator).to(images.dtype)

    def _transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Apply to ``x`` (a tensor of the compute dtype that may be written over)."""
        raise NotImplementedError

    def _evaluate(self, images: Tensor) -> Tensor:
        return images


def _where_applied(
    x: Tensor, coin: Tensor, p: float, op: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Apply ``op(subset, indices)`` to the samples whose ``coin < p``, in place."""
    index = _chosen(coin < p, x.device)
    if index.numel() > 0:
        x.index_copy_(0, index, op(x.index_select(0, index), index))
    return x


class RandomResizedCrop(_RandomOp):
    """A random box of each image, resized to ``size`` (torchvision's algorithm, batched).

    Per sample: up to ten boxes are drawn, each of area ``U(scale) × H × W`` and aspect
    ratio (width / height) log-uniform on ``ratio``, rounded to whole pixels; the first
    that fits, at a uniform position, is kept. If none fits, the central box of the
    image clipped to ``ratio``'s nearest bound (the whole image if its ratio is within).
    The box is resized as :func:`resized_crop` (bilinear, no antialiasing). In
    evaluation mode: the central box of the output's aspect ratio, resized (the whole
    image, returned as is, when it has the output's size already).

    Args:
        size: the output's side, or ``(height, width)``.
        scale: the range of the box's area, a fraction of the image's, in ``(0, 1]``.
        ratio: the range of the box's width / height, > 0.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
    ) -> None:
        super().__init__()
        self.size = _check_size("size", size)
        self.scale = _check_range("scale", scale, low=0.0, high=1.0, closed_low=False)
        self.ratio = _check_range("ratio", ratio, low=0.0, high=None, closed_low=False)

    def extra_repr(self) -> str:
        """The settings, for the log."""
        return (
            f"size={self.size}, scale=({self.scale[0]:.4g}, {self.scale[1]:.4g}), "
            f"ratio=({self.ratio[0]:.4g}, {self.ratio[1]:.4g})"
        )

    def boxes(self, n: int, height: int, width: int, generator: torch.Generator | None) -> Tensor:
        """Draw ``n`` boxes ``(top, left, height, width)`` in an ``height × width`` image.

        Returns:
            ``(n, 4)`` int64 on the generator's device (the CPU without one).
        """
        u = _uniform((n, _CROP_TRIES, 4), generator)
        area = height * width
        target = area * _between(u[..., 0], *self.scale)
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(_between(u[..., 1], log_low, log_high))
        w = torch.round(torch.sqrt(target * aspect))
        h = torch.round(torch.sqrt(target / aspect))
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
        h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
        top = torch.floor(u[..., 2].gather(1, first).squeeze(1) * (height - h + 1))
        left = torch.floor(u[..., 3].gather(1, first).squeeze(1) * (width - w + 1))
        # the fallback: the central box, of the nearest ratio in range
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            fw, fh = round(height * self.ratio[1]), height
        else:
            fw, fh = width, height
        fallback = torch.tensor(
            [(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=torch.float64, device=u.device
        )
        drawn = torch.stack((top, left, h, w), dim=1)
        found = fits.any(dim=1, keepdim=True)
        return torch.where(found, drawn, fallback).long()

    def _transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        boxes = self.boxes(x.shape[0], x.shape[2], x.shape[3], generator)
        return _resized_crop(x, boxes.to(x.device), self.size)

    def _evaluate(self, images: Tensor) -> Tensor:
        n, _, height, width = images.shape
        out_h, out_w = self.size
        if (height, width) == (out_h, out_w):
            return images
        if width * out_h > height * out_w:  # wider than the output: full height
            h, w = height, max(1, min(width, round(height * out_w / out_h)))
        else:
            h, w = max(1, min(height, round(width * out_h / out_w))), width
        box = torch.tensor([(height - h) // 2, (width - w) // 2, h, w], device=images.device)
        x = _resized_crop(_as_compute(images), box.expand(n, 4), self.size)
        return x.to(images.dtype)


class RandomHorizontalFlip(_RandomOp):
    """Mirror each image left to right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_fraction("p", p)

    def extra_repr(self) -> str:
        """The settings, for the log."""
        return f"p={self.p:.4g}"

    def _transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        coin = _uniform((x.shape[0],), generator)
        return _where_applied(x, coin, self.p, lambda sub, _: sub.flip(3))


class RandomGrayscale(_RandomOp):
    """Replace each RGB image by its luma on every channel, with probability ``p``.

    ITU-R 601-2 luma ``0.2989 R + 0.587 G + 0.114 B`` (torchvision's ``rgb_to_grayscale``),
    so the image keeps 3 channels. The identity on 1-channel images.
    """

    colour = True

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.p = check_fraction("p", p)

    def extra_repr(self) -> str:
        """The settings, for the log."""
        return f"p={self.p:.4g}"

    def _transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        coin = _uniform((x.shape[0],), generator)
        if x.shape[1] == 1:
            return x
        return _where_applied(x, coin, self.p, lambda sub, _: _gray(sub).expand_as(sub))


class GaussianBlur(_RandomOp):
    """Blur each image with probability ``p``, sigma uniform on ``sigma`` (pixels).

    The kernel is SimCLR's, a tenth of the shorter side made odd (9 at 96 pixels, 23 at
    224; 3 at 28 or 32; 1, no blur, under 20 pixels), unless ``kernel_size`` is given;
    borders are reflected (as torchvision). See :func:`gaussian_blur`.

    Args:
        sigma: the range of the standard deviation, > 0.
        kernel_size: odd, or ``None`` for SimCLR's.
        p: the probability of blurring an image.
    """

    def __init__(
        self,
        sigma: Sequence[float] = (0.1, 2.0),
        kernel_size: int | None = None,
        p: float = 0.5,
    ) -> None:
        super().__init__()
        self.sigma = _check_range("sigma", sigma, low=0.0, high=None, closed_low=False)
        if kernel_size is not None:
            kernel_size = check_int("kernel_size", kernel_size, minimum=1)
            if kernel_size % 2 == 0:
                raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.p = check_fraction("p", p)

    def extra_repr(self) -> str:
        """The settings, for the log."""
        kernel = "a tenth of the side" if self.kernel_size is None else self.kernel_size
        return (
            f"sigma=({self.sigma[0]:.4g}, {self.sigma[1]:.4g}), kernel_size={kernel}, "
            f"p={self.p:.4g}"
        )

    def _transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        u = _uniform((x.shape[0], 2), generator)
        height, width = x.shape[2], x.shape[3]
        if self.kernel_size is None:
            size = _blur_kernel_size(height, width)
        else:
            size = _check_kernel_size(self.kernel_size, height, width)
        sigma = _between(u[:, 1], *self.sigma).to(x.device, x.dtype)
        return _where_applied(x, u[:, 0], self.p, lambda sub, i: _blur(sub, sigma[i], size))


class ColorJitter(_RandomOp):
    """Random brightness, contrast, saturation and hue, with probability ``p`` per image.

    Each factor is drawn per image, uniform on ``[max(0, 1 - b), 1 + b]`` for brightness
    ``b`` (likewise contrast and saturation) and on ``[-hue, hue]`` for the hue shift,
    and applied by torchvision's definitions (:func:`adjust_brightness`,
    :func:`adjust_contrast`, :func:`adjust_saturation`, :func:`adjust_hue`), each
    clamping to ``[0, 1]``. With ``random_order`` (the default, as SimCLR and
    torchvision) each image takes the four in its own random order; otherwise in that
    order. A component of 0 is skipped. On 1-channel images, brightness and contrast
    only. SimCLR's, at strength ``s``: ``ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s, p=0.8)``.

    Args:
        brightness: >= 0.
        contrast: >= 0.
        saturation: >= 0.
        hue: in ``[0, 0.5]`` (a fraction of the hue circle).
        p: the probability of jittering an image.
        random_order: each image's own order of the four.
    """

    colour = True

    def __init__(
        self,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.2,
        p: float = 0.8,
        random_order: bool = True,
    ) -> None:
        super().__init__()
        self.brightness = check_nonnegative("brightness", brightness)
        self.contrast = check_nonnegative("contrast", contrast)
        self.saturation = check_nonnegative("saturation", saturation)
        self.hue = check_nonnegative("hue", hue)
        if self.hue > 0.5:
            raise ValueError(f"hue must lie in [0, 0.5] (a fraction of the circle), got {hue!r}")
        self.p = check_fraction("p", p)
        self.random_order = check_bool("random_order", random_order)

    def extra_repr(self) -> str:
        """The settings, for the log."""
        return (
            f"brightness={self.brightness:.4g}, contrast={self.contrast:.4g}, "
            f"saturation={self.saturation:.4g}, hue={self.hue:.4g}, p={self.p:.4g}, "
            f"random_order={self.random_order}"
        )

    def _transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        n = x.shape[0]
        u = _uniform((n, 9), generator)  # coin, four factors, four order keys
        coin = u[:, 0]
        factors = torch.stack(
            (
                _between(u[:, 1], max(0.0, 1.0 - self.brightness), 1.0 + self.brightness),
                _between(u[:, 2], max(0.0, 1.0 - self.contrast), 1.0 + self.contrast),
                _between(u[:, 3], max(0.0, 1.0 - self.saturation), 1.0 + self.saturation),
                _between(u[:, 4], -self.hue, self.hue),
            ),
            dim=1,
        )
        if self.random_order:
            order = u[:, 5:].argsort(dim=1, stable=True)
        else:
            order = torch.arange(4, device=u.device).expand(n, 4)
        colour = x.shape[1] == 3
        active = [
            self.brightness > 0,
            self.contrast > 0,
            self.saturation > 0 and colour,
            self.hue > 0 and colour,
        ]
        ops = (_brightness, _contrast, _saturation, _hue)
        selected = coin < self.p
        index = _chosen(selected, x.device)
        if index.numel() == 0:
            return x
        sub = x.index_select(0, index)
        sub_factors = factors[selected].to(x.device, x.dtype)
        sub_order = order[selected]
        for step in range(4):
            for which, op in enumerate(ops):
                if not active[which]:
                    continue
                members = _chosen(sub_order[:, step] == which, x.device)
                if members.numel() == 0:
                    continue
                done = op(sub.index_select(0, members), sub_factors[members, which])
                sub.index_copy_(0, members, done)
        return x.index_copy_(0, index, sub)


# --------------------------------------------------------------------------------------
# The composition
# --------------------------------------------------------------------------------------


class Augment(nn.Module):
    """Augmented views of image batches: crop, flip, colour jitter, grayscale, blur.

    Each given operation is applied in SimCLR's order (crop, flip, jitter, grayscale,
    blur), every image with its own random parameters, all drawn from one
    ``generator``; an operation left ``None`` is skipped. In evaluation mode
    (``augment.eval()``) nothing random happens: the crop, if any, becomes the central
    box of its output's aspect ratio resized to its size, and the other operations are
    skipped. ``augment.train()`` turns them back on (a new object is in training mode).

    The presets follow the command line's ``--augment none|crop|light|strong|simclr``:
    :meth:`none` (the identity), :meth:`crop_only` (``crop``: crops of 80 % of the image
    or more, no flips), :meth:`light` (crops of half the image or more, and flips;
    colours untouched), :meth:`strong` (crops of 20 % or more, colour jitter and
    grayscale, no flips) and :meth:`simclr` (Chen et al. 2020, appendix A).

    Args:
        crop: a :class:`RandomResizedCrop`, or ``None`` (the output keeps the input's size).
        flip: a :class:`RandomHorizontalFlip`, or ``None``.
        jitter: a :class:`ColorJitter`, or ``None``.
        grayscale: a :class:`RandomGrayscale`, or ``None``.
        blur: a :class:`GaussianBlur`, or ``None``.

    Example:
        >>> import torch
        >>> augment = Augment.simclr(28, strength=0.5, blur=False)
        >>> augment
        Augment(
          (crop): RandomResizedCrop(size=(28, 28), scale=(0.08, 1), ratio=(0.75, 1.333))
          (flip): RandomHorizontalFlip(p=0.5)
          (jitter): ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8, random_order=True)
          (grayscale): RandomGrayscale(p=0.2)
        )
        >>> images = torch.rand(4, 1, 28, 28)
        >>> views = augment(images, torch.Generator().manual_seed(7))
        >>> views.shape, torch.equal(augment.eval()(images), images)
        (torch.Size([4, 1, 28, 28]), True)
    """  # noqa: E501

    def __init__(
        self,
        crop: RandomResizedCrop | None = None,
        flip: RandomHorizontalFlip | None = None,
        jitter: ColorJitter | None = None,
        grayscale: RandomGrayscale | None = None,
        blur: GaussianBlur | None = None,
    ) -> None:
        super().__init__()
        expected: dict[str, tuple[object, type[_RandomOp]]] = {
            "crop": (crop, RandomResizedCrop),
            "flip": (flip, RandomHorizontalFlip),
            "jitter": (jitter, ColorJitter),
            "grayscale": (grayscale, RandomGrayscale),
            "blur": (blur, GaussianBlur),
        }
        for name, (value, kind) in expected.items():
            if value is not None and not isinstance(value, kind):
                raise TypeError(
                    f"{name} must be a {kind.__name__} or None, got {type(value).__name__}"
                )
        self.crop = crop
        self.flip = flip
        self.jitter = jitter
        self.grayscale = grayscale
        self.blur = blur

    @classmethod
    def simclr(
        cls, size: int | Sequence[int], *, strength: float = 1.0, blur: bool = True
    ) -> Augment:
        """SimCLR's augmentation (Chen et al. 2020, appendix A), output ``size``.

        A random resized crop (scale 0.08 to 1, ratio 3/4 to 4/3), a flip (p 0.5), colour
        jitter of strength ``s`` (brightness, contrast, saturation 0.8 s, hue 0.2 s; p 0.8,
        random order), grayscale (p 0.2) and a Gaussian blur (p 0.5, sigma 0.1 to 2, a
        kernel a tenth of the side). The paper's recipe for CIFAR-10's 32×32 images
        leaves the blur out and uses ``strength=0.5``: ``simclr(32, strength=0.5,
        blur=False)``.

        Args:
            size: the output's side, or ``(height, width)``.
            strength: the colour distortion's strength ``s``, >= 0 (0: no jitter).
            blur: whether to blur.
        """
        s = check_nonnegative("strength", strength)
        if 0.2 * s > 0.5:
            raise ValueError(f"strength must be <= 2.5 (hue 0.2 s <= 0.5), got {strength!r}")
        check_bool("blur", blur)
        return cls(
            crop=RandomResizedCrop(size),
            flip=RandomHorizontalFlip(0.5),
            jitter=ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8) if s > 0 else None,
            grayscale=RandomGrayscale(0.2),
            blur=GaussianBlur() if blur else None,
        )

    @classmethod
    def strong(cls, size: int | Sequence[int]) -> Augment:
        """SimCLR's views of small images, without flips: the default of self-supervision.

        Crops of 20 % of the image or more (ratio 3/4 to 4/3; MoCo v2's and SimSiam's
        setting for CIFAR-10, where SimCLR's 8 % leaves a few pixels of a small image),
        colour jitter of strength 0.5 (brightness, contrast and saturation 0.4, hue 0.1;
        p 0.8, random order) and grayscale (p 0.2), as SimCLR on CIFAR-10 (Chen et al.
        2020, appendix B.9), which leaves the blur out at that size. No flips: a mirrored
        digit, letter or signature is another shape, and the views of an image must
        show the same thing. For photos, whose mirror image is the same kind of
        thing, :meth:`simclr` keeps them.

        Args:
            size: the output's side, or ``(height, width)``.
        """
        return cls(
            crop=RandomResizedCrop(size, scale=(0.2, 1.0)),
            jitter=ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            grayscale=RandomGrayscale(0.2),
        )

    @classmethod
    def crop_only(cls, size: int | Sequence[int]) -> Augment:
        """Crops of 80 % of the image or more (ratio 3/4 to 4/3), resized; nothing else.

        The mildest preset, safe for any kind of image: it moves and rescales what the
        image shows by a few pixels and never mirrors it (a mirrored digit, letter or
        signature is another shape) nor touches its colours. For supervised runs, where
        the labels say what is alike.

        Args:
            size: the output's side, or ``(height, width)``.
        """
        return cls(crop=RandomResizedCrop(size, scale=(0.8, 1.0)))

    @classmethod
    def light(cls, size: int | Sequence[int]) -> Augment:
        """Crops of half the image or more (ratio 3/4 to 4/3) and flips; colours untouched.

        For supervised runs on photos, whose mirror image shows the same kind of thing,
        and for data whose colours carry the class. Not for digits, text or signatures:
        use :meth:`crop_only`.

        Args:
            size: the output's side, or ``(height, width)``.
        """
        return cls(crop=RandomResizedCrop(size, scale=(0.5, 1.0)), flip=RandomHorizontalFlip())

    @classmethod
    def none(cls) -> Augment:
        """The identity: images are returned as given."""
        return cls()

    @property
    def operations(self) -> list[_RandomOp]:
        """The operations applied, in order."""
        ops = (self.crop, self.flip, self.jitter, self.grayscale, self.blur)
        return [op for op in ops if op is not None]

    def extra_repr(self) -> str:
        """``identity`` when no operation is set (the operations list themselves)."""
        return "identity" if not self.operations else ""

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One augmented view of each image.

        Args:
            images: ``(N, C, H, W)`` floating-point pixels in ``[0, 1]``, on any device
                (1 or 3 channels when jitter or grayscale is set).
            generator: the source of every random number (see the module's notes);
                ``None``: torch's global CPU generator.

        Returns:
            ``(N, C, *crop.size)`` (the input's size without a crop), a new tensor of
            the images' dtype on their device; ``images`` itself when nothing applies
            (:meth:`none`, or evaluation mode without a crop or at the crop's size).
        """
        colour = self.jitter is not None or self.grayscale is not None
        images = _check_images(images, colour=colour)
        generator = _check_generator(generator)
        ops = self.operations
        if not ops:
            return images
        if images.shape[0] == 0:
            size = self.crop.size if self.crop is not None else images.shape[2:]
            return images.new_empty((0, images.shape[1], *size))
        if not self.training:
            return self.crop._evaluate(images) if self.crop is not None else images
        x = _as_compute(images)
        if self.crop is None:
            x = x.clone() if x is images else x
        for op in ops:
            x = op._transform(x, generator)
        return x.to(images.dtype)

    def two_views(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Two independently augmented views of each image (the positives of NT-Xent).

        The first view draws from ``generator`` first, then the second: the pair is
        reproducible from the generator's state.
        """
        return self(images, generator), self(images, generator)


def _noise_parameter(name: str, value: object, *, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not (0.0 <= float(value) < high):
        raise ValueError(f"{name} must be in [0, {high:g}), got {value}")
    return float(value)


class FeatureNoise(nn.Module):
    r"""Noisy views of feature vectors: Gaussian noise and dropped features, per row.

    The tabular counterpart of :class:`Augment`, for NT-Xent (SimCLR) on rows without
    labels. With the per-feature centre :math:`\mu_j` and spread :math:`\sigma_j` of
    the training rows (:meth:`from_data`: mean and standard deviation), a row
    :math:`x` becomes

    .. math::
        \tilde x_j = \begin{cases} \mu_j & \text{with probability } p
        \ (\text{dropped}) \\ x_j + s\,\sigma_j\,\varepsilon_j & \text{otherwise}
        \end{cases}, \qquad \varepsilon_j \sim \mathcal N(0, 1),

    every number drawn for each row and feature on its own: in standardized units, noise
    of standard deviation ``noise`` (:math:`s`) and each feature set to 0 with
    probability ``drop`` (:math:`p`). Two views of one row are the positives of NT-Xent;
    the other rows of the batch its negatives. The random numbers come from
    ``generator`` on its device (as :class:`Augment` draws them), and the views are made
    on the rows' device. In evaluation mode the rows pass unchanged.

    Args:
        mean: ``(F,)`` the centre of each feature.
        scale: ``(F,)`` the spread of each feature, positive.
        noise: the standard deviation of the noise in units of ``scale``, in ``[0, 10)``.
        drop: the probability that a feature is dropped to its ``mean``, in ``[0, 1)``.

    Example:
        >>> import torch
        >>> rows = torch.tensor([[0.0, 10.0], [2.0, 30.0], [4.0, 50.0]])
        >>> views = FeatureNoise.from_data(rows, noise=0.0, drop=0.0)
        >>> torch.equal(views(rows), rows)  # neither noise nor drops
        True
        >>> dropped = FeatureNoise.from_data(rows, noise=0.0, drop=0.999)
        >>> dropped(rows, torch.Generator().manual_seed(0))[0].tolist()  # the means
        [2.0, 30.0]

    Reference:
        T. Chen, S. Kornblith, M. Norouzi, G. Hinton. *A Simple Framework for
        Contrastive Learning of Visual Representations.* ICML 2020; T. Yao et al.
        *Self-supervised Learning for Large-scale Item Recommendations* (feature
        masking), CIKM 2021.
    """

    mean: Tensor
    scale: Tensor

    def __init__(self, mean: Tensor, scale: Tensor, *, noise: float = 0.3, drop: float = 0.2):
        super().__init__()
        for name, value in (("mean", mean), ("scale", scale)):
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise TypeError(
                    f"{name} must be a floating-point torch.Tensor, got "
                    + (
                        f"dtype {value.dtype}"
                        if isinstance(value, Tensor)
                        else type(value).__name__
                    )
                )
            if value.dim() != 1 or value.numel() == 0:
                raise ValueError(f"{name} must be (F,) with F >= 1, got shape {tuple(value.shape)}")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} must be finite")
        if mean.shape != scale.shape:
            raise ValueError(
                f"mean and scale must have one entry per feature, got shapes "
                f"{tuple(mean.shape)} and {tuple(scale.shape)}"
            )
        if not bool((scale > 0).all()):
            raise ValueError(f"scale must be positive, got minimum {float(scale.min())}")
        self.noise = _noise_parameter("noise", noise, high=10.0)
        self.drop = _noise_parameter("drop", drop, high=1.0)
        self.register_buffer("mean", mean.detach().clone(), persistent=False)
        self.register_buffer("scale", scale.detach().clone(), persistent=False)

    @classmethod
    def from_data(cls, rows: Tensor, *, noise: float = 0.3, drop: float = 0.2) -> FeatureNoise:
        """Noise at the scale of ``rows`` (``(N, F)``, the training rows): mean and std.

        A feature constant in ``rows`` (standard deviation 0) gets spread 1.
        """
        if not isinstance(rows, Tensor) or not rows.is_floating_point() or rows.dim() != 2:
            raise TypeError("rows must be an (N, F) floating-point torch.Tensor")
        if rows.shape[0] == 0:
            raise ValueError("rows must hold at least one row")
        x = rows.double()
        std = x.std(dim=0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(x.mean(dim=0).float(), std.float(), noise=noise, drop=drop)

    def extra_repr(self) -> str:
        """The settings, for the log."""
        return f"features={self.mean.numel()}, noise={self.noise:g}, drop={self.drop:g}"

    def forward(self, rows: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One noisy view of each row.

        Args:
            rows: ``(N, F)`` floating-point feature vectors, on any device.
            generator: the source of every random number; ``None``: torch's global CPU
                generator.

        Returns:
            ``(N, F)``, a new tensor of the rows' dtype on their device (``rows`` itself
            in evaluation mode).
        """
        if not isinstance(rows, Tensor) or not rows.is_floating_point():
            raise TypeError(
                "rows must be a floating-point torch.Tensor, got "
                + (f"dtype {rows.dtype}" if isinstance(rows, Tensor) else type(rows).__name__)
            )
        if rows.dim() != 2 or rows.shape[1] != self.mean.numel():
            raise ValueError(
                f"rows must be (N, {self.mean.numel()}), got shape {tuple(rows.shape)}"
            )
        generator = _check_generator(generator)
        if not self.training:
            return rows
        device = generator.device if generator is not None else torch.device("cpu")
        eps = torch.randn(rows.shape, generator=generator, device=device, dtype=torch.float32)
        dropped = _uniform(tuple(rows.shape), generator) < self.drop
        mean, scale = self.mean.to(rows.device), self.scale.to(rows.device)
        x = rows.float() + self.noise * scale * eps.to(rows.device)
        x = torch.where(dropped.to(rows.device), mean.expand_as(x), x)
        return x.to(rows.dtype)

    def two_views(
        self, rows: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Two independently noisy views of each row (the positives of NT-Xent)."""
        return self(rows, generator), self(rows, generator)
