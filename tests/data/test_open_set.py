"""Open-set data: the split that holds whole classes out, and standard pairs lists."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.data.readers import (
    DataError,
    PairsList,
    read_pairs_list,
    split_classes,
    split_indices,
)


def names_path(path):
    """A regex matching ``path`` as it appears in a message."""
    return re.escape(str(path))


def repeat(counts):
    """Labels with ``counts[c]`` samples of class ``c``, classes interleaved."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(9))]


# --- split_classes -----------------------------------------------------------------


def check_open_split(labels, parts):
    """The invariants every split by classes keeps."""
    assert sorted(torch.cat(parts).tolist()) == list(range(labels.numel())), "complete"
    for part in parts:
        assert part.dtype == torch.int64
        assert torch.equal(part, part.sort().values)
    classes = [set(labels[p].tolist()) for p in parts]
    assert not classes[0] & classes[1] and not classes[0] & classes[2]
    assert not classes[1] & classes[2], "a class lies in one split only"
    counts = torch.bincount(labels - labels.min())
    size = {c: int(counts[c - int(labels.min())]) for c in set(labels.tolist())}
    assert len(classes[1]) >= 2 and len(classes[2]) >= 2
    assert all(size[c] >= 2 for c in classes[1] | classes[2]), "held-out classes have pairs"
    assert sum(size[c] >= 2 for c in classes[0]) >= 2, "training keeps two classes with pairs"
    assert all(c in classes[0] for c, n in size.items() if n == 1), "singletons train"
    return classes


def test_split_classes_holds_whole_classes_out_by_the_fraction_of_classes():
    labels = repeat([3 + (c % 5) for c in range(40)])  # class sizes 3 to 7
    parts = split_classes(labels, fractions=(0.2, 0.3), seed=1)
    classes = check_open_split(labels, parts)
    assert [len(c) for c in classes] == [20, 8, 12]  # 20 % and 30 % of 40 classes


def test_split_classes_counts_only_the_classes_that_can_be_held_out():
    # 20 classes of 4 and 30 of 1: the fractions count the 20; the 30 always train
    labels = repeat([4] * 20 + [1] * 30)
    parts = split_classes(labels, fractions=(0.2, 0.2), seed=0)
    classes = check_open_split(labels, parts)
    assert [len(c) for c in classes] == [12 + 30, 4, 4]
    assert set(range(20, 50)) <= classes[0]


def test_split_classes_minimums_two_classes_per_held_out_split_and_two_to_train():
    labels = repeat([2] * 6)
    classes = check_open_split(labels, split_classes(labels, fractions=(0.01, 0.01)))
    assert [len(c) for c in classes] == [2, 2, 2]  # raised from 0 to 2 each
    labels = repeat([5] * 7)
    classes = check_open_split(labels, split_classes(labels, fractions=(0.45, 0.45)))
    assert [len(c) for c in classes] == [2, 2, 3]  # 3 + 3 lowered, validation first


def test_split_classes_is_reproducible_and_depends_on_the_seed():
    labels = repeat([4] * 30)
    a = split_classes(labels, seed=5)
    b = split_classes(labels, seed=5)
    c = split_classes(labels, seed=6)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


def test_split_classes_takes_any_integer_labels():
    labels = torch.tensor([-7, -7, 3, 3, 100, 100, 5, 5, 9, 9, 11, 11, 42], dtype=torch.int32)
    parts = split_classes(labels, seed=2)
    check_open_split(labels.long(), parts)
    assert labels[parts[0]].tolist().count(42) == 1


def test_split_indices_is_unchanged_beside_it():
    # the closed-set split still spreads every class over the three splits
    labels = torch.arange(200) % 4
    _, val, test = split_indices(labels, fractions=(0.2, 0.3), seed=1)
    assert set(labels[val].tolist()) == set(labels[test].tolist()) == {0, 1, 2, 3}


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 6), min_size=6, max_size=40),
    val=st.floats(0.01, 0.6),
    test=st.floats(0.01, 0.6),
    seed=st.integers(0, 2**31),
)
def test_split_classes_keeps_its_invariants(counts, val, test, seed):
    labels = repeat(counts)
    eligible = sum(n >= 2 for n in counts)
    if val + test >= 1 or eligible < 6:
        with pytest.raises(ValueError):
            split_classes(labels, fractions=(val, test), seed=seed)
        return
    classes = check_open_split(labels, split_classes(labels, fractions=(val, test), seed=seed))
    # round(E * fraction) classes, raised to two; lowered only to leave two to train
    asked = [max(2, math.floor(eligible * f + 0.5)) for f in (val, test)]
    held = [len(c) for c in classes[1:]]
    if sum(asked) <= eligible - 2:
        assert held == asked
    else:
        assert sum(held) == eligible - 2 and all(
            2 <= h <= a for h, a in zip(held, asked, strict=True)
        )


def test_split_classes_with_too_few_classes_says_how_many():
    labels = repeat([3, 3, 2, 2, 5, 1, 1, 1])
    with pytest.raises(ValueError) as caught:
        split_classes(labels)
    message = str(caught.value)
    assert "5 classes with at least 2 samples (8 classes in all, 3 of one sample)" in message
    assert "at least 6: 2 for validation, 2 for test and 2 for training" in message


@pytest.mark.parametrize(
    "fractions", [(0.0, 0.2), (0.2, 0.0), (0.5, 0.5), (0.7, 0.4), (-0.1, 0.2), (1.0, 0.1)]
)
def test_split_classes_refuses_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions must be two positive numbers summing below 1"):
        split_classes(repeat([3] * 10), fractions=fractions)


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        ([0, 0, 1, 1], TypeError, "labels must be a tensor of class labels, got list"),
        (
            torch.zeros(12),
            TypeError,
            "labels must be integer class labels, got dtype torch.float32",
        ),
        (torch.zeros(12, dtype=torch.bool), TypeError, "got dtype torch.bool"),
        (
            torch.zeros(3, 4, dtype=torch.long),
            ValueError,
            r"non-empty 1-D tensor, got shape \(3, 4\)",
        ),
        (torch.zeros(0, dtype=torch.long), ValueError, r"non-empty 1-D tensor, got shape \(0,\)"),
    ],
)
def test_split_classes_refuses_bad_labels(labels, error, message):
    with pytest.raises(error, match=message):
        split_classes(labels)


@pytest.mark.parametrize("seed", [1.0, True, "0"])
def test_split_classes_refuses_a_seed_that_is_not_an_int(seed):
    with pytest.raises(TypeError, match="seed must be an integer"):
        split_classes(repeat([3] * 10), seed=seed)


# --- read_pairs_list ---------------------------------------------------------------


def write_list(folder, rows, *, header="left,right,label", files=("a/1.png", "a/2.png", "b/1.png")):
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")  # only their existence is checked
    path = folder / "pairs.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


ROWS = ["a/1.png,a/2.png,1", "a/1.png,b/1.png,0", "a/2.png,b/1.png,0"]


def test_pairs_list_names_samples_relative_to_its_folder(tmp_path, monkeypatch):
    path = write_list(tmp_path, [*ROWS, f"{tmp_path / 'b' / '1.png'},a/2.png,0"])
    monkeypatch.chdir(tmp_path.parent)
    pairs = read_pairs_list(path)
    assert isinstance(pairs, PairsList) and len(pairs) == 4 and pairs.folds is None
    assert pairs.left == [str(tmp_path / n) for n in ("a/1.png", "a/1.png", "a/2.png", "b/1.png")]
    assert pairs.right == [str(tmp_path / n) for n in ("a/2.png", "b/1.png", "b/1.png", "a/2.png")]
    assert pairs.same.tolist() == [1, 0, 0, 0] and pairs.same.dtype == torch.int64
    assert pairs.paths() == sorted(str(tmp_path / n) for n in ("a/1.png", "a/2.png", "b/1.png"))
    assert str(path) in pairs.source and "4 pairs of 3 samples" in pairs.source


def test_pairs_list_keeps_its_fold_column_in_any_column_order(tmp_path):
    rows = ["1,3,a/2.png,a/1.png,x", "0,3,b/1.png,a/1.png,y", "0,-1,b/1.png,a/2.png,z"]
    pairs = read_pairs_list(write_list(tmp_path, rows, header="label, fold ,right,left,note"))
    assert pairs.folds is not None and pairs.folds.tolist() == [3, 3, -1]
    assert pairs.same.tolist() == [1, 0, 0] and pairs.left[0] == str(tmp_path / "a/1.png")
    assert "2 folds" in pairs.source


def test_pairs_list_with_a_byte_order_mark_and_blank_lines(tmp_path):
    path = write_list(tmp_path, ROWS)
    path.write_text(path.read_text().replace("\n", "\n\n", 1), encoding="utf-8-sig")
    assert read_pairs_list(path).same.tolist() == [1, 0, 0]


def test_pairs_list_of_files_elsewhere_needs_no_files(tmp_path):
    path = write_list(tmp_path, [*ROWS, "ghost.png,a/1.png,1"])
    with pytest.raises(DataError) as caught:
        read_pairs_list(path)
    message = str(caught.value)
    assert message.startswith(f"pairs list {path} line 5: ghost.png does not exist")
    assert "column 'left'" in message and str(tmp_path / "ghost.png") in message
    assert len(read_pairs_list(path, must_exist=False)) == 4


FOLD = "left,right,label,fold"
MISTAKES = [
    (
        [*ROWS, "a/1.png,b/1.png,yes"],
        None,
        r"line 5: label must be 0 or 1, got 'yes' \(column 'label'",
    ),
    ([*ROWS, "a/1.png,b/1.png,1.0"], None, r"line 5: label must be 0 or 1, got '1.0'"),
    ([*ROWS, ",b/1.png,1"], None, r"line 5: the left path is empty \(column 'left'\)"),
    ([*ROWS, "a/1.png, ,1"], None, r"line 5: the right path is empty \(column 'right'\)"),
    ([*ROWS, "a/1.png,b/1.png"], None, r"line 5 has 2 fields, expected 3 \(left, right, lab"),
    ([*ROWS, "a/1.png,b/1.png,1,1"], None, r"line 5 has 4 fields, expected 3"),
    (["a/1.png,a/2.png,1,1", "a/1.png,b/1.png,0,x"], FOLD, r"line 3: fold must be an integer"),
    (["a/1.png,a/2.png,1,1", "a/1.png,b/1.png,0,x"], FOLD, r"got 'x' \(column 'fold'\)"),
    (["a/1.png,a/2.png,1,2", "a/1.png,b/1.png,0,2"], FOLD, r"has one fold \(2\) in column 'f"),
    (["a/1.png,a/2.png,1,2", "a/1.png,b/1.png,0,2"], FOLD, r"cross-validation needs at least 2"),
    (ROWS, "left,right,label,left", r"line 1 names the column 'left' twice"),
    (ROWS, "first,right,same", r"has no column left, label \(columns: first, right, same;"),
    (ROWS, "first,right,same", r"expected left,right,label and optionally fold\)"),
    ([], None, "has no pairs"),
    (ROWS[:1] * 2, None, r"needs both matching \(1\) and non-matching \(0\) pairs"),
]


@pytest.mark.parametrize(("rows", "header", "message"), MISTAKES)
def test_pairs_list_mistakes_are_one_line_naming_file_line_and_column(
    tmp_path, rows, header, message
):
    path = write_list(tmp_path, rows, header=header or "left,right,label")
    with pytest.raises(DataError) as caught:
        read_pairs_list(path)
    text = str(caught.value)
    assert "\n" not in text
    assert re.search(f"^pairs list {names_path(path)} .*{message}", text), text


def test_pairs_list_that_cannot_be_read(tmp_path):
    with pytest.raises(DataError, match=r"pairs list .*none\.csv does not exist"):
        read_pairs_list(tmp_path / "none.csv")
    path = tmp_path / "bad.csv"
    path.write_bytes(b"left,right,label\n\xff\xfe,b,1\n")
    with pytest.raises(DataError, match=f"cannot read {names_path(path)}"):
        read_pairs_list(path)
