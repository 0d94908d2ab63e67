"""A fake `cupy` that runs minift's CUDA kernels on the CPU, for tests without a GPU.

Only kernels/check_on_device.sh on a machine without a GPU (which
tests/test_kernels_emulated.py runs) puts tests/cuda_emulator on PYTHONPATH, for the
commands that run the kernels: tests/test_kernels_gpu.py,
tests/test_kernels_device_limits.py and tests/device_check.py. The normal test session
never sees this module. It provides the part of CuPy that minift/cuda and those files
use, and nothing more (not CuPy's NumPy API: tests/test_gpu_model.py skips here):

* `ndarray` is a NumPy array whose type lives in module `cupy` (which is how
  minift.backend recognises a GPU array). Arrays made here (asarray, empty, zeros,
  ascontiguousarray, copy) sit between two 64 KB guard zones filled with a signalling
  NaN: a kernel that reads past an array gets NaN, and one that writes past it (even
  a NaN computed from what it read there) is reported after the launch. A store
  further out than that may corrupt the process's memory instead. `empty` is filled
  with NaN (bytes 0xFF), like uninitialised GPU memory.
* `RawModule(code=...)` builds the CUDA source with g++ against ../cuda_emu.h (which
  says what is emulated and what is not) into a shared library; its kernels run one
  block after another, each CUDA thread a fiber. It is compiled with
  -fsanitize=alignment, so a misaligned float4 load or store stops the process with
  the kernel file's name and line, as a GPU would stop with "misaligned address".
* `RawKernel.__call__` checks what a real launch would: the argument count, each
  scalar's exact C type (numpy.int32 for int, ...), each pointer's dtype and
  contiguity, the grid limits, the dynamic shared memory opt-in above 48 KB (set
  for the current device: CuPy loads a kernel once per device) and the device's
  shared memory limit.
* The GPUs are the list DEVICES (one H100 by default: its multiprocessor count and
  shared memory opt-in limit), read through cuda.runtime.deviceGetAttribute as CuPy
  does; cuda.Device(i) switches between them. Tests change the list to emulate a
  smaller card or a second GPU; MINIFT_CUDA_EMU_SMEM_OPTIN=101376 (say) gives the
  default device another limit.
* cuda.set_allocator does nothing: every array here is its own allocation already.

Libraries are built in $MINIFT_CUDA_EMU_BUILD_DIR (when unset, a temporary folder
removed at exit) and reused when the same source comes again.
"""
import atexit
import ctypes
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import types
import weakref
from pathlib import Path

import numpy as np

__version__ = "0-cpu-emulator"

EMULATOR_DIR = Path(__file__).resolve().parent.parent   # holds cuda_emu.h
CXX = "g++"
# -O0: at the tests' small sizes compiling costs more than running (-O1: +20% in all).
CXXFLAGS = ["-std=c++17", "-O0", "-shared", "-fPIC", "-fvisibility=hidden",
            "-Wno-unknown-pragmas", "-fsanitize=alignment", "-fno-sanitize-recover=alignment"]

# ----------------------------------------------------------------------------- arrays

_GUARD_WORDS = 16384                       # 64 KB before and after each array
_GUARD_WORD = 0x7FA0A0A0                   # a signalling NaN, as in cuda_emu.h
_guarded = weakref.WeakValueDictionary()   # id -> raw buffer, for the guard check


class ndarray(np.ndarray):
    """A NumPy array that minift takes for a CuPy one."""

    @property
    def data(self):   # CuPy: x.data.ptr is the device address
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def copy(self, order="C"):
        return _copy(self)


def empty(shape, dtype=np.float32):
    """A new C-contiguous array, all bytes 0xFF (NaN for float32), inside guard zones."""
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.full(2 * _GUARD_WORDS + -(-nbytes // 4), 0xFFFFFFFF, dtype=np.uint32)
    raw[:_GUARD_WORDS] = raw[-_GUARD_WORDS:] = _GUARD_WORD
    assert raw.ctypes.data % 16 == 0, "the allocator should give 16-byte aligned memory"
    _guarded[id(raw)] = raw
    data = raw.view(np.uint8)[4 * _GUARD_WORDS:4 * _GUARD_WORDS + nbytes]
    return data.view(dtype).reshape(shape).view(ndarray)


def _copy(x):
    out = empty(x.shape, x.dtype)
    out[...] = x
    return out


def zeros(shape, dtype=np.float32):
    out = empty(shape, dtype)
    out.fill(0)
    return out


def asarray(x, dtype=None):
    if isinstance(x, ndarray) and (dtype is None or x.dtype == dtype):
        return x
    return _copy(np.asarray(x, dtype=dtype))


def ascontiguousarray(x):
    return x if isinstance(x, ndarray) and x.flags.c_contiguous else _copy(x)


def asnumpy(x):
    return np.array(x)


def broadcast_to(x, shape):   # a read-only view, as NumPy's (minift copies it before a launch)
    return np.broadcast_to(x, shape).view(ndarray)


def matmul(a, b):
    return asarray(np.matmul(a, b))


def array_equal(a, b):
    return np.array_equal(a, b)


def _check_guards(array, what):
    """Raise if the guard zones around `array`'s allocation were written."""
    raw = array
    while isinstance(raw.base, np.ndarray):
        raw = raw.base
    if _guarded.get(id(raw)) is raw:
        for zone, where in ((raw[:_GUARD_WORDS], "before"), (raw[-_GUARD_WORDS:], "after")):
            if (zone != _GUARD_WORD).any():
                raise RuntimeError(f"{what}: the kernel wrote into the 64 KB {where} the "
                                   f"array's memory (out-of-bounds store)")


# ----------------------------------------------------------------------------- device

# The fake GPUs, one dict of attributes each (CUDA's cudaDevAttr names without the
# prefix), an H100's by default. Tests change them (monkeypatch) to emulate a smaller
# card, or a second GPU: launches are checked against the current device's figures.
H100 = {"MultiProcessorCount": 132, "MaxSharedMemoryPerBlockOptin": 232_448}
DEVICES = [dict(H100, MaxSharedMemoryPerBlockOptin=int(os.environ.get("MINIFT_CUDA_EMU_SMEM_OPTIN", 232_448)))]
_current_device = 0


class CUDARuntimeError(RuntimeError):
    pass


def _runtime_getDevice():
    return _current_device


def _runtime_setDevice(device):
    global _current_device
    if not 0 <= device < len(DEVICES):
        raise CUDARuntimeError(f"cudaErrorInvalidDevice: device {device} of {len(DEVICES)}")
    _current_device = device


# CUDA's numbers for the attributes (driver_types.h), which CuPy exports as
# cupy.cuda.runtime.cudaDevAttr<name>.
_ATTRIBUTE_NUMBERS = {16: "MultiProcessorCount", 97: "MaxSharedMemoryPerBlockOptin"}


def _runtime_deviceGetAttribute(attribute, device):
    name = _ATTRIBUTE_NUMBERS.get(attribute)
    if name is None or not 0 <= device < len(DEVICES):
        raise CUDARuntimeError(f"cudaErrorInvalidValue: attribute {attribute} of device {device} "
                               f"(the emulator knows {sorted(_ATTRIBUTE_NUMBERS)})")
    return DEVICES[device][name]


class Device:
    def __init__(self, device=None):
        self.id = _current_device if device is None else int(device)

    @property
    def attributes(self):   # CuPy reads every attribute it knows with deviceGetAttribute
        return {name: _runtime_deviceGetAttribute(number, self.id)
                for number, name in _ATTRIBUTE_NUMBERS.items()}

    def use(self):
        _runtime_setDevice(self.id)
        return self

    def __enter__(self):
        self._previous = _current_device
        return self.use()

    def __exit__(self, *exc):
        _runtime_setDevice(self._previous)

    def synchronize(self):   # launches finish before they return
        pass


class CompileException(Exception):
    def get_message(self):
        return str(self)


cuda = types.SimpleNamespace(
    Device=Device,
    set_allocator=lambda allocator=None: None,   # every array here is its own allocation
    runtime=types.SimpleNamespace(
        getDeviceCount=lambda: len(DEVICES), getDevice=_runtime_getDevice,
        setDevice=_runtime_setDevice, deviceGetAttribute=_runtime_deviceGetAttribute,
        CUDARuntimeError=CUDARuntimeError,
        **{f"cudaDevAttr{name}": number for number, name in _ATTRIBUTE_NUMBERS.items()}),
    compiler=types.SimpleNamespace(CompileException=CompileException),
)

# ----------------------------------------------------------------------------- kernels

_SCALAR_TYPES = {"int": np.int32, "long long": np.int64, "float": np.float32}
_POINTEE_DTYPES = {"float": np.float32, "int": np.int32, "long long": np.int64}
_CTYPES = {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.float32: ctypes.c_float}
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+'
                     r'(?:__launch_bounds__\s*\(([^()]*)\)\s*)?(\w+)\s*\(([^)]*)\)')
# `extern __shared__ T name[];` becomes a pointer to the launch's dynamic shared memory;
# `__shared__ T name[...];` a static array (blocks run one at a time) that the first
# thread of each block to get there fills with NaN.
_DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]\s*;")
_STATIC_SHARED = re.compile(r"__shared__\s+([^;]*?)\b(\w+)\s*((?:\[[^\]]*\])+)\s*;")


class _Param:
    """One kernel parameter, e.g. `const float* __restrict__ q` or `int T`."""

    def __init__(self, decl):
        decl = " ".join(decl.split())
        self.name = re.search(r"(\w+)$", decl).group(1)
        self.ctype = decl[:-len(self.name)].strip()       # what the entry point casts to
        base = " ".join(re.sub(r"\bconst\b|\b__restrict__\b|\*", " ", self.ctype).split())
        self.pointer = "*" in self.ctype
        self.dtype = (_POINTEE_DTYPES if self.pointer else _SCALAR_TYPES).get(base)
        if self.dtype is None:
            raise CompileException(f"emulator: unsupported kernel parameter type in {decl!r}")


def _emulator_source(code):
    """The CUDA source as C++ for cuda_emu.h, with an entry point per kernel."""
    code = _DYNAMIC_SHARED.sub(r"\1* \2 = reinterpret_cast<\1*>(emu::dynamic_smem);", code)
    code = _STATIC_SHARED.sub(r"static \1\2\3; emu::poison_shared(\2, sizeof \2);", code)
    if "__shared__" in code:
        raise CompileException("emulator: a __shared__ declaration it cannot rewrite")
    kernels = {}
    entry_points = []
    for bounds, name, params in _KERNEL.findall(code):
        params = [_Param(p) for p in params.split(",") if p.strip()]
        kernels[name] = params
        args = ", ".join(f"*({p.ctype}*)a[{i}]" for i, p in enumerate(params))
        entry_points.append(
            f"static void emu_body_{name}(void** a) {{ {name}({args}); }}\n"
            f"EMU_EXPORT int emu_launch_{name}(void** a, unsigned gx, unsigned gy, unsigned gz,"
            f" unsigned bx, size_t smem) {{\n"
            f"    return emu::launch(emu_body_{name}, a, gx, gy, gz, bx, smem,"
            f" {'(' + bounds.split(',')[0] + ')' if bounds else '1024'});\n}}\n")
    return '#include "cuda_emu.h"\n' + code + "\n" + "".join(entry_points), kernels


def _build_dir():
    folder = os.environ.get("MINIFT_CUDA_EMU_BUILD_DIR")
    if not folder:
        folder = os.environ["MINIFT_CUDA_EMU_BUILD_DIR"] = tempfile.mkdtemp(prefix="cuda-emu-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def build_library(cpp):
    """Build C++ source `cpp` into a shared library (reused if built before); its path.
    (Not CuPy: tests/test_kernels_emulated.py calls it to probe the compiler.)"""
    header = (EMULATOR_DIR / "cuda_emu.h").read_text()
    key = hashlib.sha256("\0".join([CXX, *CXXFLAGS, header, cpp]).encode()).hexdigest()[:20]
    folder = _build_dir()
    library = folder / f"k_{key}.so"
    if not library.exists():
        source = folder / f"k_{key}.cpp"
        source.write_text(cpp)
        result = subprocess.run([CXX, *CXXFLAGS, "-I", str(EMULATOR_DIR), str(source),
                                 "-o", f"{library}.tmp"], capture_output=True, text=True)
        if result.returncode:
            raise CompileException(f"{CXX} failed on {source}:\n{result.stderr[-8000:]}")
        os.replace(f"{library}.tmp", library)
    return library


class RawModule:
    def __init__(self, code, options=()):   # options are NVRTC's: not used here
        self.code = code
        self._library = None

    def compile(self):
        if self._library is None:
            cpp, self._kernels = _emulator_source(self.code)
            self._library = ctypes.CDLL(str(build_library(cpp)))
            self._library.emu_error.restype = ctypes.c_char_p

    def get_function(self, name):
        self.compile()
        if name not in self._kernels:
            raise AttributeError(f"no kernel {name!r} (kernels: {', '.join(self._kernels)})")
        return RawKernel(self._library, name, self._kernels[name])


class RawKernel:
    def __init__(self, library, name, params):
        self.name = name
        self._smem_opt_in = {}   # device -> bytes: CuPy loads a kernel once per device
        self._params = params
        self._library = library
        self._launch = getattr(library, f"emu_launch_{name}")
        self._launch.restype = ctypes.c_int

    @property
    def max_dynamic_shared_size_bytes(self):
        return self._smem_opt_in.get(_current_device, 0)

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value):
        limit = DEVICES[_current_device]["MaxSharedMemoryPerBlockOptin"]
        if value > limit:   # cuFuncSetAttribute: CUDA_ERROR_INVALID_VALUE
            raise CUDARuntimeError(f"emulated kernel {self.name}: max_dynamic_shared_size_bytes "
                                   f"{value} > {limit}, the opt-in limit of device {_current_device}")
        self._smem_opt_in[_current_device] = value

    def __call__(self, grid, block, args, shared_mem=0):
        where = f"emulated kernel {self.name} on device {_current_device}"
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        if block[1:] != (1, 1):
            raise ValueError(f"{where}: block {block}; the emulator runs 1-D blocks only")
        if not (1 <= grid[0] < 2**31 and 1 <= grid[1] <= 65535 and 1 <= grid[2] <= 65535):
            raise ValueError(f"{where}: grid {grid} outside CUDA's limits")
        if shared_mem > 48 * 1024 and shared_mem > self.max_dynamic_shared_size_bytes:
            raise ValueError(f"{where}: {shared_mem} bytes of dynamic shared memory need "
                             f"max_dynamic_shared_size_bytes set first (above 48 KB)")
        if shared_mem > DEVICES[_current_device]["MaxSharedMemoryPerBlockOptin"]:
            raise ValueError(f"{where}: {shared_mem} bytes of shared memory, more than the "
                             f"device has ({DEVICES[_current_device]['MaxSharedMemoryPerBlockOptin']})")
        if len(args) != len(self._params):
            raise TypeError(f"{where}: takes {len(self._params)} arguments, got {len(args)}")
        values = []
        for i, (arg, param) in enumerate(zip(args, self._params)):
            what = f"{where}: argument {i} ({param.ctype} {param.name})"
            if param.pointer:
                if not isinstance(arg, ndarray) or arg.dtype != param.dtype:
                    raise TypeError(f"{what} needs a {np.dtype(param.dtype)} cupy array, "
                                    f"got {type(arg).__name__} {getattr(arg, 'dtype', '')}")
                if not arg.flags.c_contiguous:
                    raise ValueError(f"{what} is not C-contiguous")
                values.append(ctypes.c_void_p(arg.data.ptr))
            else:
                if type(arg) is not param.dtype:
                    raise TypeError(f"{what} needs numpy.{param.dtype.__name__}, "
                                    f"got {type(arg).__name__}")
                values.append(_CTYPES[param.dtype](arg))
        argv = (ctypes.c_void_p * max(len(values), 1))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        failed = self._launch(argv, *(ctypes.c_uint(g) for g in grid), ctypes.c_uint(block[0]),
                              ctypes.c_size_t(shared_mem))
        if failed:
            raise RuntimeError(f"{where}: {self._library.emu_error().decode()}")
        for i, (arg, param) in enumerate(zip(args, self._params)):
            if param.pointer:
                _check_guards(arg, f"{where}: argument {i} ({param.name})")
