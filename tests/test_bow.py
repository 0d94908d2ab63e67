"""The bag-of-words baseline (`--strategy bow`): TF-IDF features against a hand-worked
example, padding never counts, a separable set is learned, the idf is frozen and saved,
classify / report / the CLI on a bow run, --resume gives the same weights. Tiny models and files built here only."""
import json

import numpy as np
import pytest

from minift.adapt import FinetuneConfig, finetune, load_finetuned
from minift.adapt.bow import (BagOfWords, document_frequency, encode_for_bow, inverse_document_frequency, tfidf,
                              token_counts)
from minift.cli import main
from minift.data import Tokenizer, encode_labels, feedback, pad_batch, stratified_split
from minift.files import load_safetensors
from minift.model import GPTConfig
from minift.runs import CHECKPOINT, WEIGHTS
from minift.viz import write_report

from quiet import Silent, quiet
from run_dirs import pretrained_run
from scripts import write_csv


@pytest.fixture(scope="module")
def init_run(tmp_path_factory):
    tok = Tokenizer.train(feedback.corpus_documents(400, seed=5), vocab_size=300)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    return pretrained_run(tmp_path_factory.mktemp("init"), tok, config)


def separable_rows(n, seed):
    """Each label has its own word; the rest of each text is drawn from the same filler."""
    rng = np.random.default_rng(seed)
    word = {"positive": "superb", "negative": "awful", "neutral": "average"}
    filler = ["the", "strap", "battery", "screen", "is", "was", "and", "lid", "handle", "price", "really"]
    rows = []
    for i in range(n):
        label = list(word)[i % 3]
        words = list(rng.choice(filler, size=5)) + [word[label]]
        rng.shuffle(words)
        rows.append((" ".join(words).capitalize() + ".", label))
    return rows


def test_tfidf_matches_a_three_document_example_worked_by_hand():
    # vocabulary of 4 tokens; documents [0 1 1], [1 2], [0]: N = 3, df = (2, 2, 1, 0)
    seqs = [[0, 1, 1], [1, 2], [0]]
    assert document_frequency(seqs, 4).tolist() == [2, 2, 1, 0]
    a, b = np.log(4 / 3) + 1, np.log(4 / 2) + 1                   # idf(0) = idf(1) = a, idf(2) = b
    np.testing.assert_allclose(inverse_document_frequency(seqs, 4), [a, a, b, 0.0])
    ids, lengths = pad_batch(seqs + [[3, 0]], pad_id=3)          # pad with a real token: it must not count
    counts = token_counts(ids, lengths, 4)
    assert counts.tolist() == [[1, 2, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 1]]
    x = tfidf(counts, inverse_document_frequency(seqs, 4))
    # [a, 2a, 0, 0] / (a sqrt 5); [0, a, b, 0] / sqrt(a^2 + b^2) = [0, 0.60535, 0.79596, 0];
    # [a, 0, 0, 0] / a; token 3 was in no training text: idf 0, it is ignored
    expected = [[0.4472136, 0.8944272, 0, 0], [0, 0.6053485, 0.7959605, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert tfidf(np.array([[0, 0, 0, 2]]), inverse_document_frequency(seqs, 4)).tolist() == [[0, 0, 0, 0]]


def test_padding_never_changes_the_logits():
    model = BagOfWords(np.linspace(0.5, 2.0, 7), 3)
    model.head.weight.data = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    alone = model(*pad_batch([[1, 2, 2]], pad_id=1))
    beside_a_long_one = model(*pad_batch([[1, 2, 2], [4, 5, 6, 6, 6, 3]], pad_id=1))
    np.testing.assert_allclose(alone.data[0], beside_a_long_one.data[0], rtol=1e-6)


def test_bow_learns_a_separable_set_and_its_idf_stays_frozen(tmp_path, init_run):
    train = write_csv(tmp_path / "train.csv", separable_rows(90, seed=1))
    test = write_csv(tmp_path / "test.csv", separable_rows(60, seed=2))
    out = tmp_path / "bow"
    model, tok, metrics = finetune(init_run, out, FinetuneConfig(strategy="bow", train_file=str(train),
                                                                 test_files=[str(test)], epochs=40),
                                   log=quiet, progress=Silent())
    assert metrics["test"]["test"]["accuracy"] >= 0.9                  # chance is 1/3
    assert metrics["history"]["train"][-1]["loss"] < 0.6 < np.log(3)   # it starts at ln 3 (zero weights)
    assert metrics["trainable_parameters"] == tok.vocab_size * 3 + 3
    # the idf is the training split's (validation held out), and training never moved it
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "bow" and cfg["strategy"] == "bow"
    rows = separable_rows(90, seed=1)
    y = encode_labels([label for _, label in rows], cfg["labels"])
    train_idx, _ = stratified_split(y, 0.1, 0)
    seqs, _ = encode_for_bow([rows[i][0] for i in train_idx], tok, cfg["max_len"])
    saved, _ = load_safetensors(out / WEIGHTS)
    np.testing.assert_allclose(saved["idf"], inverse_document_frequency(seqs, tok.vocab_size), rtol=1e-6)
    assert sorted(saved) == ["head.bias", "head.weight", "idf"]          # no GPT weight is kept


def test_classify_report_and_cli_on_a_bow_run(tmp_path, init_run, capsys):
    train = write_csv(tmp_path / "train.csv", separable_rows(60, seed=3))
    out = tmp_path / "cli"
    assert main(["finetune", "--init", str(init_run), "--out", str(out), "--strategy", "bow",
                 "--train", str(train), "--epochs", "10"]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    assert main(["classify", "--model", str(out), "The price is superb.", "The lid was awful."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["positive", "negative"]
    probs, n_cut = load_finetuned(out).classify(["The price is superb."] * 2)
    assert probs.shape == (2, 3) and n_cut == 0 and np.allclose(probs[0], probs[1])
    page = write_report(out, out=tmp_path / "bow.html").read_text()
    assert "it has no attention" in page and "<td>validation</td>" in page
    capsys.readouterr()
    assert main(["export", "--model", str(out), "--out", str(tmp_path / "hf")]) == 2      # no GPT in it
    err = capsys.readouterr().err
    assert "bag-of-words" in err and err.count("\n") == 1 and not (tmp_path / "hf").exists()


def test_an_interrupted_bow_run_resumes_to_the_same_weights(tmp_path, init_run):
    train = str(write_csv(tmp_path / "train.csv", separable_rows(60, seed=4)))
    settings = dict(strategy="bow", train_file=train, epochs=3)
    finetune(init_run, tmp_path / "straight", FinetuneConfig(**settings), log=quiet, progress=Silent())
    finetune(init_run, tmp_path / "cut", FinetuneConfig(**settings), until=4, log=quiet, progress=Silent())
    assert json.loads(load_safetensors(tmp_path / "cut" / CHECKPOINT)[1]["minift"])["step"] == 4    # of 12
    finetune(None, tmp_path / "cut", {"strategy": "bow"}, resume=True, log=quiet, progress=Silent())
    a, _ = load_safetensors(tmp_path / "straight" / WEIGHTS)
    b, _ = load_safetensors(tmp_path / "cut" / WEIGHTS)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
