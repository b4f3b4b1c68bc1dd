"""One training run, from data to report: what ``contrastkit train`` does, as a function.

:func:`train_run` reads the data named in a :class:`RunConfig`, splits it (stratified
train / validation / test, from the seed), trains a network with the chosen objective,
evaluates it on held-out data, writes one run folder and returns a
:class:`~contrastkit.app.result.RunResult`::

    RUN_DIR/
      config.toml          the resolved configuration (reusable with --config); written
                           first, so that a run stopped at any moment can be resumed
      model.json           how to rebuild the network (input shape, sizes)
      model.safetensors    the final weights (with a monitor: the best epoch's)
      reference.safetensors  the training split's embeddings (and labels), for scoring
      checkpoints/         the last epoch's weights and optimizer state (for --resume),
                           and best/ (the best epoch's weights) with a monitor
      metrics.jsonl        one JSON line per finished epoch, written as training goes
                           (the history so far, also of a killed run)
      metrics.json         test and validation metrics, the per-epoch history, timings,
                           the versions, date and device (RunResult.to_json())
      tensorboard/         the history as TensorBoard logs, with tensorboard = true
      figures/*.png        loss curve, embedding map, ROC, distance histograms, history,
                           validation metrics by epoch
      report.html          all of it on one self-contained page

Three objectives (``objective``):

* ``"contrastive"``: a siamese encoder trained with ``loss`` (the default);
* ``"reconstruction"``: an :class:`~contrastkit.models.Autoencoder` whose encoder is the
  very encoder a contrastive run builds and whose decoder mirrors it, trained to
  reconstruct its inputs (``noise_std`` > 0: denoising);
* ``"combined"``: the same autoencoder trained on
  ``reconstruction_weight`` × reconstruction + ``contrastive_weight`` × ``loss`` on its
  code, a :class:`~contrastkit.training.WeightedSum`; each term is logged on its own.

The code is the embedding: verification, retrieval and the map work for every
objective. Every objective draws the batches of ``loss``, so the three see the same
samples in the same order; the reconstruction term rebuilds every input of a batch.
Autoencoder runs reconstruct their inputs scaled to [0, 1] by the smallest and largest
value of the training split (one range for all features; the digits' pixels 0..16
become 0..1), saved in ``model.json`` and applied to every input the run later reads.
``reconstruction_loss="bce"`` treats the decoder's outputs as logits (binary
cross-entropy with logits), and clips inputs that fall outside the range to [0, 1].

With ``anomaly_class``, that class is held out of training and validation altogether;
after training, the normal test samples and every sample of that class are scored
(reconstruction error, mean distance to the 5 nearest training embeddings, distance to
the nearest class centroid) and the ROC-AUC and average precision of each score go to
``metrics.json`` and the report.

The verification threshold is chosen on the validation split and only applied to the
test split. A true accept rate at a false accept rate the test pairs cannot measure
(below 1/N with N dissimilar pairs) is ``None``, not 0.

Small classes (an image folder of 2 to 5 images per class) train with the pairs they
can give (dissimilar pairs only, when no class has 2 training samples), and what the
held-out splits cannot measure is ``None`` with the reason in ``metrics.json``
(``verification_skipped``, ``retrieval_skipped``), the report and the notes: a split
without a class of 2 samples has no similar pair to verify. A pair file's splits must
each hold a matching and a non-matching pair; that is checked before training.

With a ``monitor`` (a value of the per-epoch history, such as ``val_loss`` or
``val_roc_auc``; a name the run's history will not hold is refused before training),
the best epoch's weights are kept in ``checkpoints/best`` and, after training, are the
run's final weights (``model.safetensors``, ``reference.safetensors``): the test
metrics are the best epoch's, which ``metrics.json`` (``best``), the report's first
line and its notes name. ``patience`` stops the run after that many epochs in a row
without improvement. ``accumulate``, ``precision`` and ``tensorboard`` are passed to the
:class:`~contrastkit.training.Trainer`; the one-cycle schedule spans every optimizer
step, ``epochs × ceil(steps_per_epoch / accumulate)``.

Resuming (``resume=True``) continues the run from its last checkpoint with its saved
config. A config with more ``epochs`` than the saved one *extends* the run: the
one-cycle learning-rate schedule is rebuilt over the new total and continued from the
step reached (the rate climbs back to where a run of the new length would be, then
anneals to the new end), so the weights are not those of a run trained for the new
number of epochs from the start; ``config.toml`` then records the new epochs and the
report notes the extension.

The parts a run is built from (data, network, loss, schedule) are in
:mod:`contrastkit.app.build`; the result type in :mod:`contrastkit.app.result`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from contrastkit.app.build import (
    Split,
    build_model,
    build_objective,
    inputs_of,
    loss_and_loaders,
    loss_terms,
    model_spec,
    optimizer_and_schedule,
    read_data,
    resolve_device,
    run_splits,
    scale_inputs,
    scale_split,
    standardize,
)
from contrastkit.app.config import (
    ANOMALY_K,
    ANOMALY_SCORES,
    DEFAULT_HIDDEN,
    LOSSES,
    OBJECTIVES,
    RECONSTRUCTION_LOSSES,
    ConfigError,
    RunConfig,
    read_config_file,
)
from contrastkit.app.result import (
    AnomalyResult,
    BestEpoch,
    DataSummary,
    Environment,
    Evaluation,
    RunResult,
    far_of,
    measurable,
)
from contrastkit.app.rundir import (
    CONFIG,
    MODEL_JSON,
    REFERENCE,
    WEIGHTS,
    RunFolderError,
    check_run_folder,
    create_run_folder,
    discard_untrained_run_folder,
    load_weights_into,
    naming_write_errors,
    read_model_json,
    read_reference,
    remove_stale_temporaries,
    save_tensors,
    take_default_run_folder,
    write_text_atomic,
)
from contrastkit.data.readers import DataError, LabelledData, PairData
from contrastkit.distances import paired_distance
from contrastkit.training import (
    Trainer,
    best_checkpoint,
    embed,
    latest_checkpoint,
    load_weights,
)

__all__ = [
    "ANOMALY_SCORES",
    "LOSSES",
    "OBJECTIVES",
    "SCORE_NAMES",
    "ConfigError",
    "RunConfig",
    "RunResult",
    "anomaly_scores",
    "available_scores",
    "evaluate_run",
    "load_reference",
    "load_run",
    "load_spec",
    "read_config_file",
    "read_data",
    "run_splits",
    "scale_inputs",
    "scale_split",
    "train_run",
]

SCORE_NAMES = {
    "reconstruction": "reconstruction error",
    "knn": f"mean distance to the {ANOMALY_K} nearest training embeddings",
    "centroid": "distance to the nearest class centroid",
}
"""Each anomaly score, in words."""


# ----------------------------------------------------------------------------- evaluation


_FARS = (1e-2, 1e-3)
_VERIFICATION = ("roc_auc", "eer", *(f"tar@far={far:g}" for far in _FARS))
_THRESHOLD = ("threshold", "accuracy", "val_accuracy")


def _no_pairs(data: Split) -> str | None:
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


def _has_retrieval(data: Split) -> bool:
    """Whether a split can measure retrieval: labelled, with a class of 2 samples."""
    return isinstance(data, LabelledData) and bool((torch.bincount(data.labels) >= 2).any())


def _pairs_of(data: Split, seed: int) -> Tensor | None:
    """Balanced verification pairs ``(i, j, same)`` of a labelled split.

    ``None`` for a pair file (its pairs are given) and for a split that cannot give both
    kinds of pair (see :func:`_no_pairs`).
    """
    from contrastkit.evaluation.metrics import verification_pairs

    if isinstance(data, PairData) or _no_pairs(data) is not None:
        return None
    return torch.stack(verification_pairs(data.labels, max_pairs=20_000, seed=seed))


def _embed_split(model: nn.Module, data: Split) -> Tensor:
    """The embeddings of a split: one per sample, or the left then the right of each pair."""
    return embed(model, inputs_of(data))


def _pair_distances(
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
    val_why, test_why = _no_pairs(val), _no_pairs(test)
    if test_why is not None:
        empty = torch.zeros(0)
        skipped = f"the test split cannot be verified: {test_why}"
        return found, empty, empty.long(), 0, skipped
    test_d, test_same = _pair_distances(test_emb, test, _pairs_of(test, config.seed + 3), config)
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
    val_pairs = _pairs_of(val, config.seed + 2)
    val_d, val_same = _pair_distances(_embed_split(model, val), val, val_pairs, config)
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

    test_emb = _embed_split(model, test)
    found, test_d, test_same, val_count, verification_skipped = _verification(
        model, config, val, test, test_emb
    )
    negatives = int((test_same == 0).sum())
    skipped = None
    if isinstance(test, LabelledData) and not _has_retrieval(test):
        skipped = "no class has 2 samples in the test split, so no query has a match to find"
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


def _evaluate_anomalies(
    model: nn.Module,
    config: RunConfig,
    reference: Tensor,
    reference_labels: Tensor | None,
    val: LabelledData,
    test: LabelledData,
    anomalies: LabelledData,
) -> AnomalyResult:
    """ROC-AUC and average precision of each score on normal test samples + anomalies.

    The threshold of each score is the 95th percentile of the validation split's scores
    (normal samples only): 5% false alarms expected on normal data.
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
    )


# ----------------------------------------------------------------------------- the run folder


def _save_reference(path: Path, embeddings: Tensor, labels: Tensor | None) -> None:
    tensors = {"embeddings": embeddings}
    if labels is not None:
        tensors["labels"] = labels
    save_tensors(path, tensors)


def load_reference(
    run_dir: str | Path, *, embedding_dim: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """The training split's embeddings of a run (and their labels, ``None`` for pairs).

    Raises:
        RunFolderError: ``reference.safetensors`` is missing or damaged (see
            :func:`~contrastkit.app.rundir.read_reference`).
    """
    return read_reference(run_dir, embedding_dim=embedding_dim)


def load_spec(run_dir: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a run folder, checked: how its network is built and fed.

    Raises:
        RunFolderError: it is missing, not JSON or lacks a key.
    """
    return read_model_json(run_dir)


def load_run(run_dir: str | Path) -> tuple[RunConfig, nn.Module]:
    """The config and trained network of a run folder (siamese network or autoencoder).

    The folder is checked first (:func:`~contrastkit.app.rundir.check_run_folder`), so a
    missing or damaged file is a :class:`~contrastkit.app.rundir.RunFolderError` naming
    it; the weights are the final ones, or the last checkpoint's while the run is
    unfinished.
    """
    run = Path(run_dir)
    check_run_folder(run)
    config = RunConfig.from_mapping(read_config_file(run / CONFIG), where=str(run / CONFIG))
    spec = read_model_json(run)
    try:
        model = build_model(spec)
    except (ValueError, TypeError) as error:
        raise RunFolderError(
            f"{run / MODEL_JSON} describes no network that can be built: {error}"
        ) from None
    weights = run / WEIGHTS
    if not weights.is_file():
        checkpoint = latest_checkpoint(run)
        if checkpoint is None:  # check_run_folder found one: a run writing into it removed it
            raise RunFolderError(f"run folder {run} has no trained weights yet ({WEIGHTS})")
        weights = checkpoint / WEIGHTS
    load_weights_into(model, weights)
    model.eval()
    return config, model


def _checkpoint_epoch(run: Path) -> int:
    checkpoint = latest_checkpoint(run)
    return int(checkpoint.name.split("-")[1]) if checkpoint is not None else 0


def _check_resume(config: RunConfig, run: Path) -> int | None:
    """Check a resumed run's config against its saved one; the saved epochs if extended.

    Every option but ``epochs`` must be the saved one; ``epochs`` may grow (an
    extension), never shrink.
    """
    file = run / "config.toml"
    if not file.is_file():
        raise DataError(f"{run} is not a contrastkit run folder (no config.toml)")
    saved = RunConfig.from_mapping(read_config_file(file), where=str(file))
    if config.epochs < saved.epochs:
        raise ConfigError(
            f"epochs {config.epochs} is fewer than the {saved.epochs} of run {run}; "
            "a resumed run can be extended, not shortened"
        )
    changed = [
        f.name
        for f in dataclasses.fields(RunConfig)
        if f.name != "epochs" and getattr(config, f.name) != getattr(saved, f.name)
    ]
    if changed:
        raise ConfigError(
            f"a resumed run keeps its saved config ({file}), but {', '.join(changed)} differ"
        )
    return saved.epochs if config.epochs > saved.epochs else None


def _check_model_json(run: Path, spec: dict[str, Any]) -> None:
    """Write the ``model.json`` a kill left unwritten, or check it against ``spec``.

    ``spec`` is the one the run's saved config and its data give now: a different one
    means the data changed since the run started (another input size, another range).
    """
    path = run / MODEL_JSON
    if not path.exists():
        write_text_atomic(path, json.dumps(spec, indent=2) + "\n")
        return
    saved = read_model_json(run)
    if saved != spec:
        differ = sorted(k for k in {*saved, *spec} if saved.get(k) != spec.get(k))
        raise RunFolderError(
            f"{path} does not match the network the run's config and data give now "
            f"({', '.join(differ)} differ): did the data change? train a new run on it"
        )


def _environment(device: torch.device) -> Environment:
    import datetime
    import platform

    from contrastkit import __version__

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name, device_name = f"cuda:{index}", torch.cuda.get_device_name(index)
    else:
        name, device_name = str(device), platform.machine()
    return Environment(
        contrastkit=__version__,
        torch=str(torch.__version__),
        python=platform.python_version(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device=name,
        device_name=device_name,
    )


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass
class _Folder:
    """The run folder of a run under way, as far as :func:`train_run` got with it."""

    path: Path | None = None  # set once it exists (new) or has been checked (resumed)
    new: bool = False
    training: bool = False  # the trainer has started


def train_run(
    config: RunConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    stem: str = "run",
    progress: bool | None = None,
    log: Callable[[str], Any] = print,
) -> RunResult:
    """Train, evaluate and report one run into ``run_dir``; returns its result.

    A new run needs ``run_dir`` not to exist (it is never overwritten); ``run_dir=None``
    takes the first free ``runs/STEM-N`` of the current folder (``stem``; two runs
    started together get two folders). The folder is made, with its ``config.toml``,
    once the data is read and checked, so a run stopped at any later moment can be
    resumed (from epoch 0 before its first checkpoint); a run that fails before training
    starts removes it again.

    ``resume=True`` continues the run in ``run_dir`` from its last checkpoint, once the
    folder is checked (:func:`~contrastkit.app.rundir.check_run_folder`) and what killed
    writers left in it is removed. ``config`` must then be the run's saved config, with
    as many ``epochs`` or more (more extends the run; see the module's documentation for
    what that does to the schedule).

    An error raised once the folder holds a run that can be continued carries the note
    ``continue with --resume RUN_DIR`` (``error.__notes__``).

    ``log`` is called with each line of progress (notes, epochs); ``progress`` shows or
    hides the progress bars (``None``: when the terminal shows them).

    Raises:
        RunFolderError: ``run_dir`` exists (a new run), or cannot be resumed.
        WriteError: a file of the run cannot be written (a full disk); it names the file.
    """
    folder = _Folder()
    try:
        return _train_run(
            config, run_dir, folder, resume=resume, stem=stem, progress=progress, log=log
        )
    except BaseException as error:
        if folder.path is None:
            raise
        if folder.new and not folder.training and isinstance(error, Exception):
            if discard_untrained_run_folder(folder.path):
                raise
        note = f"continue with --resume {folder.path}"
        error.__notes__ = [*getattr(error, "__notes__", []), note]  # add_note, on 3.10 too
        raise


def _train_run(
    config: RunConfig,
    run_dir: str | Path | None,
    folder: _Folder,
    *,
    resume: bool,
    stem: str,
    progress: bool | None,
    log: Callable[[str], Any],
) -> RunResult:
    from contrastkit.app import report

    started = time.perf_counter()
    if run_dir is None and resume:
        raise ValueError("resume=True needs the run_dir of the run to continue")
    run = Path(run_dir) if run_dir is not None else Path()  # the new folder, once made
    config.checked()
    if resume:
        check_run_folder(run, for_resume=True)
        remove_stale_temporaries(run)
    _check_tensorboard(config)
    extended_from = _check_resume(config, run) if resume else None
    data = read_data(config)
    if not resume:
        if config.data != "digits":  # so that evaluate, embed and --resume work from anywhere
            config.data = str(Path(config.data).resolve())
        if not config.hidden:
            config.hidden = list(DEFAULT_HIDDEN[data.kind])
    if isinstance(data, LabelledData) and len(data.class_names) < 2:
        raise DataError(f"{data.source} has fewer than 2 classes")
    train, val, test, anomalies = run_splits(config, data)
    device = resolve_device(config.device)
    if not resume:
        config.device = str(device)  # the device used, never "auto"
    torch.manual_seed(config.seed)
    spec = model_spec(config, data, train)
    train, val, test = (scale_split(spec, part) for part in (train, val, test))
    anomalies = scale_split(spec, anomalies)
    model = build_model(spec, standardize(inputs_of(train)))
    contrastive, train_loader, val_loader, notes = loss_and_loaders(config, train, val)
    objective = build_objective(config, contrastive)
    # every check of the trainer's options, before anything is written
    trainer = _trainer(
        config, model, objective, (train_loader, val_loader), val, run, device, progress
    )
    notes += _unmeasured_notes(val, test)
    spec_json = json.dumps(spec, indent=2) + "\n"
    if not resume:  # config.toml first: from now on the run can be resumed
        if run_dir is not None:
            run = create_run_folder(run_dir, config.to_toml())
        else:
            run = take_default_run_folder(Path("runs"), stem, config.to_toml())
        folder.path, folder.new = run, True
        trainer.run_dir = run  # a default name is taken only now
        write_text_atomic(run / MODEL_JSON, spec_json)
    else:
        _check_model_json(run, json.loads(spec_json))
        folder.path = run
        checkpoint = latest_checkpoint(run)
        if checkpoint is not None:  # a damaged or foreign checkpoint: one line, not a traceback
            load_weights_into(model, checkpoint / WEIGHTS, "the checkpoint weights")
    if extended_from is not None:
        write_text_atomic(run / CONFIG, config.to_toml())
        notes.append(
            f"extended from {extended_from} to {config.epochs} epochs: the one-cycle "
            f"learning-rate schedule was rebuilt over {config.epochs} epochs and continued "
            "from the step reached, so the weights are not those of a run trained for "
            f"{config.epochs} epochs from the start"
        )
    for note in notes:
        log(f"note: {note}")
    trainer.add_callback("on_epoch_end", _announcer(config, log))
    if resume and latest_checkpoint(run) is not None:
        log(f"resuming {run} after epoch {_checkpoint_epoch(run)}")
    elif resume:
        log(f"resuming {run} from epoch 0: it was stopped before its first checkpoint")
    folder.training = True
    history = trainer.fit(resume=resume)
    train_seconds = time.perf_counter() - started

    model.cpu()
    best = _keep_best(config, trainer, model)
    if best is not None:
        notes.append(_best_note(best, config.epochs))
    save_tensors(run / WEIGHTS, model.state_dict())
    reference = embed(model, inputs_of(train))
    reference_labels = train.labels if isinstance(train, LabelledData) else None
    _save_reference(run / REFERENCE, reference, reference_labels)
    anomaly = None
    if anomalies is not None:  # held out of labelled data only
        anomaly = _evaluate_anomalies(
            model,
            config,
            reference,
            reference_labels,
            cast(LabelledData, val),
            cast(LabelledData, test),
            anomalies,
        )
    result = RunResult(
        run_dir=run,
        config=config,
        evaluation=evaluate_run(model, config, val, test),
        terms=loss_terms(config),
        history=history,
        data=DataSummary(
            source=data.source,
            train=len(train),
            validation=len(val),
            test=len(test),
            classes=len(data.class_names) if isinstance(data, LabelledData) else None,
        ),
        environment=_environment(device),
        anomaly=anomaly,
        test_labels=test.labels if isinstance(test, LabelledData) else None,
        class_names=list(test.class_names) if isinstance(test, LabelledData) else [],
        notes=notes,
        extended_from=extended_from,
        best=best,
    )
    result.figures = _figures(result)
    result.seconds = {"training": train_seconds, "total": time.perf_counter() - started}
    write_text_atomic(run / "metrics.json", result.to_json())
    with naming_write_errors(run / "report.html"):
        report.write_report(run / "report.html", result)
    return result


def _unmeasured_notes(val: Split, test: Split) -> list[str]:
    """What small held-out splits cannot measure, said before training."""
    notes = []
    for name, part in (("validation", val), ("test", test)):
        why = _no_pairs(part)
        if why is not None:
            notes.append(
                f"the {name} split has {len(part)} sample{'s' if len(part) != 1 else ''} and "
                f"{why}: verification on it is not measurable"
            )
    return notes


def _history_values(config: RunConfig, val_loader: Any, val: Split) -> dict[str, str | None]:
    """The values each epoch of the history will hold → ``None``, or why one is missing.

    The values a ``monitor`` can watch: ``train_<term>`` and, with validation batches,
    ``val_<term>`` for each loss term (``loss`` the total), then the validation metrics
    of :func:`_evaluator`.
    """
    terms = list(dict.fromkeys([*loss_terms(config), "loss"]))
    out: dict[str, str | None] = {f"train_{t}": None for t in terms}
    for t in terms:
        out[f"val_{t}"] = None if val_loader is not None else "the validation split gives no batch"
    why = _no_pairs(val)
    out["val_roc_auc"] = None if why is None else f"the validation split: {why}"
    out["val_precision_at_1"] = (
        None if _has_retrieval(val) else "no class has 2 samples in the validation split"
    )
    return out


def _evaluator(config: RunConfig, val: Split) -> Callable[[nn.Module], dict[str, float]]:
    """The validation metrics after each epoch: ROC-AUC and precision@1, where measurable."""
    from contrastkit.evaluation.metrics import precision_at_1, roc_auc

    val_pairs = _pairs_of(val, config.seed + 2)
    verify, retrieve = _no_pairs(val) is None, _has_retrieval(val)

    def evaluate(m: nn.Module) -> dict[str, float]:
        emb = _embed_split(m, val)
        out = {}
        if verify:
            out["val_roc_auc"] = roc_auc(*_pair_distances(emb, val, val_pairs, config))
        if retrieve:
            labels = cast(LabelledData, val).labels
            out["val_precision_at_1"] = precision_at_1(emb, labels, distance=config.distance_name)
        return out

    return evaluate


def _check_tensorboard(config: RunConfig) -> None:
    import importlib.util

    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "tensorboard needs the tensorboard package, which is not installed: "
            "pip install tensorboard (or drop --tensorboard)"
        )


def _trainer(
    config: RunConfig,
    model: nn.Module,
    objective: Any,
    loaders: tuple[Any, Any],
    val: Split,
    run: Path,
    device: torch.device,
    progress: bool | None,
) -> Trainer:
    """The run's trainer, its optimizer and schedule; every option checked, nothing written."""
    train_loader, val_loader = loaders
    values = _history_values(config, val_loader, val)
    if config.monitor and values.get(config.monitor, "") is not None:
        available = ", ".join(k for k, why in values.items() if why is None)
        why = values.get(config.monitor)
        raise ConfigError(
            f"monitor {config.monitor!r} is not a value of this run's history"
            + (f" ({why})" if why else "")
            + f"; it has {available}"
        )
    optimizer, scheduler = optimizer_and_schedule(config, model, len(train_loader))
    try:
        return Trainer(
            model,
            objective,
            optimizer,
            train_loader,
            epochs=config.epochs,
            val_loader=val_loader,
            evaluate=_evaluator(config, val),
            scheduler=scheduler,
            run_dir=run,
            seed=config.seed,
            device=device,
            progress=progress,
            accumulate=config.accumulate,
            precision=config.precision,
            monitor=config.monitor or None,
            mode=config.mode or "min",
            patience=config.patience or None,
            tensorboard=config.tensorboard,
        )
    except (ValueError, TypeError, ImportError) as error:  # an option this device cannot take
        raise ConfigError(str(error)) from None


def _keep_best(config: RunConfig, trainer: Trainer, model: nn.Module) -> BestEpoch | None:
    """With a ``monitor``, load the best epoch's weights into ``model``; what was kept."""
    if not config.monitor:
        return None
    best = best_checkpoint(trainer.run_dir) if trainer.run_dir is not None else None
    epoch = trainer.best_epoch
    if epoch is not None and best is not None:
        load_weights(model, best / "model.safetensors")
    else:
        epoch = None
    return BestEpoch(
        monitor=config.monitor,
        mode=config.mode,
        epoch=epoch,
        value=trainer.best_value if epoch is not None else None,
        epochs_trained=len(trainer.history),
        stopped_early=trainer.stopped_early,
        patience=config.patience,
    )


def _best_note(best: BestEpoch, epochs: int) -> str:
    """The report's note on the weights a monitored run kept."""
    from contrastkit.app.report import history_name

    trained = f"{best.epochs_trained} of {epochs} epochs"
    if best.stopped_early:
        trained += f" (stopped early: {best.patience} epochs in a row without improvement)"
    if best.epoch is None:
        return (
            f"no epoch had a finite {history_name(best.monitor)} ({best.monitor}); the final "
            f"weights and the test metrics are those of the last epoch; trained {trained}"
        )
    return (
        f"the final weights (model.safetensors) and every test metric are those of epoch "
        f"{best.epoch}, the best by {history_name(best.monitor)} ({best.monitor}, "
        f"{best.mode} {best.value:.4g}), kept in checkpoints/best; trained {trained}"
    )


def _announcer(config: RunConfig, log: Callable[[str], Any]) -> Callable[[Trainer], None]:
    """The epoch line: each loss (and its terms), then the validation metrics, in words."""
    from contrastkit.app.report import metric_name

    terms = [t for t in loss_terms(config) if t != "loss"] if config.objective == "combined" else []

    def announce(t: Trainer) -> None:
        r = t.history[-1]
        parts = []
        for part, word in (("train", "training"), ("val", "validation")):
            if f"{part}_loss" in r:
                each = ", ".join(f"{k} {r[f'{part}_{k}']:.4f}" for k in terms)
                parts.append(
                    f"{word} loss {r[f'{part}_loss']:.4f}" + (f" ({each})" if each else "")
                )
        parts += [
            f"validation {metric_name(k)} {r[f'val_{k}']:.4f}"
            for k in ("roc_auc", "precision_at_1")
            if f"val_{k}" in r
        ]
        log(f"epoch {r['epoch']:>3}/{config.epochs}: {', '.join(parts)}")

    return announce


# ----------------------------------------------------------------------------- figures

_VAL_METRICS = ("val_roc_auc", "val_precision_at_1")


def _history_keys(result: RunResult) -> list[str] | None:
    """The curves of the history figure: each loss term (and the total, if several)."""
    terms = list(result.terms)
    if terms == ["loss"]:
        return None
    if len(terms) > 1:
        terms.insert(0, "loss")
    keys = [f"{part}_{t}" for t in terms for part in ("train", "val")]
    return [k for k in keys if result.history and k in result.history[0]]


def _figures(result: RunResult) -> dict[str, Path]:
    """Draw every figure of a run into its ``figures/`` folder; name → PNG file."""
    from contrastkit import plots
    from contrastkit.app.report import history_name

    config, evaluation = result.config, result.evaluation
    folder = result.run_dir / "figures"
    with naming_write_errors(folder):
        folder.mkdir(exist_ok=True)
    drawn: dict[str, Any] = {}
    if config.loss == "contrastive" and config.objective != "reconstruction":
        drawn["loss_curve"] = plots.plot_loss_curve(margin=config.margin)[0]
    if result.test_labels is not None and len(result.test_labels) >= 2:
        drawn["embedding"] = plots.plot_embedding(
            evaluation.test_embeddings,
            result.test_labels,
            class_names=result.class_names,
            seed=config.seed,
        )[0]
    if evaluation.test_same.numel():  # not when the test split gives no pair of each kind
        drawn["roc"] = plots.plot_roc(
            evaluation.test_distances,
            evaluation.test_same,
            mark_fars=evaluation.measured_fars(),
            far_axis="log",
        )[0]
        drawn["distances"] = plots.plot_distance_histograms(
            evaluation.test_distances, evaluation.test_same, threshold=result.test["threshold"]
        )[0]
    history = result.history
    keys = _history_keys(result)
    every = dict.fromkeys(k for record in history for k in record)
    shown = keys if keys is not None else [k for k in every if "loss" in k]
    drawn["history"] = plots.plot_history(
        history, keys=shown, labels={k: history_name(k) for k in shown}
    )[0]
    monitored = [k for k in _VAL_METRICS if k in every]
    if monitored:
        drawn["val_metrics"] = plots.plot_history(
            history,
            keys=monitored,
            labels={k: history_name(k) for k in monitored},
            title="validation metrics by epoch",
        )[0]
    if result.anomaly is not None:
        drawn.update(_anomaly_figures(plots, result.anomaly))
    saved = {}
    for name, fig in drawn.items():
        with naming_write_errors(folder / f"{name}.png"):
            saved[name] = plots.save_figure(fig, folder / f"{name}.png", overwrite=True)
    return saved


def _anomaly_figures(plots: Any, anomaly: AnomalyResult) -> dict[str, Any]:
    """Score histograms (normal vs anomalous test samples) and the ROC curves, drawn."""
    drawn: dict[str, Any] = {}
    for method, values in anomaly.values.items():
        drawn[f"anomaly_{method}"] = plots.plot_score_histograms(
            values,
            anomaly.is_anomaly,
            title=f"{SCORE_NAMES[method]} (class {anomaly.class_name} is the anomaly)",
            threshold=anomaly.scores[method]["threshold"],
        )[0]
    drawn["anomaly_roc"] = plots.plot_anomaly_roc(anomaly.values, anomaly.is_anomaly)[0]
    return drawn
