"""minift.fast's attention held to the reference (minift/functional/attention.py): causal
tile by tile, padded, read from a block's projection; the outputs and gradients to
rounding, gradcheck in float64, in one tile and several, and whether or not the scores
are small enough to skip the shift by the row max. (The rest of minift.fast:
test_fast.py, whose helpers this file shares.)"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minift.functional as F
from minift import gradcheck
from minift.fast import attention as fast_attention
from minift.testing import leaves
from test_fast import TOLERANCE, assert_same, leaf, several_threads  # noqa: F401 (a fixture)


def reference_and_fast_attention(q, k, v, causal, lengths=None):
    if causal:
        return F.CausalAttention.apply, fast_attention.CausalAttention.apply
    return (lambda q, k, v: F.PaddedAttention.apply(q, k, v, lengths=lengths),
            lambda q, k, v: fast_attention.PaddedAttention.apply(q, k, v, lengths=lengths))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("b, h, tq, tk, causal", [(2, 3, 5, 5, True), (1, 2, 70, 70, True), (2, 1, 67, 131, True),
                                                  (3, 2, 130, 130, True), (3, 2, 33, 33, False),
                                                  (2, 2, 7, 70, False)])
def test_attention_equals_the_reference_in_tiles_and_with_padding(several_threads, dtype, b, h, tq, tk, causal):
    """One tile and several (64 query rows each), fewer queries than keys (decoding),
    padded rows: the reference's output and gradients."""
    rng = np.random.default_rng(tq + tk)
    q = rng.standard_normal((b, h, tq, 4))
    k, v = rng.standard_normal((b, h, tk, 4)), rng.standard_normal((b, h, tk, 4))
    lengths = None if causal else rng.integers(1, tk + 1, b)
    reference, faster = reference_and_fast_attention(q, k, v, causal, lengths)
    assert_same(reference, faster, [a.astype(dtype) for a in (q, k, v)], *TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_long_sequences_take_tiles_of_128_rows(several_threads, dtype):
    """From LONG_ROWS queries on, tiles of 128 rows (the last one short): the reference's
    outputs and gradients, from q k v and from a block's projection."""
    assert [b - a for a, b, _ in fast_attention._tiles(520, 520)] == [128] * 4 + [8]
    rng = np.random.default_rng(9)
    q, k, v = (rng.standard_normal((1, 2, 520, 3)) for _ in range(3))
    assert_same(F.CausalAttention.apply, fast_attention.CausalAttention.apply,
                [a.astype(dtype) for a in (q, k, v)], *TOLERANCE[dtype])
    assert_same(lambda x: F.self_attention(x, 2), lambda x: fast_attention.self_attention(x, 2),
                [rng.standard_normal((1, 520, 12)).astype(dtype)], *TOLERANCE[dtype])


def test_causal_attention_saves_only_the_tiles_exponentials():
    """The scores of keys in a tile's future are never computed or kept: the tiles'
    exponentials hold fewer numbers than the full T x T of the reference, and beside
    them one number a row (1 / its sum)."""
    rng = np.random.default_rng(1)
    for tq, tk in ((70, 70), (67, 131)):
        q = leaf(rng.standard_normal((1, 1, tq, 2)))
        k, v = leaf(rng.standard_normal((1, 1, tk, 2))), leaf(rng.standard_normal((1, 1, tk, 2)))
        out = fast_attention.CausalAttention.apply(q, k, v)
        exponentials, inverse_sums = out._ctx.saved[-1]
        assert len(exponentials) == 2 and sum(e.size for e in exponentials) < tq * tk
        assert inverse_sums.shape == (1, 1, tq, 1)
        assert gradcheck(fast_attention.CausalAttention.apply, [q, k, v])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("limit", [0.0, np.inf])
def test_causal_attention_with_and_without_the_shift_by_the_row_max(monkeypatch, several_threads, dtype, limit):
    """exp(S - row max) (limit 0: every tile shifts) and exp(S) (limit inf: none does)
    give the reference's outputs and gradients, in several tiles, from q k v and from
    a block's projection."""
    monkeypatch.setattr(fast_attention, "UNSHIFTED_LIMIT", limit)
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((2, 2, 130, 4)) for _ in range(3))
    assert_same(F.CausalAttention.apply, fast_attention.CausalAttention.apply,
                [a.astype(dtype) for a in (q, k, v)], *TOLERANCE[dtype])
    assert_same(lambda x: F.self_attention(x, 2), lambda x: fast_attention.self_attention(x, 2),
                [rng.standard_normal((2, 70, 12)).astype(dtype)], *TOLERANCE[dtype])


def test_causal_attention_of_large_scores_shifts_them():
    """Scores in the hundreds, where exp(S) would overflow: the tiles past the limit
    shift by the row max, and the outputs and gradients are still the reference's."""
    rng = np.random.default_rng(8)
    q, k, v = 12 * rng.standard_normal((1, 2, 70, 4)), 12 * rng.standard_normal((1, 2, 70, 4)), \
        rng.standard_normal((1, 2, 70, 4))
    assert np.abs(q @ k.swapaxes(-1, -2) / 2).max() > 300
    assert_same(F.CausalAttention.apply, fast_attention.CausalAttention.apply, [q, k, v], *TOLERANCE[np.float64])
    with np.errstate(over="raise"):
        out = fast_attention.CausalAttention.apply(*(a.astype(np.float32) for a in (q, k, v)))
    assert np.isfinite(out.data).all()
    assert gradcheck(fast_attention.CausalAttention.apply, [leaf(a[:, :1, :67] / 3) for a in (q, k, v)])


@given(data=st.data(), b=st.integers(1, 3), h=st.integers(1, 3), t=st.integers(1, 5), d=st.integers(1, 3),
       causal=st.booleans())
def test_self_attention_from_the_projection(data, b, h, t, d, causal):
    """QKVAttention reads the heads in place from the projection: the reference
    composition's numbers (split, attention, merge), in one node, with exact gradients."""
    qkv = data.draw(leaves((b, t, 3 * h * d)))
    lengths = None if causal else np.array(data.draw(st.lists(st.integers(1, t), min_size=b, max_size=b)))
    out = fast_attention.self_attention(qkv, h, causal=causal, lengths=lengths)
    assert type(out._ctx).__name__ == "QKVAttention"
    np.testing.assert_allclose(out.data, F.self_attention(qkv, h, causal=causal, lengths=lengths).data,
                               rtol=1e-12, atol=1e-13)
    assert gradcheck(lambda x: fast_attention.self_attention(x, h, causal=causal, lengths=lengths), [qkv])


def test_self_attention_matches_the_reference_in_several_tiles_with_their_gradients(several_threads):
    rng = np.random.default_rng(5)
    lengths = np.array([70, 41])
    for causal in (True, False):
        qkv = rng.standard_normal((2, 70, 3 * 2 * 3))
        reference = lambda x: F.self_attention(x, 2, causal=causal, lengths=lengths)    # noqa: E731
        faster = lambda x: fast_attention.self_attention(x, 2, causal=causal, lengths=lengths)   # noqa: E731
        assert_same(reference, faster, [qkv], 1e-10, 1e-12)
    assert gradcheck(lambda x: fast_attention.self_attention(x, 2), [leaf(rng.standard_normal((1, 67, 6)))])
