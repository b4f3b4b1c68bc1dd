"""The data readers: bundled digits, image folders, feature files, pair files and the split."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from contrastkit.data.readers import (
    DataError,
    LabelledData,
    PairData,
    is_pair_file,
    load_digits,
    read_feature_vectors,
    read_features,
    read_image_folder,
    read_images,
    read_pairs,
    split_indices,
)


def save_image(path, value=0, *, mode="L", size=(6, 5)):
    """A small solid image; ``value`` is a gray level (or an RGB triple)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def make_folder(root, counts, *, mode="L"):
    """``root/c0/0.png, …``: one subfolder per class with ``counts[k]`` images."""
    for c, count in enumerate(counts):
        for i in range(count):
            save_image(root / f"c{c}" / f"{i}.png", 40 * c + i, mode=mode)
    return root


def names_path(path):
    """A regex matching ``path`` as it appears in a message."""
    return re.escape(str(path))


def write(path, text):
    path.write_text(text)
    return path


# --- load_digits -------------------------------------------------------------------


def test_digits_shape_labels_and_names():
    data = load_digits()
    assert isinstance(data, LabelledData)
    assert data.inputs.shape == (1797, 64) and data.inputs.dtype == torch.float32
    assert data.labels.shape == (1797,) and data.labels.dtype == torch.int64
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    assert data.class_names == [str(d) for d in range(10)]
    assert data.kind == "vectors" and len(data) == 1797
    assert 0 <= float(data.inputs.min()) and float(data.inputs.max()) <= 16


def test_subset_keeps_class_names_and_paths(tmp_path):
    data = read_image_folder(make_folder(tmp_path / "imgs", [2, 3]), image_size=4)
    part = data.subset(torch.tensor([4, 0]))
    assert part.labels.tolist() == [1, 0]
    assert part.class_names == ["c0", "c1"]
    assert part.paths == [data.paths[4], data.paths[0]]


# --- read_image_folder -------------------------------------------------------------


def test_image_folder_grayscale_gives_one_channel(tmp_path):
    root = make_folder(tmp_path / "imgs", [2, 3])
    data = read_image_folder(root, image_size=8)
    assert data.inputs.shape == (5, 1, 8, 8) and data.inputs.dtype == torch.float32
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert data.kind == "images" and data.class_names == ["c0", "c1"]
    assert str(root) in data.source
    # c1/2.png has gray level 40 + 2 everywhere
    assert torch.allclose(data.inputs[4], torch.full((1, 8, 8), 42 / 255))


def test_image_folder_rgb_and_mixed_give_three_channels(tmp_path):
    rgb = tmp_path / "rgb"
    for c in ("a", "b"):
        for i in range(2):
            save_image(rgb / c / f"{i}.png", (200, 100, 0), mode="RGB")
    data = read_image_folder(rgb, image_size=4)
    assert data.inputs.shape == (4, 3, 4, 4)
    assert torch.allclose(data.inputs[0, :, 0, 0], torch.tensor([200, 100, 0]) / 255)

    mixed = make_folder(tmp_path / "mixed", [2, 2])
    save_image(mixed / "c1" / "colour.png", (10, 20, 30), mode="RGB")
    data = read_image_folder(mixed, image_size=4)
    assert data.inputs.shape == (5, 3, 4, 4)
    gray = data.inputs[0]  # c0/0.png, gray level 0 in all three channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_image_folder_channels_can_be_forced(tmp_path):
    root = make_folder(tmp_path / "imgs", [2, 2], mode="RGB")
    assert read_image_folder(root, image_size=4, channels=1).inputs.shape == (4, 1, 4, 4)
    gray = make_folder(tmp_path / "gray", [2, 2])
    assert read_image_folder(gray, image_size=4, channels=3).inputs.shape == (4, 3, 4, 4)


def test_image_folder_resizes_every_image(tmp_path):
    root = tmp_path / "imgs"
    for c, size in (("a", (3, 9)), ("b", (20, 11))):
        for i in range(2):
            save_image(root / c / f"{i}.png", 128, size=size)
    data = read_image_folder(root, image_size=5)
    assert data.inputs.shape == (4, 1, 5, 5)
    assert torch.allclose(data.inputs, torch.full_like(data.inputs, 128 / 255))


def test_image_folder_class_names_are_sorted(tmp_path):
    root = tmp_path / "imgs"
    for name in ("zoe", "Bob", "alice"):
        for i in range(2):
            save_image(root / name / f"{i}.png")
    data = read_image_folder(root, image_size=4)
    assert data.class_names == sorted(["zoe", "Bob", "alice"])
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [p.split("/")[-2] for p in data.paths] == ["Bob", "Bob", "alice", "alice", "zoe", "zoe"]


def test_image_folder_ignores_hidden_and_non_image_files(tmp_path):
    root = make_folder(tmp_path / "imgs", [2, 2])
    write(root / "c0" / "notes.txt", "not an image")
    write(root / "c0" / ".DS_Store", "junk")
    save_image(root / "c0" / ".hidden.png")
    write(root / "c1" / "Thumbs.db", "junk")
    write(root / "README.md", "a file at the root")
    save_image(root / ".cache" / "0.png")  # a hidden folder is not a class
    save_image(root / ".cache" / "1.png")
    data = read_image_folder(root, image_size=4)
    assert data.class_names == ["c0", "c1"] and len(data) == 4
    assert all(".hidden" not in p and ".cache" not in p for p in data.paths)


def test_image_suffixes_are_case_insensitive(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        save_image(root / c / "0.PNG")
        Image.new("L", (4, 4), 9).save(root / c / "1.JPG", format="JPEG")
    assert len(read_image_folder(root, image_size=4)) == 4


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    # PIL's own conversion to 8 bits clips 16-bit values at 255: a mid-gray would be white
    array = np.full((4, 4), 32768, dtype=np.uint16)
    array[0, 0] = 0
    path = tmp_path / "wide.png"
    Image.fromarray(array).save(path)
    x = read_images([path], image_size=4)
    assert x.shape == (1, 1, 4, 4)
    assert float(x[0, 0, 0, 0]) == 0.0
    assert float(x[0, 0, 3, 3]) == pytest.approx(32768 / 65535, abs=1e-6)
    assert read_images([path], image_size=4, channels=3).shape == (1, 3, 4, 4)


def test_read_images_checks_its_size(tmp_path):
    path = save_image(tmp_path / "a.png")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DataError, match="image size must be a positive integer"):
            read_images([path], image_size=bad)


def test_image_folder_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{names_path(missing)} does not exist"):
        read_image_folder(missing)


def test_image_folder_given_a_file(tmp_path):
    file = save_image(tmp_path / "one.png")
    with pytest.raises(DataError, match=f"{names_path(file)} is not a folder"):
        read_image_folder(file)


def test_image_folder_without_subfolders(tmp_path):
    root = tmp_path / "flat"
    save_image(root / "0.png")
    save_image(root / "1.png")
    with pytest.raises(DataError, match=f"{names_path(root)} has no class subfolders"):
        read_image_folder(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"{names_path(empty)} has no class subfolders"):
        read_image_folder(empty)


def test_image_folder_with_an_empty_class(tmp_path):
    root = make_folder(tmp_path / "imgs", [2, 2])
    (root / "c2").mkdir()
    write(root / "c2" / "notes.txt", "no images here")
    with pytest.raises(DataError, match=f"class folder {names_path(root / 'c2')} has no images"):
        read_image_folder(root)


def test_image_folder_with_a_class_of_one_image(tmp_path):
    root = make_folder(tmp_path / "imgs", [2, 1, 2])
    with pytest.raises(DataError, match=f"{names_path(root / 'c1')} has 1 image.*at least 2"):
        read_image_folder(root)


def test_image_folder_with_an_unreadable_image(tmp_path):
    root = make_folder(tmp_path / "imgs", [2, 2])
    bad = write(root / "c1" / "broken.png", "this is not a PNG")
    with pytest.raises(DataError, match=f"cannot read image {names_path(bad)}"):
        read_image_folder(root)


def test_image_folder_with_a_truncated_image(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        for i in range(2):
            save_image(root / c / f"{i}.png", 7 * i, size=(32, 32))
    bad = root / "b" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(DataError, match=f"cannot read image {names_path(bad)}"):
        read_image_folder(root)


def test_image_folder_with_one_class(tmp_path):
    root = make_folder(tmp_path / "imgs", [3])
    with pytest.raises(DataError, match=f"{names_path(root)} has 1 class; at least 2"):
        read_image_folder(root)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --- read_features: .npz -----------------------------------------------------------


FEATURES = np.arange(24, dtype=np.float64).reshape(6, 4)


@pytest.mark.parametrize("x_key", ["features", "x", "X"])
@pytest.mark.parametrize("y_key", ["label", "labels", "y"])
def test_npz_feature_and_label_keys(tmp_path, x_key, y_key):
    path = tmp_path / "data.npz"
    np.savez(path, **{x_key: FEATURES, y_key: np.array([3, 1, 3, 1, 2, 2])})
    data = read_features(path)
    assert isinstance(data, LabelledData) and data.kind == "vectors"
    assert data.inputs.dtype == torch.float32
    assert torch.equal(data.inputs, torch.as_tensor(FEATURES, dtype=torch.float32))
    assert data.class_names == ["1", "2", "3"]
    assert data.labels.tolist() == [2, 0, 2, 0, 1, 1]
    assert str(path) in data.source


def test_npz_custom_label_column(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, features=FEATURES, speaker=np.array(["b", "a"] * 3), label=np.zeros(6))
    data = read_features(path, label_column="speaker")
    assert data.class_names == ["a", "b"] and data.labels.tolist() == [1, 0] * 3
    # the fallbacks labels/y are only for the default name
    np.savez(path, features=FEATURES, y=np.arange(6) % 2)
    with pytest.raises(DataError, match=r"no label array 'speaker'.*--label-column"):
        read_features(path, label_column="speaker")


def test_npz_without_labels_can_be_read_as_features(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=FEATURES)
    with pytest.raises(DataError, match=f"{names_path(path)} has no label array 'label'"):
        read_features(path)
    inputs = read_features(path, label_column=None)
    assert isinstance(inputs, torch.Tensor) and inputs.shape == (6, 4)


def test_npz_errors_name_the_file(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, data=FEATURES, label=np.arange(6) % 2)
    with pytest.raises(DataError, match=f"{names_path(path)} has no array named 'features'"):
        read_features(path)
    np.savez(path, features=FEATURES, label=np.arange(5) % 2)
    with pytest.raises(DataError, match=f"labels 'label' in {names_path(path)}.*\\(6\\)"):
        read_features(path)
    np.savez(path, features=FEATURES, label=np.zeros((6, 2)))
    with pytest.raises(DataError, match="must be 1-D"):
        read_features(path)
    np.savez(path, features=np.array(["a"] * 6).reshape(3, 2), label=np.arange(3) % 2)
    with pytest.raises(DataError, match=f"'features' in {names_path(path)} is not numeric"):
        read_features(path)
    np.savez(path, features=np.arange(6.0), label=np.arange(6) % 2)
    with pytest.raises(DataError, match=f"{names_path(path)} must be a \\(N, F\\) table"):
        read_features(path)
    np.savez(path, features=np.float64(3.0), label=np.array([1]))
    with pytest.raises(DataError, match="must be a \\(N, F\\) table, got shape \\(\\)"):
        read_features(path)
    np.savez(path, features=FEATURES, label=np.array(["a", None] * 3, dtype=object))
    with pytest.raises(DataError, match=f"cannot read labels 'label' in {names_path(path)}"):
        read_features(path)
    np.savez(path, features=np.where(FEATURES == 5, np.nan, FEATURES), label=np.arange(6) % 2)
    with pytest.raises(DataError, match=f"{names_path(path)} contain NaN"):
        read_features(path)
    np.savez(path, features=FEATURES, label=np.zeros(6))
    with pytest.raises(DataError, match=f"{names_path(path)} has 1 class; at least 2"):
        read_features(path)
    assert read_features(path, min_classes=1).class_names == ["0.0"]


def test_npz_that_is_not_an_archive(tmp_path):
    junk = write(tmp_path / "junk.npz", "plain text")
    with pytest.raises(DataError, match=f"cannot read {names_path(junk)}"):
        read_features(junk)
    lone = tmp_path / "lone.npz"
    with lone.open("wb") as handle:
        np.save(handle, FEATURES)
    with pytest.raises(DataError, match=f"{names_path(lone)} is not a .npz archive"):
        read_features(lone)


# --- read_features: .csv -----------------------------------------------------------


def test_csv_string_classes_map_to_sorted_indices(tmp_path):
    path = write(tmp_path / "f.csv", "a,species,b\n1,dog,2\n3,cat,4\n5,eel,6\n7,cat,8\n")
    data = read_features(path, label_column="species")
    assert data.class_names == ["cat", "dog", "eel"]
    assert data.labels.tolist() == [1, 0, 2, 0]
    assert data.inputs.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]


def test_csv_numeric_labels_sort_as_numbers(tmp_path):
    path = write(tmp_path / "f.csv", "label,x\n10,1\n2,2\n10,3\n9,4\n")
    data = read_features(path)
    assert data.class_names == ["2", "9", "10"]
    assert data.labels.tolist() == [2, 0, 2, 1]


def test_csv_class_order_is_total(tmp_path):
    # "1" and "1.0" are equal as numbers; their order must not depend on set iteration,
    # and "nan" is a name, not a number that compares unequal to everything
    path = write(tmp_path / "f.csv", "label,x\n1.0,1\n1,2\nnan,3\n2,4\n")
    assert read_features(path).class_names == ["1", "1.0", "2", "nan"]


def test_csv_spaces_blank_lines_and_byte_order_mark(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("label , x\n a ,1\n\nb, 2\n", encoding="utf-8-sig")
    data = read_features(path)
    assert data.class_names == ["a", "b"] and data.inputs.tolist() == [[1.0], [2.0]]


def test_csv_missing_label_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "f.csv", "a,b,class\n1,2,x\n3,4,y\n")
    with pytest.raises(DataError) as caught:
        read_features(path)
    message = str(caught.value)
    assert str(path) in message and "'label'" in message
    assert "a, b, class" in message and "--label-column" in message
    assert "\n" not in message


def test_csv_label_column_none_returns_a_tensor(tmp_path):
    path = write(tmp_path / "f.csv", "a,b\n1,2\n3,4\n5,6\n")
    inputs = read_features(path, label_column=None)
    assert isinstance(inputs, torch.Tensor)
    assert inputs.dtype == torch.float32 and inputs.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,label\n1,x\n2\n", "line 3 has 1 fields, expected 2"),
        ("a,label\n1,x\n2,y,3\n", "line 3 has 3 fields, expected 2"),
        ("a,label\n1,x\n\n\nfoo,y\n", "line 5 has a value that is not a number"),
        ("a,label\n1,x\nnan,y\n", "contain NaN or infinite"),
        ("a,label\n1,x\ninf,y\n", "contain NaN or infinite"),
        ("a,label\n", "must be a non-empty"),
        ("", "is empty"),
        ("label\nx\ny\n", "must be a non-empty"),
        ("a,label\n1,x\n2,x\n", "has 1 class; at least 2"),
    ],
)
def test_csv_errors_name_the_file(tmp_path, text, match):
    path = write(tmp_path / "f.csv", text)
    with pytest.raises(DataError, match=match) as caught:
        read_features(path)
    assert str(path) in str(caught.value)


def test_csv_that_is_not_text(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(bytes(range(128, 256)))
    with pytest.raises(DataError, match=f"cannot read {names_path(path)}"):
        read_features(path)


def test_features_missing_file_and_unsupported_suffix(tmp_path):
    missing = tmp_path / "none.csv"
    with pytest.raises(DataError, match=f"feature file {names_path(missing)} does not exist"):
        read_features(missing)
    for name in ("f.txt", "f"):
        path = write(tmp_path / name, "a,label\n1,2\n")
        with pytest.raises(DataError, match=f"{names_path(path)} must be .npz or .csv"):
            read_features(path)


# --- read_pairs --------------------------------------------------------------------


def make_pairs(tmp_path, rows, *, header="left,right,label"):
    for name in ("a1", "a2", "b1", "b2"):
        save_image(tmp_path / "img" / f"{name}.png", 60 if name[0] == "a" else 200)
    return write(tmp_path / "pairs.csv", header + "\n" + "\n".join(rows) + "\n")


GOOD_ROWS = ["img/a1.png,img/a2.png,1", "img/b1.png,img/b2.png,1", "img/a1.png,img/b2.png,0"]


def test_pairs_resolve_paths_against_the_csv_folder(tmp_path, monkeypatch):
    path = make_pairs(tmp_path, GOOD_ROWS)
    monkeypatch.chdir(tmp_path.parent)  # not the CSV's folder
    pairs = read_pairs(path, image_size=4)
    assert isinstance(pairs, PairData) and len(pairs) == 3 and pairs.kind == "images"
    assert pairs.left.shape == pairs.right.shape == (3, 1, 4, 4)
    assert pairs.same.tolist() == [1, 1, 0]
    a, b = 60 / 255, 200 / 255
    assert [float(x.mean()) for x in pairs.left] == pytest.approx([a, b, a])
    assert [float(x.mean()) for x in pairs.right] == pytest.approx([a, b, b])
    assert str(path) in pairs.source
    subset = pairs.subset(torch.tensor([2]))
    assert subset.same.tolist() == [0] and subset.left.shape == (1, 1, 4, 4)


def test_pairs_accept_absolute_paths(tmp_path):
    absolute = str(tmp_path / "img" / "b1.png")
    path = make_pairs(tmp_path, [*GOOD_ROWS, f"{absolute},img/a2.png,0"])
    assert read_pairs(path, image_size=4).same.tolist() == [1, 1, 0, 0]


def test_pairs_missing_columns(tmp_path):
    path = make_pairs(tmp_path, ["img/a1.png,img/a2.png,1"], header="first,right,same")
    with pytest.raises(DataError) as caught:
        read_pairs(path)
    message = str(caught.value)
    assert str(path) in message and "left, label" in message and "first, right, same" in message


@pytest.mark.parametrize("label", ["2", "yes", "", "-1", "1.0"])
def test_pairs_label_must_be_zero_or_one(tmp_path, label):
    path = make_pairs(tmp_path, [*GOOD_ROWS, f"img/a1.png,img/b1.png,{label}"])
    with pytest.raises(DataError, match=f"{names_path(path)} line 5: label must be 0 or 1"):
        read_pairs(path)


def test_pairs_missing_image(tmp_path):
    path = make_pairs(tmp_path, [*GOOD_ROWS, "img/a1.png,img/ghost.png,0"])
    with pytest.raises(DataError, match=f"{names_path(path)} names img/ghost.png, which does not"):
        read_pairs(path)


def test_pairs_unreadable_image(tmp_path):
    path = make_pairs(tmp_path, GOOD_ROWS)
    write(tmp_path / "img" / "b2.png", "garbage")
    with pytest.raises(DataError, match=r"cannot read image .*b2\.png"):
        read_pairs(path)


@pytest.mark.parametrize("kind", ["0", "1"])
def test_pairs_need_both_kinds(tmp_path, kind):
    path = make_pairs(tmp_path, [f"img/a1.png,img/a2.png,{kind}", f"img/b1.png,img/b2.png,{kind}"])
    with pytest.raises(DataError, match=f"{names_path(path)} needs both matching"):
        read_pairs(path)


def test_pairs_empty_or_missing_file(tmp_path):
    path = make_pairs(tmp_path, [])
    with pytest.raises(DataError, match=f"{names_path(path)} has no pairs"):
        read_pairs(path)
    with pytest.raises(DataError, match=r"pair file .*none\.csv does not exist"):
        read_pairs(tmp_path / "none.csv")


def test_pairs_with_a_byte_order_mark(tmp_path):
    path = make_pairs(tmp_path, GOOD_ROWS)
    path.write_text(path.read_text(), encoding="utf-8-sig")  # as spreadsheets save CSV
    assert len(read_pairs(path, image_size=4)) == 3


# --- split_indices -----------------------------------------------------------------


def check_split(labels, parts):
    every = torch.cat(parts)
    assert sorted(every.tolist()) == list(range(len(labels))), "disjoint and complete"
    for part in parts:
        assert torch.equal(part, part.sort().values)
        assert part.dtype == torch.int64
    for c in labels.unique().tolist():
        n = int((labels == c).sum())
        n_train, n_val, n_test = (int((labels[p] == c).sum()) for p in parts)
        assert n_train >= 1
        if n >= 6:
            assert n_val >= 2 and n_test >= 2
        elif n >= 3:
            assert n_val >= 1 and n_test >= 1
        elif n == 2:
            assert n_train == 1 and n_val + n_test == 1


def test_split_is_stratified():
    labels = torch.arange(200) % 4
    parts = split_indices(labels, fractions=(0.2, 0.3), seed=1)
    check_split(labels, parts)
    train, val, test = parts
    for c in range(4):
        assert int((labels[val] == c).sum()) == 10
        assert int((labels[test] == c).sum()) == 15
        assert int((labels[train] == c).sum()) == 25


def test_split_is_reproducible_and_depends_on_the_seed():
    labels = torch.arange(90) % 3
    a = split_indices(labels, seed=5)
    b = split_indices(labels, seed=5)
    c = split_indices(labels, seed=6)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


def test_split_small_classes():
    # six: two to each held-out split even though 20 % of 6 rounds to one
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 5 + [3] * 2 + [4] * 2 + [5])
    parts = split_indices(labels, seed=0)
    check_split(labels, parts)
    count = {
        name: torch.bincount(labels[p], minlength=6).tolist()
        for name, p in zip("tvs", parts, strict=True)
    }
    assert count["v"][0] == 2 and count["s"][0] == 2 and count["t"][0] == 2
    assert count["v"][1] == count["s"][1] == count["t"][1] == 1
    # classes of two take turns between validation and test
    assert (count["v"][3], count["s"][3]) == (1, 0)
    assert (count["v"][4], count["s"][4]) == (0, 1)
    assert count["t"][5] == 1 and count["v"][5] == count["s"][5] == 0


def test_split_with_one_constant_label_is_a_plain_random_split():
    train, val, test = split_indices(torch.zeros(50, dtype=torch.int64), seed=3)
    assert (len(train), len(val), len(test)) == (30, 10, 10)


@pytest.mark.parametrize(
    "fractions", [(0.0, 0.2), (0.2, 0.0), (0.5, 0.5), (0.7, 0.4), (-0.1, 0.2), (1.0, 0.1)]
)
def test_split_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions must be two positive numbers summing below 1"):
        split_indices(torch.arange(20) % 2, fractions=fractions)


def test_split_nan_fraction():
    with pytest.raises(ValueError, match="fractions"):
        split_indices(torch.arange(20) % 2, fractions=(float("nan"), 0.2))


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=8),
    val=st.floats(0.01, 0.6),
    test=st.floats(0.01, 0.6),
    seed=st.integers(0, 2**31 - 1),
    shuffle=st.randoms(use_true_random=False),
)
def test_split_invariants_for_any_class_sizes(counts, val, test, seed, shuffle):
    if val + test >= 0.99:
        val, test = val / 2, test / 2
    labels = [c * 7 for c, n in enumerate(counts) for _ in range(n)]  # labels need not be 0..K-1
    shuffle.shuffle(labels)
    labels = torch.tensor(labels)
    parts = split_indices(labels, fractions=(val, test), seed=seed)
    check_split(labels, parts)
    again = split_indices(labels, fractions=(val, test), seed=seed)
    assert all(torch.equal(u, v) for u, v in zip(parts, again, strict=True))


# --- bad input: damaged and oversized images ---------------------------------------


def png_header_only(path, width, height):
    """A PNG that declares ``width`` × ``height`` pixels but holds almost no data."""
    import struct
    import zlib

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_decompression_bomb_is_a_data_error_naming_the_file(tmp_path):
    bomb = png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(DataError, match=f"image {names_path(bomb)} is too large to read") as caught:
        read_images([bomb], image_size=8)
    assert "shrink it" in str(caught.value) and "\n" not in str(caught.value)
    root = make_folder(tmp_path / "imgs", [2, 2])
    png_header_only(root / "c1" / "huge.png", 20000, 20000)
    with pytest.raises(DataError, match=r"huge\.png is too large"):
        read_image_folder(root, image_size=4)


def test_image_above_pillows_warning_limit_is_refused_not_warned(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 30)
    small = save_image(tmp_path / "small.png", 9, size=(5, 5))  # 25 pixels: fine
    assert read_images([small], image_size=2).shape == (1, 1, 2, 2)
    # 36 pixels: above the limit, below twice it, where Pillow only warns
    large = save_image(tmp_path / "large.png", 9, size=(6, 6))
    with pytest.raises(DataError, match=f"image {names_path(large)} is too large"):
        read_images([small, large], image_size=2)


def test_truncated_image_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "cut.png"
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=f"cannot read image {names_path(path)}"):
        read_images([path], image_size=4)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".bmp", ".tif", ".webp"])
def test_damaged_images_are_data_errors(tmp_path, suffix):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for trial in range(20):
        path = tmp_path / f"{trial}{suffix}"
        Image.fromarray(pixels).save(path)
        data = bytearray(path.read_bytes())
        if trial % 2:
            data = data[: int(rng.integers(1, len(data)))]
        else:
            for at in rng.integers(0, len(data), 6):
                data[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            read_images([path], image_size=4)
        except DataError as error:
            assert str(path) in str(error)
        except UserWarning as warning:  # Pillow's warning about a damaged file, as an error
            assert str(path) in str(warning)
        # else: the damage fell where the decoder does not look; any outcome but a
        # traceback from Pillow is fine


def test_image_mode_that_cannot_be_converted(tmp_path):
    path = tmp_path / "lab.tif"
    Image.new("LAB", (4, 4)).save(path)
    assert read_images([path], image_size=2).shape == (1, 3, 2, 2)
    with pytest.raises(DataError, match=f"cannot convert image {names_path(path)} \\(LAB\\) to L"):
        read_images([path], image_size=2, channels=1)


def test_pillows_warnings_name_the_file(tmp_path, monkeypatch):
    import warnings

    import PIL.ImageFile

    path = save_image(tmp_path / "a.png")
    load = PIL.ImageFile.ImageFile.load

    def load_with_a_warning(self):
        warnings.warn_explicit("Corrupt EXIF data", UserWarning, PIL.ImageFile.__file__, 1)
        return load(self)

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", load_with_a_warning)
    with pytest.warns(UserWarning, match=f"image {names_path(path)}: Corrupt EXIF data"):
        read_images([path], image_size=2)


# --- bad input: feature files ------------------------------------------------------


@pytest.mark.parametrize("cell", ["", "  "])
def test_csv_empty_label_is_refused_with_its_line(tmp_path, cell):
    path = write(tmp_path / "f.csv", f"a,label\n1,x\n2,y\n3,{cell}\n")
    with pytest.raises(DataError, match=f"{names_path(path)} line 4 has an empty label"):
        read_features(path)
    # read as new data to embed, the label column is left out whatever it holds
    assert read_feature_vectors(path).tolist() == [[1], [2], [3]]
    assert read_features(path, label_column=None, exclude_columns=("label",)).shape == (3, 1)


def test_npz_empty_label_is_refused_with_its_row(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, features=FEATURES, label=np.array(["a", "b", "a", " ", "b", "a"]))
    with pytest.raises(DataError, match=r"include an empty one \(row 3\)"):
        read_features(path)
    assert read_feature_vectors(path).shape == (6, 4)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("id,a,label\nx7,1,p\ny3,2,q\n", "line 2 has a value that is not a number in column 'id'"),
        ("a,b,label\n1,2,p\n3,,q\n", "line 3 has a missing value in column 'b'"),
        ("a,b,label\n1,2,p\n3, ,q\n", "line 3 has a missing value in column 'b'"),
    ],
)
def test_csv_value_errors_name_line_and_column_and_the_way_out(tmp_path, text, match):
    path = write(tmp_path / "f.csv", text)
    with pytest.raises(DataError, match=match) as caught:
        read_features(path)
    message = str(caught.value)
    assert str(path) in message and "--exclude-columns" in message
    assert "pair file" not in message


def test_exclude_columns_leaves_columns_out(tmp_path):
    path = write(tmp_path / "f.csv", "id,a,date,b,label\nx7,1,2020-01-01,2,p\ny3,3,,4,q\n")
    data = read_features(path, exclude_columns=["id", "date"])
    assert data.inputs.tolist() == [[1, 2], [3, 4]] and data.class_names == ["p", "q"]
    unlabelled = read_features(path, label_column=None, exclude_columns=("id", "date", "label"))
    assert unlabelled.tolist() == [[1, 2], [3, 4]]
    assert read_feature_vectors(path, exclude_columns=("id", " date ")).tolist() == [[1, 2], [3, 4]]


def test_exclude_columns_errors(tmp_path):
    path = write(tmp_path / "f.csv", "id,a,label\nx,1,p\ny,2,q\n")
    with pytest.raises(
        DataError, match=r"has no column 'idx' to leave out \(columns: id, a, label"
    ):
        read_features(path, exclude_columns=("idx",))
    with pytest.raises(DataError, match="the label column 'label' cannot also be left out"):
        read_features(path, exclude_columns=("id", "label"))
    with pytest.raises(TypeError, match="exclude_columns must be a sequence of column names"):
        read_features(path, exclude_columns="id")
    with pytest.raises(TypeError, match="exclude_columns"):
        read_feature_vectors(path, exclude_columns=[3])
    # new data to embed may lack a left-out column: only the ones it has are left out
    other = write(tmp_path / "g.csv", "a,label\n1,p\n")
    assert read_feature_vectors(other, exclude_columns=("id",)).tolist() == [[1.0]]
    archive = tmp_path / "f.npz"
    np.savez(archive, features=FEATURES, label=np.arange(6) % 2)
    with pytest.raises(DataError, match=f"{names_path(archive)} is a .npz archive.*leave id out"):
        read_features(archive, exclude_columns=("id",))
    assert read_feature_vectors(archive, exclude_columns=("id",)).shape == (6, 4)


def test_non_finite_values_are_located(tmp_path):
    path = write(tmp_path / "f.csv", "a,b,label\n1,2,p\n3,inf,q\n")
    with pytest.raises(DataError, match=r"contain NaN or infinite values .*line 3, column 'b'"):
        read_features(path)
    archive = tmp_path / "f.npz"
    np.savez(archive, features=np.where(FEATURES == 6, np.nan, FEATURES), label=np.arange(6) % 2)
    with pytest.raises(DataError, match=r"nan at row 1, column 2"):
        read_features(archive)


def test_damaged_npz_is_a_data_error(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, features=FEATURES, label=np.arange(6) % 2)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=f"cannot read {names_path(path)}"):
        read_features(path)


# --- is_pair_file ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("left,right,label", True),
        ("label,left,right", True),
        (" left , right ,label ", True),
        ('"left","right","label"', True),
        ("left,right,label,x", False),  # a feature file with those columns among others
        ("id,left,right,label", False),
        ("left,right,label,", False),
        ("left,right", False),
        ("left,left,right,label", False),
        ("Left,Right,Label", False),
        ("left;right;label", False),
        ("", False),
    ],
)
def test_is_pair_file_needs_exactly_the_three_columns(tmp_path, header, expected):
    path = write(tmp_path / "f.csv", header + "\n")
    assert is_pair_file(path) is expected


def test_is_pair_file_other_files(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_text("left,right,label\n", encoding="utf-8-sig")
    assert is_pair_file(bom) and is_pair_file(str(bom))
    assert not is_pair_file(write(tmp_path / "p.txt", "left,right,label\n"))
    upper = write(tmp_path / "P.CSV", "left,right,label\n")
    assert is_pair_file(upper)
    assert not is_pair_file(tmp_path / "missing.csv")
    (tmp_path / "dir.csv").mkdir()
    assert not is_pair_file(tmp_path / "dir.csv")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(bytes(range(256)))
    assert not is_pair_file(binary)


def test_feature_file_with_pair_column_names_reads_as_features(tmp_path):
    path = write(tmp_path / "f.csv", "left,right,top,label\n1,2,3,a\n4,5,6,b\n")
    assert not is_pair_file(path)
    assert read_features(path).inputs.tolist() == [[1, 2, 3], [4, 5, 6]]
    # a pair file with a stray column is read as features; the error says why
    pairs = write(tmp_path / "p.csv", "left,right,label,note\na.png,b.png,1,x\n")
    with pytest.raises(DataError, match="a pair file has exactly the columns left, right and"):
        read_features(pairs)


@pytest.mark.parametrize("row", [",img/a2.png,1", "img/a1.png,,0", "img/a1.png"])
def test_pairs_empty_path_is_refused_with_its_line(tmp_path, row):
    path = make_pairs(tmp_path, [*GOOD_ROWS, row])
    with pytest.raises(DataError, match=f"{names_path(path)} line 5: the (left|right) image path"):
        read_pairs(path)


def test_a_csv_without_a_header_row_is_refused_not_read_short(tmp_path):
    file = tmp_path / "rows.csv"
    file.write_text("0.5,1.5,2\n0.1,0.2,3\n")
    with pytest.raises(DataError, match=r"rows.csv has no header row: .*0\.5, 1\.5, 2"):
        read_feature_vectors(file)
    with pytest.raises(DataError, match="no header row"):
        read_features(file, label_column="2")


def test_numbered_column_names_are_a_header(tmp_path):
    file = tmp_path / "numbered.csv"
    file.write_text("0,1,2\n0.5,1.5,2.5\n0.1,0.2,0.3\n")
    expected = torch.tensor([[0.5, 1.5, 2.5], [0.1, 0.2, 0.3]])
    torch.testing.assert_close(read_feature_vectors(file), expected)
