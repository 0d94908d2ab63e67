"""The CPU-speed appendix, read after the reading path: faster implementations of the
same ops, registered with `minift.backend` when this is turned on.

    import minift.fast
    minift.fast.enable()          # from now on, in this process

The command line (`python -m minift ...`, `minift ...`) and the demos turn it on;
`--reference`, or MINIFT_FAST=0 in the environment, runs the plain reading path instead.
The Python API leaves it off until you call enable(): `import minift` changes nothing
in the process.

    threads      a few threads that run row blocks of large work at once (BLAS single-threaded)
    products     matrix products split over the threads; an embedding's backward by rank
    functional   cross-entropy, Linear, layer norm and GELU in row blocks, written in place
    attention    causal attention tile by tile, the heads over the threads; a block's
                 attention read straight from its q/k/v projection (QKVAttention)
    training     the data-parallel step (the batch's rows over the threads); AdamW in place

Each replaces a reference of the reading path and is tested equal to it
(tests/test_fast.py): bit for bit where the sums are taken in the same order, otherwise
to float32 rounding, and each passes gradcheck in float64. Turning it on also changes
two settings of the whole process, which is why it happens only on request: BLAS runs
single-threaded (the threads here take its place), and, from the first training step on,
the C allocator keeps the memory a step frees (`training.keep_freed_memory`).
disable() removes the registrations; those two settings stay.
"""
import os

from .. import backend
from . import attention, functional, products, threads, training
from .training import keep_freed_memory

IMPLEMENTATIONS = {          # backend's name -> what runs it on the CPU
    "matmul": products.matmul,
    "scatter_add": products.scatter_add,
    "linear": functional.Linear,
    "layer_norm": functional.LayerNorm,
    "gelu": functional.GELU,
    "cross_entropy": functional.CrossEntropy,
    "causal_attention": attention.CausalAttention,
    "padded_attention": attention.PaddedAttention,
    "self_attention": attention.self_attention,
    "adamw_step": training.adamw_step,
    "forward_backward": training.forward_backward,
}

_enabled = False


def enable():
    """Turn the fast path on for this process (again: nothing more happens)."""
    global _enabled
    threads.threads()                # decides the thread count; BLAS single-threaded if several
    for name, implementation in IMPLEMENTATIONS.items():
        backend.register("cpu", name, implementation)
    _enabled = True


def disable():
    """Back to the plain reading path (BLAS and allocator settings stay as they are)."""
    global _enabled
    for name in IMPLEMENTATIONS:
        backend.register("cpu", name, None)
    _enabled = False


def is_enabled():
    return _enabled


def enable_unless_reference(reference=False):
    """What the command line and the demos call: enable(), unless `reference` (their
    --reference flag) or MINIFT_FAST=0 asks for the plain path. Returns whether it is on."""
    if reference or os.environ.get("MINIFT_FAST", "").strip() == "0":
        disable()
    else:
        enable()
    return _enabled
