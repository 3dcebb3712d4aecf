"""Bidirectional and stacked recurrent models: wirings of cells in the unrolled graph.

A :class:`StackedModel` is ``num_layers`` layers of one cell; each layer is
unidirectional or bidirectional, and layer ``l + 1`` reads the (merged)
outputs of layer ``l``.  Nothing here differentiates a cell: every direction
of every layer runs the cell's generated forward and backward code
(:class:`symrnn.engine.codegen.BlockCode`, the same code a :class:`~symrnn.models.model.Model`
runs), the backward direction on the time-reversed sequence.  The wiring adds
three small operations with their derivative rules:

* the **merge** of the two directions of a bidirectional layer (one row of
  :data:`MERGES` each: concat, sum, ave, mul, max);
* the **layer link**: the gradient ``dX`` a layer's backward code returns for
  its inputs is ``dL/dy`` of the layer below (plus the residual path when
  ``residual=True``);
* the **time reversal** of the backward direction (its inputs, its outputs and
  their adjoints are read back to front).

The readout ``o_t = V y_t + c`` and the losses are those of ``Model``.

>>> import numpy as np, symrnn as sr
>>> model = sr.StackedModel("lstm", D=3, H=4, K=5, num_layers=2, bidirectional=True)
>>> params = model.init_params(seed=0)
>>> sorted(params)[:3]
['V', 'c', 'l0.bwd.U_f']
>>> x = np.random.default_rng(0).normal(size=(6, 2, 3))
>>> y = np.random.default_rng(1).integers(0, 5, size=(6, 2))
>>> loss, grads = model.loss_and_grads(params, x, y)
>>> grads["h0"].shape                        # (num_layers * 2, N, H), as PyTorch's h_0
(4, 2, 4)
"""
from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .architectures import get_architecture
from ..engine.codegen import BlockCode, Workspace
from ..errors import CellDefinitionError, ParameterError, ShapeError, UnknownNameError
from ..engine.functions import maximum
from ..engine.losses import get_loss
from .model import Model, readout_cell
from .protocol import Part, Protocol
from .tape import Tape, add, merge as merge_directions, run_cell, run_stateless, window
from ..validation import as_float_array, check_float_params, check_param_names, check_shape

DIRECTIONS = ("fwd", "bwd")


# -- the merge of two directions: one table row each ------------------------------------------------
@dataclass(frozen=True)
class Merge:
    """How a bidirectional layer merges ``h_fwd[t]`` and ``h_bwd[t]`` (each ``(N, H)``).

    ``forward(F, B)`` is the merged output; ``backward(G, F, B)`` sends its
    adjoint ``G`` back, ``(G J_fwd, G J_bwd)``; ``symbolic(f, b)`` is the
    elementwise SymPy expression (None for concat, which is not elementwise);
    ``jacobian`` is the LaTeX of ``[J_fwd, J_bwd]`` for the reports.
    """

    name: str
    description: str
    width: int  # merged width in units of H
    forward: object = field(repr=False)
    backward: object = field(repr=False)
    symbolic: object = field(repr=False)
    jacobian: str = ""


def refuse_matrix_states(cell, where):
    """Refuse a cell with matrix-valued states (fixed spreads and folds, derived sizes) in ``where``."""
    if cell.fixed_params or cell.derived:
        raise CellDefinitionError(
            f"Cell {cell.name!r} has matrix-valued states (sizes {sorted(cell.derived)} derived from H); {where} "
            f"does not wire such cells yet (layers, directions and bridges assume states of size H): use "
            f"symrnn.Model(cell, ...).")


def _max_share(F, B):
    """The forward direction's share of the gradient of ``max(F, B)``: 1, 0, or 1/2 at an exact tie."""
    return (F > B) + 0.5 * (F == B)


def _max_backward(G, F, B):
    share = _max_share(F, B).astype(G.dtype, copy=False)
    dF = G * share
    return dF, G - dF


def _concat_backward(G, F, B):
    H = F.shape[-1]
    return G[..., :H], G[..., H:]


MERGES = {m.name: m for m in (
    Merge("concat", "[h_fwd; h_bwd] (width 2H; PyTorch's output and Keras's default)", 2,
          lambda F, B: np.concatenate([F, B], axis=-1), _concat_backward, None,
          r"\begin{bmatrix} I & 0 \\ 0 & I \end{bmatrix}"),
    Merge("sum", "h_fwd + h_bwd", 1, lambda F, B: F + B, lambda G, F, B: (G, G),
          lambda f, b: f + b, r"\begin{bmatrix} I & I \end{bmatrix}"),
    Merge("ave", "(h_fwd + h_bwd) / 2", 1, lambda F, B: (F + B) * 0.5, lambda G, F, B: (G * 0.5, G * 0.5),
          lambda f, b: (f + b) / 2, r"\begin{bmatrix} \tfrac{1}{2} I & \tfrac{1}{2} I \end{bmatrix}"),
    Merge("mul", "h_fwd * h_bwd (elementwise)", 1, lambda F, B: F * B, lambda G, F, B: (G * B, G * F),
          lambda f, b: f * b,
          r"\begin{bmatrix} \operatorname{diag}(h^{\leftarrow}) & \operatorname{diag}(h^{\rightarrow}) "
          r"\end{bmatrix}"),
    Merge("max", "max(h_fwd, h_bwd) (elementwise; an exact tie splits the gradient half and half)", 1,
          np.maximum, _max_backward, lambda f, b: maximum(f, b),
          r"\begin{bmatrix} \operatorname{diag}(m) & \operatorname{diag}(1 - m) \end{bmatrix}"),
)}
MERGE_ALIASES = {"average": "ave", "mean": "ave", "multiply": "mul", "concatenate": "concat"}


def get_merge(name) -> Merge:
    key = MERGE_ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in MERGES:
        raise UnknownNameError(
            f"Unknown merge mode {name!r}; expected one of {sorted(MERGES)} (aliases: "
            f"{', '.join(f'{a}={b}' for a, b in sorted(MERGE_ALIASES.items()))}).")
    return MERGES[key]


# -- the model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    index: int
    bidirectional: bool
    input_width: int
    width: int  # of the layer's (merged) output
    residual: bool  # output = merged + input

    @property
    def directions(self):
        return DIRECTIONS if self.bidirectional else DIRECTIONS[:1]


_KEY = re.compile(r"^l(\d+)\.(fwd|bwd)\.(.+)$")


class StackedModel(Protocol):
    """``num_layers`` layers of one cell, each uni- or bidirectional, with a readout and a loss.

    Parameters
    ----------
    cell : str or Cell
        A built-in cell name or a user-defined :class:`~symrnn.engine.cell.Cell`; every
        direction of every layer is this cell with its own parameters.
    D, H, K : int
        Input size, hidden size of every direction, output size (losses with a readout).
    num_layers : int
        At least 1.  Layer 0 reads the inputs, layer ``l`` the outputs of layer ``l - 1``.
    bidirectional : bool or sequence of bool
        For every layer, or one flag per layer.
    merge : str
        How a bidirectional layer merges its directions at each step: ``concat``
        (width 2H, PyTorch's layout), ``sum``, ``ave``, ``mul`` or ``max`` (see :data:`MERGES`).
    residual : bool
        Add each layer's input to its output (layers ``l >= 1``; their input and
        output widths must be equal).
    architecture, loss, reduction
        As :class:`~symrnn.models.model.Model`, on the top layer's (merged) outputs; ``many-to-one``
        scores step T, where the backward direction has read only ``x_T`` (PyTorch's
        ``output[-1]``).  A bidirectional layer needs every step to read an input:
        ``one-to-many`` and ``many-to-many-delayed`` are refused.

    Parameters are named ``l<layer>.<direction>.<name>`` (``l0.fwd.W``,
    ``l1.bwd.U_i``; a unidirectional layer has only ``fwd``) plus the readout's
    ``V`` and ``c``.  Gradients have the same keys, the input's name (``x``) and
    the initial states stacked as PyTorch stacks ``h_0``: ``h0`` of shape
    ``(num_layers * directions, N, H)``, row ``l * directions + d`` (``d = 1``
    the backward direction).

    See Also
    --------
    BidirectionalModel : the one-layer bidirectional case.
    symrnn.models.layouts.to_torch_stack : the parameters as an ``nn.LSTM`` ``state_dict``.

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> model = sr.StackedModel("gru", D=3, H=4, K=5, num_layers=2, bidirectional=True)
    >>> params = model.init_params(seed=0)
    >>> params["l1.bwd.W_z"].shape, params["V"].shape          # layer 1 reads 2H = 8 features
    ((4, 4), (5, 8))
    >>> x = np.random.default_rng(0).normal(size=(6, 2, 3))
    >>> y = np.random.default_rng(1).integers(0, 5, size=(6, 2))
    >>> loss, grads = model.loss_and_grads(params, x, y)
    >>> grads["h0"].shape                                       # (num_layers * directions, N, H)
    (4, 2, 4)
    """

    def __init__(self, cell="rnn-tanh", D=1, H=1, K=None, num_layers=1, bidirectional=False, merge="concat",
                 residual=False, architecture="many-to-many", loss="cross-entropy", reduction="sum"):
        if isinstance(num_layers, (bool, np.bool_)) or not isinstance(num_layers, (int, np.integer)) \
                or num_layers < 1:
            raise ShapeError(f"num_layers must be an integer >= 1, got {num_layers!r} (num_layers=1 is one "
                             f"recurrent layer).")
        self.num_layers = int(num_layers)
        if isinstance(bidirectional, (bool, np.bool_)):
            flags = [bool(bidirectional)] * self.num_layers
        else:
            flags = list(bidirectional)
            if len(flags) != self.num_layers or not all(isinstance(f, (bool, np.bool_)) for f in flags):
                raise ShapeError(f"bidirectional must be a bool or one bool per layer ({self.num_layers}), "
                                 f"got {bidirectional!r}.")
        self.merge = get_merge(merge)
        # the per-step unit: the cell under the upstream loss gives the shared generated code
        self.unit = Model(cell, D=D, H=H, K=K, loss="upstream")
        self.cell = self.unit.cell
        refuse_matrix_states(self.cell, "StackedModel")
        self.architecture = get_architecture(architecture)
        self.loss_rule = get_loss(loss)
        self.loss_rule.check_reduction(reduction)
        if loss == "upstream" and reduction != "sum":
            raise UnknownNameError(f"The upstream loss has no reduction; got reduction={reduction!r}, use 'sum'.")
        self.reduction = reduction
        if (K is not None or self.loss_rule.needs_readout) and (
                isinstance(K, (bool, np.bool_)) or not isinstance(K, (int, np.integer)) or K < 1):
            why = f"loss {loss!r} has a readout: give" if self.loss_rule.needs_readout else "give"
            raise ShapeError(f"{why} the output size K as a positive integer, got {K!r}.")
        if any(flags) and architecture in ("one-to-many", "many-to-many-delayed"):
            raise UnknownNameError(
                f"Architecture {architecture!r} is not defined for a bidirectional layer: its output steps read "
                f"no input (they are generated one after the other), and the backward direction would read the "
                f"future of outputs not yet produced. Use a unidirectional model (bidirectional=False) for "
                f"{architecture!r}, or many-to-many / many-to-one / one-to-one.")
        self.sizes = dict(self.unit.sizes)
        self.sizes["K"] = int(K) if K is not None else None
        self.out = self.unit.out
        self.state_names = self.unit.state_names
        self.input_name = self.unit.input_name
        self.layers, self.width = self._build_layers(flags, int(D), residual)
        self.residual = bool(residual)
        self.bidirectional = flags
        self.logits = self.unit.logits
        self.readout = readout_cell(self.out, self.logits, "H") if self.loss_rule.needs_readout else None
        self._readout_code = None
        self._threads = threading.local()

    def _build_layers(self, flags, D, residual):
        """``(layers, top width)``: each layer's input and output widths, checked (a residual link needs
        equal widths; a cell whose output is as wide as its input keeps every layer at width D)."""
        out_size = self.unit.state_size(self.out)
        layers, width = [], D
        for l, flag in enumerate(flags):
            if self.unit.cell.states[self.out] == "D" and width != int(D):  # LRU: the output is as wide as the input
                raise ShapeError(
                    f"Cell {self.unit.cell.name!r} returns an output as wide as its input, so every layer of a stack "
                    f"must read width D={D}, but layer {l} reads {width}; with bidirectional layers use merge "
                    f"'sum', 'ave', 'mul' or 'max' (not 'concat'), or one layer.")
            out_width = out_size * (self.merge.width if flag else 1)
            res = bool(residual) and l >= 1
            if res and out_width != width:
                raise ShapeError(
                    f"residual=True adds layer {l}'s input (width {width}) to its output (width {out_width}); "
                    f"they must be equal (with merge='concat' a bidirectional layer is 2H wide: use merge "
                    f"'sum', 'ave', 'mul' or 'max', or residual=False).")
            layers.append(Layer(l, flag, width, out_width, res))
            width = out_width
        return layers, width

    def _transform_blocks(self, transform):
        self.unit = self.unit.with_blocks(transform)

    # -- names and shapes --------------------------------------------------------------------------
    @staticmethod
    def key(layer, direction, name) -> str:
        """The parameter key ``l<layer>.<direction>.<name>``."""
        return f"l{layer}.{direction}.{name}"

    def layer_sizes(self, layer: Layer) -> dict:
        return {"D": layer.input_width, "H": self.sizes["H"], "K": self.sizes["K"]}

    @property
    def param_shapes(self) -> dict:
        shapes = {}
        for layer in self.layers:
            sizes = self.layer_sizes(layer)
            for d in layer.directions:
                for name, spec in self.cell.params.items():
                    shapes[self.key(layer.index, d, name)] = tuple(sizes[s] for s in spec.shape)
        if self.readout is not None:
            shapes["V"] = (self.sizes["K"], self.width)
            shapes["c"] = (self.sizes["K"],)
        return shapes

    @property
    def num_directions_total(self) -> int:
        return sum(len(layer.directions) for layer in self.layers)

    def rows(self):
        """``[(layer, direction), ...]`` in the order of the rows of ``h0`` and ``h_n`` (PyTorch's)."""
        return [(layer, d) for layer in self.layers for d in layer.directions]

    def direction_params(self, params, layer, direction) -> dict:
        """The canonical cell parameters of one direction (``{"U": ..., "W": ...}``)."""
        return {name: params[self.key(layer, direction, name)] for name in self.cell.params}

    # -- generated code ------------------------------------------------------------------------------
    @property
    def cell_code(self) -> BlockCode:
        return self.unit.cell_code

    def derive(self):
        """The derivation of one direction of one layer (the cell under an upstream gradient)."""
        return self.unit.derive()

    def _workspaces(self):
        if not hasattr(self._threads, "ws"):
            self._threads.ws = defaultdict(Workspace)
        return self._threads.ws

    def _ws(self, key):
        return self._workspaces()[key]

    # -- argument checks ---------------------------------------------------------------------------
    def _check_params(self, params):
        if not isinstance(params, dict):
            raise ParameterError(f"params must be a dict of arrays, got {type(params).__name__}.")
        expected = self.param_shapes
        layers_given = sorted({int(m.group(1)) for k in params if isinstance(k, str) for m in [_KEY.match(k)] if m})
        if layers_given and layers_given != list(range(self.num_layers)):
            raise ParameterError(
                f"params hold weights of layer(s) {layers_given}, but the model has num_layers="
                f"{self.num_layers} (layers {list(range(self.num_layers))}); give weights for exactly those "
                f"layers (model.init_params(seed) makes a valid dict).")
        for layer in self.layers:
            if not layer.bidirectional and any(isinstance(k, str) and k.startswith(f"l{layer.index}.bwd.")
                                               for k in params):
                raise ParameterError(
                    f"params hold backward-direction weights l{layer.index}.bwd.*, but layer {layer.index} is "
                    f"unidirectional; drop them or build the model with bidirectional=True.")
        check_param_names(params, expected)
        return check_float_params(params, expected,
                                  "shapes come from D, H, K, the layer's input width and the merge mode")

    def _per_row_states(self, given, N, dtype, argument):
        """``{(layer, direction): {state: (N, size)}}`` from stacked ``(rows, N, size)`` arrays."""
        given = {} if given is None else (given if isinstance(given, dict) else {self.out: given})
        unknown = set(given) - set(self.state_names)
        if unknown:
            raise ShapeError(f"{argument} names unknown states {sorted(unknown)}; states are {self.state_names}.")
        rows = self.rows()
        out = {(layer.index, d): {} for layer, d in rows}
        for s in self.state_names:
            size = self.unit.state_size(s)
            if s in given:
                value = as_float_array(given[s], f"{argument}[{s!r}]").astype(dtype, copy=False)
                check_shape(value, (len(rows), N, size), f"{argument}[{s!r}]",
                            f"(num_layers * directions, N, {self.cell.states[s]}): one row per layer and "
                            f"direction, as PyTorch's h_0")
            else:
                value = np.zeros((len(rows), N, size), dtype=dtype)
            for r, (layer, d) in enumerate(rows):
                out[layer.index, d][s] = value[r]
        return out

    def _prepare(self, params, inputs, targets, h0, mask):
        params, dtype = self._check_params(params)
        X_in = as_float_array(inputs, "inputs").astype(dtype, copy=False)
        D = self.sizes["D"]
        if X_in.ndim != 3 or X_in.shape[0] == 0 or X_in.shape[1] == 0 or X_in.shape[2] != D:
            raise ShapeError(f"inputs has shape {X_in.shape}; expected (T, N, D) = (steps, batch, {D}) with "
                             f"T >= 1 and N >= 1 (time-major).")
        N = X_in.shape[1]
        S0 = self._per_row_states(h0, N, dtype, "h0")
        if targets is None:
            return params, X_in, None, S0, None, None
        X, targets, sched, mask = self._scored(X_in, targets, mask)
        return params, X, targets, S0, sched, mask

    def _check_targets(self, Y, N, dtype):
        if self.loss_rule.name != "upstream":
            return super()._check_targets(Y, N, dtype)
        Y = as_float_array(Y, "targets", dtype)
        check_shape(Y, (Y.shape[0], N, self.width), "targets",
                    "(T_out, N, width): dL/d output of the top layer, width "
                    + ("2H (concat)" if self.layers[-1].bidirectional and self.merge.width == 2 else "H"))
        return Y

    # -- the wiring on the tape ----------------------------------------------------------------------
    def parts(self) -> list:
        """Every direction of every layer (in the rows' order), merges, residual sums, readout, loss."""
        parts, below, row = [], "input", 0
        for layer in self.layers:
            names = []
            for d in layer.directions:
                names.append(f"l{layer.index}.{d}")
                parts.append(Part("cell", names[-1], (below,), prefix=self.key(layer.index, d, ""), cell=self.cell,
                                  reverse=d == "bwd", width=layer.input_width, layer=layer.index, row=row))
                row += 1
            if layer.bidirectional:
                parts.append(Part("merge", f"l{layer.index}", tuple(names), width=layer.width, layer=layer.index,
                                  detail=self.merge.name))
            top = parts[-1].name
            if layer.residual:
                parts.append(Part("residual", f"l{layer.index}.residual", (top, below), width=layer.width,
                                  layer=layer.index))
            below = parts[-1].name
        if self.readout is not None:
            parts.append(Part("readout", "readout", (below,), cell=self.readout, width=self.width))
        width = self.sizes["K"] if self.readout is not None else self.width
        return parts + [Part("loss", "loss", (parts[-1].name,), width=width, detail=self.loss_rule.name)]

    def _state_leaves(self, tape, S0):
        return {row: tape.leaf(states) for row, states in S0.items()}

    def _record(self, tape, leaves, sched, final_grads=None, *, prefix="", reverse=True):
        """Every layer's directions, merge and residual link, the scored steps and the readout on
        ``tape``: (top node, ``[(input node, {direction: (node, cache)}, output node), ...]``).
        ``prefix`` precedes the parameter keys (``enc.`` in a :class:`~symrnn.models.seq2seq.Seq2Seq`), ``reverse``
        is the backward directions' time order (see :func:`symrnn.models.tape.reordered`)."""
        P, inp, S0 = leaves
        trace = []
        for layer in self.layers:
            dirs = {d: run_cell(tape, self.cell_code, P, inp, S0[layer.index, d],
                                prefix=prefix + self.key(layer.index, d, ""), out=self.out,
                                sizes=self.layer_sizes(layer), reverse=reverse if d == "bwd" else False,
                                final_grads=None if final_grads is None else final_grads[layer.index, d],
                                empty=self._ws((layer.index, d)))
                    for d in layer.directions}
            y = merge_directions(tape, self.merge, dirs["fwd"][0], dirs["bwd"][0]) if layer.bidirectional else dirs["fwd"][0]
            if layer.residual:
                y = add(tape, y, inp)
            trace.append((inp, dirs, y))
            inp = y
        top = inp if sched is None else window(tape, inp, sched.output_steps)
        if self.readout is not None and sched is not None:
            top = run_stateless(tape, self.readout_code, P, top, outputs=[self.logits],
                                sizes={"H": self.width, "K": self.sizes["K"]}, empty=self._ws("readout"))
        return top, trace

    def _run_layers(self, params, X, S0):
        """Every layer's forward: ``[(inputs, {d: (None, cache, output aligned)}, output), ...]``, top output."""
        tape = Tape()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            top, trace = self._record(tape, (tape.leaf(params), tape.leaf(X), self._state_leaves(tape, S0)), None)
        v = tape.values
        return [(v[i], {d: (None, cache, v[node]) for d, (node, cache) in dirs.items()}, v[y])
                for i, dirs, y in trace], v[top]

    def forward(self, params, inputs, h0=None):
        """The top layer's outputs and the final states, laid out as PyTorch's.

        Parameters
        ----------
        params : dict of str to ndarray
        inputs : ndarray
            ``(T, N, D)``, time-major.
        h0 : ndarray or dict of str to ndarray, optional
            Initial states ``(num_layers * directions, N, size)`` (zeros where not given).

        Returns
        -------
        output : ndarray
            ``(T, N, width)``: the top layer's merged outputs.
        final : dict of str to ndarray
            ``{state: (rows, N, size)}``, row ``l * directions + d``. The backward direction's
            final state is its state after reading ``x_1``, so for a one-layer concat model
            ``h_n[1] == output[0, :, H:]``.

        Examples
        --------
        >>> import numpy as np, symrnn as sr
        >>> model = sr.BidirectionalModel("lstm", D=3, H=4, K=2)
        >>> x = np.random.default_rng(0).normal(size=(5, 2, 3))
        >>> output, final = model.forward(model.init_params(seed=0), x)
        >>> output.shape, final["c"].shape
        ((5, 2, 8), (2, 2, 4))
        >>> bool(np.array_equal(final["h"][1], output[0, :, 4:]))
        True
        """
        params, X, _, S0, _, _ = self._prepare(params, inputs, None, h0, None)
        trace, top = self._run_layers(params, X, S0)
        finals = {s: np.stack([trace[layer.index][1][d][1][f"S_{s}"][-1] for layer, d in self.rows()])
                  for s in self.state_names}
        return np.array(top, copy=True), finals

    def loss_and_grads(self, params, inputs, targets, h0=None, mask=None, final_grads=None):
        """The loss and the exact gradients (see :meth:`symrnn.models.model.Model.loss_and_grads`).

        ``h0`` and ``final_grads`` are arrays ``(num_layers * directions, N, size)`` per state
        (a dict ``{"h": ..., "c": ...}``, or one array for the output state), in PyTorch's row order.
        Returns ``(loss, grads)`` keyed by :attr:`gradient_keys`.
        """
        value, grads, _ = self._loss_grads_and_cache(params, inputs, targets, h0, mask, final_grads)
        return value, grads

    def _final_grads(self, final_grads, N, dtype):
        return self._per_row_states(final_grads, N, dtype, "final_grads")

    def _final_term(self, trace, dS_final):
        return sum(float((dS_final[layer.index, d][s] * trace[layer.index][1][d][1][f"S_{s}"][-1]).sum())
                   for layer, d in self.rows() for s in self.state_names)

    def _state_grads(self, adjoint, S0):
        return {self.initial_state_key(s): np.stack([adjoint[S0[layer.index, d]][s] for layer, d in self.rows()])
                for s in self.state_names}

    def _spaces(self):
        return list(self._workspaces().values())

    def __repr__(self):
        flags = self.bidirectional if len(set(self.bidirectional)) > 1 else self.bidirectional[0]
        return (f"StackedModel({self.cell.name!r}, D={self.sizes['D']}, H={self.sizes['H']}, K={self.sizes['K']}, "
                f"num_layers={self.num_layers}, bidirectional={flags}, "
                f"merge={self.merge.name!r}, residual={self.residual}, architecture={self.architecture.name!r}, "
                f"loss={self.loss_rule.name!r}, reduction={self.reduction!r})")


def BidirectionalModel(cell="rnn-tanh", D=1, H=1, K=None, merge="concat", **kwargs) -> StackedModel:
    """A one-layer bidirectional :class:`StackedModel` (``num_layers`` may be given too).

    Parameters
    ----------
    cell : str or Cell
    D, H, K : int
    merge : str
        ``concat``, ``sum``, ``ave``, ``mul`` or ``max``.
    **kwargs
        Other arguments of :class:`StackedModel`.

    Returns
    -------
    StackedModel

    Examples
    --------
    >>> import symrnn as sr
    >>> model = sr.BidirectionalModel("rnn-tanh", D=2, H=3, K=4, merge="sum")
    >>> sorted(model.init_params(seed=0))
    ['V', 'c', 'l0.bwd.U', 'l0.bwd.W', 'l0.bwd.b', 'l0.fwd.U', 'l0.fwd.W', 'l0.fwd.b']
    """
    return StackedModel(cell, D=D, H=H, K=K, bidirectional=True, merge=merge, **kwargs)
