"""What a user keeps besides the weights: a model card (README.md) in every finished run
and every export, a classifier exported as transformers' GPT2ForSequenceClassification
(the same probabilities there), the LICENSE and py.typed the package ships, and type
annotations on the public API. The transformers checks skip cleanly without torch and
transformers."""
import configparser
import re
import csv
import inspect
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from minift.adapt import FinetuneConfig, finetune, load_finetuned
from minift.adapt.tasks import task_from_config
from minift.align import AlignConfig, align
from minift.card import minift_version
from minift.data import feedback
from minift.errors import MiniftError
from minift.files import file_sha256, load_safetensors, save_safetensors
from minift.hf_gpt2 import export_hf_gpt2
from minift.model import GPT
from minift.pretrain import PretrainConfig, pretrain
from minift.runs import RunDir
from minift.tensor import Tensor

from quiet import Silent, quiet

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["I love the lid.", "The strap broke after a week, sadly.", "It is a bag.", "Awful!"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny pretrained GPT (minift's tokenizer: <|pad|> is not <|endoftext|>) and labeled files."""
    root = tmp_path_factory.mktemp("artifacts")
    (root / "corpus.txt").write_text(feedback.corpus_text(n_bytes=30_000, seed=3), encoding="utf-8")
    pretrain(root / "pre", PretrainConfig(corpus_files=[str(root / "corpus.txt")], preset="tiny", steps=4,
                                          batch_size=2, eval_every=2, vocab_size=300), log=quiet, progress=Silent())
    sets = feedback.labeled_sets(seed=0, n_train=30, n_test=6)
    for name, rows in (("train", sets["train"]), ("test", sets["test_a"])):
        with open(root / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([("text", "label")] + rows)
    return root


def fine_tuned(folder, name, strategy="full", **settings):
    """A classifier run under `folder` (made once per name)."""
    out = folder / name
    if not out.exists():
        config = FinetuneConfig(strategy=strategy, train_file=str(folder / "train.csv"),
                                test_files=[str(folder / "test.csv")], epochs=2, **settings)
        finetune(folder / "pre", out, config, log=quiet, progress=Silent())
    return out


# ----------------------------------------------------------------------------- model cards

def test_a_finished_fine_tuning_run_has_a_card_written_just_before_metrics(folder, monkeypatch):
    renamed, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(Path(dst).name), real_replace(src, dst)))
    run = fine_tuned(folder, "card-run")
    monkeypatch.undo()
    assert renamed[-2:] == ["README.md", "metrics.json"]               # metrics.json still marks the end
    card = (run / "README.md").read_text(encoding="utf-8")
    cfg, metrics = json.loads((run / "config.json").read_text()), json.loads((run / "metrics.json").read_text())
    test = metrics["test"]["test"]
    for phrase in ("`classifier`", "**strategy**: `full`, pooling `last`", "GPT-2 decoder", "2 layers",
                   f"`{cfg['init']}` (model.safetensors sha256 `{file_sha256(folder / 'pre' / 'model.safetensors')}`)",
                   f"`{folder / 'train.csv'}` (sha256 `{file_sha256(folder / 'train.csv')}`)",
                   f"`{folder / 'test.csv'}` (sha256 `{file_sha256(folder / 'test.csv')}`)",
                   "`negative`, `neutral`, `positive`", "- `epochs`: `2`",
                   f"accuracy {test['accuracy']:.1%}, macro-F1 {test['macro_f1']:.3f}",
                   f"`model.safetensors` sha256 `{file_sha256(run / 'model.safetensors')}`",
                   f"by minift {minift_version()}", f"python -m minift classify --model {run}"):
        assert phrase in card, phrase


def test_pretraining_and_alignment_runs_have_cards(folder):
    card = (folder / "pre" / "README.md").read_text(encoding="utf-8")
    corpus = json.loads((folder / "pre" / "config.json").read_text())["corpus_sha256"]
    val_loss = json.loads((folder / "pre" / "metrics.json").read_text())["eval"][-1]["val_loss"]
    assert "`pretrain`" in card and f"(text sha256 `{corpus}`)" in card and f"val_loss {val_loss:.4g}" in card
    align(folder / "pre", folder / "sft", AlignConfig(method="sft", examples=36, epochs=1, batch_size=8,
                                                      judge_samples=0), log=quiet, progress=Silent())
    card = (folder / "sft" / "README.md").read_text(encoding="utf-8")
    data = json.loads((folder / "sft" / "config.json").read_text())["data_sha256"]
    assert "`sft`" in card and all(f"`{name}` (sha256 `{digest}`)" in card for name, digest in data.items())
    assert f"(model.safetensors sha256 `{file_sha256(folder / 'pre' / 'model.safetensors')}`)" in card


def test_the_card_names_the_version_setup_cfg_gives():
    import minift
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: minift.__version__"   # one source of truth
    assert re.fullmatch(r"\d+\.\d+\.\d+", minift.__version__) and minift_version() == minift.__version__


# ----------------------------------------------------------------------------- classifier export

def transformers_classifier(directory, monkeypatch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("USE_HUB_KERNELS", "0")       # recent transformers: no `kernels` package needed offline
    transformers.logging.set_verbosity_error()
    return torch, transformers.GPT2ForSequenceClassification.from_pretrained(str(directory)).eval()


def transformers_probabilities(directory, texts, monkeypatch):
    """Probabilities transformers gives the texts, tokenized by the exported tokenizer.json
    and right-padded with config.json's pad_token_id (one text at a time without one)."""
    import tokenizers
    torch, model = transformers_classifier(directory, monkeypatch)
    ids = [e.ids for e in tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json")).encode_batch(texts)]
    pad = model.config.pad_token_id
    rows = [ids] if pad is not None else [[i] for i in ids]
    out = []
    for batch in rows:
        width = max(map(len, batch))
        with torch.no_grad():
            logits = model(torch.tensor([i + [pad or 0] * (width - len(i)) for i in batch])).logits
        out.append(torch.softmax(logits.double(), -1).numpy())
    return np.concatenate(out), ids


def with_head_bias(run, bias):
    """Set the run's head bias (a classifier whose bias matters, so the fold is tested)."""
    arrays, meta = load_safetensors(run / "model.safetensors")
    arrays["head.bias"] = np.asarray(bias, dtype=np.float32)
    save_safetensors(run / "model.safetensors", arrays, meta)


def test_a_classifier_gives_the_same_probabilities_in_transformers(folder, tmp_path, monkeypatch):
    run = Path(shutil.copytree(fine_tuned(folder, "full"), tmp_path / "full"))
    with_head_bias(run, [1.5, -2.0, 0.25])
    assert export_hf_gpt2(run, tmp_path / "hf") == []
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["architectures"] == ["GPT2ForSequenceClassification"] and cfg["num_labels"] == 3
    assert cfg["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"} and cfg["pad_token_id"] == 1
    assert "score.weight" in load_safetensors(tmp_path / "hf" / "model.safetensors")[0]
    ours = load_finetuned(run)
    theirs, ids = transformers_probabilities(tmp_path / "hf", TEXTS, monkeypatch)
    assert ids == ours.task.encode(TEXTS)[0]                 # the exported tokenizer appends <|endoftext|>
    np.testing.assert_allclose(theirs, ours.classify(TEXTS)[0], rtol=0, atol=1e-5)
    card = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    assert "GPT2ForSequenceClassification" in card and file_sha256(folder / "train.csv") in card


def test_a_lora_checkpoint_is_merged_before_export(folder, tmp_path, monkeypatch):
    run = tmp_path / "lora"
    config = FinetuneConfig(strategy="lora", train_file=str(folder / "train.csv"), epochs=2, lora_rank=2, seed=3)
    finetune(folder / "pre", run, config, until=1, log=quiet, progress=Silent())
    weights, _ = load_safetensors(run / "model.safetensors")
    assert any(".lora_B" in k for k in weights)                     # unmerged adapters, trained one step
    notes = export_hf_gpt2(run, tmp_path / "hf")
    assert any("has not finished training" in n for n in notes)
    # minift's own model, adapters and all, on the checkpoint's weights
    cfg = RunDir(run).read_config()
    task = task_from_config(cfg, RunDir(run).load_tokenizer(cfg), run / "config.json")
    model = task.build(GPT(cfg["model"]))
    model.load_state_dict(weights)
    ours = np.exp(task.scores(model.eval(), task.encode(TEXTS)[0]))
    theirs, _ = transformers_probabilities(tmp_path / "hf", TEXTS, monkeypatch)
    np.testing.assert_allclose(theirs, ours / ours.sum(axis=1, keepdims=True), rtol=0, atol=1e-5)


def edited_config(run, tmp_path, **changes):
    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    cfg = json.loads((copy / "config.json").read_text())
    for key, value in changes.items():
        section, _, name = key.partition("__")
        (cfg[section].__setitem__(name, value) if name else cfg.__setitem__(section, value))
    (copy / "config.json").write_text(json.dumps(cfg))
    return copy


@pytest.mark.parametrize("change, phrase", [
    ({"pooling": "mean"}, 'pools by "mean"; transformers\' GPT2ForSequenceClassification reads the last token'),
    ({"model__causal": False}, "backbone is an encoder (bidirectional attention)"),
    ({"head_weight": 0.0}, "head's bias cannot be folded into the final LayerNorm"),
])
def test_what_transformers_cannot_compute_is_refused_in_one_sentence(folder, tmp_path, change, phrase):
    run = fine_tuned(folder, "full")
    if "head_weight" in change:
        run = edited_config(run, tmp_path)
        arrays, meta = load_safetensors(run / "model.safetensors")
        arrays["head.weight"] = np.zeros_like(arrays["head.weight"])       # rank 0: no delta gives the bias
        save_safetensors(run / "model.safetensors", arrays, meta)
    else:
        run = edited_config(run, tmp_path, **change)
    with pytest.raises(MiniftError) as caught:
        export_hf_gpt2(run, tmp_path / "hf")
    assert phrase in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "hf").exists()                                  # nothing written


# ----------------------------------------------------------------------------- the package

def test_the_license_and_py_typed_ship_with_the_package():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["license"] == "MIT" and setup["metadata"]["license_files"].strip() == "LICENSE"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the minift authors" in text
    assert "py.typed" in setup["options.package_data"]["minift"] and (ROOT / "minift" / "py.typed").is_file()


def public_api():
    """(name, function) of every function of the public API that must stay annotated."""
    from minift.adapt import FinetunedModel
    api = [("pretrain", pretrain), ("finetune", finetune), ("load_finetuned", load_finetuned), ("align", align),
           ("FinetunedModel.__init__", FinetunedModel.__init__), ("FinetunedModel.classify", FinetunedModel.classify)]
    # Tensor's methods written with `def` (the one-line property lambdas, shape ... is_leaf, stay as they are)
    for name, member in vars(Tensor).items():
        member = member.fget if isinstance(member, property) else member
        if inspect.isfunction(member) and member.__name__ != "<lambda>" and (name[0] != "_" or name == "__init__"):
            api.append((f"Tensor.{name}", member))
    for cls in (PretrainConfig, FinetuneConfig, AlignConfig):       # their own methods, not dataclass's
        api += [(f"{cls.__name__}.{n}", f) for n, f in vars(cls).items()
                if inspect.isfunction(f) and (n[0] != "_" or n == "__post_init__")]
    return api


def test_the_public_api_is_annotated():
    api = public_api()
    assert len(api) > 25
    missing = [f"{name}({p.name})" for name, f in api for p in inspect.signature(f).parameters.values()
               if p.name != "self" and p.annotation is inspect.Parameter.empty]
    missing += [f"{name} -> ?" for name, f in api if inspect.signature(f).return_annotation is inspect.Signature.empty]
    assert not missing, f"unannotated: {missing}"
    for cls in (PretrainConfig, FinetuneConfig, AlignConfig):            # a dataclass field is its annotation
        assert set(cls.__annotations__) >= {f for f in cls.__dataclass_fields__}
