"""GPT: the GPT-2 architecture at toy size, and the encoder made of the same blocks.

    idx (B, T) -> token embedding + position embedding -> n_layer x Block -> LayerNorm
               -> LM head -> logits (B, T, vocab_size)

    Block:  x = x + attn(ln_1(x))        self-attention: causal (GPT), or bidirectional (encoder)
            x = x + mlp(ln_2(x))         Linear(C, 4C) -> GELU -> Linear(4C, C)

A GPT (`causal=True`) predicts each next token from the ones before it. An encoder
(`causal=False`, BERT-style) lets every position see the whole sequence, padding
excepted, and is pretrained to fill in masked tokens (`Encoder`); the two differ only in
the attention mask, so they share every module below.

Parameter names are GPT-2's (`transformer.h.0.attn.c_attn.weight`, ...) and Linear
weights are stored (in_features, out_features) as in GPT-2's checkpoints.
"""
import json
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import functional as F
from .backend import array_module
from .errors import MiniftError
from .nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, Parameter, reseed_dropout
from .tensor import Tensor


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int          # the longest sequence the model sees (position table size)
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True        # biases in Linear and LayerNorm, as GPT-2
    tie_weights: bool = True  # LM head shares the token embedding matrix
    causal: bool = True      # True: a GPT (each position sees the past); False: an encoder

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.causal, bool):
            raise ValueError(f"GPTConfig.causal must be true or false, got {self.causal!r}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"GPTConfig: unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**d)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)


class SelfAttention(Module):
    """Multi-head self-attention: causal in a GPT, bidirectional with a key-padding mask
    (`lengths`, the real tokens of each right-padded row) in an encoder."""

    def __init__(self, config, rng, dtype):
        C = config.n_embd
        self.n_head, self.causal = config.n_head, config.causal
        self.c_attn = Linear(C, 3 * C, bias=config.bias, init_std=0.02, rng=rng, dtype=dtype)
        # Residual projections start smaller (GPT-2): the residual stream sums 2 per layer.
        self.c_proj = Linear(C, C, bias=config.bias, init_std=0.02 / math.sqrt(2 * config.n_layer),
                             rng=rng, dtype=dtype)
        self.resid_dropout = Dropout(config.dropout)

    def forward(self, x, cache=None, lengths=None):
        qkv = self.c_attn(x)                                       # (B, T, 3C): q, k, v side by side
        if cache is None:
            # Right padding follows every real token: a causal query never sees it.
            y = F.self_attention(qkv, self.n_head, causal=self.causal, lengths=lengths)   # (B, T, C)
        else:                                                      # decoding: prepend the past keys/values
            q, k, v = F.split_heads(qkv, self.n_head)             # (B, H, T, D)
            k, v = cache.extend(k, v)                              # (B, H, T_past + T, D)
            y = F.merge_heads(F.causal_attention(q, k, v))        # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(Module):
    def __init__(self, config, rng, dtype):
        C = config.n_embd
        self.c_fc = Linear(C, 4 * C, bias=config.bias, init_std=0.02, rng=rng, dtype=dtype)
        self.c_proj = Linear(4 * C, C, bias=config.bias, init_std=0.02 / math.sqrt(2 * config.n_layer),
                             rng=rng, dtype=dtype)
        self.dropout = Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(Module):
    def __init__(self, config, rng, dtype):
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias, dtype=dtype)
        self.attn = SelfAttention(config, rng, dtype)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias, dtype=dtype)
        self.mlp = MLP(config, rng, dtype)

    def forward(self, x, cache=None, lengths=None):
        x = x + self.attn(self.ln_1(x), cache, lengths)
        return x + self.mlp(self.ln_2(x))


class Transformer(Module):
    """The backbone: embeddings, blocks and the final LayerNorm (no head). Fine-tuning
    keeps this part and puts a new head on its output."""

    def __init__(self, config, rng, dtype):
        self.wte = Embedding(config.vocab_size, config.n_embd, init_std=0.02, rng=rng, dtype=dtype)
        self.wpe = Embedding(config.block_size, config.n_embd, init_std=0.02, rng=rng, dtype=dtype)
        self.drop = Dropout(config.dropout)
        self.h = ModuleList(Block(config, rng, dtype) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias, dtype=dtype)
        self.block_size = config.block_size

    def forward(self, idx, cache=None, lengths=None):
        """idx (B, T) integer token ids -> final hidden states (B, T, C). lengths (B,): the
        real tokens of each right-padded row, which an encoder's attention needs (a GPT's
        causal attention never sees padding anyway); None when no row is padded."""
        idx = idx.data if isinstance(idx, Tensor) else idx
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.block_size:
            raise ValueError(f"sequence of length {start + T} is longer than the model's block_size "
                             f"({self.block_size})")
        positions = array_module(idx).arange(start, start + T)
        x = self.drop(self.wte(idx) + self.wpe(positions))       # (B, T, C) + (T, C)
        for i, block in enumerate(self.h):
            x = block(x, cache.layer(i) if cache is not None else None, lengths)
        if cache is not None:
            cache.length += T
        return self.ln_f(x)


class LMHead(Module):
    """logits = x @ weight^T, with weight stored (vocab_size, n_embd) as in GPT-2 —
    the shape of the token embedding it is usually tied to."""

    def __init__(self, weight):
        self.weight = weight

    def forward(self, x):
        return x @ self.weight.T


class GPT(Module):
    """The pretraining model: backbone + LM head.

    model(idx, targets=None) -> (logits (B, T, V), loss or None)
    """

    def __init__(self, config, seed=0, dtype=np.float32):
        self.config = config
        rng = np.random.default_rng(seed)
        self.transformer = Transformer(config, rng, dtype)
        if config.tie_weights:
            head_weight = self.transformer.wte.weight
        else:
            head_weight = Parameter(rng.normal(0.0, 0.02, (config.vocab_size, config.n_embd)).astype(dtype))
        self.lm_head = LMHead(head_weight)
        reseed_dropout(self, seed, step=0)       # a generator per dropout layer, from this model's seed

    def forward(self, idx, targets=None, cache=None):
        x = self.transformer(idx, cache)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits, targets)
        return logits, loss


IGNORE = -100        # target of a position that is not scored (cross_entropy's ignore_index)


class Encoder(GPT):
    """The masked-language model (BERT-style): a GPT's backbone and tied LM head, with
    bidirectional attention (config.causal False). Pretraining replaces some tokens of
    the input (data.masked_lm) and the model predicts the originals from both sides.

    model(idx (B, T), targets=None, lengths=None) -> (logits, loss or None)
        targets (B, T): the original id at each scored position, IGNORE elsewhere; then
            only the scored positions go through the LM head: logits (N, V) for the N
            scored positions (row-major order) and their mean cross-entropy
        no targets: logits (B, T, V) of every position
        lengths (B,): real tokens of each right-padded row (padding is never attended to)
    """

    def __init__(self, config, seed=0, dtype=np.float32):
        if config.causal:
            raise ValueError("Encoder needs a GPTConfig with causal=False")
        super().__init__(config, seed, dtype)

    def forward(self, idx, targets=None, lengths=None):
        x = self.transformer(idx, lengths=lengths)                # (B, T, C)
        if targets is None:
            return self.lm_head(x), None
        xp = array_module(targets)
        rows, cols = xp.nonzero(targets != IGNORE)                # the N scored positions
        logits = self.lm_head(x[rows, cols])                      # (N, V)
        return logits, F.cross_entropy(logits, targets[rows, cols])


def language_model(config, seed=0, dtype=np.float32):
    """The pretraining model a configuration describes: a GPT, or an Encoder when
    config.causal is False."""
    return (GPT if config.causal else Encoder)(config, seed=seed, dtype=dtype)


# ----------------------------------------------------------------------------- weight decay

EMBEDDING_TABLES = ("wte", "wpe")   # token and position tables: lookups, never decayed


def parameter_count(config):
    """How many numbers a GPT (or Encoder) of `config` holds, from the config alone: a
    plan is checked against memory before anything is allocated."""
    C, b = config.n_embd, int(config.bias)
    block = 2 * (C + b * C) + (3 * C * C + b * 3 * C) + (C * C + b * C) + (4 * C * C + b * 4 * C) + (4 * C * C + b * C)
    head = 0 if config.tie_weights else config.vocab_size * C
    return (config.vocab_size + config.block_size) * C + config.n_layer * block + (C + b * C) + head


def training_bytes(config, batch_size, T, trainable=None):
    """A lower bound of the memory one training step of a GPT of `config` holds, in
    bytes: float32 weights, and for the `trainable` numbers (default: all) their
    gradients and AdamW's two moments; the activations backward needs, at least 8
    numbers a channel per token in each block; and the logits, twice (with their
    softmax). Real steps hold more: this catches a plan that cannot fit at all."""
    weights = parameter_count(config)
    trainable = weights if trainable is None else trainable
    tokens = batch_size * T
    activations = tokens * (config.n_layer * 8 * config.n_embd + 2 * config.vocab_size)
    return 4 * (weights + 3 * trainable + activations)


def param_groups(module, weight_decay, trainable_only=False):
    """Optimizer groups [decay, no decay] for the parameters of `module`:

        [{"params": [...], "weight_decay": weight_decay}, {"params": [...], "weight_decay": 0.0}]

    A parameter decays iff it is a matrix (ndim >= 2) and not an embedding table
    (`wte`, `wpe`; an LM head tied to `wte` is the same Parameter, listed once). Decay
    pulls weights toward 0, which suits the matrices that mix features (Linear weights,
    LoRA's A and B, a classifier head) but not scales, offsets and lookups (LayerNorm
    weights, biases, embeddings). Each group keeps named_parameters() order, which fixes
    the order of sums over parameters (gradient clipping), so runs repeat bit for bit.

    trainable_only=True leaves out the parameters that do not require grad (frozen for
    fine-tuning) and drops a group left empty; MiniftError when nothing trains at all.
    """
    decay, rest = [], []
    for name, p in module.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        owner = name.split(".")[-2] if "." in name else ""
        (decay if p.ndim >= 2 and owner not in EMBEDDING_TABLES else rest).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if trainable_only:
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise MiniftError("no parameter is trainable: nothing to fine-tune")
    return groups


class KVCache:
    """Keys and values of the positions decoded so far, one pair per layer, so that each
    new token attends to the past without recomputing it. Holds plain arrays: used
    only under no_grad."""

    def __init__(self, n_layer):
        self.keys = [None] * n_layer
        self.values = [None] * n_layer
        self.length = 0

    def layer(self, i):
        return _LayerCache(self, i)


class _LayerCache:
    def __init__(self, cache, i):
        self.cache, self.i = cache, i

    def extend(self, k, v):
        """Append new keys/values (B, H, T, D) and return all of them so far."""
        c, i = self.cache, self.i
        xp = array_module(k.data)
        if c.keys[i] is not None:
            c.keys[i] = xp.concatenate([c.keys[i], k.data], axis=2)
            c.values[i] = xp.concatenate([c.values[i], v.data], axis=2)
        else:
            c.keys[i], c.values[i] = k.data, v.data
        return Tensor(c.keys[i]), Tensor(c.values[i])          # plain leaves: decoding needs no graph


PRESETS = {
    # the reference benchmark configuration is "small" with batch 16
    "tiny": dict(block_size=64, n_layer=2, n_head=2, n_embd=64),
    "small": dict(block_size=128, n_layer=4, n_head=4, n_embd=128),
}
