"""The encoder: GPT blocks with bidirectional, padded attention; masked-language-model
batches (80/10/10); pretraining with --arch encoder; fine-tuning its classifier."""
import json

import numpy as np
import pytest

import minift
from minift import adapt as ft
from minift.adapt import FinetuneConfig, finetune, load_finetuned
from minift.cli import main
from minift.data import MaskedDocuments, Tokenizer, feedback, mask_tokens, pad_batch, split_into_documents
from minift.data.masking import IGNORE, MASK_FRACTION
from minift.errors import MiniftError
from minift.generate import generate
from minift.model import GPT, Encoder, GPTConfig, language_model
from minift.pretrain import PretrainConfig, load_gpt, pretrain

from quiet import quiet

TINY = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8, causal=False)


def tiny_encoder(seed=0, scale=0.3):
    """An encoder with weights large enough that every term of a gradient matters."""
    model = Encoder(TINY, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters():
        p.data = rng.normal(0.0, scale, p.shape)
    return model


# ----------------------------------------------------------------------------- the model

def test_an_encoder_is_a_gpt_with_bidirectional_attention():
    encoder, gpt = language_model(TINY, seed=2), language_model(GPTConfig(**{**TINY.to_dict(), "causal": True}), seed=2)
    assert type(encoder) is Encoder and type(gpt) is GPT
    assert list(encoder.state_dict()) == list(gpt.state_dict())         # the same modules, the same names
    for (name, a), b in zip(encoder.state_dict().items(), gpt.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)               # and the same initialisation
    with pytest.raises(ValueError, match="causal=False"):
        Encoder(gpt.config)


def test_every_position_sees_the_whole_sequence():
    model = tiny_encoder()
    idx = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    base = model(idx)[0].data
    changed = idx.copy()
    changed[0, 7] = 0                                                 # the last token only
    assert not np.allclose(model(changed)[0].data[0, :7], base[0, :7])   # earlier positions see it


def test_whole_encoder_gradcheck_float64_with_padding_and_masked_targets():
    model = tiny_encoder()
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 13, (3, 6))
    lengths = np.array([6, 2, 4])
    targets = np.full((3, 6), IGNORE)
    targets[0, [1, 4]], targets[1, 0], targets[2, [0, 3]] = 5, 7, (2, 11)
    assert minift.gradcheck(lambda *ps: model(idx, targets, lengths)[1], model.parameters())


def test_only_the_scored_positions_are_read():
    model = tiny_encoder()
    idx = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])
    targets = np.full((2, 8), IGNORE)
    targets[0, 2], targets[1, 5], targets[1, 7] = 4, 8, 8
    logits, loss = model(idx, targets)
    full = model(idx)[0].data                                         # (B, T, V)
    np.testing.assert_allclose(logits.data, full[[0, 1, 1], [2, 5, 7]], rtol=1e-12)
    rows = full[[0, 1, 1], [2, 5, 7]]
    log_p = rows - rows.max(1, keepdims=True) - np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1, keepdims=True))
    assert loss.item() == pytest.approx(-log_p[[0, 1, 2], [4, 8, 8]].mean(), rel=1e-12)


def test_a_padded_batch_gives_each_sequence_its_result_alone():
    model = tiny_encoder()
    seqs = [[3, 1, 4, 1, 5, 9, 2], [2, 7], [1, 8, 2, 8, 4]]
    ids, lengths = pad_batch(seqs, pad_id=1)
    batched = model(ids, lengths=lengths)[0].data
    for b, s in enumerate(seqs):
        alone = model(np.array([s]))[0].data[0]
        np.testing.assert_allclose(batched[b, :len(s)], alone, rtol=1e-10, atol=1e-12)
    junk = np.where(np.arange(ids.shape[1])[None, :] >= lengths[:, None], 12, ids)   # padding holds anything
    for b, s in enumerate(seqs):
        np.testing.assert_allclose(model(junk, lengths=lengths)[0].data[b, :len(s)], batched[b, :len(s)],
                                   rtol=1e-10, atol=1e-12)


def test_generate_refuses_an_encoder():
    with pytest.raises(MiniftError, match="needs a decoder"):
        generate(tiny_encoder(), [1, 2], 3)


# ----------------------------------------------------------------------------- masking

def test_masking_chooses_15_percent_and_splits_them_80_10_10():
    """Each row: exactly round(0.15 n) of its n real positions are predicted; of those,
    80% read <|mask|>, 10% a random regular token, 10% their own token (measured over
    about 6,000 positions: within 4 standard deviations); every other position, padding
    included, is untouched and no target."""
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 500, (400, 100))
    lengths = rng.integers(1, 101, 400)
    inputs, targets = mask_tokens(ids, np.random.default_rng(1), mask_id=2, first_regular_id=3, vocab_size=500,
                                  lengths=lengths)
    chosen = targets != -100                              # PyTorch's ignore_index, as cross_entropy's
    np.testing.assert_array_equal(chosen.sum(axis=1), np.maximum(1, np.rint(0.15 * lengths)))
    assert not chosen[np.arange(100)[None, :] >= lengths[:, None]].any()            # never padding
    np.testing.assert_array_equal(targets[chosen], ids[chosen])
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])
    n = chosen.sum()
    masked = (inputs[chosen] == 2).mean()
    same = (inputs[chosen] == ids[chosen]).mean()                     # kept, or a random draw of the same token
    other = 1.0 - masked - same
    for share, expected in ((masked, 0.8), (same, 0.1 + 0.1 / 497), (other, 0.1 - 0.1 / 497)):
        assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / n), (share, expected)
    assert inputs.min() >= 2 and inputs[chosen & (inputs != 2)].min() >= 3   # never another special token
    assert (MASK_FRACTION, IGNORE) == (0.15, -100)        # and the constants a reader finds say so too


def test_documents_of_a_stream():
    eot = 0
    ids = np.array([5, 6, 0, 7, 0, 0, 8, 9, 9, 9, 0, 4])       # a cut document at the end, an empty one
    docs = split_into_documents(ids, eot, max_len=3)
    assert [d.tolist() for d in docs] == [[5, 6, 0], [7, 0], [8, 9, 9], [4]]


def test_masked_documents_repeat_and_resume():
    docs = [np.arange(3, 3 + n) for n in (5, 9, 17, 30)]
    def make():
        return MaskedDocuments(docs, 4, seed=3, mask_id=2, first_regular_id=3, vocab_size=50, pad_id=1)
    a = make()
    first = [a.next_batch() for _ in range(3)]
    inputs, targets, lengths = first[0]
    assert inputs.shape == targets.shape == (4, lengths.max()) and set(lengths) <= {5, 9, 17, 30}
    assert (inputs[np.arange(inputs.shape[1])[None, :] >= lengths[:, None]] == 1).all()     # padded with <|pad|>
    b = make()
    b.next_batch()
    c = make()
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    for x, y in zip(first[1:], [c.next_batch(), c.next_batch()]):
        for u, w in zip(x, y):
            np.testing.assert_array_equal(u, w)
    assert not np.array_equal(first[0][1], first[1][1])


def test_an_encoder_tokenizer_has_a_mask_token():
    docs = feedback.corpus_documents(200, seed=1)
    plain, masked = Tokenizer.train(docs, vocab_size=300), Tokenizer.train(docs, vocab_size=300, mask_token=True)
    assert plain.mask_id is None and masked.mask_id == 2
    assert (masked.eot_id, masked.pad_id) == (plain.eot_id, plain.pad_id) == (0, 1)
    assert 2 not in masked.encode("a <|mask|> in a review is text")


# ----------------------------------------------------------------------------- pretraining and fine-tuning

@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "feedback.txt"
    path.write_text(feedback.corpus_text(n_bytes=40_000, seed=3), encoding="utf-8")
    return path


def pretrain_encoder(out, corpus_file, until=None, steps=6):
    config = PretrainConfig(arch="encoder", corpus_files=[corpus_file], preset="tiny", seed=1, eval_every=3,
                            batch_size=4, steps=steps)
    return pretrain(out, config, until=until, log=quiet)


def test_encoder_pretraining_lowers_the_masked_token_loss_and_resumes_exactly(tmp_path, corpus_file):
    model, tokenizer, straight = pretrain_encoder(tmp_path / "a", corpus_file)
    assert type(model) is Encoder and tokenizer.mask_id == 2
    assert straight["eval"][-1]["val_loss"] < straight["eval"][0]["val_loss"]
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["model"]["causal"] is False and cfg["train"]["arch"] == "encoder"
    pretrain_encoder(tmp_path / "b", corpus_file, until=3)
    _, _, resumed = pretrain(tmp_path / "b", resume=True, log=quiet)
    assert [r["loss"] for r in resumed["train"]] == [r["loss"] for r in straight["train"]]
    loaded, _, _ = load_gpt(tmp_path / "a")
    idx = np.array([tokenizer.encode("The battery is")])
    assert type(loaded) is Encoder
    np.testing.assert_array_equal(loaded(idx)[0].data, model(idx)[0].data)
    with pytest.raises(MiniftError, match="arch"):
        pretrain(tmp_path / "a", {"arch": "decoder"}, resume=True, log=quiet)


def test_cli_pretrains_an_encoder_and_generate_refuses_it(tmp_path, corpus_file, capsys):
    out = tmp_path / "cli"
    assert main(["pretrain", "--arch", "encoder", "--out", str(out), "--corpus", str(corpus_file), "--preset",
                 "tiny", "--steps", "2", "--batch-size", "2"]) == 0
    assert main(["generate", "--model", str(out), "--prompt", "The kettle"]) == 2
    assert "needs a decoder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory, corpus_file):
    out = tmp_path_factory.mktemp("encoder")
    pretrain_encoder(out / "run", corpus_file, steps=4)
    return out / "run"


@pytest.mark.parametrize("strategy", ["full", "head", "top-k", "lora", "scratch"])
def test_every_classifier_strategy_fine_tunes_an_encoder(tmp_path, encoder_run, strategy):
    config = FinetuneConfig(strategy=strategy, epochs=1, k=1 if strategy == "top-k" else None)
    _, _, metrics = finetune(encoder_run, tmp_path / "ft", config, log=quiet)
    assert set(metrics["test"]) == {"test_a", "test_b"}
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["pooling"] == saved["finetune"]["pooling"] == "mean"        # an encoder's default
    classifier = load_finetuned(tmp_path / "ft")
    assert type(classifier.model.transformer.h[0].attn).__name__ == "SelfAttention"
    assert classifier.model.config.causal is False
    probabilities, _ = classifier.classify(["The strap is stellar.", "Frankly abysmal, and the lid is poor."])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("strategy", ["prompt", "instruct"])
def test_prompt_and_instruct_say_they_need_a_decoder(tmp_path, encoder_run, strategy):
    with pytest.raises(MiniftError, match=f"strategy '{strategy}' needs a decoder"):
        finetune(encoder_run, tmp_path / "ft", FinetuneConfig(strategy=strategy), log=quiet)
    assert not (tmp_path / "ft" / "config.json").exists()


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_never_changes_an_encoder_classification(pooling):
    model = ft.swap_head(tiny_encoder(), 3, pooling=pooling).eval()
    seqs = [[3, 1, 4, 1, 5, 9, 2], [2, 7], [1, 8, 2, 8, 4]]
    ids, lengths = pad_batch(seqs, pad_id=1)
    batched = model(ids, lengths).data
    alone = np.concatenate([model(np.array([s]), np.array([len(s)])).data for s in seqs])
    np.testing.assert_allclose(batched, alone, rtol=1e-10, atol=1e-12)
