"""What an exercise is: the piece of minift's reading path the learner writes, how its
examples are drawn and graded, three hints, and how a failing example is replayed.

Every exercise module (backward.py, build.py, pieces.py) makes a list of `Exercise`s;
exercises.py puts them in the tour's order.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

OP_IMPORTS = "from minift.backend import array_module\nfrom minift.tensor import Function"
KINDS = {"backward": "the forward is given: write the gradient",
         "build": "build it: a forward pass or a whole piece"}


@dataclass(frozen=True)
class Exercise:
    name: str
    summary: str            # one line for `list`
    writes: str             # what the learner writes
    reference: str          # minift's own, file:function (the tour's form): the function the learner writes
    example: Callable       # draw -> {name: input}
    grade: Callable         # (learner's module, example) -> None, or raises Mismatch
    hints: tuple            # (the idea, the shapes, the formula): `hint` gives the next one each time
    todo: str               # the TODO line of the stub
    asks: str               # the docstring of the function in the stub: what it takes and returns (no formula)
    imports: str            # the learner's file's imports
    intro: str              # the text at the top of the learner's file: what the piece does, the maths given
    replay: Callable        # (example, path of the learner's file) -> lines of Python rebuilding the example
    kind: str = "backward"  # "backward" or "build" (KINDS)
    names: tuple = ()       # top-level names of the reference's file the learner's file holds (default: its own)
    given: int = 0          # statements of the function kept in the stub, after its docstring
    gradcheck: bool = True  # whether grading runs minift.gradcheck (an op with a backward)
    shadow: bool = True     # `learn run` may call minift's own beside it on the same inputs (no side effects)

    def __post_init__(self):
        assert len(self.hints) == 3 and self.kind in KINDS, self.name

    @property
    def source(self):
        """(file, qualified name) of the function the learner writes."""
        path, qualified = self.reference.split(":")
        return path, qualified

    @property
    def copied(self):
        """The top-level names the learner's file takes from minift's file, in order."""
        return self.names or (self.source[1].split(".")[0],)


def shape(draw, ndim_low, ndim_high, side_high=4, last=None, last_low=2):
    """A shape of ndim_low..ndim_high axes of 1..side_high (the last axis last_low..last
    if `last` is given: a softmax or a layer norm over one element is degenerate)."""
    ndim = draw.integer(ndim_low, ndim_high)
    dims = [draw.integer(1, side_high) for _ in range(ndim)]
    if last is not None and ndim:
        dims[-1] = draw.integer(last_low, last)
    return tuple(dims)


# ----------------------------------------------------------------------------- replaying a failure

def literal(value):
    """Python source that rebuilds `value` exactly (floats with all their digits)."""
    if isinstance(value, np.ndarray):
        dtype = "" if value.dtype == np.float64 else f", dtype=np.{value.dtype}"
        return f"np.array({value.tolist()!r}{dtype})"
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
        inner = ", ".join(literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner},)"
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)


def load_lines(path):
    """The replay's first lines: NumPy, and the learner's file loaded as `mine`."""
    return ["import numpy as np", "from minift.learn import load_file",
            f"mine = load_file({str(path)!r})          # your file"]


def op_replay(op, reference, call, grads, seed=0):
    """A replay builder for an op the learner wrote as a Function subclass (compare_op):
    runs the learner's op and minift's on the example, with the upstream gradient the
    check used (`seed`), and prints both outputs and gradients.

    op: the class name in the learner's file; reference: `module:Class` of minift's;
    call: the arguments after the inputs, e.g. "axis={axis}" (formatted with the
    example); grads: the names of the example's inputs that are Tensors."""
    module, cls = reference.split(":")

    def build(example, path):
        rest = call.format(**example)
        args = ", ".join(list(grads) + ([rest] if rest else []))
        lines = load_lines(path) + ["from minift.tensor import Tensor", f"from {module} import {cls}   # minift's own"]
        lines += [f"{name} = {literal(value)}" for name, value in example.items()]
        tensors = ", ".join(f"Tensor({name})" for name in grads)
        lines += [f"shape = {cls}.apply({tensors}{', ' + rest if rest else ''}).shape",
                  f"g = np.random.default_rng({seed}).standard_normal(shape)   # dL/d(output): the check's",
                  f"for who, op in ((\"yours\", mine.{op}), (\"minift's\", {cls})):",
                  f"    leaves = [Tensor(a, requires_grad=True) for a in ({', '.join(grads)},)]",
                  f"    out = op.apply(*leaves{', ' + rest if rest else ''})",
                  "    (out * g).sum().backward()",
                  "    print(who, 'output:', out.data)",
                  f"    for name, leaf in zip({list(grads)!r}, leaves):",
                  "        print(who, 'dL/d' + name + ':', leaf.grad)"]
        return lines
    return build


def call_replay(function, reference, args):
    """A replay builder for a function of arrays: calls the learner's and minift's on the
    example (`args`, the example's keys in the function's order; a key may be given as
    "key=value-expression" to pass a keyword) and prints both results."""
    module, name = reference.split(":")

    def build(example, path):
        lines = load_lines(path) + [f"from {module} import {name}   # minift's own"]
        lines += [f"{key} = {literal(example[key])}" for key in args]
        call = ", ".join(f"{key}.copy()" if isinstance(example[key], np.ndarray) else key for key in args)
        lines += [f"print('yours:   ', mine.{function}({call}))", f"print(\"minift's:\", {name}({call}))"]
        return lines
    return build
