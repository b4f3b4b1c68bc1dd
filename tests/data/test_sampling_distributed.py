"""The batch samplers split each global batch between processes, without padding or repeats.

The splits are checked with explicit ``world_size`` and ``rank`` (no process group
needed); the defaults are checked in the session's gloo group.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import distributed
from contrastkit.data import (
    ClassBalancedBatchSampler,
    PairDataset,
    RandomBatchSampler,
    TripletDataset,
)
from contrastkit.data.sampling import part_bounds
from process_group import ProcessGroups


def labelled(num_classes: int = 6, per_class: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    inputs = torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(0))
    return inputs, labels


def parts(make, world: int, epoch: int = 0) -> list[list[list[int]]]:
    """Every rank's batches: ``parts[rank][batch]``."""
    out = []
    for rank in range(world):
        sampler = make(world, rank)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def joined(rank_batches: list[list[list[int]]]) -> list[list[int]]:
    """The ranks' parts of each batch, concatenated in rank order."""
    assert len({len(b) for b in rank_batches}) == 1  # every rank has as many batches
    return [list(itertools.chain(*batch_parts)) for batch_parts in zip(*rank_batches, strict=True)]


# --- the parts ----------------------------------------------------------------------


@pytest.mark.parametrize(("count", "world"), [(7, 3), (8, 2), (2, 2), (5, 5), (10, 4)])
def test_part_bounds_cover_the_units_in_rank_order_and_differ_by_at_most_one(count, world):
    bounds = [part_bounds(count, world, r) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(
    ("samples", "batch_size", "batches_per_epoch"),
    [(31, 7, None), (30, 8, None), (20, 6, 9), (12, 12, 3)],  # uneven last batch, passes
)
def test_random_batches_concatenate_to_the_one_process_batches(
    world, samples, batch_size, batches_per_epoch
):
    def make(w, r):
        return RandomBatchSampler(
            samples, batch_size=batch_size, batches_per_epoch=batches_per_epoch, seed=5,
            world_size=w, rank=r,
        )  # fmt: skip

    for epoch in (0, 3):
        alone = parts(make, 1, epoch)[0]
        split = parts(make, world, epoch)
        assert joined(split) == alone
        assert len(make(world, 0)) == len(alone)
        for rank_batches in split:  # contiguous parts, sizes within one of each other
            for b, batch in enumerate(rank_batches):
                sizes = [len(split[r][b]) for r in range(world)]
                assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(alone[b])
                assert len(batch) >= 1


@pytest.mark.parametrize("batches_per_epoch", [None, 17])
def test_random_batches_never_repeat_or_pad(batches_per_epoch):
    # 17 batches of 6 from 20 samples: 102 rows, 5 passes and a part, batches across passes
    sampler = RandomBatchSampler(
        20, batch_size=6, batches_per_epoch=batches_per_epoch, seed=1, world_size=1, rank=0
    )
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        for batch in batches:
            assert len(set(batch)) == len(batch)  # no sample twice in a batch
        used = Counter(i for batch in batches for i in batch)
        if batches_per_epoch is None:  # one pass: each sample exactly once, no padding
            assert sorted(used) == list(range(20)) and set(used.values()) == {1}
            assert [len(b) for b in batches] == [6, 6, 6, 2]
        else:  # each sample once per pass: counts differ by at most one
            assert sum(used.values()) == 17 * 6
            assert max(used.values()) - min(used.values()) <= 1


def test_a_last_batch_smaller_than_the_processes_is_dropped_not_padded():
    # 13 = 2 × 6 + 1: the last batch has 1 row; 3 processes cannot each take one
    split = parts(lambda w, r: RandomBatchSampler(13, batch_size=6, world_size=w, rank=r), 3)
    assert [len(b) for b in split[0]] == [2, 2]
    alone = parts(lambda w, r: RandomBatchSampler(13, batch_size=6, world_size=w, rank=r), 1)
    assert joined(split) == alone[0][:2] and len(alone[0][2]) == 1
    sampler = RandomBatchSampler(13, batch_size=6, world_size=3, rank=2)
    assert len(sampler) == 2


def test_drop_last_and_order_without_shuffle():
    kept = RandomBatchSampler(10, batch_size=4, shuffle=False, world_size=2, rank=1)
    assert list(kept) == [[2, 3], [6, 7], [9]]
    dropped = RandomBatchSampler(
        10, batch_size=4, shuffle=False, drop_last=True, world_size=2, rank=1
    )
    assert list(dropped) == [[2, 3], [6, 7]] and len(dropped) == 2


def test_the_order_depends_on_the_seed_and_epoch_only():
    def order(seed, epoch):
        sampler = RandomBatchSampler(50, batch_size=5, seed=seed, world_size=1, rank=0)
        sampler.set_epoch(epoch)
        return sampler.order().tolist()

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)


def test_pair_and_triplet_loaders_give_the_one_process_batches_in_parts():
    inputs, labels = labelled()
    pairs = PairDataset(inputs, labels, pairs_per_epoch=23, seed=2)
    triplets = TripletDataset(inputs, labels, triplets_per_epoch=19, seed=2)
    for dataset, batch_size in ((pairs, 6), (triplets, 5)):
        for world in (2, 3):
            loaders = [
                DataLoader(
                    dataset,
                    batch_sampler=RandomBatchSampler(
                        dataset, batch_size=batch_size, seed=2, world_size=world, rank=r
                    ),
                )
                for r in range(world)
            ]
            alone = DataLoader(
                dataset,
                batch_sampler=RandomBatchSampler(
                    dataset, batch_size=batch_size, seed=2, world_size=1, rank=0
                ),
            )
            for whole, *rank_parts in zip(alone, *loaders, strict=True):
                for i, item in enumerate(whole):
                    assert torch.equal(torch.cat([part[i] for part in rank_parts]), item)


# --- class-balanced batches -----------------------------------------------------------


@pytest.mark.parametrize(("world", "p", "k"), [(2, 4, 2), (3, 4, 3), (3, 3, 2), (2, 5, 4)])
def test_class_balanced_batches_split_by_whole_classes(world, p, k):
    _, labels = labelled(num_classes=8, per_class=6)

    def make(w, r):
        return ClassBalancedBatchSampler(
            labels, classes_per_batch=p, samples_per_class=k, batches_per_epoch=5, seed=3,
            world_size=w, rank=r,
        )  # fmt: skip

    for epoch in (0, 2):
        alone = parts(make, 1, epoch)[0]
        split = parts(make, world, epoch)
        assert joined(split) == alone
        for b in range(len(alone)):
            assert len(set(alone[b])) == p * k  # no repeat, no padding
            classes = [len(set(labels[split[r][b]].tolist())) for r in range(world)]
            assert sum(classes) == p and max(classes) - min(classes) <= 1
            for r in range(world):  # whole classes: K samples of each class of the part
                counts = Counter(labels[split[r][b]].tolist())
                assert set(counts.values()) == {k}


def test_class_balanced_parts_keep_consecutive_pairs_together():
    _, labels = labelled(num_classes=6, per_class=4)
    for rank in range(3):
        sampler = ClassBalancedBatchSampler(
            labels, classes_per_batch=5, samples_per_class=2, world_size=3, rank=rank
        )
        for batch in sampler:
            y = labels[batch]
            assert len(y) % 2 == 0 and torch.equal(y[0::2], y[1::2])


# --- defaults from the process group ---------------------------------------------------


def _default_parts() -> tuple[int, int, list[list[int]], list[list[int]]]:
    random = RandomBatchSampler(11, batch_size=4, seed=1)
    balanced = ClassBalancedBatchSampler(
        torch.arange(30) % 5, classes_per_batch=3, samples_per_class=2, seed=1
    )
    return random.world_size, random.rank, list(random), list(balanced)


def test_world_size_and_rank_default_to_the_process_group(process_groups: ProcessGroups):
    results = process_groups(3).run(_default_parts)
    assert [(w, r) for w, r, _, _ in results] == [(3, 0), (3, 1), (3, 2)]
    alone_random = list(RandomBatchSampler(11, batch_size=4, seed=1))
    alone_balanced = list(
        ClassBalancedBatchSampler(
            torch.arange(30) % 5, classes_per_batch=3, samples_per_class=2, seed=1
        )
    )
    assert distributed.world_size() == 1  # this process has no group: one process
    assert joined([random for _, _, random, _ in results]) == alone_random
    assert joined([balanced for _, _, _, balanced in results]) == alone_balanced


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"world_size": 2, "rank": 2}, ValueError, r"rank must be .* - 1 \(1\), got 2"),
        ({"world_size": 0, "rank": 0}, ValueError, "world_size must be >= 1, got 0"),
        ({"world_size": 2.0, "rank": 0}, TypeError, "world_size must be an integer, got float"),
        ({"world_size": 2, "rank": -1}, ValueError, "rank must be between 0 and world_size - 1"),
        ({"batch_size": 3, "world_size": 4, "rank": 0}, ValueError, r"\(3\) .* world_size \(4\)"),
        ({"batch_size": 11}, ValueError, r"batch_size \(11\) must be at most the 10 samples"),
        ({"batches_per_epoch": 0}, ValueError, "batches_per_epoch must be >= 1, got 0"),
        ({"shuffle": "yes"}, TypeError, "shuffle must be a bool"),
        ({"drop_last": 1}, TypeError, "drop_last must be a bool"),
    ],
)  # fmt: skip
def test_random_batch_sampler_names_bad_options(options, error, message):
    options = {"batch_size": 4, **options}
    with pytest.raises(error, match=message):
        RandomBatchSampler(10, **options)


@pytest.mark.parametrize("data", ["ten", 0, True, 2.5])
def test_random_batch_sampler_needs_a_dataset_or_a_count(data):
    with pytest.raises((TypeError, ValueError), match="data must"):
        RandomBatchSampler(data, batch_size=1)


def test_random_batch_sampler_reads_a_dataset_s_length():
    sampler = RandomBatchSampler(TensorDataset(torch.zeros(9)), batch_size=3, world_size=1, rank=0)
    assert sampler.num_samples == 9 and len(sampler) == 3


def test_class_balanced_sampler_needs_a_class_for_every_process():
    with pytest.raises(
        ValueError, match=r"classes_per_batch \(2\) must be at least world_size \(3\)"
    ):
        ClassBalancedBatchSampler(
            torch.arange(20) % 4, classes_per_batch=2, samples_per_class=2, world_size=3, rank=0
        )
    with pytest.raises(ValueError, match="rank must be between 0 and world_size - 1"):
        ClassBalancedBatchSampler(
            torch.arange(20) % 4, classes_per_batch=2, samples_per_class=2, world_size=1, rank=1
        )
