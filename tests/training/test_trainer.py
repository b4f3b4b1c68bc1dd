"""The trainer: objectives, reproducibility, resumable checkpoints, callbacks, embed."""

from __future__ import annotations

import errno
import math
import os
import pathlib

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import (
    BatchHardTripletLoss,
    ContrastiveLoss,
    InfoNCELoss,
    ReconstructionLoss,
    SupConLoss,
    TripletLoss,
)
from contrastkit.data import ClassBalancedBatchSampler, PairDataset, TripletDataset
from contrastkit.models import MLPEncoder, SiameseNetwork
from contrastkit.training import (
    LabelObjective,
    PairObjective,
    ReconstructionObjective,
    Trainer,
    TripletObjective,
    TwoViewObjective,
    WeightedSum,
    embed,
    latest_checkpoint,
    load_weights,
    save_weights,
)
from contrastkit.training.checkpoints import save_state
from reference import contrastive as contrastive_reference

FEATURES = 6


def blobs(num_classes=4, per_class=12, seed=0):
    """Well separated Gaussian blobs: a problem every objective can make progress on."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, FEATURES, generator=g) * 4
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    inputs = centers[labels] + 0.5 * torch.randn(len(labels), FEATURES, generator=g)
    return inputs, labels


def make_model(dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return SiameseNetwork(MLPEncoder(FEATURES, embedding_dim=2, hidden=(16,), dropout=dropout))


def pair_loader(batch_size=16):
    inputs, labels = blobs()
    return DataLoader(PairDataset(inputs, labels, seed=0), batch_size=batch_size, shuffle=True)


def pair_trainer(model=None, *, epochs=2, lr=1e-2, **kwargs):
    model = make_model() if model is None else model
    kwargs.setdefault("progress", False)
    return Trainer(
        model,
        PairObjective(ContrastiveLoss(margin=1.0)),
        torch.optim.Adam(model.parameters(), lr=lr),
        kwargs.pop("train_loader") if "train_loader" in kwargs else pair_loader(),
        epochs=epochs,
        **kwargs,
    )


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_same_state(a, b, where="state"):
    """Recursive exact equality of nested dicts/lists/tensors (optimizer state dicts)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same_state(u, v, f"{where}[{i}]")
    else:
        assert a == b, where


# --- objectives -----------------------------------------------------------------------


def labelled_loader(samples_per_class, classes_per_batch, batches_per_epoch=4):
    inputs, labels = blobs()
    sampler = ClassBalancedBatchSampler(
        labels,
        classes_per_batch=classes_per_batch,
        samples_per_class=samples_per_class,
        batches_per_epoch=batches_per_epoch,
        seed=0,
    )
    return DataLoader(TensorDataset(inputs, labels), batch_sampler=sampler)


def triplet_loader():
    inputs, labels = blobs()
    return DataLoader(TripletDataset(inputs, labels, seed=0), batch_size=16, shuffle=True)


OBJECTIVES = {
    "pair-contrastive": lambda: (PairObjective(ContrastiveLoss(margin=1.0)), pair_loader()),
    "triplet": lambda: (TripletObjective(TripletLoss(margin=1.0)), triplet_loader()),
    "label-supcon": lambda: (LabelObjective(SupConLoss()), labelled_loader(4, 4)),
    "label-batch-hard": lambda: (
        LabelObjective(BatchHardTripletLoss(margin=1.0)),
        labelled_loader(4, 4),
    ),
    "two-view-infonce": lambda: (
        TwoViewObjective(InfoNCELoss(temperature=0.5)),
        labelled_loader(2, 4),
    ),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_lowers_the_loss(name):
    objective, loader = OBJECTIVES[name]()
    model = make_model()
    history = Trainer(
        model,
        objective,
        torch.optim.Adam(model.parameters(), lr=2e-2),
        loader,
        epochs=6,
        progress=False,
    ).fit()
    losses = [record["train_loss"] for record in history]
    assert [record["epoch"] for record in history] == list(range(1, 7))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_objectives_return_named_terms():
    model = make_model()
    x, y = blobs()
    terms = LabelObjective(SupConLoss(), name="supcon")(model, (x, y))
    assert list(terms) == ["supcon"] and terms["supcon"].dim() == 0


def test_two_view_objective_pairs_consecutive_rows():
    model = make_model()
    x, _ = blobs(num_classes=3, per_class=2)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = InfoNCELoss(temperature=0.5)
    out = model(x)
    expected = loss(out[0::2], out[1::2])
    torch.testing.assert_close(TwoViewObjective(loss)(model, (x, labels))["loss"], expected)


@pytest.mark.parametrize(
    "labels",
    [torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 2]), torch.tensor([0, 0, 1])],
    ids=["interleaved", "one-pair-broken", "odd"],
)
def test_two_view_objective_rejects_batches_not_in_pairs(labels):
    x = torch.randn(len(labels), FEATURES)
    with pytest.raises(ValueError, match="consecutive same-class pairs"):
        TwoViewObjective(InfoNCELoss())(make_model(), (x, labels))


X = torch.randn(4, FEATURES)
Y = torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize(
    ("objective", "batch", "match"),
    [
        (PairObjective(ContrastiveLoss()), (X, Y), "PairObjective.*3 items, got 2 items"),
        (PairObjective(ContrastiveLoss()), X, "PairObjective.*got Tensor"),
        (TripletObjective(TripletLoss(margin=1.0)), (X, X), "TripletObjective.*got 2 items"),
        (LabelObjective(SupConLoss()), (X, X, Y), "LabelObjective.*got 3 items"),
        (LabelObjective(SupConLoss()), {"x": X}, "LabelObjective.*got dict"),
        (TwoViewObjective(InfoNCELoss()), [X], "TwoViewObjective.*got 1 items"),
    ],
)
def test_objectives_reject_a_batch_with_the_wrong_number_of_items(objective, batch, match):
    with pytest.raises(ValueError, match=match):
        objective(make_model(), batch)


# --- reproducibility ------------------------------------------------------------------


def test_same_seed_same_weights_different_seed_different_weights():
    models = []
    for seed in (0, 0, 1):
        model = make_model(dropout=0.3)
        pair_trainer(model, epochs=2, seed=seed).fit()
        models.append(model)
    assert_same_weights(models[0], models[1])
    assert not torch.equal(models[0].encoder[0].weight, models[2].encoder[0].weight)


def test_each_epoch_tells_the_dataset_and_the_batch_sampler_its_number():
    pairs = pair_loader()
    trainer = pair_trainer(epochs=3, train_loader=pairs)
    drawn = []
    trainer.add_callback("on_epoch_end", lambda t: drawn.append(pairs.dataset.epoch))
    trainer.fit()
    assert drawn == [0, 1, 2]

    class Spy(ClassBalancedBatchSampler):
        def set_epoch(self, epoch):
            told.append(epoch)
            super().set_epoch(epoch)

    told = []
    inputs, labels = blobs()
    sampler = Spy(labels, classes_per_batch=4, samples_per_class=2, batches_per_epoch=2)
    model = make_model()
    Trainer(
        model,
        LabelObjective(SupConLoss()),
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(inputs, labels), batch_sampler=sampler),
        epochs=3,
        progress=False,
    ).fit()
    assert told == [0, 1, 2]


# --- resume ---------------------------------------------------------------------------

RESUME_EPOCHS = 4


def resumable(run_dir, epochs, init_seed=0):
    """A run with shuffling, dropout and a per-batch OneCycleLR: everything must resume."""
    model = make_model(dropout=0.3, seed=init_seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = pair_loader(batch_size=10)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=5e-2, total_steps=RESUME_EPOCHS * len(loader)
    )
    trainer = Trainer(
        model,
        PairObjective(ContrastiveLoss(margin=1.0)),
        optimizer,
        loader,
        epochs=epochs,
        scheduler=scheduler,
        run_dir=run_dir,
        progress=False,
        seed=3,
    )
    return trainer


def without_times(history):
    return [{k: v for k, v in record.items() if k != "epoch_seconds"} for record in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    trainer = resumable(tmp_path_factory.mktemp("a"), RESUME_EPOCHS)
    trainer.fit()
    return trainer


def test_resume_after_a_finished_shorter_run(tmp_path, uninterrupted):
    resumable(tmp_path, 2).fit()
    trainer = resumable(tmp_path, RESUME_EPOCHS, init_seed=99)  # the weights come from disk
    history = trainer.fit(resume=True)
    assert [record["epoch"] for record in history] == [1, 2, 3, 4]
    assert without_times(history) == without_times(uninterrupted.history)
    assert trainer.step == uninterrupted.step
    assert_same_weights(trainer.model, uninterrupted.model)
    assert_same_state(trainer.optimizer.state_dict(), uninterrupted.optimizer.state_dict())
    assert_same_state(trainer.scheduler.state_dict(), uninterrupted.scheduler.state_dict())


def test_resume_after_a_run_killed_mid_epoch(tmp_path, uninterrupted):
    killed = resumable(tmp_path, RESUME_EPOCHS)
    kill_at = 2 * len(killed.train_loader) + 2  # the second batch of epoch 3

    def kill(trainer):
        if trainer.step == kill_at:
            raise KeyboardInterrupt

    killed.add_callback("on_batch_end", kill)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert killed.epoch == 2 and len(killed.history) == 2
    assert latest_checkpoint(tmp_path).name == "epoch-0002"
    assert not torch.equal(killed.model.encoder[0].weight, uninterrupted.model.encoder[0].weight)
    trainer = resumable(tmp_path, RESUME_EPOCHS, init_seed=99)
    history = trainer.fit(resume=True)
    assert [record["epoch"] for record in history] == [1, 2, 3, 4]
    assert_same_weights(trainer.model, uninterrupted.model)
    assert_same_state(trainer.optimizer.state_dict(), uninterrupted.optimizer.state_dict())


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path, uninterrupted):
    trainer = resumable(tmp_path, RESUME_EPOCHS)
    trainer.fit(resume=True)
    assert_same_weights(trainer.model, uninterrupted.model)


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    resumable(tmp_path, 2).fit()
    trainer = resumable(tmp_path, 2)
    calls = []
    trainer.add_callback("on_batch_end", calls.append)
    assert [record["epoch"] for record in trainer.fit(resume=True)] == [1, 2]
    assert calls == []


# --- checkpoints ----------------------------------------------------------------------


def test_one_complete_checkpoint_remains(tmp_path):
    model = make_model()
    pair_trainer(model, epochs=3, run_dir=tmp_path).fit()
    folder = tmp_path / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["epoch-0003"]
    assert sorted(p.name for p in (folder / "epoch-0003").iterdir()) == [
        "model.safetensors",
        "state.pt",
    ]
    assert not [p for p in tmp_path.rglob("*") if "tmp" in p.name]
    assert latest_checkpoint(tmp_path) == folder / "epoch-0003"
    fresh = make_model(seed=1)
    assert not torch.equal(fresh.encoder[0].weight, model.encoder[0].weight)
    load_weights(fresh, latest_checkpoint(tmp_path) / "model.safetensors")
    assert_same_weights(fresh, model)


def test_latest_checkpoint_of_an_empty_or_incomplete_run(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert latest_checkpoint(tmp_path) is None
    (folder / "epoch-0001").mkdir()
    (folder / "epoch-0001" / "model.safetensors").write_bytes(b"")
    assert latest_checkpoint(tmp_path) is None  # no state.pt: not complete
    (folder / "epoch-0001" / "state.pt").write_bytes(b"")
    (folder / ".epoch-0002.tmp-1").mkdir()
    assert latest_checkpoint(str(tmp_path)) == folder / "epoch-0001"


def test_load_weights_needs_every_key(tmp_path):
    model = make_model()
    pair_trainer(model, epochs=1, run_dir=tmp_path).fit()
    with pytest.raises(RuntimeError):
        load_weights(
            MLPEncoder(FEATURES, embedding_dim=2, hidden=(16,)),
            latest_checkpoint(tmp_path) / "model.safetensors",
        )


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
def test_a_checkpoint_that_cannot_be_written_names_its_file(
    tmp_path, monkeypatch, uninterrupted, name
):
    """A full disk at epoch 3: an OSError naming the file, epoch 2's checkpoint kept."""
    killed = resumable(tmp_path, RESUME_EPOCHS)
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        if self.name == name and killed.epoch == 3:
            raise OSError(errno.ENOSPC, "No space left on device")  # as Python's write says it
        return real(self, data)

    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_bytes", full_disk)
        with pytest.raises(OSError) as caught:
            killed.fit()
    file = tmp_path / "checkpoints" / f".epoch-0003.tmp-{os.getpid()}" / name
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"[Errno 28] cannot write {file}: No space left on device"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch-0002"]
    trainer = resumable(tmp_path, RESUME_EPOCHS, init_seed=99)  # once there is room again
    trainer.fit(resume=True)
    assert_same_weights(trainer.model, uninterrupted.model)


def test_save_state_and_save_weights_report_a_failed_write_as_an_os_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError):
        save_state({"epoch": 1}, missing / "state.pt")
    with pytest.raises(FileNotFoundError):
        save_weights(make_model(), missing / "model.safetensors")
    save_state({"epoch": 1, "history": []}, tmp_path / "state.pt")
    assert torch.load(tmp_path / "state.pt", weights_only=True) == {"epoch": 1, "history": []}


# --- callbacks ------------------------------------------------------------------------


def test_callbacks_run_in_order_at_their_events():
    trainer = pair_trainer(epochs=3)
    events = []
    trainer.add_callback("on_batch_end", lambda t: events.append(("batch-a", t.step)))
    trainer.add_callback("on_batch_end", lambda t: events.append(("batch-b", t.step)))
    trainer.add_callback("on_epoch_end", lambda t: events.append(("epoch", t.epoch)))
    trainer.add_callback("on_train_end", lambda t: events.append(("end", len(t.history))))
    trainer.fit()
    steps = 3 * len(trainer.train_loader)
    assert trainer.step == steps
    batch_a = [s for e, s in events if e == "batch-a"]
    assert batch_a == list(range(1, steps + 1))
    assert [e for e, _ in events if e.startswith("batch")] == ["batch-a", "batch-b"] * steps
    assert [s for e, s in events if e == "epoch"] == [1, 2, 3]
    assert events[-1] == ("end", 3) and sum(e == "end" for e, _ in events) == 1


def test_callbacks_see_the_last_terms_and_history():
    trainer = pair_trainer(epochs=2)
    seen = []
    trainer.add_callback("on_batch_end", lambda t: seen.append(dict(t.last_terms)))
    trainer.add_callback("on_epoch_end", lambda t: seen.append(len(t.history)))
    trainer.fit()
    batches = len(trainer.train_loader)
    assert seen[batches] == 1 and seen[-1] == 2
    assert all(set(terms) == {"loss"} for terms in seen if isinstance(terms, dict))
    first_epoch = [terms["loss"] for terms in seen[:batches]]
    assert trainer.history[0]["train_loss"] == pytest.approx(sum(first_epoch) / batches)


@pytest.mark.parametrize("event", ["on_step", "on_batch_start", ""])
def test_unknown_event_is_rejected(event):
    with pytest.raises(ValueError, match="event must be one of"):
        pair_trainer().add_callback(event, print)


# --- errors ---------------------------------------------------------------------------


def test_nan_loss_names_the_epoch():
    calls = []

    def objective(model, batch):
        calls.append(1)
        loss = model(batch[0]).pow(2).mean()
        return {"loss": loss * float("nan") if len(calls) == 5 else loss}

    model = make_model()
    x, y = blobs()
    trainer = Trainer(
        model,
        objective,
        torch.optim.SGD(model.parameters(), lr=1e-3),
        DataLoader(TensorDataset(x, y), batch_size=24),  # two batches per epoch
        epochs=4,
        progress=False,
    )
    with pytest.raises(FloatingPointError, match="epoch 3, step 4"):
        trainer.fit()


@pytest.mark.parametrize("epochs", [0, -1, True, 2.0, "2", None])
def test_epochs_must_be_a_positive_integer(epochs):
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        pair_trainer(epochs=epochs)


@pytest.mark.parametrize("max_grad_norm", [0.0, -1.0, float("nan")])
def test_max_grad_norm_must_be_positive(max_grad_norm):
    with pytest.raises(ValueError, match="max_grad_norm"):
        pair_trainer(max_grad_norm=max_grad_norm)


def test_resume_needs_a_run_dir():
    with pytest.raises(ValueError, match="run_dir"):
        pair_trainer().fit(resume=True)


@pytest.mark.parametrize(
    "loader",
    [[], DataLoader(TensorDataset(torch.zeros(0, FEATURES), torch.zeros(0)), batch_size=4)],
    ids=["list", "DataLoader"],
)
def test_empty_loader_is_rejected(loader):
    model = make_model()
    trainer = Trainer(
        model,
        LabelObjective(SupConLoss()),
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader,
        epochs=1,
        progress=False,
    )
    with pytest.raises(ValueError, match="no batch"):
        trainer.fit()


def test_objective_without_terms_is_rejected():
    model = make_model()
    x, y = blobs()
    trainer = Trainer(
        model,
        lambda model, batch: {},
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(x, y), batch_size=16),
        epochs=1,
        progress=False,
    )
    with pytest.raises(ValueError, match="no loss term"):
        trainer.fit()


# --- validation and evaluation --------------------------------------------------------


def test_several_terms_are_logged_with_their_sum():
    def objective(model, batch):
        out = model(batch[0])
        return {"a": out.pow(2).mean(), "b": out.abs().mean()}

    model = make_model()
    x, y = blobs()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    history = Trainer(
        model,
        objective,
        torch.optim.SGD(model.parameters(), lr=1e-2),
        loader,
        val_loader=loader,
        epochs=1,
        progress=False,
    ).fit()
    record = history[0]
    assert {"train_a", "train_b", "train_loss", "val_a", "val_b", "val_loss"} <= set(record)
    assert record["train_loss"] == pytest.approx(record["train_a"] + record["train_b"])
    assert record["val_loss"] == pytest.approx(record["val_a"] + record["val_b"])


def test_val_loader_gives_val_loss():
    inputs, labels = blobs()
    val_pairs = PairDataset(inputs, labels, seed=7)
    val_loader = DataLoader(val_pairs, batch_size=16)
    model = make_model(dropout=0.3)
    trainer = pair_trainer(model, epochs=2, val_loader=val_loader)
    history = trainer.fit()
    assert all(math.isfinite(record["val_loss"]) for record in history)
    assert model.training
    # the last epoch's value is the mean loss of the final model in eval mode
    model.eval()
    val_pairs.set_epoch(0)
    with torch.no_grad():
        losses = [trainer.objective(model, batch)["loss"].item() for batch in val_loader]
    assert history[-1]["val_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_evaluate_values_appear_in_history():
    seen = []

    def evaluate(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"recall": 0.5, "count": torch.tensor(len(seen))}

    history = pair_trainer(epochs=2, evaluate=evaluate).fit()
    assert [record["recall"] for record in history] == [0.5, 0.5]
    assert [record["count"] for record in history] == [1.0, 2.0]
    assert all(isinstance(record["count"], float) for record in history)
    assert seen == [(False, False), (False, False)]


def test_evaluation_does_not_change_the_random_numbers_of_training():
    def evaluate(model):
        torch.rand(1000)
        return {"noise": float(torch.rand(()))}

    models, states = [], []
    for ev in (None, evaluate):
        model = make_model(dropout=0.3)
        pair_trainer(model, epochs=3, evaluate=ev).fit()
        models.append(model)
        states.append(torch.get_rng_state())
    assert_same_weights(*models)
    assert torch.equal(*states)


# --- embed ----------------------------------------------------------------------------


def test_embed_is_the_model_in_eval_mode_in_chunks():
    torch.manual_seed(0)
    model = MLPEncoder(FEATURES, embedding_dim=3, hidden=(8,), dropout=0.5, batch_norm=True)
    model(torch.randn(20, FEATURES))  # move the running statistics away from their init
    x, _ = blobs()
    out = embed(model, x, batch_size=7)
    assert model.training
    assert out.shape == (len(x), 3) and out.dtype == torch.float32
    assert out.device.type == "cpu" and not out.requires_grad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, model(x))
    assert not embed(model, x).requires_grad and not model.training


def test_embed_returns_float32_for_a_double_model():
    model = MLPEncoder(FEATURES, embedding_dim=2, hidden=(4,)).double()
    out = embed(model, torch.randn(5, FEATURES, dtype=torch.float64), batch_size=2)
    assert out.dtype == torch.float32 and out.shape == (5, 2)


def test_embed_rejects_empty_inputs():
    model = MLPEncoder(FEATURES, embedding_dim=2, hidden=(4,))
    with pytest.raises(ValueError, match="at least one sample"):
        embed(model, torch.zeros(0, FEATURES))
    assert model.training


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_embed_rejects_a_bad_batch_size(batch_size):
    model = MLPEncoder(FEATURES, embedding_dim=2, hidden=(4,))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        embed(model, torch.randn(4, FEATURES), batch_size=batch_size)


def test_embed_rejects_nan_embeddings():
    model = MLPEncoder(FEATURES, embedding_dim=2, hidden=(4,))
    with pytest.raises(FloatingPointError, match="NaN"):
        embed(model, torch.full((3, FEATURES), float("nan")))


# --- progress bars --------------------------------------------------------------------


def test_progress_bar_goes_to_stderr(capfd):
    pair_trainer(epochs=2, progress=True).fit()
    captured = capfd.readouterr()
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err
    assert "loss=" in captured.err
    assert captured.out == ""


def test_no_progress_bar_when_disabled(capfd):
    pair_trainer(epochs=2, progress=False).fit()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# --- reconstruction and weighted sums of objectives ------------------------------------


class TinyAutoencoder(nn.Module):
    """The autoencoder contract, written here: forward gives the code, reconstruct the input."""

    def __init__(self, noise_std=0.0, seed=0, dropout=0.0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = MLPEncoder(FEATURES, embedding_dim=2, hidden=(16,), dropout=dropout)
        self.decoder = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, FEATURES))
        self.noise_std = noise_std

    def forward(self, x1, x2=None):
        return self.encoder(x1) if x2 is None else (self.encoder(x1), self.encoder(x2))

    def reconstruct(self, x):
        if self.training and self.noise_std > 0:
            x = x + self.noise_std * torch.randn_like(x)
        return self.decoder(self.encoder(x))


def mse_reference(reconstruction, target):
    """Mean over samples of the mean squared error over features, by loops."""
    rows = [
        sum((a - b) ** 2 for a, b in zip(r, t, strict=True)) / len(t)
        for r, t in zip(reconstruction.tolist(), target.tolist(), strict=True)
    ]
    return sum(rows) / len(rows)


class Recorder(nn.Module):
    """Records what ``reconstruct`` was given; reconstructs everything as zeros."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def reconstruct(self, x):
        self.seen.append(x)
        return torch.zeros_like(x)


A4, B4, C4 = (torch.randn(4, FEATURES) for _ in range(3))
LABELS4, PAIR4 = torch.tensor([0, 1, 0, 1]), torch.tensor([1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (A4, [A4]),
        ((A4,), [A4]),
        ((A4, LABELS4), [A4]),
        ((A4, B4, PAIR4), [A4, B4]),
        ((A4, B4, C4), [A4, B4, C4]),
        ([A4, B4, LABELS4], [A4, B4]),
    ],
    ids=["tensor", "(x,)", "(x, labels)", "(x1, x2, y)", "(a, p, n)", "list"],
)
def test_reconstruction_objective_reconstructs_every_input_of_a_batch(batch, expected):
    model = Recorder()
    terms = ReconstructionObjective(ReconstructionLoss())(model, batch)
    (seen,) = model.seen  # one pass, the inputs concatenated
    assert torch.equal(seen, torch.cat(expected))
    assert list(terms) == ["reconstruction"]
    # zeros against the inputs: the mean over every input sample of its mean square
    assert terms["reconstruction"].item() == pytest.approx(
        mse_reference(torch.zeros_like(seen), seen), rel=1e-6
    )


def test_reconstruction_objective_takes_explicit_positions():
    model = Recorder()
    ReconstructionObjective(ReconstructionLoss(), inputs=[2, 0], name="rec")(model, (A4, B4, C4))
    assert torch.equal(model.seen[0], torch.cat([C4, A4]))


def test_reconstruction_objective_value_is_the_loss_against_the_clean_input():
    model = TinyAutoencoder(noise_std=0.5)
    x1, x2 = A4, B4
    torch.manual_seed(1)
    value = ReconstructionObjective(ReconstructionLoss())(model, (x1, x2, PAIR4))["reconstruction"]
    torch.manual_seed(1)
    noisy = torch.cat([x1, x2]) + 0.5 * torch.randn(8, FEATURES)
    expected = mse_reference(model.decoder(model.encoder(noisy)).detach(), torch.cat([x1, x2]))
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss": "mse"}, TypeError, "loss must be callable"),
        ({"name": 3}, TypeError, "name must be a str"),
        ({"name": "has space"}, ValueError, "name must be a name of letters"),
        ({"inputs": []}, ValueError, "inputs must name at least one batch position"),
        ({"inputs": "0"}, TypeError, "inputs must be a sequence of batch positions, got str"),
        ({"inputs": 0}, TypeError, "inputs must be a sequence of batch positions, got int"),
        ({"inputs": [0, -1]}, ValueError, r"inputs must be positions >= 0, got \[0, -1\]"),
        ({"inputs": [0, True]}, TypeError, "inputs must be integer positions"),
        ({"inputs": [0, 1.0]}, TypeError, "inputs must be integer positions"),
        ({"inputs": [1, 1]}, ValueError, "must not repeat"),
    ],
)
def test_reconstruction_objective_rejects_bad_options(kwargs, error, match):
    kwargs = {"loss": ReconstructionLoss(), **kwargs}
    loss = kwargs.pop("loss")
    with pytest.raises(error, match=match):
        ReconstructionObjective(loss, **kwargs)


@pytest.mark.parametrize(
    ("batch", "options", "error", "match"),
    [
        ((A4, LABELS4), {}, None, None),
        ({"x": A4}, {}, ValueError, "must be a tensor or a non-empty tuple, got dict"),
        ((), {}, ValueError, "non-empty tuple, got tuple"),
        (
            (LABELS4.float(), LABELS4),
            {},
            ValueError,
            r"at least 2 dimensions.*got \[\(4,\), \(4,\)\]",
        ),
        ((A4, LABELS4), {"inputs": [0, 1]}, ValueError, r"at least 2 dimensions"),
        ((A4, torch.randn(4, 3)), {"inputs": [0, 1]}, ValueError, r"one shape.*\(4, 6\), \(4, 3\)"),
        ((A4, B4), {"inputs": [0, 2]}, ValueError, r"beyond the batch's 2 items"),
    ],
)
def test_reconstruction_objective_rejects_bad_batches(batch, options, error, match):
    objective = ReconstructionObjective(ReconstructionLoss(), **options)
    if error is None:
        objective(TinyAutoencoder(), batch)
        return
    with pytest.raises(error, match=match):
        objective(TinyAutoencoder(), batch)


def test_reconstruction_objective_needs_a_model_that_reconstructs():
    with pytest.raises(TypeError, match=r"reconstruct method.*got SiameseNetwork"):
        ReconstructionObjective(ReconstructionLoss())(make_model(), (A4, LABELS4))


def test_reconstruction_objective_needs_a_scalar_loss():
    objective = ReconstructionObjective(ReconstructionLoss(reduction="none"))
    with pytest.raises(ValueError, match=r"must return a scalar.*got \(4,\)"):
        objective(TinyAutoencoder(), (A4, LABELS4))


def combined(w_rec=1.0, w_con=0.25):
    return WeightedSum(
        {
            "reconstruction": (ReconstructionObjective(ReconstructionLoss()), w_rec),
            "contrastive": (PairObjective(ContrastiveLoss(margin=1.0)), w_con),
        }
    )


def test_weighted_sum_is_the_weighted_sum_of_its_raw_terms():
    model = TinyAutoencoder().eval()
    objective = combined(2.0, 0.25)
    terms = objective(model, (A4, B4, PAIR4))
    assert list(terms) == ["reconstruction", "contrastive", "loss"]
    assert objective.weights == {"reconstruction": 2.0, "contrastive": 0.25}
    with torch.no_grad():
        x = torch.cat([A4, B4])
        rec = mse_reference(model.reconstruct(x), x)
        con = contrastive_reference(model(A4), model(B4), PAIR4, margin=1.0)
    assert terms["reconstruction"].item() == pytest.approx(rec, rel=1e-5)
    assert terms["contrastive"].item() == pytest.approx(con, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(2.0 * rec + 0.25 * con, rel=1e-5)


def test_weighted_sum_gradient_is_the_weighted_sum_of_the_gradients():
    model = TinyAutoencoder().eval()
    batch = (A4, B4, PAIR4)
    rec = ReconstructionObjective(ReconstructionLoss())
    con = PairObjective(ContrastiveLoss(margin=1.0))
    objective = WeightedSum({"rec": (rec, 0.5), "con": (con, 3.0)})

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]

    g_rec = grads(rec(model, batch)["reconstruction"])
    g_con = grads(con(model, batch)["loss"])
    g_sum = grads(objective(model, batch)["loss"])
    for a, b, total in zip(g_rec, g_con, g_sum, strict=True):
        torch.testing.assert_close(total, 0.5 * a + 3.0 * b)


def test_weighted_sum_gradcheck_in_float64():
    model = TinyAutoencoder().double().eval()
    objective = combined(1.5, 0.5)
    x2 = B4.double()

    def total(x1):
        return objective(model, (x1, x2, PAIR4.double()))["loss"]

    assert torch.autograd.gradcheck(total, (A4.double().requires_grad_(),))


def test_weighted_sum_nests_and_totals_each_objective():
    def two_terms(model, batch):
        return {"a": batch.sum(), "b": 2 * batch.sum()}

    def with_total(model, batch):
        return {"loss": batch.sum(), "logged": 100 * batch.sum()}

    inner = WeightedSum({"x": (two_terms, 1.0)})
    objective = WeightedSum({"sum": (two_terms, 1.0), "own": (with_total, 2.0), "in": (inner, 3)})
    terms = objective(None, torch.ones(2, 2))
    assert {k: v.item() for k, v in terms.items()} == {
        "sum": 12.0,  # a + b
        "own": 4.0,  # its "loss" term, not "logged"
        "in": 12.0,  # the inner weighted total
        "loss": 12.0 + 2 * 4.0 + 3 * 12.0,
    }


@pytest.mark.parametrize(
    ("terms", "error", "match"),
    [
        ([("a", (None, 1.0))], TypeError, "terms must be a mapping"),
        ({}, ValueError, "at least one objective"),
        ({"loss": (PairObjective(ContrastiveLoss()), 1.0)}, ValueError, "named 'loss'"),
        ({"two words": (PairObjective(ContrastiveLoss()), 1.0)}, ValueError, "'two words'"),
        ({1: (PairObjective(ContrastiveLoss()), 1.0)}, TypeError, "each name in terms must be"),
        ({"a": PairObjective(ContrastiveLoss())}, TypeError, r"terms\['a'\] must be a pair"),
        ({"a": (PairObjective(ContrastiveLoss()),)}, TypeError, "must be a pair"),
        ({"a": ("mse", 1.0)}, TypeError, "objective must be callable, got str"),
        ({"a": (PairObjective(ContrastiveLoss()), "1")}, TypeError, "weight must be a real"),
        ({"a": (PairObjective(ContrastiveLoss()), True)}, TypeError, "weight must be a real"),
        ({"a": (PairObjective(ContrastiveLoss()), 0.0)}, ValueError, "finite and > 0, got 0.0"),
        ({"a": (PairObjective(ContrastiveLoss()), -1)}, ValueError, "> 0, got -1"),
        ({"a": (PairObjective(ContrastiveLoss()), math.inf)}, ValueError, "> 0, got inf"),
        ({"a": (PairObjective(ContrastiveLoss()), math.nan)}, ValueError, "> 0, got nan"),
    ],
)
def test_weighted_sum_rejects_bad_names_and_weights(terms, error, match):
    with pytest.raises(error, match=match):
        WeightedSum(terms)


def autoencoder_trainer(run_dir=None, *, epochs=2, init_seed=0, val=True, progress=False):
    model = TinyAutoencoder(noise_std=0.3, seed=init_seed, dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = pair_loader(batch_size=10)
    inputs, labels = blobs(seed=1)
    return Trainer(
        model,
        combined(1.0, 0.5),
        optimizer,
        loader,
        epochs=epochs,
        val_loader=DataLoader(PairDataset(inputs, labels, seed=1), batch_size=16) if val else None,
        scheduler=torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=2e-2, total_steps=4 * len(loader)
        ),
        run_dir=run_dir,
        progress=progress,
        seed=5,
    )


def test_trainer_logs_each_term_raw_and_minimises_the_weighted_total():
    trainer = autoencoder_trainer(epochs=3)
    history = trainer.fit()
    for record in history:
        for part in ("train", "val"):
            rec, con = record[f"{part}_reconstruction"], record[f"{part}_contrastive"]
            assert record[f"{part}_loss"] == pytest.approx(rec + 0.5 * con, rel=1e-6)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(trainer.last_terms) == {"reconstruction", "contrastive", "loss"}


def test_progress_bar_shows_each_term(capfd):
    autoencoder_trainer(epochs=1, val=False, progress=True).fit()
    err = capfd.readouterr().err
    assert "reconstruction=" in err and "contrastive=" in err and "loss=" in err


def test_a_loss_term_next_to_others_is_the_total_minimised():
    x, y = blobs()

    def objective(model, batch):
        out = model(batch[0])
        return {"loss": out.pow(2).mean(), "logged": 1e6 * out.abs().mean()}

    model = make_model()
    history = Trainer(
        model,
        objective,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(x, y), batch_size=len(x)),
        epochs=1,
        progress=False,
    ).fit()
    # one SGD step on the "loss" term alone (the same initial weights, by the same seed)
    expected = make_model()
    expected(x).pow(2).mean().backward()
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach() - 0.1 * q.grad)
    assert history[0]["train_logged"] > 1e3 * history[0]["train_loss"]


def test_a_combined_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    whole = autoencoder_trainer(tmp_path / "whole", epochs=4)
    whole.fit()
    autoencoder_trainer(tmp_path / "killed", epochs=2).fit()
    resumed = autoencoder_trainer(tmp_path / "killed", epochs=4, init_seed=9)
    history = resumed.fit(resume=True)
    assert without_times(history) == without_times(whole.history)
    assert_same_weights(resumed.model, whole.model)
    assert {"train_reconstruction", "train_contrastive", "val_contrastive"} <= set(history[-1])
