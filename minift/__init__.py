"""minift: a from-scratch, readable framework for pretraining a small GPT and
adapting it to a task. Read the modules in this order (each imports only those
before it): errors, backend, files, tensor, ops, functional, gradcheck, testing, nn, model,
optim, data, runs, card, hf_gpt2, trainer, pretrain, adapt, generate, align, viz, learn, cli;
then the appendices: fast (CPU speed, `minift.fast.enable()`), dist (processes, on MPI),
cuda (the GPU kernels), bench and bench_kernels. `import minift` leaves the fast path off
and changes no process-wide setting; it never imports testing (which needs hypothesis, the
test extra)."""
from . import cuda, functional   # cuda registers the GPU kernels with backend; no CuPy import
from .gradcheck import GradcheckError, gradcheck
from .ops import concat, exp, log, masked_fill, matmul, relu, split, sqrt, stack, tanh, where
from .tensor import Function, Tensor, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"
