"""Benchmarks of minift's CUDA kernels (GPU only): prints figures, asserts nothing.

    python -m minift.bench_kernels

Part of the GPU appendix (read after minift.cuda, which it measures).

1. SGEMM: minift's kernel against cupy.matmul (cuBLAS), float32 without TF32, at
   4096^3 and at the shapes of a small GPT's layers. Time in ms per call, and the
   ratio minift / cuBLAS (1.0 = as fast as cuBLAS, 2.0 = twice as slow).
2. Causal attention, forward + backward, B=8, H=8, T=1024, D=64: the fused kernels
   against the plain CuPy composition (scores = q @ k.T * scale, mask, softmax, @ v,
   and its backward by CuPy ops). Time, and extra GPU memory: the peak of CuPy's
   memory pool during the call minus what was in use before it (the inputs).
3. A sweep of SGEMM tile configurations, to choose the ones minift/cuda/wrappers.py uses.

Timing uses CUDA events around `repeats` back-to-back calls after warm-up calls
(which also compile the kernels). Before the timed calls the stream is held by a
short host-side wait, so that all the calls are queued by the time the GPU starts
on them: the figures are GPU time, not Python's launch overhead.
"""
import math
import os
import sys
import time

import numpy as np

from . import cuda
from .backend import get_cupy

MATMUL_SHAPES = [  # (M, K, N): (M, K) @ (K, N)
    (4096, 4096, 4096),
    (2048, 128, 384),
    (2048, 128, 512),
    (2048, 512, 128),
    (2048, 128, 2048),
]
ATTENTION_SHAPE = (8, 8, 1024, 64)   # B, H, T, D
# Tile configurations tried by the sweep (to choose MATMUL_LARGE / MATMUL_SMALL).
MATMUL_TILE_CANDIDATES = {
    "128x128x8 8x8": {"BM": 128, "BN": 128, "BK": 8, "TM": 8, "TN": 8},
    "128x128x16 8x8": {"BM": 128, "BN": 128, "BK": 16, "TM": 8, "TN": 8},
    "128x64x8 8x4": {"BM": 128, "BN": 64, "BK": 8, "TM": 8, "TN": 4},
    "64x64x8 8x8": {"BM": 64, "BN": 64, "BK": 8, "TM": 8, "TN": 8},
    "64x64x16 4x4": {"BM": 64, "BN": 64, "BK": 16, "TM": 4, "TN": 4},
}


def _gpu_ms(cp, fn, warmup=3, repeats=20):
    """Milliseconds of GPU time per call of fn()."""
    for _ in range(warmup):
        fn()
    stream = cp.cuda.get_current_stream()
    stream.synchronize()
    if hasattr(stream, "launch_host_func"):
        # The GPU waits 50 ms on this host function while Python queues the calls.
        stream.launch_host_func(lambda _: time.sleep(0.05), None)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(stream)
    for _ in range(repeats):
        fn()
    end.record(stream)
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / repeats


def _peak_extra_bytes(cp, fn):
    """Peak bytes of CuPy's memory pool in use during fn(), above the level before it."""

    class PeakMemory(cp.cuda.MemoryHook):
        name = "minift_peak_memory"

        def __init__(self):
            super().__init__()
            self.now = self.peak = 0

        def malloc_postprocess(self, **kw):
            self.now += kw["mem_size"]
            self.peak = max(self.peak, self.now)

        def free_postprocess(self, **kw):
            self.now -= kw["mem_size"]

    cp.cuda.Device().synchronize()
    hook = PeakMemory()
    with hook:
        result = fn()
        cp.cuda.Device().synchronize()
    del result
    return hook.peak


def _kernel_resources(print_fn):
    """Registers, spilled bytes and shared memory of every kernel compiled so far, as the
    driver built them for this GPU."""
    for (module, defines, name), func in sorted(cuda.compiled_kernels().items(), key=lambda kv: str(kv[0])):
        tiles = " ".join(f"{k}={v}" for k, v in defines)
        print_fn(f"  {name:32s} [{tiles}]: {func.num_regs} registers, "
                 f"{func.local_size_bytes} B local (spills), {func.shared_size_bytes} B static shared")


def bench_matmul(cp, print_fn):
    os.environ.pop("MINIFT_MATMUL", None)   # minift's kernel, not the cuBLAS switch
    sms = cuda.device_attribute("MultiProcessorCount")
    print_fn("SGEMM, float32 (no TF32), ms per call; ratio = minift / cuBLAS")
    print_fn(f"  {'shape':28s} {'form':6s} {'tiles':7s} {'minift':>8s} {'cuBLAS':>8s} "
             f"{'ratio':>6s} {'minift TFLOP/s':>15s} {'max rel err':>12s}")
    rng = np.random.default_rng(0)
    cases = [(s, False, False) for s in MATMUL_SHAPES]
    cases += [(MATMUL_SHAPES[0], False, True), (MATMUL_SHAPES[0], True, False)]   # backward forms
    for (M, K, N), ta, tb in cases:
        a = cp.asarray(rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32))
        b = cp.asarray(rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32))
        a_op = a.T if ta else a
        b_op = b.T if tb else b
        ours = _gpu_ms(cp, lambda: cuda.matmul(a, b, transpose_a=ta, transpose_b=tb))
        theirs = _gpu_ms(cp, lambda: cp.matmul(a_op, b_op))
        c, ref = cuda.matmul(a, b, transpose_a=ta, transpose_b=tb), cp.matmul(a_op, b_op)
        err = float(cp.abs(c - ref).max() / cp.abs(ref).max())
        tiles = "large" if cuda.matmul_config(M, N, 1, sms) is cuda.MATMUL_LARGE else "small"
        form = ("A.T" if ta else "A") + ("@B.T" if tb else "@B")
        shape = f"({M},{K})x({K},{N})"
        print_fn(f"  {shape:28s} {form:6s} {tiles:7s} {ours:8.3f} {theirs:8.3f} {ours / theirs:6.2f} "
                 f"{2 * M * N * K / ours / 1e9:15.1f} {err:12.1e}")


def bench_matmul_tiles(cp, print_fn, shapes=((4096, 4096, 4096), (2048, 128, 384),
                                                      (2048, 512, 128))):
    """Every candidate tile configuration on a few shapes: ms per call (A @ B)."""
    names = list(MATMUL_TILE_CANDIDATES)
    print_fn("SGEMM tile sweep, ms per call (A @ B)")
    print_fn(f"  {'shape':24s} " + " ".join(f"{n:>15s}" for n in names) + f" {'cuBLAS':>8s}")
    rng = np.random.default_rng(1)
    for M, K, N in shapes:
        a = cp.asarray(rng.standard_normal((M, K), dtype=np.float32))
        b = cp.asarray(rng.standard_normal((K, N), dtype=np.float32))
        times = [_gpu_ms(cp, lambda t=MATMUL_TILE_CANDIDATES[n]: cuda.matmul(a, b, tiles=t))
                 for n in names]
        cublas = _gpu_ms(cp, lambda: cp.matmul(a, b))
        shape = f"({M},{K})x({K},{N})"
        print_fn(f"  {shape:24s} " + " ".join(f"{t:15.3f}" for t in times) + f" {cublas:8.3f}")


def bench_attention(cp, print_fn):
    B, H, T, D = ATTENTION_SHAPE
    scale = 1 / math.sqrt(D)
    rng = np.random.default_rng(0)
    q, k, v, do = (cp.asarray(rng.standard_normal((B, H, T, D), dtype=np.float32)) for _ in range(4))
    future = cp.triu(cp.ones((T, T), dtype=bool), 1)

    def naive():
        s = (q @ k.swapaxes(-1, -2)) * np.float32(scale)          # (B, H, T, T)
        s = cp.where(future, np.float32(-np.inf), s)
        s -= s.max(axis=-1, keepdims=True)
        p = cp.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        o = p @ v
        dv = p.swapaxes(-1, -2) @ do
        dp = do @ v.swapaxes(-1, -2)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        dq = (ds @ k) * np.float32(scale)
        dk = (ds.swapaxes(-1, -2) @ q) * np.float32(scale)
        return o, dq, dk, dv

    def fused():
        o, lse = cuda.attention_forward(q, k, v)
        dq, dk, dv = cuda.attention_backward(q, k, v, o, lse, do)
        return o, dq, dk, dv

    t_fused = _gpu_ms(cp, fused, repeats=10)
    t_naive = _gpu_ms(cp, naive, repeats=10)
    m_fused = _peak_extra_bytes(cp, fused)
    m_naive = _peak_extra_bytes(cp, naive)
    diffs = [float(cp.abs(a - b).max()) for a, b in zip(fused(), naive())]
    mib = 1024 * 1024
    print_fn(f"Causal attention forward + backward, B={B} H={H} T={T} D={D}, float32")
    print_fn(f"  fused kernels : {t_fused:8.3f} ms   extra memory {m_fused / mib:8.1f} MiB")
    print_fn(f"  CuPy composed : {t_naive:8.3f} ms   extra memory {m_naive / mib:8.1f} MiB")
    print_fn(f"  speed ratio (composed / fused time) {t_naive / t_fused:.2f}x, "
             f"memory ratio (composed / fused) {m_naive / max(m_fused, 1):.1f}x")
    print_fn("  max |fused - composed| for o, dq, dk, dv: " + ", ".join(f"{d:.1e}" for d in diffs))


def run(print_fn=print):
    """Print the SGEMM and attention benchmarks; without a GPU, say so and return False."""
    if "cupy" not in sys.modules:
        # cuBLAS in full float32 for a fair comparison (read when CuPy/cuBLAS load).
        os.environ["CUPY_TF32"] = "0"
        os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
    elif os.environ.get("CUPY_TF32", "0") != "0":
        print_fn("note: CuPy was imported with CUPY_TF32 set: cuBLAS may use TF32 here")
    try:
        cp = get_cupy()
    except RuntimeError as e:
        print_fn(f"bench_kernels: no GPU to measure on ({e})")
        return False
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print_fn(f"GPU: {name}, CuPy {cp.__version__}")
    bench_matmul(cp, print_fn)
    bench_attention(cp, print_fn)
    bench_matmul_tiles(cp, print_fn)
    print_fn("Kernel resources:")
    _kernel_resources(print_fn)
    return True


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
