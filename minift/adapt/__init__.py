"""Adaptation: a pretrained GPT turned into a text classifier (positive / negative /
neutral), by one of seven strategies, beside a baseline that uses no GPT at all.

    full      every parameter trains
    head      the backbone is frozen; only a new classification head trains (a linear probe)
    top-k     the last k blocks, the final LayerNorm and the head train
    lora      the backbone is frozen; low-rank adapters beside the attention projections
              (optionally the MLP) and the head train
    prompt    nothing trains: the language model scores each label word after a prompt
              ("Review: ...\\nSentiment:"), zero-shot or after k solved examples
    instruct  the language model is fine-tuned to write the label word after the prompt
              (loss on the answer tokens only)
    scratch   the `full` classifier from random weights: the no-pretraining baseline
    bow       logistic regression on TF-IDF token counts: the baseline without a neural network

Read in this order:
    heads      the classification head, pooling over real tokens (padding never counts)
    lora       freezing and LoRA adapters (add, merge)
    bow        the bag-of-words baseline: token counts, TF-IDF, logistic regression
    prompts    the prompt format, label likelihoods, instruction-tuning examples
    tasks      one Task per kind (classifier, bow, instruct, prompt): model, batches, loss, scores
    metrics    accuracy, macro-F1, per-class scores, confusion matrix
    report     the tables printed for a learner
    recipes    plans bounded in steps, stratified samples, early stopping, the collapse warning
    finetune   FinetuneConfig, finetune()
    predict    load_finetuned -> FinetunedModel (predict, predict_proba, evaluate); predictions as
               CSV or JSON Lines files
"""
from .finetune import (
    DEFAULT_K, FINETUNE_RECIPES, FinetuneConfig, builtin_labeled_sets, compare_strategies, finetune,
    load_finetune_data,
)
from .bow import BagOfWords, inverse_document_frequency, tfidf, token_counts
from .heads import POOLINGS, Classifier, make_scratch, pool, swap_head
from .lora import CLASSIFIER_STRATEGIES, LoRALinear, add_lora, apply_strategy, has_lora, merge_lora
from .metrics import classification_metrics, softmax_rows
from .predict import FinetunedModel, load_finetuned, predictions_csv, predictions_jsonl, predictions_table
from .prompts import PromptFormat
from .report import comparison_table, format_metrics, mean_and_spread, seeds_table
from .tasks import LM_STRATEGIES, STRATEGIES, BowTask, ClassifierTask, EpochBatches, InstructTask, PromptTask

__all__ = [
    "finetune", "FinetuneConfig", "load_finetuned", "compare_strategies", "FinetunedModel", "load_finetune_data",
    "builtin_labeled_sets", "FINETUNE_RECIPES", "DEFAULT_K",
    "Classifier", "swap_head", "make_scratch", "pool", "POOLINGS",
    "LoRALinear", "add_lora", "merge_lora", "has_lora", "apply_strategy", "CLASSIFIER_STRATEGIES",
    "PromptFormat", "classification_metrics", "softmax_rows", "format_metrics", "comparison_table",
    "seeds_table", "mean_and_spread", "predictions_csv", "predictions_jsonl", "predictions_table",
    "STRATEGIES", "LM_STRATEGIES", "ClassifierTask", "InstructTask", "PromptTask", "EpochBatches",
    "BagOfWords", "BowTask", "tfidf", "token_counts", "inverse_document_frequency",
]
