"""The "build it" exercises: forward passes of the reading path, written by the learner
and graded, values and gradients, against minift's own.

    name               you write                    minift's own (the answer)
    stable_softmax     Softmax.forward              minift/functional/basic.py:Softmax.forward
    attention_forward  CausalAttention.forward      minift/functional/attention.py:CausalAttention.forward
    split_heads        split_heads(qkv, n_head)     minift/functional/attention.py:split_heads
    merge_heads        merge_heads(y)               minift/functional/attention.py:merge_heads
    gpt_block          Block.forward                minift/model.py:Block.forward
    lora_forward       LoRALinear.forward           minift/adapt/lora.py:LoRALinear.forward

Each is graded on its output and on the gradient of every input (and parameter) with
one upstream gradient: by compare_op, gradcheck included, except the block (a gradcheck
over its every parameter takes seconds an example). Where the backward is given
(Softmax, CausalAttention), the gradients grade what the learner's forward saved for
it. Softmax and attention are drawn with large logits too (hundreds to thousands),
which only a stable softmax survives. The modules (Block, LoRALinear) are minift's own
instances, built alike twice, with the learner's forward called on one of them as
`Class.forward(instance, ...)`: what minift runs once `learn run` puts the learner's
forward on the class.
"""
import numpy as np

from .. import functional as F
from ..adapt.lora import LoRALinear
from ..functional.attention import merge_heads, split_heads
from ..model import Block, GPTConfig, KVCache
from ..nn import Linear, Parameter
from ..tensor import Tensor, no_grad
from .build_texts import INTROS
from .exercise import OP_IMPORTS, Exercise, literal, load_lines, op_replay, shape as _shape
from .grading import Mismatch, close, compare_op, learner_attr, normal


def _compare(what, learner, reference, inputs, blame):
    """compare_op, with its mismatch saying where a wrong gradient comes from here: the
    learner wrote a forward (compare_op's own words blame "your backward")."""
    try:
        compare_op(what, learner, reference, inputs)
    except Mismatch as e:
        e.what = e.what.replace("(your backward)", f"({blame})").replace(
            "your backward disagrees", "the gradients disagree")
        e.args = (e.what,)
        raise


# ----------------------------------------------------------------------------- stable softmax

def _stable_softmax_example(draw):
    shape = list(_shape(draw, 1, 3, side_high=5))
    axis = draw.integer(-len(shape), len(shape) - 1)
    shape[axis] = max(shape[axis], 2)          # a softmax over one element is 1: nothing to check
    large = draw.choice(["no", "shifted by +800", "scaled by 1000"])
    rng = draw.random()
    x = normal(rng, tuple(shape), 2.0)
    if large != "no":                          # exp of these overflows: only a stable softmax survives
        rows = rng.random([1 if i == axis % len(shape) else n for i, n in enumerate(shape)]) < 0.5
        rows.flat[0] = True                    # at least one large row; often also a plain one
        x = np.where(rows, x + 800.0 if large.startswith("shifted") else x * 1000.0, x)
    return {"x": x, "axis": axis, "large": large}


def _grade_stable_softmax(module, ex):
    op, axis = learner_attr(module, "Softmax"), ex["axis"]
    _compare("Softmax", lambda x: op.apply(x, axis=axis), lambda x: F.Softmax.apply(x, axis=axis), {"x": ex["x"]},
             "the backward is given: does your forward set ctx.axis and save y itself?")


# ----------------------------------------------------------------------------- attention

def _attention_example(draw):
    B, H, Tk, D = draw.integer(1, 2), draw.integer(1, 2), draw.integer(2, 5), draw.integer(1, 4)
    Tq = Tk - draw.integer(0, Tk - 1)           # Tq < Tk: decoding with a KV cache
    size = draw.choice([1.0, 50.0])             # 50: scores in the hundreds and thousands
    rng = draw.random()
    return {"q": normal(rng, (B, H, Tq, D), size), "k": normal(rng, (B, H, Tk, D), size),
            "v": normal(rng, (B, H, Tk, D)), "size": size}


def _grade_attention(module, ex):
    _compare("CausalAttention", learner_attr(module, "CausalAttention").apply, F.CausalAttention.apply,
             {k: ex[k] for k in ("q", "k", "v")},
             "the backward is given: does your forward set ctx.scale and save q, k, v and P?")


# ----------------------------------------------------------------------------- heads

def _split_example(draw):
    B, T, H, D = draw.integer(1, 2), draw.integer(2, 4), draw.integer(2, 3), draw.integer(1, 3)
    return {"qkv": normal(draw.random(), (B, T, 3 * H * D)), "n_head": H}     # H, T >= 2: a transpose shows


def _grade_split(module, ex):
    learner, H = learner_attr(module, "split_heads"), ex["n_head"]
    got = learner(Tensor(ex["qkv"].copy()), H)
    if not (isinstance(got, (list, tuple)) and len(got) == 3):
        raise Mismatch(f"split_heads returned {type(got).__name__}; expected a list of three Tensors [q, k, v]")
    for i, name in enumerate("qkv"):
        _compare(f"split_heads(qkv, n_head), {name} (part {i})", lambda t, i=i: learner(t, H)[i],
                 lambda t, i=i: split_heads(t, H)[i], {"qkv": ex["qkv"]}, "through your reshapes")


def _merge_example(draw):
    shape = (draw.integer(1, 2), draw.integer(2, 3), draw.integer(2, 4), draw.integer(1, 3))   # (B, H, T, D)
    return {"y": normal(draw.random(), shape)}


def _grade_merge(module, ex):
    _compare("merge_heads(y)", learner_attr(module, "merge_heads"), merge_heads, {"y": ex["y"]},
             "through your reshapes")


def _heads_replay(function, call):
    """Prints both functions' outputs (each part, for split_heads) and the gradient of the
    input for L = sum of (output * g), g the check's dL/d(output)."""
    tensor = call.split(",")[0]

    def build(example, path):
        rest = call.format(**example).split(",")[1:]
        return load_lines(path) + [
            "from minift.tensor import Tensor",
            f"from minift.functional.attention import {function}   # minift's own",
            f"{tensor} = {literal(example[tensor])}",
            f"for who, f in ((\"yours\", mine.{function}), (\"minift's\", {function})):",
            f"    leaf = Tensor({tensor}, requires_grad=True)",
            f"    out = f({', '.join(['leaf'] + rest)})",
            "    parts = out if isinstance(out, (list, tuple)) else [out]",
            "    for part in parts:",
            "        print(who, 'output', part.shape, part.data)",
            "    sum((p * np.random.default_rng(0).standard_normal(p.shape)).sum() for p in parts).backward()",
            f"    print(who, 'dL/d{tensor}:', leaf.grad)"]
    return build


# ----------------------------------------------------------------------------- a GPT block

def tiny_block(n_embd, seed, causal=True):
    """The check's Block: minift's own class, n_embd channels in 2 heads, float64, every
    parameter drawn from `seed` with std 0.5 (GPT-2's init, std 0.02, would make attn
    and mlp tiny next to x, and a wrong block hard to see)."""
    config = GPTConfig(vocab_size=8, block_size=16, n_layer=1, n_head=2, n_embd=n_embd, causal=causal)
    block = Block(config, np.random.default_rng(0), np.float64)
    rng = np.random.default_rng(seed)
    for _, p in block.named_parameters():
        p.data = normal(rng, p.shape, 0.5)
    return block


def _block_example(draw):
    mode = draw.choice(["gpt", "encoder", "decoding"])
    B, T, n_embd = draw.integer(1, 2), draw.integer(2, 4), 2 * draw.integer(2, 3)   # C >= 4: a real layer norm
    rng = draw.random()
    example = {"mode": mode, "n_embd": n_embd, "seed": int(rng.integers(0, 2 ** 16)),
               "x": normal(rng, (B, T, n_embd))}
    if mode == "encoder":
        example["lengths"] = rng.integers(1, T + 1, B)            # the real tokens of each padded row
    elif mode == "decoding":
        example["past"] = normal(rng, (B, draw.integer(1, 3), n_embd))    # the positions decoded before x
    return example


def _grade_block(module, ex):
    forward = learner_attr(module, "Block").forward
    n_embd, seed, causal = ex["n_embd"], ex["seed"], ex["mode"] != "encoder"
    if ex["mode"] == "decoding":               # as `generate` runs it: no graph, the cache filled then read
        def decode(fn):
            block, cache = tiny_block(n_embd, seed), KVCache(1)
            with no_grad():
                return [fn(block, Tensor(a.copy()), cache.layer(0), None) for a in (ex["past"], ex["x"])]
        for what, got, want in zip(("on past (it fills the cache)", "on x after past (it reads the cache)"),
                                   decode(forward), decode(Block.forward)):
            close(f"Block.forward with a KV cache, {what}: the output", got, want.data)
        return
    # Two blocks built alike, one run by each forward: the outputs, then the gradients of x
    # and of every parameter with one upstream gradient. No gradcheck: the learner writes
    # no backward (the engine differentiates minift's own modules), and one over every
    # parameter would take seconds an example.
    what = f"Block.forward ({'a GPT' if causal else 'an encoder, with lengths'})"
    lengths = ex.get("lengths")
    mine, theirs = tiny_block(n_embd, seed, causal), tiny_block(n_embd, seed, causal)
    x_mine, x_theirs = (Tensor(ex["x"].copy(), requires_grad=True) for _ in range(2))
    got = forward(mine, x_mine, None, None if lengths is None else lengths.copy())
    if not isinstance(got, Tensor):
        raise Mismatch(f"{what} returned a {type(got).__name__}, not a Tensor")
    expected = Block.forward(theirs, x_theirs, None, lengths)
    close(f"{what}: the output", got, expected.data)
    g = np.random.default_rng(0).standard_normal(expected.shape)       # dL/d(output)
    (got * g).sum().backward()
    (expected * g).sum().backward()
    pairs = [("x", x_mine, x_theirs)] + [(name, p, q) for (name, p), (_, q) in
                                          zip(mine.named_parameters(), theirs.named_parameters())]
    for name, m, t in pairs:
        if m.grad is None:
            raise Mismatch(f"{what}: no gradient reached {name} (does your forward use it?)")
        close(f"{what}: the gradient of {name}", m.grad, t.grad)


def _block_replay(example, path):
    lines = load_lines(path) + [
        "from minift import no_grad",
        "from minift.model import Block, KVCache   # minift's own",
        "from minift.learn.build import tiny_block  # the check's block: 2 heads, float64, parameters from seed",
        "from minift.tensor import Tensor",
        f"x = {literal(example['x'])}"]
    block = f"tiny_block({example['n_embd']}, {example['seed']}, causal={example['mode'] != 'encoder'})"
    if example["mode"] == "decoding":
        return lines + [
            f"past = {literal(example['past'])}",
            "for who, forward in ((\"yours\", mine.Block.forward), (\"minift's\", Block.forward)):",
            f"    block, cache = {block}, KVCache(1)",
            "    with no_grad():",
            "        print(who, 'output on past:', forward(block, Tensor(past), cache.layer(0), None).data)",
            "        print(who, 'output on x after past:', forward(block, Tensor(x), cache.layer(0), None).data)"]
    return lines + [
        f"lengths = {literal(example.get('lengths'))}",
        "g = np.random.default_rng(0).standard_normal(x.shape)   # dL/d(output): the check's",
        "for who, forward in ((\"yours\", mine.Block.forward), (\"minift's\", Block.forward)):",
        f"    block = {block}",
        "    leaf = Tensor(x, requires_grad=True)",
        "    out = forward(block, leaf, None, lengths)",
        "    (out * g).sum().backward()",
        "    print(who, 'output:', out.data)",
        "    print(who, 'dL/dx:', leaf.grad)",
        "    print(who, 'norms of dL/dparameter:', {n: round(float(np.linalg.norm(p.grad)), 6) "
        "for n, p in block.named_parameters()})"]


# ----------------------------------------------------------------------------- LoRA

def _lora_example(draw):
    lead = _shape(draw, 1, 2)
    n_in, n_out, rank = draw.integer(1, 5), draw.integer(1, 5), draw.integer(1, 3)
    alpha, bias = draw.choice([16.0, 1.0, 8.0]), draw.choice([True, False])
    rng = draw.random()
    return {"x": normal(rng, lead + (n_in,)), "weight": normal(rng, (n_in, n_out)),
            "bias": normal(rng, (n_out,)) if bias else None, "lora_A": normal(rng, (n_in, rank)),
            "lora_B": normal(rng, (rank, n_out)), "alpha": alpha, "rank": rank}    # B != 0: the update shows


def _lora_layer(ex, A, B):
    """minift's LoRALinear around a frozen Linear (the example's W and b), with A and B
    the given Tensors (compare_op's leaves)."""
    bias = None if ex["bias"] is None else Parameter(ex["bias"].copy())
    layer = LoRALinear(Linear.from_parameters(Parameter(ex["weight"].copy()), bias), ex["rank"], ex["alpha"],
                       np.random.default_rng(0))
    layer.lora_A, layer.lora_B = A, B
    return layer


def _grade_lora(module, ex):
    forward = learner_attr(module, "LoRALinear").forward
    _compare("LoRALinear.forward", lambda x, A, B: forward(_lora_layer(ex, A, B), x),
             lambda x, A, B: LoRALinear.forward(_lora_layer(ex, A, B), x),
             {"x": ex["x"], "lora_A": ex["lora_A"], "lora_B": ex["lora_B"]}, "through your forward")


def _lora_replay(example, path):
    return load_lines(path) + [
        "from minift.adapt.lora import LoRALinear   # minift's own",
        "from minift.nn import Linear, Parameter",
        "from minift.tensor import Tensor"] + [
        f"{key} = {literal(example[key])}" for key in ("x", "weight", "bias", "lora_A", "lora_B", "alpha", "rank")] + [
        "g = np.random.default_rng(0).standard_normal(x.shape[:-1] + weight.shape[1:])   # dL/d(output): the check's",
        "for who, forward in ((\"yours\", mine.LoRALinear.forward), (\"minift's\", LoRALinear.forward)):",
        "    base = Linear.from_parameters(Parameter(weight.copy()), None if bias is None else Parameter(bias.copy()))",
        "    layer = LoRALinear(base, rank, alpha, np.random.default_rng(0))",
        "    layer.lora_A, layer.lora_B = Parameter(lora_A.copy()), Parameter(lora_B.copy())",
        "    leaf = Tensor(x, requires_grad=True)",
        "    out = forward(layer, leaf)",
        "    (out * g).sum().backward()",
        "    print(who, 'output:', out.data)",
        "    print(who, 'dL/dx:', leaf.grad, 'dL/dA:', layer.lora_A.grad, 'dL/dB:', layer.lora_B.grad)"]


# ----------------------------------------------------------------------------- the list

EXERCISES = [
    Exercise("stable_softmax", "softmax's forward, finite for logits in the thousands", "Softmax.forward",
             "minift/functional/basic.py:Softmax.forward", _stable_softmax_example, _grade_stable_softmax,
             ("exp overflows to inf past 709 (float64), and inf / inf is nan. But softmax does not change when "
              "one number is subtracted from every element of a slice: it cancels between the numerator and "
              "the sum. Pick, for each slice, the number that makes every exponent at most 0.",
              "The slice maximum, kept with size 1 on `axis` (keepdims), broadcasts back against x; the sum of "
              "the exponentials likewise. The given backward reads ctx.axis and one saved array: y itself "
              "(after the division), not the exponentials.",
              "e = xp.exp(x - x.max(axis=axis, keepdims=True)); y = e / e.sum(axis=axis, keepdims=True); "
              "ctx.axis = axis; ctx.save(y); return y."),
             asks="x: an array of any shape; axis: the axis of each slice. Returns y, x's shape: along\n"
                  "`axis` every slice is positive and sums to 1, finite for logits of any size.\n"
                  "Keep what the given backward reads: ctx.axis, and y (ctx.save).",
             todo="probabilities along `axis` that stay finite for huge logits; set ctx.axis and save y",
             imports=OP_IMPORTS, given=1, kind="build", intro=INTROS["stable_softmax"],
             replay=op_replay("Softmax", "minift.functional:Softmax", "axis={axis}", ("x",))),
    Exercise("attention_forward", "causal attention's forward: scale, mask, stable softmax", "CausalAttention.forward",
             "minift/functional/attention.py:CausalAttention.forward", _attention_example, _grade_attention,
             ("Score every query against every key, scaled; give each hidden key (ctx.hidden_keys says which) "
              "a score of -inf, so that its probability is exactly 0; a softmax along the keys, stable as in "
              "`stable_softmax`; then mix the values with those probabilities.",
              "q @ k.swapaxes(-1, -2) is (B, H, Tq, Tk): @ batches over (B, H). ctx.hidden_keys(q, k) is "
              "(Tq, Tk) booleans and broadcasts against the scores (xp.where). The row max and sum are over "
              "the last axis, keepdims=True; P @ v is (B, H, Tq, D). The given backward reads ctx.scale "
              "and four saved arrays: q, k, v and P, in that order.",
              "ctx.scale = q.dtype.type(1 / math.sqrt(D)); s = q @ k^T * ctx.scale; s = xp.where(ctx.hidden_"
              "keys(q, k), -xp.inf, s); p = xp.exp(s - s.max(axis=-1, keepdims=True)); p = p / p.sum(axis=-1, "
              "keepdims=True); ctx.save(q, k, v, p); return p @ v."),
             asks="q (B, H, Tq, D), k and v (B, H, Tk, D) arrays, Tq <= Tk (the queries are the last Tq\n"
                  "positions). Returns out (B, H, Tq, D). Keep what the given backward reads: ctx.scale,\n"
                  "and q, k, v and the probabilities P (B, H, Tq, Tk), in that order (ctx.save).",
             todo="scaled scores, -inf for the hidden keys, a stable softmax by rows, then P @ v; save for backward",
             imports="import math\n\n" + OP_IMPORTS, given=1, kind="build", intro=INTROS["attention_forward"],
             replay=op_replay("CausalAttention", "minift.functional:CausalAttention", "", ("q", "k", "v"))),
    Exercise("split_heads", "a block's q/k/v projection cut into heads", "split_heads(qkv, n_head)",
             "minift/functional/attention.py:split_heads", _split_example, _grade_split,
             ("Cut qkv into q, k and v, then give each its head axis: first regroup the C features of every "
              "position into H groups of D, then move the head axis in front of the positions. A reshape alone "
              "can give the right shape with the wrong numbers in it.",
              "Each part is (B, T, C), and D is C // n_head; reshaped, it is (B, T, H, D): position before head, "
              "since a reshape only regroups neighbouring elements. Attention wants (B, H, T, D): a transpose, "
              "given the new order of the axes, moves the head axis in front.",
              "B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3; return [t.reshape(B, T, n_head, C // "
              "n_head).transpose(0, 2, 1, 3) for t in ops.split(qkv, 3, axis=-1)]."),
             asks="qkv: a Tensor (B, T, 3C), q, k and v side by side; n_head: H, a divisor of C.\n"
                  "Returns [q, k, v], each a Tensor (B, H, T, D) with D = C / H: head h holds\n"
                  "features h*D .. (h+1)*D - 1 of its part.",
             todo="split qkv in three; reshape each to (B, T, H, D), then move the head axis before the positions",
             imports="from minift import ops", kind="build", intro=INTROS["split_heads"],
             replay=_heads_replay("split_heads", "qkv,{n_head}")),
    Exercise("merge_heads", "the heads' outputs side by side again", "merge_heads(y)",
             "minift/functional/attention.py:merge_heads", _merge_example, _grade_merge,
             ("Undo split_heads in reverse order: first put the positions back in front of the heads, then "
              "join each position's H vectors of D into one of H * D.",
              "y is (B, H, T, D). Once T comes before H, (B, T, H, D), the last two axes are neighbours and "
              "join into H * D. Reshaping (B, H, T, D) straight to (B, T, H * D) has the right shape but mixes "
              "positions.",
              "B, H, T, D = y.shape; return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)."),
             asks="y: a Tensor (B, H, T, D), one output per head. Returns a Tensor (B, T, H * D): at\n"
                  "each position, head h's D features at h*D .. (h+1)*D - 1.",
             todo="move the head axis after the positions, then join the heads' features", imports="",
             kind="build", intro=INTROS["merge_heads"], replay=_heads_replay("merge_heads", "y")),
    Exercise("gpt_block", "one GPT block: pre-norm attention, then the MLP, residual", "Block.forward",
             "minift/model.py:Block.forward", _block_example, _grade_block,
             ("Two steps on the residual stream, each adding to it: attention, then the MLP. Each sublayer "
              "reads a layer-normed copy of the stream (its own LayerNorm, before it); the stream itself is "
              "never normalised in the block.",
              "Everything is (B, T, C): self.ln_1, self.attn, self.ln_2 and self.mlp each take and return "
              "(B, T, C). self.attn takes (x, cache, lengths) as the block got them; the others x alone. The "
              "MLP's input comes from the stream after attention's part was added.",
              "x = x + self.attn(self.ln_1(x), cache, lengths); return x + self.mlp(self.ln_2(x))."),
             asks="x: a Tensor (B, T, C), the residual stream. Returns a Tensor (B, T, C). cache (a\n"
                  "KV cache's layer, or None) and lengths ((B,) or None) go to self.attn as they come.",
             todo="attention, then the MLP, each on a layer-normed copy of x and added back to x",
             imports="from minift.model import MLP, SelfAttention\nfrom minift.nn import LayerNorm, Module",
             kind="build", intro=INTROS["gpt_block"], replay=_block_replay, gradcheck=False,
             shadow=False),     # not pure: it extends a KV cache, and its Dropouts draw from their generators
    Exercise("lora_forward", "LoRA: the frozen layer plus a scaled low-rank update", "LoRALinear.forward",
             "minift/adapt/lora.py:LoRALinear.forward", _lora_example, _grade_lora,
             ("Two paths from the same x, added: the frozen layer (W and b, as any Linear), and the adapter: "
              "down to r features through A, back up through B, scaled. There is no need to form A @ B.",
              "x (..., in) through A (in, r) is (..., r); through B (r, out), (..., out), like x through W. "
              "F.linear(x, weight) works for any leading axes; the bias may be None. self.scale is a number.",
              "y = F.linear(x, self.weight, self.bias); update = F.linear(F.linear(x, self.lora_A), self.lora_B);"
              " return y + update * self.scale."),
             asks="x: a Tensor (..., in). Returns a Tensor (..., out): the frozen layer's output\n"
                  "(self.weight (in, out), self.bias (out,) or None) plus the adapter's update\n"
                  "(self.lora_A (in, r), then self.lora_B (r, out)), scaled by self.scale.",
             todo="the frozen layer's output plus the update through A then B, times self.scale",
             imports="import numpy as np\n\nfrom minift import functional as F\n"
                     "from minift.adapt.lora import merged_weight   # merged() uses it (exercise `lora_merge`)\n"
                     "from minift.nn import Linear, Module, Parameter",
             kind="build", intro=INTROS["lora_forward"], replay=_lora_replay),
]
