"""Matrix products split over the threads, and an embedding's backward without
np.add.at: what minift.fast registers for backend.matmul and backend.scatter_add.

Both give the reference's numbers: a product block by block (BLAS may group a whole
product's sums differently from a block's, so the last bits can differ), the scatter
bit for bit.
"""
from functools import partial

import numpy as np

from .threads import free_threads, run_tasks, split_rows

SPLIT_WORK = 1 << 20     # multiply-adds below which a product is not worth a thread


def matmul(a, b, bias=None):
    """a @ b (+ bias, a row of b.shape[-1] added to every row) for NumPy arrays with
    ndim >= 2: a large 2-D product split over the threads (`_product`), a stack of
    matrices matrix by matrix (`_stacked_matmul`). The bias is added by the block that
    computed the rows."""
    if b.ndim == 2 and a.ndim > 2:
        return matmul(a.reshape(-1, a.shape[-1]), b, bias).reshape(*a.shape[:-1], b.shape[-1])
    if a.ndim == 2 and b.ndim == 2 and a.shape[0] * a.shape[1] * b.shape[1] >= SPLIT_WORK \
            and free_threads() > 1:
        out, tasks = _product(a, b, bias)
        run_tasks(tasks)
        return out
    out = _stacked_matmul(a, b) if a.ndim > 2 or b.ndim > 2 else np.matmul(a, b)
    if bias is not None:
        out += bias
    return out


def matmuls(*pairs, also=()):
    """[a @ b for (a, b) in pairs] for independent 2-D NumPy products (a layer's two
    gradient products, say): the blocks of all of them go to the threads in one split,
    with the tasks `also` (see threads.run_tasks): one wake-up of the helpers instead of
    one per product."""
    if free_threads() == 1:                   # (a part of a data-parallel step: nothing to split)
        outs = [np.matmul(a, b) for a, b in pairs]
        for task in also:
            task()
        return outs
    outs, tasks = [], []
    for a, b in pairs:
        out, blocks = _product(a, b)
        outs.append(out)
        tasks += blocks
    run_tasks(tasks + list(also))
    return outs


def _product(a, b, bias=None):
    """The (M, N) output of a 2-D a @ b (+ bias), and the tasks that fill it: one per
    free thread (threads.free_threads) for a large product, one for a small one.
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
    """a @ b for NumPy stacks of matrices, matrix by matrix (one BLAS call each, no
    copy of strided operands: BLAS takes a matrix whose rows are contiguous), the stack
    split over the threads."""
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


def scatter_add(out, index, values):
    """out[index] += values with repeats adding up, bit for bit what np.add.at gives.

    For whole rows picked by one index array (an embedding's backward), np.add.at adds
    element by element in a slow generic loop; instead, number each row's repeats (0 for
    the first time an index occurs, 1 for the second, ...) and add one repeat rank at a
    time: within a rank no index repeats, so plain fancy-index `+=` is right, and the
    repeats still add in their original order.
    reference: for i, row in enumerate(index): out[row] += values[i]"""
    if not (isinstance(index, np.ndarray) and index.ndim == 1 and values.ndim == out.ndim and len(index) > 1):
        np.add.at(out, index, values)
        return
    order = np.argsort(index, kind="stable")
    rows = index[order]
    first = np.concatenate(([True], rows[1:] != rows[:-1]))
    rank = np.arange(len(rows)) - np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    by_rank = order[np.argsort(rank, kind="stable")]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(rank))))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        picked = by_rank[start:stop]
        out[index[picked]] += values[picked]
