"""The exercises: for each, how its examples are drawn, how a learner's file is graded
against minift's own implementation, and a hint.

    name                 you write                             graded against minift's
    unbroadcast          unbroadcast(grad, shape)              minift/tensor.py:unbroadcast
    softmax              Softmax.backward                      minift/functional/basic.py:Softmax.backward
    cross_entropy        CrossEntropy.backward                 minift/functional/basic.py:CrossEntropy.backward
    layer_norm           LayerNorm.backward                    minift/functional/basic.py:LayerNorm.backward
    gelu                 GELU.backward                         minift/functional/basic.py:GELU.backward
    causal_attention     CausalAttention.backward              minift/functional/attention.py:CausalAttention.backward
    adamw                adamw_step(p, grad, m, v, t, lr, ...) minift/optim.py:AdamW._update
    lora_merge           merge_lora(W, A, B, alpha, rank)      minift/adapt/lora.py:LoRALinear.merged
    last_token_pooling   pool_last(hidden, lengths)            minift/adapt/heads.py:pool
    loss_mask            masked_example(prompt, answer)        minift/adapt/prompts.py:masked_example

An example is a dict of named inputs (printed as the failing input when a check fails).
A grader takes the learner's module and one example and raises grading.Mismatch.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import functional as F
from ..adapt.heads import pool
from ..adapt.lora import LoRALinear
from ..adapt.prompts import masked_example
from ..nn import Linear, Parameter
from ..optim import AdamW
from ..tensor import Function, Tensor, unbroadcast
from .grading import Mismatch, close, compare_op, learner_attr, normal


@dataclass(frozen=True)
class Exercise:
    name: str
    summary: str            # one line for `list`
    writes: str             # what the learner writes
    reference: str          # minift's own, as file:function (the tour's form; a test checks it exists)
    example: Callable       # draw -> {name: input}
    grade: Callable         # (learner's module, example) -> None, or raises Mismatch
    hint: str
    gradcheck: bool = True  # whether grading runs minift.gradcheck (an op with a backward)


def _shape(draw, ndim_low, ndim_high, side_high=4, last=None):
    """A shape of ndim_low..ndim_high axes of 1..side_high (the last axis 2..last if given)."""
    ndim = draw.integer(ndim_low, ndim_high)
    shape = [draw.integer(1, side_high) for _ in range(ndim)]
    if last is not None and ndim:
        shape[-1] = draw.integer(2, last)
    return tuple(shape)


# ----------------------------------------------------------------------------- unbroadcast

def _unbroadcast_example(draw):
    out = _shape(draw, 0, 3)
    lost = draw.integer(0, len(out))                   # leading axes the input lacks
    shape = tuple(1 if draw.integer(0, 1) else n for n in out[lost:])
    return {"grad": normal(draw.random(), out), "shape": shape}


def _grade_unbroadcast(module, ex):
    learner = learner_attr(module, "unbroadcast")
    grad, shape = ex["grad"], ex["shape"]
    close("unbroadcast(grad, shape)", learner(grad.copy(), shape), unbroadcast(grad, shape))

    class BroadcastMul(Function):          # a * b whose backward undoes broadcasting with your function
        def forward(ctx, a, b):
            ctx.save(a, b)
            return a * b

        def backward(ctx, g):
            a, b = ctx.saved
            grads = learner(g * b, a.shape), learner(g * a, b.shape)
            for x, dx in zip((a, b), grads):
                if np.shape(dx) != x.shape:
                    raise Mismatch(f"unbroadcast(gradient of shape {g.shape}, {x.shape}) has shape "
                                   f"{np.shape(dx)}; expected {x.shape}")
            return grads
    rng = np.random.default_rng(1)
    inputs = {"a": rng.standard_normal(shape), "b": rng.standard_normal(grad.shape)}
    compare_op("a * b (broadcast)", BroadcastMul.apply, lambda a, b: a * b, inputs)


# ----------------------------------------------------------------------------- fused ops

def _softmax_example(draw):
    shape = _shape(draw, 1, 3, side_high=5)
    axis = draw.integer(-len(shape), len(shape) - 1)
    return {"x": normal(draw.random(), shape, 2.0), "axis": axis}


def _grade_softmax(module, ex):
    op, axis = learner_attr(module, "Softmax"), ex["axis"]
    compare_op("Softmax", lambda x: op.apply(x, axis=axis), lambda x: F.softmax(x, axis=axis), {"x": ex["x"]})


def _cross_entropy_example(draw):
    n, v = draw.integer(1, 5), draw.integer(1, 6)
    rng = draw.random()
    return {"logits": normal(rng, (n, v), 2.0), "targets": rng.integers(0, v, n)}


def _grade_cross_entropy(module, ex):
    op, targets = learner_attr(module, "CrossEntropy"), ex["targets"]
    compare_op("CrossEntropy", lambda z: op.apply(z, targets.copy()), lambda z: F.cross_entropy(z, targets),
               {"logits": ex["logits"]})


def _layer_norm_example(draw):
    shape = _shape(draw, 1, 3, last=6)
    rng = draw.random()
    return {"x": normal(rng, shape, 2.0), "weight": normal(rng, shape[-1:]), "bias": normal(rng, shape[-1:])}


def _grade_layer_norm(module, ex):
    op = learner_attr(module, "LayerNorm")
    compare_op("LayerNorm", op.apply, F.layer_norm, {k: ex[k] for k in ("x", "weight", "bias")})


def _gelu_example(draw):
    shape = _shape(draw, 1, 3, side_high=5)
    return {"x": normal(draw.random(), shape, 3.0)}


def _grade_gelu(module, ex):
    compare_op("GELU", learner_attr(module, "GELU").apply, F.gelu, {"x": ex["x"]})


def _attention_example(draw):
    shape = (draw.integer(1, 2), draw.integer(1, 2), draw.integer(1, 5), draw.integer(1, 4))   # (B, H, T, D)
    rng = draw.random()
    return {name: normal(rng, shape) for name in ("q", "k", "v")}


def _grade_attention(module, ex):
    compare_op("CausalAttention", learner_attr(module, "CausalAttention").apply, F.causal_attention,
               {k: ex[k] for k in ("q", "k", "v")})


# ----------------------------------------------------------------------------- optimiser, adaptation

def _adamw_example(draw):
    shape = _shape(draw, 1, 2)
    steps = draw.integer(1, 4)
    hyper = {"lr": draw.choice([1e-3, 1e-2, 0.1]), "betas": draw.choice([(0.9, 0.999), (0.9, 0.95), (0.5, 0.6)]),
             "eps": 1e-8, "weight_decay": draw.choice([0.0, 0.1, 0.01])}
    rng = draw.random()
    return {"p": normal(rng, shape), "grads": [normal(rng, shape) for _ in range(steps)], **hyper}


def _grade_adamw(module, ex):
    step = learner_attr(module, "adamw_step")
    hyper = {k: ex[k] for k in ("lr", "betas", "eps", "weight_decay")}
    param = Tensor(ex["p"].copy(), requires_grad=True)
    optimizer = AdamW([param], **hyper)
    p, m, v = ex["p"].copy(), np.zeros_like(ex["p"]), np.zeros_like(ex["p"])
    for t, g in enumerate(ex["grads"], start=1):
        out = step(p.copy(), g.copy(), m.copy(), v.copy(), t, **hyper)
        if not (isinstance(out, tuple) and len(out) == 3):
            raise Mismatch(f"adamw_step returned {type(out).__name__}; expected a tuple (p, m, v)")
        p, m, v = out
        param.grad = g.copy()
        optimizer.step()
        state = optimizer.state[id(param)]
        for name, got, expected in (("m", m, state["m"]), ("v", v, state["v"]), ("p", p, param.data)):
            close(f"adamw_step at step t={t}: the new {name}", got, expected)


def _lora_example(draw):
    n_in, n_out, rank = draw.integer(1, 5), draw.integer(1, 5), draw.integer(1, 3)
    alpha = draw.choice([16.0, 1.0, 8.0])
    rng = draw.random()
    return {"weight": normal(rng, (n_in, n_out)), "bias": normal(rng, (n_out,)), "lora_A": normal(rng, (n_in, rank)),
            "lora_B": normal(rng, (rank, n_out)), "alpha": alpha, "rank": rank}


def _grade_lora(module, ex):
    merge = learner_attr(module, "merge_lora")
    layer = LoRALinear(Linear.from_parameters(Parameter(ex["weight"].copy()), Parameter(ex["bias"].copy())),
                       ex["rank"], ex["alpha"], np.random.default_rng(0))
    layer.lora_A.data, layer.lora_B.data = ex["lora_A"].copy(), ex["lora_B"].copy()
    got = merge(*(ex[k].copy() for k in ("weight", "lora_A", "lora_B")), ex["alpha"], ex["rank"])
    close("merge_lora(...)", got, layer.merged().weight.data)
    x = np.random.default_rng(1).standard_normal((2, ex["weight"].shape[0]))
    close("x @ merged + bias (the merged layer's output)", x @ np.asarray(got) + ex["bias"], layer(Tensor(x)).data)


def _pooling_example(draw):
    B, T, C = draw.integer(1, 4), draw.integer(1, 5), draw.integer(1, 3)
    rng = draw.random()
    return {"hidden": normal(rng, (B, T, C)), "lengths": rng.integers(1, T + 1, B)}


def _grade_pooling(module, ex):
    pool_last, lengths = learner_attr(module, "pool_last"), ex["lengths"]
    compare_op("pool_last", lambda h: pool_last(h, lengths.copy()), lambda h: pool(h, lengths, "last"),
               {"hidden": ex["hidden"]})


def _loss_mask_example(draw):
    n_prompt, n_answer = draw.integer(1, 6), draw.integer(1, 4)
    rng = draw.random()
    return {"prompt": rng.integers(0, 50, n_prompt).tolist(), "answer": rng.integers(0, 50, n_answer).tolist()}


def _grade_loss_mask(module, ex):
    out = learner_attr(module, "masked_example")(list(ex["prompt"]), list(ex["answer"]))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Mismatch(f"masked_example returned {type(out).__name__}; expected a tuple (x, y)")
    x, y = masked_example(ex["prompt"], ex["answer"])
    close("x (the inputs)", out[0], x, rtol=0, atol=0)
    close("y (the targets, IGNORE = -100 where the loss must not count)", out[1], y, rtol=0, atol=0)


# ----------------------------------------------------------------------------- the list, in the tour's order

EXERCISES = {e.name: e for e in [
    Exercise("unbroadcast", "the gradient of an input that NumPy broadcast", "unbroadcast(grad, shape)",
             "minift/tensor.py:unbroadcast", _unbroadcast_example, _grade_unbroadcast,
             "First sum over the first grad.ndim - len(shape) axes (axis=tuple(range(extra))): the input "
             "has no such axes. Then, for every axis i where shape[i] == 1 but grad.shape[i] != 1, sum "
             "with keepdims=True. A 0-d input (shape ()) gets the sum of everything."),
    Exercise("softmax", "softmax's backward, without the Jacobian", "Softmax.backward",
             "minift/functional/basic.py:Softmax.backward", _softmax_example, _grade_softmax,
             "sum_i g_i y_i (delta_ij - y_j) = y_j g_j - y_j sum_i g_i y_i, so dL/dx = y * (g - s) where "
             "s = (g * y).sum(axis=ctx.axis, keepdims=True): keepdims lets s broadcast back over the axis."),
    Exercise("cross_entropy", "softmax + cross-entropy's backward, fused", "CrossEntropy.backward",
             "minift/functional/basic.py:CrossEntropy.backward", _cross_entropy_example, _grade_cross_entropy,
             "Copy p (never write into a saved array), subtract 1 at [np.arange(N), targets] (fancy "
             "indexing picks one element per row), divide by N (the loss is a mean) and multiply by g. "
             "Return a pair: (that, None)."),
    Exercise("layer_norm", "layer norm's backward (x, weight and bias)", "LayerNorm.backward",
             "minift/functional/basic.py:LayerNorm.backward", _layer_norm_example, _grade_layer_norm,
             "dweight = (g * xhat) summed over every axis but the last, dbias = g summed the same way. "
             "Summing the row formula over i gives dx = rstd * (dxhat - mean(dxhat) - xhat * "
             "mean(dxhat * xhat)), the means over the last axis with keepdims=True."),
    Exercise("gelu", "GELU's backward (GPT-2's tanh form)", "GELU.backward",
             "minift/functional/basic.py:GELU.backward", _gelu_example, _grade_gelu,
             "With t = tanh(u): dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, and du/dx = c (1 + 3 * "
             "0.044715 x^2). Return g * dy/dx."),
    Exercise("causal_attention", "causal self-attention's backward (dq, dk, dv)", "CausalAttention.backward",
             "minift/functional/attention.py:CausalAttention.backward", _attention_example, _grade_attention,
             "Use .swapaxes(-1, -2) for the transposes of the last two axes: dv = P^T G; dP = G v^T; "
             "dS = P * (dP - sum(dP * P, last axis, keepdims)); dq = dS k * scale; dk = dS^T q * scale."),
    Exercise("adamw", "one AdamW step: moments, bias correction, decoupled decay", "adamw_step(...)",
             "minift/optim.py:AdamW._update", _adamw_example, _grade_adamw,
             "m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  mhat = m / (1 - b1**t);  vhat = v / (1 - "
             "b2**t);  p = p - lr * weight_decay * p - lr * mhat / (sqrt(vhat) + eps). The decay uses p "
             "before this step's update, and eps goes outside the square root.", gradcheck=False),
    Exercise("lora_merge", "fold a LoRA adapter into its weight", "merge_lora(W, A, B, alpha, rank)",
             "minift/adapt/lora.py:LoRALinear.merged", _lora_example, _grade_lora,
             "(x @ A) @ B = x @ (A @ B): the adapter is one more (in, out) matrix, scaled by alpha / rank. "
             "Add it to W (a new array; A @ B, not B @ A).", gradcheck=False),
    Exercise("last_token_pooling", "each text's last real hidden state, padding ignored", "pool_last(hidden, lengths)",
             "minift/adapt/heads.py:pool", _pooling_example, _grade_pooling,
             "hidden[rows, cols] with two integer arrays picks hidden[rows[i], cols[i]] for each i: use "
             "rows = np.arange(B) and cols = lengths - 1 (the last real position; not -1, which is padding "
             "in every row shorter than T)."),
    Exercise("loss_mask", "instruction tuning's targets: the answer tokens only", "masked_example(prompt, answer)",
             "minift/adapt/prompts.py:masked_example", _loss_mask_example, _grade_loss_mask,
             "y[t] is seq[t + 1]. The first answer token is seq[len(prompt)], which is y[len(prompt) - 1]: "
             "every y before it is a prompt token and becomes IGNORE. Copy y before writing into it.",
             gradcheck=False),
]}
