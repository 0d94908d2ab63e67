"""Fine-tuning plans that fit the data: the step bound, --max-train-samples, --validation,
--eval-every, --save-every, --early-stop (and --resume of all of them), the note on a
classifier at chance. Tiny models built here only."""
import json
import math

import importlib

import numpy as np
import pytest

from minift.adapt import FINETUNE_RECIPES, FinetuneConfig, finetune, load_finetuned
from minift.adapt.metrics import classification_metrics
from minift.adapt.recipes import MAX_STEPS, EarlyStopping, collapse_warning, plan_steps, stratified_sample
from minift.cli import main
from minift.data import Tokenizer, feedback
from minift.errors import MiniftError
from minift.files import load_safetensors
from minift.model import GPT, GPTConfig
from minift.runs import CHECKPOINT, WEIGHTS
from minift.trainer import Trainer

from quiet import Silent, quiet
from run_dirs import pretrained_run
from scripts import write_csv


@pytest.fixture(scope="module")
def init_run(tmp_path_factory):
    tok = Tokenizer.train(feedback.corpus_documents(400, seed=5), vocab_size=300)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    return pretrained_run(tmp_path_factory.mktemp("init"), tok, config)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    sets = feedback.labeled_sets(seed=0, n_train=90, n_test=24)
    d = tmp_path_factory.mktemp("data")
    return (write_csv(d / "train.csv", sets["train"]), write_csv(d / "val.csv", sets["test_a"][:12]),
            write_csv(d / "test.csv", sets["test_a"][12:]))


def tune(init, out, **settings):
    until = settings.pop("until", None)
    logged = settings.pop("logged", [])
    return finetune(init, out, FinetuneConfig(**settings), until=until, log=logged.append, progress=Silent())


# ----------------------------------------------------------------------------- the step bound

def test_the_built_in_data_keeps_its_recipes_and_large_data_is_bounded():
    builtin = math.ceil(432 / 16)                        # 480 built-in labels, 10% held out
    tweets = math.ceil(10366 / 16)                       # 11,518 airline tweets, 10% held out
    for strategy, recipe in FINETUNE_RECIPES.items():
        if strategy == "prompt":
            continue
        assert plan_steps(recipe["epochs"], builtin) == (recipe["epochs"], MAX_STEPS, recipe["epochs"] * builtin)
        epochs, _, steps = plan_steps(recipe["epochs"], tweets)
        assert 1 <= epochs <= recipe["epochs"] and steps == epochs * tweets <= MAX_STEPS
    assert plan_steps(30, 648) == (1, 1000, 648) and MAX_STEPS == 1000      # lora on the tweets: not 19,440
    assert plan_steps(5, 10 * MAX_STEPS) == (1, MAX_STEPS, MAX_STEPS)         # one epoch too long: cut
    assert plan_steps(30, 584, epochs=30) == (30, None, 30 * 584)             # the user's epochs are kept
    assert plan_steps(30, 584, epochs=30, max_steps=100) == (30, 100, 100)
    assert plan_steps(30, 584, max_steps=3000) == (5, 3000, 5 * 584)


def test_the_plan_is_logged_and_recorded(tmp_path, init_run, files):
    train, _, test = files
    logged = []
    tune(init_run, tmp_path / "r", strategy="lora", train_file=train, test_files=[test], batch_size=8,
         max_steps=20, lora_rank=2, logged=logged)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["finetune"]["epochs"] == 1 and cfg["finetune"]["max_steps"] == 20 and cfg["train"]["epochs"] == 1
    plan = next(line for line in logged if line.startswith("plan:"))
    assert "81 training examples" in plan and "1 epoch of 11 steps = 11 steps" in plan and "30 epochs" in plan
    assert any(line.startswith("estimate: ") for line in logged)        # after the first steps


# ----------------------------------------------------------------------------- the data

def test_stratified_sample_keeps_proportions_and_is_seeded():
    labels = ["a"] * 760 + ["b"] * 190 + ["c"] * 50
    pick = stratified_sample(labels, 100, seed=1)
    assert len(pick) == 100 and len(set(pick)) == 100 and list(pick) == sorted(pick)
    assert [sum(labels[i] == c for i in pick) for c in "abc"] == [76, 19, 5]
    assert np.array_equal(pick, stratified_sample(labels, 100, seed=1))
    assert not np.array_equal(pick, stratified_sample(labels, 100, seed=2))
    assert sorted({labels[i] for i in stratified_sample(labels, 3, seed=0)}) == ["a", "b", "c"]   # each kept


def test_max_train_samples_and_a_validation_file(tmp_path, init_run, files):
    train, val, test = files
    _, _, m = tune(init_run, tmp_path / "r", strategy="head", train_file=train, validation_file=val,
                   test_files=[test], max_train_samples=30, epochs=1, batch_size=8)
    assert m["data"]["train"] == 30 and m["data"]["validation"] == 12 and m["validation"]["n"] == 12
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert str(val) in cfg["data_sha256"]
    assert cfg["finetune"]["validation_file"] == str(val) == cfg["data"]["validation"]
    odd = write_csv(tmp_path / "odd.csv", [("Meh.", "mixed")])
    with pytest.raises(MiniftError, match=r"odd.csv: .*'mixed'"):
        tune(init_run, tmp_path / "bad", train_file=train, validation_file=odd)
    assert not (tmp_path / "bad").exists()


def test_eval_every_and_save_every(tmp_path, init_run, files, monkeypatch):
    train, _, test = files
    saved, save = [], Trainer.save_checkpoint
    monkeypatch.setattr(Trainer, "save_checkpoint", lambda self: saved.append(self.step) or save(self))
    _, _, m = tune(init_run, tmp_path / "r", strategy="head", train_file=train, test_files=[test], epochs=1,
                   batch_size=8, eval_every=4, save_every=3)
    assert [e["step"] for e in m["history"]["eval"]] == [0, 4, 8, 11] and saved == [3, 6, 9, 11]
    assert {"val_loss", "val_macro_f1", "val_accuracy"} <= set(m["history"]["eval"][1])


# ----------------------------------------------------------------------------- early stopping

def test_early_stopping_unit(tmp_path):
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=1, n_embd=8), seed=0)
    stop = EarlyStopping("val_loss", 2, tmp_path / "best.safetensors")
    history = {"train": [], "eval": []}
    kept = None
    for step, loss in enumerate([1.0, 0.5, 0.7, 0.5, 0.6]):
        for p in model.parameters():
            p.data = p.data + 1.0                              # other weights at each evaluation
        history["eval"].append({"step": step, "val_loss": loss})
        kept = model.state_dict() if step == 1 else kept
        assert stop.update(model, history) == (step >= 3)     # 0.5 again is no improvement
    assert stop.finished(history) and stop.restore(model, history) == 1
    assert all(np.array_equal(v, kept[k]) for k, v in model.state_dict().items())
    maximise = EarlyStopping("val_macro_f1", 1, tmp_path / "f1.safetensors")
    assert maximise.best({"eval": [{"step": 0, "val_macro_f1": 0.2}, {"step": 1, "val_macro_f1": 0.4}]})["step"] == 1


def test_early_stopping_keeps_the_best_and_resumes_exactly(tmp_path, init_run, files):
    train, _, test = files
    settings = dict(strategy="head", train_file=train, test_files=[test], epochs=6, batch_size=8, lr=3e-2,
                    eval_every=3, early_stop=2)       # (measured: best at step 3, worse from then on)
    _, _, straight = tune(init_run, tmp_path / "straight", **settings)
    evals = straight["history"]["eval"]
    best = min(evals, key=lambda e: e["val_loss"])
    assert 0 < best["step"] == straight["best_step"] and evals[-1]["step"] == best["step"] + 6 < 66   # stopped
    assert straight["validation"]["accuracy"] == best["val_accuracy"]              # the best weights are the result
    assert json.loads(load_safetensors(tmp_path / "straight" / WEIGHTS)[1]["minift"])["step"] == best["step"]
    out = tmp_path / "cut"
    tune(init_run, out, until=4, **settings)
    with pytest.raises(MiniftError, match="--early-stop 5 contradicts"):
        finetune(None, out, {"early_stop": 5}, resume=True, log=quiet, progress=Silent())
    _, _, resumed = finetune(None, out, {"eval_every": 3}, resume=True, log=quiet, progress=Silent())
    assert resumed["history"]["eval"] == straight["history"]["eval"] and resumed["test"] == straight["test"]
    a, b = load_safetensors(tmp_path / "straight" / WEIGHTS)[0], load_safetensors(out / WEIGHTS)[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- collapse

def set_metrics(y_true, y_pred, loss=None):
    m = classification_metrics(y_true, y_pred, ["negative", "neutral", "positive"])
    return m if loss is None else {**m, "loss": loss}


def test_collapse_warning():
    y = np.array([0] * 60 + [1] * 20 + [2] * 20)
    healthy = np.array([0] * 50 + [1] * 25 + [2] * 25)
    message = collapse_warning(set_metrics(y, np.zeros(100, dtype=np.int64)))         # one class for everything
    assert message.startswith("warning: 100% of the validation predictions are 'negative'") and "60%" in message
    assert "at chance" in message and "--class-weights" in message and "\n" not in message
    assert "ln 3" not in message                                                       # no loss given
    uniform = collapse_warning(set_metrics(y, healthy, loss=1.05), "test_b")            # ln 3 = 1.0986, 5%: 1.044
    assert uniform.startswith("warning: the test_b loss 1.050 is within 5% of ln 3 = 1.099") and "at chance" in uniform
    both = collapse_warning(set_metrics(y, np.zeros(100, dtype=np.int64), loss=math.log(3)))
    assert "100% of the validation predictions" in both and "loss 1.099" in both
    assert collapse_warning(set_metrics(y, healthy, loss=1.04)) is None                 # 5.3% below ln 3
    assert collapse_warning(set_metrics(y, healthy, loss=0.4)) is None
    assert collapse_warning(set_metrics(y, np.array([0] * 94 + [1] * 6), loss=0.9)) is None     # 94%: not all
    assert collapse_warning(set_metrics(y, y)) is None
    assert collapse_warning(set_metrics(np.zeros(100, dtype=np.int64), np.zeros(100, dtype=np.int64))) is None


def test_finetune_notes_a_run_at_chance(tmp_path, init_run, files, monkeypatch, capsys):
    train, _, test = files
    logged, shown = [], []                   # a learning rate of 1e-9 leaves the head where it started: at chance
    _, _, metrics = finetune(init_run, tmp_path / "r", FinetuneConfig(strategy="head", train_file=train,
                                                                     test_files=[test], epochs=1, lr=1e-9),
                             log=logged.append, results=shown.append, progress=Silent())
    assert abs(metrics["validation"]["loss"] - math.log(3)) < 0.05 * math.log(3)
    notes = [line for line in logged if line.startswith("warning:")]
    assert len(notes) == 1 and "the validation loss" in notes[0] and "at chance" in notes[0]   # validation only
    assert not any("warning" in line for line in shown)           # a note, not a result: the CLI's stderr
    seen = []
    monkeypatch.setattr(importlib.import_module("minift.adapt.finetune"), "collapse_warning",
                        lambda m, name: seen.append((m["n"], "loss" in m)) or None)
    logged = []
    tune(init_run, tmp_path / "watched", strategy="head", train_file=train, test_files=[test], epochs=1,
         logged=logged)
    assert seen == [(9, True)] and not any(line.startswith("warning:") for line in logged)
    capsys.readouterr()
    monkeypatch.setattr(importlib.import_module("minift.adapt.finetune"), "collapse_warning",
                        lambda m, name: "warning: at chance")
    assert main(["finetune", "--init", str(init_run), "--out", str(tmp_path / "cli"), "--strategy", "head",
                 "--train", str(train), "--epochs", "1"]) == 0
    out, err = capsys.readouterr()
    assert "warning: at chance" in err and "warning" not in out


# ----------------------------------------------------------------------------- the command line

def test_cli_flags_are_recorded_checked_and_resumed(tmp_path, init_run, files, capsys):
    train, val, test = files
    out = tmp_path / "cli"
    flags = ["--max-train-samples", "40", "--validation", str(val), "--eval-every", "2", "--save-every", "3",
             "--early-stop", "3", "--early-stop-metric", "val_macro_f1", "--max-steps", "6"]
    assert main(["finetune", "--init", str(init_run), "--out", str(out), "--strategy", "head", "--train", str(train),
                 "--test", str(test), *flags]) == 0
    ran = json.loads((out / "config.json").read_text())["finetune"]
    assert {k: ran[k] for k in ("max_train_samples", "eval_every", "save_every", "early_stop", "max_steps")} == \
        {"max_train_samples": 40, "eval_every": 2, "save_every": 3, "early_stop": 3, "max_steps": 6}
    assert ran["early_stop_metric"] == "val_macro_f1" and ran["validation_file"] == str(val)
    assert (out / CHECKPOINT).exists() and load_finetuned(out).labels == ["negative", "neutral", "positive"]
    cut = tmp_path / "cut"                                      # the same run, interrupted: resumed by the CLI
    tune(init_run, cut, strategy="head", train_file=train, test_files=[test], validation_file=val, until=3,
         **{k: ran[k] for k in ("max_train_samples", "eval_every", "save_every", "early_stop", "max_steps",
                                "early_stop_metric")})
    capsys.readouterr()
    assert main(["finetune", "--resume", "--out", str(cut), "--eval-every", "5"]) == 2
    assert "--eval-every 5 contradicts" in capsys.readouterr().err
    assert main(["finetune", "--resume", "--out", str(cut), "--eval-every", "2", "--validation", str(val)]) == 0
    resumed, straight = (json.loads((d / "metrics.json").read_text()) for d in (cut, out))
    assert resumed["history"]["eval"] == straight["history"]["eval"] and resumed["test"] == straight["test"]
    for flag, value in (("--eval-every", "0"), ("--max-train-samples", "1"), ("--early-stop", "-1")):
        assert main(["finetune", "--init", str(init_run), "--out", str(tmp_path / "x"), flag, value]) == 2
        assert flag in capsys.readouterr().err
    assert main(["finetune", "--init", str(init_run), "--out", str(tmp_path / "x"), "--strategy", "prompt",
                 "--early-stop", "2"]) == 2
    assert not (tmp_path / "x").exists()
