"""The exercises (`python -m minift.learn`): every checker fails a planted wrong solution
and passes the worked one (minift's own code, cut from the reading path), grading the
learner's file (never minift's own code); `start` writes a stub with the signature, a
docstring and a TODO."""
import ast
import subprocess
import sys

import pytest
from doc_snippets import ROOT, defines
from scripts import replay_of

from minift.learn import EXERCISES, build, check, load_file, stub
from minift.learn.grading import SeededDraw
from minift.learn.runner import run_examples, solution_source

# One planted mistake per exercise (text in the worked solution, minift's own code -> the
# wrong text): the mistakes learners make (a forgotten keepdims, mean or bias correction,
# a transpose, an off-by-one).
MUTANTS = {
    "unbroadcast": ("grad.sum(axis=axes, keepdims=True)", "grad.sum(axis=axes)"),
    "softmax": ("(g * y).sum(", "g.sum("),
    "cross_entropy": ("g * w[:, None] * d", "g * d"),
    "layer_norm": ("\n                     - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))", ")"),
    "gelu": ("(1 - t * t)", "(1 - t)"),
    "causal_attention": ("ds.swapaxes(-1, -2) @ q", "ds @ q"),
    "adamw": ("m / (1 - b1 ** t)", "m"),
    "lora_merge": ("(alpha / rank)", "alpha"),
    "last_token_pooling": ("lengths - 1]", "-1]"),
    "loss_mask": ("y[:len(prompt) - 1]", "y[:len(prompt)]"),
    # build.py, forward passes: softmax and attention without the max-subtraction (they
    # overflow on the large logits the examples hold), heads reshaped without the
    # transpose (the right shape, the wrong numbers), post-norm, LoRA without alpha / r.
    "stable_softmax": ("xp.exp(x - x.max(axis=axis, keepdims=True))", "xp.exp(x)"),
    "attention_forward": ("xp.exp(s - s.max(axis=-1, keepdims=True))", "xp.exp(s)"),
    "split_heads": ("t.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)",
                    "t.reshape(B, n_head, T, C // n_head)"),
    "merge_heads": ("y.transpose(0, 2, 1, 3).reshape(B, T, H * D)", "y.reshape(B, T, H * D)"),
    "gpt_block": ("x = x + self.attn(self.ln_1(x), cache, lengths)\n        return x + self.mlp(self.ln_2(x))",
                  "x = self.ln_1(x + self.attn(x, cache, lengths))\n        return self.ln_2(x + self.mlp(x))"),
    "lora_forward": ("update * self.scale", "update"),
    # pieces.py, the whole pieces: a gradient overwritten instead of added (a tensor used
    # twice), the gradients never zeroed, top-p dropping the token that crosses the
    # threshold, pairs counted once per distinct word, the DPO margin's sign swapped
    "backward_walk": ("sums[parent] = sums[parent] + gp if parent in sums else gp", "sums[parent] = gp"),
    "train_step": ("    optimizer.zero_grad()\n", ""),
    "sampling": ("searchsorted(cumulative, top_p)) + 1]", "searchsorted(cumulative, top_p))]"),
    "bpe_merge": ("pairs[pair] += count", "pairs[pair] += 1"),
    "dpo_loss": ("ratio[:B] - ratio[B:]", "ratio[B:] - ratio[:B]"),
}

# pieces.py: a second typical mistake per exercise, each a list of (right, wrong) texts.
MORE_MUTANTS = {
    "backward_walk": [("reverse=True):\n        g = node_grads.pop(node)\n",      # oldest node first, and a
                       "reverse=False):\n        g = node_grads.pop(node, None)\n"  # node with no gradient yet skipped
                       "        if g is None:\n            continue\n")],
    "train_step": [("    norm = clip_grad_norm(optimizer.params(), grad_clip or math.inf)\n    optimizer.step()\n",
                    "    optimizer.step()\n    norm = clip_grad_norm(optimizer.params(), grad_clip or math.inf)\n")],
    "sampling": [("logits.max()) / temperature", "logits.max())"),                 # temperature after softmax
                 ("    probs /= probs.sum()\n", "    probs /= probs.sum() * temperature\n")],
    "bpe_merge": [("""        merged, i = [], 0
        while i < len(word):
            if word[i:i + 2] == pair:                       # left to right: "a a a" -> "aa a"
                merged.append(new_id)
                i += 2
            else:
                merged.append(word[i])
                i += 1
""", """        merged = list(word)
        for i in range(len(word) - 1):                      # every position where the pair starts
            if word[i:i + 2] == pair:
                merged[i:i + 2] = [new_id, None]
        merged = [t for t in merged if t is not None]
""")],
    "dpo_loss": [("* beta", "")],
}


def test_every_exercise_has_a_planted_mistake_and_names_minifts_own_code():
    assert set(MUTANTS) == set(EXERCISES)
    assert len(EXERCISES) >= 9
    for ex in EXERCISES.values():
        path, name = ex.reference.split(":")
        assert defines(ROOT / path, name), f"{ex.name}: {ex.reference} does not exist"


def write(directory, name, source):
    (directory / f"{name}.py").write_text(source, encoding="utf-8")
    return directory


@pytest.mark.parametrize("use_hypothesis", [True, False], ids=["hypothesis", "seeded"])
@pytest.mark.parametrize("name", list(EXERCISES))
def test_the_worked_solution_passes_and_a_planted_mistake_fails(tmp_path, name, use_hypothesis):
    source = solution_source(name)
    passed, report = check(name, write(tmp_path, name, source), n=15, use_hypothesis=use_hypothesis)
    assert passed, report
    assert report.startswith(f"PASS  {name}")
    right, wrong = MUTANTS[name]
    assert source.count(right) == 1
    passed, report = check(name, write(tmp_path, name, source.replace(right, wrong)), n=15,
                           use_hypothesis=use_hypothesis)
    assert not passed
    assert "first failing input" in report, report
    assert ("at index" in report and ", got " in report) or "has shape" in report, report
    assert "expected" in report, report


def test_a_stub_keeps_the_signatures_and_docstrings_and_leaves_a_todo():
    """The stub is minift's own code with the piece to write cut: every signature and
    docstring stays, but the written function's docstring says what it takes and returns
    (minift's own states the derivative: the learner's to find)."""
    for name in EXERCISES:
        ex = EXERCISES[name]
        solution, started = ast.parse(solution_source(name)), ast.parse(stub(name))
        assert ast.get_docstring(started) == ast.get_docstring(solution)
        written = ex.reference.split(":")[1].split(".")[-1]

        def defs(tree, docstrings=True):
            return {(n.name, ast.get_docstring(n) if docstrings and n.name != written else "",
                     ast.dump(n.args) if hasattr(n, "args") else "")
                    for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert defs(started) == defs(solution), name
        asked = [n for n in ast.walk(started) if isinstance(n, ast.FunctionDef) and n.name == written]
        assert [ast.get_docstring(n) for n in asked] == [ex.asks], name
        text = stub(name)
        assert "# TODO: " in text and 'raise NotImplementedError("TODO' in text
        assert MUTANTS[name][0] not in text, name          # the answer's line is cut out


def test_the_worked_solution_is_minifts_own_code():
    """No second copy: each exercise's solution holds the reading path's function, as
    its file reads."""
    for name, ex in EXERCISES.items():
        path, qualified = ex.reference.split(":")
        assert defines(ROOT / path, qualified), f"{name}: {ex.reference} does not exist"
        own = (ROOT / path).read_text(encoding="utf-8")
        top = next(n for n in ast.parse(own).body if getattr(n, "name", None) == qualified.split(".")[0])
        assert ast.get_source_segment(own, top) in solution_source(name), name
    assert not (ROOT / "minift" / "learn" / "solutions").exists()


def learn(*args, cwd):
    return subprocess.run([sys.executable, "-m", "minift.learn", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_start_check_and_hint_from_the_command_line(tmp_path):
    done = learn("start", "layer_norm", "work", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "work" / "layer_norm.py").read_text(encoding="utf-8")
    assert written == stub("layer_norm")
    assert "def backward(ctx, g):" in written and "dL/dx_j" in written
    done = learn("check", "layer_norm", "work", cwd=tmp_path)
    assert done.returncode == 1 and "still the TODO" in done.stdout, done.stdout + done.stderr
    again = learn("start", "layer_norm", "work", cwd=tmp_path)                   # never overwrites
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (tmp_path / "work" / "layer_norm.py").read_text(encoding="utf-8") == written
    (tmp_path / "work" / "layer_norm.py").write_text(solution_source("layer_norm"), encoding="utf-8")
    done = learn("check", "layer_norm", "work", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("PASS"), done.stdout + done.stderr
    assert not (tmp_path / ".hypothesis").exists()          # checking leaves nothing in the learner's folder
    done = learn("hint", "layer_norm", cwd=tmp_path)
    assert done.returncode == 0 and "rstd" in done.stdout
    done = learn("list", cwd=tmp_path)
    assert all(name in done.stdout for name in EXERCISES)
    for args in (["check", "no_such_exercise"], ["check", "softmax", "nowhere"]):
        done = learn(*args, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr


def test_errors_in_the_learners_code_point_into_the_learners_file(tmp_path):
    source = solution_source("softmax").replace("(y,) = ctx.saved", "(y,) = ctx.saved\n        y[5, 5, 5]")
    passed, report = check("softmax", write(tmp_path, "softmax", source), n=5)
    assert not passed and "your code raised IndexError" in report and "softmax.py" in report, report
    assert 'y[5, 5, 5]' in report                        # the line of the learner's file, quoted
    passed, report = check("softmax", write(tmp_path, "softmax", "import numpy as np\n1 / 0\n"), n=5)
    assert not passed and "ZeroDivisionError" in report and "1 / 0" in report, report
    passed, report = check("softmax", write(tmp_path, "softmax", "import numpy as np\n"), n=5)
    assert not passed and "defines no `Softmax`" in report, report


# ----------------------------------------------------------------------------- build.py

# More mistakes in build.py's exercises, each with what its report must name: a forward
# that saves the wrong thing for the given backward, a mask or a scale gone wrong, a
# block that forgets the residual or drops the cache and lengths.
BUILD_MISTAKES = {
    "softmax saves exp(x - max), not y": ("stable_softmax", "ctx.save(y)", "ctx.save(e)", "the gradient of x"),
    "softmax shifts by the max of the whole array": ("stable_softmax", "x.max(axis=axis, keepdims=True)", "x.max()",
                                                     "the forward output"),
    "attention without the scale": ("attention_forward", "q @ k.swapaxes(-1, -2) * ctx.scale",
                                    "q @ k.swapaxes(-1, -2)", "the forward output"),
    "attention masks the past (j < i)": ("attention_forward", "xp.where(ctx.hidden_keys(q, k),",
                                         "xp.where(ctx.hidden_keys(q, k).T,", "CausalAttention"),
    "attention saves the scores, not P": ("attention_forward", "ctx.save(q, k, v, p)", "ctx.save(q, k, v, s)",
                                          "the gradient of"),
    "block without the MLP's residual": ("gpt_block", "return x + self.mlp(", "return (", "the output"),
    "block drops cache and lengths": ("gpt_block", "self.attn(self.ln_1(x), cache, lengths)",
                                      "self.attn(self.ln_1(x))", "Block.forward"),
}


@pytest.mark.parametrize("use_hypothesis", [True, False], ids=["hypothesis", "seeded"])
@pytest.mark.parametrize("mistake", list(BUILD_MISTAKES))
def test_more_build_mistakes_fail(tmp_path, mistake, use_hypothesis):
    name, right, wrong, named = BUILD_MISTAKES[mistake]
    source = solution_source(name)
    assert source.count(right) == 1
    passed, report = check(name, write(tmp_path, name, source.replace(right, wrong)), n=15,
                           use_hypothesis=use_hypothesis)
    assert not passed and "first failing input" in report and named in report, report


def test_build_stubs_run_and_ask_for_their_todo(tmp_path):
    for ex in build.EXERCISES:
        assert ex.kind == "build" and len(set(ex.hints)) == 3, ex.name
        load_file(write(tmp_path, ex.name, stub(ex.name)) / f"{ex.name}.py")    # runs: only calling it raises
        passed, report = check(ex.name, tmp_path, n=3, use_hypothesis=False)
        assert not passed and "still the TODO" in report, report


def test_a_build_failure_replays_as_a_script(tmp_path):
    """Each build exercise's planted mistake, replayed from its first failing example
    (and the block's decoding with a KV cache): the snippet runs and prints both."""
    cases = []
    for ex in build.EXERCISES:
        right, wrong = MUTANTS[ex.name]
        path = write(tmp_path, ex.name, solution_source(ex.name).replace(right, wrong)) / f"{ex.name}.py"
        _, (example, _) = run_examples(ex, load_file(path), n=15, use_hypothesis=False)
        cases.append((ex, example, path))
    block = EXERCISES["gpt_block"]
    decoding = next(e for e in (block.example(SeededDraw(i)) for i in range(100)) if e["mode"] == "decoding")
    cases.append((block, decoding, tmp_path / "gpt_block.py"))
    for ex, example, path in cases:
        script = "\n".join(ex.replay(example, path.resolve()))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, script + done.stderr
        assert "yours" in done.stdout and "minift's" in done.stdout, done.stdout


# ----------------------------------------------------------------------------- pieces.py

@pytest.mark.parametrize("use_hypothesis", [True, False], ids=["hypothesis", "seeded"])
@pytest.mark.parametrize("name", list(MORE_MUTANTS))
def test_a_second_planted_mistake_fails_too(tmp_path, name, use_hypothesis):
    source = solution_source(name)
    for right, _ in MORE_MUTANTS[name]:
        assert source.count(right) == 1, (name, right)
    for right, wrong in MORE_MUTANTS[name]:
        source = source.replace(right, wrong)
    passed, report = check(name, write(tmp_path, name, source), n=15, use_hypothesis=use_hypothesis)
    assert not passed and "first failing input" in report, report
    assert "expected" in report, report


@pytest.mark.parametrize("name", ["backward_walk", "train_step", "sampling", "bpe_merge", "dpo_loss"])
def test_a_failures_replay_runs_as_a_script_and_shows_both_answers(tmp_path, name):
    """pieces.py: the replay a failing check prints rebuilds the failing example and
    prints the learner's answer beside minift's."""
    right, wrong = MUTANTS[name]
    passed, report = check(name, write(tmp_path, name, solution_source(name).replace(right, wrong)), n=15,
                           use_hypothesis=False)
    assert not passed
    script = tmp_path / "replay.py"
    script.write_text(replay_of(report), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "yours" in done.stdout and "minift's" in done.stdout, done.stdout
