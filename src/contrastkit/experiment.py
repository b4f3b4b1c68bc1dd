"""One training run, from data to report: what ``contrastkit train`` does, as a function.

:func:`train_run` reads the data named in a :class:`RunConfig`, splits it (stratified
train / validation / test, from the seed), trains a siamese encoder with the chosen
loss, evaluates it on held-out data and writes one run folder::

    RUN_DIR/
      config.toml          the resolved configuration (reusable with --config)
      model.json           how to rebuild the network (input shape, sizes)
      model.safetensors    the final weights
      checkpoints/         the last epoch's weights and optimizer state (for --resume)
      metrics.json         test and validation metrics, the per-epoch history, timings
      figures/*.png        loss curve, embedding map, ROC, distance histograms, history
      report.html          all of it on one self-contained page

The verification threshold is chosen on the validation split and only applied to the
test split.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import losses
from contrastkit.data import ClassBalancedBatchSampler, PairDataset
from contrastkit.datasets import (
    DataError,
    LabelledData,
    PairData,
    load_digits,
    read_features,
    read_image_folder,
    read_pairs,
    split_indices,
)
from contrastkit.distances import DISTANCES, paired_distance
from contrastkit.models import ConvEncoder, MLPEncoder, SiameseNetwork, Standardize
from contrastkit.training import (
    LabelObjective,
    PairObjective,
    Trainer,
    TwoViewObjective,
    embed,
    latest_checkpoint,
    load_weights,
    save_weights,
)

__all__ = ["LOSSES", "ConfigError", "RunConfig", "load_run", "read_data", "train_run"]

LOSSES = ("contrastive", "triplet", "infonce", "supcon")
_COSINE_LOSSES = ("infonce", "supcon")
DEFAULT_HIDDEN = {"vectors": (512, 256, 128), "images": (32, 64)}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the option."""


@dataclass
class RunConfig:
    """Everything a run depends on; written to ``config.toml`` in the run folder.

    Attributes:
        data: ``"digits"`` (bundled), an image folder (one subfolder per class), a
            ``.npz``/``.csv`` of features with a label column, or a ``.csv`` of pairs.
        label_column: the label column (or array) of a feature file.
        image_size: images are resized to this many pixels on a side.
        loss: ``"contrastive"`` (pairs), ``"triplet"`` (batch-all triplets mined from
            class-balanced batches), ``"infonce"`` (two samples per class, N-pair
            setting), ``"supcon"`` (class-balanced batches).
        margin: the margin of the contrastive and triplet losses.
        distance: the distance of the loss and of evaluation; empty means
            ``"euclidean"`` for contrastive/triplet and ``"cosine"`` for InfoNCE/SupCon.
        temperature: the temperature of InfoNCE and SupCon.
        embedding_dim: the size of each embedding (2 draws the network's own map).
        hidden: hidden layer widths (MLP) or channels per block (ConvNet); empty means
            ``[512, 256, 128]`` for feature vectors and ``[32, 64]`` for images.
        epochs, batch_size, steps_per_epoch, lr, weight_decay: the optimisation.
        val_fraction, test_fraction: the held-out shares of each class.
        seed: the seed of the split, the draws and the initialisation.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    data: str = "digits"
    label_column: str = "label"
    image_size: int = 32
    loss: str = "contrastive"
    margin: float = 1.0
    distance: str = ""
    temperature: float = 0.1
    embedding_dim: int = 32
    hidden: list[int] = field(default_factory=list)
    epochs: int = 30
    batch_size: int = 128
    steps_per_epoch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str = "config") -> RunConfig:
        """A config from a dict (a TOML file's table), checked; unknown keys are errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}")
        return cls(**dict(values)).checked()

    def checked(self) -> RunConfig:
        """Check every value, resolve defaults that depend on others, return ``self``."""
        _typed(self)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.distance:
            self.distance = "cosine" if self.loss in _COSINE_LOSSES else "euclidean"
        if self.distance not in DISTANCES:
            raise ConfigError(
                f"distance must be one of {', '.join(DISTANCES)}, got {self.distance!r}"
            )
        for name in ("margin", "temperature", "lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("image_size", "embedding_dim", "epochs", "batch_size", "steps_per_epoch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 4:
            raise ConfigError(f"batch_size must be >= 4, got {self.batch_size}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden must be positive widths, got {self.hidden}")
        fractions = (self.val_fraction, self.test_fraction)
        if not (min(fractions) > 0 and sum(fractions) < 1):
            raise ConfigError(
                f"val_fraction and test_fraction must be positive and sum below 1, got {fractions}"
            )
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        return self

    def to_toml(self) -> str:
        """The config as TOML text (flat keys), readable by ``--config``."""
        lines = ["# contrastkit run configuration"]
        for f in dataclasses.fields(self):
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"


def _typed(config: RunConfig) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(value, bool) and isinstance(default, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float)
            if ok:
                setattr(config, f.name, float(value))
        elif isinstance(default, list):
            ok = isinstance(value, list | tuple) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
            if ok:
                setattr(config, f.name, [int(v) for v in value])
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(
                f"{f.name} must be {type(default).__name__}, got {type(value).__name__} {value!r}"
            )


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
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {file} is not valid TOML: {error}") from None


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


def model_spec(config: RunConfig, data: LabelledData | PairData) -> dict[str, Any]:
    """What :func:`build_model` needs to rebuild the network, saved as ``model.json``."""
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
    return spec


def build_model(spec: Mapping[str, Any], standardize: Standardize | None = None) -> SiameseNetwork:
    """A siamese network from a model spec; without ``standardize`` a neutral one is made."""
    if spec["kind"] == "images":
        shape = (int(spec["channels"]), 1, 1)
        std = standardize or Standardize(torch.zeros(shape), torch.ones(shape))
        encoder: nn.Module = ConvEncoder(
            int(spec["channels"]),
            embedding_dim=int(spec["embedding_dim"]),
            channels=list(spec["hidden"]),
            standardize=std,
        )
    else:
        n = int(spec["in_features"])
        std = standardize or Standardize(torch.zeros(n), torch.ones(n))
        encoder = MLPEncoder(
            n,
            embedding_dim=int(spec["embedding_dim"]),
            hidden=list(spec["hidden"]),
            batch_norm=True,
            standardize=std,
        )
    return SiameseNetwork(encoder)


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


def _pairs_of(data: LabelledData | PairData, seed: int) -> Tensor | None:
    """Balanced verification pairs ``(i, j, same)`` of a labelled split (None for pairs)."""
    from contrastkit.metrics import verification_pairs

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
    from contrastkit import plots, report
    from contrastkit.metrics import roc_auc

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
    train, val, test = _split(config, data)
    device = _device(config.device)
    torch.manual_seed(config.seed)
    spec = model_spec(config, data)
    sample = (
        train.inputs if isinstance(train, LabelledData) else torch.cat([train.left, train.right])
    )  # type: ignore[union-attr]
    model = build_model(spec, _standardize(sample))
    objective, train_loader, val_loader, notes = _loss_and_loaders(config, train, val)

    if not resume:
        run.mkdir(parents=True, exist_ok=False)
        (run / "config.toml").write_text(config.to_toml())
        (run / "model.json").write_text(json.dumps(spec, indent=2) + "\n")
    for note in notes:
        log(f"note: {note}")

    val_pairs = _pairs_of(val, config.seed + 2)
    _pairs_of(test, config.seed + 3)  # fail now, not after training, if test has no pairs

    def evaluate(m: nn.Module) -> dict[str, float]:
        from contrastkit.metrics import precision_at_1

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

    def announce(t: Trainer) -> None:
        r = t.history[-1]
        shown = ", ".join(
            f"{k} {r[k]:.4f}"
            for k in ("train_loss", "val_loss", "val_roc_auc", "val_precision_at_1")
            if k in r
        )
        log(f"epoch {r['epoch']:>3}/{config.epochs}: {shown}")

    trainer.add_callback("on_epoch_end", announce)
    if resume and latest_checkpoint(run) is not None:
        log(f"resuming {run} after epoch {_checkpoint_epoch(run)}")
    history = trainer.fit(resume=resume)
    train_seconds = time.perf_counter() - started

    model.cpu()
    save_weights(model, run / "model.safetensors")
    metrics = evaluate_run(model, config, val, test)
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
    """Test metrics with the threshold chosen on validation, and retrieval on test."""
    from contrastkit.metrics import retrieval_metrics, verification_metrics

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
    # for the figures; train_run takes them out before metrics.json is written
    out["_test_distances"], out["_test_same"], out["_test_embeddings"] = test_d, test_same, test_emb
    return out


def _figures(
    plots: Any, config: RunConfig, metrics: dict[str, Any], test: LabelledData | PairData, run: Path
) -> dict[str, Path]:
    folder = run / "figures"
    folder.mkdir(exist_ok=True)
    distances, same = metrics.pop("_test_distances"), metrics.pop("_test_same")
    embeddings = metrics.pop("_test_embeddings")
    drawn: dict[str, Any] = {}
    if config.loss == "contrastive":
        drawn["loss_curve"] = plots.plot_loss_curve(margin=config.margin)[0]
    if isinstance(test, LabelledData):
        drawn["embedding"] = plots.plot_embedding(
            embeddings, test.labels, class_names=test.class_names, seed=config.seed
        )[0]
    drawn["roc"] = plots.plot_roc(distances, same)[0]
    drawn["distances"] = plots.plot_distance_histograms(
        distances, same, threshold=metrics["test"]["threshold"]
    )[0]
    drawn["history"] = plots.plot_history(metrics["history"])[0]
    paths = {}
    for name, fig in drawn.items():
        paths[name] = plots.save_figure(fig, folder / f"{name}.png", overwrite=True)
    return paths


def load_run(run_dir: str | Path) -> tuple[RunConfig, SiameseNetwork]:
    """The config and trained network of a run folder."""
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
