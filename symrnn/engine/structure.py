"""Matrix-valued states: flattened matrices and the fixed linear maps between shapes.

A matrix state ``C`` of ``A`` blocks (heads) of ``R x B`` entries is a vector state of size
``A * R * B`` in row-major order: entry ``(a, r, b)`` is component ``(a * R + r) * B + b``.
Every operation of a matrix cell is then elementwise on equal sizes, or one of two fixed
linear maps, written ``E @ v`` like any product with a matrix:

* a **spread** ``E`` of shape ``(A*R*B, A*B)`` copies ``v`` (viewed ``(A, B)``) ``R`` times along a
  new middle axis: ``(E v)[(a*R + r)*B + b] = v[a*B + b]``.  With ``B = 1`` it copies every
  entry ``R`` times (``v 1^T``, and a per-head gate broadcast over its head); with ``A = 1``
  it tiles ``v`` (``1 k^T``); with ``A`` heads it does either inside each head;
* a **fold** ``F = E^T`` of shape ``(A*B, A*R*B)`` sums over that middle axis: the adjoint of
  a spread, and the reductions ``C q = F (C * (E q))`` and ``n^T q = F (n * q)``.

So the outer product ``v k^T`` is ``(E_v v) * (E_k k)``, a product with the state ``C q`` is
a fold of an elementwise product, and an inner product is a fold too.  Because spreads and
folds are ordinary products with (fixed) matrices, every route that handles ``P v`` handles
them with no change: the derivation (``E^T`` carries the adjoint back, so the adjoint of an
outer product is a fold and that of a fold is a spread), the generated code, the oracles,
the decay study (the Jacobian of the flattened state) and the verifier.  The matrices are
not trained: a model fills them in (:func:`fixed_values`) and reports no gradient for them.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import CellDefinitionError, ShapeError

#: The sizes every model gives; a cell may derive more from them (:meth:`Cell.size`).
BASE_SIZES = ("D", "H", "K")

#: How the reports print ``E v`` (:mod:`symrnn.report.matrix_notation`): a spread as the quantity itself
#: (``scalar``: a per-head gate over its head), as ``v 1^T`` (``rows``) or ``1 v^T`` (``cols``); a fold of
#: ``C * (1 q^T)`` as ``C q`` (``rowsum``), of ``n * q`` as ``n^T q`` (``dot``).
NOTATIONS = {"spread": ("scalar", "rows", "cols"), "fold": ("rowsum", "dot")}


def size_value(size, sizes) -> int:
    """The integer value of a size name or a positive integer, given the model's ``sizes``."""
    return int(size) if isinstance(size, (int, np.integer)) else int(sizes[size])


def resolve_sizes(derived, sizes, cell_name="") -> dict:
    """``sizes`` with every derived size (name -> SymPy expression of D, H, K) evaluated.

    Raises :class:`~symrnn.errors.ShapeError` when a derived size is not a positive integer
    (``H`` not divisible by the number of heads, for instance).
    """
    out = dict(sizes)
    for name, expr in derived.items():
        value = sp.sympify(expr).subs({sp.Symbol(k): v for k, v in out.items() if v is not None})
        if not (value.is_Integer and value > 0):
            raise ShapeError(
                f"Cell {cell_name!r} derives the size {name} = {expr}, which is {value} for "
                f"{', '.join(f'{k}={v}' for k, v in sizes.items() if v is not None)}; choose sizes that make it "
                f"a positive integer.")
        out[name] = int(value)
    return out


def check_derived_size(name, expr, known):
    """Refuse a derived size whose name could meet a name of generated code, or whose
    expression reads anything but earlier sizes and numbers; returns the SymPy expression."""
    if not (isinstance(name, str) and name.isalpha() and name.isupper() and 2 <= len(name) <= 3
            and name != "EXT"):
        raise CellDefinitionError(
            f"The size name {name!r} is not usable: give 2 or 3 capital letters (e.g. 'HD', 'NH'); one-letter "
            f"names are those of the model ({', '.join(BASE_SIZES)}) and of generated code (T, N, X).")
    try:
        value = sp.sympify(expr, strict=True)
    except (sp.SympifyError, TypeError):
        raise CellDefinitionError(
            f"The size {name} = {expr!r} is not a SymPy expression (text is not parsed): give an integer or an "
            f"expression of the sizes' symbols, e.g. cell.size({name!r}, sympy.Symbol('H') ** 2).") from None
    unknown = {str(s) for s in value.free_symbols} - set(known)
    if unknown:
        raise CellDefinitionError(f"The size {name} = {value} reads {sorted(unknown)}; use only {sorted(known)}.")
    return value


def structural_matrix(kind, rows, cols, repeat, block) -> np.ndarray:
    """The 0/1 matrix of a spread (``kind="spread"``, shape ``(A*R*B, A*B)``) or a fold
    (``kind="fold"``, its transpose), for ``R = repeat`` and ``B = block``.

    Examples
    --------
    >>> from symrnn.engine.structure import structural_matrix
    >>> structural_matrix("spread", 4, 2, 2, 1).astype(int).tolist()   # v 1^T for v of size 2
    [[1, 0], [1, 0], [0, 1], [0, 1]]
    >>> structural_matrix("fold", 2, 4, 2, 2).astype(int).tolist()     # sums of the rows of 2 x 2 blocks
    [[1, 0, 1, 0], [0, 1, 0, 1]]
    """
    big, small = (rows, cols) if kind == "spread" else (cols, rows)
    if small % block or big != small * repeat:
        raise ShapeError(f"A {kind} with repeat {repeat} and block {block} cannot map size {small} to {big}: "
                         f"the sizes need {small} divisible by {block} and {big} = {small} * {repeat}.")
    heads = small // block
    index = np.arange(big).reshape(heads, repeat, block)
    source = np.arange(small).reshape(heads, 1, block)
    matrix = np.zeros((big, small))
    matrix[index.ravel(), np.broadcast_to(source, index.shape).ravel()] = 1.0
    return matrix if kind == "spread" else np.ascontiguousarray(matrix.T)


def fixed_values(params, sizes, dtype=np.float64) -> dict:
    """The values of the fixed parameters among ``params`` (name -> ParamSpec) at ``sizes``."""
    out = {}
    for name, spec in params.items():
        if spec.fixed:
            kind, repeat, block = spec.fixed[:3]
            rows, cols = (size_value(s, sizes) for s in spec.shape)
            out[name] = structural_matrix(kind, rows, cols, size_value(repeat, sizes),
                                          size_value(block, sizes)).astype(dtype)
    return out


def spread_values(v, repeat, block):
    """``E v`` for every row of ``v`` ``(N, A*B)``: each block of ``block`` entries copied ``repeat`` times,
    ``(N, A*repeat*block)`` (what the generated code runs in place of the product with the matrix).

    ``np.repeat`` of the rows of ``block`` entries copies whole rows (a tile of ``1 k^T`` is one copy of
    ``k`` per channel): two to five times faster than a copy from a broadcast view, whose inner loop runs
    over the ``repeat`` (or ``block``) entries only."""
    N, n = v.shape
    if block == 1:  # every entry repeated
        return np.repeat(v, repeat, axis=1)
    return np.repeat(v.reshape(N * (n // block), 1, block), repeat, axis=1).reshape(N, -1)


def fold_values(y, repeat, block):
    """``F y`` for every row of ``y`` ``(N, A*repeat*block)``: the ``repeat`` copies summed, ``(N, A*block)``.

    A product with a vector of ones (the BLAS's) where the copies are the last axis (``block = 1``) or the
    only blocks (one head, ``A = 1``); else ``einsum``'s loop, 4 to 5 times faster than ``ndarray.sum`` over
    a short middle axis.  The sums are the same up to their order of addition."""
    N, n = y.shape
    heads = n // (repeat * block)
    ones = np.ones(repeat, dtype=y.dtype)
    if block == 1:
        return (y.reshape(N * heads, repeat) @ ones).reshape(N, -1)
    if heads == 1:
        return ones @ y.reshape(N, repeat, block)
    return np.einsum("narb->nab", y.reshape(N, heads, repeat, block)).reshape(N, -1)


def fixed_code(specs, slices, source, target, transpose, bind=False):
    """Lines of generated code applying spreads and folds (``specs``: their ``(kind, repeat, block)``) to
    ``source`` into the column ``slices`` of ``target`` (``(None, None)``: the whole array; with ``bind``,
    ``target`` names the new array instead of receiving a copy); with ``transpose``, their transposes from
    the columns of ``source``, summed into ``target``."""
    lines = []
    for k, ((kind, repeat, block), (a, b)) in enumerate(zip(specs, slices)):
        forward = (kind == "spread") != transpose
        part = f"{source}[:, {a}:{b}]" if (a is not None and transpose) else source
        call = f"{'spread__fn' if forward else 'fold__fn'}({part}, {repeat}, {block})"
        if transpose:
            lines.append(f"{target} {'=' if k == 0 else '+='} {call}")
        else:
            lines.append(f"{target}{f'[:, {a}:{b}]' if a is not None else ('' if bind else '[...]')} = {call}")
    return lines


def contraction_code(spread, other, factor, vector):
    """Code of ``E^T (X * (E' w))`` as one batched product, or None: ``spread`` and ``other`` are the
    ``(kind, repeat, block)`` of the spreads ``E`` and ``E'``, ``factor`` and ``vector`` the code of ``X``
    (``(N, A*R*B)``) and ``w``.

    Two shapes of a matrix cell's backward are such sums: ``E`` copies every entry (``block`` 1, viewing
    ``X`` as rows of ``R``) and ``E'`` varies along them (``block`` ``R``): ``C q`` for each row, ``X``
    ``(R', R)`` times ``w`` ``(R, 1)``; or ``E'`` copies every entry ``repeat = B`` times and ``E`` sums over
    its copies: ``w^T X`` for ``w`` ``(1, R)`` and ``X`` ``(R, B)``.  Each saves making the copy ``E' w``,
    the product and the sum (three passes over the matrix state) for one pass of BLAS.

    Examples
    --------
    >>> import numpy as np
    >>> from symrnn.engine.structure import contraction_code, fold_values, spread_values
    >>> rng = np.random.default_rng(0)
    >>> N, X, B = 2, rng.normal(size=(2, 12)), rng.normal(size=(2, 4))   # 3 channels x 4 states; B_t
    >>> code = contraction_code(("spread", 4, 1), ("spread", 3, 4), "X", "B")
    >>> bool(np.allclose(eval(code), fold_values(X * spread_values(B, 3, 4), 4, 1)))
    True
    >>> u = rng.normal(size=(2, 3))
    >>> code = contraction_code(("spread", 3, 4), ("spread", 4, 1), "X", "u")
    >>> bool(np.allclose(eval(code), fold_values(X * spread_values(u, 4, 1), 3, 4)))
    True
    """
    (kind, repeat, block), (kind2, repeat2, block2) = spread[:3], other[:3]
    if kind != "spread" or kind2 != "spread":
        return None
    if str(block) == "1" and str(block2) == str(repeat):
        return f"np.matmul(({factor}).reshape(-1, {repeat2}, {block2}), ({vector}).reshape(-1, {block2}, 1)).reshape(N, -1)"
    if str(block2) == "1" and str(repeat2) == str(block):
        return f"np.matmul(({vector}).reshape(-1, 1, {repeat}), ({factor}).reshape(-1, {repeat}, {block})).reshape(N, -1)"
    return None
