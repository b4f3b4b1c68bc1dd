"""What ``contrastkit compare`` does: PCA, an autoencoder and a siamese network, side by side.

On the bundled digits, every network trained by :func:`~contrastkit.app.run.train_run`
and measured as any run is:

1. **Maps.** Three 2-D maps of the test split: PCA of the pixels (fitted on the training
   split), the 2-D code of an autoencoder (``objective="reconstruction"``) and the 2-D
   output of a siamese network trained with the contrastive loss (the DrLIM experiment
   of Hadsell, Chopra & LeCun 2006). Each map is evaluated like a run: verification on
   balanced test pairs (ROC-AUC, equal error rate), retrieval with every test sample as
   a query (precision@1, MAP@R), Euclidean distances in the map.
2. **Anomaly detection.** One digit is held out of training and validation
   (``anomaly_class``); reconstruction-only, contrastive-only and combined runs
   (reconstruction + contrastive on the code, weights 1 and 1) then score the normal test
   samples and every sample of that digit by each score they have: the reconstruction
   error, the mean distance to the 5 nearest training embeddings, the distance to the
   nearest class centroid.

The folder it writes::

    DIR/
      report.html        both tables and figures on one page
      comparison.json    the numbers of both tables and the settings
      figures/maps.png, figures/anomaly_roc.png
      runs/NAME/         each run's complete folder (report, metrics, weights)

Example:
    From Python, as ``contrastkit compare -o runs/compare`` does::

        from contrastkit.app.compare import run_comparison

        result = run_comparison("runs/compare")
        result["maps"]["siamese"]["precision_at_1"]
        result["anomaly"]["runs"]["combined"]["knn"]["roc_auc"]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from contrastkit.app.config import ObjectiveName
from contrastkit.app.rundir import naming_write_errors, take_default_run_folder, write_text_atomic
from contrastkit.data.readers import LabelledData

__all__ = ["ANOMALY_EMBEDDING_DIM", "run_comparison"]

ANOMALY_EMBEDDING_DIM = 8
"""The code size of the anomaly-detection runs (the maps are 2-D)."""

_MAP_RUNS: dict[str, ObjectiveName] = {"autoencoder": "reconstruction", "siamese": "contrastive"}
_ANOMALY_RUNS: tuple[ObjectiveName, ...] = ("reconstruction", "contrastive", "combined")
_TITLES = {
    "pca": "PCA of the pixels",
    "autoencoder": "autoencoder's 2-D code",
    "siamese": "siamese network, contrastive (DrLIM)",
}
_MAP_METRICS = ("precision_at_1", "map_at_r", "roc_auc", "eer")


class _Projection(nn.Module):
    """A fixed linear map ``(x - mean) @ components.T``: PCA as a network."""

    mean: Tensor
    components: Tensor

    def __init__(self, mean: Tensor, components: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("components", components)

    def forward(self, x: Tensor) -> Tensor:
        """Project a batch."""
        return (x - self.mean) @ self.components.T


def _pca(train: Tensor, dim: int, seed: int) -> _Projection:
    from sklearn.decomposition import PCA  # type: ignore[import-untyped]

    pca = PCA(n_components=dim, random_state=seed).fit(train.double().numpy())
    return _Projection(
        torch.as_tensor(pca.mean_, dtype=torch.float32),
        torch.as_tensor(pca.components_, dtype=torch.float32),
    )


def _measured(test: dict[str, float | None]) -> dict[str, float]:
    """The map metrics of a run's test metrics (each is always measurable)."""
    return {k: cast(float, test[k]) for k in _MAP_METRICS}


def run_comparison(
    out: str | Path | None,
    *,
    epochs: int | None = None,
    seed: int = 0,
    anomaly_class: str = "8",
    steps_per_epoch: int | None = None,
    batch_size: int | None = None,
    hidden: Sequence[int] | None = None,
    anomaly_embedding_dim: int = ANOMALY_EMBEDDING_DIM,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run the comparison into the new folder ``out``; returns what ``comparison.json`` holds.

    Every number and figure comes from the :class:`~contrastkit.app.result.RunResult`
    each run returns: no run is loaded back or scored again. The returned dict also holds
    ``folder``, the folder written (not in ``comparison.json``).

    Args:
        out: the folder to create (it must not exist); ``None``: the first free
            ``runs/compare-N``, taken once every option is checked (two comparisons
            started together get two folders).
        epochs: the epochs of every run (``None``: the default of
            :class:`~contrastkit.app.run.RunConfig`, 30).
        steps_per_epoch: optimizer steps per epoch (``None``: the default, 64).
        batch_size: the batch size (``None``: the default, 128).
        hidden: the hidden widths (``None``: the default, ``[512, 256, 128]``).
        seed: the seed of the split and of every run.
        anomaly_class: the digit held out as the anomaly, ``"0"`` to ``"9"``.
        anomaly_embedding_dim: the code size of the anomaly-detection runs.
        log: called with one line of progress per run.
    """
    from contrastkit import plots
    from contrastkit.app import report
    from contrastkit.app.run import (
        ConfigError,
        RunConfig,
        evaluate_run,
        read_data,
        run_splits,
        train_run,
    )

    started = time.perf_counter()
    options: dict[str, Any] = {"seed": seed}
    for name, value in (
        ("epochs", epochs),
        ("steps_per_epoch", steps_per_epoch),
        ("batch_size", batch_size),
        ("hidden", None if hidden is None else list(hidden)),
    ):
        if value is not None:
            options[name] = value
    # every config is checked before the folder is made
    map_configs = {
        name: RunConfig(**options, objective=objective, embedding_dim=2).checked()
        for name, objective in _MAP_RUNS.items()
    }
    if anomaly_class not in [str(d) for d in range(10)]:
        raise ConfigError(f"anomaly_class must be a digit 0 to 9, got {anomaly_class!r}")
    anomaly_configs = {
        objective: RunConfig(
            **options,
            objective=objective,
            embedding_dim=anomaly_embedding_dim,
            anomaly_class=anomaly_class,
        ).checked()
        for objective in _ANOMALY_RUNS
    }
    if out is None:
        folder = take_default_run_folder(Path("runs"), "compare")
    else:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=False)
    with naming_write_errors(folder / "figures"):
        (folder / "figures").mkdir()

    def quiet(_: str) -> None:
        pass

    # 1. the maps ----------------------------------------------------------------------
    maps: dict[str, dict[str, float]] = {}
    drawn: dict[str, tuple[Tensor, Tensor, list[str]]] = {}
    for name, config in map_configs.items():
        log(f"maps: training the {_TITLES[name]} ({config.epochs} epochs)")
        tick = time.perf_counter()
        result = train_run(config, folder / "runs" / f"map-{name}", progress=False, log=quiet)
        assert result is not None  # one process: the result is this one's
        maps[name] = _measured(result.test)
        maps[name]["seconds"] = time.perf_counter() - tick
        assert result.test_labels is not None  # the digits are labelled
        drawn[name] = (result.evaluation.test_embeddings, result.test_labels, result.class_names)
        if name == "siamese":  # PCA on the unscaled pixels of the same splits
            tick = time.perf_counter()
            train, val, test, _ = run_splits(config, read_data(config))
            train, test = cast(LabelledData, train), cast(LabelledData, test)
            projection = _pca(train.inputs, 2, seed)
            evaluation = evaluate_run(projection, config, val, test)
            maps["pca"] = _measured(evaluation.test)
            maps["pca"]["seconds"] = time.perf_counter() - tick
            drawn["pca"] = (evaluation.test_embeddings, test.labels, test.class_names)
    maps = {name: maps[name] for name in _TITLES}

    fig, axes = plots.subplots(3, figsize=(16.5, 5.2))
    for ax, name in zip(axes, _TITLES, strict=True):
        emb, labels, names = drawn[name]
        plots.plot_embedding(emb, labels, class_names=names, ax=ax)
        ax.set_title(f"{_TITLES[name]}: P@1 {maps[name]['precision_at_1']:.3f}")
    with naming_write_errors(folder / "figures" / "maps.png"):
        figures = {"maps": plots.save_figure(fig, folder / "figures" / "maps.png")}

    # 2. anomaly detection -------------------------------------------------------------
    runs: dict[str, dict[str, dict[str, float]]] = {}
    curves: dict[str, tuple[dict[str, Tensor], Tensor]] = {}
    counts: dict[str, int] = {}
    for objective, config in anomaly_configs.items():
        log(f"anomaly detection: training {objective} ({config.epochs} epochs)")
        result = train_run(
            config, folder / "runs" / f"anomaly-{objective}", progress=False, log=quiet
        )
        assert result is not None  # one process: the result is this one's
        anomaly = result.anomaly
        assert anomaly is not None  # every one of these runs holds a class out
        runs[objective] = {
            method: {k: values[k] for k in ("roc_auc", "average_precision")}
            for method, values in anomaly.scores.items()
        }
        counts = {"normal": anomaly.normal, "anomalies": anomaly.anomalies, "k": anomaly.k}
        curves[objective] = (anomaly.values, anomaly.is_anomaly)

    fig, axes = plots.subplots(3, figsize=(16.5, 5.2))
    for ax, objective in zip(axes, _ANOMALY_RUNS, strict=True):
        plots.plot_anomaly_roc(
            *curves[objective], ax=ax, title=f"{objective}: digit {anomaly_class} is the anomaly"
        )
    with naming_write_errors(folder / "figures" / "anomaly_roc.png"):
        figures["anomaly_roc"] = plots.save_figure(fig, folder / "figures" / "anomaly_roc.png")

    result_json: dict[str, Any] = {
        "settings": {
            **{k: getattr(map_configs["siamese"], k) for k in ("epochs", "steps_per_epoch")},
            **{k: getattr(map_configs["siamese"], k) for k in ("batch_size", "hidden", "seed")},
            "anomaly_class": anomaly_class,
            "anomaly_embedding_dim": anomaly_embedding_dim,
            "test_samples": int(drawn["pca"][1].numel()),
        },
        "maps": maps,
        "anomaly": {"class": anomaly_class, **counts, "runs": runs},
        "seconds": time.perf_counter() - started,
    }
    write_text_atomic(folder / "comparison.json", json.dumps(result_json, indent=2) + "\n")
    with naming_write_errors(folder / "report.html"):
        report.write_comparison_report(
            folder / "report.html", comparison=result_json, figures=figures
        )
    return {**result_json, "folder": str(folder)}
