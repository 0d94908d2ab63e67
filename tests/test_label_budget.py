"""demos/label_budget.py's reading of its own results: where scratch catches up."""
from pathlib import Path

import pytest
from scripts import load_script

DEMO = Path(__file__).resolve().parent.parent / "demos" / "label_budget.py"


@pytest.fixture(scope="module")
def demo():
    return load_script(DEMO, "label_budget_demo")


def points(accuracies):
    """{N: [one run per seed]} from {N: [(part A, part B) per seed]}."""
    return {n: [{"n_train": int(n * 0.9), "accuracy": {"test_a": a, "test_b": b}} for a, b in seeds]
            for n, seeds in accuracies.items()}


def test_scratch_catches_up_only_where_it_stays_caught_up(demo):
    budgets = [60, 480, 4320]
    results = {
        # with 60 labels both are poor alike: that is not catching up
        ("encoder", "full"): points({60: [(0.60, 0.50)], 480: [(0.95, 0.66)], 4320: [(0.98, 0.68)]}),
        ("encoder", "scratch"): points({60: [(0.59, 0.40)], 480: [(0.88, 0.47)], 4320: [(0.97, 0.48)]}),
        ("decoder", "full"): points({60: [(0.78, 0.51)], 480: [(0.96, 0.72)], 4320: [(0.99, 0.68)]}),
        ("decoder", "scratch"): points({60: [(0.62, 0.42), (0.64, 0.40)], 480: [(0.80, 0.47)],
                                        4320: [(0.95, 0.53)]}),
    }
    text = demo.verdict(results, budgets)
    lines = dict(line.split(": ", 1) for line in text.splitlines())
    assert "from 3888 labels on" in lines["encoder"] and "+1.0 at the largest budget" in lines["encoder"]
    assert "at none of these budgets" in lines["decoder"] and "+4.0 at the largest budget" in lines["decoder"]
    assert "full leads by +10.0 to +20.0 points" in lines["encoder"]
    table = demo.table(results, budgets, "test_a")
    assert "decoder scratch" in table and "63.0 ± 1.4" in table            # mean and spread of two seeds
