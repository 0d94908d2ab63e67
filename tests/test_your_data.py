"""demos/your_data.py: the baseline and the GPT on a user's CSV, in --quick mode on a tiny
file (a tiny init pretrained on its texts, one seed, one epoch); its reading of results."""
import subprocess
import sys
from pathlib import Path

import pytest

import scripts
from minift.data import feedback

DEMO = Path(__file__).resolve().parent.parent / "demos" / "your_data.py"


def write_csv(path, rows):
    return scripts.write_csv(path, rows, header=("review", "stars"))


def run_demo(*args, cwd):
    return subprocess.run([sys.executable, str(DEMO), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_quick_mode_on_a_users_csv(tmp_path):
    sets = feedback.labeled_sets(seed=0, n_train=90, n_test=30)
    train = write_csv(tmp_path / "train.csv", sets["train"])
    test = write_csv(tmp_path / "test.csv", sets["test_a"])
    done = run_demo("--quick", "--train", str(train), "--test", str(test), "--text-column", "review",
                    "--label-column", "stars", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    rows = [line.split()[0] for line in out.splitlines() if line.split()[:1] and line.split()[0] in
            ("bow", "scratch", "full", "lora", "prompt") and "%" in line]
    assert rows == ["bow", "scratch", "full", "lora", "prompt"]                 # one table, bow first
    assert "test: " in out and ("the bag of words wins" in out or "over the bag of words" in out)
    assert (tmp_path / "runs" / "your_data" / "init" / "model.safetensors").exists()    # pretrained on its texts
    assert (tmp_path / "runs" / "your_data" / "summary.txt").read_text().startswith("strategy")


def test_train_without_test_is_refused_before_anything_runs(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("Great.", "positive"), ("Bad.", "negative")])
    done = run_demo("--quick", "--train", str(train), cwd=tmp_path)
    assert done.returncode == 2 and "--train needs --test" in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def demo():
    return scripts.load_script(DEMO, "your_data_demo")


def runs(*scores):
    return [{"test": {"t": {"accuracy": f, "macro_f1": f}}} for f in scores]


def test_the_verdict_names_the_winner_and_the_margin(demo):
    gpt_wins = {"bow": runs(0.40, 0.42), "full": runs(0.60, 0.62), "scratch": runs(0.30, 0.30)}
    assert demo.verdict(gpt_wins) == "t: full wins, macro-F1 0.610, +0.200 over the bag of words (bow 0.410)"
    bow_wins = {"bow": runs(0.41, 0.41), "full": runs(0.34, 0.38), "lora": runs(0.34, 0.34)}
    line = demo.verdict(bow_wins)
    assert line.startswith("t: the bag of words wins, macro-F1 0.410, +0.050 over the best GPT (full)")
    close = {"bow": runs(0.40, 0.50), "full": runs(0.44, 0.48)}
    assert "no clear winner" in demo.verdict(close)
    table = demo.table(bow_wins).splitlines()
    assert [line.split()[0] for line in table[2:]] == ["bow", "full", "lora"] and "0.360 ± 0.028" in table[3]
