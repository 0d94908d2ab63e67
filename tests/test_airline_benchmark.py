"""benchmarks/airline_tweets.py: the optional airline experiment. Its data is optional,
so the tests check only what runs without it: the refusal, and the labeled sample."""
import csv
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "airline_tweets.py"


def load():
    return load_script(SCRIPT, "airline_tweets")


def test_without_the_data_it_says_so_and_exits_2(tmp_path):
    copy = tmp_path / "repo" / "benchmarks" / "airline_tweets.py"    # ../shared/data: absent beside it
    copy.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, copy)
    done = subprocess.run([sys.executable, str(copy)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "needs the optional data" in done.stderr
    assert not (tmp_path / "repo" / "runs").exists()                 # nothing written


def test_the_sample_is_500_stratified_and_seeded(tmp_path):
    script = load()
    labels = ["negative"] * 700 + ["neutral"] * 200 + ["positive"] * 100
    train = SimpleNamespace(texts=[f"tweet {i}" for i in range(1000)], labels=labels)
    script.write_sample(train, tmp_path / "a.csv")
    script.write_sample(train, tmp_path / "b.csv")
    with open(tmp_path / "a.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == script.LABELS == 500
    assert Counter(r["label"] for r in rows) == {"negative": 350, "neutral": 100, "positive": 50}
    assert all(labels[int(r["text"].split()[1])] == r["label"] for r in rows)     # each text keeps its label
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
