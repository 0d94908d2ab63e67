"""Pictures with no plotting library: line charts as inline SVG, and matrices as HTML
tables shaded by value (a confusion matrix, an attention map). What the report shows when
matplotlib is not installed, and readable as they are: the numbers stay in the page.

Everything returned is a string of HTML; text from outside (labels, tokens) is escaped.
"""
import html
import math

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]
WIDTH, HEIGHT, MARGIN, LEGEND = 720, 300, 56, 120     # LEGEND: room on the right for the labels


def _ticks(low, high, n=5):
    """About n round numbers between low and high."""
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / n))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= n:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def line_chart(series, title, x_label, y_label, log_y=False, guide=None):
    """An SVG chart of `series` ({label: (xs, ys)}), one coloured line each, with axes,
    ticks and a legend; log_y plots log10 of y (positive values only); `guide` draws a
    dashed horizontal line at that y (a rule of thumb)."""
    series = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in series.items() if len(x)}
    if log_y:
        series = {k: (x[y > 0], np.log10(y[y > 0])) for k, (x, y) in series.items()}
    points = [(x, y) for x, y in series.values() if len(x)]
    if not points:
        return f"<p><em>{html.escape(title)}: nothing recorded.</em></p>"
    xs, ys = np.concatenate([p[0] for p in points]), np.concatenate([p[1] for p in points])
    guide_y = math.log10(guide) if (guide and log_y) else guide
    y_low, y_high = ys.min(), ys.max()
    if guide_y is not None:
        y_low, y_high = min(y_low, guide_y), max(y_high, guide_y)
    x_low, x_high = xs.min(), max(xs.max(), xs.min() + 1)
    pad = (y_high - y_low) * 0.05 or 0.5
    y_low, y_high = y_low - pad, y_high + pad

    def px(x):
        return MARGIN + (x - x_low) / (x_high - x_low) * (WIDTH - MARGIN - LEGEND)

    def py(y):
        return HEIGHT - MARGIN + (y - y_low) / (y_high - y_low) * (2 * MARGIN - HEIGHT)
    out = [f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
           f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - LEGEND}" y2="{HEIGHT - MARGIN}" stroke="#333"/>',
           f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#333"/>']
    for t in _ticks(x_low, x_high):
        out.append(f'<text x="{px(t):.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle" '
                   f'font-size="11">{t:g}</text>')
    for t in _ticks(y_low, y_high):
        label = f"1e{t:g}" if log_y else f"{t:.4g}"
        out.append(f'<text x="{MARGIN - 4}" y="{py(t) + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
        out.append(f'<line x1="{MARGIN}" y1="{py(t):.1f}" x2="{WIDTH - LEGEND}" y2="{py(t):.1f}" stroke="#eee"/>')
    if guide_y is not None:
        out.append(f'<line x1="{MARGIN}" y1="{py(guide_y):.1f}" x2="{WIDTH - LEGEND}" y2="{py(guide_y):.1f}" '
                   f'stroke="#999" stroke-dasharray="4 3"/>')
    for i, (label, (x, y)) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        if len(x) == 1:
            out.append(f'<circle cx="{px(x[0]):.1f}" cy="{py(y[0]):.1f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{WIDTH - LEGEND + 8}" y="{MARGIN + 14 * i}" font-size="11" fill="{color}">'
                   f'{html.escape(str(label))}</text>')
    y_name = f"log10 {y_label}" if log_y else y_label
    out += [f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle" font-size="12">'
            f'{html.escape(x_label)}</text>',
            f'<text x="14" y="{HEIGHT / 2}" text-anchor="middle" font-size="12" '
            f'transform="rotate(-90 14 {HEIGHT / 2})">{html.escape(y_name)}</text>', "</svg>"]
    return "\n".join(out)


def heat_table(matrix, row_labels, col_labels, fmt="{:.2f}", caption=None, corner=""):
    """An HTML table of `matrix` whose cells are shaded by value (white 0 to dark blue at
    the maximum), the numbers written in them."""
    matrix = np.asarray(matrix, float)
    top = matrix.max() if matrix.size and matrix.max() > 0 else 1.0
    rows = [f"<caption>{html.escape(caption)}</caption>" if caption else "",
            "<tr><th>" + html.escape(corner) + "</th>" +
            "".join(f"<th>{html.escape(str(c))}</th>" for c in col_labels) + "</tr>"]
    for label, values in zip(row_labels, matrix):
        cells = []
        for v in values:
            level = max(0.0, v / top)
            text = "#fff" if level > 0.55 else "#000"
            cells.append(f'<td style="background: rgba(31, 90, 180, {level:.3f}); color: {text}">'
                         f'{fmt.format(v)}</td>')
        rows.append(f"<tr><th>{html.escape(str(label))}</th>{''.join(cells)}</tr>")
    return '<table class="heat">' + "".join(rows) + "</table>"
