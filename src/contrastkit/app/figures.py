"""The figures of a run's report, drawn from its :class:`~contrastkit.app.result.RunResult`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contrastkit.app.evaluate import SCORE_NAMES
from contrastkit.app.result import (
    AnomalyResult,
    RunResult,
)
from contrastkit.app.rundir import (
    naming_write_errors,
)

__all__ = ["figures"]


_VAL_METRICS = (
    "val_spearman",
    "val_pearson",
    "val_mrr_at_10",
    "val_roc_auc",
    "val_precision_at_1",
)


def _history_keys(result: RunResult) -> list[str] | None:
    """The curves of the history figure: each loss term (and the total, if several)."""
    terms = list(result.terms)
    if terms == ["loss"]:
        return None
    if len(terms) > 1:
        terms.insert(0, "loss")
    keys = [f"{part}_{t}" for t in terms for part in ("train", "val")]
    return [k for k in keys if result.history and k in result.history[0]]


def _unlabelled_images(result: RunResult) -> bool:
    """Whether the run's images have no labels (a flat folder, NT-Xent)."""
    shown = result.neighbours
    return result.test_labels is None and shown is not None and shown.query_classes is None


def figures(result: RunResult) -> dict[str, Path]:
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
    elif _unlabelled_images(result) and evaluation.test_embeddings.shape[0] >= 2:
        # a flat folder: the map in one colour
        drawn["embedding_unlabelled"] = plots.plot_embedding(
            evaluation.test_embeddings, None, seed=config.seed
        )[0]
    if result.neighbours is not None:
        examples = result.neighbours
        drawn["neighbours"] = plots.plot_neighbours(
            examples.queries,
            examples.neighbours,
            similarities=examples.similarities,
            query_titles=examples.query_classes,
            neighbour_titles=examples.neighbour_classes,
            title="test images (left) and their nearest training images, by cosine similarity",
        )[0]
    if evaluation.test_similarity is not None and evaluation.test_gold is not None:
        drawn["similarity"] = plots.plot_similarity_scatter(
            evaluation.test_similarity,
            evaluation.test_gold,
            correlations={
                name: float(value)
                for name, value in result.test.items()
                if name in ("spearman", "pearson") and value is not None
            },
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
