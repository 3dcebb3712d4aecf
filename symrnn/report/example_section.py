"""The worked example's section of a cell's report: the numbers, the scalar program worked by hand, the
closed form and the table that checks them against the generated code and the oracles (built by
:class:`~symrnn.report.sections.ReportBuilder`)."""
from __future__ import annotations

import numpy as np

from .blocks import Code, Math, Paragraph, Ref, Section, Table
from .example import TOLERANCE, WorkedExample  # noqa: F401 (WorkedExample: the type the section reads)
from .latex import ReportLatexPrinter, tex_width
from .labels import tex_label



def _value_suffix(expr, value) -> str:
    """`` = 0.123456`` after an expression, or nothing after a number (no ``0 = 0.000000``)."""
    return "" if getattr(expr, "is_Number", False) else f" = {number_tex(value)}"

def number_tex(value: float, digits: int = 6) -> str:
    """``value`` in math mode to six significant figures: ``0.123456``, ``-4.71234 \\times 10^{-5}``
    (``digits`` of them)."""
    value = float(value) + 0.0
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        text = f"{value:.{digits}f}"
        return text.lstrip("-") if float(text) == 0 else text
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return r"%s \times 10^{%d}" % (mantissa, int(exponent))


def _once(rows):
    """``rows`` without the repeats of a line already printed (a quantity of the parameters alone, computed
    again at every step of the scalar program, is printed at its first step only)."""
    seen, out = set(), []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            out.append(row)
    return out


#: the widest row of the check table (``tex_width`` units) that fits the line at six figures
TABLE_WIDTH = 63.0


def power_of_ten_tex(value: float) -> str:
    return "10^{%d}" % round(np.log10(value))


class ExampleSection:
    """The worked example's section: numbers, scalar program, closed form, check table."""

    def __init__(self, builder, ex: WorkedExample):
        self.b, self.ex = builder, ex
        plain = ReportLatexPrinter({"elementwise": False})
        static = builder.settings.get("static", ())

        def name_tex(base, bar=False, index=None):
            if base in static and not bar and index is not None:  # a quantity of the parameters: no step,
                entries = index.split(",")[1:]  # an entry in brackets as a parameter's, [A]_{2}
                return r"[%s]_{%s}" % (plain.name_tex(base), ",".join(entries)) if entries else plain.name_tex(base)
            return plain.name_tex(builder.renames.get(base, base) if not bar and index is None else base, bar, index)
        names = ex.symbol_names(name_tex)
        self.p = ReportLatexPrinter({"elementwise": False, "symbol_names": names, "order": None})

    def tex(self, expr):
        return self.p.doprint(expr)

    def build(self) -> Section:
        ex, m = self.ex, self.ex.model
        ex.table()
        intro = self._intro()
        values = Paragraph(self._values())
        adjoint_rows = [(self.tex(s), d, None) for s, d in ex.softmax]
        adjoint_rows += [(self.tex(s), d, None) for s, d in ex.adjoints]
        focus = self.tex(ex.focus_symbol)
        env, hand = ex.hand_values()

        def valued(symbol, definition, value=None):
            value = env[symbol] if value is None else value
            return (self.tex(symbol), (definition, _value_suffix(definition, value)), None)

        program = _once([valued(s, d) for s, d in ex.definitions + ex.softmax])
        loss_rows = [(self.tex(s), d, None) for s, d in ex.loss_definitions]
        loss_rows.append(("L", ex.loss_expr, tex_label("example", "loss")))
        backward = []
        for t, rows in ex.hand_program():
            backward += [Paragraph(["Step ", Math(f"t = {t}"), ":"]),
                         self.b.display([valued(s, d) for s, d in rows], self.p, exercise=True)]
        gradient_rows = [(self.b.partial("L", self.tex(e.symbol)),
                          (ex.hand_gradients()[e.symbol], _value_suffix(ex.hand_gradients()[e.symbol], e.by_hand)), None)
                          for e in ex.table()]
        blocks = [
            intro, values,
            Paragraph(["The forward pass, line by line, with the value of every line"]
                      + ([" (", Math(r"\hat{y}"), " is the softmax of the logits)"] if ex.softmax else []) + [":"]),
            self.b.display(program, self.p),
            Paragraph(["and the loss, ", Math("L = " + number_tex(ex.loss_value))]
                      + ([f" (with one sequence the {m.reduction} reduction's factor is ", Math(self.tex(ex.scale)),
                          ", already in the lines below)"] if ex.scale != 1 else []) + [":"]),
            self.b.display(loss_rows, self.p),
            Paragraph(["The backward pass runs the adjoint equations of Section ", Ref("sec:adjoints"),
                       " at these sizes, from the last step to the first; each line reads only values "
                       "above it:"]),
            *backward,
            Paragraph(["Each gradient adds one term per step (Section ", Ref("sec:gradients"), "):"]),
            self.b.display(gradient_rows, self.p, exercise=True),
            Paragraph(["The same gradient can be had without adjoints. Differentiating the loss, with every "
                       "line above composed into it, with respect to ", Math(focus),
                       " and writing the quantities above back under their names gives the closed form"]),
            self.b.display([(self.b.partial("L", focus), ex.closed_form, tex_label("example", "closed-form"))],
                           self.p, exercise=True),
            Paragraph(["in terms of the gradients of the loss with respect to the outputs,"]),
            self.b.display(adjoint_rows, self.p, exercise=True),
            Paragraph(["Table ", Ref("tab:check"), " evaluates, for every parameter, input and initial-state "
                       "entry, the gradient four ways: the lines above by hand (evaluated one after the other), "
                       "the generated NumPy code (", Code("Model.loss_and_grads"),
                       "), the derivative of the closed-form loss lambdified (SymPy differentiates the expanded "
                       "loss of ", Code("ScalarOracle.expanded_loss"), "), and central differences of the loss "
                       "with step ", Math("10^{-6}"), ". The last column bounds the largest difference between "
                       "the four."]),
            self._table(),
        ]
        return Section("A worked example by hand", "sec:example", blocks)

    def _intro(self) -> Paragraph:
        ex, m = self.ex, self.ex.model
        size_words = "D = H = 1" + (", K = 2" if m.readout is not None else "")
        return Paragraph([
            "Take the same cell, architecture and loss with ", Math(size_words), ", one sequence, ",
            Math(str(ex.T_in)), f" input step{'s' if ex.T_in > 1 else ''} and ", Math(str(ex.T_out)),
            f" target step{'s' if ex.T_out > 1 else ''} (", Math(f"T = {ex.schedule.T}"), "). Every vector of "
            "the cell is then a number, and a matrix entry is written in brackets, ", Math(r"[V]_{k}"),
            ". The unrolled scalar program of ",
            Code("symrnn.oracles.ScalarOracle"), " computes one number after the other; composing its lines "
            "gives the loss as one closed-form expression of the parameters, the inputs, the initial "
            "state" + ("s" if len(m.state_names) > 1 else "") + " and the targets. The values are"])

    def _values(self):
        ex = self.ex
        parts = []
        leaves = list(ex.leaves.items())
        for i, (symbol, value) in enumerate(leaves):
            if i:
                parts.append("; " if i < len(leaves) - 1 else " and ")
            value = float(value) + 0.0  # no "-0"
            text = f"{value:.0f}" if value.is_integer() else f"{value:.2f}"
            parts.append(Math(f"{self.tex(symbol)} = {text}"))
        parts.append(".")
        return parts

    def _table(self) -> Table:
        rows = self._rows(6)
        if max(sum(tex_width(c[0].tex) for c in row) for row in rows) > TABLE_WIDTH:
            rows = self._rows(5)  # negative numbers in powers of ten in every column: one figure fewer
        return self._check_table(rows)

    def _rows(self, digits):
        rows = []
        for e in self.ex.table():
            bound = TOLERANCE["differences"]
            worst = e.max_difference
            cell = [Math(r"< " + power_of_ten_tex(bound))] if worst < bound else [Math(f"{worst:.1e}")]
            rows.append([[Math(self.tex(e.symbol))]]
                        + [[Math(number_tex(v, digits))] for v in (e.by_hand, e.generated, e.closed, e.differences)]
                        + [cell])
        return rows

    def _check_table(self, rows) -> Table:
        return Table(["l", "r", "r", "r", "r", "r"],
                     [["entry"], ["by hand"], ["generated"], ["closed form"], ["differences"], ["max. diff."]],
                     rows, ["The gradient of the worked example four ways: by hand, the generated code, the "
                            "lambdified closed form and central differences."], "tab:check")
