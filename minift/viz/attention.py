"""Attention maps: for one text, how much each token attends to each other token, per
block and head.

A block's attention (model.py, SelfAttention) computes its probabilities inside the fused
op and keeps none of them, so they are computed again here from the block's own layers:

    h = ln_1(x);  q, k = the first two thirds of c_attn(h), split into heads
    P = softmax(q k^T / sqrt(D) + mask)          (H, T, T): row i sums to 1 over the keys j

with the causal mask in a GPT (no key after the query) and none in an encoder; then x
goes through the whole block, to give the next block its input.
"""
import math

import numpy as np

from ..backend import to_numpy
from ..tensor import no_grad


@no_grad()
def attention_maps(transformer, ids):
    """[(H, T, T) NumPy array per block]: the attention probabilities of every head of a
    backbone (model.Transformer, in eval mode) for one sequence of token ids."""
    ids = np.asarray(ids, dtype=np.int64)[None, :]                     # (1, T)
    T = ids.shape[1]
    x = transformer.wte(ids) + transformer.wpe(np.arange(T))          # (1, T, C), as Transformer.forward
    maps = []
    for block in transformer.h:
        attn = block.attn
        qkv = to_numpy(attn.c_attn(block.ln_1(x)).data)[0]             # (T, 3C)
        C = qkv.shape[1] // 3
        H, D = attn.n_head, C // attn.n_head
        q = qkv[:, :C].reshape(T, H, D).transpose(1, 0, 2)             # (H, T, D)
        k = qkv[:, C:2 * C].reshape(T, H, D).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(D)               # (H, T, T)
        if attn.causal:
            scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
        p = np.exp(scores - scores.max(axis=-1, keepdims=True))
        maps.append(p / p.sum(axis=-1, keepdims=True))
        x = block(x)
    return maps
