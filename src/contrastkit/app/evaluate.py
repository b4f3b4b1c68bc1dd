"""The evaluation of a run: verification and retrieval on held-out splits, anomaly scores.

What the data cannot measure (a split without a same-class pair, a false-accept rate
below one over the number of dissimilar pairs) is reported as not measurable, with the
reason, never as a number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from contrastkit.app.build import (
    Split,
    inputs_of,
    unlabelled,
)
from contrastkit.app.config import (
    ANOMALY_K,
    ANOMALY_LOF_NEIGHBORS,
    ANOMALY_SCORES,
    LAZY_ABOVE_BYTES,
    RECONSTRUCTION_LOSSES,
    ConfigError,
    RunConfig,
)
from contrastkit.app.result import (
    AnomalyResult,
    Evaluation,
    NeighbourExamples,
    Probes,
    far_of,
    measurable,
)
from contrastkit.data.readers import LabelledData, PairData
from contrastkit.distances import DistanceName, paired_distance
from contrastkit.models import Standardize
from contrastkit.training import (
    embed,
)

__all__ = [
    "BASELINE_NAMES",
    "RAW_DISTANCE",
    "SCORE_NAMES",
    "RawInputs",
    "anomaly_scores",
    "available_scores",
    "embed_split",
    "evaluate_anomalies",
    "evaluate_probes",
    "evaluate_raw",
    "evaluate_run",
    "has_retrieval",
    "in_classes_of",
    "in_memory",
    "neighbour_examples",
    "no_pairs",
    "pair_distances",
    "pairs_of",
    "probes_skipped",
    "raw_baseline",
    "standardized_rows",
]

SCORE_NAMES = {
    "reconstruction": "reconstruction error",
    "knn": f"mean distance to the {ANOMALY_K} nearest training embeddings",
    "centroid": "distance to the nearest class centroid",
}
"""Each anomaly score, in words."""


_FARS = (1e-2, 1e-3)
_VERIFICATION = ("roc_auc", "eer", *(f"tar@far={far:g}" for far in _FARS))
_THRESHOLD = ("threshold", "accuracy", "val_accuracy")


def no_pairs(data: Split) -> str | None:
    """Why a held-out split gives no verification pairs, or ``None`` when it gives both kinds.

    A pair file's splits always do (:func:`~contrastkit.app.build.run_splits` checks it).
    """
    if isinstance(data, PairData):
        return None
    counts = torch.bincount(data.labels)
    if int((counts >= 2).sum()) == 0:
        return "no class has 2 samples there, so it has no similar pair"
    if int((counts >= 1).sum()) < 2:
        return "it holds a single class, so it has no dissimilar pair"
    return None


def has_retrieval(data: Split) -> bool:
    """Whether a split can measure retrieval: labelled, with a class of 2 samples.

    A split of one class measures nothing (every neighbour is of the query's class).
    """
    if not isinstance(data, LabelledData) or unlabelled(data):
        return False
    counts = torch.bincount(data.labels)
    return bool((counts >= 2).any()) and int((counts >= 1).sum()) >= 2


def pairs_of(data: Split, seed: int) -> Tensor | None:
    """Balanced verification pairs ``(i, j, same)`` of a labelled split.

    ``None`` for a pair file (its pairs are given) and for a split that cannot give both
    kinds of pair (see :func:`no_pairs`).
    """
    from contrastkit.evaluation.metrics import verification_pairs

    if isinstance(data, PairData) or no_pairs(data) is not None:
        return None
    return torch.stack(verification_pairs(data.labels, max_pairs=20_000, seed=seed))


def embed_split(model: nn.Module, data: Split) -> Tensor:
    """The embeddings of a split: one per sample, or the left then the right of each pair."""
    return embed(model, inputs_of(data))


def pair_distances(
    emb: Tensor, data: Split, pairs: Tensor | None, config: RunConfig
) -> tuple[Tensor, Tensor]:
    """Distances and labels of a split's verification pairs, from its embeddings."""
    if isinstance(data, PairData):
        left, right = emb.chunk(2)
        same = data.same
    else:
        if pairs is None:
            raise ValueError("labelled data needs its verification pairs")
        left, right, same = emb[pairs[0]], emb[pairs[1]], pairs[2]
    return paired_distance(left, right, distance=config.distance_name), same


def _measured(metrics: dict[str, float | None], negative_pairs: int) -> dict[str, float | None]:
    """The metrics, each TAR at a FAR the negative pairs cannot measure set to ``None``."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        far = far_of(key)
        out[key] = None if far is not None and not measurable(far, negative_pairs) else value
    return out


def _verification(
    model: nn.Module, config: RunConfig, val: Split, test: Split, test_emb: Tensor
) -> tuple[dict[str, float | None], Tensor, Tensor, int, str | None]:
    """The verification metrics, test distances and labels, validation pairs, and why not.

    A metric the held-out splits cannot measure is ``None``: every one when the test
    split has no pair of each kind, the threshold and the accuracies when only the
    validation split has none (the ROC-AUC, EER and TAR on test need no threshold).
    """
    from contrastkit.evaluation.metrics import (
        equal_error_rate,
        roc_auc,
        tar_at_far,
        verification_metrics,
    )

    found: dict[str, float | None] = dict.fromkeys((*_VERIFICATION, *_THRESHOLD))
    val_why, test_why = no_pairs(val), no_pairs(test)
    if test_why is not None:
        empty = torch.zeros(0)
        skipped = f"the test split cannot be verified: {test_why}"
        return found, empty, empty.long(), 0, skipped
    test_d, test_same = pair_distances(test_emb, test, pairs_of(test, config.seed + 3), config)
    if val_why is not None:
        found["roc_auc"] = roc_auc(test_d, test_same)
        found["eer"] = equal_error_rate(test_d, test_same)[0]
        for far in _FARS:
            found[f"tar@far={far:g}"] = tar_at_far(test_d, test_same, far=far)
        skipped = (
            f"no threshold could be chosen on the validation split ({val_why}): no accuracy "
            "at the threshold; the ROC-AUC, EER and TAR of the test pairs need none"
        )
        return found, test_d, test_same, 0, skipped
    val_pairs = pairs_of(val, config.seed + 2)
    val_d, val_same = pair_distances(embed_split(model, val), val, val_pairs, config)
    found.update(verification_metrics(val_d, val_same, test_d, test_same, fars=_FARS))
    return found, test_d, test_same, int(val_same.numel()), None


def evaluate_run(model: nn.Module, config: RunConfig, val: Split, test: Split) -> Evaluation:
    """Test metrics with the threshold chosen on validation, and retrieval on test.

    For an autoencoder, also the mean reconstruction error of the test inputs
    (``reconstruction_error``, in the run's reconstruction loss). A true accept rate at
    a false accept rate below 1/N, with N dissimilar test pairs, is ``None``; so is
    every metric the held-out splits cannot measure (small classes: no similar pair),
    and ``verification_skipped`` says why.
    """
    from contrastkit.evaluation.metrics import retrieval_metrics

    test_emb = embed_split(model, test)
    if unlabelled(test):  # a flat image folder or a table without labels: nothing to compare
        why = (
            "the rows have no labels (no label column)"
            if test.kind == "vectors"
            else "the images have no labels (a flat folder; give class subfolders to measure it)"
        )
        empty = torch.zeros(0)
        return Evaluation(
            distance=config.distance_name,
            test={},
            pairs={"validation": 0, "test": 0, "test_negative": 0},
            test_distances=empty,
            test_same=empty.long(),
            test_embeddings=test_emb,
            retrieval_skipped=why,
            verification_skipped=why,
        )
    found, test_d, test_same, val_count, verification_skipped = _verification(
        model, config, val, test, test_emb
    )
    negatives = int((test_same == 0).sum())
    skipped = None
    if isinstance(test, LabelledData) and not (torch.bincount(test.labels) >= 2).any():
        skipped = "no class has 2 samples in the test split, so no query has a match to find"
    elif isinstance(test, LabelledData) and not has_retrieval(test):  # one class
        skipped = "the test split holds one class, so every neighbour matches: nothing to rank"
    elif isinstance(test, LabelledData):
        ks = tuple(k for k in (1, 5, 10) if k < len(test))
        try:
            found.update(
                retrieval_metrics(test_emb, test.labels, distance=config.distance_name, ks=ks)
            )
        except ValueError as error:
            skipped = str(error)
    if callable(getattr(model, "reconstruct", None)):
        errors = anomaly_scores(
            model, config, None, None, inputs_of(test), methods=["reconstruction"]
        )
        found["reconstruction_error"] = float(errors["reconstruction"].mean())
    return Evaluation(
        distance=config.distance_name,
        test=_measured(found, negatives),
        pairs={
            "validation": val_count,
            "test": int(test_same.numel()),
            "test_negative": negatives,
        },
        test_distances=test_d,
        test_same=test_same,
        test_embeddings=test_emb,
        retrieval_skipped=skipped,
        verification_skipped=verification_skipped,
    )


def available_scores(model: nn.Module, reference_labels: Tensor | None) -> list[str]:
    """The anomaly scores a run can give: reconstruction (autoencoders), knn, centroid."""
    out = ["reconstruction"] if callable(getattr(model, "reconstruct", None)) else []
    out.append("knn")
    if reference_labels is not None:
        out.append("centroid")
    return out


def anomaly_scores(
    model: nn.Module,
    config: RunConfig,
    reference: Tensor | None,
    reference_labels: Tensor | None,
    inputs: Tensor,
    *,
    methods: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """Anomaly scores of ``inputs`` (scaled as the network takes them); higher = stranger.

    ``"reconstruction"``: the autoencoder's reconstruction error in the run's
    reconstruction loss; ``"knn"``: the mean distance (the run's ``distance``) of the
    embedding to its 5 nearest reference embeddings; ``"centroid"``: the distance to the
    nearest centroid of a reference class. ``methods=None`` gives every score the run
    has (see :func:`available_scores`).
    """
    from contrastkit.evaluation.anomaly import centroid_scores, knn_scores, reconstruction_errors

    available = available_scores(model, reference_labels)
    chosen = list(available) if methods is None else list(methods)
    for method in chosen:
        if method not in ANOMALY_SCORES:
            raise ConfigError(
                f"score method must be one of {', '.join(ANOMALY_SCORES)}, got {method!r}"
            )
        if method not in available:
            why = "is not an autoencoder" if method == "reconstruction" else "has no classes"
            raise ConfigError(f"score method {method!r} is not available: the run {why}")
    out: dict[str, Tensor] = {}
    if "reconstruction" in chosen:
        kind = RECONSTRUCTION_LOSSES[config.reconstruction_loss]
        out["reconstruction"] = reconstruction_errors(model, inputs, kind=kind)
    if {"knn", "centroid"} & set(chosen):
        if reference is None:
            raise ValueError("the knn and centroid scores need the reference embeddings")
        emb = embed(model, inputs)
        if "knn" in chosen:
            k = min(ANOMALY_K, reference.shape[0])
            out["knn"] = knn_scores(reference, emb, k=k, distance=config.distance_name)
        if "centroid" in chosen:
            if reference_labels is None:
                raise ValueError("the centroid score needs the reference labels")
            out["centroid"] = centroid_scores(
                reference, reference_labels, emb, distance=config.distance_name
            )
    return {method: out[method] for method in chosen}


BASELINE_NAMES = {
    "raw_knn": f"mean distance to the {ANOMALY_K} nearest training rows (raw inputs)",
    "raw_lof": f"local outlier factor, {ANOMALY_LOF_NEIGHBORS} neighbours (raw inputs)",
}
"""Each score of the raw-input baseline of anomaly detection, in words."""


def in_memory(inputs: Any) -> Tensor | None:
    """A split's raw inputs as one tensor, for a baseline on the raw inputs.

    A tensor as it is; images read lazily (a :class:`~contrastkit.data.images.LazyImages`
    view) decoded, when their pixels take at most
    :data:`~contrastkit.app.config.LAZY_ABOVE_BYTES` (the size above which ``auto``
    reads lazily), else ``None``: a folder bigger than memory has no raw baseline.
    """
    if isinstance(inputs, Tensor):
        return inputs
    if math.prod(inputs.shape) * 4 > LAZY_ABOVE_BYTES:
        return None
    return cast(Tensor, inputs[0 : len(inputs)])


def standardized_rows(train: Tensor, *others: Tensor) -> list[Tensor]:
    """``train`` and ``others`` as float64 rows, standardized with ``train``'s statistics.

    Each feature (each pixel of flattened images) minus its training mean, over its
    training standard deviation; a feature constant in training is divided by 1. For
    images a pixel that hardly varies (a border) is scaled like an average pixel
    instead (its deviation raised to the mean deviation), as the networks do.
    """
    x = train.flatten(1).double()
    mean, std = x.mean(dim=0), x.std(dim=0, correction=0)
    if train.dim() > 2:
        std = std.clamp_min(float(std.mean()))
    std = torch.where(std > 0, std, torch.ones_like(std))
    return [(t.flatten(1).double() - mean) / std for t in (train, *others)]


def raw_baseline(
    train: Tensor, test: Tensor, anomalies: Tensor, *, k: int = ANOMALY_K
) -> dict[str, dict[str, float]]:
    """The anomaly metrics of nearest neighbours on the raw, standardized inputs.

    What training bought: on the same split as the run, with no network, ``"raw_knn"``
    is the mean Euclidean distance to the ``k`` nearest training rows and ``"raw_lof"``
    scikit-learn's local outlier factor (``novelty=True``, fitted on the training rows,
    :data:`ANOMALY_LOF_NEIGHBORS` neighbours), each on the rows standardized with the
    training split's mean and deviation (:func:`standardized_rows`). Each gives its
    ``roc_auc`` and ``average_precision`` with the anomalies as the positive class.
    """
    from sklearn.neighbors import LocalOutlierFactor  # type: ignore[import-untyped]

    from contrastkit.evaluation.anomaly import anomaly_metrics, knn_scores

    reference, normal, odd = standardized_rows(train, test, anomalies)
    inputs = torch.cat([normal, odd])
    is_anomaly = torch.cat([torch.zeros(len(normal)), torch.ones(len(odd))]).long()
    scores = {
        "raw_knn": knn_scores(reference, inputs, k=min(k, reference.shape[0])),
    }
    lof = LocalOutlierFactor(
        n_neighbors=min(ANOMALY_LOF_NEIGHBORS, reference.shape[0] - 1), novelty=True
    ).fit(reference.numpy())
    scores["raw_lof"] = torch.from_numpy(-lof.score_samples(inputs.numpy()))
    out = {}
    for name, values in scores.items():
        found = anomaly_metrics(values, is_anomaly)
        out[name] = {"roc_auc": found["roc_auc"], "average_precision": found["average_precision"]}
    return out


def evaluate_anomalies(
    model: nn.Module,
    config: RunConfig,
    reference: Tensor,
    reference_labels: Tensor | None,
    val: LabelledData,
    test: LabelledData,
    anomalies: LabelledData,
    *,
    raw: tuple[Tensor, Tensor, Tensor] | None = None,
) -> AnomalyResult:
    """ROC-AUC and average precision of each score on normal test samples + anomalies.

    The threshold of each score is the 95th percentile of the validation split's scores
    (normal samples only): 5% false alarms expected on normal data. With ``raw``, the
    training rows, normal test rows and anomalies as read (before any scaling), the
    result also holds the :func:`raw_baseline` of the same split, when the training
    split has 2 rows or more.
    """
    from contrastkit.evaluation.anomaly import anomaly_metrics

    inputs = torch.cat([test.inputs, anomalies.inputs])
    is_anomaly = torch.cat([torch.zeros(len(test)), torch.ones(len(anomalies))]).long()
    scores = anomaly_scores(model, config, reference, reference_labels, inputs)
    val_scores = anomaly_scores(model, config, reference, reference_labels, val.inputs)
    measured: dict[str, dict[str, float]] = {}
    for method, values in scores.items():
        found = anomaly_metrics(values, is_anomaly)
        threshold = float(torch.quantile(val_scores[method].double(), 0.95))
        flagged = values.double() >= threshold
        measured[method] = {
            "roc_auc": found["roc_auc"],
            "average_precision": found["average_precision"],
            "threshold": threshold,
            "detected": float(flagged[is_anomaly == 1].double().mean()),
            "false_alarms": float(flagged[is_anomaly == 0].double().mean()),
        }
    return AnomalyResult(
        class_name=config.anomaly_class,
        normal=len(test),
        anomalies=len(anomalies),
        k=ANOMALY_K,
        scores=measured,
        values=scores,
        is_anomaly=is_anomaly,
        baseline=raw_baseline(*raw) if raw is not None and len(raw[0]) >= 2 else {},
    )


# ----------------------------------------------------------------------------- the baseline

RAW_DISTANCE: DistanceName = "euclidean"
"""The distance of the raw-input baseline: nearest neighbours on the standardized inputs."""


class RawInputs(nn.Module):
    """The "embedding" of the raw-input baseline: each input standardized, then flattened.

    The statistics are those of the training split (:meth:`Standardize.from_data`): per
    feature for feature vectors (z-scores), per channel for images (so the Euclidean
    distance is that of the raw pixels, up to one scale per channel). Nothing is
    trained: it is what a nearest-neighbour search on the inputs themselves measures.

    Example:
        >>> x = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
        >>> RawInputs.fitted(x)(x)
        tensor([[-1., -1.],
                [ 1.,  1.]])
    """

    def __init__(self, scale: Standardize) -> None:
        super().__init__()
        self.scale = scale

    @classmethod
    def fitted(cls, train_inputs: Tensor) -> RawInputs:
        """The baseline whose statistics are those of ``train_inputs``."""
        return cls(Standardize.from_data(train_inputs))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, …)`` inputs → ``(N, D)`` standardized, flattened inputs."""
        return self.scale(x).flatten(1)


def evaluate_raw(
    config: RunConfig, train: Split, val: Split, test: Split
) -> tuple[Evaluation | None, str | None]:
    """The run's retrieval and verification metrics on the raw inputs, or why not.

    The same test metrics as :func:`evaluate_run` (the threshold chosen on the same
    validation pairs, the same test pairs and retrieval queries), with the inputs
    standardized by the training split's statistics (:class:`RawInputs`) in place of
    the trained embeddings, and the Euclidean distance (:data:`RAW_DISTANCE`): what the
    data give without any training. For a pair file, the distance between the two
    raw images of each pair. Nothing is trained; retrieval goes through the same tiled
    distance code as the embeddings'.

    Returns:
        ``(evaluation, None)``, or ``(None, why)`` when the split has no labels to
        measure anything with (a flat image folder).
    """
    if unlabelled(test):
        return None, "the images have no labels (a flat folder): nothing to measure"
    pixels = in_memory(inputs_of(train))
    if pixels is None:
        return None, "the images were read lazily and are too many to hold in memory"
    model = RawInputs.fitted(pixels)
    raw_config = dataclasses.replace(config, distance=RAW_DISTANCE)
    return evaluate_run(model, raw_config, val, test), None


# ----------------------------------------------------------------------------- probes (SSL)

RAW_PROBE_MAX_VALUES = 20_000_000
"""The largest training matrix (samples × input values) the raw-input linear probe fits."""


def probes_skipped(train: Split, test: Split, split_by: str) -> str | None:
    """Why the k-NN and linear-probe accuracies cannot be measured, or ``None``.

    The reason :func:`evaluate_probes` gives, known before any embedding is computed.
    """
    if not isinstance(train, LabelledData) or not isinstance(test, LabelledData):
        return "they need labelled samples, and the run has pairs"
    if unlabelled(train) or unlabelled(test):
        return "the images have no labels (a flat folder; give class subfolders to measure it)"
    if split_by == "classes":
        return (
            "the test classes (identities) are not among the training classes (open-set "
            "split), so no classifier of training classes can name them"
        )
    if int(torch.unique(train.labels).numel()) < 2:
        return "the training split holds a single class"
    return None


def evaluate_probes(
    config: RunConfig,
    train: Split,
    test: Split,
    train_embeddings: Tensor,
    test_embeddings: Tensor,
) -> Probes:
    """The k-NN and linear-probe accuracies of the embeddings, and of the raw inputs.

    The training split (its embeddings, or its inputs flattened and standardized by
    its own mean and standard deviation) is the k-NN memory and the probe's training
    set; the test split is classified. The labels are used here only, after training.
    The raw-input linear probe is skipped when the training matrix holds more than
    :data:`RAW_PROBE_MAX_VALUES` values (too slow to be a side measurement).
    """
    import time

    from contrastkit.evaluation.probes import KNN_K, KNN_TEMPERATURE, knn_accuracy, linear_probe

    started = time.perf_counter()
    k = min(KNN_K, len(train))
    skipped = probes_skipped(train, test, config.split_by)
    if skipped is not None:
        return Probes(k, KNN_TEMPERATURE, len(train), len(test), skipped=skipped)
    train, test = cast(LabelledData, train), cast(LabelledData, test)
    notes: list[str] = []

    def measure(what: str, x_train: Tensor, x_test: Tensor, probe: bool) -> dict[str, float]:
        out = {"knn_accuracy": knn_accuracy(x_train, train.labels, x_test, test.labels, k=k)}
        if probe:
            fit = linear_probe(x_train, train.labels, x_test, test.labels)
            out["linear_probe_accuracy"] = fit.accuracy
            if not fit.converged:
                notes.append(
                    f"the linear probe on {what} did not converge in {fit.iterations} "
                    "L-BFGS iterations (its accuracy is that of the last iterate)"
                )
        return out

    embedding = measure("the embeddings", train_embeddings, test_embeddings, True)
    raw: dict[str, float | None] = {"knn_accuracy": None, "linear_probe_accuracy": None}
    pixels = in_memory(train.inputs), in_memory(test.inputs)
    if pixels[0] is None or pixels[1] is None:
        raw_skipped: str | None = (
            "no k-NN or linear probe on the raw inputs: the images were read lazily and are "
            "too many to hold in memory"
        )
    else:
        raw_train, raw_test = pixels[0].flatten(1).double(), pixels[1].flatten(1).double()
        mean, std = raw_train.mean(0), raw_train.std(0)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        raw_train, raw_test = (raw_train - mean) / std, (raw_test - mean) / std
        probe_raw = raw_train.numel() <= RAW_PROBE_MAX_VALUES
        raw.update(measure("the raw inputs", raw_train, raw_test, probe_raw))
        raw_skipped = None
        if not probe_raw:
            raw_skipped = (
                f"no linear probe on the raw inputs: {raw_train.shape[0]} × "
                f"{raw_train.shape[1]} values is more than {RAW_PROBE_MAX_VALUES:,}"
            )
    return Probes(
        k=k,
        temperature=KNN_TEMPERATURE,
        train=len(train),
        test=len(test),
        embedding=embedding,
        raw_inputs=raw,
        notes=notes,
        raw_skipped=raw_skipped,
        seconds=time.perf_counter() - started,
    )


def in_classes_of(train: Split, test: Split) -> tuple[Split, str | None]:
    """``test`` with its labels renumbered as ``train``'s classes, or why it cannot be.

    A classifier of the training classes (k-NN, linear probe) can be scored on other
    labelled data only where each of its classes, matched by name, is one the training
    split holds: the labels are then the indices of those names in ``train``'s
    ``class_names``. Anything else (pairs, no labels) is returned as it is, with no
    reason: :func:`probes_skipped` gives that one.
    """
    if not isinstance(train, LabelledData) or not isinstance(test, LabelledData):
        return test, None
    if unlabelled(train) or unlabelled(test):
        return test, None
    held = {train.class_names[i] for i in torch.unique(train.labels).tolist()}
    named = [test.class_names[i] for i in torch.unique(test.labels).tolist()]
    missing = [name for name in named if name not in held]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f", … ({len(missing)} in all)" if len(missing) > 5 else ""
        return test, (
            f"{len(missing)} of the {len(named)} test classes ({shown}{more}) are not among "
            "the training classes (matched by name), so no classifier of training classes "
            "can name them"
        )
    index = {name: i for i, name in enumerate(train.class_names)}
    renumber = torch.tensor([index.get(name, -1) for name in test.class_names], dtype=torch.long)
    return dataclasses.replace(
        test, labels=renumber[test.labels], class_names=list(train.class_names)
    ), None


NEIGHBOUR_QUERIES = 6
"""The test images of the nearest-neighbour figure."""
NEIGHBOUR_K = 5
"""The training images shown beside each."""


def neighbour_examples(
    train: Split,
    test: Split,
    train_embeddings: Tensor,
    test_embeddings: Tensor,
    *,
    seed: int,
    root: str | None = None,
    queries: int = NEIGHBOUR_QUERIES,
    k: int = NEIGHBOUR_K,
) -> NeighbourExamples | None:
    """A few test images (drawn from ``seed``) with their nearest training images.

    ``None`` unless both splits are labelled-or-unlabelled images (not pairs, not
    feature vectors). Nearest by the cosine similarity of the embeddings, as the k-NN
    accuracy compares them. Files are named relative to ``root`` (the image folder).
    """
    from pathlib import Path

    if not isinstance(train, LabelledData) or not isinstance(test, LabelledData):
        return None
    if train.kind != "images" or len(train) == 0 or len(test) == 0:
        return None
    k = min(k, len(train))
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(test), generator=generator)[: min(queries, len(test))]
    chosen = chosen.sort().values
    memory = torch.nn.functional.normalize(train_embeddings.double(), dim=1)
    asked = torch.nn.functional.normalize(test_embeddings[chosen].double(), dim=1)
    similarity, index = (asked @ memory.T).topk(k, dim=1)

    def name(data: LabelledData, i: int) -> str:
        if not data.paths:
            return f"#{i}"
        path = Path(data.paths[i]).resolve()
        if root is not None and path.is_relative_to(Path(root).resolve()):
            return path.relative_to(Path(root).resolve()).as_posix()
        return path.as_posix()

    labelled = not unlabelled(train) and not unlabelled(test)
    return NeighbourExamples(
        queries=test.inputs[chosen],
        # indexed by one flat index, as images read lazily are
        neighbours=train.inputs[index.flatten()].reshape(*index.shape, *train.inputs.shape[1:]),
        similarities=similarity.float(),
        query_names=[name(test, i) for i in chosen.tolist()],
        neighbour_names=[[name(train, j) for j in row] for row in index.tolist()],
        query_classes=[test.class_names[int(test.labels[i])] for i in chosen.tolist()]
        if labelled
        else None,
        neighbour_classes=[
            [train.class_names[int(train.labels[j])] for j in row] for row in index.tolist()
        ]
        if labelled
        else None,
    )
