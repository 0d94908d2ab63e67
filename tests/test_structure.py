"""The layering README.md describes, enforced: every import in minift/ (function-local ones
included) goes to a module listed earlier in README's reading order, nothing imports in a
cycle, no class is patched from outside its module, and functions and files stay short."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minift"


def reading_order():
    """Top-level module names in the order of README's layout table (`tensor.py`, `data/`, ...)."""
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1]
    return [re.sub(r"(\.py|/)$", "", name) for name in re.findall(r"^\| `([\w/.]+)` \|", layout, re.M)]


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
