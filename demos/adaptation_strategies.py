"""Every adaptation strategy on the same data, side by side.

    python demos/adaptation_strategies.py             # a few minutes on a 2-core CPU
    python demos/adaptation_strategies.py --only full lora scratch

Starting from the same pretrained run (default runs/small), each strategy fine-tunes
(or, for `prompt`, just asks) on the same ~430 built-in labels (sentiment lexicon
part A) and is tested on part A and on part B, whose sentiment words appear only in
the unlabeled pretraining corpus. One table comes out: strategy, trainable
parameters, training time, accuracy and macro-F1 on both tests; with matplotlib
installed, also a bar chart (runs/strategies/strategies.png).

What to look for:
  * scratch vs full on part B: what pretraining gives that 430 labels cannot;
  * head, top-k, lora: how much of the network must change (lora trains ~2%);
  * prompt: the language model alone, zero-shot and with a few solved examples;
  * instruct: the same model taught to answer with the label word.
"""
import argparse
import sys
from pathlib import Path

from minift.adapt import FinetuneConfig, comparison_table, finetune
from minift.errors import MiniftError
from minift.files import atomic_write, write_json
from minift.runs import FINETUNED_KINDS, RunDir

# (name in the table, strategy, extra FinetuneConfig settings)
RUNS = [
    ("full", "full", {}),
    ("head", "head", {}),
    ("top-2", "top-k", {"k": 2}),
    ("lora r=8", "lora", {"lora_rank": 8}),
    ("prompt 0-shot", "prompt", {"k": 0}),
    ("prompt 3-shot", "prompt", {"k": 3}),
    ("instruct", "instruct", {}),
    ("scratch", "scratch", {}),
]


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no bar chart)")
        return
    names = list(results)
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    for shift, test, label in ((-0.2, "test_a", "part A test (words in the labels)"),
                               (0.2, "test_b", "part B test (words only in pretraining)")):
        ax.bar([i + shift for i in x], [results[n]["test"][test]["accuracy"] for n in names], width=0.4,
               label=label)
    ax.axhline(1 / 3, color="gray", lw=0.8, ls="--", label="chance")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=20)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("minift: adapting a pretrained GPT to sentiment, ~430 labels")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"bar chart: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="runs/small", help="pretraining run (default runs/small)")
    parser.add_argument("--runs", default="runs/strategies", help="where the fine-tuned runs go")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"a subset of: {[r[0] for r in RUNS]}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()

    init, root = Path(args.init), Path(args.runs)
    if not RunDir(init).is_finished():
        sys.exit(f"no pretrained model in {init}; make one first with python demos/pretrain.py "
                 f"(or python demos/quickstart.py)")
    runs = [r for r in RUNS if not args.only or r[0] in args.only]
    if not runs:
        sys.exit(f"--only matched nothing; the names are {[r[0] for r in RUNS]}")
    results = {}
    for name, strategy, extra in runs:
        out = root / name.replace(" ", "-").replace("=", "")
        print(f"\n=== {name} ===")
        try:
            RunDir(out).remove(FINETUNED_KINDS)      # an earlier run of this demo: rebuild it
            config = FinetuneConfig(strategy=strategy, seed=args.seed, **extra)
            _, _, results[name] = finetune(init, out, config, device=args.device)
        except MiniftError as e:
            sys.exit(f"error: {e}")
    table = comparison_table(results)
    print("\n" + table)
    write_json(root / "summary.json", {name: {k: m[k] for k in ("strategy", "trainable_parameters",
                                                                 "total_parameters", "train_seconds", "test")}
                                       for name, m in results.items()})
    atomic_write(root / "summary.txt", table + "\n")
    print(f"\nsaved {root}/summary.json and summary.txt")
    if len(results) > 1:
        plot(results, root / "strategies.png")


if __name__ == "__main__":
    main()
