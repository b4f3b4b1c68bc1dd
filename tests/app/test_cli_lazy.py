"""``--image-loading lazy``: a run that decodes its images per batch is the eager run.

The same tiny generated folder trained eagerly and lazily gives the same weights and
metrics, bit for bit, for the default (contrastive) loss, SupCon, NT-Xent with
augmentation (labelled and flat folders) and an open-set split; a killed lazy run
resumes bit-identically; DataLoader workers decode the same batches.
"""

from __future__ import annotations

import json

import pytest
import tomllib
import torch
from PIL import Image
from test_cli import SMALL, assert_one_line_error, call, kill_after_first_epoch, weights
from test_cli_augment import colour_images
from test_cli_open_set import make_faces

from contrastkit.app.build import lazy_image_folder
from contrastkit.app.config import RunConfig
from contrastkit.data.images import ImageFolderDataset, LazyImages, image_statistics
from contrastkit.data.readers import read_image_folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return colour_images(tmp_path_factory.mktemp("lazy") / "images", classes=3, per_class=12)


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


def train(capsys, run, *options):
    status, _, err = call(capsys, "train", *SMALL, "--image-size", "16", *options, "-o", run)
    assert status == 0, err
    return metrics(run)


def assert_same_run(eager, lazy):
    we, wl = weights(eager), weights(lazy)
    assert we.keys() == wl.keys()
    different = [k for k in we if not torch.equal(we[k], wl[k])]
    assert not different, different
    me, ml = metrics(eager), metrics(lazy)
    assert me["test"] == ml["test"] and me["pairs"] == ml["pairs"]
    assert me.get("anomaly") == ml.get("anomaly")
    # each epoch's losses and validation metrics (not its time)
    timeless = [[{k: v for k, v in h.items() if k != "epoch_seconds"} for h in m["history"]]
                for m in (me, ml)]  # fmt: skip
    assert timeless[0] == timeless[1] and len(timeless[0]) >= 1 and "train_loss" in timeless[0][0]


@pytest.mark.parametrize(
    "options",
    [
        [],  # the default loss: contrastive pairs
        ["--loss", "supcon", "--augment", "simclr"],
        ["--loss", "ntxent"],  # two augmented views of each image
        ["--loss", "triplet", "--split-by", "classes"],  # on faces: 8 identities
        ["--anomaly-class", "person7"],  # on faces: torch.cat of two lazy splits
    ],
    ids=["contrastive", "supcon", "ntxent", "triplet-open-set", "anomaly"],
)
def test_a_lazy_run_is_the_eager_run(tmp_path, capsys, images, options):
    eager = tmp_path / "eager"
    lazy = tmp_path / "lazy"
    if "--split-by" in options or "--anomaly-class" in options:
        images = make_faces(tmp_path / "faces")
    found = train(capsys, eager, "--data", images, "--image-loading", "eager", *options)
    assert "read lazily" not in found["data"]["source"]
    found = train(capsys, lazy, "--data", images, "--image-loading", "lazy", *options)
    assert "read lazily" in found["data"]["source"]
    assert any("images read lazily" in note for note in found["notes"])
    assert tomllib.loads((lazy / "config.toml").read_text())["image_loading"] == "lazy"
    assert_same_run(eager, lazy)


def test_ntxent_on_a_flat_folder_is_the_same_lazily(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for path in colour_images(tmp_path / "labelled").rglob("*.png"):
        path.rename(folder / f"{path.parent.name}-{path.name}")
    for mode in ("eager", "lazy"):
        train(
            capsys, tmp_path / mode, "--data", folder, "--loss", "ntxent", "--image-loading", mode
        )
    assert_same_run(tmp_path / "eager", tmp_path / "lazy")


def test_a_killed_lazy_run_resumes_bit_identically(tmp_path, capsys, monkeypatch, images):
    options = [*SMALL, "--epochs", "3", "--data", images, "--image-size", "16"]
    options += ["--image-loading", "lazy"]
    assert call(capsys, "train", *options, "-o", tmp_path / "whole")[0] == 0
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, err = call(capsys, "train", *options, "-o", tmp_path / "killed")
    assert status == 130 and "--resume" in err
    # how the images are read is no part of the result: resuming may change it
    status, _, err = call(capsys, "train", "--resume", tmp_path / "killed", "--workers", "0")
    assert status == 0, err
    whole, killed = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert whole.keys() == killed.keys()
    assert all(torch.equal(whole[k], killed[k]) for k in whole)


@pytest.mark.slow
def test_workers_decode_the_same_batches(tmp_path, capsys, images):
    options = ["--data", images, "--loss", "supcon", "--epochs", "1"]
    train(capsys, tmp_path / "eager", *options, "--image-loading", "eager")
    found = train(capsys, tmp_path / "lazy", *options, "--image-loading", "lazy", "--workers", "2")
    assert any("2 DataLoader worker processes" in note for note in found["notes"])
    assert_same_run(tmp_path / "eager", tmp_path / "lazy")


def test_auto_reads_eagerly_below_the_threshold_and_lazily_above(tmp_path, monkeypatch, images):
    config = RunConfig(data=str(images), image_size=16).checked()
    assert config.image_loading == "auto"
    assert lazy_image_folder(config, images) is None  # 36 small images: eager
    monkeypatch.setattr("contrastkit.app.build.LAZY_ABOVE_BYTES", 36 * 3 * 16 * 16 * 4 - 1)
    data = lazy_image_folder(config, images)
    assert data is not None and isinstance(data.inputs, LazyImages)
    eager = read_image_folder(images, image_size=16)
    assert torch.equal(data.labels, eager.labels) and data.class_names == eager.class_names
    assert data.inputs.shape == eager.inputs.shape
    index = torch.tensor([3, 0, 35])
    assert torch.equal(data.inputs[index], eager.inputs[index])
    assert torch.equal(data.subset(index).inputs[0:3], eager.inputs[index])


def test_image_statistics_are_the_same_from_a_tensor_and_a_lazy_view(images):
    eager = read_image_folder(images, image_size=16).inputs
    lazy = LazyImages(ImageFolderDataset(images, image_size=16))
    for limit in (10_000, 7):
        a = image_statistics(eager, limit=limit, batch_size=5)
        b = image_statistics(lazy, limit=limit, batch_size=5)
        assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
        assert (a.low, a.high, a.count, a.total) == (b.low, b.high, b.count, b.total)
    full = image_statistics(eager)
    assert full.count == 36
    # against torch's statistics of the whole tensor (population std)
    torch.testing.assert_close(full.mean.flatten(), eager.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(full.std.flatten(), eager.std(dim=(0, 2, 3), unbiased=False))
    assert (full.low, full.high) == (float(eager.min()), float(eager.max()))
    assert image_statistics(eager, limit=7).count == 7


def test_a_lazy_view_refuses_what_it_cannot_do(images):
    lazy = LazyImages(ImageFolderDataset(images, image_size=8))
    with pytest.raises(TypeError, match="LazyImages"):
        torch.stack([lazy, lazy])
    with pytest.raises(TypeError, match="integers"):
        lazy.subset(torch.tensor([True, False]))
    with pytest.raises(IndexError, match="out of range"):
        lazy[36]
    with pytest.raises(TypeError, match="ImageFolderDataset"):
        LazyImages(torch.zeros(3, 3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tensor or LazyImages"):
        image_statistics(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="labels"):
        lazy.samples(torch.zeros(3, dtype=torch.int64))


def test_bad_image_loading_options_are_one_line(tmp_path, capsys, images):
    for options, named in (
        (["--image-loading", "sometimes"], "--image-loading"),
        (["--workers", "-1"], "--workers"),
        (["--image-loading", "lazy", "--objective", "reconstruction"], "image_loading lazy"),
    ):
        status, _, err = call(
            capsys, "train", *SMALL, "--data", images, *options, "-o", tmp_path / "x"
        )
        assert_one_line_error(status, err, named)
        assert not (tmp_path / "x").exists()


def test_a_colour_image_after_a_grayscale_first_one_makes_the_lazy_folder_rgb(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            grey = (name, i) == ("a", 0)
            Image.new("L" if grey else "RGB", (6, 6), 90 if grey else (30 * i, 0, 200)).save(
                tmp_path / name / f"{i}.png"
            )
    config = RunConfig(data=str(tmp_path), image_size=4, image_loading="lazy").checked()
    data = lazy_image_folder(config, tmp_path)
    eager = read_image_folder(tmp_path, image_size=4)
    assert data is not None and data.inputs.shape == eager.inputs.shape == (6, 3, 4, 4)
    assert torch.equal(data.inputs[0:6], eager.inputs)


def test_the_raw_baselines_of_a_folder_too_big_to_hold_are_left_out_and_said(
    tmp_path, capsys, images, monkeypatch
):
    from contrastkit.app import evaluate

    lazy = LazyImages(ImageFolderDataset(images, image_size=16))
    assert torch.equal(evaluate.in_memory(lazy), read_image_folder(images, image_size=16).inputs)
    eager = torch.zeros(3, 2)
    assert evaluate.in_memory(eager) is eager
    monkeypatch.setattr(evaluate, "LAZY_ABOVE_BYTES", 16 * 16 * 3 * 4 * 10)  # 10 images
    assert evaluate.in_memory(lazy.subset(torch.arange(10))) is not None
    assert evaluate.in_memory(lazy.subset(torch.arange(11))) is None
    found = train(capsys, tmp_path / "run", "--data", images, "--image-loading", "lazy")
    assert found["raw_inputs"] == {
        "skipped": "the images were read lazily and are too many to hold in memory"
    }
    assert found["probes"]["raw_inputs"] == {"knn_accuracy": None, "linear_probe_accuracy": None}
    assert "read lazily and are too many" in found["probes"]["raw_skipped"]
    assert found["test"]["precision_at_1"] is not None  # the embedding is still measured
