"""Optimisers against hand-computed updates; per-parameter step counts; clipping;
schedule; parameter groups."""
import math

import numpy as np
import pytest

from minift.errors import MiniftError
from minift.model import GPT, GPTConfig, param_groups
from minift.nn import Parameter
from minift.optim import SGD, AdamW, WarmupCosine, clip_grad_norm


def test_adamw_two_steps_by_hand():
    # lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01; p0 = [1, -2]
    # step 1, g = [0.5, -1]: m = [0.05, -0.1], v = [2.5e-4, 1e-3]; m^ = g, v^ = g^2, so the
    #   Adam direction is sign(g) (up to eps): p1 = 0.999 p0 - 0.1 sign(g) = [0.899, -1.898]
    # step 2, g = [0.1, 0.3]: m = [0.055, -0.06], v = [2.5975e-4, 1.089e-3];
    #   m^ = m / 0.19, v^ = v / 0.001999;  p2 = 0.999 p1 - 0.1 m^ / (sqrt(v^) + eps)
    p = Parameter(np.array([1.0, -2.0]))
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    p.grad = np.array([0.5, -1.0])
    opt.step()
    np.testing.assert_allclose(p.data, [0.899, -1.898], rtol=0, atol=2e-9)
    p.grad = np.array([0.1, 0.3])
    opt.step()
    m_hat = np.array([0.055, -0.06]) / 0.19
    v_hat = np.array([2.5975e-4, 1.089e-3]) / 0.001999
    expected = 0.999 * np.array([0.899000002, -1.898000001]) - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(p.data, expected, rtol=1e-12)
    np.testing.assert_allclose(p.data, [0.81779690638, -1.85331714243], rtol=1e-10)


def test_sgd_momentum_and_weight_decay_by_hand():
    p = Parameter(np.array([1.0]))
    opt = SGD([p], lr=0.5, momentum=0.9, weight_decay=0.1)
    p.grad = np.array([2.0])
    opt.step()                     # d = 2 + 0.1*1 = 2.1; v = 2.1; p = 1 - 0.5*2.1 = -0.05
    np.testing.assert_allclose(p.data, [-0.05])
    p.grad = np.array([1.0])
    opt.step()                     # d = 1 - 0.005 = 0.995; v = 0.9*2.1 + 0.995 = 2.885; p = -0.05 - 1.4425
    np.testing.assert_allclose(p.data, [-1.4925])


def test_frozen_and_gradless_parameters_are_skipped():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    b.requires_grad = False
    opt = AdamW([a, b], lr=0.1)
    b.grad = np.ones(2)            # even a stray gradient must not move a frozen parameter
    opt.step()
    np.testing.assert_array_equal(a.data, np.ones(2))   # no gradient: untouched
    np.testing.assert_array_equal(b.data, np.ones(2))


def test_default_groups_skip_decay_for_bias_layernorm_embedding():
    model = GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4))
    decay, rest = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == sorted([
        "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
        "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight"])
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    groups = AdamW(param_groups(model, 0.1)).param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(model.parameters())
    # each group in named_parameters() order (the order of the gradient-norm sum)
    order = [id(p) for p in model.parameters()]
    for g in groups:
        assert [id(p) for p in g["params"]] == [i for i in order if i in {id(q) for q in g["params"]}]


def test_untied_head_decays_and_tied_head_is_listed_once():
    config = dict(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4)
    untied = GPT(GPTConfig(**config, tie_weights=False))
    decay, _ = param_groups(untied, 0.1)
    assert any(p is untied.lm_head.weight for p in decay["params"])
    tied = GPT(GPTConfig(**config))
    decay, rest = param_groups(tied, 0.1)
    assert sum(p is tied.transformer.wte.weight for p in decay["params"] + rest["params"]) == 1
    assert not any(p is tied.transformer.wte.weight for p in decay["params"])


def test_trainable_only_groups():
    model = GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4))
    model.transformer.h[0].attn.requires_grad_(False)
    decay, rest = param_groups(model, 0.1, trainable_only=True)
    assert all(p.requires_grad for p in decay["params"] + rest["params"])
    assert len(decay["params"]) == 2 and decay["weight_decay"] == 0.1   # the MLP's two weights
    model.transformer.h[0].mlp.requires_grad_(False)
    (only,) = param_groups(model, 0.1, trainable_only=True)   # the empty decay group is dropped
    assert only["weight_decay"] == 0.0
    model.requires_grad_(False)
    with pytest.raises(MiniftError, match="no parameter is trainable"):
        param_groups(model, 0.1, trainable_only=True)


def test_optimizers_refuse_a_module():
    model = GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4))
    for optimizer in (AdamW, SGD):
        with pytest.raises(TypeError, match=r"model\.parameters\(\).*param_groups\(model"):
            optimizer(model)
    assert len(SGD(model.parameters()).param_groups) == 1


def test_adamw_counts_steps_per_parameter():
    """A parameter whose first gradient arrives at step 3 moves exactly as under a fresh
    AdamW's first step: bias correction 1 - b^1, not 1 - b^3 (with the optimizer's
    step count it would move (1 - 0.9^3) / 0.1 = 2.7 times too little, times sqrt of
    the v correction)."""
    a, late = Parameter(np.array([1.0, -2.0])), Parameter(np.array([0.5, 3.0]))
    opt = AdamW([a, late], lr=0.1, weight_decay=0.01)
    for _ in range(2):
        a.grad = np.array([0.3, -0.1])
        opt.step()
    a.grad, late.grad = np.array([0.3, -0.1]), np.array([0.2, -4.0])
    opt.step()
    fresh = Parameter(np.array([0.5, 3.0]))
    fresh_opt = AdamW([fresh], lr=0.1, weight_decay=0.01)
    fresh.grad = np.array([0.2, -4.0])
    fresh_opt.step()
    np.testing.assert_array_equal(late.data, fresh.data)
    assert opt.state_dict()["param_steps"] == [3, 1]


def test_optimizer_state_keeps_the_parameter_steps():
    a, b = Parameter(np.array([1.0, 2.0])), Parameter(np.array([3.0]))
    opt = AdamW([a, b], lr=0.1)
    for step in range(3):
        a.grad = np.array([0.1, -0.2])
        b.grad = np.array([0.5]) if step == 2 else None
        opt.step()
    state = opt.state_dict()
    assert state["param_steps"] == [3, 1] and state["step"] == 3
    assert all(isinstance(s, int) for s in state["param_steps"])   # plain numbers (JSON)
    a2, b2 = Parameter(a.data.copy()), Parameter(b.data.copy())
    opt2 = AdamW([a2, b2], lr=0.1)
    opt2.load_state_dict(state)
    for p, q in ((a, a2), (b, b2)):
        p.grad = q.grad = np.array([0.3] * p.size)
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(a.data, a2.data)
    np.testing.assert_array_equal(b.data, b2.data)


def test_old_optimizer_state_without_parameter_steps_resumes_on_the_global_count():
    """A checkpoint from before per-parameter counts: every parameter with moments takes
    the optimizer's step, which is what the update used then."""
    p = Parameter(np.array([1.0, -2.0]))
    opt = AdamW([p], lr=0.1)
    for _ in range(2):
        p.grad = np.array([0.5, -1.0])
        opt.step()
    state = opt.state_dict()
    old = {k: v for k, v in state.items() if k != "param_steps"}
    q = Parameter(p.data.copy())
    opt2 = AdamW([q], lr=0.1)
    opt2.load_state_dict(old)
    assert opt2.state_dict()["param_steps"] == [2]
    p.grad = q.grad = np.array([0.1, 0.3])
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(p.data, q.data)


def test_clip_grad_norm():
    a, b = Parameter(np.array([3.0])), Parameter(np.array([4.0]))
    a.grad, b.grad = np.array([3.0]), np.array([4.0])
    shared = a.grad
    assert clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([a.grad, b.grad]), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(shared, [3.0])        # replaced, not modified in place
    assert clip_grad_norm([a, b], 10.0) == pytest.approx(1.0, rel=1e-5)


def test_warmup_cosine():
    s = WarmupCosine(1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    assert all(s(i) >= s(i + 1) for i in range(10, 120))


def test_optimizer_state_round_trip():
    p = Parameter(np.array([1.0, 2.0]))
    opt = AdamW([p], lr=0.1)
    p.grad = np.array([0.1, -0.2])
    opt.step()
    state = opt.state_dict()
    q = Parameter(p.data.copy())
    opt2 = AdamW([q], lr=0.1)
    opt2.load_state_dict(state)
    p.grad = q.grad = np.array([0.3, 0.3])
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="shape"):
        AdamW([Parameter(np.ones(3))]).load_state_dict(state)


def test_the_schedule_keeps_each_groups_rate_multiplier():
    """The Trainer gives every group the schedule's rate times the group's lr_scale (one
    group here learns at a tenth of the rate); without a schedule, each group keeps the
    rate it has."""
    import io

    from minift.nn import Module
    from minift.trainer import Progress, Trainer

    class TwoWeights(Module):
        def __init__(self):
            self.a, self.b = Parameter(np.ones(2)), Parameter(np.ones(2))

    class OneBatch:
        def next_batch(self):
            return (np.zeros((1, 1), np.int64),)

        def state_dict(self):
            return {}

    def loss_fn(model, batch):
        return (model.a * model.a).sum() + (model.b * model.b).sum()      # gradient 2 w
    for schedule, rates in ((lambda step: 0.25, (0.25, 0.025)), (None, (1.0, 0.5))):
        model = TwoWeights()
        groups = [{"params": [model.a]}, {"params": [model.b], "lr_scale": 0.1}]
        if schedule is None:
            groups[1]["lr"] = 0.5
        opt = SGD(groups, lr=1.0)
        Trainer(model, opt, OneBatch(), loss_fn, steps=1, schedule=schedule, grad_clip=0,
                progress=Progress(io.StringIO())).run()
        assert (opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]) == pytest.approx(rates, rel=1e-15)
        np.testing.assert_allclose(model.a.data, 1 - 2 * rates[0])
        np.testing.assert_allclose(model.b.data, 1 - 2 * rates[1])
