"""Asking a language model for a label: the prompt format, k-shot prompts, label
likelihoods (the `prompt` strategy) and instruction-tuning examples (`instruct`).

    prompt    <|endoftext|> Review: The lid is superb.\\nSentiment:
    answer     positive                                  (" " + the label's word)

The `prompt` strategy trains nothing: for every label it sums log p(answer tokens |
prompt) under the language model and picks the most likely label. `instruct` fine-tunes
the language model on prompt + answer with the loss on the answer tokens only.
"""
from dataclasses import asdict, dataclass

import numpy as np

from .. import functional as F
from ..backend import array_module, to_numpy
from ..data import feedback, pad_batch
from ..errors import MiniftError
from ..tensor import no_grad

IGNORE = -100        # target id that cross_entropy skips (instruction tuning's prompt tokens)


@dataclass(frozen=True)
class PromptFormat:
    """How a text is put to a language model: `template` with the text in place of
    "{text}"; the answer (" " + label) follows it directly.

        PromptFormat().prompt("Great.") == "Review: Great.\\nSentiment:"

    The default is the format of the rated reviews in the built-in corpus, which is
    what lets a model pretrained on it answer zero-shot. A run stores its format in
    config.json, and `classify` reads it back from there.
    """
    template: str = feedback.RATED_REVIEW_TEMPLATE

    def __post_init__(self):
        if not isinstance(self.template, str) or self.template.count("{text}") != 1:
            raise MiniftError(f"a prompt template must contain {{text}} exactly once (where the text goes), "
                              f"got {self.template!r}")

    def prompt(self, text):
        return self.template.replace("{text}", text)

    def to_dict(self):
        return asdict(self)


def prompt_ids(tokenizer, fmt, text, max_tokens):
    """`<|endoftext|>` + the tokens of fmt.prompt(text), at most max_tokens.

    The leading end-of-text token puts the prompt where a document starts, as in
    pretraining. A text too long for max_tokens is cut (its end is dropped), never the
    template, so the prompt still ends the way the template does ("Sentiment:").
    """
    ids = [tokenizer.eot_id] + tokenizer.encode(fmt.prompt(text))
    if len(ids) <= max_tokens:
        return ids
    template = 1 + len(tokenizer.encode(fmt.prompt("")))
    budget = max_tokens - template
    if budget < 1:
        raise MiniftError(f"the prompt template alone needs {template} tokens; only {max_tokens} fit")
    text_ids = tokenizer.encode(text)
    while True:     # a cut text may encode a little differently: shorten until it fits
        ids = [tokenizer.eot_id] + tokenizer.encode(fmt.prompt(tokenizer.decode(text_ids[:budget])))
        if len(ids) <= max_tokens or budget == 0:
            return ids
        budget -= 1


def answer_ids(tokenizer, label):
    """The tokens of the answer " label" (with its leading space, as written after the
    prompt). Byte-level BPE splits words before a space, so prompt + answer encoded
    apart are the same tokens as encoded together."""
    ids = tokenizer.encode(" " + label)
    if not ids:
        raise MiniftError(f"label {label!r} encodes to no tokens")
    return ids


def shot_ids(tokenizer, fmt, shots):
    """Solved examples (prompt + answer) as one token prefix, each starting with
    `<|endoftext|>` as separate documents did in pretraining."""
    out = []
    for text, label in shots:
        out += [tokenizer.eot_id] + tokenizer.encode(fmt.prompt(text)) + answer_ids(tokenizer, label)
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
        raise MiniftError(f"--k {k}: no training text is short enough (<= {max_chars} characters) for {k} shots and "
                          f"the text to fit the model's context; lower --k")
    shots = []
    for j in range(k):
        candidates = by_label[names[j % len(names)]]
        if j // len(names) < len(candidates):
            i = candidates[j // len(names)]
            shots.append((texts[i], labels[i]))
    order = rng.permutation(len(shots))       # mix the labels, so the last shot is no hint
    return [shots[i] for i in order]


def _scoring_rows(tokenizer, fmt, texts, labels, shots, block):
    """One row per (text, label): [shots] + prompt + answer, and (start, length) of the
    answer in it. Shots are dropped from the front (oldest first) when they do not fit."""
    answers = [answer_ids(tokenizer, label) for label in labels]
    longest_answer = max(len(a) for a in answers)
    shot_blocks = [shot_ids(tokenizer, fmt, [s]) for s in shots]
    rows, spans = [], []
    for text in texts:
        query = prompt_ids(tokenizer, fmt, text, block - longest_answer)
        prefix = []
        for block_ids in reversed(shot_blocks):        # keep the shots nearest the query
            if len(block_ids) + len(prefix) + len(query) + longest_answer > block:
                break
            prefix = block_ids + prefix
        context = prefix + query
        for answer in answers:
            rows.append(context + answer)
            spans.append((len(context), len(answer)))
    return rows, spans


@no_grad()
def label_log_likelihoods(gpt, tokenizer, texts, labels, fmt=PromptFormat(), shots=(), batch_size=48):
    """(N, L) NumPy array: log p(" label" | prompt) under the language model, summed
    over the label's tokens, for every text and every label. The prediction is the
    label with the largest log-likelihood; softmax over a row gives probabilities.

    Only the positions that predict an answer token go through the LM head: at GPT-2's
    vocabulary the head over every position would be a third of the work and a
    (batch, T, 50257) array of logits."""
    was_training = gpt.training
    gpt.eval()
    xp = array_module(gpt.parameters()[0].data)
    rows, spans = _scoring_rows(tokenizer, fmt, texts, labels, shots, gpt.config.block_size)
    scores = np.zeros(len(rows), dtype=np.float64)
    order = np.argsort([len(r) for r in rows], kind="stable")   # similar lengths together
    for i in range(0, len(rows), batch_size):
        chunk = order[i:i + batch_size]
        ids, _ = pad_batch([rows[j] for j in chunk], tokenizer.pad_id)
        # the token at position t is predicted at position t - 1: the P positions that score an answer
        owner = np.concatenate([np.full(spans[j][1], r) for r, j in enumerate(chunk)])
        positions = np.concatenate([np.arange(spans[j][0] - 1, sum(spans[j]) - 1) for j in chunk])
        answers = np.concatenate([rows[j][spans[j][0]:sum(spans[j])] for j in chunk])
        logits = _logits_at(gpt, xp.asarray(ids), xp.asarray(owner), xp.asarray(positions))   # (P, V)
        logp = to_numpy(F.log_softmax(logits, axis=-1).data)
        scores[chunk] = np.bincount(owner, logp[np.arange(len(answers)), answers], minlength=len(chunk))
    gpt.train(was_training)
    return scores.reshape(len(texts), len(labels))


def _logits_at(model, ids, rows, positions):
    """Logits (P, V) of a language model at the (row, position) pairs of ids (B, T). A GPT's
    backbone and LM head are called apart, so that only those positions go through the
    head; any other model(ids) -> (logits, loss) is read whole."""
    if hasattr(model, "transformer") and hasattr(model, "lm_head"):
        return model.lm_head(model.transformer(ids)[rows, positions])     # (B, T, C) -> (P, C) -> (P, V)
    return model(ids)[0][rows, positions]


def masked_example(prompt, answer):
    """(x, y) token arrays for learning to write `answer` after `prompt` (id lists).

    The sequence is prompt + answer; x is it without its last token and y without its
    first (next-token prediction). Every target that is part of the prompt is IGNORE,
    so the loss is the model's error on the answer tokens alone.
    """
    seq = np.array(prompt + answer, dtype=np.int64)
    x, y = seq[:-1], seq[1:].copy()
    y[:len(prompt) - 1] = IGNORE          # y[t] is token t+1: the first answer token is y[len(prompt)-1]
    return x, y


def instruction_example(tokenizer, fmt, text, label, block_size):
    """(x, y) for instruction tuning on one example: prompt + " label", the loss on the
    answer tokens only (masked_example): the model is taught to answer, not to write
    reviews."""
    answer = answer_ids(tokenizer, label)
    prompt = prompt_ids(tokenizer, fmt, text, block_size + 1 - len(answer))
    return masked_example(prompt, answer)


def instruction_batch(examples, pad_id):
    """make_batch for EpochBatches: indices -> (x (B, T), y (B, T)), right-padded;
    padded targets are IGNORE."""
    def make_batch(indices):
        x, _ = pad_batch([examples[i][0] for i in indices], pad_id)
        y = np.full(x.shape, IGNORE, dtype=np.int64)
        for row, i in enumerate(indices):
            t = examples[i][1]
            y[row, :len(t)] = t
        return x, y
    return make_batch


def instruction_loss(model, batch):
    """loss_fn for the Trainer: mean cross-entropy over the answer tokens only."""
    x, y = batch
    logits, _ = model(x)                          # (B, T, V)
    return F.cross_entropy(logits, y, ignore_index=IGNORE)


def lm_truncated(tokenizer, fmt, texts, labels, block_size):
    """How many texts prompt_ids will cut to fit prompt + answer in the context."""
    room = block_size - max(len(answer_ids(tokenizer, lab)) for lab in labels) - 1
    lengths = [len(ids) for ids in tokenizer.encode_batch([fmt.prompt(t) for t in texts])]
    return sum(n > room for n in lengths)
