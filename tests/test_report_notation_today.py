"""The notation of the reports of the cells of today (a new user's findings, tryout 4, F9).

- A let of the parameters alone (LRU's ``r = exp(-exp(nu))``, S6's ``A = -exp(A_log)``) prints without a
  step index in every equation, tangent, Jacobian and in the worked example; its adjoint keeps it.
- mLSTM's key prints the paper's ``1/sqrt(d)`` (SymPy's normal form is ``sqrt(2)/2``), exactly.
- S6's ``Delta_t * u_t`` has a name (``utilde``), not an automatic ``v1``.
- The LRU's report states the paper's complex form before its real split.
- ``symrnn derive -o`` refuses a folder that cannot be written before it derives.
"""
from __future__ import annotations

import re
from pathlib import Path

import sympy as sp

import symrnn as sr
from symrnn.cli import main
from symrnn.engine.symbols import tsym
from symrnn.report.blocks import Display, Paragraph
from symrnn.report.labels import parameter_lets
from symrnn.report.latex import latex
from symrnn.report.sections import ReportBuilder

DERIVATIONS = Path(__file__).resolve().parents[1] / "derivations"


def _md(stem):
    return (DERIVATIONS / f"{stem}_many-to-many.md").read_text()


def test_the_lets_of_the_parameters_alone_are_found():
    assert parameter_lets(sr.builtin_cell("lru")) == {"r", "phi", "lam_re", "lam_im", "gamma"}
    assert parameter_lets(sr.builtin_cell("s6")) == {"A"}
    for name in ("rnn-tanh", "lstm", "min-gru", "slstm", "mlstm"):
        assert parameter_lets(sr.builtin_cell(name)) == frozenset(), name


def test_a_let_of_the_parameters_prints_without_a_step_index_and_its_adjoint_with_one():
    b = ReportBuilder(sr.Model("lru", D=2, H=2, K=2))
    assert b.tex(tsym("r")) == "r" and b.tex(tsym("lam_re", 1)) == "lam_{re}"
    assert b.tex(tsym("r", bar=True)) == r"\bar{r}_{t}" and b.tex(tsym("h_re", -1)) == "h_{re,t-1}"
    forward = "\n".join(r.lhs + " = " + " ".join(r.lines) for blk in b.forward().blocks if isinstance(blk, Display)
                        for r in blk.rows)
    assert r"r = e^{- e^{\nu}}" in forward and r"\gamma = \sqrt{1 - r^{2}}" in forward
    assert r"\odot lam_{re} -" in forward  # h_re reads lam_re, not lam_{re,t}


STEP = r"_\{(?:[a-z]+,)?(?:t|k|[0-9])"  # a step index, after a name's own subscript (lam_{re,t})
INDEXED = {"lru": [r"(?<![\w{\\])r", r"\\phi", r"(?<![\w{\\])lam", r"\\gamma"], "s6": [r"(?<![\w{\\])A"]}


def test_the_regenerated_reports_carry_no_step_index_on_them():
    """Their values, tangents and Jacobians carry none (``\\bar{r}_{t}``, an adjoint, is ``r}_{t}``: not matched)."""
    for stem, names in INDEXED.items():
        md = _md(stem)
        for name in names:
            found = re.findall(name + STEP, md)
            assert found == [], (stem, name, found[:5])
    lru = _md("lru")
    assert r"\dot{r} = " in lru and r"\bar{r}_{t} = " in lru and r"\bar{r}_{2} &= " in lru
    assert r"\operatorname{diag}\left(lam_{re}\right)" in lru  # the Jacobians
    assert lru.count(r"r &= e^{- e^{\nu}}") == 1  # the worked example prints it once, not at every step
    s6 = _md("s6")
    assert r"A = - e^{A_{log}}" in s6 and r"[A]_{2} &= - e^{[A_{log}]_{2}}" in s6


def test_the_mlstm_key_prints_one_over_the_root_of_the_head_size_exactly():
    k = next(e for e in sr.builtin_cell("mlstm").equations if str(e.target) == "k[t]")
    assert k.rhs.has(sp.sqrt(2))  # exact: no float in the equation
    assert latex(k.rhs) == r"\frac{1}{\sqrt{2}} W_{k} x_{t} + b_{k}"
    assert latex(-sp.sqrt(3) * tsym("x") / 3) == r"- \frac{1}{\sqrt{3}} x_{t}"
    assert latex(sp.sqrt(2) * tsym("x") / 3) == r"\frac{\sqrt{2} x_{t}}{3}"  # not 1/sqrt(n): left as it was
    md = _md("mlstm")
    assert r"k_{t} = \frac{1}{\sqrt{2}} W_{k} x_{t} + b_{k} \tag{2}" in md
    assert r"\frac{\sqrt{2}" not in md


def test_the_s6_input_scaled_by_the_step_size_has_a_name():
    for cell, name in (("s6", "utilde"), (sr.engine.cells_matrix.s6(projection=False), "xtilde")):
        cell = sr.builtin_cell(cell) if isinstance(cell, str) else cell
        lets = [str(e.target) for e in cell.equations]
        assert f"{name}[t]" in lets and not any(re.fullmatch(r"v\d+\[t\]", s) for s in lets), lets
    md = _md("s6")
    assert r"\tilde{u}_{t} = \Delta_{t} \odot u_{t}" in md and r"s_{t} = \tilde{u}_{t} B_{t}^{\top} + " in md
    assert "v_{1" not in md


def test_the_lru_report_states_the_papers_complex_form_before_the_real_split():
    blocks = ReportBuilder(sr.Model("lru", D=2, H=2, K=2)).forward().blocks
    assert isinstance(blocks[0], Paragraph) and isinstance(blocks[1], Display)
    rows = {r.lhs: " ".join(r.lines) for r in blocks[1].rows}
    assert rows[r"\lambda"] == r"\exp\left(-e^{\nu} + i e^{\theta}\right)"
    assert rows["s_{t}"] == r"\lambda \odot s_{t-1} + \gamma \odot \left(B x_{t}\right)"
    assert all(r.number is None for r in blocks[1].rows)  # not numbered among the differentiated equations
    md = _md("lru")
    assert md.index(r"\operatorname{Re}\left(C s_{t}\right) + D x_{t}") < md.index(r"r = e^{- e^{\nu}} \tag{1}")
    assert "What is differentiated is the real split" in md
    assert "complex numbers" not in _md("min-gru")


def test_a_user_cell_can_carry_its_papers_form():
    cell = sr.Cell("leaky")
    x, h = cell.input(), cell.state("h")
    cell.update(h, sr.tanh(cell.param("U", "H", "D") @ x) + h / 2)
    cell.written_in_the_paper("The paper writes $h_{t}$ as", [("h_{t}", r"\tanh(U x_{t}) + h_{t-1} / 2")], "in short.")
    blocks = ReportBuilder(sr.Model(cell, D=2, H=2, K=2)).forward().blocks
    assert [type(b) for b in blocks[:3]] == [Paragraph, Display, Paragraph]
    assert blocks[0].parts[0] == "The paper writes " and blocks[0].parts[1].tex == "h_{t}"


def test_derive_refuses_an_output_folder_before_deriving(capsys, monkeypatch):
    import symrnn.cli as cli

    def no_model(args):
        raise AssertionError("the model was built before the output path was checked")
    monkeypatch.setattr(cli, "build_model", no_model)
    assert main(["derive", "slstm", "-o", "/nonexistent/dir/x.md"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "deriving" not in err
