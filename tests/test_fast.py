"""minift.fast, the CPU-speed appendix, held to the reading path it replaces.

Each implementation it registers gives the reference's numbers: bit for bit where the
sums are taken in the same order, otherwise to rounding (tight in float64, float32's
tolerance in float32), and passes gradcheck in float64; across several threads and
several parts (attention, across tiles and padding: test_fast_attention.py). Then: what
turning it on and off does, and that importing minift does nothing of it."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minift
import minift.functional as F
from minift import backend, fast, gradcheck, optim, trainer
from minift.fast import functional as fast_functional
from minift.fast import products, threads, training


def leaf(x):
    return minift.tensor(x, requires_grad=True)


@pytest.fixture(scope="module")
def several_threads():
    """Three threads (helpers started here), whatever the machine has; the count the
    process had is back afterwards (the extra helpers stay parked)."""
    before = threads.threads()
    threads.set_threads(3)
    yield
    threads.set_threads(before)


@pytest.fixture
def fast_on():
    fast.enable()
    yield
    fast.disable()


def outputs_and_gradients(op, arrays, g_seed=0, wanted=None):
    """op(*leaves) and the gradient of sum(g * out) for each input, g drawn from g_seed."""
    inputs = [leaf(a.copy()) if i in (wanted or range(len(arrays))) else a.copy() for i, a in enumerate(arrays)]
    out = op(*inputs)
    g = np.random.default_rng(g_seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(g)
    return [out.data] + [t.grad for t in inputs if isinstance(t, minift.Tensor)]


def assert_same(reference, fast_op, arrays, rtol, atol, wanted=None):
    for expected, got in zip(outputs_and_gradients(reference, arrays, wanted=wanted),
                             outputs_and_gradients(fast_op, arrays, wanted=wanted)):
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


TOLERANCE = {np.float64: (1e-10, 1e-12), np.float32: (2e-5, 2e-6)}


# ----------------------------------------------------------------------------- the fused ops

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data(), n=st.integers(1, 40), n_in=st.integers(1, 70), n_out=st.integers(1, 70),
       with_bias=st.booleans())
def test_linear_equals_the_reference(several_threads, dtype, data, n, n_in, n_out, with_bias):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    arrays = [rng.standard_normal((2, n, n_in)), rng.standard_normal((n_in, n_out))]
    arrays += [rng.standard_normal(n_out)] if with_bias else []
    assert_same(F.Linear.apply, fast_functional.Linear.apply, [a.astype(dtype) for a in arrays], *TOLERANCE[dtype])


def test_linear_of_large_products_split_over_threads(several_threads):
    """Large enough that the products and the bias sums are cut into blocks."""
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((3, 80, 96)), rng.standard_normal((96, 300)), rng.standard_normal(300)]
    assert_same(F.Linear.apply, fast_functional.Linear.apply, arrays, 1e-10, 1e-12)
    assert gradcheck(fast_functional.Linear.apply, [leaf(a[:2, :5, :7] if a.ndim == 3 else a[:7, :6] if a.ndim == 2
                                                         else a[:6]) for a in arrays])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data(), rows=st.integers(1, 50), c=st.integers(2, 40), affine=st.booleans())
def test_layer_norm_equals_the_reference(several_threads, dtype, data, rows, c, affine):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = 3 * rng.standard_normal((rows, c)) + rng.standard_normal(c)
    w, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)

    def op(cls):
        return lambda x, *wb: cls.apply(x, *(wb or (None, None)))
    arrays = [a.astype(dtype) for a in (x, w, b) if a is not None]
    assert_same(op(F.LayerNorm), op(fast_functional.LayerNorm), arrays, *TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data(), shape=st.tuples(st.integers(1, 30), st.integers(1, 40)))
def test_gelu_equals_the_reference(several_threads, dtype, data, shape):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = 4 * rng.standard_normal(shape)
    x.flat[0] = -30.0                                   # where the gate underflows to 0
    assert_same(F.GELU.apply, fast_functional.GELU.apply, [x.astype(dtype)], *TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data(), n=st.integers(2, 60), v=st.integers(1, 50), weighted=st.booleans())
def test_cross_entropy_equals_the_reference(several_threads, dtype, data, n, v, weighted):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    logits = 3 * rng.standard_normal((n, v))
    targets = rng.integers(0, v, n)
    targets[rng.random(n) < 0.3] = -100                  # ignored rows
    targets[0] = rng.integers(0, v)
    weight = rng.uniform(0.5, 2.0, v).astype(dtype) if weighted else None

    def op(cls):
        return lambda z: cls.apply(z, targets, weight=weight)
    assert_same(op(F.CrossEntropy), op(fast_functional.CrossEntropy), [logits.astype(dtype)], *TOLERANCE[dtype])


def test_cross_entropy_reusing_its_saved_array_in_its_last_backward_gives_the_same_gradient():
    logits = np.random.default_rng(0).standard_normal((5, 7))
    targets = np.array([0, 6, 3, 3, 1])
    grads = []
    for keep in (True, False):
        z = leaf(logits.copy())
        fast_functional.CrossEntropy.apply(z, targets).backward(keep_graph=keep)
        grads.append(z.grad)
    np.testing.assert_array_equal(*grads)


def test_each_fused_op_passes_gradcheck_in_float64(several_threads):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal(5), rng.standard_normal(5)
    assert gradcheck(fast_functional.LayerNorm.apply, [leaf(x), leaf(w), leaf(b)])
    assert gradcheck(fast_functional.GELU.apply, [leaf(3 * x)])
    assert gradcheck(fast_functional.Linear.apply, [leaf(x), leaf(rng.standard_normal((5, 4))), leaf(b[:4])])
    targets = np.array([[1, 4, -100], [0, 0, 2]])
    assert gradcheck(lambda z: fast_functional.CrossEntropy.apply(z.reshape(6, 5), targets.reshape(-1)), [leaf(x)])


# ----------------------------------------------------------------------------- threads

def test_row_blocks_on_several_threads_give_the_same_numbers(monkeypatch, fast_on):
    """With the work split into many row blocks over threads, the row-wise ops and
    attention's heads give bit for bit what one block gives."""
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 9, 5)), rng.standard_normal(5), rng.standard_normal(5)
    logits, targets = rng.standard_normal((18, 7)), rng.integers(0, 7, 18)
    q, k, v = (rng.standard_normal((2, 3, 70, 4)) for _ in range(3))
    qkv, lengths = rng.standard_normal((3, 70, 12)), np.array([70, 9, 33])
    # wide enough that weight and bias gradients are summed by blocks of columns (a split
    # matrix product rounds differently from a whole one: BLAS takes other paths)
    x2, w2, b2 = rng.standard_normal((2, 40, 64)), rng.standard_normal(64), rng.standard_normal(64)
    x3, w3, b3 = rng.standard_normal((2, 8, 64)), rng.standard_normal((64, 64)), rng.standard_normal(64)

    def run():
        inputs = [leaf(a.copy()) for a in (x, w, b, logits, q, k, v, qkv, x2, w2, b2, x3, w3, b3)]
        tx, tw, tb, tl, tq, tk, tv, tqkv, tx2, tw2, tb2, tx3, tw3, tb3 = inputs
        out = (F.layer_norm(tx, tw, tb) * 1.5).sum() + F.gelu(tx).sum() + F.cross_entropy(tl, targets) \
            + (F.causal_attention(tq, tk, tv) ** 2).sum() + (F.self_attention(tqkv, 2) ** 2).sum() \
            + (F.self_attention(tqkv, 2, causal=False, lengths=lengths) ** 2).sum() \
            + (F.layer_norm(tx2, tw2, tb2) ** 2).sum() + (F.linear(tx3, tw3, tb3) ** 2).sum()
        assert type(out._ctx).__module__ == "minift.ops"
        out.backward()
        return [out.data] + [t.grad for t in inputs]

    monkeypatch.setattr(threads, "_threads", 1)
    one_block = run()
    monkeypatch.setattr(threads, "_workers", [threads._Worker(), threads._Worker()])
    monkeypatch.setattr(threads, "_threads", 3)
    monkeypatch.setattr(threads, "ROW_BLOCK_ELEMENTS", 1)           # one row per block where possible
    for a, b_ in zip(one_block, run()):
        np.testing.assert_array_equal(a, b_)


def test_tasks_on_several_threads_all_run_and_an_error_comes_back_after_them(several_threads):
    import threading
    done, ran_on = [0] * 40, set()

    def task(i):
        def run():
            ran_on.add(threading.get_ident())
            threads.split_rows(lambda rows: None, 100)      # a split inside a task runs inline,
            assert len(threads.blocks(lambda rows: None, 100)) == 1   # as one block
            done[i] += 1
            if i == 3:
                raise KeyError("task 3")
        return run
    assert len(threads.blocks(lambda rows: None, 100)) == 3
    with pytest.raises(KeyError, match="task 3"):
        threads.run_tasks([task(i) for i in range(40)])
    assert done == [1] * 40                                  # every task once, the failing one too
    threads.run_tasks([task(i) for i in range(4, 40)])      # the helpers are free again
    assert done == [1] * 4 + [2] * 36


def test_the_profiler_counts_splits_and_the_callers_wait_for_its_helpers(monkeypatch):
    import threading

    from minift.bench import profile
    from minift.tensor import Function
    threads.threads()
    monkeypatch.setattr(threads, "_workers", [threads._Worker()])
    monkeypatch.setattr(threads, "_threads", 2)
    caller, started = threading.get_ident(), threading.Event()

    def task():                          # the helper's copy takes 20 ms: the caller waits for it
        if threading.get_ident() == caller:
            started.wait(1.0)            # (and so leaves the other copy to the helper)
        else:
            started.set()
            threading.Event().wait(0.02)

    def split():
        started.clear()
        threads.run_tasks([task, task])

    class Split(Function):               # an op whose forward splits: the wait is counted to it
        def forward(ctx, x):
            split()
            return x

    with profile() as p:
        split()
        Split.apply(leaf([1.0]))
        threads.split_rows(lambda rows: None, 1)            # too small to split: not counted
    split()                                                  # after the block: not counted
    assert p.waits[0] == 2
    assert 0.02 < p.waits[1] < 2.0
    assert 0.01 < p.ops["Split"]["wait_s"] < 1.0             # one of the two waits
    assert threads._waits is None                            # counting stops with the block


# ----------------------------------------------------------------------------- products, scatter, AdamW

def test_matrix_products_split_over_threads_give_the_products(several_threads):
    """products.matmuls on three threads: each product cut into blocks of rows or of
    columns (the longer side of its result; one too small to be worth it, one of a
    transposed operand), and the extra tasks run too."""
    rng = np.random.default_rng(1)
    pairs = [(rng.standard_normal((200, 96)), rng.standard_normal((96, 80))),      # 3 blocks
             (rng.standard_normal((8, 512)), rng.standard_normal((512, 300))),     # by columns
             (rng.standard_normal((64, 128)), rng.standard_normal((128, 500))),    # by columns
             (rng.standard_normal((5, 4)), rng.standard_normal((4, 3))),           # small
             (rng.standard_normal((96, 200)).T, rng.standard_normal((96, 70)))]    # a transposed view
    ran = []
    results = products.matmuls(*pairs, also=[lambda: ran.append(1), lambda: ran.append(2)])
    for (a, b), got in zip(pairs, results):
        np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)
    assert sorted(ran) == [1, 2]
    for a, b in pairs + [(rng.standard_normal((2, 3, 40, 5)).swapaxes(-1, -2), rng.standard_normal((3, 40, 6)))]:
        np.testing.assert_allclose(products.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    bias = rng.standard_normal(80)
    np.testing.assert_allclose(products.matmul(*pairs[0], bias), pairs[0][0] @ pairs[0][1] + bias, rtol=1e-12)


def test_row_scatter_add_is_np_add_at_bit_for_bit():
    """The rank-ordered scatter for whole rows (an embedding's backward) adds the
    repeats of an index in their original order, as np.add.at does."""
    rng = np.random.default_rng(0)
    index = rng.integers(0, 30, 400)
    index[:50] = 7                                            # one index repeated many times
    values = rng.standard_normal((400, 6)).astype(np.float32)
    start = rng.standard_normal((30, 6)).astype(np.float32)
    expected = start.copy()
    backend.scatter_add(expected, index, values)             # the reference: np.add.at
    got = start.copy()
    products.scatter_add(got, index, values)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adamw_in_place_equals_the_reference_step(dtype):
    rng = np.random.default_rng(2)
    p, m, v = rng.standard_normal((13, 5)).astype(dtype), np.zeros((13, 5), dtype), np.zeros((13, 5), dtype)
    expected = (p.copy(), m.copy(), v.copy())
    got = (p.copy(), m.copy(), v.copy())
    for t in range(1, 5):
        g = rng.standard_normal((13, 5)).astype(dtype)
        hyper = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        expected = optim.adamw_step(*expected[:1], g, *expected[1:], t, **hyper)
        arrays = got
        got = training.adamw_step(got[0], g, got[1], got[2], t, **hyper)
        assert all(a is b for a, b in zip(arrays, got))         # in place
        for e, x in zip(expected, got):
            assert x.dtype == dtype
            np.testing.assert_allclose(x, e, rtol=TOLERANCE[dtype][0] * 10, atol=TOLERANCE[dtype][1])


def test_adamw_in_slices_equals_adamw_whole(monkeypatch, several_threads):
    """A large parameter is updated slice by slice (a small scratch array a thread), the
    slices over the threads: the numbers are those of one pass over the whole parameter,
    bit for bit."""
    from minift.nn import Parameter
    results = []
    fast.enable()
    try:
        for scratch in (1 << 30, 7):                          # one pass; slices of one row
            monkeypatch.setattr(training, "SCRATCH_ELEMENTS", scratch)
            w = Parameter(np.random.default_rng(1).standard_normal((13, 5)).astype(np.float32))
            opt = optim.AdamW([{"params": [w], "weight_decay": 0.1}], lr=1e-2)
            for step in range(3):
                w.grad = np.random.default_rng(step + 10).standard_normal((13, 5)).astype(np.float32)
                opt.step()
            results.append((w.data.copy(), opt.state[id(w)]["m"].copy(), opt.state[id(w)]["v"].copy()))
    finally:
        fast.disable()
    for whole, sliced in zip(*results):
        np.testing.assert_array_equal(whole, sliced)


# ----------------------------------------------------------------------------- the data-parallel step

def tiny_gpt(dtype=np.float64):
    from minift.model import GPT, GPTConfig
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8), seed=0, dtype=dtype)


def masked_loss(model, batch):
    x, y = batch
    logits, _ = model(x)
    return F.cross_entropy(logits, y)


@pytest.mark.parametrize("masked", [False, True])
def test_data_parallel_step_gives_the_whole_batchs_loss_and_gradients(monkeypatch, masked):
    """training.forward_backward with the batch's rows in parts on two threads: the loss
    and every gradient of the whole batch, to float64 rounding (the parts' sums add in
    another order); the same bits run after run. Masked: most of one part's targets are
    IGNORE (as in instruction tuning), so the parts score unequal numbers of targets."""
    threads.threads()
    monkeypatch.setattr(threads, "_workers", [threads._Worker()])
    monkeypatch.setattr(threads, "_threads", 2)
    model = tiny_gpt()
    rng = np.random.default_rng(4)
    batch = (rng.integers(0, 11, (5, 8)), rng.integers(0, 11, (5, 8)))   # 5 rows: parts of 2 and 3
    if masked:
        batch[1][:2, 1:] = -100
        batch[1][4, :5] = -100
    assert training.data_parallel_parts(model, batch) == 2

    def run(step):
        model.zero_grad()
        loss = step(model, masked_loss, batch, scale=0.5, data_parallel=True)
        return float(loss), {n: p.grad.copy() for n, p in model.named_parameters()}
    whole_loss, whole = run(trainer.forward_backward)
    loss, grads = run(training.forward_backward)
    assert abs(loss - whole_loss) < 1e-13 and whole_loss == 0.5 * float(masked_loss(model, batch).data)
    assert whole.keys() == grads.keys()
    for name in whole:
        np.testing.assert_allclose(grads[name], whole[name], rtol=1e-10, atol=1e-13, err_msg=name)
    again = run(training.forward_backward)[1]
    assert all(np.array_equal(again[n], grads[n]) for n in grads)


def test_a_part_with_nothing_scored_is_skipped_and_targets_are_required(monkeypatch):
    threads.threads()
    monkeypatch.setattr(threads, "_workers", [threads._Worker()])
    monkeypatch.setattr(threads, "_threads", 2)
    model = tiny_gpt()
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 11, (4, 8)), rng.integers(0, 11, (4, 8))
    y[:2] = -100                                          # the first part scores nothing
    whole = float(trainer.forward_backward(model, masked_loss, (x, y)))
    assert float(training.forward_backward(model, masked_loss, (x, y), data_parallel=True)) == \
        pytest.approx(whole, rel=1e-12)
    with pytest.raises(ValueError, match="integer targets"):
        training.forward_backward(model, lambda m, b: masked_loss(m, (b[0], y[:len(b[0])])), (x,), data_parallel=True)


def test_data_parallel_parts_only_for_small_models_and_short_rows(monkeypatch):
    threads.threads()
    monkeypatch.setattr(threads, "_workers", [threads._Worker()])
    monkeypatch.setattr(threads, "_threads", 2)
    model = tiny_gpt()
    short = np.zeros((4, training.DATA_PARALLEL_MAX_T), np.int64)
    long = np.zeros((4, training.DATA_PARALLEL_MAX_T + 1), np.int64)
    assert training.data_parallel_parts(model, (short, short)) == 2
    assert training.data_parallel_parts(model, (long, long)) == 1
    monkeypatch.setattr(training, "DATA_PARALLEL_MAX_GRADIENTS", model.num_parameters() - 1)
    assert training.data_parallel_parts(model, (short, short)) == 1          # one more set of gradients: too much
    model.transformer.requires_grad_(False)
    assert training.data_parallel_parts(model, (short, short)) == 2          # frozen weights have no gradients


def test_the_ledger_of_a_data_parallel_step_counts_every_part(monkeypatch):
    """Under a step whose batch runs in two parts on two threads at once, the profiler
    counts every op of both parts (none lost to the other thread), and the ledger says
    how its shares are counted."""
    from minift.bench import ledger, profile
    from minift.pretrain import lm_loss
    threads.threads()
    monkeypatch.setattr(threads, "_workers", [threads._Worker()])
    monkeypatch.setattr(threads, "_threads", 2)
    model = tiny_gpt(np.float32)
    batch = tuple(np.random.default_rng(0).integers(0, 11, (4, 8)) for _ in range(2))
    counts = []
    for step in (trainer.forward_backward, training.forward_backward):
        with profile() as p:
            for _ in range(20):
                step(model, lm_loss, batch, data_parallel=True)
        counts.append({name: e["calls"] for name, e in p.ops.items()})
    assert counts[1]["Linear"] == 2 * counts[0]["Linear"] == 2 * 20 * 2 * 4   # 4 Linear a block
    assert all(counts[1][name] == 2 * n for name, n in counts[0].items())

    def step(timings=None):
        training.forward_backward(model, lm_loss, batch, data_parallel=True)
    step.parts = 2
    text = ledger(step, 2, 1e9)
    assert "2 parts at once" in text and "threads idle" in text and "one hand-off a step" in text


# ----------------------------------------------------------------------------- turning it on and off

def test_enable_registers_every_implementation_and_disable_removes_them():
    assert backend.registered("cpu") == []
    fast.enable()
    try:
        assert backend.registered("cpu") == sorted(fast.IMPLEMENTATIONS) and fast.is_enabled()
        x = np.ones((2, 3, 4))
        assert backend.implementation("layer_norm", F.LayerNorm, x) is fast_functional.LayerNorm
        out = F.layer_norm(leaf(x), leaf(np.ones(4)), leaf(np.zeros(4)))
        assert isinstance(out._ctx, fast_functional.LayerNorm)
    finally:
        fast.disable()
    assert backend.registered("cpu") == [] and not fast.is_enabled()
    assert type(F.layer_norm(leaf(x), None, None)._ctx) is F.LayerNorm


def test_reference_flag_and_environment_keep_the_plain_path(monkeypatch):
    monkeypatch.delenv("MINIFT_FAST", raising=False)
    try:
        assert fast.enable_unless_reference(reference=True) is False
        monkeypatch.setenv("MINIFT_FAST", "0")
        assert fast.enable_unless_reference() is False
        monkeypatch.setenv("MINIFT_FAST", "1")
        assert fast.enable_unless_reference() is True
    finally:
        fast.disable()


def test_the_command_line_turns_it_on_unless_reference():
    """cli.main hands the command's --reference flag to the `speed` it is given (python -m
    minift gives fast.enable_unless_reference), before the command runs."""
    from minift import cli
    asked = []
    for argv in (["generate", "--model", "no-such-run", "--prompt", "x"],
                 ["generate", "--model", "no-such-run", "--prompt", "x", "--reference"]):
        assert cli.main(argv, speed=asked.append) == 2            # no such run: one sentence, exit 2
    assert asked == [False, True]


def test_importing_minift_changes_nothing_in_the_process():
    """`import minift` (and building and training a model with the Python API) registers
    nothing for the CPU, starts no thread, leaves BLAS and the allocator alone."""
    code = ("import threading, numpy as np, minift, sys\n"
            "from minift import backend\n"
            "from minift.model import GPT, GPTConfig\n"
            "m = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=4))\n"
            "m(np.zeros((2, 8), np.int64))[0].sum().backward()\n"
            "assert backend.registered('cpu') == [], backend.registered('cpu')\n"
            "assert 'minift.fast' not in sys.modules\n"
            "assert threading.active_count() == 1, threading.enumerate()\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
