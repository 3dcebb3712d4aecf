"""The unrolled scalar oracle of a stacked or bidirectional model.

A second route to :class:`symrnn.wiring.StackedModel`'s gradients that shares
nothing with it but the cell's equations: every direction of every layer is
unrolled into scalar SymPy assignments (the backward direction by walking the
steps from last to first), the merge of two directions is written here as a
scalar expression of its own (``f + b``, ``(f + b) / 2``, ``f b``,
``maximum(f, b)``; concat merely lists the components), the next layer reads
those scalars, and the readout and loss are scalar sums.  The gradient is
reverse accumulation over that straight-line program with ``sympy.diff`` of
one assignment at a time: no matrix rule, no generated block code, no time
reversal of arrays, no merge table.  For tiny sizes (it is a program of
``O(L T H (D + H))`` lines).
"""
from __future__ import annotations

from collections import defaultdict

import mpmath
import numpy as np
import sympy as sp

from ..errors import DerivationTooLargeError
from ..functions import derivative, maximum
from ..losses import scale_of
from ..symbols import MatVec, Param, tsym
from .finite_differences import differences_in_place
from .scalar import _float_namespace, _mpmath_namespace, _ScalarPrinter

#: The merges, written independently of :data:`symrnn.wiring.MERGES`.
_SCALAR_MERGES = {
    "sum": lambda f, b: f + b,
    "ave": lambda f, b: sp.Rational(1, 2) * (f + b),
    "mul": lambda f, b: f * b,
    "max": lambda f, b: maximum(f, b),
}


def reverse_program(printer, lines, loss_symbol, args, grads, skip):
    """The source of ``program(_values)``: the straight-line forward ``lines`` (symbol, expression),
    then reverse accumulation over them, each local partial by ``sympy.diff`` of the terms that
    read the variable; returns the loss and ``d loss / d name`` for each name of ``grads``.
    ``skip(name)`` marks the arguments that are constants (the scale, the targets)."""
    forward = [f"    {v.name} = {printer.doprint(e)}" for v, e in lines]
    contributions = defaultdict(list)
    contributions[loss_symbol.name].append("1")
    backward = []
    for v, e in reversed(lines):
        terms = contributions.pop(v.name, None)
        if not terms:
            continue
        backward.append(f"    _d_{v.name} = {' + '.join(terms)}")
        for u in sorted(e.free_symbols, key=lambda s: s.name):
            if skip(u.name):
                continue
            d = sp.Add(*[derivative(term, u) for term in sp.Add.make_args(e) if term.has(u)])
            if d != 0:
                contributions[u.name].append(f"_d_{v.name}*({printer.doprint(d)})")
    tail = [f"    _d_{n} = {' + '.join(contributions.get(n, ['0 * scale']))}" for n in grads]
    result = f"    return {loss_symbol.name}, [{', '.join('_d_' + n for n in grads)}]"
    return "\n".join(["def program(_values):", f"    {', '.join(args)}, = _values"] + forward + backward + tail
                     + [result]) + "\n"


class ScalarStackOracle:
    """The straight-line scalar program of ``model`` for inputs of length ``T_in`` and targets of ``T_out``.

    ``loss_and_grads(params, inputs, targets, h0=None, precision=None)`` is keyed like
    ``StackedModel.loss_and_grads``; ``precision`` (decimal digits) evaluates in mpmath.
    """

    def __init__(self, model, T_in, T_out, max_lines=60_000):
        self.model = model
        self.schedule = model.architecture.schedule(T_in, T_out)
        self.T_in, self.T_out = T_in, T_out
        self.lines = []  # (Symbol, expr) in order
        self._counter = 0
        self.max_lines = max_lines
        self._build()
        self._compile()

    # -- building -------------------------------------------------------------------------------
    def _new(self, expr):
        if len(self.lines) > self.max_lines:
            raise DerivationTooLargeError(f"The scalar program of {self.model!r} passes {self.max_lines} lines; "
                                          f"use smaller sizes (it is meant for T, H, D of a few).")
        v = sp.Symbol(f"v{self._counter}")
        self._counter += 1
        self.lines.append((v, expr))
        return v

    def _leaves(self, prefix, shape):
        return np.array([sp.Symbol(f"{prefix}_" + "_".join(map(str, idx))) for idx in np.ndindex(*shape)],
                        dtype=object).reshape(shape)

    def _step(self, P, x, states):
        """One cell step on scalars: returns the new states ``{name: [scalars]}``."""
        cell = self.model.cell
        env = {cell.input_symbol: x}
        env.update({tsym(s, -1): v for s, v in states.items()})
        for eq in cell.equations:
            size = self._size[cell.sizes[eq.target]]
            comps = []
            for i in range(size):
                def expand(Pm, v, i=i):
                    return sp.Add(*[w * vj for w, vj in zip(P[Pm.name][i], env[v])])
                scalar = eq.rhs.replace(MatVec, expand)
                mapping = {s: env[s][i] for s in scalar.free_symbols if s in env}
                mapping.update({s: (P[s.name][i] if P[s.name].ndim == 1 else P[s.name][()])
                                for s in scalar.free_symbols if isinstance(s, Param)})
                comps.append(self._new(scalar.xreplace(mapping)))
            env[eq.target] = comps
        return {s: env[tsym(s)] for s in cell.states}

    def _build(self):
        m, sched = self.model, self.schedule
        N_steps = sched.T
        self._size = {"D": m.sizes["D"], "H": m.sizes["H"], "K": m.sizes["K"]}
        self.params = {k: self._leaves(f"p{i}", s) for i, (k, s) in enumerate(m.param_shapes.items())}
        D = m.sizes["D"]
        self.inputs = self._leaves("x", (self.T_in, D))
        self.rows = m.rows()
        sizes = {s: m.unit.state_size(s) for s in m.state_names}
        self.initial = {s: self._leaves(f"s0{s}", (len(self.rows), sizes[s])) for s in m.state_names}
        zero = [sp.Integer(0)] * D
        seq = [list(self.inputs[t - sched.input_steps.start]) if t in sched.input_steps else zero
               for t in range(N_steps)]
        row = 0
        for layer in m.layers:
            self._size["D"] = layer.input_width
            outs = {}
            for d in layer.directions:
                P = {name: self.params[m.key(layer.index, d, name)] for name in m.cell.params}
                states = {s: list(self.initial[s][row]) for s in m.state_names}
                row += 1
                order = range(N_steps) if d == "fwd" else range(N_steps - 1, -1, -1)
                h = [None] * N_steps
                for t in order:
                    states = self._step(P, seq[t], states)
                    h[t] = states[m.out]
                outs[d] = h
            if layer.bidirectional:
                name = m.merge.name
                if name == "concat":
                    merged = [outs["fwd"][t] + outs["bwd"][t] for t in range(N_steps)]
                else:
                    rule = _SCALAR_MERGES[name]
                    merged = [[self._new(rule(f, b)) for f, b in zip(outs["fwd"][t], outs["bwd"][t])]
                              for t in range(N_steps)]
            else:
                merged = outs["fwd"]
            if layer.residual:
                merged = [[self._new(a + b) for a, b in zip(mt, st)] for mt, st in zip(merged, seq)]
            seq = merged
        self._size["D"] = D
        # readout and loss
        W = m.width
        last = m.sizes["K"] if m.readout is not None else W
        self.targets = self._leaves("y", (len(sched.output_steps), last))
        self.scale = sp.Symbol("scale")
        losses = []
        for u, t in enumerate(sched.output_steps):
            y, target = seq[t], self.targets[u]
            if m.readout is None:
                losses.append(self._new(sp.Add(*[g * hj for g, hj in zip(target, y)])))
                continue
            V, c = self.params["V"], self.params["c"]
            o = [self._new(sp.Add(*[V[k, j] * y[j] for j in range(W)]) + c[k]) for k in range(m.sizes["K"])]
            if m.loss_rule.name == "cross-entropy":
                lse = self._new(sp.log(sp.Add(*[sp.exp(ok) for ok in o])))
                losses.append(self._new(self.scale * sp.Add(*[yk * (lse - ok) for yk, ok in zip(target, o)])))
            else:
                losses.append(self._new(self.scale * m.loss_rule.weight
                                        * sp.Add(*[(ok - yk) ** 2 for ok, yk in zip(o, target)])))
        self.loss_symbol = self._new(sp.Add(*losses))

    def _compile(self):
        printer = _ScalarPrinter()
        grads = ([s.name for a in self.params.values() for s in a.ravel()] + [s.name for s in self.inputs.ravel()]
                 + [s.name for a in self.initial.values() for s in a.ravel()])
        args = grads + [s.name for s in self.targets.ravel()] + ["scale"]
        self.source = reverse_program(printer, self.lines, self.loss_symbol, args, grads,
                                      skip=lambda name: name == "scale" or name.startswith("y_"))
        self._code = compile(self.source, "<symrnn-scalar-stack-oracle>", "exec")
        self._programs = {}

    def _program(self, backend):
        if backend not in self._programs:
            ns = dict(_float_namespace() if backend == "float" else _mpmath_namespace())
            exec(self._code, ns)
            self._programs[backend] = ns["program"]
        return self._programs[backend]

    # -- numbers ---------------------------------------------------------------------------------
    def loss_and_grads(self, params, inputs, targets, h0=None, precision=None):
        m = self.model
        p, X, Y, S0, sched, mask = m._prepare(params, np.asarray(inputs, dtype=np.float64), targets, h0, None)
        if m.loss_rule.name == "cross-entropy" and np.issubdtype(Y.dtype, np.integer):
            Y = np.eye(m.sizes["K"])[Y]
        scored = np.ones(Y.shape[:2], dtype=bool)
        scale = 1.0 if m.loss_rule.name == "upstream" else \
            scale_of(m.reduction, scored, m.sizes["K"] if m.loss_rule.name in ("mse", "half-mse") else 1)
        x_in = np.asarray(inputs, dtype=np.float64)
        N = x_in.shape[1]
        convert = float if precision is None else mpmath.mpf
        program = self._program("float" if precision is None else "mpmath")
        results = []
        with mpmath.workdps(precision or 15):
            for n in range(N):
                vals = [convert(float(v)) for k in self.params for v in np.asarray(p[k]).ravel()]
                vals += [convert(float(v)) for v in x_in[:, n].ravel()]
                for s in m.state_names:
                    vals += [convert(float(v)) for layer, d in self.rows for v in S0[layer.index, d][s][n]]
                vals += [convert(float(v)) for v in np.asarray(Y[:, n], dtype=np.float64).ravel()]
                results.append(program(vals + [convert(scale)]))
            loss = sum((r[0] for r in results), 0)
            total = [sum(col, 0) for col in zip(*[r[1] for r in results])]
        grads, k = {}, 0
        for name, a in self.params.items():
            grads[name] = np.array(total[k:k + a.size], dtype=object).reshape(a.shape)
            k += a.size
        size = self.inputs.size
        grads[m.input_name] = np.array([r[1][k:k + size] for r in results], dtype=object).reshape(
            N, self.T_in, -1).transpose(1, 0, 2)
        k += size
        for s, a in self.initial.items():
            grads[f"{s}0"] = np.array([r[1][k:k + a.size] for r in results], dtype=object).reshape(
                N, *a.shape).transpose(1, 0, 2)
            k += a.size
        if precision is None:
            grads = {name: g.astype(float) for name, g in grads.items()}
        return loss, grads


def stack_central_differences(model, params, inputs, targets, h0=None, eps=1e-6):
    """Central differences of ``StackedModel.loss`` for every entry; keyed like its ``loss_and_grads``."""
    N = np.asarray(inputs).shape[1]
    rows = len(model.rows())
    given = {} if h0 is None else (dict(h0) if isinstance(h0, dict) else {model.out: h0})
    arrays = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    arrays[model.input_name] = np.array(inputs, dtype=np.float64)
    for s in model.state_names:
        arrays[f"{s}0"] = np.array(given[s], dtype=np.float64) if s in given else \
            np.zeros((rows, N, model.unit.state_size(s)))

    def f():
        return model.loss({k: arrays[k] for k in params}, arrays[model.input_name], targets,
                          h0={s: arrays[f"{s}0"] for s in model.state_names})

    return differences_in_place(arrays, f, eps)


def _torch_module_grads(model, params, x, y, h0):
    """PyTorch's own ``nn.RNN/LSTM/GRU(num_layers, bidirectional)`` with the readout and loss in torch,
    for concat-merged models without residual links; None where torch has no such module."""
    import torch

    from ..layouts import TORCH_GATES, from_torch, to_torch_stack

    cell = model.cell.name
    if cell not in TORCH_GATES or model.merge.name != "concat" or model.residual or len(set(model.bidirectional)) > 1:
        return None
    D, H = model.sizes["D"], model.sizes["H"]
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
    extra = {} if cell in ("lstm", "gru") else {"nonlinearity": cell.split("-")[1]}
    module = kind(D, H, num_layers=model.num_layers, bidirectional=model.bidirectional[0], **extra).double()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in to_torch_stack(cell, params).items()})
    sched = model.architecture.schedule(x.shape[0], np.asarray(y).shape[0])
    xt = torch.tensor(x, requires_grad=True)
    X = torch.cat([xt, torch.zeros(sched.T - x.shape[0], *x.shape[1:], dtype=torch.float64)]) \
        if sched.T > x.shape[0] else xt
    states = [torch.tensor(h0[s], requires_grad=True) for s in model.state_names]
    out, _ = module(X, tuple(states) if cell == "lstm" else states[0])
    out = out[sched.output_steps.start:sched.output_steps.stop]
    F = torch.nn.functional
    if model.readout is None:
        loss = (out * torch.tensor(np.asarray(y, dtype=np.float64))).sum()
        V = c = None
    else:
        V, c = (torch.tensor(params[k], requires_grad=True) for k in ("V", "c"))
        O = out @ V.T + c
        if model.loss_rule.name == "cross-entropy":
            loss = F.cross_entropy(O.reshape(-1, O.shape[-1]), torch.tensor(np.asarray(y).reshape(-1)),
                                   reduction="sum" if model.reduction == "sum" else "mean")
        else:
            loss = F.mse_loss(O, torch.tensor(np.asarray(y, dtype=np.float64)),
                              reduction="sum" if model.reduction == "sum" else "mean") * float(model.loss_rule.weight)
    loss.backward()
    sd = {k: p.grad.numpy().copy() for k, p in module.named_parameters()}
    for k in sd:  # both biases receive dL/db where they are added: keep one (GRU: b_hn apart)
        if k.startswith("bias_hh"):
            sd[k][:2 * H if cell == "gru" else None] = 0
    grads = {}
    for layer in model.layers:
        for d in layer.directions:
            g = from_torch(cell, sd, layer=layer.index, reverse=d == "bwd")
            grads.update({model.key(layer.index, d, k): v for k, v in g.items()})
    if V is not None:
        grads["V"], grads["c"] = V.grad.numpy(), c.grad.numpy()
    grads[model.input_name] = xt.grad.numpy()
    for s, t in zip(model.state_names, states):
        grads[f"{s}0"] = t.grad.numpy()
    return grads


def stack_agreement_table(model, seed=0, T=3, N=2) -> str:
    """A Markdown table: a :class:`~symrnn.wiring.StackedModel`'s gradients against the scalar program,
    PyTorch's own stacked/bidirectional module (when it has one) and central differences."""
    from ..checks import agreement_text, max_error

    rng = np.random.default_rng(seed)
    T_in, T_out = {"many-to-one": (T, 1), "one-to-one": (1, 1), "one-to-many": (1, T)}.get(
        model.architecture.name, (T, T))
    params = model.init_params(seed, scale=0.8)
    x = rng.normal(size=(T_in, N, model.sizes["D"]))
    y = (rng.integers(0, model.sizes["K"], size=(T_out, N)) if model.loss_rule.name == "cross-entropy" else
         rng.normal(size=(T_out, N, model.sizes["K"] if model.readout is not None else model.width)))
    h0 = {s: 0.5 * rng.normal(size=(len(model.rows()), N, model.unit.state_size(s))) for s in model.state_names}
    loss, grads = model.loss_and_grads(params, x, y, h0=h0)
    rows = []
    _, g = ScalarStackOracle(model, T_in, T_out).loss_and_grads(params, x, y, h0=h0)
    rows.append(("unrolled scalar program (SymPy, float64)", *max_error(grads, g), 1e-12))
    try:
        g = _torch_module_grads(model, params, x, y, h0)
        rows.append(("PyTorch nn module, num_layers/bidirectional (float64)", *max_error(grads, g), 1e-12)
                    if g is not None else ("PyTorch nn module (none for this cell or wiring)", float("nan"), "",
                                           1e-12))
    except ImportError:
        rows.append(("PyTorch autograd (not installed)", float("nan"), "", 1e-12))
    g = stack_central_differences(model, params, x, y, h0=h0)
    rows.append(("central differences (float64, eps=1e-6)", *max_error(grads, g), 1e-6))
    return agreement_text(f"Agreement of the gradients of {model!r} (loss {loss:.6g})", rows)
