"""Benchmarks that print figures (nothing here asserts a speed).

    python -m minift.bench engine     # autograd overhead per op on 8x8 arrays
    python -m minift.bench step       # one GPT training step of the reference config

The CUDA kernels against cuBLAS and plain CuPy are measured by the GPU appendix's own
benchmark, `python -m minift.bench_kernels` (GPU only).
"""
import argparse
import sys
import time

import numpy as np


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
    chains = {
        "add": lambda x: x + b,
        "mul": lambda x: x * b,
        "tanh": lambda x: x.tanh(),
        "matmul": lambda x: x @ w,
    }
    bare = {"add": lambda: a.data + b.data, "mul": lambda: a.data * b.data,
            "tanh": lambda: np.tanh(a.data), "matmul": lambda: a.data @ w.data}
    print_fn(f"engine overhead on 8x8 float32 arrays (chain of {n} ops, then one backward)")
    print_fn(f"{'op':>8} {'fwd+bwd us/op':>14} {'bare NumPy us':>14}")
    for name, op in chains.items():
        def run():
            x = a
            for _ in range(n):
                x = op(x)
            x.backward(ones)
        t = _best_of(run, 7) / n
        tb = _best_of(bare[name], 7, inner=2000)
        print_fn(f"{name:>8} {t * 1e6:14.2f} {tb * 1e6:14.2f}")


def matmul_rate(n=1024, repeats=5):
    """FLOP/s of a float32 n x n NumPy matmul on this machine (best of `repeats`)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32)
    y = rng.standard_normal((n, n)).astype(np.float32)
    return 2 * n ** 3 / _best_of(lambda: x @ y, repeats)


def model_flops_per_token(config, T):
    """6 x (matmul parameters) + 12 x n_layer x T x n_embd: forward + backward FLOPs per
    token of the weight matmuls and the attention score/value matmuls."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    matmul_params = L * (3 * C * C + C * C + 4 * C * C + 4 * C * C) + V * C   # blocks + LM head
    return 6 * matmul_params + 12 * L * T * C


def bench_step(print_fn=print, device="cpu", steps=10, batch_size=16):
    """One training step (forward + backward + AdamW) of the reference configuration:
    vocab 2048, block 128, 4 layers, 4 heads, n_embd 128, batch 16."""
    from .model import GPT, GPTConfig, param_groups
    from .optim import AdamW
    config = GPTConfig(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config, seed=0).to(device)
    opt = AdamW(param_groups(model, 0.01), lr=1e-3)
    rng = np.random.default_rng(0)
    B, T = batch_size, config.block_size
    xp = np
    if device == "cuda":
        from .backend import get_cupy
        xp = get_cupy()
    x = xp.asarray(rng.integers(0, config.vocab_size, (B, T)))
    y = xp.asarray(rng.integers(0, config.vocab_size, (B, T)))

    def step():
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if device == "cuda":
            xp.cuda.Device().synchronize()

    step()   # warm-up (allocations, kernel compilation)
    t = _best_of(step, steps)
    flops = model_flops_per_token(config, T) * B * T
    print_fn(f"GPT training step, vocab {config.vocab_size}, block {T}, {config.n_layer} layers, "
             f"{config.n_head} heads, n_embd {config.n_embd}, batch {B}, on {device}")
    print_fn(f"  {t * 1e3:8.1f} ms/step   {B * T / t:10,.0f} tokens/s   {flops / t / 1e9:7.2f} GFLOP/s (model)")
    if device == "cpu":
        import os
        print_fn(f"  BLAS threads: OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset (all cores)')}")
        rate = matmul_rate()
        print_fn(f"  NumPy float32 1024^3 matmul: {rate / 1e9:.2f} GFLOP/s  ->  the step runs at "
                 f"{flops / t / rate:.0%} of it")
    return t


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minift.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["engine", "step"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.what == "engine":
        bench_engine()
    else:
        bench_step(device=args.device)


if __name__ == "__main__":
    sys.exit(main())
