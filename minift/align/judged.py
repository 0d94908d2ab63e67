"""Sampled responses read by the exact judge: how well a model follows requests, and
preference pairs made from its own responses.

A response is sampled after the request's prompt ("Request: ...\\nReview:") and ends
at <|endoftext|> or at its first line break (a review is one line: the pretrained model,
which never saw a request, tends to go on with "\\nSentiment: ..."). It follows its
request when the judge (data.feedback.judge) reads the requested sentiment in it and
it stays on the requested product.
"""
import random

import numpy as np

from ..adapt.prompts import prompt_ids
from ..data import feedback
from ..generate import generate_batch

MAX_NEW_TOKENS = 80          # a sampled response: at most this long (built-in reviews are 10-60 tokens)


def sample_responses(model, tokenizer, fmt, prompts, samples, seed=0, temperature=1.0, top_k=None):
    """{prompt: [response, ...]}: `samples` responses sampled for each prompt text.
    Prompts of one token length are decoded together, as one batch."""
    ids = {p: prompt_ids(tokenizer, fmt, p, model.config.block_size // 2) for p in prompts}
    by_length = {}
    for p in prompts:
        by_length.setdefault(len(ids[p]), []).append(p)
    out = {}
    for length, group in sorted(by_length.items()):
        rows = [ids[p] for p in group for _ in range(samples)]
        new = generate_batch(model, rows, MAX_NEW_TOKENS, temperature=temperature, top_k=top_k,
                             seed=[seed, length], eos_id=tokenizer.eot_id)
        for i, p in enumerate(group):
            out[p] = [tokenizer.decode(t).split("\n")[0].strip() for t in new[i * samples:(i + 1) * samples]]
    return out


def follows(request, verdict):
    """Whether a response with this judge's `verdict` follows `request` (feedback.Request)."""
    return verdict.label == request.label and verdict.on_product(request.noun)


def judged_following(model, tokenizer, fmt, requests, samples, seed=0, temperature=1.0):
    """(rates, judged): the shares of sampled responses whose judged sentiment is the
    requested one ("sentiment"), that stay on the requested product ("product"), both
    ("both"), out of "n"; and every (request, response, verdict)."""
    responses = sample_responses(model, tokenizer, fmt, [r.text for r in requests], samples, seed, temperature)
    judged = [(r, text, feedback.judge(text)) for r in requests for text in responses[r.text]]
    sentiment = np.array([v.label == r.label for r, _, v in judged])
    product = np.array([v.on_product(r.noun) for r, _, v in judged])
    return {"sentiment": float(sentiment.mean()), "product": float(product.mean()),
            "both": float((sentiment & product).mean()), "n": len(judged)}, judged


def judged_pairs(model, tokenizer, fmt, requests, samples, seed=0):
    """Preference pairs from the model's own responses, labeled by the judge: for each
    request, `samples` sampled responses; each one that does not follow it becomes a
    rejected response, paired with one that does (taken in turn). When none follows,
    the chosen responses are written by the world (feedback.respond); a request whose
    responses all follow gives no pair, and empty responses are left out."""
    responses = sample_responses(model, tokenizer, fmt, [r.text for r in requests], samples, seed)
    rng = random.Random(f"minift-judged-pairs-{seed}")
    pairs = []
    for r in requests:
        texts = [t for t in responses[r.text] if t]
        good = [t for t in texts if follows(r, feedback.judge(t))]
        bad = [t for t in texts if t not in good]
        if bad and not good:
            good = [feedback.respond(rng, r)]
        pairs += [{"prompt": r.text, "chosen": good[i % len(good)], "rejected": t, "kind": "judged"}
                  for i, t in enumerate(bad)]
    return pairs
