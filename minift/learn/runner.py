"""What `python -m minift.learn` does: write a stub, load a learner's file, grade it on many
examples, and say what failed.

A stub is cut from minift's own code: the learner's file holds the exercise's
introduction, its imports and the very class or function minift runs (read from its file
in the reading path), with the body of the piece to write replaced by a TODO. The worked
solution is that code itself (`solution_source`): there is no second copy to drift.

The learner's file is loaded from its path (importlib's spec_from_file_location), under
a name of its own, so that the code graded is the learner's and never minift's: a
grader that imported minift's own op would pass everyone. Loading a file runs it, as
`python DIR/NAME.py` would; the learner asked for exactly that.
"""
import ast
import importlib.util
import json
import traceback
from pathlib import Path

import numpy as np

from ..errors import MiniftError
from ..files import atomic_write
from .exercises import EXERCISES
from .grading import HypothesisDraw, Mismatch, SeededDraw

ROOT = Path(__file__).resolve().parent.parent.parent      # the folder that holds minift/
EXAMPLES = 30


def exercise(name):
    if name not in EXERCISES:
        raise MiniftError(f"no exercise named {name!r}; `python -m minift.learn list` shows them: "
                          f"{', '.join(EXERCISES)}")
    return EXERCISES[name]


def solution_source(name):
    """The learner's file with the answer written: the exercise's introduction, its
    imports, and minift's own code of the piece, as its file in minift/ reads."""
    ex = exercise(name)
    path = ROOT / ex.source[0]
    code = "\n\n\n".join(top_level_source(path, n) for n in ex.copied)
    where = (f"    check:  python -m minift.learn check {name} DIR\n"
             f"    minift's own: {ex.reference} (this file is cut from it)\n")
    imports = f"{ex.imports}\n\n\n" if ex.imports else "\n"
    return f'"""{ex.intro}\n{where}"""\n{imports}{code}\n'


def top_level_source(path, name):
    """The source text of the top-level class, function or assignment `name` in the
    Python file `path` (decorators included)."""
    source = path.read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        found = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
            [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if name in found:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            return "\n".join(source.splitlines()[start - 1:node.end_lineno])
    raise ValueError(f"{path} defines no top-level {name}")


def stub(name):
    """The learner's starting file: solution_source(name) with the function to write
    cut down to its signature, the exercise's docstring (what it takes and returns: the
    derivative minift's own docstring states is the learner's to find), the `given`
    statements and a TODO; everything else stays."""
    ex = exercise(name)
    source = solution_source(name)
    lines = source.splitlines()
    scope = ast.parse(source).body
    for part in ex.source[1].split("."):
        fn = next(n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part)
        scope = fn.body
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    first = lines[body[0].lineno - 1]
    indent = first[:len(first) - len(first.lstrip())]
    asks = ex.asks.replace("\n", "\n" + indent)
    given = lines[body[0].lineno - 1:body[ex.given].lineno - 1]
    todo = [f"{indent}# TODO: {ex.todo}", f'{indent}raise NotImplementedError("TODO: write this part")']
    return "\n".join(lines[:fn.body[0].lineno - 1] + [f'{indent}"""{asks}"""'] + given + todo
                     + lines[fn.end_lineno:]) + "\n"


def start(name, directory):
    """Write the stub of exercise `name` to DIRECTORY/NAME.py; returns the path. Never
    overwrites: a learner's work is not thrown away by a second `start`."""
    path = Path(directory) / f"{exercise(name).name}.py"
    if path.exists():
        raise MiniftError(f"{path} already exists: check it with `python -m minift.learn check {name} "
                          f"{directory}`, or delete it to start over")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, stub(name).encode("utf-8"))
    return path


def load_learner(path, name):
    """Run the learner's file and return it as a module (its own exceptions propagate)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise MiniftError(f"{path} does not exist; start the exercise with `python -m minift.learn start "
                          f"{name} {path.parent}`")
    return load_file(path, f"minift_learner_{name}")


def load_file(path, module_name=None):
    """Run the Python file `path` and return it as a module: what a failure's replay
    snippet calls to load the learner's file."""
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(module_name or f"minift_learner_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_examples(ex, module, n=EXAMPLES, use_hypothesis=None):
    """(how the examples were drawn, None) when all n pass, or (how, (example, exception))
    for the first failing example (with hypothesis: the smallest it could shrink it to)."""
    if use_hypothesis is None:
        use_hypothesis = importlib.util.find_spec("hypothesis") is not None
    if not use_hypothesis:
        for i in range(n):
            example = ex.example(SeededDraw(i))
            try:
                ex.grade(module, example)
            except Exception as e:           # the learner's code may raise anything: report it
                return "seeded random examples", (example, e)
        return "seeded random examples", None
    # minift.testing runs hypothesis quietly (no database, nothing left in the learner's
    # folder) and returns the smallest failing example, as the suite's property tests do.
    from hypothesis import HealthCheck
    from ..testing import smallest_failure
    failure = smallest_failure(lambda data: ex.example(HypothesisDraw(data)),
                               lambda example: ex.grade(module, example),
                               n, derandomize=True, suppress_health_check=list(HealthCheck))
    return "hypothesis examples", failure


def check(name, directory=".", n=EXAMPLES, use_hypothesis=None):
    """Grade DIRECTORY/NAME.py. Returns (passed, report text)."""
    ex = exercise(name)
    path = Path(directory) / f"{ex.name}.py"
    try:
        module = load_learner(path, name)
    except MiniftError:                      # no such file: the user's mistake, one line
        raise
    except Exception as e:                   # the learner's file does not run
        e.__notes__ = []
        return False, f"FAIL  {name}: running {path} raised an error\n" + _their_traceback(e, path)
    how, failure = run_examples(ex, module, n, use_hypothesis)
    if failure is None:
        return True, (f"PASS  {name}: {n} {how} agree with minift's {ex.reference} (float64"
                      f"{', gradcheck included' if ex.gradcheck else ''})")
    example, error = failure
    lines = [f"FAIL  {name} ({path})"]
    if isinstance(error, NotImplementedError):
        lines.append(f"  {ex.writes} is still the TODO of the stub: write it, then check again")
        return False, "\n".join(lines)
    smallest = " (hypothesis shrank it to the smallest it found)" if how.startswith("hypothesis") else ""
    if isinstance(error, Mismatch):
        lines.append(f"  {error.what}")
    else:
        lines.append(f"  your code raised {type(error).__name__}: {error}")
    lines.append(f"  first failing input{smallest}:")
    lines += [f"    {key:<8} {_show(value)}" for key, value in example.items()]
    if isinstance(error, Mismatch) and error.index is not None:
        lines.append(f"  at index {error.index}: expected {error.expected:.10g}, got {error.got:.10g}   "
                     f"({error.count} of {error.size} elements differ)")
    elif not isinstance(error, Mismatch):
        lines.append(_their_traceback(error, path))
    lines.append("  replay it (paste into python, or save as a file and run it):")
    lines += [f"    {line}" for line in ex.replay(example, path.resolve())]
    lines.append(f"  stuck? python -m minift.learn hint {name} {directory}")
    return False, "\n".join(lines)


HINTS = ("the idea", "the shapes", "the formula")
HINT_STATE = ".minift-hints.json"      # in the learner's directory: how many hints each exercise has had


def hint(name, directory=".", level=None):
    """The next hint of exercise `name` (or hint number `level`, 1-3): the idea, then the
    shapes, then the formula. Returns the text. Remembers the last level given in
    DIRECTORY/.minift-hints.json, so `hint NAME` again gives the next one."""
    ex = exercise(name)
    state_path = Path(directory) / HINT_STATE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        state = {}                          # a damaged note of hints given: start again
    if level is None:
        level = min(int(state.get(name, 0)) + 1, len(HINTS))
    if not 1 <= level <= len(HINTS):
        raise MiniftError(f"--level must be 1, 2 or 3 ({', '.join(HINTS)}), got {level}")
    if Path(directory).is_dir():
        atomic_write(state_path, json.dumps({**state, name: max(level, int(state.get(name, 0)))}).encode())
    text = f"{ex.name}, hint {level} of {len(HINTS)} ({HINTS[level - 1]}):\n  {ex.hints[level - 1]}"
    if level < len(HINTS):
        return text + f"\n  (again for {HINTS[level]}: python -m minift.learn hint {name} {directory})"
    return text + f"\n  minift's own, to read once yours passes: {ex.reference}"


def _show(value):
    """An input as one line: arrays with their shape, numbers rounded."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value, precision=4, separator=", ", threshold=40).replace("\n", "")
        return f"shape {value.shape} {value.dtype}: {' '.join(text.split())}"
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return "[" + "; ".join(_show(v) for v in value) + "]"
    return repr(value)


def _their_traceback(error, path):
    """The traceback lines that are in the learner's file, and the error itself."""
    path = Path(path).resolve()
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path]
    shown = traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    return "".join("  " + line for text in shown for line in text.splitlines(True)).rstrip()
