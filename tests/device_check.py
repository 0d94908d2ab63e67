"""What kernels/check_on_device.sh asks of a lent GPU (or of the CPU emulator of
tests/cuda_emulator) besides the test files and the benchmarks:

    python tests/device_check.py environment          # versions, and the GPU as minift sees it
    python tests/device_check.py launches [--small]   # one small launch of every kernel
    python tests/device_check.py repeat [--small]     # forward, backward, matmul 3 times: same bits?

`launches` is what compute-sanitizer watches (racecheck, synccheck, memcheck,
initcheck): every kernel once, at sizes that are not tile multiples, each result
against the float64 references of tests/kernel_references.py, with CuPy's memory pool
off so that each array is its own allocation (memcheck sees a read past an array only
at the allocation's end). `repeat` runs the attention forward and backward (causal,
and padded) and the matmul three times on the same inputs and compares the results
bit for bit: every output element is written by one thread in a fixed order (no
atomics), so any difference is a bug (a race, or a read of memory no thread wrote).
--small: sizes for the emulator. Each prints what it did and exits 1 on a mismatch.
"""
import argparse
import platform
import sys

import numpy as np

from minift.backend import get_cupy
from minift.cuda import wrappers
from minift.cuda.wrappers import MATMUL_LARGE, MATMUL_SMALL, attention_backward, attention_forward, matmul

from kernel_references import (assert_close, attention_reference, attention_reference_backward,
                               matmul_reference, matmul_tol, qkv, randn)


def environment():
    """Print the versions of what the kernels run on (NumPy, CuPy, CUDA runtime, driver,
    NVRTC) and each GPU's figures, then what minift reads and chooses for the current
    one. An item that cannot be read (an old CuPy, the emulator) says why."""
    def show(what, read):
        try:
            print(f"{what}: {read()}")
        except Exception as e:
            print(f"{what}: n/a ({type(e).__name__}: {e})")

    print(f"Python {platform.python_version()}, NumPy {np.__version__}")
    cp = get_cupy()
    runtime = cp.cuda.runtime
    show("CuPy", lambda: f"{cp.__version__} ({cp.__file__})")
    show("CUDA runtime (CuPy's build)", lambda: runtime.runtimeGetVersion())
    show("CUDA driver", lambda: runtime.driverGetVersion())
    show("NVRTC", lambda: cp.cuda.nvrtc.getVersion())
    for i in range(runtime.getDeviceCount()):
        def figures(i=i):
            p = runtime.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
            return (f"{name}, compute capability {p['major']}.{p['minor']}, "
                    f"{p['multiProcessorCount']} multiprocessors, {p['totalGlobalMem'] / 2**30:.1f} GiB, "
                    f"{p['sharedMemPerBlockOptin']} B of shared memory per block after opting in")
        show(f"GPU {i}", figures)
    smem = wrappers.max_shared_memory()
    print(f"minift reads, GPU {runtime.getDevice()}: {wrappers.device_attribute('MultiProcessorCount')} "
          f"multiprocessors, {smem} B of shared memory per block")
    for D in (64, 128):
        forward, backward = (wrappers.attention_config(D, smem, backward)["BR"] for backward in (False, True))
        print(f"  attention tiles for D = {D}: forward {forward}, backward {backward}")
    return True


def _agrees(got, ref, what, **tolerance):
    """Whether got is within tolerance of ref; prints the verdict."""
    try:
        assert_close(got, ref, what=what, **tolerance)
    except AssertionError as e:
        print(f"MISMATCH {e}")
        return False
    print(f"ok  {what}")
    return True


def launches(small=False):
    """Each kernel once (sgemm_nn/nt/tn/tt in both tile configurations, attention_forward,
    and the backward's preprocess, dkdv and dq, causal and padded), checked against the
    references; True when all agree."""
    cp = get_cupy()
    cp.cuda.set_allocator(None)   # no memory pool: one allocation per array
    rng = np.random.default_rng(0)
    ok = True
    M, K, N = (33, 17, 65) if small else (129, 67, 257)
    for tiles in (MATMUL_LARGE, MATMUL_SMALL):
        for ta in (False, True):
            for tb in (False, True):
                a, b = randn(rng, *((K, M) if ta else (M, K))), randn(rng, *((N, K) if tb else (K, N)))
                got = matmul(cp.asarray(a), cp.asarray(b), transpose_a=ta, transpose_b=tb, tiles=tiles)
                ok &= _agrees(got, matmul_reference(a, b, ta, tb), **matmul_tol(K),
                              what=f"sgemm_{'t' if ta else 'n'}{'t' if tb else 'n'} BM={tiles['BM']} "
                                   f"({M}x{K} @ {K}x{N})")
    B, H, T, D = 2, 2, 33, 64
    q, k, v = qkv(rng, B, H, T, D)
    do, lengths = randn(rng, B, H, T, D), np.array([T, 5])
    for causal in (True, False):
        args = [cp.asarray(x) for x in (q, k, v)]
        o, lse = attention_forward(*args, lengths, causal=causal)
        grads = attention_backward(*args, o, lse, cp.asarray(do), lengths, causal=causal)
        o_ref, lse_ref, _ = attention_reference(q, k, v, lengths, causal)
        refs = (o_ref, lse_ref, *attention_reference_backward(q, k, v, do, lengths, causal))
        for name, got, ref in zip(("o", "lse", "dq", "dk", "dv"), (o, lse, *grads), refs):
            tolerance = dict(atol=1e-4, rtol=1e-3) if name in ("o", "lse") else dict(atol=2e-4, rtol=2e-3)
            ok &= _agrees(got, ref, **tolerance, what=f"attention {'causal' if causal else 'padded'} {name} "
                                                      f"(B={B} H={H} T={T} D={D}, key lengths {lengths.tolist()})")
    return ok


def repeat(small=False, times=3):
    """Forward, backward and matmul `times` times on the same inputs; True when every
    run gives the first run's bits."""
    cp = get_cupy()
    rng = np.random.default_rng(1)
    B, H, T, D = (2, 2, 65, 64) if small else (4, 8, 513, 64)
    q, k, v, do = (cp.asarray(randn(rng, B, H, T, D)) for _ in range(4))
    lengths = np.array([T, T // 3] + [T] * (B - 2))
    M, K, N = (65, 33, 129) if small else (1025, 513, 2049)
    a, b = cp.asarray(randn(rng, M, K)), cp.asarray(randn(rng, K, N))

    def attention(causal):
        o, lse = attention_forward(q, k, v, lengths, causal=causal)
        return (o, lse, *attention_backward(q, k, v, o, lse, do, lengths, causal=causal))

    cases = {"attention causal (o, lse, dq, dk, dv)": lambda: attention(True),
             "attention padded (o, lse, dq, dk, dv)": lambda: attention(False),
             "matmul, A @ B and A @ A.T": lambda: (matmul(a, b), matmul(a, a, transpose_b=True))}
    ok = True
    for name, run in cases.items():
        first = [cp.asnumpy(x) for x in run()]
        differ = sum(int((cp.asnumpy(x).view(np.uint32) != f.view(np.uint32)).sum())
                     for _ in range(times - 1) for x, f in zip(run(), first))
        ok &= differ == 0
        print(f"{name}: {times} runs, " + ("the same bits" if differ == 0 else
                                           f"MISMATCH: {differ} elements differ from the first run"))
    print(f"(attention B={B} H={H} T={T} D={D}, key lengths {lengths.tolist()}; matmul {M}x{K} @ {K}x{N})")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tests/device_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["environment", "launches", "repeat"])
    parser.add_argument("--small", action="store_true", help="small sizes (for the CPU emulator)")
    args = parser.parse_args(argv)
    if args.what == "environment":
        return 0 if environment() else 1
    ok = (launches if args.what == "launches" else repeat)(small=args.small)
    print("all agree" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
