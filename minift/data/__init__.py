"""Data: the tokenizer, the pretraining corpus pipeline, and labeled text for fine-tuning.

Read in this order:
    corpus     text files -> documents -> one stream of token ids -> random (x, y) windows
               (also the shared helpers: strict UTF-8 reading, atomic writes)
    tokenizer  byte-level BPE over HF `tokenizers`, special tokens <|endoftext|> and <|pad|>
    labeled    CSV / TSV / JSONL labeled text, label ids, stratified splits, padding
"""
from .corpus import (
    BatchSampler, read_text_files, split_documents, tokenize_corpus, train_val_split,
)
from .labeled import (
    LabeledData, class_weights, encode_labels, encode_texts, label_vocabulary,
    load_labeled, pad_batch, stratified_split,
)
from .tokenizer import Tokenizer

__all__ = [
    "Tokenizer",
    "read_text_files", "split_documents", "tokenize_corpus", "train_val_split",
    "BatchSampler",
    "LabeledData", "load_labeled", "label_vocabulary", "encode_labels",
    "stratified_split", "class_weights", "encode_texts", "pad_batch",
]
