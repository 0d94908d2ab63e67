"""The training loop (one, for pretraining and fine-tuning), checkpoints and progress.

    for step in range(start, steps):
        lr = schedule(step)
        for each of grad_accum micro-batches:
            loss = loss_fn(model, batch) / grad_accum;  loss.backward()
        clip_grad_norm;  optimizer.step();  zero_grad
        every eval_every steps: evaluate, write metrics.json, save a checkpoint

A checkpoint (`checkpoint.safetensors`) holds the weights, the optimizer's moments, the
step, the batch sampler's random state and the history, in one file written
atomically: a crash at any moment leaves the previous checkpoint loadable, and
`resume()` continues bit for bit as if the run had never stopped.
"""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .backend import device_of, get_cupy, to_device
from .files import load_safetensors, save_safetensors, write_json
from .nn import reseed_dropout
from .optim import clip_grad_norm
from .tensor import no_grad

CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"


class Progress:
    """One progress line: rewritten in place on a terminal, printed as plain lines
    (every `every` steps) when the output is a log file or a pipe."""

    def __init__(self, stream=None, every=50):
        self.stream = stream or sys.stdout
        self.every = every
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._open = False

    def update(self, step, total, text):
        if self.live:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._open = True
        elif step % self.every == 0 or step == total:
            self.print(text)

    def print(self, text):
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()


def _format_seconds(s):
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Trainer:
    """Runs `steps` optimisation steps of `loss_fn(model, batch)` on batches drawn from
    `batches` (an object with next_batch(), state_dict(), load_state_dict()).

    evaluate(model) -> dict of numbers, called every `eval_every` steps and at the end
    (in eval mode, without a graph). With a `run_dir`, metrics.json is rewritten at
    every evaluation and a checkpoint is saved every `checkpoint_every` steps.
    """

    def __init__(self, model, optimizer, batches, loss_fn, *, steps, schedule=None, grad_accum=1,
                 grad_clip=1.0, evaluate=None, eval_every=100, run_dir=None, checkpoint_every=None,
                 seed=0, progress=None, extra_metadata=None):
        if steps < 0 or grad_accum < 1:
            raise ValueError(f"Trainer: need steps >= 0 and grad_accum >= 1, got {steps} and {grad_accum}")
        self.model, self.optimizer, self.batches, self.loss_fn = model, optimizer, batches, loss_fn
        self.steps, self.schedule, self.grad_accum, self.grad_clip = steps, schedule, grad_accum, grad_clip
        self.evaluate, self.eval_every = evaluate, eval_every
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_every = checkpoint_every or eval_every
        self.seed = seed
        self.progress = progress or Progress()
        self.extra_metadata = extra_metadata or {}
        self.step = 0
        self.history = {"train": [], "eval": []}

    # -- the loop -------------------------------------------------------------------
    def run(self, until=None):
        """Train up to `self.steps` (or stop early at step `until`, checkpointing there)."""
        stop = self.steps if until is None else min(until, self.steps)
        model, params = self.model, self.optimizer.params()
        device = device_of(params[0].data)
        start_step, t0, tokens = self.step, time.perf_counter(), 0
        if self.step == 0 and self.evaluate is not None:
            self._evaluate()
        model.train()
        while self.step < stop:
            lr = self.schedule(self.step) if self.schedule else None
            if lr is not None:
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
            reseed_dropout(model, self.seed, self.step)
            loss_sum = 0.0
            for _ in range(self.grad_accum):
                batch = tuple(to_device(b, device) if isinstance(b, np.ndarray) else b
                              for b in self.batches.next_batch())
                loss = self.loss_fn(model, batch)
                if self.grad_accum > 1:
                    loss = loss * (1.0 / self.grad_accum)
                loss.backward()
                loss_sum += float(loss.item())
                tokens += int(batch[0].size)
            grad_norm = clip_grad_norm(params, self.grad_clip) if self.grad_clip else None
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.step += 1

            elapsed = time.perf_counter() - t0
            tok_s = tokens / elapsed
            eta = elapsed / (self.step - start_step) * (self.steps - self.step)
            record = {"step": self.step, "loss": loss_sum, "lr": self.optimizer.param_groups[0]["lr"],
                      "tokens_per_s": round(tok_s, 1)}
            if grad_norm is not None:
                record["grad_norm"] = round(grad_norm, 4)
            self.history["train"].append(record)
            self.progress.update(self.step, self.steps,
                                 f"step {self.step:>5}/{self.steps}  loss {loss_sum:.4f}  "
                                 f"lr {record['lr']:.2e}  {tok_s:,.0f} tok/s  ETA {_format_seconds(eta)}")
            last = self.step == stop
            if self.evaluate is not None and (self.step % self.eval_every == 0 or self.step == self.steps):
                self._evaluate()
                model.train()
            if self.run_dir is not None and (self.step % self.checkpoint_every == 0 or last):
                self.save_checkpoint()
        model.eval()
        return self.history

    def _evaluate(self):
        self.model.eval()
        with no_grad():
            metrics = self.evaluate(self.model)
        record = {"step": self.step, **metrics}
        self.history["eval"].append(record)
        self.progress.print("eval  step {:>5}  ".format(self.step) +
                            "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        if self.run_dir is not None:
            write_json(self.run_dir / METRICS, self.history)
        return metrics

    # -- checkpoints ----------------------------------------------------------------
    def save_checkpoint(self):
        """Write checkpoint.safetensors (everything needed to resume) and then
        model.safetensors (the weights alone, what users keep), each atomically."""
        opt = self.optimizer.state_dict()
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        arrays.update({f"optimizer.{k}": v for k, v in opt["arrays"].items()})
        meta = {"step": self.step, "optimizer_step": opt["step"], "optimizer_lr": opt["lr"],
                "batches": self.batches.state_dict(), "history": self.history, **self.extra_metadata}
        save_safetensors(self.run_dir / CHECKPOINT, arrays, {"minift": json.dumps(meta)})
        save_weights(self.run_dir / WEIGHTS, self.model, self.extra_metadata)
        write_json(self.run_dir / METRICS, self.history)

    def resume(self):
        """Load checkpoint.safetensors from run_dir: weights, optimizer, sampler, step."""
        path = self.run_dir / CHECKPOINT
        arrays, meta = load_safetensors(path)
        if "minift" not in meta:
            raise ValueError(f"{path}: not a minift training checkpoint (no 'minift' metadata)")
        meta = json.loads(meta["minift"])
        self.model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
        self.optimizer.load_state_dict({
            "step": meta["optimizer_step"], "lr": meta["optimizer_lr"],
            "arrays": {k[10:]: v for k, v in arrays.items() if k.startswith("optimizer.")}})
        self.batches.load_state_dict(meta["batches"])
        self.step = int(meta["step"])
        self.history = meta["history"]
        return meta


def save_weights(path, model, metadata=None):
    """The model's weights as safetensors (host arrays, GPT-2 names)."""
    save_safetensors(path, model.state_dict(), {k: json.dumps(v) for k, v in (metadata or {}).items()})


def load_weights(path, model, strict=True):
    arrays, _ = load_safetensors(path)
    return model.load_state_dict(arrays, strict=strict)


# ----------------------------------------------------------------------------- pretraining helpers

def lm_loss(model, batch):
    """Next-token cross-entropy of a (x, y) batch of token windows."""
    x, y = batch
    return model(x, y)[1]


def lm_evaluator(val_ids, batch_size, block_size, n_batches=8):
    """evaluate(model) -> {'val_loss', 'val_ppl'} on fixed, evenly spaced windows of the
    validation ids, so every evaluation sees the same text and losses are comparable."""
    n_windows = batch_size * n_batches
    last = len(val_ids) - block_size - 1
    starts = np.linspace(0, max(last, 0), n_windows).astype(np.int64)
    offsets = np.arange(block_size + 1)
    windows = np.asarray(val_ids)[starts[:, None] + offsets].astype(np.int64)

    def evaluate(model):
        device = device_of(model.parameters()[0].data)
        total = 0.0
        for i in range(0, n_windows, batch_size):
            w = to_device(windows[i:i + batch_size], device)
            total += float(model(w[:, :-1], w[:, 1:])[1].item())
        loss = total / n_batches
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
    return evaluate


# ----------------------------------------------------------------------------- runs

CONFIG = "config.json"

# Pretraining recipes per model preset (see model.PRESETS for the architectures).
# "small" is what demos/pretrain.py runs: about 4-5 minutes on a 2-core CPU.
PRETRAIN_RECIPES = {
    "tiny": dict(steps=300, batch_size=16, lr=2e-3, vocab_size=1024, corpus_bytes=1_000_000),
    "small": dict(steps=600, batch_size=16, lr=1e-3, vocab_size=2048, corpus_bytes=3_000_000),
}


def builtin_corpus(n_bytes, seed=0):
    """The built-in feedback corpus as a list of documents (see data/feedback.py)."""
    from .data import feedback, split_documents
    return split_documents(feedback.corpus_text(n_bytes=n_bytes, seed=seed))


def load_run(run_dir, device="cpu"):
    """(model, tokenizer, config dict) of a pretraining run directory; the weights come
    from model.safetensors, so a run trained on a GPU loads on a CPU-only machine."""
    from .data import Tokenizer
    from .model import GPT, GPTConfig
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    cfg = read_run_config(run_dir)
    tokenizer = Tokenizer.load(run_dir)
    if tokenizer.fingerprint() != cfg.get("tokenizer_fingerprint", tokenizer.fingerprint()):
        raise ValueError(f"{run_dir}: tokenizer.json does not match the tokenizer this run was trained with "
                         f"(fingerprint differs from config.json)")
    model = GPT(GPTConfig.from_dict(cfg["model"]))
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"{run_dir}: tokenizer has {tokenizer.vocab_size} tokens but the model was built "
                         f"for {model.config.vocab_size}")
    load_weights(run_dir / WEIGHTS, model)
    model.to(device).eval()
    return model, tokenizer, cfg


def read_run_config(run_dir):
    from .files import read_json
    cfg = read_json(Path(run_dir) / CONFIG, what="run configuration (config.json)")
    if "model" not in cfg:
        raise ValueError(f"{Path(run_dir) / CONFIG}: no 'model' section; not a minift run directory")
    return cfg


def pretrain(out_dir, *args, until=None, **kwargs):
    """Pretrain a GPT on the built-in feedback corpus (or `corpus_files`) into `out_dir`
    (arguments as for `prepare_pretraining`); returns (model, tokenizer, history).
    `until` stops early at that step (after checkpointing), as an interruption would."""
    trainer, tokenizer = prepare_pretraining(out_dir, *args, **kwargs)
    trainer.run(until=until)
    return trainer.model, tokenizer, trainer.history


def prepare_pretraining(out_dir, corpus_files=None, preset="small", steps=None, seed=0, resume=False,
                        device="cpu", batch_size=None, lr=None, eval_every=None, grad_accum=1,
                        progress=None, log=print):
    """Everything up to the first step: tokenizer, token ids, model, optimiser, schedule
    and batch sampler, wired into a Trainer. Returns (trainer, tokenizer).

    With resume=True, continues the run in `out_dir` from its last checkpoint (same
    corpus, tokenizer and settings; pass the same --steps for a bit-exact continuation).
    """
    from .data import BatchSampler, Tokenizer, read_text_files, split_documents, tokenize_corpus, \
        train_val_split
    from .model import GPT, GPTConfig, PRESETS
    from .optim import AdamW, WarmupCosine

    out = Path(out_dir)
    if device == "cuda":
        get_cupy()            # fail now, with the reason, before anything is written
    if resume:
        cfg = read_run_config(out)
        tokenizer = Tokenizer.load(out)
        recipe = cfg["train"]
        if steps is not None:
            recipe["steps"] = steps
    else:
        if (out / CHECKPOINT).exists() or (out / WEIGHTS).exists():
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, "
                                  f"or choose another --out")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        recipe = dict(PRETRAIN_RECIPES[preset], preset=preset, seed=seed, grad_accum=grad_accum,
                      corpus_files=[str(Path(f).resolve()) for f in corpus_files or []])
        for key, value in (("steps", steps), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                recipe[key] = value
        recipe["eval_every"] = eval_every or max(1, min(100, recipe["steps"] // 10))

    if recipe["corpus_files"]:
        documents = [d for text in read_text_files(recipe["corpus_files"]) for d in split_documents(text)]
    else:
        documents = builtin_corpus(recipe["corpus_bytes"], seed=0)
    if not resume:
        log(f"training a {recipe['vocab_size']}-token BPE tokenizer on {len(documents):,} documents")
        tokenizer = Tokenizer.train(documents, vocab_size=recipe["vocab_size"])
        model_config = GPTConfig(vocab_size=tokenizer.vocab_size, **PRESETS[preset])
        cfg = {"kind": "pretrain", "model": model_config.to_dict(), "train": recipe,
               "tokenizer_fingerprint": tokenizer.fingerprint()}
        tokenizer.save(out)
        write_json(out / CONFIG, cfg)
    model_config = GPTConfig.from_dict(cfg["model"])

    ids = tokenize_corpus(documents, tokenizer, cache_dir=out)
    train_ids, val_ids = train_val_split(ids, 0.1, block_size=model_config.block_size)
    log(f"corpus: {len(ids):,} tokens ({len(train_ids):,} train, {len(val_ids):,} validation)")
    model = GPT(model_config, seed=recipe["seed"]).to(device)
    log(f"model: {model.num_parameters():,} parameters ({model_config.n_layer} layers, "
        f"{model_config.n_head} heads, n_embd {model_config.n_embd}, block {model_config.block_size})")
    optimizer = AdamW(model, lr=recipe["lr"], betas=(0.9, 0.95), weight_decay=0.1)
    schedule = WarmupCosine(recipe["lr"], warmup_steps=max(1, recipe["steps"] // 20),
                            total_steps=recipe["steps"])
    sampler = BatchSampler(train_ids, recipe["batch_size"], model_config.block_size, seed=recipe["seed"])
    trainer = Trainer(model, optimizer, sampler, lm_loss, steps=recipe["steps"], schedule=schedule,
                      grad_accum=recipe.get("grad_accum", 1), grad_clip=1.0,
                      evaluate=lm_evaluator(val_ids, recipe["batch_size"], model_config.block_size),
                      eval_every=recipe["eval_every"], run_dir=out, seed=recipe["seed"], progress=progress)
    if resume:
        trainer.resume()
        log(f"resumed at step {trainer.step}")
        write_json(out / CONFIG, cfg)
    return trainer, tokenizer


# ----------------------------------------------------------------------------- fine-tuning
# The pipeline around finetune.py: load a pretrained run and labeled data, check it all,
# pick a strategy, train with the same Trainer as pretraining, evaluate, write the run.

# Per-strategy recipes for the built-in data (about 430 training examples of 20-60
# tokens): epochs, peak learning rate, batch size. A frozen backbone leaves only a
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
    "prompt": dict(epochs=0, lr=0.0, batch_size=1),
}
DEFAULT_K = {"top-k": 2, "prompt": 0}     # blocks that train (top-k); solved examples shown (prompt)
FINETUNED_KINDS = ("classifier", "instruct", "prompt")


def builtin_labeled_sets(seed=0):
    """The built-in feedback labels as (train, {"test_a", "test_b"}) LabeledData: train
    and test_a use sentiment lexicon part A only, test_b part B only."""
    from .data import LabeledData, feedback
    sets = feedback.labeled_sets(seed=seed)

    def as_data(name, what):
        return LabeledData(texts=[t for t, _ in sets[name]], labels=[lab for _, lab in sets[name]],
                           source=f"built-in feedback {name} ({what})")
    return (as_data("train", "lexicon part A"),
            {"test_a": as_data("test_a", "lexicon part A"), "test_b": as_data("test_b", "lexicon part B only")})


def load_finetune_data(train_file=None, test_files=None, text_column="text", label_column="label"):
    """(train LabeledData, {test name: LabeledData}). Without `train_file`, the built-in
    sets; test sets are `test_files` if given (named after the files), else the
    built-in ones when training on the built-in data, else none."""
    from .data import load_labeled
    if train_file is None:
        train, tests = builtin_labeled_sets()
    else:
        train, tests = load_labeled(train_file, text_column, label_column), {}
    if test_files:
        tests = {}
        for f in test_files:
            name = Path(f).stem
            while name in tests:                 # two files called test.csv in different folders
                name += "_"
            tests[name] = load_labeled(f, text_column, label_column)
    if len(train) == 0:
        raise ValueError(f"{train.source}: no labeled examples to train on")
    return train, tests


def _load_pretrained(init, device):
    """load_run(init) for fine-tuning, with every refusal saying why."""
    init = Path(init)
    cfg = read_run_config(init)
    if cfg.get("kind") != "pretrain":
        raise ValueError(f"{init}: this is a {cfg.get('kind')!r} run; --init needs a pretraining run "
                         f"(written by `minift pretrain`)")
    try:
        return load_run(init, device=device)
    except (ValueError, KeyError) as e:
        reason = e.args[0] if e.args else str(e)
        raise ValueError(f"cannot fine-tune from {init}: {reason}") from None


def _lm_truncated(tokenizer, texts, labels, block_size):
    """How many texts prompt_ids will cut to fit prompt + answer in the context."""
    from .data import feedback
    from .finetune import answer_ids
    room = block_size - max(len(answer_ids(tokenizer, lab)) for lab in labels) - 1
    lengths = [len(ids) for ids in tokenizer.encode_batch([feedback.format_prompt(t) for t in texts])]
    return sum(n > room for n in lengths)


def finetune(init, out_dir, strategy="full", train_file=None, test_files=None, *, text_column="text",
             label_column="label", k=None, lora_rank=8, lora_alpha=16, lora_mlp=False, pooling="last",
             epochs=None, lr=None, batch_size=None, weight_decay=0.01, class_weighting=False,
             val_fraction=0.1, seed=0, device="cpu", log=print, progress=None, until=None):
    """Adapt the pretraining run `init` to the labeled data with `strategy` (one of
    finetune.STRATEGIES) and write the run directory `out_dir`:

        config.json        kind ("classifier", "instruct" or "prompt"), GPTConfig, strategy,
                           labels, pooling, LoRA settings, max_len, the init run and the
                           tokenizer's fingerprint
        tokenizer.json     the pretrained run's tokenizer
        model.safetensors  the weights (LoRA adapters merged in)
        checkpoint.safetensors, metrics.json   as in pretraining; metrics.json ends
                           with accuracy, macro_f1, per_class and confusion per test set

    Without `train_file`, the built-in feedback sets are used (train on lexicon part A,
    test on part A and part B). Every input is checked before anything is written; a
    crash during training leaves the last checkpoint loadable with `load_finetuned`.
    `until` stops training early at that step (after checkpointing), as an
    interruption would. Returns (model, tokenizer, metrics).
    """
    from . import finetune as ft
    from .data import class_weights, encode_labels, feedback, label_vocabulary, stratified_split
    from .optim import AdamW, WarmupCosine

    # -- 1. check everything; nothing is written before training starts ------------------
    if strategy not in ft.STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(ft.STRATEGIES)}")
    if pooling not in ft.POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {list(ft.POOLINGS)}")
    if class_weighting and strategy in ft.LM_STRATEGIES:
        raise ValueError(f"class weights apply to a classification head; strategy {strategy!r} has none")
    out = Path(out_dir)
    if any((out / name).exists() for name in (CONFIG, WEIGHTS, CHECKPOINT)):
        raise FileExistsError(f"{out} already holds a run; choose another --out")
    k = DEFAULT_K.get(strategy) if k is None else k
    if k is not None and k < 0:
        raise ValueError(f"--k must be >= 0, got {k}")
    recipe = dict(FINETUNE_RECIPES[strategy], seed=seed, weight_decay=weight_decay,
                  val_fraction=val_fraction, class_weighting=class_weighting)
    for key, value in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size)):
        if value is not None:
            recipe[key] = value
    if strategy != "prompt" and (recipe["epochs"] < 1 or recipe["batch_size"] < 1 or recipe["lr"] <= 0):
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0, got {recipe['epochs']}, "
                         f"{recipe['batch_size']} and {recipe['lr']}")

    gpt, tokenizer, _ = _load_pretrained(init, device)
    config = gpt.config
    train_data, tests = load_finetune_data(train_file, test_files, text_column, label_column)
    labels = label_vocabulary(train_data.labels)
    y_all = encode_labels(train_data.labels, labels, source=train_data.source)
    test_y = {name: encode_labels(d.labels, labels, source=d.source) for name, d in tests.items()}
    train_idx, val_idx = stratified_split(y_all, val_fraction, seed)
    if len(val_idx) == 0:
        raise ValueError(f"{train_data.source}: too few examples ({len(y_all)}) for a validation split")
    texts = {"train": [train_data.texts[i] for i in train_idx], "validation": [train_data.texts[i] for i in val_idx]}
    texts.update({name: d.texts for name, d in tests.items()})
    y = {"train": y_all[train_idx], "validation": y_all[val_idx], **test_y}
    skipped = {"train": train_data.n_skipped_empty, **{n: d.n_skipped_empty for n, d in tests.items()}}
    max_len = config.block_size
    shots = []                                       # solved examples shown to `prompt`

    # -- 2. the model for the strategy --------------------------------------------------
    if strategy in ft.CLASSIFIER_STRATEGIES:
        kind = "classifier"
        model = (ft.make_scratch(config, len(labels), pooling, seed=seed) if strategy == "scratch"
                 else ft.swap_head(gpt, len(labels), pooling, seed=seed))
        model.to(device)
        ft.apply_strategy(model, strategy, k=k, lora_rank=lora_rank, lora_alpha=lora_alpha,
                          lora_mlp=lora_mlp, seed=seed)
        seqs, truncated = {}, {}
        for name, t in texts.items():
            seqs[name], truncated[name] = ft.encode_for_classifier(t, tokenizer, max_len)

        def predict(model, name):
            return ft.classifier_logits(model, seqs[name], tokenizer.pad_id)
    else:
        kind = strategy
        model = gpt
        truncated = {name: _lm_truncated(tokenizer, t, labels, max_len) for name, t in texts.items()}
        if strategy == "prompt" and k:
            # shots come from the training split only, short enough that a few fit beside a query
            shots = ft.choose_shots(texts["train"], [labels[i] for i in y["train"]], k, seed=seed,
                                    max_chars=4 * max_len // max(k + 1, 2))

        def predict(model, name):
            return ft.label_log_likelihoods(model, tokenizer, texts[name], labels, shots=shots)
    trainable, total = ft.parameter_counts(model)
    if strategy == "prompt":
        trainable = 0                                # nothing is trained, whatever requires_grad says
    log(f"strategy {strategy}: {trainable:,} of {total:,} parameters train ({trainable / total:.2%})")
    log(f"data: {len(y['train'])} training and {len(y['validation'])} validation examples from "
        f"{train_data.source}; test sets: {', '.join(tests) or 'none'}")
    for name in texts:
        if truncated[name] or skipped.get(name):
            log(f"  {name}: {truncated[name]} texts cut to the {max_len}-token context, "
                f"{skipped.get(name, 0)} empty rows skipped")

    run_cfg = {"kind": kind, "strategy": strategy, "model": config.to_dict(), "labels": labels,
               "pooling": pooling if kind == "classifier" else None,
               "top_k": k if strategy == "top-k" else None,
               "lora": (dict(rank=lora_rank, alpha=lora_alpha, mlp=lora_mlp) if strategy == "lora" else None),
               "shots": [list(s) for s in shots] if strategy == "prompt" else None,
               "prompt_template": feedback.PROMPT_TEMPLATE if kind != "classifier" else None,
               "max_len": max_len, "init": str(Path(init).resolve()),
               "tokenizer_fingerprint": tokenizer.fingerprint(), "train": recipe,
               "data": {"train": train_data.source, "tests": {n: d.source for n, d in tests.items()}}}

    # -- 3. train (every strategy but prompt), through the one Trainer --------------------
    history, seconds = {"train": [], "eval": []}, 0.0
    if strategy != "prompt":
        if kind == "classifier":
            weight = to_device(class_weights(y["train"], len(labels)), device) if class_weighting else None
            make_batch = ft.classifier_batch(seqs["train"], y["train"], tokenizer.pad_id)
            loss_fn = ft.classifier_loss(weight)
        else:
            examples = [ft.instruction_example(tokenizer, t, labels[c], max_len)
                        for t, c in zip(texts["train"], y["train"])]
            make_batch = ft.instruction_batch(examples, tokenizer.pad_id)
            loss_fn = ft.instruction_loss
        batches = ft.EpochBatches(len(y["train"]), recipe["batch_size"], make_batch, seed=seed)
        steps = recipe["epochs"] * batches.steps_per_epoch

        def evaluate(model):
            scores = predict(model, "validation")
            return {"val_accuracy": float((scores.argmax(axis=1) == y["validation"]).mean())}

        optimizer = AdamW(ft.trainable_param_groups(model, weight_decay), lr=recipe["lr"], betas=(0.9, 0.95))
        schedule = WarmupCosine(recipe["lr"], warmup_steps=max(1, steps // 10), total_steps=steps)
        trainer = Trainer(model, optimizer, batches, loss_fn, steps=steps, schedule=schedule, grad_clip=1.0,
                          evaluate=evaluate, eval_every=batches.steps_per_epoch, run_dir=out, seed=seed,
                          progress=progress or Progress(every=batches.steps_per_epoch))
        tokenizer.save(out)                          # training starts: the run directory appears
        write_json(out / CONFIG, run_cfg)
        t0 = time.perf_counter()
        history = trainer.run(until=until)
        seconds = time.perf_counter() - t0
        if trainer.step < steps:                     # stopped early: the checkpoint is the result
            return model, tokenizer, {"history": history}
    else:
        tokenizer.save(out)
        write_json(out / CONFIG, run_cfg)

    # -- 4. the weights to keep, evaluation, metrics.json ----------------------------------
    if ft.has_lora(model):
        ft.merge_lora(model)                         # same function, plain GPT-2 names again
    save_weights(out / WEIGHTS, model)
    results = {}
    for name in ["validation", *tests]:
        scores = predict(model, name)
        results[name] = ft.classification_metrics(y[name], scores.argmax(axis=1), labels)
        log(ft.format_metrics(results[name], title=name))
    metrics = {"strategy": strategy, "labels": labels, "trainable_parameters": trainable,
               "total_parameters": total, "train_seconds": round(seconds, 2),
               "data": {"train": len(y["train"]), "validation": len(y["validation"]),
                        "truncated": truncated, "skipped_empty": skipped},
               "validation": results.pop("validation"), "test": results, "history": history}
    write_json(out / METRICS, metrics)
    return model, tokenizer, metrics


def load_finetuned(run_dir, device="cpu"):
    """(model, tokenizer, config dict) of a run written by `finetune`: a Classifier for
    kind "classifier", the GPT for "instruct" and "prompt". Also loads the weights of
    a run stopped during training, whose LoRA adapters are not merged yet."""
    from . import finetune as ft
    from .data import Tokenizer
    from .model import GPT, GPTConfig
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if cfg.get("kind") not in FINETUNED_KINDS:
        raise ValueError(f"{run_dir}: a {cfg.get('kind')!r} run, not a fine-tuned one; classify needs a "
                         f"run written by `minift finetune`")
    tokenizer = Tokenizer.load(run_dir)
    if tokenizer.fingerprint() != cfg.get("tokenizer_fingerprint"):
        raise ValueError(f"{run_dir}: tokenizer.json does not match the tokenizer this run was trained with "
                         f"(fingerprint differs from config.json)")
    config = GPTConfig.from_dict(cfg["model"])
    arrays, _ = load_safetensors(run_dir / WEIGHTS)
    if cfg["kind"] == "classifier":
        model = ft.swap_head(GPT(config), len(cfg["labels"]), cfg["pooling"])
        if any(name.endswith(".lora_A") for name in arrays):
            lora = cfg["lora"]
            ft.add_lora(model, lora["rank"], lora["alpha"], mlp=lora["mlp"])
    else:
        model = GPT(config)
    model.load_state_dict(arrays)
    ft.merge_lora(model)
    model.to(device).eval()
    return model, tokenizer, cfg


def classify(model, tokenizer, cfg, texts):
    """Label probabilities (N, L) for `texts` from a loaded fine-tuned run (see
    load_finetuned); the labels are cfg["labels"], in that order."""
    from . import finetune as ft
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {i + 1} is empty; there is nothing to classify")
    if cfg["kind"] == "classifier":
        seqs, _ = ft.encode_for_classifier(texts, tokenizer, cfg["max_len"])
        scores = ft.classifier_logits(model, seqs, tokenizer.pad_id)
    else:
        scores = ft.label_log_likelihoods(model, tokenizer, texts, cfg["labels"],
                                          shots=[tuple(s) for s in cfg.get("shots") or []])
    return ft.softmax_rows(scores)
