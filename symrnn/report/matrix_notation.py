"""Textbook notation for matrix-valued states in the reports.

A matrix cell writes its outer products, products with the state and reductions with fixed
spreads and folds (:mod:`symrnn.engine.structure`); the reports print them as a paper does.  With
``E_r v = v 1^T``, ``E_c k = 1 k^T`` (inside each head), a per-head gate ``E g`` printed as ``g``:

* ``(E_r v) * (E_c k)`` prints ``v k^T`` (an outer product);
* a ``rowsum`` fold of ``C * (E_c q)`` prints ``C q``, a ``dot`` fold of ``n * q`` prints ``n^T q``;
* in the adjoints, ``E_r^T (X * (E_c k))`` prints ``X k``, ``E_c^T (X * (E_r v))`` prints ``X^T v``,
  ``E_r^T X`` prints ``X 1`` (row sums), ``E_c^T X`` prints ``X^T 1``, a gate's ``E^T X`` prints
  ``sum(X)`` (over its head), a fold's transpose ``F_r^T w`` prints ``w 1^T`` and ``F_h^T w``
  prints ``w`` (broadcast over the head).

:func:`notations` reads a cell's spreads and folds and the definitions of the quantities its folds
read, for the printer's setting ``matrix_notation``.
"""
from __future__ import annotations

import sympy as sp

from ..engine.symbols import MatVec


def notations(cell) -> dict:
    """``{"maps": {name: notation}, "definitions": {let symbol: rhs}}`` for ``cell`` (empty when it has
    no spread or fold)."""
    maps = {name: spec.notation for name, spec in cell.params.items() if spec.fixed}
    if not maps:
        return {}
    folded = {m.args[1] for e in cell.equations for m in e.rhs.atoms(MatVec) if m.args[0].name in maps}
    definitions = {e.target: e.rhs for e in cell.equations if e.target in folded}
    return {"maps": maps, "definitions": definitions}


def _spread_of(expr, maps, kind):
    """The vector ``v`` when ``expr`` is ``E v`` for a spread ``E`` printed as ``kind``, else None."""
    if isinstance(expr, MatVec) and maps.get(getattr(expr.args[0], "name", None)) == kind:
        return expr.args[1]
    return None


def _split(expr, maps, kind):
    """``(v, rest)`` when ``expr`` is ``rest * (E v)`` with one spread ``E`` of ``kind``, else None."""
    factors = sp.Mul.make_args(expr)
    found = [(k, _spread_of(f, maps, kind)) for k, f in enumerate(factors)]
    found = [(k, v) for k, v in found if v is not None]
    if len(found) != 1:
        return None
    k, v = found[0]
    return v, sp.Mul(*(factors[:k] + factors[k + 1:]))


def matvec(printer, P, v, settings):
    """The LaTeX of ``P v`` for a spread or fold ``P`` (None for any other matrix)."""
    maps = settings["maps"]
    kind = maps.get(getattr(P, "name", None))  # a dotted matrix (the sensitivities' source terms) is no spread
    if kind is None:
        return None
    if kind == "scalar":
        return printer._print(v)
    if kind == "rows":
        return r"%s \mathbf{1}^{\top}" % printer._operand(v)
    if kind == "cols":
        return r"\mathbf{1} %s^{\top}" % printer._operand(v)
    rhs = settings["definitions"].get(v)
    if kind == "rowsum":
        split = None if rhs is None else _split(rhs, maps, "cols")
        return (r"%s \mathbf{1}" % printer._operand(v) if split is None
                else f"{printer._operand(split[1])} {printer._print(split[0])}")
    factors = [] if rhs is None else sp.Mul.make_args(rhs)
    if len(factors) == 2:
        return r"%s^{\top} %s" % (printer._operand(factors[0]), printer._operand(factors[1]))
    return r"\mathbf{1}^{\top} %s" % printer._operand(v)


def matvec_transposed(printer, P, q, settings):
    """The LaTeX of ``P^T q`` for a spread or fold ``P`` (None for any other matrix)."""
    maps = settings["maps"]
    kind = maps.get(getattr(P, "name", None))
    if kind is None:
        return None
    if kind in ("rows", "cols"):
        split = _split(q, maps, "cols" if kind == "rows" else "rows")
        if split is not None:
            v, rest = split
            head = printer._operand(rest) + ("" if kind == "rows" else r"^{\top}")
            return f"{head} {printer._print(v)}"
        return r"%s%s \mathbf{1}" % (printer._operand(q), "" if kind == "rows" else r"^{\top}")
    if kind == "scalar":
        return r"\operatorname{sum}\left(%s\right)" % printer._print(q)
    if kind == "rowsum":
        return r"%s \mathbf{1}^{\top}" % printer._operand(q)
    return printer._print(q)


def outer_product(printer, expr, settings):
    """The LaTeX of a product holding ``(E_r v) * (E_c k)``: ``v k^T`` times the rest; None otherwise."""
    maps = settings["maps"]
    rows, cols = _split(expr, maps, "rows"), _split(expr, maps, "cols")
    if rows is None or cols is None:
        return None
    v, _ = rows
    k, rest = _split(expr, maps, "cols")
    rest = _split(rest, maps, "rows")[1]
    outer = r"%s %s^{\top}" % (printer._operand(v), printer._operand(k))
    if rest == 1:
        return outer
    return r"%s \odot %s" % (printer.parenthesize(rest, 50), outer) if rest != -1 else "- " + outer
