"""contrastkit: contrastive losses exact to their papers, on PyTorch.

One label convention everywhere: for pairs, ``y = 1`` means similar and ``y = 0``
dissimilar; class labels are integer tensors. Bad input is refused before any
computation; :func:`set_validation` (or the context manager :func:`validation`) turns
off the checks that read tensor values, for speed or for ``torch.compile``.

>>> import torch
>>> import contrastkit
>>> loss_fn = contrastkit.ContrastiveLoss(margin=1.0)
>>> out1, out2 = torch.zeros(4, 8), torch.ones(4, 8)
>>> loss_fn(out1, out2, torch.tensor([1, 1, 0, 0]))  # distance sqrt(8) for every pair
tensor(2.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from contrastkit._version import __version__

# Names are imported on first use (PEP 562), so that ``import contrastkit`` costs nothing
# until a loss, model or module is touched, and ``python -m contrastkit --help`` answers
# without loading torch. ``from contrastkit import X`` works as with eager imports.
# ``evaluation`` and ``plots`` need the ``app`` extra and stay out of ``__all__``.
_SUBMODULES = (
    "data",
    "distances",
    "distributed",
    "evaluation",
    "functional",
    "losses",
    "mining",
    "models",
    "plots",
    "training",
)
_NAMES = {
    "DISTANCES": "distances",
    "SIMILARITIES": "distances",
    "distance_matrix": "distances",
    "paired_distance": "distances",
    "paired_similarity": "distances",
    "similarity_matrix": "distances",
    "reconstruction_loss": "functional",
    "AllPairsContrastiveLoss": "losses",
    "BatchAllTripletLoss": "losses",
    "BatchHardTripletLoss": "losses",
    "ContrastiveLoss": "losses",
    "CosineSimilarityLoss": "losses",
    "InfoNCELoss": "losses",
    "NTXentLoss": "losses",
    "ReconstructionLoss": "losses",
    "SupConLoss": "losses",
    "TripletLoss": "losses",
    "Autoencoder": "models",
    "ConvDecoder": "models",
    "ConvEncoder": "models",
    "MLPDecoder": "models",
    "MLPEncoder": "models",
    "SiameseNetwork": "models",
    "Trainer": "training",
    "is_validation_enabled": "_validation",
    "set_validation": "_validation",
    "validation": "_validation",
}

if TYPE_CHECKING:
    from contrastkit import (
        data,
        distances,
        distributed,
        functional,
        losses,
        mining,
        models,
        training,
    )
    from contrastkit._validation import is_validation_enabled, set_validation, validation
    from contrastkit.distances import (
        DISTANCES,
        SIMILARITIES,
        distance_matrix,
        paired_distance,
        paired_similarity,
        similarity_matrix,
    )
    from contrastkit.functional import reconstruction_loss
    from contrastkit.losses import (
        AllPairsContrastiveLoss,
        BatchAllTripletLoss,
        BatchHardTripletLoss,
        ContrastiveLoss,
        CosineSimilarityLoss,
        InfoNCELoss,
        NTXentLoss,
        ReconstructionLoss,
        SupConLoss,
        TripletLoss,
    )
    from contrastkit.models import (
        Autoencoder,
        ConvDecoder,
        ConvEncoder,
        MLPDecoder,
        MLPEncoder,
        SiameseNetwork,
    )
    from contrastkit.training import Trainer


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"contrastkit.{name}")
    elif name in _NAMES:
        module = getattr(importlib.import_module(f"contrastkit.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'contrastkit' has no attribute {name!r}")
    globals()[name] = module
    return module


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DISTANCES",
    "SIMILARITIES",
    "AllPairsContrastiveLoss",
    "Autoencoder",
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "ContrastiveLoss",
    "ConvDecoder",
    "ConvEncoder",
    "CosineSimilarityLoss",
    "InfoNCELoss",
    "MLPDecoder",
    "MLPEncoder",
    "NTXentLoss",
    "ReconstructionLoss",
    "SiameseNetwork",
    "SupConLoss",
    "Trainer",
    "TripletLoss",
    "__version__",
    "data",
    "distance_matrix",
    "distances",
    "distributed",
    "functional",
    "is_validation_enabled",
    "losses",
    "mining",
    "models",
    "paired_distance",
    "paired_similarity",
    "reconstruction_loss",
    "set_validation",
    "similarity_matrix",
    "training",
    "validation",
]
