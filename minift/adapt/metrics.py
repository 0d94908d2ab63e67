"""How good a classifier is: accuracy, macro-F1, per-class precision / recall / F1 and the
confusion matrix, computed from true and predicted label ids; and its mean cross-entropy,
computed from its scores."""
import numpy as np


def classification_metrics(y_true, y_pred, labels):
    """Accuracy, macro-F1, per-class precision / recall / F1 / support, and the
    confusion matrix (rows: true label, columns: predicted, both in `labels` order).

        precision(c) = correct c / predicted c        recall(c) = correct c / true c
        f1(c) = 2 precision recall / (precision + recall)     (0 when both are 0)
        macro_f1 = the mean of f1 over the labels: each class counts the same,
                   however rare
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"classification_metrics: need two equal-length non-empty 1-D arrays, got "
                         f"shapes {y_true.shape} and {y_pred.shape}")
    L = len(labels)
    confusion = np.zeros((L, L), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    for c, name in enumerate(labels):
        correct, predicted, support = confusion[c, c], confusion[:, c].sum(), confusion[c].sum()
        precision = correct / predicted if predicted else 0.0
        recall = correct / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(support)}
    return {"n": int(y_true.size),
            "accuracy": float(np.trace(confusion) / y_true.size),
            "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])),
            "per_class": per_class,
            "labels": list(labels),
            "confusion": confusion.tolist()}


def softmax_rows(scores):
    """Row-wise softmax of a NumPy array (N, L) -> probabilities (float64)."""
    z = np.asarray(scores, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def mean_cross_entropy(scores, y_true):
    """-mean log p(true label) under the softmax of `scores` (N, L): ln L for a model that
    gives every label the same probability."""
    p = softmax_rows(scores)[np.arange(len(y_true)), np.asarray(y_true)]
    return float(-np.log(np.maximum(p, 1e-12)).mean())
