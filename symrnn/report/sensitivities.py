"""The sensitivity recurrence (RTRL) as a report section, in the notation of the adjoints.

Every report of one cell, and of a stack of unidirectional layers, has a section *Sensitivities
(real-time recurrent learning)* right after its adjoint recurrences (leave it out with
``sensitivities=False``, or ``symrnn derive --no-sensitivities``).  It prints, for every equation of
the cell, its tangent ``dot y_t = ...`` (:func:`symrnn.engine.tangent.tangent_equations`, read from
the same local terms as the adjoints), with the same printer and names as the adjoint recurrences:
a dot over a quantity, ``\\dot{h}_{t-1}``, where the adjoints have a bar.  In the report of one cell
the input does not depend on the parameters, so its tangent (``\\dot{x}_t = 0``) is left out; in a
stacked report it is the sensitivity of the layer below.
"""
from __future__ import annotations

import re
import warnings

import sympy as sp

from ..engine.bptt import local_terms
from ..engine.tangent import Tangent, constants_of, tangent_equations
from .blocks import Code, Math, Paragraph, Section
from .labels import listing, sym_base, tex_label

TITLE = "Sensitivities (real-time recurrent learning)"
LABEL = "sec:sensitivities"
_NAME = re.compile(r"^(\{*)(\\[A-Za-z]+\{[^{}]*\}|\\[A-Za-z]+|[A-Za-z]+)")


def dot_tex(tex: str) -> str:
    """A dot over the name of a printed quantity (all its letters, as the adjoints' bar), its indices and
    decorations left where they are: ``h_{t-1}`` -> ``\\dot{h}_{t-1}``, ``logf_{t}`` -> ``\\dot{logf}_{t}``, ``{h_{t}^{\\rightarrow}}`` -> ``{\\dot{h}_{t}^{\\rightarrow}}``."""
    return _NAME.sub(lambda m: m.group(1) + r"\dot{%s}" % m.group(2), tex, count=1)


class _Dotted:
    """Printer mixin: ``Tangent(u)`` as ``u`` with a dot, an operand of a linear map without parentheses
    (``W \\dot{h}_{t-1}``, as ``W h_{t-1}``)."""

    def _print_Tangent(self, expr, exp=None):
        tex = dot_tex(self._print(expr.args[0]))
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)

    def _operand(self, expr):
        if isinstance(expr, Tangent) and isinstance(expr.args[0], sp.Symbol):
            return self._print(expr)
        return super()._operand(expr)


_CLASSES = {}


def dotted(printer):
    """A printer with ``printer``'s class and settings that prints tangents with a dot."""
    cls = type(printer)
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Dotted{cls.__name__}", (_Dotted, cls), {})
    return _CLASSES[cls]({k: v for k, v in printer._settings.items() if k in cls._default_settings})


def sensitivity_equations(cell, input_tangent=True) -> list:
    """The tangent equations of ``cell``; without ``input_tangent`` the terms of the input's tangent are
    left out (a model's input does not depend on the parameters).  A matrix cell's fixed spreads and
    folds are constants: they have no dotted term."""
    terms = local_terms(cell.equations)
    if not input_tangent:
        terms = {u: ts for u, ts in terms.items() if u != cell.input_symbol}
    return tangent_equations(cell.equations, terms, constants_of(cell))


def _rows(builder, printer, input_tangent, label_prefix=()):
    equations = sensitivity_equations(builder.cell, input_tangent)
    return [(printer.doprint(e.lhs), e.rhs, tex_label("sensitivity", *label_prefix, sym_base(e.lhs.args[0])))
            for e in equations]


def _cost_paragraph(loss_input: str) -> Paragraph:
    """What RTRL does with the recurrence, and its cost; ``loss_input`` the LaTeX of what the loss of a step
    reads (``h_{t}``)."""
    return Paragraph([
        "The terms with a state of step ", Math("t - 1"), " make ", Math(r"J_{t} P_{t-1}"),
        ", those with a dotted parameter ", Math(r"\partial F / \partial \theta"),
        ": real-time recurrent learning (Williams and Zipser 1989) carries ", Math("P_{t}"), " forward from ",
        Math("P_{0} = 0"), " (the identity for the entries of the initial states) and adds ",
        Math(r"(\partial L_{t} / \partial %s) P_{t}" % loss_input), " (the loss of step ", Math("t"),
        " alone) at every scored step: the same gradient as the adjoints, without a backward pass (",
        Code("Model.rtrl_grads"), "). A step costs ", Math("O(H^2 P)"), " time and the sensitivities ",
        Math("O(H P)"), " memory, for ", Math("P"), " parameters, whatever the length of the sequence; a step "
        "of BPTT costs ", Math("O(H^2)"), " and it keeps ", Math("O(T H)"), "."])


def _lead(what, states, many, state) -> Paragraph:
    """The opening paragraph: what a dot means; ``state`` the LaTeX of the state in ``P_t`` (``s_{t}``, any
    of several)."""
    return Paragraph(["Forward mode reads the same local derivatives from the other side. A dot marks a "
                      "derivative along one entry ", Math(r"\theta_j"), " of the parameters", what, ": ", *states,
                      " " + ("are" if many else "is") + " then column ", Math("j"), " of the sensitivit"
                      + ("ies" if many else "y") + " ", Math(r"P_{t} = \partial %s / \partial \theta" % state),
                      *([" of each state ", Math("s")] if many else []), ", and each equation of the forward "
                      "pass gives one equation of the recurrence, in the order of the forward pass"])


def _states(builder, printer):
    return listing([Math(printer.doprint(Tangent(sp.Symbol(f"{s}[t]")))) for s in builder.cell.states])


def sensitivity_section(builder) -> Section:
    """The section *Sensitivities (real-time recurrent learning)* of the one-cell report ``builder``
    (a :class:`~symrnn.report.sections.ReportBuilder`)."""
    printer = dotted(builder.p)
    many = len(builder.cell.states) > 1
    lead = _lead(" (or of the initial state" + ("s" if many else "") + ")", _states(builder, printer), many,
                 "s_{t}" if many else printer.doprint(sp.Symbol(f"{next(iter(builder.cell.states))}[t]")))
    lead.parts += [" (the input does not depend on the parameters, ", Math(r"\dot{x}_{t} = 0"), "):"]
    blocks = [lead, builder.display(_rows(builder, printer, input_tangent=False), printer),
              _cost_paragraph(printer.doprint(sp.Symbol(f"{builder.model.out}[t]")))]
    return Section(TITLE, LABEL, blocks)


def stacked_sensitivity_section(builder) -> Section | None:
    """The section of the report of a stack of unidirectional layers (a
    :class:`~symrnn.report.wiring.WiringReportBuilder`); None when a layer has a backward direction
    (its state depends on later inputs, so no recurrence forward in time gives its sensitivities)."""
    if builder.bi:
        return None
    m = builder.stack
    printer = dotted(builder.printers["fwd"])
    many = len(builder.cell.states) > 1
    x = printer.doprint(Tangent(builder.cell.input_symbol))
    out = printer.doprint(Tangent(sp.Symbol(f"{builder.model.out}[t]")))
    lead = _lead(" and initial states of any layer (the sensitivities of all layers are carried forward "
                 "together)", _states(builder, printer), many,
                 "s_{t}" if many else printer.doprint(sp.Symbol(f"{next(iter(builder.cell.states))}[t]")))
    lead.parts += [", with the layer's own parameters:"]
    blocks = [
        lead, builder.display(_rows(builder, printer, input_tangent=True, label_prefix=("fwd",)), printer),
        Paragraph(["The input's tangent ", Math(x), " is the sensitivity of the output of the layer below, ",
                   Math(r"\dot{u}^{(l-1)}_{t}"), " (zero for layer 0, whose input is the data), and the output "
                   "of layer ", Math("l"), " has the sensitivity"]),
        builder.display([(r"\dot{u}^{(l)}_{t}", out + (r" + \dot{u}^{(l-1)}_{t}" if m.residual else ""),
                          tex_label("sensitivity", "layer"))]),
        _cost_paragraph(r"u^{(L-1)}_{t}"),
    ]
    return Section(TITLE, LABEL, blocks)


def document_with_sensitivities(model):
    """Deprecated: every report has the section now (:func:`symrnn.report.model_document`)."""
    warnings.warn("document_with_sensitivities is deprecated: the report of a model has the sensitivity "
                  "section by default (symrnn.report.model_document(model)).", DeprecationWarning, stacklevel=2)
    from . import model_document

    return model_document(model)
