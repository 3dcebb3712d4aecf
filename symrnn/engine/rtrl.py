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

from .codegen import code_name
from .losses import SquaredError, scale_of
from .symbols import tsym
from .tangent import Tangent, constants_of, step_reader, tangent_code, tangent_equations, unidirectional_layers


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
        self.equations = tangent_equations(cell.equations, constants=constants_of(cell))

    def __str__(self):
        return "\n".join(f"{sp.sstr(e.lhs)} = {sp.sstr(e.rhs, order='none')}" for e in self.equations)

    def _repr_latex_(self):
        body = r" \\ ".join(f"{sp.latex(e.lhs)} &= {sp.latex(e.rhs)}" for e in self.equations)
        return r"$\begin{aligned}" + body + r"\end{aligned}$"


class _Directions:
    """The layout of the tangent axis: every parameter entry of every layer's cell (by key, row-major),
    then every entry of each layer's initial states.  Adds the source terms of one step."""

    def __init__(self, keys, shapes, states):
        self.offsets, start = {}, 0
        for key in keys:
            size = int(np.prod(shapes[key]))
            self.offsets[key] = (start, start + size, shapes[key])
            start += size
        self.n_params = start
        for key, size in states:
            self.offsets[key] = (start, start + size, (size,))
            start += size
        self.R = start

    def matrix(self, out, key, coef, v):
        lo, hi, (rows, cols) = self.offsets[key]
        N = v.shape[0]
        block = out[lo:hi].reshape(rows, cols, N, out.shape[-1])
        i = np.arange(rows)
        c = np.broadcast_to(coef, (N, rows))
        block[i, :, :, i] += c.T[:, None, :] * v.T[None, :, :]

    def vector(self, out, key, coef):
        lo, hi, (rows,) = self.offsets[key]
        N = out.shape[1]
        i = np.arange(rows)
        out[lo:hi][i, :, i] += np.broadcast_to(coef, (N, rows)).T

    def initial(self, key, N, size, dtype):
        """``dot s_0`` for every direction: the identity on the state's own block (per example)."""
        out = np.zeros((self.R, N, size), dtype=dtype)
        lo, hi, _ = self.offsets[key]
        i = np.arange(size)
        out[lo:hi][i, :, i] = 1.0
        return out


class _LayerSource:
    """The source terms of one layer: its cell's parameter names mapped to the model's keys."""

    def __init__(self, directions, keys):
        self.directions, self.keys = directions, keys

    def matrix(self, out, name, coef, v, vector_name=None):
        self.directions.matrix(out, self.keys[name], coef, v)

    def vector(self, out, name, coef):
        self.directions.vector(out, self.keys[name], coef)


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
    model : Model or StackedModel
        A one-cell model (any cell, architecture, loss and reduction), or a stack of
        unidirectional layers (:class:`symrnn.StackedModel`, residual or not).
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
    layers = unidirectional_layers(model, 'RTRL')
    params, X, Y, S0, sched, mask = model._prepare(params, inputs, targets, h0, mask)
    T, N = X.shape[:2]
    run = _RTRLRun(model, layers, params, S0, N, X.dtype)
    factor = _step_scale(model, np.ones((len(sched.output_steps), N), dtype=bool) if mask is None else mask)
    loss = 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(T):
            h_t, dh_t = run.step(X[t])
            if t not in sched.output_steps:
                continue
            k = t - sched.output_steps.start
            value, d_h = run.step_loss(h_t, Y[k:k + 1], None if mask is None else mask[k:k + 1], factor)
            loss += value
            run.accumulate(dh_t, d_h)
    return loss, run.grads()


class _RTRLRun:
    """The state of one RTRL pass: every layer's states and sensitivities (``(R, N, size)``, the layout of
    :class:`_Directions`) and the gradients summed so far."""

    def __init__(self, model, layers, params, S0, N, dtype):
        self.model, self.layers, self.params = model, layers, params
        self.block = model.cell_code
        self.code, self.read = tangent_code(self.block), step_reader(self.block)
        shapes = model.param_shapes
        sizes = {s: model.initial_state_shape(s, N)[-1] for s in model.state_names}
        self.initial_keys = [((row, s), sizes[s]) for _, _, _, row in layers for s in model.state_names]
        trained = [k for keys, _, _, _ in layers for k in keys.values() if k in shapes]  # no fixed spread, fold
        self.directions = _Directions(trained, shapes, self.initial_keys)
        self.readout = model.readout_code if model.readout is not None else None
        self.grad_theta = np.zeros(self.directions.n_params, dtype=dtype)
        self.grad_states = {key: np.zeros((N, size), dtype=dtype) for key, size in self.initial_keys}
        self.readout_grads = {k: np.zeros(shapes[k], dtype=dtype) for k in (model.readout.params if self.readout else ())}
        self.sens = {key: self.directions.initial(key, N, size, dtype) for key, size in self.initial_keys}
        self.states = {(row, s): (S0 if row is None else S0[(row, "fwd")])[s] for _, _, _, row in layers
                       for s in model.state_names}
        self.N, self.dtype = N, dtype

    def step(self, x):
        """One step of every layer from the bottom up on the input ``x`` (``(N, D)``): the states and the
        sensitivities move to step ``t``; returns the top layer's output and its sensitivity."""
        model, block = self.model, self.block
        dx = None
        for keys, sizes, residual, row in self.layers:
            layer_params = {n: self.params[k] for n, k in keys.items()}
            prev = {s: self.states[(row, s)] for s in model.state_names}
            cache = block.forward(layer_params, x[None], prev, sizes)
            values = self.read(x[None], cache, 0)
            for s in model.state_names:
                self.states[(row, s)] = cache[f"S_{s}"][1].copy()
            dV = {code_name(tsym(s, -1)): self.sens[(row, s)] for s in model.state_names}
            dV[code_name(block.input_symbol)] = dx
            tangents = self.code.function(layer_params, values, dV, _LayerSource(self.directions, keys),
                                          self.directions.R, self.N, sizes, self.dtype)
            for s in model.state_names:
                self.sens[(row, s)] = tangents[code_name(tsym(s))]
            out, d_out = self.states[(row, model.out)], self.sens[(row, model.out)]
            if residual:
                out, d_out = out + x, d_out + dx
            x, dx = out, d_out
        return x, dx

    def step_loss(self, h_t, y, step_mask, factor):
        """The loss of one scored step (its share of the model's loss) and its gradient with respect to the
        top layer's output ``h_t``; the readout's gradients are added."""
        model = self.model
        if self.readout is None:
            value, d_h = model.loss_rule.value_and_grad(h_t[None], y, "sum", step_mask)
            return float(value) * factor, d_h[0] * factor
        rcache = self.readout.forward(self.params, h_t[None], {}, model.sizes)
        value, d_o = model.loss_rule.value_and_grad(rcache[f"C_{model.logits}"], y, "sum", step_mask)
        rgrads, d_h, _ = self.readout.backward(self.params, h_t[None], rcache, {model.logits: d_o * factor}, {},
                                               model.sizes)
        for name, g in rgrads.items():
            self.readout_grads[name] += g
        return float(value) * factor, d_h[0]

    def accumulate(self, dh_t, d_h):
        """Add ``(dL_t / dh_t) P_t`` to the gradients of the parameters and the initial states."""
        self.grad_theta += np.einsum("rnk,nk->r", dh_t[:self.directions.n_params], d_h)
        for key, _ in self.initial_keys:
            lo, hi, _ = self.directions.offsets[key]
            self.grad_states[key] += np.einsum("ink,nk->ni", dh_t[lo:hi], d_h)

    def grads(self) -> dict:
        """The gradients by the model's keys, the initial states' last."""
        model, grads = self.model, {}
        for key in (k for keys, *_ in self.layers for k in keys.values() if k in self.directions.offsets):
            lo, hi, shape = self.directions.offsets[key]  # not a fixed spread or fold: those are not trained
            grads[key] = self.grad_theta[lo:hi].reshape(shape)
        grads.update(self.readout_grads)
        grads = {k: grads[k] for k in model.param_shapes}
        for s in model.state_names:
            rows = [self.grad_states[(row, s)] for _, _, _, row in self.layers]
            grads[model.initial_state_key(s)] = rows[0] if self.layers[0][3] is None else np.stack(rows)
        return grads


__all__ = ["Tangent", "Sensitivities", "rtrl_loss_and_grads"]
