"""Find a kernel's CUDA source, compile it once, launch it safely.

1. `kernel_source(name, defines)` reads `{name}.cu` from the kernel folder, pastes in
   the headers it includes and prepends the tile sizes as `#define` lines (pure
   Python: testable without a GPU).
2. `load_module(name, defines)` compiles that text once per process with
   `cupy.RawModule` (NVRTC) and keeps it; a compile error shows the compiler's log.
3. `launch(...)` checks every argument, then launches. A raw kernel sees only a
   pointer: it ignores strides and dtypes, so a transposed view or a float64 array
   would give silently wrong numbers. The launcher refuses them instead.

Importing this module never imports CuPy: that happens on the first compile, through
`minift.backend`.
"""
import os
import re
from pathlib import Path

import numpy as np

from ..backend import get_cupy

# The kernel sources are the top-level kernels/ folder of the repository. `pip install`
# copies them into the package, as minift/cuda/kernels (setup.cfg), which a source
# checkout does not have. The environment variable MINIFT_KERNEL_DIR, read at every
# call, overrides both (to try out an edited kernel without touching the repository).
INSTALLED_KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels"

COMPILE_OPTIONS = ("-std=c++17",)
STATIC_SMEM_LIMIT = 48 * 1024   # bytes of shared memory a block may use without opting in

# `#include "name"`: a header of the kernel folder, pasted into the text by the loader.
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$')


# ----------------------------------------------------------------------------- source

def kernel_dir():
    """The folder the kernel sources are read from: MINIFT_KERNEL_DIR when set, else
    the installed copy when there is one, else the repository's kernels/."""
    override = os.environ.get("MINIFT_KERNEL_DIR")
    if override:
        return Path(override)
    return INSTALLED_KERNEL_DIR if INSTALLED_KERNEL_DIR.is_dir() else KERNEL_DIR


def kernel_source(name, defines=None):
    """Source text of {name}.cu with `#define KEY VALUE` lines in front and the headers
    it includes pasted in.

    The defines come sorted by key, so the same request always gives the same text
    (and CuPy's on-disk compile cache, keyed by the text, is reused; pasting the
    headers in puts them in that key too). `#line` directives keep the compiler's file
    names and line numbers those of the files.
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
    return "".join(lines) + _with_headers(path)


def _with_headers(path):
    """The text of `path` with each `#include "header"` line replaced by the text of
    that header (a file beside it, which includes nothing itself), between #line
    directives. NVRTC does not reliably search folders on disk; pasted text it takes."""
    out = [f'#line 1 "{path.name}"\n']
    for number, line in enumerate(path.read_text().splitlines(keepends=True), start=1):
        match = _INCLUDE.match(line)
        if not match:
            out.append(line)
            continue
        header = path.parent / match.group(1)
        if not header.is_file():
            raise FileNotFoundError(f"{path.name}, line {number}: included header {header} not found")
        text = header.read_text()
        if any(_INCLUDE.match(h) for h in text.splitlines()):
            raise ValueError(f"{header.name} includes another file; kernel headers must not "
                             f"(the loader pastes one level)")
        out += [f'#line 1 "{header.name}"\n', text if text.endswith("\n") else text + "\n",
                f'#line {number + 1} "{path.name}"\n']
    return "".join(out)


# ----------------------------------------------------------------------------- compile

_modules = {}            # (name, sorted defines) -> cupy.RawModule
_functions = {}          # (name, sorted defines, kernel name) -> cupy.RawKernel
_smem_opted_in = {}      # (name, sorted defines, kernel name, device id) -> bytes allowed


def _key(name, defines):
    return (name, tuple(sorted((defines or {}).items())))


def load_module(name, defines=None):
    """{name}.cu compiled with `defines`, once per process (then cached)."""
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
    """The `extern "C"` kernel `kernel_name` of {module_name}.cu."""
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


def compiled_kernels():
    """{(file name, sorted defines, kernel name): cupy.RawKernel} of every kernel this
    process has loaded so far (the benchmark reports their registers and memory)."""
    return dict(_functions)


# ----------------------------------------------------------------------------- launch

_SCALAR_TYPES = (np.int32, np.int64, np.float32)
_ARRAY_DTYPES = (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64))


def launch(module_name, kernel_name, grid, block, args, defines=None, shared_mem=0):
    """Check `args`, then run kernel `kernel_name` of {module_name}.cu.

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
    if shared_mem > STATIC_SMEM_LIMIT:
        # Above 48 KB a kernel must opt in to the larger shared memory of newer GPUs. The
        # setting belongs to the kernel as loaded on one device, and CuPy loads a kernel
        # again on each device it runs on: a second GPU needs its own opt-in.
        opt_in = _key(module_name, defines) + (kernel_name, cp.cuda.runtime.getDevice())
        if _smem_opted_in.get(opt_in, 0) < shared_mem:
            func.max_dynamic_shared_size_bytes = int(shared_mem)
            _smem_opted_in[opt_in] = shared_mem
    func(grid, block, tuple(args), shared_mem=int(shared_mem))
