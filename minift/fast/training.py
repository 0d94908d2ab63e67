"""The training step as minift.fast registers it: data parallelism over the CPU's
threads, and AdamW in place.

A data-parallel step cuts the batch's rows into one part per thread; each part runs its
whole forward and backward on its own thread, with its own gradients, as several GPUs
run one step. One hand-off to the helper threads a step, where splitting each large op
costs one hand-off per op (tens of µs each way on a virtual machine): inside a part,
nothing splits again (threads.free_threads).
"""
import ctypes
import ctypes.util
import threading
from functools import partial

import numpy as np

from ..backend import array_module
from ..tensor import add_grads
from ..trainer import forward_backward as whole_batch_step, splitter
from .threads import run_tasks, threads

DATA_PARALLEL_MAX_GRADIENTS = 16_000_000   # numbers: a second set of float32 gradients up to 64 MB
DATA_PARALLEL_MAX_T = 256                  # tokens a row: longer rows split each op instead


def forward_backward(model, loss_fn, batch, scale=1.0, data_parallel=False):
    """trainer.forward_backward as minift.fast runs it. Its first call asks the C
    allocator to keep freed memory (keep_freed_memory). With data_parallel (the
    Trainer's), the batch is cut into `data_parallel_parts` parts by the split it
    names (trainer.splitter), which run at once, one per thread.

    Part i, of weight w_i out of a total W (for a mean over scored targets: n_i of the
    N targets), is weighted w_i / W: the parts' losses and gradients then add up to the
    whole batch's. A part of weight 0 (nothing scored) is skipped. Each part's backward
    collects its gradients apart (`Tensor.backward(grads=...)`) and they are added to
    `.grad` part after part, so the sum does not depend on which thread finished first.
    With one thread the parts run one after another.

    reference: loss = loss_fn(model, batch) * scale;  loss.backward()
    """
    keep_freed_memory()
    parts = data_parallel_parts(model, batch) if data_parallel else 1
    if parts <= 1:
        return whole_batch_step(model, loss_fn, batch, scale)
    pieces = splitter(data_parallel)(batch, parts)
    total = sum(weight for _, weight in pieces)
    if not total:                               # nothing to weigh by: the loss says what is wrong
        return whole_batch_step(model, loss_fn, batch, scale)
    losses, grads = [None] * parts, [{} for _ in range(parts)]

    def part(i):
        piece, weight = pieces[i]
        loss = loss_fn(model, piece) * (scale * weight / total)
        loss.backward(keep_graph=False, grads=grads[i])
        losses[i] = loss.data.astype(np.float64)
    run_tasks([partial(part, i) for i in range(parts) if pieces[i][1]])
    add_grads(*grads)
    found = [loss for loss in losses if loss is not None]
    result = found[0]
    for loss in found[1:]:
        result = result + loss
    return result


def data_parallel_parts(model, batch):
    """How many parts a data-parallel step cuts `batch` into: one per thread for NumPy
    arrays, unless the model has more than DATA_PARALLEL_MAX_GRADIENTS trainable
    numbers or the rows are longer than DATA_PARALLEL_MAX_T tokens; else 1.

    Each part holds its own set of gradients until they are added up, so each part
    beyond the first costs one more copy of the trainable weights: nothing for the
    demos' models, half a gigabyte for GPT-2 124M. And data parallelism pays for short
    rows, where a step is many small ops that each split would cost a hand-off
    between threads; for long rows attention's large per-row work dominates, splits
    over the threads well op by op, and slows down more when two parts run at once
    (4 layers, n_embd 128, 2,048 tokens a step, 2 threads: data-parallel / op splits
    0.88 at T = 128, 0.99 at 256, 1.02 at 512, 1.08 at 1,024)."""
    rows = batch[0]
    if type(rows) is not np.ndarray or rows.ndim < 2 or rows.shape[1] > DATA_PARALLEL_MAX_T:
        return 1
    trainable = sum(p.data.size for p in model.parameters() if p.requires_grad)
    return min(threads(), len(rows)) if trainable <= DATA_PARALLEL_MAX_GRADIENTS else 1


SCRATCH_ELEMENTS = 1 << 20      # AdamW updates large parameters in slices of about this many numbers
_scratch_buffers = threading.local()   # per thread: dtype -> one flat scratch array, grown to the largest slice


def adamw_step(p, grad, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """optim.adamw_step in place: p, m and v are updated and returned themselves.
    Every pass writes into m, v, p or one scratch array a thread, shared by all
    parameters, so a step allocates nothing (for a large model, fresh temporaries cost
    more than the arithmetic), and large parameters go through in slices of rows, so
    the scratch array stays small. The slices of a parameter of several of them go to
    the threads (a GPT-2 matrix: 2 to 38 slices), each slice updated on its own.

    reference: m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
               p -= lr wd p + lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)"""
    n = len(p) if p.ndim else 1
    rows = max(1, SCRATCH_ELEMENTS // max(1, p.size // max(n, 1)))
    parts = [slice(start, start + rows) for start in range(0, n, rows)] if p.ndim else [...]
    hyper = (t, lr, *betas, eps, weight_decay)
    if len(parts) == 1 or type(p) is not np.ndarray:
        for part in parts:
            _adam_slice(p[part], grad[part], m[part], v[part], *hyper)
    else:
        run_tasks([partial(_adam_slice, p[part], grad[part], m[part], v[part], *hyper) for part in parts])
    return p, m, v


def _adam_slice(p, grad, m, v, t, lr, b1, b2, eps, weight_decay):
    """The AdamW update of one slice of a parameter, in place."""
    xp, dtype = array_module(p), p.dtype.type
    if weight_decay:
        p *= dtype(1 - lr * weight_decay)
    tmp = _scratch(p)
    m *= b1
    m += xp.multiply(grad, dtype(1 - b1), out=tmp)
    xp.multiply(grad, grad, out=tmp)
    tmp *= dtype(1 - b2)
    v *= b2
    v += tmp
    xp.multiply(v, dtype(1 / (1 - b2 ** t)), out=tmp)
    xp.sqrt(tmp, out=tmp)
    tmp += eps                                          # tmp is the denominator
    xp.divide(m, tmp, out=tmp)
    tmp *= dtype(lr / (1 - b1 ** t))
    p -= tmp


def _scratch(like):
    """A scratch array shaped like `like`: a view of one flat buffer per dtype and
    thread, grown to the largest slice and reused by every update."""
    xp, buffers = array_module(like), _scratch_buffers.__dict__
    key = (xp.__name__, like.dtype.str)
    flat = buffers.get(key)
    if flat is None or flat.size < like.size:
        flat = buffers[key] = xp.empty(like.size, dtype=like.dtype)
    return flat[:like.size].reshape(like.shape)


_memory_kept = False


def keep_freed_memory():
    """Ask the C allocator (glibc's malloc, on Linux) to keep the memory the process
    frees instead of handing it back to the operating system. A training step frees and
    reallocates the same large arrays every step, and memory fresh from the system costs
    a page fault per 4 KB on first touch: for GPT-2's shape that was a quarter of the
    step. Memory then stays at the run's high-water mark, as with the caching allocators
    of other frameworks. Asked when training starts, not when minift.fast is turned on:
    set before the corpus and the tokenizer were built, it made the whole quickstart
    about 10% slower (124-128 s against 114-116 s, two alternating pairs). A no-op
    elsewhere, and done once."""
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
