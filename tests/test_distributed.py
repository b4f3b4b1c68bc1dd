"""contrastkit.distributed: gather with gradient, sizes, offsets; a no-op at world size 1.

The multi-process cases run in the session's gloo groups (``process_groups``, spawned
once per session); the functions they run are defined here, at module level.
"""

from __future__ import annotations

import pytest
import torch

from contrastkit import distributed
from process_group import ProcessGroups


def _rows(rank: int, n: int, d: int = 3) -> torch.Tensor:
    return torch.arange(n * d, dtype=torch.float64).reshape(n, d) + 100.0 * rank


def _gather_rows(rows_per_rank: list[int]) -> tuple[list[float], list[list[float]], int, int]:
    """Gather each rank's rows; backward a weighted sum; the rows' gradient and offsets."""
    r = distributed.rank()
    x = _rows(r, rows_per_rank[r]).requires_grad_()
    all_sizes = distributed.sizes(x.shape[0])
    gathered = distributed.gather(x, all_sizes=all_sizes)
    weights = torch.arange(gathered.numel(), dtype=torch.float64).reshape(gathered.shape)
    (gathered * weights).sum().backward()
    assert x.grad is not None
    return (
        gathered.detach().flatten().tolist(),
        x.grad.tolist(),
        distributed.offset(all_sizes),
        distributed.world_size(),
    )


@pytest.mark.parametrize("rows_per_rank", [[2, 2], [3, 1], [0, 2], [1, 2, 4], [2, 0, 3]], ids=str)
def test_gather_concatenates_every_rank_in_order_and_sums_the_gradient(
    process_groups: ProcessGroups, rows_per_rank: list[int]
) -> None:
    world = len(rows_per_rank)
    results = process_groups(world).run(_gather_rows, rows_per_rank)
    expected = torch.cat([_rows(r, n) for r, n in enumerate(rows_per_rank)])
    total = expected.shape[0]
    weights = torch.arange(expected.numel(), dtype=torch.float64).reshape(expected.shape)
    start = 0
    for r, (gathered, grad, offset, size) in enumerate(results):
        assert size == world
        assert offset == start
        assert gathered == expected.flatten().tolist()
        # every rank backpropagated the same weighted sum: the gradient of each row is
        # the weight times the number of ranks, not the weight alone (the 1/W bug)
        n = rows_per_rank[r]
        assert (
            torch.tensor(grad).reshape(n, 3).tolist()
            == (world * weights[start : start + n]).tolist()
        )
        start += n
    assert start == total


def _gather_labels_and_flags() -> tuple[list[int], list[bool]]:
    r = distributed.rank()
    labels = torch.full((r + 1,), r, dtype=torch.long)
    flags = torch.tensor([r % 2 == 0] * (r + 1))
    return distributed.gather(labels).tolist(), distributed.gather(flags).tolist()


def test_gather_takes_integer_and_bool_tensors_without_gradient(
    process_groups: ProcessGroups,
) -> None:
    for labels, flags in process_groups(3).run(_gather_labels_and_flags):
        assert labels == [0, 1, 1, 2, 2, 2]
        assert flags == [True, False, False, True, True, True]


def _reduce_and_global_loss() -> tuple[float, float, float]:
    r = distributed.rank()
    local = torch.tensor(float(r + 1), dtype=torch.float64, requires_grad=True)
    total = distributed.all_reduce_sum(local)
    loss = distributed.global_loss(local, total)
    loss.backward()
    assert local.grad is not None
    return float(total), float(loss.detach()), float(local.grad)


def test_global_loss_is_the_total_with_the_gradient_scaled_for_averaging(
    process_groups: ProcessGroups,
) -> None:
    for total, loss, grad in process_groups(3).run(_reduce_and_global_loss):
        assert total == 6.0
        assert loss == 6.0
        assert grad == 3.0  # DDP averages over 3 processes: the gradient of the total


def test_everything_is_a_no_op_without_a_process_group() -> None:
    x = torch.randn(4, 2, requires_grad=True)
    assert distributed.world_size() == 1
    assert distributed.rank() == 0
    assert not distributed.is_distributed()
    assert distributed.sizes(4) == [4]
    assert distributed.offset([4]) == 0
    assert distributed.gather(x) is x
    assert torch.equal(distributed.all_reduce_sum(x), x)
    local = x.sum()
    assert distributed.global_loss(local, local.detach() + 1) is local


def test_require_process_group_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"gather=True.*torchrun.*init_process_group"):
        distributed.require_process_group()


def test_gather_at_world_size_1_is_the_one_process_loss() -> None:
    """pytorch-metric-learning #542 crashed at world size 1: here it is a no-op."""
    import torch.distributed as dist

    import contrastkit.functional as F
    from process_group import free_port

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
        z2 = torch.randn(7, 3, generator=g, dtype=torch.float64)
        y = torch.tensor([0, 1, 0, 1, 2, 2, 0])
        losses = [
            lambda **kw: F.supcon(z, y, **kw),
            lambda **kw: F.all_pairs_contrastive_loss(z, y, **kw),
            lambda **kw: F.batch_all_triplet_loss(z, y, margin=0.5, **kw),
            lambda **kw: F.batch_hard_triplet_loss(z, y, margin=0.5, **kw),
            lambda **kw: F.nt_xent(z, z2, **kw),
            lambda **kw: F.info_nce(z, z2, symmetric=True, **kw),
        ]
        for loss in losses:
            for reduction in ("mean", "sum", "none"):
                gathered = loss(gather=True, reduction=reduction)
                (grad,) = torch.autograd.grad(gathered.sum(), z)
                plain = loss(reduction=reduction)
                (expected,) = torch.autograd.grad(plain.sum(), z)
                assert torch.equal(gathered, plain)
                assert torch.equal(grad, expected)
    finally:
        dist.destroy_process_group()
