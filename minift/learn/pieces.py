"""The whole-piece exercises: the engine's backward walk, a training step, sampling's
distribution, one BPE merge and the DPO loss. Each is a function minift runs, graded by
running it where minift runs it (a random graph through the engine, a tiny model's
training) or beside minift's own on the same inputs.

    name            you write                                      minift's own (the answer)
    backward_walk   _walk(root, grad, keep_graph)                  minift/tensor.py:_walk
    train_step      train_step(model, optimizer, batches, ...)     minift/trainer.py:train_step
    sampling        next_token_probs(logits, temperature, ...)     minift/generate.py:next_token_probs
    bpe_merge       bpe_merge_step(word_counts, new_id)            minift/data/bpe.py:bpe_merge_step
    dpo_loss        dpo_loss(policy, reference, beta)              minift/align/dpo.py:dpo_loss

The texts (intros) are in pieces_texts.py; exercises.py puts these in the tour's order.
"""
import sys

import numpy as np

from .. import functional as F
from .. import backend
from ..align.dpo import dpo_loss
from ..data.bpe import bpe_merge_step
from ..generate import next_token_probs
from ..nn import Linear, Module
from ..optim import SGD, AdamW
from ..tensor import Tensor
from ..trainer import forward_backward, train_step
from .exercise import Exercise, literal, load_lines
from .grading import Mismatch, close, compare_op, learner_attr, normal
from .pieces_texts import INTROS

engine = sys.modules[Tensor.__module__]     # the module minift.tensor (the package's `minift.tensor` is a function)

# ----------------------------------------------------------------------------- backward_walk

# The ops of a random graph: how a step reads (for the failing input and the replay) and
# what it runs. "x * x" uses one tensor twice in one op; any tensor may be used again later.
GRAPH_OPS = {
    "+": ("{} + {}", 2, lambda x, y: x + y),
    "-": ("{} - {}", 2, lambda x, y: x - y),
    "*": ("{} * {}", 2, lambda x, y: x * y),
    "square": ("{0} * {0}", 1, lambda x: x * x),
    "tanh": ("{}.tanh()", 1, lambda x: x.tanh()),
    "rowsum": ("{}.sum(axis=-1, keepdims=True)", 1, lambda x: x.sum(axis=-1, keepdims=True)),
    "total": ("{}.sum()", 1, lambda x: x.sum()),
}


class Step(tuple):
    """One line of a random graph, (out, op, args), shown as the Python it runs: `d = a * b`."""

    def __repr__(self):
        out, op, args = self
        return f"{out} = {GRAPH_OPS[op][0].format(*args)}"


def _graph_example(draw):
    m, n = draw.integer(2, 3), draw.integer(1, 3)
    shapes = [(m, n), (n,), (m, 1), ()]               # the first is the full shape: the others broadcast
    names = "abc"[:draw.integer(1, 3)]
    leaves = {name: shapes[0] if i == 0 else draw.choice(shapes) for i, name in enumerate(names)}
    constant = draw.choice([None, "k"])                # an input that requires no gradient
    if constant:
        leaves[constant] = draw.choice(shapes)
    shape = dict(leaves)
    needs = {name: name != constant for name in leaves}
    program = []
    for i in range(draw.integer(1, 6)):
        op, pool = draw.choice(list(GRAPH_OPS)), list(shape)
        args = tuple(pool[draw.integer(0, len(pool) - 1)] for _ in range(GRAPH_OPS[op][1]))
        if op == "rowsum" and not shape[args[0]]:
            op = "total"                               # a 0-d tensor has no last axis
        out = "defghijmnp"[i]
        shape[out] = () if op == "total" else (shape[args[0]][:-1] + (1,)) if op == "rowsum" \
            else np.broadcast_shapes(*(shape[a] for a in args))
        needs[out] = any(needs[a] for a in args)
        program.append(Step((out, op, args)))
    if not needs[program[-1][0]]:                      # the output must depend on a leaf that needs a gradient
        program.append(Step(("z", "+", (program[-1][0], "a"))))
        shape["z"] = np.broadcast_shapes(shape[program[-2][0]], shape["a"])
    rng = draw.random()
    example = {name: normal(rng, s) for name, s in leaves.items()}
    example.update(program=program, g=normal(rng, shape[program[-1][0]]), keep_graph=draw.choice([True, False]))
    return example


def _run_graph(ex):
    """The example's leaves (fresh Tensors) and its program's output."""
    leaves = {name: Tensor(ex[name].copy(), requires_grad=name != "k", name=name) for name in "abck" if name in ex}
    values = dict(leaves)
    for out, op, args in ex["program"]:
        values[out] = GRAPH_OPS[op][2](*(values[a] for a in args))
    return leaves, values[ex["program"][-1][0]]


def _grade_walk(module, ex):
    learner = learner_attr(module, "_walk")
    expected, root = _run_graph(ex)
    root.backward(ex["g"].copy(), keep_graph=ex["keep_graph"])           # minift's engine
    leaves, root = _run_graph(ex)
    nodes = engine._nodes_reachable_from(root._ctx)
    own, engine._walk = engine._walk, learner             # Tensor.backward calls tensor._walk: yours, for now
    try:
        root.backward(ex["g"].copy(), keep_graph=ex["keep_graph"])
    finally:
        engine._walk = own
    for name, leaf in leaves.items():
        want = expected[name].grad
        if want is None:
            if leaf.grad is not None:
                raise Mismatch(f"the input {name} (requires_grad=False) got a gradient: leave it out")
            continue
        got = leaf.grad if leaf.grad is not None else np.zeros_like(want)
        close(f"dL/d{name}" + (" (no gradient reached it: taken as 0)" if leaf.grad is None else ""), got, want)
    freed = not ex["keep_graph"]                          # the graph is let go of as backward passes
    for node in nodes:
        flag = getattr(node, "last_backward", None)
        if flag is None:
            raise Mismatch(f"{type(node).__name__}.last_backward was never set: expected every node's backward to "
                           f"run once, with node.last_backward = not keep_graph set before it")
        if flag is not freed:
            raise Mismatch(f"with keep_graph={ex['keep_graph']}, {type(node).__name__}.last_backward is {flag}; "
                           f"expected {freed} (not keep_graph) when its backward runs")
        if freed and (node.parents is not None or getattr(node, "saved", None) is not None):
            raise Mismatch(f"with keep_graph=False, {type(node).__name__} still holds its saved arrays or parents "
                           f"after its backward: expected node.saved = node.parents = None")
        if not freed and node.parents is None:
            raise Mismatch(f"with keep_graph=True, {type(node).__name__} lost its parents: expected the graph kept")


def _walk_replay(ex, path):
    lines = load_lines(path) + ["import sys", "from minift.tensor import Tensor",
                                "engine = sys.modules['minift.tensor']   # the engine's module",
                                "minifts = engine._walk   # minift's own"]
    lines += [f"{name}0 = {literal(ex[name])}" for name in "abck" if name in ex]
    lines += [f"g = {literal(ex['g'])}       # dL/d(output): the check's",
              "for who, walk in ((\"yours\", mine._walk), (\"minift's\", minifts)):",
              "    engine._walk = walk      # what Tensor.backward calls"]
    lines += [f"    {name} = Tensor({name}0.copy(), requires_grad={name != 'k'})" for name in "abck" if name in ex]
    lines += [f"    {step!r}" for step in ex["program"]]
    lines += [f"    {ex['program'][-1][0]}.backward(g, keep_graph={ex['keep_graph']})"]
    lines += [f"    print(who, 'dL/d{name}:', {name}.grad)" for name in "abc" if name in ex]
    return lines + ["engine._walk = minifts"]


# ----------------------------------------------------------------------------- train_step

class TinyNet(Module):
    """The check's model: two float64 Linear layers with tanh between them, 3 classes."""

    def __init__(self, rng):
        self.fc1 = Linear(4, 6, init_std=0.8, rng=rng, dtype=np.float64)
        self.fc2 = Linear(6, 3, init_std=0.8, rng=rng, dtype=np.float64)

    def forward(self, x):
        return self.fc2(self.fc1(x).tanh())


def tiny_loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def tiny_training(seed, optimizer, lr, steps, grad_accum):
    """The check's model, its optimizer and the micro-batches of each step, from a seed:
    (model, optimizer, [[(x, y) of each micro-batch] of each step])."""
    rng = np.random.default_rng(seed)
    model = TinyNet(rng)
    opt = SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd" else AdamW(model.parameters(), lr=lr)
    batches = [[(rng.standard_normal((3, 4)), rng.integers(0, 3, 3)) for _ in range(grad_accum)]
               for _ in range(steps)]
    return model, opt, batches


def _train_example(draw):
    return {"steps": draw.integer(1, 3), "grad_accum": draw.integer(1, 2), "grad_clip": draw.choice([0.1, None, 2.0]),
            "optimizer": draw.choice(["sgd", "adamw"]), "lr": draw.choice([0.1, 0.5]),
            "data_parallel": draw.choice([False, True]), "seed": int(draw.random().integers(0, 2 ** 16))}


def _grade_train_step(module, ex):
    learner = learner_attr(module, "train_step")
    setup = {k: ex[k] for k in ("seed", "optimizer", "lr", "steps", "grad_accum")}
    mine, theirs = tiny_training(**setup), tiny_training(**setup)
    calls = []

    def recorded(model, loss_fn, batch, scale=1.0, data_parallel=False):     # the plain one, noting each call
        calls.append((scale, data_parallel))
        return forward_backward(model, loss_fn, batch, scale)
    with backend.plain("cpu", forward_backward=recorded):
        for t, (batches, same) in enumerate(zip(mine[2], theirs[2]), start=1):
            calls.clear()
            out = learner(mine[0], mine[1], [tuple(a.copy() for a in b) for b in batches], tiny_loss, ex["grad_clip"],
                          ex["data_parallel"])
            seen = list(calls)
            calls.clear()
            expected = train_step(theirs[0], theirs[1], same, tiny_loss, ex["grad_clip"], ex["data_parallel"])
            _compare_step(t, out, expected, seen, list(calls), mine[0], theirs[0])


def _compare_step(t, out, expected, seen, wanted, model, reference):
    if seen != wanted:
        raise Mismatch(f"step {t}: your train_step ran `step` (forward and backward) with (scale, data_parallel) "
                       f"= {seen}; expected {wanted}, once per micro-batch")
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Mismatch(f"step {t}: train_step returned {type(out).__name__}; expected a pair (loss, norm)")
    close(f"step {t}: the loss returned", np.asarray(out[0], dtype=np.float64), expected[0])
    close(f"step {t}: the gradient norm returned (before clipping)", np.asarray(out[1], dtype=np.float64), expected[1])
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        close(f"step {t}: parameter {name} after the step", p.data, q.data)


def _train_replay(ex, path):
    setup = ", ".join(f"{k}={ex[k]!r}" for k in ("seed", "optimizer", "lr", "steps", "grad_accum"))
    return load_lines(path) + [
        "from minift.learn.pieces import tiny_loss, tiny_training   # the check's model and batches",
        "from minift.trainer import train_step   # minift's own",
        "for who, step in ((\"yours\", mine.train_step), (\"minift's\", train_step)):",
        f"    model, optimizer, steps = tiny_training({setup})",
        "    for t, batches in enumerate(steps, start=1):",
        f"        loss, norm = step(model, optimizer, batches, tiny_loss, {ex['grad_clip']!r}, "
        f"{ex['data_parallel']!r})",
        "        print(who, 'step', t, 'loss', float(loss), 'norm', float(norm), 'fc2.bias', model.fc2.bias.data)"]


# ----------------------------------------------------------------------------- sampling

def _sampling_example(draw):
    v = draw.integer(2, 8)
    rng = draw.random()
    ties = draw.choice([False, True])                  # whole numbers: equal logits, ties at top-k and top-p
    logits = rng.integers(-2, 3, v).astype(np.float64) if ties else normal(rng, (v,), 2.0)
    return {"logits": logits, "temperature": draw.choice([1.0, 0.0, 0.5, 2.0, 1e-3]),
            "top_k": draw.choice([None, 1, 2, 3, v]), "top_p": draw.choice([None, 0.9, 0.5, 0.3, 1.0])}


def _grade_sampling(module, ex):
    learner = learner_attr(module, "next_token_probs")
    args = (ex["temperature"], ex["top_k"], ex["top_p"])
    close(f"next_token_probs(logits, temperature={args[0]}, top_k={args[1]}, top_p={args[2]})",
          learner(ex["logits"].copy(), *args), next_token_probs(ex["logits"].copy(), *args))


def _sampling_replay(ex, path):
    args = f"{ex['temperature']!r}, {ex['top_k']!r}, {ex['top_p']!r}"
    return load_lines(path) + ["from minift.generate import next_token_probs   # minift's own",
                               f"logits = {literal(ex['logits'])}",
                               f"print('yours:   ', mine.next_token_probs(logits.copy(), {args}))",
                               f"print(\"minift's:\", next_token_probs(logits.copy(), {args}))"]


# ----------------------------------------------------------------------------- bpe_merge

def _bpe_example(draw):
    letters = draw.integer(2, 3)                       # token ids 0, 1 (, 2): a tiny alphabet, so pairs repeat
    rng = draw.random()
    words = {}
    for _ in range(draw.integer(1, 4)):
        word = tuple(int(i) for i in rng.integers(0, letters, draw.integer(2, 5)))
        words[word] = words.get(word, 0) + draw.integer(1, 5)
    return {"word_counts": words, "new_id": letters, "merges": draw.integer(1, 3)}


def _grade_bpe(module, ex):
    learner = learner_attr(module, "bpe_merge_step")
    words, new_id = dict(ex["word_counts"]), ex["new_id"]
    for k in range(1, ex["merges"] + 1):
        if not any(len(w) > 1 for w in words):
            return                                     # every word is one token: nothing left to merge
        out = learner(dict(words), new_id)
        pair, merged = bpe_merge_step(dict(words), new_id)
        where = f"merge {k} (new_id {new_id}" + (", after minift's earlier merges)" if k > 1 else ")")
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise Mismatch(f"{where}: bpe_merge_step returned {type(out).__name__}; expected (pair, dict)")
        close(f"{where}: the pair merged", np.asarray(out[0]), np.asarray(pair), rtol=0, atol=0)
        got = {tuple(int(t) for t in w): c for w, c in out[1].items()}
        before = {_unmerged(w, pair, new_id): w for w in merged}      # each word -> what the merge makes of it
        for word in words:
            if before[word] not in got:
                raise Mismatch(f"{where}: merging {pair} into {new_id} makes {word} into {before[word]}: expected "
                               f"{before[word]} among your words, which are {sorted(got)}")
        for word, count in merged.items():
            close(f"{where}: the count of {word}", got[word], count, rtol=0, atol=0)
        if set(got) != set(merged):
            raise Mismatch(f"{where}: your word counts hold words that no word becomes: "
                           f"{sorted(set(got) - set(merged))}")
        words, new_id = merged, new_id + 1


def _unmerged(word, pair, new_id):
    """`word` with each `new_id` written out again as `pair`: the word before the merge."""
    return tuple(t for token in word for t in (pair if token == new_id else (token,)))


def _bpe_replay(ex, path):
    return load_lines(path) + ["from minift.data.bpe import bpe_merge_step   # minift's own",
                               f"word_counts, new_id = {ex['word_counts']!r}, {ex['new_id']!r}",
                               f"for merge in range({ex['merges']}):",
                               "    print('yours:   ', mine.bpe_merge_step(dict(word_counts), new_id))",
                               "    pair, word_counts = bpe_merge_step(dict(word_counts), new_id)",
                               "    print(\"minift's:\", (pair, word_counts))",
                               "    new_id += 1"]


# ----------------------------------------------------------------------------- dpo_loss

def _dpo_example(draw):
    b = draw.integer(1, 4)
    rng = draw.random()
    return {"policy": normal(rng, (2 * b,), 3.0) - 20, "reference": normal(rng, (2 * b,), 3.0) - 20,
            "beta": draw.choice([0.5, 0.1, 1.0, 2.0])}


def _grade_dpo(module, ex):
    learner, ref, beta = learner_attr(module, "dpo_loss"), ex["reference"], ex["beta"]
    compare_op("dpo_loss", lambda p: learner(p, ref.copy(), beta), lambda p: dpo_loss(p, ref.copy(), beta),
               {"policy": ex["policy"]})


def _dpo_replay(ex, path):
    return load_lines(path) + [
        "from minift.tensor import Tensor", "from minift.align.dpo import dpo_loss   # minift's own",
        f"policy, reference, beta = {literal(ex['policy'])}, {literal(ex['reference'])}, {ex['beta']!r}",
        "g = np.random.default_rng(0).standard_normal(())   # dL/d(loss): the check's",
        "for who, loss_of in ((\"yours\", mine.dpo_loss), (\"minift's\", dpo_loss)):",
        "    p = Tensor(policy, requires_grad=True)",
        "    loss = loss_of(p, reference.copy(), beta)",
        "    (loss * g).sum().backward()",
        "    print(who, 'loss:', loss.data, 'dL/dpolicy:', p.grad)"]


# ----------------------------------------------------------------------------- the list

EXERCISES = [
    Exercise("backward_walk", "the engine's backward walk over the graph", "_walk(root, grad, keep_graph)",
             "minift/tensor.py:_walk", _graph_example, _grade_walk,
             ("A node may run its backward only once every node that used its output has sent it a gradient. "
              "Nodes are created after their inputs, so the creation number gives an order: which way round? "
              "Keep a running sum per node and per leaf: a tensor used twice receives two gradients.",
              "Two dicts: node -> dL/d(its output) summed so far (it starts as {root: grad}), and leaf -> dL/dleaf. "
              "backward gives one gradient per entry of node.parents (wrap a lone array in a tuple); skip a None "
              "gradient, a None parent and a parent that does not require grad. Each gradient goes through "
              "_conform(gp, parent.shape, parent.dtype) before it is added.",
              "for node in sorted(_nodes_reachable_from(root), key=lambda n: n._seq, reverse=True): g = "
              "node_grads.pop(node); gs = node.backward(g) (a tuple); for parent, gp in zip(node.parents, gs): "
              "gp = _conform(...); d = node_grads if parent.is_node else leaf_grads; d[parent] = d[parent] + gp "
              "if parent in d else gp. Return leaf_grads."),
             asks="root: the node (a Function) that made the tensor backward() was called on; grad:\n"
                  "dL/d(that tensor), an array of its shape. Returns {leaf Tensor: dL/dleaf} for every\n"
                  "leaf that requires grad, each in the leaf's shape and dtype. Runs each node's backward\n"
                  "once, with node.last_backward = not keep_graph set before it; when keep_graph is\n"
                  "False, sets node.saved = node.parents = None after it.",
             todo="visit the nodes so that each has all of its gradient before its backward runs; add up what "
                  "each input receives",
             imports="from minift.tensor import _conform, _nodes_reachable_from\n"
                     "from minift.tensor import _profile   # bench.profile's op timer: None unless it is timing",
             kind="build", gradcheck=False, shadow=False, intro=INTROS["backward_walk"], replay=_walk_replay),
    Exercise("train_step", "one training step: accumulate, clip, update, zero", "train_step(model, optimizer, ...)",
             "minift/trainer.py:train_step", _train_example, _grade_train_step,
             ("backward adds into .grad: scaled micro-batch losses add up to the gradient of their mean, and so "
              "would last step's gradients, if nothing cleared them. Clipping changes the gradients the optimizer "
              "reads, so it has to happen before the update.",
              "len(batches) micro-batches, each loss scaled by 1 / len(batches); the loss returned is the sum of "
              "what each step returns, from 0.0 up. clip_grad_norm(optimizer.params(), max_norm) needs a number: "
              "math.inf when grad_clip is None or 0. the optimizer's step and zero_grad methods take no arguments.",
              "loss = 0.0; for batch in batches: loss = loss + step(model, loss_fn, batch, 1.0 / len(batches), "
              "data_parallel=data_parallel); norm = clip_grad_norm(optimizer.params(), grad_clip or math.inf); "
              "optimizer.step(); optimizer.zero_grad(); return loss, norm."),
             asks="model: a Module; optimizer: an Optimizer over its parameters; batches: a list of\n"
                  "micro-batches (each what loss_fn takes); loss_fn(model, batch) -> a 0-d Tensor;\n"
                  "grad_clip: the largest global gradient norm (None or 0: no clipping); data_parallel:\n"
                  "pass it on to `step`. Runs `step` once per micro-batch, clips, updates the parameters,\n"
                  "and leaves no gradient to the next step. Returns (loss, norm): the mean loss of the\n"
                  "micro-batches and the gradient norm before clipping.",
             todo="forward and backward on each micro-batch (scaled), clip the gradients, step, zero the gradients",
             imports="import math\n\nfrom minift import backend\nfrom minift.optim import clip_grad_norm\n"
                     "from minift.trainer import forward_backward",
             given=1, kind="build", gradcheck=False, shadow=False, intro=INTROS["train_step"], replay=_train_replay),
    Exercise("sampling", "the next token's distribution: temperature, top-k, top-p", "next_token_probs(logits, ...)",
             "minift/generate.py:next_token_probs", _sampling_example, _grade_sampling,
             ("Temperature 0 puts all the probability on one token. Otherwise scale the logits, drop those outside "
              "the top k (a logit of -inf has probability 0), softmax, then drop the unlikely tail beyond top_p and "
              "renormalise. Subtract the largest logit before dividing by a tiny T: every value is then <= 0, and "
              "nothing overflows to inf - inf.",
              "Everything is (V,) float64. np.partition(x, -k)[-k] is the k-th largest value. np.argsort(-p, "
              "kind=\"stable\") orders the tokens most likely first (the lower id first on ties); np.cumsum of the "
              "sorted probabilities, and np.searchsorted(cumulative, top_p) is the first position whose total "
              "reaches top_p.",
              "if T == 0: one-hot at np.argmax(logits). z = (logits - logits.max()) / T; if top_k < V: z[z < "
              "np.partition(z, -top_k)[-top_k]] = -inf; p = exp(z - z.max()); p /= p.sum(); if top_p < 1: order = "
              "argsort(-p, stable); keep = order[:searchsorted(cumsum(p[order]), top_p) + 1]; zero the rest, p /= "
              "p.sum()."),
             asks="logits: one row of scores (V,), a NumPy array; temperature >= 0; top_k None or >= 1;\n"
                  "top_p None or in (0, 1]. Returns the float64 probabilities (V,) the next token is\n"
                  "drawn from: they sum to 1, and are 0 for every token that cannot be drawn.",
             todo="temperature (0: greedy), then top-k, softmax, then top-p, renormalising what is kept",
             imports="import numpy as np", kind="build", gradcheck=False, intro=INTROS["sampling"],
             replay=_sampling_replay),
    Exercise("bpe_merge", "one BPE step: merge the most frequent pair of tokens",
             "bpe_merge_step(word_counts, new_id)", "minift/data/bpe.py:bpe_merge_step", _bpe_example, _grade_bpe,
             ("Two passes: one counts, one rewrites. A word that occurs 5 times counts each of its pairs 5 times. "
              "While rewriting a word, once two tokens have become one, the second of them cannot start another "
              "occurrence of the pair.",
              "A word is a tuple of ids, and a pair a tuple of two: (word[i], word[i + 1]) for i in range(len(word) "
              "- 1). Tuples compare by their first element, then their second, so the smallest pair is min() of "
              "them. The new words must be tuples too: they are the keys of the dict returned.",
              "pairs = Counter(); for word, c in word_counts.items(): for p in zip(word, word[1:]): pairs[p] += c. "
              "pair = min(pairs, key=lambda p: (-pairs[p], p)). Per word: i = 0; while i < len(word): if "
              "word[i:i + 2] == pair: append new_id, i += 2; else: append word[i], i += 1."),
             asks="word_counts: {word: count}, each word a tuple of token ids (ints), each count an int;\n"
                  "at least one word has two tokens or more. new_id: the id of the new token. Returns\n"
                  "(pair, new word counts): the pair merged (a tuple of two ids) and a dict\n"
                  "{word: count} with every occurrence of that pair replaced by new_id.",
             todo="count the pairs (weighted by the words' counts), take the most frequent (ties: the smallest), "
                  "merge it left to right in every word",
             imports="from collections import Counter", kind="build", gradcheck=False, intro=INTROS["bpe_merge"],
             replay=_bpe_replay),
    Exercise("dpo_loss", "the DPO loss from policy and reference log-probabilities",
             "dpo_loss(policy, reference, beta)",
             "minift/align/dpo.py:dpo_loss", _dpo_example, _grade_dpo,
             ("Each row's log-ratio is log pi - log ref; a pair's margin is its chosen row's minus its rejected "
              "row's, scaled by beta; the loss is the mean of -log sigma(margin). Build it with Tensor operations "
              "on policy (reference is a plain array), so that backward works through it.",
              "policy and reference are (2B,) B being half their length: rows [:B] are the chosen, [B:] the "
              "rejected, so slicing gives the B margins (B,). LogSigmoid.apply(margin) is (B,); .mean() makes the "
              "0-d loss. reference may be float32: cast it to policy.dtype.",
              "ratio = policy - reference.astype(policy.dtype); margin = (ratio[:B] - ratio[B:]) * beta; "
              "return -LogSigmoid.apply(margin).mean()."),
             asks="policy: a (2B,) Tensor of the policy's summed log-probs; reference: a (2B,) array of\n"
                  "the reference model's; the B chosen rows first. beta: a number. Returns the loss, a\n"
                  "0-d Tensor (the mean over the B pairs) built from policy, so that gradients flow.",
             todo="the log-ratios, each pair's margin times beta, then the mean of -log sigmoid",
             imports="from minift.align.dpo import LogSigmoid", kind="build", intro=INTROS["dpo_loss"],
             replay=_dpo_replay),
]
