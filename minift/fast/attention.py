"""Attention as minift.fast registers it: causal attention tile by tile, the heads
split over the threads, and a block's attention read straight from its projection.

- Tiles: a tile of 64 query rows attends only to the keys up to its last row, so the
  scores of whole blocks of future keys, which the mask would zero, are never computed
  (about half of them for long sequences); the mask is added only on each tile's
  diagonal block. Backward runs the tiles last to first: the last tile sees every key,
  so it writes dk and dv, and each earlier tile adds to the keys it sees.
- Heads: blocks of batch rows (or heads) go to the threads (`_over_heads`).
- QKVAttention: q, k, v are read from the (B, T, 3C) projection as strided views, and
  the output and gradient are written in place (BLAS takes any matrix whose rows are
  contiguous): none of the copies that splitting and merging the heads cost, and one
  node instead of eleven.

The same numbers as the reference (minift/functional/attention.py) up to float32
rounding (the scale is applied to q, before the product); tests/test_fast.py checks it.
"""
import math

import numpy as np

from ..backend import array_module
from ..functional import attention
from ..tensor import Function
from .threads import split, threads


_mask_cache = {}


def _causal_bias(xp, tq, tk, dtype):
    """(tq, tk) additive mask: 0 where query i may see key j, -inf where j is in its
    future. Queries are the last tq positions of the tk keys (tq < tk when decoding
    with a KV cache)."""
    key = (xp.__name__, tq, tk, np.dtype(dtype).str)
    bias = _mask_cache.get(key)
    if bias is None:
        future = xp.arange(tk)[None, :] > xp.arange(tk - tq, tk)[:, None]
        bias = xp.where(future, xp.asarray(-np.inf, dtype=dtype), xp.asarray(0, dtype=dtype))
        _mask_cache[key] = bias
    return bias


ATTENTION_TILE = 64     # query rows per tile: keys after a tile's last row are in every row's future


def _tiles(tq, tk):
    """(start, stop, keys) of each query tile: rows start..stop of the tq queries, which
    may see the first `keys` of the tk keys (queries are the last tq positions)."""
    return [(a, min(a + ATTENTION_TILE, tq), tk - tq + min(a + ATTENTION_TILE, tq))
            for a in range(0, tq, ATTENTION_TILE)]


class CausalAttention(attention.CausalAttention):
    """functional.CausalAttention tile by tile, the heads over the threads (see the
    module docstring). Keeps q, k, v and each tile's probabilities for backward."""

    def forward(ctx, q, k, v):
        xp = array_module(q)
        scale = q.dtype.type(1.0 / math.sqrt(q.shape[3]))
        q, k, v = (xp.ascontiguousarray(t) for t in (q, k, v))
        out = xp.empty(q.shape, dtype=q.dtype)              # (B, H, Tq, D)
        ctx.scale, ctx.tiles = scale, _tiles(q.shape[2], k.shape[2])
        ctx.save(q, k, v, _causal_forward(q, k, v, out, scale, ctx.tiles))
        return out

    def flops(ctx, q, k, v):
        """(forward, backward): q k^T and P v forward, four products back, over the keys
        each query tile sees (2 B H t keys D per product and tile)."""
        B, H, _, D = q.shape
        n = sum(2 * B * H * (b - a) * keys * D for a, b, keys in _tiles(q.shape[2], k.shape[2]))
        return 2 * n, 4 * n if any(ctx.needs_input_grad) else 0

    def backward(ctx, g):
        """The reference's five formulas, tile by tile (`_causal_backward`): dv and dk
        summed over the tiles that see each key."""
        q, k, v, probs = ctx.saved
        xp = array_module(q)
        dq, dk, dv = (xp.empty(t.shape, dtype=t.dtype) for t in (q, k, v))
        _causal_backward(q, k, v, probs, g, (dq, dk, dv), ctx.scale, ctx.tiles)
        return tuple(d if need else None for d, need in zip((dq, dk, dv), ctx.needs_input_grad))


def _over_heads(work, q):
    """work(b, h) for blocks (b, h) of the (B, H) heads of q, split over minift's
    threads: by batch rows, or by heads when there are fewer rows than threads."""
    B, H = q.shape[:2]
    if B >= threads():
        split(lambda b: work(b, slice(None)), B, 1, q)
    else:
        split(lambda h: work(slice(None), h), H, 1, q)


def _causal_forward(q, k, v, out, scale, tiles):
    """Causal attention forward into `out`, tile by tile; returns each tile's
    probabilities P (B, H, t, keys). q, out (B, H, Tq, D) and k, v (B, H, Tk, D) may be
    strided views (BLAS takes any matrix whose rows are contiguous)."""
    xp = array_module(q)
    B, H = q.shape[:2]
    probs = [xp.empty((B, H, b - a, keys), dtype=q.dtype) for a, b, keys in tiles]

    def work(r, h):                                         # a block of batch rows or heads
        qs = q[r, h] * scale
        for (a, b, keys), p in zip(tiles, probs):
            s = xp.matmul(qs[:, :, a:b], k[r, h, :keys].swapaxes(-1, -2), out=p[r, h])   # scaled scores
            s[..., keys - (b - a):] += _causal_bias(xp, b - a, b - a, q.dtype)           # the diagonal block
            s -= s.max(axis=-1, keepdims=True)              # softmax, in place: scores -> probabilities
            xp.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            xp.matmul(s, v[r, h, :keys], out=out[r, h, a:b])
    _over_heads(work, q)
    return probs


def _causal_backward(q, k, v, probs, g, grads, scale, tiles):
    """CausalAttention.backward's loops: dq, dk, dv (`grads`, (B, H, T, D) arrays or
    views, written here) from the upstream gradient g (B, H, Tq, D)."""
    xp = array_module(q)
    dq, dk, dv = grads

    def work(r, h):
        # Tiles last to first: the last sees every key, so it writes dk and dv, and each
        # earlier tile adds to the keys it sees. No zero-filled start, and the same sums
        # as first to last (x + y = y + x exactly).
        for i, ((a, b, keys), p) in enumerate(reversed(list(zip(tiles, probs)))):
            p, gt = p[r, h], g[r, h, a:b]
            # dP, then dS in the same buffer.  reference: ds = p * (dp - (dp * p).sum(-1, keepdims=True))
            ds = xp.matmul(gt, v[r, h, :keys].swapaxes(-1, -2))
            ds -= (ds * p).sum(axis=-1, keepdims=True)
            ds *= p
            xp.matmul(ds, k[r, h, :keys], out=dq[r, h, a:b])
            if i == 0:
                xp.matmul(p.swapaxes(-1, -2), gt, out=dv[r, h, :keys])
                xp.matmul(ds.swapaxes(-1, -2), q[r, h, a:b], out=dk[r, h, :keys])
            else:
                dv[r, h, :keys] += xp.matmul(p.swapaxes(-1, -2), gt)
                dk[r, h, :keys] += xp.matmul(ds.swapaxes(-1, -2), q[r, h, a:b])
        dq[r, h] *= scale                                   # applied to the small (T, D) results
        dk[r, h] *= scale
    _over_heads(work, q)


def _padding_bias(xp, lengths, tk, dtype):
    """(B, 1, tk) additive mask: 0 for the real keys j < lengths[b] of row b, -inf for
    its padding (keys at positions lengths[b] .. tk - 1)."""
    padding = xp.arange(tk)[None, :] >= lengths[:, None]                    # (B, tk)
    return xp.where(padding, xp.asarray(-np.inf, dtype=dtype), xp.asarray(0, dtype=dtype))[:, None, :]


class PaddedAttention(attention.PaddedAttention):
    """functional.PaddedAttention with the heads over the threads and the padding mask
    added as a (B, 1, Tk) bias. Keeps q, k, v and P (B, H, Tq, Tk) for backward."""

    def forward(ctx, q, k, v, lengths=None):
        xp = array_module(q)
        scale = q.dtype.type(1.0 / math.sqrt(q.shape[3]))
        q, k, v = (xp.ascontiguousarray(t) for t in (q, k, v))
        bias = None if lengths is None else _padding_bias(xp, lengths, k.shape[2], q.dtype)
        out = xp.empty(q.shape, dtype=q.dtype)              # (B, H, Tq, D)
        ctx.scale = scale
        ctx.save(q, k, v, _padded_forward(q, k, v, bias, out, scale))
        return out

    def backward(ctx, g):
        """The reference's five formulas, head block by head block (`_padded_backward`)."""
        q, k, v, p = ctx.saved
        xp = array_module(q)
        dq, dk, dv = (xp.empty(t.shape, dtype=t.dtype) for t in (q, k, v))
        _padded_backward(q, k, v, p, g, (dq, dk, dv), ctx.scale)
        return tuple(d if need else None for d, need in zip((dq, dk, dv), ctx.needs_input_grad))


def _padded_forward(q, k, v, bias, out, scale):
    """Bidirectional attention forward into `out` (B, H, Tq, D); returns the
    probabilities P (B, H, Tq, Tk). bias: (B, 1, Tk) padding mask or None. The arrays
    may be strided views, as in `_causal_forward`."""
    xp = array_module(q)
    B, H, Tq = q.shape[:3]
    p = xp.empty((B, H, Tq, k.shape[2]), dtype=q.dtype)

    def work(r, h):                                         # a block of batch rows or heads
        s = xp.matmul(q[r, h] * scale, k[r, h].swapaxes(-1, -2), out=p[r, h])   # scaled scores
        if bias is not None:
            s += bias[r][:, None]                           # (b, 1, 1, Tk): the same for every query
        s -= s.max(axis=-1, keepdims=True)                  # softmax, in place: scores -> probabilities
        xp.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        xp.matmul(s, v[r, h], out=out[r, h])
    _over_heads(work, q)
    return p


def _padded_backward(q, k, v, p, g, grads, scale):
    """PaddedAttention.backward's loops: dq, dk, dv (`grads`, written here) from g."""
    xp = array_module(q)
    dq, dk, dv = grads

    def work(r, h):
        ph, gh = p[r, h], g[r, h]
        xp.matmul(ph.swapaxes(-1, -2), gh, out=dv[r, h])
        ds = xp.matmul(gh, v[r, h].swapaxes(-1, -2))       # dP, then dS in the same buffer
        ds -= (ds * ph).sum(axis=-1, keepdims=True)
        ds *= ph
        xp.matmul(ds, k[r, h], out=dq[r, h])
        xp.matmul(ds.swapaxes(-1, -2), q[r, h], out=dk[r, h])
        dq[r, h] *= scale
        dk[r, h] *= scale
    _over_heads(work, q)


class QKVAttention(Function):
    """Multi-head self-attention read straight from a block's fused projection:
    qkv (B, T, 3C) holds q, k and v side by side (each C = H D, head after head); out
    (B, T, C) holds the heads side by side. The same numbers as

        q, k, v = split(qkv, 3);  q = q.reshape(B, T, H, D).transpose(0, 2, 1, 3)  (k, v alike)
        out = attention(q, k, v).transpose(0, 2, 1, 3).reshape(B, T, C)

    with CausalAttention (causal=True) or PaddedAttention, but the heads are read and
    written where they lie, as strided views that BLAS takes as they are: none of the
    copies those moves cost (three in forward, more in backward), and one node instead
    of eleven. `self_attention` runs it on the CPU.
    """

    def forward(ctx, qkv, n_head, causal=True, lengths=None):
        xp = array_module(qkv)
        B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        q, k, v = _heads(qkv, n_head)                       # 3 x (B, H, T, D) views
        out = xp.empty((B, T, C), dtype=qkv.dtype)
        heads_out = out.reshape(B, T, n_head, -1).transpose(0, 2, 1, 3)   # (B, H, T, D) view of out
        ctx.scale, ctx.n_head, ctx.causal = qkv.dtype.type(1.0 / math.sqrt(C // n_head)), n_head, causal
        if causal:
            ctx.tiles = _tiles(T, T)
            probs = _causal_forward(q, k, v, heads_out, ctx.scale, ctx.tiles)
        else:
            bias = None if lengths is None else _padding_bias(xp, lengths, T, qkv.dtype)
            probs = _padded_forward(q, k, v, bias, heads_out, ctx.scale)
        ctx.save(qkv, probs)
        return out

    def flops(ctx, qkv):
        """(forward, backward): those of CausalAttention or PaddedAttention (after forward)."""
        q = _heads(qkv, ctx.n_head)[0]
        return (CausalAttention if ctx.causal else PaddedAttention).flops(ctx, q, q, q)

    def backward(ctx, g):
        """dL/dqkv = [dq | dk | dv] (B, T, 3C): the gradients of CausalAttention or
        PaddedAttention (see there) for each head, put back where the head was read
        (splitting and moving the heads only moves numbers, so its derivative moves
        the gradients back). g (B, T, C) is read head by head in place."""
        qkv, probs = ctx.saved
        xp = array_module(qkv)
        dqkv = xp.empty(qkv.shape, dtype=qkv.dtype)
        g = g.reshape(*g.shape[:2], ctx.n_head, -1).transpose(0, 2, 1, 3)   # (B, H, T, D) view
        q, k, v = _heads(qkv, ctx.n_head)
        if ctx.causal:
            _causal_backward(q, k, v, probs, g, _heads(dqkv, ctx.n_head), ctx.scale, ctx.tiles)
        else:
            _padded_backward(q, k, v, probs, g, _heads(dqkv, ctx.n_head), ctx.scale)
        return dqkv


def _heads(x, n_head):
    """The q, k and v thirds of x (B, T, 3C), each as a (B, H, T, D) view."""
    B, T, C3 = x.shape
    return x.reshape(B, T, 3, n_head, C3 // (3 * n_head)).transpose(2, 0, 3, 1, 4)


def self_attention(qkv, n_head, causal=True, lengths=None):
    """functional.self_attention on NumPy arrays: one QKVAttention node."""
    return QKVAttention.apply(qkv, n_head=n_head, causal=causal, lengths=lengths)
