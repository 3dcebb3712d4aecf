"""The figure of the unrolled graph (symrnn.report.tikz) and where the reports place figures and tables.

Pinned from the drawing's geometry (the Layout the TikZ code is written from):

* a step whose input or previous state feeds several of its nodes through linear maps draws those
  edges as one bus: the state's fan is a single trunk, never a bundle of crossing arrows;
* no two drawn lines cross, except a trunk passing over a chain (the LSTM's ``c_{t-1} -> c_t``,
  which no drawing with the losses on top and the inputs below can avoid), and the trunk is drawn
  with a white band there, so that the crossing reads as a bridge;
* labels sit beside the middle of their edge (``midway``), the labels of a bus between the bus and
  the circles, clear of arrowheads, nodes and the neighbouring labels; every label is a parameter;
* every figure compiles, and in a compiled report the figure stays inside its section and each
  table between its section's heading and the next one.
"""
from __future__ import annotations

import re
import subprocess

import pytest

import symrnn as sr
from symrnn.engine.cells import BUILTIN_CELLS
from symrnn.engine.examples import minimal_gated_unit, peephole_lstm
from symrnn.report import build_document, latex_document
from symrnn.report.blocks import Figure
from symrnn.report.compile import compile_pdf
from symrnn.report.document import PREAMBLE, render, render_figure
from symrnn.report.sections import ReportBuilder
from symrnn.report.tikz import NODE_RADIUS, TIKZ_STYLES, layout, tikz_picture
from test_reports import need  # skips locally without TeX, fails in CI

ARROWHEAD = 0.16  # cm: Stealth[length=1.6mm]
USER_CELLS = {"mgu": minimal_gated_unit, "peephole-lstm": peephole_lstm}
ARCHITECTURES = ("many-to-one", "one-to-many", "many-to-many-delayed", "one-to-one")


def model(cell, **kw):
    cell = USER_CELLS[cell]() if cell in USER_CELLS else cell
    return sr.Model(cell, D=3, H=4, K=3, **kw)


def plain_tex(base, t=None):
    return base if t is None else f"{base}_{{{t}}}"


def segments(lay):
    """The straight lines of the drawing: ``(p, q, owners, kind)``; lines that share an owner meet by design."""
    where = {p.ident: p for p in lay.nodes}
    out = []
    for e in lay.edges:
        if e.bus is None and e.bend is None:
            a, b = where[e.source], where[e.target]  # (the bridged ones are drawn over a white band)
            out.append(((a.x, a.y), (b.x, b.y), {e.source, e.target}, "bridge" if e.bridge else "edge"))
    for k, bus in enumerate(lay.buses):
        tag = f"bus{k}"
        out.append(((bus.left, bus.y), (bus.right, bus.y), {tag}, "bus"))
        if bus.input is not None:
            src = where[bus.input]
            out.append(((src.x, src.y), (bus.input_x, bus.y), {tag, bus.input}, "riser"))
        for tap in bus.taps:
            v = where[tap.target]
            out.append(((tap.x, bus.y), (v.x, v.y), {tag, tap.target}, "bridge" if tap.bridge else "tap"))
        for trunk in bus.trunks:
            src = where[trunk.source]
            points = [(src.x, src.y)] + list(trunk.points)
            out += [(p, q, {tag, trunk.source}, "trunk") for p, q in zip(points, points[1:])]
    return out


def crossings(lay):
    def side(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    segs, found = segments(lay), []
    for i, (p1, p2, own1, kind1) in enumerate(segs):
        for p3, p4, own2, kind2 in segs[i + 1:]:
            if own1 & own2:
                continue
            if side(p3, p4, p1) * side(p3, p4, p2) < -1e-9 and side(p1, p2, p3) * side(p1, p2, p4) < -1e-9:
                found.append(((p1, p2, kind1), (p3, p4, kind2)))
    return found


def keyed(lay):
    return {p.ident: p.key for p in lay.nodes}


# -- the LSTM: one trunk per step instead of four crossing arrows ------------------------------------------
def test_lstm_previous_hidden_state_feeds_the_gates_through_one_bus():
    lay = layout(model("lstm"))
    names = keyed(lay)
    assert len(lay.buses) == 3  # one per step
    for bus in lay.buses:
        t = bus.step
        gates = {ident for ident, key in names.items() if key in {(g, t) for g in "ifgo"}}
        h_prev = next(ident for ident, key in names.items() if key == ("h", t - 1))
        # every edge h_{t-1} -> gate and x_t -> gate is a branch of the bus, none is drawn on its own
        fan = [e for e in lay.edges if e.source == h_prev and e.target in gates]
        assert len(fan) == 4 and all(e.bus == lay.buses.index(bus) for e in fan)
        assert [trunk.source for trunk in bus.trunks] == [h_prev]  # a single line leaves h_{t-1}
        assert {tap.target for tap in bus.taps} == gates
        assert {tap.labels for tap in bus.taps} == {(f"U_{g}", f"W_{g}") for g in "ifgo"}
    tikz = tikz_picture(lay, plain_tex)
    for bus in lay.buses:  # no arrow of its own from h_{t-1} into a gate
        h_prev = next(ident for ident, key in names.items() if key == ("h", bus.step - 1))
        for tap in bus.taps:
            assert not re.search(rf"\\draw\[->\] \({h_prev}\) .*\({tap.target}\);", tikz)


def test_lstm_crossings_are_only_bridges_over_the_cell_chain():
    """The chain c_0 -> c_1 -> ... separates the losses above from the inputs below: at every step
    h_{t-1} must come down across it (the trunk) and o_t -> h_t go up across it; nothing else crosses."""
    lay = layout(model("lstm"))
    found = crossings(lay)
    assert len(found) == 2 * len(lay.buses) - 1  # o_T -> h_T has no c_T -> c_{T+1} to cross
    where = {(p.x, p.y): p.key for p in lay.nodes}
    bridged = []
    for a, b in found:
        over, under = (a, b) if a[2] in ("trunk", "bridge") else (b, a)
        assert over[2] in ("trunk", "bridge") and under[2] == "edge"
        assert where[under[0]][0] == where[under[1]][0] == "c"  # c_{t-1} -> c_t
        if over[2] == "bridge":
            bridged.append((where[over[0]][0], where[over[1]][0]))
    assert bridged == [("o", "h")] * (len(lay.buses) - 1)
    tikz = tikz_picture(lay, plain_tex)
    assert tikz.count(r"\draw[bridge") == 2 * len(lay.buses) - 1  # a white band under each: the line hops over


@pytest.mark.parametrize("cell", list(USER_CELLS))
def test_user_cells_cross_only_by_bridges(cell):
    for a, b in crossings(layout(model(cell))):
        assert {a[2], b[2]} & {"trunk", "bridge"}, (a, b)


@pytest.mark.parametrize("cell", ["gru", "gru-reset-before", "gru-chung", "gru-reset-before-chung",
                                  "rnn-tanh", "rnn-relu", "rnn-sigmoid"])
def test_no_lines_cross(cell):
    assert crossings(layout(model(cell))) == []


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_architectures_keep_the_figure_free_of_crossings(architecture):
    assert crossings(layout(model("gru", architecture=architecture))) == []
    lay = layout(model("lstm", architecture=architecture))
    assert all({a[2], b[2]} & {"trunk", "bridge"} for a, b in crossings(lay))


# -- the GRU: the input's arrow into the candidate clears every other node and label ----------------------
def test_gru_input_to_candidate_clears_the_other_nodes():
    lay = layout(model("gru"))
    names = keyed(lay)
    where = {p.ident: p for p in lay.nodes}
    for bus in lay.buses:
        n = next(ident for ident, key in names.items() if key == ("n", bus.step))
        tap = next(tap for tap in bus.taps if tap.target == n)
        assert tap.labels == ("U_n", "W_n")
        for p in lay.nodes:  # nothing but n on the vertical line from the bus up to n
            if p.ident != n and bus.y < p.y < where[n].y:
                assert abs(p.x - tap.x) > NODE_RADIUS + 0.2, p.key


# -- labels ------------------------------------------------------------------------------------------------
ALL_FIGURES = list(BUILTIN_CELLS) + list(USER_CELLS)


def label_width(labels):
    return 0.45 * len(labels)  # cm, \scriptsize: a map's name and its comma


@pytest.mark.parametrize("cell", ALL_FIGURES)
def test_labels_sit_midway_and_clear_of_arrowheads_nodes_and_each_other(cell):
    lay = layout(model(cell))
    tikz = tikz_picture(lay, plain_tex)
    assert "midway" in re.search(r"param/\.style=\{([^}]*)\}", TIKZ_STYLES).group(1)
    assert not re.search(r"at end|near end|very near end|at start|near start", tikz)
    moved = {(e.source, e.target): e.label_pos for e in lay.edges if e.label_pos != 0.5}
    for line in tikz.splitlines():
        if "node[param" in line:  # a label on a straight or bent edge: in the middle of the path
            found = re.fullmatch(r"\\draw\[->\] \((n\d+)\) (?:--|to\[bend (?:left|right)=\d+\]) "
                                 r"node\[param(?:, pos=([\d.]+))?\] \{\$[^$]+\$\} \((n\d+)\);", line)
            assert found, line
            if found.group(2):  # moved along the edge only where a bridge crosses it in the middle
                assert moved[(found.group(1), found.group(3))] == float(found.group(2))
                assert 0.2 <= float(found.group(2)) <= 0.65
    where = {p.ident: p for p in lay.nodes}
    tap_label = re.compile(r"\\node\[tap\] at \(([-\d.]+),([-\d.]+)\)")
    placed = [tuple(map(float, m.groups())) for m in tap_label.finditer(tikz)]
    assert len(placed) == sum(len(b.taps) for b in lay.buses)
    for bus in lay.buses:
        xs = sorted(tap.x for tap in bus.taps)
        for tap in bus.taps:
            x, y = next(p for p in placed if abs(p[0] - tap.x) < 1e-3 and bus.y < p[1])
            target = where[tap.target]
            assert bus.y + 0.1 < y < target.y - NODE_RADIUS - ARROWHEAD - 0.1  # below the arrowhead
            right = x + label_width(tap.labels)
            assert not [other for other in xs if x < other < right]  # the next tap is further right
            for p in lay.nodes:  # no circle or box under the label
                assert not (x - NODE_RADIUS < p.x < right + NODE_RADIUS and abs(p.y - y) < NODE_RADIUS + 0.15), p.key


@pytest.mark.parametrize("cell", ALL_FIGURES)
def test_every_label_is_a_parameter_of_the_model(cell):
    m = model(cell)
    lay = layout(m)
    params = set(m.init_params(seed=0))
    labels = {e.label for e in lay.edges if e.label is not None}
    labels |= {name for bus in lay.buses for tap in bus.taps for name in tap.labels}
    assert labels and labels <= params
    tikz = tikz_picture(lay, plain_tex)
    printed = re.findall(r"node\[(?:param|tap)\](?: at \([^)]*\))? \{\$([^$]+)\$\}", tikz)
    assert printed and {name for text in printed for name in text.split(", ")} <= params


def test_bus_taps_list_the_maps_in_the_order_of_the_legend():
    lay = layout(model("gru", architecture="one-to-many"))  # steps 2 and 3 read no input
    names = keyed(lay)
    with_input = [b for b in lay.buses if b.input is not None]
    without = [b for b in lay.buses if b.input is None]
    assert with_input and without
    assert all(names[b.sources[0]][0] == "x" for b in with_input)
    assert all(tap.labels[0].startswith("U_") for b in with_input for tap in b.taps)
    assert all(all(name.startswith("W_") for name in tap.labels) for b in without for tap in b.taps)
    tikz = tikz_picture(lay, plain_tex)
    assert "collects $x_{t}$ and $h_{t-1}$" in tikz


def test_nodes_do_not_overlap():
    for cell in ALL_FIGURES:
        nodes = layout(model(cell)).nodes
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                assert (a.x - b.x) ** 2 + (a.y - b.y) ** 2 >= (2 * NODE_RADIUS + 0.15) ** 2, (cell, a.key, b.key)


# -- the document: floats stay with their text -------------------------------------------------------------
ALLOWED_PACKAGES = {"geometry", "amsmath", "amssymb", "array", "booktabs", "longtable", "float", "graphicx",
                    "tikz", "hyperref"}  # texlive-latex-base, -latex-recommended and -pictures


def test_figures_stay_here_and_tables_break_in_the_text():
    tex = latex_document(model("lstm"))
    packages = {name.strip() for group in re.findall(r"\\usepackage(?:\[[^]]*\])?\{([^}]*)\}", tex)
                for name in group.split(",")}
    assert packages <= ALLOWED_PACKAGES
    assert r"\begin{figure}[H]" in tex and "htbp" not in tex
    assert r"\begin{table}" not in tex and tex.count(r"\begin{longtable}") >= 2
    assert r"\endhead" in tex  # the header repeats on a continuation page


def figure_of(m):
    """The graph figure of ``m``'s report, built alone (the whole report's worked example of an sLSTM
    takes a minute)."""
    return next(b for b in ReportBuilder(m).graph().blocks if isinstance(b, Figure))


@pytest.mark.latex
def test_every_figure_compiles():
    need("pdflatex")
    models = [model(c) for c in ALL_FIGURES] + [model("lstm", architecture=a) for a in ARCHITECTURES]
    body = "\n\\clearpage\n".join(render_figure(figure_of(m)) for m in models)
    result = compile_pdf(PREAMBLE + "\\begin{document}\n" + body + "\n\\end{document}\n", "figures")
    assert result.pdf.startswith(b"%PDF")
    assert result.overfull_lines() == []


def section_text(pdf, tmp_path):
    need("pdftotext")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.latex
@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm"])
def test_compiled_report_keeps_figure_and_tables_in_their_sections(cell, tmp_path):
    need("pdflatex")
    text = section_text(compile_pdf(render(build_document(model(cell)))).pdf, tmp_path)

    def at(pattern):
        found = re.search(pattern, text, re.M)
        assert found, pattern
        return found.start()

    def heading(title):
        return at(rf"^\f?(?:\d+\s+)?{title}\s*$")  # pdftotext: the title alone on its line

    assert heading("Notation") < at(r"^\f?Table 1:") < heading("Forward pass")
    assert heading("The unrolled computation graph") < at(r"^\f?Figure 1:") < heading("Local derivatives")
    assert heading("A worked example by hand") < at(r"^\f?Table 2:")
