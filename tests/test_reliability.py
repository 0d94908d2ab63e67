"""Reliability, round three: what a hostile user tried, and what minift now does.

Each case ends in a correct result or in one sentence (exit code 2 from the command
line, no traceback, no library warning around it) and loses nothing: a folder minift
did not make is never written into, --resume never guesses how a run was started, a
resumed run checks that the run it started from is unchanged, weights are checked
finite, a plan is checked against memory before anything is allocated, and an OS error
names the file. The number in a test's name is the group of probes it answers, as
docs/robustness.md's table lists them.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minift import cli
from minift.adapt import FinetuneConfig, finetune
from minift.align import AlignConfig, align
from minift.data import feedback, load_labeled
from minift.errors import MiniftError
from minift.files import load_safetensors, read_safetensors_header, save_safetensors, write_json
from minift.pretrain import PretrainConfig, pretrain
from minift.runs import OWNER, WEIGHTS, RunDir
from quiet import Silent, quiet
from scripts import write_jsonl

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))


def run_cli(capsys, *args):
    """cli.main in this process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(code, err):
    return code == 2 and err.count("\n") == 1 and "Traceback" not in err and "Warning" not in err


def tiny_pretrain(out, corpus, seed=1):
    config = PretrainConfig(corpus_files=[str(corpus)], preset="tiny", steps=2, batch_size=2, eval_every=2,
                            vocab_size=300, seed=seed)
    pretrain(out, config, log=quiet, progress=Silent())
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    for name, seed in (("corpus", 3), ("other_corpus", 8)):
        (folder / f"{name}.txt").write_text(feedback.corpus_text(n_bytes=30_000, seed=seed), encoding="utf-8")
    sets = feedback.labeled_sets(seed=0, n_train=20, n_test=9)
    for name, rows in (("train", sets["train"]), ("test", sets["test_a"])):
        write_jsonl(folder / f"{name}.jsonl", rows)
    return folder


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, files):
    return tiny_pretrain(tmp_path_factory.mktemp("pre") / "R", files / "corpus.txt")


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, pretrained, files):
    out = tmp_path_factory.mktemp("ft") / "FT"
    finetune(pretrained, out, FinetuneConfig(train_file=str(files / "train.jsonl"),
                                            test_files=[str(files / "test.jsonl")], epochs=1),
             log=quiet, progress=Silent())
    return out


def snapshot(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()}


# ----------------------------------------------------------------------------- 1-3: directories and --resume

def test_1_out_pointed_at_a_users_folder_is_refused_and_nothing_is_written(capsys, pretrained, files, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "metrics.json").write_text('{"mine": 1}\n')
    (proj / "tokenizer.json").write_text("mine\n")
    before = snapshot(proj)
    for args in (["finetune", "--init", pretrained, "--out", proj, "--epochs", "1"],
                 ["pretrain", "--out", proj, "--corpus", files / "corpus.txt", "--preset", "tiny", "--steps", "2"]):
        code, _, err = run_cli(capsys, *args)
        assert one_sentence(code, err) and "is not empty" in err and str(proj) in err, err
        assert snapshot(proj) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(capsys, "finetune", "--init", pretrained, "--out", empty, "--epochs", "1", "--train",
                   files / "train.jsonl")[0] == 0              # an empty folder is fine


def test_2_resume_of_a_directory_without_a_run_refuses_and_says_how_to_start(capsys, files, tmp_path):
    """Killed before config.json: --resume cannot know how the run was started (plain
    --resume used to train the default recipe). Starting again without it works."""
    k = tmp_path / "k"
    k.mkdir()
    (k / OWNER).write_text("pid 1 running `minift pretrain` since then\n")     # what a kill leaves
    code, _, err = run_cli(capsys, "pretrain", "--out", k, "--resume")
    assert one_sentence(code, err) and "nothing to resume" in err and "without --resume" in err, err
    assert sorted(p.name for p in k.iterdir()) == [OWNER]
    for command in (["finetune", "--out", k, "--resume"], ["align", "--out", k, "--resume"]):
        code, _, err = run_cli(capsys, *command)
        assert one_sentence(code, err) and "nothing to resume" in err, err
    code, _, err = run_cli(capsys, "pretrain", "--out", k, "--corpus", files / "corpus.txt", "--preset", "tiny",
                           "--steps", "2", "--batch-size", "2")
    assert code == 0, err                                     # the directory minift left is minift's
    assert RunDir(k).is_finished() and not (k / OWNER).exists()


@pytest.mark.parametrize("command", ["finetune", "align"])
@pytest.mark.parametrize("change", ["tokenizer", "weights"])
def test_3_resuming_a_run_whose_init_changed_is_refused(capsys, files, tmp_path, command, change):
    """Fine-tuning and alignment record their --init's weights and tokenizer fingerprints;
    another corpus changes both, another seed on the same corpus only the weights."""
    init = tiny_pretrain(tmp_path / "init", files / "corpus.txt")
    out = tmp_path / "ia"
    if command == "finetune":
        finetune(init, out, FinetuneConfig(train_file=str(files / "train.jsonl"), epochs=2), until=1, log=quiet,
                 progress=Silent())
    else:
        align(init, out, AlignConfig(method="sft", examples=36, epochs=1, batch_size=8, judge_samples=0),
              until=1, log=quiet, progress=Silent())
    tokenizer = (init / "tokenizer.json").read_bytes()
    shutil.rmtree(init)
    corpus = "other_corpus" if change == "tokenizer" else "corpus"
    tiny_pretrain(init, files / f"{corpus}.txt", seed=2)     # same vocabulary size
    assert ((init / "tokenizer.json").read_bytes() == tokenizer) == (change == "weights")
    code, _, err = run_cli(capsys, command, "--out", out, "--resume")
    assert one_sentence(code, err) and "changed" in err and "--init" in err, err
    assert not RunDir(out).is_finished()


# ----------------------------------------------------------------------------- 4: weights that are not finite

def test_4_a_weight_that_is_not_finite_is_refused_on_load(capsys, finetuned, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(finetuned, broken)
    weights, meta = load_safetensors(broken / WEIGHTS)
    weights["transformer.ln_f.weight"][3] = np.nan
    save_safetensors(broken / WEIGHTS, weights, meta)
    code, out, err = run_cli(capsys, "classify", "--model", broken, "The lid is superb.")
    assert one_sentence(code, err) and "transformer.ln_f.weight" in err and "not finite" in err, err
    assert "nan" not in out
    # the report still draws the curves, and says in place of the attention maps why there are none
    assert run_cli(capsys, "report", broken, "--out", tmp_path / "r.html")[0] == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No attention maps" in page and "transformer.ln_f.weight" in page and "not finite" in page


# ----------------------------------------------------------------------------- 5: one sentence, not a traceback

def test_5_training_data_with_one_label_is_one_sentence_for_every_strategy(capsys, pretrained, tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("text,label\n" + "".join(f"review {i} is fine,positive\n" for i in range(12)))
    for strategy in ("full", "prompt"):
        code, _, err = run_cli(capsys, "finetune", "--init", pretrained, "--out", tmp_path / strategy, "--train",
                               one, "--strategy", strategy)
        assert one_sentence(code, err) and str(one) in err and "at least 2 labels" in err, err
        assert not (tmp_path / strategy).exists()


def test_5_a_symlink_loop_is_one_sentence(capsys, pretrained, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for args in (["pretrain", "--out", tmp_path / "p", "--corpus", loop],
                 ["finetune", "--init", pretrained, "--out", tmp_path / "f", "--train", loop]):
        code, _, err = run_cli(capsys, *args)
        assert one_sentence(code, err) and "loop" in err and str(loop) in err, err


def test_5_text_that_is_not_utf8_is_one_sentence_naming_where(capsys, pretrained, finetuned, tmp_path):
    bad = "abc\udcff def"                                     # how Python passes the byte 0xff from argv
    for args in (["classify", "--model", finetuned, bad], ["generate", "--model", pretrained, "--prompt", bad],
                 ["report", finetuned, "--text", bad, "--out", tmp_path / "r.html"]):
        code, _, err = run_cli(capsys, *args)
        assert one_sentence(code, err) and "0xff" in err and "UTF-8" in err, err
    lone = tmp_path / "lone.jsonl"
    lone.write_text('{"text": "fine", "label": "positive"}\n{"text": "oops \\ud800", "label": "negative"}\n')
    with pytest.raises(MiniftError, match=r"lone.jsonl: line 2: 'text': character 6 .* surrogate"):
        load_labeled(lone)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "a \\udc00", "rejected": "b"}\n')
    code, _, err = run_cli(capsys, "align", "--init", pretrained, "--out", tmp_path / "a", "--pairs", pairs)
    assert one_sentence(code, err) and "pairs.jsonl: line 1: 'chosen'" in err, err


def test_5_a_tiny_temperature_samples_like_greedy_decoding(capsys, pretrained):
    greedy = run_cli(capsys, "generate", "--model", pretrained, "--prompt", "The lid", "--temperature", "0",
                     "--max-new-tokens", "8")
    tiny = run_cli(capsys, "generate", "--model", pretrained, "--prompt", "The lid", "--temperature", "1e-320",
                   "--max-new-tokens", "8")
    assert tiny[0] == 0 and tiny[2] == "" and tiny[1] == greedy[1]


def test_5_a_plan_that_cannot_fit_in_memory_is_refused_before_anything_is_written(capsys, pretrained, files,
                                                                                   tmp_path):
    for args in (["finetune", "--init", pretrained, "--out", tmp_path / "l", "--strategy", "lora", "--lora-rank",
                  "100000000", "--train", files / "train.jsonl"],
                 ["pretrain", "--out", tmp_path / "b", "--corpus", files / "corpus.txt", "--preset", "tiny",
                  "--batch-size", "100000000"]):
        code, _, err = run_cli(capsys, *args)
        assert one_sentence(code, err) and "GiB of memory" in err and "available" in err, err
        assert not Path(args[args.index("--out") + 1]).exists()


def test_5_a_safetensors_axis_too_long_for_numpy_is_one_sentence(tmp_path):
    path = tmp_path / "w.safetensors"
    header = json.dumps({"x": {"dtype": "F32", "shape": [2**64, 0], "data_offsets": [0, 0]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(MiniftError, match=r"w.safetensors: tensor 'x' has shape .*axis longer than"):
        read_safetensors_header(path)
    with pytest.raises(MiniftError, match="axis longer than"):
        load_safetensors(path)


# ----------------------------------------------------------------------------- 6: the OS error names the file

def test_6_a_file_size_limit_names_the_file(files, tmp_path):
    """`ulimit -f` (or a full disk): the write fails with no file named by the system;
    minift names it. Python ignores SIGXFSZ, so the write returns EFBIG."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    done = subprocess.run([sys.executable, "-m", "minift", "pretrain", "--out", str(tmp_path / "r"), "--corpus",
                           str(files / "corpus.txt"), "--preset", "tiny", "--steps", "2", "--batch-size", "2"],
                          env=ENV, capture_output=True, text=True, preexec_fn=limit, timeout=120)
    error = done.stderr.splitlines()[-1]                       # after the notes (on stderr too), one line
    assert one_sentence(done.returncode, error + "\n") and "File too large" in error, done.stderr
    assert "Traceback" not in done.stderr
    assert str(tmp_path / "r") in done.stderr and ".tmp" not in done.stderr


# ----------------------------------------------------------------------------- 8: messages that say what is wrong

def test_8_a_fifo_as_corpus_is_named_as_such(capsys, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "pretrain", "--out", tmp_path / "p", "--corpus", fifo)
    assert one_sentence(code, err) and "FIFO" in err and "not found" not in err, err


def test_8_a_csv_field_past_the_csv_modules_128k_default_is_read(tmp_path):
    long = "very " * 40_000                                   # 200,000 characters in one field
    path = tmp_path / "long.csv"
    path.write_text(f'text,label\n"{long}",positive\nshort,negative\n', encoding="utf-8")
    data = load_labeled(path)
    assert data.texts[0] == long and data.labels == ["positive", "negative"]


def test_8_a_utf16_file_gets_the_utf16_hint(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes("text,label\nfine,positive\n".encode("utf-16"))
    with pytest.raises(MiniftError, match="looks like UTF-16.*iconv -f utf-16") as e:
        load_labeled(path)
    assert "latin1" not in str(e.value)


def test_8_classify_on_a_run_still_training_says_so(capsys, finetuned, tmp_path):
    copy = tmp_path / "training"
    shutil.copytree(finetuned, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    write_json(copy / "metrics.json", {**metrics, "finished": False})
    with RunDir(copy).lock("finetune"):                       # another command is writing it
        code, _, err = run_cli(capsys, "classify", "--model", copy, "Fine.")
    assert one_sentence(code, err) and "still being fine-tuned" in err and "stopped" not in err, err


def test_8_more_shots_than_fit_name_k(capsys, pretrained, files, tmp_path):
    code, _, err = run_cli(capsys, "finetune", "--init", pretrained, "--out", tmp_path / "p", "--strategy",
                           "prompt", "--k", "100000", "--train", files / "train.jsonl")
    assert one_sentence(code, err) and "--k 100000" in err, err


def test_8_report_out_a_directory_names_the_directory(capsys, finetuned, tmp_path):
    code, _, err = run_cli(capsys, "report", finetuned, "--out", tmp_path)
    assert one_sentence(code, err) and str(tmp_path) in err and "is a directory" in err and ".tmp" not in err, err


def test_8_a_bad_temperature_names_only_that_rule(capsys, pretrained):
    code, _, err = run_cli(capsys, "generate", "--model", pretrained, "--prompt", "x", "--temperature", "-1")
    assert one_sentence(code, err) and "--temperature" in err and "--top-p" not in err and "--top-k" not in err


def test_8_labels_that_differ_only_in_case_get_a_note(capsys, pretrained, tmp_path):
    cased = tmp_path / "cased.csv"
    cased.write_text("text,label\n" + "".join(f"text {i},{lab}\n" for i in range(8)
                                              for lab in ("Positive", "positive", "negative")))
    code, _, err = run_cli(capsys, "finetune", "--init", pretrained, "--out", tmp_path / "c", "--train", cased,
                           "--epochs", "1")
    assert code == 0 and "'Positive', 'positive' differ only in case" in err, err


# ----------------------------------------------------------------------------- files other tools read

def test_json_that_minift_writes_is_strict_and_says_null_for_a_number_that_is_not_finite(tmp_path):
    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    write_json(tmp_path / "m.json", {"loss": float("nan"), "curve": [1.5, float("inf"), -float("inf")], "ok": 2.0})
    assert strict((tmp_path / "m.json").read_text()) == {"loss": None, "curve": [1.5, None, None], "ok": 2.0}
