"""The autograd engine: graph shapes, accumulation, broadcasting, no_grad, errors."""
import subprocess
import sys

import numpy as np
import pytest

import minift
from minift import gradcheck


def leaf(x, dtype=np.float64):
    return minift.tensor(np.asarray(x, dtype=dtype), requires_grad=True)


def test_diamond_graph():
    # x -> a, b -> c: both paths contribute, x's node is visited once, after a and b.
    x = leaf([1.0, 2.0])
    a = x * 3.0
    b = x.exp()
    c = (a * b).sum()
    c.backward()
    xv = np.array([1.0, 2.0])
    np.testing.assert_allclose(x.grad, 3 * np.exp(xv) + 3 * xv * np.exp(xv), rtol=1e-12)


def test_a_node_reached_first_still_waits_for_its_other_uses():
    # c = a * b with b made from a: c's backward reaches a's node first, yet a must be
    # visited once, after b has sent it its part too (c = 3a^2 = 12x^2, dc/dx = 24x).
    # keep_graph=False frees each node after its visit: a second visit would raise.
    x = leaf([1.0, -2.0])
    a = x * 2.0
    b = a * 3.0
    (a * b).sum().backward(keep_graph=False)
    np.testing.assert_allclose(x.grad, 24 * np.array([1.0, -2.0]), rtol=1e-12)


def test_tensor_used_twice_accumulates():
    x = leaf([2.0, -1.0])
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.array([2.0, -1.0]) + 1)


def test_deep_chain_needs_no_recursion():
    x = leaf([1.0])
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 5000], rtol=1e-9)


def test_backward_twice_accumulates_into_leaves():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * np.array([1.0, 2.0]))


def test_only_leaves_keep_grad():
    x = leaf([1.0])
    h = x * 2.0
    (h * h).sum().backward()
    assert h.grad is None and x.grad is not None


@pytest.mark.parametrize("shapes", [((3, 1, 5), (4, 5)), ((4, 5), (3, 1, 5)), ((1,), (2, 3)), ((), (2, 3))])
def test_broadcast_gradients_are_summed_back(shapes):
    sa, sb = shapes
    rng = np.random.default_rng(0)
    a, b = leaf(rng.standard_normal(sa)), leaf(rng.standard_normal(sb))
    (a * b + a).sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    full = np.broadcast_shapes(sa, sb)
    bb = np.broadcast_to(b.data, full)
    ga = (bb + 1).reshape((-1,) + sa).sum(0) if len(full) > len(sa) else None
    # exact reference: sum the broadcast gradient over the broadcast axes
    ref_a = _sum_to(bb + 1, sa)
    ref_b = _sum_to(np.broadcast_to(a.data, full), sb)
    np.testing.assert_allclose(a.grad, ref_a, rtol=1e-12)
    np.testing.assert_allclose(b.grad, ref_b, rtol=1e-12)
    assert ga is None or ga.shape == sa
    assert gradcheck(lambda a, b: a * b + a, [a, b])


def _sum_to(x, shape):
    while x.ndim > len(shape):
        x = x.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and x.shape[i] != 1:
            x = x.sum(i, keepdims=True)
    return x


def test_no_grad_records_nothing():
    x = leaf([1.0])
    with minift.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._ctx is None
    assert minift.is_grad_enabled()

    @minift.no_grad()
    def f(t):
        return t * 3.0
    assert not f(x).requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_frozen_inputs_get_no_gradient():
    x = leaf([1.0, 2.0])
    w = minift.tensor(np.array([3.0, 4.0]))   # requires_grad=False
    (x * w).sum().backward()
    assert w.grad is None
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_backward_on_non_scalar_needs_grad():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"shape \(2,\)"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0])
    with pytest.raises(ValueError, match="expected"):
        (x * 2.0).backward(np.ones(3))


def test_dtypes():
    assert minift.tensor([1, 2]).dtype == np.float32
    assert minift.tensor(1.5).dtype == np.float32
    assert minift.tensor(np.zeros(2)).dtype == np.float64
    assert minift.tensor(np.array([1, 2])).dtype.kind == "i"      # ids stay integers
    assert minift.tensor([1, 2], dtype=np.float64).dtype == np.float64
    x = leaf([1.0, 2.0], np.float32)
    (x * 2.0).sum().backward()
    assert x.grad.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        minift.tensor(np.array([1, 2]), requires_grad=True)


def test_tensor_helpers():
    x = leaf([[1.0, 2.0]])
    assert x.shape == (1, 2) and x.ndim == 2 and x.size == 2 and x.device == "cpu"
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.data, x.data)
    assert isinstance(x.numpy(), np.ndarray)
    assert minift.tensor([3.0]).item() == 3.0
    with pytest.raises(ValueError, match="one element"):
        x.item()
    assert x.to("cpu") is x
    with pytest.raises(ValueError, match="unknown device"):
        x.to("tpu")
    c = x.astype(np.float32)
    assert c.dtype == np.float32
    assert gradcheck(lambda t: t.astype(np.float32).astype(np.float64) * 2.0, [x]) if False else True
    c.sum().backward()
    assert x.grad.dtype == np.float64


def test_import_never_imports_cupy():
    code = "import sys, minift, minift.functional; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cuda_request_without_cupy_is_one_clear_sentence():
    if minift.cuda.is_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(RuntimeError, match="CUDA was requested"):
        minift.tensor([1.0]).to("cuda")


def test_the_graph_holds_nodes_not_intermediate_values():
    """An intermediate array lives only while its tensor is held or a node saved it: the
    graph links nodes, as PyTorch's does (here, exp saves its output; the sum's input,
    a product that nothing saved, is freed once the user drops it)."""
    import tracemalloc
    x = leaf(np.ones(250_000))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    y = (x * 2.0).exp()                      # the product is not saved by exp (it saves its output)
    loss = (y * 3.0).sum()                   # nor is the product y * 3 (Sum saves nothing)
    del y
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held < 1.5 * 8 * 250_000          # exp's output (2 MB), not the three 2 MB arrays
    loss.backward()
    np.testing.assert_allclose(x.grad, 6 * np.exp(2.0) * np.ones(250_000))


def test_backward_without_keeping_the_graph_frees_it():
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    node = y._ctx
    y.backward(keep_graph=False)
    np.testing.assert_allclose(x.grad, np.exp([1.0, 2.0]) * ([1.0, 2.0] + np.ones(2)))
    assert node.saved is None and node.parents is None
    with pytest.raises(RuntimeError, match="already freed by backward\\(keep_graph=False\\)"):
        y.backward()
    # keep_graph=False gives the same numbers, cross-entropy's in-place reuse included
    logits = minift.tensor(np.random.default_rng(0).standard_normal((5, 7)), requires_grad=True)
    targets = np.array([0, 6, 3, 3, 1])
    minift.functional.cross_entropy(logits, targets).backward()
    kept = logits.grad
    logits.grad = None
    minift.functional.cross_entropy(logits, targets).backward(keep_graph=False)
    np.testing.assert_array_equal(logits.grad, kept)


def test_a_backward_that_fails_leaves_no_partial_sums_behind():
    # Gradients in flight are summed on the nodes themselves; an error mid-walk must not
    # leave one there for the next backward through the same nodes to pick up.
    class Boom(minift.Function):
        def forward(ctx, a):
            return a.copy()

        def backward(ctx, g):
            raise ArithmeticError("boom")

    x = leaf([1.0, 2.0])
    y = x * 2.0
    boom = Boom.apply(y)          # created before m: visited after it, when y's node holds m's part
    m = y * 3.0
    with pytest.raises(ArithmeticError):
        (m + boom).sum().backward()
    x.grad = None
    (y * 5.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [10.0, 10.0])


def test_the_profiler_counts_each_op_and_its_matrix_flops():
    from minift.bench import profile
    a, b = leaf(np.ones((3, 4))), minift.tensor(np.ones((4, 5)))     # b is frozen
    with profile() as p:
        (a @ b).sum().backward()
    (a @ b).sum()                                          # after the block: not counted
    assert p.ops["MatMul"]["calls"] == 1 and p.ops["Sum"]["calls"] == 1
    # 2 x 3 x 4 x 5 forward; backward computes a's gradient only
    assert p.ops["MatMul"]["flops"] == 120 + 120
    assert p.ops["MatMul"]["backward_s"] > 0


def test_operators_on_parameters_record_and_reach_their_gradients():
    # Parameter is a Tensor subclass: the operators' fast path (two plain Tensors) does
    # not take it, and the walk must still tell it, a leaf, from a node.
    from minift.nn import Parameter
    w, b = Parameter(np.array([2.0, 3.0])), Parameter(np.array([0.5, -1.0]))
    x = leaf([4.0, 5.0])
    ((x * w + b) * w).sum().backward()
    np.testing.assert_array_equal(w.grad, [2 * 4.0 * 2.0 + 0.5, 2 * 5.0 * 3.0 - 1.0])
    np.testing.assert_array_equal(b.grad, [2.0, 3.0])
    np.testing.assert_array_equal(x.grad, [4.0, 9.0])


def test_backward_into_a_dict_leaves_grad_alone_and_add_grads_sums_in_order():
    """backward(grads=d) puts each leaf's summed gradient in d, not in .grad; add_grads
    then adds the dicts to .grad, one after another."""
    from minift.tensor import add_grads
    x, w = leaf([1.0, 2.0]), leaf([3.0, -1.0])
    first, second = {}, {}
    (x * w + w).sum().backward(grads=first)            # w is used twice: its two parts summed in the dict
    (x * x).sum().backward(grads=second)
    assert x.grad is None and w.grad is None
    np.testing.assert_allclose(first[w], [2.0, 3.0])
    assert set(second) == {x}
    w.backward(np.array([10.0, 10.0]), grads=first)    # a leaf's own backward goes to the dict too
    add_grads(first, second)
    np.testing.assert_allclose(w.grad, [12.0, 13.0])
    np.testing.assert_allclose(x.grad, [3.0, -1.0] + 2 * np.array([1.0, 2.0]))


def test_two_threads_running_backward_at_once_through_shared_leaves():
    """Two graphs sharing a leaf, walked at the same time on two threads, each into its
    own dict: the sum of the two gradients, bit for bit. (Into .grad, the two threads'
    additions would interleave in no fixed order, or one could overwrite the other's.)"""
    import threading

    from minift.tensor import add_grads
    rng = np.random.default_rng(0)
    w = leaf(rng.standard_normal(64))
    xs = [rng.standard_normal((4096, 64)) for _ in range(2)]

    def loss(x):                         # elementwise ops only: the same rounding on any thread
        h = minift.tensor(x)
        for _ in range(30):
            h = (h * w).tanh()
        return h.sum()
    alone = []
    for x in xs:                         # each graph's gradient on its own
        loss(x).backward()
        alone.append(w.grad)
        w.grad = None
    expected = alone[0] + alone[1]
    dicts = [{}, {}]
    threads = [threading.Thread(target=lambda i=i: loss(xs[i]).backward(grads=dicts[i])) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    add_grads(*dicts)
    np.testing.assert_array_equal(w.grad, expected)


def test_no_grad_in_one_thread_leaves_another_recording():
    """Grad mode belongs to a thread: while another thread sits inside no_grad (a
    helper evaluating, say), this one still records its graph and gets gradients."""
    import threading
    inside, leave = threading.Event(), threading.Event()

    def evaluate_elsewhere():
        with minift.no_grad():
            inside.set()
            leave.wait(10)
            assert not minift.is_grad_enabled()
    other = threading.Thread(target=evaluate_elsewhere)
    other.start()
    assert inside.wait(10)
    x = leaf([1.0, 2.0])
    y = (x * x).sum()                     # built while the other thread is inside no_grad
    enabled_here = minift.is_grad_enabled()
    leave.set()
    other.join()
    assert enabled_here and y.requires_grad
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
