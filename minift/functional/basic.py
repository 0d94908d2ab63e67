"""Fused ops with hand-written backward passes: softmax, log_softmax, cross_entropy,
linear, layer_norm, gelu, dropout, embedding (attention has its own module).

Each could be written as a chain of primitives from `ops`, but a fused op is faster
(one pass, few temporaries), numerically stable (softmax shifts by the row maximum),
and it is the exact specification that the GPU kernels reproduce. Where a buffer is
updated in place for speed, a "reference:" line gives the plain formula it computes.
Row-wise work runs in row blocks over minift's threads (`parallel.rowwise`).

Axes: B batch, T time, C channels, V vocabulary or classes, N rows (leading axes
flattened, B*T).
"""
import math

import numpy as np

from .. import backend
from ..backend import array_module, scatter_add
from ..parallel import blocks, rows, rowwise
from ..tensor import Function, Tensor


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
        e = xp.empty(logits.shape, dtype=logits.dtype)     # (N, V)
        sum_exp = xp.empty(n, dtype=logits.dtype)           # (N,)
        nll = xp.empty(n, dtype=logits.dtype)               # (N,) -log p[n, t_n]
        rowwise(_cross_entropy_rows, (logits, safe_targets), (e, sum_exp, nll))
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
        grad = e if getattr(ctx, "last_backward", False) else xp.empty(e.shape, dtype=e.dtype)

        def block(e, row_factor, targets, row_scale, grad):
            xp.multiply(e, row_factor[:, None], out=grad)    # (n, V) scaled p
            grad[xp.arange(len(grad)), targets] -= row_scale  # minus the one-hot
        rowwise(block, (e, row_scale / sum_exp, targets, row_scale), (grad,))
        return grad, None


def _cross_entropy_rows(logits, targets, e, sum_exp, nll):
    """Rows of CrossEntropy.forward: e = exp(logits - row max), its row sums, and
    -log p[n, t_n] = log(sum_exp) - (logits - max)[n, t_n]."""
    xp = array_module(logits)
    xp.subtract(logits, logits.max(axis=1, keepdims=True), out=e)
    shifted_target = e[xp.arange(len(e)), targets]        # (n,)
    xp.exp(e, out=e)                                      # unnormalised probabilities
    e.sum(axis=1, out=sum_exp)
    xp.subtract(xp.log(sum_exp), shifted_target, out=nll)


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
        return backend.matmul(x, weight, bias)              # the bias added in the product's split

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
        g2 = g.reshape(-1, g.shape[-1])                     # (N, Out)
        x2 = x.reshape(-1, x.shape[-1])                     # (N, In)
        products = ([(g2, weight.T)] if need_x else []) + ([(x2.T, g2)] if need_w else [])
        xp = array_module(g)
        db = xp.empty(g.shape[-1], dtype=g.dtype) if need_b else None

        def column_sums(c):                                 # db for a block of the Out columns
            xp.sum(g2[:, c], axis=0, out=db[c])
        # The products and the bias sums go to the threads at once.
        results = backend.matmuls(*products, also=blocks(column_sums, len(db), 16) if need_b else ())
        dx = results.pop(0).reshape(x.shape) if need_x else None
        dw = results.pop(0) if need_w else None
        return dx, dw, db


def linear(x, weight, bias=None):
    return Linear.apply(x, weight, bias)


# ----------------------------------------------------------------------------- normalisation, activations

class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis;
    x, y (..., C), weight and bias (C,) or None.

    Every pass over the (N, C) rows costs a trip through memory, so the row sums are
    einsum calls (sum(xc * xc) without the temporary xc * xc) and the rest is written
    in place.

    reference: y = (x - x.mean(-1)) / sqrt(x.var(-1) + eps) * weight + bias
    """

    def forward(ctx, x, weight, bias, eps=1e-5):
        xp = array_module(x)
        C = x.shape[-1]
        xhat = xp.empty(x.shape, dtype=x.dtype)             # (..., C), C order (written by rows)
        rstd = xp.empty(x.shape[:-1] + (1,), dtype=x.dtype)  # (..., 1)
        y = xp.empty(x.shape, dtype=x.dtype)

        def block(x, xhat, rstd, y):                        # x (n, C): each row on its own
            xp.subtract(x, xp.einsum("ij->i", x)[:, None] / C, out=xhat)   # xc = x - mean
            var = xp.einsum("ij,ij->i", xhat, xhat) / C               # (n,) mean of xc^2
            rstd[:, 0] = 1.0 / xp.sqrt(var + eps)
            xhat *= rstd                                              # xc -> xhat
            if weight is not None:
                xp.multiply(xhat, weight, out=y)
            else:
                y[...] = xhat
            if bias is not None:
                y += bias
        rowwise(block, (rows(x),), (rows(xhat), rows(rstd), rows(y)))
        ctx.save(xhat, rstd, weight)
        return y

    def backward(ctx, g):
        """With xhat = (x - mean) * rstd and dxhat = g * weight (means over the C axis):

            dx      = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            dweight = sum over rows of g * xhat,   dbias = sum over rows of g

        reference: the chain rule through mean(x) and var(x) in the forward formula;
        the line for dx is its result, simplified. The row means are einsum calls, as
        in forward; dx is built in its own buffer.
        g, xhat, dx (..., C); rstd (..., 1); dweight, dbias (C,).
        """
        xhat, rstd, weight = ctx.saved
        xp = array_module(g)
        need_x, need_w, need_b = ctx.needs_input_grad
        g2, xhat2, C = rows(g), rows(xhat), g.shape[-1]     # (N, C)
        dw = xp.empty(C, dtype=g.dtype) if need_w else None
        db = xp.empty(C, dtype=g.dtype) if need_b else None

        sums = []                                           # whole-array calls: no split changes them
        if need_w:
            sums.append(lambda: xp.einsum("ij,ij->j", g2, xhat2, out=dw))
        if need_b:
            sums.append(lambda: xp.matmul(xp.ones(len(g2), dtype=g.dtype), g2, out=db))
        dx = xp.empty(xhat.shape, dtype=xhat.dtype) if need_x else None

        def block(g, xhat, rstd, dx):                       # (n, C), (n, C), (n, 1) -> (n, C)
            dxhat = g * weight if weight is not None else g
            m1 = xp.einsum("ij->i", dxhat) / C              # (n,) mean(dxhat)
            m2 = xp.einsum("ij,ij->i", dxhat, xhat) / C     # (n,) mean(dxhat * xhat)
            xp.multiply(xhat, m2[:, None], out=dx)
            xp.subtract(dxhat, dx, out=dx)
            dx -= m1[:, None]
            dx *= rstd
        if need_x:                                          # the row blocks and the two sums at once
            rowwise(block, (g2, xhat2, rows(rstd)), (rows(dx),), also=sums)
        else:
            for task in sums:
                task()
        return dx, dw, db


def layer_norm(x, weight, bias, eps=1e-5):
    """Layer normalisation over the last axis; weight and bias (C,) may be None."""
    return LayerNorm.apply(x, weight, bias, eps=eps)


_GELU_C = math.sqrt(2.0 / math.pi)


def _sigmoid_2u(x, out):
    """out = sigmoid(2u) = 1 / (1 + exp(-2u)),  u = c (x + 0.044715 x^3): GELU's gate,
    built in the buffer `out` with a few in-place passes."""
    xp = array_module(x)
    e = xp.multiply(x, x, out=out)
    e *= -2 * _GELU_C * 0.044715
    e -= 2 * _GELU_C
    e *= x                                     # -2u
    with np.errstate(over="ignore"):           # exp -> inf gives s = 0: the right limit
        xp.exp(e, out=e)
    e += 1.0
    return xp.reciprocal(e, out=e)             # s


def _gelu_rows(x, s, y):
    _sigmoid_2u(x, out=s)
    array_module(x).multiply(x, s, out=y)      # y = x * s


def _gelu_grad_rows(y, s, g, d):
    xp = array_module(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xp.divide(y, s, out=d)                 # x = y / s (0 / 0 where s underflowed to 0)
    d *= d
    xp.fmax(d, 0.0, out=d)                     # x^2; fmax drops that NaN: y = 0 there anyway
    d *= 6 * _GELU_C * 0.044715
    d += 2 * _GELU_C                           # 2 du/dx = 2c (1 + 3 * 0.044715 x^2)
    d *= y                                     # x s (2 du/dx)
    d *= 1.0 - s
    d += s
    d *= g


class GELU(Function):
    """GPT-2's tanh approximation: y = 0.5 x (1 + tanh(u)),  u = c (x + 0.044715 x^3),
    c = sqrt(2/pi). Computed as y = x * sigmoid(2u), the same function (since
    0.5 (1 + tanh u) = sigmoid(2u)) with one exp instead of a tanh, which is slower.
    x, y: any shape ((B, T, 4C) in the GPT's MLP).

    Saves the gate s = sigmoid(2u) and the output y, not x: backward needs s, and
    computing it again would cost a second exp, the slowest pass here. x is y / s.
    In the GPT this keeps no more memory than saving x would: the next Linear keeps
    y for its own backward anyway, and x is freed.

    reference: y = 0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3)))
    """

    def forward(ctx, x):
        xp = array_module(x)
        s = xp.empty(x.shape, dtype=x.dtype)               # C order: written by rows
        y = xp.empty(x.shape, dtype=x.dtype)
        rowwise(_gelu_rows, (rows(x),), (rows(s), rows(y)))
        ctx.save(y, s)
        return y

    def backward(ctx, g):
        """dy/dx = s + x s (1 - s) 2c (1 + 3 * 0.044715 x^2),  s = sigmoid(2u),  x s = y;
        dL/dx = g * dy/dx, all of x's shape. The buffer d is built in place
        (_gelu_grad_rows). Where s underflowed to 0 (x below about -9), dy/dx = 0.

        reference: dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2),
        t = tanh(u) (the same number)."""
        y, s = ctx.saved
        d = array_module(y).empty(y.shape, dtype=y.dtype)
        rowwise(_gelu_grad_rows, (rows(y), rows(s), rows(g)), (rows(d),))
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
