"""Reading text: strict UTF-8 files, and splitting text into documents.

Every file minift reads as text (corpora, labeled data, tokenizer.json) goes through
`decode_utf8`, so a bad byte is reported the same way everywhere: file, line, column
and byte offset, with the way to fix it.
"""
import codecs
import json
import os
import re
import stat
from pathlib import Path

from ..errors import MiniftError

__all__ = ["check_text", "decode_utf8", "read_text_files", "require_file", "split_documents", "tabular_format"]

TABULAR_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
# A header row: two or more bare (or double-quoted) column names, such as `text,label`.
# Prose puts a space after its commas, so "Hello, world" is not one.
_HEADER_NAME = re.compile(r'"?[A-Za-z_][A-Za-z0-9_.-]{0,63}"?')


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
            f"UTF-8; {_how_to_convert(data)}"
        ) from None


def _how_to_convert(data):
    """The likely encoding of bytes that are not UTF-8, and how to convert them: UTF-16
    (a byte-order mark, or a zero byte beside most ASCII characters), else a single-byte
    code page such as Latin-1."""
    sample = data[:4096]
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or sample.count(0) > len(sample) // 4:
        return "the file looks like UTF-16: convert it with `iconv -f utf-16 -t utf-8` (or re-save it as UTF-8)."
    return ("re-save the file as UTF-8; if it is Latin-1 or Windows-1252, `iconv -f latin1 -t utf-8` converts "
            "it.")


def check_text(text, where):
    """`text` itself, after checking it holds only real characters. A string can hold
    half of a UTF-16 surrogate pair (JSON's "\\ud800" escape without its partner), or,
    from the command line, stand-ins for bytes that were not UTF-8 (Python keeps them as
    U+DC80..U+DCFF): neither can be encoded, so the tokenizer would fail on it. One
    MiniftError names `where` (a file and line, or a flag) and the character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        what = f"the byte 0x{code - 0xDC00:02x}, which is not UTF-8" if 0xDC80 <= code <= 0xDCFF else \
            f"U+{code:04X}, half of a UTF-16 surrogate pair (an escape such as \\ud800 without its partner)"
        raise MiniftError(f"{where}: character {e.start + 1} of the text is {what}; give the text as UTF-8")
    return text


def require_file(path, what="file"):
    """`path` as a Path, after checking it is a regular file: a missing one is
    FileNotFoundError naming `what`; a FIFO, a pipe, a device or a directory is one
    MiniftError (minift reads a file whole, and hashes it to notice changes)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO or pipe" if stat.S_ISFIFO(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else \
            "not a regular file"
        raise MiniftError(f"{path} is {kind}, not a regular file; minift reads a {what} whole and hashes it to "
                          f"notice changes: save the data to a file first")
    return path


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
        p = require_file(p, "text file")
        text = decode_utf8(p.read_bytes(), p)
        texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    return texts


def split_documents(text):
    """Split `text` into documents at blank lines (lines holding only whitespace).

    Each document is stripped of surrounding whitespace; empty documents are dropped.
    "a\\nb\\n\\nc" -> ["a\\nb", "c"].
    """
    return [doc.strip() for doc in re.split(r"\n[ \t\f\v]*\n", text) if doc.strip()]


def tabular_format(path, text):
    """"csv", "tsv" or "jsonl" when the file `path` holding `text` is a table rather than
    prose, else None. Conservative, since a corpus of prose must never be mistaken for
    one: the extension (.csv, .tsv, .jsonl, .json), or a first line that is a header of
    two or more bare column names separated by tabs or commas (`text,label`), or a
    first line that is a JSON object."""
    by_extension = TABULAR_EXTENSIONS.get(Path(path).suffix.lower())
    if by_extension:
        return by_extension
    first = next((line.strip() for line in text.split("\n", 20)[:20] if line.strip()), "")
    for delimiter, fmt in (("\t", "tsv"), (",", "csv")):
        names = first.split(delimiter)
        if len(names) >= 2 and all(_HEADER_NAME.fullmatch(name) for name in names):
            return fmt
    if first.startswith("{") and first.endswith("}"):
        try:
            return "jsonl" if isinstance(json.loads(first), dict) else None
        except ValueError:
            return None
    return None
