"""Row-blocked fused ops: cross-entropy, Linear, layer norm and GELU as minift.fast
registers them. Each class has the name, the docstring and the derivative of the
reference it subclasses (minift/functional/basic.py); only how the numbers are computed
differs:

- the rows run in blocks over the threads (threads.rowwise), each block writing its own
  rows of a preallocated output, so the split never changes a number;
- passes write into buffers in place (`out=`) instead of allocating temporaries, and row
  sums are einsum calls (sum(xc * xc) without the temporary xc * xc);
- a Linear's two gradient products and its bias sums go to the threads at once
  (products.matmuls), and its forward adds the bias in the blocks of its product;
- GELU computes x * sigmoid(2u) (the same function: 0.5 (1 + tanh u) = sigmoid(2u)) with
  one exp instead of a tanh, and saves the gate and the output instead of x, so its
  backward needs no exp at all (x = y / s);
- cross-entropy keeps exp(logits - max) and divides by the row sum in backward, where
  that joins the scaling pass; its last backward turns the saved array into the gradient.

tests/test_fast.py holds each to its reference: the same numbers to float32 rounding,
and gradcheck in float64.
"""
from functools import partial

import numpy as np

from ..backend import array_module
from ..functional import basic
from ..functional.basic import GELU_C as _GELU_C
from .products import matmul, matmuls
from .threads import blocks, row_dots, rows, rowwise


class CrossEntropy(basic.CrossEntropy):
    def forward(ctx, logits, targets, ignore_index=-100, weight=None):
        xp = array_module(logits)
        n = logits.shape[0]
        valid = targets != ignore_index
        safe_targets = xp.where(valid, targets, 0)
        row_weight = valid.astype(logits.dtype)
        if weight is not None:
            row_weight *= weight[safe_targets]
        total = row_weight.sum()
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


class Linear(basic.Linear):
    def forward(ctx, x, weight, bias=None):
        if x.shape[-1] != weight.shape[0]:
            raise ValueError(f"linear: input of shape {tuple(x.shape)} does not fit weight of shape "
                             f"{tuple(weight.shape)} (expected last axis {weight.shape[0]})")
        ctx.save(x, weight)
        return matmul(x, weight, bias)              # the bias added in the product's split

    def backward(ctx, g):
        """dx = g @ weight^T,   dweight = x^T @ g and dbias = sum of g, both over every
        row of the leading axes (flattened into one matrix product).
        g (..., Out) seen as rows (N, Out); x as (N, In); dx (..., In);
        dweight (In, Out); dbias (Out,)."""
        x, weight = ctx.saved
        need_x, need_w, need_b = (*ctx.needs_input_grad, False)[:3]     # (bias may be left out)
        g2 = g.reshape(-1, g.shape[-1])                     # (N, Out)
        x2 = x.reshape(-1, x.shape[-1])                     # (N, In)
        products = ([(g2, weight.T)] if need_x else []) + ([(x2.T, g2)] if need_w else [])
        xp = array_module(g)
        db = xp.empty(g.shape[-1], dtype=g.dtype) if need_b else None

        def column_sums(c):                                 # db for a block of the Out columns
            xp.sum(g2[:, c], axis=0, out=db[c])
        # The products and the bias sums go to the threads at once.
        results = matmuls(*products, also=blocks(column_sums, len(db), 16) if need_b else ())
        dx = results.pop(0).reshape(x.shape) if need_x else None
        dw = results.pop(0) if need_w else None
        return dx, dw, db


class LayerNorm(basic.LayerNorm):
    def forward(ctx, x, weight, bias, eps=1e-5):
        xp = array_module(x)
        xhat = xp.empty(x.shape, dtype=x.dtype)             # (..., C), C order (written by rows)
        rstd = xp.empty(x.shape[:-1] + (1,), dtype=x.dtype)  # (..., 1)
        y = xp.empty(x.shape, dtype=x.dtype)
        rowwise(partial(_layer_norm_rows, weight=weight, bias=bias, eps=eps),
                (rows(x),), (rows(xhat), rows(rstd), rows(y)))
        ctx.save(xhat, rstd, weight)
        return y

    def backward(ctx, g):
        """With xhat = (x - mean) * rstd and dxhat = g * weight (means over the C axis):

            dx      = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            dweight = sum over rows of g * xhat,   dbias = sum over rows of g

        reference: the chain rule through mean(x) and var(x) in the forward formula;
        the line for dx is its result, simplified. mean(dxhat) = g @ weight / C is one
        matrix-vector product; dx is built in its own buffer (_layer_norm_grad_rows).
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
        if not need_x:
            for task in sums:
                task()
            return None, dw, db
        dx = xp.empty(xhat.shape, dtype=xhat.dtype)
        w = weight if weight is not None else xp.ones(C, dtype=g.dtype)
        rowwise(partial(_layer_norm_grad_rows, weight=w, weight_mean=w / C),
                (g2, xhat2, rows(rstd)), (rows(dx),), also=sums)    # the row blocks and the two sums at once
        return dx, dw, db


def _layer_norm_rows(x, xhat, rstd, y, weight, bias, eps):
    """LayerNorm.forward on rows x (n, C): xhat, rstd (n, 1) and y, each row on its
    own. The row means are dot products with a row of 1 / C (row_dots: each row's sum
    is taken the same way however the rows are split)."""
    xp = array_module(x)
    inverse_c = _inverse_c(x.shape[1], x.dtype)             # (C,) of 1 / C
    xp.subtract(x, row_dots(x, inverse_c)[:, None], out=xhat)    # xc = x - mean
    var = row_dots(xhat, xhat)[:, None]                     # (n, 1) C * mean(xc^2)
    var *= inverse_c[0]
    var += eps
    xp.sqrt(var, out=rstd)
    xp.reciprocal(rstd, out=rstd)
    xhat *= rstd                                            # xc -> xhat
    if weight is not None:
        xp.multiply(xhat, weight, out=y)
    else:
        y[...] = xhat
    if bias is not None:
        y += bias


def _layer_norm_grad_rows(g, xhat, rstd, dx, weight, weight_mean):
    """dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) on rows (n, C),
    with dxhat = g * weight and mean(dxhat) = the dot product of g with weight / C."""
    xp = array_module(g)
    m1 = row_dots(g, weight_mean)[:, None]                  # (n, 1) mean(dxhat)
    xp.multiply(g, weight, out=dx)                          # dxhat
    m2 = row_dots(dx, xhat)[:, None] / dx.shape[1]          # (n, 1) mean(dxhat * xhat)
    dx -= m1
    dx -= xp.multiply(xhat, m2)
    dx *= rstd


_inverse_cs = {}


def _inverse_c(C, dtype):
    """A row (C,) of 1 / C: its dot product with a row of x is the row's mean."""
    key = (C, np.dtype(dtype).str)
    if key not in _inverse_cs:
        _inverse_cs[key] = np.full(C, 1.0 / C, dtype=dtype)
    return _inverse_cs[key]


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


class GELU(basic.GELU):
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
