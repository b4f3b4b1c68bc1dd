"""Evaluation of embeddings: verification and retrieval metrics, anomaly scores.

* :mod:`~contrastkit.evaluation.metrics`: ROC, EER, TAR at FAR, a threshold chosen on
  validation pairs; precision@1, recall@k and MAP@R (checked against scikit-learn).
* :mod:`~contrastkit.evaluation.pairs_list`: verification on a standard pairs list by
  LFW's protocol: the threshold of each of 10 folds chosen on the other 9, the mean and
  standard deviation of the folds' accuracies.
* :mod:`~contrastkit.evaluation.anomaly`: reconstruction, k-nearest-neighbour and
  centroid scores, with their ROC-AUC and average precision.
* :mod:`~contrastkit.evaluation.probes`: the k-NN accuracy (weighted vote of the
  nearest training embeddings, Wu et al. 2018 / DINO) and the linear-probe accuracy
  (logistic regression on frozen embeddings) that self-supervised learning reports.
* :mod:`~contrastkit.evaluation.text`: sentence embeddings: the STS correlations
  (Pearson, Spearman; checked against scipy), MRR@10 and recall@k of anchors searching
  their positives, and the verification of labelled text pairs.
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
from contrastkit.evaluation.pairs_list import (
    CrossValidatedAccuracy,
    cross_validated_accuracy,
    cross_validated_verification,
    pair_folds,
    pairs_list_verification,
)
from contrastkit.evaluation.probes import (
    knn_accuracy,
    knn_predict,
    linear_probe,
    linear_probe_accuracy,
)
from contrastkit.evaluation.text import (
    anchor_positive_retrieval,
    cosine_similarities,
    pair_verification_metrics,
    similarity_correlation,
)

__all__ = [
    "CrossValidatedAccuracy",
    "accuracy_at_threshold",
    "anchor_positive_retrieval",
    "anomaly_metrics",
    "best_threshold",
    "centroid_scores",
    "cosine_similarities",
    "cross_validated_accuracy",
    "cross_validated_verification",
    "equal_error_rate",
    "knn_accuracy",
    "knn_predict",
    "knn_scores",
    "linear_probe",
    "linear_probe_accuracy",
    "map_at_r",
    "pair_folds",
    "pair_verification_metrics",
    "pairs_list_verification",
    "precision_at_1",
    "recall_at_k",
    "reconstruction_errors",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "similarity_correlation",
    "tar_at_far",
    "verification_metrics",
    "verification_pairs",
]
