"""Data: from labelled samples to the batches the losses take, and readers of user files.

* :mod:`~contrastkit.data.sampling` (torch only): :class:`PairDataset`,
  :class:`TripletDataset` and :class:`ClassBalancedBatchSampler`.
* :mod:`~contrastkit.data.readers` (numpy, Pillow; imported on use): the bundled digits,
  image folders, feature files and pair files, and a stratified split.
"""

from contrastkit.data.sampling import ClassBalancedBatchSampler, PairDataset, TripletDataset

__all__ = ["ClassBalancedBatchSampler", "PairDataset", "TripletDataset"]
