"""The sequence-to-sequence reports (symrnn.report.seq2seq) and the display API (symrnn.report.display).

* The worked example of each attention report (``derivations/``: Luong's general score, Bahdanau's additive
  one) is redone with PyTorch autograd on the paper's formulas, written here from the papers and not from
  symrnn's rules: every printed forward value and every printed adjoint agrees to 1e-12 relative.
* The three reports of ``derivations/`` (encoder-decoder, Luong, Bahdanau) compile without overfull boxes
  and show their sections; ``tests/test_reports.py::test_derivations_are_up_to_date`` keeps them in sync.
* The notation: encoder states, decoder states and adjoints have distinct symbols; no double bar, no
  ``\\overline``, no code text in the prose; the combination and the readout have their adjoints.
* ``symrnn derive`` makes these reports from its sequence-to-sequence options.
"""
from __future__ import annotations

import re

import pytest
import sympy as sp
import torch

import symrnn as sr
import symrnn.report as report
from symrnn.report.compile import compile_pdf
from symrnn.report.seq2seq import SEQ2SEQ_REPORTS, seq2seq_report_model
from symrnn.report.seq2seq_example import INPUTS, evaluate
from test_reports import need, pdf_text

ATTENTION = [(stem, spec) for stem, spec in SEQ2SEQ_REPORTS if "attention" in spec]


def _torch_attention(score, bahdanau):
    """Luong et al. (2015) and Bahdanau et al. (2015) attention for one step, width one, two positions,
    with the loss L = cbar * c_t (cbar given): values and gradients by autograd."""
    f = {k: torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for k, v in INPUTS.items()}
    query = f["h[t-1]"] if bahdanau else f["h[t]"]
    memory = [f["hbar[1]"], f["hbar[2]"]]
    if score == "dot":
        scores = [query * m for m in memory]
    elif score == "general":
        scores = [query * (f["W_a"] * m) for m in memory]
    else:  # additive: v_a^T tanh(W_a q + U_a hbar_s)
        scores = [f["v_a"] * torch.tanh(f["W_a"] * query + f["U_a"] * m) for m in memory]
    weights = torch.softmax(torch.stack(scores), dim=0)
    context = (weights * torch.stack(memory)).sum()
    loss = f["bar ctx[t]"] * context
    loss.backward()
    return weights.detach().numpy(), context.item(), f


def _close(a, b):
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


@pytest.mark.parametrize("stem, spec", ATTENTION, ids=[s for s, _ in ATTENTION])
def test_worked_example_is_reproduced_by_autograd_on_the_papers_formulas(stem, spec):
    model = seq2seq_report_model(spec)
    _, env = evaluate(model)
    weights, context, leaves = _torch_attention(model.attention.score, model.bahdanau)
    value = {k: float(sp.N(v, 30)) for k, v in env.items()}
    assert _close(value["a[t,1]"], weights[0]) and _close(value["a[t,2]"], weights[1])
    assert _close(value["ctx[t]"], context)
    query = "h[t-1]" if model.bahdanau else "h[t]"
    assert _close(value[f"bar {query}"], float(leaves[query].grad))
    for s in (1, 2):
        assert _close(value[f"bar hbar[{s}]"], float(leaves[f"hbar[{s}]"].grad))
    for name in ("W_a", "U_a", "v_a"):
        if f"attn.{name}" in model.param_shapes:
            assert _close(value[f"bar {name}"], float(leaves[name].grad)), name


def test_worked_example_is_in_the_report_with_the_same_numbers():
    stem, spec = ATTENTION[0]
    model = seq2seq_report_model(spec)
    _, env = evaluate(model)
    text = report.markdown_document(model)
    assert "A worked example" in text
    assert f"= {float(sp.N(env['ctx[t]'], 30)):.6g}" in text


@pytest.mark.latex
@pytest.mark.parametrize("stem, spec", SEQ2SEQ_REPORTS, ids=[s for s, _ in SEQ2SEQ_REPORTS])
def test_seq2seq_reports_compile_without_overfull_boxes(stem, spec, tmp_path):
    need("pdflatex")
    result = compile_pdf(report.latex_document(seq2seq_report_model(spec)))
    assert result.overfull_lines() == [], f"{stem}: {result.overfull_lines()}"
    text = pdf_text(result.pdf, tmp_path)
    for title in ("The model and its notation", "Encoder", "Decoder", "Readout and loss",
                  "How the gradient reaches the encoder"):
        assert title in text, f"{stem}: {title!r} missing"
    if "attention" in spec:
        assert "Attention" in text and "A worked example" in text


@pytest.mark.parametrize("stem, spec", SEQ2SEQ_REPORTS, ids=[s for s, _ in SEQ2SEQ_REPORTS])
def test_notation_keeps_encoder_decoder_and_adjoints_apart(stem, spec):
    tex = report.latex_document(seq2seq_report_model(spec))
    assert r"\overline" not in tex and r"\bar{\bar" not in tex
    assert r"h^{\mathrm{enc}}_{s}" in tex and r"\bar{o}_{t}" in tex  # encoder states; the readout's adjoint
    assert r"\frac{\partial L}{\partial V" in tex
    body = tex[tex.index(r"\begin{document}"):]
    for code in ("h_fwd[", "htilde[", "SEQUENCE_RULES", "luong style", "||"):
        assert code not in body, f"{stem}: code text {code!r} in the report"
    # a sum binds a primed index: no sum over s' has a free s inside it
    for summed in re.findall(r"\\sum_\{s'\} ([^=&\\]*?)(?:\\\\|$)", body):
        assert not re.search(r"_\{[^}]*\bs\}", summed), summed
    if "attention" in spec and spec.get("attention_style") != "bahdanau":
        assert r"\left[\bar{c}_{t}; \bar{h}_{t}\big|_{\text{combination}}\right]" in tex  # Luong's combination


def test_derive_cli_makes_the_seq2seq_reports(tmp_path, capsys):
    from symrnn.cli import main

    out = tmp_path / "s.md"
    assert main(["derive", "gru", "--decoder", "lstm", "--attention", "additive", "--attention-style",
                 "bahdanau", "-o", str(out)]) == 0
    text = out.read_text()
    assert "Bahdanau" in text and "lstm decoder" in text and "A worked example" in text
    assert main(["derive", "gru", "--attention-style", "bahdanau", "-o", str(tmp_path / "x.md")]) == 2
    assert "--attention-style needs --attention" in capsys.readouterr().err
    assert main(["derive", "gru", "--bridge", "tanh", "--loss", "mse", "-o", str(tmp_path / "y.md")]) == 2


# -- the display API ------------------------------------------------------------------------------------
def test_derivation_latex_prints_parts_with_the_report_names():
    d = sr.Model("lstm", D=2, H=3, K=2).derive()
    tex = d.latex("adjoints", "gates")
    assert tex.startswith(r"\begin{aligned}") and r"\bar{a}^{f}_{t}" in tex
    assert r"\frac{\partial L}{\partial h_0}" in d.latex("initial_states")
    assert r"\bar{c}_{1}" in d.latex("initial_states") and "_{k-1}" in d.latex("jacobians")
    with pytest.raises(sr.UnknownNameError, match="forward"):
        d.latex("backward")



def test_every_part_prints_each_equation_once():
    """The loss's gradient (o-bar) is also the first adjoint: printed once when every part is shown,
    and still among the adjoints when they are asked for alone."""
    d = sr.Model("rnn-tanh", D=2, H=3, K=2).derive()
    lines = d.latex().splitlines()
    assert len(lines) == len(set(lines))
    assert sum(line.startswith(r"\bar{o}_{t} &=") for line in lines) == 1
    assert r"\bar{o}_{t} &=" in d.latex("adjoints")

def test_show_prints_outside_a_notebook_and_tables_space_their_columns(capsys):
    from symrnn.report.display import HtmlTable, table

    sr.Model("rnn-tanh", D=2, H=2, K=2).derive().show("forward")
    assert r"h_{t} &= \tanh" in capsys.readouterr().out
    html = HtmlTable(["a", "b"], [[1, "0.5"]])._repr_html_()
    assert "padding" in html and "<td" in html
    table(["lag", "norm"], [[1, "x"]])
    assert "lag  norm" in capsys.readouterr().out
    with pytest.raises(sr.ParameterError):
        HtmlTable(["a", "b"], [[1]])


def test_seq2seq_derivation_shows_its_parts():
    d = sr.Seq2Seq("gru", "gru", src_vocab=4, tgt_vocab=3, E=2, H=2, attention="dot").derive()
    tex = d.latex("attention_adjoints", "readout_adjoints")
    assert r"\bar{h}^{\mathrm{enc}}_{s}\big|_{\text{attention}}" in tex and r"\bar{o}_{t}" in tex


def test_report_section_shows_a_wiring_section():
    from symrnn.report.display import report_section

    model = sr.BidirectionalModel("rnn-tanh", D=2, H=2, K=2, merge="sum")
    assert r"\bar{h}^{\rightarrow}_{t}" in str(report_section(model, "sec:merge"))
    with pytest.raises(sr.UnknownNameError, match="sec:merge"):
        report_section(model, "sec:nothing")


def test_derivation_docstring_names_the_loss_keys_the_loss_rules_return():
    from symrnn.engine.bptt import Derivation

    doc = Derivation.__doc__
    for rule, kw in (("cross-entropy", {}), ("mse", {})):
        keys = sr.Model("rnn-tanh", D=2, H=2, K=2, loss=rule).derive().loss.keys()
        for key in keys:
            assert f'"{key}"' in doc, key


def test_exercise_version_writes_its_answers_to_a_separate_file(tmp_path, capsys):
    from symrnn.cli import main
    from symrnn.report.exercises import BLANK

    out = tmp_path / "lstm-exercises.md"
    assert main(["derive", "lstm", "--exercises", "-o", str(out)]) == 0
    answers = tmp_path / "lstm-exercises-answers.md"
    assert f"wrote {answers}" in capsys.readouterr().out
    questions, solutions = out.read_text(), answers.read_text()
    assert BLANK in questions and "Answers" not in questions and "answer sheet" in questions
    assert BLANK not in solutions and "## 1. Answers" in solutions and r"\boxed{" in solutions


@pytest.mark.latex
def test_exercise_and_answer_pdfs_compile_without_unresolved_references(tmp_path):
    need("pdflatex")
    from symrnn.report import _latex
    from symrnn.report.exercises import make_exercises
    from symrnn.report.sections import build_document

    for document in make_exercises(build_document(sr.Model("gru", D=2, H=2, K=2)), answers_apart=True):
        result = compile_pdf(_latex.render(document))
        assert result.overfull_lines() == []
        assert "??" not in pdf_text(result.pdf, tmp_path)


def test_bridge_worked_example_is_reproduced_by_autograd():
    from symrnn.report.seq2seq_example import BRIDGE_INPUTS, evaluate_bridge

    stem, spec = next((s, p) for s, p in SEQ2SEQ_REPORTS if "attention" not in p)
    _, env = evaluate_bridge(seq2seq_report_model(spec))
    f = {k: torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for k, v in BRIDGE_INPUTS.items()}
    h0 = torch.tanh(f["W_h"] * f["z[t]"] + f["b_h"])        # Cho et al. 2014: h_0 = tanh(W z + b)
    (f["bar h_init[t]"] * h0).backward()
    value = {k: float(sp.N(v, 30)) for k, v in env.items()}
    assert _close(value["h_init[t]"], h0.item())
    for mine, leaf in (("bar z[t]", "z[t]"), ("bar W_h", "W_h"), ("bar b_h", "b_h")):
        assert _close(value[mine], f[leaf].grad.item()), mine
    assert "A worked example" in report.markdown_document(seq2seq_report_model(spec))
