"""Helpers the tests share: load a demo or benchmark script by its path (they are not
modules of a package), write small labeled files, and cut the replay snippet out of a
failing exercise check's report."""
import csv
import importlib.util
import json


def load_script(path, name):
    """The script at `path`, imported as the module `name`, to test its functions."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_csv(path, rows, header=("text", "label")):
    """A CSV file of (text, label) rows under `header`; returns `path`."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def write_jsonl(path, rows):
    """A JSON Lines file of {"text", "label"} objects from (text, label) rows; returns `path`."""
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    return path


def replay_of(report):
    """The replay snippet of a failing `python -m minift.learn check` report, as a script."""
    lines = report.splitlines()
    start = lines.index("  replay it (paste into python, or save as a file and run it):") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return "\n".join(line[4:] for line in lines[start:end]) + "\n"
