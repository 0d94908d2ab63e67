"""Reading text: strict UTF-8 files, and splitting text into documents.

Every file minift reads as text (corpora, labeled data, tokenizer.json) goes through
`decode_utf8`, so a bad byte is reported the same way everywhere: file, line, column
and byte offset, with the way to fix it.
"""
import codecs
import os
import re
from pathlib import Path

from ..errors import MiniftError

__all__ = ["decode_utf8", "read_text_files", "split_documents"]


def decode_utf8(data, source):
    """Decode `data` (bytes) as UTF-8, dropping a leading byte-order mark if present.

    Invalid bytes raise a MiniftError naming `source` (the file), the line, the column
    (in characters) and the byte offset, so the user can find and fix them.
    """
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = start + e.start                       # offset in the file, BOM included
        line_start = data.rfind(b"\n", 0, offset) + 1
        line = data.count(b"\n", 0, offset) + 1
        # Everything before the first bad byte is valid UTF-8, so it can be decoded to
        # count characters: editors show columns in characters, not bytes.
        column = len(data[max(line_start, start):offset].decode("utf-8")) + 1
        bad = data[offset:offset + (e.end - e.start)]
        raise MiniftError(
            f"{source}: line {line}, column {column} (byte offset {offset}): "
            f"bytes {bad!r} are not valid UTF-8 ({e.reason}). minift reads text as "
            f"UTF-8; re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def read_text_files(paths):
    """Read UTF-8 text files; one string per file, in the order given.

    `paths` is a list of paths (a single str or Path is accepted too). Line endings are
    normalised to "\\n" (as Python's text mode does), so a corpus hashes and tokenizes
    the same on every OS. Undecodable bytes raise a MiniftError naming the file, line,
    column and byte offset; a missing file raises FileNotFoundError.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    texts = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"text file not found: {p}")
        text = decode_utf8(p.read_bytes(), p)
        texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    return texts


def split_documents(text):
    """Split `text` into documents at blank lines (lines holding only whitespace).

    Each document is stripped of surrounding whitespace; empty documents are dropped.
    "a\\nb\\n\\nc" -> ["a\\nb", "c"].
    """
    return [doc.strip() for doc in re.split(r"\n[ \t\f\v]*\n", text) if doc.strip()]
