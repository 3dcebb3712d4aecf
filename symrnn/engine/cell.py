"""Cells: a recurrent step written as SymPy equations.

A cell declares its input, its state variables, its parameters (with shapes
in terms of the input size ``D`` and hidden size ``H``) and its update
equations.  Built-in cells (:mod:`symrnn.engine.cells`) and user cells are made the
same way::

    import symrnn as sr
    cell = sr.Cell("elman")
    x = cell.input()                      # x[t], size D
    h = cell.state("h")                   # h[t-1], size H
    U, W, b = cell.param("U", "H", "D"), cell.param("W", "H", "H"), cell.param("b", "H")
    a = cell.let("a", U @ x + W @ h + b)  # a[t]
    cell.update(h, sr.tanh(a))            # h[t]

Every equation is checked when it is written: unknown symbols, sizes that do
not conform and functions without a derivative rule are refused with a
message that names the equation.
"""
from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass

import sympy as sp

from .. import cache
from ..errors import CellDefinitionError, MissingRuleError
from .functions import derivative, rule_of, to_vocabulary
from .stored import cache_key
from .structure import BASE_SIZES, NOTATIONS, check_derived_size
from .symbols import MatVec, Param, parse, tsym

SIZE_NAMES = BASE_SIZES


@dataclass(frozen=True)
class ParamSpec:
    symbol: Param
    shape: tuple  # of size names, e.g. ("H", "D") or ("H",)
    role: str = ""
    fixed: tuple = ()  # (kind, repeat, block) of a spread or fold (symrnn.engine.structure): not trained
    notation: str = ""  # how a report prints a spread or fold (symrnn.engine.structure.NOTATIONS)

    @property
    def name(self) -> str:
        return self.symbol.name

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) == 2


@dataclass(frozen=True)
class Equation:
    target: sp.Symbol  # a let or a state at time t, e.g. a[t], h[t]
    rhs: sp.Expr
    kind: str  # "let" or "state"

    def __str__(self):
        return f"{self.target} = {self.rhs}"


@dataclass(frozen=True)
class PaperForm:
    """The paper's own equations of a cell (:meth:`Cell.written_in_the_paper`)."""
    lead: str
    equations: tuple
    after: str = ""


class Cell:
    """A recurrent cell defined by SymPy equations.

    Declare the input (:meth:`input`), the states (:meth:`state`), the parameters
    (:meth:`param`), intermediate quantities (:meth:`let`) and every state's update
    (:meth:`update`). ``P @ v`` is a matrix-vector product; everything else is elementwise.
    Each equation is checked when it is written: unknown symbols, sizes that do not conform
    and functions without a derivative rule raise :class:`~symrnn.CellDefinitionError`.

    Parameters
    ----------
    name : str
        The cell's name (reports, messages, generated code).
    description : str
        One line for the reports.

    Examples
    --------
    >>> import symrnn as sr
    >>> cell = sr.Cell("elman")
    >>> x = cell.input()                    # x[t], size D
    >>> h = cell.state("h")                 # h[t-1], size H
    >>> U, W, b = cell.param("U", "H", "D"), cell.param("W", "H", "H"), cell.param("b", "H")
    >>> cell.update(h, sr.tanh(U @ x + W @ h + b))
    h[t]
    >>> model = sr.Model(cell, D=3, H=4, K=2)
    >>> sorted(model.init_params(seed=0))
    ['U', 'V', 'W', 'b', 'c']
    """

    def __init__(self, name: str, description: str = ""):
        self.name = name
        self.description = description
        self.params: dict[str, ParamSpec] = {}
        self.input_symbol: sp.Symbol | None = None
        self.sizes: dict[sp.Symbol, str] = {}  # vector symbol -> size name
        self.states: dict[str, str] = {}  # state base name -> size name
        self.equations: list[Equation] = []
        self.output_state: str | None = None
        self.roles: dict[str, str] = {}  # quantity base name -> description
        self._auto = 0
        self._params_apart = False  # the readout: its parameters may share a name with its input
        self._pending = set()  # names being defined (kept from automatic lets)
        self.derived: dict[str, sp.Expr] = {}  # size name -> expression of D, H, K (matrix states, heads)
        self.paper_form: PaperForm | None = None  # the paper's own equations, when these rewrite them (reports)

    def written_in_the_paper(self, lead: str, equations, after: str = "") -> None:
        """The paper's own form of the cell, when its equations here are a rewriting of it (the LRU's complex
        numbers as real and imaginary parts); the reports print it before the forward pass.

        Parameters
        ----------
        lead : str
            The sentence before the equations, with inline LaTeX math between ``$`` signs.
        equations : list of (str, str)
            ``(left side, right side)`` in LaTeX, printed as unnumbered displayed equations.
        after : str, optional
            The sentence after them (how the cell's equations rewrite these), inline math as in ``lead``.

        Examples
        --------
        >>> import symrnn as sr
        >>> cell = sr.Cell("leaky")
        >>> x, h = cell.input(), cell.state("h")
        >>> _ = cell.update(h, cell.param("U", "H", "D") @ x + h / 2)
        >>> cell.written_in_the_paper("The paper writes", [("h_{t}", "U x_{t} + h_{t-1} / 2")], "in short.")
        >>> cell.paper_form.equations
        (('h_{t}', 'U x_{t} + h_{t-1} / 2'),)
        """
        self.paper_form = PaperForm(lead, tuple((str(a), str(b)) for a, b in equations), after)

    # -- declarations -----------------------------------------------------
    def input(self, name: str = "x", size: str = "D", role: str = "input") -> sp.Symbol:
        """Declare the input vector; returns the symbol ``x[t]``."""
        if self.input_symbol is not None:
            raise CellDefinitionError(f"Cell {self.name!r} already has an input {self.input_symbol}.")
        self._check_new_name(name, "input")
        self._check_size(size, f"input {name!r}")
        self.input_symbol = tsym(name)
        self.sizes[self.input_symbol] = size
        self.roles[name] = role
        return self.input_symbol

    def state(self, name: str, size: str = "H", role: str = "state") -> sp.Symbol:
        """Declare a state variable; returns its previous value ``name[t-1]``."""
        self._check_new_name(name, "state")
        self._check_size(size, f"state {name!r}")
        self.states[name] = size
        self.sizes[tsym(name, -1)] = size
        self.roles[name] = role
        if self.output_state is None:
            self.output_state = name
        return tsym(name, -1)

    def param(self, name: str, *shape: str, role: str = "") -> Param:
        """Declare a parameter of shape ``("H", "D")``, ``("H", "H")`` or ``("H",)``."""
        self._check_new_name(name, "param")
        if len(shape) not in (1, 2):
            raise CellDefinitionError(
                f"Parameter {name!r} has shape {shape}; give one size name for a vector "
                f"or two for a matrix, from {SIZE_NAMES}."
            )
        for s in shape:
            self._check_size(s, f"parameter {name!r}")
        symbol = Param(name)
        self.params[name] = ParamSpec(symbol, tuple(shape), role)
        if len(shape) == 1:
            self.sizes[symbol] = shape[0]
        return symbol

    def size(self, name: str, expr) -> str:
        """Declare a size derived from ``D``, ``H``, ``K`` and earlier derived sizes (e.g. the
        head size ``H / heads`` or the size ``H * HD`` of a flattened matrix state); returns ``name``.
        A model refuses sizes that make it anything but a positive integer."""
        if name in self.derived:
            raise CellDefinitionError(f"The size {name!r} is already declared in cell {self.name!r}.")
        self.derived[name] = check_derived_size(name, expr, SIZE_NAMES + tuple(self.derived))
        return name

    def spread(self, name: str, rows: str, cols: str, repeat, block=1, notation="") -> Param:
        """Declare the fixed spread ``E`` (rows x cols) that copies a vector ``repeat`` times
        (``block`` entries at a time): ``E @ v`` is ``v 1^T`` (block 1), ``1 k^T`` inside each
        head (block = head size), a per-head gate over its head; see :mod:`symrnn.engine.structure`.
        ``notation`` (``scalar``, ``rows``, ``cols``) says how reports print it; by default ``rows``
        for block 1 and ``cols`` otherwise."""
        return self._fixed(name, "spread", rows, cols, repeat, block, notation or ("rows" if block == 1 else "cols"))

    def fold(self, name: str, rows: str, cols: str, repeat, block=1, notation="rowsum") -> Param:
        """Declare the fixed fold ``F`` (rows x cols), the transpose of a spread: it sums
        ``repeat`` copies, so ``F @ (C * (E @ q))`` is ``C q`` and ``F @ (n * q)`` is ``n^T q``
        (``notation``: ``rowsum`` or ``dot``, for the reports)."""
        return self._fixed(name, "fold", rows, cols, repeat, block, notation)

    def _fixed(self, name, kind, rows, cols, repeat, block, notation):
        if notation not in NOTATIONS[kind]:
            raise CellDefinitionError(f"The {kind} {name!r} has notation {notation!r}; expected one of "
                                      f"{NOTATIONS[kind]}.")
        for s in (repeat, block):
            if not (isinstance(s, int) and not isinstance(s, bool) and s >= 1) and s not in self.derived \
                    and s not in SIZE_NAMES:
                raise CellDefinitionError(f"The {kind} {name!r} has repeat/block {s!r}; give a positive int, a size "
                                          f"{SIZE_NAMES} or a derived size of the cell ({sorted(self.derived)}).")
        symbol = self.param(name, rows, cols, role=f"fixed {kind}")
        self.params[name] = ParamSpec(symbol, (rows, cols), f"fixed {kind} (not trained)", (kind, repeat, block),
                                      notation)
        return symbol

    @property
    def fixed_params(self) -> list:
        """The names of the fixed spreads and folds (not trained, no gradient)."""
        return [name for name, spec in self.params.items() if spec.fixed]

    def let(self, name: str, expr, role: str = "") -> sp.Symbol:
        """Define an intermediate quantity ``name[t] = expr``; returns ``name[t]``."""
        self._check_new_name(name)
        target = tsym(name)
        self._pending.add(name)  # automatic lets made while reading expr must not take this name
        try:
            rhs = self._checked(target, expr)
        finally:
            self._pending.discard(name)
        size = self._size(rhs, target)
        if size is None:
            raise CellDefinitionError(
                f"In {target} = {rhs}: the value is a constant, not a vector; use the number {rhs} directly "
                f"where {name} would appear.")
        self.sizes[target] = size
        self.equations.append(Equation(target, rhs, "let"))
        self.roles[name] = role
        return target

    def update(self, state, expr) -> sp.Symbol:
        """Define the new value ``s[t] = expr`` of a declared state; returns ``s[t]``."""
        if isinstance(state, Param):
            raise CellDefinitionError(f"update({state}, ...): {state} is a parameter; only a state declared with "
                                      f"cell.state(...) is updated.")
        name = state if isinstance(state, str) else (parse(state) or ("",))[0]
        if name not in self.states:
            raise CellDefinitionError(
                f"update({state}, ...): {state} is not a declared state of cell {self.name!r}; "
                f"declare it with cell.state({name!r}) first (states: {sorted(self.states)})."
            )
        target = tsym(name)
        if target in self.sizes:
            raise CellDefinitionError(f"State {name!r} of cell {self.name!r} is updated twice.")
        rhs = self._checked(target, expr)
        size = self._size(rhs, target)
        if size not in (None, self.states[name]):
            raise CellDefinitionError(
                f"In {target} = {rhs}: the right side has size {size} but state {name!r} "
                f"has size {self.states[name]}."
            )
        self.sizes[target] = self.states[name]
        self.equations.append(Equation(target, rhs, "state"))
        return target

    def output(self, name: str) -> None:
        """Choose the state that the readout (and the next layer) sees."""
        if name not in self.states:
            raise CellDefinitionError(f"output({name!r}): not a state of {self.name!r}: {sorted(self.states)}.")
        self.output_state = name

    # -- queries ----------------------------------------------------------
    def validate(self) -> "Cell":
        """Refuse a cell that cannot work as a whole; returns the cell."""
        if self.input_symbol is None:
            raise CellDefinitionError(f"Cell {self.name!r} has no input; call cell.input().")
        if not self.states:
            raise CellDefinitionError(f"Cell {self.name!r} has no state; call cell.state('h').")
        missing = [s for s in self.states if tsym(s) not in self.sizes]
        if missing:
            raise CellDefinitionError(
                f"Cell {self.name!r}: state(s) {missing} are never updated; "
                f"add cell.update({missing[0]!r}, expression)."
            )
        return self

    @property
    def state_names(self) -> list[str]:
        return list(self.states)

    @property
    def states_read_back(self) -> tuple:
        """The states whose previous value an equation reads (``h[t-1]``): the recurrence.  Another state
        only holds an output (SRU's and S6's ``h``, LRU's ``out``): its initial value changes nothing."""
        read = {str(s) for eq in self.equations for s in eq.rhs.free_symbols}
        return tuple(s for s in self.states if f"{s}[t-1]" in read)

    def param_shape(self, name: str, sizes: dict) -> tuple:
        return tuple(sizes[s] for s in self.params[name].shape)

    def __repr__(self):
        lines = [f"Cell {self.name!r}"] + [f"  {e}" for e in self.equations]
        return "\n".join(lines)

    # -- checks -------------------------------------------------------------
    def _check_new_name(self, name, kind=""):
        """Refuse a name that is not an identifier, is taken, or would share a result key.

        Any Python identifier not starting with ``_`` is accepted, keywords and the
        names of builtins included: generated code never uses a user's name as it is.
        ``_`` starts the names the engine itself uses.  The gradient of a state's
        initial value is returned under ``name + "0"`` (``h0``, ``c0``), so a
        parameter or input with that name beside the state is refused.
        """
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise CellDefinitionError(
                f"{name!r} is not a usable name: use a Python identifier that does not start with '_' "
                f"(names starting with '_' are reserved for symrnn's own variables).")
        if unicodedata.normalize("NFKC", name) != name:
            raise CellDefinitionError(
                f"{name!r} is not in Unicode normal form NFKC, so Python would read it as "
                f"{unicodedata.normalize('NFKC', name)!r}; use that spelling.")
        known = set(self.params)
        if not (kind == "param" and self._params_apart):
            known |= set(self.states) | {parse(s)[0] for s in self.sizes if parse(s)}
        if name in known:
            role = self.roles.get(name, "")
            raise CellDefinitionError(f"The name {name!r} is already used in cell {self.name!r}"
                                      + (f" ({role})." if role else "."))
        keyed = set(self.params) | ({parse(self.input_symbol)[0]} if self.input_symbol is not None else set())
        if kind in ("param", "input") and name[-1:] == "0" and name[:-1] in self.states:
            raise CellDefinitionError(
                f"The {kind} name {name!r} is the key of the initial-state gradient of state {name[:-1]!r} "
                f"(grads[{name!r}]); rename the {kind} (or the state).")
        if kind == "state" and name + "0" in keyed:
            raise CellDefinitionError(
                f"A state named {name!r} has its initial-state gradient under grads[{name + '0'!r}], "
                f"which is already the name of a parameter or the input; rename one of them.")

    def _check_size(self, size, what):
        if size not in SIZE_NAMES and size not in self.derived:
            raise CellDefinitionError(f"The {what} has size {size!r}; expected one of {SIZE_NAMES} or a size "
                                      f"declared with cell.size ({sorted(self.derived)}).")

    def _checked(self, target, expr):
        try:
            rhs = sp.sympify(expr, strict=True)
        except (sp.SympifyError, TypeError) as exc:
            raise CellDefinitionError(f"In {target} = {expr!r}: not a SymPy expression ({exc}).") from None
        if not isinstance(rhs, sp.Expr):
            raise CellDefinitionError(
                f"In {target} = {expr!r}: a {type(rhs).__name__} is not a scalar expression; the right side "
                f"of an equation is one elementwise expression (vectors are symbols).")
        rhs = to_vocabulary(rhs)
        rhs = rhs.replace(lambda e: isinstance(e, MatVec), lambda e: self._normalized(target, e))
        where = f"In {target} = {rhs}"
        for s in rhs.free_symbols:
            if s in self.sizes:
                continue
            if isinstance(s, Param) and s.name in self.params:
                if not any(s == m.args[0] for m in rhs.atoms(MatVec)) or _used_outside_matvec(rhs, s):
                    raise CellDefinitionError(
                        f"{where}: the matrix {s} is used elementwise; multiply it with a vector: {s} @ v."
                    )
                continue
            raise CellDefinitionError(
                f"{where}: the symbol {s} is not defined in cell {self.name!r}. Known: "
                f"{sorted(str(k) for k in self.sizes)} and parameters {sorted(self.params)}."
            )
        _check_language(rhs, where)
        earlier = {m for e in self.equations for m in e.rhs.atoms(MatVec)}
        for m in sorted(rhs.atoms(MatVec) & earlier, key=sp.default_sort_key):
            P, v = m.args
            raise CellDefinitionError(
                f"{where}: the product {P} @ {v} is already computed in an earlier equation; compute it once "
                f"as a let (p = cell.let('p', {P} @ {v})) and use p in both equations.")
        return rhs

    def _automatic_name(self):
        taken = set(self.params) | set(self.states) | {parse(s)[0] for s in self.sizes if parse(s)} | self._pending
        self._auto = next(k for k in itertools.count(self._auto + 1) if f"v{k}" not in taken)
        return f"v{self._auto}"

    def _normalized(self, target, matvec):
        P, v = matvec.args
        if not (isinstance(P, Param) and P.name in self.params and self.params[P.name].is_matrix):
            raise CellDefinitionError(f"In {target}: {P} @ ... needs a matrix parameter on the left, got {P}.")
        if not isinstance(v, sp.Symbol) or isinstance(v, Param):  # a vector parameter gets a let too
            v = self.let(self._automatic_name(), v, role=f"the automatic let made for the argument of {P} @ (...)")
        if v not in self.sizes:
            raise CellDefinitionError(f"In {target}: the vector {v} in {P} @ {v} is not defined.")
        cols = self.params[P.name].shape[1]
        if self.sizes[v] != cols:
            raise CellDefinitionError(
                f"In {target}: {P} has shape {self.params[P.name].shape} but {v} has size "
                f"{self.sizes[v]}; the shapes do not conform."
            )
        return MatVec(P, v)

    def _size(self, expr, target):
        if isinstance(expr, MatVec):
            return self.params[expr.args[0].name].shape[0]
        if isinstance(expr, sp.Symbol):
            return self.sizes.get(expr)
        if expr.is_number:
            return None
        sizes = {self._size(a, target) for a in expr.args} - {None}
        if len(sizes) > 1:
            raise CellDefinitionError(
                f"In {target} = ...: the term {expr} mixes vectors of sizes {sorted(sizes)}; "
                f"elementwise operations need equal sizes."
            )
        return sizes.pop() if sizes else None

    @staticmethod
    def _check_differentiable(rhs, where):
        atoms = {m: sp.Dummy() for m in rhs.atoms(MatVec)}
        flat = rhs.xreplace(atoms)
        for s in flat.free_symbols:
            d = derivative(flat, s)
            if d.has(sp.Derivative) or d.has(sp.Subs):
                raise CellDefinitionError(
                    f"{where}: SymPy cannot differentiate it with respect to {s} (got {d}); "
                    f"give the function an fdiff method."
                )
            _check_constructs(d, f"{where}: its derivative with respect to {s} is {d}, and in it")


def _check_language(rhs, where):
    """``rhs`` is in the cell language and differentiable, its derivatives too (a success is kept
    in the disk cache, :mod:`symrnn.cache`, for expressions of symrnn's own functions)."""
    def check():
        _check_constructs(rhs, where)
        Cell._check_differentiable(rhs, where)
        return True

    key = cache_key(rhs)
    return cache.get_or_build("cell-language", key, check) if key else check()


def _check_constructs(expr, where):
    """Refuse anything but symbols, finite real numbers, constants, +, *, ** and functions with rules."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Symbol, sp.Add, sp.Mul, sp.Pow, MatVec, sp.NumberSymbol)):
            continue
        if node in (sp.zoo, sp.nan, sp.oo, sp.S.NegativeInfinity):
            raise CellDefinitionError(f"{where}: the number {node} is not finite; cells compute with finite numbers.")
        if node.is_Number:
            continue
        if node == sp.I:
            raise CellDefinitionError(f"{where}: the imaginary unit I appears; cells compute with real numbers.")
        if isinstance(node, sp.Function):
            try:
                rule_of(node)
            except MissingRuleError:
                name = type(node).__name__
                raise CellDefinitionError(
                    f"{where}: the function {name} has no NumPy implementation; register one with "
                    f"symrnn.register_function({name}, numpy_callable)."
                ) from None
            continue
        raise CellDefinitionError(
            f"{where}: {type(node).__name__} ({node}) is not part of the cell language; write equations with "
            f"+, -, *, /, **, numbers, constants such as pi, matrix products P @ v and elementwise functions "
            f"(symrnn.tanh, sigmoid, relu, exp, log, sin, cos, sqrt, Abs, Max, Min, or one registered with "
            f"symrnn.register_function)."
        )


def _used_outside_matvec(expr, symbol):
    stripped = expr.replace(lambda e: isinstance(e, MatVec), lambda e: sp.Integer(0))
    return symbol in stripped.free_symbols
