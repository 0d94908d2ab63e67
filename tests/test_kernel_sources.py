"""Checks of the CUDA kernel sources and their loader that need no GPU.

* `kernel_source` assembles the text the loader compiles (defines first, sorted, then
  the file with its headers pasted in, between #line directives).
* Every kernels/*.cu compiles with nvcc for sm_80 (A100) and sm_90 (H100), with the
  defines the loader uses (skipped where nvcc is absent); a compiler error names the
  file and line it is in, header included.
* Every .cu and .cuh opens with an explanatory comment; every .cu exports `extern "C"`
  kernels and includes only headers of kernels/, which include nothing (the loader
  pastes them in: CuPy's compile cache is keyed by the text alone).
* The shared-memory sizes and thread counts that minift/cuda launches with agree with
  the macros in the .cu files.
* `import minift.cuda` does not import CuPy.
* A wheel built from this checkout (a non-editable install) carries every kernel
  source, and the installed loader reads them; setup.cfg lists every package.
"""
import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minift import cuda

REPO = Path(__file__).resolve().parent.parent
KERNEL_FILES = sorted((REPO / "kernels").glob("*.cu"))
HEADER_FILES = sorted((REPO / "kernels").glob("*.cuh"))
NVCC = shutil.which("nvcc")


def test_kernel_folder_holds_the_kernels():
    names = {p.stem for p in KERNEL_FILES}
    assert {"matmul", "attention_forward", "attention_backward"} <= names
    assert cuda.KERNEL_DIR == REPO / "kernels"
    assert not cuda.INSTALLED_KERNEL_DIR.exists()   # a checkout reads kernels/ itself


def test_checkout_reads_the_repository_kernels(monkeypatch):
    monkeypatch.delenv("MINIFT_KERNEL_DIR", raising=False)
    assert cuda.kernel_dir() == REPO / "kernels"


# ----------------------------------------------------------------------------- assembly

def test_source_has_sorted_defines_then_the_file(monkeypatch):
    monkeypatch.delenv("MINIFT_KERNEL_DIR", raising=False)
    text = (REPO / "kernels" / "matmul.cu").read_text()
    src = cuda.kernel_source("matmul", {"TN": 4, "BM": 64, "BK": 16})
    assert src == '#define BK 16\n#define BM 64\n#define TN 4\n#line 1 "matmul.cu"\n' + text
    # Same request, other dict order: the same text (CuPy's cache key).
    assert cuda.kernel_source("matmul", {"BK": 16, "TN": 4, "BM": 64}) == src
    assert cuda.kernel_source("matmul") == '#line 1 "matmul.cu"\n' + text
    assert cuda.kernel_source("matmul", {}) == cuda.kernel_source("matmul", None)


def test_attention_sources_get_the_header_pasted_in(monkeypatch):
    monkeypatch.delenv("MINIFT_KERNEL_DIR", raising=False)
    header = (REPO / "kernels" / "attention_common.cuh").read_text()
    for name in ("attention_forward", "attention_backward"):
        lines = (REPO / "kernels" / f"{name}.cu").read_text().splitlines(keepends=True)
        at = [i for i, line in enumerate(lines) if line.startswith('#include "attention_common.cuh"')]
        assert len(at) == 1, f"{name}.cu should include attention_common.cuh once"
        i = at[0]
        expected = ('#define HEAD_DIM 16\n'
                    f'#line 1 "{name}.cu"\n' + "".join(lines[:i])
                    + '#line 1 "attention_common.cuh"\n' + header
                    + f'#line {i + 2} "{name}.cu"\n' + "".join(lines[i + 1:]))
        assert cuda.kernel_source(name, {"HEAD_DIM": 16}) == expected


def test_header_problems_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIFT_KERNEL_DIR", str(tmp_path))
    (tmp_path / "a.cu").write_text('// a\n#include "missing.cuh"\n')
    with pytest.raises(FileNotFoundError, match=r"a\.cu, line 2: .*missing\.cuh"):
        cuda.kernel_source("a")
    (tmp_path / "b.cu").write_text('#include "outer.cuh"\n')
    (tmp_path / "outer.cuh").write_text('#include "inner.cuh"\n')
    with pytest.raises(ValueError, match="outer.cuh includes another file"):
        cuda.kernel_source("b")


def test_missing_source_names_path_and_available_files(monkeypatch):
    monkeypatch.delenv("MINIFT_KERNEL_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        cuda.kernel_source("no_such_kernel")
    message = str(info.value)
    assert str(REPO / "kernels" / "no_such_kernel.cu") in message
    for name in ("matmul", "attention_forward", "attention_backward"):
        assert name in message


def test_kernel_dir_override(tmp_path, monkeypatch):
    (tmp_path / "toy.cu").write_text('extern "C" __global__ void toy() {}\n')
    monkeypatch.setenv("MINIFT_KERNEL_DIR", str(tmp_path))
    assert cuda.kernel_source("toy", {"N": 3}).endswith('extern "C" __global__ void toy() {}\n')
    with pytest.raises(FileNotFoundError, match="toy"):
        cuda.kernel_source("matmul")   # not in the override folder; lists what is


@pytest.mark.parametrize("defines", [{"BM 2": 1}, {"1BM": 1}, {"BM": "1\n#define X 2"}])
def test_bad_defines_are_refused(defines):
    with pytest.raises(ValueError):
        cuda.kernel_source("matmul", defines)


# ----------------------------------------------------------------------------- file style

def _opening_comment(text):
    comment = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        comment.append(line)
    return comment


_INCLUDE_LINE = re.compile(r'^\s*#\s*include\s*"([^"]*)"', re.M)


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_source_style(path, monkeypatch):
    text = path.read_text()
    assert len(_opening_comment(text)) >= 10, \
        f"{path.name} should open with a comment block explaining the algorithm"
    assert 'extern "C"' in text
    for header in _INCLUDE_LINE.findall(text):
        assert header.endswith(".cuh") and (path.parent / header).is_file(), \
            f"{path.name} includes {header!r}, which is not a header of kernels/"
    # What the loader compiles includes nothing: CuPy's compile cache sees the whole text.
    monkeypatch.delenv("MINIFT_KERNEL_DIR", raising=False)
    assert not _INCLUDE_LINE.search(cuda.kernel_source(path.stem)), \
        f"{path.name}: the loader left an #include in the text it compiles"


@pytest.mark.parametrize("path", HEADER_FILES, ids=lambda p: p.name)
def test_header_style(path):
    text = path.read_text()
    assert len(_opening_comment(text)) >= 10, f"{path.name} should open with a comment block"
    assert not _INCLUDE_LINE.search(text), f"{path.name} includes a file (the loader pastes one level)"


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
    fwd = cuda.kernel_source("attention_forward", defines)
    bwd = cuda.kernel_source("attention_backward", defines)
    sizes = cuda.attention_smem_bytes(head_dim, tile)
    assert sizes["forward"] == 4 * _macro_value(fwd, "SMEM_FLOATS")
    assert sizes["dkdv"] == 4 * _macro_value(bwd, "DKDV_SMEM_FLOATS")
    assert sizes["dq"] == 4 * _macro_value(bwd, "DQ_SMEM_FLOATS")
    threads = (tile // 4) ** 2   # what the wrappers launch
    assert _macro_value(fwd, "NUM_THREADS") == threads == _macro_value(bwd, "NUM_THREADS")
    assert _macro_value(bwd, "PREPROCESS_ROWS_PER_BLOCK") == 8   # 256 threads, rows / 8 blocks


@pytest.mark.parametrize("config", [cuda.MATMUL_LARGE, cuda.MATMUL_SMALL], ids=["large", "small"])
def test_matmul_launch_sizes_match_kernel_macros(config):
    src = cuda.kernel_source("matmul", config)
    threads = (config["BM"] // config["TM"]) * (config["BN"] // config["TN"])
    assert _macro_value(src, "NUM_THREADS") == threads
    static_smem = 4 * 2 * config["BK"] * (config["BM"] + config["BN"] + 2 * _macro_value(src, "SMEM_PAD"))
    assert static_smem <= 48 * 1024


def test_tile_choices():
    assert cuda.matmul_config(4096, 4096, 1, sm_count=132) == cuda.MATMUL_LARGE
    assert cuda.matmul_config(64, 384, 1, sm_count=132) == cuda.MATMUL_SMALL
    big = {"HEAD_DIM": 64, "BR": 64, "BC": 64}
    assert cuda.attention_config(64, max_smem=227 * 1024) == big
    assert cuda.attention_config(64, max_smem=227 * 1024, backward=True) == big
    # A GPU with less shared memory per block (99 KB: RTX 30xx/40xx) gets smaller tiles.
    assert cuda.attention_config(128, max_smem=99 * 1024, backward=True)["BR"] == 32
    with pytest.raises(RuntimeError, match="shared memory"):
        cuda.attention_config(128, max_smem=16 * 1024)


# ----------------------------------------------------------------------------- nvcc

# The defines each file is compiled with by default, then the other variants the
# wrappers may ask for (other head sizes, the smaller tiles); the variants are only
# taken to PTX, for sm_90, to keep this test quick.
COMPILE_CASES = [(p.stem, cuda.DEFAULT_DEFINES.get(p.stem, {}), arch, "cubin")
                 for p in KERNEL_FILES for arch in ("sm_80", "sm_90")]
COMPILE_CASES += [
    ("matmul", cuda.MATMUL_SMALL, "sm_90", "ptx"),
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
    src.write_text(cuda.kernel_source(name, defines))
    flag = "-cubin" if output == "cubin" else "--ptx"
    cmd = [NVCC, "-std=c++17", f"-arch={arch}", flag, str(src), "-o", str(tmp_path / f"out.{output}")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    assert "warning" not in result.stderr.lower(), result.stderr


def test_compiler_errors_name_the_file_and_line(tmp_path, monkeypatch):
    """A mistake in the pasted header is reported at the header's own line."""
    if NVCC is None:
        pytest.skip("nvcc not found on PATH: CUDA compile check skipped")
    kernels_copy = tmp_path / "kernels"
    shutil.copytree(REPO / "kernels", kernels_copy)
    header = kernels_copy / "attention_common.cuh"
    lines = header.read_text().splitlines(keepends=True)
    bad = next(i for i, line in enumerate(lines) if line.startswith("__device__")) + 1
    lines.insert(bad - 1, "this is not C++;\n")
    header.write_text("".join(lines))
    monkeypatch.setenv("MINIFT_KERNEL_DIR", str(kernels_copy))
    src = tmp_path / "attention_forward.cu"
    src.write_text(cuda.kernel_source("attention_forward"))
    result = subprocess.run([NVCC, "-std=c++17", "-arch=sm_90", "--ptx", str(src), "-o",
                             str(tmp_path / "out.ptx")], capture_output=True, text=True)
    assert result.returncode != 0
    assert f"attention_common.cuh({bad})" in result.stdout + result.stderr, result.stderr


# ----------------------------------------------------------------------------- no CuPy at import

def test_importing_the_gpu_appendix_does_not_import_cupy():
    code = "import sys, minift.cuda; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_wrappers_say_why_without_a_gpu():
    from minift.backend import cuda_is_available
    if cuda_is_available():
        pytest.skip("a GPU is present: the no-GPU message is not reachable here")
    with pytest.raises(RuntimeError, match="CuPy|GPU"):
        cuda.matmul(None, None)


# ----------------------------------------------------------------------------- installed with the package

def test_setup_cfg_lists_every_package():
    """setup.cfg lists its packages (to map kernels/ into the package), so a new
    sub-package of minift that is not added there would be missing from an install."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    folders = {p.parent for p in (REPO / "minift").rglob("*.py") if "__pycache__" not in p.parts}
    expected = {".".join(f.relative_to(REPO).parts) for f in folders} | {"minift.cuda.kernels"}
    assert listed == expected, (f"setup.cfg [options] packages: add {sorted(expected - listed)}, "
                                f"remove {sorted(listed - expected)}")
    assert config["options"]["package_dir"].split() == ["minift.cuda.kernels", "=", "kernels"]


def test_a_built_wheel_carries_every_kernel_source(tmp_path):
    """Build a wheel from (a copy of) this checkout, unpack it as an install would,
    and ask the installed loader for every kernel."""
    if not (importlib.util.find_spec("setuptools") and (importlib.util.find_spec("wheel") or
            importlib.util.find_spec("setuptools.command.bdist_wheel"))):
        pytest.skip("building a wheel offline needs setuptools >= 70.1 (or the wheel package)")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("minift", "kernels"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("minift-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    check = ("import json, sys, minift.cuda as c; from pathlib import Path; d = c.kernel_dir(); "
             "print(json.dumps({'dir': str(d), 'cupy': 'cupy' in sys.modules, 'sources': "
             "{p.name: p.read_text() for p in d.iterdir()}, 'compiled': "
             "[c.kernel_source(p.stem) for p in sorted(d.glob('*.cu'))]}))")
    run = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site), "MINIFT_KERNEL_DIR": ""})
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert Path(found["dir"]) == site / "minift" / "cuda" / "kernels"
    expected = {p.name: p.read_text() for p in KERNEL_FILES + HEADER_FILES}
    assert found["sources"] == expected
    assert len(found["compiled"]) == len(KERNEL_FILES) and not found["cupy"]
