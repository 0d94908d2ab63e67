"""Optimisers (SGD, AdamW), gradient clipping and the learning-rate schedule.

Updates work on the raw arrays of parameters (`p.data`), outside the graph. All state
is plain arrays and numbers, so `state_dict()` can be written to a checkpoint without
pickling, and a resumed run continues bit for bit. Which parameters decay is the
model's business (`model.param_groups`): this module knows nothing of modules.
"""
import math

import numpy as np

from . import backend
from .backend import array_module, to_device, to_numpy


class Optimizer:
    """Holds parameter groups (dicts of params + hyper-parameters) and per-parameter
    state. Takes a list of Parameters (one group) or a list of group dicts
    ({"params": [...], "lr": ..., ...}; missing hyper-parameters come from the
    keyword arguments, then `defaults`). Frozen parameters (requires_grad False) and
    parameters without a gradient are skipped by step()."""

    defaults = {}

    def __init__(self, params, **hyper):
        if hasattr(params, "named_parameters"):
            raise TypeError(f"{type(self).__name__} takes parameters, not a module: pass "
                            f"model.parameters(), or param_groups(model, weight_decay) from "
                            f"minift.model for the usual weight decay groups")
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
        """{'step': int, 'lr': [per group], 'param_steps': [per parameter],
        'arrays': {'<param index>.<name>': host array}}: arrays for a safetensors file,
        the rest plain numbers for JSON. Parameters are numbered in the order of the
        groups, as given at construction; param_steps[i] is how many updates parameter
        i has had (None before its first)."""
        arrays, param_steps = {}, []
        for i, p in enumerate(self.params()):
            state = self.state.get(id(p), {})
            param_steps.append(state.get("step"))
            for name, value in state.items():
                if name != "step":
                    arrays[f"{i}.{name}"] = to_numpy(value)
        return {"step": self.step_count, "lr": [g["lr"] for g in self.param_groups],
                "param_steps": param_steps, "arrays": arrays}

    def load_state_dict(self, state):
        """Restore what state_dict() gave. A state saved before parameters counted their
        own steps (no 'param_steps') gives every parameter with state the global step."""
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
        steps = state.get("param_steps")
        if steps is not None and len(steps) != len(params):
            raise ValueError(f"optimizer state counts steps for {len(steps)} parameters, but the "
                             f"optimizer holds {len(params)}")
        for i, p in enumerate(params):
            step = steps[i] if steps is not None else self.step_count
            if id(p) in self.state and step is not None:
                self.state[id(p)]["step"] = int(step)

    def to(self, device):
        """Move the state arrays along with parameters that were moved to `device`."""
        for s in self.state.values():
            for k in s:
                if k != "step":
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
    """Adam with decoupled weight decay (Loshchilov & Hutter), `adamw_step` for each
    parameter. t counts the updates of this parameter (state["step"]), not the
    optimizer's steps: a parameter whose first gradient comes late (one unfrozen mid-run,
    a LoRA matrix whose gradient is first None) gets the bias correction of a first
    step, not one that assumes moments averaged over steps it never had.
    Every parameter decays by its group's `weight_decay`; `model.param_groups` makes
    the usual groups (no decay on biases, LayerNorm weights and embeddings).
    """

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    def _update(self, p, grad, state, group):
        if "m" not in state:                                       # p's first update
            xp = array_module(p.data)
            state.update(m=xp.zeros_like(p.data), v=xp.zeros_like(p.data), step=0)
        state["step"] += 1
        step = backend.implementation("adamw_step", adamw_step, p.data)   # (minift.fast's works in place)
        p.data, state["m"], state["v"] = step(p.data, grad, state["m"], state["v"], state["step"],
                                              group["lr"], group["betas"], group["eps"], group["weight_decay"])


def adamw_step(p, grad, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """One AdamW update of parameter p (any shape) with gradient grad; m and v are the
    running averages of the gradient and of its square (p's shape, zeros before the
    first step), t the number of this update (1, 2, ...). Returns the new (p, m, v):

        m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t)          v_hat = v / (1 - b2^t)       (both start at 0: unbias them)
        p <- p - lr * weight_decay * p  -  lr * m_hat / (sqrt(v_hat) + eps)

    The decay uses p before this step's update, and it is not part of the gradient
    (that is what "decoupled" means: Adam's scaling never touches it)."""
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    p = p - lr * weight_decay * p - lr * m_hat / (array_module(p).sqrt(v_hat) + eps)
    return p, m, v


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so that their global L2 norm is at most `max_norm`:

        norm = sqrt(sum over params of sum(g**2));   g <- g * max_norm / (norm + 1e-6) if norm > max_norm

    Returns the norm before clipping as a 0-d float64 array on the gradients' device:
    reading it (`float(norm)`) waits for the device, so the training loop does that only
    when it logs. (Gradients are replaced, never modified in place: see tensor.py.)"""
    params = [p for p in params if p.grad is not None]
    if not params:
        return np.zeros((), dtype=np.float64)
    xp = array_module(params[0].grad)
    total = (params[0].grad.astype(np.float64) ** 2).sum()
    for p in params[1:]:
        total = total + (p.grad.astype(np.float64) ** 2).sum()
    total = xp.sqrt(total)
    if math.isfinite(max_norm):
        # The comparison stays on the device: scale is 1 when there is nothing to clip (x * 1 == x exactly).
        scale = xp.where(total > max_norm, max_norm / (total + 1e-6), 1.0)
        for p in params:
            p.grad = p.grad * scale.astype(p.grad.dtype)
    return total


class WarmupCosine:
    """Learning rate at step s (0-based): linear warmup to max_lr over `warmup_steps`
    (max_lr * (s + 1) / warmup_steps: the first step already gets max_lr / warmup_steps,
    not 0), then cosine decay to `min_lr` at `total_steps` (constant after)."""

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
