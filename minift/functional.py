"""Fused ops with hand-written backward passes.

Each could be written as a chain of primitives from `ops`, but a fused op is faster
(one pass, few temporaries), numerically stable (softmax shifts by the row maximum),
and it is the exact specification that the GPU kernels reproduce. Where a buffer is
updated in place for speed, a "reference:" line gives the plain formula it computes.

Axes: B batch, T time (sequence; Tq queries, Tk keys in attention), C channels,
V vocabulary or classes, H heads, D head size, N rows (leading axes flattened, B*T).
"""
import math

import numpy as np

from . import backend
from .backend import array_module, scatter_add
from .tensor import Function, Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


# ----------------------------------------------------------------------------- softmax family

class Softmax(Function):
    """y = exp(x - max x) / sum exp(x - max x) along `axis`; x, y (N, V) for axis=-1
    (any shape and axis work the same way).

    reference: y = exp(x) / sum(exp(x), axis). Subtracting the maximum changes nothing
    mathematically and keeps exp from overflowing.
    """

    def forward(ctx, x, axis=-1):
        xp = array_module(x)
        y = xp.exp(x - x.max(axis=axis, keepdims=True))     # (N, V) unnormalised
        y /= y.sum(axis=axis, keepdims=True)                # normalised in place
        ctx.axis = axis
        ctx.save(y)
        return y

    def backward(ctx, g):
        """dL/dx = y * (g - sum(g * y, axis))      g, y, dL/dx (N, V); the sum (N, 1).

        That is the Jacobian dy_i/dx_j = y_i (delta_ij - y_j) applied to g, without
        building the (N, V, V) Jacobian."""
        (y,) = ctx.saved
        return y * (g - (g * y).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - max x - log sum exp(x - max x) along `axis`; x, y (N, V) for axis=-1.

    reference: y = log(softmax(x)), computed without forming softmax(x) (stable when
    a probability underflows to 0).
    """

    def forward(ctx, x, axis=-1):
        xp = array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.axis = axis
        ctx.save(y)
        return y

    def backward(ctx, g):
        """dL/dx = g - softmax(x) * sum(g, axis),  softmax(x) = exp(y)
        g, y, dL/dx (N, V); the sum (N, 1)."""
        (y,) = ctx.saved
        return g - array_module(y).exp(y) * g.sum(axis=ctx.axis, keepdims=True)


def softmax(x, axis=-1):
    return Softmax.apply(x, axis=axis)


def log_softmax(x, axis=-1):
    return LogSoftmax.apply(x, axis=axis)


class CrossEntropy(Function):
    """Mean negative log-likelihood of integer targets under softmax(logits).

    logits (N, V), targets (N,). Rows whose target is `ignore_index` count for nothing.
    With class `weight` (V,), row n counts weight[t_n] times, and the mean divides by
    the sum of those weights (as PyTorch does):

        loss = -sum_n w_n log p[n, t_n] / sum_n w_n,   p = softmax(logits)
    """

    def forward(ctx, logits, targets, ignore_index=-100, weight=None):
        xp = array_module(logits)
        n = logits.shape[0]
        valid = targets != ignore_index
        safe_targets = xp.where(valid, targets, 0)
        row_weight = valid.astype(logits.dtype)
        if weight is not None:
            row_weight *= weight[safe_targets]
        total = row_weight.sum()
        if not valid.any():
            raise ValueError(f"cross_entropy: every target equals ignore_index ({ignore_index}); "
                             "there is nothing to average")
        # exp(logits - row max) in one buffer (the shift keeps exp finite); the division
        # by the row sum is left to backward, where it joins the scaling pass.
        # reference: p = softmax(logits, axis=1); nll = -log(p[rows, targets])
        e = logits - logits.max(axis=1, keepdims=True)      # (N, V)
        rows = xp.arange(n)
        shifted_target = e[rows, safe_targets]              # (N,)
        xp.exp(e, out=e)                                    # unnormalised probabilities
        sum_exp = e.sum(axis=1)                             # (N,)
        nll = xp.log(sum_exp) - shifted_target              # (N,) -log p[n, t_n]
        ctx.save(e, sum_exp, safe_targets, row_weight / total)
        return (nll * row_weight).sum() / total

    def backward(ctx, g):
        """dL/dlogits[n] = w_n / sum(w) * (p[n] - onehot(t_n)),  times the upstream g,
        with p[n] = e[n] / sum(e[n]) (e = the saved exponentials).
        g () a scalar; e, dL/dlogits (N, V); sum_exp, targets, w_n / sum(w) (N,)."""
        e, sum_exp, targets, scale = ctx.saved
        xp = array_module(e)
        row_scale = g * scale                               # (N,)
        # The last backward through this node (backward(keep_graph=False)) may turn the
        # saved exponentials into the gradient in place: the largest array of a language
        # model's step is then not allocated twice.
        grad = e if getattr(ctx, "last_backward", False) else e.copy()
        grad *= (row_scale / sum_exp)[:, None]              # (N, V) scaled p
        grad[xp.arange(e.shape[0]), targets] -= row_scale   # minus the one-hot
        return grad, None


def cross_entropy(logits, targets, ignore_index=-100, weight=None):
    """Cross-entropy of logits (..., V) against integer targets (...), averaged over
    the targets that are not `ignore_index`. Raises ValueError when every target is
    ignored (an empty mean has no value). `weight` (V,) weights the classes."""
    targets = _data(targets)
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {tuple(targets.shape)} do not match "
                         f"logits of shape {tuple(logits.shape)} (expected targets {tuple(logits.shape[:-1])})")
    flat = logits.reshape(-1, V) if logits.ndim != 2 else logits
    return CrossEntropy.apply(flat, targets.reshape(-1), ignore_index=ignore_index,
                              weight=_data(weight))


# ----------------------------------------------------------------------------- linear

class Linear(Function):
    """y = x @ weight + bias;  x (..., In), weight (In, Out), bias (Out,) or None,
    y (..., Out). In and Out are the feature sizes (C, 3C, 4C, ... in the GPT).

    One node instead of a MatMul and an Add: the bias is added in place and its
    gradient is a direct row sum, with no broadcast to undo.
    """

    def forward(ctx, x, weight, bias=None):
        if x.shape[-1] != weight.shape[0]:
            raise ValueError(f"linear: input of shape {tuple(x.shape)} does not fit weight of shape "
                             f"{tuple(weight.shape)} (expected last axis {weight.shape[0]})")
        ctx.save(x, weight)
        y = backend.matmul(x, weight)
        if bias is not None:
            y += bias
        return y

    def flops(ctx, x, weight, bias=None):
        """(forward, backward): 2 N In Out for the product, again for dx and for dweight."""
        n = 2 * (x.size // x.shape[-1]) * weight.shape[0] * weight.shape[1]
        return n, n * (ctx.needs_input_grad[0] + ctx.needs_input_grad[1])

    def backward(ctx, g):
        """dx = g @ weight^T,   dweight = x^T @ g and dbias = sum of g, both over every
        row of the leading axes (flattened into one matrix product).
        g (..., Out) seen as rows (N, Out); x as (N, In); dx (..., In);
        dweight (In, Out); dbias (Out,)."""
        x, weight = ctx.saved
        need_x, need_w, need_b = ctx.needs_input_grad
        rows = g.reshape(-1, g.shape[-1])                   # (N, Out)
        dx = backend.matmul(g, weight.T) if need_x else None
        dw = backend.matmul(x.reshape(-1, x.shape[-1]).T, rows) if need_w else None
        db = rows.sum(axis=0) if need_b else None
        return dx, dw, db


def linear(x, weight, bias=None):
    return Linear.apply(x, weight, bias)


# ----------------------------------------------------------------------------- normalisation, activations

class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis;
    x, y (..., C), weight and bias (C,) or None.

    reference: y = (x - x.mean(-1)) / sqrt(x.var(-1) + eps) * weight + bias
    """

    def forward(ctx, x, weight, bias, eps=1e-5):
        xp = array_module(x)
        mu = x.mean(axis=-1, keepdims=True)                 # (..., 1)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)        # (..., 1)
        rstd = 1.0 / xp.sqrt(var + eps)                     # (..., 1)
        xhat = xc * rstd                                    # (..., C)
        ctx.save(xhat, rstd, weight)
        y = xhat * weight if weight is not None else xhat
        return y + bias if bias is not None else y

    def backward(ctx, g):
        """With xhat = (x - mean) * rstd and dxhat = g * weight (means over the C axis):

            dx      = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            dweight = sum over rows of g * xhat,   dbias = sum over rows of g

        reference: the chain rule through mean(x) and var(x) in the forward formula;
        the line for dx is its result, simplified.
        g, xhat, dx (..., C); rstd (..., 1); dweight, dbias (C,).
        """
        xhat, rstd, weight = ctx.saved
        need_x, need_w, need_b = ctx.needs_input_grad
        rows = tuple(range(g.ndim - 1))
        dw = (g * xhat).sum(axis=rows) if need_w else None
        db = g.sum(axis=rows) if need_b else None
        dx = None
        if need_x:
            dxhat = g * weight if weight is not None else g
            dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                         - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
        return dx, dw, db


def layer_norm(x, weight, bias, eps=1e-5):
    """Layer normalisation over the last axis; weight and bias (C,) may be None."""
    return LayerNorm.apply(x, weight, bias, eps=eps)


_GELU_C = math.sqrt(2.0 / math.pi)


def _sigmoid_2u(x):
    """s = sigmoid(2u) = 1 / (1 + exp(-2u)),  u = c (x + 0.044715 x^3): GELU's gate,
    built in one buffer with a few in-place passes over x."""
    xp = array_module(x)
    e = x * x
    e *= -2 * _GELU_C * 0.044715
    e -= 2 * _GELU_C
    e *= x                                     # -2u
    with np.errstate(over="ignore"):           # exp -> inf gives s = 0: the right limit
        xp.exp(e, out=e)
    e += 1.0
    return xp.reciprocal(e, out=e)             # s


class GELU(Function):
    """GPT-2's tanh approximation: y = 0.5 x (1 + tanh(u)),  u = c (x + 0.044715 x^3),
    c = sqrt(2/pi). Computed as y = x * sigmoid(2u), the same function (since
    0.5 (1 + tanh u) = sigmoid(2u)) with one exp instead of a tanh, which is slower.
    x, y: any shape ((B, T, 4C) in the GPT's MLP).

    Only x is saved: backward computes the gate s again (one more exp) rather than
    keeping a second array as large as the MLP's widest activation through the step.

    reference: y = 0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3)))
    """

    def forward(ctx, x):
        ctx.save(x)
        y = _sigmoid_2u(x)
        y *= x                                     # y = x * s, in s's buffer
        return y

    def backward(ctx, g):
        """dy/dx = s + x s (1 - s) 2c (1 + 3 * 0.044715 x^2),  s = sigmoid(2u);
        dL/dx = g * dy/dx, all of x's shape. The buffer d is built in place.

        reference: dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2),
        t = tanh(u) (the same number)."""
        (x,) = ctx.saved
        s = _sigmoid_2u(x)                         # the same numbers as in forward
        d = x * x
        d *= 3 * 0.044715
        d += 1.0
        d *= x
        d *= 2 * _GELU_C                           # 2 x du/dx
        d *= s * (1.0 - s)
        d += s
        d *= g
        return d


def gelu(x):
    return GELU.apply(x)


class Dropout(Function):
    """y = x * mask / (1 - p), mask ~ Bernoulli(1 - p), so E[y] = x. x, y: any shape."""

    def forward(ctx, x, p, rng):
        xp = array_module(x)
        keep = backend.uniform(rng, x.shape, like=x) >= p
        mask = xp.asarray(keep, dtype=x.dtype) * x.dtype.type(1.0 / (1.0 - p))
        ctx.save(mask)
        return x * mask

    def backward(ctx, g):
        """dy/dx = mask / (1 - p): dropped positions get no gradient (g, mask: x's shape)."""
        (mask,) = ctx.saved
        return g * mask, None, None


def dropout(x, p, training, rng):
    """Zero each element with probability p while training (the rest scaled by
    1/(1-p)); identity in evaluation or when p == 0. `rng` is a numpy Generator."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, p, rng)


class Embedding(Function):
    """out[..., :] = weight[ids[...], :]: a row lookup; ids (B, T), weight (V, C),
    out (B, T, C) (ids may have any shape)."""

    def forward(ctx, ids, weight):
        ctx.save(ids, weight.shape)
        return weight[ids]

    def backward(ctx, g):
        """dweight[v] = sum of g at every position where ids == v (repeats add up).
        g (B, T, C) seen as (N, C); dweight (V, C); no gradient for the integer ids."""
        ids, shape = ctx.saved
        xp = array_module(g)
        dw = xp.zeros(shape, dtype=g.dtype)
        scatter_add(dw, ids.reshape(-1), g.reshape(-1, shape[1]))
        return None, dw


def embedding(ids, weight):
    """Rows of `weight` (V, C) picked by integer `ids` (any shape) -> (..., C)."""
    ids = _data(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {ids.dtype}")
    return Embedding.apply(ids, weight)


# ----------------------------------------------------------------------------- attention

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


class CausalAttention(Function):
    """out = softmax(q @ k^T / sqrt(D) + causal mask) @ v;  q (B, H, Tq, D),
    k and v (B, H, Tk, D), out (B, H, Tq, D).

    Keeps q, k, v and the (B, H, Tq, Tk) probabilities P for backward: O(T^2) memory
    per head. The fused GPU kernels (minift.cuda.FusedCausalAttention, used instead
    when they apply) keep only the output and one log-sum-exp per query row, and
    recompute P tile by tile in backward (see kernels/attention_*.cu).
    """

    def forward(ctx, q, k, v):
        xp = array_module(q)
        scale = 1.0 / math.sqrt(q.shape[-1])
        ctx.scale = scale
        s = backend.matmul(q * q.dtype.type(scale), k.swapaxes(-1, -2))  # (B, H, Tq, Tk) scaled scores
        s += _causal_bias(xp, q.shape[-2], k.shape[-2], q.dtype)
        # Softmax over the keys in place: the score buffer becomes the probabilities.
        # reference: p = softmax(s, axis=-1)
        s -= s.max(axis=-1, keepdims=True)
        p = xp.exp(s, out=s)
        p /= p.sum(axis=-1, keepdims=True)                  # (B, H, Tq, Tk)
        ctx.save(q, k, v, p)
        return backend.matmul(p, v)                         # (B, H, Tq, D)

    def flops(ctx, q, k, v):
        """(forward, backward): q k^T and P v forward, four products back, each 2 B H Tq Tk D
        as computed here (the masked half of the scores included)."""
        B, H, Tq, D = q.shape
        n = 2 * B * H * Tq * k.shape[-2] * D
        return 2 * n, 4 * n if any(ctx.needs_input_grad) else 0

    def backward(ctx, g):
        """With S = q k^T * scale, P = softmax(S + mask), out = P v and G = dL/dout:

            dv = P^T G                          (B, H, Tk, D)
            dP = G v^T                          (B, H, Tq, Tk)
            dS = P * (dP - sum_j(dP * P))       (B, H, Tq, Tk), softmax backward by rows
            dq = dS k * scale                   (B, H, Tq, D)
            dk = dS^T q * scale                 (B, H, Tk, D)

        G is (B, H, Tq, D).
        """
        q, k, v, p = ctx.saved
        need_q, need_k, need_v = ctx.needs_input_grad
        dv = backend.matmul(p.swapaxes(-1, -2), g) if need_v else None   # (B, H, Tk, D)
        # dP, then dS in the same buffer.  reference: ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        ds = backend.matmul(g, v.swapaxes(-1, -2))          # dP (B, H, Tq, Tk)
        ds -= (ds * p).sum(axis=-1, keepdims=True)
        ds *= p                                             # dS (B, H, Tq, Tk)
        scale = q.dtype.type(ctx.scale)                     # applied to the small (T, D) results
        dq = backend.matmul(ds, k) * scale if need_q else None
        dk = backend.matmul(ds.swapaxes(-1, -2), q) * scale if need_k else None
        return dq, dk, dv


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
