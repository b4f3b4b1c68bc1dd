"""Training: objectives, a resumable trainer and checkpoints.

* :mod:`~contrastkit.training.objectives`: from a model and a batch to named loss terms.
* :mod:`~contrastkit.training.cached`: the same objectives with the encoder run in
  micro-batches (gradient caching).
* :mod:`~contrastkit.training.trainer`: the :class:`Trainer` loop and :func:`embed`.
* :mod:`~contrastkit.training.checkpoints`: weights and checkpoint folders.
* :mod:`~contrastkit.training.batches`: batches of any structure, moved and joined.
"""

from contrastkit.training.batches import batch_size, join, to_device
from contrastkit.training.cached import CachedObjective
from contrastkit.training.checkpoints import (
    best_checkpoint,
    latest_checkpoint,
    load_weights,
    remove_stale,
    save_weights,
)
from contrastkit.training.memory import MemoryBank
from contrastkit.training.objectives import (
    LabelObjective,
    Objective,
    PairObjective,
    ReconstructionObjective,
    TripletObjective,
    TwoViewObjective,
    WeightedSum,
    embed_parts,
    load_objective_state,
    objective_state,
    total_loss,
)
from contrastkit.training.trainer import Trainer, embed

__all__ = [
    "CachedObjective",
    "LabelObjective",
    "MemoryBank",
    "Objective",
    "PairObjective",
    "ReconstructionObjective",
    "Trainer",
    "TripletObjective",
    "TwoViewObjective",
    "WeightedSum",
    "batch_size",
    "best_checkpoint",
    "embed",
    "embed_parts",
    "join",
    "latest_checkpoint",
    "load_objective_state",
    "load_weights",
    "objective_state",
    "remove_stale",
    "save_weights",
    "to_device",
    "total_loss",
]
