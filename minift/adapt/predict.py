"""A fine-tuned run, loaded (`load_finetuned` -> `FinetunedModel`, with scikit-learn's
`predict`, `predict_proba`, `evaluate`), and its predictions as files: a CSV a
spreadsheet opens, JSON Lines a program reads, and a check that an output file never
replaces an input.

    python -m minift classify --model runs/ft --input new.csv --output predictions.csv
    python -m minift classify --model runs/ft --json < texts.txt
    python -m minift evaluate --model runs/ft --test held_out.csv --json metrics.json
"""
import csv
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..data import Tokenizer, encode_labels, load_labeled, load_texts, parse_texts
from ..errors import MiniftError
from ..files import resolved, write_json
from ..model import language_model
from ..nn import Module
from ..runs import FINETUNED_KINDS, RunDir
from .metrics import classification_metrics, softmax_rows
from .report import format_metrics
from .tasks import ClassifierTask, InstructTask, task_from_config


class FinetunedModel:
    """A finished fine-tuned run, loaded, with scikit-learn's names: `predict(texts)`
    gives labels, `predict_proba(texts)` probabilities (columns in `labels` order),
    `evaluate(texts, labels)` the metrics; `classify` also counts texts cut to the context."""

    def __init__(self, model: Module, tokenizer: Tokenizer, task: ClassifierTask | InstructTask, config: dict) -> None:
        self.model, self.tokenizer, self.task, self.config = model, tokenizer, task, config
        self.labels = task.labels

    def classify(self, texts: Iterable[str]) -> tuple[np.ndarray, int]:
        """(probabilities (N, L) in `labels` order, number of texts cut to the context)."""
        if isinstance(texts, str):
            raise MiniftError("texts must be a list of strings, not one string (write [text] for one)")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise MiniftError(f"text {i + 1} is empty; there is nothing to classify")
        encoded, n_cut = self.task.encode(texts)
        return softmax_rows(self.task.scores(self.model, encoded)), n_cut

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """Probabilities, an (N, L) array whose column j is the label `labels[j]`."""
        return self.classify(texts)[0]

    def predict(self, texts: Iterable[str]) -> list[str]:
        """The most probable label of each text, a list of label names."""
        return [self.labels[j] for j in self.predict_proba(texts).argmax(axis=1)]

    def evaluate(self, texts: Iterable[str], labels: Iterable[str], source: str | None = None) -> dict:
        """classification_metrics of the predictions against the true `labels` (names);
        a label the run never trained on is a MiniftError naming `source`."""
        texts, labels = list(texts), list(labels)
        if len(texts) != len(labels):
            raise MiniftError(f"{len(texts)} texts but {len(labels)} labels; evaluate needs one label a text")
        if not texts:
            raise MiniftError("no examples to evaluate")
        y_true = encode_labels(labels, self.labels, source=source)
        return classification_metrics(y_true, self.predict_proba(texts).argmax(axis=1), self.labels)


def load_finetuned(run_dir: str | Path, device: str = "cpu", command: str = "classify") -> FinetunedModel:
    """The FinetunedModel of a finished run written by `finetune` (a Classifier for kind
    "classifier", the GPT for "instruct" and "prompt", a BagOfWords for "bow"). A run that
    did not finish is refused: its weights are a checkpoint, not the result. `command`
    names the user's command in those refusals."""
    run = RunDir(run_dir)
    cfg = run.read_config(FINETUNED_KINDS, command=command)
    if not run.is_finished():
        holder = run.in_use()
        if holder is not None:
            raise MiniftError(f"{run.path} is still being fine-tuned ({holder}); {command} it once that has "
                              f"finished")
        step = run.checkpoint_step()
        where = f"it stopped at step {step}" if step is not None else "it stopped before its first checkpoint"
        raise MiniftError(f"{run.path} did not finish fine-tuning ({where}); finish it with "
                          f"`python -m minift finetune --resume --out {run.path}`")
    tokenizer = run.load_tokenizer(cfg)
    task = task_from_config(cfg, tokenizer, run.file("config.json"))
    if task.kind == "bow":                            # no GPT: a linear model over the tokenizer's vocabulary
        model = task.inference_model()
    else:
        run.check_weights(cfg["model"])               # before anything is allocated
        model = task.inference_model(language_model(cfg["model"]))
    run.load_weights(model)
    return FinetunedModel(model.to(device).eval(), tokenizer, task, cfg)


# ----------------------------------------------------------------------------- predictions as files

def prediction_rows(texts, labels, probabilities):
    """One dict a text: {"text", "label" (the most probable), "probabilities": {label: p}}."""
    return [{"text": text, "label": labels[int(p.argmax())],
             "probabilities": {name: float(q) for name, q in zip(labels, p)}}
            for text, p in zip(texts, probabilities)]


def predictions_csv(texts, labels, probabilities):
    """CSV text with the columns text, label, then p_<label> for each label in order.
    Probabilities are written in full (repr), so they read back as the same floats."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["text", "label"] + [f"p_{name}" for name in labels])
    for row in prediction_rows(texts, labels, probabilities):
        writer.writerow([row["text"], row["label"]] + list(row["probabilities"].values()))
    return out.getvalue()


def predictions_jsonl(texts, labels, probabilities):
    """JSON Lines text, one prediction_rows object a line (strict JSON: no NaN)."""
    return "".join(json.dumps(row, allow_nan=False) + "\n" for row in prediction_rows(texts, labels, probabilities))


def predictions_table(texts, labels, probabilities):
    """One line a text for a terminal: the label, each label's probability, the text."""
    return "".join(f"{labels[int(p.argmax())]:<12}  " + "  ".join(f"{name} {q:.3f}" for name, q in zip(labels, p))
                   + f"  {text}\n" for text, p in zip(texts, probabilities))


def evaluate_file(run_dir, test, text_column="text", label_column="label", device="cpu", json_out=None):
    """`minift evaluate`: (the metrics table as text, the LabeledData read) of the finished
    run `run_dir` on the labeled file `test`; with `json_out` the metrics are also written
    there as JSON (never over an input or a file of the run: checked first)."""
    if json_out:
        check_output(json_out, "--json", [test], run_dir)
    data = load_labeled(test, text_column, label_column).require_examples()
    classifier = load_finetuned(run_dir, device=device, command="evaluate")
    metrics = classifier.evaluate(data.texts, data.labels, source=data.source)
    if json_out:
        write_json(json_out, {"model": str(run_dir), "test": data.source, **metrics})
    return format_metrics(metrics, title=Path(test).stem), data


def check_output(path, flag, inputs=(), run_dir=None):
    """Refuse, before anything is computed, an output file that would replace one of the
    `inputs` or a file of the run it reads (its metrics.json, its weights)."""
    target = Path(resolved(path))
    for source in inputs:
        if source is not None and Path(resolved(source)) == target:
            raise MiniftError(f"{flag} {path} is also the input file; write the results to another file")
    if run_dir is not None and Path(resolved(run_dir)) in target.parents:
        raise MiniftError(f"{flag} {path} lies inside the run directory {run_dir}, whose files minift keeps "
                          f"consistent; write the results outside it")


def texts_to_classify(texts, source=None, fmt=None, text_column="text"):
    """(texts, where they came from, number of empty rows skipped) for `classify`: the
    TEXT arguments, --input FILE, or standard input (--input - or a lone TEXT '-'), never
    the text "-"."""
    if texts == ["-"] and source is None:
        source, texts = "-", []
    elif "-" in texts:
        raise MiniftError("a TEXT '-' means standard input: give it alone (or use --input -), not with other texts")
    if source is None:
        if not texts:
            raise MiniftError("nothing to classify: give TEXT arguments, or --input FILE (- for standard input)")
        return texts, "the command line", 0
    if texts:
        raise MiniftError(f"give TEXT arguments or --input {source}, not both")
    if source == "-":
        where = "standard input"
        texts, skipped = parse_texts(sys.stdin.buffer.read(), where, fmt or "txt", text_column)
    else:
        where = source
        texts, skipped = load_texts(source, text_column, fmt)
    if not texts:
        raise MiniftError(f"{where}: no texts to classify" + (f" (all {skipped} rows are empty)" if skipped else ""))
    return texts, where, skipped
