"""Command line: `python -m minift COMMAND ...` (also installed as `minift`).

    pretrain   train a GPT on the built-in feedback corpus or your text files
    generate   continue a prompt with a pretrained run
    finetune   adapt a pretrained run to a labeled classification task
    classify   label texts with a fine-tuned run
"""
import argparse
import sys

# The names only: importing minift.finetune would load NumPy and the model before
# argparse has even checked the command line.
STRATEGIES = ["full", "head", "top-k", "lora", "prompt", "instruct", "scratch"]
POOLINGS = ["last", "mean"]


def _add_device(p):
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to compute (cuda needs CuPy and an NVIDIA GPU)")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minift", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pretrain a GPT (next-token prediction)")
    p.add_argument("--out", required=True, help="run directory to write (or to resume)")
    p.add_argument("--corpus", nargs="+", metavar="FILE",
                   help="UTF-8 text files, documents separated by blank lines (default: the built-in "
                        "customer-feedback corpus)")
    p.add_argument("--preset", default="small", choices=["tiny", "small"], help="model size (default small)")
    p.add_argument("--steps", type=int, help="total optimisation steps (default: the preset's recipe)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    _add_device(p)

    p = sub.add_parser("generate", help="continue a prompt with a pretrained run")
    p.add_argument("--model", required=True, help="pretraining run directory")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=60)
    p.add_argument("--temperature", type=float, default=0.8, help="0 means greedy decoding")
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, default=0)
    _add_device(p)

    p = sub.add_parser("finetune", help="adapt a pretrained run to a labeled classification task",
                       description="Fine-tune a pretrained run into a text classifier with one of the "
                                   "adaptation strategies (see minift/finetune.py).")
    p.add_argument("--init", required=True, metavar="PRETRAINED_RUN", help="pretraining run directory")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write (must not hold a run)")
    p.add_argument("--strategy", default="full", choices=STRATEGIES,
                   help="full: everything trains; head: frozen backbone; top-k: the last k blocks train; "
                        "lora: low-rank adapters; prompt: no training, label likelihood after a template; "
                        "instruct: fine-tune the language model to write the label; scratch: no pretraining")
    p.add_argument("--train", metavar="FILE", help="labeled CSV / TSV / JSONL (default: the built-in feedback "
                                                   "labels, tested on lexicon parts A and B)")
    p.add_argument("--test", nargs="+", metavar="FILE", help="labeled test files (default with the built-in "
                                                             "labels: its two test sets)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--k", type=int, help="top-k: how many top blocks train (default 2); prompt: how many "
                                         "solved examples to show (default 0, zero-shot)")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-mlp", action="store_true", help="adapters on the MLP too, not only attention")
    p.add_argument("--pooling", default="last", choices=POOLINGS,
                   help="which hidden state the head reads: the last real token, or the mean of all")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default: the strategy's recipe)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    p.add_argument("--seed", type=int, default=0)
    _add_device(p)

    p = sub.add_parser("classify", help="label texts with a fine-tuned run")
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="run directory written by finetune")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    _add_device(p)
    return parser


def cmd_pretrain(args):
    from .train import pretrain
    model, tokenizer, history = pretrain(args.out, corpus_files=args.corpus, preset=args.preset, steps=args.steps,
                                         seed=args.seed, resume=args.resume, device=args.device,
                                         batch_size=args.batch_size, lr=args.lr)
    last = history["eval"][-1] if history["eval"] else {}
    print(f"saved {args.out}  (validation loss {last.get('val_loss', float('nan')):.4f})")


def cmd_generate(args):
    from .generate import generate
    from .train import load_run
    model, tokenizer, _ = load_run(args.model, device=args.device)
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise ValueError("the prompt is empty")
    new = generate(model, ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed, eos_id=tokenizer.eot_id)
    print(args.prompt + tokenizer.decode(new))


def cmd_finetune(args):
    from .train import finetune
    _, _, metrics = finetune(args.init, args.out, args.strategy, args.train, args.test,
                             text_column=args.text_column, label_column=args.label_column, k=args.k,
                             lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lora_mlp=args.lora_mlp,
                             pooling=args.pooling, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                             class_weighting=args.class_weights, seed=args.seed, device=args.device)
    results = metrics["test"] or {"validation": metrics["validation"]}     # no --test: the held-out part
    summary = "  ".join(f"{name} accuracy {m['accuracy']:.1%} macro-F1 {m['macro_f1']:.3f}"
                        for name, m in results.items())
    print(f"saved {args.out}  {summary}")


def cmd_classify(args):
    from .train import classify, load_finetuned
    model, tokenizer, cfg = load_finetuned(args.model, device=args.device)
    probs = classify(model, tokenizer, cfg, args.texts)
    labels = cfg["labels"]
    for text, p in zip(args.texts, probs):
        shown = "  ".join(f"{name} {q:.3f}" for name, q in zip(labels, p))
        print(f"{labels[int(p.argmax())]:<12}  {shown}  {text}")


COMMANDS = {"pretrain": cmd_pretrain, "generate": cmd_generate, "finetune": cmd_finetune,
            "classify": cmd_classify}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError, TypeError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"minift {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nminift {args.command}: interrupted; the last checkpoint in the run directory is intact "
              f"(continue with --resume)", file=sys.stderr)
        return 130
    return 0
