"""Adaptation: head swap, pooling, freezing, LoRA, prompting, instruction tuning,
metrics, the fine-tuning pipeline and its run directory, the CLI. Tiny models built here only."""
import csv
import json

import numpy as np
import pytest

import minift
from minift import adapt as ft
from minift.adapt import FinetuneConfig, finetune, heads, load_finetune_data, load_finetuned, lora, prompts, tasks
from minift.cli import main
from minift.data import Tokenizer, feedback, pad_batch
from minift.errors import MiniftError
from minift.files import load_safetensors, write_json
from minift.model import GPT, GPTConfig, param_groups
from minift.nn import Module, Parameter
from minift.optim import AdamW
from minift.runs import CHECKPOINT, WEIGHTS
from minift.tensor import Tensor
from minift.trainer import Trainer

from quiet import Silent, quiet
from run_dirs import pretrained_run

FMT = prompts.PromptFormat()

# Clearly different lengths, all within the tiny model's 32-token context.
TEXTS = ["Love it.", "It is okay.", "The battery is truly awful.", "The lid is fine, but the handle is superb."]




@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(feedback.corpus_documents(400, seed=5), vocab_size=300)


@pytest.fixture(scope="module")
def config(tok):
    return GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)


def tiny_classifier(config, dtype=np.float64, pooling="last", seed=0, scale=None):
    """A classifier on a random GPT; `scale` redraws every weight with that std, so
    that gradients are large enough for a finite-difference check to bite."""
    model = ft.swap_head(GPT(config, seed=seed, dtype=dtype), 3, pooling=pooling, seed=seed)
    if scale is not None:
        rng = np.random.default_rng(seed + 1)
        for p in model.parameters():
            p.data = rng.normal(0.0, scale, p.shape).astype(dtype)
    return model


@pytest.fixture(scope="module")
def init_run(tmp_path_factory, tok, config):
    """A 'pretrained' run directory: config.json, tokenizer.json, random weights."""
    return pretrained_run(tmp_path_factory.mktemp("init"), tok, config)


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    sets = feedback.labeled_sets(seed=0, n_train=45, n_test=24)
    d = tmp_path_factory.mktemp("data")
    train = sets["train"] + [("", "positive")]                         # one empty row: skipped
    train[0] = (" ".join([train[0][0]] * 6), train[0][1])              # one long row: cut to the context
    return write_csv(d / "train.csv", train), write_csv(d / "test.csv", sets["test_a"])


# ----------------------------------------------------------------------------- the classifier

@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_never_changes_a_prediction(tok, config, pooling):
    seqs, _ = tasks.encode_for_classifier(TEXTS, tok, config.block_size)
    assert len({len(s) for s in seqs}) == len(seqs)                    # really different lengths
    for dtype in (np.float64, np.float32):
        model = tiny_classifier(config, dtype, pooling, scale=0.3).eval()
        batched = heads.classifier_logits(model, seqs, tok.pad_id, batch_size=len(seqs))
        ids, lengths = pad_batch(seqs, tok.pad_id)
        direct = model(ids, lengths).data                              # one padded batch, as given
        alone = np.concatenate([model(np.array([s]), np.array([len(s)])).data for s in seqs])
        if dtype == np.float64:
            np.testing.assert_allclose(direct, alone, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(batched, alone, rtol=1e-10, atol=1e-12)
        assert (direct.argmax(1) == alone.argmax(1)).all() and (batched.argmax(1) == alone.argmax(1)).all()
        # what the padding holds does not matter either
        junk = np.where(ids == tok.pad_id, 7, ids)
        np.testing.assert_allclose(model(junk, lengths).data, direct, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_head_swap_keeps_the_backbone(config):
    gpt = GPT(config, seed=3)
    before = {k: v.copy() for k, v in gpt.state_dict().items()}
    model = ft.swap_head(gpt, 3, seed=1)
    sd = model.state_dict()
    assert [k for k in sd if not k.startswith("transformer.")] == ["head.weight", "head.bias"]
    assert sd["head.weight"].shape == (config.n_embd, 3) and not sd["head.bias"].any()
    for k, v in sd.items():
        if k.startswith("transformer."):
            assert np.array_equal(v, before[k]), k
    assert "lm_head.weight" not in sd
    assert lora.parameter_counts(model) == (model.num_parameters(), model.num_parameters())


def test_pooling_and_head_gradcheck_float64(config):
    small = GPTConfig(vocab_size=13, block_size=6, n_layer=1, n_head=2, n_embd=4)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 13, (3, 5))
    lengths = np.array([5, 2, 4])
    model = ft.add_lora(tiny_classifier(small, scale=0.4), rank=2, alpha=3.0, mlp=True)
    for p in model.parameters():                  # every parameter: base weights, adapters, head
        p.requires_grad = True
        p.data = rng.normal(0.0, 0.4, p.shape)
    assert minift.gradcheck(lambda *ps: model(ids, lengths), model.parameters())
    model.pooling = "mean"                        # the gradient reaches ln_f through the pooling
    trainable = model.head.parameters() + model.transformer.ln_f.parameters()
    assert minift.gradcheck(lambda *ps: model(ids, lengths), trainable)


def test_pool_rejects_bad_lengths(config):
    model = tiny_classifier(config)
    with pytest.raises(ValueError, match="lengths"):
        model(np.ones((2, 4), dtype=np.int64), np.array([4, 5]))
    with pytest.raises(ValueError, match="pooling"):
        ft.swap_head(GPT(config), 3, pooling="max")


# ----------------------------------------------------------------------------- strategies

def run_steps(model, seqs, labels, pad_id, steps=3):
    batches = ft.EpochBatches(len(seqs), 2, tasks.classifier_batch(seqs, labels, pad_id), seed=0)
    optimizer = AdamW(param_groups(model, 0.01, trainable_only=True), lr=1e-2)
    task = tasks.ClassifierTask(["a", "b", "c"], None, 32)
    Trainer(model, optimizer, batches, task.loss, steps=steps, progress=Silent()).run()


@pytest.mark.parametrize("strategy", ["head", "top-k", "lora", "full"])
def test_frozen_parameters_stay_bit_identical_without_grad(tok, config, strategy):
    model = ft.apply_strategy(tiny_classifier(config, np.float32, scale=0.3), strategy, k=1,
                              lora_rank=2, lora_alpha=4)
    named = dict(model.named_parameters())
    before = {k: p.data.copy() for k, p in named.items()}
    frozen = {k for k, p in named.items() if not p.requires_grad}
    seqs, _ = tasks.encode_for_classifier(TEXTS, tok, config.block_size)
    run_steps(model, seqs, [0, 1, 2, 0], tok.pad_id)
    # The optimizer zeroes grads after each step; one more backward shows who gets one.
    model(*pad_batch(seqs, tok.pad_id)).sum().backward()
    for k, p in named.items():
        if k in frozen:
            assert np.array_equal(p.data, before[k]) and p.grad is None, k
        else:
            assert p.grad is not None, k
    changed = {k for k, p in named.items() if not np.array_equal(p.data, before[k])}
    expected_trainable = {
        "full": set(named),
        "head": {"head.weight", "head.bias"},
        "top-k": {k for k in named if k.startswith(("transformer.h.1.", "transformer.ln_f.", "head."))},
        "lora": {k for k in named if "lora_" in k or k.startswith("head.")},
    }[strategy]
    assert set(named) - frozen == expected_trainable
    # lora_B starts at 0, so lora_A's first gradient is 0: AdamW moves it from step 2 on.
    assert changed == expected_trainable


def test_backward_stops_at_the_lowest_trainable_layer(tok, config):
    seqs, _ = tasks.encode_for_classifier(TEXTS, tok, config.block_size)
    ids, lengths = pad_batch(seqs, tok.pad_id)

    def block_outputs_need_grad(model):
        seen = []
        for block in model.transformer.h:
            forward = block.forward

            def recording(x, cache=None, lengths=None, forward=forward):
                y = forward(x, cache, lengths)
                seen.append(y.requires_grad)
                return y
            block.forward = recording            # instance attribute: this model only
        model(ids, lengths)
        return seen

    assert block_outputs_need_grad(ft.apply_strategy(tiny_classifier(config), "full")) == [True, True]
    assert block_outputs_need_grad(ft.apply_strategy(tiny_classifier(config), "top-k", k=1)) == [False, True]
    assert block_outputs_need_grad(ft.apply_strategy(tiny_classifier(config), "head")) == [False, False]
    assert block_outputs_need_grad(ft.apply_strategy(tiny_classifier(config), "lora", lora_rank=2)) == [True, True]


def test_parameter_counts_per_strategy(config):
    C, L = config.n_embd, 3
    head = C * L + L
    block = sum(p.size for p in GPT(config).transformer.h[0].parameters())
    counts = {s: lora.parameter_counts(ft.apply_strategy(tiny_classifier(config), s, k=1, lora_rank=2))
              for s in ("full", "head", "top-k", "lora")}
    total = counts["full"][0]
    assert counts["full"] == (total, total)
    assert counts["head"] == (head, total)
    assert counts["top-k"] == (head + block + 2 * C, total)
    adapters = config.n_layer * 2 * ((C + 3 * C) + (C + C))   # rank 2: A (in, 2) + B (2, out), c_attn and c_proj
    assert counts["lora"] == (head + adapters, total + adapters)
    with pytest.raises(ValueError, match="between 1 and"):
        ft.apply_strategy(tiny_classifier(config), "top-k", k=0)


def test_lora_starts_as_the_base_model_and_merges_exactly(tok, config):
    seqs, _ = tasks.encode_for_classifier(TEXTS, tok, config.block_size)
    ids, lengths = pad_batch(seqs, tok.pad_id)
    base = tiny_classifier(config, scale=0.3)
    reference = base(ids, lengths).data.copy()
    names = list(base.state_dict())
    model = ft.add_lora(base, rank=3, alpha=5.0, mlp=True, seed=2)
    assert ft.has_lora(model)
    np.testing.assert_array_equal(model(ids, lengths).data, reference)          # B = 0: the same model
    rng = np.random.default_rng(4)
    for name, p in model.named_parameters():
        if name.endswith("lora_B"):
            p.data = rng.normal(0.0, 0.3, p.shape)
    unmerged = model(ids, lengths).data.copy()
    assert np.abs(unmerged - reference).max() > 1e-3                             # the adapters do act
    ft.merge_lora(model)
    assert not ft.has_lora(model) and list(model.state_dict()) == names
    np.testing.assert_allclose(model(ids, lengths).data, unmerged, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- prompting and instruction tuning

class Bigram(Module):
    """A hand-made language model: the logits at position t are table[ids[t]]."""

    def __init__(self, table, block_size):
        self.table = Parameter(table)
        self.config = GPTConfig(vocab_size=table.shape[0], block_size=block_size, n_layer=1, n_head=1, n_embd=1)
        self.seen = []

    def forward(self, idx):
        self.seen.append(np.asarray(idx).copy())
        return self.table[idx], None


def test_label_scores_on_a_hand_made_model(tok):
    V = tok.vocab_size
    table = np.random.default_rng(0).normal(0.0, 1.0, (V, V))
    labels = ["negative", "neutral", "positive", "mixed up"]      # one- and multi-token answers
    model = Bigram(table, block_size=64)
    scores = prompts.label_log_likelihoods(model, tok, TEXTS[:3], labels, batch_size=5)
    logp = table - np.log(np.exp(table).sum(1, keepdims=True))
    for i, text in enumerate(TEXTS[:3]):
        context = [tok.eot_id] + tok.encode(FMT.prompt(text))
        for j, label in enumerate(labels):
            answer = tok.encode(" " + label)
            seq = context + answer
            expected = sum(logp[seq[t - 1], seq[t]] for t in range(len(context), len(seq)))
            assert scores[i, j] == pytest.approx(expected, rel=1e-12)
    # Make ":" -> " neutral" overwhelmingly likely, token by token: every text is then neutral.
    path = tok.encode(":")[-1:] + tok.encode(" neutral")
    for a, b in zip(path, path[1:]):
        table[a, b] = 50.0
    scores = prompts.label_log_likelihoods(Bigram(table, 64), tok, TEXTS, labels[:3])
    assert (scores.argmax(1) == 1).all()


def test_shots_are_prepended_and_dropped_when_they_do_not_fit(tok):
    table = np.zeros((tok.vocab_size, tok.vocab_size))
    shots = [("Great.", "positive"), ("Bad.", "negative"), ("It is fine, I suppose, all things considered.", "neutral")]
    model = Bigram(table, block_size=256)
    prompts.label_log_likelihoods(model, tok, ["Nice."], ["positive"], shots=shots)
    row = list(model.seen[-1][0])
    query = [tok.eot_id] + tok.encode(FMT.prompt("Nice.")) + tok.encode(" positive")
    assert row == prompts.shot_ids(tok, FMT, shots) + query
    # With a small context only the shots nearest the query fit; rows never exceed it.
    last_two = prompts.shot_ids(tok, FMT, shots[1:])
    model = Bigram(table, block_size=len(last_two) + len(query))
    prompts.label_log_likelihoods(model, tok, ["Nice."], ["positive"], shots=shots)
    assert list(model.seen[-1][0]) == last_two + query
    # A text too long for the context is cut, the template is kept.
    model = Bigram(table, block_size=40)
    prompts.label_log_likelihoods(model, tok, [TEXTS[3] * 3], ["positive"], shots=shots)
    row = list(model.seen[-1][0])
    assert len(row) <= 40 and tok.decode(row).endswith("\nSentiment: positive")
    chosen = prompts.choose_shots([t for t, _ in shots] * 2, [lab for _, lab in shots] * 2, k=3, seed=1)
    assert sorted(lab for _, lab in chosen) == ["negative", "neutral", "positive"]


def test_instruction_loss_ignores_the_prompt_tokens(tok):
    x, y = prompts.instruction_example(tok, FMT, "The lid is superb.", "positive", block_size=64)
    prompt = [tok.eot_id] + tok.encode(FMT.prompt("The lid is superb."))
    answer = tok.encode(" positive")
    assert list(x) == (prompt + answer)[:-1]
    assert (y[:len(prompt) - 1] == prompts.IGNORE).all() and list(y[len(prompt) - 1:]) == answer
    short = prompts.instruction_example(tok, FMT, "Bad.", "negative", 64)
    bx, by = prompts.instruction_batch([(x, y), short], tok.pad_id)([0, 1])
    assert bx.shape == by.shape and (by[1, len(short[1]):] == prompts.IGNORE).all()        # padding is ignored too

    rng = np.random.default_rng(0)
    logits = Tensor(rng.normal(0.0, 1.0, (*bx.shape, tok.vocab_size)), requires_grad=True)
    loss = prompts.instruction_loss(lambda ids: (logits, None), (bx, by))
    logp = logits.data - np.log(np.exp(logits.data).sum(-1, keepdims=True))
    answer_positions = np.argwhere(by != prompts.IGNORE)
    expected = -np.mean([logp[b, t, by[b, t]] for b, t in answer_positions])
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    touched = np.argwhere(np.abs(logits.grad).sum(-1) > 0)
    assert touched.tolist() == answer_positions.tolist()          # no gradient from any prompt token


# ----------------------------------------------------------------------------- batches and metrics

def test_epoch_batches_visit_everything_once_per_epoch_and_resume():
    batches = ft.EpochBatches(7, 3, lambda idx: (np.array(idx),), seed=4)
    assert batches.steps_per_epoch == 3
    epoch = [batches.next_batch()[0] for _ in range(3)]
    assert [len(b) for b in epoch] == [3, 3, 1] and sorted(np.concatenate(epoch)) == list(range(7))
    state = json.loads(json.dumps(batches.state_dict()))
    ahead = [batches.next_batch()[0].tolist() for _ in range(4)]
    other = ft.EpochBatches(7, 3, lambda idx: (np.array(idx),), seed=0)
    other.load_state_dict(state)
    assert [other.next_batch()[0].tolist() for _ in range(4)] == ahead
    assert sorted(sum(ahead[:3], [])) == list(range(7))


def test_metrics_by_hand():
    labels = ["a", "b", "c"]
    m = ft.classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 0], labels)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["a"] == {"precision": pytest.approx(1 / 3), "recall": 0.5, "f1": pytest.approx(0.4),
                                   "support": 2}
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8) and m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx(0.4)
    table = ft.format_metrics(m, "demo")
    assert "accuracy 50.0%" in table and "macro-F1 0.400" in table and table.count("\n") == 9
    with pytest.raises(ValueError, match="equal-length"):
        ft.classification_metrics([0, 1], [0], labels)


# ----------------------------------------------------------------------------- the pipeline

def tune(init, out, **settings):
    """finetune() quietly, with FinetuneConfig settings as keywords (until= passes through)."""
    until = settings.pop("until", None)
    return finetune(init, out, FinetuneConfig(**settings), until=until, log=quiet, progress=Silent())


def reference_labels(cfg_labels):
    return np.array([cfg_labels.index(lab) for _, lab in feedback.labeled_sets(0, 45, 24)["test_a"]])


@pytest.mark.parametrize("strategy", ft.STRATEGIES)
def test_every_strategy_end_to_end(tmp_path, init_run, data_files, strategy):
    train, test = data_files
    out = tmp_path / strategy
    model, tok, metrics = tune(init_run, out, strategy=strategy, train_file=train, test_files=[test], epochs=1,
                               batch_size=8, k=1, lora_rank=2)
    assert {"config.json", "tokenizer.json", "model.safetensors", "metrics.json"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["finished"] is True
    result = saved["test"]["test"]
    assert set(result) >= {"accuracy", "macro_f1", "per_class", "confusion", "labels"}
    assert result["labels"] == ["negative", "neutral", "positive"] and sum(map(sum, result["confusion"])) == 24
    assert saved["data"]["skipped_empty"]["train"] == 1 and saved["data"]["truncated"]["train"] >= 1
    assert (saved["trainable_parameters"] == 0) == (strategy == "prompt")
    assert saved["trainable_parameters"] <= saved["total_parameters"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["strategy"] == strategy and cfg["labels"] == result["labels"]
    assert cfg["tokenizer_fingerprint"] == tok.fingerprint()
    if strategy != "prompt":
        assert [e["step"] for e in saved["history"]["eval"]][0] == 0 and (out / CHECKPOINT).exists()
    # The saved run predicts exactly what was evaluated.
    loaded = load_finetuned(out)
    names, _ = load_safetensors(out / WEIGHTS)
    assert not any("lora" in n for n in names)                     # adapters merged for inference
    texts = [t for t, _ in feedback.labeled_sets(seed=0, n_train=45, n_test=24)["test_a"]]
    probs, n_cut = loaded.classify(texts)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert n_cut == saved["data"]["truncated"]["test"]
    confusion = ft.classification_metrics(reference_labels(loaded.labels), probs.argmax(1), loaded.labels)["confusion"]
    assert confusion == result["confusion"]


def test_the_prompt_format_is_stored_and_read_back(tmp_path, init_run, data_files):
    train, test = data_files
    template = "Customer says: {text}\nVerdict:"
    tune(init_run, tmp_path / "p", strategy="prompt", train_file=train, test_files=[test], prompt_template=template)
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["prompt_format"] == {"template": template}
    loaded = load_finetuned(tmp_path / "p")
    assert loaded.task.fmt.template == template
    default = prompts.label_log_likelihoods(loaded.model, loaded.tokenizer, TEXTS, loaded.labels)
    assert not np.allclose(loaded.task.scores(loaded.model, TEXTS), default)     # the stored format is used
    with pytest.raises(MiniftError, match=r"\{text\} exactly once"):
        FinetuneConfig(strategy="prompt", prompt_template="no slot")


def test_mean_pooling_and_class_weights_through_the_pipeline(tmp_path, init_run, data_files):
    train, test = data_files
    _, _, metrics = tune(init_run, tmp_path / "m", strategy="full", train_file=train, test_files=[test],
                         pooling="mean", class_weighting=True, epochs=1, batch_size=8)
    loaded = load_finetuned(tmp_path / "m")
    cfg = loaded.config
    assert cfg["pooling"] == "mean" and loaded.model.pooling == "mean" and cfg["train"]["class_weighting"] is True
    predicted = loaded.classify([t for t, _ in feedback.labeled_sets(0, 45, 24)["test_a"]])[0].argmax(1)
    assert ft.classification_metrics(reference_labels(loaded.labels), predicted,
                                      loaded.labels)["confusion"] == metrics["test"]["test"]["confusion"]
    with pytest.raises(MiniftError, match="class weights"):
        FinetuneConfig(strategy="prompt", class_weighting=True)


def test_scratch_does_not_use_the_pretrained_weights(tmp_path, init_run, data_files, config):
    train, test = data_files
    tune(init_run, tmp_path / "s", strategy="scratch", train_file=train, test_files=[test], epochs=1, batch_size=8,
         seed=5, lr=1e-12)
    pretrained, _ = load_safetensors(init_run / WEIGHTS)
    scratch, _ = load_safetensors(tmp_path / "s" / WEIGHTS)
    name = "transformer.h.0.attn.c_attn.weight"
    assert not np.allclose(scratch[name], pretrained[name])
    np.testing.assert_allclose(scratch[name], GPT(config, seed=5).state_dict()[name], atol=1e-9)  # lr ~ 0


def test_bad_input_is_refused_before_anything_is_written(tmp_path, init_run, data_files, tok, config):
    train, test = data_files
    out = tmp_path / "out"
    odd = write_csv(tmp_path / "odd.csv", [("Great stuff.", "positive"), ("Meh.", "mixed")])
    with pytest.raises(MiniftError, match=r"odd.csv.*'mixed'.*known labels"):
        tune(init_run, out, train_file=train, test_files=[odd])
    with pytest.raises(MiniftError, match=r"no column 'review'.*\['text', 'label'\]"):
        tune(init_run, out, train_file=train, test_files=[test], text_column="review")
    with pytest.raises(MiniftError, match="unknown strategy"):
        tune(init_run, out, strategy="bitfit", train_file=train)
    header_only = write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(MiniftError, match=r"empty.csv: no labeled examples"):
        tune(init_run, out, train_file=train, test_files=[header_only])
    unique = write_csv(tmp_path / "unique.csv", [("Great.", "a"), ("Bad.", "b"), ("Fine.", "c")])
    with pytest.raises(MiniftError, match=r"unique.csv: .*each of its 3 labels occurs only once"):
        tune(init_run, out, train_file=unique)
    for bad in (dict(lr=float("inf")), dict(lr=-1.0), dict(epochs=0), dict(batch_size=0), dict(lora_rank=0)):
        with pytest.raises(MiniftError, match=list(bad)[0].replace("_", "[_-]")):
            tune(init_run, out, strategy="lora", train_file=train, **bad)
    with pytest.raises(MiniftError, match=r"--k 9: .*between 1 and the model's 2 blocks"):
        tune(init_run, out, strategy="top-k", k=9, train_file=train)
    # a pretrained run whose tokenizer is not the one its model was trained with
    other = tmp_path / "other"
    Tokenizer.train(feedback.corpus_documents(200, seed=9), vocab_size=280).save(other)
    for name in ("config.json", WEIGHTS, "metrics.json"):
        (other / name).write_bytes((init_run / name).read_bytes())
    with pytest.raises(MiniftError, match=r"tokenizer.json does not match"):
        tune(other, out, train_file=train)
    # ... or whose weights do not fit its configuration
    (other / "tokenizer.json").write_bytes((init_run / "tokenizer.json").read_bytes())
    cfg = json.loads((init_run / "config.json").read_text())
    cfg["model"]["n_embd"] = 32
    write_json(other / "config.json", cfg)
    with pytest.raises(MiniftError, match=r"wte.weight has shape \(\d+, 16\), but config.json describes"):
        tune(other, out, train_file=train)
    assert not out.exists()
    # a fine-tuned run is not a pretrained one, and a run is never overwritten
    tune(init_run, out, strategy="head", train_file=train, test_files=[test], epochs=1)
    with pytest.raises(MiniftError, match="needs a pretraining run"):
        tune(out, tmp_path / "again", train_file=train)
    with pytest.raises(MiniftError, match="already holds a run"):
        tune(init_run, out, train_file=train)
    with pytest.raises(MiniftError, match="needs a fine-tuned run"):
        load_finetuned(init_run)


def test_an_interrupted_run_is_refused_then_resumed_exactly(tmp_path, init_run, data_files):
    train, test = data_files
    settings = dict(strategy="lora", train_file=train, test_files=[test], epochs=2, batch_size=8, lora_rank=2)
    _, _, straight = tune(init_run, tmp_path / "straight", **settings)
    out = tmp_path / "cut"
    tune(init_run, out, until=3, **settings)
    _, meta = load_safetensors(out / CHECKPOINT)
    assert json.loads(meta["minift"])["step"] == 3
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    names, _ = load_safetensors(out / WEIGHTS)
    assert any(n.endswith(".lora_A") for n in names)                # not merged yet: a checkpoint
    with pytest.raises(MiniftError, match=r"did not finish fine-tuning \(it stopped at step 3\).*--resume"):
        load_finetuned(out)
    with pytest.raises(MiniftError, match="--lr .* contradicts the run"):
        finetune(None, out, {"lr": 0.5}, resume=True, log=quiet, progress=Silent())
    _, _, resumed = finetune(None, out, {"strategy": "lora"}, resume=True, log=quiet, progress=Silent())
    def untimed(records):
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records]
    assert untimed(resumed["history"]["train"]) == untimed(straight["history"]["train"])
    assert resumed["test"] == straight["test"]
    a, _ = load_safetensors(tmp_path / "straight" / WEIGHTS)
    b, _ = load_safetensors(out / WEIGHTS)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert load_finetuned(out).classify(TEXTS)[0].shape == (len(TEXTS), 3)


def test_builtin_labeled_sets_are_the_default(tmp_path):
    train, tests = load_finetune_data(FinetuneConfig())
    assert len(train) == 480 and sorted(tests) == ["test_a", "test_b"]
    assert all(len(d) == 300 for d in tests.values()) and "part B" in tests["test_b"].source
    assert sorted(set(train.labels)) == list(feedback.LABELS)
    train, tests = load_finetune_data(FinetuneConfig(test_files=[write_csv(tmp_path / "t.csv", [("Fine.", "neutral")])]))
    assert len(train) == 480 and list(tests) == ["t"]


def test_cli_finetune_and_classify(tmp_path, init_run, data_files, capsys):
    train, test = data_files
    out = tmp_path / "cli"
    assert main(["finetune", "--init", str(init_run), "--out", str(out), "--strategy", "head",
                 "--train", str(train), "--test", str(test), "--epochs", "1", "--seed", "2"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["classify", "--model", str(out), "I love it.", "Awful.", "Great. " * 40]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[0] in feedback.LABELS and lines[0].endswith("I love it.")
    assert "1 text(s) were longer than the model's context" in captured.err
    assert main(["classify", "--model", str(out), "  "]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["finetune", "--init", str(init_run), "--out", str(tmp_path / "x"), "--train", str(train),
                 "--label-column", "sentiment"]) == 2
    err = capsys.readouterr().err
    assert "no column 'sentiment'" in err and "--label-column" in err and "Traceback" not in err
    assert main(["finetune", "--out", str(tmp_path / "y")]) == 2
    assert "--init is required" in capsys.readouterr().err
    assert main(["finetune", "--init", str(init_run), "--out", str(tmp_path / "z"), "--lr", "nan"]) == 2
    assert "lr (--lr) must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
    import minift.cli
    assert minift.cli.STRATEGIES == list(ft.STRATEGIES) and minift.cli.POOLINGS == list(ft.POOLINGS)
