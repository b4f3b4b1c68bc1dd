"""Pairs split by image: no validation or test image in a training pair, counts right."""

from __future__ import annotations

import pytest
import torch

from contrastkit.data.readers import split_pairs_by_image


def images_of(left, right, index):
    return set(left[index].tolist()) | set(right[index].tolist())


def random_pairs(n_pairs, n_images, seed):
    g = torch.Generator().manual_seed(seed)
    left = torch.randint(0, n_images, (n_pairs,), generator=g)
    right = torch.randint(0, n_images, (n_pairs,), generator=g)
    same = torch.randint(0, 2, (n_pairs,), generator=g)
    return left, right, same


@pytest.mark.parametrize(
    ("n_pairs", "n_images"),
    [(300, 60), (300, 600), (40, 12), (500, 1000)],
    ids=["one-giant-component", "small-components", "tiny-dense", "sparse"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_image_is_in_two_splits_and_the_counts_add_up(n_pairs, n_images, seed):
    left, right, same = random_pairs(n_pairs, n_images, seed)
    train, val, test = split_pairs_by_image(left, right, fractions=(0.2, 0.2), seed=seed, same=same)
    sets = [images_of(left, right, part) for part in (train, val, test)]
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    kept = torch.cat([train, val, test])
    assert kept.unique().numel() == kept.numel()  # each pair in one split at most
    for part in (train, val, test):
        assert torch.equal(part, part.sort().values)
    split_of = {}
    for k, images in enumerate(sets):
        split_of.update(dict.fromkeys(images, k))
    # a pair is kept, in its split, exactly when both its images lie in that split: the
    # dropped pairs are those across two splits (or touching an image of no split)
    for k, part in enumerate((train, val, test)):
        inside = [
            i
            for i in range(n_pairs)
            if split_of.get(int(left[i])) == k == split_of.get(int(right[i]))
        ]
        assert sorted(part.tolist()) == inside
    # every split holds a matching and a non-matching pair
    for part in (train, val, test):
        assert set(same[part].tolist()) == {0, 1}


def test_disjoint_pairs_are_all_kept_in_about_the_asked_shares():
    left = torch.arange(0, 200, 2)
    train, val, test = split_pairs_by_image(left, left + 1, fractions=(0.2, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (70, 20, 10)


def test_small_components_stay_whole():
    # 50 components of 3 images and 3 pairs each (a triangle): nothing crosses a cut
    # except the components the cuts fall in, at most two
    left = torch.tensor([c * 3 + i for c in range(50) for i in (0, 1, 2)])
    right = torch.tensor([c * 3 + (i + 1) % 3 for c in range(50) for i in (0, 1, 2)])
    train, val, test = split_pairs_by_image(left, right, fractions=(0.2, 0.2), seed=0)
    assert len(train) + len(val) + len(test) >= 150 - 2 * 3


def test_a_giant_component_keeps_the_asked_shares_of_the_kept_pairs():
    left, right, _ = random_pairs(4000, 200, 5)  # one component: the images are cut
    train, val, test = split_pairs_by_image(left, right, fractions=(0.2, 0.2), seed=0)
    kept = len(train) + len(val) + len(test)
    assert 0.3 * 4000 < kept < 0.45 * 4000  # sqrt shares: about 36% of pairs kept
    assert abs(len(val) / kept - 0.2) < 0.05 and abs(len(test) / kept - 0.2) < 0.05


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    left, right, same = random_pairs(300, 100, 0)
    first = split_pairs_by_image(left, right, seed=4, same=same)
    again = split_pairs_by_image(left, right, seed=4, same=same)
    other = split_pairs_by_image(left, right, seed=5, same=same)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fractions": (0.5, 0.5)}, ValueError, r"fractions must be two positive numbers"),
        ({"fractions": (0.0, 0.2)}, ValueError, r"fractions must be two positive numbers"),
        ({"draws": 0}, ValueError, r"draws must be at least 1, got 0"),
        ({"left": torch.zeros(3)}, TypeError, r"left must be integer image ids, got dtype"),
        ({"right": [0, 1, 2]}, TypeError, r"right must be a tensor of image ids, got list"),
        ({"right": torch.zeros(2, dtype=torch.long)}, ValueError, r"shapes \(3,\) and \(2,\)"),
        ({"same": torch.zeros(2)}, ValueError, r"same must have shape \(3,\), got \(2,\)"),
    ],
)
def test_bad_input_is_refused(kwargs, error, match):
    args = {"left": torch.tensor([0, 1, 2]), "right": torch.tensor([3, 4, 5]), **kwargs}
    with pytest.raises(error, match=match):
        split_pairs_by_image(args.pop("left"), args.pop("right"), **args)
