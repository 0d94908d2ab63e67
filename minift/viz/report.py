"""`python -m minift report RUN`: one self-contained HTML page of what a run did.

    python -m minift report runs/ft --text "The strap is stellar." --out ft.html

The page has no script and loads nothing: charts are base64 PNG (matplotlib, the `viz`
extra) or inline SVG, matrices are shaded tables. Sections, for any run directory
(pretraining or fine-tuning, finished or not):

    overview     what the run is (config.json) and how far it got (metrics.json)
    curves       training loss, validation loss and accuracy against the step
    results      per test set: accuracy, macro-F1, loss and the confusion matrix (fine-tuned
                 runs), and a warning for a set on which the classifier is at chance (one
                 class predicted for nearly everything, or a loss within 5% of ln K: see
                 adapt/recipes.py, collapse_warning)
    updates      per layer, |update| / |weight| of an optimiser step, over training (the
                 Trainer records it at its log steps): around 1e-3 is the usual healthy
                 size; far below, a layer barely learns; far above, it is being overwritten
    attention    for one text, a fine-tuned run's prediction (its label, and every label's
                 probability), then every head's attention map in every block, tokens on the axes
"""
import html
from pathlib import Path

from ..adapt import load_finetuned
from ..adapt.recipes import collapse_warning
from ..errors import MiniftError
from ..files import atomic_write
from ..pretrain import load_gpt
from ..runs import FINETUNED_KINDS, LANGUAGE_MODEL_KINDS, RunDir
from .attention import attention_maps
from .plots import attention_heads, confusion, line_chart, matplotlib_available

DEFAULT_TEXT = "The battery life is great, but the screen is too dim."
MAX_TOKENS = 40         # attention maps of longer texts are cut: a map stays readable
HEALTHY_UPDATE = 1e-3   # the dashed line of the update chart

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
section {{ margin-bottom: 2.5em; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
th {{ background: #f4f4f4; }}
caption {{ text-align: left; font-weight: bold; padding: 4px 0; }}
.note {{ color: #666; font-style: italic; }}
.warning {{ color: #a31515; font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{title}</h1>
{body}
</body></html>
"""


def write_report(run_dir, out=None, text=None, use_matplotlib=None):
    """Write the report of the run in `run_dir` to `out` (default RUN/report.html) and
    return its path. `text`: the text whose prediction and attention maps are shown.
    use_matplotlib: None means "when it is installed"."""
    if text is not None and not text.strip():
        raise MiniftError("--text is empty: give the text whose prediction and attention maps the report shows")
    run = RunDir(run_dir)
    cfg = run.read_config()
    metrics = run.read_metrics() or {}
    history = metrics.get("history", metrics)       # a finished fine-tuning run nests it
    mpl = matplotlib_available() if use_matplotlib is None else use_matplotlib
    body = "\n".join([
        _section("overview", "Overview", _overview(run, cfg, metrics, mpl)),
        _section("curves", "Training curves", _curves(history, mpl)),
        _section("results", "Test results and confusion matrices", _results(metrics)),
        _section("updates", "Update-to-weight ratio per layer", _updates(history, mpl)),
        _section("attention", "Attention maps", _attention(run_dir, cfg, text or DEFAULT_TEXT, mpl)),
    ])
    out = Path(out) if out is not None else run.file("report.html")
    atomic_write(out, PAGE.format(title=html.escape(f"minift report: {run.path}"), body=body).encode("utf-8"))
    return out


def _section(anchor, title, content):
    return f'<section id="{anchor}">\n<h2>{html.escape(title)}</h2>\n{content}\n</section>'


def _note(text):
    return f'<p class="note">{html.escape(text)}</p>'


def _table(rows, header=None):
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _overview(run, cfg, metrics, mpl):
    model = cfg["model"]
    rows = [("run directory", str(run.path)), ("kind", cfg["kind"]), ("strategy", cfg.get("strategy", "-")),
            ("model", f"{model.n_layer} layers, {model.n_head} heads, n_embd {model.n_embd}, block "
                      f"{model.block_size}, vocabulary {model.vocab_size}, {'causal' if model.causal else 'encoder'}"),
            ("steps done", metrics.get("step", "-")), ("finished", bool(metrics.get("finished", False))),
            ("figures drawn with", "matplotlib" if mpl else "inline SVG and tables (pip install -e \".[viz]\" "
                                                            "for matplotlib)")]
    if "train_seconds" in metrics:
        rows.append(("training time", f"{metrics['train_seconds']} s"))
    return _table(rows)


def _curves(history, mpl):
    train, evals = history.get("train", []), history.get("eval", [])
    if not train and not evals:
        return _note("metrics.json holds no history yet (the run has not reached its first checkpoint).")
    loss = {"training loss": ([r["step"] for r in train], [r["loss"] for r in train])}
    if any("val_loss" in e for e in evals):
        loss["validation loss"] = ([e["step"] for e in evals if "val_loss" in e],
                                   [e["val_loss"] for e in evals if "val_loss" in e])
    parts = [line_chart(loss, "Loss", "step", "loss", use_matplotlib=mpl)]
    keys = sorted({k for e in evals for k in e if "accuracy" in k})
    if keys:
        series = {k: ([e["step"] for e in evals if k in e], [e[k] for e in evals if k in e]) for k in keys}
        parts.append(line_chart(series, "Accuracy", "step", "accuracy", use_matplotlib=mpl))
    else:
        parts.append(_note("No accuracy recorded: a pretraining run measures its validation loss."))
    columns = sorted({k for e in evals for k in e if k != "step"})
    if evals:
        rows = [[e["step"]] + [_fmt(e.get(k)) for k in columns] for e in evals]
        parts.append(_table(rows, ["step"] + columns))
    return "\n".join(parts)


def _fmt(v):
    return f"{v:.4f}" if isinstance(v, float) else "-" if v is None else v


def _results(metrics):
    sets = {**({"validation": metrics["validation"]} if "validation" in metrics else {}), **metrics.get("test", {})}
    if not sets:
        return _note("No test results: only a finished fine-tuned run is evaluated on labeled test sets.")
    warnings = [collapse_warning(m, name) for name, m in sets.items()]
    parts = [f'<p class="warning">{html.escape(w)}</p>' for w in warnings if w]
    rows = [(name, m["n"], f"{m['accuracy']:.1%}", f"{m['macro_f1']:.3f}", _fmt(m.get("loss")))
            for name, m in sets.items()]
    parts.append(_table(rows, ["set", "examples", "accuracy", "macro-F1", "loss"]))
    parts += [confusion(m["confusion"], m["labels"], f"{name} (rows: true label, columns: predicted)")
              for name, m in sets.items()]
    return "\n".join(parts)


def _updates(history, mpl):
    records = [r for r in history.get("train", []) if "update_ratio" in r]
    if not records:
        return _note("This run recorded no update ratios (runs written before minift recorded them, or "
                     "runs that did not train).")
    series = {}
    for r in records:
        for layer, ratio in r["update_ratio"].items():
            xs, ys = series.setdefault(layer, ([], []))
            xs.append(r["step"])
            ys.append(ratio)
    chart = line_chart(series, "|update| / |weight| per layer (dashed: 1e-3)", "step", "ratio", log_y=True,
                       guide=HEALTHY_UPDATE, use_matplotlib=mpl)
    last = records[-1]
    table = _table([(layer, f"{ratio:.2e}") for layer, ratio in last["update_ratio"].items()],
                   [f"layer (step {last['step']})", "ratio"])
    return chart + "\n" + table


def _prediction(run_dir, cfg, text):
    """A fine-tuned run's prediction for `text`: the label, and every label's probability
    (nothing for a language model, which predicts tokens)."""
    if cfg["kind"] not in FINETUNED_KINDS:
        return ""
    try:
        classifier = load_finetuned(run_dir, command="report")
    except (MiniftError, OSError) as e:            # an unfinished run
        return _note(f"No prediction: {e}")
    probabilities = classifier.classify([text])[0][0]
    best = int(probabilities.argmax())
    return (f"<p>Prediction for <code>{html.escape(text)}</code>: <b>{html.escape(classifier.labels[best])}</b> "
            f"(probability {probabilities[best]:.3f}).</p>\n"
            + _table([(label, f"{p:.3f}") for label, p in zip(classifier.labels, probabilities)],
                     ["label", "probability"]))


def _attention(run_dir, cfg, text, mpl):
    prediction = _prediction(run_dir, cfg, text)
    if cfg["kind"] == "bow":
        return prediction + _note("No attention maps: a bag-of-words model (strategy bow) counts tokens; it has "
                                  "no attention.")
    try:
        transformer, tokenizer = _backbone(run_dir, cfg)
    except (MiniftError, OSError) as e:            # an unfinished run, or one with no weights yet
        return prediction + _note(f"No attention maps: {e}")
    limit = min(MAX_TOKENS, cfg["model"].block_size)
    ids = tokenizer.encode(text)
    if cfg["kind"] == "classifier":               # the token the classifier reads last (see adapt/tasks.py)
        ids = ids[:limit - 1] + [tokenizer.eot_id]
    ids = ids[:limit]
    # a token's own text, its spaces made visible ("␣the" is " the"), or its id if it decodes to nothing
    tokens = [tokenizer.decode([i]).replace(" ", "␣").replace("\n", "\\n") or f"<{i}>" for i in ids]
    listed = " ".join(f"<code>{i}:{html.escape(t)}</code>" for i, t in enumerate(tokens))
    parts = [prediction, f"<p>Text: <code>{html.escape(text)}</code>, {len(ids)} tokens: {listed}. Row i of a "
                         f"map is what token i attends to; its weights over the tokens sum to 1.</p>"]
    for layer, maps in enumerate(attention_maps(transformer, ids)):
        parts.append(f"<h3>block {layer}</h3>" + attention_heads(maps, tokens, f"block {layer}", use_matplotlib=mpl))
    return "\n".join(parts)


def _backbone(run_dir, cfg):
    """(transformer, tokenizer) of the run's model, on the CPU."""
    if cfg["kind"] in LANGUAGE_MODEL_KINDS:
        model, tokenizer, _ = load_gpt(run_dir, kinds=LANGUAGE_MODEL_KINDS, command="report")
        return model.transformer, tokenizer
    finetuned = load_finetuned(run_dir)
    return finetuned.model.transformer, finetuned.tokenizer

