"""The unrolled computation graph as a networkx ``DiGraph``.

Nodes are ``(name, t)`` for every quantity at every step (``("x", 1)``,
``("a", 1)``, ``("h", 1)``, ``("o", 1)``, ``("L", 1)``, and ``("h", 0)`` for the
initial state) and ``(name, None)`` for parameters.  Every edge ``u -> v``
carries the local partial derivative ``dv/du`` of its step:

* ``kind="elementwise"``: ``jacobian = Diag(coef)``;
* ``kind="linear"`` (``v`` reads ``P u``): ``jacobian = Diag(coef) P``;
* ``kind="parameter"``: ``u`` is a parameter; ``term`` holds what the
  gradient collects (``Outer(coef bar v, w)`` or ``coef bar v``).

Steps are numbered from 1 as in the derivations (``h_0`` is the initial
state).  The same :class:`~symrnn.bptt.Term` objects that the generated code
uses label the edges, moved to their step with :func:`~symrnn.symbols.shift`.
"""
from __future__ import annotations

import networkx as nx

from .bptt import local_terms
from .symbols import Param, at_step, parse


def _node(symbol, t):
    base, offset, _ = parse(symbol)
    return (base, t + offset)


def unroll(model, T_in, T_out=None):
    """The unrolled graph of ``model`` for inputs of length ``T_in`` (and targets of ``T_out``)."""
    T_out = T_in if T_out is None else T_out
    sched = model.architecture.schedule(T_in, T_out)
    cell = model.cell
    step_terms = local_terms(cell.equations)
    out_equations = list(model.readout.equations) if model.readout is not None else []
    out_terms = local_terms(out_equations)
    g = nx.DiGraph(model=repr(model), T=sched.T)
    for s in cell.states:
        g.add_node((s, 0), kind="initial state")
    for t in range(1, sched.T + 1):
        if t - 1 in sched.input_steps:
            g.add_node((parse(cell.input_symbol)[0], t), kind="input")
        _add_terms(g, step_terms, t, skip_inputs=t - 1 not in sched.input_steps, input_symbol=cell.input_symbol)
        if t - 1 in sched.output_steps:
            _add_terms(g, out_terms, t)
            loss_node = ("L", t)
            g.add_node(loss_node, kind="loss")
            source = (model.logits if model.readout is not None else cell.output_state, t)
            g.add_edge(source, loss_node, kind="loss", jacobian=None, term=None)
    for node, data in g.nodes(data=True):
        data.setdefault("kind", "parameter" if node[1] is None else "quantity")
    return g


def _add_terms(g, terms, t, skip_inputs=False, input_symbol=None):
    for u, term_list in terms.items():
        if skip_inputs and u == input_symbol:
            continue
        for term in term_list:
            v = _node(term.consumer, t)
            coef = at_step(term.coef, t)
            if isinstance(u, Param):
                g.add_node((u.name, None), kind="parameter")
                g.add_edge((u.name, None), v, kind="parameter", jacobian=None, term=term, t=t)
                continue
            kind = "linear" if term.matrix is not None else "elementwise"
            g.add_edge(_node(u, t), v, kind=kind, jacobian=term.jacobian(coef), term=term, t=t)


def adjoint_recurrence_from_graph(graph, node):
    """The adjoint of ``node`` as read off the graph: the sum over its out-edges
    of ``jacobian^T bar(successor)``, as ``[(successor, jacobian), ...]``.

    A reverse sweep over the unrolled graph visits nodes in reverse
    topological order and accumulates exactly these terms (see
    :func:`reverse_order`).
    """
    return [(v, data["jacobian"]) for _, v, data in graph.out_edges(node, data=True)
            if data["kind"] != "parameter"]


def reverse_order(graph):
    """Nodes in the order a reverse sweep visits them (loss first)."""
    return list(reversed(list(nx.topological_sort(graph))))
