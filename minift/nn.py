"""Modules: containers of parameters and of other modules.

A `Module` finds its parameters and sub-modules by looking at its own attributes, in
the order they were assigned, so `named_parameters()` yields dotted names such as
`transformer.h.0.attn.c_attn.weight` without any registration calls.
"""
import itertools
from collections import OrderedDict

import numpy as np

from . import functional as F
from .backend import to_device, to_numpy
from .tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that a module owns and an optimizer updates (requires grad)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)


class Module:
    """Base class: subclasses assign Parameters and Modules as attributes in __init__
    and define forward(); calling the module calls forward."""

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    # -- discovery --------------------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def _named_parameters_with_duplicates(self, prefix=""):
        for name, value in vars(self).items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value._named_parameters_with_duplicates(full)

    def named_parameters(self):
        """(name, Parameter) pairs; a parameter shared by two modules (tied weights)
        is listed once, under its first name."""
        seen = set()
        for name, p in self._named_parameters_with_duplicates():
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self, trainable_only=False):
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- modes and gradients ----------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter of this module."""
        for p in self.parameters():
            p.requires_grad = requires_grad
            if not requires_grad:
                p.grad = None
        return self

    def to(self, device):
        """Move every parameter to 'cpu' or 'cuda' in place (the Parameter objects stay
        the same, so an optimizer built before the move still holds them)."""
        for p in self.parameters():
            p.data = to_device(p.data, device)
            if p.grad is not None:
                p.grad = to_device(p.grad, device)
        return self

    def astype(self, dtype):
        """Convert every floating-point parameter in place (float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # -- state ------------------------------------------------------------------
    def state_dict(self):
        """name -> array for every parameter, tied ones under each of their names
        (as GPT-2 checkpoints list both `transformer.wte.weight` and `lm_head.weight`).
        The arrays are the parameters' own (not copies)."""
        return OrderedDict((name, p.data) for name, p in self._named_parameters_with_duplicates())

    def load_state_dict(self, state, strict=True):
        """Copy arrays from `state` into the parameters (cast to each parameter's dtype
        and device). With strict=True, any missing key, unexpected key or shape
        mismatch raises one KeyError listing all of them; with strict=False only the
        shape mismatches raise and the rest is reported in the returned dict."""
        own = OrderedDict(self._named_parameters_with_duplicates())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                      for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        tied = _tied_conflicts(own, state) if not mismatched else []
        if mismatched or tied or (strict and (missing or unexpected)):
            problems = [f"tied parameters given different values: {names} are one parameter in this model, "
                        f"but the checkpoint holds two different arrays for them (an untied model's?)"
                        for names in tied]
            if missing:
                problems.append("missing keys: " + ", ".join(missing))
            if unexpected:
                problems.append("unexpected keys: " + ", ".join(unexpected))
            if mismatched:
                problems.append("shape mismatches: " + "; ".join(mismatched))
            raise KeyError("load_state_dict failed:\n  " + "\n  ".join(problems))
        for name, p in own.items():
            if name in state:
                p.data = to_device(state[name], p.device).astype(p.data.dtype, copy=True)
        return {"missing": missing, "unexpected": unexpected}


def _tied_conflicts(own, state):
    """The names (joined by "and") of each parameter shared under several names (tied
    weights) for which `state` holds arrays that differ: loading would keep whichever
    came last, without a word."""
    names_of = {}
    for name, p in own.items():
        names_of.setdefault(id(p), []).append(name)
    conflicts = []
    for names in names_of.values():
        given = [n for n in names if n in state]
        if any(not np.array_equal(to_numpy(state[given[0]]), to_numpy(state[n])) for n in given[1:]):
            conflicts.append(" and ".join(given))
    return conflicts


class ModuleList(Module):
    """A list of modules, named "0", "1", ... in parameter names."""

    def __init__(self, modules=()):
        self._length = 0
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(self._length), module)
        self._length += 1

    def __len__(self):
        return self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(self._length)[i]]
        if not -self._length <= i < self._length:
            raise IndexError(f"ModuleList index {i} out of range for length {self._length}")
        return getattr(self, str(i % self._length))

    def __iter__(self):
        return (self[i] for i in range(self._length))


def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


class Linear(Module):
    """y = x @ weight + bias, with weight stored (in_features, out_features) as in
    GPT-2's checkpoints (so the forward needs no transpose)."""

    def __init__(self, in_features, out_features, bias=True, init_std=None, rng=None, dtype=np.float32):
        std = init_std if init_std is not None else in_features ** -0.5
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_rng(rng).normal(0.0, std, (in_features, out_features)).astype(dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    @classmethod
    def from_parameters(cls, weight, bias=None):
        """A Linear layer around existing Parameters (weight (in, out), bias (out,) or
        None), with no random initialisation to throw away."""
        layer = cls.__new__(cls)
        layer.in_features, layer.out_features = weight.shape
        layer.weight, layer.bias = weight, bias
        return layer

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    """A table of `num` vectors of size `dim`; forward(ids) picks rows."""

    def __init__(self, num, dim, init_std=0.02, rng=None, dtype=np.float32):
        self.weight = Parameter(_rng(rng).normal(0.0, init_std, (num, dim)).astype(dtype))

    def forward(self, ids):
        return F.embedding(ids, self.weight)


class LayerNorm(Module):
    def __init__(self, dim, eps=1e-5, bias=True, dtype=np.float32):
        self.eps = eps
        self.weight = Parameter(np.ones(dim, dtype=dtype))
        self.bias = Parameter(np.zeros(dim, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


_dropout_layers = itertools.count()      # numbers each Dropout made in this process


class Dropout(Module):
    """Zeroes activations with probability p in training mode. Each layer draws from a
    random generator of its own, seeded `seed`, or by default the layer's number in
    this process (0 for the first Dropout made, 1 for the next, ...): two layers never
    draw the same masks. A GPT reseeds its layers from its own seed when it is built
    (the same model, the same masks), and the training loop at every step
    (`reseed_dropout`), so a resumed run draws the masks an uninterrupted one draws."""

    def __init__(self, p=0.0, seed=None):
        self.p = p
        self.rng = np.random.default_rng(seed if seed is not None else next(_dropout_layers))

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)


def reseed_dropout(model, seed, step):
    """Give every Dropout of `model` a generator derived from (seed, step, its index)."""
    for i, m in enumerate(m for m in model.modules() if isinstance(m, Dropout)):
        m.rng = np.random.default_rng([seed, step, i])


def has_dropout(model):
    """Whether any Dropout of `model` drops anything (p > 0)."""
    return any(m.p > 0 for m in model.modules() if isinstance(m, Dropout))
