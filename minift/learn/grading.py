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
        raise Mismatch(f"{what} differs from minift's{constant_ratio(got, expected)}", index, expected[index],
                       got[index], int((~ok).sum()), ok.size)


def constant_ratio(got, expected):
    """", and is c times minift's everywhere" when every element of `got` is the same
    multiple c of `expected` (a missing or extra scale, a flipped sign); else ""."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    big = np.abs(expected) > 1e-6 * max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    if not big.any() or not np.all(np.isfinite(got)):
        return ""
    ratio = got[big] / expected[big]
    c = float(np.median(ratio))
    if abs(c - 1) < 1e-6 or not np.allclose(ratio, c, rtol=1e-6, atol=0) or \
            not np.allclose(got[~big], c * expected[~big], rtol=1e-6, atol=1e-9):
        return ""
    named = {-1.0: "the sign is flipped"}
    for n in (2, 3, 4, 8):                  # scales that come from sqrt(d), 1/n, 2x a term...
        for value, text in ((n, f"{n}"), (1 / n, f"1/{n}"), (n ** 0.5, f"sqrt({n})"), (n ** -0.5, f"1/sqrt({n})")):
            named.setdefault(round(value, 12), f"= {text}: a factor missing or extra?")
    why = next((text for value, text in named.items() if abs(c - value) < 1e-6 * abs(value)), "")
    if big.sum() < 2 and not why:           # one element proves no pattern
        return ""
    return f", and is {c:.6g} times minift's everywhere ({why or 'a constant factor'})"


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
    if got._ctx is not None and expected._ctx is not None:
        same_shapes(what, got._ctx, expected._ctx, upstream, mine)
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


def same_shapes(what, mine, theirs, upstream, inputs):
    """The gradients a backward returns have their inputs' shapes where minift's do: the
    engine would sum a broadcast gradient down (unbroadcast) and hide the missing sum."""
    mine.last_backward = theirs.last_backward = False
    got, want = mine.backward(upstream), theirs.backward(upstream)
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    for x, g, w in zip(inputs, got, want):
        if w is not None and g is not None and np.shape(w) == x.shape and np.shape(g) != x.shape:
            raise Mismatch(f"{what}: your backward returned the gradient of {x.name} with shape {np.shape(g)}; "
                           f"expected {x.shape}, {x.name}'s own shape (sum over the axes it was shared along)")


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
