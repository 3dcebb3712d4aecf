"""Step Jacobians of the whole state, evaluated chunk by chunk along a forward pass.

The symbolic step Jacobians ``ds_t/ds'_{t-1}`` of a cell's derivation
(:attr:`symrnn.engine.bptt.Derivation.step_jacobians`: sums of ordered products of
``Diag(v)`` and weight matrices) are compiled once into NumPy evaluators; a
forward pass then runs in chunks of a few hundred steps (the engine's
generated forward, restarted from the last state of the previous chunk), and
each chunk's Jacobians are evaluated at once.  Memory is a chunk, never the
whole sequence: ``T = 100000`` costs what ``T = 256`` costs.

The state ``s`` is every state of the cell stacked in declaration order (for
an LSTM ``(h, c)``, size ``2H``).  A previous state whose every Jacobian block
is diagonal (the LSTM's ``c``: ``dc_t/dc_{t-1} = diag(f_t)``) is kept as
diagonals, so that multiplying a step Jacobian into a running product costs
``S x S_dense x k`` instead of ``S x S x k``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..engine.bptt import Diag
from ..errors import ShapeError, UnknownNameError
from ..engine.functions import lambdify_numpy
from ..engine.jacobians import step_values as _values
from ..engine.symbols import MatVec

#: bytes of step Jacobians held at once (a chunk)
CHUNK_BYTES = 1 << 23


def _matvec_args(expr):
    atoms = sorted(expr.atoms(MatVec), key=sp.default_sort_key)
    dummies = {m: sp.Dummy(f"mv{k}") for k, m in enumerate(atoms)}
    flat = expr.xreplace(dummies)
    symbols = sorted(flat.free_symbols - set(dummies.values()), key=lambda s: s.name)
    fn = lambdify_numpy(symbols + [dummies[m] for m in atoms], flat)
    return fn, symbols, atoms


class _Vector:
    """An elementwise expression (the argument of a ``Diag``), compiled once."""

    def __init__(self, expr):
        self.expr = expr
        self.fn, self.symbols, self.atoms = _matvec_args(expr)

    def __call__(self, values, params, shape):
        args = [values[s] for s in self.symbols]
        args += [values[m.args[1]] @ params[m.args[0].name].T for m in self.atoms]
        return np.broadcast_to(self.fn(*args), shape)


class _Block:
    """One block ``ds_t/dp_{t-1}`` compiled: evaluates to ``("zero", None)``,
    ``("diag", (C, N, H))`` or ``("dense", (C, N, H, H))``."""

    def __init__(self, expr):
        self.expr = expr
        self.plan = self._compile(self.expr)

    def _compile(self, expr):
        if expr == 0:
            return ("zero",)
        if expr.is_commutative:  # a scalar term c (times the identity): a number, or an elementwise expression
            return ("const", float(expr)) if expr.is_number else ("diag", _Vector(expr))
        if isinstance(expr, sp.Add):
            return ("add", [self._compile(a) for a in expr.args])
        if isinstance(expr, sp.Mul):
            scalars, factors = expr.args_cnc()
            scalar = sp.Mul(*scalars)
            if not scalar.is_number:  # an elementwise factor outside every Diag: one Diag more
                return ("mul", 1.0, [("diag", _Vector(scalar))] + [self._compile(f) for f in factors])
            return ("mul", float(scalar), [self._compile(f) for f in factors])
        if isinstance(expr, Diag):
            return ("diag", _Vector(expr.args[0]))
        if isinstance(expr, sp.Pow) and expr.exp.is_Integer and expr.exp > 0:  # W @ (W @ h) gives W**2
            return ("mul", 1.0, [self._compile(expr.base)] * int(expr.exp))
        if isinstance(expr, sp.Symbol) and not expr.is_commutative:
            return ("matrix", expr.name)
        raise TypeError(f"Cannot evaluate {expr!r} in a step Jacobian.")

    def __call__(self, values, params, shape):
        return _run(self.plan, values, params, shape)

    @property
    def has_matrix(self):
        return any(isinstance(s, sp.Symbol) and not s.is_commutative for s in self.expr.free_symbols)


def _run(plan, values, params, shape):
    """Evaluate a compiled block.  Kinds: ``zero``; ``diag`` (C, N, H); ``rows``: a list of
    ``(v, W)`` meaning ``sum diag(v) W`` (kept apart until needed, then formed by one batched
    product); ``dense`` (C, N, H, H)."""
    kind = plan[0]
    if kind == "zero":
        return ("zero", None)
    if kind == "const":
        return ("diag", np.full(shape, plan[1]))
    if kind == "diag":
        return ("diag", plan[1](values, params, shape))
    if kind == "matrix":  # (rows of W) x (the columns asked for): not square for a matrix state's spreads
        W = params[plan[1]]
        return ("rows", [(np.ones(shape[:-1] + (W.shape[0],)), W)])
    if kind == "add":
        parts = [_run(p, values, params, shape) for p in plan[1]]
        return _add(parts, shape)
    c, factors = plan[1], plan[2]
    out = None
    for f in reversed(factors):  # right to left: out = f @ out; each factor's size is the rows of out
        m = _run(f, values, params, shape)
        out = m if out is None else _mul(m, out)
        if out[0] == "zero":
            return out
        shape = shape[:-1] + (_rows(out),)
    if c != 1.0:
        out = _scale(out, c)
    return out


def _rows(a):
    kind, A = a
    return A.shape[-1] if kind == "diag" else A[0][1].shape[0] if kind == "rows" else A.shape[-2]


def _scale(a, c):
    kind, A = a
    if kind == "rows":
        return ("rows", [(v * c, W) for v, W in A])
    return (kind, A * c)


def as_dense(a, out=None):
    """A block as a dense (C, N, H, H) array (``None`` for zero), written into ``out`` if given."""
    kind, A = a
    if kind == "zero":
        if out is not None:
            out[...] = 0
        return out
    if kind == "dense":
        if out is not None:
            out[...] = A
            return out
        return A
    if kind == "diag":
        H = A.shape[-1]
        if out is None:
            out = np.zeros(A.shape + (H,))
        else:
            out[...] = 0
        i = np.arange(H)
        out[..., i, i] = A
        return out
    H, K = A[0][1].shape  # rows and columns (square but for a matrix state's spreads and folds)
    lead = np.broadcast_shapes(*[v.shape for v, _ in A])[:-1]
    m = len(A)
    # out[c, i, j] = sum_m V[c, m, i] W[m, i, j]: for each row i one (CN x m) @ (m x K) product
    Vi = np.empty((H, int(np.prod(lead)), m))
    for j, (v, _) in enumerate(A):
        Vi[:, :, j] = np.broadcast_to(v, lead + (H,)).reshape(-1, H).T
    Ws = np.stack([W for _, W in A]).transpose(1, 0, 2)  # (H, m, K)
    if out is not None:
        flat = out.reshape((-1, H, K))
        if np.shares_memory(flat, out):
            np.matmul(Vi, Ws, out=flat.transpose(1, 0, 2))
            return out
    res = np.matmul(Vi, Ws)  # (H, CN, K)
    res = np.ascontiguousarray(res.transpose(1, 0, 2)).reshape(lead + (H, K))
    if out is not None:
        out[...] = res
        return out
    return res


def _mul(a, b):
    (ka, A), (kb, B) = a, b
    if "zero" in (ka, kb):
        return ("zero", None)
    if ka == "diag" and kb == "diag":
        return ("diag", A * B)
    if ka == "diag" and kb == "rows":
        return ("rows", [(A * v, W) for v, W in B])
    if ka == "diag":
        return ("dense", A[..., :, None] * B)
    A = as_dense(a)
    if kb == "diag":
        return ("dense", A * B[..., None, :])
    return ("dense", A @ as_dense(b))


def _add(parts, shape):
    parts = [p for p in parts if p[0] != "zero"]
    if not parts:
        return ("zero", None)
    diags = [p[1] for p in parts if p[0] == "diag"]
    rows = [r for p in parts if p[0] == "rows" for r in p[1]]
    denses = [p[1] for p in parts if p[0] == "dense"]
    d = sum(diags[1:], diags[0].copy()) if diags else None
    if not rows and not denses:
        return ("diag", d)
    if rows and not denses and d is None:
        return ("rows", rows)
    out = as_dense(("rows", rows)) if rows else None
    for D in denses:
        out = np.array(D) if out is None else out + D
    if d is not None:
        H = shape[-1]
        out.reshape(out.shape[:-2] + (H * H,))[..., ::H + 1] += d
    return ("dense", out)


@dataclass
class StateLayout:
    """Where each state sits in the stacked state vector ``s``."""

    names: list
    sizes: list

    def __post_init__(self):
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes[:-1])]
        self.size = int(sum(self.sizes))
        self._slices = {n: slice(o, o + k) for n, o, k in zip(self.names, self.offsets, self.sizes)}

    def slice(self, name):
        return self._slices[name]


class ChunkJacobians:
    """The step Jacobians of a chunk of ``C`` steps (batch element 0 .. N-1).

    ``dense``: ``(C, N, S, S_d)``, the columns of the previous states that enter
    through a weight matrix; ``diag``: ``{(s, p): (C, N, size)}`` for the previous
    states ``p`` whose blocks are all diagonal.
    """

    def __init__(self, layout, dense_prev, diag_prev, dense, diag, direct, C, implicit=None):
        self.layout, self.dense_prev, self.diag_prev = layout, dense_prev, diag_prev
        self.dense, self.diag, self.direct = dense, diag, direct
        #: a chunk of the compiled loops run with ``implicit=True``: ``(compiled, vectors, DD, tables)``, the
        #: terms' vectors instead of ``dense`` (see :func:`symrnn.decay.compiled_steps.apply_terms`)
        self.compiled, self.vectors, self.dd, self.tables = implicit or (None, None, None, None)
        self.C = C  # steps of the chunk that can be read (fewer than evaluated when the state overflowed)
        self._rows = {s: layout.slice(s) for s in layout.names}
        dslices, o = {}, 0
        for p in dense_prev:
            n = layout.sizes[layout.names.index(p)]
            dslices[p] = slice(o, o + n)
            o += n
        self._dense_rows = [layout.slice(p) for p in dense_prev]
        self._contiguous = dense_prev == layout.names[:len(dense_prev)]
        self._nd = o

    def apply(self, t, M, n=0):
        """``J_t @ M`` for ``M`` of shape ``(S, k)`` (step ``t`` of the chunk, batch element ``n``)."""
        if self.vectors is not None:
            from .compiled_steps import kernels, operator
            return kernels()["apply"](operator(self, self.compiled), n, t, np.ascontiguousarray(M, dtype=np.float64))
        if not self.diag_prev:
            return self.dense[t, n] @ M
        if self.dense is not None and self._nd:
            if self._contiguous:
                out = self.dense[t, n] @ M[:self._nd]
            else:
                out = self.dense[t, n] @ np.concatenate([M[r] for r in self._dense_rows])
        else:
            out = np.zeros_like(M)
        for (s, p), d in self.diag.items():
            out[self._rows[s]] += d[t, n][:, None] * M[self._rows[p]]
        return out

    def full(self, n=0):
        """The dense ``(C, S, S)`` Jacobians of batch element ``n``."""
        S = self.layout.size
        if self.vectors is not None:
            return np.stack([self.apply(t, np.eye(S), n) for t in range(self.C)]).reshape(self.C, S, S)
        out = np.zeros((self.C, S, S))
        if self.dense is not None:
            cols = np.concatenate([np.arange(S)[self.layout.slice(p)] for p in self.dense_prev])
            out[:, :, cols] = self.dense[:self.C, n]
        for (s, p), d in self.diag.items():
            rs, ps = self.layout.slice(s), self.layout.slice(p)
            idx = np.arange(d.shape[-1])
            out[:, rs.start + idx, ps.start + idx] = d[:self.C, n]
        return out


class JacobianStream:
    """Compiled step Jacobians of a model's cell, streamed along forward passes.

    Parameters
    ----------
    model : symrnn.Model
        Any model; only its cell and sizes are used.

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> from symrnn.decay import JacobianStream, InputSource, make_params
    >>> model = sr.Model("lstm", D=2, H=3, loss="upstream")
    >>> stream = JacobianStream(model)
    >>> stream.state_size                       # (h, c) together
    6
    >>> inputs = InputSource("random", T=10, N=1, D=2)
    >>> state = {"h": np.zeros((1, 3)), "c": np.zeros((1, 3))}
    >>> [t0 for t0, chunk, cache in stream.stream(make_params(model), inputs, state)]
    [0]
    """

    def __init__(self, model):
        self.model = model
        derivation = model.derive()
        cell = model.cell
        H = model.sizes
        self.layout = StateLayout(list(cell.states), [H[cell.states[s]] for s in cell.states])
        self.blocks = {key: _Block(expr) for key, expr in derivation.step_jacobians.items()}
        names = self.layout.names
        self.diag_prev = [p for p in names if not any(self.blocks[(s, p)].has_matrix for s in names)]
        self.dense_prev = [p for p in names if p not in self.diag_prev]
        #: every block is zero: the update never reads a previous state (no gradient through time)
        self.zero = all(b.plan[0] == "zero" for b in self.blocks.values())
        self.failure = self.stopped = self._checked = None
        # the direct path of each state: the terms of ds_t/ds_{t-1} without a weight matrix
        self.direct = {}
        for s in names:
            expr = sp.expand(derivation.step_jacobians[(s, s)])
            terms = expr.args if isinstance(expr, sp.Add) else (expr,)
            free = [a for a in terms if not any(isinstance(x, sp.Symbol) and not x.is_commutative
                                                for x in a.free_symbols)]
            self.direct[s] = _Block(sp.Add(*free)) if free and sp.Add(*free) != 0 else None
        #: the compiled loops (the numba backend in force when the stream was built), or None: NumPy
        self.compiled = None if self.zero else _compiled(model, self.layout, self.dense_prev, self.diag_prev,
                                                         derivation.step_jacobians)

    _implicit = False  # the stream in progress keeps its chunks' term vectors (see stream)

    def _implicit_ok(self, params):
        """Whether the compiled loops can apply ``params``'s step Jacobians term by term."""
        if self.compiled is None or self.compiled.vector_loop is None:
            return False
        from .compiled_jacobians import Unsupported, operator_tables
        try:
            operator_tables(self.compiled.kernel, params)
        except (Unsupported, KeyError):
            return False
        return True

    @property
    def state_size(self):
        """The whole state's size ``S`` (every state together)."""
        return self.layout.size

    def chunk_length(self, N=1):
        """Steps evaluated at once (the chunk's Jacobians stay under a fixed memory budget)."""
        S = self.layout.size
        return int(max(1, min(256, CHUNK_BYTES // (8 * N * S * S))))

    def _implicit_chunk_length(self, N=1):
        """Steps evaluated at once when only the terms' vectors are kept (see :meth:`stream`)."""
        k = self.compiled.kernel
        per_step = len(k.vectors.items) * max([1] + [n for _, n in k.vectors.items]) + k.dd_total + self.layout.size
        return int(max(1, min(1024, CHUNK_BYTES // (8 * N * per_step))))

    def evaluate(self, params, X, state):
        """Run the cell over the chunk ``X`` (C, N, D) from ``state`` ({name: (N, size)});
        returns ``(ChunkJacobians, new state, cache)``."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._evaluate(params, X, state)

    def _buffers(self, C, N):
        """The dense columns' buffer (C, N, S, S_d), reused: a chunk is read before the next."""
        lay = self.layout
        S_d = sum(lay.sizes[lay.names.index(p)] for p in self.dense_prev)
        key = (C, N)
        if getattr(self, "_buffer_key", None) != key:
            self._buffer = np.empty((C, N, lay.size, S_d)) if self.dense_prev else None
            if self.compiled is not None:
                k = self.compiled.kernel
                self._diag_buffer = np.empty((C, N, k.diag_total))
                self._direct_buffer = np.empty((C, N, k.direct_total))
            self._buffer_key, self._vector_key = key, None
        return self._buffer

    def _evaluate_compiled(self, params, X, state):
        """The chunk by the compiled loops: the whole-loop forward, then every step's Jacobian."""
        model, c = self.model, self.compiled
        checked = self._checked
        if checked is not None and checked[0] is params and X.dtype == checked[2]:  # later chunks of a stream
            params_c, Xc, S0 = checked[1], X, state
        else:
            params_c, Xc, S0 = model._prepare_inputs(params, X, state)
        self._last_params = (params_c, Xc.dtype)
        cache = c.forward(params_c, Xc, S0, model.sizes)
        C, N = Xc.shape[:2]
        implicit = None
        if self._implicit:
            VS, DD = self._vector_buffers(C, N)
            dense, DV, DR = None, self._diag_buffer, self._direct_buffer
            bad = c.vectors(params_c, Xc, cache, VS, DD, DV, DR)
            implicit = (c, VS, DD, c.tables(params_c))
        else:
            dense = self._buffers(C, N)
            DV, DR = self._diag_buffer, self._direct_buffer
            bad = c.jacobians(params_c, Xc, cache, dense, DV, DR)
        c.DV, c.DR = DV, DR
        if c.packed is None:
            from .compiled_steps import packed
            c.packed = packed(c.kernel, self.layout, self.dense_prev)
        diag = {key: DV[:, :, sl] for key, sl in c.kernel.diag_slices.items()}
        direct = {s: (DR[:, :, c.kernel.direct_slices[s]] if s in c.kernel.direct_slices else None)
                  for s in self.direct}
        return self._chunk(dense, diag, direct, cache, C, bad, implicit)

    def _vector_buffers(self, C, N):
        """The step vectors' and the diagonal terms' buffers of an implicit chunk, reused."""
        k = self.compiled.kernel
        key = ("implicit", C, N)
        if getattr(self, "_vector_key", None) != key:
            width = max([1] + [n for _, n in k.vectors.items])
            self._vectors = (np.empty((C, N, max(1, len(k.vectors.items)), width)), np.empty((C, N, max(1, k.dd_total))))
            self._diag_buffer = np.empty((C, N, k.diag_total))
            self._direct_buffer = np.empty((C, N, k.direct_total))
            self._vector_key, self._buffer_key = key, None
        return self._vectors

    def _chunk(self, dense, diag, direct, cache, C, bad=None, implicit=None):
        lay = self.layout
        new_state = {s: cache[f"S_{s}"][-1].copy() for s in lay.names}
        usable, self.failure = _finite_steps(cache, lay.names, dense, diag, direct, C, bad)
        chunk = ChunkJacobians(lay, self.dense_prev, self.diag_prev, dense, diag, direct, usable, implicit)
        return chunk, new_state, cache

    def _evaluate(self, params, X, state):
        if self.compiled is not None:
            try:
                return self._evaluate_compiled(params, X, state)
            except Exception as error:  # a user's function Numba cannot compile: the NumPy route
                from numba.core.errors import NumbaError
                if not isinstance(error, NumbaError):
                    raise
                warnings.warn(f"symrnn.decay: the compiled loops of {self.model.cell.name!r} do not compile with "
                              f"Numba ({str(error).splitlines()[0]}); the study runs on NumPy.", RuntimeWarning,
                              stacklevel=3)
                self.compiled, self._implicit = None, False
        params_c, Xc, cache = self.model.run_cell(params, X, h0=state)
        values = _values(self.model, params_c, Xc, cache)
        C, N = Xc.shape[:2]
        lay = self.layout
        dense = self._buffers(C, N)
        diag = {}
        col = 0
        for p in self.dense_prev:
            cols = lay.sizes[lay.names.index(p)]
            for s in lay.names:
                rows = lay.slice(s)
                as_dense(self.blocks[(s, p)](values, params_c, (C, N, cols)), out=dense[:, :, rows, col:col + cols])
            col += cols
        for p in self.diag_prev:
            for s in lay.names:
                kind, v = self.blocks[(s, p)](values, params_c, (C, N, lay.sizes[lay.names.index(p)]))
                if kind == "diag":
                    diag[(s, p)] = np.asarray(v)
        direct = {}
        for s, b in self.direct.items():
            if b is not None:
                kind, v = b(values, params_c, (C, N, lay.sizes[lay.names.index(s)]))
                direct[s] = np.asarray(v) if kind == "diag" else None
        return self._chunk(dense, diag, direct, cache, C)

    def stream(self, params, inputs, state, progress=None, implicit=False):
        """Yield ``(t0, ChunkJacobians, cache)`` chunk by chunk; ``inputs`` is an
        :class:`InputSource`.  ``t0`` is the index (from 0) of the chunk's first step.

        ``implicit=True`` (the compiled loops only; ignored on NumPy): the chunks keep the vectors of
        the step Jacobians' terms instead of their dense columns, and ``J_t M`` is applied term by
        term (cheaper for a few columns ``M``, such as the top exponent's frame; longer chunks).

        When the forward overflows (a state or a step Jacobian is not finite) the stream ends
        with the finite steps before it; ``self.stopped`` then says where: ``{"step": t, "kind":
        "state" or "jacobian", "state": name}``, ``s_t`` (from ``s_1``) being the first bad state
        (kind ``state``), or ``J_t`` the first non-finite Jacobian (kind ``jacobian``).
        ``self.stopped`` is None after a complete run."""
        t0 = 0
        self._implicit = bool(implicit) and self._implicit_ok(params)
        self.stopped = None
        self._checked = None
        while t0 < inputs.T:
            # the NumPy route's when Numba gave up
            C = self._implicit_chunk_length(inputs.N) if self._implicit else self.chunk_length(inputs.N)
            n = min(C, inputs.T - t0)
            X = inputs.chunk(t0, n)
            chunk, state, cache = self.evaluate(params, X, state)
            if self.compiled is not None and self._checked is None:  # checked once per stream
                self._checked = (params, *self._last_params)
            if self.failure is not None:  # the forward overflowed: the steps before it, then stop
                kind, state_name = self.failure
                self.stopped = dict(step=int(t0 + chunk.C + 1), kind=kind, state=state_name)
                if chunk.C:
                    yield t0, chunk, cache
                break
            yield t0, chunk, cache
            if progress is not None:
                progress.update(n)
            t0 += n
        self.final_state = state


def _compiled(model, layout, dense_prev, diag_prev, jacobians):
    """The compiled loops of a stream when the backend in force is Numba, else None."""
    from ..engine.fused import backend
    if backend() != "numba":
        return None
    from ..engine.fused import using_backend
    from .compiled_jacobians import compile_chunk
    with using_backend("numpy"):  # the model's own blocks (if not built yet): no step kernels needed here
        block = model.cell_code
    return compile_chunk(model, block, layout, dense_prev, diag_prev, jacobians)


def _finite_steps(cache, names, dense, diag, direct, C, bad_jac=None):
    """``(steps, failure)``: how many leading steps of a chunk have a finite state and finite step
    Jacobians, and what failed first: ``None``, ``("state", name)`` or ``("jacobian", name)``.
    ``bad_jac``: the steps whose Jacobian is not finite, when known (the compiled loop's)."""
    bad_state = {s: ~np.isfinite(cache[f"S_{s}"][1:C + 1]).reshape(C, -1).all(axis=1) for s in names}
    if bad_jac is None:
        parts = ([dense] if dense is not None else []) + list(diag.values()) + [v for v in direct.values()
                                                                               if v is not None]
        bad_jac = np.zeros(C, dtype=bool)
        for a in parts:
            bad_jac |= ~np.isfinite(a[:C]).reshape(C, -1).all(axis=1)
    # J_t maps s_{t-1} to s_t and reads s_t: a bad state makes that step's Jacobian unusable too
    bad = bad_jac | np.any(list(bad_state.values()), axis=0)
    if not bad.any():
        return C, None
    j = int(np.argmax(bad))
    for s in names:
        if bad_state[s][j]:
            return j, ("state", s)
    return j, ("jacobian", None)


class InputSource:
    """Inputs drawn chunk by chunk: ``"zero"``, ``"random"`` (standard normal times
    ``scale``, reproducible from ``seed`` whatever the chunk length) or a given array (T, N, D).

    Parameters
    ----------
    kind : str or array_like
        ``"zero"``, ``"random"`` or the inputs ``(T, N, D)``.
    T, N, D : int
        Steps, sequences and input size.
    seed : int
    scale : float
        Standard deviation of random inputs.
    """

    KINDS = ("zero", "random")

    def __init__(self, kind, T, N, D, seed=0, scale=1.0):
        self.kind, self.T, self.N, self.D, self.seed, self.scale = kind, T, N, D, seed, scale
        self.array = None
        if isinstance(kind, str):
            if kind not in self.KINDS:
                raise UnknownNameError(f"inputs={kind!r}: give 'zero', 'random' or an array of inputs (T, N, D).")
        else:
            try:
                self.array = np.asarray(kind, dtype=np.float64)
            except (TypeError, ValueError):
                raise ShapeError(f"inputs of type {type(kind).__name__} is not an array of numbers; give 'zero', "
                                 f"'random' or an array of inputs (T, N, D).") from None
            self.kind = "given"

    def chunk(self, t0, n):
        """The inputs of the ``n`` steps from step ``t0``, shaped ``(n, N, D)``."""
        if self.array is not None:
            return self.array[t0:t0 + n]
        if self.kind == "zero":
            return np.zeros((n, self.N, self.D))
        # one generator per block of 64 steps: the same numbers whatever the chunk length
        out = np.empty((n, self.N, self.D))
        t = t0
        while t < t0 + n:
            block = t // 64
            draws = np.random.default_rng([self.seed, block]).standard_normal((64, self.N, self.D)) * self.scale
            stop = min(t0 + n, (block + 1) * 64)
            out[t - t0:stop - t0] = draws[t - block * 64:stop - block * 64]
            t = stop
        return out
