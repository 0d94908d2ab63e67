"""README.md stays true: its Python snippets run, and every file, test and module it
names exists (so the documentation fails CI the day it drifts from the code)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("snippet", re.findall(r"```python\n(.*?)```", README, re.S))
def test_every_python_snippet_runs(tmp_path, snippet):
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
                                            "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_file_test_and_module_named_exists():
    paths = set(re.findall(r"`((?:minift|tests|demos|kernels)/[\w/.]+)", README))
    paths |= set(re.findall(r"python ((?:demos|tests)/\w+\.py)", README))
    assert len(paths) > 10
    missing = [p for p in sorted(paths) if not (ROOT / p.split("::")[0]).exists()]
    assert not missing, f"README names files that do not exist: {missing}"
    for path, test in re.findall(r"`(tests/\w+\.py)::(\w+)`", README):
        assert re.search(rf"^def {test}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), \
            f"README names {path}::{test}, which does not exist"
    for module in set(re.findall(r"python -m (minift[\w.]*)", README)):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists() or \
            (ROOT / module.replace(".", "/") / "__main__.py").exists(), f"no module {module}"
