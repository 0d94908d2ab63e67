"""Fine-tuning: adapt a pretrained run to a labeled task, and use the result.

    python -m minift finetune --init runs/small --out runs/ft --strategy lora
    python -m minift classify --model runs/ft "The strap is stellar."

`finetune()` reads top to bottom: check every setting and every labeled file -> load the
pretrained GPT -> the Task of the strategy (tasks.py) -> train it with the one Trainer ->
merge LoRA adapters -> evaluate on every test set -> metrics.json. Nothing is written
before all inputs have been checked; a run stopped at any moment continues with
`finetune --resume`, bit for bit.
"""
import hashlib
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..card import write_run_card
from ..data import LabeledData, Tokenizer, encode_labels, feedback, label_vocabulary, load_labeled, stratified_split
from ..errors import MiniftError
from ..files import atomic_write, file_sha256, resolved, write_json
from ..model import param_groups, training_bytes
from ..nn import Module, has_dropout
from ..optim import AdamW, WarmupCosine
from ..pretrain import load_gpt
from ..runs import (FINETUNED_KINDS, WEIGHTS, RunDir, check_init_unchanged, check_memory, claim, config_from_json,
                    refuse_changes)
from ..trainer import Progress, Trainer, format_seconds
from .heads import POOLINGS
from .lora import has_lora, merge_lora, parameter_counts
from .metrics import classification_metrics, mean_cross_entropy
from .prompts import PromptFormat
from .recipes import EARLY_STOP_METRICS, EarlyStopping, collapse_warning, plan, sample_training, validation_metrics
from .report import comparison_table, format_metrics
from .tasks import LM_STRATEGIES, STRATEGIES, make_task

# Per-strategy recipes for the built-in data (about 430 training examples of 20-60
# tokens): epochs, peak learning rate, batch size. On more data the epochs shrink so that
# the steps stay bounded (recipes.plan_steps). A frozen backbone leaves only a
# small head or small adapters to train, which want a larger learning rate than the
# whole network. `scratch` uses `full`'s recipe, so the comparison is fair.
FINETUNE_RECIPES = {
    "full": dict(epochs=5, lr=5e-4, batch_size=16),
    "scratch": dict(epochs=5, lr=5e-4, batch_size=16),      # the same recipe as full: a fair baseline
    "head": dict(epochs=20, lr=3e-3, batch_size=16),
    "top-k": dict(epochs=8, lr=5e-4, batch_size=16),
    # few parameters: more, larger steps (5e-3 was measured unstable: a run whose floating-point
    # rounding differed collapsed to 67% validation accuracy and never recovered)
    "lora": dict(epochs=30, lr=3e-3, batch_size=16),
    "instruct": dict(epochs=6, lr=3e-4, batch_size=16),
    "prompt": dict(epochs=0, lr=0.0, batch_size=1),         # nothing trains
    # the bag-of-words baseline: measured on the built-in validation split, 2 seeds: 5-40 epochs, lr 3e-3 to
    # 0.3, weight decay 0 to 1 all gave 79-90%; a larger lr or more epochs drove the loss to 0 and overfit
    # (79-83%), while 10 epochs at 1e-2 gave 87.5% on both seeds in 1-2 s (weight decay: the default 0.01)
    "bow": dict(epochs=10, lr=1e-2, batch_size=16),
}
DEFAULT_K = {"top-k": 2, "prompt": 0}     # blocks that train (top-k); solved examples shown (prompt)
BETAS = (0.9, 0.95)
BEST = "best.safetensors"       # --early-stop: the best evaluation's weights, the run's result


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run. Fields left None take the strategy's recipe
    (FINETUNE_RECIPES, DEFAULT_K); without `train_file`, the built-in feedback labels."""
    strategy: str = "full"
    train_file: str | None = None
    test_files: list[str] = field(default_factory=list)
    text_column: str = "text"
    label_column: str = "label"
    k: int | None = None
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_mlp: bool = False
    pooling: str | None = None          # None: "last" for a decoder, "mean" for an encoder (heads.pool)
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float = 0.01
    class_weighting: bool = False
    val_fraction: float = 0.1
    seed: int = 0
    prompt_template: str = PromptFormat().template
    max_steps: int | None = None        # None: recipes.MAX_STEPS when epochs is left to the plan
    max_train_samples: int | None = None    # a seeded stratified sample of the training file
    validation_file: str | None = None  # instead of holding val_fraction of the training file out
    eval_every: int | None = None       # steps between evaluations (None: once an epoch)
    save_every: int | None = None       # steps between checkpoints (None: at each evaluation)
    early_stop: int | None = None       # patience, in evaluations (None: train every planned step)
    early_stop_metric: str = "val_loss"

    def __post_init__(self) -> None:
        _choice(self.strategy, STRATEGIES, "strategy", "--strategy")
        if self.pooling is not None:
            _choice(self.pooling, POOLINGS, "pooling", "--pooling")
        if self.class_weighting and self.strategy in LM_STRATEGIES:
            raise MiniftError(f"class weights (--class-weights) apply to a classification head; strategy "
                              f"{self.strategy!r} has none")
        trains = self.strategy != "prompt"
        for key, value in FINETUNE_RECIPES[self.strategy].items():
            if getattr(self, key) is None and (key != "epochs" or not trains):   # epochs: planned (plan_steps)
                setattr(self, key, value)
        if self.k is None:
            self.k = DEFAULT_K.get(self.strategy)
        self.train_file = resolved(self.train_file) if self.train_file else None
        self.test_files = [resolved(f) for f in self.test_files]
        self.validation_file = resolved(self.validation_file) if self.validation_file else None
        for name, flag, low in (("epochs", "--epochs", 1 if trains else 0), ("batch_size", "--batch-size", 1),
                                ("lora_rank", "--lora-rank", 1), ("seed", "--seed", 0),
                                ("k", "--k", 0), ("max_steps", "--max-steps", 1),
                                ("max_train_samples", "--max-train-samples", 2), ("eval_every", "--eval-every", 1),
                                ("save_every", "--save-every", 1), ("early_stop", "--early-stop", 1)):
            _integer(getattr(self, name), name, flag, low)
        _choice(self.early_stop_metric, EARLY_STOP_METRICS, "early-stopping metric", "--early-stop-metric")
        if not trains and (self.early_stop or self.max_steps):
            raise MiniftError("strategy 'prompt' trains nothing: --early-stop and --max-steps do not apply")
        _number(self.lora_alpha, "lora_alpha", "--lora-alpha", positive=True)
        _number(self.weight_decay, "weight_decay", None, positive=False)     # no flag: FinetuneConfig only
        if trains:
            _number(self.lr, "lr", "--lr", positive=True)
        if not (isinstance(self.val_fraction, float) and 0.0 < self.val_fraction < 1.0):
            raise MiniftError(f"val_fraction must be a number between 0 and 1, got {self.val_fraction!r}")
        PromptFormat(self.prompt_template)                   # checks the template

    def to_dict(self) -> dict:
        return asdict(self)

    def recipe(self) -> dict:
        """The training settings, as config.json's "train" section has always held them."""
        return {k: getattr(self, k) for k in ("epochs", "lr", "batch_size", "seed", "weight_decay",
                                               "val_fraction", "class_weighting")}


def _choice(value, choices, name, flag):
    if value not in choices:
        raise MiniftError(f"unknown {name} {value!r} ({flag}); choose one of {list(choices)}")


def _integer(value, name, flag, low):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low):
        raise MiniftError(f"{name} ({flag}) must be an integer >= {low}, got {value!r}")


def _number(value, name, flag, positive):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > 0 if positive else value >= 0)
    if not ok:
        raise MiniftError(f"{name}{f' ({flag})' if flag else ''} must be a finite number "
                          f"{'> 0' if positive else '>= 0'}, got {value!r}")


# ----------------------------------------------------------------------------- the data

def builtin_labeled_sets(seed=0):
    """The built-in feedback labels as (train, {"test_a", "test_b"}) LabeledData: train
    and test_a use sentiment lexicon part A only, test_b part B only."""
    sets = feedback.labeled_sets(seed=seed)

    def as_data(name, what):
        return LabeledData(texts=[t for t, _ in sets[name]], labels=[lab for _, lab in sets[name]],
                           source=f"built-in feedback {name} ({what})")
    return (as_data("train", "lexicon part A"),
            {"test_a": as_data("test_a", "lexicon part A"), "test_b": as_data("test_b", "lexicon part B only")})


def load_finetune_data(config):
    """(train LabeledData, {test name: LabeledData}), every file read and checked. Without
    a train file, the built-in sets; test sets are the test files if given (named after
    the files), else the built-in ones when training on the built-in data, else none."""
    if config.train_file is None:
        train, tests = builtin_labeled_sets()
    else:
        train, tests = load_labeled(config.train_file, config.text_column, config.label_column), {}
    if config.test_files:
        tests = {}
        for f in config.test_files:
            name = Path(f).stem
            while name in tests:                 # two files called test.csv in different folders
                name += "_"
            tests[name] = load_labeled(f, config.text_column, config.label_column)
    for data in [train, *tests.values()]:
        data.require_examples()
    if len(set(train.labels)) < 2:
        raise MiniftError(f"{train.source}: every example has the label {train.labels[0]!r}; telling classes "
                          f"apart needs at least 2 labels (a prompt with one label to choose from scores 100% "
                          f"whatever the text)")
    _note_labels_differing_in_case(train)
    return train, tests


def _note_labels_differing_in_case(data):
    """Labels that differ only in case ("Positive" and "positive") are two classes, as
    the file says; a note says so, since it is more often a slip than an intent."""
    by_lower = {}
    for label in sorted(set(data.labels)):
        by_lower.setdefault(label.casefold(), []).append(label)
    for same in by_lower.values():
        if len(same) > 1:
            print(f"note: {data.source}: the labels {', '.join(repr(x) for x in same)} differ only in case; they "
                  f"are {len(same)} classes (make them one in the file if they mean one)", file=sys.stderr)


def load_validation(config):
    """The --validation file's LabeledData, read and checked, or None."""
    if config.validation_file is None:
        return None
    return load_labeled(config.validation_file, config.text_column, config.label_column).require_examples()


def split_data(train, tests, labels, config, validation=None):
    """Texts and label ids of every split: train, validation (the `validation` LabeledData,
    else held out of the training file, stratified) and each test set."""
    y_all = encode_labels(train.labels, labels, source=train.source)
    y_tests = {name: encode_labels(d.labels, labels, source=d.source) for name, d in tests.items()}
    if validation is not None:
        y_val = encode_labels(validation.labels, labels, source=validation.source)
        texts = {"train": train.texts, "validation": validation.texts, **{n: d.texts for n, d in tests.items()}}
        return texts, {"train": y_all, "validation": y_val, **y_tests}
    train_idx, val_idx = stratified_split(y_all, config.val_fraction, config.seed)
    if len(val_idx) == 0:
        raise MiniftError(f"{train.source}: no example can be held out for validation: each of its "
                          f"{len(labels)} labels occurs only once ({len(y_all)} examples); fine-tuning needs "
                          f"at least two examples of a label")
    texts = {"train": [train.texts[i] for i in train_idx], "validation": [train.texts[i] for i in val_idx],
             **{name: d.texts for name, d in tests.items()}}
    y = {"train": y_all[train_idx], "validation": y_all[val_idx], **y_tests}
    return texts, y


def file_digests(config):
    """sha256 of every labeled file, so --resume can tell that the data is unchanged."""
    files = [f for f in (config.train_file, config.validation_file) if f] + list(config.test_files)
    return {f: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}


# ----------------------------------------------------------------------------- fine-tuning

def finetune(init: str | Path | None, out_dir: str | Path, config: FinetuneConfig | dict | None = None, *,
             device: str = "cpu", resume: bool = False, until: int | None = None,
             log: Callable[..., object] = print, progress: Progress | None = None,
             results: Callable[..., object] | None = None) -> tuple[Module | None, Tokenizer | None, dict]:
    """Adapt the pretraining run `init` to labeled data and write the run directory
    `out_dir`; returns (model, tokenizer, metrics).

    config: a FinetuneConfig (default: `full` on the built-in labels). With resume=True
    the run in `out_dir` continues from its last checkpoint (its config.json says what
    it is; `init` may be None, and `config` may be a dict of settings that must equal
    the run's). `until` stops training early at that step, as an interruption would.
    Notes go to `log`, the tables of test results to `results` (default: `log` too).
    """
    with claim(out_dir, "finetune", resume, device) as run:
        if resume:                                          # (claim: the run exists)
            if run.is_finished():
                log(f"{out_dir} already finished fine-tuning")
                return None, None, run.read_metrics()
            init, config = reopen(run, init, config or {})
        else:
            config = config if isinstance(config, FinetuneConfig) else FinetuneConfig(**(config or {}))
            run.require_new()
            if init is None:
                raise MiniftError("--init is required: the pretraining run to start from")
        train_data, tests = load_finetune_data(config)
        validation = load_validation(config)
        gpt, tokenizer, init_cfg = load_gpt(init, device, command="finetune --init", finished=True)
        if resume:
            check_init_unchanged(run.read_config(), tokenizer, run.path)
        for note in init_cfg.get("notes", ()):              # a Hugging Face GPT-2 directory: padding
            log(note)
        _check_against_model(config, gpt.config)
        if config.pooling is None:          # measured: an encoder's classifier reads the mean better
            config = replace(config, pooling="last" if gpt.config.causal else "mean")
        train_data = sample_training(train_data, config, log)
        labels = label_vocabulary(train_data.labels)
        texts, y = split_data(train_data, tests, labels, config, validation)
        _check_memory(config, gpt.config, len(y["train"]), device)
        task = make_task(config, labels, tokenizer, gpt.config, texts["train"], y["train"])
        model = task.build(gpt).to(device)
        encoded, truncated = {}, {}
        for name, t in texts.items():
            encoded[name], truncated[name] = task.encode(t)
        trainable, total = parameter_counts(model) if task.trains else (0, model.num_parameters())
        skipped = {"train": train_data.n_skipped_empty, **{n: d.n_skipped_empty for n, d in tests.items()}}
        _log_plan(log, config, trainable, total, y, train_data.source, tests, truncated, skipped,
                  gpt.config.block_size)
        config, steps = plan(config, FINETUNE_RECIPES[config.strategy]["epochs"], len(y["train"]), task.trains, log)
        if not run.holds_run():
            run.save_tokenizer(tokenizer)
            run.write_config({"kind": task.kind, "format": 2, "strategy": config.strategy, "model": gpt.config,
                              **task.to_config(), "init": resolved(init),
                              "init_sha256": file_sha256(Path(init) / WEIGHTS),
                              "tokenizer_fingerprint": tokenizer.fingerprint(), "train": config.recipe(),
                              "finetune": config.to_dict(), "data_sha256": file_digests(config),
                              "data": {"train": train_data.source, "tests": {n: d.source for n, d in tests.items()},
                                       **({"validation": validation.source} if validation else {})}})
        trainer, best = train(task, model, config, steps, encoded, y, labels, run, resume, until, progress, log)
        if trainer is not None and trainer.step < trainer.steps and not trainer.stopped:
            return model, tokenizer, {"history": trainer.history}       # stopped early: the checkpoint is the result
        metrics = finish(run, task, model, encoded, y, labels, trainer, log, best, results=results)
        metrics.update(strategy=config.strategy, trainable_parameters=trainable, total_parameters=total,
                       data={"train": len(y["train"]), "validation": len(y["validation"]),
                             "truncated": truncated, "skipped_empty": skipped})
        run.write_metrics(metrics)                  # last: the run is finished once this file says so
    return model, tokenizer, metrics


def _check_memory(config, model_config, n_train, device):
    """Refuse, before the adapters are allocated, a plan that cannot fit in memory (a
    LoRA rank of 10^8 needs tens of GiB): adapters of rank r add r (in + out) numbers at
    each adapted Linear, 6 r C a block for attention and 10 r C more for the MLP."""
    if config.strategy == "lora":
        adapters = model_config.n_layer * config.lora_rank * model_config.n_embd * (6 + 10 * config.lora_mlp)
        nbytes = training_bytes(model_config, min(config.batch_size, n_train), 1, trainable=adapters) + 4 * adapters
        check_memory(nbytes, f"LoRA of rank {config.lora_rank}", "lower --lora-rank", device)
    else:
        check_memory(training_bytes(model_config, min(config.batch_size, n_train), 1),
                     f"fine-tuning with batch size {config.batch_size}", "lower --batch-size", device)


def _check_against_model(config, model_config):
    if config.strategy in LM_STRATEGIES and not model_config.causal:
        raise MiniftError(f"strategy {config.strategy!r} needs a decoder (a GPT pretrained on the next token): "
                          f"it reads the language model's answer after a prompt, and --init is an encoder; "
                          f"use full, head, top-k, lora or scratch")
    if config.strategy == "top-k" and not 1 <= config.k <= model_config.n_layer:
        raise MiniftError(f"--k {config.k}: top-k trains the last k blocks, so k must be between 1 and "
                          f"the model's {model_config.n_layer} blocks (k = 0 is the 'head' strategy)")


def _log_plan(log, config, trainable, total, y, source, tests, truncated, skipped, block_size):
    log(f"strategy {config.strategy}: {trainable:,} of {total:,} parameters train ({trainable / total:.2%})")
    log(f"data: {len(y['train']):,} training and {len(y['validation']):,} validation examples from "
        f"{source}; test sets: {', '.join(tests) or 'none'}")
    for name in truncated:
        if truncated[name] or skipped.get(name):
            log(f"  {name}: {truncated[name]} texts cut to the {block_size}-token context, "
                f"{skipped.get(name, 0)} empty rows skipped")


def train(task, model, config, steps, encoded, y, labels, run, resume, until, progress, log):
    """Train the task's model with the one Trainer (nothing for `prompt`); returns (the
    Trainer or None when the task trains nothing, the step of the weights kept by
    --early-stop or None)."""
    if not task.trains:
        return None, None
    batches = task.batches(encoded["train"], y["train"], config.batch_size, config.seed)
    evaluate = validation_metrics(task, encoded["validation"], y["validation"], labels)

    def estimate(per_step, seconds):
        log(f"estimate: {per_step:.3f} s a step, about {format_seconds(seconds)} to go")

    eval_every = config.eval_every or batches.steps_per_epoch
    stop = EarlyStopping(config.early_stop_metric, config.early_stop, run.file(BEST)) if config.early_stop else None
    optimizer = AdamW(param_groups(model, config.weight_decay, trainable_only=True), lr=config.lr, betas=BETAS)
    schedule = WarmupCosine(config.lr, warmup_steps=max(1, steps // 10), total_steps=steps)
    trainer = Trainer(model, optimizer, batches, task.loss, steps=steps, schedule=schedule, grad_clip=1.0,
                      data_parallel=False if has_dropout(model) else task.split,
                      evaluate=evaluate, eval_every=eval_every, run=run, seed=config.seed,
                      checkpoint_every=config.save_every or eval_every, early_stop=stop, estimate=estimate,
                      progress=progress or Progress(every=batches.steps_per_epoch))
    if resume and trainer.resume() is not None:
        log(f"resumed at step {trainer.step} of {steps}")
    trainer.run(until=until)
    if stop is None or not (trainer.stopped or trainer.step == steps):
        return trainer, None
    best = stop.restore(model, trainer.history)
    log(f"early stopping ({config.early_stop_metric}, patience {config.early_stop}): "
        f"{'stopped at step ' + str(trainer.step) if trainer.stopped else 'trained every step'}; "
        f"the result is the best evaluation's weights, step {best}")
    return trainer, best


def finish(run, task, model, encoded, y, labels, trainer, log, best=None, results=None):
    """The weights to keep (LoRA adapters merged; those of step `best` with --early-stop),
    every evaluation (its table to `results`, default `log`; a note to `log` when the
    validation set shows a classifier at chance), then the model card. Returns the
    metrics (not yet written)."""
    if has_lora(model):
        merge_lora(model)                        # the same function, plain GPT-2 names again
    step = trainer.step if trainer is not None else 0
    run.save_weights(model.state_dict(), step if best is None else best)
    evaluated = {}
    for name in [n for n in encoded if n != "train"]:
        scores = task.scores(model, encoded[name])
        evaluated[name] = {**classification_metrics(y[name], scores.argmax(axis=1), labels),
                           "loss": mean_cross_entropy(scores, y[name])}
        (results or log)(format_metrics(evaluated[name], title=name))
        warning = collapse_warning(evaluated[name], name) if name == "validation" else None
        if warning:
            log(warning)
    history = trainer.history if trainer is not None else {"train": [], "eval": []}
    seconds = trainer.seconds if trainer is not None else 0.0
    metrics = {"labels": labels, "train_seconds": round(seconds, 2), "validation": evaluated.pop("validation"),
               "test": evaluated, "history": history, "step": step, "finished": True,
               **({"best_step": best} if best is not None else {})}
    write_run_card(run, metrics, parameters=model.num_parameters())
    return metrics


def reopen(run, init, insisted):
    """(init, FinetuneConfig) of the run in `run` for --resume, after checking that no
    setting in `insisted` (or `init`) contradicts it and that its data files are unchanged."""
    cfg = run.read_config(FINETUNED_KINDS, command="finetune --resume")
    if "finetune" not in cfg:
        raise MiniftError(f"{run.path} was written before fine-tuning runs could be resumed; start it again "
                          f"in a new directory")
    config = config_from_json(FinetuneConfig, cfg["finetune"], run.file("config.json"), "finetune")
    if init is not None and resolved(init) != cfg["init"]:
        raise MiniftError(f"--init {init} contradicts the run in {run.path}, which was started from {cfg['init']}")
    refuse_changes(config, insisted, run.path, flags={"train_file": "--train", "test_files": "--test",
                                                      "class_weighting": "--class-weights",
                                                      "validation_file": "--validation"})
    for path, digest in cfg.get("data_sha256", {}).items():
        if not Path(path).is_file() or hashlib.sha256(Path(path).read_bytes()).hexdigest() != digest:
            raise MiniftError(f"{path} changed (or is gone) since the run in {run.path} started; --resume "
                              f"needs the same data")
    run.repair()
    return cfg["init"], config


# ----------------------------------------------------------------------------- strategies side by side

def compare_strategies(init, root, runs, common=None, *, device="cpu", log=print, progress=None):
    """Fine-tune `init` once per (name, strategy, settings) in `runs`, each into its own
    run directory under `root` (an earlier run of that name is replaced), with the
    FinetuneConfig settings `common` plus the run's own. Writes root/summary.json and
    root/summary.txt (the comparison table); returns ({name: metrics}, table text)."""
    root, results = Path(root), {}
    for name, strategy, settings in runs:
        out = root / name.replace(" ", "-").replace("=", "")
        log(f"\n=== {name} ===")
        RunDir(out).remove(FINETUNED_KINDS)               # an earlier run of this comparison: rebuild it
        config = FinetuneConfig(strategy=strategy, **{**(common or {}), **settings})
        _, _, results[name] = finetune(init, out, config, device=device, log=log, progress=progress)
    table = comparison_table(results)
    keep = ("strategy", "trainable_parameters", "total_parameters", "train_seconds", "test")
    write_json(root / "summary.json", {name: {k: m[k] for k in keep} for name, m in results.items()})
    atomic_write(root / "summary.txt", table + "\n")
    return results, table
