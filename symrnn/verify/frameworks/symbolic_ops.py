"""Elementwise operations on NumPy object arrays of :class:`~symrnn.verify.trace.Traced` scalars,
shared by the interpreters of torch.export graphs and jaxprs (functions of symrnn's vocabulary:
``sigmoid``, ``maximum`` (``relu`` against 0), ``minimum``)."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ...engine import functions as F
from ..trace import Traced


def map_entries(fn, a):
    """``fn`` of every entry's expression, as an object array (a scalar stays a scalar)."""
    a = np.asarray(a, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        v = a[index]
        out[index] = Traced(fn(v.e if isinstance(v, Traced) else sp.sympify(v)))
    return out


def pair(fn, a, b):
    A, B = np.broadcast_arrays(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    out = np.empty(A.shape, dtype=object)
    for index in np.ndindex(A.shape):
        u, v = A[index], B[index]
        out[index] = Traced(fn(u.e if isinstance(u, Traced) else sp.sympify(u),
                               v.e if isinstance(v, Traced) else sp.sympify(v)))
    return out


def maximum(u, v):
    return F.relu(u) if v == 0 else F.relu(v) if u == 0 else F.maximum(u, v)


def minimum(u, v):
    return F.minimum(u, v)


def clamp(a, lo=None, hi=None):
    out = a if lo is None else pair(maximum, a, lo)
    return out if hi is None else pair(minimum, out, hi)


def filled(shape, value):
    out = np.empty(tuple(shape), dtype=object)
    for index in np.ndindex(out.shape):
        out[index] = Traced(sp.sympify(value))
    return out


#: the elementwise operations both graphs spell alike (torch.export's Core ATen and JAX's primitives)
COMMON = {
    "pow": lambda a, b: pair(lambda u, v: u ** v, a, b),
    "sqrt": lambda a: map_entries(sp.sqrt, a),
    "rsqrt": lambda a: map_entries(lambda u: 1 / sp.sqrt(u), a),
    "tanh": lambda a: map_entries(sp.tanh, a),
    "exp": lambda a: map_entries(sp.exp, a),
    "log": lambda a: map_entries(sp.log, a),
    "log1p": lambda a: map_entries(lambda u: sp.log(1 + u), a),
    "expm1": lambda a: map_entries(lambda u: sp.exp(u) - 1, a),
    "abs": lambda a: map_entries(F.absolute, a),
}
