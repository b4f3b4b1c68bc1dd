"""``contrastkit evaluate RUN`` gives what ``train`` gives: the probes and the raw baseline.

On tiny generated data: ``evaluate RUN --json`` on the run's own test split reproduces
every test metric of ``metrics.json``, the k-NN and linear-probe accuracies and the
raw-input baseline (its metrics and accuracies); ``--data`` measures them on other
labelled data classified into the training classes; what cannot be measured (a pair
file, a flat folder, unseen classes, an open-set split, images too many to hold) is said
in one line, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import SMALL, call, make_features, make_pair_csv, train_quietly
from test_cli_augment import colour_images
from test_cli_open_set import make_faces

from contrastkit.app.evaluate import (
    embed_split,
    evaluate_probes,
    evaluate_raw,
    evaluate_run,
    in_classes_of,
    probes_skipped,
)
from contrastkit.app.run import load_run, read_data, run_splits
from contrastkit.data.readers import LabelledData

PROBES = ("knn_accuracy", "linear_probe_accuracy")
NO_LABELS = "the images have no labels (a flat folder; give class subfolders to measure it)"


def same_numbers(found, expected):
    """Two dicts of metrics alike: the same keys, ``None`` where the other has ``None``,
    and numbers equal to 1e-9 (``pytest.approx`` no longer takes ``None`` values)."""
    assert set(found) == set(expected), (sorted(found), sorted(expected))
    for key, value in expected.items():
        if value is None:
            assert found[key] is None, key
        else:
            assert found[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    return True


def faint_images(root, *, classes=4, per_class=12, size=12, seed=5):
    """RGB images whose classes differ by a faint tint under loud noise (accuracy < 1)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 200, size=(size, size, 3))
            pixels[..., c % 3] += 40 if c < 3 else 20
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / f"class{c}" / f"{i}.png")
    return root


def metrics_of(run):
    return json.loads((run / "metrics.json").read_text())


def evaluate_json(capsys, *argv):
    status, out, err = call(capsys, "evaluate", *argv, "--json")
    assert status == 0, err
    assert err == ""
    return json.loads(out)


def train(capsys, run, *options):
    status, _, err = call(capsys, "train", *SMALL, *options, "-o", run)
    assert status == 0, err
    return metrics_of(run)


def assert_reproduces(found, saved):
    """Every key of the run's test metrics, probes and raw baseline, to 1e-9."""
    raw = found.pop("raw_inputs")
    assert list(found) == list(saved["test"])  # the same keys, in the same order
    assert same_numbers(found, saved["test"])
    for key in PROBES:
        assert found[key] == pytest.approx(saved["probes"]["embedding"][key], rel=1e-9)
    expected = {**saved["raw_inputs"]["test"], **saved["probes"]["raw_inputs"]}
    assert list(raw) == list(expected)
    assert same_numbers(raw, expected)


@pytest.fixture(scope="module")
def faint(tmp_path_factory):
    return faint_images(tmp_path_factory.mktemp("faint") / "images")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, faint):
    run = tmp_path_factory.mktemp("runs") / "images"
    train_quietly("train", *SMALL, "--data", faint, "--image-size", "12", "-o", run)
    return run


def test_evaluate_reproduces_the_run_metrics_probes_and_baseline(capsys, image_run):
    saved = metrics_of(image_run)
    found = evaluate_json(capsys, image_run)
    # the data are hard enough that the numbers could differ: neither 0 nor 1 everywhere
    accuracies = [found[k] for k in PROBES] + [found["raw_inputs"][k] for k in PROBES]
    assert any(0.0 < a < 1.0 for a in accuracies), accuracies
    assert_reproduces(found, saved)


def test_evaluate_prints_the_probe_lines_and_the_baseline_block(capsys, image_run):
    saved = metrics_of(image_run)
    status, out, err = call(capsys, "evaluate", image_run)
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert (
        lines[0]
        == "evaluated on the run's test split (threshold chosen on the run's validation split)"
    )
    knn = f"{saved['test']['knn_accuracy']:.4f}"
    assert any(line.startswith("  k-NN accuracy ") and line.endswith(knn) for line in lines)
    assert any(line.startswith("  linear-probe accuracy ") for line in lines)
    raw = saved["raw_inputs"]["test"]
    baseline = [line for line in lines if line.startswith("raw inputs (baseline, no training): ")]
    assert baseline == [
        "raw inputs (baseline, no training): "
        f"ROC-AUC {raw['roc_auc']:.4f}, equal error rate {raw['eer']:.4f}, "
        f"accuracy at the threshold {raw['accuracy']:.4f}, "
        f"precision@1 {raw['precision_at_1']:.4f}, MAP@R {raw['map_at_r']:.4f}"
    ]
    probes = saved["probes"]
    assert lines[-1] == (
        f"raw inputs (baseline, k = {probes['k']}): "
        f"k-NN accuracy {probes['raw_inputs']['knn_accuracy']:.4f}, "
        f"linear-probe accuracy {probes['raw_inputs']['linear_probe_accuracy']:.4f}"
    )
    assert "not measurable:" not in out


def test_a_feature_run_reproduces_too(tmp_path, capsys):
    make_features(tmp_path)
    run = tmp_path / "run"
    saved = train(capsys, run, "--data", tmp_path / "features.npz")
    assert saved["raw_inputs"]["inputs"] == "vectors"
    assert_reproduces(evaluate_json(capsys, run), saved)


def test_evaluate_on_other_data_classifies_it_into_the_training_classes(
    tmp_path, capsys, image_run
):
    """``--data``: the run's training split is the memory; labels matched by class name.

    The other folder lacks ``class0``: its classes are numbered 0, 1, 2 there and 1, 2, 3
    in training, so the labels must be renumbered for any accuracy to mean something.
    """
    other = tmp_path / "other"
    faint_images(other, classes=4, per_class=10, seed=11)
    shutil.rmtree(other / "class0")
    found = evaluate_json(capsys, image_run, "--data", other)
    # computed here from the library, with labels renumbered into the training classes
    config, model = load_run(image_run)
    train_split, val, _, _ = run_splits(config, read_data(config, channels=3))
    new = read_data(dataclasses.replace(config, data=str(other)), channels=3)
    assert isinstance(new, LabelledData) and new.class_names == ["class1", "class2", "class3"]
    relabelled, why = in_classes_of(train_split, new)
    assert why is None and relabelled.class_names == train_split.class_names
    assert torch.equal(relabelled.labels, new.labels + 1)
    evaluation = evaluate_run(model, config, val, new)
    train_emb = embed_split(model, train_split)
    probes = evaluate_probes(config, train_split, relabelled, train_emb, evaluation.test_embeddings)
    raw, _ = evaluate_raw(config, train_split, val, new)
    assert raw is not None
    raw_inputs = found.pop("raw_inputs")
    assert list(found) == [*evaluation.test, *PROBES]
    assert same_numbers(found, {**evaluation.test, **probes.embedding})
    assert same_numbers(raw_inputs, {**raw.test, **probes.raw_inputs})
    # scored against the labels as read (not renumbered) the raw k-NN would be another number
    wrong = evaluate_probes(config, train_split, new, train_emb, evaluation.test_embeddings)
    assert wrong.raw_inputs["knn_accuracy"] != raw_inputs["knn_accuracy"]
    status, out, _ = call(capsys, "evaluate", image_run, "--data", other)
    assert status == 0 and out.startswith(f"evaluated on {other} (")
    knn = f"{found['knn_accuracy']:.4f}"
    assert any(
        line.startswith("  k-NN accuracy ") and line.endswith(knn) for line in out.splitlines()
    )
    assert "raw inputs (baseline, no training): ROC-AUC" in out
    assert f"raw inputs (baseline, k = {probes.k}): k-NN accuracy" in out


def test_other_data_of_classes_never_trained_on_has_no_probes_and_says_why(
    tmp_path, capsys, image_run
):
    other = tmp_path / "strangers"
    faint_images(other, classes=3, per_class=6, seed=2)
    (other / "class2").rename(other / "class9")
    found = evaluate_json(capsys, image_run, "--data", other)
    assert not set(PROBES) & set(found)
    assert "precision_at_1" in found  # retrieval needs no training class
    assert not set(PROBES) & set(found["raw_inputs"])
    assert found["raw_inputs"]["precision_at_1"] is not None
    status, out, err = call(capsys, "evaluate", image_run, "--data", other)
    assert status == 0 and err == ""
    assert (
        "  k-NN and linear-probe accuracy: not measurable: 1 of the 3 test classes "
        "('class9') are not among the training classes (matched by name), so no classifier "
        "of training classes can name them"
    ) in out.splitlines()


def test_in_classes_of_renumbers_by_name_or_says_which_are_unknown():
    train = LabelledData(torch.zeros(4, 2), torch.tensor([0, 1, 2, 1]), ["a", "b", "c"],
                         "vectors", "train")  # fmt: skip
    test = LabelledData(torch.zeros(3, 2), torch.tensor([0, 1, 1]), ["b", "c"], "vectors", "t")
    relabelled, why = in_classes_of(train, test)
    assert why is None and relabelled.labels.tolist() == [1, 2, 2]
    assert relabelled.class_names == ["a", "b", "c"]
    # a class named in training but with no training sample is not one the probe learnt
    train_without_c = LabelledData(torch.zeros(2, 2), torch.tensor([0, 1]), ["a", "b", "c"],
                                   "vectors", "train")  # fmt: skip
    same, why = in_classes_of(train_without_c, test)
    assert same is test and why is not None and "1 of the 2 test classes ('c')" in why
    unlabelled = LabelledData(torch.zeros(3, 2), torch.zeros(3).long(), [], "images", "flat")
    assert in_classes_of(train, unlabelled) == (unlabelled, None)


def test_a_pair_file_run_has_the_raw_baseline_but_no_probes(tmp_path, capsys):
    images = colour_images(tmp_path / "images", size=8)
    pairs = make_pair_csv(tmp_path, images)
    run = tmp_path / "run"
    saved = train(capsys, run, "--data", pairs, "--image-size", "8")
    why = "they need labelled samples, and the run has pairs"
    assert saved["probes"]["skipped"] == why
    found = evaluate_json(capsys, run)
    raw = found.pop("raw_inputs")
    assert same_numbers(found, saved["test"])
    assert same_numbers(raw, saved["raw_inputs"]["test"])
    assert raw["roc_auc"] is not None and not set(PROBES) & set(raw)
    status, out, _ = call(capsys, "evaluate", run)
    assert status == 0
    assert f"  k-NN and linear-probe accuracy: not measurable: {why}" in out.splitlines()
    assert "raw inputs (baseline, no training): ROC-AUC" in out
    assert "raw inputs (baseline, k = " not in out


def test_a_flat_folder_ntxent_run_says_what_it_cannot_measure(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in colour_images(tmp_path / "labelled").rglob("*.png"):
        path.rename(flat / f"{path.parent.name}-{path.name}")
    run = tmp_path / "run"
    saved = train(capsys, run, "--data", flat, "--image-size", "16", "--loss", "ntxent")
    found = evaluate_json(capsys, run)
    raw_why = "the images have no labels (a flat folder): nothing to measure"
    assert found == {"raw_inputs": {"skipped": raw_why}}
    assert saved["test"] == {} and saved["raw_inputs"] == {"skipped": raw_why}
    assert saved["probes"]["skipped"] == NO_LABELS
    status, out, err = call(capsys, "evaluate", run)
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert f"  k-NN and linear-probe accuracy: not measurable: {NO_LABELS}" in lines
    assert f"raw inputs (baseline): not measured: {raw_why}" in lines
    assert any(line.startswith("  retrieval: not measurable: the images have no labels")
               for line in lines)  # fmt: skip


def test_an_open_set_run_says_why_it_has_no_probes(tmp_path, capsys):
    faces = make_faces(tmp_path / "faces")
    run = tmp_path / "run"
    saved = train(capsys, run, "--data", faces, "--split-by", "classes")
    train_split, _, test, _ = run_splits(*_config_and_data(run))
    why = probes_skipped(train_split, test, "classes")
    assert why is not None and "open-set" in why and saved["probes"]["skipped"] == why
    found = evaluate_json(capsys, run)
    raw = found.pop("raw_inputs")
    assert not set(PROBES) & (set(found) | set(raw))
    assert same_numbers(found, saved["test"])
    assert same_numbers(raw, saved["raw_inputs"]["test"])
    status, out, _ = call(capsys, "evaluate", run)
    assert status == 0
    assert f"  k-NN and linear-probe accuracy: not measurable: {why}" in out.splitlines()


def _config_and_data(run):
    config, _ = load_run(run)
    return config, read_data(config, channels=3)


def test_images_too_many_to_hold_have_no_raw_baseline_and_it_is_said(tmp_path, capsys, monkeypatch):
    from contrastkit.app import evaluate

    images = colour_images(tmp_path / "images", per_class=12)
    run = tmp_path / "run"
    saved = train(capsys, run, "--data", images, "--image-size", "16", "--image-loading", "lazy")
    monkeypatch.setattr(evaluate, "LAZY_ABOVE_BYTES", 16 * 16 * 3 * 4 * 4)  # 4 images
    found = evaluate_json(capsys, run)
    lazy = "the images were read lazily and are too many to hold in memory"
    assert found.pop("raw_inputs") == {"skipped": lazy}
    # the embedding is still measured, probes included, as at training time
    assert same_numbers(found, saved["test"])
    assert set(PROBES) <= set(found)
    status, out, _ = call(capsys, "evaluate", run)
    assert status == 0
    lines = out.splitlines()
    assert f"raw inputs (baseline): not measured: {lazy}" in lines
    assert f"raw inputs (baseline): no k-NN or linear probe on the raw inputs: {lazy}" in lines
    assert not any(line.startswith("raw inputs (baseline, k = ") for line in lines)
