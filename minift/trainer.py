"""The one training loop, for pretraining and fine-tuning alike, and its progress line.

    for step in range(start, steps):
        lr = schedule(step)
        for each of grad_accum micro-batches:
            loss = loss_fn(model, batch) / grad_accum;  loss.backward()
                (data_parallel: the batch's rows split over the threads, forward_backward)
        clip_grad_norm;  optimizer.step();  zero_grad
        every eval_every steps: evaluate;  every checkpoint_every steps: save a checkpoint

Losses and gradient norms stay on the device until they are logged or a checkpoint is
written: on a GPU, reading a number back (`.item()`) waits for all queued work, so the
loop does it only then. Before anything is logged or saved, every loss and gradient norm
since the last check must be finite: training stops at the first that is not, with a
sentence naming the step, and the last checkpoint on disk (written before it) stays the
good one. `resume()` continues from that checkpoint bit for bit.
"""
import math
import sys
import time
from functools import partial

import numpy as np

from .backend import device_of, keep_freed_memory, to_device, to_numpy
from .errors import MiniftError
from .nn import Dropout, reseed_dropout
from .optim import clip_grad_norm
from .parallel import run_tasks, threads
from .tensor import add_grads, no_grad


class Progress:
    """One progress line: rewritten in place on a terminal, printed as plain lines
    (every `every` steps) when the output is a log file or a pipe."""

    def __init__(self, stream=None, every=50):
        self.stream = stream or sys.stdout
        self.every = every
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._open = False

    def wants(self, step, total):
        """Whether update() at `step` would show anything (so numbers are read only then)."""
        return self.live or step % self.every == 0 or step == total

    def update(self, step, total, text):
        if self.live:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._open = True
        elif step % self.every == 0 or step == total:
            self.print(text)

    def print(self, text):
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()


def format_seconds(s):
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def forward_backward(model, loss_fn, batch, scale=1.0, parts=1):
    """Forward and backward of loss_fn(model, batch) * scale, the gradients added to the
    parameters' `.grad`; returns the loss as a float64 scalar array on the batch's
    device (reading it would make a GPU wait). The graph is freed as backward passes
    it (keep_graph=False): activations go as soon as they are used.

    parts > 1: the batch's rows are cut into `parts` consecutive slices, which run at
    once, one per thread: data parallelism, as several GPUs run a step, here on the
    cores of one CPU.

    Each part's loss is weighted by its share of the rows, so the parts' losses and
    gradients add up to the whole batch's when loss_fn is a mean over rows of equal
    weight (a GPT's next-token loss; not a loss over a varying count of masked tokens).
    Each part's backward collects its gradients apart (`Tensor.backward(grads=...)`)
    and they are added to `.grad` part after part, so the sum does not depend on which
    thread finished first. One hand-off to the helper threads a step, where the ops'
    own splits (minift.parallel) cost one each per large op: inside a part, nothing
    splits again. With one thread the parts run one after another.

    reference: loss = loss_fn(model, batch) * scale;  loss.backward()
    """
    if parts <= 1:
        loss = loss_fn(model, batch)
        if scale != 1.0:
            loss = loss * scale
        loss.backward(keep_graph=False)
        return loss.data.astype(np.float64)
    n = len(batch[0])
    parts = max(min(parts, n), 1)
    bounds = [n * i // parts for i in range(parts + 1)]
    losses, grads = [None] * parts, [{} for _ in range(parts)]

    def part(i):
        rows = slice(bounds[i], bounds[i + 1])
        piece = tuple(b[rows] if isinstance(b, np.ndarray) else b for b in batch)
        loss = loss_fn(model, piece) * (scale * (rows.stop - rows.start) / n)
        loss.backward(keep_graph=False, grads=grads[i])
        losses[i] = loss.data.astype(np.float64)
    run_tasks([partial(part, i) for i in range(parts)])
    add_grads(*grads)
    total = losses[0]
    for loss in losses[1:]:
        total = total + loss
    return total


DATA_PARALLEL_MAX_GRADIENTS = 16_000_000   # numbers: a second set of float32 gradients up to 64 MB
DATA_PARALLEL_MAX_T = 256                  # tokens a row: longer rows split each op instead


def data_parallel_parts(model, batch):
    """How many parts a data-parallel step cuts `batch` into: one per thread for NumPy
    arrays, unless the model has more than DATA_PARALLEL_MAX_GRADIENTS trainable
    numbers or the rows are longer than DATA_PARALLEL_MAX_T tokens; else 1.

    Each part holds its own set of gradients until they are added up, so each part
    beyond the first costs one more copy of the trainable weights: nothing for the
    demos' models, half a gigabyte for GPT-2 124M. And data parallelism pays for short
    rows, where a step is many small ops that each split would cost a hand-off
    between threads; for long rows attention's large per-row work dominates, splits
    over the threads well op by op, and slows down more when two parts run at once
    (4 layers, n_embd 128, 2,048 tokens a step, 2 threads: data-parallel / op splits
    0.88 at T = 128, 0.99 at 256, 1.02 at 512, 1.08 at 1,024)."""
    rows = batch[0]
    if type(rows) is not np.ndarray or rows.ndim < 2 or rows.shape[1] > DATA_PARALLEL_MAX_T:
        return 1
    trainable = sum(p.data.size for p in model.parameters() if p.requires_grad)
    return threads() if trainable <= DATA_PARALLEL_MAX_GRADIENTS else 1


class Trainer:
    """Runs `steps` optimisation steps of `loss_fn(model, batch)` on batches drawn from
    `batches` (an object with next_batch(), state_dict(), load_state_dict()).

    evaluate(model) -> dict of numbers, called at step 0, every `eval_every` steps and at
    the end (in eval mode, without a graph). With `run` (a locked runs.RunDir), a
    checkpoint is saved every `checkpoint_every` steps and at the end.

    data_parallel=True: on the CPU with several threads, each batch's rows are split
    over the threads, each running forward and backward of its part (`forward_backward`;
    not for large models or long rows: `data_parallel_parts`). Only for a loss that is
    a mean over rows of equal weight and a model without dropout (two threads would
    draw from one generator). The result equals the whole batch's up to the order of
    float sums, so it differs in the last digits from a run with another thread count.
    """

    def __init__(self, model, optimizer, batches, loss_fn, *, steps, schedule=None, grad_accum=1,
                 grad_clip=1.0, evaluate=None, eval_every=100, run=None, checkpoint_every=None,
                 seed=0, progress=None, data_parallel=False):
        if steps < 0 or grad_accum < 1 or eval_every < 1:
            raise ValueError(f"Trainer: need steps >= 0, grad_accum >= 1 and eval_every >= 1, got "
                             f"{steps}, {grad_accum} and {eval_every}")
        if data_parallel and any(m.p > 0 for m in model.modules() if isinstance(m, Dropout)):
            raise ValueError("Trainer: data_parallel=True needs a model without dropout (its threads "
                             "would draw the masks from one generator, in no fixed order)")
        self.data_parallel = data_parallel
        self.model, self.optimizer, self.batches, self.loss_fn = model, optimizer, batches, loss_fn
        self.steps, self.schedule, self.grad_accum, self.grad_clip = steps, schedule, grad_accum, grad_clip
        self.evaluate, self.eval_every = evaluate, eval_every
        self.run_dir = run
        self.checkpoint_every = checkpoint_every or eval_every
        self.seed = seed
        self.progress = progress or Progress()
        self.step = 0
        self.seconds = 0.0          # training time so far, over every process that ran this run
        self.history = {"train": [], "eval": []}
        self._pending = []          # (step, lr, loss, grad norm, update ratios) not yet read back from the device
        self._clock = None          # (time, step, tokens) when this run() started

    # -- the loop -------------------------------------------------------------------------
    def run(self, until=None):
        """Train up to `self.steps` (or stop early at step `until`, checkpointing there, as
        an interruption would). Returns the history."""
        stop = self.steps if until is None else min(until, self.steps)
        keep_freed_memory()              # every step reallocates the same arrays: keep them warm
        self._clock = (time.perf_counter(), self.step, 0)
        if self.step == 0 and self.evaluate is not None and not self.history["eval"]:
            self._evaluate()
        self.model.train()
        while self.step < stop:
            self._train_step()
            if self.progress.wants(self.step, self.steps):
                self._read_back()
            if self.evaluate is not None and (self.step % self.eval_every == 0 or self.step == self.steps):
                self._evaluate()
                self.model.train()
            if self.run_dir is not None and (self.step % self.checkpoint_every == 0 or self.step == stop):
                self.save_checkpoint()
        self._read_back()
        self._stop_clock()
        self.model.eval()
        return self.history

    def _train_step(self):
        """One optimisation step; its loss and gradient norm stay on the device."""
        params = self.optimizer.params()
        lr = self.schedule(self.step) if self.schedule else self.optimizer.param_groups[0]["lr"]
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        reseed_dropout(self.model, self.seed, self.step)
        device = device_of(params[0].data)
        loss_sum = 0.0
        for _ in range(self.grad_accum):
            batch = tuple(to_device(b, device) if isinstance(b, np.ndarray) else b
                          for b in self.batches.next_batch())
            parts = data_parallel_parts(self.model, batch) if self.data_parallel else 1
            loss_sum = loss_sum + forward_backward(self.model, self.loss_fn, batch, 1.0 / self.grad_accum, parts)
            self._count_tokens(batch[0].size)
        norm = clip_grad_norm(params, self.grad_clip if self.grad_clip else math.inf)
        # At log steps only, the weights before the update are copied, to measure it (the report draws it)
        before = {id(p): p.data.copy() for p in params if p.requires_grad} if self._logs(self.step + 1) else None
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        ratios = update_ratios(self.model, before) if before is not None else None
        self._pending.append((self.step, lr, loss_sum, norm, ratios))

    def _logs(self, step):
        """Whether `step` is a log step: the first, every progress line's and every evaluation's, the last."""
        return step == 1 or step % self.progress.every == 0 or step % self.eval_every == 0 or step == self.steps

    def _stop_clock(self):
        t0, _, _ = self._clock
        now = time.perf_counter()
        self.seconds += now - t0
        self._clock = (now, self.step, 0)

    def _count_tokens(self, n):
        t0, s0, tokens = self._clock
        self._clock = (t0, s0, tokens + int(n))

    def _read_back(self):
        """Bring pending losses and gradient norms to the host, check they are finite,
        record them, and show the progress line if this step wants one."""
        pending, self._pending = self._pending, []
        for step, lr, loss, norm, ratios in pending:
            loss, norm = float(to_numpy(loss)), float(to_numpy(norm))
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise MiniftError(_non_finite_message(step, loss, norm, lr, self.run_dir))
            record = {"step": step, "loss": loss, "lr": lr}
            if self.grad_clip:
                record["grad_norm"] = round(norm, 4)
            if ratios:
                record["update_ratio"] = ratios
            self.history["train"].append(record)
        if pending and self.progress.wants(self.step, self.steps):
            self._show(self.history["train"][-1])

    def _show(self, record):
        t0, s0, tokens = self._clock
        elapsed = max(time.perf_counter() - t0, 1e-9)
        record["tokens_per_s"] = round(tokens / elapsed, 1)
        eta = elapsed / max(self.step - s0, 1) * (self.steps - self.step)
        self.progress.update(self.step, self.steps,
                             f"step {self.step:>5}/{self.steps}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
                             f"{record['tokens_per_s']:,.0f} tok/s  ETA {format_seconds(eta)}")

    def _evaluate(self):
        self.model.eval()
        with no_grad():
            metrics = self.evaluate(self.model)
        self.history["eval"].append({"step": self.step, **metrics})
        self.progress.print(f"eval  step {self.step:>5}  " +
                            "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        return metrics

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self):
        """Write the checkpoint of this step (run_dir.save_checkpoint: checkpoint, weights,
        metrics), after checking that everything in it is finite."""
        self._read_back()
        self._stop_clock()
        for name, p in self.model.named_parameters():
            if not bool(np.isfinite(to_numpy(p.data)).all()):
                raise MiniftError(_non_finite_message(self.step, None, None, self.optimizer.param_groups[0]["lr"],
                                                      self.run_dir, weight=name))
        self.run_dir.save_checkpoint(self.step, self.model.state_dict(), self.optimizer.state_dict(),
                                     {"batches": self.batches.state_dict(), "seconds": self.seconds},
                                     self.history)

    def resume(self):
        """Continue from the run directory's checkpoint: weights, optimizer, sampler, step
        and history. Returns the step, or None when the run has no checkpoint yet (then
        training starts at step 0)."""
        loaded = self.run_dir.load_checkpoint()
        if loaded is None:
            return None
        model_state, optimizer_state, meta = loaded
        where = self.run_dir.file("checkpoint.safetensors")
        try:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
            self.batches.load_state_dict(meta["batches"])
            history = meta["history"]
            if not (isinstance(history, dict) and isinstance(history.get("train"), list)
                    and isinstance(history.get("eval"), list)):
                raise ValueError("its history must be an object with train and eval lists")
        except (KeyError, ValueError, TypeError) as e:   # the file was written by minift: so it was changed
            reason = f"no {e.args[0]!r} in it" if isinstance(e, KeyError) and "\n" not in str(e.args[0]) \
                else " ".join(str(e.args[0] if e.args else e).split())
            raise MiniftError(f"{where} cannot be resumed: {reason}") from None
        if not 0 <= meta["step"] <= self.steps:
            raise MiniftError(f"{where} is at step {meta['step']}, beyond the run's {self.steps} steps")
        self.step = int(meta["step"])
        self.seconds = float(meta.get("seconds", 0.0))
        self.history = history
        return self.step


def update_ratios(model, before):
    """{layer: |update| / |weight|} of the optimiser step just taken, from the weights
    `before` it ({id(parameter): array}); the norms are over all of a layer's trainable
    parameters. A layer is a block of a GPT (`h.3`) or any other top-level part (`wte`,
    `head`). About 1e-3 is the usual healthy size of an update (see viz/report.py)."""
    sums = {}
    for name, p in model.named_parameters():
        old = before.get(id(p))
        if old is None:
            continue
        parts = name.split(".")[1:] if name.startswith("transformer.") else name.split(".")
        layer = ".".join(parts[:2]) if parts[0] == "h" and len(parts) > 2 else parts[0]
        change = p.data - old
        total = sums.setdefault(layer, [0.0, 0.0])
        total[0] += float((change * change).sum(dtype=np.float64))
        total[1] += float((old * old).sum(dtype=np.float64))
    return {layer: float(f"{math.sqrt(d / w):.4g}") for layer, (d, w) in sums.items() if w > 0}


def _non_finite_message(step, loss, norm, lr, run_dir, weight=None):
    what = f"weight {weight} is no longer finite" if weight else \
        f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {norm}"
    kept = ""
    if run_dir is not None:
        last = run_dir.checkpoint_step()
        kept = (f"; the checkpoint of step {last} is kept" if last is not None else
                "; no checkpoint was written")
    return (f"training stopped at step {step}: {what} (learning rate {lr:.3g}); the learning rate is "
            f"likely too high, or the data holds something the model cannot fit{kept}")
