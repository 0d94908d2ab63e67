"""The one training loop, for pretraining and fine-tuning alike, and its progress line.

    for step in range(start, steps):
        set the learning rate from the schedule
        for each of grad_accum micro-batches:
            loss = loss_fn(model, batch) / grad_accum;  loss.backward()
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

import numpy as np

from . import backend
from .backend import device_of, to_device, to_numpy
from .errors import MiniftError
from .model import IGNORE
from .nn import has_dropout, reseed_dropout
from .optim import clip_grad_norm
from .tensor import no_grad

ESTIMATE_STEPS = 10         # steps timed (after the first) before the estimate of the run's time


class Progress:
    """One progress line, on stderr (stdout is for results): rewritten in place on a
    terminal; where stderr is a log file or a pipe, a plain line when `interval` seconds
    have passed since the last one (and at the last step), so a log shows life without
    filling up. Other lines (evaluations) are printed as they come. `every` is the Trainer's logging period in steps (update sizes are
    recorded then), not a printing one. `clock` is there for tests."""

    def __init__(self, stream=None, every=50, interval=10.0, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.every, self.interval, self.clock = every, interval, clock
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._open = False
        self._last = clock()        # when the last progress line was printed

    def wants(self, step, total):
        """Whether update() at `step` would show anything (so numbers are read only then)."""
        return self.live or step == total or self.clock() - self._last >= self.interval

    def update(self, step, total, text):
        if self.live:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._open = True
        elif self.wants(step, total):
            self.print(text)
            self._last = self.clock()

    def print(self, text):
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()


def format_seconds(s):
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def forward_backward(model, loss_fn, batch, scale=1.0, data_parallel=False):
    """Forward and backward of loss_fn(model, batch) * scale, the gradients added to the
    parameters' `.grad`; returns the loss as a float64 scalar array on the batch's
    device (reading it would make a GPU wait). The graph is freed as backward passes
    it (keep_graph=False): activations go as soon as they are used. `data_parallel`
    says how the batch's rows may be split into parts (see Trainer): a faster step
    may use it; this one runs the batch whole."""
    loss = loss_fn(model, batch) * scale
    loss.backward(keep_graph=False)
    return loss.data.astype(np.float64)


def train_step(model, optimizer, batches, loss_fn, grad_clip, data_parallel=False):
    """One optimisation step, the body of nanoGPT's training loop: forward and backward
    on each micro-batch of `batches`, the gradients clipped to a global norm of at most
    `grad_clip` (None or 0: not clipped), the optimizer's step, and the gradients zeroed
    for the next step. Each micro-batch's loss is scaled by 1 / len(batches), so their
    gradients add up to those of the mean loss over all of them (gradient accumulation:
    a large batch in parts that fit in memory). Returns (the mean loss, the gradient
    norm before clipping), both float64 arrays left on the device."""
    step = backend.implementation("forward_backward", forward_backward, batches[0][0])   # minift.fast's, if on
    loss = 0.0
    for batch in batches:
        loss = loss + step(model, loss_fn, batch, 1.0 / len(batches), data_parallel=data_parallel)
    norm = clip_grad_norm(optimizer.params(), grad_clip or math.inf)
    optimizer.step()
    optimizer.zero_grad()
    return loss, norm


class Trainer:
    """Runs `steps` optimisation steps of `loss_fn(model, batch)` on batches drawn from
    `batches` (an object with next_batch(), state_dict(), load_state_dict()).

    evaluate(model) -> dict of numbers, called at step 0, every `eval_every` steps and at
    the end (in eval mode, without a graph). With `run` (a locked runs.RunDir), a
    checkpoint is saved every `checkpoint_every` steps and at the end.

    Every step sets each parameter group's learning rate to the schedule's, times the
    group's "lr_scale" (1 when absent: a group may learn slower or faster than the rest);
    without a schedule the groups keep the rates they have.

    data_parallel says that the batch's rows may be split into parts whose losses and
    gradients, weighted, add up to the whole batch's, and how: a function split(batch,
    parts) -> [(piece, weight)] (split_rows cuts a loss that is a weighted mean over
    rows), or True for split_by_targets (loss_fn is the mean of a loss over the scored
    targets in batch[1]: a GPT's next-token loss, a masked or an instruction one).
    minift.fast, when it is turned on, then runs the parts at once on the CPU's threads
    (`minift.fast.training`), and minift.dist on several processes; the plain loop runs
    the batch whole. Not with dropout: two threads would draw from one generator.

    early_stop (optional, e.g. adapt.recipes.EarlyStopping): update(model, history) after
    each evaluation and finished(history) on starting say when to stop before `steps`
    (then `stopped` is True). estimate(seconds_per_step, seconds_left), if given, is
    called once per run(), after ESTIMATE_STEPS steps: the measured time of a step.
    """

    def __init__(self, model, optimizer, batches, loss_fn, *, steps, schedule=None, grad_accum=1,
                 grad_clip=1.0, evaluate=None, eval_every=100, run=None, checkpoint_every=None,
                 seed=0, progress=None, data_parallel=False, early_stop=None, estimate=None):
        if steps < 0 or grad_accum < 1 or eval_every < 1:
            raise ValueError(f"Trainer: need steps >= 0, grad_accum >= 1 and eval_every >= 1, got "
                             f"{steps}, {grad_accum} and {eval_every}")
        if data_parallel and has_dropout(model):
            raise ValueError("Trainer: data_parallel needs a model without dropout (its threads "
                             "would draw the masks from one generator, in no fixed order)")
        self.data_parallel = data_parallel
        self.model, self.optimizer, self.batches, self.loss_fn = model, optimizer, batches, loss_fn
        self.steps, self.schedule, self.grad_accum, self.grad_clip = steps, schedule, grad_accum, grad_clip
        self.evaluate, self.eval_every = evaluate, eval_every
        self.early_stop, self.estimate, self.stopped = early_stop, estimate, False
        self._eval_seconds = 0.0    # how long the last evaluation took (for the estimate)
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
        self._clock = (time.perf_counter(), self.step, 0)
        if self.step == 0 and self.evaluate is not None and not self.history["eval"]:
            self._evaluate()
            if self.early_stop is not None:
                self.early_stop.update(self.model, self.history)       # the weights before training
        self.stopped = self.early_stop is not None and self.early_stop.finished(self.history)
        self.model.train()
        first = self.step
        while self.step < stop and not self.stopped:
            self._train_step()
            if self.estimate is not None and self.step - first in (1, ESTIMATE_STEPS + 1):
                self._time_steps(first)
            if self.progress.wants(self.step, self.steps):
                self._read_back()
            if self.evaluate is not None and (self.step % self.eval_every == 0 or self.step == self.steps):
                self._evaluate()
                self.model.train()
                self.stopped = self.early_stop is not None and self.early_stop.update(self.model, self.history)
            if self.run_dir is not None and (self.step % self.checkpoint_every == 0 or self.step == stop
                                             or self.stopped):
                self.save_checkpoint()
        self._read_back()
        self._stop_clock()
        self.model.eval()
        return self.history

    def _train_step(self):
        """One optimisation step (train_step) on the sampler's next grad_accum batches,
        at this step's learning rate. Its loss and gradient norm stay on the device
        until the loop reads them back."""
        lr = self._set_learning_rate()
        reseed_dropout(self.model, self.seed, self.step)
        batches = [self._next_batch() for _ in range(self.grad_accum)]
        before = self._weights_before_update()
        loss, norm = train_step(self.model, self.optimizer, batches, self.loss_fn, self.grad_clip,
                                self.data_parallel)
        self.step += 1
        ratios = update_ratios(self.model, before) if before is not None else None
        self._pending.append((self.step, lr, loss, norm, ratios))

    def _time_steps(self, first):
        """After the first step of this run() (which may compile or warm caches) start a
        clock; ESTIMATE_STEPS later, pass the measured time a step to `estimate`."""
        self._read_back()                       # on a GPU: wait for the queued steps
        now = time.perf_counter()
        if self.step - first == 1:
            self._estimate_clock = now
            return
        per_step = (now - self._estimate_clock) / ESTIMATE_STEPS
        left = self.steps - self.step
        evals = left // self.eval_every + 1 if self.evaluate is not None else 0
        self.estimate(per_step, per_step * left + self._eval_seconds * evals)

    def _set_learning_rate(self):
        """Give every group the schedule's rate for this step times its lr_scale;
        returns the schedule's rate (without a schedule: the first group's)."""
        if self.schedule is None:
            return self.optimizer.param_groups[0]["lr"]
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def _next_batch(self):
        """The sampler's next batch, its arrays on the parameters' device."""
        device = device_of(self.optimizer.params()[0].data)
        batch = tuple(to_device(b, device) if isinstance(b, np.ndarray) else b for b in self.batches.next_batch())
        self._count_tokens(batch[0].size)
        return batch

    def _weights_before_update(self):
        """At log steps only, a copy of the trainable weights, to measure the update
        (update_ratios; the report draws it); else None. (Forward and backward leave
        the weights alone: only the optimizer's step changes them.)"""
        if not self._logs(self.step + 1):
            return None
        return {id(p): p.data.copy() for p in self.optimizer.params() if p.requires_grad}

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
        t0 = time.perf_counter()
        with no_grad():
            metrics = self.evaluate(self.model)
        self._eval_seconds = time.perf_counter() - t0
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


# ----------------------------------------------------------------------------- how a loss splits (data_parallel)

def split_rows(batch, parts, weights):
    """[(piece, weight)]: the batch's rows in `parts` consecutive groups (each array of
    the batch cut along its first axis, anything else kept whole), each with the sum of
    its rows' `weights`. When the loss is a weighted mean over rows, sum_r w_r l_r /
    sum_r w_r, the pieces' losses, each times its weight / the total weight, add up to
    the batch's loss, and so do their gradients."""
    n = len(batch[0])
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(tuple(b[lo:hi] if isinstance(b, np.ndarray) else b for b in batch), weights[lo:hi].sum().item())
            for lo, hi in zip(bounds, bounds[1:])]


def split_by_targets(batch, parts):
    """data_parallel=True's split: the loss is a mean over the scored targets of
    batch[1] (IGNORE where not scored: the next-token, masked or instruction loss), so
    a row weighs as many targets as it scores."""
    targets = batch[1] if len(batch) > 1 else None
    if not (isinstance(targets, np.ndarray) and targets.dtype.kind in "iu" and targets.ndim == 2
            and len(targets) == len(batch[0])):
        raise ValueError("data_parallel=True needs batches whose second array holds the integer targets of the "
                         "loss (IGNORE = -100 where not scored), a row of them per input row, to weight the "
                         f"parts; got {type(targets).__name__} {getattr(targets, 'shape', '')}")
    return split_rows(batch, parts, (targets != IGNORE).reshape(len(targets), -1).sum(axis=1))


def splitter(data_parallel):
    """The split function a Trainer's `data_parallel` names (None: the batch stays whole)."""
    if callable(data_parallel):
        return data_parallel
    return split_by_targets if data_parallel else None
