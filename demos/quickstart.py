"""minift in one command: pretrain a small GPT, fine-tune it to classify customer
feedback, and compare with a model that had no pretraining.

    python demos/quickstart.py          # under 10 minutes on a 2-core laptop CPU

1. Pretrain the `small` GPT (4 layers, about 1M parameters) on the built-in,
   unlabeled customer-feedback corpus: next-token prediction. Kept in runs/small and
   reused on later runs (an interrupted pretraining is resumed).
2. Swap its language-model head for a 3-way classification head and fine-tune it on
   ~430 labeled reviews written with sentiment lexicon part A (`full`); also ask the
   language model itself, with no training, to complete "Review: ...\nSentiment:"
   with a label word (`prompt`).
3. Train the same classifier from random weights on the same labels (`scratch`), and a
   logistic regression on the labeled texts' token counts, TF-IDF weighted (`bow`, no
   GPT at all): the baseline a fine-tuned model has to beat to be worth its cost.
   (demos/adaptation_strategies.py compares every strategy, LoRA included.)
4. Test all of them on part A and on part B, whose sentiment words ("stellar",
   "abysmal", ...) occur only in the unlabeled corpus. The gap between `full` and
   `scratch` on part B is what pretraining taught the model.

Then try:  python -m minift classify --model runs/quickstart/full "The strap is stellar."
"""
import argparse
import sys
import time
from pathlib import Path

import minift.fast
from minift.adapt import FinetuneConfig, comparison_table, finetune
from minift.errors import MiniftError
from minift.pretrain import PretrainConfig
from minift.runs import FINETUNED_KINDS, RunDir
from pretrained_runs import ensure_pretrained

STRATEGIES = ["full", "prompt", "scratch", "bow"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="runs/small", help="pretraining run to reuse or make (default runs/small)")
    parser.add_argument("--runs", default="runs/quickstart", help="where the fine-tuned runs go")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES,
                        choices=["full", "head", "top-k", "lora", "prompt", "instruct", "scratch", "bow"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reference", action="store_true",
                        help="the plain reading path, without minift.fast's CPU speed-ups (as MINIFT_FAST=0)")
    args = parser.parse_args()
    minift.fast.enable_unless_reference(args.reference)
    init, root = Path(args.init), Path(args.runs)
    t0 = time.time()

    try:
        print("== 1. pretraining ==")
        ensure_pretrained(init, PretrainConfig(preset="small"), device=args.device, any_recipe=False)
        pretrain_seconds = time.time() - t0

        results = {}
        for strategy in args.strategies:
            print(f"\n== fine-tuning: {strategy} ==")
            out = root / strategy
            RunDir(out).remove(FINETUNED_KINDS)      # fine-tuning takes seconds: always redo it
            _, _, results[strategy] = finetune(init, out, FinetuneConfig(strategy=strategy), device=args.device)
    except MiniftError as e:
        sys.exit(f"error: {e}")

    print("\n== results (accuracy and macro-F1 on the built-in test sets) ==")
    print(comparison_table(results))
    if "full" in results and "scratch" in results:
        gain = results["full"]["test"]["test_b"]["accuracy"] - results["scratch"]["test"]["test_b"]["accuracy"]
        print(f"\nOn part B, whose sentiment words never appear in the labels, pretraining is worth "
              f"{100 * gain:+.1f} points of accuracy (full vs scratch).")
    print(f"\ntotal time {time.time() - t0:.0f} s (pretraining {pretrain_seconds:.0f} s). Try:\n"
          f"  python -m minift classify --model {root / next(iter(results))} "
          f"\"The strap is stellar.\" \"Frankly abysmal.\"")


if __name__ == "__main__":
    main()
