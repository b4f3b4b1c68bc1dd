"""``--encoder resnet`` and ``--init-weights`` through the command, on tiny image folders."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_cli import (
    SMALL,
    assert_one_line_error,
    call,
    kill_after_first_epoch,
    train_whole_and_killed,
    weights,
)
from test_cli_augment import colour_images, saved_config

from contrastkit.app.build import build_model, init_encoder
from contrastkit.app.config import DEFAULT_ENCODER, ConfigError
from contrastkit.models import ConvEncoder, ResNetEncoder
from contrastkit.training import Trainer

RESNET = ["--encoder", "resnet", "--image-size", "16"]
NO_HIDDEN = SMALL[:6] + SMALL[8:]  # SMALL less its --hidden 16


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return colour_images(tmp_path_factory.mktemp("resnet") / "images")


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory, images):
    run = tmp_path_factory.mktemp("resnet-run") / "run"
    status = call_quiet("train", *SMALL, "--data", images, *RESNET, "-o", run)
    assert status == 0
    return run


def call_quiet(*argv):
    from contrastkit.app.cli import main

    return main([str(a) for a in argv])


def model_json(run):
    return json.loads((run / "model.json").read_text())


def first_weights(monkeypatch):
    """Record the model's weights as training starts (before the first step)."""
    seen: dict[str, torch.Tensor] = {}
    fit = Trainer.fit

    def recording_fit(self, *args, **kwargs):
        seen.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    return seen


def test_resnet_trains_and_evaluate_and_embed_rebuild_it(tmp_path, capsys, images, resnet_run):
    spec = model_json(resnet_run)
    assert (spec["encoder"], spec["hidden"], spec["blocks"], spec["norm"]) == (
        "resnet", [16], [2], "batch"
    )  # fmt: skip
    config = saved_config(resnet_run)
    assert (config["encoder"], config["resnet_blocks"]) == ("resnet", [2])
    saved = weights(resnet_run)
    assert "encoder.layer1.1.conv2.weight" in saved and "encoder.fc.weight" in saved
    model = build_model(spec)
    assert isinstance(model.encoder, ResNetEncoder)
    model.load_state_dict(saved)  # strict: the keys and shapes of the trained network
    status, out, err = call(capsys, "evaluate", resnet_run)
    assert status == 0, err
    assert "precision@1" in out
    status, _, err = call(capsys, "embed", resnet_run, images, "-o", tmp_path / "emb.npy")
    assert status == 0, err
    assert np.load(tmp_path / "emb.npy").shape == (24, 2)


def test_images_default_to_the_default_encoder_and_conv_writes_no_key(tmp_path, capsys, images):
    run = tmp_path / "default"
    status, _, err = call(capsys, "train", *SMALL, "--data", images, "--image-size", "16",
                          "-o", run)  # fmt: skip
    assert status == 0, err
    assert saved_config(run)["encoder"] == DEFAULT_ENCODER
    assert ("encoder" in model_json(run)) == (DEFAULT_ENCODER == "resnet")
    assert call(capsys, "train", *SMALL, "-o", tmp_path / "digits")[0] == 0
    assert saved_config(tmp_path / "digits")["encoder"] == ""  # feature vectors: none


@pytest.mark.slow
def test_a_killed_resnet_run_resumes_bit_identically(tmp_path, capsys, monkeypatch, images):
    options = [*SMALL, "--epochs", "3", "--data", images, *RESNET]
    train_whole_and_killed(capsys, monkeypatch, tmp_path, options)
    whole, killed = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert whole.keys() == killed.keys()
    assert all(torch.equal(whole[k], killed[k]) for k in whole)


@pytest.mark.slow
def test_a_run_made_before_the_option_resumes_with_the_convnet(tmp_path, capsys, monkeypatch,
                                                               images):  # fmt: skip
    options = [*SMALL, "--epochs", "3", "--data", images, "--image-size", "16"]
    options += ["--encoder", "conv"]
    assert call(capsys, "train", *options, "-o", tmp_path / "whole")[0] == 0
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        assert call(capsys, "train", *options, "-o", tmp_path / "old")[0] == 130
    config = tmp_path / "old" / "config.toml"
    text = config.read_text()
    assert 'encoder = "conv"\n' in text and "resnet_blocks = []\n" in text
    new_keys = ("encoder ", "resnet_blocks ", "init_weights ")
    config.write_text("".join(x for x in text.splitlines(True) if not x.startswith(new_keys)))
    status, _, err = call(capsys, "train", "--resume", tmp_path / "old")
    assert status == 0, err
    assert "encoder" not in model_json(tmp_path / "old")
    whole, old = weights(tmp_path / "whole"), weights(tmp_path / "old")
    assert all(torch.equal(whole[k], old[k]) for k in whole)


def test_resnet_without_batch_norm_has_group_norm_and_caches_gradients(tmp_path, capsys, images):
    run = tmp_path / "cached"
    status, _, err = call(capsys, "train", *SMALL, "--data", images, *RESNET, "--no-batch-norm",
                          "--micro-batch", "4", "--loss", "supcon", "-o", run)  # fmt: skip
    assert status == 0, err
    assert model_json(run)["norm"] == "group" and "batch_norm" not in model_json(run)
    assert not any("running_mean" in k for k in weights(run))
    assert any(
        "gradient caching" in n for n in json.loads((run / "metrics.json").read_text())["notes"]
    )
    assert call(capsys, "evaluate", run)[0] == 0


def encoder_file(tmp_path, suffix, *, widths=(16,), seed=5, standardize=False):
    """The state dict of a ResNet shaped like the runs' (3 channels, 2 dimensions)."""
    torch.manual_seed(seed)
    encoder = ResNetEncoder(3, embedding_dim=2, widths=widths, blocks=[2] * len(widths))
    state = {k: v for k, v in encoder.state_dict().items() if standardize or "standardize" not in k}
    for v in state.values():  # not the initialisation any run would draw
        if v.is_floating_point():
            v.add_(0.25)
    file = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(file))
    else:
        torch.save(state, file)
    return file, state


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_init_weights_start_the_encoder_from_the_file(tmp_path, capsys, monkeypatch, images,
                                                      suffix):  # fmt: skip
    file, state = encoder_file(tmp_path, suffix)
    start = first_weights(monkeypatch)
    run = tmp_path / "run"
    status, _, err = call(capsys, "train", *SMALL, "--data", images, *RESNET, "--init-weights",
                          file, "-o", run)  # fmt: skip
    assert status == 0, err
    assert all(torch.equal(start[f"encoder.{k}"], v) for k, v in state.items())
    assert not torch.equal(start["encoder.standardize.mean"], torch.zeros(3, 1, 1))  # the data's
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["init_weights"]["sha256"] == sha
    assert metrics["init_weights"]["path"] == str(file.resolve())
    assert metrics["init_weights"]["tensors"] == len(state)
    assert any(sha in note and str(file.resolve()) in note for note in metrics["notes"])
    assert model_json(run)["init_weights"]["sha256"] == sha
    assert saved_config(run)["init_weights"] == str(file.resolve())


def test_init_weights_from_a_run_take_its_encoder_and_statistics(tmp_path, capsys, monkeypatch,
                                                                 images, resnet_run):  # fmt: skip
    start = first_weights(monkeypatch)
    status, _, err = call(capsys, "train", *SMALL, "--data", images, *RESNET, "--init-weights",
                          resnet_run / "model.safetensors", "-o", tmp_path / "run")  # fmt: skip
    assert status == 0, err
    trained = weights(resnet_run)
    assert start.keys() == trained.keys()
    encoder = [k for k in trained if k.startswith("encoder.")]
    assert encoder and all(torch.equal(start[k], trained[k]) for k in encoder)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["init_weights"]["standardize"] is True


@pytest.mark.slow
def test_a_killed_run_from_init_weights_resumes_without_the_file(tmp_path, capsys, monkeypatch,
                                                                 images):  # fmt: skip
    file, _ = encoder_file(tmp_path, ".pt")
    options = [*SMALL, "--epochs", "3", "--data", images, *RESNET, "--init-weights", file]
    assert call(capsys, "train", *options, "-o", tmp_path / "whole")[0] == 0
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        assert call(capsys, "train", *options, "-o", tmp_path / "killed")[0] == 130
    file.unlink()  # the checkpoint has the weights: the file is not read again
    status, _, err = call(capsys, "train", "--resume", tmp_path / "killed")
    assert status == 0, err
    whole, killed = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert all(torch.equal(whole[k], killed[k]) for k in whole)
    metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert (
        metrics["init_weights"]
        == json.loads((tmp_path / "whole" / "metrics.json").read_text())["init_weights"]
    )


def test_init_encoder_leaves_the_model_untouched_on_a_mismatch(tmp_path):
    file, _ = encoder_file(tmp_path, ".pt", widths=(8,))
    spec = {"kind": "images", "embedding_dim": 2, "hidden": [16], "channels": 3,
            "image_size": 16, "encoder": "resnet", "blocks": [2], "norm": "batch"}  # fmt: skip
    model = build_model(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"encoder\.pt.*of another shape.*conv1\.weight"):
        init_encoder(model, file)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    conv = build_model({**spec, "encoder": "conv"})
    assert isinstance(conv.encoder, ConvEncoder)
    with pytest.raises(ConfigError, match="missing"):
        init_encoder(conv, file)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--encoder", "vgg"], ["encoder", "vgg", "conv, resnet"]),
        (["--encoder", "resnet"], ["encoder", "image data", "digits"]),
        (["--resnet-blocks", "2"], ["resnet-blocks", "encoder resnet"]),
        (["--encoder", "resnet", "--resnet-blocks", "2,0,2"], ["resnet_blocks", "positive"]),
        (["--encoder", "resnet", "--resnet-blocks", "2,2"], ["resnet_blocks", "[32, 64, 128]"]),
        (["--encoder", "resnet", "--hidden", "8", "--resnet-blocks", "1,1"], ["one entry per"]),
        (["--init-weights", "nowhere.pt"], ["init_weights", "nowhere.pt", "does not exist"]),
    ],
    ids=["unknown", "features", "blocks-alone", "zero", "default-widths", "count", "none"],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path, capsys, extra, named):
    run = tmp_path / "bad"
    status, _, err = call(capsys, "train", *NO_HIDDEN, *extra, "-o", run)
    assert_one_line_error(status, err, *named)
    assert not run.exists()


def test_blocks_that_are_no_numbers_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        call(capsys, "train", "--encoder", "resnet", "--resnet-blocks", "2,a", "-o", tmp_path / "x")
    _, err = capsys.readouterr()
    assert_one_line_error(stop.value.code, err, "--resnet-blocks", "2,a")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--no-batch-norm"], ["batch_norm", "encoder resnet"]),
        (["--no-batch-norm", "--micro-batch", "4"], ["micro_batch", "takes encoder resnet"]),
        (["--encoder", "resnet", "--micro-batch", "4"], ["micro_batch", "--no-batch-norm"]),
        (["--encoder", "resnet", "--image-size", "2", "--hidden", "8,8,8"], ["too small", "4"]),
        (
            ["--image-size", "6", "--hidden", "8,8,8"],
            ["image_size 6", "ConvNet of 3 blocks", "at least 8"],
        ),
    ],
    ids=["conv-no-bn", "conv-micro-batch", "resnet-bn-micro-batch", "too-small", "conv-too-small"],
)
def test_combinations_that_cannot_work_are_refused(tmp_path, capsys, images, extra, named):
    run = tmp_path / "bad"
    status, _, err = call(capsys, "train", *SMALL, "--data", images, "--encoder", "conv", *extra,
                          "-o", run)  # fmt: skip
    assert_one_line_error(status, err, *named)
    assert not run.exists() and not (tmp_path / "runs").exists()


def test_mismatched_or_unreadable_weights_are_one_line_naming_the_file(
    tmp_path, capsys, monkeypatch, images
):
    monkeypatch.chdir(tmp_path)
    other, _ = encoder_file(tmp_path, ".pt", widths=(8,))
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    for file, named in ((other, ["of another shape", "conv1.weight", "(8, 3, 3, 3)"]),
                        (text, ["neither a safetensors file nor"])):  # fmt: skip
        status, _, err = call(capsys, "train", *SMALL, "--data", images, *RESNET,
                              "--init-weights", file)  # fmt: skip
        assert_one_line_error(status, err, "init_weights", str(file.resolve()), *named)
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_restarts_from_the_same_file(
    tmp_path, capsys, monkeypatch, images
):
    file, state = encoder_file(tmp_path, ".pt")
    options = [*SMALL, "--data", images, *RESNET, "--init-weights", file]

    def die(self):
        raise KeyboardInterrupt

    for name in ("changed", "same"):
        with monkeypatch.context() as m:
            m.setattr(Trainer, "_save", die)
            assert call(capsys, "train", *options, "-o", tmp_path / name)[0] == 130
        assert not (tmp_path / name / "checkpoints").exists() or not any(
            (tmp_path / name / "checkpoints").iterdir()
        )
    torch.save({k: v + 1 for k, v in state.items()}, tmp_path / "other.pt")
    original = file.read_bytes()
    file.write_bytes((tmp_path / "other.pt").read_bytes())
    status, _, err = call(capsys, "train", "--resume", tmp_path / "changed")
    assert_one_line_error(status, err, "init_weights", "is not the file", "SHA-256")
    file.write_bytes(original)
    status, _, err = call(capsys, "train", "--resume", tmp_path / "same")
    assert status == 0, err
    assert call(capsys, "train", *options, "-o", tmp_path / "whole")[0] == 0
    same, whole = weights(tmp_path / "same"), weights(tmp_path / "whole")
    assert all(torch.equal(same[k], whole[k]) for k in whole)


def test_init_encoder_takes_an_mlp_runs_weights_with_its_statistics(tmp_path):
    spec = {"kind": "vectors", "embedding_dim": 2, "hidden": [8], "in_features": 4}
    torch.manual_seed(1)
    trained = build_model(spec)
    with torch.no_grad():
        trained.encoder[0].mean.add_(3.0)  # statistics unlike a fresh model's
    save_file(trained.state_dict(), str(tmp_path / "model.safetensors"))
    fresh = build_model(spec)
    record = init_encoder(fresh, tmp_path / "model.safetensors")
    assert record["standardize"] is True and record["tensors"] == len(fresh.encoder.state_dict())
    theirs, mine = trained.state_dict(), fresh.state_dict()
    assert all(torch.equal(theirs[k], mine[k]) for k in theirs)
