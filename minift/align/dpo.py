"""Response log-probabilities and the DPO loss.

For a pair (prompt x, chosen y_w, rejected y_l), with log p(y|x) summed over the
response tokens:

    loss = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))))

beta * (log pi(y|x) - log ref(y|x)) is a response's implicit reward; the loss is low when
the chosen response's reward exceeds the rejected one's. While pi = ref every reward is
0 and the loss is ln 2.

A batch holds B pairs as 2B rows: the B chosen responses, then the B rejected ones.
Rows are (x, y) from adapt.prompts.masked_example: y is IGNORE on the prompt, so the
response log-probability is a sum over the targets that are not IGNORE.
"""
import numpy as np

from .. import functional as F
from ..adapt.prompts import IGNORE, instruction_batch
from ..backend import array_module, to_numpy
from ..tensor import Function, no_grad


def sequence_logprobs(model, x, y):
    """(B,) Tensor: log p(response | prompt) of each row, the sum of log p(y[t] | x[:t+1])
    over the targets that are not IGNORE (the response tokens)."""
    xp = array_module(y)
    logits, _ = model(x)                                                  # (B, T, V)
    logp = F.log_softmax(logits, axis=-1)                                 # (B, T, V)
    mask = y != IGNORE                                                    # (B, T)
    B, T = y.shape
    picked = logp[xp.arange(B)[:, None], xp.arange(T)[None, :], xp.where(mask, y, 0)]   # (B, T)
    return (picked * mask.astype(picked.dtype)).sum(axis=1)


class LogSigmoid(Function):
    """y = log sigmoid(z) = -log(1 + exp(-z)), computed as min(z, 0) - log(1 + exp(-|z|)),
    which never overflows.

    dy/dz = 1 - sigmoid(z) = sigmoid(-z) = e / (1 + e) for z >= 0, 1 / (1 + e) for z < 0,
    with e = exp(-|z|)
    """

    def forward(ctx, z):
        xp = array_module(z)
        ctx.save(z)
        return xp.minimum(z, 0) - xp.log1p(xp.exp(-xp.abs(z)))

    def backward(ctx, g):
        (z,) = ctx.saved
        xp = array_module(z)
        e = xp.exp(-xp.abs(z))
        return g * xp.where(z >= 0, e, 1.0) / (1.0 + e)


def dpo_loss(policy, reference, beta):
    """The DPO loss of B pairs, a mean over the pairs. `policy` is a (2B,) Tensor and
    `reference` a (2B,) array of summed response log-probs, the B chosen rows first."""
    B = policy.shape[0] // 2
    ratio = policy - reference.astype(policy.dtype)                       # (2B,) log pi - log ref
    margin = (ratio[:B] - ratio[B:]) * beta                               # (B,) reward margins
    return -LogSigmoid.apply(margin).mean()


def preference_batch(encoded, reference, pad_id):
    """make_batch for EpochBatches over pairs [(chosen (x, y), rejected (x, y)), ...]:
    pair indices -> (x (2B, T), y (2B, T), reference log-probs (2B,)), the B chosen rows
    first. `reference` (2N,) holds the N chosen responses' log-probs, then the N rejected."""
    n = len(encoded)
    pad = instruction_batch([c for c, _ in encoded] + [r for _, r in encoded], pad_id)

    def make_batch(indices):
        rows = np.concatenate([indices, np.asarray(indices) + n])
        x, y = pad(rows)
        return x, y, reference[rows]
    return make_batch


def split_pairs(batch, parts):
    """How the DPO loss splits for data parallelism (Trainer): a mean over the pairs,
    whose two rows (chosen i, rejected B + i) stay in one part: [(piece, pairs in it)]."""
    x, y, reference = batch
    B = len(x) // 2
    bounds = [B * i // parts for i in range(parts + 1)]
    rows = [np.r_[lo:hi, B + lo:B + hi] for lo, hi in zip(bounds, bounds[1:])]
    return [((x[r], y[r], reference[r]), len(r) // 2) for r in rows]


@no_grad()
def logprobs_of(model, examples, pad_id, batch_size=32):
    """(N,) float32 array: sequence_logprobs of every (x, y) example, in fixed batches."""
    pad = instruction_batch(examples, pad_id)
    out = [to_numpy(sequence_logprobs(model, *pad(list(range(i, min(i + batch_size, len(examples)))))).data)
           for i in range(0, len(examples), batch_size)]
    return np.concatenate(out).astype(np.float32)


def preference_metrics(policy_logps, reference_logps, beta):
    """The loss, the mean implicit rewards of chosen and rejected responses, their mean
    margin and reward accuracy (the share of pairs whose margin is positive), from (2N,)
    arrays of summed log-probs, the N chosen first."""
    n = len(policy_logps) // 2
    rewards = beta * (np.asarray(policy_logps, np.float64) - reference_logps)
    chosen, rejected = rewards[:n], rewards[n:]
    margin = chosen - rejected
    return {"val_loss": float(np.logaddexp(0.0, -margin).mean()), "reward_accuracy": float((margin > 0).mean()),
            "reward_margin": float(margin.mean()), "chosen_reward": float(chosen.mean()),
            "rejected_reward": float(rejected.mean())}
