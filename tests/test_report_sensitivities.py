"""The sensitivity recurrence (RTRL) as a report section (:mod:`symrnn.report.sensitivities`): in every
report of one cell and of a stack of unidirectional layers, right after the adjoint recurrences, in the
report's notation, one numbered equation per equation of the cell, in LaTeX and Markdown; left out with
``sensitivities=False`` and ``symrnn derive --no-sensitivities``; no section where RTRL does not run."""
from __future__ import annotations

import pytest

import symrnn as sr
from symrnn import report
from symrnn.cli import main
from symrnn.engine.symbols import Param, tsym
from symrnn.engine.tangent import Tangent
from symrnn.report import document as latex_render
from symrnn.report import markdown as markdown_render
from symrnn.report.sections import build_document
from symrnn.report.sensitivities import TITLE, document_with_sensitivities, dot_tex, sensitivity_equations

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru-reset-before"])
def test_section_after_the_adjoints_by_default(cell):
    model = sr.Model(cell, D=2, H=3, K=2)
    document = build_document(model)
    titles = [s.title for s in document.sections]
    at = titles.index(TITLE)
    assert titles[at - 1] == "Adjoint recurrences" and titles[at + 1] == "Gradients of the parameters"
    assert [t for t in titles if t != TITLE] == [s.title for s in build_document(model, sensitivities=False).sections]
    text = latex_render.render(document)
    section = text[text.index(r"\section{Sensitivities"):text.index(r"\section{Gradients")]
    for eq in model.cell.equations:
        name = eq.target.name.split("[")[0]
        assert rf"\label{{eq:sensitivity:{name}}}" in section
    assert r"\dot{h}_{t-1}" in section and "O(H^2 P)" in section
    assert r"\dot{x}" not in section.replace(r"\dot{x}_{t} = 0", "")  # the data's tangent is zero, left out
    md = markdown_render.render(document)
    tags = [int(n) for n in __import__("re").findall(r"\\tag\{(\d+)\}", md)]
    assert tags == list(range(1, len(tags) + 1))  # numbered in the order of the document


def test_rnn_recurrence_in_the_report_notation():
    text = report.latex_document(sr.Model("rnn-tanh", D=2, H=3, K=2))
    assert r"\dot{a}_{t} &= W \dot{h}_{t-1} + \dot{U} x_{t} + \dot{W} h_{t-1} + \dot{b}" in text
    assert r"\dot{h}_{t} &= \left(1 - h_{t}^{2}\right) \odot \dot{a}_{t}" in text


def test_the_data_has_no_tangent_in_the_report_of_one_cell():
    cell = sr.Model("rnn-tanh", D=2, H=3, K=2).cell
    with_x, without_x = sensitivity_equations(cell), sensitivity_equations(cell, input_tangent=False)
    assert Tangent(tsym("x")) in with_x[0].rhs.atoms(Tangent)
    assert Tangent(tsym("x")) not in without_x[0].rhs.atoms(Tangent)
    assert with_x[0].rhs.atoms(Tangent) - without_x[0].rhs.atoms(Tangent) == {Tangent(tsym("x"))}
    assert {Tangent(Param(n)) for n in ("U", "W", "b")} <= without_x[0].rhs.atoms(Tangent)
    assert with_x[1] == without_x[1]


def test_stacked_unidirectional_report_has_the_section():
    m = sr.StackedModel("gru", D=2, H=3, K=2, num_layers=2, residual=True)
    md = report.markdown_document(m)
    section = md[md.index(TITLE):]
    section = section[:section.index("\n## ")]
    assert r"{\dot{h}_{t-1}^{\rightarrow}}" in section and r"\dot{x}_{t}" in section
    assert r"\dot{u}^{(l)}_{t} = {\dot{h}_{t}^{\rightarrow}} + \dot{u}^{(l-1)}_{t}" in section
    assert TITLE not in report.markdown_document(m, sensitivities=False)


def test_no_section_where_rtrl_does_not_run():
    bi = sr.StackedModel("gru", D=2, H=3, K=2, num_layers=1, bidirectional=True)
    assert TITLE not in report.markdown_document(bi)


def test_dot_over_the_letter_only():
    assert dot_tex("h_{t-1}") == r"\dot{h}_{t-1}"
    assert dot_tex(r"{h_{t}^{\rightarrow}}") == r"{\dot{h}_{t}^{\rightarrow}}"
    assert dot_tex(r"\tilde{h}_{t}") == r"\dot{\tilde{h}}_{t}"
    assert dot_tex(r"\gamma_{t}") == r"\dot{\gamma}_{t}"
    assert dot_tex("logf_{t}") == r"\dot{logf}_{t}"  # the whole name, as the adjoints' bar (not \dot{l}ogf)


def test_cli_no_sensitivities(tmp_path, capsys):
    with_section, without = tmp_path / "with.md", tmp_path / "without.md"
    assert main(["derive", "rnn-tanh", "-o", str(with_section)]) == 0
    assert main(["derive", "rnn-tanh", "--no-sensitivities", "-o", str(without)]) == 0
    assert TITLE in with_section.read_text() and TITLE not in without.read_text()
    assert main(["derive", "rnn-tanh", "--no-sensitivities", "--format", "md"]) == 0
    assert TITLE not in capsys.readouterr().out


def test_document_with_sensitivities_is_deprecated():
    model = sr.Model("rnn-tanh", D=2, H=3, K=2)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        document = document_with_sensitivities(model)
    assert TITLE in [s.title for s in document.sections]
