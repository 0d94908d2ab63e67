"""Hugging Face GPT-2 directories: import (both key layouts), export, the commands that take
them, and the clear sentence for each thing that can be wrong. The tiny fixture in
tests/fixtures was written once by tests/fixtures/make_gpt2_fixture.py with transformers;
the tests that run transformers themselves skip cleanly without it. Nothing is downloaded."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minift.adapt import FinetuneConfig, finetune, load_finetuned
from minift.adapt.lora import parameter_counts
from minift.adapt.prompts import PromptFormat, _scoring_rows, label_log_likelihoods
from minift.adapt.tasks import make_task
from minift.cli import main
from minift.data import feedback, pad_batch
from minift.errors import MiniftError
from minift.files import load_safetensors, read_safetensors_header, save_safetensors, write_json
from minift import functional as F
from minift.hf_gpt2 import export_hf_gpt2, gpt2_shapes, is_hf_model_dir, load_hf_gpt2
from minift.model import GPT, GPTConfig, param_groups
from minift.optim import AdamW
from minift.pretrain import load_gpt
from minift.tensor import no_grad
from minift.trainer import Trainer

from quiet import Silent, quiet

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAVED = FIXTURES / "gpt2_tiny"            # save_pretrained's layout
HUB = FIXTURES / "gpt2_tiny_hub"          # the hub's layout, with stale attention buffers
EXPECTED, _ = load_safetensors(FIXTURES / "gpt2_tiny_expected.safetensors")
GREEDY = json.loads((FIXTURES / "gpt2_tiny_expected.json").read_text(encoding="utf-8"))


def logits_of(model, ids):
    with no_grad():
        return model(np.asarray(ids))[0].data


def copy_of(source, tmp_path):
    return Path(shutil.copytree(source, tmp_path / source.name))


def make_run(path, model, tokenizer, kind="pretrain", extra=None):
    """A finished minift run directory holding `model`'s weights."""
    path.mkdir(parents=True)
    tokenizer.save(path)
    write_json(path / "config.json", {"kind": kind, "model": model.config.to_dict(),
                                      "tokenizer_fingerprint": tokenizer.fingerprint(), **(extra or {})})
    save_safetensors(path / "model.safetensors", model.state_dict())
    write_json(path / "metrics.json", {"train": [], "eval": [], "finished": True})
    return path


def perturbed_fixture(seed=1):
    """The fixture's GPT with every weight moved by seeded noise: a model no file holds yet."""
    model, tokenizer, _ = load_hf_gpt2(SAVED)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data = p.data + rng.normal(0.0, 0.05, p.shape).astype(np.float32)
    return model, tokenizer


# ----------------------------------------------------------------------------- import

@pytest.mark.parametrize("directory", [SAVED, HUB], ids=["save_pretrained", "hub"])
def test_both_layouts_load_and_give_the_recorded_transformers_logits(directory):
    assert is_hf_model_dir(directory)
    model, tokenizer, info = load_gpt(directory)             # the loader every command uses
    assert info["kind"] == "huggingface-gpt2" and model.config.block_size == 64 and model.config.tie_weights
    assert tokenizer.vocab_size == 300 and tokenizer.eot_id == 299 and tokenizer.pad_id == 299
    assert any("no padding token" in note for note in info["notes"])
    assert tokenizer.encode(GREEDY["prompt"]) == GREEDY["prompt_ids"]
    np.testing.assert_allclose(logits_of(model, EXPECTED["input_ids"]), EXPECTED["logits"], rtol=1e-5, atol=1e-5)


def test_the_two_layouts_hold_the_same_weights():
    a, b = load_hf_gpt2(SAVED)[0].state_dict(), load_hf_gpt2(HUB)[0].state_dict()
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_gpt2_names_and_shapes_are_the_models_own():
    for tie in (True, False):
        config = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8, tie_weights=tie)
        state = GPT(config).state_dict()
        if tie:
            del state["lm_head.weight"]                      # tied: the token embedding itself
        assert gpt2_shapes(config) == {k: v.shape for k, v in state.items()}


def test_tokenizer_from_vocab_and_merges(tmp_path):
    d = copy_of(SAVED, tmp_path)
    tokenizer = load_hf_gpt2(SAVED)[1]
    (d / "tokenizer.json").unlink()
    tokenizer.hf.model.save(str(d))                          # vocab.json and merges.txt, as GPT-2 ships them
    rebuilt = load_hf_gpt2(d)[1]
    texts = ["The battery died after a week.", "  Great lid!\n", "<|endoftext|> is text here"]
    assert [rebuilt.encode(t) for t in texts] == [tokenizer.encode(t) for t in texts]
    assert rebuilt.eot_id == tokenizer.eot_id and rebuilt.decode(rebuilt.encode(texts[1])) == texts[1]


# ----------------------------------------------------------------------------- clear sentences

def rewrite_weights(directory, change):
    arrays, meta = load_safetensors(directory / "model.safetensors")
    change(arrays)
    save_safetensors(directory / "model.safetensors", arrays, meta)


def edit_config(directory, **fields):
    cfg = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    cfg.update(fields)
    (directory / "config.json").write_text(json.dumps(cfg), encoding="utf-8")


def transposed(arrays):
    arrays["transformer.h.0.attn.c_attn.weight"] = np.ascontiguousarray(arrays["transformer.h.0.attn.c_attn.weight"].T)


GET = "`huggingface-cli download openai-community/gpt2 --local-dir "        # then the directory itself
BROKEN = {
    "wrong shape": (lambda d: rewrite_weights(d, transposed),
                    ["tensor 'transformer.h.0.attn.c_attn.weight' has shape (96, 32)", "needs (32, 96)"]),
    "missing key": (lambda d: rewrite_weights(d, lambda a: a.pop("transformer.h.1.mlp.c_fc.bias")),
                    ["no tensor 'transformer.h.1.mlp.c_fc.bias'", "does not hold the GPT-2"]),
    "unexpected key": (lambda d: rewrite_weights(d, lambda a: a.update(score=np.zeros(3, np.float32))),
                       ["unexpected tensor 'score'"]),
    "activation": (lambda d: edit_config(d, activation_function="relu"),
                   ['activation_function "relu" is not supported', "gelu_new"]),
    "epsilon": (lambda d: edit_config(d, layer_norm_epsilon=1e-6), ["layer_norm_epsilon 1e-06 is not supported"]),
    "architecture": (lambda d: edit_config(d, model_type="llama"), ['model_type "llama" is not GPT-2']),
    "task head": (lambda d: edit_config(d, architectures=["GPT2ForSequenceClassification"]),
                  ['architectures ["GPT2ForSequenceClassification"] is not a language model']),
    "vocabulary": (lambda d: edit_config(d, vocab_size=301), ["has 300 tokens but", "vocab_size 301"]),
    "no weights": (lambda d: (d / "model.safetensors").unlink(), ["has no model.safetensors", GET]),
    "pickle only": (lambda d: (d / "model.safetensors").rename(d / "pytorch_model.bin"),
                    ["pytorch_model.bin is a pickle, which minift never loads", GET]),
    "no tokenizer": (lambda d: (d / "tokenizer.json").unlink(), ["has no tokenizer.json", GET]),
    "no config": (lambda d: (d / "config.json").unlink(), ["has no config.json", GET]),
}


@pytest.mark.parametrize("problem", list(BROKEN))
def test_each_problem_is_one_clear_sentence(tmp_path, problem, capsys):
    d = copy_of(SAVED, tmp_path)
    damage, phrases = BROKEN[problem]
    damage(d)
    with pytest.raises(MiniftError) as caught:
        load_gpt(d)
    message = str(caught.value)
    assert "\n" not in message and all(p in message for p in phrases), message
    assert main(["generate", "--model", str(d), "--prompt", "The"]) == 2      # the CLI: one line, exit 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and phrases[0] in err


def test_hub_layout_names_are_given_as_the_file_has_them(tmp_path):
    d = copy_of(HUB, tmp_path)
    rewrite_weights(d, lambda a: a.pop("h.1.ln_2.weight"))
    with pytest.raises(MiniftError, match=r"no tensor 'h\.1\.ln_2\.weight'"):
        load_hf_gpt2(d)


# ----------------------------------------------------------------------------- export

def test_export_then_import_round_trips_bit_exactly(tmp_path):
    model, tokenizer = perturbed_fixture()
    for tie in (True, False):
        config = GPTConfig(**{**model.config.to_dict(), "tie_weights": tie})
        source = GPT(config, seed=3)
        source.load_state_dict({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}, strict=False)
        run = make_run(tmp_path / f"run-{tie}", source, tokenizer)
        out = tmp_path / f"hf-{tie}"
        assert main(["export", "--model", str(run), "--out", str(out)]) == 0
        header, meta = read_safetensors_header(out / "model.safetensors")
        assert meta == {"format": "pt"} and all(k.startswith("transformer.") or k == "lm_head.weight" for k in header)
        assert ("lm_head.weight" in header) == (not tie)         # tied: left out, as save_pretrained does
        loaded, tok2, _ = load_gpt(out)
        assert loaded.config == config and tok2.fingerprint() == tokenizer.fingerprint()
        a, b = source.state_dict(), loaded.state_dict()
        assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
        assert np.array_equal(logits_of(loaded, EXPECTED["input_ids"]), logits_of(source, EXPECTED["input_ids"]))


def test_a_hub_directory_exports_to_save_pretrained_names(tmp_path):
    notes = export_hf_gpt2(HUB, tmp_path / "out")
    header, _ = read_safetensors_header(tmp_path / "out" / "model.safetensors")
    assert notes == [] and len(header) == 28 and not any(k.endswith(("attn.bias", "masked_bias")) and ".c_" not in k
                                                         for k in header)
    a, b = load_hf_gpt2(HUB)[0].state_dict(), load_hf_gpt2(tmp_path / "out")[0].state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_export_refuses_to_overwrite_a_run_or_other_files(tmp_path):
    model, tokenizer = perturbed_fixture()
    run = make_run(tmp_path / "run", model, tokenizer)
    other = make_run(tmp_path / "other", model, tokenizer)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    for out, phrase in ((other, "holds a minift run"), (tmp_path / "notes", "is not empty"), (run, "being exported")):
        with pytest.raises(MiniftError, match=phrase):
            export_hf_gpt2(run, out)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine" and json.loads((other / "config.json").read_text())["kind"] == "pretrain"
    export_hf_gpt2(run, tmp_path / "hf")
    export_hf_gpt2(run, tmp_path / "hf")                         # an earlier export is replaced


def test_a_model_gpt2_cannot_express_is_not_exported(tmp_path):
    config = GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=8, bias=False)
    run = make_run(tmp_path / "run", GPT(config), load_hf_gpt2(SAVED)[1])
    with pytest.raises(MiniftError, match="model.bias = false has no GPT-2 equivalent"):
        export_hf_gpt2(run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# ----------------------------------------------------------------------------- with transformers

def transformers_model(directory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    os.environ.setdefault("USE_HUB_KERNELS", "0")       # recent transformers: no `kernels` package needed offline
    transformers.logging.set_verbosity_error()
    return torch, transformers.GPT2LMHeadModel.from_pretrained(str(directory)).eval()


def test_an_exported_run_loads_in_transformers_with_the_same_logits_and_greedy_text(tmp_path, capsys):
    model, tokenizer = perturbed_fixture()
    run = make_run(tmp_path / "run", model, tokenizer)
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "hf")]) == 0
    torch, hf = transformers_model(tmp_path / "hf")
    tokenizers = pytest.importorskip("tokenizers")
    hf_tok = tokenizers.Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    with torch.no_grad():
        theirs = hf(torch.tensor(EXPECTED["input_ids"])).logits.numpy()
    np.testing.assert_allclose(theirs, logits_of(model, EXPECTED["input_ids"]), rtol=1e-5, atol=1e-5)
    prompt = "The strap"
    ids = hf_tok.encode(prompt).ids
    assert ids == tokenizer.encode(prompt)
    out = hf.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False, eos_token_id=tokenizer.eot_id,
                      pad_token_id=tokenizer.eot_id)[0, len(ids):].tolist()
    out = out[:out.index(tokenizer.eot_id)] if tokenizer.eot_id in out else out
    capsys.readouterr()
    assert main(["generate", "--model", str(run), "--prompt", prompt, "--temperature", "0",
                 "--max-new-tokens", "10"]) == 0
    assert capsys.readouterr().out == prompt + hf_tok.decode(out) + "\n"


def test_a_classifier_from_gpt2_exports_as_a_sequence_classifier(tmp_path, monkeypatch):
    """GPT-2's tokenizer pads with <|endoftext|>, which also ends every text: the export says
    pad_token_id null, and transformers scores the last token of one text at a time."""
    run = tmp_path / "ft"
    finetune(SAVED, run, FinetuneConfig(strategy="full", train_file=str(labeled_file(tmp_path)), epochs=1),
             log=quiet, progress=Silent())
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "hf")]) == 0
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text(encoding="utf-8"))
    assert cfg["architectures"] == ["GPT2ForSequenceClassification"] and cfg["pad_token_id"] is None
    ours = load_finetuned(run)
    texts = ["The lid is superb.", "It broke after a day.", "A bag."]
    seqs, _ = ours.task.encode(texts)
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("USE_HUB_KERNELS", "0")
    transformers.logging.set_verbosity_error()
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(str(tmp_path / "hf")).eval()
    with torch.no_grad():
        theirs = np.concatenate([torch.softmax(hf(torch.tensor([ids])).logits.double(), -1).numpy() for ids in seqs])
    np.testing.assert_allclose(theirs, ours.classify(texts)[0], rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- the commands on a GPT-2 directory

def test_generate_on_a_save_pretrained_directory_gives_transformers_greedy_text(capsys):
    assert main(["generate", "--model", str(SAVED), "--prompt", GREEDY["prompt"], "--temperature", "0",
                 "--max-new-tokens", str(GREEDY["max_new_tokens"])]) == 0
    captured = capsys.readouterr()
    assert captured.out == GREEDY["prompt"] + GREEDY["continuation"] + "\n"
    assert "has not finished" not in captured.err


def labeled_file(tmp_path):
    path = tmp_path / "labels.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("text", "label")] + feedback.labeled_sets(seed=0, n_train=30, n_test=3)["train"])
    return path


def test_finetune_init_from_a_gpt2_directory_trains_a_classifier_and_resumes(tmp_path, capsys):
    data = labeled_file(tmp_path)
    out = tmp_path / "ft"
    assert main(["finetune", "--init", str(SAVED), "--out", str(out), "--strategy", "head", "--train", str(data),
                 "--test", str(data), "--epochs", "2"]) == 0
    captured = capsys.readouterr()
    assert "pads with <|endoftext|>" in captured.err and "labels accuracy" in captured.out    # a note; a result
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert cfg["init"] == str(SAVED.resolve()) and cfg["model"]["vocab_size"] == 300
    assert main(["classify", "--model", str(out), "I love it.", "Awful."]) == 0
    # a run stopped early continues from the GPT-2 directory its config.json names
    config = FinetuneConfig(strategy="lora", train_file=str(data), epochs=2, seed=1)
    _, _, partial = finetune(SAVED, tmp_path / "lora", config, until=1, log=quiet, progress=Silent())
    assert "test" not in partial
    _, _, metrics = finetune(None, tmp_path / "lora", {}, resume=True, log=quiet, progress=Silent())
    assert metrics["finished"] and metrics["strategy"] == "lora"
    assert load_finetuned(tmp_path / "lora").classify(["Fine."])[0].shape == (1, 3)


@pytest.mark.parametrize("strategy", ["head", "top-k", "lora"])
def test_only_what_trains_gets_gradients_and_optimizer_state(strategy):
    gpt, tokenizer, _ = load_hf_gpt2(SAVED)
    config = FinetuneConfig(strategy=strategy, k=1 if strategy == "top-k" else None)
    task = make_task(config, ["a", "b", "c"], tokenizer, gpt.config, ["x", "y", "z"], [0, 1, 2])
    model = task.build(gpt)
    seqs, labels = task.encode(["The lid is fine.", "Awful strap.", "Superb."] * 2)[0], np.array([0, 1, 2] * 2)
    optimizer = AdamW(param_groups(model, 0.01, trainable_only=True), lr=1e-3)
    Trainer(model, optimizer, task.batches(seqs, labels, 3, seed=0), task.loss, steps=2, progress=Silent()).run()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(optimizer.state) == trainable and len(trainable) < len(model.parameters())
    assert sum(p.size for p in model.parameters() if id(p) in trainable) == parameter_counts(model)[0]


def test_prompt_scores_use_the_lm_head_only_where_an_answer_is():
    gpt, tokenizer, _ = load_hf_gpt2(SAVED)
    texts, labels, fmt = ["The lid is superb.", "It broke.", "Fine, I guess."], ["negative", "positive"], PromptFormat()
    scores = label_log_likelihoods(gpt, tokenizer, texts, labels, fmt)
    rows, spans = _scoring_rows(tokenizer, fmt, texts, labels, (), gpt.config.block_size)
    ids, _ = pad_batch(rows, tokenizer.pad_id)
    with no_grad():
        logp = F.log_softmax(gpt(ids)[0], axis=-1).data          # every position, the plain way
    full = [sum(logp[r, s - 1 + i, rows[r][s + i]] for i in range(n)) for r, (s, n) in enumerate(spans)]
    np.testing.assert_allclose(scores.reshape(-1), full, rtol=1e-5, atol=1e-5)


def run_demo(*args):
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, str(root / "demos" / "gpt2_finetune.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(root), "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_the_demo_compares_the_strategies_or_says_how_to_get_gpt2(tmp_path):
    done = run_demo("--runs", tmp_path / "none")
    assert done.returncode != 0 and "huggingface-cli download openai-community/gpt2 --local-dir" in done.stderr
    data = labeled_file(tmp_path)
    done = run_demo("--model", SAVED, "--train", data, "--test", data, "--limit", 20, "--epochs", 1,
                    "--runs", tmp_path / "runs")
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout.split("GPT-2 from", 1)[1]
    assert "labels acc" in table and all(name in table for name in ("head", "top-2", "lora r=8", "prompt 0-shot"))
    assert "a random sample of 20 of its 30 examples" in done.stdout
    assert json.loads((tmp_path / "runs" / "summary.json").read_text())["head"]["strategy"] == "head"
