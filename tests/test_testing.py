"""minift.testing, the property-testing kit a user gets with the test extra: check_gradients
catches a planted wrong backward and passes a right one, names the failing inputs, takes
shapes in each documented form; the strategies draw what they say; a script that uses it
leaves no .hypothesis folder and prints no hypothesis chatter; without hypothesis the
import says what to install; `import minift` never imports it."""
import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import configuration, find, given, strategies as st

import minift
from doc_snippets import ROOT
from minift import Function, GradcheckError
from minift.errors import MiniftError
from minift.testing import (MissingHypothesis, arrays, away_from, broadcast_pairs, check_gradients, leaves,
                            small_shapes)


class Cube(Function):
    """y = x ** 3;   dL/dx = 3 x^2 g"""

    def forward(ctx, x):
        ctx.save(x)
        return x ** 3

    def backward(ctx, g):
        (x,) = ctx.saved
        return 3 * x ** 2 * g


class CubeMissingAFactor(Cube):
    def backward(ctx, g):
        (x,) = ctx.saved
        return x ** 2 * g                  # the 3 is missing


class MulMissingAFactor(Function):
    """y = a * b; the gradient of b forgets its factor a."""

    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    def backward(ctx, g):
        a, b = ctx.saved
        return g * b, g


# ----------------------------------------------------------------------------- check_gradients

def test_a_right_backward_passes():
    assert check_gradients(Cube.apply, shapes=small_shapes) is True
    assert check_gradients(minift.ops.Mul.apply, shapes=broadcast_pairs) is True


def test_a_planted_wrong_backward_is_caught_and_its_inputs_named():
    with pytest.raises(AssertionError) as caught:
        check_gradients(CubeMissingAFactor.apply, shapes=small_shapes)
    message = str(caught.value)
    assert isinstance(caught.value, GradcheckError)
    assert message.startswith("check_gradients: CubeMissingAFactor.apply fails on inputs of shapes (")
    assert "analytic" in message and "numeric" in message and "\n  input 0" in message
    # hypothesis shrinks it: one element, whose value shows
    assert "shapes (1,)" in message, message

    with pytest.raises(GradcheckError, match=r"MulMissingAFactor\.apply fails .*\n.*for input 1 "):
        check_gradients(MulMissingAFactor.apply, shapes=broadcast_pairs)


def test_an_error_raised_by_fn_is_reported_with_the_inputs_and_kept_as_the_cause():
    def broken(x):
        raise ZeroDivisionError("my bug")
    with pytest.raises(GradcheckError, match="it raised ZeroDivisionError: my bug") as caught:
        check_gradients(broken, shapes=[(2, 2)])
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_a_kink_fails_unless_avoided():
    with pytest.raises(GradcheckError):
        check_gradients(lambda x: x.relu(), shapes=small_shapes)
    assert check_gradients(lambda x: x.relu(), shapes=small_shapes, avoid=[0.0])


@st.composite
def matmul_shapes(draw):
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    return [(m, k), (k, n)]


@pytest.mark.parametrize("shapes, domain, expected", [
    ((2, 3), (-1, 0), [(2, 3)]),                               # one shape: one input
    ([(2, 3), (4,)], [(-1, 0), (2, 3)], [(2, 3), (4,)]),         # a list of shapes, a domain each
    ([small_shapes, (4,)], [(-1, 0), (2, 3)], None),             # a strategy for one input's shape
    (matmul_shapes(), [(-1, 0), (2, 3)], None),                  # related shapes
], ids=["shape", "list", "strategy-in-list", "related"])
def test_shapes_in_each_documented_form_and_a_domain_per_input(shapes, domain, expected):
    seen = []

    def record(*xs):
        seen.append(xs)
        return xs[0] * 1.0 if len(xs) == 1 else xs[0] * xs[1].sum()
    check_gradients(record, shapes=shapes, domain=domain, max_examples=5)
    domains = [domain] if expected == [(2, 3)] else domain
    for xs in seen:
        if expected:
            assert [x.shape for x in xs] == expected
        for x, (low, high) in zip(xs, domains):             # gradcheck moves a value by eps=1e-6
            assert low - 1e-5 <= x.data.min() and x.data.max() <= high + 1e-5
    if isinstance(shapes, st.SearchStrategy):                 # matmul_shapes: k agrees
        assert all(a.shape[1] == b.shape[0] for a, b in seen)


def test_max_examples_bounds_the_inputs_drawn():
    drawn = set()

    def fn(x):
        drawn.add(id(x))
        return x * 2.0
    check_gradients(fn, shapes=small_shapes, max_examples=7)
    assert 1 < len(drawn) <= 7


def test_a_misspelt_gradcheck_option_is_a_type_error_at_once():
    with pytest.raises(TypeError):
        check_gradients(Cube.apply, shapes=small_shapes, rtoll=1e-6)


def test_hypothesis_storage_setting_is_given_back():
    before = vars(configuration).get("__hypothesis_home_directory")
    check_gradients(Cube.apply, shapes=[(2,)], max_examples=2)
    assert vars(configuration).get("__hypothesis_home_directory") == before


# ----------------------------------------------------------------------------- strategies

@given(shape=small_shapes, pair=broadcast_pairs)
def test_shapes_are_small_and_pairs_broadcast(shape, pair):
    assert 1 <= len(shape) <= 3 and all(1 <= side <= 4 for side in shape)
    a, b = pair
    np.broadcast_shapes(a, b)                  # raises if they do not broadcast


@given(data=st.data(), shape=small_shapes)
def test_arrays_and_leaves_are_float64_in_bounds(data, shape):
    x = data.draw(arrays(shape, -2.0, 1.0))
    assert x.shape == shape and x.dtype == np.float64 and np.all((-2 <= x) & (x <= 1))
    t = data.draw(leaves(shape, avoid=[0.0]))
    assert t.requires_grad and t.dtype == np.float64 and np.all(np.abs(t.data) >= 1e-3)


def test_the_strategies_reach_what_they_promise():
    # a transposed (non-contiguous) layout, and pairs that really broadcast
    assert not find(arrays((3, 2)), lambda x: not x.flags.c_contiguous).flags.c_contiguous
    a, b = find(broadcast_pairs, lambda pair: np.broadcast_shapes(*pair) not in pair)
    assert np.broadcast_shapes(a, b) not in (a, b)            # each is stretched along some axis


def test_away_from_moves_values_off_the_points_and_keeps_the_layout():
    x = np.ascontiguousarray(np.array([[0.0, 0.0005], [1.0, -0.0002]]).T).T
    moved = away_from(x, [0.0])
    assert not moved.flags.c_contiguous
    np.testing.assert_array_equal(moved, [[0.002, 0.002], [1.0, 0.002]])
    assert x[0, 0] == 0.0                     # a copy: the input is unchanged


# ----------------------------------------------------------------------------- as a user runs it

def test_a_script_leaves_no_hypothesis_folder_and_prints_no_hypothesis_chatter(tmp_path):
    """At top level of a script, in a folder of its own: hypothesis would otherwise
    write .hypothesis/ (its cache of constants) there, even with database=None."""
    script = tmp_path / "my_op.py"
    script.write_text(textwrap.dedent('''
        import minift
        from minift.testing import check_gradients, small_shapes

        class Square(minift.Function):
            def forward(ctx, x):
                ctx.save(x)
                return x * x

            def backward(ctx, g):
                (x,) = ctx.saved
                return x * g                      # should be 2 x g

        print(check_gradients(lambda x: (x * x + 1).log(), shapes=small_shapes))
        try:
            check_gradients(Square.apply, shapes=small_shapes)
        except AssertionError as e:
            print(e)
    '''), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True\ncheck_gradients: Square.apply fails"), done.stdout
    output = done.stdout + done.stderr
    assert "Falsifying" not in output and "Explanation" not in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_op.py"]


def test_without_hypothesis_the_import_says_what_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "minift.testing")
    for name in [n for n in sys.modules if n == "hypothesis" or n.startswith("hypothesis.")]:
        monkeypatch.setitem(sys.modules, name, None)          # None: `import hypothesis` fails
    with pytest.raises(ImportError) as caught:
        importlib.import_module("minift.testing")
    # a fresh import defines a fresh class: compare by name
    assert type(caught.value).__name__ == MissingHypothesis.__name__ and isinstance(caught.value, MiniftError)
    assert 'pip install -e ".[test]"' in str(caught.value)


def test_import_minift_imports_neither_testing_nor_hypothesis():
    done = subprocess.run([sys.executable, "-c", "import sys, minift; "
                           "print(sorted(m for m in sys.modules if m in ('minift.testing', 'hypothesis')))"],
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
