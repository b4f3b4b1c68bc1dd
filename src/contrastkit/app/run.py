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

**Several processes.** Under ``torchrun`` (a :mod:`torch.distributed` process group of
more than one process, which ``contrastkit train`` joins; see
:mod:`contrastkit.app.launch`), every process runs :func:`train_run` with the same
config: each reads the data and builds the run alike and takes its part of every global
batch of ``batch_size``, an error found by any process stops every one before anything
is written, rank 0 alone creates and writes the run folder, and after training rank 0
alone evaluates and writes the report (the others return ``None`` at once). A model
without batch normalization (``batch_norm = false``) ends with the weights one process
would reach on the same global batches, within float rounding; with it, see the notes
the run writes (on CUDA the layers are synchronized; on the CPU each process normalizes
its own part).

The parts a run is built from (data, network, loss, schedule) are in
:mod:`contrastkit.app.build`, its evaluation in :mod:`contrastkit.app.evaluate`, its
figures in :mod:`contrastkit.app.figures`, the run folder's files in
:mod:`contrastkit.app.rundir` and the result type in :mod:`contrastkit.app.result`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from contrastkit import distributed
from contrastkit.app.build import (
    FEATURE_DROP,
    FEATURE_NOISE,
    ONE_CLASS_HINT,
    Split,
    batch_augment,
    build_model,
    build_objective,
    init_encoder,
    inputs_of,
    is_lazy,
    learns_without_labels,
    loss_and_loaders,
    loss_terms,
    model_spec,
    open_set_note,
    open_set_split,
    optimizer_and_schedule,
    pair_split_summary,
    projected,
    read_data,
    resolve_augment,
    resolve_device,
    resolve_encoder,
    resolve_pair_split,
    resolve_projection,
    run_splits,
    scale_inputs,
    scale_split,
    standardize,
    unlabelled,
)
from contrastkit.app.config import (
    ANOMALY_SCORES,
    EXECUTION_OPTIONS,
    LOSSES,
    OBJECTIVES,
    ConfigError,
    RunConfig,
    lee_source,
    read_config_file,
)
from contrastkit.app.evaluate import (
    SCORE_NAMES,
    anomaly_scores,
    available_scores,
    embed_split,
    evaluate_anomalies,
    evaluate_probes,
    evaluate_raw,
    evaluate_run,
    has_retrieval,
    in_memory,
    neighbour_examples,
    no_pairs,
    pair_distances,
    pairs_of,
)
from contrastkit.app.figures import figures
from contrastkit.app.launch import agreed, on_rank0, process_device
from contrastkit.app.result import (
    BestEpoch,
    DataSummary,
    Environment,
    Evaluation,
    NeighbourExamples,
    Probes,
    RunResult,
    pair_split_note,
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
    load_state,
    load_weights_into,
    naming_write_errors,
    read_model_json,
    read_reference,
    remove_stale_temporaries,
    save_tensors,
    take_default_run_folder,
    write_text_atomic,
)
from contrastkit.app.text import (
    TEXT_MODEL,
    TextModel,
    build_text_model,
    embed_texts,
    evaluate_text,
    read_text_run_data,
    save_text_folder,
    text_evaluator,
    text_history_values,
    text_loss_and_loaders,
    text_spec,
    text_splits,
)
from contrastkit.data import ClassBalancedBatchSampler
from contrastkit.data.readers import DataError, LabelledData, PairData
from contrastkit.data.text import LabelledTexts
from contrastkit.models import unprojected
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
        # a checkpoint holds what was trained: the network through its head, if any
        load_weights_into(projected(config, model), weights)
    else:
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
        if f.name not in ("epochs", *EXECUTION_OPTIONS)
        and getattr(config, f.name) != getattr(saved, f.name)
    ]
    if changed:
        raise ConfigError(
            f"a resumed run keeps its saved config ({file}), but {', '.join(changed)} differ"
        )
    if config.epochs > saved.epochs and saved.monitor and saved.patience:
        _check_not_stopped_early(run, saved)
    return saved.epochs if config.epochs > saved.epochs else None


def _check_not_stopped_early(run: Path, saved: RunConfig) -> None:
    """An early-stopped run cannot be extended: its patience would stop it again at once."""
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        return
    state = load_state(checkpoint / "state.pt")
    waited = int((state.get("best") or {}).get("epochs_without_improvement", 0))
    if waited >= saved.patience:
        raise ConfigError(
            f"run {run} stopped early after epoch {state.get('epoch')} ({saved.monitor} did "
            f"not improve for {saved.patience} epochs): extending it would train nothing; "
            "start a new run with more epochs or a larger --patience"
        )


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


def _environment(device: torch.device, processes: int = 1) -> Environment:
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
        processes=processes,
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
) -> RunResult | None:
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

    With several processes (see the module's documentation) every process calls it;
    rank 0 returns the result, the others ``None`` once training is over, and only
    rank 0 logs, shows progress and writes.

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
        if (
            folder.new
            and not folder.training
            and isinstance(error, Exception)
            and distributed.rank() == 0  # the others never write, nor remove
        ):
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
) -> RunResult | None:

    started = time.perf_counter()
    processes, main = distributed.world_size(), distributed.rank() == 0
    if not main:
        log = _silent
    if run_dir is None and resume:
        raise ValueError("resume=True needs the run_dir of the run to continue")
    run = Path(run_dir) if run_dir is not None else Path()  # the new folder, once made
    # every process checks and builds the run alike; an error of any stops every one,
    # before anything is written
    with agreed():
        config.checked()
        if resume:
            check_run_folder(run, for_resume=True)
        _check_tensorboard(config)
        extended_from = _check_resume(config, run) if resume else None
        text: TextModel | None = None
        split: dict[str, Any] | None = None  # an open-set split's classes, a pair file's split
        if config.text_kind:
            data, train, val, test, text, device = _text_parts(config, run, resume, processes)
            anomalies = read_splits = None
            spec = text_spec(config, text)
            model = text.encoder
            contrastive, train_loader, val_loader, notes = text_loss_and_loaders(
                config, text, train, val
            )
            notes[:0] = _text_notes(config, text, train, test)
            config.augment = resolve_augment(config, "text", resume=resume)
            config.projection = resolve_projection(config, "text", resume=resume)
        else:
            data = read_data(config)
            config.augment = resolve_augment(config, data.kind, resume=resume)
            config.pair_split = resolve_pair_split(config, data, resume=resume)
            config.encoder = resolve_encoder(config, data.kind, resume=resume)
            config.projection = resolve_projection(config, data.kind, resume=resume)
            if not resume:
                if config.data != "digits":  # so that evaluate, embed and --resume work anywhere
                    config.data = str(Path(config.data).resolve())
                if config.init_weights:  # the file the run started from, wherever it resumes
                    config.init_weights = str(Path(config.init_weights).resolve())
            if (
                isinstance(data, LabelledData)
                and 0 < len(data.class_names) < 2
                and not learns_without_labels(config)
            ):
                raise DataError(f"{data.source} has fewer than 2 classes; {ONE_CLASS_HINT}")
            train, val, test, anomalies = run_splits(config, data)
            read_splits = (train, test, anomalies)  # as read: the anomaly baseline's inputs
            device = (
                process_device(config.device) if processes > 1 else resolve_device(config.device)
            )
            if not resume:
                config.device = str(device)  # the device used (rank 0's), never "auto"
            torch.manual_seed(config.seed)
            spec = model_spec(config, data, train, feature_scaling=_feature_scaling(run, resume))
            train, val, test = (scale_split(spec, part) for part in (train, val, test))
            anomalies = scale_split(spec, anomalies)
            workers = config.workers if is_lazy(train) else 0
            model = build_model(spec, standardize(inputs_of(train), workers=workers))
            if config.init_weights:
                spec["init_weights"] = _init_weights(config, model, run, resume)
            contrastive, train_loader, val_loader, notes = loss_and_loaders(config, train, val)
            if config.init_weights:
                notes.insert(0, _init_weights_note(spec["init_weights"], resume))
            if config.split_by == "classes":
                split = open_set_split(train, val, test)
                notes.insert(0, open_set_note(split))
            elif isinstance(data, PairData):
                split = pair_split_summary(
                    config, data, cast(PairData, train), cast(PairData, val), cast(PairData, test)
                )
                notes.insert(0, pair_split_note(split))
        trained = projected(config, model)  # model itself, or model through a head
        if trained is not model:
            head = cast(Any, trained).head
            notes.append(
                f"trained through a projection head (SimCLR's: {head[0].in_features} → "
                f"{head[0].out_features} → {head[-1].out_features}"
                + (", batch-normalized" if config.batch_norm else "")
                + "), dropped after training: the embedding evaluated and saved is the one "
                "before it"
            )
        transform = (
            None
            if text is not None
            else batch_augment(
                config,
                int(spec.get("image_size", 0)),
                inputs_of(train) if config.augment == "noise" else None,
            )
        )
        if transform is not None and config.augment == "noise":
            notes.append(
                f"training rows made noisy on the fly (augment noise: Gaussian noise of "
                f"{FEATURE_NOISE:g} standard deviations of each feature, {FEATURE_DROP:.0%} of "
                "the features set to their training mean), each step drawing from a generator "
                "seeded by (seed, epoch, step); validation and evaluation see the rows as they are"
            )
        elif transform is not None:
            notes.append(
                f"training batches augmented on the fly ({config.augment}: "
                + {
                    "simclr": "crops, flips, colour jitter, grayscale, blur",
                    "light": "crops of half the image or more, flips",
                    "strong": "crops of 20% of the image or more, colour jitter, grayscale, "
                    "no flips",
                    "crop": "crops of 80% of the image or more, no flips",
                }[config.augment]
                + "), each step drawing from a generator seeded by (seed, epoch, step); "
                "validation and evaluation see the images as they are"
            )
        objective = build_objective(config, contrastive)
        # every check of the trainer's options, before anything is written
        trainer = _trainer(
            config,
            trained,
            objective,
            (train_loader, val_loader),
            val,
            run,
            device,
            progress,
            text=text,
            transform=transform,
        )
        if text is None and unlabelled(data) and data.kind == "vectors":
            notes.append(
                "the rows have no labels (no label column): trained without any, and no "
                "retrieval, verification or k-NN accuracy can be measured; score new rows "
                "with contrastkit score"
            )
        elif text is None and unlabelled(data):
            notes.append(
                "the images have no labels (a flat folder): NT-Xent trained without any, and "
                "no retrieval, verification or k-NN accuracy can be measured; give class "
                "subfolders for them"
            )
        elif text is None:
            notes += _unmeasured_notes(val, test)
        if config.loss == "ntxent" and config.monitor in ("val_roc_auc", "val_precision_at_1"):
            notes.append(
                f"NT-Xent trained without labels, but the epoch kept is chosen by "
                f"{config.monitor}, which the validation split's labels measure"
            )
        notes += _process_notes(config, trained, device, processes)
        drawn = drawn_batch(train_loader, config.batch_size)
        if config.micro_batch:
            combined = config.objective == "combined"
            decoder = ", the decoder reconstructing them" if combined else ""
            replayed = "dropout and input noise" if combined else "dropout"
            notes.append(
                f"gradient caching: the encoder embedded {config.micro_batch} rows at a "
                f"time{decoder} (without a graph, then again with one, {replayed} "
                f"replayed), and the {config.loss} loss compared every row of each batch "
                f"of {drawn} with every other"
            )
        if config.memory_size:
            notes.append(
                f"a memory of the last {config.memory_size:,} training embeddings was "
                "compared with every anchor, from the first step (it filled as training "
                "went); the training loss includes it, the validation loss is that of each "
                "batch alone"
            )
    spec_json = json.dumps(spec, indent=2) + "\n"

    def open_folder() -> Path:  # rank 0: the run folder, made or checked
        nonlocal run
        if not resume:  # config.toml first: from now on the run can be resumed
            if run_dir is not None:
                run = create_run_folder(run_dir, config.to_toml())
            else:
                run = take_default_run_folder(Path("runs"), stem, config.to_toml())
            folder.path, folder.new = run, True
            write_text_atomic(run / MODEL_JSON, spec_json)
        else:
            remove_stale_temporaries(run)
            _check_model_json(run, json.loads(spec_json))
            folder.path = run
        if text is not None and not (run / TEXT_MODEL / "config.json").is_file():
            with naming_write_errors(run / TEXT_MODEL):  # the encoder and tokenizer, first
                save_text_folder(run, text)
        if resume:
            checkpoint = latest_checkpoint(run)
            if checkpoint is not None:  # damaged or foreign: one line, not a traceback
                load_weights_into(trained, checkpoint / WEIGHTS, "the checkpoint weights")
        if extended_from is not None:
            write_text_atomic(run / CONFIG, config.to_toml())
        return run

    # rank 0 makes the folder; the others learn its path (or rank 0's error)
    run = on_rank0(open_folder)
    folder.path, folder.new = run, not resume
    trainer.run_dir = run  # a default name is taken only now
    if extended_from is not None:
        notes.append(
            f"extended from {extended_from} to {config.epochs} epochs: the one-cycle "
            f"learning-rate schedule was rebuilt over {config.epochs} epochs and continued "
            "from the step reached, so the weights are not those of a run trained for "
            f"{config.epochs} epochs from the start"
        )
    for note in notes:
        log(f"note: {note}")
    trainer.add_callback("on_epoch_end", _announcer(config, log))
    if resume and main and latest_checkpoint(run) is not None:
        log(f"resuming {run} after epoch {_checkpoint_epoch(run)}")
    elif resume:
        log(f"resuming {run} from epoch 0: it was stopped before its first checkpoint")
    folder.training = True
    history = trainer.fit(resume=resume)
    train_seconds = time.perf_counter() - started
    if not main:  # rank 0 alone evaluates and writes the rest
        return None

    trained.cpu()  # model, and its head if it has one
    best = _keep_best(config, trainer, trained)
    if best is not None:
        notes.append(_best_note(best, config.epochs))
    save_tensors(run / WEIGHTS, model.state_dict())
    if text is not None:
        with naming_write_errors(run / TEXT_MODEL):  # the trained encoder, on its own
            save_text_folder(run, text)
        result = _text_result(
            config, run, text, history, (data, train, val, test), notes, extended_from, best
        )
        result.environment = _environment(device, processes)
        result.train_batch = drawn
        result.raw_skipped = "texts have no raw input vector to compare (tokens, not features)"
        return _finish(result, run, started, train_seconds)
    reference = embed(model, inputs_of(train))
    reference_labels = train.labels if isinstance(train, LabelledData) else None
    if unlabelled(train):
        reference_labels = None
    _save_reference(run / REFERENCE, reference, reference_labels)
    anomaly = None
    if anomalies is not None:  # held out of labelled data only
        anomaly = evaluate_anomalies(
            model,
            config,
            reference,
            reference_labels,
            cast(LabelledData, val),
            cast(LabelledData, test),
            anomalies,
            raw=_raw_anomaly_data(read_splits),
        )
    raw, raw_skipped = evaluate_raw(config, train, val, test)  # the baseline: no training
    evaluation, probes, neighbours = _evaluate_with_probes(
        model, config, (train, val, test), reference
    )
    result = RunResult(
        run_dir=run,
        config=config,
        evaluation=evaluation,
        raw=raw,
        raw_skipped=raw_skipped,
        raw_kind=data.kind,
        terms=loss_terms(config),
        history=history,
        data=DataSummary(
            source=data.source,
            train=len(train),
            validation=len(val),
            test=len(test),
            classes=len(data.class_names) if isinstance(data, LabelledData) else None,
            split=split,
        ),
        environment=_environment(device, processes),
        anomaly=anomaly,
        test_labels=test.labels
        if isinstance(test, LabelledData) and not unlabelled(test)
        else None,
        class_names=list(test.class_names) if isinstance(test, LabelledData) else [],
        notes=notes,
        extended_from=extended_from,
        best=best,
        train_batch=drawn,
        probes=probes,
        neighbours=neighbours,
        init_weights=spec.get("init_weights"),
    )
    return _finish(result, run, started, train_seconds)


def _init_weights(config: RunConfig, model: nn.Module, run: Path, resume: bool) -> dict[str, Any]:
    """Start the encoder from ``config.init_weights``; the record ``model.json`` keeps.

    A resumed run with a checkpoint takes its weights from there: the file is not read
    again (it may have moved), its record is the run's own. One stopped before its first
    checkpoint starts again from the file, which must be the one it started from.
    """
    saved = (
        read_model_json(run).get("init_weights")
        if resume and (run / MODEL_JSON).is_file()
        else None
    )
    if resume and saved is not None and latest_checkpoint(run) is not None:
        return cast(dict[str, Any], saved)
    record = init_encoder(model, config.init_weights)
    if saved is not None and saved.get("sha256") != record["sha256"]:
        raise ConfigError(
            f"init_weights {record['path']} is not the file run {run} started from (its "
            f"SHA-256 was {saved.get('sha256')}, now {record['sha256']}); start a new run"
        )
    return record


def _init_weights_note(record: dict[str, Any], resume: bool) -> str:
    """The note of a run whose encoder started from a weights file."""
    statistics = "the file's" if record.get("standardize") else "the training split's"
    return (
        f"the encoder started from the weights of {record['path']} (SHA-256 "
        f"{record['sha256']}; {record['tensors']} tensors, with {statistics} input "
        "statistics) instead of a random initialisation"
        + ("; resumed from its checkpoint, the file was not read again" if resume else "")
    )


def _feature_scaling(run: Path, resume: bool) -> bool:
    """Whether an autoencoder scales each feature on its own (for :func:`model_spec`).

    Yes, unless a resumed run's ``model.json`` was written before per-feature scaling:
    that run keeps its one range.
    """
    if not resume or not (run / MODEL_JSON).is_file():
        return True
    table = read_model_json(run).get("autoencoder")
    return not isinstance(table, dict) or "feature_scaling" in table


def _raw_anomaly_data(
    raw: tuple[Split, Split, LabelledData | None] | None,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """The raw training rows, normal test rows and anomalies, for the baseline."""
    if raw is None:
        return None
    train, test, anomalies = raw
    if anomalies is None:
        return None
    rows = [in_memory(x) for x in (inputs_of(train), inputs_of(test), anomalies.inputs)]
    if rows[0] is None or rows[1] is None or rows[2] is None:
        return None  # images read lazily, too many to hold: no raw baseline
    return rows[0], rows[1], rows[2]


def _evaluate_with_probes(
    model: nn.Module, config: RunConfig, splits: tuple[Split, Split, Split], reference: Tensor
) -> tuple[Evaluation, Probes, NeighbourExamples | None]:
    """The test evaluation with the k-NN and linear-probe accuracies; the neighbour figure's.

    The embedding's two accuracies join the test metrics (``knn_accuracy``,
    ``linear_probe_accuracy``); the raw inputs' are in the :class:`Probes`. Labels are
    read here, after training, and never by an NT-Xent run's training.
    """
    train, val, test = splits
    evaluation = evaluate_run(model, config, val, test)
    test_emb = evaluation.test_embeddings
    probes = evaluate_probes(config, train, test, reference, test_emb)
    if probes.embedding:
        evaluation = dataclasses.replace(evaluation, test={**evaluation.test, **probes.embedding})
    root = config.data if Path(config.data).is_dir() else None
    neighbours = neighbour_examples(train, test, reference, test_emb, seed=config.seed, root=root)
    return evaluation, probes, neighbours


def _finish(result: RunResult, run: Path, started: float, train_seconds: float) -> RunResult:
    """Draw the figures, write ``metrics.json`` and the report; the result."""
    from contrastkit.app import report

    result.figures = figures(result)
    result.seconds = {"training": train_seconds, "total": time.perf_counter() - started}
    write_text_atomic(run / "metrics.json", result.to_json())
    with naming_write_errors(run / "report.html"):
        report.write_report(run / "report.html", result)
    return result


def drawn_batch(loader: Any, batch_size: int) -> int:
    """The rows of each training batch as its sampler draws them (global, all processes).

    ``batch_size`` unless class-balanced batches hold fewer (few classes, or small ones).
    """
    sampler = getattr(loader, "batch_sampler", None)
    if isinstance(sampler, ClassBalancedBatchSampler):
        return sampler.classes_per_batch * sampler.samples_per_class
    return batch_size


def _text_parts(
    config: RunConfig, run: Path, resume: bool, processes: int
) -> tuple[Any, Any, Any, Any, TextModel, torch.device]:
    """A text run's data, splits, encoder and device; its options resolved when new.

    A resumed run takes its encoder and tokenizer from its own ``text-model/`` (or
    builds them again, alike, when a kill came before they were written).
    """
    from contrastkit.models.text import TextModelError

    data, test_file = read_text_run_data(config)
    if not resume:  # so that evaluate, embed and --resume work anywhere
        lee = lee_source(config.data)
        if lee is None:
            config.data = str(Path(config.data).resolve())
        elif lee:
            config.data = f"lee:{Path(lee).resolve()}"
        if config.test_data:
            config.test_data = str(Path(config.test_data).resolve())
        if config.text_model and Path(config.text_model).exists():
            config.text_model = str(Path(config.text_model).resolve())
    train, val, test = text_splits(config, data, test_file)
    device = process_device(config.device) if processes > 1 else resolve_device(config.device)
    if not resume:
        config.device = str(device)
    saved = run / TEXT_MODEL if resume and (run / TEXT_MODEL / "config.json").is_file() else None
    try:
        text = build_text_model(config, train, saved)
    except TextModelError as error:
        raise ConfigError(str(error)) from None
    if not resume:
        default = RunConfig.__dataclass_fields__["embedding_dim"].default
        if config.embedding_dim not in (default, text.embedding_dim):
            raise ConfigError(
                f"embedding_dim {config.embedding_dim}: a text run's embedding is its "
                f"encoder's width, {text.embedding_dim} (text_width for an encoder trained "
                "from nothing); drop embedding_dim"
            )
        config.embedding_dim = text.embedding_dim
        config.max_length = text.max_length
        config.pooling = cast(Any, text.encoder).pooling
    return data, train, val, test, text, device


def _text_notes(config: RunConfig, text: TextModel, train: Any, test: Any) -> list[str]:
    """What a text run's encoder is and where its test rows came from."""
    encoder = cast(Any, text.encoder)
    parameters = sum(p.numel() for p in encoder.parameters())
    how = f"{text.max_length} tokens per text, {encoder.pooling} pooling of the token states"
    if text.trained_from_nothing:
        network = (
            f"a bag of words, a learned {config.text_width}-wide vector per word and no "
            "transformer layer"
            if config.text_layers == 0
            else f"a BERT of {config.text_layers} layers, width {config.text_width}, "
            f"{config.text_heads} attention heads"
        )
        notes = [
            f"the encoder was trained from nothing: a vocabulary of the "
            f"{len(text.tokenizer) - 5:,} most frequent words of the training texts only (any "
            f"other word is one [UNK] token) and {network} ({parameters:,} parameters); {how}"
        ]
    else:
        notes = [
            f"the encoder was fine-tuned from {config.text_model} ({parameters:,} parameters); "
            f"{how}"
        ]
    if config.test_data:
        notes.append(
            f"the test rows are those of {test.source}; the rows a test split of the data "
            "would have held trained"
        )
    elif lee_source(config.data) is not None:
        notes.append(
            f"the Lee corpus: trained on sentences of its background documents, those of one "
            f"document positives of each other (a validation share of each document's "
            f"sentences held out); tested on {test.source}, the cosine similarity of each "
            "pair correlated with its mean human rating"
        )
    return notes


def _text_result(
    config: RunConfig,
    run: Path,
    text: TextModel,
    history: list[dict[str, float]],
    parts: tuple[Any, Any, Any, Any],
    notes: list[str],
    extended_from: int | None,
    best: BestEpoch | None,
) -> RunResult:
    """The result of a text run: its test metrics, as the field reports them."""
    data, train, val, test = parts

    def embed_fn(texts: Any) -> Tensor:
        return embed_texts(text.encoder, text.tokenizer, text.max_length, texts)

    evaluation, note = evaluate_text(embed_fn, val, test)
    if note:
        notes.append(note)
    labelled = isinstance(test, LabelledTexts)
    own_test = config.test_data or lee_source(config.data) is not None
    source = f"{data.source}; test: {test.source}" if own_test else data.source
    return RunResult(
        run_dir=run,
        config=config,
        evaluation=evaluation,
        terms=loss_terms(config),
        history=history,
        data=DataSummary(
            source=source,
            train=len(train),
            validation=len(val),
            test=len(test),
            classes=len(data.class_names) if isinstance(data, LabelledTexts) else None,
        ),
        environment=_environment(torch.device("cpu")),
        test_labels=test.labels if labelled else None,
        class_names=list(test.class_names) if labelled else [],
        notes=notes,
        extended_from=extended_from,
        best=best,
    )


def _silent(_: str) -> None:
    """The log of the processes other than rank 0."""


def _process_notes(
    config: RunConfig, model: nn.Module, device: torch.device, processes: int
) -> list[str]:
    """What training on several processes does, for the log and the report."""
    if processes < 2:
        return []
    share = config.batch_size / processes
    notes = [
        f"trained on {processes} processes ({'NCCL' if device.type == 'cuda' else 'gloo'}), "
        f"each taking its part of every global batch of {config.batch_size} "
        f"({share:.3g} on average); rank 0 wrote the run"
    ]
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        if device.type == "cuda":
            notes.append(
                "batch normalization is synchronized across the processes (SyncBatchNorm): "
                "each layer normalizes with the statistics of the whole global batch, as "
                "one process would"
            )
        else:
            notes.append(
                f"batch normalization on {processes} CPU processes: each layer normalizes "
                "each process's part of the batch with that part's own statistics "
                "(torch's SyncBatchNorm runs on CUDA only) and the running statistics "
                "kept are rank 0's, so the model differs from one trained by one process "
                "on the same batches; train with batch_norm = false (--no-batch-norm) or "
                "on CUDA for the one-process model"
            )
    return notes


def _unmeasured_notes(val: Split, test: Split) -> list[str]:
    """What small held-out splits cannot measure, said before training."""
    notes = []
    for name, part in (("validation", val), ("test", test)):
        why = no_pairs(part)
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
    if unlabelled(val):
        out["val_roc_auc"] = out["val_precision_at_1"] = (
            "the rows have no labels" if val.kind == "vectors" else "the images have no labels"
        )
        return out
    why = no_pairs(val)
    out["val_roc_auc"] = None if why is None else f"the validation split: {why}"
    paired = isinstance(val, LabelledData) and bool((torch.bincount(val.labels) >= 2).any())
    out["val_precision_at_1"] = (
        None
        if has_retrieval(val)
        else "the validation split holds one class"
        if paired
        else "no class has 2 samples in the validation split"
    )
    return out


def _evaluator(config: RunConfig, val: Split) -> Callable[[nn.Module], dict[str, float]]:
    """The validation metrics after each epoch: ROC-AUC and precision@1, where measurable."""
    from contrastkit.evaluation.metrics import precision_at_1, roc_auc

    if unlabelled(val):
        return lambda m: {}
    val_pairs = pairs_of(val, config.seed + 2)
    verify, retrieve = no_pairs(val) is None, has_retrieval(val)

    def evaluate(m: nn.Module) -> dict[str, float]:
        emb = embed_split(unprojected(m), val)  # the embedding kept, before any head
        out = {}
        if verify:
            out["val_roc_auc"] = roc_auc(*pair_distances(emb, val, val_pairs, config))
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
    *,
    text: TextModel | None = None,
    transform: Any = None,
) -> Trainer:
    """The run's trainer, its optimizer and schedule; every option checked, nothing written."""
    train_loader, val_loader = loaders
    if text is None:
        values = _history_values(config, val_loader, val)
        evaluate = _evaluator(config, val)
    else:
        values = text_history_values(config.text_kind, cast(Any, val), val_loader)
        evaluate = text_evaluator(text, cast(Any, val))
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
            evaluate=evaluate,
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
            # several processes: synchronized BatchNorm where torch has it (CUDA); on
            # the CPU the layers stay per process, which _process_notes says
            sync_batch_norm=device.type == "cuda",
            transform=transform,
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
            for k in ("spearman", "pearson", "mrr_at_10", "roc_auc", "precision_at_1")
            if f"val_{k}" in r
        ]
        log(f"epoch {r['epoch']:>3}/{config.epochs}: {', '.join(parts)}")

    return announce
