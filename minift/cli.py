"""Command line: `python -m minift COMMAND ...` (also installed as `minift`).

    pretrain   train a GPT (or an encoder) on the built-in feedback corpus or your text files
    generate   continue a prompt with a pretrained (or instruction-tuned) run
    finetune   adapt a pretrained run to a labeled classification task
    classify   label texts with a fine-tuned run (arguments, a file or standard input)
    evaluate   a fine-tuned run's metrics on a labeled test file
    align      teach a language model to follow requests (sft), then to prefer responses that do (dpo)
    export     write a run (or a GPT-2 directory) as a Hugging Face GPT-2 directory
    report     one self-contained HTML page of a run: curves, confusion, updates, prediction, attention
    show       `show graph`: the autograd graph of a small expression, data and grad on every node
    data       `data export`: the built-in labeled reviews (or corpus) as a file, to try the flags that read yours

A mistake in what you asked for (a flag, a file, a run directory) is one line on stderr
and exit code 2; an error of the operating system (disk full, permission denied) too,
naming the file. Anything else is a bug in minift and keeps its traceback.
"""
import argparse
import os
import sys
import warnings

from . import __version__

# The names only: importing the adaptation code would load NumPy and the model before
# argparse has even checked the command line (tests check these lists stay in step).
STRATEGIES = ["full", "head", "top-k", "lora", "prompt", "instruct", "scratch", "bow"]
POOLINGS = ["last", "mean"]
METHODS = ["sft", "dpo"]


def _add_device(p):
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to compute (cuda needs CuPy and an NVIDIA GPU)")
    _add_reference(p)


def _add_reference(p):
    p.add_argument("--reference", action="store_true",
                   help="run the plain reading path of minift, without minift.fast's CPU speed-ups "
                        "(MINIFT_FAST=0 does the same); slower, each op the same to float32 rounding")


def _pretrain_parser(sub):
    p = sub.add_parser("pretrain", help="pretrain a GPT (next-token prediction)")
    p.add_argument("--out", required=True, help="run directory to write (or to resume)")
    p.add_argument("--corpus", nargs="+", metavar="FILE",
                   help="UTF-8 text files, documents separated by blank lines (default: the built-in "
                        "customer-feedback corpus)")
    p.add_argument("--corpus-column", metavar="NAME",
                   help="the --corpus files are CSV / TSV / JSONL: pretrain on this column, one document a row "
                        "(default: none, the files are prose)")
    p.add_argument("--preset", choices=["tiny", "small"], help="model size (default small)")
    p.add_argument("--arch", choices=["decoder", "encoder"],
                   help="decoder (default): a GPT, next-token prediction; encoder: bidirectional attention, "
                        "masked-token prediction (BERT-style), for classifiers")
    p.add_argument("--steps", type=int, help="total optimisation steps (default: the preset's recipe)")
    p.add_argument("--batch-size", type=int, help="token windows (or documents) a step (default: the preset's recipe)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the preset's recipe)")
    p.add_argument("--seed", type=int, help="seed of the initial weights and the batches (default: 0)")
    p.add_argument("--eval-every", type=int, metavar="N", help="evaluate on the validation text and save a "
                                                               "checkpoint every N steps (default: a tenth of "
                                                               "--steps, at most 100)")
    p.add_argument("--grad-accum", type=int, metavar="N", help="add the gradients of N batches a step (default: 1)")
    p.add_argument("--vocab-size", type=int, help="tokens of the BPE tokenizer trained on the corpus (default: "
                                                  "the preset's recipe)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (other flags, if given, must "
                        "match the run)")
    _add_device(p)


def _generate_parser(sub):
    p = sub.add_parser("generate", help="continue a prompt with a pretrained run")
    p.add_argument("--model", required=True, help="pretraining (or instruct/prompt) run directory, or a Hugging "
                                                   "Face GPT-2 directory")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=60, help="tokens to add at most (fewer at <|endoftext|>)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 means greedy decoding")
    p.add_argument("--top-k", type=int, help="sample from the k most likely tokens only (default: all)")
    p.add_argument("--top-p", type=float, help="sample from the most likely tokens whose probabilities add up "
                                               "to p only (default: off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    _add_device(p)


def _finetune_parser(sub):
    p = sub.add_parser("finetune", help="adapt a pretrained run to a labeled classification task",
                       description="Fine-tune a pretrained run into a text classifier with one of the "
                                   "adaptation strategies (see minift/adapt/).")
    p.add_argument("--init", metavar="PRETRAINED_RUN", help="pretraining run directory, or a Hugging Face GPT-2 "
                                                             "directory (not needed with --resume)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write (or to resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (other flags, if given, must "
                        "match the run)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="full (default): everything trains; head: frozen backbone; top-k: the last k blocks "
                        "train; lora: low-rank adapters; prompt: no training, label likelihood after a "
                        "template; instruct: fine-tune the language model to write the label; scratch: no "
                        "pretraining; bow: no GPT at all, logistic regression on TF-IDF token counts (the baseline)")
    p.add_argument("--train", metavar="FILE", help="labeled CSV / TSV / JSONL (default: the built-in feedback "
                                                   "labels, tested on lexicon parts A and B)")
    p.add_argument("--test", nargs="+", metavar="FILE", help="labeled test files (default with the built-in "
                                                             "labels: its two test sets)")
    p.add_argument("--text-column", help="the column (CSV / TSV header) or key (JSONL) of the texts (default: text)")
    p.add_argument("--label-column", help="the column or key of the labels (default: label)")
    p.add_argument("--k", type=int, help="top-k: how many top blocks train (default 2); prompt: how many "
                                         "solved examples to show (default 0, zero-shot)")
    p.add_argument("--lora-rank", type=int, help="lora: rank r of the adapters (default: 8)")
    p.add_argument("--lora-alpha", type=float, help="lora: the adapters' update is scaled by alpha / r (default: 16)")
    p.add_argument("--lora-mlp", action="store_true", default=None,
                   help="lora: adapters on the MLP too (default: on attention only)")
    p.add_argument("--pooling", choices=POOLINGS,
                   help="which hidden state the head reads: the last real token (a decoder's default), or the "
                        "mean of all (an encoder's default)")
    p.add_argument("--prompt-template", help="prompt and instruct: how a text is put to the language model, "
                                             "with {text} where the text goes (default \"Review: {text}\\n"
                                             "Sentiment:\", the built-in corpus's rated reviews)")
    p.add_argument("--epochs", type=int, help="passes over the training examples (default: the strategy's recipe)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the strategy's recipe)")
    p.add_argument("--batch-size", type=int, help="examples per step (default: the strategy's recipe)")
    p.add_argument("--class-weights", action="store_true", default=None,
                   help="weight the loss by inverse class frequency")
    p.add_argument("--seed", type=int, help="seed of the validation split, new weights and batches (default: 0)")
    _add_recipe_flags(p)
    _add_device(p)


def _add_recipe_flags(p):
    """finetune's flags that fit the plan to the data (adapt/recipes.py)."""
    p.add_argument("--max-steps", type=int, help="at most this many optimisation steps (default: the recipe's "
                                                  "epochs, fewer on large data to stay within 1,000 steps)")
    p.add_argument("--max-train-samples", type=int, metavar="N",
                   help="train on a seeded stratified sample of N examples of --train (default: all of them)")
    p.add_argument("--validation", metavar="FILE", help="labeled validation file (default: 10%% of --train, held out)")
    p.add_argument("--eval-every", type=int, metavar="STEPS", help="evaluate every STEPS steps (default: each epoch)")
    p.add_argument("--save-every", type=int, metavar="STEPS",
                   help="checkpoint every STEPS steps (default: at each evaluation)")
    p.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE evaluations without improvement; the best one's weights are the "
                        "result (default: off)")
    p.add_argument("--early-stop-metric", choices=["val_loss", "val_macro_f1"],
                   help="what --early-stop watches (default val_loss)")


def _align_parser(sub):
    p = sub.add_parser("align", help="instruction tuning (sft) or preference tuning (dpo) of a language model",
                       description="Align a language-model run (see minift/align/): sft teaches it to write a "
                                   "response after \"Request: ...\\nReview:\"; dpo, started from the SFT run, "
                                   "teaches it to prefer chosen responses over rejected ones.")
    p.add_argument("--init", metavar="RUN", help="the run to start from: pretrained for sft, the SFT run for dpo "
                                                 "(not needed with --resume)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write (or to resume)")
    p.add_argument("--method", choices=METHODS, help="sft (default) or dpo")
    p.add_argument("--pairs", metavar="FILE", help="JSONL, one {\"prompt\", \"chosen\", \"rejected\"} per line "
                                                   "(sft reads prompt and chosen); default: built-in requests")
    p.add_argument("--pairs-from", choices=["judged", "world"],
                   help="built-in dpo pairs: the init's own responses labeled by the exact judge (default), "
                        "or pairs written by the world")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (other flags, if given, must "
                        "match the run)")
    recipe = " (default: the method's recipe)"
    for flag, kind, what in (("--epochs", int, "passes over the data" + recipe),
                             ("--lr", float, "peak learning rate" + recipe),
                             ("--batch-size", int, "examples (sft) or pairs (dpo) per step" + recipe),
                             ("--beta", float, "dpo: how far the policy may move from the reference (default 0.1)"),
                             ("--samples", int, "judged pairs: responses sampled per training request (default 8)"),
                             ("--examples", int, "built-in sft examples or world pairs" + recipe),
                             ("--judge-samples", int, "responses judged per held-out request at the end (default 2)"),
                             ("--seed", int, "seed of the data, the batches and the sampling (default: 0)")):
        p.add_argument(flag, type=kind, help=what)
    _add_device(p)


def _picture_parsers(sub):
    p = sub.add_parser("report", help="write one self-contained HTML page of a run (minift/viz/report.py)")
    p.add_argument("run", metavar="RUN_DIR", help="any run directory (pretraining or fine-tuning)")
    p.add_argument("--text", help="the text whose prediction and attention maps are shown (default: a "
                                  "sample review)")
    p.add_argument("--out", metavar="FILE", help="the HTML file to write (default RUN_DIR/report.html)")
    _add_reference(p)
    p = sub.add_parser("show", help="draw the autograd graph of a small expression")
    p.add_argument("what", choices=["graph"], help="graph: the graph of o = tanh(x1 * w1 + x2 * w2 + b), "
                                                   "with each node's value and gradient")
    p.add_argument("--out", metavar="FILE", help="also write it as SVG (FILE.svg) or a page (FILE.html) "
                                                 "(default: text only)")


def _classify_parsers(sub):
    p = sub.add_parser("classify", help="label texts with a fine-tuned run")
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="run directory written by finetune")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify; '-' alone reads standard input")
    p.add_argument("--input", metavar="FILE", help="a file of texts, its format from the extension: .csv or .tsv "
                                                   "(a header row, the text in --text-column), .jsonl (the text "
                                                   "under that key), .txt (one text a line); - reads standard input "
                                                   "(default: the TEXT arguments)")
    p.add_argument("--format", choices=["csv", "tsv", "jsonl", "txt"],
                   help="the format of --input whatever its extension (default: from the extension; txt for "
                        "standard input)")
    p.add_argument("--text-column", default="text", help="the column (or JSON key) of the text (default text)")
    p.add_argument("--output", metavar="FILE", help="write the predictions as CSV: text, label, p_<label> a label "
                                                    "(default: print them)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON Lines: text, label, "
                                                       "probabilities")
    _add_device(p)
    p = sub.add_parser("evaluate", help="a fine-tuned run's metrics on a labeled test file")
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="run directory written by finetune")
    p.add_argument("--test", required=True, metavar="FILE", help="labeled CSV / TSV / JSONL")
    p.add_argument("--text-column", default="text", help="the column (or JSON key) of the text")
    p.add_argument("--label-column", default="label", help="the column (or JSON key) of the label")
    p.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file (default: print them only)")
    _add_device(p)


DATA_SPLITS = ["train", "test_a", "test_b", "corpus"]


def _data_parser(sub):
    p = sub.add_parser("data", help="write the built-in data to a file (data export)")
    action = p.add_subparsers(dest="action", required=True, help="export: write the data to a file")
    p = action.add_parser("export", help="write the built-in labeled reviews, or the corpus, to a file",
                          description="Write the built-in world's data to a file, to try the flags that read "
                                      "your own: --train, --test, --corpus.")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="labeled splits: .csv, .tsv or .jsonl (columns text, label); corpus: plain text, .txt")
    p.add_argument("--split", choices=DATA_SPLITS, default="train",
                   help="train (default: 480 reviews, lexicon part A), test_a and test_b (300 each, part A / "
                        "part B only), or corpus (1 MB of unlabeled documents separated by blank lines)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; after a flag's help, its default, unless the
    help already says it (a default of None comes from a recipe, which the help names)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# The examples that end each command's --help (%(prog)s: the command as it was called).
EXAMPLES = {
    "pretrain": ["--out runs/small                      # the small GPT on the built-in corpus",
                 "--out runs/mine --corpus notes.txt --preset tiny --steps 300",
                 "--out runs/small --resume             # continue an interrupted run"],
    "generate": ["--model runs/small --prompt \"The battery\"",
                 "--model runs/small --prompt \"The battery\" --temperature 0     # greedy"],
    "finetune": ["--init runs/small --out runs/ft                   # full fine-tuning, built-in labels",
                 "--init runs/small --out runs/lora --strategy lora --train reviews.csv --test test.csv",
                 "--out runs/ft --resume"],
    "classify": ["--model runs/ft \"The strap is stellar.\" \"Frankly abysmal.\"",
                 "--model runs/ft --input reviews.csv --output predictions.csv",
                 "--model runs/ft --json - < texts.txt            # one text a line on standard input"],
    "evaluate": ["--model runs/ft --test test.csv",
                 "--model runs/ft --test test.jsonl --json metrics.json"],
    "align": ["--init runs/small --out runs/sft --method sft",
              "--init runs/sft --out runs/dpo --method dpo"],
    "export": ["--model runs/small --out runs/small-hf       # transformers loads runs/small-hf",
               "--model runs/ft --out runs/ft-hf             # a fine-tuned run: its GPT, without the head"],
    "report": ["runs/ft --out ft.html", "runs/small --text \"The strap is stellar.\""],
    "show": ["graph", "graph --out graph.svg"],
    "data": ["export --out reviews.csv                  # the built-in training labels, to try --train",
             "export --out corpus.txt --split corpus    # unlabeled documents, to try --corpus"],
}


def program_name(argv0=None):
    """The command as the user typed it, for usage lines: `python -m minift` when
    sys.argv[0] is this package's __main__.py, else `minift` (the installed command)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    return "python -m minift" if os.path.basename(argv0) == "__main__.py" else "minift"


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog or program_name(), description=__doc__,
                                     epilog="examples:\n  %(prog)s pretrain --out runs/small\n  %(prog)s "
                                            "finetune --init runs/small --out runs/ft\n  %(prog)s pretrain --help",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"minift {__version__}",
                        help="print minift's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    _pretrain_parser(sub)
    _generate_parser(sub)
    _finetune_parser(sub)
    _classify_parsers(sub)
    p = sub.add_parser("export", help="write a run as a Hugging Face GPT-2 directory (transformers loads it)")
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="any minift run, or a GPT-2 directory")
    p.add_argument("--out", required=True, metavar="DIR", help="the directory to write (new or empty)")
    _align_parser(sub)
    _picture_parsers(sub)
    _data_parser(sub)
    for name, p in sub.choices.items():
        p.formatter_class = HelpFormatter
        p.epilog = "examples:\n" + "\n".join(f"  %(prog)s {line}" for line in EXAMPLES[name])
    return parser


def _note(text=""):
    """Where the commands' notes go: stderr, so that stdout holds only results."""
    print(text, file=sys.stderr)


def _given(args, names):
    """{setting: value} of the flags the user actually gave (argparse default None)."""
    return {setting: getattr(args, flag) for flag, setting in names.items() if getattr(args, flag) is not None}


def cmd_pretrain(args):
    from .pretrain import PretrainConfig, pretrain
    given = _given(args, {"corpus": "corpus_files", "preset": "preset", "arch": "arch", "steps": "steps",
                          "batch_size": "batch_size", "lr": "lr", "seed": "seed", "eval_every": "eval_every",
                          "grad_accum": "grad_accum", "vocab_size": "vocab_size"})
    given.update(_given(args, {"corpus_column": "corpus_column"}))
    config = given if args.resume else PretrainConfig(**given)
    _, _, history = pretrain(args.out, config, resume=args.resume, device=args.device, log=_note)
    last = history["eval"][-1] if history["eval"] else {}
    print(f"saved {args.out}  (validation loss {last.get('val_loss', float('nan')):.4f})")


def cmd_generate(args):
    from .errors import MiniftError
    from .generate import generate
    from .hf_gpt2 import HF_KIND
    from .pretrain import load_gpt
    from .runs import LANGUAGE_MODEL_KINDS, RunDir
    model, tokenizer, cfg = load_gpt(args.model, device=args.device, kinds=LANGUAGE_MODEL_KINDS,
                                     command="generate")
    if cfg["kind"] != HF_KIND and not RunDir(args.model).is_finished():
        print(f"note: {args.model} has not finished training; generating from its last checkpoint",
              file=sys.stderr)
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise MiniftError("--prompt is empty")
    new = generate(model, ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed, eos_id=tokenizer.eot_id)
    print(args.prompt + tokenizer.decode(new))


def cmd_finetune(args):
    from .adapt import FinetuneConfig, finetune
    from .errors import MiniftError
    given = _given(args, {name: name for name in (
        "strategy", "text_column", "label_column", "k", "lora_rank", "lora_alpha", "lora_mlp", "pooling",
        "prompt_template", "epochs", "lr", "batch_size", "seed")})
    given.update(_given(args, {"train": "train_file", "test": "test_files", "class_weights": "class_weighting",
                               "validation": "validation_file"}))
    given.update(_given(args, {name: name for name in (
        "max_steps", "max_train_samples", "eval_every", "save_every", "early_stop", "early_stop_metric")}))
    if not args.resume and args.init is None:
        raise MiniftError("--init is required: the pretraining run to start from (or --resume to continue "
                          "the run in --out)")
    config = given if args.resume else FinetuneConfig(**given)
    _, _, metrics = finetune(args.init, args.out, config, resume=args.resume, device=args.device, log=_note,
                             results=print)
    results = metrics["test"] or {"validation": metrics["validation"]}     # no --test: the held-out part
    summary = "  ".join(f"{name} accuracy {m['accuracy']:.1%} macro-F1 {m['macro_f1']:.3f}"
                        for name, m in results.items())
    print(f"saved {args.out}  {summary}")


def cmd_classify(args):
    from .adapt import load_finetuned, predictions_csv, predictions_jsonl, predictions_table
    from .adapt.predict import check_output, texts_to_classify
    from .files import atomic_write
    if args.output:
        check_output(args.output, "--output", [args.input if args.input != "-" else None], args.model)
    texts, where, skipped = texts_to_classify(args.texts, args.input, args.format, args.text_column)
    classifier = load_finetuned(args.model, device=args.device)
    probs, n_cut = classifier.classify(texts)
    labels = classifier.labels
    if args.output:
        atomic_write(args.output, predictions_csv(texts, labels, probs))
        print(f"wrote {args.output}  ({len(texts)} texts)", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        sys.stdout.write(predictions_jsonl(texts, labels, probs))
    elif not args.output:
        sys.stdout.write(predictions_table(texts, labels, probs))
    if skipped:
        print(f"note: {where}: {skipped} empty row(s) skipped", file=sys.stderr)
    if n_cut:
        print(f"note: {n_cut} text(s) were longer than the model's context and were cut to fit",
              file=sys.stderr)


def cmd_evaluate(args):
    from .adapt.predict import evaluate_file
    text, data = evaluate_file(args.model, args.test, args.text_column, args.label_column, args.device, args.json)
    print(text)
    if data.n_skipped_empty:
        print(f"note: {data.source}: {data.n_skipped_empty} rows with empty text skipped", file=sys.stderr)
    if args.json:
        print(f"wrote {args.json}")


def cmd_align(args):
    from .align import AlignConfig, align, judge_line
    given = _given(args, {name: name for name in (
        "method", "pairs_from", "epochs", "lr", "batch_size", "beta", "samples", "examples", "judge_samples", "seed")})
    given.update(_given(args, {"pairs": "pairs_file"}))
    config = given if args.resume else AlignConfig(**given)
    _, _, metrics = align(args.init, args.out, config, resume=args.resume, device=args.device, log=_note)
    last = metrics["validation"]
    shown = "  ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "step" and isinstance(v, float))
    print(f"saved {args.out}  ({shown})" + (f"\njudged: {judge_line(metrics['judge'])}" if "judge" in metrics else ""))


def cmd_export(args):
    from .hf_gpt2 import export_hf_gpt2
    for note in export_hf_gpt2(args.model, args.out):
        print(f"note: {note}", file=sys.stderr)
    print(f"saved {args.out}  (transformers: GPT2LMHeadModel.from_pretrained({str(args.out)!r}))")


def cmd_report(args):
    from .viz import write_report
    print(f"wrote {write_report(args.run, out=args.out, text=args.text)}  (open it in a browser)")


def cmd_show(args):
    from .files import atomic_write
    from .viz.graph import example_neuron, graph_svg, graph_text
    output, seen = example_neuron()
    print("o = tanh(x1 * w1 + x2 * w2 + b), after o.backward(); on every node, data is its value and grad "
          "is do/d(that value):\n" + graph_text(output, seen))
    if args.out:
        picture = graph_svg(output, standalone=not args.out.endswith(".html"), seen=seen)
        if args.out.endswith(".html"):
            picture = f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>autograd graph</title></head>" \
                      f"<body>{picture}</body></html>"
        atomic_write(args.out, picture.encode("utf-8"))
        print(f"wrote {args.out}")


def cmd_data(args):
    from .data import export_builtin
    print(export_builtin(args.out, args.split))


COMMANDS = {"pretrain": cmd_pretrain, "generate": cmd_generate, "finetune": cmd_finetune,
            "classify": cmd_classify, "evaluate": cmd_evaluate, "align": cmd_align, "export": cmd_export,
            "report": cmd_report, "show": cmd_show, "data": cmd_data}


def _check_texts(args):
    """Texts given on the command line hold only real characters (bytes that are not
    UTF-8 reach Python as stand-ins that the tokenizer cannot encode)."""
    from .data import check_text
    for flag, name in (("a TEXT argument", "texts"), ("--prompt", "prompt"), ("--text", "text")):
        values = getattr(args, name, None)
        for value in ([values] if isinstance(values, str) else values or []):
            check_text(value, f"{flag} ({value.encode('utf-8', 'backslashreplace').decode()[:40]!r})")


def _interrupted(args):
    """What Ctrl-C leaves behind, in one sentence."""
    if args.command not in ("pretrain", "finetune", "align"):
        return "interrupted"
    from .runs import RunDir
    run = RunDir(args.out)
    step = run.checkpoint_step()
    if step is not None:
        return f"interrupted; the checkpoint of step {step} in {args.out} is intact (continue with --resume)"
    if run.holds_run():
        return "interrupted before the first checkpoint (--resume starts the run again from step 0)"
    return "interrupted before the run started: nothing was saved (run the command again)"


def main(argv=None, speed=None):
    """Run one command; returns the exit code. `speed(reference)` turns the CPU
    appendix on unless the command's --reference flag is given (python -m minift passes
    minift.fast.enable_unless_reference; this module never imports the appendix)."""
    args = build_parser().parse_args(argv)
    from .errors import MiniftError
    if speed is not None:
        speed(getattr(args, "reference", False))
    try:
        _check_texts(args)
        with warnings.catch_warnings():
            # NumPy's overflow and invalid-value warnings would print around the one
            # sentence a mistake gets; what matters (a loss or a weight that is not
            # finite) minift checks itself and says.
            warnings.simplefilter("ignore", RuntimeWarning)
            COMMANDS[args.command](args)
    except MiniftError as e:
        print(f"minift {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"minift {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nminift {args.command}: {_interrupted(args)}", file=sys.stderr)
        return 130
    return 0
