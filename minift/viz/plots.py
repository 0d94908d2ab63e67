"""The report's pictures, drawn with matplotlib when it is installed (`pip install -e
".[viz]"`) and embedded as base64 PNG, or as inline SVG and shaded tables otherwise
(svg.py). Either way the page needs nothing from the network.

matplotlib is used through its object-oriented `Figure` (no pyplot, no window, no global
state), so it works on a machine without a screen.
"""
import base64
import html
import importlib.util
import io

import numpy as np

from . import svg


def matplotlib_available():
    return importlib.util.find_spec("matplotlib") is not None


def _png(figure, alt):
    """The figure as an <img> holding its PNG (base64), the whole picture in the page."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def line_chart(series, title, x_label, y_label, log_y=False, guide=None, use_matplotlib=False):
    """{label: (xs, ys)} as a chart (see svg.line_chart for the arguments)."""
    if not use_matplotlib:
        return svg.line_chart(series, title, x_label, y_label, log_y=log_y, guide=guide)
    from matplotlib.figure import Figure        # optional: the viz extra
    figure = Figure(figsize=(7, 3.2))
    ax = figure.add_subplot()
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=str(label))
    if guide is not None:
        ax.axhline(guide, color="grey", linestyle="--", linewidth=1)
    if log_y:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=x_label, ylabel=y_label)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(figure, title)


def attention_heads(maps, tokens, title, use_matplotlib=False):
    """One layer's attention, maps (H, T, T), as one picture per head: row i is what
    token i attends to (its weights over the tokens j, which sum to 1)."""
    if not use_matplotlib:
        return "".join(svg.heat_table(m, tokens, tokens, fmt="{:.2f}", caption=f"{title}, head {h}",
                                      corner="query \\ key") for h, m in enumerate(maps))
    from matplotlib.figure import Figure
    H, T, _ = maps.shape
    side = max(2.5, 0.28 * T + 1.0)
    figure = Figure(figsize=(side * H, side))
    for h in range(H):
        ax = figure.add_subplot(1, H, h + 1)
        ax.imshow(maps[h], cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(T), tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(T), tokens if h == 0 else [""] * T, fontsize=8)
        ax.set_title(f"head {h}", fontsize=9)
    figure.suptitle(title)
    return _png(figure, title)


def confusion(matrix, labels, title):
    """A confusion matrix as a shaded table: the counts stay readable either way."""
    return svg.heat_table(np.asarray(matrix), labels, labels, fmt="{:.0f}", caption=title,
                          corner="true \\ predicted")

