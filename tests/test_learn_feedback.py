"""What the exercises say to a learner: hints in three levels (only the last a formula),
a failure that can be replayed, a constant ratio named, and at least 20 exercises of
which 8 or more are built from the forward up."""
import contextlib
import io
import subprocess
import sys

import pytest
from doc_snippets import ROOT
from scripts import replay_of
from test_learn import MUTANTS

from minift.learn import EXERCISES, check, hint
from minift.learn.runner import solution_source


def test_at_least_20_exercises_8_of_them_forward_passes_or_whole_pieces():
    assert len(EXERCISES) >= 20, list(EXERCISES)
    assert sum(ex.kind == "build" for ex in EXERCISES.values()) >= 8
    done = subprocess.run([sys.executable, "-m", "minift.learn", "list"], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and all(name in done.stdout for name in EXERCISES), done.stdout + done.stderr
    assert f"{len(EXERCISES)} exercises" in done.stdout


@pytest.mark.parametrize("name", list(EXERCISES))
def test_three_different_hints_and_only_the_last_gives_the_formula(name):
    idea, shapes, formula = EXERCISES[name].hints
    assert len({idea, shapes, formula}) == 3
    answer = MUTANTS[name][0].strip()               # the line of the worked solution a mutant breaks
    for text in (idea, shapes):
        assert " = " not in text and answer not in text, text      # no equation, no line of the answer
    assert "=" in formula


def test_hint_gives_the_next_level_each_time_and_any_level_on_request(tmp_path):
    texts = [hint("layer_norm", tmp_path) for _ in range(4)]
    assert [t.splitlines()[0] for t in texts[:3]] == [f"layer_norm, hint {i} of 3 ({what}):" for i, what in
                                                      ((1, "the idea"), (2, "the shapes"), (3, "the formula"))]
    assert texts[3] == texts[2]                       # the formula stays the last
    assert "mean(dxhat * xhat)" in texts[2] and "mean(dxhat * xhat)" not in texts[0] + texts[1]
    assert hint("layer_norm", tmp_path, level=1) == texts[0]
    assert hint("softmax", tmp_path).startswith("softmax, hint 1 of 3")     # each exercise its own count
    done = subprocess.run([sys.executable, "-m", "minift.learn", "hint", "gelu", str(tmp_path), "--level", "2"],
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert done.returncode == 0 and "gelu, hint 2 of 3 (the shapes)" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_failure_prints_a_replay_that_runs_and_shows_both_results(tmp_path, name):
    right, wrong = MUTANTS[name]
    (tmp_path / f"{name}.py").write_text(solution_source(name).replace(right, wrong), encoding="utf-8")
    passed, report = check(name, tmp_path, n=15)
    assert not passed
    script = replay_of(report)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script, f"replay of {name}", "exec"), {})
    assert "yours" in out.getvalue() and "minift's" in out.getvalue(), script + out.getvalue()


def test_a_replay_runs_as_a_file_and_rebuilds_the_failing_numbers(tmp_path):
    source = solution_source("causal_attention").replace("dq = ds @ k * ctx.scale", "dq = ds @ k * ctx.scale * 2 ** 0.5")
    (tmp_path / "causal_attention.py").write_text(source, encoding="utf-8")
    passed, report = check("causal_attention", tmp_path, n=15)
    assert not passed
    assert "1.41421 times minift's everywhere (= sqrt(2)" in report, report      # the constant ratio, named
    got = report.split(", got ")[1].split()[0]                                   # the failing element's value
    (tmp_path / "replay.py").write_text(replay_of(report), encoding="utf-8")
    done = subprocess.run([sys.executable, "replay.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    yours = done.stdout.split("yours dL/dq:")[1].split("yours dL/dk")[0]
    assert f"{float(got):.6f}"[:7] in yours.replace("\n", " "), (got, done.stdout)


def test_a_sign_flip_is_named_and_a_scattered_error_is_not_called_constant(tmp_path):
    source = solution_source("gelu").replace("return g * (", "return -g * (")
    (tmp_path / "gelu.py").write_text(source, encoding="utf-8")
    assert "(the sign is flipped)" in check("gelu", tmp_path, n=15)[1]
    source = solution_source("gelu").replace("(1 - t * t)", "(1 - t)")
    (tmp_path / "gelu.py").write_text(source, encoding="utf-8")
    passed, report = check("gelu", tmp_path, n=15)
    assert not passed and "times minift's everywhere" not in report, report


def test_what_the_layer_norm_stub_asks_is_checked_dweight_summed_over_every_leading_axis(tmp_path):
    source = solution_source("layer_norm")
    summed = "(g * xhat).sum(axis=rows)"
    assert source.count(summed) == 1
    (tmp_path / "layer_norm.py").write_text(source.replace(summed, "(g * xhat).sum(axis=0)"), encoding="utf-8")
    passed, report = check("layer_norm", tmp_path, n=30)
    assert not passed and "weight with shape" in report, report
