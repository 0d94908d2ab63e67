"""The classification head: a pretrained backbone reads a text, one vector comes out of
it, and a fresh Linear layer turns that vector into one score per label.

    ids (B, T) -> backbone -> hidden (B, T, C) -> pool -> (B, C) -> head -> logits (B, L)

The backbone is the pretrained GPT's `Transformer` (embeddings, blocks, final LayerNorm);
its language-model head is left behind.
"""
import numpy as np

from ..backend import array_module, to_numpy
from ..data import pad_batch
from ..model import language_model
from ..nn import Linear, Module
from ..tensor import no_grad

POOLINGS = ("last", "mean")


class Classifier(Module):
    """A pretrained backbone (a GPT's, or an encoder's) with a classification head.

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
        hidden = self.transformer(ids, lengths=lengths)    # (B, T, C); an encoder's attention skips padding
        pooled = pool(hidden, lengths, self.pooling)       # (B, C)
        return self.head(pooled)                           # (B, L)


def swap_head(gpt, num_labels, pooling="last", seed=0):
    """The classifier made from a GPT (or an Encoder): its backbone (the same module,
    weights untouched) and a freshly initialised head; the LM head is left behind."""
    return Classifier(gpt.transformer, gpt.config, num_labels, pooling=pooling, seed=seed)


def make_scratch(config, num_labels, pooling="last", seed=0, dtype=np.float32):
    """The no-pretraining baseline: the same classifier on a randomly initialised
    backbone (GPT-2 init, `GPT(config, seed)`, or an Encoder's for an encoder config)."""
    return swap_head(language_model(config, seed=seed, dtype=dtype), num_labels, pooling=pooling, seed=seed)


def pool_last(hidden, lengths):
    """hidden: a Tensor (B, T, C); lengths: an integer array (B,), each in 1..T.
    Returns a Tensor (B, C): row b is hidden[b, lengths[b] - 1], the last real token."""
    # Two integer arrays pick one (b, t) pair per row; GetItem's backward scatters the
    # gradient back to exactly those positions.
    xp = array_module(hidden.data)
    lengths = xp.asarray(lengths)
    return hidden[xp.arange(len(lengths)), lengths - 1]


def pool(hidden, lengths, how="last"):
    """One vector per row from hidden states (B, T, C), ignoring padding.

    last   hidden[b, lengths[b] - 1]: in a causal model the last real token is the only
           one that has seen the whole text (and padding, which comes after it, is
           never seen by it); in an encoder every token sees the whole text, and the
           last, the `<|endoftext|>` every text ends with, serves as its summary token
    mean   the average over the real tokens 0 .. lengths[b] - 1
    """
    B, T, _ = hidden.shape
    xp = array_module(hidden.data)
    lengths = xp.asarray(lengths)
    if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError(f"pool: lengths must be (B,) = ({B},) values in 1..{T}, got shape "
                         f"{tuple(lengths.shape)} with values {to_numpy(lengths).tolist()[:8]}")
    if how == "last":
        return pool_last(hidden, lengths)                                  # (B, C)
    if how == "mean":
        mask = (xp.arange(T)[None, :] < lengths[:, None]).astype(hidden.dtype)   # (B, T) 1 = real
        total = (hidden * mask[:, :, None]).sum(axis=1)                    # (B, C)
        return total / lengths[:, None].astype(hidden.dtype)
    raise ValueError(f"unknown pooling {how!r}; choose one of {list(POOLINGS)}")


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
