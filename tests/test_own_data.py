"""Your own data from a fresh clone: `data export` writes the built-in reviews as the files
the "your own data" commands read, a table given as a pretraining corpus is refused
unless --corpus-column names the column to read, and demos/label_budget.py plans to
pretrain what it is missing."""
import argparse
import json
from pathlib import Path

import pytest

from minift.cli import main
from minift.data import feedback, load_column, load_labeled, tabular_format, write_labeled
from minift.errors import MiniftError
from minift.pretrain import PretrainConfig, load_documents, pretrain
from scripts import load_script

DEMOS = Path(__file__).resolve().parent.parent / "demos"


@pytest.mark.parametrize("split,name", [("train", "reviews.csv"), ("test_a", "a.tsv"), ("test_b", "b.jsonl")])
def test_data_export_writes_the_built_in_set_that_load_labeled_reads_back(tmp_path, capsys, split, name):
    assert main(["data", "export", "--out", str(tmp_path / name), "--split", split]) == 0
    data = load_labeled(tmp_path / name)
    rows = feedback.labeled_sets(seed=0)[split]
    assert list(zip(data.texts, data.labels)) == rows and len(rows) >= 300
    assert f"wrote {tmp_path / name}" in capsys.readouterr().out


def test_data_export_refuses_what_it_cannot_write_before_writing(tmp_path, capsys):
    assert main(["data", "export", "--out", str(tmp_path / "r.xlsx")]) == 2
    assert "'.xlsx'" in capsys.readouterr().err
    assert main(["data", "export", "--split", "corpus", "--out", str(tmp_path / "c.csv")]) == 2
    assert "name the file .txt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["data", "export", "--split", "corpus", "--out", str(tmp_path / "c.txt")]) == 0
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == feedback.corpus_text(n_bytes=1_000_000, seed=0)


def test_write_labeled_round_trips_quotes_delimiters_and_newlines(tmp_path):
    texts = ['He said "fine", then\tleft.', "two\nlines", " padded "]
    for name in ("x.csv", "x.tsv", "x.jsonl"):
        data = load_labeled(write_labeled(tmp_path / name, texts, ["a", "b", "c"]))
        assert (data.texts, data.labels) == (texts, ["a", "b", "c"]), name


@pytest.mark.parametrize("text,expected", [
    ("text,label\nGood.,positive\n", "csv"), ("\n\ntext\tlabel\n", "tsv"), ('{"text": "Good."}\n', "jsonl"),
    ("Hello, world.\n\nAnother document.\n", None), ("review text,stars\n", None), ("{not json}\n", None),
    ('["a", "b"]\n', None), ("The strap is stellar.\n", None)])
def test_a_table_is_told_from_prose_conservatively(tmp_path, text, expected):
    assert tabular_format(tmp_path / "notes.txt", text) == expected
    assert tabular_format(tmp_path / "notes.CSV", "The strap is stellar.") == "csv"      # the extension decides


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["train.csv", "train.txt"])
def test_a_csv_corpus_is_refused_in_one_sentence_naming_the_flag(tmp_path, name):
    path = write(tmp_path / name, "text,label\nThe strap is stellar.,positive\n")
    with pytest.raises(MiniftError) as e:
        load_documents(PretrainConfig(corpus_files=[path]))
    message = str(e.value)
    assert str(path) in message and "--corpus-column NAME" in message and message.count(". ") == 0
    with pytest.raises(MiniftError, match="--corpus-column"):           # nothing is written
        pretrain(tmp_path / "run", PretrainConfig(corpus_files=[path], preset="tiny", steps=1), log=lambda *a: None)
    assert not (tmp_path / "run" / "config.json").exists()


def test_corpus_column_reads_one_document_a_row(tmp_path):
    rows = ['Line one,\nline two of "one" review.', "Second review.", "  ", "Third review."]
    csv_file = write_labeled(tmp_path / "train.csv", rows, ["a", "b", "c", "d"])
    jsonl = write(tmp_path / "rows.txt", "".join(json.dumps({"body": r, "n": 1}) + "\n" for r in rows))
    config = PretrainConfig(corpus_files=[csv_file], corpus_column="text")
    expected = [rows[0], "Second review.", "Third review."]
    assert load_documents(config) == expected
    assert load_column(jsonl, "body") == expected                        # JSONL, told by its look
    with pytest.raises(MiniftError, match=r"no column 'txt'.*--corpus-column"):
        load_column(csv_file, "txt")
    with pytest.raises(MiniftError, match="looks like plain text"):
        load_column(write(tmp_path / "notes.txt", "Just prose.\n"), "text")
    with pytest.raises(MiniftError, match="without --corpus"):
        PretrainConfig(corpus_column="text")
    with pytest.raises(MiniftError, match="got ''"):
        PretrainConfig(corpus_files=[csv_file], corpus_column="")


def test_cli_pretrains_on_a_column_and_resume_keeps_it(tmp_path, capsys):
    corpus = tmp_path / "reviews.csv"
    assert main(["data", "export", "--out", str(corpus)]) == 0
    out = str(tmp_path / "run")
    assert main(["pretrain", "--out", out, "--corpus", str(corpus), "--preset", "tiny", "--steps", "1"]) == 2
    assert "--corpus-column NAME" in capsys.readouterr().err
    assert main(["pretrain", "--out", out, "--corpus", str(corpus), "--corpus-column", "text", "--preset", "tiny",
                 "--steps", "2", "--batch-size", "2", "--reference"]) == 0
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert train["corpus_column"] == "text"
    assert main(["pretrain", "--out", out, "--resume", "--corpus-column", "label"]) == 2
    assert "--corpus-column label contradicts" in capsys.readouterr().err


def demo(name):
    return load_script(DEMOS / f"{name}.py", f"{name}_demo")


@pytest.fixture(scope="module")
def label_budget():
    return demo("label_budget")


@pytest.fixture(scope="module")
def pretrained_runs():
    return demo("pretrained_runs")


def test_label_budget_plans_to_pretrain_what_is_missing(label_budget, pretrained_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # a fresh clone: no runs/ at all
    args = argparse.Namespace(decoder=None, encoder=None, quick=True, strategies=label_budget.STRATEGIES)
    models = label_budget.pretrained_models(args)
    assert [(arch, str(init)) for arch, init, _ in models] == [
        ("decoder", "runs/small"), ("encoder", "runs/small-encoder-quick")]
    decoder, encoder = models[0][2], models[1][2]
    assert decoder == PretrainConfig(preset="small")                    # quickstart's recipe: shared runs/small
    assert encoder.arch == "encoder" and encoder.steps * encoder.batch_size < 3000 * 32
    plan = pretrained_runs.pretraining_plan
    assert [plan(init, config) for _, init, config in models] == ["pretrain", "pretrain"]
    args.quick = False
    models = label_budget.pretrained_models(args)
    assert str(models[1][1]) == "runs/small-encoder" and models[1][2] == PretrainConfig(preset="small", arch="encoder")
    args.strategies = ["prompt"]                     # the encoder answers no prompt: not made for it
    assert [arch for arch, _, _ in label_budget.pretrained_models(args)] == ["decoder"]


def test_a_pretraining_directory_is_reused_resumed_made_or_left_alone(pretrained_runs, tmp_path):
    runs = pretrained_runs
    corpus = write(tmp_path / "c.txt", feedback.corpus_text(n_bytes=40_000, seed=3))
    config = PretrainConfig(corpus_files=[corpus], preset="tiny", steps=4, batch_size=2, eval_every=2, vocab_size=300)
    quiet = dict(log=lambda *a: None)
    assert runs.pretraining_plan(tmp_path / "run", config) == "pretrain"
    pretrain(tmp_path / "run", config, until=2, **quiet)                   # interrupted after step 2
    assert runs.pretraining_plan(tmp_path / "run", config) == "resume"
    other = PretrainConfig(**{**config.to_dict(), "steps": 5})
    assert runs.pretraining_plan(tmp_path / "run", other) == "other"
    with pytest.raises(MiniftError, match="holds another run"):
        runs.ensure_pretrained(tmp_path / "run", other, **quiet)
    runs.ensure_pretrained(tmp_path / "run", config, **quiet)              # resumed to the end
    assert runs.pretraining_plan(tmp_path / "run", other) == "reuse"       # finished: any recipe is yours
    assert runs.pretraining_plan(tmp_path / "run", other, any_recipe=False) == "other"   # the quickstart's rule
    assert runs.pretraining_plan(tmp_path / "run", config, any_recipe=False) == "reuse"
