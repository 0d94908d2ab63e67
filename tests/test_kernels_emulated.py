"""minift's CUDA kernels, run on the CPU by an emulator of the GPU, through the very
script a lent GPU runs (kernels/check_on_device.sh): no GPU needed.

tests/test_kernels_gpu.py and tests/test_kernels_device_limits.py compare the kernels
with NumPy but need CuPy and a GPU, which CI does not have. This test runs
kernels/check_on_device.sh with MINIFT_CHECK_MODE=emulator: its commands then run with
tests/cuda_emulator first on PYTHONPATH, where `import cupy` finds a fake CuPy that
builds each kernel with g++ against tests/cuda_emulator/cuda_emu.h and runs it on the
CPU, every CUDA thread a fiber, and the test files keep to small sizes
(MINIFT_KERNEL_TEST_SIZES=small). The emulator's files say what it checks (races a
missing __syncthreads causes, reads of unwritten shared memory, out-of-bounds stores,
misaligned float4 loads, launch arguments, each device's shared memory limit) and what
it cannot. The script must come to its end, write every log, pass the GPU test files,
the kernel launches and the bit-for-bit repeat, and say which GPU parts it skipped.

The fake CuPy compiles exactly the text minift's loader hands to cupy.RawModule (tile
sizes prepended, kernels/attention_common.cuh pasted in), so the emulated kernels are
the ones a GPU would run. Only the script's commands see the fake CuPy, so in this
session the GPU tests still skip without a GPU. The kernels come from MINIFT_KERNEL_DIR
when it is set, as everywhere in minift, so an edited copy of a kernel can be checked
without a GPU:
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


# Every log the script writes, and how each part must end on the emulator.
PARTS = {"environment": "ok", "gpu_tests": "ok", "bench_kernels": "skipped", "bench_step_gpu": "skipped",
         "bench_step_cpu": "ok", "sanitizer_launches": "ok", "sanitizer_racecheck": "skipped",
         "sanitizer_synccheck": "skipped", "sanitizer_memcheck": "skipped", "sanitizer_initcheck": "skipped",
         "repeat": "ok"}


def emulator_env(build_dir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(EMULATOR), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MINIFT_CUDA_EMU_BUILD_DIR"] = str(build_dir)   # g++ builds, kept for this run only
    env["PYTHONDONTWRITEBYTECODE"] = "1"                # nothing written into the repository
    return env


def test_the_device_check_runs_on_the_cpu_emulator(tmp_path):
    env = emulator_env(tmp_path / "build")
    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulator needs g++, which is not installed")
    probe = subprocess.run([sys.executable, "-c", TOOLCHAIN_PROBE], cwd=REPO, env=env,
                           capture_output=True, text=True)
    if probe.returncode == 3:
        pytest.skip(f"g++ cannot build the CUDA emulator's libraries:\n{probe.stdout[-3000:]}")
    assert probe.returncode == 0, f"the fake cupy failed:\n{probe.stdout}{probe.stderr}"

    out = tmp_path / "logs"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, MINIFT_CHECK_MODE="emulator",
               PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run(["bash", str(REPO / "kernels" / "check_on_device.sh")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    output = run.stdout + run.stderr
    summary = (out / "summary.log").read_text() if (out / "summary.log").exists() else "(no summary.log)"
    if run.returncode != 0:
        pytest.fail(f"kernels/check_on_device.sh on the CPU emulator: exit code {run.returncode}, "
                    f"expected 0. Its output (the end):\n{output[-20000:]}", pytrace=False)
    for name, how in PARTS.items():
        assert (out / f"{name}.log").is_file(), f"no {name}.log; summary:\n{summary}"
        assert re.search(rf"^{name} +{how}\b", summary, re.M), f"{name} should be {how}:\n{summary}"
    tests = (out / "gpu_tests.log").read_text()
    passed = re.search(r"(\d+) passed", tests)
    assert passed and int(passed.group(1)) > 100 and not re.search(r"\d+ (failed|error)", tests), tests[-5000:]
    for name in ("sanitizer_launches", "repeat"):
        assert "all agree" in (out / f"{name}.log").read_text()


def test_the_fake_cupy_stays_out_of_this_session():
    """Only the subprocess above may import it: here the GPU tests must still skip."""
    spec = importlib.util.find_spec("cupy")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    assert origin is None or EMULATOR not in origin.parents, f"`import cupy` would load {origin}"
