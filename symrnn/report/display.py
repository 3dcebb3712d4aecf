r"""Showing a derivation in a notebook: its equations as one aligned LaTeX block, printed by the report's printer.

:meth:`Derivation.show <symrnn.engine.bptt.Derivation.show>` and :meth:`Derivation.latex
<symrnn.engine.bptt.Derivation.latex>` (and the same two methods of a sequence-to-sequence model's
derivation) are the functions :func:`show` and :func:`latex` of this module, attached to the engine's
classes when :mod:`symrnn.report` is imported (the engine never imports a report; in a notebook
``import symrnn`` loads the report layer, elsewhere ``import symrnn.report`` does).  They print
with the names of the model's PDF report: a gate's pre-activation adjoint ``\bar a^f_t`` under its
name, the readout's bias ``b_y`` beside an LSTM's cell state, the parameters under their letters.

A derivation is shown by *parts* (see :data:`PARTS`), or by rows ``(left side, right side)`` of your
own, each side a SymPy expression or a LaTeX string.  :func:`report_section` shows the equations of one
section of any model's report (a stacked or bidirectional model's merge, its layer-to-layer link), and
:func:`table` a small HTML table with spaced columns.

>>> import symrnn as sr
>>> import symrnn.report
>>> d = sr.Model("rnn-tanh", D=3, H=4, K=5).derive()
>>> print(d.latex("forward"))
\begin{aligned}
a_{t} &= U x_{t} + W h_{t-1} + b \\
h_{t} &= \tanh{\left(a_{t} \right)} \\
o_{t} &= c + V h_{t}
\end{aligned}
"""
from __future__ import annotations

import html
import sys

import sympy as sp

from ..engine.bptt import Derivation
from ..errors import ParameterError, UnknownNameError
from ..models.seq2seq_derivation import Seq2SeqDerivation
from .blocks import Display
from .latex import ReportLatexPrinter, break_lines, tex_width

#: The parts of a cell's :class:`~symrnn.engine.bptt.Derivation`, in the order of its report.
PARTS = ("forward", "loss", "adjoints", "gates", "gradients", "input_gradient", "initial_states", "jacobians")

#: The parts of a sequence-to-sequence model's derivation (:class:`~symrnn.models.seq2seq_derivation.Seq2SeqDerivation`).
SEQ2SEQ_PARTS = ("encoder", "encoder_adjoints", "bridge", "bridge_adjoint", "decoder", "decoder_adjoints",
                 "attention", "attention_adjoints", "combine", "combine_adjoints", "readout", "readout_adjoints",
                 "paths")

WIDTH = 64.0  # what fits one line of a notebook's output (units of symrnn.report.latex.tex_width)


class Equations:
    """Aligned equations as LaTeX: a notebook renders them (``_repr_latex_``), ``str()`` is the LaTeX.

    Attributes
    ----------
    latex : str
        ``\\begin{aligned} ... \\end{aligned}``, one ``lhs &= rhs`` line per row, long right sides on
        continuation lines.
    """

    def __init__(self, latex: str):
        self.latex = latex

    def _repr_latex_(self):
        return "$$" + self.latex + "$$"

    def __str__(self):
        return self.latex

    __repr__ = __str__


class _Namer:
    """The printer and the names of one derivation's report (the cell report's, if the model has one)."""

    def __init__(self, derivation, **settings):
        model = getattr(derivation, "model", None)
        self.named, self.gates, self.renamed, base = (lambda e: e), [], None, {}
        if model is not None and getattr(model, "cell", None) is derivation.cell:
            from .sections import ReportBuilder

            builder = ReportBuilder(model)
            base = builder.settings
            self.named, self.renamed = builder.name_gates, builder.name
            self.gates = list(builder.gates.values())
        self.settings = {**base, **settings}
        self.printer = ReportLatexPrinter(self.settings)

    def tex(self, expr) -> str:
        return expr if isinstance(expr, str) else self.printer.doprint(expr)

    def name(self, param) -> str:
        return self.renamed(param) if self.renamed else self.printer.name_tex(param)


def _aligned(rows, printer, width=WIDTH, named=lambda e: e) -> str:
    """``rows`` ``(lhs, rhs)`` as an ``aligned`` block; a right side that is SymPy is broken to ``width``."""
    lines = []
    for lhs, rhs in rows:
        left = lhs if isinstance(lhs, str) else printer.doprint(lhs)
        if rhs is None:  # a heading row
            lines.append(rf"&{left}")
            continue
        first = max(width - tex_width(left), 24.0)
        if isinstance(rhs, (list, tuple)):  # LaTeX lines, already broken
            pieces = [str(piece) for piece in rhs]
        else:
            pieces = [rhs] if isinstance(rhs, str) else break_lines(named(rhs), printer, first, first - 4.0)
        lines.append(f"{left} &= {pieces[0]}")
        lines += [rf"&\quad {{}}{piece}" for piece in pieces[1:]]
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def _parameter_order(derivation):
    declared = list(derivation.cell.params)
    return lambda name: (declared.index(name) if name in declared else len(declared), name)


def _cell_rows(d, part, namer):
    """The rows ``(lhs, rhs)`` of one part of a cell's derivation (see :data:`PARTS`)."""
    dL = r"\frac{\partial L}{\partial %s}"
    if part == "forward":
        return [(e.lhs, e.rhs) for e in d.forward]
    if part == "loss":
        if d.loss is None:
            return []
        rows = [(e.lhs, e.rhs) for e in [d.loss.get("readout")] if e is not None]
        rows.append(("L_t", d.loss["per_step"]))
        g = d.loss.get("gradient")
        return rows + ([(g.lhs, g.rhs)] if g is not None else [])
    if part == "adjoints":
        return [(a.lhs, a.rhs) for a in d.adjoints]
    if part == "gates":
        return [(symbol, product) for symbol, product in namer.gates]
    if part == "gradients":
        names = sorted(d.gradients, key=_parameter_order(d))
        return [(dL % namer.name(n), d.gradients[n]) for n in names]
    if part == "input_gradient":
        return [(dL % namer.tex(sp.Symbol(str(d.cell.input_symbol))), d.input_gradient)]
    if part == "initial_states":
        return [(dL % f"{namer.printer.name_tex(s)}_0", g) for s, g in d.initial_state_gradients.items()]
    if part == "jacobians":
        return [(r"\frac{\partial %s_k}{\partial %s_{k-1}}" % (namer.printer.name_tex(s), namer.printer.name_tex(p)),
                 j) for (s, p), j in d.step_jacobians.items()]
    raise UnknownNameError(f"Unknown part {part!r} of a derivation; expected some of {list(PARTS)}.")


_PART_SETTINGS = {"initial_states": {"time": 1}, "jacobians": {"time": "k"}}


def latex(derivation, *parts, rows=None, named=True, width=WIDTH, **settings) -> str:
    r"""The equations of ``derivation`` as one LaTeX ``aligned`` block.

    Parameters
    ----------
    derivation : Derivation or Seq2SeqDerivation
        What ``Model.derive()`` (or ``Seq2Seq.derive()``) returned.
    *parts : str
        Which equations, in this order: for a cell some of :data:`PARTS` (``forward``, ``loss``,
        ``adjoints``, ``gates`` (each gate's pre-activation adjoint, named), ``gradients``,
        ``input_gradient``, ``initial_states`` (at ``t = 1``), ``jacobians`` (at step ``k``)); for a
        sequence-to-sequence model some of :data:`SEQ2SEQ_PARTS`.  None: every part (none when ``rows``
        are given).
    rows : list of (lhs, rhs), optional
        Rows of your own after the parts: each side a SymPy expression or LaTeX text (a list of LaTeX
        texts: the lines of a right side broken by hand); ``rhs`` None makes ``lhs`` a heading line.
    named : bool
        Write each gate's pre-activation adjoint under its name (``\bar a^f_t``) in the right sides.
    width : float
        The widest line (units of :func:`symrnn.report.latex.tex_width`); longer right sides are broken.
    **settings
        Settings of the report's printer, for example ``time=1`` (print ``h[t-1]`` as ``h_0``) or
        ``time="k"``.

    Returns
    -------
    str
        ``\begin{aligned} ... \end{aligned}``.

    Examples
    --------
    >>> import symrnn as sr
    >>> import symrnn.report
    >>> d = sr.Model("lstm", D=2, H=3, K=2).derive()
    >>> print(d.latex("gates"))  # doctest: +ELLIPSIS
    \begin{aligned}
    \bar{a}^{i}_{t} &= \bar{i}_{t} \odot ...
    """
    if _is_seq2seq(derivation):
        return _seq2seq_latex(derivation, parts, rows, width)
    if not isinstance(derivation, Derivation):
        raise ParameterError(f"latex() takes what Model.derive() or Seq2Seq.derive() returns, got "
                             f"{type(derivation).__name__}.")
    namer = _Namer(derivation, **settings)
    named_fn = namer.named if named else (lambda e: e)
    blocks, shown = [], set()
    for part in parts or (() if rows else PARTS):
        # the loss's gradient is also the first adjoint: one row, where it is printed first
        part_rows = [row for row in _cell_rows(derivation, part, namer) if _key(row) not in shown]
        shown |= {_key(row) for row in part_rows}
        printer = namer.printer
        if part in _PART_SETTINGS:
            printer = ReportLatexPrinter({**namer.settings, **_PART_SETTINGS[part], **settings})
        if part_rows:
            blocks.append((part_rows, printer, named_fn if part != "gates" else (lambda e: e)))
    if rows:
        blocks.append((list(rows), namer.printer, named_fn))
    return _join(blocks, width)



def _key(row):
    lhs, rhs = row
    return (str(lhs), str(rhs))

def _join(blocks, width) -> str:
    if not blocks:
        raise ParameterError("Nothing to show: no part has equations and no rows were given.")
    bodies = [_aligned(r, p, width, n) for r, p, n in blocks]
    inner = [b[len("\\begin{aligned}\n"):-len("\n\\end{aligned}")] for b in bodies]
    return "\\begin{aligned}\n" + " \\\\\n".join(inner) + "\n\\end{aligned}"


def tex(derivation, expr, **settings) -> str:
    r"""One SymPy expression (or symbol) of ``derivation`` as LaTeX, with the names of the model's report.

    Parameters
    ----------
    derivation : Derivation
    expr : sympy.Basic
        For example a Jacobian read off the unrolled graph, or ``sympy.Symbol("h[t-1]")``.
    **settings
        Settings of the report's printer (``time=2`` prints ``h[t]`` as ``h_2``).

    Examples
    --------
    >>> import sympy as sp, symrnn as sr
    >>> import symrnn.report
    >>> d = sr.Model("lstm", D=2, H=3, K=2).derive()
    >>> print(d.tex(sp.Symbol("bar c[t+1]"), time=2))
    \bar{c}_{3}
    """
    if isinstance(derivation, Seq2SeqDerivation):
        from .seq2seq_notation import printer

        return printer("dec", **settings).doprint(expr)
    return _Namer(derivation, **settings).printer.doprint(expr)


def chain_rule(derivation, graph, node):
    r"""The chain rule at one node of the unrolled graph, as a row for :func:`show`.

    The adjoint of ``node`` is the sum, over the edges leaving it, of the transposed local derivative the
    edge carries times the adjoint of the node it enters (read by
    :func:`symrnn.engine.graph.adjoint_recurrence_from_graph`); one edge per line.

    Parameters
    ----------
    derivation : Derivation
        Of the model the graph was unrolled from (its names are used).
    graph : networkx.DiGraph
        From :func:`symrnn.engine.graph.unroll`.
    node : tuple
        ``(name, step)``, for example ``("h", 2)``.

    Returns
    -------
    tuple
        ``(lhs LaTeX, [LaTeX lines])``: a row of ``rows=`` in :func:`show` and :func:`latex`.

    Examples
    --------
    >>> import symrnn as sr
    >>> import symrnn.report
    >>> from symrnn.engine.graph import unroll
    >>> from symrnn.report.display import chain_rule
    >>> model = sr.Model("rnn-tanh", D=2, H=2, K=2)
    >>> lhs, lines = chain_rule(model.derive(), unroll(model, 3), ("h", 2))
    >>> print(lhs, "=", " ".join(lines))
    \bar{h}_{2} = V^{\top} \bar{o}_{2} + W^{\top} \bar{a}_{3}
    """
    from ..engine.graph import adjoint_recurrence_from_graph

    if node not in graph:
        raise UnknownNameError(f"The graph has no node {node!r}; its states at step 1 are "
                               f"{sorted(n for n in graph.nodes if n[1] == 1)}.")
    terms = []
    for (name, t), jacobian in adjoint_recurrence_from_graph(graph, node):
        if jacobian is None:  # the edge into the loss: the loss rule's gradient is the adjoint itself
            continue
        local = tex(derivation, jacobian) if jacobian.is_Symbol else rf"\left({tex(derivation, jacobian)}\right)"
        terms.append(rf"{local}^{{\top}} {tex(derivation, sp.Symbol(f'bar {name}[t]'), time=t)}")
    if not terms:
        raise ParameterError(f"No edge leaves {node!r} except into the loss.")
    return tex(derivation, sp.Symbol(f"bar {node[0]}[t]"), time=node[1]), [terms[0]] + [f"+ {x}" for x in terms[1:]]


def show(derivation, *parts, rows=None, named=True, width=WIDTH, **settings):
    r"""Display the equations of ``derivation`` (in a notebook as rendered maths, elsewhere as LaTeX text).

    Takes the arguments of :func:`latex`.  Returns None, so a notebook cell that ends with it shows the
    equations once.

    Examples
    --------
    >>> import symrnn as sr
    >>> import symrnn.report
    >>> sr.Model("rnn-tanh", D=3, H=4, K=5).derive().show("adjoints")  # doctest: +ELLIPSIS
    \begin{aligned}
    \bar{o}_{t} &= \hat{y}_{t} - y_{t} \\
    ...
    """
    _display(Equations(latex(derivation, *parts, rows=rows, named=named, width=width, **settings)))


def _display(obj):
    """In IPython, ``IPython.display.display(obj)``; elsewhere print it."""
    ipython = sys.modules.get("IPython")
    display = getattr(getattr(ipython, "display", None), "display", None)
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    if display is not None and shell is not None:
        display(obj)
    else:
        print(obj)


# -- sequence to sequence -----------------------------------------------------------------------------------
def _is_seq2seq(derivation) -> bool:
    return isinstance(derivation, Seq2SeqDerivation)


def _seq2seq_latex(d, parts, rows, width) -> str:
    from .seq2seq_notation import printer, seq2seq_part

    blocks = []
    for part in parts or (() if rows else SEQ2SEQ_PARTS):
        part_rows, part_printer = seq2seq_part(d, part)
        if part_rows:
            blocks.append((part_rows, part_printer, lambda e: e))
    if rows:
        blocks.append((list(rows), printer("dec"), lambda e: e))
    return _join(blocks, width)


# -- a section of any model's report, and a table -------------------------------------------------------
def report_section(model, label) -> Equations:
    r"""The displayed equations of one section of ``model``'s report, as one aligned block.

    Parameters
    ----------
    model : Model, StackedModel, BidirectionalModel or Seq2Seq
    label : str
        The section's label in the LaTeX report: ``sec:forward``, ``sec:adjoints``, ``sec:merge``,
        ``sec:layers``, ...

    Returns
    -------
    Equations
        Rendered by a notebook; ``str()`` is the LaTeX.

    Examples
    --------
    >>> import symrnn as sr
    >>> from symrnn.report.display import report_section
    >>> model = sr.BidirectionalModel("rnn-tanh", D=2, H=3, K=2, merge="sum")
    >>> print(report_section(model, "sec:merge"))  # doctest: +ELLIPSIS
    \begin{aligned}
    \bar{h}^{\rightarrow}_{t}\big|_{\text{merge}} &= \bar{y}_{t} ...
    """
    from . import model_document

    document = model_document(model)
    labels = [s.label for s in document.sections]
    if label not in labels:
        raise UnknownNameError(f"The report of this model has no section {label!r}; its sections are {labels}.")
    section = document.sections[labels.index(label)]
    lines = []
    for block in section.blocks + [b for sub in section.subsections for b in sub.blocks]:
        if isinstance(block, Display):
            for row in block.rows:
                lines.append(f"{row.lhs} &{row.relation} {row.lines[0]}")
                lines += [rf"&\quad {{}}{line}" for line in row.lines[1:]]
    if not lines:
        raise ParameterError(f"The section {label!r} of this model's report has no displayed equations.")
    return Equations("\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}")


class HtmlTable:
    """A small HTML table with spaced columns; a notebook renders it (``_repr_html_``)."""

    STYLE = "border-collapse: collapse; margin: 0.5em 0"
    CELL = "padding: 0.25em 1.2em 0.25em 0; text-align: {align}; border-bottom: 1px solid #ddd"

    def __init__(self, header, rows, align=None):
        self.header = [str(h) for h in header]
        self.rows = [[str(c) for c in row] for row in rows]
        if any(len(row) != len(self.header) for row in self.rows):
            raise ParameterError(f"Every row of the table needs {len(self.header)} cells (one per header).")
        self.align = list(align) if align is not None else ["left"] * len(self.header)

    def _repr_html_(self):
        def cells(tag, row):
            return "<tr>" + "".join(f'<{tag} style="{self.CELL.format(align=a)}">{html.escape(c)}</{tag}>'
                                    for c, a in zip(row, self.align)) + "</tr>"
        return (f'<table style="{self.STYLE}">' + cells("th", self.header)
                + "".join(cells("td", r) for r in self.rows) + "</table>")

    def __str__(self):
        widths = [max(len(r[k]) for r in [self.header] + self.rows) for k in range(len(self.header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [self.header] + self.rows]
        return "\n".join(lines)

    __repr__ = __str__


def table(header, rows, align=None):
    """Display a small table (HTML with spaced columns in a notebook, aligned text elsewhere).

    Parameters
    ----------
    header : list of str
    rows : list of lists
        One cell per header entry; each cell is shown as ``str(cell)``.
    align : list of str, optional
        ``left`` or ``right`` per column (default: all left).

    Examples
    --------
    >>> from symrnn.report.display import table
    >>> table(["lag", "norm"], [[1, "0.5"], [10, "9.8e-04"]])
    lag  norm
    1    0.5
    10   9.8e-04
    """
    _display(HtmlTable(header, rows, align))


Derivation.show = show
Derivation.latex = latex
Derivation.tex = tex
Seq2SeqDerivation.show = show
Seq2SeqDerivation.latex = latex
Seq2SeqDerivation.tex = tex
