"""Exercise `layer_norm`: the backward pass of layer normalisation.

Layer norm rescales every row (the last axis, C features) to mean 0 and variance 1,
then gives it a learned scale and offset:

    mu = mean(x),  var = mean((x - mu)^2),  rstd = 1 / sqrt(var + eps)     (per row)
    xhat = (x - mu) * rstd,        y = xhat * weight + bias               (weight, bias (C,))

weight and bias are shared by every row, so their gradients sum over all rows. Each
xhat_i depends on the whole row through mu and var: with dxhat = g * weight,

    dL/dx_j = sum_i dxhat_i dxhat_i/dx_j,   dxhat_i/dx_j = rstd (delta_ij - 1/C - xhat_i xhat_j / C)

Write `backward`: return (dL/dx, dL/dweight, dL/dbias) for x of any shape (..., C).

    check:  python -m minift.learn check layer_norm DIR
    minift's own: minift/functional/basic.py, class LayerNorm
"""
import numpy as np

from minift.tensor import Function


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis; x, y (..., C),
    weight and bias (C,). Use: LayerNorm.apply(x, weight, bias)."""

    def forward(ctx, x, weight, bias, eps=1e-5):
        mu = x.mean(axis=-1, keepdims=True)                          # (..., 1)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)           # (..., 1)
        rstd = 1.0 / np.sqrt(var + eps)                              # (..., 1)
        xhat = (x - mu) * rstd                                       # (..., C)
        ctx.save(xhat, rstd, weight)
        return xhat * weight + bias

    def backward(ctx, g):
        """g = dL/dy (..., C) -> (dL/dx (..., C), dL/dweight (C,), dL/dbias (C,))."""
        xhat, rstd, weight = ctx.saved
        # SOLUTION: dweight and dbias sum over every leading axis; dx from dxhat = g * weight, row by row
        leading = tuple(range(g.ndim - 1))
        dweight = (g * xhat).sum(axis=leading)
        dbias = g.sum(axis=leading)
        dxhat = g * weight
        dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                     - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
        return dx, dweight, dbias
        # END SOLUTION
