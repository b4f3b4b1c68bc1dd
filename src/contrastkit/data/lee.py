r"""The Lee corpus: news documents with human ratings of their similarity, read offline.

Lee, Pincombe and Welsh (2005) asked people to rate the similarity of every pair of 50
short news documents (from the Australian Broadcasting Corporation's news mail service)
from 1 (highly unrelated) to 5 (highly related); the mean rating of each pair, scaled
to ``[0, 1]``, is the gold similarity. Alongside come 300 more documents of the same
service, with no ratings, to train on ("background"). gensim's wheel carries the three
files in ``gensim/test/test_data``; this module reads them from an installed gensim
(found through :mod:`importlib`, without importing gensim) or from any folder holding
them. They state no licence of their own, so contrastkit ships no copy.

================================ ==========================================================
file                             holds
================================ ==========================================================
``lee_background.cor``           300 documents, one per line (the training corpus)
``lee.cor``                      the 50 rated documents, one per line
``similarities0-1.txt``          a 50×50 tab-separated matrix: row ``i``, column ``j >= i``
                                 holds the rating of documents ``i`` and ``j`` (1 on the
                                 diagonal); the lower triangle is zero
================================ ==========================================================

:func:`read_lee` reads them as a :class:`LeeCorpus`, and two views make of it what a
text run trains and is tested on:

* :func:`lee_training_texts`: the sentences of the background documents, each labelled
  by its document (:class:`~contrastkit.data.text.LabelledTexts`): sentences of one
  document are positives of each other, of other documents negatives. The ratings
  judge documents by what they are about, and the sentences of one news story are
  about one thing: this is the self-supervision the corpus offers without ratings.
* :func:`lee_test_pairs`: the 1,225 pairs of distinct rated documents (the upper
  triangle of the matrix, ``i < j``) with their rating
  (:class:`~contrastkit.data.text.ScoredPairs`), the protocol of gensim's own Lee test:
  correlate the model's similarity of each pair with the human rating.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "lee_background.cor").write_text("Fires burn. Crews fight them.\n"
    ...                                                "Rain falls! Rivers rise.\n")
    >>> _ = (folder / "lee.cor").write_text("A fire.\nA flood.\nA fire again.\n")
    >>> _ = (folder / "similarities0-1.txt").write_text("1\t0.2\t0.9\n0\t1\t0.1\n0\t0\t1\n")
    >>> corpus = read_lee(folder)
    >>> lee_training_texts(corpus).texts
    ('Fires burn.', 'Crews fight them.', 'Rain falls!', 'Rivers rise.')
    >>> pairs = lee_test_pairs(corpus)
    >>> pairs.sentence1, pairs.scores.tolist()
    (('A fire.', 'A fire.', 'A flood.'), [0.2, 0.9, 0.1])

Reference:
    M. D. Lee, B. Pincombe, M. Welsh. *An empirical evaluation of models of text
    document similarity.* Proceedings of the 27th Annual Conference of the Cognitive
    Science Society, 2005.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from contrastkit.data.readers import DataError
from contrastkit.data.text import LabelledTexts, ScoredPairs

__all__ = [
    "LEE_BACKGROUND",
    "LEE_DOCUMENTS",
    "LEE_RATINGS",
    "LeeCorpus",
    "find_lee_folder",
    "lee_test_pairs",
    "lee_training_texts",
    "read_lee",
    "split_sentences",
]

LEE_BACKGROUND = "lee_background.cor"
"""The file of the 300 background documents, one per line."""
LEE_DOCUMENTS = "lee.cor"
"""The file of the 50 rated documents, one per line."""
LEE_RATINGS = "similarities0-1.txt"
"""The file of the 50×50 matrix of mean human ratings, scaled to ``[0, 1]``."""

_FILES = (LEE_BACKGROUND, LEE_DOCUMENTS, LEE_RATINGS)

# A sentence ends at ., ! or ? (a closing quote or bracket may follow) before white
# space and a capital letter, a digit or an opening quote. Abbreviations such as
# "Mr. Howard" split wrongly; the news service writes "Mr Howard", so few occur.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)([\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class LeeCorpus:
    """The three Lee files, read.

    Attributes:
        background: the 300 training documents (unrated), in file order.
        documents: the rated documents, in file order.
        ratings: ``(n, n)`` float64 mean ratings in ``[0, 1]``, symmetric (the file's
            upper triangle mirrored), 1 on the diagonal as in the file.
        folder: the folder the files were read from.
    """

    background: tuple[str, ...]
    documents: tuple[str, ...]
    ratings: Tensor
    folder: Path


def find_lee_folder() -> Path:
    """The folder of the Lee files in an installed gensim (``gensim/test/test_data``).

    gensim is found with :func:`importlib.util.find_spec`, which reads no gensim module.

    Raises:
        DataError: gensim is not installed (the message says ``pip install gensim``), or
            its folder lacks a Lee file (named).
    """
    try:
        spec = importlib.util.find_spec("gensim")
    except (ImportError, ValueError):  # pragma: no cover - a broken sys.modules entry
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the Lee corpus is read from an installed gensim (gensim/test/test_data), and "
            "gensim is not installed: pip install gensim, or give the folder of "
            f"{', '.join(_FILES)} (--data lee:FOLDER)"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    folder = package / "test" / "test_data"
    _check_folder(folder, f"the installed gensim ({package})")
    return folder


def _check_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise DataError(f"{what} has no folder {folder} holding the Lee files {', '.join(_FILES)}")
    for name in _FILES:
        if not (folder / name).is_file():
            raise DataError(f"{what}: the Lee file {folder / name} is missing")


def _lines(file: Path) -> list[str]:
    """The non-blank lines of a Lee file, stripped; UTF-8, else Latin-1 (``lee.cor``)."""
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # lee.cor holds a Latin-1 pound sign
        text = raw.decode("latin-1")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _ratings(file: Path, n: int) -> Tensor:
    rows = _lines(file)
    if len(rows) != n:
        raise DataError(
            f"{file} has {len(rows)} rows of ratings, but {LEE_DOCUMENTS} has {n} documents; "
            "expected one row per document"
        )
    values: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        cells = row.split()
        if len(cells) != n:
            raise DataError(
                f"{file} line {number} has {len(cells)} ratings; expected {n}, one per document"
            )
        parsed = []
        for column, cell in enumerate(cells, start=1):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise DataError(
                    f"{file} line {number}, column {column}: {cell!r} is not a rating in [0, 1]"
                )
            parsed.append(value)
        values.append(parsed)
    upper = torch.tensor(values, dtype=torch.float64).triu()
    return upper + upper.triu(1).T


def read_lee(folder: str | Path | None = None) -> LeeCorpus:
    """The Lee corpus from ``folder``, or from the installed gensim when ``None``.

    Args:
        folder: a folder holding :data:`LEE_BACKGROUND`, :data:`LEE_DOCUMENTS` and
            :data:`LEE_RATINGS`; ``None`` for :func:`find_lee_folder`.

    Returns:
        The documents and ratings. Blank lines are skipped; every other line is one
        document.

    Raises:
        DataError: gensim is not installed (without ``folder``), a file is missing, or
            the ratings are not an ``n × n`` matrix of numbers in ``[0, 1]`` for the
            ``n`` rated documents (the message names the file and line).
    """
    if folder is None:
        where = find_lee_folder()
    else:
        where = Path(folder)
        _check_folder(where, f"Lee folder {where}")
    background = tuple(_lines(where / LEE_BACKGROUND))
    documents = tuple(_lines(where / LEE_DOCUMENTS))
    for name, texts in ((LEE_BACKGROUND, background), (LEE_DOCUMENTS, documents)):
        if len(texts) < 2:
            raise DataError(f"{where / name} holds {len(texts)} documents; at least 2 are needed")
    ratings = _ratings(where / LEE_RATINGS, len(documents))
    return LeeCorpus(background, documents, ratings, where)


def split_sentences(text: str) -> list[str]:
    """The sentences of a document: split after ``.``, ``!`` or ``?`` before a capital.

    A closing quote or bracket stays with its sentence; an initial (``J. Smith``) does
    not end one. A rule for news text, not a parser: a document without such an end is
    one sentence.

    Example:
        >>> split_sentences('He said "Go." Then J. Smith left! Why? 3 stayed.')
        ['He said "Go."', 'Then J. Smith left!', 'Why?', '3 stayed.']
    """
    parts = _SENTENCE_END.split(text.strip())
    # re.split keeps the captured closing marks: join each to the sentence before it
    sentences = [parts[0] + (parts[1] if len(parts) > 1 else "")]
    sentences += [parts[i] + parts[i + 1] for i in range(2, len(parts) - 1, 2)]
    if len(parts) > 1 and len(parts) % 2 == 1:
        sentences.append(parts[-1])
    return [s.strip() for s in sentences if s.strip()]


def lee_training_texts(corpus: LeeCorpus) -> LabelledTexts:
    """The sentences of the background documents, labelled by their document.

    The class of a sentence is its document's line number (1-based, as a string); a
    document of one sentence is a class of one. Positives for a supervised contrastive
    loss are then sentences of one news story.
    """
    texts: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    for number, document in enumerate(corpus.background, start=1):
        for sentence in split_sentences(document):
            texts.append(sentence)
            labels.append(number - 1)
            lines.append(number)
    names = tuple(str(number) for number in range(1, len(corpus.background) + 1))
    return LabelledTexts(
        tuple(texts),
        torch.tensor(labels, dtype=torch.int64),
        names,
        f"Lee background corpus {corpus.folder / LEE_BACKGROUND} ({len(texts):,} sentences "
        f"of {len(corpus.background)} documents, labelled by document)",
        tuple(lines),
    )


def lee_test_pairs(corpus: LeeCorpus) -> ScoredPairs:
    """Every pair of distinct rated documents ``i < j`` with its mean human rating.

    ``n (n - 1) / 2`` pairs (1,225 for the 50 documents), row by row of the upper
    triangle; ``lines`` holds the row ``i + 1`` of the ratings file of each pair.
    """
    n = len(corpus.documents)
    first, second = torch.triu_indices(n, n, offset=1)
    return ScoredPairs(
        tuple(corpus.documents[i] for i in first.tolist()),
        tuple(corpus.documents[j] for j in second.tolist()),
        corpus.ratings[first, second].clone(),
        f"Lee ratings {corpus.folder / LEE_RATINGS} ({first.numel():,} pairs of {n} documents)",
        tuple(int(i) + 1 for i in first.tolist()),
    )
