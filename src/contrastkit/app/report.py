"""The run report: one self-contained HTML page (figures embedded, no external files).

The page shows, in order: what was trained on what data (and, with a ``monitor``, which
epoch's weights were evaluated: the best one), how long it took, with which
versions of contrastkit, torch and Python, on which device and when; the test metrics
(verification with the threshold chosen on validation, then retrieval, then an
autoencoder's reconstruction error); anomaly detection, when a class was held out (a
table of every score, their histograms and ROC curves); the figures (among them the
validation metrics by epoch); the per-epoch history (each loss term of a weighted
objective raw, with the weighted total); the notes of the run; the resolved
configuration.

Metrics read as words (``TAR at FAR 1%``, not ``tar@far=0.01``): :func:`metric_name`,
also used by the command line. A metric the data cannot measure shows as ``not
measurable`` (``not measurable (N negative pairs)`` for a TAR at a FAR below 1/N), and
the page says why when the held-out splits are too small to give a pair of each kind.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastkit.app.result import far_of, pair_split_note

if TYPE_CHECKING:
    from contrastkit.app.config import RunConfig
    from contrastkit.app.result import AnomalyResult, Probes, RunResult

__all__ = [
    "history_name",
    "metric_name",
    "metric_text",
    "write_comparison_report",
    "write_report",
]

_CAPTIONS = {
    "loss_curve": "The contrastive loss per pair as a function of the distance: similar pairs "
    "(red, dashed) are pulled together, dissimilar pairs (blue) are pushed out to the margin.",
    "embedding": "Test samples in the embedding, coloured by class.",
    "embedding_unlabelled": "Test images in the embedding (no labels: one colour). Groups "
    "and outliers here are what training learnt without labels; the nearest-neighbour "
    "examples show what they hold.",
    "neighbours": "A few test images (left, drawn at random from the seed) and their nearest "
    "training images in the embedding, nearest first, with the cosine similarity; with "
    "labels, a neighbour of the query's class is framed in green, another in red.",
    "roc": "ROC curve of the test pairs (a pair is accepted as similar when its distance is at "
    "most the threshold), on a logarithmic false-accept axis that starts below the smallest "
    "rate the dissimilar test pairs can measure; the marks are the measurable TAR at FAR.",
    "distances": "Distances of similar and dissimilar test pairs, with the threshold chosen on "
    "the validation split.",
    "history": "Training and validation loss per epoch (solid: training, dashed: validation).",
    "val_metrics": "Validation metrics after each epoch: the ROC-AUC of the validation pairs "
    "and the precision@1 of the validation samples; for text, the Spearman and Pearson "
    "correlations, the MRR@10, the ROC-AUC or the precision@1 of its kind (the test split is "
    "only used at the end).",
    "anomaly_reconstruction": "Reconstruction errors of normal test samples and of the "
    "held-out class, with the threshold (95th percentile of the validation scores).",
    "anomaly_knn": "Mean distance to the nearest training embeddings, for normal test samples "
    "and the held-out class, with the threshold (95th percentile of the validation scores).",
    "anomaly_centroid": "Distance to the nearest class centroid of the training embeddings, for "
    "normal test samples and the held-out class, with the threshold (95th percentile of the "
    "validation scores).",
    "anomaly_roc": "ROC curve of each anomaly score (a sample is flagged when its score is at "
    "least the threshold).",
    "maps": "The test digits in each 2-D map, coloured by class.",
    "similarity": "Each test pair of texts: the cosine similarity of its embeddings against "
    "its gold score, as written. Spearman's ρ measures how well the similarities order the "
    "pairs as the scores do (the number the STS literature reports).",
}

_SCORE_LABELS = {
    "reconstruction": "reconstruction error",
    "knn": "distance to the k nearest training embeddings",
    "centroid": "distance to the nearest class centroid",
}

_METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "eer": "equal error rate",
    "threshold": "threshold (chosen on validation)",
    "accuracy": "accuracy at the threshold",
    "val_accuracy": "validation accuracy at the threshold",
    "precision_at_1": "precision@1",
    "map_at_r": "MAP@R",
    "reconstruction_error": "mean reconstruction error",
    "average_precision": "average precision",
    "spearman": "Spearman ρ (cosine vs gold)",
    "pearson": "Pearson r (cosine vs gold)",
    "mrr_at_10": "MRR@10",
    "knn_accuracy": "k-NN accuracy",
    "linear_probe_accuracy": "linear-probe accuracy",
    "loss": "loss",
}

_PARTS = {"train_": "training ", "val_": "validation "}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #222;
       padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; width: 46%; margin: 0.5em 1.5%; vertical-align: top; }
figure.wide { width: 97%; }
figure img { width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.summary { color: #555; }
"""


def metric_name(key: str) -> str:
    """A metric key in words; an unknown key as it is.

    ``"tar@far=0.01"`` → ``"TAR at FAR 1%"``, ``"eer"`` → ``"equal error rate"``,
    ``"recall_at_5"`` → ``"recall@5"``.
    """
    if key in _METRIC_NAMES:
        return _METRIC_NAMES[key]
    far = far_of(key)
    if far is not None:
        return f"TAR at FAR {far * 100:g}%"
    if key.startswith("recall_at_"):
        return f"recall@{key.removeprefix('recall_at_')}"
    return key


def history_name(key: str) -> str:
    """A history key in words: ``"val_roc_auc"`` → ``"validation ROC-AUC"``."""
    for prefix, word in _PARTS.items():
        if key.startswith(prefix):
            return word + metric_name(key.removeprefix(prefix))
    return metric_name(key)


def metric_text(value: float | None, *, negative_pairs: int | None = None) -> str:
    """A metric's value as shown: 4 decimals, or why the data could not measure it."""
    if value is None:
        pairs = f" ({negative_pairs} negative pairs)" if negative_pairs is not None else ""
        return f"not measurable{pairs}"
    return _number(value)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 1e-3:  # 4 significant digits, never 0.0000
        return f"{value:.4g}"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def _table(rows: list[tuple[str, str]], header: tuple[str, str] = ("metric", "value")) -> str:
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{html.escape(v)}</td></tr>" for k, v in rows
    )
    return f"<table><tr><th>{header[0]}</th><th>{header[1]}</th></tr>{body}</table>"


def _history_table(history: list[Mapping[str, Any]]) -> str:
    if not history:
        return "<p>No epoch finished.</p>"
    keys = [k for k in dict.fromkeys(k for r in history for k in r) if k != "epoch"]
    names = {"epoch": "epoch", "epoch_seconds": "seconds", "best_epoch": "best epoch so far"}
    head = "".join(
        f"<th title='{html.escape(k)}'>{html.escape(names.get(k) or history_name(k))}</th>"
        for k in ["epoch", *keys]
    )
    rows = "".join(
        "<tr>"
        + "".join(f"<td class='num'>{_number(r.get(k, ''))}</td>" for k in ["epoch", *keys])
        + "</tr>"
        for r in history
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _figure(name: str, file: str | Path, *, wide: bool = False) -> str:
    encoded = base64.b64encode(Path(file).read_bytes()).decode("ascii")
    caption = _CAPTIONS.get(name, name)
    kind = " class='wide'" if wide else ""
    return (
        f"<figure{kind}><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _negatives(key: str, negatives: int | None) -> int | None:
    """The negative pairs to show with an unmeasurable TAR at FAR; ``None`` for another key."""
    return negatives if far_of(key) is not None else None


def _best_text(result: RunResult) -> str:
    """The summary's words on a monitored run: which epoch's weights were evaluated."""
    best = result.best
    if best is None:
        return ""
    stopped = f"; stopped early after {best.epochs_trained} epochs" if best.stopped_early else ""
    name = html.escape(history_name(best.monitor))
    if best.epoch is None or best.value is None:
        return f"; no epoch had a finite {name}: the last epoch's weights are evaluated{stopped}"
    return (
        f"; the weights evaluated are epoch {best.epoch}'s, the best by {name} "
        f"({_number(best.value)}){stopped}"
    )


def _weight(value: float) -> str:
    return f"{value:g}"


def _trained(result: RunResult) -> str:
    """What was trained: the loss, or the autoencoder's objective and its weights."""
    config = result.config
    loss = html.escape(config.loss)
    if config.text_kind:
        name = "cosine-similarity" if config.loss == "cosine" else loss
        encoder = (
            f"fine-tuned from {html.escape(config.text_model)}"
            if config.text_model
            else "trained from nothing"
        )
        return f"text encoder ({encoder}, {html.escape(config.pooling)} pooling), {name} loss"
    if config.objective == "contrastive":
        return f"{loss} loss"
    kind = html.escape(config.reconstruction_loss)
    noise = config.noise_std
    name = "denoising autoencoder (noise σ = " + _weight(noise) + ")" if noise else "autoencoder"
    if config.objective == "reconstruction":
        return f"{name} trained on reconstruction ({kind})"
    return (
        f"{name} trained on {_weight(config.reconstruction_weight)} × reconstruction ({kind}) "
        f"+ {_weight(config.contrastive_weight)} × {loss} loss on its code"
    )


def _batches(config: RunConfig, drawn: int | None) -> str:
    """The batch of a step and what each anchor was compared with, as the run trained."""
    b, memory = drawn or config.batch_size, config.memory_size
    if config.text_kind in ("scored_pairs", "labelled_pairs"):
        what = "scored against its gold score" if config.loss == "cosine" else "scored alone"
        text = f"training batches of {b} pairs of texts, each pair {what} (no negatives)"
    elif config.text_kind == "text_tuples" and config.loss == "infonce":
        text = (
            f"training batches of {b} anchor-positive rows: each anchor picked its positive "
            f"among the {b} positives and its own hard negatives"
            + (", and each positive its anchor among the anchors" if config.symmetric else "")
        )
    elif config.text_kind == "text_tuples":
        text = f"training batches of {b} rows, each anchor against its own hard negatives"
    elif config.objective == "reconstruction":
        text = f"training batches of {b} samples"
    elif config.loss == "contrastive":
        text = f"training batches of {b} pairs, each pair scored alone (no negatives beyond it)"
    elif config.loss == "infonce":
        keys = b // 2
        text = (
            f"training batches of {b} samples ({keys} pairs): each query picked its key among "
            f"{keys} keys"
            + (f" and {memory:,} remembered ones (a memory of past keys)" if memory else "")
            + f", so {keys - 1 + memory:,} negatives"
            + (" once the memory was full" if memory else "")
        )
    else:
        text = (
            f"training batches of {b} samples: each anchor compared with the other {b - 1} of "
            "its batch"
            + (f" and {memory:,} remembered embeddings of earlier batches" if memory else "")
            + f", {b - 1 + memory:,} candidates"
            + (" once the memory was full" if memory else "")
        )
    if config.micro_batch:
        text += (
            f"; the encoder embedded {config.micro_batch} rows at a time (gradient caching: "
            "the loss is that of the whole batch)"
        )
    if config.accumulate > 1:
        text += (
            f"; {config.accumulate} batches' gradients summed per optimizer step "
            f"({config.accumulate * b} samples), each batch's loss over its own rows"
        )
    return text


def _terms_note(terms: Mapping[str, float]) -> str:
    if len(terms) < 2:
        return ""
    total = " + ".join(f"{_weight(w)} × {html.escape(t)}" for t, w in terms.items())
    return (
        f"<p>Each term is logged unweighted; <code>loss</code> is the total minimised, {total}.</p>"
    )


def _anomaly_section(anomaly: AnomalyResult) -> list[str]:
    head = (
        "<tr><th>score</th><th>ROC-AUC</th><th>average precision</th><th>threshold</th>"
        "<th>anomalies flagged</th><th>normal flagged</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(_SCORE_LABELS.get(name, name))}</td>"
        + "".join(
            f"<td class='num'>{_number(values.get(key, ''))}</td>"
            for key in ("roc_auc", "average_precision", "threshold", "detected", "false_alarms")
        )
        + "</tr>"
        for name, values in anomaly.scores.items()
    )
    return [
        "<h2>Anomaly detection</h2>",
        f"<p>Class {html.escape(anomaly.class_name)} was held out of training and "
        f"validation. The {anomaly.normal} normal test samples and the "
        f"{anomaly.anomalies} samples of that class are scored (higher = more "
        f"anomalous; k = {anomaly.k} nearest training embeddings); ROC-AUC and "
        "average precision take the anomalies as the positive class. Each threshold is the "
        "95th percentile of the validation split's scores (normal samples only).</p>",
        f"<table>{head}{rows}</table>",
        *_anomaly_baseline(anomaly),
    ]


_BASELINE_LABELS = {
    "raw_knn": "mean distance to the k nearest training rows",
    "raw_lof": "local outlier factor (scikit-learn, novelty=True)",
}


def _anomaly_baseline(anomaly: AnomalyResult) -> list[str]:
    """The raw-input baseline of the anomaly section: what training bought."""
    if not anomaly.baseline:
        return []
    rows = "".join(
        f"<tr><td>{html.escape(_BASELINE_LABELS.get(name, name))}</td>"
        + "".join(
            f"<td class='num'>{_number(values.get(key, ''))}</td>"
            for key in ("roc_auc", "average_precision")
        )
        + "</tr>"
        for name, values in anomaly.baseline.items()
    )
    best = max(v["roc_auc"] for v in anomaly.scores.values()) if anomaly.scores else None
    raw = max(v["roc_auc"] for v in anomaly.baseline.values())
    verdict = (
        ""
        if best is None
        else f" The run's best score reached ROC-AUC {_number(best)}, the best raw score "
        f"{_number(raw)}: "
        + (
            "training bought something over the raw inputs."
            if best > raw
            else "training bought nothing over the raw inputs on this split."
        )
    )
    return [
        "<h3>Baseline: the raw inputs, no training</h3>",
        "<p>The same normal test samples and anomalies, scored without the network: each "
        "feature (pixel) standardized with the training split's mean and deviation, then "
        f"the mean Euclidean distance to the k = {anomaly.k} nearest training rows, and "
        "the local outlier factor of a LocalOutlierFactor fitted on the training rows."
        f"{verdict}</p>",
        "<table><tr><th>raw-input score</th><th>ROC-AUC</th><th>average precision</th></tr>"
        f"{rows}</table>",
    ]


def _text_sections(result: RunResult, rows: Any) -> list[str]:
    """The test metrics of a text run that the field reports: correlations, MRR@10."""
    test = result.test
    if "spearman" in test:
        return [
            "<h2>Semantic similarity (test pairs)</h2>",
            f"<p>The cosine similarity of the embeddings of each of the "
            f"{result.evaluation.pairs.get('test', '?')} test pairs against its gold score: "
            "Spearman's rank correlation ρ (the number the STS literature reports) and "
            "Pearson's r, as sentence-transformers' EmbeddingSimilarityEvaluator computes "
            "them.</p>",
            _table(rows(["spearman", "pearson"])),
        ]
    if "mrr_at_10" in test:
        keys = ["mrr_at_10", *(k for k in test if k.startswith("recall_at_"))]
        return [
            "<h2>Retrieval (test anchors)</h2>",
            f"<p>Each of the {result.evaluation.pairs.get('test', '?')} test anchors ranks "
            "every test positive by cosine similarity; its own positive is the one relevant "
            "document (copies of a text count as one). MRR@10 and recall@k as "
            "sentence-transformers' InformationRetrievalEvaluator computes them.</p>",
            _table(rows(keys)),
        ]
    return []


def _pair_split(split: Mapping[str, Any] | None) -> bool:
    """Whether a run's recorded split is that of a pair file (by images or by pairs)."""
    return split is not None and split.get("by") in ("images", "pairs")


def _raw_paragraph(result: RunResult) -> str:
    """What the raw-inputs column of the tables is, and how the embedding compares."""
    raw = result.raw
    assert raw is not None
    kind = {
        "images": "the pixels of each image, standardized per channel by the training "
        "split's mean and spread, then flattened",
        "vectors": "the features, each standardized by the training split's mean and spread",
    }
    what = kind.get(result.raw_kind, "the inputs as read")
    pairs = " (for a pair file, the distance between the two raw images of each pair)"
    gains = []
    for key in ("precision_at_1", "map_at_r", "roc_auc"):
        mine, base = result.test.get(key), raw.test.get(key)
        if mine is not None and base is not None:
            gains.append(f"{metric_name(key)} {mine - base:+.4f}")
    gained = f" Training changed {', '.join(gains)} against the raw inputs." if gains else ""
    return (
        "<p>The <em>raw inputs</em> column is the baseline of what training bought: the "
        f"same metrics on the same validation and test splits, with {what}, compared by "
        f"{html.escape(raw.distance)} distance{pairs if result.config.pair_split else ''}; "
        "its threshold is chosen on the validation pairs as the embedding's is. Nothing is "
        f"trained for it.{gained}</p>"
    )


# ----------------------------------------------------------------------------- probes (SSL)

_PROBE_FIGURES = ("neighbours", "embedding_unlabelled")


def _probe_section(probes: Probes | None, figures: Mapping[str, Path]) -> list[str]:
    """The k-NN and linear-probe accuracies (embedding, raw inputs) and the neighbours."""
    shown = [_figure(n, figures[n], wide=n == "neighbours") for n in _PROBE_FIGURES if n in figures]
    if probes is None:
        return ["<h2>Nearest neighbours</h2>", *shown] if shown else []
    parts = ["<h2>Classification by the frozen embedding (k-NN and linear probe)</h2>"]
    if probes.skipped is not None:
        parts.append(
            f"<p>k-NN and linear-probe accuracy not measured: {html.escape(probes.skipped)}.</p>"
        )
        return parts + shown
    head = "<tr><th>features</th><th>k-NN accuracy</th><th>linear-probe accuracy</th></tr>"
    body = "".join(
        f"<tr><td>{what}</td>"
        + "".join(
            f"<td class='num'>{metric_text(values.get(key))}</td>"
            for key in ("knn_accuracy", "linear_probe_accuracy")
        )
        + "</tr>"
        for what, values in (
            ("the trained embedding", dict(probes.embedding)),
            ("the raw inputs (baseline)", dict(probes.raw_inputs)),
        )
    )
    parts += [
        f"<p>The measures self-supervised learning reports, after training (labels are "
        f"read only here). The {probes.train} training samples are the memory and the "
        f"{probes.test} test samples the queries. <b>k-NN accuracy</b>: every vector "
        f"L2-normalized; a query's k = {probes.k} training neighbours of highest cosine "
        f"similarity s vote for their class with weight exp(s / {probes.temperature:g}) "
        "(Wu et al. 2018, DINO's k-NN evaluation); the class of most weight is predicted. "
        "<b>Linear-probe accuracy</b>: logistic regression (scikit-learn, L-BFGS, C = 1) "
        "fitted on the training vectors standardized per dimension, applied to the test "
        "vectors. The raw inputs are the pixels or features flattened and standardized "
        "by the training split: what a classifier gets without any training of the "
        "network.</p>",
        f"<table>{head}{body}</table>",
    ]
    if probes.raw_skipped is not None:
        parts.append(f"<p>{html.escape(probes.raw_skipped)}.</p>")
    parts += [f"<p>Note: {html.escape(note)}.</p>" for note in probes.notes]
    return parts + shown


def write_report(path: str | Path, result: RunResult, *, title: str = "contrastkit run") -> Path:
    """Write the report of a run to ``path`` and return it.

    Args:
        path: the HTML file to write.
        result: the run, as :func:`~contrastkit.app.run.train_run` returns it; its
            ``figures`` (name → PNG file) are embedded in the page.
        title: the page's heading.
    """
    out = Path(path)
    config, data, evaluation = result.config, result.data, result.evaluation
    seconds = result.seconds
    extended = (
        f" (extended from {result.extended_from})" if result.extended_from is not None else ""
    )
    summary = [
        f"{_trained(result)}, {config.embedding_dim}-dimensional embedding, "
        f"{html.escape(evaluation.distance)} distance, {config.epochs} epochs{extended}"
        + _best_text(result),
        f"data: {html.escape(data.source)}; {data.train} training, {data.validation} "
        f"validation and {data.test} test "
        + ("pairs" if config.pair_split else "samples")
        + (
            f" ({html.escape(pair_split_note(data.split))})"
            if data.split is not None and _pair_split(data.split)
            else ""
        ),
        html.escape(_batches(config, result.train_batch)),
        html.escape(result.environment.describe())
        + (f"; run time {seconds['total']:.1f} s" if "total" in seconds else ""),
    ]
    test = result.test
    negatives = evaluation.pairs.get("test_negative")

    def rows(keys: list[str]) -> list[tuple[str, str]]:
        return [
            (metric_name(k), metric_text(test[k], negative_pairs=_negatives(k, negatives)))
            for k in keys
        ]

    raw = result.raw

    def table(keys: list[str]) -> str:  # beside the raw-input baseline, when there is one
        if raw is None:
            return _table(rows(keys))
        body = "".join(
            f"<tr><td>{html.escape(metric_name(k))}</td><td class='num'>"
            + html.escape(metric_text(test[k], negative_pairs=_negatives(k, negatives)))
            + "</td><td class='num'>"
            + html.escape(
                metric_text(raw.test[k])  # the same pairs: their count is in the column before
                if k in raw.test
                else "—"
            )
            + "</td></tr>"
            for k in keys
        )
        return (
            "<table><tr><th>metric</th><th>trained embedding</th><th>raw inputs</th></tr>"
            f"{body}</table>"
        )

    verification_keys = [
        k
        for k in test
        if k in ("roc_auc", "eer", "threshold", "accuracy", "val_accuracy") or far_of(k) is not None
    ]
    retrieval_keys = [
        k for k in test if k in ("precision_at_1", "map_at_r") or k.startswith("recall_at_")
    ]
    if "mrr_at_10" in test:  # anchor-positive texts: their own section
        retrieval_keys = []
    verification, retrieval = rows(verification_keys), rows(retrieval_keys)
    pairs = evaluation.pairs
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "".join(f"<p class='summary'>{s}</p>" for s in summary),
    ]
    parts += _text_sections(result, rows)
    if verification:
        given = "test pairs as given" if config.text_kind else "balanced test pairs"
        parts += [
            "<h2>Verification (test pairs)</h2>",
            f"<p>{pairs.get('test', '?')} {given} ({negatives} of them dissimilar"
            + (", by the cosine distance of their embeddings" if config.text_kind else "")
            + f"); the threshold is chosen on {pairs.get('validation', '?')} validation pairs "
            "and applied unchanged to the test pairs. A true accept rate (TAR) at a false "
            "accept rate (FAR) below 1 / (dissimilar pairs) cannot be measured from these "
            "pairs.</p>",
            table(verification_keys),
        ]
    if evaluation.verification_skipped:
        parts.append(f"<p>Not measurable: {html.escape(evaluation.verification_skipped)}.</p>")
    if retrieval:
        parts += [
            "<h2>Retrieval (test samples, leave-one-out)</h2>",
            "<p>Each test sample queries all the others. Precision@1 is the accuracy of "
            "a 1-nearest-neighbour (1-NN) classifier on the embeddings, leave-one-out over "
            "the test samples: the k-NN accuracy that self-supervised learning reports.</p>",
            table(retrieval_keys),
        ]
    if evaluation.retrieval_skipped:
        parts.append(f"<p>Retrieval not measured: {html.escape(evaluation.retrieval_skipped)}</p>")
    if raw is not None and (verification or retrieval):
        parts.append(_raw_paragraph(result))
    elif result.raw_skipped:
        parts.append(f"<p>No raw-input baseline: {html.escape(result.raw_skipped)}.</p>")
    parts += _probe_section(result.probes, result.figures)
    if "reconstruction_error" in test:
        parts += [
            "<h2>Reconstruction (test samples)</h2>",
            "<p>The autoencoder's error on the test inputs (scaled to [0, 1] by the "
            "training split's range), in its reconstruction loss.</p>",
            _table(rows(["reconstruction_error"])),
        ]
    figures = result.figures
    if result.anomaly is not None:
        parts += _anomaly_section(result.anomaly)
        parts += [_figure(n, f) for n, f in figures.items() if n.startswith("anomaly_")]
    parts.append("<h2>Figures</h2>")
    parts += [
        _figure(n, f)
        for n, f in figures.items()
        if not n.startswith("anomaly_") and n not in _PROBE_FIGURES
    ]
    parts += ["<h2>History</h2>", _terms_note(result.terms)]
    parts.append(_history_table(list(result.history)))
    if result.notes:
        parts += [
            "<h2>Notes</h2><ul>",
            *(f"<li>{html.escape(n)}</li>" for n in result.notes),
            "</ul>",
        ]
    parts += [
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(config.to_toml())}</pre>",
        "</body></html>",
    ]
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


_MAP_NAMES = {
    "pca": "PCA of the pixels",
    "autoencoder": "autoencoder, 2-D code (reconstruction)",
    "siamese": "siamese network, 2-D output (contrastive, DrLIM)",
}


def write_comparison_report(
    path: str | Path,
    *,
    comparison: Mapping[str, Any],
    figures: Mapping[str, str | Path],
    title: str = "contrastkit comparison: PCA, autoencoder, siamese network",
) -> Path:
    """Write the page of ``contrastkit compare`` to ``path`` and return it.

    Args:
        path: the HTML file to write.
        comparison: what :func:`contrastkit.app.compare.run_comparison` returns: ``settings``,
            ``maps`` (method → metrics), ``anomaly`` (``class``, ``normal``,
            ``anomalies``, ``k`` and ``runs``: objective → score → ``roc_auc``,
            ``average_precision``) and ``seconds``.
        figures: ``"maps"`` and ``"anomaly_roc"`` → PNG file, embedded in the page.
        title: the page's heading.
    """
    settings = comparison.get("settings", {})
    maps = comparison.get("maps", {})
    anomaly = comparison.get("anomaly", {})
    map_head = (
        "<tr><th>2-D map</th><th>precision@1</th><th>MAP@R</th><th>ROC-AUC</th>"
        "<th>equal error rate</th><th>time (s)</th></tr>"
    )
    map_rows = "".join(
        f"<tr><td>{html.escape(_MAP_NAMES.get(name, name))}</td>"
        + "".join(
            f"<td class='num'>{_number(values.get(k, ''))}</td>"
            for k in ("precision_at_1", "map_at_r", "roc_auc", "eer")
        )
        + f"<td class='num'>{values.get('seconds', 0.0):.1f}</td></tr>"
        for name, values in maps.items()
    )
    runs = anomaly.get("runs", {})
    methods = [m for m in _SCORE_LABELS if any(m in scores for scores in runs.values())]
    anomaly_head = (
        "<tr><th>objective</th>"
        + "".join(f"<th>{html.escape(_SCORE_LABELS[m])}: ROC-AUC / AP</th>" for m in methods)
        + "</tr>"
    )
    anomaly_rows = "".join(
        f"<tr><td>{html.escape(objective)}</td>"
        + "".join(
            (
                f"<td class='num'>{_number(scores[m]['roc_auc'])} / "
                f"{_number(scores[m]['average_precision'])}</td>"
            )
            if m in scores
            else "<td class='num'>—</td>"
            for m in methods
        )
        + "</tr>"
        for objective, scores in runs.items()
    )
    links = "".join(
        f"<li><a href='runs/{html.escape(name)}/report.html'>{html.escape(name)}</a></li>"
        for name in [f"map-{m}" for m in maps if m != "pca"] + [f"anomaly-{o}" for o in runs]
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p class='summary'>scikit-learn's handwritten digits (8×8 pixels, 10 classes); "
        f"{settings.get('epochs')} epochs of {settings.get('steps_per_epoch')} steps, batch "
        f"size {settings.get('batch_size')}, hidden widths {settings.get('hidden')}, seed "
        f"{settings.get('seed')}; run time {comparison.get('seconds', float('nan')):.1f} s</p>",
        "<h2>2-D maps of the test digits</h2>",
        f"<p>{settings.get('test_samples')} test digits, embedded by each method; "
        "verification on balanced test pairs with Euclidean distances in the map (the "
        "threshold chosen on validation pairs), retrieval with every test digit querying "
        "the others. PCA is fitted on the training split.</p>",
        f"<table>{map_head}{map_rows}</table>",
        *(_figure(n, figures[n], wide=True) for n in ("maps",) if n in figures),
        "<h2>Anomaly detection</h2>",
        f"<p>Digit {html.escape(str(anomaly.get('class')))} is held out of training and "
        f"validation; the {anomaly.get('normal')} normal test digits and the "
        f"{anomaly.get('anomalies')} held-out digits are scored "
        f"({settings.get('anomaly_embedding_dim')}-dimensional codes; combined: reconstruction "
        f"+ 1 × contrastive on the code; k = {anomaly.get('k')} nearest training embeddings). "
        "Higher scores mean more anomalous; ROC-AUC and "
        "average precision (AP) take the anomalies as the positive class; — : the run has "
        "no such score.</p>",
        f"<table>{anomaly_head}{anomaly_rows}</table>",
        _figure("anomaly_roc", figures["anomaly_roc"], wide=True)
        if "anomaly_roc" in figures
        else "",
        "<h2>The runs</h2><p>Each run's own report (history, histograms of the scores, "
        "configuration):</p>",
        f"<ul>{links}</ul>",
        "</body></html>",
    ]
    out = Path(path)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
