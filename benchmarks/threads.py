"""What a second thread buys on this machine, and what a split costs.

    python benchmarks/threads.py

1. Steady streams: the same work (a matrix product, eight passes over memory, a layer
   norm's forward) timed alone, then in two threads at once, then in two processes at
   once, each running it over and over (median per call). Two processes share no
   Python lock: where the threads match them, the lock costs nothing in steady state.
2. One split: minift.fast.threads runs two halves of a short pass over memory (the calling
   thread and one helper), against one thread doing all of it, right after another
   split and after 0.5 ms of Python work (long enough for the helper to fall asleep).

A reference tool, not part of minift: it explains the ledger's `threads:` line.
"""
import multiprocessing
import os
import statistics
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")    # before NumPy loads BLAS

import numpy as np  # noqa: E402


def arrays():
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((1024, 128)).astype(np.float32),
                w=rng.standard_normal((128, 384)).astype(np.float32),
                out=np.empty((1024, 384), np.float32),
                h=rng.standard_normal((1024, 512)).astype(np.float32),
                s=np.empty((1024, 512), np.float32))


def product(a):
    np.matmul(a["x"], a["w"], out=a["out"])


def passes(a):
    for _ in range(8):
        np.multiply(a["h"], a["h"], out=a["s"])


def layer_norm(a):
    x, xhat = a["x"], a["out"][:, :128]
    np.subtract(x, np.einsum("ij->i", x)[:, None] / 128, out=xhat)
    rstd = 1.0 / np.sqrt(np.einsum("ij,ij->i", xhat, xhat) / 128 + 1e-5)
    xhat *= rstd[:, None]


WORK = {"matmul 1024x128 @ 128x384": product, "8 passes over 1024x512": passes,
        "layer norm forward 1024x128": layer_norm}


def median_us(fn, a, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def in_process(name, n, results, start):
    a = arrays()
    start.wait()
    results.put(median_us(WORK[name], a, n))


def streams(n=1500):
    print("1. steady streams, median us per call (slowest of the two)")
    for name, fn in WORK.items():
        alone = median_us(fn, arrays(), n)
        start, found = threading.Barrier(2), []

        def thread_body():
            a = arrays()
            start.wait()
            found.append(median_us(fn, a, n))
        threads = [threading.Thread(target=thread_body) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results, start = multiprocessing.Queue(), multiprocessing.Barrier(2)
        procs = [multiprocessing.Process(target=in_process, args=(name, n, results, start)) for _ in range(2)]
        for p in procs:
            p.start()
        in_procs = [results.get() for _ in procs]
        for p in procs:
            p.join()
        print(f"  {name:<28} alone {alone:6.0f}   2 threads {max(found):6.0f}   2 processes {max(in_procs):6.0f}")


def python_work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def one_split(n=400):
    from minift.fast import threads as parallel
    parallel.threads()
    parallel.set_threads(2)
    x = np.random.default_rng(0).random(200_000, dtype=np.float32)
    out = np.empty_like(x)
    halves = [slice(0, 100_000), slice(100_000, 200_000)]
    tasks = [lambda r=r: np.multiply(x[r], x[r], out=out[r]) for r in halves]
    print("2. one split of a pass over 200,000 numbers, median us")
    for gap in (0.0, 0.0005):
        split, whole = [], []
        for _ in range(n):
            python_work(gap)
            t = time.perf_counter()
            parallel.run_tasks(tasks)
            split.append(time.perf_counter() - t)
            python_work(gap)
            t = time.perf_counter()
            np.multiply(x, x, out=out)
            whole.append(time.perf_counter() - t)
        print(f"  after {gap * 1e3:.1f} ms of Python: two halves on two threads "
              f"{statistics.median(split) * 1e6:6.1f}   the whole on one {statistics.median(whole) * 1e6:6.1f}")


if __name__ == "__main__":
    streams()
    one_split()
