"""The unrolled networkx graph: its shape, and the adjoints read off it."""
import networkx as nx
import sympy as sp

import symrnn as sr
from symrnn.engine.graph import adjoint_recurrence_from_graph, reverse_order, unroll


def test_unrolled_graph_nodes_and_edges():
    g = unroll(sr.Model("rnn-tanh", D=2, H=3, K=2), 4)
    assert nx.is_directed_acyclic_graph(g)
    for t in range(1, 5):
        for name in ("x", "a", "h", "o", "L"):
            assert (name, t) in g
    assert ("h", 0) in g and g.nodes[("W", None)]["kind"] == "parameter"
    assert g.edges[("h", 2), ("a", 3)]["jacobian"] == sp.Symbol("W", commutative=False)
    assert reverse_order(g)[0][0] == "L"


def test_graph_size_is_linear_in_T():
    m = sr.Model("lstm", D=2, H=2, K=2)
    sizes = [unroll(m, T).number_of_edges() for T in (5, 10, 20)]
    assert sizes[2] - sizes[1] == 2 * (sizes[1] - sizes[0])


def test_adjoint_read_off_the_graph_matches_the_derivation():
    """The successors of h_t in the unrolled graph are the terms of bar h[t]."""
    m = sr.Model("gru", D=2, H=2, K=2)
    g = unroll(m, 5)
    successors = {v for v, _ in adjoint_recurrence_from_graph(g, ("h", 3))}
    assert successors == {("o", 3), ("r", 4), ("z", 4), ("n", 4), ("h", 4)}
    rhs = {a.lhs: a.rhs for a in m.derive().adjoints}[sp.Symbol("bar h[t]")]
    names = {str(s) for s in rhs.free_symbols if str(s).startswith("bar")}
    assert names == {"bar o[t]", "bar r[t+1]", "bar z[t+1]", "bar n[t+1]", "bar h[t+1]"}


def test_architectures_shape_the_graph():
    m = sr.Model("rnn-tanh", D=1, H=1, K=1, architecture="many-to-many-delayed")
    g = unroll(m, 3, 2)
    assert [n for n in g if n[0] == "x"] == [("x", 1), ("x", 2), ("x", 3)]
    assert sorted(n for n in g if n[0] == "L") == [("L", 4), ("L", 5)]
