"""Memory and time of each CPU adaptation strategy on a GPT-2 124M directory.

    python benchmarks/finetune_gpt2.py --random /tmp/gpt2-random     # write a random 124M GPT-2 dir, then measure it
    python benchmarks/finetune_gpt2.py --model DIR                    # measure a GPT-2 directory you have

A reference tool, not a test. Random weights of GPT-2's shape (vocab 50257, block 1024,
12 layers, 12 heads, n_embd 768) cost exactly what the real ones cost: the same arrays,
the same products. `--random DIR` writes such a directory with minift's own export
(`minift export` of a minift run holding random weights and a 50257-id byte-level
tokenizer), so the measured load path is the one a downloaded GPT-2 takes.

Each strategy runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its
own: loading the model, building the task, `--steps` training steps (the Trainer's step:
loss, backward, gradient clipping, AdamW) of `--batch` texts of `--T` tokens, and
classifying `--batch` texts under no_grad; `prompt` scores `--batch` texts against 3
labels instead of training. The first step is a warm-up and is not timed. "step memory"
is what NumPy allocates during one more step above what it held before (tracemalloc, as
`python -m minift.bench step` reports it); "checkpoint" is the time and the memory
allocated to write the checkpoint and the weights, as fine-tuning does once per epoch.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRATEGIES = ["head", "top-k", "lora", "prompt"]
SHAPE = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="a Hugging Face GPT-2 directory")
    where.add_argument("--random", metavar="DIR", help="write a random GPT-2 124M directory here, then measure it")
    p.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--T", type=int, default=64, help="tokens per text")
    p.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    p.add_argument("--one", choices=STRATEGIES, help=argparse.SUPPRESS)     # the subprocess of one strategy
    return p.parse_args()


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024       # Linux: kilobytes


def write_random_gpt2(out):
    """A random GPT-2 124M as a minift run (in a temporary directory), exported to `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from minift.data import Tokenizer as MiniftTokenizer
    from minift.files import save_safetensors, write_json
    from minift.hf_gpt2 import export_hf_gpt2
    from minift.model import GPT, GPTConfig
    # GPT-2's vocabulary size, without its merges: the 256 byte tokens, unused fillers,
    # and <|endoftext|> last, as in GPT-2. Encoding gives bytes; the timing needs only the ids.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({f"<unused{i}>": i for i in range(len(vocab), SHAPE["vocab_size"] - 1)})
    vocab["<|endoftext|>"] = SHAPE["vocab_size"] - 1
    hf = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    hf.pre_tokenizer, hf.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    hf.add_special_tokens(["<|endoftext|>"])
    tokenizer = MiniftTokenizer(hf)
    config = GPTConfig(**SHAPE)
    with tempfile.TemporaryDirectory() as run:
        tokenizer.save(run)
        write_json(Path(run) / "config.json", {"kind": "pretrain", "model": config.to_dict(),
                                               "tokenizer_fingerprint": tokenizer.fingerprint()})
        save_safetensors(Path(run) / "model.safetensors", GPT(config, seed=0).state_dict())
        write_json(Path(run) / "metrics.json", {"train": [], "eval": [], "finished": True})
        export_hf_gpt2(run, out)


def traced(fn):
    """(seconds, peak MB that NumPy and Python allocated during fn() above what was held before)."""
    import tracemalloc
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, (peak - before) / 2**20


def measure(model_dir, strategy, batch, T, steps):
    """One strategy in this process -> dict of figures."""
    import numpy as np

    import minift.fast
    from minift.adapt import FinetuneConfig
    from minift.adapt.lora import parameter_counts
    from minift.adapt.tasks import make_task
    from minift.model import param_groups
    from minift.optim import AdamW
    from minift.pretrain import load_gpt
    from minift.runs import RunDir
    from minift.trainer import Progress, Trainer
    minift.fast.enable()                     # as `minift finetune` does
    t0 = time.perf_counter()
    gpt, tokenizer, _ = load_gpt(model_dir)
    figures = {"strategy": strategy, "load_s": time.perf_counter() - t0, "load_rss_mb": rss_mb()}
    rng = np.random.default_rng(0)
    labels = ["negative", "neutral", "positive"]
    seqs = [list(rng.integers(0, 50000, T - 1)) + [tokenizer.eot_id] for _ in range(batch * (steps + 2))]
    y = rng.integers(0, 3, len(seqs))
    config = FinetuneConfig(strategy=strategy, k=2 if strategy == "top-k" else 0)
    task = make_task(config, labels, tokenizer, gpt.config, ["a text"] * 3, [0, 1, 2])
    model = task.build(gpt)
    if strategy == "prompt":
        letters = np.array(list("abcdefghij klmnopqrst uvwxyz"))
        texts = ["".join(rng.choice(letters, T - 12)) for _ in range(batch)]  # ~T tokens with the template
        t0 = time.perf_counter()
        task.scores(model, texts)
        figures.update(trainable=0, step_s=None, classify_s=time.perf_counter() - t0)
    else:
        figures["trainable"], _ = parameter_counts(model)
        optimizer = AdamW(param_groups(model, 0.01, trainable_only=True), lr=1e-4, betas=(0.9, 0.95))
        trainer = Trainer(model, optimizer, task.batches(seqs, y, batch, seed=0), task.loss, steps=steps + 2,
                          grad_clip=1.0, progress=Progress(stream=open(os.devnull, "w")))
        trainer.run(until=1)                                             # warm-up
        t0 = time.perf_counter()
        trainer.run(until=steps + 1)
        figures["step_s"] = (time.perf_counter() - t0) / steps
        figures["step_mb"] = traced(trainer.run)[1]
        with tempfile.TemporaryDirectory() as out, RunDir(out).lock() as run:
            trainer.run_dir = run
            figures["checkpoint_s"], figures["checkpoint_mb"] = traced(trainer.save_checkpoint)
        figures["optimizer_state"] = sum(s["m"].size + s["v"].size for s in optimizer.state.values())
        t0 = time.perf_counter()
        task.scores(model, seqs[:batch])
        figures["classify_s"] = time.perf_counter() - t0
    figures["peak_rss_mb"] = rss_mb()
    return figures


def main():
    args = parse()
    if args.one:
        print(json.dumps(measure(args.model, args.one, args.batch, args.T, args.steps)))
        return
    if args.random:
        t0 = time.perf_counter()
        write_random_gpt2(args.random)
        print(f"wrote a random GPT-2 124M directory to {args.random} ({time.perf_counter() - t0:.0f} s)")
    model = args.model or args.random
    import minift.fast
    minift.fast.enable()
    from minift.fast.threads import threads
    print(f"{threads()} thread(s); batch {args.batch} x {args.T} tokens; {args.steps} timed steps")
    print(f"{'strategy':<10}{'trainable':>12}{'optimizer state':>17}{'load':>7}{'step':>8}{'step memory':>13}"
          f"{'classify':>10}{'checkpoint':>17}{'peak memory':>13}")
    for strategy in args.strategies:
        cmd = [sys.executable, __file__, "--model", model, "--one", strategy, "--batch", str(args.batch),
               "--T", str(args.T), "--steps", str(args.steps)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        f = json.loads(done.stdout.strip().splitlines()[-1])
        trains = f["step_s"] is not None
        step = f"{f['step_s']:.2f}s" if trains else "-"
        step_mb = f"{f['step_mb']:,.0f} MB" if trains else "-"
        state = f"{f['optimizer_state']:,}" if trains else "-"
        checkpoint = f"{f['checkpoint_s']:.1f}s {f['checkpoint_mb']:,.0f} MB" if trains else "-"
        print(f"{strategy:<10}{f['trainable']:>12,}{state:>17}{f['load_s']:>6.1f}s{step:>8}{step_mb:>13}"
              f"{f['classify_s']:>9.2f}s{checkpoint:>17}{f['peak_rss_mb']:>10,.0f} MB")


if __name__ == "__main__":
    main()
