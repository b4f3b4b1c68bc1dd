"""``--augment`` and ``--loss ntxent`` through the command, on tiny generated image folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image
from test_cli import SMALL, assert_one_line_error, call, train_whole_and_killed, weights

from contrastkit.app.build import BatchAugment
from contrastkit.data import Augment
from contrastkit.training import Trainer


def colour_images(root, *, classes=3, per_class=8, size=16):
    """RGB images, one subfolder per class: each class a colour plus noise and a bar."""
    rng = np.random.default_rng(3)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3))
            pixels[..., c] += 150
            pixels[2 + c * 3 : 4 + c * 3, :, :] = 255
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return colour_images(tmp_path_factory.mktemp("augment") / "images")


def saved_config(run):
    return tomllib.loads((run / "config.toml").read_text())


def test_simclr_runs_and_trains_other_weights_than_none(tmp_path, capsys, images):
    runs = {}
    for preset in ("none", "simclr"):
        run = tmp_path / preset
        status, _, err = call(
            capsys, "train", *SMALL, "--data", images, "--image-size", "16", "--augment",
            preset, "-o", run,
        )  # fmt: skip
        assert status == 0, err
        assert saved_config(run)["augment"] == preset
        notes = " ".join(json.loads((run / "metrics.json").read_text())["notes"])
        assert ("augmented on the fly" in notes) == (preset != "none")
        runs[preset] = weights(run)
    assert any(not torch.equal(runs["none"][k], runs["simclr"][k]) for k in runs["none"])


def test_image_data_is_cropped_without_flips_by_default_and_features_not(tmp_path, capsys, images):
    run = tmp_path / "default"
    status, _, err = call(
        capsys, "train", *SMALL, "--data", images, "--image-size", "16", "-o", run
    )
    assert status == 0, err
    assert (saved_config(run)["augment"], saved_config(run)["projection"]) == ("crop", "none")
    notes = " ".join(json.loads((run / "metrics.json").read_text())["notes"])
    assert "crops of 80% of the image or more, no flips" in notes
    status, _, err = call(capsys, "train", *SMALL, "-o", tmp_path / "digits")
    assert status == 0, err
    assert saved_config(tmp_path / "digits")["augment"] == "none"


def test_a_killed_augmented_run_resumes_bit_identically(tmp_path, capsys, monkeypatch, images):
    options = [*SMALL, "--epochs", "3", "--data", images, "--image-size", "16"]
    options += ["--augment", "simclr"]
    train_whole_and_killed(capsys, monkeypatch, tmp_path, options)
    whole, killed = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert whole.keys() == killed.keys()
    assert all(torch.equal(whole[k], killed[k]) for k in whole)


def test_the_trainer_seeds_the_transform_per_step_and_never_on_validation() -> None:
    seen: list[tuple[int, float]] = []

    def transform(batch, generator):
        seen.append((len(seen), float(torch.rand(1, generator=generator))))
        return batch

    model = torch.nn.Linear(2, 1)
    batches = [(torch.ones(4, 2),)] * 3

    def objective(m, batch):
        return {"loss": m(batch[0]).pow(2).mean()}

    def draws(seed):
        seen.clear()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        trainer = Trainer(
            model, objective, optimizer, batches, epochs=2, val_loader=batches, seed=seed,
            transform=transform, progress=False,
        )  # fmt: skip
        trainer.fit()
        return [u for _, u in seen]

    first = draws(0)
    assert len(first) == 6  # training batches only: 2 epochs × 3, no validation batch
    assert len(set(first)) == 6  # every step its own stream
    assert draws(0) == first and draws(1) != first
    with pytest.raises(TypeError, match="transform"):
        Trainer(model, objective, torch.optim.SGD(model.parameters()), batches, epochs=1,
                transform=3)  # fmt: skip


def test_batch_augment_gives_ntxent_two_differing_views_of_each_image() -> None:
    x = torch.rand(5, 3, 16, 16)
    views, ids = BatchAugment(Augment.simclr(16), two_views=True)(
        [x, torch.zeros(5, dtype=torch.int64)], torch.Generator().manual_seed(0)
    )
    assert views.shape == (10, 3, 16, 16)
    assert ids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert not torch.equal(views[0::2], views[1::2])
    assert float(views.min()) >= 0 and float(views.max()) <= 1


def test_ntxent_on_a_labelled_folder_reports_precision_at_1(tmp_path, capsys, images):
    run = tmp_path / "ntxent"
    status, _, err = call(
        capsys, "train", *SMALL, "--data", images, "--image-size", "16", "--loss", "ntxent",
        "-o", run,
    )  # fmt: skip
    assert status == 0, err
    config = saved_config(run)
    assert (config["augment"], config["temperature"]) == ("strong", 0.5)
    assert config["projection"] == "mlp"
    metrics = json.loads((run / "metrics.json").read_text())
    assert any("NT-Xent" in note for note in metrics["notes"])
    assert any("projection head" in note for note in metrics["notes"])
    assert 0 <= metrics["test"]["precision_at_1"] <= 1
    assert "1-NN" in (run / "report.html").read_text()


def test_ntxent_trains_on_a_flat_folder_and_says_there_is_nothing_to_measure(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for path in colour_images(tmp_path / "labelled").rglob("*.png"):
        path.rename(folder / f"{path.parent.name}-{path.name}")
    run = tmp_path / "run"
    status, _, err = call(
        capsys, "train", *SMALL, "--data", folder, "--image-size", "16", "--loss", "ntxent",
        "-o", run,
    )  # fmt: skip
    assert status == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["classes"] is None or metrics["data"]["classes"] == 0
    assert sum(metrics["data"][k] for k in ("train", "validation", "test")) == 24
    assert not any(v is not None for v in metrics["test"].values())
    assert any("no labels" in note for note in metrics["notes"])
    assert "no labels" in (run / "report.html").read_text()
    # the same flat folder is refused by a loss that needs labels
    status, _, err = call(capsys, "train", *SMALL, "--data", folder, "-o", tmp_path / "x")
    assert_one_line_error(status, err, "class subfolders")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--augment", "heavy"], ["augment", "heavy"]),
        (["--loss", "ntxent", "--augment", "none"], ["ntxent", "augment"]),
        (["--augment", "simclr"], ["augment simclr", "image data"]),
        (["--augment", "strong"], ["augment strong", "image data"]),
        (["--loss", "ntxent", "--augment", "simclr"], ["augment simclr", "image data"]),
        (["--projection", "deep"], ["projection", "deep", "mlp"]),
        (
            ["--projection", "mlp", "--objective", "reconstruction"],
            ["projection mlp", "objective contrastive", "reconstruction"],
        ),
    ],
    ids=[
        "unknown",
        "ntxent-without",
        "features",
        "strong-features",
        "ntxent-features",
        "projection-unknown",
        "projection-autoencoder",
    ],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path, capsys, extra, named):
    run = tmp_path / "bad"
    status, _, err = call(capsys, "train", *SMALL, *extra, "-o", run)
    assert_one_line_error(status, err, *named)
    assert not run.exists()
