"""Self-supervised runs (``--loss ntxent``) measured as the field measures them.

On tiny generated image folders: with class subfolders, training reads no label and the
report gives the k-NN and linear-probe accuracies (and the raw pixels'); without, the
embedding map and nearest-neighbour examples.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from test_cli import SMALL, same_weights, train_whole_and_killed, weights
from test_cli_augment import colour_images

import contrastkit.app.run as run_module
from contrastkit.app.evaluate import neighbour_examples
from contrastkit.app.run import load_run, read_data, run_splits
from contrastkit.evaluation import knn_accuracy, linear_probe_accuracy
from contrastkit.training import embed

NTXENT = [*SMALL, "--image-size", "16", "--loss", "ntxent"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return colour_images(tmp_path_factory.mktemp("ssl") / "images")


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl-flat")
    folder = root / "flat"
    folder.mkdir()
    for path in colour_images(root / "labelled").rglob("*.png"):
        path.rename(folder / f"{path.parent.name}-{path.name}")
    return folder


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory, labelled):
    run = tmp_path_factory.mktemp("ssl-run") / "run"
    status = run_module_main(["train", *NTXENT, "--data", labelled, "-o", run])
    assert status[0] == 0, status[2]
    return run, status[1]


def run_module_main(argv):
    import contextlib
    import io

    from contrastkit.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def test_a_labelled_ntxent_run_reports_knn_and_linear_probe_accuracy(labelled_run):
    run, out = labelled_run
    metrics = json.loads((run / "metrics.json").read_text())
    probes = metrics["probes"]
    assert (probes["k"], probes["temperature"]) == (min(20, probes["train"]), 0.07)
    for where in (probes["embedding"], probes["raw_inputs"]):
        assert set(where) == {"knn_accuracy", "linear_probe_accuracy"}
        assert all(0.0 <= v <= 1.0 for v in where.values())
    for key in ("knn_accuracy", "linear_probe_accuracy"):
        assert metrics["test"][key] == probes["embedding"][key]
    # the numbers are those of the saved network on the run's own split, recomputed
    config, model = load_run(run)
    train, _, test, _ = run_splits(config, read_data(config, channels=3))
    reference = load_file(str(run / "reference.safetensors"))
    assert torch.equal(reference["labels"], train.labels)
    test_emb = embed(model, test.inputs)
    k = probes["k"]
    assert metrics["test"]["knn_accuracy"] == pytest.approx(
        knn_accuracy(reference["embeddings"], train.labels, test_emb, test.labels, k=k)
    )
    assert metrics["test"]["linear_probe_accuracy"] == pytest.approx(
        linear_probe_accuracy(reference["embeddings"], train.labels, test_emb, test.labels)
    )
    raw_train, raw_test = train.inputs.flatten(1).double(), test.inputs.flatten(1).double()
    assert probes["raw_inputs"]["knn_accuracy"] == pytest.approx(
        knn_accuracy(
            (raw_train - raw_train.mean(0)) / raw_train.std(0),
            train.labels,
            (raw_test - raw_train.mean(0)) / raw_train.std(0),
            test.labels,
            k=k,
        )
    )
    report = (run / "report.html").read_text()
    assert "Classification by the frozen embedding" in report
    assert "exp(s / 0.07)" in report and "the raw inputs (baseline)" in report
    assert "alt='neighbours'" in report
    assert "k-NN accuracy" in out and "raw inputs (baseline, k = " in out
    shown = metrics["neighbours"]
    assert shown["k"] == 5 and len(shown["queries"]) == min(6, metrics["data"]["test"])
    files = [q["query"] for q in shown["queries"]]
    assert all(f.startswith("class") and f.endswith(".png") for f in files)
    for query in shown["queries"]:
        sims = [n["similarity"] for n in query["neighbours"]]
        assert sims == sorted(sims, reverse=True)
    assert (run / "figures" / "neighbours.png").is_file()


@pytest.mark.slow
def test_ntxent_training_reads_no_label(tmp_path, labelled, labelled_run, monkeypatch):
    """Shuffling the training labels after the split changes nothing the run trains."""
    plain = labelled_run[0]

    def shuffled_splits(config, data):
        train, val, test, anomalies = run_splits(config, data)
        permuted = train.labels[
            torch.randperm(len(train), generator=torch.Generator().manual_seed(5))
        ]
        assert not torch.equal(permuted, train.labels)
        return dataclasses.replace(train, labels=permuted), val, test, anomalies

    monkeypatch.setattr(run_module, "run_splits", shuffled_splits)
    other = tmp_path / "shuffled"
    assert run_module_main(["train", *NTXENT, "--data", labelled, "-o", other])[0] == 0
    assert same_weights(plain, other)
    # ... while the supervised loss on the same shuffled labels trains other weights
    supervised = [*SMALL, "--image-size", "16", "--loss", "supcon", "--data", labelled]
    assert run_module_main(["train", *supervised, "-o", tmp_path / "sup-shuffled"])[0] == 0
    monkeypatch.undo()
    assert run_module_main(["train", *supervised, "-o", tmp_path / "sup-plain"])[0] == 0
    assert not same_weights(tmp_path / "sup-plain", tmp_path / "sup-shuffled")


def test_a_flat_ntxent_run_shows_its_map_and_nearest_neighbours(tmp_path, flat):
    run = tmp_path / "run"
    status, out, err = run_module_main(["train", *NTXENT, "--data", flat, "-o", run])
    assert status == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert "no labels" in metrics["probes"]["skipped"]
    assert "embedding" not in metrics["probes"]
    assert "knn_accuracy" not in metrics["test"]
    queries = metrics["neighbours"]["queries"]
    assert len(queries) == min(6, metrics["data"]["test"])
    names = {p.name for p in flat.iterdir()}
    assert all(q["query"] in names for q in queries)
    assert all(n["file"] in names for q in queries for n in q["neighbours"])
    assert {q["query"] for q in queries}.isdisjoint(
        n["file"] for q in queries for n in q["neighbours"]
    )
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"embedding_unlabelled.png", "neighbours.png"} <= figures
    assert "roc.png" not in figures and "embedding.png" not in figures
    report = (run / "report.html").read_text()
    assert "alt='embedding_unlabelled'" in report and "alt='neighbours'" in report
    assert "k-NN and linear-probe accuracy not measured: the images have no labels" in report
    assert "k-NN and linear-probe accuracy: not measurable" in out
    assert "test: " not in out  # nothing to show on that line


def test_neighbour_examples_are_the_most_similar_training_images():
    from contrastkit.data.readers import LabelledData

    g = torch.Generator().manual_seed(0)
    train = LabelledData(
        torch.rand(9, 1, 4, 4, generator=g), torch.zeros(9).long(), [], "images", "x"
    )
    test = LabelledData(
        torch.rand(4, 1, 4, 4, generator=g), torch.zeros(4).long(), [], "images", "x"
    )
    train_emb, test_emb = torch.randn(9, 3, generator=g), torch.randn(4, 3, generator=g)
    shown = neighbour_examples(train, test, train_emb, test_emb, seed=1, queries=3, k=4)
    assert shown is not None and shown.query_classes is None
    assert shown.neighbours.shape == (3, 4, 1, 4, 4)
    chosen = [int(name[1:]) for name in shown.query_names]
    for row, q in enumerate(chosen):
        assert torch.equal(shown.queries[row], test.inputs[q])
        sims = torch.nn.functional.cosine_similarity(test_emb[q : q + 1], train_emb)
        best = sims.argsort(descending=True)[:4]
        assert [f"#{j}" for j in best.tolist()] == shown.neighbour_names[row]
        assert torch.allclose(shown.similarities[row], sims[best], atol=1e-6)
    vectors = dataclasses.replace(train, inputs=torch.rand(9, 5), kind="vectors")
    assert neighbour_examples(vectors, test, train_emb, test_emb, seed=1) is None


def test_the_projection_head_is_trained_checkpointed_and_dropped(labelled_run):
    """SimCLR's head: in the checkpoints (for --resume), never in the saved network."""
    run, _ = labelled_run
    saved = load_file(str(run / "model.safetensors"))
    assert saved and not any(k.startswith(("head.", "network.")) for k in saved)
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    state = load_file(str(checkpoint / "model.safetensors"))
    assert {k for k in state if not k.startswith("head.")} == {f"network.{k}" for k in saved}
    assert any(k.startswith("head.1.running_var") for k in state)  # batch-normalized
    assert all(torch.equal(state[f"network.{k}"], saved[k]) for k in saved)


def test_validation_metrics_are_those_of_the_embedding_before_the_head(labelled_run):
    from contrastkit.app.build import projected

    config, model = load_run(labelled_run[0])
    _, val, _, _ = run_splits(config, read_data(config, channels=3))
    evaluate = run_module._evaluator(config, val)
    through = projected(config, model)
    assert through is not model and through.network is model
    assert evaluate(through) == evaluate(model)
    assert set(evaluate(model)) == {"val_roc_auc", "val_precision_at_1"}


def test_a_killed_ntxent_run_resumes_with_its_head_bit_identically(
    tmp_path, capsys, monkeypatch, labelled
):
    whole, killed = train_whole_and_killed(
        capsys, monkeypatch, tmp_path, [*NTXENT, "--epochs", "3", "--data", labelled]
    )
    assert same_weights(whole, killed)
    last = [
        sorted((run / "checkpoints").iterdir())[-1] / "model.safetensors" for run in (whole, killed)
    ]
    heads = [
        {k: v for k, v in load_file(str(path)).items() if k.startswith("head.")} for path in last
    ]
    assert heads[0] and heads[0].keys() == heads[1].keys()
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_projection_is_chosen_and_refused_where_it_applies(tmp_path, labelled, labelled_run):
    none = tmp_path / "none"
    status, _, err = run_module_main(
        ["train", *NTXENT, "--data", labelled, "--projection", "none", "-o", none]
    )
    assert status == 0, err
    checkpoint = sorted((none / "checkpoints").iterdir())[-1] / "model.safetensors"
    assert not any(k.startswith("head.") for k in load_file(str(checkpoint)))
    assert not same_weights(none, labelled_run[0])
    # a supervised loss can be trained through a head too (the SupCon paper's setting)
    supcon = tmp_path / "supcon"
    options = [*SMALL, "--image-size", "16", "--loss", "supcon", "--projection", "mlp"]
    status, _, err = run_module_main(["train", *options, "--data", labelled, "-o", supcon])
    assert status == 0, err
    assert load_file(str(supcon / "model.safetensors")).keys() == weights(none).keys()


@pytest.mark.parametrize(
    ("loss", "kind", "resume", "given", "expected"),
    [
        ("ntxent", "images", False, "", "mlp"),
        ("ntxent", "images", True, "", "none"),  # made before the option: no head
        ("ntxent", "vectors", False, "", "none"),
        ("contrastive", "images", False, "", "none"),
        ("contrastive", "vectors", False, "mlp", "mlp"),
        ("ntxent", "images", False, "none", "none"),
    ],
)
def test_resolve_projection(loss, kind, resume, given, expected):
    from contrastkit.app.build import resolve_projection
    from contrastkit.app.config import RunConfig

    config = RunConfig(loss=loss, projection=given).checked()
    assert resolve_projection(config, kind, resume=resume) == expected


def test_text_takes_no_projection_head():
    from contrastkit.app.build import resolve_projection
    from contrastkit.app.config import ConfigError, RunConfig

    assert resolve_projection(RunConfig().checked(), "text", resume=False) == ""
    with pytest.raises(ConfigError, match="projection mlp applies to image data"):
        resolve_projection(RunConfig(projection="mlp").checked(), "text", resume=False)
    # refused with the config, before any text model is read or built
    with pytest.raises(ConfigError, match="projection does not apply to text data"):
        RunConfig(data="lee", projection="mlp").checked()


def test_an_unfinished_projected_run_is_read_from_its_checkpoint_without_the_head(
    tmp_path, capsys, monkeypatch, labelled
):
    """evaluate, embed and --init-weights read a killed NT-Xent run's last checkpoint."""
    from test_cli import call, kill_after_first_epoch

    run = tmp_path / "killed"
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, err = call(capsys, "train", *NTXENT, "--data", labelled, "-o", run)
    assert status == 130 and not (run / "model.safetensors").exists()
    _, model = load_run(run)
    state = load_file(str(run / "checkpoints" / "epoch-0001" / "model.safetensors"))
    own = model.state_dict()
    assert own and all(torch.equal(own[k], state[f"network.{k}"]) for k in own)
    status, out, err = call(capsys, "evaluate", run, "--json")
    assert status == 0, err
    assert 0 <= json.loads(out)["precision_at_1"] <= 1
    # its checkpoint can start another run's encoder (keys under network.encoder.)
    other = tmp_path / "from-checkpoint"
    checkpoint = run / "checkpoints" / "epoch-0001" / "model.safetensors"
    status, _, err = call(
        capsys, "train", *SMALL, "--image-size", "16", "--data", labelled,
        "--init-weights", checkpoint, "-o", other,
    )  # fmt: skip
    assert status == 0, err
