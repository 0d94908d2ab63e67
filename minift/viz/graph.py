"""The autograd graph of a tensor, read from minift's own objects and drawn as text or SVG
(micrograd's picture, with no graphviz).

A tensor made by an op remembers its node (`tensor._ctx`, an instance of the op's
Function class); a node remembers its inputs in `.parents`: other nodes, or leaf Tensors
(parameters, data), or None for an input that is not a tensor (a Python number). That is
the whole graph `backward()` walks (minift/tensor.py), newest node first.

A leaf holds its data and its gradient; a node holds neither: its output's array belongs
to the output tensor, and backward() drops a node's gradient once it has used it. To show
both on every node, as micrograd's picture does, build and differentiate the expression
inside `recording()`, which keeps them aside for the picture:

    with recording() as seen:
        o = (x1 * w1 + x2 * w2 + b).tanh()
        o.backward()
    print(graph_text(o, seen))

    python -m minift show graph            the graph of a small neuron, tanh(x1 w1 + x2 w2 + b)
"""
import html

import numpy as np

from ..tensor import set_profiler, tensor

BOX_W, BOX_H, GAP_X, GAP_Y = 170, 46, 50, 18


def nodes_of(output):
    """Every node `output` was computed from, each after its inputs (a topological
    order, as the forward pass made them), ending with output's own node."""
    root = output._ctx if output._ctx is not None else output
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in reversed(inputs_of(node)) if id(p) not in visited)
    return order


def inputs_of(node):
    """The nodes and leaf tensors an op node read (none for a leaf)."""
    if not node.is_node:
        return []
    if node.parents is None:
        raise ValueError("this graph was freed by backward(keep_graph=False); draw it before, or after a "
                         "backward() that keeps it (the default)")
    return [p for p in node.parents if p is not None]


class recording:
    """While active, keep what the engine does not: each node's output (its data) and,
    each time backward() passes through the node, the gradient of that output (its grad,
    summed over backward calls as a leaf's .grad is). A context manager; pass it to
    graph_text or graph_svg as `seen`.

    It watches every op through the hook the cost ledger times them with
    (tensor.set_profiler), running each op's own forward and backward unchanged; it keeps
    every array it sees, so it is for small expressions."""

    def __init__(self):
        self.data, self.grad = {}, {}      # node -> its output; node -> dL/d(its output)

    def __enter__(self):
        self._previous = set_profiler(self)
        return self

    def __exit__(self, *exc):
        set_profiler(self._previous)

    def forward(self, ctx, raw, options):
        out = ctx.forward(*raw, **options)
        self.data[ctx] = out.copy()
        return out

    def backward(self, ctx, g):                      # g: dL/d(the node's output), as _walk summed it
        self.grad[ctx] = self.grad[ctx] + g if ctx in self.grad else g
        return ctx.backward(g)


def describe(node, seen=None):
    """(title, details) of a node: a leaf's name or an op's, its shape, and for a small
    tensor its data and gradient (a leaf's own; an op's output's from `seen`, a recording)."""
    title = type(node).__name__ if node.is_node else node.name or "leaf"
    if node.is_node:
        data, grad = (seen.data.get(node), seen.grad.get(node)) if seen is not None else (None, None)
    else:
        data, grad = node.data, node.grad
    if data is not None and data.size <= 3:
        details = "data " + _numbers(data)
        if grad is not None:
            details += "  grad " + _numbers(grad)
        return title, details
    details = f"shape {tuple(node.shape)}"
    return title, details + (", requires grad" if not node.is_node and node.requires_grad else "")


def _numbers(a):
    return np.array2string(np.asarray(a), precision=4, separator=", ").replace("\n", "")


def graph_text(output, seen=None):
    """The graph as numbered lines, inputs first: `#4  Mul  shape ()  <- #1, #2`, or with
    `seen` (a recording), `#4  Mul  data -6.  grad 0.5  <- #1, #2`."""
    nodes = nodes_of(output)
    number = {id(n): i + 1 for i, n in enumerate(nodes)}
    lines = []
    for n in nodes:
        title, details = describe(n, seen)
        sources = ", ".join(f"#{number[id(p)]}" for p in inputs_of(n))
        arrow = f"  <- {sources}" if sources else ""
        lines.append(f"#{number[id(n)]:<3} {title:<14} {details}{arrow}")
    return "\n".join(lines) + f"\n(the output is #{len(nodes)}; backward() visits the nodes from it back to #1)"


def graph_svg(output, standalone=False, seen=None):
    """The graph as an SVG drawing, inputs on the left, the output on the right: each
    column holds the nodes that are that many ops away from the leaves. standalone=True
    for an .svg file of its own (which needs SVG's namespace; inside HTML it does not);
    `seen`, a recording: every node's data and grad."""
    nodes = nodes_of(output)
    column = {}
    for n in nodes:                          # inputs come first: their columns are known
        column[id(n)] = 1 + max((column[id(p)] for p in inputs_of(n)), default=-1)
    rows, position = {}, {}
    for n in nodes:
        c = column[id(n)]
        rows[c] = rows.get(c, 0) + 1
        position[id(n)] = (c * (BOX_W + GAP_X) + 10, (rows[c] - 1) * (BOX_H + GAP_Y) + 10)
    width = (max(rows) + 1) * (BOX_W + GAP_X)
    height = max(rows.values()) * (BOX_H + GAP_Y) + 10
    namespace = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    out = [f'<svg{namespace} width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for n in nodes:
        x, y = position[id(n)]
        for p in inputs_of(n):
            px, py = position[id(p)]
            out.append(f'<line x1="{px + BOX_W}" y1="{py + BOX_H / 2}" x2="{x}" y2="{y + BOX_H / 2}" '
                       f'stroke="#555" marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y = position[id(n)]
        title, details = describe(n, seen)
        fill = "#dbe8f6" if n.is_node else "#fdf1d6"
        out.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#555"/>'
                   f'<text x="{x + BOX_W / 2}" y="{y + 18}" text-anchor="middle" font-weight="bold" '
                   f'font-size="13">{html.escape(title)}</text>'
                   f'<text x="{x + BOX_W / 2}" y="{y + 35}" text-anchor="middle" font-size="10">'
                   f'{html.escape(details)}</text>')
    return "\n".join(out + ["</svg>"])


def example_neuron():
    """(o, its recording): micrograd's neuron, o = tanh(x1 w1 + x2 w2 + b), built and
    differentiated inside recording(): the graph `python -m minift show graph` draws, with
    every node's data and grad (the leaves are named)."""
    def leaf(value, name):
        t = tensor(np.float64(value), requires_grad=True)
        t.name = name
        return t
    x1, x2, w1, w2 = leaf(2.0, "x1"), leaf(0.0, "x2"), leaf(-3.0, "w1"), leaf(1.0, "w2")
    b = leaf(6.8813735870195432, "b")          # micrograd's bias: it makes o = tanh(0.8814) = 0.7071
    with recording() as seen:
        o = (x1 * w1 + x2 * w2 + b).tanh()
        o.backward()
    return o, seen
