"""Printing the fused code of a block: scalar kernels around the step's matrix products.

:class:`FusedWriter` writes, from the symbolic material the NumPy code of
:mod:`symrnn.engine.codegen` uses (the forward equations; the backward's coefficients, ``cse``
factors and adjoint sums of :class:`~symrnn.engine.backward_code.BackwardWriter`), a *program* per
step: elementwise statements and the matrix products between them.  The statements between two
products become one kernel (a loop nest over batch and units); the products stay NumPy calls
in a Python driver.  :func:`sources` gives the texts; :mod:`symrnn.engine.fused_cache` compiles
them and :mod:`symrnn.engine.fused_runtime` runs them.
"""
from __future__ import annotations

import re

import sympy as sp

from .backward_code import BackwardWriter
from .codegen import EngineSymbol, StepPrinter, code_name
from .functions import BUILTIN_FUNCTIONS, RULES
from .symbols import MatVec, Param, bar, parse, tsym


# -- scalar rules --------------------------------------------------------------------------
def scalar_sources() -> dict:
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
        # the NumPy rules' max(a, 0) + log1p(exp(-|a|)); Numba cannot compile the rules themselves (out=)
        "softplus": "def softplus__fn(a):\n    return (a if a > 0 else 0.0) + math.log1p(math.exp(-abs(a)))\n",
        "log_sigmoid": ("def log_sigmoid__fn(a):\n"
                        "    return -((0.0 if a > 0 else -a) + math.log1p(math.exp(-abs(a))))\n"),
    }


def own_scalar(rule) -> str | None:
    """The scalar source of a function of symrnn's own, None for a user's."""
    if rule.function not in BUILTIN_FUNCTIONS:
        return None
    return scalar_sources().get(rule.name)


# -- the statements of one step --------------------------------------------------------------
class Stmt:
    """``name = expr`` elementwise over (batch, ``size``), stored to ``homes`` (element templates);
    ``parts``: a sum in this order (the NumPy code's order) in place of ``expr``."""

    def __init__(self, name, expr, size, homes=(), parts=None):
        self.name, self.expr, self.size, self.homes, self.parts = name, expr, size, list(homes), parts


class Product:
    """A matrix product between two kernels: ``np.matmul(left, right, out=out)``; ``fixed``: the driver's lines
    that copy and sum in its place (a group of spreads and folds, :mod:`symrnn.engine.structure`)."""

    def __init__(self, left, right, out, fixed=None):
        self.left, self.right, self.out, self.fixed = left, right, out, fixed


class Unfusable(Exception):
    """The block has a shape the fused writer does not handle: it stays on NumPy."""


class KernelPrinter(StepPrinter):
    """Prints a step expression as scalar code: every name read through :meth:`resolve`."""

    def __init__(self, atom_names, resolve):
        super().__init__(atom_names)
        self.resolve = resolve

    def _print_Symbol(self, expr):
        return self.resolve(super()._print_Symbol(expr))

    def _print_MatVec(self, expr):
        return self.resolve(self.names[expr])


def element(template):
    return template.replace("{j}", "j__")


class FusedWriter:
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
    def element_reads(self) -> dict:
        """``{code name: element template}``: where a kernel of the forward reads each quantity of a
        step (``h__prev`` -> ``h__S[t, n__, {j}]``, a product ``m1_2`` -> ``P1[t, n__, 2*H + {j}]``);
        ``{j}`` stands for the unit."""
        return self._reads()

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
        """The size name of an elementwise expression, from the quantities it reads: a product ``P v`` has
        ``P``'s rows (not ``v``'s size: S6's ``E_n C_t`` spreads ``C_t`` of size N over H N entries)."""
        block = self.block
        for m in sorted(expr.atoms(MatVec), key=str):
            return block.params[m.args[0].name].shape[0]
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
        raise Unfusable(f"no size for {expr}")

    # -- kernels ---------------------------------------------------------------------------
    def _segments(self, program):
        """Split a step's statements at its products: [(statements, product or None)]."""
        out, current = [], []
        for item in program:
            if isinstance(item, Product):
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
            if product is not None and product.fixed:
                body += product.fixed
            elif product is not None:
                body.append(f"np.matmul({product.left}, {product.right}, out={product.out})")
        return body, spills

    def _names_read(self, stmt):
        if stmt.parts is not None:
            return [p for p in stmt.parts]
        names = set()
        printer = KernelPrinter(self.atom_names, lambda n: names.add(n) or n)
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
                raise Unfusable(f"nothing holds {name}")
            used.append(template)
            return element(template)

        printer = KernelPrinter(self.atom_names, resolve)
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
                    lines.append(f"            {element(home)} = {s.name}")
        arrays = sorted({re.match(r"\w+", t).group(0) for t in used})  # names may be any identifier (α__S)
        args = ["t", "N"] + self.sizes_used + arrays
        header = f"def {kernel_name}({', '.join(args)}):"
        return "\n".join([header] + lines) + "\n", args

    # -- forward ---------------------------------------------------------------------------
    def forward(self, whole_loop=False):
        """The forward driver's source.  ``whole_loop``: the loop over time is one compiled function
        ``forward_loop`` (added to the kernels, the products written as loops), for small arrays
        where a Python step per time step would cost more than the step's arithmetic."""
        block = self.block
        program = []
        for e, first_read in block.first_products():
            for g in first_read:
                if block._hoisted(g):
                    continue
                left, out = self._vector_array(g.vector), f"P{g.index}[t]"
                copies = block._fixed_group(g) and not whole_loop  # spreads, folds: copies and sums in the driver
                fixed = block._fixed_lines(g, left, out, False) if copies else None
                program.append(Product(left, f"G{g.index}", out, fixed))
            base = parse(e.target)[0]
            home = (f"{code_name(base, 'S')}[t + 1, n__, {{j}}]" if e.kind == "state"
                    else f"{code_name(base, 'C')}[t, n__, {{j}}]")
            program.append(Stmt(code_name(e.target), e.rhs, block.sizes[e.target], [home]))
        body, spills = self._step_code(program, self._reads(), "forward_step_")
        source = block._forward_source(lean=False).splitlines()  # every let and product stored per step
        loop = source.index("    for t in range(T):")
        lines = source[:loop] + [f"    {n} = empty('{n}', (N, {size}), dtype)" for n, size in spills.items()]
        if whole_loop:
            lines.append(f"    {self._loop_function(body)}")
        else:
            lines += ["    for t in range(T):"] + ["        " + b for b in body]
        return "\n".join(lines + [source[-1]]) + "\n"

    def _loop_function(self, body):
        """Adds ``forward_loop`` (the loop over time of ``body``) to the kernels; returns its call."""
        # Numba's np.dot calls the BLAS (SciPy's), found bitwise equal to NumPy's matmul on these operands
        body = [re.sub(r"^np\.matmul\((.*), out=(.*)\)$", r"np.dot(\1, \2)", b) for b in body]
        names = set()
        for b in body:
            names.update(re.findall(r"(?<![\w.])([^\W\d]\w*)\b(?![(.])", b))
        arrays = sorted(names - {"t", "N", *self.sizes_used})
        args = ["T", "N"] + self.sizes_used + arrays
        self.kernels.append("\n".join([f"def forward_loop({', '.join(args)}):", "    for t in range(T):"]
                                      + ["        " + b for b in body]) + "\n")
        return f"forward_loop({', '.join(args)})"

    def _vector_array(self, v):
        """The driver's array holding vector ``v`` at step ``t`` (the left side of a product)."""
        if not isinstance(v, sp.Symbol) or parse(v) is None:
            raise Unfusable(f"a product of {v}")
        base, offset, is_bar = parse(v)
        if base in self.block.states and not is_bar:
            return f"{code_name(base, 'S')}[{'t' if offset == -1 else 't + 1'}]"
        if base in self.block.lets and offset == 0 and not is_bar:
            return f"{code_name(base, 'C')}[t]"
        raise Unfusable(f"a product of {v}")

    # -- backward --------------------------------------------------------------------------
    def backward(self):
        block = self.block
        writer = BackwardWriter(block)
        slots = self._slots(writer)
        sizes, program, extra = {}, [], {}
        for sym, expr in writer.replacements:
            sizes[sym.name] = self._size(expr, sizes)
            program.append(Stmt(sym.name, expr, sizes[sym.name]))
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
            program.append(Stmt(name, None, sizes[name], parts=parts))
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
                carry_products.append(self._adjoint_product(writer, g, carry))
                continue
            parts = self._parts(writer, u, ts, program, extra, products)
            program.append(Stmt(f"{s}__new", None, block.sizes[u], [extra[carry]], parts=parts))
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
        if any(t.matrix is not None for t in sends) and not block._hoisted(block.groups[u]):  # hoisted: after the loop
            g = block.groups[u]
            key = (g.index, str(u))
            if key not in products:
                products[key] = (len(products), block.sizes[u])
            i = products[key][0]
            program.append(self._adjoint_product(writer, g, f"R{i}"))
            extra[f"R{i}"] = f"R{i}[n__, {{j}}]"
            parts.append(f"R{i}")
        return parts

    def _adjoint_product(self, writer, g, out):
        """``out = Q[t] @ G``: what group ``g``'s products send back (sums and copies for spreads and folds)."""
        left, block = f"{writer.group_buffer[g.index]}[t]", self.block
        fixed = block._fixed_lines(g, left, out, True) if block._fixed_group(g) else None
        return Product(left, f"G{g.index}", out, fixed)

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
            out.append(Stmt(sym.name, expr, sizes[sym.name]))
        for name, expr in zip(names, exprs):
            sizes[name] = self._size(expr, sizes)
            out.append(Stmt(name, expr, sizes[name], slots.get(name, [])))
        return out


def sources(block, whole_loop=False) -> dict | None:
    """The fused code of ``block`` as text: ``{"kernels", "forward", "backward", "functions"}``; None
    when the block has a shape the fused writer does not handle (it runs on NumPy).

    ``whole_loop``: the forward only (``"backward"`` is None), its loop over time one compiled
    function (see :meth:`FusedWriter.forward`)."""
    writer = FusedWriter(block)
    try:
        forward = writer.forward(whole_loop)
        backward = None if whole_loop else writer.backward()
    except Unfusable:
        return None
    return {"kernels": module_text(writer.kernels), "forward": forward, "backward": backward,
            "functions": functions_called(writer.kernels)}


def functions_called(kernels) -> list:
    """The names of the functions (``name__fn``) the kernels' sources call."""
    return sorted({name for text in kernels for name in re.findall(r"(\w+)__fn\(", text)})


def module_text(kernels) -> str:
    """The kernels' module: the scalar sources of symrnn's own functions they call, then the kernels."""
    own = [own_scalar(RULES[name]) for name in functions_called(kernels) if own_scalar(RULES[name]) is not None]
    header = "import math\n\nimport numpy as np\n\n\n"
    return header + "\n\n".join(own + list(kernels))
