"""Using a fine-tuned run on your data: `classify --input FILE|-`, `--output` (CSV) and
`--json` (JSON Lines), `evaluate`, and FinetunedModel's predict / predict_proba /
evaluate. Every number is checked against the model's own predict_proba or against
classification_metrics computed directly; every mistake is one sentence."""
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minift import cli
from minift.adapt import FinetuneConfig, classification_metrics, finetune, load_finetuned
from minift.data import feedback, load_texts, parse_texts
from minift.errors import MiniftError
from minift.pretrain import PretrainConfig, pretrain
from quiet import Silent, quiet
from scripts import write_jsonl

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
TEXTS = ["The strap is stellar.", "Frankly abysmal, and the lid is poor.", "It arrived on Tuesday.",
         'A "quoted" text, with a comma\nand a second line.']


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(code, err):
    return code == 2 and err.count("\n") == 1 and "Traceback" not in err


def strict_json(line):
    """json.loads that refuses NaN and Infinity, which Python's json writes by default."""
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (folder / "corpus.txt").write_text(feedback.corpus_text(n_bytes=30_000, seed=3), encoding="utf-8")
    sets = feedback.labeled_sets(seed=0, n_train=20, n_test=9)
    for name, rows in (("train", sets["train"]), ("test", sets["test_a"])):
        write_jsonl(folder / f"{name}.jsonl", rows)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, files):
    """A tiny pretrained GPT fine-tuned for one epoch: seconds, and a real run directory."""
    pre = tmp_path_factory.mktemp("pre") / "R"
    pretrain(pre, PretrainConfig(corpus_files=[str(files / "corpus.txt")], preset="tiny", steps=2, batch_size=2,
                                 eval_every=2, vocab_size=300, seed=1), log=quiet, progress=Silent())
    out = tmp_path_factory.mktemp("ft") / "FT"
    finetune(pre, out, FinetuneConfig(train_file=str(files / "train.jsonl"), epochs=1), log=quiet,
             progress=Silent())
    return out


@pytest.fixture(scope="module")
def model(run):
    return load_finetuned(run)


def write_inputs(folder):
    """The same TEXTS as CSV (column "review", a label column beside it), JSONL and .txt
    (whose one-text-a-line format cannot hold the text with a newline)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["id", "review", "label"])
    writer.writerows([i, text, "x"] for i, text in enumerate(TEXTS))
    (folder / "in.csv").write_text(buffer.getvalue(), encoding="utf-8", newline="")
    (folder / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    (folder / "in.txt").write_text("\n".join(TEXTS[:3]) + "\n\n", encoding="utf-8")


def json_lines(out):
    return [strict_json(line) for line in out.splitlines()]


# ----------------------------------------------------------------------------- reading texts

def test_load_texts_reads_each_format_and_skips_empty_rows(tmp_path):
    write_inputs(tmp_path)
    assert load_texts(tmp_path / "in.csv", text_column="review") == (TEXTS, 0)
    assert load_texts(tmp_path / "in.jsonl") == (TEXTS, 0)
    assert load_texts(tmp_path / "in.txt") == (TEXTS[:3], 1)            # the blank line at the end
    assert parse_texts(b"a\r\nb\n  \nc", "standard input") == (["a", "b", "c"], 1)
    assert parse_texts(b'{"text": null}\n{"text": "a", "other": 1}\n', "s", "jsonl") == (["a"], 1)
    assert parse_texts(b"text\n\"\"\nb\n", "s", "csv") == (["b"], 1)


@pytest.mark.parametrize("name, flags", [("in.csv", ["--text-column", "review"]), ("in.jsonl", []),
                                         ("in.txt", [])])
def test_classify_input_file_gives_the_models_predictions(capsys, run, model, tmp_path, name, flags):
    write_inputs(tmp_path)
    code, out, err = run_cli(capsys, "classify", "--model", run, "--input", tmp_path / name, *flags, "--json")
    assert code == 0, err
    rows = json_lines(out)
    texts = TEXTS[:3] if name == "in.txt" else TEXTS
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == model.predict(texts)
    assert np.allclose([list(r["probabilities"].values()) for r in rows], model.predict_proba(texts), atol=1e-12)
    assert ("1 empty row(s) skipped" in err) == (name == "in.txt")       # the blank line at its end


def test_classify_reads_standard_input_in_a_real_pipe(run, model, tmp_path):
    """`classify -` and `--input -` read standard input (one text a line by default, or
    --format jsonl); "-" itself is never classified."""
    for args, data in ((["-"], "\n".join(TEXTS[:3]) + "\n"),
                       (["--input", "-", "--format", "jsonl"], "".join(json.dumps({"text": t}) + "\n"
                                                                         for t in TEXTS))):
        done = subprocess.run([sys.executable, "-m", "minift", "classify", "--model", str(run), *args, "--json"],
                              input=data.encode(), capture_output=True, env=ENV, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        rows = json_lines(done.stdout.decode())
        texts = [r["text"] for r in rows]
        assert texts == (TEXTS[:3] if args == ["-"] else TEXTS)
        assert [r["label"] for r in rows] == model.predict(texts)


def test_classify_text_arguments_print_as_before(capsys, run, model):
    code, out, _ = run_cli(capsys, "classify", "--model", run, *TEXTS[:2])
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and lines[1].endswith(TEXTS[1])
    assert [line.split()[0] for line in lines] == model.predict(TEXTS[:2])


# ----------------------------------------------------------------------------- writing predictions

def test_output_csv_has_a_probability_column_a_label_summing_to_one(capsys, run, model, tmp_path):
    write_inputs(tmp_path)
    out_file = tmp_path / "out" / "predictions.csv"
    code, out, err = run_cli(capsys, "classify", "--model", run, "--input", tmp_path / "in.jsonl",
                             "--output", out_file)
    assert code == 0, err
    assert f"wrote {out_file}" in out
    with open(out_file, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["text", "label"] + [f"p_{name}" for name in model.labels]
    probs = np.array([[float(v) for v in row[2:]] for row in rows[1:]])
    assert [row[0] for row in rows[1:]] == TEXTS                         # the text with a newline too
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(probs, model.predict_proba(TEXTS))             # written in full precision
    assert [row[1] for row in rows[1:]] == model.predict(TEXTS)


def test_json_lines_are_strict_json_with_every_label(capsys, run, model):
    code, out, _ = run_cli(capsys, "classify", "--model", run, "--json", *TEXTS)
    rows = json_lines(out)
    assert code == 0 and len(rows) == len(TEXTS)
    assert all(set(r) == {"text", "label", "probabilities"} and list(r["probabilities"]) == model.labels
               for r in rows)
    assert "NaN" not in out and all(abs(sum(r["probabilities"].values()) - 1) < 1e-12 for r in rows)


# ----------------------------------------------------------------------------- the Python API and evaluate

def test_predict_is_the_argmax_of_predict_proba_and_evaluate_is_classification_metrics(model, files):
    data = [json.loads(line) for line in (files / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    texts, labels = [d["text"] for d in data], [d["label"] for d in data]
    probs = model.predict_proba(texts)
    assert probs.shape == (len(texts), len(model.labels)) and np.allclose(probs.sum(axis=1), 1.0)
    assert np.array_equal(probs, model.classify(texts)[0])
    assert model.predict(texts) == [model.labels[j] for j in probs.argmax(axis=1)]
    y_true = [model.labels.index(lab) for lab in labels]
    assert model.evaluate(texts, labels) == classification_metrics(y_true, probs.argmax(axis=1), model.labels)


def test_evaluate_prints_the_table_and_writes_the_same_numbers(capsys, run, model, files, tmp_path):
    data = [json.loads(line) for line in (files / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    texts, labels = [d["text"] for d in data], [d["label"] for d in data]
    expected = classification_metrics([model.labels.index(lab) for lab in labels],
                                      model.predict_proba(texts).argmax(axis=1), model.labels)
    code, out, err = run_cli(capsys, "evaluate", "--model", run, "--test", files / "test.jsonl",
                             "--json", tmp_path / "m.json")
    assert code == 0, err
    assert f"test: accuracy {expected['accuracy']:.1%}   macro-F1 {expected['macro_f1']:.3f}" in out
    assert "confusion (rows: true label, columns: predicted)" in out
    written = strict_json((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert {k: written[k] for k in expected} == expected
    assert written["test"] == str(files / "test.jsonl")


# ----------------------------------------------------------------------------- mistakes: one sentence

def test_python_api_mistakes_are_one_sentence(model):
    with pytest.raises(MiniftError, match="not one string"):
        model.predict("The strap is stellar.")
    with pytest.raises(MiniftError, match="2 texts but 1 labels"):
        model.evaluate(TEXTS[:2], ["positive"])
    with pytest.raises(MiniftError, match="'great' not among the known labels"):
        model.evaluate(TEXTS[:1], ["great"])
    with pytest.raises(MiniftError, match="no examples"):
        model.evaluate([], [])


def test_command_line_mistakes_are_one_sentence_and_write_nothing(capsys, run, tmp_path):
    write_inputs(tmp_path)
    (tmp_path / "in.doc").write_text("x", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    (tmp_path / "bad.csv").write_text("label,text\npositive,Great.\ngreat,Fine.\n", encoding="utf-8")
    out_file = tmp_path / "never.csv"
    cases = [
        (["classify", "--model", run, "-", "Fine."], "'-' means standard input"),
        (["classify", "--model", run], "nothing to classify"),
        (["classify", "--model", run, "Fine.", "--input", tmp_path / "in.txt"], "not both"),
        (["classify", "--model", run, "--input", tmp_path / "in.doc"], "--format"),
        (["classify", "--model", run, "--input", tmp_path / "in.csv"], "no column 'text'"),
        (["classify", "--model", run, "--input", tmp_path / "empty.txt"], "all 2 rows are empty"),
        (["classify", "--model", run, "--input", tmp_path / "missing.txt"], "missing.txt"),
        (["classify", "--model", run, "--input", tmp_path / "in.txt", "--output", tmp_path / "in.txt"],
         "also the input file"),
        (["classify", "--model", run, "Fine.", "--output", Path(run) / "p.csv"], "inside the run directory"),
        (["classify", "--model", tmp_path / "no-run", "Fine.", "--output", out_file], "no-run"),
        (["evaluate", "--model", run, "--test", tmp_path / "bad.csv", "--json", out_file],
         "bad.csv: label(s) 'great' not among the known labels"),
        (["evaluate", "--model", run, "--test", tmp_path / "in.csv", "--json", out_file], "no column 'text'"),
        (["evaluate", "--model", run, "--test", tmp_path / "bad.csv", "--json", Path(run) / "metrics.json"],
         "inside the run directory"),
    ]
    before = sorted(p.name for p in Path(run).iterdir())
    for args, expected in cases:
        code, out, err = run_cli(capsys, *args)
        assert one_sentence(code, err) and expected in err, (args, err)
    assert not out_file.exists() and sorted(p.name for p in Path(run).iterdir()) == before
