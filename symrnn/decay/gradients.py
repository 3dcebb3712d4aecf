"""How much of ``dL/dW`` comes from each lag.

For a loss ``L = <g, h_T>`` at the last step (``g`` a unit vector), the gradient of
every parameter is a sum over steps, ``dL/dW = sum_t G_t``, where ``G_t`` is step
``t``'s use of ``W`` weighted by the adjoint ``dL/ds_t`` that reached it from lag
``T - t``.  Each ``G_t`` is computed by the engine's own generated backward over
the single step ``t`` (its state ``s_{t-1}``, its input ``x_t``, the adjoint
``dL/ds_t`` arriving from outside), which also returns ``dL/ds_{t-1}`` for the
step before: a reverse sweep made of one-step backwards, exact, whose sum is the
full gradient (the tests check it).  Parameters are grouped by the gate (the
equation) that reads them: ``U_f, W_f, b_f`` under ``f``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.symbols import MatVec, Param, parse


@dataclass
class GradientByLag:
    """Each step's share of every parameter's gradient, by lag (from :func:`gradient_by_lag`).

    The gradient of ``L = <g, h_T>`` is a sum of one term ``G_t`` per step; the lag of step
    ``t`` is ``k = T - t``.

    Attributes
    ----------
    lags : ndarray
        The lags ``0, 1, ..., T - 1``.
    norms : dict of str to ndarray
        ``norms[name][k]`` is ``||G_{T-k}||_F`` of parameter ``name``.
    gates : dict of str to ndarray
        ``gates[gate][k]``: the same for the parameters a gate's equation reads, together
        (``U_f, W_f, b_f`` under ``f``).
    totals : dict of str to float
        ``||dL/dW||_F`` of each parameter's whole gradient.
    total_by_gate : dict of str to float
        The same for each gate's parameters together.
    grads : dict of str to ndarray
        The summed gradient of each parameter.
    """

    lags: np.ndarray
    norms: dict
    gates: dict
    totals: dict
    total_by_gate: dict
    grads: dict  # the summed gradient of each parameter

    def share(self, name):
        """The fraction of ``sum_k ||G_{T-k}||`` that comes from each lag (a gate or a parameter)."""
        v = self.gates.get(name, self.norms.get(name))
        s = v.sum()
        return v / s if s > 0 else v

    def to_dict(self):
        """The norms as plain lists and floats (JSON-ready)."""
        return dict(lags=[int(k) for k in self.lags],
                    norms={k: [float(x) for x in v] for k, v in self.norms.items()},
                    gates={k: [float(x) for x in v] for k, v in self.gates.items()},
                    totals={k: float(v) for k, v in self.totals.items()},
                    total_by_gate={k: float(v) for k, v in self.total_by_gate.items()})


def gate_of_params(cell) -> dict:
    """``{parameter: gate}``: the base name of the first equation that reads the parameter."""
    out = {}
    for eq in cell.equations:
        used = {m.args[0].name for m in eq.rhs.atoms(MatVec)}
        used |= {s.name for s in eq.rhs.free_symbols if isinstance(s, Param)}
        for name in sorted(used):
            out.setdefault(name, parse(eq.target)[0])
    for name in cell.params:
        out.setdefault(name, name)
    return out


def gradient_by_lag(model, params, x, g=None, h0=None, seed=0) -> GradientByLag:
    """Per-lag contributions to every parameter's gradient for ``L = <g, h_T>``.

    Each step's term ``G_t`` of ``dL/dW`` comes from the cell's generated backward over one
    step; the terms sum to the full gradient.

    Parameters
    ----------
    model : Model
        Only its cell and sizes are used.
    params : dict of str to ndarray
        The cell's parameters (a readout's ``V``, ``c`` are ignored).
    x : array_like
        Inputs ``(T, N, D)``; the first sequence is used.
    g : array_like, optional
        The loss gradient on the output state at step ``T``, ``(H,)``; default a unit vector
        drawn from ``seed``.
    h0 : array_like or dict, optional
        Initial states (default zeros).
    seed : int
        Seed of the default ``g``.

    Returns
    -------
    GradientByLag

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> from symrnn.decay import gradient_by_lag, make_params
    >>> model = sr.Model("gru", D=2, H=3, loss="upstream")
    >>> params = make_params(model, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(20, 1, 2))
    >>> g = gradient_by_lag(model, params, x)
    >>> g.lags[:3], sorted(g.gates)
    (array([0, 1, 2]), ['n', 'r', 'z'])
    >>> bool(np.isclose(g.share("z").sum(), 1.0))
    True
    """
    from ..models.model import Model

    x = np.asarray(x, dtype=np.float64)[:, :1]
    T = x.shape[0]
    step_model = model if model.loss_rule.name == "upstream" else Model(
        model.cell, D=model.sizes["D"], H=model.sizes["H"], loss="upstream")
    params = {k: params[k] for k in step_model.param_shapes}
    _, _, cache = step_model.run_cell(params, x, h0=h0)
    states = step_model.state_names
    H = step_model.state_size(step_model.out)  # the output's size (the LRU's is D)
    if g is None:
        g = np.random.default_rng([seed, 17]).standard_normal(H)
        g /= np.linalg.norm(g)
    adjoint = {s: np.zeros((1, cache[f"S_{s}"].shape[-1])) for s in states}
    adjoint[step_model.out] = np.asarray(g, dtype=np.float64).reshape(1, -1)
    gate = gate_of_params(step_model.cell)
    names = list(params)
    norms = {n: np.zeros(T) for n in names}
    gates = {v: np.zeros(T) for v in dict.fromkeys(gate[n] for n in names)}
    total = {n: np.zeros_like(params[n]) for n in names}
    zero_target = np.zeros((1, 1, H))
    for t in range(T, 0, -1):  # step t maps s_{t-1} to s_t
        h_prev = {s: cache[f"S_{s}"][t - 1] for s in states}
        _, grads = step_model.loss_and_grads(params, x[t - 1:t], zero_target, h0=h_prev,
                                             final_grads=adjoint)
        lag = T - t
        sq = {}
        for n in names:
            norms[n][lag] = np.linalg.norm(grads[n])
            total[n] += grads[n]
            sq[gate[n]] = sq.get(gate[n], 0.0) + norms[n][lag] ** 2
        for k, v in sq.items():
            gates[k][lag] = np.sqrt(v)
        adjoint = {s: grads[f"{s}0"] for s in states}
    totals = {n: float(np.linalg.norm(v)) for n, v in total.items()}
    by_gate = {}
    for n, v in totals.items():
        by_gate[gate[n]] = by_gate.get(gate[n], 0.0) + v ** 2
    return GradientByLag(np.arange(T), norms, gates, totals, {k: float(np.sqrt(v)) for k, v in by_gate.items()},
                         total)
