"""One `Task` per kind of adapted model: what fine-tuning needs to know about it.

    kind         model                         trained on                    scores a text by
    classifier   backbone + classification     cross-entropy of the head's   the head's logits
                 head (strategies full, head,  logits
                 top-k, lora, scratch)
    bow          logistic regression on        cross-entropy of its logits   its logits
                 TF-IDF token counts (no GPT)
    instruct     the GPT with its LM head      cross-entropy of the answer   log p(" label" | prompt)
                                               tokens after the prompt
    prompt       the GPT with its LM head      nothing                       log p(" label" | prompt)

Every task offers the same five things, so the fine-tuning script never asks which
kind it holds: build(gpt) the model to train, encode(texts), batches(...), loss(model,
batch) and scores(model, encoded) -> (N, L), plus to_config() for config.json.
"""
import json
import math

import numpy as np

from .. import functional as F
from ..backend import device_of, to_device
from ..data import class_weights, encode_texts, pad_batch
from ..errors import MiniftError
from ..trainer import split_by_targets, split_rows
from .bow import BagOfWords, encode_for_bow, inverse_document_frequency
from .heads import POOLINGS, classifier_logits, make_scratch, swap_head
from .lora import apply_strategy
from .prompts import (
    PromptFormat, choose_shots, instruction_batch, instruction_example, instruction_loss, label_log_likelihoods,
    lm_truncated,
)

STRATEGIES = ("full", "head", "top-k", "lora", "prompt", "instruct", "scratch", "bow")
LM_STRATEGIES = ("prompt", "instruct")                  # the LM head scores the labels


class EpochBatches:
    """Mini-batches that visit every example once per epoch, in a fresh seeded order
    each epoch; `make_batch(indices)` turns a list of example indices into the batch.

    Has what the Trainer needs: next_batch(), state_dict(), load_state_dict(). The order
    of epoch e depends only on (seed, e), so the state is two integers.
    """

    def __init__(self, n, batch_size, make_batch, seed=0):
        if n < 1 or batch_size < 1:
            raise ValueError(f"EpochBatches: need n >= 1 and batch_size >= 1, got {n} and {batch_size}")
        self.n, self.batch_size, self.make_batch, self.seed = n, batch_size, make_batch, seed
        self.epoch, self.position = 0, 0

    @property
    def steps_per_epoch(self):
        return math.ceil(self.n / self.batch_size)

    def next_batch(self):
        if self.position >= self.n:                 # the epoch is over: start the next
            self.epoch, self.position = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        indices = order[self.position:self.position + self.batch_size]
        self.position += len(indices)
        return self.make_batch(indices)

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state):
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])


def encode_for_classifier(texts, tokenizer, max_len):
    """Token ids of each text cut to max_len - 1 tokens, then `<|endoftext|>`.

    The appended end-of-text token gives every text the same last token, the one the
    "last" pooling reads: in pretraining it followed every document, so its hidden
    state is the model's summary of a finished text. Returns (id lists, number cut).
    """
    seqs, n_cut = encode_texts(texts, tokenizer, max_len - 1)
    return [ids + [tokenizer.eot_id] for ids in seqs], n_cut


def classifier_batch(seqs, label_ids, pad_id):
    """make_batch for EpochBatches: indices -> (ids (B, T), lengths (B,), labels (B,))."""
    label_ids = np.asarray(label_ids, dtype=np.int64)

    def make_batch(indices):
        ids, lengths = pad_batch([seqs[i] for i in indices], pad_id)
        return ids, lengths, label_ids[indices]
    return make_batch


class ClassifierTask:
    """A classification head on the backbone; `strategy` decides what trains."""
    kind, trains = "classifier", True

    def __init__(self, labels, tokenizer, max_len, strategy="full", pooling="last", top_k=None, lora=None,
                 weight=None, seed=0):
        self.labels, self.tokenizer, self.max_len = list(labels), tokenizer, max_len
        self.strategy, self.pooling, self.top_k, self.lora = strategy, pooling, top_k, lora
        self.weight, self.seed = weight, seed                 # weight: class weights (L,) or None

    def build(self, gpt):
        n = len(self.labels)
        model = (make_scratch(gpt.config, n, self.pooling, seed=self.seed) if self.strategy == "scratch"
                 else swap_head(gpt, n, self.pooling, seed=self.seed))
        lora = self.lora or {}
        return apply_strategy(model, self.strategy, k=self.top_k, lora_rank=lora.get("rank", 8),
                              lora_alpha=lora.get("alpha", 16), lora_mlp=lora.get("mlp", False), seed=self.seed)

    def inference_model(self, gpt):
        """The model a finished run's weights load into (adapters already merged)."""
        return swap_head(gpt, len(self.labels), self.pooling)

    def encode(self, texts):
        return encode_for_classifier(texts, self.tokenizer, self.max_len)

    def batches(self, seqs, label_ids, batch_size, seed):
        return EpochBatches(len(label_ids), batch_size, classifier_batch(seqs, label_ids, self.tokenizer.pad_id),
                            seed=seed)

    def loss(self, model, batch):
        ids, lengths, labels = batch
        logits = model(ids, lengths)                                        # (B, L)
        weight = None if self.weight is None else to_device(self.weight, device_of(logits.data))
        return F.cross_entropy(logits, labels, weight=weight)

    def split(self, batch, parts):
        """How the loss splits for data parallelism (Trainer): a mean over the rows, each
        weighted by its class's weight (1 without class weights)."""
        labels = batch[2]
        return split_rows(batch, parts, np.ones(len(labels), np.int64) if self.weight is None
                          else np.asarray(self.weight, np.float64)[labels])

    def scores(self, model, seqs):
        return classifier_logits(model, seqs, self.tokenizer.pad_id)

    def to_config(self):
        return {"kind": self.kind, "labels": self.labels, "pooling": self.pooling, "top_k": self.top_k,
                "lora": self.lora, "shots": None, "prompt_format": None, "max_len": self.max_len}


class BowTask(ClassifierTask):
    """The bag-of-words baseline (bow.py): the classifier's batches, loss and scores, on a
    logistic regression over TF-IDF vectors instead of a GPT."""
    kind = "bow"

    def __init__(self, labels, tokenizer, max_len, idf=None, weight=None):
        super().__init__(labels, tokenizer, max_len, strategy="bow", pooling=None, weight=weight)
        self.idf = idf                  # (V,) from the training texts; None when loading (the weights hold it)

    def build(self, gpt):
        return BagOfWords(self.idf, len(self.labels))        # the GPT's weights are not used

    def inference_model(self, gpt=None):
        return BagOfWords(np.zeros(self.tokenizer.vocab_size), len(self.labels))

    def encode(self, texts):
        return encode_for_bow(texts, self.tokenizer, self.max_len)

    def to_config(self):
        return {**super().to_config(), "kind": self.kind}


class InstructTask:
    """The language model fine-tuned to write the label word after the prompt."""
    kind, trains = "instruct", True

    def __init__(self, labels, tokenizer, max_len, fmt=PromptFormat(), shots=()):
        self.labels, self.tokenizer, self.max_len = list(labels), tokenizer, max_len
        self.fmt, self.shots = fmt, [tuple(s) for s in shots]

    def build(self, gpt):
        return gpt

    inference_model = build

    def encode(self, texts):
        """LM tasks keep the texts: the prompt is built around each one when scored."""
        return list(texts), lm_truncated(self.tokenizer, self.fmt, texts, self.labels, self.max_len)

    def batches(self, texts, label_ids, batch_size, seed):
        examples = [instruction_example(self.tokenizer, self.fmt, t, self.labels[c], self.max_len)
                    for t, c in zip(texts, label_ids)]
        return EpochBatches(len(label_ids), batch_size, instruction_batch(examples, self.tokenizer.pad_id), seed=seed)

    def loss(self, model, batch):
        return instruction_loss(model, batch)

    split = staticmethod(split_by_targets)      # a mean over the answer tokens

    def scores(self, model, texts):
        return label_log_likelihoods(model, self.tokenizer, texts, self.labels, self.fmt, shots=self.shots)

    def to_config(self):
        return {"kind": self.kind, "labels": self.labels, "pooling": None, "top_k": None, "lora": None,
                "shots": [list(s) for s in self.shots] if self.kind == "prompt" else None,
                "prompt_format": self.fmt.to_dict(), "max_len": self.max_len}


class PromptTask(InstructTask):
    """The pretrained language model asked as it is, after k solved examples: no training."""
    kind, trains = "prompt", False


def make_task(config, labels, tokenizer, model_config, train_texts, train_y):
    """The Task for a FinetuneConfig; the training split supplies class weights (classifier)
    and the solved examples (k-shot prompt)."""
    max_len = model_config.block_size
    if config.strategy == "prompt":
        shots = choose_shots(train_texts, [labels[i] for i in train_y], config.k or 0, seed=config.seed,
                             max_chars=4 * max_len // max((config.k or 0) + 1, 2))
        return PromptTask(labels, tokenizer, max_len, PromptFormat(config.prompt_template), shots)
    if config.strategy == "instruct":
        return InstructTask(labels, tokenizer, max_len, PromptFormat(config.prompt_template))
    weight = class_weights(train_y, len(labels)) if config.class_weighting else None
    if config.strategy == "bow":
        seqs, _ = encode_for_bow(train_texts, tokenizer, max_len)
        return BowTask(labels, tokenizer, max_len, inverse_document_frequency(seqs, tokenizer.vocab_size), weight)
    lora = dict(rank=config.lora_rank, alpha=config.lora_alpha, mlp=config.lora_mlp) \
        if config.strategy == "lora" else None
    pooling = config.pooling or ("last" if model_config.causal else "mean")   # None: the model's default
    return ClassifierTask(labels, tokenizer, max_len, config.strategy, pooling,
                          config.k if config.strategy == "top-k" else None, lora, weight, config.seed)


def task_from_config(cfg, tokenizer, path="config.json"):
    """The Task a run's config.json describes, every field it needs checked first (also
    runs written before format 2, which kept the prompt template as "prompt_template")."""
    kind, labels, max_len = cfg["kind"], cfg.get("labels"), cfg.get("max_len")
    if not (isinstance(labels, list) and len(labels) >= 2 and len(set(labels)) == len(labels)
            and all(isinstance(x, str) and x for x in labels)):
        raise MiniftError(f"{path}: \"labels\" must be a list of at least two different label names, "
                          f"found {json.dumps(labels)}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not 2 <= max_len <= cfg["model"].block_size:
        raise MiniftError(f"{path}: \"max_len\" must be an integer from 2 to the model's block size "
                          f"{cfg['model'].block_size}, found {json.dumps(max_len)}")
    if kind == "bow":
        return BowTask(labels, tokenizer, max_len)
    if kind == "classifier":
        if cfg.get("pooling") not in POOLINGS:
            raise MiniftError(f"{path}: \"pooling\" must be one of {list(POOLINGS)}, found {json.dumps(cfg.get('pooling'))}")
        return ClassifierTask(labels, tokenizer, max_len, cfg.get("strategy", "full"), cfg["pooling"],
                              cfg.get("top_k"), cfg.get("lora"))
    stored = cfg.get("prompt_format") or {"template": cfg.get("prompt_template") or PromptFormat().template}
    if not isinstance(stored, dict) or set(stored) != {"template"}:
        raise MiniftError(f"{path}: \"prompt_format\" must be an object {{\"template\": ...}}, found {json.dumps(stored)}")
    shots = cfg.get("shots") or []
    if not (isinstance(shots, list) and all(isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s)
                                            and s[1] in labels for s in shots)):
        raise MiniftError(f"{path}: \"shots\" must be a list of [text, label] pairs, found {json.dumps(shots)[:200]}")
    task = PromptTask if kind == "prompt" else InstructTask
    return task(labels, tokenizer, max_len, PromptFormat(stored["template"]), shots)
