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
