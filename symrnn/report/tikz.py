"""The figure of the unrolled computation graph, drawn from ``symrnn.graph.unroll``.

:func:`layout` places every quantity node of the networkx graph: one column
per step (the initial states in column 0) and one row per depth, the length
of the longest chain of same-step edges that leads to the quantity (inputs at
the bottom, the loss at the top).  Quantities at the same depth (the gates of
a gated cell) sit side by side.  Parameters feed every step; they are not
drawn, and instead label the linear edges ``P u`` they act on.

:func:`tikz_picture` draws the layout with TikZ (libraries ``positioning``
and ``arrows.meta`` only) and :func:`mermaid_chart` as a Mermaid flowchart,
which GitHub renders inside Markdown.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import unroll

NODE_GAP = 1.0  # cm between neighbours in one row of a column
COLUMN_GAP = 1.5  # cm between the widest rows of neighbouring columns
ROW_GAP = 1.4  # cm between rows
STATE_SHIFT = 0.5  # cm to the right for single-node rows from the first state row up: fewer crossings

FIGURE_LENGTHS = ((3, 3), (3, 1), (1, 3), (2, 1), (1, 2), (2, 2), (1, 1))


def lengths_for(architecture, longest: int, candidates=FIGURE_LENGTHS):
    """The ``(T_in, T_out)`` among ``candidates`` that ``architecture`` accepts with the most steps up to ``longest``."""
    best = None
    for T_in, T_out in candidates:
        try:
            T = architecture.schedule(T_in, T_out).T
        except ValueError:
            continue
        if T <= longest and (best is None or T > best[0]):
            best = (T, T_in, T_out)
    if best is None:
        raise ValueError(f"architecture {architecture.name!r} accepts none of the lengths {candidates}")
    return best[1], best[2]


@dataclass
class PlacedNode:
    key: tuple  # (name, t) in the networkx graph
    ident: str  # TikZ / Mermaid node name
    x: float
    y: float
    style: str  # input, state, initial, quantity, loss


@dataclass
class PlacedEdge:
    source: str
    target: str
    label: str | None  # parameter name of a linear edge
    bend: str | None = None  # "left" or "right" when the straight line would cross a node


@dataclass
class Layout:
    nodes: list
    edges: list
    T_in: int
    T_out: int
    schedule: object


def _name_order(model):
    cell = model.cell
    names = [cell.input_symbol.name.split("[")[0]]
    names += [eq.target.name.split("[")[0] for eq in cell.equations]
    if model.readout is not None:
        names += [eq.target.name.split("[")[0] for eq in model.readout.equations]
    return names + ["L"]


def layout(model, longest: int = 3) -> Layout:
    """Positions of the unrolled graph of ``model`` for at most ``longest`` steps."""
    T_in, T_out = lengths_for(model.architecture, longest)
    graph = unroll(model, T_in, T_out)
    order = {name: k for k, name in enumerate(_name_order(model))}
    quantities = [n for n in graph.nodes if n[1] is not None]
    depth = _depths(graph, quantities)
    rows = {}
    for name, t in quantities:
        rows[name] = max(rows.get(name, 0), depth[(name, t)])
    columns = {}
    for node in sorted(quantities, key=lambda n: (n[1], rows[n[0]], order.get(n[0], len(order)), n[0])):
        columns.setdefault(node[1], {}).setdefault(rows[node[0]], []).append(node)
    widths = {t: max(len(r) for r in col.values()) * NODE_GAP for t, col in columns.items()}
    centre, x = {}, 0.0
    for t in sorted(columns):
        if centre:
            prev = max(centre)
            x += (widths[prev] + widths[t]) / 2 + COLUMN_GAP
        centre[t] = x
    state_rows = [rows[s] for s in model.cell.states if s in rows]
    shifted_from = min(state_rows) if state_rows else None
    placed, ident = [], {}
    for t in sorted(columns):
        for row in sorted(columns[t]):
            members = columns[t][row]
            shift = STATE_SHIFT if shifted_from is not None and row >= shifted_from and len(members) == 1 else 0.0
            for k, node in enumerate(members):
                ident[node] = f"n{len(ident)}"
                offset = (k - (len(members) - 1) / 2) * NODE_GAP + shift
                placed.append(PlacedNode(node, ident[node], round(centre[t] + offset, 3),
                                         round(row * ROW_GAP, 3), _style(model, graph, node)))
    edges = []
    for u, v, data in graph.edges(data=True):
        if u[1] is None:
            continue  # parameter edges: the parameter labels the linear edge instead
        label = data["term"].matrix.name if data["kind"] == "linear" else None
        edges.append(PlacedEdge(ident[u], ident[v], label))
    rank = {p.ident: k for k, p in enumerate(placed)}
    edges.sort(key=lambda e: (rank[e.source], rank[e.target]))
    where = {p.ident: p for p in placed}
    for e in edges:  # within a step only: the fans between steps may pass close to a node
        a, b = where[e.source], where[e.target]
        e.bend = _bend(a, b, placed) if a.key[1] == b.key[1] else None
    return Layout(placed, edges, T_in, T_out, model.architecture.schedule(T_in, T_out))


def _bend(a, b, nodes, clearance=0.42):
    """Which way to bend the edge ``a -> b`` so that it misses the nodes on its straight line."""
    dx, dy = b.x - a.x, b.y - a.y
    length2 = dx * dx + dy * dy
    for p in nodes:
        if p is a or p is b:
            continue
        s = ((p.x - a.x) * dx + (p.y - a.y) * dy) / length2
        if not 0.0 < s < 1.0:
            continue
        cross = dx * (p.y - a.y) - dy * (p.x - a.x)
        if abs(cross) / length2 ** 0.5 < clearance:
            return "right" if cross >= 0 else "left"
    return None


def _depths(graph, quantities):
    depth = {}

    def visit(node):
        if node not in depth:
            same_step = [u for u in graph.predecessors(node) if u[1] == node[1]]
            kind = graph.nodes[node].get("kind")
            base = 0 if kind in ("input", "initial state") else 1
            depth[node] = max([base] + [visit(u) + 1 for u in same_step])
        return depth[node]

    for node in quantities:
        visit(node)
    return depth


def _style(model, graph, node):
    kind = graph.nodes[node].get("kind")
    if kind == "initial state":
        return "initial"
    if kind in ("input", "loss"):
        return kind
    return "state" if node[0] in model.cell.states else "quantity"


# -- TikZ ------------------------------------------------------------------------------
TIKZ_STYLES = r"""  >={Stealth[length=1.6mm]}, every edge/.style={draw, ->},
  quantity/.style={draw, circle, minimum size=7.5mm, inner sep=0.5pt, font=\small},
  state/.style={quantity, fill=black!10},
  initial/.style={state, dashed},
  input/.style={draw, rounded corners=2pt, minimum size=6.5mm, inner sep=1pt, font=\small},
  loss/.style={draw, fill=black!5, minimum size=6.5mm, inner sep=1pt, font=\small},
  param/.style={font=\scriptsize, fill=white, inner sep=0.6pt, pos=0.72},
  steplabel/.style={font=\footnotesize}"""


def tikz_picture(lay: Layout, name_tex) -> str:
    """TikZ code of the layout; ``name_tex(base, t)`` gives a node's LaTeX (``h_{1}``)."""
    lines = [r"\begin{tikzpicture}[", TIKZ_STYLES, "]"]
    for p in lay.nodes:
        lines.append(rf"\node[{p.style}] ({p.ident}) at ({p.x:.3f},{p.y:.3f}) {{${name_tex(*p.key)}$}};")
    bottom = min(p.y for p in lay.nodes) - 0.75
    steps = sorted({p.key[1] for p in lay.nodes})
    for t in steps:
        xs = [p.x for p in lay.nodes if p.key[1] == t]
        lines.append(rf"\node[steplabel] at ({(min(xs) + max(xs)) / 2:.3f},{bottom:.3f}) {{$t = {t}$}};")
    for e in lay.edges:
        label = "" if e.label is None else rf" node[param] {{${name_tex(e.label, None)}$}}"
        path = "--" if e.bend is None else f"to[bend {e.bend}=28]"
        lines.append(rf"\draw[->] ({e.source}) {path}{label} ({e.target});")
    lines.append(r"\end{tikzpicture}")
    return "\n".join(lines)


def picture_width(lay: Layout) -> float:
    """Width of the drawing in cm (node centres plus one node)."""
    xs = [p.x for p in lay.nodes]
    return max(xs) - min(xs) + 0.9


# -- Mermaid -----------------------------------------------------------------------------
_SUBSCRIPT = str.maketrans("0123456789+-", "₀₁₂₃₄₅₆₇₈₉₊₋")


def plain_name(base: str, t=None) -> str:
    """``h`` at 1 -> ``h₁``; ``yhat`` -> ``ŷ``; for labels outside math mode."""
    text = {"yhat": "ŷ"}.get(base, base)
    return text if t is None else text + str(t).translate(_SUBSCRIPT)


def html_name(name: str) -> str:
    """``W_i`` -> ``W<sub>i</sub>``: a parameter's name in a Mermaid label (which prints ``_`` as is)."""
    base, sep, sub = name.partition("_")
    return f"{base}<sub>{sub}</sub>" if sep and sub else name


def mermaid_chart(lay: Layout) -> str:
    """A Mermaid flowchart of the layout: one subgraph per step."""
    lines = ["flowchart LR"]
    for t in sorted({p.key[1] for p in lay.nodes}):
        lines.append(f'  subgraph step{t} ["t = {t}"]')
        for p in lay.nodes:
            if p.key[1] == t:
                open_, close = {"input": ("[", "]"), "loss": ("[[", "]]")}.get(p.style, ("((", "))"))
                lines.append(f'    {p.ident}{open_}"{plain_name(*p.key)}"{close}')
        lines.append("  end")
    for e in lay.edges:
        arrow = "-->" if e.label is None else f'-->|"{html_name(e.label)}"|'
        lines.append(f"  {e.source} {arrow} {e.target}")
    return "\n".join(lines)
