"""Files a user keeps: safetensors weights, JSON, atomic writes. Never pickle.

A run directory holds
    config.json          model configuration (+ what kind of run it is)
    tokenizer.json       the tokenizer, HF tokenizers format
    model.safetensors    the weights, GPT-2 parameter names, host arrays
    checkpoint.safetensors  weights + optimizer state + step/RNG state, for --resume
    metrics.json         loss history and evaluation results

The safetensors format is simple enough to write by hand: an 8-byte little-endian
header length, a JSON header mapping each name to dtype, shape and byte offsets, then
the raw little-endian bytes of every array. Loading it cannot run code, and the reader
checks the whole header before it reads a byte of data, so a damaged or tampered file
is refused with one `MiniftError` sentence instead of loading the wrong weights.
"""
import errno
import hashlib
import json
import math
import os
import re
import struct
import uuid
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .errors import MiniftError

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
           "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_ENTRY_KEYS = ("dtype", "shape", "data_offsets")

# The same bound as the reference safetensors reader: a real header is a few hundred
# bytes per tensor, so anything larger is damage or an attempt to exhaust memory.
MAX_HEADER_BYTES = 100_000_000
MAX_DIMENSION = 2**40     # far past any real tensor's axis; NumPy refuses sizes near 2**63

# What atomic_write names its temporary files: .{name}.{pid}.{uuid4 hex}.tmp
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[1-9][0-9]{0,9})\.[0-9a-f]{32}\.tmp")


# ---------------------------------------------------------------- atomic writes

def atomic_write(path, data):
    """Write `data` (bytes, str, any buffer such as a NumPy array, or a list of such pieces,
    written one after another without joining them into one copy) to `path` so that
    readers see the old file or the new one, never half of one: the data goes to a
    temporary file in the same directory (os.replace is atomic only within one file
    system), is flushed to disk, then renamed over `path`, and the directory is flushed
    so that the rename itself survives a power cut. Returns `path` as a Path.

    If writing fails (disk full, a file-size limit, permission denied) the temporary
    file is removed and an OSError naming `path` is raised (the system's own error names
    no file for a full disk, which it meets writing to an open descriptor, and the
    temporary file for a failed rename). A process
    killed before the rename leaves its temporary file behind; `remove_stale_temp_files`
    clears those."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    pieces = data if isinstance(data, list) else [data]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            for piece in pieces:
                f.write(piece.encode("utf-8") if isinstance(piece, str) else piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass    # the caller needs the error that stopped the write, not this one
        if isinstance(e, OSError) and e.filename != str(path):    # none, or the temporary file's
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    _fsync_directory(path.parent)
    return path


def resolved(path):
    """The absolute path of `path`, symbolic links followed, as a string; a link that
    loops back on itself is one MiniftError naming the path (Path.resolve raises
    RuntimeError or OSError there, depending on the Python version)."""
    try:
        return str(Path(path).resolve())
    except (RuntimeError, OSError) as e:
        raise MiniftError(f"{path}: cannot follow this path ({e}); a symbolic link loops back on itself") from None


def file_sha256(path):
    """The sha256 of a file's bytes (read a megabyte at a time), as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_directory(directory):
    """Make a rename in `directory` durable. Some platforms and file systems refuse to
    open or fsync a directory; the new file is already in place and visible, so only
    durability across a power cut is lost there, and a write must not fail for it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(directory):
    """Delete the temporary files that `atomic_write` left in `directory` when its
    process died before renaming them, and return their names (sorted).

    Only names of the exact form `.{name}.{pid}.{32 hex digits}.tmp` are considered,
    and only when no process with that pid exists now; a file whose writer may still be
    running is kept. The pid is checked on this machine only: do not call this on a
    directory that processes on other machines (or in other pid namespaces) write to."""
    if os.name == "nt":
        return []     # os.kill(pid, 0) terminates the process on Windows
    removed = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _TEMP_NAME.fullmatch(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            if _pid_alive(int(match["pid"])):
                continue
            Path(entry.path).unlink(missing_ok=True)   # another cleaner may have been first
            removed.append(entry.name)
    return sorted(removed)


def _pid_alive(pid):
    """Whether a process with this pid exists (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True       # it exists and belongs to another user
    except (OverflowError, OSError):
        return True       # cannot tell: keeping a file is the safe mistake
    return True


# ---------------------------------------------------------------- JSON

_JSON_NOUNS = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def _json_kind(value):
    """How a JSON value is named in an error: "an array", "a number", "null"."""
    noun = _JSON_NOUNS.get(type(value), type(value).__name__)
    return noun if noun == "null" else ("an " if noun[0] in "aeiou" else "a ") + noun


def write_json(path, obj):
    """Write `obj` as strict JSON, atomically: a float that is not finite (NaN, inf: a
    loss that diverged, a metric with nothing to average) is written as null, since
    JSON has no such numbers and other tools refuse Python's `NaN`."""
    atomic_write(path, json.dumps(_finite_or_null(obj), indent=2, allow_nan=False) + "\n")


def _finite_or_null(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def read_json(path, what="file", expect=None):
    """Read a JSON file. A missing file is FileNotFoundError naming `what`; bytes that
    are not UTF-8 or not JSON, or (with `expect=dict` or `list`) a top-level value of
    another kind, are MiniftError naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise MiniftError(f"{path}: not UTF-8 text (invalid byte at offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise MiniftError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if expect is not None and not isinstance(value, expect):
        raise MiniftError(f"{path}: expected a JSON {_JSON_NOUNS[expect]}, found {_json_kind(value)}")
    return value


# ---------------------------------------------------------------- safetensors

def save_safetensors(path, arrays, metadata=None):
    """Write a dict name -> array (NumPy or CuPy; copied to the host) atomically.
    `metadata` is a dict of strings stored in the header. The arrays' own memory is
    written (no bytes copy of each, nor of the whole file: GPT-2's weights are 500 MB)."""
    header, chunks, offset = {}, [], 0
    for name, array in arrays.items():
        a = np.asarray(to_numpy(array), order="C")   # (ascontiguousarray would make 0-d arrays 1-d)
        if a.dtype not in _CODES:
            raise TypeError(f"save_safetensors: {name} has unsupported dtype {a.dtype}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8)   # a view when C order
        header[name] = {"dtype": _CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + raw.size]}
        chunks.append(raw)
        offset += raw.size
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)          # pad so the data starts 8-byte aligned
    atomic_write(path, [struct.pack("<Q", len(text)) + text, *chunks])


def read_safetensors_header(path, expect_dtypes=None):
    """Read and check the header of a safetensors file without reading its data, so a
    caller can compare names and shapes with a configuration before allocating anything.

    Returns (header, metadata): header maps each tensor name to
    (dtype code such as "F32", shape tuple, (begin, end) byte offsets into the data),
    in the file's order; metadata is a dict of strings ({} when absent).

    Everything the header says is checked: the header length (within the file and at
    most MAX_HEADER_BYTES), UTF-8 JSON holding an object without repeated keys, an
    optional "__metadata__" object of strings, and for each tensor a non-empty name and
    exactly the keys dtype (a known code), shape (non-negative integers) and
    data_offsets (two non-negative integers, begin <= end) whose byte count is
    prod(shape) * itemsize. Taken in order of their offsets, the tensors must cover the
    data section exactly, from 0 to the end of the file, without overlap, gap or
    leftover bytes: that catches a dtype relabelled to one of another size and most
    tampering. A relabel to a dtype of the same size (F32 <-> I32) cannot be seen in
    the header; a loader passes `expect_dtypes` (see `check_dtypes`) to refuse, say,
    an I32 tensor where a float weight belongs.

    A missing file is FileNotFoundError; every other problem is MiniftError naming the
    file, the tensor where there is one, and what was expected."""
    with _open_safetensors(path) as f:
        header, metadata, _ = _read_header(f, path)
    if expect_dtypes is not None:
        check_dtypes(header, expect_dtypes, path)
    return header, metadata


def check_dtypes(header, allowed, path):
    """Refuse tensors whose dtype the caller does not expect. `header` is what
    read_safetensors_header returns; `allowed` is a collection of dtype codes that
    every tensor must use (e.g. {"F32", "F64"} for weights), or a dict from tensor name
    to such a collection (names it leaves out are not checked). Raises MiniftError
    naming the file and the tensor."""
    for name, (code, _, _) in header.items():
        codes = allowed.get(name) if isinstance(allowed, dict) else allowed
        if codes is None:
            continue
        codes = {codes} if isinstance(codes, str) else set(codes)
        if code not in codes:
            raise MiniftError(f"{path}: tensor '{name}' is {code}, expected {' or '.join(sorted(codes))}")


def load_safetensors(path, expect_dtypes=None, finite=False):
    """Read a safetensors file -> (dict name -> NumPy array, metadata dict).
    The header is checked first, entirely (see read_safetensors_header, which also
    explains `expect_dtypes`); the arrays are then read in file order, straight into
    their own memory. With finite=True (weights and checkpoints) every float must be
    finite: minift never writes NaN or inf (training stops first), so one is damage,
    and a model would compute NaN from it without a word. Every problem is
    MiniftError naming the file and the tensor, except a missing file, which is
    FileNotFoundError."""
    with _open_safetensors(path) as f:
        header, metadata, data_start = _read_header(f, path)
        if expect_dtypes is not None:
            check_dtypes(header, expect_dtypes, path)
        arrays = {}
        for name, (code, shape, (begin, end)) in sorted(header.items(), key=lambda item: item[1][2]):
            arrays[name] = _read_array(f, path, name, code, shape, data_start + begin, end - begin)
            if finite and arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
                bad = int((~np.isfinite(arrays[name])).sum())
                raise MiniftError(f"{path}: tensor '{name}' holds {bad} value(s) that are not finite (NaN or "
                                  f"inf); the file is damaged or was written by something other than minift")
    return {name: arrays[name] for name in header}, metadata


def _open_safetensors(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file not found: {path}") from None


def _read_array(f, path, name, code, shape, start, nbytes):
    """Read one tensor's bytes from `f` straight into a new array (no intermediate copy)."""
    stored = np.dtype(_DTYPES[code]).newbyteorder("<")
    array = np.empty(shape, dtype=stored)
    f.seek(start)
    if f.readinto(array.reshape(-1).view(np.uint8)) != nbytes:
        raise MiniftError(f"{path}: tensor '{name}' is cut short: the file shrank while it was read")
    if code == "BOOL" and array.view(np.uint8).max(initial=0) > 1:
        # NumPy would keep such bytes as booleans that are neither True nor False.
        raise MiniftError(f"{path}: tensor '{name}' is BOOL but holds bytes other than 0 and 1")
    return array.astype(stored.newbyteorder("="), copy=False)


def _read_header(f, path):
    """Read and check the header from an open safetensors file.
    Returns (header, metadata, offset where the data section starts)."""
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(8)
    if len(prefix) < 8:
        raise MiniftError(f"{path}: not a safetensors file (only {size} bytes; "
                          f"expected an 8-byte header length first)")
    (n,) = struct.unpack("<Q", prefix)
    if n > MAX_HEADER_BYTES:
        raise MiniftError(f"{path}: header length {n} bytes is beyond the {MAX_HEADER_BYTES}-byte "
                          f"limit (not a safetensors file, or a damaged one)")
    if 8 + n > size:
        raise MiniftError(f"{path}: header length {n} runs past the end of the file ({size} bytes)")
    raw = f.read(n)
    if len(raw) != n:
        raise MiniftError(f"{path}: header is cut short: the file shrank while it was read")
    entries = _parse_header_json(path, raw)
    metadata = _check_metadata(path, entries.pop("__metadata__", None))
    header = {name: _check_entry(path, name, info) for name, info in entries.items()}
    _check_layout(path, header, size - 8 - n)
    return header, metadata, 8 + n


def _parse_header_json(path, raw):
    """bytes -> dict, refusing non-UTF-8, invalid JSON, repeated keys and non-objects."""
    def no_repeats(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:   # json.loads would keep the last one silently
                raise MiniftError(f"{path}: safetensors header repeats the key '{key}'")
            seen.add(key)
        return dict(pairs)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MiniftError(f"{path}: safetensors header is not UTF-8 (invalid byte at offset {8 + e.start})") from None
    try:
        entries = json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as e:
        raise MiniftError(f"{path}: safetensors header is not valid JSON "
                          f"(line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise MiniftError(f"{path}: safetensors header nests too deeply to be a header") from None
    except MiniftError:         # a repeated key, found by no_repeats
        raise
    except ValueError as e:     # e.g. an integer of thousands of digits
        raise MiniftError(f"{path}: safetensors header is not usable JSON ({e})") from None
    if not isinstance(entries, dict):
        raise MiniftError(f"{path}: safetensors header should be a JSON object, found {_json_kind(entries)}")
    return entries


def _check_metadata(path, metadata):
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise MiniftError(f"{path}: __metadata__ should be a JSON object of strings, found {_json_kind(metadata)}")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise MiniftError(f"{path}: __metadata__ value of '{key}' should be a string, found {_json_kind(value)}")
    return metadata


def _is_count(value):
    """A non-negative JSON integer (bool is an int subclass in Python; refuse it)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(path, name, info):
    """One tensor's header entry -> (code, shape tuple, (begin, end)), or MiniftError."""
    where = f"{path}: tensor '{name}'"
    if name == "":
        raise MiniftError(f"{path}: a tensor has an empty name")
    if not isinstance(info, dict):
        raise MiniftError(f"{where} should be a JSON object with dtype, shape and data_offsets, "
                          f"found {_json_kind(info)}")
    missing = [key for key in _ENTRY_KEYS if key not in info]
    extra = [key for key in info if key not in _ENTRY_KEYS]
    if missing or extra:
        problem = f"is missing '{missing[0]}'" if missing else f"has an unexpected key '{extra[0]}'"
        raise MiniftError(f"{where} {problem} (expected exactly dtype, shape and data_offsets)")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in _DTYPES:
        raise MiniftError(f"{where} has unsupported dtype {code!r} (expected one of {', '.join(_DTYPES)})")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise MiniftError(f"{where} has shape {json.dumps(shape)}; expected a list of non-negative integers")
    if any(d > MAX_DIMENSION for d in shape):
        raise MiniftError(f"{where} has shape {json.dumps(shape)}: an axis longer than {MAX_DIMENSION:,} "
                          f"(2**40), which no real tensor has")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise MiniftError(f"{where} has data_offsets {json.dumps(offsets)}; "
                          f"expected [begin, end], two non-negative integers")
    begin, end = offsets
    if begin > end:
        raise MiniftError(f"{where} has data_offsets [{begin}, {end}] with begin after end")
    nbytes = math.prod(shape) * np.dtype(_DTYPES[code]).itemsize
    if end - begin != nbytes:
        raise MiniftError(f"{where} spans {end - begin} bytes, but shape {shape} of {code} "
                          f"needs {nbytes}")
    return code, tuple(shape), (begin, end)


def _check_layout(path, header, data_size):
    """The tensors, in order of their offsets, must tile the data section exactly."""
    position, previous = 0, None
    for name, (_, _, (begin, end)) in sorted(header.items(), key=lambda item: item[1][2]):
        if begin < position:
            raise MiniftError(f"{path}: tensor '{name}' at bytes [{begin}, {end}) overlaps "
                              f"tensor '{previous}', which ends at {position}")
        if begin > position:
            raise MiniftError(f"{path}: {begin - position} bytes before tensor '{name}' belong to "
                              f"no tensor (expected it to start at {position})")
        if end > data_size:
            raise MiniftError(f"{path}: tensor '{name}' at bytes [{begin}, {end}) runs past the end "
                              f"of the data ({data_size} bytes)")
        position, previous = end, name
    if position != data_size:
        raise MiniftError(f"{path}: {data_size - position} bytes after the last tensor belong to "
                          f"no tensor (expected the data to end at {position})")
