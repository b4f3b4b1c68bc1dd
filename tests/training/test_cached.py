"""CachedObjective: the uncached step's loss and gradients, the encoder in micro-batches."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from contrastkit import (
    AllPairsContrastiveLoss,
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    ContrastiveLoss,
    InfoNCELoss,
    NTXentLoss,
    ReconstructionLoss,
    SupConLoss,
    TripletLoss,
)
from contrastkit.models import SiameseNetwork
from contrastkit.training import (
    CachedObjective,
    LabelObjective,
    PairObjective,
    ReconstructionObjective,
    TripletObjective,
    TwoViewObjective,
)

N, FEATURES = 10, 5


def _model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(FEATURES, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 3)
    ).double()


def _batch(kind: str) -> Any:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, FEATURES, generator=g, dtype=torch.float64)
    if kind == "pairs":
        x2 = torch.randn(N, FEATURES, generator=g, dtype=torch.float64)
        return x, x2, torch.arange(N) % 2
    if kind == "triplets":
        x2 = torch.randn(N, FEATURES, generator=g, dtype=torch.float64)
        x3 = torch.randn(N, FEATURES, generator=g, dtype=torch.float64)
        return x, x2, x3
    if kind == "two_views":
        return x, torch.arange(N) // 2
    return x, torch.arange(N) % 3


OBJECTIVES: dict[str, tuple[str, Callable[[], Any]]] = {
    "contrastive_pairs": ("pairs", lambda: PairObjective(ContrastiveLoss(margin=1.0))),
    "triplet": ("triplets", lambda: TripletObjective(TripletLoss(margin=0.5))),
    "supcon": ("labels", lambda: LabelObjective(SupConLoss(temperature=0.5))),
    "supcon_tiled": ("labels", lambda: LabelObjective(SupConLoss(chunk_size=3))),
    "all_pairs": ("labels", lambda: LabelObjective(AllPairsContrastiveLoss(margin=2.0))),
    "batch_all": ("labels", lambda: LabelObjective(BatchAllTripletLoss(margin=1.0))),
    "batch_hard": ("labels", lambda: LabelObjective(BatchHardTripletLoss(margin=1.0))),
    "infonce": ("two_views", lambda: TwoViewObjective(InfoNCELoss(temperature=0.3))),
    "clip": ("two_views", lambda: TwoViewObjective(InfoNCELoss(symmetric=True))),
    "ntxent": ("two_views", lambda: TwoViewObjective(NTXentLoss())),
}
MICRO_BATCHES = [1, 3, 4, 2 * N + 1]  # 3 and 4 do not divide the batch; the last exceeds it


def _step(objective: Any, model: nn.Module, batch: Any) -> tuple[Tensor, list[Tensor]]:
    model.zero_grad()
    loss = objective(model, batch)["loss"]
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return loss.detach(), grads


@pytest.mark.parametrize(
    ("name", "micro_batch"), list(itertools.product(OBJECTIVES, MICRO_BATCHES))
)
def test_cached_step_equals_the_uncached_step(name: str, micro_batch: int) -> None:
    kind, make = OBJECTIVES[name]
    batch = _batch(kind)
    # pairs go through a siamese network: model(x1, x2) gives both embeddings
    network = (lambda: SiameseNetwork(_model())) if kind == "pairs" else _model
    expected, expected_grads = _step(make(), network(), batch)
    got, grads = _step(CachedObjective(make(), micro_batch=micro_batch), network(), batch)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # fails if no gradient reached the parameters (the last bias of a siamese pair loss
    # gets an exact 0: the distance of two outputs does not depend on it)
    assert len(grads) == len(expected_grads) == 4
    assert all(g.abs().sum() > 0 for g in grads[:3])
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


class _Recording(nn.Module):
    """Dropout that records each mask it draws, or applies masks it is given."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.drawn: list[Tensor] = []
        self.given: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.given is not None:
            return x * self.given
        mask = (torch.rand_like(x) > self.p).to(x.dtype) / (1 - self.p)
        self.drawn.append(mask)
        return x * mask


def test_dropout_masks_are_replayed_bitwise_and_give_the_first_forward_s_gradients() -> None:
    torch.manual_seed(0)
    dropout = _Recording(0.3)
    model = nn.Sequential(nn.Linear(FEATURES, 8), dropout, nn.Linear(8, 3)).double()
    outputs: list[Tensor] = []
    model.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    batch = _batch("labels")
    objective = LabelObjective(SupConLoss(temperature=0.5))
    torch.manual_seed(5)
    loss = CachedObjective(objective, micro_batch=4)(model, batch)["loss"]
    first_masks, first_outputs = list(dropout.drawn), list(outputs)
    assert len(first_masks) == 3
    loss.backward()
    replayed_masks, replayed_outputs = dropout.drawn[3:], outputs[3:]
    for first, again in zip(first_masks, replayed_masks, strict=True):
        assert torch.equal(first, again)
    for first, again in zip(first_outputs, replayed_outputs, strict=True):
        assert torch.equal(first, again)
    grads = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    # the reference: the uncached step with the masks the first forward drew
    model.zero_grad()
    dropout.given = torch.cat(first_masks)
    expected = objective(model, batch)["loss"]
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-12, atol=1e-12)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)


def test_nn_dropout_re_forward_is_bitwise_the_first_and_the_random_state_moves_on() -> None:
    model = _model(dropout=0.3)
    outputs: list[Tensor] = []
    model.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    torch.manual_seed(7)
    loss = CachedObjective(LabelObjective(SupConLoss()), micro_batch=3)(model, _batch("labels"))
    after_forward = torch.get_rng_state()
    loss["loss"].backward()
    assert torch.equal(torch.get_rng_state(), after_forward)  # the replay gives it back
    assert len(outputs) == 8
    for first, again in zip(outputs[:4], outputs[4:], strict=True):
        assert torch.equal(first, again)


def test_two_calls_before_one_backward_each_replay_their_own_batch() -> None:
    objective = LabelObjective(SupConLoss(temperature=0.5))
    first, second = _batch("labels"), (_batch("labels")[0].flip(0), torch.arange(N) % 4)
    model = _model()
    (objective(model, first)["loss"] + objective(model, second)["loss"]).backward()
    expected = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    model = _model()
    cached = CachedObjective(objective, micro_batch=3)
    (cached(model, first)["loss"] + cached(model, second)["loss"]).backward()
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-10, atol=1e-12)


def test_the_outer_gradient_scales_the_cached_one() -> None:
    batch = _batch("labels")
    cached = CachedObjective(LabelObjective(SupConLoss()), micro_batch=4)
    _, grads = _step(cached, _model(), batch)
    model = _model()
    (0.25 * cached(model, batch)["loss"]).backward()
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, 0.25 * g, rtol=1e-12, atol=1e-14)


def test_a_call_without_gradient_embeds_in_micro_batches_and_keeps_no_graph() -> None:
    batch = _batch("labels")
    objective = LabelObjective(SupConLoss())
    calls: list[int] = []
    model = _model()
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        loss = CachedObjective(objective, micro_batch=4)(model, batch)["loss"]
        expected = objective(_model(), batch)["loss"]
    assert calls == [4, 4, 2]
    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_tokenized_inputs_are_split_per_key() -> None:
    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embedding = nn.Embedding(20, 3, dtype=torch.float64)

        def forward(self, tokens: dict[str, Tensor]) -> Tensor:
            return self.embedding(tokens["input_ids"]).mean(1)

    g = torch.Generator().manual_seed(2)
    tokens = {"input_ids": torch.randint(0, 20, (N, 4), generator=g)}
    batch = (tokens, torch.arange(N) % 3)
    objective = LabelObjective(SupConLoss())
    expected, expected_grads = _step(objective, Bag(), batch)
    got, grads = _step(CachedObjective(objective, micro_batch=3), Bag(), batch)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], expected_grads[0], rtol=1e-10, atol=1e-12)


def test_batch_norm_in_training_mode_is_refused_with_what_to_do() -> None:
    model = nn.Sequential(nn.Linear(FEATURES, 4), nn.BatchNorm1d(4)).double()
    cached = CachedObjective(LabelObjective(SupConLoss()), micro_batch=4)
    with pytest.raises(ValueError, match=r"batch normalization .* '1'.* without BatchNorm"):
        cached(model, _batch("labels"))
    model.eval()  # running statistics: no coupling between rows
    cached(model, _batch("labels"))["loss"].backward()
    with torch.no_grad():  # evaluation never replays
        cached(model.train(), _batch("labels"))


def test_an_objective_calling_another_method_of_the_model_is_told_what_to_wrap() -> None:
    class Auto(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x

        def reconstruct(self, x: Tensor) -> Tensor:
            return x

    cached = CachedObjective(ReconstructionObjective(ReconstructionLoss()), micro_batch=2)
    with pytest.raises(TypeError, match=r"model\.reconstruct.*contrastive term of a WeightedSum"):
        cached(Auto(), torch.rand(4, 3))


@pytest.mark.parametrize("micro_batch", [0, -1, True, 2.5, "4"])
def test_bad_micro_batch_is_refused(micro_batch: object) -> None:
    with pytest.raises((TypeError, ValueError), match="micro_batch"):
        CachedObjective(LabelObjective(SupConLoss()), micro_batch=micro_batch)  # type: ignore[arg-type]


def test_an_objective_must_be_callable() -> None:
    with pytest.raises(TypeError, match="objective must be callable, got int"):
        CachedObjective(3, micro_batch=2)  # type: ignore[arg-type]


def test_the_trainer_takes_a_cached_objective_and_trains_the_same_model() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from contrastkit.training import Trainer

    g = torch.Generator().manual_seed(3)
    data = TensorDataset(
        torch.randn(40, FEATURES, generator=g, dtype=torch.float64), torch.arange(40) % 4
    )
    without_dropout = []
    for objective in (
        LabelObjective(SupConLoss(temperature=0.5)),
        CachedObjective(LabelObjective(SupConLoss(temperature=0.5)), micro_batch=3),
    ):
        model = _model()
        loader = DataLoader(data, batch_size=20, shuffle=False)
        Trainer(
            model,
            objective,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader,
            epochs=2,
            seed=5,
            progress=False,
        ).fit()
        without_dropout.append(model)
    for a, b in zip(without_dropout[0].parameters(), without_dropout[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _model_with_buffers() -> nn.Module:
    """A model with buffers (batch normalization's running statistics, in eval mode)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
    model[1].running_mean.uniform_(-1, 1)
    model[1].eval()
    return model.double()


def _cached_step_on_rank(layout: tuple[int, ...], micro_batch: int, buffers: bool) -> list[Tensor]:
    """One DDP step of a cached, gathered SupCon on this rank's part of the batch."""
    from contrastkit import distributed

    rank = distributed.rank()
    x, labels = _batch("labels")
    start = sum(layout[:rank])
    mine = slice(start, start + layout[rank])
    model = nn.parallel.DistributedDataParallel(_model_with_buffers() if buffers else _model())
    objective = CachedObjective(
        LabelObjective(SupConLoss(temperature=0.5, gather=True)), micro_batch=micro_batch
    )
    objective(model, (x[mine], labels[mine]))["loss"].backward()
    return [p.grad.detach().clone() for p in model.parameters()]  # type: ignore[union-attr]


@pytest.mark.parametrize("buffers", [False, True], ids=["no_buffers", "buffers"])
@pytest.mark.parametrize("layout", [(5, 5), (7, 3), (4, 4, 2), (6, 0, 4)], ids=str)
def test_cached_and_gathered_under_ddp_is_one_process_uncached_step(
    process_groups: Any, layout: tuple[int, ...], buffers: bool
) -> None:
    """Gather once over the cached embeddings; the gradients exchanged once, at the end.

    The processes hold different numbers of micro-batches (4 and 2 for (7, 3), one empty
    part): a model with buffers, which DDP broadcasts on each of its forwards, still
    makes one exchange per process and step.
    """
    model = _model_with_buffers() if buffers else _model()
    objective = LabelObjective(SupConLoss(temperature=0.5))
    _, expected = _step(objective, model, _batch("labels"))
    for grads in process_groups(len(layout)).run(_cached_step_on_rank, layout, 2, buffers):
        for g, e in zip(grads, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["group", "none"])
def test_a_convnet_without_batch_norm_is_cached_exactly(norm: str) -> None:
    from contrastkit.models import ConvEncoder

    def convnet() -> nn.Module:
        torch.manual_seed(0)
        return ConvEncoder(1, embedding_dim=4, channels=(6, 12), norm=norm).double()

    g = torch.Generator().manual_seed(4)
    batch = (torch.rand(9, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(9) % 3)
    objective = LabelObjective(SupConLoss(temperature=0.5))
    expected, expected_grads = _step(objective, convnet(), batch)
    got, grads = _step(CachedObjective(objective, micro_batch=4), convnet(), batch)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for g_, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g_, e, rtol=1e-9, atol=1e-12)


def test_the_default_convnet_has_batch_norm_and_is_refused() -> None:
    from contrastkit.models import ConvEncoder

    model = ConvEncoder(1, embedding_dim=4, channels=(6,))
    with pytest.raises(ValueError, match="batch normalization"):
        CachedObjective(LabelObjective(SupConLoss()), micro_batch=2)(
            model, (torch.rand(4, 1, 4, 4), torch.arange(4) % 2)
        )
