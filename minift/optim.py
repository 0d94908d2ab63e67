"""Optimisers (SGD, AdamW), gradient clipping and the learning-rate schedule.

Updates work on the raw arrays of parameters (`p.data`), outside the graph. All state
is plain arrays and numbers, so `state_dict()` can be written to a checkpoint without
pickling, and a resumed run continues bit for bit.
"""
import math

import numpy as np

from .backend import array_module, to_device, to_numpy
from .nn import Embedding, LayerNorm, Module, Parameter


def default_param_groups(model, weight_decay):
    """Two groups: Linear weights decay; biases, LayerNorm weights and embedding tables
    (including an LM head tied to the embedding) do not. Decay pulls weights toward 0,
    which suits the matrices that mix features but not scales, offsets and lookups."""
    no_decay = set()
    for m in model.modules():
        if isinstance(m, (LayerNorm, Embedding)):
            no_decay.update(id(p) for p in vars(m).values() if isinstance(p, Parameter))
    decay, rest = [], []
    for name, p in model.named_parameters():
        (rest if id(p) in no_decay or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


class Optimizer:
    """Holds parameter groups (dicts of params + hyper-parameters) and per-parameter
    state. Frozen parameters (requires_grad False) and parameters without a gradient
    are skipped by step()."""

    defaults = {}

    def __init__(self, params, **hyper):
        if isinstance(params, Module):
            params = params.parameters()
        params = list(params)
        if params and isinstance(params[0], dict):
            groups = params
        else:
            groups = [{"params": params}]
        self.param_groups = []
        for g in groups:
            group = dict(self.defaults, **hyper)
            group.update(g)
            group["params"] = list(group["params"])
            self.param_groups.append(group)
        if not any(g["params"] for g in self.param_groups):
            raise ValueError("optimizer got an empty parameter list")
        self.state = {}      # id(param) -> dict of arrays
        self.step_count = 0

    def params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self):
        for p in self.params():
            p.grad = None

    def step(self):
        self.step_count += 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad and p.grad is not None:
                    self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    # -- checkpointing ------------------------------------------------------------
    def state_dict(self):
        """{'step': int, 'lr': [per group], 'arrays': {'<param index>.<name>': host array}}.
        Parameters are numbered in the order of the groups, as given at construction."""
        arrays = {}
        for i, p in enumerate(self.params()):
            for name, value in self.state.get(id(p), {}).items():
                arrays[f"{i}.{name}"] = to_numpy(value)
        return {"step": self.step_count, "lr": [g["lr"] for g in self.param_groups], "arrays": arrays}

    def load_state_dict(self, state):
        params = self.params()
        self.step_count = int(state["step"])
        for g, lr in zip(self.param_groups, state["lr"]):
            g["lr"] = lr
        self.state = {}
        for key, value in state["arrays"].items():
            index, name = key.split(".", 1)
            index = int(index)
            if index >= len(params):
                raise ValueError(f"optimizer state has an entry for parameter {index}, but the optimizer "
                                 f"holds only {len(params)} parameters")
            p = params[index]
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"optimizer state {key} has shape {tuple(value.shape)}, parameter has "
                                 f"{tuple(p.shape)}")
            self.state.setdefault(id(p), {})[name] = to_device(np.asarray(value), p.device).astype(p.dtype)

    def to(self, device):
        """Move the state arrays along with parameters that were moved to `device`."""
        for s in self.state.values():
            for k in s:
                s[k] = to_device(s[k], device)
        return self


class SGD(Optimizer):
    """p <- p - lr * v,   v <- momentum * v + (g + weight_decay * p)."""

    defaults = dict(lr=0.01, momentum=0.0, weight_decay=0.0)

    def _update(self, p, grad, state, group):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        if group["momentum"]:
            if "momentum" not in state:
                state["momentum"] = grad.copy()
            else:
                state["momentum"] *= group["momentum"]
                state["momentum"] += grad
            grad = state["momentum"]
        p.data -= p.dtype.type(group["lr"]) * grad


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter):

        m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
        p <- p - lr * wd * p  -  lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    Given a Module, it uses `default_param_groups` (no decay on biases, LayerNorm and
    embeddings); given a list of parameters, every one decays by `weight_decay`.
    """

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    def __init__(self, params, **hyper):
        if isinstance(params, Module):
            params = default_param_groups(params, hyper.get("weight_decay", self.defaults["weight_decay"]))
        super().__init__(params, **hyper)

    def _update(self, p, grad, state, group):
        xp = array_module(p.data)
        b1, b2 = group["betas"]
        if "m" not in state:
            state["m"] = xp.zeros_like(p.data)
            state["v"] = xp.zeros_like(p.data)
        m, v = state["m"], state["v"]
        t = self.step_count
        # in-place moment updates: one pass over each array, no temporaries kept
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * (grad * grad)
        lr = group["lr"]
        if group["weight_decay"]:
            p.data *= p.dtype.type(1 - lr * group["weight_decay"])
        step_size = lr / (1 - b1 ** t)
        denom = xp.sqrt(v * p.dtype.type(1 / (1 - b2 ** t)))
        denom += group["eps"]
        p.data -= p.dtype.type(step_size) * (m / denom)


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so that their global L2 norm is at most `max_norm`;
    return the norm before clipping. (Gradients are replaced, never modified in place:
    see tensor.py.)"""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    total = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in params))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            p.grad = p.grad * p.grad.dtype.type(scale)
    return total


class WarmupCosine:
    """Learning rate at step s (0-based): linear warmup from 0 to max_lr over
    `warmup_steps`, then cosine decay to `min_lr` at `total_steps` (constant after)."""

    def __init__(self, max_lr, warmup_steps, total_steps, min_lr=None):
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"WarmupCosine: need total_steps >= 1 and warmup_steps >= 0, got "
                             f"{total_steps} and {warmup_steps}")
        self.max_lr, self.warmup_steps, self.total_steps = max_lr, warmup_steps, total_steps
        self.min_lr = 0.1 * max_lr if min_lr is None else min_lr

    def __call__(self, step):
        if step < self.warmup_steps:
            return self.max_lr * (step + 1) / self.warmup_steps
        if step >= self.total_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.max_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
