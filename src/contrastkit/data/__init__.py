"""Data: from labelled samples to the batches the losses take, and readers of user files.

* :mod:`~contrastkit.data.sampling` (torch only): :class:`PairDataset`,
  :class:`TripletDataset`, and the batch samplers :class:`ClassBalancedBatchSampler`
  and :class:`RandomBatchSampler`, which split each global batch between processes.
* :mod:`~contrastkit.data.augment` (torch only): :class:`Augment`, SimCLR's augmented
  views of image batches (random resized crop, flip, colour jitter, grayscale, blur),
  per sample, on the images' device, drawn from a given :class:`torch.Generator`;
  :class:`FeatureNoise`, noisy views of feature vectors (noise, dropped features).
* :mod:`~contrastkit.data.collate` (torch only): :class:`TokenizeTexts`, the collate
  that turns samples of texts into token tensors for a text encoder.
* :mod:`~contrastkit.data.images` (numpy; Pillow imported on use):
  :class:`ImageFolderDataset`, an image folder listed once and decoded image by image
  in ``__getitem__`` (DataLoader workers), for folders bigger than memory;
  :class:`~contrastkit.data.images.LazyImages`, a view of one standing in for the
  images' tensor, and :func:`~contrastkit.data.images.image_statistics`, per-channel
  statistics computed batch by batch.
* :mod:`~contrastkit.data.readers` (numpy; Pillow imported on use): the bundled digits,
  image folders, feature files and pair files, a stratified split, an open-set split
  that holds whole classes out (:func:`~contrastkit.data.readers.split_classes`), and
  standard pairs lists (:func:`~contrastkit.data.readers.read_pairs_list`).
* :mod:`~contrastkit.data.text` (torch and the standard library): sentence pairs with a
  score or a 0/1 label, anchor-positive(-negative) tuples and labelled texts from CSV,
  TSV or JSONL (:func:`read_text_data`), one text per line (:func:`read_lines`), gold
  scores on ``[-1, 1]`` (:func:`scores_to_unit`) and the sample ids under which copies of
  a text are one sample (:func:`text_ids`, :func:`row_ids`).
"""

from contrastkit.data.augment import (
    Augment,
    ColorJitter,
    FeatureNoise,
    GaussianBlur,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
)
from contrastkit.data.collate import TokenizeTexts
from contrastkit.data.images import UNLABELLED, ImageFileError, ImageFolderDataset
from contrastkit.data.sampling import (
    ClassBalancedBatchSampler,
    PairDataset,
    RandomBatchSampler,
    TripletDataset,
)
from contrastkit.data.text import (
    LabelledPairs,
    LabelledTexts,
    ScoredPairs,
    TextTuples,
    read_lines,
    read_text_data,
    row_ids,
    scores_to_unit,
    text_ids,
)

__all__ = [
    "UNLABELLED",
    "Augment",
    "ClassBalancedBatchSampler",
    "ColorJitter",
    "FeatureNoise",
    "GaussianBlur",
    "ImageFileError",
    "ImageFolderDataset",
    "LabelledPairs",
    "LabelledTexts",
    "PairDataset",
    "RandomBatchSampler",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "ScoredPairs",
    "TextTuples",
    "TokenizeTexts",
    "TripletDataset",
    "read_lines",
    "read_text_data",
    "row_ids",
    "scores_to_unit",
    "text_ids",
]
