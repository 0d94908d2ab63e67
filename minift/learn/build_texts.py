"""What each "build it" exercise (build.py) tells the learner first: the opening text of
the file `start` writes, above minift's own code with the part to write cut out. Each
gives the maths and the definitions, never the lines to write (those are the hints')."""

INTROS = {
    "stable_softmax": """Exercise `stable_softmax`: softmax's forward pass, for logits of any size.

Softmax turns a slice of scores (logits) into probabilities along one axis:

    y_i = exp(x_i) / sum_j exp(x_j)          every y_i > 0, and each slice sums to 1

Written just like that, it breaks on real logits: in float64 exp(710) is already inf
(in float32, exp(89)) and inf / inf is nan; and where every exp of a slice underflows to
0, the slice is 0 / 0. A model's logits and attention scores easily reach hundreds, so
the checker draws such slices: some shifted by +800, some scaled by 1000.

Write `forward`: y for x of any shape, along `axis`, exact in float64 however large the
logits. The backward is given (it is the `softmax` exercise); it reads ctx.axis and the
y that forward saves.
""",
    "attention_forward": """Exercise `attention_forward`: the forward pass of causal self-attention.

Each query position i mixes the values of the positions j <= i (never the future), with
weights from how well its query matches their keys. Per batch row and head, with
q (Tq, D), k and v (Tk, D) and scale = 1 / sqrt(D):

    S = q @ k^T * scale                    (Tq, Tk) scores
    P = softmax(S + mask) by rows          mask: -inf where key j is in query i's future
    out = P @ v                            (Tq, D)

exp(-inf) = 0, so a hidden key gets probability exactly 0. Usually Tq = Tk; when
decoding with a KV cache the queries are only the last Tq of the Tk positions, and
`hidden_keys` (given, in the class below) says which keys each query may not see.
Scores reach hundreds when q and k are large (the checker draws such examples): the
softmax must not overflow (see `stable_softmax`).

Write `forward` for q (B, H, Tq, D), k and v (B, H, Tk, D): all batch rows and heads at
once. The backward is given (it is the `causal_attention` exercise): it reads ctx.scale
and the four arrays forward saves, so `check` grades the gradients too.
""",
    "split_heads": """Exercise `split_heads`: from a block's q/k/v projection to H heads.

A GPT block computes its queries, keys and values with one Linear layer: qkv (B, T, 3C)
holds q, k and v side by side on the last axis, C features each. Multi-head attention
cuts each of them into H heads of D = C / H features: head h owns features h*D ..
(h+1)*D - 1 of q (and of k, and of v). Attention then runs on every (batch row, head)
pair at once, so each of q, k, v must become (B, H, T, D): for batch row b and head h, a
(T, D) matrix of that head's features at every position.

`ops.split(qkv, 3, axis=-1)` gives the three (B, T, C) Tensors; a Tensor has
`reshape(...)` and `transpose(...)` (NumPy's, with gradients).

Write `split_heads`, returning [q, k, v], each a Tensor (B, H, T, D).
""",
    "merge_heads": """Exercise `merge_heads`: the heads side by side again.

Attention gives one output per (batch row, head, position): y (B, H, T, D). The block's
output projection reads, at each position, the H heads' outputs side by side: (B, T, C)
with C = H * D, head h in features h*D .. (h+1)*D - 1, the same places `split_heads`
took its features from (merge_heads undoes split_heads' moving of the axes).

A Tensor has `reshape(...)` and `transpose(...)` (NumPy's, with gradients). Mind which
axes are next to which when you reshape: a reshape never moves data between positions,
it only regroups consecutive elements.

Write `merge_heads`, returning a Tensor (B, T, H * D).
""",
    "gpt_block": """Exercise `gpt_block`: one GPT block.

A GPT's blocks share one "residual stream" x (B, T, C): each block reads it and adds to
it, and never replaces it, so that what earlier blocks wrote stays available, and the
gradient has a path through every block unchanged. A block holds two sublayers:

    attn    causal self-attention: each position reads the positions before it
    mlp     Linear(C, 4C) -> GELU -> Linear(4C, C), each position alone

and one LayerNorm per sublayer (ln_1 for attn, ln_2 for mlp). GPT-2 normalises the
input of each sublayer ("pre-norm"), not the stream itself: the original Transformer's
"post-norm" normalised after adding, which trains less stably when deep. The MLP reads
the stream after attention has added its part.

Write `forward`. `check` builds a tiny Block of minift's own (two heads, float64, random
parameters) and calls your function on it, `Block.forward(block, x, cache, lengths)`, in
three settings: a GPT; an encoder (`lengths`: the real tokens of each padded row); and
decoding with a KV cache (`cache`), as `minift generate` does. It compares the output,
and the gradients of x and of every parameter.
""",
    "lora_forward": """Exercise `lora_forward`: a LoRA layer's forward pass.

LoRA (Hu et al. 2021) fine-tunes a pretrained Linear layer without changing it: its
weight W (in, out) and bias b stay frozen, and two small trainable matrices A (in, r)
and B (r, out) add a low-rank update to its output, scaled by alpha / r (the class's
docstring, below, has the formula, and why). The class stores W and b as self.weight
and self.bias (bias None when the layer has none), A and B as self.lora_A and
self.lora_B, and alpha / r as self.scale.

Write `forward` for x (..., in), any number of leading axes. `F.linear(x, weight, bias)`
is what every Linear layer runs (x @ weight + bias; bias may be left out). `check`
compares your output and the gradients of x, A and B with minift's (W and b, frozen,
get none).
""",
}
