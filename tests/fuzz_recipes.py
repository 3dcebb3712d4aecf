"""Random user-defined cells for ``test_fuzz_cells.py``: recipes, and two routes from each.

A :class:`Recipe` is a small data structure (declarations plus a list of
equations whose right sides are expression trees of tuples).  From one recipe
this module builds

* the symrnn :class:`~symrnn.Cell`, through the public API only (:func:`build_cell`), and
* an independent float64 PyTorch forward pass of the same model, whose loss and
  gradients come from autograd (:func:`torch_loss_and_grads`).  It uses nothing
  of symrnn but the recipe.

:func:`cells_and_recipes` is the Hypothesis strategy drawing a :class:`FuzzCase`
(a recipe and a problem: sizes, loss, data seed).

Expression trees (``Node``) are tuples:

=======================  ==================================================
``("input",)``           the input ``x[t]`` (size D)
``("prev", s)``          state ``s[t-1]``
``("new", s)``           state ``s[t]`` (only after its update)
``("let", a)``           intermediate ``a[t]``
``("param", p)``         vector parameter ``p``
``("const", c)``         a constant from :data:`CONSTANTS`
``("matvec", P, v)``     ``P @ v``
``("fn", f, v)``         unary function ``f`` from :data:`UNARY`
``(op, u, v)``           ``op`` in ``add sub mul max min``
``("blend", z, s, n)``   ``(1 - z) * s + z * n``
=======================  ==================================================

Values are kept finite and well conditioned by a worst-case magnitude estimate
(:class:`Bound`): a state update may not amplify the states (else it is wrapped
in a bounded function), and exp / ``2**`` only see bounded arguments.

To reproduce a reported case by hand: :meth:`Recipe.source` (printed in the
failure notes) is runnable with ``import symrnn as sr, sympy as sp`` and
``from fuzz_recipes import softsign``; ``FuzzCase(recipe, problem).data()``
gives its parameters, inputs, targets and initial states.
"""
from __future__ import annotations

import keyword
import math
from dataclasses import dataclass

import numpy as np
import sympy as sp
from hypothesis import assume, strategies as st

import symrnn as sr


# -- a registered function -------------------------------------------------------------

class softsign(sp.Function):
    """``a / (1 + |a|)``, registered with symrnn below (a user-defined function)."""

    nargs = 1

    def fdiff(self, argindex=1):
        a = self.args[0]
        return 1 / (1 + sp.Abs(a)) ** 2


sr.register_function(softsign, lambda a: a / (1 + np.abs(a)))


# -- names -------------------------------------------------------------------------------

PYTHON_KEYWORDS = ("lambda", "class", "None", "True", "if", "def")
BUILTINS = ("range", "len", "sum", "abs", "print", "min", "max")
LIBRARY_NAMES = ("np", "numpy", "sp", "tanh", "exp", "log", "sigmoid", "relu", "sin", "pi", "E", "I",
                 "S", "N", "Symbol", "softsign", "step", "Max", "Abs", "sqrt")
GENERATED_CODE_NAMES = ("t", "T", "N", "X", "H", "D", "K", "dtype", "cache", "EXT", "dS", "S0", "G0", "P0",
                        "m0", "m1", "p0", "q0", "k0", "w0", "Q0", "B_q0", "h_prev", "d_a", "carry_h", "S_h",
                        "C_a", "grads", "params", "sizes", "empty", "fresh", "y", "L", "lse", "scale", "values",
                        "program", "math", "mpmath", "d__L", "x__1_0", "h__0_0", "v1", "v2", "h__t", "x__t",
                        "U__p", "V__p")
RESULT_KEY_NAMES = ("w1", "w10", "h", "h0", "inp", "x", "V", "c", "s", "logits")
ORDINARY_NAMES = ("o", "b0", "g", "z", "a", "f", "n", "r", "u", "U", "W", "b")
UNICODE_NAMES = ("α", "β")

NAME_POOL = tuple(dict.fromkeys(PYTHON_KEYWORDS + BUILTINS + LIBRARY_NAMES + GENERATED_CODE_NAMES
                                + RESULT_KEY_NAMES + ORDINARY_NAMES + UNICODE_NAMES))
assert all(name.isidentifier() for name in NAME_POOL)
assert {"lambda", "class", "None", "True", "if", "def"} <= {n for n in NAME_POOL if keyword.iskeyword(n)}

# names for the route check: names that mean nothing to Python, NumPy, SymPy or symrnn's code
PLAIN_NAMES = tuple(f"{stem}_{letter}" for stem in ("gate", "mem", "Wt", "bias") for letter in "abcdefghijkl")

# forced name pairs whose gradient keys or readout names collide ("role": name)
COLLISIONS = {
    "state w1, parameter w10": {"state": "w1", "param": "w10"},
    "state h, parameter h0": {"state": "h", "param": "h0"},
    "input inp, parameter x": {"input": "inp", "param": "x"},
    "input o, state s, parameter logits": {"input": "o", "state": "s", "param": "logits"},
}

CELL_NAMES = ("mgu", 'a "quoted" cell', 'triple """ quotes', "triple ''' quotes", "two\nlines",
              "back\\slash", "{braces} and %s", "α-cell", "", "lambda", "x; import os")


# -- magnitudes ------------------------------------------------------------------------

STATE_MAGNITUDE = 60.0     # |state| <= 5 (initial) + T * UPDATE_OFFSET, T <= 6
UPDATE_OFFSET = 8.0        # a state update is bounded by UPDATE_OFFSET + 1 * |state|
NODE_LIMIT = 1e3           # larger intermediate values are wrapped in tanh
EXP_ARGUMENT_LIMIT = 20.0  # exp and 2** only see arguments this small
MATVEC_GAIN = 8.0          # |P v| <= 2 (largest scale) * 4 (largest size) * |v|


@dataclass(frozen=True)
class Bound:
    """Worst-case magnitude ``|value| <= offset + gain * STATE_MAGNITUDE``; ``gate``: value in [0, 1]."""

    offset: float
    gain: float = 0.0
    gate: bool = False

    @property
    def worst(self) -> float:
        return self.offset + (self.gain * STATE_MAGNITUDE if self.gain else 0.0)

    def scaled(self, k):
        return Bound(self.offset * k, self.gain * k)


UNIT = Bound(1.0)


def _sum(u, v):
    return Bound(u.offset + v.offset, u.gain + v.gain)


def _product(u, v):
    if u.gain and v.gain:
        return Bound(math.inf, math.inf)
    return Bound(u.offset * v.offset, u.offset * v.gain + v.offset * u.gain, u.gate and v.gate)


def _extremum(u, v):
    return Bound(max(u.offset, v.offset), max(u.gain, v.gain), u.gate and v.gate)


def _power(b, k):
    return Bound(b.offset ** k) if not b.gain else Bound(math.inf, math.inf)


# -- the functions a recipe may use -----------------------------------------------------------

@dataclass(frozen=True)
class Op:
    """One operation of the expression trees, in both routes."""

    code: str      # how symrnn code writes it (``{0}``, ``{1}``: the operands), parenthesized if compound
    sympy: object  # SymPy operands -> SymPy expression
    torch: object  # (torch module, tensors) -> tensor
    bound: object  # Bounds of the operands -> Bound of the value
    small_argument: bool = False  # exp-like: needs |argument| <= EXP_ARGUMENT_LIMIT


def _same(b):
    return Bound(b.offset, b.gain)


UNARY = {
    "tanh": Op("sr.tanh({0})", sr.tanh, lambda T, a: T.tanh(a), lambda b: UNIT),
    "sigmoid": Op("sr.sigmoid({0})", sr.sigmoid, lambda T, a: T.sigmoid(a), lambda b: Bound(1.0, gate=True)),
    "relu": Op("sr.relu({0})", sr.relu, lambda T, a: T.relu(a), _same),
    "exp": Op("sr.exp({0})", sr.exp, lambda T, a: T.exp(a), lambda b: Bound(math.exp(b.offset)),
              small_argument=True),
    "log1p_square": Op("sr.log(1 + {0} * {0})", lambda a: sr.log(1 + a * a), lambda T, a: T.log(1 + a * a),
                       lambda b: b.scaled(2)),
    "sin": Op("sp.sin({0})", sp.sin, lambda T, a: T.sin(a), lambda b: UNIT),
    "cos": Op("sp.cos({0})", sp.cos, lambda T, a: T.cos(a), lambda b: UNIT),
    "sqrt1p_square": Op("sp.sqrt(1 + {0}**2)", lambda a: sp.sqrt(1 + a ** 2), lambda T, a: T.sqrt(1 + a ** 2),
                        lambda b: Bound(b.offset + 1, b.gain)),
    "square": Op("({0}**2)", lambda a: a ** 2, lambda T, a: a ** 2, lambda b: _power(b, 2)),
    "cube": Op("({0}**3)", lambda a: a ** 3, lambda T, a: a ** 3, lambda b: _power(b, 3)),
    "pow2": Op("(2**{0})", lambda a: 2 ** a, lambda T, a: 2.0 ** a, lambda b: Bound(2.0 ** b.offset),
               small_argument=True),
    "third": Op("(sp.Rational(1, 3) * {0})", lambda a: sp.Rational(1, 3) * a, lambda T, a: a / 3,
                lambda b: b.scaled(1 / 3)),
    "neg": Op("(-{0})", lambda a: -a, lambda T, a: -a, _same),
    "abs": Op("sp.Abs({0})", sp.Abs, lambda T, a: T.abs(a), _same),
    "softsign": Op("softsign({0})", softsign, lambda T, a: a / (1 + T.abs(a)), lambda b: UNIT),
}
BOUNDED_FUNCTIONS = ("tanh", "sigmoid", "sin", "cos", "softsign")  # wrap an update that could grow
PLAIN_FUNCTIONS = ("tanh", "sigmoid")

BINARY = {
    "add": Op("({0} + {1})", lambda u, v: u + v, lambda T, u, v: u + v, _sum),
    "sub": Op("({0} - {1})", lambda u, v: u - v, lambda T, u, v: u - v, _sum),
    "mul": Op("({0} * {1})", lambda u, v: u * v, lambda T, u, v: u * v, _product),
    "max": Op("sp.Max({0}, {1})", sp.Max, lambda T, u, v: T.maximum(u, v), _extremum),
    "min": Op("sp.Min({0}, {1})", sp.Min, lambda T, u, v: T.minimum(u, v), _extremum),
}
PLAIN_BINARY = ("add", "sub", "mul")

CONSTANTS = {  # name: (code, SymPy value, float value)
    "one": ("1", sp.Integer(1), 1.0),
    "two": ("2", sp.Integer(2), 2.0),
    "third": ("sp.Rational(1, 3)", sp.Rational(1, 3), 1 / 3),
    "pi": ("sp.pi", sp.pi, math.pi),
    "E": ("sp.E", sp.E, math.e),
}


# -- recipes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamDecl:
    name: str
    shape: tuple  # ("H", "D"), ("H", "H"), ("H",) or ("D",)


@dataclass(frozen=True)
class Equation:
    kind: str    # "let" or "update"
    name: str    # the let's or the state's name
    size: str    # "H" or "D"
    expr: tuple  # a Node


@dataclass(frozen=True)
class Recipe:
    cell_name: str
    input_name: str
    states: tuple
    params: tuple  # of ParamDecl, in declaration order
    equations: tuple  # of Equation, in order
    output: str | None  # the state the readout sees (None: the default, the first state)

    @property
    def output_state(self) -> str:
        return self.output or self.states[0]

    def gradient_keys(self, with_readout: bool) -> list:
        """The keys ``loss_and_grads`` must return; repeated ones mean the cell must be refused."""
        readout = ["V", "c"] if with_readout else []
        return ([p.name for p in self.params] + readout + [self.input_name]
                + [f"{s}0" for s in self.states])

    def source(self) -> str:
        """The recipe as runnable symrnn code (``v`` holds the symbols: ``v["h[t-1]"]``, ``v["W"]``)."""
        lines = [f"cell = sr.Cell({self.cell_name!r})",
                 f"v = {{{symbol_key(('input',), self.input_name)!r}: cell.input({self.input_name!r})}}"]
        lines += [f"v[{symbol_key(('prev', s), '')!r}] = cell.state({s!r})" for s in self.states]
        lines += [f"v[{p.name!r}] = cell.param({p.name!r}, {', '.join(map(repr, p.shape))})" for p in self.params]
        for eq in self.equations:
            rhs = render(eq.expr, self.input_name)
            if eq.kind == "let":
                lines.append(f"v[{eq.name + '[t]'!r}] = cell.let({eq.name!r}, {rhs})")
            else:
                lines.append(f"v[{eq.name + '[t]'!r}] = cell.update(v[{eq.name + '[t-1]'!r}], {rhs})")
        if self.output is not None:
            lines.append(f"cell.output({self.output!r})")
        return "\n".join(lines)


def symbol_key(node, input_name) -> str:
    """The key of a leaf's symbol in the dict ``v`` of :meth:`Recipe.source`."""
    tag, name = node[0], (node[1] if len(node) > 1 else input_name)
    return {"input": f"{name}[t]", "prev": f"{name}[t-1]", "new": f"{name}[t]", "let": f"{name}[t]",
            "param": name}[tag]


def render(node, input_name) -> str:
    """A Node as symrnn code; compound code comes parenthesized, so it nests as it is."""
    tag = node[0]
    operands = [render(a, input_name) for a in node[1:] if isinstance(a, tuple)]
    if tag in ("input", "prev", "new", "let", "param"):
        return f"v[{symbol_key(node, input_name)!r}]"
    if tag == "const":
        return CONSTANTS[node[1]][0]
    if tag == "matvec":
        return f"(v[{node[1]!r}] @ {operands[0]})"
    if tag == "fn":
        return UNARY[node[1]].code.format(*operands)
    if tag == "blend":
        return "((1 - {0}) * {1} + {0} * {2})".format(*operands)
    return BINARY[tag].code.format(*operands)


def leaves(node):
    """The leaf nodes of an expression tree."""
    if node[0] in ("input", "prev", "new", "let", "param", "const"):
        return {node}
    return set().union(*(leaves(a) for a in node[1:] if isinstance(a, tuple)))


# -- recipe -> symrnn cell -------------------------------------------------------------------

def to_sympy(node, symbols):
    """The SymPy expression of a Node; ``symbols`` maps leaf nodes to the cell's symbols."""
    tag = node[0]
    if tag in ("input", "prev", "new", "let", "param"):
        return symbols[node]
    if tag == "const":
        return CONSTANTS[node[1]][1]
    if tag == "matvec":
        return symbols[("param", node[1])] @ to_sympy(node[2], symbols)
    if tag == "fn":
        return UNARY[node[1]].sympy(to_sympy(node[2], symbols))
    if tag == "blend":
        z, s, n = (to_sympy(a, symbols) for a in node[1:])
        return (1 - z) * s + z * n
    return BINARY[tag].sympy(to_sympy(node[1], symbols), to_sympy(node[2], symbols))


def build_cell(recipe: Recipe) -> sr.Cell:
    """The recipe's cell, through the public API (refusals raise ``sr.SymRNNError``)."""
    cell = sr.Cell(recipe.cell_name)
    symbols = {("input",): cell.input(recipe.input_name)}
    for s in recipe.states:
        symbols[("prev", s)] = cell.state(s)
    for p in recipe.params:
        symbols[("param", p.name)] = cell.param(p.name, *p.shape)
    for eq in recipe.equations:
        value = to_sympy(eq.expr, symbols)
        if eq.kind == "let":
            symbols[("let", eq.name)] = cell.let(eq.name, value)
        else:
            symbols[("new", eq.name)] = cell.update(symbols[("prev", eq.name)], value)
    if recipe.output is not None:
        cell.output(recipe.output)
    return cell


# -- problems and data -----------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    T: int
    N: int
    D: int
    H: int
    K: int
    scale: float
    architecture: str  # "many-to-many" or "many-to-one"
    loss: str
    reduction: str
    initial_states: str  # "all", "some" or "none" (zeros by default)
    seed: int

    @property
    def T_out(self) -> int:
        return self.T if self.architecture == "many-to-many" else 1

    @property
    def tiny(self) -> bool:
        return self.T <= 3 and self.H <= 2 and self.D <= 2 and self.N <= 2

    @property
    def has_readout(self) -> bool:
        return self.loss != "upstream"


@dataclass
class Data:
    params: dict
    x: np.ndarray
    y: np.ndarray
    h0: dict | None  # None: every initial state is zero


@dataclass(frozen=True)
class FuzzCase:
    recipe: Recipe
    problem: Problem

    def build_model(self) -> sr.Model:
        p = self.problem
        return sr.Model(build_cell(self.recipe), D=p.D, H=p.H, K=p.K, architecture=p.architecture,
                        loss=p.loss, reduction=p.reduction)

    @property
    def keys_collide(self) -> bool:
        keys = self.recipe.gradient_keys(self.problem.has_readout)
        return len(set(keys)) < len(keys)

    def data(self) -> Data:
        """Parameters (uniform in [-scale, scale]), inputs, targets and initial states, from the recipe
        alone (not from the model, so a wrong parameter table in the model shows)."""
        p, r = self.problem, self.recipe
        rng = np.random.default_rng(p.seed)
        sizes = {"D": p.D, "H": p.H, "K": p.K}
        decls = list(r.params) + ([ParamDecl("V", ("K", "H")), ParamDecl("c", ("K",))] if p.has_readout else [])
        params = {d.name: rng.uniform(-p.scale, p.scale, size=tuple(sizes[s] for s in d.shape)) for d in decls}
        x = rng.normal(size=(p.T, p.N, p.D))
        if p.loss == "cross-entropy":
            y = rng.integers(0, p.K, size=(p.T_out, p.N))
        else:
            y = rng.normal(size=(p.T_out, p.N, p.K if p.loss == "mse" else p.H))
        given = {"all": r.states, "some": r.states[::2], "none": ()}[p.initial_states]
        h0 = {s: rng.normal(size=(p.N, p.H)) for s in given} if p.initial_states != "none" else None
        return Data(params, x, y, h0)

    def __repr__(self):
        return f"FuzzCase(\n{self.recipe.source()}\n{self.problem})"


# -- recipe -> torch -----------------------------------------------------------------------------

def to_torch(node, values, torch):
    """The value of a Node at one step; ``values`` maps leaf nodes to tensors of shape (N, size)."""
    tag = node[0]
    if tag in ("input", "prev", "new", "let", "param"):
        return values[node]
    if tag == "const":
        return CONSTANTS[node[1]][2]
    if tag == "matvec":
        return to_torch(node[2], values, torch) @ values[("param", node[1])].T
    if tag == "fn":
        return UNARY[node[1]].torch(torch, to_torch(node[2], values, torch))
    if tag == "blend":
        z, s, n = (to_torch(a, values, torch) for a in node[1:])
        return (1 - z) * s + z * n
    return BINARY[tag].torch(torch, to_torch(node[1], values, torch), to_torch(node[2], values, torch))


def _torch_loss(problem, hs, P, y, torch):
    """The loss of the output states ``hs`` (T_out, N, H)."""
    if problem.loss == "upstream":
        return (hs * y).sum()
    logits = hs @ P["V"].T + P["c"]
    if problem.loss == "cross-entropy":
        picked = torch.log_softmax(logits, dim=-1).gather(-1, torch.as_tensor(y)[..., None])
        total, count = -picked.sum(), problem.T_out * problem.N
    else:
        total, count = ((logits - y) ** 2).sum(), logits.numel()
    return total / count if problem.reduction == "mean" else total


def torch_loss_and_grads(case: FuzzCase, data: Data, torch64):
    """Loss and gradients by a float64 torch forward pass of the recipe and autograd."""
    torch, r, p = torch64.torch, case.recipe, case.problem
    P = {k: torch64.tensor(v, grad=True) for k, v in data.params.items()}
    x = torch64.tensor(data.x, grad=True)
    given = data.h0 or {}
    h0 = {s: torch64.tensor(given[s], grad=True) if s in given else torch64.zeros(p.N, p.H, grad=True)
          for s in r.states}
    width = {"H": p.H, "D": p.D}
    state, outputs = dict(h0), []
    for t in range(p.T):
        values = {("input",): x[t]}
        values.update({("prev", s): v for s, v in state.items()})
        values.update({("param", k): v for k, v in P.items()})
        for eq in r.equations:
            value = to_torch(eq.expr, values, torch)
            value = value + torch64.zeros(p.N, width[eq.size])  # a constant becomes a batch of vectors
            values[("let" if eq.kind == "let" else "new", eq.name)] = value
        state = {s: values[("new", s)] for s in r.states}
        outputs.append(state[r.output_state])
    hs = torch.stack(outputs)[p.T - p.T_out:]
    y = data.y if p.loss == "cross-entropy" else torch64.tensor(data.y)
    loss = _torch_loss(p, hs, P, y, torch)
    loss.backward()

    def grad(leaf):
        return torch64.numpy(leaf.grad) if leaf.grad is not None else np.zeros(tuple(leaf.shape))

    grads = {k: grad(v) for k, v in P.items()}
    grads[r.input_name] = grad(x)
    grads.update({f"{s}0": grad(v) for s, v in h0.items()})
    return loss.item(), grads


# -- the strategy ------------------------------------------------------------------------------

class _Drafter:
    """Draws one recipe: names, declarations and equations, keeping values finite (:class:`Bound`)."""

    def __init__(self, draw, names, functions, binary, allow_constants, unusual):
        self.draw = draw
        self.unusual = unusual  # see cells_and_recipes
        self.unused_names = list(names)
        self.functions = functions
        self.binary = binary
        self.allow_constants = allow_constants
        self.params: dict[str, tuple] = {}  # name -> shape
        self.forced_params: list[str] = []  # declared with the first use of a fitting shape
        self.lets: dict[str, tuple] = {}  # name -> (size, Bound)
        self.readable: list[str] = []  # states whose previous value equations may read
        self.updated: list[str] = []  # states whose new value later equations may read

    def fresh_name(self) -> str:
        """A name not used yet in this cell (each name at most once: the API refuses repeats)."""
        assume(self.unused_names)
        name = self.choose(self.unused_names)
        self.unused_names.remove(name)
        return name

    def choose(self, options):
        return self.draw(st.sampled_from(list(options)))

    # -- parameters
    def param(self, shape) -> str:
        """A parameter of this shape: one declared before, a forced name, or a new one."""
        same = [n for n, s in self.params.items() if s == shape] if self.unusual else []
        if same and (not self.unused_names or self.draw(st.booleans())):
            return self.choose(same)
        name = self.forced_params.pop(0) if self.forced_params else self.fresh_name()
        self.params[name] = shape
        return name

    # -- expressions; each returns (node, Bound)
    def vector_leaf(self, size, params=True):
        """A parameter, the input, a state or an intermediate of this size."""
        options = [("param",)] if params and (size == "H" or self.unusual) else []
        if size == "D":
            options.append(("input",))
        else:
            options += [("prev", s) for s in self.readable] + [("new", s) for s in self.updated]
        options += [("let", n) for n, (sz, _) in self.lets.items() if sz == size]
        leaf = self.choose(options)
        if leaf == ("param",):
            return ("param", self.param((size,))), Bound(2.0)
        if leaf == ("input",):
            return leaf, Bound(5.0)
        if leaf[0] == "let":
            return leaf, self.lets[leaf[1]][1]
        return leaf, Bound(0.0, 1.0)

    def constant(self):
        name = self.choose(CONSTANTS)
        return ("const", name), Bound(CONSTANTS[name][2])

    def matvec(self, depth):
        """``U @ (D-vector)`` or ``W @ (H-vector)``; a compound argument becomes an automatic let."""
        cols = self.choose(["D", "H"])
        if self.unusual:
            arg, b = self.expr(cols, depth - 1, constant=False)
        else:
            arg, b = self.vector_leaf(cols, params=False)
        return ("matvec", self.param(("H", cols)), arg), b.scaled(MATVEC_GAIN)

    def affine(self, depth):
        """A pre-activation: one to three terms of matrix products and a bias."""
        terms = [self.matvec(depth) for _ in range(self.draw(st.integers(1, 2)))]
        if self.draw(st.booleans()):
            terms.append((("param", self.param(("H",))), Bound(2.0)))
        node, b = terms[0]
        for other, ob in terms[1:]:
            node, b = ("add", node, other), _sum(b, ob)
        return node, b

    def unary(self, size, depth):
        name = self.choose(self.functions)
        arg, b = self.expr(size, depth - 1)
        if UNARY[name].small_argument and b.worst > EXP_ARGUMENT_LIMIT:
            arg, b = ("fn", "tanh", arg), UNIT
        return ("fn", name, arg), UNARY[name].bound(b)

    def binary_op(self, size, depth):
        op = self.choose(self.binary)
        u, bu = self.expr(size, depth - 1)
        v, bv = self.expr(size, depth - 1, constant=op in ("add", "sub", "mul") and self.allow_constants)
        if op in ("max", "min") and {u[0], v[0]} & {"max", "min"}:
            op = "add"  # SymPy flattens Max(a, Max(b, c)), which changes the tie convention
        if op == "sub" and u == v and not self.unusual:
            op = "add"
        return (op, u, v), BINARY[op].bound(bu, bv)

    def gate(self, depth):
        gates = [n for n, (sz, b) in self.lets.items() if sz == "H" and b.gate]
        if gates and self.draw(st.booleans()):
            return ("let", self.choose(gates)), Bound(1.0, gate=True)
        arg, _ = self.affine(depth)
        return ("fn", "sigmoid", arg), Bound(1.0, gate=True)

    def blend(self, depth):
        z, bz = self.gate(depth - 1)
        s, bs = self.vector_leaf("H")
        n, bn = self.expr("H", depth - 1)
        return ("blend", z, s, n), _extremum(bs, bn)

    def expr(self, size, depth, constant=None):
        """An expression of the given size ("H" or "D"); values larger than NODE_LIMIT are squashed."""
        kinds = ["leaf"] + (["const"] if constant else [])
        if depth > 0:
            kinds += ["unary", "binary"]
            if size == "H":
                kinds += ["affine", "affine", "blend"]
        kind = self.choose(kinds)
        if kind == "leaf":
            node, b = self.vector_leaf(size)
        elif kind == "const":
            node, b = self.constant()
        elif kind == "unary":
            node, b = self.unary(size, depth)
        elif kind == "binary":
            node, b = self.binary_op(size, depth)
        elif kind == "affine":
            node, b = self.affine(depth)
        else:
            node, b = self.blend(depth)
        if b.worst > NODE_LIMIT:
            node, b = ("fn", "tanh", node), UNIT
        return node, b

    # -- equations
    def let(self, name) -> Equation:
        size = "D" if self.unusual and self.draw(st.integers(0, 4)) == 0 else "H"
        node, b = self.expr(size, self.draw(st.integers(1, 2)))
        self.lets[name] = (size, b)
        return Equation("let", name, size, node)

    def update(self, state) -> Equation:
        """A new state value that cannot amplify the states: else wrapped in a bounded function."""
        node, b = self.expr("H", self.draw(st.integers(1, 3)))
        if not self.unusual and ("prev", state) not in leaves(node):
            node, b = ("add", node, ("fn", "tanh", ("prev", state))), _sum(b, UNIT)
        if b.gain > 1 or b.offset > UPDATE_OFFSET:
            node = ("fn", self.choose([f for f in BOUNDED_FUNCTIONS if f in self.functions] or ["tanh"]), node)
        self.updated.append(state)
        return Equation("update", state, "H", node)


@st.composite
def problems(draw, tiny=None):
    tiny = draw(st.booleans()) if tiny is None else tiny
    top, top_T = (2, 3) if tiny else (4, 6)
    loss, reduction = draw(st.sampled_from([("cross-entropy", "sum"), ("cross-entropy", "mean"),
                                            ("mse", "sum"), ("mse", "mean"), ("upstream", "sum")]))
    return Problem(T=draw(st.integers(1, top_T)), N=draw(st.integers(1, top)), D=draw(st.integers(1, top)),
                   H=draw(st.integers(1, top)), K=draw(st.integers(1, 4)),
                   scale=draw(st.sampled_from([0.01, 0.5, 1.0, 2.0])),
                   architecture=draw(st.sampled_from(["many-to-many", "many-to-one"])),
                   loss=loss, reduction=reduction,
                   initial_states=draw(st.sampled_from(["all", "some", "none"])),
                   seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def cells_and_recipes(draw, names=NAME_POOL, functions=tuple(UNARY), binary=tuple(BINARY),
                      cell_names=st.sampled_from(CELL_NAMES) | st.text(max_size=12),
                      collisions=tuple(COLLISIONS), allow_constants=True, unusual=True, input_name=None):
    """A :class:`FuzzCase`: a random recipe (its model is built by ``case.build_model()``) and a problem.

    ``names``: the pool of identifiers (each used at most once per cell); ``functions`` and
    ``binary``: the operations allowed; ``collisions``: keys of :data:`COLLISIONS`, one of which
    (or none) forces its names into the cell; ``unusual``: also vector parameters and
    intermediates of size D, unused parameters, ``P @ b`` of a vector parameter ``b``,
    ``P @ (compound)`` (an automatic let), differences ``u - u``, states never read, and
    parameters used in several places (without it, every update reads its own state);
    ``input_name``: the input's name (default: drawn from ``names``).
    """
    forced = draw(st.sampled_from(collisions)) if collisions and draw(st.integers(0, 3)) == 0 else None
    roles = COLLISIONS.get(forced, {})
    taken = set(roles.values()) | {input_name}
    drafter = _Drafter(draw, [n for n in names if n not in taken], functions, binary, allow_constants, unusual)
    drafter.forced_params = [roles["param"]] if "param" in roles else []

    input_name = input_name or roles.get("input") or drafter.fresh_name()
    states = [roles["state"]] if "state" in roles else []
    states += [drafter.fresh_name() for _ in range(draw(st.integers(1, 3)) - len(states))]
    states = draw(st.permutations(states))
    lets = [drafter.fresh_name() for _ in range(draw(st.integers(0, 3)))]

    drafter.readable = [s for s in states if not unusual or draw(st.integers(0, 4)) > 0]  # some never read
    slots = draw(st.permutations([("let", n) for n in lets] + [("update", s) for s in states]))
    equations = [drafter.let(name) if kind == "let" else drafter.update(name) for kind, name in slots]
    for name in drafter.forced_params:  # a forced name no expression asked for: an unused parameter
        drafter.params[name] = ("H",)
    assume(unusual or drafter.params)  # a cell without parameters is unusual
    if unusual and draw(st.integers(0, 5)) == 0:
        drafter.params[drafter.fresh_name()] = draw(st.sampled_from([("H",), ("H", "H"), ("H", "D")]))

    recipe = Recipe(cell_name=draw(cell_names), input_name=input_name, states=tuple(states),
                    params=tuple(ParamDecl(n, s) for n, s in drafter.params.items()),
                    equations=tuple(equations), output=draw(st.sampled_from([None] + list(states))))
    return FuzzCase(recipe, draw(problems()))
