"""The GPU appendix: minift's hand-written CUDA kernels, read after everything else.

The kernels are CUDA C files in the repository's top-level `kernels/` folder, one
kernel family per file (`matmul.cu`, `attention_forward.cu`, `attention_backward.cu`,
and `attention_common.cuh`, the device helpers both attention files use). Each opens
with a comment that explains its algorithm to a reader who knows the NumPy version.
This package is the bridge from Python:

    loader     find the source, paste its header in, compile once, launch safely
    wrappers   matmul, attention_forward, attention_backward on CuPy arrays
    here       is_available(), and the ways the rest of minift uses the kernels,
               registered with `minift.backend` for CuPy arrays when this package is
               imported: the batched matmul behind every `@` and Linear layer, and
               FusedCausalAttention and FusedPaddedAttention, which replace
               functional.CausalAttention and functional.PaddedAttention (their
               reference) where they accept the arrays

The rest of minift never imports this package: `backend` asks its registry, which
this package fills when `import minift` imports it (entries for CuPy arrays only:
nothing changes on the CPU). Importing it never imports CuPy; that happens on the
first launch.
"""
import numpy as np

from .. import backend
from ..tensor import Function
from .loader import (COMPILE_OPTIONS, INSTALLED_KERNEL_DIR, KERNEL_DIR, compiled_kernels,
                     get_function, kernel_dir, kernel_source, launch, load_module)
from .wrappers import (ATTENTION_TILES, DEFAULT_DEFINES, MATMUL_LARGE, MATMUL_SMALL, MAX_HEAD_DIM,
                       attention_backward, attention_config, attention_forward,
                       attention_smem_bytes, device_attribute, matmul, matmul_config,
                       max_shared_memory, use_kernels)

__all__ = [   # the appendix's public names, for tests and bench_kernels
    "ATTENTION_TILES", "COMPILE_OPTIONS", "DEFAULT_DEFINES", "INSTALLED_KERNEL_DIR", "KERNEL_DIR",
    "MATMUL_LARGE", "MATMUL_SMALL", "MAX_HEAD_DIM", "FusedCausalAttention", "FusedPaddedAttention",
    "attention_backward",
    "attention_config", "attention_forward", "attention_smem_bytes", "batched_matmul",
    "compiled_kernels", "device_attribute", "get_function", "is_available", "kernel_dir",
    "kernel_source", "launch", "load_module", "matmul", "matmul_config", "max_shared_memory",
    "use_kernels",
]


def is_available():
    """True when CuPy imports and sees an NVIDIA GPU. Never raises, never imports
    CuPy at `import minift` time (only when called)."""
    return backend.cuda_is_available()


def batched_matmul(a, b):
    """a @ b for float32 CuPy arrays with ndim >= 2 whose leading (batch) axes
    broadcast as in NumPy, by the SGEMM kernel: what `backend.matmul` runs on the GPU."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = matmul(_stack3(a, batch), _stack3(b, batch))
    return out.reshape(*batch, a.shape[-2], b.shape[-1])


def _stack3(x, batch):
    """x as a (n, rows, cols) stack for the batched kernel: n = prod(batch), or 1 for
    a plain matrix, which the kernel broadcasts over the batch."""
    if x.ndim == 2:
        return x[None]
    if x.shape[:-2] != batch:
        x = backend.array_module(x).broadcast_to(x, batch + x.shape[-2:])
    return x.reshape(-1, *x.shape[-2:])


class FusedCausalAttention(Function):
    """out = softmax(q @ k^T / sqrt(D) + causal mask) @ v on (B, H, T, D) float32 GPU
    arrays, by kernels/attention_forward.cu and attention_backward.cu.

    The same function as functional.CausalAttention (its reference), but forward keeps
    only the output and one log-sum-exp per query row, lse (B, H, T), and backward
    recomputes the probabilities tile by tile: O(T * D) memory instead of O(T^2).
    """

    @staticmethod
    def accepts(q, k, v):
        """Whether the kernels take these arrays: float32, as many queries as keys (no
        KV cache), head size up to MAX_HEAD_DIM."""
        return (q.dtype == np.float32 and q.shape[-2] == k.shape[-2]
                and q.shape[-1] <= MAX_HEAD_DIM)

    def forward(ctx, q, k, v):
        out, lse = attention_forward(q, k, v)       # (B, H, T, D), (B, H, T)
        ctx.save(q, k, v, out, lse)
        return out

    def backward(ctx, g):
        """dq, dk, dv (B, H, T, D): the derivatives of functional.CausalAttention.backward,
        with P rebuilt from q, k and lse inside the kernels (g = dL/dout, (B, H, T, D))."""
        q, k, v, out, lse = ctx.saved
        return attention_backward(q, k, v, out, lse, g)


class FusedPaddedAttention(FusedCausalAttention):
    """out = softmax(q @ k^T / sqrt(D) + padding mask) @ v (no causal mask) on (B, H, T, D)
    float32 GPU arrays, lengths (B,) the real keys of each sequence or None: the same
    kernels run with causal = 0, the fused form of functional.PaddedAttention."""

    def forward(ctx, q, k, v, lengths=None):
        out, lse = attention_forward(q, k, v, lengths, causal=False)
        ctx.lengths = lengths
        ctx.save(q, k, v, out, lse)
        return out

    def backward(ctx, g):
        """dq, dk, dv (B, H, T, D) of functional.PaddedAttention.backward; padding keys get 0."""
        q, k, v, out, lse = ctx.saved
        return attention_backward(q, k, v, out, lse, g, ctx.lengths, causal=False)


def scatter_add(out, index, values):
    """out[index] += values with repeated indices adding up, on the GPU (CuPy's kernel)."""
    import cupyx
    cupyx.scatter_add(out, index, values)


def _float32(*arrays):
    return all(a.dtype == np.float32 for a in arrays)


backend.register("cuda", "matmul", batched_matmul, accepts=_float32)
backend.register("cuda", "scatter_add", scatter_add)
backend.register("cuda", "causal_attention", FusedCausalAttention, accepts=FusedCausalAttention.accepts)
backend.register("cuda", "padded_attention", FusedPaddedAttention, accepts=FusedPaddedAttention.accepts)
