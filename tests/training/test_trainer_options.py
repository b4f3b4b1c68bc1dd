"""The trainer's step and options: overridable steps, no per-step reads from the device,
gradient accumulation, mixed precision, the best checkpoint and early stopping,
metrics.jsonl, TensorBoard, stale temporary folders, and extending a finished run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_trainer import assert_same_state, assert_same_weights
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from contrastkit import ContrastiveLoss
from contrastkit.data import PairDataset
from contrastkit.models import MLPEncoder, SiameseNetwork
from contrastkit.training import (
    PairObjective,
    Trainer,
    best_checkpoint,
    latest_checkpoint,
    load_weights,
    remove_stale,
)

FEATURES = 6


def regression_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    y = x @ torch.randn(FEATURES, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def mse(model, batch):
    x, y = batch
    return {"loss": (model(x) - y).pow(2).mean()}


def batches(size, n=40, seed=0):
    x, y = regression_data(n, seed)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, n, size)]


class NoLength:
    """An iterable of batches without a length (like an IterableDataset's loader)."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def regression_trainer(loader=None, *, model=None, epochs=2, lr=0.05, **kwargs):
    model = mlp() if model is None else model
    kwargs.setdefault("progress", False)
    return Trainer(
        model,
        mse,
        torch.optim.SGD(model.parameters(), lr=lr),
        batches(4) if loader is None else loader,
        epochs=epochs,
        **kwargs,
    )


def without_times(history):
    return [{k: v for k, v in record.items() if k != "epoch_seconds"} for record in history]


# --- the step as methods --------------------------------------------------------------


def test_a_subclass_overrides_the_training_step_and_validation_follows():
    class WithPenalty(Trainer):
        def training_step(self, batch):
            terms = super().training_step(batch)
            penalty = sum(p.pow(2).sum() for p in self.model.parameters())
            return {"mse": terms["loss"], "penalty": 1e-3 * penalty}

    model = mlp()
    trainer = WithPenalty(
        model,
        mse,
        torch.optim.SGD(model.parameters(), lr=0.05),
        batches(8),
        epochs=2,
        val_loader=batches(8, seed=1),
        progress=False,
    )
    history = trainer.fit()
    for record in history:
        for part in ("train", "val"):
            total = record[f"{part}_mse"] + record[f"{part}_penalty"]
            assert record[f"{part}_loss"] == pytest.approx(total, rel=1e-6)
    assert set(trainer.last_terms) == {"mse", "penalty", "loss"}


def test_a_subclass_takes_over_the_whole_batch():
    class TwoSteps(Trainer):
        """Two optimizer steps on every batch."""

        def train_batch(self, batch):
            super().train_batch(batch)
            return super().train_batch(batch)

    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = TwoSteps(model, mse, optimizer, batches(8), epochs=1, progress=False)
    trainer.fit()
    assert trainer.step == 5 and trainer.optimizer_steps == 10
    expected = by_hand([[batch] for batch in batches(8) for _ in range(2)], mlp(), 0.05)
    assert_same_weights(model, expected)


def test_the_step_methods_do_what_their_names_say():
    trainer = regression_trainer(lr=0.1)
    model = trainer.model
    x, y = batches(8)[0]
    before = [p.detach().clone() for p in model.parameters()]
    logged = trainer.train_batch((x, y))
    assert set(logged) == {"loss"} and not logged["loss"].requires_grad
    expected = mlp()
    loss = (expected(x) - y).pow(2).mean()
    loss.backward()
    torch.testing.assert_close(logged["loss"], loss.detach())
    for p, b, q in zip(model.parameters(), before, expected.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), b - 0.1 * q.grad)
        assert p.grad is None  # cleared after the optimizer step
    assert trainer.optimizer_steps == 1


# --- no waiting for the device at every step ------------------------------------------

READS = ("item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy")


def count_reads(monkeypatch):
    counts = dict.fromkeys(READS, 0)
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return counts


@pytest.mark.parametrize(
    ("log_every", "reads"),
    [(None, 2), (3, 8), (5, 4)],
    ids=["per-epoch", "every-3", "every-5"],
)
def test_loss_terms_are_read_back_once_per_interval_not_per_step(monkeypatch, log_every, reads):
    # 10 batches an epoch, 2 epochs; no shuffling, SGD without momentum: nothing else reads
    trainer = regression_trainer(batches(4), epochs=2, log_every=log_every)
    counts = count_reads(monkeypatch)
    history = trainer.fit()
    monkeypatch.undo()
    # every 3: steps 3, 6, 9, 12, 15, 18 and the epoch ends 10 and 20; every 5: 5, 10, 15, 20
    assert counts == {**dict.fromkeys(READS, 0), "tolist": reads}
    assert all(math.isfinite(record["train_loss"]) for record in history)


def test_the_history_is_the_mean_of_the_terms_a_callback_reads():
    trainer = regression_trainer(batches(4), epochs=2, log_every=4)
    seen = []
    trainer.add_callback("on_batch_end", lambda t: seen.append(t.last_terms["loss"]))
    history = trainer.fit()
    for epoch, record in enumerate(history):
        values = seen[10 * epoch : 10 * (epoch + 1)]
        assert record["train_loss"] == pytest.approx(sum(values) / 10, rel=1e-12)


def test_the_terms_of_a_long_epoch_of_unknown_length_are_all_counted():
    x, y = regression_data(300)
    items = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 300, 2)]  # 150 batches
    trainer = regression_trainer(NoLength(items), epochs=1, val_loader=NoLength(items))
    seen = []
    trainer.add_callback("on_batch_end", lambda t: seen.append(t.last_terms["loss"]))
    history = trainer.fit()
    assert len(seen) == 150
    assert history[0]["train_loss"] == pytest.approx(sum(seen) / 150, rel=1e-12)
    with torch.no_grad():
        val = [mse(trainer.model.eval(), batch)["loss"].item() for batch in items]
    assert history[0]["val_loss"] == pytest.approx(sum(val) / 150, rel=1e-6)


def nan_at(call):
    calls = []

    def objective(model, batch):
        calls.append(1)
        loss = mse(model, batch)["loss"]
        return {"loss": loss * float("nan") if len(calls) == call else loss}

    return objective


@pytest.mark.parametrize(
    ("log_every", "callbacks", "read"),
    [(None, 6, "steps 4 to 5"), (2, 5, "steps 4 to 5"), (1, 4, "steps 4 to 4")],
)
def test_a_non_finite_loss_is_found_at_the_next_read_and_named(log_every, callbacks, read):
    model = mlp()
    trainer = Trainer(
        model,
        nan_at(5),  # the first batch of epoch 3: step 4
        torch.optim.SGD(model.parameters(), lr=1e-3),
        batches(20),  # two batches an epoch
        epochs=4,
        log_every=log_every,
        progress=False,
    )
    calls = []
    trainer.add_callback("on_batch_end", lambda t: calls.append(t.step))
    with pytest.raises(FloatingPointError, match=rf"loss is nan at epoch 3, step 4 .*{read}"):
        trainer.fit()
    assert len(calls) == callbacks and len(trainer.history) == 2


# --- gradient accumulation ------------------------------------------------------------


def by_hand(groups, model, lr, divide_by=None):
    """SGD over groups of batches, each batch's loss divided by its group's size."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for group in groups:
        size = divide_by or len(group)
        for batch in group:
            loss = mse(model, batch)["loss"]
            (loss / size if size > 1 else loss).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model


@pytest.mark.parametrize("with_length", [True, False], ids=["list", "no-length"])
def test_accumulation_steps_once_per_group_of_batches(with_length):
    items = batches(4)  # 10 batches: groups of 3, 3, 3 and 1
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = Trainer(
        model,
        mse,
        optimizer,
        items if with_length else NoLength(items),
        epochs=2,
        accumulate=3,
        scheduler=scheduler,
        progress=False,
    )
    trainer.fit()
    assert trainer.step == 20 and trainer.optimizer_steps == 8
    assert scheduler.last_epoch == 8  # the scheduler steps with the optimizer
    groups = [items[0:3], items[3:6], items[6:9], items[9:10]] * 2
    # without a length, the last group's size is not known in advance: divided by 3
    expected = by_hand(groups, mlp(), 0.05, divide_by=None if with_length else 3)
    assert_same_weights(model, expected)
    wrong = by_hand(groups, mlp(), 0.05, divide_by=3 if with_length else None)
    assert not torch.equal(wrong[0].weight, model[0].weight)


def test_accumulated_small_batches_follow_the_mean_gradient_of_one_large_batch():
    small = regression_trainer(batches(4), epochs=2, accumulate=2)
    small.fit()
    large = regression_trainer(batches(8), epochs=2)
    large.fit()
    assert small.optimizer_steps == large.optimizer_steps == 10
    for p, q in zip(small.model.parameters(), large.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_accumulation_with_clipping_and_the_history_of_every_batch():
    trainer = regression_trainer(batches(4), epochs=1, accumulate=4, max_grad_norm=0.5)
    seen = []
    trainer.add_callback("on_batch_end", lambda t: seen.append(t.last_terms["loss"]))
    history = trainer.fit()
    assert trainer.optimizer_steps == 3  # 4 + 4 + 2
    assert history[0]["train_loss"] == pytest.approx(sum(seen) / 10)  # undivided


# --- mixed precision ------------------------------------------------------------------


def test_bf16_runs_the_forward_passes_in_bfloat16_and_keeps_float32_weights():
    model = mlp()
    dtypes = {"train": set(), "eval": set()}
    model[0].register_forward_hook(
        lambda m, i, out: dtypes["train" if m.training else "eval"].add(out.dtype)
    )
    trainer = regression_trainer(
        batches(8), model=model, epochs=6, precision="bf16", val_loader=batches(8, seed=1)
    )
    history = trainer.fit()
    assert dtypes == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert trainer.scaler is None


def test_fp16_needs_cuda():
    with pytest.raises(ValueError, match=r"precision='fp16' needs a CUDA device.*'cpu'"):
        regression_trainer(precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_cuda_scales_the_loss_and_resumes(tmp_path):
    def run(run_dir, epochs, init_seed=0):
        model = mlp(seed=init_seed)
        dtypes = set()
        model[0].register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
        x, y = regression_data()
        loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, pin_memory=True)
        trainer = regression_trainer(
            loader,
            model=model,
            epochs=epochs,
            precision="fp16",
            accumulate=2,
            device="cuda",
            run_dir=run_dir,
        )
        return trainer, dtypes

    whole, dtypes = run(tmp_path / "whole", 4)
    history = whole.fit()
    assert dtypes == {torch.float16} and whole.scaler is not None
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    run(tmp_path / "resumed", 2)[0].fit()
    resumed, _ = run(tmp_path / "resumed", 4, init_seed=9)
    resumed.fit(resume=True)
    assert_same_weights(resumed.model, whole.model)
    assert resumed.scaler.state_dict() == whole.scaler.state_dict()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dict_batches_reach_the_cuda_device():
    seen = []

    def objective(model, batch):
        seen.append({k: v.device.type for k, v in batch["inputs"].items()})
        return {"loss": (model(batch["inputs"]["x"]) - batch["y"]).pow(2).mean()}

    x, y = regression_data()
    loader = [{"inputs": {"x": x[i : i + 8]}, "y": y[i : i + 8]} for i in range(0, 40, 8)]
    model = mlp()
    Trainer(
        model,
        objective,
        torch.optim.SGD(model.parameters(), lr=0.05),
        loader,
        epochs=1,
        device="cuda",
        precision="bf16",
        progress=False,
    ).fit()
    assert seen == [{"x": "cuda"}] * 5


# --- resume: accumulation, bf16, extension ---------------------------------------------


def resumable(run_dir, epochs, *, init_seed=0, scheduler="constant", **options):
    """Shuffling, dropout, accumulation over groups crossing no epoch, bf16."""
    model = mlp(seed=init_seed, dropout=0.3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = regression_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    schedulers = {
        "none": None,
        "constant": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5),
    }
    return Trainer(
        model,
        mse,
        optimizer,
        loader,
        epochs=epochs,
        scheduler=schedulers[scheduler],
        run_dir=run_dir,
        seed=3,
        progress=False,
        **options,
    )


OPTIONS = {
    "accumulate": {"accumulate": 3},
    "bf16": {"precision": "bf16"},
    "accumulate-bf16-clip": {"accumulate": 4, "precision": "bf16", "max_grad_norm": 1.0},
}


@pytest.mark.parametrize("options", list(OPTIONS))
def test_a_run_killed_inside_an_accumulation_group_resumes_exactly(tmp_path, options):
    whole = resumable(tmp_path / "whole", 3, **OPTIONS[options])
    whole.fit()
    killed = resumable(tmp_path / "killed", 3, **OPTIONS[options])

    def kill(trainer):
        if trainer.step == 10 + 5:  # the middle of a group of epoch 2
            raise KeyboardInterrupt

    killed.add_callback("on_batch_end", kill)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert latest_checkpoint(tmp_path / "killed").name == "epoch-0001"
    resumed = resumable(tmp_path / "killed", 3, init_seed=9, **OPTIONS[options])
    history = resumed.fit(resume=True)
    assert without_times(history) == without_times(whole.history)
    assert resumed.optimizer_steps == whole.optimizer_steps
    assert_same_weights(resumed.model, whole.model)
    assert_same_state(resumed.optimizer.state_dict(), whole.optimizer.state_dict())


@pytest.mark.parametrize("scheduler", ["none", "constant"])
@pytest.mark.parametrize("options", ["plain", "accumulate-bf16-clip"])
def test_extending_a_finished_run_gives_the_weights_of_a_longer_run(tmp_path, scheduler, options):
    extra = OPTIONS.get(options, {})
    whole = resumable(tmp_path / "whole", 4, scheduler=scheduler, **extra)
    whole.fit()
    short = resumable(tmp_path / "short", 2, scheduler=scheduler, **extra)
    short.fit()
    assert len(short.history) == 2
    extended = resumable(tmp_path / "short", 4, init_seed=9, scheduler=scheduler, **extra)
    calls = []
    extended.add_callback("on_epoch_end", lambda t: calls.append(t.epoch))
    history = extended.fit(resume=True)
    assert calls == [3, 4]
    assert without_times(history) == without_times(whole.history)
    assert_same_weights(extended.model, whole.model)
    assert_same_state(extended.optimizer.state_dict(), whole.optimizer.state_dict())
    if scheduler != "none":
        assert_same_state(extended.scheduler.state_dict(), whole.scheduler.state_dict())


# --- best checkpoint and early stopping -----------------------------------------------


def scripted(values, run_dir=None, *, epochs=None, init_seed=0, **options):
    """A run whose monitored value is ``values[epoch]``, whatever the model does."""
    model = mlp(seed=init_seed, dropout=0.2)
    trainer = regression_trainer(
        batches(8),
        model=model,
        epochs=epochs or len(values),
        run_dir=run_dir,
        evaluate=lambda m: {"score": values[trainer.epoch]},
        monitor="score",
        **options,
    )
    weights = {}
    trainer.add_callback(
        "on_epoch_end",
        lambda t: weights.__setitem__(
            t.epoch, {k: v.clone() for k, v in t.model.state_dict().items()}
        ),
    )
    return trainer, weights


def test_the_best_epoch_is_kept_and_the_run_stops_after_patience_epochs(tmp_path):
    values = [3.0, 2.0, 2.5, 1.0, 1.0, 1.7, 0.5, 0.1]
    trainer, weights = scripted(values, tmp_path, patience=3)
    history = trainer.fit()
    # epoch 4 is the best; 5 (equal is no better), 6 and 7... 7 improves: never 3 in a row
    assert [r["best_epoch"] for r in history] == [1, 2, 2, 4, 4, 4, 7, 8]
    assert not trainer.stopped_early and trainer.best_epoch == 8
    trainer, weights = scripted(values, tmp_path, patience=2)
    history = trainer.fit()
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]  # 5 and 6 did not improve
    assert trainer.stopped_early and trainer.best_epoch == 4 and trainer.best_value == 1.0
    best = best_checkpoint(tmp_path)
    assert best == tmp_path / "checkpoints" / "best"
    about = json.loads((best / "record.json").read_text())
    assert about["epoch"] == 4 and about["value"] == 1.0 and about["monitor"] == "score"
    assert about["record"] == history[3]
    model = mlp(seed=5, dropout=0.2)
    load_weights(model, best / "model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[4][key]), key
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best", "epoch-0006"]


def test_mode_max_keeps_the_highest_value():
    trainer, _ = scripted([0.1, 0.5, 0.4, float("nan"), 0.3, 0.9], mode="max", patience=3)
    trainer.fit()
    assert trainer.best_epoch == 2 and trainer.stopped_early and len(trainer.history) == 5


def test_a_run_stopped_early_resumes_to_the_same_end(tmp_path):
    values = [3.0, 2.0, 2.5, 1.0, 1.0, 1.7, 0.5]
    whole, _ = scripted(values, tmp_path / "whole", patience=2)
    whole.fit()
    killed, _ = scripted(values, tmp_path / "killed", patience=2)

    def kill(trainer):
        if trainer.epoch == 5:
            raise KeyboardInterrupt

    killed.add_callback("on_epoch_end", kill)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    resumed, _ = scripted(values, tmp_path / "killed", init_seed=7, patience=2)
    history = resumed.fit(resume=True)
    assert without_times(history) == without_times(whole.history) and len(history) == 6
    assert resumed.stopped_early and resumed.best_epoch == 4
    assert_same_weights(resumed.model, whole.model)
    # resumed again: it stopped, so it trains no more; with more patience it goes on
    again, _ = scripted(values, tmp_path / "killed", patience=2)
    assert len(again.fit(resume=True)) == 6 and again.stopped_early
    patient, _ = scripted(values, tmp_path / "killed", patience=5)
    assert [r["epoch"] for r in patient.fit(resume=True)] == [1, 2, 3, 4, 5, 6, 7]
    assert patient.best_epoch == 7 and not patient.stopped_early


def test_a_monitored_value_must_be_in_the_record():
    trainer, _ = scripted([1.0, 2.0])
    trainer.monitor = "val_loss"
    with pytest.raises(ValueError, match=r"monitor 'val_loss' is not among.*'score'"):
        trainer.fit()


# --- metrics.jsonl --------------------------------------------------------------------


def lines(run_dir):
    return (run_dir / "metrics.jsonl").read_text().splitlines()


def pair_run(run_dir, epochs, init_seed=0):
    torch.manual_seed(init_seed)
    model = SiameseNetwork(MLPEncoder(FEATURES, embedding_dim=2, hidden=(16,), dropout=0.2))
    x, _ = regression_data(48)
    labels = torch.arange(48) % 4
    return Trainer(
        model,
        PairObjective(ContrastiveLoss(margin=1.0)),
        torch.optim.Adam(model.parameters(), lr=1e-2),
        DataLoader(PairDataset(x, labels, seed=0), batch_size=10, shuffle=True),
        epochs=epochs,
        val_loader=DataLoader(PairDataset(x, labels, seed=1), batch_size=16),
        run_dir=run_dir,
        seed=1,
        progress=False,
    )


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole")
    trainer = pair_run(run_dir, 4)
    trainer.fit()
    return trainer, run_dir


def test_metrics_jsonl_has_one_line_per_epoch_with_the_history(whole_run):
    trainer, run_dir = whole_run
    assert [json.loads(line) for line in lines(run_dir)] == trainer.history
    assert set(json.loads(lines(run_dir)[0])) == {
        "epoch",
        "train_loss",
        "val_loss",
        "epoch_seconds",
    }


def test_metrics_jsonl_of_a_resumed_run_equals_that_of_an_uninterrupted_run(tmp_path, whole_run):
    whole, whole_dir = whole_run
    killed = pair_run(tmp_path, 4)

    def kill(trainer):
        if trainer.step == 2 * 5 + 3:  # in epoch 3, after metrics.jsonl had 2 lines
            raise KeyboardInterrupt

    killed.add_callback("on_batch_end", kill)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    before = lines(tmp_path)
    assert len(before) == 2
    with (tmp_path / "metrics.jsonl").open("a") as f:  # as if a later epoch had been written
        f.write(json.dumps({"epoch": 3, "train_loss": 0.0}) + "\n")
    pair_run(tmp_path, 4, init_seed=5).fit(resume=True)
    after = lines(tmp_path)
    assert after[:2] == before
    assert without_times(map(json.loads, after)) == without_times(whole.history)
    assert len(after) == len(lines(whole_dir)) == 4


def test_metrics_jsonl_is_completed_when_a_run_died_after_its_checkpoint(tmp_path, whole_run):
    whole, _ = whole_run
    killed = pair_run(tmp_path, 4)
    write = killed._log_epoch

    def die_at_epoch_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt
        write(record)

    killed._log_epoch = die_at_epoch_2
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert latest_checkpoint(tmp_path).name == "epoch-0002" and len(lines(tmp_path)) == 1
    pair_run(tmp_path, 4).fit(resume=True)
    assert without_times(map(json.loads, lines(tmp_path))) == without_times(whole.history)


def test_a_fresh_run_starts_a_new_metrics_jsonl_and_drops_an_old_best(tmp_path):
    scripted([2.0, 1.0], tmp_path)[0].fit()
    assert best_checkpoint(tmp_path) is not None and len(lines(tmp_path)) == 2
    regression_trainer(epochs=1, run_dir=tmp_path).fit()
    assert len(lines(tmp_path)) == 1 and best_checkpoint(tmp_path) is None


# --- stale temporary folders ----------------------------------------------------------


@pytest.mark.parametrize("resume", [False, True])
def test_stale_temporary_folders_are_removed_at_the_start(tmp_path, resume):
    regression_trainer(epochs=1, run_dir=tmp_path).fit()
    folder = tmp_path / "checkpoints"
    for name in (".epoch-0002.tmp-999999", ".best.tmp-12"):
        (folder / name).mkdir()
        (folder / name / "model.safetensors").write_bytes(b"half")
    regression_trainer(epochs=2, run_dir=tmp_path).fit(resume=resume)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0002"]


def test_remove_stale_restores_a_best_checkpoint_set_aside(tmp_path):
    folder = tmp_path / "checkpoints"
    assert remove_stale(tmp_path) == []
    (folder / ".best.old-7").mkdir(parents=True)
    for name in ("model.safetensors", "record.json"):
        (folder / ".best.old-7" / name).write_text("x")
    (folder / ".epoch-0003.tmp-8").mkdir()
    assert remove_stale(tmp_path) == [folder / ".epoch-0003.tmp-8"]
    assert best_checkpoint(tmp_path) == folder / "best"
    (folder / ".best.old-9").mkdir()  # a best exists: the old one is removed
    assert remove_stale(tmp_path) == [folder / ".best.old-9"]
    assert sorted(p.name for p in folder.iterdir()) == ["best"]


# --- TensorBoard ----------------------------------------------------------------------


def test_tensorboard_logs_the_history_and_the_interval_means(tmp_path):
    pytest.importorskip(
        "tensorboard",
        reason="tensorboard is not installed: the optional TensorBoard writer is not tested",
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def run(epochs, kill_at=None):
        trainer = regression_trainer(
            batches(4),
            epochs=epochs,
            run_dir=tmp_path,
            val_loader=batches(8, seed=1),
            log_every=4,
            tensorboard=True,
        )
        if kill_at is not None:

            def kill(t):
                if t.step == kill_at:
                    raise KeyboardInterrupt

            trainer.add_callback("on_batch_end", kill)
        return trainer

    with pytest.raises(KeyboardInterrupt):
        run(3, kill_at=27).fit()  # logged steps 24 in epoch 3, then died
    history = run(3).fit(resume=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train_loss", "val_loss", "epoch_seconds", "step/train_loss"} <= set(scalars)
    train = events.Scalars("train_loss")
    assert [e.step for e in train] == [10, 20, 30]
    assert [e.value for e in train] == pytest.approx([r["train_loss"] for r in history])
    steps = [e.step for e in events.Scalars("step/train_loss")]
    assert steps == sorted(set(steps)) == [4, 8, 10, 12, 16, 20, 24, 28, 30]


def test_tensorboard_needs_a_run_dir_and_the_package(monkeypatch):
    with pytest.raises(ValueError, match="tensorboard=True needs a run_dir"):
        regression_trainer(tensorboard=True)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ImportError, match=r"needs the tensorboard package.*pip install"):
        regression_trainer(tensorboard=True, run_dir="unused")


# --- bad options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"accumulate": 0}, ValueError, "accumulate must be a positive integer, got 0"),
        ({"accumulate": 1.5}, ValueError, "accumulate must be a positive integer"),
        ({"accumulate": True}, ValueError, "accumulate must be a positive integer"),
        ({"log_every": 0}, ValueError, "log_every must be a positive integer or None, got 0"),
        ({"log_every": "10"}, ValueError, "log_every must be a positive integer or None"),
        ({"precision": "16"}, ValueError, r"precision must be one of \['32', 'bf16', 'fp16'\]"),
        ({"precision": 32}, ValueError, "precision must be one of"),
        ({"mode": "lowest"}, ValueError, "mode must be 'min' or 'max', got 'lowest'"),
        ({"monitor": 3}, TypeError, "monitor must be a str or None, got int"),
        ({"patience": 3}, ValueError, "patience=3 needs monitor"),
        ({"monitor": "score", "patience": 0}, ValueError, "patience must be a positive"),
        ({"monitor": "val_loss"}, ValueError, "monitor='val_loss' needs a val_loader or evaluate"),
        ({"tensorboard": "yes"}, TypeError, "tensorboard must be True or False"),
    ],
)
def test_bad_options_are_rejected(options, error, match):
    with pytest.raises(error, match=match):
        regression_trainer(**options)


def test_accumulation_survives_a_loader_longer_than_its_length():
    class Understated(list):
        def __len__(self):
            return 3  # yields 10 batches

    trainer = regression_trainer(Understated(batches(4)), epochs=1, accumulate=2)
    trainer.fit()
    # groups: 2, then 1 (the last of the 3 announced), then 2, 2, 2 and 1 flushed at the end
    assert trainer.step == 10 and trainer.optimizer_steps == 6
