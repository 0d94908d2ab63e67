"""Property-test your own op: hypothesis strategies for shapes and float64 inputs, and
`check_gradients`, which runs `minift.gradcheck` on many drawn inputs.

One input proves little: a backward can be right on a (2, 3) array and wrong on a
scalar, a size-1 axis, a broadcast pair or a transposed view. Five lines test an op on
a hundred of them, and on failure name the smallest failing input hypothesis found:

    from minift.testing import broadcast_pairs, check_gradients, small_shapes

    check_gradients(MyOp.apply, shapes=small_shapes)                      # one input
    check_gradients(lambda a, b: a * b, shapes=broadcast_pairs)           # two that broadcast
    check_gradients(lambda x: x.log(), shapes=[(3, 4)], domain=(0.5, 3))  # inside log's domain

It needs hypothesis, which the test extra installs (`pip install -e ".[test]"`);
`import minift` never imports this module. minift's own suite and the exercises'
checker (`python -m minift.learn check`) draw their examples with it too.
"""
import inspect
import numbers
import tempfile
from contextlib import contextmanager

import numpy as np

from .errors import MiniftError
from .gradcheck import GradcheckError, gradcheck
from .tensor import tensor


class MissingHypothesis(MiniftError, ImportError):
    """minift.testing was imported without hypothesis (the test extra) installed."""


try:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings, strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as e:
    raise MissingHypothesis('minift.testing needs hypothesis, which the test extra installs: '
                            'pip install -e ".[test]" (in the minift checkout)') from e


# ----------------------------------------------------------------------------- strategies

# Shapes of 1 to 3 axes of 1 to 4 elements: size-1 axes included, small enough that
# gradcheck (two forward passes per element) stays fast.
small_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)

# Pairs of shapes that broadcast together: ((4, 1, 3), (2, 1)), ((), (3,)), ...
broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4) \
    .map(lambda drawn: drawn.input_shapes)


@st.composite
def arrays(draw, shape, low=-3.0, high=3.0, avoid=()):
    """A float64 array of `shape` with values in [low, high], kept away from the points
    in `avoid`, and sometimes laid out non-contiguously: the same values stored
    transposed and viewed back, which is what a `.T` of a tensor gives an op."""
    shape = tuple(shape)
    data = draw(hnp.arrays(np.float64, shape,
                           elements=st.floats(low, high, allow_nan=False, allow_infinity=False)))
    if len(shape) >= 2 and draw(st.booleans()):
        data = np.ascontiguousarray(data.T).T      # same values, Fortran-order strides
    return away_from(data, avoid) if len(avoid) else data


@st.composite
def leaves(draw, shape, low=-3.0, high=3.0, avoid=()):
    """A float64 leaf tensor that requires grad (its values drawn by `arrays`)."""
    return tensor(draw(arrays(shape, low, high, avoid)), requires_grad=True)


def away_from(x, points, margin=1e-3):
    """Move values within `margin` of any of `points` (kinks of relu, max ties...)
    so central differences don't straddle a kink. Keeps x's memory layout."""
    x = x.copy(order="K")                       # "K": a transposed view stays one
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + 2 * margin
    return x


# ----------------------------------------------------------------------------- check_gradients

def check_gradients(fn, shapes, domain=(-3.0, 3.0), avoid=(), max_examples=None, **gradcheck_options):
    """Run `minift.gradcheck(fn, inputs)` on inputs drawn by hypothesis; return True, or
    raise GradcheckError (an AssertionError) naming the smallest failing inputs found.

    fn            takes float64 leaf tensors (one per shape) and returns a Tensor
    shapes        one shape `(2, 3)`; a list of them, one per input `[(2, 3), (3,)]`; or a
                  hypothesis strategy that draws either, for shapes that vary or are
                  related: `small_shapes`, `broadcast_pairs`, or your own, e.g. matmul's
                      @st.composite
                      def matmul_shapes(draw):
                          m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
                          return [(m, k), (k, n)]
                  (a list may also hold a strategy in place of one input's shape)
    domain        (low, high) for every input, or a list with one (low, high) per input
    avoid         points no value comes within 1e-3 of: kinks (relu's 0), poles
    max_examples  how many inputs to draw (default: the hypothesis profile's, 100)
    **gradcheck_options  eps, atol, rtol, seed: passed to gradcheck

    Call it from a plain function or test, not inside a hypothesis `@given` test. It
    leaves no `.hypothesis/` folder in the current directory (see _storage_elsewhere).
    """
    inspect.signature(gradcheck).bind(fn, [], **gradcheck_options)    # a misspelt option: TypeError now

    def draw_inputs(data):
        drawn = _shape_list(data.draw(shapes) if _is_strategy(shapes) else shapes)
        shape_list = [tuple(data.draw(s)) if _is_strategy(s) else tuple(s) for s in drawn]
        domains = [domain] * len(shape_list) if isinstance(domain[0], numbers.Real) else list(domain)
        if len(domains) != len(shape_list):
            raise ValueError(f"check_gradients: {len(domains)} domains for {len(shape_list)} inputs")
        return [data.draw(leaves(shape, low, high, avoid)) for shape, (low, high) in zip(shape_list, domains)]

    failure = smallest_failure(draw_inputs, lambda inputs: gradcheck(fn, inputs, **gradcheck_options),
                               max_examples)
    if failure is None:
        return True
    inputs, error = failure
    lines = [f"check_gradients: {_name(fn)} fails on inputs of shapes "
             f"{', '.join(str(tuple(x.shape)) for x in inputs)} (the smallest failing example found):"]
    if isinstance(error, GradcheckError):
        lines.append(f"  {error}")
    else:
        lines.append(f"  it raised {type(error).__name__}: {error}")
    for i, x in enumerate(inputs):
        layout = "" if x.data.flags.c_contiguous else ", non-contiguous (a transposed view)"
        values = np.array2string(x.data, precision=6, separator=", ").replace("\n", "\n" + " " * 6)
        lines.append(f"  input {i}{layout}:\n      {values}")
    # A wrong gradient: gradcheck's own traceback adds nothing. Any other error: keep it,
    # it points at the line of fn (or of its backward) that raised.
    raise GradcheckError("\n".join(lines)) from (None if isinstance(error, GradcheckError) else error)


def smallest_failure(draw_example, check, max_examples=None, **options):
    """Draw examples with hypothesis (`draw_example(data)`, data being `st.data()`'s
    object) and call `check(example)` on each. Return None when every example passes, or
    (example, exception) for the smallest failing one hypothesis shrank to.

    Runs quietly: no example database, no "Falsifying example"/"Explanation" printout
    (the caller reports the failure its own way), nothing written in the current
    directory. `options` are hypothesis settings (derandomize=True, ...); those not
    given come from the loaded hypothesis profile."""
    quiet = dict(deadline=None, database=None, report_multiple_bugs=False, verbosity=Verbosity.quiet,
                 phases=[p for p in Phase if p.name != "explain"],   # its "Explanation:" lines say little here
                 suppress_health_check=[HealthCheck.too_slow])
    quiet.update(options)
    if max_examples is not None:
        quiet["max_examples"] = max_examples
    failures = []

    @settings(**quiet)
    @given(st.data())
    def run(data):
        example = draw_example(data)
        try:
            check(example)
        except Exception as e:          # fn (a learner's code) may raise anything: record it
            failures.append((example, e))
            raise

    with _storage_elsewhere():
        try:
            run()
        except Exception:
            if not failures:            # hypothesis itself failed (a health check...): keep its error
                raise
    # hypothesis replays the smallest failing example last, to raise its error
    return failures[-1] if failures else None


@contextmanager
def _storage_elsewhere():
    """Point hypothesis's storage at a temporary folder for the run, then back.

    Even with database=None, hypothesis caches the constants it finds in your source
    files under its storage folder, `.hypothesis/` in the directory Python started in.
    A learner's script should leave nothing there, so the run gets its own folder."""
    from hypothesis import configuration
    # The folder set before (None until hypothesis first needs it): a private name, read
    # only to restore it, so that a user's own @given tests keep their database.
    previous = vars(configuration).get("__hypothesis_home_directory")
    with tempfile.TemporaryDirectory(prefix="minift-hypothesis-") as folder:
        configuration.set_hypothesis_home_dir(folder)
        try:
            yield
        finally:
            configuration.set_hypothesis_home_dir(previous)


def _is_strategy(x):
    return isinstance(x, st.SearchStrategy)


def _shape_list(shapes):
    """One shape (a tuple of ints, () a scalar) as a list of one; a list of shapes as is."""
    shapes = list(shapes)
    return [tuple(shapes)] if all(isinstance(d, numbers.Integral) for d in shapes) else shapes


def _name(fn):
    """`Cube.apply` for a Function's apply, the function's name otherwise."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return f"{owner.__name__}.{fn.__name__}"
    return getattr(fn, "__qualname__", repr(fn))
