"""The summary and the Jacobians of a cell's report: the whole backward pass at a glance (each adjoint
that only one other reads substituted into it), the kinds of step of an architecture, and the one-step
Jacobians with their block matrix.  A mixin of :class:`~symrnn.report.sections.ReportBuilder`: the
methods read the builder's derivation, printer and names."""
from __future__ import annotations

import sympy as sp

from .blocks import Boxed, Math, Paragraph, Section
from .latex import ReportLatexPrinter, break_lines, tex_width
from .labels import listing as _listing, tex_label


class SummarySections:
    """Sections 9 and 10 of a cell's report (see the module docstring)."""

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
        intro = ["The whole backward pass at a glance, in two boxes (the adjoints, then the gradients): each "
                 "adjoint that only one other adjoint reads, and no gradient, is substituted into it, and the "
                 "loss's gradient is written out. "]
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
                     "so it can survive many steps when these factors stay close to one."], answer=True))
        return Section("Jacobians and vanishing or exploding gradients", "sec:jacobians", blocks)

