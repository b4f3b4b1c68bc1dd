"""Evaluation of embeddings: verification and retrieval metrics, anomaly scores.

* :mod:`~contrastkit.evaluation.metrics`: ROC, EER, TAR at FAR, a threshold chosen on
  validation pairs; precision@1, recall@k and MAP@R (checked against scikit-learn).
* :mod:`~contrastkit.evaluation.anomaly`: reconstruction, k-nearest-neighbour and
  centroid scores, with their ROC-AUC and average precision.
"""

from contrastkit.evaluation.anomaly import (
    anomaly_metrics,
    centroid_scores,
    knn_scores,
    reconstruction_errors,
)
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
    "anomaly_metrics",
    "best_threshold",
    "centroid_scores",
    "equal_error_rate",
    "knn_scores",
    "map_at_r",
    "precision_at_1",
    "recall_at_k",
    "reconstruction_errors",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verification_metrics",
    "verification_pairs",
]
