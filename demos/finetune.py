"""Fine-tune the pretrained demo model into a sentiment classifier.

    python demos/finetune.py                          # full fine-tuning, about a minute on a CPU
    python demos/finetune.py --strategy lora          # or head, top-k, prompt, instruct, scratch, bow

It loads the pretraining run (default runs/small, made by demos/pretrain.py or
demos/quickstart.py, or pretrained here first when it is missing), discards the language-model head, puts a fresh
Linear(n_embd, 3) head on the backbone's hidden state of each review's last token,
and trains on the built-in labels: about 430 reviews written with sentiment lexicon
part A. It then reports accuracy, macro-F1, per-class precision / recall and the
confusion matrix on two test sets: part A (the words it was trained on) and part B
(sentiment words it never saw labeled, known only from pretraining).

The run directory (default runs/finetune-<strategy>) holds config.json,
tokenizer.json, model.safetensors and metrics.json; label new text with

    python -m minift classify --model runs/finetune-full "The hinge is superb."
"""
import argparse
import sys
from pathlib import Path

import minift.fast
from minift.adapt import STRATEGIES, FinetuneConfig, finetune
from minift.errors import MiniftError
from minift.pretrain import PretrainConfig
from minift.runs import FINETUNED_KINDS, RunDir
from pretrained_runs import ensure_pretrained


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="runs/small", help="pretraining run (default runs/small; made when missing)")
    parser.add_argument("--out", help="run directory to write (default runs/finetune-STRATEGY; an earlier "
                                      "fine-tuned run there is replaced)")
    parser.add_argument("--strategy", default="full", choices=STRATEGIES)
    parser.add_argument("--epochs", type=int, help="default: the strategy's recipe (adapt.FINETUNE_RECIPES)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reference", action="store_true",
                        help="the plain reading path, without minift.fast's CPU speed-ups (as MINIFT_FAST=0)")
    args = parser.parse_args()
    minift.fast.enable_unless_reference(args.reference)

    out = Path(args.out or f"runs/finetune-{args.strategy}")
    try:
        ensure_pretrained(args.init, PretrainConfig(preset="small"), device=args.device)   # when it is missing
        RunDir(out).remove(FINETUNED_KINDS)          # an earlier run of this demo: rebuild it
        config = FinetuneConfig(strategy=args.strategy, epochs=args.epochs, seed=args.seed)
        _, _, metrics = finetune(args.init, out, config, device=args.device)
    except MiniftError as e:
        sys.exit(f"error: {e}")
    a, b = metrics["test"]["test_a"], metrics["test"]["test_b"]
    print(f"\n{args.strategy}: {metrics['trainable_parameters']:,} of {metrics['total_parameters']:,} "
          f"parameters trained in {metrics['train_seconds']:.0f} s")
    print(f"part A test (words seen in the labels): accuracy {a['accuracy']:.1%}, macro-F1 {a['macro_f1']:.3f}")
    print(f"part B test (words seen only in pretraining): accuracy {b['accuracy']:.1%}, "
          f"macro-F1 {b['macro_f1']:.3f}")
    print(f"saved {out}/; try:\n  python -m minift classify --model {out} \"The hinge is superb.\"")


if __name__ == "__main__":
    main()
