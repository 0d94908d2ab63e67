"""Data: reading text, the tokenizer, the pretraining corpus, labeled text, built-in data.

Read in this order (each module imports only those above it):
    text       strict UTF-8 reading of text files, splitting text into documents
    tokenizer  byte-level BPE over HF `tokenizers`, special tokens <|endoftext|> and <|pad|>
    corpus     documents -> one stream of token ids (cached) -> random (x, y) windows
    labeled    CSV / TSV / JSONL labeled text, label ids, stratified splits, padding
    feedback   the built-in "embedded world" of customer reviews (a sub-package: lexicon,
               world, grammar, planner, datasets), so the demos need no download
"""
from .corpus import BatchSampler, corpus_sha256, tokenize_corpus, train_val_split
from .labeled import (
    LabeledData, class_weights, encode_labels, encode_texts, label_vocabulary,
    load_labeled, pad_batch, stratified_split,
)
from .text import read_text_files, split_documents
from .tokenizer import Tokenizer

__all__ = [
    "Tokenizer",
    "read_text_files", "split_documents", "tokenize_corpus", "corpus_sha256", "train_val_split",
    "BatchSampler",
    "LabeledData", "load_labeled", "label_vocabulary", "encode_labels",
    "stratified_split", "class_weights", "encode_texts", "pad_batch",
]
