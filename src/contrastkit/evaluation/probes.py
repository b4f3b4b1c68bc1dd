r"""How much class information frozen embeddings hold: the k-NN and linear-probe accuracies.

The measures self-supervised learning reports (SimCLR, MoCo, DINO): the network is
frozen, the *training* split's embeddings (with their labels) are the memory or the
training set of a simple classifier, and the *test* split's embeddings are classified.

* :func:`knn_accuracy`: the weighted k-nearest-neighbour classifier of Wu et al. (2018,
  "Unsupervised feature learning via non-parametric instance discrimination"), as
  DINO's ``eval_knn.py`` computes it. Every embedding is L2-normalized; a query
  :math:`q` takes its :math:`k` training neighbours :math:`x_i` of highest cosine
  similarity :math:`s_i = q^\top x_i`, each votes for its class :math:`y_i` with the
  weight :math:`w_i = \exp(s_i / T)` (``weighting="temperature"``, :math:`T = 0.07`) or
  :math:`w_i = 1` (``weighting="majority"``: a plain majority vote), and the prediction
  is :math:`\arg\max_c \sum_{i \le k} w_i [y_i = c]` (a tie goes to the lowest class).
  The accuracy is the share of queries predicted right.
* :func:`linear_probe_accuracy`: multinomial logistic regression
  (:class:`sklearn.linear_model.LogisticRegression`, L-BFGS, ``C = 1``) fitted on the
  training embeddings standardized per dimension (mean and standard deviation of the
  training split), evaluated on the test embeddings standardized alike; fitted on one
  BLAS thread.

Inputs may be torch tensors (any device; detached), numpy arrays or lists; they are
checked before anything is computed.

Example:
    >>> import torch
    >>> from contrastkit.evaluation.probes import knn_accuracy
    >>> train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> knn_accuracy(train, labels, torch.tensor([[1.0, 0.2], [0.2, 1.0]]), [0, 1], k=2)
    1.0
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from contrastkit._validation import check_choice, check_int, check_positive
from contrastkit.evaluation._checks import ArrayLike, check_finite_array, check_real_array

__all__ = [
    "KNN_K",
    "KNN_TEMPERATURE",
    "LinearProbe",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "linear_probe_accuracy",
]

KNN_K = 20
"""The neighbours of the k-NN classifier (DINO's and Wu et al.'s default is 20 or 200)."""
KNN_TEMPERATURE = 0.07
"""The temperature of the k-NN vote weights :math:`\\exp(s / T)` (Wu et al., DINO)."""

Weighting = Literal["temperature", "majority"]
_WEIGHTINGS: tuple[Weighting, ...] = ("temperature", "majority")
_CHUNK = 1024  # queries compared with the whole memory at a time


def _embeddings(name: str, x: object) -> np.ndarray:
    a = check_real_array(name, x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row, got shape {a.shape}")
    a = a.astype(np.float64)
    check_finite_array(name, a)
    return a


def _labels(name: str, x: object, rows: int, of: str) -> np.ndarray:
    a = check_real_array(name, x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class labels, got dtype {a.dtype}")
    if a.shape != (rows,):
        raise ValueError(
            f"{name} must have shape ({rows},), one label per row of {of}, got {a.shape}"
        )
    if rows and a.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got {int(a.min())}")
    return a.astype(np.int64)


def _check_split(
    train_embeddings: object,
    train_labels: object,
    test_embeddings: object,
    test_labels: object | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    train = _embeddings("train_embeddings", train_embeddings)
    test = _embeddings("test_embeddings", test_embeddings)
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            f"test_embeddings must have the {train.shape[1]} columns of train_embeddings, "
            f"got shape {test.shape}"
        )
    y_train = _labels("train_labels", train_labels, train.shape[0], "train_embeddings")
    y_test = (
        None
        if test_labels is None
        else _labels("test_labels", test_labels, test.shape[0], "test_embeddings")
    )
    return train, y_train, test, y_test


def knn_predict(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    weighting: Weighting = "temperature",
) -> np.ndarray:
    r"""The class the weighted k-NN classifier predicts for each test embedding.

    See the module's formula: cosine similarity of L2-normalized embeddings, the ``k``
    most similar training embeddings vote with weight :math:`\exp(s / T)`
    (``"temperature"``) or 1 (``"majority"``); a tie goes to the lowest class.

    Args:
        train_embeddings: ``(N, D)`` the memory.
        train_labels: ``(N,)`` integer class of each memory row (``>= 0``).
        test_embeddings: ``(M, D)`` the queries.
        k: the neighbours, ``1 <= k <= N``.
        temperature: :math:`T > 0` of the ``"temperature"`` weights.
        weighting: ``"temperature"`` or ``"majority"``.

    Returns:
        ``(M,)`` int64 predicted classes.

    Raises:
        TypeError: non-numeric embeddings, non-integer labels or a non-integer ``k``.
        ValueError: wrong shapes, empty or non-finite embeddings, negative labels,
            ``k < 1`` or ``k > N``, ``temperature <= 0`` or an unknown ``weighting``.
    """
    train, y_train, test, _ = _check_split(train_embeddings, train_labels, test_embeddings, None)
    k = check_int("k", k, minimum=1)
    if k > train.shape[0]:
        raise ValueError(
            f"k must be at most the {train.shape[0]} rows of train_embeddings, got {k}"
        )
    temperature = check_positive("temperature", temperature)
    weighting = check_choice("weighting", weighting, _WEIGHTINGS)
    memory = torch.nn.functional.normalize(torch.from_numpy(train), dim=1)
    queries = torch.nn.functional.normalize(torch.from_numpy(test), dim=1)
    labels = torch.from_numpy(y_train)
    classes = int(labels.max()) + 1
    out = []
    for chunk in queries.split(_CHUNK):
        similarity, index = (chunk @ memory.T).topk(k, dim=1)
        if weighting == "temperature":
            # exp((s - 1) / T): the same argmax as exp(s / T), without overflow at small T
            weights = torch.exp((similarity - 1.0) / temperature)
        else:
            weights = torch.ones_like(similarity)
        votes = torch.zeros(chunk.shape[0], classes, dtype=weights.dtype)
        votes.scatter_add_(1, labels[index], weights)
        out.append(votes.argmax(dim=1))  # the first maximum: the lowest class on a tie
    return torch.cat(out).numpy()


def knn_accuracy(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    weighting: Weighting = "temperature",
) -> float:
    """The accuracy of :func:`knn_predict` on the test embeddings: share predicted right.

    Args:
        train_embeddings: ``(N, D)`` the memory (the training split's embeddings).
        train_labels: ``(N,)`` their integer classes.
        test_embeddings: ``(M, D)`` the queries (the test split's embeddings).
        test_labels: ``(M,)`` their integer classes.
        k: the neighbours, ``1 <= k <= N`` (default 20).
        temperature: the vote weights' temperature (default 0.07).
        weighting: ``"temperature"`` (Wu et al., DINO) or ``"majority"``.

    Raises:
        TypeError, ValueError: as :func:`knn_predict`, and for ``test_labels`` of the
            wrong type or shape.
    """
    _, _, _, y_test = _check_split(train_embeddings, train_labels, test_embeddings, test_labels)
    predicted = knn_predict(
        train_embeddings,
        train_labels,
        test_embeddings,
        k=k,
        temperature=temperature,
        weighting=weighting,
    )
    return float(np.mean(predicted == y_test))


@dataclass(frozen=True)
class LinearProbe:
    """What :func:`linear_probe` measured.

    Attributes:
        accuracy: the share of test embeddings classified right.
        iterations: the L-BFGS iterations the fit took.
        converged: whether it converged within ``max_iter`` (scikit-learn's
            ``ConvergenceWarning`` is caught and reported here instead).
    """

    accuracy: float
    iterations: int
    converged: bool


def linear_probe(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
) -> LinearProbe:
    """Fit logistic regression on standardized training embeddings; its test accuracy.

    Args:
        train_embeddings: ``(N, D)`` the training split's (frozen) embeddings.
        train_labels: ``(N,)`` their integer classes; at least 2 classes.
        test_embeddings: ``(M, D)`` the test split's embeddings.
        test_labels: ``(M,)`` their integer classes.
        c: the inverse L2 regularization strength of
            :class:`~sklearn.linear_model.LogisticRegression`, ``> 0``.
        max_iter: L-BFGS iterations at most, ``>= 1``.

    Raises:
        TypeError: non-numeric embeddings or non-integer labels, ``max_iter``.
        ValueError: wrong shapes, empty or non-finite embeddings, negative labels, a
            single training class, ``c <= 0`` or ``max_iter < 1``.
    """
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits

    train, y_train, test, y_test = _check_split(
        train_embeddings, train_labels, test_embeddings, test_labels
    )
    c = check_positive("c", c)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    if np.unique(y_train).size < 2:
        raise ValueError(
            f"train_labels must hold at least 2 classes to fit a classifier, got "
            f"{np.unique(y_train).size}"
        )
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std < 1e-12] = 1.0  # a constant dimension stays 0
    # one BLAS thread: the fit is small matrix products, and on a busy machine threads
    # that wait for each other cost far more than they share (3,500 × 32 embeddings on
    # 2 loaded cores: 43 s with 2 threads, 1.2 s with one)
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(C=c, max_iter=max_iter).fit((train - mean) / std, y_train)
    converged = True
    for w in caught:  # any other warning goes on as it came
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    predicted = model.predict((test - mean) / std)
    return LinearProbe(
        accuracy=float(np.mean(predicted == y_test)),
        iterations=int(np.max(model.n_iter_)),
        converged=converged,
    )


def linear_probe_accuracy(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
) -> float:
    """The test accuracy of :func:`linear_probe` (same arguments, same checks)."""
    return linear_probe(
        train_embeddings, train_labels, test_embeddings, test_labels, c=c, max_iter=max_iter
    ).accuracy
