"""The GPU wrappers of the kernels: `matmul`, `attention_forward`, `attention_backward`.

Each takes CuPy arrays, checks them, makes them contiguous (a raw kernel ignores
strides), chooses tile sizes, grid and block, launches through `loader.launch` and
returns new CuPy arrays. The tile sizes below are compiled into the kernels as
`#define`s; the comments of each .cu file explain what they mean there.
"""
import math
import os

import numpy as np

from ..backend import get_cupy
from .loader import launch

# Tile sizes. matmul: a BM x BN tile of C per block, BK-deep slices of K, TM x TN
# outputs per thread ((BM/TM) * (BN/TN) threads). The large tile reuses each loaded
# number most; the small one makes more blocks, for matrices too small to give
# every multiprocessor of the GPU a large tile.
MATMUL_LARGE = {"BM": 128, "BN": 128, "BK": 8, "TM": 8, "TN": 8}
MATMUL_SMALL = {"BM": 64, "BN": 64, "BK": 16, "TM": 4, "TN": 4}
# attention: BR queries per block, BC keys per tile, 4 x 4 scores per thread; the
# head size D is compiled in (HEAD_DIM), so each D gets its own module.
ATTENTION_TILES = (64, 32)   # tried in this order; the first whose shared memory fits
MAX_HEAD_DIM = 128

# What each file is compiled with when nothing else is asked (tests compile these).
DEFAULT_DEFINES = {
    "matmul": MATMUL_LARGE,
    "attention_forward": {"HEAD_DIM": 64, "BR": 64, "BC": 64},
    "attention_backward": {"HEAD_DIM": 64, "BR": 64, "BC": 64},
}


# ----------------------------------------------------------------------------- helpers

_device_attributes = {}   # (device id, attribute name) -> value


def device_attribute(name):
    """An attribute of the current GPU, `name` as in CUDA's cudaDevAttr<name>
    (MultiProcessorCount, MaxSharedMemoryPerBlockOptin), read once per device with
    cudaDeviceGetAttribute. Raises when CuPy does not know the attribute: no guess
    stands in for it (a 48 KB guess for the shared memory would refuse D = 128)."""
    cp = get_cupy()
    device = cp.cuda.runtime.getDevice()
    value = _device_attributes.get((device, name))
    if value is None:
        attribute = getattr(cp.cuda.runtime, f"cudaDevAttr{name}", None)
        if attribute is None:
            raise RuntimeError(f"CuPy {cp.__version__} has no cupy.cuda.runtime.cudaDevAttr{name}: "
                               f"cannot read the GPU's {name}")
        value = _device_attributes[(device, name)] = int(cp.cuda.runtime.deviceGetAttribute(attribute, device))
    return value


def max_shared_memory():
    """Bytes of shared memory one block of the current GPU may use after opting in
    (232,448 on an H100, 166,912 on an A100, 101,376 on sm_86/sm_89 cards)."""
    return device_attribute("MaxSharedMemoryPerBlockOptin")


def _require_float32(cp, x, name):
    if not isinstance(x, cp.ndarray):
        raise TypeError(f"{name} must be a CuPy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {x.dtype} (shape {x.shape})")


def _contiguous_aligned(cp, x):
    """x as a C-contiguous array whose data starts on a 16-byte boundary (float4 loads)."""
    x = cp.ascontiguousarray(x)
    if x.data.ptr % 16:
        x = x.copy()   # a fresh allocation is aligned
    return x


def use_kernels():
    """Whether matmul() runs minift's own SGEMM kernel (True), or cuBLAS through
    cupy.matmul (False: environment variable MINIFT_MATMUL=cublas, read at each call,
    for comparing the two)."""
    return os.environ.get("MINIFT_MATMUL", "minift").strip().lower() != "cublas"


# ----------------------------------------------------------------------------- matmul

def matmul_config(M, N, batch, sm_count):
    """Tile sizes for an (M, N) output repeated `batch` times on a GPU with `sm_count`
    multiprocessors: the large tile when it still gives every multiprocessor a block."""
    big_tiles = math.ceil(M / MATMUL_LARGE["BM"]) * math.ceil(N / MATMUL_LARGE["BN"]) * batch
    return MATMUL_LARGE if big_tiles >= sm_count else MATMUL_SMALL


def _operand(cp, x, transposed):
    """(array, transposed flag) the kernel can read. A transposed view of a contiguous
    array (x.T, or x.swapaxes(-1, -2)) is read in place by flipping the flag; any other
    non-contiguous array is copied."""
    if x.flags.c_contiguous:
        return x, transposed
    xt = x.swapaxes(-1, -2)
    if xt.flags.c_contiguous:
        return xt, not transposed
    return cp.ascontiguousarray(x), transposed


def matmul(a, b, transpose_a=False, transpose_b=False, *, out=None, accumulate=False, tiles=None):
    """op(a) @ op(b) for float32 CuPy arrays, with op(x) = x.T when transpose_x.

    a is (M, K) -- or (K, M) with transpose_a -- and b is (K, N) -- or (N, K) with
    transpose_b. Either may also be a batch (n, ., .): the batch sizes must be equal,
    or one of them 1 (or a 2-D matrix), which is then used for every batch element.
    Returns a new (M, N) or (n, M, N) array, or writes into `out` (C-contiguous
    float32 of that shape); accumulate=True adds to `out` instead (gradient sums).
    With MINIFT_MATMUL=cublas the same is computed by cupy.matmul (cuBLAS).
    `tiles` (a dict like MATMUL_LARGE) overrides the tile sizes, for experiments.
    """
    cp = get_cupy()
    _require_float32(cp, a, "matmul: a")
    _require_float32(cp, b, "matmul: b")
    if a.ndim not in (2, 3) or b.ndim not in (2, 3):
        raise ValueError(f"matmul: expected 2-D or 3-D arrays, got a {a.shape} and b {b.shape}")
    M, K = a.shape[-2:][::-1] if transpose_a else a.shape[-2:]
    Kb, N = b.shape[-2:][::-1] if transpose_b else b.shape[-2:]
    ops = f"{'a.T' if transpose_a else 'a'} @ {'b.T' if transpose_b else 'b'}"
    if K != Kb:
        raise ValueError(f"matmul: {ops} needs matching inner sizes; got a {a.shape}, "
                         f"b {b.shape} (K = {K} vs {Kb})")
    batch_a = a.shape[0] if a.ndim == 3 else 1
    batch_b = b.shape[0] if b.ndim == 3 else 1
    if batch_a != batch_b and 1 not in (batch_a, batch_b):
        raise ValueError(f"matmul: batch sizes must be equal or 1; got a {a.shape}, b {b.shape}")
    batch = max(batch_a, batch_b)
    out_shape = (batch, M, N) if 3 in (a.ndim, b.ndim) else (M, N)
    if out is not None:
        _require_float32(cp, out, "matmul: out")
        if out.shape != out_shape or not out.flags.c_contiguous:
            raise ValueError(f"matmul: out must be C-contiguous with shape {out_shape}; "
                             f"got {out.shape}")

    if not use_kernels():   # the cuBLAS reference path
        r = cp.matmul(a.swapaxes(-1, -2) if transpose_a else a,
                      b.swapaxes(-1, -2) if transpose_b else b)
        if out is None:
            return r
        if accumulate:
            out += r
        else:
            out[...] = r
        return out

    if out is None:
        out = (cp.zeros if accumulate else cp.empty)(out_shape, dtype=np.float32)
    if out.size == 0:
        return out
    if K == 0:   # an empty sum
        if not accumulate:
            out.fill(0)
        return out

    a, transpose_a = _operand(cp, a, transpose_a)
    b, transpose_b = _operand(cp, b, transpose_b)
    defines = tiles or matmul_config(M, N, batch, device_attribute("MultiProcessorCount"))
    kernel = f"sgemm_{'t' if transpose_a else 'n'}{'t' if transpose_b else 'n'}"
    block = ((defines["BM"] // defines["TM"]) * (defines["BN"] // defines["TN"]),)
    # Batch elements are blockIdx.z; stride 0 broadcasts one matrix over the batch.
    stride_a = M * K if batch_a > 1 else 0
    stride_b = K * N if batch_b > 1 else 0
    a3, b3, c3 = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), out.reshape(batch, M, N)
    for z0 in range(0, batch, 65535):   # gridDim.z is at most 65535
        nz = min(65535, batch - z0)
        grid = (math.ceil(N / defines["BN"]), math.ceil(M / defines["BM"]), nz)
        launch("matmul", kernel, grid, block,
               (a3[z0:z0 + nz] if stride_a else a3, b3[z0:z0 + nz] if stride_b else b3,
                c3[z0:z0 + nz], np.int32(M), np.int32(N), np.int32(K),
                np.int64(stride_a), np.int64(stride_b), np.int64(M * N),
                np.float32(1.0), np.float32(1.0 if accumulate else 0.0)),
               defines=defines)
    return out


# ----------------------------------------------------------------------------- attention

def attention_smem_bytes(head_dim, tile):
    """Dynamic shared memory (bytes) of each attention kernel, for head size `head_dim`
    and square tiles BR = BC = `tile`. Mirrors SMEM_FLOATS, DKDV_SMEM_FLOATS and
    DQ_SMEM_FLOATS in kernels/attention_*.cu: change both together."""
    tx = tile // 4
    d_cover = math.ceil(head_dim / (4 * tx)) * 4 * tx
    row = d_cover + 4            # row stride of q, k, v, do tiles
    p_row = tile + 4             # row stride of p / ds tiles
    return {
        "forward": 4 * (tile * row + 2 * tile * row + tile * p_row),
        "dkdv": 4 * (4 * tile * row + 2 * tile * p_row + 2 * tile),
        "dq": 4 * (4 * tile * row + tile * p_row),
    }


def attention_config(head_dim, max_smem, backward=False):
    """Defines (HEAD_DIM, BR, BC) for the forward or backward kernels: the largest tile
    whose shared memory fits in `max_smem` bytes per block."""
    for tile in ATTENTION_TILES:
        sizes = attention_smem_bytes(head_dim, tile)
        need = max(sizes["dkdv"], sizes["dq"]) if backward else sizes["forward"]
        if need <= max_smem:
            return {"HEAD_DIM": head_dim, "BR": tile, "BC": tile}
    raise RuntimeError(f"attention {'backward' if backward else 'forward'} kernels: head size {head_dim} "
                       f"needs {need} bytes of shared memory per block at the smallest tile ({tile}); "
                       f"this GPU offers {max_smem}")


def _check_attention_inputs(cp, named, shape=None):
    """All arrays float32 CuPy, 4-D (B, H, T, D) of one shape with D <= 128."""
    for name, x in named:
        _require_float32(cp, x, name)
    shape = shape or named[0][1].shape
    shapes = ", ".join(f"{n} {tuple(x.shape)}" for n, x in named)
    if len(shape) != 4 or any(x.shape != shape for _, x in named):
        raise ValueError(f"expected arrays of one shape (B, H, T, D); got {shapes}")
    if shape[3] > MAX_HEAD_DIM or shape[3] < 1:
        raise ValueError(f"head size D = {shape[3]} not supported: the fused attention "
                         f"kernels take 1 <= D <= {MAX_HEAD_DIM} ({shapes})")


def _key_lengths(cp, lengths, B, T):
    """The (B,) int32 device array of real keys per sequence the kernels read: all T
    when `lengths` is None, else `lengths` checked (integers from 1 to T). 0 keys is
    refused here: the kernels would give o = 0, lse = -inf and zero gradients, but
    the reference (functional.PaddedAttention) gives NaN, a softmax over no key."""
    if lengths is None:
        return cp.asarray(np.full(B, T, dtype=np.int32))
    host = np.asarray(cp.asnumpy(lengths) if isinstance(lengths, cp.ndarray) else lengths)
    if host.shape != (B,) or host.dtype.kind not in "iu" or (B and (host.min() < 1 or host.max() > T)):
        raise ValueError(f"lengths must be ({B},) integers from 1 to T = {T}; got shape {host.shape}, "
                         f"dtype {host.dtype}")
    return cp.asarray(host.astype(np.int32))


def attention_forward(q, k, v, lengths=None, causal=True):
    """Fused attention: (o, lse) for q, k, v of shape (B, H, T, D), float32.

    o = softmax(q @ k.T / sqrt(D) + mask) @ v, shape (B, H, T, D);
    lse = log(sum(exp(scores))) of each query row (natural log), shape (B, H, T).
    The mask hides key j from query i when j > i (causal) and when j >= lengths[b]
    (padding; lengths (B,) integers from 1 to T, None: no padding).
    """
    cp = get_cupy()
    _check_attention_inputs(cp, [("q", q), ("k", k), ("v", v)])
    B, H, T, D = q.shape
    n_keys = _key_lengths(cp, lengths, B, T)
    o = cp.empty((B, H, T, D), dtype=np.float32)
    lse = cp.empty((B, H, T), dtype=np.float32)
    if o.size == 0:
        return o, lse
    q, k, v = (_contiguous_aligned(cp, x) for x in (q, k, v))
    defines = attention_config(D, max_shared_memory())
    tile = defines["BR"]
    launch("attention_forward", "attention_forward", (B * H, math.ceil(T / tile)),
           ((tile // 4) ** 2,), (q, k, v, o, lse, n_keys, np.int32(T), np.int32(H), np.int32(causal),
                                 np.float32(1 / math.sqrt(D))),
           defines=defines, shared_mem=attention_smem_bytes(D, tile)["forward"])
    return o, lse


def attention_backward(q, k, v, o, lse, do, lengths=None, causal=True):
    """Gradients (dq, dk, dv) of attention, given the forward's inputs and mask (lengths,
    causal), its outputs o and lse, and do = dL/do; all (B, H, T, D) float32 but lse
    (B, H, T). Padding keys get dk = dv = 0."""
    cp = get_cupy()
    _check_attention_inputs(cp, [("q", q), ("k", k), ("v", v), ("o", o), ("do", do)])
    B, H, T, D = q.shape
    n_keys = _key_lengths(cp, lengths, B, T)
    _require_float32(cp, lse, "lse")
    if lse.shape != (B, H, T):
        raise ValueError(f"lse must have shape {(B, H, T)} for q {tuple(q.shape)}; "
                         f"got {tuple(lse.shape)}")
    dq, dk, dv = (cp.empty((B, H, T, D), dtype=np.float32) for _ in range(3))
    if dq.size == 0:
        return dq, dk, dv
    q, k, v, o, do = (_contiguous_aligned(cp, x) for x in (q, k, v, o, do))
    lse = cp.ascontiguousarray(lse)
    defines = attention_config(D, max_shared_memory(), backward=True)
    tile = defines["BR"]
    smem = attention_smem_bytes(D, tile)
    scale = np.float32(1 / math.sqrt(D))
    threads = (tile // 4) ** 2

    drow = cp.empty((B, H, T), dtype=np.float32)   # Drow_i = do_i . o_i
    rows = B * H * T
    launch("attention_backward", "attention_backward_preprocess", (math.ceil(rows / 8),), (256,),
           (o, do, drow, np.int64(rows)), defines=defines)
    launch("attention_backward", "attention_backward_dkdv", (B * H, math.ceil(T / tile)),
           (threads,), (q, k, v, do, lse, drow, dk, dv, n_keys, np.int32(T), np.int32(H), np.int32(causal), scale),
           defines=defines, shared_mem=smem["dkdv"])
    launch("attention_backward", "attention_backward_dq", (B * H, math.ceil(T / tile)),
           (threads,), (q, k, v, do, lse, drow, dq, n_keys, np.int32(T), np.int32(H), np.int32(causal), scale),
           defines=defines, shared_mem=smem["dq"])
    return dq, dk, dv
