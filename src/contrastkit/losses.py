"""The losses as :class:`torch.nn.Module` objects.

Each Module holds its hyper-parameters, checks them when it is built, and calls the
function of the same loss in :mod:`contrastkit.functional`, where the formula and its
documentation live.

A temperature may be given as an :class:`torch.nn.Parameter`; the Module then
registers it, so an optimizer over ``loss_fn.parameters()`` learns it.

The losses over all pairs of a batch take ``chunk_size`` (rows per tile of their
memory-efficient path; ``None`` chooses from the batch size), as their functions do, and
``gather=True`` (with ``group``) to take candidates from every process of a
:mod:`torch.distributed` group: the loss every process returns is then that of the whole
batch (see :mod:`contrastkit.distributed`). Per call they take optional sample ``ids``
(a candidate with its anchor's id is neither a positive nor a negative), and the
labelled ones a separate set of ``candidates`` (a gallery, a memory bank).
"""

from __future__ import annotations

from torch import Tensor, nn

from contrastkit import functional as F
from contrastkit._validation import (
    Reduction,
    check_bool,
    check_choice,
    check_chunk_size,
    check_margin,
    check_reduction,
    check_temperature,
)
from contrastkit.distances import DistanceName, get_distance
from contrastkit.distributed import ProcessGroup

__all__ = [
    "AllPairsContrastiveLoss",
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "ContrastiveLoss",
    "CosineSimilarityLoss",
    "InfoNCELoss",
    "NTXentLoss",
    "ReconstructionLoss",
    "SupConLoss",
    "TripletLoss",
]


def _temperature(temperature: object) -> float | Tensor:
    """A checked temperature: a tensor as given (a Parameter stays one), a number as float."""
    checked = check_temperature(temperature)
    return temperature if isinstance(temperature, Tensor) else checked


class _LossModule(nn.Module):
    """Holds a loss's options as attributes; ``forward`` passes them to the function.

    Each ``forward`` names every option it passes, so that the call is type-checked;
    ``_option_names`` only lists them for ``repr``.
    """

    _option_names: tuple[str, ...] = ()

    def _options(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._option_names}

    def _set_margin_options(
        self, margin: float, distance: DistanceName, reduction: Reduction
    ) -> None:
        self.margin = check_margin(margin)
        get_distance(distance)
        self.distance = distance
        self.reduction = check_reduction(reduction)

    def _set_gather(self, gather: bool, group: ProcessGroup) -> None:
        self.gather = check_bool("gather", gather)
        self.group = group

    def extra_repr(self) -> str:
        """The hyper-parameters, shown in ``repr(self)``."""
        shown = []
        for name, value in self._options().items():
            if isinstance(value, Tensor):
                shown.append(f"{name}={float(value.detach()):g} (tensor)")
            else:
                shown.append(f"{name}={value!r}")
        return ", ".join(shown)


class ContrastiveLoss(_LossModule):
    r"""Pairwise contrastive loss (Hadsell, Chopra & LeCun 2006), y = 1 similar, 0 dissimilar.

    .. math::
        L = \frac{1}{2N} \sum_n \left[ y_n d_n^2 + (1 - y_n) \max(m - d_n, 0)^2 \right]

    See :func:`contrastkit.functional.contrastive_loss` for the arguments.

    Example:
        >>> import torch
        >>> from contrastkit import ContrastiveLoss
        >>> loss_fn = ContrastiveLoss(margin=1.0)
        >>> out1, out2 = torch.zeros(2, 2), torch.tensor([[0.6, 0.8], [0.3, 0.4]])
        >>> loss_fn(out1, out2, torch.tensor([1, 0]))  # (1.0 + 0.25) / (2 * 2)
        tensor(0.3125)
    """

    _option_names = ("margin", "distance", "reduction", "caffe_legacy")

    def __init__(
        self,
        *,
        margin: float = 1.0,
        distance: DistanceName = "euclidean",
        reduction: Reduction = "mean",
        caffe_legacy: bool = False,
    ) -> None:
        super().__init__()
        self._set_margin_options(margin, distance, reduction)
        self.caffe_legacy = check_bool("caffe_legacy", caffe_legacy)

    def forward(self, x1: Tensor, x2: Tensor, y: Tensor) -> Tensor:
        """Loss of the pairs ``(x1[i], x2[i])`` with labels ``y[i]`` (1 similar, 0 not)."""
        return F.contrastive_loss(
            x1,
            x2,
            y,
            margin=self.margin,
            distance=self.distance,
            reduction=self.reduction,
            caffe_legacy=self.caffe_legacy,
        )


class TripletLoss(_LossModule):
    r"""Triplet margin loss :math:`\max(d(a, p) - d(a, n) + m, 0)` (Schroff et al. 2015).

    ``margin`` is required; see :func:`contrastkit.functional.triplet_loss`.

    Example:
        >>> import torch
        >>> from contrastkit import TripletLoss
        >>> loss_fn = TripletLoss(margin=0.2)
        >>> loss_fn(torch.zeros(1, 1), torch.tensor([[0.7]]), torch.tensor([[0.5]]))
        tensor(0.4000)
    """

    _option_names = ("margin", "distance", "reduction")

    def __init__(
        self,
        *,
        margin: float,
        distance: DistanceName = "euclidean",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self._set_margin_options(margin, distance, reduction)

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """Loss of the triplets ``(anchor[i], positive[i], negative[i])``."""
        return F.triplet_loss(
            anchor,
            positive,
            negative,
            margin=self.margin,
            distance=self.distance,
            reduction=self.reduction,
        )


class InfoNCELoss(_LossModule):
    r"""InfoNCE over a batch of (query, key) pairs; ``symmetric=True`` is CLIP's loss.

    .. math::
        \ell_i = -\log \frac{\exp(s(q_i, k_i)/\tau)}{\sum_j \exp(s(q_i, k_j)/\tau)
        + \sum_n \exp(s(q_i, n)/\tau)}

    See :func:`contrastkit.functional.info_nce`. ``negatives`` are given per call.

    Example:
        >>> import torch
        >>> from contrastkit import InfoNCELoss
        >>> loss_fn = InfoNCELoss(temperature=1.0)
        >>> round(loss_fn(torch.eye(3), torch.eye(3)).item(), 4)
        0.5514
    """

    _option_names = ("temperature", "normalize", "symmetric", "reduction", "chunk_size", "gather")

    def __init__(
        self,
        *,
        temperature: float | Tensor = 0.07,
        normalize: bool = True,
        symmetric: bool = False,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
        group: ProcessGroup = None,
    ) -> None:
        super().__init__()
        self.temperature = _temperature(temperature)
        self.normalize = check_bool("normalize", normalize)
        self.symmetric = check_bool("symmetric", symmetric)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        self._set_gather(gather, group)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        negatives: Tensor | None = None,
        *,
        ids: Tensor | None = None,
    ) -> Tensor:
        """Loss of ``query[i]`` picking ``key[i]`` among all keys and ``negatives``.

        ``ids``: optional sample id of each pair; another key with the id of
        ``query[i]`` is not one of its negatives.
        """
        return F.info_nce(
            query,
            key,
            negatives=negatives,
            ids=ids,
            temperature=self.temperature,
            normalize=self.normalize,
            symmetric=self.symmetric,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            gather=self.gather,
            group=self.group,
        )


class NTXentLoss(_LossModule):
    r"""SimCLR's NT-Xent over the 2N views of N examples (Chen et al. 2020).

    See :func:`contrastkit.functional.nt_xent`.

    Example:
        >>> import torch
        >>> from contrastkit import NTXentLoss
        >>> round(NTXentLoss(temperature=1.0)(torch.eye(2), torch.eye(2)).item(), 4)
        0.5514
    """

    _option_names = ("temperature", "reduction", "chunk_size", "gather")

    def __init__(
        self,
        *,
        temperature: float | Tensor = 0.5,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
        group: ProcessGroup = None,
    ) -> None:
        super().__init__()
        self.temperature = _temperature(temperature)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        self._set_gather(gather, group)

    def forward(self, z1: Tensor, z2: Tensor, *, ids: Tensor | None = None) -> Tensor:
        """Loss of the two views ``z1[i]``, ``z2[i]`` of each example.

        ``ids``: optional sample id of each example; the views of another example with
        the same id are not negatives.
        """
        return F.nt_xent(
            z1,
            z2,
            ids=ids,
            temperature=self.temperature,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            gather=self.gather,
            group=self.group,
        )


class SupConLoss(_LossModule):
    r"""Supervised contrastive loss :math:`L^{sup}_{out}` (Khosla et al. 2020).

    See :func:`contrastkit.functional.supcon`.

    Example:
        >>> import torch
        >>> from contrastkit import SupConLoss
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> round(SupConLoss(temperature=1.0)(emb, torch.tensor([0, 0, 1])).item(), 4)
        0.3133
    """

    _option_names = ("temperature", "normalize", "reduction", "chunk_size", "gather")

    def __init__(
        self,
        *,
        temperature: float | Tensor = 0.1,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
        group: ProcessGroup = None,
    ) -> None:
        super().__init__()
        self.temperature = _temperature(temperature)
        self.normalize = check_bool("normalize", normalize)
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        self._set_gather(gather, group)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        ids: Tensor | None = None,
        candidates: Tensor | None = None,
        candidate_labels: Tensor | None = None,
        candidate_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss of the batch ``embeddings`` with integer class ``labels``.

        ``ids``: optional sample ids (a row with its anchor's id is neither a positive
        nor a negative); ``candidates`` with ``candidate_labels`` (and ``candidate_ids``
        with ``ids``): compare the batch with these rows instead of with itself.
        """
        return F.supcon(
            embeddings,
            labels,
            ids=ids,
            candidates=candidates,
            candidate_labels=candidate_labels,
            candidate_ids=candidate_ids,
            temperature=self.temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            gather=self.gather,
            group=self.group,
        )


class CosineSimilarityLoss(_LossModule):
    r"""Mean squared error between :math:`\cos(x_1, x_2)` and a target score in [-1, 1].

    See :func:`contrastkit.functional.cosine_similarity_loss`.

    Example:
        >>> import torch
        >>> from contrastkit import CosineSimilarityLoss
        >>> x = torch.tensor([[1.0, 0.0]])
        >>> CosineSimilarityLoss()(x, x, torch.tensor([0.5]))
        tensor(0.2500)
    """

    _option_names = ("reduction",)

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, x1: Tensor, x2: Tensor, score: Tensor) -> Tensor:
        """Loss of the pairs ``(x1[i], x2[i])`` against their target ``score[i]``."""
        return F.cosine_similarity_loss(x1, x2, score, reduction=self.reduction)


class AllPairsContrastiveLoss(_LossModule):
    r"""The contrastive loss over every pair of a labelled batch: ``loss_fn(emb, labels)``.

    See :func:`contrastkit.functional.all_pairs_contrastive_loss`.

    Example:
        >>> import torch
        >>> from contrastkit import AllPairsContrastiveLoss
        >>> emb = torch.tensor([[0.0], [0.5], [0.2]])
        >>> AllPairsContrastiveLoss(margin=1.0)(emb, torch.tensor([0, 0, 1]))
        tensor(0.2300)
    """

    _option_names = ("margin", "distance", "reduction", "caffe_legacy", "chunk_size", "gather")

    def __init__(
        self,
        *,
        margin: float = 1.0,
        distance: DistanceName = "euclidean",
        reduction: Reduction = "mean",
        caffe_legacy: bool = False,
        chunk_size: int | None = None,
        gather: bool = False,
        group: ProcessGroup = None,
    ) -> None:
        super().__init__()
        self._set_margin_options(margin, distance, reduction)
        self.caffe_legacy = check_bool("caffe_legacy", caffe_legacy)
        self.chunk_size = check_chunk_size(chunk_size)
        self._set_gather(gather, group)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        ids: Tensor | None = None,
        candidates: Tensor | None = None,
        candidate_labels: Tensor | None = None,
        candidate_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss over all pairs of ``embeddings`` with integer class ``labels``.

        ``ids``: optional sample ids (a row with its anchor's id is neither a positive
        nor a negative); ``candidates`` with ``candidate_labels`` (and ``candidate_ids``
        with ``ids``): compare the batch with these rows instead of with itself.
        """
        return F.all_pairs_contrastive_loss(
            embeddings,
            labels,
            ids=ids,
            candidates=candidates,
            candidate_labels=candidate_labels,
            candidate_ids=candidate_ids,
            margin=self.margin,
            distance=self.distance,
            reduction=self.reduction,
            caffe_legacy=self.caffe_legacy,
            chunk_size=self.chunk_size,
            gather=self.gather,
            group=self.group,
        )


class BatchAllTripletLoss(_LossModule):
    r"""Triplet loss over every valid triplet of a labelled batch (Hermans et al. 2017).

    See :func:`contrastkit.functional.batch_all_triplet_loss`.

    Example:
        >>> import torch
        >>> from contrastkit import BatchAllTripletLoss
        >>> emb = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> BatchAllTripletLoss(margin=1.0)(emb, torch.tensor([0, 0, 1, 1]))
        tensor(0.6875)
    """

    _option_names = ("margin", "distance", "reduction", "mean_over", "chunk_size", "gather")

    def __init__(
        self,
        *,
        margin: float,
        distance: DistanceName = "euclidean",
        reduction: Reduction = "mean",
        mean_over: F.MeanOver = "all",
        chunk_size: int | None = None,
        gather: bool = False,
        group: ProcessGroup = None,
    ) -> None:
        super().__init__()
        self._set_margin_options(margin, distance, reduction)
        self.mean_over = check_choice("mean_over", mean_over, F.MEAN_OVER)
        self.chunk_size = check_chunk_size(chunk_size)
        self._set_gather(gather, group)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        ids: Tensor | None = None,
        candidates: Tensor | None = None,
        candidate_labels: Tensor | None = None,
        candidate_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss over all valid triplets of ``embeddings`` with integer class ``labels``.

        ``ids``: optional sample ids (a row with its anchor's id is neither a positive
        nor a negative); ``candidates`` with ``candidate_labels`` (and ``candidate_ids``
        with ``ids``): compare the batch with these rows instead of with itself.
        """
        return F.batch_all_triplet_loss(
            embeddings,
            labels,
            ids=ids,
            candidates=candidates,
            candidate_labels=candidate_labels,
            candidate_ids=candidate_ids,
            margin=self.margin,
            distance=self.distance,
            reduction=self.reduction,
            mean_over=self.mean_over,
            chunk_size=self.chunk_size,
            gather=self.gather,
            group=self.group,
        )


class BatchHardTripletLoss(_LossModule):
    r"""Each anchor's hardest triplet: farthest positive, closest negative (Hermans et al. 2017).

    See :func:`contrastkit.functional.batch_hard_triplet_loss`.

    Example:
        >>> import torch
        >>> from contrastkit import BatchHardTripletLoss
        >>> emb = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> BatchHardTripletLoss(margin=1.0)(emb, torch.tensor([0, 0, 1, 1]))
        tensor(1.1250)
    """

    _option_names = ("margin", "distance", "reduction", "chunk_size", "gather")

    def __init__(
        self,
        *,
        margin: float,
        distance: DistanceName = "euclidean",
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
        group: ProcessGroup = None,
    ) -> None:
        super().__init__()
        self._set_margin_options(margin, distance, reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        self._set_gather(gather, group)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        ids: Tensor | None = None,
        candidates: Tensor | None = None,
        candidate_labels: Tensor | None = None,
        candidate_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss of each anchor's hardest triplet in ``embeddings`` with class ``labels``.

        ``ids``: optional sample ids (a row with its anchor's id is neither a positive
        nor a negative); ``candidates`` with ``candidate_labels`` (and ``candidate_ids``
        with ``ids``): compare the batch with these rows instead of with itself.
        """
        return F.batch_hard_triplet_loss(
            embeddings,
            labels,
            ids=ids,
            candidates=candidates,
            candidate_labels=candidate_labels,
            candidate_ids=candidate_ids,
            margin=self.margin,
            distance=self.distance,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            gather=self.gather,
            group=self.group,
        )


class ReconstructionLoss(_LossModule):
    r"""An autoencoder's reconstruction error, one value per sample before reduction.

    .. math::
        \ell_n = \frac{1}{D} \sum_{k=1}^{D} (\hat x_{nk} - x_{nk})^2 \quad (\texttt{kind="mse"})

    and the binary or categorical cross-entropy for the other kinds; see
    :func:`contrastkit.functional.reconstruction_loss`.

    Example:
        >>> import torch
        >>> from contrastkit import ReconstructionLoss
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
        >>> ReconstructionLoss(reduction="none")(torch.tensor([[0.5, 1.0], [1.0, 0.0]]), x)
        tensor([0.1250, 0.5000])
    """

    _option_names = ("kind", "reduction")

    def __init__(
        self, *, kind: F.ReconstructionKind = "mse", reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, F.RECONSTRUCTION_KINDS)
        self.reduction = check_reduction(reduction)

    def forward(self, reconstruction: Tensor, target: Tensor) -> Tensor:
        """Loss of ``reconstruction[i]`` against ``target[i]`` (the clean input)."""
        return F.reconstruction_loss(
            reconstruction, target, kind=self.kind, reduction=self.reduction
        )
