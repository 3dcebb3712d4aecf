"""Small helpers every section of a report uses: equation labels, the base name of a symbol, a shape in
LaTeX, an English list."""
from __future__ import annotations

import re

from ..engine.symbols import Param, parse
from .blocks import Math


def sym_base(symbol) -> str:
    return symbol.name.split("[")[0] if parse(symbol) is None else parse(symbol)[0]


def tex_label(*parts) -> str:
    return "eq:" + ":".join(re.sub(r"[^A-Za-z0-9]+", "-", str(p)) for p in parts)


def shape_tex(shape) -> str:
    return r" \times ".join(shape) if shape else "1"


def listing(parts):
    """``[a, ", ", b, " and ", c]``: parts joined as an English list."""
    if len(parts) <= 1:
        return list(parts)
    out = []
    for i, p in enumerate(parts):
        if i:
            out.append(" and " if i == len(parts) - 1 else ", ")
        out.append(p)
    return out


def parameter_lets(cell) -> frozenset:
    """The base names of the lets of ``cell`` that read the parameters alone (LRU's ``r = exp(-exp(nu))``,
    S6's ``A = -exp(A_log)``), directly or through other such lets: the same at every step."""
    static = set()
    for eq in cell.equations:
        if eq.kind == "let" and all(isinstance(s, Param) or (parse(s) is not None and parse(s)[0] in static
                                                             and parse(s)[1] == 0 and not parse(s)[2])
                                    for s in eq.rhs.free_symbols):
            static.add(sym_base(eq.target))
    return frozenset(static)


def inline_math(text: str) -> list:
    """The parts of a sentence with inline math between ``$`` signs:
    ``"a $x_{t}$."`` -> ``["a ", Math("x_{t}"), "."]``."""
    return [Math(piece) if i % 2 else piece for i, piece in enumerate(re.split(r"\$([^$]+)\$", text)) if piece]
