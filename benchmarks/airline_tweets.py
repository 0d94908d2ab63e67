"""The airline-tweets experiment of docs/experiments.md: does pretraining on unlabeled
in-domain text make the default `full` fine-tune beat the baselines at 500 labels?

    python benchmarks/airline_tweets.py          # tiny GPT, 600 steps, 3 seeds: 6-10 minutes on 2 cores
    python benchmarks/airline_tweets.py --preset small --pretrain-steps 200 --runs runs/airline-small

Needs the optional data in ../shared/data (airline_tweets/, yelp_reviews_unlabeled/);
no test and no README command does. It writes, under --runs:
  sample.csv   500 labeled training tweets: a stratified sample of train.csv with seed 0
               (recipes.stratified_sample, the --max-train-samples machinery)
  corpus.txt   every training tweet's text (labels dropped) and every yelp review, one
               document each, blank lines between them
  init/        a GPT pretrained on corpus.txt (kept: a second run reuses a finished one)
then runs demos/your_data.py --train sample.csv --test test.csv --init init, whose
table (bow, scratch, full, lora, prompt; mean ± sd over the seeds) is the result.
"""
import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

from minift.adapt.recipes import stratified_sample
from minift.data import load_labeled
from minift.files import atomic_write
from minift.pretrain import PretrainConfig, pretrain
from minift.runs import PRETRAINED_KINDS, RunDir
from minift.trainer import Progress

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
TWEETS, REVIEWS = DATA / "airline_tweets", DATA / "yelp_reviews_unlabeled" / "corpus.txt"
LABELS, SAMPLE_SEED = 500, 0


def write_sample(train, path):
    """The seeded stratified sample of LABELS training tweets, as a text,label CSV."""
    keep = stratified_sample(train.labels, LABELS, SAMPLE_SEED)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows([train.texts[i], train.labels[i]] for i in keep)
    atomic_write(path, out.getvalue().encode("utf-8"))


def write_corpus(train, path):
    """All training tweets (no labels) and all reviews, one document each."""
    reviews = REVIEWS.read_text(encoding="utf-8").splitlines()
    docs = [" ".join(t.split()) for t in train.texts + reviews]
    atomic_write(path, "\n\n".join(d for d in docs if d).encode("utf-8"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # tiny by default: on a shared 2-core machine the small GPT pretrained at 5-10 s a step
    # (600 steps: about an hour), the tiny one at about 0.4 s (docs/experiments.md)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--pretrain-steps", type=int, default=600, help="default 600 (tiny's recipe has 300)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "airline"))
    args = parser.parse_args()
    missing = [p for p in (TWEETS / "train.csv", TWEETS / "test.csv", REVIEWS) if not p.is_file()]
    if missing:
        print(f"error: this benchmark needs the optional data in {DATA} ({missing[0]} is missing)", file=sys.stderr)
        sys.exit(2)
    runs = Path(args.runs)
    train = load_labeled(str(TWEETS / "train.csv")).require_examples()
    write_sample(train, runs / "sample.csv")
    write_corpus(train, runs / "corpus.txt")
    init = runs / "init"
    if not RunDir(init).is_finished():
        RunDir(init).remove(PRETRAINED_KINDS)           # an unfinished one: start again
        config = PretrainConfig(preset=args.preset, corpus_files=[str(runs / "corpus.txt")], steps=args.pretrain_steps)
        pretrain(init, config, log=print, progress=Progress(every=50))
    demo = [sys.executable, str(ROOT / "demos" / "your_data.py"), "--train", str(runs / "sample.csv"),
            "--test", str(TWEETS / "test.csv"), "--init", str(init), "--seeds", str(args.seeds),
            "--runs", str(runs / "your_data")]
    sys.exit(subprocess.call(demo))


if __name__ == "__main__":
    main()
