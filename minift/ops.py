"""Primitive differentiable ops, one class each, forward and backward side by side.

Each op's docstring states the derivative its backward implements, with g = dL/d(output).
Gradients may come back in a broadcast shape: the engine (`tensor.unbroadcast`) sums
them back to each input's shape. The ops are math only: where a device has a faster
way (a matrix product), they ask `backend` for it. Ops marked `@primitive` are the
ones Tensor's operators and methods run (`a + b` is Add, `x.sum()` is Sum, ...); the
functions at the bottom are the same ops for code that prefers calls (`exp(x)`).
"""
import math

import numpy as np

from . import backend
from .backend import array_module, scatter_add
from .tensor import Function, Tensor, primitive


# ----------------------------------------------------------------------------- elementwise

@primitive
class Add(Function):
    def forward(ctx, a, b):
        return a + b

    def backward(ctx, g):
        """d(a+b)/da = 1, d(a+b)/db = 1."""
        return g, g


@primitive
class Sub(Function):
    def forward(ctx, a, b):
        return a - b

    def backward(ctx, g):
        """d(a-b)/da = 1, d(a-b)/db = -1."""
        return g, (-g if ctx.needs_input_grad[1] else None)


@primitive
class Mul(Function):
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    def backward(ctx, g):
        """d(a*b)/da = b, d(a*b)/db = a."""
        a, b = ctx.saved
        ga, gb = ctx.needs_input_grad
        return (g * b if ga else None), (g * a if gb else None)


@primitive
class Div(Function):
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    def backward(ctx, g):
        """d(a/b)/da = 1/b, d(a/b)/db = -a/b**2."""
        a, b = ctx.saved
        ga, gb = ctx.needs_input_grad
        return (g / b if ga else None), (-g * a / (b * b) if gb else None)


@primitive
class Neg(Function):
    def forward(ctx, a):
        return -a

    def backward(ctx, g):
        """d(-a)/da = -1."""
        return -g


@primitive
class Pow(Function):
    """a ** p for a constant (Python number) exponent p."""

    def forward(ctx, a, p):
        ctx.save(a, p)
        return a ** p

    def backward(ctx, g):
        """d(a**p)/da = p * a**(p-1)."""
        a, p = ctx.saved
        return g * (p * a ** (p - 1)), None


@primitive
class Exp(Function):
    def forward(ctx, a):
        y = array_module(a).exp(a)
        ctx.save(y)
        return y

    def backward(ctx, g):
        """d(exp a)/da = exp a (the saved output)."""
        (y,) = ctx.saved
        return g * y


@primitive
class Log(Function):
    def forward(ctx, a):
        ctx.save(a)
        return array_module(a).log(a)

    def backward(ctx, g):
        """d(log a)/da = 1/a."""
        (a,) = ctx.saved
        return g / a


@primitive
class Sqrt(Function):
    def forward(ctx, a):
        y = array_module(a).sqrt(a)
        ctx.save(y)
        return y

    def backward(ctx, g):
        """d(sqrt a)/da = 1 / (2 sqrt a)."""
        (y,) = ctx.saved
        return g / (2 * y)


@primitive
class Tanh(Function):
    def forward(ctx, a):
        y = array_module(a).tanh(a)
        ctx.save(y)
        return y

    def backward(ctx, g):
        """d(tanh a)/da = 1 - tanh(a)**2."""
        (y,) = ctx.saved
        return g * (1 - y * y)


@primitive
class ReLU(Function):
    def forward(ctx, a):
        mask = a > 0
        ctx.save(mask)
        return a * mask

    def backward(ctx, g):
        """d(relu a)/da = 1 where a > 0, else 0 (0 at a == 0, as PyTorch)."""
        (mask,) = ctx.saved
        return g * mask


@primitive
class Cast(Function):
    def forward(ctx, a, dtype):
        ctx.in_dtype = a.dtype
        return a.astype(dtype)

    def backward(ctx, g):
        """d(cast a)/da = 1: g itself, cast back to the input's dtype."""
        return g.astype(ctx.in_dtype)


@primitive
class Where(Function):
    """where(cond, a, b): a where cond is true, b elsewhere; cond is a plain bool array."""

    def forward(ctx, cond, a, b):
        ctx.save(cond)
        return array_module(cond, a, b).where(cond, a, b)

    def backward(ctx, g):
        """d/da = cond, d/db = not cond (the gradient is routed, never mixed)."""
        (cond,) = ctx.saved
        _, ga, gb = ctx.needs_input_grad
        zero = g.dtype.type(0)
        return (None,
                g * cond if ga else None,
                array_module(g).where(cond, zero, g) if gb else None)


# ----------------------------------------------------------------------------- matmul

@primitive
class MatMul(Function):
    """a @ b for a, b with ndim >= 2; leading (batch) axes broadcast as in NumPy."""

    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are incompatible "
                             f"(need ndim >= 2 and a.shape[-1] == b.shape[-2])")
        ctx.save(a, b)
        return backend.matmul(a, b)

    def flops(ctx, a, b):
        """(forward, backward) multiply-adds x 2: one product forward, one per input grad back."""
        n = 2 * math.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])) * a.shape[-2] * a.shape[-1] * b.shape[-1]
        return n, n * sum(ctx.needs_input_grad)

    def backward(ctx, g):
        """For C = A @ B:  dA = G @ B^T,  dB = A^T @ G  (batch axes summed by the engine).

        When B is a plain matrix shared by a batch of A (a Linear weight applied to
        (B, T, C) activations), dB is one matrix product over the flattened rows
        instead of a stack of products summed afterwards.
        """
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = gb = None
        if need_a:
            ga = backend.matmul(g, b.swapaxes(-1, -2))
        if need_b:
            if b.ndim == 2 and a.ndim > 2:   # shared weight: one GEMM over all rows
                gb = backend.matmul(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]))
            else:
                gb = backend.matmul(a.swapaxes(-1, -2), g)
        return ga, gb


# ----------------------------------------------------------------------------- reductions

def _normalize_axis(axis, ndim):
    """axis (None, int or tuple) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


def _expand_reduced(g, in_shape, axes, keepdims):
    """Give a reduced gradient back its reduced axes (size 1) so it broadcasts."""
    if not keepdims:
        g = g.reshape([1 if i in axes else n for i, n in enumerate(in_shape)])
    return g


@primitive
class Sum(Function):
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.in_shape, ctx.axes, ctx.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        return a.sum(axis=ctx.axes, keepdims=keepdims)

    def backward(ctx, g):
        """d(sum a)/da = 1 for every summed element: g is broadcast back to a's shape."""
        g = _expand_reduced(g, ctx.in_shape, ctx.axes, ctx.keepdims)
        return array_module(g).broadcast_to(g, ctx.in_shape)


@primitive
class Mean(Function):
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.in_shape, ctx.axes, ctx.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes]))
        return a.mean(axis=ctx.axes, keepdims=keepdims)

    def backward(ctx, g):
        """d(mean a)/da = 1/n for every averaged element (n = number averaged)."""
        g = _expand_reduced(g, ctx.in_shape, ctx.axes, ctx.keepdims) / ctx.count
        return array_module(g).broadcast_to(g, ctx.in_shape)


@primitive
class Max(Function):
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.axes, ctx.keepdims = _normalize_axis(axis, a.ndim), keepdims
        y = a.max(axis=ctx.axes, keepdims=True)
        ctx.save(a, y)
        return y if keepdims else y.reshape([n for i, n in enumerate(y.shape) if i not in ctx.axes])

    def backward(ctx, g):
        """d(max a)/da = 1 at the maximum, 0 elsewhere; tied maxima share the gradient
        equally (the subgradient that keeps the sum of gradients equal to g)."""
        a, y = ctx.saved
        g = _expand_reduced(g, a.shape, ctx.axes, ctx.keepdims)
        is_max = a == y
        return g * is_max / is_max.sum(axis=ctx.axes, keepdims=True)


# ----------------------------------------------------------------------------- shape

@primitive
class Reshape(Function):
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return a.reshape(shape)

    def backward(ctx, g):
        """d(reshape a)/da is the identity on the elements, which only move: g is reshaped
        back to a's shape."""
        return g.reshape(ctx.in_shape)


@primitive
class Permute(Function):
    def forward(ctx, a, axes):
        ctx.axes = tuple(axes)
        return a.transpose(ctx.axes)

    def backward(ctx, g):
        """d(permute a)/da is a permutation of the elements: g is permuted back by the
        inverse permutation (argsort of the axes)."""
        return g.transpose(np.argsort(ctx.axes))


@primitive
class GetItem(Function):
    """a[index] for basic slices and integer-array ("fancy") indices."""

    def forward(ctx, a, index):
        ctx.in_shape, ctx.index = a.shape, index
        return a[index]

    def backward(ctx, g):
        """d(a[index])/da scatters g back to the selected positions; positions selected
        more than once receive the sum of their gradients (np.add.at, not assignment)."""
        xp = array_module(g)
        out = xp.zeros(ctx.in_shape, dtype=g.dtype)
        if _has_array_index(ctx.index):
            scatter_add(out, ctx.index, g)
        else:
            out[ctx.index] = g
        return out


def _has_array_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(p, (int, slice, type(None), type(Ellipsis))) for p in parts)


class Concat(Function):
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        ctx.sizes = [x.shape[axis] for x in arrays]
        return array_module(*arrays).concatenate(arrays, axis=axis)

    def backward(ctx, g):
        """d(concat)/dx_i is the identity on x_i's part of the output: input i gets its own
        slice of g along `axis`."""
        xp = array_module(g)
        return tuple(xp.split(g, np.cumsum(ctx.sizes)[:-1].tolist(), axis=ctx.axis))


class Stack(Function):
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        return array_module(*arrays).stack(arrays, axis=axis)

    def backward(ctx, g):
        """d(stack)/dx_i is the identity on slice i of the new axis: input i gets
        g[..., i, ...]."""
        n = g.shape[ctx.axis]
        return tuple(g.take(i, axis=ctx.axis) for i in range(n))


# ----------------------------------------------------------------------------- functions

def matmul(a, b):
    return MatMul.apply(a, b)


def concat(tensors, axis=0):
    """Join tensors along an existing axis."""
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Join tensors along a new axis."""
    return Stack.apply(*tensors, axis=axis)


def split(x, sections, axis=-1):
    """Split x along `axis` into `sections` equal parts (an int) or at the given
    sizes (a list). Each part is a slice (GetItem), so its backward is GetItem's."""
    n = x.shape[axis]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {sections} parts")
        sizes = [n // sections] * sections
    else:
        sizes = list(sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the size of axis {axis}")
    axis %= x.ndim
    parts, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        parts.append(GetItem.apply(x, index))
        start += size
    return parts


def where(cond, a, b):
    """a where `cond` (a plain boolean array) is true, else b; a and b broadcast."""
    if isinstance(cond, Tensor):
        cond = cond.data
    return Where.apply(cond, a, b)


def masked_fill(x, mask, value):
    """x with `value` wherever `mask` is true (no gradient flows to filled positions)."""
    if isinstance(mask, Tensor):
        mask = mask.data
    return Where.apply(mask, x.dtype.type(value) if isinstance(x, Tensor) else value, x)


def exp(x):
    return Exp.apply(x)


def log(x):
    return Log.apply(x)


def sqrt(x):
    return Sqrt.apply(x)


def tanh(x):
    return Tanh.apply(x)


def relu(x):
    return ReLU.apply(x)
