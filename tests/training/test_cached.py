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
from contrastkit.models import Autoencoder, MLPDecoder, MLPEncoder, SiameseNetwork
from contrastkit.training import (
    CachedObjective,
    LabelObjective,
    PairObjective,
    ReconstructionObjective,
    TripletObjective,
    TwoViewObjective,
    WeightedSum,
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


def test_an_objective_using_a_submodule_or_an_attribute_is_told_what_is_cached() -> None:
    """The model's calls on the batch are cached; a submodule called directly is not."""
    model = Autoencoder(nn.Linear(FEATURES, 3), nn.Linear(3, FEATURES)).double()
    x, labels = _batch("labels")
    cached = CachedObjective(lambda m, b: {"loss": m.encoder(b[0]).sum()}, micro_batch=2)
    with pytest.raises(TypeError, match=r"model\(x\) and the methods .* model\.encoder,"):
        cached(model, (x, labels))
    cached = CachedObjective(lambda m, b: {"loss": torch.tensor(m.noise_std)}, micro_batch=2)
    with pytest.raises(TypeError, match=r"model\.noise_std,"):
        cached(model, (x, labels))


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


# --- model(x) and model.reconstruct(x) in one cached objective ------------------------


def _autoencoder(noise_std: float = 0.0, dropout: float = 0.0) -> Autoencoder:
    torch.manual_seed(0)
    encoder = MLPEncoder(FEATURES, embedding_dim=3, hidden=(8,), dropout=dropout)
    return Autoencoder(encoder, MLPDecoder(3, FEATURES, hidden=(8,)), noise_std=noise_std).double()


def _combined(contrastive: Any) -> WeightedSum:
    return WeightedSum(
        {
            "reconstruction": (ReconstructionObjective(ReconstructionLoss()), 1.5),
            "contrastive": (contrastive, 0.5),
        }
    )


def _terms_and_grads(
    objective: Any, model: nn.Module, batch: Any
) -> tuple[dict[str, Tensor], list[Tensor]]:
    model.zero_grad()
    terms = objective(model, batch)
    terms["loss"].backward()
    return {k: v.detach() for k, v in terms.items()}, [
        p.grad.clone() for p in model.parameters() if p.grad is not None
    ]


@pytest.mark.parametrize(
    ("name", "micro_batch"), list(itertools.product(OBJECTIVES, MICRO_BATCHES))
)
def test_a_cached_weighted_sum_with_reconstruction_equals_the_uncached_one(
    name: str, micro_batch: int
) -> None:
    """The whole sum wrapped: the reconstruction of every input and the contrastive term."""
    kind, make = OBJECTIVES[name]
    batch = _batch(kind)
    expected, expected_grads = _terms_and_grads(_combined(make()), _autoencoder(), batch)
    cached = CachedObjective(_combined(make()), micro_batch=micro_batch)
    got, grads = _terms_and_grads(cached, _autoencoder(), batch)
    assert list(got) == list(expected) == ["reconstruction", "contrastive", "loss"]
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-12, atol=1e-12)
    # every parameter of the encoder and the decoder got a gradient, the uncached one's
    assert len(grads) == len(expected_grads) == 8
    assert all(g.abs().sum() > 0 for g in grads)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def _hooked(model: Autoencoder) -> list[tuple[str, Tensor, Tensor]]:
    """Every forward of the encoder and the decoder: (which, input, output)."""
    seen: list[tuple[str, Tensor, Tensor]] = []
    for part in ("encoder", "decoder"):
        getattr(model, part).register_forward_hook(
            lambda m, i, o, part=part: seen.append((part, i[0].detach(), o.detach().clone()))
        )
    return seen


def test_a_denoising_autoencoder_s_noise_and_dropout_are_replayed_bitwise() -> None:
    """Noise from the global generator in reconstruct: every re-forward is its first."""
    model = _autoencoder(noise_std=0.3, dropout=0.2)
    seen = _hooked(model)
    x, labels = _batch("labels")
    torch.manual_seed(3)
    objective = CachedObjective(_combined(LabelObjective(SupConLoss())), micro_batch=4)
    terms = objective(model, (x, labels))
    after_forward = torch.get_rng_state()
    first = list(seen)
    # 3 micro-batches of model.reconstruct(x) (encoder, decoder), then 3 of model(x)
    assert [part for part, _, _ in first] == ["encoder", "decoder"] * 3 + ["encoder"] * 3
    encoded = torch.cat([inputs for part, inputs, _ in first[:6] if part == "encoder"])
    assert not torch.equal(encoded, x)  # reconstruct's input has its noise
    terms["loss"].backward()
    assert torch.equal(torch.get_rng_state(), after_forward)  # the replay gives it back
    again = seen[len(first) :]
    assert len(again) == len(first)
    for (part, inputs, outputs), (part_, inputs_, outputs_) in zip(first, again, strict=True):
        assert part == part_
        assert torch.equal(inputs, inputs_) and torch.equal(outputs, outputs_)


def test_a_denoising_autoencoder_gets_the_gradient_of_the_noise_it_drew() -> None:
    model = _autoencoder(noise_std=0.3)
    seen = _hooked(model)
    x, labels = _batch("labels")
    objective = _combined(LabelObjective(SupConLoss(temperature=0.5)))
    got, grads = _terms_and_grads(CachedObjective(objective, micro_batch=3), model, (x, labels))
    noisy = torch.cat([inputs for part, inputs, _ in seen[:8] if part == "encoder"])
    assert noisy.shape == x.shape and not torch.equal(noisy, x)
    # the reference: the uncached terms, with the noisy inputs the cached forward drew
    reference = _autoencoder(noise_std=0.0)
    reconstruction = ReconstructionLoss()(reference.reconstruct(noisy), x)
    contrastive = SupConLoss(temperature=0.5)(reference(x), labels)
    (1.5 * reconstruction + 0.5 * contrastive).backward()
    torch.testing.assert_close(got["reconstruction"], reconstruction.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(got["contrastive"], contrastive.detach(), rtol=1e-12, atol=0)
    for g, p in zip(grads, reference.parameters(), strict=True):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)


class _Temperature:
    """An objective of one's own: logits over the batch at a learnable temperature."""

    def __init__(self) -> None:
        self.log_t = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.penalty = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        x, labels = batch
        z = nn.functional.normalize(model(x), dim=1)
        logits = z @ z.T / self.log_t.exp() - 1e3 * torch.eye(len(x), dtype=z.dtype)
        return {
            "loss": nn.functional.cross_entropy(logits, labels),
            # a term that depends on no call of the model
            "penalty": self.penalty**2,
            "constant": torch.tensor(1.0),  # and one without gradient
        }


def test_what_the_terms_depend_on_besides_the_model_gets_its_gradient() -> None:
    batch = _batch("labels")
    grads = []
    for wrap in (False, True):
        objective = _Temperature()
        model = _model()
        terms = (CachedObjective(objective, micro_batch=3) if wrap else objective)(model, batch)
        assert terms["constant"].requires_grad is False
        (terms["loss"] + terms["penalty"]).backward()
        grads.append([objective.log_t.grad, objective.penalty.grad, *model.parameters()])
    expected, got = grads
    assert expected[0] is not None and expected[0].abs() > 0
    torch.testing.assert_close(got[0], expected[0], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)  # 2 · 2.0
    for p, e in zip(got[2:], expected[2:], strict=True):
        torch.testing.assert_close(p.grad, e.grad, rtol=1e-10, atol=1e-12)


def test_an_objective_that_never_calls_the_model_is_plain_autograd() -> None:
    weight = nn.Parameter(torch.tensor(3.0, dtype=torch.float64))
    terms = CachedObjective(lambda m, b: {"loss": weight**2}, micro_batch=2)(_model(), None)
    terms["loss"].backward()
    assert weight.grad is not None and float(weight.grad) == 6.0


def test_two_combined_calls_before_one_backward_each_replay_their_own_batch() -> None:
    objective = _combined(LabelObjective(SupConLoss(temperature=0.5)))
    first, second = _batch("labels"), (_batch("labels")[0].flip(0), torch.arange(N) % 4)
    model = _autoencoder()
    (objective(model, first)["loss"] + 2 * objective(model, second)["loss"]).backward()
    expected = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    model = _autoencoder()
    cached = CachedObjective(objective, micro_batch=3)
    (cached(model, first)["loss"] + 2 * cached(model, second)["loss"]).backward()
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-10, atol=1e-12)


def test_the_outer_gradient_scales_a_combined_objective_and_its_raw_terms() -> None:
    batch = _batch("labels")
    cached = CachedObjective(_combined(LabelObjective(SupConLoss())), micro_batch=4)
    _, grads = _terms_and_grads(cached, _autoencoder(), batch)
    model = _autoencoder()
    (0.25 * cached(model, batch)["loss"]).backward()
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, 0.25 * g, rtol=1e-12, atol=1e-14)
    # the raw terms, logged, may be minimised too: 1.5 · reconstruction alone
    model = _autoencoder()
    terms = cached(model, batch)
    (1.5 * terms["reconstruction"]).backward()
    expected_model = _autoencoder()
    (
        1.5 * _combined(LabelObjective(SupConLoss()))(expected_model, batch)["reconstruction"]
    ).backward()
    for p, e in zip(model.parameters(), expected_model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, e.grad, rtol=1e-10, atol=1e-12)


def test_retain_graph_keeps_the_cache_and_a_second_backward_without_it_is_refused() -> None:
    batch = _batch("labels")
    cached = CachedObjective(_combined(LabelObjective(SupConLoss())), micro_batch=3)
    _, once = _terms_and_grads(cached, _autoencoder(), batch)
    model = _autoencoder()
    loss = cached(model, batch)["loss"]
    loss.backward(retain_graph=True)
    loss.backward()  # goes through the graph again, as autograd would: twice the gradient
    for p, g in zip(model.parameters(), once, strict=True):
        torch.testing.assert_close(p.grad, 2 * g, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()  # the cache is used once: never a silent third gradient


def test_a_combined_call_without_gradient_runs_each_call_in_micro_batches() -> None:
    batch = _batch("labels")
    objective = _combined(LabelObjective(SupConLoss()))
    model = _autoencoder()
    seen = _hooked(model)
    with torch.no_grad():
        terms = CachedObjective(objective, micro_batch=4)(model, batch)
        expected = objective(_autoencoder(), batch)
    rows = [(part, len(inputs)) for part, inputs, _ in seen]
    assert rows == [("encoder", 4), ("decoder", 4)] * 2 + [("encoder", 2), ("decoder", 2)] + [
        ("encoder", 4),
        ("encoder", 4),
        ("encoder", 2),
    ]
    for key, value in expected.items():
        assert not terms[key].requires_grad
        torch.testing.assert_close(terms[key], value, rtol=1e-12, atol=1e-12)


def test_under_autocast_the_replay_computes_what_the_first_forward_did() -> None:
    model = _autoencoder().float()
    seen = _hooked(model)
    x, labels = _batch("labels")
    cached = CachedObjective(_combined(LabelObjective(SupConLoss())), micro_batch=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = cached(model, (x.float(), labels))
    first = list(seen)
    assert first[0][2].dtype == torch.bfloat16
    terms["loss"].backward()  # outside autocast, as the trainer's backward is
    for (_, _, outputs), (_, _, again) in zip(first, seen[len(first) :], strict=True):
        assert again.dtype == torch.bfloat16 and torch.equal(outputs, again)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_calls_that_cannot_be_replayed_are_refused_before_any_work() -> None:
    model = _autoencoder()
    x, labels = _batch("labels")
    decode = CachedObjective(lambda m, b: {"loss": m.decode(m(b[0])).sum()}, micro_batch=3)
    with pytest.raises(ValueError, match=r"model\.decode\(x\) got an input that requires"):
        decode(model, (x, labels))

    class Pooled(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x

        def pooled(self, x: Tensor) -> Tensor:  # one row for the whole batch
            return x.mean(0, keepdim=True)

    pooled = CachedObjective(lambda m, b: {"loss": m.pooled(b[0]).sum()}, micro_batch=3)
    with pytest.raises(ValueError, match=r"model\.pooled\(x\): .* got shape \(1, 5\) for 3"):
        pooled(Pooled(), (x, labels))
    listed = CachedObjective(lambda m, b: [m(b[0]).sum()], micro_batch=3)
    with pytest.raises(TypeError, match="returns a mapping of loss terms, got list"):
        listed(model, (x, labels))


def test_an_objective_asking_a_model_for_a_method_it_lacks_gets_its_own_error() -> None:
    cached = CachedObjective(ReconstructionObjective(ReconstructionLoss()), micro_batch=2)
    with pytest.raises(TypeError, match="needs a model with a reconstruct method"):
        cached(_model(), _batch("labels"))


class _Keep(torch.optim.Optimizer):
    """An optimizer that only keeps the gradients of its step."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, {})
        self.grads: list[Tensor] = []

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"]]


def _combined_step_on_rank(layout: tuple[int, ...], micro_batch: int) -> tuple[list[Tensor], int]:
    """One trainer step of a cached, gathered combined objective on this rank's rows."""
    from contrastkit import distributed
    from contrastkit.training import Trainer

    rank = distributed.rank()
    x, labels = _batch("labels")
    start = sum(layout[:rank])
    mine = slice(start, start + layout[rank])
    model = _autoencoder()
    optimizer = _Keep(model.parameters())
    objective = CachedObjective(
        _combined(LabelObjective(SupConLoss(temperature=0.5, gather=True))),
        micro_batch=micro_batch,
    )
    ddp = nn.parallel.DistributedDataParallel
    forwards = []
    original = ddp.forward

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        forwards.append(1)
        return original(self, *args, **kwargs)

    trainer = Trainer(
        model, objective, optimizer, [(x[mine], labels[mine])], epochs=1, progress=False
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ddp, "forward", counted)
        trainer.fit()
    return optimizer.grads, len(forwards)


@pytest.mark.parametrize("layout", [(5, 5), (7, 3), (4, 4, 2)], ids=str)
def test_a_cached_combined_objective_in_the_trainer_is_one_process_uncached_step(
    process_groups: Any, layout: tuple[int, ...]
) -> None:
    """model(x) and model.reconstruct(x), cached on each process, in one DDP forward.

    The processes hold different numbers of micro-batches (4 and 2 for (7, 3)); the
    negatives are gathered once, over the cached embeddings, and the gradients exchanged
    once per step, after the last micro-batches.
    """
    objective = _combined(LabelObjective(SupConLoss(temperature=0.5)))
    _, expected = _terms_and_grads(objective, _autoencoder(), _batch("labels"))
    for grads, forwards in process_groups(len(layout)).run(_combined_step_on_rank, layout, 2):
        assert forwards == 1
        assert len(grads) == len(expected) == 8
        for g, e in zip(grads, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def _own_ddp_and_reconstruct() -> str:
    model = nn.parallel.DistributedDataParallel(_autoencoder())
    cached = CachedObjective(_combined(LabelObjective(SupConLoss())), micro_batch=2)
    try:
        cached(model, _batch("labels"))
    except TypeError as error:
        return str(error)
    return "no error"


def test_a_ddp_of_one_s_own_runs_forward_only_and_reconstruct_is_told_so(
    process_groups: Any,
) -> None:
    for message in process_groups(2).run(_own_ddp_and_reconstruct):
        assert "model.reconstruct(x) through a DistributedDataParallel of your own" in message
        assert "contrastkit.training.Trainer" in message
