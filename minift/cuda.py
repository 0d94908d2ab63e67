"""`minift.cuda.is_available()`: whether the GPU path can run here (CuPy + a device)."""
from .backend import cuda_is_available


def is_available():
    """True when CuPy imports and sees an NVIDIA GPU. Never raises, never imports
    CuPy at `import minift` time (only when called)."""
    return cuda_is_available()
