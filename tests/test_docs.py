"""README.md and the pages of docs/ stay true: their Python snippets run, and every file,
test, module, function and page they name exists (so the documentation fails CI the day
it drifts from the code). docs/tour.md has its own test, tests/test_tour.py, which runs
its snippets in order in one folder."""
import re
import subprocess

import pytest
from doc_snippets import ROOT, commands, missing_functions, missing_inputs, missing_paths, run_snippet

PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "tour.md")
TEXTS = {page.relative_to(ROOT).as_posix(): page.read_text(encoding="utf-8") for page in PAGES}
SNIPPETS = [pytest.param(text, id=f"{name}:{number}")
            for name, page in TEXTS.items()
            for number, text in enumerate(re.findall(r"```python\n(.*?)```", page, re.S), start=1)]


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_every_python_snippet_runs(tmp_path, snippet):
    done = run_snippet(snippet, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", TEXTS)
def test_every_file_test_module_and_function_named_exists(name):
    text = TEXTS[name]
    _, missing = missing_paths(text)
    assert not missing, f"{name} names files that do not exist: {missing}"
    _, missing = missing_functions(text)
    assert not missing, f"{name} names functions that do not exist: {missing}"
    for path, test in re.findall(r"`(tests/\w+\.py)::(\w+)`", text):
        assert re.search(rf"^def {test}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), \
            f"{name} names {path}::{test}, which does not exist"
    for module in set(re.findall(r"python -m (minift[\w.]*)", text)):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists() or \
            (ROOT / module.replace(".", "/") / "__main__.py").exists(), f"{name} runs a module that does not exist: {module}"


def in_a_fresh_clone(path):
    """Whether git tracks `path` (a file of this checkout that `git clone` gives too)."""
    done = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("name", TEXTS)
def test_every_data_file_a_command_reads_is_in_a_fresh_clone_or_made_before(name):
    """A command that reads your data (--train, --test, --corpus, --pairs) names a file
    that a fresh clone has or that an earlier command of the page writes (`python -m
    minift data export --out reviews.csv`); ../shared/data only on a command marked optional."""
    missing = missing_inputs(TEXTS[name], in_a_fresh_clone)
    assert not missing, f"{name}: these commands read files a fresh clone does not have: {missing}"


def test_the_fresh_clone_check_can_fail():
    page = ("    python -m minift finetune --init runs/small --out runs/ft --train mine.csv\n"
            "    python -m minift data export --out reviews.csv\n"
            "    python -m minift finetune --init runs/small --out runs/ft --train reviews.csv \\\n"
            "        --test ../shared/data/x/test.csv\n"
            "    python -m minift pretrain --out r --corpus ../shared/data/y.txt   # optional: a checkout beside it\n")
    assert len(commands(page)) == 4
    assert missing_inputs(page, lambda path: False) == [
        ("python -m minift finetune --init runs/small --out runs/ft --train mine.csv", "mine.csv"),
        ("python -m minift finetune --init runs/small --out runs/ft --train reviews.csv --test "
         "../shared/data/x/test.csv", "../shared/data/x/test.csv")]


@pytest.mark.parametrize("name", TEXTS)
def test_every_link_to_a_page_or_picture_leads_somewhere(name):
    folder = (ROOT / name).parent
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXTS[name])
    missing = [t for t in targets if "://" not in t and not (folder / t).exists()]
    assert not missing, f"{name} links to files that do not exist: {missing}"


def test_the_readme_names_many_files_and_links_every_page_of_docs():
    readme = TEXTS["README.md"]
    paths, _ = missing_paths(readme)
    assert len(paths) > 10
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)\)", readme))
    assert pages <= linked, f"pages of docs/ the README never links to: {sorted(pages - linked)}"


def test_the_readme_is_a_front_page():
    """The README says what minift is and how to start; the measurements and the long
    explanations live in docs/ (DESIGN.md section 8: about 200 lines)."""
    lines = TEXTS["README.md"].count("\n")
    assert lines <= 250, f"README.md has {lines} lines: move the long parts to a page of docs/"


def test_each_promise_of_the_robustness_table_names_its_test():
    rows = [line for line in TEXTS["docs/robustness.md"].splitlines()
            if line.startswith("| ") and not line.startswith(("| when", "|---"))]
    assert len(rows) >= 20
    for row in rows:
        assert re.search(r"\| `tests/\w+\.py(::\w+)?`[^|]*\|$", row), f"a promise without its test: {row}"
