"""``contrastkit train --data lee`` and ``evaluate --data lee``, on tiny fake Lee files.

The files are written here in the Lee formats (``lee:FOLDER``); no test needs gensim.
A run trains on the background sentences labelled by document and is tested on the
rated pairs of the fake documents; a killed run resumes to the same weights; without
gensim, ``--data lee`` is one line saying how to get it, with nothing written.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("transformers")  # the text extra

from test_cli import assert_one_line_error, call, kill_after_first_epoch, same_weights, snapshot
from test_cli_text import TINY

TOPICS = {
    "fire": ["Bushfires burn near the town.", "Crews fight the fire all night.",
             "Smoke covers the valley.", "Homes are lost to the flames.",
             "Firefighters ask for rain.", "The blaze jumps the highway."],
    "bank": ["The bank raises its rates.", "Loans cost more this year.",
             "Markets fall on the news.", "The treasurer defends the bank.",
             "Savers welcome the rise.", "Shares in the bank slip."],
    "sport": ["The team wins the final.", "Fans cheer in the stadium.",
              "The coach praises the players.", "A late goal seals the match.",
              "The captain lifts the cup.", "The crowd sings all night."],
    "war": ["Troops move into the city.", "The army reports heavy fighting.",
            "Refugees cross the border.", "Leaders call for a ceasefire.",
            "The general visits the front.", "Aid reaches the camps."],
}  # fmt: skip
DOCUMENTS = [
    "A fire burns near the valley and crews fight it.",
    "The bank lifts rates and markets fall.",
    "The team wins and fans cheer.",
    "Fires and smoke hit the town again.",
    "Troops and refugees at the border.",
]
RATINGS = np.triu(
    np.array(
        [
            [1.0, 0.2, 0.2, 0.9, 0.3],
            [0.0, 1.0, 0.3, 0.2, 0.25],
            [0.0, 0.0, 1.0, 0.2, 0.22],
            [0.0, 0.0, 0.0, 1.0, 0.4],
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
)


@pytest.fixture(scope="module")
def lee(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lee")
    (folder / "lee_background.cor").write_text(
        "".join(" ".join(sentences) + "\n" for sentences in TOPICS.values())
    )
    (folder / "lee.cor").write_text("\n".join(DOCUMENTS) + "\n")
    (folder / "similarities0-1.txt").write_text(
        "".join("\t".join(f"{v:g}" for v in row) + "\n" for row in RATINGS)
    )
    return f"lee:{folder}"


@pytest.fixture(scope="module")
def run(lee, tmp_path_factory):
    from contrastkit.app.cli import main

    out = tmp_path_factory.mktemp("lee-runs") / "run"
    assert main(["train", "--data", lee, *TINY, "-o", str(out)]) == 0
    return out


def test_lee_trains_on_sentences_by_document_and_tests_on_the_rated_pairs(lee, run) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"spearman", "pearson"}
    assert all(-1.0 <= v <= 1.0 for v in metrics["test"].values())
    assert metrics["pairs"] == {"test": 5 * 4 // 2}
    assert metrics["data"]["classes"] == len(TOPICS)
    sentences = sum(len(s) for s in TOPICS.values())
    assert metrics["data"]["train"] + metrics["data"]["validation"] == sentences
    assert metrics["data"]["test"] == 10
    assert all(np.isfinite(r["val_precision_at_1"]) for r in metrics["history"])
    assert any("the Lee corpus: trained on sentences" in n for n in metrics["notes"])
    config = (run / "config.toml").read_text()
    assert f'data = "{lee}"' in config and 'text_kind = "labelled_texts"' in config
    assert 'loss = "supcon"' in config
    page = (run / "report.html").read_text()
    assert "Semantic similarity (test pairs)" in page and "Lee ratings" in page
    assert (run / "figures" / "similarity.png").is_file()


def test_evaluate_a_lee_run_and_a_model_on_lee(lee, run, capsys) -> None:
    saved = json.loads((run / "metrics.json").read_text())["test"]
    for argv in (
        ("evaluate", run, "--json"),
        ("evaluate", run, "--data", lee, "--json"),
        ("evaluate", "--text-model", run / "text-model", "--data", lee, "--json"),
    ):
        status, out, err = call(capsys, *argv)
        assert status == 0, err
        assert json.loads(out) == pytest.approx(saved, abs=1e-6), argv


def test_a_killed_lee_run_resumes_to_the_weights_of_an_uninterrupted_one(
    lee, run, tmp_path, capsys, monkeypatch
) -> None:
    again = tmp_path / "run"
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        status, _, _ = call(capsys, "train", "--data", lee, *TINY, "-o", again)
    assert status == 130
    status, _, err = call(capsys, "train", "--resume", again)
    assert status == 0, err
    assert same_weights(again, run)


def test_lee_without_gensim_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gensim" else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    status, _, err = call(capsys, "train", "--data", "lee", *TINY)
    assert_one_line_error(status, err, "pip install gensim", "lee:FOLDER")
    status, _, err = call(capsys, "evaluate", "--text-model", tmp_path, "--data", "lee")
    assert_one_line_error(status, err, "pip install gensim")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--test-data", "x.csv"], ["--test-data", "lee brings its own test"]),
        (["--data", "lee:/no/such/folder"], ["--data", "/no/such/folder", "not a folder"]),
        (["--score-range", "0,1"], ["score_range", "scored pairs"]),
    ],
)
def test_lee_refuses_what_does_not_apply(lee, tmp_path, capsys, extra, named) -> None:
    (tmp_path / "x.csv").write_text("sentence1,sentence2,score\na,b,1\nc,d,0\n")
    argv = ["train", "--data", lee, *TINY, "-o", tmp_path / "run", *extra]
    status, _, err = call(capsys, *argv)
    assert_one_line_error(status, err, *named)
    assert not (tmp_path / "run").exists()
