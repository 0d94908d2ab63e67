"""Pretrain the `small` GPT on the built-in customer-feedback corpus.

    python demos/pretrain.py                 # about 5 minutes on a 2-core laptop CPU
    python demos/pretrain.py --steps 200     # a quicker look

What to watch: the validation loss (cross-entropy of the next token, in nats) falls
from about log(vocab size) = 7.6 (uniform guessing) to below 2, and the samples turn
from random tokens into plausible reviews. The run is saved in runs/small (weights,
tokenizer, config, metrics.json) for demos/finetune.py and `python -m minift generate`.
"""
import argparse
import sys
import time
from pathlib import Path

import minift.fast
from minift.errors import MiniftError
from minift.generate import generate
from minift.pretrain import PretrainConfig, pretrain
from minift.runs import PRETRAINED_KINDS, RunDir

PROMPTS = ["The battery", "I love", "Review: The room was", "The kettle is not"]


def samples(model, tokenizer, title, temperature=0.8):
    print(f"\n--- {title} ---")
    for i, prompt in enumerate(PROMPTS):
        ids = generate(model, tokenizer.encode(prompt), 30, temperature=temperature, top_k=40, seed=i,
                       eos_id=tokenizer.eot_id)
        print(f"  {prompt}|{tokenizer.decode(ids)!r}")


def plot(history, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no loss-curve PNG)")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    train = history["train"]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, alpha=0.6, label="train (batch)")
    ev = history["eval"]
    ax.plot([r["step"] for r in ev], [r["val_loss"] for r in ev], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("minift: pretraining the small GPT on the feedback corpus")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"loss curve: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/small", help="run directory (default runs/small)")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: the small recipe)")
    parser.add_argument("--fresh", action="store_true", help="delete an existing run in --out first")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reference", action="store_true",
                        help="the plain reading path, without minift.fast's CPU speed-ups (as MINIFT_FAST=0)")
    args = parser.parse_args()
    minift.fast.enable_unless_reference(args.reference)
    out = Path(args.out)
    if args.fresh:
        RunDir(out).remove(PRETRAINED_KINDS)    # only ever a pretraining run

    t0 = time.time()
    try:
        # Step 0 only (until=0): the tokenizer and the seeded initial weights, which write random tokens.
        model, tokenizer, _ = pretrain(out, PretrainConfig(preset="small", steps=args.steps), until=0,
                                       device=args.device)
        samples(model, tokenizer, "samples before pretraining")
        print()
        model, tokenizer, history = pretrain(out, resume=True, device=args.device)
    except MiniftError as e:
        sys.exit(f"error: {e}" + (" (or pass --fresh)" if "already holds a run" in str(e) else ""))
    samples(model, tokenizer, "samples after pretraining")

    ev = history["eval"]
    print(f"\nvalidation loss: {ev[0]['val_loss']:.3f} at step 0 -> {ev[-1]['val_loss']:.3f} at step "
          f"{ev[-1]['step']}  (perplexity {ev[0]['val_ppl']:.0f} -> {ev[-1]['val_ppl']:.1f})")
    print(f"saved {out}/ in {time.time() - t0:.0f} s; try:\n"
          f"  python -m minift generate --model {out} --prompt \"The headphones\"")
    plot(history, out / "loss_curve.png")


if __name__ == "__main__":
    main()
