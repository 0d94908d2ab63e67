"""Property tests of the fused ops: forward against a direct NumPy formula, backward
against central differences in float64; stability at logits of magnitude 1e4."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minift
import minift.functional as F
from minift import gradcheck
from minift.testing import arrays, check_gradients, leaves, small_shapes


def leaf(x):
    return minift.tensor(x, requires_grad=True)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@st.composite
def shape_and_one_axis(draw):
    shape = draw(small_shapes)
    return shape, draw(st.integers(-len(shape), len(shape) - 1))


@given(data=st.data(), sa=shape_and_one_axis())
def test_softmax_and_log_softmax(data, sa):
    shape, axis = sa
    x = data.draw(arrays(shape, -5, 5))
    t = leaf(x)
    np.testing.assert_allclose(F.softmax(t, axis=axis).data, np_softmax(x, axis), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(F.log_softmax(t, axis=axis).data, np.log(np_softmax(x, axis)), rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda t: F.softmax(t, axis=axis), [t])
    assert gradcheck(lambda t: F.log_softmax(t, axis=axis), [t])


@st.composite
def logits_and_targets(draw):
    lead = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))
    v = draw(st.integers(2, 6))
    logits = draw(arrays(lead + (v,), -4, 4))
    targets = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, v - 1)))
    ignore = draw(hnp.arrays(np.bool_, lead))
    ignore.flat[0] = False        # at least one target counts
    targets = np.where(ignore, -100, targets)
    return logits, targets


def np_cross_entropy(logits, targets, weight=None):
    v = logits.shape[-1]
    lp = np.log(np_softmax(logits.reshape(-1, v), -1))
    t = targets.reshape(-1)
    keep = t != -100
    w = np.ones(v) if weight is None else weight
    rows = np.nonzero(keep)[0]
    return -(w[t[rows]] * lp[rows, t[rows]]).sum() / w[t[rows]].sum()


@given(lt=logits_and_targets(), weighted=st.booleans())
def test_cross_entropy(lt, weighted):
    logits, targets = lt
    weight = np.linspace(0.5, 2.0, logits.shape[-1]) if weighted else None
    t = leaf(logits)
    loss = F.cross_entropy(t, targets, weight=weight)
    np.testing.assert_allclose(loss.item(), np_cross_entropy(logits, targets, weight), rtol=1e-10)
    assert gradcheck(lambda t: F.cross_entropy(t, targets, weight=weight), [t])


def test_cross_entropy_all_ignored_is_a_clear_error():
    with pytest.raises(ValueError, match="every target equals ignore_index"):
        F.cross_entropy(leaf(np.zeros((2, 3))), np.array([-100, -100]))


def test_cross_entropy_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 4\)"):
        F.cross_entropy(leaf(np.zeros((2, 4))), np.array([0, 1, 2]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_stable_at_1e4(dtype):
    x = np.array([[1e4, -1e4, 0.0, 5e3], [-1e4, -1e4 + 1, -1e4, -1e4]], dtype=dtype)
    targets = np.array([1, 2])
    for f in (lambda t: F.softmax(t), lambda t: F.log_softmax(t),
              lambda t: F.cross_entropy(t, targets)):
        t = leaf(x.copy())
        y = f(t)
        y.backward(np.ones(y.shape, dtype=dtype))
        assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(t.grad))
    # exact values at this magnitude: log p of the -1e4 logit against a 1e4 max is -2e4
    np.testing.assert_allclose(F.log_softmax(leaf(x)).data[0, 1], -2e4, rtol=1e-6)
    # row 0: -log p = 1e4 - (-1e4); row 1, shifted by its max: 1 + log(1 + 3/e)
    expected = (2e4 + 1 + math.log(1 + 3 / math.e)) / 2
    np.testing.assert_allclose(F.cross_entropy(leaf(x), targets).item(), expected, rtol=1e-6)


def np_layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=5),
       affine=st.sampled_from(["both", "weight", "none"]))
def test_layer_norm(data, shape, affine):
    x = data.draw(arrays(shape))
    x = x + np.linspace(0, 1, shape[-1])    # rows never constant: var >> eps
    c = shape[-1]
    w = data.draw(leaves((c,))) if affine != "none" else None
    b = data.draw(leaves((c,))) if affine == "both" else None
    t = leaf(x)
    y = F.layer_norm(t, w, b)
    np.testing.assert_allclose(y.data, np_layer_norm(x, None if w is None else w.data, None if b is None else b.data),
                               rtol=1e-10, atol=1e-12)
    inputs = [t] + [p for p in (w, b) if p is not None]
    if affine == "both":
        assert gradcheck(lambda t, w, b: F.layer_norm(t, w, b), inputs)
    elif affine == "weight":
        assert gradcheck(lambda t, w: F.layer_norm(t, w, None), inputs)
    else:
        assert gradcheck(lambda t: F.layer_norm(t, None, None), inputs)


@given(data=st.data(), shape=small_shapes)
def test_gelu(data, shape):
    x = data.draw(arrays(shape, -6, 6))
    ref = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(F.gelu(leaf(x)).data, ref, rtol=1e-12, atol=1e-15)


def test_gelu_backward():
    check_gradients(F.gelu, shapes=small_shapes, domain=(-6, 6))


@given(data=st.data(), shape=small_shapes, p=st.sampled_from([0.1, 0.5]), seed=st.integers(0, 2**16))
def test_dropout(data, shape, p, seed):
    x = data.draw(arrays(shape))
    t = leaf(x)
    y = F.dropout(t, p, True, np.random.default_rng(seed))
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], x[kept] / (1 - p), rtol=1e-12)
    # the same seed gives the same mask, so gradcheck sees a deterministic function
    assert gradcheck(lambda t: F.dropout(t, p, True, np.random.default_rng(seed)), [t])
    assert F.dropout(t, p, False, None) is t


def test_dropout_keeps_expectation_and_rejects_bad_p():
    y = F.dropout(minift.tensor(np.ones(200_000)), 0.3, True, np.random.default_rng(0))
    assert abs(y.data.mean() - 1.0) < 0.01
    with pytest.raises(ValueError, match="dropout probability"):
        F.dropout(minift.tensor(np.ones(2)), 1.0, True, np.random.default_rng(0))


@given(data=st.data(), v=st.integers(1, 6), c=st.integers(1, 4),
       ids_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5))
def test_embedding(data, v, c, ids_shape):
    w = data.draw(leaves((v, c)))
    ids = data.draw(hnp.arrays(np.int64, ids_shape, elements=st.integers(0, v - 1)))
    np.testing.assert_array_equal(F.embedding(ids, w).data, w.data[ids])
    assert gradcheck(lambda w: F.embedding(ids, w), [w])


def test_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="integers"):
        F.embedding(np.array([0.0]), leaf(np.zeros((2, 2))))


def np_causal_attention(q, k, v):
    tq, tk = q.shape[-2], k.shape[-2]
    s = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
    future = np.arange(tk)[None, :] > np.arange(tk - tq, tk)[:, None]
    s = np.where(future, -np.inf, s)
    return np_softmax(s, -1) @ v


@given(data=st.data(), b=st.integers(1, 2), h=st.integers(1, 2), t=st.integers(1, 5), d=st.integers(1, 4))
def test_causal_attention(data, b, h, t, d):
    q, k, v = (data.draw(leaves((b, h, t, d))) for _ in range(3))
    out = F.causal_attention(q, k, v)
    np.testing.assert_allclose(out.data, np_causal_attention(q.data, k.data, v.data), rtol=1e-10, atol=1e-12)
    assert gradcheck(F.causal_attention, [q, k, v])


def test_causal_attention_with_fewer_queries_than_keys():
    rng = np.random.default_rng(0)
    q = leaf(rng.standard_normal((1, 2, 2, 3)))
    k, v = leaf(rng.standard_normal((1, 2, 5, 3))), leaf(rng.standard_normal((1, 2, 5, 3)))
    np.testing.assert_allclose(F.causal_attention(q, k, v).data, np_causal_attention(q.data, k.data, v.data),
                               rtol=1e-12)
    assert gradcheck(F.causal_attention, [q, k, v])


def test_causal_attention_keeps_at_most_the_probabilities():
    rng = np.random.default_rng(0)
    q, k, v = (leaf(rng.standard_normal((2, 2, 6, 3))) for _ in range(3))
    out = F.causal_attention(q, k, v)
    saved = out._ctx.saved
    biggest = max(a.size for a in saved if hasattr(a, "size"))
    assert biggest <= 2 * 2 * 6 * 6


def test_causal_attention_on_longer_sequences():
    """Past minift.fast's 64-row tiles too (tests/test_fast_attention.py holds the tiles to this):
    the plain formula's numbers and exact gradients, queries fewer than keys too."""
    rng = np.random.default_rng(1)
    for tq, tk in ((70, 70), (67, 131)):
        q = leaf(rng.standard_normal((1, 1, tq, 2)))
        k, v = leaf(rng.standard_normal((1, 1, tk, 2))), leaf(rng.standard_normal((1, 1, tk, 2)))
        out = F.causal_attention(q, k, v)
        np.testing.assert_allclose(out.data, np_causal_attention(q.data, k.data, v.data), rtol=1e-10, atol=1e-12)
        assert gradcheck(F.causal_attention, [q, k, v])


def test_causal_attention_shape_errors():
    with pytest.raises(ValueError, match="causal_attention"):
        F.causal_attention(leaf(np.zeros((1, 1, 4, 2))), leaf(np.zeros((1, 1, 3, 2))), leaf(np.zeros((1, 1, 3, 2))))


@given(data=st.data(), lead=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3),
       n_in=st.integers(1, 4), n_out=st.integers(1, 4), with_bias=st.booleans())
def test_linear(data, lead, n_in, n_out, with_bias):
    x = data.draw(leaves(lead + (n_in,)))
    w = data.draw(leaves((n_in, n_out)))
    b = data.draw(leaves((n_out,))) if with_bias else None
    ref = x.data @ w.data + (b.data if with_bias else 0)
    np.testing.assert_allclose(F.linear(x, w, b).data, ref, rtol=1e-12, atol=1e-12)
    if with_bias:
        assert gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])
    else:
        assert gradcheck(lambda x, w: F.linear(x, w), [x, w])


def test_linear_shape_error():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(leaf(np.ones((2, 3))), leaf(np.ones((4, 5))))


def np_padded_attention(q, k, v, lengths):
    s = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])                      # (B, H, Tq, Tk)
    padding = np.arange(k.shape[-2])[None, :] >= np.asarray(lengths)[:, None]  # (B, Tk)
    s = np.where(padding[:, None, None, :], -np.inf, s)
    return np_softmax(s, -1) @ v


@given(data=st.data(), b=st.integers(1, 3), h=st.integers(1, 2), tq=st.integers(1, 5), tk=st.integers(1, 5),
       d=st.integers(1, 4))
def test_padded_attention(data, b, h, tq, tk, d):
    q = data.draw(leaves((b, h, tq, d)))
    k, v = data.draw(leaves((b, h, tk, d))), data.draw(leaves((b, h, tk, d)))
    lengths = np.array(data.draw(st.lists(st.integers(1, tk), min_size=b, max_size=b)))
    out = F.padded_attention(q, k, v, lengths)
    np.testing.assert_allclose(out.data, np_padded_attention(q.data, k.data, v.data, lengths), rtol=1e-10,
                               atol=1e-12)
    assert gradcheck(lambda q, k, v: F.padded_attention(q, k, v, lengths), [q, k, v])


def test_padded_attention_without_lengths_sees_every_key():
    rng = np.random.default_rng(3)
    q, k, v = (leaf(rng.standard_normal((2, 2, 6, 3))) for _ in range(3))
    np.testing.assert_allclose(F.padded_attention(q, k, v).data, np_padded_attention(q.data, k.data, v.data, [6, 6]),
                               rtol=1e-12)
    assert gradcheck(F.padded_attention, [q, k, v])


def test_a_padded_batch_gives_each_sequence_its_result_alone():
    """Row b of a right-padded batch, cut to its lengths[b] real positions, equals the
    sequence attended alone (to float64 rounding: the sums run over wider rows), whatever
    the padding holds; so do the gradients of a loss on the real positions, and padding
    keys and values get none."""
    rng = np.random.default_rng(4)
    lengths = np.array([7, 3, 1, 5])
    q, k, v = (rng.standard_normal((4, 2, 7, 3)) for _ in range(3))
    padding = (np.arange(7)[None, :] >= lengths[:, None])[:, None, :, None]     # (B, 1, T, 1)
    k, v = np.where(padding, 1e3, k), np.where(padding, -1e3, v)      # padding of large values: must not leak
    q, k, v = leaf(q), leaf(k), leaf(v)
    out = F.padded_attention(q, k, v, lengths)
    real = 1.0 - padding                                # the loss reads real positions only
    (out * out * real).sum().backward()
    for b, n in enumerate(lengths):
        alone = [leaf(t.data[b:b + 1, :, :n].copy()) for t in (q, k, v)]
        y = F.padded_attention(*alone)
        (y * y).sum().backward()
        np.testing.assert_allclose(out.data[b, :, :n], y.data[0], rtol=1e-12, atol=1e-13)
        for padded, single in zip((q, k, v), alone):
            np.testing.assert_allclose(padded.grad[b, :, :n], single.grad[0], rtol=1e-10, atol=1e-12)
        assert not k.grad[b, :, n:].any() and not v.grad[b, :, n:].any()


def test_padded_attention_argument_errors():
    q = leaf(np.zeros((2, 1, 3, 2)))
    with pytest.raises(ValueError, match="padded_attention: lengths"):
        F.padded_attention(q, q, q, np.array([3, 0]))
    with pytest.raises(ValueError, match="padded_attention: lengths"):
        F.padded_attention(q, q, q, np.array([4, 1]))
    with pytest.raises(ValueError, match="padded_attention: expected"):
        F.padded_attention(q, leaf(np.zeros((2, 1, 3, 3))), leaf(np.zeros((2, 1, 3, 3))))


def np_self_attention(qkv, n_head, causal, lengths=None):
    """Head by head, by the formula: head h of q, k and v is columns h D .. (h + 1) D of
    each third of the projection's C3 = 3C columns."""
    B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    D = C // n_head
    out = np.empty((B, T, C))
    for b in range(B):
        for h in range(n_head):
            q, k, v = (qkv[b, :, i * C + h * D:i * C + (h + 1) * D] for i in range(3))
            s = q @ k.T / math.sqrt(D)
            hidden = np.triu(np.ones((T, T), bool), 1) if causal else np.arange(T)[None, :] >= lengths[b]
            out[b, :, h * D:(h + 1) * D] = np_softmax(np.where(hidden, -np.inf, s), -1) @ v
    return out


@given(data=st.data(), b=st.integers(1, 3), h=st.integers(1, 3), t=st.integers(1, 5), d=st.integers(1, 3),
       causal=st.booleans())
def test_self_attention_from_the_projection(data, b, h, t, d, causal):
    qkv = data.draw(leaves((b, t, 3 * h * d)))
    lengths = None if causal else np.array(data.draw(st.lists(st.integers(1, t), min_size=b, max_size=b)))
    out = F.self_attention(qkv, h, causal=causal, lengths=lengths)
    np.testing.assert_allclose(out.data, np_self_attention(qkv.data, h, causal, lengths), rtol=1e-12, atol=1e-13)
    assert gradcheck(lambda x: F.self_attention(x, h, causal=causal, lengths=lengths), [qkv])


def test_self_attention_argument_errors():
    with pytest.raises(ValueError, match=r"self_attention: expected qkv \(B, T, 3C\)"):
        F.self_attention(leaf(np.zeros((2, 3, 10))), 2)
    with pytest.raises(ValueError, match="self_attention: lengths"):
        F.self_attention(leaf(np.zeros((2, 3, 6))), 1, causal=False, lengths=np.array([3, 4]))


def test_class_weights_that_are_zero_for_every_target_are_a_clear_error():
    logits, targets = leaf(np.zeros((3, 4))), np.array([1, 1, 2])
    with pytest.raises(ValueError, match="class weights of the targets sum to 0.0"):
        F.cross_entropy(logits, targets, weight=np.array([1.0, 0.0, 0.0, 1.0]))
    loss = F.cross_entropy(logits, targets, weight=np.array([0.0, 0.0, 1.0, 0.0]))    # one target counts
    assert float(loss.data) == pytest.approx(math.log(4))
