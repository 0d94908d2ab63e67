"""Command line: `python -m minift COMMAND ...` (also installed as `minift`).

    pretrain   train a GPT on the built-in feedback corpus or your text files
    generate   continue a prompt with a pretrained run
    finetune   adapt a pretrained run to a labeled classification task
    classify   label texts with a fine-tuned run
"""
import argparse
import sys


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


COMMANDS = {"pretrain": cmd_pretrain, "generate": cmd_generate}


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
