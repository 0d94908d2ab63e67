"""Tables a learner reads: one test set's metrics, and several runs side by side."""


def format_metrics(metrics, title="test"):
    """The metrics of `classification_metrics` as a readable table."""
    labels = metrics["labels"]
    width = max(10, max(len(name) for name in labels) + 2)
    lines = [f"{title}: accuracy {metrics['accuracy']:.1%}   macro-F1 {metrics['macro_f1']:.3f}   "
             f"({metrics['n']} examples)",
             f"  {'':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name in labels:
        m = metrics["per_class"][name]
        lines.append(f"  {name:<{width}}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}"
                     f"{m['support']:>10}")
    lines.append("  confusion (rows: true label, columns: predicted)")
    lines.append(f"  {'':<{width}}" + "".join(f"{name:>{width}}" for name in labels))
    for name, row in zip(labels, metrics["confusion"]):
        lines.append(f"  {name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def comparison_table(results):
    """One line per run: {name: metrics as written by finetune} -> a text table of
    trainable parameters, training time and accuracy / macro-F1 on every test set."""
    tests = list(dict.fromkeys(t for m in results.values() for t in m["test"]))
    width = max([8] + [len(name) for name in results]) + 2
    header = f"{'strategy':<{width}}{'trainable params':>24}{'train time':>12}"
    header += "".join(f"{t + ' acc':>14}{'macro-F1':>10}" for t in tests)
    lines = [header, "-" * len(header)]
    for name, m in results.items():
        share = m["trainable_parameters"] / m["total_parameters"]
        line = f"{name:<{width}}{m['trainable_parameters']:>13,} ({share:>7.2%}){m['train_seconds']:>11.1f}s"
        for t in tests:
            r = m["test"].get(t)
            line += f"{r['accuracy']:>14.1%}{r['macro_f1']:>10.3f}" if r else f"{'-':>14}{'-':>10}"
        lines.append(line)
    return "\n".join(lines)


def mean_and_spread(values):
    """(mean, sample standard deviation) of a list of numbers; the spread of one value is 0."""
    n = len(values)
    mean = sum(values) / n
    return mean, (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0


def seeds_table(results):
    """comparison_table over several fine-tuning seeds: {name: [metrics of each seed]} ->
    a text table whose accuracies read "mean ± standard deviation" across the seeds,
    macro-F1 and training time their means."""
    tests = list(dict.fromkeys(t for runs in results.values() for m in runs for t in m["test"]))
    width = max([8] + [len(name) for name in results]) + 2
    header = f"{'strategy':<{width}}{'seeds':>6}{'trainable params':>24}{'train time':>12}"
    header += "".join(f"{t + ' acc':>18}{'macro-F1':>10}" for t in tests)
    lines = [header, "-" * len(header)]
    for name, runs in results.items():
        m = runs[0]
        share = m["trainable_parameters"] / m["total_parameters"]
        seconds, _ = mean_and_spread([r["train_seconds"] for r in runs])
        line = f"{name:<{width}}{len(runs):>6}{m['trainable_parameters']:>13,} ({share:>7.2%}){seconds:>11.1f}s"
        for t in tests:
            if any(t not in r["test"] for r in runs):
                line += f"{'-':>18}{'-':>10}"
                continue
            acc, sd = mean_and_spread([r["test"][t]["accuracy"] for r in runs])
            f1, _ = mean_and_spread([r["test"][t]["macro_f1"] for r in runs])
            line += f"{acc:>11.1%} ±{sd * 100:>4.1f}{f1:>10.3f}"
        lines.append(line)
    return "\n".join(lines)
