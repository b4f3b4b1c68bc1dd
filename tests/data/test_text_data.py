"""Text data: the four kinds in CSV, TSV and JSONL, their detection, every error's
message (file, line and column), the score mapping and the sample ids."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.data.readers import DataError
from contrastkit.data.text import (
    LabelledPairs,
    LabelledTexts,
    ScoredPairs,
    TextTuples,
    infer_score_range,
    read_lines,
    read_text_data,
    row_ids,
    scores_to_unit,
    text_ids,
)

FAST = settings(max_examples=40, deadline=None)


def write_table(path, header, rows):
    """``rows`` (lists of values) under ``header`` in the format of ``path``'s suffix."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        lines = [json.dumps(dict(zip(header, row, strict=True))) for row in rows]
    else:
        sep = "\t" if suffix == ".tsv" else ","
        lines = [sep.join(header)] + [sep.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fails(path, *parts):
    """The DataError of reading ``path``; its message names the file and every part."""
    with pytest.raises(DataError) as info:
        read_text_data(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


SUFFIXES = (".csv", ".tsv", ".jsonl")


# --- the four kinds in every format ------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_scored_pairs(tmp_path, suffix):
    path = write_table(
        tmp_path / f"sts{suffix}",
        ["sentence1", "sentence2", "score"],
        [["A man eats.", "A man is eating.", 4.8], ["Dogs run.", "A plane lands.", 0]],
    )
    data = read_text_data(path)
    assert isinstance(data, ScoredPairs) and data.kind == "scored_pairs"
    assert data.sentence1 == ("A man eats.", "Dogs run.")
    assert data.sentence2 == ("A man is eating.", "A plane lands.")
    assert data.scores.dtype == torch.float64
    assert data.scores.tolist() == [4.8, 0.0]
    assert len(data) == 2
    assert data.lines == ((1, 2) if suffix == ".jsonl" else (2, 3))
    assert str(path) in data.source and "2 scored pairs" in data.source


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_labelled_pairs(tmp_path, suffix):
    path = write_table(
        tmp_path / f"quora{suffix}",
        ["sentence1", "sentence2", "label"],
        [["How old are you?", "What is your age?", 1], ["Hi", "Bye", 0], ["a", "b", 0]],
    )
    data = read_text_data(path)
    assert isinstance(data, LabelledPairs) and data.kind == "labelled_pairs"
    assert data.sentence1 == ("How old are you?", "Hi", "a")
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [1, 0, 0]
    assert "3 labelled pairs, 1 similar" in data.source


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    "negatives",
    [[], ["negative"], ["negative_1", "negative_2"]],
    ids=["none", "one", "numbered"],
)
def test_text_tuples(tmp_path, suffix, negatives):
    header = ["anchor", "positive", *negatives]
    rows = [
        ["q1", "p1", *[f"n1{k}" for k in range(len(negatives))]],
        ["q2", "p2", *[f"n2{k}" for k in range(len(negatives))]],
    ]
    data = read_text_data(write_table(tmp_path / f"t{suffix}", header, rows))
    assert isinstance(data, TextTuples) and data.kind == "text_tuples"
    assert data.anchors == ("q1", "q2") and data.positives == ("p1", "p2")
    assert data.negatives == tuple((f"n1{k}", f"n2{k}") for k in range(len(negatives)))


def test_numbered_negatives_are_ordered_by_number_not_by_column(tmp_path):
    header = [
        "negative_2",
        "positive",
        "negative_10",
        "anchor",
        *[f"negative_{k}" for k in (1, *range(3, 10))],
    ]
    row = [f"v-{name}" for name in header]
    data = read_text_data(write_table(tmp_path / "t.csv", header, [row]))
    assert data.negatives == tuple((f"v-negative_{k}",) for k in range(1, 11))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_labelled_texts_with_sorted_class_names(tmp_path, suffix):
    path = write_table(
        tmp_path / f"c{suffix}",
        ["text", "label"],
        [["x", "10"], ["y", "2"], ["z", "cat"], ["w", "2"], ["v", "Dog"]],
    )
    data = read_text_data(path)
    assert isinstance(data, LabelledTexts) and data.kind == "labelled_texts"
    # numbers first by value, then the others by code point
    assert data.class_names == ("2", "10", "Dog", "cat")
    assert data.labels.tolist() == [1, 0, 3, 0, 2]
    assert [data.class_names[i] for i in data.labels] == ["10", "2", "cat", "2", "Dog"]


def test_jsonl_class_labels_may_be_integers(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a", "label": 3}\n{"text": "b", "label": "x"}\n')
    data = read_text_data(path)
    assert data.class_names == ("3", "x") and data.labels.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (["text1", "text2", "score"], ScoredPairs),
        (["text1", "sentence2", "label"], LabelledPairs),
        (["query", "positive"], TextTuples),
        (["sentence", "label"], LabelledTexts),
        (["score", "sentence2", "sentence1"], ScoredPairs),  # any order
    ],
)
def test_aliases_and_column_order(tmp_path, header, kind):
    values = {"score": "1.5", "label": "1"}
    rows = [[values.get(h, f"{h}-a") for h in header], [values.get(h, f"{h}-b") for h in header]]
    if kind in (LabelledPairs, LabelledTexts):
        rows[1][header.index("label")] = "0"
    data = read_text_data(write_table(tmp_path / "d.csv", header, rows))
    assert isinstance(data, kind)
    if kind is ScoredPairs:
        first = "text1" if "text1" in header else "sentence1"
        assert data.sentence1 == (f"{first}-a", f"{first}-b")
        assert data.scores.tolist() == [1.5, 1.5]


def test_csv_quoting_multiline_fields_blank_lines_bom_and_crlf(tmp_path):
    path = tmp_path / "q.csv"
    text = (
        "\ufeffsentence1,sentence2,score\r\n"
        '"Hello, world","He said ""hi""",1\r\n'
        "\r\n"
        '"two\nlines",b , 2.5\r\n'
        "c,d,3\r\n"
    )
    path.write_bytes(text.encode("utf-8"))
    data = read_text_data(path)
    assert data.sentence1 == ("Hello, world", "two\nlines", "c")
    assert data.sentence2 == ('He said "hi"', "b", "d")
    assert data.scores.tolist() == [1.0, 2.5, 3.0]
    assert data.lines == (2, 4, 6)  # the first line of each row


def test_tsv_quotes_are_ordinary_characters(tmp_path):
    path = tmp_path / "sts.tsv"
    path.write_text('sentence1\tsentence2\tscore\n"Quoted\tnot "closed\t3\n')
    data = read_text_data(path)
    assert data.sentence1 == ('"Quoted',) and data.sentence2 == ('not "closed',)


def test_suffix_case_is_ignored(tmp_path):
    path = write_table(tmp_path / "d.JSONL", ["text", "label"], [["a", "x"], ["b", "y"]])
    assert isinstance(read_text_data(path), LabelledTexts)


def test_jsonl_keys_in_another_order_and_string_scores(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b", "score": 1}\n'
        "\n"
        '{"score": "2.5", "sentence2": "d", "sentence1": "c"}\n'
    )
    data = read_text_data(path)
    assert data.sentence1 == ("a", "c") and data.scores.tolist() == [1.0, 2.5]
    assert data.lines == (1, 3)


@pytest.mark.parametrize("suffix", (".tsv", ".jsonl"))
def test_crlf_line_breaks(tmp_path, suffix):
    path = write_table(tmp_path / f"c{suffix}", ["text", "label"], [["a", "x"], ["b", "y"]])
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    data = read_text_data(path)
    assert data.texts == ("a", "b") and data.class_names == ("x", "y")


def test_values_are_stripped(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(" sentence1 , sentence2 ,score\n  a  , b\t,  1 \n")
    data = read_text_data(path)
    assert data.sentence1 == ("a",) and data.sentence2 == ("b",) and data.scores.tolist() == [1.0]


def test_the_data_is_frozen(tmp_path):
    data = read_text_data(write_table(tmp_path / "t.csv", ["anchor", "positive"], [["a", "b"]]))
    with pytest.raises(AttributeError):
        data.anchors = ("x",)


# --- errors: every message names the file, the line and the column ---------------------


def test_a_missing_file(tmp_path):
    fails(tmp_path / "nope.csv", "does not exist")


def test_a_folder_is_not_a_file(tmp_path):
    folder = tmp_path / "d.csv"
    folder.mkdir()
    fails(folder, "is not a file")


def test_txt_is_not_a_table(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("a\nb\n")
    fails(path, ".txt", "one text per line", ".csv, .tsv, .jsonl")


@pytest.mark.parametrize("name", ["d.parquet", "noext"])
def test_an_unknown_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("text,label\n")
    fails(path, "must be .csv, .tsv, .jsonl")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file(tmp_path, suffix, content):
    path = tmp_path / f"e{suffix}"
    path.write_text(content)
    fails(path, "is empty")


@pytest.mark.parametrize("suffix", (".csv", ".tsv"))
def test_a_header_without_rows(tmp_path, suffix):
    path = write_table(tmp_path / f"h{suffix}", ["text", "label"], [])
    fails(path, "has a header", "no rows")


@pytest.mark.parametrize(
    ("header", "column", "what"),
    [
        (["sentence1", "sentence2"], "score", "is missing: pairs need a column 'score'"),
        (["sentence1", "score"], "sentence2", "is missing"),
        (["sentence2", "label"], "sentence1", "is missing"),
        (["anchor", "negative"], "positive", "is missing"),
        (["positive"], "anchor", "is missing"),
        (["text"], "label", "is missing"),
        (["sentence1", "sentence2", "score", "id"], "id", "is not a column of scored pairs"),
        (["anchor", "positive", "score"], "score", "is not a column of text tuples"),
        # pair columns come before text columns: a text column is then the stray one
        (["text", "label", "sentence1"], "text", "is not a column of labelled pairs"),
        (["text", "label", "extra"], "extra", "is not a column of labelled texts"),
        (["sentence1", "sentence2", "score", "label"], "label", "not both"),
        (["sentence1", "text1", "sentence2", "score"], "text1", "another name of column"),
        (["anchor", "positive", "negative", "negative_1"], "negative_1", "not both"),
        (["anchor", "positive", "negative_1", "negative_3"], "negative_3", "negative_2"),
        (["anchor", "positive", "negative_2"], "negative_2", "without 'negative_1'"),
        (["anchor", "positive", "positive"], "positive", "appears twice"),
        (["Sentence1", "Sentence2", "Score"], None, "no text column"),
        (["label", "score"], None, "no text column"),
    ],
)
@pytest.mark.parametrize("suffix", (".csv", ".tsv"))
def test_header_errors(tmp_path, suffix, header, column, what):
    path = write_table(tmp_path / f"h{suffix}", header, [["v"] * len(header)])
    message = fails(path, "line 1", what)
    if column is not None:
        assert f"column '{column}'" in message


def test_a_header_error_in_jsonl_names_the_first_objects_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('\n\n{"anchor": "a", "positive": "b", "id": 3}\n')
    fails(path, "line 3, column 'id'", "not a column of text tuples")


def test_an_unnamed_column(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("text,,label\na,b,c\n")
    fails(path, "line 1, column 2 has no name")


def test_an_unknown_format_lists_the_formats(tmp_path):
    path = write_table(tmp_path / "f.csv", ["a", "b"], [["1", "2"]])
    message = fails(path, "line 1", "a,b")
    for expected in ("sentence1,sentence2,score", "anchor,positive", "text,label"):
        assert expected in message


@pytest.mark.parametrize(
    ("row", "line", "column", "what"),
    [
        (["a", "b", "x"], 3, "score", "not a number: 'x'"),
        (["a", "b", ""], 3, "score", "the score is empty"),
        (["a", "b", "nan"], 3, "score", "finite"),
        (["a", "b", "inf"], 3, "score", "finite"),
        (["", "b", "1"], 3, "sentence1", "the text is empty"),
        (["a", "   ", "1"], 3, "sentence2", "the text is empty"),
    ],
)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_bad_values_of_scored_pairs(tmp_path, suffix, row, line, column, what):
    path = write_table(
        tmp_path / f"s{suffix}", ["sentence1", "sentence2", "score"], [["c", "d", "1"], row]
    )
    line = line - 1 if suffix == ".jsonl" else line
    fails(path, f"line {line}, column '{column}'", what)


@pytest.mark.parametrize("label", ["2", "-1", "1.0", "yes", "", "true"])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_pair_label_other_than_0_or_1(tmp_path, suffix, label):
    path = write_table(
        tmp_path / f"p{suffix}",
        ["sentence1", "sentence2", "label"],
        [["a", "b", "1"], ["c", "d", label]],
    )
    fails(
        path,
        f"line {2 if suffix == '.jsonl' else 3}, column 'label'",
        "must be 0 (dissimilar) or 1",
    )


@pytest.mark.parametrize("value", ["2", "true", "1.0", "null", "[1]"])
def test_a_jsonl_pair_label_that_is_not_0_or_1(tmp_path, value):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b", "label": 0}\n'
        f'{{"sentence1": "c", "sentence2": "d", "label": {value}}}\n'
    )
    fails(path, "line 2, column 'label'", "0 (dissimilar) or 1")


@pytest.mark.parametrize("label", ["0", "1"])
def test_pairs_of_one_label(tmp_path, label):
    path = write_table(
        tmp_path / "p.csv",
        ["sentence1", "sentence2", "label"],
        [["a", "b", label], ["c", "d", label]],
    )
    fails(path, f"every pair is labelled {label}", "column 'label'")


def test_texts_of_one_class(tmp_path):
    path = write_table(tmp_path / "c.csv", ["text", "label"], [["a", "x"], ["b", "x"]])
    fails(path, "column 'label'", "at least 2 classes")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_an_empty_class_label(tmp_path, suffix):
    path = write_table(tmp_path / f"c{suffix}", ["text", "label"], [["a", "x"], ["b", " "]])
    fails(path, f"line {2 if suffix == '.jsonl' else 3}, column 'label'", "the label is empty")


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("1.5", "a class label must be a string or an integer"),
        ("true", "string or an integer"),
        ("null", "null"),
    ],
)
def test_a_jsonl_class_label_of_another_type(tmp_path, value, what):
    path = tmp_path / "c.jsonl"
    path.write_text(f'{{"text": "a", "label": "x"}}\n{{"text": "b", "label": {value}}}\n')
    fails(path, "line 2, column 'label'", what)


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("3", "a text must be a JSON string, got a number"),
        ("null", "got null"),
        ('["a"]', "a list"),
    ],
)
def test_a_jsonl_text_that_is_not_a_string(tmp_path, value, what):
    path = tmp_path / "t.jsonl"
    path.write_text(f'{{"anchor": "a", "positive": {value}}}\n')
    fails(path, "line 1, column 'positive'", what)


@pytest.mark.parametrize(
    ("value", "what"), [("true", "a boolean"), ("null", "null"), ("{}", "an object")]
)
def test_a_jsonl_score_of_another_type(tmp_path, value, what):
    path = tmp_path / "s.jsonl"
    path.write_text(f'{{"sentence1": "a", "sentence2": "b", "score": {value}}}\n')
    fails(path, "line 1, column 'score'", "must be a number", what)


def test_a_jsonl_nan_score(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"sentence1": "a", "sentence2": "b", "score": NaN}\n')
    fails(path, "line 1, column 'score'", "finite")


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        (
            '{"text": "a", "label": 1}\n{"text": "b" "label": 2}\n',
            "line 2, column 14",
            "invalid JSON",
        ),
        ('{"text": "a", "label": 1}\n{"text": "b", "label": 2\n', "line 2, column", "invalid JSON"),
        ('["a", 1]\n', "line 1", "expected a JSON object"),
        ('{"text": "a", "label": 1}\n"text"\n', "line 2", "got a string"),
    ],
)
def test_invalid_json(tmp_path, content, where, what):
    path = tmp_path / "j.jsonl"
    path.write_text(content)
    fails(path, where, what)


def test_a_jsonl_row_missing_a_key(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    fails(path, "line 2, column 'label' is missing")


def test_a_jsonl_row_with_an_extra_key(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2, "id": 7}\n')
    fails(path, "line 2, column 'id'", "not in the first row's columns")


@pytest.mark.parametrize(
    ("content", "where", "hint"),
    [
        ("text,label\na,b,c\n", "line 2 has 3 comma-separated fields, expected 2", "quote a text"),
        (
            "text,label\nb,1\nonly\n",
            "line 3 has 1 comma-separated fields",
            "column 'label' is missing",
        ),
    ],
)
def test_a_csv_row_with_too_many_or_too_few_fields(tmp_path, content, where, hint):
    path = tmp_path / "f.csv"
    path.write_text(content)
    fails(path, where, hint)


def test_a_tsv_row_with_a_tab_in_a_text(tmp_path):
    path = tmp_path / "f.tsv"
    path.write_text("anchor\tpositive\na\tb\tc\n")
    fails(path, "line 2 has 3 tab-separated fields, expected 2", "may not hold a tab")


def test_a_csv_field_over_the_csv_modules_limit(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("text,label\n" + '"' + "x" * 200_000 + '",a\n')
    fails(path, "line 2", "cannot read it as CSV")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_byte_that_is_not_utf8(tmp_path, suffix):
    path = tmp_path / f"b{suffix}"
    sep = {".csv": b",", ".tsv": b"\t"}.get(suffix)
    if sep is None:
        path.write_bytes(b'{"text": "ok", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n')
        where = "line 2, column 'text'"
    else:
        path.write_bytes(b"text" + sep + b"label\nok" + sep + b"x\ncaf\xe9" + sep + b"y\n")
        where = "line 3, column 'text'"
    fails(path, where, "byte 0xE9 is not UTF-8")


def test_a_non_utf8_byte_in_a_header(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"text,lab\xffel\na,b\n")
    fails(path, "line 1, column 2", "byte 0xFF is not UTF-8")


def test_a_non_utf8_byte_in_a_jsonl_key(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"text": "a", "lab\xffel": "x"}\n')
    fails(path, "line 1, column", "byte 0xFF is not UTF-8")


def test_a_non_utf8_byte_outside_a_jsonl_string(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"text": "a", "label": 1}\n{"text": "b", \xff"label": 2}\n')
    fails(path, "line 2, column 15", "byte 0xFF is not UTF-8")


def test_a_lone_surrogate_escaped_in_json(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a\\ud800", "label": 1}\n{"text": "b", "label": 2}\n')
    fails(path, "line 1, column 'text'", "lone surrogate")


def test_a_non_utf8_byte_in_a_pair_label_is_named_as_such(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"sentence1,sentence2,label\na,b,\xff\n")
    fails(path, "line 2, column 'label'", "not UTF-8")


# --- read_lines --------------------------------------------------------------------


def test_read_lines(tmp_path):
    path = tmp_path / "q.txt"
    path.write_bytes("first\r\n  second \rthird, with a comma\n\ufeffé".encode())
    assert read_lines(path) == ["first", "second", "third, with a comma", "\ufeffé"]


def test_read_lines_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "q.txt"
    path.write_bytes(b"\xef\xbb\xbfone\ntwo\n")
    assert read_lines(path) == ["one", "two"]


@pytest.mark.parametrize(
    ("content", "line"), [("a\n\nb\n", 2), ("a\nb\n\n", 3), ("  \na\n", 1), ("a\r\n \r\nb", 2)]
)
def test_read_lines_refuses_a_blank_line(tmp_path, content, line):
    path = tmp_path / "q.txt"
    path.write_bytes(content.encode())
    with pytest.raises(DataError, match=rf"{re.escape(str(path))} line {line} is blank"):
        read_lines(path)


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n \n"])
def test_read_lines_refuses_an_empty_file(tmp_path, content):
    path = tmp_path / "q.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="is empty"):
        read_lines(path)


def test_read_lines_names_a_non_utf8_line(tmp_path):
    path = tmp_path / "q.txt"
    path.write_bytes(b"ok\nna\xefve\n")
    with pytest.raises(DataError, match=r"q\.txt line 2: byte 0xEF is not UTF-8"):
        read_lines(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_read_lines_refuses_a_table(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    path.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match="read_text_data"):
        read_lines(path)


def test_read_lines_of_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_lines(tmp_path / "none.txt")


# --- scores ------------------------------------------------------------------------


def test_scores_to_unit_with_inferred_ranges():
    assert scores_to_unit([0.0, 0.25, 1.0]).tolist() == [-1.0, -0.5, 1.0]
    assert scores_to_unit(torch.tensor([0.0, 2.5, 5.0])).tolist() == [-1.0, 0.0, 1.0]
    assert scores_to_unit([1, 4]).tolist() == pytest.approx([2 / 5 - 1, 8 / 5 - 1])


def test_scores_to_unit_with_an_explicit_range():
    out = scores_to_unit([1.0, 3.0, 5.0], low=1, high=5)
    assert out.dtype == torch.float64 and out.tolist() == [-1.0, 0.0, 1.0]
    # a range given explicitly wins over the inferred one
    assert scores_to_unit([0.0, 1.0], low=0.0, high=5.0).tolist() == [-1.0, -0.6]
    assert scores_to_unit([-1.0, 7.0], low=-1.0, high=7.0).tolist() == [-1.0, 1.0]


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20),
    st.floats(-1e6, 1e6),
    st.floats(1e-3, 1e6),
)
@FAST
def test_scores_to_unit_is_the_linear_map(values, low, width):
    high = low + width
    scores = [low + (v % width) if width > 0 else low for v in values]
    scores = [min(max(s, low), high) for s in scores]
    out = scores_to_unit(scores, low, high)
    assert bool((out >= -1).all() and (out <= 1).all())
    expected = [2 * (s - low) / (high - low) - 1 for s in scores]
    assert out.tolist() == pytest.approx(expected, abs=1e-9)


def test_infer_score_range():
    assert infer_score_range([0.0, 1.0]) == (0.0, 1.0)
    assert infer_score_range([0.0, 1.0001]) == (0.0, 5.0)
    assert infer_score_range(torch.tensor([5.0])) == (0.0, 5.0)
    with pytest.raises(ValueError, match=r"from -0\.5 to 1.*give their range"):
        infer_score_range([-0.5, 1.0])
    with pytest.raises(ValueError, match=r"from 0 to 7"):
        scores_to_unit([0.0, 7.0])


@pytest.mark.parametrize(
    ("scores", "kwargs", "error", "match"),
    [
        ([0.0, 6.0], {"low": 0, "high": 5}, ValueError, r"\[0, 5\], got 6 at index 1"),
        ([0.0], {"low": 0}, ValueError, "both low and high"),
        ([0.0], {"high": 5}, ValueError, "both low and high"),
        ([0.0], {"low": 1, "high": 1}, ValueError, "low must be below high"),
        ([0.0], {"low": 0, "high": float("inf")}, ValueError, "high must be finite"),
        ([0.0], {"low": "0", "high": 1}, TypeError, "low must be a real number"),
        ([0.0], {"low": True, "high": 2}, TypeError, "low must be a real number"),
        ([], {}, ValueError, "non-empty 1-D"),
        ([[0.0, 1.0]], {}, ValueError, "non-empty 1-D"),
        ([0.0, float("nan")], {}, ValueError, "finite, got nan at index 1"),
        (["a"], {}, TypeError, "sequence of numbers"),
        ("01", {}, TypeError, "tensor or a sequence"),
        (torch.tensor([True]), {}, TypeError, "real numbers"),
        (3.0, {}, TypeError, "tensor or a sequence"),
    ],
)
def test_scores_to_unit_bad_input(scores, kwargs, error, match):
    with pytest.raises(error, match=match):
        scores_to_unit(scores, **kwargs)


# --- sample ids ----------------------------------------------------------------------


def test_text_ids():
    ids = text_ids(["a", "b", "a", "c", "b", "A"])
    assert ids.dtype == torch.int64 and ids.tolist() == [0, 1, 0, 2, 1, 3]
    assert text_ids([]).tolist() == []


@given(st.lists(st.sampled_from(["a", "b", "c", "a ", "é"]), max_size=30))
@FAST
def test_text_ids_are_equal_exactly_for_equal_texts(texts):
    ids = text_ids(texts).tolist()
    for i in range(len(texts)):
        for j in range(len(texts)):
            assert (ids[i] == ids[j]) == (texts[i] == texts[j])


def test_row_ids_join_rows_that_share_a_text_in_any_column():
    anchors = ["a", "b", "c", "d", "e", "f"]
    positives = ["p", "p", "a", "q", "r", "e"]
    # rows 0, 1 share p; row 2's positive is row 0's anchor; row 5's positive is row 4's anchor
    assert row_ids(anchors, positives).tolist() == [0, 0, 0, 1, 2, 2]
    assert row_ids(anchors).tolist() == [0, 1, 2, 3, 4, 5]


def _components(columns):
    """Connected components of 'shares a text' by repeated merging (a reference)."""
    n = len(columns[0])
    groups = [{i} for i in range(n)]
    texts = [{column[i] for column in columns} for i in range(n)]
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if any(texts[i] & texts[j] for i in groups[a] for j in groups[b]):
                    groups[a] |= groups.pop(b)
                    merged = True
                    break
            if merged:
                break
    return groups


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.lists(
            st.lists(st.sampled_from("abcdefghijklmnop"), min_size=n, max_size=n),
            min_size=1,
            max_size=3,
        )
    )
)
@FAST
def test_row_ids_are_the_components_of_sharing_a_text(columns):
    ids = row_ids(*columns).tolist()
    groups = _components(columns)
    assert len(set(ids)) == len(groups)
    for group in groups:
        assert len({ids[i] for i in group}) == 1
    # numbered in the order of their first row
    firsts = [ids.index(v) for v in sorted(set(ids))]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((), ValueError, "at least one column"),
        ((["a"], ["b", "c"]), ValueError, "one length"),
        (("ab",), TypeError, r"columns\[0\] must be a sequence of strings"),
        ((["a", 1],), TypeError, r"columns\[0\]\[1\] must be a string"),
    ],
)
def test_row_ids_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        row_ids(*args)


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ("abc", TypeError, "sequence of strings"),
        ([b"a"], TypeError, r"texts\[0\] must be a string"),
    ],
)
def test_text_ids_bad_input(texts, error, match):
    with pytest.raises(error, match=match):
        text_ids(texts)


def test_ids_keep_copies_from_being_negatives_in_a_loss():
    """With row_ids, a row whose positive repeats another row's sees only the other rows."""
    from contrastkit.functional import nt_xent

    anchors, positives = ["a", "b", "c"], ["p", "p", "q"]
    ids = row_ids(anchors, positives)
    assert ids.tolist() == [0, 0, 1]
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    z2 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    z2[1] = z2[0]  # the same text embeds the same
    with_ids = nt_xent(z1, z2, ids=ids, reduction="none")  # z1's anchors, then z2's
    for row in (0, 1):  # its candidates: its own views and those of row 2 only
        alone = nt_xent(z1[[row, 2]], z2[[row, 2]], reduction="none")
        assert with_ids[row].item() == pytest.approx(alone[0].item(), rel=1e-12)
        assert with_ids[3 + row].item() == pytest.approx(alone[2].item(), rel=1e-12)
    without = nt_xent(z1, z2, reduction="none")
    assert without[0].item() > with_ids[0].item()  # the copy was a (hard) negative
