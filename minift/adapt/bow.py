"""The bag-of-words baseline (`--strategy bow`): logistic regression on TF-IDF vectors of
the tokenizer's tokens. No GPT weight is used, only the init run's tokenizer.

    ids (B, T) -> token counts (B, V) -> TF-IDF, rows of length 1 -> Linear -> logits (B, L)

    tf(t, d)  = how often token t occurs in text d
    idf(t)    = log((1 + N) / (1 + df(t))) + 1     N training texts, df(t) of them contain t
                0 for a token no training text contains (it could teach the model nothing,
                and would only shrink the other features of the text it occurs in)
    x(d)      = tf(., d) * idf / |tf(., d) * idf|  (the zero vector if every idf is 0)

The features are fixed once the idf is counted from the training texts; only the Linear
layer learns, so the loss is convex: this is the model a careful practitioner tries
before fine-tuning anything. It sees what the classifiers see (the text cut to the
model's context), so a table compares like with like. The idf is a frozen Parameter:
saved with the weights in model.safetensors, never trained.
"""
import numpy as np

from ..backend import array_module
from ..data import encode_texts
from ..nn import Linear, Module, Parameter
from ..tensor import Tensor


def document_frequency(seqs, vocab_size):
    """df (V,) int64: in how many of the id lists `seqs` each token occurs (once per list)."""
    df = np.zeros(vocab_size, dtype=np.int64)
    for ids in seqs:
        df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
    return df


def inverse_document_frequency(seqs, vocab_size):
    """idf (V,) float64 of the training texts' id lists (the module docstring's formula)."""
    df = document_frequency(seqs, vocab_size)
    idf = np.log((1 + len(seqs)) / (1 + df)) + 1
    return np.where(df > 0, idf, 0.0)


def token_counts(ids, lengths, vocab_size):
    """counts (B, V): counts[b, t] = how often token t occurs among the first lengths[b]
    ids of row b (the rest of the row is padding). ids (B, T), lengths (B,)."""
    xp = array_module(ids)
    B, T = ids.shape
    real = xp.arange(T)[None, :] < lengths[:, None]                # (B, T) True = a real token
    cells = (xp.arange(B)[:, None] * vocab_size + ids)[real]        # one (row, token) cell per real token
    return xp.bincount(cells, minlength=B * vocab_size).reshape(B, vocab_size)


def tfidf(counts, idf):
    """Rows of counts (B, V) weighted by idf (V,) and scaled to length 1 (float32)."""
    xp = array_module(counts)
    x = counts.astype(xp.float32) * idf                              # (B, V)
    norm = xp.sqrt((x * x).sum(axis=1, keepdims=True))               # (B, 1)
    return x / xp.maximum(norm, xp.float32(1e-12))                   # an all-zero row stays zero


class BagOfWords(Module):
    """Logistic (softmax) regression on a text's TF-IDF vector.

    model(ids (B, T), lengths (B,)) -> logits (B, num_labels), the inputs of a Classifier,
    so the same batches, loss and scoring serve both. Parameters: `idf` (V,), frozen, and
    `head.weight` (V, L), `head.bias` (L,).
    """

    def __init__(self, idf, num_labels):
        if num_labels < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {num_labels}")
        idf = np.asarray(idf, dtype=np.float32)
        self.idf = Parameter(idf, requires_grad=False)
        # Zeros, as logistic regression usually starts: the loss is convex, so no random
        # start is needed to break a symmetry, and the first logits are all equal.
        self.head = Linear(len(idf), num_labels, init_std=0.0)
        self.vocab_size, self.num_labels = len(idf), num_labels

    def forward(self, ids, lengths):
        xp = array_module(self.idf.data)
        counts = token_counts(xp.asarray(ids), xp.asarray(lengths), self.vocab_size)   # (B, V)
        features = Tensor(tfidf(counts, self.idf.data))              # (B, V) fixed: no gradient flows here
        return self.head(features)                                   # (B, L)


def encode_for_bow(texts, tokenizer, max_len):
    """Token ids of each text cut to max_len - 1 tokens, as a classifier reads them (less
    the `<|endoftext|>` every text would share). Returns (id lists, number cut)."""
    return encode_texts(texts, tokenizer, max_len - 1)
