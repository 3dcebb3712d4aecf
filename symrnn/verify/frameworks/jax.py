"""JAX code as a NumPy layer: a function with a ``jax.custom_vjp`` (or a jitted function calling one).

The forward runs the function at arrays of the code's dtype made from the verifier's float64 ones;
the backward is ``jax.vjp`` of it with the verifier's upstream gradient, which runs the user's
backward rule.  Both are compiled with ``jax.jit`` (once per shape), as the code runs in training.  Both run with 64-bit types enabled (``jax.enable_x64``), so float64 code
computes in float64 without changing the process's JAX configuration.
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ...errors import UnknownNameError, UserCodeError
from .adapted import FrameworkCode, data_and_weights, final_outputs, ignores, named

DTYPES = ("float64", "float32", "float16", "bfloat16")


def is_jax_target(target) -> bool:
    """``target`` is a ``custom_vjp`` function, or a jitted function."""
    from jax._src.custom_derivatives import custom_vjp

    return isinstance(target, custom_vjp) or (callable(target) and hasattr(target, "lower")
                                              and hasattr(target, "trace"))


def _function_of(target):
    fn = target
    while True:
        inner = getattr(fn, "fun", None) or getattr(fn, "__wrapped__", None)
        if inner is None or inner is fn:
            return fn
        fn = inner


def _first(out, what):
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not hasattr(out, "shape"):
        raise UserCodeError(f"{what} returned {type(out).__name__}; expected the states of every step as an array "
                            f"(first, when it returns several).")
    return out


def _dtype_name(dtype):
    name = str(dtype or "float64").replace("jnp.", "").replace("<class 'jax.numpy.", "").rstrip("'>")
    if name not in DTYPES:
        raise UnknownNameError(f"dtype {dtype!r}: use one of {list(DTYPES)}.")
    return name


def _argument_names(fn, target):
    """The required positional arguments of the function (what symrnn reads the roles of)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        raise UnknownNameError(f"Cannot read the arguments of {target!r}; name them x, h0, c0, weight_ih, ...")
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default is p.empty]


def adapt(target, dtype=None, device=None) -> FrameworkCode:
    """A :class:`~symrnn.verify.frameworks.adapted.FrameworkCode` of a JAX function.

    Parameters
    ----------
    target : callable
        A ``jax.custom_vjp`` function (or a jitted one) of ``x, h0[, c0], weights...``.
    dtype : str, optional
        float64 (default), float32, float16 or bfloat16.
    device : str, optional
        A JAX platform (``"gpu"``); default JAX's default device.

    Returns
    -------
    FrameworkCode
    """
    name = _dtype_name(dtype)
    fn = _function_of(target)
    arg_names = _argument_names(fn, target)
    label = getattr(fn, "__name__", "fn")
    kind = f"JAX function {label}" + (" (custom_vjp)" if hasattr(target, "defvjp") else "")
    roles = data_and_weights(arg_names, kind)
    where = jax.devices(device)[0] if device is not None else None

    def to_jax(a):
        value = jnp.asarray(np.asarray(a), dtype=getattr(jnp, name))
        return value if where is None else jax.device_put(value, where)

    forward, backward, record = _layer(target, kind, to_jax)
    fwd = named(forward, arg_names, f"{label}.forward")
    bwd = named(backward, ["dh", "dh_n", "dc_n", "cache"], f"{label}.backward")
    platform = where.platform if where is not None else jax.default_backend()
    return FrameworkCode(fwd, bwd, roles, dict(zip(roles, arg_names)), f"{kind}, {name} on {platform}", name, None,
                         [], None, python=f"symrnn.verify.verify_framework({label}, ..., replay={{path!r}})",
                         symbolic=_symbolic(target), finals=record)


def _layer(target, kind, to_jax):
    """``(forward, backward, record)``: the function as a NumPy layer; the backward pulls back the
    states of every step and the final states the forward returned (``dh_n``, ``dc_n``), ``record``
    holding which it returned and whose gradient the backward ignored."""
    def outputs(*a):  # the states of every step first, then every other array returned
        out = target(*a)
        return [_first(out, kind)] + (jax.tree_util.tree_leaves(out[1:]) if isinstance(out, (tuple, list)) else [])

    def pullback(which, args, cotangents):  # the outputs ``which`` (indices) pulled back
        return jax.vjp(lambda *a: tuple(outputs(*a)[k] for k in which), *args)[1](cotangents)

    # compiled once per shape: the verifier's many small calls would otherwise dispatch (and compile)
    # every operation of the forward and the backward one by one
    outputs_jit, pullback_jit = jax.jit(outputs), jax.jit(pullback, static_argnums=0)
    record = {}  # the final states the forward returns, those whose gradient the backward ignores

    def forward(*arrays):
        with jax.enable_x64(True):
            args = [to_jax(a) for a in arrays]
            out = outputs_jit(*args)
            found = final_outputs([np.array(a) for a in out[1:]], np.array(out[0]))
            record["returned"] = tuple(found)
            return np.array(out[0]), (args, [(k + 1, out[k + 1].dtype, out[k + 1].shape) for k in found.values()],
                                      out[0].dtype)

    def backward(dh, *more):
        *finals, (args, final_outs, h_dtype) = more
        with jax.enable_x64(True):
            which, cotangents = [0], [jnp.asarray(np.asarray(dh), dtype=h_dtype)]
            for state, g, out in zip(("h", "c"), finals, final_outs + [None] * 2):
                if g is None:
                    continue
                if out is None:
                    raise UserCodeError(f"{kind} returned no {state}_n in this call (it did in another).")
                which.append(out[0])
                cotangents.append(jnp.asarray(np.asarray(g), dtype=out[1]).reshape(out[2]))
                if state not in record.setdefault("checked", set()):  # the gradient at h_n alone: ignored?
                    record["checked"].add(state)
                    if ignores([np.array(a) for a in pullback_jit((out[0],), args, (cotangents[-1],))]):
                        record.setdefault("ignored", set()).add(state)
            grads = pullback_jit(tuple(which), args, tuple(cotangents))
            return tuple(np.array(g) for g in grads)

    return forward, backward, record


def _symbolic(target):
    """One step of the function on object arrays of symbols, read from its jaxpr (once per shape)."""
    from .jaxpr import capture, interpret

    jaxprs = {}

    def symbolic(arrays):
        shapes = tuple(tuple(np.shape(a)) for a in arrays)
        if shapes not in jaxprs:
            jaxprs[shapes] = capture(target, shapes)
        return interpret(jaxprs[shapes], arrays)
    return symbolic
