"""The derivation report of a stacked or bidirectional model (:class:`symrnn.models.wiring.StackedModel`).

The report of one cell (:mod:`symrnn.report.sections`) derives the adjoint
recurrences of the cell; this one shows how the wiring uses them: each
direction's state and adjoint (the backward direction's recurrence with the
roles of ``t - 1`` and ``t + 1`` exchanged), the merge and its Jacobian, the
residual link, and how ``dL/dy`` of layer ``l - 1`` is the input gradient of
layer ``l``.  Every equation is printed from the same SymPy objects the
generated code comes from (the cell's :class:`~symrnn.engine.bptt.Derivation` under an
upstream gradient, and the merge table :data:`symrnn.models.wiring.MERGES`).  The
figure shows one layer and says so.
"""
from __future__ import annotations

import sympy as sp

from ..engine.symbols import Param, rename_times, tsym
from ..models.wiring import MERGES
from .blocks import Code, Document, Figure, Math, Paragraph, Ref, Section, Table
from .latex import ReportLatexPrinter
from .sections import LOSS_NAMES, ReportBuilder, sym_base, tex_label, shape_tex
from .tikz import TIKZ_STYLES

ARROW = {"fwd": r"\rightarrow", "bwd": r"\leftarrow"}


class DirectionPrinter(ReportLatexPrinter):
    """Prints a direction's quantities and parameters with an arrow: ``h_{t}^{\\rightarrow}``."""

    _default_settings = {**ReportLatexPrinter._default_settings, "direction": None, "decorated": ()}

    def _print_tie_step(self, expr, exp=None):
        return r"\theta\left(%s\right)" % self._print(expr.args[0])

    def _print_Symbol(self, expr, style="plain"):
        if isinstance(expr, Param) and expr.name in self._settings["decorated"]:
            return self.name_tex(expr.name)
        return super()._print_Symbol(expr, style)

    def name_tex(self, base, bar=False, index=None):
        tex = super().name_tex(base, bar, index)
        direction = self._settings["direction"]
        if direction is None or base not in self._settings["decorated"]:
            return tex
        if "^{" in tex:  # a superscript already (the gate adjoint a^i): the arrow joins it, a^{i,->}
            start = tex.index("^{") + 2
            depth, end = 1, start
            while depth:
                depth += {"{": 1, "}": -1}.get(tex[end], 0)
                end += 1
            return "{%s}" % (tex[:end - 1] + r", " + ARROW[direction] + tex[end - 1:])
        return "{%s^{%s}}" % (tex, ARROW[direction])


def reverse_time(expr):
    """The backward direction's form of a step expression: ``t - 1`` and ``t + 1`` exchanged."""
    return rename_times(expr, lambda base, offset, is_bar: tsym(base, -offset, is_bar))


class WiringReportBuilder(ReportBuilder):
    """Builds the :class:`~symrnn.report.blocks.Document` of a :class:`~symrnn.models.wiring.StackedModel`."""

    def __init__(self, model, width=None, sensitivities=True):
        self.stack = model
        super().__init__(model.unit, **({} if width is None else {"width": width}), sensitivities=sensitivities)
        self.parts = model.parts()
        self.cell = model.cell
        self.upstream = next(iter(self.d.external.values()))  # g[t], or gamma[t] beside the LSTM's gate g
        decorated = set(self.cell.params) | {sym_base(e.target) for e in self.cell.equations} | {sym_base(self.upstream)}
        decorated |= {sym_base(symbol) for symbol, _ in self.gates.values()}  # the named gate adjoints
        self.bi = any(model.bidirectional)
        self.last = "bwd" if model.layers[-1].bidirectional else "fwd"
        self.printers = {d: DirectionPrinter({"direction": d, "decorated": tuple(sorted(decorated)),
                                              "term_rank": self.settings["term_rank"],
                                              "static": self.settings["static"]})
                         for d in ARROW}

    def dtex(self, expr, direction):
        return self.printers[direction].doprint(expr)

    # -- the document -----------------------------------------------------------------------------
    def title(self):
        m = self.stack
        layers = f"{m.num_layers}-layer " if m.num_layers > 1 else ""
        kind = ("bidirectional" if all(m.bidirectional) else
                "mixed uni- and bidirectional" if any(m.bidirectional) else "stacked")
        return f"Backpropagation through time for a {layers}{kind} {self.cell.name} network"

    def subtitle(self):
        m = self.stack
        return [f"{m.architecture.name} architecture, {LOSS_NAMES.get(m.loss_rule.name, m.loss_rule.name)} "
                f"loss, {m.reduction} reduction" + (f", {m.merge.name} merge" if any(m.bidirectional) else "")
                + (", residual links" if m.residual else "")]

    # -- 1 --------------------------------------------------------------------------------------------
    def introduction(self):
        m, c = self.stack, self.cell
        rows = [[[str(layer.index)], ["forward and backward" if layer.bidirectional else "forward"],
                 [Math(self._width_tex(m.layers[layer.index - 1]) if layer.index else "D")],
                 [Math(self._width_tex(layer))],
                 ["yes" if layer.residual else "no"]] for layer in m.layers]
        return Section("The model", "sec:model", [
            Paragraph([f"This chapter derives the exact gradients of a network of {m.num_layers} recurrent "
                       f"layer{'s' if m.num_layers > 1 else ''} built from the {c.name} cell"
                       + (f" ({c.description})" if c.description else "")
                       + " by backpropagation through time (BPTT). "
                       + ("A direction of a layer is the cell run over the sequence with its own parameters: the "
                          "forward direction from the first step to the last, the backward direction from the last "
                          "to the first. " if self.bi else
                          "Each layer runs the cell over the sequence, from the first step to the last, with its "
                          "own parameters. ") + "Layer ", Math("0"),
                       " reads the inputs; layer ", Math("l"), " reads the outputs of layer ", Math("l - 1"),
                       f". The architecture is {m.architecture.name}: {m.architecture.description}. The loss is "
                       f"{LOSS_NAMES.get(m.loss_rule.name, m.loss_rule.name)} with {m.reduction} reduction, on "
                       f"the outputs of the top layer."]),
            Table(["l", "l", "l", "l", "l"], [["layer"], ["directions"], ["input width"], ["output width"],
                                              ["residual"]], rows,
                  ["The layers; ", Math("H"), " is the size of one direction's state."], "tab:layers"),
            Paragraph(["Nothing new is differentiated: each direction runs the generated forward and backward "
                       "code of the cell" + (" (the backward direction on the time-reversed sequence)" if self.bi
                                             else "") + ", and the wiring adds small operations with their own "
                       "derivative rules: " + ", ".join(
                           (["the merge of the two directions"] if self.bi else [])
                           + (["the residual link"] if m.residual else []) + ["the link from a layer to the one "
                                                                              "below"]) + ". The names are "
                       "those of the code: the parameter ", Math(self.dtex(Param(next(iter(c.params))), self.last)),
                       f" of layer {m.num_layers - 1} is ",
                       Code(f"l{m.num_layers - 1}.{self.last}.{next(iter(c.params))}"), " in ",
                       Code("model.init_params()"), " and in the gradients of ", Code("model.loss_and_grads()"),
                       "."]),
        ])

    def _width_tex(self, layer):
        if not layer.bidirectional or self.stack.merge.width == 1:
            return "H"
        return "2H"

    # -- 2 --------------------------------------------------------------------------------------------
    def notation(self):
        m, c = self.stack, self.cell
        f, b = ARROW["fwd"], ARROW["bwd"]
        rows = [[[Math("T")], ["integer"], ["number of steps, ", Math(r"t = 1, \dots, T")]],
                [[Math(r"u^{(l)}_{t}")], ["width of layer ", Math("l")],
                 ["output of layer ", Math("l"), " at step ", Math("t"), "; ", Math(r"u^{(-1)}_{t} = x_{t}"),
                  ", the model's input"]]]
        def both(expr):
            return self.dtex(expr, "fwd") + (", " + self.dtex(expr, "bwd") if self.bi else "")
        for s, size in c.states.items():
            rows.append([[Math(both(tsym(s)))], [Math(size)],
                         [c.roles.get(s) or "state", " of the forward and the backward direction of a layer"
                          if self.bi else " of a layer"]])
        rows.append([[Math(self.name(self.cell.input_symbol.name.split("[")[0], index="t"))],
                     ["input width of the layer"], ["the layer's input: ", Math(r"u^{(l-1)}_{t}")]])
        for name, spec in c.params.items():
            rows.append([[Math(both(Param(name)))],
                         [Math(shape_tex(spec.shape))], [spec.role or "parameter",
                                                       " (one per direction and layer)" if self.bi else
                                                       " (one per layer)"]])
        if m.readout is not None:
            rows.append([[Math("V, c")], [Math(r"K \times \text{width}"), ", ", Math("K")],
                         ["readout of the top layer: ", Math(r"o_{t} = V u^{(L-1)}_{t} + c")]])
        rows.append([[Math(r"\bar{v}_{t}")], ["as ", Math("v_{t}")],
                     ["adjoint: ", Math(r"\partial L / \partial v_{t}"), ", every path to the loss counted"]])
        return Section("Notation", "sec:notation", [
            Paragraph(["Vectors are columns; ", Math(r"\odot"), " is the elementwise product. An arrow marks the "
                       "direction: ", Math(f"h^{{{f}}}_{{t}}"), " is the forward direction's state after step ",
                       Math("t"), *([", ", Math(f"h^{{{b}}}_{{t}}"), " the backward direction's state after it has "
                                     "read steps ", Math("T, T-1, \\dots, t")] if self.bi else
                                    [" (every layer of this model has only the forward direction)"]),
                       ". The equations of a direction are the same for every layer, with that layer's parameters; "
                       "a superscript ", Math("(l)"), " names the layer where it matters."]),
            Table(["l", "l", "p{8cm}"], [["symbol"], ["shape"], ["meaning"]], rows,
                  ["The symbols of this chapter."], "tab:notation"),
        ])

    # -- 3 --------------------------------------------------------------------------------------------
    def forward(self):
        m, d = self.stack, self.d
        n = len(self.cell.equations)
        fwd = [(self.dtex(eq.lhs, "fwd"), eq.rhs, tex_label("forward", "fwd", sym_base(eq.lhs))) for eq in d.forward[:n]]
        blocks = [Paragraph(["The forward direction of a layer computes, for ", Math(r"t = 1, \dots, T"), ","]),
                  self.display(fwd, self.printers["fwd"])]
        if any(m.bidirectional):
            bwd = [(self.dtex(reverse_time(eq.lhs), "bwd"), reverse_time(eq.rhs),
                    tex_label("forward", "bwd", sym_base(eq.lhs)))
                   for eq in d.forward[:n]]
            blocks += [Paragraph(["and the backward direction of a bidirectional layer, for ",
                                  Math(r"t = T, T-1, \dots, 1"), ", the same cell with its own parameters, reading "
                                  "the state of step ", Math("t + 1"), ":"]),
                       self.display(bwd, self.printers["bwd"]),
                       Paragraph(["The initial states are ",
                                  Math(", ".join(self.dtex(tsym(s, -1), "fwd").replace("{t-1}", "{0}")
                                                 for s in self.cell.states)),
                                  " and ", Math(", ".join(self.dtex(tsym(s, 1), "bwd").replace("{t+1}", "{T+1}")
                                                          for s in self.cell.states)),
                                  " (zero unless given; rows ", Math("2l"), " and ", Math("2l + 1"),
                                  " of PyTorch's ", Code("h_0"), "). The final state of the backward direction is "
                                  "its state at ", Math("t = 1"), ": PyTorch's ", Code("h_n[1]"), " is ",
                                  Code("output[0, :, H:]"), ", not ", Code("output[-1]"), "."])]
        y = r"u^{(l)}_{t}"
        merged = self.merge_expression()
        rows = []
        if any(m.bidirectional):
            rows.append((y + r"\ \text{(bidirectional)}", merged + (r" + u^{(l-1)}_{t}" if m.residual else ""),
                         tex_label("forward", "merge")))
        if not all(m.bidirectional):
            rows.append((y + r"\ \text{(unidirectional)}", self.dtex(tsym(self.stack.out), "fwd")
                         + (r" + u^{(l-1)}_{t}" if m.residual else ""), tex_label("forward", "uni")))
        text = ["The output of layer ", Math("l"), " at step ", Math("t"), " is"]
        if m.residual:
            text = ["The output of layer ", Math("l"), " at step ", Math("t"), " is (with the residual link, for ",
                    Math(r"l \ge 1"), "; layer 0 has none)"]
        blocks += [Paragraph(text), self.display(rows)]
        if m.readout is not None:
            blocks += [Paragraph(["The readout maps the top layer's output to the logits at every scored step, ",
                                  Math(r"o_{t} = V u^{(L-1)}_{t} + c"), "."])]
        else:
            blocks += [Paragraph(["There is no readout: the loss reads the top layer's output ",
                                  Math(r"u^{(L-1)}_{t}"), " directly."])]
        return Section("Forward pass", "sec:forward", blocks)

    def merge_expression(self, name=None):
        """The merged output printed from the merge's SymPy form (concat: the stacked pair)."""
        f = self.dtex(tsym(self.stack.out), "fwd")
        b = self.dtex(tsym(self.stack.out), "bwd")
        name = name or self.stack.merge.name
        if name == "concat":
            return r"\begin{bmatrix} %s \\ %s \end{bmatrix}" % (f, b)
        F, B = tsym(self.stack.out, 1), tsym(self.stack.out, 2)  # placeholders (in this order), named below
        expr = MERGES[name].symbolic(F, B)
        printer = DirectionPrinter({"symbol_names": {F: f, B: b}})
        return printer.doprint(expr)

    # -- 4 --------------------------------------------------------------------------------------------
    def loss(self):
        m = self.stack
        sched = m.architecture.schedule(*( (3, 3) if m.architecture.name == "many-to-many" else
                                           (3, 1) if m.architecture.name == "many-to-one" else
                                           (1, 3) if m.architecture.name == "one-to-many" else
                                           (1, 1) if m.architecture.name == "one-to-one" else (2, 2)))
        blocks = [Paragraph(["The loss adds the losses of the scored steps ", Math(r"\mathcal{S}"),
                             f" ({m.architecture.description}; with {sched.T} steps, the scored steps are ",
                             Math(", ".join(str(t + 1) for t in sched.output_steps)), "), each a function of ",
                             Math(r"u^{(L-1)}_{t}"), f": {LOSS_NAMES.get(m.loss_rule.name, m.loss_rule.name)}. ",
                             "The backward pass starts from ", Math(r"\bar{u}^{(L-1)}_{t}"),
                             ", the gradient of the loss with respect to the top layer's output: "
                             + ("through the readout, " if m.readout is not None else "")])]
        if m.readout is not None:
            blocks.append(self.display([(r"\bar{u}^{(L-1)}_{t}", r"V^{\top} \bar{o}_{t}", tex_label("loss", "top"))]))
            g = m.loss_rule.symbolic("o", m.reduction)["gradient"]  # the loss's own rule, with its factor
            what = (["the predicted probabilities ", Math(r"\hat{y}_{t} = \operatorname{softmax}(o_{t})"), " and "]
                    if m.loss_rule.name == "cross-entropy" else [])
            blocks.append(Paragraph(["with ", Math(self.tex(g.lhs) + " = " + self.tex(g.rhs)),
                                     " at a scored step (", *what, "the target ", Math("y_{t}"), ") and ",
                                     Math(r"\bar{o}_{t} = 0"), " at the others."]))
        else:
            blocks.append(Paragraph(["the given upstream gradient at a scored step, zero at the others."]))
        return Section("Loss", "sec:loss", blocks)

    # -- 5 --------------------------------------------------------------------------------------------
    def graph(self):
        m = self.stack
        layer = next((lay for lay in m.layers if lay.bidirectional), m.layers[0])
        T = 3
        tikz, mermaid = self.figure(layer, T)
        caption = [f"Layer {layer.index} of the {m.num_layers}-layer model unrolled over ", Math(f"T = {T}"),
                   " steps (one layer is drawn)."]
        if m.num_layers > 1:
            caption += [" The other layer repeats it" if m.num_layers == 2 else
                        f" The other {m.num_layers - 1} layers repeat it", " with ", Math(r"u^{(l-1)}_{t}"),
                        " in place of ", Math(r"x_{t}"), "."]
        states = list(self.cell.states)
        caption += [" Shaded circles are states (dashed: initial states"]
        if len(states) > 1:
            caption += ["; a circle stands for all of the cell's states, ",
                        Math("(" + ", ".join(self.name(x) for x in states) + ")")]
        caption += [")."]
        if layer.bidirectional:
            caption += [" The top row holds the layer's output ", Math(r"u_{t}"), ", the merge of the two states."]
            text = ["Figure ", Ref("fig:graph"), " shows the wiring. The forward chain runs left to right, the "
                    "backward chain right to left, and both read every input; at each step the merge joins them. "
                    "Reverse accumulation walks the arrows backwards: the adjoint of the forward chain flows from ",
                    Math("t = T"), " down to 1, the adjoint of the backward chain from ", Math("t = 1"), " up to ",
                    Math("T"), ", and each input collects the adjoints of both directions."]
        else:
            caption += [" The layer's output ", Math(r"u_{t}"), " is its state ", Math(r"h^{\rightarrow}_{t}"),
                        (" plus its input (the residual link, layers 1 and up)." if m.residual else ".")]
            text = ["Figure ", Ref("fig:graph"), " shows the wiring of a unidirectional layer: one chain from left "
                    "to right, reading every input. Reverse accumulation walks the arrows backwards, from ",
                    Math("t = T"), " down to 1, and each input collects the adjoint that its step sends back."]
        return Section("The unrolled computation graph", "sec:graph", [
            Paragraph(text), Figure(tikz, mermaid, caption, "fig:graph")])

    def figure(self, layer, T):
        f, b = ARROW["fwd"], ARROW["bwd"]
        gap = 2.3
        lines = [r"\begin{tikzpicture}[", TIKZ_STYLES, "]"]
        mer = ["flowchart BT"]
        x_name = "x" if layer.index == 0 else rf"u^{{({layer.index - 1})}}"
        lines.append(rf"\node[initial] (f0) at (0.000,1.400) {{$h^{{{f}}}_{{0}}$}};")
        mer.append('  f0(("h→₀"))')
        for t in range(1, T + 1):
            X = gap * t
            lines.append(rf"\node[input] (x{t}) at ({X:.3f},0.000) {{${x_name}_{{{t}}}$}};")
            lines.append(rf"\node[state] (f{t}) at ({X - 0.55:.3f},1.400) {{$h^{{{f}}}_{{{t}}}$}};")
            mer.append(f'  x{t}["x{t}"]')
            mer.append(f'  f{t}(("h→{t}"))')
            if layer.bidirectional:
                lines.append(rf"\node[state] (b{t}) at ({X + 0.55:.3f},2.700) {{$h^{{{b}}}_{{{t}}}$}};")
                lines.append(rf"\node[quantity] (y{t}) at ({X:.3f},4.000) {{$u_{{{t}}}$}};")
                mer.append(f'  b{t}(("h←{t}"))')
                mer.append(f'  y{t}(("u{t}"))')
            lines.append(rf"\node[steplabel] at ({X:.3f},-0.750) {{$t = {t}$}};")
        if layer.bidirectional:
            lines.append(rf"\node[initial] (b{T + 1}) at ({gap * (T + 1):.3f},2.700) {{$h^{{{b}}}_{{{T + 1}}}$}};")
            mer.append(f'  b{T + 1}(("h←{T + 1}"))')
        for t in range(1, T + 1):
            lines.append(rf"\draw[->] (x{t}) -- (f{t});")
            lines.append(rf"\draw[->] (f{t - 1}) -- (f{t});")
            mer += [f"  x{t} --> f{t}", f"  f{t - 1} --> f{t}"]
            if layer.bidirectional:
                lines += [rf"\draw[->] (x{t}) -- (b{t});", rf"\draw[->] (b{t + 1}) -- (b{t});",
                          rf"\draw[->] (f{t}) -- (y{t});", rf"\draw[->] (b{t}) -- (y{t});"]
                mer += [f"  x{t} --> b{t}", f"  b{t + 1} --> b{t}", f"  f{t} --> y{t}", f"  b{t} --> y{t}"]
        lines.append(r"\end{tikzpicture}")
        return "\n".join(lines), "\n".join(mer)

    # -- 6 --------------------------------------------------------------------------------------------
    def merge_section(self):
        m = self.stack
        if not any(m.bidirectional):
            return None
        rows = [[[Code(name)], [Math(self.merge_expression(name))], [Math(r"\begin{bmatrix} J^{\rightarrow} & "
                                                                          r"J^{\leftarrow} \end{bmatrix} = " +
                                                                          merge.jacobian)]]
                for name, merge in MERGES.items()]
        f, b = self.dtex(tsym(m.out), "fwd"), self.dtex(tsym(m.out), "bwd")
        yb = r"\bar{y}_{t}"
        fb, bb = r"\bar{h}^{\rightarrow}_{t}\big|_{\text{merge}}", r"\bar{h}^{\leftarrow}_{t}\big|_{\text{merge}}"
        name = m.merge.name
        if name == "concat":
            rule = [(fb, r"\left(%s\right)_{1:H}" % yb, tex_label("merge", "fwd")),
                    (bb, r"\left(%s\right)_{H+1:2H}" % yb, tex_label("merge", "bwd"))]
        else:
            F, B = tsym(m.out, 1), tsym(m.out, 2)  # placeholders for the two directions' outputs
            expr = m.merge.symbolic(F, B)
            dF, dB = sp.diff(expr, F), sp.diff(expr, B)
            printer = DirectionPrinter({"symbol_names": {F: f, B: b}})

            def show(e):
                return printer.doprint(e)
            def times(e):
                return yb if e == 1 else show(e) + (" " if e.is_number else r" \odot ") + yb
            rule = [(fb, times(dF), tex_label("merge", "fwd")), (bb, times(dB), tex_label("merge", "bwd"))]
        blocks = [Paragraph(["The merge takes ", Math(f), " and ", Math(b), " to ", Math(r"u_{t}"),
                             ". Its Jacobian with respect to the pair is one of those of Table ",
                             Ref("tab:merges"), ":"]),
                  Table(["l", "l", "l"], [["mode"], ["output"], ["Jacobian"]], rows,
                        ["The merge modes and their Jacobians; for max, ",
                         Math(r"m = \theta(h^{\rightarrow}_{t} - h^{\leftarrow}_{t})"),
                         " (1 where the forward direction is larger, 0 where smaller, 1/2 at a tie)."], "tab:merges"),
                  Paragraph([f"This model uses {name}. Its adjoint rule sends ", Math(yb), " back to the two "
                             "directions by the transposed Jacobian (SymPy's derivative of the merge, printed):"]),
                  self.display(rule)]
        if name == "max":
            blocks.append(Paragraph([
                "The derivative of ", Math(r"\max(u, v)"), " with respect to ", Math("u"), " is the step ",
                Math(r"\theta(u - v)"), ", here with ", Math(r"\theta(0) = 1/2"),
                ": at an exact tie each direction receives half of the gradient, as ", Code("torch.maximum"),
                " and symrnn's ", Code("Max"), " in a cell do. So ", Math(r"m = \theta(h^{\rightarrow}_{t} - "
                                                                          r"h^{\leftarrow}_{t})"),
                " is 1 where the forward direction is larger, 0 where it is smaller and ", Math("1/2"),
                " at a tie. Finite differences cannot check a tie (the function has a kink there); the tests check "
                "the rule on hand-computed values."]))
        return Section("The merge and its Jacobian", "sec:merge", blocks)

    # -- 7 --------------------------------------------------------------------------------------------
    def adjoints(self):
        m, d = self.stack, self.d
        rows = [(self.dtex(a.lhs, "fwd"), self.name_gates(a.rhs), tex_label("adjoint", "fwd", sym_base(a.lhs)))
                for a in d.adjoints]
        g_f = self.dtex(self.upstream, "fwd")
        source = (["by the merge rule ", Ref(tex_label("merge", "fwd")), " in a bidirectional layer, "]
                  if any(m.bidirectional) else [])
        blocks = [Paragraph(["Each direction's adjoints follow the cell's adjoint recurrences, with the gradient ",
                             Math(g_f), " that reaches its output state from above (", *source,
                             Math(r"\bar{u}^{(l)}_{t}"), " itself in a unidirectional layer). The forward "
                             "direction, for ", Math(r"t = T, \dots, 1"), ":"]),
                  self.display(rows, self.printers["fwd"])]
        if self.gates:
            blocks += [Paragraph(["with each gate's pre-activation adjoint named once, as in the cell's own "
                                  "report:"]),
                       self.display([(self.dtex(symbol, "fwd"), product, tex_label("adjoint", "fwd", sym_base(symbol)))
                                     for symbol, product in self.gates.values()], self.printers["fwd"])]
        if any(m.bidirectional):
            rows_b = [(self.dtex(reverse_time(a.lhs), "bwd"), reverse_time(self.name_gates(a.rhs)),
                       tex_label("adjoint", "bwd", sym_base(a.lhs))) for a in d.adjoints]
            blocks += [Paragraph(["The backward direction's state at step ", Math("t"), " feeds step ",
                                  Math("t - 1"), ", so its adjoints read step ", Math("t - 1"),
                                  " and run for ", Math(r"t = 1, \dots, T"), ":"]),
                       self.display(rows_b, self.printers["bwd"]),
                       Paragraph(["In the code this is the same generated backward function, run on the "
                                  "reversed sequence: no second backward pass is written for it."])]
        return Section("Adjoint recurrences of each direction", "sec:adjoints", blocks)

    def sensitivities(self):
        """The sensitivity recurrence of a stack of unidirectional layers (None with a backward direction,
        or when left out)."""
        if not self.with_sensitivities:
            return None
        from .sensitivities import stacked_sensitivity_section

        return stacked_sensitivity_section(self)

    # -- 8 --------------------------------------------------------------------------------------------
    def layers_section(self):
        m, d = self.stack, self.d
        x = self.cell.input_symbol
        xb = self.name(sym_base(x), bar=True, index="t")
        named = self.name_gates(d.input_gradient)
        blocks_rows = [(xb + r"^{\rightarrow}", named, tex_label("layer", "fwd"), "fwd")]
        if any(m.bidirectional):
            blocks_rows.append((xb + r"^{\leftarrow}", reverse_time(named), tex_label("layer", "bwd"), "bwd"))
        link = r"\bar{x}^{\rightarrow}_{t}" + (r" + \bar{x}^{\leftarrow}_{t}" if any(m.bidirectional) else "")
        if m.residual:
            link += r" + \bar{u}^{(l)}_{t}"
        blocks = [Paragraph(["The input of layer ", Math("l"), " is the output of layer ", Math("l - 1"),
                             ". Each direction sends back to its input the adjoint the cell's equations give "
                             "(written with the layer's own parameters):"]),
                  *[self.display([r[:3]], self.printers[r[3]]) for r in blocks_rows],
                  Paragraph(["The adjoint of the layer below adds the two"
                             + (" and, through the residual link, the adjoint of the layer's output itself"
                                if m.residual else "") + ":"]),
                  self.display([(r"\bar{u}^{(l-1)}_{t}", link, tex_label("layer", "link"))]),
                  Paragraph(["This is the gradient that starts the backward pass of layer ", Math("l - 1"),
                             "; for layer 0 it is ", Math(r"\partial L / \partial x_{t}"), ", returned as ",
                             Code("grads['x']"), ". The layers are visited from the top down; within a layer the "
                             "two directions are independent."])]
        return Section("From layer to layer", "sec:layers", blocks)

    # -- 9 --------------------------------------------------------------------------------------------
    def gradients(self):
        d = self.d
        rows = [(self.partial("L", self.dtex(Param(n), "fwd")), self.name_gates(d.gradients[n]),
                 tex_label("gradient", "fwd", n))
                for n in self.cell.params if n in d.gradients]
        blocks = [Paragraph(["The parameters of a direction are used at every step of that direction; each "
                             "gradient adds one term per step:"]),
                  self.display(rows, self.printers["fwd"])]
        if any(self.stack.bidirectional):
            blocks.append(Paragraph(["The backward direction's gradients are the same sums over its own "
                                     "adjoints and states (", Math(r"\leftarrow"), " in place of ",
                                     Math(r"\rightarrow"), ", and ", Math(r"h^{\leftarrow}_{t+1}"), " in place of ",
                                     Math(r"h^{\rightarrow}_{t-1}"), "). The initial states' gradients are the "
                                     "adjoints reaching ", Math("t = 0"), " for the forward direction and ",
                                     Math("t = T + 1"), " for the backward direction, returned stacked as PyTorch "
                                     "stacks ", Code("h_0"), ": ", Code("grads['h0'][2*l + d]"), "."]))
        blocks.append(Paragraph(["The gradients are keyed ", Code("l<layer>.<fwd|bwd>.<name>"), " (", Code("l0.fwd."
                                 + next(iter(self.cell.params))), "), and ", Code("V"), ", ", Code("c"),
                                 " for the readout."]))
        return Section("Gradients of the parameters", "sec:gradients", blocks)


#: The stacked and bidirectional reports of ``derivations/``: ``(stem, StackedModel arguments)``.
WIRING_REPORTS = (
    ("lstm_2-layer-bidirectional-concat_many-to-many",
     dict(cell="lstm", num_layers=2, bidirectional=True, merge="concat")),
    ("gru_bidirectional-max_many-to-one",
     dict(cell="gru", num_layers=1, bidirectional=True, merge="max", architecture="many-to-one")),
    ("rnn-tanh_3-layer-residual_many-to-many",
     dict(cell="rnn-tanh", num_layers=3, bidirectional=False, residual=True)),
)


def build_wiring_document(model, sensitivities=True) -> Document:
    """The :class:`Document` of a :class:`~symrnn.models.wiring.StackedModel`'s derivation; ``sensitivities``
    as in :func:`symrnn.report.sections.build_document` (a bidirectional stack has no such section)."""
    return WiringReportBuilder(model, sensitivities=sensitivities).build()


