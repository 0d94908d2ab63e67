"""Alignment in one command: the pretrained small GPT is taught to follow requests
(supervised instruction tuning), then to prefer the responses that follow them (DPO),
and an exact judge measures each stage.

    python demos/alignment.py           # under 4 minutes on a 2-core CPU once runs/small exists

1. Pretraining: runs/small is reused when it holds today's `small` recipe (the one
   demos/quickstart.py and demos/pretrain.py make); otherwise it is pretrained first
   (about 4 minutes more).
2. SFT: 4,800 requests such as "Write a negative review of the blender." with a
   response the world writes to match, the loss on the response tokens only.
3. DPO, from the SFT run: the SFT model answers each of the 260 training requests 8
   times; the exact judge pairs every response that does not follow its request
   (wrong sentiment, another product, gibberish) with one that does; a frozen copy of
   the SFT model is the reference.
4. The judge on 52 held-out requests (phrasings never trained on): 4 responses sampled
   for each (temperature 1), with 3 sampling seeds, for the pretrained model prompted
   the same way ("Request: ...\\nReview:"), after SFT and after DPO. The judge reads a
   response's sentiment by the rule that labels the world's reviews, and whether it
   names the requested product and nothing of another.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

import minift.fast
from minift.align import ALIGN_TEMPLATE, AlignConfig, align, judged_following
from minift.adapt import PromptFormat
from minift.data import feedback
from minift.errors import MiniftError
from minift.pretrain import PretrainConfig, load_gpt
from minift.runs import ALIGNED_KINDS, LANGUAGE_MODEL_KINDS, RunDir
from pretrained_runs import ensure_pretrained

SEEDS = (0, 1, 2)            # sampling seeds of the judged evaluation
SAMPLES = 4                  # responses per held-out request and seed
SHOWN = (0, 21, 40)          # the held-out requests whose responses are printed
RATES = (("sentiment", "sentiment as requested"), ("product", "on the requested product"), ("both", "both"))


def judge_stage(run, device):
    """Rates per sampling seed and the responses of seed 0, for the model in `run`."""
    model, tokenizer, _ = load_gpt(run, device, kinds=LANGUAGE_MODEL_KINDS)
    fmt, requests = PromptFormat(ALIGN_TEMPLATE), feedback.request_split()["test"]
    per_seed, shown = [], None
    for seed in SEEDS:
        rates, judged = judged_following(model, tokenizer, fmt, requests, SAMPLES, seed=seed)
        per_seed.append(rates)
        shown = shown or [judged[i * SAMPLES] for i in SHOWN]
    return per_seed, shown


def table(results):
    n = results[next(iter(results))][0]["n"] * len(SEEDS)
    lines = [f"{'stage':<24}" + "".join(f"{title:>28}" for _, title in RATES), "-" * (24 + 28 * len(RATES))]
    for stage, per_seed in results.items():
        cells = []
        for key, _ in RATES:
            values = [r[key] for r in per_seed]
            cells.append(f"{np.mean(values):.1%} ({min(values):.1%}-{max(values):.1%})")
        lines.append(f"{stage:<24}" + "".join(f"{c:>28}" for c in cells))
    lines.append(f"{n} responses per stage: {len(feedback.request_split()['test'])} held-out requests x {SAMPLES} "
                 f"samples x {len(SEEDS)} seeds; in brackets the lowest and highest seed")
    return "\n".join(lines)


def verdict_note(request, verdict):
    sentiment = "as requested" if verdict.label == request.label else f"judged {verdict.label}"
    product = "on product" if verdict.on_product(request.noun) else \
        f"off product ({', '.join(sorted(verdict.nouns | verdict.domains)) or 'names none'})"
    return f"[{sentiment}; {product}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="runs/small", help="pretraining run to reuse or make (default runs/small)")
    parser.add_argument("--runs", default="runs/alignment", help="where the SFT and DPO runs go")
    parser.add_argument("--seed", type=int, default=0, help="training seed of SFT and DPO")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reference", action="store_true",
                        help="the plain reading path, without minift.fast's CPU speed-ups (as MINIFT_FAST=0)")
    args = parser.parse_args()
    minift.fast.enable_unless_reference(args.reference)
    init, root = Path(args.init), Path(args.runs)
    t0 = time.time()
    try:
        print("== 1. the pretrained model ==")
        ensure_pretrained(init, PretrainConfig(preset="small"), device=args.device, any_recipe=False)
        times = {"pretraining": time.time() - t0}
        for method, start in (("sft", init), ("dpo", root / "sft")):
            print(f"\n== {'2. SFT' if method == 'sft' else '3. DPO'} ==")
            t = time.time()
            RunDir(root / method).remove(ALIGNED_KINDS)      # an earlier run of this demo: rebuild it
            align(start, root / method, AlignConfig(method=method, seed=args.seed, judge_samples=0),
                  device=args.device)
            times[method] = time.time() - t
        print("\n== 4. the judge on the held-out requests ==")
        t = time.time()
        stages = {"pretrained (prompted)": init, "after SFT": root / "sft", "after DPO": root / "dpo"}
        judged = {stage: judge_stage(run, args.device) for stage, run in stages.items()}
        times["judging"] = time.time() - t
    except MiniftError as e:
        sys.exit(f"error: {e}")

    results = {stage: per_seed for stage, (per_seed, _) in judged.items()}
    print(table(results))
    gain = [np.mean([r[k] for r in results["after DPO"]]) - np.mean([r[k] for r in results["after SFT"]])
            for k, _ in RATES]
    n = results["after SFT"][0]["n"] * len(SEEDS)
    both = [np.mean([r["both"] for r in results[s]]) for s in ("after SFT", "after DPO")]
    noise = 2 * np.sqrt(sum(p * (1 - p) / n for p in both))
    print(f"\nDPO over SFT: {gain[0]:+.1%} sentiment, {gain[1]:+.1%} product, {gain[2]:+.1%} both "
          f"(two standard errors of the difference in 'both': {noise:.1%})")
    print("\nsample responses (seed 0, the first of each request's samples):")
    for i, index in enumerate(SHOWN):
        request = judged["after SFT"][1][i][0]
        print(f"\n  {request.text}")
        for stage, (_, shown) in judged.items():
            _, text, verdict = shown[i]
            print(f"    {stage:<22} {text!r}\n    {'':<22} {verdict_note(request, verdict)}")
    print("\ntimes: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) +
          f"; total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
