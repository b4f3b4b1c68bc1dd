"""Pair and triplet datasets and the class-balanced batch sampler."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset, TensorDataset

from contrastkit.data import ClassBalancedBatchSampler, PairDataset, TripletDataset


def make_data(num_classes=5, per_class=8, features=3):
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    inputs = torch.randn(len(labels), features, generator=torch.Generator().manual_seed(0))
    return inputs, labels


class ItemDataset(Dataset):
    """A Dataset of (input, label) items without a ``targets`` attribute."""

    def __init__(self, inputs, labels):
        self.inputs, self.labels_ = inputs, labels

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        return self.inputs[i], int(self.labels_[i])


# --- PairDataset ----------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.7, 1.0])
def test_pairs_are_balanced_and_valid(fraction):
    inputs, labels = make_data()
    pairs = PairDataset(inputs, labels, positive_fraction=fraction, pairs_per_epoch=101)
    first, second, y = pairs.pairs
    assert len(pairs) == 101
    assert int(y.sum()) == round(fraction * 101)
    same = labels[first] == labels[second]
    assert torch.equal(same, y.bool())
    assert torch.all(first[y == 1] != second[y == 1])  # a positive is two samples


def test_every_class_is_represented_equally():
    inputs, labels = make_data(num_classes=7, per_class=5)
    pairs = PairDataset(inputs, labels, pairs_per_epoch=700)
    first, _, y = pairs.pairs
    for kind in (0, 1):
        counts = Counter(labels[first[y == kind]].tolist())
        assert set(counts) == set(range(7))
        assert max(counts.values()) - min(counts.values()) <= 1


def test_items_are_the_inputs_of_the_drawn_indices():
    inputs, labels = make_data()
    pairs = PairDataset(inputs, labels, seed=3)
    first, second, y = pairs.pairs
    for k in (0, 5, len(pairs) - 1):
        x1, x2, label = pairs[k]
        assert torch.equal(x1, inputs[first[k]]) and torch.equal(x2, inputs[second[k]])
        assert label == int(y[k])


def test_pairs_are_reproducible_and_fresh_each_epoch():
    inputs, labels = make_data()
    a = PairDataset(inputs, labels, seed=1)
    b = PairDataset(inputs, labels, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a.pairs, b.pairs, strict=True))
    epoch0 = a.pairs
    a.set_epoch(1)
    assert not torch.equal(a.pairs[0], epoch0[0])
    a.set_epoch(0)
    assert all(torch.equal(u, v) for u, v in zip(a.pairs, epoch0, strict=True))
    c = PairDataset(inputs, labels, seed=2)
    assert not torch.equal(c.pairs[0], epoch0[0])


def test_dataset_sources_give_the_same_pairs_as_arrays():
    inputs, labels = make_data()
    from_arrays = PairDataset(inputs, labels, seed=4)
    from_items = PairDataset(ItemDataset(inputs, labels), seed=4)
    tensor_dataset = TensorDataset(inputs, labels)
    from_explicit = PairDataset(tensor_dataset, labels, seed=4)
    for other in (from_items, from_explicit):
        assert all(torch.equal(u, v) for u, v in zip(from_arrays.pairs, other.pairs, strict=True))
    x1, _, _ = from_items[0]
    assert torch.equal(x1, inputs[from_arrays.pairs[0][0]])


def test_targets_attribute_is_used_without_reading_items():
    inputs, labels = make_data()

    class WithTargets(ItemDataset):
        def __init__(self, *args):
            super().__init__(*args)
            self.targets = labels.tolist()
            self.reads = 0

        def __getitem__(self, i):
            self.reads += 1
            return super().__getitem__(i)

    dataset = WithTargets(inputs, labels)
    PairDataset(dataset)
    assert dataset.reads == 0


def test_numpy_free_sequences_and_lists_are_accepted():
    inputs = [[float(i), 0.0] for i in range(6)]
    pairs = PairDataset(inputs, [0, 0, 1, 1, 2, 2])
    x1, _, y = pairs[0]
    assert x1.shape == (2,) and y in (0, 1)


def test_singleton_classes_are_reported_and_never_positive():
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 3])
    inputs = torch.randn(7, 2)
    with pytest.warns(UserWarning, match=r"2 class\(es\) have a single sample.*: 1, 3"):
        pairs = PairDataset(inputs, labels, pairs_per_epoch=200)
    assert pairs.singleton_classes == [1, 3]
    first, second, y = pairs.pairs
    assert int(y.sum()) == 100
    positive_classes = set(labels[first[y == 1]].tolist())
    assert positive_classes == {0, 2}
    assert {1, 3} <= set(labels[torch.cat([first, second])[torch.cat([y, y]) == 0]].tolist())


def test_impossible_requests_are_clear_errors():
    with pytest.raises(ValueError, match="every class has a single sample"):
        PairDataset(torch.randn(3, 2), [0, 1, 2])
    PairDataset(torch.randn(3, 2), [0, 1, 2], positive_fraction=0.0)  # negatives only: fine
    with pytest.raises(ValueError, match="negative pairs need at least two classes"):
        PairDataset(torch.randn(3, 2), [5, 5, 5])
    PairDataset(torch.randn(3, 2), [5, 5, 5], positive_fraction=1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(positive_fraction=1.5), ValueError, r"positive_fraction must lie in \[0, 1\]"),
        (dict(positive_fraction="half"), TypeError, "positive_fraction must be a real number"),
        (dict(positive_fraction=True), TypeError, "positive_fraction must be a real number"),
        (dict(pairs_per_epoch=0), ValueError, "pairs_per_epoch must be >= 1"),
        (dict(pairs_per_epoch=2.5), TypeError, "pairs_per_epoch must be an integer"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
    ],
)
def test_pair_dataset_bad_options(kwargs, error, match):
    inputs, labels = make_data()
    with pytest.raises(error, match=match):
        PairDataset(inputs, labels, **kwargs)


@pytest.mark.parametrize(
    ("data", "labels", "error", "match"),
    [
        (torch.randn(4, 2), None, TypeError, "labels are required"),
        (torch.randn(4, 2), [0.5, 1.0, 0.0, 1.0], TypeError, "integer class labels"),
        (torch.randn(4, 2), [0, 1, 0], ValueError, r"one entry per input \(4\), got 3"),
        (torch.randn(4, 2), [[0, 1], [0, 1]], ValueError, "labels must be 1-D"),
        (torch.randn(0, 2), [], ValueError, "at least one sample"),
        (torch.randn(2, 2), ["a", "b"], TypeError, "sequence of integer class labels"),
    ],
)
def test_pair_dataset_bad_data(data, labels, error, match):
    with pytest.raises(error, match=match):
        PairDataset(data, labels)


def test_set_epoch_checks_its_argument():
    inputs, labels = make_data()
    pairs = PairDataset(inputs, labels)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        pairs.set_epoch(-1)


def test_pair_dataset_in_a_dataloader():
    inputs, labels = make_data()
    loader = DataLoader(PairDataset(inputs, labels), batch_size=16)
    x1, x2, y = next(iter(loader))
    assert x1.shape == (16, 3) and x2.shape == (16, 3)
    assert y.dtype == torch.long and set(y.tolist()) <= {0, 1}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=2, max_size=40),
    st.floats(0, 1),
    st.integers(1, 80),
    st.integers(0, 10),
)
def test_pair_invariants_for_any_labels(raw_labels, fraction, count, seed):
    labels = torch.tensor(raw_labels)
    counts = Counter(raw_labels)
    can_positive = any(c >= 2 for c in counts.values())
    can_negative = len(counts) >= 2
    num_positive = round(fraction * count)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if (num_positive and not can_positive) or (count - num_positive and not can_negative):
            with pytest.raises(ValueError):
                PairDataset(
                    torch.zeros(len(labels), 1),
                    labels,
                    positive_fraction=fraction,
                    pairs_per_epoch=count,
                    seed=seed,
                )
            return
        pairs = PairDataset(
            torch.zeros(len(labels), 1),
            labels,
            positive_fraction=fraction,
            pairs_per_epoch=count,
            seed=seed,
        )
    first, second, y = pairs.pairs
    assert len(y) == count and int(y.sum()) == num_positive
    assert torch.equal(labels[first] == labels[second], y.bool())
    assert torch.all(first[y == 1] != second[y == 1])


# --- TripletDataset -------------------------------------------------------------------


def test_triplets_are_valid_reproducible_and_balanced():
    inputs, labels = make_data(num_classes=4, per_class=6)
    triplets = TripletDataset(inputs, labels, triplets_per_epoch=400, seed=2)
    a, p, n = triplets.triplets
    assert torch.all(labels[a] == labels[p]) and torch.all(a != p)
    assert torch.all(labels[a] != labels[n])
    counts = Counter(labels[a].tolist())
    assert max(counts.values()) - min(counts.values()) <= 1
    again = TripletDataset(inputs, labels, triplets_per_epoch=400, seed=2)
    assert all(torch.equal(u, v) for u, v in zip(triplets.triplets, again.triplets, strict=True))
    triplets.set_epoch(1)
    assert not torch.equal(triplets.triplets[0], a)
    anchor, positive, negative = TripletDataset(inputs, labels)[0]
    assert anchor.shape == positive.shape == negative.shape == (3,)


def test_triplets_with_singletons_and_impossible_requests():
    labels = torch.tensor([0, 0, 1, 2])
    with pytest.warns(UserWarning, match="single sample"):
        triplets = TripletDataset(torch.randn(4, 2), labels, triplets_per_epoch=50)
    a, _, n = triplets.triplets
    assert set(a.tolist()) <= {0, 1}
    assert set(labels[n].tolist()) == {1, 2}
    with pytest.raises(ValueError, match="at least two classes"):
        TripletDataset(torch.randn(3, 2), [1, 1, 1])
    with pytest.raises(ValueError, match="every class has one"):
        TripletDataset(torch.randn(3, 2), [0, 1, 2])
    with pytest.raises(ValueError, match="triplets_per_epoch must be >= 1"):
        TripletDataset(torch.randn(4, 2), [0, 0, 1, 1], triplets_per_epoch=0)


# --- ClassBalancedBatchSampler --------------------------------------------------------


def test_batches_hold_p_classes_of_k_distinct_samples():
    _, labels = make_data(num_classes=10, per_class=7)
    sampler = ClassBalancedBatchSampler(labels, classes_per_batch=4, samples_per_class=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 70 // 12
    for batch in batches:
        assert len(batch) == 12 and len(set(batch)) == 12
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}


def test_sampler_is_reproducible_and_advances_its_epoch():
    _, labels = make_data(num_classes=10, per_class=7)
    a = ClassBalancedBatchSampler(labels, classes_per_batch=4, samples_per_class=3, seed=5)
    b = ClassBalancedBatchSampler(labels, classes_per_batch=4, samples_per_class=3, seed=5)
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # the second iteration is the next epoch
    a.set_epoch(0)
    assert list(a) == first


def test_sampler_in_a_dataloader_feeds_the_label_form_losses():
    import contrastkit

    inputs, labels = make_data(num_classes=6, per_class=6)
    sampler = ClassBalancedBatchSampler(labels, classes_per_batch=3, samples_per_class=4)
    loader = DataLoader(TensorDataset(inputs, labels), batch_sampler=sampler)
    x, y = next(iter(loader))
    assert x.shape == (12, 3)
    loss = contrastkit.BatchHardTripletLoss(margin=0.2)(x, y)
    assert torch.isfinite(loss)


def test_sampler_cannot_fill_a_batch():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"only 1 of 3 classes have at least 3 samples"):
        ClassBalancedBatchSampler(labels, classes_per_batch=2, samples_per_class=3)


def test_sampler_reports_excluded_classes():
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 3])
    with pytest.warns(UserWarning, match=r"1 class\(es\) have fewer than 2 samples"):
        sampler = ClassBalancedBatchSampler(labels, classes_per_batch=2, samples_per_class=2)
    assert sampler.excluded_classes == [2]
    assert all(4 not in batch for batch in sampler)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(classes_per_batch=0, samples_per_class=2), ValueError, "classes_per_batch must"),
        (dict(classes_per_batch=2, samples_per_class=0), ValueError, "samples_per_class must"),
        (dict(classes_per_batch=2.0, samples_per_class=2), TypeError, "must be an integer"),
        (
            dict(classes_per_batch=2, samples_per_class=2, batches_per_epoch=0),
            ValueError,
            "batches_per_epoch must be >= 1",
        ),
    ],
)
def test_sampler_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        ClassBalancedBatchSampler(torch.arange(20) % 4, **kwargs)


def test_sampler_needs_keyword_options():
    with pytest.raises(TypeError):
        ClassBalancedBatchSampler(torch.arange(20) % 4, 2, 2)  # type: ignore[misc]
