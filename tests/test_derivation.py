"""The symbolic derivation: the textbook equations, read back as SymPy objects."""
import sympy as sp

import symrnn as sr
from symrnn.engine.bptt import Diag
from symrnn.engine.symbols import MatTVec, MatVec, Outer, Param, tsym


def s(name, offset=0, bar=False):
    return tsym(name, offset, bar)


def test_vanilla_rnn_adjoint_recurrence():
    d = sr.Model("rnn-tanh", D=2, H=3, K=2).derive()
    adj = {a.lhs: a.rhs for a in d.adjoints}
    W, V = Param("W"), Param("V")
    assert adj[s("o", bar=True)] == s("yhat") - s("y")
    assert adj[s("h", bar=True)] == MatTVec(V, s("o", bar=True)) + MatTVec(W, s("a", 1, bar=True))
    assert adj[s("a", bar=True)] == s("h", bar=True) * (1 - s("h") ** 2)
    t, T = sp.Symbol("t", integer=True, positive=True), sp.Symbol("T", integer=True, positive=True)
    assert d.gradients["W"] == sp.Sum(Outer(s("a", bar=True), s("h", -1)), (t, 1, T))
    assert d.gradients["U"] == sp.Sum(Outer(s("a", bar=True), s("x")), (t, 1, T))
    assert d.gradients["b"] == sp.Sum(s("a", bar=True), (t, 1, T))
    assert d.step_jacobians[("h", "h")] == Diag(1 - s("h") ** 2) * sp.Symbol("W", commutative=False)


def test_relu_and_sigmoid_derivatives():
    a = s("a")
    relu = {x.lhs: x.rhs for x in sr.Model("rnn-relu", D=1, H=1, K=1).derive().adjoints}
    assert relu[s("a", bar=True)] == s("h", bar=True) * sr.step(a)
    sig = {x.lhs: x.rhs for x in sr.Model("rnn-sigmoid", D=1, H=1, K=1).derive().adjoints}
    assert sig[s("a", bar=True)] == s("h", bar=True) * s("h") * (1 - s("h"))


def test_lstm_cell_state_has_its_own_adjoint():
    d = sr.Model("lstm", D=2, H=3, K=2).derive()
    adj = {a.lhs: a.rhs for a in d.adjoints}
    cbar = adj[s("c", bar=True)]
    assert s("c", 1, bar=True) * s("f", 1) in cbar.args  # the cell-state path back through f
    assert d.step_jacobians[("c", "c")] == Diag(s("f"))


def test_gru_conventions_differ_where_they_should():
    after = {a.lhs: a.rhs for a in sr.Model("gru", D=1, H=1, K=1).derive().adjoints}
    chung = {a.lhs: a.rhs for a in sr.Model("gru-chung", D=1, H=1, K=1).derive().adjoints}
    assert after[s("n", bar=True)] == s("h", bar=True) * (1 - s("z"))
    assert chung[s("n", bar=True)] == s("h", bar=True) * s("z")
    before = sr.Model("gru-reset-before", D=1, H=1, K=1).derive()
    assert "b_hn" not in before.gradients and "b_hn" in sr.Model("gru", D=1, H=1, K=1).derive().gradients


def test_upstream_loss_feeds_the_state_adjoint():
    d = sr.Model("rnn-tanh", D=1, H=1, loss="upstream").derive()
    adj = {a.lhs: a.rhs for a in d.adjoints}
    assert s("g") in adj[s("h", bar=True)].args
    assert "V" not in d.gradients


def test_with_term_makes_a_mutated_copy():
    d = sr.Model("rnn-tanh", D=1, H=1, K=1).derive()
    target = s("a", bar=True)
    mutated = d.with_term(target, s("h", bar=True))
    assert {a.lhs: a.rhs for a in mutated.adjoints}[target] == s("h", bar=True)
    assert {a.lhs: a.rhs for a in d.adjoints}[target] != s("h", bar=True)


def test_matvec_atoms_never_reach_sympy_diff():
    """The forward equations hold MatVec atoms; no Derivative object survives anywhere."""
    d = sr.Model("gru", D=2, H=2, K=2).derive()
    for a in d.adjoints:
        assert not a.rhs.has(sp.Derivative)
    assert any(a.rhs.has(MatVec) for a in d.adjoints)  # the GRU's reset-after coefficient
