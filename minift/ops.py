"""Primitive differentiable ops, one class each, forward and backward side by side.

Each backward's docstring states the derivative it implements, with g = dL/d(output).
Gradients may come back in a broadcast shape: the engine (`tensor.unbroadcast`) sums
them back to each input's shape. At the bottom, the Tensor operator overloads and
methods (`a + b`, `a @ b`, `x.sum(axis)`, `x[idx]`, ...) are attached to Tensor.
"""
import numpy as np

from .backend import array_module, scatter_add
from .tensor import Function, Tensor


def array_matmul(a, b):
    """a @ b on raw arrays (NumPy or CuPy), by the fastest path each device offers."""
    if b.ndim == 2 and a.ndim > 2:
        # (..., K) @ (K, N) is one GEMM over all rows: much faster than NumPy's loop
        # over the batch, and the form the GPU kernel takes.
        return array_matmul(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])
    if type(a) is np.ndarray:
        if (a.ndim > 2 or b.ndim > 2) and not (a.flags.c_contiguous and b.flags.c_contiguous):
            return _stacked_matmul(a, b)
        return a @ b
    if a.dtype != np.float32 or b.dtype != np.float32:
        return a @ b
    # On the GPU: minift's own SGEMM kernel (imported here, so CPU users never load it).
    from . import kernels
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = kernels.matmul(_stack3(a, batch), _stack3(b, batch))
    return out.reshape(*batch, a.shape[-2], b.shape[-1])


def _stacked_matmul(a, b):
    """a @ b for NumPy stacks of which one is a strided view (such as k.swapaxes(-1, -2)).

    NumPy hands a stack of matrices to BLAS only when it is contiguous; a transposed
    view falls to a generic loop about 100x slower. BLAS itself takes a transposed
    2-D matrix at full speed, so multiply matrix by matrix (no copy of the operands).
    """
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    out = np.empty(batch + (a.shape[-2], b.shape[-1]), dtype=np.result_type(a, b))
    for i in np.ndindex(*batch):
        np.matmul(a[i], b[i], out=out[i])
    return out


def _stack3(x, batch):
    """x as a (n, rows, cols) stack for the batched GPU kernel: n = prod(batch), or 1
    for a plain matrix, which the kernel broadcasts over the batch."""
    if x.ndim == 2:
        return x[None]
    if x.shape[:-2] != batch:
        x = array_module(x).broadcast_to(x, batch + x.shape[-2:])
    return x.reshape(-1, *x.shape[-2:])


# ----------------------------------------------------------------------------- elementwise

class Add(Function):
    def forward(ctx, a, b):
        return a + b

    def backward(ctx, g):
        """d(a+b)/da = 1, d(a+b)/db = 1."""
        return g, g


class Sub(Function):
    def forward(ctx, a, b):
        return a - b

    def backward(ctx, g):
        """d(a-b)/da = 1, d(a-b)/db = -1."""
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    def backward(ctx, g):
        """d(a*b)/da = b, d(a*b)/db = a."""
        a, b = ctx.saved
        ga, gb = ctx.needs_input_grad
        return (g * b if ga else None), (g * a if gb else None)


class Div(Function):
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    def backward(ctx, g):
        """d(a/b)/da = 1/b, d(a/b)/db = -a/b**2."""
        a, b = ctx.saved
        ga, gb = ctx.needs_input_grad
        return (g / b if ga else None), (-g * a / (b * b) if gb else None)


class Neg(Function):
    def forward(ctx, a):
        return -a

    def backward(ctx, g):
        """d(-a)/da = -1."""
        return -g


class Pow(Function):
    """a ** p for a constant (Python number) exponent p."""

    def forward(ctx, a, p):
        ctx.save(a, p)
        return a ** p

    def backward(ctx, g):
        """d(a**p)/da = p * a**(p-1)."""
        a, p = ctx.saved
        return g * (p * a ** (p - 1)), None


class Exp(Function):
    def forward(ctx, a):
        y = array_module(a).exp(a)
        ctx.save(y)
        return y

    def backward(ctx, g):
        """d(exp a)/da = exp a (the saved output)."""
        (y,) = ctx.saved
        return g * y


class Log(Function):
    def forward(ctx, a):
        ctx.save(a)
        return array_module(a).log(a)

    def backward(ctx, g):
        """d(log a)/da = 1/a."""
        (a,) = ctx.saved
        return g / a


class Sqrt(Function):
    def forward(ctx, a):
        y = array_module(a).sqrt(a)
        ctx.save(y)
        return y

    def backward(ctx, g):
        """d(sqrt a)/da = 1 / (2 sqrt a)."""
        (y,) = ctx.saved
        return g / (2 * y)


class Tanh(Function):
    def forward(ctx, a):
        y = array_module(a).tanh(a)
        ctx.save(y)
        return y

    def backward(ctx, g):
        """d(tanh a)/da = 1 - tanh(a)**2."""
        (y,) = ctx.saved
        return g * (1 - y * y)


class ReLU(Function):
    def forward(ctx, a):
        mask = a > 0
        ctx.save(mask)
        return a * mask

    def backward(ctx, g):
        """d(relu a)/da = 1 where a > 0, else 0 (0 at a == 0, as PyTorch)."""
        (mask,) = ctx.saved
        return g * mask


class Cast(Function):
    def forward(ctx, a, dtype):
        ctx.in_dtype = a.dtype
        return a.astype(dtype)

    def backward(ctx, g):
        """Identity, cast back to the input's dtype."""
        return g.astype(ctx.in_dtype)


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

class MatMul(Function):
    """a @ b for a, b with ndim >= 2; leading (batch) axes broadcast as in NumPy."""

    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are incompatible "
                             f"(need ndim >= 2 and a.shape[-1] == b.shape[-2])")
        ctx.save(a, b)
        return array_matmul(a, b)

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
            ga = array_matmul(g, b.swapaxes(-1, -2))
        if need_b:
            if b.ndim == 2 and a.ndim > 2:   # shared weight: one GEMM over all rows
                gb = array_matmul(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]))
            else:
                gb = array_matmul(a.swapaxes(-1, -2), g)
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


class Sum(Function):
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.in_shape, ctx.axes, ctx.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        return a.sum(axis=ctx.axes, keepdims=keepdims)

    def backward(ctx, g):
        """d(sum a)/da = 1 for every summed element: g is broadcast back to a's shape."""
        g = _expand_reduced(g, ctx.in_shape, ctx.axes, ctx.keepdims)
        return array_module(g).broadcast_to(g, ctx.in_shape)


class Mean(Function):
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.in_shape, ctx.axes, ctx.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes]))
        return a.mean(axis=ctx.axes, keepdims=keepdims)

    def backward(ctx, g):
        """d(mean a)/da = 1/n for every averaged element (n = number averaged)."""
        g = _expand_reduced(g, ctx.in_shape, ctx.axes, ctx.keepdims) / ctx.count
        return array_module(g).broadcast_to(g, ctx.in_shape)


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

class Reshape(Function):
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return a.reshape(shape)

    def backward(ctx, g):
        """Reshape only moves elements around: the gradient is reshaped back."""
        return g.reshape(ctx.in_shape)


class Permute(Function):
    def forward(ctx, a, axes):
        ctx.axes = tuple(axes)
        return a.transpose(ctx.axes)

    def backward(ctx, g):
        """The gradient is permuted by the inverse permutation."""
        return g.transpose(np.argsort(ctx.axes))


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
        """Each input gets its own slice of g along `axis`."""
        xp = array_module(g)
        return tuple(xp.split(g, np.cumsum(ctx.sizes)[:-1].tolist(), axis=ctx.axis))


class Stack(Function):
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        return array_module(*arrays).stack(arrays, axis=axis)

    def backward(ctx, g):
        """Input i gets g[..., i, ...] along the new axis."""
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


# ----------------------------------------------------------------------------- Tensor methods
# Attached here so tensor.py stays about the engine. Comparisons return plain arrays
# (they have no gradient), which is what `where` and `masked_fill` take.

def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _scalar(x, like):
    """A Python number as `like`'s dtype, so float32 stays float32."""
    return x if isinstance(x, Tensor) else like.data.dtype.type(x) if np.isscalar(x) else x


def _reshape(self, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Reshape.apply(self, tuple(shape))


def _transpose(self, *axes):
    if not axes:
        axes = tuple(reversed(range(self.ndim)))
    elif len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Permute.apply(self, axes)


def _swapaxes(self, a, b):
    axes = list(range(self.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return Permute.apply(self, tuple(axes))


def _getitem(self, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(self, index)


Tensor.__add__ = lambda a, b: Add.apply(a, _scalar(b, a))
Tensor.__radd__ = lambda a, b: Add.apply(_scalar(b, a), a)
Tensor.__sub__ = lambda a, b: Sub.apply(a, _scalar(b, a))
Tensor.__rsub__ = lambda a, b: Sub.apply(_scalar(b, a), a)
Tensor.__mul__ = lambda a, b: Mul.apply(a, _scalar(b, a))
Tensor.__rmul__ = lambda a, b: Mul.apply(_scalar(b, a), a)
Tensor.__truediv__ = lambda a, b: Div.apply(a, _scalar(b, a))
Tensor.__rtruediv__ = lambda a, b: Div.apply(_scalar(b, a), a)
Tensor.__neg__ = lambda a: Neg.apply(a)
Tensor.__matmul__ = lambda a, b: MatMul.apply(a, b)
Tensor.__rmatmul__ = lambda a, b: MatMul.apply(b, a)


def _pow(a, p):
    if isinstance(p, Tensor):
        raise TypeError("only a constant exponent is supported: x ** 2.0, not x ** tensor "
                        "(write exp(p * log(x)) for a learned exponent)")
    return Pow.apply(a, p)


Tensor.__pow__ = _pow
Tensor.__lt__ = lambda a, b: a.data < _data(b)
Tensor.__le__ = lambda a, b: a.data <= _data(b)
Tensor.__gt__ = lambda a, b: a.data > _data(b)
Tensor.__ge__ = lambda a, b: a.data >= _data(b)
# == and != stay identity-based so tensors can be dict keys and list members;
# compare values with `a.data == b.data`.
Tensor.__hash__ = object.__hash__
Tensor.__getitem__ = _getitem
Tensor.sum = lambda self, axis=None, keepdims=False: Sum.apply(self, axis=axis, keepdims=keepdims)
Tensor.mean = lambda self, axis=None, keepdims=False: Mean.apply(self, axis=axis, keepdims=keepdims)
Tensor.max = lambda self, axis=None, keepdims=False: Max.apply(self, axis=axis, keepdims=keepdims)
Tensor.reshape = _reshape
Tensor.transpose = _transpose
Tensor.permute = lambda self, *axes: _transpose(self, *axes)
Tensor.swapaxes = _swapaxes
Tensor.T = property(lambda self: _transpose(self))
Tensor.exp = exp
Tensor.log = log
Tensor.sqrt = sqrt
Tensor.tanh = tanh
Tensor.relu = relu
Tensor.masked_fill = masked_fill
