"""minift's training step against PyTorch's eager CPU step: the same GPT-2 architecture,
the same AdamW, the same tokens, each framework in its own fresh process.

    python benchmarks/step_vs_pytorch.py                        # the ratio table: reference, long, gpt2
    python benchmarks/step_vs_pytorch.py --shapes reference,long --pairs 5
    python benchmarks/step_vs_pytorch.py --shapes gpt2 --pairs 3
    python benchmarks/step_vs_pytorch.py --per-op               # minift's cost ledger beside torch.profiler's
    python benchmarks/step_vs_pytorch.py --ftz                  # what flush-to-zero changes; denormals counted
    python benchmarks/step_vs_pytorch.py --same-process         # the table, then the one-process ratio

A reference tool, not part of minift (which never imports PyTorch): it needs `pip install
torch`. Both frameworks build the same model with the same initialisation (GPT-2's) and
train it on the same tokens with the same AdamW. For each shape, `--pairs` pairs of fresh
processes, minift first in even pairs, PyTorch first in odd ones; each process builds its
model, runs `--warmup` steps, times `--steps` steps one by one, and reports its median
step and the growth of its peak resident memory over what it held once the model was
built (VmHWM, reset then): activations, gradients and AdamW's moments. The ratio is the
median of the pairs' ratios. Both use `--threads` threads: torch.set_num_threads, and
minift's own (minift.fast on, as the command line and the demos run it). PyTorch runs
with flush-to-zero (torch.set_flush_denormal), minift as it ships unless `--minift-ftz`
sets the FTZ and DAZ bits of each of its threads. `--same-process` adds the old figure,
both alternating in one process (which shares allocator and thread settings): secondary.

Shapes (vocab 2048, 4 layers, 4 heads, n_embd 128 unless said): reference = batch 16 x 128;
long = batch 2 x 1024, block 1024; gpt2 = GPT-2 124M (vocab 50257, block 1024, 12 layers,
12 heads, n_embd 768), batch 4 x 256; tiny = a 1-layer model for the tests.
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

SMALL = dict(vocab_size=2048, n_layer=4, n_head=4, n_embd=128)
SHAPES = {   # model, batch x T, and how many steps a process times by default
    "reference": dict(SMALL, block_size=128, batch=16, T=128, steps=10, warmup=2),
    "long": dict(SMALL, block_size=1024, batch=2, T=1024, steps=5, warmup=2),
    "gpt2": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, batch=4, T=256,
                 steps=3, warmup=1),
    "tiny": dict(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=32, batch=4, T=32, steps=2, warmup=1),
}
CONFIG = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
NAMES = {"minift": "minift", "torch": "PyTorch"}
X86 = platform.machine().lower() in ("x86_64", "amd64") and os.name == "posix"
FTZ_DAZ = 0x8040          # MXCSR bits: flush-to-zero (15), denormals-are-zero (6)
_MXCSR = None             # (its page, get, set) once made
ARGS = None               # the command line (main)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="reference,long,gpt2", help="comma-separated: " + ", ".join(SHAPES))
    p.add_argument("--pairs", type=int, default=5, help="alternating pairs of processes a shape (default 5)")
    p.add_argument("--gpt2-pairs", type=int, help="pairs for gpt2 (default: --pairs); a gpt2 step takes seconds")
    p.add_argument("--steps", type=int, help="timed steps a process (default: the shape's: 10, 5, gpt2 3)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: 2, gpt2 1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--minift-ftz", action="store_true", help="set FTZ/DAZ in minift's threads (x86-64 only)")
    p.add_argument("--same-process", action="store_true", help="also the one-process ratio (secondary)")
    p.add_argument("--per-op", action="store_true", help="minift's cost ledger beside torch.profiler's")
    p.add_argument("--ftz", action="store_true", help="both frameworks with and without flush-to-zero")
    p.add_argument("--child", choices=["minift", "torch", "both"], help=argparse.SUPPRESS)
    p.add_argument("--mode", default="time", choices=["time", "per-op"], help=argparse.SUPPRESS)
    p.add_argument("--no-ftz", action="store_true", help=argparse.SUPPRESS)   # a child's PyTorch without FTZ
    args = p.parse_args(argv)
    args.shapes = args.shapes.split(",")
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    return args


# ---------------------------------------------------------------- the two steps (in a child)

def minift_step(s, ftz):
    """(step, arrays, flushes) for minift: step(timings=None) runs one training step as
    pretraining's Trainer runs it; arrays() gives its parameters and AdamW's moments;
    flushes says whether every minift thread has FTZ and DAZ set."""
    import numpy as np
    import minift.fast
    from minift.fast.training import data_parallel_parts, forward_backward
    from minift.model import GPT, GPTConfig, param_groups
    from minift.optim import AdamW
    from minift.pretrain import lm_loss
    minift.fast.enable()                     # minift's threads; BLAS single-threaded
    if ftz:
        _mxcsr()                             # fails here, in this thread, off x86-64
    flags = on_every_minift_thread(lambda: set_mxcsr_bits(FTZ_DAZ) if ftz else mxcsr_bits())
    model = GPT(GPTConfig(**{k: s[k] for k in CONFIG}), seed=0)
    opt = AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    x = rng.integers(0, s["vocab_size"], (s["batch"], s["T"]))
    y = rng.integers(0, s["vocab_size"], (s["batch"], s["T"]))

    def step(timings=None):                  # timings: the cost ledger's optimizer seconds
        forward_backward(model, lm_loss, (x, y), data_parallel=True)
        t = time.perf_counter()
        opt.step()
        opt.zero_grad()
        if timings is not None:
            timings["optimizer"] = timings.get("optimizer", 0.0) + time.perf_counter() - t
    step.parts = data_parallel_parts(model, (x, y))

    def arrays():
        return {"parameters": [p.data for p in model.parameters()],
                "m": [st["m"] for st in opt.state.values()], "v": [st["v"] for st in opt.state.values()]}
    return step, arrays, all(f == FTZ_DAZ for f in flags) if flags else None


def torch_step(s, ftz):
    """(step, arrays, flushes) for PyTorch, the same model and AdamW as minift's."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(ARGS.threads)
    if ftz:
        torch.set_flush_denormal(True)      # this thread; its OpenMP threads start later and inherit it
    torch.manual_seed(0)
    C, H = s["n_embd"], s["n_head"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(s["vocab_size"], C), nn.Embedding(s["block_size"], C)
            self.h = nn.ModuleList(Block() for _ in range(s["n_layer"]))
            self.ln_f = nn.LayerNorm(C)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T            # tied LM head, as minift's
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    model = GPT()
    named = list(model.named_parameters())
    with torch.no_grad():                   # minift's (GPT-2's) initialisation, not PyTorch's defaults
        for n, p in named:
            if p.dim() >= 2:
                p.normal_(0.0, 0.02 / (2 * s["n_layer"]) ** 0.5 if n.endswith("proj.weight") else 0.02)
            elif n.endswith("bias"):
                p.zero_()
    decays = [p.dim() >= 2 and "wte" not in n and "wpe" not in n for n, p in named]
    opt = torch.optim.AdamW([{"params": [p for (_, p), d in zip(named, decays) if d], "weight_decay": 0.1},
                             {"params": [p for (_, p), d in zip(named, decays) if not d], "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), foreach=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, s["vocab_size"], (s["batch"], s["T"]), generator=g)
    y = torch.randint(0, s["vocab_size"], (s["batch"], s["T"]), generator=g)

    def step(timings=None):
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def arrays():
        return {"parameters": [p.detach().numpy() for p in model.parameters()],
                "m": [st["exp_avg"].numpy() for st in opt.state.values()],
                "v": [st["exp_avg_sq"].numpy() for st in opt.state.values()]}
    probe = torch.full((1 << 20,), 1e-38) * 0.01          # large enough to run on every OpenMP thread
    return step, arrays, bool((probe == 0).all())


# ---------------------------------------------------------------- flush-to-zero for minift

def _mxcsr():
    """(get, set) of the calling thread's MXCSR register, the SSE/AVX control word whose
    FTZ and DAZ bits make float arithmetic flush denormals to zero. NumPy has no switch
    for them, so this writes two tiny x86-64 functions into executable memory and calls
    them through ctypes (benchmark-only; each thread has its own MXCSR)."""
    global _MXCSR
    if _MXCSR is None:
        if not X86:
            raise SystemExit("--minift-ftz needs an x86-64 POSIX machine (it sets the MXCSR register)")
        import ctypes
        import mmap
        code = bytes([0x0F, 0xAE, 0x5C, 0x24, 0xFC,    # get: stmxcsr [rsp-4]
                      0x8B, 0x44, 0x24, 0xFC, 0xC3,    #      mov eax, [rsp-4]; ret
                      0x89, 0x7C, 0x24, 0xFC,          # set: mov [rsp-4], edi
                      0x0F, 0xAE, 0x54, 0x24, 0xFC, 0xC3])   # ldmxcsr [rsp-4]; ret
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        _MXCSR = (page, ctypes.CFUNCTYPE(ctypes.c_uint32)(address),
                  ctypes.CFUNCTYPE(None, ctypes.c_uint32)(address + 10))
    return _MXCSR[1:]


def mxcsr_bits():
    """This thread's FTZ and DAZ bits (FTZ_DAZ when both are set), or None off x86-64."""
    return _mxcsr()[0]() & FTZ_DAZ if X86 else None


def set_mxcsr_bits(bits):
    get, put = _mxcsr()
    put(get() | bits)
    return get() & FTZ_DAZ


def on_every_minift_thread(fn):
    """[fn() on each of minift's threads, the calling one included]: one task a thread,
    each waiting at a barrier until every thread has taken one."""
    from minift.fast.threads import run_tasks, threads
    barrier, out = threading.Barrier(threads()), []

    def task():
        out.append(fn())
        barrier.wait(timeout=30)
    run_tasks([task] * threads())
    return [f for f in out if f is not None]


def denormals(arrays):
    """How many float32 numbers are denormal (exponent bits 0, mantissa not), by name;
    read from the bits, which DAZ does not change."""
    import numpy as np
    out = {}
    for name, group in arrays.items():
        bits = [np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) for a in group]
        out[name] = sum(int(np.count_nonzero(((b & 0x7F800000) == 0) & ((b & 0x007FFFFF) != 0))) for b in bits)
    return out


# ---------------------------------------------------------------- a child process

def rss_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def build(who, s):
    ftz = not ARGS.no_ftz if who == "torch" else ARGS.minift_ftz
    return (torch_step if who == "torch" else minift_step)(s, ftz)


def child_time(who, s):
    """Build, warm up, time: the JSON a timing child prints."""
    step, arrays, flushes = build(who, s)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                     # resets VmHWM: the peak from here on
        reset = True
    except OSError:
        reset = False                        # the peak then includes the build's
    base = rss_kb("VmRSS:")
    for _ in range(s["warmup"]):
        step()
    times, cpu = [], time.process_time()
    for _ in range(s["steps"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    ms, cores = statistics.median(times) * 1e3, (time.process_time() - cpu) / sum(times)
    return {"ms": ms, "best_ms": min(times) * 1e3, "steps_ms": [round(t * 1e3, 1) for t in times],
            "tokens_per_s": s["batch"] * s["T"] / ms * 1e3, "cores": cores, "load": os.getloadavg()[0],
            "peak_mb": (rss_kb("VmHWM:") - base) / 1024, "peak_reset": reset, "flushes": flushes,
            "denormals": denormals(arrays())}


TORCH_CATEGORIES = [    # (category, pieces of torch.profiler event names); an event counts in the
    ("optimizer", ("optimizer.", "_foreach_")),         # first that its outermost enclosing event matches
    ("attention", ("scaled_dot_product", "scaleddotproduct")),
    ("layer norm", ("layer_norm", "layernorm")),
    ("gelu", ("gelu",)),
    ("softmax/cross-entropy", ("softmax", "nll_loss", "nllloss", "cross_entropy")),
    ("embedding", ("embedding",)),
    ("matmul/linear", ("linear", "addmm", "aten::mm", "mmbackward", "bmm", "matmul")),
]
MINIFT_CATEGORIES = {"Linear": "matmul/linear", "MatMul": "matmul/linear", "QKVAttention": "attention",
                     "CausalAttention": "attention", "LayerNorm": "layer norm", "GELU": "gelu",
                     "CrossEntropy": "softmax/cross-entropy", "Embedding": "embedding"}
CATEGORIES = ["matmul/linear", "attention", "layer norm", "gelu", "softmax/cross-entropy", "embedding", "optimizer",
              "other"]


def torch_category(event):
    chain = []
    while event is not None:
        chain.append(event.name.lower())
        event = event.cpu_parent
    for name in reversed(chain):                        # outermost first
        for category, pieces in TORCH_CATEGORIES:
            if any(piece in name for piece in pieces):
                return category
    return "other"


def child_per_op(who, s):
    """Profile `steps` steps: ms a step by category (wall time; minift's thread time is
    divided by its parts when it runs data-parallel), and the profiler's own table."""
    step, _, _ = build(who, s)
    for _ in range(s["warmup"]):
        step()
    n, ms = s["steps"], {c: 0.0 for c in CATEGORIES}
    if who == "minift":
        from minift.bench import ledger, matmul_rate, profile
        timings, t = {}, time.perf_counter()
        with profile() as p:
            for _ in range(n):
                step(timings)
        total = (time.perf_counter() - t) / n * 1e3
        for name, e in p.ops.items():
            cat = MINIFT_CATEGORIES.get(name, "other")
            ms[cat] += (e["forward_s"] + e["backward_s"]) / n / step.parts * 1e3
        ms["optimizer"] += timings["optimizer"] / n * 1e3
        detail = ledger(step, n, matmul_rate())
    else:
        import torch.profiler
        t = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                step()
        total = (time.perf_counter() - t) / n * 1e3
        for event in prof.events():
            ms[torch_category(event)] += event.self_cpu_time_total / n / 1e3
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
        detail = "\n".join([f"torch.profiler, {n} steps, per step: self CPU time by op",
                            f"{'op':<52}{'calls':>6}{'self ms':>9}"]
                           + [f"{e.key[:51]:<52}{e.count // n:>6}{e.self_cpu_time_total / n / 1e3:>9.1f}" for e in top])
    ms["other"] += total - sum(ms.values())
    return {"ms": ms, "total_ms": total, "detail": detail, "parts": getattr(step, "parts", 1)}


def child_same_process(s):
    """Both frameworks in this one process, alternating round by round (secondary)."""
    steps = {"minift": build("minift", s)[0], "torch": build("torch", s)[0]}
    for fn in steps.values():
        for _ in range(s["warmup"]):
            fn()
    times = {name: [] for name in steps}
    for _ in range(max(ARGS.pairs, 1)):
        for name, fn in steps.items():
            t = time.perf_counter()
            for _ in range(s["steps"]):
                fn()
            times[name].append((time.perf_counter() - t) / s["steps"] * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def child():
    s = shape(ARGS.shapes[0])
    if ARGS.child == "both":
        out = child_same_process(s)
    elif ARGS.mode == "per-op":
        out = child_per_op(ARGS.child, s)
    else:
        out = child_time(ARGS.child, s)
    print(json.dumps(out))


# ---------------------------------------------------------------- the parent

def shape(name):
    s = dict(SHAPES[name])
    s.update({k: getattr(ARGS, k) for k in ("steps", "warmup") if getattr(ARGS, k) is not None})
    return s


def run_child(who, name, *extra):
    """Run a fresh process for `who` on shape `name`; its JSON."""
    command = [sys.executable, os.path.abspath(__file__), "--child", who, "--shapes", name,
               "--threads", str(ARGS.threads), "--pairs", str(ARGS.pairs), *extra]
    command += [f"--{k}={getattr(ARGS, k)}" for k in ("steps", "warmup") if getattr(ARGS, k) is not None]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def minift_flags():
    return ["--minift-ftz"] if ARGS.minift_ftz else []


def describe(name):
    s = SHAPES[name]
    return (f"{name}: vocab {s['vocab_size']}, {s['n_layer']} layers, {s['n_head']} heads, n_embd {s['n_embd']}, "
            f"block {s['block_size']}, batch {s['batch']} x {s['T']} = {s['batch'] * s['T']:,} tokens a step")


def brief(r):
    return (f"{r['ms']:.1f} ms (best {r['best_ms']:.1f}, {r['peak_mb']:.0f} MB, {r['cores']:.2f} cores busy, "
            f"load {r['load']:.1f})")


def headline():
    rows = []
    for name in ARGS.shapes:
        s, pairs = shape(name), (ARGS.gpt2_pairs or ARGS.pairs) if name == "gpt2" else ARGS.pairs
        print(f"{describe(name)}; {pairs} pairs of processes, {s['warmup']} warm-up + {s['steps']} timed steps each")
        runs = {"minift": [], "torch": []}
        for i in range(pairs):
            for who in ("minift", "torch") if i % 2 == 0 else ("torch", "minift"):
                runs[who].append(run_child(who, name, *minift_flags()))
            m, t = runs["minift"][-1], runs["torch"][-1]
            print(f"  pair {i + 1}: minift {brief(m)}, PyTorch {brief(t)}: {m['ms'] / t['ms']:.3f}", flush=True)
            if not t["flushes"]:
                print("  warning: PyTorch's threads did not all flush denormals to zero")
        ratios = [m["ms"] / t["ms"] for m, t in zip(runs["minift"], runs["torch"])]
        med = {who: {k: statistics.median(r[k] for r in rs) for k in ("ms", "peak_mb")} for who, rs in runs.items()}
        rows.append((name, s["batch"] * s["T"], med, ratios, pairs))
    print(f"\nminift / PyTorch, each in its own process ({ARGS.threads} threads; PyTorch with flush-to-zero, "
          f"minift {'with' if ARGS.minift_ftz else 'without'}); medians over pairs; peak MB = resident memory "
          f"above the built model")
    print("| shape | tokens a step | pairs | minift ms | PyTorch ms | minift / PyTorch | pair range "
          "| minift peak MB | PyTorch peak MB |\n|---|---|---|---|---|---|---|---|---|")
    for name, tokens, med, ratios, pairs in rows:
        print(f"| {name} | {tokens:,} | {pairs} | {med['minift']['ms']:,.1f} | {med['torch']['ms']:,.1f} | "
              f"{statistics.median(ratios):.3f} | {min(ratios):.2f}-{max(ratios):.2f} | "
              f"{med['minift']['peak_mb']:,.0f} | {med['torch']['peak_mb']:,.0f} |")
    if ARGS.same_process:
        for name in ARGS.shapes:
            out = run_child("both", name, *minift_flags())
            print(f"secondary, {name}, both in one process ({max(ARGS.pairs, 1)} alternating rounds; shares "
                  f"allocator and thread settings): minift {out['minift']:.1f} ms, PyTorch {out['torch']:.1f} ms, "
                  f"{out['minift'] / out['torch']:.3f}")


def per_op():
    for name in ARGS.shapes:
        print(describe(name))
        out = {who: run_child(who, name, "--mode", "per-op", *minift_flags()) for who in ("minift", "torch")}
        for who in ("minift", "torch"):
            print(f"\n{out[who]['detail']}")
        m, t = out["minift"], out["torch"]
        print(f"\nper category, wall ms a step, under each framework's own profiler (one process each; minift's "
              f"op times are thread time / {m['parts']} part(s); 'other' = the step's time not in an op of the above)")
        print(f"| {name} | minift ms | PyTorch ms | minift - PyTorch |\n|---|---|---|---|")
        for cat in CATEGORIES:
            print(f"| {cat} | {m['ms'][cat]:.1f} | {t['ms'][cat]:.1f} | {m['ms'][cat] - t['ms'][cat]:+.1f} |")
        print(f"| step (profiled) | {m['total_ms']:.1f} | {t['total_ms']:.1f} | "
              f"{m['total_ms'] - t['total_ms']:+.1f} |\n")


def ftz():
    """Each framework with and without flush-to-zero, alternating, `--pairs` rounds: step
    time and the denormal numbers in the parameters and AdamW's moments after the steps."""
    variants = [("minift", ()), ("minift", ("--minift-ftz",)), ("torch", ("--no-ftz",)), ("torch", ())]
    for name in ARGS.shapes:
        s = shape(name)
        print(f"{describe(name)}; {s['warmup'] + s['steps']} steps a process, {ARGS.pairs} rounds")
        runs = {i: [] for i in range(len(variants))}
        for r in range(ARGS.pairs):                     # the order reversed every other round
            for i in range(len(variants)) if r % 2 == 0 else reversed(range(len(variants))):
                runs[i].append(run_child(variants[i][0], name, *variants[i][1]))
        print("| framework | FTZ + DAZ | ms a step: median (rounds) | all threads flush | denormals: parameters, m, v |"
              "\n|---|---|---|---|---|")
        for i, (who, extra) in enumerate(variants):
            on = (who == "torch") != bool(extra)
            last = runs[i][-1]["denormals"]
            ms = [r["ms"] for r in runs[i]]
            print(f"| {NAMES[who]} | {'on' if on else 'off'} | {statistics.median(ms):.1f} "
                  f"({', '.join(f'{t:.0f}' for t in ms)}) | "
                  f"{runs[i][-1]['flushes']} | {last['parameters']:,}, {last['m']:,}, {last['v']:,} |")


def main(argv=None):
    global ARGS
    ARGS = parse(argv)
    if ARGS.child:                    # thread counts before NumPy (or PyTorch) loads its BLAS
        for var in ("MINIFT_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(ARGS.threads)
        return child()
    if importlib.util.find_spec("torch") is None:
        sys.exit("benchmarks/step_vs_pytorch.py compares minift with PyTorch: it needs `pip install torch`")
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}: {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; {ARGS.threads} threads a framework")
    (per_op if ARGS.per_op else ftz if ARGS.ftz else headline)()
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
