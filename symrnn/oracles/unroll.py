"""The one unrolling of a wiring into scalar lines, and the reverse accumulation over them.

:class:`Unroller` turns a model's recurrent :meth:`parts` (each cell over time in its direction, each
merge or residual sum) into *template* lines: scalar SymPy assignments whose names carry the step as a
placeholder (``h__{t}_1``, ``h__{tm1}_1``).  A program is a list of ``(template lines, fill)`` steps;
:meth:`Unroller.reverse_accumulation` prints it and its reverse sweep (each local derivative by
``sympy.diff`` of one term), :func:`program_source` the function to compile.  Both scalar oracles
(:mod:`symrnn.oracles.scalar`, :mod:`symrnn.oracles.seq2seq`) are built from these pieces.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import sympy as sp

from ..engine.functions import derivative, maximum
from ..engine.structure import fixed_values
from ..engine.symbols import MatVec, Param, parse, tsym

#: The merges of two directions as scalar expressions, written independently of :data:`symrnn.models.wiring.MERGES`
#: (concat merely lists the components).
SCALAR_MERGES = {
    "sum": lambda f, b: f + b,
    "ave": lambda f, b: sp.Rational(1, 2) * (f + b),
    "mul": lambda f, b: f * b,
    "max": lambda f, b: maximum(f, b),
}

#: The name of the loss's scale (a constant of the program: no adjoint).
SCALE = "_scale"


def ident(key):
    """A parameter key or a part's prefix as a Python identifier (``l0.bwd.W`` -> ``l0_bwd_W``)."""
    return key.replace(".", "_")


def parameter_symbols(shapes) -> dict:
    """``{key: object array of Symbols}``, one symbol per entry (``l0_fwd_W__w0_1``)."""
    return {name: np.array([sp.Symbol(f"{ident(name)}__w" + "_".join(map(str, idx))) for idx in np.ndindex(*shape)],
                           dtype=object).reshape(shape)
            for name, shape in shapes.items()}


class Unroller:
    """Scalar template lines of the recurrent parts of a wiring (cells, merges, residual sums).

    ``sizes`` are the model's (``D`` becomes each cell part's input width), ``param_symbols`` come from
    :func:`parameter_symbols`, ``state_names`` order :attr:`state0_names`, ``input_name`` names the
    input's symbols (``x__{t}_j``) and ``diff(expr, symbol)`` takes a local derivative.  After
    :meth:`unroll`, :attr:`templates` maps a template key to its lines, :attr:`outputs` a part's name
    to the symbols it outputs at step ``{t}``, and :attr:`state0_names` a state to every cell part's
    initial state (a backward direction's is step ``T + 1``).
    """

    def __init__(self, sizes, param_symbols, state_names, input_name, diff=derivative):
        self.sizes, self.param_symbols, self.input_name, self._diff = sizes, param_symbols, input_name, diff
        self.templates, self.outputs = {}, {}
        self.state0_names = {s: [] for s in state_names}

    def local_derivatives(self, expr):
        """``[(u, d expr / d u), ...]``: ``sympy.diff`` of each term that contains ``u`` (none for the
        scale and the targets ``_y__``, the program's constants)."""
        by_symbol = defaultdict(list)
        for term in sp.Add.make_args(expr):
            for u in term.free_symbols:
                by_symbol[u].append(term)
        sums = ((u, sp.Add(*[self._diff(term, u) for term in by_symbol[u]]))
                for u in sorted(by_symbol, key=lambda s: s.name) if u.name != SCALE and not u.name.startswith("_y__"))
        return [(u, d) for u, d in sums if d != 0]

    @staticmethod
    def line(name, expr):
        """One line ``(Symbol(name), expr)``."""
        return sp.Symbol(name), expr

    def scalarize(self, equations, env, rows_of, prefix_of, params):
        """Scalarize equations (``env``: symbol -> its components, extended with every target):
        ``[(target, expr), ...]``."""
        lines = []
        for eq in equations:
            prefix = prefix_of(eq)
            components = []
            for i in range(rows_of(eq)):
                def expand(P, v, i=i):
                    return sp.Add(*[w * vj for w, vj in zip(params[P.name][i], env[v])])
                scalar = eq.rhs.replace(MatVec, expand)
                mapping = {s: env[s][i] for s in scalar.free_symbols if s in env}
                mapping.update({s: params[s.name][i] if params[s.name].ndim else params[s.name][()]
                                for s in scalar.free_symbols if isinstance(s, Param) and s.name in params})
                lines.append(self.line(f"{prefix}_{i}", scalar.xreplace(mapping)))
                components.append(lines[-1][0])
            env[eq.target] = components
        return lines

    def cell_params(self, cell, prefix, sizes):
        """A cell's parameters as symbol arrays (its fixed spreads and folds as exact 0 and 1)."""
        params = {k: self.param_symbols[prefix + k] for k in cell.params if not cell.params[k].fixed}
        params.update({k: np.array([[sp.Integer(int(e)) for e in row] for row in v], dtype=object)
                       for k, v in fixed_values(cell.params, sizes).items()})
        return params

    def step_templates(self, cell, tag, sizes, x, params):
        """One step of ``cell`` reading ``x``, its states named ``{tag}{state}__{t}`` (previous: ``{tm1}``)."""
        env = {cell.input_symbol: x}
        for s in cell.states:
            env[tsym(s, -1)] = [sp.Symbol(f"{tag}{s}__{{tm1}}_{j}") for j in range(sizes[cell.states[s]])]
        return self.scalarize(cell.equations, env, lambda eq: sizes[cell.sizes[eq.target]],
                              lambda eq: f"{tag}{parse(eq.target)[0]}__{{t}}", params)

    def cell_part(self, part, T, input_steps):
        """A cell over time: its templates and its steps ``[(template key, fill), ...]``."""
        cell, tag = part.cell, ident(part.prefix)
        sizes = {**self.sizes, "D": part.width}
        params = self.cell_params(cell, part.prefix, sizes)
        size = {s: sizes[cell.states[s]] for s in cell.states}
        reads_input = part.reads[0] == "input"
        start = T + 1 if part.reverse else 0
        for s in cell.states:
            self.state0_names[s] += [f"{tag}{s}__{start}_{j}" for j in range(size[s])]
        for with_input in ((True, False) if reads_input else (True,)):
            if not reads_input:
                x = self.outputs[part.reads[0]]
            elif with_input:
                x = [sp.Symbol(f"{self.input_name}__{{t}}_{j}") for j in range(part.width)]
            else:
                x = [sp.Integer(0)] * part.width
            self.templates[part.name, with_input] = self.step_templates(cell, tag, sizes, x, params)
        self.outputs[part.name] = [sp.Symbol(f"{tag}{cell.output_state}__{{t}}_{j}")
                                   for j in range(size[cell.output_state])]
        inputs = input_steps if reads_input else range(T)
        order = range(T - 1, -1, -1) if part.reverse else range(T)
        return [((part.name, t in inputs), {"t": t + 1, "tm1": t + 2 if part.reverse else t}) for t in order]

    def pointwise_part(self, part, T):
        """A merge of two directions or a residual sum, at every step."""
        a, b = (self.outputs[r] for r in part.reads)
        if part.detail == "concat":
            self.outputs[part.name] = a + b
            return []
        rule = (lambda u, v: u + v) if part.kind == "residual" else SCALAR_MERGES[part.detail]
        tag = f"_{ident(part.name)}__{{t}}"
        lines = [self.line(f"{tag}_{j}", rule(u, v)) for j, (u, v) in enumerate(zip(a, b))]
        self.templates[part.name] = lines
        self.outputs[part.name] = [line[0] for line in lines]
        return [(part.name, {"t": t + 1}) for t in range(T)]

    def unroll(self, parts, T, input_steps):
        """The steps ``[(template key, fill), ...]`` of the cell, merge and residual parts over ``T`` steps
        (the cells that read the input read it at ``input_steps``)."""
        order = []
        for part in parts:
            if part.kind == "cell":
                order += self.cell_part(part, T, input_steps)
            elif part.kind in ("merge", "residual"):
                order += self.pointwise_part(part, T)
        return order

    def at(self, part_name, t):
        """The names of what a part outputs at step ``t`` (1-based), as symbols."""
        return [sp.Symbol(s.name.format(t=t)) for s in self.outputs[part_name]]

    def reverse_accumulation(self, printer, steps, losses):
        """The forward lines of ``steps`` (``[(template lines, fill), ...]``, every name filled in), ``_L``
        the sum of the ``losses`` (names), and the reverse accumulation over them:
        ``(forward lines, backward lines, {leaf name: [contributions]})``.  A line's local derivatives
        are taken (once per template line) when the sweep first reaches it."""
        printed = {id(lines): [(t.name, printer.doprint(e)) for t, e in lines] for lines, _ in steps}
        derivatives = {}

        def local(lines, k):
            if (id(lines), k) not in derivatives:
                derivatives[id(lines), k] = [(u.name, printer.doprint(d))
                                             for u, d in self.local_derivatives(lines[k][1])]
            return derivatives[id(lines), k]

        forward = []
        for lines, fill in steps:
            forward += [f"    {name.format(**fill)} = {code.format(**fill)}" for name, code in printed[id(lines)]]
        forward.append(f"    _L = {' + '.join(losses) or '0'}")
        contributions = defaultdict(list)
        for name in losses:
            contributions[name].append("_d___L")
        backward = ["    _d___L = 1"]
        for lines, fill in reversed(steps):
            for k in range(len(lines) - 1, -1, -1):
                name = printed[id(lines)][k][0].format(**fill)
                terms = contributions.pop(name, None)
                if not terms:
                    continue
                backward.append(f"    _d__{name} = {' + '.join(terms)}")
                for u, d in local(lines, k):
                    contributions[u.format(**fill)].append(f"_d__{name}*({d.format(**fill)})")
        return forward, backward, contributions


def program_source(args, body, contributions, grads, forward_only=False):
    """The source of ``program(_values)``: unpack ``args``, run ``body`` (forward and backward lines) and
    return ``_L`` and ``[d _L / d name for name in grads]`` (``_L`` alone if ``forward_only``)."""
    head = ["def program(_values):", f"    {', '.join(args)}, = _values"]
    if forward_only:
        return "\n".join(head + body + ["    return _L"]) + "\n"
    leaves = [f"    _d__{n} = {' + '.join(contributions.get(n, [f'0 * {SCALE}']))}" for n in grads]
    return "\n".join(head + body + leaves + [f"    return _L, [{', '.join('_d__' + n for n in grads)}]"]) + "\n"
