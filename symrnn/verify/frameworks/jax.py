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
from .adapted import FrameworkCode, data_and_weights, named

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

    def states(*a):
        return _first(target(*a), kind)

    def pullback(args, dh):
        return jax.vjp(states, *args)[1](dh)

    # compiled once per shape: the verifier's many small calls would otherwise dispatch (and compile)
    # every operation of the forward and the backward one by one
    states_jit, pullback_jit = jax.jit(states), jax.jit(pullback)

    def forward(*arrays):
        with jax.enable_x64(True):
            args = [to_jax(a) for a in arrays]
            h = states_jit(*args)
            return np.array(h), (args, h.dtype)

    def backward(dh, cache):
        args, h_dtype = cache
        with jax.enable_x64(True):
            grads = pullback_jit(args, jnp.asarray(np.asarray(dh), dtype=h_dtype))
            return tuple(np.array(g) for g in grads)

    fwd = named(forward, arg_names, f"{label}.forward")
    bwd = named(backward, ["dh", "cache"], f"{label}.backward")
    platform = where.platform if where is not None else jax.default_backend()
    return FrameworkCode(fwd, bwd, roles, dict(zip(roles, arg_names)), f"{kind}, {name} on {platform}", name, None,
                         [], None, python=f"symrnn.verify.verify_framework({label}, ..., replay={{path!r}})",
                         symbolic=_symbolic(target))


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
