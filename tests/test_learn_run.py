"""`python -m minift.learn run DIR`: the learner's passed exercises in minift's place train
the tiny GPT; with minift's own code copied in, the results are minift's; with one
planted drift (a piece that passes `check` but is wrong on shapes check never draws),
the drifting function is named."""
import subprocess
import sys

from doc_snippets import ROOT

import minift.functional as F
from minift.learn import EXERCISES
from minift.learn.plug import plugged, run
from minift.learn.runner import load_learner, solution_source

DRIFT = ("        x, t = ctx.saved\n",
         "        x, t = ctx.saved\n        if x.size > 1000:\n            g = g * 1.01     # only where check never looks\n")


def copy_solutions(directory, names=None):
    for name in names or EXERCISES:
        (directory / f"{name}.py").write_text(solution_source(name), encoding="utf-8")
    return directory


def test_minifts_own_code_copied_in_trains_to_minifts_results(tmp_path):
    lines = []
    assert run(copy_solutions(tmp_path), quick=True, examples=3, out=lines.append), "\n".join(lines)
    text = "\n".join(lines)
    assert all(f"passed: {name}" in text for name in EXERCISES), text
    assert "the same as minift's own run" in text and "test_a acc" in text, text


def test_a_planted_drift_is_named(tmp_path):
    copy_solutions(tmp_path, ["gelu", "softmax"])
    source = solution_source("gelu")
    assert source.count(DRIFT[0]) == 1
    (tmp_path / "gelu.py").write_text(source.replace(*DRIFT), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "minift.learn", "run", str(tmp_path), "--quick", "--examples", "3"],
                          capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "passed: gelu" in done.stdout                  # check cannot see it ...
    assert "not the same" in done.stdout and "minift's own table" in done.stdout, done.stdout
    assert "the first of your functions whose results drifted: gelu" in done.stdout, done.stdout   # ... run does


def test_plugging_puts_the_learners_piece_in_place_and_back(tmp_path):
    copy_solutions(tmp_path, ["gelu", "adamw"])
    pieces = [(EXERCISES[n], load_learner(tmp_path / f"{n}.py", n)) for n in ("gelu", "adamw")]
    import minift.optim as optim
    own_backward, own_step = F.GELU.backward, optim.adamw_step
    with plugged(pieces, []):
        assert F.GELU.backward is not own_backward
        assert optim.adamw_step is not own_step
        assert getattr(optim.adamw_step, "__wrapped__", None).__module__ == "minift_learner_adamw"
        holding = [name for name, m in sys.modules.items() if name.startswith("minift.")
                   and not name.startswith("minift.learn") and own_step in vars(m).values()]
        assert not holding, holding                       # every module that imported it sees the learner's
    assert F.GELU.backward is own_backward and optim.adamw_step is own_step


def test_the_learners_code_runs_on_the_plain_path_even_with_the_appendix_on():
    import minift.fast
    from minift import backend
    was = minift.fast.is_enabled()
    minift.fast.enable()
    try:
        fast = backend.registered("cpu")
        assert fast                                   # the appendix replaces ops...
        with backend.plain("cpu", layer_norm=F.LayerNorm):
            assert backend.registered("cpu") == ["layer_norm"]          # ... not inside plain()
        assert backend.registered("cpu") == fast                        # and is back afterwards
    finally:
        if not was:
            minift.fast.disable()


def test_minifts_own_results_are_trained_once_per_recipe_and_version(tmp_path, monkeypatch):
    from minift.learn import plug
    trained = []
    monkeypatch.setattr(plug, "train", lambda root, settings: trained.append(settings) or {"pretraining": {"x": 1}})
    quick, full = plug.recipe(quick=True), plug.recipe(quick=True, lora=True)
    assert plug.minifts_own(tmp_path, quick, out=print) == {"pretraining": {"x": 1}}
    assert plug.minifts_own(tmp_path, quick, out=print) == {"pretraining": {"x": 1}}
    assert trained == [quick]                                   # the second time from results.json
    plug.minifts_own(tmp_path, full, out=print)                 # another recipe: trained again
    monkeypatch.setattr(plug, "__version__", "0.0.0-other")
    plug.minifts_own(tmp_path, full, out=print)                 # another minift: trained again
    assert trained == [quick, full, full]
    (tmp_path / "results.json").write_text("{damaged", encoding="utf-8")
    plug.minifts_own(tmp_path, full, out=print)
    assert len(trained) == 4
