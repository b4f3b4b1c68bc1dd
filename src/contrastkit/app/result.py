"""What one run gives back: :class:`RunResult`, typed, with its JSON (``metrics.json``).

:func:`~contrastkit.app.run.train_run` returns a :class:`RunResult`; the report, the
command line and ``contrastkit compare`` read it. The tensors the figures need (the test
distances and embeddings, the anomaly scores) travel as fields of their own, never
inside the JSON: :meth:`RunResult.to_json` writes the numbers only.

A metric the data cannot measure is ``None`` (``null`` in JSON), never a number: the
true accept rate at a false accept rate below 1/N, with N negative (dissimilar) test
pairs, is one (see :func:`measurable`).

Imports no torch (the tensors are only annotated), like :mod:`~contrastkit.app.config`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastkit.app.config import RunConfig

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "HEADLINE_METRICS",
    "AnomalyResult",
    "BestEpoch",
    "DataSummary",
    "Environment",
    "Evaluation",
    "NeighbourExamples",
    "Probes",
    "RunResult",
    "far_of",
    "measurable",
    "pair_split_note",
]

_TAR_PREFIX = "tar@far="


def far_of(key: str) -> float | None:
    """The false accept rate of a ``"tar@far=<far>"`` metric key, ``None`` for another key."""
    if not key.startswith(_TAR_PREFIX):
        return None
    try:
        return float(key.removeprefix(_TAR_PREFIX))
    except ValueError:
        return None


def measurable(far: float, negative_pairs: int) -> bool:
    """Whether ``negative_pairs`` dissimilar pairs can measure a false accept rate ``far``.

    With N negative pairs the false accept rates that can occur are 0, 1/N, 2/N, …: a
    rate below 1/N cannot be told from 0, so the true accept rate there is not measured
    (it would read the TAR of accepting no negative pair at all).
    """
    return negative_pairs > 0 and negative_pairs * far >= 1.0 - 1e-9


def pair_split_note(split: Mapping[str, Any]) -> str:
    """The sentence of the report and notes that states how a pair file was split."""
    pairs, images = split["pairs"], split.get("images")
    counts = ", ".join(
        f"{pairs[k]} {k} pairs" + (f" of {images[k]} images" if images else "")
        for k in ("train", "validation", "test")
    )
    if split["by"] == "images":
        dropped = split["dropped_pairs"]
        return (
            f"pair file split by image: {counts}; no validation or test image is in a "
            f"training pair; {dropped} pair{'s' if dropped != 1 else ''} whose two images "
            "fell in different splits dropped"
        )
    shared = split.get("shared_images", {})
    seen = shared.get("train_test", 0) + shared.get("train_validation", 0)
    return f"pair file split by pair (pair_split pairs): {counts}; " + (
        f"{shared.get('train_test', 0)} test and {shared.get('train_validation', 0)} "
        "validation images are also in training pairs, so the held-out scores are "
        "optimistic for unseen images"
        if seen
        else "no held-out image is in a training pair"
    )


HEADLINE_METRICS = (
    "spearman",
    "pearson",
    "mrr_at_10",
    "roc_auc",
    "eer",
    "accuracy",
    "precision_at_1",
    "map_at_r",
    "knn_accuracy",
    "linear_probe_accuracy",
    "reconstruction_error",
)
"""The test metrics a run's one-line summary shows, in that order (those it has)."""


@dataclass(frozen=True)
class Evaluation:
    """The test metrics of a network, and the tensors of its test figures.

    Attributes:
        distance: the distance of the pairs and of retrieval.
        test: metric key (as :mod:`contrastkit.evaluation.metrics` names it) → value;
            ``None`` where the data cannot measure it.
        pairs: the number of ``validation`` and ``test`` pairs, and of ``test_negative``
            (dissimilar) test pairs.
        test_distances: the distance of each test pair.
        test_same: 1 for a similar test pair, 0 for a dissimilar one.
        test_embeddings: the embedding of each test sample (the left then the right
            input of each pair, for a pair file).
        retrieval_skipped: why retrieval was not measured, or ``None``.
        verification_skipped: why verification metrics are ``None`` (held-out splits
            too small to give a similar or a dissimilar pair), or ``None``.
        test_similarity: the cosine similarity of each scored test pair of texts
            (``None`` for other data), for the scatter against ``test_gold``.
        test_gold: the gold score of each scored test pair, as written.
    """

    distance: str
    test: dict[str, float | None]
    pairs: dict[str, int]
    test_distances: Tensor
    test_same: Tensor
    test_embeddings: Tensor
    retrieval_skipped: str | None = None
    verification_skipped: str | None = None
    test_similarity: Tensor | None = None
    test_gold: Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """The numbers, as ``metrics.json`` holds them."""
        out: dict[str, Any] = {
            "distance": self.distance,
            "test": dict(self.test),
            "pairs": dict(self.pairs),
        }
        if self.retrieval_skipped is not None:
            out["retrieval_skipped"] = self.retrieval_skipped
        if self.verification_skipped is not None:
            out["verification_skipped"] = self.verification_skipped
        return out

    def measured_fars(self) -> list[float]:
        """The false accept rates of the ``tar@far`` metrics the test pairs can measure."""
        fars = [far_of(key) for key, value in self.test.items() if value is not None]
        return [far for far in fars if far is not None]


@dataclass(frozen=True)
class AnomalyResult:
    """How well each score tells the held-out class from the normal test samples.

    Attributes:
        class_name: the held-out class.
        normal: the normal test samples scored.
        anomalies: the samples of the held-out class scored.
        k: the neighbours of the ``knn`` score.
        scores: score name → ``roc_auc``, ``average_precision``, ``threshold`` (the 95th
            percentile of the validation scores), ``detected`` (share of anomalies at or
            above it) and ``false_alarms`` (share of normal test samples at or above it).
        values: score name → the score of each normal test sample, then of each anomaly.
        is_anomaly: 0 for each normal test sample, then 1 for each anomaly.
        baseline: the same split scored without the network, on the raw standardized
            inputs: ``raw_knn`` (mean distance to the ``k`` nearest training rows) and
            ``raw_lof`` (local outlier factor) → ``roc_auc`` and ``average_precision``;
            empty when not computed.
    """

    class_name: str
    normal: int
    anomalies: int
    k: int
    scores: dict[str, dict[str, float]]
    values: dict[str, Tensor]
    is_anomaly: Tensor
    baseline: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The numbers, as ``metrics.json`` holds them."""
        return {
            "class": self.class_name,
            "normal": self.normal,
            "anomalies": self.anomalies,
            "k": self.k,
            "scores": {name: dict(values) for name, values in self.scores.items()},
            **(
                {"baseline": {name: dict(v) for name, v in self.baseline.items()}}
                if self.baseline
                else {}
            ),
        }


@dataclass(frozen=True)
class BestEpoch:
    """The epoch whose weights a run with a ``monitor`` keeps, and why training stopped.

    Attributes:
        monitor: the value of the history that decides (``"val_roc_auc"``, …).
        mode: ``"min"`` or ``"max"``: whether the best value is the lowest or highest.
        epoch: the best epoch, whose weights are the run's final weights and were
            evaluated; ``None`` if no epoch had a finite value (then the last epoch's).
        value: the monitored value at that epoch.
        epochs_trained: the epochs the run trained (fewer than ``epochs`` when stopped
            early).
        stopped_early: whether ``patience`` epochs without improvement stopped it.
        patience: the epochs without improvement that stop the run (0: never).
    """

    monitor: str
    mode: str
    epoch: int | None
    value: float | None
    epochs_trained: int
    stopped_early: bool
    patience: int

    def to_dict(self) -> dict[str, Any]:
        """The fields, as ``metrics.json`` holds them."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "epoch": self.epoch,
            "value": self.value,
            "epochs_trained": self.epochs_trained,
            "stopped_early": self.stopped_early,
            "patience": self.patience,
        }


@dataclass(frozen=True)
class DataSummary:
    """The data of a run: where it came from and the size of each split."""

    source: str
    train: int
    validation: int
    test: int
    classes: int | None
    split: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The numbers, as ``metrics.json`` holds them.

        An open-set run (``split_by = "classes"``) adds ``"split"``: the classes of each
        split (:func:`contrastkit.app.build.open_set_split`).
        """
        out: dict[str, Any] = {
            "source": self.source,
            "train": self.train,
            "validation": self.validation,
            "test": self.test,
            "classes": self.classes,
        }
        if self.split is not None:
            out["split"] = self.split
        return out


@dataclass(frozen=True)
class Environment:
    """What ran the run: the versions, the date (UTC), the device actually used.

    ``processes`` is the number of processes that trained the model together (``torchrun``;
    ``device`` is then rank 0's).
    """

    contrastkit: str
    torch: str
    python: str
    date: str
    device: str
    device_name: str
    processes: int = 1

    def to_dict(self) -> dict[str, str | int]:
        """The fields, as ``metrics.json`` holds them."""
        return {
            "contrastkit": self.contrastkit,
            "torch": self.torch,
            "python": self.python,
            "date": self.date,
            "device": self.device,
            "device_name": self.device_name,
            "processes": self.processes,
        }

    def describe(self) -> str:
        """One line: ``contrastkit 0.2, torch 2.13, Python 3.11 on cpu (x86_64), <date>``."""
        device = f"{self.device} ({self.device_name})" if self.device_name else self.device
        if self.processes > 1:
            device = f"{self.processes} processes, rank 0 on {device}"
        return (
            f"contrastkit {self.contrastkit}, torch {self.torch}, Python {self.python} "
            f"on {device}, {self.date}"
        )


# ----------------------------------------------------------------------------- probes (SSL)


@dataclass(frozen=True)
class Probes:
    """The k-NN and linear-probe accuracies of frozen embeddings, and of the raw inputs.

    The training split's embeddings (and labels) are the k-NN memory and the probe's
    training set; the test split is classified (:mod:`contrastkit.evaluation.probes`).

    Attributes:
        k: the neighbours of the k-NN vote.
        temperature: the temperature of its weights ``exp(s / T)``.
        train: the training samples (the memory).
        test: the test samples (the queries).
        embedding: ``knn_accuracy`` and ``linear_probe_accuracy`` of the embeddings.
        raw_inputs: the same of the raw inputs (pixels or features, flattened and
            standardized by the training split); a value is ``None`` where it was not
            computed (``raw_skipped`` says why).
        notes: what the probes noticed (a fit that did not converge).
        skipped: why nothing was measured (no labels, unseen test classes), or ``None``.
        raw_skipped: why a raw-input number is missing, or ``None``.
        seconds: the time the probes took.
    """

    k: int
    temperature: float
    train: int
    test: int
    embedding: dict[str, float] = field(default_factory=dict)
    raw_inputs: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    raw_skipped: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The numbers, as ``metrics.json`` holds them (``"probes"``)."""
        out: dict[str, Any] = {
            "k": self.k,
            "temperature": self.temperature,
            "weighting": "exp(cosine / temperature)",
            "memory": "train",
            "queries": "test",
            "train": self.train,
            "test": self.test,
        }
        if self.skipped is not None:
            out["skipped"] = self.skipped
            return out
        out["embedding"] = dict(self.embedding)
        out["raw_inputs"] = dict(self.raw_inputs)
        if self.raw_skipped is not None:
            out["raw_skipped"] = self.raw_skipped
        out["notes"] = list(self.notes)
        out["seconds"] = self.seconds
        return out


@dataclass(frozen=True)
class NeighbourExamples:
    """A few test images and their nearest training images in the embedding.

    Attributes:
        queries: ``(Q, C, H, W)`` test images, as the network takes them (pixels in [0, 1]).
        neighbours: ``(Q, K, C, H, W)`` the ``K`` nearest training images of each, nearest
            first (cosine similarity of the embeddings).
        similarities: ``(Q, K)`` their cosine similarities.
        query_names: the file (or index) of each query.
        neighbour_names: the file (or index) of each neighbour.
        query_classes: the class of each query, or ``None`` without labels.
        neighbour_classes: the class of each neighbour, or ``None`` without labels.
    """

    queries: Tensor
    neighbours: Tensor
    similarities: Tensor
    query_names: list[str]
    neighbour_names: list[list[str]]
    query_classes: list[str] | None = None
    neighbour_classes: list[list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Which files were shown, as ``metrics.json`` holds them (``"neighbours"``)."""
        return {
            "k": int(self.neighbours.shape[1]),
            "similarity": "cosine",
            "queries": [
                {
                    "query": name,
                    "neighbours": [
                        {"file": n, "similarity": float(s)}
                        for n, s in zip(names, sims.tolist(), strict=True)
                    ],
                }
                for name, names, sims in zip(
                    self.query_names, self.neighbour_names, self.similarities, strict=True
                )
            ],
        }


@dataclass
class RunResult:
    """One finished run: its config, metrics, history, figures and timings.

    Attributes:
        run_dir: the run folder.
        config: the resolved configuration (as ``config.toml`` holds it).
        evaluation: the test metrics and the tensors of the test figures.
        terms: the loss terms of the objective and their weights.
        history: one record per epoch (``epoch``, ``train_*``, ``val_*``).
        data: the data and the size of each split.
        environment: the versions, date and device.
        anomaly: the anomaly detection of a held-out class, or ``None``.
        test_labels: the class of each test sample (``None`` for a pair file).
        class_names: the name of each class (empty for a pair file).
        notes: what the run noticed (a class too small for its batches, an extension).
        extended_from: the epochs the run had before this call extended it, or ``None``.
        best: the best epoch by ``monitor`` (whose weights were evaluated), or ``None``
            without a monitor (the last epoch's weights).
        seconds: ``training`` and ``total`` wall-clock seconds.
        train_batch: the rows of each training batch as drawn (pairs or samples; fewer
            than ``batch_size`` where the data cannot fill it), or ``None`` if unknown.
        figures: figure name → PNG file in the run folder.
        raw: the same test metrics on the raw inputs (standardized, Euclidean; see
            :func:`contrastkit.app.evaluate.evaluate_raw`), the baseline of the trained
            embedding, or ``None``.
        raw_skipped: why there is no raw-input baseline (text, unlabelled images), or
            ``None``.
        raw_kind: ``"images"`` or ``"vectors"``: what the baseline's raw inputs were.
        probes: the k-NN and linear-probe accuracies (embedding and raw inputs), or
            ``None`` where the run has no labelled train and test samples to measure.
        neighbours: test images beside their nearest training images (image runs), or
            ``None``.
        init_weights: the weights file the encoder started from (``path``, ``sha256``,
            ``tensors`` loaded, ``standardize``: whether its input statistics came from
            it), or ``None`` for a random initialisation.
    """

    run_dir: Path
    config: RunConfig
    evaluation: Evaluation
    terms: dict[str, float]
    history: list[dict[str, float]]
    data: DataSummary
    environment: Environment
    anomaly: AnomalyResult | None = None
    test_labels: Tensor | None = None
    class_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extended_from: int | None = None
    best: BestEpoch | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    train_batch: int | None = None
    raw: Evaluation | None = None
    raw_skipped: str | None = None
    raw_kind: str = ""
    probes: Probes | None = None
    neighbours: NeighbourExamples | None = None
    init_weights: dict[str, Any] | None = None

    @property
    def test(self) -> dict[str, float | None]:
        """The test metrics (``None``: not measurable from these data)."""
        return self.evaluation.test

    def metrics(self) -> dict[str, Any]:
        """Everything ``metrics.json`` holds: numbers and text only, no tensors."""
        out = self.evaluation.to_dict()
        if self.raw is not None:
            out["raw_inputs"] = {"inputs": self.raw_kind, **self.raw.to_dict()}
        elif self.raw_skipped is not None:
            out["raw_inputs"] = {"skipped": self.raw_skipped}
        out["objective"] = {"name": self.config.objective, "terms": dict(self.terms)}
        if self.anomaly is not None:
            out["anomaly"] = self.anomaly.to_dict()
        out["history"] = [dict(record) for record in self.history]
        out["data"] = self.data.to_dict()
        if self.train_batch is not None:
            out["train_batch"] = self.train_batch
        if self.probes is not None:
            out["probes"] = self.probes.to_dict()
        if self.neighbours is not None:
            out["neighbours"] = self.neighbours.to_dict()
        if self.init_weights is not None:
            out["init_weights"] = dict(self.init_weights)
        out["notes"] = list(self.notes)
        if self.extended_from is not None:
            out["extended_from"] = self.extended_from
        if self.best is not None:
            out["best"] = self.best.to_dict()
        out["environment"] = self.environment.to_dict()
        out["seconds"] = dict(self.seconds)
        return out

    def to_json(self) -> str:
        """The JSON of :meth:`metrics` (``metrics.json``), ending in a newline."""
        return json.dumps(self.metrics(), indent=2) + "\n"

    def summary(self) -> list[tuple[str, float | None]]:
        """The headline test metrics, key and value, in the order they are shown."""
        return [(key, self.test[key]) for key in HEADLINE_METRICS if key in self.test]

    def raw_summary(self) -> list[tuple[str, float | None]]:
        """The headline metrics of the raw-input baseline, as :meth:`summary` (empty: none)."""
        if self.raw is None:
            return []
        shown = [key for key, _ in self.summary() if key != "reconstruction_error"]
        return [(key, self.raw.test.get(key)) for key in shown if key in self.raw.test]
