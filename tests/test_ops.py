"""Property tests of the primitive ops: forward against the NumPy formula, backward
against central differences (float64, every element, tight tolerance)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minift
from minift import gradcheck
from minift.testing import arrays, broadcast_pairs, check_gradients, leaves, small_shapes


def leaf(x):
    return minift.tensor(x, requires_grad=True)


# -- elementwise binary ops, on broadcasting pairs of shapes --------------------------

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data(), shapes=broadcast_pairs)
def test_binary_ops_broadcast(name, data, shapes):
    op, ref = BINARY[name]
    sa, sb = shapes
    a = data.draw(arrays(sa))
    b = data.draw(arrays(sb))
    if name == "div":   # keep the divisor away from zero: |b| in [0.5, 3.5]
        b = np.sign(b + 1e-9) * (np.abs(b) + 0.5)
    np.testing.assert_allclose(op(leaf(a), leaf(b)).data, ref(a, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_ops_backward_on_broadcasting_shapes(name):
    op, _ = BINARY[name]
    if name != "div":
        check_gradients(op, shapes=broadcast_pairs)
    else:               # the divisor kept away from zero, of either sign
        check_gradients(op, shapes=broadcast_pairs, domain=[(-3, 3), (0.5, 3.5)])
        check_gradients(op, shapes=broadcast_pairs, domain=[(-3, 3), (-3.5, -0.5)])


@given(data=st.data(), shape=small_shapes)
def test_binary_ops_with_python_scalars(data, shape):
    a = data.draw(leaves(shape))
    for f, ref in [(lambda x: 2.5 - x * 3 + 1, lambda x: 2.5 - x * 3 + 1),
                   (lambda x: 1.5 / (x * x + 1) - x / 4, lambda x: 1.5 / (x * x + 1) - x / 4)]:
        np.testing.assert_allclose(f(a).data, ref(a.data), rtol=1e-12)
        assert gradcheck(f, [a])


def test_scalars_keep_float32():
    x = minift.tensor(np.ones(3, dtype=np.float32))
    assert (x * 2.0 + 1 - 0.5 / 3.0).dtype == np.float32
    assert (x ** 2).dtype == np.float32


# -- unary ops ------------------------------------------------------------------------
# Domain-restricted ops get shifted inputs: log(x^2 + 0.5), sqrt(x^2 + 0.5).

UNARY = {
    "neg": (lambda x: -x, lambda x: -x, ()),
    "exp": (lambda x: x.exp(), np.exp, ()),
    "tanh": (lambda x: x.tanh(), np.tanh, ()),
    "log": (lambda x: (x * x + 0.5).log(), lambda x: np.log(x * x + 0.5), ()),
    "sqrt": (lambda x: (x * x + 0.5).sqrt(), lambda x: np.sqrt(x * x + 0.5), ()),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0), (0.0,)),
    "pow2": (lambda x: x ** 2, lambda x: x ** 2, ()),
    "pow3": (lambda x: x ** 3, lambda x: x ** 3, ()),
    "pow_frac": (lambda x: (x * x + 0.5) ** 1.5, lambda x: (x * x + 0.5) ** 1.5, ()),
    "pow_neg": (lambda x: (x * x + 0.5) ** -0.5, lambda x: (x * x + 0.5) ** -0.5, ()),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data(), shape=small_shapes)
def test_unary_ops(name, data, shape):
    op, ref, kinks = UNARY[name]
    x = data.draw(arrays(shape, avoid=kinks))
    np.testing.assert_allclose(op(leaf(x)).data, ref(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops_backward(name):
    op, _, kinks = UNARY[name]
    check_gradients(op, shapes=small_shapes, avoid=kinks)


# -- matmul ---------------------------------------------------------------------------

@st.composite
def matmul_shapes(draw):
    """(..., M, K) and (..., K, N) with broadcastable batch axes (possibly none)."""
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    ba, bb = batch.input_shapes
    return ba + (m, k), bb + (k, n)


@given(data=st.data(), shapes=matmul_shapes())
def test_matmul(data, shapes):
    sa, sb = shapes
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    np.testing.assert_allclose((leaf(a) @ leaf(b)).data, a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_backward():
    check_gradients(lambda x, y: x @ y, shapes=matmul_shapes())


def test_matmul_shared_weight_over_batch():
    rng = np.random.default_rng(0)
    x, w = leaf(rng.standard_normal((2, 3, 4))), leaf(rng.standard_normal((4, 5)))
    np.testing.assert_allclose((x @ w).data, x.data @ w.data, rtol=1e-12)
    assert gradcheck(lambda x, w: x @ w, [x, w])
    assert gradcheck(lambda x, w: x.transpose(0, 2, 1) @ w.T, [x, leaf(rng.standard_normal((5, 3)))])


def test_matmul_incompatible_shapes_names_both():
    a, b = minift.tensor(np.ones((2, 3))), minift.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a @ b


# -- reductions -----------------------------------------------------------------------

@st.composite
def shape_and_axis(draw):
    shape = draw(small_shapes)
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                          st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)))
    return shape, axis, draw(st.booleans())


@pytest.mark.parametrize("name", ["sum", "mean"])
@given(data=st.data(), sak=shape_and_axis())
def test_sum_mean(name, data, sak):
    shape, axis, keepdims = sak
    x = data.draw(arrays(shape))
    t = leaf(x)
    f = (lambda t: getattr(t, name)(axis=axis, keepdims=keepdims))
    np.testing.assert_allclose(f(t).data, getattr(np, name)(x, axis=axis, keepdims=keepdims), rtol=1e-12)
    assert gradcheck(f, [t])


@given(data=st.data(), sak=shape_and_axis())
def test_max(data, sak):
    shape, axis, keepdims = sak
    # distinct values 0.1 apart, so no tie sits within eps of another
    n = int(np.prod(shape))
    x = data.draw(st.permutations(list(range(n)))) 
    x = np.array(x, dtype=np.float64).reshape(shape) * 0.1
    t = leaf(x)
    f = lambda t: t.max(axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(f(t).data, np.max(x, axis=axis, keepdims=keepdims))
    assert gradcheck(f, [t])


def test_max_ties_share_the_gradient():
    t = leaf(np.array([1.0, 3.0, 3.0, 2.0]))
    t.max().backward()
    np.testing.assert_array_equal(t.grad, [0.0, 0.5, 0.5, 0.0])


# -- shape ops ------------------------------------------------------------------------

@given(data=st.data(), shape=small_shapes)
def test_reshape(data, shape):
    x = data.draw(arrays(shape))
    t = leaf(x)
    f = lambda t: t.reshape(-1) * (1 + np.arange(x.size) / x.size)     # distinct weights of order 1
    np.testing.assert_array_equal(t.reshape(x.size, 1).data, x.reshape(x.size, 1))
    assert gradcheck(f, [t])


@given(data=st.data(), shape=small_shapes)
def test_permute_transpose_swapaxes(data, shape):
    x = data.draw(arrays(shape))
    perm = data.draw(st.permutations(list(range(len(shape)))))
    t = leaf(x)
    np.testing.assert_array_equal(t.permute(*perm).data, x.transpose(perm))
    np.testing.assert_array_equal(t.T.data, x.T)
    assert gradcheck(lambda t: t.permute(*perm), [t])
    assert gradcheck(lambda t: t.T, [t])
    if len(shape) >= 2:
        np.testing.assert_array_equal(t.swapaxes(0, -1).data, np.swapaxes(x, 0, -1))
        assert gradcheck(lambda t: t.swapaxes(0, -1), [t])


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=5))
def test_getitem_slices(data, shape):
    x = data.draw(arrays(shape))
    start = data.draw(st.integers(0, shape[0] - 1))
    step = data.draw(st.integers(1, 2))
    index = (slice(start, None, step),) + (Ellipsis,) + ((0,) if len(shape) > 1 else ())
    t = leaf(x)
    np.testing.assert_array_equal(t[index].data, x[index])
    assert gradcheck(lambda t: t[index], [t])


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_getitem_integer_arrays_with_repeats(data, shape):
    x = data.draw(arrays(shape))
    idx = np.array(data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6)))
    t = leaf(x)
    np.testing.assert_array_equal(t[idx].data, x[idx])
    assert gradcheck(lambda t: t[idx], [t])
    # repeated rows accumulate: the gradient of sum(x[idx]) counts each row's uses
    t.grad = None
    t[idx].sum().backward()
    counts = np.bincount(idx, minlength=shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    np.testing.assert_array_equal(t.grad, np.broadcast_to(counts, shape))


@given(data=st.data(), shape=small_shapes, n=st.integers(1, 3))
def test_concat_stack_split(data, shape, n):
    xs = [data.draw(arrays(shape)) for _ in range(n)]
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    ts = [leaf(x) for x in xs]
    np.testing.assert_array_equal(minift.concat(ts, axis=axis).data, np.concatenate(xs, axis=axis))
    np.testing.assert_array_equal(minift.stack(ts, axis=axis).data, np.stack(xs, axis=axis))
    # distinct weights of order 1 (large ones would inflate the finite differences' roundoff)
    size = n * int(np.prod(shape))
    w = (1 + np.arange(size) / size).reshape(np.concatenate(xs, axis=axis).shape)
    assert gradcheck(lambda *ts: minift.concat(ts, axis=axis) * w, ts)
    assert gradcheck(lambda *ts: minift.stack(ts, axis=axis) * w.reshape(np.stack(xs, axis=axis).shape), ts)
    joined = leaf(np.concatenate(xs, axis=axis))
    parts = minift.split(joined, n, axis=axis)
    for p, x in zip(parts, xs):
        np.testing.assert_array_equal(p.data, x)
    assert gradcheck(lambda j: minift.split(j, n, axis=axis)[-1] * 2 + minift.split(j, n, axis=axis)[0], [joined])


def test_split_sizes_and_errors():
    t = leaf(np.arange(6.0))
    a, b = minift.split(t, [2, 4], axis=0)
    assert a.shape == (2,) and b.shape == (4,)
    with pytest.raises(ValueError, match="do not add up"):
        minift.split(t, [2, 2])
    with pytest.raises(ValueError, match="does not divide"):
        minift.split(t, 4)


@given(data=st.data(), shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=1, max_dims=3, max_side=4))
def test_where_and_masked_fill(data, shapes):
    sc, sa, sb = shapes.input_shapes
    cond = data.draw(hnp.arrays(np.bool_, sc))
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    ta, tb = leaf(a), leaf(b)
    np.testing.assert_array_equal(minift.where(cond, ta, tb).data, np.where(cond, a, b))
    assert gradcheck(lambda x, y: minift.where(cond, x, y), [ta, tb])
    mask = data.draw(hnp.arrays(np.bool_, sa))
    np.testing.assert_array_equal(ta.masked_fill(mask, -7.0).data, np.where(mask, -7.0, a))
    assert gradcheck(lambda x: x.masked_fill(mask, -7.0), [ta])


def test_comparisons_return_plain_arrays():
    t = minift.tensor([1.0, 2.0, 3.0])
    assert isinstance(t > 1.5, np.ndarray)
    np.testing.assert_array_equal(t <= 2.0, [True, True, False])


def test_pow_of_a_tensor_exponent_is_a_clear_error():
    t = leaf(np.ones(2))
    with pytest.raises(TypeError, match="constant exponent"):
        t ** t
