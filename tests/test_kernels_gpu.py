"""minift's CUDA kernels against NumPy float64 references (tests/kernel_references.py), and
the ways the rest of minift reaches them (backend.matmul, F.causal_attention,
F.padded_attention).

Needs CuPy and an NVIDIA GPU: without them every test here is skipped. Inputs are
random, sizes are odd on purpose (1, 7, 33, 129, 257: not multiples of any tile),
and both tile configurations of each kernel are exercised. MINIFT_KERNEL_TEST_SIZES=small
keeps only a few sizes: tests/test_kernels_emulated.py runs this file that way on a CPU
emulator of the GPU.

Each comparison is elementwise |got - ref| <= atol + rtol * |ref| with
    matmul:              atol = 1e-4 * sqrt(K), rtol = 1e-3   (float32 sums of K terms)
    attention forward:   atol = 1e-4,           rtol = 1e-3   (o and lse)
    attention backward:  atol = 2e-4,           rtol = 2e-3   (dq, dk, dv: one more level
                                                              of float32 sums than o)
"""
import os

import numpy as np
import pytest

import minift
import minift.functional as F
from minift import cuda
from minift.cuda import wrappers
from minift.backend import get_cupy

from kernel_references import (assert_close, attention_reference, attention_reference_backward,
                               matmul_reference, matmul_tol, qkv, randn)

pytestmark = pytest.mark.gpu
try:   # imports CuPy and counts the GPUs; says why not (no CuPy, broken CUDA, no device)
    cp = get_cupy()
except RuntimeError as e:
    pytest.skip(f"GPU kernel tests skipped: {e}", allow_module_level=True)

SMALL = os.environ.get("MINIFT_KERNEL_TEST_SIZES") == "small"


# ----------------------------------------------------------------------------- matmul

@pytest.fixture(params=["large", "small"])
def matmul_tiles(request, monkeypatch):
    """Force one tile configuration (the wrapper would pick by problem size)."""
    config = cuda.MATMUL_LARGE if request.param == "large" else cuda.MATMUL_SMALL
    monkeypatch.setattr(wrappers, "matmul_config", lambda *args: config)
    monkeypatch.delenv("MINIFT_MATMUL", raising=False)
    return config


MATMUL_SHAPES = [(1, 1, 1), (7, 33, 1), (33, 7, 129), (129, 257, 33), (257, 129, 257),
                 (1, 257, 7), (257, 1, 129), (128, 64, 96), (130, 68, 132)]
if SMALL:   # odd sizes in every position, and one shape for the float4 paths
    MATMUL_SHAPES = [(1, 1, 1), (7, 33, 129), (129, 7, 33), (33, 129, 7), (130, 68, 132)]


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("M,N,K", MATMUL_SHAPES)
def test_matmul_forms(matmul_tiles, M, N, K, ta, tb):
    rng = np.random.default_rng(M * 10007 + N * 101 + K)
    a = randn(rng, *((K, M) if ta else (M, K)))
    b = randn(rng, *((N, K) if tb else (K, N)))
    got = cuda.matmul(cp.asarray(a), cp.asarray(b), transpose_a=ta, transpose_b=tb)
    assert_close(got, matmul_reference(a, b, ta, tb), what=f"matmul {M}x{K}x{N} ta={ta} tb={tb}",
                 **matmul_tol(K))


@pytest.mark.parametrize("shape_a,shape_b,ta,tb", [
    ((3, 33, 17), (3, 17, 129), False, False),     # same batch
    ((1, 33, 17), (4, 17, 7), False, False),       # a broadcast over the batch
    ((5, 7, 33), (1, 7, 20), True, False),         # b broadcast, a transposed
    ((33, 17), (2, 129, 17), False, True),         # 2-D a, batched b transposed
    ((2, 64, 128), (128, 64), False, False),       # batched a, 2-D b
    ((2, 17, 33), (2, 9, 17), True, True),
])
def test_matmul_batched(matmul_tiles, shape_a, shape_b, ta, tb):
    rng = np.random.default_rng(7)
    a, b = randn(rng, *shape_a), randn(rng, *shape_b)
    got = cuda.matmul(cp.asarray(a), cp.asarray(b), transpose_a=ta, transpose_b=tb)
    K = shape_a[-2] if ta else shape_a[-1]
    assert_close(got, matmul_reference(a, b, ta, tb), what=f"batched {shape_a} @ {shape_b}",
                 **matmul_tol(K))


def test_matmul_accumulate_into_out(matmul_tiles):
    rng = np.random.default_rng(3)
    a, b, c0 = randn(rng, 33, 65), randn(rng, 65, 47), randn(rng, 33, 47)
    out = cp.asarray(c0)
    res = cuda.matmul(cp.asarray(a), cp.asarray(b), out=out, accumulate=True)
    assert res is out
    assert_close(out, c0 + matmul_reference(a, b, False, False), what="accumulate", **matmul_tol(65))
    cuda.matmul(cp.asarray(a), cp.asarray(b), out=out)   # overwrite
    assert_close(out, matmul_reference(a, b, False, False), what="overwrite", **matmul_tol(65))


def test_matmul_non_contiguous_inputs(matmul_tiles):
    """Transposed views, strided slices and misaligned starts all give the right answer."""
    rng = np.random.default_rng(11)
    base_a, base_b = randn(rng, 40, 33), randn(rng, 129, 40)
    a_view = cp.asarray(base_a).T                  # (33, 40), a transposed view
    b_view = cp.asarray(base_b)[::2]               # (65, 40), rows strided
    got = cuda.matmul(a_view, b_view.T)         # (33, 40) @ (40, 65)
    assert_close(got, base_a.T.astype(np.float64) @ base_b[::2].T.astype(np.float64),
                 what="views", **matmul_tol(40))

    flat = cp.asarray(randn(rng, 1 + 64 * 36))
    a_off = flat[1:].reshape(64, 36)               # contiguous, but 4 bytes past alignment
    b = randn(rng, 36, 68)
    got = cuda.matmul(a_off, cp.asarray(b))
    assert_close(got, cp.asnumpy(a_off).astype(np.float64) @ b.astype(np.float64),
                 what="misaligned start", **matmul_tol(36))

    batch = cp.asarray(randn(rng, 3, 20, 30)).swapaxes(1, 2)   # (3, 30, 20) view
    w = randn(rng, 20, 9)
    got = cuda.matmul(batch, cp.asarray(w))
    assert_close(got, cp.asnumpy(batch).astype(np.float64) @ w.astype(np.float64),
                 what="batched view", **matmul_tol(20))


def test_matmul_default_choice_and_cublas_switch(monkeypatch):
    rng = np.random.default_rng(5)
    a, b = randn(rng, 300, 70), randn(rng, 70, 500)
    ref = matmul_reference(a, b, False, False)
    monkeypatch.delenv("MINIFT_MATMUL", raising=False)
    assert cuda.use_kernels()
    assert_close(cuda.matmul(cp.asarray(a), cp.asarray(b)), ref, what="default tiles",
                 **matmul_tol(70))
    monkeypatch.setenv("MINIFT_MATMUL", "cublas")
    assert not cuda.use_kernels()
    assert_close(cuda.matmul(cp.asarray(a), cp.asarray(b)), ref, what="cublas",
                 **matmul_tol(70))


def test_matmul_errors():
    a = cp.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        cuda.matmul(a, cp.zeros((5, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="float32"):
        cuda.matmul(a.astype(np.float64), cp.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="batch"):
        cuda.matmul(cp.zeros((2, 3, 4), np.float32), cp.zeros((3, 4, 2), np.float32))


# ----------------------------------------------------------------------------- attention

@pytest.fixture(params=[64, 32])
def attention_tile(request, monkeypatch):
    """Force one tile size (the wrapper picks the largest that fits the GPU); a test
    then calls require_tile, since tile 64 does not fit every GPU."""
    monkeypatch.setattr(wrappers, "ATTENTION_TILES", (request.param,))
    return request.param


def require_tile(tile, D, *kernels):
    """Skip unless `kernels` ("forward", "dkdv", "dq") fit this GPU's shared memory at
    `tile`: at tile 64 the backward needs 170,496 B for D 65..128, over an A100's
    166,912, and 104,960 B for D <= 64, over the 101,376 of sm_86/sm_89 cards."""
    sizes = cuda.attention_smem_bytes(D, tile)
    need, limit = max(sizes[k] for k in kernels), cuda.max_shared_memory()
    if need > limit:
        pytest.skip(f"tile {tile}, D {D}: {'/'.join(kernels)} needs {need} B of shared memory, "
                    f"this GPU offers {limit} B per block")


ATTENTION_SHAPES = [  # (B, H, T, D)
    (1, 1, 1, 16), (2, 3, 17, 32), (1, 2, 64, 64), (2, 1, 100, 80), (1, 1, 257, 128),
    (1, 2, 257, 64), (1, 1, 17, 128), (2, 1, 33, 17), (1, 1, 100, 3),
]
if SMALL:   # T = 1, 17, 100; D = 16, 64, 80 and 17 (not a multiple of 4)
    ATTENTION_SHAPES = [(1, 1, 1, 16), (2, 3, 17, 64), (2, 1, 100, 80), (1, 1, 100, 16),
                        (1, 2, 17, 17)]


@pytest.mark.parametrize("B,H,T,D", ATTENTION_SHAPES)
def test_attention_forward(attention_tile, B, H, T, D):
    require_tile(attention_tile, D, "forward")
    rng = np.random.default_rng(T * 1000 + D)
    q, k, v = qkv(rng, B, H, T, D)
    o, lse = cuda.attention_forward(cp.asarray(q), cp.asarray(k), cp.asarray(v))
    o_ref, lse_ref, _ = attention_reference(q, k, v)
    assert_close(o, o_ref, atol=1e-4, rtol=1e-3, what=f"o {B, H, T, D}")
    assert_close(lse, lse_ref, atol=1e-4, rtol=1e-3, what=f"lse {B, H, T, D}")


@pytest.mark.parametrize("B,H,T,D", ATTENTION_SHAPES)
def test_attention_backward(attention_tile, B, H, T, D):
    require_tile(attention_tile, D, "dkdv", "dq")
    rng = np.random.default_rng(T * 1000 + D + 1)
    q, k, v = qkv(rng, B, H, T, D)
    do = randn(rng, B, H, T, D)
    o_ref, lse_ref, _ = attention_reference(q, k, v)
    # The backward kernels take the forward's saved o and lse; feed them float32 copies
    # of the exact values, so that only the backward is under test here.
    args = [cp.asarray(x.astype(np.float32)) for x in (q, k, v, o_ref, lse_ref, do)]
    grads = cuda.attention_backward(*args)
    for name, got, ref in zip(("dq", "dk", "dv"), grads, attention_reference_backward(q, k, v, do)):
        assert_close(got, ref, atol=2e-4, rtol=2e-3, what=f"{name} {B, H, T, D}")


def test_attention_forward_backward_chain_is_deterministic():
    """Forward then backward through the kernels' own o and lse; twice, same bits."""
    rng = np.random.default_rng(0)
    q, k, v = qkv(rng, 2, 2, 129, 64)
    do = randn(rng, 2, 2, 129, 64)
    qc, kc, vc, doc = (cp.asarray(x) for x in (q, k, v, do))
    o, lse = cuda.attention_forward(qc, kc, vc)
    first = cuda.attention_backward(qc, kc, vc, o, lse, doc)
    second = cuda.attention_backward(qc, kc, vc, o, lse, doc)
    for name, g1, g2, ref in zip(("dq", "dk", "dv"), first, second,
                                 attention_reference_backward(q, k, v, do)):
        assert_close(g1, ref, atol=2e-4, rtol=2e-3, what=name)
        assert cp.array_equal(g1, g2), f"{name} differs between two identical runs"


def test_attention_non_contiguous_inputs():
    """q, k, v as the model makes them: (B, T, H, D) memory viewed as (B, H, T, D)."""
    rng = np.random.default_rng(1)
    B, T, H, D = 2, 45, 3, 32
    raw = [randn(rng, B, T, H, D) for _ in range(4)]
    q, k, v, do = (cp.asarray(x).transpose(0, 2, 1, 3) for x in raw)
    assert not q.flags.c_contiguous
    o, lse = cuda.attention_forward(q, k, v)
    qn, kn, vn, don = (x.transpose(0, 2, 1, 3) for x in raw)
    o_ref, lse_ref, _ = attention_reference(qn, kn, vn)
    assert_close(o, o_ref, atol=1e-4, rtol=1e-3, what="o")
    assert_close(lse, lse_ref, atol=1e-4, rtol=1e-3, what="lse")
    grads = cuda.attention_backward(q, k, v, o, lse, do)
    for name, got, ref in zip(("dq", "dk", "dv"), grads, attention_reference_backward(qn, kn, vn, don)):
        assert_close(got, ref, atol=2e-4, rtol=2e-3, what=name)


PADDED_SHAPES = [(3, 2, 17, 32), (2, 1, 100, 80), (2, 2, 129, 17)]   # (B, H, T, D)
if SMALL:
    PADDED_SHAPES = [(3, 2, 17, 16), (2, 1, 100, 17)]


def _lengths(rng, B, T):
    """Real keys per sequence: the whole T, a single key, and random ones between."""
    return np.array([T, 1] + list(rng.integers(1, T + 1, B - 2)))[:B].astype(np.int64)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("B,H,T,D", PADDED_SHAPES)
def test_attention_with_padding(attention_tile, B, H, T, D, causal):
    """Per-sequence key lengths, with or without the causal mask: forward (o, lse) and
    backward against the float64 reference; padding keys get dk = dv = 0 exactly."""
    require_tile(attention_tile, D, "forward", "dkdv", "dq")
    rng = np.random.default_rng(T * 1000 + D + 2)
    q, k, v = qkv(rng, B, H, T, D)
    do, lengths = randn(rng, B, H, T, D), _lengths(rng, B, T)
    o, lse = cuda.attention_forward(cp.asarray(q), cp.asarray(k), cp.asarray(v), lengths, causal=causal)
    o_ref, lse_ref, _ = attention_reference(q, k, v, lengths, causal)
    assert_close(o, o_ref, atol=1e-4, rtol=1e-3, what=f"o {B, H, T, D} causal={causal}")
    assert_close(lse, lse_ref, atol=1e-4, rtol=1e-3, what=f"lse {B, H, T, D} causal={causal}")
    args = [cp.asarray(x.astype(np.float32)) for x in (q, k, v, o_ref, lse_ref, do)]
    grads = cuda.attention_backward(*args, lengths=cp.asarray(lengths), causal=causal)
    refs = attention_reference_backward(q, k, v, do, lengths, causal)
    for name, got, ref in zip(("dq", "dk", "dv"), grads, refs):
        assert_close(got, ref, atol=2e-4, rtol=2e-3, what=f"{name} {B, H, T, D} causal={causal}")
    padding = np.arange(T)[None, :] >= lengths[:, None]
    for name, got in zip(("dk", "dv"), grads[1:]):
        assert not cp.asnumpy(got).transpose(0, 2, 1, 3)[padding].any(), f"{name} of padding keys"


def test_attention_errors():
    x = cp.zeros((1, 1, 4, 129), dtype=np.float32)
    with pytest.raises(ValueError, match="129"):
        cuda.attention_forward(x, x, x)
    y = cp.zeros((1, 1, 4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(1, 1, 5, 8\)"):
        cuda.attention_forward(y, cp.zeros((1, 1, 5, 8), dtype=np.float32), y)
    with pytest.raises(TypeError, match="float32"):
        cuda.attention_forward(y.astype(np.float64), y, y)
    for bad in ([0], [5], [1, 2]):
        with pytest.raises(ValueError, match="lengths"):
            cuda.attention_forward(y, y, y, np.array(bad), causal=False)


# ----------------------------------------------------------------------------- through the rest of minift

@pytest.mark.parametrize("shape_a,shape_b", [
    ((2, 3, 17, 33), (33, 9)),        # activations @ a weight: one GEMM over all rows
    ((2, 1, 7, 33), (3, 33, 20)),     # batch axes broadcast
    ((5, 33), (2, 33, 7)),            # a matrix against a stack
])
def test_backend_matmul_runs_the_kernel(shape_a, shape_b, monkeypatch):
    """backend.matmul on float32 GPU arrays of any batch shape goes to the SGEMM kernel
    that minift.cuda registered."""
    launches = []
    monkeypatch.setattr(wrappers, "launch", lambda *args, **kw: launches.append(args[1]) or
                        cuda.launch(*args, **kw))
    monkeypatch.delenv("MINIFT_MATMUL", raising=False)
    rng = np.random.default_rng(2)
    a, b = randn(rng, *shape_a), randn(rng, *shape_b)
    got = minift.backend.matmul(cp.asarray(a), cp.asarray(b))
    assert_close(got, a.astype(np.float64) @ b.astype(np.float64), what=f"{shape_a} @ {shape_b}",
                 **matmul_tol(33))
    assert launches and all(name.startswith("sgemm_") for name in launches)


def fused_causal(*arrays):
    """The Function backend picks for causal attention on these arrays."""
    return minift.backend.implementation("causal_attention", F.CausalAttention, *arrays)


def test_causal_attention_takes_the_fused_kernels_when_they_apply():
    q, k, v = (cp.zeros((1, 2, 5, 8), dtype=np.float32) for _ in range(3))
    assert fused_causal(q, k, v) is cuda.FusedCausalAttention
    assert fused_causal(q.astype(np.float64), k, v) is F.CausalAttention
    longer = cp.zeros((1, 2, 7, 8), dtype=np.float32)          # decoding with a KV cache
    assert fused_causal(q, longer, longer) is F.CausalAttention
    big = cp.zeros((1, 1, 5, cuda.MAX_HEAD_DIM + 1), dtype=np.float32)
    assert fused_causal(big, big, big) is F.CausalAttention
    assert fused_causal(*(cp.asnumpy(x) for x in (q, k, v))) is F.CausalAttention


def test_functional_padded_attention_on_the_gpu():
    """F.padded_attention on GPU tensors runs the fused kernels without the causal mask:
    output and gradients against the float64 reference."""
    rng = np.random.default_rng(5)
    q, k, v = qkv(rng, 3, 2, 33, 16)
    g, lengths = randn(rng, 3, 2, 33, 16), np.array([33, 1, 20])
    assert minift.backend.implementation("padded_attention", F.PaddedAttention,
                                         *(cp.asarray(x) for x in (q, k, v))) is cuda.FusedPaddedAttention
    tq, tk, tv = (minift.tensor(cp.asarray(x), requires_grad=True) for x in (q, k, v))
    out = F.padded_attention(tq, tk, tv, cp.asarray(lengths))
    assert isinstance(out._ctx, cuda.FusedPaddedAttention)
    assert_close(out.data, attention_reference(q, k, v, lengths, causal=False)[0], atol=1e-4, rtol=1e-3,
                 what="out")
    out.backward(cp.asarray(g))
    refs = attention_reference_backward(q, k, v, g, lengths, causal=False)
    for name, t, ref in zip(("dq", "dk", "dv"), (tq, tk, tv), refs):
        assert_close(t.grad, ref, atol=2e-4, rtol=2e-3, what=name)


def test_functional_causal_attention_on_the_gpu():
    """F.causal_attention on GPU tensors: the output and the gradients of q, k, v that
    the fused Function gives, against the float64 reference."""
    rng = np.random.default_rng(4)
    q, k, v = qkv(rng, 2, 2, 33, 16)
    g = randn(rng, 2, 2, 33, 16)
    tq, tk, tv = (minift.tensor(cp.asarray(x), requires_grad=True) for x in (q, k, v))
    out = F.causal_attention(tq, tk, tv)
    assert isinstance(out._ctx, cuda.FusedCausalAttention)
    assert_close(out.data, attention_reference(q, k, v)[0], atol=1e-4, rtol=1e-3, what="out")
    out.backward(cp.asarray(g))
    for name, t, ref in zip(("dq", "dk", "dv"), (tq, tk, tv), attention_reference_backward(q, k, v, g)):
        assert_close(t.grad, ref, atol=2e-4, rtol=2e-3, what=name)
