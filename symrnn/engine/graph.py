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
state).  The same :class:`~symrnn.engine.bptt.Term` objects that the generated code
uses label the edges, moved to their step with :func:`~symrnn.engine.symbols.shift`.
"""
from __future__ import annotations

from .bptt import assemble
from .symbols import at_step, parse


def _node(symbol, t):
    base, offset, _ = parse(symbol)
    return (base, t + offset)


def unroll(model, T_in, T_out=None):
    """The unrolled graph of ``model`` for inputs of length ``T_in`` (and targets of ``T_out``)."""
    T_out = T_in if T_out is None else T_out
    sched = model.architecture.schedule(T_in, T_out)
    cell = model.cell
    step = assemble(cell.equations, cell.states, cell.input_symbol)
    readout = model.readout
    out = assemble(readout.equations, (), readout.input_symbol) if readout is not None else assemble([], ())
    import networkx as nx  # here, not at the top: a verifier's run never draws the graph (0.2 s of imports)

    g = nx.DiGraph(model=repr(model), T=sched.T)
    for s in cell.states:
        g.add_node((s, 0), kind="initial state")
    for t in range(1, sched.T + 1):
        if t - 1 in sched.input_steps:
            g.add_node((parse(cell.input_symbol)[0], t), kind="input")
        _add_terms(g, step, t, inputs=t - 1 in sched.input_steps)
        if t - 1 in sched.output_steps:
            _add_terms(g, out, t)
            loss_node = ("L", t)
            g.add_node(loss_node, kind="loss")
            source = (model.logits if model.readout is not None else cell.output_state, t)
            g.add_edge(source, loss_node, kind="loss", jacobian=None, term=None)
    for node, data in g.nodes(data=True):
        data.setdefault("kind", "parameter" if node[1] is None else "quantity")
    return g


def _add_terms(g, sweep, t, inputs=True):
    """One edge per term of the sweep at step ``t`` (the input's only if the step reads one)."""
    for u, term in sweep.sent_to():
        if inputs or u != sweep.input_symbol:
            kind = "linear" if term.matrix is not None else "elementwise"
            g.add_edge(_node(u, t), _node(term.consumer, t), kind=kind, jacobian=term.jacobian(at_step(term.coef, t)),
                       term=term, t=t)
    for name, terms in sweep.params.items():
        for term in terms:
            g.add_node((name, None), kind="parameter")
            g.add_edge((name, None), _node(term.consumer, t), kind="parameter", jacobian=None, term=term, t=t)


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
    import networkx as nx

    return list(reversed(list(nx.topological_sort(graph))))
