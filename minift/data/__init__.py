"""Data: reading text, the tokenizer, the pretraining corpus, labeled text, built-in data.

Read in this order (each module imports only those above it):
    text       strict UTF-8 reading of text files, splitting text into documents, telling a table from prose
    tokenizer  byte-level BPE over HF `tokenizers`, special tokens <|endoftext|> and <|pad|>
    bpe        one step of BPE training written out (what `tokenizers` does at each step), to read
    corpus     documents -> one stream of token ids (cached) -> random (x, y) windows
    labeled    CSV / TSV / JSONL labeled text (read, written, one column as a corpus), texts to
               classify, label ids, stratified splits, padding
    masking    masked-language-model batches of documents for an encoder (BERT's 80/10/10)
    preferences  JSONL preference pairs (prompt, chosen, rejected) for alignment
    feedback   the built-in "embedded world" of customer reviews (a sub-package: lexicon,
               world, grammar, planner, datasets, judge, instructions), so the demos need
               no download
"""
from .corpus import BatchSampler, corpus_sha256, tokenize_corpus, train_val_split
from .labeled import (
    LabeledData, class_weights, encode_labels, encode_texts, label_vocabulary,
    export_builtin, load_column, load_labeled, load_texts, pad_batch, parse_texts, stratified_split, write_labeled,
)
from .masking import MaskedDocuments, mask_tokens, split_into_documents
from .preferences import PAIR_KEYS, load_pairs, write_pairs
from .text import check_text, read_text_files, split_documents, tabular_format
from .tokenizer import Tokenizer

__all__ = [
    "Tokenizer",
    "check_text", "read_text_files", "split_documents", "tabular_format",
    "tokenize_corpus", "corpus_sha256", "train_val_split",
    "BatchSampler", "MaskedDocuments", "mask_tokens", "split_into_documents",
    "LabeledData", "load_labeled", "load_column", "load_texts", "parse_texts", "write_labeled", "export_builtin",
    "label_vocabulary", "encode_labels", "stratified_split", "class_weights", "encode_texts", "pad_batch",
    "PAIR_KEYS", "load_pairs", "write_pairs",
]
