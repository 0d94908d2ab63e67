"""docs/tour.md stays true: its snippets run in order in one folder, as a learner runs
them, and every function, file and exercise it names exists."""
import re

from doc_snippets import ROOT, missing_functions, missing_paths, run_snippet

from minift.learn import EXERCISES

TOUR = (ROOT / "docs" / "tour.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```(python|bash)\n(.*?)```", TOUR, re.S)
AFTER = re.findall(r"```(?:python|bash)\n.*?```(.*?)(?=```|\Z)", TOUR, re.S)     # the text after each snippet


def printed_in_look_for(text):
    """What a "Look for:" paragraph quotes as an array or a list (a backquoted fragment with
    brackets): printed output, which the snippet must print character for character."""
    paragraph = re.search(r"Look for:(.*?)(?:\n\n|\Z)", text, re.S)
    return re.findall(r"`([^`]*\[[^`]*)`", paragraph.group(1)) if paragraph else []


def test_every_snippet_runs_in_order_in_one_folder(tmp_path):
    assert len(SNIPPETS) >= 7 and len(AFTER) == len(SNIPPETS)
    quoted = 0
    for number, ((language, snippet), after) in enumerate(zip(SNIPPETS, AFTER), start=1):
        done = run_snippet(snippet, tmp_path, language)
        first_line = snippet.strip().splitlines()[0]
        assert done.returncode == 0, f"snippet {number} ({first_line}) failed:\n{done.stderr[-3000:]}"
        warned = re.findall(r"\w+Warning: .*", done.stderr)       # Python's warnings, which the tour never shows
        assert not warned, f"snippet {number} ({first_line}) prints a warning the tour does not mention: {warned}"
        for fragment in printed_in_look_for(after):
            quoted += 1
            assert fragment in done.stdout, f"snippet {number} ({first_line}) does not print `{fragment}`"
    assert quoted >= 5                                          # [3. 5. 7.], [4. 4. 4.], [ 7 16], x = [...], y = [...]
    report = (tmp_path / "full-report.html").read_text(encoding="utf-8")
    assert "confusion" in report and "stellar" in report


def test_every_function_file_and_exercise_named_exists():
    names, missing = missing_functions(TOUR)
    assert len(names) >= 20
    assert not missing, f"the tour names functions that do not exist: {missing}"
    paths, missing = missing_paths(TOUR)
    assert not missing, f"the tour names files that do not exist: {missing}"
    named = set(re.findall(r"\b(\w+)`? \(`python -m minift\.learn start", TOUR))
    named |= set(re.findall(r"minift\.learn start (\w+)", TOUR))
    named |= {n for n in EXERCISES if f"`{n}`" in TOUR}
    assert set(EXERCISES) <= named, f"exercises the tour never sends a learner to: {set(EXERCISES) - named}"
