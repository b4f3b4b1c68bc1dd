"""The residual encoder and loading weights from a local file."""

from __future__ import annotations

import math
import re

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from contrastkit.models import (
    ConvEncoder,
    LoadReport,
    ResNetEncoder,
    SiameseNetwork,
    Standardize,
    WeightsError,
    load_pretrained,
)
from contrastkit.models.encoders import BasicBlock


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: one thread avoids waiting on others on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kwargs):
    """A ResNetEncoder small enough to run in milliseconds."""
    options = {"embedding_dim": 5, "widths": (4, 8), "blocks": (1, 2)}
    options.update(kwargs)
    return ResNetEncoder(options.pop("in_channels", 3), **options)


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --- the network ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 9, 13, 28, 32, 33, 64])
@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_output_shape_and_final_feature_map(size, stem):
    torch.manual_seed(0)
    model = tiny(stem=stem, widths=(4, 8), blocks=(1, 1))
    seen = []
    model.layer2.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    assert model(rand(2, 3, size, size)).shape == (2, 5)
    stride = 2 if stem == "small" else 8  # one stride-2 stage (and the ImageNet stem's 4)
    assert model.min_size == stride
    assert seen == [(2, 8, math.ceil(size / stride), math.ceil(size / stride))]


def test_min_size_is_the_total_stride():
    assert ResNetEncoder().min_size == 4
    assert ResNetEncoder(widths=(8,), blocks=(1,)).min_size == 1
    assert ResNetEncoder(widths=(4, 4, 4, 4), blocks=(1,) * 4, stem="imagenet").min_size == 32


def test_rectangular_and_smallest_images():
    model = tiny(widths=(4, 4, 4), blocks=(1, 1, 1))
    assert model.min_size == 4
    assert model(rand(2, 3, 4, 21)).shape == (2, 5)


@pytest.mark.parametrize(("height", "width"), [(3, 3), (8, 3), (3, 8)])
def test_rejects_images_smaller_than_the_stride(height, width):
    model = tiny(widths=(4, 4, 4), blocks=(1, 1, 1))
    with pytest.raises(ValueError, match=f"at least 4×4 pixels, got {height}×{width}"):
        model(rand(2, 3, height, width))


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 8, 8), (2, 3, 1, 8, 8)])
def test_rejects_wrong_channels_or_dims(shape):
    with pytest.raises(ValueError, match=re.escape(f"(N, 3, H, W), got {shape}")):
        tiny()(rand(*shape))


def test_default_parameter_count_as_documented():
    model = ResNetEncoder()
    assert n_parameters(model) == 711_840
    assert "711,840" in ResNetEncoder.__doc__
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 15
    assert n_parameters(ConvEncoder(3, embedding_dim=128)) == 27_904
    assert model.widths == (32, 64, 128) and model.blocks == (2, 2, 2)
    assert model.norm == "batch" and model.stem == "small" and model.embedding_dim == 128


def test_resnet18_shape_has_torchvision_names_and_size():
    model = ResNetEncoder(
        widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem="imagenet", embedding_dim=1000
    )
    state = model.state_dict()
    # torchvision.models.resnet18(): 11,689,512 parameters, 122 state-dict entries
    assert n_parameters(model) == 11_689_512
    assert len(state) == 122
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert "layer2.0.downsample.1.running_var" in state
    assert state["layer4.1.bn2.weight"].shape == (512,)
    assert state["fc.weight"].shape == (1000, 512)
    assert not any(k.startswith("layer1.0.downsample") for k in state)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_norm_layers_and_biases(norm):
    model = tiny(norm=norm, widths=(4, 12))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 3 + 1  # stem, three blocks, one projection shortcut
    if norm == "none":
        assert norms == []
        assert all(c.bias is not None for c in convs)
    else:
        assert len(norms) == len(convs)
        assert all(c.bias is None for c in convs)
        kind = nn.BatchNorm2d if norm == "batch" else nn.GroupNorm
        assert all(isinstance(m, kind) for m in norms)
    if norm == "group":  # gcd(8, width), as in ConvEncoder
        assert sorted({m.num_groups for m in norms}) == [4]
        assert {m.num_channels for m in norms} == {4, 12}


@pytest.mark.parametrize("norm", ["group", "none"])
def test_group_and_none_embed_each_image_alone(norm):
    torch.manual_seed(0)
    model = tiny(norm=norm, zero_init_residual=False).train()
    x = rand(6, 3, 9, 9, seed=1)
    others = x.clone()
    others[1:] = rand(5, 3, 9, 9, seed=2) * 3
    torch.testing.assert_close(model(x)[0], model(others)[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model(x)[:2], model(x[:2]), rtol=1e-6, atol=1e-6)


def test_batch_norm_couples_the_batch_in_training_only():
    torch.manual_seed(0)
    model = tiny(norm="batch", zero_init_residual=False).train()
    x = rand(6, 3, 9, 9, seed=1)
    others = x.clone()
    others[1:] = rand(5, 3, 9, 9, seed=2) * 3
    assert not torch.allclose(model(x)[0], model(others)[0], atol=1e-4)
    model.eval()
    torch.testing.assert_close(model(x)[0], model(others)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_every_parameter_gets_a_finite_nonzero_gradient(norm):
    torch.manual_seed(0)
    model = tiny(norm=norm, zero_init_residual=False).train()
    (model(rand(4, 3, 10, 10)) ** 2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_input_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = tiny(norm="group", in_channels=1, widths=(2, 4), blocks=(1, 1), embedding_dim=2)
    model = model.double()
    for block in (model.layer1[0], model.layer2[0]):  # a non-zero branch to check
        nn.init.normal_(block.bn2.weight)
    x = rand(1, 1, 4, 4, seed=3).double().requires_grad_()
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_zero_init_residual_makes_each_block_its_shortcut(norm):
    torch.manual_seed(0)
    model = tiny(norm=norm).train()
    x = model.relu(model.bn1(model.conv1(rand(3, 3, 9, 9))))
    blocks = [b for stage in model.stages() for b in stage]
    assert len(blocks) == 3
    for block in blocks:
        shortcut = x if block.downsample is None else block.downsample(x)
        out = block(x)
        assert torch.equal(out, torch.relu(shortcut))
        x = out
    assert blocks[0].downsample is None and torch.equal(blocks[0](x[:, :4]), x[:, :4])


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_without_zero_init_a_block_is_not_its_shortcut(norm):
    torch.manual_seed(0)
    block = BasicBlock(4, 4, norm=norm).train()
    x = rand(3, 4, 6, 6)
    assert not torch.allclose(block(x), torch.relu(x))


def test_zero_init_residual_branch_learns_through_its_last_scale():
    torch.manual_seed(0)
    model = tiny(norm="batch").train()
    (model(rand(4, 3, 10, 10)) ** 2).sum().backward()
    block = model.layer1[0]
    assert torch.equal(block.conv1.weight.grad, torch.zeros_like(block.conv1.weight))
    assert block.bn2.weight.grad.abs().sum() > 0  # so the branch opens after one step


def test_standardize_comes_first():
    x = rand(6, 3, 8, 8) * 50 + 10
    standardize = Standardize.from_data(x)
    torch.manual_seed(0)
    model = tiny(standardize=standardize).eval()
    assert model.standardize is standardize
    reference = tiny().eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(model(x), reference(standardize(x)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"in_channels": True}, TypeError, "in_channels"),
        ({"embedding_dim": 0}, ValueError, "embedding_dim"),
        ({"widths": 8}, TypeError, "widths"),
        ({"widths": ()}, ValueError, "widths must name at least one stage"),
        ({"widths": (8, -1)}, ValueError, r"widths\[1\]"),
        ({"blocks": (2, 2)}, ValueError, r"blocks must have one entry per stage .*\(3\), got 2"),
        ({"blocks": (2, 0, 2)}, ValueError, r"blocks\[1\] must be >= 1"),
        ({"blocks": "222"}, TypeError, "blocks"),
        ({"norm": "layer"}, ValueError, "norm must be one of"),
        ({"stem": "cifar"}, ValueError, "stem must be one of"),
        ({"zero_init_residual": 1}, TypeError, "zero_init_residual must be a bool"),
        ({"standardize": "z-score"}, TypeError, "standardize must be a Standardize"),
    ],
)
def test_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResNetEncoder(**kwargs)


# --- load_pretrained ------------------------------------------------------------------


def trained_tiny(seed=1, **kwargs):
    """A tiny encoder whose weights and batch-norm statistics are not the initial ones."""
    torch.manual_seed(seed)
    model = tiny(**kwargs)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    model.train()(rand(4, 3, 8, 8, seed=seed))  # moves the running statistics
    return model.eval()


def save(state, path):
    if str(path).endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("name", ["w.safetensors", "w.pt", "w.pth", "weights-without-suffix"])
def test_round_trip_gives_the_same_outputs(tmp_path, name):
    source = trained_tiny()
    if name == "weights-without-suffix":  # told apart by content: a safetensors file
        path = tmp_path / name
        path.write_bytes(save(source.state_dict(), tmp_path / "x.safetensors").read_bytes())
    else:
        path = save(source.state_dict(), tmp_path / name)
    target = trained_tiny(seed=2)
    x = rand(3, 3, 8, 8, seed=5)
    assert not torch.allclose(target(x), source(x))
    report = load_pretrained(target, path)
    assert isinstance(report, LoadReport) and report.complete
    assert report.loaded == tuple(source.state_dict())
    assert torch.equal(target(x), source(x))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


@pytest.mark.parametrize("prefix", ["encoder.", "encoder"])
def test_prefix_takes_the_encoder_of_a_siamese_network(tmp_path, prefix):
    siamese = SiameseNetwork(trained_tiny())
    path = save(siamese.state_dict(), tmp_path / "model.safetensors")
    target = trained_tiny(seed=2)
    report = load_pretrained(target, path, prefix=prefix)
    assert report.complete and report.ignored == ()
    x = rand(3, 3, 8, 8, seed=5)
    assert torch.equal(target(x), siamese(x))


def test_prefix_strips_ddp_module_names_and_ignores_the_rest(tmp_path):
    source = trained_tiny()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["decoder.weight"] = torch.ones(2)
    path = save(state, tmp_path / "ddp.pt")
    target = trained_tiny(seed=2)
    report = load_pretrained(target, path, prefix="module.")
    assert report.complete and report.ignored == ("decoder.weight",)
    assert torch.equal(target.fc.weight, source.fc.weight)


def test_prefix_that_selects_nothing_is_named(tmp_path):
    path = save(trained_tiny().state_dict(), tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=r"w\.pt: no key starts with prefix 'module\.'"):
        load_pretrained(tiny(), path, prefix="module")


def assert_untouched(model, before):
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_siamese_file_without_prefix_names_the_mismatch_and_the_prefix(tmp_path):
    siamese = SiameseNetwork(trained_tiny())
    path = save(siamese.state_dict(), tmp_path / "model.pt")  # keeps the model's order
    target = trained_tiny(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    n = len(before)
    with pytest.raises(WeightsError) as caught:
        load_pretrained(target, path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: the weights do not match the model: 0 loaded; ")
    assert f"{n} missing (conv1.weight, bn1.weight, bn1.bias, and {n - 3} more)" in message
    assert f"{n} unexpected (encoder.conv1.weight, encoder.bn1.weight, " in message
    assert "look like the model's under prefix='encoder.'" in message
    assert message.endswith("pass strict=False to load the 0 that match")
    assert_untouched(target, before)
    assert isinstance(caught.value, ValueError)


def test_missing_keys_alone(tmp_path):
    state = trained_tiny().state_dict()
    del state["fc.bias"], state["layer2.0.conv2.weight"]
    path = save(state, tmp_path / "w.pt")
    target = trained_tiny(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    n = len(before)
    expected = (
        f"{path}: the weights do not match the model: {n - 2} loaded; "
        "2 missing (layer2.0.conv2.weight, fc.bias); "
        f"pass strict=False to load the {n - 2} that match"
    )
    with pytest.raises(WeightsError, match=f"^{re.escape(expected)}$"):
        load_pretrained(target, path)
    assert_untouched(target, before)


def test_unexpected_keys_alone(tmp_path):
    state = trained_tiny().state_dict()
    state.update({f"head.{i}.weight": torch.zeros(3) for i in range(5)})
    path = save(state, tmp_path / "w.safetensors")
    with pytest.raises(WeightsError) as caught:
        load_pretrained(tiny(), path)
    message = str(caught.value)
    assert "5 unexpected (head.0.weight, head.1.weight, head.2.weight, and 2 more)" in message
    assert "missing" not in message and "prefix" not in message


def test_shape_mismatches_are_named_with_both_shapes(tmp_path):
    path = save(trained_tiny(embedding_dim=16).state_dict(), tmp_path / "w.pt")
    target = trained_tiny(seed=2)  # embedding_dim 5
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError) as caught:
        load_pretrained(target, path)
    message = str(caught.value)
    assert (
        "2 of another shape (fc.weight (16, 8) in the file, (5, 8) in the model, "
        "fc.bias (16) in the file, (5) in the model)" in message
    )
    assert "missing" not in message and "unexpected" not in message
    assert_untouched(target, before)


def test_many_shape_mismatches_are_counted(tmp_path):
    path = save(trained_tiny(widths=(8, 16)).state_dict(), tmp_path / "w.pt")
    with pytest.raises(
        WeightsError, match=r"(\d+) of another shape \(conv1\.weight .*, and \d+ more\)"
    ):
        load_pretrained(tiny(), path)


def test_strict_false_loads_the_intersection_and_reports_the_rest(tmp_path):
    source = trained_tiny(embedding_dim=16)
    state = source.state_dict()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.ones(1)
    path = save(state, tmp_path / "w.safetensors")
    target = trained_tiny(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_pretrained(target, path, strict=False)
    assert report.missing == ("layer1.0.conv1.weight",)
    assert report.unexpected == ("extra.weight",)
    assert report.mismatched == (("fc.weight", (16, 8), (5, 8)), ("fc.bias", (16,), (5,)))
    assert not report.complete
    left_out = {"layer1.0.conv1.weight", "fc.weight", "fc.bias"}
    assert set(report.loaded) == set(before) - left_out
    after = target.state_dict()
    for key in before:
        expected = before[key] if key in left_out else source.state_dict()[key]
        assert torch.equal(after[key], expected), key
    assert report.summary().startswith(f"{len(report.loaded)} loaded; 1 missing")


def test_a_resnet18_state_dict_loads_but_its_classifier(tmp_path):
    shape = {"widths": (8, 16, 32, 64), "blocks": (2, 2, 2, 2), "stem": "imagenet"}
    source = ResNetEncoder(embedding_dim=1000, **shape)
    path = save(source.state_dict(), tmp_path / "resnet18.pth")
    target = ResNetEncoder(embedding_dim=128, **shape)
    report = load_pretrained(target, path, strict=False)
    assert [k for k, _, _ in report.mismatched] == ["fc.weight", "fc.bias"]
    assert len(report.loaded) == 120 and not report.missing and not report.unexpected
    assert torch.equal(target.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_batch_norm_step_counts_absent_from_old_files_are_not_missing(tmp_path):
    source = trained_tiny()
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    path = save(state, tmp_path / "old.pt")
    target = trained_tiny(seed=2)
    counts = [int(m.num_batches_tracked) for m in target.modules() if hasattr(m, "momentum")]
    report = load_pretrained(target, path)
    assert report.complete and report.missing == ()
    assert [int(m.num_batches_tracked) for m in target.modules() if hasattr(m, "momentum")] == (
        counts
    )
    x = rand(3, 3, 8, 8, seed=5)
    assert torch.equal(target(x), source(x))


def test_a_checkpoint_dict_needs_its_key(tmp_path):
    source = trained_tiny()
    path = save({"state_dict": source.state_dict(), "epoch": 90}, tmp_path / "checkpoint.pth")
    with pytest.raises(
        WeightsError,
        match=re.escape(
            f"{path} is not a state dict: 2 of its 2 entries are not named tensors "
            "(state_dict, epoch); pass key='state_dict' if the weights are under it"
        ),
    ):
        load_pretrained(tiny(), path)
    target = trained_tiny(seed=2)
    assert load_pretrained(target, path, key="state_dict").complete
    assert torch.equal(target.fc.weight, source.fc.weight)
    with pytest.raises(WeightsError, match=r"has no key 'model' \(its keys: state_dict, epoch\)"):
        load_pretrained(tiny(), path, key="model")


def test_a_file_holding_one_tensor_is_not_a_state_dict(tmp_path):
    path = save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(WeightsError, match=r"t\.pt holds a Tensor, not a state dict"):
        load_pretrained(tiny(), path)


class Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to build it."""


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": Payload()}, path)
    with pytest.raises(WeightsError) as caught:
        load_pretrained(tiny(), path)
    message = str(caught.value)
    assert message.startswith(f"weights file {path} is neither a safetensors file nor a PyTorch")
    assert "\n" not in message


@pytest.mark.parametrize(
    "content", [b"", b"not weights at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]
)
def test_unreadable_files_are_named(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=re.escape(f"weights file {path} is neither")) as caught:
        load_pretrained(tiny(), path)
    assert "\n" not in str(caught.value)


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(
        WeightsError, match=re.escape(f"weights file {tmp_path / 'no.pt'} does not exist")
    ):
        load_pretrained(tiny(), tmp_path / "no.pt")
    with pytest.raises(WeightsError, match=re.escape(f"weights file {tmp_path} is not a file")):
        load_pretrained(tiny(), tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": {"fc.weight": torch.zeros(1)}}, TypeError, "model must be a torch.nn.Module"),
        ({"path": 3}, TypeError, "path must be a str or a path"),
        ({"strict": "yes"}, TypeError, "strict must be a bool"),
        ({"prefix": ""}, ValueError, "prefix must be a non-empty str or None, got ''"),
        ({"prefix": 1}, TypeError, "prefix must be a str or None, got int 1"),
        ({"key": b"state_dict"}, TypeError, "key must be a str or None, got bytes"),
        ({"key": ""}, ValueError, "key must be a non-empty str"),
    ],
)
def test_load_rejects_bad_arguments(tmp_path, kwargs, error, match):
    arguments = {"model": tiny(), "path": save({}, tmp_path / "w.pt")}
    arguments.update(kwargs)
    model, path = arguments.pop("model"), arguments.pop("path")
    with pytest.raises(error, match=match):
        load_pretrained(model, path, **arguments)
