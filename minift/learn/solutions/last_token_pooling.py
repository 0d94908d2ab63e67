"""Exercise `last_token_pooling`: one vector per text from a GPT's hidden states.

A batch of texts of different lengths is right-padded to one length T: row b holds
lengths[b] real tokens, then padding. The backbone gives a hidden state per position,
hidden (B, T, C). In a causal model the last real token is the only one that has seen
the whole text (and padding comes after it, so it never saw any): its hidden state is
the text's summary, which the classification head reads.

Write `pool_last`, returning the (B, C) tensor of each row's last real hidden state. Pick
the rows by indexing the Tensor itself (a Tensor indexed with integer arrays is an op
with a backward), so the gradient flows back to exactly those positions.

    check:  python -m minift.learn check last_token_pooling DIR
    minift's own: minift/adapt/heads.py, pool
"""
import numpy as np


def pool_last(hidden, lengths):
    """hidden: a Tensor (B, T, C); lengths: an integer NumPy array (B,), each in 1..T.
    Returns a Tensor (B, C): row b is hidden[b, lengths[b] - 1]."""
    # SOLUTION: index hidden with two integer arrays: the rows 0..B-1 and each row's last real position
    lengths = np.asarray(lengths)
    return hidden[np.arange(len(lengths)), lengths - 1]
    # END SOLUTION
