"""Is fine-tuning worth it on YOUR data? The baseline first, then the GPT, on the same labels.

    python demos/your_data.py --train train.csv --test test.csv     # columns text,label
    python demos/your_data.py --train train.csv --test test.csv --init runs/small
    python demos/your_data.py                                       # the built-in feedback labels
    python demos/your_data.py --quick          # the pipeline in seconds: undertrained, its numbers mean nothing

With the built-in data the full run took 21 minutes on a shared 2-core machine
(docs/experiments.md has its table); most of it is pretraining and `lora`.

It trains `bow` (logistic regression on TF-IDF token counts: no neural network), then
`scratch`, `full`, `lora` (the GPT classifier from random weights, fine-tuned whole,
with low-rank adapters) and `prompt` (the language model asked, untrained: one seed, it
has no randomness), each with --seeds fine-tuning seeds, and prints one table: accuracy
and macro-F1 as mean ± standard deviation over the seeds, bow first, then which row
wins each test set and by how much over bow.

Without --init it first pretrains a `small` GPT on the training texts alone (a short
recipe, PRETRAIN_STEPS steps): all the unlabeled text there is. That is the honest
default and often a losing one: a GPT pretrained on a few hundred texts knows little
more than the labels already say, and a bag of words learns those faster. Pretrain on
more text of your domain (`python -m minift pretrain --corpus FILE ... --out runs/mine`)
and pass --init runs/mine to see what pretraining can add. Macro-F1 is the headline: it
counts each class the same, so predicting the majority class everywhere scores badly.
"""
import argparse
import io
import sys
import time
from pathlib import Path

import minift.fast
from minift.adapt import FinetuneConfig, builtin_labeled_sets, finetune, mean_and_spread
from minift.data import load_labeled
from minift.errors import MiniftError
from minift.files import atomic_write, write_json
from minift.pretrain import PretrainConfig, pretrain
from minift.runs import FINETUNED_KINDS, PRETRAINED_KINDS, RunDir
from minift.trainer import Progress

RUNS = [("bow", "bow", {}), ("scratch", "scratch", {}), ("full", "full", {}), ("lora", "lora", {"lora_rank": 8}),
        ("prompt", "prompt", {"k": 0})]
UNSEEDED = ("prompt",)              # zero-shot prompting draws nothing at random: one run is all of it
# The init made from the training texts: the small model for half its 600 steps, to keep
# the demo short (on the 480 built-in texts, 13k tokens, its validation loss was still
# falling at step 300: 2.33, against 1.27 for runs/small on the whole corpus), and a
# smaller vocabulary (the BPE merges must come from the same few texts).
PRETRAIN_STEPS, PRETRAIN_VOCAB = 300, 1024
QUICK_PRETRAIN = dict(preset="tiny", steps=10, batch_size=8, vocab_size=300)
QUICK_EPOCHS = 1


def training_texts(args):
    """The texts of the training file (or of the built-in labels), to pretrain on."""
    if args.train is None:
        return builtin_labeled_sets()[0].texts
    return load_labeled(args.train, args.text_column, args.label_column).require_examples().texts


def make_init(args, root):
    """Pretrain a GPT on the training texts alone, into root/init (an earlier one is replaced)."""
    init = root / "init"
    RunDir(init).remove(PRETRAINED_KINDS)
    corpus = root / "corpus.txt"            # one document per text, blank lines between them
    atomic_write(corpus, "\n\n".join(" ".join(t.split()) for t in training_texts(args)).encode("utf-8"))
    settings = QUICK_PRETRAIN if args.quick else dict(preset="small", steps=PRETRAIN_STEPS, vocab_size=PRETRAIN_VOCAB)
    print(f"pretraining a {settings['preset']} GPT on the training texts ({settings['steps']} steps) into {init}")
    pretrain(init, PretrainConfig(corpus_files=[str(corpus)], **settings), device=args.device,
             log=lambda *a: None, progress=Progress(stream=io.StringIO()) if args.quick else Progress(every=50))
    return init


def run_all(args, init, root):
    """{name: [metrics of each seed]}, one line printed per run."""
    common = dict(text_column=args.text_column, label_column=args.label_column)
    if args.train:
        common.update(train_file=args.train, test_files=args.test)
    results = {}
    for seed in range(args.seeds):
        for name, strategy, settings in RUNS:
            if strategy in UNSEEDED and seed > 0:
                continue
            epochs = {"epochs": QUICK_EPOCHS} if args.quick and strategy != "prompt" else {}
            config = FinetuneConfig(strategy=strategy, seed=seed, **common, **settings, **epochs)
            out = root / f"seed-{seed}" / name
            RunDir(out).remove(FINETUNED_KINDS)          # an earlier run of this demo: rebuild it
            t0 = time.time()
            _, _, metrics = finetune(init, out, config, device=args.device, log=lambda *a: None,
                                     progress=Progress(stream=io.StringIO()))
            results.setdefault(name, []).append(metrics)
            scores = "  ".join(f"{t} macro-F1 {m['macro_f1']:.3f}" for t, m in metrics["test"].items())
            print(f"{name:<8} seed {seed}: {scores}  ({time.time() - t0:.0f} s)", flush=True)
    return results


def table(results):
    """One row per strategy: per test set, accuracy and macro-F1 as mean ± sd over the seeds."""
    tests = list(next(iter(results.values()))[0]["test"])
    header = f"{'strategy':<10}{'seeds':>6}" + "".join(f"{t + ' accuracy':>22}{'macro-F1':>16}" for t in tests)
    lines = [header, "-" * len(header)]
    for name, runs in results.items():
        line = f"{name:<10}{len(runs):>6}"
        for t in tests:
            acc, acc_sd = mean_and_spread([r["test"][t]["accuracy"] for r in runs])
            f1, f1_sd = mean_and_spread([r["test"][t]["macro_f1"] for r in runs])
            line += f"{100 * acc:>14.1f}% ± {100 * acc_sd:>4.1f}{f1:>10.3f} ± {f1_sd:.3f}"
        lines.append(line)
    return "\n".join(lines)


def verdict(results):
    """Per test set: which row has the best mean macro-F1, and by how much it beats bow
    (or, when bow is best, by how much it beats the best GPT)."""
    lines = []
    for t in next(iter(results.values()))[0]["test"]:
        stats = {name: mean_and_spread([r["test"][t]["macro_f1"] for r in runs]) for name, runs in results.items()}
        ranked = sorted(stats, key=lambda name: -stats[name][0])
        best, other = ranked[0], ranked[1] if ranked[0] == "bow" else "bow"
        gap = stats[best][0] - stats[other][0]
        noise = max(stats[best][1], stats[other][1])
        clear = " (one seed: no spread measured)" if len(results["bow"]) < 2 else \
            "" if gap > noise else " (within one standard deviation: no clear winner)"
        if best == "bow":
            lines.append(f"{t}: the bag of words wins, macro-F1 {stats[best][0]:.3f}, {gap:+.3f} over the best GPT "
                         f"({other}){clear}: here fine-tuning this GPT does not pay")
        else:
            lines.append(f"{t}: {best} wins, macro-F1 {stats[best][0]:.3f}, {gap:+.3f} over the bag of words "
                         f"(bow {stats['bow'][0]:.3f}){clear}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", metavar="FILE", help="labeled CSV / TSV / JSONL (default: the built-in labels)")
    parser.add_argument("--test", nargs="+", metavar="FILE", help="labeled test file(s); needed with --train")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--init", help="a pretrained run to fine-tune (default: pretrain one on the training texts)")
    parser.add_argument("--seeds", type=int, help="fine-tuning seeds per row (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help=f"check the pipeline in seconds: one seed, {QUICK_EPOCHS} epoch per run, a tiny init "
                             f"pretrained for {QUICK_PRETRAIN['steps']} steps (undertrained: the numbers mean nothing)")
    parser.add_argument("--runs", default="runs/your_data", help="where the runs go (default runs/your_data)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reference", action="store_true",
                        help="the plain reading path, without minift.fast's CPU speed-ups (as MINIFT_FAST=0)")
    args = parser.parse_args()
    args.seeds = args.seeds or (1 if args.quick else 3)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.train and not args.test:
        parser.error("--train needs --test: the file(s) the table scores (kept out of training)")
    if args.test and not args.train:
        parser.error("--test needs --train (without both, the built-in labels and test sets are used)")
    minift.fast.enable_unless_reference(args.reference)
    root, t0 = Path(args.runs), time.time()
    try:
        init = Path(args.init) if args.init else make_init(args, root)
        results = run_all(args, init, root)
    except MiniftError as e:
        sys.exit(f"error: {e}")
    text = table(results) + "\n\n" + verdict(results)
    if args.quick:
        text += "\n(--quick: every model undertrained on purpose, to check the pipeline; these numbers mean nothing)"
    print(f"\n{text}\n\ntotal time {time.time() - t0:.0f} s")
    keep = ("strategy", "train_seconds", "test")
    write_json(root / "summary.json", {name: [{k: m[k] for k in keep} for m in runs] for name, runs in results.items()})
    atomic_write(root / "summary.txt", text + "\n")


if __name__ == "__main__":
    main()
