"""Run directories: the lock, config.json checking, weights checked before allocation,
repair after a crash between writes, old run directories, the training loop's
non-finite stop, --resume conflicts and what Ctrl-C says."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from minift.adapt import FinetuneConfig, finetune, load_finetuned
from minift.cli import main
from minift.data import Tokenizer, feedback
from minift.errors import MiniftError
from minift.files import load_safetensors, save_safetensors, write_json
from minift.nn import Module, Parameter
from minift.optim import SGD
from minift.pretrain import PretrainConfig, load_gpt, pretrain
from minift.runs import CHECKPOINT, FINETUNED_KINDS, PRETRAINED_KINDS, WEIGHTS, RunDir
from minift.trainer import Trainer

from quiet import Silent, quiet




@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "feedback.txt"
    path.write_text(feedback.corpus_text(n_bytes=40_000, seed=3), encoding="utf-8")
    return path


def tiny_config(corpus_file, **kw):
    return PretrainConfig(**{"corpus_files": [corpus_file], "preset": "tiny", "steps": 4, "batch_size": 2,
                             "eval_every": 2, "vocab_size": 300, **kw})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, corpus_file):
    out = tmp_path_factory.mktemp("runs") / "pre"
    pretrain(out, tiny_config(corpus_file), log=quiet, progress=Silent())
    return out


# ----------------------------------------------------------------------------- the lock

def test_one_process_at_a_time_and_the_holder_is_named(tmp_path):
    run = RunDir(tmp_path / "r").lock("pretrain")
    with pytest.raises(MiniftError, match=rf"in use by another minift process \(pid {os.getpid()} running "
                                          r"`minift pretrain`"):
        RunDir(tmp_path / "r").lock("finetune")
    run.unlock()
    RunDir(tmp_path / "r").lock().unlock()                  # free again


def test_the_lock_dies_with_its_process(tmp_path):
    code = (f"import os, signal; from minift.runs import RunDir; RunDir({str(tmp_path / 'r')!r}).lock(); "
            f"print('locked', flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL and "locked" in done.stdout
    RunDir(tmp_path / "r").lock().unlock()                  # the kernel released it


def test_a_command_that_fails_its_checks_leaves_no_directory(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("The kettle is superb. " * 20, encoding="utf-8")
    with pytest.raises(MiniftError, match=r"the corpus gives \d+ tokens; preset 'tiny' .* needs at least 650"):
        pretrain(tmp_path / "small", PretrainConfig(corpus_files=[short], preset="tiny", vocab_size=300), log=quiet)
    assert not (tmp_path / "small").exists()
    with pytest.raises(MiniftError, match="nothing to resume"):
        pretrain(tmp_path / "nowhere", resume=True, log=quiet)
    assert not (tmp_path / "nowhere").exists()


# ----------------------------------------------------------------------------- config.json is checked

@pytest.mark.parametrize("change, message", [
    ({"bias": "false"}, r"model.bias must be true or false, found \"false\""),
    ({"n_embd": "64"}, r"model.n_embd must be an integer, found \"64\""),
    ({"vocab_size": True}, r"model.vocab_size must be an integer, found true"),
    ({"dropout": [0.1]}, r"model.dropout must be a number"),
    ({"n_head": 3}, r"n_embd \(64\) must be divisible by n_head \(3\)"),
    ({"block_size": 0}, r"block_size must be a positive integer"),
    ({"depth": 2}, r"unknown fields \['depth'\]"),
    ({"n_layer": 10 ** 9}, r"model.safetensors holds 2 blocks, but config.json says n_layer = 1000000000"),
    ({"vocab_size": 301}, r"tokenizer.json has 300 tokens but the model in config.json was built for 301"),
])
def test_config_json_is_checked_before_anything_is_built(tmp_path, pretrained, change, message):
    run = copy_run(pretrained, tmp_path / "r", ("config.json", "tokenizer.json", WEIGHTS, "metrics.json"))
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"].update(change)
    write_json(run / "config.json", cfg)
    with pytest.raises(MiniftError, match=message) as e:
        load_gpt(run)
    assert str(run) in str(e.value)


def test_weights_that_do_not_fit_are_refused_by_their_header(tmp_path, pretrained):
    run = copy_run(pretrained, tmp_path / "r", ("config.json", "tokenizer.json", "metrics.json"))
    arrays, _ = load_safetensors(pretrained / WEIGHTS)
    save_safetensors(run / WEIGHTS, {k: v for k, v in arrays.items() if k != "transformer.wpe.weight"})
    with pytest.raises(MiniftError, match="no tensor transformer.wpe.weight"):
        load_gpt(run)
    arrays["transformer.h.0.mlp.c_fc.bias"] = arrays["transformer.h.0.mlp.c_fc.bias"][:5]
    save_safetensors(run / WEIGHTS, arrays)
    with pytest.raises(MiniftError, match=r"does not fit the model .*c_fc.bias"):
        load_gpt(run)


# ----------------------------------------------------------------------------- repair, finished, remove

def test_repair_brings_weights_and_metrics_back_to_the_checkpoint(tmp_path, pretrained):
    run_path = copy_run(pretrained, tmp_path / "r")
    model_state, _, meta = RunDir(run_path).load_checkpoint()
    stale = {k: v + 1 for k, v in model_state.items()}
    with RunDir(run_path) as run:
        run.save_weights(stale, step=2)                     # a crash left the weights one checkpoint behind
        run.write_metrics({"train": [], "eval": [], "step": 2, "finished": False})
        assert run.weights_step() == 2 and run.checkpoint_step() == 4 and not run.is_finished()
        assert run.repair(log=quiet) == 4
    repaired, _ = load_safetensors(run_path / WEIGHTS)
    assert all(np.array_equal(repaired[k], model_state[k]) for k in model_state)
    assert RunDir(run_path).weights_step() == 4
    _, _, history = pretrain(run_path, resume=True, log=quiet, progress=Silent())   # finishes it again
    assert RunDir(run_path).is_finished() and history["train"] == meta["history"]["train"]


def os_listdir(path):
    return [p.name for p in path.iterdir() if p.is_file()]


def copy_run(src, dst, names=None):
    """A copy of the run directory `src` (or of the files `names` of it) at `dst`."""
    dst.mkdir()
    for name in names or os_listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_remove_only_deletes_runs_of_the_kinds_asked_for(tmp_path, pretrained):
    with pytest.raises(MiniftError, match="needs a fine-tuned run"):
        RunDir(pretrained).remove(FINETUNED_KINDS)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(MiniftError, match="holds no run; not deleting it"):
        RunDir(tmp_path / "notes").remove(PRETRAINED_KINDS)
    copy = copy_run(pretrained, tmp_path / "copy")
    RunDir(copy).remove(PRETRAINED_KINDS)
    assert not copy.exists() and (tmp_path / "notes" / "todo.txt").exists()


def test_run_directories_written_before_format_2_still_load(tmp_path, pretrained):
    """Old runs: config.json without "format", weights without step metadata, metrics.json
    without "finished" (a pretraining run whose history reached its steps; a fine-tuning
    run holding final results; a prompt run keeping its template as "prompt_template")."""
    cfg = json.loads((pretrained / "config.json").read_text())
    tok = Tokenizer.load(pretrained)
    weights, _ = load_safetensors(pretrained / WEIGHTS)
    old = tmp_path / "old_pretrain"
    old.mkdir()
    (old / "tokenizer.json").write_bytes((pretrained / "tokenizer.json").read_bytes())
    write_json(old / "config.json", {"kind": "pretrain", "model": cfg["model"], "train": {**cfg["train"]},
                                     "tokenizer_fingerprint": cfg["tokenizer_fingerprint"]})
    save_safetensors(old / WEIGHTS, weights)
    write_json(old / "metrics.json", {"train": [{"step": 4, "loss": 1.0}], "eval": []})
    model, _, _ = load_gpt(old)
    assert RunDir(old).is_finished() and RunDir(old).weights_step() is None
    assert main(["generate", "--model", str(old), "--prompt", "The kettle", "--max-new-tokens", "3"]) == 0

    old_prompt = tmp_path / "old_prompt"
    old_prompt.mkdir()
    (old_prompt / "tokenizer.json").write_bytes((pretrained / "tokenizer.json").read_bytes())
    labels = ["negative", "neutral", "positive"]
    write_json(old_prompt / "config.json", {
        "kind": "prompt", "strategy": "prompt", "model": cfg["model"], "labels": labels, "pooling": None,
        "top_k": None, "lora": None, "shots": [["Great.", "positive"]], "prompt_template": "Said: {text}\nSo:",
        "max_len": cfg["model"]["block_size"], "init": str(pretrained),
        "tokenizer_fingerprint": tok.fingerprint(), "train": {}, "data": {}})
    save_safetensors(old_prompt / WEIGHTS, weights)
    write_json(old_prompt / "metrics.json", {"validation": {}, "test": {}})
    loaded = load_finetuned(old_prompt)
    assert loaded.task.fmt.template == "Said: {text}\nSo:" and loaded.task.shots == [("Great.", "positive")]
    probs, _ = loaded.classify(["The lid is superb."])
    assert probs.shape == (1, 3)


# ----------------------------------------------------------------------------- training stops on non-finite numbers

class Scalar(Module):
    def __init__(self):
        self.w = Parameter(np.array([1.0, 2.0], dtype=np.float32))


class Steps:
    """A batch source whose batches are the step numbers (so a loss can misbehave at step n)."""

    def __init__(self):
        self.n = 0

    def next_batch(self):
        self.n += 1
        return (np.array([self.n]),)

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def test_training_stops_at_the_first_non_finite_loss_and_keeps_the_last_good_checkpoint(tmp_path):
    def loss_fn(model, batch):
        step = int(batch[0][0])
        return (model.w * model.w).sum() * (float("nan") if step == 5 else 1.0)

    model = Scalar()
    with RunDir(tmp_path / "r") as run:
        trainer = Trainer(model, SGD(model.parameters(), lr=0.1), Steps(), loss_fn, steps=8, eval_every=2,
                          run=run, progress=Silent())
        with pytest.raises(MiniftError, match=r"training stopped at step 5: the loss is nan \(learning rate "
                                              r"0.1\).*the checkpoint of step 4 is kept"):
            trainer.run()
    arrays, meta = load_safetensors(tmp_path / "r" / CHECKPOINT)
    assert json.loads(meta["minift"])["step"] == 4 and np.isfinite(arrays["model.w"]).all()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_weights_that_blow_up_are_never_checkpointed(tmp_path):
    model = Scalar()
    with RunDir(tmp_path / "r") as run:
        trainer = Trainer(model, SGD(model.parameters(), lr=1e38), Steps(), lambda m, b: (m.w * m.w).sum(),
                          steps=4, eval_every=2, grad_clip=None, run=run, progress=Silent())
        with pytest.raises(MiniftError, match=r"training stopped at step \d: .*(inf|nan|no longer finite)"):
            trainer.run()
    assert not (tmp_path / "r" / CHECKPOINT).exists() or \
        np.isfinite(load_safetensors(tmp_path / "r" / CHECKPOINT)[0]["model.w"]).all()


def test_cli_refuses_non_finite_or_out_of_range_settings_before_writing(tmp_path, corpus_file, capsys):
    for flags in (["--lr", "nan"], ["--lr", "-1"], ["--lr", "inf"], ["--steps", "0"], ["--batch-size", "0"]):
        out = tmp_path / "x"
        assert main(["pretrain", "--out", str(out), "--corpus", str(corpus_file), "--preset", "tiny", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flags[0] in err and "Traceback" not in err
        assert not out.exists()


# ----------------------------------------------------------------------------- --resume and its flags

def test_resume_refuses_flags_that_contradict_the_run(tmp_path, pretrained, corpus_file, capsys):
    run = copy_run(pretrained, tmp_path / "r")
    for flags, message in ((["--lr", "0.5"], "--lr 0.5 contradicts the run"),
                           (["--steps", "3"], "--steps 3 contradicts the run .* steps = 4"),
                           (["--seed", "7"], "--seed 7 contradicts"),
                           (["--preset", "small"], "--preset small contradicts"),
                           (["--corpus", str(tmp_path / "other.txt")], "--corpus .* contradicts")):
        assert main(["pretrain", "--out", str(run), "--resume", *flags]) == 2
        assert message.split(" .* ")[0] in capsys.readouterr().err
    changed = tmp_path / "changed.txt"
    changed.write_text(corpus_file.read_text() + "\n\nOne more review.", encoding="utf-8")
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["corpus_files"] = [str(changed)]
    write_json(run / "config.json", cfg)
    assert main(["pretrain", "--out", str(run), "--resume"]) == 2
    assert "the corpus changed since the run" in capsys.readouterr().err


def test_ctrl_c_says_what_is_left(tmp_path, corpus_file, capsys, monkeypatch):
    original = Trainer._train_step
    interrupt_at = {"step": 1}

    def interrupting(self):
        if self.step == interrupt_at["step"]:
            raise KeyboardInterrupt
        original(self)
    monkeypatch.setattr(Trainer, "_train_step", interrupting)

    def command(out):        # 20 steps: evaluation and checkpoints every 2 steps
        return ["pretrain", "--out", str(out), "--corpus", str(corpus_file), "--preset", "tiny", "--steps", "20",
                "--batch-size", "2"]
    assert main(command(tmp_path / "a")) == 130
    assert "interrupted before the first checkpoint (--resume starts the run again from step 0)" in \
        capsys.readouterr().err
    interrupt_at["step"] = 3
    assert main(command(tmp_path / "b")) == 130
    assert f"the checkpoint of step 2 in {tmp_path / 'b'} is intact (continue with --resume)" in \
        capsys.readouterr().err


def test_generate_and_classify_refuse_the_wrong_kind_of_run(tmp_path, pretrained, capsys):
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"{t.replace(',', ' ')},{lab}\n"
                                            for t, lab in feedback.labeled_sets(0, 30, 3)["train"]))
    finetune(pretrained, tmp_path / "ft", FinetuneConfig(strategy="head", train_file=str(csv), epochs=1),
             log=quiet, progress=Silent())
    assert main(["generate", "--model", str(tmp_path / "ft"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "holds a 'classifier' run; generate needs" in err and err.count("\n") == 1
    assert main(["classify", "--model", str(pretrained), "x"]) == 2
    assert "holds a 'pretrain' run; classify needs a fine-tuned run" in capsys.readouterr().err


def test_a_weight_relabelled_to_an_integer_dtype_is_refused(tmp_path, pretrained):
    """F32 -> I32 keeps every byte count right, so only the loader's expectation catches it."""
    run = copy_run(pretrained, tmp_path / "r")
    blob = (run / WEIGHTS).read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    header["transformer.wpe.weight"]["dtype"] = "I32"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))
    (run / WEIGHTS).write_bytes(blob[:8] + text + blob[8 + n:])
    with pytest.raises(MiniftError, match=r"model.safetensors: tensor 'transformer.wpe.weight' is I32, expected F16 or"):
        load_gpt(run)


def test_fine_tuning_starts_only_from_a_finished_pretraining_run(tmp_path, corpus_file):
    pretrain(tmp_path / "half", tiny_config(corpus_file), until=2, log=quiet, progress=Silent())
    with pytest.raises(MiniftError, match=r"has not finished pretraining \(its last checkpoint is step 2\); "
                                          r"finish it first with .*pretrain --out .* --resume"):
        finetune(tmp_path / "half", tmp_path / "ft", FinetuneConfig(strategy="head"), log=quiet)
    assert not (tmp_path / "ft").exists()


@pytest.mark.parametrize("field, value, message", [
    ("labels", "positive", r"\"labels\" must be a list of at least two different label names"),
    ("labels", ["a", "a"], r"\"labels\" must be a list"),
    ("max_len", 10 ** 6, r"\"max_len\" must be an integer from 2 to the model's block size"),
    ("pooling", "max", r"\"pooling\" must be one of \['last', 'mean'\]"),
])
def test_a_fine_tuned_runs_config_is_checked(tmp_path, pretrained, field, value, message):
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"{t.replace(',', ' ')},{lab}\n"
                                            for t, lab in feedback.labeled_sets(0, 30, 3)["train"]))
    out = tmp_path / "ft"
    finetune(pretrained, out, FinetuneConfig(strategy="head", train_file=str(csv), epochs=1), log=quiet,
             progress=Silent())
    cfg = json.loads((out / "config.json").read_text())
    cfg[field] = value
    write_json(out / "config.json", cfg)
    with pytest.raises(MiniftError, match=message):
        load_finetuned(out)


def test_a_tampered_checkpoint_is_one_sentence(tmp_path, pretrained):
    run = copy_run(pretrained, tmp_path / "r")
    arrays, meta = load_safetensors(run / CHECKPOINT)
    minift_meta = json.loads(meta["minift"])
    minift_meta["step"] = 2
    del minift_meta["batches"]
    save_safetensors(run / CHECKPOINT, arrays, {"minift": json.dumps(minift_meta)})
    with RunDir(run) as r:       # the weights at step 4 stay ahead of this checkpoint: repaired, not trusted
        r.save_weights(load_safetensors(pretrained / WEIGHTS)[0], step=2)
    with pytest.raises(MiniftError, match=r"checkpoint.safetensors cannot be resumed: no 'batches' in it"):
        pretrain(run, resume=True, log=quiet, progress=Silent())
