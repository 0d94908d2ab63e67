"""What a real pretrained model adds: GPT-2 (124M), adapted on a CPU by the strategies that fit one.

    huggingface-cli download openai-community/gpt2 --local-dir gpt2     # once (about 500 MB)
    python demos/gpt2_finetune.py --model gpt2                           # the built-in feedback labels
    python demos/gpt2_finetune.py --model gpt2 --train ../shared/data/airline_tweets/train.csv \\
        --test ../shared/data/airline_tweets/test.csv                   # any labeled CSV / TSV / JSONL

The same comparison and the same table as demos/adaptation_strategies.py, with GPT-2 in
place of the small GPT pretrained here: head (a linear probe on GPT-2's features), top-2
(the last two of its 12 blocks train), LoRA r=8 and prompt (zero-shot, nothing trains).
Full fine-tuning and instruction tuning are left out: they train all 124M parameters,
hours on a laptop CPU. Any GPT-2-architecture directory works (distilgpt2, gpt2-medium, a
directory written by `python -m minift export`).

A labeled file is used whole unless --limit / --test-limit cut it to a seeded random
sample (the defaults keep a run of all four strategies under about an hour on 2 cores).
Without --train, the built-in labels: there GPT-2 meets the part-B sentiment words
("stellar", "abysmal") not from minift's corpus but from what it read on the web.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

import minift.fast
from minift.adapt import compare_strategies
from minift.data import load_labeled
from minift.errors import MiniftError
from minift.files import atomic_write
from minift.hf_gpt2 import DOWNLOAD, is_hf_model_dir

# (name in the table, strategy, settings): recipes for a 124M model, few epochs each
RUNS = [
    ("head", "head", {"epochs": 4, "lr": 2e-3}),
    ("top-2", "top-k", {"k": 2, "epochs": 2, "lr": 1e-4}),
    ("lora r=8", "lora", {"lora_rank": 8, "epochs": 2, "lr": 1e-3}),
    ("prompt 0-shot", "prompt", {"k": 0}),
]


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--train", help="labeled CSV / TSV / JSONL (default: the built-in feedback labels)")
    p.add_argument("--test", nargs="+", default=[], help="labeled test files")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--limit", type=int, default=1000, help="training examples kept from --train (default 1000)")
    p.add_argument("--test-limit", type=int, default=500, help="examples kept from each --test file (default 500)")
    p.add_argument("--epochs", type=int, help="epochs for every strategy that trains (default: each recipe's)")
    p.add_argument("--prompt-template", help='how a text is put to the model (default "Review: {text}\\nSentiment:")')
    p.add_argument("--only", nargs="+", metavar="NAME", help=f"a subset of: {[r[0] for r in RUNS]}")
    p.add_argument("--runs", default="runs/gpt2", help="where the fine-tuned runs go (default runs/gpt2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--reference", action="store_true",
                   help="the plain reading path, without minift.fast's CPU speed-ups (as MINIFT_FAST=0)")
    args = p.parse_args()
    minift.fast.enable_unless_reference(args.reference)
    return args


def sample(path, limit, out, args, seed):
    """`path`, or a seeded random sample of `limit` of its examples written as JSONL to `out`
    (under the same column names, so --text-column / --label-column fit both)."""
    data = load_labeled(path, args.text_column, args.label_column)
    if len(data) <= limit:
        return path
    keep = np.sort(np.random.default_rng([seed, 5]).permutation(len(data))[:limit])
    lines = [json.dumps({args.text_column: data.texts[i], args.label_column: data.labels[i]}, ensure_ascii=False)
             for i in keep]
    atomic_write(out, "\n".join(lines) + "\n")
    print(f"{path}: a random sample of {limit} of its {len(data)} examples ({out})")
    return out


def main():
    args = parse()
    if not args.model or not is_hf_model_dir(args.model):
        where = f"{args.model} is not a GPT-2 directory" if args.model else "no GPT-2 directory given (--model)"
        sys.exit(f"{where}. Get GPT-2 (about 500 MB, once) with\n\n    {DOWNLOAD.replace('DIR', 'gpt2')}\n\n"
                 f"then run  python demos/gpt2_finetune.py --model gpt2 [--train FILE --test FILE ...]")
    runs = [r for r in RUNS if not args.only or r[0] in args.only]
    if not runs:
        sys.exit(f"--only matched nothing; the names are {[r[0] for r in RUNS]}")
    root = Path(args.runs)
    common = {"seed": args.seed}
    if args.prompt_template:
        common["prompt_template"] = args.prompt_template
    try:
        if args.train:
            data = root / "data"
            train = sample(args.train, args.limit, data / "train" / "train.jsonl", args, args.seed)
            tests = [sample(f, args.test_limit, data / f"test{i}" / f"{Path(f).stem}.jsonl", args, args.seed)
                     for i, f in enumerate(args.test)]
            common.update(train_file=str(train), test_files=[str(t) for t in tests],
                          text_column=args.text_column, label_column=args.label_column)
        runs = [(n, s, {**settings, **({"epochs": args.epochs} if args.epochs and s != "prompt" else {})})
                for n, s, settings in runs]
        _, table = compare_strategies(args.model, root, runs, common, device=args.device)
    except MiniftError as e:
        sys.exit(f"error: {e}")
    print(f"\nGPT-2 from {args.model}\n\n" + table)
    print(f"\nsaved {root}/summary.json and summary.txt")


if __name__ == "__main__":
    main()
