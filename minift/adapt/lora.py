"""Which parameters train: freezing, and LoRA's low-rank adapters.

Freezing is just `requires_grad = False`. The engine records no graph for an op whose
inputs all have requires_grad False, so nothing below the lowest trainable layer is
ever differentiated: with `head`, backward() runs through the head alone; with `top-k`,
it stops at block n_layer - k. Frozen parameters never get a `.grad`.

    full      every parameter trains
    head      the backbone is frozen; only the new head trains (a "linear probe")
    top-k     the last k blocks, the final LayerNorm and the head train
    lora      the backbone is frozen; small low-rank adapters beside the attention
              projections (optionally the MLP) and the head train
    scratch   like full, from random weights (the model is built differently, not frozen)
"""
import numpy as np

from .. import functional as F
from ..nn import Linear, Module, Parameter

CLASSIFIER_STRATEGIES = ("full", "head", "top-k", "lora", "scratch")


class LoRALinear(Module):
    """A Linear layer with a trainable low-rank update beside its frozen weight (LoRA,
    Hu et al. 2021):

        y = x @ W + b  +  (x @ A) @ B * (alpha / r)

    W (in, out) and b are the pretrained layer's own Parameters, frozen. A (in, r) and
    B (r, out) are new, with r much smaller than in and out, so the update A @ B has
    r * (in + out) parameters instead of in * out. B starts at zero: before training
    the layer computes exactly what the pretrained one did. Dividing by r keeps the
    update's size comparable when r changes, so alpha need not be retuned.

    Parameter names extend the layer's: `c_attn.weight`, `c_attn.bias`,
    `c_attn.lora_A`, `c_attn.lora_B`.
    """

    def __init__(self, base, rank, alpha, rng):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight             # the pretrained Parameters themselves, frozen
        self.bias = base.bias
        for p in (self.weight, self.bias):
            if p is not None:
                p.requires_grad, p.grad = False, None
        dtype = base.weight.dtype
        # A like a Linear layer's init; B zero so that A @ B = 0 at the start.
        self.lora_A = Parameter(rng.normal(0.0, self.in_features ** -0.5,
                                           (self.in_features, rank)).astype(dtype))
        self.lora_B = Parameter(np.zeros((rank, self.out_features), dtype=dtype))
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)                         # (..., out), frozen
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)        # (..., r) -> (..., out)
        return y + update * self.scale

    def merged(self):
        """A plain Linear computing the same function (`merged_weight`), for inference
        without the extra matrix products (the bias is the same Parameter)."""
        W = merged_weight(self.weight.data, self.lora_A.data, self.lora_B.data, self.alpha, self.rank)
        return Linear.from_parameters(Parameter(W, requires_grad=self.weight.requires_grad), self.bias)


def merged_weight(weight, lora_A, lora_B, alpha, rank):
    """weight (in, out), lora_A (in, r), lora_B (r, out) arrays; alpha a number, rank r.
    Returns the merged weight (in, out), a new array: x @ W' = x @ W + (x @ A) @ B *
    (alpha / r) for every x, since (x @ A) @ B = x @ (A @ B)."""
    return weight + (lora_A @ lora_B) * (alpha / rank)


def _lora_sites(transformer, mlp):
    """(module, attribute name) of every Linear that gets an adapter."""
    for block in transformer.h:
        for name in ("c_attn", "c_proj"):
            yield block.attn, name
        if mlp:
            for name in ("c_fc", "c_proj"):
                yield block.mlp, name


def add_lora(model, rank=8, alpha=16, mlp=False, seed=0):
    """Freeze `model.transformer` and put a LoRALinear in place of each attention
    projection (c_attn, c_proj) of every block, and of the MLP's (c_fc, c_proj) with
    mlp=True. Returns the model; its adapters and any other part that was not
    frozen (the head) are what train."""
    model.transformer.requires_grad_(False)
    rng = np.random.default_rng([seed, 11])
    for parent, name in _lora_sites(model.transformer, mlp):
        layer = getattr(parent, name)
        if isinstance(layer, LoRALinear):
            raise ValueError("add_lora: the model already has LoRA adapters")
        setattr(parent, name, LoRALinear(layer, rank, alpha, rng))
    return model


def merge_lora(model):
    """Replace every LoRALinear in `model` by the equivalent plain Linear (in place).
    The state dict then has exactly the names of a model without adapters."""
    for _, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
    return model


def has_lora(model):
    return any(isinstance(m, LoRALinear) for m in model.modules())


def freeze_all_but_top(model, k):
    """Freeze the backbone except its last k blocks and the final LayerNorm."""
    n = len(model.transformer.h)
    if not 1 <= k <= n:
        raise ValueError(f"top-k: k must be between 1 and the number of blocks ({n}), got {k} "
                         f"(k = 0 is the 'head' strategy)")
    model.transformer.requires_grad_(False)
    for block in model.transformer.h[n - k:]:
        block.requires_grad_(True)
    model.transformer.ln_f.requires_grad_(True)
    return model


def apply_strategy(model, strategy, k=2, lora_rank=8, lora_alpha=16, lora_mlp=False, seed=0):
    """Set which parameters of a Classifier train for `strategy` (see the module
    docstring); returns the model. `full` and `scratch` leave everything trainable."""
    if strategy in ("full", "scratch"):
        model.requires_grad_(True)
    elif strategy == "head":
        model.transformer.requires_grad_(False)
    elif strategy == "top-k":
        freeze_all_but_top(model, k)
    elif strategy == "lora":
        add_lora(model, lora_rank, lora_alpha, mlp=lora_mlp, seed=seed)
    else:
        raise ValueError(f"apply_strategy: {strategy!r} is not a classifier strategy; choose one "
                         f"of {list(CLASSIFIER_STRATEGIES)}")
    return model


def parameter_counts(model):
    """(trainable, total) number of parameters (tied ones counted once)."""
    return model.num_parameters(trainable_only=True), model.num_parameters()
