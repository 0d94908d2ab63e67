"""Fused ops with hand-written backward passes: softmax, log_softmax, cross_entropy,
linear, layer_norm, gelu, dropout, embedding (attention has its own module).

Each could be written as a chain of primitives from `ops`, but a fused op is one node
with its derivative worked out by hand: numerically stable (softmax shifts by the row
maximum), lighter on memory, and the exact specification that `minift.fast` and the GPU
kernels reproduce (tests hold them to it). Each is written in its plainest NumPy form,
the formula beside the code. The function under each class (`layer_norm(...)`) is what
models call: it runs the class, or the faster implementation an appendix registered for
the arrays' device (`backend.implementation`).

Axes: B batch, T time, C channels, V vocabulary or classes, N rows (leading axes
flattened, B*T).
"""
import math

from .. import backend
from ..backend import array_module, scatter_add
from ..tensor import Function, Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


# ----------------------------------------------------------------------------- softmax family

class Softmax(Function):
    """y = exp(x) / sum exp(x) along `axis`; x, y (N, V) for axis=-1 (any shape and
    axis work the same way).

    exp overflows past 709 in float64 (88 in float32), and logits that large occur.
    Shifting every element of a row by the same number changes nothing mathematically
    (the shift cancels between the numerator and the sum), so forward shifts each row
    until exp cannot overflow.
    """

    def forward(ctx, x, axis=-1):
        xp = array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))     # (N, V), each at most 1
        y = e / e.sum(axis=axis, keepdims=True)             # (N, V), rows sum to 1
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

    log(softmax(x)), computed without forming softmax(x): stable when a probability
    underflows to 0.
    """

    def forward(ctx, x, axis=-1):
        xp = array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)                        # (N, V)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))  # (N, V)
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
    With class `weight` (V,), row n counts w_n = weight[t_n] times, and the mean divides
    by the sum of those weights (as PyTorch does):

        loss = -sum_n w_n log p[n, t_n] / sum_n w_n,   p = softmax(logits)
    """

    def forward(ctx, logits, targets, ignore_index=-100, weight=None):
        xp = array_module(logits)
        rows = xp.arange(len(logits))                                   # (N,)
        valid = targets != ignore_index                                 # (N,) rows that count
        t = xp.where(valid, targets, 0)                                 # (N,) a real class everywhere
        w = (valid * (weight[t] if weight is not None else 1)).astype(logits.dtype)   # (N,) w_n
        shifted = logits - logits.max(axis=1, keepdims=True)            # (N, V), each row's max is 0
        e = xp.exp(shifted)                                             # (N, V), at most 1: no overflow
        sum_e = e.sum(axis=1)                                           # (N,)
        nll = xp.log(sum_e) - shifted[rows, t]                          # (N,) -log p[n, t_n], never log(0)
        ctx.save(e / sum_e[:, None], t, w / w.sum())                    # p = softmax(logits), (N, V)
        return (w * nll).sum() / w.sum()

    def backward(ctx, g):
        """dL/dlogits[n] = w_n / sum(w) * (p[n] - onehot(t_n)),  times the upstream g.
        g () a scalar; p, dL/dlogits (N, V); t and w_n / sum(w) (N,)."""
        p, t, w = ctx.saved
        d = p.copy()                                                    # (N, V)
        d[array_module(p).arange(len(p)), t] -= 1                       # p - onehot(t)
        return g * w[:, None] * d, None


def cross_entropy(logits, targets, ignore_index=-100, weight=None):
    """Cross-entropy of logits (..., V) against integer targets (...), averaged over
    the targets that are not `ignore_index`. Raises ValueError when no target counts
    (every one ignored, or every class weight of the targets zero): an empty mean has
    no value. `weight` (V,) weights the classes."""
    targets, weight = _data(targets), _data(weight)
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {tuple(targets.shape)} do not match "
                         f"logits of shape {tuple(logits.shape)} (expected targets {tuple(logits.shape[:-1])})")
    targets = targets.reshape(-1)
    valid = targets != ignore_index
    if not valid.any():
        raise ValueError(f"cross_entropy: every target equals ignore_index ({ignore_index}); "
                         "there is nothing to average")
    if weight is not None and not float(weight[targets[valid]].sum()) > 0:
        raise ValueError("cross_entropy: the class weights of the targets sum to "
                         f"{float(weight[targets[valid]].sum())}; a weighted mean needs a positive total "
                         "(give each class present a weight above 0)")
    flat = logits.reshape(-1, V) if logits.ndim != 2 else logits
    op = backend.implementation("cross_entropy", CrossEntropy, _data(flat))
    return op.apply(flat, targets, ignore_index=ignore_index, weight=weight)


# ----------------------------------------------------------------------------- linear

class Linear(Function):
    """y = x @ weight + bias;  x (..., In), weight (In, Out), bias (Out,) or None,
    y (..., Out). In and Out are the feature sizes (C, 3C, 4C, ... in the GPT).

    Every row of the leading axes goes through the same weight: the rows are flattened
    into one (N, In) matrix, one matrix product for all of them.
    """

    def forward(ctx, x, weight, bias=None):
        if x.shape[-1] != weight.shape[0]:
            raise ValueError(f"linear: input of shape {tuple(x.shape)} does not fit weight of shape "
                             f"{tuple(weight.shape)} (expected last axis {weight.shape[0]})")
        ctx.save(x, weight)
        y = backend.matmul(x.reshape(-1, x.shape[-1]), weight)    # (N, Out)
        if bias is not None:
            y = y + bias                                          # (Out,) added to every row
        return y.reshape(*x.shape[:-1], weight.shape[1])

    def flops(ctx, x, weight, bias=None):
        """(forward, backward): 2 N In Out for the product, again for dx and for dweight."""
        n = 2 * (x.size // x.shape[-1]) * weight.shape[0] * weight.shape[1]
        return n, n * (ctx.needs_input_grad[0] + ctx.needs_input_grad[1])

    def backward(ctx, g):
        """dx = g @ weight^T,   dweight = x^T @ g,   dbias = sum of g over the rows.
        g (..., Out) seen as rows (N, Out); x as (N, In); dx (..., In);
        dweight (In, Out); dbias (Out,)."""
        x, weight = ctx.saved
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])   # (N, Out), (N, In)
        dx = backend.matmul(g2, weight.T).reshape(x.shape)
        dweight = backend.matmul(x2.T, g2)
        return dx, dweight, g2.sum(axis=0)


def linear(x, weight, bias=None):
    return backend.implementation("linear", Linear, _data(x)).apply(x, weight, bias)


# ----------------------------------------------------------------------------- normalisation, activations

class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis;
    x, y (..., C), weight and bias (C,) or None.
    """

    def forward(ctx, x, weight, bias, eps=1e-5):
        xp = array_module(x)
        mean = x.mean(axis=-1, keepdims=True)                     # (..., 1)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)      # (..., 1)
        rstd = 1 / xp.sqrt(var + eps)                             # (..., 1)
        xhat = (x - mean) * rstd                                  # (..., C): mean 0, variance 1
        ctx.save(xhat, rstd, weight)
        y = xhat * weight if weight is not None else xhat
        return y + bias if bias is not None else y

    def backward(ctx, g):
        """With xhat = (x - mean) * rstd and dxhat = g * weight (means over the C axis):

            dx      = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            dweight = sum over rows of g * xhat,   dbias = sum over rows of g

        The line for dx is the chain rule through mean(x) and var(x), simplified.
        g, xhat, dx (..., C); rstd (..., 1); dweight, dbias (C,).
        """
        xhat, rstd, weight = ctx.saved
        rows = tuple(range(g.ndim - 1))                           # every axis but C
        dxhat = g * weight if weight is not None else g           # (..., C)
        dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                     - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
        return dx, (g * xhat).sum(axis=rows), g.sum(axis=rows)


def layer_norm(x, weight, bias, eps=1e-5):
    """Layer normalisation over the last axis; weight and bias (C,) may be None."""
    return backend.implementation("layer_norm", LayerNorm, _data(x)).apply(x, weight, bias, eps=eps)


GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """GPT-2's tanh approximation of x * Phi(x):

        y = 0.5 x (1 + tanh(u)),   u = c (x + 0.044715 x^3),   c = sqrt(2 / pi)

    x, y: any shape ((B, T, 4C) in the GPT's MLP).
    """

    def forward(ctx, x):
        xp = array_module(x)
        # x * x * x is x^3: NumPy's x ** 3 takes a general power, about 30 times slower
        t = xp.tanh(GELU_C * (x + 0.044715 * x * x * x))          # tanh(u), x's shape
        ctx.save(x, t)
        return 0.5 * x * (1 + t)

    def backward(ctx, g):
        """dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx,   du/dx = c (1 + 3 * 0.044715 x^2),
        t = tanh(u);  dL/dx = g * dy/dx, all of x's shape."""
        x, t = ctx.saved
        du = GELU_C * (1 + 3 * 0.044715 * x * x)                  # du/dx
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


def gelu(x):
    return backend.implementation("gelu", GELU, _data(x)).apply(x)


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
        dw = array_module(g).zeros(shape, dtype=g.dtype)
        scatter_add(dw, ids.reshape(-1), g.reshape(-1, shape[1]))
        return None, dw


def embedding(ids, weight):
    """Rows of `weight` (V, C) picked by integer `ids` (any shape) -> (..., C)."""
    ids = _data(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {ids.dtype}")
    return Embedding.apply(ids, weight)
