"""The figure of the unrolled computation graph, drawn from ``symrnn.engine.graph.unroll``.

:func:`layout` places every quantity node of the networkx graph: one column
per step (the initial states in column 0) and one row per depth, the length
of the longest chain of same-step edges that leads to the quantity (inputs at
the bottom, the loss at the top).  Quantities at the same depth (the gates of
a gated cell) sit side by side.  Parameters feed every step; they are not
drawn, and instead label the linear edges ``P u`` they act on.

When the input or a previous state of a step feeds two or more of its nodes
through linear maps (the gates of an LSTM or a GRU), those edges are drawn as
one *bus*: a line under the step that the input joins from below and each
previous state through a single *trunk* coming down between the columns; one
*tap* rises from it into each node, labelled with the maps it stands for
(``U_i, W_i``).  A fan of arrows from ``h_{t-1}`` would cross the gates'
arrows; the bus does not.  The nodes the bus feeds get one x slot each, in
the order with the fewest crossings (:func:`_arrange`).  What crossings remain
cannot be avoided (with the losses on top and the inputs below, the LSTM's
``h_{t-1}`` trunk and ``o_t -> h_t`` both cross the ``c`` chain); the line on
top is drawn over a white band (a bridge), so that it reads as a hop, not a
junction.  Labels sit beside the middle of their edge, the labels of a bus all
at one height between the bus and the circles, away from arrowheads.

:func:`tikz_picture` draws the layout with TikZ (libraries ``positioning``
and ``arrows.meta`` only) and :func:`mermaid_chart` as a Mermaid flowchart,
which GitHub renders inside Markdown (Mermaid places and routes the edges
itself; it draws every edge on its own, buses included).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.graph import unroll

NODE_GAP = 1.0  # cm between neighbours in one row of a column
SLOT_GAP = 1.2  # cm between the nodes a bus feeds: room for the labels of its taps
COLUMN_GAP = 1.5  # cm between the widest rows of neighbouring columns
ROW_GAP = 1.4  # cm between rows
STATE_SHIFT = 0.5  # cm to the right for single-node rows from the first state row up: fewer crossings
BUS_Y = 0.75  # cm: height of the buses, between the inputs (row 0) and the first row of quantities
BUS_LIFT = 0.6  # cm: rows from 1 up move this much higher when there is a bus, so that its taps have room
TRUNK_DROP = 0.6  # cm: a trunk leaves its state going this much down to the gap between the columns
NODE_RADIUS = 0.375  # cm: half of the circles' minimum size

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
    bus: int | None = None  # index into Layout.buses when the edge is drawn as a branch of that bus
    bridge: bool = False  # drawn over a white band: it crosses another edge (the steeper of the two bridges)
    label_pos: float = 0.5  # where the label sits along the edge: midway, unless a bridge crosses it there


@dataclass
class Tap:
    """The branch of a bus into ``target``: one arrow for the edges from every source of the bus."""
    target: str
    x: float
    labels: tuple  # parameter names, in the order of the bus's sources
    bridge: bool = False  # drawn over a white band: an edge crosses it


@dataclass
class Trunk:
    """The line from a previous step's state down to the bus: its source and the points it passes."""
    source: str
    points: list  # [(x, y), ...] after the node; the last point lies on the bus


@dataclass
class Bus:
    """One horizontal line under the nodes of step ``step``, shared by the input and the previous states.

    The input ``x_t`` joins it from below (at ``input_x``), each previous state through a trunk that
    comes down between the columns, and one tap rises from it into each node that any of them feeds
    through a linear map.  The fan of every source then has no crossings of its own.
    """
    step: int
    y: float
    left: float
    right: float
    sources: list  # idents: the input first (when the step reads one), then the previous states
    input: str | None
    input_x: float | None
    trunks: list
    taps: list


@dataclass
class Layout:
    nodes: list
    edges: list
    T_in: int
    T_out: int
    schedule: object
    buses: list = field(default_factory=list)


def _name_order(model):
    cell = model.cell
    names = [cell.input_symbol.name.split("[")[0]]
    names += [eq.target.name.split("[")[0] for eq in cell.equations]
    if model.readout is not None:
        names += [eq.target.name.split("[")[0] for eq in model.readout.equations]
    return names + ["L"]


def _bused_edges(graph, model, t):
    """The linear edges into step ``t`` from its input and from the previous step's states."""
    sources = {n for n in graph.nodes if n[1] == t and graph.nodes[n].get("kind") == "input"}
    sources |= {(s, t - 1) for s in model.cell.states if (s, t - 1) in graph}
    return [(u, v) for u, v, data in graph.edges(data=True)
            if u in sources and v[1] == t and data["kind"] == "linear"]


def _uses_bus(bused) -> bool:
    """A step gets a bus when one of its sources feeds two or more of its nodes through linear maps."""
    fan = {}
    for u, v in bused:
        fan.setdefault(u, set()).add(v)
    return any(len(targets) > 1 for targets in fan.values())


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
    bused = {t: _bused_edges(graph, model, t) for t in columns}
    bus_steps = {t for t in columns if _uses_bus(bused[t])}
    pos = _positions(model, graph, columns, rows, bused, bus_steps)
    placed, ident = [], {}
    for t in sorted(columns):
        for row in sorted(columns[t]):
            for node in columns[t][row]:
                ident[node] = f"n{len(ident)}"
                placed.append(PlacedNode(node, ident[node], *pos[node], _style(model, graph, node)))
    edges = []
    for u, v, data in graph.edges(data=True):
        if u[1] is None:
            continue  # parameter edges: the parameter labels the linear edge instead
        label = data["term"].matrix.name if data["kind"] == "linear" else None
        spec = model.cell.params.get(label) if label is not None else None
        label = None if spec is not None and spec.fixed else label  # a spread or fold: no parameter to name
        edges.append(PlacedEdge(ident[u], ident[v], label))
    rank = {p.ident: k for k, p in enumerate(placed)}
    edges.sort(key=lambda e: (rank[e.source], rank[e.target]))
    where = {p.ident: p for p in placed}
    buses = []
    for t in sorted(bus_steps):
        through = {(ident[u], ident[v]) for u, v in bused[t]}
        for e in edges:
            if (e.source, e.target) in through:
                e.bus = len(buses)
        buses.append(_bus(t, [e for e in edges if e.bus == len(buses)], where, edges))
    _bends_and_bridges(edges, buses, where, placed)
    return Layout(placed, edges, T_in, T_out, model.architecture.schedule(T_in, T_out), buses)


def _positions(model, graph, columns, rows, bused, bus_steps) -> dict:
    """``node -> (x, y)``: the columns of steps side by side, the rows of quantities stacked, the rows a bus
    feeds spread over slots (:func:`_arrange`)."""
    slotted = {}  # step -> the nodes of the rows up to the highest one the bus feeds, one x slot each
    for t in bus_steps:
        top = max(rows[v[0]] for _, v in bused[t])
        slotted[t] = [n for r in sorted(columns[t]) if 1 <= r <= top for n in columns[t][r]]
    widths = {t: max([len(r) * NODE_GAP for r in col.values()] + [len(slotted.get(t, ())) * SLOT_GAP])
              for t, col in columns.items()}
    centre, x = {}, 0.0
    for t in sorted(columns):
        if centre:
            prev = max(centre)
            x += (widths[prev] + widths[t]) / 2 + COLUMN_GAP
        centre[t] = x
    lift = BUS_LIFT if bus_steps else 0.0

    def y_of(row):
        return round(row * ROW_GAP + (lift if row >= 1 else 0.0), 3)

    state_rows = [rows[s] for s in model.cell.states if s in rows]
    shifted_from = min(state_rows) if state_rows else None
    pos = {}
    for t in sorted(columns):
        fixed = {}
        for row in sorted(columns[t]):
            members = [n for n in columns[t][row] if n not in slotted.get(t, ())]
            shift = STATE_SHIFT if shifted_from is not None and row >= shifted_from and len(members) == 1 else 0.0
            for k, node in enumerate(members):
                offset = (k - (len(members) - 1) / 2) * NODE_GAP + shift
                fixed[node] = (round(centre[t] + offset, 3), y_of(row))
        if t in slotted:
            fixed.update(_arrange(graph, slotted[t], centre[t], {**pos, **fixed}, bused[t], y_of, rows))
        pos.update(fixed)
    return pos


def _bends_and_bridges(edges, buses, where, placed):
    """Bend each edge that would run through a node; mark the crossings the layout cannot avoid (the
    steeper edge bridges the other) and the bus taps an edge crosses."""
    for e in edges:  # the bus carries the fans between steps; any other edge bends around the nodes it meets
        e.bend = None if e.bus is not None else _bend(where[e.source], where[e.target], placed)
    straight = [e for e in edges if e.bus is None and e.bend is None]
    for i, e in enumerate(straight):  # crossings the layout cannot avoid (the LSTM's o_t -> h_t over the
        for f in straight[i + 1:]:    # c chain): the steeper edge bridges the other
            if {e.source, e.target} & {f.source, f.target}:
                continue
            a, b, c, d = (where[n] for n in (e.source, e.target, f.source, f.target))
            if _cross((a.x, a.y), (b.x, b.y), (c.x, c.y), (d.x, d.y)):
                steeper = e if abs(b.y - a.y) * abs(d.x - c.x) >= abs(d.y - c.y) * abs(b.x - a.x) else f
                steeper.bridge = True
                under, (p, q) = (f, (c, d)) if steeper is e else (e, (a, b))
                at = _crossing_fraction(p, q, *((a, b) if steeper is e else (c, d)))
                if abs(at - 0.5) < 0.2:  # the bridge would run through the label: move it along the edge
                    under.label_pos = round(at / 2 if at > 0.5 else min((1 + at) / 2, 0.65), 2)
    for bus in buses:  # a tap that an edge crosses (a peephole's c_{t-1} -> i_t) bridges it
        for tap in bus.taps:
            top = where[tap.target]
            tap.bridge = any(_cross((tap.x, bus.y), (top.x, top.y), (where[e.source].x, where[e.source].y),
                                    (where[e.target].x, where[e.target].y))
                             for e in straight if tap.target not in (e.source, e.target))


def _arrange(graph, nodes, centre, known, bused, y_of, rows, limit=720):
    """Slots for ``nodes`` (one x each, centred on ``centre``) with the fewest crossings.

    Tried: every order of the nodes (up to ``limit`` orders, else the given one).  Scored: crossings
    of the straight edges of the step, of the taps of the bus (twice: a line across a tap reads as a
    junction) and of the edges arriving from the previous step, then edges that run through a node,
    then the total length.
    """
    from itertools import islice, permutations

    slots = [centre + (k - (len(nodes) - 1) / 2) * SLOT_GAP for k in range(len(nodes))]
    targets = {v for _, v in bused}
    bus_y = y_of(0) + BUS_Y
    t = nodes[0][1]
    best, best_score = None, None
    for perm in islice(permutations(range(len(nodes))), limit):
        at = dict(known)
        for node, k in zip(nodes, perm):
            at[node] = (slots[k], y_of(rows[node[0]]))
        segments = []
        for u, v, data in graph.edges(data=True):
            if u[1] is None or v[1] != t or (u, v) in bused or u not in at or v not in at:
                continue
            segments.append((at[u], at[v], {u, v}))
        for v in targets:
            segments.append(((at[v][0], bus_y), at[v], {v, "tap"}))
        crossings = sum(_cross(a[0], a[1], b[0], b[1]) * (2 if "tap" in a[2] | b[2] else 1)  # a crossed tap
                        for i, a in enumerate(segments) for b in segments[i + 1:]  # looks like a junction
                        if not (a[2] & b[2]) - {"tap"})
        hits = sum(1 for a, b, ends in segments for n, p in at.items()
                   if n[1] == t and n not in ends and _near(a, b, p, clearance=0.6))
        length = sum(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5 for a, b, _ in segments)
        score = (crossings, hits, round(length, 6))
        if best_score is None or score < best_score:
            best, best_score = perm, score
    return {node: (round(slots[k], 3), y_of(rows[node[0]])) for node, k in zip(nodes, best)}


def _crossing_fraction(a, b, c, d) -> float:
    """Where along ``a -> b`` (0 at ``a``, 1 at ``b``) the line ``c d`` crosses it."""
    rx, ry, sx, sy = b.x - a.x, b.y - a.y, d.x - c.x, d.y - c.y
    return ((c.x - a.x) * sy - (c.y - a.y) * sx) / (rx * sy - ry * sx)


def _cross(p1, p2, q1, q2) -> bool:
    """Whether the segments ``p1 p2`` and ``q1 q2`` cross at a point inside both."""
    def side(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    d1, d2 = side(q1, q2, p1), side(q1, q2, p2)
    d3, d4 = side(p1, p2, q1), side(p1, p2, q2)
    return d1 * d2 < -1e-9 and d3 * d4 < -1e-9


def _near(a, b, p, clearance=0.42) -> bool:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return False
    s = ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2
    if not 0.0 < s < 1.0:
        return False
    return abs(dx * (p[1] - a[1]) - dy * (p[0] - a[0])) / length2 ** 0.5 < clearance


def _bus(t, through, where, edges):
    """The bus of step ``t`` carrying the edges ``through``."""
    y = BUS_Y
    step_nodes = [p for p in where.values() if p.key[1] == t]
    inputs = [s for s in dict.fromkeys(e.source for e in through) if where[s].style == "input"]
    states = [s for s in dict.fromkeys(e.source for e in through) if where[s].style != "input"]
    states.sort(key=lambda s: where[s].y)  # the lowest state turns down first (leftmost): no crossings
    sources = inputs + states
    taps = []
    for target in dict.fromkeys(e.target for e in through):
        by_source = {e.source: e.label for e in through if e.target == target}
        taps.append(Tap(target, where[target].x, tuple(by_source[s] for s in sources if s in by_source)))
    taps.sort(key=lambda tap: tap.x)
    input_x = where[inputs[0]].x if inputs else None
    right = max([tap.x for tap in taps] + ([input_x] if inputs else []))
    trunks = []
    if states:
        before = [p.x for p in where.values() if p.key[1] == t - 1]
        left_edge = max(before) + NODE_RADIUS if before else min(p.x for p in step_nodes) - 2 * NODE_GAP
        right_edge = min([p.x for p in step_nodes] + [tap.x for tap in taps]) - NODE_RADIUS
        for k, s in enumerate(states):
            gx = round(left_edge + (k + 1) * (right_edge - left_edge) / (len(states) + 1), 3)
            src = where[s]
            corner = src.y - TRUNK_DROP
            for e in edges:  # turn below the other edges that leave the state to the right: no crossings
                if e.source == s and e.bus is None and where[e.target].x > gx:
                    tgt = where[e.target]
                    at_gx = src.y + (tgt.y - src.y) * (gx - src.x) / (tgt.x - src.x)
                    corner = min(corner, at_gx - 0.3)
            corner = round(max(corner, y + 0.3), 3)
            trunks.append(Trunk(s, [(gx, corner), (gx, y)]))
    left = min([tr.points[-1][0] for tr in trunks] + [tap.x for tap in taps] + ([input_x] if inputs else []))
    return Bus(t, y, round(left, 3), round(right, 3), sources, inputs[0] if inputs else None, input_x,
               trunks, taps)


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
  param/.style={font=\scriptsize, inner sep=1.2pt, midway, auto, swap},
  steplabel/.style={font=\footnotesize}"""
BUS_STYLES = r"""  junction/.style={circle, fill, inner sep=0pt, minimum size=3.2pt},
  bridge/.style={draw=white, line width=3.2pt, shorten <=2.5mm, shorten >=2.5mm},
  tap/.style={font=\scriptsize, inner sep=1.2pt, anchor=west},
  legend/.style={font=\footnotesize, align=left, anchor=north west}"""


def _labels_tex(names, name_tex) -> str:
    return ", ".join(name_tex(n, None) for n in names)


def tikz_picture(lay: Layout, name_tex) -> str:
    """TikZ code of the layout; ``name_tex(base, t)`` gives a node's LaTeX (``h_{1}``).

    Edge labels sit beside the middle of their edge (``midway``), never on an arrowhead.  A step with
    a bus draws the linear edges from its input and previous states as the bus: the input rises into
    it, each state's trunk comes down between the columns (bridging any line it passes over), and one
    tap rises into each node, labelled with the maps of the edges it stands for.
    """
    styles = TIKZ_STYLES + (",\n" + BUS_STYLES if lay.buses or any(e.bridge for e in lay.edges) else "")
    lines = [r"\begin{tikzpicture}[", styles, "]"]
    for p in lay.nodes:
        lines.append(rf"\node[{p.style}] ({p.ident}) at ({p.x:.3f},{p.y:.3f}) {{${name_tex(*p.key)}$}};")
    bottom = min(p.y for p in lay.nodes) - 0.75
    steps = sorted({p.key[1] for p in lay.nodes})
    for t in steps:
        xs = [p.x for p in lay.nodes if p.key[1] == t]
        lines.append(rf"\node[steplabel] at ({(min(xs) + max(xs)) / 2:.3f},{bottom:.3f}) {{$t = {t}$}};")
    for e in sorted((e for e in lay.edges if e.bus is None), key=lambda e: e.bridge):  # bridges last, on top
        at_pos = "" if e.label_pos == 0.5 else f", pos={e.label_pos}"
        label = "" if e.label is None else rf" node[param{at_pos}] {{${name_tex(e.label, None)}$}}"
        path = "--" if e.bend is None else f"to[bend {e.bend}=28]"
        if e.bridge:
            lines.append(rf"\draw[bridge] ({e.source}) -- ({e.target});")
        lines.append(rf"\draw[->] ({e.source}) {path}{label} ({e.target});")
    for bus in lay.buses:
        lines.append(f"% bus of step {bus.step}")
        for trunk in bus.trunks:  # a white band first: the trunk bridges the lines it passes over
            pts = " -- ".join(f"({x:.3f},{y:.3f})" for x, y in trunk.points[:-1])
            x_end, y_end = trunk.points[-1]
            lines.append(rf"\draw[bridge, shorten >=1.2mm] ({trunk.source}) -- {pts} -- ({x_end:.3f},{y_end:.3f});")
        for trunk in bus.trunks:
            pts = " -- ".join(f"({x:.3f},{y:.3f})" for x, y in trunk.points)
            lines.append(rf"\draw ({trunk.source}) -- {pts};")
        lines.append(rf"\draw ({bus.left:.3f},{bus.y:.3f}) -- ({bus.right:.3f},{bus.y:.3f});")
        joins = []
        if bus.input is not None:
            lines.append(rf"\draw ({bus.input}) -- ({bus.input_x:.3f},{bus.y:.3f});")
            joins.append(bus.input_x)
        joins += [trunk.points[-1][0] for trunk in bus.trunks] + [tap.x for tap in bus.taps]
        band = _tap_label_y(lay, bus)
        for tap in bus.taps:  # every label at the same height, between the bus and the lowest circles
            if tap.bridge:
                lines.append(rf"\draw[bridge] ({tap.x:.3f},{bus.y:.3f}) -- ({tap.target});")
            lines.append(rf"\draw[->] ({tap.x:.3f},{bus.y:.3f}) -- ({tap.target});")
            labels = [n for n in tap.labels if n is not None]  # a spread or fold has no parameter to name
            if labels:
                lines.append(rf"\node[tap] at ({tap.x:.3f},{band:.3f}) {{${_labels_tex(labels, name_tex)}$}};")
        for x in sorted(set(round(j, 3) for j in joins)):
            if bus.left + 1e-6 < x < bus.right - 1e-6 or joins.count(x) > 1:
                lines.append(rf"\node[junction] at ({x:.3f},{bus.y:.3f}) {{}};")
    if lay.buses:
        lines.append(_legend(lay, name_tex, bottom))
    lines.append(r"\end{tikzpicture}")
    return "\n".join(lines)


def _tap_label_y(lay: Layout, bus: Bus) -> float:
    """The middle of the free part of the lowest tap: between the bus and its target's circle."""
    where = {p.ident: p for p in lay.nodes}
    lowest = min(where[tap.target].y for tap in bus.taps)
    return (bus.y + lowest - NODE_RADIUS) / 2


def _legend(lay: Layout, name_tex, bottom) -> str:
    """A line under the drawing that says how to read a bus."""
    bus = max(lay.buses, key=lambda b: len(b.sources))
    where = {p.ident: p for p in lay.nodes}
    names = [where[s].key[0] for s in bus.sources]
    general = []
    for name in names:
        general.append(name_tex(name, "t") if where[bus.sources[names.index(name)]].style == "input"
                       else name_tex(name, "t-1"))
    listed = [f"${n}$" for n in general]
    listed = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
    xs = [p.x for p in lay.nodes]
    text = (rf"The line with dots (a bus) collects {listed}. Its arrow into a node $v$ stands for their "
            rf"arrows into $v$ and is labelled with their maps in this order.")
    width = max(xs) - min(xs) + 0.5
    return rf"\node[legend, text width={width:.2f}cm] at ({min(xs) - 0.4:.3f},{bottom - 0.3:.3f}) {{{text}}};"


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
