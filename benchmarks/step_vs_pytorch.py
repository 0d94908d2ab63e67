"""minift's training step against PyTorch's eager CPU step, same GPT-2 architecture, same AdamW.

    python benchmarks/step_vs_pytorch.py                       # reference config, 2 threads
    python benchmarks/step_vs_pytorch.py --shape gpt2 --rounds 3
    python benchmarks/step_vs_pytorch.py --memory              # peak memory, each framework alone

A reference tool, not part of minift (which never imports PyTorch): it needs `pip install
torch`. Timing alternates the two frameworks round by round in one process, so a busy
machine slows both alike; each round times `--steps` steps and the figure is the median
round. PyTorch runs with flush-to-zero (denormal floats slowed its step about 6x). One
process shares thread and allocator settings between the two, so its ratio is a
secondary figure: the comparison that counts runs each framework in its own process
(DESIGN.md section 9). Memory runs each framework in a fresh subprocess and reports the
growth of its peak resident memory over what the process held after building the model.

Shapes: reference = vocab 2048, block 128, 4 layers, 4 heads, n_embd 128, batch 16 x 128;
gpt2 = GPT-2 124M (vocab 50257, block 1024, 12 layers, 12 heads, n_embd 768), batch 4 x 256.
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {
    "reference": dict(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128, batch=16, T=128),
    "gpt2": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, batch=4, T=256),
}


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="reference", choices=sorted(SHAPES))
    p.add_argument("--T", type=int, help="tokens per row (default: the shape's); batch adjusts to keep tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--memory", action="store_true", help="peak memory of each framework, in subprocesses")
    p.add_argument("--only", choices=["minift", "torch"], help=argparse.SUPPRESS)   # a memory subprocess
    return p.parse_args()


ARGS = parse()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):   # before NumPy loads BLAS
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402


def shape():
    s = dict(SHAPES[ARGS.shape])
    if ARGS.T:
        s["batch"], s["T"] = max(1, s["batch"] * s["T"] // ARGS.T), ARGS.T
        s["block_size"] = max(s["block_size"], ARGS.T)
    return s


def minift_step_fn(s):
    import minift.fast
    from minift.fast.training import forward_backward
    from minift.model import GPT, GPTConfig, param_groups
    from minift.optim import AdamW
    from minift.pretrain import lm_loss
    minift.fast.enable()                     # as the command line and demos do (its allocator setting helps PyTorch too)
    config = GPTConfig(**{k: s[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")})
    model = GPT(config, seed=0)
    opt = AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    x = rng.integers(0, s["vocab_size"], (s["batch"], s["T"]))
    y = rng.integers(0, s["vocab_size"], (s["batch"], s["T"]))

    def step():
        forward_backward(model, lm_loss, (x, y), data_parallel=True)   # as pretraining's Trainer runs it
        opt.step()
        opt.zero_grad()
    return step


def torch_step_fn(s):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(ARGS.threads)
    torch.set_flush_denormal(True)          # PyTorch at its best: AdamW's tiny moments hit denormals without it
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
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), foreach=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, s["vocab_size"], (s["batch"], s["T"]), generator=g)
    y = torch.randint(0, s["vocab_size"], (s["batch"], s["T"]), generator=g)

    def step():
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def rss_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def memory_child():
    s = shape()
    step = (minift_step_fn if ARGS.only == "minift" else torch_step_fn)(s)
    base = rss_kb("VmRSS:")
    for _ in range(2):
        step()
    print(json.dumps({"peak_mb": (rss_kb("VmHWM:") - base) / 1024}))


def main():
    if ARGS.only:
        return memory_child()
    s = shape()
    tokens = s["batch"] * s["T"]
    print(f"shape {ARGS.shape}: vocab {s['vocab_size']}, {s['n_layer']} layers, {s['n_head']} heads, n_embd "
          f"{s['n_embd']}, batch {s['batch']} x T {s['T']} = {tokens:,} tokens/step; {ARGS.threads} threads")
    if ARGS.memory:
        for name in ("minift", "torch"):
            out = subprocess.run([sys.executable, __file__, "--shape", ARGS.shape, "--threads", str(ARGS.threads),
                                  "--only", name] + (["--T", str(ARGS.T)] if ARGS.T else []),
                                 capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH="."))
            print(f"{name:>7}: peak memory over the built model {json.loads(out.stdout)['peak_mb']:8.1f} MB")
        return
    steps = {"minift": minift_step_fn(s), "torch": torch_step_fn(s)}
    for fn in steps.values():
        fn()                                                    # warm-up
    times = {name: [] for name in steps}
    for _ in range(ARGS.rounds):
        for name, fn in steps.items():
            t = time.perf_counter()
            for _ in range(ARGS.steps):
                fn()
            times[name].append((time.perf_counter() - t) / ARGS.steps)
    med = {name: float(np.median(t)) for name, t in times.items()}
    for name, t in med.items():
        print(f"{name:>7}: {t * 1e3:8.1f} ms/step  {tokens / t:10,.0f} tokens/s  (rounds: "
              f"{', '.join(f'{x * 1e3:.0f}' for x in times[name])} ms)")
    print(f"minift / torch = {med['minift'] / med['torch']:.2f}  (same process: a secondary figure; each framework "
          f"in its own process is the one that counts, docs/performance.md)")


if __name__ == "__main__":
    main()
