"""The attention kernels on GPUs with less shared memory than an H100, at the tile
edges: attention_config must pick a tile that fits each device, and the kernels must
still give the reference's o, lse, dq, dk and dv.

The shared memory a block may use after opting in is 232,448 B on an H100, 166,912 B
on an A100, 101,376 B on sm_86/sm_89 cards (RTX 30xx/40xx, A10, L4) and 49,152 B
without opting in. On the CPU emulator (tests/test_kernels_emulated.py) the fake
device itself gets each limit, and refuses a launch that asks for more; on a real GPU
the wrappers are told the lower limits (higher ones are skipped), so the tiles chosen
for smaller cards run there too. Also here: a second GPU in one process, and a
sequence with 0 keys (which only the wrappers refuse).

Needs CuPy and a GPU, or the emulator; skipped otherwise. Tolerances as in
tests/test_kernels_gpu.py.
"""
import numpy as np
import pytest

from minift import cuda
from minift.backend import get_cupy
from minift.cuda import loader, wrappers

from kernel_references import assert_close, attention_reference, attention_reference_backward, qkv, randn

pytestmark = pytest.mark.gpu
try:
    cp = get_cupy()
except RuntimeError as e:
    pytest.skip(f"GPU kernel tests skipped: {e}", allow_module_level=True)

EMULATED = cp.__version__.endswith("cpu-emulator")
OPT_IN = "MaxSharedMemoryPerBlockOptin"

LIMITS = {"H100": 232_448, "A100": 166_912, "sm86": 101_376, "48KB": 49_152}
# The tiles attention_config must choose, (forward, backward), worked out from the bytes
# each kernel needs (kernels/attention_*.cu): None where no tile fits.
#   D = 4:   tile 64: forward 69,632, dkdv 104,960;  tile 32: forward 18,432, dkdv 27,904
#   D = 128: tile 64: forward 118,784, dkdv 170,496; tile 32: forward 55,296, dkdv 77,056
EXPECTED_TILES = {
    (232_448, 4): (64, 64), (232_448, 128): (64, 64),
    (166_912, 4): (64, 64), (166_912, 128): (64, 32),
    (101_376, 4): (64, 32), (101_376, 128): (32, 32),
    (49_152, 4): (32, 32), (49_152, 128): None,
}


@pytest.fixture(params=list(LIMITS.values()), ids=list(LIMITS))
def smem_limit(request, monkeypatch):
    """The current GPU's shared memory opt-in limit, as minift reads it, set to one of LIMITS."""
    limit = request.param
    monkeypatch.setattr(wrappers, "_device_attributes", {})   # read the limit again
    if EMULATED:
        monkeypatch.setattr(cp, "DEVICES", [dict(cp.H100, **{OPT_IN: limit})])
    else:
        real = cuda.max_shared_memory()
        if limit > real:
            pytest.skip(f"this GPU offers {real} B of shared memory per block, less than {limit}")
        wrappers._device_attributes[(cp.cuda.runtime.getDevice(), OPT_IN)] = limit
    assert cuda.max_shared_memory() == limit
    return limit


@pytest.fixture
def launches(monkeypatch):
    """(kernel name, BR, shared memory bytes) of every launch the wrappers make."""
    seen = []

    def spy(module, kernel, grid, block, args, defines=None, shared_mem=0):
        seen.append((kernel, defines["BR"], shared_mem))
        return loader.launch(module, kernel, grid, block, args, defines=defines, shared_mem=shared_mem)
    monkeypatch.setattr(wrappers, "launch", spy)
    return seen


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("T", [32, 33, 64, 65])
@pytest.mark.parametrize("D", [4, 128])
def test_attention_fits_the_device(smem_limit, launches, D, T, causal):
    """Key lengths 1, 2 and T (one sequence each) at T a tile multiple, one past it,
    and below one tile of 64."""
    rng = np.random.default_rng(T * 1000 + D)
    q, k, v = qkv(rng, 3, 2, T, D)
    do, lengths = randn(rng, 3, 2, T, D), np.array([1, 2, T])
    args = [cp.asarray(x) for x in (q, k, v)]
    expected = EXPECTED_TILES[(smem_limit, D)]
    if expected is None:
        with pytest.raises(RuntimeError, match=f"head size {D} needs .* this GPU offers {smem_limit}"):
            cuda.attention_forward(*args, lengths, causal=causal)
        assert not launches
        return
    o, lse = cuda.attention_forward(*args, lengths, causal=causal)
    grads = cuda.attention_backward(*args, o, lse, cp.asarray(do), lengths, causal=causal)

    tiles = {kernel: tile for kernel, tile, _ in launches}
    assert (tiles["attention_forward"], tiles["attention_backward_dkdv"], tiles["attention_backward_dq"]) \
        == (expected[0], expected[1], expected[1])
    assert all(smem <= smem_limit for _, _, smem in launches), launches
    o_ref, lse_ref, _ = attention_reference(q, k, v, lengths, causal)
    what = f"limit {smem_limit} D {D} T {T} causal={causal}"
    assert_close(o, o_ref, atol=1e-4, rtol=1e-3, what=f"o, {what}")
    assert_close(lse, lse_ref, atol=1e-4, rtol=1e-3, what=f"lse, {what}")
    for name, got, ref in zip(("dq", "dk", "dv"), grads, attention_reference_backward(q, k, v, do, lengths, causal)):
        assert_close(got, ref, atol=2e-4, rtol=2e-3, what=f"{name}, {what}")


def test_a_second_gpu_gets_its_own_shared_memory_opt_in(monkeypatch):
    """CuPy loads a kernel once per device, and the above-48 KB opt-in belongs to each
    copy: D = 128 needs 118,784 B in the forward kernel, on either GPU."""
    if EMULATED:
        monkeypatch.setattr(cp, "DEVICES", [dict(cp.H100), dict(cp.H100)])
    elif cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    monkeypatch.setattr(loader, "_smem_opted_in", {})
    rng = np.random.default_rng(3)
    q, k, v = qkv(rng, 1, 1, 33, 128)
    o_ref, lse_ref, _ = attention_reference(q, k, v)
    for device in (0, 1):
        with cp.cuda.Device(device):
            o, lse = cuda.attention_forward(*(cp.asarray(x) for x in (q, k, v)))
            assert_close(o, o_ref, atol=1e-4, rtol=1e-3, what=f"o on GPU {device}")
            assert_close(lse, lse_ref, atol=1e-4, rtol=1e-3, what=f"lse on GPU {device}")


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_a_sequence_of_no_keys_gives_zeros_not_nan(monkeypatch, causal):
    """The wrappers refuse lengths < 1 (wrappers._key_lengths); past that check, the
    kernels give a sequence of 0 keys o = 0, lse = -inf and zero gradients, and leave
    the other sequences of the batch as they were."""
    rng = np.random.default_rng(4)
    T, D = 33, 16
    q, k, v = qkv(rng, 2, 2, T, D)
    do = randn(rng, 2, 2, T, D)
    monkeypatch.setattr(wrappers, "_key_lengths", lambda cp, lengths, B, T: cp.asarray(lengths))   # unchecked
    args, lengths = [cp.asarray(x) for x in (q, k, v)], np.array([0, T], np.int32)
    o, lse = cuda.attention_forward(*args, lengths, causal=causal)
    grads = cuda.attention_backward(*args, o, lse, cp.asarray(do), lengths, causal=causal)
    o, lse, grads = cp.asnumpy(o), cp.asnumpy(lse), [cp.asnumpy(g) for g in grads]
    assert (o[0] == 0).all() and (lse[0] == -np.inf).all()
    assert all((g[0] == 0).all() for g in grads)
    o_ref, lse_ref, _ = attention_reference(q[1:], k[1:], v[1:], causal=causal)
    assert_close(o[1:], o_ref, atol=1e-4, rtol=1e-3, what="o of the other sequence")
    assert_close(lse[1:], lse_ref, atol=1e-4, rtol=1e-3, what="lse of the other sequence")
    for name, got, ref in zip(("dq", "dk", "dv"), grads,
                              attention_reference_backward(q[1:], k[1:], v[1:], do[1:], causal=causal)):
        assert_close(got[1:], ref, atol=2e-4, rtol=2e-3, what=f"{name} of the other sequence")
