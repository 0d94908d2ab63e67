"""The label-budget curve: how many labels does pretraining save, and when does it stop
mattering?

    python demos/label_budget.py             # the full curve (docs/experiments.md gives its duration)
    python demos/label_budget.py --quick     # a coarse curve in under 10 minutes, pretraining included

For N labeled reviews of the built-in world (sentiment lexicon part A; 10% of them held
out for validation), from a few dozen to a few thousand, it fine-tunes the pretrained
decoder (runs/small) and encoder (runs/small-encoder) with `full`, `lora` and `scratch`,
asks the decoder with `prompt` (zero-shot: it uses no label, so its line is flat), trains
`bow` once per budget (logistic regression on TF-IDF token counts: no GPT, only the
decoder run's tokenizer; the baseline), and tests on part A and on part B (words that
only the unlabeled corpus contains). Each point is the mean of --seeds fine-tuning
seeds, with their standard deviation. It prints one table per test set and, with
matplotlib installed, draws the curves (runs/label_budget/label_budget.png).

A pretrained model that is missing is pretrained first (demos/pretrained_runs.py): the
decoder with the `small` recipe (the one demos/quickstart.py makes), the encoder with its
own; --quick gives the encoder a shorter recipe (QUICK_ENCODER) in a directory of its
own (runs/small-encoder-quick), so that it never stands in for the full one elsewhere.

Training length: each run trains for its strategy's recipe epochs (the encoder's full
and scratch: 15, as in demos/adaptation_strategies.py), but for at least MIN_STEPS and at
most MAX_STEPS optimisation steps (a few dozen labels would otherwise stop after a
handful of updates; thousands would make LoRA's 30 epochs last an hour).

What to look for:
  * part A: `scratch` catches up with `full` as labels grow: given enough labels of
    the very words the test uses, pretraining stops mattering;
  * part B: it never does: no number of part-A labels says what "stellar" means;
  * bow: how many labels a model without pretraining, or any network, needs.
"""
import argparse
import csv
import io
import math
import sys
import time
from pathlib import Path

import minift.fast
from minift.adapt import FINETUNE_RECIPES, FinetuneConfig, finetune, mean_and_spread
from minift.data import feedback
from minift.errors import MiniftError
from minift.files import atomic_write, write_json
from minift.pretrain import PretrainConfig
from minift.runs import FINETUNED_KINDS, RunDir
from minift.trainer import Progress

BUDGETS = [60, 160, 480, 1440, 4320]     # labeled reviews; 90% train: 54 ... 432 (the built-in set) ... 3888
QUICK_BUDGETS = [60, 480, 1440]
STRATEGIES = ["full", "lora", "prompt", "scratch", "bow"]
# --quick leaves lora out: from a fresh clone on two idle cores, with it the demo took 613 s
# (pretraining both models included), its six lora runs 100 s of that; the curve's lesson,
# labels against pretraining, is full against scratch.
QUICK_STRATEGIES = ["full", "prompt", "scratch", "bow"]
NO_ENCODER = ("prompt", "bow")      # prompt reads a next-token answer; bow uses no model, its line is drawn once
ENCODER_EPOCHS = {"full": 15, "scratch": 15}      # demos/adaptation_strategies.py says why
MIN_STEPS, MAX_STEPS = 150, 1500
QUICK_MAX_STEPS = 400
VAL_FRACTION = 0.1
DECODER_DIR, ENCODER_DIR, QUICK_ENCODER_DIR = "runs/small", "runs/small-encoder", "runs/small-encoder-quick"
# The encoder --quick makes when it must: a third of the small recipe's 3,000 steps. Measured
# (432 labels, part B, one seed): its `full` classifier 60.3% against scratch's 47.3%; an
# encoder of 600 steps of 16 documents, cheaper still, gave 52.0%: too little to show anything.
QUICK_ENCODER = dict(steps=1000)


def write_labeled(path, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    atomic_write(path, out.getvalue().encode("utf-8"))
    return path


def data_files(root, budgets):
    """{N: train file}, [test_a file, test_b file]: the built-in world's reviews, written once."""
    tests = feedback.labeled_sets(seed=0, n_train=0)
    test_files = [write_labeled(root / "data" / f"{name}.csv", tests[name]) for name in ("test_a", "test_b")]
    train = {n: write_labeled(root / "data" / f"train-{n}.csv", feedback.budget_train_set(n)) for n in budgets}
    return train, test_files


def pretrained_models(args):
    """[(arch, pretraining directory, the PretrainConfig that makes it when it is missing)],
    for the architectures the chosen strategies need (the encoder answers no prompt). Without
    --encoder, --quick uses runs/small-encoder when it holds a finished run, else makes its
    shorter encoder in runs/small-encoder-quick."""
    models = [("decoder", Path(args.decoder or DECODER_DIR), PretrainConfig(preset="small"))]
    if set(args.strategies) - {"prompt"}:
        encoder = args.encoder or (QUICK_ENCODER_DIR if args.quick and not RunDir(ENCODER_DIR).is_finished()
                                   else ENCODER_DIR)
        recipe = QUICK_ENCODER if args.quick else {}
        models.append(("encoder", Path(encoder), PretrainConfig(preset="small", arch="encoder", **recipe)))
    return models


def epochs_for(arch, strategy, n_labels, max_steps):
    """The recipe's epochs, stretched to MIN_STEPS or cut to max_steps optimisation steps."""
    recipe = FINETUNE_RECIPES[strategy]
    per_epoch = math.ceil(n_labels * (1 - VAL_FRACTION) / recipe["batch_size"])
    epochs = ENCODER_EPOCHS.get(strategy, recipe["epochs"]) if arch == "encoder" else recipe["epochs"]
    epochs = max(epochs, math.ceil(MIN_STEPS / per_epoch))
    return max(1, min(epochs, max_steps // per_epoch))


def finished_with(run, init, config):
    """Whether `run` holds a finished fine-tuning of `init` with these settings (--reuse)."""
    if not run.is_finished():
        return False
    cfg = run.read_config(FINETUNED_KINDS)
    settings = {k: v for k, v in config.to_dict().items() if k != "pooling"}   # stored resolved
    return cfg.get("init") == str(Path(init).resolve()) and \
        {k: v for k, v in cfg.get("finetune", {}).items() if k != "pooling"} == settings


def run_one(init, out, arch, strategy, train_file, test_files, n_labels, seed, args):
    settings = {"epochs": epochs_for(arch, strategy, n_labels, args.max_steps)} if strategy != "prompt" else {"k": 0}
    config = FinetuneConfig(strategy=strategy, train_file=str(train_file), test_files=[str(f) for f in test_files],
                            seed=seed, val_fraction=VAL_FRACTION, **settings)
    run = RunDir(out)
    if args.reuse and finished_with(run, init, config):
        metrics = run.read_metrics()
    else:
        run.remove(FINETUNED_KINDS)                         # an earlier run of this demo: rebuild it
        _, _, metrics = finetune(init, out, config, device=args.device, log=lambda *a: None,
                                 progress=Progress(stream=io.StringIO()))
    return {"n_train": metrics["data"]["train"], "train_seconds": metrics["train_seconds"],
            "accuracy": {name: m["accuracy"] for name, m in metrics["test"].items()}}


def curves(args, budgets, train, test_files, root):
    """{(arch, strategy): {N: [result of each seed]}}, printing one line per run; each
    pretrained model is made first when it is missing."""
    from pretrained_runs import ensure_pretrained     # beside this file (loaded by path in tests/, where it is not)
    out = {}
    for arch, init, recipe in pretrained_models(args):
        ensure_pretrained(init, recipe, device=args.device)
        for strategy in args.strategies:
            if strategy in NO_ENCODER and arch == "encoder":
                continue
            # prompt uses no label: one run, drawn flat across the budgets
            sizes = budgets[:1] if strategy == "prompt" else budgets
            for n in sizes:
                seeds = [0] if strategy == "prompt" else range(args.seeds)
                for seed in seeds:
                    t0 = time.time()
                    result = run_one(init, root / arch / strategy / f"n{n}-seed{seed}", arch, strategy, train[n],
                                     test_files, n, seed, args)
                    out.setdefault((arch, strategy), {}).setdefault(n, []).append(result)
                    print(f"{arch:<8} {strategy:<8} N={n:>5} ({result['n_train']:>4} train) seed {seed}: "
                          f"part A {result['accuracy']['test_a']:.1%}  part B {result['accuracy']['test_b']:.1%}  "
                          f"({time.time() - t0:.0f} s)", flush=True)
    return out


def table(results, budgets, test):
    """Accuracy on `test` ("test_a"/"test_b"): one row per (arch, strategy), one column per budget."""
    n_train = {n: r[0]["n_train"] for points in results.values() for n, r in points.items()}
    header = f"{'model':<18}" + "".join(f"{str(n_train.get(n, n)) + ' labels':>15}" for n in budgets)
    lines = [header, "-" * len(header)]
    for (arch, strategy), points in results.items():
        line = f"{row_name(arch, strategy):<18}"
        for n in budgets:
            runs = points.get(n) or points[min(points)]     # prompt: the same at every budget
            mean, sd = mean_and_spread([r["accuracy"][test] for r in runs])
            line += f"{100 * mean:>9.1f} ±{100 * sd:>4.1f}"
        lines.append(line)
    return "\n".join(lines)


def row_name(arch, strategy):
    """A line's name in the tables and the picture: "decoder full", ...; bow uses no
    model, only the decoder run's tokenizer."""
    return "bow (no GPT)" if strategy == "bow" else f"{arch} {strategy}"


def verdict(results, budgets):
    """Where scratch catches up with full on part A (within 2 points there and at every
    larger budget: both can be poor alike with a few dozen labels), and the part-B gap."""
    lines = []
    for arch in ("decoder", "encoder"):
        full, scratch = results.get((arch, "full")), results.get((arch, "scratch"))
        if not full or not scratch:
            continue
        mean = lambda runs, t: mean_and_spread([r["accuracy"][t] for r in runs])[0]   # noqa: E731
        gap_a = [100 * (mean(full[n], "test_a") - mean(scratch[n], "test_a")) for n in budgets]
        caught = next((i for i in range(len(budgets)) if max(gap_a[i:]) <= 2.0), None)
        where = (f"from {full[budgets[caught]][0]['n_train']} labels on" if caught is not None
                 else "at none of these budgets")
        gap_b = [100 * (mean(full[n], "test_b") - mean(scratch[n], "test_b")) for n in budgets]
        lines.append(f"{arch}: on part A scratch comes within 2 points of full {where} (full leads by "
                     f"{gap_a[-1]:+.1f} at the largest budget); on part B full leads by {min(gap_b):+.1f} to "
                     f"{max(gap_b):+.1f} points at every budget")
    return "\n".join(lines)


def plot(results, budgets, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no picture, the tables above are the result)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, test, title in ((axes[0], "test_a", "part A (words in the labels)"),
                            (axes[1], "test_b", "part B (words only in pretraining)")):
        for (arch, strategy), points in results.items():
            xs = [points[n][0]["n_train"] for n in budgets if n in points]
            stats = [mean_and_spread([r["accuracy"][test] for r in points[n]]) for n in budgets if n in points]
            style = dict(ls="--" if arch == "encoder" else "-", marker="o", ms=3, capsize=2)
            if strategy == "prompt":
                ax.axhline(stats[0][0], color="gray", ls=":", label="decoder prompt (no labels)")
                continue
            ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], label=row_name(arch, strategy),
                        **style)
        ax.axhline(1 / 3, color="lightgray", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training labels")
        ax.set_title(title)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("minift: the label-budget curve (mean and standard deviation over fine-tuning seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"picture: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", help=f"pretrained decoder run (default {DECODER_DIR}; made when missing)")
    parser.add_argument("--encoder", help=f"pretrained encoder run (default {ENCODER_DIR}; made when missing; "
                                          f"--quick: {QUICK_ENCODER_DIR} unless {ENCODER_DIR} is there)")
    parser.add_argument("--runs", default="runs/label_budget", help="where the fine-tuned runs go")
    parser.add_argument("--quick", action="store_true",
                        help=f"budgets {QUICK_BUDGETS}, one seed, at most {QUICK_MAX_STEPS} steps a run, no lora, "
                             f"and a shorter encoder recipe ({QUICK_ENCODER['steps']} steps) if one must be made")
    parser.add_argument("--budgets", type=int, nargs="+", help=f"labeled reviews per run (default {BUDGETS})")
    parser.add_argument("--seeds", type=int, help="fine-tuning seeds per point (default 3; --quick 1)")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                        help=f"default {STRATEGIES}; --quick: {QUICK_STRATEGIES}")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the finished runs in --runs that have the same settings (to finish an "
                             "interrupted demo; delete the runs of a pretrained model you replaced)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reference", action="store_true",
                        help="the plain reading path, without minift.fast's CPU speed-ups (as MINIFT_FAST=0)")
    args = parser.parse_args()
    minift.fast.enable_unless_reference(args.reference)
    budgets = sorted(args.budgets or (QUICK_BUDGETS if args.quick else BUDGETS))
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.strategies = args.strategies or (QUICK_STRATEGIES if args.quick else STRATEGIES)
    args.max_steps = QUICK_MAX_STEPS if args.quick else MAX_STEPS
    if min(budgets) < 30 or args.seeds < 1:
        sys.exit("--budgets must be at least 30 labeled reviews (10 of each label) and --seeds at least 1")
    root, t0 = Path(args.runs), time.time()
    try:
        train, test_files = data_files(root, budgets)
        results = curves(args, budgets, train, test_files, root)
    except MiniftError as e:
        sys.exit(f"error: {e}")
    if not results:
        sys.exit("nothing was run: --strategies chose no run")
    title = f"accuracy %, mean ± sd over {args.seeds} fine-tuning seed(s)"
    text = "\n\n".join(part for part in [f"part A test: {title}", table(results, budgets, "test_a"),
                        f"part B test: {title}", table(results, budgets, "test_b"), verdict(results, budgets)] if part)
    print("\n" + text + f"\n\ntotal time {time.time() - t0:.0f} s")
    write_json(root / "summary.json", {f"{arch} {strategy}": {str(n): runs for n, runs in points.items()}
                                       for (arch, strategy), points in results.items()})
    atomic_write(root / "summary.txt", text + "\n")
    plot(results, budgets, root / "label_budget.png")


if __name__ == "__main__":
    main()
