"""Fine-tuning: adapting a pretrained GPT to label texts (positive / negative / neutral).

The pretrained model predicts the next token. To classify, we keep its backbone (the
`Transformer`: embeddings, blocks, final LayerNorm), throw the LM head away and put a
fresh `Linear(n_embd, num_labels)` on the hidden state of one position per text:

    ids (B, T) -> backbone -> hidden (B, T, C) -> pool -> (B, C) -> head -> logits (B, L)

How much of the model then trains is the *adaptation strategy*:

    full      every parameter trains
    head      the backbone is frozen; only the new head trains (a "linear probe")
    top-k     the last k blocks, the final LayerNorm and the head train
    lora      the backbone is frozen; small low-rank adapters beside the attention
              projections (optionally the MLP) and the head train
    prompt    nothing trains: the language model itself scores each label word after a
              template ("Review: ...\\nSentiment:"), optionally after k solved examples
    instruct  keep the LM head and fine-tune the whole language model to write the label
              word after the template (loss on the answer tokens only)
    scratch   the `full` classifier, but from random weights: the no-pretraining baseline

Freezing is just `requires_grad = False`. The engine records no graph for an op whose
inputs all have requires_grad False, so nothing below the lowest trainable layer is
ever differentiated: with `head`, backward() runs through the head alone; with
`top-k`, it stops at block n_layer - k. Frozen parameters never get a `.grad`.

This module holds the models, strategies, batching, prompt scoring and metrics; the
pipeline that loads a pretrained run, trains with `train.Trainer` and writes a run
directory is `train.finetune`.
"""
import math

import numpy as np

from . import functional as F
from .backend import array_module, to_numpy
from .data import encode_texts, feedback, pad_batch
from .model import GPT
from .nn import Linear, Module, Parameter
from .optim import default_param_groups
from .tensor import no_grad

STRATEGIES = ("full", "head", "top-k", "lora", "prompt", "instruct", "scratch")
CLASSIFIER_STRATEGIES = ("full", "head", "top-k", "lora", "scratch")   # a head on the backbone
LM_STRATEGIES = ("prompt", "instruct")                                 # the LM head scores labels
POOLINGS = ("last", "mean")
IGNORE = -100        # target id that cross_entropy skips (instruction tuning's prompt tokens)


# ----------------------------------------------------------------------------- the classifier

class Classifier(Module):
    """A GPT backbone with a classification head.

    model(ids (B, T), lengths (B,)) -> logits (B, num_labels)

    `lengths[b]` is the number of real tokens in row b; the rest of the row is padding
    (right-padded, see `data.pad_batch`). Parameter names are the backbone's GPT-2
    names (`transformer.h.0.attn.c_attn.weight`, ...) plus `head.weight`, `head.bias`.
    """

    def __init__(self, transformer, config, num_labels, pooling="last", seed=0):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {list(POOLINGS)}")
        if num_labels < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {num_labels}")
        self.config = config
        self.transformer = transformer
        dtype = transformer.wte.weight.dtype
        # Small random init (like GPT-2's layers): the first logits are nearly equal, so
        # the first gradient steps are not dominated by a random head's opinions.
        self.head = Linear(config.n_embd, num_labels, init_std=0.02,
                           rng=np.random.default_rng([seed, 7]), dtype=dtype)
        self.pooling = pooling
        self.num_labels = num_labels

    def forward(self, ids, lengths):
        hidden = self.transformer(ids)                     # (B, T, C)
        pooled = pool(hidden, lengths, self.pooling)       # (B, C)
        return self.head(pooled)                           # (B, L)


def swap_head(gpt, num_labels, pooling="last", seed=0):
    """The classifier made from a GPT: its backbone (the same module, weights
    untouched) and a freshly initialised head; the GPT's LM head is left behind."""
    return Classifier(gpt.transformer, gpt.config, num_labels, pooling=pooling, seed=seed)


def pool(hidden, lengths, how="last"):
    """One vector per row from hidden states (B, T, C), ignoring padding.

    last   hidden[b, lengths[b] - 1]: in a causal model the last real token is the only
           one that has seen the whole text (and padding, which comes after it, is
           never seen by it)
    mean   the average over the real tokens 0 .. lengths[b] - 1
    """
    B, T, _ = hidden.shape
    xp = array_module(hidden.data)
    lengths = xp.asarray(lengths)
    if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError(f"pool: lengths must be (B,) = ({B},) values in 1..{T}, got shape "
                         f"{tuple(lengths.shape)} with values {to_numpy(lengths).tolist()[:8]}")
    if how == "last":
        # Two integer arrays pick one (b, t) pair per row; GetItem's backward scatters
        # the gradient back to exactly those positions.
        return hidden[xp.arange(B), lengths - 1]                           # (B, C)
    if how == "mean":
        mask = (xp.arange(T)[None, :] < lengths[:, None]).astype(hidden.dtype)   # (B, T) 1 = real
        total = (hidden * mask[:, :, None]).sum(axis=1)                    # (B, C)
        return total / lengths[:, None].astype(hidden.dtype)
    raise ValueError(f"unknown pooling {how!r}; choose one of {list(POOLINGS)}")


# ----------------------------------------------------------------------------- LoRA

class LoRALinear(Module):
    """A Linear layer with a trainable low-rank update beside its frozen weight (LoRA,
    Hu et al. 2021):

        y = x @ W + b  +  (x @ A) @ B * (alpha / r)

    W (in, out) and b are the pretrained layer's own Parameters, frozen. A (in, r) and
    B (r, out) are new, with r much smaller than in and out, so the update A @ B has
    r * (in + out) parameters instead of in * out. B starts at zero: before training
    the layer computes exactly what the pretrained one did. Dividing by r keeps the
    update's size comparable when r changes, so alpha need not be retuned.

    Parameter names extend the layer's: `c_attn.weight`, `c_attn.bias`,
    `c_attn.lora_A`, `c_attn.lora_B`.
    """

    def __init__(self, base, rank, alpha, rng):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight             # the pretrained Parameters themselves, frozen
        self.bias = base.bias
        for p in (self.weight, self.bias):
            if p is not None:
                p.requires_grad, p.grad = False, None
        dtype = base.weight.dtype
        # A like a Linear layer's init; B zero so that A @ B = 0 at the start.
        self.lora_A = Parameter(rng.normal(0.0, self.in_features ** -0.5,
                                           (self.in_features, rank)).astype(dtype))
        self.lora_B = Parameter(np.zeros((rank, self.out_features), dtype=dtype))
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)                         # (..., out), frozen
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)        # (..., r) -> (..., out)
        return y + update * self.scale

    def merged(self):
        """A plain Linear computing the same function: W + (alpha / r) A @ B, for
        inference without the extra matrix products."""
        W = self.weight.data + (self.lora_A.data @ self.lora_B.data) * self.weight.dtype.type(self.scale)
        layer = Linear(self.in_features, self.out_features, bias=self.bias is not None,
                       dtype=self.weight.dtype)
        layer.weight = Parameter(W, requires_grad=self.weight.requires_grad)
        if self.bias is not None:
            layer.bias = self.bias
        return layer


def _lora_sites(transformer, mlp):
    """(module, attribute name) of every Linear that gets an adapter."""
    names = ("c_attn", "c_proj")
    for block in transformer.h:
        for name in names:
            yield block.attn, name
        if mlp:
            for name in ("c_fc", "c_proj"):
                yield block.mlp, name


def add_lora(model, rank=8, alpha=16, mlp=False, seed=0):
    """Freeze `model.transformer` and put a LoRALinear in place of each attention
    projection (c_attn, c_proj) of every block, and of the MLP's (c_fc, c_proj) with
    mlp=True. Returns the model; its adapters and any other part that was not
    frozen (the head) are what train."""
    model.transformer.requires_grad_(False)
    rng = np.random.default_rng([seed, 11])
    for parent, name in _lora_sites(model.transformer, mlp):
        layer = getattr(parent, name)
        if isinstance(layer, LoRALinear):
            raise ValueError("add_lora: the model already has LoRA adapters")
        setattr(parent, name, LoRALinear(layer, rank, alpha, rng))
    return model


def merge_lora(model):
    """Replace every LoRALinear in `model` by the equivalent plain Linear (in place).
    The state dict then has exactly the names of a model without adapters."""
    for _, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
    return model


def has_lora(model):
    return any(isinstance(m, LoRALinear) for m in model.modules())


# ----------------------------------------------------------------------------- strategies

def freeze_all_but_top(model, k):
    """Freeze the backbone except its last k blocks and the final LayerNorm."""
    n = len(model.transformer.h)
    if not 1 <= k <= n:
        raise ValueError(f"top-k: k must be between 1 and the number of blocks ({n}), got {k} "
                         f"(k = 0 is the 'head' strategy)")
    model.transformer.requires_grad_(False)
    for block in model.transformer.h[n - k:]:
        block.requires_grad_(True)
    model.transformer.ln_f.requires_grad_(True)
    return model


def apply_strategy(model, strategy, k=2, lora_rank=8, lora_alpha=16, lora_mlp=False, seed=0):
    """Set which parameters of a Classifier train for `strategy` (see the module
    docstring); returns the model. `full` and `scratch` leave everything trainable."""
    if strategy in ("full", "scratch"):
        model.requires_grad_(True)
    elif strategy == "head":
        model.transformer.requires_grad_(False)
    elif strategy == "top-k":
        freeze_all_but_top(model, k)
    elif strategy == "lora":
        add_lora(model, lora_rank, lora_alpha, mlp=lora_mlp, seed=seed)
    else:
        raise ValueError(f"apply_strategy: {strategy!r} is not a classifier strategy; choose one "
                         f"of {list(CLASSIFIER_STRATEGIES)}")
    return model


def parameter_counts(model):
    """(trainable, total) number of parameters (tied ones counted once)."""
    return model.num_parameters(trainable_only=True), model.num_parameters()


def trainable_param_groups(model, weight_decay):
    """AdamW parameter groups holding only the parameters that train (the usual split:
    no decay on biases, LayerNorm and embeddings; see optim.default_param_groups)."""
    groups = []
    for g in default_param_groups(model, weight_decay):
        params = [p for p in g["params"] if p.requires_grad]
        if params:
            groups.append(dict(g, params=params))
    if not groups:
        raise ValueError("no parameter is trainable: nothing to fine-tune")
    return groups


# ----------------------------------------------------------------------------- batches

class EpochBatches:
    """Mini-batches that visit every example once per epoch, in a fresh seeded order
    each epoch; `make_batch(indices)` turns a list of example indices into the batch.

    Has what `train.Trainer` needs: next_batch(), state_dict(), load_state_dict().
    The order of epoch e depends only on (seed, e), so the state is two integers.
    """

    def __init__(self, n, batch_size, make_batch, seed=0):
        if n < 1 or batch_size < 1:
            raise ValueError(f"EpochBatches: need n >= 1 and batch_size >= 1, got {n} and {batch_size}")
        self.n, self.batch_size, self.make_batch, self.seed = n, batch_size, make_batch, seed
        self.epoch, self.position = 0, 0

    @property
    def steps_per_epoch(self):
        return math.ceil(self.n / self.batch_size)

    def _order(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next_batch(self):
        if self.position >= self.n:                 # the epoch is over: start the next
            self.epoch, self.position = self.epoch + 1, 0
        order = self._order(self.epoch)
        indices = order[self.position:self.position + self.batch_size]
        self.position += len(indices)
        return self.make_batch(indices)

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state):
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])


def encode_for_classifier(texts, tokenizer, max_len):
    """Token ids of each text cut to max_len - 1 tokens, then `<|endoftext|>`.

    The appended end-of-text token gives every text the same last token, the one the
    "last" pooling reads: in pretraining it followed every document, so its hidden
    state is the model's summary of a finished text. Returns (id lists, number cut).
    """
    seqs, n_cut = encode_texts(texts, tokenizer, max_len - 1)
    return [ids + [tokenizer.eot_id] for ids in seqs], n_cut


def classifier_batch(seqs, label_ids, pad_id):
    """make_batch for EpochBatches: indices -> (ids (B, T), lengths (B,), labels (B,))."""
    label_ids = np.asarray(label_ids, dtype=np.int64)

    def make_batch(indices):
        ids, lengths = pad_batch([seqs[i] for i in indices], pad_id)
        return ids, lengths, label_ids[indices]
    return make_batch


def classifier_loss(weight=None):
    """loss_fn(model, batch) for the Trainer: cross-entropy of the classifier's logits,
    optionally with class weights (L,) for imbalanced data."""
    def loss_fn(model, batch):
        ids, lengths, labels = batch
        return F.cross_entropy(model(ids, lengths), labels, weight=weight)
    return loss_fn


@no_grad()
def classifier_logits(model, seqs, pad_id, batch_size=64):
    """Logits (N, L) as a NumPy array for id sequences, in eval mode.

    Texts are batched in order of length, so a batch holds little padding; this is
    only allowed because padding never changes a prediction (see `pool`).
    """
    was_training = model.training
    model.eval()
    xp = array_module(model.parameters()[0].data)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.zeros((len(seqs), model.num_labels), dtype=np.float64)
    for i in range(0, len(seqs), batch_size):
        chunk = order[i:i + batch_size]
        ids, lengths = pad_batch([seqs[j] for j in chunk], pad_id)
        out[chunk] = to_numpy(model(xp.asarray(ids), xp.asarray(lengths)).data)
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------- prompts

def prompt_ids(tokenizer, text, max_tokens):
    """`<|endoftext|>` + the tokens of feedback.format_prompt(text), at most max_tokens.

    The leading end-of-text token puts the prompt where a document starts, as in
    pretraining. A text too long for max_tokens is cut (its end is dropped), never the
    template, so the prompt still ends with "Sentiment:".
    """
    ids = [tokenizer.eot_id] + tokenizer.encode(feedback.format_prompt(text))
    if len(ids) <= max_tokens:
        return ids
    template = 1 + len(tokenizer.encode(feedback.format_prompt("")))
    budget = max_tokens - template
    if budget < 1:
        raise ValueError(f"the prompt template alone needs {template} tokens; max_tokens is {max_tokens}")
    text_ids = tokenizer.encode(text)
    while True:     # a cut text may encode a little differently: shorten until it fits
        ids = [tokenizer.eot_id] + tokenizer.encode(feedback.format_prompt(tokenizer.decode(text_ids[:budget])))
        if len(ids) <= max_tokens or budget == 0:
            return ids
        budget -= 1


def answer_ids(tokenizer, label):
    """The tokens of the answer " label" (with its leading space, as written after
    "Sentiment:"). Byte-level BPE splits words before a space, so prompt + answer
    encoded apart are the same tokens as encoded together."""
    ids = tokenizer.encode(" " + label)
    if not ids:
        raise ValueError(f"label {label!r} encodes to no tokens")
    return ids


def shot_ids(tokenizer, shots):
    """Solved examples ("Review: ...\\nSentiment: label") as one token prefix, each
    starting with `<|endoftext|>` as separate documents did in pretraining."""
    out = []
    for text, label in shots:
        out += [tokenizer.eot_id] + tokenizer.encode(feedback.format_prompt(text)) + answer_ids(tokenizer, label)
    return out


def choose_shots(texts, labels, k, seed=0, max_chars=None):
    """k solved examples for k-shot prompting, the labels taken in turn (balanced),
    each drawn at random (seeded) from the texts of that label; with `max_chars`, only
    from texts that short (the whole prompt must fit in the context)."""
    if k <= 0:
        return []
    rng = np.random.default_rng([seed, 13])
    by_label = {}
    for i in rng.permutation(len(texts)):
        if max_chars is None or len(texts[i]) <= max_chars:
            by_label.setdefault(labels[i], []).append(int(i))
    names = sorted(by_label)
    if not names:
        raise ValueError(f"no training text is short enough (<= {max_chars} characters) to serve as a shot")
    shots = []
    for j in range(k):
        candidates = by_label[names[j % len(names)]]
        if j // len(names) < len(candidates):
            i = candidates[j // len(names)]
            shots.append((texts[i], labels[i]))
    order = rng.permutation(len(shots))       # mix the labels, so the last shot is no hint
    return [shots[i] for i in order]


@no_grad()
def label_log_likelihoods(gpt, tokenizer, texts, labels, shots=(), batch_size=48):
    """(N, L) NumPy array: log p(" label" | prompt) under the language model, summed
    over the label's tokens, for every text and every label.

    prompt = the shots (k solved examples) + `prompt_ids(text)`. When the whole does
    not fit in the model's context, shots are dropped from the front (the oldest
    first); if the text alone is too long, it is cut. The prediction is the label with
    the largest log-likelihood; softmax over a row gives label probabilities.
    """
    was_training = gpt.training
    gpt.eval()
    xp = array_module(gpt.parameters()[0].data)
    block = gpt.config.block_size
    answers = [answer_ids(tokenizer, label) for label in labels]
    longest_answer = max(len(a) for a in answers)
    shot_blocks = [shot_ids(tokenizer, [s]) for s in shots]
    # One row per (text, label): prompt + answer; score[b] sums log p of answer tokens.
    rows, spans = [], []
    for text in texts:
        query = prompt_ids(tokenizer, text, block - longest_answer)
        prefix = []
        for block_ids in reversed(shot_blocks):        # keep the shots nearest the query
            if len(block_ids) + len(prefix) + len(query) + longest_answer > block:
                break
            prefix = block_ids + prefix
        context = prefix + query
        for answer in answers:
            rows.append(context + answer)
            spans.append((len(context), len(answer)))
    scores = np.zeros(len(rows), dtype=np.float64)
    order = np.argsort([len(r) for r in rows], kind="stable")   # similar lengths together
    for i in range(0, len(rows), batch_size):
        chunk = order[i:i + batch_size]
        ids, _ = pad_batch([rows[j] for j in chunk], tokenizer.pad_id)
        logp = to_numpy(F.log_softmax(gpt(xp.asarray(ids))[0], axis=-1).data)   # (b, T, V)
        for r, j in enumerate(chunk):
            start, n = spans[j]
            # the token at position t is predicted by the logits at position t - 1
            positions = np.arange(start - 1, start - 1 + n)
            scores[j] = logp[r, positions, rows[j][start:start + n]].sum()
    gpt.train(was_training)
    return scores.reshape(len(texts), len(labels))


def instruction_example(tokenizer, text, label, block_size):
    """(x, y) token arrays for instruction tuning on one example.

    The sequence is prompt + answer; x is it without its last token and y without its
    first (next-token prediction). Every target that is part of the prompt is IGNORE,
    so the loss is the model's error on the answer tokens alone: it is taught to
    answer, not to write reviews.
    """
    answer = answer_ids(tokenizer, label)
    prompt = prompt_ids(tokenizer, text, block_size + 1 - len(answer))
    seq = np.array(prompt + answer, dtype=np.int64)
    x, y = seq[:-1], seq[1:].copy()
    y[:len(prompt) - 1] = IGNORE          # y[t] is token t+1: the first answer token is y[len(prompt)-1]
    return x, y


def instruction_batch(examples, pad_id):
    """make_batch for EpochBatches: indices -> (x (B, T), y (B, T)), right-padded;
    padded targets are IGNORE."""
    def make_batch(indices):
        xs = [examples[i][0] for i in indices]
        ys = [examples[i][1] for i in indices]
        x, lengths = pad_batch(xs, pad_id)
        y = np.full(x.shape, IGNORE, dtype=np.int64)
        for row, t in enumerate(ys):
            y[row, :len(t)] = t
        return x, y
    return make_batch


def instruction_loss(model, batch):
    """loss_fn for the Trainer: mean cross-entropy over the answer tokens only."""
    x, y = batch
    logits, _ = model(x)                          # (B, T, V)
    return F.cross_entropy(logits, y, ignore_index=IGNORE)


# ----------------------------------------------------------------------------- metrics

def classification_metrics(y_true, y_pred, labels):
    """Accuracy, macro-F1, per-class precision / recall / F1 / support, and the
    confusion matrix (rows: true label, columns: predicted, both in `labels` order).

        precision(c) = correct c / predicted c        recall(c) = correct c / true c
        f1(c) = 2 precision recall / (precision + recall)     (0 when both are 0)
        macro_f1 = the mean of f1 over the labels: each class counts the same,
                   however rare
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"classification_metrics: need two equal-length non-empty 1-D arrays, got "
                         f"shapes {y_true.shape} and {y_pred.shape}")
    L = len(labels)
    confusion = np.zeros((L, L), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    for c, name in enumerate(labels):
        correct, predicted, support = confusion[c, c], confusion[:, c].sum(), confusion[c].sum()
        precision = correct / predicted if predicted else 0.0
        recall = correct / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(support)}
    return {"n": int(y_true.size),
            "accuracy": float(np.trace(confusion) / y_true.size),
            "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])),
            "per_class": per_class,
            "labels": list(labels),
            "confusion": confusion.tolist()}


def format_metrics(metrics, title="test"):
    """The metrics of `classification_metrics` as a readable table."""
    labels = metrics["labels"]
    width = max(10, max(len(name) for name in labels) + 2)
    lines = [f"{title}: accuracy {metrics['accuracy']:.1%}   macro-F1 {metrics['macro_f1']:.3f}   "
             f"({metrics['n']} examples)",
             f"  {'':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name in labels:
        m = metrics["per_class"][name]
        lines.append(f"  {name:<{width}}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}"
                     f"{m['support']:>10}")
    lines.append("  confusion (rows: true label, columns: predicted)")
    lines.append(f"  {'':<{width}}" + "".join(f"{name:>{width}}" for name in labels))
    for name, row in zip(labels, metrics["confusion"]):
        lines.append(f"  {name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def softmax_rows(scores):
    """Row-wise softmax of a NumPy array (N, L) -> probabilities (float64)."""
    z = np.asarray(scores, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def make_scratch(config, num_labels, pooling="last", seed=0, dtype=np.float32):
    """The no-pretraining baseline: the same classifier on a randomly initialised
    backbone (GPT-2 init, `GPT(config, seed)`)."""
    return swap_head(GPT(config, seed=seed, dtype=dtype), num_labels, pooling=pooling, seed=seed)


def comparison_table(results):
    """One line per run: {name: metrics as written by train.finetune} -> a text table of
    trainable parameters, training time and accuracy / macro-F1 on every test set."""
    tests = list(dict.fromkeys(t for m in results.values() for t in m["test"]))
    width = max([8] + [len(name) for name in results]) + 2
    header = f"{'strategy':<{width}}{'trainable params':>24}{'train time':>12}"
    header += "".join(f"{t + ' acc':>14}{'macro-F1':>10}" for t in tests)
    lines = [header, "-" * len(header)]
    for name, m in results.items():
        share = m["trainable_parameters"] / m["total_parameters"]
        line = f"{name:<{width}}{m['trainable_parameters']:>13,} ({share:>7.2%}){m['train_seconds']:>11.1f}s"
        for t in tests:
            r = m["test"].get(t)
            line += f"{r['accuracy']:>14.1%}{r['macro_f1']:>10.3f}" if r else f"{'-':>14}{'-':>10}"
        lines.append(line)
    return "\n".join(lines)
