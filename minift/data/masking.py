"""Masked-language-model batches: what an encoder is pretrained on (BERT's recipe).

A batch is B documents drawn at random from the corpus stream (each one's tokens and
its `<|endoftext|>`), right-padded to the longest; `lengths` says where each ends. In
each document MASK_FRACTION of the real positions, drawn at random, are chosen to be
predicted, and their input is changed:

    80%  replaced by <|mask|>          the model must fill the gap from both sides
    10%  replaced by a random token    so it cannot trust that an unmasked token is right
    10%  left as they are              so the representation of real tokens is trained too

(each chosen position draws its fate independently: 80/10/10 in expectation). The
targets hold the original id at every chosen position and IGNORE elsewhere (padding
included), so the loss is the cross-entropy of the chosen positions only (model.Encoder).

Why documents and not the long windows a GPT reads: at the start of training attention
is uniform, so a position learns from a neighbour only 1/T of what the neighbour
offers. A GPT's first positions attend over few tokens and show its attention where to
look; an encoder has no such positions, and over 128-token windows its masked-token loss
stayed near that of guessing by word frequency for hundreds of steps. Over documents
(20-60 tokens here, and what the encoder's classifier reads) it falls at once.
"""
import numpy as np

from .labeled import pad_batch

__all__ = ["MASK_FRACTION", "MASK_SPLIT", "IGNORE", "split_into_documents", "mask_tokens", "MaskedDocuments"]

MASK_FRACTION = 0.15            # share of each document's positions that are predicted
MASK_SPLIT = (0.8, 0.1, 0.1)    # of those: <|mask|>, a random token, unchanged
IGNORE = -100                   # target of a position that is not predicted (model.IGNORE)


def split_into_documents(ids, eot_id, max_len):
    """The documents of a token stream: each one's ids and the `<|endoftext|>` after it,
    cut to max_len (views of `ids`). A part of a document at either end of the stream
    (where a train/validation split cut it) counts as one; empty ones are dropped."""
    ids = np.asarray(ids)
    ends = np.flatnonzero(ids == eot_id) + 1                     # one past each <|endoftext|>
    pieces = [ids[a:b] for a, b in zip(np.r_[0, ends], np.r_[ends, len(ids)])]
    return [p[:max_len] for p in pieces if len(p) and not (len(p) == 1 and p[0] == eot_id)]


def mask_tokens(ids, rng, mask_id, first_regular_id, vocab_size, lengths=None):
    """(inputs, targets) for the rows ids (B, T), both (B, T) int64.

    Row b holds lengths[b] real tokens (all T when lengths is None), of which exactly
    max(1, round(MASK_FRACTION * lengths[b])) are chosen, so no row is left without a
    target. A random replacement is a regular token, first_regular_id .. vocab_size - 1
    (never a special token such as <|mask|>). Padding is never chosen nor changed.
    """
    ids = np.asarray(ids, dtype=np.int64)
    B, T = ids.shape
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    padding = np.arange(T)[None, :] >= lengths[:, None]                 # (B, T)
    keys = np.where(padding, 2.0, rng.random((B, T)))                   # padding sorts last
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)                 # each position's place in its row
    n = np.maximum(1, np.rint(MASK_FRACTION * lengths)).astype(np.int64)
    chosen = rank < n[:, None]                                          # (B, T)
    targets = np.where(chosen, ids, IGNORE)
    fate = rng.random(int(chosen.sum()))                                # one draw per chosen position
    replacement = np.where(fate < MASK_SPLIT[0], mask_id, rng.integers(first_regular_id, vocab_size, fate.size))
    keep = fate >= MASK_SPLIT[0] + MASK_SPLIT[1]
    inputs = ids.copy()
    inputs[chosen] = np.where(keep, ids[chosen], replacement)
    return inputs, targets


class MaskedDocuments:
    """Batches of masked documents, reproducible and resumable:

        batches = MaskedDocuments(docs, 16, seed=0, mask_id=2, first_regular_id=3, vocab_size=2048, pad_id=1)
        inputs, targets, lengths = batches.next_batch()      # (16, T), (16, T), (16,) int64

    The n-th batch (its documents and masks) is drawn from a generator seeded with
    (seed, n), so the state to save is n alone.
    """

    def __init__(self, docs, batch_size, seed, mask_id, first_regular_id, vocab_size, pad_id):
        if not docs or batch_size < 1:
            raise ValueError(f"MaskedDocuments: need documents and batch_size >= 1, got {len(docs)} documents "
                             f"and batch_size {batch_size}")
        self.docs, self.batch_size, self.seed = docs, batch_size, seed
        self.mask_id, self.first_regular_id, self.vocab_size = mask_id, first_regular_id, vocab_size
        self.pad_id = pad_id
        self.batches_drawn = 0

    def next_batch(self):
        rng = np.random.default_rng([self.seed, self.batches_drawn])
        self.batches_drawn += 1
        picked = rng.integers(0, len(self.docs), self.batch_size)
        ids, lengths = pad_batch([self.docs[i] for i in picked], self.pad_id)
        inputs, targets = mask_tokens(ids, rng, self.mask_id, self.first_regular_id, self.vocab_size, lengths)
        return inputs, targets, lengths

    def state_dict(self):
        return {"batches_drawn": self.batches_drawn}

    def load_state_dict(self, state):
        self.batches_drawn = int(state["batches_drawn"])
