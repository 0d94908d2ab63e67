"""minift: a from-scratch, readable framework for pretraining a small GPT and
adapting it to a task. Read the modules in this order (README.md's layout table):
backend, files, kernels (GPU only), tensor, ops, functional, gradcheck, nn, model,
optim, data, finetune, generate, train, cli."""
from . import cuda, functional
from .gradcheck import GradcheckError, gradcheck
from .ops import concat, exp, log, masked_fill, matmul, relu, split, sqrt, stack, tanh, where
from .tensor import Function, Tensor, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"
