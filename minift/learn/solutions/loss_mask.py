"""Exercise `loss_mask`: which tokens instruction tuning learns from.

Instruction tuning teaches a language model to answer: each example is a prompt
("Review: The lid is superb.\\nSentiment:") followed by its answer (" positive"), as
token ids. Like pretraining, it is next-token prediction on the whole sequence,

    seq = prompt + answer,     x = seq[:-1],     y = seq[1:]     (y[t] is the token after x[t])

but the loss must count only the targets that are answer tokens: the model is taught to
answer, not to write prompts. Cross-entropy skips every target equal to IGNORE.

Write `masked_example`, returning (x, y) as int64 NumPy arrays, with y = IGNORE wherever
its token belongs to the prompt.

    check:  python -m minift.learn check loss_mask DIR
    minift's own: minift/adapt/prompts.py, masked_example
"""
import numpy as np

IGNORE = -100        # a target cross-entropy skips (its ignore_index)


def masked_example(prompt, answer):
    """prompt, answer: lists of token ids (both non-empty). Returns (x, y), int64 arrays
    of length len(prompt) + len(answer) - 1."""
    # SOLUTION: build x and y from prompt + answer, then set the targets that are prompt tokens to IGNORE
    seq = np.array(prompt + answer, dtype=np.int64)
    x, y = seq[:-1], seq[1:].copy()
    y[:len(prompt) - 1] = IGNORE
    return x, y
    # END SOLUTION
