r"""Text data for sentence embeddings: tables of pairs, tuples or labelled texts.

:func:`read_text_data` reads a ``.csv``, ``.tsv`` or ``.jsonl`` file and finds what it
holds from its column names (case-sensitive; an alias is another name of one column):

================================ ======================= ===============================
columns                          returns                 for
================================ ======================= ===============================
``sentence1, sentence2, score``  :class:`ScoredPairs`    STS-style regression (a score
                                                         per pair, any real number)
``sentence1, sentence2, label``  :class:`LabelledPairs`  pair verification (1 = similar,
                                                         0 = dissimilar; both occur)
``anchor, positive``             :class:`TextTuples`     in-batch negatives (InfoNCE,
``[, negative | negative_1, …]``                         MultipleNegativesRanking)
``text, label``                  :class:`LabelledTexts`  supervised contrastive (any
                                                         label string is a class)
================================ ======================= ===============================

Aliases: ``text1``/``text2`` for ``sentence1``/``sentence2``, ``query`` for ``anchor``,
``sentence`` for ``text``. Hard negatives are one column ``negative`` or the numbered
columns ``negative_1, negative_2, …, negative_k`` (from 1, without gaps). Every row must
fill every column; the columns may come in any order; any other column is an error.

The formats:

* ``.csv``: comma-separated with a header row; a field holding a comma, a quote or a
  line break is quoted (``"…"``, a quote doubled inside), as Python's :mod:`csv` and
  pandas write it. A field may span lines.
* ``.tsv``: tab-separated with a header row. Quotes are ordinary characters (as in the
  STS benchmark files, read with ``csv.QUOTE_NONE``), so a text cannot hold a tab or a
  line break.
* ``.jsonl``: one JSON object per line, its keys the column names (every line the keys
  of the first). Texts are JSON strings; a score is a JSON number (or a string holding
  one); a pair label is ``0`` or ``1`` (or ``"0"``/``"1"``); a class label is a string or
  an integer.

Every file is UTF-8 (a byte-order mark is ignored); blank lines are skipped. Every value
is stripped of surrounding white space, and then no text may be empty. Whatever cannot
be read is a :class:`~contrastkit.data.readers.DataError` (a :class:`ValueError`) with a
one-line message naming the file, the line (1-based, as an editor counts: the first
line of a row that spans several) and the column: a suffix that is not a table, an empty
file, a header without rows, a missing, repeated or unknown column, a row with too many
or too few fields, invalid JSON, a byte that is not UTF-8, an empty text, a score that is
not a finite number, a pair label other than 0 or 1, a single class.

Also here:

* :func:`read_lines`: one text per line of a plain text file, for embedding.
* :func:`scores_to_unit` and :func:`infer_score_range`: gold scores mapped linearly to
  ``[-1, 1]`` (the range of the cosine similarity that the score losses regress onto).
* :func:`text_ids` and :func:`row_ids`: sample ids under which identical texts are one
  sample, so that a loss given ``ids=`` never takes a copy of a text for its negative.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sts.csv"
    >>> _ = path.write_text("sentence1,sentence2,score\nA man eats.,A man is eating.,4.5\n"
    ...                     "A dog runs.,A plane lands.,0.5\n")
    >>> data = read_text_data(path)
    >>> type(data).__name__, data.sentence2, data.scores.tolist()
    ('ScoredPairs', ('A man is eating.', 'A plane lands.'), [4.5, 0.5])
    >>> scores_to_unit(data.scores).tolist()  # observed values in [0, 5]: the STS range
    [0.8, -0.8]

Reference:
    E. Agirre, D. Cer, M. Diab, A. Gonzalez-Agirre, W. Guo. *\*SEM 2013 shared task:
    Semantic Textual Similarity.* \*SEM 2013 (scores from 0, unrelated, to 5,
    equivalent). N. Reimers, I. Gurevych. *Sentence-BERT: Sentence Embeddings using
    Siamese BERT-Networks.* EMNLP 2019 (the column names of its training files).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from contrastkit.data.readers import DataError

__all__ = [
    "SCORE_RANGES",
    "TEXT_SUFFIXES",
    "LabelledPairs",
    "LabelledTexts",
    "ScoredPairs",
    "TextData",
    "TextTuples",
    "infer_score_range",
    "read_lines",
    "read_text_data",
    "row_ids",
    "scores_to_unit",
    "text_ids",
]

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl")
"""The suffixes :func:`read_text_data` reads (in any case)."""

SCORE_RANGES: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.0, 5.0))
"""The score ranges :func:`infer_score_range` tries, in order: unit scores, then STS."""


# --------------------------------------------------------------------------------------
# The four kinds of data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredPairs:
    """Pairs of texts with a gold similarity score each (the STS format).

    The scores are kept as written (``0`` to ``5`` in the STS benchmark, ``0`` to ``1``
    elsewhere): mapping them onto the ``[-1, 1]`` of a cosine similarity is the job of the
    loss or of its caller, with :func:`scores_to_unit`. The correlation metrics
    (:func:`contrastkit.evaluation.text.similarity_correlation`) take them as they are.

    Attributes:
        sentence1: the first text of each pair.
        sentence2: the second text of each pair.
        scores: ``(N,)`` float64 gold scores, finite.
        source: the file and what it held, for a report.
        lines: the line of the file on which each pair starts.
    """

    kind: ClassVar[str] = "scored_pairs"
    sentence1: tuple[str, ...]
    sentence2: tuple[str, ...]
    scores: Tensor
    source: str
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.sentence1)


@dataclass(frozen=True)
class LabelledPairs:
    """Pairs of texts labelled 1 (similar, a paraphrase, a duplicate) or 0 (dissimilar).

    The library's pair convention: ``labels[i] = 1`` for a similar pair. Both labels
    occur in the file.

    Attributes:
        sentence1: the first text of each pair.
        sentence2: the second text of each pair.
        labels: ``(N,)`` int64 labels, 0 or 1.
        source: the file and what it held, for a report.
        lines: the line of the file on which each pair starts.
    """

    kind: ClassVar[str] = "labelled_pairs"
    sentence1: tuple[str, ...]
    sentence2: tuple[str, ...]
    labels: Tensor
    source: str
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.sentence1)


@dataclass(frozen=True)
class TextTuples:
    """Anchors, each with its positive and any number of hard negatives (0 or more).

    For in-batch-negative losses (InfoNCE, sentence-transformers'
    ``MultipleNegativesRankingLoss``): every other row's positive (and negatives) are
    negatives of an anchor. Give the loss ``ids=row_ids(data.anchors, data.positives)``
    so that a copy of a text is never one of them.

    Attributes:
        anchors: the anchor (query) of each row.
        positives: the positive of each row.
        negatives: one tuple per negative column (``negative``, or ``negative_1``, …
            in order), each with one text per row: ``negatives[k][i]`` is the ``k``-th
            hard negative of row ``i``. Empty without negative columns.
        source: the file and what it held, for a report.
        lines: the line of the file on which each row starts.
    """

    kind: ClassVar[str] = "text_tuples"
    anchors: tuple[str, ...]
    positives: tuple[str, ...]
    negatives: tuple[tuple[str, ...], ...]
    source: str
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.anchors)


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with a class label each (at least two classes).

    Attributes:
        texts: the texts.
        labels: ``(N,)`` int64 indices into ``class_names``.
        class_names: the label strings as written, sorted: labels that are numbers first,
            by value, then the others in code-point order (``2`` before ``10``, both
            before ``cat``); the same file gives the same ids.
        source: the file and what it held, for a report.
        lines: the line of the file on which each row starts.
    """

    kind: ClassVar[str] = "labelled_texts"
    texts: tuple[str, ...]
    labels: Tensor
    class_names: tuple[str, ...]
    source: str
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)


TextData = ScoredPairs | LabelledPairs | TextTuples | LabelledTexts
"""What :func:`read_text_data` returns: one of the four kinds."""


# --------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------

_ALIASES = {
    "sentence1": "sentence1",
    "text1": "sentence1",
    "sentence2": "sentence2",
    "text2": "sentence2",
    "score": "score",
    "label": "label",
    "anchor": "anchor",
    "query": "anchor",
    "positive": "positive",
    "text": "text",
    "sentence": "text",
}
_NUMBERED_NEGATIVE = re.compile(r"negative_([1-9][0-9]*)")
_FORMATS = (
    "sentence1,sentence2,score | sentence1,sentence2,label | "
    "anchor,positive[,negative...] | text,label"
)
_EXPECTED = {
    "scored_pairs": "sentence1,sentence2,score",
    "labelled_pairs": "sentence1,sentence2,label",
    "text_tuples": "anchor,positive and optional negative or negative_1, negative_2, ...",
    "labelled_texts": "text,label",
}


@dataclass(frozen=True)
class _Layout:
    """What the header says: the kind, and the file's name of each role's column."""

    kind: str
    names: dict[str, str]  # role (sentence1, score, negative_2, ...) -> column as written
    negatives: tuple[str, ...]  # the roles of the negative columns, in order


def _show(value: object, limit: int = 40) -> str:
    """``repr`` of a value, cut to ``limit`` characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _role(name: str) -> str | None:
    """The canonical role of a column name, or None for an unknown name."""
    if name in _ALIASES:
        return _ALIASES[name]
    if name == "negative" or _NUMBERED_NEGATIVE.fullmatch(name):
        return name
    return None


def _layout(columns: Sequence[str], where: str) -> _Layout:
    """The kind of data a header describes; ``where`` (file and line) starts a message."""

    def at(column: str) -> str:
        return f"{where}, column '{column}'"

    seen: dict[str, str] = {}  # role -> name
    unknown: list[str] = []
    for position, name in enumerate(columns, start=1):
        if not name:
            raise DataError(f"{where}, column {position} has no name; name every column")
        if name in columns[: position - 1]:
            raise DataError(f"{at(name)} appears twice in the header; name each column once")
        role = _role(name)
        if role is None:
            unknown.append(name)
        elif role in seen:
            raise DataError(
                f"{at(name)} is another name of column '{seen[role]}'; keep one of the two"
            )
        else:
            seen[role] = name
    roles = set(seen)
    negatives = _negative_roles(roles, seen, at)
    required: tuple[str, ...]
    if {"anchor", "positive"} & roles or negatives:
        kind, required = "text_tuples", ("anchor", "positive")
    elif {"sentence1", "sentence2"} & roles:
        if "score" in roles and "label" in roles:
            raise DataError(
                f"{at(seen['label'])}: pairs have a column 'score' or a column 'label', "
                "not both; keep one"
            )
        kind = "labelled_pairs" if "label" in roles else "scored_pairs"
        required = ("sentence1", "sentence2", "label" if "label" in roles else "score")
    elif "text" in roles:
        kind, required = "labelled_texts", ("text", "label")
    else:
        raise DataError(
            f"{where}: no text column among {','.join(columns)}; expected the columns {_FORMATS}"
        )
    allowed = set(required) | set(negatives)
    extra = {seen[r] for r in roles - allowed} | set(unknown)
    if extra:
        name = next(n for n in columns if n in extra)
        raise DataError(
            f"{at(name)} is not a column of {kind.replace('_', ' ')} "
            f"({_EXPECTED[kind]}); leave it out"
        )
    missing = [role for role in required if role not in roles]
    if missing == ["score"]:
        raise DataError(
            f"{at('score')} is missing: pairs need a column 'score' (a similarity) or "
            "'label' (0 or 1)"
        )
    if missing:
        raise DataError(
            f"{at(missing[0])} is missing; {kind.replace('_', ' ')} need the columns "
            f"{_EXPECTED[kind]}"
        )
    return _Layout(kind, {role: seen[role] for role in roles}, negatives)


def _negative_roles(
    roles: set[str], seen: dict[str, str], at: Callable[[str], str]
) -> tuple[str, ...]:
    """The negative columns in order: ``negative`` alone, or ``negative_1 … negative_k``."""
    numbered = sorted(
        (int(match.group(1)), role)
        for role in roles
        if (match := _NUMBERED_NEGATIVE.fullmatch(role)) is not None
    )
    if "negative" in roles and numbered:
        raise DataError(
            f"{at(seen[numbered[0][1]])}: use one column 'negative' or numbered columns "
            "'negative_1', 'negative_2', ..., not both"
        )
    if "negative" in roles:
        return ("negative",)
    for expected, (number, role) in enumerate(numbered, start=1):
        if number != expected:
            raise DataError(
                f"{at(seen[role])} comes without 'negative_{expected}'; number the "
                "negative columns from 1 without gaps"
            )
    return tuple(role for _, role in numbered)


# --------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------


def _decode(file: Path, what: str) -> str:
    """The file's text; a byte that is not UTF-8 becomes a lone surrogate (found later)."""
    if not file.exists():
        raise DataError(f"{what} {file} does not exist")
    if not file.is_file():
        raise DataError(f"{what} {file} is not a file")
    try:
        data = file.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {file}: {error}") from None
    return data.decode("utf-8-sig", errors="surrogateescape")


def _non_utf8(text: str) -> str | None:
    """What is wrong with ``text`` if it holds an undecodable byte or a lone surrogate."""
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            return f"byte 0x{code - 0xDC00:02X} is not UTF-8; save the file as UTF-8"
        if 0xD800 <= code <= 0xDFFF:
            return f"holds a lone surrogate \\u{code:04x}, which is not text"
    return None


class _Rows:
    """A table's header and rows, each row with its line, as strings or JSON values."""

    def __init__(self, header: list[str], header_line: int, rows: list[tuple[int, list[Any]]]):
        self.header = header
        self.header_line = header_line
        self.rows = rows


def _delimited(file: Path, text: str, *, tsv: bool) -> _Rows:
    stream = io.StringIO(text, newline="")
    if tsv:
        reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(stream)
    records: list[tuple[int, list[str]]] = []
    previous = 0
    try:
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            records.append((start, record))
    except csv.Error as error:
        raise DataError(f"{file} line {reader.line_num}: cannot read it as CSV: {error}") from None
    if not records:
        raise _empty(file)
    header_line, raw = records[0]
    for position, name in enumerate(raw, start=1):
        problem = _non_utf8(name)
        if problem:
            raise DataError(f"{file} line {header_line}, column {position}: {problem}")
    header = [name.strip() for name in raw]
    rows: list[tuple[int, list[Any]]] = []
    separator = "tab" if tsv else "comma"
    for line, record in records[1:]:
        if len(record) != len(header):
            fewer = len(record) < len(header)
            hint = (
                f"column '{header[len(record)]}' is missing"
                if fewer
                else (
                    "a text may not hold a tab"
                    if tsv
                    else 'quote a text that holds a comma ("a, b")'
                )
            )
            raise DataError(
                f"{file} line {line} has {len(record)} {separator}-separated fields, expected "
                f"{len(header)} ({','.join(header)}); {hint}"
            )
        rows.append((line, record))
    return _Rows(header, header_line, rows)


def _jsonl(file: Path, text: str) -> _Rows:
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[Any]]] = []
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            value = json.loads(content)
        except json.JSONDecodeError as error:
            problem = _non_utf8(content)
            if problem:
                column = next(i for i, c in enumerate(content, 1) if _non_utf8(c))
                raise DataError(f"{file} line {line}, column {column}: {problem}") from None
            raise DataError(
                f"{file} line {line}, column {error.colno}: invalid JSON ({error.msg})"
            ) from None
        if not isinstance(value, dict):
            raise DataError(
                f'{file} line {line}: expected a JSON object {{"column": value, ...}}, '
                f"got {_json_type(value)}"
            )
        for key in value:
            problem = _non_utf8(key)
            if problem:
                raise DataError(f"{file} line {line}, column {_show(key)}: {problem}")
        keys = [key.strip() for key in value]
        if header is None:
            header, header_line = keys, line
        elif keys != header:
            missing = [k for k in header if k not in keys]
            extra = [k for k in keys if k not in header]
            if missing:
                raise DataError(f"{file} line {line}, column '{missing[0]}' is missing")
            if extra:
                raise DataError(
                    f"{file} line {line}, column '{extra[0]}' is not in the first row's "
                    f"columns ({','.join(header)}, line {header_line})"
                )
            value = {k.strip(): v for k, v in value.items()}
            rows.append((line, [value[k] for k in header]))
            continue
        rows.append((line, list(value.values())))
    if header is None:
        raise _empty(file)
    return _Rows(header, header_line, rows)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _empty(file: Path) -> DataError:
    what = (
        "one JSON object per line"
        if file.suffix.lower() == ".jsonl"
        else "a header row naming the columns, then one row per example"
    )
    return DataError(f"{file} is empty (expected {what})")


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


class _Cell:
    """Locates one value in messages: the file, the line and the column's name."""

    def __init__(self, file: Path, line: int, column: str):
        self.file, self.line, self.column = file, line, column

    def error(self, problem: str) -> DataError:
        return DataError(f"{self.file} line {self.line}, column '{self.column}': {problem}")


def _string(cell: _Cell, value: object, what: str) -> str:
    if not isinstance(value, str):
        raise cell.error(f"{what} must be a JSON string, got {_json_type(value)} {_show(value)}")
    problem = _non_utf8(value)
    if problem:
        raise cell.error(problem)
    return value.strip()


def _text(cell: _Cell, value: object) -> str:
    text = _string(cell, value, "a text")
    if not text:
        raise cell.error("the text is empty; every row needs a text in every text column")
    return text


def _score(cell: _Cell, value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        if not isinstance(value, str):
            raise cell.error(f"the score must be a number, got {_json_type(value)}")
        written = _string(cell, value, "a score")
        if not written:
            raise cell.error("the score is empty; every pair needs a score")
        try:
            number = float(written)
        except ValueError:
            raise cell.error(f"the score is not a number: {_show(written)}") from None
    if not math.isfinite(number):
        raise cell.error(f"the score must be a finite number, got {_show(value)}")
    return number


def _pair_label(cell: _Cell, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    if isinstance(value, str):
        _string(cell, value, "a label")  # an undecodable byte is named first
    raise cell.error(f"a pair label must be 0 (dissimilar) or 1 (similar), got {_show(value)}")


def _class_label(cell: _Cell, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise cell.error(f"a class label must be a string or an integer, got {_json_type(value)}")
    label = _string(cell, value, "a label")
    if not label:
        raise cell.error("the label is empty; every text needs a class")
    return label


def _number_first(name: str) -> tuple[bool, float, str]:
    """Sort key of class names: numbers first (by value), then the rest (by code point)."""
    try:
        value = float(name)
    except ValueError:
        return (True, 0.0, name)
    if not math.isfinite(value):
        return (True, 0.0, name)
    return (False, value, name)


# --------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------


def read_text_data(path: str | Path) -> TextData:
    r"""Text pairs, tuples or labelled texts from a ``.csv``, ``.tsv`` or ``.jsonl`` file.

    The kind of data is found from the column names (see the table in
    :mod:`contrastkit.data.text`):

    * ``sentence1, sentence2, score`` → :class:`ScoredPairs` (the scores as written;
      :func:`scores_to_unit` maps them to ``[-1, 1]`` for a loss);
    * ``sentence1, sentence2, label`` → :class:`LabelledPairs` (labels 0 or 1, both
      present);
    * ``anchor, positive`` and optional ``negative`` or ``negative_1 … negative_k`` →
      :class:`TextTuples`;
    * ``text, label`` → :class:`LabelledTexts` (any label strings, at least two classes).

    Args:
        path: the file; its suffix (``.csv``, ``.tsv`` or ``.jsonl``, any case) says how
            to split it into columns.

    Returns:
        One of the four dataclasses, each with the file's rows in order.

    Raises:
        DataError: the file cannot be read as one of the four kinds; the one-line
            message names the file, the line (1-based) and the column.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "nli.jsonl"
        >>> _ = path.write_text('{"anchor": "A man sleeps.", "positive": "He is asleep.", '
        ...                     '"negative": "He is running."}\n')
        >>> data = read_text_data(path)
        >>> data.anchors, data.positives, data.negatives
        (('A man sleeps.',), ('He is asleep.',), (('He is running.',),))
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".txt":
        raise DataError(
            f"{file} is a .txt file, read as one text per line for embedding; text data "
            f"for training or evaluation is a table: {', '.join(TEXT_SUFFIXES)}"
        )
    if suffix not in TEXT_SUFFIXES:
        raise DataError(
            f"text data {file} must be {', '.join(TEXT_SUFFIXES)}, got {suffix or 'no suffix'}"
        )
    text = _decode(file, "text data")
    if not text.strip():
        raise _empty(file)
    table = (
        _jsonl(file, text) if suffix == ".jsonl" else _delimited(file, text, tsv=suffix == ".tsv")
    )

    layout = _layout(table.header, f"{file} line {table.header_line}")
    if not table.rows:
        raise DataError(
            f"{file} has a header ({','.join(table.header)}) but no rows; add one row per example"
        )
    return _build(file, table, layout)


def _build(file: Path, table: _Rows, layout: _Layout) -> TextData:
    position = {name: i for i, name in enumerate(table.header)}

    def column(role: str, convert: Callable[[_Cell, object], Any]) -> list[Any]:
        name = layout.names[role]
        at = position[name]
        return [convert(_Cell(file, line, name), row[at]) for line, row in table.rows]

    lines = tuple(line for line, _ in table.rows)
    n = len(lines)
    if layout.kind in ("scored_pairs", "labelled_pairs"):
        first = tuple(column("sentence1", _text))
        second = tuple(column("sentence2", _text))
        if layout.kind == "scored_pairs":
            scores = torch.tensor(column("score", _score), dtype=torch.float64)
            return ScoredPairs(first, second, scores, f"{file} ({n} scored pairs)", lines)
        labels = column("label", _pair_label)
        if len(set(labels)) < 2:
            raise DataError(
                f"{file}, column '{layout.names['label']}': every pair is labelled "
                f"{labels[0]}; pair data needs similar (1) and dissimilar (0) pairs"
            )
        return LabelledPairs(
            first,
            second,
            torch.tensor(labels, dtype=torch.int64),
            f"{file} ({n} labelled pairs, {sum(labels)} similar)",
            lines,
        )
    if layout.kind == "text_tuples":
        anchors = tuple(column("anchor", _text))
        positives = tuple(column("positive", _text))
        negatives = tuple(tuple(column(role, _text)) for role in layout.negatives)
        extra = f", {len(negatives)} negatives each" if negatives else ""
        return TextTuples(
            anchors, positives, negatives, f"{file} ({n} anchor-positive rows{extra})", lines
        )
    texts = tuple(column("text", _text))
    written = column("label", _class_label)
    names = tuple(sorted(set(written), key=_number_first))
    if len(names) < 2:
        raise DataError(
            f"{file}, column '{layout.names['label']}': every text has the class "
            f"{_show(names[0])}; labelled texts need at least 2 classes"
        )
    index = {name: i for i, name in enumerate(names)}
    return LabelledTexts(
        texts,
        torch.tensor([index[label] for label in written], dtype=torch.int64),
        names,
        f"{file} ({n} texts in {len(names)} classes)",
        lines,
    )


def read_lines(path: str | Path) -> list[str]:
    r"""The texts of a plain text file, one per line, for embedding.

    Line ``i`` of the file (1-based) is text ``i - 1`` of the result, so that the
    embeddings come out in the file's order, one per line. Each line is stripped of
    surrounding white space; line breaks are ``\n``, ``\r\n`` or ``\r``; one final line
    break is not a line. A blank line would break the correspondence between lines and
    embeddings, so it is an error (naming the line), not skipped: delete it.

    Args:
        path: a UTF-8 text file (any suffix but a table's: a ``.csv``, ``.tsv`` or
            ``.jsonl`` file is read by :func:`read_text_data`).

    Returns:
        The texts, in the file's order, at least one.

    Raises:
        DataError: the file is missing, empty or a table, a line is blank or holds a byte
            that is not UTF-8 (the message names the file and the line).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "queries.txt"
        >>> _ = path.write_text("What is a siamese network?\r\n  Contrastive loss  \n")
        >>> read_lines(path)
        ['What is a siamese network?', 'Contrastive loss']
    """
    file = Path(path)
    if file.suffix.lower() in TEXT_SUFFIXES:
        raise DataError(
            f"{file} is a {file.suffix.lower()} table; read_lines reads one text per line "
            "(read text data with read_text_data)"
        )
    text = _decode(file, "text file")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final line break
    if not lines or not text.strip():
        raise DataError(f"text file {file} is empty (expected one text per line)")
    texts = []
    for number, line in enumerate(lines, start=1):
        problem = _non_utf8(line)
        if problem:
            raise DataError(f"text file {file} line {number}: {problem}")
        if not line.strip():
            raise DataError(
                f"text file {file} line {number} is blank; every line is one text to embed "
                "(delete blank lines)"
            )
        texts.append(line.strip())
    return texts


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


def _score_tensor(scores: object) -> Tensor:
    if isinstance(scores, Tensor):
        t = scores.detach().cpu()
    elif isinstance(scores, Sequence) and not isinstance(scores, (str, bytes)):
        try:
            t = torch.tensor(list(scores), dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"scores must be a sequence of numbers, got {_show(scores)}") from None
    else:
        raise TypeError(
            f"scores must be a tensor or a sequence of numbers, got {type(scores).__name__}"
        )
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"scores must be real numbers, got dtype {t.dtype}")
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).nonzero()[0])
        raise ValueError(f"scores must be finite, got {t[bad].item()} at index {bad}")
    return t


def infer_score_range(scores: Tensor | Sequence[float]) -> tuple[float, float]:
    """The range the gold scores are on, from the values seen: ``(0, 1)`` or ``(0, 5)``.

    The rule: the first range of :data:`SCORE_RANGES` that holds every score, so
    ``(0, 1)`` when every score is in ``[0, 1]``, else ``(0, 5)`` (the STS range of
    Agirre et al.) when every score is in ``[0, 5]``. Otherwise the range cannot be told
    and must be given. The values seen only bound the range: a sample of STS scores that
    happen to lie in ``[0, 1]`` is taken for unit scores, so pass the range to
    :func:`scores_to_unit` when it is known.

    Raises:
        ValueError: a score outside ``[0, 5]`` (the message asks for the range), or a
            non-finite score.
        TypeError: ``scores`` are not real numbers.

    Example:
        >>> infer_score_range([0.0, 0.5, 1.0]), infer_score_range([0.0, 2.4, 5.0])
        ((0.0, 1.0), (0.0, 5.0))
    """
    t = _score_tensor(scores)
    low, high = float(t.min()), float(t.max())
    for candidate in SCORE_RANGES:
        if candidate[0] <= low and high <= candidate[1]:
            return candidate
    known = " or ".join(f"[{a:g}, {b:g}]" for a, b in SCORE_RANGES)
    raise ValueError(
        f"scores range from {low:g} to {high:g}, within neither {known}; give their "
        "range (low, high) explicitly"
    )


def scores_to_unit(
    scores: Tensor | Sequence[float], low: float | None = None, high: float | None = None
) -> Tensor:
    r"""Gold scores mapped linearly from their range ``[low, high]`` onto ``[-1, 1]``.

    .. math::
        u = 2\,\frac{s - \mathrm{low}}{\mathrm{high} - \mathrm{low}} - 1

    so ``[0, 1]`` gives :math:`2s - 1` and the STS range ``[0, 5]`` gives
    :math:`2s/5 - 1`: the ends of the range meet the ends of the cosine similarity that
    a score loss (:class:`contrastkit.CosineSimilarityLoss`) regresses onto. Without
    ``low`` and ``high`` the range is inferred by :func:`infer_score_range`. The order of
    the scores, and so their Spearman correlation with anything, is unchanged.

    Args:
        scores: ``(N,)`` finite gold scores.
        low: the score meaning "unrelated" (given together with ``high``).
        high: the score meaning "equivalent", greater than ``low``.

    Returns:
        ``(N,)`` float64 scores in ``[-1, 1]``.

    Raises:
        ValueError: a score outside ``[low, high]``, only one of ``low`` and ``high``,
            ``low >= high``, a non-finite value, or a range that cannot be inferred.
        TypeError: non-numeric scores or bounds.

    Example:
        >>> scores_to_unit([0.0, 2.5, 5.0]).tolist()
        [-1.0, 0.0, 1.0]
        >>> scores_to_unit([1.0, 3.0], low=1, high=3).tolist()
        [-1.0, 1.0]
    """
    t = _score_tensor(scores)
    if low is None and high is None:
        low, high = infer_score_range(t)
    elif low is None or high is None:
        raise ValueError(f"give both low and high, or neither; got low={low!r}, high={high!r}")
    for name, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise TypeError(f"{name} must be a real number, got {type(bound).__name__}")
        if not math.isfinite(bound):
            raise ValueError(f"{name} must be finite, got {bound!r}")
    if not low < high:
        raise ValueError(f"low must be below high, got low={low!r}, high={high!r}")
    outside = ((t < low) | (t > high)).nonzero()
    if outside.numel():
        i = int(outside[0])
        raise ValueError(
            f"scores must lie in [low, high] = [{low:g}, {high:g}], got {t[i].item():g} at "
            f"index {i}"
        )
    return (2.0 * (t - float(low)) / (float(high) - float(low)) - 1.0).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------------------
# Sample ids
# --------------------------------------------------------------------------------------


def _texts(name: str, texts: object) -> Sequence[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a sequence of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(text).__name__}")
    return texts


def text_ids(texts: Sequence[str]) -> Tensor:
    """One id per text, the same for identical strings: the order of first appearance.

    ``ids[i] == ids[j]`` exactly when ``texts[i] == texts[j]`` (equal strings, compared
    as written; the readers have stripped surrounding white space). The ids are
    ``0, 1, 2, …`` in the order in which each distinct text first appears. Given to a
    loss as ``ids=``, two copies of one text are never each other's negatives; given to
    :func:`contrastkit.evaluation.text.anchor_positive_retrieval` as the ids of the
    positives, the copies of a positive are one document.

    Example:
        >>> text_ids(["a cat", "a dog", "a cat"]).tolist()
        [0, 1, 0]
    """
    seen: dict[str, int] = {}
    ids = [seen.setdefault(text, len(seen)) for text in _texts("texts", texts)]
    return torch.tensor(ids, dtype=torch.int64)


def row_ids(*columns: Sequence[str]) -> Tensor:
    """One id per row, the same for rows that share a text in any of the ``columns``.

    For two-view losses over rows of texts (an anchor and its positive: InfoNCE,
    NT-Xent, sentence-transformers' ``MultipleNegativesRankingLoss``): every other row's
    texts are negatives of an anchor, and ``ids=row_ids(anchors, positives)`` takes out
    those that are copies of its own. Two rows get one id when a text of one equals a
    text of the other, in the same column or not (an anchor repeated as another row's
    positive counts), and so on transitively: the ids are the connected components of
    "shares a text", numbered ``0, 1, 2, …`` in the order of their first row. Transitivity
    may take out a few true negatives (rows ``(a, p)``, ``(b, p)``, ``(b, q)`` are one
    sample, so ``q`` is no negative of ``a``), never keep a copy.

    Args:
        *columns: one or more sequences of texts of one length, row ``i`` holding
            ``columns[0][i], columns[1][i], …``.

    Returns:
        ``(N,)`` int64 ids.

    Raises:
        ValueError: no column, or columns of different lengths.
        TypeError: a column that is not a sequence of strings.

    Example:
        >>> row_ids(["a", "b", "c", "d"], ["p", "p", "a", "q"]).tolist()
        [0, 0, 0, 1]
    """
    if not columns:
        raise ValueError("row_ids needs at least one column of texts, got none")
    checked = [_texts(f"columns[{k}]", column) for k, column in enumerate(columns)]
    n = len(checked[0])
    for k, column in enumerate(checked):
        if len(column) != n:
            raise ValueError(
                f"columns must have one length, got {n} texts in columns[0] and "
                f"{len(column)} in columns[{k}]"
            )
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_row: dict[str, int] = {}
    for column in checked:
        for i, text in enumerate(column):
            j = first_row.setdefault(text, i)
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the root is a component's first row
    number: dict[int, int] = {}
    ids = [number.setdefault(root(i), len(number)) for i in range(n)]
    return torch.tensor(ids, dtype=torch.int64)
