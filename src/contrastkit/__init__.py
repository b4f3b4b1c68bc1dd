"""contrastkit: contrastive losses exact to their papers, on PyTorch.

One label convention everywhere: for pairs, ``y = 1`` means similar and ``y = 0``
dissimilar; class labels are integer tensors.

>>> import torch
>>> import contrastkit
>>> loss_fn = contrastkit.ContrastiveLoss(margin=1.0)
>>> out1, out2 = torch.zeros(4, 8), torch.ones(4, 8)
>>> loss_fn(out1, out2, torch.tensor([1, 1, 0, 0]))  # distance sqrt(8) for every pair
tensor(2.)
"""

from contrastkit import data, distances, functional, mining, models, training
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

# Imported on use (``from contrastkit import metrics``), so that ``import contrastkit``
# stays light: ``datasets`` (numpy, Pillow), ``metrics`` and ``anomaly``
# (scikit-learn), ``plots`` (matplotlib), ``report``, ``experiment`` and ``cli``.

__version__ = "0.1.0"

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
    "functional",
    "mining",
    "models",
    "paired_distance",
    "paired_similarity",
    "reconstruction_loss",
    "similarity_matrix",
    "training",
]
