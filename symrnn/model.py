"""A model: a cell, sizes, an architecture, a readout and a loss.

>>> import numpy as np, symrnn as sr
>>> model = sr.Model("rnn-tanh", D=3, H=4, K=5)
>>> params = model.init_params(seed=0)
>>> x = np.random.default_rng(0).normal(size=(6, 2, 3))   # (T, N, D)
>>> y = np.random.default_rng(1).integers(0, 5, size=(6, 2))  # class indices (T, N)
>>> loss, grads = model.loss_and_grads(params, x, y)
>>> sorted(grads) == sorted(list(params) + ["h0", "x"])
True
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .architectures import get_architecture
from .bptt import Derivation
from .cell import Cell
from .cells import builtin_cell

from .codegen import BlockCode, Workspace as _Arrays
from .errors import CellDefinitionError, NonFiniteError, ParameterError, ShapeError, UnknownNameError
from .losses import IGNORE_LABEL, get_loss
from .symbols import parse
from .validation import as_float_array, check_finite, check_param_names, check_shape

_DTYPES = (np.float64, np.float32)


@dataclass
class _ModelWorkspace:
    cell: _Arrays
    readout: _Arrays


def readout_cell(H_state: str, logits: str, size: str = "H") -> Cell:
    """The readout ``o_t = V h_t + c`` as a stateless block (``h`` is the cell's output state,
    which may be named ``c`` or ``V`` too: the readout keeps its parameters apart)."""
    readout = Cell("readout", "affine readout")
    readout._params_apart = True
    h = readout.input(H_state, size, role="hidden state read out")
    V = readout.param("V", "K", size, role="hidden-to-output weights")
    c = readout.param("c", "K", role="output bias")
    readout.let(logits, V @ h + c, role="output logits")
    return readout


class Model:
    """A recurrent model with exact symbolic BPTT gradients.

    Parameters
    ----------
    cell : str or Cell
        A built-in cell name (``"rnn-tanh"``, ``"lstm"``, ``"gru"`` ...) or a :class:`Cell`.
    D, H : int
        Input and hidden sizes.
    K : int, optional
        Output size, required by losses with a readout (cross-entropy, mse).
    architecture : str
        ``many-to-many``, ``many-to-one``, ``one-to-many``, ``one-to-one`` or
        ``many-to-many-delayed``.
    loss : str
        ``cross-entropy`` (softmax), ``mse`` or ``upstream`` (targets are
        ``dL/dh_t``; no readout).
    reduction : str
        ``sum`` or ``mean`` over time and batch, ``batch-mean`` (sum over time, mean
        over the batch) or ``token-mean`` (mean over the scored steps); see
        :mod:`symrnn.losses`.

    See Also
    --------
    StackedModel : several layers, bidirectional layers.
    Seq2Seq : an encoder-decoder with attention.

    Notes
    -----
    ``loss`` may also be ``half-mse`` (``1/2 sum (o - y)^2``). Inputs are time-major,
    ``(T, N, D)``; parameters follow the column convention (``U`` is ``(H, D)``, ``a_t = U x_t
    + W h_{t-1} + b``). The derivation and the generated code are made on first use
    (:meth:`compile` makes them at once).

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> model = sr.Model("lstm", D=3, H=4, K=5)
    >>> params = model.init_params(seed=0)
    >>> params["U_i"].shape, params["V"].shape
    ((4, 3), (5, 4))
    >>> x = np.random.default_rng(0).normal(size=(6, 2, 3))     # (T, N, D)
    >>> y = np.random.default_rng(1).integers(0, 5, size=(6, 2))  # class indices (T, N)
    >>> loss, grads = model.loss_and_grads(params, x, y)
    >>> grads["x"].shape, grads["c0"].shape
    ((6, 2, 3), (2, 4))
    """

    def __init__(self, cell="rnn-tanh", D=1, H=1, K=None, architecture="many-to-many",
                 loss="cross-entropy", reduction="sum"):
        self.cell = builtin_cell(cell) if isinstance(cell, str) else cell
        if not isinstance(self.cell, Cell):
            raise TypeError(f"cell must be a Cell or a built-in cell name, got {type(cell).__name__}.")
        self.cell.validate()
        self.architecture = get_architecture(architecture)
        self.loss_rule = get_loss(loss)
        self.loss_rule.check_reduction(reduction)
        self.reduction = reduction
        uses_K = "K" in self.cell.sizes.values() or any("K" in p.shape for p in self.cell.params.values())
        for name, value in (("D", D), ("H", H)) + ((("K", K),) if self.loss_rule.needs_readout or uses_K else ()):
            if value is None:
                why = f"loss {loss!r} has a readout: give the output size K" if self.loss_rule.needs_readout \
                    else f"cell {self.cell.name!r} has quantities or parameters of size K: give the size K"
                raise ShapeError(f"{why}.")
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ShapeError(f"{name} must be a positive integer, got {value!r}.")
        self.sizes = {"D": int(D), "H": int(H), "K": int(K) if K is not None else None}
        self.state_names = self.cell.state_names
        self.out = self.cell.output_state
        self.input_name = parse(self.cell.input_symbol)[0]
        taken = {parse(s)[0] for s in self.cell.sizes if parse(s)} | set(self.cell.params)
        self.logits = next(n for n in ("o", "s", "logits") + tuple(f"o{k}" for k in range(len(taken) + 1))
                           if n not in taken)
        out_size = self.cell.states[self.out]
        self.readout = readout_cell(self.out, self.logits, out_size) if self.loss_rule.needs_readout else None
        if self.readout is not None:
            clash = sorted((set(self.cell.params) | {self.input_name}) & set(self.readout.params))
            if clash:
                raise CellDefinitionError(
                    f"Cell {self.cell.name!r} has parameter(s) or an input named {clash}, which are the names "
                    f"of the readout o = V h + c (and of their gradients); rename them in the cell (or use "
                    f"loss='upstream', which has no readout)."
                )
        if loss == "upstream" and reduction != "sum":
            raise UnknownNameError(
                f"The upstream loss takes the given gradients as they are and has no reduction; "
                f"got reduction={reduction!r}, use reduction='sum' (the default)."
            )
        self._cell_code = None
        self._readout_code = None
        self._derivation = None
        self._threads = threading.local()

    # -- parameters -----------------------------------------------------------
    @property
    def param_shapes(self) -> dict:
        specs = dict(self.cell.params)
        if self.readout is not None:
            specs.update(self.readout.params)
        return {name: tuple(self.sizes[s] for s in spec.shape) for name, spec in specs.items()}

    def init_params(self, seed=0, scale=None, dtype=np.float64) -> dict:
        """Parameters drawn uniformly from ``[-scale, scale]`` (default ``1/sqrt(H)``, as PyTorch).

        Parameters
        ----------
        seed : int
            Seed of the NumPy generator.
        scale : float, optional
            Half-width of the uniform distribution; default ``1/sqrt(H)``.
        dtype : numpy dtype
            ``np.float64`` (default) or ``np.float32``.

        Returns
        -------
        dict of str to ndarray
            Every parameter of the cell and the readout, by name.

        Examples
        --------
        >>> import symrnn as sr
        >>> params = sr.Model("gru", D=2, H=3, K=4).init_params(seed=1)
        >>> sorted(params)
        ['U_n', 'U_r', 'U_z', 'V', 'W_n', 'W_r', 'W_z', 'b_hn', 'b_n', 'b_r', 'b_z', 'c']
        """
        return uniform_params(self.param_shapes, self.sizes["H"], seed, scale, dtype)

    # -- symbolic -------------------------------------------------------------
    def derive(self) -> Derivation:
        """The symbolic derivation (forward and adjoint equations, gradients, Jacobians).

        Returns
        -------
        symrnn.bptt.Derivation
            ``forward``, ``adjoints``, ``gradients`` and ``step_jacobians``; ``print()`` shows
            them as text, and in Jupyter it renders as LaTeX.

        Examples
        --------
        >>> import symrnn as sr
        >>> derivation = sr.Model("rnn-tanh", D=3, H=4, K=5).derive()
        >>> for line in str(derivation).splitlines()[:3]:
        ...     print(line)
        Forward:
          a[t] = b + MatVec(U, x[t]) + MatVec(W, h[t-1])
          h[t] = tanh(a[t])
        """
        if self._derivation is None:
            if self.readout is not None:
                loss = self.loss_rule.symbolic(self.logits, self.reduction)
                self._derivation = Derivation(self.cell, self.readout.equations, loss)
            else:
                c = self.cell
                taken = set(c.states) | set(c.params) | {str(e.target).split("[")[0] for e in c.equations}
                loss = self.loss_rule.symbolic(self.out, self.reduction, taken=taken)
                self._derivation = Derivation(self.cell, (), loss, external=loss["external"])
            self._derivation.model = self
        return self._derivation

    @property
    def cell_code(self) -> BlockCode:
        if self._cell_code is None:
            c = self.cell
            self._cell_code = BlockCode(c.name, c.equations, c.input_symbol, c.states, c.params,
                                        c.sizes, external=[self.out])
        return self._cell_code

    @property
    def readout_code(self) -> BlockCode:
        if self._readout_code is None and self.readout is not None:
            r = self.readout
            self._readout_code = BlockCode(f"{self.cell.name}-readout", r.equations, r.input_symbol,
                                           {}, r.params, r.sizes, external=[self.logits])
        return self._readout_code

    def compile(self) -> "Model":
        """Derive and generate the code now (it is otherwise done on first use)."""
        self.derive()
        self.cell_code
        self.readout_code
        return self

    # -- numbers --------------------------------------------------------------
    def _prepare_inputs(self, params, inputs, h0):
        check_param_names(params, self.param_shapes)
        params = {k: as_float_array(v, f"params[{k!r}]") for k, v in params.items()}
        by_dtype = {}
        for k, v in params.items():
            by_dtype.setdefault(v.dtype, []).append(k)
        if len(by_dtype) > 1:
            mix = "; ".join(f"{dt}: {names}" for dt, names in by_dtype.items())
            raise ShapeError(f"params mix dtypes ({mix}); give every parameter one dtype, float64 or float32.")
        dtype = next(iter(by_dtype), np.dtype(np.float64))  # a cell without parameters computes in float64
        if dtype not in _DTYPES:
            raise ShapeError(f"parameters must be float64 or float32, got {dtype}.")
        for k, shape in self.param_shapes.items():
            check_shape(params[k], shape, f"params[{k!r}]", "shapes come from D, H, K of the model")
        X_in = as_float_array(inputs, "inputs").astype(dtype, copy=False)
        D = self.sizes["D"]
        if X_in.ndim != 3 or X_in.shape[0] == 0 or X_in.shape[1] == 0 or X_in.shape[2] != D:
            raise ShapeError(
                f"inputs has shape {X_in.shape}; expected (T, N, D) = (steps, batch, {D}) with T >= 1 and "
                f"N >= 1: inputs are time-major (for batch-major arrays (N, T, D) pass x.transpose(1, 0, 2)).")
        return params, X_in, self._initial_states(h0, X_in.shape[1], dtype)

    def _prepare(self, params, inputs, targets, h0, mask=None):
        params, X_in, S0 = self._prepare_inputs(params, inputs, h0)
        T_in, N, D = X_in.shape
        targets = np.asarray(targets)
        if targets.ndim == 0 or targets.shape[0] == 0:
            raise ShapeError(f"targets has shape {targets.shape}; expected a leading time axis T_out >= 1.")
        sched = self.architecture.schedule(T_in, targets.shape[0])
        mask = self._check_mask(mask, targets, N)
        targets = self._check_targets(targets, N, X_in.dtype)
        if sched.T == T_in and len(sched.input_steps) == T_in:
            X = X_in
        else:
            X = np.zeros((sched.T, N, D), dtype=X_in.dtype)
            X[sched.input_steps.start:sched.input_steps.stop] = X_in
        return params, X, targets, S0, sched, mask

    def _check_mask(self, mask, targets, N):
        """The (T_out, N) boolean array of scored steps (``None``: every step), with ignored labels."""
        T_out = targets.shape[0]
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.number) and np.isin(mask, (0, 1)).all()):
                raise ShapeError(f"mask must hold booleans (or 0/1), got dtype {mask.dtype}.")
            check_shape(mask, (T_out, N), "mask", "(T_out, N): true where a step is scored")
            mask = mask.astype(bool)
        if self.loss_rule.name == "cross-entropy" and np.issubdtype(targets.dtype, np.integer) \
                and targets.shape == (T_out, N) and (targets == IGNORE_LABEL).any():
            ignored = targets != IGNORE_LABEL
            mask = ignored if mask is None else mask & ignored
        return mask

    def run_cell(self, params, inputs, h0=None):
        """The cell's forward pass over ``inputs`` (every step reads one).

        Returns
        -------
        tuple
            ``(params, X, cache)``: the checked parameters and inputs, and the cache of states
            ``S_h`` ``(T+1, N, H)``, intermediates ``C_a`` ``(T, N, H)`` and products.
        """
        params, X, S0 = self._prepare_inputs(params, inputs, h0)
        return params, X, self.cell_code.forward(params, X, S0, self.sizes)

    def _check_targets(self, Y, N, dtype):
        T_out = Y.shape[0]
        name = self.loss_rule.name
        if Y.dtype == bool or not (np.issubdtype(Y.dtype, np.integer) or np.issubdtype(Y.dtype, np.floating)):
            raise ShapeError(
                f"targets has dtype {Y.dtype}; expected "
                + ("integer class indices (T_out, N) or float probabilities (T_out, N, K)"
                   if name == "cross-entropy" else "floating-point numbers") + ".")
        if name == "cross-entropy":
            K = self.sizes["K"]
            if Y.shape == (T_out, N) and not np.issubdtype(Y.dtype, np.integer):
                raise ShapeError(
                    f"targets are {Y.dtype} of shape (T_out, N) = {Y.shape}: class indices must be integers "
                    f"(use targets.astype(int)); probabilities have shape (T_out, N, K).")
            if np.issubdtype(Y.dtype, np.integer):
                check_shape(Y, (T_out, N), "targets", "class indices (T_out, N)")
                scored = Y[Y != IGNORE_LABEL]
                if scored.size and (scored.min() < 0 or scored.max() >= K):
                    raise ShapeError(f"targets holds class indices in [{scored.min()}, {scored.max()}]; expected "
                                     f"0..{K - 1} (or {IGNORE_LABEL} for an ignored step).")
                return np.where(Y == IGNORE_LABEL, 0, Y)
            Y = as_float_array(Y, "targets", dtype)
            check_shape(Y, (T_out, N, K), "targets", "class indices (T_out, N) or probabilities (T_out, N, K)")
            return Y
        Y = as_float_array(Y, "targets", dtype)
        last = self.sizes["K"] if name in ("mse", "half-mse") else self.state_size(self.out)
        check_shape(Y, (T_out, N, last), "targets", f"(T_out, N, {'K' if name == 'mse' else self.cell.states[self.out]})")
        return Y

    def state_size(self, state: str) -> int:
        """The size of a state (``H`` unless the cell declared another)."""
        return self.sizes[self.cell.states[state]]

    def initial_state_key(self, state: str) -> str:
        """The key of ``dL/d state_0`` in gradient dicts: ``h0``, ``c0``."""
        return f"{state}0"

    @property
    def gradient_keys(self) -> list:
        """The keys of ``loss_and_grads``'s gradients: parameters, the input, initial states."""
        return list(self.param_shapes) + [self.input_name] + [self.initial_state_key(s) for s in self.state_names]

    def _initial_states(self, h0, N, dtype):
        given = {} if h0 is None else (dict(h0) if isinstance(h0, dict) else {self.out: h0})
        return self._per_state(given, N, dtype, "h0", lambda s: f"initial state {s}")

    def _per_state(self, given, N, dtype, argument, label):
        """One (N, size) array per state, from ``given`` (checked) or zeros."""
        unknown = set(given) - set(self.state_names)
        if unknown:
            raise ShapeError(f"{argument} names unknown states {sorted(unknown)}; states are {self.state_names}.")
        out = {}
        for s in self.state_names:
            if s in given:
                value = as_float_array(given[s], label(s)).astype(dtype, copy=False)
                check_shape(value, (N, self.state_size(s)), label(s), f"(N, {self.cell.states[s]})")
                out[s] = value
            else:
                out[s] = np.zeros((N, self.state_size(s)), dtype=dtype)
        return out

    def _workspace(self):
        """This thread's reusable arrays for the generated code (see :class:`~symrnn.codegen.Workspace`)."""
        if not hasattr(self._threads, "workspace"):
            self._threads.workspace = _ModelWorkspace(_Arrays(), _Arrays())
        return self._threads.workspace

    def _run_forward(self, params, X, Y, S0, sched, mask=None):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are raised
            return self._run_forward_quietly(params, X, Y, S0, sched, mask)

    def _run_forward_quietly(self, params, X, Y, S0, sched, mask):
        ws = self._workspace()
        cache = self.cell_code.forward(params, X, S0, self.sizes, ws.cell)
        Hs = cache[f"S_{self.out}"][1:][sched.output_steps.start:sched.output_steps.stop]
        T_out, N, H = Hs.shape
        if self.readout is None:
            value, dHs = self.loss_rule.value_and_grad(Hs, Y, self.reduction, mask)
            return value, cache, None, dHs
        H_flat = Hs.reshape(1, T_out * N, H)
        r_cache = self.readout_code.forward(params, H_flat, {}, self.sizes, ws.readout)
        O = r_cache[f"C_{self.logits}"].reshape(T_out, N, -1)
        value, dO = self.loss_rule.value_and_grad(O, Y, self.reduction, mask)
        return value, cache, (H_flat, r_cache), dO

    def loss(self, params, inputs, targets, h0=None, mask=None) -> float:
        """The loss alone (one forward pass); arguments as :meth:`loss_and_grads`."""
        params, X, Y, S0, sched, mask = self._prepare(params, inputs, targets, h0, mask)
        return _finite_loss(self._run_forward(params, X, Y, S0, sched, mask)[0], self)

    def loss_and_grads(self, params, inputs, targets, h0=None, mask=None, final_grads=None):
        """The loss and the exact gradients.

        Parameters
        ----------
        params : dict
            Every parameter by name (``model.init_params(seed)`` makes one).
        inputs : array (T_in, N, D)
            Time-major inputs.
        targets : array
            Class indices ``(T_out, N)`` (``-1``: ignored) or probabilities
            ``(T_out, N, K)`` for cross-entropy; ``(T_out, N, K)`` for mse;
            ``dL/dh_t`` ``(T_out, N, H)`` for the upstream loss.
        h0 : array (N, H) or dict state -> array, optional
            Initial states (zeros where not given).
        mask : bool array (T_out, N), optional
            Steps that are scored (the reduction ``token-mean`` counts them).
        final_grads : dict state -> array (N, size), optional
            Gradients ``dL/ds_T`` arriving at the final states from outside
            (``dnext_c`` of a hand-written LSTM step, ``dL/dc_T`` of a layer):
            the loss gains ``sum <g, s_T>``.

        Returns
        -------
        loss : float
        grads : dict of str to ndarray
            Every parameter's name and shape, plus the input's name (``"x"``:
            ``dL/dinputs``, shaped like ``inputs``) and ``"h0"`` (and ``"c0"`` for an LSTM)
            for the initial states.

        Examples
        --------
        >>> import numpy as np, symrnn as sr
        >>> model = sr.Model("rnn-tanh", D=3, H=4, K=2, loss="mse", reduction="mean")
        >>> params = model.init_params(seed=0)
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 2))
        >>> loss, grads = model.loss_and_grads(params, x, y)
        >>> bool(np.isclose(loss, model.loss(params, x, y)))
        True

        The gradients are exact: a central difference agrees to rounding.

        >>> e = np.zeros_like(params["W"]); e[1, 2] = 1e-6
        >>> up = model.loss({**params, "W": params["W"] + e}, x, y)
        >>> down = model.loss({**params, "W": params["W"] - e}, x, y)
        >>> bool(abs((up - down) / 2e-6 - grads["W"][1, 2]) < 1e-8)
        True
        """
        value, grads, _ = self._loss_grads_and_cache(params, inputs, targets, h0, mask, final_grads)
        return value, grads

    def _loss_grads_and_cache(self, params, inputs, targets, h0=None, mask=None, final_grads=None):
        params, X, Y, S0, sched, mask = self._prepare(params, inputs, targets, h0, mask)
        value, cache, r, d_out = self._run_forward(params, X, Y, S0, sched, mask)
        dS_final = self._final_grads(final_grads, X.shape[1], X.dtype)
        if final_grads is not None:
            value = value + sum(float((g * cache[f"S_{s}"][-1]).sum()) for s, g in dS_final.items())
        value = _finite_loss(value, self)
        T, N = X.shape[0], X.shape[1]
        ws = self._workspace()
        cell_code, readout_code, allocate = self.cell_code, self.readout_code, (ws.cell, ws.readout)
        grads = {}
        if r is not None:
            H_flat, r_cache = r
            dO = d_out.reshape(1, -1, d_out.shape[-1])
            r_grads, dH_flat, _ = readout_code.backward(params, H_flat, r_cache, {self.logits: dO}, {},
                                                        self.sizes, allocate[1])
            grads.update(r_grads)
            d_out = dH_flat.reshape(len(sched.output_steps), N, -1)
        if len(sched.output_steps) == T:
            EXT = d_out
        else:
            EXT = allocate[0]("EXT", (T, N, self.state_size(self.out)), X.dtype)
            EXT.fill(0)
            EXT[sched.output_steps.start:sched.output_steps.stop] = d_out
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are raised
            c_grads, dX, dS0 = cell_code.backward(params, X, cache, {self.out: EXT}, dS_final, self.sizes,
                                                  allocate[0])
        grads.update(c_grads)
        grads = {k: grads[k] for k in self.param_shapes}  # canonical order
        grads[self.input_name] = dX[sched.input_steps.start:sched.input_steps.stop]
        for s in self.state_names:
            grads[self.initial_state_key(s)] = dS0[s]
        for k, g in grads.items():  # nothing returned may live in the reused arrays
            if ws.cell.owns(g) or ws.readout.owns(g):
                grads[k] = g.copy()
            if not np.all(np.isfinite(g)):
                raise NonFiniteError(
                    f"grads[{k!r}] contains NaN or infinity although the loss {value} is finite: the backward "
                    f"pass overflowed (weights or inputs too large for {X.dtype}?) or a derivative is infinite "
                    f"where the forward is not (e.g. sqrt at 0).")
        return value, grads, cache

    def _final_grads(self, final_grads, N, dtype):
        return self._per_state(dict(final_grads or {}), N, dtype, "final_grads", lambda s: f"final_grads[{s!r}]")

    def __repr__(self):
        return (f"Model({self.cell.name!r}, D={self.sizes['D']}, H={self.sizes['H']}, K={self.sizes['K']}, "
                f"architecture={self.architecture.name!r}, loss={self.loss_rule.name!r}, "
                f"reduction={self.reduction!r})")


def uniform_params(shapes, H, seed=0, scale=None, dtype=np.float64) -> dict:
    """Arrays of ``shapes`` drawn uniformly from ``[-scale, scale]`` (default ``1/sqrt(H)``, as PyTorch)."""
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float, np.number))
                              or not np.isfinite(scale) or scale < 0):
        raise ParameterError(f"scale must be a finite number >= 0, got {scale!r}.")
    if np.dtype(dtype) not in _DTYPES:
        raise ParameterError(f"dtype must be float64 or float32, got {np.dtype(dtype)}.")
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(H) if scale is None else scale
    return {k: rng.uniform(-scale, scale, size=s).astype(dtype) for k, s in shapes.items()}


def _finite_loss(value, model) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise NonFiniteError(
            f"The loss of {model!r} is {value} for these inputs: the forward pass overflowed or left the "
            f"domain of a function (log or sqrt of a negative number, ...). Check the inputs' scale and the "
            f"cell's equations.")
    return value
