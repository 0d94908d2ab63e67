"""The byte-level BPE tokenizer: round trips, special tokens, persistence, fingerprints."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minift.data import Tokenizer
from minift.data.bpe import bpe_merge_step
from minift.errors import MiniftError

CORPUS = [
    "The battery lasts all day and the screen is bright.",
    "The battery died after a week; support never answered.",
    "Delivery was on time. The box was fine.",
    "I love the keyboard, but the trackpad is not great.",
    "Café crème, naïve façade — ünïcödé and 日本語 and emoji 😀🎉.",
    "tabs\tand\nnewlines\r\n  and   spaces",
] * 10

# Trained once for the module: training is the slow part, encoding is cheap.
TOK = Tokenizer.train(CORPUS, vocab_size=400)


def test_special_token_ids():
    assert TOK.eot_id == 0 and TOK.pad_id == 1
    assert TOK.token_to_id("<|endoftext|>") == 0
    assert TOK.token_to_id("<|pad|>") == 1
    assert TOK.id_to_token(0) == "<|endoftext|>"
    assert TOK.id_to_token(1) == "<|pad|>"
    assert TOK.decode([0]) == "<|endoftext|>"


def test_vocabulary_has_all_bytes_and_respects_the_limit():
    assert 258 < TOK.vocab_size <= 400
    assert len(TOK) == TOK.vocab_size
    # A character never seen in training still encodes, through its UTF-8 bytes.
    assert TOK.decode(TOK.encode("\x00 ß ☃")) == "\x00 ß ☃"


@settings(deadline=None, max_examples=300)
@given(st.text())
def test_decode_inverts_encode_for_any_unicode(s):
    ids = TOK.encode(s)
    assert all(0 <= i < TOK.vocab_size for i in ids)
    assert TOK.decode(ids) == s


@settings(deadline=None, max_examples=100)
@given(st.lists(st.sampled_from(["<|endoftext|>", "<|pad|>", "ab", " ", "é", "<|"]), max_size=8))
def test_round_trip_with_special_strings_either_way(parts):
    s = "".join(parts)
    assert TOK.decode(TOK.encode(s)) == s
    assert TOK.decode(TOK.encode(s, allow_special=True)) == s


def test_user_text_never_becomes_a_special_token():
    text = "great phone <|endoftext|> really <|pad|>"
    ids = TOK.encode(text)
    assert TOK.eot_id not in ids and TOK.pad_id not in ids
    assert TOK.decode(ids) == text
    assert TOK.encode_batch([text]) == [ids]
    # Only when asked are the strings the special tokens.
    special = TOK.encode(text, allow_special=True)
    assert TOK.eot_id in special and TOK.pad_id in special


def test_encode_batch_matches_encode():
    texts = ["", "The battery", "naïve 😀", "tabs\tand\nnewlines"]
    assert TOK.encode_batch(texts) == [TOK.encode(t) for t in texts]


def test_decode_accepts_numpy_ids_and_rejects_unknown_ids():
    ids = TOK.encode("The screen is bright.")
    assert TOK.decode(np.array(ids, dtype=np.uint16)) == "The screen is bright."
    with pytest.raises(ValueError, match=str(TOK.vocab_size)):
        TOK.decode([3, TOK.vocab_size])


def test_clear_errors_for_bad_input():
    with pytest.raises(ValueError, match="surrogate U\\+D800 at index 2"):
        TOK.encode("ab\ud800")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        TOK.encode_batch(["fine", "x\udfff"])
    with pytest.raises(TypeError, match="expected str"):
        TOK.encode(42)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        TOK.token_to_id("no-such-token-here")
    with pytest.raises(KeyError, match="outside the vocabulary"):
        TOK.id_to_token(10 ** 6)
    with pytest.raises(ValueError, match="at least 258"):
        Tokenizer.train(CORPUS, vocab_size=100)


def test_save_load_gives_identical_encodings(tmp_path):
    texts = CORPUS[:6] + ["unseen words: zebra quokka", "<|endoftext|>"]
    written = TOK.save(tmp_path / "run")                 # a run directory
    assert written == tmp_path / "run" / "tokenizer.json"
    json.loads(written.read_text(encoding="utf-8"))     # plain HF JSON
    assert sorted(p.name for p in written.parent.iterdir()) == ["tokenizer.json"]  # no temp files

    for source in (tmp_path / "run", written, str(written)):
        loaded = Tokenizer.load(source)
        assert loaded.encode_batch(texts) == TOK.encode_batch(texts)
        assert loaded.fingerprint() == TOK.fingerprint()
        assert (loaded.eot_id, loaded.pad_id, loaded.vocab_size) == (0, 1, TOK.vocab_size)

    other = TOK.save(tmp_path / "named.json")            # an explicit file name
    assert Tokenizer.load(other).encode_batch(texts) == TOK.encode_batch(texts)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.load(tmp_path)
    bad = tmp_path / "broken.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(MiniftError, match="broken.json"):
        Tokenizer.load(bad)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"caf\xe9": 1}')
    with pytest.raises(MiniftError, match="latin1.json: line 1, column 6"):
        Tokenizer.load(latin1)


def test_training_is_deterministic_and_fingerprint_tracks_the_data():
    again = Tokenizer.train(CORPUS, vocab_size=400)
    assert again.fingerprint() == TOK.fingerprint()
    assert len(TOK.fingerprint()) == 64
    different = Tokenizer.train(CORPUS + ["quokka quokka quokka quokka"] * 20, vocab_size=400)
    assert different.fingerprint() != TOK.fingerprint()
    smaller = Tokenizer.train(CORPUS, vocab_size=300)
    assert smaller.fingerprint() != TOK.fingerprint()


def test_train_from_files_equals_train_from_texts(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(CORPUS[:3]) * 5, encoding="utf-8")
    b.write_text("\n".join(CORPUS[3:6]) * 5, encoding="utf-8")
    texts = [a.read_text(encoding="utf-8"), b.read_text(encoding="utf-8")]
    reference = Tokenizer.train(texts, vocab_size=350).fingerprint()
    assert Tokenizer.train(files=[a, b], vocab_size=350).fingerprint() == reference
    assert Tokenizer.train([a, b], vocab_size=350).fingerprint() == reference          # Paths
    assert Tokenizer.train(files=[str(a), str(b)], vocab_size=350).fingerprint() == reference
    # a str in `texts` is always text, even when it happens to name a file
    assert Tokenizer.train([str(a), str(b)], vocab_size=350).fingerprint() != reference
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        Tokenizer.train([Path(tmp_path / "missing.txt")])


def test_the_written_out_bpe_step_makes_the_librarys_first_merges():
    """minift/data/bpe.py writes one step of BPE training out; repeated on the words the
    library's own pre-tokenizer makes (with the library's token ids), it gives the
    `tokenizers` trainer's merges, in order. The corpus has ties (the smallest pair wins)
    and runs of one letter ("aaaa": merged left to right)."""
    texts = ["low lower lowest", "newer wider new", "aaa aaaa ab ba"] * 3
    tok = Tokenizer.train(texts, vocab_size=258 + 20)
    vocab = tok.hf.get_vocab()
    name = {i: token for token, i in vocab.items()}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)          # "a b" in older versions
              for m in json.loads(tok.hf.to_str())["model"]["merges"]]
    words = Counter(tuple(vocab[c] for c in word) for text in texts
                    for word, _ in tok.hf.pre_tokenizer.pre_tokenize_str(text))
    assert len(merges) == 20
    ties = 0
    for a, b in merges:
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        ties += list(pairs.values()).count(max(pairs.values())) > 1
        pair, words = bpe_merge_step(words, vocab[a + b])
        assert (name[pair[0]], name[pair[1]]) == (a, b)
    assert ties >= 5                      # the tie-breaking rule was needed, several times
