"""Verification and retrieval metrics; they live in :mod:`contrastkit.evaluation.metrics`.

This module keeps ``from contrastkit.metrics import ...`` working.
"""

from contrastkit.evaluation.metrics import (
    accuracy_at_threshold,
    best_threshold,
    equal_error_rate,
    map_at_r,
    precision_at_1,
    recall_at_k,
    retrieval_metrics,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_metrics,
    verification_pairs,
)

__all__ = [
    "accuracy_at_threshold",
    "best_threshold",
    "equal_error_rate",
    "map_at_r",
    "precision_at_1",
    "recall_at_k",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verification_metrics",
    "verification_pairs",
]
