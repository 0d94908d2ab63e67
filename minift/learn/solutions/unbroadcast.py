"""Exercise `unbroadcast`: the gradient of an input that NumPy broadcast.

In `x + b` with x (3, 4) and b (4,), NumPy copies b along a new leading axis; with
x (3, 4) and c (3, 1), it copies c along its axis of size 1. Every copy of an element
receives a gradient, so the element's gradient is the sum over its copies:

    an axis the input lacks (leading)      sum the gradient over it, and drop it
    an axis of size 1 that grew            sum over it, and keep it as size 1

Write `unbroadcast(grad, shape)`: `grad` has the broadcast (output) shape, `shape` is the
input's; return an array of exactly `shape`. minift's engine calls its own version for
every op, once, so that no op has to (minift/tensor.py:unbroadcast).

    check:  python -m minift.learn check unbroadcast DIR
"""
import numpy as np


def unbroadcast(grad, shape):
    """Sum `grad` (the broadcast shape) down to `shape` (a tuple, the input's shape).

    unbroadcast(np.ones((2, 3, 4)), (3, 1)) -> an array of shape (3, 1), every entry 8.0
    """
    # SOLUTION: sum over the leading axes the input lacks, then over its size-1 axes that grew (keepdims)
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    grown = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if grown:
        grad = grad.sum(axis=grown, keepdims=True)
    return np.asarray(grad)
    # END SOLUTION
