"""Data parallelism across processes and machines, on MPI: an appendix, read after fast.

    pip install -e ".[dist]"                                     # mpi4py and MPICH, from PyPI
    mpiexec -n 2 python -m minift pretrain --out runs/small      # one run, two processes
    mpiexec -hosts a,b -n 4 python -m minift pretrain --out runs/small    # four, on two machines
    mpiexec -n 2 python -m minift finetune --init runs/small --out runs/clf   # finetune and align too

One step on N processes (ranks): every rank holds the same model (the same seed, or the
same checkpoint) and draws the same global batch from the same seeded sampler; rank r
takes its part of it, the r-th of N, cut and weighted exactly as minift.fast.training
cuts a batch into one part per thread, by the split its Trainer names (trainer.splitter:
part r, of weight w_r out of W, is weighted w_r / W; for a mean over scored targets, n_r
of N), and runs forward and backward on it. Pretraining, fine-tuning and alignment all
split (docs/distributed.md has each loss's split); a model with dropout does not.
The gradients are then summed in rank order, (.grad + g_0) + g_1 + ..., the order in
which the threads' step adds its parts (tensor.add_grads), so N processes of one thread
each give the gradients of N threads bit for bit. Each rank then clips and takes its own
AdamW step: the copies stay identical without ever being sent.

The sum is an Allreduce whose order is fixed (`sum_in_rank_order`): an MPI_Allreduce adds
in whatever order its algorithm picks, which floats notice. Each rank owns 1/N of the
flat gradient vector: Alltoall hands it every rank's gradient for that slice, it adds
them in rank order, and Allgather hands every rank all the summed slices. That is the
reduce-scatter and allgather of a ring Allreduce: each rank sends and receives about
twice the gradients whatever N is.

Who writes. Rank 0 runs the command as one process would: it takes the run directory's
lock, checks the inputs, writes config and tokenizer, and writes every checkpoint. The
other ranks wait; when rank 0 starts its first step it sends them the files of its run
directory, and each continues that run (`--resume`) in a scratch directory of its own,
whose writes are thrown away. So only rank 0 needs the run directory; every rank reads
the inputs the command names (--corpus, --init, --train ...) at the same path.

Failure. A rank whose command fails prints its one sentence and calls MPI_Abort, which
ends every process of the job (mpiexec itself ends the job when a process dies), so no
rank waits for ever in a sum that will not come. A rank-dependent mistake (a file
missing on one machine) is caught on the first step, where the ranks also compare their
weights and batches.

The same step on GPUs would hand CuPy arrays to NCCL (cupy.cuda.nccl, the collectives
that run on the devices) instead of NumPy arrays to MPI; MPI would still start the
processes and pass NCCL its id. docs/distributed.md has the commands and the figures.
"""
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

from . import backend, cli, fast
from .errors import MiniftError
from .nn import has_dropout
from .trainer import forward_backward as whole_batch_step, splitter

SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")   # MPICH, Open MPI, MVAPICH
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
POLL_SECONDS = 0.005        # how often a rank waiting for the others looks (instead of spinning a core)
FAILURE_GRACE_SECONDS = 1.0  # a failed rank other than 0 waits this long before ending the job, so that a
                             # failure every rank meets (a non-finite loss) is told once, by rank 0

_comm = None                # MPI.COMM_WORLD, once mpi4py is imported
_announce = None            # rank 0 of a command: sends the run directory at its first step
_checked = False            # the first step compares the ranks' weights and batches


def launched_size(environ=os.environ):
    """How many processes mpiexec started (read from the environment it gives each
    process, without importing MPI); 1 when this process was not started by mpiexec."""
    for name in SIZE_VARIABLES:
        if environ.get(name, "").isdigit():
            return int(environ[name])
    return 1


def world():
    """MPI's communicator of all the job's processes (mpi4py is imported on first use)."""
    global _comm
    if _comm is None:
        try:
            import mpi4py
        except ImportError:
            raise MiniftError(f"started by mpiexec with {launched_size()} processes, but mpi4py is not "
                              f"installed: pip install -e \".[dist]\" (mpi4py and MPICH)") from None
        mpi4py.rc.thread_level = "funneled"       # only the main thread talks to MPI
        from mpi4py import MPI
        _comm = MPI.COMM_WORLD
    return _comm


def enable():
    """Run the Trainer's forward and backward over the job's processes from now on."""
    backend.register("cpu", "forward_backward", forward_backward)
    backend.register("cuda", "forward_backward", _no_gpu_yet)


def disable():
    backend.register("cpu", "forward_backward", None)
    backend.register("cuda", "forward_backward", None)


# ----------------------------------------------------------------------------- the step

def forward_backward(model, loss_fn, batch, scale=1.0, data_parallel=False):
    """trainer.forward_backward over the job's processes: this rank's rows of `batch`
    (the global batch: every rank draws the same), their gradients summed over the
    ranks in rank order into `.grad` on every rank. Returns the whole batch's loss.

    reference: loss = loss_fn(model, batch) * scale;  loss.backward()"""
    global _announce, _checked
    comm = world()
    if not data_parallel:
        why = ("its model has dropout, whose masks one process draws in another order"
               if has_dropout(model) else "its Trainer has data_parallel=False")
        raise MiniftError(f"this run's loss cannot be split over {comm.Get_size()} processes ({why}); run it "
                          f"in one process, without mpiexec (--resume continues this run)")
    if fast.is_enabled():
        fast.training.keep_freed_memory()      # as minift.fast's own step does
    first = not _checked                        # the others may still be starting: wait patiently
    if _announce is not None:
        _announce, announce = None, _announce
        announce()
    size, rank = comm.Get_size(), comm.Get_rank()
    pieces = splitter(data_parallel)(batch, size)
    total = sum(weight for _, weight in pieces)
    params = [p for p in model.parameters() if p.requires_grad]
    if not _checked:
        _check_same_start(comm, params, batch)
        _checked = True
    if not total:                               # every rank alike: the loss says what is wrong
        return whole_batch_step(model, loss_fn, batch, scale)
    grads, loss = {}, np.zeros(1)
    piece, weight = pieces[rank]
    if weight:
        part = loss_fn(model, piece) * (scale * weight / total)
        part.backward(keep_graph=False, grads=grads)
        loss[0] = part.data.astype(np.float64)
    sum_in_rank_order(comm, params, grads, patient=first)
    losses = np.empty(size)
    _wait([comm.Iallgather(loss, losses)])
    found = [losses[r] for r in range(size) if pieces[r][1]]
    result = found[0]
    for value in found[1:]:                     # as the threads' step adds its parts' losses
        result = result + value
    return np.asarray(result)


def sum_in_rank_order(comm, params, grads, patient=False):
    """Set each parameter's `.grad` to .grad + g_0 + g_1 + ... + g_(N-1), added in that
    order, on every rank, where g_r is rank r's gradient (`grads`, {parameter: array},
    as Tensor.backward(grads=...) collects it; a rank without one for a parameter adds
    nothing). Reduce-scatter by Alltoall, in-order sums of this rank's slice, Allgather."""
    size, rank = comm.Get_size(), comm.Get_rank()
    if set(map(id, grads)) - set(map(id, params)):
        raise ValueError("sum_in_rank_order: a gradient for a tensor that is not a trainable parameter")
    dtype = params[0].data.dtype
    if any(p.data.dtype != dtype for p in params):
        raise ValueError("sum_in_rank_order: the trainable parameters must share one dtype")
    offsets = np.cumsum([0] + [p.data.size for p in params])
    chunk = -(-int(offsets[-1]) // size)                     # this rank's slice: [lo, lo + chunk)
    mine, have = np.zeros(size * chunk, dtype), np.zeros(len(params), np.uint8)
    for k, p in enumerate(params):
        if p in grads:
            mine[offsets[k]:offsets[k + 1]] = grads[p].reshape(-1)
            have[k] = 1
    parts, haves = np.empty((size, chunk), dtype), np.empty((size, len(params)), np.uint8)
    _wait([comm.Ialltoall(mine, parts), comm.Iallgather(have, haves)], patient)
    lo, total = rank * chunk, np.zeros(chunk, dtype)
    for k, p in enumerate(params):
        a, b = max(int(offsets[k]), lo), min(int(offsets[k + 1]), lo + chunk)
        if a >= b:
            continue
        s = None if p.grad is None else p.grad.reshape(-1)[a - offsets[k]:b - offsets[k]]
        for r in range(size):
            if haves[r, k]:
                g = parts[r, a - lo:b - lo]
                s = g if s is None else s + g
        if s is not None:
            total[a - lo:b - lo] = s
    summed = np.empty(size * chunk, dtype)
    _wait([comm.Iallgather(total, summed)], patient)
    for k, p in enumerate(params):
        if p.grad is not None or haves[:, k].any():
            p.grad = summed[offsets[k]:offsets[k + 1]].reshape(p.data.shape)


def _check_same_start(comm, params, batch):
    """Refuse, on every rank alike, to train when the ranks hold different weights or
    draw different batches (another corpus or checkpoint on one machine, say)."""
    def crc(arrays):
        value = 0
        for a in arrays:
            value = zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1), value)
        return value
    mine = np.array([crc(p.data for p in params), crc(b for b in batch if isinstance(b, np.ndarray))], np.int64)
    every = np.empty((comm.Get_size(), 2), np.int64)
    _wait([comm.Iallgather(mine, every)], patient=True)
    for r in range(1, len(every)):
        for i, what in enumerate(("weights", "first batch")):
            if every[r, i] != every[0, i]:
                raise MiniftError(f"rank {r} of {len(every)} does not start from rank 0's {what}: every "
                                  f"machine needs the same inputs (corpus, --init, data files) at the same path")


def _wait(requests, patient=False):
    """Wait for MPI requests: spinning (MPI's own Wait), or looking every POLL_SECONDS
    (`patient`, where the others may still be starting: a spinning rank takes a core)."""
    from mpi4py import MPI
    if not patient:
        MPI.Request.Waitall(requests)
        return
    while not MPI.Request.Testall(requests):
        time.sleep(POLL_SECONDS)


def _no_gpu_yet(model, loss_fn, batch, scale=1.0, data_parallel=False):
    raise MiniftError("several processes on GPUs would sum with NCCL through CuPy, which minift does not "
                      "do yet (docs/distributed.md); run --device cuda without mpiexec")


# ----------------------------------------------------------------------------- the command on every rank

def main(argv=None, speed=None):
    """`python -m minift ...` as one of the processes mpiexec started: rank 0 runs the
    command (`_lead`), the others join its run at its first step (`_follow`). `speed`
    is what cli.main calls to turn minift.fast on; the processes' step is then
    registered over it. Returns this process's exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        comm = world()
    except MiniftError as e:
        if any(os.environ.get(name) == "0" for name in RANK_VARIABLES):
            print(f"minift: error: {e}", file=sys.stderr)
        return 2
    share_cores(comm)

    def speed_up(reference):
        if speed is not None:
            speed(reference)
        enable()
    try:
        return _lead(comm, argv, speed_up) if comm.Get_rank() == 0 else _follow(comm, argv, speed_up)
    except BaseException:                   # a bug here: exiting would leave the others waiting
        traceback.print_exc()
        _abort(comm, 1)


def share_cores(comm):
    """Give each process its share of its machine's cores (MINIFT_NUM_THREADS, unless
    it is set): two processes on two cores run one thread each, BLAS's included."""
    from mpi4py import MPI
    here = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()          # processes on this machine
    if "MINIFT_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ["MINIFT_NUM_THREADS"] = str(max(1, cores // here))
    if os.environ["MINIFT_NUM_THREADS"] == "1":
        fast.threads._single_threaded_blas()        # (with more, minift.fast does it when turned on)


def _lead(comm, argv, speed):
    """Rank 0: the command as one process runs it. At its first step it sends the
    others its run directory; if it never gets there (a mistake in the command, a
    command that trains nothing) it tells them to stop with its exit code."""
    global _announce
    out, sent = _out_dir(argv), []

    def announce():
        files = sorted(p for p in Path(out).iterdir() if p.is_file() and not p.name.startswith("."))
        _send(comm, {"action": "join", "out": str(out), "files": [[p.name, p.stat().st_size] for p in files]},
              b"".join(p.read_bytes() for p in files))
        sent.append(True)
    _announce = announce if out is not None else None
    code = _run(argv, speed)
    _announce = None
    if not sent:
        _send(comm, {"action": "stop", "code": code})
    elif code:
        _abort(comm, code)
    return code


def _follow(comm, argv, speed):
    """Rank r > 0: wait for rank 0; join its run in a scratch directory (a copy of its
    run directory, continued with --resume, its output kept apart), or stop."""
    message, payload = _receive(comm)
    if message["action"] == "stop":
        return message["code"]
    scratch = _scratch_directory(comm.Get_rank())
    try:
        run, start = scratch / "run", 0
        run.mkdir()
        for name, size in message["files"]:
            (run / name).write_bytes(payload[start:start + size])
            start += size
        said = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(said):
            code = _run(argv + ["--out", str(run), "--resume"], speed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if code:
        time.sleep(FAILURE_GRACE_SECONDS)
        lines = said.getvalue().strip().splitlines() or ["failed"]
        command, _, sentence = lines[-1].replace(str(run), message["out"]).rpartition(": error: ")
        where = f"rank {comm.Get_rank()} of {comm.Get_size()}"
        bug = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), 0)
        print(f"{command}: error on {where}: {sentence}" if command and code == 2 else   # a mistake: its sentence
              f"minift: {where} failed:\n" + "\n".join(lines[bug:]), file=sys.stderr)   # a bug: its traceback
        _abort(comm, code)
    return 0


def _scratch_directory(rank):
    """A new directory for this rank's copy of the run, under TMPDIR, after removing the
    copies of ranks that were killed before they could remove theirs (their pid is gone)."""
    for old in Path(tempfile.gettempdir()).glob("minift-rank*-pid*-*"):
        pid = old.name.split("-pid")[1].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"minift-rank{rank}-pid{os.getpid()}-"))


def _alive(pid):
    try:
        os.kill(pid, 0)                     # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:                 # another user's process
        return True
    return True


def _run(argv, speed):
    """cli.main's exit code, also for argparse's exits and for bugs (traceback printed)."""
    try:
        return cli.main(argv, speed=speed)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BaseException:
        traceback.print_exc()
        return 1


def _out_dir(argv):
    """The run directory the command writes (--out of pretrain, finetune, align), or None."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = cli.build_parser().parse_args(argv)
    except SystemExit:
        return None
    return args.out if args.command in ("pretrain", "finetune", "align") else None


def _send(comm, message, payload=b""):
    """Rank 0 to every other rank: a JSON message and a payload of bytes (no pickle)."""
    text = json.dumps(message).encode("utf-8")
    lengths = np.array([len(text), len(payload)], np.int64)
    _wait([comm.Ibcast(lengths)], patient=True)
    for data in (text, payload):
        _wait([comm.Ibcast(np.frombuffer(bytearray(data), np.uint8))], patient=True)


def _receive(comm):
    """The other end of _send: (message, payload), waiting as long as rank 0 takes."""
    lengths = np.zeros(2, np.int64)
    _wait([comm.Ibcast(lengths)], patient=True)
    text, payload = np.empty(lengths[0], np.uint8), np.empty(lengths[1], np.uint8)
    for buffer in (text, payload):
        _wait([comm.Ibcast(buffer)], patient=True)
    return json.loads(text.tobytes().decode("utf-8")), payload.tobytes()


def _abort(comm, code):
    """End every process of the job now, with `code`, after this one has said why (MPI's
    own notice of the abort is left out: the sentence printed before it is the message)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    comm.Abort(code)
