"""Exercise `cross_entropy`: the backward pass of softmax + cross-entropy, fused.

A classifier's loss for N rows of scores (logits (N, V)) and the right class of each
row (targets (N,), integers) is the mean negative log-probability of the right class:

    p = softmax(logits) by rows,      loss = -(1/N) sum_n log p[n, targets[n]]

Chaining softmax's backward with log's would divide by p (unstable when p is tiny);
done together, the derivative is simple. With onehot(t) the row of zeros with a 1 at t:

    dloss/dlogits[n] = (p[n] - onehot(targets[n])) / N

Write `backward`: g is dL/dloss (a scalar, usually 1); return dL/dlogits, and None for the
targets (integers have no gradient).

    check:  python -m minift.learn check cross_entropy DIR
    minift's own: minift/functional/basic.py, class CrossEntropy
"""
import numpy as np

from minift.tensor import Function


class CrossEntropy(Function):
    """Mean cross-entropy of logits (N, V) against integer targets (N,); a scalar.
    Use: CrossEntropy.apply(logits, targets)."""

    def forward(ctx, logits, targets):
        shifted = logits - logits.max(axis=1, keepdims=True)        # (N, V)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(len(targets))
        ctx.save(np.exp(log_p), targets)                            # p (N, V), targets (N,)
        return np.asarray(-log_p[rows, targets].mean())

    def backward(ctx, g):
        """g = dL/dloss (a 0-d array) -> (dL/dlogits (N, V), None)."""
        p, targets = ctx.saved
        # SOLUTION: build (p - onehot(targets)) / N without changing p in place, times g
        grad = p.copy()
        grad[np.arange(len(targets)), targets] -= 1.0
        return grad * (g / len(targets)), None
        # END SOLUTION
