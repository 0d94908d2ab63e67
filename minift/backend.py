"""Which array module an array belongs to (NumPy on the CPU, CuPy on an NVIDIA GPU),
and the table where an appendix registers a faster implementation of an op.

Every op asks `array_module(x)` for `xp` and then writes `xp.exp(x)`, so one piece of
code serves both devices. CuPy is imported lazily, the first time something asks for
the GPU: `import minift` never imports it, and NumPy-only users never pay for it.

The reading path holds one plain implementation of every op. The appendices, read
last, hold faster ones: `minift.fast` (the CPU's threads, tiled attention, ...) and
`minift.cuda` (hand-written GPU kernels). An appendix registers them here
(`register(device, name, implementation)`) when it is turned on, and an op asks
`implementation(name, reference, *arrays)` which one runs for its arrays: the
registered one for their device, or else its own reference. This module never imports
an appendix, and by default (nothing registered for the CPU) the plain code runs.
"""
import contextlib

import numpy as np

from .errors import MiniftError

_cupy = None          # the cupy module once imported
_cupy_error = None    # why it could not be imported / used, as one sentence


def _is_cupy_array(x):
    # Checked by the type's module name so that CuPy is never imported just to ask.
    return type(x).__module__.split(".")[0] == "cupy"


def array_module(*arrays):
    """numpy, or cupy when any of `arrays` is a CuPy array."""
    for a in arrays:
        if _is_cupy_array(a):
            return get_cupy()
    return np


class CudaUnavailableError(MiniftError, RuntimeError):
    """The GPU was asked for, but CuPy or a device is missing (one sentence saying which)."""


def get_cupy():
    """Import CuPy and check that a device exists; raise one clear CudaUnavailableError if not."""
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    if _cupy_error is None:
        try:
            import cupy
        except ImportError:
            _cupy_error = ("CUDA was requested but CuPy is not installed "
                           "(pip install 'minift[gpu]' or a cupy-cudaXXx wheel).")
        else:
            try:
                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as e:  # driver missing, no device, ...
                n, why = 0, f" ({type(e).__name__}: {e})"
            else:
                why = ""
            if n == 0:
                _cupy_error = f"CUDA was requested but no NVIDIA GPU is visible to CuPy{why}."
            else:
                _cupy = cupy
                return cupy
    raise CudaUnavailableError(_cupy_error)


def cuda_is_available():
    """True when CuPy imports and sees at least one GPU. Never raises."""
    try:
        get_cupy()
        return True
    except RuntimeError:
        return False


def device_of(x):
    """'cuda' for a CuPy array, 'cpu' otherwise."""
    return "cuda" if _is_cupy_array(x) else "cpu"


def check_device(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
    return device


def to_device(x, device):
    """Move array `x` to 'cpu' (NumPy) or 'cuda' (CuPy); no copy when already there."""
    check_device(device)
    if device == "cuda":
        return x if _is_cupy_array(x) else get_cupy().asarray(x)
    return get_cupy().asnumpy(x) if _is_cupy_array(x) else x


def to_numpy(x):
    """A NumPy array on the host (copies from the GPU when needed)."""
    return to_device(x, "cpu")


# ----------------------------------------------------------------------------- registered implementations

_registry = {}      # (device, op name) -> (implementation, accepts or None)


def register(device, name, implementation, accepts=None):
    """From now on, run `implementation` for op `name` on arrays of `device` ('cpu' or
    'cuda'), for the arrays `accepts(*arrays)` approves (all when it is None). An
    appendix calls this when it is turned on; `implementation=None` removes the entry."""
    check_device(device)
    if implementation is None:
        _registry.pop((device, name), None)
    else:
        _registry[(device, name)] = (implementation, accepts)


def registered(device):
    """The names of the ops that have a registered implementation on `device`."""
    return sorted(name for d, name in _registry if d == device)


@contextlib.contextmanager
def plain(device="cpu", **implementations):
    """Within the block, every op on `device` runs its plain implementation (the reading
    path's), except those given here by name; what was registered is back afterwards.
    minift.learn runs the learner's code this way: an appendix replaces the very
    functions the exercises are cut from."""
    saved = {key: value for key, value in _registry.items() if key[0] == device}
    for key in saved:
        del _registry[key]
    for name, function in implementations.items():
        register(device, name, function)
    try:
        yield
    finally:
        for name in implementations:
            register(device, name, None)
        _registry.update(saved)


def implementation(name, reference, *arrays):
    """What runs op `name` on `arrays`: the implementation registered for their device
    when there is one and it accepts them, else `reference` (the plain one)."""
    found = _registry.get((device_of(arrays[0]), name))
    if found is None or (found[1] is not None and not found[1](*arrays)):
        return reference
    return found[0]


def matmul(a, b):
    """a @ b on raw arrays with ndim >= 2 (leading axes broadcast), by a registered
    implementation when there is one (minift's SGEMM kernel on the GPU)."""
    if b.ndim == 2 and a.ndim > 2:
        # (..., K) @ (K, N) as one product over all rows: NumPy would loop over the leading axes.
        return matmul(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])
    return implementation("matmul", _matmul, a, b)(a, b)


def _matmul(a, b):
    return a @ b


def scatter_add(out, index, values):
    """out[index] += values, where repeated indices add up (unlike `out[index] += v`,
    which keeps only one of them): the backward of gathering rows or elements."""
    implementation("scatter_add", _add_at, out)(out, index, values)


def _add_at(out, index, values):
    array_module(out).add.at(out, index, values)


def uniform(rng, shape, like):
    """float32 numbers uniform in [0, 1), of `shape`, on the device of array `like`.

    `rng` is a NumPy Generator. On the CPU it draws the numbers; on the GPU it draws
    only a seed, and the numbers are made on the device (no host-to-device copy), so
    either way the same `rng` state gives the same numbers on a given device.
    """
    if not _is_cupy_array(like):
        return rng.random(shape, dtype=np.float32)
    cp = get_cupy()
    # Philox is counter-based: a fresh generator costs nothing to seed.
    device_rng = cp.random.RandomState(int(rng.integers(2**63)),
                                       method=cp.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
    return device_rng.random_sample(shape, dtype=np.float32)
