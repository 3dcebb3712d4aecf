"""The model protocol: every model describes its blocks (``parts()``), runs them on one tape, and every
downstream route (scalar program, torch, differences, agreement table, report) reads the parts."""
import ast
from pathlib import Path

import numpy as np
import pytest

import symrnn as sr
from symrnn.checks import max_error, random_problem
from symrnn.oracles import ScalarOracle, central_differences
from symrnn.report import report_kind
from symrnn.models.tape import Tape, reordered

ORACLES = Path(sr.__file__).parent / "oracles"


def kinds(model):
    return [(p.kind, p.name) for p in model.parts()]


def test_parts_describe_the_wiring():
    assert kinds(sr.Model("gru", D=2, H=3, K=2)) == [("cell", "cell"), ("readout", "readout"), ("loss", "loss")]
    m = sr.StackedModel("rnn-tanh", D=2, H=2, K=2, num_layers=2, bidirectional=[True, False], merge="sum",
                        residual=True)
    assert kinds(m) == [("cell", "l0.fwd"), ("cell", "l0.bwd"), ("merge", "l0"), ("cell", "l1.fwd"),
                        ("residual", "l1.residual"), ("readout", "readout"), ("loss", "loss")]
    assert [p.row for p in m.parts() if p.kind == "cell"] == [0, 1, 2]
    assert m.parts()[3].reads == ("l0",) and m.parts()[4].reads == ("l1.fwd", "l0")
    s2s = sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=2, attention="general", bidirectional=True)
    assert {"bridge", "attention", "combine"} <= {p.kind for p in s2s.parts()}


def test_one_cell_and_state_shapes_come_from_the_parts():
    model, stack = sr.Model("lstm", D=2, H=3, K=2), sr.BidirectionalModel("lstm", D=2, H=3, K=2, num_layers=2)
    assert model.one_cell and not stack.one_cell
    assert model.initial_state_shape("c", 5) == (5, 3) and stack.initial_state_shape("c", 5) == (4, 5, 3)
    assert [report_kind(m) for m in (model, stack)] == ["cell", "wiring"]
    assert report_kind(sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=2, attention="dot")) == "seq2seq"


def test_the_tape_sums_the_shares_of_a_node_read_twice():
    tape = Tape()
    a = tape.leaf(np.array([1.0, 2.0]))
    b = tape.block(tape.values[a] ** 2, lambda g, y, x: (2 * x * g,), a)
    c = tape.block(tape.values[a] + tape.values[b], lambda g, y, x, z: (g, g), a, b)
    assert np.allclose(tape.sweep({c: np.ones(2)})[a], 1 + 2 * np.array([1.0, 2.0]))


def test_a_reversal_within_lengths_is_an_involution():
    lengths, S = np.array([4, 2, 1]), 4
    t = np.arange(S)[:, None]
    rev = np.where(t < lengths, lengths - 1 - t, t)
    A = np.random.default_rng(0).normal(size=(S, 3, 2))
    assert np.array_equal(reordered(reordered(A, rev), rev), A)
    assert np.array_equal(reordered(A, True), A[::-1])


@pytest.mark.parametrize("model", [
    sr.Model("gru", D=2, H=2, K=3, architecture="many-to-one"),
    sr.StackedModel("lstm", D=2, H=2, K=3, num_layers=2, bidirectional=True, merge="mul"),
    sr.StackedModel("rnn-tanh", D=2, H=2, K=2, num_layers=2, bidirectional=True, merge="ave", residual=True,
                    loss="mse"),
], ids=repr)
def test_every_route_unrolls_any_model(model, torch64):
    from symrnn.oracles.torch_autograd import torch_loss_and_grads

    params, x, y, h0 = random_problem(model, T_in=3, seed=2)
    loss, grads = model.loss_and_grads(params, x, y, h0=h0)
    scalar_loss, scalar = ScalarOracle(model, x.shape[0], y.shape[0]).loss_and_grads(params, x, y, h0=h0)
    torch_loss, torch_grads = torch_loss_and_grads(model, params, x, y, h0=h0)
    assert abs(loss - scalar_loss) <= 1e-12 * max(1.0, abs(loss)) and abs(loss - torch_loss) <= 1e-12 * max(1.0, abs(loss))
    assert max_error(grads, scalar)[0] <= 1e-12 and max_error(grads, torch_grads)[0] <= 1e-12
    assert max_error(grads, central_differences(model, params, x, y, h0=h0))[0] <= 1e-6


def test_oracles_share_nothing_with_the_engine():
    """An oracle is an independent route: it imports neither the derivation nor the generated code."""
    for path in ORACLES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                assert not any(n.split(".")[-1] in ("bptt", "codegen", "tape") for n in names), (path.name, names)
