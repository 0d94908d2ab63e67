"""Check analytic gradients against central finite differences, in float64.

    minift.gradcheck(lambda x, w: (x @ w).tanh(), [x, w])

For every element x_i of every input that requires grad, the numerical derivative

    (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

is compared with the gradient that backward() computes. The function's output is
reduced to a scalar L by a fixed random projection, L = sum(c * f(x)) with Gaussian c:
this checks the whole vector-Jacobian product at once, and any wrong entry of the
Jacobian changes L's gradient unless c happens to cancel it (probability zero).
A one-element output is used as is. The differences are taken output by output before
they are weighted and summed, so outputs that x_i does not touch cancel exactly and do
not add rounding error.
"""
import numpy as np

from .backend import array_module, to_numpy
from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised by `gradcheck` when an analytic gradient disagrees with finite differences."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6, seed=0):
    """Compare `fn`'s analytic gradients with central differences; return True or raise
    GradcheckError naming the input, the worst index, both values and the error.

    `inputs` is a list passed to `fn` as positional arguments; Tensors that require
    grad are checked (they must be float64), anything else is passed through. The test
    per element is |analytic - numeric| <= atol + rtol * |numeric|.
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass tensors made with requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 "
                            f"(make it with dtype=np.float64)")

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    xp = array_module(out.data)
    if out.data.size == 1:
        projection = None
    else:
        rng = np.random.default_rng(seed)
        projection = xp.asarray(rng.standard_normal(out.shape))

    def scalar(o):
        return o.sum() if projection is None else (o * projection).sum()

    def output():
        return to_numpy(fn(*inputs).data).astype(np.float64)

    weights = np.ones(out.shape) if projection is None else to_numpy(projection)

    # Analytic gradients, with the inputs' own .grad saved and restored around it.
    saved_grads = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    scalar(out).backward()
    analytic = [inputs[i].grad for i in checked]
    for i, g in zip(checked, saved_grads):
        inputs[i].grad = g

    with no_grad():
        for i, grad in zip(checked, analytic):
            x = inputs[i]
            if grad is None:
                grad = xp.zeros_like(x.data)   # the output does not depend on x
            numeric = _numeric_gradient(output, weights, x.data, eps)
            a, n = to_numpy(grad).astype(np.float64), to_numpy(numeric)
            err = np.abs(a - n)
            bound = atol + rtol * np.abs(n)
            if not np.all(err <= bound):
                worst = tuple(int(i) for i in np.unravel_index(np.argmax(err - bound), err.shape))
                name = f" ({x.name})" if x.name else ""
                raise GradcheckError(
                    f"gradcheck failed for input {i}{name} of shape {tuple(x.shape)}: at index {worst} "
                    f"analytic {a[worst]:.10g} vs numeric {n[worst]:.10g}, error {err[worst]:.3g} > "
                    f"atol + rtol*|numeric| = {bound[worst]:.3g} ({int((err > bound).sum())} of {err.size} "
                    f"elements fail)")
    return True


def _numeric_gradient(f, weights, x, eps):
    """Central differences of sum(weights * f()) with respect to every element of array x,
    perturbed in place (x may be a non-contiguous view) and restored exactly.

    The outputs are subtracted element by element before they are weighted and summed:
    outputs that do not depend on x[idx] then cancel exactly, and the rounding error of
    the difference quotient stays that of the outputs that do, not of the whole sum.
    """
    grad = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        original = x[idx].item()
        x[idx] = original + eps
        up = f()
        x[idx] = original - eps
        down = f()
        x[idx] = original
        grad[idx] = (weights * (up - down)).sum() / (2 * eps)
    return grad
