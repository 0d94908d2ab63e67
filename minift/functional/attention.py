"""Attention with hand-written backward: causal (every GPT block, tile by tile) and
bidirectional with a key-padding mask (an encoder's blocks, `padded_attention`).

Axes: B batch, H heads, Tq queries, Tk keys (Tq < Tk when decoding with a KV cache),
D head size.
"""
import math

import numpy as np

from .. import backend
from ..backend import array_module
from ..parallel import split
from ..tensor import Function, Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


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


class CausalAttention(Function):
    """out = softmax(q @ k^T / sqrt(D) + causal mask) @ v;  q (B, H, Tq, D),
    k and v (B, H, Tk, D), out (B, H, Tq, D).

    Computed tile by tile: a tile of query rows attends only to the keys up to its last
    row, so the scores of whole blocks of future keys, which the mask would zero, are
    never computed (about half of them for long sequences). The heads are split over
    minift's threads. Keeps q, k, v and each tile's probabilities P (O(T^2) memory per
    head) for backward. The fused GPU kernels (minift.cuda.FusedCausalAttention, used
    instead when they apply) keep only the output and one log-sum-exp per query row,
    and recompute P tile by tile in backward (see kernels/attention_*.cu).

    reference: p = softmax(q @ k^T / sqrt(D) + mask, axis=-1);  out = p @ v
    """

    def forward(ctx, q, k, v):
        xp = array_module(q)
        B, H, Tq, D = q.shape
        scale = q.dtype.type(1.0 / math.sqrt(D))
        q, k, v = (xp.ascontiguousarray(t).reshape(B * H, -1, D) for t in (q, k, v))   # (BH, T, D) stacks
        tiles = _tiles(Tq, k.shape[1])
        probs = [xp.empty((B * H, b - a, keys), dtype=q.dtype) for a, b, keys in tiles]   # (BH, t, keys)
        out = xp.empty(q.shape, dtype=q.dtype)              # (BH, Tq, D)

        def heads(h):                                       # a block of the BH heads
            qs = q[h] * scale
            for (a, b, keys), p in zip(tiles, probs):
                s = xp.matmul(qs[:, a:b], k[h, :keys].swapaxes(-1, -2), out=p[h])   # scaled scores
                s[..., keys - (b - a):] += _causal_bias(xp, b - a, b - a, q.dtype)    # the diagonal block
                s -= s.max(axis=-1, keepdims=True)          # softmax, in place: scores -> probabilities
                xp.exp(s, out=s)
                s /= s.sum(axis=-1, keepdims=True)
                xp.matmul(s, v[h, :keys], out=out[h, a:b])
        split(heads, B * H, 1, q)
        ctx.scale, ctx.tiles, ctx.shape4 = scale, tiles, (B, H, Tq, D)
        ctx.save(q, k, v, probs)
        return out.reshape(B, H, Tq, D)

    def flops(ctx, q, k, v):
        """(forward, backward): q k^T and P v forward, four products back, over the keys
        each query tile sees (2 B H t keys D per product and tile)."""
        B, H, _, D = q.shape
        n = sum(2 * B * H * (b - a) * keys * D for a, b, keys in _tiles(q.shape[2], k.shape[2]))
        return 2 * n, 4 * n if any(ctx.needs_input_grad) else 0

    def backward(ctx, g):
        """With S = q k^T * scale, P = softmax(S + mask), out = P v and G = dL/dout, per
        tile of query rows (its keys: those it sees):

            dv = P^T G                          (B, H, Tk, D), summed over the tiles
            dP = G v^T                          (B, H, t, keys)
            dS = P * (dP - sum_j(dP * P))       (B, H, t, keys), softmax backward by rows
            dq = dS k * scale                   (B, H, t, D)
            dk = dS^T q * scale                 (B, H, Tk, D), summed over the tiles

        G is (B, H, Tq, D).
        """
        q, k, v, probs = ctx.saved
        xp = array_module(q)
        g = xp.ascontiguousarray(g).reshape(q.shape)       # (BH, Tq, D)
        dq = xp.empty(q.shape, dtype=q.dtype)
        dk, dv = xp.zeros(k.shape, dtype=k.dtype), xp.zeros(v.shape, dtype=v.dtype)

        def heads(h):
            for (a, b, keys), p in zip(ctx.tiles, probs):
                p, gt = p[h], g[h, a:b]
                dv[h, :keys] += xp.matmul(p.swapaxes(-1, -2), gt)
                # dP, then dS in the same buffer.  reference: ds = p * (dp - (dp * p).sum(-1, keepdims=True))
                ds = xp.matmul(gt, v[h, :keys].swapaxes(-1, -2))
                ds -= (ds * p).sum(axis=-1, keepdims=True)
                ds *= p
                xp.matmul(ds, k[h, :keys], out=dq[h, a:b])
                dk[h, :keys] += xp.matmul(ds.swapaxes(-1, -2), q[h, a:b])
            dq[h] *= ctx.scale                              # applied to the small (T, D) results
            dk[h] *= ctx.scale
        split(heads, q.shape[0], 1, q)
        need_q, need_k, need_v = ctx.needs_input_grad
        B, H, Tq, D = ctx.shape4
        return (dq.reshape(B, H, Tq, D) if need_q else None, dk.reshape(B, H, -1, D) if need_k else None,
                dv.reshape(B, H, -1, D) if need_v else None)


def causal_attention(q, k, v):
    """Scaled dot-product attention with a causal mask; q (B, H, Tq, D), k and v
    (B, H, Tk, D) with Tq <= Tk (queries are the last Tq positions). Returns (B, H, Tq, D).

    `backend` says whether fused GPU kernels take these inputs; otherwise (always on
    the CPU) the reference `CausalAttention` runs."""
    if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3] \
            or q.shape[2] > k.shape[2]:
        raise ValueError(f"causal_attention: expected q (B, H, Tq, D) and k, v (B, H, Tk, D) with "
                         f"Tq <= Tk; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    fused = backend.fused_causal_attention(_data(q), _data(k), _data(v))
    return (fused or CausalAttention).apply(q, k, v)


# ----------------------------------------------------------------------------- bidirectional, with padding

def _padding_bias(xp, lengths, tk, dtype):
    """(B, 1, tk) additive mask: 0 for the real keys j < lengths[b] of row b, -inf for
    its padding (keys at positions lengths[b] .. tk - 1)."""
    padding = xp.arange(tk)[None, :] >= lengths[:, None]                    # (B, tk)
    return xp.where(padding, xp.asarray(-np.inf, dtype=dtype), xp.asarray(0, dtype=dtype))[:, None, :]


class PaddedAttention(Function):
    """out = softmax(q @ k^T / sqrt(D) + padding mask) @ v;  q (B, H, Tq, D), k and v
    (B, H, Tk, D), lengths (B,) or None, out (B, H, Tq, D).

    No causal mask: every query sees every real key of its sequence, before and after
    it, as in an encoder (BERT). A batch of right-padded sequences holds lengths[b]
    real keys in row b; the padding keys after them get probability exactly 0
    (exp(-inf) = 0), so a sequence gets from a padded batch the result it gets alone,
    and padding receives no gradient. Queries at padded positions still compute an
    output (from the real keys); whatever reads the result ignores them.
    Keeps q, k, v and the probabilities P (B, H, Tq, Tk) for backward.

    reference: p = softmax(q @ k^T / sqrt(D) + mask, axis=-1);  out = p @ v
    """

    def forward(ctx, q, k, v, lengths=None):
        xp = array_module(q)
        B, H, Tq, D = q.shape
        Tk = k.shape[2]
        scale = q.dtype.type(1.0 / math.sqrt(D))
        q, k, v = (xp.ascontiguousarray(t).reshape(B * H, -1, D) for t in (q, k, v))   # (BH, T, D) stacks
        bias = None if lengths is None else xp.repeat(_padding_bias(xp, lengths, Tk, q.dtype), H, axis=0)
        p = xp.empty((B * H, Tq, Tk), dtype=q.dtype)        # (BH, Tq, Tk) probabilities
        out = xp.empty(q.shape, dtype=q.dtype)              # (BH, Tq, D)

        def heads(h):                                       # a block of the BH heads
            s = xp.matmul(q[h] * scale, k[h].swapaxes(-1, -2), out=p[h])    # scaled scores
            if bias is not None:
                s += bias[h]                                # (h, 1, Tk): the same for every query
            s -= s.max(axis=-1, keepdims=True)              # softmax, in place: scores -> probabilities
            xp.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            xp.matmul(s, v[h], out=out[h])
        split(heads, B * H, 1, q)
        ctx.scale, ctx.shape4 = scale, (B, H, Tq, D)
        ctx.save(q, k, v, p)
        return out.reshape(B, H, Tq, D)

    def flops(ctx, q, k, v, lengths=None):
        """(forward, backward): q k^T and P v forward, four products back."""
        B, H, Tq, D = q.shape
        n = 2 * B * H * Tq * k.shape[2] * D
        return 2 * n, 4 * n if any(ctx.needs_input_grad) else 0

    def backward(ctx, g):
        """With S = q k^T * scale, P = softmax(S + mask), out = P v and G = dL/dout
        (B, H, Tq, D):

            dv = P^T G                          (B, H, Tk, D)
            dP = G v^T                          (B, H, Tq, Tk)
            dS = P * (dP - sum_j(dP * P))       softmax backward by rows; 0 where P is 0 (padding)
            dq = dS k * scale                   (B, H, Tq, D)
            dk = dS^T q * scale                 (B, H, Tk, D)
        """
        q, k, v, p = ctx.saved
        xp = array_module(q)
        g = xp.ascontiguousarray(g).reshape(q.shape)       # (BH, Tq, D)
        dq, dk, dv = (xp.empty(t.shape, dtype=t.dtype) for t in (q, k, v))

        def heads(h):
            ph, gh = p[h], g[h]
            xp.matmul(ph.swapaxes(-1, -2), gh, out=dv[h])
            ds = xp.matmul(gh, v[h].swapaxes(-1, -2))      # dP, then dS in the same buffer
            ds -= (ds * ph).sum(axis=-1, keepdims=True)
            ds *= ph
            xp.matmul(ds, k[h], out=dq[h])
            xp.matmul(ds.swapaxes(-1, -2), q[h], out=dk[h])
            dq[h] *= ctx.scale
            dk[h] *= ctx.scale
        split(heads, q.shape[0], 1, q)
        need_q, need_k, need_v = ctx.needs_input_grad
        B, H, Tq, D = ctx.shape4
        return (dq.reshape(B, H, Tq, D) if need_q else None, dk.reshape(B, H, -1, D) if need_k else None,
                dv.reshape(B, H, -1, D) if need_v else None)


def padded_attention(q, k, v, lengths=None):
    """Bidirectional scaled dot-product attention with a key-padding mask, an encoder's
    attention: q (B, H, Tq, D), k and v (B, H, Tk, D); lengths (B,) integers in 1..Tk,
    the real keys of each row (right padding), or None when no row is padded. Returns
    (B, H, Tq, D). See `PaddedAttention`; on the GPU the fused kernels take it when they
    apply (`backend`)."""
    if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"padded_attention: expected q (B, H, Tq, D) and k, v (B, H, Tk, D); got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if lengths is not None:
        xp = array_module(_data(q))
        lengths = xp.asarray(_data(lengths))
        if lengths.shape != (q.shape[0],) or lengths.dtype.kind not in "iu" or \
                int(lengths.min()) < 1 or int(lengths.max()) > k.shape[2]:
            raise ValueError(f"padded_attention: lengths must be ({q.shape[0]},) integers from 1 to "
                             f"Tk = {k.shape[2]}; got shape {tuple(lengths.shape)}, dtype {lengths.dtype}")
    fused = backend.fused_padded_attention(_data(q), _data(k), _data(v))
    return (fused or PaddedAttention).apply(q, k, v, lengths=lengths)
