"""Helpers for tests that keep documentation true (README.md, docs/): run a
snippet as a learner would, and find the files and functions a text names."""
import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_snippet(snippet, cwd, language="python", timeout=600):
    """Run a ```python or ```bash snippet in `cwd` with minift importable and one BLAS
    thread (bash finds this interpreter as `python`); returns the CompletedProcess."""
    command = [sys.executable, "-c", snippet] if language == "python" else ["bash", "-e", "-c", snippet]
    env = {"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def missing_paths(text):
    """(paths named, those of them that do not exist): `minift/...`, `tests/...`,
    `demos/...`, `kernels/...`, `benchmarks/...`, `docs/...` in backquotes, and
    `python demos/x.py` (or benchmarks/, tests/)."""
    paths = set(re.findall(r"`((?:minift|tests|demos|kernels|benchmarks|docs)/[\w/.-]+)", text))
    paths |= set(re.findall(r"python ((?:demos|tests|benchmarks)/\w+\.py)", text))
    return paths, [p for p in sorted(paths) if not (ROOT / p.split("::")[0]).exists()]


def missing_functions(text):
    """(names, those that do not exist) of every `minift/file.py:Name` or
    `minift/file.py:Class.method` in backquotes (found by parsing the file, not importing it)."""
    names = set(re.findall(r"`(minift/[\w/]+\.py):([\w.]+)`", text))
    return names, [f"{path}:{name}" for path, name in sorted(names) if not defines(ROOT / path, name)]


def defines(path, qualified_name):
    """Whether the Python file at `path` defines `qualified_name` (a function or class at top
    level, or `Class.method`)."""
    if not path.is_file():
        return False
    scope = ast.parse(path.read_text(encoding="utf-8")).body
    for part in qualified_name.split("."):
        found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part]
        if not found:
            return False
        scope = found[0].body if isinstance(found[0], ast.ClassDef) else []
    return True


DATA_FILE = re.compile(r"\.(csv|tsv|jsonl|json|txt)$")
INPUT_FLAGS = ("--train", "--test", "--corpus", "--pairs")      # flags that read a file the user gives


def commands(text):
    """The shell commands a page shows (indented or fenced lines that start with `python`,
    `pip` or `minift`), continuation lines joined, comments kept apart: [(command, comment)]."""
    lines, found = text.splitlines(), []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1].rstrip() + " " + lines[i].strip()
        if re.match(r"(python|pip|minift) ", line):
            command, _, comment = line.partition("  #")
            found.append((command.strip(), comment.strip()))
        i += 1
    return found


def missing_inputs(text, exists):
    """The data files (.csv, .tsv, .jsonl, .json, .txt) a page's commands read (after
    --train, --test, --corpus, --pairs) that neither `exists(path)` (in a fresh clone) nor
    an earlier command of the page writes (after --out, or in the directory it names),
    and any path into ../shared on a command whose comment does not say it is optional:
    [(command, path)]."""
    made, missing = set(), []
    for command, comment in commands(text):
        try:
            words = shlex.split(command)
        except ValueError:                                   # an unbalanced quote: split plainly
            words = command.split()
        reading = False
        for word, previous in zip(words, [""] + words):
            if word.startswith("--"):
                reading = word in INPUT_FLAGS
            elif "../shared" in word:
                if "optional" not in comment:
                    missing.append((command, word))
            elif previous == "--out":
                made.add(word)
            elif reading and DATA_FILE.search(word) and not exists(word) and \
                    not any(word == out or word.startswith(out.rstrip("/") + "/") for out in made):
                missing.append((command, word))
    return missing
