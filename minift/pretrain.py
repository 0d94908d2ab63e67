"""Pretraining: a GPT learns to predict the next token of a corpus (or an encoder, the
masked tokens of it).

    python -m minift pretrain --out runs/small              # the built-in feedback corpus
    python -m minift pretrain --out runs/small --resume     # continue it after a crash
    python -m minift pretrain --out runs/small-encoder --arch encoder     # BERT-style

`pretrain()` below reads top to bottom like a training script: corpus -> tokenizer ->
token ids -> model, optimiser, schedule, batch sampler -> the Trainer. Every setting is
one field of `PretrainConfig`, validated once, before anything is written, and saved
whole in config.json, so a run can be resumed (or reproduced) from its directory alone.
"""
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backend import device_of, to_device
from .card import write_run_card
from .data import (
    BatchSampler, MaskedDocuments, Tokenizer, corpus_sha256, feedback, load_column, read_text_files,
    split_documents, split_into_documents, tabular_format, tokenize_corpus, train_val_split,
)
from .errors import MiniftError
from .files import resolved
from .hf_gpt2 import is_hf_model_dir, load_hf_gpt2
from .model import PRESETS, GPTConfig, language_model, param_groups, training_bytes
from .nn import Module, has_dropout
from .optim import AdamW, WarmupCosine
from .runs import PRETRAINED_KINDS, RunDir, check_memory, claim, config_from_json, refuse_changes
from .trainer import Progress, Trainer

# Recipes per model preset (model.PRESETS has the architectures). "small" is what
# demos/pretrain.py runs: about 4-5 minutes on a 2-core CPU.
PRETRAIN_RECIPES = {
    "tiny": dict(steps=300, batch_size=16, lr=2e-3, vocab_size=1024, corpus_bytes=1_000_000),
    "small": dict(steps=600, batch_size=16, lr=1e-3, vocab_size=2048, corpus_bytes=3_000_000),
}
# An encoder's changes to them: a batch is documents (about 26 tokens here, data.masking)
# of which 15% are predicted, so it takes more of them and more steps to learn as much.
# Measured on "small" (3 fine-tuning seeds, demos/adaptation_strategies.py): after 1,500
# steps its `full` classifier reached 94.4% on part A, after 3,000 steps 96.6%.
ENCODER_RECIPES = {
    "tiny": dict(steps=600, batch_size=32),
    "small": dict(steps=3000, batch_size=32),
}
WEIGHT_DECAY = 0.1          # on matrices only (model.param_groups)
BETAS = (0.9, 0.95)
VAL_FRACTION = 0.1          # the last 10% of the token stream is validation
ARCHS = ("decoder", "encoder")   # a GPT (next token), or an encoder (masked tokens, data.masking)
VAL_MASK_SEED = 1234        # an encoder's validation documents and masks: drawn once, the same each time


@dataclass
class PretrainConfig:
    """Every setting of a pretraining run. Fields left None take the preset's recipe
    (PRETRAIN_RECIPES, with ENCODER_RECIPES for an encoder); `corpus_files` empty means
    the built-in feedback corpus. `corpus_column` names the column of CSV / TSV / JSONL
    corpus files whose value, in each row, is one document."""
    preset: str = "small"
    arch: str = "decoder"
    corpus_files: list[str] = field(default_factory=list)
    corpus_column: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    vocab_size: int | None = None
    corpus_bytes: int | None = None     # size of the built-in corpus
    seed: int = 0
    grad_accum: int = 1
    eval_every: int | None = None       # default: a tenth of the steps, at most 100

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise MiniftError(f"unknown preset {self.preset!r} (--preset); choose one of {sorted(PRESETS)}")
        if self.arch not in ARCHS:
            raise MiniftError(f"unknown architecture {self.arch!r} (--arch); choose one of {list(ARCHS)}")
        recipe = dict(PRETRAIN_RECIPES[self.preset], **(ENCODER_RECIPES[self.preset] if self.arch == "encoder" else {}))
        for key, value in recipe.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.eval_every is None:
            self.eval_every = max(1, min(100, self.steps // 10))
        self.corpus_files = [resolved(f) for f in self.corpus_files]
        if self.corpus_column is not None and not (isinstance(self.corpus_column, str) and self.corpus_column
                                                   and self.corpus_files):
            raise MiniftError(f"corpus_column (--corpus-column) names a column of the --corpus files, got "
                              f"{self.corpus_column!r}" + ("" if self.corpus_files else " without --corpus"))
        for name, flag, low in (("steps", "--steps", 1), ("batch_size", "--batch-size", 1),
                                ("grad_accum", "--grad-accum", 1), ("eval_every", "--eval-every", 1),
                                ("vocab_size", "--vocab-size", 258 + (self.arch == "encoder")),
                                ("corpus_bytes", None, 1),        # no flag: PretrainConfig only
                                ("seed", "--seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise MiniftError(f"{name}{f' ({flag})' if flag else ''} must be an integer >= {low}, "
                                  f"got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (
                math.isfinite(self.lr) and self.lr > 0):
            raise MiniftError(f"lr (--lr) must be a finite number > 0, got {self.lr!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The GPTConfig of this run's model (an encoder is the same model, not causal)."""
        return GPTConfig(vocab_size=vocab_size, causal=self.arch == "decoder", **PRESETS[self.preset])


def load_documents(config):
    """The corpus as a list of documents: the user's files, or the built-in corpus."""
    if config.corpus_files:
        documents = [d for path in config.corpus_files for d in file_documents(path, config.corpus_column)]
        where = ", ".join(config.corpus_files)
    else:
        documents = split_documents(feedback.corpus_text(n_bytes=config.corpus_bytes, seed=0))
        where = "the built-in corpus"
    if not documents:
        raise MiniftError(f"{where}: no text to pretrain on (the corpus holds no document)")
    return documents


def file_documents(path, column=None):
    """The documents of one corpus file: text separated by blank lines, or with `column`,
    that column's value in each row of a CSV / TSV / JSONL file. A table given without a
    column is refused: read as prose, its header and labels would be trained on too."""
    if column is not None:
        return load_column(path, column)
    text = read_text_files([path])[0]
    fmt = tabular_format(path, text)
    if fmt is not None:
        raise MiniftError(f"{path} looks like {fmt.upper()}, not plain text: pass --corpus-column NAME "
                          f"(corpus_column= in Python) to pretrain on the column NAME of each row, one "
                          f"document a row, rather than on the whole file with its header and labels")
    return split_documents(text)


def split_tokens(ids, block_size, config):
    """(train ids, validation ids), or one sentence saying how much more text is needed."""
    try:
        return train_val_split(ids, VAL_FRACTION, block_size=block_size)
    except ValueError:
        need = int(math.ceil((block_size + 1) / VAL_FRACTION))
        hint = "use more text" + (" or --preset tiny" if config.preset != "tiny" else "")
        raise MiniftError(f"the corpus gives {len(ids):,} tokens; preset {config.preset!r} (block size "
                          f"{block_size}) needs at least {need:,}, so that the last {VAL_FRACTION:.0%} "
                          f"(validation) holds one window: {hint}") from None


def lm_loss(model, batch):
    """The model's own loss of a batch: next-token cross-entropy of (x, y) token windows
    (a GPT), or masked-token cross-entropy of (inputs, targets, lengths) (an encoder)."""
    return model(*batch)[1]


def lm_evaluator(val_ids, batch_size, block_size, n_batches=8, masked=None):
    """evaluate(model) -> {'val_loss', 'val_ppl'} on fixed, evenly spaced windows of the
    validation ids, so every evaluation sees the same text and losses are comparable.
    masked (an encoder's): the MaskedDocuments of the validation text; its first
    n_batches batches, drawn once, are then the fixed batches, and the loss that of the
    masked tokens."""
    if masked is None:
        n_windows = batch_size * n_batches
        starts = np.linspace(0, max(len(val_ids) - block_size - 1, 0), n_windows).astype(np.int64)
        windows = np.asarray(val_ids)[starts[:, None] + np.arange(block_size + 1)].astype(np.int64)
        batches = [(windows[i:i + batch_size, :-1], windows[i:i + batch_size, 1:])     # the next token
                   for i in range(0, n_windows, batch_size)]
    else:
        batches = [masked.next_batch() for _ in range(n_batches)]

    def evaluate(model):
        device = device_of(model.parameters()[0].data)
        total = 0.0
        for batch in batches:
            total += float(model(*(to_device(np.ascontiguousarray(a), device) for a in batch))[1].item())
        loss = total / n_batches
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
    return evaluate


def batches_and_evaluator(config, tokenizer, train_ids, val_ids, block_size):
    """(training batches, evaluate): random token windows for a GPT; for an encoder,
    random documents with BERT's masking (data.masking), whose validation batches are
    drawn with a seed of their own."""
    if config.arch == "decoder":
        return (BatchSampler(train_ids, config.batch_size, block_size, seed=config.seed),
                lm_evaluator(val_ids, config.batch_size, block_size))
    # <|mask|> is the last special token (id 2), the regular tokens follow it
    masking = dict(mask_id=tokenizer.mask_id, first_regular_id=tokenizer.mask_id + 1,
                   vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
    docs = {name: split_into_documents(ids, tokenizer.eot_id, block_size)
            for name, ids in (("train", train_ids), ("val", val_ids))}
    return (MaskedDocuments(docs["train"], config.batch_size, config.seed, **masking),
            lm_evaluator(val_ids, config.batch_size, block_size,
                         masked=MaskedDocuments(docs["val"], config.batch_size, VAL_MASK_SEED, **masking)))


def pretrain(out_dir: str | Path, config: PretrainConfig | dict | None = None, *, resume: bool = False,
             device: str = "cpu", until: int | None = None, log: Callable[..., object] = print,
             progress: Progress | None = None) -> tuple[Module, Tokenizer, dict]:
    """Pretrain a GPT into the run directory `out_dir`; returns (model, tokenizer, history).

    config: a PretrainConfig (default: the `small` recipe on the built-in corpus). With
    resume=True the run in `out_dir` continues from its last checkpoint, bit for bit;
    `config` may then be a dict of the settings the caller insists on (command-line
    flags), each of which must equal the run's. `until` stops early at that step (after
    checkpointing), as an interruption would.
    """
    with claim(out_dir, "pretrain", resume, device) as run:
        if resume:                                          # (claim: the run exists)
            config, tokenizer, documents = reopen(run, config or {}, log)
            ids = None                                      # from the token cache, if it is current
        else:
            config = config if isinstance(config, PretrainConfig) else PretrainConfig(**(config or {}))
            run.require_new()
            check_memory(training_bytes(config.model_config(config.vocab_size), config.batch_size,
                                        PRESETS[config.preset]["block_size"]),
                         f"pretraining the {config.preset} preset with batch size {config.batch_size}",
                         "lower --batch-size", device)
            tokenizer, documents, ids = start(run, config, log)
        model_config = config.model_config(tokenizer.vocab_size)
        ids = tokenize_corpus(documents, tokenizer, cache_dir=run.path, ids=ids)
        train_ids, val_ids = split_tokens(ids, model_config.block_size, config)
        log(f"corpus: {len(ids):,} tokens ({len(train_ids):,} train, {len(val_ids):,} validation)")

        model = language_model(model_config, seed=config.seed).to(device)
        log(f"model: {config.arch}, {model.num_parameters():,} parameters ({model_config.n_layer} layers, "
            f"{model_config.n_head} heads, n_embd {model_config.n_embd}, block {model_config.block_size})")
        optimizer = AdamW(param_groups(model, WEIGHT_DECAY), lr=config.lr, betas=BETAS)
        schedule = WarmupCosine(config.lr, warmup_steps=max(1, config.steps // 20), total_steps=config.steps)
        sampler, evaluate = batches_and_evaluator(config, tokenizer, train_ids, val_ids, model_config.block_size)
        trainer = Trainer(model, optimizer, sampler, lm_loss, steps=config.steps, schedule=schedule,
                          grad_accum=config.grad_accum, grad_clip=1.0, evaluate=evaluate,
                          eval_every=config.eval_every, run=run, seed=config.seed, progress=progress,
                          data_parallel=not has_dropout(model))   # a mean over the scored targets
        if resume and trainer.resume() is not None:
            log(f"resumed at step {trainer.step} of {config.steps}")
        trainer.run(until=until)
        if trainer.step == config.steps:
            metrics = {**trainer.history, "step": trainer.step, "finished": True}
            write_run_card(run, metrics, parameters=model.num_parameters())
            run.write_metrics(metrics)                  # last: the run is finished once this file says so
    return model, tokenizer, trainer.history


def start(run, config, log):
    """A new run: corpus, tokenizer, and every check that needs them, then config.json
    and tokenizer.json. Returns (tokenizer, documents, token ids)."""
    documents = load_documents(config)
    log(f"training a {config.vocab_size}-token BPE tokenizer on {len(documents):,} documents")
    tokenizer = Tokenizer.train(documents, vocab_size=config.vocab_size, mask_token=config.arch == "encoder")
    block_size = PRESETS[config.preset]["block_size"]
    ids = tokenize_corpus(documents, tokenizer)
    split_tokens(ids, block_size, config)                   # enough text? (nothing is written yet)
    run.save_tokenizer(tokenizer)
    run.write_config({"kind": "pretrain", "format": 2, "model": config.model_config(tokenizer.vocab_size),
                      "train": config.to_dict(),
                      "tokenizer_fingerprint": tokenizer.fingerprint(), "corpus_sha256": corpus_sha256(documents)})
    return tokenizer, documents, ids


def reopen(run, insisted, log):
    """The run's config, tokenizer and corpus for --resume, after checking that the
    corpus is unchanged and that no setting in `insisted` contradicts the run."""
    cfg = run.read_config(PRETRAINED_KINDS, command="pretrain --resume")
    config = config_from_json(PretrainConfig, cfg.get("train"), run.file("config.json"), "train")
    refuse_changes(config, insisted, run.path, flags={"corpus_files": "--corpus"})
    tokenizer = run.load_tokenizer(cfg)
    documents = load_documents(config)
    if "corpus_sha256" in cfg and corpus_sha256(documents) != cfg["corpus_sha256"]:
        raise MiniftError(f"the corpus changed since the run in {run.path} started "
                          f"({', '.join(config.corpus_files) or 'built-in corpus'}); --resume needs the same text")
    run.repair(log)
    return config, tokenizer, documents


def load_gpt(run_dir, device="cpu", kinds=PRETRAINED_KINDS, command="this command", finished=False):
    """(model, tokenizer, config dict) of a run whose model has its LM head (a GPT, or an
    Encoder for a run pretrained with --arch encoder); the weights come from
    model.safetensors (host arrays: a GPU run loads on a CPU). With
    finished=True, a run that has not completed is refused (fine-tuning starts only
    from a finished pretraining run, never from whatever checkpoint is there).

    `run_dir` may also be a Hugging Face GPT-2 directory (hf_gpt2.py): a finished language
    model, whose config dict has kind "huggingface-gpt2" and notes to print."""
    if is_hf_model_dir(run_dir):
        return load_hf_gpt2(run_dir, device)
    run = RunDir(run_dir)
    cfg = run.read_config(kinds, command=command)
    if finished and not run.is_finished():
        step = run.checkpoint_step()
        raise MiniftError(f"{run.path} has not finished pretraining (its last checkpoint is "
                          f"{'step ' + str(step) if step is not None else 'missing'}); finish it first with "
                          f"`python -m minift pretrain --out {run.path} --resume`")
    tokenizer = run.load_tokenizer(cfg)
    run.check_weights(cfg["model"])                       # before the model is allocated
    model = language_model(cfg["model"])
    run.load_weights(model)
    return model.to(device).eval(), tokenizer, cfg
