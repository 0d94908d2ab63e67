"""The first exercises, written in the tour's early stops: backward passes of the fused ops
(the forward is given, the gradient is the learner's to find) and the pieces that adapt a
model (AdamW, LoRA's merge, pooling, the loss mask). build.py and pieces.py hold the
others; EXERCISES, at the bottom, lists them all in the tour's order.

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
file with it. An example is a dict of named inputs (printed as the failing input, and
rebuilt by the replay, when a check fails). A grader takes the learner's module and one
example and raises grading.Mismatch.
"""
import numpy as np

from .. import functional as F
from ..adapt.heads import pool_last
from ..adapt.lora import LoRALinear, merged_weight
from ..adapt.prompts import masked_example
from ..nn import Linear, Parameter
from ..optim import adamw_step
from ..tensor import Function, Tensor, unbroadcast
from .exercise import OP_IMPORTS, Exercise, call_replay, literal, load_lines, op_replay, shape as _shape
from .grading import Mismatch, close, compare_op, learner_attr, normal
from .texts import INTROS


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
    shape = list(_shape(draw, 1, 3, side_high=5))
    axis = draw.integer(-len(shape), len(shape) - 1)
    shape[axis] = max(shape[axis], 2)          # a softmax over one element is 1, its gradient 0: nothing to check
    return {"x": normal(draw.random(), tuple(shape), 2.0), "axis": axis}


def _grade_softmax(module, ex):
    op, axis = learner_attr(module, "Softmax"), ex["axis"]
    compare_op("Softmax", lambda x: op.apply(x, axis=axis), lambda x: F.Softmax.apply(x, axis=axis), {"x": ex["x"]})


def _cross_entropy_example(draw):
    n, v = draw.integer(1, 5), draw.integer(2, 6)
    rng = draw.random()
    return {"logits": normal(rng, (n, v), 2.0), "targets": rng.integers(0, v, n)}


def _grade_cross_entropy(module, ex):
    op, targets = learner_attr(module, "CrossEntropy"), ex["targets"]
    compare_op("CrossEntropy", lambda z: op.apply(z, targets.copy()), lambda z: F.CrossEntropy.apply(z, targets),
               {"logits": ex["logits"]})


def _layer_norm_example(draw):
    shape = _shape(draw, 1, 3, last=6, last_low=3)     # with C = 2 every xhat is +-1: a degenerate row
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


def _adamw_replay(example, path):
    hyper = ", ".join(f"{k}={example[k]!r}" for k in ("lr", "betas", "eps", "weight_decay"))
    return load_lines(path) + [
        "from minift.optim import adamw_step   # minift's own",
        f"p = {literal(example['p'])}",
        f"grads = {literal(example['grads'])}        # one per step, t = 1, 2, ...",
        "for who, step in ((\"yours\", mine.adamw_step), (\"minift's\", adamw_step)):",
        "    state = (p.copy(), np.zeros_like(p), np.zeros_like(p))",
        "    for t, g in enumerate(grads, start=1):",
        f"        state = step(state[0].copy(), g.copy(), state[1].copy(), state[2].copy(), t, {hyper})",
        "        print(who, 't =', t, 'p, m, v =', *state)"]


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


def _pooling_replay(example, path):
    return load_lines(path) + [
        "from minift.tensor import Tensor",
        "from minift.adapt.heads import pool_last   # minift's own",
        f"hidden = {literal(example['hidden'])}",
        f"lengths = {literal(example['lengths'])}",
        "g = np.random.default_rng(0).standard_normal((len(lengths), hidden.shape[-1]))   # the check's dL/d(output)",
        "for who, pool in ((\"yours\", mine.pool_last), (\"minift's\", pool_last)):",
        "    h = Tensor(hidden, requires_grad=True)",
        "    out = pool(h, lengths.copy())",
        "    (out * g).sum().backward()",
        "    print(who, 'output:', out.data, 'dL/dhidden:', h.grad)"]


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

BACKWARD = [
    Exercise("unbroadcast", "the gradient of an input that NumPy broadcast", "unbroadcast(grad, shape)",
             "minift/tensor.py:unbroadcast", _unbroadcast_example, _grade_unbroadcast,
             ("Broadcasting copies an input, and every copy receives a gradient: an element's gradient is "
              "the sum of its copies'. So unbroadcast sums; the question is over which axes.",
              "grad has grad.ndim axes and the input len(shape). The first grad.ndim - len(shape) axes of "
              "grad are new (sum them away); after those, an axis i with shape[i] == 1 but grad.shape[i] > 1 "
              "grew (sum it, keeping size 1). (2, 3, 4) -> (3, 1): axis 0 goes, then axis 1 of (3, 4) shrinks.",
              "extra = grad.ndim - len(shape); grad = grad.sum(axis=tuple(range(extra))); then "
              "grad.sum(axis=axes, keepdims=True) with axes = every i where shape[i] == 1 != grad.shape[i]. "
              "A 0-d input (shape ()) gets the sum of everything."),
             asks="Sum `grad` (the broadcast shape) down to `shape` (a tuple, the input's shape):\n"
                  "unbroadcast(np.ones((2, 3, 4)), (3, 1)) -> an array of shape (3, 1), every entry 8.0.",
             todo="sum over the leading axes the input lacks, then over its size-1 axes that grew (keepdims)",
             imports="import numpy as np", intro=INTROS["unbroadcast"],
             replay=call_replay("unbroadcast", "minift.tensor:unbroadcast", ("grad", "shape"))),
    Exercise("softmax", "softmax's backward, without the Jacobian", "Softmax.backward",
             "minift/functional/basic.py:Softmax.backward", _softmax_example, _grade_softmax,
             ("Each output y_i depends on the whole row, so dL/dx_j sums g_i dy_i/dx_j over i. Put the "
              "intro's dy_i/dx_j in that sum and split it in two: the delta term keeps one element, the "
              "other is the same number for the whole row. No Jacobian is needed.",
              "g and y have x's shape. The sum over i runs along ctx.axis: one number per row, of size 1 "
              "on that axis (keepdims=True) so that it broadcasts back against y. The result has x's shape.",
              "sum_i g_i y_i (delta_ij - y_j) = y_j g_j - y_j sum_i g_i y_i, so dL/dx = y * (g - s) where "
              "s = (g * y).sum(axis=ctx.axis, keepdims=True)."),
             asks="g = dL/dy (y's shape) -> dL/dx (x's shape).",
             todo="dL/dx from y and g, one row sum along ctx.axis, no Jacobian", imports=OP_IMPORTS, given=1,
             intro=INTROS["softmax"], replay=op_replay("Softmax", "minift.functional:Softmax", "axis={axis}", ("x",))),
    Exercise("cross_entropy", "softmax + cross-entropy's backward, fused", "CrossEntropy.backward",
             "minift/functional/basic.py:CrossEntropy.backward", _cross_entropy_example, _grade_cross_entropy,
             ("Softmax and log together have a simple derivative: raising a logit raises its probability, and "
              "the loss of a row falls only through its target's probability. Per row it is p minus the one-hot "
              "of the target, times that row's share of the mean; the forward saved all three.",
              "p (N, V), targets (N,) integers, w (N,) each row's share; g is a 0-d array. Change one element "
              "per row (fancy indexing [np.arange(N), targets]) in a copy of p; w[:, None] is (N, 1) and "
              "broadcasts over V. Return a pair: the (N, V) gradient, and None for the targets.",
              "dL/dlogits[n] = g * w_n * (p[n] - onehot(targets[n])): d = p.copy(); d[np.arange(N), t] -= 1; "
              "return g * w[:, None] * d, None."),
             asks="g = dL/dloss (a 0-d array) -> (dL/dlogits (N, V), None).",
             todo="p minus the one-hot of each row's target, each row times its share w, times g; and None",
             imports=OP_IMPORTS, given=1, intro=INTROS["cross_entropy"],
             replay=op_replay("CrossEntropy", "minift.functional:CrossEntropy", "targets", ("logits",))),
    Exercise("layer_norm", "layer norm's backward (x, weight and bias)", "LayerNorm.backward",
             "minift/functional/basic.py:LayerNorm.backward", _layer_norm_example, _grade_layer_norm,
             ("weight and bias are shared by every row, so their gradients add up over the rows. dx is the "
              "harder part: each xhat_i depends on the whole row through mu and rstd, so dL/dx_j sums over i. "
              "Work with dxhat (g times weight) first, then pass it through the normalisation.",
              "x and g are (..., C), weight and bias (C,). dweight and dbias sum over every axis but the last "
              "(axis=tuple(range(g.ndim - 1))), not only axis 0: each must come back (C,). Row means are over "
              "the last axis with keepdims=True, so they broadcast back to (..., C).",
              "dweight = (g * xhat) summed over every axis but the last, dbias = g summed the same way. "
              "Summing the row formula over i gives dx = rstd * (dxhat - mean(dxhat) - xhat * "
              "mean(dxhat * xhat)), the means over the last axis with keepdims=True."),
             asks="g = dL/dy (..., C) -> (dL/dx (..., C), dL/dweight (C,), dL/dbias (C,)).",
             todo="dweight and dbias sum over every leading axis; dx from dxhat = g * weight, row by row",
             imports=OP_IMPORTS, given=1, intro=INTROS["layer_norm"],
             replay=op_replay("LayerNorm", "minift.functional:LayerNorm", "", ("x", "weight", "bias"))),
    Exercise("gelu", "GELU's backward (GPT-2's tanh form)", "GELU.backward",
             "minift/functional/basic.py:GELU.backward", _gelu_example, _grade_gelu,
             ("GELU acts on each element alone: dL/dx is g times dy/dx, element by element. y is a product, 0.5 x "
              "times (1 + tanh(u)), and u is a function of x: the product rule, then the chain rule through "
              "tanh and u.",
              "Everything has x's shape and nothing is summed. Recompute t, the tanh of u, from x as the forward "
              "does (GELU_C is c).",
              "With t = tanh(u): dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, and du/dx = c (1 + 3 * "
              "0.044715 x^2). Return g * dy/dx."),
             asks="g = dL/dy (x's shape) -> dL/dx (x's shape).",
             todo="dy/dx by the product rule, with tanh'(u) = 1 - t^2; return g * dy/dx",
             imports="import math\n\n" + OP_IMPORTS, names=("GELU_C", "GELU"), given=1, intro=INTROS["gelu"],
             replay=op_replay("GELU", "minift.functional:GELU", "", ("x",))),
    Exercise("causal_attention", "causal self-attention's backward (dq, dk, dv)", "CausalAttention.backward",
             "minift/functional/attention.py:CausalAttention.backward", _attention_example, _grade_attention,
             ("Run the forward's three lines backwards: the scores S from q and k (scaled), P their softmax by rows, out from P and v. "
              "A matrix product's gradients are products with the other factor transposed; softmax's backward "
              "is the `softmax` exercise's, row by row; the mask needs nothing (P is already 0 there).",
              "G, q, k, v are (B, H, T, D); P, dP and dS are (B, H, T, T). @ batches over (B, H), so transpose "
              "only the last two axes (.swapaxes(-1, -2)): dv is (T, T)^T @ (T, D), dP is (T, D) @ (T, D)^T.",
              "dv = P^T G; dP = G v^T; dS = P * (dP - sum(dP * P, last axis, keepdims)); dq = dS k * scale; "
              "dk = dS^T q * scale."),
             asks="g = dL/dout (B, H, Tq, D) -> (dL/dq, dL/dk, dL/dv), each of its input's shape.",
             todo="dv from P and G; dP from G and v; dS = softmax backward of dP; then dq and dk (times scale)",
             imports="import math\n\n" + OP_IMPORTS, given=1, intro=INTROS["causal_attention"],
             replay=op_replay("CausalAttention", "minift.functional:CausalAttention", "", ("q", "k", "v"))),
]

PIECES = [
    Exercise("adamw", "one AdamW step: moments, bias correction, decoupled decay", "adamw_step(...)",
             "minift/optim.py:adamw_step", _adamw_example, _grade_adamw,
             ("Update the two running averages, then correct their bias (they start at 0 and would be too "
              "small early on), then move p: shrunk in proportion to itself (the decay, applied to p, not "
              "added to the gradient) and stepped by the corrected mean over the root of the corrected square.",
              "p, grad, m and v all have p's shape, and every operation is element by element; t, lr, eps and "
              "weight_decay are numbers, betas the pair (b1, b2). Return three new arrays (p, m, v).",
              "m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  mhat = m / (1 - b1**t);  vhat = v / (1 - "
              "b2**t);  p = p - lr * weight_decay * p - lr * mhat / (sqrt(vhat) + eps). The decay uses p "
              "before this step's update, and eps goes outside the square root."),
             asks="One AdamW update of parameter p (any shape) with gradient grad; m and v are the\n"
                  "running averages (p's shape, zeros before the first step), t the number of this\n"
                  "update (1, 2, ...). Returns new arrays (p, m, v); the inputs may be left as they were.",
             todo="update m and v, correct their bias with t, then decay p and take the Adam step",
             imports="from minift.backend import array_module", given=1, gradcheck=False, kind="build",
             intro=INTROS["adamw"], replay=_adamw_replay),
    Exercise("lora_merge", "fold a LoRA adapter into its weight", "merged_weight(W, A, B, alpha, rank)",
             "minift/adapt/lora.py:merged_weight", _lora_example, _grade_lora,
             ("Multiplying x by A and then by B is multiplying it by one matrix, the product of the two: "
              "the adapter is one more matrix the size of W, scaled.",
              "W is (in, out), A (in, r), B (r, out): A @ B is (in, out) like W (B @ A would be (r, r)). The "
              "scale alpha / rank is a number.",
              "W' = W + (A @ B) * (alpha / rank), a new array (never add into W)."),
             asks="weight (in, out), lora_A (in, r), lora_B (r, out) arrays; alpha a number, rank r.\n"
                  "Returns the merged weight (in, out), a new array.",
             todo="x @ W' must equal x @ W + (x @ A) @ B * (alpha / r) for every x", imports="",
             gradcheck=False, kind="build", intro=INTROS["lora_merge"],
             replay=call_replay("merged_weight", "minift.adapt.lora:merged_weight",
                                ("weight", "lora_A", "lora_B", "alpha", "rank"))),
    Exercise("last_token_pooling", "each text's last real hidden state, padding ignored", "pool_last(hidden, lengths)",
             "minift/adapt/heads.py:pool_last", _pooling_example, _grade_pooling,
             ("A text's summary is its hidden state at its last real token: position lengths[b] - 1 of row b. "
              "Position -1 is padding in every row shorter than T.",
              "hidden is (B, T, C) and lengths (B,). Indexing with two integer arrays of length B, one of rows "
              "and one of positions, picks B vectors: (B, C).",
              "hidden[xp.arange(B), lengths - 1] with xp = array_module(lengths)."),
             asks="hidden: a Tensor (B, T, C); lengths: an integer array (B,), each in 1..T.\n"
                  "Returns a Tensor (B, C): row b is hidden[b, lengths[b] - 1].",
             todo="index hidden with two integer arrays: the rows 0..B-1 and each row's last real position",
             imports="from minift.backend import array_module", kind="build", intro=INTROS["last_token_pooling"],
             replay=_pooling_replay),
    Exercise("loss_mask", "instruction tuning's targets: the answer tokens only", "masked_example(prompt, answer)",
             "minift/adapt/prompts.py:masked_example", _loss_mask_example, _grade_loss_mask,
             ("Next-token prediction shifts by one: y[t] is the token after x[t]. Every target that is a "
              "prompt token must not count.",
              "seq (the prompt, then the answer) has len(prompt) + len(answer) tokens; x and y one fewer. The first answer "
              "token, seq[len(prompt)], is y[len(prompt) - 1]: the targets before it are prompt tokens.",
              "seq = np.array(prompt + answer); x, y = seq[:-1], seq[1:].copy(); y[:len(prompt) - 1] = IGNORE."),
             asks="prompt, answer: lists of token ids (both non-empty). Returns (x, y), int64 arrays\n"
                  "of length len(prompt) + len(answer) - 1.",
             todo="build x and y from prompt + answer, then set the targets that are prompt tokens to IGNORE",
             imports="import numpy as np", names=("IGNORE", "masked_example"), gradcheck=False, kind="build",
             intro=INTROS["loss_mask"],
             replay=call_replay("masked_example", "minift.adapt.prompts:masked_example", ("prompt", "answer"))),
]

# The tour's order: the engine, the fused ops (forward, then backward), attention, a GPT
# block and its training, sampling and the tokenizer, then adaptation and alignment.
ORDER = ["backward_walk", "unbroadcast", "stable_softmax", "softmax", "cross_entropy", "layer_norm", "gelu",
         "attention_forward", "split_heads", "merge_heads", "causal_attention", "gpt_block", "train_step", "adamw",
         "sampling", "bpe_merge", "last_token_pooling", "lora_forward", "lora_merge", "loss_mask", "dpo_loss"]


def _all():
    from . import build, pieces          # (they import this module's neighbours, never this module)
    found = {e.name: e for e in BACKWARD + PIECES + build.EXERCISES + pieces.EXERCISES}
    return {name: found[name] for name in ORDER if name in found}


EXERCISES = _all()
