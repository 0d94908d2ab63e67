"""Attention as minift.fast registers it: causal attention tile by tile, the heads
split over the threads, and a block's attention read straight from its projection.

- Tiles: a tile of 64 query rows attends only to the keys up to its last row, so the
  scores of whole blocks of future keys, which the mask would zero, are never computed
  (about half of them for long sequences); the mask is added only on each tile's
  diagonal block. Backward runs the tiles last to first: the last tile sees every key,
  so it writes dk and dv, and each earlier tile adds to the keys it sees.
- Softmax: a tile keeps E = exp(S) and 1 / sum(E) for each row, not P = E / sum(E):
  the division is applied to the small (t, D) products instead (E v forward, the
  upstream gradient backward). When the scores are provably small (|S| < 20, bounded
  by |q| |k| / sqrt(D)), exp(S) needs no shift by the row max, which saves two passes
  over the scores; otherwise the tile shifts as the reference does.
- Heads: blocks of batch rows (or heads) go to the threads (`_over_heads`).
- QKVAttention: q, k, v are read from the (B, T, 3C) projection as strided views, and
  the output and gradient are written in place (BLAS takes any matrix whose rows are
  contiguous): none of the copies that splitting and merging the heads cost, and one
  node instead of eleven.

The same numbers as the reference (minift/functional/attention.py) up to float32
rounding (the scale is applied to q, before the product); tests/test_fast_attention.py
checks it.
"""
import math

import numpy as np

from ..backend import array_module
from ..functional import attention
from ..tensor import Function
from .threads import row_dots, split, threads


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
LONG_TILE, LONG_ROWS = 128, 512   # from 512 queries on, tiles of 128 rows: half the NumPy calls


def _tiles(tq, tk):
    """(start, stop, keys) of each query tile: rows start..stop of the tq queries, which
    may see the first `keys` of the tk keys (queries are the last tq positions). Tiles
    of 64 rows, or of 128 for long sequences: there the scores a larger tile computes
    past the diagonal (6% more at T = 1024) cost less than twice the calls (at T = 1024,
    2 threads: 0.96 and 0.97 of the step with 64-row tiles in two alternating runs; at
    T = 128, where one tile of 128 would compute a third more, 64 stays)."""
    tile = LONG_TILE if tq >= LONG_ROWS else ATTENTION_TILE
    return [(a, min(a + tile, tq), tk - tq + min(a + tile, tq)) for a in range(0, tq, tile)]


class CausalAttention(attention.CausalAttention):
    """functional.CausalAttention tile by tile, the heads over the threads (see the
    module docstring). Keeps q, k, v, each tile's exponentials and each row's 1 / sum
    for backward."""

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
        q, k, v, exps = ctx.saved
        xp = array_module(q)
        dq, dk, dv = (xp.empty(t.shape, dtype=t.dtype) for t in (q, k, v))
        _causal_backward(q, k, v, exps, g, (dq, dk, dv), ctx.scale, ctx.tiles)
        return tuple(d if need else None for d, need in zip((dq, dk, dv), ctx.needs_input_grad))


def _over_heads(work, q):
    """work(b, h) for blocks (b, h) of the (B, H) heads of q, split over minift's
    threads: by batch rows, or by heads when there are fewer rows than threads."""
    B, H = q.shape[:2]
    if B >= threads():
        split(lambda b: work(b, slice(None)), B, 1, q)
    else:
        split(lambda h: work(slice(None), h), H, 1, q)


UNSHIFTED_LIMIT = 20.0    # |scores| below this: exp(S) needs no shift by the row max


def _largest_scores(q, k, scale, tiles):
    """For each tile, a bound on the |scores| its rows can reach: |S_ij| <= scale |q_i|
    |k_j| (Cauchy-Schwarz), over the tile's queries and the keys it sees. q (..., Tq, D)
    and k (..., Tk, D) a block of heads; returns a list of floats."""
    xp = array_module(q)
    q_norms = xp.sqrt(xp.einsum("...ij,...ij->...i", q, q))            # (..., Tq)
    k_norms = xp.sqrt(xp.einsum("...ij,...ij->...i", k, k))            # (..., Tk)
    k_largest = xp.maximum.accumulate(k_norms.reshape(-1, k_norms.shape[-1]).max(axis=0))   # over keys 0..j
    q_largest = q_norms.reshape(-1, q_norms.shape[-1]).max(axis=0)    # (Tq,) over the heads
    return [float(scale * q_largest[a:b].max() * k_largest[keys - 1]) for a, b, keys in tiles]


def _causal_forward(q, k, v, out, scale, tiles):
    """Causal attention forward into `out`, tile by tile; returns each tile's
    exponentials E (B, H, t, keys) and the rows' 1 / sum(E) (B, H, Tq, 1), with
    P = E / sum(E): the division is applied to the small (t, D) product E v instead
    of to E. E = exp(S - row max), the shift that keeps exp finite, or, when the tile's
    scores are bounded by UNSHIFTED_LIMIT (they are for usual q and k), E = exp(S):
    the same P, without the two passes the row max and the shift cost. Every E then
    lies in [e^-20, e^20] and 1 / sum(E) <= e^20 (the sum holds exp(S_ii)), far from
    float32's limits, as are E v and backward's G / sum(E). q, out (B, H, Tq, D) and
    k, v (B, H, Tk, D) may be strided views (BLAS takes any matrix whose rows are
    contiguous)."""
    xp = array_module(q)
    B, H, Tq = q.shape[:3]
    exps = [xp.empty((B, H, b - a, keys), dtype=q.dtype) for a, b, keys in tiles]
    inverse_sums = xp.empty((B, H, Tq, 1), dtype=q.dtype)

    def work(r, h):                                         # a block of heads
        qs = q[r, h] * scale
        bounds = _largest_scores(q[r, h], k[r, h], scale, tiles)
        for (a, b, keys), e, bound in zip(tiles, exps, bounds):
            s = xp.matmul(qs[:, :, a:b], k[r, h, :keys].swapaxes(-1, -2), out=e[r, h])   # scaled scores
            s[..., keys - (b - a):] += _causal_bias(xp, b - a, b - a, q.dtype)           # the diagonal block
            if not bound < UNSHIFTED_LIMIT:
                s -= s.max(axis=-1, keepdims=True)
            xp.exp(s, out=s)                                # in place: scores -> exponentials
            inv = xp.matmul(s, xp.ones((keys, 1), dtype=s.dtype), out=inverse_sums[r, h, a:b])   # row sums
            xp.reciprocal(inv, out=inv)
            o = xp.matmul(s, v[r, h, :keys], out=out[r, h, a:b])
            o *= inv                                        # P v = (E v) / sum(E)
    _over_heads(work, q)
    return exps, inverse_sums


def _causal_backward(q, k, v, saved, g, grads, scale, tiles):
    """CausalAttention.backward's loops: dq, dk, dv (`grads`, (B, H, T, D) arrays or
    views, written here) from the upstream gradient g (B, H, Tq, D), with P = E * inv
    (`saved`: _causal_forward's exponentials and inverse row sums). With G' = G * inv,
    the row scale moved onto the small (t, D) gradient:

        dv = P^T G = E^T G'       dP' = G' v^T = dP * inv
        dS = P * (dP - sum_j(dP * P)) = E * (dP' - inv * sum_j(dP' * E))
    """
    xp = array_module(q)
    dq, dk, dv = grads
    exps, inverse_sums = saved

    def work(r, h):
        # Tiles last to first: the last sees every key, so it writes dk and dv, and each
        # earlier tile adds to the keys it sees. No zero-filled start, and the same sums
        # as first to last (x + y = y + x exactly).
        for i, ((a, b, keys), e) in enumerate(reversed(list(zip(tiles, exps)))):
            e, inv = e[r, h], inverse_sums[r, h, a:b]
            gs = g[r, h, a:b] * inv                         # G' (b, h, t, D)
            ds = xp.matmul(gs, v[r, h, :keys].swapaxes(-1, -2))   # dP', then dS in the same buffer
            ds -= row_dots(ds, e)[..., None] * inv
            ds *= e
            xp.matmul(ds, k[r, h, :keys], out=dq[r, h, a:b])
            if i == 0:
                xp.matmul(e.swapaxes(-1, -2), gs, out=dv[r, h, :keys])
                xp.matmul(ds.swapaxes(-1, -2), q[r, h, a:b], out=dk[r, h, :keys])
            else:
                dv[r, h, :keys] += xp.matmul(e.swapaxes(-1, -2), gs)
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
            kept = _causal_forward(q, k, v, heads_out, ctx.scale, ctx.tiles)
        else:
            bias = None if lengths is None else _padding_bias(xp, lengths, T, qkv.dtype)
            kept = _padded_forward(q, k, v, bias, heads_out, ctx.scale)
        ctx.save(qkv, kept)
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
        qkv, kept = ctx.saved
        xp = array_module(qkv)
        dqkv = xp.empty(qkv.shape, dtype=qkv.dtype)
        g = g.reshape(*g.shape[:2], ctx.n_head, -1).transpose(0, 2, 1, 3)   # (B, H, T, D) view
        q, k, v = _heads(qkv, ctx.n_head)
        if ctx.causal:
            _causal_backward(q, k, v, kept, g, _heads(dqkv, ctx.n_head), ctx.scale, ctx.tiles)
        else:
            _padded_backward(q, k, v, kept, g, _heads(dqkv, ctx.n_head), ctx.scale)
        return dqkv


def _heads(x, n_head):
    """The q, k and v thirds of x (B, T, 3C), each as a (B, H, T, D) view."""
    B, T, C3 = x.shape
    return x.reshape(B, T, 3, n_head, C3 // (3 * n_head)).transpose(2, 0, 3, 1, 4)


def self_attention(qkv, n_head, causal=True, lengths=None):
    """functional.self_attention on NumPy arrays: one QKVAttention node."""
    return QKVAttention.apply(qkv, n_head=n_head, causal=causal, lengths=lengths)
