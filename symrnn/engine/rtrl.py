"""Real-time recurrent learning (Williams and Zipser 1989), derived from the cell's equations.

RTRL carries the sensitivities ``P_t = d s_t / d theta`` of every state forward in time,

    P_t = J_t P_{t-1} + dF/dtheta,       dL/dtheta = sum_t (dL_t/ds_t) P_t,

where ``J_t = ds_t/ds_{t-1}`` and ``dF/dtheta`` is the step's direct dependence on the parameters.
Both come from the same local terms as the reverse sweep (:mod:`symrnn.engine.tangent`): the
recurrence is the tangent sweep with one tangent per parameter entry (and per entry of the initial
states), run as generated code.  Nothing over time is kept: each step runs the cell's generated
forward on one input, updates the sensitivities and folds the step's loss into the gradient, so
memory does not grow with ``T``.

Cost per step and example: the product ``J_t P_{t-1}`` is ``O(H^2 P)`` time (``P`` the number of
parameters of the cell; ``P ~ 4 H^2`` for a vanilla RNN with ``D ~ H``, so ``O(H^4)``), and the
sensitivities take ``O(H P)`` memory; BPTT takes ``O(H^2)`` time per step and ``O(T H)`` memory.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import ShapeError
from .codegen import code_name
from .losses import SquaredError, scale_of
from .symbols import tsym
from .tangent import Tangent, tangent_code, tangent_equations


class Sensitivities:
    """The sensitivity recurrence of a cell as equations: ``dot y[t] = ...`` for every quantity.

    With ``dot theta`` one parameter entry at a time, ``dot s[t]`` is a column of ``P_t =
    d s_t / d theta``, and the equations are RTRL's ``P_t = J_t P_{t-1} + dF/dtheta``.

    Parameters
    ----------
    cell : Cell

    Examples
    --------
    >>> import symrnn as sr
    >>> from symrnn.engine.rtrl import Sensitivities
    >>> print(Sensitivities(sr.rnn("tanh")))
    dot a[t] = MatVec(U, dot x[t]) + MatVec(W, dot h[t-1]) + MatVec(dot U, x[t]) + MatVec(dot W, h[t-1]) + dot b
    dot h[t] = (1 - h[t]**2)*dot a[t]
    """

    def __init__(self, cell):
        self.cell = cell
        self.equations = tangent_equations(cell.equations)

    def __str__(self):
        return "\n".join(f"{sp.sstr(e.lhs)} = {sp.sstr(e.rhs, order='none')}" for e in self.equations)

    def _repr_latex_(self):
        body = r" \\ ".join(f"{sp.latex(e.lhs)} &= {sp.latex(e.rhs)}" for e in self.equations)
        return r"$\begin{aligned}" + body + r"\end{aligned}$"


class _Directions:
    """The layout of the tangent axis: every parameter entry of the cell (in declaration order,
    row-major), then every entry of each initial state.  Adds the source terms of one step."""

    def __init__(self, cell_params, shapes, states, state_sizes):
        self.offsets, start = {}, 0
        for name in cell_params:
            size = int(np.prod(shapes[name]))
            self.offsets[name] = (start, start + size, shapes[name])
            start += size
        self.n_params = start
        for s in states:
            self.offsets[("state", s)] = (start, start + state_sizes[s], (state_sizes[s],))
            start += state_sizes[s]
        self.R = start

    def matrix(self, out, name, coef, v):
        lo, hi, (rows, cols) = self.offsets[name]
        N = v.shape[0]
        block = out[lo:hi].reshape(rows, cols, N, out.shape[-1])
        i = np.arange(rows)
        c = np.broadcast_to(coef, (N, rows))
        block[i, :, :, i] += c.T[:, None, :] * v.T[None, :, :]

    def vector(self, out, name, coef):
        lo, hi, (rows,) = self.offsets[name]
        N = out.shape[1]
        block = out[lo:hi]
        i = np.arange(rows)
        block[i, :, i] += np.broadcast_to(coef, (N, rows)).T

    def initial(self, state, N, size, dtype):
        """``dot s_0`` for every direction: the identity on the state's own block (per example)."""
        out = np.zeros((self.R, N, size), dtype=dtype)
        lo, hi, _ = self.offsets[("state", state)]
        i = np.arange(size)
        out[lo:hi][i, :, i] = 1.0
        return out


def _step_scale(model, mask):
    """The factor between the loss of one step with ``reduction='sum'`` and its share of the model's loss."""
    if model.reduction == "sum":
        return 1.0
    per_step = model.sizes["K"] if isinstance(model.loss_rule, SquaredError) else 1
    return scale_of(model.reduction, mask, per_step)


def rtrl_loss_and_grads(model, params, inputs, targets, h0=None, mask=None):
    """The loss and its gradient by real-time recurrent learning, streaming over time.

    Parameters
    ----------
    model : Model
        A one-cell model (any cell, architecture, loss and reduction).
    params, inputs, targets, h0, mask
        As :meth:`symrnn.Model.loss_and_grads`.

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
        Every parameter's gradient and the initial states' (``h0``, ``c0``); RTRL gives no input
        gradient (one tangent per input entry would be needed).

    Notes
    -----
    Memory is ``O(N H P)`` for the sensitivities and does not grow with ``T``; time per step is
    ``O(N H^2 P)``, against ``O(N H^2)`` for a step of BPTT.
    """
    if not getattr(model, "one_cell", False) or not hasattr(model, "cell_code"):
        raise ShapeError(f"RTRL runs one cell over time; {model!r} wires several cells.")
    params, X, Y, S0, sched, mask = model._prepare(params, inputs, targets, h0, mask)
    T, N = X.shape[:2]
    dtype = X.dtype
    block = model.cell_code
    code = tangent_code(block)
    shapes = model.param_shapes
    sizes = model.sizes
    state_sizes = {s: model.state_size(s) for s in model.state_names}
    directions = _Directions(list(model.cell.params), shapes, model.state_names, state_sizes)
    scored = np.ones((len(sched.output_steps), N), dtype=bool) if mask is None else mask
    factor = _step_scale(model, scored)
    readout = model.readout_code if model.readout is not None else None
    grad_theta = np.zeros(directions.n_params, dtype=dtype)
    grad_states = {s: np.zeros((N, state_sizes[s]), dtype=dtype) for s in model.state_names}
    readout_grads = {k: np.zeros(shapes[k], dtype=dtype) for k in (model.readout.params if readout else ())}
    sens = {s: directions.initial(s, N, state_sizes[s], dtype) for s in model.state_names}
    states = dict(S0)
    loss = 0.0
    out_state = code_name(tsym(model.out))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(T):
            cache = block.forward(params, X[t:t + 1], states, sizes)
            values = {code_name(block.input_symbol): X[t]}
            for s in model.state_names:
                values[code_name(tsym(s, -1))] = states[s]
                states[s] = cache[f"S_{s}"][1].copy()
                values[code_name(tsym(s))] = states[s]
            for e in block.equations:
                if e.kind == "let":
                    values[code_name(e.target)] = cache[f"C_{e.target.name.split('[')[0]}"][0]
            dV = {code_name(tsym(s, -1)): sens[s] for s in model.state_names}
            tangents = code.function(params, values, dV, directions, directions.R, N, sizes, dtype)
            sens = {s: tangents[code_name(tsym(s))] for s in model.state_names}
            if t not in sched.output_steps:
                continue
            k = t - sched.output_steps.start
            step_mask = None if mask is None else mask[k:k + 1]
            h_t = states[model.out][None]
            if readout is not None:
                rcache = readout.forward(params, h_t, {}, sizes)
                value, d_o = model.loss_rule.value_and_grad(rcache[f"C_{model.logits}"], Y[k:k + 1], "sum", step_mask)
                rgrads, d_h, _ = readout.backward(params, h_t, rcache, {model.logits: d_o * factor}, {}, sizes)
                for name, g in rgrads.items():
                    readout_grads[name] += g
                d_h = d_h[0]
            else:
                value, d_h = model.loss_rule.value_and_grad(h_t, Y[k:k + 1], "sum", step_mask)
                d_h = d_h[0] * factor
            loss += float(value) * factor
            S = sens[model.out]
            grad_theta += np.einsum("rnk,nk->r", S[:directions.n_params], d_h)
            for s in model.state_names:
                lo, hi, _ = directions.offsets[("state", s)]
                grad_states[s] += np.einsum("ink,nk->ni", S[lo:hi], d_h)
    grads = {}
    for name in model.cell.params:
        lo, hi, shape = directions.offsets[name]
        grads[name] = grad_theta[lo:hi].reshape(shape)
    grads.update(readout_grads)
    grads = {k: grads[k] for k in shapes}
    grads.update({model.initial_state_key(s): g for s, g in grad_states.items()})
    return loss, grads


__all__ = ["Tangent", "Sensitivities", "rtrl_loss_and_grads"]
