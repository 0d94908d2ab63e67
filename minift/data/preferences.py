"""Preference pairs for alignment: one JSON object per line.

    {"prompt": "Write a negative review of the blender.",
     "chosen": "I hate this blender. Asking for a refund.",
     "rejected": "All in all, a superb blender."}

`prompt` is the request as a user would type it (alignment wraps it in its prompt
template), `chosen` a response that follows it and `rejected` one that does not. Other
keys are kept but not used (the built-in pairs add "kind", how the rejected response
was made). Supervised instruction tuning needs only `prompt` and `chosen`. Every
mistake names the file and the line, as a MiniftError.
"""
import json
from pathlib import Path

from ..errors import MiniftError
from ..files import atomic_write
from .text import check_text, decode_utf8, require_file

PAIR_KEYS = ("prompt", "chosen", "rejected")


def load_pairs(path, keys=PAIR_KEYS):
    """The pairs of a JSONL file as a list of dicts, each holding `keys` as non-empty strings."""
    if not Path(path).exists():
        raise MiniftError(f"preference pairs file not found: {path}")
    path = require_file(path, "preference pairs file")
    example = "{" + ", ".join(f'"{k}": "..."' for k in keys) + "}"
    pairs = []
    # Split on "\n" only: JSON allows U+2028 and other separators inside strings.
    for line_no, line in enumerate(decode_utf8(path.read_bytes(), path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MiniftError(f"{path}: line {line_no}, column {e.colno}: invalid JSON ({e.msg}); each line "
                              f"holds one object such as {example}") from None
        if not isinstance(obj, dict):
            raise MiniftError(f"{path}: line {line_no}: expected a JSON object such as {example}")
        for key in keys:
            if key not in obj:
                raise MiniftError(f"{path}: line {line_no}: no key {key!r}; each line holds {example} "
                                  f"(keys found: {sorted(obj)})")
            if not isinstance(obj[key], str) or not obj[key].strip():
                raise MiniftError(f"{path}: line {line_no}: {key!r} must be a non-empty string, found "
                                  f"{json.dumps(obj[key])[:60]}")
            check_text(obj[key], f"{path}: line {line_no}: {key!r}")
        pairs.append(obj)
    if not pairs:
        raise MiniftError(f"{path}: the file holds no pairs; each line holds {example}")
    return pairs


def write_pairs(path, pairs):
    """Write `pairs` (dicts) as JSON Lines, atomically; returns the path."""
    return atomic_write(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
