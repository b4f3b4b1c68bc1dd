"""``contrastkit train`` on text tables, and evaluate / embed of text encoders.

Tiny everything: a BERT of width 16 and one layer, a vocabulary of the training texts,
60 rows written here. Each kind of table trains with its default loss end to end; a
killed run resumes to the same weights; micro-batches train the model the whole batch
trains; a broken pretrained folder is one line naming it, with nothing written.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")  # the text extra

from test_cli import (
    assert_one_line_error,
    call,
    kill_after_first_epoch,
    relative_difference,
    same_weights,
    snapshot,
)

from contrastkit.app.cli import main
from contrastkit.app.config import ConfigError, RunConfig, text_kind

TINY = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "3",
    "--batch-size",
    "8",
    "--text-width",
    "16",
    "--text-layers",
    "1",
    "--text-heads",
    "2",
    "--vocab-size",
    "200",
    "--max-length",
    "24",
    "--quiet",
]
SHORT = ["--epochs", "1", "--steps-per-epoch", "2", *TINY[4:]]  # one epoch of 2 steps
SUBJECTS = ["the cat", "a dog", "the man", "a woman", "the child", "the bird", "a horse"]
VERBS = ["eats", "runs", "sleeps", "plays", "sings", "jumps", "reads", "cooks"]
PLACES = ["in the park", "at home", "on the table", "in the kitchen", "by the river"]


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)}"


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    """One table of each kind (CSV, TSV, JSONL, CSV), 60 rows, and a text file."""
    folder = tmp_path_factory.mktemp("text-tables")
    rng = random.Random(0)
    pairs = []
    for _ in range(60):
        a, b = _sentence(rng), _sentence(rng)
        overlap = len(set(a.split()) & set(b.split())) / len(set(a.split()) | set(b.split()))
        pairs.append((a, b, round(5 * overlap, 2)))
    with (folder / "sts.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "score"])
        writer.writerows(pairs)
    with (folder / "pairs.tsv").open("w") as handle:
        handle.write("sentence1\tsentence2\tlabel\n")
        handle.writelines(f"{a}\t{b}\t{int(s > 1.5)}\n" for a, b, s in pairs)
    with (folder / "nli.jsonl").open("w") as handle:
        for _ in range(60):
            s, v, p = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(PLACES)
            row = {"anchor": f"{s} {v} {p}", "positive": f"{s} {v}", "negative": _sentence(rng)}
            handle.write(json.dumps(row) + "\n")
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(60):
            verb = rng.choice(VERBS[:4])
            writer.writerow([f"{rng.choice(SUBJECTS)} {verb} {rng.choice(PLACES)}", verb])
    (folder / "lines.txt").write_text("the cat eats at home\na dog runs by the river\n")
    return folder


KINDS = {
    "sts.csv": ("cosine", ["val_spearman", "val_pearson"], ["spearman", "pearson"]),
    "pairs.tsv": ("contrastive", ["val_roc_auc"], ["roc_auc", "eer", "accuracy", "threshold"]),
    "nli.jsonl": ("infonce", ["val_mrr_at_10"], ["mrr_at_10", "recall_at_1", "recall_at_10"]),
    "labels.csv": ("supcon", ["val_precision_at_1"], ["precision_at_1", "map_at_r"]),
}
SECTIONS = {
    "sts.csv": "Semantic similarity (test pairs)",
    "pairs.tsv": "Verification (test pairs)",
    "nli.jsonl": "Retrieval (test anchors)",
    "labels.csv": "Retrieval (test samples",
}


@pytest.fixture(scope="module")
def runs(tables, tmp_path_factory) -> dict[str, Path]:
    """A finished run of each table with its default loss."""
    folder = tmp_path_factory.mktemp("text-runs")
    out = {}
    for name in KINDS:
        run = folder / name.replace(".", "-")
        status = main([str(a) for a in ("train", "--data", tables / name, *TINY, "-o", run)])
        assert status == 0
        out[name] = run
    return out


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_trains_with_its_default_loss_and_reports_its_metrics(runs, name) -> None:
    run = runs[name]
    loss, history_keys, test_keys = KINDS[name]
    config = (run / "config.toml").read_text()
    assert f'loss = "{loss}"' in config
    assert "embedding_dim = 16" in config and "max_length = 24" in config
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    for key in ["train_loss", "val_loss", *history_keys]:
        assert all(np.isfinite(r[key]) for r in metrics["history"]), key
    for key in test_keys:
        assert -1.0 <= metrics["test"][key] <= 1.0, key
    assert any("trained from nothing" in n and "training texts only" in n for n in metrics["notes"])
    page = (run / "report.html").read_text()
    assert SECTIONS[name] in page
    assert (run / "figures" / "val_metrics.png").is_file()
    for file in ("config.json", "tokenizer.json", "model.safetensors", "contrastkit-text.json"):
        assert (run / "text-model" / file).is_file()
    if name == "sts.csv":
        assert (run / "figures" / "similarity.png").is_file()
        assert any("[0, 5] (inferred from the scores) onto [-1, 1]" in n for n in metrics["notes"])
    if name == "nli.jsonl":
        assert any(
            "own 1 hard negative" in n and "never each other's" in n for n in metrics["notes"]
        )


def test_the_saved_text_model_is_the_run_s_final_encoder(runs, tables, tmp_path, capsys) -> None:
    """embed by the run and by its text-model folder give the same embeddings."""
    run = runs["sts.csv"]
    by_run, by_folder = tmp_path / "run.npy", tmp_path / "folder.npy"
    status, out, err = call(capsys, "embed", run, tables / "lines.txt", "-o", by_run)
    assert status == 0, err
    assert "wrote 2 embeddings of size 16" in out
    status, _, err = call(
        capsys, "embed", "--text-model", run / "text-model", tables / "lines.txt", "-o", by_folder
    )
    assert status == 0, err
    np.testing.assert_allclose(np.load(by_run), np.load(by_folder), rtol=1e-5, atol=1e-6)


def test_evaluate_a_text_run_and_a_model_with_no_run(runs, tables, capsys) -> None:
    run = runs["sts.csv"]
    saved = json.loads((run / "metrics.json").read_text())["test"]
    status, out, err = call(capsys, "evaluate", run, "--json")
    assert status == 0, err
    assert json.loads(out) == pytest.approx(saved)
    status, out, err = call(
        capsys, "evaluate", "--text-model", run / "text-model", "--data", tables / "sts.csv"
    )
    assert status == 0, err
    assert "Spearman" in out and "Pearson" in out
    status, out, err = call(
        capsys, "evaluate", "--text-model", run / "text-model", "--data", tables / "pairs.tsv"
    )
    assert status == 0, err
    assert "ROC-AUC" in out and "chosen on the test pairs themselves" in out
    status, _, err = call(capsys, "evaluate", run, "--data", tables / "nli.jsonl")
    assert_one_line_error(status, err, "nli.jsonl", "scored pairs")


def test_a_killed_text_run_resumes_to_the_weights_of_an_uninterrupted_one(
    runs, tables, tmp_path, capsys, monkeypatch
) -> None:
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, _ = call(capsys, "train", "--data", tables / "sts.csv", *TINY, "-o", run)
    assert status == 130
    assert not (run / "model.safetensors").exists()
    status, _, err = call(capsys, "train", "--resume", run)
    assert status == 0, err
    assert same_weights(run, runs["sts.csv"])
    history = json.loads((run / "metrics.json").read_text())["history"]
    whole = json.loads((runs["sts.csv"] / "metrics.json").read_text())["history"]
    assert [r["val_spearman"] for r in history] == [r["val_spearman"] for r in whole]


def test_a_bag_of_words_from_nothing_trains_embeds_and_resumes(
    tables, tmp_path, capsys, monkeypatch
) -> None:
    """--text-layers 0: a word bag, saved, embedded from its folder, resumed exactly."""
    args = ["--data", tables / "labels.csv", *TINY, "--text-layers", "0"]
    whole, run = tmp_path / "whole", tmp_path / "run"
    status, _, err = call(capsys, "train", *args, "-o", whole)
    assert status == 0, err
    notes = json.loads((whole / "metrics.json").read_text())["notes"]
    assert any("a bag of words" in n and "no transformer layer" in n for n in notes)
    config = json.loads((whole / "text-model" / "config.json").read_text())
    assert config["model_type"] == "contrastkit-word-bag"
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, _ = call(capsys, "train", *args, "-o", run)
    assert status == 130
    status, _, err = call(capsys, "train", "--resume", run)
    assert status == 0, err
    assert same_weights(run, whole)
    by_run, by_folder = tmp_path / "run.npy", tmp_path / "folder.npy"
    for source, out in ((whole, by_run), ("--text-model", by_folder)):
        given = [source] if source == whole else [source, whole / "text-model"]
        status, _, err = call(capsys, "embed", *given, tables / "lines.txt", "-o", out)
        assert status == 0, err
    np.testing.assert_allclose(np.load(by_run), np.load(by_folder), rtol=1e-5, atol=1e-6)


def test_micro_batches_of_tokens_train_the_model_the_whole_batch_trains(
    tables, tmp_path, capsys, monkeypatch
) -> None:
    """Without dropout (whose masks are drawn per forward pass, so per micro-batch)."""
    from contrastkit.models import text

    small = text.small_transformer
    monkeypatch.setattr(text, "small_transformer", lambda *a, **k: small(*a, **k, dropout=0.0))
    argv = ["train", "--data", tables / "nli.jsonl", *SHORT]
    assert call(capsys, *argv, "-o", tmp_path / "whole")[0] == 0
    status, _, err = call(capsys, *argv, "--micro-batch", "3", "-o", tmp_path / "cached")
    assert status == 0, err
    assert relative_difference(tmp_path / "whole", tmp_path / "cached") < 5e-4
    notes = json.loads((tmp_path / "cached" / "metrics.json").read_text())["notes"]
    assert any("gradient caching: the encoder embedded 3 rows at a time" in n for n in notes)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("nli.jsonl", ["--loss", "triplet"]),
        ("nli.jsonl", ["--symmetric"]),
        ("labels.csv", ["--loss", "infonce", "--memory-size", "16"]),
    ],
    ids=["tuples-triplet", "tuples-symmetric", "labelled-infonce-memory"],
)
def test_the_other_losses_of_each_kind_train(tables, tmp_path, capsys, name, extra) -> None:
    run = tmp_path / "run"
    status, _, err = call(capsys, "train", "--data", tables / name, *SHORT, *extra, "-o", run)
    assert status == 0, err
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert all(np.isfinite(r["train_loss"]) for r in history)


def _pretrained(tables: Path, folder: Path) -> Path:
    from contrastkit.models import TextEncoder, save_text_model
    from contrastkit.models.text import small_transformer, train_tokenizer

    lines = (tables / "lines.txt").read_text().splitlines() * 3
    tokenizer = train_tokenizer(lines + SUBJECTS + VERBS + PLACES, vocab_size=100)
    torch.manual_seed(0)
    encoder = TextEncoder(small_transformer(len(tokenizer), hidden=16, layers=1, max_length=32))
    return save_text_model(folder, encoder, tokenizer, 24)


def test_a_pretrained_folder_is_fine_tuned_and_saved_with_the_run(tables, tmp_path, capsys) -> None:
    model = _pretrained(tables, tmp_path / "model")
    run = tmp_path / "run"
    argv = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--quiet"]
    status, _, err = call(
        capsys, "train", "--data", tables / "pairs.tsv", "--text-model", model, *argv, "-o", run
    )
    assert status == 0, err
    config = (run / "config.toml").read_text()
    assert f'text_model = "{model.resolve()}"' in config and "max_length = 24" in config
    notes = json.loads((run / "metrics.json").read_text())["notes"]
    assert any(f"fine-tuned from {model.resolve()}" in n for n in notes)
    assert (run / "text-model" / "tokenizer.json").is_file()


@pytest.mark.parametrize("damage", ["config", "tokenizer"])
def test_a_broken_pretrained_folder_is_one_line_naming_it_and_nothing_is_written(
    tables, tmp_path, capsys, damage
) -> None:
    model = _pretrained(tables, tmp_path / "model")
    if damage == "config":
        (model / "config.json").write_text("{not json")
        named = "config.json"
    else:
        for file in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
            (model / file).unlink(missing_ok=True)
        named = "no tokenizer"
    before = snapshot(tmp_path)
    run = tmp_path / "run"
    status, _, err = call(
        capsys, "train", "--data", tables / "sts.csv", "--text-model", model, *TINY[:6], "-o", run
    )
    assert_one_line_error(status, err, model, named)
    assert not run.exists() and snapshot(tmp_path) == before
    out = tmp_path / "out.npy"
    status, _, err = call(capsys, "embed", "--text-model", model, tables / "lines.txt", "-o", out)
    assert_one_line_error(status, err, named)
    status, _, err = call(capsys, "evaluate", "--text-model", model, "--data", tables / "sts.csv")
    assert_one_line_error(status, err, named)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "extra", "named"),
    [
        ("sts.csv", ["--loss", "supcon"], ["loss 'supcon'", "scored pairs", "cosine"]),
        ("nli.jsonl", ["--memory-size", "8"], ["--memory-size", "hard negatives"]),
        ("sts.csv", ["--score-range", "1,3"], ["score_range [1, 3]", "outside"]),
        ("pairs.tsv", ["--score-range", "0,1"], ["--score-range", "scored pairs"]),
        ("labels.csv", ["--hidden", "8"], ["--hidden", "text_width"]),
        ("sts.csv", ["--embedding-dim", "8"], ["embedding_dim 8", "width, 16"]),
        ("sts.csv", ["--test-data", "nli.jsonl"], ["nli.jsonl", "same kind"]),
        ("labels.csv", ["--loss", "cosine"], ["loss 'cosine'", "labelled texts"]),
        ("labels.csv", ["--text-layers", "-1"], ["text_layers must be >= 0", "-1"]),
    ],
)
def test_bad_text_options_are_one_line_before_anything_is_written(
    tables, tmp_path, capsys, name, extra, named
) -> None:
    extra = [str(tables / e) if e.endswith(".jsonl") else e for e in extra]
    run = tmp_path / "run"
    status, _, err = call(capsys, "train", "--data", tables / name, *TINY, *extra, "-o", run)
    assert_one_line_error(status, err, *named)
    assert not run.exists()


def test_text_options_on_other_data_and_a_triplet_without_negatives(
    tables, tmp_path, capsys
) -> None:
    status, _, err = call(capsys, "train", "--pooling", "cls", "-o", tmp_path / "run")
    assert_one_line_error(status, err, "--pooling", "text data")
    status, _, err = call(capsys, "train", "--loss", "cosine", "-o", tmp_path / "run")
    assert_one_line_error(status, err, "cosine", "scored text pairs")
    no_negatives = tmp_path / "ap.csv"
    no_negatives.write_text("anchor,positive\n" + "".join(f"a{i},p{i}\n" for i in range(20)))
    status, _, err = call(
        capsys, "train", "--data", no_negatives, *TINY, "--loss", "triplet", "-o", tmp_path / "r"
    )
    assert_one_line_error(status, err, "negative column")
    assert not (tmp_path / "run").exists() and not (tmp_path / "r").exists()


def test_text_tables_are_told_from_feature_and_pair_files_by_their_columns(tmp_path) -> None:
    cases = {
        "features.csv": ("label,x1,x2\na,1,2\n", None),
        "pairs.csv": ("left,right,label\na.png,b.png,1\n", None),
        "sts.csv": ("sentence1,sentence2,score\na,b,1\n", "scored_pairs"),
        "nli.csv": ("query,positive,negative_1,negative_2\na,b,c,d\n", "text_tuples"),
        "texts.csv": ("sentence,label\na,x\n", "labelled_texts"),
        "pairs.jsonl": ('{"text1": "a", "text2": "b", "label": 1}\n', "labelled_pairs"),
        "odd.tsv": ("what\tever\n1\t2\n", "unknown"),
    }
    for name, (content, kind) in cases.items():
        (tmp_path / name).write_text(content)
        assert text_kind(tmp_path / name) == kind, name
    config = RunConfig(data=str(tmp_path / "nli.csv")).checked()
    assert (config.loss, config.temperature, config.distance) == ("infonce", 0.05, "cosine")
    assert RunConfig().checked().temperature == 0.1
    with pytest.raises(ConfigError, match="symmetric applies to loss infonce"):
        RunConfig(data=str(tmp_path / "sts.csv"), symmetric=True).checked()
