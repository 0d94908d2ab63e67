"""A run directory: the files one training run keeps, who may write them, and in what order.

    runs/small/
        config.json              what the run is (kind, model, recipe, data): written once, at the start
        tokenizer.json           the tokenizer (HF tokenizers format)
        checkpoint.safetensors   weights + optimizer state + step + sampler state + history (for --resume)
        model.safetensors        the weights alone, GPT-2 parameter names: what a user keeps
        metrics.json             loss history and evaluations; "finished": true once the run is done
        tokens.bin, tokens.json  pretraining's token cache (rebuilt whenever it is stale)

What a `RunDir` guarantees:
- One process at a time. `lock()` takes an OS lock on the directory itself (flock); a second
  command on the same directory fails at once with a sentence naming the holder. The kernel
  drops the lock when its process dies, however it dies, so a crash never leaves it stuck.
- Every file is written atomically (files.atomic_write). config.json is written once and never
  changes. At each checkpoint the order is: checkpoint, then weights, then metrics, each
  recording its step. The checkpoint is the truth: if a crash falls between two of these
  writes, `repair()` (run by every resume) rewrites the others from it.
- A run is finished only when metrics.json says so, and metrics.json is always written last.
- Nothing is unpickled: weights are safetensors, everything else JSON.
"""
import dataclasses
import json
import os
import shutil
import time
import typing
from pathlib import Path

from .backend import get_cupy
from .data import Tokenizer
from .errors import MiniftError
from .files import (
    file_sha256, load_safetensors, read_json, read_safetensors_header, remove_stale_temp_files,
    save_safetensors, write_json,
)
from .model import GPTConfig

try:
    import fcntl
except ImportError:          # Windows: no flock; runs are then not protected against a second writer
    fcntl = None

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
FLOAT_DTYPES = ("F16", "F32", "F64")   # every tensor of weights and checkpoints is a float: an I32 is tampering
OWNER = ".owner"             # who holds the lock (pid, command, time): only read to name the holder
PRETRAINED_KINDS = ("pretrain",)
FINETUNED_KINDS = ("classifier", "instruct", "prompt", "bow")
ALIGNED_KINDS = ("sft", "dpo")          # written by `align`
LANGUAGE_MODEL_KINDS = ("pretrain", "instruct", "prompt") + ALIGNED_KINDS   # runs whose model has its LM head


class RunDir:
    """The run directory at `path`. Reading needs nothing; writing needs `lock()` first:

        with RunDir("runs/small").lock("pretrain"):   # fails at once if another process holds it
            ...
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd = None
        self._made_dir = False

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def file(self, name):
        return self.path / name

    # -- ownership -----------------------------------------------------------------------
    def lock(self, command="minift"):
        """Own the directory (creating it if needed) until `unlock()` or the end of a `with`."""
        if self._lock_fd is not None:
            return self
        if self.path.exists() and not self.path.is_dir():
            raise MiniftError(f"{self.path} is a file, not a run directory; choose another --out")
        self._made_dir = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise MiniftError(f"{self.path} is in use by another minift process ({self._holder()}); "
                                  f"wait for it to finish, or choose another directory") from None
        self._lock_fd = fd
        try:
            # Only read to name the holder, so a plain write (no fsync) will do.
            self.file(OWNER).write_text(f"pid {os.getpid()} running `minift {command}` since "
                                        f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")
            remove_stale_temp_files(self.path)      # temp files of writers killed mid-write
        except BaseException:
            self.unlock(remove_if_unused=True)
            raise
        return self

    def in_use(self):
        """Who holds this directory's lock (the .owner line), or None when no process
        does: a reader can tell a run that stopped from one still being written."""
        if fcntl is None or not self.path.is_dir():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._holder()
        finally:
            os.close(fd)                        # (releases the lock if it was taken)
        return None

    def _holder(self):
        try:
            return self.file(OWNER).read_text(encoding="utf-8").strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def unlock(self, remove_if_unused=False):
        """Give the directory up. With remove_if_unused, a directory this lock created and
        in which nothing was written is removed again (a command that failed its checks
        leaves nothing behind). A directory left with files but no run (a failure between
        tokenizer.json and config.json) keeps its .owner: the mark that minift wrote them,
        so that the run may start there again (`require_unused`)."""
        if self._lock_fd is None:
            return
        if self.holds_run() or not [p for p in self.path.iterdir() if p.name != OWNER]:
            self.file(OWNER).unlink(missing_ok=True)
        if remove_if_unused and self._made_dir:
            try:
                self.path.rmdir()               # only succeeds when empty
            except OSError:
                pass
        os.close(self._lock_fd)                 # closing the descriptor releases the flock
        self._lock_fd = None

    def __enter__(self):
        return self.lock()

    def __exit__(self, exc_type, exc, tb):
        self.unlock(remove_if_unused=exc_type is not None)

    def _require_lock(self):
        if self._lock_fd is None:
            raise RuntimeError(f"{self}: writing needs the lock (use `with run.lock(): ...`)")

    # -- what the directory holds ---------------------------------------------------------
    def holds_run(self):
        """True when a run was started here: config.json marks a run, written (right after
        tokenizer.json) once everything the run needs has been checked."""
        return self.file(CONFIG).exists()

    def require_new(self, flag="--out"):
        if self.holds_run():
            raise MiniftError(f"{self.path} already holds a run; continue it with --resume, "
                              f"or choose another {flag}")

    def require_unused(self, flag="--out"):
        """Refuse to start a run in a directory that holds files minift did not write: a
        new run goes into a new or empty directory, or one that a minift command left
        before its run was written (its .owner marks it). A user's folder that happens
        to hold a metrics.json is never written into."""
        if not self.path.is_dir() or self.holds_run() or self.file(OWNER).exists():
            return
        found = sorted(p.name for p in self.path.iterdir())
        if found:
            raise MiniftError(f"{self.path} is not empty ({len(found)} entries, such as {found[0]!r}) and holds no "
                              f"minift run; a run starts only in a new or empty directory: choose another {flag}")

    def remove(self, kinds):
        """Delete this run directory, but only when it holds a run of one of `kinds` (the
        demos rebuild their fine-tuned runs this way) and no other process is using it."""
        if not self.path.exists():
            return
        cfg = self.read_config(kinds, command="replacing it") if self.holds_run() else None
        if cfg is None and any(self.path.iterdir()):
            raise MiniftError(f"{self.path} exists and holds no run; not deleting it (choose another directory)")
        with self.lock("remove"):
            for item in self.path.iterdir():
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        self.path.rmdir()

    def require_run(self):
        if not self.path.is_dir():
            raise MiniftError(f"run directory not found: {self.path}")
        if not self.holds_run():
            raise MiniftError(f"{self.path} holds no run (no {CONFIG}); start one without --resume")

    # -- config and tokenizer ------------------------------------------------------------------
    def read_config(self, kinds=None, command=None):
        """config.json as a dict, with its kind checked against `kinds` (a tuple) and its
        model section validated (types and sizes) before anything is built from it."""
        self.require_run()
        path = self.file(CONFIG)
        cfg = read_json(path, what="run configuration", expect=dict)
        kind = cfg.get("kind")
        if kind not in PRETRAINED_KINDS + FINETUNED_KINDS + ALIGNED_KINDS:
            raise MiniftError(f"{path}: unknown run kind {json.dumps(kind)}; a minift run is one of "
                              f"{list(PRETRAINED_KINDS + FINETUNED_KINDS + ALIGNED_KINDS)}")
        if kinds is not None and kind not in kinds:
            what = "a pretraining run" if kinds == PRETRAINED_KINDS else \
                "a fine-tuned run" if kinds == FINETUNED_KINDS else f"a run of kind {' or '.join(kinds)}"
            raise MiniftError(f"{self.path} holds a {kind!r} run; {command or 'this command'} needs {what}")
        cfg["model"] = model_config_from_json(cfg.get("model"), path)
        return cfg

    def write_config(self, cfg):
        """Write config.json (a dict whose "model" may be a GPTConfig). Once per run."""
        self._require_lock()
        cfg = dict(cfg)
        if isinstance(cfg.get("model"), GPTConfig):
            cfg["model"] = cfg["model"].to_dict()
        write_json(self.file(CONFIG), cfg)

    def save_tokenizer(self, tokenizer):
        self._require_lock()
        tokenizer.save(self.file(TOKENIZER))

    def load_tokenizer(self, cfg):
        """The run's tokenizer, checked against the fingerprint config.json recorded."""
        path = self.file(TOKENIZER)
        if not path.is_file():
            raise MiniftError(f"{self.path}: {TOKENIZER} is missing")
        try:
            tokenizer = Tokenizer.load(path)
        except ValueError as e:
            raise MiniftError(str(e)) from None
        expected = cfg.get("tokenizer_fingerprint")
        if expected is not None and tokenizer.fingerprint() != expected:
            raise MiniftError(f"{path} does not match the tokenizer this run was trained with "
                              f"(its fingerprint differs from {CONFIG})")
        if tokenizer.vocab_size != cfg["model"].vocab_size:
            raise MiniftError(f"{path} has {tokenizer.vocab_size} tokens but the model in {CONFIG} was "
                              f"built for {cfg['model'].vocab_size}")
        return tokenizer

    # -- weights ---------------------------------------------------------------------------------
    def load_weights(self, model):
        """Load model.safetensors into `model` (call check_weights before building it)."""
        path = self.file(WEIGHTS)
        arrays, _ = load_safetensors(path, expect_dtypes=FLOAT_DTYPES, finite=True)
        try:
            model.load_state_dict(arrays)
        except KeyError as e:        # load_state_dict lists every problem, one per line: make it one line
            problems = e.args[0].replace("load_state_dict failed:\n  ", "").replace("\n  ", "; ")
            raise MiniftError(f"{path} does not fit the model in {CONFIG}: {problems}") from None

    def check_weights(self, config):
        """Check model.safetensors' header against the model configuration `config`
        without reading any data: a wrong config.json cannot make minift allocate a
        model the file does not hold."""
        header, _ = read_safetensors_header(self.file(WEIGHTS), expect_dtypes=FLOAT_DTYPES)
        check_weights_fit(config, header, self.file(WEIGHTS))

    def save_weights(self, state, step):
        """model.safetensors: the weights alone, with the step they belong to."""
        self._require_lock()
        meta = {"minift": json.dumps({"step": int(step)})}
        save_safetensors(self.file(WEIGHTS), state, meta)

    def weights_step(self):
        """The step recorded in model.safetensors (None if absent or written before minift kept it)."""
        return _recorded_step(self.file(WEIGHTS))

    # -- checkpoints and metrics --------------------------------------------------------------
    def save_checkpoint(self, step, model_state, optimizer_state, extra, history):
        """Write checkpoint, weights and metrics of `step`, in that order (see the module
        docstring). `optimizer_state` is Optimizer.state_dict(); `extra` JSON data."""
        self._require_lock()
        arrays = {f"model.{k}": v for k, v in model_state.items()}
        arrays.update({f"optimizer.{k}": v for k, v in optimizer_state["arrays"].items()})
        meta = {"step": int(step), "optimizer": {k: v for k, v in optimizer_state.items() if k != "arrays"},
                **extra, "history": history}
        save_safetensors(self.file(CHECKPOINT), arrays, {"minift": json.dumps(meta)})
        self.save_weights(model_state, step)
        self.write_metrics({**history, "step": int(step), "finished": False})

    def load_checkpoint(self):
        """(model state, optimizer state, metadata) of checkpoint.safetensors, or None when
        the run has none yet."""
        path = self.file(CHECKPOINT)
        if not path.exists():
            return None
        arrays, meta = load_safetensors(path, expect_dtypes=FLOAT_DTYPES, finite=True)
        try:
            meta = json.loads(meta["minift"])
            step = meta["step"]
        except (KeyError, ValueError, TypeError):
            raise MiniftError(f"{path}: not a minift training checkpoint (no valid 'minift' metadata)") from None
        if not isinstance(step, int) or step < 0:
            raise MiniftError(f"{path}: checkpoint step {step!r} is not a non-negative integer")
        optimizer = meta.pop("optimizer", None) or {"step": meta.get("optimizer_step", step),
                                                    "lr": meta.get("optimizer_lr")}   # before format 2
        optimizer["arrays"] = {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
        model = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
        return model, optimizer, meta

    def checkpoint_step(self):
        """The step of checkpoint.safetensors, read from its header (None if there is none)."""
        return _recorded_step(self.file(CHECKPOINT))

    def write_metrics(self, metrics):
        self._require_lock()
        write_json(self.file(METRICS), metrics)

    def read_metrics(self):
        if not self.file(METRICS).exists():
            return None
        return read_json(self.file(METRICS), what="metrics file", expect=dict)

    def is_finished(self):
        """True when the run completed: metrics.json, written last, says so. (Runs written
        before minift recorded it count as finished when their metrics hold final results or
        their history reached the configured number of steps.)"""
        metrics = self.read_metrics()
        if metrics is None:
            return False
        if "finished" in metrics:
            return metrics["finished"] is True
        if "test" in metrics and "validation" in metrics:          # a finished fine-tuning run
            return True
        try:
            cfg = read_json(self.file(CONFIG), expect=dict)
            return metrics["train"][-1]["step"] == cfg["train"]["steps"]
        except (KeyError, IndexError, TypeError, OSError, ValueError):
            return False

    def repair(self, log=print):
        """After a crash between the writes of one checkpoint: rewrite model.safetensors and
        metrics.json from checkpoint.safetensors when they are behind it. Returns the
        checkpoint's step (None without a checkpoint)."""
        self._require_lock()
        step = self.checkpoint_step()
        if step is None:
            return None
        weights = self.weights_step()
        metrics = self.read_metrics() or {}
        if weights != step or (not self.is_finished() and metrics.get("step") != step):
            model_state, _, meta = self.load_checkpoint()
            log(f"repairing {self.path}: {WEIGHTS} was at step {weights} and {METRICS} at step "
                f"{metrics.get('step')}, the checkpoint at step {step}")
            self.save_weights(model_state, step)
            self.write_metrics({**meta["history"], "step": step, "finished": False})
        return step


def claim(path, command, resume=False, device="cpu"):
    """The locked RunDir of a training command (`with claim(...) as run:`), after the
    checks that need no file: the device exists; --resume has a run to resume (its
    config.json says how it was started: without it, resuming would have to guess); a
    new run's directory is new, empty or minift's own."""
    if device == "cuda":
        get_cupy()                          # fail now, with the reason, before anything is written
    run = RunDir(path)
    if resume and not run.holds_run():
        why = "does not exist" if not run.path.exists() else \
            f"holds no run to resume (no {CONFIG}: the run stopped before writing it, so how it was started is unknown)"
        raise MiniftError(f"nothing to resume: {run.path} {why}; start the run again without --resume")
    run.require_unused()
    return run.lock(command)


def available_memory():
    """Bytes this machine can give new allocations now (MemAvailable in /proc/meminfo on
    Linux; elsewhere the physical memory), or None when it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes, what, advice, device="cpu"):
    """Refuse, in one sentence with the figures, a plan whose lower bound of memory
    (`nbytes`, model.training_bytes) is more than the machine has: before anything is
    allocated or written, not as a MemoryError minutes later. (The GPU's memory is the
    GPU's to report.)"""
    available = available_memory() if device == "cpu" else None
    if available is not None and nbytes > available:
        raise MiniftError(f"{what} needs at least {nbytes / 2**30:,.1f} GiB of memory; this machine has "
                          f"{available / 2**30:,.1f} GiB available: {advice}")


def check_init_unchanged(cfg, tokenizer, path):
    """For --resume of a run started from another one (its --init, as config.json
    records it): that run's weights and tokenizer must still be the ones this run began
    with, or the resumed run would quietly continue with others."""
    init = Path(cfg["init"])
    digest = cfg.get("init_sha256")
    if digest is not None and (not (init / WEIGHTS).is_file() or file_sha256(init / WEIGHTS) != digest):
        raise MiniftError(f"{init / WEIGHTS} changed (or is gone) since the run in {path} started; --resume "
                          f"needs the same --init (restore it, or start a new run)")
    expected = cfg.get("tokenizer_fingerprint")
    if expected is not None and tokenizer.fingerprint() != expected:
        raise MiniftError(f"the tokenizer of {init} changed since the run in {path} started; --resume needs the "
                          f"same --init (restore it, or start a new run)")


def refuse_changes(config, insisted, path, flags=None):
    """--resume continues a run as it was started: each setting in `insisted` (the flags
    given with --resume) must equal the run's `config` (a dataclass, whose own checks
    normalise the value first, e.g. file paths); `flags` names the command-line flag of a
    setting where it is not "--" + the name."""
    for name, value in insisted.items():
        ran = getattr(config, name)
        if getattr(dataclasses.replace(config, **{name: value}), name) != ran:
            flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
            raise MiniftError(f"{flag} {value} contradicts the run in {path}, which has {name} = {ran}; --resume "
                              f"continues a run as it was started (drop {flag}, or start a new run elsewhere)")


def _recorded_step(path):
    """The "step" in the minift metadata of a safetensors file's header, or None."""
    if not Path(path).exists():
        return None
    _, meta = read_safetensors_header(path)
    try:
        return int(json.loads(meta["minift"])["step"])
    except (KeyError, ValueError, TypeError):
        return None


# ----------------------------------------------------------------------------- checking config.json

def config_from_json(cls, d, path, section):
    """Build dataclass `cls` from the JSON object `d` (config.json's `section`), checking
    every field against its annotation first (int, float, bool, str, list of str, or
    "X | None"): JSON `true` is not a number and "false" is not a boolean. Range checks
    are the dataclass's own (__post_init__); their errors come back naming the file."""
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise MiniftError(f"{path}: \"{section}\" must be a JSON object, found {json.dumps(d)}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(d) - set(hints))
    if unknown:
        raise MiniftError(f"{path}: unknown fields {unknown} in \"{section}\"; known fields are {sorted(hints)}")
    for name, value in d.items():
        if not _has_type(value, hints[name]):
            raise MiniftError(f"{path}: {section}.{name} must be {_type_name(hints[name])}, found {json.dumps(value)}")
    try:
        return cls(**d)
    except (TypeError, ValueError) as e:
        raise MiniftError(f"{path}: {section}: {e}") from None


def _has_type(value, hint):
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value)
    if type(None) in args:                                   # X | None
        return value is None or any(_has_type(value, a) for a in args if a is not type(None))
    return True                                              # anything else: the dataclass checks it


def _type_name(hint):
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (list, tuple):
        return f"a list of {_type_name(args[0]).replace('a ', '').replace('an ', '')}s"
    return " or ".join(_type_name(a) for a in args) + " or null"


def model_config_from_json(d, path):
    """The GPTConfig of config.json's "model" section, types and ranges checked."""
    return config_from_json(GPTConfig, d, path, "model")


def check_weights_fit(config, header, path):
    """Compare a weights file's header with `config` before anything is allocated: the
    token and position tables and the number of blocks must match."""
    expected = {"transformer.wte.weight": (config.vocab_size, config.n_embd),
                "transformer.wpe.weight": (config.block_size, config.n_embd)}
    for name, shape in expected.items():
        if name not in header:
            raise MiniftError(f"{path}: no tensor {name}; not the weights of a minift/GPT-2 model")
        found = tuple(header[name][1])
        if found != shape:
            raise MiniftError(f"{path}: {name} has shape {found}, but {CONFIG} describes {shape}")
    layers = {int(k.split(".")[2]) for k in header if k.startswith("transformer.h.") and k.split(".")[2].isdigit()}
    if len(layers) != config.n_layer or (layers and max(layers) != config.n_layer - 1):
        raise MiniftError(f"{path} holds {len(layers)} blocks, but {CONFIG} says n_layer = {config.n_layer}")
