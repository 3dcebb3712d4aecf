"""One step of a JAX forward, read from its jaxpr and run on symbols.

``jax.make_jaxpr`` of the function at the shapes of one step (``T = N = 1``, float64) gives its
equations in JAX's primitives; each is evaluated on NumPy object arrays of
:class:`~symrnn.verify.trace.Traced` scalars.  A ``custom_vjp`` function is read through its primal
(``call_jaxpr``: the forward, not the user's backward rule), as are ``jit``, ``custom_jvp_call``
(``jax.nn.relu``, ``logaddexp``) and ``scan`` (run step by step).  A comparison is refused (it
needs numbers), except a value compared with itself (JAX's NaN guards, ``x != x``: False).
"""
from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ...engine import functions as F
from ..trace import TracingError
from .symbolic_ops import COMMON, map_entries, maximum, minimum, pair


def _dot_general(a, b, dimension_numbers, **params):
    (lc, rc), (lb, rb) = dimension_numbers
    if lb or rb:
        if len(lb) != 1 or lb[0] != 0 or rb[0] != 0:
            raise TracingError("dot_general with batch axes other than the first")
        return np.stack([_dot_general(a[k], b[k], (([c - 1 for c in lc], [c - 1 for c in rc]), ((), ())))
                         for k in range(a.shape[0])])
    return np.tensordot(np.asarray(a, dtype=object), np.asarray(b, dtype=object), axes=(list(lc), list(rc)))


def _broadcast_in_dim(a, shape, broadcast_dimensions, **params):
    a = np.asarray(a, dtype=object)
    expanded = np.reshape(a, [a.shape[broadcast_dimensions.index(d)] if d in broadcast_dimensions else 1
                              for d in range(len(shape))])
    return np.array(np.broadcast_to(expanded, shape), dtype=object)


def _slice(a, start_indices, limit_indices, strides=None, **params):
    strides = strides or (1,) * len(start_indices)
    return a[tuple(slice(s, e, k) for s, e, k in zip(start_indices, limit_indices, strides))]


def _split(a, sizes, axis, **params):
    return np.split(a, np.cumsum([int(s) for s in sizes])[:-1], axis=axis)


def _select_n(pred, *cases):
    if isinstance(pred, _Known):
        return cases[int(pred.value)]
    pred = np.asarray(pred)
    if pred.dtype == object:
        raise TracingError("select_n (jnp.where, a branch) on a value that depends on the inputs")
    return np.choose(pred.astype(int), [np.broadcast_to(np.asarray(c, dtype=object), pred.shape) for c in cases])


class _Known:
    """A comparison whose answer needs no numbers (``x != x`` is False)."""

    def __init__(self, value):
        self.value = value


def _compare(name):
    def compare(a, b, **params):
        if a is b:
            return _Known(name in ("eq", "le", "ge"))
        if all(np.asarray(v).dtype != object for v in (a, b)):
            return getattr(np, {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
                                "ge": "greater_equal"}[name])(a, b)
        raise TracingError(f"the comparison {name} needs the numbers the symbols stand for (a branch on values)")
    return compare


PRIMITIVES = {
    **COMMON,
    "add": lambda a, b: np.add(a, b, dtype=object),
    "add_any": lambda a, b: np.add(a, b, dtype=object),
    "sub": lambda a, b: np.subtract(a, b, dtype=object),
    "mul": lambda a, b: np.multiply(a, b, dtype=object),
    "div": lambda a, b: np.true_divide(a, b, dtype=object),
    "neg": lambda a: np.negative(a, dtype=object),
    "integer_pow": lambda a, y: map_entries(lambda u: u ** y, a),
    "square": lambda a: map_entries(lambda u: u ** 2, a),
    "logistic": lambda a: map_entries(F.sigmoid, a),
    "max": lambda a, b: pair(maximum, a, b),
    "min": lambda a, b: pair(minimum, a, b),
    "dot_general": _dot_general,
    "transpose": lambda a, permutation: np.transpose(a, permutation),
    "reshape": lambda a, new_sizes, **params: np.reshape(a, new_sizes),
    "broadcast_in_dim": _broadcast_in_dim,
    "squeeze": lambda a, dimensions: np.squeeze(a, axis=tuple(dimensions)),
    "expand_dims": lambda a, dimensions: np.expand_dims(a, tuple(dimensions)),
    "slice": _slice,
    "split": _split,
    "concatenate": lambda *arrays, dimension: np.concatenate([np.asarray(a, dtype=object) for a in arrays],
                                                             axis=dimension),
    "reduce_sum": lambda a, axes, **params: np.sum(a, axis=tuple(axes)),
    "convert_element_type": lambda a, **params: a,
    "copy": lambda a: a,
    "copy_p": lambda a: a,
    "stop_gradient": lambda a: a,
    "select_n": _select_n,
    "iota": lambda **params: np.arange(params["shape"][params["dimension"]]),
}
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    PRIMITIVES[_name] = _compare(_name)


def _where(eqn):
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # noqa: BLE001 - JAX's private helper moved: no line, the message still names the primitive
        return ""


def _read(env, v):
    if type(v).__name__ == "Literal":
        return v.val
    return env[v]


def evaluate(jaxpr, consts, args):
    """The outputs of ``jaxpr`` (a Jaxpr) at ``consts`` and ``args`` (object arrays, numbers)."""
    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        values = [_read(env, v) for v in eqn.invars]
        out = _apply(eqn, values)
        if not eqn.primitive.multiple_results:
            out = [out]
        env.update(zip(eqn.outvars, out))
    return [_read(env, v) for v in jaxpr.outvars]


def _closed(params, *keys):
    for key in keys:
        if key in params:
            inner = params[key]
            return (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (inner, [])
    return None


def _apply(eqn, values):
    name, params = eqn.primitive.name, eqn.params
    if name == "scan":
        return _scan(params, values)
    inner = _closed(params, "call_jaxpr", "fun_jaxpr", "jaxpr")
    if inner is not None:  # jit, custom_vjp_call (its primal), custom_jvp_call, closed_call, remat
        jaxpr, consts = inner
        skip = params.get("num_consts", 0) if name.startswith("custom_vjp") and len(values) > len(jaxpr.invars) else 0
        return evaluate(jaxpr, consts, values[skip:])
    op = PRIMITIVES.get(name)
    where = _where(eqn)
    if op is None:
        raise TracingError(f"the jaxpr has the primitive {name}, which symrnn cannot read as a cell's equation"
                           + (f" (from {where})" if where else ""), where)
    try:
        return op(*values, **_accepted(op, params))
    except TracingError as exc:
        raise TracingError(f"{exc}" + (f" (from {where})" if where else ""), where) from None
    except (ValueError, IndexError, TypeError) as exc:
        raise TracingError(f"{name} on symbols: {type(exc).__name__}: {exc}" + (f" (from {where})" if where else ""),
                           where) from None


@functools.cache
def _parameters(op):
    kinds = inspect.signature(op).parameters.values()
    return None if any(p.kind == p.VAR_KEYWORD for p in kinds) else {p.name for p in kinds}


def _accepted(op, params):
    """The primitive's parameters ``op`` reads (dtypes, shardings and accuracies are not equations)."""
    names = _parameters(op)
    drop = ("preferred_element_type", "out_sharding", "sharding", "accuracy", "new_dtype", "weak_type")
    return {k: v for k, v in params.items() if (k in names if names is not None else k not in drop)}


def _scan(params, values):
    body, consts = params["jaxpr"].jaxpr, params["jaxpr"].consts
    n_consts, n_carry, length = params["num_consts"], params["num_carry"], params["length"]
    fixed, carry, xs = values[:n_consts], list(values[n_consts:n_consts + n_carry]), values[n_consts + n_carry:]
    ys = []
    steps = range(length - 1, -1, -1) if params.get("reverse") else range(length)
    for t in steps:
        out = evaluate(body, consts, list(fixed) + carry + [np.asarray(x, dtype=object)[t] for x in xs])
        carry, y = list(out[:n_carry]), out[n_carry:]
        ys.append(y)
    if params.get("reverse"):
        ys = ys[::-1]
    stacked = [np.stack([np.asarray(y[k], dtype=object) for y in ys]) for k in range(len(ys[0]))] if ys else []
    return carry + stacked


def capture(target, shapes):
    """The closed jaxpr of ``target`` at float64 arrays of ``shapes``."""
    with jax.enable_x64(True):
        try:
            return jax.make_jaxpr(target)(*[jax.ShapeDtypeStruct(s, jnp.float64) for s in shapes])
        except Exception as exc:  # noqa: BLE001 - whatever stopped JAX's tracing: its message names the line
            raise TracingError(f"jax.make_jaxpr could not trace the forward: {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None


def interpret(closed, arrays):
    """Every output of the closed jaxpr on ``arrays`` (object arrays), as object arrays."""
    return [np.asarray(o, dtype=object) for o in evaluate(closed.jaxpr, closed.consts, list(arrays))]
