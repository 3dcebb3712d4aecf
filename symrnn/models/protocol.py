"""The protocol every model implements, and the description of its parts.

A model (:class:`~symrnn.models.model.Model`, :class:`~symrnn.models.wiring.StackedModel`,
:class:`~symrnn.models.seq2seq.Seq2Seq`) is a wiring of blocks recorded on a
:class:`~symrnn.models.tape.Tape`: running it records the blocks, and the tape's sweep
is its backward.  What a use may ask of any model (a ``Seq2Seq`` takes its own
arguments, ``src, tgt_in, tgt_out``, and describes its parts the same way):

* ``param_shapes``, ``init_params(seed)``, ``gradient_keys``, ``state_names``,
  ``input_name``, ``initial_state_key(state)``, ``initial_state_shape(state, N)``;
* ``loss(params, inputs, targets, h0, mask)`` and ``loss_and_grads(...)``;
* ``derive()``: the symbolic derivation of its cell;
* ``parts()``: a list of :class:`Part`, the blocks in the order they run, which
  the oracles unroll and the reports and the verifier describe.  No use tells
  model families apart otherwise.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import numpy as np

from ..engine.codegen import BlockCode
from ..errors import NonFiniteError, ParameterError, ShapeError, warn_user
from ..engine.losses import IGNORE_LABEL
from ..validation import as_float_array, check_shape
from .tape import Tape

_DTYPES = (np.float64, np.float32)


@dataclass(frozen=True)
class Part:
    """One block of a model's graph.

    ``kind`` is ``cell`` (a cell's step code over time; ``reverse``: back to front), ``merge``
    (``detail`` names the row of :data:`symrnn.models.wiring.MERGES`), ``residual`` (a sum),
    ``bridge``, ``attention``, ``combine`` (Luong's attentional state), ``readout`` or ``loss``
    (``detail``: the loss's name).  ``name`` is the part's name (``l0.bwd``), ``prefix`` the prefix
    of its parameter keys (``l0.bwd.``; ``""`` for a one-cell model), ``reads`` the names of the
    parts it reads (``input`` is the model's input), ``width`` the width of what it reads (of what
    it scores, for the loss), ``row`` the row of its initial states among the gradients' ``h0``
    (None: one cell, not stacked).
    """

    kind: str
    name: str
    reads: tuple = ()
    prefix: str = ""
    cell: object = None
    reverse: bool = False
    width: int = 0
    layer: int = 0
    row: int | None = None
    detail: str = ""


class Protocol:
    """The methods every model shares; a model sets ``sizes``, ``state_names``, ``input_name``,
    ``out``, ``cell``, ``readout``, ``loss_rule``, ``reduction``, ``param_shapes`` and implements
    ``parts``, ``_prepare``, ``_record``, ``_state_leaves``, ``_state_grads``, ``_final_grads``,
    ``_final_term`` and ``_spaces``."""

    def init_params(self, seed=0, scale=None, dtype=np.float64) -> dict:
        """Parameters drawn uniformly from ``[-scale, scale]`` (default ``1/sqrt(H)``, as PyTorch)."""
        return uniform_params(self.param_shapes, self.sizes["H"], seed, scale, dtype)

    @staticmethod
    def initial_state_key(state: str) -> str:
        """The key of ``dL/d state_0`` in gradient dicts: ``h0``, ``c0``."""
        return f"{state}0"

    @property
    def gradient_keys(self) -> list:
        """The keys of ``loss_and_grads``'s gradients: parameters, the input, initial states."""
        return list(self.param_shapes) + [self.input_name] + [self.initial_state_key(s) for s in self.state_names]

    def cell_parts(self) -> list:
        """The parts that run a cell over time, in the order of the rows of ``h0``."""
        return [p for p in self.parts() if p.kind == "cell"]

    def with_blocks(self, transform, loss=None):
        """A copy of the model (same parameters, its own reusable arrays) whose generated blocks are
        ``transform(block)`` and, given ``loss``, whose loss rule is ``loss(rule)``: the verifier rounds
        them so (:mod:`symrnn.verify.judge`)."""
        twin = copy.copy(self)
        twin._threads = threading.local()
        twin._transform_blocks(transform)
        if loss is not None:
            twin.loss_rule = loss(self.loss_rule)
        if self.readout_code is not None:
            twin._readout_code = transform(self.readout_code)
        return twin

    def _transform_blocks(self, transform):
        self._cell_code = transform(self.cell_code)

    @property
    def one_cell(self) -> bool:
        """True when the model is one cell run forwards over time: its states, step Jacobians and
        single-cell diagnoses are the cell's (False for several cells wired)."""
        return [p.row for p in self.cell_parts()] == [None]

    def initial_state_shape(self, state: str, N: int) -> tuple:
        """The shape of ``h0[state]`` (and of its gradient) for a batch of ``N``."""
        size = self.sizes[self.cell.states[state]]
        return (N, size) if self.one_cell else (len(self.cell_parts()), N, size)

    def initial_states(self, h0, N, dtype=np.float64) -> dict:
        """``{state: array}`` of :meth:`initial_state_shape`, from ``h0`` (zeros where not given)."""
        given = {} if h0 is None else (dict(h0) if isinstance(h0, dict) else {self.out: h0})
        return {s: np.asarray(given[s], dtype=dtype) if s in given else
                np.zeros(self.initial_state_shape(s, N), dtype=dtype) for s in self.state_names}

    @property
    def readout_code(self) -> BlockCode:
        """The generated code of the readout ``o = V h + c`` (None without a readout)."""
        if self._readout_code is None and self.readout is not None:
            r = self.readout
            self._readout_code = BlockCode(f"{self.cell.name}-readout", r.equations, r.input_symbol,
                                           {}, r.params, r.sizes, external=[self.logits])
        return self._readout_code

    def compile(self):
        """Derive and generate the code now (it is otherwise done on first use)."""
        self.derive()
        _ = self.cell_code, self.readout_code  # made and kept by the properties
        return self

    # -- forward mode and second order (symrnn.engine.rtrl, symrnn.engine.second_order) ----------
    def rtrl_grads(self, params, inputs, targets, h0=None, mask=None):
        """The loss and gradients by real-time recurrent learning (forward sensitivities, streamed);
        one cell, or a stack of unidirectional layers.

        Same arguments as ``loss_and_grads``; returns ``(loss, grads)`` with the parameters' and
        initial states' gradients (no input gradient).  Cost ``O(N H^2 P)`` per step, memory
        ``O(N H P)`` independent of ``T`` (see :func:`symrnn.engine.rtrl.rtrl_loss_and_grads`).

        Examples
        --------
        >>> import numpy as np, symrnn as sr
        >>> model = sr.Model("gru", D=2, H=3, K=2)
        >>> params = model.init_params(seed=0)
        >>> x = np.random.default_rng(0).normal(size=(4, 1, 2)); y = np.array([[0], [1], [1], [0]])
        >>> _, bptt = model.loss_and_grads(params, x, y)
        >>> _, rtrl = model.rtrl_grads(params, x, y)
        >>> bool(np.allclose(bptt["W_z"], rtrl["W_z"], rtol=1e-12, atol=0))
        True
        """
        from ..engine.rtrl import rtrl_loss_and_grads
        return rtrl_loss_and_grads(self, params, inputs, targets, h0, mask)

    def hessian_vector_product(self, params, vector, inputs, targets, h0=None, mask=None, gauss_newton=False):
        """The exact ``H v`` (or Gauss-Newton ``G v``) of the loss in the parameters along ``vector``.

        Returns ``(loss, grads, product)``; see :func:`symrnn.engine.second_order.hessian_vector_product`.

        Examples
        --------
        >>> import numpy as np, symrnn as sr
        >>> model = sr.Model("rnn-tanh", D=2, H=3, K=2, loss="mse")
        >>> params = model.init_params(seed=0)
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(4, 1, 2)), rng.normal(size=(4, 1, 2))
        >>> v = {k: rng.normal(size=p.shape) for k, p in params.items()}
        >>> _, _, hv = model.hessian_vector_product(params, v, x, y)
        >>> up = model.loss_and_grads({k: params[k] + 1e-6 * v[k] for k in params}, x, y)[1]
        >>> down = model.loss_and_grads({k: params[k] - 1e-6 * v[k] for k in params}, x, y)[1]
        >>> bool(np.allclose((up["W"] - down["W"]) / 2e-6, hv["W"], atol=1e-7))
        True
        """
        from ..engine.second_order import hessian_vector_product
        return hessian_vector_product(self, params, vector, inputs, targets, h0, mask, gauss_newton)

    # -- the checks of targets and masks ---------------------------------------------------------
    def _scored(self, X_in, targets, mask):
        """The inputs padded to the schedule's steps, the checked targets, the schedule and the mask."""
        T_in, N, D = X_in.shape
        targets = np.asarray(targets)
        if targets.ndim == 0 or targets.shape[0] == 0:
            raise ShapeError(f"targets has shape {targets.shape}; expected a leading time axis T_out >= 1.")
        sched = self.architecture.schedule(T_in, targets.shape[0])
        mask = self._check_mask(mask, targets, N)
        targets = self._check_targets(targets, N, X_in.dtype)
        if sched.T == T_in and len(sched.input_steps) == T_in:
            return X_in, targets, sched, mask
        X = np.zeros((sched.T, N, D), dtype=X_in.dtype)
        X[sched.input_steps.start:sched.input_steps.stop] = X_in
        return X, targets, sched, mask

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
        if mask is not None and not mask.any():
            warn_user("The mask (with the ignored labels, -1) scores no step: the loss is 0 and every gradient is 0.")
        return mask

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

    # -- numbers ---------------------------------------------------------------------------------
    def _run_forward(self, params, X, Y, S0, sched, mask=None, final_grads=None):
        """The forward on a fresh tape: ``(loss value, record, (tape, top node, leaves), dL/d top)``."""
        tape = Tape()
        leaves = (tape.leaf(params), tape.leaf(X), self._state_leaves(tape, S0))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are raised
            top, record = self._record(tape, leaves, sched, final_grads)
            value, d_top = self.loss_rule.value_and_grad(tape.values[top], Y, self.reduction, mask)
        return value, record, (tape, top, leaves), d_top

    def loss(self, params, inputs, targets, h0=None, mask=None) -> float:
        """The loss alone (one forward pass); arguments as :meth:`loss_and_grads`."""
        params, X, Y, S0, sched, mask = self._prepare(params, inputs, targets, h0, mask)
        return finite_loss(self._run_forward(params, X, Y, S0, sched, mask)[0], self)

    def _loss_grads_and_cache(self, params, inputs, targets, h0=None, mask=None, final_grads=None):
        params, X, Y, S0, sched, mask = self._prepare(params, inputs, targets, h0, mask)
        dS_final = self._final_grads(final_grads, X.shape[1], X.dtype)
        value, record, (tape, top, leaves), d_top = self._run_forward(params, X, Y, S0, sched, mask, dS_final)
        if final_grads is not None:
            value = value + self._final_term(record, dS_final)
        value = finite_loss(value, self)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are raised
            adjoint = tape.sweep({top: d_top})
        P, Xn, S0n = leaves
        grads = {k: adjoint[P][k] for k in self.param_shapes}  # canonical order
        grads[self.input_name] = adjoint[Xn][sched.input_steps.start:sched.input_steps.stop]
        grads.update(self._state_grads(adjoint, S0n))
        return value, self._returned(grads, value, X.dtype), record

    def _returned(self, grads, value, dtype):
        """``grads`` checked finite, none of them living in the reused arrays."""
        spaces = self._spaces()
        for k, g in grads.items():
            if any(ws.owns(g) for ws in spaces):
                grads[k] = g.copy()
            if not np.all(np.isfinite(g)):
                raise NonFiniteError(
                    f"grads[{k!r}] contains NaN or infinity although the loss {value} is finite: the backward "
                    f"pass overflowed (weights or inputs too large for {dtype}?) or a derivative is infinite "
                    f"where the forward is not (e.g. sqrt at 0).")
        return grads


def uniform_params(shapes, H, seed=0, scale=None, dtype=np.float64) -> dict:
    """Arrays of ``shapes`` drawn uniformly from ``[-scale, scale]`` (default ``1/sqrt(H)``, as PyTorch)."""
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float, np.number))
                              or not np.isfinite(scale) or scale < 0):
        raise ParameterError(f"scale must be a finite number >= 0, got {scale!r}.")
    try:
        known = np.dtype(dtype) in _DTYPES
    except TypeError:
        known = False
    if not known:
        raise ParameterError(f"dtype must be np.float64 or np.float32, got {dtype!r}.")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"seed must be a non-negative integer, None or a numpy Generator, got {seed!r} "
                             f"({exc}).") from None
    scale = 1.0 / np.sqrt(H) if scale is None else scale
    return {k: rng.uniform(-scale, scale, size=s).astype(dtype) for k, s in shapes.items()}


def finite_loss(value, model) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise NonFiniteError(
            f"The loss of {model!r} is {value} for these inputs: the forward pass overflowed or left the "
            f"domain of a function (log or sqrt of a negative number, ...). Check the inputs' scale and the "
            f"cell's equations.")
    return value + 0.0  # (-0.0, the negated sum of nothing, as 0.0)
