"""The parts a run is built from: its data, its network, its loss and batches, its schedule.

Each choice of :class:`~contrastkit.app.config.RunConfig` is looked up here, in one place:

* the data: :func:`read_data` picks the reader of ``config.data`` (the bundled digits,
  an image folder, a pair file, a feature file), :func:`run_splits` splits it;
* the network: :func:`model_spec` (saved as ``model.json``) and :func:`build_model`,
  with :func:`scale_inputs` for an autoencoder's inputs;
* the loss: :data:`LOSS_KINDS`, one entry per ``config.loss`` (how it batches the data
  and the objective it trains), used by :func:`loss_and_loaders`; :func:`build_objective`
  wraps it for the reconstruction and combined objectives;
* the optimisation: :func:`resolve_device` and :func:`optimizer_and_schedule`.

Nothing here trains or writes files; :mod:`contrastkit.app.run` does.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import distributed, losses
from contrastkit.app.config import (
    AUGMENTS,
    DEFAULT_ENCODER,
    DEFAULT_HIDDEN,
    LAZY_ABOVE_BYTES,
    RECONSTRUCTION_LOSSES,
    RESNET_BLOCKS,
    RESNET_HIDDEN,
    ConfigError,
    RunConfig,
)
from contrastkit.data import (
    Augment,
    ClassBalancedBatchSampler,
    FeatureNoise,
    PairDataset,
    RandomBatchSampler,
)
from contrastkit.data.images import (
    ImageFolderDataset,
    LazyImages,
    image_statistics,
)
from contrastkit.data.readers import (
    UNLABELLED,
    DataError,
    LabelledData,
    PairData,
    has_label_column,
    image_mode,
    is_grayscale_mode,
    is_pair_file,
    load_digits,
    read_feature_vectors,
    read_features,
    read_image_folder,
    read_pairs,
    split_classes,
    split_indices,
    split_pairs_by_image,
)
from contrastkit.data.text import LabelledTexts
from contrastkit.models import (
    Autoencoder,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    ProjectedNetwork,
    ProjectionHead,
    ResNetEncoder,
    SiameseNetwork,
    Standardize,
    WeightsError,
    load_pretrained,
)
from contrastkit.training import (
    CachedObjective,
    LabelObjective,
    MemoryBank,
    PairObjective,
    ReconstructionObjective,
    TwoViewObjective,
    WeightedSum,
)

__all__ = [
    "FEATURE_DROP",
    "FEATURE_NOISE",
    "LOSS_KINDS",
    "ONE_CLASS_HINT",
    "BatchAugment",
    "LossKind",
    "OneCycleSchedule",
    "Split",
    "balanced_sampler",
    "batch_augment",
    "build_model",
    "build_objective",
    "class_count",
    "init_encoder",
    "inputs_of",
    "is_lazy",
    "lazy_image_folder",
    "lazy_note",
    "learns_without_labels",
    "loss_and_loaders",
    "loss_terms",
    "model_spec",
    "open_set_note",
    "open_set_split",
    "optimizer_and_schedule",
    "optimizer_steps_per_epoch",
    "pair_split_summary",
    "projected",
    "read_data",
    "resolve_augment",
    "resolve_device",
    "resolve_encoder",
    "resolve_pair_split",
    "resolve_projection",
    "run_splits",
    "samples_of",
    "scale_inputs",
    "scale_split",
    "standardize",
    "unlabelled",
]

Split = LabelledData | PairData
"""One split of a run's data: labelled samples, or pairs of a pair file."""

# ----------------------------------------------------------------------------- the data


def read_data(config: RunConfig, *, channels: int | None = None) -> Split:
    """The data a config names: the bundled digits, an image folder or a file.

    Images are read with ``channels`` channels (1 or 3; ``None``: grayscale when every
    image is); a trained run reads new images with its own channel count.
    """
    if config.data == "digits":
        _no_excluded_columns(config, "the bundled digits")
        return load_digits()
    path = Path(config.data)
    if path.is_dir():
        _no_excluded_columns(config, f"image folder {path}")
        flat = config.loss == "ntxent"  # needs no labels: a flat folder is valid for it
        lazy = lazy_image_folder(config, path, channels=channels, flat=flat)
        if lazy is not None:
            return lazy
        return read_image_folder(path, image_size=config.image_size, channels=channels, flat=flat)
    if not path.exists():
        raise DataError(f"data {path} does not exist (give 'digits', a folder or a file)")
    if is_pair_file(path):
        _no_excluded_columns(config, f"pair file {path}")
        return read_pairs(path, image_size=config.image_size, channels=channels)
    one_class = learns_without_labels(config)
    if one_class and not has_label_column(path, config.label_column):
        inputs = read_feature_vectors(
            path, label_column=config.label_column, exclude_columns=config.exclude_columns
        )
        labels = torch.full((inputs.shape[0],), UNLABELLED, dtype=torch.int64)
        source = f"feature file {path} ({inputs.shape[0]} × {inputs.shape[1]}, unlabelled)"
        return LabelledData(inputs, labels, [], "vectors", source)
    data = read_features(
        path,
        label_column=config.label_column,
        exclude_columns=config.exclude_columns,
        min_classes=1 if one_class else 2,
    )
    if not isinstance(data, LabelledData):  # only without a label column
        raise DataError(f"feature file {path} has no labels")
    return data


def learns_without_labels(config: RunConfig) -> bool:
    """Whether a run's objective needs no classes: reconstruction, or loss ntxent.

    Such a run trains on one class (the normal data of anomaly detection) or on a
    feature file without a label column; the others need two classes to contrast.
    """
    return config.objective == "reconstruction" or config.loss == "ntxent"


ONE_CLASS_HINT = (
    "with one class (or none) train --objective reconstruction (an autoencoder) or "
    "--loss ntxent (two noisy views of each row, no labels)"
)
"""What a run of one class can train, for the errors that refuse the others."""


def lazy_image_folder(
    config: RunConfig, path: Path, *, channels: int | None = None, flat: bool = False
) -> LabelledData | None:
    """The image folder ``path`` read lazily, or ``None`` when it is to be read eagerly.

    ``config.image_loading``: ``"lazy"`` always, ``"eager"`` never, ``"auto"`` when the
    decoded images (N × C × ``image_size``² float32) would take more than
    :data:`~contrastkit.app.config.LAZY_ABOVE_BYTES`, and the objective is contrastive.
    The inputs are then a :class:`~contrastkit.data.images.LazyImages` view, which
    decodes the images it is indexed with (the same values as the eager reader's). With
    ``channels=None`` the images are grayscale only if every one is, as the eager
    reader has it: when the first is, every file's header is read to check the others.
    """
    if config.image_loading == "eager" or (
        config.image_loading == "auto" and config.objective != "contrastive"
    ):
        return None
    dataset = ImageFolderDataset(
        path, image_size=config.image_size, channels=channels, allow_unlabelled=flat
    )
    if channels is None and dataset.channels == 1:  # grayscale only if every image is
        colour = any(
            not is_grayscale_mode(image_mode(dataset.path(i))) for i in range(len(dataset))
        )
        if colour:
            dataset = ImageFolderDataset(
                path, image_size=config.image_size, channels=3, allow_unlabelled=flat
            )
    decoded = len(dataset) * dataset.channels * config.image_size**2 * 4
    if config.image_loading == "auto" and decoded <= LAZY_ABOVE_BYTES:
        return None
    images = LazyImages(dataset)
    labels = dataset.labels.clone()
    what = f"{len(dataset.class_names)} classes" if dataset.labelled else "unlabelled"
    return LabelledData(
        inputs=cast(Tensor, images),  # a view with the tensor's shape, decoded when indexed
        labels=labels,
        class_names=list(dataset.class_names),
        kind="images",
        source=f"image folder {path} ({what}, {len(dataset)} images, read lazily)",
    )


def is_lazy(data: Split | None) -> bool:
    """Whether ``data`` holds images read lazily (a :class:`LazyImages` view)."""
    return isinstance(data, LabelledData) and isinstance(data.inputs, LazyImages)


def _no_excluded_columns(config: RunConfig, what: str) -> None:
    if config.exclude_columns:
        raise ConfigError(
            f"exclude_columns ({', '.join(config.exclude_columns)}) applies to a .csv feature "
            f"file, not to {what}"
        )


def _split(config: RunConfig, data: Split) -> tuple[Split, Split, Split]:
    fractions = (config.val_fraction, config.test_fraction)
    if config.split_by == "classes":
        if isinstance(data, PairData):
            raise ConfigError(
                f"split_by classes holds whole classes out, but {data.source} is a pair "
                "file, whose pairs name no classes; use split_by samples"
            )
        try:
            index = split_classes(data.labels, fractions=fractions, seed=config.seed)
        except ValueError as error:
            raise DataError(f"{data.source}: split_by classes: {error}") from None
    elif isinstance(data, PairData) and _by_image(config, data):
        assert data.left_image is not None and data.right_image is not None
        index = split_pairs_by_image(
            data.left_image, data.right_image, fractions=fractions, seed=config.seed, same=data.same
        )
    elif isinstance(data, PairData):  # the pairs at random (runs made before pair_split)
        index = split_indices(data.same, fractions=fractions, seed=config.seed)
    else:  # unlabelled images (NT-Xent): one group, split at random
        keys = data.labels if not unlabelled(data) else torch.zeros_like(data.labels)
        index = split_indices(keys, fractions=fractions, seed=config.seed)
    train, val, test = (data.subset(i) for i in index)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if len(part) == 0:
            raise DataError(f"{data.source}: the {name} split is empty; more data is needed")
    if isinstance(data, PairData):
        _check_pair_splits(
            data,
            cast(PairData, train),
            cast(PairData, val),
            cast(PairData, test),
            by_image=_by_image(config, data),
        )
    return train, val, test


def _by_image(config: RunConfig, data: PairData) -> bool:
    """Whether a pair file is split by its images: ``pair_split`` images (empty: pairs)."""
    if config.pair_split == "images" and data.left_image is None:
        raise ConfigError(f"pair_split images needs the image of each pair of {data.source}")
    return config.pair_split == "images"


def resolve_pair_split(config: RunConfig, data: Split, *, resume: bool) -> str:
    """The ``pair_split`` of a run on ``data``; a config error where it does not apply.

    Empty: ``"images"`` for a new run on a pair file, ``"pairs"`` for a resumed run made
    before the option (its own split, reproduced), and empty for other data.
    """
    if not isinstance(data, PairData):
        if config.pair_split:
            raise ConfigError(
                f"pair_split applies to a pair file (left,right,label), not to {data.source}"
            )
        return ""
    if config.pair_split:
        return config.pair_split
    return "pairs" if resume else "images"


def pair_split_summary(
    config: RunConfig, data: PairData, train: PairData, val: PairData, test: PairData
) -> dict[str, Any]:
    """How a pair file was split, as ``metrics.json`` records it (``data.split``).

    ``{"by": "images" | "pairs", "pairs": {split: n}, "images": {split: n},
    "dropped_pairs": n, "shared_images": {"train_test": n, ...}}``: the images each
    split's pairs name, the pairs of the file in no split (their two images fell in two
    splits), and the images two splits share (0 when split by image).
    """
    parts = {"train": train, "validation": val, "test": test}
    kept = sum(len(p) for p in parts.values())
    out: dict[str, Any] = {
        "by": "images" if config.pair_split == "images" else "pairs",
        "pairs": {name: len(p) for name, p in parts.items()},
        "dropped_pairs": len(data) - kept,
    }
    images = {name: p.images() for name, p in parts.items()}
    if all(i is not None for i in images.values()):
        sets = {name: set(cast(Tensor, i).tolist()) for name, i in images.items()}
        out["images"] = {name: len(i) for name, i in sets.items()}
        out["shared_images"] = {
            "train_validation": len(sets["train"] & sets["validation"]),
            "train_test": len(sets["train"] & sets["test"]),
            "validation_test": len(sets["validation"] & sets["test"]),
        }
    return out


def _check_pair_splits(
    data: PairData, train: PairData, val: PairData, test: PairData, *, by_image: bool = False
) -> None:
    """Each split of a pair file needs a matching and a non-matching pair.

    Training needs both kinds to learn from, validation to choose the threshold, test to
    measure verification (a pair file's only evaluation). A kind the file has fewer than
    3 of is named first (the file needs more of it).
    """
    splits = (("training", train), ("validation", val), ("test", test))
    kinds = sorted(
        ((1, "matching (label 1)"), (0, "non-matching (label 0)")),
        key=lambda kind: int((data.same == kind[0]).sum()) >= 3,
    )
    for label, kind in kinds:
        counts = {name: int((part.same == label).sum()) for name, part in splits}
        empty = [name for name, n in counts.items() if n == 0]
        if empty:
            shares = ", ".join(f"{n} to {name}" for name, n in counts.items())
            total = int((data.same == label).sum())
            dropped = total - sum(counts.values())
            why = (
                f"({total} in the file: {shares}"
                + (f", {dropped} dropped across splits" if dropped else "")
                + ")"
            )
            hint = (
                "; split by image, every held-out split needs such a pair between images "
                "of its own: give more pairs, or pair_split pairs (an image can then be in a "
                "training and a test pair)"
                if by_image and total >= 3
                else ""
            )
            raise DataError(
                f"{data.source}: the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} "
                f"would have no {kind} pair {why}; each split needs a matching and a "
                f"non-matching pair, so the file needs at least 3 of each{hint}"
            )


def run_splits(config: RunConfig, data: Split) -> tuple[Split, Split, Split, LabelledData | None]:
    """The training, validation and test splits of a run, and its anomalies.

    Without ``anomaly_class`` the anomalies are ``None``. With it, the data are split as
    without (so the other classes' samples land in the same splits), then every sample
    of that class is taken out of the three splits and returned as the anomalies.
    """
    parts = _split(config, data)
    if not config.anomaly_class:
        return (*parts, None)
    if not isinstance(data, LabelledData):
        raise ConfigError(
            f"anomaly_class needs labelled data, but {data.source} holds pairs without classes"
        )
    if config.anomaly_class not in data.class_names:
        names = data.class_names
        shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
        raise ConfigError(
            f"anomaly_class {config.anomaly_class!r} is not a class of {data.source}; "
            f"its classes are {shown}"
        )
    anomaly = data.class_names.index(config.anomaly_class)
    if len(data.class_names) < 3 and not learns_without_labels(config):
        raise DataError(
            f"{data.source}: holding out class {config.anomaly_class!r} leaves "
            f"{len(data.class_names) - 1} class, and loss {config.loss} needs at least 2 normal "
            f"classes; {ONE_CLASS_HINT}"
        )
    present = set(data.labels.tolist()) - {anomaly}
    if not present:
        raise DataError(
            f"{data.source}: every sample is of class {config.anomaly_class!r}; holding it "
            "out leaves no normal sample to train on"
        )
    train, val, test = (_without(cast(LabelledData, part), anomaly) for part in parts)
    anomalies = data.subset(torch.nonzero(data.labels == anomaly).flatten())
    return train, val, test, anomalies


def open_set_split(train: Split, val: Split, test: Split) -> dict[str, Any]:
    """The classes of each split of an open-set run, as ``metrics.json`` records them.

    ``{"by": "classes", "train_classes": [...], "validation_classes": [...],
    "test_classes": [...]}``, each list the sorted names of the classes in that split.
    """
    out: dict[str, Any] = {"by": "classes"}
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if not isinstance(part, LabelledData):
            raise ValueError("an open-set split holds labelled data")
        held = sorted(set(part.labels.tolist()))
        out[f"{name}_classes"] = [part.class_names[i] for i in held]
    return out


def open_set_note(split: Mapping[str, Any]) -> str:
    """The sentence of the report that states an open-set split (:func:`open_set_split`)."""
    train, val, test = (set(split[f"{k}_classes"]) for k in ("train", "validation", "test"))
    unseen = not (test & train) and not (val & train)
    return (
        f"open set: {len(train)} training identities, {len(val)} validation, {len(test)} "
        "test; "
        + (
            "no test identity was seen in training"
            if unseen
            else "some held-out identities were seen in training"
        )
        + " (the threshold is chosen on the validation identities and applied to the test "
        "identities)"
    )


def _without(part: LabelledData, label: int) -> LabelledData:
    return part.subset(torch.nonzero(part.labels != label).flatten())


# ----------------------------------------------------------------------------- the network


def resolve_encoder(config: RunConfig, kind: str, *, resume: bool) -> str:
    """The ``encoder`` of a run on data of ``kind``; a config error where it does not apply.

    Empty: :data:`~contrastkit.app.config.DEFAULT_ENCODER` for a new run on images,
    ``"conv"`` for a resumed run made before the option (its own network), and empty
    for other data. A new run also gets its default ``hidden`` (the ResNet's stage
    widths or the ConvNet's channels) and, for the ResNet, ``resnet_blocks``.
    """
    if kind != "images":
        if config.encoder or config.resnet_blocks:
            name = "encoder" if config.encoder else "resnet_blocks"
            raise ConfigError(
                f"{name} applies to image data (an image folder, a pair file of images), "
                f"and data {config.data!r} holds {'feature vectors' if kind == 'vectors' else kind}"
            )
        if not resume and not config.hidden and kind in DEFAULT_HIDDEN:
            config.hidden = list(DEFAULT_HIDDEN[kind])
        return ""
    encoder = config.encoder or ("conv" if resume else DEFAULT_ENCODER)
    if encoder == "conv" and not config.batch_norm:
        also = (
            "; micro_batch, which needs it off, takes encoder resnet" if config.micro_batch else ""
        )
        raise ConfigError(
            "batch_norm = false applies to feature vectors (an MLP) and to encoder resnet "
            "(GroupNorm instead); the ConvNet of encoder conv has batch normalization in every "
            "block" + also
        )
    if not resume:
        if not config.hidden:
            config.hidden = list(RESNET_HIDDEN if encoder == "resnet" else DEFAULT_HIDDEN[kind])
        if encoder == "resnet" and not config.resnet_blocks:
            config.resnet_blocks = [RESNET_BLOCKS] * len(config.hidden)
    return encoder


def unlabelled(data: Split | None) -> bool:
    """Whether ``data`` holds samples without labels (a flat image folder, for NT-Xent)."""
    return isinstance(data, LabelledData) and not data.class_names


def inputs_of(data: Split) -> Tensor:
    """Every input of a split: its samples, or the left then the right of each pair."""
    if isinstance(data, PairData):
        return torch.cat([data.left, data.right])
    return data.inputs


def model_spec(
    config: RunConfig, data: Split, train: Split | None = None, *, feature_scaling: bool = True
) -> dict[str, Any]:
    """What :func:`build_model` needs to rebuild the network, saved as ``model.json``.

    An autoencoder's spec also holds its ``noise_std``, its reconstruction loss and the
    input range of the training split ``train`` (which it then needs). An autoencoder of
    a feature file (not the bundled digits, whose pixels share one unit) also holds
    ``feature_scaling`` (with ``feature_scaling=True``, the default; a run resumed from
    before it passes ``False``): each feature's own centre and scale on the training
    split, so that no column dominates the reconstruction error by its units (see
    :func:`scale_inputs`). An MLP without batch normalization says
    ``"batch_norm": false``.
    """
    sample = data.inputs if isinstance(data, LabelledData) else data.left
    spec: dict[str, Any] = {
        "kind": data.kind,
        "embedding_dim": config.embedding_dim,
        "hidden": list(config.hidden),
    }
    resnet = data.kind == "images" and config.encoder == "resnet"
    if not config.batch_norm:
        if data.kind == "images" and not resnet:
            also = "; micro_batch, which needs it off, takes encoder resnet"
            raise ConfigError(
                "batch_norm = false applies to feature vectors (an MLP) and to encoder resnet "
                "(GroupNorm instead); the ConvNet of encoder conv has batch normalization in "
                "every block" + (also if config.micro_batch else "")
            )
        if not resnet:
            spec["batch_norm"] = False  # absent: true, as in the runs made before the option
    if data.kind == "images":
        spec.update(channels=int(sample.shape[1]), image_size=int(sample.shape[2]))
        if resnet:  # absent: the ConvNet, as in the runs made before the option
            blocks = list(config.resnet_blocks) or [RESNET_BLOCKS] * len(config.hidden)
            norm = "batch" if config.batch_norm else "group"
            spec.update(encoder="resnet", blocks=blocks, norm=norm)
            smallest = 2 ** (len(config.hidden) - 1)
            if spec["image_size"] < smallest:
                raise ConfigError(
                    f"image_size {spec['image_size']} is too small for a ResNet of "
                    f"{len(config.hidden)} stages (each after the first halves the image): "
                    f"give images of at least {smallest} pixels or fewer widths in hidden"
                )
        else:
            smallest = 2 ** len(config.hidden)
            if spec["image_size"] < smallest:
                raise ConfigError(
                    f"image_size {spec['image_size']} is too small for a ConvNet of "
                    f"{len(config.hidden)} blocks (each halves the image): give images of "
                    f"at least {smallest} pixels or fewer channels in hidden"
                )
    else:
        spec.update(in_features=int(sample.shape[1]))
    if config.objective != "contrastive":
        if train is None:
            raise ValueError("an autoencoder's spec needs the training split for its input range")
        x = inputs_of(train)
        spec["autoencoder"] = {
            "noise_std": config.noise_std,
            "reconstruction_loss": config.reconstruction_loss,
            "input_range": [float(x.min()), float(x.max())],
        }
        if feature_scaling and data.kind == "vectors" and config.data != "digits":
            spec["autoencoder"]["feature_scaling"] = _feature_scaling(x, config.reconstruction_loss)
    return spec


def _feature_scaling(x: Tensor, reconstruction_loss: str) -> dict[str, Any]:
    """Each feature's centre and scale on the training rows ``x``, for :func:`scale_inputs`.

    ``"standardize"`` (mean and standard deviation) for the squared error; ``"min_max"``
    (smallest value and range) for binary cross-entropy, whose targets lie in [0, 1]. A
    feature constant in training gets scale 1.
    """
    x = x.double()
    if reconstruction_loss == "bce":
        kind, center, scale = "min_max", x.min(dim=0).values, x.max(dim=0).values
        scale = scale - center
    else:
        kind, center, scale = "standardize", x.mean(dim=0), x.std(dim=0, correction=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return {"kind": kind, "center": center.tolist(), "scale": scale.tolist()}


def build_model(spec: Mapping[str, Any], standardize: Standardize | None = None) -> nn.Module:
    """The network of a model spec: a :class:`SiameseNetwork`, or an :class:`Autoencoder`.

    Without ``standardize`` a neutral one is made (the weights loaded next replace it).
    """
    hidden = [int(h) for h in spec["hidden"]]
    dim = int(spec["embedding_dim"])
    batch_norm = bool(spec.get("batch_norm", True))
    if spec["kind"] == "images":
        channels = int(spec["channels"])
        shape = (channels, 1, 1)
        std = standardize or Standardize(torch.zeros(shape), torch.ones(shape))
        encoder: nn.Module
        if spec.get("encoder", "conv") == "resnet":
            encoder = ResNetEncoder(
                channels,
                embedding_dim=dim,
                widths=hidden,
                blocks=[int(n) for n in spec["blocks"]],
                norm=spec.get("norm", "batch"),
                standardize=std,
            )
        else:
            encoder = ConvEncoder(channels, embedding_dim=dim, channels=hidden, standardize=std)
    else:
        n = int(spec["in_features"])
        std = standardize or Standardize(torch.zeros(n), torch.ones(n))
        encoder = MLPEncoder(
            n, embedding_dim=dim, hidden=hidden, batch_norm=batch_norm, standardize=std
        )
    if "autoencoder" not in spec:
        return SiameseNetwork(encoder)
    mirrored = hidden[::-1]
    if spec["kind"] == "images":
        decoder: nn.Module = ConvDecoder(
            dim, int(spec["channels"]), int(spec["image_size"]), channels=mirrored
        )
    else:
        decoder = MLPDecoder(dim, int(spec["in_features"]), hidden=mirrored, batch_norm=batch_norm)
    return Autoencoder(encoder, decoder, noise_std=float(spec["autoencoder"]["noise_std"]))


class _WithoutStandardize(nn.Module):
    """The layers of an encoder but its input statistics (shared, not copied)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        for name, module in encoder.named_children():
            if not isinstance(module, Standardize):  # ``standardize``, an MLP's ``0``
                self.add_module(name, module)


def init_encoder(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Start the encoder of ``model`` from the weights file ``path``; what was loaded.

    The file holds the keys of the encoder itself, or of a siamese network or
    autoencoder (a run's ``model.safetensors``) under ``encoder.``, or of a checkpoint
    of a run trained through a projection head under ``network.encoder.``; its input statistics
    (``standardize.*``) are taken where the file has them, else the training split's are
    kept. Nothing is copied unless every other key and shape matches
    (:func:`~contrastkit.models.load_pretrained` with ``strict=True``).

    Returns:
        ``{"path", "sha256", "tensors", "standardize"}``: the file (absolute), its
        SHA-256, the tensors loaded and whether the input statistics came from it.

    Raises:
        ConfigError: the file cannot be read or does not match; one line naming the
            file and the keys (those of the encoder without its statistics).
    """
    import hashlib

    file = Path(path).resolve()
    encoder = cast(nn.Module, model.encoder)
    first: WeightsError | None = None
    for prefix in (None, "encoder.", "network.encoder."):  # network.: a run's checkpoint
        for target, own_statistics in ((_WithoutStandardize(encoder), False), (encoder, True)):
            try:
                report = load_pretrained(target, file, prefix=prefix)
            except WeightsError as error:
                first = first or error
                continue
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return {
                "path": str(file),
                "sha256": digest.hexdigest(),
                "tensors": len(report.loaded),
                "standardize": own_statistics,
            }
    text = " ".join(str(first).split())
    text = re.sub(r"; pass strict=False to load the \d+ that match$", "", text)
    raise ConfigError(f"init_weights: {text}")


def scale_inputs(spec: Mapping[str, Any], x: Tensor) -> Tensor:
    """Inputs as the run's network takes them: an autoencoder's are scaled.

    With ``feature_scaling`` in the spec (autoencoders of feature files), each feature
    on its own: ``(x - center) / scale`` with the training split's mean and standard
    deviation of that feature (``"standardize"``, for the squared error) or its smallest
    value and range (``"min_max"``, for binary cross-entropy). Without it (images, the
    bundled digits, and runs made before it) one range for every value: the training
    split's ``input_range`` becomes [0, 1]. With ``reconstruction_loss="bce"`` values
    outside [0, 1] are clipped, since binary cross-entropy needs targets there. A
    siamese network's inputs are unchanged.
    """
    if "autoencoder" not in spec:
        return x
    scaling = spec["autoencoder"].get("feature_scaling")
    if scaling is not None:
        center = torch.tensor(scaling["center"], dtype=torch.float64)
        scale = torch.tensor(scaling["scale"], dtype=torch.float64)
        x = ((x.double() - center) / scale).to(x.dtype)
    else:
        low, high = (float(v) for v in spec["autoencoder"]["input_range"])
        x = (x - low) / (high - low if high > low else 1.0)
    if spec["autoencoder"]["reconstruction_loss"] == "bce":
        x = x.clamp(0.0, 1.0)
    return x


_S = TypeVar("_S", LabelledData, PairData, Split, LabelledData | None)


def scale_split(spec: Mapping[str, Any], data: _S) -> _S:
    """A split (labelled or pairs, or ``None``) with its inputs scaled for the network."""
    if data is None or "autoencoder" not in spec:
        return data
    if isinstance(data, PairData):
        return dataclasses.replace(
            data, left=scale_inputs(spec, data.left), right=scale_inputs(spec, data.right)
        )
    return dataclasses.replace(data, inputs=scale_inputs(spec, data.inputs))


def standardize(x: Tensor, *, workers: int = 0) -> Standardize:
    """The input standardisation of a network, from its training inputs ``x``.

    Images (a tensor or a lazy view) are standardized per channel by
    :func:`~contrastkit.data.images.image_statistics`: computed batch by batch, from at
    most 10,000 training images (evenly spaced), so that an eager and a lazy run get the
    same statistics without holding every image; ``workers`` decode a lazy view.
    """
    if isinstance(x, LazyImages) or x.dim() == 4:
        images = image_statistics(x, workers=workers)
        return Standardize(images.mean, images.std)
    stats = Standardize.from_data(x)
    if x.dim() == 2:
        # Per feature, but a feature that hardly varies in training (a border pixel that
        # is almost always 0) is scaled like an average one instead of being blown up.
        stats = Standardize(stats.mean, stats.std.clamp_min(float(stats.std.mean())))
    return stats


# ----------------------------------------------------------------------------- the loss


@dataclass(frozen=True)
class LossKind:
    """How one ``loss`` of a run trains on labelled data.

    Attributes:
        batches: ``"pairs"`` (random balanced pairs, :class:`~contrastkit.data.PairDataset`)
            or ``"balanced"`` (class-balanced batches of ``samples_per_class`` samples of
            each class drawn, :class:`~contrastkit.data.ClassBalancedBatchSampler`), or
            ``"random"`` (random samples, labels unused: NT-Xent's two views come from
            :class:`BatchAugment`).
        samples_per_class: the samples of each class in a balanced batch (0 for pairs and
            random batches).
        objective: the training objective of the loss, from the run's config.
        pair_files: whether the loss also trains on a pair file (pairs given by the user).
    """

    batches: Literal["pairs", "balanced", "random"]
    samples_per_class: int
    objective: Callable[[RunConfig], Any]
    pair_files: bool = False


def _contrastive(config: RunConfig) -> PairObjective:
    return PairObjective(
        losses.ContrastiveLoss(margin=config.margin, distance=config.distance_name)
    )


def _memory(config: RunConfig) -> MemoryBank | None:
    """The run's memory of past embeddings (``memory_size`` rows), or ``None``."""
    return MemoryBank(config.memory_size, config.embedding_dim) if config.memory_size else None


LOSS_KINDS: dict[str, LossKind] = {
    "contrastive": LossKind("pairs", 0, _contrastive, pair_files=True),
    "triplet": LossKind(
        "balanced",
        4,
        lambda c: LabelObjective(
            losses.BatchAllTripletLoss(
                margin=c.margin, distance=c.distance_name, gather=distributed.is_distributed()
            ),
            memory=_memory(c),
        ),
    ),
    "infonce": LossKind(
        "balanced",
        2,
        lambda c: TwoViewObjective(
            losses.InfoNCELoss(temperature=c.temperature, gather=distributed.is_distributed()),
            memory=_memory(c),
        ),
    ),
    "supcon": LossKind(
        "balanced",
        4,
        lambda c: LabelObjective(
            losses.SupConLoss(temperature=c.temperature, gather=distributed.is_distributed()),
            memory=_memory(c),
        ),
    ),
    "ntxent": LossKind(
        "random",
        0,
        lambda c: TwoViewObjective(
            losses.NTXentLoss(temperature=c.temperature, gather=distributed.is_distributed())
        ),
    ),
}
"""Every ``loss`` of :data:`~contrastkit.app.config.LOSSES`: how it batches and trains."""


def resolve_augment(config: RunConfig, kind: str, *, resume: bool) -> str:
    """The augmentation preset of a run on data of ``kind``; a config error if it has none.

    Empty: ``"crop"`` for image data (``"strong"`` with loss ntxent), ``"noise"`` for
    feature vectors with loss ntxent, ``"none"`` for other data and for a resumed run
    made before the option (trained without).
    """
    what = {"vectors": "feature vectors", "images": "image data"}.get(kind, f"{kind} data")
    if config.loss == "ntxent" and kind not in ("images", "vectors"):
        raise ConfigError(
            "loss ntxent trains on two augmented views of each image (or noisy views of each "
            f"row of a feature file): it needs image data or feature vectors, got {what}"
        )
    if config.augment:
        if config.augment == "noise" and kind != "vectors":
            raise ConfigError(f"augment noise applies to feature vectors, got {what}")
        if config.augment in AUGMENTS and config.augment != "none" and kind != "images":
            use = (
                "use augment none; loss ntxent makes noisy views of rows itself"
                if kind == "vectors"
                else "use augment none"
            )
            raise ConfigError(f"augment {config.augment} applies to image data, got {what} ({use})")
        return config.augment
    if kind == "vectors" and config.loss == "ntxent":
        return "noise"
    if resume or kind != "images":
        return "none"
    return "strong" if config.loss == "ntxent" else "crop"


def resolve_projection(config: RunConfig, kind: str, *, resume: bool) -> str:
    """The ``projection`` of a run on data of ``kind``; a config error where it cannot apply.

    Empty: ``"mlp"`` for a new run with loss ntxent on image data (SimCLR's setting),
    ``"none"`` otherwise and for a resumed run made before the option (its checkpoints
    have no head). Text data has its own encoder and takes none (empty).
    """
    if kind == "text":
        if config.projection == "mlp":
            raise ConfigError(
                "projection mlp applies to image data and feature vectors, got text data "
                "(its encoder is trained as it is)"
            )
        return ""
    if config.projection:
        return config.projection
    new_simclr = not resume and config.loss == "ntxent" and kind == "images"
    return "mlp" if new_simclr and config.objective == "contrastive" else "none"


def projected(config: RunConfig, model: nn.Module) -> nn.Module:
    """The network a run trains: ``model`` through a projection head, or ``model`` itself.

    With ``projection = "mlp"`` a :class:`~contrastkit.models.ProjectedNetwork` of
    ``model`` and a :class:`~contrastkit.models.ProjectionHead` from and to
    ``embedding_dim`` (batch-normalized unless ``batch_norm`` is false); its
    ``network`` is ``model`` itself.
    """
    if config.projection != "mlp":
        return model
    head = ProjectionHead(config.embedding_dim, batch_norm=config.batch_norm)
    return ProjectedNetwork(model, head)


class BatchAugment:
    """The trainer's ``transform`` of image batches: a fresh augmented view of each image.

    Every 4-D tensor of a batch (the images: ``(x, labels)``, or the two sides of pairs)
    is augmented with ``augment`` (pixels in ``[0, 1]``, before the network's own
    standardization), each image with its own draws from the step's generator. With
    ``two_views`` (NT-Xent), a batch ``(x, labels)`` becomes two views of each image in
    consecutive rows, labelled by the image (the positives of
    :class:`~contrastkit.training.TwoViewObjective`); the labels are not used.
    """

    def __init__(self, augment: Augment | FeatureNoise, *, two_views: bool = False) -> None:
        self.augment = augment
        self.two_views = two_views
        self.dim = 2 if isinstance(augment, FeatureNoise) else 4  # rows, or images

    def __repr__(self) -> str:
        return f"BatchAugment({self.augment!r}, two_views={self.two_views})"

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        """The augmented batch."""
        if self.two_views:
            x = batch[0]
            first, second = self.augment.two_views(x, generator)
            views = torch.stack((first, second), dim=1).flatten(0, 1)
            ids = torch.arange(x.shape[0], device=x.device).repeat_interleave(2)
            return views, ids
        return type(batch)(
            self.augment(t, generator) if isinstance(t, Tensor) and t.dim() == self.dim else t
            for t in batch
        )


FEATURE_NOISE = 0.3
"""The noise of ``augment="noise"``, in standard deviations of each feature."""
FEATURE_DROP = 0.2
"""The share of features ``augment="noise"`` drops to their training mean."""


def batch_augment(
    config: RunConfig, image_size: int, rows: Tensor | None = None
) -> BatchAugment | None:
    """The training batches' transform of ``config.augment`` (resolved), or ``None``.

    ``augment="noise"`` needs the training ``rows`` (feature vectors): its noise is in
    units of their per-feature standard deviation (:class:`~contrastkit.data.FeatureNoise`
    with :data:`FEATURE_NOISE` and :data:`FEATURE_DROP`).
    """
    if config.augment in ("", "none"):
        return None
    two_views = config.loss == "ntxent" and config.objective != "reconstruction"
    if config.augment == "noise":
        if rows is None:
            raise ValueError("augment noise needs the training rows for its scale")
        noise = FeatureNoise.from_data(rows, noise=FEATURE_NOISE, drop=FEATURE_DROP)
        return BatchAugment(noise, two_views=two_views)
    presets = {
        "simclr": Augment.simclr,
        "strong": Augment.strong,
        "light": Augment.light,
        "crop": Augment.crop_only,
    }
    preset = presets[config.augment](image_size)
    return BatchAugment(preset, two_views=config.loss == "ntxent")


def loss_and_loaders(
    config: RunConfig, train: Split, val: Split
) -> tuple[Any, DataLoader[Any], DataLoader[Any] | None, list[str]]:
    """The objective of ``config.loss``, the training and validation batches, and notes.

    Every training epoch draws ``config.steps_per_epoch`` batches: pairs (for a pair
    file, its training pairs in random order, as many passes as that takes, each pair at
    most once in a batch) or class-balanced batches. Small classes train with what they
    can give: a split without a class of 2 samples gives dissimilar pairs only. The
    validation batches are ``None`` when the validation split cannot give the loss's
    batches (then no ``val_loss`` is logged). The notes say so, and pass on the warnings
    of the samplers (a class too small for its batches), for the log and the report.

    The order of the batches comes from the seed and the epoch alone. ``batch_size`` is
    the global batch: with several processes (a :mod:`torch.distributed` group), each
    loader yields this process's part of every batch, and the parts of the processes,
    in rank order, are the batch one process would draw (see :mod:`contrastkit.data`).
    """
    kind = LOSS_KINDS[config.loss]
    notes: list[str] = []
    batches = config.steps_per_epoch
    world = distributed.world_size()
    if config.batch_size < world:
        raise ConfigError(
            f"batch_size ({config.batch_size}) must be at least the number of processes "
            f"({world}): each process takes a part of every batch"
        )
    if isinstance(train, PairData):
        val = cast(PairData, val)
        if not kind.pair_files:
            raise ConfigError(
                f"a pair file trains with loss 'contrastive' only, got loss {config.loss!r}"
            )
        pairs = TensorDataset(train.left, train.right, train.same)
        size = min(config.batch_size, len(pairs))
        if size < world:
            raise DataError(
                f"{train.source}: the training split has {len(pairs)} pairs, fewer than the "
                f"{world} processes that share each batch"
            )
        if size < config.batch_size:
            notes.append(
                f"batches of {size} pairs, all the training pairs, rather than "
                f"{config.batch_size}: a batch holds each pair at most once"
            )
        draws = RandomBatchSampler(
            pairs, batch_size=size, batches_per_epoch=batches, seed=config.seed
        )
        return (
            kind.objective(config),
            DataLoader(pairs, batch_sampler=draws),
            _in_order(TensorDataset(val.left, val.right, val.same), "validation", notes),
            notes,
        )
    val = cast(LabelledData, val)
    one_class = class_count(train) < 2
    if one_class and not learns_without_labels(config):
        held = "no labels" if unlabelled(train) else "one class"
        raise DataError(
            f"{train.source}: the training split holds {held}, and loss {config.loss} needs "
            f"2 classes to contrast; {ONE_CLASS_HINT}"
        )
    objective = kind.objective(config)
    workers = config.workers if is_lazy(train) else 0
    if is_lazy(train):
        notes.append(lazy_note(train, workers))
    if kind.batches == "random" or one_class:
        rows = samples_of(train)
        size = min(config.batch_size, len(rows))
        draws = RandomBatchSampler(
            rows, batch_size=size, batches_per_epoch=batches, seed=config.seed
        )
        what = "images" if train.kind == "images" else "rows"
        if kind.batches != "random":  # an autoencoder of one class: the rows as they are
            notes.append(
                f"one class (or no labels): batches of {size} random training {what}, "
                "reconstructed; no contrastive pairs"
            )
            return (
                objective,
                DataLoader(rows, batch_sampler=draws),
                _rows_in_order(val, notes),
                notes,
            )
        views = (
            "augmented" if train.kind == "images" else "noisy (Gaussian noise, dropped features)"
        )
        notes.append(
            f"NT-Xent (SimCLR): batches of {size} random training {what}, two {views} views "
            "of each, labels unused; no validation loss (views are drawn in training only)"
        )
        return objective, _loader(rows, draws, workers), None, notes
    if kind.batches == "pairs":
        train_pairs = _pair_draws(
            train, "training", batches * config.batch_size, config.seed, notes
        )
        if train_pairs is None:  # pragma: no cover - a training split has every class
            raise DataError(f"{train.source}: the training split cannot give a pair")
        val_pairs = _pair_draws(val, "validation", max(len(val), 512), config.seed + 1, notes)
        order = RandomBatchSampler(train_pairs, batch_size=config.batch_size, seed=config.seed)
        return (
            objective,
            _loader(train_pairs, order, workers),
            _in_order(val_pairs, "validation", notes, workers) if val_pairs is not None else None,
            notes,
        )
    loaders: list[DataLoader[Any] | None] = []
    for part, split, seed, count in (
        (train, "training", config.seed, batches),
        (val, "validation", config.seed + 1, 8),
    ):
        sampler = balanced_sampler(
            part, split, kind.samples_per_class, config.batch_size, count, seed, notes
        )
        loaders.append(_loader(samples_of(part), sampler, workers) if sampler is not None else None)
    if loaders[0] is None:  # pragma: no cover - balanced_sampler raises for training
        raise DataError(f"{train.source}: the training split cannot give a batch")
    return objective, loaders[0], loaders[1], notes


def class_count(data: LabelledData) -> int:
    """The classes a labelled split holds samples of (0 for unlabelled data)."""
    if unlabelled(data):
        return 0
    return len(set(data.labels.tolist()))


def _rows_in_order(val: LabelledData, notes: list[str]) -> DataLoader[Any] | None:
    """The validation rows in order, for the reconstruction loss of a one-class run."""
    return _in_order(TensorDataset(val.inputs, val.labels), "validation", notes)


def samples_of(data: LabelledData) -> Any:
    """The ``(input, label)`` items of a labelled split: its tensors, or a lazy view's.

    A lazy view's items are decoded when a batch takes them (in the DataLoader's
    workers); they hold the same values as the eager tensors' rows.
    """
    if isinstance(data.inputs, LazyImages):
        return data.inputs.samples(data.labels)
    return TensorDataset(data.inputs, data.labels)


def lazy_note(data: LabelledData, workers: int) -> str:
    """The run's note on images read lazily (for the log and the report)."""
    where = (
        f"{workers} DataLoader worker process{'es' if workers != 1 else ''}"
        if workers
        else "the training process (workers 0)"
    )
    return (
        f"images read lazily: each training batch decoded from the files by {where}, "
        "validation and test images a batch at a time; memory holds the file list, not "
        "the pixels. Inputs standardized per channel with the mean and standard "
        "deviation of the training images (up to 10,000, evenly spaced), summed batch by "
        "batch"
    )


def _loader(data: Any, sampler: Any, workers: int) -> DataLoader[Any]:
    """Batches of ``data`` in the order of ``sampler``, decoded by ``workers`` processes.

    The workers start afresh each epoch (not persistent), so that they see the items
    the epoch drew (:class:`~contrastkit.data.PairDataset` draws its pairs in
    ``set_epoch``); the batches are the same with any number of workers.
    """
    return DataLoader(data, batch_sampler=sampler, num_workers=workers)


def _in_order(data: Any, split: str, notes: list[str], workers: int = 0) -> DataLoader[Any] | None:
    """Batches of up to 512 items of ``data`` in order, each split between processes.

    ``None``, with a note, when the processes outnumber the items.
    """
    world = distributed.world_size()
    if len(data) < world:
        notes.append(
            f"the {split} split gives {len(data)} items, fewer than the {world} processes "
            f"that share each batch: no {split} loss"
        )
        return None
    size = min(512, len(data))
    return _loader(data, RandomBatchSampler(data, batch_size=size, shuffle=False), workers)


def _pair_draws(
    data: LabelledData, split: str, count: int, seed: int, notes: list[str]
) -> PairDataset | None:
    """Balanced pairs of a split, or only the kind it can give; ``None`` if it has none."""
    counts = torch.bincount(data.labels)
    paired, classes = int((counts >= 2).sum()), int((counts >= 1).sum())
    fraction = 0.5
    if paired == 0 and classes < 2:
        notes.append(
            f"the {split} split has {len(data)} sample{'s' if len(data) > 1 else ''} of one "
            f"class, which gives no pair: no {split} loss"
        )
        return None
    if paired == 0:
        fraction = 0.0
        notes.append(
            f"no class has 2 samples in the {split} split, so its pairs are all dissimilar: "
            f"the {split} loss has no similar pair"
        )
    elif classes < 2:
        fraction = 1.0
        notes.append(
            f"the {split} split holds one class, so its pairs are all similar: the {split} "
            "loss has no dissimilar pair"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = PairDataset(
            samples_of(data) if is_lazy(data) else data.inputs,
            data.labels,
            positive_fraction=fraction,
            pairs_per_epoch=count,
            seed=seed,
        )
    notes += [f"{split} split: {w.message}" for w in caught]
    return pairs


def balanced_sampler(
    data: LabelledData | LabelledTexts,
    split: str,
    per_class: int,
    batch_size: int,
    batches: int,
    seed: int,
    notes: list[str],
) -> ClassBalancedBatchSampler | None:
    """Class-balanced batches of a split; ``None`` for a validation split too small.

    ``per_class`` samples of each class drawn (2 when too few classes have that many),
    as many classes as fit in ``batch_size``; what cannot be drawn is added to ``notes``
    (validation) or raised (training); training batches smaller than ``batch_size``
    (fewer classes than would fill it) are said in ``notes`` too (the run's
    ``train_batch`` is what was drawn). Text runs use it too.
    """
    counts = torch.bincount(data.labels)
    k = per_class if int((counts >= per_class).sum()) >= 2 else 2
    eligible = int((counts >= k).sum())
    if eligible < 2:
        if split != "training":
            notes.append(
                f"fewer than 2 classes have {k} samples in the {split} split, which the "
                f"loss's batches need: no {split} loss"
            )
            return None
        raise DataError(
            f"{data.source}: fewer than 2 classes have {k} {split} samples; "
            "the loss needs at least 2 classes with 2 samples each"
        )
    p = max(2, min(eligible, batch_size // k))
    if p * k < batch_size and split == "training":
        notes.append(
            f"the {split} batches hold {p * k} samples ({p} classes × {k}), fewer than "
            f"batch_size {batch_size}: the loss takes {k} samples of each class, and the "
            f"{split} split has {eligible} classes with {k} or more"
        )
    world = distributed.world_size()
    if p < world:  # each process takes whole classes of every batch
        why = (
            f"the {split} batches hold {p} classes ({k} samples each), fewer than the "
            f"{world} processes, each of which takes whole classes"
        )
        if split != "training":
            notes.append(f"{why}: no {split} loss")
            return None
        raise ConfigError(
            f"{why}; raise batch_size to {world * k} or more"
            + ("" if eligible >= world else f" (the data has {eligible} such classes)")
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = ClassBalancedBatchSampler(
            data.labels,
            classes_per_batch=p,
            samples_per_class=k,
            batches_per_epoch=batches,
            seed=seed,
        )
    notes += [str(w.message) for w in caught]
    return sampler


def build_objective(config: RunConfig, contrastive: Any) -> Any:
    """The objective of a run, from the contrastive objective of its ``loss``.

    With ``micro_batch``, the whole objective is cached: the code of ``model(x)`` and,
    for objective combined, the reconstruction of ``model.reconstruct(x)`` alike.
    """
    objective: Any = contrastive
    if config.objective != "contrastive":
        kind = RECONSTRUCTION_LOSSES[config.reconstruction_loss]
        reconstruction = ReconstructionObjective(losses.ReconstructionLoss(kind=kind))
        objective = reconstruction
        if config.objective == "combined":
            objective = WeightedSum(
                {
                    "reconstruction": (reconstruction, config.reconstruction_weight),
                    "contrastive": (contrastive, config.contrastive_weight),
                }
            )
    if config.micro_batch:
        return CachedObjective(objective, micro_batch=config.micro_batch)
    return objective


def loss_terms(config: RunConfig) -> dict[str, float]:
    """The logged loss terms of a run and their weights."""
    if config.objective == "reconstruction":
        return {"reconstruction": 1.0}
    if config.objective == "combined":
        return {
            "reconstruction": config.reconstruction_weight,
            "contrastive": config.contrastive_weight,
        }
    return {"loss": 1.0}


# ----------------------------------------------------------------------------- optimisation


def resolve_device(name: str) -> torch.device:
    """The device a run uses: ``"auto"`` is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but no CUDA device is available")
    return torch.device(name)


class OneCycleSchedule(torch.optim.lr_scheduler.OneCycleLR):
    """:class:`~torch.optim.lr_scheduler.OneCycleLR` that keeps its length when resumed.

    A loaded checkpoint sets the step reached (and the optimizer's state), never the
    length of the cycle: that stays the one this schedule was built with. Resuming a run
    with its own epochs builds the same length, so nothing changes; resuming it with
    more epochs (an extension) continues the cycle rebuilt over the new total, from the
    step reached.
    """

    _LENGTH = ("total_steps", "_schedule_phases")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the step reached and the rest of the state, but not the cycle's length."""
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in self._LENGTH})


def optimizer_steps_per_epoch(config: RunConfig, batches: int) -> int:
    """The optimizer steps of an epoch of ``batches`` batches: ``ceil(batches / accumulate)``.

    The trainer's accumulation groups do not cross epochs, so an epoch's last group may
    be smaller, and it still ends with a step.
    """
    return math.ceil(batches / config.accumulate)


def optimizer_and_schedule(
    config: RunConfig, model: nn.Module, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, OneCycleSchedule]:
    """AdamW at ``config.lr`` and a one-cycle schedule over every optimizer step.

    ``steps_per_epoch`` is the number of batches of an epoch; with gradient accumulation
    (``config.accumulate`` = K) the schedule has ``epochs × ceil(steps_per_epoch / K)``
    steps, one per optimizer step.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    total = config.epochs * optimizer_steps_per_epoch(config, steps_per_epoch)
    schedule = OneCycleSchedule(optimizer, max_lr=config.lr, total_steps=total)
    return optimizer, schedule
