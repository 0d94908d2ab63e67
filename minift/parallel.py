"""Both cores on the CPU: large work split into row blocks, run on a few threads.

NumPy runs an elementwise op (exp, +, a row sum) on one core, and BLAS, left to itself,
runs a matrix product on its own threads, which then spin waiting for the next product
while NumPy's single-core work runs beside them. minift does the splitting itself
instead: BLAS runs single-threaded, and every large matrix product and every large
row-wise op (GELU, layer norm, cross-entropy, the softmax inside attention) is cut into
as many row blocks as there are threads. NumPy releases Python's lock inside its loops
and BLAS calls, so the blocks really run at the same time.

    split_rows(lambda rows: np.matmul(a[rows], b, out=out[rows]), len(a), min_rows=32)

Each block writes its own rows of a preallocated output, so the result does not depend
on which thread ran which block. The thread count is MINIFT_NUM_THREADS, else
OPENBLAS_NUM_THREADS (so `OPENBLAS_NUM_THREADS=1` still means one thread for all of
minift), else the cores this process may use. With one thread, nothing here runs
and BLAS keeps whatever threads it was given.
"""
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROW_BLOCK_ELEMENTS = 1 << 15      # fewer numbers than this in a block is not worth a thread
_threads = None                   # decided on first use
_pool = None
_inside = threading.local()       # set while a thread runs a block: blocks never split again


def threads():
    """How many threads minift splits large CPU work over (decided once)."""
    global _threads, _pool
    if _threads is None:
        wanted = os.environ.get("MINIFT_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS")
        n = int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else len(os.sched_getaffinity(0))
        if n > 1 and not _single_threaded_blas():
            n = 1                                  # BLAS keeps its own threads; splitting would fight them
        if n > 1:
            _pool = ThreadPoolExecutor(n - 1, thread_name_prefix="minift")
        _threads = n
    return _threads


def _single_threaded_blas():
    """Make the OpenBLAS that NumPy loaded run single-threaded; False where it cannot be
    found (another BLAS, another platform): minift then leaves threading to BLAS."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return False
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                getattr(lib, name)(1)
                return True
    return False


def split_rows(fn, n, min_rows=1):
    """Call fn(rows) for consecutive slices `rows` that together cover range(n), each at
    least `min_rows` long, on up to threads() threads at once; return when all are done.
    fn must write its results in place (into the rows it was given)."""
    k = min(threads(), n // max(min_rows, 1))
    if k <= 1 or getattr(_inside, "busy", False):
        fn(slice(0, n))
        return
    bounds = [n * i // k for i in range(k + 1)]
    futures = [_pool.submit(_run_block, fn, slice(bounds[i], bounds[i + 1])) for i in range(1, k)]
    _run_block(fn, slice(bounds[0], bounds[1]))            # the calling thread takes the first block
    for f in futures:
        f.result()                                          # re-raises a block's exception


def _run_block(fn, rows):
    _inside.busy = True
    try:
        fn(rows)
    finally:
        _inside.busy = False


def split(fn, n, min_rows, like):
    """split_rows for NumPy work (`like` is a NumPy array); one call fn(slice(0, n)) for
    GPU arrays, whose kernels are parallel already."""
    if type(like) is np.ndarray:
        split_rows(fn, n, min_rows)
    else:
        fn(slice(0, n))


def rows(x):
    """x as an (N, last axis) matrix of rows (a view when x is contiguous)."""
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def rowwise(fn, inputs, outputs):
    """fn(*(a[r] for a in inputs), *(o[r] for o in outputs)) over blocks r of rows, split
    over the threads. Every array is (N, ...) with the same N; each block writes only its
    own rows of the outputs, so the numbers do not depend on the split. The fused ops of
    minift.functional run their row-wise math through this."""
    n = len(outputs[0])
    width = max(outputs[0].size // max(n, 1), 1)
    split(lambda r: fn(*(a[r] for a in inputs), *(o[r] for o in outputs)), n,
          max(1, ROW_BLOCK_ELEMENTS // width), outputs[0])
