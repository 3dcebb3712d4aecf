"""Expressions and generated functions as text, for the disk cache (:mod:`symrnn.cache`).

What the engine derives is written with ``sympy.srepr`` (expressions) or as source text (the
NumPy functions of :func:`~symrnn.engine.functions.lambdify_numpy`), keyed by :func:`cache_key`, and
read back by :func:`from_srepr` (without ``eval``: only SymPy's core classes, symrnn's symbols and
its own functions are accepted) and :func:`compile_numpy`.  An expression with a function the
user registered has no key: its rules are the user's code, which no key can hold.
"""
from __future__ import annotations

import ast
import builtins
import inspect

import numpy as np
import sympy as sp

from .functions import BUILTIN_FUNCTIONS, RULES, lambdify_numpy
from .symbols import MatTVec, MatVec, Outer, Param

# NumPy's public names as sympy.lambdify's "numpy" module gives them (``from numpy import *``), read
# from the module's namespace: the star import would load every lazy submodule (f2py ...)
_NUMPY_NAMESPACE = {k: v for k, v in vars(np).items() if not k.startswith("_")}
_NUMPY_NAMESPACE.update({"numpy": np, "builtins": builtins, "range": range, "__builtins__": builtins})


def numpy_source(args, expr) -> str:
    """The source of :func:`lambdify_numpy`'s function, to be compiled by :func:`compile_numpy`."""
    return inspect.getsource(lambdify_numpy(args, expr))


def compile_numpy(source: str, filename: str):
    """The function defined by ``source`` (from :func:`numpy_source`), with NumPy and the rules of
    symrnn's functions in its namespace."""
    rules = {f"{name}__fn": rule.numpy for name, rule in RULES.items()}  # as registered now
    namespace = {**_NUMPY_NAMESPACE, **rules}
    exec(compile(source, filename, "exec"), namespace)
    return next(v for k, v in namespace.items() if k not in _NUMPY_NAMESPACE and k not in rules)


def cache_key(expr) -> str | None:
    """``expr`` in full as text (``sympy.srepr``), to key generated code in the disk cache; None
    when a function of the user's appears (its rules are the user's code, which a key cannot hold)."""
    return sp.srepr(expr) if own_functions_only(expr) else None


def own_functions_only(expr) -> bool:
    """True when every function applied in ``expr`` (or a list of expressions) is one of symrnn's own."""
    exprs = expr if isinstance(expr, (list, tuple)) else [expr]
    applied = {type(a) for e in exprs for a in sp.sympify(e).atoms(sp.Function)
               if not isinstance(a, (MatVec, MatTVec, Outer))}
    return applied <= BUILTIN_FUNCTIONS


def from_srepr(text: str):
    """The expression (or tuple/list of them) that ``sympy.srepr`` wrote as ``text``, read without
    ``eval``: only numbers, strings, tuples and lists, and calls of SymPy's core classes, symrnn's
    symbols and symrnn's own functions are accepted (anything else raises ``ValueError``).  It
    reads what :func:`cache_key`'s users stored in the disk cache."""
    return _from_node(ast.parse(text, mode="eval").body)


def _srepr_names() -> dict:
    names = {cls.__name__: cls for cls in (sp.Symbol, sp.Integer, sp.Rational, sp.Float, sp.Add, sp.Mul, sp.Pow,
                                           Param, MatVec, MatTVec, Outer)}
    names.update({cls.__name__: cls for cls in BUILTIN_FUNCTIONS})
    names.update({"pi": sp.pi, "E": sp.E, "oo": sp.oo, "zoo": sp.zoo, "nan": sp.nan, "Half": sp.S.Half})
    return names


def _from_node(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_from_node(n) for n in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Name) and isinstance(_SREPR_NAMES.get(node.id), sp.Basic):
        return _SREPR_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -_from_node(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and isinstance(_SREPR_NAMES.get(node.func.id),
                                                                                     type):
        return _SREPR_NAMES[node.func.id](*[_from_node(a) for a in node.args],
                                          **{k.arg: _from_node(k.value) for k in node.keywords})
    raise ValueError(f"not a stored expression: {ast.dump(node)[:80]}")


_SREPR_NAMES = _srepr_names()
