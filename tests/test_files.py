"""files.py: the safetensors reader refuses every malformed header before reading data;
atomic writes, stale temporary files, JSON reading."""
import errno
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import uuid

import numpy as np
import pytest

import minift.files
from minift.errors import MiniftError
from minift.files import (atomic_write, check_dtypes, load_safetensors, read_json, read_safetensors_header,
                          remove_stale_temp_files, save_safetensors)


def st(header, data=b""):
    """A safetensors file built by hand: 8-byte little-endian length, header, data.
    `header` is a dict (dumped as JSON), or the header's text or bytes as they are."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header)) + header + data


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


W = entry()                     # a valid F32 tensor of 2 elements: 8 bytes of data
DATA = bytes(8)
HUGE = "1" * 5000               # more digits than Python converts by default

# (case, file contents, expected substring of the message, tensor the message must name)
MALFORMED = [
    ("truncated file", b"\x10\x00\x00", "not a safetensors file", None),
    ("length past EOF", struct.pack("<Q", 100) + b"{}", "runs past the end of the file", None),
    ("absurd length", struct.pack("<Q", 2 ** 62) + b"{}", "limit", None),
    ("non-UTF-8 header", st(b'{"w\xff": 1}'), "not UTF-8", None),
    ("invalid JSON", st('{"w": '), "not valid JSON", None),
    ("too deeply nested", st("[" * 100_000), "nests too deeply", None),
    ("integer too long", st('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, %s]}}' % HUGE),
     "not usable JSON", None),
    ("repeated tensor", st('{"w": %s, "w": %s}' % (json.dumps(W), json.dumps(W)), DATA), "repeats the key 'w'",
     None),
    ("list instead of object", st("[]"), "found an array", None),
    ("metadata not an object", st({"__metadata__": ["x"], "w": W}, DATA), "__metadata__ should be a JSON object",
     None),
    ("metadata value not a string", st({"__metadata__": {"k": 1}, "w": W}, DATA), "'k' should be a string",
     None),
    ("entry not an object", st({"w": [0, 8]}, DATA), "should be a JSON object", "w"),
    ("empty name", st({"": W}, DATA), "empty name", None),
    ("missing dtype", st({"w": {"shape": [2], "data_offsets": [0, 8]}}, DATA), "missing 'dtype'", "w"),
    ("missing shape", st({"w": {"dtype": "F32", "data_offsets": [0, 8]}}, DATA), "missing 'shape'", "w"),
    ("missing data_offsets", st({"w": {"dtype": "F32", "shape": [2]}}, DATA), "missing 'data_offsets'", "w"),
    ("extra key", st({"w": {**W, "extra": 1}}, DATA), "unexpected key 'extra'", "w"),
    ("unknown dtype", st({"w": entry(dtype="F128")}, DATA), "unsupported dtype 'F128'", "w"),
    ("dtype not a string", st({"w": entry(dtype=4)}, DATA), "unsupported dtype 4", "w"),
    ("float offsets", st({"w": entry(offsets=(0.0, 8.0))}, DATA), "two non-negative integers", "w"),
    ("negative offsets", st({"w": entry(offsets=(-8, 0))}, DATA), "two non-negative integers", "w"),
    ("one offset", st({"w": entry(offsets=(8,))}, DATA), "[begin, end]", "w"),
    ("begin after end", st({"w": entry(offsets=(8, 0))}, DATA), "begin after end", "w"),
    ("bytes do not match shape", st({"w": entry(shape=(3,))}, DATA), "needs 12", "w"),
    ("relabelled to a wider dtype", st({"w": entry(dtype="F64")}, DATA), "needs 16", "w"),
    ("overlapping tensors", st({"a": W, "b": entry(offsets=(4, 12))}, bytes(12)), "overlaps tensor 'a'", "b"),
    ("gap", st({"a": W, "b": entry(offsets=(12, 20))}, bytes(20)), "belong to no tensor", "b"),
    ("trailing bytes", st({"w": W}, bytes(12)), "4 bytes after the last tensor", None),
    ("tensor past the data", st({"w": W}, bytes(4)), "runs past the end of the data", "w"),
    ("bool in shape", st({"w": entry(shape=(True, 2))}, DATA), "non-negative integers", "w"),
    ("negative shape", st({"w": entry(shape=(-2,))}, DATA), "non-negative integers", "w"),
    ("float shape", st({"w": entry(shape=(2.0,))}, DATA), "non-negative integers", "w"),
    ("shape not a list", st({"w": {**W, "shape": 2}}, DATA), "non-negative integers", "w"),
]


@pytest.mark.parametrize("blob, expected, tensor", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
@pytest.mark.parametrize("reader", [read_safetensors_header, load_safetensors])
def test_malformed_headers_are_refused_with_a_sentence(tmp_path, reader, blob, expected, tensor):
    path = tmp_path / "case.safetensors"
    path.write_bytes(blob)
    with pytest.raises(MiniftError) as caught:
        reader(path)
    message = str(caught.value)
    assert str(path) in message and expected in message
    if tensor is not None:
        assert f"'{tensor}'" in message


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        read_safetensors_header(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_safetensors(tmp_path / "missing.safetensors")


def all_dtypes():
    arrays = {}
    for code, dtype in minift.files._DTYPES.items():
        arrays[f"{code}.matrix"] = (np.arange(12) % 2).astype(dtype).reshape(3, 4)
        arrays[f"{code}.scalar"] = np.array(1, dtype=dtype)
        arrays[f"{code}.empty"] = np.zeros((0, 3), dtype=dtype)
    arrays["strided"] = np.arange(24.0).reshape(4, 6)[::2, 1::2]        # not contiguous
    arrays["transposed"] = np.arange(6, dtype=np.int16).reshape(2, 3).T
    arrays["extremes"] = np.array([np.finfo(np.float32).max, -0.0, np.inf, np.nan], dtype=np.float32)
    return arrays


def test_round_trip_all_dtypes_and_the_header_passes_validation(tmp_path):
    arrays = all_dtypes()
    path = tmp_path / "x.safetensors"
    save_safetensors(path, arrays, {"note": "hi", "n": 3})
    header, meta = read_safetensors_header(path)
    assert meta == {"note": "hi", "n": "3"}
    assert list(header) == list(arrays)
    for name, a in arrays.items():
        assert header[name][:2] == (minift.files._CODES[a.dtype], a.shape)
    loaded, meta2 = load_safetensors(path)
    assert meta2 == meta and list(loaded) == list(arrays)
    for name, a in arrays.items():
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        np.testing.assert_array_equal(loaded[name], a)
        assert loaded[name].flags.writeable and loaded[name].flags.owndata


def test_save_output_is_byte_identical_to_earlier_versions(tmp_path):
    # sha256 of what save_safetensors wrote for this input before the reader was rewritten:
    # files users already keep must keep loading, and new files must read the same elsewhere.
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], dtype=np.int64),
              "c": np.array(True), "t": np.arange(4.0)[::2], "h": np.arange(3, dtype=np.float16),
              "u": np.arange(5, dtype=np.uint8)}
    save_safetensors(tmp_path / "x.safetensors", arrays, {"note": "hi", "n": 3})
    blob = (tmp_path / "x.safetensors").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == "734733995cfae96179debbb08663132820aa8634bcd703d747ed3fd7914af771"


def test_empty_file_and_null_metadata_are_valid(tmp_path):
    save_safetensors(tmp_path / "empty.safetensors", {})
    assert load_safetensors(tmp_path / "empty.safetensors") == ({}, {})
    (tmp_path / "null.safetensors").write_bytes(st({"__metadata__": None, "w": W}, DATA))
    assert read_safetensors_header(tmp_path / "null.safetensors") == ({"w": ("F32", (2,), (0, 8))}, {})


class CountingFile:
    """Wraps an open file and counts the bytes handed to the reader."""
    def __init__(self, f):
        self.f, self.bytes_read = f, 0

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def read(self, n):
        data = self.f.read(n)
        self.bytes_read += len(data)
        return data


def test_reading_the_header_never_reads_the_data(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    save_safetensors(path, {"w": np.zeros(1 << 18, dtype=np.float32)})
    opened = []

    def counting_open(file, mode="r"):
        opened.append(CountingFile(open(file, mode, buffering=0)))   # unbuffered: no read-ahead
        return opened[-1]
    monkeypatch.setattr(minift.files, "open", counting_open, raising=False)
    read_safetensors_header(path)
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert [f.bytes_read for f in opened] == [8 + n]


def test_unexpected_dtypes_are_refused(tmp_path):
    path = tmp_path / "relabel.safetensors"
    save_safetensors(path, {"w": np.ones(2, dtype=np.float32), "step": np.array(3, dtype=np.int64)})
    # the same bytes relabelled F32 -> I32: the header cannot tell, the caller's expectation can
    path.write_bytes(path.read_bytes().replace(b'"F32"', b'"I32"'))
    header, _ = read_safetensors_header(path)
    with pytest.raises(MiniftError, match=r"relabel.safetensors: tensor 'w' is I32, expected F32 or F64"):
        load_safetensors(path, expect_dtypes={"F32", "F64"})
    with pytest.raises(MiniftError, match="tensor 'step' is I64"):
        read_safetensors_header(path, expect_dtypes={"w": "I32", "step": {"F32"}})
    check_dtypes(header, {"w": ["I32"]}, path)          # names left out are not checked


def test_bool_tensors_hold_only_zero_and_one(tmp_path):
    path = tmp_path / "b.safetensors"
    path.write_bytes(st({"mask": entry(dtype="BOOL", shape=(3,), offsets=(0, 3))}, b"\x00\x01\x02"))
    with pytest.raises(MiniftError, match="'mask' is BOOL but holds bytes other than 0 and 1"):
        load_safetensors(path)


# ---------------------------------------------------------------- atomic writes

def temp_files(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_replaces_whole_files(tmp_path):
    atomic_write(tmp_path / "f.txt", "one")
    atomic_write(tmp_path / "f.txt", b"two")
    assert (tmp_path / "f.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_write_flushes_the_file_then_its_directory(tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)
    monkeypatch.setattr(minift.files.os, "fsync", recording_fsync)
    atomic_write(tmp_path / "f.txt", "one")
    assert synced == [False, True]


def test_a_directory_that_refuses_fsync_does_not_fail_the_write(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def refusing_fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)
    monkeypatch.setattr(minift.files.os, "fsync", refusing_fsync)
    atomic_write(tmp_path / "f.txt", "one")
    assert (tmp_path / "f.txt").read_text() == "one"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EIO])
def test_a_failed_write_keeps_the_old_file_and_its_error(tmp_path, monkeypatch, code):
    atomic_write(tmp_path / "f.txt", "old")

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(minift.files.os, "fsync", failing_fsync)
    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "f.txt", "new")
    assert caught.value.errno == code
    monkeypatch.undo()
    assert (tmp_path / "f.txt").read_text() == "old" and temp_files(tmp_path) == []


def test_the_original_error_survives_a_failed_cleanup(tmp_path, monkeypatch):
    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def unlink_refused(self, missing_ok=False):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(minift.files.os, "fsync", full_disk)
    monkeypatch.setattr(minift.files.Path, "unlink", unlink_refused)
    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "f.txt", "new")
    assert caught.value.errno == errno.ENOSPC


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = dead_pid()
    stale = f".model.safetensors.{dead}.{uuid.uuid4().hex}.tmp"
    live = f".model.safetensors.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    others = ["model.safetensors", ".x.tmp", f".a.{dead}.not-hex.tmp", f"a.{dead}.{uuid.uuid4().hex}.tmp",
              f".a.{dead}.{uuid.uuid4().hex}.tmp.bak"]
    for name in [stale, live, *others]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / f".d.{dead}.{uuid.uuid4().hex}.tmp").mkdir()          # not a file: kept
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not (tmp_path / stale).exists() and (tmp_path / live).exists()
    assert all((tmp_path / name).exists() for name in others)
    assert remove_stale_temp_files(tmp_path) == []


def test_a_writer_owned_by_another_user_counts_as_alive(tmp_path, monkeypatch):
    name = f".f.txt.{dead_pid()}.{uuid.uuid4().hex}.tmp"
    (tmp_path / name).write_bytes(b"x")

    def not_permitted(pid, sig):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(minift.files.os, "kill", not_permitted)
    assert remove_stale_temp_files(tmp_path) == [] and (tmp_path / name).exists()


# ---------------------------------------------------------------- JSON

def test_read_json_errors_name_the_file(tmp_path):
    (tmp_path / "bad.json").write_text('{"a": 1,}')
    with pytest.raises(MiniftError, match=r"bad.json: invalid JSON at line 1"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(MiniftError, match="latin1.json: not UTF-8"):
        read_json(tmp_path / "latin1.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(MiniftError, match="list.json: expected a JSON object, found an array"):
        read_json(tmp_path / "list.json", expect=dict)
    assert read_json(tmp_path / "list.json") == [1, 2]
    with pytest.raises(FileNotFoundError, match="run configuration not found: .*nope.json"):
        read_json(tmp_path / "nope.json", what="run configuration")
    write_and_read = tmp_path / "ok.json"
    minift.files.write_json(write_and_read, {"a": [1, "é"]})
    assert read_json(write_and_read, expect=dict) == {"a": [1, "é"]}
