"""The options of a run: :class:`RunConfig`, checked, and its TOML file.

Imports neither torch nor numpy, so that the command line can list the choices and check
a configuration before anything heavy is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the core imports torch; this module must not
    from contrastkit.distances import DistanceName

__all__ = [
    "ANOMALY_K",
    "ANOMALY_LOF_NEIGHBORS",
    "ANOMALY_SCORES",
    "AUGMENTS",
    "DEFAULT_ENCODER",
    "DEFAULT_HIDDEN",
    "DISTANCE_NAMES",
    "ENCODERS",
    "EXECUTION_OPTIONS",
    "FEATURE_AUGMENTS",
    "HIGHER_IS_BETTER",
    "IMAGE_LOADINGS",
    "LAZY_ABOVE_BYTES",
    "LOSSES",
    "MEMORY_LOSSES",
    "MODES",
    "NTXENT_TEMPERATURE",
    "OBJECTIVES",
    "PAIR_SPLITS",
    "POOLINGS",
    "PRECISIONS",
    "PROJECTIONS",
    "RECONSTRUCTION_LOSSES",
    "RESNET_BLOCKS",
    "RESNET_HIDDEN",
    "SPLIT_BY",
    "TEXT_KINDS",
    "TEXT_LOSSES",
    "ConfigError",
    "LossName",
    "ModeName",
    "ObjectiveName",
    "PrecisionName",
    "ReconstructionLossName",
    "RunConfig",
    "SplitByName",
    "lee_source",
    "read_config_file",
    "text_kind",
]

LossName = Literal["contrastive", "triplet", "infonce", "supcon", "ntxent", "cosine"]
ObjectiveName = Literal["contrastive", "reconstruction", "combined"]
ReconstructionLossName = Literal["mse", "bce"]
PrecisionName = Literal["32", "bf16", "fp16"]
ModeName = Literal["min", "max"]
SplitByName = Literal["samples", "classes"]

# The names of contrastkit.distances.DISTANCES, kept here so that this module does not
# import torch (a test checks that the two agree).
DISTANCE_NAMES = ("euclidean", "squared_euclidean", "cosine", "manhattan")
LOSSES = ("contrastive", "triplet", "infonce", "supcon", "ntxent")
AUGMENTS = ("none", "crop", "light", "strong", "simclr")  # contrastkit.data.Augment's presets
PROJECTIONS = ("none", "mlp")  # contrastkit.models.ProjectionHead, or none
FEATURE_AUGMENTS = ("noise",)  # contrastkit.data.FeatureNoise: resolved for vectors + ntxent
NTXENT_TEMPERATURE = 0.5  # SimCLR's on CIFAR-10 (NTXentLoss's default)
MEMORY_LOSSES = ("supcon", "triplet", "infonce")  # the losses that take a memory
OBJECTIVES = ("contrastive", "reconstruction", "combined")
# the option's name -> the kind of contrastkit.losses.ReconstructionLoss
RECONSTRUCTION_LOSSES: dict[str, Literal["mse", "bce_with_logits"]] = {
    "mse": "mse",
    "bce": "bce_with_logits",
}
ANOMALY_SCORES = ("reconstruction", "knn", "centroid")
ANOMALY_K = 5
ANOMALY_LOF_NEIGHBORS = 20  # the raw-input baseline's LocalOutlierFactor (scikit-learn's default)
# The precisions of contrastkit.training.Trainer (a test checks that the two agree).
PRECISIONS = ("32", "bf16", "fp16")
SPLIT_BY = ("samples", "classes")
"""How a run is split: each class's samples spread over the splits, or whole classes."""
IMAGE_LOADINGS = ("auto", "eager", "lazy")
"""How an image folder is read: by its size, all at start, or image by image per batch."""
LAZY_ABOVE_BYTES = 2**30
"""image_loading auto reads a folder lazily when its decoded images would take more."""
EXECUTION_OPTIONS = ("image_loading", "workers")
"""Options that change how a run is computed, never its result: a resumed run may change them."""
PAIR_SPLITS = ("images", "pairs")
"""How a pair file is split: by its images (no held-out image in training) or by its pairs."""
MODES = ("min", "max")
# The values of a run's history where higher is better (the default mode of a monitor);
# every other value (a loss or loss term) is better lower.
HIGHER_IS_BETTER = (
    "val_roc_auc",
    "val_precision_at_1",
    "val_spearman",
    "val_pearson",
    "val_mrr_at_10",
)
_COSINE_LOSSES = ("infonce", "supcon", "ntxent")
DEFAULT_HIDDEN = {"vectors": (512, 256, 128), "images": (32, 64, 128)}
# the ConvNet's three blocks see 22 pixels around each output (two: 10), a whole
# 28-pixel digit; on MNIST's validation split three blocks reached precision@1 0.989
# where two reached 0.945 (30 epochs, crop); a run records its own channels
ENCODERS = ("conv", "resnet")
"""The networks of image data: contrastkit.models.ConvEncoder or ResNetEncoder."""
DEFAULT_ENCODER = "conv"
"""The image network of a new run that names none (runs made before the option: conv)."""
RESNET_HIDDEN = (32, 64, 128)  # the stage widths of encoder resnet (ResNetEncoder's)
RESNET_BLOCKS = 2  # residual blocks per stage of encoder resnet when none are given
# Text runs (see contrastkit.app.text): the kind of a text table → the losses it trains
# with, the first being its default (the one the field uses for that kind of data).
TEXT_LOSSES: dict[str, tuple[str, ...]] = {
    "scored_pairs": ("cosine",),
    "labelled_pairs": ("contrastive",),
    "text_tuples": ("infonce", "triplet"),
    "labelled_texts": ("supcon", "triplet", "infonce"),
}
TEXT_KINDS = tuple(TEXT_LOSSES)
POOLINGS = ("mean", "cls", "max")  # those of contrastkit.models.text (a test checks it)
TEXT_TEMPERATURE = 0.05  # sentence-transformers' scale 20
DEFAULT_TEMPERATURE = 0.1
# The column names of contrastkit.data.text (a test checks that the two agree): a .csv
# whose header holds only these, one of them a text, is a text table.
_TEXT_COLUMNS = {
    "sentence1": "sentence1",
    "text1": "sentence1",
    "sentence2": "sentence2",
    "text2": "sentence2",
    "score": "score",
    "label": "label",
    "anchor": "anchor",
    "query": "anchor",
    "positive": "positive",
    "text": "text",
    "sentence": "text",
}
_TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl")
# torch seeds must fit in 64 bits, and the samplers seed each epoch with
# seed * 1_000_003 + epoch: 32 bits leave room for both
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the option."""


@dataclass
class RunConfig:
    """Everything a run depends on; written to ``config.toml`` in the run folder.

    Attributes:
        data: ``"digits"`` (bundled), an image folder (one subfolder per class), a
            ``.npz``/``.csv`` of features with a label column, a ``.csv`` of pairs, a
            text table, or ``"lee"`` (the Lee corpus of an installed gensim; ``"lee:FOLDER"``
            reads its files from FOLDER): sentences of 300 news documents labelled by
            document to train on, and the 1,225 rated pairs of 50 documents to test on
            (:mod:`contrastkit.data.lee`).
        text_kind: what a text table ``data`` holds (:data:`TEXT_KINDS`), found from its
            header (:func:`text_kind`) and recorded so that a run is read back without
            its data; empty for data that is not text.
        test_data: a text table of the kind of ``data`` to test on instead of a test
            split of ``data`` (text benchmarks ship their own test split); empty for none.
            The rows a test split would hold then train.
        text_model: a pretrained text model folder (a Hugging Face encoder and its
            tokenizer) to fine-tune on text data; empty: an encoder trained from nothing
            (a vocabulary of the training texts' words and a small BERT).
        pooling: how a text encoder pools its token states: ``"mean"``, ``"cls"`` or
            ``"max"``; empty means the model folder's, else ``"mean"``.
        max_length: the tokens kept per text; 0 means 128 from nothing, else the model
            folder's (at most 256).
        vocab_size, text_width, text_layers, text_heads: the size of an encoder trained
            from nothing: the most words in its vocabulary, the width of its token states
            (the embedding size), its transformer layers and attention heads.
        score_range: ``[low, high]``, the range of the gold scores of scored text pairs
            (mapped linearly onto ``[-1, 1]`` for the cosine-similarity loss); empty:
            inferred, ``[0, 1]`` when every score lies there, else ``[0, 5]``.
        symmetric: InfoNCE on anchor-positive texts in both directions (each positive
            also picks its anchor among the batch's anchors).
        label_column: the label column (or array) of a feature file.
        exclude_columns: columns of a ``.csv`` feature file that are not features (an
            identifier, a date, …), left out wherever the run reads feature files (its
            data, ``evaluate --data``, ``embed``, ``score``).
        image_size: images are resized to this many pixels on a side.
        image_loading: how an image folder is read: ``"eager"`` decodes every image
            into one tensor at start; ``"lazy"`` lists the files and decodes each
            image when a batch (or an evaluation batch) needs it, so that memory does not
            grow with the number of images; ``"auto"`` (the default) is lazy when the
            decoded images would take more than :data:`LAZY_ABOVE_BYTES` (1 GiB: N × C ×
            image_size² × 4 bytes), else eager. Both give the same run, bit for bit.
            Objective contrastive only (an autoencoder's run is eager).
        workers: the DataLoader worker processes that decode the batches of an image
            folder read lazily (0: the training process decodes them). Neither this nor
            ``image_loading`` changes a run's result: a resumed run may change them.
        loss: empty for the default (``"contrastive"``; for text, the default of its
            kind, see :data:`TEXT_LOSSES`), ``"contrastive"`` (pairs), ``"triplet"``
            (batch-all triplets mined from class-balanced batches), ``"infonce"`` (two
            samples per class, N-pair setting), ``"supcon"`` (class-balanced batches),
            ``"cosine"`` (the cosine-similarity loss of scored text pairs), ``"ntxent"``
            (SimCLR: NT-Xent on two augmented views of each image, or two noisy views
            of each row of a feature file, no labels used).
        augment: ``"none"``, ``"crop"``, ``"light"``, ``"strong"`` or ``"simclr"``: the
            training batches of image data are augmented on the fly
            (:class:`~contrastkit.data.Augment`'s presets; never validation or
            evaluation); empty: ``"crop"`` for image data (no flips: safe for digits,
            text and signatures; ``"light"`` adds flips and stronger crops, for photos),
            ``"strong"`` with loss ntxent (SimCLR's views of small images without
            flips; ``"simclr"`` has them), ``"none"`` otherwise. ``"noise"``
            (a config file's value, not a flag): feature vectors get Gaussian noise
            and dropped features (:class:`~contrastkit.data.FeatureNoise`), what loss
            ntxent resolves to there. A run records the preset it used.
        projection: ``"mlp"``: the network is trained through a projection head
            (:class:`~contrastkit.models.ProjectionHead`, SimCLR's two-layer MLP), which
            is dropped after training: the embedding evaluated and saved is the one
            before it; ``"none"``: the loss compares the embeddings themselves. Empty:
            ``"mlp"`` for a new run with loss ntxent on image data, ``"none"`` otherwise
            (and for a resumed run made before the option). Objective contrastive only.
        objective: ``"contrastive"`` (a siamese network trained with ``loss``),
            ``"reconstruction"`` (an autoencoder) or ``"combined"`` (an autoencoder
            trained on both, weighted).
        reconstruction_loss: ``"mse"`` or ``"bce"`` (on logits) for the autoencoder.
        noise_std: the standard deviation of the Gaussian noise added to the scaled
            inputs of the autoencoder in training (denoising); 0 for none.
        reconstruction_weight, contrastive_weight: the weights of the two terms of
            ``"combined"`` (the latter is λ in reconstruction + λ·contrastive).
        anomaly_class: the name of a class held out of training and validation and
            scored as the anomaly after training; empty for none.
        margin: the margin of the contrastive and triplet losses.
        distance: the distance of the contrastive and triplet losses and of evaluation
            (InfoNCE and SupCon always compare by cosine similarity); empty means
            ``"euclidean"`` for contrastive/triplet and ``"cosine"`` for InfoNCE/SupCon.
        temperature: the temperature of InfoNCE, SupCon and NT-Xent; 0 means 0.1 (0.5 for
            NT-Xent, SimCLR's), and 0.05 for text (sentence-transformers' scale 20).
        embedding_dim: the size of each embedding (2 draws the network's own map).
        encoder: the network of image data: ``"conv"`` (a small ConvNet,
            :class:`~contrastkit.models.ConvEncoder`) or ``"resnet"`` (a small residual
            network, :class:`~contrastkit.models.ResNetEncoder`, with the small stem);
            empty: :data:`DEFAULT_ENCODER` for a new run on images, ``"conv"`` for a run
            made before the option, and empty for other data. A run records it.
        hidden: hidden layer widths (MLP), channels per block (ConvNet) or per stage
            (ResNet); empty means ``[512, 256, 128]`` for feature vectors and
            ``[32, 64, 128]`` for the ConvNet (a run made before recorded its
            ``[32, 64]``) and the ResNet.
        resnet_blocks: residual blocks per stage of the ResNet (one entry per width of
            ``hidden``); empty: 2 per stage.
        init_weights: a local weights file (``.safetensors``, or a ``.pt``/``.pth``
            state dict) to start the encoder from instead of a random initialisation
            (:func:`~contrastkit.models.load_pretrained`; the keys of an encoder, or of
            a siamese network or a run's ``model.safetensors`` under ``encoder.``);
            empty for none. A resumed run takes its weights from its checkpoint.
        batch_norm: batch normalization after each hidden layer of the MLP (feature
            vectors; the image ConvNet always has it, and the ResNet without it has
            GroupNorm instead). A batch-coupled layer: trained on
            several CPU processes, it normalizes each process's part of the batch alone
            (see the README); without it, those processes train the model one process
            would.
        epochs, batch_size, lr, weight_decay: the optimisation; ``batch_size`` is the
            global batch, which several processes share.
        steps_per_epoch: the batches drawn each epoch (for a pair file, from its training
            pairs in random order, each about equally often).
        accumulate: the batches whose gradients are summed per optimizer step (gradient
            accumulation; groups do not cross epochs, so an epoch makes
            ``ceil(steps_per_epoch / accumulate)`` optimizer steps, and the one-cycle
            schedule is built over ``epochs`` times that).
        micro_batch: gradient caching: the encoder embeds the batch ``micro_batch``
            rows at a time (for objective combined, the autoencoder reconstructs it
            that many rows at a time too) and the contrastive loss still sees the whole
            batch (:class:`~contrastkit.training.CachedObjective` around the whole
            objective, on any number of processes); 0 (the default) embeds the batch at
            once. Objective contrastive or combined (a reconstruction alone is per row:
            ``accumulate`` bounds its memory exactly). Needs a model without batch
            normalization in training.
        memory_size: a memory of the last ``memory_size`` training embeddings
            (:class:`~contrastkit.training.MemoryBank`), compared with every anchor as
            well as its batch: more negatives without a bigger batch (SupCon and triplet:
            labelled candidates, as XBM; InfoNCE: remembered keys as extra negatives, as
            MoCo). Used from the first step, saved in every checkpoint, not used for
            the validation loss; 0 (the default) for none.
        val_fraction, test_fraction: the held-out shares of each class (of the pairs,
            for a pair file): validation, then test; training gets the rest. With
            ``split_by = "classes"``, the shares of the classes instead.
        split_by: ``"samples"`` (the default: each class's samples are spread over the
            three splits, a closed set) or ``"classes"`` (whole classes held out for
            validation and test, :func:`~contrastkit.data.readers.split_classes`: the
            threshold is chosen on identities never trained on and applied to still
            others, an open set). Labelled data only, without ``anomaly_class``.
        pair_split: how a pair file (``left,right,label``) is split: ``"images"`` (its
            images are split and a pair is kept where both its images fall in one
            split, so no validation or test image is in a training pair;
            :func:`~contrastkit.data.readers.split_pairs_by_image`) or ``"pairs"`` (its
            pairs are split at random, as runs made before the option were: an image
            can then be in a training pair and a test pair). Empty: ``"images"`` for a
            new run; a run made before the option (whose ``config.toml`` has none) is
            resumed and evaluated with ``"pairs"``, its own split. A run records it.
        seed: the seed of the split, the draws and the initialisation.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; a run writes the device
            it actually used to its ``config.toml``, never ``"auto"``.
        precision: ``"32"`` (float32), ``"bf16"`` (autocast to bfloat16, CPU or CUDA) or
            ``"fp16"`` (autocast to float16 with loss scaling, CUDA only) for the forward
            passes of training and validation; the weights stay float32.
        monitor: a value of the per-epoch history (``val_loss``, ``val_roc_auc``,
            ``val_precision_at_1``, a loss term such as ``val_reconstruction``, …) that
            picks the best epoch: its weights are kept in ``checkpoints/best`` and are
            the run's final weights, evaluated on the test split; empty for none (the
            last epoch's weights).
        mode: whether the best ``monitor`` value is the lowest (``"min"``) or the highest
            (``"max"``); empty means ``"max"`` for the metrics of
            :data:`HIGHER_IS_BETTER` and ``"min"`` for the losses.
        patience: stop once this many epochs in a row have not improved ``monitor``; 0
            never stops early.
        tensorboard: also write the history to ``tensorboard/`` in the run folder (needs
            the ``tensorboard`` package).
    """

    data: str = "digits"
    text_kind: str = ""
    test_data: str = ""
    text_model: str = ""
    pooling: str = ""
    max_length: int = 0
    vocab_size: int = 8000
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 2
    score_range: list[float] = field(default_factory=list, metadata={"items": float})
    symmetric: bool = False
    label_column: str = "label"
    exclude_columns: list[str] = field(default_factory=list, metadata={"items": str})
    image_size: int = 32
    image_loading: str = "auto"
    workers: int = 0
    loss: LossName | Literal[""] = ""
    augment: str = ""
    projection: str = ""
    objective: ObjectiveName = "contrastive"
    reconstruction_loss: ReconstructionLossName = "mse"
    noise_std: float = 0.0
    reconstruction_weight: float = 1.0
    contrastive_weight: float = 1.0
    anomaly_class: str = ""
    margin: float = 1.0
    distance: DistanceName | Literal[""] = ""
    temperature: float = 0.0
    embedding_dim: int = 32
    encoder: str = ""
    hidden: list[int] = field(default_factory=list, metadata={"items": int})
    resnet_blocks: list[int] = field(default_factory=list, metadata={"items": int})
    init_weights: str = ""
    batch_norm: bool = True
    epochs: int = 30
    batch_size: int = 128
    steps_per_epoch: int = 64
    accumulate: int = 1
    micro_batch: int = 0
    memory_size: int = 0
    lr: float = 3e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_by: SplitByName = "samples"
    pair_split: str = ""
    seed: int = 0
    device: str = "cpu"
    precision: PrecisionName = "32"
    monitor: str = ""
    mode: ModeName | Literal[""] = ""
    patience: int = 0
    tensorboard: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str = "config") -> RunConfig:
        """A config from a dict (a TOML file's table), checked; unknown keys are errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}")
        try:
            return cls(**dict(values)).checked()
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None

    def checked(self) -> RunConfig:
        """Check every value, resolve defaults that depend on others, return ``self``."""
        _typed(self)
        kind = _check_text(self)
        if not self.loss:
            self.loss = "contrastive"
        if self.loss not in LOSSES and not (kind and self.loss == "cosine"):
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        _check_objective(self)
        if self.augment not in ("", *AUGMENTS, *FEATURE_AUGMENTS):
            choices = ", ".join((*AUGMENTS, *FEATURE_AUGMENTS))
            raise ConfigError(f"augment must be one of {choices}, got {self.augment!r}")
        if self.projection not in ("", *PROJECTIONS):
            choices = ", ".join(PROJECTIONS)
            raise ConfigError(f"projection must be one of {choices}, got {self.projection!r}")
        if self.projection == "mlp" and self.objective != "contrastive":
            raise ConfigError(
                f"projection mlp applies to objective contrastive (a siamese network), not "
                f"{self.objective!r}: an autoencoder's code is what its decoder reads"
            )
        if self.loss == "ntxent" and self.augment == "none":
            raise ConfigError(
                "loss ntxent needs augment crop, light, strong or simclr (images) or noise "
                "(feature vectors): its two views of a sample must differ, got augment 'none'"
            )
        if not self.temperature:
            default = NTXENT_TEMPERATURE if self.loss == "ntxent" else DEFAULT_TEMPERATURE
            self.temperature = TEXT_TEMPERATURE if kind else default
        if not self.distance:
            cosine = kind or self.loss in _COSINE_LOSSES
            self.distance = "cosine" if cosine else "euclidean"
        if self.distance not in DISTANCE_NAMES:
            raise ConfigError(
                f"distance must be one of {', '.join(DISTANCE_NAMES)}, got {self.distance!r}"
            )
        for name in ("margin", "temperature", "lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in (
            "image_size",
            "embedding_dim",
            "epochs",
            "batch_size",
            "steps_per_epoch",
            "accumulate",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 4:
            raise ConfigError(f"batch_size must be >= 4, got {self.batch_size}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden must be positive widths, got {self.hidden}")
        _check_encoder(self)
        fractions = (self.val_fraction, self.test_fraction)
        if not (min(fractions) > 0 and sum(fractions) < 1):
            raise ConfigError(
                f"val_fraction and test_fraction must be positive and sum below 1, got {fractions}"
            )
        _check_split_by(self)
        if self.image_loading not in IMAGE_LOADINGS:
            raise ConfigError(
                f"image_loading must be one of {', '.join(IMAGE_LOADINGS)}, "
                f"got {self.image_loading!r}"
            )
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.image_loading == "lazy" and self.objective != "contrastive":
            raise ConfigError(
                f"image_loading lazy trains objective contrastive; an autoencoder "
                f"(objective {self.objective}) reads its images eagerly: use image_loading "
                "eager or auto"
            )
        if self.pair_split not in ("", *PAIR_SPLITS):
            raise ConfigError(
                f"pair_split must be one of {', '.join(PAIR_SPLITS)}, got {self.pair_split!r}"
            )
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        _check_training(self, text=kind is not None)
        return self

    @property
    def text(self) -> str | None:
        """The kind of text ``data`` holds (:func:`text_kind`, or as recorded), or ``None``."""
        if self.text_kind:
            return self.text_kind
        if lee_source(self.data) is not None:
            return "labelled_texts"
        return text_kind(self.data) if self.data != "digits" else None

    @property
    def distance_name(self) -> DistanceName:
        """The distance of the run, once :meth:`checked` has resolved its default."""
        if self.distance == "":
            raise ConfigError("distance is not resolved yet; call checked() first")
        return self.distance

    def to_toml(self) -> str:
        """The config as TOML text (flat keys), readable by ``--config``."""
        lines = ["# contrastkit run configuration"]
        for f in dataclasses.fields(self):
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"


def _check_encoder(config: RunConfig) -> None:
    """``encoder``, ``resnet_blocks`` and ``init_weights``, as far as the data is not needed."""
    if config.encoder not in ("", *ENCODERS):
        raise ConfigError(f"encoder must be one of {', '.join(ENCODERS)}, got {config.encoder!r}")
    if config.resnet_blocks:
        if config.encoder != "resnet":
            raise ConfigError(
                f"resnet_blocks applies to encoder resnet, got encoder {config.encoder or 'unset'}"
                " (set encoder = resnet, --encoder resnet)"
            )
        if any(n < 1 for n in config.resnet_blocks):
            raise ConfigError(
                f"resnet_blocks must be positive numbers of blocks, got {config.resnet_blocks}"
            )
        if config.hidden and len(config.hidden) != len(config.resnet_blocks):
            raise ConfigError(
                f"resnet_blocks must have one entry per stage width of hidden "
                f"({len(config.hidden)}: {config.hidden}), got {len(config.resnet_blocks)}: "
                f"{config.resnet_blocks}"
            )
        if not config.hidden and len(config.resnet_blocks) != len(RESNET_HIDDEN):
            raise ConfigError(
                f"resnet_blocks must have one entry per stage of the default widths "
                f"{list(RESNET_HIDDEN)} (or give hidden), got {config.resnet_blocks}"
            )


def _check_split_by(config: RunConfig) -> None:
    """``split_by`` is one of :data:`SPLIT_BY`, and ``"classes"`` goes without an anomaly."""
    if config.split_by not in SPLIT_BY:
        raise ConfigError(f"split_by must be one of {', '.join(SPLIT_BY)}, got {config.split_by!r}")
    if config.split_by == "classes" and config.anomaly_class:
        raise ConfigError(
            "split_by classes holds whole classes out of training, so the normal test "
            "samples would be of classes never trained on, as the anomaly is; drop "
            "anomaly_class or split_by"
        )


_TEXT_ONLY = (
    "test_data",
    "text_model",
    "pooling",
    "max_length",
    "vocab_size",
    "text_width",
    "text_layers",
    "text_heads",
    "score_range",
    "symmetric",
)
_FROM_NOTHING = ("vocab_size", "text_width", "text_layers", "text_heads")
_KIND_WORDS = {
    "scored_pairs": "scored pairs (sentence1,sentence2,score)",
    "labelled_pairs": "labelled pairs (sentence1,sentence2,label)",
    "text_tuples": "anchor-positive rows (anchor,positive[,negative...])",
    "labelled_texts": "labelled texts (text,label)",
}


def _changed(config: RunConfig, name: str) -> bool:
    f = RunConfig.__dataclass_fields__[name]
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return bool(getattr(config, name) != default)


def _check_text(config: RunConfig) -> str | None:
    """The text options: checked, the text defaults resolved; the kind of text, or None.

    The kind is one of :data:`TEXT_KINDS`, or ``"unknown"`` for a text table whose
    header tells no kind (the reader then names what is wrong, before anything runs).
    """
    if config.text_kind and config.text_kind not in TEXT_KINDS:
        raise ConfigError(
            f"text_kind must be one of {', '.join(TEXT_KINDS)} (or empty), got {config.text_kind!r}"
        )
    kind = config.text_kind or config.text
    if kind is None:
        given = [name for name in _TEXT_ONLY if _changed(config, name)]
        if given:
            raise ConfigError(
                f"{given[0]} applies to text data (a .csv, .tsv or .jsonl of sentence pairs, "
                f"anchor-positive rows or labelled texts), and data {config.data!r} is not "
                "text; drop it or give text data"
            )
        if config.loss == "cosine":
            raise ConfigError(
                "loss 'cosine' (the cosine-similarity loss) trains on scored text pairs "
                f"(sentence1,sentence2,score), and data {config.data!r} is not text"
            )
        return None
    _check_text_options(config, kind)
    if kind in TEXT_LOSSES:
        config.text_kind = kind
        allowed = TEXT_LOSSES[kind]
        if not config.loss:
            config.loss = allowed[0]  # type: ignore[assignment]
        elif config.loss not in allowed:
            raise ConfigError(
                f"loss {config.loss!r} does not train on {_KIND_WORDS[kind]}; these train "
                f"with {', '.join(allowed)} (default {allowed[0]})"
            )
        if kind == "text_tuples" and config.memory_size:
            raise ConfigError(
                "memory_size keeps labelled embeddings or shared keys, and anchor-positive "
                "rows train against each row's own hard negatives; drop memory_size"
            )
        if kind != "scored_pairs" and config.score_range:
            raise ConfigError(
                f"score_range applies to scored pairs (sentence1,sentence2,score), not to "
                f"{_KIND_WORDS[kind]}"
            )
    if config.symmetric and config.loss not in ("infonce", ""):
        raise ConfigError(f"symmetric applies to loss infonce, got loss {config.loss!r}")
    if config.symmetric and config.memory_size:
        raise ConfigError(
            "symmetric InfoNCE has no direction for remembered keys; drop memory_size or symmetric"
        )
    lee = lee_source(config.data)
    if lee is not None and config.test_data:
        raise ConfigError(
            "test_data: data lee brings its own test, the rated pairs of its 50 documents; "
            "drop test_data"
        )
    if lee and not Path(lee).is_dir():
        raise ConfigError(f"data {config.data}: {lee} is not a folder (give lee or lee:FOLDER)")
    if config.test_data:
        other = text_kind(config.test_data)
        if not Path(config.test_data).is_file():
            raise ConfigError(f"test_data {config.test_data} does not exist (give a file)")
        if other != kind and "unknown" not in (kind, other):
            shown = _KIND_WORDS.get(other or "", "no text table")
            raise ConfigError(
                f"test_data {config.test_data} holds {shown}, but data holds "
                f"{_KIND_WORDS.get(kind, kind)}; test on data of the same kind"
            )
    return kind


def _check_text_options(config: RunConfig, kind: str) -> None:
    """The options a text run takes, and those it does not."""
    if config.objective != "contrastive":
        raise ConfigError(
            f"objective {config.objective!r} needs feature vectors or images; text data "
            "trains objective contrastive (a text encoder has no decoder)"
        )
    for name, why in (
        ("anomaly_class", "text runs hold out no class"),
        ("split_by", "a text run splits its rows"),
        ("pair_split", "it applies to a pair file of images"),
        ("exclude_columns", "a text table's columns are named by what they hold"),
        ("label_column", "a text table's label column is named label"),
        (
            "hidden",
            "an encoder trained from nothing is sized by text_width, text_layers and text_heads",
        ),
        ("encoder", "it names the network of image data"),
        ("resnet_blocks", "it sizes the network of image data"),
        ("init_weights", "a text encoder starts from the weights of text_model"),
        ("projection", "a text encoder is trained as it is, without a projection head"),
    ):
        if _changed(config, name):
            raise ConfigError(f"{name} does not apply to text data ({why}); drop it")
    if config.text_model:
        given = [name for name in _FROM_NOTHING if _changed(config, name)]
        if given:
            raise ConfigError(
                f"{given[0]} sizes an encoder trained from nothing; text_model "
                f"{config.text_model} has its own size (drop one of them)"
            )
    if config.pooling not in ("", *POOLINGS):
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {config.pooling!r}")
    if config.max_length != 0 and config.max_length < 2:
        raise ConfigError(
            f"max_length must be >= 2 tokens (0: the default), got {config.max_length}"
        )
    if config.vocab_size < 16:
        raise ConfigError(f"vocab_size must be >= 16, got {config.vocab_size}")
    for name in ("text_width", "text_heads"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.text_layers < 0:
        raise ConfigError(
            f"text_layers must be >= 0 (0: a mean of word embeddings), got {config.text_layers}"
        )
    if config.text_width % config.text_heads:
        raise ConfigError(
            f"text_width must be divisible by text_heads, got {config.text_width} and "
            f"{config.text_heads}"
        )
    if config.score_range:
        low_high = config.score_range
        if (
            len(low_high) != 2
            or not all(map(math.isfinite, low_high))
            or low_high[0] >= low_high[1]
        ):
            raise ConfigError(
                f"score_range must be two finite numbers LOW,HIGH with LOW < HIGH, got {low_high}"
            )


def lee_source(data: str | Path) -> str | None:
    """Where ``data`` reads the Lee corpus from: ``""`` (gensim), a folder, or ``None``.

    ``"lee"`` is the corpus of an installed gensim, ``"lee:FOLDER"`` its files in
    FOLDER; any other data is not the Lee corpus (``None``).

    Example:
        >>> lee_source("lee"), lee_source("lee:/data/lee"), lee_source("lee.csv")
        ('', '/data/lee', None)
    """
    text = str(data)
    if text == "lee":
        return ""
    if text.startswith("lee:") and len(text) > 4:
        return text[4:]
    return None


def text_kind(data: str | Path) -> str | None:
    """The kind of text table a data file is, from its suffix and header; ``None`` if none.

    A ``.tsv`` or ``.jsonl`` file is always a text table (no other reader takes them);
    a ``.csv`` file is one when its header holds only the column names of
    :mod:`contrastkit.data.text` (``sentence1``, ``sentence2``, ``score``, ``label``,
    ``anchor``, ``positive``, ``negative``…, ``text`` and their aliases), a text among
    them, so that feature files and pair files (``left,right,label``) read as before.
    The kind is ``"scored_pairs"``, ``"labelled_pairs"``, ``"text_tuples"`` or
    ``"labelled_texts"``, or ``"unknown"`` for a text table whose header tells none
    (the reader names what is wrong). Reads the header only; no torch.
    """
    path = Path(data)
    suffix = path.suffix.lower()
    if suffix not in _TEXT_SUFFIXES or not path.is_file():
        return None
    header = _header(path, suffix)
    if suffix == ".csv" and (header is None or not _text_header(header)):
        return None
    return (_kind_of_header(header) if header else None) or "unknown"


def _header(path: Path, suffix: str) -> list[str] | None:
    import csv

    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            if suffix == ".csv":
                for row in csv.reader(handle):
                    if any(cell.strip() for cell in row):
                        return [cell.strip() for cell in row]
                return None
            for line in handle:
                if not line.strip():
                    continue
                if suffix == ".tsv":
                    return [cell.strip() for cell in line.rstrip("\r\n").split("\t")]
                row = json.loads(line)
                return [str(k).strip() for k in row] if isinstance(row, dict) else None
    except (OSError, csv.Error, ValueError):
        return None
    return None


def _role(name: str) -> str | None:
    if name in _TEXT_COLUMNS:
        return _TEXT_COLUMNS[name]
    if name == "negative" or re.fullmatch(r"negative_[1-9][0-9]*", name):
        return "negative"
    return None


def _text_header(header: list[str]) -> bool:
    roles = [_role(name) for name in header]
    texts = {"sentence1", "sentence2", "anchor", "positive", "text"}
    return None not in roles and bool(texts & set(roles))  # type: ignore[arg-type]


def _kind_of_header(header: list[str]) -> str | None:
    roles = {_role(name) for name in header}
    if roles == {"sentence1", "sentence2", "score"}:
        return "scored_pairs"
    if roles == {"sentence1", "sentence2", "label"}:
        return "labelled_pairs"
    if {"anchor", "positive"} <= roles and roles <= {"anchor", "positive", "negative"}:
        return "text_tuples"
    if roles == {"text", "label"}:
        return "labelled_texts"
    return None


def _check_objective(config: RunConfig) -> None:
    if config.objective not in OBJECTIVES:
        raise ConfigError(
            f"objective must be one of {', '.join(OBJECTIVES)}, got {config.objective!r}"
        )
    if config.reconstruction_loss not in RECONSTRUCTION_LOSSES:
        raise ConfigError(
            f"reconstruction_loss must be one of {', '.join(RECONSTRUCTION_LOSSES)}, "
            f"got {config.reconstruction_loss!r}"
        )
    if not (math.isfinite(config.noise_std) and config.noise_std >= 0):
        raise ConfigError(f"noise_std must be >= 0, got {config.noise_std}")
    for name in ("reconstruction_weight", "contrastive_weight"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value}")
    defaults = RunConfig.__dataclass_fields__
    autoencoder_only = ("reconstruction_loss", "noise_std")
    combined_only = ("reconstruction_weight", "contrastive_weight")
    for name in (*autoencoder_only, *combined_only):
        if getattr(config, name) == defaults[name].default:
            continue
        if config.objective == "contrastive" or (
            name in combined_only and config.objective != "combined"
        ):
            needs = "combined" if name in combined_only else "reconstruction or combined"
            raise ConfigError(
                f"{name} applies to objective {needs}, not {config.objective!r}; "
                f"drop it or set the objective"
            )


def _check_training(config: RunConfig, *, text: bool = False) -> None:
    """The options of the trainer: precision, the monitored value, feature columns."""
    if config.micro_batch < 0:
        raise ConfigError(f"micro_batch must be >= 0 (0: no caching), got {config.micro_batch}")
    if config.micro_batch and config.objective == "reconstruction":
        raise ConfigError(
            "micro_batch caches the contrastive term, and objective reconstruction has none; "
            "drop micro_batch"
        )
    if config.memory_size < 0:
        raise ConfigError(f"memory_size must be >= 0 (0: no memory), got {config.memory_size}")
    if config.memory_size and config.objective == "reconstruction":
        raise ConfigError(
            "memory_size keeps embeddings for the contrastive loss, and objective "
            "reconstruction has none; drop memory_size"
        )
    if config.memory_size and config.loss not in MEMORY_LOSSES:
        raise ConfigError(
            f"memory_size needs a loss that compares each anchor with many candidates "
            f"({', '.join(MEMORY_LOSSES)}); the {config.loss} loss compares given pairs, "
            "got loss " + repr(config.loss)
        )
    if config.micro_batch and config.batch_norm and not text:  # a transformer has none
        raise ConfigError(
            "micro_batch needs a model without batch normalization (each micro-batch would "
            "be normalized alone): set batch_norm = false (--no-batch-norm)"
        )
    if config.precision not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}"
        )
    if config.precision == "fp16" and config.device == "cpu":
        raise ConfigError(
            "precision fp16 needs a CUDA device (it scales the loss for float16), got device "
            "cpu; use precision bf16 on the CPU"
        )
    if config.mode not in ("", *MODES):
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    if config.patience < 0:
        raise ConfigError(f"patience must be >= 0 (0: never stop early), got {config.patience}")
    config.monitor = config.monitor.strip()
    if not config.monitor:
        for name, value in (("mode", config.mode), ("patience", config.patience)):
            if value:
                raise ConfigError(
                    f"{name} applies with monitor, the value of the history to watch "
                    "(such as val_loss or val_roc_auc); set monitor or drop it"
                )
    elif not config.mode:
        config.mode = "max" if config.monitor in HIGHER_IS_BETTER else "min"
    names = [name.strip() for name in config.exclude_columns]
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ConfigError(
            "exclude_columns must be distinct, non-empty column names, "
            f"got {config.exclude_columns}"
        )
    config.exclude_columns = names


def _typed(config: RunConfig) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:  # pragma: no cover - every field has a default
            continue
        expected = type(default).__name__
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(value, bool) and isinstance(default, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float)
            if ok:
                setattr(config, f.name, float(value))
        elif isinstance(default, list):
            item = f.metadata["items"]
            ok = isinstance(value, list | tuple) and all(
                isinstance(v, item) and not isinstance(v, bool) for v in value
            )
            if ok:
                setattr(config, f.name, [item(v) for v in value])
            expected = f"a list of {item.__name__}"
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"{f.name} must be {expected}, got {type(value).__name__} {value!r}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The table of a TOML config file (errors name the file)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {file} is not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {file} is not UTF-8 text (byte {error.start}: {error.reason}); "
            "save it as UTF-8"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {file}: {error.strerror or error}") from None
