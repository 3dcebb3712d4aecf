"""The sections of a derivation report, built from a model's symbolic objects.

Nothing here knows a particular cell or architecture: the text walks the
cell's declarations (input, states, parameters, equations and their roles),
the :class:`~symrnn.engine.bptt.Derivation` (forward equations, loss, adjoint
recurrences, gradients, step Jacobians), the unrolled graph and the worked
example, so a new cell or architecture gets its report with no new code.
Every displayed formula is printed from a SymPy object by
:class:`~symrnn.report.latex.ReportLatexPrinter`.
"""
from __future__ import annotations

import re

import numpy as np
import sympy as sp

from ..engine.symbols import MatTVec, MatVec, Outer, Param, parse, shift, tsym
from .blocks import Boxed, Code, Display, Document, Figure, Math, Paragraph, Ref, Row, Section, Table
from .example import TOLERANCE, WorkedExample
from .latex import ReportLatexPrinter, break_lines, tex_width
from .summary import T_IN, BackwardSummary, bar_sym, gate_adjoints  # noqa: F401 (re-exported)
from .tikz import layout, mermaid_chart, picture_width, tikz_picture

LINE_WIDTH = 60.0  # what fits on one line beside an equation number (units of latex.tex_width)

LOSS_NAMES = {"cross-entropy": "softmax cross-entropy", "mse": "squared error", "half-mse": "half the squared error",
              "upstream": "a given upstream gradient (the layer view)"}
SHAPE_WORDS = {"D": "input size", "H": "hidden size", "K": "output size"}


def sym_base(symbol) -> str:
    return symbol.name.split("[")[0] if parse(symbol) is None else parse(symbol)[0]


def tex_label(*parts) -> str:
    return "eq:" + ":".join(re.sub(r"[^A-Za-z0-9]+", "-", str(p)) for p in parts)


def shape_tex(shape) -> str:
    return r" \times ".join(shape) if shape else "1"


def _number(value: float) -> str:
    """``value`` in math mode to six significant figures: ``0.123456``, ``-4.71234 \\times 10^{-5}``."""
    value = float(value) + 0.0
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        text = f"{value:.6f}"
        return "0.000000" if text == "-0.000000" else text
    mantissa, exponent = f"{value:.5e}".split("e")
    return r"%s \times 10^{%d}" % (mantissa, int(exponent))


def _power_of_ten(value: float) -> str:
    return "10^{%d}" % round(np.log10(value))


class ReportBuilder:
    """Builds the :class:`~symrnn.report.blocks.Document` of one model."""

    def __init__(self, model, width: float = LINE_WIDTH):
        self.model = model
        self.d = model.derive()
        self.cell = model.cell
        self.width = width
        self.renames = _renames(model)
        self.settings = {"symbol_names": {**{Param(k): self.p_name(v) for k, v in self.renames.items()},
                                          T_IN: r"T_{\mathrm{in}}"},
                         "term_rank": forward_rank(model.cell)}
        self.gates = gate_adjoints(self.d)
        self.summary = BackwardSummary(model, self.d)
        self.named = {shift(product, k): shift(symbol, k) for symbol, product in self.gates.values() for k in (0, 1)}
        self.p = ReportLatexPrinter(self.settings)
        self.numbers = {}

    @staticmethod
    def p_name(base):
        return ReportLatexPrinter().name_tex(base)

    # -- helpers ----------------------------------------------------------------------
    def tex(self, expr, **settings) -> str:
        return ReportLatexPrinter({**self.settings, **settings}).doprint(expr) if settings else self.p.doprint(expr)

    def math(self, expr, **settings) -> Math:
        return Math(self.tex(expr, **settings))

    def name(self, base, bar=False, index=None) -> str:
        if base in self.renames and not bar and index is None:  # a parameter printed under another letter
            return self.p_name(self.renames[base])
        return self.p.name_tex(base, bar, index)

    def name_gates(self, expr):
        """``expr`` with each gate's pre-activation adjoint written under its name (``bar a^f_t``)."""
        return expr.xreplace(self.named) if self.named and isinstance(expr, sp.Basic) else expr

    def display(self, specs, printer=None, exercise=False) -> Display:
        """``specs``: ``(lhs LaTeX, expression or LaTeX, label or None[, relation])``; long right sides are broken."""
        printer = printer or self.p
        lhs_width = max(tex_width(s[0]) for s in specs)
        first = self.width - lhs_width - 3.0
        rows = []
        for spec in specs:
            lhs, rhs, label = spec[:3]
            relation = spec[3] if len(spec) > 3 else "="
            if isinstance(rhs, tuple):  # (expression, LaTeX appended to its last line): "= 0.123456"
                rhs, tail = rhs
                lines = break_lines(rhs, printer, first - tex_width(tail), first - 2.5 - tex_width(tail))
                lines[-1] += tail
            else:
                lines = [rhs] if isinstance(rhs, str) else break_lines(rhs, printer, first, first - 2.5)
            number = None
            if label is not None:
                number = self.numbers[label] = len(self.numbers) + 1
            rows.append(Row(lhs, lines, label, number, relation))
        return Display(rows, exercise)

    def partial(self, top, bottom) -> str:
        return r"\frac{\partial %s}{\partial %s}" % (top, bottom)

    # -- the document -----------------------------------------------------------------------
    def build(self) -> Document:
        m = self.model
        title = f"Backpropagation through time for the {self.cell.name} cell"
        subtitle = [f"{m.architecture.name} architecture, {LOSS_NAMES.get(m.loss_rule.name, m.loss_rule.name)} "
                    f"loss, {m.reduction} reduction"]
        sections = [self.introduction(), self.notation(), self.forward(), self.loss(), self.graph(),
                    self.identities(), self.adjoints(), self.gradients(), self.summary_section(), self.jacobians(),
                    self.example()]
        return Document(title, subtitle, sections, dict(self.numbers))

    # -- 1 -------------------------------------------------------------------------------------
    def introduction(self):
        m, c = self.model, self.cell
        what = f"the {c.name} cell" + (f": {c.description}," if c.description else "")
        return Section("The model", "sec:model", [
            Paragraph([f"This chapter derives the exact gradients of a recurrent network built from {what} "
                       "by backpropagation through time (BPTT). The network applies the cell once per step. "
                       f"Its architecture is {m.architecture.name}, {m.architecture.description}. The loss is "
                       f"{LOSS_NAMES.get(m.loss_rule.name, m.loss_rule.name)} with {m.reduction} reduction."]),
            Paragraph(["Every equation below is printed by symrnn from the SymPy objects from which it also "
                       "generates the NumPy code of the forward and backward passes, so the text and the code "
                       "cannot drift apart. The names are those of the code: the parameter ",
                       Math(self.name(next(iter(c.params)))), " is ", Code(next(iter(c.params))),
                       " in ", Code("model.init_params()"), " and in the gradients that ",
                       Code("model.loss_and_grads()"), " returns. The last section checks the equations in "
                       "numbers, on a model small enough to be written out in closed form."]),
        ])

    # -- 2 -------------------------------------------------------------------------------------
    def notation(self):
        m, c, d = self.model, self.cell, self.d
        sizes = [s for s in SHAPE_WORDS if s != "K" or m.readout is not None]
        words = [SHAPE_WORDS[s].split()[0] for s in sizes]
        rows = [[[Math(", ".join(sizes))], ["integers"], [", ".join(words[:-1]) + " and " + words[-1] + " sizes"]],
                [[Math("T")], ["integer"], ["number of steps the cell runs, ", Math(r"t = 1, \dots, T")]]]

        def quantity(symbol, role, size):
            rows.append([[self.math(symbol)], [Math(size)], role if isinstance(role, list) else [role]])

        quantity(c.input_symbol, c.roles.get(sym_base(c.input_symbol)) or "input", c.sizes[c.input_symbol])
        for s, size in c.states.items():
            quantity(tsym(s), [c.roles.get(s) or "state", " (initial value ", Math(self.name(s, index="0")),
                               " given)"], size)
        for eq in c.equations:
            if eq.kind == "let":
                quantity(eq.target, c.roles.get(sym_base(eq.target)) or "intermediate quantity", c.sizes[eq.target])
        specs = dict(c.params)
        if m.readout is not None:
            specs.update(m.readout.params)
        for name, spec in specs.items():
            role = [spec.role or "parameter"] + ([" (", Code(name), " in the code)"] if name in self.renames else [])
            rows.append([[Math(self.name(name))], [Math(shape_tex(spec.shape))], role])
        if m.readout is not None:
            for eq in m.readout.equations:
                role = m.readout.roles.get(sym_base(eq.target)) or "readout"
                if d.loss.get("readout") is None and role == "output logits":  # squared error: no softmax
                    role = "outputs (compared with the targets)"
                quantity(eq.target, role, "K")
            if d.loss.get("readout") is not None:
                quantity(d.loss["readout"].lhs, "predicted class probabilities", "K")
            quantity(tsym("y"), "target (one-hot class or class probabilities)" if m.loss_rule.name ==
                     "cross-entropy" else "target", "K")
        else:
            for state, g in d.external.items():
                quantity(g, ["given upstream gradient of the loss with respect to ", self.math(tsym(state))],
                         c.states[state])
        rows.append([[Math("L_{t}, L")], ["scalars"], ["loss at step ", Math("t"), ", total loss"]])
        for symbol, _ in self.gates.values():
            gate = self.math(tsym(sym_base(symbol).split("__")[1]))
            rows.append([[self.math(symbol)], ["as ", gate], ["adjoint of the pre-activation of ", gate]])
        rows.append([[Math(r"\bar{v}_{t}")], ["as ", Math("v_{t}")],
                     ["adjoint of a quantity ", Math("v_{t}"), ": the gradient of ", Math("L"),
                      " with respect to it"]])
        return Section("Notation", "sec:notation", [
            Paragraph(["Vectors are columns. Sums, products, powers and functions of vectors act elementwise; ",
                       Math(r"\odot"), " is the elementwise product, ", Math(r"\operatorname{diag}(v)"),
                       " the diagonal matrix with ", Math("v"), " on its diagonal and ", Math(r"P^{\top}"),
                       " the transpose of ", Math("P"), ". A bar marks an adjoint: ",
                       Math(r"\bar{v}_{t} = \partial L / \partial v_{t}"), " counts every path from ",
                       Math("v_{t}"), " to the loss, through the later steps as well. A symbol with a step "
                       "index is a quantity of that step; one without is a parameter (Table ",
                       Ref("tab:notation"), ")."]),
            Table(["l", "l", "p{8.4cm}"], [["symbol"], ["shape"], ["meaning"]], rows,
                  ["The symbols of this chapter, with the shapes of the code."], "tab:notation"),
        ])

    # -- 3 -------------------------------------------------------------------------------------
    def forward(self):
        m, c, d = self.model, self.cell, self.d
        states = [tsym(s, -1) for s in c.states]
        plural = "s " if len(states) > 1 else " "
        sched = self._layout().schedule
        blocks = [Paragraph(["For ", Math(r"t = 1, \dots, T"), " the cell reads the input ",
                             self.math(c.input_symbol), " and the previous state" + plural]
                            + _listing([self.math(s) for s in states]) + [" and computes"]),
                  self.display([(self.tex(eq.lhs), eq.rhs, tex_label("forward", sym_base(eq.lhs)))
                                for eq in d.forward[:len(c.equations)]])]
        initial = ["The initial state" + plural] + _listing([self.math(tsym(s, -1), time=1) for s in c.states])
        initial.append(" " + ("are" if len(states) > 1 else "is") + " given (zero unless set).")
        if sched.input_steps != range(sched.T):
            initial += [" A step without an input reads ", Math(self.tex(c.input_symbol) + " = 0"), "."]
        blocks.append(Paragraph(initial))
        if m.readout is not None:
            rows = [(self.tex(eq.lhs), eq.rhs, tex_label("forward", sym_base(eq.lhs)))
                    for eq in d.forward[len(c.equations):]]
            if d.loss.get("readout") is not None:
                eq = d.loss["readout"]
                rows.append((self.tex(eq.lhs), eq.rhs, tex_label("forward", sym_base(eq.lhs))))
            blocks += [Paragraph(["At every scored step the readout maps ", self.math(tsym(m.out)),
                                  " to the output:"]), self.display(rows)]
        else:
            blocks.append(Paragraph(["There is no readout: the loss reads ", self.math(tsym(m.out)),
                                     " directly."]))
        return Section("Forward pass", "sec:forward", blocks)

    # -- 4 -------------------------------------------------------------------------------------
    def loss(self):
        m, d = self.model, self.d
        lay = self._layout()
        sched = lay.schedule

        def steps(r):
            return Math(r"t \in \lbrace %s \rbrace" % ", ".join(str(t + 1) for t in r))

        blocks = [
            Paragraph(["The loss adds the losses of the scored steps, the set ", Math(r"\mathcal{S}"),
                       " given by the architecture:"]),
            self.display([("L", r"\sum_{t \in \mathcal{S}} L_{t}", tex_label("loss", "total")),
                          ("L_{t}", d.loss["per_step"], tex_label("loss", "step"))]),
            Paragraph([f"The {m.architecture.name} architecture has {m.architecture.description}. With ",
                       Math(str(lay.T_in)), f" input step{'s' if lay.T_in > 1 else ''} and ",
                       Math(str(lay.T_out)), f" target step{'s' if lay.T_out > 1 else ''}, for example, the "
                       "cell runs ", Math(f"T = {sched.T}"), " steps; the steps ", steps(sched.input_steps),
                       " read an input and the steps ", steps(sched.output_steps), " are scored."]),
        ]
        if m.reduction == "mean":
            blocks.append(Paragraph(["The mean reduction divides the sum by the number of scored terms "
                                     "(steps and sequences of the batch, and outputs for squared error); "
                                     "the factor appears in the gradient of the loss, equation ",
                                     Ref(tex_label("rule", "loss")), "."]))
        elif m.reduction in ("batch-mean", "token-mean"):
            what = ("the batch size N (a sum over time, a mean over the batch)" if m.reduction == "batch-mean"
                    else "the number of scored steps (a mean over the unmasked tokens)")
            blocks.append(Paragraph([f"The {m.reduction} reduction divides the sum by {what}; the factor "
                                     "appears in the gradient of the loss, equation ",
                                     Ref(tex_label("rule", "loss")), "."]))
        else:
            blocks.append(Paragraph(["The sum reduction also adds over the sequences of a batch; the "
                                     "equations below are written for one sequence."]))
        return Section("Loss", "sec:loss", blocks)

    # -- 5 -------------------------------------------------------------------------------------
    def _layout(self):
        if not hasattr(self, "_lay"):
            self._lay = layout(self.model)
        return self._lay

    def graph(self):
        lay = self._layout()
        tikz = tikz_picture(lay, lambda base, t: self.name(base, index=None if t is None else str(t)))
        if picture_width(lay) > 15.0:
            tikz = r"\resizebox{\linewidth}{!}{%" + "\n" + tikz + "\n}"
        caption = ["The unrolled computation graph for ", Math(f"T = {lay.schedule.T}"), ", drawn from ",
                   Code("symrnn.engine.graph.unroll"), ". Shaded circles are states (dashed: initial states), the boxes "
                   "at the bottom are inputs and the boxes at the top the losses of the scored steps. An arrow "
                   "from ", Math("u"), " to ", Math("v"), " stands for the local partial derivative of ", Math("v"),
                   " with respect to ", Math("u"), "; an arrow labelled with a parameter ", Math("P"),
                   " is a linear map ", Math("P u"), ", whose partial is a diagonal matrix times ", Math("P"),
                   ", and the other arrows are elementwise. Parameters feed every step and are not drawn."]
        return Section("The unrolled computation graph", "sec:graph", [
            Paragraph(["Unrolling the recurrence over the steps turns the network into one acyclic graph "
                       "(Figure ", Ref("fig:graph"), "). The loss depends on a quantity through every path "
                       "from it to a loss node, and the chain rule adds one product of local partial "
                       "derivatives per path. Reverse accumulation (BPTT) collects these sums without "
                       "listing the paths: it visits the nodes from the losses back to the inputs and gives "
                       "each node the sum over its outgoing arrows of the arrow's partial applied to the "
                       "adjoint at the arrow's head."]),
            Figure(tikz, mermaid_chart(lay), caption, "fig:graph", [
                "The unrolled computation graph for ", Math(f"T = {lay.schedule.T}"), ", drawn from ",
                Code("symrnn.engine.graph.unroll"), ", one box per step from left to right. Circles are states and "
                "intermediate quantities, rectangles the inputs and double boxes the losses of the scored steps. "
                "An arrow from ", Math("u"), " to ", Math("v"), " stands for the local partial derivative of ",
                Math("v"), " with respect to ", Math("u"), "; an arrow labelled with a parameter ", Math("P"),
                " is a linear map ", Math("P u"), ", and the other arrows are elementwise. Parameters feed every "
                "step and are not drawn."]),
        ])

    # -- 6 -------------------------------------------------------------------------------------
    def identities(self):
        m, d = self.model, self.d
        u = sp.Symbol("u")
        functions = {}
        equations = list(self.cell.equations) + (list(m.readout.equations) if m.readout is not None else [])
        for eq in equations:
            for f in eq.rhs.atoms(sp.Function):
                if not isinstance(f, MatVec) and len(f.args) == 1:
                    functions[type(f).__name__] = type(f)
        rows = []
        for name in sorted(functions):
            f = functions[name](u)
            if not functions[name].__module__.startswith("sympy."):  # symrnn's own (sigmoid): defined first
                rewritten = f.rewrite(sp.exp)
                if rewritten != f:
                    rows.append((self.tex(f, elementwise=False), rewritten, tex_label("definition", name)))
            rows.append((self.tex(sp.Derivative(f, u), elementwise=False), sp.diff(f, u),
                         tex_label("identity", name)))
        blocks = [Paragraph(["The backward pass needs the derivative of every function that the equations "
                             "apply elementwise. SymPy supplies them, and they enter the generated code as "
                             "they are printed here:"])]
        if rows:
            blocks.append(self.display(rows, ReportLatexPrinter({**self.settings, "elementwise": False})))
        P, q, v = Param("P"), tsym("q"), tsym("u")
        blocks += [
            Paragraph(["Each equation sends the adjoint of its result back to its arguments by one of two "
                       "rules. An elementwise equation ", Math(r"v_{t} = F(u_{t}, \dots)"), " adds ",
                       Math(r"\partial F / \partial u_{t} \odot \bar{v}_{t}"), " to the adjoint of ",
                       Math("u_{t}"), "; the partial is the diagonal of the Jacobian, a vector. A linear map "
                       "inside an equation, ", Math(r"q_{t} = P u_{t}"), ", sends back"]),
            self.display([(self.tex(bar_sym(v)), MatTVec(P, bar_sym(q)), tex_label("rule", "linear"),
                           r"\mathrel{+}="),
                          (self.partial("L", "P"), sp.Sum(Outer(bar_sym(q), v), (d.t, 1, d.T)),
                           tex_label("rule", "outer"))]),
            Paragraph(["so the gradient of a weight matrix is a sum over the steps of outer products: the "
                       "adjoint of its output times the transpose of its input."]),
        ]
        g = d.loss.get("gradient")
        if g is not None:
            text = ["The loss starts the backward pass with its gradient with respect to the output ",
                    self.math(tsym(m.logits)), ":"]
            if d.loss.get("readout") is not None:
                text = ["The loss starts the backward pass with its gradient with respect to the logits ",
                        self.math(tsym(m.logits)), ". The Jacobian of the softmax, ",
                        Math(r"\partial \hat{y}_{t,k} / \partial %s = \hat{y}_{t,k} (\mathbf{1}[k = j] - \hat{y}_{t,j})"
                             % self.name(m.logits, index="t,j")),
                        ", meets the derivative of the logarithm, ", Math(r"-y_{t,k} / \hat{y}_{t,k}"),
                        ", and for targets that sum to one (a class, or a distribution over the classes) "
                        "what is left is"]
            blocks += [Paragraph(text), self.display([(self.tex(g.lhs), g.rhs, tex_label("rule", "loss"))])]
        else:
            state, gsym = next(iter(d.external.items()))
            blocks.append(Paragraph(["The loss starts the backward pass: its gradient with respect to ",
                                     self.math(tsym(state)), " is the given ", self.math(gsym), "."]))
        return Section("Local derivatives", "sec:identities", blocks)

    # -- 7 -------------------------------------------------------------------------------------
    def adjoints(self):
        d = self.d
        loss_rule = d.loss.get("gradient") if d.loss else None  # printed with the loss's rule already
        rows = [(self.tex(a.lhs), self.name_gates(a.rhs), tex_label("adjoint", sym_base(a.lhs))) for a in d.adjoints
                if loss_rule is None or a.lhs != loss_rule.lhs]
        recurrent = [a for a in d.adjoints if any(parse(s) and parse(s)[1] == 1 for s in a.rhs.free_symbols)]
        blocks = [
            Paragraph(["Reverse accumulation runs over the steps from ", Math("T"), " down to 1 and, inside a "
                       "step, over the equations from the last to the first. The two rules, applied to every "
                       "equation of the forward pass, give the adjoints in matrix form, in the order in which "
                       "the backward pass computes them"] + ([", starting from the loss's ",
                                                              Math(self.tex(loss_rule.lhs)), " of equation ",
                                                              Ref(tex_label("rule", "loss"))]
                                                             if loss_rule is not None else []) + [":"]),
            self.display(rows, exercise=True),
        ]
        if self.gates:
            names = [(symbol, product) for symbol, product in self.gates.values()]
            first_gate, (first_symbol, _) = next(iter(self.gates.items()))
            blocks += [Paragraph(["Here each ", Math(r"\bar{a}"), " with a gate's letter, such as ",
                                  self.math(first_symbol), " for ", self.math(first_gate),
                                  ", is the adjoint of that gate's pre-activation: the gate's adjoint times its "
                                  "activation's derivative. "
                                  "Every gradient of the gate's weights and every message through them "
                                  "repeats it, so it is named once:"]),
                       self.display([(self.tex(symbol), product, tex_label("adjoint", f"pre-{sym_base(symbol)}"))
                                     for symbol, product in names], exercise=True)]
        if recurrent:
            many = len(recurrent) > 1
            blocks.append(Paragraph(
                ["The adjoint" + ("s " if many else " ")] + _listing([Math(self.tex(a.lhs)) for a in recurrent])
                + [" of the state" + ("s are" if many else " is") + " the recurrence" + ("s" if many else "")
                   + " of BPTT: " + ("each reads" if many else "it reads") + " adjoints of step ", Math("t + 1"),
                   ", because the state at step ",
                   Math("t"), " feeds step ", Math("t + 1"), ". The backward pass starts at ", Math("t = T"),
                   ", where every adjoint of step ", Math("T + 1"), " is zero."]))
        if self.model.architecture.name == "many-to-many":
            return Section("Adjoint recurrences", "sec:adjoints", blocks)
        scored = (Math(self.tex(bar_sym(tsym(self.model.logits))) + " = 0") if self.model.readout is not None
                  else Math(self.tex(next(iter(d.external.values()))) + " = 0"))
        unscored = not all(cls.scored for cls in self.summary.classes)
        zeros = (["the loss's gradient is zero at a step that is not scored (", scored, " there), and "]
                 if unscored else [])
        written = ([", and the loss's gradient ", Math(self.tex(loss_rule.rhs)), " written out"]
                   if loss_rule is not None else [])
        blocks.append(Paragraph(
            [f"In the {self.model.architecture.name} architecture "] + zeros
            + ["the adjoints of step ", Math("T + 1"), " are zero at the last step. With these zeros"]
            + written + [", the recurrences that change read, by kind of step (the others keep the form "
                         "above):"]))
        general = {lhs: self.summary.specialise(rhs, None) for lhs, rhs in self.summary.system()}
        for cls in self.summary.classes:
            printer = self.class_printer(cls)
            rows = [(printer.doprint(lhs), rhs, tex_label("adjoint", sym_base(lhs), *self.class_key(cls)))
                    for lhs, rhs in self.summary.adjoints(cls) if rhs != general[lhs]]
            if rows:
                blocks += [Paragraph(self.when(cls) + [":"]), self.display(rows, printer, exercise=True)]
        return Section("Adjoint recurrences", "sec:adjoints", blocks)

    # -- 8 -------------------------------------------------------------------------------------
    def gradients(self):
        d, c = self.d, self.cell
        order = list(self.model.param_shapes) + [n for n in d.gradients if n not in self.model.param_shapes]
        initial = [(self.partial("L", self.name(s, index="0")), self.name_gates(g), tex_label("gradient", f"{s}0"))
                   for s, g in d.initial_state_gradients.items()]
        general = self.model.architecture.name == "many-to-many"
        if general:
            rows = [(self.partial("L", self.name(n)), self.name_gates(d.gradients[n]), tex_label("gradient", n))
                    for n in order]
            inputs = [(self.partial("L", self.tex(c.input_symbol)), self.name_gates(d.input_gradient),
                       tex_label("gradient", "input"))]
            where = ["The gradients with respect to the inputs and the initial states are the adjoints "
                     "that reach them:"]
        else:
            rows = [(self.partial("L", self.name(n)), self.sums(self.summary.gradient(n, substitute_loss=False)),
                     tex_label("gradient", n)) for n in order]
            (first, last), term = self.summary.input_gradient(substitute_loss=False)
            single = self.summary.single(first, last)
            printer = self.step_printer(first) if single else self.p
            inputs = [(self.partial("L", printer.doprint(c.input_symbol)), printer.doprint(term),
                       tex_label("gradient", "input"))]
            where = ["The gradients with respect to the inputs and the initial states are the adjoints "
                     "that reach them"] + ([] if (first, last) == (1, d.T) else [
                         "; only the step" + ("" if single else "s") + " ", Math(self.steps_tex(first, last)),
                         " reads an input" if single else " read an input"]) + [":"]
        intro = ["A parameter is used at every step, so its gradient adds one term per step: by rule ",
                 Ref(tex_label("rule", "outer")), " an outer product for a matrix, and the adjoint itself for a bias."]
        if not general:
            intro += [" A term that reads the loss's gradient is zero at the steps that are not scored, and one "
                      "that reads the input at the steps without one, so each sum runs over the steps where "
                      "its terms can be non-zero:"]
        return Section("Gradients of the parameters", "sec:gradients", [
            Paragraph(intro),
            self.display(rows, exercise=True),
            Paragraph(where),
            self.display(inputs, exercise=True),
            Paragraph(["and, for the initial states, the same terms at ", Math("t = 1"), ":"]),
            self.display(initial, ReportLatexPrinter({**self.settings, "time": 1}), exercise=True),
        ])

    # -- 9 -------------------------------------------------------------------------------------
    def summary_section(self):
        """The boxed summary: the combined recurrences and the gradients, printed from
        :class:`~symrnn.report.summary.BackwardSummary` (the derivation's objects, substituted)."""
        S = self.summary
        lines = []
        general = S.adjoints(None, combined=True)
        budget = self.width - 22.0  # the left sides, the box and the array's padding

        def rows(pairs, printer):
            for lhs, rhs in pairs:
                broken = break_lines(rhs, printer, budget, budget - 2.5)
                lines.append(f"{printer.doprint(lhs)} &= {broken[0]}")
                lines.extend(rf"&\quad {{}}{line}" for line in broken[1:])

        lines.append(r"&\text{at every step (an adjoint of step } T + 1 \text{ is zero):}")
        rows(general, self.p)
        base = dict(general)
        for cls in S.classes:
            changed = [(lhs, rhs) for lhs, rhs in S.adjoints(cls, combined=True) if rhs != base.get(lhs)]
            if changed:
                when = [w for w in self.when(cls) if isinstance(w, str)]
                math = next(w.tex for w in self.when(cls) if isinstance(w, Math))
                lines.append(r"&\text{%s}%s\text{%s:}" % (when[0].lower(), math, "".join(when[1:])))
                rows(changed, self.class_printer(cls))
        recurrences, lines = lines, [r"&\text{the gradients:}"]
        order = list(self.model.param_shapes)
        slash = r"\partial L / \partial %s"  # one line high: the box must fit on a page
        grads = [(slash % self.name(n), self.sums(S.gradient(n))) for n in order]
        (first, last), term = S.input_gradient()
        printer = self.step_printer(first) if S.single(first, last) else self.p
        one = ReportLatexPrinter({**self.settings, "time": 1})
        long = [(slash % printer.doprint(self.cell.input_symbol), term, printer)]
        long += [(slash % self.name(s, index="0"), self.name_gates(g), one)
                 for s, g in self.d.initial_state_gradients.items()]
        half = 0.3 * self.width  # the estimate of tex_width errs on the narrow side for sums
        step = 2 if all(tex_width(f"{l} = {r}") < half for l, r in grads) else 1  # two to a line if all fit
        for i in range(0, len(grads), step):
            pair = grads[i:i + step]
            lines.append(r" &\qquad ".join(f"{lhs} &= {rhs}" for lhs, rhs in pair).replace(r"\sum_", r"\sum\nolimits_"))
        for lhs, rhs, printer in long:
            broken = break_lines(rhs, printer, budget, budget - 2.5)
            lines.append(f"{lhs} &= {broken[0]}")
            lines.extend(rf"&\quad {{}}{line}" for line in broken[1:])
        intro = ["The whole backward pass on one page: each adjoint that only one other adjoint reads, and no "
                 "gradient, is substituted into it, and the loss's gradient is written out. "]
        if len(general) == 1:
            intro += ["What is left is one recurrence, for ", self.math(general[0][0]),
                      " (the ", Math(r"\delta_{t}"), " of many textbooks)."]
        else:
            intro += ["What is left are the recurrences of ",
                      *_listing([self.math(lhs) for lhs, _ in general]), "."]
        return Section("Summary", "sec:summary", [Paragraph(intro), Boxed([recurrences, lines])])

    # -- the kinds of step of an architecture ---------------------------------------------------
    def step_printer(self, step):
        """The printer of quantities at one step (``T``, ``1``: ``h[t-1]`` at ``T`` prints ``h_{T-1}``)."""
        step = int(step) if step.is_Integer else self.tex(step)
        return ReportLatexPrinter({**self.settings, "time": step})

    def class_printer(self, cls):
        return self.step_printer(cls.first) if cls.single else self.p

    @staticmethod
    def class_key(cls):
        return ("last",) if cls.final else ("scored" if cls.scored else "unscored",)

    def steps_tex(self, first, last) -> str:
        """``t = T``, ``t < T``, ``T_in < t < T``, ``t <= T_in`` for the steps ``first..last``."""
        T = self.d.T
        if self.summary.single(first, last):
            return f"t = {self.tex(first)}"
        low = "" if first == 1 else (f"{self.tex(first - 1)} < " if (first - 1).free_symbols
                                     else f"{self.tex(first)} \\le ")
        high = "t < T" if sp.simplify(last - (T - 1)) == 0 else f"t \\le {self.tex(last)}"
        return low + high

    def bound_tex(self, bound) -> str:
        """``T_in + 1`` rather than SymPy's ``1 + T_in``."""
        if isinstance(bound, sp.Add) and sp.Integer(1) in bound.args:
            return f"{self.tex(bound - 1)} + 1"
        return self.tex(bound)

    def when(self, cls) -> list:
        scored = "" if cls.scored else ", which are not scored"
        if cls.final and cls.single:
            if cls.first == 1:
                return ["At the only step, ", Math("t = T = 1")]
            return ["At the last step, ", Math(self.steps_tex(cls.first, cls.last))]
        return ["At the steps ", Math(self.steps_tex(cls.first, cls.last)) , scored]

    def sums(self, groups) -> str:
        """The LaTeX of a gradient as sums over the steps of ``groups`` (``BackwardSummary.gradient``)."""
        parts = []
        for (first, last), term in groups:
            if self.summary.single(first, last):
                parts.append(self.step_printer(first).doprint(term))
            else:
                body = self.tex(term)
                if isinstance(term, sp.Add):
                    body = r"\left(%s\right)" % body
                parts.append(r"\sum_{t=%s}^{%s} %s" % (self.bound_tex(first), self.bound_tex(last), body))
        return " + ".join(parts)

    # -- 9 -------------------------------------------------------------------------------------
    def jacobians(self):
        d, c = self.d, self.cell
        states = list(c.states)
        k_printer = ReportLatexPrinter({**self.settings, "time": "k"})

        def block(s, p):
            return self.partial(self.name(s, index="k"), self.name(p, index="k-1"))

        blocks = [Paragraph(["How much of the gradient at step ", Math("T"), " reaches step ", Math("t"),
                             " is governed by the Jacobians of one step with respect to the previous "
                             "state" + ("s" if len(states) > 1 else "") + ":"]),
                  self.display([(block(s, p), jac, tex_label("jacobian", s, p))
                                for (s, p), jac in d.step_jacobians.items()], k_printer, exercise=True)]
        if len(states) == 1:
            out = states[0]
            blocks.append(Paragraph(["Write ", Math("J_{k}"), " for this Jacobian. By the chain rule"]))
        else:
            out = "xi"
            matrix = (r"\begin{pmatrix} " + r" \\ ".join(" & ".join(block(s, p) for p in states) for s in states)
                      + r" \end{pmatrix}")
            blocks += [Paragraph(["Stack the states into one vector ",
                                  Math(r"\xi_{k} = (%s)" % ", ".join(self.name(s, index="k") for s in states)),
                                  ". Its Jacobian is the block matrix of the blocks above,"]),
                       self.display([("J_{k}", matrix, tex_label("jacobian", "blocks"))]),
                       Paragraph(["and by the chain rule"])]
        whole = self.partial(self.name(out, index="T"), self.name(out, index="t"))
        ratio = r"\partial %s / \partial %s" % (self.name(out, index="T"), self.name(out, index="t"))
        blocks.append(self.display([(whole, r"J_{T} J_{T-1} \cdots J_{t+1} = \prod_{k=t+1}^{T} J_{k}",
                                     tex_label("jacobian", "product"))]))
        blocks.append(Paragraph(
            ["with the later steps on the left. The backward pass multiplies an adjoint by the transposes of "
             "these factors, one per step, so ", Math(r"\lVert %s \rVert \le \prod_{k=t+1}^{T} \lVert J_{k} "
                                                    r"\rVert" % ratio),
             ". Each factor is a product of diagonal matrices of activation derivatives and of weight matrices. "
             "When the factors stay below one in norm, the gradient that reaches step ", Math("t"),
             " shrinks geometrically in ", Math("T - t"), " (vanishing gradients); when they exceed one it can "
             "grow geometrically (exploding gradients)."]))
        for (s, p), j in d.step_jacobians.items():
            if s == p and j != 0 and all(sym.is_commutative for sym in j.free_symbols):
                blocks.append(Paragraph(
                    ["The block ", Math(block(s, p) + " = " + k_printer.doprint(j)),
                     " contains no weight matrix: along this path the adjoint is only rescaled elementwise, "
                     "so it can survive many steps when these factors stay close to one."]))
        return Section("Jacobians and vanishing or exploding gradients", "sec:jacobians", blocks)

    # -- 10 ------------------------------------------------------------------------------------
    def example(self):
        ex = WorkedExample(self.model)
        self.worked_example = ex
        return ExampleSection(self, ex).build()


def forward_rank(cell):
    """A sort key for the terms of a sum: the earliest forward equation among the quantities and
    parameters a term reads (W_i, W_f, W_g, W_o in the order the gates are computed, not
    alphabetically); the readout's and the loss's terms, which read none of them, come first."""
    order = {}
    for i, eq in enumerate(cell.equations):
        order.setdefault(sym_base(eq.target), i)
        for s in sorted(eq.rhs.free_symbols, key=str):
            if isinstance(s, Param):
                order.setdefault(s.name, i)

    def rank(term):
        ranks = [order[s.name] if isinstance(s, Param) else order.get((parse(s) or ("",))[0], -1)
                 for s in term.free_symbols if s.name in order or (parse(s) or ("",))[0] in order]
        return min(ranks, default=-1)
    return rank


def _renames(model) -> dict:
    """Readout parameters whose letter the cell already uses for a quantity (the readout bias ``c``
    beside the LSTM's cell state ``c``): printed as ``b_y`` (``V_y``), with the code's name noted."""
    if model.readout is None:
        return {}
    taken = set(model.cell.states) | {sym_base(eq.target) for eq in model.cell.equations} | set(model.cell.params)
    taken |= {sym_base(model.cell.input_symbol)}
    fallback = {"c": "b_y", "V": "V_y"}
    return {name: fallback.get(name, f"{name}_y") for name in model.readout.params if name in taken}


def _listing(parts):
    if len(parts) <= 1:
        return list(parts)
    out = []
    for i, p in enumerate(parts):
        if i:
            out.append(" and " if i == len(parts) - 1 else ", ")
        out.append(p)
    return out


class ExampleSection:
    """The worked example's section: numbers, scalar program, closed form, check table."""

    def __init__(self, builder: ReportBuilder, ex: WorkedExample):
        self.b, self.ex = builder, ex
        plain = ReportLatexPrinter({"elementwise": False})
        names = ex.symbol_names(lambda base, bar=False, index=None: plain.name_tex(
            builder.renames.get(base, base) if not bar and index is None else base, bar, index))
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
            return (self.tex(symbol), (definition, f" = {_number(value)}"), None)

        program = [valued(s, d) for s, d in ex.definitions + ex.softmax]
        loss_rows = [(self.tex(s), d, None) for s, d in ex.loss_definitions]
        loss_rows.append(("L", ex.loss_expr, tex_label("example", "loss")))
        backward = []
        for t, rows in ex.hand_program():
            backward += [Paragraph(["Step ", Math(f"t = {t}"), ":"]),
                         self.b.display([valued(s, d) for s, d in rows], self.p, exercise=True)]
        gradient_rows = [(self.b.partial("L", self.tex(e.symbol)),
                          (ex.hand_gradients()[e.symbol], f" = {_number(e.by_hand)}"), None) for e in ex.table()]
        blocks = [
            intro, values,
            Paragraph(["The forward pass, line by line, with the value of every line"]
                      + ([" (", Math(r"\hat{y}"), " is the softmax of the logits)"] if ex.softmax else []) + [":"]),
            self.b.display(program, self.p),
            Paragraph(["and the loss, ", Math("L = " + _number(ex.loss_value))]
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
        rows = []
        for e in self.ex.table():
            bound = TOLERANCE["differences"]
            worst = e.max_difference
            cell = [Math(r"< " + _power_of_ten(bound))] if worst < bound else [Math(f"{worst:.1e}")]
            rows.append([[Math(self.tex(e.symbol))], [Math(_number(e.by_hand))], [Math(_number(e.generated))],
                         [Math(_number(e.closed))], [Math(_number(e.differences))], cell])
        return Table(["l", "r", "r", "r", "r", "r"],
                     [["entry"], ["by hand"], ["generated"], ["closed form"], ["differences"], ["max. diff."]],
                     rows, ["The gradient of the worked example four ways: by hand, the generated code, the "
                            "lambdified closed form and central differences."], "tab:check")


def build_document(model) -> Document:
    """The :class:`Document` of ``model``'s derivation."""
    return ReportBuilder(model).build()
