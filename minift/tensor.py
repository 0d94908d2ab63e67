"""Tensor, Function and the reverse-mode engine.

A `Tensor` wraps an array (`.data`, NumPy or CuPy) and remembers the `Function` node
that produced it. Calling `loss.backward()` visits those nodes in reverse topological
order, asks each for the gradient of its inputs (`Function.backward`), sums the
gradients of a tensor used more than once, and stores the result in `.grad` of the
leaves (tensors created by the user, such as parameters).

Three rules keep the ops simple:
- Broadcasting is undone once, here (`unbroadcast`), not in every op: an op may return
  a gradient of the broadcast shape and the engine sums it back to the input's shape.
- Gradient arrays are never modified in place, by the engine or by an op's backward:
  one array may be handed to several inputs (the gradient of `a + b` is `g` for both),
  so writing into it would corrupt the others.
- Only leaves keep `.grad`; intermediate gradients are dropped as soon as they are used.

Tensor's operators and methods (`a + b`, `a @ b`, `x.sum()`, `x[i]`, ...) each run one
primitive op, a Function subclass of ops.py. That file comes after this one and imports
it, so this one cannot import it: instead each of those op classes enters itself in the
table `_primitives` as ops.py defines it (the `@primitive` decorator, below), and an
operator looks its op up by name when it runs.

Annotations name the types a caller passes and gets; `np.ndarray` stands for a CuPy
array too on the GPU (the same interface).
"""
from __future__ import annotations      # annotations stay text: Tensor may name itself

import contextvars
import itertools
import operator

import numpy as np

from .backend import array_module, check_device, device_of, to_device, to_numpy

# Whether ops record a graph. A context variable is per thread (and per asyncio task):
# `no_grad` in one thread never switches recording off in another, as in PyTorch.
_grad_enabled = contextvars.ContextVar("minift_grad_enabled", default=True)
_profile = None      # the active profiler (timing every op: bench.profile), or None
_next_seq = itertools.count().__next__  # creation order of nodes (see _walk)


class no_grad:
    """Context manager (and decorator) that records no graph, in this thread: for
    evaluation and for updating parameters in place without the update itself being
    differentiated."""

    def __enter__(self):
        self._token = _grad_enabled.set(False)

    def __exit__(self, *exc):
        _grad_enabled.reset(self._token)

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


def is_grad_enabled():
    """Whether ops record a graph in this thread (False inside `no_grad`)."""
    return _grad_enabled.get()


def _as_array(data, dtype):
    """The array a new Tensor will hold: lists and Python numbers become float32 by
    default; arrays keep their dtype (float64 stays float64, integer ids stay integers)."""
    if isinstance(data, Tensor):
        data = data.data
    xp = array_module(data)
    if dtype is not None:
        return xp.asarray(data, dtype=dtype)
    if hasattr(data, "dtype") and hasattr(data, "shape"):
        return xp.asarray(data)
    arr = np.asarray(data)
    if arr.dtype.kind in "fiub" and arr.dtype != np.bool_:
        return arr.astype(np.float32)
    return arr


# ----------------------------------------------------------------------------- operator helpers

_primitives = {}   # op class name -> the class, filled by @primitive as ops.py is read


def primitive(cls):
    """Class decorator of ops.py: enter the op in the table that Tensor's operators and
    methods take their op from (`a + b` runs `_primitives["Add"]`)."""
    _primitives[cls.__name__] = cls
    return cls


def _scalar(x, like):
    """A Python number as `like`'s dtype, so float32 stays float32; anything else as is."""
    return like.data.dtype.type(x) if np.isscalar(x) else x


def _binary(op_name, reflected=False):
    """The method for a binary operator: `a + b` is Add(a, b), and the reflected
    `2 + a` (Python calls a.__radd__(2)) is Add(2, a)."""
    if reflected:
        return lambda self, other: _primitives[op_name].apply(_scalar(other, self), self)
    return lambda self, other: _primitives[op_name].apply(self, _scalar(other, self))


def _unary(op_name):
    def method(self) -> Tensor:
        return _primitives[op_name].apply(self)
    return method


def _reduction(op_name):
    def method(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Reduce over `axis` (an int, a tuple, or None for all axes)."""
        return _primitives[op_name].apply(self, axis=axis, keepdims=keepdims)
    return method


def _comparison(compare):
    return lambda self, other: compare(self.data, other.data if isinstance(other, Tensor) else other)


class Tensor:
    """An array plus what autograd needs: `requires_grad`, `.grad`, and the node
    (`_ctx`, a Function instance) that created it."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "name")
    is_node = False          # in the graph, a leaf tensor (Functions are the other nodes)
    # Make `ndarray + Tensor` call Tensor.__radd__ instead of NumPy broadcasting over it.
    __array_priority__ = 1000

    def __init__(self, data: object, requires_grad: bool = False, dtype: np.dtype | type | str | None = None,
                 name: str | None = None) -> None:
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None
        self.name = name

    # -- basic properties -------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: device_of(self.data))     # 'cpu' or 'cuda'
    is_leaf = property(lambda self: self._ctx is None)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({self.data!r}{grad})"

    # -- conversions ------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied to the host from a GPU)."""
        return to_numpy(self.data)

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self) -> list | float | int | bool:
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory, never requires grad)."""
        return Tensor._wrap(self.data, False, None)

    def to(self, device: str) -> Tensor:
        """This tensor on 'cpu' or 'cuda'. A leaf stays a leaf (same requires_grad,
        gradient moved too), so `param.to('cuda')` gives a trainable GPU parameter."""
        check_device(device)
        if device == self.device:
            return self
        out = Tensor._wrap(to_device(self.data, device), self.requires_grad, None)
        out.name = self.name
        if self.grad is not None:
            out.grad = to_device(self.grad, device)
        return out

    # -- operators and methods -----------------------------------------------------
    # Each runs one primitive op of ops.py (see the module docstring). Python numbers
    # become scalars of the tensor's dtype, so that float32 stays float32.
    __add__, __radd__ = _binary("Add"), _binary("Add", reflected=True)
    __sub__, __rsub__ = _binary("Sub"), _binary("Sub", reflected=True)
    __mul__, __rmul__ = _binary("Mul"), _binary("Mul", reflected=True)
    __truediv__, __rtruediv__ = _binary("Div"), _binary("Div", reflected=True)
    __neg__ = _unary("Neg")
    exp, log, sqrt = _unary("Exp"), _unary("Log"), _unary("Sqrt")
    tanh, relu = _unary("Tanh"), _unary("ReLU")
    sum, mean, max = _reduction("Sum"), _reduction("Mean"), _reduction("Max")

    __matmul__ = _binary("MatMul")

    def __rmatmul__(self, other: np.ndarray) -> Tensor:
        return _primitives["MatMul"].apply(other, self)

    def __pow__(self, p: float) -> Tensor:
        if isinstance(p, Tensor):
            raise TypeError("only a constant exponent is supported: x ** 2.0, not x ** tensor "
                            "(write exp(p * log(x)) for a learned exponent)")
        return _primitives["Pow"].apply(self, p)

    # Comparisons give plain boolean arrays (they have no gradient): what `where` and
    # `masked_fill` take. == and != stay identity-based, so that tensors can be dict
    # keys and list members; compare values with `a.data == b.data`.
    __lt__, __le__ = _comparison(operator.lt), _comparison(operator.le)
    __gt__, __ge__ = _comparison(operator.gt), _comparison(operator.ge)
    __hash__ = object.__hash__

    def __getitem__(self, index: object) -> Tensor:
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return _primitives["GetItem"].apply(self, index)

    def reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
        """x.reshape(2, 3) or x.reshape((2, 3)); -1 stands for the rest, as in NumPy."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _primitives["Reshape"].apply(self, tuple(shape))

    def permute(self, *axes: int | tuple[int, ...]) -> Tensor:
        """The axes in a new order: x.permute(0, 2, 1) or x.permute((0, 2, 1)); with no
        axes, reversed (as `transpose()` and `.T`)."""
        if not axes:
            axes = tuple(reversed(range(self.ndim)))
        elif len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _primitives["Permute"].apply(self, axes)

    transpose = permute

    @property
    def T(self) -> Tensor:
        return self.permute()

    def swapaxes(self, a: int, b: int) -> Tensor:
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return _primitives["Permute"].apply(self, tuple(axes))

    def masked_fill(self, mask: Tensor | np.ndarray, value: float) -> Tensor:
        """This tensor with `value` wherever `mask` is true (no gradient flows there)."""
        mask = mask.data if isinstance(mask, Tensor) else mask
        return _primitives["Where"].apply(mask, self.dtype.type(value), self)

    def astype(self, dtype: np.dtype | type | str) -> Tensor:
        """A copy in another dtype, differentiable (the gradient is cast back)."""
        return _primitives["Cast"].apply(self, dtype=np.dtype(dtype))

    # -- autograd ---------------------------------------------------------------
    @staticmethod
    def _wrap(data, requires_grad, ctx):
        # The fast constructor used by every op: no checks, no conversion.
        t = Tensor.__new__(Tensor)
        t.data, t.grad, t.requires_grad, t._ctx, t.name = data, None, requires_grad, ctx, None
        return t

    def backward(self, grad: Tensor | np.ndarray | float | None = None, keep_graph: bool = True,
                 grads: dict | None = None) -> None:
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires grad.

        `grad` is dL/d(self); it may be omitted only for a one-element tensor (then 1).
        Calling backward twice adds the second gradient to the first: reset with
        `zero_grad()` between steps. With keep_graph=False each node lets go of what it
        saved as soon as its backward has run, freeing activations during the backward
        pass (PyTorch's default, `retain_graph=False`); the graph can then not be walked
        again. `grads`, a dict, gets the leaves' gradients instead of `.grad` ({leaf:
        gradient}, added to what it holds), as `torch.autograd.grad` returns them:
        `.grad` is left alone."""
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad "
                               "(no input of it requires grad, or it was built under no_grad)")
        xp = array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a one-element tensor; this one "
                                   f"has shape {self.shape}: pass grad= of that shape")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad=...) has shape {grad.shape}, expected {self.shape}")
        found = {self: grad} if self._ctx is None else _walk(self._ctx, grad, keep_graph)
        add_grads(found, into=grads)


def _walk(root, grad, keep_graph):
    """The loop of `backward`: from the root node, whose output's gradient is `grad`,
    to every leaf; returns {leaf: dL/dleaf}.

    A node is always created after the nodes of its inputs, so visiting nodes newest
    first (largest creation number `_seq`) is a reverse topological order: when a node
    is visited, every node that used its output has already added its part of the
    gradient to `node_grads`."""
    node_grads, leaf_grads = {root: grad}, {}      # dL/d(output) of each node, and of each leaf
    for node in sorted(_nodes_reachable_from(root), key=lambda n: n._seq, reverse=True):
        g = node_grads.pop(node)
        node.last_backward = not keep_graph        # (an op may then reuse its saved arrays)
        input_grads = node.backward(g) if _profile is None else _profile.backward(node, g)
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        for parent, gp in zip(node.parents, input_grads):
            if gp is None or parent is None or not parent.requires_grad:
                continue                           # no gradient needed, or not a tensor input
            gp = _conform(gp, parent.shape, parent.dtype)   # undo broadcasting: the input's shape
            sums = node_grads if parent.is_node else leaf_grads
            sums[parent] = sums[parent] + gp if parent in sums else gp
        if not keep_graph:
            node.saved = node.parents = None       # the saved arrays can go now
    return leaf_grads


def _nodes_reachable_from(root):
    """Every node the root was computed from, the root included (a depth-first search
    with a stack, not recursion: a graph may be thousands of nodes deep)."""
    seen, stack = {root}, [root]
    while stack:
        node = stack.pop()
        if node.parents is None:
            raise RuntimeError(f"backward() through a graph already freed by backward(keep_graph=False) "
                               f"(at {type(node).__name__}); run the forward pass again")
        for parent in node.parents:
            if parent is not None and parent.is_node and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def add_grads(*found, into=None):
    """Add gradients ({leaf: gradient} dicts, as backward(grads=d) collects them) to each
    leaf's `.grad`, or to the dict `into`: dict after dict, a fixed order, so the sum
    does not depend on which thread of a data-parallel step finished first."""
    for grads in found:
        for leaf, g in grads.items():
            if into is not None:
                into[leaf] = into[leaf] + g if leaf in into else g
            else:
                leaf.grad = g if leaf.grad is None else leaf.grad + g


def set_profiler(profiler):
    """Make `profiler` (or None) time every op from now on; returns the one it replaces.
    A profiler has `forward(ctx, raw, options)` and `backward(ctx, g)`, which run the
    op's own and time it: `bench.profile`, the cost ledger's, is one."""
    global _profile
    previous, _profile = _profile, profiler
    return previous


def _conform(grad, shape, dtype):
    """An input's gradient in the input's shape and dtype: summed over broadcast axes,
    cast back where an op computed in another dtype."""
    if grad.shape != shape:
        grad = unbroadcast(grad, shape)
    return grad if grad.dtype == dtype else grad.astype(dtype)


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the adjoint of NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1, so
    the gradient of the input is the sum of the gradients of all its copies.
    """
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


class Function:
    """One differentiable op. Subclasses write, side by side,

        forward(ctx, *arrays, **options) -> array      (ctx.save(...) what backward needs)
        backward(ctx, g) -> gradient for each positional input (None where not needed)

    on raw arrays. `ctx` is the node itself: one instance per call, kept alive by the
    output tensor until the graph is dropped. `ctx.needs_input_grad[i]` says whether
    input i needs a gradient, so backward can skip work for frozen inputs, and
    `ctx.last_backward` whether this is the last backward through the node (the graph
    is freed after it), so backward may reuse its saved arrays in place.
    """

    is_node = True           # in the graph, a node (leaf tensors are the other kind)
    requires_grad = True     # a node exists only when some input requires grad

    def save(ctx, *arrays):
        ctx.saved = arrays

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on the raw arrays of `inputs` and, when grad mode is on and an
        input requires grad, return an output tensor that remembers this node.

        The node links to its inputs' nodes (or, for leaves, to the leaf tensors), not
        to the input tensors themselves: an intermediate array stays alive only while
        the user holds its tensor or some node saved it for backward, as in PyTorch."""
        ctx = cls.__new__(cls)
        raw = [x.data if isinstance(x, Tensor) else x for x in inputs]
        ctx.needs_input_grad = tuple(isinstance(x, Tensor) and x.requires_grad for x in inputs)
        data = ctx.forward(*raw, **options) if _profile is None else _profile.forward(ctx, raw, options)
        if not (_grad_enabled.get() and any(ctx.needs_input_grad)):
            return Tensor._wrap(data, False, None)
        ctx.parents = tuple((x._ctx or x) if isinstance(x, Tensor) else None for x in inputs)
        ctx._seq, ctx.shape, ctx.dtype = _next_seq(), data.shape, data.dtype   # what backward needs to know
        return Tensor._wrap(data, True, ctx)

    def forward(ctx, *inputs, **options):
        raise NotImplementedError

    def backward(ctx, g):
        raise NotImplementedError


def tensor(data, requires_grad=False, dtype=None):
    """Make a leaf Tensor. Lists and Python numbers become float32; arrays keep their
    dtype (pass float64 arrays for gradient checks); `dtype=` converts."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
