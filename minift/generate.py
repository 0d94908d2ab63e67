"""Text generation: greedy and sampled decoding (temperature, top-k, top-p), with a
KV cache so that each new token costs one position of compute, not a whole pass."""
import math

import numpy as np

from .backend import array_module, to_numpy
from .errors import MiniftError
from .model import KVCache
from .tensor import no_grad


def next_token_probs(logits, temperature, top_k=None, top_p=None):
    """The distribution the next token is drawn from: float64 probabilities (V,) from one
    row of logits (V,) (a NumPy array). Temperature 0 is greedy decoding: probability 1
    on the largest logit (the first, on a tie). Otherwise softmax(logits / temperature),
    with only the top_k largest logits kept (ties with the k-th largest kept too), then
    only the most likely tokens whose probabilities add up to top_p: the fewest, most
    likely first (the lower id first among equals), up to and including the token whose
    probability takes the total to top_p or past it. What is dropped gets probability 0
    and the rest is renormalised."""
    if temperature == 0:
        probs = np.zeros(logits.size)
        probs[np.argmax(logits)] = 1.0
        return probs
    # Shift first, then scale: every value is <= 0 before the division, so a tiny
    # temperature sends all but the best to -inf (probability 0), never to inf - inf = NaN.
    with np.errstate(over="ignore"):
        logits = (logits.astype(np.float64) - logits.max()) / temperature
    if top_k is not None and top_k < logits.size:
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        # keep the smallest set of most likely tokens whose total probability >= top_p
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[:int(np.searchsorted(cumulative, top_p)) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return probs


def _pick(logits, temperature, top_k, top_p, rng):
    """Choose the next token id from one row of logits (V,) (a NumPy array): a draw from
    next_token_probs, or, when greedy (temperature 0), its one certain token without a draw."""
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))
    return int(rng.choice(probs.size, p=probs))


@no_grad()
def generate(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             seed=0, eos_id=None, use_cache=True):
    """Continue `prompt_ids` (a list of ints) by up to `max_new_tokens` tokens and return
    the new ids (stopping after `eos_id` if given; it is not included).

    temperature 0 is greedy decoding. With use_cache=False every step runs the model on
    the last block_size tokens; with the cache, each step runs one position, and when the
    window is full the cache is rebuilt from the last block_size tokens — the same
    context the uncached model sees, so both give the same tokens.
    """
    if not model.config.causal:
        raise MiniftError("generate needs a decoder (a GPT): this model is an encoder, pretrained to fill in "
                          "masked tokens from both sides, which cannot continue a text")
    if len(prompt_ids) == 0:
        raise MiniftError("generate needs a non-empty prompt (start with the end-of-text id for none)")
    problems = [f"{flag} must be {rule}, got {value}" for flag, value, rule, ok in (
        ("--temperature", temperature, "a finite number >= 0 (0: greedy)", temperature >= 0 and math.isfinite(temperature)),
        ("--max-new-tokens", max_new_tokens, ">= 0", max_new_tokens >= 0),
        ("--top-p", top_p, "in (0, 1]", top_p is None or 0 < top_p <= 1),
        ("--top-k", top_k, ">= 1", top_k is None or top_k >= 1)) if not ok]
    if problems:
        raise MiniftError("generate: " + "; ".join(problems))
    was_training = model.training
    model.eval()
    block = model.config.block_size
    xp = array_module(model.parameters()[0].data)
    rng = np.random.default_rng(seed)
    seq = list(prompt_ids)
    new = []
    cache, fed = None, 0        # `fed`: how many tokens of seq the cache has seen
    for _ in range(max_new_tokens):
        if use_cache and cache is not None and cache.length < block:
            step_ids = seq[fed:]
        else:                   # start (or restart) from the last block_size tokens
            cache = KVCache(model.config.n_layer) if use_cache else None
            step_ids = seq[-block:]
            fed = len(seq) - len(step_ids)
        logits, _ = model(xp.asarray(np.array([step_ids], dtype=np.int64)), cache=cache)
        fed += len(step_ids)
        token = _pick(to_numpy(logits.data[0, -1]), temperature, top_k, top_p, rng)
        if eos_id is not None and token == eos_id:
            break
        seq.append(token)
        new.append(token)
    model.train(was_training)
    return new


@no_grad()
def generate_batch(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=0,
                   eos_id=None):
    """One sampled continuation per prompt, all decoded side by side as one batch.

    `prompts` is a list of id lists of one length (no padding is needed, so the rows
    see exactly what `generate` would show them); repeat a prompt to draw several
    samples of it. Returns a list of new-id lists, each stopped before `eos_id`.
    Decoding stops at the context's end (block_size) or when every row has ended;
    rows are drawn in order from one seeded generator.
    """
    if not model.config.causal:
        raise MiniftError("generate_batch needs a decoder (a GPT): an encoder cannot continue a text")
    if not prompts or len({len(p) for p in prompts}) != 1 or not prompts[0]:
        raise MiniftError("generate_batch needs non-empty prompts, all of one length")
    was_training = model.training
    model.eval()
    xp = array_module(model.parameters()[0].data)
    rng = np.random.default_rng(seed)
    cache = KVCache(model.config.n_layer)
    step_ids = np.array(prompts, dtype=np.int64)                        # (B, T) then (B, 1)
    new = [[] for _ in prompts]
    ended = [False] * len(prompts)
    for _ in range(min(max_new_tokens, model.config.block_size - step_ids.shape[1] + 1)):
        logits, _ = model(xp.asarray(step_ids), cache=cache)
        last = to_numpy(logits.data[:, -1])                              # (B, V)
        tokens = [_pick(row, temperature, top_k, top_p, rng) for row in last]
        for i, token in enumerate(tokens):
            ended[i] = ended[i] or token == eos_id
            if not ended[i]:
                new[i].append(token)
        if all(ended) or cache.length == model.config.block_size:
            break
        step_ids = np.array(tokens, dtype=np.int64)[:, None]
    model.train(was_training)
    return new
