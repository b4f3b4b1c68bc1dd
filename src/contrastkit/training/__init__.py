"""Training: objectives, a resumable trainer and checkpoints.

* :mod:`~contrastkit.training.objectives`: from a model and a batch to named loss terms.
* :mod:`~contrastkit.training.trainer`: the :class:`Trainer` loop and :func:`embed`.
* :mod:`~contrastkit.training.checkpoints`: weights and checkpoint folders.
"""

from contrastkit.training.checkpoints import latest_checkpoint, load_weights, save_weights
from contrastkit.training.objectives import (
    LabelObjective,
    Objective,
    PairObjective,
    ReconstructionObjective,
    TripletObjective,
    TwoViewObjective,
    WeightedSum,
    total_loss,
)
from contrastkit.training.trainer import Trainer, embed

__all__ = [
    "LabelObjective",
    "Objective",
    "PairObjective",
    "ReconstructionObjective",
    "Trainer",
    "TripletObjective",
    "TwoViewObjective",
    "WeightedSum",
    "embed",
    "latest_checkpoint",
    "load_weights",
    "save_weights",
    "total_loss",
]
