"""Data: from labelled samples to the batches the losses take, and readers of user files.

* :mod:`~contrastkit.data.sampling` (torch only): :class:`PairDataset`,
  :class:`TripletDataset`, and the batch samplers :class:`ClassBalancedBatchSampler`
  and :class:`RandomBatchSampler`, which split each global batch between processes.
* :mod:`~contrastkit.data.collate` (torch only): :class:`TokenizeTexts`, the collate
  that turns samples of texts into token tensors for a text encoder.
* :mod:`~contrastkit.data.readers` (numpy, Pillow; imported on use): the bundled digits,
  image folders, feature files and pair files, and a stratified split.
"""

from contrastkit.data.collate import TokenizeTexts
from contrastkit.data.sampling import (
    ClassBalancedBatchSampler,
    PairDataset,
    RandomBatchSampler,
    TripletDataset,
)

__all__ = [
    "ClassBalancedBatchSampler",
    "PairDataset",
    "RandomBatchSampler",
    "TokenizeTexts",
    "TripletDataset",
]
