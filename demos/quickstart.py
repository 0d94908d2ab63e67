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
3. Train the same classifier from random weights on the same labels (`scratch`).
   (demos/adaptation_strategies.py compares every strategy, LoRA included.)
4. Test all of them on part A and on part B, whose sentiment words ("stellar",
   "abysmal", ...) occur only in the unlabeled corpus. The gap between `full` and
   `scratch` on part B is what pretraining taught the model.

Then try:  python -m minift classify --model runs/quickstart/full "The strap is stellar."
"""
import argparse
import shutil
import sys
import time
from pathlib import Path

from minift.files import read_json
from minift.finetune import comparison_table
from minift.train import (
    CHECKPOINT, CONFIG, FINETUNED_KINDS, METRICS, PRETRAIN_RECIPES, WEIGHTS, finetune, pretrain,
)

STRATEGIES = ["full", "prompt", "scratch"]


def pretraining_state(run):
    """'done': `run` holds a finished pretraining run of today's `small` recipe on the
    built-in corpus; 'interrupted': the same, stopped before its last step; 'other': some
    other run; 'none': no run yet."""
    if not (run / CONFIG).exists():
        return "none"
    try:
        cfg, history = read_json(run / CONFIG), read_json(run / METRICS)
    except (FileNotFoundError, ValueError):
        return "other"
    recipe = cfg.get("train", {})
    same_recipe = (cfg.get("kind") == "pretrain" and recipe.get("preset") == "small"
                   and not recipe.get("corpus_files")
                   and all(recipe.get(k) == v for k, v in PRETRAIN_RECIPES["small"].items()))
    if not same_recipe:
        return "other"
    finished = bool(history.get("train")) and history["train"][-1]["step"] == recipe["steps"]
    return "done" if finished and (run / WEIGHTS).exists() else "interrupted"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="runs/small", help="pretraining run to reuse or make (default runs/small)")
    parser.add_argument("--runs", default="runs/quickstart", help="where the fine-tuned runs go")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES,
                        choices=["full", "head", "top-k", "lora", "prompt", "instruct", "scratch"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    init, root = Path(args.init), Path(args.runs)
    t0 = time.time()

    print("== 1. pretraining ==")
    state = pretraining_state(init)
    if state == "done":
        print(f"reusing the pretrained model in {init}/ (delete it to pretrain again)")
    elif state == "interrupted" and (init / CHECKPOINT).exists():
        print(f"resuming the interrupted pretraining in {init}/")
        pretrain(init, resume=True, device=args.device)
    elif state == "other":
        sys.exit(f"{init} holds another run (not today's small recipe on the built-in corpus); "
                 f"delete it or pass --init ANOTHER_DIR")
    else:
        pretrain(init, preset="small", device=args.device)
    pretrain_seconds = time.time() - t0

    results = {}
    for strategy in args.strategies:
        print(f"\n== fine-tuning: {strategy} ==")
        out = root / strategy
        if (out / CONFIG).exists() and read_json(out / CONFIG).get("kind") in FINETUNED_KINDS:
            shutil.rmtree(out)                       # fine-tuning takes seconds: always redo it
        elif out.exists() and any(out.iterdir()):
            sys.exit(f"{out} exists and is not a fine-tuned run; choose another --runs")
        _, _, results[strategy] = finetune(init, out, strategy, device=args.device)

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
