"""The whole GPT against PyTorch in float64: same weights, same tokens -> the same logits,
loss and gradient of every parameter (to ~1e-10). Skipped without PyTorch (a reference
tool: `pip install torch`); minift itself never imports it."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

from minift.model import GPT, GPTConfig  # noqa: E402


def torch_gpt(state, config, idx, targets):
    """GPT-2's forward written with PyTorch ops on minift's weights (GPT-2 layout: Linear
    weights (in, out)); returns (logits, loss) as torch tensors."""
    w = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in state.items()}
    C, H = config.n_embd, config.n_head
    B, T = idx.shape
    x = w["transformer.wte.weight"][torch.tensor(idx)] + w["transformer.wpe.weight"][:T]
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        h = TF.layer_norm(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        q, k, v = (h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        y = TF.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = TF.layer_norm(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        h = TF.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = TF.layer_norm(x, (C,), w["transformer.ln_f.weight"], w["transformer.ln_f.bias"])
    logits = x @ w["transformer.wte.weight"].T
    loss = TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.tensor(targets).reshape(-1))
    return logits, loss, w


@pytest.mark.parametrize("T", [7, 70])          # one attention tile, and several (tiles of 64)
def test_the_whole_gpt_matches_pytorch_in_float64(T):
    config = GPTConfig(vocab_size=37, block_size=80, n_layer=2, n_head=2, n_embd=8)
    model = GPT(config, seed=1, dtype=np.float64)
    rng = np.random.default_rng(0)
    for p in model.parameters():                  # weights large enough that every term matters
        p.data = rng.normal(0.0, 0.3, p.shape)
    idx, targets = rng.integers(0, 37, (3, T)), rng.integers(0, 37, (3, T))
    logits, loss = model(idx, targets)
    loss.backward()
    t_logits, t_loss, w = torch_gpt({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                                    config, idx, targets)
    t_loss.backward()
    np.testing.assert_allclose(logits.data, t_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(t_loss.item(), rel=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, w[name].grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


def test_padded_attention_matches_pytorch_in_float64():
    """F.padded_attention against scaled_dot_product_attention with a boolean attn_mask
    (True = may attend) hiding each row's padding keys: outputs and the gradients of q,
    k and v agree within 1e-9, queries fewer than keys too."""
    import minift
    import minift.functional as F
    rng = np.random.default_rng(5)
    for tq, tk, lengths in ((9, 9, [9, 4, 1]), (5, 11, [11, 6, 2])):
        q, k, v = rng.normal(size=(3, 2, tq, 4)), rng.normal(size=(3, 2, tk, 4)), rng.normal(size=(3, 2, tk, 4))
        g = rng.normal(size=(3, 2, tq, 4))
        mq, mk, mv = (minift.tensor(a, requires_grad=True) for a in (q, k, v))
        out = F.padded_attention(mq, mk, mv, np.array(lengths))
        (out * minift.tensor(g)).sum().backward()
        tq_, tk_, tv_ = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
        sees = torch.arange(tk)[None, :] < torch.tensor(lengths)[:, None]            # (B, Tk)
        t_out = TF.scaled_dot_product_attention(tq_, tk_, tv_, attn_mask=sees[:, None, None, :])
        (t_out * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-9, atol=1e-9)
        for mine, theirs in ((mq, tq_), (mk, tk_), (mv, tv_)):
            np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-9, atol=1e-9)
