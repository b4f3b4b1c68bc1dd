"""Data for the trainer and the command line: the bundled digits and the user's own files.

* :func:`load_digits` — scikit-learn's handwritten digits (1,797 images of 8×8 pixels,
  10 classes), bundled with scikit-learn: nothing is downloaded.
* :func:`read_image_folder` — a folder with one subfolder of images per class
  (identity), as for face or signature verification.
* :func:`read_features` — a ``.npz`` or ``.csv`` of feature vectors with a label column
  (:func:`read_feature_vectors` — the vectors alone, labelled or not).
* :func:`read_pairs` — a ``.csv`` of explicit pairs ``left,right,label`` whose ``left``
  and ``right`` are image paths relative to the CSV file.
* :func:`split_indices` — a stratified, seeded train / validation / test split.

Every reader checks its input before loading it and raises :class:`DataError` (a
:class:`ValueError`) with a one-line message that names the file or folder.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGE_SUFFIXES",
    "DataError",
    "LabelledData",
    "PairData",
    "load_digits",
    "read_feature_vectors",
    "read_features",
    "read_image_folder",
    "read_images",
    "read_pairs",
    "split_indices",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
_NPZ_FEATURES = ("features", "x", "X")


class DataError(ValueError):
    """Input data that cannot be used, with a message naming the file or folder."""


@dataclass
class LabelledData:
    """Samples with integer class labels.

    Attributes:
        inputs: ``(N, F)`` feature vectors or ``(N, C, H, W)`` images, float32.
        labels: ``(N,)`` int64 class indices into ``class_names``.
        class_names: the name of each class.
        kind: ``"vectors"`` or ``"images"``.
        source: where the data came from, for the report.
    """

    inputs: Tensor
    labels: Tensor
    class_names: list[str]
    kind: Literal["vectors", "images"]
    source: str
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: Tensor) -> LabelledData:
        """The samples at ``index``, keeping every class name."""
        paths = [self.paths[i] for i in index.tolist()] if self.paths else []
        return LabelledData(
            self.inputs[index], self.labels[index], self.class_names, self.kind, self.source, paths
        )


@dataclass
class PairData:
    """Explicit pairs: ``same[i] = 1`` if ``left[i]`` and ``right[i]`` match, else 0."""

    left: Tensor
    right: Tensor
    same: Tensor
    kind: Literal["vectors", "images"]
    source: str

    def __len__(self) -> int:
        return int(self.same.shape[0])

    def subset(self, index: Tensor) -> PairData:
        """The pairs at ``index``."""
        return PairData(
            self.left[index], self.right[index], self.same[index], self.kind, self.source
        )


def load_digits() -> LabelledData:
    """scikit-learn's handwritten digits as 64 pixel values in [0, 16] per sample.

    Example:
        >>> data = load_digits()
        >>> data.inputs.shape, data.class_names[:3], data.kind
        (torch.Size([1797, 64]), ['0', '1', '2'], 'vectors')
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return LabelledData(
        inputs=torch.as_tensor(bunch.data, dtype=torch.float32),
        labels=torch.as_tensor(bunch.target, dtype=torch.int64),
        class_names=[str(int(c)) for c in bunch.target_names],
        kind="vectors",
        source="scikit-learn handwritten digits (8×8 pixels, 10 classes, bundled)",
    )


def _exists(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in (IMAGE_SUFFIXES)
    )


def read_images(paths: Sequence[Path], *, image_size: int, channels: int | None = None) -> Tensor:
    """Load image files as one ``(N, C, S, S)`` float tensor with values in [0, 1].

    Every image is resized to ``image_size`` × ``image_size``. With ``channels=None`` the
    images are kept grayscale (1 channel) when all of them are, else converted to RGB.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image size must be a positive integer, got {image_size!r}")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                images.append(image.copy())
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise DataError(f"cannot read image {path}: {error}") from None
    if channels is None:
        gray = all(image.mode in ("1", "L", "LA", "F") or _wide(image) for image in images)
        channels = 1 if gray else 3
    mode = "L" if channels == 1 else "RGB"
    array = np.stack([_pixels(image, mode, image_size) for image in images])
    if channels == 1:
        array = array[:, None]
    else:
        array = array.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array))


def _wide(image: Any) -> bool:
    """A 16- or 32-bit integer grayscale image (``I``, ``I;16``, ``I;16B``, …)."""
    return image.mode == "I" or image.mode.startswith("I;16")


def _pixels(image: Any, mode: str, size: int) -> np.ndarray:
    """One image resized to ``size`` × ``size``, as float32 values in [0, 1]."""
    from PIL import Image

    if _wide(image):
        # PIL converts 16-bit grayscale to L by clipping at 255, not by scaling: scale here.
        scaled = np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
        resized = Image.fromarray(scaled).resize((size, size), Image.Resampling.BILINEAR)
        gray = np.asarray(resized, dtype=np.float32)
        return gray if mode == "L" else np.repeat(gray[..., None], 3, axis=2)
    resized = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def read_image_folder(
    folder: str | Path, *, image_size: int = 64, channels: int | None = None
) -> LabelledData:
    """A folder with one subfolder of images per class (identity).

    ``folder/alice/1.jpg, folder/alice/2.jpg, folder/bob/1.jpg, …``: the subfolder names
    are the class names (sorted). Files whose suffix is not an image suffix, and hidden
    files, are ignored. Every class needs at least two images (a pair of the same
    identity); an empty folder, a class with one image or an unreadable image is a
    :class:`DataError` naming it.

    Args:
        folder: the root folder.
        image_size: every image is resized to ``image_size`` × ``image_size`` pixels.
        channels: 1 (grayscale) or 3 (RGB); ``None`` keeps grayscale when every image is.
    """
    root = Path(folder)
    _exists(root, "image folder")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (expected one subfolder of images per class)")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {root} has no class subfolders (expected root/CLASS/IMAGE)")
    paths: list[Path] = []
    labels: list[int] = []
    for index, class_dir in enumerate(classes):
        files = sorted(p for p in class_dir.iterdir() if _is_image(p))
        if not files:
            raise DataError(f"class folder {class_dir} has no images ({', '.join(IMAGE_SUFFIXES)})")
        if len(files) < 2:
            raise DataError(
                f"class folder {class_dir} has 1 image; each class needs at least 2 "
                "(a same-identity pair)"
            )
        paths += files
        labels += [index] * len(files)
    if len(classes) < 2:
        raise DataError(f"image folder {root} has 1 class; at least 2 are needed")
    return LabelledData(
        inputs=read_images(paths, image_size=image_size, channels=channels),
        labels=torch.tensor(labels, dtype=torch.int64),
        class_names=[p.name for p in classes],
        kind="images",
        source=f"image folder {root} ({len(classes)} classes, {len(paths)} images)",
        paths=[str(p) for p in paths],
    )


def _class_indices(
    values: Sequence[object], where: str, min_classes: int = 2
) -> tuple[Tensor, list[str]]:
    names = sorted({str(v) for v in values}, key=lambda s: (not _is_number(s), _key(s), s))
    position = {name: i for i, name in enumerate(names)}
    if len(names) < min_classes:
        raise DataError(f"{where} has {len(names)} class; at least {min_classes} are needed")
    return torch.tensor([position[str(v)] for v in values], dtype=torch.int64), names


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _key(text: str) -> float | str:
    return float(text) if _is_number(text) else text


def read_features(
    path: str | Path, *, label_column: str | None = "label", min_classes: int = 2
) -> LabelledData | Tensor:
    """Feature vectors with class labels from a ``.npz`` or ``.csv`` file.

    * ``.npz``: an array ``features`` (or ``x``/``X``) of shape ``(N, F)`` and an array
      named ``label_column`` (``"label"`` by default; ``labels``, ``y`` also accepted
      when the default is used) of N labels.
    * ``.csv``: a header row; the column ``label_column`` holds the class of each row
      (numbers or names) and every other column is a numeric feature.

    With ``label_column=None`` only the features are read and returned as a tensor
    (for embedding new data). Labelled data needs ``min_classes`` distinct classes (2 for
    training; 1 to read a labelled file of a single class, as for embedding it).
    """
    file = Path(path)
    inputs, y = _read_table(file, label_column, required=True)
    if y is None:
        return inputs
    labels, names = _class_indices(list(y), f"feature file {file}", min_classes)
    return LabelledData(
        inputs,
        labels,
        names,
        "vectors",
        f"feature file {file} ({inputs.shape[0]} × {inputs.shape[1]})",
    )


def read_feature_vectors(path: str | Path, *, label_column: str = "label") -> Tensor:
    """The feature vectors of a ``.npz`` or ``.csv`` file, labelled or not.

    The label column (or array) is left out when the file has one, whatever its values,
    so new data can be embedded with or without labels.
    """
    return _read_table(Path(path), label_column, required=False)[0]


def _read_table(
    file: Path, label_column: str | None, *, required: bool
) -> tuple[Tensor, Sequence[object] | None]:
    """Features (checked) and the raw labels, if asked for and present (or ``required``)."""
    _exists(file, "feature file")
    suffix = file.suffix.lower()
    if suffix == ".npz":
        x, y = _read_npz(file, label_column, required=required)
    elif suffix == ".csv":
        x, y = _read_csv(file, label_column, required=required)
    else:
        raise DataError(f"feature file {file} must be .npz or .csv, got {suffix or 'no suffix'}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"features in {file} must be a non-empty (N, F) table, got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"features in {file} contain NaN or infinite values")
    return torch.as_tensor(x, dtype=torch.float32), (None if y is None or not required else y)


def _read_npz(
    file: Path, label_column: str | None, *, required: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {file}: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array renamed .npz
        raise DataError(f"{file} is not a .npz archive of named arrays (from numpy.savez)")
    with archive:
        names = list(archive.files)
        key = next((k for k in _NPZ_FEATURES if k in names), None)
        if key is None:
            raise DataError(f"{file} has no array named 'features' or 'x' (arrays: {names})")
        try:
            x = np.asarray(archive[key], dtype=np.float64)
        except ValueError:
            raise DataError(f"array '{key}' in {file} is not numeric") from None
        if x.ndim != 2:
            raise DataError(f"array '{key}' in {file} must be a (N, F) table, got shape {x.shape}")
        if label_column is None:
            return x, None
        candidates = [label_column] + (["labels", "y"] if label_column == "label" else [])
        label_key = next((k for k in candidates if k in names), None)
        if label_key is None and not required:
            return x, None
        if label_key is None:
            raise DataError(
                f"{file} has no label array '{label_column}' (arrays: {names}); "
                "choose one with --label-column"
            )
        try:
            y = np.asarray(archive[label_key])
        except ValueError as error:  # an object array, refused with allow_pickle=False
            raise DataError(f"cannot read labels '{label_key}' in {file}: {error}") from None
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(
            f"labels '{label_key}' in {file} must be 1-D with one entry per row "
            f"({x.shape[0]}), got shape {y.shape}"
        )
    return x, y


def _read_csv(
    file: Path, label_column: str | None, *, required: bool
) -> tuple[np.ndarray, list[str] | None]:
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {file}: {error}") from None
    if not rows:
        raise DataError(f"{file} is empty (expected a header row and one row per sample)")
    header = [h.strip() for h in rows[0]]
    body = [(line, r) for line, r in enumerate(rows[1:], start=2) if r]
    if label_column is not None and label_column not in header and not required:
        label_column = None
    if label_column is not None and label_column not in header:
        raise DataError(
            f"{file} has no column '{label_column}' (columns: {', '.join(header)}); "
            "choose one with --label-column"
        )
    keep = [i for i, h in enumerate(header) if h != label_column]
    label_at = header.index(label_column) if label_column is not None else None
    features, labels = [], []
    for line, row in body:
        if len(row) != len(header):
            raise DataError(f"{file} line {line} has {len(row)} fields, expected {len(header)}")
        try:
            features.append([float(row[i]) for i in keep])
        except ValueError:
            raise DataError(f"{file} line {line} has a value that is not a number") from None
        if label_at is not None:
            labels.append(row[label_at].strip())
    return np.asarray(features, dtype=np.float64).reshape(len(body), len(keep)), (
        labels if label_at is not None else None
    )


def read_pairs(path: str | Path, *, image_size: int = 64, channels: int | None = None) -> PairData:
    """Explicit pairs from a ``.csv`` with the columns ``left,right,label``.

    ``left`` and ``right`` are image paths, relative to the CSV's folder unless absolute;
    ``label`` is 1 for a matching pair and 0 for a non-matching one.
    """
    file = Path(path)
    _exists(file, "pair file")
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            columns = [c.strip() for c in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {file}: {error}") from None
    if not rows:
        raise DataError(f"pair file {file} has no pairs (expected a header left,right,label)")
    missing = [c for c in ("left", "right", "label") if c not in columns]
    if missing:
        raise DataError(
            f"pair file {file} has no column {', '.join(missing)} "
            f"(columns: {', '.join(columns)}; expected left,right,label)"
        )
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in rows]
    same = []
    for line, row in enumerate(rows, start=2):
        if row["label"] not in ("0", "1"):
            raise DataError(
                f"pair file {file} line {line}: label must be 0 or 1, got {row['label']!r}"
            )
        same.append(int(row["label"]))
    if len(set(same)) < 2:
        raise DataError(f"pair file {file} needs both matching (1) and non-matching (0) pairs")
    base = file.parent
    files = sorted({row[side] for row in rows for side in ("left", "right")})
    resolved = {name: (base / name) for name in files}
    for name, p in resolved.items():
        if not p.is_file():
            raise DataError(f"pair file {file} names {name}, which does not exist ({p})")
    images = read_images(list(resolved.values()), image_size=image_size, channels=channels)
    position = {name: i for i, name in enumerate(files)}
    left = torch.tensor([position[row["left"]] for row in rows])
    right = torch.tensor([position[row["right"]] for row in rows])
    return PairData(
        images[left],
        images[right],
        torch.tensor(same, dtype=torch.int64),
        "images",
        f"pair file {file} ({len(rows)} pairs of {len(files)} images)",
    )


def split_indices(
    labels: Tensor, *, fractions: tuple[float, float] = (0.2, 0.2), seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """A stratified train / validation / test split, reproducible from ``seed``.

    Each class is shuffled and cut so that about ``fractions[0]`` of it goes to
    validation and ``fractions[1]`` to test, every class keeping at least one training
    sample. A class of six or more gives at least two to each held-out split (so that
    it has same-class pairs there), a class of three to five at least one, and a class
    of two gives one to training and one to validation or test, in turn. To split
    unlabelled items (such as explicit pairs) at random, pass one constant label.

    Returns:
        Sorted index tensors ``(train, val, test)``.

    Example:
        >>> import torch
        >>> train, val, test = split_indices(torch.arange(100) % 4, seed=0)
        >>> len(train), len(val), len(test)
        (60, 20, 20)
    """
    val_fraction, test_fraction = fractions
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be two positive numbers summing below 1, got {fractions}")
    g = torch.Generator().manual_seed(seed)
    parts: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    turn = 0
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(members.numel(), generator=g)]
        n = members.numel()
        n_val = math.floor(n * val_fraction + 0.5)
        n_test = math.floor(n * test_fraction + 0.5)
        if n >= 6:  # two each, so that held-out same-class pairs exist
            n_val, n_test = max(n_val, 2), max(n_test, 2)
        elif n >= 3:
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        while n_val + n_test > n - 1:
            if n_val >= n_test and n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        if n == 2:
            n_val, n_test = (1, 0) if turn % 2 == 0 else (0, 1)
            turn += 1
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val : n_val + n_test])
        parts[0].append(members[n_val + n_test :])
    train, val, test = (torch.sort(torch.cat(p)).values for p in parts)
    return train, val, test
