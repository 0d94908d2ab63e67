"""minift's CUDA kernels, run on the CPU by an emulator of the GPU: no GPU needed.

tests/test_kernels_gpu.py compares the kernels with NumPy but needs CuPy and a GPU,
which CI does not have. This test runs that file with small sizes
(MINIFT_KERNEL_TEST_SIZES=small) in a subprocess whose PYTHONPATH starts with
tests/cuda_emulator: there `import cupy` finds a fake CuPy that builds each kernel
with g++ against tests/cuda_emulator/cuda_emu.h and runs it on the CPU, every CUDA
thread a fiber. The emulator's files say what it checks (races a missing
__syncthreads causes, reads of unwritten shared memory, out-of-bounds stores,
misaligned float4 loads, launch arguments) and what it cannot.

The fake CuPy compiles exactly the text minift's loader hands to cupy.RawModule (tile
sizes prepended, kernels/attention_common.cuh pasted in), so the emulated kernels are
the ones a GPU would run. Only that subprocess sees the fake CuPy, so in this session
the GPU tests still skip without a GPU. The kernels come from MINIFT_KERNEL_DIR when it is set, as everywhere
in minift, so an edited copy of a kernel can be checked without a GPU:
    MINIFT_KERNEL_DIR=/tmp/my_kernels python -m pytest tests/test_kernels_emulated.py
and one emulated test can be run by hand:
    MINIFT_KERNEL_TEST_SIZES=small PYTHONPATH=tests/cuda_emulator:. \
        python -m pytest tests/test_kernels_gpu.py -k "matmul_forms and 7-33-129"
Skipped when g++ cannot build the emulator (no g++, no <ucontext.h> or no UBSan runtime).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EMULATOR = REPO / "tests" / "cuda_emulator"

# Builds a trivial library with the emulator's compiler and flags, but not its header;
# exit code 3 when the compiler fails. A broken emulator must fail the test, not skip it.
TOOLCHAIN_PROBE = """
import cupy
try:
    cupy.build_library('#include <ucontext.h>\\nextern "C" int probe() { return 0; }\\n')
except cupy.CompileException as e:
    print(e)
    raise SystemExit(3)
"""


def emulator_env(build_dir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(EMULATOR), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MINIFT_CUDA_EMU_BUILD_DIR"] = str(build_dir)   # g++ builds, kept for this run only
    env["MINIFT_KERNEL_TEST_SIZES"] = "small"
    env["PYTHONDONTWRITEBYTECODE"] = "1"                # nothing written into the repository
    return env


def test_kernels_on_the_cpu_emulator(tmp_path):
    env = emulator_env(tmp_path)
    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulator needs g++, which is not installed")
    probe = subprocess.run([sys.executable, "-c", TOOLCHAIN_PROBE], cwd=REPO, env=env,
                           capture_output=True, text=True)
    if probe.returncode == 3:
        pytest.skip(f"g++ cannot build the CUDA emulator's libraries:\n{probe.stdout[-3000:]}")
    assert probe.returncode == 0, f"the fake cupy failed:\n{probe.stdout}{probe.stderr}"

    # -v names each test before it runs and --capture=sys lets the emulator's own
    # messages (UBSan's on a misaligned load, which ends the process) reach the output.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "--tb=short", "--capture=sys",
         "-p", "no:cacheprovider", "tests/test_kernels_gpu.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    passed = re.search(r"(\d+) passed", output)
    if run.returncode != 0 or not passed or int(passed.group(1)) == 0:
        pytest.fail(f"tests/test_kernels_gpu.py on the CPU emulator: pytest exit code "
                    f"{run.returncode}, expected 0 with tests passed. Its output (the end):\n"
                    f"{output[-20000:]}", pytrace=False)


def test_the_fake_cupy_stays_out_of_this_session():
    """Only the subprocess above may import it: here the GPU tests must still skip."""
    spec = importlib.util.find_spec("cupy")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    assert origin is None or EMULATOR not in origin.parents, f"`import cupy` would load {origin}"
