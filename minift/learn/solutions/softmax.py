"""Exercise `softmax`: the backward pass of softmax.

Softmax turns a row of scores into probabilities, y = exp(x) / sum(exp(x)) along one
axis (the forward, below, subtracts the row maximum first: the same numbers, and exp
cannot overflow). Each output depends on every input of its row:

    dy_i/dx_j = y_i (delta_ij - y_j)          (delta_ij = 1 if i == j else 0)

Write `backward`: given g = dL/dy, return dL/dx_j = sum_i g_i dy_i/dx_j, for every row
at once and without building the (V, V) Jacobian. It works for any shape and axis.

    check:  python -m minift.learn check softmax DIR
    minift's own: minift/functional/basic.py, class Softmax
"""
import numpy as np

from minift.tensor import Function


class Softmax(Function):
    """y = softmax(x) along `axis`; x and y of any shape. Use: Softmax.apply(x, axis=-1)."""

    def forward(ctx, x, axis=-1):
        y = np.exp(x - x.max(axis=axis, keepdims=True))
        y = y / y.sum(axis=axis, keepdims=True)
        ctx.axis = axis
        ctx.save(y)
        return y

    def backward(ctx, g):
        """g = dL/dy (y's shape) -> dL/dx (x's shape)."""
        (y,) = ctx.saved
        # SOLUTION: return dL/dx from y, g and ctx.axis (a sum along the axis, kept with keepdims=True)
        return y * (g - (g * y).sum(axis=ctx.axis, keepdims=True))
        # END SOLUTION
