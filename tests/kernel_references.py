"""The float64 NumPy references that the GPU kernel tests compare against, and the
comparison itself (tests/test_kernels_gpu.py, tests/test_kernels_device_limits.py).

Nothing here needs CuPy: `assert_close` copies a GPU array to the host itself.
"""
import math

import numpy as np

from minift.backend import to_numpy


def assert_close(got, ref, atol, rtol, what):
    """Elementwise |got - ref| <= atol + rtol * |ref| (NaN fails), naming the worst element."""
    got = to_numpy(got).astype(np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    err = np.abs(got - ref)
    bound = atol + rtol * np.abs(ref)
    bad = ~(err <= bound)   # also catches NaN
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), ref.shape)
        raise AssertionError(f"{what}: {bad.sum()} of {ref.size} elements off; worst at {i}: "
                             f"got {got[i]!r}, expected {ref[i]!r} (atol {atol}, rtol {rtol})")


def randn(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def qkv(rng, B, H, T, D):
    """float32 q, k, v (B, H, T, D); q and k scaled by 2, so that softmax rows are peaked."""
    return randn(rng, B, H, T, D, scale=2.0), randn(rng, B, H, T, D, scale=2.0), randn(rng, B, H, T, D)


def matmul_reference(a, b, ta, tb):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return (a.swapaxes(-1, -2) if ta else a) @ (b.swapaxes(-1, -2) if tb else b)


def matmul_tol(K):
    return dict(atol=1e-4 * math.sqrt(max(K, 1)), rtol=1e-3)


def attention_reference(q, k, v, lengths=None, causal=True):
    """float64 attention, causal and/or hiding keys j >= lengths[b] of sequence b: (o, lse, p)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    T, D = q.shape[-2:]
    s = q @ k.swapaxes(-1, -2) / math.sqrt(D)
    if causal:
        s = np.where(np.triu(np.ones((T, T), dtype=bool), 1), -np.inf, s)
    if lengths is not None:
        padding = np.arange(T)[None, :] >= np.asarray(lengths)[:, None]          # (B, T) keys
        s = np.where(padding[:, None, None, :], -np.inf, s)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - m)
    row_sum = e.sum(-1, keepdims=True)
    p = e / row_sum
    return p @ v, (m + np.log(row_sum))[..., 0], p


def attention_reference_backward(q, k, v, do, lengths=None, causal=True):
    """float64 gradients (dq, dk, dv) of attention_reference, the textbook way."""
    q, k, v, do = (np.asarray(x, np.float64) for x in (q, k, v, do))
    scale = 1 / math.sqrt(q.shape[-1])
    _, _, p = attention_reference(q, k, v, lengths, causal)
    dv = p.swapaxes(-1, -2) @ do
    dp = do @ v.swapaxes(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    return scale * ds @ k, scale * ds.swapaxes(-1, -2) @ q, dv
