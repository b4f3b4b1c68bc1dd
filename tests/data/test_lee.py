"""The Lee corpus reader, on tiny fake files in the Lee formats written here.

No test needs gensim: the files are written by the tests, and "an installed gensim" is
a fake package folder on ``sys.path`` (found, never imported).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from contrastkit.data.lee import (
    LEE_BACKGROUND,
    LEE_DOCUMENTS,
    LEE_RATINGS,
    find_lee_folder,
    lee_test_pairs,
    lee_training_texts,
    read_lee,
    split_sentences,
)
from contrastkit.data.readers import DataError

BACKGROUND = [
    "Bushfires burn near Sydney. Crews fight the fires! Homes are lost.",
    'The bank raised rates. "Loans cost more," he said. Markets fell.',
    "The team won the final. Fans cheered? The coach was pleased.",
]
DOCUMENTS = [
    "A fire burns near the town.",
    "Rates rise at the bank.",
    "The team wins a match.",
    "Fires and floods hit the coast, costing \xa33,000 each.",  # a Latin-1 pound sign
]
# the upper triangle as the Lee file holds it: 1 on the diagonal, zeros below
RATINGS = [
    [1.0, 0.2, 0.1, 0.9],
    [0.0, 1.0, 0.3, 0.25],
    [0.0, 0.0, 1.0, 0.15],
    [0.0, 0.0, 0.0, 1.0],
]


def write_lee(folder: Path, ratings: list[list[float]] | None = None) -> Path:
    """The three Lee files in ``folder``: UTF-8 background, Latin-1 documents, ratings."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEE_BACKGROUND).write_text("\n".join(BACKGROUND) + "\n", encoding="utf-8")
    (folder / LEE_DOCUMENTS).write_bytes(("\n".join(DOCUMENTS) + "\n").encode("latin-1"))
    rows = ratings if ratings is not None else RATINGS
    (folder / LEE_RATINGS).write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return folder


def test_read_lee_reads_the_documents_and_mirrors_the_upper_triangle(tmp_path) -> None:
    corpus = read_lee(write_lee(tmp_path))
    assert corpus.background == tuple(BACKGROUND)
    assert corpus.documents == tuple(DOCUMENTS)  # lee.cor is Latin-1: the pound sign reads
    assert corpus.ratings.dtype == torch.float64 and corpus.ratings.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            expected = RATINGS[min(i, j)][max(i, j)]
            assert corpus.ratings[i, j].item() == expected


def test_the_test_pairs_are_the_upper_triangle_row_by_row(tmp_path) -> None:
    pairs = lee_test_pairs(read_lee(write_lee(tmp_path)))
    expected = [
        (DOCUMENTS[i], DOCUMENTS[j], RATINGS[i][j], i + 1)
        for i in range(len(DOCUMENTS))
        for j in range(i + 1, len(DOCUMENTS))
    ]
    assert len(pairs) == len(expected) == 4 * 3 // 2
    found = zip(pairs.sentence1, pairs.sentence2, pairs.scores.tolist(), pairs.lines, strict=True)
    assert list(found) == expected
    assert "6 pairs of 4 documents" in pairs.source


def test_the_training_texts_are_sentences_labelled_by_their_document(tmp_path) -> None:
    texts = lee_training_texts(read_lee(write_lee(tmp_path)))
    assert texts.texts[:3] == (
        "Bushfires burn near Sydney.",
        "Crews fight the fires!",
        "Homes are lost.",
    )
    assert texts.class_names == ("1", "2", "3")
    for document in range(3):
        mine = [
            t
            for t, label in zip(texts.texts, texts.labels.tolist(), strict=True)
            if label == document
        ]
        assert " ".join(mine) == BACKGROUND[document]  # the sentences make up the document
        assert len(mine) == 3
    assert texts.lines == tuple(1 + label for label in texts.labels.tolist())


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two! Three? 4 more.", ["One.", "Two!", "Three?", "4 more."]),
        ('He said "Go." Then he left.', ['He said "Go."', "Then he left."]),
        ("J. Smith and the U.S. Army met. Done.", ["J. Smith and the U.S. Army met.", "Done."]),
        ("It rose 3.5 per cent. at 4:00pm", ["It rose 3.5 per cent. at 4:00pm"]),
        ("no end at all", ["no end at all"]),
        ("(Quoted.) Next one.", ["(Quoted.)", "Next one."]),
    ],
)
def test_split_sentences(text, sentences) -> None:
    assert split_sentences(text) == sentences


@pytest.mark.parametrize(
    ("ratings", "named"),
    [
        (RATINGS[:3], "3 rows of ratings"),
        ([*RATINGS[:3], [0.0, 0.0, 1.0]], "line 4 has 3 ratings"),
        ([*RATINGS[:3], [0.0, 0.0, 0.0, "x"]], "line 4, column 4: 'x'"),
        ([*RATINGS[:3], [0.0, 0.0, 0.0, 1.5]], "line 4, column 4: '1.5'"),
        ([*RATINGS[:3], [0.0, 0.0, 0.0, "nan"]], "line 4, column 4: 'nan'"),
    ],
)
def test_bad_ratings_are_one_line_naming_the_file_and_line(tmp_path, ratings, named) -> None:
    folder = write_lee(tmp_path, ratings)
    with pytest.raises(DataError, match=LEE_RATINGS) as error:
        read_lee(folder)
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", [LEE_BACKGROUND, LEE_DOCUMENTS, LEE_RATINGS])
def test_a_missing_file_is_named(tmp_path, name) -> None:
    folder = write_lee(tmp_path)
    (folder / name).unlink()
    with pytest.raises(DataError, match=f"the Lee file .*{name} is missing"):
        read_lee(folder)


def test_a_missing_folder_and_a_single_document_are_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="has no folder"):
        read_lee(tmp_path / "nowhere")
    folder = write_lee(tmp_path / "one")
    (folder / LEE_BACKGROUND).write_text("Only one document.\n\n")
    with pytest.raises(DataError, match="holds 1 documents; at least 2"):
        read_lee(folder)


def test_without_gensim_the_message_says_how_to_get_the_corpus(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gensim" else real(name, *a)
    )
    for call in (find_lee_folder, read_lee):
        with pytest.raises(DataError, match="pip install gensim") as error:
            call()
        assert "lee:FOLDER" in str(error.value)


def test_an_installed_gensim_is_found_without_importing_it(tmp_path, monkeypatch) -> None:
    package = tmp_path / "site" / "gensim"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('gensim must not be imported')\n")
    write_lee(package / "test" / "test_data")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "gensim", raising=False)
    importlib.invalidate_caches()
    assert find_lee_folder() == package / "test" / "test_data"
    assert read_lee().documents == tuple(DOCUMENTS)
    assert "gensim" not in sys.modules
    (package / "test" / "test_data" / LEE_DOCUMENTS).unlink()
    with pytest.raises(DataError, match=f"installed gensim .*{LEE_DOCUMENTS} is missing"):
        find_lee_folder()
