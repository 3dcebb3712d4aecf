"""The forward is the specification (issue 19, item 3): ``verify_layer(cell=None)`` and ``symrnn verify``
without ``--cell`` find the built-in cell and layout the forward computes, or trace the cell from
the code; planted mistakes are still caught and localised."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symrnn.verify as V
from corpus import cs231n_lstm, cs231n_rnn
from corpus_glue import column_vectors, no_output_tanh
from symrnn.models.layouts import Layout, to_torch
from symrnn.verify.auto import find
from symrnn.verify.trace import TracingError

GLUE = Path(__file__).resolve().parent / "corpus_glue"


def test_the_cs231n_cells_are_found():
    rnn = V.verify_layer(cs231n_rnn.rnn_forward, cs231n_rnn.rnn_backward, cell=None)
    lstm = V.verify_layer(cs231n_lstm.lstm_forward, cs231n_lstm.lstm_backward, cell=None)
    assert rnn.ok and rnn.cell == "rnn-tanh" and "built-in cell 'rnn-tanh'" in rnn.found, str(rnn)
    assert lstm.ok and lstm.cell == "lstm" and "gates i f o g" in lstm.found, str(lstm)
    wrong = V.verify_layer(cs231n_lstm.lstm_forward, cs231n_lstm.make("cell_path_dropped").lstm_backward, cell=None)
    assert not wrong.ok and wrong.fingerprint.name == "c-path-dropped", str(wrong)


def test_the_verdict_names_each_wrong_gradient_once():
    ns = cs231n_rnn.make("transposed_matrix")  # wrong in the shown case and in the others
    verdict = V.verify_layer(ns.rnn_forward, ns.rnn_backward, cell=None).verdict()
    named = verdict.partition(": ")[2].partition(" (")[0].split(", ")
    assert len(named) == len(set(named)) == 5 and "more" not in verdict, verdict


def torch_style_gru(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    """PyTorch's GRU equations (r, z, n; reset after the product), time-major, W x."""
    H = h0.shape[1]
    h, out = h0, []
    for t in range(x.shape[0]):
        gi, gh = x[t] @ weight_ih.T + bias_ih, h @ weight_hh.T + bias_hh
        r = 1 / (1 + np.exp(-(gi[:, :H] + gh[:, :H])))
        z = 1 / (1 + np.exp(-(gi[:, H:2 * H] + gh[:, H:2 * H])))
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out), None


def test_a_pytorch_style_gru_is_found_with_its_gate_order_and_two_biases():
    found = find(torch_style_gru)
    assert found.cell == "gru" and found.layout.gate_order == ("r", "z", "n"), found.text
    assert found.layout.convention == "column" and not found.layout.batch_major and "b_hh" in found.layout.names


@pytest.mark.parametrize("module, bug, name", [
    (no_output_tanh, "forget-derivative-as-output", "sigmoid-derivative-as-output"),
    (column_vectors, "cell-path-dropped", "c-path-dropped"),
])
def test_the_lstm_variants_need_no_glue(module, bug, name, monkeypatch):
    right = V.verify_layer(module.lstm_forward, module.lstm_backward, cell=None)
    assert right.ok and right.found, str(right)
    monkeypatch.setattr(module, "BUG", bug)
    wrong = V.verify_layer(module.lstm_forward, module.lstm_backward, cell=None)
    assert not wrong.ok and wrong.fingerprint is not None and wrong.fingerprint.name == name, str(wrong)
    assert name in wrong.verdict()


def test_the_traced_cell_is_printed_and_is_no_builtin():
    result = V.verify_layer(no_output_tanh.lstm_forward, no_output_tanh.lstm_backward, cell=None)
    assert "traced from the code" in result.found and "h[t] = c[t]*g2[t]" in result.found, result.found
    assert result.cell.startswith("traced")
    assert "found: the forward computes no built-in cell" in str(result)


def test_column_vectors_one_example_at_a_time_are_found():
    result = V.verify_layer(column_vectors.lstm_forward, column_vectors.lstm_backward, cell=None)
    assert result.cell == "lstm" and "vectors as columns" in result.found and "N = 1" in result.found, result.found
    assert all(c.N == 1 for c in result.cases)


def test_the_cli_finds_and_traces(tmp_path):
    source = (GLUE / "no_output_tanh.py").read_text()
    (tmp_path / "student.py").write_text(source)
    right = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "student.py:lstm_backward"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert right.returncode == 0 and "traced from the code" in right.stdout, right.stdout + right.stderr
    (tmp_path / "student.py").write_text(source.replace("BUG = None", "BUG = 'forget-derivative-as-output'"))
    wrong = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "student.py:lstm_backward"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert wrong.returncode == 1 and "sigmoid-derivative-as-output, gate g1" in wrong.stdout.splitlines()[0], wrong.stdout
    replay = next(line for line in wrong.stdout.splitlines() if line.startswith("replay: "))
    assert replay.startswith("replay: symrnn verify student.py:lstm_backward --replay "), replay


def test_code_that_cannot_be_traced_names_its_line(tmp_path):
    source = (GLUE / "no_output_tanh.py").read_text().replace(
        "    next_h = o * next_c\n", "    next_h = o * next_c if float(next_c.flat[0]) > -1e9 else next_c\n")
    (tmp_path / "branchy.py").write_text(source)
    out = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "branchy.py:lstm_backward"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 4, out.stdout + out.stderr
    assert "branchy.py:" in out.stderr and "next_h = o * next_c if float(" in out.stderr
    assert "Declare the cell instead" in out.stderr


def test_arguments_with_unknown_names_say_how_to_declare():
    def forward(inputs_sequence, hidden, A, B, beta):
        return inputs_sequence
    with pytest.raises(Exception, match="Cannot tell the roles"):
        find(forward)
    assert issubclass(TracingError, ValueError)
    assert Layout and to_torch


def test_an_object_with_one_matrix_per_gate_over_h_x_needs_no_glue(monkeypatch):
    """From-scratch style: Wf, Wi, Wc, Wo (H, H + D) over [h, x], biases (H, 1), column vectors, one example at
    a time, gradients in d<name> attributes: verify_layer(net.forward, net.backward, cell=None)."""
    from corpus_glue import object_lstm

    net = object_lstm.LSTM(3, 4)
    before = {k: v.copy() for k, v in vars(net).items() if isinstance(v, np.ndarray)}
    right = V.verify_layer(net.forward, net.backward, cell=None)
    assert right.ok and right.cell == "lstm" and "one W over [h, x]" in right.found, str(right)
    assert "gates f i g o" in right.found and {"dWf", "dbo", "dx", "dh0", "dc0"} <= {g.name for g in right.gradients}
    assert all(np.array_equal(getattr(net, k), v) for k, v in before.items())  # its weights are put back
    monkeypatch.setattr(object_lstm, "BUG", "output-gate-derivative-missing")
    wrong = V.verify_layer(net.forward, net.backward, cell=None)
    assert not wrong.ok and wrong.fingerprint.name == "sigmoid-derivative-missing", str(wrong)
    assert wrong.localisation["block"] == "o" and {g.name for g in wrong.wrong} >= {"dWo", "dbo"}


def test_the_cli_verifies_an_object_by_its_methods(tmp_path):
    source = (GLUE / "object_lstm.py").read_text() + "\nnet = LSTM(3, 4)\n"
    (tmp_path / "scratch.py").write_text(source)
    out = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "scratch.py:net.backward"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("RIGHT: lstm layer code"), out.stdout + out.stderr
