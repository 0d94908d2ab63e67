"""Benchmarks that print figures (nothing here asserts a speed).

    python -m minift.bench engine     # autograd overhead per op on 8x8 arrays
    python -m minift.bench step       # one GPT training step of the reference config
    python -m minift.bench step --profile             # ... and the cost ledger: where the time goes
    python -m minift.bench step --shape gpt2 --steps 2   # GPT-2 124M, batch 4 x 256
    python -m minift.bench step --reference           # the plain reading path, minift.fast off

The CUDA kernels against cuBLAS and plain CuPy are measured by the GPU appendix's own
benchmark, `python -m minift.bench_kernels` (GPU only).
"""
import argparse
import sys
import threading
import time

import numpy as np

from . import fast
from .fast.threads import count_waits, threads
from .tensor import set_profiler


class profile:
    """Time every op while active, by op type: the cost ledger of
    `python -m minift.bench step --profile` is made from it.

        with profile() as p:
            loss = model(x, y)[1]; loss.backward()
        p.ops["Linear"]   # {"calls", "forward_s", "backward_s", "flops", "wait_s"}
        p.waits           # [splits over threads, seconds the caller waited for helpers]

    FLOPs come from an op's optional `flops(ctx, *inputs)` -> (forward, backward) method
    (the matrix products: MatMul, Linear, CausalAttention); other ops count 0, since
    their cost is memory traffic. Timings are host wall time (CPU arrays); ops that run
    on several threads at once (a data-parallel step) add up their threads' times."""

    def __init__(self):
        self.ops = {}
        self.waits = [0, 0.0]     # splits over threads, seconds the caller waited for helpers
        self._lock = threading.Lock()   # ops of a data-parallel step run on several threads at once

    def __enter__(self):
        self._previous = set_profiler(self), count_waits(self.waits)
        return self

    def __exit__(self, *exc):
        set_profiler(self._previous[0])
        count_waits(self._previous[1])

    def _entry(self, ctx):
        return self.ops.setdefault(type(ctx).__name__, {"calls": 0, "forward_s": 0.0, "backward_s": 0.0,
                                                        "flops": 0, "wait_s": 0.0})

    def forward(self, ctx, raw, options):
        t, waited = time.perf_counter(), self.waits[1]
        out = ctx.forward(*raw, **options)
        spent = time.perf_counter() - t
        forward, ctx.backward_flops = ctx.flops(*raw) if hasattr(ctx, "flops") else (0, 0)
        with self._lock:
            entry = self._entry(ctx)
            entry["forward_s"] += spent
            entry["wait_s"] += self.waits[1] - waited
            entry["calls"] += 1
            entry["flops"] += forward
        return out

    def backward(self, ctx, g):
        t, waited = time.perf_counter(), self.waits[1]
        grads = ctx.backward(g)
        spent = time.perf_counter() - t
        with self._lock:
            entry = self._entry(ctx)
            entry["backward_s"] += spent
            entry["wait_s"] += self.waits[1] - waited
            entry["flops"] += getattr(ctx, "backward_flops", 0)
        return grads


def _best_of(fn, repeats, inner=1):
    """Best wall time of `repeats` runs of `inner` calls, per call, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def bench_engine(print_fn=print):
    """Per-op cost of forward + backward through the engine on 8x8 arrays: a chain of
    n ops followed by one backward, divided by n; next to the bare NumPy op."""
    from .tensor import tensor
    n = 200
    rng = np.random.default_rng(0)
    a = tensor(rng.standard_normal((8, 8)).astype(np.float32), requires_grad=True)
    # operands near 1 (and near the identity for matmul) so a long chain stays finite
    b = tensor((1 + 0.01 * rng.standard_normal((8, 8))).astype(np.float32), requires_grad=True)
    w = tensor((np.eye(8) + 0.01 * rng.standard_normal((8, 8))).astype(np.float32), requires_grad=True)
    ones = np.ones((8, 8), np.float32)

    # Each chain is written out, the op inside the loop: a call per op (a lambda) would
    # add its own cost to the engine's.
    def add():
        x = a
        for _ in range(n):
            x = x + b
        x.backward(ones)

    def mul():
        x = a
        for _ in range(n):
            x = x * b
        x.backward(ones)

    def tanh():
        x = a
        for _ in range(n):
            x = x.tanh()
        x.backward(ones)

    def matmul():
        x = a
        for _ in range(n):
            x = x @ w
        x.backward(ones)
    chains = {"add": add, "mul": mul, "tanh": tanh, "matmul": matmul}
    bare = {"add": lambda: a.data + b.data, "mul": lambda: a.data * b.data,
            "tanh": lambda: np.tanh(a.data), "matmul": lambda: a.data @ w.data}
    print_fn(f"engine overhead on 8x8 float32 arrays (chain of {n} ops, then one backward)")
    print_fn(f"{'op':>8} {'fwd+bwd us/op':>14} {'bare NumPy us':>14}")
    for name, run in chains.items():
        t = _best_of(run, 200) / n           # best of many: a shared machine adds noise, never speed
        tb = _best_of(bare[name], 7, inner=2000)
        print_fn(f"{name:>8} {t * 1e6:14.2f} {tb * 1e6:14.2f}")


def matmul_rate(n=1024, repeats=5):
    """FLOP/s of a float32 n x n matmul on this machine, as minift runs it (backend.matmul:
    BLAS, split over minift's threads); best of `repeats`."""
    from .backend import matmul
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32)
    y = rng.standard_normal((n, n)).astype(np.float32)
    return 2 * n ** 3 / _best_of(lambda: matmul(x, y), repeats)


def model_flops_per_token(config, T):
    """6 x (matmul parameters) + 12 x n_layer x T x n_embd: forward + backward FLOPs per
    token of the weight matmuls and the attention score/value matmuls."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    matmul_params = L * (3 * C * C + C * C + 4 * C * C + 4 * C * C) + V * C   # blocks + LM head
    return 6 * matmul_params + 12 * L * T * C


# Shapes `bench step` knows; any field can be overridden from the command line.
SHAPES = {
    "reference": dict(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128, batch=16, T=128),
    "tiny": dict(vocab_size=1024, block_size=64, n_layer=2, n_head=2, n_embd=64, batch=16, T=64),
    "gpt2": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, batch=4, T=256),
}


def _training_step(shape, device):
    """(step function, config) of a GPT of `shape` with AdamW, on fixed random tokens."""
    from .model import GPT, GPTConfig, param_groups
    from .optim import AdamW
    from .pretrain import lm_loss
    from .trainer import forward_backward
    config = GPTConfig(**{k: shape[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")})
    model = GPT(config, seed=0).to(device)
    opt = AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    xp = np
    if device == "cuda":
        from .backend import get_cupy
        xp = get_cupy()
    x = xp.asarray(rng.integers(0, config.vocab_size, (shape["batch"], shape["T"])))
    y = xp.asarray(rng.integers(0, config.vocab_size, (shape["batch"], shape["T"])))

    # The Trainer's forward and backward, as pretraining runs it: data-parallel when minift.fast is on.
    parts, step_fn = 1, forward_backward
    if fast.is_enabled():
        parts, step_fn = fast.training.data_parallel_parts(model, (x, y)), fast.training.forward_backward

    def step(timings=None):
        t0 = time.perf_counter()
        step_fn(model, lm_loss, (x, y), data_parallel=True)
        t1 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        if device == "cuda":
            xp.cuda.Device().synchronize()
        if timings is not None:
            timings["optimizer"] = timings.get("optimizer", 0.0) + time.perf_counter() - t1
            timings["forward+backward"] = timings.get("forward+backward", 0.0) + t1 - t0
    step.parts = parts
    return step, config


def _peak_memory(step):
    """Peak bytes of NumPy memory allocated during one step (tracemalloc sees NumPy's
    allocations), above what was allocated before it."""
    import tracemalloc
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before


def bench_step(print_fn=print, device="cpu", steps=10, shape=None, profile=False):
    """Training steps (forward + backward + AdamW) of a GPT of `shape` (default: the
    reference configuration: vocab 2048, block 128, 4 layers, 4 heads, n_embd 128, batch
    16 x 128): time per step, tokens/s, GFLOP/s, peak memory; with profile=True, the
    cost ledger (where the time goes, op type by op type)."""
    shape = dict(SHAPES["reference"], **(shape or {}))
    step, config = _training_step(shape, device)
    B, T = shape["batch"], shape["T"]
    step()   # warm-up (allocations, kernel compilation)
    t = _best_of(step, steps)
    flops = model_flops_per_token(config, T) * B * T
    path = "minift.fast" if fast.is_enabled() else "the reference path (--reference)"
    print_fn(f"GPT training step, vocab {config.vocab_size}, {config.n_layer} layers, {config.n_head} heads, "
             f"n_embd {config.n_embd}, batch {B} x T {T}, on {device}, {path}")
    print_fn(f"  {t * 1e3:8.1f} ms/step   {B * T / t:10,.0f} tokens/s   {flops / t / 1e9:7.2f} GFLOP/s (model)")
    if device != "cpu":
        return t
    rate = matmul_rate()
    who = f"{threads()} thread(s) (MINIFT_NUM_THREADS / OPENBLAS_NUM_THREADS)" if fast.is_enabled() else \
        "NumPy on one core, BLAS with its own threads"
    print_fn(f"  {who}; a float32 1024^3 matmul: {rate / 1e9:.2f} GFLOP/s -> the step runs at "
             f"{flops / t / rate:.0%} of it")
    print_fn(f"  peak memory of a step (NumPy allocations above the model and optimizer): "
             f"{_peak_memory(step) / 2**20:,.1f} MB")
    if profile:
        print_fn(ledger(step, max(1, steps // 3), rate))
    return t


def ledger(step, n, matmul_rate):
    """The cost ledger: `n` profiled steps, op type by op type, as a text table. When
    the step runs its batch in parts on several threads (step.parts, the Trainer's data
    parallelism), an op's time is summed over the threads and shares are of the thread
    time (threads x the step's wall time)."""
    timings = {}
    parts = getattr(step, "parts", 1)
    t0 = time.perf_counter()
    with profile() as p:
        for _ in range(n):
            step(timings)
    total = (time.perf_counter() - t0) / n
    capacity = total * parts                 # thread-seconds a step
    rows = sorted(p.ops.items(), key=lambda kv: -(kv[1]["forward_s"] + kv[1]["backward_s"]))
    lines = [f"\ncost ledger ({n} steps, per step; matrix products at the machine's "
             f"{matmul_rate / 1e9:.1f} GFLOP/s would take {{ideal}} ms)"]
    if parts > 1:
        lines.append(f"the batch runs as {parts} parts at once, one per thread (data parallelism): an op's calls and ms are "
                     f"summed over the threads, its GFLOP/s are a thread's, shares are of {parts} x {total * 1e3:.0f} ms")
    lines.append(f"{'op':<18}{'calls':>6}{'forward ms':>12}{'backward ms':>13}{'share':>8}{'GFLOP':>8}{'GFLOP/s':>9}")
    ops_time, ideal = 0.0, 0.0
    for name, e in rows:
        spent = (e["forward_s"] + e["backward_s"]) / n
        ops_time += spent
        gflop = e["flops"] / n / 1e9
        ideal += gflop / (matmul_rate / 1e9)
        rate = f"{gflop / spent:9.1f}" if gflop else f"{'-':>9}"
        lines.append(f"{name:<18}{e['calls'] // n:>6}{e['forward_s'] / n * 1e3:>12.1f}{e['backward_s'] / n * 1e3:>13.1f}"
                     f"{spent / capacity:>8.1%}{gflop:>8.2f}{rate}")
    optimizer = timings.get("optimizer", 0.0) / n
    splits, waited = p.waits[0] / n, p.waits[1] / n
    idle = optimizer * (parts - 1) + (waited if parts > 1 else 0.0)
    engine = capacity - ops_time - optimizer - idle
    lines.append(f"{'optimizer (AdamW)':<18}{'':>6}{'':>12}{'':>13}{optimizer / capacity:>8.1%}")
    if parts > 1:
        lines.append(f"{'threads idle':<18}{'':>6}{'':>12}{'':>13}{idle / capacity:>8.1%}   (the others during "
                     f"the optimizer; the first thread done, waiting for the other parts)")
    lines.append(f"{'engine and glue':<18}{'':>6}{'':>12}{'':>13}{engine / capacity:>8.1%}   (graph walk, "
                 f"gradient sums, the Python between ops)")
    lines.append(f"{'total':<18}{'':>6}{'':>12}{'':>13}{total * 1e3:>7.0f}ms")
    if parts > 1:
        lines.append(f"threads: one hand-off a step (the parts); the calling thread, its part done, waited "
                     f"{waited * 1e3:.1f} ms for the others")
    elif splits:
        by_op = sorted(((e["wait_s"] / n, name) for name, e in p.ops.items() if e["wait_s"]), reverse=True)
        lines.append(f"threads: {splits:.0f} splits a step; after its own share the calling thread waited "
                     f"{waited * 1e3:.1f} ms ({waited / total:.1%}) for the helpers, inside the ops' times: "
                     + ", ".join(f"{name} {w * 1e3:.1f}" for w, name in by_op[:4]))
    lines[0] = lines[0].format(ideal=f"{ideal * 1e3:.0f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minift.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["engine", "step"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shape", default="reference", choices=sorted(SHAPES),
                        help="reference (vocab 2048, 4 x 128, batch 16 x 128), tiny, or gpt2 (124M, batch 4 x 256)")
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "batch", "T"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, dest=name, help="override the shape's value")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (the best is reported)")
    parser.add_argument("--profile", action="store_true", help="print the cost ledger: where the time goes")
    parser.add_argument("--reference", action="store_true", help="time the plain reading path (minift.fast off)")
    args = parser.parse_args(argv)
    fast.enable_unless_reference(args.reference)
    if args.what == "engine":
        bench_engine()
        return
    shape = dict(SHAPES[args.shape])
    shape.update({k: getattr(args, k) for k in shape if getattr(args, k, None) is not None})
    shape["block_size"] = max(shape["block_size"], shape["T"])
    bench_step(device=args.device, steps=args.steps, shape=shape, profile=args.profile)


if __name__ == "__main__":
    sys.exit(main())
