"""Fused ops with hand-written backward: the plain specification that minift.fast and
the CUDA kernels reproduce.

    basic      softmax, log_softmax, cross_entropy, linear, layer_norm, gelu, dropout, embedding
    attention  causal self-attention, bidirectional attention with padding, a block's
               multi-head attention from its q/k/v projection (self_attention)

`import minift.functional as F` gives every op of both: F.cross_entropy, F.causal_attention, ...
"""
from .basic import (
    GELU, CrossEntropy, Dropout, Embedding, LayerNorm, Linear, LogSoftmax, Softmax, cross_entropy, dropout,
    embedding, gelu, layer_norm, linear, log_softmax, softmax,
)
from .attention import (
    CausalAttention, PaddedAttention, causal_attention, merge_heads, padded_attention, self_attention,
    split_heads,
)

__all__ = [
    "Softmax", "LogSoftmax", "CrossEntropy", "Linear", "LayerNorm", "GELU", "Dropout", "Embedding",
    "CausalAttention", "PaddedAttention", "softmax", "log_softmax", "cross_entropy", "linear",
    "layer_norm", "gelu", "dropout", "embedding", "causal_attention", "padded_attention", "self_attention",
    "split_heads", "merge_heads",
]
