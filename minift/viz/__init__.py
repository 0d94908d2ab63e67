"""Pictures of what a model does: the report of a run, attention maps, the autograd graph.

    svg        line charts as inline SVG and matrices as shaded HTML tables (no dependency)
    plots      the same pictures through matplotlib when it is installed (the viz extra)
    graph      the autograd graph of a tensor, from minift's own nodes, as text or SVG (with
               every node's data and grad when recorded)
    attention  every head's attention probabilities for one text
    report     `python -m minift report RUN`: one self-contained HTML page of a run
"""
from .attention import attention_maps
from .graph import graph_svg, graph_text, nodes_of, recording
from .report import write_report

__all__ = ["attention_maps", "graph_svg", "graph_text", "nodes_of", "recording", "write_report"]
