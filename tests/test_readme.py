"""README.md stays true: its Python snippets run, and every file, test and module it
names exists (so the documentation fails CI the day it drifts from the code)."""
import re

import pytest
from doc_snippets import ROOT, missing_paths, run_snippet

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("snippet", re.findall(r"```python\n(.*?)```", README, re.S))
def test_every_python_snippet_runs(tmp_path, snippet):
    done = run_snippet(snippet, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_file_test_and_module_named_exists():
    paths, missing = missing_paths(README)
    assert len(paths) > 10
    assert not missing, f"README names files that do not exist: {missing}"
    for path, test in re.findall(r"`(tests/\w+\.py)::(\w+)`", README):
        assert re.search(rf"^def {test}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), \
            f"README names {path}::{test}, which does not exist"
    for module in set(re.findall(r"python -m (minift[\w.]*)", README)):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists() or \
            (ROOT / module.replace(".", "/") / "__main__.py").exists(), f"no module {module}"
