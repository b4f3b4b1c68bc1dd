"""The run report: one self-contained HTML page (figures embedded, no external files).

The page shows, in order: what was trained on what data and how long it took; the test
metrics (verification with the threshold chosen on validation, then retrieval); the
figures; the per-epoch history; the notes of the run; the resolved configuration.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

_CAPTIONS = {
    "loss_curve": "The contrastive loss per pair as a function of the distance: similar pairs "
    "(red, dashed) are pulled together, dissimilar pairs (blue) are pushed out to the margin.",
    "embedding": "Test samples in the embedding, coloured by class.",
    "roc": "ROC curve of the test pairs (a pair is accepted as similar when its distance is at "
    "most the threshold).",
    "distances": "Distances of similar and dissimilar test pairs, with the threshold chosen on "
    "the validation split.",
    "history": "Training and validation loss per epoch.",
}

_METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "eer": "equal error rate",
    "threshold": "threshold (chosen on validation)",
    "accuracy": "accuracy at the threshold",
    "val_accuracy": "validation accuracy at the threshold",
    "precision_at_1": "precision@1",
    "map_at_r": "MAP@R",
}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #222;
       padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; width: 46%; margin: 0.5em 1.5%; vertical-align: top; }
figure img { width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.summary { color: #555; }
"""


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def _metric_label(key: str) -> str:
    if key in _METRIC_NAMES:
        return _METRIC_NAMES[key]
    if key.startswith("recall_at_"):
        return f"recall@{key.removeprefix('recall_at_')}"
    return key


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("metric", "value")) -> str:
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{_number(v)}</td></tr>" for k, v in rows
    )
    return f"<table><tr><th>{header[0]}</th><th>{header[1]}</th></tr>{body}</table>"


def _history_table(history: list[Mapping[str, Any]]) -> str:
    if not history:
        return "<p>No epoch finished.</p>"
    keys = [k for k in history[0] if k != "epoch"]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["epoch", *keys])
    rows = "".join(
        "<tr>"
        + "".join(f"<td class='num'>{_number(r.get(k, ''))}</td>" for k in ["epoch", *keys])
        + "</tr>"
        for r in history
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def write_report(
    path: str | Path,
    *,
    config: Any,
    metrics: Mapping[str, Any],
    figures: Mapping[str, str | Path],
    title: str = "contrastkit run",
) -> Path:
    """Write the report of a run to ``path`` and return it.

    Args:
        path: the HTML file to write.
        config: the run's config (anything with ``to_toml()``, or a mapping).
        metrics: ``test`` (a mapping of metric values), ``history`` (a list of per-epoch
            dicts), and optionally ``data``, ``seconds``, ``distance``, ``pairs``, ``notes``.
        figures: figure name → PNG file; the images are embedded in the page.
        title: the page's heading.
    """
    out = Path(path)
    config_text = config.to_toml() if hasattr(config, "to_toml") else str(dict(config))
    data = metrics.get("data", {})
    seconds = metrics.get("seconds", {})
    summary = []
    if hasattr(config, "loss"):
        summary.append(
            f"{html.escape(config.loss)} loss, {config.embedding_dim}-dimensional embedding, "
            f"{html.escape(str(metrics.get('distance', config.distance)))} distance, "
            f"{config.epochs} epochs"
        )
    if data:
        summary.append(
            f"data: {html.escape(str(data.get('source', '')))}; "
            f"{data.get('train')} training, {data.get('validation')} validation and "
            f"{data.get('test')} test samples"
        )
    if seconds:
        summary.append(f"run time {seconds.get('total', float('nan')):.1f} s")
    test = metrics.get("test", {})
    verification = [
        (_metric_label(k), v)
        for k, v in test.items()
        if k in ("roc_auc", "eer", "threshold", "accuracy", "val_accuracy") or k.startswith("tar@")
    ]
    retrieval = [
        (_metric_label(k), v)
        for k, v in test.items()
        if k in ("precision_at_1", "map_at_r") or k.startswith("recall_at_")
    ]
    pairs = metrics.get("pairs", {})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "".join(f"<p class='summary'>{s}</p>" for s in summary),
        "<h2>Verification (test pairs)</h2>",
        f"<p>{pairs.get('test', '?')} balanced test pairs; the threshold is chosen on "
        f"{pairs.get('validation', '?')} validation pairs and applied unchanged to the test "
        "pairs.</p>",
        _table(verification),
    ]
    if retrieval:
        parts += [
            "<h2>Retrieval (test samples, leave-one-out)</h2>",
            "<p>Each test sample queries all the others.</p>",
            _table(retrieval),
        ]
    parts.append("<h2>Figures</h2>")
    for name, file in figures.items():
        encoded = base64.b64encode(Path(file).read_bytes()).decode("ascii")
        caption = _CAPTIONS.get(name, name)
        parts.append(
            f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts += ["<h2>History</h2>", _history_table(list(metrics.get("history", [])))]
    notes = metrics.get("notes") or []
    if notes:
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{html.escape(n)}</li>" for n in notes), "</ul>"]
    parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(config_text)}</pre>", "</body></html>"]
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
