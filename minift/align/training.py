"""AlignConfig and align(): SFT or DPO of a language-model run into a new run directory.

`align()` reads top to bottom: check the settings -> load the init -> the data (a pairs
file, or built-in data written into the run directory as data.jsonl, so that --resume
reads back what the run trained on) -> the method's batches, loss and evaluation -> the
one Trainer -> weights, and for built-in data the judge on the held-out requests ->
metrics.json. A run stopped at any moment continues with `align --resume`, bit for bit.
"""
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..adapt.prompts import PromptFormat, instruction_batch, instruction_loss, masked_example, prompt_ids
from ..adapt.tasks import EpochBatches
from ..card import write_run_card
from ..data import PAIR_KEYS, Tokenizer, feedback, load_pairs, write_pairs
from ..errors import MiniftError
from ..files import file_sha256, resolved
from ..model import param_groups
from ..nn import Module, has_dropout
from ..optim import AdamW, WarmupCosine
from ..pretrain import load_gpt
from ..runs import (ALIGNED_KINDS, LANGUAGE_MODEL_KINDS, RunDir, check_init_unchanged, claim, config_from_json,
                    refuse_changes)
from ..trainer import Progress, Trainer, split_by_targets
from .dpo import dpo_loss, logprobs_of, preference_batch, preference_metrics, sequence_logprobs, split_pairs
from .judged import judged_following, judged_pairs

METHODS = ("sft", "dpo")
PAIRS_FROM = ("judged", "world")       # built-in DPO pairs: the init's own responses, or the world's
ALIGN_TEMPLATE = "Request: {text}\nReview:"
DATA = "data.jsonl"                    # built-in data, kept in the run directory
# Per method: built-in examples the world writes (SFT examples; DPO world pairs), epochs,
# peak learning rate, batch size (DPO: pairs, two rows each). SFT needs many steps at a
# high rate: the small GPT learned to name the requested product after ~300 steps, and to
# write the requested sentiment after ~400-500, a step that varies with the seed (one
# training seed in three ended these 568 steps at 52%; a third epoch took it to 94%, a
# minute more). A larger DPO rate drifted: responses left the requested product.
ALIGN_RECIPES = {
    "sft": dict(examples=4800, epochs=2, lr=3e-3, batch_size=16),
    "dpo": dict(examples=780, epochs=2, lr=1e-4, batch_size=8),
}
BETAS = (0.9, 0.95)
MAX_VALIDATION = 256                   # held-out rows (SFT) or pairs (DPO) at most


@dataclass
class AlignConfig:
    """Every setting of an alignment run; fields left None take the method's recipe."""
    method: str = "sft"
    pairs_file: str | None = None
    pairs_from: str = "judged"       # built-in DPO pairs (PAIRS_FROM)
    samples: int = 8                 # judged pairs: responses sampled per training request
    examples: int | None = None      # built-in SFT examples, or world pairs
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    beta: float = 0.1
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    judge_samples: int = 2           # built-in data: responses per held-out request judged at the end
    prompt_template: str = ALIGN_TEMPLATE

    def __post_init__(self) -> None:
        for value, choices, flag in ((self.method, METHODS, "--method"), (self.pairs_from, PAIRS_FROM, "--pairs-from")):
            if value not in choices:
                raise MiniftError(f"unknown {flag[2:]} {value!r} ({flag}); choose one of {list(choices)}")
        for key, value in ALIGN_RECIPES[self.method].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.pairs_file = resolved(self.pairs_file) if self.pairs_file else None
        for name, low in (("samples", 2), ("examples", 2), ("epochs", 1), ("batch_size", 1), ("seed", 0),
                          ("judge_samples", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise MiniftError(f"{name} (--{name.replace('_', '-')}) must be an integer >= {low}, got {value!r}")
        for name, positive in (("lr", True), ("beta", True), ("weight_decay", False)):   # weight_decay: no flag
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not (value > 0 if positive else value >= 0):
                flag = "" if name == "weight_decay" else f" (--{name.replace('_', '-')})"
                raise MiniftError(f"{name}{flag} must be a finite number "
                                  f"{'> 0' if positive else '>= 0'}, got {value!r}")
        if not (isinstance(self.val_fraction, float) and 0.0 < self.val_fraction < 1.0):
            raise MiniftError(f"val_fraction must be a number between 0 and 1, got {self.val_fraction!r}")
        PromptFormat(self.prompt_template)                   # checks the template

    def to_dict(self) -> dict:
        return asdict(self)

    def keys(self) -> tuple[str, ...]:
        """The keys each line of the data must hold: SFT trains on prompt -> chosen."""
        return PAIR_KEYS[:2] if self.method == "sft" else PAIR_KEYS


# ----------------------------------------------------------------------------- data

def builtin_data(config, model, tokenizer, fmt, log):
    """The built-in data as pairs-format dicts: SFT examples written by the world, or DPO
    pairs judged from the init's own responses (or written by the world)."""
    if config.method == "sft":
        return [{"prompt": p, "chosen": r} for p, r in feedback.sft_examples(config.examples, seed=config.seed)]
    if config.pairs_from == "world":
        return feedback.preference_pairs(config.examples, seed=config.seed)
    requests = feedback.request_split()["train"]
    log(f"sampling {config.samples} responses to each of {len(requests)} training requests; the judge "
        f"pairs each one that does not follow its request with one that does")
    return judged_pairs(model, tokenizer, fmt, requests, config.samples, seed=config.seed)


def split_rows(rows, config, source):
    """(train, validation) rows by a seeded permutation; validation holds val_fraction of
    them, at most MAX_VALIDATION."""
    n_val = min(MAX_VALIDATION, max(1, round(config.val_fraction * len(rows))))
    if len(rows) - n_val < 1:
        raise MiniftError(f"{source}: {len(rows)} examples cannot be split into training and validation; "
                          f"give at least 2")
    order = np.random.default_rng([config.seed, 7]).permutation(len(rows))
    return [rows[i] for i in order[n_val:]], [rows[i] for i in order[:n_val]]


def response_example(tokenizer, fmt, prompt, response, block_size):
    """((x, y), cut) for one response: <|endoftext|> + the prompt, then " response" and
    <|endoftext|>, the loss on the response alone (masked_example). The prompt takes at
    most half the context; a response longer than the rest is cut (cut is True)."""
    ids = prompt_ids(tokenizer, fmt, prompt, block_size // 2)
    answer = tokenizer.encode(" " + response) + [tokenizer.eot_id]
    room = block_size + 1 - len(ids)
    return masked_example(ids, answer[:room]), len(answer) > room


def encode_rows(tokenizer, fmt, rows, block_size):
    """Each row (prompt, response, ...) as a list of (x, y), one per response; and how
    many responses were cut to the context."""
    encoded, cut = [], 0
    for prompt, *responses in rows:
        examples = [response_example(tokenizer, fmt, prompt, r, block_size) for r in responses]
        encoded.append([e for e, _ in examples])
        cut += sum(c for _, c in examples)
    return encoded, cut


# ----------------------------------------------------------------------------- aligning

def align(init: str | Path | None, out_dir: str | Path, config: AlignConfig | dict | None = None, *,
          device: str = "cpu", resume: bool = False, until: int | None = None, log: Callable[..., object] = print,
          progress: Progress | None = None) -> tuple[Module | None, Tokenizer | None, dict]:
    """Align the language-model run `init` by config.method into the run directory
    `out_dir`; returns (model, tokenizer, metrics). With resume=True the run in `out_dir`
    continues from its last checkpoint (`init` may be None; `config` a dict of settings
    that must equal the run's). `until` stops early at that step, as an interruption would.
    """
    with claim(out_dir, "align", resume, device) as run:
        started = resume                                  # (claim: the run exists)
        if started:
            if run.is_finished():
                log(f"{out_dir} already finished aligning")
                return None, None, run.read_metrics()
            init, config = reopen(run, init, config or {})
        else:
            config = config if isinstance(config, AlignConfig) else AlignConfig(**(config or {}))
            run.require_new()
            _require_finished(init)
        model, tokenizer, _ = load_gpt(init, device, kinds=LANGUAGE_MODEL_KINDS, command="align --init")
        if started:
            check_init_unchanged(run.read_config(), tokenizer, run.path)     # DPO's reference is a copy of it
        if not getattr(model.config, "causal", True):
            raise MiniftError(f"{init} holds an encoder; align needs a language model that writes text (a GPT)")
        fmt = PromptFormat(config.prompt_template)
        pairs, train, val, cut = _data(run, started, config, model, tokenizer, fmt, log)
        if not started:
            _start(run, init, config, model, tokenizer, pairs)
        parts = _sft_parts if config.method == "sft" else _dpo_parts
        trainer = _train(config, model, *parts(config, init, device, model, tokenizer, train, val),
                         run, started, until, progress, log)
        if trainer.step < trainer.steps:
            return model, tokenizer, {"history": trainer.history}      # stopped early: the checkpoint is the result
        run.save_weights(model.state_dict(), trainer.step)
        metrics = {"method": config.method, "history": trainer.history, "step": trainer.step,
                   "train_seconds": round(trainer.seconds, 2), "validation": trainer.history["eval"][-1],
                   "data": {"train": len(train), "validation": len(val), "cut": cut}, "finished": True}
        if config.pairs_file is None and config.judge_samples:
            metrics["judge"], _ = judged_following(model, tokenizer, fmt, feedback.request_split()["test"],
                                                   config.judge_samples, seed=config.seed)
            log("judged on the held-out requests: " + judge_line(metrics["judge"]))
        write_run_card(run, metrics, parameters=model.num_parameters())
        run.write_metrics(metrics)                  # last: the run is finished once this file says so
    return model, tokenizer, metrics


def judge_line(m):
    return (f"sentiment as requested {m['sentiment']:.1%}, on the requested product {m['product']:.1%}, "
            f"both {m['both']:.1%} ({m['n']} responses)")


def _require_finished(init):
    if init is None:
        raise MiniftError("--init is required: the run to start from (pretrained for sft, the SFT run for dpo)")
    run = RunDir(init)
    run.read_config(LANGUAGE_MODEL_KINDS, command="align --init")
    if not run.is_finished():
        raise MiniftError(f"{run.path} has not finished training; align starts only from a finished run "
                          f"(finish it with --resume first)")


def _source(config):
    return config.pairs_file or f"built-in {'judged pairs' if config.method == 'dpo' else 'examples'}"


def _data(run, started, config, model, tokenizer, fmt, log):
    """(pairs, encoded training rows, encoded validation rows, responses cut): from the
    pairs file, the run's own data.jsonl when it resumes, or new built-in data."""
    if config.pairs_file or started:
        pairs = load_pairs(config.pairs_file or run.file(DATA), config.keys())
    else:
        pairs = builtin_data(config, model, tokenizer, fmt, log)
    train_rows, val_rows = split_rows([tuple(p[k] for k in config.keys()) for p in pairs], config, _source(config))
    train, cut = encode_rows(tokenizer, fmt, train_rows, model.config.block_size)
    val, val_cut = encode_rows(tokenizer, fmt, val_rows, model.config.block_size)
    log(f"align {config.method}: {len(train)} training and {len(val)} validation "
        f"{'pairs' if config.method == 'dpo' else 'examples'} ({_source(config)})"
        + (f"; {cut + val_cut} responses cut to the context" if cut + val_cut else ""))
    return pairs, train, val, cut + val_cut


def _start(run, init, config, model, tokenizer, pairs):
    """A new run's files: tokenizer, built-in data, then config.json (which marks the run).
    The digest of the data is kept under the file's path (DATA: the run's own file)."""
    run.save_tokenizer(tokenizer)
    if config.pairs_file is None:
        write_pairs(run.file(DATA), pairs)
    run.write_config({"kind": config.method, "format": 2, "model": model.config, "init": resolved(init),
                      "init_sha256": file_sha256(Path(init) / "model.safetensors"),
                      "tokenizer_fingerprint": tokenizer.fingerprint(), "align": config.to_dict(), "data": _source(config),
                      "data_sha256": {config.pairs_file or DATA: file_sha256(config.pairs_file or run.file(DATA))}})


def _sft_parts(config, init, device, model, tokenizer, train, val):
    """Batches, loss, its split (a mean over the response tokens) and evaluation of
    supervised instruction tuning."""
    examples = [e for (e,) in train]
    batches = EpochBatches(len(examples), config.batch_size, instruction_batch(examples, tokenizer.pad_id),
                           seed=config.seed)
    val_batch = instruction_batch([e for (e,) in val], tokenizer.pad_id)
    chunks = [list(range(i, min(i + 32, len(val)))) for i in range(0, len(val), 32)]

    def evaluate(model):
        return {"val_loss": float(np.mean([instruction_loss(model, val_batch(c)).item() for c in chunks]))}
    return batches, instruction_loss, split_by_targets, evaluate


def _dpo_parts(config, init, device, model, tokenizer, train, val):
    """Batches, loss, its split (pairs kept whole) and evaluation of DPO. The reference
    is a frozen copy of the init, loaded again; it never changes, so its log-probs are
    computed once, here."""
    reference, _, _ = load_gpt(init, device, kinds=LANGUAGE_MODEL_KINDS, command="align --init")
    reference.requires_grad_(False)
    pad = tokenizer.pad_id

    def rows(pairs):                                  # the chosen of every pair, then the rejected
        return [c for c, _ in pairs] + [r for _, r in pairs]
    ref_train, ref_val = logprobs_of(reference, rows(train), pad), logprobs_of(reference, rows(val), pad)
    batches = EpochBatches(len(train), config.batch_size, preference_batch(train, ref_train, pad), seed=config.seed)
    beta = config.beta

    def loss_fn(model, batch):
        x, y, ref = batch
        return dpo_loss(sequence_logprobs(model, x, y), ref, beta)

    def evaluate(model):
        return preference_metrics(logprobs_of(model, rows(val), pad), ref_val, beta)
    return batches, loss_fn, split_pairs, evaluate


def _train(config, model, batches, loss_fn, split, evaluate, run, resume, until, progress, log):
    steps = config.epochs * batches.steps_per_epoch
    every = max(1, batches.steps_per_epoch // 2)         # two evaluations (and checkpoints) an epoch
    optimizer = AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=BETAS)
    schedule = WarmupCosine(config.lr, warmup_steps=max(1, steps // 10), total_steps=steps)
    trainer = Trainer(model, optimizer, batches, loss_fn, steps=steps, schedule=schedule, grad_clip=1.0,
                      data_parallel=False if has_dropout(model) else split, evaluate=evaluate,
                      eval_every=every, run=run, seed=config.seed,
                      progress=progress or Progress(every=max(1, every // 4)))
    if resume and trainer.resume() is not None:
        log(f"resumed at step {trainer.step} of {steps}")
    trainer.run(until=until)
    return trainer


def reopen(run, init, insisted):
    """(init, AlignConfig) of the run in `run` for --resume, after checking that no setting
    in `insisted` (or `init`) contradicts it and that the init and the data are unchanged."""
    cfg = run.read_config(ALIGNED_KINDS, command="align --resume")
    config = config_from_json(AlignConfig, cfg.get("align"), run.file("config.json"), "align")
    if init is not None and resolved(init) != cfg["init"]:
        raise MiniftError(f"--init {init} contradicts the run in {run.path}, which was started from {cfg['init']}")
    refuse_changes(config, insisted, run.path, flags={"pairs_file": "--pairs"})
    for name, digest in cfg.get("data_sha256", {}).items():
        path = run.file(name) if name == DATA else Path(name)
        if not path.is_file() or file_sha256(path) != digest:
            raise MiniftError(f"{path} changed (or is gone) since the run in {run.path} started; --resume "
                              f"needs the same data")
    run.repair()
    return cfg["init"], config
