"""Labeled text: CSV/TSV/JSONL loading and its errors, labels, splits, weights, padding."""
import csv
import json
import re
import warnings

import numpy as np
import pytest

from minift.data import (
    Tokenizer, class_weights, encode_labels, encode_texts, label_vocabulary,
    load_labeled, pad_batch, stratified_split,
)
from minift.errors import MiniftError

ROWS = [
    ("I love it, truly", "positive"),
    ('He said "meh"', "neutral"),
    ("Broke on day one.\nNever again.", "negative"),
    ("Naïve café 😀", "positive"),
]


def write_delimited(path, rows, delimiter, header=("text", "label")):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, objects):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects),
                    encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("name, delimiter", [("d.csv", ","), ("d.tsv", "\t")])
def test_delimited_round_trip(tmp_path, name, delimiter):
    data = load_labeled(write_delimited(tmp_path / name, ROWS, delimiter))
    assert data.texts == [t for t, _ in ROWS]           # commas, quotes, newlines intact
    assert data.labels == [l for _, l in ROWS]
    assert data.source == str(tmp_path / name)
    assert data.n_skipped_empty == 0 and len(data) == 4


def test_jsonl_round_trip_and_numeric_labels(tmp_path):
    objects = [{"text": t, "label": l} for t, l in ROWS]
    objects += [{"text": "five stars", "label": 5}, {"text": "one", "label": 1.0},
                {"text": "sep\u2028inside", "label": "neutral"}]
    for name in ("d.jsonl", "d.json"):
        data = load_labeled(write_jsonl(tmp_path / name, objects))
        assert data.texts == [o["text"] for o in objects]
        assert data.labels == ["positive", "neutral", "negative", "positive", "5", "1", "neutral"]


def test_csv_quoted_commas_and_newlines_from_raw_text(tmp_path):
    p = tmp_path / "raw.csv"
    p.write_bytes('\ufefftext,label\r\n"a, b",pos\r\n"multi\nline ""quoted""",neg\r\n'
                  'plain,  neutral \r\n'.encode("utf-8"))     # BOM, CRLF, padded label
    data = load_labeled(p)
    assert data.texts == ["a, b", 'multi\nline "quoted"', "plain"]
    assert data.labels == ["pos", "neg", "neutral"]


def test_custom_columns_and_explicit_format(tmp_path):
    p = write_delimited(tmp_path / "reviews.data", [("x1", "7", "good"), ("x2", "8", "bad")],
                        ",", header=("id", "review", "sentiment"))
    data = load_labeled(p, text_column="review", label_column="sentiment", fmt="csv")
    assert data.texts == ["7", "8"] and data.labels == ["good", "bad"]
    q = write_jsonl(tmp_path / "r.txt", [{"body": "hello", "y": "a"}])
    data = load_labeled(q, text_column="body", label_column="y", fmt="jsonl")
    assert data.texts == ["hello"] and data.labels == ["a"]


def test_empty_rows_are_skipped_and_counted(tmp_path):
    p = write_delimited(tmp_path / "e.csv", [("good", "pos"), ("", "neg"), ("   ", "neg"),
                                             ("bad", "neg")], ",")
    with open(p, "a", encoding="utf-8") as f:
        f.write("\n\n")                                     # trailing blank lines
    data = load_labeled(p)
    assert data.texts == ["good", "bad"] and data.n_skipped_empty == 2
    q = write_jsonl(tmp_path / "e.jsonl", [{"text": None, "label": "x"},
                                           {"text": "", "label": "x"},
                                           {"text": "ok", "label": "y"}])
    data = load_labeled(q)
    assert data.texts == ["ok"] and data.n_skipped_empty == 2


# ----------------------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_labeled(tmp_path / "absent.csv")


def load_error(path, content=None):
    """The message of the MiniftError that loading `path` raises, after writing `content`."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(MiniftError) as err:
        load_labeled(path)
    return str(err.value)


def test_unknown_extension_without_fmt(tmp_path):
    assert re.search("'.xlsx'.*fmt=", load_error(tmp_path / "data.xlsx", "x"))


def test_missing_column_names_it_and_lists_the_present_ones(tmp_path):
    message = load_error(write_delimited(tmp_path / "c.csv", [("a", "b")], ",",
                                         header=("review", "label")))
    assert "c.csv" in message and "'text'" in message
    assert "['review', 'label']" in message and "text_column=" in message
    assert "--text-column" in message                       # the command-line name too
    message = load_error(write_jsonl(tmp_path / "c.jsonl",
                                     [{"text": "a", "label": "b"}, {"text": "a", "lab": "b"}]))
    assert "c.jsonl: line 2" in message and "'label'" in message and "['text', 'lab']" in message
    assert "--label-column" in message and "label_column=" in message


def test_undecodable_bytes_name_file_and_line(tmp_path):
    message = load_error(tmp_path / "bad.csv", b"text,label\ngood,pos\ncaf\xe9,neg\n")
    assert "bad.csv" in message and "line 3" in message
    assert "UTF-8" in message


def test_malformed_json_names_file_line_and_column(tmp_path):
    message = load_error(tmp_path / "bad.jsonl",
                         '{"text": "ok", "label": "a"}\n\n{"text": "oops" "label": "b"}\n')
    assert "bad.jsonl: line 3, column 17" in message and "invalid JSON" in message


def test_json_array_and_non_object_lines_are_explained(tmp_path):
    message = load_error(tmp_path / "array.json", '[{"text": "a", "label": "b"}]')
    assert re.search("line 1: expected a JSON object.*JSON Lines", message)
    message = load_error(tmp_path / "pretty.json", '[\n  {"text": "a", "label": "b"}\n]\n')
    assert re.search("line 1, column 2: invalid JSON.*JSON Lines", message)
    message = load_error(tmp_path / "list.jsonl", '["a", "b"]\n')
    assert re.search("line 1: expected a JSON object", message)


def test_missing_label_names_file_and_line(tmp_path):
    p = write_delimited(tmp_path / "m.csv", [("fine", "pos"), ("no label", "")], ",")
    assert re.search(r"m\.csv: line 3: the label \('label'\) is missing", load_error(p))
    q = write_jsonl(tmp_path / "m.jsonl",
                    [{"text": "a", "label": "x"}, {"text": "b", "label": None}])
    assert re.search(r"m\.jsonl: line 2: the label", load_error(q))


def test_line_numbers_count_multiline_records(tmp_path):
    # The bad record starts on line 4, after a record that spans lines 2-3.
    message = load_error(tmp_path / "ml.csv", 'text,label\n"two\nlines",pos\nunlabeled,\n')
    assert re.search("ml.csv: line 4", message)


def test_wrong_field_count_and_bad_quoting(tmp_path):
    message = load_error(tmp_path / "f.csv", "text,label\nok,pos\nunquoted, comma,neg\n")
    assert re.search("f.csv: line 3: expected 2 fields .* found 3", message)
    message = load_error(tmp_path / "q.csv", 'text,label\nok,pos\n"closed" then more,neg\n')
    assert re.search("q.csv: line 3: malformed CSV", message)


def test_empty_file(tmp_path):
    assert re.search("empty.csv: the file is empty", load_error(tmp_path / "empty.csv", ""))
    message = load_error(tmp_path / "empty.jsonl", "\n  \n")
    assert re.search("empty.jsonl: the file is empty.*JSON Lines", message)


def test_a_file_without_examples_loads_empty_but_cannot_train(tmp_path):
    header = write_delimited(tmp_path / "header.csv", [], ",")
    data = load_labeled(header)
    assert len(data) == 0 and data.n_skipped_empty == 0
    with pytest.raises(MiniftError) as err:
        data.require_examples()
    assert str(err.value) == f"{header}: no labeled examples (only a header row)"
    blank = write_delimited(tmp_path / "blank.tsv", [("", "pos"), (" ", "neg")], "\t")
    with pytest.raises(MiniftError) as err:
        load_labeled(blank).require_examples()
    assert str(err.value) == f"{blank}: no labeled examples (all 2 rows have empty text)"
    full = load_labeled(write_delimited(tmp_path / "ok.csv", ROWS, ","))
    assert full.require_examples() is full


# ----------------------------------------------------------------------------- labels

def test_label_vocabulary_is_sorted():
    assert label_vocabulary(["positive", "negative", "neutral", "positive"]) == \
        ["negative", "neutral", "positive"]
    with pytest.raises(ValueError):
        label_vocabulary([])


def test_encode_labels_and_unknown_label_error():
    vocab = ["negative", "neutral", "positive"]
    ids = encode_labels(["positive", "negative", "neutral"], vocab)
    assert ids.tolist() == [2, 0, 1] and ids.dtype == np.int64
    with pytest.raises(MiniftError) as err:
        encode_labels(["positive", "mixed"], vocab, source="test.csv")
    message = str(err.value)
    assert "'mixed'" in message and "test.csv" in message
    assert "['negative', 'neutral', 'positive']" in message


# ----------------------------------------------------------------------------- splits

def test_stratified_split_keeps_proportions():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    train, val = stratified_split(labels, val_fraction=0.2, seed=0)
    assert sorted(train.tolist() + val.tolist()) == list(range(100))   # a partition
    val_labels = [labels[i] for i in val]
    assert [val_labels.count(c) for c in "abc"] == [12, 6, 2]
    assert train.dtype == val.dtype == np.int64


def test_small_classes_still_reach_validation():
    labels = ["big"] * 20 + ["pair"] * 2 + ["solo"]
    train, val = stratified_split(labels, val_fraction=0.1, seed=1)
    val_labels = [labels[i] for i in val]
    train_labels = [labels[i] for i in train]
    assert val_labels.count("pair") == 1 and train_labels.count("pair") == 1
    assert "solo" in train_labels and "solo" not in val_labels


def test_stratified_split_is_deterministic_by_seed():
    labels = [i % 3 for i in range(90)]
    a = stratified_split(labels, 0.25, seed=5)
    b = stratified_split(labels, 0.25, seed=5)
    c = stratified_split(labels, 0.25, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_split_of_a_plain_count():
    train, val = stratified_split(50, val_fraction=0.2, seed=0)
    assert len(val) == 10 and sorted(train.tolist() + val.tolist()) == list(range(50))
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(50, val_fraction=1.0, seed=0)


# ----------------------------------------------------------------------------- weights

def test_class_weights_inverse_frequency_mean_one():
    w = class_weights([0] * 6 + [1] * 3 + [2], num_classes=3)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w / w[0], [1.0, 2.0, 6.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights([0, 1, 0, 1], 2), [1.0, 1.0])


def test_class_without_examples_gets_zero_and_a_warning():
    with pytest.warns(UserWarning, match=r"classes \[1\]"):
        w = class_weights([0, 0, 2], num_classes=3)
    assert w[1] == 0.0
    np.testing.assert_allclose(w[[0, 2]].mean(), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="0..1"):
        class_weights([0, 2], num_classes=2)


# ----------------------------------------------------------------------------- model inputs

TOK = Tokenizer.train([t for t, _ in ROWS] * 5, vocab_size=300)


def test_encode_texts_truncates_and_counts():
    texts = ["short", "a much longer text " * 20, "x"]
    seqs, n_truncated = encode_texts(texts, TOK, max_len=8)
    assert n_truncated == 1
    assert seqs[1] == TOK.encode(texts[1])[:8]                # the first tokens are kept
    assert seqs[0] == TOK.encode("short") and seqs[2] == TOK.encode("x")
    with pytest.raises(ValueError, match="max_len"):
        encode_texts(texts, TOK, max_len=0)


def test_pad_batch_right_pads():
    ids, lengths = pad_batch([[5, 6, 7], [8], [9, 10]], pad_id=1)
    assert ids.dtype == lengths.dtype == np.int64
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1], [9, 10, 1]]
    assert lengths.tolist() == [3, 1, 2]
    with pytest.raises(ValueError):
        pad_batch([], pad_id=1)


def test_no_warnings_on_the_happy_path(tmp_path):
    p = write_delimited(tmp_path / "ok.csv", ROWS, ",")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_labeled(p)
        vocab = label_vocabulary(data.labels)
        class_weights(encode_labels(data.labels, vocab), len(vocab))
