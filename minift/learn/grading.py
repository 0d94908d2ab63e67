"""The tools every exercise's grader uses: comparing arrays element by element, comparing
a learner's op with minift's (forward, gradients, gradcheck), and drawing examples.

A grader raises `Mismatch` at the first thing that is wrong, naming what was compared,
the first index (in C order) where it differs, the expected value and the learner's.
Examples are drawn through a `draw` object, so the same generator serves hypothesis
(which then shrinks a failing example to the smallest it can find) and, where hypothesis
is not installed, a seeded NumPy generator whose examples grow from the smallest. Sizes
and choices are drawn one by one; the values of the arrays come from one NumPy generator
per example (`draw.random()`), so hypothesis shrinks shapes and one seed, and never
into ill-conditioned values.
"""
import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor

RTOL, ATOL = 1e-7, 1e-10     # float64: a right answer differs from minift's only by rounding


class Mismatch(AssertionError):
    """What a learner's code got wrong: `what` (a sentence), and where an array differs,
    the index, the expected and the learner's value, and how many elements differ."""

    def __init__(self, what, index=None, expected=None, got=None, count=None, size=None):
        super().__init__(what)
        self.what, self.index, self.expected, self.got = what, index, expected, got
        self.count, self.size = count, size


def close(what, got, expected, rtol=RTOL, atol=ATOL):
    """Raise Mismatch unless `got` has `expected`'s shape and |got - expected| <= atol +
    rtol * |expected| everywhere (rtol = atol = 0 for integers: equal)."""
    if got is None:
        raise Mismatch(f"{what} is None")
    if isinstance(got, Tensor):
        got = got.data
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        raise Mismatch(f"{what} has shape {got.shape}; expected {expected.shape}")
    if got.dtype.kind not in "fiub":
        raise Mismatch(f"{what} holds {got.dtype} values; expected numbers")
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.abs(got.astype(np.float64) - expected) <= atol + rtol * np.abs(expected)
    if not ok.all():
        index = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise Mismatch(f"{what} differs from minift's", index, expected[index], got[index],
                       int((~ok).sum()), ok.size)


def learner_attr(module, name):
    """The function or class `name` of the learner's file, or a Mismatch saying it is missing."""
    if not hasattr(module, name):
        raise Mismatch(f"your file defines no `{name}` (keep the name the stub gave it)")
    return getattr(module, name)


def compare_op(what, learner, reference, inputs, seed=0):
    """Grade an op the learner wrote against minift's, in float64:

    1. the forward output equals the reference's;
    2. with the same upstream gradient, every input's gradient equals the reference's;
    3. minift.gradcheck: the learner's backward agrees with central differences of the
       learner's own forward.

    learner, reference: functions of Tensors -> Tensor; inputs: {name: float64 array},
    in the order the functions take them, all requiring grad."""
    def leaves():
        return [Tensor(a.copy(), requires_grad=True, name=n) for n, a in inputs.items()]
    mine, theirs = leaves(), leaves()
    got = learner(*mine)
    if not isinstance(got, Tensor):
        raise Mismatch(f"{what} returned a {type(got).__name__}, not a Tensor (build the result from the "
                       f"Tensors it is given, so that gradients can flow)")
    expected = reference(*theirs)
    close(f"{what}: the forward output", got, expected.data)
    upstream = np.random.default_rng(seed).standard_normal(expected.shape)     # dL/d(output)
    (got * upstream).sum().backward()
    (expected * upstream).sum().backward()
    for m, t in zip(mine, theirs):
        if m.grad is None:
            raise Mismatch(f"{what}: no gradient reached input {m.name} (did backward return None for it?)")
        close(f"{what}: the gradient of {m.name} (your backward)", m.grad, t.grad)
    try:
        gradcheck(learner, leaves())
    except GradcheckError as e:
        raise Mismatch(f"{what}: your backward disagrees with finite differences of your forward: {e}") from None


class SeededDraw:
    """Examples from a NumPy generator (when hypothesis is not installed). Example number
    i draws integers from at most the first i // 4 + 1 values of each range, so the
    first examples are the smallest and the first failure is a small one."""

    def __init__(self, i):
        self.rng = np.random.default_rng([i, 2026])
        self.cap = i // 4

    def integer(self, low, high):
        return low + int(self.rng.integers(0, min(high - low, self.cap) + 1))

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def random(self):
        return np.random.default_rng(int(self.rng.integers(0, 2 ** 32)))


class HypothesisDraw:
    """Examples drawn by hypothesis (`st.data()`), which shrinks a failing one: smaller
    integers, earlier choices, seed 0."""

    def __init__(self, data):
        from hypothesis import strategies as st     # optional: only when hypothesis is installed
        self.data, self.st = data, st

    def integer(self, low, high):
        return self.data.draw(self.st.integers(low, high))

    def choice(self, options):
        return self.data.draw(self.st.sampled_from(options))

    def random(self):
        return np.random.default_rng(self.data.draw(self.st.integers(0, 2 ** 16 - 1)))


def normal(rng, shape, scale=1.0):
    """A float64 array of `shape` from the example's generator."""
    return np.asarray(rng.standard_normal(shape) * scale)
