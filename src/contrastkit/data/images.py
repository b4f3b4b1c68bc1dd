"""Image folders read lazily: listed once, each image decoded when a batch asks for it.

:class:`ImageFolderDataset` is the lazy counterpart of
:func:`~contrastkit.data.readers.read_image_folder`. Building it lists the files (the same
rules, from :func:`~contrastkit.data.readers.list_image_folder`) and reads one image
header; ``dataset[i]`` decodes and resizes image ``i`` (Pillow, the same code as the
eager reader, so the same float32 values). Memory holds the file names and the labels,
not the pixels: a folder far bigger than memory trains through a
:class:`torch.utils.data.DataLoader`, whose worker processes decode the next batches
while the model trains on this one.

:class:`LazyImages` is a view of such a dataset that stands in for the ``(N, C, S, S)``
tensor where code reads images by batches (a split's ``inputs``): it has the tensor's
shape, takes subsets without decoding, and decodes what it is indexed with.
:func:`image_statistics` gives per-channel means and standard deviations batch by batch,
the same from a tensor as from a lazy view of the same images.

Determinism: decoding draws no random numbers, so ``dataset[i]`` is the same in every
process and every run, and the batches depend only on the order the sampler draws, in
the main process. A :class:`~torch.utils.data.DataLoader` with ``shuffle=True`` and a
seeded ``generator=``, or a seeded
:class:`~contrastkit.data.sampling.ClassBalancedBatchSampler`, gives the same batches
with ``num_workers=0`` as with any number of workers: no ``worker_init_fn`` is needed.
Random augmentation belongs after the loader, on the batch
(:class:`~contrastkit.data.augment.Augment`, from a generator seeded per step), not in
the workers.

A damaged image is found when it is decoded, not when the folder is listed: it raises
:class:`ImageFileError` (a :class:`~contrastkit.data.readers.DataError`) whose message
is one line naming the file. A DataLoader worker that meets one stops the epoch: the
loader raises the error again in the main process, where :class:`ImageFileError` keeps
it one line, the file's name followed by the worker's number (torch's multi-line
report is kept in :attr:`ImageFileError.worker_traceback`). torch raises it again from a
frame that holds it, a reference cycle: where a program catches it and goes on (a
notebook), ``error.__traceback__ = None`` frees the loader, and stops its workers, at
once, rather than when the garbage collector comes to it, which takes seconds.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from contrastkit._validation import check_bool, check_int
from contrastkit.data.readers import (
    UNLABELLED,
    DataError,
    image_mode,
    image_pixels,
    is_grayscale_mode,
    list_image_folder,
    open_image,
)

__all__ = [
    "UNLABELLED",
    "ImageFileError",
    "ImageFolderDataset",
    "ImageStatistics",
    "LazyImages",
    "image_statistics",
]

# torch's report of an exception raised in a DataLoader worker, given as the message of
# a new exception of the same type in the main process (torch._utils.ExceptionWrapper)
_WORKER_REPORT = re.compile(
    r"\ACaught \w+ (?P<where>in DataLoader worker process \d+)\.\nOriginal Traceback"
)
_LAST_LINE = re.compile(r"^[\w.]*ImageFileError: (?P<message>.+)$")


class ImageFileError(DataError):
    """An image that cannot be decoded or used, with a one-line message naming the file.

    Raised again by a :class:`~torch.utils.data.DataLoader` in the main process when a
    worker raised it, the message is still one line: the worker's, followed by ``(in
    DataLoader worker process K)``; torch's whole report, with the worker's traceback,
    is in :attr:`worker_traceback` (``None`` for an error raised in this process).
    """

    def __init__(self, message: str) -> None:
        self.worker_traceback: str | None = None
        report = _WORKER_REPORT.match(message)
        lines = message.rstrip().splitlines()
        last = _LAST_LINE.match(lines[-1]) if report and lines else None
        if report and last:
            self.worker_traceback = message
            message = f"{last['message']} ({report['where']})"
        super().__init__(message)


class _PathTable:
    """File paths packed in one byte array and one offset array, not N Python objects.

    A DataLoader worker forked from the main process shares these arrays' pages as long
    as nobody writes to them; a list of N ``Path`` objects would be copied page by page
    into each worker as reading the objects updates their reference counts.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        encoded = [os.fsencode(path) for path in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Path:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return Path(os.fsdecode(self.bytes[start:stop].tobytes()))


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """The images of a folder, decoded and resized one by one as they are asked for.

    ``dataset[i]`` is ``(pixels, label)``: ``pixels`` a ``(C, S, S)`` float32 tensor in
    [0, 1] (``S = image_size``), the values :func:`~contrastkit.data.readers.
    read_image_folder` gives for that image; ``label`` an ``int``. A
    :class:`~torch.utils.data.DataLoader` stacks them into ``(B, C, S, S)`` batches and
    ``(B,)`` labels, with any ``num_workers`` (see the module's notes on determinism).

    The folder is either one subfolder per class (the rules of
    :func:`~contrastkit.data.readers.read_image_folder`: sorted class names, at least two
    classes of at least two images; labels index :attr:`class_names`) or, when
    ``allow_unlabelled``, a flat folder of images with no class subfolders: every label
    is then :data:`UNLABELLED` (-1) and :attr:`class_names` is empty, as for
    self-supervised training. Hidden files and files without an image suffix are
    ignored in both.

    The channel count is fixed when the folder is listed, so that every image gives the
    same shape: ``channels=1`` converts every image to grayscale, ``channels=3`` to RGB
    (an alpha channel is dropped). With ``channels=None`` it is read from the header of
    the first image only (1 when that image is grayscale, else 3), not from all of them
    as :func:`~contrastkit.data.readers.read_image_folder` does. The two agree whenever
    no error is raised: if the first image is grayscale and a later one is in colour,
    decoding that one raises :class:`ImageFileError` naming both files and asking for
    ``channels=3``, rather than losing its colour in silence.

    Memory: the file paths (packed in one array, about their length in bytes per image)
    and the labels (8 bytes per image, :attr:`labels`); listing holds every path as a
    :class:`~pathlib.Path` for a moment. Pixels exist only for the batches in flight.

    Args:
        folder: the root folder.
        image_size: every image is resized to ``image_size`` × ``image_size`` pixels
            (bilinear).
        channels: 1 or 3, or ``None`` for the first image's (see above).
        allow_unlabelled: accept a folder without class subfolders as unlabelled images;
            ``False`` requires class subfolders, as
            :func:`~contrastkit.data.readers.read_image_folder` does.

    Attributes:
        root: the folder.
        labels: ``(N,)`` int64 labels, available without decoding any image (for
            :class:`~contrastkit.data.sampling.ClassBalancedBatchSampler`, a split).
        class_names: the class subfolders' names (empty for a flat folder).
        labelled: whether the folder has classes.
        image_size: the side of every image.
        channels: the channel count of every image.
        source: the folder, its classes and images, in words (for a report).

    Raises:
        TypeError, ValueError: ``image_size`` not a positive integer, ``channels`` not
            1, 3 or ``None``, ``allow_unlabelled`` not a bool.
        DataError: the folder does not exist, is empty, breaks the class rules above, or
            (with ``channels=None``) its first image cannot be identified.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> from torch.utils.data import DataLoader
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     for i in range(3):
        ...         Image.new("RGB", (10, 8), (40 * i, 0, 200)).save(root / name / f"{i}.png")
        >>> dataset = ImageFolderDataset(root, image_size=4)
        >>> len(dataset), dataset.channels, dataset.class_names, dataset.labels.tolist()
        (6, 3, ['cat', 'dog'], [0, 0, 0, 1, 1, 1])
        >>> pixels, labels = next(iter(DataLoader(dataset, batch_size=4)))
        >>> pixels.shape, labels.tolist()
        (torch.Size([4, 3, 4, 4]), [0, 0, 0, 1])
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        image_size: int = 64,
        channels: int | None = None,
        allow_unlabelled: bool = True,
    ) -> None:
        self.image_size = check_int("image_size", image_size, minimum=1)
        if channels is not None:
            check_int("channels", channels)
            if channels not in (1, 3):
                raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
        check_bool("allow_unlabelled", allow_unlabelled)
        self.root = Path(folder)
        files = list_image_folder(self.root, flat=allow_unlabelled)
        self._paths = _PathTable(files.paths)
        self._labels = np.asarray(files.labels, dtype=np.int64)
        self.labels: Tensor = torch.from_numpy(self._labels)
        self.class_names: list[str] = list(files.class_names)
        self.labelled = bool(self.class_names)
        self._inferred_from: Path | None = None
        if channels is None:
            first = files.paths[0]
            channels = 1 if is_grayscale_mode(image_mode(first)) else 3
            self._inferred_from = first if channels == 1 else None
        self.channels: int = channels
        what = f"{len(self.class_names)} classes" if self.labelled else "no classes"
        self.source = f"image folder {self.root} ({what}, {len(self)} images, read lazily)"

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> Path:
        """The file of sample ``index``."""
        return self._paths[self._position(index)]

    @property
    def paths(self) -> list[str]:
        """Every sample's file, in order (a new list of N strings: for reports)."""
        return [str(self._paths[i]) for i in range(len(self))]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """Image ``index`` decoded, resized and scaled to [0, 1], and its label.

        Raises:
            ImageFileError: the file cannot be read or converted, or is in colour while
                the channel count was inferred as 1 from the first image.
        """
        position = self._position(index)
        path = self._paths[position]
        try:
            image = open_image(path)
            if self._inferred_from is not None and not is_grayscale_mode(image.mode):
                raise ImageFileError(
                    f"image {path} is in colour ({image.mode}) but the dataset reads 1 "
                    f"channel, inferred from its first image {self._inferred_from}; pass "
                    "channels=3 (or channels=1 to convert every image to grayscale)"
                )
            pixels = image_pixels(
                image, image_size=self.image_size, channels=self.channels, path=path
            )
        except ImageFileError:
            raise
        except DataError as error:
            raise ImageFileError(str(error)) from None
        return torch.from_numpy(pixels), int(self._labels[position])

    def _position(self, index: object) -> int:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an integer, got {type(index).__name__} {index!r}")
        n = len(self)
        position = int(index)
        if not -n <= position < n:
            raise IndexError(f"index {position} is out of range for {n} images")
        return position % n


class LazyImages:
    """Images of an :class:`ImageFolderDataset` that are decoded only when indexed.

    A stand-in for the ``(N, C, S, S)`` float32 tensor
    :func:`~contrastkit.data.readers.read_image_folder` returns, for the code that
    reads images by batches: :attr:`shape`, :meth:`dim`, :meth:`size` and ``len`` are
    those of that tensor, and indexing decodes (``images[i]`` is ``(C, S, S)``;
    ``images[a:b]`` and ``images[index]``, an integer tensor, array or list, are
    ``(K, C, S, S)``: the same values as the eager tensor's rows). Nothing is held but
    the dataset's file list and an index of positions into it (8 bytes per image).

    :meth:`subset` takes a view of some images (no decoding), as a split does;
    ``torch.cat`` of views of one dataset is a view too (no other torch function takes
    one: index it first). :meth:`samples` is the map-style dataset of ``(pixels,
    label)`` items a :class:`~torch.utils.data.DataLoader` decodes in its workers.

    Args:
        dataset: the images of a folder.
        index: the positions in ``dataset`` of the images of this view, in order (all of
            them by default).

    Example:
        >>> import tempfile, pathlib, torch
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     for i in range(3):
        ...         Image.new("RGB", (10, 8), (40 * i, 0, 200)).save(root / name / f"{i}.png")
        >>> images = LazyImages(ImageFolderDataset(root, image_size=4))
        >>> view = images.subset(torch.tensor([5, 0]))
        >>> tuple(view.shape), tuple(view[0:2].shape), len(torch.cat([view, images]))
        ((2, 3, 4, 4), (2, 3, 4, 4), 8)
    """

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, dataset: ImageFolderDataset, index: Any = None) -> None:
        if not isinstance(dataset, ImageFolderDataset):
            raise TypeError(f"dataset must be an ImageFolderDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        positions = np.arange(len(dataset)) if index is None else _positions(index)
        if positions.size and (positions.min() < 0 or positions.max() >= len(dataset)):
            raise IndexError(f"index holds positions outside the {len(dataset)} images")
        self.index = positions.astype(np.int64, copy=False)

    def __repr__(self) -> str:
        return f"LazyImages({len(self)} of {self.dataset.root}, shape {tuple(self.shape)})"

    @property
    def shape(self) -> torch.Size:
        """``(N, C, S, S)``, as the decoded tensor's."""
        size = self.dataset.image_size
        return torch.Size((len(self), self.dataset.channels, size, size))

    def dim(self) -> int:
        """4, as the decoded tensor's."""
        return 4

    def size(self, dim: int | None = None) -> Any:
        """The shape, or its ``dim``-th size."""
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, key: Any) -> Tensor:
        """The pixels of one image ``(C, S, S)`` or of several ``(K, C, S, S)``, decoded."""
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            n = len(self)
            if not -n <= int(key) < n:
                raise IndexError(f"index {int(key)} is out of range for {n} images")
            return self.dataset[int(self.index[int(key)])][0]
        positions = self.index[key] if isinstance(key, slice) else self.index[_positions(key)]
        if positions.size == 0:
            return torch.zeros((0, *self.shape[1:]))
        return torch.stack([self.dataset[int(p)][0] for p in positions])

    def subset(self, index: Any) -> LazyImages:
        """The images at ``index`` (integers), as a view: nothing is decoded."""
        return LazyImages(self.dataset, self.index[_positions(index)])

    def samples(self, labels: Tensor | None = None) -> Dataset[tuple[Tensor, int]]:
        """A map-style dataset of ``(pixels, label)``: image ``i`` decoded in ``[i]``.

        ``labels`` (one per image; default: the folder's) are what the items carry.
        """
        if labels is None:
            labels = self.dataset.labels[torch.from_numpy(self.index)]
        if len(labels) != len(self):
            raise ValueError(f"labels must hold {len(self)} labels, got {len(labels)}")
        return _Samples(self, labels)

    def batches(self, batch_size: int = 256, *, workers: int = 0) -> Iterator[Tensor]:
        """The images in order, ``batch_size`` at a time, decoded by ``workers`` processes.

        The batches are those of ``images[i : i + batch_size]``, with any ``workers``;
        torch's global random state is left as it was.
        """
        check_int("batch_size", batch_size, minimum=1)
        check_int("workers", workers, minimum=0)
        # a generator of its own: iterating a DataLoader draws its workers' base seed, which
        # would otherwise come from (and move) torch's global random state
        loader = DataLoader(
            self.samples(),
            batch_size=batch_size,
            num_workers=workers,
            generator=torch.Generator(),
        )
        for pixels, _ in loader:
            yield pixels

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """``torch.cat`` of views of one dataset is a view; nothing else takes one."""
        kwargs = kwargs or {}
        if func is torch.cat and args and not kwargs.get("dim") and not kwargs.get("out"):
            parts = list(args[0])
            if all(isinstance(p, LazyImages) for p in parts) and len(args) == 1:
                if all(p.dataset is parts[0].dataset for p in parts):
                    return LazyImages(parts[0].dataset, np.concatenate([p.index for p in parts]))
        name = getattr(func, "__name__", str(func))
        raise TypeError(
            f"{name} does not take images read lazily (LazyImages): index them to decode "
            "a batch of pixels (torch.cat joins views of one folder)"
        )


class _Samples(Dataset[tuple[Tensor, int]]):
    """``(pixels, label)`` of a :class:`LazyImages` view, decoded one by one."""

    def __init__(self, images: LazyImages, labels: Tensor) -> None:
        self.images = images
        self.labels = labels.to(torch.int64)
        self.targets = self.labels  # read by samplers that take a Dataset's labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


def _positions(index: Any) -> np.ndarray:
    """Integer positions from a tensor, array, list or range (no booleans)."""
    if isinstance(index, Tensor):
        index = index.cpu().numpy()
    array = np.asarray(index)
    if array.dtype == np.bool_ or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"index must hold integers, got {array.dtype}")
    return array.astype(np.int64, copy=False).reshape(-1)


@dataclass(frozen=True)
class ImageStatistics:
    """Per-channel statistics of images, from :func:`image_statistics`.

    Attributes:
        mean, std: ``(C, 1, 1)`` float32: each channel's mean and standard deviation
            (population) over the pixels of the images counted.
        low, high: the smallest and largest pixel value.
        count: the images counted.
        total: the images there were (``count`` < ``total``: a sample of them).
    """

    mean: Tensor
    std: Tensor
    low: float
    high: float
    count: int
    total: int


def image_statistics(
    images: Tensor | LazyImages, *, limit: int = 10_000, batch_size: int = 256, workers: int = 0
) -> ImageStatistics:
    """Per-channel mean and standard deviation of images, computed batch by batch.

    The images are read ``batch_size`` at a time (a :class:`LazyImages` view decoded by
    ``workers`` DataLoader processes) and summed in float64, so that only one batch is
    in memory: the statistics of a folder bigger than memory. At most ``limit`` images
    are counted: all of them when there are no more, else ``limit`` evenly spaced ones
    (positions ``round(k (N - 1) / (limit - 1))``). A tensor and a lazy view of the same
    images give the same statistics, bit for bit: the same batches, summed alike.

    Raises:
        TypeError: ``images`` is neither a 4-D tensor nor a :class:`LazyImages`.
        ValueError: no image, or ``limit``, ``batch_size`` or ``workers`` out of range.
    """
    if not isinstance(images, LazyImages) and not (
        isinstance(images, Tensor) and images.dim() == 4
    ):
        got = type(images).__name__
        if isinstance(images, Tensor):
            got = f"shape {tuple(images.shape)}"
        raise TypeError(f"images must be a (N, C, H, W) tensor or LazyImages, got {got}")
    check_int("limit", limit, minimum=2)
    check_int("batch_size", batch_size, minimum=1)
    check_int("workers", workers, minimum=0)
    total = int(images.shape[0])
    if total == 0:
        raise ValueError("images must hold at least one image, got 0")
    chosen = None
    if total > limit:
        chosen = torch.linspace(0, total - 1, limit, dtype=torch.float64).round().long()
    if isinstance(images, LazyImages):
        view = images if chosen is None else images.subset(chosen)
        batches: Iterator[Tensor] = view.batches(batch_size, workers=workers)
    else:
        picked = images if chosen is None else images[chosen]
        batches = (picked[i : i + batch_size] for i in range(0, picked.shape[0], batch_size))
    channels = int(images.shape[1])
    first = torch.zeros(channels, dtype=torch.float64)
    second = torch.zeros(channels, dtype=torch.float64)
    low, high, count, pixels = math.inf, -math.inf, 0, 0
    for batch in batches:
        x = batch.to(torch.float64)
        first += x.sum(dim=(0, 2, 3))
        second += (x * x).sum(dim=(0, 2, 3))
        low, high = min(low, float(x.min())), max(high, float(x.max()))
        count += int(x.shape[0])
        pixels += int(x.shape[0] * x.shape[2] * x.shape[3])
    mean = first / pixels
    std = (second / pixels - mean * mean).clamp_min(0.0).sqrt()
    std = torch.where(std > 1e-6 * std.max().clamp_min(1e-12), std, torch.ones_like(std))
    shape = (channels, 1, 1)
    return ImageStatistics(
        mean=mean.float().reshape(shape),
        std=std.float().reshape(shape),
        low=low,
        high=high,
        count=count,
        total=total,
    )
