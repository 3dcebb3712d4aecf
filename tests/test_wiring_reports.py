"""Derivation reports of stacked and bidirectional models (symrnn.report.wiring).

``derivations/`` holds them and ``tests/test_reports.py::test_derivations_are_up_to_date`` keeps the
directory in sync (``make derivations``).  Here: they compile without overfull lines, they show the
wiring (both directions' adjoints, the merge Jacobians, the layer link), and ``write_report`` takes a
``StackedModel``.
"""
from __future__ import annotations

import pytest

import symrnn as sr
import symrnn.report as report
from symrnn.report.compile import compile_pdf
from symrnn.report.wiring import WIRING_REPORTS, build_wiring_document
from test_reports import need, pdf_text

WIRING_SECTIONS = ("The model", "Notation", "Forward pass", "Loss", "The unrolled computation graph",
                   "Adjoint recurrences of each direction", "From layer to layer", "Gradients of the parameters")


def stacked(spec):
    spec = dict(spec)
    return sr.StackedModel(spec.pop("cell"), D=3, H=4, K=3, **spec)


@pytest.mark.latex
@pytest.mark.parametrize("stem, spec", WIRING_REPORTS, ids=[s for s, _ in WIRING_REPORTS])
def test_wiring_reports_compile_and_show_the_wiring(stem, spec, tmp_path):
    need("pdflatex")
    m = stacked(spec)
    result = compile_pdf(report.wiring_latex_document(m))
    assert result.overfull_lines() == [], f"{stem}: overfull lines {result.overfull_lines()}"
    text = pdf_text(result.pdf, tmp_path)
    for title in WIRING_SECTIONS + (("The merge and its Jacobian",) if any(m.bidirectional) else ()):
        assert title in text, f"{stem}: section {title!r} missing"
    # the sensitivity recurrence (RTRL) only where RTRL runs: no layer with a backward direction
    assert ("Sensitivities (real-time recurrent learning)" in text) == (not any(m.bidirectional)), stem
    assert "one layer is drawn" in text


def test_bidirectional_report_prints_both_directions_and_the_merge():
    m = stacked(dict(cell="lstm", num_layers=2, bidirectional=True, merge="mul"))
    md = report.wiring_markdown_document(m)
    # the backward direction reads step t+1 in its forward pass and t-1 in its adjoints
    assert r"{h_{t+1}^{\leftarrow}}" in md and r"{\bar{c}_{t-1}^{\leftarrow}}" in md
    assert r"{\bar{c}_{t+1}^{\rightarrow}}" in md
    # the merge Jacobians, all of them, and this model's rule printed from SymPy's derivative
    # (in Markdown a row break inside inline math is written \\\\: Markdown halves it)
    for jac in (r"\begin{bmatrix} I & 0 \\\\ 0 & I \end{bmatrix}", r"\begin{bmatrix} I & I \end{bmatrix}",
                r"\tfrac{1}{2} I", r"\operatorname{diag}(h^{\leftarrow}) & \operatorname{diag}(h^{\rightarrow})"):
        assert jac in md
    assert r"\bar{h}^{\rightarrow}_{t}\big|_{\text{merge}} = {h_{t}^{\leftarrow}} \odot \bar{y}_{t}" in md
    # the layer link
    assert r"\bar{u}^{(l-1)}_{t} = \bar{x}^{\rightarrow}_{t} + \bar{x}^{\leftarrow}_{t}" in md


def test_max_report_states_the_tie_rule():
    md = report.wiring_markdown_document(stacked(dict(cell="gru", bidirectional=True, merge="max")))
    assert r"\theta\left({h_{t}^{\rightarrow}} - {h_{t}^{\leftarrow}}\right) \odot \bar{y}_{t}" in md
    assert "each direction receives half of the gradient" in md


def test_write_report_takes_a_stacked_model(tmp_path):
    m = stacked(dict(cell="rnn-tanh", num_layers=2, bidirectional=True, merge="sum", residual=True))
    path = report.write_report(m, "md", tmp_path / "bi.md")
    assert path.read_text().startswith("# Backpropagation through time for a 2-layer bidirectional rnn-tanh")
    assert build_wiring_document(m).title == "Backpropagation through time for a 2-layer bidirectional rnn-tanh network"


def test_cli_derives_and_checks_a_stacked_model(tmp_path, capsys):
    from symrnn.cli import main

    out = tmp_path / "bi.md"
    assert main(["derive", "gru", "--num-layers", "2", "--bidirectional", "--merge", "ave", "--format", "md",
                 "-o", str(out)]) == 0
    assert out.read_text().startswith("# Backpropagation through time for a 2-layer bidirectional gru network")
    assert main(["check", "rnn-tanh", "--bidirectional", "--num-layers", "2"]) == 0
    table = capsys.readouterr().out
    assert "| unrolled scalar oracle (SymPy, float64) |" in table and "| NO |" not in table
    assert main(["check", "rnn-tanh", "--bidirectional", "--merge", "maximum"]) == 2
    assert "Unknown merge mode 'maximum'" in capsys.readouterr().err
