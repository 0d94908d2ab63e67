"""One process, two threads, two processes: the training step's tokens/s for one global batch.

    python benchmarks/scaling.py                    # reference config, 5 rounds
    python benchmarks/scaling.py --rounds 3 --steps 10 --processes 2
    mpiexec -n 2 python benchmarks/scaling.py --sum     # the gradient sum alone, against MPI's Allreduce

Three ways to run the same step (forward and backward of the whole global batch, the
gradient norm clipped, AdamW), each in fresh processes of its own:

    1 process     one thread (MINIFT_NUM_THREADS=1, BLAS single-threaded)
    2 threads     one process, the batch's rows in two parts at once (minift.fast.training)
    2 processes   `mpiexec -n 2`, each rank one thread and its rows (minift.dist)

The machine here is shared and noisy, so the three alternate round by round (the order
rotating), each round times `--steps` steps after two warm-up steps and keeps its
median, and the table gives the median round with the range. Needs the `dist` extra
(mpi4py and an MPI) for the processes' row; a reference tool, not part of minift.

Shapes: reference = vocab 2048, block 128, 4 layers, 4 heads, n_embd 128, batch 16 x 128;
tiny = vocab 1024, block 64, 2 layers, 2 heads, n_embd 64, batch 16 x 64.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {
    "reference": dict(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128, batch=16, T=128),
    "tiny": dict(vocab_size=1024, block_size=64, n_layer=2, n_head=2, n_embd=64, batch=16, T=64),
}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="reference", choices=sorted(SHAPES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="timed steps a round (after 2 warm-up steps)")
    p.add_argument("--processes", type=int, default=2, help="threads of the second row, processes of the third")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)    # a timed child
    p.add_argument("--sum", action="store_true", help="under mpiexec: time the gradient sum of the shape's "
                                                      "model (minift.dist.sum_in_rank_order) and MPI's Allreduce")
    return p.parse_args(argv)


def worker(args):
    """Time `args.steps` steps in this process (or, under mpiexec, in this rank); rank 0
    prints the median step time as JSON."""
    from minift import backend, dist, fast
    size = dist.launched_size()
    if size > 1:
        dist.share_cores(dist.world())          # as `python -m minift` does under mpiexec
    fast.enable()
    if size > 1:
        dist.enable()
    import numpy as np
    from minift.model import GPT, GPTConfig, param_groups
    from minift.optim import AdamW, clip_grad_norm
    from minift.pretrain import lm_loss
    from minift.trainer import forward_backward
    s = SHAPES[args.shape]
    model = GPT(GPTConfig(**{k: s[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")}), seed=0)
    opt = AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)                               # every rank: the same global batch
    x, y = (rng.integers(0, s["vocab_size"], (s["batch"], s["T"])) for _ in range(2))
    step_fn = backend.implementation("forward_backward", forward_backward, x)    # as the Trainer picks it

    def step():
        step_fn(model, lm_loss, (x, y), 1.0, data_parallel=True)
        clip_grad_norm(opt.params(), 1.0)
        opt.step()
        opt.zero_grad()
    times = []
    for i in range(args.steps + 2):
        t0 = time.perf_counter()
        step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    if size == 1 or dist.world().Get_rank() == 0:
        print(json.dumps({"seconds": statistics.median(times), "threads": fast.threads.threads()}))


def time_the_sum(args, calls=30):
    """Under mpiexec: the median time of minift's rank-order sum of the model's gradients
    and of MPI's own Allreduce of one buffer as long, each call after a barrier."""
    from minift import dist, fast
    import numpy as np
    from minift.model import GPT, GPTConfig
    comm = dist.world()
    dist.share_cores(comm)
    fast.training.keep_freed_memory()                # as in training: freed memory is reused
    s = SHAPES[args.shape]
    model = GPT(GPTConfig(**{k: s[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")}), seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = {p: np.random.default_rng(comm.Get_rank()).standard_normal(p.data.shape).astype(np.float32) for p in params}
    flat = np.concatenate([g.reshape(-1) for g in grads.values()])
    out = np.empty_like(flat)

    def rank_order():
        for p in params:
            p.grad = None
        dist.sum_in_rank_order(comm, params, grads)
    found = {}
    for name, fn in (("sum_in_rank_order", rank_order), ("MPI Allreduce", lambda: comm.Allreduce(flat, out))):
        times = []
        for _ in range(calls):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        found[name] = statistics.median(times)
    if comm.Get_rank() == 0:
        print(f"{flat.nbytes / 1e6:.1f} MB of gradients, {comm.Get_size()} processes, median of {calls}: " +
              ", ".join(f"{name} {t * 1e3:.1f} ms" for name, t in found.items()))


def ways(n):
    """(name, command, extra environment) of the three ways to run the step."""
    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    mpiexec = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    found = [("1 process", me, {"MINIFT_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
             (f"{n} threads", me, {"MINIFT_NUM_THREADS": str(n)})]
    if mpiexec:
        found.append((f"{n} processes", [mpiexec, "-n", str(n)] + me, {}))
    else:
        print("no mpiexec: the processes' row is left out (pip install -e \".[dist]\")", file=sys.stderr)
    return found


def main():
    args = parse()
    if args.worker:
        return worker(args)
    if args.sum:
        return time_the_sum(args)
    passed = [f"--shape={args.shape}", f"--steps={args.steps}"]
    runs = ways(args.processes)
    found = {name: [] for name, _, _ in runs}
    for r in range(args.rounds):
        for name, command, extra in runs[r % len(runs):] + runs[:r % len(runs)]:
            env = {k: v for k, v in os.environ.items() if k not in ("MINIFT_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
            env.update(extra, PYTHONPATH=str(ROOT))
            done = subprocess.run(command + passed, env=env, capture_output=True, text=True, timeout=1200)
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            found[name].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
            print(f"round {r + 1}: {name:12s} {found[name][-1] * 1e3:7.1f} ms a step", file=sys.stderr)
    s = SHAPES[args.shape]
    tokens = s["batch"] * s["T"]
    base = statistics.median(found[runs[0][0]])
    print(f"\n{args.shape} config, global batch {s['batch']} x {s['T']}, median of {args.rounds} rounds "
          f"of {args.steps} steps (the range in brackets)\n")
    print("| run | ms a step | tokens/s | against 1 process |")
    print("|---|---|---|---|")
    for name, seconds in found.items():
        m = statistics.median(seconds)
        print(f"| {name} | {m * 1e3:.0f} ({min(seconds) * 1e3:.0f}-{max(seconds) * 1e3:.0f}) | "
              f"{tokens / m:,.0f} | {base / m:.2f}x |")


if __name__ == "__main__":
    main()
