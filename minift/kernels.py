"""minift's hand-written CUDA kernels: find the source, compile it once, launch it safely.

The kernels are CUDA C files in the repository's `kernels/` folder, one kernel family
per file (`matmul.cu`, `attention_forward.cu`, `attention_backward.cu`). Each opens
with a comment that explains its algorithm to a reader who knows the NumPy version.
This module is the bridge from Python, in three layers:

1. `kernel_source(name, defines)` reads `kernels/{name}.cu` and prepends the tile
   sizes as `#define` lines (pure Python: testable without a GPU).
2. `load_module(name, defines)` compiles that text once per process with
   `cupy.RawModule` (NVRTC) and keeps it; a compile error shows the compiler's log.
3. `launch(...)` checks every argument, then launches. A raw kernel sees only a
   pointer: it ignores strides and dtypes, so a transposed view or a float64 array
   would give silently wrong numbers. The launcher refuses them instead; the
   wrappers below make their inputs contiguous first.

The wrappers `matmul`, `attention_forward` and `attention_backward` take CuPy arrays,
choose tile sizes, grid and block, and return new CuPy arrays. Importing this module
never imports CuPy: that happens on the first launch, through `minift.backend`.
"""
import math
import os
import re
from pathlib import Path

import numpy as np

from .backend import get_cupy

# The repository's kernels/ folder. The environment variable MINIFT_KERNEL_DIR, read
# at every call, overrides it (to try out an edited kernel without touching the repo).
KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"

COMPILE_OPTIONS = ("-std=c++17",)

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

_STATIC_SMEM_LIMIT = 48 * 1024   # bytes a block may use without opting in


# ----------------------------------------------------------------------------- source

def kernel_dir():
    """The folder the kernel sources are read from (MINIFT_KERNEL_DIR or KERNEL_DIR)."""
    return Path(os.environ.get("MINIFT_KERNEL_DIR") or KERNEL_DIR)


def kernel_source(name, defines=None):
    """Source text of kernels/{name}.cu with `#define KEY VALUE` lines in front.

    The defines come sorted by key, so the same request always gives the same text
    (and CuPy's on-disk compile cache, keyed by the text, is reused). A `#line`
    directive after them keeps the compiler's line numbers equal to the file's.
    """
    folder = kernel_dir()
    path = folder / f"{name}.cu"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.cu")) if folder.is_dir() else []
        raise FileNotFoundError(
            f"no kernel source {path}; kernels available in {folder}: "
            f"{', '.join(available) if available else '(none)'}")
    lines = []
    for key, value in sorted((defines or {}).items()):
        if not re.fullmatch(r"[A-Za-z_]\w*", str(key)):
            raise ValueError(f"kernel define name {key!r} is not a C identifier")
        if "\n" in str(value):
            raise ValueError(f"kernel define {key} has a newline in its value {value!r}")
        lines.append(f"#define {key} {value}\n")
    lines.append(f'#line 1 "{path.name}"\n')
    return "".join(lines) + path.read_text()


# ----------------------------------------------------------------------------- compile

_modules = {}            # (name, sorted defines) -> cupy.RawModule
_functions = {}          # (name, sorted defines, kernel name) -> cupy.RawKernel
_smem_opted_in = {}      # id(kernel) -> dynamic shared memory bytes already allowed


def _key(name, defines):
    return (name, tuple(sorted((defines or {}).items())))


def load_module(name, defines=None):
    """kernels/{name}.cu compiled with `defines`, once per process (then cached)."""
    key = _key(name, defines)
    module = _modules.get(key)
    if module is None:
        cp = get_cupy()
        source = kernel_source(name, defines)
        try:
            module = cp.RawModule(code=source, options=COMPILE_OPTIONS)
            module.compile()   # compile now, so that errors surface here with their log
        except Exception as e:  # cupy.cuda.compiler.CompileException carries the log
            log = e.get_message() if hasattr(e, "get_message") else str(e)
            raise RuntimeError(f"compiling kernels/{name}.cu with defines {dict(key[1])} "
                               f"failed:\n{log}") from e
        _modules[key] = module
    return module


def get_function(module_name, kernel_name, defines=None):
    """The `extern "C"` kernel `kernel_name` of kernels/{module_name}.cu."""
    key = _key(module_name, defines) + (kernel_name,)
    func = _functions.get(key)
    if func is None:
        module = load_module(module_name, defines)
        try:
            func = module.get_function(kernel_name)
        except Exception as e:
            raise RuntimeError(f"kernels/{module_name}.cu has no kernel {kernel_name!r} "
                               f"({type(e).__name__}: {e})") from e
        _functions[key] = func
    return func


# ----------------------------------------------------------------------------- launch

_SCALAR_TYPES = (np.int32, np.int64, np.float32)
_ARRAY_DTYPES = (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64))


def launch(module_name, kernel_name, grid, block, args, defines=None, shared_mem=0):
    """Check `args`, then run kernel `kernel_name` of kernels/{module_name}.cu.

    Every array argument must be a C-contiguous CuPy array of float32 (or int32/int64
    for index arrays): the kernel receives only its address. Every scalar must be a
    NumPy scalar of the exact C type of the parameter (numpy.int32 for `int`,
    numpy.int64 for `long long`, numpy.float32 for `float`); a Python int or float
    would be passed with a width the kernel may not expect.
    """
    cp = get_cupy()
    where = f"kernel {kernel_name} (kernels/{module_name}.cu)"
    for i, a in enumerate(args):
        if isinstance(a, cp.ndarray):
            if a.dtype not in _ARRAY_DTYPES:
                raise TypeError(f"{where}: argument {i} has dtype {a.dtype}; "
                                f"the kernels take float32 arrays")
            if not a.flags.c_contiguous:
                raise ValueError(f"{where}: argument {i} (shape {a.shape}, strides {a.strides}) "
                                 f"is not C-contiguous; a raw kernel ignores strides, so pass "
                                 f"cupy.ascontiguousarray(x)")
        elif not isinstance(a, _SCALAR_TYPES):
            raise TypeError(f"{where}: argument {i} is {type(a).__name__}; pass a CuPy array "
                            f"or a numpy.int32 / numpy.int64 / numpy.float32 scalar")
    grid, block = tuple(int(g) for g in grid), tuple(int(b) for b in block)
    if min(grid) < 1 or grid[0] >= 2**31 or any(g > 65535 for g in grid[1:]):
        raise ValueError(f"{where}: grid {grid} outside CUDA's limits "
                         f"(x < 2**31, y and z <= 65535, all >= 1)")
    func = get_function(module_name, kernel_name, defines)
    if shared_mem > _STATIC_SMEM_LIMIT and _smem_opted_in.get(id(func), 0) < shared_mem:
        # Above 48 KB a kernel must opt in to the larger shared memory of newer GPUs.
        func.max_dynamic_shared_size_bytes = int(shared_mem)
        _smem_opted_in[id(func)] = shared_mem
    func(grid, block, tuple(args), shared_mem=int(shared_mem))


# ----------------------------------------------------------------------------- helpers

_device_attributes = {}   # device id -> {attribute name: value}


def _device_attribute(name, default):
    """An attribute of the current GPU (cudaDeviceAttr name without the prefix), read
    once per device: asking the driver for all of them costs more than a launch."""
    device = get_cupy().cuda.Device()
    attributes = _device_attributes.get(device.id)
    if attributes is None:
        attributes = _device_attributes[device.id] = dict(device.attributes)
    value = attributes.get(name)
    return default if value is None else int(value)   # an old CuPy may lack the name


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
    defines = tiles or matmul_config(M, N, batch, _device_attribute("MultiProcessorCount", 108))
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
    raise RuntimeError(f"attention kernels: head size {head_dim} needs more shared memory "
                       f"than this GPU offers ({max_smem} bytes per block)")


def _max_smem():
    return _device_attribute("MaxSharedMemoryPerBlockOptin", _STATIC_SMEM_LIMIT)


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


def attention_forward(q, k, v):
    """Fused causal attention: (o, lse) for q, k, v of shape (B, H, T, D), float32.

    o = softmax(q @ k.T / sqrt(D) + causal mask) @ v, shape (B, H, T, D);
    lse = log(sum(exp(scores))) of each query row (natural log), shape (B, H, T).
    """
    cp = get_cupy()
    _check_attention_inputs(cp, [("q", q), ("k", k), ("v", v)])
    B, H, T, D = q.shape
    o = cp.empty((B, H, T, D), dtype=np.float32)
    lse = cp.empty((B, H, T), dtype=np.float32)
    if o.size == 0:
        return o, lse
    q, k, v = (_contiguous_aligned(cp, x) for x in (q, k, v))
    defines = attention_config(D, _max_smem())
    tile = defines["BR"]
    launch("attention_forward", "attention_forward", (B * H, math.ceil(T / tile)),
           ((tile // 4) ** 2,), (q, k, v, o, lse, np.int32(T), np.float32(1 / math.sqrt(D))),
           defines=defines, shared_mem=attention_smem_bytes(D, tile)["forward"])
    return o, lse


def attention_backward(q, k, v, o, lse, do):
    """Gradients (dq, dk, dv) of causal attention, given the forward's inputs, its
    outputs o and lse, and do = dL/do; all (B, H, T, D) float32 but lse (B, H, T)."""
    cp = get_cupy()
    _check_attention_inputs(cp, [("q", q), ("k", k), ("v", v), ("o", o), ("do", do)])
    B, H, T, D = q.shape
    _require_float32(cp, lse, "lse")
    if lse.shape != (B, H, T):
        raise ValueError(f"lse must have shape {(B, H, T)} for q {tuple(q.shape)}; "
                         f"got {tuple(lse.shape)}")
    dq, dk, dv = (cp.empty((B, H, T, D), dtype=np.float32) for _ in range(3))
    if dq.size == 0:
        return dq, dk, dv
    q, k, v, o, do = (_contiguous_aligned(cp, x) for x in (q, k, v, o, do))
    lse = cp.ascontiguousarray(lse)
    defines = attention_config(D, _max_smem(), backward=True)
    tile = defines["BR"]
    smem = attention_smem_bytes(D, tile)
    scale = np.float32(1 / math.sqrt(D))
    threads = (tile // 4) ** 2

    drow = cp.empty((B, H, T), dtype=np.float32)   # Drow_i = do_i . o_i
    rows = B * H * T
    launch("attention_backward", "attention_backward_preprocess", (math.ceil(rows / 8),), (256,),
           (o, do, drow, np.int64(rows)), defines=defines)
    launch("attention_backward", "attention_backward_dkdv", (B * H, math.ceil(T / tile)),
           (threads,), (q, k, v, do, lse, drow, dk, dv, np.int32(T), scale),
           defines=defines, shared_mem=smem["dkdv"])
    launch("attention_backward", "attention_backward_dq", (B * H, math.ceil(T / tile)),
           (threads,), (q, k, v, do, lse, drow, dq, np.int32(T), scale),
           defines=defines, shared_mem=smem["dq"])
    return dq, dk, dv
