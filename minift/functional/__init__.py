"""Fused ops with hand-written backward passes: the spec the CUDA kernels reproduce.

    basic      softmax, log_softmax, cross_entropy, linear, layer_norm, gelu, dropout, embedding
    attention  causal self-attention, tile by tile; bidirectional attention with padding;
               a block's attention read straight from its q/k/v projection (self_attention)

`import minift.functional as F` gives every op of both: F.cross_entropy, F.causal_attention, ...
"""
from .basic import (
    GELU, CrossEntropy, Dropout, Embedding, LayerNorm, Linear, LogSoftmax, Softmax, cross_entropy, dropout,
    embedding, gelu, layer_norm, linear, log_softmax, softmax,
)
from .attention import (
    CausalAttention, PaddedAttention, QKVAttention, causal_attention, merge_heads, padded_attention,
    self_attention, split_heads,
)

__all__ = [
    "Softmax", "LogSoftmax", "CrossEntropy", "Linear", "LayerNorm", "GELU", "Dropout", "Embedding",
    "CausalAttention", "PaddedAttention", "QKVAttention", "softmax", "log_softmax", "cross_entropy", "linear",
    "layer_norm", "gelu", "dropout", "embedding", "causal_attention", "padded_attention", "self_attention",
    "split_heads", "merge_heads",
]
