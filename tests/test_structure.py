"""The layering README.md describes, enforced: every import in minift/ (function-local ones
included) goes to a module listed earlier in README's reading order, nothing imports in a
cycle, the reading path never imports an appendix (nor threads or ctypes), no class is
patched from outside its module, functions and files stay short, and the line counts
README gives are the files' own."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minift"


def layout_rows():
    """(name, line count, description) of each row of README's table of minift/, in its
    order (`tensor.py`, `data/`, ...)."""
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("## Read the code", 1)[1].split("\n## ", 1)[0]
    return [(re.sub(r"(\.py|/)$", "", name), int(count.replace(",", "")), what)
            for name, count, what in re.findall(r"^\| `([\w/.]+)` \| ([\d,]+) \| (.*) \|$", layout, re.M)]


def reading_order():
    """Top-level module names in the order of README's table."""
    return [name for name, _, _ in layout_rows()]


def appendices():
    """The modules README's table marks as appendices (their description opens with
    "(appendix"): everything before them is the reading path."""
    return {name for name, _, what in layout_rows() if what.startswith("(appendix")}


def modules():
    """{dotted module name: path} for every .py file in minift/."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name, path, known):
    """Modules of minift that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` imports the submodule x; `from .m import name` imports m
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        # the root package is every module's parent, loaded first anyway: not an edge
        out.update(t for t in targets if t in known and t not in (name, "minift"))
    return out


def top_level(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_follow_the_reading_order_and_never_cycle():
    order = reading_order()
    assert len(order) > 10 and len(set(order)) == len(order), order
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    for name in known:
        assert top_level(name) in order or name in ("minift", "minift.__main__"), \
            f"{name} is not in README's layout table"
    for name, targets in graph.items():
        if name in ("minift", "minift.__main__"):          # the package facade and `python -m minift`
            continue
        for target in targets:
            a, b = top_level(name), top_level(target)
            if a != b:
                assert order.index(b) < order.index(a), \
                    f"{name} imports {target}, which README's reading order lists after it"
    # no cycle, within packages too (depth-first search with colours)
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join(path + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"
    for node in graph:
        if node not in state:
            visit(node, [node])


READING_PATH_NEVER_IMPORTS = {"threading", "ctypes", "concurrent", "multiprocessing"}


def test_the_reading_path_imports_no_appendix_and_no_threads():
    """A reader of the reading path meets the plain implementation of every idea: no
    module before the appendices imports one of them (minift.fast, minift.cuda, ...),
    threads or ctypes, function-local imports included."""
    order, extra = reading_order(), appendices()
    assert {"fast", "cuda", "bench"} <= extra, extra
    first_appendix = min(order.index(name) for name in extra)
    assert all(order.index(name) >= first_appendix for name in extra), "an appendix listed before the reading path ends"
    reading = set(order[:first_appendix])
    known = modules()
    for name, path in known.items():
        if top_level(name) not in reading:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                roots = set()
            assert not roots & READING_PATH_NEVER_IMPORTS, f"{name} imports {roots & READING_PATH_NEVER_IMPORTS}"
        for target in imports(name, path, known):
            assert top_level(target) not in extra, f"{name} (reading path) imports the appendix {target}"


def test_readme_line_counts_are_the_files_own():
    """README's table gives each module's size in lines: within 10% (or 15 lines) of today's."""
    for name, count, _ in layout_rows():
        path = PACKAGE / f"{name}.py"
        files = [path] if path.exists() else list((PACKAGE / name).rglob("*.py"))
        assert files, f"README's table names {name}, which is neither minift/{name}.py nor a folder"
        lines = sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files)
        assert abs(lines - count) <= max(15, count // 10), f"README says {name} has {count} lines; it has {lines}"


def test_no_class_is_patched_from_outside_its_module():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes_here = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id[:1].isupper():
                    assert t.value.id in classes_here, \
                        f"{path.relative_to(ROOT)}:{node.lineno} sets {t.value.id}.{t.attr} from outside its class"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args \
                    and isinstance(node.args[0], ast.Name) and node.args[0].id[:1].isupper():
                assert node.args[0].id in classes_here, f"{path.relative_to(ROOT)}:{node.lineno} patches a class"


def code_lines(node, source_lines):
    """Lines of code of a function: its span without the docstring, blank lines and comments."""
    skip = set()
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        skip.update(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for n in range(node.lineno, node.end_lineno + 1):
        text = source_lines[n - 1].strip()
        if n not in skip and text and not text.startswith("#"):
            count += 1
    return count


def test_functions_fit_on_a_screen_and_files_stay_short():
    long_functions, long_files = [], []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        if len(lines) > 500:
            long_files.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(node, lines)
                if n > 60:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long_files, long_files
    assert not long_functions, long_functions


def test_nothing_read_from_disk_is_unpickled_or_executed():
    """No pickle, marshal, shelve, np.load (it can unpickle), eval or exec anywhere in minift/."""
    banned_modules = {"pickle", "cPickle", "marshal", "shelve", "dill", "joblib"}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & banned_modules, where
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in banned_modules, where
            if isinstance(node, ast.Call):
                func = node.func
                assert not (isinstance(func, ast.Name) and func.id in ("eval", "exec")), where
                assert not (isinstance(func, ast.Attribute) and func.attr in ("load", "loads")
                            and getattr(func.value, "id", None) in ("np", "numpy", "pickle")), where


def function_node(path, qualified_name):
    scope = ast.parse(path.read_text(encoding="utf-8")).body
    for part in qualified_name.split("."):
        node = next(n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part)
        scope = node.body
    return node


# The reading path's budget: each of these a reader follows with the formula beside it.
READING_BUDGETS = [
    ("functional/basic.py", ["LayerNorm.forward", "LayerNorm.backward"], 25),
    ("functional/basic.py", ["Linear.backward"], 6),
    ("functional/attention.py", ["CausalAttention.forward"], 15),
    ("functional/attention.py", ["CausalAttention.backward"], 15),
    ("tensor.py", ["_walk"], 25),
    ("trainer.py", ["Trainer._train_step"], 20),
]


@pytest.mark.parametrize("file, names, budget", READING_BUDGETS)
def test_the_reading_path_fits_its_budget_of_lines(file, names, budget):
    """Code lines (docstrings, comments and blank lines left out) of the functions a
    learner comes for: within the budget that keeps them readable next to the formula."""
    path = PACKAGE / file
    lines = path.read_text(encoding="utf-8").splitlines()
    count = sum(code_lines(function_node(path, name), lines) for name in names)
    assert count <= budget, f"{file} {' + '.join(names)}: {count} code lines, over {budget}"
