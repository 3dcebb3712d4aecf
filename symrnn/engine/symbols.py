"""The symbolic vocabulary shared by cells, derivations, printers and codegen.

Vectors are SymPy ``Symbol`` objects standing for one component of a vector,
so every expression built from them is elementwise and ``sympy.diff`` of it
is the diagonal of the Jacobian.  The only non-elementwise operations are the
three linear maps below, which never go through ``sympy.diff``:

* ``MatVec(P, v)``  is ``P v``       (forward affine maps),
* ``MatTVec(P, q)`` is ``P^T q``     (adjoints flowing back through ``P v``),
* ``Outer(q, v)``   is ``q v^T``     (one time step's share of ``dL/dP``).

Time-indexed quantities are named ``h[t-1]``, ``h[t]``, ``a[t+1]`` and their
adjoints ``bar h[t]``: :func:`tsym` builds them and :func:`shift` moves an
expression in time.
"""
from __future__ import annotations

import re

import sympy as sp

from ..errors import CellDefinitionError


class MatVec(sp.Function):
    """``P v``: the product of a parameter matrix and a vector."""

    nargs = 2

    def __matmul__(self, other):
        raise CellDefinitionError(f"({self.args[0]} @ {self.args[1]}) @ ...: a product of a matrix and a vector is a "
                        f"vector; write P @ (Q @ v) with the vector on the right.")

    def _latex(self, printer):
        return f"{printer._print(self.args[0])} {printer._print(self.args[1])}"


class MatTVec(sp.Function):
    """``P^T q``: an adjoint sent back through ``P v`` to ``v``."""

    nargs = 2

    def _latex(self, printer):
        return f"{printer._print(self.args[0])}^{{\\top}} {printer._print(self.args[1])}"


class Outer(sp.Function):
    """``q v^T``: one step's contribution to the gradient of a matrix."""

    nargs = 2

    def _latex(self, printer):
        return f"{printer._print(self.args[0])} {printer._print(self.args[1])}^{{\\top}}"


class Param(sp.Symbol):
    """A parameter symbol; ``P @ v`` builds ``MatVec(P, v)``."""

    def __matmul__(self, other):
        return MatVec(self, sp.sympify(other, strict=True))  # never parse strings

    def __rmatmul__(self, other):
        if isinstance(other, sp.Symbol) and parse(other) is not None:
            other = parse(other)[0]  # the name the user wrote: h, not h[t-1]
        raise CellDefinitionError(f"{other} @ {self}: a product is a parameter matrix times a vector, with the "
                                  f"matrix on the left; write {self} @ {other} (and declare {self}'s shape as "
                                  f"(rows, columns) of that product).")


_TIME_NAME = re.compile(r"^(bar )?([^\W\d]\w*)\[t([+-]\d+)?\]$")


def tsym(base: str, offset: int = 0, bar: bool = False) -> sp.Symbol:
    """The symbol of quantity ``base`` at time ``t + offset`` (or its adjoint)."""
    when = "t" if offset == 0 else f"t{offset:+d}"
    return sp.Symbol(f"{'bar ' if bar else ''}{base}[{when}]")


def parse(symbol: sp.Symbol):
    """``(base, offset, bar)`` for a time-indexed symbol, ``None`` otherwise."""
    match = _TIME_NAME.match(symbol.name)
    if match is None:
        return None
    bar, base, offset = match.groups()
    return base, int(offset or 0), bool(bar)


def bar(symbol: sp.Symbol) -> sp.Symbol:
    """The adjoint symbol of a time-indexed symbol."""
    base, offset, _ = parse(symbol)
    return tsym(base, offset, bar=True)


def rename_times(expr, rename):
    """``expr`` with every time-indexed symbol replaced by ``rename(base, offset, is_bar)``."""
    mapping = {s: rename(*parse(s)) for s in expr.free_symbols if parse(s) is not None}
    return expr.xreplace(mapping)


def shift(expr, k: int):
    """``expr`` with every time-indexed symbol moved ``k`` steps later."""
    return rename_times(expr, lambda base, offset, is_bar: tsym(base, offset + k, is_bar))


def linear_maps(expr):
    """The ``MatVec`` atoms of an expression, in a stable order."""
    return sorted(expr.atoms(MatVec), key=sp.default_sort_key)


def at_step(expr, t: int):
    """``expr`` with ``t`` set to a number: ``h[t-1]`` -> ``h_2`` at ``t = 3``."""
    return rename_times(
        expr, lambda base, offset, is_bar: sp.Symbol(f"{'bar_' if is_bar else ''}{base}_{t + offset}"))
