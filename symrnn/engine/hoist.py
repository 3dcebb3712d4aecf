"""Products of lets that read only the input, done for all steps at once outside the loops.

A let ``u_t = W_u x_t (+ b_u)`` (Mamba's input projection in S6) is known at every step before
the forward loop starts: it is made of products of the input, which the generated code already
does for all steps at once.  A product ``P u_t`` of such a let is then one product of the
``(T N) x size`` matrix of all steps, before the loop, in place of one small product per step; and
in the backward loop the adjoint it sends back to ``u_t`` goes only to the gradients of ``W_u``,
``b_u`` and the input (``u`` reads no state), so that product too is done once, after the loop, and
added to the buffers that hold ``dL/du_t``.  Per-step products of a few dozen rows are slow when
the BLAS runs them on several threads: the threads wake and wait at every step.

Only a let whose right-hand side is a sum of products of the input with trained matrices and of
vector parameters qualifies: its adjoint then reaches its terms with coefficient 1.  Products by
the fixed spreads and folds of matrix states stay in the loop (they are copies and sums).
"""
from __future__ import annotations

import sympy as sp

from .symbols import MatVec, Param


def input_lets(block) -> set:
    """The lets of ``block`` (their symbols at step t) that are sums of trained products of the input
    and of vector parameters."""
    out = set()
    for e in block.equations:
        if e.kind != "let":
            continue
        terms = e.rhs.args if isinstance(e.rhs, sp.Add) else (e.rhs,)
        if all(_reads_only_the_input(block, term) for term in terms):
            out.add(e.target)
    return out


def _reads_only_the_input(block, term):
    if isinstance(term, MatVec):
        return term.args[1] == block.input_symbol and not block.params[term.args[0].name].fixed
    return isinstance(term, Param) and term.name in block.params and not block.params[term.name].is_matrix


def hoisted_groups(block) -> set:
    """The indices of the groups whose products are done outside the loops: trained products of an input let."""
    lets = input_lets(block)
    return {g.index for g in block.groups.values() if g.vector in lets and not block._fixed_group(g)}


def forward_lines(block) -> list:
    """Lines before the forward loop: ``P<g>``, the stacked products of each hoisted group at every step,
    from the let's value at every step (the input's products ``P<k>`` already computed)."""
    names = {}
    for g in block.groups.values():
        if g.vector == block.input_symbol:
            for m, (a, b) in zip(g.atoms, block._slices(g)):
                names[m] = f"P{g.index}" if len(g.atoms) == 1 else f"P{g.index}[..., {a}:{b}]"
    from .codegen import StepPrinter  # the module that calls this one
    printer = StepPrinter(names)
    lines = []
    for g in block.groups.values():
        if g.index in block.let_hoisted:
            rhs = next(e.rhs for e in block.equations if e.target == g.vector)
            value = f"np.broadcast_to({printer.doprint(rhs)}, (T, N, {block.sizes[g.vector]}))"
            lines.append(f"    P{g.index} = ({value}.reshape(T * N, -1) @ G{g.index}).reshape(T, N, -1)")
    return lines


def backward_lines(writer) -> list:
    """Lines after the backward loop: each hoisted group's product of its adjoints at every step, added
    to every buffer slot of the adjoint's terms (their q's equal ``dL/du_t``: coefficient 1)."""
    block, lines = writer.block, []
    for g in block.groups.values():
        if g.index not in block.let_hoisted:
            continue
        lines.append(f"    R{g.index} = ({writer.group_buffer[g.index]}.reshape(T * N, -1) "
                     f"@ {block._stack(g, transpose=False)}).reshape(T, N, -1)")
        for (consumer, coef), q in writer.q_names.items():
            if consumer != g.vector:
                continue
            assert coef == 1 and writer.slots.get(q), (g.vector, coef, q)
            for slot in writer.slots[q]:
                lines.append(f"    {slot.replace('[t]', '').replace('[t, ', '[:, ')} += R{g.index}")
    return lines

