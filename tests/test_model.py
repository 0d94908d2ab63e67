"""The GPT: names, gradients of every parameter, causality, overfitting, state round trips."""
import numpy as np
import pytest

import minift
from minift.model import GPT, GPTConfig, KVCache
from minift.nn import Linear, Module, ModuleList, Parameter

TINY = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)


def tiny_gpt(seed=0, dtype=np.float64, **overrides):
    cfg = GPTConfig(**{**TINY.to_dict(), **overrides})
    return GPT(cfg, seed=seed, dtype=dtype)


def test_parameter_names_are_gpt2s():
    names = list(tiny_gpt().state_dict())
    expected = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(2):
        expected += [f"transformer.h.{i}.{n}" for n in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
            "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
            "mlp.c_proj.weight", "mlp.c_proj.bias")]
    expected += ["transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight"]
    assert names == expected
    sd = tiny_gpt().state_dict()
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (8, 24)      # (in, out) as GPT-2
    assert sd["lm_head.weight"].shape == (13, 8)


def test_tied_and_untied_heads():
    tied = tiny_gpt()
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert "lm_head.weight" not in dict(tied.named_parameters())     # listed once
    untied = tiny_gpt(tie_weights=False)
    assert untied.num_parameters() == tied.num_parameters() + 13 * 8


def test_gpt2_initialisation():
    m = GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=64), seed=0)
    sd = m.state_dict()
    assert abs(sd["transformer.h.0.mlp.c_fc.weight"].std() - 0.02) < 0.002
    assert abs(sd["transformer.h.0.mlp.c_proj.weight"].std() - 0.02 / np.sqrt(8)) < 0.001
    assert np.all(sd["transformer.h.0.attn.c_attn.bias"] == 0) and np.all(sd["transformer.ln_f.weight"] == 1)


def test_whole_gpt_gradcheck_float64_every_parameter():
    model = tiny_gpt(tie_weights=False)
    # GPT-2's init (std 0.02) makes many gradients tiny; larger weights make the check bite.
    rng = np.random.default_rng(1)
    for p in model.parameters():
        p.data = rng.normal(0.0, 0.3, p.shape)
    idx = rng.integers(0, 13, (2, 6))
    targets = rng.integers(0, 13, (2, 6))
    assert minift.gradcheck(lambda *ps: model(idx, targets)[1], model.parameters())


def test_causality():
    model = tiny_gpt()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 13, (1, 8))
    base, _ = model(idx)
    for t in range(7):
        changed = idx.copy()
        changed[0, t + 1:] = (changed[0, t + 1:] + 5) % 13
        logits, _ = model(changed)
        np.testing.assert_array_equal(logits.data[0, :t + 1], base.data[0, :t + 1])
        assert not np.allclose(logits.data[0, t + 1:], base.data[0, t + 1:])


def test_a_batch_can_be_overfit():
    from minift.optim import AdamW
    model = tiny_gpt(dtype=np.float32)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 13, (4, 8)), rng.integers(0, 13, (4, 8))
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(300):
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.05


def test_state_dict_round_trip_gives_identical_logits():
    a, b = tiny_gpt(seed=0), tiny_gpt(seed=1)
    idx = np.arange(8).reshape(1, 8) % 13
    assert not np.array_equal(a(idx)[0].data, b(idx)[0].data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(idx)[0].data, b(idx)[0].data)


def test_load_state_dict_lists_every_problem():
    model = tiny_gpt()
    sd = dict(model.state_dict())
    del sd["transformer.ln_f.bias"]
    sd["transformer.extra.weight"] = np.zeros(3)
    sd["transformer.wpe.weight"] = np.zeros((4, 8))
    with pytest.raises(KeyError) as err:
        model.load_state_dict(sd)
    msg = str(err.value)
    assert "missing keys: transformer.ln_f.bias" in msg
    assert "unexpected keys: transformer.extra.weight" in msg
    assert "transformer.wpe.weight: checkpoint (4, 8) vs model (8, 8)" in msg
    sd["transformer.wpe.weight"] = model.state_dict()["transformer.wpe.weight"]
    report = model.load_state_dict(sd, strict=False)
    assert report == {"missing": ["transformer.ln_f.bias"], "unexpected": ["transformer.extra.weight"]}


def test_sequence_longer_than_block_is_a_clear_error():
    with pytest.raises(ValueError, match="block_size"):
        tiny_gpt()(np.zeros((1, 9), dtype=np.int64))


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=3, n_embd=8)
    with pytest.raises(ValueError, match="unknown fields"):
        GPTConfig.from_dict({**TINY.to_dict(), "n_heads": 2})
    assert GPTConfig.from_dict(TINY.to_dict()) == TINY


def test_kv_cache_gives_the_same_logits_position_by_position():
    model = tiny_gpt()
    idx = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    full, _ = model(idx)
    cache = KVCache(model.config.n_layer)
    with minift.no_grad():
        first, _ = model(idx[:, :3], cache=cache)
        steps = [model(idx[:, t:t + 1], cache=cache)[0].data[0, 0] for t in range(3, 8)]
    np.testing.assert_allclose(first.data[0], full.data[0, :3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.stack(steps), full.data[0, 3:], rtol=1e-10, atol=1e-12)


def test_modules_discovery_freeze_and_modes():
    class Net(Module):
        def __init__(self):
            self.layers = ModuleList([Linear(2, 3, rng=np.random.default_rng(0)), Linear(3, 1, bias=False)])
            self.scale = Parameter(np.ones(1, dtype=np.float32))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x * self.scale

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "scale"]
    assert net.num_parameters() == 6 + 3 + 3 + 1
    net.layers[0].requires_grad_(False)
    assert net.num_parameters(trainable_only=True) == 4
    net(minift.tensor(np.ones((1, 2), dtype=np.float32))).sum().backward()
    assert net.layers[0].weight.grad is None and net.layers[1].weight.grad is not None
    net.zero_grad()
    assert net.layers[1].weight.grad is None
    net.eval()
    assert not net.layers[1].training
    net.train()
    assert net.layers[0].training
    with pytest.raises(IndexError):
        net.layers[2]


def test_data_parallel_training_refuses_dropout():
    from minift.optim import SGD
    from minift.trainer import Trainer
    model = tiny_gpt(dropout=0.1)
    with pytest.raises(ValueError, match="without dropout"):
        Trainer(model, SGD(model.parameters(), lr=0.1), None, None, steps=1, data_parallel=True)


def test_each_dropout_layer_draws_masks_of_its_own():
    """Two dropout layers never share a generator: in a hand-written loop (no Trainer to
    reseed them) same-shaped layers draw different masks, and a GPT built twice from
    one seed draws the same masks again."""
    from minift.nn import Dropout
    x = minift.tensor(np.ones((4, 16)))
    first, second = Dropout(0.5), Dropout(0.5)
    assert not np.array_equal(first(x).data, second(x).data)

    def draws(model):
        return [m.rng.random(8) for m in model.modules() if isinstance(m, Dropout)]
    once, again = draws(tiny_gpt(dropout=0.5)), draws(tiny_gpt(dropout=0.5))
    assert len(once) == 1 + 2 * TINY.n_layer and len({d.tobytes() for d in once}) == len(once)
    assert all(np.array_equal(a, b) for a, b in zip(once, again))


def test_loading_different_values_into_tied_weights_is_refused():
    """A tied model has one matrix for the token embedding and the LM head: a state
    that gives the two names different arrays (an untied model's) is refused, naming
    both, instead of silently keeping whichever came last."""
    model = tiny_gpt()
    state = {name: array.copy() for name, array in model.state_dict().items()}
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    with pytest.raises(KeyError, match="tied parameters given different values: transformer.wte.weight and "
                                       "lm_head.weight"):
        model.load_state_dict(state)
    state["lm_head.weight"] = state["transformer.wte.weight"].copy()
    model.load_state_dict(state)          # the same values under both names: loaded
    untied = tiny_gpt(tie_weights=False)
    untied.load_state_dict({**state, "lm_head.weight": state["lm_head.weight"] + 1.0})   # two parameters: fine
