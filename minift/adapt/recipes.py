"""Fine-tuning plans that fit the data, whatever its size.

    plan_steps, plan    a recipe's epochs, shrunk so that the optimisation steps stay bounded
    stratified_sample   --max-train-samples: a seeded sample with the file's class proportions
    EarlyStopping       --early-stop: stop when validation stops improving, keep the best weights
    collapse_warning    the one line that says a classifier is at chance: it predicts one class
                        for everything, or its loss is that of a uniform guess

The recipes (finetune.FINETUNE_RECIPES) count epochs, tuned on the built-in ~430 labels:
30 epochs of LoRA are 750 steps there, but 17,000 on ten thousand tweets.
"""
import json
import math
from dataclasses import replace

import numpy as np

from ..errors import MiniftError
from ..files import load_safetensors, read_safetensors_header, save_safetensors
from .metrics import classification_metrics, mean_cross_entropy

# The default plan's bound on optimisation steps: above every built-in recipe (the longest,
# lora's 30 epochs of 27 batches, is 810 steps), so those stay as they were; on a shared
# 2-core CPU a step of the `small` GPT on tweets took 0.16-0.48 s (docs/fine-tuning.md), so
# a default plan on any data ends within 10 minutes instead of hours. --max-steps moves it.
MAX_STEPS = 1000
EARLY_STOP_METRICS = {"val_loss": min, "val_macro_f1": max}     # what each metric's best is
COLLAPSE_SHARE = 0.95               # this share of predictions on one label is a collapse ...
COLLAPSE_MARGIN = 0.05              # ... when the true labels hold at least this much less of it
CHANCE_LOSS = 0.05                  # a loss within 5% of ln K (K labels) is a uniform guess's loss


def plan_steps(recipe_epochs, steps_per_epoch, epochs=None, max_steps=None):
    """(epochs, max_steps, steps) of a run whose epoch is `steps_per_epoch` batches.

    Without `epochs` (the default plan) the recipe's epochs shrink to fit in `max_steps`
    (default MAX_STEPS), and a single epoch longer than that is cut to it. Epochs given
    by the user are kept, cut only by a `max_steps` the user gave too."""
    if epochs is None:
        max_steps = MAX_STEPS if max_steps is None else max_steps
        epochs = max(1, min(recipe_epochs, max_steps // steps_per_epoch))
    steps = epochs * steps_per_epoch
    return epochs, max_steps, steps if max_steps is None else min(steps, max_steps)


def plan(config, recipe_epochs, n_train, trains, log):
    """(config with its epochs and step bound settled, steps): plan_steps on `n_train`
    training examples, logged with what it means."""
    if not trains:
        return config, 0
    per_epoch = -(-n_train // config.batch_size)
    epochs, max_steps, steps = plan_steps(recipe_epochs, per_epoch, config.epochs, config.max_steps)
    why = "" if config.epochs is not None or epochs == recipe_epochs else \
        f" (the recipe's {recipe_epochs} epochs, fewer to stay within {max_steps:,} steps; --epochs sets them)"
    cut = f", cut to {steps:,} steps" if steps < epochs * per_epoch else ""
    log(f"plan: {n_train:,} training examples, batch {config.batch_size}: {epochs} epoch{'s' * (epochs != 1)} of "
        f"{per_epoch:,} steps{cut} = {steps:,} steps{why}")
    return replace(config, epochs=epochs, max_steps=max_steps), steps


def sample_training(train, config, log):
    """The training data, cut to a seeded stratified sample of --max-train-samples examples."""
    n = config.max_train_samples
    if n is None or n >= len(train):
        return train
    keep = stratified_sample(train.labels, n, config.seed)
    log(f"using {len(keep):,} of the {len(train):,} examples of {train.source} (--max-train-samples, "
        f"a stratified sample with seed {config.seed})")
    return replace(train, texts=[train.texts[i] for i in keep], labels=[train.labels[i] for i in keep])


def stratified_sample(labels, n, seed):
    """Sorted indices of `n` of the examples whose labels are `labels`, each label keeping
    its share (largest remainders round it) and at least one example while n allows; the
    examples of a label are drawn with the seeded generator, so the same seed gives the
    same sample."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)          # sorted: deterministic
    exact = n * counts / counts.sum()
    quota = np.minimum(np.maximum(np.floor(exact).astype(np.int64), 1 if n >= len(classes) else 0), counts)
    for c in np.argsort(-(exact - np.floor(exact)), kind="stable"):  # the remainder, largest first
        if quota.sum() >= n:
            break
        quota[c] += quota[c] < counts[c]
    while quota.sum() > n:                                           # the minimum of one overshot
        quota[np.argmax(quota)] -= 1
    rng = np.random.Generator(np.random.PCG64(seed))
    chosen = [rng.permutation(np.flatnonzero(labels == cls))[:q] for cls, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def validation_metrics(task, encoded, y, labels):
    """The Trainer's evaluate(model): accuracy, loss (cross-entropy over the labels) and
    macro-F1 of the task's scores on the validation set."""
    def evaluate(model):
        scores = task.scores(model, encoded)
        m = classification_metrics(y, scores.argmax(axis=1), labels)
        return {"val_accuracy": m["accuracy"], "val_loss": mean_cross_entropy(scores, y), "val_macro_f1": m["macro_f1"]}
    return evaluate


class EarlyStopping:
    """Stop when `metric` (a key of the evaluations: val_loss or val_macro_f1) has not
    improved for `patience` evaluations in a row, and keep the weights of the best one in
    `path` (a safetensors file that records their step).

    The Trainer calls update() after each evaluation, and finished() when it resumes:
    both read only the history, so a resumed run stops exactly where an uninterrupted one
    would have."""

    def __init__(self, metric, patience, path):
        self.metric, self.patience, self.path = metric, patience, path
        self.better = EARLY_STOP_METRICS[metric]

    def best(self, history):
        """The best evaluation so far (the first, among equals)."""
        evals = history["eval"]
        best = self.better(e[self.metric] for e in evals)
        return next(e for e in evals if e[self.metric] == best)

    def finished(self, history):
        evals = history["eval"]
        return bool(evals) and sum(e["step"] > self.best(history)["step"] for e in evals) >= self.patience

    def update(self, model, history):
        """Save the weights if the latest evaluation is the best; True when training should stop."""
        step = history["eval"][-1]["step"]
        if self.best(history)["step"] == step:
            save_safetensors(self.path, model.state_dict(), {"minift": json.dumps({"step": int(step)})})
        return self.finished(history)

    def restore(self, model, history):
        """Load the best weights into `model`; returns their step."""
        step = self.best(history)["step"]
        _, meta = read_safetensors_header(self.path)
        if json.loads(meta.get("minift", "{}")).get("step") != step:
            raise MiniftError(f"{self.path} does not hold the best evaluation's weights (step {step}); "
                              f"start the run again")
        arrays, _ = load_safetensors(self.path, expect_dtypes=("F16", "F32", "F64"), finite=True)
        model.load_state_dict(arrays)
        return step


def collapse_warning(metrics, name="validation"):
    """One line when a classifier's results on a set (classification_metrics, with the
    mean cross-entropy as "loss" where known) are those of a classifier at chance, with
    what to try; else None. At chance is either of:
      collapsed    COLLAPSE_SHARE or more of the predictions are one label, which the true
                   labels hold at least COLLAPSE_MARGIN less of;
      uniform      the loss is within CHANCE_LOSS (5%) of ln K, K labels: the loss of a
                   guess that gives every label probability 1/K (ln 3 = 1.099).
    finetune logs it for the validation set; the report shows it for every set."""
    confusion, labels = np.asarray(metrics["confusion"]), metrics["labels"]
    predicted, true = confusion.sum(axis=0) / confusion.sum(), confusion.sum(axis=1) / confusion.sum()
    top, chance = int(predicted.argmax()), math.log(len(labels))
    signs = []
    if predicted[top] >= COLLAPSE_SHARE and predicted[top] - true[top] >= COLLAPSE_MARGIN:
        signs.append(f"{predicted[top]:.0%} of the {name} predictions are {labels[top]!r}, whose share of the "
                     f"labels is {true[top]:.0%}")
    if "loss" in metrics and abs(metrics["loss"] - chance) <= CHANCE_LOSS * chance:
        signs.append(f"the {name} loss {metrics['loss']:.3f} is within {CHANCE_LOSS:.0%} of ln {len(labels)} = "
                     f"{chance:.3f}, the loss of giving every label the same probability")
    if not signs:
        return None
    return (f"warning: {', and '.join(signs)}: the classifier is at chance, it has learned little or nothing "
            f"from the labels; try --class-weights, more --epochs or another --lr (too few or too small "
            f"updates leave it there), and judge it by macro-F1")
