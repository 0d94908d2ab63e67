"""The exercises: for each, the piece of minift's reading path the learner writes, how
its examples are drawn, how a learner's file is graded against minift's own code, and a
hint.

    name                 you write                             minift's own (the answer)
    unbroadcast          unbroadcast(grad, shape)              minift/tensor.py:unbroadcast
    softmax              Softmax.backward                      minift/functional/basic.py:Softmax.backward
    cross_entropy        CrossEntropy.backward                 minift/functional/basic.py:CrossEntropy.backward
    layer_norm           LayerNorm.backward                    minift/functional/basic.py:LayerNorm.backward
    gelu                 GELU.backward                         minift/functional/basic.py:GELU.backward
    causal_attention     CausalAttention.backward              minift/functional/attention.py:CausalAttention.backward
    adamw                adamw_step(p, grad, m, v, t, lr, ...) minift/optim.py:adamw_step
    lora_merge           merged_weight(W, A, B, alpha, rank)   minift/adapt/lora.py:merged_weight
    last_token_pooling   pool_last(hidden, lengths)            minift/adapt/heads.py:pool_last
    loss_mask            masked_example(prompt, answer)        minift/adapt/prompts.py:masked_example

The learner's file is cut from minift's own code (runner.solution_source, runner.stub):
the piece they write is the very function minift runs, and the grader compares their
file with it. An example is a dict of named inputs (printed as the failing input when a
check fails). A grader takes the learner's module and one example and raises
grading.Mismatch.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import functional as F
from ..adapt.heads import pool_last
from ..adapt.lora import LoRALinear, merged_weight
from ..adapt.prompts import masked_example
from ..nn import Linear, Parameter
from ..optim import adamw_step
from ..tensor import Function, Tensor, unbroadcast
from .grading import Mismatch, close, compare_op, learner_attr, normal

OP_IMPORTS = "from minift.backend import array_module\nfrom minift.tensor import Function"


@dataclass(frozen=True)
class Exercise:
    name: str
    summary: str            # one line for `list`
    writes: str             # what the learner writes
    reference: str          # minift's own, file:function (the tour's form): the function the learner writes
    example: Callable       # draw -> {name: input}
    grade: Callable         # (learner's module, example) -> None, or raises Mismatch
    hint: str
    todo: str               # the TODO line of the stub
    asks: str               # the docstring of the function in the stub: what it takes and returns (no formula)
    imports: str            # the learner's file's imports
    names: tuple = ()       # top-level names of the reference's file the learner's file holds (default: its own)
    given: int = 0          # statements of the function kept in the stub, after its docstring
    gradcheck: bool = True  # whether grading runs minift.gradcheck (an op with a backward)

    @property
    def source(self):
        """(file, qualified name) of the function the learner writes."""
        path, qualified = self.reference.split(":")
        return path, qualified

    @property
    def copied(self):
        """The top-level names the learner's file takes from minift's file, in order."""
        return self.names or (self.source[1].split(".")[0],)


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
    compare_op("Softmax", lambda x: op.apply(x, axis=axis), lambda x: F.Softmax.apply(x, axis=axis), {"x": ex["x"]})


def _cross_entropy_example(draw):
    n, v = draw.integer(1, 5), draw.integer(1, 6)
    rng = draw.random()
    return {"logits": normal(rng, (n, v), 2.0), "targets": rng.integers(0, v, n)}


def _grade_cross_entropy(module, ex):
    op, targets = learner_attr(module, "CrossEntropy"), ex["targets"]
    compare_op("CrossEntropy", lambda z: op.apply(z, targets.copy()), lambda z: F.CrossEntropy.apply(z, targets),
               {"logits": ex["logits"]})


def _layer_norm_example(draw):
    shape = _shape(draw, 1, 3, last=6)
    rng = draw.random()
    return {"x": normal(rng, shape, 2.0), "weight": normal(rng, shape[-1:]), "bias": normal(rng, shape[-1:])}


def _grade_layer_norm(module, ex):
    op = learner_attr(module, "LayerNorm")
    compare_op("LayerNorm", op.apply, F.LayerNorm.apply, {k: ex[k] for k in ("x", "weight", "bias")})


def _gelu_example(draw):
    shape = _shape(draw, 1, 3, side_high=5)
    return {"x": normal(draw.random(), shape, 3.0)}


def _grade_gelu(module, ex):
    compare_op("GELU", learner_attr(module, "GELU").apply, F.GELU.apply, {"x": ex["x"]})


def _attention_example(draw):
    shape = (draw.integer(1, 2), draw.integer(1, 2), draw.integer(1, 5), draw.integer(1, 4))   # (B, H, T, D)
    rng = draw.random()
    return {name: normal(rng, shape) for name in ("q", "k", "v")}


def _grade_attention(module, ex):
    compare_op("CausalAttention", learner_attr(module, "CausalAttention").apply, F.CausalAttention.apply,
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
    p, m, v = ex["p"].copy(), np.zeros_like(ex["p"]), np.zeros_like(ex["p"])
    expected = (p, m, v)
    for t, g in enumerate(ex["grads"], start=1):
        out = step(p.copy(), g.copy(), m.copy(), v.copy(), t, **hyper)
        if not (isinstance(out, tuple) and len(out) == 3):
            raise Mismatch(f"adamw_step returned {type(out).__name__}; expected a tuple (p, m, v)")
        expected = adamw_step(*(a.copy() for a in expected[:1]), g, *(a.copy() for a in expected[1:]), t, **hyper)
        for name, got, want in zip(("p", "m", "v"), out, expected):
            close(f"adamw_step at step t={t}: the new {name}", got, want)
        p, m, v = out


def _lora_example(draw):
    n_in, n_out, rank = draw.integer(1, 5), draw.integer(1, 5), draw.integer(1, 3)
    alpha = draw.choice([16.0, 1.0, 8.0])
    rng = draw.random()
    return {"weight": normal(rng, (n_in, n_out)), "bias": normal(rng, (n_out,)), "lora_A": normal(rng, (n_in, rank)),
            "lora_B": normal(rng, (rank, n_out)), "alpha": alpha, "rank": rank}


def _grade_lora(module, ex):
    merge = learner_attr(module, "merged_weight")
    layer = LoRALinear(Linear.from_parameters(Parameter(ex["weight"].copy()), Parameter(ex["bias"].copy())),
                       ex["rank"], ex["alpha"], np.random.default_rng(0))
    layer.lora_A.data, layer.lora_B.data = ex["lora_A"].copy(), ex["lora_B"].copy()
    got = merge(*(ex[k].copy() for k in ("weight", "lora_A", "lora_B")), ex["alpha"], ex["rank"])
    close("merged_weight(...)", got,
          merged_weight(*(ex[k] for k in ("weight", "lora_A", "lora_B")), ex["alpha"], ex["rank"]))
    x = np.random.default_rng(1).standard_normal((2, ex["weight"].shape[0]))
    close("x @ merged + bias (the merged layer's output)", x @ np.asarray(got) + ex["bias"], layer(Tensor(x)).data)


def _pooling_example(draw):
    B, T, C = draw.integer(1, 4), draw.integer(1, 5), draw.integer(1, 3)
    rng = draw.random()
    return {"hidden": normal(rng, (B, T, C)), "lengths": rng.integers(1, T + 1, B)}


def _grade_pooling(module, ex):
    learner, lengths = learner_attr(module, "pool_last"), ex["lengths"]
    compare_op("pool_last", lambda h: learner(h, lengths.copy()), lambda h: pool_last(h, lengths),
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
             "with keepdims=True. A 0-d input (shape ()) gets the sum of everything.",
             asks="Sum `grad` (the broadcast shape) down to `shape` (a tuple, the input's shape):\n"
                  "unbroadcast(np.ones((2, 3, 4)), (3, 1)) -> an array of shape (3, 1), every entry 8.0.",
             todo="sum over the leading axes the input lacks, then over its size-1 axes that grew (keepdims)",
             imports="import numpy as np"),
    Exercise("softmax", "softmax's backward, without the Jacobian", "Softmax.backward",
             "minift/functional/basic.py:Softmax.backward", _softmax_example, _grade_softmax,
             "sum_i g_i y_i (delta_ij - y_j) = y_j g_j - y_j sum_i g_i y_i, so dL/dx = y * (g - s) where "
             "s = (g * y).sum(axis=ctx.axis, keepdims=True): keepdims lets s broadcast back over the axis.",
             asks="g = dL/dy (y's shape) -> dL/dx (x's shape).",
             todo="dL/dx from y and g, one row sum along ctx.axis, no Jacobian", imports=OP_IMPORTS, given=1),
    Exercise("cross_entropy", "softmax + cross-entropy's backward, fused", "CrossEntropy.backward",
             "minift/functional/basic.py:CrossEntropy.backward", _cross_entropy_example, _grade_cross_entropy,
             "Copy p (never write into a saved array), subtract 1 at [np.arange(N), t] (fancy indexing "
             "picks one element per row), multiply each row by its share of the mean, w[:, None] (1/N "
             "when every row counts once), and by g. Return a pair: (that, None).",
             asks="g = dL/dloss (a 0-d array) -> (dL/dlogits (N, V), None).",
             todo="p minus the one-hot of each row's target, each row times its share w, times g; and None",
             imports=OP_IMPORTS, given=1),
    Exercise("layer_norm", "layer norm's backward (x, weight and bias)", "LayerNorm.backward",
             "minift/functional/basic.py:LayerNorm.backward", _layer_norm_example, _grade_layer_norm,
             "dweight = (g * xhat) summed over every axis but the last, dbias = g summed the same way. "
             "Summing the row formula over i gives dx = rstd * (dxhat - mean(dxhat) - xhat * "
             "mean(dxhat * xhat)), the means over the last axis with keepdims=True.",
             asks="g = dL/dy (..., C) -> (dL/dx (..., C), dL/dweight (C,), dL/dbias (C,)).",
             todo="dweight and dbias sum over every leading axis; dx from dxhat = g * weight, row by row",
             imports=OP_IMPORTS, given=1),
    Exercise("gelu", "GELU's backward (GPT-2's tanh form)", "GELU.backward",
             "minift/functional/basic.py:GELU.backward", _gelu_example, _grade_gelu,
             "With t = tanh(u): dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, and du/dx = c (1 + 3 * "
             "0.044715 x^2). Return g * dy/dx.",
             asks="g = dL/dy (x's shape) -> dL/dx (x's shape).",
             todo="dy/dx by the product rule, with tanh'(u) = 1 - t^2; return g * dy/dx",
             imports="import math\n\n" + OP_IMPORTS, names=("GELU_C", "GELU"), given=1),
    Exercise("causal_attention", "causal self-attention's backward (dq, dk, dv)", "CausalAttention.backward",
             "minift/functional/attention.py:CausalAttention.backward", _attention_example, _grade_attention,
             "Use .swapaxes(-1, -2) for the transposes of the last two axes: dv = P^T G; dP = G v^T; "
             "dS = P * (dP - sum(dP * P, last axis, keepdims)); dq = dS k * scale; dk = dS^T q * scale.",
             asks="g = dL/dout (B, H, Tq, D) -> (dL/dq, dL/dk, dL/dv), each of its input's shape.",
             todo="dv from P and G; dP from G and v; dS = softmax backward of dP; then dq and dk (times scale)",
             imports="import math\n\n" + OP_IMPORTS, given=1),
    Exercise("adamw", "one AdamW step: moments, bias correction, decoupled decay", "adamw_step(...)",
             "minift/optim.py:adamw_step", _adamw_example, _grade_adamw,
             "m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  mhat = m / (1 - b1**t);  vhat = v / (1 - "
             "b2**t);  p = p - lr * weight_decay * p - lr * mhat / (sqrt(vhat) + eps). The decay uses p "
             "before this step's update, and eps goes outside the square root.",
             asks="One AdamW update of parameter p (any shape) with gradient grad; m and v are the\n"
                  "running averages (p's shape, zeros before the first step), t the number of this\n"
                  "update (1, 2, ...). Returns new arrays (p, m, v); the inputs may be left as they were.",
             todo="update m and v, correct their bias with t, then decay p and take the Adam step",
             imports="from minift.backend import array_module", given=1, gradcheck=False),
    Exercise("lora_merge", "fold a LoRA adapter into its weight", "merged_weight(W, A, B, alpha, rank)",
             "minift/adapt/lora.py:merged_weight", _lora_example, _grade_lora,
             "(x @ A) @ B = x @ (A @ B): the adapter is one more (in, out) matrix, scaled by alpha / rank. "
             "Add it to W (a new array; A @ B, not B @ A).",
             asks="weight (in, out), lora_A (in, r), lora_B (r, out) arrays; alpha a number, rank r.\n"
                  "Returns the merged weight (in, out), a new array.",
             todo="x @ W' must equal x @ W + (x @ A) @ B * (alpha / r) for every x", imports="",
             gradcheck=False),
    Exercise("last_token_pooling", "each text's last real hidden state, padding ignored", "pool_last(hidden, lengths)",
             "minift/adapt/heads.py:pool_last", _pooling_example, _grade_pooling,
             "hidden[rows, cols] with two integer arrays picks hidden[rows[i], cols[i]] for each i: use "
             "rows = np.arange(B) and cols = lengths - 1 (the last real position; not -1, which is padding "
             "in every row shorter than T).",
             asks="hidden: a Tensor (B, T, C); lengths: an integer array (B,), each in 1..T.\n"
                  "Returns a Tensor (B, C): row b is hidden[b, lengths[b] - 1].",
             todo="index hidden with two integer arrays: the rows 0..B-1 and each row's last real position",
             imports="from minift.backend import array_module"),
    Exercise("loss_mask", "instruction tuning's targets: the answer tokens only", "masked_example(prompt, answer)",
             "minift/adapt/prompts.py:masked_example", _loss_mask_example, _grade_loss_mask,
             "y[t] is seq[t + 1]. The first answer token is seq[len(prompt)], which is y[len(prompt) - 1]: "
             "every y before it is a prompt token and becomes IGNORE. Copy y before writing into it.",
             asks="prompt, answer: lists of token ids (both non-empty). Returns (x, y), int64 arrays\n"
                  "of length len(prompt) + len(answer) - 1.",
             todo="build x and y from prompt + answer, then set the targets that are prompt tokens to IGNORE",
             imports="import numpy as np", names=("IGNORE", "masked_example"), gradcheck=False),
]}
