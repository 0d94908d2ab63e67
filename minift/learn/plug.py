"""`python -m minift.learn run DIR`: your code trains the GPT.

Every exercise whose file in DIR passes `check` is put in minift's place: the function
or method its `reference` names is replaced, in its own module or class and in every
minift module that imported it, by the one in your file. Then the tiny GPT is
pretrained and fine-tuned twice on the built-in data, with the same seeds: once with
minift's own code, once with yours. If your pieces are right the two tables are the
same: losses to float32 tolerance, the same accuracy and macro-F1 on every test set.

Where they differ, the first of your functions whose results drifted is named. Each of
your pieces whose `shadow` is on runs beside minift's own on the same inputs at every
call (on copies, so neither sees the other's writes) and the first call whose results
differ beyond float32 tolerance is recorded; the run goes on with yours. A piece with
side effects (the engine's walk, a training step) cannot be shadowed: when the tables
differ and no shadow saw it, the run is redone with each of those alone to find it.

Both runs take the plain reading path (backend.plain: whatever minift.fast registered is
set aside): the fast path replaces the very functions the exercises are cut from.
"""
import contextlib
import importlib
import io
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__, backend
from ..errors import MiniftError
from ..files import read_json, write_json
from ..tensor import Tensor
from .exercises import EXERCISES
from .runner import EXAMPLES, check, load_learner

RTOL, ATOL = 1e-4, 1e-6          # float32: results agree to about 7 digits; a few steps of rounding


def passed_exercises(directory, n=EXAMPLES, out=print):
    """[(exercise, learner's module)] for every exercise file in `directory` that passes check."""
    found = []
    for ex in EXERCISES.values():
        path = Path(directory) / f"{ex.name}.py"
        if not path.is_file():
            continue
        passed, report = check(ex.name, directory, n=n)
        out(f"  {'passed' if passed else 'not passed (minift uses its own)'}: {ex.name}")
        if passed:
            found.append((ex, load_learner(path, ex.name)))
    return found


# ----------------------------------------------------------------------------- putting a piece in minift's place

def _owner(root, reference):
    """(the object that holds it, its attribute name): the function `Name` or the method
    `Class.method` that `reference` (`minift/x/y.py:...`) names, looked up in `root`,
    minift's module (None: import it) or the learner's."""
    path, qualified = reference.split(":")
    owner = importlib.import_module(path[:-3].replace("/", ".")) if root is None else root
    *outer, attr = qualified.split(".")
    for name in outer:
        owner = getattr(owner, name)
    return owner, attr


def _attribute(owner, attr):
    """What `owner` holds as `attr`: a class's own function (not a bound method), or a
    module's attribute."""
    return vars(owner)[attr] if isinstance(owner, type) else getattr(owner, attr)


@contextlib.contextmanager
def plugged(pieces, drifts, calls=None):
    """Within the block, minift runs each piece's learner's function instead of its own;
    `drifts` (a list) gets (exercise name, call number, largest difference) for each
    shadowed call whose results differed, and `calls` (a dict) how often each ran."""
    replaced = []                     # (owner, attr, original), to put back
    calls = {} if calls is None else calls
    try:
        for ex, module in pieces:
            owner, attr = _owner(None, ex.reference)
            original = _attribute(owner, attr)
            theirs = _attribute(*_owner(module, ex.reference))
            mine = _counted(ex.name, _shadowed(ex.name, theirs, original, drifts) if ex.shadow else theirs, calls)
            sites = [(owner, attr)]
            if not isinstance(owner, type):                  # also where other modules imported it
                sites += [(m, a) for name, m in list(sys.modules.items())
                          if name.startswith("minift.") and not name.startswith("minift.learn") and m is not owner
                          for a, v in list(vars(m).items()) if v is original]
            for site, a in sites:
                replaced.append((site, a, _attribute(site, a)))
                setattr(site, a, mine)
        yield
    finally:
        for site, a, value in reversed(replaced):
            setattr(site, a, value)


def _counted(name, function, calls):
    def counting(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return function(*args, **kwargs)
    counting.__wrapped__ = getattr(function, "__wrapped__", function)
    return counting


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


def _shadowed(name, learner, original, drifts):
    """`learner`, which also runs minift's `original` first on copies of the same inputs
    and records in `drifts` the first call whose results differ."""
    calls = [0]

    def both(*args, **kwargs):
        calls[0] += 1
        ctx = args[0] if args and hasattr(args[0], "needs_input_grad") else None
        if ctx is not None and original.__name__ == "forward":       # a Function's forward: a ctx of its own
            twin = type(ctx).__new__(type(ctx))
            twin.needs_input_grad = ctx.needs_input_grad
            expected = original(twin, *_copy(args[1:]), **kwargs)
        elif ctx is not None:                                         # a backward reads ctx: keep its arrays
            flag = getattr(ctx, "last_backward", False)
            ctx.last_backward = False
            expected = original(ctx, *_copy(args[1:]), **kwargs)
            ctx.last_backward = flag
        else:
            expected = original(*_copy(args), **_copy(kwargs))
        got = learner(*args, **kwargs)
        difference = _difference(got, expected)
        if difference is not None and not any(d[0] == name for d in drifts):
            drifts.append((name, calls[0], difference))
        return got
    both.__wrapped__ = learner           # (what is in minift's place, under the shadow)
    return both


def _difference(got, expected):
    """None when `got` equals `expected` to float32 tolerance, else the largest
    |got - expected| (inf for a different shape or structure)."""
    if isinstance(got, Tensor) or isinstance(expected, Tensor):
        return _difference(getattr(got, "data", got), getattr(expected, "data", expected))
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return float("inf")
        worst = [d for g, e in zip(got, expected) if (d := _difference(g, e)) is not None]
        return max(worst) if worst else None
    if expected is None or got is None:
        return None if got is expected else float("inf")
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return float("inf")
    if expected.dtype.kind not in "fc":
        return None if np.array_equal(got, expected) else float("inf")
    scale = ATOL * max(1.0, float(np.abs(expected).max(initial=0.0)))
    if np.allclose(got, expected, rtol=RTOL, atol=scale, equal_nan=True):
        return None
    return float(np.nanmax(np.abs(got.astype(np.float64) - expected)))


# ----------------------------------------------------------------------------- the recipe

def recipe(quick=False, lora=False):
    """{pretrain: settings, finetune: settings, strategies: [...]}: the tiny GPT on the
    built-in corpus and labels, fine-tuned in full (and with LoRA when the learner wrote a
    LoRA piece). quick: a few steps (a smoke test, not a lesson)."""
    strategies = ["full", "lora"] if lora else ["full"]
    if quick:
        return dict(pretrain=dict(preset="tiny", steps=12, corpus_bytes=150_000, vocab_size=400),
                    finetune=dict(max_steps=8), strategies=strategies)
    return dict(pretrain=dict(preset="tiny", steps=300, corpus_bytes=400_000, vocab_size=512),
                finetune=dict(epochs=6), strategies=strategies)


def train(root, settings, log=lambda *a: None):
    """Pretrain and fine-tune into `root` (replaced) with `settings` (a recipe); returns
    {name: metrics} with the pretraining history as "pretraining"."""
    from ..adapt import FinetuneConfig, finetune
    from ..pretrain import PretrainConfig, pretrain
    from ..runs import FINETUNED_KINDS, PRETRAINED_KINDS, RunDir
    from ..trainer import Progress
    pre, fine, strategies = settings["pretrain"], settings["finetune"], settings["strategies"]
    root = Path(root)
    quiet = Progress(stream=io.StringIO())
    RunDir(root / "pretrain").remove(PRETRAINED_KINDS)
    _, _, history = pretrain(root / "pretrain", PretrainConfig(**pre), log=log, progress=quiet)
    results = {"pretraining": history}
    for strategy in strategies:
        RunDir(root / strategy).remove(FINETUNED_KINDS)
        _, _, results[strategy] = finetune(root / "pretrain", root / strategy,
                                           FinetuneConfig(strategy=strategy, **fine), log=log, progress=quiet)
    return results


def minifts_own(root, settings, out):
    """minift's own results for `settings`: from root/results.json when an earlier `run`
    trained this recipe with this version of minift (same code, same seeds: the same
    results), else trained now."""
    saved = Path(root) / "results.json"
    if saved.is_file():
        try:
            kept = read_json(saved)
        except MiniftError:
            kept = {}                   # damaged: train again
        if kept.get("recipe") == settings and kept.get("minift") == __version__:
            out(f"\nminift's own results for this recipe: {saved} (from an earlier run)")
            return kept["results"]
    out(f"\ntraining the tiny GPT with minift's own code ({root}) ...")
    results = train(root, settings)
    write_json(saved, {"recipe": settings, "minift": __version__, "results": results})
    return read_json(saved)["results"]         # as a later run reads them back


def _series(history):
    """{"train loss": [...], "eval val_loss": [...], ...}: a trainer's history as lists of
    numbers (timings left out: they differ from run to run)."""
    series = {}
    for part, records in history.items():
        for record in records:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and "second" not in key and "per_s" not in key:
                    series.setdefault(f"{part} {key}", []).append(value)
    return series


def compare(yours, minifts):
    """Sentences saying where two runs' results differ (an empty list: the same)."""
    problems = []
    for name in minifts:
        a, b = yours[name], minifts[name]
        series_a = _series(a if name == "pretraining" else a["history"])
        series_b = _series(b if name == "pretraining" else b["history"])
        for key in series_b:
            x, y = np.asarray(series_a.get(key, []), dtype=float), np.asarray(series_b[key], dtype=float)
            if x.shape != y.shape or not np.allclose(x, y, rtol=RTOL * 10, atol=ATOL, equal_nan=True):
                step = int(np.argmax(~np.isclose(x, y, rtol=RTOL * 10, atol=ATOL))) if x.shape == y.shape else 0
                problems.append(f"{name}: {key} drifts from entry {step}")
                break
        if name != "pretraining":
            for test, r in b["test"].items():
                if any(abs(a["test"][test][k] - r[k]) > 1e-9 for k in ("accuracy", "macro_f1")):
                    problems.append(f"{name}: {test} accuracy / macro-F1 differ")
    return problems


def run(directory, quick=False, examples=EXAMPLES, out=print):
    """Plug the learner's passed exercises into minift, train with and without them, and
    say whether the results are the same. Returns True when they are."""
    with backend.plain("cpu"):
        return _run(directory, quick, examples, out)


def _run(directory, quick, examples, out):
    from ..adapt import comparison_table
    t0 = time.time()
    root = Path(directory) / "learn-run"
    out(f"checking your exercises in {directory}:")
    pieces = passed_exercises(directory, examples, out=out)
    if not pieces:
        out(f"no exercise in {directory} passes check yet: start one with `python -m minift.learn start NAME "
            f"{directory}`")
        return False
    settings = recipe(quick, lora=any(ex.name.startswith("lora") for ex, _ in pieces))
    minifts = minifts_own(root / "minift", settings, out)
    out(f"training it again with yours in minift's place ({', '.join(ex.name for ex, _ in pieces)}) ...")
    drifts, calls = [], {}
    with plugged(pieces, drifts, calls):
        yours = train(root / "yours", settings)
    ran = [f"{ex.name} ({calls[ex.name]:,} calls)" for ex, _ in pieces if calls.get(ex.name)]
    idle = [ex.name for ex, _ in pieces if not calls.get(ex.name)]
    out(f"yours ran: {', '.join(ran) or 'none'}" + (f"\nnot called by this recipe: {', '.join(idle)}" if idle else ""))
    fine = {k: v for k, v in yours.items() if k != "pretraining"}
    out("\nyour code's table (accuracy and macro-F1 on the built-in test sets):\n" + comparison_table(fine))
    problems = compare(yours, minifts)
    if not problems:
        out(f"\nthe same as minift's own run: every loss to float32 tolerance, every accuracy and macro-F1 "
            f"equal ({time.time() - t0:.0f} s). Your code trains the GPT.")
        return True
    out("\nminift's own table:\n" + comparison_table({k: v for k, v in minifts.items() if k != "pretraining"}))
    out("\nnot the same: " + "; ".join(problems))
    if drifts:
        name, call, difference = drifts[0]
        out(f"the first of your functions whose results drifted: {name} (call {call}: differs from minift's by up "
            f"to {difference:.3g}). `python -m minift.learn check {name} {directory} --examples 200` may find "
            f"a case; float32 inputs and larger shapes are what `run` adds.")
        return False
    for ex, module in pieces:                 # unshadowed pieces: one at a time
        if ex.shadow:
            continue
        with plugged([(ex, module)], []):
            alone = train(root / "yours", settings)
        if compare(alone, minifts):
            out(f"the first of your functions whose results drift: {ex.name} (with it alone in minift's place "
                f"the results differ)")
            return False
    out("no single function of yours drifts alone: it is how they work together; check each again")
    return False
