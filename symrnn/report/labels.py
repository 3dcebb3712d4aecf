"""Small helpers every section of a report uses: equation labels, the base name of a symbol, a shape in
LaTeX, an English list."""
from __future__ import annotations

import re

from ..engine.symbols import parse


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
