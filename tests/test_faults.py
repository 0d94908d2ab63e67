"""Fault injection: what docs/robustness.md's "What happens when things go wrong" promises.

- A SIGKILL at any write point of a pretraining, fine-tuning or alignment (SFT, DPO) run
  (each atomic rename of config, tokenizer, token cache, built-in data, checkpoint,
  weights and metrics: just before it and just after it), followed by the same command
  with --resume, ends with weights and loss history bit-identical to an uninterrupted
  run, and no temp file left behind. A resume stopped before its first step already
  finds weights and metrics at the checkpoint's step (RunDir.repair). Killed before
  config.json exists, --resume refuses (how the run was started is unknown) and the same
  command without it starts afresh, to the same result.
- Two commands on one run directory: the second fails at once naming the first.
- A read-only directory and a full disk: one line, exit code 2, nothing lost; after the
  disk has room again, --resume finishes the run exactly.
These run minift in subprocesses (tests/kill_at_write.py, the CLI) to kill them for real.
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from minift.data import feedback
from minift.files import load_safetensors
from minift.runs import CHECKPOINT, CONFIG, WEIGHTS, RunDir

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))


def child(spec, timeout=120):
    """Run tests/kill_at_write.py with `spec`; returns the CompletedProcess."""
    return subprocess.run([sys.executable, str(HERE / "kill_at_write.py"), json.dumps(spec)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minift", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def outcome(out):
    """(weights, loss history without timings, evaluations, metrics' test results) of a
    finished run."""
    weights, _ = load_safetensors(Path(out) / WEIGHTS)
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    history = metrics["history"] if "history" in metrics else metrics
    losses = [(r["step"], r["loss"], r.get("grad_norm")) for r in history["train"]]
    return weights, losses, history["eval"], metrics.get("test")


def assert_same(a, b, what):
    wa, la, ea, ta = a
    wb, lb, eb, tb = b
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa), f"{what}: weights differ"
    assert la == lb, f"{what}: loss history differs"
    assert ea == eb, f"{what}: evaluations differ"
    assert ta == tb, f"{what}: test results differ"


def behind_checkpoint(out):
    """How model.safetensors in `out` differs from its checkpoint's weights (None: it holds
    them): what RunDir.repair() restores after a crash between the two writes."""
    run = RunDir(out)
    if run.is_finished():
        return None
    model_state, _, meta = run.load_checkpoint()
    if run.weights_step() != meta["step"]:
        return f"{WEIGHTS} is at step {run.weights_step()}, the checkpoint at step {meta['step']}"
    weights, _ = load_safetensors(run.file(WEIGHTS))
    if weights.keys() != model_state.keys() or not all(np.array_equal(weights[k], model_state[k]) for k in weights):
        return f"{WEIGHTS} does not hold the checkpoint's weights"
    return None


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "feedback.txt"
    path.write_text(feedback.corpus_text(n_bytes=30_000, seed=3), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def labeled_files(tmp_path_factory):
    sets = feedback.labeled_sets(seed=0, n_train=20, n_test=9)
    folder = tmp_path_factory.mktemp("labels")
    for name, rows in (("train", sets["train"]), ("test", sets["test_a"])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": t, "label": lab}) + "\n"
                                                      for t, lab in rows), encoding="utf-8")
    return str(folder / "train.jsonl"), str(folder / "test.jsonl")


def pretrain_spec(out, corpus_file, **extra):
    config = {"corpus_files": [str(corpus_file)], "preset": "tiny", "steps": 4, "batch_size": 2,
              "eval_every": 2, "vocab_size": 300, "seed": 1}
    return {"command": "pretrain", "out": str(out), "config": config, "resume": False, **extra}


@pytest.fixture(scope="module")
def straight_pretrain(tmp_path_factory, corpus_file):
    """An uninterrupted run, and the list of files it renames into place, in order."""
    folder = tmp_path_factory.mktemp("straight")
    log = folder / "writes.log"
    done = child(pretrain_spec(folder / "run", corpus_file, log=str(log)))
    assert done.returncode == 0, done.stderr
    return folder / "run", log.read_text().split()


def kill_and_resume(spec, point, phase):
    """Kill a run at write `point` (before or after the rename), then resume it. Returns
    (the run directory, what went wrong or None)."""
    killed = child(dict(spec, kill_at=point, phase=phase))
    if killed.returncode != -9:
        return spec["out"], f"expected SIGKILL at write {point} ({phase}), got exit {killed.returncode}: " \
                            f"{killed.stderr[-500:]}"
    if not RunDir(spec["out"]).holds_run():
        # Killed before config.json: how the run was started is unknown, so --resume refuses
        # (it would have to guess) and the same command without it starts the run afresh.
        refused = child(dict(spec, resume=True))
        if refused.returncode == 0 or "nothing to resume" not in refused.stderr:
            return spec["out"], f"--resume with no {CONFIG} after a kill at write {point} ({phase}) was not " \
                                f"refused: exit {refused.returncode}: {refused.stderr[-500:]}"
        started = child(spec)
        if started.returncode != 0:
            return spec["out"], f"a new start after a kill at write {point} ({phase}) failed: {started.stderr[-800:]}"
        return spec["out"], None
    step = RunDir(spec["out"]).checkpoint_step()
    if step is not None:
        # A resume that stops before its first step (until=) shows the directory as the resume
        # found it once repaired: without repair(), a kill between the checkpoint and the
        # weights would leave them a step apart until the next checkpoint.
        stopped = child(dict(spec, resume=True, until=step))
        problem = f"exit {stopped.returncode}: {stopped.stderr[-800:]}" if stopped.returncode else \
            behind_checkpoint(spec["out"])
        if problem:
            return spec["out"], f"a resume stopped at step {step} after a kill at write {point} ({phase}): {problem}"
    resumed = child(dict(spec, resume=True))
    if resumed.returncode != 0:
        return spec["out"], f"--resume after a kill at write {point} ({phase}) failed: {resumed.stderr[-800:]}"
    return spec["out"], None


def every_write_point(make_spec, n_writes, tmp_path):
    jobs = [(make_spec(tmp_path / f"{point}-{phase}"), point, phase)
            for point in range(1, n_writes + 1) for phase in ("before", "after")]
    with ThreadPoolExecutor(max_workers=2) as pool:             # subprocesses: two at a time on two cores
        return list(pool.map(lambda job: kill_and_resume(*job), jobs))


def test_sigkill_at_every_write_point_of_pretraining_then_resume_is_exact(tmp_path, straight_pretrain,
                                                                         corpus_file):
    straight, writes = straight_pretrain
    assert {"tokenizer.json", "config.json", "tokens.bin", "checkpoint.safetensors", "model.safetensors",
            "metrics.json"} <= set(writes)
    reference = outcome(straight)
    results = every_write_point(lambda out: pretrain_spec(out, corpus_file), len(writes), tmp_path)
    for (out, problem), label in zip(results, [f"{w} {p}" for w in writes for p in ("before", "after")]):
        assert problem is None, problem
        assert_same(outcome(out), reference, f"killed at {label}")
        assert RunDir(out).is_finished() and not [p.name for p in Path(out).iterdir() if p.name.endswith(".tmp")]


def test_sigkill_at_every_write_point_of_finetuning_then_resume_is_exact(tmp_path, straight_pretrain,
                                                                        labeled_files):
    init, _ = straight_pretrain
    train, test = labeled_files

    def spec(out, **extra):
        config = {"strategy": "lora", "train_file": train, "test_files": [test], "epochs": 2, "batch_size": 8,
                  "lora_rank": 2}
        return {"command": "finetune", "init": str(init), "out": str(out), "config": config, "resume": False,
                **extra}
    log = tmp_path / "writes.log"
    done = child(spec(tmp_path / "straight", log=str(log)))
    assert done.returncode == 0, done.stderr
    writes = log.read_text().split()
    assert writes.count("model.safetensors") >= 3          # two checkpoints and the merged weights
    reference = outcome(tmp_path / "straight")
    results = every_write_point(spec, len(writes), tmp_path)
    for (out, problem), label in zip(results, [f"{w} {p}" for w in writes for p in ("before", "after")]):
        assert problem is None, problem
        assert_same(outcome(out), reference, f"killed at {label}")
        assert not [p.name for p in Path(out).iterdir() if p.name.endswith(".tmp")]


def align_spec(init, method):
    """A make_spec for `align --method method` from `init`: built-in data (so that data.jsonl
    is a write point too), 36 examples or world pairs -> 32 trained, 4 steps of 8, a
    checkpoint at steps 2 and 4; no judge at the end (it samples 52 responses)."""
    def spec(out, **extra):
        config = {"method": method, "examples": 36, "epochs": 1, "batch_size": 8, "judge_samples": 0, "seed": 1}
        if method == "dpo":
            config.update(pairs_from="world", lr=1e-3)           # world pairs: no sampling from the init
        return {"command": "align", "init": str(init), "out": str(out), "config": config, "resume": False,
                **extra}
    return spec


@pytest.fixture(scope="module")
def straight_sft(tmp_path_factory, straight_pretrain):
    """An uninterrupted SFT run from the pretrained one, and the files it renames, in order."""
    init, _ = straight_pretrain
    folder = tmp_path_factory.mktemp("straight_sft")
    log = folder / "writes.log"
    done = child(align_spec(init, "sft")(folder / "run", log=str(log)))
    assert done.returncode == 0, done.stderr
    return folder / "run", log.read_text().split()


def assert_every_kill_resumed_exactly(straight, writes, make_spec, tmp_path):
    """Kill a run at every write point of `writes`, before and after the rename, resume
    each, and compare with the uninterrupted run in `straight`."""
    assert {"tokenizer.json", "data.jsonl", "config.json", "model.safetensors", "metrics.json"} <= set(writes)
    assert writes.count("checkpoint.safetensors") == 2          # one checkpoint mid-run: the resume trains on
    reference = outcome(straight)
    results = every_write_point(make_spec, len(writes), tmp_path)
    for (out, problem), label in zip(results, [f"{w} {p}" for w in writes for p in ("before", "after")]):
        assert problem is None, problem
        assert_same(outcome(out), reference, f"killed at {label}")
        assert RunDir(out).is_finished() and not [p.name for p in Path(out).iterdir() if p.name.endswith(".tmp")]


def test_sigkill_at_every_write_point_of_sft_then_resume_is_exact(tmp_path, straight_pretrain, straight_sft):
    init, _ = straight_pretrain
    straight, writes = straight_sft
    assert_every_kill_resumed_exactly(straight, writes, align_spec(init, "sft"), tmp_path)


def test_sigkill_at_every_write_point_of_dpo_then_resume_is_exact(tmp_path, straight_sft):
    init, _ = straight_sft                                        # DPO starts from the SFT run, as documented
    make_spec = align_spec(init, "dpo")
    log = tmp_path / "writes.log"
    done = child(make_spec(tmp_path / "straight", log=str(log)))
    assert done.returncode == 0, done.stderr
    assert_every_kill_resumed_exactly(tmp_path / "straight", log.read_text().split(), make_spec, tmp_path)


def test_a_kill_between_weights_and_metrics_is_repaired_by_the_next_resume(tmp_path, straight_pretrain,
                                                                           corpus_file):
    _, writes = straight_pretrain
    point = writes.index("metrics.json", writes.index("checkpoint.safetensors")) + 1   # the first checkpoint's
    spec = pretrain_spec(tmp_path / "run", corpus_file)
    assert child(dict(spec, kill_at=point, phase="before")).returncode == -9
    run = RunDir(spec["out"])
    step = run.checkpoint_step()
    assert child(dict(spec, resume=True, until=step)).returncode == 0          # repairs, then stops at once
    _, _, meta = run.load_checkpoint()
    assert run.read_metrics() == {**meta["history"], "step": step, "finished": False}


def test_a_second_command_on_the_same_directory_fails_at_once(tmp_path, corpus_file):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "minift", "pretrain", "--out", str(out), "--corpus",
                              str(corpus_file), "--preset", "tiny", "--steps", "60", "--batch-size", "4"],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / ".owner").exists() and time.time() < deadline:
        time.sleep(0.05)
    other = tmp_path / "other.txt"
    other.write_text("Another corpus entirely. " * 2000, encoding="utf-8")
    t0 = time.time()
    second = cli("pretrain", "--out", out, "--corpus", other, "--preset", "tiny", "--steps", "5")
    assert time.time() - t0 < 30
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert second.returncode == 2 and second.stderr.count("\n") == 1
    assert f"is in use by another minift process (pid {first.pid} running `minift pretrain`" in second.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["corpus_files"] == [str(corpus_file.resolve())]      # the first run's, whole
    run = RunDir(out)
    assert run.checkpoint_step() == run.weights_step() == 60 and run.is_finished()


def _mount_tmpfs(path, size, read_only=False):
    """Mount a tmpfs of `size` bytes at `path`; False where this machine does not allow it."""
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path):
    subprocess.run(["umount", str(path)], capture_output=True)


def test_a_read_only_directory_is_one_line(tmp_path, corpus_file, straight_pretrain):
    place = tmp_path / "ro"
    if os.geteuid() == 0:
        if not _mount_tmpfs(place, 1 << 20, read_only=True):
            pytest.skip("running as root and cannot mount a read-only tmpfs here")
    else:
        place.mkdir()
        place.chmod(0o555)
    try:
        done = cli("pretrain", "--out", place / "run", "--corpus", corpus_file, "--preset", "tiny", "--steps", "2")
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "Read-only file system" in done.stderr or "Permission denied" in done.stderr
        assert str(place / "run") in done.stderr
    finally:
        _umount(place) if os.geteuid() == 0 else place.chmod(0o755)


def test_a_full_disk_is_one_line_and_resume_finishes_exactly(tmp_path, corpus_file, straight_pretrain):
    straight, _ = straight_pretrain
    sizes = {p.name: p.stat().st_size for p in straight.iterdir()}
    # Room for everything plus half a checkpoint: the second checkpoint's temp file cannot fit
    # beside the first checkpoint.
    total = sum(sizes.values()) + sizes[CHECKPOINT] // 2
    place = tmp_path / "disk"
    if not _mount_tmpfs(place, total):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        spec = pretrain_spec(place / "run", corpus_file)
        args = ["pretrain", "--out", place / "run", "--corpus", corpus_file, "--preset", "tiny", "--steps", "4",
                "--batch-size", "2", "--seed", "1"]
        first = subprocess.run([sys.executable, str(HERE / "kill_at_write.py"), json.dumps(spec)], env=ENV,
                               capture_output=True, text=True)
        assert first.returncode != 0 and "No space left on device" in first.stderr
        done = cli(*args, "--resume")
        error = done.stderr.splitlines()[-1]                   # after the notes (on stderr too), one line
        assert done.returncode == 2 and error.startswith("minift pretrain: error:") and "Traceback" not in done.stderr
        assert "No space left on device" in error, done.stderr
        run = RunDir(place / "run")
        assert run.checkpoint_step() == 2 and not run.is_finished()
        assert not [p.name for p in (place / "run").iterdir() if p.name.endswith(".tmp")]
        subprocess.run(["mount", "-o", f"remount,size={4 * total}", str(place)], check=True)
        resumed = child(dict(spec, resume=True))
        assert resumed.returncode == 0, resumed.stderr
        assert_same(outcome(place / "run"), outcome(straight), "after a full disk")
    finally:
        _umount(place)
