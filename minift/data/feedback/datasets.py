"""What the world yields: the unlabeled pretraining corpus and the labeled sets.

Each stream has its own string seed ("minift-feedback-corpus-0", ...), so the corpus,
the two test sets and the training set never depend on one another's sizes.
"""
import itertools
import random

from .lexicon import LABELS
from .planner import generate_review

DOCUMENT_SEPARATOR = "\n\n"
RATED_FRACTION = 0.35     # share of corpus documents written as rated reviews
MAX_TRAIN = 500           # fine-tuning with few labels is the point of the demos

# How the built-in corpus writes a rated review, before its label. Fine-tuning's default
# prompt format matches it on purpose: a model pretrained on this corpus has seen the
# prompt followed by a label, so it can answer zero-shot.
RATED_REVIEW_TEMPLATE = "Review: {text}\nSentiment:"


def rated_review(text, label):
    """A corpus document that gives its label: "Review: <text>\\nSentiment: <label>"."""
    return f"{RATED_REVIEW_TEMPLATE.format(text=text)} {label}"


def _iter_documents(seed):
    """An endless, seeded stream of corpus documents (parts A and B mixed)."""
    rng = random.Random(f"minift-feedback-corpus-{seed}")
    while True:
        text, label = generate_review(rng, "AB")
        if rng.random() < RATED_FRACTION:
            yield rated_review(text, label)
        else:
            yield text


def corpus_documents(n_docs, seed=0):
    """`n_docs` unlabeled documents; the first k of them do not depend on `n_docs`."""
    return list(itertools.islice(_iter_documents(seed), n_docs))


def corpus_text(n_bytes=3_000_000, seed=0):
    """Documents joined by blank lines until the text reaches `n_bytes` (ASCII: bytes = chars).

    The text is a prefix of the same document stream as `corpus_documents(.., seed)`.
    """
    documents = _iter_documents(seed)
    pieces, size = [], 0
    while size < n_bytes:
        doc = next(documents)
        size += len(doc) + (len(DOCUMENT_SEPARATOR) if pieces else 0)
        pieces.append(doc)
    return DOCUMENT_SEPARATOR.join(pieces)


def _labeled_split(rng, part, n, seen):
    """`n` (text, label) pairs, labels balanced and shuffled, no text already in `seen`."""
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    rng.shuffle(labels)
    examples = []
    for label in labels:
        text, _ = generate_review(rng, part, label)
        while text in seen:
            text, _ = generate_review(rng, part, label)
        seen.add(text)
        examples.append((text, label))
    return examples


def labeled_sets(seed=0, n_train=480, n_test=300):
    """{"train", "test_a", "test_b"}: lists of (text, label), balanced across LABELS.

    train and test_a use lexicon part A only, test_b part B only. No text appears twice
    across (or within) the three sets. The test sets are drawn first, from their own
    seeded streams, so they do not change with `n_train`.
    """
    if not 0 <= n_train <= MAX_TRAIN:
        raise ValueError(f"n_train must be between 0 and {MAX_TRAIN} (few labels is the "
                         f"point of the demos), got {n_train}")
    if n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    seen = set()
    test_a = _labeled_split(random.Random(f"minift-feedback-test_a-{seed}"), "A", n_test, seen)
    test_b = _labeled_split(random.Random(f"minift-feedback-test_b-{seed}"), "B", n_test, seen)
    train = _labeled_split(random.Random(f"minift-feedback-train-{seed}"), "A", n_train, seen)
    return {"train": train, "test_a": test_a, "test_b": test_b}


def budget_train_set(n_train, seed=0, n_test=300):
    """`n_train` labeled part-A reviews, as many as asked (the label-budget demo, which
    goes past MAX_TRAIN): labeled_sets' train split drawn at another size, so no text of
    labeled_sets(seed, n_test=n_test)'s test sets is among them, and n_train = 480
    gives the built-in training set itself."""
    if n_train < 0:
        raise ValueError(f"n_train must be >= 0, got {n_train}")
    tests = labeled_sets(seed, n_train=0, n_test=n_test)
    seen = {text for name in ("test_a", "test_b") for text, _ in tests[name]}
    return _labeled_split(random.Random(f"minift-feedback-train-{seed}"), "A", n_train, seen)
