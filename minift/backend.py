"""Which array module an array belongs to (NumPy on the CPU, CuPy on an NVIDIA GPU),
and the one place where a device-specific implementation is chosen.

Every op asks `array_module(x)` for `xp` and then writes `xp.exp(x)`, so one piece of
code serves both devices. CuPy is imported lazily, the first time something asks for
the GPU: `import minift` never imports it, and NumPy-only users never pay for it.

A few operations have a faster way on each device than the generic `xp` code: matrix
products (BLAS tricks on the CPU, minift's own SGEMM kernel on the GPU), dropout's
random numbers (drawn on the device that uses them), scatter-add and fused attention.
The functions at the bottom of this file choose that way, so that the ops themselves
are only math. The CUDA kernels live in `minift.cuda`, the appendix read last: it
registers them here when it is imported (`register_gpu`), and this module never
imports it.
"""
import ctypes
import ctypes.util
from functools import partial

import numpy as np

from .errors import MiniftError
from .parallel import free_threads, run_tasks, split_rows

_cupy = None          # the cupy module once imported
_cupy_error = None    # why it could not be imported / used, as one sentence


def _is_cupy_array(x):
    # Checked by the type's module name so that CuPy is never imported just to ask.
    return type(x).__module__.split(".")[0] == "cupy"


def array_module(*arrays):
    """numpy, or cupy when any of `arrays` is a CuPy array."""
    for a in arrays:
        if _is_cupy_array(a):
            return get_cupy()
    return np


class CudaUnavailableError(MiniftError, RuntimeError):
    """The GPU was asked for, but CuPy or a device is missing (one sentence saying which)."""


def get_cupy():
    """Import CuPy and check that a device exists; raise one clear CudaUnavailableError if not."""
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    if _cupy_error is None:
        try:
            import cupy
        except ImportError:
            _cupy_error = ("CUDA was requested but CuPy is not installed "
                           "(pip install 'minift[gpu]' or a cupy-cudaXXx wheel).")
        else:
            try:
                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as e:  # driver missing, no device, ...
                n, why = 0, f" ({type(e).__name__}: {e})"
            else:
                why = ""
            if n == 0:
                _cupy_error = f"CUDA was requested but no NVIDIA GPU is visible to CuPy{why}."
            else:
                _cupy = cupy
                return cupy
    raise CudaUnavailableError(_cupy_error)


def cuda_is_available():
    """True when CuPy imports and sees at least one GPU. Never raises."""
    try:
        get_cupy()
        return True
    except RuntimeError:
        return False


def device_of(x):
    """'cuda' for a CuPy array, 'cpu' otherwise."""
    return "cuda" if _is_cupy_array(x) else "cpu"


def check_device(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
    return device


def to_device(x, device):
    """Move array `x` to 'cpu' (NumPy) or 'cuda' (CuPy); no copy when already there."""
    check_device(device)
    if device == "cuda":
        return x if _is_cupy_array(x) else get_cupy().asarray(x)
    return get_cupy().asnumpy(x) if _is_cupy_array(x) else x


def to_numpy(x):
    """A NumPy array on the host (copies from the GPU when needed)."""
    return to_device(x, "cpu")


# ----------------------------------------------------------------------------- device choices

# What minift.cuda registered when it was imported: "matmul" -> f(a, b) for float32
# CuPy arrays; "causal_attention" and "padded_attention" -> a Function class with
# `accepts(q, k, v)`. Never consulted for NumPy arrays.
_gpu_implementations = {}


def register_gpu(name, implementation):
    """Called by minift.cuda at import: use `implementation` for `name` on the GPU."""
    _gpu_implementations[name] = implementation


SPLIT_WORK = 1 << 20     # multiply-adds below which a product is not worth a thread


def matmul(a, b, bias=None):
    """a @ b (+ bias, a row of b.shape[-1] added to every row) on raw arrays with
    ndim >= 2 (leading axes broadcast), by the fastest path the arrays' device offers:
    on the CPU, NumPy's BLAS with the tricks below, split over minift's threads
    (minift.parallel); on the GPU minift's SGEMM kernel for float32 (when minift.cuda
    registered it), else CuPy's. The bias is added by the block that computed the rows."""
    if b.ndim == 2 and a.ndim > 2:
        # (..., K) @ (K, N) is one GEMM over all rows: much faster than NumPy's loop
        # over the batch, and the form the GPU kernel takes.
        return matmul(a.reshape(-1, a.shape[-1]), b, bias).reshape(*a.shape[:-1], b.shape[-1])
    large = a.ndim == 2 and b.ndim == 2 and a.shape[0] * a.shape[1] * b.shape[1] >= SPLIT_WORK
    if type(a) is np.ndarray and large:
        out, tasks = _product(a, b, bias)
        run_tasks(tasks)
        return out
    if type(a) is np.ndarray:
        out = _stacked_matmul(a, b) if a.ndim > 2 or b.ndim > 2 else np.matmul(a, b)
    else:
        gpu_matmul = _gpu_implementations.get("matmul")
        use_kernel = gpu_matmul is not None and a.dtype == np.float32 and b.dtype == np.float32
        out = gpu_matmul(a, b) if use_kernel else a @ b
    if bias is not None:
        out += bias
    return out


def matmuls(*pairs, also=()):
    """[a @ b for (a, b) in pairs] for independent 2-D products (a layer's two gradient
    products, say). On the CPU the blocks of all of them go to minift's threads in one
    split, with the tasks `also` (see parallel.run_tasks): one wake-up of the helpers
    instead of one per product."""
    if any(type(a) is not np.ndarray or a.ndim != 2 or b.ndim != 2 for a, b in pairs):
        results = [matmul(a, b) for a, b in pairs]
        for task in also:
            task()
        return results
    outs, tasks = [], []
    for a, b in pairs:
        out, blocks = _product(a, b)
        outs.append(out)
        tasks += blocks
    run_tasks(tasks + list(also))
    return outs


def _product(a, b, bias=None):
    """The (M, N) output of a 2-D a @ b (+ bias) on the CPU, and the tasks that fill it:
    one per free thread (parallel.free_threads) for a large product, one for a small one.
    A product is cut along the longer side of its result: rows of a, or columns of b
    (each block packs only its part of the larger operand, as BLAS must: for a weight's
    gradient x^T g, g is the large one). Each block is one BLAS call; transposed
    operands are passed as they are. BLAS may group a whole product's sums differently
    from a block's, so how a product is cut can change the last bits of its result."""
    (M, K), N = a.shape, b.shape[1]
    out = np.empty((M, N), dtype=np.result_type(a, b))
    side = max(M, N)
    k = max(min(free_threads(), side // 16), 1) if M * K * N >= SPLIT_WORK else 1
    parts = [slice(side * i // k, side * (i + 1) // k) for i in range(k)]
    return out, [partial(_matmul_block, a, b, bias, out, part, M >= N) for part in parts]


def _matmul_block(a, b, bias, out, part, by_rows):
    if by_rows:
        np.matmul(a[part], b, out=out[part])
        if bias is not None:
            out[part] += bias
    else:
        np.matmul(a, b[:, part], out=out[:, part])
        if bias is not None:
            out[:, part] += bias[part]


def _stacked_matmul(a, b):
    """a @ b for NumPy stacks of matrices, matrix by matrix, the stack split over
    minift's threads.

    NumPy hands a stack to BLAS only when it is contiguous; a strided view (such as
    k.swapaxes(-1, -2) of the (B, H, T, D) heads) falls to a generic loop about 100x
    slower. BLAS itself takes a transposed 2-D matrix at full speed, so each matrix of
    the stack is one BLAS call (no copy of the operands).
    """
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    out = np.empty(batch + (a.shape[-2], b.shape[-1]), dtype=np.result_type(a, b))
    index = list(np.ndindex(*batch))

    def block(rows):
        for i in index[rows]:
            np.matmul(a[i], b[i], out=out[i])
    split_rows(block, len(index))
    return out


def uniform(rng, shape, like):
    """float32 numbers uniform in [0, 1), of `shape`, on the device of array `like`.

    `rng` is a NumPy Generator. On the CPU it draws the numbers; on the GPU it draws
    only a seed, and the numbers are made on the device (no host-to-device copy), so
    either way the same `rng` state gives the same numbers on a given device.
    """
    if not _is_cupy_array(like):
        return rng.random(shape, dtype=np.float32)
    cp = get_cupy()
    # Philox is counter-based: a fresh generator costs nothing to seed.
    device_rng = cp.random.RandomState(int(rng.integers(2**63)),
                                       method=cp.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
    return device_rng.random_sample(shape, dtype=np.float32)


_memory_kept = False


def keep_freed_memory():
    """Ask the C allocator (glibc's malloc, on Linux) to keep the memory the process
    frees instead of handing it back to the operating system. A training step frees and
    reallocates the same large arrays every step, and memory fresh from the system costs
    a page fault per 4 KB on first touch: for GPT-2's shape that was a quarter of the
    step. The Trainer calls this once; memory then stays at the run's high-water mark,
    as with the caching allocators of other frameworks. A no-op elsewhere."""
    global _memory_kept
    if _memory_kept:
        return
    _memory_kept = True
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError, TypeError):
        return                                   # not glibc: leave the allocator alone
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4        # from <malloc.h>
    mallopt(M_MMAP_MAX, 0)                       # large blocks from the heap, not fresh mmaps
    mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1)       # and never shrink the heap


def scatter_add(out, index, values):
    """out[index] += values, where repeated indices add up (unlike `out[index] += v`,
    which keeps only one of them): the backward of gathering rows or elements."""
    if _is_cupy_array(out):
        import cupyx
        cupyx.scatter_add(out, index, values)
    elif isinstance(index, np.ndarray) and index.ndim == 1 and values.ndim == out.ndim and len(index) > 1:
        # Whole rows picked by one index array (an embedding's backward). np.add.at adds
        # element by element in a slow generic loop; instead, number each row's repeats
        # (0 for the first time an index occurs, 1 for the second, ...) and add one
        # repeat rank at a time: within a rank no index repeats, so plain fancy-index
        # `+=` is right, and the repeats still add in their original order (bit-identical
        # to np.add.at).  reference: for i, row in enumerate(index): out[row] += values[i]
        order = np.argsort(index, kind="stable")
        rows = index[order]
        first = np.concatenate(([True], rows[1:] != rows[:-1]))
        rank = np.arange(len(rows)) - np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
        by_rank = order[np.argsort(rank, kind="stable")]
        bounds = np.concatenate(([0], np.cumsum(np.bincount(rank))))
        for start, stop in zip(bounds[:-1], bounds[1:]):
            picked = by_rank[start:stop]
            out[index[picked]] += values[picked]
    else:
        np.add.at(out, index, values)


def fused_causal_attention(q, k, v):
    """The Function class that computes causal attention on arrays q, k, v in fused
    GPU kernels, when minift.cuda registered one and it accepts these inputs; None
    otherwise (on the CPU always), and the caller uses the reference implementation."""
    if not _is_cupy_array(q):
        return None
    fused = _gpu_implementations.get("causal_attention")
    return fused if fused is not None and fused.accepts(q, k, v) else None


def fused_padded_attention(q, k, v):
    """The same for bidirectional attention with a key-padding mask (an encoder's)."""
    if not _is_cupy_array(q):
        return None
    fused = _gpu_implementations.get("padded_attention")
    return fused if fused is not None and fused.accepts(q, k, v) else None
