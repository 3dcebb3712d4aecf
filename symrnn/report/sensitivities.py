"""The sensitivity recurrence (RTRL) as a report section, in the notation of the adjoints.

:func:`sensitivity_section` prints, for every equation of the cell, its tangent
``dot y_t = ...`` (:func:`symrnn.engine.tangent.tangent_equations`, read from the same local terms as
the adjoints), with the same printer and names as the report's adjoint recurrences.
:func:`document_with_sensitivities` is the report of a one-cell model with this section right after
the adjoint recurrences (the default report is unchanged).
"""
from __future__ import annotations

from ..engine.tangent import tangent_equations
from .blocks import Math, Paragraph, Section
from .sections import ReportBuilder, sym_base, tex_label


def sensitivity_section(builder: ReportBuilder) -> Section:
    """The section ``Sensitivities (real-time recurrent learning)`` of ``builder``'s model."""
    equations = tangent_equations(builder.cell.equations)
    states = list(builder.cell.states)
    rows = [(builder.tex(e.lhs), e.rhs, tex_label("sensitivity", sym_base(e.lhs.args[0]))) for e in equations]
    state = builder.name(states[0], index="t")
    blocks = [
        Paragraph(["Forward mode reads the same local derivatives from the other side. A dot marks a derivative "
                   "along one parameter entry ", Math(r"\theta_j"), ": ", Math(r"\dot{%s}" % state),
                   " is then column ", Math("j"), " of the sensitivity ", Math(r"P_{t} = \partial %s / \partial "
                                                                                r"\theta" % state),
                   ", and each equation of the forward pass gives one equation of the recurrence, in the "
                   "order of the forward pass:"]),
        builder.display(rows),
        Paragraph(["The terms with a state of step ", Math("t - 1"), " make ", Math(r"J_{t} P_{t-1}"),
                   ", those with a dotted parameter ", Math(r"\partial F / \partial \theta"),
                   ": real-time recurrent learning (Williams and Zipser 1989) carries ", Math("P_{t}"),
                   " forward from ", Math("P_{0} = 0"), " and adds ",
                   Math(r"(\partial L_{t} / \partial %s) P_{t}" % state),
                   " (the loss of step ", Math("t"), " alone) at every scored step, which gives the same gradient as the adjoints. A step costs ",
                   Math("O(H^2 P)"), " time and the sensitivities ", Math("O(H P)"),
                   " memory, whatever the length of the sequence."]),
    ]
    return Section("Sensitivities (real-time recurrent learning)", "sec:sensitivities", blocks)


def document_with_sensitivities(model):
    """The report document of a one-cell ``model`` with :func:`sensitivity_section` after the adjoints."""
    builder = ReportBuilder(model)
    document = builder.build()
    at = next((i + 1 for i, s in enumerate(document.sections) if getattr(s, "label", "") == "sec:adjoints"),
              len(document.sections))
    document.sections.insert(at, sensitivity_section(builder))
    document.numbers.update(builder.numbers)
    return document
