"""Exercise `gelu`: the backward pass of GELU, the activation of GPT-2's MLP.

GPT-2 uses the tanh approximation of GELU (x times the probability that a standard
normal variable is below x):

    y = 0.5 x (1 + tanh(u)),     u = c (x + 0.044715 x^3),     c = sqrt(2 / pi)

It acts on each element alone, so dL/dx = g * dy/dx elementwise. Work dy/dx out with
the product rule and tanh'(u) = 1 - tanh(u)^2, then write `backward`.

    check:  python -m minift.learn check gelu DIR
    minift's own: minift/functional/basic.py, class GELU (which computes the same
    function as x * sigmoid(2u))
"""
import math

import numpy as np

from minift.tensor import Function

C = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """y = 0.5 x (1 + tanh(c (x + 0.044715 x^3))), elementwise. Use: GELU.apply(x)."""

    def forward(ctx, x):
        ctx.save(x)
        return 0.5 * x * (1.0 + np.tanh(C * (x + 0.044715 * x ** 3)))

    def backward(ctx, g):
        """g = dL/dy (x's shape) -> dL/dx (x's shape)."""
        (x,) = ctx.saved
        # SOLUTION: t = tanh(u); dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx; return g * dy/dx
        t = np.tanh(C * (x + 0.044715 * x ** 3))
        du_dx = C * (1.0 + 3 * 0.044715 * x ** 2)
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
        # END SOLUTION
