"""The structure of the derivation reports (issue: reports a textbook author would publish):
each gate's pre-activation adjoint is named once and reused, the readout bias does not share
the LSTM cell state's letter, and sums follow the forward order of the gates."""
import re

import pytest

import symrnn as sr
from symrnn.report import markdown_document
from symrnn.report.latex import latex
from symrnn.report.sections import gate_adjoints


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru-reset-before", "gru-chung"])
def test_each_gate_adjoint_is_named_once_and_reused(cell):
    model = sr.Model(cell, D=2, H=3, K=2)
    md = markdown_document(model)
    gates = gate_adjoints(model.derive())
    assert gates, "a gated cell has gates of the form act(U x + W h + b)"
    for target, (symbol, product) in gates.items():
        factor = latex(product)
        lines = [line for line in md.splitlines() if factor in line]
        assert len(lines) == 1 and lines[0].startswith(latex(symbol) + " = "), (cell, factor, lines)
        name = re.escape(latex(symbol).replace("_{t}", ""))
        uses = [line for line in md.splitlines() if line.startswith(r"\frac{\partial L}") and re.search(name, line)]
        assert uses, f"no gradient uses {latex(symbol)}"


def test_notation_has_one_meaning_per_symbol():
    md = markdown_document(sr.Model("lstm", D=2, H=3, K=2))
    table = md.split("*Table 1")[1].split("\n\n")[1]
    symbols = [row.split("|")[1].strip() for row in table.splitlines()[2:]]
    assert len(symbols) == len(set(symbols)), symbols
    assert "| $b_{y}$ | $K$ | output bias (`c` in the code) |" in md and "$c$ |" not in table


def test_sums_follow_the_forward_order_of_the_gates():
    md = markdown_document(sr.Model("lstm", D=2, H=3, K=2))
    line = next(line for line in md.splitlines() if line.startswith(r"\bar{h}_{t} = "))
    order = [line.index(r"W_{%s}^{\top}" % g) for g in "ifgo"]
    assert order == sorted(order), line


def test_the_loss_adjoint_is_printed_once_and_sigma_is_defined_before_its_derivative():
    md = markdown_document(sr.Model("lstm", D=2, H=3, K=2))
    assert len([line for line in md.splitlines() if line.startswith(r"\bar{s}_{t} = ")]) == 1
    definition = md.index(r"\sigma\left(u\right) = \frac{1}{1 + e^{- u}}")
    assert definition < md.index(r"\frac{d}{d u} \sigma\left(u\right) = ")


# -- the summary box, the specialised architectures, the worked example, the exercises --------------
from symrnn.models.architectures import ARCHITECTURES  # noqa: E402
from symrnn.report import latex_document  # noqa: E402
from symrnn.report.blocks import Boxed, Display  # noqa: E402
from symrnn.report.example import WorkedExample  # noqa: E402
from symrnn.report.exercises import BLANK  # noqa: E402
from symrnn.report.sections import ReportBuilder  # noqa: E402


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru"])
def test_the_summary_box_prints_the_backward_summary(cell, architecture):
    builder = ReportBuilder(sr.Model(cell, D=2, H=3, K=2, architecture=architecture))
    doc = builder.build()
    summary = next(s for s in doc.sections if s.title == "Summary")
    box = next(b for b in summary.blocks if isinstance(b, Boxed))
    text = "\n".join(box.lines)
    for lhs, rhs in builder.summary.adjoints(None, combined=True):
        assert f"{builder.tex(lhs)} &= " in text
    for name in builder.model.param_shapes:
        printed = builder.sums(builder.summary.gradient(name)).replace(r"\sum_", r"\sum\nolimits_")
        assert r"\partial L / \partial %s &= %s" % (builder.name(name), printed) in text
    # the recurrences the box keeps are the carriers: each is read one step later by some row
    kept = [lhs for lhs, _ in builder.summary.adjoints(None, combined=True)]
    if cell == "rnn-tanh":
        assert [latex(k) for k in kept] == [r"\bar{a}_{t}"]


def test_many_to_one_report_prints_the_specialised_adjoints():
    md = markdown_document(sr.Model("rnn-tanh", D=2, H=3, K=2, architecture="many-to-one"))
    lines = md.splitlines()
    assert any(line.startswith(r"\bar{h}_{T} = V^{\top} \left(\hat{y}_{T} - y_{T}\right)") for line in lines)
    assert any(line.startswith(r"\bar{h}_{t} = W^{\top} \bar{a}_{t+1}") for line in lines)
    assert any(line.startswith(r"\frac{\partial L}{\partial V} = \bar{o}_{T} h_{T}^{\top}") for line in lines)
    assert "At a step that is not scored" not in md


def test_one_to_many_and_delayed_sums_run_over_their_steps():
    md = markdown_document(sr.Model("rnn-tanh", D=2, H=3, K=2, architecture="one-to-many"))
    assert r"\frac{\partial L}{\partial U} = \bar{a}_{1} x_{1}^{\top}" in md
    md = markdown_document(sr.Model("rnn-tanh", D=2, H=3, K=2, architecture="many-to-many-delayed"))
    assert r"\frac{\partial L}{\partial U} = \sum_{t=1}^{T_{\mathrm{in}}} \bar{a}_{t} x_{t}^{\top}" in md
    assert r"\frac{\partial L}{\partial V} = \sum_{t=T_{\mathrm{in}} + 1}^{T} \bar{o}_{t} h_{t}^{\top}" in md


@pytest.mark.parametrize("kw", [dict(cell="lstm"), dict(cell="gru", architecture="one-to-many"),
                                dict(cell="rnn-relu", architecture="many-to-one", loss="mse", reduction="mean"),
                                dict(cell="rnn-tanh", loss="upstream"),
                                dict(cell="gru-chung", architecture="many-to-many-delayed")])
def test_worked_example_by_hand_agrees_with_the_generated_code(kw):
    cell = kw.pop("cell")
    ex = WorkedExample(sr.Model(cell, D=2, H=3, K=2, **kw))
    env, hand = ex.hand_values()
    for entry in ex.table():
        assert entry.by_hand == pytest.approx(entry.generated, rel=1e-12, abs=1e-15), entry
    # every adjoint of every step is printed with its value, from the last step to the first
    steps = [t for t, _ in ex.hand_program()]
    assert steps == list(range(ex.schedule.T, 0, -1))
    assert all(symbol in env for _, rows in ex.hand_program() for symbol, _ in rows)


def test_worked_example_prints_yhat_minus_y_and_names_every_quantity():
    md = markdown_document(sr.Model("gru", D=2, H=3, K=2))
    assert r"\bar{o}_{2,1} &= - y_{2,1} + \hat{y}_{2,1}" in md
    assert r"\left(y_{2,1} + y_{2,2}\right)" not in md
    closed = md.split("gives the closed form")[1].split("in terms of the gradients")[0]
    assert r"h_{1}" in closed and r"h_{0} z_{1} + n_{1} \left(1 - z_{1}\right)" not in closed, closed


def test_long_closed_forms_show_their_nesting():
    tex = latex_document(sr.Model("lstm", D=2, H=3, K=2))
    closed = tex.split(r"\label{eq:example:closed-form}")[1].split(r"\end{split}")[0]
    lines = closed.strip().splitlines()[1:]
    assert len(lines) > 2
    depth = [line.count(r"\quad") for line in lines]
    assert max(depth) >= 3, lines  # a line inside two broken groups is indented twice more
    assert r"\Bigl(" in closed and r"\bigl(" in closed  # an outer group's brackets are the larger


def test_exercise_version_blanks_the_lines_and_answers_them():
    model = sr.Model("lstm", D=2, H=3, K=2)
    full = ReportBuilder(model).build()
    md = markdown_document(model, exercises=True)
    body, answers = md.split("## 13. Answers")  # 12 sections, the sensitivities among them
    hidden = [row for s in full.sections for b in s.blocks if isinstance(b, Display) and b.exercise for row in b.rows]
    assert hidden and body.count(BLANK) == len(hidden)
    for row in hidden:
        assert row.lines[0] in answers
        if row.number is not None:
            assert f"\\tag{{{row.number}}}" in answers
    assert r"\boxed{" not in body and r"\boxed{" in answers
    assert "*Table 2" in answers


def test_exercise_version_gives_no_answer_away():
    """The sensitivity recurrence holds every coefficient the blanked adjoints need, and a sentence of
    the Jacobian section states a blanked block: both go to the answers."""
    md = markdown_document(sr.Model("min-gru", D=2, H=3, K=2), exercises=True)
    body, answers = md.split("Answers\n", 1)
    assert "contains no weight matrix" not in body and "contains no weight matrix" in answers
    sensitivities = body.split("Sensitivities (real-time recurrent learning)")[1].split("\n## ")[0]
    assert r"\dot{" not in sensitivities and "give the coefficients of the adjoint recurrences away" in sensitivities
    assert r"\dot{h}_{t}" in answers


def test_exercise_version_of_a_stacked_model_is_refused():
    from symrnn.errors import SymRNNError
    stacked = sr.StackedModel("rnn-tanh", D=2, H=3, K=2, num_layers=2)
    with pytest.raises(SymRNNError, match="exercise version"):
        markdown_document(stacked, exercises=True)


def test_jupyter_rendering_uses_the_report_names():
    tex = sr.Model("lstm", D=2, H=3, K=2).derive()._repr_latex_()
    assert r"\frac{\partial L}{\partial b_{y}}" in tex and r"\frac{\partial L}{\partial c}" not in tex
    assert r"\bar{a}^{i}_{t} &= " in tex


def test_plots_leave_the_pyplot_backend_and_figures_alone(tmp_path):
    import subprocess
    import sys
    script = (
        "import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt, numpy as np\n"
        "fig = plt.figure()\n"
        "from symrnn.report.seq2seq import plot_attention\n"
        f"plot_attention(np.ones((2, 3)) / 3, {str(tmp_path / 'a.png')!r})\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert plt.get_fignums() == [fig.number], plt.get_fignums()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
