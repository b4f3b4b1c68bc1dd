"""One training run, from data to report: what ``contrastkit train`` does, as a function.

:func:`train_run` reads the data named in a :class:`RunConfig`, splits it (stratified
train / validation / test, from the seed), trains a network with the chosen objective,
evaluates it on held-out data and writes one run folder::

    RUN_DIR/
      config.toml          the resolved configuration (reusable with --config)
      model.json           how to rebuild the network (input shape, sizes)
      model.safetensors    the final weights
      reference.safetensors  the training split's embeddings (and labels), for scoring
      checkpoints/         the last epoch's weights and optimizer state (for --resume)
      metrics.json         test and validation metrics, the per-epoch history, timings
      figures/*.png        loss curve, embedding map, ROC, distance histograms, history
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
test split.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import losses
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
from contrastkit.data import ClassBalancedBatchSampler, PairDataset
from contrastkit.data.readers import (
    DataError,
    LabelledData,
    PairData,
    load_digits,
    read_features,
    read_image_folder,
    read_pairs,
    split_indices,
)
from contrastkit.distances import paired_distance
from contrastkit.models import (
    Autoencoder,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    SiameseNetwork,
    Standardize,
)
from contrastkit.training import (
    LabelObjective,
    PairObjective,
    ReconstructionObjective,
    Trainer,
    TwoViewObjective,
    WeightedSum,
    embed,
    latest_checkpoint,
    load_weights,
    save_weights,
)

__all__ = [
    "ANOMALY_SCORES",
    "LOSSES",
    "OBJECTIVES",
    "ConfigError",
    "RunConfig",
    "anomaly_scores",
    "available_scores",
    "load_reference",
    "load_run",
    "read_data",
    "run_splits",
    "scale_inputs",
    "train_run",
]


def read_data(config: RunConfig) -> LabelledData | PairData:
    """The data a config names: the bundled digits, an image folder or a file."""
    if config.data == "digits":
        return load_digits()
    path = Path(config.data)
    if path.is_dir():
        return read_image_folder(path, image_size=config.image_size)
    if not path.exists():
        raise DataError(f"data {path} does not exist (give 'digits', a folder or a file)")
    if path.suffix.lower() == ".csv" and _is_pair_csv(path):
        return read_pairs(path, image_size=config.image_size)
    data = read_features(path, label_column=config.label_column)
    if not isinstance(data, LabelledData):  # only without a label column
        raise DataError(f"feature file {path} has no labels")
    return data


def _is_pair_csv(path: Path) -> bool:
    # errors="replace": an undecodable file is reported by the reader, which names it
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    columns = {c.strip() for c in header.split(",")}
    return {"left", "right", "label"} <= columns


# ----------------------------------------------------------------------------- the model


def model_spec(
    config: RunConfig, data: LabelledData | PairData, train: LabelledData | PairData | None = None
) -> dict[str, Any]:
    """What :func:`build_model` needs to rebuild the network, saved as ``model.json``.

    An autoencoder's spec also holds its ``noise_std``, its reconstruction loss and the
    input range of the training split ``train`` (which it then needs).
    """
    sample = data.inputs if isinstance(data, LabelledData) else data.left
    spec: dict[str, Any] = {
        "kind": data.kind,
        "embedding_dim": config.embedding_dim,
        "hidden": list(config.hidden),
    }
    if data.kind == "images":
        spec.update(channels=int(sample.shape[1]), image_size=int(sample.shape[2]))
    else:
        spec.update(in_features=int(sample.shape[1]))
    if config.objective != "contrastive":
        if train is None:
            raise ValueError("an autoencoder's spec needs the training split for its input range")
        x = _inputs_of(train)
        spec["autoencoder"] = {
            "noise_std": config.noise_std,
            "reconstruction_loss": config.reconstruction_loss,
            "input_range": [float(x.min()), float(x.max())],
        }
    return spec


def build_model(spec: Mapping[str, Any], standardize: Standardize | None = None) -> nn.Module:
    """The network of a model spec: a :class:`SiameseNetwork`, or an :class:`Autoencoder`.

    Without ``standardize`` a neutral one is made (the weights loaded next replace it).
    """
    hidden = [int(h) for h in spec["hidden"]]
    dim = int(spec["embedding_dim"])
    if spec["kind"] == "images":
        channels = int(spec["channels"])
        shape = (channels, 1, 1)
        std = standardize or Standardize(torch.zeros(shape), torch.ones(shape))
        encoder: nn.Module = ConvEncoder(
            channels, embedding_dim=dim, channels=hidden, standardize=std
        )
    else:
        n = int(spec["in_features"])
        std = standardize or Standardize(torch.zeros(n), torch.ones(n))
        encoder = MLPEncoder(n, embedding_dim=dim, hidden=hidden, batch_norm=True, standardize=std)
    if "autoencoder" not in spec:
        return SiameseNetwork(encoder)
    mirrored = hidden[::-1]
    if spec["kind"] == "images":
        decoder: nn.Module = ConvDecoder(
            dim, int(spec["channels"]), int(spec["image_size"]), channels=mirrored
        )
    else:
        decoder = MLPDecoder(dim, int(spec["in_features"]), hidden=mirrored, batch_norm=True)
    return Autoencoder(encoder, decoder, noise_std=float(spec["autoencoder"]["noise_std"]))


def _inputs_of(data: LabelledData | PairData) -> Tensor:
    """Every input of a split: its samples, or the left then the right of each pair."""
    if isinstance(data, PairData):
        return torch.cat([data.left, data.right])
    return data.inputs


def scale_inputs(spec: Mapping[str, Any], x: Tensor) -> Tensor:
    """Inputs as the run's network takes them: an autoencoder's are scaled to [0, 1].

    The scale is the training split's range (``input_range`` in the spec); with
    ``reconstruction_loss="bce"`` values outside it are clipped to [0, 1], since binary
    cross-entropy needs targets there. A siamese network's inputs are unchanged.
    """
    if "autoencoder" not in spec:
        return x
    low, high = (float(v) for v in spec["autoencoder"]["input_range"])
    x = (x - low) / (high - low if high > low else 1.0)
    if spec["autoencoder"]["reconstruction_loss"] == "bce":
        x = x.clamp(0.0, 1.0)
    return x


def _scaled(spec: Mapping[str, Any], data: Any) -> Any:
    """A split (labelled or pairs, or ``None``) with its inputs scaled for the network."""
    if data is None or "autoencoder" not in spec:
        return data
    if isinstance(data, PairData):
        return dataclasses.replace(
            data, left=scale_inputs(spec, data.left), right=scale_inputs(spec, data.right)
        )
    return dataclasses.replace(data, inputs=scale_inputs(spec, data.inputs))


def _standardize(x: Tensor) -> Standardize:
    stats = Standardize.from_data(x)
    if x.dim() == 2:
        # Per feature, but a feature that hardly varies in training (a border pixel that
        # is almost always 0) is scaled like an average one instead of being blown up.
        stats = Standardize(stats.mean, stats.std.clamp_min(float(stats.std.mean())))
    return stats


# ----------------------------------------------------------------------------- training


def _loss_and_loaders(
    config: RunConfig, train: LabelledData | PairData, val: LabelledData | PairData
) -> tuple[Any, DataLoader[Any], DataLoader[Any], list[str]]:
    notes: list[str] = []
    batches = config.steps_per_epoch
    if isinstance(train, PairData):
        val = cast(PairData, val)
        if config.loss != "contrastive":
            raise ConfigError(
                f"a pair file trains with loss 'contrastive' only, got loss {config.loss!r}"
            )
        loss = losses.ContrastiveLoss(margin=config.margin, distance=config.distance)  # type: ignore[arg-type]
        pairs = TensorDataset(train.left, train.right, train.same)
        # No generator of its own: the shuffle draws from the global RNG, which the
        # Trainer seeds at the start of every epoch, so a resumed run sees the same order.
        return (
            PairObjective(loss),
            DataLoader(pairs, batch_size=config.batch_size, shuffle=True),
            DataLoader(TensorDataset(val.left, val.right, val.same), batch_size=512),
            notes,
        )
    val = cast(LabelledData, val)
    if config.loss == "contrastive":
        loss = losses.ContrastiveLoss(margin=config.margin, distance=config.distance)  # type: ignore[arg-type]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_pairs = PairDataset(
                train.inputs,
                train.labels,
                pairs_per_epoch=batches * config.batch_size,
                seed=config.seed,
            )
            val_pairs = PairDataset(
                val.inputs, val.labels, pairs_per_epoch=max(len(val), 512), seed=config.seed + 1
            )
        notes += [str(w.message) for w in caught]
        return (
            PairObjective(loss),
            DataLoader(train_pairs, batch_size=config.batch_size, shuffle=True),
            DataLoader(val_pairs, batch_size=512),
            notes,
        )
    per_class = 2 if config.loss == "infonce" else 4
    if config.loss == "infonce":
        loss = losses.InfoNCELoss(temperature=config.temperature)
        objective: Any = TwoViewObjective(loss)
    elif config.loss == "supcon":
        objective = LabelObjective(losses.SupConLoss(temperature=config.temperature))
    else:
        objective = LabelObjective(
            losses.BatchAllTripletLoss(margin=config.margin, distance=config.distance)  # type: ignore[arg-type]
        )
    loaders = []
    for part, seed, count in ((train, config.seed, batches), (val, config.seed + 1, 8)):
        sampler = _balanced_sampler(part, per_class, config.batch_size, count, seed, notes)
        loaders.append(DataLoader(TensorDataset(part.inputs, part.labels), batch_sampler=sampler))
    return objective, loaders[0], loaders[1], notes


def _balanced_sampler(
    data: LabelledData, per_class: int, batch_size: int, batches: int, seed: int, notes: list[str]
) -> ClassBalancedBatchSampler:
    counts = torch.bincount(data.labels)
    k = per_class if int((counts >= per_class).sum()) >= 2 else 2
    eligible = int((counts >= k).sum())
    if eligible < 2:
        raise DataError(
            f"{data.source}: fewer than 2 classes have {k} training samples; "
            "the loss needs at least 2 classes with 2 samples each"
        )
    p = max(2, min(eligible, batch_size // k))
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


def _split(config: RunConfig, data: LabelledData | PairData) -> tuple[LabelledData | PairData, ...]:
    fractions = (config.val_fraction, config.test_fraction)
    if isinstance(data, PairData):
        index = split_indices(data.same, fractions=fractions, seed=config.seed)
    else:
        index = split_indices(data.labels, fractions=fractions, seed=config.seed)
    parts = tuple(data.subset(i) for i in index)
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        if len(part) == 0:
            raise DataError(f"{data.source}: the {name} split is empty; more data is needed")
    return parts


def run_splits(
    config: RunConfig, data: LabelledData | PairData
) -> tuple[LabelledData | PairData, LabelledData | PairData, LabelledData | PairData, Any]:
    """The training, validation and test splits of a run, and its anomalies.

    Without ``anomaly_class`` the anomalies are ``None``. With it, the data are split as
    without (so the other classes' samples land in the same splits), then every sample
    of that class is taken out of the three splits and returned as the anomalies.
    """
    parts = _split(config, data)
    if not config.anomaly_class:
        return (*parts, None)  # type: ignore[return-value]
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
    if len(data.class_names) < 3:
        raise DataError(
            f"{data.source}: holding out class {config.anomaly_class!r} leaves "
            f"{len(data.class_names) - 1} class; at least 2 normal classes are needed"
        )
    normal = tuple(
        part.subset(torch.nonzero(part.labels != anomaly).flatten())  # type: ignore[union-attr]
        for part in parts
    )
    anomalies = data.subset(torch.nonzero(data.labels == anomaly).flatten())
    return (*normal, anomalies)  # type: ignore[return-value]


def _pairs_of(data: LabelledData | PairData, seed: int) -> Tensor | None:
    """Balanced verification pairs ``(i, j, same)`` of a labelled split (None for pairs)."""
    from contrastkit.evaluation.metrics import verification_pairs

    if isinstance(data, PairData):
        return None
    try:
        return torch.stack(verification_pairs(data.labels, max_pairs=20_000, seed=seed))
    except ValueError as error:
        raise DataError(f"{data.source}: a held-out split cannot give pairs ({error})") from None


def _embed_split(model: nn.Module, data: LabelledData | PairData) -> Tensor:
    """The embeddings of a split: one per sample, or the left then the right of each pair."""
    if isinstance(data, PairData):
        return embed(model, torch.cat([data.left, data.right]))
    return embed(model, data.inputs)


def _pair_distances(
    emb: Tensor, data: LabelledData | PairData, pairs: Tensor | None, metric: str
) -> tuple[Tensor, Tensor]:
    """Distances and labels of a split's verification pairs, from its embeddings."""
    if isinstance(data, PairData):
        left, right = emb.chunk(2)
        same = data.same
    else:
        if pairs is None:
            raise ValueError("labelled data needs its verification pairs")
        left, right, same = emb[pairs[0]], emb[pairs[1]], pairs[2]
    return paired_distance(left, right, distance=metric), same  # type: ignore[arg-type]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but no CUDA device is available")
    return torch.device(name)


def _objective(config: RunConfig, contrastive: Any) -> Any:
    """The objective of a run, from the contrastive objective of its ``loss``."""
    if config.objective == "contrastive":
        return contrastive
    kind = RECONSTRUCTION_LOSSES[config.reconstruction_loss]
    reconstruction = ReconstructionObjective(losses.ReconstructionLoss(kind=kind))  # type: ignore[arg-type]
    if config.objective == "reconstruction":
        return reconstruction
    return WeightedSum(
        {
            "reconstruction": (reconstruction, config.reconstruction_weight),
            "contrastive": (contrastive, config.contrastive_weight),
        }
    )


def _terms(config: RunConfig) -> dict[str, float]:
    """The logged loss terms of a run and their weights."""
    if config.objective == "reconstruction":
        return {"reconstruction": 1.0}
    if config.objective == "combined":
        return {
            "reconstruction": config.reconstruction_weight,
            "contrastive": config.contrastive_weight,
        }
    return {"loss": 1.0}


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train, evaluate and report one run into ``run_dir``; returns the metrics.

    A new run needs ``run_dir`` not to exist (it is never overwritten); ``resume=True``
    continues the run in ``run_dir`` from its last checkpoint, with its saved config.
    """
    from contrastkit import plots
    from contrastkit.app import report
    from contrastkit.evaluation.metrics import roc_auc

    started = time.perf_counter()
    run = Path(run_dir)
    config.checked()
    data = read_data(config)
    if not resume:
        if config.data != "digits":  # so that evaluate, embed and --resume work from anywhere
            config.data = str(Path(config.data).resolve())
        if not config.hidden:
            config.hidden = list(DEFAULT_HIDDEN[data.kind])
    if isinstance(data, LabelledData) and len(data.class_names) < 2:
        raise DataError(f"{data.source} has fewer than 2 classes")
    train, val, test, anomalies = run_splits(config, data)
    device = _device(config.device)
    torch.manual_seed(config.seed)
    spec = model_spec(config, data, train)
    train, val, test, anomalies = (_scaled(spec, part) for part in (train, val, test, anomalies))
    model = build_model(spec, _standardize(_inputs_of(train)))
    contrastive, train_loader, val_loader, notes = _loss_and_loaders(config, train, val)
    objective = _objective(config, contrastive)

    if not resume:
        run.mkdir(parents=True, exist_ok=False)
        (run / "config.toml").write_text(config.to_toml())
        (run / "model.json").write_text(json.dumps(spec, indent=2) + "\n")
    for note in notes:
        log(f"note: {note}")

    val_pairs = _pairs_of(val, config.seed + 2)
    _pairs_of(test, config.seed + 3)  # fail now, not after training, if test has no pairs

    def evaluate(m: nn.Module) -> dict[str, float]:
        from contrastkit.evaluation.metrics import precision_at_1

        emb = _embed_split(m, val)
        out = {"val_roc_auc": roc_auc(*_pair_distances(emb, val, val_pairs, config.distance))}
        if isinstance(val, LabelledData):
            try:
                out["val_precision_at_1"] = precision_at_1(
                    emb, val.labels, distance=config.distance
                )
            except ValueError:  # no class with two validation samples
                pass
        return out

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    total_steps = config.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps
    )
    trainer = Trainer(
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
    )
    terms = [t for t in _terms(config) if t != "loss"] if config.objective == "combined" else []

    def announce(t: Trainer) -> None:
        r = t.history[-1]
        parts = []
        for part in ("train", "val"):
            if f"{part}_loss" in r:
                each = ", ".join(f"{k} {r[f'{part}_{k}']:.4f}" for k in terms)
                parts.append(
                    f"{part}_loss {r[f'{part}_loss']:.4f}" + (f" ({each})" if each else "")
                )
        parts += [f"{k} {r[k]:.4f}" for k in ("val_roc_auc", "val_precision_at_1") if k in r]
        log(f"epoch {r['epoch']:>3}/{config.epochs}: {', '.join(parts)}")

    trainer.add_callback("on_epoch_end", announce)
    if resume and latest_checkpoint(run) is not None:
        log(f"resuming {run} after epoch {_checkpoint_epoch(run)}")
    history = trainer.fit(resume=resume)
    train_seconds = time.perf_counter() - started

    model.cpu()
    save_weights(model, run / "model.safetensors")
    reference = embed(model, _inputs_of(train))
    reference_labels = train.labels if isinstance(train, LabelledData) else None
    _save_reference(run / "reference.safetensors", reference, reference_labels)
    metrics = evaluate_run(model, config, val, test)
    metrics["objective"] = {"name": config.objective, "terms": _terms(config)}
    if anomalies is not None:
        metrics["anomaly"] = _evaluate_anomalies(
            model, config, reference, reference_labels, val, test, anomalies
        )
    metrics["history"] = history
    metrics["data"] = {
        "source": data.source,
        "train": len(train),
        "validation": len(val),
        "test": len(test),
        "classes": len(data.class_names) if isinstance(data, LabelledData) else None,
    }
    metrics["notes"] = notes
    figures = _figures(plots, config, metrics, test, run)
    metrics["seconds"] = {"training": train_seconds, "total": time.perf_counter() - started}
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    report.write_report(run / "report.html", config=config, metrics=metrics, figures=figures)
    return metrics


def _checkpoint_epoch(run: Path) -> int:
    checkpoint = latest_checkpoint(run)
    return int(checkpoint.name.split("-")[1]) if checkpoint is not None else 0


def evaluate_run(
    model: nn.Module,
    config: RunConfig,
    val: LabelledData | PairData,
    test: LabelledData | PairData,
) -> dict[str, Any]:
    """Test metrics with the threshold chosen on validation, and retrieval on test.

    For an autoencoder, also the mean reconstruction error of the test inputs
    (``reconstruction_error``, in the run's reconstruction loss).
    """
    from contrastkit.evaluation.metrics import retrieval_metrics, verification_metrics

    val_pairs, test_pairs = _pairs_of(val, config.seed + 2), _pairs_of(test, config.seed + 3)
    test_emb = _embed_split(model, test)
    val_d, val_same = _pair_distances(_embed_split(model, val), val, val_pairs, config.distance)
    test_d, test_same = _pair_distances(test_emb, test, test_pairs, config.distance)
    out: dict[str, Any] = {
        "distance": config.distance,
        "test": verification_metrics(val_d, val_same, test_d, test_same),
        "pairs": {"validation": int(val_same.numel()), "test": int(test_same.numel())},
    }
    if isinstance(test, LabelledData):
        ks = tuple(k for k in (1, 5, 10) if k < len(test))
        try:
            out["test"].update(
                retrieval_metrics(test_emb, test.labels, distance=config.distance, ks=ks)
            )
        except ValueError as error:
            out["retrieval_skipped"] = str(error)
    if callable(getattr(model, "reconstruct", None)):
        errors = anomaly_scores(
            model, config, None, None, _inputs_of(test), methods=["reconstruction"]
        )
        out["test"]["reconstruction_error"] = float(errors["reconstruction"].mean())
    # for the figures; train_run takes them out before metrics.json is written
    out["_test_distances"], out["_test_same"], out["_test_embeddings"] = test_d, test_same, test_emb
    return out


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
        out["reconstruction"] = reconstruction_errors(model, inputs, kind=kind)  # type: ignore[arg-type]
    if {"knn", "centroid"} & set(chosen):
        if reference is None:
            raise ValueError("the knn and centroid scores need the reference embeddings")
        emb = embed(model, inputs)
        if "knn" in chosen:
            k = min(ANOMALY_K, reference.shape[0])
            out["knn"] = knn_scores(reference, emb, k=k, distance=config.distance)  # type: ignore[arg-type]
        if "centroid" in chosen:
            out["centroid"] = centroid_scores(
                reference,
                reference_labels,  # type: ignore[arg-type]
                emb,
                distance=config.distance,  # type: ignore[arg-type]
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
) -> dict[str, Any]:
    """ROC-AUC and average precision of each score on normal test samples + anomalies.

    The threshold of each score is the 95th percentile of the validation split's scores
    (normal samples only): 5% false alarms expected on normal data.
    """
    from contrastkit.evaluation.anomaly import anomaly_metrics

    inputs = torch.cat([test.inputs, anomalies.inputs])
    is_anomaly = torch.cat([torch.zeros(len(test)), torch.ones(len(anomalies))]).long()
    scores = anomaly_scores(model, config, reference, reference_labels, inputs)
    val_scores = anomaly_scores(model, config, reference, reference_labels, val.inputs)
    out: dict[str, Any] = {
        "class": config.anomaly_class,
        "normal": len(test),
        "anomalies": len(anomalies),
        "k": ANOMALY_K,
        "scores": {},
    }
    for method, values in scores.items():
        found = anomaly_metrics(values, is_anomaly)
        threshold = float(torch.quantile(val_scores[method].double(), 0.95))
        flagged = values.double() >= threshold
        out["scores"][method] = {
            "roc_auc": found["roc_auc"],
            "average_precision": found["average_precision"],
            "threshold": threshold,
            "detected": float(flagged[is_anomaly == 1].double().mean()),
            "false_alarms": float(flagged[is_anomaly == 0].double().mean()),
        }
    # for the figures; taken out before metrics.json is written
    out["_scores"], out["_is_anomaly"] = scores, is_anomaly
    return out


def _save_reference(path: Path, embeddings: Tensor, labels: Tensor | None) -> None:
    from safetensors.torch import save_file

    tensors = {"embeddings": embeddings.contiguous()}
    if labels is not None:
        tensors["labels"] = labels.contiguous()
    save_file(tensors, str(path))


def load_reference(run_dir: str | Path) -> tuple[Tensor, Tensor | None]:
    """The training split's embeddings of a run (and their labels, ``None`` for pairs)."""
    from safetensors.torch import load_file

    path = Path(run_dir) / "reference.safetensors"
    if not path.is_file():
        raise DataError(
            f"run folder {run_dir} has no reference.safetensors (the training embeddings); "
            "train it again with this version to score inputs"
        )
    tensors = load_file(str(path))
    return tensors["embeddings"], tensors.get("labels")


def _history_keys(config: RunConfig, history: list[dict[str, Any]]) -> list[str] | None:
    """The curves of the history figure: each loss term (and the total, if several)."""
    terms = list(_terms(config))
    if terms == ["loss"]:
        return None
    if len(terms) > 1:
        terms.insert(0, "loss")
    keys = [f"{part}_{t}" for t in terms for part in ("train", "val")]
    return [k for k in keys if history and k in history[0]]


def _figures(
    plots: Any, config: RunConfig, metrics: dict[str, Any], test: LabelledData | PairData, run: Path
) -> dict[str, Path]:
    folder = run / "figures"
    folder.mkdir(exist_ok=True)
    distances, same = metrics.pop("_test_distances"), metrics.pop("_test_same")
    embeddings = metrics.pop("_test_embeddings")
    drawn: dict[str, Any] = {}
    if config.loss == "contrastive" and config.objective != "reconstruction":
        drawn["loss_curve"] = plots.plot_loss_curve(margin=config.margin)[0]
    if isinstance(test, LabelledData):
        drawn["embedding"] = plots.plot_embedding(
            embeddings, test.labels, class_names=test.class_names, seed=config.seed
        )[0]
    drawn["roc"] = plots.plot_roc(distances, same)[0]
    drawn["distances"] = plots.plot_distance_histograms(
        distances, same, threshold=metrics["test"]["threshold"]
    )[0]
    keys = _history_keys(config, metrics["history"])
    drawn["history"] = plots.plot_history(metrics["history"], keys=keys)[0]
    if "anomaly" in metrics:
        drawn.update(_anomaly_figures(plots, metrics["anomaly"]))
    paths = {}
    for name, fig in drawn.items():
        paths[name] = plots.save_figure(fig, folder / f"{name}.png", overwrite=True)
    return paths


SCORE_NAMES = {
    "reconstruction": "reconstruction error",
    "knn": f"mean distance to the {ANOMALY_K} nearest training embeddings",
    "centroid": "distance to the nearest class centroid",
}


def _anomaly_figures(plots: Any, anomaly: dict[str, Any]) -> dict[str, Any]:
    """Score histograms (normal vs anomalous test samples) and the ROC curves, drawn."""
    scores, is_anomaly = anomaly.pop("_scores"), anomaly.pop("_is_anomaly")
    drawn: dict[str, Any] = {}
    for method, values in scores.items():
        drawn[f"anomaly_{method}"] = plots.plot_score_histograms(
            values,
            is_anomaly,
            title=f"{SCORE_NAMES[method]} (class {anomaly['class']} is the anomaly)",
            threshold=anomaly["scores"][method]["threshold"],
        )[0]
    drawn["anomaly_roc"] = _plot_anomaly_roc(scores, is_anomaly)[0]
    return drawn


_SCORE_COLORS = {"reconstruction": "C0", "knn": "C1", "centroid": "C2"}


def _plot_anomaly_roc(scores: Mapping[str, Tensor], is_anomaly: Tensor, *, ax: Any = None) -> Any:
    """ROC curves of anomaly scores: anomalies flagged against normal samples flagged.

    Each score keeps one colour in every figure (reconstruction blue, knn orange,
    centroid green), so that panels of different runs compare at a glance.
    """
    from contrastkit import plots

    fig = None
    for method, values in scores.items():
        drawn = len(ax.lines) if ax is not None else 0
        # plot_roc accepts "similar" pairs when d <= t: with d = -score and the anomalies
        # as the "similar" class, it draws the rule "anomaly if score >= t"
        fig, ax = plots.plot_roc(-values, is_anomaly, ax=ax, label=method, mark_fars=())
        ax.lines[drawn].set_color(_SCORE_COLORS.get(method, "C3"))
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda j: labels[j] == "chance")
    ax.legend([handles[j] for j in order], [labels[j] for j in order], loc="lower right")
    ax.set_xlabel("false positive rate (normal samples flagged)")
    ax.set_ylabel("true positive rate (anomalies flagged)")
    ax.set_title("ROC of the rule score ≥ t")
    return fig, ax


def load_run(run_dir: str | Path) -> tuple[RunConfig, nn.Module]:
    """The config and trained network of a run folder (siamese network or autoencoder)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"run folder {run} does not exist")
    for name in ("config.toml", "model.json"):
        if not (run / name).is_file():
            raise DataError(f"{run} is not a contrastkit run folder (no {name})")
    config = RunConfig.from_mapping(
        read_config_file(run / "config.toml"), where=str(run / "config.toml")
    )
    spec = json.loads((run / "model.json").read_text())
    model = build_model(spec)
    weights = run / "model.safetensors"
    if not weights.is_file():
        checkpoint = latest_checkpoint(run)
        if checkpoint is None:
            raise DataError(f"run folder {run} has no trained weights yet")
        weights = checkpoint / "model.safetensors"
    load_weights(model, weights)
    model.eval()
    return config, model
