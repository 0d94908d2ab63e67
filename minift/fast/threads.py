"""Both cores on the CPU: large work split into row blocks, run on a few threads.

NumPy runs an elementwise op (exp, +, a row sum) on one core, and BLAS, left to itself,
runs a matrix product on its own threads, which then spin waiting for the next product
while NumPy's single-core work runs beside them. minift.fast does the splitting itself
instead: BLAS runs single-threaded, and every large matrix product and every large
row-wise op (GELU, layer norm, cross-entropy, the softmax inside attention) is cut into
as many row blocks as there are threads. NumPy releases Python's lock inside its loops
and BLAS calls, so the blocks really run at the same time.

    split_rows(lambda rows: np.matmul(a[rows], b, out=out[rows]), len(a), min_rows=32)

Each block writes its own rows of a preallocated output, so the result does not depend
on which thread ran which block. A split is not free: it wakes a helper and, when the
calling thread finishes its share first, the caller waits to be woken back, tens of µs
each way on a virtual machine (`benchmarks/threads.py`; the cost ledger's `threads:`
line). That is why small work is not split (ROW_BLOCK_ELEMENTS, products.SPLIT_WORK).

Pretraining a small GPT uses the same threads the other way round: each thread takes
part of the batch through the whole step, and nothing splits inside a part: each op is
one block there (free_threads; one hand-off a step: training.forward_backward).

The thread count is MINIFT_NUM_THREADS, else OPENBLAS_NUM_THREADS (so
`OPENBLAS_NUM_THREADS=1` still means one thread for all of minift), else the cores this
process may use; it is decided when minift.fast is turned on, which is also when BLAS is
made single-threaded (for the whole process: that is why it happens only then). With one
thread, nothing here runs and BLAS keeps whatever threads it was given.
"""
import ctypes
import os
import threading
import time

import numpy as np

ROW_BLOCK_ELEMENTS = 1 << 15      # fewer numbers than this in a block is not worth a thread
_threads = None                   # decided on first use
_workers = []                     # threads() - 1 helper threads (_Worker)
_dispatch = threading.Lock()      # held while the helpers run blocks for one caller
_inside = threading.local()       # set while a thread runs a block: blocks never split again
_waits = None                     # the [splits, seconds waited] counter of count_waits, or None


def threads():
    """How many threads minift splits large CPU work over (decided once)."""
    if _threads is None:
        wanted = os.environ.get("MINIFT_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS")
        n = int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else len(os.sched_getaffinity(0))
        if n > 1 and not _single_threaded_blas():
            n = 1                                  # BLAS keeps its own threads; splitting would fight them
        set_threads(n)
    return _threads


def set_threads(n):
    """Split work over n threads from now on (tests use it; MINIFT_NUM_THREADS is the
    way to choose). Helpers that are no longer needed stay parked."""
    global _threads
    while len(_workers) < n - 1:
        _workers.append(_Worker())
    _threads = n


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
    least `min_rows` long, one per thread on up to threads() threads; return when all
    are done. fn must write its results in place (into the rows it was given)."""
    run_tasks(blocks(fn, n, min_rows))


def free_threads():
    """How many threads a split made here can use: threads(), but 1 inside a task (a
    part of a data-parallel step, say), where run_tasks runs the blocks one after
    another on the calling thread anyway."""
    return 1 if getattr(_inside, "busy", False) else threads()


def blocks(fn, n, min_rows=1):
    """The tasks split_rows runs: fn(rows) for up to free_threads() consecutive blocks
    of range(n), each at least `min_rows` long (one block when n is too small to split).

    One block per thread, not more: every NumPy call costs Python's lock, which the
    threads take in turn, and a thread that waits for it sleeps (slow to wake on a
    virtual machine). So a part of a data-parallel step, which has its thread to itself,
    runs each row-wise op as one block: half the NumPy calls of two blocks in turn, half
    the sleeps, and the same numbers (each row is computed on its own)."""
    k = max(min(free_threads(), n // max(min_rows, 1)), 1)
    bounds = [n * i // k for i in range(k + 1)]
    return [_Block(fn, slice(bounds[i], bounds[i + 1])) for i in range(k)]


def run_tasks(tasks):
    """Run the callables `tasks` (each writes its own results in place) over up to
    threads() threads, the calling one included; return when all are done. A task
    that raises stops nothing else: the first exception is raised at the end."""
    helpers = _workers[:max(min(threads(), len(tasks)) - 1, 0)]
    if not helpers or getattr(_inside, "busy", False) or not _dispatch.acquire(blocking=False):
        for task in tasks:                    # (a task of a task, or another user thread
            task()                            # holds the helpers: run them here, in order)
        return
    try:
        queue = iter(tasks)                   # shared: next() on it is atomic under the GIL
        for worker in helpers:
            worker.start(queue)
        error = _drain(queue)
        waits, since = _waits, time.perf_counter()
        for worker in helpers:                # wait for every task, even after an error
            error = worker.wait() or error
        if waits is not None:
            waits[0] += 1
            waits[1] += time.perf_counter() - since
        if error is not None:
            raise error
    finally:
        _dispatch.release()


def count_waits(counter):
    """Count, into `counter` (a list [splits, seconds]), each split and the seconds the
    calling thread spends waiting, after its own share, for the helpers to finish
    theirs: what a split costs beyond its work (waking a helper, which then starts
    late, and blocks that end unevenly). None stops counting. Returns the counter it
    replaces. The cost ledger prints what it counted (bench.profile)."""
    global _waits
    previous, _waits = _waits, counter
    return previous


class _Block:
    """fn(rows) as a task without arguments."""
    __slots__ = ("fn", "rows")

    def __init__(self, fn, rows):
        self.fn, self.rows = fn, rows

    def __call__(self):
        self.fn(self.rows)


def _drain(queue):
    """Run tasks from the shared iterator until it is empty; return the first exception
    a task raised (the remaining tasks still run), or None."""
    error = None
    _inside.busy = True
    try:
        for task in queue:
            try:
                task()
            except BaseException as e:
                error = error or e
    finally:
        _inside.busy = False
    return error


class _Worker:
    """A helper thread that drains a task queue when told to. It is told through two
    plain locks, the cheapest wake-up Python has (a thread pool's queue and futures cost
    more per call: much of a millisecond-long task's gain on a virtual machine, where
    waking a sleeping core is slow)."""

    def __init__(self):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()                     # released by start(): "drain this queue"
        self.done.acquire()                   # released by the helper: "the queue is empty"
        self.queue = self.error = None
        threading.Thread(target=self._loop, name="minift", daemon=True).start()

    def _loop(self):
        while True:
            self.go.acquire()
            self.error = _drain(self.queue)
            self.done.release()

    def start(self, queue):
        self.queue, self.error = queue, None
        self.go.release()

    def wait(self):
        """Block until the helper has emptied its queue; return a task's exception, or None."""
        self.done.acquire()
        self.queue = None
        return self.error


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


def row_dots(a, b):
    """sum(a * b, axis=-1) without the array a * b: np.vecdot (NumPy 2) or einsum."""
    if hasattr(np, "vecdot"):
        return np.vecdot(a, b)
    return np.einsum("...i,...i->...", a, b)


def rowwise(fn, inputs, outputs, also=()):
    """fn(*(a[r] for a in inputs), *(o[r] for o in outputs)) over blocks r of rows, split
    over the threads. Every array is (N, ...) with the same N; each block writes only its
    own rows of the outputs, so the numbers do not depend on the split. The fused ops of
    minift.functional run their row-wise math through this. `also`: more tasks to run
    in the same split (a weight gradient's column sums, say: see `blocks`)."""
    n = len(outputs[0])
    width = max(outputs[0].size // max(n, 1), 1)
    if type(outputs[0]) is not np.ndarray or free_threads() == 1 or n * width < 2 * ROW_BLOCK_ELEMENTS:
        fn(*inputs, *outputs)                 # one block (GPU kernels are parallel already)
        for task in also:
            task()
        return

    def on_rows(r):
        fn(*(a[r] for a in inputs), *(o[r] for o in outputs))
    run_tasks(blocks(on_rows, n, max(1, ROW_BLOCK_ELEMENTS // width)) + list(also))
