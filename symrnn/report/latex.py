"""The LaTeX printer of the reports, and line breaking for long equations.

:class:`ReportLatexPrinter` extends SymPy's ``LatexPrinter`` with one
``_print_<Class>`` method per symrnn object: time-indexed symbols
(``h[t-1]`` -> ``h_{t-1}``, ``bar a[t+1]`` -> ``\\bar{a}_{t+1}``), the linear
maps (``MatVec`` -> ``P v``, ``MatTVec`` -> ``P^\\top q``, ``Outer`` ->
``q v^\\top``), ``Diag``, ``sigmoid`` (``\\sigma``), ``relu`` and ``step``
(an indicator).  In step equations every symbol stands for a vector, so
products of vectors print with ``\\odot`` (setting ``elementwise``); the
worked example is scalar and turns it off.

:func:`break_lines` splits an expression into lines no wider than a budget
(measured by :func:`tex_width`, an estimate in units of about one italic
letter), at the terms of sums and the factors of products, descending into
parentheses with sized brackets (``\\bigl( ... \\bigr)`` and larger around them) when one term
alone is too long, each line indented by its depth:
amsmath has no automatic breaking of display equations.
"""
from __future__ import annotations

import re

import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import LatexPrinter, translate
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pretty.pretty_symbology import greek_unicode

from ..engine.bptt import Diag
from ..engine.symbols import MatTVec, MatVec, Outer, Param, parse
from . import matrix_notation

DEFAULT_SETTINGS = {
    "elementwise": True,  # products of vectors print with \odot
    "time": "t",  # the step: "t", "k" or a number (h[t-1] at time 1 prints h_0)
    "order": "none",  # keep the order in which the equations were written
    "term_rank": None,  # a key that orders the terms of a sum (the forward order of the quantities they read)
    "matrix_notation": {},  # a matrix cell's spreads and folds in textbook notation (matrix_notation.notations)
    "static": frozenset(),  # lets of the parameters alone (labels.parameter_lets): no step index on their values
}


#: Greek letters written as themselves in a name (``λ``) -> their LaTeX commands (``\\lambda``)
GREEK = {letter: translate(name) for name, letter in greek_unicode.items() if translate(name).startswith("\\")}


def _tex_letters(part: str) -> str:
    """A part of a name in LaTeX: Greek letters as commands (``λ`` -> ``\\lambda``), any other character
    outside ASCII by its code point (``\\mathrm{U+00E9}``: pdflatex typesets none of them in math), the rest
    as SymPy's ``translate`` writes it (``alpha`` -> ``\\alpha``, ``xhat`` -> ``\\hat{x}``)."""
    if part.isascii():
        return translate(part)
    if part in GREEK:
        return GREEK[part]
    return " ".join(_tex_letters(c) if c.isascii() or c in GREEK else r"\mathrm{U+%04X}" % ord(c) for c in part)


def is_vector(expr) -> bool:
    """Whether ``expr`` (from a step equation) is vector-valued."""
    if isinstance(expr, (MatVec, MatTVec, Outer)):
        return True
    return any(isinstance(s, Param) or parse(s) is not None for s in expr.free_symbols)


class ReportLatexPrinter(LatexPrinter):
    """``LatexPrinter`` for symrnn's vocabulary (see the module docstring)."""

    printmethod = "_symrnn_latex"  # our _print_ methods win over the objects' own _latex
    _default_settings = {**LatexPrinter._default_settings, **DEFAULT_SETTINGS}

    def _as_ordered_terms(self, expr, order=None):
        terms = super()._as_ordered_terms(expr, order=order)
        rank = self._settings["term_rank"]
        return sorted(terms, key=rank) if rank is not None else terms

    # -- names ------------------------------------------------------------------
    def _print_Symbol(self, expr, style="plain"):
        name = self._settings["symbol_names"].get(expr)
        if name is not None:
            return name
        parsed = parse(expr)
        if parsed is None:
            plain = "__" not in expr.name and expr.name.isascii()
            return super()._print_Symbol(expr, style) if plain else self.name_tex(expr.name, group=True)
        base, offset, is_bar = parsed
        if base in self._settings["static"] and not is_bar:  # the same at every step; its adjoint is a step's share
            return self.name_tex(base)
        return self.name_tex(base, bar=is_bar, index=self.time_index(offset))

    def name_tex(self, base: str, bar: bool = False, index: str | None = None, group: bool = False) -> str:
        """``h`` -> ``h``, ``b_hn`` -> ``b_{hn}``, ``λ`` -> ``\\lambda``; with ``bar`` and a subscript ``index``
        appended.  With ``group`` (a parameter's name), a name with a superscript (``W__x``) is one group,
        ``{W^{x}}``: a transpose may follow it."""
        name, supers, subs = split_super_sub(base)
        tex = _tex_letters(name)
        if bar:
            tex = r"\bar{%s}" % tex
        subs = [_tex_letters(s) for s in subs] + ([index] if index is not None else [])
        if supers:
            tex += "^{%s}" % " ".join(_tex_letters(s) for s in supers)
            tex = "{%s}" % tex if group else tex
        if subs:
            tex += "_{%s}" % ",".join(subs)
        return tex

    def time_index(self, offset: int) -> str:
        time = self._settings["time"]
        if isinstance(time, int):
            return str(time + offset)
        return time if offset == 0 else f"{time}{offset:+d}"

    # -- the linear maps and diag -------------------------------------------------
    def _operand(self, expr):
        """A vector operand of a linear map, in parentheses unless it is a single symbol."""
        tex = self._print(expr)
        return tex if isinstance(expr, sp.Symbol) else r"\left(%s\right)" % tex

    def _print_MatVec(self, expr, exp=None):
        P, v = expr.args
        notation = self._settings["matrix_notation"]
        textbook = matrix_notation.matvec(self, P, v, notation) if notation else None
        return self._powered(textbook or f"{self._print(P)} {self._operand(v)}", exp)

    def _print_MatTVec(self, expr, exp=None):
        P, q = expr.args
        notation = self._settings["matrix_notation"]
        textbook = matrix_notation.matvec_transposed(self, P, q, notation) if notation else None
        return self._powered(textbook or f"{self._print(P)}^{{\\top}} {self._operand(q)}", exp)

    def _print_Outer(self, expr, exp=None):
        q, v = expr.args
        return f"{self._operand(q)} {self._print(v)}^{{\\top}}"

    def _print_Diag(self, expr, exp=None):
        return r"\operatorname{diag}\left(%s\right)" % self._print(expr.args[0])

    @staticmethod
    def _powered(tex, exp):
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)

    # -- elementwise functions ----------------------------------------------------
    def _print_sigmoid(self, expr, exp=None):
        head = r"\sigma" if exp is None else r"\sigma^{%s}" % exp
        return r"%s\left(%s\right)" % (head, self._print(expr.args[0]))

    def _print_relu(self, expr, exp=None):
        head = r"\operatorname{relu}" if exp is None else r"\operatorname{relu}^{%s}" % exp
        return r"%s\left(%s\right)" % (head, self._print(expr.args[0]))

    def _print_step(self, expr, exp=None):
        return self._powered(r"\mathbf{1}\left[%s > 0\right]" % self._print(expr.args[0]), exp)

    def _print_Function(self, expr, exp=None):
        own = getattr(expr, "_latex", None)  # a user's function may bring its own LaTeX
        if own is not None and not isinstance(expr, sp.core.function.AppliedUndef):
            return self._powered(own(self), exp)
        return super()._print_Function(expr, exp)

    # -- products -------------------------------------------------------------------
    def _print_Mul(self, expr):
        if not expr.is_commutative:
            return self._matrix_product(expr)
        root = over_root(expr)
        if root is not None:  # sqrt(2)/2 W x, SymPy's normal form of W x / sqrt(2): the paper's 1/sqrt(d) W x
            sign, n, rest = root
            body = "" if rest == 1 else " " + self.parenthesize(rest, PRECEDENCE["Mul"], strict=True)
            return r"%s\frac{1}{\sqrt{%d}}%s" % (sign, n, body)
        if not (self._settings["elementwise"] and is_vector(expr)):
            return super()._print_Mul(expr)
        if self._settings["matrix_notation"]:
            outer = matrix_notation.outer_product(self, expr, self._settings["matrix_notation"])
            if outer is not None:
                return outer
        if expr.could_extract_minus_sign():
            return "- " + self.parenthesize(-expr, PRECEDENCE["Add"], strict=True)
        numer, denom = sp.fraction(expr, exact=True)
        if denom != 1:
            return r"\frac{%s}{%s}" % (self._print(numer), self._print(denom))
        factors = sp.Mul.make_args(expr)
        scalars = [f for f in factors if not is_vector(f)]
        vectors = [f for f in factors if is_vector(f)]
        head = super()._print_Mul(sp.Mul(*scalars)) if scalars else ""
        body = r" \odot ".join(self.parenthesize(f, PRECEDENCE["Mul"]) for f in vectors)
        if head in ("", "1"):
            return body
        return f"{head} {body}" if len(vectors) < 2 else r"%s \left(%s\right)" % (head, body)

    def _matrix_product(self, expr):
        c, nc = expr.args_cnc()
        parts = [self.parenthesize(f, PRECEDENCE["Mul"]) for f in nc]
        coeff = sp.Mul(*c)
        head = "" if coeff == 1 else ("- " if coeff == -1 else self._print(coeff) + " ")
        return head + " ".join(parts)


def over_root(expr):
    """``(sign, n, rest)`` when ``expr`` is ``sign rest / sqrt(n)`` with its number a rational times a square
    root (``sqrt(2)/2``, which SymPy makes of ``1/sqrt(2)``); ``None`` otherwise."""
    numbers = [f for f in sp.Mul.make_args(expr) if f.is_number]
    c = sp.Mul(*numbers)
    if not numbers or c.is_Rational or not c.is_real:
        return None
    square = c ** 2
    if not (square.is_Rational and square.p == 1 and square.q > 1):
        return None
    rest = sp.Mul(*[f for f in sp.Mul.make_args(expr) if not f.is_number])
    return ("- " if c.is_negative else ""), int(square.q), rest


def latex(expr, **settings) -> str:
    """``expr`` in LaTeX with :class:`ReportLatexPrinter` and ``settings``."""
    return ReportLatexPrinter(settings).doprint(expr)


# -- width ------------------------------------------------------------------------------
_ZERO_WIDTH = {"left", "right", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl", "Biggr",
               "operatorname", "mathbf", "mathrm",
               "bar", "hat", "frac", "top", "limits", "displaystyle", "notag", "mathcal", "text"}
_WIDE = {"tanh": 2.6, "log": 2.0, "exp": 2.2, "sum": 1.6, "prod": 1.6, "quad": 2.0, "qquad": 4.0,
         "odot": 1.8, "cdot": 1.4, "partial": 1.0, "operatorname": 0.0}
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|.", re.S)


def tex_width(tex: str) -> float:
    """Estimated width of math ``tex`` in units of about one italic letter.

    Sub- and superscripts count 0.7; ``\\frac{a}{b}`` counts the wider of its
    two parts; binary operators count their spacing.  It errs on the wide
    side: the tests compile the reports and fail on any overfull line.
    """
    width, _ = _measure(_TOKEN.findall(tex), 0, 1.0)
    return width


def _measure(tokens, i, scale, stop_at_close=False):
    width = 0.0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "}" and stop_at_close:
            return width, i + 1
        if tok == "{":
            w, i = _measure(tokens, i + 1, scale, True)
            width += w
            continue
        if tok in ("_", "^"):
            w, i = _group(tokens, i + 1, scale * 0.7)
            width += w
            continue
        if tok == r"\frac":
            num, i = _group(tokens, i + 1, scale)
            den, i = _group(tokens, i, scale)
            width += max(num, den) + 0.4 * scale
            continue
        if tok.startswith("\\") and len(tok) > 2:
            name = tok[1:]
            width += scale * _WIDE.get(name, 0.0 if name in _ZERO_WIDTH else 1.1)
        elif tok in "+-=<>":
            width += scale * 1.9
        elif tok in "()[]|,.;:":
            width += scale * 0.5
        elif tok.isspace() or tok in "&}":
            pass
        else:
            width += scale
        i += 1
    return width, i


def _group(tokens, i, scale):
    while i < len(tokens) and tokens[i].isspace():
        i += 1
    if i < len(tokens) and tokens[i] == "{":
        return _measure(tokens, i + 1, scale, True)
    w, _ = _measure(tokens[i:i + 1], 0, scale)
    return w, i + 1


# -- line breaking -------------------------------------------------------------------
class _Breaker:
    """Splits an expression into pieces; a line break may come between two pieces."""

    def __init__(self, printer: ReportLatexPrinter, budget: float):
        self.p = printer
        self.budget = budget

    def fits(self, tex):
        return tex_width(tex) <= self.budget

    def pieces(self, expr) -> list[str]:
        tex = self.p._print(expr)
        if self.fits(tex):
            return [tex]
        if isinstance(expr, sp.Add):
            return self._sum(expr)
        if isinstance(expr, sp.Mul):
            return self._product(expr)
        if isinstance(expr, (MatTVec, MatVec)):
            P, q = expr.args
            head = self.p._print(P) + ("^{\\top}" if isinstance(expr, MatTVec) else "")
            return self._wrapped(head + " " + OPEN, q, CLOSE)
        if isinstance(expr, Outer):
            q, v = expr.args
            return self._wrapped(OPEN, q, CLOSE + r" %s^{\top}" % self.p._print(v))
        if isinstance(expr, Diag):
            return self._wrapped(r"\operatorname{diag}" + OPEN, expr.args[0], CLOSE)
        return [tex]

    def _wrapped(self, opening, inner, closing):
        parts = self.pieces(inner)
        parts[0] = f"{opening}{parts[0]}"
        parts[-1] = f"{parts[-1]}{closing}"
        return parts

    def _sum(self, expr):
        out = []
        for i, term in enumerate(self.p._as_ordered_terms(expr, order=self.p._settings["order"])):
            sign = "" if i == 0 else "+ "
            if i > 0 and term.could_extract_minus_sign():
                sign, term = "- ", -term
            parts = self.pieces(term)
            if isinstance(term, sp.Add) or (i > 0 and self.p._needs_add_brackets(term)):
                parts[0], parts[-1] = OPEN + parts[0], parts[-1] + CLOSE
            parts[0] = sign + parts[0]
            out += parts
        return out

    def _product(self, expr):
        if expr.could_extract_minus_sign():
            parts = self.pieces(-expr)
            if isinstance(-expr, sp.Add):
                parts[0], parts[-1] = OPEN + parts[0], parts[-1] + CLOSE
            parts[0] = "- " + parts[0]
            return parts
        root = over_root(expr) if expr.is_commutative else None
        if root is not None and root[2] != 1:
            head = r"\frac{1}{\sqrt{%d}} " % root[1]
            if isinstance(root[2], sp.Add):
                return self._wrapped(head + OPEN, root[2], CLOSE)
            parts = self.pieces(root[2])
            parts[0] = head + parts[0]
            return parts
        if expr.is_commutative:
            numer, denom = sp.fraction(expr, exact=True)
            if denom != 1:
                return self._wrapped(r"\frac{1}{%s} " % self.p._print(denom) + OPEN, numer, CLOSE)
            factors = list(expr.as_ordered_factors())
            vector = self.p._settings["elementwise"] and is_vector(expr)
            if vector:
                factors = [f for f in factors if not is_vector(f)] + [f for f in factors if is_vector(f)]
        else:
            c, nc = expr.args_cnc()
            factors, vector = ([sp.Mul(*c)] if c else []) + nc, False
        out = []
        for f in factors:
            if vector:
                sep = r"\odot " if out and is_vector(f) else ""
            else:
                sep = PRODUCT_JOIN if out and expr.is_commutative else ""
            if isinstance(f, sp.Add):
                tex = self.p._print(f)
                parts = [r"\left(%s\right)" % tex] if self.fits(tex) else self._wrapped(OPEN, f, CLOSE)
            else:
                parts = self.pieces(f)
                if len(parts) == 1 and f.is_Pow is False and self.p._needs_mul_brackets(f):
                    parts = [r"\left(%s\right)" % parts[0]]
            if f == -1:
                parts = ["-"]
            parts[0] = sep + parts[0]
            out += parts
        return out


PRODUCT_JOIN = "\x00"  # marks a factor continuing a product: a line that starts with it gets \times
PIECE_RESERVE = 5.0  # room on a line for the sign and closing brackets added around a piece


OPEN, CLOSE = "\x01(", "\x01)"  # brackets around a broken group; sized and indented by break_lines
SIZES = (r"\bigl", r"\Bigl", r"\biggl", r"\Biggl")
CLOSES = (r"\bigr", r"\Bigr", r"\biggr", r"\Biggr")
INDENT = r"\quad "


def _plain(text: str) -> str:
    return text.replace(PRODUCT_JOIN, "").replace("\x01", "")


def _size_brackets(lines: list) -> list:
    """Each broken group's brackets sized by how much they enclose (the outermost largest), each
    line indented by the depth at which it starts, so the nesting of a long equation can be read."""
    text = "\x02".join(lines)
    deepest, inner, opens = {}, [], []  # inner: for each open group, the deepest group inside it
    for i in range(len(text)):
        if text.startswith(OPEN, i):
            opens.append(i)
            inner.append(0)
        elif text.startswith(CLOSE, i):
            start = opens.pop()
            height = inner.pop()
            deepest[start] = deepest[i] = height
            if inner:
                inner[-1] = max(inner[-1], height + 1)
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(OPEN, i):
            out.append(SIZES[min(deepest[i], len(SIZES) - 1)] + "(")
            depth += 1
            i += len(OPEN)
        elif text.startswith(CLOSE, i):
            out.append(CLOSES[min(deepest[i], len(CLOSES) - 1)] + ")")
            depth -= 1
            i += len(CLOSE)
        elif text[i] == "\x02":
            out.append("\x02" + INDENT * min(depth, 4))
            i += 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out).split("\x02")


def break_lines(expr, printer: ReportLatexPrinter, first: float, rest: float) -> list[str]:
    """The LaTeX of ``expr`` as lines: the first no wider than ``first``, the others ``rest``.

    A line that starts inside broken brackets is indented once per enclosing pair, and the
    brackets grow with what they enclose (``\\bigl(`` inside ``\\Bigl(`` inside ``\\biggl(``)."""
    tex = printer._print(expr)
    if tex_width(tex) <= first:
        return [tex]
    pieces = _Breaker(printer, min(first, rest) - PIECE_RESERVE).pieces(expr)
    lines, current, budget, depth = [], "", first, 0
    for piece in pieces:
        joined = piece.replace(PRODUCT_JOIN, "")
        candidate = f"{current} {joined}" if current else joined
        indent = tex_width(INDENT) * min(depth, 4)
        if current and tex_width(_plain(candidate)) + indent > budget:
            lines.append(current)
            depth += current.count(OPEN) - current.count(CLOSE)
            current, budget = piece.replace(PRODUCT_JOIN, r"\times "), rest
        else:
            current = candidate
    lines.append(current)
    return _size_brackets(lines)
