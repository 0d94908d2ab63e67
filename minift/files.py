"""Files a user keeps: safetensors weights, JSON, atomic writes. Never pickle.

A run directory holds
    config.json          model configuration (+ what kind of run it is)
    tokenizer.json       the tokenizer, HF tokenizers format
    model.safetensors    the weights, GPT-2 parameter names, host arrays
    checkpoint.safetensors  weights + optimizer state + step/RNG state, for --resume
    metrics.json         loss history and evaluation results

The safetensors format is simple enough to write by hand: an 8-byte little-endian
header length, a JSON header mapping each name to dtype, shape and byte offsets, then
the raw little-endian bytes of every array. Loading it cannot run code.
"""
import json
import os
import struct
import uuid
from pathlib import Path

import numpy as np

from .backend import to_numpy

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
           "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def atomic_write(path, data):
    """Write `data` (bytes, str, or any buffer such as a NumPy array) to `path` so that
    readers see the old file or the new one, never half of one: the data goes to a
    temporary file in the same directory (os.replace is atomic only within one file
    system), is flushed to disk, then renamed over `path`. Returns `path` as a Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path, what="file"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def save_safetensors(path, arrays, metadata=None):
    """Write a dict name -> array (NumPy or CuPy; copied to the host) atomically.
    `metadata` is a dict of strings stored in the header."""
    header, chunks, offset = {}, [], 0
    for name, array in arrays.items():
        a = np.asarray(to_numpy(array), order="C")   # (ascontiguousarray would make 0-d arrays 1-d)
        if a.dtype not in _CODES:
            raise TypeError(f"save_safetensors: {name} has unsupported dtype {a.dtype}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)          # pad so the data starts 8-byte aligned
    atomic_write(path, struct.pack("<Q", len(text)) + text + b"".join(chunks))


def load_safetensors(path):
    """Read a safetensors file -> (dict name -> NumPy array, metadata dict).
    Every malformed part raises ValueError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    blob = path.read_bytes()
    if len(blob) < 8:
        raise ValueError(f"{path}: not a safetensors file (only {len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable safetensors header ({e})") from None
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(blob)[8 + n:]
    arrays = {}
    for name, info in header.items():
        code, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if code not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {code}")
        dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
        if end - begin != int(np.prod(shape)) * dtype.itemsize or end > len(data):
            raise ValueError(f"{path}: tensor {name} has byte range [{begin}, {end}) that does not match "
                             f"shape {shape} of {code} or the file size")
        arrays[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return arrays, metadata
