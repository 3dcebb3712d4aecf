"""Vanishing and exploding gradients, measured from the exact step Jacobians.

The step Jacobians come from the cell's symbolic derivation (any cell, user-defined
ones included); products of them are accumulated in log space, streamed over
time, so ``T = 100000`` runs in memory that does not grow with ``T``.

>>> import symrnn as sr
>>> from symrnn.decay import decay_profile, make_params
>>> model = sr.Model("lstm", D=2, H=8, loss="upstream")
>>> params = make_params(model, init="pytorch", scale=1.0, seed=0)
>>> p = decay_profile(model, params, T=500, k=4)
>>> p.exponents.shape, p.units
((4,), 'natural log per step')
"""
from .bounds import PascanuBound, pascanu_bound
from .gradients import GradientByLag, gradient_by_lag
from .jacobian_stream import InputSource, JacobianStream
from .lyapunov import UNITS, DecayProfile, decay_profile, default_lags, lyapunov_spectrum
from .report import write_report
from .sharpness import TopEigenvalue, sharpness_by_length, sharpness_figure, top_hessian_eigenvalue
from .sweep import SweepResult, sweep
from .weights import INITS, SCALE_BY, load_params, make_params

__all__ = ["PascanuBound", "pascanu_bound", "GradientByLag", "gradient_by_lag", "InputSource", "JacobianStream",
           "UNITS", "DecayProfile", "decay_profile", "default_lags", "lyapunov_spectrum", "write_report",
           "SweepResult", "sweep", "INITS", "SCALE_BY", "load_params", "make_params",
           "TopEigenvalue", "top_hessian_eigenvalue", "sharpness_by_length", "sharpness_figure"]
