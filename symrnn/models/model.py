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
from ..engine.bptt import Derivation
from ..engine.cell import Cell
from ..engine.cells import builtin_cell

from ..engine.codegen import BlockCode, Workspace as _Arrays
from ..errors import CellDefinitionError, ShapeError, UnknownNameError, warn_user
from ..engine.losses import get_loss
from .protocol import Part, Protocol, uniform_params  # noqa: F401 (uniform_params: read from here too)
from ..engine.structure import fixed_values, resolve_sizes
from ..engine.symbols import parse
from .tape import run_cell, run_stateless, window
from ..validation import as_float_array, check_count, check_float_params, check_param_names, check_shape


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


class Model(Protocol):
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
        :mod:`symrnn.engine.losses`.

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
            check_count(name, value)
        self.sizes = resolve_sizes(self.cell.derived, {"D": int(D), "H": int(H), "K": int(K) if K is not None else None},
                                   self.cell.name)
        input_size = self.cell.sizes[self.cell.input_symbol]
        if input_size != "D" and self.sizes[input_size] != self.sizes["D"]:
            raise ShapeError(
                f"Cell {self.cell.name!r} reads an input of size {input_size} (the input is added to a quantity "
                f"of that size), so D must equal {input_size}: got D={D}, {input_size}={self.sizes[input_size]}; "
                f"give D={self.sizes[input_size]}.")
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
        specs = {name: spec for name, spec in self.cell.params.items() if not spec.fixed}  # spreads, folds: fixed
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
        symrnn.engine.bptt.Derivation
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

    # -- numbers --------------------------------------------------------------
    def _prepare_inputs(self, params, inputs, h0):
        fixed = self.cell.fixed_params  # given back by routes that read prepared params: recomputed below
        params = {k: v for k, v in params.items() if k not in fixed} if fixed and isinstance(params, dict) else params
        check_param_names(params, self.param_shapes)
        params, dtype = check_float_params(params, self.param_shapes, "shapes come from D, H, K of the model")
        params.update(fixed_values(self.cell.params, self.sizes, dtype))  # a matrix cell's spreads and folds
        X_in = as_float_array(inputs, "inputs").astype(dtype, copy=False)
        D = self.sizes["D"]
        if X_in.ndim != 3 or X_in.shape[0] == 0 or X_in.shape[1] == 0 or X_in.shape[2] != D:
            raise ShapeError(
                f"inputs has shape {X_in.shape}; expected (T, N, D) = (steps, batch, {D}) with T >= 1 and "
                f"N >= 1: inputs are time-major (for batch-major arrays (N, T, D) pass x.transpose(1, 0, 2)).")
        return params, X_in, self._initial_states(h0, X_in.shape[1], dtype)

    def _prepare(self, params, inputs, targets, h0, mask=None):
        params, X_in, S0 = self._prepare_inputs(params, inputs, h0)
        X, targets, sched, mask = self._scored(X_in, targets, mask)
        return params, X, targets, S0, sched, mask

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

    def forward(self, params, inputs, h0=None, every_step=False):
        """The cell's output state at every step and its final states (as :meth:`symrnn.StackedModel.forward`).

        Every step reads one input (the architecture's schedule and the readout are not applied).

        Parameters
        ----------
        params : dict of str to ndarray
            Every parameter by name (``model.init_params(seed)`` makes one; the readout's are allowed).
        inputs : ndarray
            ``(T, N, D)``, time-major.
        h0 : ndarray or dict of str to ndarray, optional
            Initial states ``(N, size)``, one array for the output state or a dict by state (zeros where
            not given), as in :meth:`loss_and_grads`.
        every_step : bool
            Return every state at every step in place of the final states.

        Returns
        -------
        output : ndarray
            ``(T, N, size)``: the output state (what the readout reads, ``model.out``) after each step.
        states : dict of str to ndarray
            ``{state: (N, size)}``, each state after the last step; with ``every_step``, ``{state: (T, N,
            size)}``, each state after each step (a matrix state flattened row-major, as its parameters).

        Examples
        --------
        >>> import numpy as np, symrnn as sr
        >>> model = sr.Model("slstm", D=3, H=4, K=2)
        >>> x = np.random.default_rng(0).normal(size=(5, 2, 3))
        >>> output, final = model.forward(model.init_params(seed=0), x)
        >>> output.shape, sorted(final), final["c"].shape
        ((5, 2, 4), ['c', 'h', 'm', 'n'], (2, 4))
        >>> _, states = model.forward(model.init_params(seed=0), x, every_step=True)
        >>> states["n"].shape, bool(np.array_equal(states["h"], output))
        ((5, 2, 4), True)
        """
        _, _, cache = self.run_cell(params, inputs, h0)
        states = {s: np.array(cache[f"S_{s}"][1:], copy=True) for s in self.state_names}
        output = np.array(states[self.out], copy=True)
        return output, (states if every_step else {s: v[-1] for s, v in states.items()})

    def state_size(self, state: str) -> int:
        """The size of a state (``H`` unless the cell declared another)."""
        return self.sizes[self.cell.states[state]]

    def _initial_states(self, h0, N, dtype):
        given = {} if h0 is None else (dict(h0) if isinstance(h0, dict) else {self.out: h0})
        states = self._per_state(given, N, dtype, "h0", lambda s: f"initial state {s}")
        if h0 is not None and not isinstance(h0, dict) and self.out not in self.cell.states_read_back \
                and np.any(states[self.out]):
            recurrent = ", ".join(f"{s!r}: ..." for s in self.cell.states_read_back)
            warn_user(f"h0 sets the initial value of the output state {self.out!r}, which the cell "
                      f"{self.cell.name!r} never reads back (it only holds the output): the array changes "
                      f"nothing. Pass the recurrent states by name: h0={{{recurrent}}}.")
        return states

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
        """This thread's reusable arrays for the generated code (see :class:`~symrnn.engine.codegen.Workspace`)."""
        if not hasattr(self._threads, "workspace"):
            self._threads.workspace = _ModelWorkspace(_Arrays(), _Arrays())
        return self._threads.workspace

    def _spaces(self):
        ws = self._workspace()
        return [ws.cell, ws.readout]

    def parts(self) -> list:
        """The blocks of the model: the cell over time, the readout (if any), the loss."""
        parts = [Part("cell", "cell", ("input",), cell=self.cell, width=self.sizes["D"])]
        if self.readout is not None:
            parts.append(Part("readout", "readout", ("cell",), cell=self.readout, width=self.state_size(self.out)))
        width = self.sizes["K"] if self.readout is not None else self.state_size(self.out)
        return parts + [Part("loss", "loss", (parts[-1].name,), width=width, detail=self.loss_rule.name)]

    def _state_leaves(self, tape, S0):
        return tape.leaf(S0)

    def _record(self, tape, leaves, sched, final_grads=None):
        """The cell over time, the scored steps and the readout on ``tape``: (top node, the cell's cache)."""
        P, X, S0 = leaves
        ws = self._workspace()
        H, cache = run_cell(tape, self.cell_code, P, X, S0, out=self.out, sizes=self.sizes,
                            final_grads=final_grads, empty=ws.cell)
        top = window(tape, H, sched.output_steps)
        if self.readout is not None:
            top = run_stateless(tape, self.readout_code, P, top, outputs=[self.logits], sizes=self.sizes,
                                empty=ws.readout)
        return top, cache

    def _state_grads(self, adjoint, S0):
        return {self.initial_state_key(s): g for s, g in adjoint[S0].items()}

    def _final_term(self, cache, dS_final):
        return sum(float((g * cache[f"S_{s}"][-1]).sum()) for s, g in dS_final.items())

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

    def _final_grads(self, final_grads, N, dtype):
        return self._per_state(dict(final_grads or {}), N, dtype, "final_grads", lambda s: f"final_grads[{s!r}]")

    def __repr__(self):
        return (f"Model({self.cell.name!r}, D={self.sizes['D']}, H={self.sizes['H']}, K={self.sizes['K']}, "
                f"architecture={self.architecture.name!r}, loss={self.loss_rule.name!r}, "
                f"reduction={self.reduction!r})")

