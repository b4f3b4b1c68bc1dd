"""The trainer on several processes: DDP, exact objectives, rank-0 files, resume, evaluation.

The multi-process cases run in the session's gloo groups (``process_groups``, spawned
once per session); the functions they run are defined here, at module level, and
return plain values (lists, floats) that pickle by value.

The reference of every equality is one process (this test's) training on the same
global batches: the parts of the ranks, concatenated in rank order.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import (
    ContrastiveLoss,
    InfoNCELoss,
    ReconstructionLoss,
    SupConLoss,
    TripletLoss,
    distributed,
)
from contrastkit.data import (
    ClassBalancedBatchSampler,
    PairDataset,
    RandomBatchSampler,
    TripletDataset,
)
from contrastkit.models import Autoencoder, MLPDecoder, MLPEncoder, SiameseNetwork
from contrastkit.training import (
    CachedObjective,
    LabelObjective,
    MemoryBank,
    PairObjective,
    ReconstructionObjective,
    Trainer,
    TripletObjective,
    TwoViewObjective,
    WeightedSum,
)
from contrastkit.training.objectives import global_value
from process_group import ProcessGroups

FEATURES = 5
TOLERANCE = 1e-10  # float64: the processes' sums are in another order than one process's


def blobs(num_classes: int = 4, per_class: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(num_classes, FEATURES, generator=g, dtype=torch.float64) * 3
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    noise = torch.randn(len(labels), FEATURES, generator=g, dtype=torch.float64)
    return centers[labels] + 0.5 * noise, labels


def build(kind: str, world_size: int, rank: int) -> tuple[nn.Module, Any, DataLoader[Any]]:
    """A float64 model without BatchNorm, its objective and this rank's loader."""
    torch.manual_seed(1)
    inputs, labels = blobs()
    where = {"world_size": world_size, "rank": rank}
    encoder = MLPEncoder(FEATURES, embedding_dim=3, hidden=(8,))
    if kind == "pairs":
        pairs = PairDataset(inputs, labels, pairs_per_epoch=31, seed=3)
        sampler = RandomBatchSampler(pairs, batch_size=7, seed=3, **where)  # 31 = 4 × 7 + 3
        model: nn.Module = SiameseNetwork(encoder)
        return (
            model.double(),
            PairObjective(ContrastiveLoss()),
            DataLoader(pairs, batch_sampler=sampler),
        )
    if kind == "cached_pairs":  # the encoder in micro-batches of 2: 2 and 1 per rank
        pairs = PairDataset(inputs, labels, pairs_per_epoch=31, seed=3)
        sampler = RandomBatchSampler(pairs, batch_size=7, seed=3, **where)
        return (
            SiameseNetwork(encoder).double(),
            CachedObjective(PairObjective(ContrastiveLoss()), micro_batch=2),
            DataLoader(pairs, batch_sampler=sampler),
        )
    if kind == "triplets":
        triplets = TripletDataset(inputs, labels, triplets_per_epoch=26, seed=4)
        sampler = RandomBatchSampler(triplets, batch_size=8, seed=4, **where)
        model = SiameseNetwork(encoder)
        loader = DataLoader(triplets, batch_sampler=sampler)
        return model.double(), TripletObjective(TripletLoss(margin=0.5)), loader
    if kind in ("memory_supcon", "memory_infonce"):  # every rank holds one memory
        two = kind == "memory_infonce"
        balanced = ClassBalancedBatchSampler(
            labels,
            classes_per_batch=4 if two else 3,
            samples_per_class=2 if two else 3,
            batches_per_epoch=4,
            **where,
        )
        loader = DataLoader(TensorDataset(inputs, labels), batch_sampler=balanced)
        memory = MemoryBank(11, 3, dtype=torch.float64)  # full in the 2nd step, then wraps
        gather = world_size > 1
        objective: Any = (
            TwoViewObjective(InfoNCELoss(temperature=0.5, gather=gather), memory=memory)
            if two
            else LabelObjective(SupConLoss(temperature=0.5, gather=gather), memory=memory)
        )
        return encoder.double(), objective, loader
    autoencoder = Autoencoder(encoder, MLPDecoder(3, FEATURES, hidden=(8,))).double()
    if kind == "reconstruction":  # class-balanced batches: each rank takes whole classes
        balanced = ClassBalancedBatchSampler(
            labels, classes_per_batch=3, samples_per_class=3, batches_per_epoch=4, **where
        )
        loader = DataLoader(TensorDataset(inputs, labels), batch_sampler=balanced)
        return autoencoder, ReconstructionObjective(ReconstructionLoss()), loader
    # combined: reconstruct and forward through DDP in one step, one backward
    pairs = PairDataset(inputs, labels, pairs_per_epoch=22, seed=5)
    sampler = RandomBatchSampler(pairs, batch_size=5, seed=5, **where)
    objective: Any = WeightedSum(
        {
            "reconstruction": (ReconstructionObjective(ReconstructionLoss()), 1.0),
            "contrastive": (PairObjective(ContrastiveLoss()), 0.5),
        }
    )
    if kind == "cached_combined":  # the whole sum cached: both calls in one DDP forward
        objective = CachedObjective(objective, micro_batch=2)
    return autoencoder, objective, DataLoader(pairs, batch_sampler=sampler)


def weights(model: nn.Module) -> dict[str, list[float]]:
    return {k: v.detach().double().flatten().tolist() for k, v in model.state_dict().items()}


def train(
    kind: str,
    world_size: int,
    rank: int,
    *,
    epochs: int = 2,
    accumulate: int = 1,
    run_dir: str | None = None,
    resume: bool = False,
    **options: Any,
) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    model, objective, loader = build(kind, world_size, rank)
    trainer = Trainer(
        model,
        objective,
        torch.optim.Adam(model.parameters(), lr=0.01),
        loader,
        epochs=epochs,
        accumulate=accumulate,
        run_dir=run_dir,
        progress=False,
        **options,
    )
    history = trainer.fit(resume=resume)
    return weights(trainer.model), [
        {k: v for k, v in r.items() if k != "epoch_seconds"} for r in history
    ]


def _train_here(
    kind: str, accumulate: int
) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    assert distributed.is_distributed()
    return train(kind, distributed.world_size(), distributed.rank(), accumulate=accumulate)


def assert_close(a: dict[str, list[float]], b: dict[str, list[float]]) -> None:
    assert list(a) == list(b)
    for key in a:
        difference = (torch.tensor(a[key]) - torch.tensor(b[key])).abs().max()
        assert difference <= TOLERANCE, (key, float(difference))


@pytest.mark.parametrize(
    ("kind", "world", "accumulate"),
    [
        ("pairs", 2, 1),
        ("pairs", 3, 1),
        ("cached_pairs", 2, 1),
        ("cached_pairs", 3, 1),
        ("triplets", 2, 2),
        ("reconstruction", 3, 1),
        ("combined", 2, 1),
        ("memory_supcon", 3, 1),
        ("memory_infonce", 2, 2),
        ("cached_combined", 2, 1),
        ("cached_combined", 2, 2),
    ],
)
def test_the_processes_train_the_model_one_process_trains_on_the_whole_batches(
    process_groups: ProcessGroups, kind: str, world: int, accumulate: int
) -> None:
    results = process_groups(world).run(_train_here, kind, accumulate)
    alone_weights, alone_history = train(kind, 1, 0, accumulate=accumulate)
    for rank_weights, rank_history in results:
        assert_close(rank_weights, alone_weights)
        # the logged terms are the global batch's, the same on every rank
        assert [sorted(r) for r in rank_history] == [sorted(r) for r in alone_history]
        for mine, alone in zip(rank_history, alone_history, strict=True):
            for name, value in alone.items():
                assert mine[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_the_one_process_reference_is_not_trivially_met() -> None:
    """The equality above fails for a different batch split: it measures something."""
    whole, _ = train("pairs", 1, 0)
    half, _ = train("pairs", 2, 0)  # rank 0's part alone, as one process: another model
    differences = [(torch.tensor(whole[k]) - torch.tensor(half[k])).abs().max() for k in whole]
    assert max(differences) > 1e-4


# --- global_value -------------------------------------------------------------------


def _global_value(rows_per_rank: list[int]) -> tuple[float, float]:
    r = distributed.rank()
    x = torch.tensor(float(r + 1), dtype=torch.float64, requires_grad=True)
    loss = global_value(x * 2, rows_per_rank[r], ContrastiveLoss())
    loss.backward()
    assert x.grad is not None
    return float(loss.detach()), float(x.grad)


def test_global_value_is_the_weighted_mean_with_the_gradient_ddp_averages(
    process_groups: ProcessGroups,
) -> None:
    rows = [4, 3, 1]
    results = process_groups(3).run(_global_value, rows)
    means = [2.0 * (r + 1) for r in range(3)]
    expected = sum(m * n for m, n in zip(means, rows, strict=True)) / sum(rows)
    for r, (value, grad) in enumerate(results):
        assert value == pytest.approx(expected, rel=1e-15)
        # d/dx of W·B_r/ΣB · 2x: averaged by DDP over W, it is B_r/ΣB · 2
        assert grad == pytest.approx(3 * rows[r] / sum(rows) * 2, rel=1e-15)


class _Gathers(nn.Module):
    gather = True
    reduction = "mean"


class _Sums(nn.Module):
    gather = False
    reduction = "sum"


def _global_value_of_gathering_and_summed_losses() -> tuple[float, float]:
    r = distributed.rank()
    x = torch.tensor(float(r + 1), dtype=torch.float64)
    return float(global_value(x, 5, _Gathers())), float(global_value(x, 5, _Sums()))


def test_global_value_leaves_gathering_losses_and_sums_summed(
    process_groups: ProcessGroups,
) -> None:
    for r, (gathered, summed) in enumerate(
        process_groups(2).run(_global_value_of_gathering_and_summed_losses)
    ):
        assert gathered == r + 1  # already global: untouched
        assert summed == 3.0  # 1 + 2


def test_global_value_is_the_value_itself_alone() -> None:
    x = torch.tensor(2.0, requires_grad=True)
    assert global_value(x, 3, ContrastiveLoss()) is x


# --- files, evaluation, resume ------------------------------------------------------


def _fit_with_files(root: str, epochs: int, resume: bool) -> dict[str, Any]:
    r = distributed.rank()
    calls: list[int] = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        calls.append(r)
        weight = float(next(model.parameters()).detach().sum())
        return {"val_score": weight + 1000.0 * r}  # rank 1 would say otherwise

    run_dir = Path(root) / f"rank{r}"  # rank 1's must stay empty
    trained, history = train(
        "pairs",
        distributed.world_size(),
        r,
        epochs=epochs,
        run_dir=str(run_dir),
        resume=resume,
        evaluate=evaluate,
        monitor="val_score",
        mode="min",
    )
    return {"weights": trained, "history": history, "calls": calls}


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_rank_0_alone_writes_evaluates_and_every_rank_keeps_its_record(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    results = process_groups(2).run(_fit_with_files, str(tmp_path), 2, False)
    assert files_under(tmp_path / "rank0") == [
        "checkpoints/best/model.safetensors",
        "checkpoints/best/record.json",
        "checkpoints/epoch-0002/model.safetensors",
        "checkpoints/epoch-0002/state.pt",
        "metrics.jsonl",
    ]
    assert not (tmp_path / "rank1").exists()
    assert results[0]["calls"] == [0, 0] and results[1]["calls"] == []
    assert results[0]["history"] == results[1]["history"]  # rank 0's values on rank 1
    assert all(abs(r["val_score"]) < 100 for r in results[1]["history"])  # rank 0's values
    lines = (tmp_path / "rank0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_every_rank_resumes_from_rank_0_s_checkpoint(
    process_groups: ProcessGroups, tmp_path: Path
) -> None:
    group = process_groups(2)
    whole = group.run(_fit_with_files, str(tmp_path / "whole"), 3, False)
    group.run(_fit_with_files, str(tmp_path / "stopped"), 1, False)
    resumed = group.run(_fit_with_files, str(tmp_path / "stopped"), 3, True)
    assert not (tmp_path / "stopped" / "rank1").exists()  # rank 1 had no checkpoint to read
    for r in range(2):
        assert resumed[r]["weights"] == whole[r]["weights"]  # exactly
        assert resumed[r]["history"] == whole[r]["history"]
    assert resumed[0]["calls"] == [0, 0]  # epochs 2 and 3 only


# --- random state, failures ---------------------------------------------------------


class _Draws:
    """An objective that records the first random number of each step."""

    def __init__(self) -> None:
        self.inner = PairObjective(ContrastiveLoss())
        self.draws: list[float] = []

    def __call__(self, model: Any, batch: Any) -> dict[str, torch.Tensor]:
        self.draws.append(float(torch.rand(())))
        return self.inner(model, batch)


def draws_and_batches(world_size: int, rank: int) -> tuple[list[float], list[list[float]]]:
    model, _, loader = build("pairs", world_size, rank)
    objective = _Draws()
    seen: list[list[float]] = []

    class Recording(Trainer):
        def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
            seen.append(batch[2].double().tolist())
            return super().training_step(batch)

    Recording(
        model,
        objective,
        torch.optim.SGD(model.parameters(), lr=0.01),
        loader,
        epochs=1,
        progress=False,
    ).fit()
    return objective.draws, seen


def _draws_and_batches() -> tuple[list[float], list[list[float]]]:
    return draws_and_batches(distributed.world_size(), distributed.rank())


def test_random_state_differs_by_rank_and_the_data_order_does_not(
    process_groups: ProcessGroups,
) -> None:
    (draws0, parts0), (draws1, parts1) = process_groups(2).run(_draws_and_batches)
    alone_draws, alone_batches = draws_and_batches(1, 0)
    assert draws0[0] == alone_draws[0]  # rank 0's epoch seed is one process's
    assert draws1[0] != draws0[0]  # dropout masks differ between ranks
    assert [a + b for a, b in zip(parts0, parts1, strict=True)] == alone_batches


class _NaNOnRank1:
    def __init__(self) -> None:
        self.inner = PairObjective(ContrastiveLoss())

    def __call__(self, model: Any, batch: Any) -> dict[str, torch.Tensor]:
        loss = self.inner(model, batch)["loss"]
        return {"loss": loss * float("nan") if distributed.rank() == 1 else loss}


def _fails(case: str) -> str:
    model, objective, loader = build("pairs", distributed.world_size(), distributed.rank())

    def evaluate(_: nn.Module) -> dict[str, float]:
        raise ValueError("evaluation broke")

    options: dict[str, Any] = {"progress": False}
    if case == "nan":
        objective = _NaNOnRank1()
        options["log_every"] = 1  # read back (and checked) after every step
    else:
        options["evaluate"] = evaluate
    trainer = Trainer(
        model, objective, torch.optim.SGD(model.parameters(), lr=0.1), loader, epochs=1, **options
    )
    try:
        trainer.fit()
    except (FloatingPointError, ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def test_a_non_finite_loss_on_one_rank_stops_every_rank(process_groups: ProcessGroups) -> None:
    for outcome in process_groups(2).run(_fails, "nan"):
        assert outcome.startswith("FloatingPointError: the loss is nan at epoch 1, step 0")


def test_a_failure_of_rank_0_stops_the_others_instead_of_leaving_them_waiting(
    process_groups: ProcessGroups,
) -> None:
    first, second = process_groups(2).run(_fails, "evaluate")
    assert first == "ValueError: evaluation broke"
    assert (
        second == "RuntimeError: rank 0 failed, so this process stops: ValueError: evaluation broke"
    )


# --- BatchNorm ----------------------------------------------------------------------


def _batch_norm(option: bool | None) -> str:
    torch.manual_seed(0)
    model = SiameseNetwork(MLPEncoder(FEATURES, embedding_dim=3, hidden=(8,), batch_norm=True))
    inputs, labels = blobs()
    pairs = PairDataset(inputs.float(), labels, pairs_per_epoch=16)
    where = {"world_size": distributed.world_size(), "rank": distributed.rank()}
    loader = DataLoader(pairs, batch_sampler=RandomBatchSampler(pairs, batch_size=8, **where))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer = Trainer(
                model,
                PairObjective(ContrastiveLoss()),
                torch.optim.SGD(model.parameters(), lr=0.1),
                loader,
                epochs=1,
                progress=False,
                sync_batch_norm=option,
            )
            trainer.fit()
        except ValueError as error:
            return f"ValueError: {error}"
    return "; ".join(str(w.message) for w in caught) or "silent"


def test_batch_norm_on_cpu_processes_is_per_process_and_said_so(
    process_groups: ProcessGroups,
) -> None:
    for outcome in process_groups(2).run(_batch_norm, None):
        assert "each process normalizes its part of the batch" in outcome
        assert "SyncBatchNorm runs on CUDA only" in outcome
    for outcome in process_groups(2).run(_batch_norm, False):
        assert outcome == "silent"
    for outcome in process_groups(2).run(_batch_norm, True):
        assert outcome.startswith("ValueError: sync_batch_norm=True needs a CUDA device")


def _torch_sync_batch_norm_on_cpu() -> str:
    layer = nn.SyncBatchNorm(3)
    try:
        layer(torch.randn(4, 3))
    except ValueError as error:
        return str(error)
    return "ran"


def test_torch_s_sync_batch_norm_refuses_cpu_tensors(process_groups: ProcessGroups) -> None:
    """What the choice above rests on (torch 2.13): SyncBatchNorm runs on GPUs only."""
    for outcome in process_groups(2).run(_torch_sync_batch_norm_on_cpu):
        assert "expected input tensor to be on GPU" in outcome


# --- bad input ----------------------------------------------------------------------


def test_distributed_true_needs_a_process_group() -> None:
    model, objective, loader = build("pairs", 1, 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match=r"distributed=True.*torchrun.*init_process_group"):
        Trainer(model, objective, optimizer, loader, epochs=1, distributed=True)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("distributed", "yes", "distributed must be True, False or None, got 'yes'"),
        ("sync_batch_norm", 1, "sync_batch_norm must be True, False or None, got 1"),
        ("ddp_options", ["find_unused_parameters"], "ddp_options must be a mapping"),
    ],
)
def test_bad_distributed_options_are_named(option: str, value: Any, message: str) -> None:
    model, objective, loader = build("pairs", 1, 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=message):
        Trainer(model, objective, optimizer, loader, epochs=1, **{option: value})
