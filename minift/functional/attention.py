"""Attention with hand-written backward: causal (every GPT block) and bidirectional
with a key-padding mask (an encoder's blocks, `padded_attention`), and a block's
multi-head self-attention from its q/k/v projection (`self_attention`).

    S = q k^T / sqrt(D)          scores: how well each query matches each key
    P = softmax(S + mask)        each query's weights over the keys it may see
    out = P v                    the weighted mean of those keys' values

Axes: B batch, H heads, Tq queries, Tk keys (Tq < Tk when decoding with a KV cache),
D head size.
"""
import math

from .. import backend, ops
from ..backend import array_module
from ..tensor import Function, Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


class CausalAttention(Function):
    """out = softmax(q @ k^T / sqrt(D) + causal mask) @ v;  q (B, H, Tq, D),
    k and v (B, H, Tk, D), out (B, H, Tq, D).

    The mask hides every key in a query's future: its score becomes -inf, and
    exp(-inf) = 0. Keeps q, k, v and the probabilities P (B, H, Tq, Tk) for backward:
    O(T^2) memory per head. The faster forms compute the same function: tile by tile
    on the CPU (minift.fast), and in fused GPU kernels that keep only one number per
    query row and recompute P in backward (minift.cuda, kernels/attention_*.cu).
    """

    def hidden_keys(ctx, q, k):
        """(Tq, Tk) True where key j comes after query i: the queries are the last Tq of
        the Tk positions (all of them, Tq = Tk, except when decoding with a KV cache)."""
        xp = array_module(q)
        Tq, Tk = q.shape[2], k.shape[2]
        return xp.triu(xp.ones((Tq, Tk), dtype=bool), k=Tk - Tq + 1)

    def forward(ctx, q, k, v):
        xp = array_module(q)
        ctx.scale = q.dtype.type(1 / math.sqrt(q.shape[3]))
        s = q @ k.swapaxes(-1, -2) * ctx.scale                  # (B, H, Tq, Tk) scores
        s = xp.where(ctx.hidden_keys(q, k), -xp.inf, s)         # a hidden key: probability 0
        p = xp.exp(s - s.max(axis=-1, keepdims=True))           # stable, as in softmax
        p = p / p.sum(axis=-1, keepdims=True)                   # (B, H, Tq, Tk), rows sum to 1
        ctx.save(q, k, v, p)
        return p @ v                                            # (B, H, Tq, D)

    def flops(ctx, q, k, v, lengths=None):
        """(forward, backward): q k^T and P v forward, four products back."""
        B, H, Tq, D = q.shape
        n = 2 * B * H * Tq * k.shape[2] * D
        return 2 * n, 4 * n if any(ctx.needs_input_grad) else 0

    def backward(ctx, g):
        """With S = q k^T * scale, P = softmax(S + mask), out = P v and G = dL/dout:

            dv = P^T G                          (B, H, Tk, D)
            dP = G v^T                          (B, H, Tq, Tk)
            dS = P * (dP - sum_j(dP * P))       softmax backward by rows; 0 where P is 0
            dq = dS k * scale                   (B, H, Tq, D)
            dk = dS^T q * scale                 (B, H, Tk, D)
        """
        q, k, v, p = ctx.saved
        dv = p.swapaxes(-1, -2) @ g
        dp = g @ v.swapaxes(-1, -2)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        dq = ds @ k * ctx.scale
        dk = ds.swapaxes(-1, -2) @ q * ctx.scale
        return dq, dk, dv


def causal_attention(q, k, v):
    """Scaled dot-product attention with a causal mask; q (B, H, Tq, D), k and v
    (B, H, Tk, D) with Tq <= Tk (queries are the last Tq positions). Returns (B, H, Tq, D).
    Runs CausalAttention, or a faster implementation registered for the device."""
    if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3] \
            or q.shape[2] > k.shape[2]:
        raise ValueError(f"causal_attention: expected q (B, H, Tq, D) and k, v (B, H, Tk, D) with "
                         f"Tq <= Tk; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    op = backend.implementation("causal_attention", CausalAttention, _data(q), _data(k), _data(v))
    return op.apply(q, k, v)


# ----------------------------------------------------------------------------- bidirectional, with padding

class PaddedAttention(CausalAttention):
    """out = softmax(q @ k^T / sqrt(D) + padding mask) @ v;  q (B, H, Tq, D), k and v
    (B, H, Tk, D), lengths (B,) or None, out (B, H, Tq, D).

    No causal mask: every query sees every real key of its sequence, before and after
    it, as in an encoder (BERT). A batch of right-padded sequences holds lengths[b]
    real keys in row b; the padding keys after them get probability exactly 0, so a
    sequence gets from a padded batch the result it gets alone, and padding receives
    no gradient. Queries at padded positions still compute an output (from the real
    keys); whatever reads the result ignores them. Only the mask differs from
    CausalAttention: the forward pass and the backward formulas are its own.
    """

    def forward(ctx, q, k, v, lengths=None):
        ctx.lengths = lengths
        return super().forward(q, k, v)

    def hidden_keys(ctx, q, k):
        """(B, 1, 1, Tk) True for the padding keys j >= lengths[b] of row b (with no
        lengths, (1, 1, 1, Tk) and nothing hidden)."""
        keys = array_module(q).arange(k.shape[2])                           # (Tk,)
        lengths = ctx.lengths if ctx.lengths is not None else keys[-1:] + 1  # (B,), or (1,): every key
        return (keys >= lengths[:, None])[:, None, None, :]


def padded_attention(q, k, v, lengths=None):
    """Bidirectional scaled dot-product attention with a key-padding mask, an encoder's
    attention: q (B, H, Tq, D), k and v (B, H, Tk, D); lengths (B,) integers in 1..Tk,
    the real keys of each row (right padding), or None when no row is padded. Returns
    (B, H, Tq, D). Runs PaddedAttention, or a faster one registered for the device."""
    if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"padded_attention: expected q (B, H, Tq, D) and k, v (B, H, Tk, D); got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    lengths = _checked_lengths("padded_attention", lengths, q.shape[0], k.shape[2], q)
    op = backend.implementation("padded_attention", PaddedAttention, _data(q), _data(k), _data(v))
    return op.apply(q, k, v, lengths=lengths)


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

def self_attention(qkv, n_head, causal=True, lengths=None):
    """Multi-head self-attention of a block: qkv (B, T, 3C) is its q/k/v projection (q,
    k, v side by side), n_head heads of C / n_head; causal (a GPT) or bidirectional with
    the key-padding `lengths` (an encoder; see padded_attention). Returns (B, T, C),
    the heads side by side:

        q, k, v = split_heads(qkv)   (B, H, T, D) each
        out = merge_heads(attention(q, k, v))
    """
    if qkv.ndim != 3 or qkv.shape[2] % (3 * n_head):
        raise ValueError(f"self_attention: expected qkv (B, T, 3C) with C a multiple of n_head = {n_head}; "
                         f"got {tuple(qkv.shape)}")
    lengths = None if causal else _checked_lengths("self_attention", lengths, qkv.shape[0], qkv.shape[1], qkv)
    faster = backend.implementation("self_attention", None, _data(qkv))
    if faster is not None:                       # (minift.fast reads the heads in place)
        return faster(qkv, n_head, causal, lengths)
    q, k, v = split_heads(qkv, n_head)
    return merge_heads(causal_attention(q, k, v) if causal else padded_attention(q, k, v, lengths))


def split_heads(qkv, n_head):
    """q, k, v (B, H, T, D) from a block's projection qkv (B, T, 3C): each third's C
    features are H heads of D = C / H, moved to their own axis."""
    B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    return [t.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3) for t in ops.split(qkv, 3, axis=-1)]


def merge_heads(y):
    """(B, H, T, D) -> (B, T, H D): the heads side by side again."""
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)
