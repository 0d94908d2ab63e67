"""Which array module an array belongs to: NumPy on the CPU, CuPy on an NVIDIA GPU.

Every op asks `array_module(x)` for `xp` and then writes `xp.exp(x)`, so one piece of
code serves both devices. CuPy is imported lazily, the first time something asks for
the GPU: `import minift` never imports it, and NumPy-only users never pay for it.
"""
import numpy as np

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


def get_cupy():
    """Import CuPy and check that a device exists; raise one clear RuntimeError if not."""
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
    raise RuntimeError(_cupy_error)


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


def scatter_add(out, index, values):
    """out[index] += values, where repeated indices add up (unlike `out[index] += v`,
    which keeps only one of them): the backward of gathering rows or elements."""
    if _is_cupy_array(out):
        import cupyx
        cupyx.scatter_add(out, index, values)
    else:
        np.add.at(out, index, values)
