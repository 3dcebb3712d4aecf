"""Finite differences of the loss: the numerical route to the gradients.

:func:`central_differences` perturbs every entry of every parameter, input
and initial state in float64 (error about ``eps^2`` from truncation plus
``1e-16 / eps`` from rounding; ``eps=1e-6`` gives about 1e-9 absolute).
:func:`high_precision_differences` evaluates the loss with mpmath at many
digits and Richardson-extrapolates central differences, which agrees with the
exact gradient to far more digits than float64 holds.
"""
from __future__ import annotations

import mpmath
import numpy as np


def _entries(model, params, inputs, h0):
    """The arrays a gradient is taken of, under the keys of ``loss_and_grads`` (copied)."""
    named = {**params, model.input_name: inputs, **{model.initial_state_key(s): v for s, v in h0.items()}}
    return {k: np.array(v, dtype=np.float64) for k, v in named.items()}


def _split(model, arrays):
    params = {k: arrays[k] for k in model.param_shapes}
    h0 = {s: arrays[model.initial_state_key(s)] for s in model.state_names}
    return params, arrays[model.input_name], h0


def _initial(model, inputs, h0):
    """The initial states as the model reads them (zeros where not given), in float64."""
    return model.initial_states(h0, np.asarray(inputs).shape[1], np.float64)


def central_differences(model, params, inputs, targets, h0=None, eps=1e-6):
    """``(f(v + eps) - f(v - eps)) / (2 eps)`` for every entry; same keys as ``loss_and_grads``."""
    arrays = _entries(model, params, inputs, _initial(model, inputs, h0))

    def f():
        p, x, s0 = _split(model, arrays)
        return model.loss(p, x, targets, h0=s0)

    return differences_in_place(arrays, f, eps)


def differences_in_place(arrays, f, eps):
    """``(f() at v + eps - f() at v - eps) / (2 eps)`` for every entry ``v`` of the float arrays in
    ``arrays`` (name -> array), which ``f`` reads: each entry is moved and put back in place."""
    return _entrywise(arrays, f, lambda at, v: (at(v + eps) - at(v - eps)) / (2 * eps))


def _entrywise(arrays, f, derivative):
    """``{name: array of derivative(at, v)}`` over every entry ``v`` of the arrays in ``arrays``, where
    ``at(value)`` is ``f()`` with the entry set to ``value`` (``f`` reads the arrays); each entry is put back."""
    grads = {}
    for name, array in arrays.items():
        g = np.empty(array.shape, dtype=array.dtype)
        for idx in np.ndindex(*array.shape):
            keep = array[idx]

            def at(value, idx=idx, array=array):
                array[idx] = value
                return f()

            g[idx] = derivative(at, keep)
            array[idx] = keep
        grads[name] = g
    return grads


def richardson_derivative(f, x0, step, levels=4):
    """Central differences at ``step, step/2, ...`` extrapolated (Richardson)."""
    table = []
    h = mpmath.mpf(step)
    for i in range(levels):
        row = [(f(x0 + h) - f(x0 - h)) / (2 * h)]
        for j in range(1, i + 1):
            factor = mpmath.mpf(4) ** j
            row.append((factor * row[j - 1] - table[i - 1][j - 1]) / (factor - 1))
        table.append(row)
        h /= 2
    return table[-1][-1]


def high_precision_differences(model, params, inputs, targets, h0=None, digits=40, step=1e-6, levels=4,
                               oracle=None):
    """Gradients by Richardson-extrapolated central differences at ``digits`` decimal digits.

    The loss is evaluated by the forward half of the unrolled scalar program
    (:class:`~symrnn.oracles.scalar.ScalarOracle`) in mpmath.  Returns mpmath
    numbers in object arrays, keyed like ``loss_and_grads``.
    """
    from .scalar import ScalarOracle

    targets = np.asarray(targets)
    inputs = np.asarray(inputs, dtype=np.float64)
    oracle = oracle or ScalarOracle(model, inputs.shape[0], targets.shape[0])
    with mpmath.workdps(digits):
        base = {k: np.array([mpmath.mpf(float(v)) for v in a.ravel()], dtype=object).reshape(a.shape)
                for k, a in _entries(model, params, inputs, _initial(model, inputs, h0)).items()}

        def f():
            p, x, s0 = _split(model, base)
            return oracle.loss(p, x, targets, h0=s0, precision=digits)

        return _entrywise(base, f, lambda at, v: richardson_derivative(at, v, step, levels))
