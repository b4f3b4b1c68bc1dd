"""The lazy image folder: the eager reader's tensors, decoded one image at a time."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from contrastkit.data import (
    UNLABELLED,
    ClassBalancedBatchSampler,
    ImageFileError,
    ImageFolderDataset,
)
from contrastkit.data.readers import DataError, list_image_folder, read_image_folder


def save(path, mode="RGB", size=(7, 5), seed=0):
    """A small image of random pixels in ``mode``, saved as PNG (or by its suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        array = rng.integers(0, 65536, size=size[::-1], dtype=np.uint16)
        Image.fromarray(array).save(path)
        return path
    bands = len(Image.new(mode, (1, 1)).getbands())
    array = rng.integers(0, 256, size=(size[1], size[0], bands), dtype=np.uint8)
    image = Image.fromarray(array.squeeze(-1) if bands == 1 else array)
    image.convert(mode).save(path)
    return path


def folder(root, modes_by_class, sizes=((7, 5), (4, 9), (12, 12))):
    """``root/cK/I.png`` with the given modes, sizes cycling, every image different."""
    for c, modes in enumerate(modes_by_class):
        for i, mode in enumerate(modes):
            save(root / f"c{c}" / f"{i}.png", mode, sizes[i % len(sizes)], seed=10 * c + i)
    return root


def named(path):
    return re.escape(str(path))


def stacked(dataset):
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


# --- the eager reader's tensors -----------------------------------------------------


@pytest.mark.parametrize(
    "modes",
    [
        [["L", "L", "L"], ["L", "L"]],  # grayscale: 1 channel
        [["RGB", "RGB"], ["RGB", "RGB", "RGB"]],  # colour: 3
        [["RGB", "L", "RGBA"], ["P", "LA", "L"]],  # colour first, then anything: 3
        [["LA", "I;16"], ["L", "1"]],  # every grayscale mode, 16-bit scaled: 1
    ],
    ids=["gray", "rgb", "mixed", "gray-modes"],
)
def test_equal_to_read_image_folder_tensors_labels_and_order(tmp_path, modes):
    root = folder(tmp_path / "imgs", modes)
    eager = read_image_folder(root, image_size=6)
    lazy = ImageFolderDataset(root, image_size=6)
    assert lazy.channels == eager.inputs.shape[1]
    assert torch.equal(stacked(lazy), eager.inputs)  # the same float32 values, in order
    assert torch.equal(lazy.labels, eager.labels) and lazy.labels.dtype == torch.int64
    assert [lazy[i][1] for i in range(len(lazy))] == eager.labels.tolist()
    assert lazy.class_names == eager.class_names and lazy.labelled
    assert lazy.paths == eager.paths and lazy.path(-1) == Path(eager.paths[-1])


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_given_convert_every_image_as_the_eager_reader(tmp_path, channels):
    root = folder(tmp_path / "imgs", [["L", "RGBA", "RGB"], ["P", "LA", "I;16"]])
    lazy = ImageFolderDataset(root, image_size=5, channels=channels)
    eager = read_image_folder(root, image_size=5, channels=channels)
    assert lazy.channels == channels and lazy[0][0].shape == (channels, 5, 5)
    assert torch.equal(stacked(lazy), eager.inputs)


def test_item_is_a_float_tensor_in_unit_range(tmp_path):
    root = folder(tmp_path / "imgs", [["RGB", "RGB"], ["RGB", "RGB"]])
    pixels, label = ImageFolderDataset(root, image_size=8)[3]
    assert pixels.dtype == torch.float32 and pixels.shape == (3, 8, 8)
    assert 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
    assert pixels.is_contiguous() and isinstance(label, int) and label == 1


def test_gray_first_then_colour_asks_for_three_channels_naming_both_files(tmp_path):
    root = folder(tmp_path / "imgs", [["L", "L"], ["L", "RGB"]])
    lazy = ImageFolderDataset(root, image_size=4)  # inferred from c0/0.png: grayscale
    assert lazy.channels == 1
    assert lazy[2][0].shape == (1, 4, 4)
    colour, first = root / "c1" / "1.png", root / "c0" / "0.png"
    with pytest.raises(ImageFileError, match="pass channels=3") as caught:
        lazy[3]
    message = str(caught.value)
    assert str(colour) in message and str(first) in message and "\n" not in message
    # given, the eager reader's answer for the mixed folder
    three = ImageFolderDataset(root, image_size=4, channels=3)
    assert torch.equal(stacked(three), read_image_folder(root, image_size=4).inputs)


def test_channels_come_from_the_first_header_only(tmp_path, monkeypatch):
    import contrastkit.data.images as images

    root = folder(tmp_path / "imgs", [["RGB", "L"], ["L", "L"]])
    seen = []
    real = images.image_mode
    monkeypatch.setattr(images, "image_mode", lambda path: seen.append(path) or real(path))
    decoded = []
    monkeypatch.setattr(images, "open_image", lambda path: decoded.append(path))
    dataset = ImageFolderDataset(root, image_size=4)
    assert seen == [root / "c0" / "0.png"] and decoded == []  # nothing decoded
    assert dataset.channels == 3


# --- flat folders: unlabelled ------------------------------------------------------


def test_flat_folder_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    for i, mode in enumerate(["RGB", "L", "RGBA"]):
        save(root / f"{i}.png", mode, seed=i)
    (root / "notes.txt").write_text("not an image")
    save(root / ".hidden.png")
    save(root / ".cache" / "x.png")  # a hidden folder is not a class
    dataset = ImageFolderDataset(root, image_size=3)
    assert len(dataset) == 3 and not dataset.labelled and dataset.class_names == []
    assert dataset.labels.tolist() == [UNLABELLED] * 3 and UNLABELLED == -1
    assert [dataset[i][1] for i in range(3)] == [-1, -1, -1]
    assert dataset.channels == 3 and "no classes, 3 images" in dataset.source
    from contrastkit.data.readers import read_images

    assert torch.equal(stacked(dataset), read_images(dataset.paths, image_size=3))
    with pytest.raises(DataError, match=f"{named(root)} has no class subfolders"):
        ImageFolderDataset(root, allow_unlabelled=False)


def test_a_folder_with_classes_ignores_images_beside_them(tmp_path):
    root = folder(tmp_path / "imgs", [["L", "L"], ["L", "L"]])
    save(root / "stray.png", "L")
    assert len(ImageFolderDataset(root)) == 4
    files = list_image_folder(root, flat=True)
    assert files.class_names == ["c0", "c1"] and files.labels == [0, 0, 1, 1]


# --- DataLoader workers ------------------------------------------------------------


def test_batches_are_the_same_with_and_without_workers(tmp_path):
    root = folder(tmp_path / "imgs", [["RGB"] * 5, ["L"] * 4, ["RGBA"] * 4])

    def batches(num_workers, sampler=None):
        dataset = ImageFolderDataset(root, image_size=5)
        if sampler is None:
            generator = torch.Generator().manual_seed(3)
            loader = DataLoader(
                dataset, batch_size=4, shuffle=True, generator=generator, num_workers=num_workers
            )
        else:
            loader = DataLoader(dataset, batch_sampler=sampler(dataset), num_workers=num_workers)
        return list(loader)

    def balanced(dataset):
        return ClassBalancedBatchSampler(
            dataset.labels, classes_per_batch=2, samples_per_class=2, seed=1
        )

    for sampler in (None, balanced):
        serial, parallel = batches(0, sampler), batches(2, sampler)
        assert len(serial) == len(parallel) > 1
        for (x0, y0), (x2, y2) in zip(serial, parallel, strict=True):
            assert x0.shape[1:] == (3, 5, 5) and torch.equal(x0, x2) and torch.equal(y0, y2)
    shuffled = torch.cat([y for _, y in batches(0)])
    assert sorted(shuffled.tolist()) == [0] * 5 + [1] * 4 + [2] * 4  # each image once


def test_the_dataset_pickles_for_spawned_workers(tmp_path):
    root = folder(tmp_path / "imgs", [["L", "L"], ["L", "L", "L"]])
    dataset = ImageFolderDataset(root, image_size=4)
    copy = pickle.loads(pickle.dumps(dataset))
    assert len(copy) == 5 and copy.paths == dataset.paths
    assert torch.equal(stacked(copy), stacked(dataset))


# --- damaged images ----------------------------------------------------------------


def test_a_corrupt_image_is_found_when_it_is_loaded_naming_it(tmp_path):
    root = folder(tmp_path / "imgs", [["RGB", "RGB"], ["RGB", "RGB"]])
    bad = root / "c1" / "0.png"
    bad.write_text("this is not a PNG")
    dataset = ImageFolderDataset(root, image_size=4)  # listing reads no pixels
    assert len(dataset) == 4 and dataset[0][0].shape == (3, 4, 4)
    with pytest.raises(ImageFileError, match=f"^cannot read image {named(bad)}") as caught:
        dataset[2]
    assert "\n" not in str(caught.value) and caught.value.worker_traceback is None
    assert isinstance(caught.value, DataError) and isinstance(caught.value, ValueError)


def test_a_truncated_image_names_the_file(tmp_path):
    root = folder(tmp_path / "imgs", [["RGB", "RGB"], ["RGB", "RGB"]], sizes=((40, 40),))
    bad = root / "c0" / "1.png"
    bad.write_bytes(bad.read_bytes()[:80])
    with pytest.raises(ImageFileError, match=f"cannot read image {named(bad)}"):
        ImageFolderDataset(root, image_size=4)[1]


def loader_error(loader):
    """The message and worker traceback of the ImageFileError that iterating raises.

    torch raises a worker's error again from a frame that holds it (a reference cycle:
    the error, its traceback, that frame), so the DataLoader iterator in the traceback
    would be freed, and its workers shut down, only by the garbage collector, which
    takes seconds over it. Dropping the traceback frees it at once.
    """
    try:
        list(loader)
    except ImageFileError as error:
        error.__traceback__ = None
        return str(error), error.worker_traceback
    raise AssertionError("the loader raised no ImageFileError")


def test_a_corrupt_image_in_a_worker_surfaces_in_one_line_naming_it(tmp_path):
    root = folder(tmp_path / "imgs", [["L", "L", "L"], ["L", "L", "L"]])
    bad = root / "c1" / "2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    loader = DataLoader(ImageFolderDataset(root, image_size=4), batch_size=2, num_workers=2)
    message, worker_traceback = loader_error(loader)
    assert re.fullmatch(
        f"cannot read image {named(bad)}: .* \\(in DataLoader worker process [01]\\)", message
    )
    assert "\n" not in message
    assert "Traceback" in worker_traceback and str(bad) in worker_traceback
    # in the main process, the same message without the worker's number
    serial = DataLoader(ImageFolderDataset(root, image_size=4), batch_size=2)
    assert loader_error(serial) == (message.rsplit(" (in DataLoader", 1)[0], None)


def test_an_oversized_image_is_refused_when_loaded(tmp_path, monkeypatch):
    root = folder(tmp_path / "imgs", [["L", "L"], ["L", "L"]], sizes=((5, 5),))
    save(root / "c1" / "2.png", "L", size=(6, 6))  # 36 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)
    dataset = ImageFolderDataset(root, image_size=2)
    assert dataset[0][0].shape == (1, 2, 2)
    with pytest.raises(ImageFileError, match=f"image {named(root / 'c1' / '2.png')} is too large"):
        dataset[4]
    # the first image's header, read to infer the channels, is refused at once
    save(root / "c0" / "0.png", "L", size=(6, 6))
    with pytest.raises(DataError, match=f"image {named(root / 'c0' / '0.png')} is too large"):
        ImageFolderDataset(root, image_size=2)


def test_a_corrupt_first_image_fails_at_listing_only_when_channels_are_inferred(tmp_path):
    root = folder(tmp_path / "imgs", [["RGB", "RGB"], ["RGB", "RGB"]])
    first = root / "c0" / "0.png"
    first.write_text("junk")
    with pytest.raises(DataError, match=f"^cannot read image {named(first)}"):
        ImageFolderDataset(root)
    dataset = ImageFolderDataset(root, image_size=4, channels=3)  # nothing read
    assert dataset.labels.tolist() == [0, 0, 1, 1]  # labels without decoding
    with pytest.raises(ImageFileError, match=named(first)):
        dataset[0]


def test_a_mode_that_cannot_be_converted_names_the_file(tmp_path):
    root = folder(tmp_path / "imgs", [["L", "L"], ["L"]])
    lab = root / "c1" / "lab.tif"
    Image.new("LAB", (4, 4)).save(lab)
    dataset = ImageFolderDataset(root, image_size=2, channels=1)
    with pytest.raises(ImageFileError, match=f"cannot convert image {named(lab)} \\(LAB\\) to L"):
        dataset[3]


def test_worker_report_parsing_keeps_other_messages(tmp_path):
    plain = ImageFileError("cannot read image a.png: broken")
    assert str(plain) == "cannot read image a.png: broken" and plain.worker_traceback is None
    report = (
        "Caught ImageFileError in DataLoader worker process 3.\n"
        "Original Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "contrastkit.data.images.ImageFileError: cannot read image b.png: truncated\n"
    )
    error = ImageFileError(report)
    assert str(error) == "cannot read image b.png: truncated (in DataLoader worker process 3)"
    assert error.worker_traceback == report
    odd = "Caught ImageFileError in DataLoader worker process 3.\nsomething else"
    assert str(ImageFileError(odd)) == odd


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"image_size": 0}, ValueError, "image_size must be >= 1, got 0"),
        ({"image_size": -3}, ValueError, "image_size must be >= 1, got -3"),
        ({"image_size": 2.5}, TypeError, "image_size must be an integer, got float 2.5"),
        ({"image_size": "64"}, TypeError, "image_size must be an integer, got str"),
        ({"image_size": True}, TypeError, "image_size must be an integer, got bool"),
        ({"channels": 2}, ValueError, "channels must be 1, 3 or None, got 2"),
        ({"channels": 0}, ValueError, "channels must be 1, 3 or None, got 0"),
        ({"channels": 4}, ValueError, "channels must be 1, 3 or None, got 4"),
        ({"channels": 3.0}, TypeError, "channels must be an integer, got float"),
        ({"channels": "3"}, TypeError, "channels must be an integer, got str"),
        ({"channels": True}, TypeError, "channels must be an integer, got bool"),
        ({"allow_unlabelled": "yes"}, TypeError, "allow_unlabelled must be a bool, got str"),
        ({"allow_unlabelled": 1}, TypeError, "allow_unlabelled must be a bool, got int"),
    ],
)
def test_bad_arguments_are_named_before_the_folder_is_read(tmp_path, kwargs, error, pattern):
    missing = tmp_path / "missing"  # the arguments are checked first
    with pytest.raises(error, match=pattern):
        ImageFolderDataset(missing, **kwargs)


def test_bad_folders_are_data_errors_naming_them(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(DataError, match=f"image folder {named(missing)} does not exist"):
        ImageFolderDataset(missing)
    file = save(tmp_path / "one.png")
    with pytest.raises(DataError, match=f"{named(file)} is not a folder"):
        ImageFolderDataset(file)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match=f"{named(empty)} has no images and no class subfolders"):
        ImageFolderDataset(empty)
    with pytest.raises(DataError, match=f"{named(empty)} has no class subfolders"):
        ImageFolderDataset(empty, allow_unlabelled=False)
    one = folder(tmp_path / "one-image", [["L", "L"], ["L"]])
    with pytest.raises(DataError, match=f"{named(one / 'c1')} has 1 image.*at least 2"):
        ImageFolderDataset(one)
    one_class = folder(tmp_path / "one-class", [["L", "L", "L"]])
    with pytest.raises(DataError, match=f"{named(one_class)} has 1 class; at least 2"):
        ImageFolderDataset(one_class)
    no_images = folder(tmp_path / "no-images", [["L", "L"]])
    (no_images / "c1").mkdir()
    with pytest.raises(DataError, match=f"class folder {named(no_images / 'c1')} has no images"):
        ImageFolderDataset(no_images)


def test_bad_indices(tmp_path):
    dataset = ImageFolderDataset(folder(tmp_path / "imgs", [["L", "L"], ["L", "L"]]), image_size=3)
    assert torch.equal(dataset[-1][0], dataset[3][0]) and dataset[-4][1] == 0
    assert dataset[np.int64(2)][1] == 1 and dataset.path(np.int32(0)).name == "0.png"
    for index in (4, -5, 100):
        with pytest.raises(IndexError, match=f"index {index} is out of range for 4 images"):
            dataset[index]
    for index, kind in ((1.0, "float"), ("0", "str"), (True, "bool"), (None, "NoneType")):
        with pytest.raises(TypeError, match=f"index must be an integer, got {kind}"):
            dataset[index]
    with pytest.raises(IndexError):
        dataset.path(4)
