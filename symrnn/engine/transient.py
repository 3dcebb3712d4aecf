"""What the generated NumPy code keeps for the backward, and what it makes for one step only.

The forward of :mod:`symrnn.engine.codegen` stores every state, let and product at every step
(``(T, N, size)`` arrays), and the backward stores the adjoints its products send back.  For a
matrix cell (S6, mLSTM) most of these are full-size ``(N, H * N_state)`` arrays that the other
pass never needs as stored values: at N=32, T=100, H=128 and a state of 16 each is 52 MB per
pass, written to memory and read back at every step.  Three kinds are made here per step, or
once, in place of every step's copy:

* **parameter lets**: a let that reads vector parameters only (S6's ``A = -exp(A_log)``) is the
  same at every step and for every row of the batch: it is computed once before the loop, and
  the cache holds it as a read-only view over all steps (``np.broadcast_to``), so every reader
  of the cache (the decay study, the tangents, the verifier) sees the usual ``(T, N, size)``;
* **transient products**: the spreads and folds of a matrix state (the fixed groups,
  :mod:`symrnn.engine.structure`) are copies and sums of values the cache holds: the forward
  makes them for the step at hand and keeps none, the backward makes again the ones its
  coefficients read, and their adjoints live in one step's buffer (a fixed matrix has no
  gradient to sum after the loop);
* **accumulated sums**: an adjoint term kept only for a vector parameter's gradient (its sum
  over time and batch) is added into one ``(N, size)`` buffer at every step, not stored per step;
  when its coefficient is the same at every step and row (S6's ``A``), the adjoint alone is summed
  and the coefficient applied once after the loop;
* **batched products**: the adjoint sent back through a spread ``E`` of a term whose coefficient is
  another spread ``E' w`` is ``E^T (X * (E' w))``, in the shapes of ``C q`` and ``w^T X`` one batched
  matrix product (:func:`contractions`): neither the copy ``E' w`` nor the product is made.  The
  forward does the same for a let ``y = X * (E' w)`` read only through a fold ``F y`` and never by
  the backward (S6's ``sw``, in ``Cs = F_s sw``: :func:`contracted_lets`): ``y`` is neither made
  nor stored, and the cache (:class:`ForwardCache`) computes it at every step from what it holds
  when a reader asks for it.

Only the NumPy code does this (``lean``); the fused writer (:mod:`symrnn.engine.fused_print`)
keeps its own per-step layout.  The values are those of the stored layout (copies and the same
products), the sums up to their order of addition.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .structure import contraction_code, size_value
from .symbols import MatVec, Param, bar, linear_maps, parse


def parameter_lets(block) -> set:
    """The lets of ``block`` (their symbols at step t) whose right-hand side reads vector parameters
    and numbers only, and that no product reads (a product's vector has a row per batch entry)."""
    out = set()
    for e in block.equations:
        if e.kind != "let" or e.target in block.groups or linear_maps(e.rhs):
            continue
        if all(isinstance(s, Param) and s.name in block.params and not block.params[s.name].is_matrix
               for s in e.rhs.free_symbols):
            out.add(e.target)
    return out


def transient_groups(block) -> set:
    """The indices of the groups of spreads and folds done in the loop: made per step, never stored."""
    return {g.index for g in block.groups.values() if block._fixed_group(g) and not block._hoisted(g)}


def once_lines(block, printer):
    """Lines before the loop: each parameter let's value, and its cache entry over all steps."""
    from .codegen import code_name  # the module that calls this one
    lines = []
    for e in block.equations:
        if e.target in block.parameter_lets:
            base = parse(e.target)[0]
            lines.append(f"    {code_name(base, 'once')} = np.asarray({printer.doprint(e.rhs)}, dtype=dtype)")
            lines.append(f"    {code_name(base, 'C')} = np.broadcast_to({code_name(base, 'once')}, "
                         f"(T, N, {block.sizes[e.target]}))")
    return lines


def transient_product(block, g, source):
    """Lines of the loop making group ``g``'s spreads and folds of ``source`` for this step, as ``p<g>``
    (one array; with several matrices, one step's buffer ``P<g>`` of their stacked rows)."""
    if len(g.atoms) == 1:
        return block._fixed_lines(g, source, f"p{g.index}", transpose=False, bind=True)
    return [f"p{g.index} = P{g.index}"] + block._fixed_lines(g, source, f"p{g.index}", transpose=False)


def step_buffers(block, lean):
    """Lines before the loop: one step's buffer ``P<g>`` for each transient group of several matrices."""
    if not lean:
        return []
    return [f"    P{g.index} = empty('P{g.index}', (N, {block._total_rows(g)}), dtype)"
            for g in block.groups.values() if g.index in block.transient and len(g.atoms) > 1]


def step_only_buffers(block, writer) -> set:
    """The backward's adjoint buffers that only transient groups use: one step's, ``(N, size)``, the same
    array at every step.  A buffer holding a q that a carry may keep to the next step stays per step."""
    carried = {writer.q_of_term[id(t)] for ts in block.sweep.carries.values() for t in ts if t.matrix is None}
    users = {}
    for g in block.groups.values():
        users.setdefault(writer.group_buffer[g.index], []).append(g.index in block.transient)
    return {name for content, (name, _g) in writer.buffers.items()
            if all(users[name]) and not set(content) & carried}


def accumulators(block, writer) -> dict:
    """q -> its own buffer, for the q's kept only for a vector parameter's gradient (no input reads them):
    summed over the steps in one ``(N, size)`` buffer.  A q of an input let (:mod:`symrnn.engine.hoist`)
    stays per step: the product after the loop adds to it at every step."""
    hoisted = {g.vector for g in block.groups.values() if g.index in block.let_hoisted}
    kept = {writer.q_of_term[id(t)] for t in block.sweep.inputs if t.matrix is None}
    kept |= {q for (consumer, _coef), q in writer.q_names.items() if consumer in hoisted}
    return {q: buffer for q, (buffer, _size) in writer.extra.items() if q not in kept}


def contractions(block, writer) -> dict:
    """q -> ``(group, w, X, specs)`` for each q = ``X * (E' w)`` summed back through a transient spread ``E``,
    in a shape of :func:`~symrnn.engine.structure.contraction_code` (``specs``: those of ``E`` and ``E'``,
    its first two arguments): the sum is then one batched product, and the q is never made (nor ``E' w`` for it).  ``E' w`` is a factor of
    q's coefficient, or q's adjoint itself when that is the copy ``F^T w`` of a fold's adjoint.  The q must
    be that group's only one, in one step's buffer, read by no other group and by no gradient after the
    loop."""
    fixed = {name: spec.fixed for name, spec in block.params.items() if spec.fixed}
    owners = {}
    for g in block.groups.values():
        for q in writer._content(g):
            owners.setdefault(q, []).append(g)
    folded = _folded_adjoints(block, writer, fixed)
    out = {}
    for (y, c), q in writer.q_names.items():
        groups = owners.get(q, [])
        if len(groups) != 1 or writer.group_buffer[groups[0].index] not in writer.step_only:
            continue
        g = groups[0]
        if (g.index not in block.transient or len(g.atoms) != 1 or writer._content(g) != (q,)
                or q in writer.extra):
            continue
        first = fixed[g.atoms[0].args[0].name]
        for factor in (c.args if isinstance(c, sp.Mul) else (c,)):
            if isinstance(factor, MatVec) and factor.args[0].name in fixed:
                second = fixed[factor.args[0].name]
                if contraction_code(first, second, "", "") is not None:
                    out[q] = (g.index, factor.args[1], c / factor * bar(y), (first, second))
                    break
        else:  # bar y itself a copy F^T w (the adjoint of a fold): E^T (c * (F^T w))
            if y in folded and contraction_code(first, folded[y][1], "", "") is not None:
                w, second = folded[y]
                out[q] = (g.index, w, c, (first, second))
    return out


def _folded_adjoints(block, writer, fixed) -> dict:
    """y -> (the q it is copied from, the copy's spec) for each y whose adjoint is only ``F^T q``: every
    consumer of y reads it through one transient fold ``F y`` (S6's ``sw``: ``Cs = F_s sw``)."""
    from .codegen import EngineSymbol  # the module that calls this one
    out = {}
    for a in block.sweep.adjoints:
        g = block.groups.get(a.target)
        if (a.external or a.carried or not a.sends or any(t.matrix is None for t in a.sends) or g is None
                or g.index not in block.transient or len(g.atoms) != 1 or writer._content(g)[0] in writer.extra):
            continue
        kind, repeat, block_size = fixed.get(g.atoms[0].args[0].name, ("", 0, 0))[:3]
        if kind == "fold":
            out[a.target] = (EngineSymbol(writer._content(g)[0]), ("spread", repeat, block_size))
    return out


def contracted_lets(block, read) -> dict:
    """let y -> ``(fold group, X, w, specs)`` for each let ``y = X * (E' w)`` (``E'`` a transient spread,
    ``X`` free of products) that every equation reads only through one transient fold ``F y`` and the
    backward never reads (``read``: what its loop reads): ``F y`` is then one batched product
    (:func:`~symrnn.engine.structure.contraction_code`, ``specs``: those of ``F^T`` and ``E'``)."""
    fixed = {name: spec.fixed for name, spec in block.params.items() if spec.fixed}
    external = {str(e) for e in block.external}
    out = {}
    for e in block.equations:
        y, g = e.target, block.groups.get(e.target)
        if (e.kind != "let" or y in read or y in block.parameter_lets or parse(y)[0] in external or g is None
                or g.index not in block.transient or len(g.atoms) != 1 or not isinstance(e.rhs, sp.Mul)):
            continue
        fold = fixed.get(g.atoms[0].args[0].name, ("",))
        spreads = [f for f in e.rhs.args if isinstance(f, MatVec)]
        if fold[0] != "fold" or len(spreads) != 1 or spreads[0].args[0].name not in fixed:
            continue
        X = e.rhs / spreads[0]
        specs = (("spread",) + tuple(fold[1:3]), fixed[spreads[0].args[0].name])
        readers = [o for o in block.equations if y in o.rhs.free_symbols]
        if (X.atoms(MatVec) or contraction_code(*specs, "", "") is None
                or any(y in o.rhs.xreplace({g.atoms[0]: sp.Dummy()}).free_symbols for o in readers)):
            continue
        out[y] = (g.index, X, spreads[0].args[1], specs)
    return out


class ForwardCache(dict):
    """A forward pass's cache (states, lets, products by key) that computes a let the forward did not
    store (:func:`contracted_lets`) at every step, ``(T, N, size)``, when a reader first asks for it:
    its right-hand side on the stored states, lets and input, and the parameters (the decay study, the
    tangents and the verifier's error model read every let)."""

    def __init__(self, entries, params, X, sizes, block):
        super().__init__(entries)
        self._block, self._params, self._X, self._sizes = block, params, X, sizes

    def __missing__(self, key):
        from .jacobians import vector_function  # a user of the engine's printing, as this is
        block = self._block
        e = next((e for e in block.equations if e.kind == "let" and key == f"C_{parse(e.target)[0]}"), None)
        if e is None:
            raise KeyError(key)
        values = {block.input_symbol: self._X}
        for symbol in e.rhs.free_symbols:
            base, offset, _ = parse(symbol) or (None, 0, False)
            if base in block.states:
                values[symbol] = self[f"S_{base}"][:-1] if offset == -1 else self[f"S_{base}"][1:]
            elif base in block.lets:
                values[symbol] = self[f"C_{base}"]
            elif isinstance(symbol, Param) and not block.params[symbol.name].is_matrix:
                values[symbol] = self._params[symbol.name]
        shape = self._X.shape[:2] + (size_value(block.sizes[e.target], self._sizes),)
        value = self[key] = np.ascontiguousarray(np.broadcast_to(vector_function(e.rhs)(values, self._params), shape))
        return value
