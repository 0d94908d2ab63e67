"""What each whole-piece exercise (pieces.py) tells the learner first: the opening text
of the file `start` writes, above minift's own code with the part to write cut out."""

INTROS = {
    "backward_walk": """Exercise `backward_walk`: the loop of `loss.backward()`, minift's reverse-mode engine.

Every op that records a graph makes a node, an instance of its Function class.
`node.parents` are its inputs: the nodes that made them, or the leaf tensors themselves
(None for an input that is not a Tensor); `parent.is_node` tells which. `node.backward(g)`
turns g = dL/d(the node's output) into the gradients of its inputs, one per parent (a
tuple; a single array when there is one input; None where no gradient is needed). A node
is always created after the nodes of its inputs; `node._seq` is its creation number.

The chain rule, for a tensor x that several ops y_k read:

    dL/dx = sum over k of (dL/dy_k)(dy_k/dx)        (each term: what y_k's backward returns for x)

so a node's backward may run only once every node that read its output has sent its part.

An op may return an input's gradient in the broadcast shape of its output (a bias (C,)
added to (N, C) gets an (N, C) gradient): `_conform(gp, parent.shape, parent.dtype)` sums
it back to the input's shape (and casts it to its dtype). `_nodes_reachable_from(root)`
is the set of every node the root was computed from, the root included.

Write `_walk`: Tensor.backward calls it with the node of the tensor it was called on and
dL/d(that tensor), and adds the {leaf: dL/dleaf} it returns to each leaf's `.grad`. With
keep_graph=False (what training uses) each node lets go of its saved arrays and its
parents as soon as its backward has run, so activations are freed during the backward
pass. The check builds random graphs (tensors used twice, diamonds, broadcasting) and
runs backward through them with your `_walk` in place of minift's.
""",
    "train_step": """Exercise `train_step`: one optimisation step, the body of every training loop in minift.

A batch too large for memory is taken in parts (micro-batches). Each part's loss, scaled
by 1/n for n parts, is run forward and backward; backward adds into the parameters'
`.grad`, so the gradients add up to those of the mean loss over the whole batch. Then:

    clip   norm = sqrt(sum over every parameter of sum(grad^2)), the gradients' global norm;
           if norm > max_norm, every gradient is scaled by max_norm / norm
           (clip_grad_norm(params, max_norm) does it, and returns the norm it found)
    step   the optimizer moves every parameter using its gradient (optimizer.step())
    zero   backward adds to .grad, so a step's gradients must be cleared before the next
           step's backward (optimizer.zero_grad() sets them to None)

`step(model, loss_fn, batch, scale, data_parallel=...)`, set for you at the top, is
minift/trainer.py:forward_backward (or minift.fast's, when it is on): it runs
loss_fn(model, batch) * scale forward and backward, adding to `.grad`, and returns that
scaled loss as a float64 array.

Write `train_step`. The Trainer (minift/trainer.py) calls it at every step, after setting
the learning rate, and logs the loss and the norm it returns. The check trains a tiny
float64 model a few steps with yours and with minift's, and compares the losses, the
norms and every parameter after each step.
""",
    "sampling": """Exercise `sampling`: the distribution a GPT's next token is drawn from.

The model gives one score (logit) per token of the vocabulary. Generation draws the next
token from a distribution made from them, shaped by three settings:

    temperature T   p = softmax(logits / T): T < 1 sharpens it, T > 1 flattens it. T = 0 is
                    greedy decoding: probability 1 on the largest logit (the first, on a tie)
    top_k           only the k largest logits may be drawn (a logit equal to the k-th largest
                    is kept too); the others get probability 0
    top_p           nucleus sampling: only the most likely tokens, most likely first (the lower
                    id first among equal probabilities), up to and including the first token
                    at which their total probability reaches top_p; the others get 0

top_k applies first, top_p to the distribution it leaves; what is dropped gets probability
0 and the rest is renormalised to sum to 1. None (or top_k >= V, or top_p = 1) changes
nothing.

Write `next_token_probs`. minift's `_pick` (minift/generate.py) draws the next token from
it, or, when greedy, takes its one certain token without a draw.
""",
    "bpe_merge": """Exercise `bpe_merge`: one step of training a BPE tokenizer.

minift's tokenizer is byte-level BPE (minift/data/tokenizer.py), trained by the
`tokenizers` library. Training starts from every word of the corpus split into single
symbols (bytes; here, small integers), each word with its count in the corpus, each token
with an id. Then it repeats one step: the adjacent pair of tokens that occurs most often
becomes one new token, everywhere it occurs. As the library does it:

    count    every adjacent pair in every word, each occurrence as often as its word occurs
             (a pair twice in one word counts twice)
    choose   the most frequent pair; on a tie, the smallest pair (by its first id, then its second)
    merge    in every word, left to right, each occurrence of the pair becomes the new token;
             an occurrence that overlaps one just merged is not one: with the pair (a, a),
             "a a a" becomes "aa a"

Write `bpe_merge_step`: one such step. minift/data/bpe.py has it (written out to be read;
tests/test_tokenizer.py checks that repeating it gives the library's own first merges).
The check runs a few merges in a row on tiny random corpora.
""",
    "dpo_loss": """Exercise `dpo_loss`: the loss of Direct Preference Optimisation (Rafailov et al. 2023).

Alignment teaches a model which of two answers to a prompt x people prefer: the chosen
y_w over the rejected y_l. DPO needs no reward model: a response's implicit reward is how
much more likely the policy pi (the model being trained) makes it than the frozen
reference model ref (where training started), in log-probabilities, scaled by beta:

    r(y) = beta (log pi(y|x) - log ref(y|x))          log p(y|x): summed over the response's tokens

and a pair's loss is the logistic loss of the reward margin, with sigma the sigmoid:

    loss = -log sigma(r(y_w) - r(y_l))                averaged over the B pairs of a batch

It is low when the chosen response's reward exceeds the rejected one's; while pi = ref
every reward is 0 and the loss is ln 2. `LogSigmoid` (imported: an op with its backward)
computes log sigma(z) without overflow.

A batch holds B pairs as 2B rows: the B chosen responses first, then the B rejected ones,
pair i's in rows i and B + i. Write `dpo_loss`; the check compares its value and its
gradient with minift's, and runs minift.gradcheck on it.
""",
}
