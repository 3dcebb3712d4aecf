"""The backward function of a block's generated NumPy code (:class:`BackwardWriter`).

:mod:`symrnn.engine.codegen` writes the forward and compiles both; this module writes the reverse
sweep from the adjoint terms of :func:`symrnn.engine.bptt.local_terms`: one local per term, the
stacked products that send adjoints back, and the gradients after the loop.
"""
from __future__ import annotations

import sympy as sp

from .codegen import EngineSymbol, StepPrinter, code_name
from .hoist import backward_lines
from .structure import contraction_code
from .symbols import MatVec, Param, bar, parse, tsym
from .transient import accumulators, contractions, step_buffers, step_only_buffers, transient_product


class BackwardWriter:
    """Writes the backward function of one block.

    Every term ``coef * bar y`` gets one local ``q<k>`` (``coef`` forward-only,
    shared through ``cse``).  The q's of each product group are stored per
    step in one buffer ``Q<k>`` (groups with the same q's share it): in the
    loop the buffer feeds the stacked product ``Q[t] @ G`` that sends the
    adjoint back to the group's vector, after the loop it gives the gradients
    of the group's matrices in one product.  Vector parameters sum their q's
    over time and batch, from a group buffer when one holds them.  ``lean``: the NumPy code's buffers
    (:mod:`symrnn.engine.transient`; the fused writer keeps every buffer per step).
    """

    def __init__(self, block, lean=False):
        self.block, self.lean = block, lean
        self.printer = StepPrinter(block._atom_names())
        self.all_terms = [t for ts in block.terms.values() for t in ts]
        self.q_names, self.q_of_term = {}, {}
        for t in self.all_terms:  # one q per (consumer, coefficient), named in the order of the terms
            key = (t.consumer, t.coef)
            self.q_names.setdefault(key, f"q{len(self.q_names)}")
            self.q_of_term[id(t)] = self.q_names[key]
        self.buffers, self.group_buffer = {}, {}
        for g in block.groups.values():
            content = self._content(g)
            if content not in self.buffers:
                self.buffers[content] = (f"Q{len(self.buffers)}", g)
            self.group_buffer[g.index] = self.buffers[content][0]
        self.step_only = step_only_buffers(block, self) if lean else set()  # one step's buffers
        self.located = {}  # q -> (group buffer, slice of its columns or None) holding its values at all steps
        for content, (name, g) in self.buffers.items():
            for q, (a, b) in zip(content, block._slices(g) if name not in self.step_only else ()):
                self.located.setdefault(q, (name, f"{a}:{b}" if len(content) > 1 else None))
        self.extra = {}  # q -> own buffer, for q's of vector parameters or inputs found in no group buffer
        for p, spec in block.params.items():
            if not spec.is_matrix:
                for t in block.sweep.params[p]:
                    self._own_buffer(self.q_of_term[id(t)], spec.shape[0])
        for t in block.sweep.inputs:
            if t.matrix is None:
                self._own_buffer(self.q_of_term[id(t)], block.sizes[block.input_symbol])
        self.contracted = contractions(block, self) if lean else {}  # q -> one batched product in its place
        self.coefs = sorted({c for (_y, c), q in self.q_names.items() if not c.is_number and q not in self.contracted},
                            key=sp.default_sort_key)
        self.replacements, reduced = sp.cse(self.coefs, symbols=sp.numbered_symbols("k", cls=EngineSymbol),
                                            order="none")
        coef_name = dict(zip(self.coefs, reduced))
        self.q_expr = {name: coef_name.get(c, c) * bar(y) for (y, c), name in self.q_names.items()}
        self.accumulators = accumulators(block, self) if lean else {}  # q -> its sum over time, (N, size)
        self.slots = self._slots()  # q -> the per-step places it is stored in (computed into the first)
        self.factored = self._factored()  # accumulated q -> its coefficient, applied once after the loop
        self.emitted_q = set()
        self.fixed_adjoints = []  # per transposed group of spreads and folds: the lines computing it
        self.shared_names = sp.numbered_symbols("w", cls=EngineSymbol)  # factors shared by the q's of one consumer

    def _slots(self):
        slots = {}
        for content, (name, g) in self.buffers.items():
            step = "" if name in self.step_only else "t"  # one step's buffer: the same array at every step
            if len(content) == 1:
                slots.setdefault(content[0], []).append(f"{name}[{step}]" if step else name)
            else:
                for q, (a, b) in zip(content, self.block._slices(g)):
                    slots.setdefault(q, []).append(f"{name}[{step + ', ' if step else ''}:, {a}:{b}]")
        for q, (buffer, _) in self.extra.items():
            if q not in self.accumulators:
                slots.setdefault(q, []).append(f"{buffer}[t]")
        return slots

    def _factored(self):
        """The accumulated q's (no slot) whose coefficient is the same at every step and for every row (vector
        parameters, lets of them): the adjoint alone is summed in the loop, times the coefficient after it."""
        block, out = self.block, {}
        for (y, c), q in self.q_names.items():
            if q not in self.accumulators or q in self.slots or c.is_number or c.atoms(MatVec):
                continue
            if all(s in block.parameter_lets or (isinstance(s, Param) and s.name in block.params
                                                 and not block.params[s.name].is_matrix) for s in c.free_symbols):
                out[q] = c
        return out

    def _content(self, g):
        return tuple(self.q_of_term[id(self.block._term(g.vector, m))] for m in g.atoms)

    def _own_buffer(self, q, size):
        if q not in self.located and q not in self.extra:
            self.extra[q] = (f"B_{q}", size)

    def source(self):
        lines = self._header() + ["    for t in range(T - 1, -1, -1):"]
        lines += ["        " + line for line in self._step()]
        return "\n".join(lines + self._gradients()) + "\n"

    def _header(self):
        block = self.block
        lines = ["def backward(params, X, cache, EXT, dS, sizes, empty=fresh):",
                 "    T, N = X.shape[0], X.shape[1]",
                 "    dtype = X.dtype"]
        lines += block._size_lines()
        lines += [f"    {code_name(Param(p))} = params[{p!r}]" for p in block.params]
        cached = ([(code_name(s, "S"), f"S_{s}") for s in block.states]
                  + [(code_name(b, "C"), f"C_{b}") for b in block.lets
                     if not (self.lean and tsym(b) in block.contracted_lets)]
                  + [(f"P{g.index}", f"P{g.index}") for g in block.groups.values()
                     if not (self.lean and g.index in block.transient)])
        lines += [f"    {local} = cache[{key!r}]" for local, key in cached] + step_buffers(block, self.lean)
        lines += [f"    G{g.index} = {block._stack(g, transpose=False)}"
                  for g in block.groups.values() if not block._hoisted(g)]
        lines += [f"    {name} = empty('{name}', ({'' if name in self.step_only else 'T, '}N, {block._total_rows(g)}), "
                  f"dtype)" for name, g in self.buffers.values()]
        lines += [f"    {name} = np.zeros((N, {size}), dtype=dtype)" if q in self.accumulators else
                  f"    {name} = empty('{name}', (T, N, {size}), dtype)" for q, (name, size) in self.extra.items()]
        lines += [f"    {code_name(s, 'carry')} = dS[{s!r}]" for s in block.states]
        return lines

    def needed(self):
        """``(symbols and products the loop reads, the transient groups it makes again)``."""
        block, needed = self.block, set()
        for c in self.coefs + [w * X for _g, w, X, _specs in self.contracted.values()]:
            needed |= c.free_symbols | c.atoms(MatVec)
        remade = [g for g in block.groups.values() if self.lean and g.index in block.transient
                  and any(m in needed for m in g.atoms)]  # the spreads and folds the coefficients read
        return needed | {g.vector for g in remade}, remade

    def _step(self):
        """The body of the backward loop: load, coefficients, adjoints, stores."""
        block, body = self.block, []
        needed, remade = self.needed()
        if block.input_symbol in needed:
            body.append(f"{code_name(block.input_symbol)} = X[t]")
        for s in block.states:
            for off, idx in ((-1, "t"), (0, "t + 1")):
                if tsym(s, off) in needed:
                    body.append(f"{code_name(tsym(s, off))} = {code_name(s, 'S')}[{idx}]")
        once = block.parameter_lets if self.lean else set()  # the same at every step: one row of the cache's
        body += [f"{code_name(tsym(b))} = {code_name(b, 'C')}[{'0, 0' if tsym(b) in once else 't'}]"
                 for b in block.lets if tsym(b) in needed]
        for g in block.groups.values():
            if g in remade:
                body += transient_product(block, g, self.printer._print(g.vector))
                body += block._unpack(g, block._atom_names(), source=f"p{g.index}")
            elif any(m in needed for m in g.atoms):
                body += block._unpack(g, block._atom_names(), source=f"P{g.index}[t]")
        body += [f"{sym} = {self.printer.doprint(expr)}" for sym, expr in self.replacements]
        for a in block.sweep.adjoints:
            body += self._assigned(code_name(bar(a.target)), a.target, a.sends, a.external, a.carried)
            body += self._qs_of(a.target)
        for s, ts in block.sweep.carries.items():
            body += self._assigned(code_name(s, "carry"), tsym(s, -1), ts)
        return body

    def _assigned(self, name, u, sends, external=False, carried=False):
        """``name = bar u``, after the lines of the transposed spreads and folds it adds up."""
        before, rhs = len(self.fixed_adjoints), self._adjoint_of(u, sends, external, carried)
        return [line for lines in self.fixed_adjoints[before:] for line in lines] + [f"{name} = {rhs}"]

    def _qs_of(self, y):
        """Compute the q's of consumer ``y`` (sharing their common factors through ``cse``):
        into their buffer slot when they have one."""
        names = [name for (consumer, _), name in self.q_names.items()
                 if consumer == y and name not in self.emitted_q and name not in self.contracted]
        self.emitted_q.update(names)
        summed = [f"{self.accumulators[name]} += {self.printer.doprint(bar(y))}" for name in names
                  if name in self.factored]
        names = [name for name in names if name not in self.factored]
        shared, exprs = sp.cse([self.q_expr[n] for n in names], symbols=self.shared_names, order="none")
        lines = [f"{sym} = {self.printer.doprint(expr)}" for sym, expr in shared]
        for name, expr in zip(names, exprs):
            slots = [slot for slot in self.slots.get(name, []) if not (expr.is_Symbol and slot in self.step_only)]
            if not slots:  # (an adjoint itself needs no copy in one step's buffer)
                lines.append(f"{name} = {self.printer.doprint(expr)}")
                continue
            lines += [f"{name} = {slots[0]}"] + self.printer.into(name, expr)
            lines += [f"{slot} = {name}" for slot in slots[1:]]
        return lines + [f"{self.accumulators[name]} += {name}" for name in names if name in self.accumulators] + summed

    def _adjoint_of(self, u, sends, external=False, carried=False):
        """Code of ``bar u`` at this step: its elementwise terms' q's, then the stacked product of
        its group (the terms sent back through ``P u``), then the outside array and the carry."""
        block = self.block
        parts = [self.q_of_term[id(t)] for t in sends if t.matrix is None]
        if any(t.matrix is not None for t in sends) and not block._hoisted(block.groups[u]):  # hoisted: after the loop
            g = block.groups[u]
            name, content = self.group_buffer[g.index], self._content(g)
            source = content[0] if len(content) == 1 else (name if name in self.step_only else f"{name}[t]")
            contracted = [q for q, (group, *_rest) in self.contracted.items() if group == g.index]
            if contracted:  # the sum of an elementwise product with a copy, as one batched product
                _g, w, X, specs = self.contracted[contracted[0]]
                parts.append(f"a{len(self.fixed_adjoints)}")
                code = contraction_code(*specs, self.printer.doprint(X), self.printer._print(w))
                self.fixed_adjoints.append([f"{parts[-1]} = {code}"])
            elif block._fixed_group(g):  # the transposes of spreads and folds: sums and copies
                parts.append(f"a{len(self.fixed_adjoints)}")
                self.fixed_adjoints.append(block._fixed_lines(g, source, parts[-1], transpose=True))
            else:
                parts.append(f"({content[0]} @ G{g.index})" if len(content) == 1 else f"({name}[t] @ G{g.index})")
        base = parse(u)[0]
        if external:
            parts.append(f"EXT[{base!r}][t]")
        if carried:
            parts.append(code_name(base, "carry"))
        if parts:
            return " + ".join(parts)
        return f"np.zeros((N, {block.sizes[u]}), dtype=dtype)"  # nothing reads u

    def _gradients(self):
        """After the loop: each group's matrices in one product, vectors as sums, dX."""
        block = self.block
        lines, pieces = ["    grads = {}"] + backward_lines(self), {}
        for g in block.groups.values():
            if block._fixed_group(g):  # spreads and folds are not trained
                continue
            values = block._stacked_values(g.vector)
            lines.append(f"    dG{g.index} = {self.group_buffer[g.index]}.reshape(T * N, -1).T @ {values}.reshape(T * N, -1)")
            for m, (a, b) in zip(g.atoms, block._slices(g)):
                pieces.setdefault(m.args[0].name, []).append(f"dG{g.index}" if len(g.atoms) == 1 else f"dG{g.index}[{a}:{b}]")
        lines += [f"    grads[{P!r}] = {' + '.join(ps)}" for P, ps in pieces.items()]
        lines += [f"    grads[{P!r}] = np.zeros(params[{P!r}].shape, dtype=dtype)"  # declared, never used
                  for P, spec in block.params.items() if spec.is_matrix and P not in pieces and not spec.fixed]
        summed = set()  # each buffer is summed over time and batch once, then sliced
        for p, spec in block.params.items():
            if spec.is_matrix:
                continue
            sums = []
            for t in block.sweep.params[p]:
                buffer, columns = self._location(self.q_of_term[id(t)])
                if buffer not in summed:
                    summed.add(buffer)
                    whole = buffer if buffer in self.accumulators.values() else f"{buffer}.reshape(T * N, -1)"
                    lines.append(f"    sum_{buffer} = {whole}.sum(axis=0){self._factor_of(buffer)}")
                sums.append(f"sum_{buffer}" + (f"[{columns}]" if columns else ""))
            lines.append(f"    grads[{p!r}] = {' + '.join(sums) if sums else f'np.zeros(params[{p!r}].shape, dtype=dtype)'}")
        dx = []
        if block.input_symbol in block.groups:
            g = block.groups[block.input_symbol]
            dx.append(f"({self.group_buffer[g.index]}.reshape(T * N, -1) @ {block._stack(g, transpose=False)})"
                      f".reshape(T, N, -1)")
        for t in block.sweep.inputs:
            if t.matrix is None:
                buffer, columns = self._location(self.q_of_term[id(t)])
                dx.append(f"{buffer}[..., {columns}]" if columns else buffer)
        lines.append(f"    dX = {' + '.join(dx) if dx else 'np.zeros_like(X)'}")
        lines.append("    return grads, dX, {" + ", ".join(f"{s!r}: {code_name(s, 'carry')}" for s in block.states) + "}")
        return lines

    def _factor_of(self, buffer):
        """`` * coefficient`` of a factored accumulator (its parameter lets read from the cache's one row)."""
        for q, c in self.factored.items():
            if self.accumulators[q] == buffer:
                once = {b: f"{code_name(parse(b)[0], 'C')}[0, 0]" for b in self.block.parameter_lets}
                return f" * ({StepPrinter(once).doprint(c)})"
        return ""

    def _location(self, q):
        """``(buffer, columns)`` of q's values at all steps (``columns`` None: the whole buffer)."""
        return self.located[q] if q in self.located else (self.extra[q][0], None)
