"""Attention with hand-written backward: causal (every GPT block, tile by tile) and
bidirectional with a key-padding mask (an encoder's blocks, `padded_attention`).

Axes: B batch, H heads, Tq queries, Tk keys (Tq < Tk when decoding with a KV cache),
D head size.
"""
import math

import numpy as np

from .. import backend, ops
from ..backend import array_module
from ..parallel import split, threads
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
        """With S = q k^T * scale, P = softmax(S + mask), out = P v and G = dL/dout, per
        tile of query rows (its keys: those it sees):

            dv = P^T G                          (B, H, Tk, D), summed over the tiles
            dP = G v^T                          (B, H, t, keys)
            dS = P * (dP - sum_j(dP * P))       (B, H, t, keys), softmax backward by rows
            dq = dS k * scale                   (B, H, t, D)
            dk = dS^T q * scale                 (B, H, Tk, D), summed over the tiles

        G is (B, H, Tq, D). The loops are `_causal_backward`'s.
        """
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
        scale = q.dtype.type(1.0 / math.sqrt(q.shape[3]))
        q, k, v = (xp.ascontiguousarray(t) for t in (q, k, v))
        bias = None if lengths is None else _padding_bias(xp, lengths, k.shape[2], q.dtype)
        out = xp.empty(q.shape, dtype=q.dtype)              # (B, H, Tq, D)
        ctx.scale = scale
        ctx.save(q, k, v, _padded_forward(q, k, v, bias, out, scale))
        return out

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

        The loops are `_padded_backward`'s.
        """
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


def padded_attention(q, k, v, lengths=None):
    """Bidirectional scaled dot-product attention with a key-padding mask, an encoder's
    attention: q (B, H, Tq, D), k and v (B, H, Tk, D); lengths (B,) integers in 1..Tk,
    the real keys of each row (right padding), or None when no row is padded. Returns
    (B, H, Tq, D). See `PaddedAttention`; on the GPU the fused kernels take it when they
    apply (`backend`)."""
    if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"padded_attention: expected q (B, H, Tq, D) and k, v (B, H, Tk, D); got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    lengths = _checked_lengths("padded_attention", lengths, q.shape[0], k.shape[2], q)
    fused = backend.fused_padded_attention(_data(q), _data(k), _data(v))
    return (fused or PaddedAttention).apply(q, k, v, lengths=lengths)


def _checked_lengths(name, lengths, B, Tk, like):
    """lengths as an array of like's device, after checking it: (B,) integers in 1..Tk."""
    if lengths is None:
        return None
    lengths = array_module(_data(like)).asarray(_data(lengths))
    if lengths.shape != (B,) or lengths.dtype.kind not in "iu" or int(lengths.min()) < 1 or int(lengths.max()) > Tk:
        raise ValueError(f"{name}: lengths must be ({B},) integers from 1 to Tk = {Tk}; got shape "
                         f"{tuple(lengths.shape)}, dtype {lengths.dtype}")
    return lengths


# ----------------------------------------------------------------------------- a block's attention, from its projection

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
    """Multi-head self-attention of a block: qkv (B, T, 3C) is its q/k/v projection (q,
    k, v side by side), n_head heads of C / n_head; causal (a GPT) or bidirectional with
    the key-padding `lengths` (an encoder; see padded_attention). Returns (B, T, C),
    the heads side by side.

    On the CPU this is one QKVAttention node. Elsewhere the heads are split out with
    ops and go to causal_attention or padded_attention, whose fused GPU kernels take
    (B, H, T, D)."""
    if qkv.ndim != 3 or qkv.shape[2] % (3 * n_head):
        raise ValueError(f"self_attention: expected qkv (B, T, 3C) with C a multiple of n_head = {n_head}; "
                         f"got {tuple(qkv.shape)}")
    lengths = None if causal else _checked_lengths("self_attention", lengths, qkv.shape[0], qkv.shape[1], qkv)
    if type(_data(qkv)) is np.ndarray:
        return QKVAttention.apply(qkv, n_head=n_head, causal=causal, lengths=lengths)
    q, k, v = split_heads(qkv, n_head)
    return merge_heads(causal_attention(q, k, v) if causal else padded_attention(q, k, v, lengths))


def split_heads(qkv, n_head):
    """q, k, v (B, H, T, D) from a block's projection qkv (B, T, 3C), with ops (so each
    move is a node of the graph): the plain way that QKVAttention does in place."""
    B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    return [t.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3) for t in ops.split(qkv, 3, axis=-1)]


def merge_heads(y):
    """(B, H, T, D) -> (B, T, H D): the heads side by side again."""
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)
