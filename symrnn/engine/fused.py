"""The fused backend: generated step code compiled by Numba, one kernel per step's elementwise work.

The NumPy code of :mod:`symrnn.engine.codegen` runs some 25 ufunc calls per time step over small
arrays; the time goes to call overhead and memory traffic.  This backend writes the same step
from the same symbolic terms (the forward equations, and the backward coefficients, ``cse``
factors and adjoint sums that :class:`~symrnn.engine.codegen.BackwardWriter` prepares), but
prints every elementwise statement of a step as scalar code inside one loop over batch and
units, compiled by Numba: one kernel per forward step and one per reverse step, split only
where a matrix product must run in between (the products stay NumPy/BLAS calls, as do the
products over all steps before and after the loop).  A user's cell gets kernels too; a
function the user registered is compiled from its NumPy implementation (a rule Numba cannot
compile makes the block run on NumPy, with a warning).

Choosing the backend
--------------------
``SYMRNN_BACKEND`` (environment) or :func:`set_backend` / :func:`using_backend` (in code):

``"numpy"`` (the default)
    The generated NumPy code: the reference, no compiler needed.
``"numba"``
    The fused kernels; an error (:class:`~symrnn.errors.BackendError`) if Numba is not
    installed (``pip install symrnn[fast]``).
``"auto"``
    ``"numba"`` where Numba imports, else ``"numpy"``.

A block (a :class:`~symrnn.engine.codegen.BlockCode`) takes the backend in force when it is
built: a model built under ``using_backend("numba")`` keeps its kernels afterwards.

Compile once
------------
A block whose functions are all symrnn's own is written to the disk cache of
:mod:`symrnn.cache`: the generated sources as an entry (kind ``fused``, keyed by the block's
equations like the NumPy code, under symrnn's version and source hash), and the kernels as a
Python file next to it, ``<cache>/fused/<sha256>.py``, compiled with Numba's ``cache=True``:
Numba keeps the machine code per argument type (float64 or float32 arrays ...) and CPU in
``__pycache__`` beside the file.  The file is created once (written to a temporary file and
linked into place, so a second process never rewrites it and Numba's index stays valid); a
file whose text is not the entry's is replaced.  An entry Numba cannot read (cut short, of
another Numba) is flushed and compiled again on the first call.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import linecache
import os
import re
import sys
import tempfile
import threading
import traceback
import warnings
from pathlib import Path

import numpy as np
import sympy as sp

from .. import cache
from ..errors import BackendError
from .codegen import BackwardWriter, EngineSymbol, StepPrinter, code_name, fresh
from .functions import BUILTIN_FUNCTIONS, RULES
from .symbols import MatVec, Param, bar, linear_maps, parse, tsym

BACKENDS = ("numpy", "numba", "auto")
_chosen: list = []  # a stack: set_backend replaces the bottom, using_backend pushes
_lock = threading.Lock()


# -- choosing the backend ----------------------------------------------------------------
def _check_name(name):
    if name not in BACKENDS:
        raise BackendError(f"Unknown backend {name!r}; expected one of {list(BACKENDS)} (SYMRNN_BACKEND or "
                           f"symrnn.set_backend).")
    return name


def set_backend(name: str) -> None:
    """Choose the backend of generated code for blocks built from now on.

    Parameters
    ----------
    name : {"numpy", "numba", "auto"}
        ``"numpy"``: the generated NumPy code (the default and the reference); ``"numba"``: the
        fused kernels (needs ``pip install symrnn[fast]``); ``"auto"``: Numba where installed.

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.set_backend("numpy")
    >>> sr.backend()
    'numpy'
    """
    _check_name(name)
    if _chosen:
        _chosen[0] = name
    else:
        _chosen.append(name)


@contextlib.contextmanager
def using_backend(name: str):
    """Within the block, blocks are built with the backend ``name`` (see :func:`set_backend`).

    A model builds its blocks at ``compile()`` or at its first call: build it inside the block
    (a model built inside and first called outside runs on the backend in force outside).

    Parameters
    ----------
    name : {"numpy", "numba", "auto"}
        The backend, as for :func:`set_backend`.

    Examples
    --------
    >>> import symrnn as sr
    >>> with sr.using_backend("numpy"):
    ...     model = sr.Model("gru", D=2, H=3, K=2).compile()
    >>> model.cell_code.backend
    'numpy'
    """
    _check_name(name)
    if not _chosen:
        _chosen.append(None)
    _chosen.append(name)
    try:
        yield
    finally:
        _chosen.pop()


def chosen() -> str:
    """The backend asked for: the innermost :func:`using_backend`, else :func:`set_backend`'s, else
    ``$SYMRNN_BACKEND``, else ``"numpy"``."""
    for name in reversed(_chosen):
        if name is not None:
            return name
    return _check_name(os.environ.get("SYMRNN_BACKEND", "").strip().lower() or "numpy")


def numba_available() -> bool:
    """True when Numba imports."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def backend() -> str:
    """The backend blocks built now get: ``"numpy"`` or ``"numba"`` (``"auto"`` resolved).

    Raises
    ------
    BackendError
        ``"numba"`` was chosen and Numba is not installed.
    """
    name = chosen()
    if name == "auto":
        return "numba" if numba_available() else "numpy"
    if name == "numba" and not numba_available():
        raise BackendError("The numba backend needs Numba: pip install symrnn[fast] (or choose the backend "
                           "'numpy' or 'auto').")
    return name


# -- scalar rules --------------------------------------------------------------------------
def _scalar_sources() -> dict:
    """Scalar versions of symrnn's own functions, as NumPy's rules compute them (see
    :mod:`symrnn.engine.functions`): Numba compiles them into the kernels."""
    return {
        "tanh": "def tanh__fn(a):\n    return math.tanh(a)\n",
        "exp": "def exp__fn(a):\n    return math.exp(a)\n",
        "log": "def log__fn(a):\n    return math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)\n",
        "sin": "def sin__fn(a):\n    return math.sin(a)\n",
        "cos": "def cos__fn(a):\n    return math.cos(a)\n",
        "sigmoid": ("def sigmoid__fn(a):\n    e = math.exp(-abs(a))\n"
                    "    return (1.0 if a >= 0 else e) / (e + 1.0)\n"),
        "relu": "def relu__fn(a):\n    return 0.0 if a < 0 else a\n",
        "step": "def step__fn(a):\n    return 1.0 if a > 0 else 0.0\n",
        "tie_step": "def tie_step__fn(a):\n    return 1.0 if a > 0 else (0.5 if a == 0 else (0.0 if a < 0 else a))\n",
        "absolute": "def absolute__fn(a):\n    return abs(a)\n",
        "sgn": "def sgn__fn(a):\n    return 1.0 if a > 0 else (-1.0 if a < 0 else (0.0 if a == 0 else a))\n",
        "maximum": "def maximum__fn(a, b):\n    return a if (a >= b or a != a) else b\n",
        "minimum": "def minimum__fn(a, b):\n    return a if (a <= b or a != a) else b\n",
    }


def _own_scalar(rule) -> str | None:
    """The scalar source of a function of symrnn's own, None for a user's."""
    if rule.function not in BUILTIN_FUNCTIONS:
        return None
    return _scalar_sources().get(rule.name)


# -- the statements of one step --------------------------------------------------------------
class _Stmt:
    """``name = expr`` elementwise over (batch, ``size``), stored to ``homes`` (element templates);
    ``parts``: a sum in this order (the NumPy code's order) in place of ``expr``."""

    def __init__(self, name, expr, size, homes=(), parts=None):
        self.name, self.expr, self.size, self.homes, self.parts = name, expr, size, list(homes), parts


class _Product:
    """A matrix product between two kernels: ``np.matmul(left, right, out=out)``."""

    def __init__(self, left, right, out):
        self.left, self.right, self.out = left, right, out


class _Unfusable(Exception):
    """The block has a shape the fused writer does not handle: it stays on NumPy."""


class _KernelPrinter(StepPrinter):
    """Prints a step expression as scalar code: every name read through :meth:`resolve`."""

    def __init__(self, atom_names, resolve):
        super().__init__(atom_names)
        self.resolve = resolve

    def _print_Symbol(self, expr):
        return self.resolve(super()._print_Symbol(expr))

    def _print_MatVec(self, expr):
        return self.resolve(self.names[expr])


def _element(template):
    return template.replace("{j}", "j__")


class _FusedWriter:
    """Writes a block's fused code: the kernels' module source and the two driver functions."""

    def __init__(self, block):
        self.block = block
        self.atom_names = block._atom_names()
        self.sizes_used = sorted(set(block.sizes.values()) | {s for p in block.params.values() for s in p.shape})
        self.kernels = []  # sources
        self.atom_place = {}
        for g in block.groups.values():
            for m, (a, _b) in zip(g.atoms, block._slices(g)):
                self.atom_place[self.atom_names[m]] = f"P{g.index}[t, n__, {a} + {{j}}]"

    # -- reading a quantity ----------------------------------------------------------------
    def _reads(self, extra=None):
        block, reads = self.block, dict(self.atom_place)
        for s in block.states:
            reads[code_name(tsym(s, -1))] = f"{code_name(s, 'S')}[t, n__, {{j}}]"
            reads[code_name(tsym(s, 0))] = f"{code_name(s, 'S')}[t + 1, n__, {{j}}]"
        for b in block.lets:
            reads[code_name(tsym(b))] = f"{code_name(b, 'C')}[t, n__, {{j}}]"
        reads[code_name(block.input_symbol)] = "X[t, n__, {j}]"
        for p, spec in block.params.items():
            if not spec.is_matrix:
                reads[code_name(Param(p))] = f"{code_name(Param(p))}[{{j}}]"
        reads.update(extra or {})
        return reads

    def _size(self, expr, known):
        """The size name of an elementwise expression, from the quantities it reads."""
        block = self.block
        for s in sorted(expr.free_symbols, key=str):
            if isinstance(s, EngineSymbol):
                if s.name in known:
                    return known[s.name]
                continue
            if isinstance(s, Param):
                return block.params[s.name].shape[0]
            parsed = parse(s)
            if parsed is not None:
                size = block.sizes.get(tsym(parsed[0], parsed[1]))
                if size is not None:
                    return size
        for m in expr.atoms(MatVec):
            return block.params[m.args[0].name].shape[0]
        raise _Unfusable(f"no size for {expr}")

    # -- kernels ---------------------------------------------------------------------------
    def _segments(self, program):
        """Split a step's statements at its products: [(statements, product or None)]."""
        out, current = [], []
        for item in program:
            if isinstance(item, _Product):
                out.append((current, item))
                current = []
            else:
                current.append(item)
        out.append((current, None))
        return out

    def _step_code(self, program, reads, prefix):
        """The driver's loop body and the kernels for one step's program."""
        segments = self._segments(program)
        defined_in = {}
        for k, (stmts, _p) in enumerate(segments):
            for s in stmts:
                defined_in[s.name] = k
        # a value read by a later kernel than its own is read from its first home, or a spill array
        spills = {}
        for k, (stmts, _p) in enumerate(segments):
            for s in stmts:
                for name in self._names_read(s):
                    if name in defined_in and defined_in[name] < k:
                        owner = next(x for seg, _q in segments for x in seg if x.name == name)
                        if not owner.homes:
                            owner.homes.append(f"L_{name}[n__, {{j}}]")
                            spills[f"L_{name}"] = owner.size
                        reads.setdefault(name, owner.homes[0])
        body = []
        for k, (stmts, product) in enumerate(segments):
            if stmts:
                kernel_name = f"{prefix}{k}"
                source, args = self._kernel(kernel_name, stmts, reads)
                self.kernels.append(source)
                body.append(f"{kernel_name}({', '.join(args)})")
            if product is not None:
                body.append(f"np.matmul({product.left}, {product.right}, out={product.out})")
        return body, spills

    def _names_read(self, stmt):
        if stmt.parts is not None:
            return [p for p in stmt.parts]
        names = set()
        printer = _KernelPrinter(self.atom_names, lambda n: names.add(n) or n)
        printer.doprint(stmt.expr)
        return names

    def _kernel(self, kernel_name, stmts, reads):
        """One kernel: a loop nest per size, the statements of that size in order."""
        local_names = set()
        used = []

        def resolve(name):
            if name in local_names:
                return name
            template = reads.get(name)
            if template is None:
                raise _Unfusable(f"nothing holds {name}")
            used.append(template)
            return _element(template)

        printer = _KernelPrinter(self.atom_names, resolve)
        by_size: dict = {}
        for s in stmts:
            by_size.setdefault(s.size, []).append(s)
        lines = []
        for size, group in by_size.items():
            local_names.clear()
            lines += ["    for n__ in range(N):", f"        for j__ in range({size}):"]
            for s in group:
                if s.parts is not None:
                    value = " + ".join(resolve(p) for p in s.parts) if s.parts else "0.0"
                else:
                    value = printer.doprint(s.expr)
                lines.append(f"            {s.name} = {value}")
                local_names.add(s.name)
                for home in s.homes:
                    used.append(home)
                    lines.append(f"            {_element(home)} = {s.name}")
        arrays = sorted({re.match(r"\w+", t).group(0) for t in used})  # names may be any identifier (α__S)
        args = ["t", "N"] + self.sizes_used + arrays
        header = f"def {kernel_name}({', '.join(args)}):"
        return "\n".join([header] + lines) + "\n", args

    # -- forward ---------------------------------------------------------------------------
    def forward(self):
        block = self.block
        program, done = [], set()
        for e in block.equations:
            for m in linear_maps(e.rhs):
                g = block.groups[m.args[1]]
                if g.index in done:
                    continue
                done.add(g.index)
                if not block._hoisted(g):
                    program.append(_Product(self._vector_array(g.vector), f"G{g.index}", f"P{g.index}[t]"))
            base = parse(e.target)[0]
            home = (f"{code_name(base, 'S')}[t + 1, n__, {{j}}]" if e.kind == "state"
                    else f"{code_name(base, 'C')}[t, n__, {{j}}]")
            program.append(_Stmt(code_name(e.target), e.rhs, block.sizes[e.target], [home]))
        body, spills = self._step_code(program, self._reads(), "forward_step_")
        source = block.forward_source.splitlines()
        loop = source.index("    for t in range(T):")
        lines = source[:loop] + [f"    {n} = empty('{n}', (N, {size}), dtype)" for n, size in spills.items()]
        lines += ["    for t in range(T):"] + ["        " + b for b in body] + [source[-1]]
        return "\n".join(lines) + "\n"

    def _vector_array(self, v):
        """The driver's array holding vector ``v`` at step ``t`` (the left side of a product)."""
        if not isinstance(v, sp.Symbol) or parse(v) is None:
            raise _Unfusable(f"a product of {v}")
        base, offset, is_bar = parse(v)
        if base in self.block.states and not is_bar:
            return f"{code_name(base, 'S')}[{'t' if offset == -1 else 't + 1'}]"
        if base in self.block.lets and offset == 0 and not is_bar:
            return f"{code_name(base, 'C')}[t]"
        raise _Unfusable(f"a product of {v}")

    # -- backward --------------------------------------------------------------------------
    def backward(self):
        block = self.block
        writer = BackwardWriter(block)
        slots = self._slots(writer)
        sizes, program, extra = {}, [], {}
        for sym, expr in writer.replacements:
            sizes[sym.name] = self._size(expr, sizes)
            program.append(_Stmt(sym.name, expr, sizes[sym.name]))
        products = {}
        for a in block.sweep.adjoints:
            parts = self._parts(writer, a.target, a.sends, program, extra, products)
            base = parse(a.target)[0]
            if a.external:
                extra[code_name(base, "ext")] = f"{code_name(base, 'ext')}[t, n__, {{j}}]"
                parts.append(code_name(base, "ext"))
            if a.carried:
                extra[code_name(base, "carry")] = f"{code_name(base, 'carry')}[n__, {{j}}]"
                parts.append(code_name(base, "carry"))
            name = code_name(bar(a.target))
            sizes[name] = block.sizes[a.target]
            program.append(_Stmt(name, None, sizes[name], parts=parts))
            program += self._qs(writer, a.target, slots, sizes)
        carry_products = []
        for s, ts in block.sweep.carries.items():
            u = tsym(s, -1)
            elementwise = [writer.q_of_term[id(t)] for t in ts if t.matrix is None]
            through = [t for t in ts if t.matrix is not None]
            carry = code_name(s, "carry")
            extra[carry] = f"{carry}[n__, {{j}}]"
            if through and not elementwise:  # the product writes the carry itself
                g = block.groups[u]
                carry_products.append(_Product(f"{writer.group_buffer[g.index]}[t]", f"G{g.index}", carry))
                continue
            parts = self._parts(writer, u, ts, program, extra, products)
            program.append(_Stmt(f"{s}__new", None, block.sizes[u], [extra[carry]], parts=parts))
        program += carry_products
        body, spills = self._step_code(program, self._reads(extra), "backward_step_")
        lines = writer._header()
        lines += [f"    {code_name(s, 'carry')} = np.array({code_name(s, 'carry')}, dtype=dtype, order='C')"
                  for s in block.states]
        lines += [f"    {code_name(base, 'ext')} = EXT[{base!r}]" for base in
                  sorted({parse(a.target)[0] for a in block.sweep.adjoints if a.external})]
        lines += [f"    R{i} = empty('R{i}', (N, {size}), dtype)" for i, size in products.values()]
        lines += [f"    {n} = empty('{n}', (N, {size}), dtype)" for n, size in spills.items()]
        lines += ["    for t in range(T - 1, -1, -1):"] + ["        " + b for b in body]
        lines += writer._gradients()
        return "\n".join(lines) + "\n"

    def _parts(self, writer, u, sends, program, extra, products):
        """The terms of ``bar u`` in the NumPy code's order: elementwise q's, then the stacked
        product of ``u``'s group (a product before the kernel that sums them)."""
        block = self.block
        parts = [writer.q_of_term[id(t)] for t in sends if t.matrix is None]
        if any(t.matrix is not None for t in sends):
            g = block.groups[u]
            key = (g.index, str(u))
            if key not in products:
                products[key] = (len(products), block.sizes[u])
            i = products[key][0]
            program.append(_Product(f"{writer.group_buffer[g.index]}[t]", f"G{g.index}", f"R{i}"))
            extra[f"R{i}"] = f"R{i}[n__, {{j}}]"
            parts.append(f"R{i}")
        return parts

    def _slots(self, writer):
        """q -> element templates of the buffers it is stored in (as the NumPy code stores it)."""
        block, slots = self.block, {}
        for content, (name, g) in writer.buffers.items():
            if len(content) == 1:
                slots.setdefault(content[0], []).append(f"{name}[t, n__, {{j}}]")
            else:
                for q, (a, _b) in zip(content, block._slices(g)):
                    slots.setdefault(q, []).append(f"{name}[t, n__, {a} + {{j}}]")
        for q, (buffer, _size) in writer.extra.items():
            slots.setdefault(q, []).append(f"{buffer}[t, n__, {{j}}]")
        return slots

    def _qs(self, writer, y, slots, sizes):
        names = [name for (consumer, _), name in writer.q_names.items()
                 if consumer == y and name not in writer.emitted_q]
        writer.emitted_q.update(names)
        shared, exprs = sp.cse([writer.q_expr[n] for n in names], symbols=writer.shared_names, order="none")
        out = []
        for sym, expr in shared:
            sizes[sym.name] = self._size(expr, sizes)
            out.append(_Stmt(sym.name, expr, sizes[sym.name]))
        for name, expr in zip(names, exprs):
            sizes[name] = self._size(expr, sizes)
            out.append(_Stmt(name, expr, sizes[name], slots.get(name, [])))
        return out


def sources(block) -> dict | None:
    """The fused code of ``block`` as text: ``{"kernels", "forward", "backward"}``; None when the
    block has a shape the fused writer does not handle (it runs on NumPy)."""
    writer = _FusedWriter(block)
    try:
        forward = writer.forward()
        backward = writer.backward()
    except _Unfusable:
        return None
    functions = sorted({name for text in writer.kernels for name in re.findall(r"(\w+)__fn\(", text)})
    own = [_own_scalar(RULES[name]) for name in functions if _own_scalar(RULES[name]) is not None]
    header = "import math\n\nimport numpy as np\n\n\n"
    return {"kernels": header + "\n\n".join(own + writer.kernels), "forward": forward, "backward": backward,
            "functions": functions}


# -- compiling ---------------------------------------------------------------------------------
class FusedCode:
    """The fused forward and backward of one block, with the NumPy ones to fall back on.

    ``forward`` and ``backward`` have the signatures of the NumPy code's (see
    :class:`~symrnn.engine.codegen.BlockCode`).  A kernel Numba cannot compile (a user's
    function in Python Numba does not know) makes the block fall back to NumPy with a warning.
    """

    built = 0  # how many blocks were fused in this process (for tests and benchmarks)

    def __init__(self, block, texts, kernels, path):
        FusedCode.built += 1
        self.block, self.texts, self.path = block, texts, path
        self.kernels = kernels
        self.numpy_forward, self.numpy_backward = block.forward, block.backward
        self.failed = None
        namespace = {"np": np, "fresh": fresh, **kernels}
        self.fused_forward = _exec(texts["forward"], f"<symrnn-fused-{_safe(block.name)}-forward>", namespace,
                                   "forward")
        self.fused_backward = _exec(texts["backward"], f"<symrnn-fused-{_safe(block.name)}-backward>", namespace,
                                    "backward")
        self.flushed = False

        self.forward = self._entry(self.fused_forward, self.numpy_forward)
        self.backward = self._entry(self.fused_backward, self.numpy_backward)

    def _entry(self, fused, reference):
        """The function a caller gets: the fused one (its docstring shows its source and the
        kernels'), or the NumPy one after a kernel failed to compile."""

        def run(*args, **kwargs):
            return self._run(fused, reference, args, kwargs)
        run.__doc__ = f"{fused.__doc__}\n\nKernels:\n\n{self.texts['kernels']}"
        run.__name__ = fused.__name__
        return run

    def _run(self, fused, reference, args, kwargs):
        if self.failed is not None:
            return reference(*args, **kwargs)
        try:
            return fused(*args, **kwargs)
        except Exception as error:  # sorted below: a cache entry, a compile error, or the caller's
            from numba.core.errors import NumbaError
            if self.path is not None and not self.flushed and _from_numba_cache(error):
                # an entry of Numba's cache that cannot be read: drop it, compile again
                self.flushed = True
                _drop_numba_entries(self.path)
                for kernel in self.kernels.values():
                    with contextlib.suppress(Exception):
                        kernel._cache.flush()
                return self._run(fused, reference, args, kwargs)
            if not isinstance(error, NumbaError):
                raise
            self.failed = error
            warnings.warn(f"symrnn: the fused kernels of the block {self.block.name!r} do not compile with Numba "
                          f"({str(error).splitlines()[0]}); the block runs on NumPy.", RuntimeWarning, stacklevel=3)
            return reference(*args, **kwargs)


def _from_numba_cache(error) -> bool:
    """True when ``error`` was raised while Numba read its cache (an entry cut short or foreign)."""
    return any(os.path.join("numba", "core", "caching.py") in frame.filename
               for frame in traceback.extract_tb(error.__traceback__))


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def _exec(source, filename, namespace, name):
    namespace = dict(namespace)
    exec(compile(source, filename, "exec"), namespace)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    function = namespace[name]
    function.__doc__ = f"Fused {name} (Numba kernels).\n\nGenerated source:\n\n{source}"
    return function


def _scalar_functions(names, numba):
    """The functions the kernels call that have no scalar source here (a user's, or one added to
    symrnn without one), compiled by Numba from their NumPy implementations."""
    out = {}
    for name in names:
        rule = RULES[name]
        if _own_scalar(rule) is not None:
            continue
        implementation = rule.numpy
        if not inspect.isfunction(implementation):  # a ufunc or another callable: called from a function
            implementation = _calling(implementation)
        out[f"{name}__fn"] = numba.njit(error_model="numpy")(implementation)
    return out


def _calling(callable_):
    def implementation(a):
        return callable_(a)
    return implementation


def _kernel_module(texts, key, numba):
    """The kernels as Numba dispatchers, from a file in the cache directory when the block has a key."""
    import math
    scalars = _scalar_functions(texts["functions"], numba)
    source = texts["kernels"]
    path = _module_file(key, source) if key is not None else None
    if path is None:
        namespace = {"__name__": "symrnn_fused_dynamic", "math": math, "np": np, **scalars}
        filename = f"<symrnn-fused-kernels-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
        exec(compile(source, filename, "exec"), namespace)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    else:
        name = f"symrnn_fused_{path.stem}"
        module = sys.modules.get(name)
        if module is None:  # Numba's cached code imports the module by name to rebuild its globals
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            module.__dict__.update(scalars)
            spec.loader.exec_module(module)
            for function in re.findall(r"^def (\w+)\(", source, flags=re.MULTILINE):
                setattr(module, function, numba.njit(cache=True, error_model="numpy")(getattr(module, function)))
            sys.modules[name] = module
        return {n: getattr(module, n) for n in re.findall(r"^def (\w+)\(", source, flags=re.MULTILINE)}, path
    names = re.findall(r"^def (\w+)\(", source, flags=re.MULTILINE)
    for n in names:
        if n not in scalars:
            namespace[n] = numba.njit(error_model="numpy")(namespace[n])
    return {n: namespace[n] for n in names}, path


def _module_file(key, source):
    """The kernels' file in the cache directory, created once (None: the cache is off or unwritable)."""
    if not cache.enabled():
        return None
    digest = hashlib.sha256(f"{cache.environment()}\0{key}\0{source}".encode()).hexdigest()
    path = cache.directory() / "fused" / f"k{digest[:40]}.py"
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == source:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False,
                                         encoding="utf-8") as f:
            f.write(source)
            temporary = Path(f.name)
        os.chmod(temporary, 0o644)
        try:
            os.link(temporary, path)  # fails when another process made it first
        except FileExistsError:
            if path.read_text(encoding="utf-8") != source:  # a corrupt file: replace it
                os.replace(temporary, path)
                _drop_numba_entries(path)
                return path
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return path
    except OSError:
        return None


def _drop_numba_entries(path):
    for entry in (path.parent / "__pycache__").glob(f"{path.stem}.*"):
        with contextlib.suppress(OSError):
            entry.unlink()


def fuse(block) -> FusedCode | None:
    """The fused code of ``block`` when the backend in force is Numba, else None.

    Parameters
    ----------
    block : symrnn.engine.codegen.BlockCode

    Returns
    -------
    FusedCode or None
        None under the NumPy backend, or for a block the fused writer does not handle.
    """
    if backend() != "numba":
        return None
    import numba
    key = block._cache_key()
    if key is None:
        texts = sources(block)
    else:
        texts = cache.get_or_build("fused", key, lambda: sources(block) or {})
    if not texts:
        return None
    with _lock:
        kernels, path = _kernel_module(texts, key, numba)
    return FusedCode(block, texts, kernels, path)
