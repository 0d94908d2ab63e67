"""Corpus pipeline: reading text, the token cache, the split, and the batch sampler."""
import json

import numpy as np
import pytest

from minift.data import (
    BatchSampler, Tokenizer, read_text_files, split_documents, tokenize_corpus,
    train_val_split,
)
from minift.errors import MiniftError

DOCS = [
    "The battery lasts all day.",
    "Shipping was slow, but the case is sturdy.",
    "Screen: bright. Speakers: tinny.",
    "Naïve café review 😀 with unicode.",
] * 5

TOK = Tokenizer.train(DOCS, vocab_size=320)


# ----------------------------------------------------------------------------- reading

def test_read_text_files_normalises_newlines_and_bom(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbfline one\r\nline two\rline three\n")
    q = tmp_path / "b.txt"
    q.write_text("second file", encoding="utf-8")
    assert read_text_files([p, str(q)]) == ["line one\nline two\nline three\n", "second file"]
    assert read_text_files(q) == ["second file"]          # a single path is accepted


def test_undecodable_file_names_file_line_and_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("first line\nsecond\ncaf".encode() + b"\xe9 au lait\n")
    with pytest.raises(MiniftError) as err:
        read_text_files([p])
    message = str(err.value)
    assert "latin1.txt" in message
    assert "line 3, column 4" in message
    assert "byte offset 21" in message
    assert "UTF-8" in message


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_text_files([tmp_path / "nope.txt"])


def test_split_documents():
    text = "doc one\nstill one\n\n\n  doc two  \n \t \ndoc three\n\n"
    assert split_documents(text) == ["doc one\nstill one", "doc two", "doc three"]
    assert split_documents("\n\n  \n") == []


# ----------------------------------------------------------------------------- tokenizing

def test_documents_are_each_followed_by_eot():
    ids = tokenize_corpus(DOCS[:3], TOK)
    assert ids.dtype == np.uint16
    expected = []
    for doc in DOCS[:3]:
        expected += TOK.encode(doc) + [TOK.eot_id]
    assert ids.tolist() == expected
    assert TOK.decode(ids) == "<|endoftext|>".join(DOCS[:3]) + "<|endoftext|>"


def test_a_single_string_is_refused():
    with pytest.raises(TypeError, match="split_documents"):
        tokenize_corpus("one long text", TOK)


class CountingTokenizer:
    """Wraps a Tokenizer and counts encode_batch calls (to see when the cache is used)."""

    def __init__(self, tok):
        self.tok, self.calls = tok, 0
        self.eot_id, self.vocab_size = tok.eot_id, tok.vocab_size

    def encode_batch(self, texts):
        self.calls += 1
        return self.tok.encode_batch(texts)

    def fingerprint(self):
        return self.tok.fingerprint()


def test_cache_is_built_then_reused(tmp_path):
    tok = CountingTokenizer(TOK)
    first = tokenize_corpus(DOCS, tok, cache_dir=tmp_path)
    assert tok.calls == 1
    meta = json.loads((tmp_path / "tokens.json").read_text(encoding="utf-8"))
    assert meta["dtype"] == "uint16" and meta["length"] == len(first)
    assert meta["tokenizer_fingerprint"] == TOK.fingerprint()
    assert len(meta["corpus_sha256"]) == 64
    assert (tmp_path / "tokens.bin").stat().st_size == 2 * len(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.bin", "tokens.json"]

    second = tokenize_corpus(DOCS, tok, cache_dir=tmp_path)
    assert tok.calls == 1                                   # not encoded again
    assert np.array_equal(second, first) and second.dtype == first.dtype


def test_cache_is_rebuilt_when_the_corpus_changes(tmp_path):
    tok = CountingTokenizer(TOK)
    tokenize_corpus(DOCS, tok, cache_dir=tmp_path)
    changed = DOCS[:-1] + ["A different last review."]
    ids = tokenize_corpus(changed, tok, cache_dir=tmp_path)
    assert tok.calls == 2
    assert np.array_equal(ids, tokenize_corpus(changed, TOK))
    # The same text split differently into documents is a different corpus too.
    regrouped = ["".join(DOCS[:2])] + DOCS[2:]
    tokenize_corpus(regrouped, tok, cache_dir=tmp_path)
    assert tok.calls == 3


def test_cache_is_rebuilt_when_the_tokenizer_changes(tmp_path):
    tokenize_corpus(DOCS, TOK, cache_dir=tmp_path)
    other = Tokenizer.train(DOCS + ["quokka quokka quokka"] * 10, vocab_size=300)
    counting = CountingTokenizer(other)
    ids = tokenize_corpus(DOCS, counting, cache_dir=tmp_path)
    assert counting.calls == 1
    assert np.array_equal(ids, tokenize_corpus(DOCS, other))
    meta = json.loads((tmp_path / "tokens.json").read_text(encoding="utf-8"))
    assert meta["tokenizer_fingerprint"] == other.fingerprint()


def test_damaged_cache_is_rebuilt(tmp_path):
    good = tokenize_corpus(DOCS, TOK, cache_dir=tmp_path)
    (tmp_path / "tokens.bin").write_bytes(b"\x00\x00")        # truncated
    tok = CountingTokenizer(TOK)
    assert np.array_equal(tokenize_corpus(DOCS, tok, cache_dir=tmp_path), good)
    assert tok.calls == 1
    (tmp_path / "tokens.json").write_text("{garbage", encoding="utf-8")
    assert np.array_equal(tokenize_corpus(DOCS, tok, cache_dir=tmp_path), good)
    assert tok.calls == 2


# ----------------------------------------------------------------------------- split

def test_train_val_split_is_contiguous():
    ids = np.arange(100)
    train, val = train_val_split(ids, val_fraction=0.1, block_size=8)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


def test_train_val_split_errors_give_the_numbers():
    with pytest.raises(ValueError) as err:
        train_val_split(np.arange(100), val_fraction=0.1, block_size=16)
    message = str(err.value)
    assert "100 tokens" in message and "90 training" in message
    assert "10 validation" in message and "block_size + 1 = 17" in message
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(np.arange(100), val_fraction=0.0)


# ----------------------------------------------------------------------------- batches

def test_batches_are_windows_and_targets_are_shifted():
    ids = tokenize_corpus(DOCS, TOK)
    B, T, seed = 5, 12, 3
    sampler = BatchSampler(ids, B, T, seed)
    # A sampler over positions 0..n-1 with the same seed draws the same offsets, so it
    # tells us where each window of the real sampler starts.
    positions = BatchSampler(np.arange(len(ids)), B, T, seed)
    for _ in range(4):
        x, y = sampler.next_batch()
        pos_x, _ = positions.next_batch()
        assert x.shape == y.shape == (B, T)
        assert x.dtype == y.dtype == np.int64
        assert x.flags.c_contiguous and y.flags.c_contiguous
        starts = pos_x[:, 0]
        assert np.array_equal(x, ids[starts[:, None] + np.arange(T)])
        assert np.array_equal(y, ids[starts[:, None] + np.arange(T) + 1])


def test_every_window_is_reachable_including_the_last():
    sampler = BatchSampler(np.arange(10), batch_size=64, block_size=8, seed=0)
    x, y = sampler.next_batch()
    assert set(x[:, 0].tolist()) == {0, 1}                   # n - T = 2 possible starts
    assert y.max() == 9                                      # the last id is a target


def test_sampler_is_deterministic_by_seed():
    ids = np.arange(1000)
    a = BatchSampler(ids, 4, 16, seed=7)
    b = BatchSampler(ids, 4, 16, seed=7)
    c = BatchSampler(ids, 4, 16, seed=8)
    xa, xb, xc = a.next_batch()[0], b.next_batch()[0], c.next_batch()[0]
    assert np.array_equal(xa, xb) and not np.array_equal(xa, xc)


def test_state_dict_resume_repeats_the_following_batches():
    ids = np.arange(5000)
    sampler = BatchSampler(ids, 4, 16, seed=11)
    for _ in range(3):
        sampler.next_batch()
    state = json.loads(json.dumps(sampler.state_dict()))   # survives a JSON file
    expected = [sampler.next_batch() for _ in range(3)]

    resumed = BatchSampler(ids, 4, 16, seed=999)
    resumed.load_state_dict(state)
    assert resumed.batches_drawn == 3
    for x, y in expected:
        rx, ry = resumed.next_batch()
        assert np.array_equal(rx, x) and np.array_equal(ry, y)


def test_sampler_errors():
    with pytest.raises(ValueError, match="block_size \\+ 1 = 9"):
        BatchSampler(np.arange(8), batch_size=2, block_size=8, seed=0)
    with pytest.raises(ValueError, match="missing"):
        BatchSampler(np.arange(20), 2, 4, 0).load_state_dict({"bit_generator": "PCG64"})
