"""MemoryBank: FIFO order against a list, resume from state_dict, no gradient, the losses
through ``extend`` against a brute-force SupCon, and one queue on every process.

The multi-process cases run in the session's gloo groups (``process_groups``); the
functions they run are defined here, at module level.
"""

from __future__ import annotations

import io
import math
import random
import shutil

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import InfoNCELoss, SupConLoss, distributed
from contrastkit.data import ClassBalancedBatchSampler
from contrastkit.functional import (
    all_pairs_contrastive_loss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    info_nce,
    supcon,
)
from contrastkit.training import (
    LabelObjective,
    MemoryBank,
    PairObjective,
    Trainer,
    TwoViewObjective,
    WeightedSum,
    latest_checkpoint,
    load_objective_state,
    objective_state,
)
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


# ---------------------------------------------------------------------------------------
# A loss that gathers, with the memory: equal to one process on the whole batch
# ---------------------------------------------------------------------------------------

MEMORY_LOSSES = {
    "supcon": lambda z, y, **kw: supcon(z, y, temperature=0.4, **kw),
    "all_pairs_contrastive": lambda z, y, **kw: all_pairs_contrastive_loss(z, y, margin=1.5, **kw),
    "batch_all_triplet": lambda z, y, **kw: batch_all_triplet_loss(z, y, margin=0.5, **kw),
    "batch_hard_triplet": lambda z, y, **kw: batch_hard_triplet_loss(z, y, margin=0.5, **kw),
    "info_nce": None,  # queries and keys; the memory holds keys (MoCo)
}
MEMORY_LAYOUTS = [(3, 3), (4, 1), (2, 0, 3)]
MEMORY_STEPS = 4  # a memory of 7 rows fills in the second step, then overwrites


def _memory_step_data(step: int, layout: tuple[int, ...]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + sum(layout))
    n = sum(layout)
    return {
        "x": torch.randn(n, 5, generator=g, dtype=torch.float64),
        "x2": torch.randn(n, 5, generator=g, dtype=torch.float64),
        "y": torch.randint(0, 3, (n,), generator=g),
        # sample ids: some samples come back in later steps (a repeated id is no positive)
        "ids": torch.randint(0, 2 * n, (n,), generator=g),
    }


def _memory_steps(loss: str, with_ids: bool, layout: tuple[int, ...], world: int) -> tuple:
    """Losses and parameter gradients of a few SGD steps with a memory of 7 rows.

    With ``world > 1`` this is one rank of a DDP run whose loss gathers; with ``world``
    1, one process on the whole batch of every step.
    """
    rank = distributed.rank() if world > 1 else 0
    torch.manual_seed(0)
    model: torch.nn.Module = torch.nn.Linear(5, 4).double()
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    memory = MemoryBank(7, 4, dtype=torch.float64)
    gather = world > 1
    values, grads = [], []
    for step in range(MEMORY_STEPS):
        data = _memory_step_data(step, layout)
        if world > 1:
            start = sum(layout[:rank])
            data = {k: v[start : start + layout[rank]] for k, v in data.items()}
        ids = data["ids"] if with_ids else None
        z = model(data["x"])
        if loss == "info_nce":
            k = model(data["x2"])
            negatives = memory.candidates(gather=gather)[0]
            value = info_nce(z, k, temperature=0.3, negatives=negatives, gather=gather)
            memory.enqueue(k, gather=gather)
        else:
            extended = memory.extend(z, data["y"], ids, gather=gather)
            value = MEMORY_LOSSES[loss](z, data["y"], gather=gather, **extended)  # type: ignore[misc]
            memory.enqueue(z, data["y"], ids, gather=gather)
        optimizer.zero_grad()
        value.backward()
        grads.append([p.grad.detach().clone() for p in model.parameters()])  # type: ignore[union-attr]
        optimizer.step()
        values.append(value.detach())
    return values, grads, _held(memory) if loss != "info_nce" else memory.candidates()[0]


MEMORY_CASES = [
    (loss, with_ids, layout)
    for loss in MEMORY_LOSSES
    for with_ids in (False, True)
    for layout in MEMORY_LAYOUTS
    if not (loss == "info_nce" and with_ids)
]


@pytest.mark.parametrize(("loss", "with_ids", "layout"), MEMORY_CASES)
def test_a_gathering_loss_with_the_memory_equals_one_process_on_the_whole_batch(
    process_groups: ProcessGroups, loss: str, with_ids: bool, layout: tuple[int, ...]
) -> None:
    """Every step's loss and DDP gradient, and the queue after, as one process gets them.

    Fails if a process's candidates held the whole memory (each row W times), if the
    generated anchor ids repeated over processes (an anchor would lose its positives on
    another rank), or if the processes' queues differed.
    """
    values, grads, held = _memory_steps(loss, with_ids, layout, world=1)
    results = process_groups(len(layout)).run(_memory_steps, loss, with_ids, layout, len(layout))
    for rank_values, rank_grads, rank_held in results:
        for step in range(MEMORY_STEPS):
            torch.testing.assert_close(rank_values[step], values[step], rtol=1e-10, atol=1e-12)
            for got, want in zip(rank_grads[step], grads[step], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
        if loss == "info_nce":
            torch.testing.assert_close(rank_held, held, rtol=1e-10, atol=1e-12)
        else:
            assert rank_held[1:] == held[1:]
            torch.testing.assert_close(
                torch.tensor(rank_held[0]), torch.tensor(held[0]), rtol=1e-10, atol=1e-12
            )


def _shares(size: int, held: int) -> list[list[int]]:
    memory = MemoryBank(size, 1, dtype=torch.float64)
    memory.enqueue(torch.arange(held, dtype=torch.float64)[:, None])
    rows, _, ids = memory.candidates(gather=True)
    return [rows[:, 0].long().tolist(), ids.tolist()]


@pytest.mark.parametrize("world", [2, 3])
def test_each_process_hands_the_loss_every_wth_held_row(
    process_groups: ProcessGroups, world: int
) -> None:
    results = process_groups(world).run(_shares, 5, 7)  # holds 2..6, oldest first
    assert [r[0] for r in results] == [[2, 3, 4, 5, 6][r::world] for r in range(world)]
    assert sorted(i for r in results for i in r[1]) == [2, 3, 4, 5, 6]


def test_gather_without_a_process_group_raises() -> None:
    memory = MemoryBank(3, 2)
    with pytest.raises(RuntimeError, match="process group"):
        memory.enqueue(torch.zeros(1, 2), gather=True)
    with pytest.raises(RuntimeError, match="process group"):
        memory.extend(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), gather=True)
    with pytest.raises(RuntimeError, match="process group"):
        memory.candidates(gather=True)
    with pytest.raises(TypeError, match="gather must be a bool"):
        memory.candidates(gather=1)  # type: ignore[arg-type]
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


# ---------------------------------------------------------------------------------------
# In the objectives and the trainer
# ---------------------------------------------------------------------------------------


def _labelled_batch(seed: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.arange(n) % 3


def test_a_label_objective_compares_with_the_memory_then_enqueues_in_training_only() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4).double()
    memory = MemoryBank(8, 4, dtype=torch.float64)
    objective = LabelObjective(SupConLoss(temperature=0.3), memory=memory)
    reference = MemoryBank(8, 4, dtype=torch.float64)
    for step in range(3):
        x, y = _labelled_batch(step)
        got = objective(model, (x, y))["loss"]
        z = model(x)
        want = supcon(z, y, temperature=0.3, **reference.extend(z, y))
        reference.enqueue(z, y)
        assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
        assert _held(memory) == _held(reference)
    assert len(memory) == 8 and int(memory.seen) == 18
    with torch.no_grad():  # validation: the plain loss, nothing enqueued
        x, y = _labelled_batch(9)
        plain = objective(model, (x, y))["loss"]
        assert float(plain) == pytest.approx(float(supcon(model(x), y, temperature=0.3)))
    assert int(memory.seen) == 18


def test_a_two_view_objective_takes_the_remembered_keys_as_negatives() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4).double()
    memory = MemoryBank(5, 4, dtype=torch.float64)
    objective = TwoViewObjective(InfoNCELoss(temperature=0.3), memory=memory)
    keys = []
    for step in range(3):
        x, _ = _labelled_batch(step)
        y = torch.arange(6) // 2  # consecutive pairs
        got = objective(model, (x, y))["loss"]
        out = model(x)
        negatives = torch.cat(keys)[-5:] if keys else torch.zeros(0, 4, dtype=torch.float64)
        want = info_nce(out[0::2], out[1::2], temperature=0.3, negatives=negatives)
        keys.append(out[1::2].detach())
        assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
    assert torch.equal(memory.candidates()[0], torch.cat(keys)[-5:])
    assert memory.candidates()[1] is None


def _memory_trainer(run_dir: object, epochs: int, seed: int = 0) -> Trainer:
    x = torch.randn(40, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    y = torch.arange(40) % 4
    sampler = ClassBalancedBatchSampler(
        y, classes_per_batch=3, samples_per_class=2, batches_per_epoch=3, seed=1
    )
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    torch.manual_seed(seed + 1)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 3)
    ).double()
    objective = LabelObjective(SupConLoss(), memory=MemoryBank(10, 3, dtype=torch.float64))
    return Trainer(
        model,
        objective,
        torch.optim.Adam(model.parameters(), lr=0.05),
        loader,
        epochs=epochs,
        run_dir=run_dir,  # type: ignore[arg-type]
        progress=False,
        seed=2,
    )


def test_a_resumed_run_holds_the_same_memory_and_ends_bit_identically(tmp_path) -> None:
    straight = _memory_trainer(tmp_path / "a", 3)
    straight.fit()
    _memory_trainer(tmp_path / "b", 2).fit()
    resumed = _memory_trainer(tmp_path / "b", 3, seed=99)  # weights and memory from disk
    resumed.fit(resume=True)
    for got, want in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(got, want)
    memory, expected = resumed.objective.memory, straight.objective.memory  # type: ignore[attr-defined]
    assert _held(memory) == _held(expected) and int(memory.seen) == 3 * 3 * 6
    # without the saved memory the third epoch starts from an empty one: another run
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    _memory_trainer(tmp_path / "c", 2).fit()  # rewrite the checkpoint of epoch 2
    state_file = latest_checkpoint(tmp_path / "c") / "state.pt"  # type: ignore[operator]
    state = torch.load(state_file, weights_only=True)
    assert int(state["objective"]["memory"]["seen"]) == 2 * 3 * 6
    del state["objective"]
    torch.save(state, state_file)
    forgetful = _memory_trainer(tmp_path / "c", 3, seed=99)
    forgetful.fit(resume=True)
    assert not torch.equal(forgetful.model[2].weight, straight.model[2].weight)


def test_objective_state_nests_and_checks_what_it_gets_back() -> None:
    memory = MemoryBank(4, 2)
    memory.enqueue(torch.ones(3, 2), torch.tensor([0, 1, 0]))
    with_memory = LabelObjective(SupConLoss(), memory=memory)
    plain = PairObjective(SupConLoss())
    summed = WeightedSum({"a": (with_memory, 1.0), "b": (plain, 2.0)})
    state = objective_state(summed)
    assert set(state) == {"a", "b"} and state["b"] == {} and "memory" in state["a"]
    other = LabelObjective(SupConLoss(), memory=MemoryBank(4, 2))
    load_objective_state(WeightedSum({"a": (other, 1.0), "b": (plain, 2.0)}), state)
    assert _held(other.memory) == _held(memory)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holds a memory, unlike this objective"):
        LabelObjective(SupConLoss()).load_state_dict(state["a"])
    with pytest.raises(ValueError, match="holds no memory, unlike this objective"):
        other.load_state_dict({})
    with pytest.raises(TypeError, match="memory must be a MemoryBank or None, got list"):
        LabelObjective(SupConLoss(), memory=[])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="memory must be a MemoryBank or None, got int"):
        TwoViewObjective(InfoNCELoss(), memory=3)  # type: ignore[arg-type]
