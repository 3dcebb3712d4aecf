"""The sensitivity recurrence as a report section (:mod:`symrnn.report.sensitivities`): placed right
after the adjoint recurrences, in the report's notation, one numbered equation per equation of the
cell, in LaTeX and Markdown; the default report is unchanged."""
from __future__ import annotations

import pytest

import symrnn as sr
from symrnn.report import document as latex_render
from symrnn.report import markdown as markdown_render
from symrnn.report.sections import build_document
from symrnn.report.sensitivities import document_with_sensitivities


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru-reset-before"])
def test_section_after_the_adjoints(cell):
    model = sr.Model(cell, D=2, H=3, K=2)
    document = document_with_sensitivities(model)
    titles = [s.title for s in document.sections]
    at = titles.index("Sensitivities (real-time recurrent learning)")
    assert titles[at - 1] == "Adjoint recurrences"
    assert titles[:at] + titles[at + 1:] == [s.title for s in build_document(model).sections]
    text = latex_render.render(document)
    section = text[text.index(r"\section{Sensitivities"):text.index(r"\section{Gradients")]
    for eq in model.cell.equations:
        name = eq.target.name.split("[")[0]
        assert rf"\label{{eq:sensitivity:{name}}}" in section
    assert r"\dot{h}_{t-1}" in section and "O(H^2 P)" in section
    assert "Sensitivities" in markdown_render.render(document)


def test_rnn_recurrence_in_the_report_notation():
    text = latex_render.render(document_with_sensitivities(sr.Model("rnn-tanh", D=2, H=3, K=2)))
    assert (r"\dot{a}_{t} &= U \left(\dot{x}_{t}\right) + W \left(\dot{h}_{t-1}\right) + \dot{U} x_{t} "
            r"+ \dot{W} h_{t-1} + \dot{b}") in text
    assert r"\dot{h}_{t} &= \left(1 - h_{t}^{2}\right) \odot \dot{a}_{t}" in text
