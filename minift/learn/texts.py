"""What each exercise tells the learner first: the opening text of the file `start`
writes, above minift's own code with the part to write cut out."""

INTROS = {
    "unbroadcast": """Exercise `unbroadcast`: the gradient of an input that NumPy broadcast.

In `x + b` with x (3, 4) and b (4,), NumPy copies b along a new leading axis; with
x (3, 4) and c (3, 1), it copies c along its axis of size 1. Every copy of an element
receives a gradient, so the element's gradient is the sum over its copies:

    an axis the input lacks (leading)      sum the gradient over it, and drop it
    an axis of size 1 that grew            sum over it, and keep it as size 1

Write `unbroadcast(grad, shape)`: `grad` has the broadcast (output) shape, `shape` is the
input's; return an array of exactly `shape`. minift's engine calls this function for
every op, once, so that no op has to.
""",
    "softmax": """Exercise `softmax`: the backward pass of softmax.

Softmax turns a row of scores into probabilities, y = exp(x) / sum(exp(x)) along one
axis (the forward, below, subtracts the row maximum first: the same numbers, and exp
cannot overflow). Each output depends on every input of its row:

    dy_i/dx_j = y_i (delta_ij - y_j)          (delta_ij = 1 if i == j else 0)

Write `backward`: given g = dL/dy, return dL/dx_j = sum_i g_i dy_i/dx_j, for every row
at once and without building the (V, V) Jacobian. It works for any shape and axis.
""",
    "cross_entropy": """Exercise `cross_entropy`: the backward pass of softmax + cross-entropy, fused.

A classifier's loss for N rows of scores (logits (N, V)) and the right class of each
row (targets (N,), integers) is the mean negative log-probability of the right class:

    p = softmax(logits) by rows,      loss = -sum_n w_n log p[n, targets[n]] / sum_n w_n

where w_n is row n's weight: 1 for every row that counts (0 for an ignored one), or its
class weight. Chaining softmax's backward with log's would divide by p (unstable when p
is tiny); done together, the derivative is simple: work it out for one row, from
d log p_t / d logit_j (the `softmax` exercise has dp_i/dx_j).

The forward saves p, the targets and w_n / sum(w) (1/N when every row counts once).
Write `backward`: g is dL/dloss (a scalar, usually 1); return dL/dlogits, and None for the
targets (integers have no gradient).
""",
    "layer_norm": """Exercise `layer_norm`: the backward pass of layer normalisation.

Layer norm rescales every row (the last axis, C features) to mean 0 and variance 1,
then gives it a learned scale and offset:

    mu = mean(x),  var = mean((x - mu)^2),  rstd = 1 / sqrt(var + eps)     (per row)
    xhat = (x - mu) * rstd,        y = xhat * weight + bias               (weight, bias (C,))

weight and bias are shared by every row, so their gradients sum over all rows. Each
xhat_i depends on the whole row through mu and var: with dxhat = g * weight,

    dL/dx_j = sum_i dxhat_i dxhat_i/dx_j,   dxhat_i/dx_j = rstd (delta_ij - 1/C - xhat_i xhat_j / C)

Write `backward`: return (dL/dx, dL/dweight, dL/dbias) for x of any shape (..., C).
""",
    "gelu": """Exercise `gelu`: the backward pass of GELU, the activation of GPT-2's MLP.

GPT-2 uses the tanh approximation of GELU (x times the probability that a standard
normal variable is below x):

    y = 0.5 x (1 + tanh(u)),     u = c (x + 0.044715 x^3),     c = sqrt(2 / pi)

It acts on each element alone, so dL/dx = g * dy/dx elementwise. Work dy/dx out with
the product rule and tanh'(u) = 1 - tanh(u)^2, then write `backward`.
""",
    "causal_attention": """Exercise `causal_attention`: the backward pass of causal self-attention.

Each query position i mixes the values of the positions j <= i (never the future), with
weights from how well its query matches their keys. Per batch row and head, with
q, k, v (T, D) and scale = 1 / sqrt(D):

    S = q @ k^T * scale                    (T, T) scores
    P = softmax(S + mask) by rows          mask: -inf where j > i, so P[i, j] = 0 there
    out = P @ v                            (T, D)

Backward runs these three lines in reverse. With G = dL/dout: a matrix product's
gradients are products with the other factor transposed; the mask adds a constant, so
it passes gradients through unchanged (P is already 0 where it applies); and softmax's
backward works row by row (see the `softmax` exercise).

Write `backward`: return (dL/dq, dL/dk, dL/dv), each (B, H, T, D).
""",
    "adamw": """Exercise `adamw`: one step of the AdamW optimiser.

Adam keeps two running averages per parameter: m of the gradient and v of its square,
updated with rates b1 and b2 (m <- b1 m + (1 - b1) g, and likewise v with g^2). Both
start at 0, so early on they are too small: dividing by 1 - b1^t (and 1 - b2^t), where t
counts the updates so far (1 at the first), removes that bias. The step is then

    p <- p - lr * mhat / (sqrt(vhat) + eps)          mhat, vhat: the bias-corrected averages

so each element moves by about lr, whatever the scale of its gradient. AdamW's weight
decay is "decoupled" (Loshchilov & Hutter): p also shrinks by lr * weight_decay * p,
applied to p directly, not added to the gradient (where Adam would rescale it).

Write `adamw_step`, returning the new (p, m, v); the caller gives t = 1 at the first step.
""",
    "lora_merge": """Exercise `lora_merge`: fold a LoRA adapter back into its layer.

LoRA (Hu et al. 2021) fine-tunes a frozen Linear layer (weight W (in, out), bias b)
through two small matrices A (in, r) and B (r, out), with r much smaller than in and out:

    y = x @ W + b  +  (x @ A) @ B * (alpha / r)

After training, the adapter can be merged: one weight W' such that x @ W' + b is the
same y for every x, so the model needs no extra products (and has plain GPT-2 names).

Write `merged_weight`, returning W' (in, out).
""",
    "last_token_pooling": """Exercise `last_token_pooling`: one vector per text from a GPT's hidden states.

A batch of texts of different lengths is right-padded to one length T: row b holds
lengths[b] real tokens, then padding. The backbone gives a hidden state per position,
hidden (B, T, C). In a causal model the last real token is the only one that has seen
the whole text (and padding comes after it, so it never saw any): its hidden state is
the text's summary, which the classification head reads.

Write `pool_last`, returning the (B, C) tensor of each row's last real hidden state. Pick
the rows by indexing the Tensor itself (a Tensor indexed with integer arrays is an op
with a backward), so the gradient flows back to exactly those positions.
""",
    "loss_mask": """Exercise `loss_mask`: which tokens instruction tuning learns from.

Instruction tuning teaches a language model to answer: each example is a prompt
("Review: The lid is superb.\\nSentiment:") followed by its answer (" positive"), as
token ids. Like pretraining, it is next-token prediction on the whole sequence,

    seq = prompt + answer,     x = seq[:-1],     y = seq[1:]     (y[t] is the token after x[t])

but the loss must count only the targets that are answer tokens: the model is taught to
answer, not to write prompts. Cross-entropy skips every target equal to IGNORE.

Write `masked_example`, returning (x, y) as int64 NumPy arrays, with y = IGNORE wherever
its token belongs to the prompt.
""",
}
