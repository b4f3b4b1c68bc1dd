"""Siamese networks and the small encoders they share.

* :class:`SiameseNetwork` wraps one encoder: called on ``(x1, x2)`` it returns both
  embeddings, computed by the same weights; called on one batch it returns one.
* :class:`MLPEncoder` embeds feature vectors, :class:`ConvEncoder` embeds images; both
  take the output dimension as ``embedding_dim`` (2 gives a DrLIM-style map directly).
* :class:`ResNetEncoder` embeds images with a small residual network (torchvision's
  module names); :func:`load_pretrained` loads weights from a local file into any model,
  with a one-line :class:`WeightsError` naming the keys that do not match.
* :class:`TextEncoder` embeds tokenized texts with a transformer and a pooling
  (:mod:`~contrastkit.models.text`: loading a Hugging Face model from a folder, and an
  encoder trained from nothing; needs ``contrastkit[text]``).
* :class:`ProjectionHead` and :class:`ProjectedNetwork`: SimCLR's projection head, a
  small MLP a network is trained through and which is then dropped
  (:func:`unprojected`): the embedding kept is the one before it.
* :class:`Standardize` holds fixed input statistics as buffers, so a saved model carries
  its own preprocessing.
* :class:`Autoencoder` pairs an encoder with a decoder (:class:`MLPDecoder` for
  vectors, :class:`ConvDecoder` for images); called like :class:`SiameseNetwork` it
  returns the code, so the same encoder serves siamese objectives, reconstruction and
  :func:`contrastkit.training.embed` alike.

Models never compute a loss: the losses take the embeddings.

Example:
    >>> import torch
    >>> from contrastkit import ContrastiveLoss
    >>> from contrastkit.models import MLPEncoder, SiameseNetwork
    >>> _ = torch.manual_seed(0)
    >>> model = SiameseNetwork(MLPEncoder(64, embedding_dim=2))
    >>> x1, x2 = torch.randn(8, 64), torch.randn(8, 64)
    >>> out1, out2 = model(x1, x2)
    >>> out1.shape, out2.shape
    (torch.Size([8, 2]), torch.Size([8, 2]))
    >>> loss = ContrastiveLoss(margin=1.0)(out1, out2, torch.tensor([1, 0] * 4))
    >>> loss.backward()
"""

from contrastkit.models.autoencoder import Autoencoder, ConvDecoder, MLPDecoder
from contrastkit.models.encoders import ConvEncoder, MLPEncoder, ResNetEncoder, Standardize
from contrastkit.models.projection import ProjectedNetwork, ProjectionHead, unprojected
from contrastkit.models.siamese import SiameseNetwork
from contrastkit.models.text import TextEncoder, load_text_model, save_text_model
from contrastkit.models.weights import LoadReport, WeightsError, load_pretrained

__all__ = [
    "Autoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "LoadReport",
    "MLPDecoder",
    "MLPEncoder",
    "ProjectedNetwork",
    "ProjectionHead",
    "ResNetEncoder",
    "SiameseNetwork",
    "Standardize",
    "TextEncoder",
    "WeightsError",
    "load_pretrained",
    "load_text_model",
    "save_text_model",
    "unprojected",
]
