"""Exercise `causal_attention`: the backward pass of causal self-attention.

Each query position i mixes the values of the positions j <= i (never the future), with
weights from how well its query matches their keys. Per batch row and head, with
q, k, v (T, D) and scale = 1 / sqrt(D):

    S = q @ k^T * scale                    (T, T) scores
    P = softmax(S + mask) by rows          mask: -inf where j > i, so P[i, j] = 0 there
    out = P @ v                            (T, D)

Backward runs these three lines in reverse. With G = dL/dout: a matrix product's
gradients are products with the other factor transposed; the mask adds a constant, so
it passes gradients through unchanged (P is already 0 where it applies); and softmax's
backward works row by row (see the `softmax` exercise).

Write `backward`: return (dL/dq, dL/dk, dL/dv), each (B, H, T, D).

    check:  python -m minift.learn check causal_attention DIR
    minift's own: minift/functional/attention.py, class CausalAttention (tile by tile)
"""
import numpy as np

from minift.tensor import Function


class CausalAttention(Function):
    """out = softmax(q k^T / sqrt(D) + causal mask) v;  q, k, v, out (B, H, T, D).
    Use: CausalAttention.apply(q, k, v)."""

    def forward(ctx, q, k, v):
        T, D = q.shape[-2:]
        scale = 1.0 / np.sqrt(D)
        s = q @ k.swapaxes(-1, -2) * scale                           # (B, H, T, T)
        future = np.triu(np.ones((T, T), dtype=bool), k=1)           # key j after query i
        s = np.where(future, -np.inf, s)
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        p = p / p.sum(axis=-1, keepdims=True)                        # (B, H, T, T)
        ctx.scale = scale
        ctx.save(q, k, v, p)
        return p @ v

    def backward(ctx, g):
        """g = dL/dout (B, H, T, D) -> (dL/dq, dL/dk, dL/dv), each (B, H, T, D)."""
        q, k, v, p = ctx.saved
        # SOLUTION: dv from P and G; dP from G and v; dS = softmax backward of dP; then dq and dk (times scale)
        dv = p.swapaxes(-1, -2) @ g
        dp = g @ v.swapaxes(-1, -2)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        dq = ds @ k * ctx.scale
        dk = ds.swapaxes(-1, -2) @ q * ctx.scale
        return dq, dk, dv
        # END SOLUTION
