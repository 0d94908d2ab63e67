"""What `python -m minift.learn` does: write a stub, load a learner's file, grade it on many
examples, and say what failed.

The learner's file is loaded from its path (importlib's spec_from_file_location), under
a name of its own, so that the code graded is the learner's and never minift's: a
grader that imported minift's own op would pass everyone. Loading a file runs it, as
`python DIR/NAME.py` would; the learner asked for exactly that.
"""
import importlib.util
import re
import traceback
from pathlib import Path

import numpy as np

from ..errors import MiniftError
from ..files import atomic_write
from .exercises import EXERCISES
from .grading import HypothesisDraw, Mismatch, SeededDraw

SOLUTIONS = Path(__file__).resolve().parent / "solutions"
EXAMPLES = 30
_SOLUTION = re.compile(r"^(?P<indent>[ \t]*)# SOLUTION: (?P<todo>.*?)\n.*?^[ \t]*# END SOLUTION\n", re.M | re.S)


def exercise(name):
    if name not in EXERCISES:
        raise MiniftError(f"no exercise named {name!r}; `python -m minift.learn list` shows them: "
                          f"{', '.join(EXERCISES)}")
    return EXERCISES[name]


def solution_source(name):
    """The worked solution of exercise `name`, as its file reads."""
    return (SOLUTIONS / f"{exercise(name).name}.py").read_text(encoding="utf-8")


def stub(source):
    """The learner's starting file: `source` with every solution region replaced by its
    TODO (signature, docstring and the given lines stay)."""
    def todo(m):
        indent = m["indent"]
        return f"{indent}# TODO: {m['todo']}\n{indent}raise NotImplementedError(\"TODO: write this part\")\n"
    out, n = _SOLUTION.subn(todo, source)
    if n == 0:
        raise ValueError("a solution file without a `# SOLUTION:` region")
    return out


def start(name, directory):
    """Write the stub of exercise `name` to DIRECTORY/NAME.py; returns the path. Never
    overwrites: a learner's work is not thrown away by a second `start`."""
    path = Path(directory) / f"{exercise(name).name}.py"
    if path.exists():
        raise MiniftError(f"{path} already exists: check it with `python -m minift.learn check {name} "
                          f"{directory}`, or delete it to start over")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, stub(solution_source(name)).encode("utf-8"))
    return path


def load_learner(path, name):
    """Run the learner's file and return it as a module (its own exceptions propagate)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise MiniftError(f"{path} does not exist; start the exercise with `python -m minift.learn start "
                          f"{name} {path.parent}`")
    spec = importlib.util.spec_from_file_location(f"minift_learner_{name}", path)
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
    from hypothesis import HealthCheck, Verbosity, given, settings, strategies as st
    failures = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(st.data())
    def prop(data):
        example = ex.example(HypothesisDraw(data))
        try:
            ex.grade(module, example)
        except Exception as e:
            failures.append((example, e))
            raise
    try:
        prop()
    except Exception:
        if not failures:                     # hypothesis itself failed: a bug here, keep its traceback
            raise
    return "hypothesis examples", failures[-1] if failures else None


def check(name, directory=".", n=EXAMPLES, use_hypothesis=None):
    """Grade DIRECTORY/NAME.py. Returns (passed, report text)."""
    ex = exercise(name)
    path = Path(directory) / f"{ex.name}.py"
    try:
        module = load_learner(path, name)
    except MiniftError:                      # no such file: the user's mistake, one line
        raise
    except Exception as e:                   # the learner's file does not run
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
    lines.append(f"  stuck? python -m minift.learn hint {name}")
    return False, "\n".join(lines)


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
