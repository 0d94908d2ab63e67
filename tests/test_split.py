"""How each training loss splits over a batch's rows (Trainer's data_parallel): the
parts, weighted, give the whole batch's loss and gradients, on the threads' step
(minift.fast.training) in float64, for every loss that fine-tuning and alignment train:
a classifier's (with class weights: a weighted mean), an instruction loss (a mean over
answer tokens) and DPO's (a mean over pairs whose two rows must stay together).
The processes' step (minift.dist) cuts with the same functions: tests/test_distributed.py."""
import numpy as np
import pytest

from minift import dist, trainer
from minift.adapt.heads import swap_head
from minift.adapt.tasks import ClassifierTask, InstructTask
from minift.align.dpo import dpo_loss, sequence_logprobs, split_pairs
from minift.errors import MiniftError
from minift.fast import threads, training
from minift.model import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


@pytest.fixture
def two_threads(monkeypatch):
    threads.threads()
    monkeypatch.setattr(threads, "_workers", [threads._Worker()])
    monkeypatch.setattr(threads, "_threads", 2)


def whole_and_parts(model, loss_fn, batch, split):
    """(loss, gradients) of the plain step on the whole batch, then of the threads' step in parts."""
    results = []
    for step in (trainer.forward_backward, training.forward_backward):
        model.zero_grad()
        loss = step(model, loss_fn, batch, scale=0.5, data_parallel=split)
        results.append((float(loss), {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}))
    return results


def assert_same(whole, parts):
    (whole_loss, whole_grads), (loss, grads) = whole, parts
    assert loss == pytest.approx(whole_loss, rel=1e-12, abs=0)
    assert whole_grads.keys() == grads.keys()
    for name in whole_grads:
        np.testing.assert_allclose(grads[name], whole_grads[name], rtol=1e-10, atol=1e-13, err_msg=name)


def classifier_batch(rng, B=5):
    ids = rng.integers(0, 11, (B, 8))
    lengths = rng.integers(2, 9, B)
    labels = np.array([0, 0, 2, 1, 2][:B])          # the parts (2 and 3 rows) hold different classes
    return ids, lengths, labels


@pytest.mark.parametrize("weight", [None, np.array([0.5, 3.0, 1.25])])
def test_a_classifier_loss_splits_by_rows_weighted_by_their_class(two_threads, weight):
    model = swap_head(GPT(CONFIG, seed=0, dtype=np.float64), 3, pooling="last", seed=1)
    task = ClassifierTask(["a", "b", "c"], None, 8, weight=weight)
    batch = classifier_batch(np.random.default_rng(3))
    assert training.data_parallel_parts(model, batch) == 2
    assert_same(*whole_and_parts(model, task.loss, batch, task.split))


def test_class_weights_need_the_weighted_split(two_threads):
    """The test above can fail: weighting the parts by their rows alone misses it."""
    model = swap_head(GPT(CONFIG, seed=0, dtype=np.float64), 3, pooling="last", seed=1)
    task = ClassifierTask(["a", "b", "c"], None, 8, weight=np.array([0.5, 3.0, 1.25]))
    batch = classifier_batch(np.random.default_rng(3))
    by_rows = ClassifierTask(["a", "b", "c"], None, 8).split
    whole, parts = whole_and_parts(model, task.loss, batch, by_rows)
    assert abs(parts[0] - whole[0]) > 1e-3


def test_an_instruction_loss_splits_by_answer_tokens(two_threads):
    model = GPT(CONFIG, seed=0, dtype=np.float64)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 11, (5, 8)), np.full((5, 8), -100)
    y[0, 5:], y[1, 7:], y[2, 3:], y[3, 6:], y[4, 2:] = 3, 4, 5, 6, 7     # answers of different lengths
    task = InstructTask(["a", "b"], None, 8)
    assert task.split is trainer.split_by_targets
    assert_same(*whole_and_parts(model, task.loss, (x, y), task.split))


def test_dpo_splits_by_pairs_and_keeps_each_pairs_rows_together(two_threads):
    model = GPT(CONFIG, seed=0, dtype=np.float64)
    rng = np.random.default_rng(5)
    B = 3                                              # pairs: parts of 1 and 2
    x, y = rng.integers(0, 11, (2 * B, 8)), rng.integers(0, 11, (2 * B, 8))
    y[:, :3] = -100                                    # the prompts are not scored
    reference = rng.normal(-20, 2, 2 * B)
    pieces = split_pairs((x, y, reference), 2)
    assert [w for _, w in pieces] == [1, 2]
    assert [p[0].tolist() for p, _ in pieces] == [x[[0, 3]].tolist(), x[[1, 2, 4, 5]].tolist()]   # chosen, then rejected

    def loss_fn(model, batch):
        return dpo_loss(sequence_logprobs(model, batch[0], batch[1]), batch[2], beta=0.5)
    assert_same(*whole_and_parts(model, loss_fn, (x, y, reference), split_pairs))
    whole, parts = whole_and_parts(model, loss_fn, (x, y, reference), True)   # by rows: pairs cut apart
    assert abs(parts[0] - whole[0]) > 1e-3


def test_split_rows_cuts_every_array_and_sums_the_weights():
    batch = (np.arange(10).reshape(5, 2), np.arange(5), "kept")
    pieces = trainer.split_rows(batch, 2, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert [w for _, w in pieces] == [3.0, 12.0] and all(type(w) is float for _, w in pieces)
    assert pieces[1][0][0].tolist() == [[4, 5], [6, 7], [8, 9]] and pieces[1][0][1].tolist() == [2, 3, 4]
    assert pieces[0][0][2] == "kept"
    assert [w for _, w in trainer.split_by_targets((np.zeros((3, 4)), np.array([[1, -100, 2, 2]] * 3)), 3)] == [3, 3, 3]


def test_a_run_that_cannot_split_is_refused_on_several_processes_in_one_sentence(monkeypatch):
    class TwoRanks:
        def Get_size(self):
            return 2
    monkeypatch.setattr(dist, "world", lambda: TwoRanks())
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.1), seed=0)
    batch = (np.zeros((2, 8), np.int64), np.zeros((2, 8), np.int64))
    with pytest.raises(MiniftError, match=r"cannot be split over 2 processes \(its model has dropout"):
        dist.forward_backward(model, lambda m, b: m(*b)[1], batch, data_parallel=False)
    with pytest.raises(MiniftError, match=r"cannot be split over 2 processes \(its Trainer has data_parallel=False"):
        dist.forward_backward(GPT(CONFIG, seed=0), lambda m, b: m(*b)[1], batch, data_parallel=False)


def test_fewer_rows_or_pairs_than_parts_and_weights_that_sum_to_nothing(two_threads):
    """One pair on two threads: one part is empty (weight 0) and skipped; a row of class
    weight 0 the same.
    Class weights that are 0 for every class in the batch leave nothing to weigh by: the
    threads' step runs the batch whole, and cross_entropy says what is wrong."""
    model = GPT(CONFIG, seed=0, dtype=np.float64)
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))

    def loss_fn(model, batch):
        return dpo_loss(sequence_logprobs(model, batch[0], batch[1]), batch[2], beta=0.5)
    assert [w for _, w in split_pairs((x, y, rng.normal(size=2)), 2)] == [0, 1]
    assert_same(*whole_and_parts(model, loss_fn, (x, y, rng.normal(size=2)), split_pairs))
    classifier = swap_head(GPT(CONFIG, seed=0, dtype=np.float64), 3, pooling="last", seed=1)
    task = ClassifierTask(["a", "b", "c"], None, 8, weight=np.array([0.0, 0.0, 1.0]))
    weighed = tuple(a[1:3] for a in classifier_batch(rng))             # labels 0 and 2: parts of weight 0 and 1
    assert [w for _, w in task.split(weighed, 2)] == [0.0, 1.0]
    assert_same(*whole_and_parts(classifier, task.loss, weighed, task.split))
    nothing = tuple(a[:2] for a in classifier_batch(rng))             # labels 0 and 0: weight 0 each
    with pytest.raises(ValueError, match="class weights of the targets sum to 0"):
        training.forward_backward(classifier, task.loss, nothing, data_parallel=task.split)


def test_split_by_targets_refuses_a_batch_without_a_row_of_targets_per_row():
    """A classifier's batch (ids, lengths, labels) has no targets in batch[1]: lengths
    must not pass for them, or class weights would be silently ignored."""
    ids, lengths, labels = classifier_batch(np.random.default_rng(7))
    with pytest.raises(ValueError, match="a row of them per input row"):
        trainer.split_by_targets((ids, lengths, labels), 2)
    assert trainer.splitter(np.bool_(True)) is trainer.split_by_targets and trainer.splitter(False) is None
