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


import sympy as sp

from ..engine.symbols import MatTVec, MatVec, Outer, Param, parse, shift, tsym
from .blocks import Code, Display, Document, Figure, Math, Paragraph, Ref, Row, Section, Table
from .example import WorkedExample
from .latex import ReportLatexPrinter, break_lines, tex_width
from .summary import T_IN, BackwardSummary, bar_sym, gate_adjoints  # noqa: F401 (re-exported)
from .tikz import layout, mermaid_chart, picture_width, tikz_picture
from .labels import listing as _listing, shape_tex, sym_base, tex_label  # noqa: F401 (re-exported)
from .labels import inline_math, parameter_lets
from .matrix_notation import notations
from .summary_sections import SummarySections

LINE_WIDTH = 60.0  # what fits on one line beside an equation number (units of latex.tex_width)

LOSS_NAMES = {"cross-entropy": "softmax cross-entropy", "mse": "squared error", "half-mse": "half the squared error",
              "upstream": "a given upstream gradient (the layer view)"}
SHAPE_WORDS = {"D": "input size", "H": "hidden size", "K": "output size"}


def first_trained(cell) -> str:
    """The first parameter of ``cell`` that is trained (not a matrix cell's fixed spread or fold)."""
    return next(name for name, spec in cell.params.items() if not spec.fixed)


class ReportBuilder(SummarySections):
    """Builds the :class:`~symrnn.report.blocks.Document` of one model."""

    def __init__(self, model, width: float = LINE_WIDTH, sensitivities: bool = True):
        self.model = model
        self.with_sensitivities = sensitivities
        self.d = model.derive()
        self.parts = model.parts()
        self.cell = model.cell
        self.width = width
        self.renames = _renames(model)
        self.settings = {"symbol_names": {**{Param(k): self.p_name(v) for k, v in self.renames.items()},
                                          T_IN: r"T_{\mathrm{in}}"},
                         "term_rank": forward_rank(model.cell), "matrix_notation": notations(model.cell),
                         "static": parameter_lets(model.cell)}
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
    def title(self):
        return f"Backpropagation through time for the {self.cell.name} cell"

    def subtitle(self):
        m = self.model
        return [f"{m.architecture.name} architecture, {LOSS_NAMES.get(m.loss_rule.name, m.loss_rule.name)} "
                f"loss, {m.reduction} reduction"]

    def section(self, name):
        return getattr(self, name)()

    def build(self) -> Document:
        """The :class:`Document`: the sections the model's parts call for (:mod:`symrnn.report.builder`)."""
        from .builder import build_sections

        return build_sections(self)

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
                       Math(self.name(first_trained(c))), " is ", Code(first_trained(c)),
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
                       Ref("tab:notation"), ")" + (" or a quantity of the parameters alone" if self.settings["static"]
                                                   else "") + "."] + self._static_notation()),
            Table(["l", "l", "p{8.4cm}"], [["symbol"], ["shape"], ["meaning"]], rows,
                  ["The symbols of this chapter, with the shapes of the code."], "tab:notation"),
        ] + self._matrix_notation())

    def _static_notation(self):
        """What the lets of the parameters alone (no step index) and their adjoints (with one) mean."""
        targets = [eq.target for eq in self.cell.equations if sym_base(eq.target) in self.settings["static"]]
        if not targets:
            return []
        static, one = [Math(self.tex(t)) for t in targets], targets[0]
        return [" The quantit" + ("ies " if len(static) > 1 else "y "), *_listing(static),
                " depend" + ("" if len(static) > 1 else "s") + " on the parameters alone: the same at every step, "
                "so without a step index. An adjoint such as ", self.math(bar_sym(one)), " keeps it: it is the "
                "share of step ", Math("t"), " (the gradient through the use at step ", Math("t"),
                "), and the gradients of the parameters add the shares of all steps."]

    def _matrix_notation(self):
        """For a cell with matrix states: how its flattened matrices and fixed maps are printed."""
        if not self.settings["matrix_notation"]:
            return []
        return [Paragraph([
            "A matrix-valued state is stored as a vector (its heads' or channels' matrices one after another, "
            "row by row: the shapes above), and its products are written with fixed 0/1 matrices that are "
            "not trained (the spreads ", Math("E"), " and folds ", Math("F"), " of the table). The equations "
            "print them as a paper does, per head or channel: ", Math(r"v \mathbf{1}^{	op}"), " copies ",
            Math("v"), " along the rows, ", Math(r"\mathbf{1} k^{	op}"), " copies ", Math("k^{\top}"),
            " down the columns, so ", Math(r"v k^{	op}"), " is their elementwise product (an outer product), ",
            Math("C q"), " and ", Math(r"n^{	op} q"), " are the folds of ", Math(r"C \odot \mathbf{1} q^{	op}"),
            " and ", Math(r"n \odot q"), "; a gate with one value per head multiplies its whole head, and in "
            "the adjoints ", Math(r"\operatorname{sum}(X)"), " adds up the entries of each head (the gate's "
            "share), ", Math(r"X \mathbf{1}"), " and ", Math(r"X^{	op} \mathbf{1}"), " are row and column "
            "sums."])]

    # -- 3 -------------------------------------------------------------------------------------
    def forward(self):
        m, c, d = self.model, self.cell, self.d
        states = [tsym(s, -1) for s in c.states]
        plural = "s " if len(states) > 1 else " "
        sched = self._layout().schedule
        blocks = self._paper_form() + [Paragraph(["For ", Math(r"t = 1, \dots, T"), " the cell reads the input ",
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

    def _paper_form(self):
        """The paper's own equations, when the cell's are a rewriting of them (:meth:`Cell.written_in_the_paper`)."""
        form = self.cell.paper_form
        if form is None:
            return []
        return [Paragraph(inline_math(form.lead)), self.display([(lhs, rhs, None) for lhs, rhs in form.equations])] \
            + ([Paragraph(inline_math(form.after))] if form.after else [])

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

    # -- 7b: beside the adjoints ---------------------------------------------------------------
    def sensitivities(self):
        """The sensitivity recurrence (:mod:`symrnn.report.sensitivities`), or None when left out."""
        if not self.with_sensitivities:
            return None
        from .sensitivities import sensitivity_section

        return sensitivity_section(self)

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

    # -- 10 ------------------------------------------------------------------------------------
    def example(self):
        ex = WorkedExample(self.model)
        self.worked_example = ex
        from .example_section import ExampleSection

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


def build_document(model, sensitivities=True) -> Document:
    """The :class:`Document` of ``model``'s derivation; ``sensitivities=False`` leaves out the sensitivity
    recurrence (real-time recurrent learning) printed beside the adjoints."""
    return ReportBuilder(model, sensitivities=sensitivities).build()
