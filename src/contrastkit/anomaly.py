"""Anomaly scores; they live in :mod:`contrastkit.evaluation.anomaly`.

This module keeps ``from contrastkit.anomaly import ...`` working.
"""

from contrastkit.evaluation.anomaly import (
    anomaly_metrics,
    centroid_scores,
    knn_scores,
    reconstruction_errors,
)

__all__ = ["anomaly_metrics", "centroid_scores", "knn_scores", "reconstruction_errors"]
