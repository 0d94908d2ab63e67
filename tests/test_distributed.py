"""Several processes on MPI (minift/dist.py), what docs/distributed.md promises:

- `mpiexec -n N python -m minift pretrain` gives the weights and losses of one process
  running the threads' data-parallel step on N threads, bit for bit (N = 2 and 3: with
  three, the order of the sum matters; with gradient accumulation, as it adds to .grad),
  and not those of one thread (so the check can fail); so do `finetune` (class-weighted)
  and `align` (SFT, then DPO).
- One rank killed (SIGKILL) mid-run ends the job; `--resume` with mpiexec then finishes
  the run to the uninterrupted run's weights, bit for bit.
- A rank that fails (its input differs from rank 0's) ends the whole job at once, with
  one sentence naming the rank; a mistake every rank makes is said once, by rank 0;
  without mpi4py, the command says how to install it. (A run whose loss does not
  split is refused in one sentence: tests/test_split.py.)

Each mpiexec run is a tiny GPT for a few steps (seconds). The tests that need MPI skip
without mpi4py or mpiexec (`pip install -e ".[dist]"` brings both).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minift import dist
from minift.files import load_safetensors
from minift.runs import RunDir

ROOT = Path(__file__).resolve().parent.parent
MPIEXEC = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and mpiexec (pip install -e \".[dist]\")")
TIMEOUT = 120               # seconds: a job that hangs fails the test instead of the suite
STEPS = 6


def env(**extra):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MINIFT_NUM_THREADS", "OPENBLAS_NUM_THREADS") and not k.startswith(("PMI_", "OMPI_"))}
    return dict(clean, PYTHONPATH=str(ROOT), **extra)


def recipe(corpus):
    return ["--corpus", str(corpus), "--preset", "tiny", "--steps", str(STEPS), "--batch-size", "6",
            "--eval-every", "2", "--vocab-size", "300"]


def mpiexec(*ranks, timeout=TIMEOUT, **extra):
    """Run one job: `ranks` is a list of (number of processes, argv after `python`), as
    mpiexec's `-n 1 a : -n 1 b` gives different ranks different commands."""
    command = [MPIEXEC]
    for i, (n, argv) in enumerate(ranks):
        command += ([":"] if i else []) + ["-n", str(n), sys.executable, *argv]
    return subprocess.run(command, env=env(**extra), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def minift(*args):
    return ["-m", "minift", *map(str, args)]


def one_process(out, corpus, threads, more=()):
    done = subprocess.run([sys.executable, *minift("pretrain", "--out", out, *recipe(corpus), *more)],
                          env=env(MINIFT_NUM_THREADS=str(threads)), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr


def result(out):
    """(the weights file's bytes, the training losses) of a finished run."""
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    assert metrics["finished"] is True
    history = metrics.get("history", metrics)                    # finetune and align keep it apart
    return (Path(out) / "model.safetensors").read_bytes(), [r["loss"] for r in history["train"]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from minift.data import feedback
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(feedback.corpus_text(n_bytes=60_000, seed=0), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, corpus):
    """A finished `mpiexec -n 2` run: the reference of the tests below."""
    out = tmp_path_factory.mktemp("mpi") / "two"
    done = mpiexec((2, minift("pretrain", "--out", out, *recipe(corpus))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"saved {out}") and done.stdout.count("saved") == 1, done.stdout   # rank 0 speaks
    return out


@needs_mpi
def test_two_processes_give_two_threads_result_bit_for_bit(tmp_path, corpus, two_processes):
    one_process(tmp_path / "threads", corpus, threads=2)
    one_process(tmp_path / "one", corpus, threads=1)
    assert result(two_processes) == result(tmp_path / "threads")
    assert result(two_processes)[0] != result(tmp_path / "one")[0]       # the parts do change the sums


@needs_mpi
def test_three_processes_give_three_threads_result_bit_for_bit(tmp_path, corpus):
    """With gradient accumulation too: each sum starts from the last micro-batch's."""
    done = mpiexec((3, minift("pretrain", "--out", tmp_path / "three", *recipe(corpus), "--grad-accum", "2")))
    assert done.returncode == 0, done.stderr
    one_process(tmp_path / "threads", corpus, threads=3, more=["--grad-accum", "2"])
    assert result(tmp_path / "three") == result(tmp_path / "threads")


@needs_mpi
def test_a_killed_rank_ends_the_job_and_resume_is_exact(tmp_path, corpus, two_processes):
    out = tmp_path / "killed"
    # rank 1 is SIGKILLed right after its 4th file write: its copy's checkpoint of step 4
    killer = ["-c", f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import kill_at_write; "
                    f"kill_at_write.install(4, 'after', None); from minift.__main__ import main; "
                    f"sys.exit(main(sys.argv[1:]))"]
    args = ["pretrain", "--out", out, *recipe(corpus)]
    scratch = tmp_path / "tmp"                      # where rank 1 keeps its copy of the run
    scratch.mkdir()
    done = mpiexec((1, minift(*args)), (1, killer + args), TMPDIR=str(scratch))
    assert done.returncode != 0
    step = RunDir(out).checkpoint_step()
    assert step is not None and step < STEPS, step
    assert len(list(scratch.iterdir())) == 1        # the killed rank's copy, left behind
    done = mpiexec((2, minift("pretrain", "--out", out, "--resume")), TMPDIR=str(scratch))
    assert done.returncode == 0, done.stderr
    assert result(out)[0] == result(two_processes)[0]
    assert not list(scratch.iterdir())              # removed by the next rank 1, its own too


def error_lines(stderr):
    return [line for line in stderr.splitlines() if "error" in line.lower() or "abort" in line.lower()
            or "TERMINATION" in line]


@needs_mpi
def test_a_failing_rank_stops_the_job_with_one_sentence(tmp_path, corpus):
    out, elsewhere = tmp_path / "run", tmp_path / "missing.txt"       # rank 1's corpus is another file
    args = ["pretrain", "--out", out, *recipe(corpus)]
    done = mpiexec((1, minift(*args)), (1, minift(*args, "--corpus", elsewhere)), TMPDIR=str(tmp_path))
    assert done.returncode == 2, done.stderr
    said = error_lines(done.stderr)                 # (rank 0's progress lines may come through after it)
    assert len(said) == 1 and said[0].startswith("minift pretrain: error on rank 1 of 2: --corpus"), done.stderr
    assert str(out) in said[0] and "minift-rank" not in done.stderr, done.stderr   # rank 0's run, not rank 1's copy


@needs_mpi
def test_a_mistake_of_every_rank_is_said_once(tmp_path, corpus):
    done = mpiexec((2, minift("pretrain", "--out", tmp_path / "bad", "--lr", "-1")))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "minift pretrain: error: lr (--lr) must be a finite number > 0, got -1.0"], done.stderr
    done = mpiexec((2, minift("pretrain", "--out", tmp_path / "blows-up", *recipe(corpus), "--lr", "1e6")),
                   TMPDIR=str(tmp_path))                  # rank 1, ended by rank 0, leaves its copy there
    assert done.returncode == 2, done.stderr                    # every rank meets the non-finite loss mid-run
    said = error_lines(done.stderr)                 # once: rank 0's, or the first rank's to read its losses back
    assert len(said) == 1 and "training stopped at step" in said[0], done.stderr


def same_run_on_processes_and_threads(tmp_path, *args):
    """The run of `args` (a minift command without --out) by mpiexec -n 2, by one process
    on 2 threads and by one on 1 thread: (their results). The first two are the same
    parts, so a wrong split would be wrong in both: the third, the batch whole, holds
    the losses to float32 rounding (a part weighed wrongly is 1e-3 off)."""
    done = mpiexec((2, minift(*args, "--out", tmp_path / "processes")))
    assert done.returncode == 0, done.stderr
    results = [result(tmp_path / "processes")]
    for threads in (2, 1):
        out = tmp_path / f"threads{threads}"
        done = subprocess.run([sys.executable, *minift(*args, "--out", out)], env=env(MINIFT_NUM_THREADS=str(threads)),
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        results.append(result(out))
    return results


@needs_mpi
def test_an_encoder_on_two_processes_gives_two_threads_result_bit_for_bit(tmp_path, corpus):
    """The masked-token loss: a mean over the masked targets, so a part weighs its count."""
    processes, threads, one = same_run_on_processes_and_threads(tmp_path, "pretrain", "--arch", "encoder",
                                                                 *recipe(corpus))
    assert processes == threads and processes[0] != one[0]
    assert processes[1] == pytest.approx(one[1], rel=1e-5, abs=0)    # a wrong weighting: 1e-3 off


@needs_mpi
def test_finetune_on_two_processes_gives_two_threads_result_bit_for_bit(tmp_path, two_processes):
    """Class weights make the classifier's loss a weighted mean: each part weighs its
    rows' class weights (ClassifierTask.split)."""
    processes, threads, one = same_run_on_processes_and_threads(
        tmp_path, "finetune", "--init", two_processes, "--strategy", "full", "--class-weights", "--epochs", "2",
        "--batch-size", "8", "--max-train-samples", "40")
    assert processes == threads and processes[0] != one[0]
    assert processes[1] == pytest.approx(one[1], rel=1e-5, abs=0)    # parts weighted by rows alone: 1e-3 off


@needs_mpi
def test_align_sft_then_dpo_on_two_processes_give_two_threads_results(tmp_path, two_processes):
    """SFT splits by answer tokens: bit for bit. DPO splits by pairs (align.dpo.split_pairs)
    and matches to float32 rounding only: its reference log-probs, computed once before
    training, are products split over the threads in one process and whole in each of
    two, which changes their last bits (the training step itself is the same). A split
    that cut pairs apart would be 1e-3 off in the loss (tests/test_split.py)."""
    sft = same_run_on_processes_and_threads(tmp_path / "sft", "align", "--init", two_processes, "--method", "sft",
                                            "--examples", "40", "--epochs", "1", "--batch-size", "8",
                                            "--judge-samples", "0")
    assert sft[0] == sft[1] and sft[0][0] != sft[2][0] and sft[0][1] == pytest.approx(sft[2][1], rel=1e-5, abs=0)
    dpo = same_run_on_processes_and_threads(tmp_path / "dpo", "align", "--init", tmp_path / "sft" / "processes",
                                            "--method", "dpo", "--pairs-from", "world", "--examples", "24",
                                            "--epochs", "2", "--batch-size", "5", "--judge-samples", "0")
    (_, processes), (_, threads), (_, one) = dpo
    assert len(processes) == len(threads) == 10 and processes == pytest.approx(threads, rel=2e-6, abs=0)
    assert processes == pytest.approx(one, rel=1e-5, abs=0)
    a, b = (load_safetensors(tmp_path / "dpo" / name / "model.safetensors")[0] for name in ("processes", "threads2"))
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], rtol=1e-5, atol=2e-6) for k in a)   # 10 updates of 1e-4


def test_without_mpi4py_the_command_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None; from minift.__main__ import main; "
            f"sys.exit(main(['pretrain', '--out', {str(tmp_path / 'run')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], env=env(PMI_SIZE="2", PMI_RANK="0"),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "minift: error: started by mpiexec with 2 processes, but mpi4py is not installed: "
        "pip install -e \".[dist]\" (mpi4py and MPICH)"], done.stderr
    assert not (tmp_path / "run").exists()


def test_the_number_of_processes_is_read_from_mpiexecs_environment():
    assert dist.launched_size({}) == 1
    assert dist.launched_size({"PMI_SIZE": "4"}) == 4                  # MPICH, Intel MPI
    assert dist.launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3      # Open MPI
