"""Exact step Jacobians ``ds_t/ds'_{t-1}`` as numbers, for studies of gradient decay.

The symbolic Jacobians (:meth:`symrnn.engine.bptt.Sweep.step_jacobians`, read from the
assembled reverse sweep: :attr:`symrnn.engine.bptt.Derivation.step_jacobians`) are
sums of ordered products of ``Diag(v)`` and parameter matrices; here they are
evaluated at every step of a forward pass.  Products of them give
``dh_T/dh_t``, whose norms vanish or explode; :func:`log_norms_of_products`
accumulates those norms in log space, since they underflow float64 long
before ``T = 10^4`` for contracting cells.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from .. import cache
from .bptt import Diag
from .stored import cache_key, compile_numpy, numpy_source
from .symbols import MatVec, Param, parse, tsym


def step_values(model, params, X, cache):
    """Every time-indexed vector of the step at all steps (symbol -> (T, N, size)) and the vector
    parameters (symbol -> (size,)), from a forward pass's ``cache``."""
    cell = model.cell
    values = {cell.input_symbol: X}
    for s in cell.states:
        values[tsym(s, -1)] = cache[f"S_{s}"][:-1]
        values[tsym(s)] = cache[f"S_{s}"][1:]
    for eq in cell.equations:
        if eq.kind == "let":
            values[eq.target] = cache[f"C_{parse(eq.target)[0]}"]
    for name, spec in cell.params.items():
        if not spec.is_matrix:
            values[Param(name)] = params[name]
    return values


def vector_function(expr):
    """An elementwise expression (products ``P v`` included) as a NumPy function of
    ``(values, params)``: at all steps at once when ``values`` are :func:`step_values`.

    The generated source is kept in the disk cache (:mod:`symrnn.cache`) when ``expr`` uses
    symrnn's own functions only."""
    key = cache_key(expr)
    spec = cache.get_or_build("vector-function", key, lambda: _spec(expr)) if key else _spec(expr)
    fn = compile_numpy(spec["source"], "<symrnn-coefficient>")
    arguments = spec["arguments"]

    def at(values, params):
        named = {_name(k): v for k, v in values.items()}
        return fn(*[named[vector] @ params[matrix].T if matrix else named[vector] for matrix, vector in arguments])
    return at


@functools.lru_cache(maxsize=4096)
def _name(symbol):
    """``str(symbol)``, remembered: SymPy's printer is slow next to the arrays a coefficient reads."""
    return str(symbol)


def _spec(expr):
    """The source of ``expr`` as a NumPy function and what each argument is: ``[matrix, vector]``
    (the product ``matrix @ vector``) or ``["", vector]``."""
    atoms = {m: sp.Dummy() for m in expr.atoms(MatVec)}
    restore = {d: m for m, d in atoms.items()}
    flat = expr.xreplace(atoms)
    symbols = sorted(flat.free_symbols, key=sp.default_sort_key)
    arguments = [[restore[s].args[0].name, str(restore[s].args[1])] if s in restore else ["", str(s)]
                 for s in symbols]
    return {"source": numpy_source(symbols, flat), "arguments": arguments}


def _evaluate(expr, values, params, shape):
    """A noncommutative Jacobian expression at every step: (T, N, rows, cols)."""
    if expr == 0:
        return np.zeros(shape)
    if expr.is_commutative and expr.is_number:  # c times the identity
        return np.broadcast_to(float(expr) * np.eye(shape[-1]), shape).copy()
    if isinstance(expr, sp.Add):
        return sum(_evaluate(a, values, params, shape) for a in expr.args)
    if isinstance(expr, sp.Mul):
        scalars, factors = expr.args_cnc()
        out, cols = None, shape[-1]
        for f in reversed(factors):  # right to left: each factor's size is the columns of what follows it
            m = _evaluate(f, values, params, shape[:-2] + (cols, cols))
            out = m if out is None else m @ out
            cols = m.shape[-2]
        for c in scalars:
            out = out * float(c)
        return out
    if isinstance(expr, Diag):
        v = np.broadcast_to(vector_function(expr.args[0])(values, params), shape[:-1])
        return v[..., :, None] * np.eye(shape[-1])
    if isinstance(expr, sp.Pow) and not expr.base.is_commutative and expr.exp.is_Integer and expr.exp > 0:
        base = _evaluate(expr.base, values, params, shape)  # W @ (W @ h) gives W**2
        out = base
        for _ in range(int(expr.exp) - 1):
            out = out @ base
        return out
    if isinstance(expr, sp.Symbol) and expr.name in params:
        return np.broadcast_to(params[expr.name], shape[:-2] + params[expr.name].shape)  # a matrix state's spreads
    raise TypeError(f"Cannot evaluate {expr!r} in a step Jacobian.")


def step_jacobians(model, params, inputs, h0=None):
    """``{(state, previous state): array (T, N, size of state, size of previous)}``: ``J[t-1] = ds_t/ds'_{t-1}``
    (``H x H`` for states of size ``H``; a matrix state's block is that of its flattened vector).

    Every step reads an input (the architecture does not enter here).
    """
    params, X, cache = model.run_cell(params, inputs, h0)
    values = step_values(model, params, X, cache)
    T, N = X.shape[:2]
    return {(s, p): _evaluate(expr, values, params, (T, N, model.state_size(s), model.state_size(p)))
            for (s, p), expr in model.derive().step_jacobians.items()}


def log_norms_of_products(jacobians, ord=2):
    """``log ||ds_T/ds_t||`` for ``t = T-1, ..., 0`` for one sequence (``jacobians``
    shaped (T, H, H)), renormalising the running product at every step so
    that nothing underflows.

    Under the numba backend (:func:`symrnn.set_backend`) the loop over the steps is one compiled
    function for ``ord`` 2, ``"fro"`` or None (the same arithmetic; the NumPy loop is the reference).
    """
    jacobians = np.asarray(jacobians)
    if ord in (2, "fro", None) and jacobians.dtype == np.float64 and jacobians.ndim == 3:
        loop = _compiled_loop()
        if loop is not None:
            return loop(np.ascontiguousarray(jacobians), ord == 2)
    T, H, _ = jacobians.shape
    running = np.eye(H)
    log_scale = 0.0
    out = np.empty(T)
    for k in range(T - 1, -1, -1):
        running = running @ jacobians[k]
        norm = np.linalg.norm(running, ord)
        out[k] = log_scale + np.log(norm) if norm > 0 else -np.inf
        if norm > 0:
            running = running / norm
            log_scale += np.log(norm)
    return out


def _log_norms_loop(jacobians, spectral):
    """The loop of :func:`log_norms_of_products` (compiled by Numba)."""
    T, H = jacobians.shape[0], jacobians.shape[1]
    running = np.eye(H)
    log_scale = 0.0
    out = np.empty(T)
    for k in range(T - 1, -1, -1):
        running = running @ jacobians[k]
        norm = np.linalg.norm(running, 2) if spectral else np.linalg.norm(running)
        out[k] = log_scale + np.log(norm) if norm > 0 else -np.inf
        if norm > 0:
            running = running / norm
            log_scale += np.log(norm)
    return out


_COMPILED = []


def _compiled_loop():
    """The compiled loop when the backend in force is Numba, else None."""
    from .fused import backend, linear_algebra_available
    if backend() != "numba" or not linear_algebra_available():
        return None
    if not _COMPILED:
        import numba
        _COMPILED.append(numba.njit(cache=True, error_model="numpy")(_log_norms_loop))
    return _COMPILED[0]
