"""Exercise `adamw`: one step of the AdamW optimiser.

Adam keeps two running averages per parameter: m of the gradient and v of its square,
updated with rates b1 and b2 (m <- b1 m + (1 - b1) g, and likewise v with g^2). Both
start at 0, so early on they are too small: dividing by 1 - b1^t (and 1 - b2^t), where t
counts the updates so far (1 at the first), removes that bias. The step is then

    p <- p - lr * mhat / (sqrt(vhat) + eps)          mhat, vhat: the bias-corrected averages

so each element moves by about lr, whatever the scale of its gradient. AdamW's weight
decay is "decoupled" (Loshchilov & Hutter): p also shrinks by lr * weight_decay * p,
applied to p directly, not added to the gradient (where Adam would rescale it).

Write `adamw_step`, returning the new (p, m, v); the caller gives t = 1 at the first step.

    check:  python -m minift.learn check adamw DIR
    minift's own: minift/optim.py, class AdamW
"""
import numpy as np


def adamw_step(p, grad, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """One AdamW update of parameter p (any shape) with gradient grad; m and v are the
    running averages (p's shape, zeros before the first step), t the number of this
    step (1, 2, ...). Returns new arrays (p, m, v); the inputs may be left as they were."""
    b1, b2 = betas
    # SOLUTION: update m and v, correct their bias with t, then decay p and take the Adam step
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    p = p * (1 - lr * weight_decay) - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p, m, v
    # END SOLUTION
