"""gradcheck itself: it passes correct gradients and catches wrong ones, with a message
that names the input, the index and both values."""
import numpy as np
import pytest

import minift
from minift import GradcheckError, gradcheck
from minift.tensor import Function


class WrongSquare(Function):
    """y = x^2 with a deliberately wrong derivative (3x instead of 2x) at one element."""

    def forward(ctx, x):
        ctx.save(x)
        return x * x

    def backward(ctx, g):
        (x,) = ctx.saved
        d = 2 * x
        d.flat[-1] = 3 * x.flat[-1]
        return g * d


def test_passes_correct_gradient_of_a_user_function():
    rng = np.random.default_rng(1)
    x = minift.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = minift.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    assert gradcheck(lambda x, w: ((x @ w).tanh() * 3.0).sum(axis=0), [x, w])


def test_catches_a_wrong_gradient_and_names_it():
    x = minift.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    x.name = "x"
    with pytest.raises(GradcheckError) as err:
        gradcheck(lambda x: WrongSquare.apply(x), [x])
    msg = str(err.value)
    assert "input 0 (x)" in msg and "index (1, 1)" in msg and "1 of 4 elements fail" in msg
    # the (projected) analytic value is 3x/2x = 1.5 times the numeric one
    analytic = float(msg.split("analytic ")[1].split()[0])
    numeric = float(msg.split("numeric ")[1].split()[0].rstrip(","))
    assert abs(analytic / numeric - 1.5) < 1e-6


def test_catches_a_missing_gradient():
    x = minift.tensor(np.array([1.0, 2.0]), requires_grad=True)
    # detach() cuts the graph: the analytic gradient is 0 but the function depends on x
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: x * x.detach(), [x])


def test_leaves_inputs_and_grads_untouched():
    x = minift.tensor(np.array([1.0, 2.0]), requires_grad=True)
    x.grad = np.array([5.0, 5.0])
    before = x.data.copy()
    gradcheck(lambda x: (x ** 2).sum(), [x])
    np.testing.assert_array_equal(x.data, before)
    np.testing.assert_array_equal(x.grad, [5.0, 5.0])


def test_refuses_float32_and_no_inputs():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * 2.0, [minift.tensor(np.ones(2, np.float32), requires_grad=True)])
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda x: x * 2.0, [minift.tensor(np.ones(2))])
