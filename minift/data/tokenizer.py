"""A byte-level BPE tokenizer: a thin, documented wrapper over HF `tokenizers`.

Byte-level BPE (as in GPT-2) first turns text into UTF-8 bytes, so its base vocabulary
is the 256 possible bytes and *every* string can be encoded: there is no unknown token.
Training then repeatedly merges the most frequent adjacent pair of tokens into a new
token until the vocabulary reaches `vocab_size` (bpe.py writes one such step out, to
read). The Rust library does the heavy work; this class fixes the choices minift relies
on and gives them names:

    id 0  <|endoftext|>   ends every document in the pretraining stream
    id 1  <|pad|>         fills the end of shorter sequences in a classification batch
    id 2  <|mask|>        (an encoder's tokenizer only, `mask_token=True`) stands for the
                          tokens a masked-language model must fill in

    tok = Tokenizer.train(texts, vocab_size=2048)
    ids = tok.encode("The battery died.")     # list of ints
    tok.decode(ids) == "The battery died."     # True for every Unicode string
    tok.save("runs/demo")                      # writes runs/demo/tokenizer.json

User text is never turned into a special token by accident: by default the string
"<|endoftext|>" inside a review is encoded as ordinary bytes, so a review cannot end a
document early (`allow_special=True` maps it to id 0 instead).
"""
import hashlib
import json
import os
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from ..errors import MiniftError
from ..files import atomic_write
from .text import decode_utf8, read_text_files

__all__ = ["Tokenizer", "EOT_TOKEN", "PAD_TOKEN", "MASK_TOKEN"]

EOT_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
MASK_TOKEN = "<|mask|>"
SPECIAL_TOKENS = [EOT_TOKEN, PAD_TOKEN]      # in this order: ids 0 and 1 (then MASK_TOKEN, id 2, if asked)
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """Byte-level BPE with `<|endoftext|>` (id 0) and `<|pad|>` (id 1).

    Build one with `Tokenizer.train(...)` or `Tokenizer.load(path)`. The wrapped HF
    tokenizer is `.hf`, to inspect (vocabulary, merges); treat it as read-only.
    """

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        eot = hf_tokenizer.token_to_id(EOT_TOKEN)
        if eot is None:
            raise ValueError(f"the tokenizer has no {EOT_TOKEN!r} token; minift needs it "
                             f"to separate documents")
        pad = hf_tokenizer.token_to_id(PAD_TOKEN)
        self._eot_id = eot
        # A tokenizer from elsewhere (GPT-2's, say) may lack a pad token. Padding is
        # always masked out, so reusing EOT is harmless, as GPT-2 users commonly do.
        self._pad_id = eot if pad is None else pad
        self._mask_id = hf_tokenizer.token_to_id(MASK_TOKEN)      # None unless trained for an encoder
        # A second copy in which special-token strings are ordinary text: used for
        # encoding by default, so user text can never produce a special id.
        self._hf_plain = HFTokenizer.from_str(hf_tokenizer.to_str())
        self._hf_plain.encode_special_tokens = True

    # ------------------------------------------------------------------ building

    @classmethod
    def train(cls, texts=None, *, files=None, vocab_size=2048, min_frequency=2, mask_token=False):
        """Train a byte-level BPE tokenizer on `texts` and/or `files`.

        texts: an iterable of strings (the texts themselves); an item that is a
               pathlib.Path is read as a UTF-8 file instead.
        files: a list of text file paths (str or Path).
        vocab_size: the largest vocabulary, including the 256 bytes and the 2 special
               tokens; a small corpus may stop earlier (see `.vocab_size`).
        min_frequency: a pair must occur at least this often to be merged.
        mask_token: add `<|mask|>` (id 2) for masked-language-model pretraining.

        Training is deterministic: the same input gives the same tokenizer.
        """
        special = SPECIAL_TOKENS + ([MASK_TOKEN] if mask_token else [])
        smallest = 256 + len(special)
        if vocab_size < smallest:
            raise ValueError(f"vocab_size must be at least {smallest} (256 byte tokens + "
                             f"{len(special)} special tokens), got {vocab_size}")
        if texts is None and files is None:
            raise ValueError("Tokenizer.train needs texts=... or files=...")
        if isinstance(texts, (str, os.PathLike)):
            texts = [texts]           # one text (or file), not an iterable of characters

        hf = HFTokenizer(models.BPE())
        # add_prefix_space=False: "hello" and " hello" stay different, and no space is
        # invented at the start, so decode(encode(s)) == s exactly.
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            # All 256 bytes, even those absent from the corpus: any string can be encoded.
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(_training_texts(texts, files), trainer=trainer)
        return cls(hf)

    @classmethod
    def from_str(cls, json_text):
        """A tokenizer from the text of a tokenizer.json file."""
        return cls(HFTokenizer.from_str(json_text))

    def to_str(self):
        """The tokenizer as HF tokenizers JSON text (what `save` writes)."""
        return self.hf.to_str(pretty=True)

    @classmethod
    def load(cls, path):
        """Load `path`: a tokenizer.json file, or a run directory that holds one."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer file at {file}")
        text = decode_utf8(file.read_bytes(), file)
        try:
            return cls.from_str(text)
        except Exception as e:     # the Rust parser raises plain Exception
            raise MiniftError(f"{file}: not a valid HF tokenizers JSON file: {e}") from None

    def save(self, path):
        """Write the tokenizer atomically; returns the file written.

        `path` is a directory (tokenizer.json is written inside it, creating it if
        needed) or a file name ending in ".json".
        """
        path = Path(path)
        file = path if path.suffix == ".json" else path / TOKENIZER_FILE
        return atomic_write(file, self.to_str().encode("utf-8"))

    def fingerprint(self):
        """A sha256 hex digest of the tokenizer's JSON, independent of its formatting.

        Two tokenizers with the same fingerprint encode every text identically. Runs and
        token caches store it to notice when they are used with a different tokenizer.
        """
        canonical = json.dumps(json.loads(self.hf.to_str()), sort_keys=True,
                               separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ using

    @property
    def eot_id(self):
        """Id of `<|endoftext|>` (0 for a tokenizer trained by minift)."""
        return self._eot_id

    @property
    def pad_id(self):
        """Id of `<|pad|>` (1 for a tokenizer trained by minift)."""
        return self._pad_id

    @property
    def mask_id(self):
        """Id of `<|mask|>` (2), or None for a tokenizer trained without it."""
        return self._mask_id

    @property
    def vocab_size(self):
        """Number of token ids, special tokens included: ids run from 0 to vocab_size-1."""
        return self.hf.get_vocab_size(with_added_tokens=True)

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return (f"Tokenizer(vocab_size={self.vocab_size}, eot_id={self.eot_id}, "
                f"pad_id={self.pad_id})")

    def token_to_id(self, token):
        """The id of a token string (e.g. "<|pad|>" or "Ġthe"); KeyError if absent."""
        i = self.hf.token_to_id(token)
        if i is None:
            raise KeyError(f"{token!r} is not in the vocabulary")
        return i

    def id_to_token(self, i):
        """The token string for an id (bytes shown in GPT-2's printable form: "Ġ" is a space)."""
        token = self.hf.id_to_token(int(i))
        if token is None:
            raise KeyError(f"id {i} is outside the vocabulary (0..{self.vocab_size - 1})")
        return token

    def _backend(self, allow_special):
        return self.hf if allow_special else self._hf_plain

    def encode(self, text, allow_special=False):
        """Token ids of `text`. Special-token strings in it stay text unless `allow_special`."""
        try:
            return self._backend(allow_special).encode(text, add_special_tokens=False).ids
        except TypeError:
            _raise_if_bad_text(text, "text")
            raise

    def encode_batch(self, texts, allow_special=False):
        """`encode` for many texts at once, in parallel threads: much faster for a corpus."""
        texts = list(texts)
        hf = self._backend(allow_special)
        # encode_batch_fast (tokenizers >= 0.20) skips computing character offsets.
        encode = getattr(hf, "encode_batch_fast", hf.encode_batch)
        try:
            return [e.ids for e in encode(texts, add_special_tokens=False)]
        except TypeError:
            for i, text in enumerate(texts):   # find the culprit for a clear message
                _raise_if_bad_text(text, f"texts[{i}]")
            raise

    def decode(self, ids):
        """The text of `ids`; special tokens appear as their strings ("<|endoftext|>")."""
        ids = [int(i) for i in ids]     # NumPy integers -> Python ints for the Rust side
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary "
                             f"(0..{self.vocab_size - 1})")
        return self.hf.decode(ids, skip_special_tokens=False)


def _training_texts(texts, files):
    """Yield the training strings, reading the items that are files."""
    for text in read_text_files(files or []):
        yield text
    for i, item in enumerate(texts or []):
        if isinstance(item, os.PathLike):
            yield from read_text_files([item])
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"training item {i} is a {type(item).__name__}; expected a "
                            f"str (a text) or a Path (a file)")


def _raise_if_bad_text(text, what):
    """Say clearly why the Rust side rejected a text (it only says "must be str")."""
    if not isinstance(text, str):
        raise TypeError(f"{what} is a {type(text).__name__}, expected str") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} contains the lone surrogate U+{ord(text[e.start]):04X} "
                         f"at index {e.start}, which is not valid Unicode and has no "
                         f"UTF-8 bytes to encode") from None
