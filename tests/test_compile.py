"""With the value checks off, every loss compiles into one graph (torch.compile fullgraph).

``contrastkit.validation(False)`` skips the checks that read tensor values back to the
host (NaN/Inf scans, label and score ranges); what remains is static. Each loss, on its
simple path and on its tiled path (``chunk_size``), must then trace without a single
graph break, ``fullgraph=True``, and give the eager values and gradients. The
``aot_eager`` backend traces the forward and the backward graphs as inductor would,
without generating code, to keep the test fast.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import contrastkit
from contrastkit import functional as F
from contrastkit.losses import ContrastiveLoss, InfoNCELoss, SupConLoss

# torch.compile's tracing of autograd Functions instantiates one internally (torch 2.13)
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*autograd.function.Function.* should not be instantiated:DeprecationWarning"
)

N, D = 8, 4


def _emb(seed: int, n: int = N) -> Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


LABELS = torch.arange(N) % 3
NEGATIVES = _emb(9, 6)
TARGET = torch.rand(N, D, generator=torch.Generator().manual_seed(10))
PAIR_LABELS = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])

# name -> (loss of the embeddings, number of embedding arguments)
CASES: dict[str, tuple[Callable[..., Tensor], int]] = {
    "contrastive": (lambda a, b: F.contrastive_loss(a, b, PAIR_LABELS), 2),
    "contrastive-legacy-cosine": (
        lambda a, b: F.contrastive_loss(
            a, b, PAIR_LABELS.bool(), distance="cosine", caffe_legacy=True
        ),
        2,
    ),
    "contrastive-soft-labels": (
        lambda a, b: F.contrastive_loss(a, b, torch.linspace(0.0, 1.0, N), reduction="sum"),
        2,
    ),
    "triplet": (lambda a, p, n: F.triplet_loss(a, p, n, margin=0.2), 3),
    "triplet-manhattan": (
        lambda a, p, n: F.triplet_loss(a, p, n, margin=0.2, distance="manhattan"),
        3,
    ),
    "info_nce": (lambda q, k: F.info_nce(q, k), 2),
    "info_nce-clip": (lambda q, k: F.info_nce(q, k, symmetric=True), 2),
    "info_nce-negatives": (lambda q, k: F.info_nce(q, k, negatives=NEGATIVES), 2),
    "info_nce-negatives-per-query": (
        lambda q, k: F.info_nce(q, k, negatives=NEGATIVES[:2].expand(N, 2, D)),
        2,
    ),
    "info_nce-dot-learned-temperature": (
        lambda q, k: F.info_nce(q, k, normalize=False, temperature=torch.tensor(0.5)),
        2,
    ),
    "nt_xent": (lambda a, b: F.nt_xent(a, b), 2),
    "supcon": (lambda z: F.supcon(z, LABELS), 1),
    "cosine_similarity_loss": (
        lambda a, b: F.cosine_similarity_loss(a, b, torch.linspace(-1.0, 1.0, N)),
        2,
    ),
    "reconstruction-mse": (lambda r: F.reconstruction_loss(r, TARGET), 1),
    "reconstruction-bce_with_logits": (
        lambda r: F.reconstruction_loss(r, TARGET, kind="bce_with_logits"),
        1,
    ),
    "all_pairs_contrastive": (lambda z: F.all_pairs_contrastive_loss(z, LABELS), 1),
    "batch_all_triplet": (lambda z: F.batch_all_triplet_loss(z, LABELS, margin=0.5), 1),
    "batch_hard_triplet": (lambda z: F.batch_hard_triplet_loss(z, LABELS, margin=0.5), 1),
    # the tiled paths
    "info_nce-tiled": (lambda q, k: F.info_nce(q, k, chunk_size=3), 2),
    "info_nce-clip-tiled": (lambda q, k: F.info_nce(q, k, symmetric=True, chunk_size=3), 2),
    "info_nce-negatives-tiled": (
        lambda q, k: F.info_nce(q, k, negatives=NEGATIVES, chunk_size=3),
        2,
    ),
    "nt_xent-tiled": (lambda a, b: F.nt_xent(a, b, chunk_size=3), 2),
    "supcon-tiled": (lambda z: F.supcon(z, LABELS, chunk_size=3), 1),
    "all_pairs_contrastive-tiled": (
        lambda z: F.all_pairs_contrastive_loss(z, LABELS, chunk_size=3),
        1,
    ),
    "batch_all_triplet-tiled": (
        lambda z: F.batch_all_triplet_loss(z, LABELS, margin=0.5, chunk_size=3),
        1,
    ),
    "batch_hard_triplet-tiled": (
        lambda z: F.batch_hard_triplet_loss(z, LABELS, margin=0.5, chunk_size=3),
        1,
    ),
    # the Modules call the functions with their options
    "ContrastiveLoss": (lambda a, b: ContrastiveLoss(margin=0.5)(a, b, PAIR_LABELS), 2),
    "InfoNCELoss": (lambda q, k: InfoNCELoss(symmetric=True)(q, k), 2),
    "SupConLoss": (lambda z: SupConLoss()(z, LABELS), 1),
}


def _value_and_gradients(fn: Callable[..., Tensor], count: int) -> tuple[Tensor, ...]:
    inputs = [_emb(i).requires_grad_() for i in range(count)]
    loss = fn(*inputs)
    return (loss.detach(), *torch.autograd.grad(loss, inputs))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_loss_compiles_into_one_graph_with_value_checks_off(name: str) -> None:
    fn, count = CASES[name]
    torch._dynamo.reset()
    with contrastkit.validation(False):
        eager = _value_and_gradients(fn, count)
        compiled = _value_and_gradients(
            torch.compile(fn, fullgraph=True, backend="aot_eager"), count
        )
    for got, expected in zip(compiled, eager, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.slow
def test_the_value_checks_break_the_graph() -> None:
    """The reason for the switch: with the checks on, fullgraph tracing refuses the loss."""
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda a, b: F.contrastive_loss(a, b, PAIR_LABELS), fullgraph=True, backend="eager"
    )
    with pytest.raises(torch._dynamo.exc.TorchDynamoException, match=r"(?i)data-dependent"):
        compiled(_emb(0), _emb(1))


@pytest.mark.slow
def test_compiled_clip_tiles_recompute_a_column_far_below_the_largest_entry() -> None:
    """Compiled, the rare exact recomputation of a column cannot be decided on the host."""
    from contrastkit import _tiled

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    a = q / 0.01
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda a, k: _tiled.row_column_logsumexp(a, k, rows=3, eager=False),
        fullgraph=True,
        backend="aot_eager",
    )
    by_row, by_column = compiled(a, k)
    logits = a @ k.T
    torch.testing.assert_close(by_row, torch.logsumexp(logits, dim=1))
    torch.testing.assert_close(by_column, torch.logsumexp(logits, dim=0))
    assert torch.isfinite(by_column).all()
