"""Augmented views: each operation against an independent reference, and the composition's
randomness (per sample, from the generator only, bit-identical on replay)."""

from __future__ import annotations

import ast
import colorsys
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import contrastkit
from contrastkit.data import (
    Augment,
    ColorJitter,
    GaussianBlur,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
)
from contrastkit.data import augment as augment_module
from contrastkit.data.augment import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    hsv_to_rgb,
    resized_crop,
    rgb_to_grayscale,
    rgb_to_hsv,
)


def images(n=4, c=3, h=12, w=12, seed=0, dtype=torch.float32):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- flip -----------------------------------------------------------------------------


def test_flip_is_exact_and_per_sample():
    x = images(n=64)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x, gen()), x.flip(3))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x, gen()), x)
    out = RandomHorizontalFlip(p=0.5)(x, gen())
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48


# --- grayscale ------------------------------------------------------------------------


def test_grayscale_uses_itu_601_weights_exactly():
    pixels = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.2, 0.4, 0.6), (1.0, 1.0, 1.0)]
    x = torch.tensor(pixels).T.reshape(1, 3, 1, 5)
    expected = [0.2989 * r + 0.587 * g + 0.114 * b for r, g, b in pixels]
    got = rgb_to_grayscale(x).flatten().tolist()
    assert got == pytest.approx(expected, abs=1e-7)
    assert got[0] == pytest.approx(0.2989, abs=1e-7)
    out = RandomGrayscale(p=1.0)(x, gen())
    assert out.shape == x.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert torch.allclose(out[:, :1], rgb_to_grayscale(x))


def test_grayscale_is_the_identity_on_one_channel_and_per_sample_on_rgb():
    x = images(n=1, c=1)
    assert torch.equal(RandomGrayscale(p=1.0)(x, gen()), x)
    x = images(n=100)
    out = RandomGrayscale(p=0.2)(x, gen(3))
    gray = [torch.equal(out[i, 0], out[i, 1]) for i in range(100)]
    assert all(g or torch.equal(out[i], x[i]) for i, g in enumerate(gray))
    assert 5 <= sum(gray) <= 40


# --- crop -----------------------------------------------------------------------------


def test_crop_of_the_whole_image_at_scale_1_and_ratio_1_is_the_identity():
    x = images(n=3, h=16, w=16)
    crop = RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(crop.boxes(3, 16, 16, gen()), torch.tensor([[0, 0, 16, 16]] * 3))
    assert torch.allclose(crop(x, gen()), x, atol=1e-6)


@pytest.mark.parametrize(
    ("box", "size"),
    [
        ((2, 3, 5, 7), (9, 11)),
        ((0, 0, 12, 10), (4, 6)),
        ((5, 1, 7, 4), (7, 4)),
        ((11, 9, 1, 1), (3, 2)),
    ],
)
def test_a_known_box_matches_slicing_and_bilinear_interpolation(box, size):
    x = images(n=2, h=12, w=10, seed=4)
    top, left, h, w = box
    expected = F.interpolate(
        x[:, :, top : top + h, left : left + w], size=size, mode="bilinear", align_corners=False
    )
    got = resized_crop(x, torch.tensor([box, box]), size)
    assert got.shape == (2, 3, *size)
    assert torch.allclose(got, expected, atol=1e-6)


def reference_boxes(u, height, width, scale, ratio):
    """torchvision's RandomResizedCrop.get_params, one sample at a time, on given uniforms."""
    boxes = []
    for tries in u.tolist():
        for a, r, t, left in tries:
            target = height * width * (scale[0] + (scale[1] - scale[0]) * a)
            lo, hi = math.log(ratio[0]), math.log(ratio[1])
            aspect = math.exp(lo + (hi - lo) * r)
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                boxes.append(
                    [math.floor(t * (height - h + 1)), math.floor(left * (width - w + 1)), h, w]
                )
                break
        else:
            in_ratio = width / height
            if in_ratio < ratio[0]:
                w, h = width, round(width / ratio[0])
            elif in_ratio > ratio[1]:
                h, w = height, round(height * ratio[1])
            else:
                w, h = width, height
            boxes.append([(height - h) // 2, (width - w) // 2, h, w])
    return torch.tensor(boxes)


@pytest.mark.parametrize(
    ("height", "width", "scale", "ratio"),
    [
        (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),
        (20, 50, (0.5, 1.0), (0.5, 2.0)),
        (9, 30, (0.2, 1.0), (1.0, 1.0)),  # the larger half never fits: fallbacks
    ],
)
def test_boxes_follow_torchvisions_algorithm_with_its_fallback(height, width, scale, ratio):
    crop = RandomResizedCrop(8, scale=scale, ratio=ratio)
    u = torch.rand((200, 10, 4), generator=gen(5)).double()  # what boxes() draws, in order
    expected = reference_boxes(u, height, width, scale, ratio)
    got = crop.boxes(200, height, width, gen(5))
    assert torch.equal(got, expected)
    top, left, h, w = got.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width)).all())
    assert len({tuple(b) for b in got.tolist()}) > 20  # per sample


def test_the_fallback_is_the_central_box_of_the_nearest_ratio():
    # a 10x40 image cannot hold any box of ratio <= 1 and area >= 90%: every sample falls back
    crop = RandomResizedCrop(8, scale=(0.9, 1.0), ratio=(0.5, 1.0))
    assert torch.equal(crop.boxes(5, 10, 40, gen()), torch.tensor([[0, 15, 10, 10]] * 5))


def test_the_random_crop_resizes_the_boxes_it_draws():
    x = images(n=6, h=20, w=14)
    crop = RandomResizedCrop((10, 8))
    boxes = crop.boxes(6, 20, 14, gen(2))
    assert torch.allclose(crop(x, gen(2)), resized_crop(x, boxes, (10, 8)), atol=0)


def test_evaluation_mode_takes_the_central_box_of_the_outputs_ratio():
    x = images(n=2, h=12, w=20)
    crop = RandomResizedCrop(6).eval()
    expected = F.interpolate(x[:, :, :, 4:16], size=(6, 6), mode="bilinear", align_corners=False)
    assert torch.allclose(crop(x), expected, atol=1e-6)
    same = images(n=2, h=6, w=6)
    assert crop(same) is same


# --- blur -----------------------------------------------------------------------------


def test_blur_matches_a_conv2d_with_the_explicit_gaussian_kernel():
    x = images(n=3, c=2, h=15, w=13)
    sigma = torch.tensor([0.3, 1.0, 2.5])
    got = gaussian_blur(x, sigma, kernel_size=5)
    for i, s in enumerate(sigma.tolist()):
        g = torch.tensor([math.exp(-(k**2) / (2 * s**2)) for k in range(-2, 3)])
        kernel2d = torch.outer(g, g) / torch.outer(g, g).sum()
        weight = kernel2d.expand(2, 1, 5, 5)
        padded = F.pad(x[i : i + 1], (2, 2, 2, 2), mode="reflect")
        expected = F.conv2d(padded, weight, groups=2)
        assert torch.allclose(got[i : i + 1], expected, atol=1e-6)


def test_blur_kernel_is_simclrs_tenth_of_the_side():
    x = images(n=1, h=96, w=100)
    sigma = torch.tensor([1.5])
    assert torch.allclose(gaussian_blur(x, sigma), gaussian_blur(x, sigma, kernel_size=9))
    small = images(n=1, h=19, w=19)
    assert torch.equal(gaussian_blur(small, sigma), small)  # kernel 1: nothing to blur
    out = GaussianBlur(p=1.0)(x, gen())
    assert not torch.allclose(out, x, atol=1e-3)


def test_blur_sigma_is_drawn_per_sample():
    x = images(n=1, h=40, w=40).expand(32, 3, 40, 40)
    out = GaussianBlur(p=1.0)(x, gen())
    change = [float((out[i] - x[i]).abs().mean()) for i in range(32)]
    assert len(set(change)) == 32
    assert min(change) < 1e-6 < 0.1 < max(change)  # sigma 0.1 hardly blurs, 2 does


# --- colour ---------------------------------------------------------------------------


def gray_reference(x):
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def test_brightness_contrast_saturation_follow_torchvisions_definitions():
    x = images(n=3, h=5, w=4)
    f = torch.tensor([0.3, 1.0, 1.7])
    fv = f.view(3, 1, 1, 1)
    assert torch.allclose(adjust_brightness(x, f), (fv * x).clamp(0, 1), atol=1e-7)
    mean = gray_reference(x).mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(adjust_contrast(x, f), (fv * x + (1 - fv) * mean).clamp(0, 1), atol=1e-6)
    gray = gray_reference(x)
    assert torch.allclose(
        adjust_saturation(x, f), (fv * x + (1 - fv) * gray).clamp(0, 1), atol=1e-6
    )
    # saturation 0 is the grayscale; contrast 0 is the mean grey
    zero = torch.zeros(3)
    assert torch.allclose(adjust_saturation(x, zero), gray.expand_as(x), atol=1e-6)
    assert torch.allclose(adjust_contrast(x, zero), mean.expand_as(x), atol=1e-6)


def test_contrast_on_one_channel_uses_that_channel_and_saturation_hue_leave_it():
    x = images(n=2, c=1)
    f = torch.tensor([0.5, 2.0]).view(2, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(adjust_contrast(x, f.flatten()), (f * x + (1 - f) * mean).clamp(0, 1))
    assert torch.equal(adjust_saturation(x, f.flatten()), x)
    assert torch.equal(adjust_hue(x, torch.tensor([0.2, -0.3])), x)


def test_rgb_hsv_match_colorsys_and_round_trip():
    x = images(n=2, h=6, w=6, dtype=torch.float64)
    x[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # no colour
    x[0, :, 0, 1] = torch.tensor([0.0, 0.0, 0.0])
    x[0, :, 0, 2] = torch.tensor([1.0, 0.0, 1.0])  # magenta: a tie of maxima
    hsv = rgb_to_hsv(x)
    for n in range(2):
        for i in range(6):
            for j in range(6):
                expected = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                assert hsv[n, :, i, j].tolist() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-12)
    x32 = x.float()
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x32)), x32, atol=1e-6)


def test_hue_shift_matches_colorsys():
    x = images(n=3, h=4, w=5, dtype=torch.float64)
    shift = torch.tensor([0.1, -0.45, 0.0], dtype=torch.float64)
    got = adjust_hue(x, shift)
    for n, s in enumerate(shift.tolist()):
        for i in range(4):
            for j in range(5):
                h, sat, v = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                expected = colorsys.hsv_to_rgb((h + s) % 1.0, sat, v)
                assert got[n, :, i, j].tolist() == pytest.approx(expected, abs=1e-12)


def test_jitter_brightness_alone_draws_one_factor_per_sample_in_range():
    x = images(n=40, h=6, w=6) * 0.5 + 0.1  # nothing clips at factors within [0.5, 1.5]
    out = ColorJitter(brightness=0.5, contrast=0, saturation=0, hue=0, p=1.0)(x, gen())
    ratio = out / x
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-5)
    factors = per_sample[:, 0]
    assert bool(((factors >= 0.5 - 1e-6) & (factors <= 1.5 + 1e-6)).all())
    assert len(set(factors.tolist())) == 40


def test_jitter_in_random_order_matches_a_loop_over_samples():
    x = images(n=30, h=5, w=5)
    jitter = ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8)
    u = torch.rand((30, 9), generator=gen(11)).double()  # what the jitter draws, in order
    expected = x.clone()
    ranges = [(0.2, 1.8), (0.2, 1.8), (0.2, 1.8), (-0.2, 0.2)]
    ops = [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
    orders = set()
    for i in range(30):
        if u[i, 0] >= 0.8:
            continue
        order = sorted(range(4), key=lambda k: float(u[i, 5 + k]))
        orders.add(tuple(order))
        sample = x[i : i + 1]
        for k in order:
            lo, hi = ranges[k]
            sample = ops[k](sample, (lo + (hi - lo) * u[i, 1 + k]).float().view(1))
        expected[i : i + 1] = sample
    got = jitter(x, gen(11))
    assert torch.allclose(got, expected, atol=1e-6)
    assert len(orders) > 5  # the orders differ between samples
    fixed = ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8, random_order=False)(x, gen(11))
    assert not torch.allclose(fixed, got, atol=1e-4)


# --- the composition ------------------------------------------------------------------


def test_same_seed_same_bits_other_seed_other_views():
    x = images(n=8, h=32, w=32)
    augment = Augment.simclr(32)
    a = augment(x, gen(1))
    assert torch.equal(a, augment(x, gen(1)))
    assert not torch.allclose(a, augment(x, gen(2)))
    first, second = augment.two_views(x, gen(1))
    assert torch.equal(first, a) and not torch.allclose(first, second)


def test_a_resumed_run_replays_bit_for_bit():
    x = images(n=4, h=32, w=32)
    augment = Augment.simclr(24)

    def step(seed, epoch, batch):
        return augment.two_views(x, gen(seed * 1_000_003 + epoch * 1_000 + batch))

    run = [step(0, 1, b) for b in range(3)]
    resumed = step(0, 1, 2)  # a fresh process, straight at step 2
    assert torch.equal(run[2][0], resumed[0]) and torch.equal(run[2][1], resumed[1])


def test_without_a_generator_torchs_global_one_is_used():
    x = images(n=4, h=32, w=32)
    augment = Augment.simclr(16)
    torch.manual_seed(5)
    a = augment(x)
    torch.manual_seed(5)
    assert torch.equal(a, augment(x))


def test_the_draws_do_not_depend_on_the_probabilities():
    x = images(n=16, h=32, w=32)
    ends = []
    for p in (0.0, 0.5, 1.0):
        g = gen(9)
        Augment(
            RandomResizedCrop(20),
            RandomHorizontalFlip(p),
            ColorJitter(p=p),
            RandomGrayscale(p),
            GaussianBlur(p=p),
        )(x, g)
        ends.append(torch.rand(4, generator=g))
    assert torch.equal(ends[0], ends[1]) and torch.equal(ends[1], ends[2])


def test_each_sample_gets_its_own_view():
    x = images(n=1, h=32, w=32).expand(16, 3, 32, 32)
    out = Augment.simclr(32)(x, gen())
    distinct = {tuple(out[i].flatten()[:50].tolist()) for i in range(16)}
    assert len(distinct) == 16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_range_dtype_and_device_are_kept(dtype):
    x = images(n=5, h=20, w=20, dtype=dtype)
    out = Augment.simclr(16)(x, gen())
    assert out.dtype == dtype and out.device == x.device and out.shape == (5, 3, 16, 16)
    assert bool((out >= 0).all() and (out <= 1).all())
    assert not x.requires_grad and not out.requires_grad


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    channels=st.sampled_from([1, 3]),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    size=st.integers(1, 24),
    seed=st.integers(0, 2**31),
    extreme=st.booleans(),
)
def test_views_stay_in_the_unit_interval(n, channels, height, width, size, seed, extreme):
    x = images(n, channels, height, width, seed=seed)
    if extreme:  # saturated pixels: the clamps must hold
        x = (x > 0.5).float()
    out = Augment.simclr(size, strength=2.5)(x, gen(seed))
    assert out.shape == (n, channels, size, size)
    assert bool(torch.isfinite(out).all() and (out >= 0).all() and (out <= 1).all())


def test_presets_evaluation_mode_and_repr():
    x = images(n=3, h=10, w=10)
    none = Augment.none()
    assert none(x, gen()) is x and "identity" in repr(none)
    light = Augment.light(8)
    assert [type(op).__name__ for op in light.operations] == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
    ]
    assert light.crop is not None and light.crop.scale == (0.5, 1.0)
    crop = Augment.crop_only(8)  # the default of supervised runs: never a mirror image
    assert [type(op).__name__ for op in crop.operations] == ["RandomResizedCrop"]
    assert crop.crop is not None and crop.crop.scale == (0.8, 1.0)
    strong = Augment.strong(8)  # the default of NT-Xent: SimCLR's CIFAR views, no flips
    assert [type(op).__name__ for op in strong.operations] == [
        "RandomResizedCrop",
        "ColorJitter",
        "RandomGrayscale",
    ]
    for part in ("scale=(0.2, 1)", "brightness=0.4", "saturation=0.4", "hue=0.1", "p=0.8"):
        assert part in repr(strong)
    assert strong.two_views(x, gen())[0].shape == (3, 3, 8, 8)
    simclr = Augment.simclr(8)
    text = repr(simclr)
    for part in ("scale=(0.08, 1)", "brightness=0.8", "hue=0.2", "p=0.8", "RandomGrayscale(p=0.2)"):
        assert part in text
    assert "blur" not in repr(Augment.simclr(8, blur=False))
    assert "jitter" not in repr(Augment.simclr(8, strength=0))
    simclr.eval()
    expected = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(simclr(x, gen()), expected, atol=1e-6)
    assert torch.equal(simclr.two_views(x)[0], simclr.two_views(x)[1])
    simclr.train()
    assert not torch.allclose(simclr(x, gen()), expected)
    moved = Augment.simclr(8).to("cpu")  # a Module: .to() and state_dict work
    assert moved.state_dict() == {} and moved(x, gen()).shape == (3, 3, 8, 8)


def test_an_empty_batch_gives_an_empty_batch():
    x = torch.zeros(0, 3, 10, 10)
    assert Augment.simclr(6)(x, gen()).shape == (0, 3, 6, 6)
    assert RandomHorizontalFlip()(x, gen()).shape == (0, 3, 10, 10)


def test_validation_off_skips_the_range_check_only():
    x = images(n=2, h=8, w=8) * 3
    with contrastkit.validation(False):
        assert Augment.light(8)(x, gen()).shape == (2, 3, 8, 8)
        with pytest.raises(ValueError, match="images must be 4-D"):
            Augment.light(8)(x[0], gen())


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: RandomResizedCrop(0), ValueError, "size must be >= 1"),
        (lambda: RandomResizedCrop((4, 4, 4)), ValueError, "size must be an int or a pair"),
        (lambda: RandomResizedCrop(4.0), TypeError, "size must be an integer"),
        (lambda: RandomResizedCrop(4, scale=(0.5, 0.2)), ValueError, "scale must satisfy"),
        (lambda: RandomResizedCrop(4, scale=(0.0, 1.0)), ValueError, "scale must satisfy"),
        (lambda: RandomResizedCrop(4, scale=(0.5, 1.5)), ValueError, "scale must satisfy"),
        (lambda: RandomResizedCrop(4, ratio=(0, 1)), ValueError, "ratio must satisfy"),
        (lambda: RandomResizedCrop(4, ratio=0.5), TypeError, "ratio must be a pair"),
        (lambda: RandomHorizontalFlip(1.5), ValueError, "p must lie in"),
        (lambda: RandomGrayscale(True), TypeError, "p must be a real number"),
        (lambda: ColorJitter(brightness=-0.1), ValueError, "brightness must be >= 0"),
        (lambda: ColorJitter(hue=0.6), ValueError, "hue must lie in"),
        (lambda: ColorJitter(random_order=1), TypeError, "random_order must be a bool"),
        (lambda: GaussianBlur(sigma=(-1, 1)), ValueError, "sigma must satisfy"),
        (lambda: GaussianBlur(kernel_size=4), ValueError, "kernel_size must be odd"),
        (
            lambda: Augment(crop=RandomHorizontalFlip()),
            TypeError,
            "crop must be a RandomResizedCrop",
        ),
        (lambda: Augment.simclr(8, strength=-1), ValueError, "strength must be >= 0"),
        (lambda: Augment.simclr(8, strength=3), ValueError, "strength must be <= 2.5"),
        (lambda: Augment.simclr(8, blur="yes"), TypeError, "blur must be a bool"),
    ],
)
def test_bad_settings_are_refused_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda a: a(torch.rand(3, 8, 8), gen()), ValueError, "images must be 4-D"),
        (
            lambda a: a(torch.ones(1, 3, 8, 8, dtype=torch.uint8), gen()),
            TypeError,
            "floating-point",
        ),
        (lambda a: a([[0.0]], gen()), TypeError, "images must be a torch.Tensor"),
        (
            lambda a: a(torch.full((1, 3, 8, 8), 2.0), gen()),
            ValueError,
            r"images must lie in \[0, 1\]",
        ),
        (
            lambda a: a(torch.full((1, 3, 8, 8), math.nan), gen()),
            ValueError,
            "images must be finite",
        ),
        (
            lambda a: a(torch.rand(1, 4, 8, 8), gen()),
            ValueError,
            "1 .grayscale. or 3 .RGB. channels",
        ),
        (lambda a: a(torch.rand(1, 0, 8, 8), gen()), ValueError, "at least one channel"),
        (lambda a: a(torch.rand(1, 3, 8, 8), 0), TypeError, "generator must be a torch.Generator"),
    ],
)
def test_bad_calls_are_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call(Augment.simclr(8))


def test_bad_parameters_of_the_functions_are_refused_by_name():
    x = images(n=2, h=8, w=8)
    with pytest.raises(ValueError, match=r"boxes must lie inside the 8x8 images.*\[4, 4, 5, 4\]"):
        resized_crop(x, torch.tensor([[0, 0, 8, 8], [4, 4, 5, 4]]), 4)
    with pytest.raises(ValueError, match=r"boxes must have shape \(2, 4\)"):
        resized_crop(x, torch.zeros(2, 3, dtype=torch.long), 4)
    with pytest.raises(TypeError, match="boxes must be an integer tensor"):
        resized_crop(x, torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match=r"factor must have shape \(2,\)"):
        adjust_brightness(x, torch.ones(3))
    with pytest.raises(ValueError, match="factor must be >= 0"):
        adjust_contrast(x, torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"shift must lie in \[-1, 1\]"):
        adjust_hue(x, torch.tensor([0.0, 1.5]))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_blur(x, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="kernel_size must be below twice"):
        gaussian_blur(x, torch.ones(2), kernel_size=17)
    with pytest.raises(ValueError, match="kernel_size must be below twice"):
        GaussianBlur(kernel_size=17, p=1.0)(x, gen())
    with pytest.raises(ValueError, match="images must have 3 channels"):
        rgb_to_hsv(images(c=1))


def test_the_module_imports_only_torch_and_the_core():
    tree = ast.parse(Path(augment_module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    outside = {
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "torch"
    }
    assert outside == {"contrastkit._validation"}


# --- CUDA (run where a device is present) ---------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_on_cuda_a_cpu_generator_draws_the_same_views_as_on_the_cpu():
    x = images(n=16, h=40, w=40)
    augment = Augment.simclr(32)
    on_cpu = augment(x, gen(3))
    on_gpu = augment(x.cuda(), gen(3))
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == x.dtype
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)
    assert torch.equal(on_gpu, augment(x.cuda(), gen(3)))


@cuda
def test_on_cuda_the_views_are_deterministic_with_a_cuda_generator_too():
    x = images(n=16, h=40, w=40).cuda()
    augment = Augment.simclr(32)
    torch.use_deterministic_algorithms(True)
    try:
        first = augment.two_views(x, torch.Generator("cuda").manual_seed(4))
        again = augment.two_views(x, torch.Generator("cuda").manual_seed(4))
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert bool((first[0] >= 0).all() and (first[0] <= 1).all())
