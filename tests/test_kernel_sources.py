"""Checks of the CUDA kernel sources and their loader that need no GPU.

* `kernel_source` assembles the text the loader compiles (defines first, sorted).
* Every kernels/*.cu compiles with nvcc for sm_80 (A100) and sm_90 (H100), with the
  defines the loader uses (skipped where nvcc is absent).
* Every .cu opens with an explanatory comment, exports `extern "C"` kernels and
  includes no project header (CuPy's compile cache is keyed by the text alone).
* The shared-memory sizes and thread counts that minift/kernels.py launches with
  agree with the macros in the .cu files.
* `import minift.kernels` does not import CuPy.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minift import kernels

REPO = Path(__file__).resolve().parent.parent
KERNEL_FILES = sorted((REPO / "kernels").glob("*.cu"))
NVCC = shutil.which("nvcc")


def test_kernel_folder_holds_the_kernels():
    names = {p.stem for p in KERNEL_FILES}
    assert {"matmul", "attention_forward", "attention_backward"} <= names
    assert kernels.KERNEL_DIR == REPO / "kernels"


# ----------------------------------------------------------------------------- assembly

def test_source_has_sorted_defines_then_the_file(monkeypatch):
    monkeypatch.delenv("MINIFT_KERNEL_DIR", raising=False)
    text = (REPO / "kernels" / "matmul.cu").read_text()
    src = kernels.kernel_source("matmul", {"TN": 4, "BM": 64, "BK": 16})
    assert src == '#define BK 16\n#define BM 64\n#define TN 4\n#line 1 "matmul.cu"\n' + text
    # Same request, other dict order: the same text (CuPy's cache key).
    assert kernels.kernel_source("matmul", {"BK": 16, "TN": 4, "BM": 64}) == src
    assert kernels.kernel_source("matmul") == '#line 1 "matmul.cu"\n' + text
    assert kernels.kernel_source("matmul", {}) == kernels.kernel_source("matmul", None)


def test_missing_source_names_path_and_available_files(monkeypatch):
    monkeypatch.delenv("MINIFT_KERNEL_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        kernels.kernel_source("no_such_kernel")
    message = str(info.value)
    assert str(REPO / "kernels" / "no_such_kernel.cu") in message
    for name in ("matmul", "attention_forward", "attention_backward"):
        assert name in message


def test_kernel_dir_override(tmp_path, monkeypatch):
    (tmp_path / "toy.cu").write_text('extern "C" __global__ void toy() {}\n')
    monkeypatch.setenv("MINIFT_KERNEL_DIR", str(tmp_path))
    assert kernels.kernel_source("toy", {"N": 3}).endswith('extern "C" __global__ void toy() {}\n')
    with pytest.raises(FileNotFoundError, match="toy"):
        kernels.kernel_source("matmul")   # not in the override folder; lists what is


@pytest.mark.parametrize("defines", [{"BM 2": 1}, {"1BM": 1}, {"BM": "1\n#define X 2"}])
def test_bad_defines_are_refused(defines):
    with pytest.raises(ValueError):
        kernels.kernel_source("matmul", defines)


# ----------------------------------------------------------------------------- file style

@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_source_style(path):
    text = path.read_text()
    lines = text.splitlines()
    comment = []
    for line in lines:
        if not line.startswith("//"):
            break
        comment.append(line)
    assert len(comment) >= 10, f"{path.name} should open with a comment block explaining the algorithm"
    assert 'extern "C"' in text
    assert not re.search(r'#\s*include\s*"', text), f"{path.name} includes a project header"


# ----------------------------------------------------------------------------- macros vs Python

def _macro_value(source, name):
    """Integer value of an object-like macro of `source`, as the C preprocessor would
    compute it: the first #define of each name wins (the loader's come first and the
    files' defaults sit behind #ifndef), C integer division."""
    defs = {}
    for line in source.splitlines():
        m = re.match(r"\s*#define\s+(\w+)\s+(.*?)\s*(?://.*)?$", line)
        if m and m.group(1) not in defs:
            defs[m.group(1)] = m.group(2)
    expr = defs[name]
    for _ in range(50):
        new = re.sub(r"[A-Za-z_]\w*", lambda m: f"({defs[m.group(0)]})", expr)
        if new == expr:
            break
        expr = new
    return eval(expr.replace("/", "//"), {"__builtins__": {}})


@pytest.mark.parametrize("tile", [64, 32])
@pytest.mark.parametrize("head_dim", [1, 3, 16, 17, 64, 80, 128])
def test_attention_launch_sizes_match_kernel_macros(head_dim, tile):
    defines = {"HEAD_DIM": head_dim, "BR": tile, "BC": tile}
    fwd = kernels.kernel_source("attention_forward", defines)
    bwd = kernels.kernel_source("attention_backward", defines)
    sizes = kernels.attention_smem_bytes(head_dim, tile)
    assert sizes["forward"] == 4 * _macro_value(fwd, "SMEM_FLOATS")
    assert sizes["dkdv"] == 4 * _macro_value(bwd, "DKDV_SMEM_FLOATS")
    assert sizes["dq"] == 4 * _macro_value(bwd, "DQ_SMEM_FLOATS")
    threads = (tile // 4) ** 2   # what the wrappers launch
    assert _macro_value(fwd, "NUM_THREADS") == threads == _macro_value(bwd, "NUM_THREADS")
    assert _macro_value(bwd, "PREPROCESS_ROWS_PER_BLOCK") == 8   # 256 threads, rows / 8 blocks


@pytest.mark.parametrize("config", [kernels.MATMUL_LARGE, kernels.MATMUL_SMALL], ids=["large", "small"])
def test_matmul_launch_sizes_match_kernel_macros(config):
    src = kernels.kernel_source("matmul", config)
    threads = (config["BM"] // config["TM"]) * (config["BN"] // config["TN"])
    assert _macro_value(src, "NUM_THREADS") == threads
    static_smem = 4 * 2 * config["BK"] * (config["BM"] + config["BN"] + 2 * _macro_value(src, "SMEM_PAD"))
    assert static_smem <= 48 * 1024


def test_tile_choices():
    assert kernels.matmul_config(4096, 4096, 1, sm_count=132) == kernels.MATMUL_LARGE
    assert kernels.matmul_config(64, 384, 1, sm_count=132) == kernels.MATMUL_SMALL
    big = {"HEAD_DIM": 64, "BR": 64, "BC": 64}
    assert kernels.attention_config(64, max_smem=227 * 1024) == big
    assert kernels.attention_config(64, max_smem=227 * 1024, backward=True) == big
    # A GPU with less shared memory per block (99 KB: RTX 30xx/40xx) gets smaller tiles.
    assert kernels.attention_config(128, max_smem=99 * 1024, backward=True)["BR"] == 32
    with pytest.raises(RuntimeError, match="shared memory"):
        kernels.attention_config(128, max_smem=16 * 1024)


# ----------------------------------------------------------------------------- nvcc

# The defines each file is compiled with by default, then the other variants the
# wrappers may ask for (other head sizes, the smaller tiles); the variants are only
# taken to PTX, for sm_90, to keep this test quick.
COMPILE_CASES = [(p.stem, kernels.DEFAULT_DEFINES.get(p.stem, {}), arch, "cubin")
                 for p in KERNEL_FILES for arch in ("sm_80", "sm_90")]
COMPILE_CASES += [
    ("matmul", kernels.MATMUL_SMALL, "sm_90", "ptx"),
    ("attention_forward", {"HEAD_DIM": 17, "BR": 64, "BC": 64}, "sm_90", "ptx"),
    ("attention_forward", {"HEAD_DIM": 128, "BR": 32, "BC": 32}, "sm_90", "ptx"),
    ("attention_backward", {"HEAD_DIM": 17, "BR": 64, "BC": 64}, "sm_90", "ptx"),
    ("attention_backward", {"HEAD_DIM": 128, "BR": 32, "BC": 32}, "sm_90", "ptx"),
]


@pytest.mark.parametrize("name,defines,arch,output", COMPILE_CASES,
                         ids=[f"{n}-{a}-{o}-" + "-".join(f"{k}{v}" for k, v in sorted(d.items()))
                              for n, d, a, o in COMPILE_CASES])
def test_kernel_compiles_with_nvcc(tmp_path, name, defines, arch, output):
    if NVCC is None:
        pytest.skip("nvcc not found on PATH: CUDA compile check skipped")
    src = tmp_path / f"{name}.cu"
    src.write_text(kernels.kernel_source(name, defines))
    flag = "-cubin" if output == "cubin" else "--ptx"
    cmd = [NVCC, "-std=c++17", f"-arch={arch}", flag, str(src), "-o", str(tmp_path / f"out.{output}")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    assert "warning" not in result.stderr.lower(), result.stderr


# ----------------------------------------------------------------------------- no CuPy at import

def test_importing_kernels_does_not_import_cupy():
    code = "import sys, minift.kernels; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_wrappers_say_why_without_a_gpu():
    from minift.backend import cuda_is_available
    if cuda_is_available():
        pytest.skip("a GPU is present: the no-GPU message is not reachable here")
    with pytest.raises(RuntimeError, match="CuPy|GPU"):
        kernels.matmul(None, None)
