"""The whole framework on an NVIDIA GPU against the CPU: every fused op, the GPT's loss
and gradients, a short pretraining run, and a GPU-trained run loading on the CPU.

Needs CuPy and a GPU (pytest -m gpu); skipped cleanly otherwise. Tolerances are for
float32 (the GPU kernels sum in a different order than NumPy/BLAS)."""
import numpy as np
import pytest

import minift
import minift.functional as F
from minift.backend import get_cupy

pytestmark = pytest.mark.gpu
try:
    cp = get_cupy()
except RuntimeError as e:
    pytest.skip(f"GPU tests skipped: {e}", allow_module_level=True)
if cp.__version__.endswith("cpu-emulator"):   # tests/cuda_emulator: kernels only
    pytest.skip("the CPU emulator runs minift's kernels, not CuPy's NumPy API", allow_module_level=True)

from minift.model import GPT, GPTConfig, param_groups  # noqa: E402
from minift.optim import AdamW  # noqa: E402


def both(x, requires_grad=True):
    """The same float32 data as a CPU tensor and a GPU tensor."""
    x = np.asarray(x, dtype=np.float32)
    return (minift.tensor(x, requires_grad=requires_grad),
            minift.tensor(x, requires_grad=requires_grad).to("cuda"))


def close(gpu, cpu, atol=1e-4, rtol=1e-3):
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, atol=atol, rtol=rtol)


def assert_same_gradients(cpu, gpu, loss_cpu, loss_gpu):
    """Backward through both copies of a model; every parameter's gradient agrees to
    1e-3 of its largest element."""
    loss_cpu.backward()
    loss_gpu.backward()
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
        scale = np.abs(pc.grad).max() + 1e-12
        err = np.abs(cp.asnumpy(pg.grad) - pc.grad).max() / scale
        assert err < 1e-3, f"{name}: relative gradient error {err:.2e}"


OPS = {
    "softmax": lambda x: F.softmax(x, axis=-1),
    "log_softmax": lambda x: F.log_softmax(x, axis=0),
    "gelu": F.gelu,
    "layer_norm": lambda x: F.layer_norm(x, None, None),
    "tanh_exp_sum": lambda x: (x.tanh() * x.exp()).sum(axis=1, keepdims=True),
    "getitem_repeat": lambda x: x[np.array([0, 0, 3])],
    "max": lambda x: x.max(axis=-1),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_on_gpu_matches_cpu(name):
    rng = np.random.default_rng(0)
    xc, xg = both(rng.standard_normal((5, 37)))
    yc, yg = OPS[name](xc), OPS[name](xg)
    assert yg.device == "cuda"
    close(yg.data, yc.data)
    g = rng.standard_normal(yc.shape).astype(np.float32)
    yc.backward(g)
    yg.backward(cp.asarray(g))
    close(xg.grad, xc.grad)


def test_cross_entropy_embedding_linear_attention_on_gpu():
    rng = np.random.default_rng(1)
    logits_c, logits_g = both(rng.standard_normal((6, 11)) * 3)
    t = rng.integers(0, 11, 6)
    t[2] = -100
    lc, lg = F.cross_entropy(logits_c, t), F.cross_entropy(logits_g, cp.asarray(t))
    close(lg.data, lc.data)
    lc.backward()
    lg.backward()
    close(logits_g.grad, logits_c.grad)

    wc, wg = both(rng.standard_normal((9, 4)))
    ids = rng.integers(0, 9, (3, 5))
    ec, eg = F.embedding(ids, wc), F.embedding(cp.asarray(ids), wg)
    (ec * ec).sum().backward()
    (eg * eg).sum().backward()
    close(wg.grad, wc.grad)

    q, k, v = (both(rng.standard_normal((2, 3, 70, 32))) for _ in range(3))
    oc = F.causal_attention(q[0], k[0], v[0])
    og = F.causal_attention(q[1], k[1], v[1])
    close(og.data, oc.data)
    go = rng.standard_normal(oc.shape).astype(np.float32)
    oc.backward(go)
    og.backward(cp.asarray(go))
    for a in (q, k, v):
        close(a[1].grad, a[0].grad, atol=2e-4, rtol=2e-3)


def test_dropout_draws_its_mask_on_the_gpu():
    """The mask is made on the device from a seed drawn from the host generator: the
    same generator state gives the same mask, about 1 - p of the elements survive,
    scaled by 1 / (1 - p), and only they get a gradient."""
    x = minift.tensor(np.ones((64, 256), dtype=np.float32), requires_grad=True).to("cuda")
    y = F.dropout(x, 0.25, True, np.random.default_rng(0))
    again = F.dropout(x, 0.25, True, np.random.default_rng(0))
    assert y.device == "cuda"
    out = cp.asnumpy(y.data)
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(cp.asnumpy(again.data), out)
    y.backward(cp.ones_like(y.data))
    np.testing.assert_array_equal(cp.asnumpy(x.grad) != 0, kept)


def test_gpt_loss_and_gradients_match_cpu():
    cfg = GPTConfig(vocab_size=97, block_size=40, n_layer=2, n_head=2, n_embd=64)
    cpu, gpu = GPT(cfg, seed=0), GPT(cfg, seed=0).to("cuda")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 97, (3, 37)), rng.integers(0, 97, (3, 37))
    _, lc = cpu(x, y)
    _, lg = gpu(cp.asarray(x), cp.asarray(y))
    np.testing.assert_allclose(float(lg.item()), float(lc.item()), rtol=1e-5)
    assert_same_gradients(cpu, gpu, lc, lg)


def test_encoder_masked_loss_and_gradients_match_cpu():
    """An encoder with padding on the GPU (fused kernels, causal off, key lengths) and
    on the CPU: the same masked-token loss and gradients."""
    from minift.model import Encoder
    cfg = GPTConfig(vocab_size=97, block_size=40, n_layer=2, n_head=2, n_embd=64, causal=False)
    cpu, gpu = Encoder(cfg, seed=0), Encoder(cfg, seed=0).to("cuda")
    rng = np.random.default_rng(1)
    x, lengths = rng.integers(0, 97, (3, 37)), np.array([37, 5, 20])
    y = np.where(rng.random((3, 37)) < 0.3, x, -100)
    y[np.arange(37)[None, :] >= lengths[:, None]] = -100
    _, lc = cpu(x, y, lengths)
    _, lg = gpu(cp.asarray(x), cp.asarray(y), cp.asarray(lengths))
    np.testing.assert_allclose(float(lg.item()), float(lc.item()), rtol=1e-5)
    assert_same_gradients(cpu, gpu, lc, lg)


def test_short_training_run_follows_the_cpu_curve():
    cfg = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 64, (20, 8, 33))
    curves = []
    for device in ("cpu", "cuda"):
        model = GPT(cfg, seed=0).to(device)
        opt = AdamW(param_groups(model, 0.01), lr=3e-3)
        xp = cp if device == "cuda" else np
        losses = []
        for batch in data:
            batch = xp.asarray(batch)
            _, loss = model(batch[:, :-1], batch[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.item()))
        curves.append(np.array(losses))
    assert curves[0][-1] < curves[0][0] - 0.3
    np.testing.assert_allclose(curves[1], curves[0], atol=0.02)


def test_pretraining_on_the_gpu_follows_the_cpu_and_loads_on_the_cpu(tmp_path):
    """minift.pretrain, 4 steps of the tiny preset, on the GPU and on the CPU: the same
    first loss (the same weights and batch, before any update), the same curve after
    (as in the test above), and the GPU run's directory loads on the CPU (load_gpt)
    with the logits the GPU model gives."""
    from minift.data import feedback
    from minift.pretrain import PretrainConfig, load_gpt, pretrain
    from quiet import Silent, quiet
    corpus = tmp_path / "c.txt"
    corpus.write_text(feedback.corpus_text(n_bytes=30_000), encoding="utf-8")
    runs = {device: pretrain(tmp_path / device, PretrainConfig(preset="tiny", corpus_files=[str(corpus)], steps=4,
                                                              batch_size=4, eval_every=2),
                             device=device, log=quiet, progress=Silent())
            for device in ("cpu", "cuda")}
    losses = {device: np.array([r["loss"] for r in history["train"]]) for device, (_, _, history) in runs.items()}
    assert len(losses["cuda"]) == 4 and np.isfinite(losses["cuda"]).all()
    np.testing.assert_allclose(losses["cuda"][0], losses["cpu"][0], rtol=1e-5)
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], atol=0.02)

    model, tok, _ = runs["cuda"]
    cpu_model, _, _ = load_gpt(tmp_path / "cuda", device="cpu")
    ids = np.array([tok.encode("The battery is")])
    close(model.eval()(cp.asarray(ids))[0].data, cpu_model(ids)[0].data)
