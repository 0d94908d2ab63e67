"""From documents to a flat stream of token ids, and from that stream to training batches.

Pretraining reads the corpus as one long sequence of token ids, with the end-of-text
token after every document, so the model learns where a document stops:

    doc 1 tokens, <|endoftext|>, doc 2 tokens, <|endoftext|>, ...

A batch is B random windows of T + 1 consecutive ids from that stream; the input is the
first T ids of each window and the target is the same window shifted left by one, so
every position is trained to predict the token that follows it. Reading the text files
and splitting them into documents is `text.py`'s job.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from ..files import atomic_write

__all__ = ["tokenize_corpus", "corpus_sha256", "train_val_split", "BatchSampler"]

# Bump when the layout of tokens.bin / tokens.json changes, so old caches are rebuilt.
_CACHE_VERSION = 1


# ----------------------------------------------------------------------------- tokenizing

def _token_dtype(vocab_size):
    # uint16 halves the memory of int32 and holds every id below 2**16.
    return np.dtype(np.uint16) if vocab_size <= 2 ** 16 else np.dtype(np.int32)


def corpus_sha256(documents):
    """A digest of the documents that also sees where each document ends."""
    h = hashlib.sha256()
    for doc in documents:
        b = doc.encode("utf-8")
        # The length prefix makes ["ab", "c"] and ["a", "bc"] hash differently.
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _encode_documents(documents, tokenizer, dtype):
    """Encode all documents (in parallel, in Rust) and join them, each followed by EOT."""
    encoded = tokenizer.encode_batch(documents)
    total = sum(len(ids) for ids in encoded) + len(encoded)
    out = np.empty(total, dtype=dtype)
    pos = 0
    for ids in encoded:
        out[pos:pos + len(ids)] = ids
        pos += len(ids)
        out[pos] = tokenizer.eot_id
        pos += 1
    return out


def _load_cache(bin_path, meta_path, expected):
    """The cached ids if the cache exists and matches `expected`, else None."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None                   # absent or unreadable: just rebuild it
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
        return None
    dtype, length = np.dtype(expected["dtype"]), meta.get("length")
    if not isinstance(length, int) or not bin_path.is_file():
        return None
    if bin_path.stat().st_size != length * dtype.itemsize:
        return None                   # truncated or foreign file
    if length == 0:
        return np.zeros(0, dtype=dtype)
    # Memory-mapped: a large corpus is paged in on demand rather than read whole.
    return np.memmap(bin_path, dtype=dtype, mode="r", shape=(length,))


def tokenize_corpus(documents, tokenizer, cache_dir=None, ids=None):
    """Encode `documents` into one flat array of ids, with `tokenizer.eot_id` after each.

    The dtype is uint16 when the vocabulary fits (vocab_size <= 65536), else int32.

    With `cache_dir`, the array is saved as `tokens.bin` (the raw ids) and `tokens.json`
    (dtype, length, the sha256 of the documents and the tokenizer's fingerprint). A later
    call with the same documents and tokenizer returns the cached ids, memory-mapped
    read-only, without encoding again; a different corpus or tokenizer rebuilds them.
    `ids`, when given, are these documents already encoded (by a call without a cache
    directory): they are then only written to the cache, not encoded again.
    """
    if isinstance(documents, str):
        raise TypeError("tokenize_corpus expects a list of documents, not one string; "
                        "wrap it in a list or use split_documents(text)")
    documents = list(documents)
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise TypeError(f"document {i} is a {type(doc).__name__}, expected str")
    dtype = _token_dtype(tokenizer.vocab_size)
    if cache_dir is None:
        return _encode_documents(documents, tokenizer, dtype)

    cache_dir = Path(cache_dir)
    bin_path, meta_path = cache_dir / "tokens.bin", cache_dir / "tokens.json"
    expected = {
        "version": _CACHE_VERSION,
        "dtype": dtype.name,
        "num_documents": len(documents),
        "corpus_sha256": corpus_sha256(documents),
        "tokenizer_fingerprint": tokenizer.fingerprint(),
    }
    cached = _load_cache(bin_path, meta_path, expected)
    if cached is not None:
        return cached

    if ids is None:
        ids = _encode_documents(documents, tokenizer, dtype)
    # Remove the old description first: if we crash after writing tokens.bin, no
    # tokens.json is left that could vouch for the wrong ids.
    meta_path.unlink(missing_ok=True)
    atomic_write(bin_path, ids.data)
    meta = dict(expected, length=int(ids.size))
    atomic_write(meta_path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return ids


# ----------------------------------------------------------------------------- batching

def train_val_split(ids, val_fraction=0.1, block_size=1):
    """Split a flat id array into (train, val): the last `val_fraction` is validation.

    The split is contiguous (not shuffled) so that no validation window overlaps a
    training window. Both parts must hold at least one window of `block_size + 1` ids;
    otherwise a ValueError gives the numbers. The parts are views of `ids`, not copies.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(ids)
    n_val = int(round(n * val_fraction))
    n_train = n - n_val
    need = block_size + 1
    if n_train < need or n_val < need:
        raise ValueError(
            f"train_val_split: {n} tokens with val_fraction={val_fraction} give "
            f"{n_train} training and {n_val} validation tokens, but each part needs at "
            f"least block_size + 1 = {need} tokens for one window. Use more text, a "
            f"smaller block_size, or a different val_fraction."
        )
    return ids[:n_train], ids[n_train:]


class BatchSampler:
    """Random windows from a flat id array, reproducible from a seed and resumable.

        sampler = BatchSampler(train_ids, batch_size=16, block_size=64, seed=0)
        x, y = sampler.next_batch()        # both (16, 64) int64; y[:, t] == x[:, t + 1]

    The randomness comes from one `np.random.Generator(PCG64(seed))`. Its state is
    saved by `state_dict()` as plain JSON data, so a run resumed with
    `load_state_dict()` draws exactly the batches it would have drawn without stopping.
    """

    def __init__(self, ids, batch_size, block_size, seed):
        ids = np.asarray(ids)         # keeps a memmap a memmap: nothing is copied
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D integer array, got shape {ids.shape} "
                             f"and dtype {ids.dtype}")
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got "
                             f"{batch_size} and {block_size}")
        if len(ids) < block_size + 1:
            raise ValueError(f"the ids hold {len(ids)} tokens, fewer than one window of "
                             f"block_size + 1 = {block_size + 1}; use more text or a "
                             f"smaller block_size")
        self.ids = ids
        self.batch_size = batch_size
        self.block_size = block_size
        self.batches_drawn = 0
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def next_batch(self):
        """(x, y), two contiguous int64 arrays of shape (batch_size, block_size)."""
        B, T = self.batch_size, self.block_size
        # A window starting at s reads ids[s : s + T + 1]; the last valid s is n - T - 1,
        # and `integers` excludes its upper bound.
        starts = self._rng.integers(0, len(self.ids) - T, size=B)          # (B,)
        windows = self.ids[starts[:, None] + np.arange(T + 1)]              # (B, T+1)
        windows = windows.astype(np.int64)
        self.batches_drawn += 1
        x = np.ascontiguousarray(windows[:, :-1])                          # (B, T)
        y = np.ascontiguousarray(windows[:, 1:])                           # (B, T)
        return x, y

    def state_dict(self):
        """The sampler's position as JSON-serialisable data (128-bit ints as strings)."""
        s = self._rng.bit_generator.state
        return {
            "bit_generator": s["bit_generator"],
            # As decimal strings: many JSON readers silently round integers above 2**53.
            "state": str(s["state"]["state"]),
            "inc": str(s["state"]["inc"]),
            "has_uint32": int(s["has_uint32"]),
            "uinteger": int(s["uinteger"]),
            "batches_drawn": self.batches_drawn,
        }

    def load_state_dict(self, state):
        """Restore a position saved by `state_dict()`; the next batches then repeat."""
        keys = ["bit_generator", "state", "inc", "has_uint32", "uinteger", "batches_drawn"]
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"BatchSampler state is missing {missing}; expected the keys "
                             f"{keys} as written by state_dict()")
        if state["bit_generator"] != "PCG64":
            raise ValueError(f"BatchSampler state is for {state['bit_generator']!r}, "
                             f"expected 'PCG64'")
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(state["state"]), "inc": int(state["inc"])},
            "has_uint32": int(state["has_uint32"]),
            "uinteger": int(state["uinteger"]),
        }
        self.batches_drawn = int(state["batches_drawn"])
