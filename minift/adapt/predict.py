"""A fine-tuned run's predictions as files: a CSV a spreadsheet opens, JSON Lines a
program reads, and a check that an output file never replaces an input.

    python -m minift classify --model runs/ft --input new.csv --output predictions.csv
    python -m minift classify --model runs/ft --json < texts.txt
    python -m minift evaluate --model runs/ft --test held_out.csv --json metrics.json
"""
import csv
import io
import json
from pathlib import Path

from ..errors import MiniftError
from ..files import resolved


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
