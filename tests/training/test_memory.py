"""MemoryBank: FIFO order against a list, resume from state_dict, no gradient, the losses
through ``extend`` against a brute-force SupCon, and one queue on every process.

The multi-process cases run in the session's gloo groups (``process_groups``); the
functions they run are defined here, at module level.
"""

from __future__ import annotations

import io
import math
import random

import pytest
import torch

from contrastkit import distributed
from contrastkit.functional import (
    all_pairs_contrastive_loss,
    batch_hard_triplet_loss,
    info_nce,
    supcon,
)
from contrastkit.training import MemoryBank
from process_group import ProcessGroups


def _batch(step: int, n: int, dim: int = 3, part: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and labels unique to (step, part): row r holds 1000 step + 100 part + r."""
    base = 1000.0 * step + 100.0 * part + torch.arange(n, dtype=torch.float64)
    rows = base[:, None] + torch.arange(dim, dtype=torch.float64) / 10
    return rows, (base.long() % 5)


def _held(memory: MemoryBank) -> tuple[list[list[float]], list[int], list[int]]:
    rows, labels, ids = memory.candidates()
    assert labels is not None
    return rows.tolist(), labels.tolist(), ids.tolist()


@pytest.mark.parametrize("with_ids", [False, True])
@pytest.mark.parametrize("size", [1, 4, 7])
def test_fifo_order_and_overwrite_match_a_list(size: int, with_ids: bool) -> None:
    draw = random.Random(size)
    memory = MemoryBank(size, 3, dtype=torch.float64)
    reference: list[tuple[list[float], int, int]] = []  # every row written, in order
    assert len(memory) == 0 and not memory.full
    for step in range(12):
        n = draw.choice([0, 1, 2, size - 1, size, size + 3])
        rows, labels = _batch(step, n)
        ids = 7 * torch.arange(n) + 10_000 * step if with_ids else None
        # generated ids: each row's number in the stream of rows written
        id_values = (
            ids.tolist() if ids is not None else list(range(len(reference), len(reference) + n))
        )
        memory.enqueue(rows, labels, ids)
        reference.extend(zip(rows.tolist(), labels.tolist(), id_values, strict=True))
        expected = reference[-size:]
        assert len(memory) == len(expected) == min(len(reference), size)
        assert memory.full == (len(reference) >= size)
        assert int(memory.seen) == len(reference)
        assert _held(memory) == (
            [r for r, _, _ in expected],
            [y for _, y, _ in expected],
            [i for _, _, i in expected],
        )


def _filled(size: int = 5, *, with_ids: bool = False, seed: int = 0) -> MemoryBank:
    """A memory that wrapped around: 8 rows written into 5 (or ``size``) places."""
    g = torch.Generator().manual_seed(seed)
    memory = MemoryBank(size, 4, dtype=torch.float64)
    for n in (3, 5):
        rows = torch.randn(n, 4, generator=g, dtype=torch.float64)
        labels = torch.randint(0, 3, (n,), generator=g)
        ids = torch.randint(0, 50, (n,), generator=g) if with_ids else None
        memory.enqueue(rows, labels, ids)
    return memory


def _state(memory: MemoryBank) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in memory.state_dict().items()}


def test_a_state_dict_round_trip_resumes_bit_identically() -> None:
    memory = _filled()
    assert set(memory.state_dict()) == {"embeddings", "labels", "ids", "seen", "kinds"}
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    resumed = MemoryBank(5, 4, dtype=torch.float64)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    # inside a model too, under the module's name
    model = torch.nn.ModuleDict({"memory": memory})
    assert torch.equal(model.state_dict()["memory.embeddings"], memory.embeddings)

    g = torch.Generator().manual_seed(1)
    for n in (2, 7, 1):  # then both go on alike, generated ids included
        assert len(resumed) == len(memory)
        for a, b in zip(resumed.candidates(), memory.candidates(), strict=True):
            assert a is not None and b is not None
            assert torch.equal(a, b)
        z = torch.randn(n, 4, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (n,), generator=g)
        got, want = resumed.extend(z, y), memory.extend(z, y)
        for key in want:
            assert torch.equal(got[key], want[key]), key  # type: ignore[literal-required]
        assert torch.equal(
            supcon(z, y, **resumed.extend(z, y)), supcon(z, y, **memory.extend(z, y))
        )
        memory.enqueue(z, y)
        resumed.enqueue(z, y)
    for key, value in _state(memory).items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_no_gradient_flows_into_the_memory() -> None:
    g = torch.Generator().manual_seed(2)
    old = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    memory = MemoryBank(6, 4, dtype=torch.float64)
    memory.enqueue(old * 2, torch.tensor([0, 1, 0, 1]))
    assert not memory.embeddings.requires_grad and memory.embeddings.grad_fn is None
    held = memory.candidates()[0]
    assert not held.requires_grad

    z = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 1])
    loss = supcon(z, y, **memory.extend(z, y))
    # written before the backward pass: the loss holds copies, not the buffers
    memory.enqueue(z, y)
    assert not memory.embeddings.requires_grad
    loss.backward()
    assert old.grad is None  # the earlier batch is only a constant of this loss
    assert z.grad is not None and bool(z.grad.abs().sum() > 0)

    # and the gradient is that of the same loss with the held rows as constants
    z2 = z.detach().clone().requires_grad_()
    constant = supcon(
        z2,
        y,
        candidates=torch.cat([z2, held]),
        candidate_labels=torch.cat([y, torch.tensor([0, 1, 0, 1])]),
        ids=torch.arange(3) + 4,
        candidate_ids=torch.cat([torch.arange(3) + 4, torch.arange(4)]),
    )
    constant.backward()
    assert z2.grad is not None
    assert torch.equal(constant.detach(), loss.detach())
    assert torch.equal(z2.grad, z.grad)


def _brute_supcon(
    z: torch.Tensor,
    y: torch.Tensor,
    ids: torch.Tensor,
    rows: torch.Tensor,
    labels: torch.Tensor,
    row_ids: torch.Tensor,
    temperature: float,
) -> float:
    """SupCon of the batch's anchors over batch ∪ memory; the memory rows are no anchors.

    A candidate is the anchor itself (same batch row) or shares its id: left out.
    """
    cand = [
        (list(map(float, r)), int(c), int(i), ("b", j))
        for j, (r, c, i) in enumerate(zip(z, y, ids, strict=True))
    ]
    cand += [
        (list(map(float, r)), int(c), int(i), ("m", j))
        for j, (r, c, i) in enumerate(zip(rows, labels, row_ids, strict=True))
    ]

    def cos(u: list[float], v: list[float]) -> float:
        nu = math.sqrt(sum(a * a for a in u))
        nv = math.sqrt(sum(a * a for a in v))
        return sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv)

    losses = []
    for a in range(len(z)):
        anchor, label, aid = list(map(float, z[a])), int(y[a]), int(ids[a])
        others = [c for c in cand if c[3] != ("b", a) and c[2] != aid]
        positives = [c for c in others if c[1] == label]
        if not positives:
            continue
        denominator = sum(math.exp(cos(anchor, c[0]) / temperature) for c in others)
        losses.append(
            -sum(
                math.log(math.exp(cos(anchor, p[0]) / temperature) / denominator) for p in positives
            )
            / len(positives)
        )
    return sum(losses) / len(losses)


@pytest.mark.parametrize("with_ids", [False, True])
def test_supcon_through_extend_is_supcon_over_the_batch_and_the_memory(with_ids: bool) -> None:
    memory = _filled(with_ids=with_ids, seed=3)
    g = torch.Generator().manual_seed(4)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    rows, labels, row_ids = memory.candidates()
    assert labels is not None
    if with_ids:  # a sample held in the memory comes back: never its own positive
        ids = torch.tensor([100, 101, int(row_ids[0]), 103, int(row_ids[3]), 105])
        y[2], y[4] = labels[0], labels[3]
    else:  # generated: the batch's next numbers in the stream of rows, 8, 9, ...
        ids = torch.arange(6) + 8
        assert set(row_ids.tolist()) == set(range(3, 8))
    args = memory.extend(z, y, ids if with_ids else None)
    assert torch.equal(args["ids"], ids)
    loss = supcon(z, y, temperature=0.3, **args)
    explicit = supcon(
        z,
        y,
        temperature=0.3,
        candidates=torch.cat([z, rows]),
        candidate_labels=torch.cat([y, labels]),
        ids=ids,
        candidate_ids=torch.cat([ids, row_ids]),
    )
    assert torch.equal(loss, explicit)
    expected = _brute_supcon(z, y, ids, rows, labels, row_ids, 0.3)
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_an_empty_memory_gives_the_plain_losses() -> None:
    g = torch.Generator().manual_seed(5)
    z = torch.randn(8, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    memory = MemoryBank(5, 4, dtype=torch.float64)
    args = memory.extend(z, y)
    assert args["candidates"].shape == (8, 4)
    for loss, kw in (
        (supcon, {}),
        (all_pairs_contrastive_loss, {"margin": 1.0}),
        (batch_hard_triplet_loss, {"margin": 0.5}),
    ):
        plain = float(loss(z, y, **kw))  # type: ignore[operator]
        assert float(loss(z, y, **kw, **args)) == pytest.approx(plain, rel=1e-12), loss  # type: ignore[operator]


def test_info_nce_takes_the_held_rows_as_moco_negatives() -> None:
    memory = _filled(seed=6)
    g = torch.Generator().manual_seed(7)
    q, k = (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(3, 4, generator=g, dtype=torch.float64),
    )
    negatives = memory.candidates()[0]
    logits = (
        torch.nn.functional.normalize(q)
        @ torch.nn.functional.normalize(torch.cat([k, negatives])).T
        / 0.2
    )
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    got = info_nce(q, k, temperature=0.2, negatives=negatives)
    assert float(got) == pytest.approx(float(expected), rel=1e-12)


# ---------------------------------------------------------------------------------------
# Every process holds one queue
# ---------------------------------------------------------------------------------------

STEPS = [[2, 3, 1], [0, 1, 0], [5, 0, 2], [1, 1, 1], [0, 0, 0], [3, 2, 4]]
"""Rows per rank at each step (the first ``world`` entries): unequal, none, more than size."""


def _rank_batch(step: int, n: int, rank: int, with_ids: bool):
    rows, labels = _batch(step, n, part=rank)
    return rows, labels, (rows[:, 0].long() if with_ids else None)


def _fill_on_every_rank(size: int, world: int, with_ids: bool) -> tuple[object, int]:
    r = distributed.rank()
    memory = MemoryBank(size, 3, dtype=torch.float64)
    for step, counts in enumerate(STEPS):
        rows, labels, ids = _rank_batch(step, counts[:world][r], r, with_ids)
        memory.enqueue(rows.requires_grad_(), labels, ids, gather=True)
    return _held(memory), int(memory.seen)


@pytest.mark.parametrize("with_ids", [False, True])
@pytest.mark.parametrize("world", [2, 3])
def test_every_process_holds_the_queue_of_the_concatenated_batches(
    process_groups: ProcessGroups, world: int, with_ids: bool
) -> None:
    size = 4
    results = process_groups(world).run(_fill_on_every_rank, size, world, with_ids)
    reference = MemoryBank(size, 3, dtype=torch.float64)
    for step, counts in enumerate(STEPS):
        parts = [_rank_batch(step, counts[r], r, with_ids) for r in range(world)]
        reference.enqueue(
            torch.cat([p[0] for p in parts]),
            torch.cat([p[1] for p in parts]),
            torch.cat([p[2] for p in parts]) if with_ids else None,  # type: ignore[misc]
        )
    expected = (_held(reference), int(reference.seen))
    assert expected[1] == sum(sum(c[:world]) for c in STEPS)
    assert len(expected[0][0]) == size
    for result in results:
        assert result == expected


def test_gather_without_a_process_group_raises() -> None:
    memory = MemoryBank(3, 2)
    with pytest.raises(RuntimeError, match="process group"):
        memory.enqueue(torch.zeros(1, 2), gather=True)
    assert len(memory) == 0


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 0, "dim": 3}, ValueError, "size must be >= 1"),
        ({"size": 2.0, "dim": 3}, TypeError, "size must be an integer"),
        ({"size": True, "dim": 3}, TypeError, "size must be an integer"),
        ({"size": 2, "dim": 0}, ValueError, "dim must be >= 1"),
        ({"size": 2, "dim": "3"}, TypeError, "dim must be an integer"),
        ({"size": 2, "dim": 3, "dtype": torch.long}, TypeError, "dtype must be a floating"),
        ({"size": 2, "dim": 3, "dtype": "float32"}, TypeError, "dtype must be a floating"),
    ],
)
def test_bad_construction(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        MemoryBank(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([[1.0, 2.0, 3.0]],), {}, TypeError, "embeddings must be a torch.Tensor"),
        ((torch.zeros(3),), {}, ValueError, "embeddings must be 2-D"),
        ((torch.zeros(2, 4),), {}, ValueError, "embeddings must have 3 features"),
        ((torch.zeros(2, 3, dtype=torch.float64),), {}, TypeError, "memory's dtype"),
        ((torch.zeros(2, 3, dtype=torch.long),), {}, TypeError, "embeddings must be a real"),
        ((torch.tensor([[0.0, float("nan"), 0.0]]),), {}, ValueError, "embeddings must be finite"),
        (
            (torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)),
            {},
            ValueError,
            r"labels must have shape \(2,\)",
        ),
        ((torch.zeros(2, 3), torch.zeros(2)), {}, TypeError, "labels must be an integer tensor"),
        ((torch.zeros(2, 3), None, torch.zeros(2)), {}, TypeError, "ids must be an integer tensor"),
        (
            (torch.zeros(2, 3), None, torch.zeros(1, dtype=torch.long)),
            {},
            ValueError,
            r"ids must have shape \(2,\)",
        ),
        ((torch.zeros(2, 3),), {"gather": 1}, TypeError, "gather must be a bool"),
    ],
)
def test_bad_enqueue(args: tuple, kwargs: dict, error: type, match: str) -> None:
    memory = MemoryBank(4, 3)
    with pytest.raises(error, match=match):
        memory.enqueue(*args, **kwargs)
    assert int(memory.seen) == 0 and len(memory) == 0


def test_a_batch_on_another_device_is_refused() -> None:
    memory = MemoryBank(4, 3, device="meta")
    with pytest.raises(ValueError, match="embeddings must be on the memory's device meta"):
        memory.enqueue(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="embeddings must be on the memory's device meta"):
        memory.extend(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


def test_labels_and_ids_are_given_on_every_call_or_on_none() -> None:
    z, y, ids = torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([5, 6])
    unlabelled = MemoryBank(4, 3)
    unlabelled.enqueue(z)
    with pytest.raises(ValueError, match="labels cannot be given"):
        unlabelled.enqueue(z, y)
    with pytest.raises(ValueError, match="holds rows without labels"):
        unlabelled.extend(z, y)
    assert unlabelled.candidates()[1] is None

    generated = MemoryBank(4, 3)
    generated.enqueue(z, y)
    with pytest.raises(ValueError, match="ids cannot be given"):
        generated.enqueue(z, y, ids)
    with pytest.raises(ValueError, match="ids cannot be given"):
        generated.extend(z, y, ids)

    given = MemoryBank(4, 3)
    given.enqueue(z, y, ids)
    with pytest.raises(ValueError, match="ids must be given"):
        given.enqueue(z, y)
    with pytest.raises(ValueError, match="ids must be given"):
        given.extend(z, y)
    with pytest.raises(ValueError, match="labels must be given"):
        given.enqueue(z, None, ids)
    assert len(unlabelled) == len(generated) == len(given) == 2


def test_bad_extend() -> None:
    memory = MemoryBank(4, 3)
    with pytest.raises(TypeError, match=r"labels must be a torch\.Tensor"):
        memory.extend(torch.zeros(2, 3), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        memory.extend(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="memory's dtype"):
        memory.extend(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.long))
