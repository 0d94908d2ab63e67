"""What would fail on the first GPU for a reason other than the hardware, found on the
CPU: the GPU test files and the GPU appendix must at least import and call what exists.

A GPU is lent only now and then, for minutes, and the GPU test files skip everywhere
else, so nothing else ever runs them. Here, statically (ast), for each GPU test file,
tests/device_check.py, minift/bench_kernels.py, minift/cuda/*.py and the test helpers
they import:

* every import, at module level or inside a function, names a module that exists and
  names in it that exist;
* every attribute read off an imported module (`minift.backend.implementation`,
  `wrappers.ATTENTION_TILES`) exists;
* every call of one of minift's functions or classes binds to its signature (keyword
  names, argument count);
* every global name a function uses is defined (imported, assigned or a builtin).

CuPy is not installed here: names read off `cupy` are left to the emulator's run
(tests/test_kernels_emulated.py) and to the GPU.

Also: kernels/check_on_device.sh runs exactly the test files marked gpu, and setup.cfg's
gpu extra installs one CuPy wheel.
"""
import ast
import builtins
import configparser
import importlib
import importlib.util
import inspect
import re
import symtable
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
NOT_INSTALLED_HERE = {"cupy", "cupyx"}   # the GPU's Python packages

GPU_TEST_FILES = sorted(p for p in TESTS.glob("test_*.py")
                        if re.search(r"^pytestmark = pytest\.mark\.gpu\b", p.read_text(), re.M))
CHECKED = GPU_TEST_FILES + [TESTS / "device_check.py", REPO / "minift" / "bench_kernels.py"] \
    + sorted((REPO / "minift" / "cuda").glob("*.py"))


def module_name(path):
    """The dotted name `path` is imported under: minift.x.y, or the bare stem of a test file
    (pytest puts tests/ on sys.path)."""
    if not path.is_relative_to(REPO / "minift"):
        return path.stem
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import(name):
    if name.split(".")[0] in NOT_INSTALLED_HERE:
        return None
    return importlib.import_module(name)


def _absolute(node, path):
    """The absolute module name of an ImportFrom node of file `path`."""
    if not node.level:
        return node.module
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    if not package:
        raise ImportError("a relative import outside a package")
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _attribute(obj, name):
    """obj.name, or the submodule obj.name when obj is a package; AttributeError if neither."""
    if hasattr(obj, name):
        return getattr(obj, name)
    if inspect.ismodule(obj) and hasattr(obj, "__path__"):
        try:
            return importlib.import_module(f"{obj.__name__}.{name}")
        except ModuleNotFoundError:
            pass
    raise AttributeError(name)


class Walk:
    """The problems (file:line: what) of one file."""

    def __init__(self, path):
        self.path = path
        self.rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        self.tree = ast.parse(path.read_text(), str(path))
        self.problems = []
        self.bound = {}          # name -> object, for names an import binds (None: not checkable here)
        self.helpers = set()     # test helper modules this file imports (walked too)
        self.rebound = {n.id for n in ast.walk(self.tree)
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.rebound |= {a.arg for n in ast.walk(self.tree) if isinstance(n, ast.arguments)
                         for a in n.posonlyargs + n.args + n.kwonlyargs}

    def problem(self, node, text):
        text = f"{self.rel}:{node.lineno}: {text}"
        if text not in self.problems:   # a.b.c(...) is met as a call and as an attribute
            self.problems.append(text)

    def run(self):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                self.imports(node)
            elif isinstance(node, ast.ImportFrom):
                self.imports_from(node)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                self.resolve(node)
            elif isinstance(node, ast.Call):
                self.call(node)
        self.undefined_globals()
        return self

    def module(self, node, name):
        try:
            module = _import(name)
        except ImportError as e:
            self.problem(node, f"import {name}: {type(e).__name__}: {e}")
            return None
        if module is not None and Path(getattr(module, "__file__", "") or "/").parent == TESTS:
            self.helpers.add(Path(module.__file__))
        return module

    def imports(self, node):
        for alias in node.names:
            module = self.module(node, alias.name)
            if alias.asname:
                self.bound[alias.asname] = module
            else:
                top = alias.name.split(".")[0]
                self.bound[top] = None if module is None else sys.modules[top]

    def imports_from(self, node):
        try:
            name = _absolute(node, self.path)
        except ImportError as e:
            self.problem(node, f"from {'.' * node.level}{node.module or ''} import ...: {e}")
            return
        module = self.module(node, name)
        for alias in node.names:
            if alias.name == "*":
                continue
            value = None
            if module is not None:
                try:
                    value = _attribute(module, alias.name)
                except AttributeError:
                    self.problem(node, f"from {name} import {alias.name}: {name} has no {alias.name!r}")
            self.bound[alias.asname or alias.name] = value

    def chain(self, node):
        """(root name, [attributes]) of a chain a.b.c of plain names, else None."""
        attributes = []
        while isinstance(node, ast.Attribute):
            attributes.append(node.attr)
            node = node.value
        return (node.id, attributes[::-1]) if isinstance(node, ast.Name) else None

    def resolve(self, node):
        """The object a chain rooted at an imported name stands for; None when it cannot
        be followed here (not imported, rebound, or past a module or class)."""
        found = self.chain(node) if isinstance(node, ast.Attribute) else \
            (node.id, []) if isinstance(node, ast.Name) else None
        if not found or found[0] not in self.bound or found[0] in self.rebound:
            return None
        obj, seen = self.bound[found[0]], found[0]
        for attr in found[1]:
            if obj is None or not (inspect.ismodule(obj) or inspect.isclass(obj)):
                return None
            try:
                obj = _attribute(obj, attr)
            except AttributeError:
                self.problem(node, f"{seen}.{attr} does not exist")
                return None
            seen += f".{attr}"
        return obj

    def call(self, node):
        """A call of one of minift's functions or classes must bind to its signature."""
        target = self.resolve(node.func)
        if target is None or not callable(target) or not getattr(target, "__module__", "").startswith("minift"):
            return
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            return
        try:
            signature.bind(*node.args, **{k.arg: k.value for k in node.keywords})
        except TypeError as e:
            self.problem(node, f"{ast.unparse(node.func)}({', '.join(ast.unparse(a) for a in node.args)}"
                               f"{', ' if node.args and node.keywords else ''}"
                               f"{', '.join(k.arg + '=...' for k in node.keywords)}): {e}")

    def undefined_globals(self):
        table = symtable.symtable(self.path.read_text(), str(self.path), "exec")
        defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
        defined |= set(dir(builtins)) | {"__file__", "__name__", "__doc__"}

        def visit(scope):
            for symbol in scope.get_symbols():
                if symbol.is_referenced() and (symbol.is_global() or scope is table) \
                        and symbol.get_name() not in defined:
                    self.problems.append(f"{self.rel}: {scope.get_name()} uses {symbol.get_name()!r}, "
                                         f"which is never defined")
            for child in scope.get_children():
                visit(child)
        visit(table)


def walk_with_helpers(path):
    """The problems of `path` and of every test helper module it imports, transitively."""
    sys.path.insert(0, str(TESTS))
    try:
        problems, todo, done = [], [path], set()
        while todo:
            current = todo.pop()
            if current in done:
                continue
            done.add(current)
            walk = Walk(current).run()
            problems += walk.problems
            todo += sorted(walk.helpers)
        return problems
    finally:
        sys.path.remove(str(TESTS))


def test_the_gpu_test_files_are_found():
    names = {p.name for p in GPU_TEST_FILES}
    assert {"test_kernels_gpu.py", "test_gpu_model.py", "test_kernels_device_limits.py"} <= names


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_import_and_name_resolves(path):
    problems = walk_with_helpers(path)
    assert not problems, "names that do not resolve:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- the checker itself

BROKEN = '''
import numpy as np
import minift.no_such_module
from minift.pretrain import pretrain, no_such_name
from minift import backend


def f(tmp_path):
    from minift.train import load_run
    from .missing_relative import x
    backend.register_gpu("matmul", None)
    pretrain(tmp_path, corpus_files=[], steps=4)
    return undefined_name + np.pi
'''


def test_the_walk_finds_each_kind_of_problem(tmp_path):
    """The test above can fail: a file with one problem of each kind, each found."""
    broken = tmp_path / "test_broken.py"
    broken.write_text(BROKEN)
    problems = "\n".join(Walk(broken).run().problems)
    for expected in ("import minift.no_such_module: ModuleNotFoundError",
                     "minift.pretrain has no 'no_such_name'",
                     "import minift.train: ModuleNotFoundError",
                     "from .missing_relative import ...: a relative import outside a package",
                     "backend.register_gpu does not exist",
                     "pretrain(tmp_path, corpus_files=..., steps=...): ",
                     "uses 'undefined_name', which is never defined"):
        assert expected in problems, f"{expected!r} not reported; got:\n{problems}"


# ----------------------------------------------------------------------------- the check script, setup.cfg

def test_check_script_runs_exactly_the_gpu_test_files():
    script = (REPO / "kernels" / "check_on_device.sh").read_text()
    listed = re.search(r"^GPU_TESTS=\(([^)]*)\)", script, re.M)
    assert listed, "kernels/check_on_device.sh should list its test files as GPU_TESTS=(...)"
    assert sorted(listed.group(1).split()) == sorted(str(p.relative_to(REPO)) for p in GPU_TEST_FILES)


def test_gpu_extra_installs_one_cupy():
    """Two CuPy wheels (cupy-cuda12x and cupy-cuda13x) would both own the `cupy` module."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    wheels = [line.split()[0] for line in config["options.extras_require"]["gpu"].splitlines()
              if line.strip() and not line.strip().startswith("#")]
    assert len(wheels) == 1 and re.fullmatch(r"cupy(-cuda\d+x)?([<>=!~].*)?", wheels[0]), wheels
