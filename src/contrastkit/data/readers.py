"""Data for the trainer and the command line: the bundled digits and the user's own files.

* :func:`load_digits` — scikit-learn's handwritten digits (1,797 images of 8×8 pixels,
  10 classes), bundled with scikit-learn: nothing is downloaded.
* :func:`read_image_folder` — a folder with one subfolder of images per class
  (identity), as for face or signature verification. Its parts serve the lazy
  :class:`~contrastkit.data.images.ImageFolderDataset` too: :func:`list_image_folder`
  lists the files (and their classes) without reading them, :func:`open_image` decodes
  one file and :func:`image_pixels` resizes it.
* :func:`read_features` — a ``.npz`` or ``.csv`` of feature vectors with a label column
  (:func:`read_feature_vectors` — the vectors alone, labelled or not).
* :func:`read_pairs` — a ``.csv`` of explicit pairs ``left,right,label`` whose ``left``
  and ``right`` are image paths relative to the CSV file; :func:`is_pair_file` tells a
  pair file from a feature file (its header is exactly those three columns).
* :func:`read_pairs_list` — a standard pairs list (``left,right,label`` and optionally
  ``fold``) naming samples by path, loading nothing: an evaluation protocol.
* :func:`split_indices` — a stratified, seeded train / validation / test split.
* :func:`split_pairs_by_image` — a split of explicit pairs in which no image of a
  validation or test pair is in a training pair.
* :func:`split_classes` — an open-set split: whole classes (identities) held out for
  validation and test.

Every reader checks its input before loading it and raises :class:`DataError` (a
:class:`ValueError`) with a one-line message that names the file or folder (and the line
and column of a CSV file): an unreadable, truncated or oversized image (more pixels than
Pillow's ``Image.MAX_IMAGE_PIXELS``, a possible decompression bomb), a value that is not
a number, an empty label.
"""

from __future__ import annotations

import csv
import math
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_int

__all__ = [
    "IMAGE_SUFFIXES",
    "PAIR_COLUMNS",
    "UNLABELLED",
    "DataError",
    "ImageFiles",
    "LabelledData",
    "PairData",
    "PairsList",
    "has_label_column",
    "image_mode",
    "image_pixels",
    "is_grayscale_mode",
    "is_pair_file",
    "list_image_folder",
    "list_images",
    "load_digits",
    "open_image",
    "read_feature_vectors",
    "read_features",
    "read_image_folder",
    "read_images",
    "read_pairs",
    "read_pairs_list",
    "split_classes",
    "split_indices",
    "split_pairs_by_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
_NPZ_FEATURES = ("features", "x", "X")
PAIR_COLUMNS = ("left", "right", "label")
UNLABELLED = -1
"""The label of every image of a flat folder (no class subfolders): no class."""


class DataError(ValueError):
    """Input data that cannot be used, with a message naming the file or folder."""


@dataclass
class LabelledData:
    """Samples with integer class labels.

    Attributes:
        inputs: ``(N, F)`` feature vectors or ``(N, C, H, W)`` images, float32; for
            an image folder read lazily, a :class:`~contrastkit.data.images.LazyImages`
            view that has the tensor's shape and decodes the images it is indexed with.
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
        view = getattr(self.inputs, "subset", None)  # images read lazily: a view, not pixels
        inputs = view(index) if callable(view) else self.inputs[index]
        return LabelledData(
            inputs, self.labels[index], self.class_names, self.kind, self.source, paths
        )


@dataclass
class PairData:
    """Explicit pairs: ``same[i] = 1`` if ``left[i]`` and ``right[i]`` match, else 0.

    ``left_image`` and ``right_image`` (``(n,)`` int64, or ``None``) say which image of
    the file each side is (the same id for the same path), so that a split can keep
    every image on one side (:func:`split_pairs_by_image`).
    """

    left: Tensor
    right: Tensor
    same: Tensor
    kind: Literal["vectors", "images"]
    source: str
    left_image: Tensor | None = None
    right_image: Tensor | None = None

    def __len__(self) -> int:
        return int(self.same.shape[0])

    def subset(self, index: Tensor) -> PairData:
        """The pairs at ``index``."""
        ids = [None if i is None else i[index] for i in (self.left_image, self.right_image)]
        return PairData(
            self.left[index], self.right[index], self.same[index], self.kind, self.source, *ids
        )

    def images(self) -> Tensor | None:
        """The distinct images the pairs name (sorted ids), ``None`` when they are not known."""
        if self.left_image is None or self.right_image is None:
            return None
        return torch.unique(torch.cat([self.left_image, self.right_image]))


def load_digits() -> LabelledData:
    """scikit-learn's handwritten digits as 64 pixel values in [0, 16] per sample.

    Example:
        >>> data = load_digits()
        >>> data.inputs.shape, data.class_names[:3], data.kind
        (torch.Size([1797, 64]), ['0', '1', '2'], 'vectors')
    """
    from sklearn.datasets import load_digits as sklearn_digits  # type: ignore[import-untyped]

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


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (not in its subfolders), sorted by name.

    An image file is one whose suffix, in any case, is one of :data:`IMAGE_SUFFIXES` and
    whose name does not start with a dot; other files are ignored. A folder that does not
    exist, or a file, is a :class:`DataError` naming it.
    """
    root = Path(folder)
    _exists(root, "image folder")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    return sorted(p for p in root.iterdir() if _is_image(p))


@dataclass(frozen=True)
class ImageFiles:
    """The image files of a folder, listed but not read.

    Attributes:
        paths: every image file, class by class (classes sorted by name), sorted by name
            within each class.
        labels: the class of each file, an index into ``class_names``; :data:`UNLABELLED`
            for every file of a flat folder.
        class_names: the class subfolders' names, sorted; empty for a flat folder.
    """

    paths: list[Path]
    labels: list[int]
    class_names: list[str]


def list_image_folder(folder: str | Path, *, flat: bool = False) -> ImageFiles:
    """The image files of a folder with one subfolder per class, without reading them.

    The rules of :func:`read_image_folder`: ``folder/alice/1.jpg, folder/bob/1.jpg, …``,
    the non-hidden subfolders are the classes (sorted), their image files
    (:func:`list_images`) the samples; every class needs at least two images and there
    must be two classes, else a :class:`DataError` names the folder.

    With ``flat=True``, a folder without class subfolders is read as one of unlabelled
    images: its own image files, each labelled :data:`UNLABELLED`, with no class names.
    It needs at least one image. A folder with class subfolders is read by class either
    way (image files beside the subfolders are then ignored).
    """
    root = Path(folder)
    _exists(root, "image folder")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (expected one subfolder of images per class)")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes and flat:
        files = list_images(root)
        if not files:
            raise DataError(
                f"image folder {root} has no images and no class subfolders "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
        return ImageFiles(files, [UNLABELLED] * len(files), [])
    if not classes:
        raise DataError(f"image folder {root} has no class subfolders (expected root/CLASS/IMAGE)")
    paths: list[Path] = []
    labels: list[int] = []
    for index, class_dir in enumerate(classes):
        files = list_images(class_dir)
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
    return ImageFiles(paths, labels, [p.name for p in classes])


def read_images(paths: Sequence[Path], *, image_size: int, channels: int | None = None) -> Tensor:
    """Load image files as one ``(N, C, S, S)`` float tensor with values in [0, 1].

    Every image is resized to ``image_size`` × ``image_size``. With ``channels=None`` the
    images are kept grayscale (1 channel) when all of them are, else converted to RGB.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image size must be a positive integer, got {image_size!r}")
    images = [open_image(path) for path in paths]
    if channels is None:
        channels = 1 if all(is_grayscale_mode(image.mode) for image in images) else 3
    mode = "L" if channels == 1 else "RGB"
    array = np.stack(
        [_pixels(image, mode, image_size, path) for image, path in zip(images, paths, strict=True)]
    )
    if channels == 1:
        array = array[:, None]
    else:
        array = array.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array))


# What Pillow's decoders raise on a damaged file: OSError ("image file is truncated",
# UnidentifiedImageError), ValueError, SyntaxError, EOFError, struct.error, zlib.error.
_DAMAGED = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, MemoryError)


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    """``PIL.Image.open(path)``, its failures (and Pillow's warnings) naming the file."""
    from PIL import Image

    with _named_warnings(path):
        try:
            with Image.open(path) as image:
                yield image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise DataError(
                f"image {path} is too large to read ({str(error).rstrip('.')}); shrink it first"
            ) from None
        except _DAMAGED as error:
            raise DataError(
                f"cannot read image {path}: {str(error) or type(error).__name__}"
            ) from None


def open_image(path: str | Path) -> Any:
    """One image file, decoded (a ``PIL.Image.Image``), or a :class:`DataError` naming it.

    An image with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` is refused before it is
    decoded (Pillow warns above that limit and refuses above twice it): images are
    resized to a few dozen pixels, so such a file is a mistake or a decompression bomb.
    Pillow's other warnings (corrupt metadata, …) are passed on with the file's name.
    """
    path = Path(path)
    with _opened(path) as image:
        image.load()
        return image.copy()


def image_mode(path: str | Path) -> str:
    """The Pillow mode of an image file (``"L"``, ``"RGB"``, …), from its header alone.

    Cheap: the pixels are not decoded. A file Pillow cannot identify is a
    :class:`DataError` naming it.
    """
    path = Path(path)
    with _opened(path) as image:
        return str(image.mode)


def is_grayscale_mode(mode: str) -> bool:
    """Whether a Pillow mode is grayscale (``1``, ``L``, ``LA``, ``F``, ``I``, ``I;16``, …).

    The rule :func:`read_images` follows with ``channels=None``: such images give one
    channel, any other (``RGB``, ``RGBA``, ``P``, ``CMYK``, …) three.
    """
    return mode in ("1", "L", "LA", "F", "I") or mode.startswith("I;16")


def image_pixels(
    image: Any, *, image_size: int, channels: int, path: str | Path = "image"
) -> np.ndarray:
    """One decoded image resized to ``image_size`` × ``image_size``: ``(C, S, S)`` in [0, 1].

    ``channels`` is 1 (grayscale) or 3 (RGB; an alpha channel is dropped); 16-bit
    grayscale is scaled, not clipped. The float32 values are those :func:`read_images`
    gives. ``path`` names the file in the :class:`DataError` of a mode Pillow cannot
    convert.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    array = _pixels(image, "L" if channels == 1 else "RGB", image_size, Path(path))
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    # a new, writable array (16-bit grayscale can come back as a read-only view)
    return np.require(array, dtype=np.float32, requirements=["C_CONTIGUOUS", "WRITEABLE"])


@contextmanager
def _named_warnings(path: Path) -> Iterator[None]:
    """Pillow's warnings about one file, passed on with its name; a possible bomb raises."""
    from PIL import Image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield
    for warning in caught:
        if Path(warning.filename).parent.name == "PIL":  # Pillow's: say which file
            warnings.warn(f"image {path}: {warning.message}", warning.category, stacklevel=4)
        else:  # another's (a ResourceWarning from the garbage collector, …): unchanged
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def _wide(image: Any) -> bool:
    """A 16- or 32-bit integer grayscale image (``I``, ``I;16``, ``I;16B``, …)."""
    return image.mode == "I" or image.mode.startswith("I;16")


def _pixels(image: Any, mode: str, size: int, path: Path) -> np.ndarray:
    """One image resized to ``size`` × ``size``, as float32 values in [0, 1]."""
    try:
        with _named_warnings(path):
            return _resized(image, mode, size)
    except ValueError as error:  # a mode Pillow cannot convert, such as LAB or La
        raise DataError(f"cannot convert image {path} ({image.mode}) to {mode}: {error}") from None


def _resized(image: Any, mode: str, size: int) -> np.ndarray:
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
    folder: str | Path, *, image_size: int = 64, channels: int | None = None, flat: bool = False
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
        flat: a folder without class subfolders is read as unlabelled images, each
            labelled :data:`~contrastkit.data.UNLABELLED`, with no class names (see
            :func:`list_image_folder`).
    """
    root = Path(folder)
    files = list_image_folder(root, flat=flat)
    if not files.class_names:
        return LabelledData(
            inputs=read_images(files.paths, image_size=image_size, channels=channels),
            labels=torch.tensor(files.labels, dtype=torch.int64),
            class_names=[],
            kind="images",
            source=f"image folder {root} (unlabelled, {len(files.paths)} images)",
            paths=[str(p) for p in files.paths],
        )
    return LabelledData(
        inputs=read_images(files.paths, image_size=image_size, channels=channels),
        labels=torch.tensor(files.labels, dtype=torch.int64),
        class_names=files.class_names,
        kind="images",
        source=f"image folder {root} ({len(files.class_names)} classes, {len(files.paths)} images)",
        paths=[str(p) for p in files.paths],
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
    path: str | Path,
    *,
    label_column: str | None = "label",
    min_classes: int = 2,
    exclude_columns: Sequence[str] = (),
) -> LabelledData | Tensor:
    r"""Feature vectors with class labels from a ``.npz`` or ``.csv`` file.

    * ``.npz``: an array ``features`` (or ``x``/``X``) of shape ``(N, F)`` and an array
      named ``label_column`` (``"label"`` by default; ``labels``, ``y`` also accepted
      when the default is used) of N labels.
    * ``.csv``: a header row; the column ``label_column`` holds the class of each row
      (numbers or names) and every other column is a numeric feature, except the
      columns named in ``exclude_columns`` (an identifier, a date, …), which are left
      out. A name there that is not a column, or is the label column, is an error.

    With ``label_column=None`` only the features are read and returned as a tensor
    (for embedding new data). Labelled data needs ``min_classes`` distinct classes (2 for
    training; 1 to read a labelled file of a single class, as for embedding it); every
    label must be non-empty.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "f.csv"
        >>> _ = path.write_text("id,a,b,label\nx7,1,2,cat\ny3,3,4,dog\n")
        >>> data = read_features(path, exclude_columns=("id",))
        >>> data.inputs.tolist(), data.class_names
        ([[1.0, 2.0], [3.0, 4.0]], ['cat', 'dog'])
    """
    file = Path(path)
    excluded = _column_names(exclude_columns)
    inputs, y = _read_table(file, label_column, excluded, required=True)
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


def has_label_column(path: str | Path, label_column: str = "label") -> bool:
    """Whether a ``.csv`` or ``.npz`` feature file has the label column ``label_column``.

    A ``.csv`` file's header row names it; a ``.npz`` archive holds an array of that name
    (with the default ``"label"``, also ``labels`` or ``y``, as :func:`read_features`
    accepts). A file that cannot be read, or of another suffix, gives ``False`` here; the
    reader then says what is wrong with it.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    candidates = [label_column] + (["labels", "y"] if label_column == "label" else [])
    try:
        if suffix == ".csv":
            with file.open(newline="", encoding="utf-8-sig") as text:
                header = next(csv.reader(text), [])
            return label_column in [h.strip() for h in header]
        if suffix == ".npz":
            with file.open("rb") as binary, np.load(binary, allow_pickle=False) as archive:
                return any(k in archive.files for k in candidates)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, EOFError, zipfile.BadZipFile):
        return False
    except (TypeError, AttributeError):  # a lone .npy array renamed .npz
        return False
    return False


def read_feature_vectors(
    path: str | Path, *, label_column: str = "label", exclude_columns: Sequence[str] = ()
) -> Tensor:
    """The feature vectors of a ``.npz`` or ``.csv`` file, labelled or not.

    The label column (or array) is left out when the file has one, whatever its values,
    so new data can be embedded with or without labels; so are the columns of
    ``exclude_columns`` that the file has (a ``.npz`` archive has no named columns).
    """
    excluded = _column_names(exclude_columns)
    return _read_table(Path(path), label_column, excluded, required=False)[0]


def _column_names(names: Sequence[str]) -> tuple[str, ...]:
    """``exclude_columns``, checked: column names, not one bare string."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"exclude_columns must be a sequence of column names such as ('id',), got {names!r}"
        )
    return tuple(n.strip() for n in names)


@dataclass
class _Table:
    """A feature table as read, with what the error messages need to locate a value."""

    x: np.ndarray
    labels: Any  # a list of strings (CSV), an array (.npz) or None
    lines: list[int] | None = None  # the CSV line of each row
    columns: list[str] | None = None  # the CSV name of each feature column


def _read_table(
    file: Path, label_column: str | None, excluded: tuple[str, ...], *, required: bool
) -> tuple[Tensor, Sequence[object] | None]:
    """Features (checked) and the raw labels, if asked for and present (or ``required``)."""
    _exists(file, "feature file")
    suffix = file.suffix.lower()
    if suffix == ".npz":
        if excluded and required:
            raise DataError(
                f"feature file {file} is a .npz archive, whose features have no column names; "
                f"leave {', '.join(excluded)} out of its features array instead of naming them"
            )
        table = _read_npz(file, label_column, required=required)
    elif suffix == ".csv":
        table = _read_csv(file, label_column, excluded, required=required)
    else:
        raise DataError(f"feature file {file} must be .npz or .csv, got {suffix or 'no suffix'}")
    x = table.x
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"features in {file} must be a non-empty (N, F) table, got {x.shape}")
    if not np.isfinite(x).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
        if table.lines is not None and table.columns is not None:
            where = f"line {table.lines[row]}, column '{table.columns[col]}'"
        else:
            where = f"row {row}, column {col}"
        raise DataError(
            f"features in {file} contain NaN or infinite values (the first: {x[row, col]} "
            f"at {where})"
        )
    y = table.labels
    return torch.as_tensor(x, dtype=torch.float32), (None if y is None or not required else y)


def _read_npz(file: Path, label_column: str | None, *, required: bool) -> _Table:
    # numpy leaves its own handle open when the archive is damaged: open it here
    try:
        with file.open("rb") as handle:
            return _read_archive(file, handle, label_column, required=required)
    except OSError as error:
        raise DataError(f"cannot read {file}: {error}") from None


def _read_archive(file: Path, handle: Any, label_column: str | None, *, required: bool) -> _Table:
    try:
        archive = np.load(handle, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
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
        except (OSError, EOFError, zipfile.BadZipFile) as error:  # a damaged archive
            raise DataError(f"cannot read array '{key}' in {file}: {error}") from None
        if x.ndim != 2:
            raise DataError(f"array '{key}' in {file} must be a (N, F) table, got shape {x.shape}")
        if label_column is None:
            return _Table(x, None)
        candidates = [label_column] + (["labels", "y"] if label_column == "label" else [])
        label_key = next((k for k in candidates if k in names), None)
        if label_key is None and not required:
            return _Table(x, None)
        if label_key is None:
            raise DataError(
                f"{file} has no label array '{label_column}' (arrays: {names}); "
                "choose one with --label-column"
            )
        try:
            y = np.asarray(archive[label_key])
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            # an object array is refused with allow_pickle=False
            raise DataError(f"cannot read labels '{label_key}' in {file}: {error}") from None
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(
            f"labels '{label_key}' in {file} must be 1-D with one entry per row "
            f"({x.shape[0]}), got shape {y.shape}"
        )
    if required and y.dtype.kind in "US":
        empty = [i for i, v in enumerate(y.tolist()) if not v.strip()]  # str or bytes
        if empty:
            raise DataError(
                f"labels '{label_key}' in {file} include an empty one (row {empty[0]}); "
                "every sample needs a class"
            )
    return _Table(x, y)


def _read_csv(
    file: Path, label_column: str | None, excluded: tuple[str, ...], *, required: bool
) -> _Table:
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {file}: {error}") from None
    if not rows:
        raise DataError(f"{file} is empty (expected a header row and one row per sample)")
    header = [h.strip() for h in rows[0]]
    # column names 0, 1, 2, ... (a numpy or pandas table written with its default names)
    # are a header; any other row of numbers alone is data
    numbered = header == [str(i) for i in range(len(header))]
    if header and not numbered and all(_is_number(name) for name in header):
        raise DataError(
            f"{file} has no header row: its first line holds numbers only "
            f"({', '.join(header[:4])}{', ...' if len(header) > 4 else ''}); add a line of "
            "column names"
        )
    body = [(line, r) for line, r in enumerate(rows[1:], start=2) if r]
    if label_column is not None and label_column not in header and not required:
        label_column = None
    if label_column is not None and label_column not in header:
        raise DataError(
            f"{file} has no column '{label_column}' (columns: {', '.join(header)}); "
            "choose one with --label-column"
        )
    if required:
        unknown = [name for name in excluded if name not in header]
        if unknown:
            raise DataError(
                f"{file} has no column {', '.join(repr(n) for n in unknown)} to leave out "
                f"(columns: {', '.join(header)})"
            )
        if label_column is not None and label_column in excluded:
            raise DataError(
                f"{file}: the label column '{label_column}' cannot also be left out "
                "(exclude_columns)"
            )
    keep = [i for i, h in enumerate(header) if h != label_column and h not in excluded]
    label_at = header.index(label_column) if label_column is not None else None
    features, labels = [], []
    for line, row in body:
        if len(row) != len(header):
            raise DataError(f"{file} line {line} has {len(row)} fields, expected {len(header)}")
        try:
            features.append([float(row[i]) for i in keep])
        except ValueError:
            raise DataError(_not_a_number(file, line, row, header, keep)) from None
        if label_at is not None:
            label = row[label_at].strip()
            if required and not label:
                raise DataError(
                    f"{file} line {line} has an empty label (column '{label_column}'); "
                    "every row needs a class"
                )
            labels.append(label)
    return _Table(
        np.asarray(features, dtype=np.float64).reshape(len(body), len(keep)),
        labels if label_at is not None else None,
        lines=[line for line, _ in body],
        columns=[header[i] for i in keep],
    )


def _not_a_number(file: Path, line: int, row: list[str], header: list[str], keep: list[int]) -> str:
    """The message for the first cell of ``row`` among ``keep`` that is not a number."""
    at = next(i for i in keep if not _parses(row[i]))
    name, value = header[at], row[at]
    what = (
        f"a missing value in column '{name}'"
        if not value.strip()
        else f"a value that is not a number in column '{name}': {value!r}"
    )
    hint = "leave such columns out with --exclude-columns (exclude_columns)"
    if name in ("left", "right") and set(PAIR_COLUMNS) <= set(header):
        hint += "; a pair file has exactly the columns left, right and label"
    return f"{file} line {line} has {what}; {hint}"


def _parses(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_pair_file(path: str | Path) -> bool:
    r"""Whether ``path`` is a pair file for :func:`read_pairs` rather than a feature file.

    The rule: a ``.csv`` file whose header row has exactly three columns, named ``left``,
    ``right`` and ``label`` in any order (spaces around the names, quotes and a byte-order
    mark are ignored; names are case-sensitive). A header with any other column, as a
    feature file whose columns include ``left``, ``right`` and ``label``, is not a pair
    file. A file that does not exist or cannot be read is not one either (the feature
    reader then reports it).

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "p.csv").write_text("left,right,label\na.png,b.png,1\n")
        >>> _ = (folder / "f.csv").write_text("left,right,top,label\n1,2,3,a\n")
        >>> is_pair_file(folder / "p.csv"), is_pair_file(folder / "f.csv")
        (True, False)
    """
    file = Path(path)
    if file.suffix.lower() != ".csv" or not file.is_file():
        return False
    try:
        # errors="replace": an undecodable file is reported by the reader, which names it
        with file.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, csv.Error):
        return False
    return sorted(h.strip() for h in header) == sorted(PAIR_COLUMNS)


def read_pairs(path: str | Path, *, image_size: int = 64, channels: int | None = None) -> PairData:
    """Explicit pairs from a ``.csv`` with the columns ``left,right,label``.

    ``left`` and ``right`` are image paths, relative to the CSV's folder unless absolute;
    ``label`` is 1 for a matching pair and 0 for a non-matching one. (Other columns are
    ignored here, but :func:`is_pair_file` only recognises a file of exactly these three.)
    """
    file = Path(path)
    rows = _pair_table(file, "pair file", strict=False)
    left_names, right_names, same = _pair_rows(file, "pair file", rows, item="image path")
    base = file.parent
    files = sorted(set(left_names) | set(right_names))
    resolved = {name: (base / name) for name in files}
    for name, p in resolved.items():
        if not p.is_file():
            raise DataError(f"pair file {file} names {name}, which does not exist ({p})")
    images = read_images(list(resolved.values()), image_size=image_size, channels=channels)
    position = {name: i for i, name in enumerate(files)}
    left = torch.tensor([position[name] for name in left_names])
    right = torch.tensor([position[name] for name in right_names])
    return PairData(
        images[left],
        images[right],
        torch.tensor(same, dtype=torch.int64),
        "images",
        f"pair file {file} ({len(rows)} pairs of {len(files)} images)",
        left,
        right,
    )


@dataclass
class PairsList:
    """Pairs of samples named by path, as a verification protocol lists them.

    ``same[i] = 1`` if ``left[i]`` and ``right[i]`` are of one identity, else 0. The
    paths are those of the CSV resolved against its folder (``str(folder / name)``;
    an absolute name is kept as it is), the keys under which
    :func:`contrastkit.evaluation.pairs_list_verification` looks up embeddings.

    Attributes:
        left: the first path of each pair.
        right: the second path of each pair.
        same: ``(n,)`` int64 labels, 1 = same identity, 0 = different.
        folds: ``(n,)`` int64 fold of each pair, from the CSV's ``fold`` column, or
            ``None`` when it has none.
        source: where the pairs came from, for a report.
    """

    left: list[str]
    right: list[str]
    same: Tensor
    folds: Tensor | None
    source: str

    def __len__(self) -> int:
        return int(self.same.shape[0])

    def paths(self) -> list[str]:
        """Every path named by a pair, once each, sorted: the samples to embed."""
        return sorted(set(self.left) | set(self.right))


def read_pairs_list(path: str | Path, *, must_exist: bool = True) -> PairsList:
    r"""A standard pairs list: a ``.csv`` of ``left,right,label`` (and ``fold``) rows.

    As for :func:`read_pairs`, ``left`` and ``right`` name samples by path, relative to
    the CSV's folder unless absolute, and ``label`` is 1 for a pair of one identity
    and 0 for a pair of two; but nothing is loaded: the pairs are an evaluation
    protocol for any embedding (:func:`contrastkit.evaluation.pairs_list_verification`),
    as LFW's ``pairs.txt`` is. An optional integer column ``fold`` gives each pair's
    cross-validation fold (LFW's ten sets); other columns are ignored. Both kinds of
    pair must occur.

    Every row must have one field per column of the header, and every mistake is a
    one-line :class:`DataError` naming the file, the line and the column: an empty
    path, a label other than ``0``/``1``, a fold that is not an integer, a file that
    does not exist (with ``must_exist``; pass ``False`` when the embeddings were
    computed elsewhere and only the names matter).

    Args:
        path: the ``.csv`` file.
        must_exist: check that every named file exists.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> rows = ["a/1.png,a/2.png,1,1", "a/1.png,b/1.png,0,1", "b/1.png,b/2.png,1,2",
        ...         "a/2.png,b/2.png,0,2"]
        >>> _ = (folder / "pairs.csv").write_text("left,right,label,fold\n" + "\n".join(rows))
        >>> pairs = read_pairs_list(folder / "pairs.csv", must_exist=False)
        >>> pairs.same.tolist(), pairs.folds.tolist(), len(pairs.paths())
        ([1, 0, 1, 0], [1, 1, 2, 2], 4)
        >>> pairs.left[0] == str(folder / "a" / "1.png")
        True
    """
    file = Path(path)
    what = "pairs list"
    rows = _pair_table(file, what, strict=True)
    left_names, right_names, same = _pair_rows(file, what, rows)
    base = file.parent
    if must_exist:
        checked: set[str] = set()
        for (line, _), names in zip(rows, zip(left_names, right_names, strict=True), strict=True):
            for side, name in zip(("left", "right"), names, strict=True):
                if name not in checked and not (base / name).is_file():
                    raise DataError(
                        f"{what} {file} line {line}: {name} does not exist ({base / name}; "
                        f"column '{side}')"
                    )
                checked.add(name)
    folds = None
    if rows and "fold" in rows[0][1]:
        values = []
        for line, row in rows:
            try:
                values.append(int(row["fold"]))
            except ValueError:
                raise DataError(
                    f"{what} {file} line {line}: fold must be an integer, got {row['fold']!r} "
                    "(column 'fold')"
                ) from None
        if len(set(values)) < 2:
            raise DataError(
                f"{what} {file} has one fold ({values[0]}) in column 'fold'; "
                "cross-validation needs at least 2"
            )
        folds = torch.tensor(values, dtype=torch.int64)
    left = [str(base / name) for name in left_names]
    right = [str(base / name) for name in right_names]
    return PairsList(
        left,
        right,
        torch.tensor(same, dtype=torch.int64),
        folds,
        f"pairs list {file} ({len(rows)} pairs of {len(set(left) | set(right))} samples"
        + (f", {len(set(folds.tolist()))} folds)" if folds is not None else ")"),
    )


def _pair_table(file: Path, what: str, *, strict: bool) -> list[tuple[int, dict[str, str]]]:
    """The rows of a pairs CSV with their line numbers, its header checked.

    ``strict`` (a pairs list): every row has one field per column and no column repeats.
    Else as :class:`csv.DictReader` reads (a pair file): a missing field is empty, an
    extra one dropped, and a repeated column takes its last value.
    """
    _exists(file, what)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            body = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {file}: {error}") from None
    expected = "left,right,label" + (" and optionally fold" if strict else "")
    if not body:
        raise DataError(f"{what} {file} has no pairs (expected a header {expected})")
    named = [h for h in header if h]
    missing = [c for c in PAIR_COLUMNS if c not in named]
    if missing:
        raise DataError(
            f"{what} {file} has no column {', '.join(missing)} "
            f"(columns: {', '.join(named)}; expected {expected})"
        )
    if strict:
        twice = sorted({h for h in named if named.count(h) > 1})
        if twice:
            raise DataError(f"{what} {file} line 1 names the column {twice[0]!r} twice")
        for line, row in body:
            if len(row) != len(header):
                raise DataError(
                    f"{what} {file} line {line} has {len(row)} fields, expected {len(header)} "
                    f"({', '.join(header)})"
                )
    rows = []
    for line, row in body:
        values = [v.strip() for v in row[: len(header)]]
        values += [""] * (len(header) - len(values))
        rows.append((line, {h: v for h, v in zip(header, values, strict=True) if h}))
    return rows


def _pair_rows(
    file: Path, what: str, rows: list[tuple[int, dict[str, str]]], *, item: str = "path"
) -> tuple[list[str], list[str], list[int]]:
    """The left names, right names and 0/1 labels of checked pair rows (``item``: a path)."""
    left, right, same = [], [], []
    for line, row in rows:
        for side in ("left", "right"):
            if not row[side]:
                raise DataError(
                    f"{what} {file} line {line}: the {side} {item} is empty (column '{side}')"
                )
        if row["label"] not in ("0", "1"):
            raise DataError(
                f"{what} {file} line {line}: label must be 0 or 1, got {row['label']!r} "
                "(column 'label')"
            )
        left.append(row["left"])
        right.append(row["right"])
        same.append(int(row["label"]))
    if len(set(same)) < 2:
        raise DataError(f"{what} {file} needs both matching (1) and non-matching (0) pairs")
    return left, right, same


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


def split_classes(
    labels: Tensor, *, fractions: tuple[float, float] = (0.2, 0.2), seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """An open-set train / validation / test split: whole classes (identities) held out.

    Every class lies in exactly one split, so the validation and test samples are of
    identities the model never trained on, and a threshold chosen on validation is
    applied to still other identities in test (the protocol of face and signature
    verification, as LFW's identity-disjoint folds). For the closed-set split, where each
    class's samples are spread over the three splits, see :func:`split_indices`.

    The fractions count **classes**, not samples: about ``fractions[0]`` of the
    classes that can be held out go to validation and ``fractions[1]`` to test. An
    open-set estimate is as good as the number of unseen identities it averages over,
    and identities differ wildly in size (a few people have hundreds of photos, most a
    handful), so counting samples would let one large class fill a split. The number of
    held-out samples follows from the sizes of the classes drawn.

    Only a class with at least two samples can be held out (it gives a same-identity
    pair there); a class with one sample always goes to training, where it still
    serves as a negative, and is not counted in the fractions. Validation and test get
    at least two classes each (so that different-identity pairs exist) and training
    keeps at least two classes of two or more samples (same- and different-class pairs
    to train on): ``round(E * fraction)`` classes each, raised to two, out of the ``E``
    classes with two or more samples, then lowered (validation first on a tie) until
    two such classes stay in training. Which classes go where is drawn from a
    :class:`torch.Generator` seeded with ``seed``.

    Args:
        labels: ``(N,)`` integer class labels.
        fractions: ``(validation, test)``, two positive numbers summing below 1.
        seed: the seed of the draw; the same labels and seed give the same split.

    Returns:
        Sorted int64 index tensors ``(train, val, test)`` into ``labels``.

    Raises:
        ValueError: fewer than six classes with two or more samples (two for each
            split), labels that are not 1-D or empty, or bad ``fractions``.
        TypeError: labels that are not an integer tensor, or a seed that is not an int.

    Example:
        >>> import torch
        >>> labels = torch.arange(100) % 10  # 10 classes of 10 samples
        >>> train, val, test = split_classes(labels, seed=0)
        >>> len(train), len(val), len(test)
        (60, 20, 20)
        >>> set(labels[val].tolist()) & set(labels[train].tolist())
        set()
    """
    val_fraction, test_fraction = fractions
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be two positive numbers summing below 1, got {fractions}")
    seed = check_int("seed", seed)
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a tensor of class labels, got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise TypeError(f"labels must be integer class labels, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    classes, counts = torch.unique(labels.cpu(), return_counts=True)
    eligible = classes[counts >= 2]
    n_eligible = eligible.numel()
    if n_eligible < 6:
        raise ValueError(
            f"labels have {n_eligible} classes with at least 2 samples ({classes.numel()} "
            f"classes in all, {int((counts == 1).sum())} of one sample); holding whole "
            "classes out needs at least 6: 2 for validation, 2 for test and 2 for training"
        )
    n_val = max(2, math.floor(n_eligible * val_fraction + 0.5))
    n_test = max(2, math.floor(n_eligible * test_fraction + 0.5))
    while n_val + n_test > n_eligible - 2:
        if n_val >= n_test and n_val > 2:
            n_val -= 1
        else:
            n_test -= 1
    g = torch.Generator().manual_seed(seed)
    drawn = eligible[torch.randperm(n_eligible, generator=g)]
    val_classes, test_classes = drawn[:n_val], drawn[n_val : n_val + n_test]
    cpu = labels.cpu()
    in_val = torch.isin(cpu, val_classes)
    in_test = torch.isin(cpu, test_classes)
    every = torch.arange(cpu.numel())
    return every[~(in_val | in_test)], every[in_val], every[in_test]


def _components(left: Tensor, right: Tensor, n: int) -> list[int]:
    """The connected component of each of ``n`` images joined by the pairs (0, 1, …)."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    number: dict[int, int] = {}
    return [number.setdefault(root(i), len(number)) for i in range(n)]


def split_pairs_by_image(
    left: Tensor,
    right: Tensor,
    *,
    fractions: tuple[float, float] = (0.2, 0.2),
    seed: int = 0,
    same: Tensor | None = None,
    draws: int = 256,
) -> tuple[Tensor, Tensor, Tensor]:
    """A train / validation / test split of pairs in which each image lies in one split.

    Splitting the pairs themselves lets an image of a test pair also appear in a
    training pair, so the test measures, in part, images the model was trained on.
    Here the **images** are split and a pair is kept where both its images fall in the
    same split; a pair whose images fall in two splits is dropped (it is in none of the
    three returned index tensors). No image of a validation or test pair is in a
    training pair, nor in a pair of the other held-out split.

    The images are grouped into connected components (images joined by a pair). The
    components are shuffled, their images listed component by component (each
    component's images shuffled), and the list cut where the pairs touching the images
    reach the validation share, then the test share: a component small enough stays
    whole and loses no pair; only components across a cut lose pairs. When one
    component holds more pairs than the validation or the test share (pairs that
    reuse images heavily), it is cut by image: each image goes to a split with
    probability about ``sqrt(fraction)``, so that the pairs *kept* are shared about as
    ``fractions`` asks, at the price of the crossing pairs.

    Draws (seeded from ``seed``) are made until 16 are valid (their three splits each
    hold a matching and a non-matching pair, when ``same`` is given; every draw is
    valid without it) or ``draws`` were made; of the valid ones, the one that keeps the
    most pairs is taken (the one keeping the most of all when none is valid).

    Args:
        left: ``(n,)`` integer id of the first image of each pair.
        right: ``(n,)`` integer id of the second image of each pair.
        fractions: ``(validation, test)`` shares of the pairs kept, two positive
            numbers summing below 1.
        seed: the seed of the draws; the same pairs and seed give the same split.
        same: ``(n,)`` 1 for a matching pair, 0 for a non-matching one, or ``None``.
        draws: the most draws to make (at least 1); small files with few valid
            splits need many.

    Returns:
        Sorted int64 index tensors ``(train, val, test)`` into the pairs; the pairs in
        none of them were dropped.

    Raises:
        ValueError: bad ``fractions`` or ``draws``, or ids that are not two 1-D
            tensors of the same length.
        TypeError: ids that are not integer tensors.

    Example:
        >>> import torch
        >>> left = torch.arange(0, 40, 2)  # 20 pairs of 40 images, no image shared
        >>> train, val, test = split_pairs_by_image(left, left + 1, seed=0)
        >>> len(train) + len(val) + len(test)  # disjoint pairs: none dropped
        20
    """
    val_fraction, test_fraction = fractions
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be two positive numbers summing below 1, got {fractions}")
    seed, draws = check_int("seed", seed), check_int("draws", draws)
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    for name, ids in (("left", left), ("right", right)):
        if not isinstance(ids, Tensor):
            raise TypeError(f"{name} must be a tensor of image ids, got {type(ids).__name__}")
        if ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
            raise TypeError(f"{name} must be integer image ids, got dtype {ids.dtype}")
    if left.ndim != 1 or left.shape != right.shape:
        raise ValueError(
            f"left and right must be 1-D of one length, got shapes {tuple(left.shape)} and "
            f"{tuple(right.shape)}"
        )
    if same is not None and same.shape != left.shape:
        raise ValueError(f"same must have shape {tuple(left.shape)}, got {tuple(same.shape)}")
    n_pairs = int(left.numel())
    every = torch.arange(n_pairs)
    if n_pairs == 0:
        return every, every, every
    ids, inverse = torch.unique(torch.cat([left, right]).cpu(), return_inverse=True)
    a, b = inverse[:n_pairs], inverse[n_pairs:]
    n_images = int(ids.numel())
    degree = torch.bincount(a, minlength=n_images) + torch.bincount(b, minlength=n_images)
    weight = degree.double() / 2  # each pair counted once over its two images
    component = torch.tensor(_components(a, b, n_images))  # of each image
    n_components = int(component.max()) + 1
    largest = float(
        torch.zeros(n_components, dtype=torch.float64).index_add_(0, component, weight).max()
    )
    shares = [val_fraction, test_fraction]
    if largest > min(shares) * n_pairs:  # a component too large to hold out whole
        roots = [math.sqrt(f) for f in (val_fraction, test_fraction, 1 - sum(shares))]
        shares = [r / sum(roots) for r in roots[:2]]
    cuts = (shares[0] * n_pairs, (shares[0] + shares[1]) * n_pairs)
    best: tuple[int, int, list[Tensor]] | None = None  # (valid, kept, split)
    found, enough = 0, 16  # valid draws seen, and how many suffice
    for attempt in range(draws):
        g = torch.Generator().manual_seed(seed * 7919 + attempt)
        rank = torch.randperm(n_components, generator=g)[component]  # components shuffled
        within = torch.randperm(n_images, generator=g)  # and the images within each
        images = torch.argsort(rank * n_images + within)
        reached = torch.cumsum(weight[images], 0) - weight[images] / 2  # at each image's middle
        part = torch.empty(n_images, dtype=torch.int64)
        part[images] = (reached >= cuts[0]).long() + (reached >= cuts[1]).long()  # 0 val 1 test
        part = torch.tensor([1, 2, 0])[part]  # 0 train, 1 val, 2 test
        kept = part[a] == part[b]
        split = [every[kept & (part[a] == k)] for k in range(3)]
        valid = int(
            same is None
            or all(bool((same[s] == 1).any()) and bool((same[s] == 0).any()) for s in split)
        )
        score = (valid, int(kept.sum()))
        if best is None or score > best[:2]:
            best = (*score, split)
        found += valid
        if found == enough:
            break
    assert best is not None  # draws >= 1
    train, val, test = best[2]
    return train, val, test
