"""benchmarks/step_vs_pytorch.py: minift's step against PyTorch's, each in its own
process. What runs without PyTorch (the refusal, the denormal count, the flush-to-zero
switch, the profiler's categories), and one tiny pair of processes end to end when
PyTorch is installed."""
import platform
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "step_vs_pytorch.py"
X86 = platform.machine().lower() in ("x86_64", "amd64")


def load():
    return load_script(SCRIPT, "step_vs_pytorch")


def test_without_torch_it_names_pip_install_torch():
    hide = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = [sys.argv[1], '--shapes', 'tiny']; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", hide, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "pip install torch" in done.stderr, done.stderr[-2000:]


def test_unknown_shapes_are_refused():
    with pytest.raises(SystemExit):
        load().parse(["--shapes", "reference,huge"])


def test_denormals_are_counted_from_the_bits():
    script = load()
    tiny = np.finfo(np.float32).tiny
    a = np.array([0.0, -0.0, tiny, tiny / 2, -tiny / 4, 1.0], np.float32)   # two denormals
    assert script.denormals({"m": [a, a[:3]], "v": []}) == {"m": 2, "v": 0}


@pytest.mark.skipif(not X86, reason="the MXCSR register is x86-64's")
def test_flush_to_zero_is_set_in_one_thread_only():
    script = load()
    seen = {}

    def thread():
        seen["bits"] = script.set_mxcsr_bits(script.FTZ_DAZ)
        seen["product"] = float((np.full(4, 1e-38, np.float32) * np.float32(0.01))[0])
    t = threading.Thread(target=thread)
    t.start()
    t.join()
    assert seen == {"bits": script.FTZ_DAZ, "product": 0.0}
    assert script.mxcsr_bits() == 0 and (np.full(4, 1e-38, np.float32) * np.float32(0.01))[0] > 0


def test_a_profiler_event_counts_in_its_outermost_category():
    script = load()

    def chain(*names):
        event = None
        for name in names:
            event = SimpleNamespace(name=name, cpu_parent=event)
        return event
    assert script.torch_category(chain("aten::linear", "aten::addmm")) == "matmul/linear"
    assert script.torch_category(chain("autograd::engine::evaluate_function: AddmmBackward0", "aten::sum")) \
        == "matmul/linear"
    assert script.torch_category(chain("aten::scaled_dot_product_attention", "aten::_softmax")) == "attention"
    assert script.torch_category(chain("Optimizer.step#AdamW.step", "aten::_foreach_mul_")) == "optimizer"
    assert script.torch_category(chain("aten::add")) == "other"


def test_one_tiny_pair_of_processes_prints_the_ratio_table():
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "tiny", "--pairs", "1", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "128" and cells[2] == "1" and float(cells[5]) > 0
