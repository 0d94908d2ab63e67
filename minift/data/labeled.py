"""Labeled text for fine-tuning: loading, label ids, splits, class weights, padding.

    data = load_labeled("train.csv")                  # columns "text" and "label"
    vocab = label_vocabulary(data.labels)             # ["negative", "neutral", "positive"]
    y = encode_labels(data.labels, vocab, source=data.source)
    train_idx, val_idx = stratified_split(data.labels, val_fraction=0.2, seed=0)
    seqs, n_cut = encode_texts(data.texts, tokenizer, max_len=128)
    ids, lengths = pad_batch([seqs[i] for i in train_idx[:16]], tokenizer.pad_id)

    texts, n_skipped = load_texts("new.jsonl")        # unlabeled texts to classify (.txt too)

Files are CSV, TSV or JSON Lines in UTF-8 (texts to classify may also be plain text).
Every problem in a file is reported with the file name and the line, because a bad row
in a few thousand is otherwise hard to find, as a MiniftError: the file is the user's to fix, not a bug in minift.
"""
import csv
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MiniftError
from ..files import atomic_write
from .text import check_text, decode_utf8, require_file, tabular_format

__all__ = [
    "LabeledData", "load_labeled", "load_column", "load_texts", "parse_texts", "write_labeled", "export_builtin",
    "label_vocabulary", "encode_labels", "stratified_split", "class_weights", "encode_texts", "pad_batch",
]

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass
class LabeledData:
    """Texts and their label names, as read from `source`.

    `n_skipped_empty` counts the rows whose text was empty (or only whitespace): they
    carry nothing to classify, so they are dropped rather than trained on.
    """
    texts: list
    labels: list
    source: str
    n_skipped_empty: int = 0

    def __len__(self):
        return len(self.texts)

    def require_examples(self):
        """Return self, or raise a MiniftError naming the file if it holds no example.

        `load_labeled` accepts a CSV / TSV file with a header and no rows (a valid, if
        empty, test set); training needs at least one example, so call this first. The
        message assumes a file read by `load_labeled` (an empty JSONL file is already
        an error there).
        """
        if self.texts:
            return self
        if self.n_skipped_empty:
            why = f"all {self.n_skipped_empty} rows have empty text"
        else:
            why = "only a header row"
        raise MiniftError(f"{self.source}: no labeled examples ({why})")


# ----------------------------------------------------------------------------- loading

FIELD_LIMIT = 1 << 30       # characters in one CSV/TSV field (a text of a gigabyte is not a review)


def load_labeled(path, text_column="text", label_column="label", fmt=None):
    """Read labeled examples from a CSV, TSV or JSONL file.

    The format comes from the extension (.csv, .tsv, .jsonl, .json = JSON Lines) or from
    `fmt` ("csv", "tsv" or "jsonl"). CSV and TSV have a header row and follow the usual
    quoting rules: a field holding the delimiter, a quote or a newline is enclosed in
    double quotes. JSONL has one JSON object per line.

    Labels are kept as strings with surrounding whitespace stripped ("positive " would
    otherwise be a class of its own); numbers become strings (1 -> "1"). Texts are kept
    exactly as written. A row with empty text is skipped and counted; a row with text
    but no label is an error. Mistakes in the file raise a MiniftError naming the file
    and the line. A file with a header row and no rows gives an empty LabeledData (see
    `LabeledData.require_examples`); an empty JSONL file is an error, like an empty CSV.
    """
    path = Path(path)
    if fmt is None:
        fmt = _FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise MiniftError(f"{path}: cannot tell the format from the extension "
                              f"{path.suffix!r}; name the file .csv, .tsv, .jsonl or .json "
                              f"(or pass fmt='csv', 'tsv' or 'jsonl' in Python)")
    fmt = {"json": "jsonl"}.get(fmt, fmt)
    if fmt not in ("csv", "tsv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; expected 'csv', 'tsv' or 'jsonl'")
    require_file(path, "labeled data file")

    text = decode_utf8(path.read_bytes(), path)
    if fmt == "jsonl":
        rows = _jsonl_rows(text, path, text_column, label_column)
    else:
        delimiter = "," if fmt == "csv" else "\t"
        rows = _delimited_rows(text, path, delimiter, text_column, label_column)

    data = LabeledData(texts=[], labels=[], source=str(path))
    previous_limit = csv.field_size_limit(FIELD_LIMIT)        # the csv module's default is 128 KB a field
    try:
        _add_rows(data, rows, path, label_column)
    finally:
        csv.field_size_limit(previous_limit)
    return data


def load_column(path, column, argument="corpus_column"):
    """The values of one column of a CSV, TSV or JSONL file, one string per row, for
    pretraining on each row as a document. The format comes from the extension, or from
    the file's look (`text.tabular_format`); the reading, and its checks, are
    `load_labeled`'s. Surrounding whitespace is stripped and empty values are dropped.
    `argument` names the setting that chose the column in messages (--corpus-column)."""
    path = require_file(path, "corpus file")
    text = decode_utf8(path.read_bytes(), path)
    fmt = tabular_format(path, text)
    if fmt is None:
        flag = "--" + argument.replace("_", "-")
        raise MiniftError(f"{path}: {flag} reads a column of a CSV, TSV or JSONL file, and this one looks like "
                          f"plain text; name the file .csv, .tsv or .jsonl, or drop {flag}")
    if fmt == "jsonl":
        rows = _jsonl_rows(text, path, column, None, argument)
    else:
        rows = _delimited_rows(text, path, "," if fmt == "csv" else "\t", column, None, argument)
    previous_limit = csv.field_size_limit(FIELD_LIMIT)
    try:
        values = [value.replace("\r\n", "\n").replace("\r", "\n").strip() for _, value, _ in rows
                  if value is not None]
    finally:
        csv.field_size_limit(previous_limit)
    return [value for value in values if value]


def write_labeled(path, texts, labels, text_column="text", label_column="label"):
    """Write labeled examples as CSV, TSV or JSONL (by the extension, as `load_labeled`
    reads them: .csv, .tsv, .jsonl or .json), atomically; returns the path. Quoting is the
    csv module's, so `load_labeled(path)` gives back the same texts and labels."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MiniftError(f"{path}: cannot tell the format from the extension {path.suffix!r}; name the file "
                          f".csv, .tsv, .jsonl or .json")
    out = io.StringIO(newline="")
    if fmt == "jsonl":
        for text, label in zip(texts, labels):
            out.write(json.dumps({text_column: text, label_column: label}, ensure_ascii=False) + "\n")
    else:
        writer = csv.writer(out, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        writer.writerow([text_column, label_column])
        writer.writerows(zip(texts, labels))
    return atomic_write(path, out.getvalue().encode("utf-8"))


def export_builtin(path, split="train"):
    """`minift data export`: write a split of the built-in reviews (train, test_a, test_b)
    as `write_labeled` does, or 1 MB of the unlabeled corpus ("corpus", plain text), so
    that the flags that read the user's own files can be tried at once. Returns what it did."""
    from . import feedback
    if split == "corpus":
        if tabular_format(path, ""):
            raise MiniftError(f"--out {path}: the corpus is plain text (documents separated by blank lines); "
                              f"name the file .txt")
        atomic_write(path, feedback.corpus_text(n_bytes=1_000_000, seed=0).encode("utf-8"))
        return f"wrote {path}  (try: python -m minift pretrain --corpus {path} --preset tiny --out DIR)"
    rows = feedback.labeled_sets(seed=0)[split]
    write_labeled(path, [text for text, _ in rows], [label for _, label in rows])
    return f"wrote {path}  ({len(rows)} reviews, columns text and label)"


def _add_rows(data, rows, path, label_column):
    """Append the (line, text, label) rows to `data`: empty texts skipped and counted,
    labels stripped, a text without a label refused."""
    for line, row_text, label in rows:
        if row_text is None or not row_text.strip():
            data.n_skipped_empty += 1
            continue
        if label is None or not label.strip():
            raise MiniftError(f"{path}: line {line}: the label ({label_column!r}) is "
                              f"missing; every row with text needs a label")
        data.texts.append(row_text)
        data.labels.append(label.strip())


def _delimited_rows(text, path, delimiter, text_column, label_column, argument="text_column"):
    """Yield (line, text, label) from CSV/TSV text; `line` is where the record starts.
    Without a label_column (None) the label is None; `argument` names the text column's
    setting in messages."""
    kind = "CSV" if delimiter == "," else "TSV"
    # newline="" hands line endings to the csv module, which needs them to read quoted
    # fields that span lines. strict=True turns malformed quoting into an error instead
    # of silently gluing rows together.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = None
    end_of_previous = 0                 # reader.line_num after the previous record
    while True:
        start = end_of_previous + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if "field limit" in str(e):
                raise MiniftError(f"{path}: line {start}: a field is longer than {FIELD_LIMIT:,} characters, the "
                                  f"most minift reads in one field") from None
            raise MiniftError(f"{path}: line {start}: malformed {kind} record ({e}); a "
                              f"field that contains the delimiter, a quote or a newline "
                              f"must be enclosed in double quotes, with inner quotes "
                              f"doubled (\"\")") from None
        end_of_previous = reader.line_num
        if not row:
            continue                    # a blank line
        if header is None:
            header = [name.strip() for name in row]
            text_i = _column_index(header, text_column, argument, path)
            label_i = None if label_column is None else _column_index(header, label_column, "label_column", path)
            continue
        if len(row) != len(header):
            raise MiniftError(f"{path}: line {start}: expected {len(header)} fields "
                              f"({', '.join(header)}), found {len(row)}; a field that "
                              f"contains the delimiter must be enclosed in double quotes")
        yield start, row[text_i], None if label_i is None else row[label_i]
    if header is None:
        names = repr(text_column) + ("" if label_column is None else f" and {label_column!r}")
        raise MiniftError(f"{path}: the file is empty; expected a header row naming the "
                          f"column{'s' if label_column is not None else ''} {names}")


def _column_index(header, column, argument, path):
    if column not in header:
        raise MiniftError(f"{path}: no column {column!r} in the header; "
                          f"{_other_columns(header, argument)}")
    return header.index(column)


def _other_columns(present, argument):
    """The end of a missing-column error, for both command-line and Python users."""
    flag = "--" + argument.replace("_", "-")
    return (f"the columns present are {present}. Choose another with {flag} "
            f"({argument}= in Python).")


def _jsonl_rows(text, path, text_column, label_column, argument="text_column"):
    """Yield (line, text, label) from JSON Lines text (label None without a label_column;
    `argument` names the text column's setting in messages)."""
    example = f'"{text_column}": "..."' + ("" if label_column is None else f', "{label_column}": "..."')
    expected = f"JSON Lines holds one complete object per line, such as {{{example}}}"
    if not text.strip():
        raise MiniftError(f"{path}: the file is empty; {expected}")
    # Split on "\n" only: str.splitlines would also split at U+2028 and other
    # separators, which JSON allows unescaped inside strings.
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MiniftError(f"{path}: line {line_no}, column {e.colno}: invalid JSON "
                              f"({e.msg}); {expected}") from None
        if not isinstance(obj, dict):
            raise MiniftError(f"{path}: line {line_no}: expected a JSON object, found "
                              f"{_json_type(obj)}; {expected}")
        for column, setting in ((text_column, argument), (label_column, "label_column")):
            if column is not None and column not in obj:
                raise MiniftError(f"{path}: line {line_no}: no column {column!r}; "
                                  f"{_other_columns(list(obj), setting)}")
        row_text = obj[text_column]
        if row_text is not None and not isinstance(row_text, str):
            raise MiniftError(f"{path}: line {line_no}: {text_column!r} is "
                              f"{_json_type(row_text)}, expected a string")
        label = None if label_column is None else _label_string(obj[label_column], path, line_no)
        for value, column in ((row_text, text_column), (label, label_column)):
            if value is not None:
                check_text(value, f"{path}: line {line_no}: {column!r}")
        yield line_no, row_text, label


def _label_string(value, path, line_no):
    """A JSON label as a string: "pos" -> "pos", 1 -> "1", 1.0 -> "1", true -> "true"."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):         # before int: bool is a subclass of int
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))          # 1.0 and 1 name the same class
    if isinstance(value, (int, float)):
        return str(value)
    raise MiniftError(f"{path}: line {line_no}: a label must be a string or a number, "
                      f"found {_json_type(value)}")


def _json_type(value):
    """The JSON name of a decoded value's type, for error messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------- texts to classify

TEXT_FORMATS = {**_FORMATS, ".txt": "txt"}


def load_texts(path, text_column="text", fmt=None):
    """Unlabeled texts to classify: (texts, number of empty rows skipped).

    The format comes from the extension (.csv, .tsv, .jsonl, .json, .txt) or `fmt`: CSV /
    TSV with a header row (the text in `text_column`, other columns ignored), JSON Lines
    (the text under the key `text_column`), or plain text ("txt"), one text a line.
    """
    path = Path(path)
    fmt = fmt or TEXT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MiniftError(f"{path}: cannot tell the format from the extension {path.suffix!r}; name the file "
                          f".csv, .tsv, .jsonl or .txt, or give --format (fmt= in Python)")
    require_file(path, "file of texts")
    return parse_texts(path.read_bytes(), path, fmt, text_column)


def parse_texts(data, source, fmt="txt", text_column="text"):
    """`load_texts` of bytes already read (standard input, say); `source` names them in errors."""
    if fmt not in ("csv", "tsv", "jsonl", "txt"):
        raise ValueError(f"unknown format {fmt!r}; expected 'csv', 'tsv', 'jsonl' or 'txt'")
    text = decode_utf8(data, source)
    if fmt == "txt":
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":
            lines.pop()                      # the newline that ends the last line starts no text
        rows = ((number, line, None) for number, line in enumerate(lines, start=1))
    elif fmt == "jsonl":
        rows = _jsonl_rows(text, source, text_column, None)
    else:
        rows = _delimited_rows(text, source, "," if fmt == "csv" else "\t", text_column, None)
    texts, skipped = [], 0
    previous_limit = csv.field_size_limit(FIELD_LIMIT)
    try:
        for _, row_text, _ in rows:
            if row_text is None or not row_text.strip():
                skipped += 1
            else:
                texts.append(row_text)
    finally:
        csv.field_size_limit(previous_limit)
    return texts, skipped


# ----------------------------------------------------------------------------- labels

def label_vocabulary(labels):
    """The label names in a stable order: sorted.

    Sorting makes class ids the same on every run and machine; for the built-in
    feedback data it gives ["negative", "neutral", "positive"].
    """
    vocab = sorted(set(labels))
    if not vocab:
        raise ValueError("no labels: cannot build a label vocabulary from an empty list")
    return vocab


def encode_labels(labels, vocab, source=None):
    """Label names -> int64 ids (positions in `vocab`).

    A label not in `vocab` (say, a test file with a class the training data never had)
    raises a MiniftError naming the label, the file `source` and the known labels.
    """
    index = {name: i for i, name in enumerate(vocab)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        where = f"{source}: " if source is not None else ""
        raise MiniftError(f"{where}label(s) {', '.join(map(repr, unknown))} not among the "
                          f"known labels {list(vocab)} (the training labels)")
    return np.array([index[label] for label in labels], dtype=np.int64)


# ----------------------------------------------------------------------------- splits

def stratified_split(n_or_labels, val_fraction, seed):
    """Split example indices into (train_idx, val_idx), keeping class proportions.

    `n_or_labels` is a list of labels (names or ids), or an int n for a plain random
    split of range(n). Each class gives about `val_fraction` of its examples to
    validation: at least one if it has two or more, and never all of them, so every
    class with 2+ examples appears on both sides. Both index arrays are sorted int64;
    the same seed gives the same split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if isinstance(n_or_labels, (int, np.integer)):
        labels = np.zeros(int(n_or_labels), dtype=np.int64)      # one single "class"
    else:
        labels = np.asarray(list(n_or_labels))
    rng = np.random.Generator(np.random.PCG64(seed))
    train_parts, val_parts = [], []
    for cls in np.unique(labels):                                 # sorted: deterministic
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        n_val = int(np.floor(len(members) * val_fraction + 0.5))  # round half up
        if len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        else:
            n_val = 0                                             # a lone example trains
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train_idx = np.sort(np.concatenate(train_parts + [np.zeros(0, np.int64)]))
    val_idx = np.sort(np.concatenate(val_parts + [np.zeros(0, np.int64)]))
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def class_weights(label_ids, num_classes):
    """Inverse-frequency class weights, float32, averaging 1 over the classes present.

    weight[c] is proportional to 1 / count[c]: a class with half as many examples counts
    twice as much per example in a weighted loss. A class with no examples gets weight 0
    and a warning (it cannot be learned from this data). Use the weights in a loss that
    divides by the sum of the weights of the batch, so their overall scale does not
    change the learning rate.
    """
    label_ids = np.asarray(label_ids, dtype=np.int64)
    if label_ids.size and (label_ids.min() < 0 or label_ids.max() >= num_classes):
        raise ValueError(f"label ids must lie in 0..{num_classes - 1}, found "
                         f"{label_ids.min()}..{label_ids.max()}")
    counts = np.bincount(label_ids, minlength=num_classes)
    present = counts > 0
    if not present.all():
        warnings.warn(f"classes {np.flatnonzero(~present).tolist()} have no examples; "
                      f"their class weight is 0", stacklevel=2)
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = 1.0 / counts[present]
    if present.any():
        weights[present] /= weights[present].mean()
    return weights.astype(np.float32)


# ----------------------------------------------------------------------------- model inputs

def encode_texts(texts, tokenizer, max_len):
    """Token ids for each text, cut to the first `max_len` tokens.

    Returns (list of id lists, number of texts that were cut), so a caller can report
    how much text a short context drops.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    seqs = tokenizer.encode_batch(texts)
    n_truncated = sum(len(ids) > max_len for ids in seqs)
    return [ids[:max_len] for ids in seqs], n_truncated


def pad_batch(seqs, pad_id):
    """Right-pad id sequences into one array.

    Returns (ids, lengths): ids is (B, Tmax) int64 with `pad_id` after each sequence's
    end, lengths is (B,) int64 with each sequence's true length (for masking/pooling).
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)                  # (B,)
    ids = np.full((len(seqs), int(lengths.max())), pad_id, dtype=np.int64)      # (B, Tmax)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = s
    return ids, lengths
