"""Conversions between symrnn's canonical parameters and stacked framework layouts.

symrnn names every block of a cell separately (``U_i``, ``W_f``, ``b_o`` ...;
see :mod:`symrnn.cells`).  Frameworks stack the blocks of all gates into one
matrix per kind:

PyTorch (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``; cuDNN uses the same layout)
    column convention ``W x``: ``weight_ih_l0`` is ``(G*H, D)``,
    ``weight_hh_l0`` is ``(G*H, H)``, ``bias_ih_l0`` and ``bias_hh_l0`` are
    ``(G*H,)``, the gate blocks stacked along the first axis in the order
    LSTM ``i, f, g, o`` and GRU ``r, z, n``.
Keras (``SimpleRNN``, ``LSTM``, ``GRU``)
    row convention ``x K``: ``kernel`` is ``(D, G*H)``, ``recurrent_kernel``
    is ``(H, G*H)``, the gate blocks side by side along the last axis in the
    order LSTM ``i, f, c, o`` and GRU ``z, r, h``; ``bias`` is ``(G*H,)``, or
    ``(2, 3*H)`` (input bias row, recurrent bias row) for a GRU with
    ``reset_after=True``.

PyTorch has two biases where one suffices: ``bias_ih + bias_hh`` always
enters as a sum, except in the candidate block ``n`` of a GRU, where the
recurrent bias sits inside the reset gate (``r * (W_n h + b_hn)``); that one is
symrnn's ``b_hn``.  :func:`to_torch` therefore writes each bias into
``bias_ih`` and zeros into ``bias_hh`` (but ``b_hn`` into the ``n`` block of
``bias_hh``), and :func:`from_torch` adds the two biases of the redundant
blocks.  The round trip ``from_torch(to_torch(p)) == p`` is exact; the round
trip the other way preserves the function the network computes.

>>> import numpy as np, symrnn as sr
>>> from symrnn.layouts import to_torch, from_torch
>>> params = sr.Model("gru", D=2, H=3, K=4).init_params(0)
>>> sd = to_torch("gru", params)
>>> sd["weight_ih_l0"].shape, sd["bias_hh_l0"].shape
((9, 2), (9,))
>>> back = from_torch("gru", sd)
>>> all(np.array_equal(back[k], params[k]) for k in back)
True

Only the cell's own parameters are converted; the readout ``V``, ``c`` of a
:class:`~symrnn.model.Model` corresponds to an ``nn.Linear`` / ``Dense`` layer
(``weight = V``, ``bias = c`` in PyTorch; ``kernel = V.T`` in Keras) and is
ignored here.  Only NumPy is needed: framework tensors are accepted on input
(anything with ``.detach()`` / ``.numpy()``) and NumPy arrays are returned.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .errors import ParameterError, ShapeError, UnknownNameError

#: symrnn cell name -> gate blocks in PyTorch's stacking order ("" = the single block of a plain RNN).
TORCH_GATES = {
    "rnn-tanh": ("",),
    "rnn-relu": ("",),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
}

#: symrnn cell name -> gate blocks in Keras's stacking order (Keras calls LSTM's g "c" and GRU's n "h").
KERAS_GATES = {
    "rnn-tanh": ("",),
    "rnn-relu": ("",),
    "rnn-sigmoid": ("",),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("z", "r", "n"),
    "gru-reset-before": ("z", "r", "n"),
}

#: Cells whose candidate block keeps a separate recurrent bias ``b_hn`` (reset after the product).
_RESET_AFTER = {"gru", "gru-chung"}

_WHY_NOT = {
    "rnn-sigmoid": "torch.nn.RNN offers only nonlinearity='tanh' or 'relu'",
    "gru-reset-before": "torch.nn.GRU applies the reset gate after the recurrent product (use 'gru')",
    "gru-chung": "torch.nn.GRU updates h = (1 - z) n + z h_prev, not Chung's (1 - z) h_prev + z n (use 'gru')",
    "gru-reset-before-chung": "torch.nn.GRU resets after the product and uses the update "
                              "h = (1 - z) n + z h_prev (use 'gru')",
}

_TORCH_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_KERAS_KEYS = ("kernel", "recurrent_kernel", "bias")


# -- helpers --------------------------------------------------------------------
def _cell_name(cell) -> str:
    name = getattr(cell, "name", cell)
    if not isinstance(name, str):
        raise TypeError(f"cell must be a built-in cell name such as 'lstm', got {type(cell).__name__}.")
    return name


def _gates(cell, table, framework) -> tuple:
    name = _cell_name(cell)
    if name in table:
        return name, table[name]
    from .cells import BUILTIN_CELLS

    if name in BUILTIN_CELLS:
        why = _WHY_NOT.get(name, "") if framework == "PyTorch" else \
            "Keras has no Chung update convention (h = (1 - z) h_prev + z n)"
        raise UnknownNameError(
            f"Cell {name!r} has no {framework} layout: {why}. Cells with a {framework} layout: {sorted(table)}."
        )
    raise UnknownNameError(f"Unknown cell {name!r}; cells with a {framework} layout: {sorted(table)}.")


def _array(value, what) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach()
    if hasattr(value, "cpu"):
        value = value.cpu()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{what} must be an array of numbers ({exc}).") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise ShapeError(f"{what} has dtype {array.dtype}; expected floating-point numbers.")
    return array


def _block(name, gate) -> str:
    return f"{name}_{gate}" if gate else name


def _canonical_names(cell_name, gates) -> list:
    """Parameter names in the order of :mod:`symrnn.cells` (gate by gate: U, W, b)."""
    names = [_block(k, g) for g in gates for k in ("U", "W", "b")]
    if _reset_after(cell_name):
        names.append("b_hn")
    return names


def _check_shape(array, expected, what, meaning):
    if array.shape != tuple(expected):
        raise ShapeError(f"{what} has shape {array.shape}; expected {tuple(expected)} ({meaning}).")


def _read_params(cell_name, gates, params) -> tuple:
    """Canonical params as arrays, with every shape checked; returns (arrays, D, H)."""
    if not isinstance(params, dict):
        raise ParameterError(f"params must be a dict of arrays, got {type(params).__name__}.")
    expected = _canonical_names(cell_name, _canonical_gate_order(cell_name))
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected and k not in ("V", "c")]
    if missing or extra:
        raise ParameterError(
            f"params do not match cell {cell_name!r}: missing {missing}, unexpected {extra}; "
            f"expected {expected} (the readout V, c may also be present and is ignored)."
        )
    arrays = {k: _array(params[k], f"params[{k!r}]") for k in expected}
    first = arrays[_block("U", gates[0])]
    if first.ndim != 2:
        raise ShapeError(f"params[{_block('U', gates[0])!r}] has shape {first.shape}; expected (H, D).")
    H, D = first.shape
    for k, a in arrays.items():
        shape, meaning = {"U": ((H, D), "(H, D)"), "W": ((H, H), "(H, H)"), "b": ((H,), "(H,)")}[k[0]]
        _check_shape(a, shape, f"params[{k!r}]", f"{meaning} with H={H}, D={D} from "
                                                  f"params[{_block('U', gates[0])!r}]")
    return arrays, D, H


def _split(array, G, axis, what, meaning) -> list:
    if array.shape[axis] % G:
        raise ShapeError(f"{what} has shape {array.shape}; expected {meaning} "
                         f"(axis {axis} must hold {G} stacked gate blocks).")
    return np.split(array, G, axis=axis)


# -- PyTorch --------------------------------------------------------------------
def _torch_keys(prefix, layer, reverse) -> dict:
    if not isinstance(layer, (int, np.integer)) or layer < 0:
        raise ShapeError(f"layer must be a non-negative integer, got {layer!r}.")
    suffix = f"_l{int(layer)}" + ("_reverse" if reverse else "")
    return {kind: f"{prefix}{kind}{suffix}" for kind in _TORCH_KINDS}


def to_torch(cell, params, *, layer=0, reverse=False, prefix="") -> dict:
    """PyTorch ``state_dict`` entries (NumPy arrays) for canonical ``params``.

    ``cell`` is ``"rnn-tanh"``, ``"rnn-relu"``, ``"lstm"`` or ``"gru"``: the
    cells ``torch.nn.RNN``/``LSTM``/``GRU`` compute.  Each bias goes into
    ``bias_ih`` and ``bias_hh`` is zero, except the GRU's ``n`` block, which
    holds ``b_hn``.  ``layer``, ``reverse`` and ``prefix`` choose the key
    names (``"rnn.weight_ih_l1_reverse"`` ...).  Load the result with
    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)``.
    """
    name, gates = _gates(cell, TORCH_GATES, "PyTorch")
    p, D, H = _read_params(name, gates, params)
    keys = _torch_keys(prefix, layer, reverse)
    dtype = np.result_type(*p.values())
    bias_hh = [np.zeros(H, dtype=dtype) for _ in gates]
    if name in _RESET_AFTER:
        bias_hh[gates.index("n")] = p["b_hn"]
    return {
        keys["weight_ih"]: np.concatenate([p[_block("U", g)] for g in gates], axis=0).astype(dtype, copy=False),
        keys["weight_hh"]: np.concatenate([p[_block("W", g)] for g in gates], axis=0).astype(dtype, copy=False),
        keys["bias_ih"]: np.concatenate([p[_block("b", g)] for g in gates]).astype(dtype, copy=False),
        keys["bias_hh"]: np.concatenate(bias_hh).astype(dtype, copy=False),
    }


def from_torch(cell, state_dict, *, layer=0, reverse=False, prefix="") -> dict:
    """Canonical params (NumPy arrays) from a PyTorch ``state_dict``.

    Takes the keys of one layer and direction (``layer``, ``reverse``) under
    ``prefix``; keys outside ``prefix`` are ignored.  The biases of a module
    built with ``bias=False`` are taken as zero.  Redundant bias pairs are
    added; the GRU's ``n`` block gives ``b_n = bias_ih[n]`` and
    ``b_hn = bias_hh[n]``.  Projected LSTMs (``proj_size > 0``) are refused.
    """
    name, gates = _gates(cell, TORCH_GATES, "PyTorch")
    if not hasattr(state_dict, "keys"):
        raise ParameterError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}.")
    keys = _torch_keys(prefix, layer, reverse)
    ours = [k for k in state_dict if isinstance(k, str) and k.startswith(prefix)]
    projections = [k for k in ours if k[len(prefix):].startswith("weight_hr")]
    if projections:
        raise ShapeError(f"state_dict has LSTM projection weights {projections}; "
                         f"symrnn's LSTM has no projection (proj_size=0).")
    for kind in ("weight_ih", "weight_hh"):
        if keys[kind] not in state_dict:
            raise ParameterError(
                f"state_dict has no {keys[kind]!r}; keys under prefix {prefix!r}: {sorted(ours)}."
            )
    G = len(gates)
    w_ih = _array(state_dict[keys["weight_ih"]], keys["weight_ih"])
    w_hh = _array(state_dict[keys["weight_hh"]], keys["weight_hh"])
    if w_hh.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ShapeError(f"{keys['weight_hh']} has shape {w_hh.shape}; expected ({G}*H, H) "
                         f"for cell {name!r} ({G} gate block{'s' if G > 1 else ''}).")
    H = w_hh.shape[1]
    if w_ih.ndim != 2 or w_ih.shape[0] != G * H:
        raise ShapeError(f"{keys['weight_ih']} has shape {w_ih.shape}; expected ({G * H}, D) = ({G}*H, D) with H={H}.")
    dtype = np.result_type(w_ih, w_hh)
    biases = {}
    for kind in ("bias_ih", "bias_hh"):
        if keys[kind] in state_dict:
            biases[kind] = _array(state_dict[keys[kind]], keys[kind])
            _check_shape(biases[kind], (G * H,), keys[kind], f"({G}*H,) with H={H}")
        else:
            biases[kind] = np.zeros(G * H, dtype=dtype)
    U = np.split(w_ih, G, axis=0)
    W = np.split(w_hh, G, axis=0)
    b_ih = np.split(biases["bias_ih"], G)
    b_hh = np.split(biases["bias_hh"], G)
    params = {}
    for k, g in enumerate(gates):
        params[_block("U", g)] = U[k].copy()
    for k, g in enumerate(gates):
        params[_block("W", g)] = W[k].copy()
    for k, g in enumerate(gates):
        params[_block("b", g)] = b_ih[k].copy() if (name in _RESET_AFTER and g == "n") else b_ih[k] + b_hh[k]
    if name in _RESET_AFTER:
        params["b_hn"] = b_hh[gates.index("n")].copy()
    return {k: params[k] for k in _canonical_names(name, _canonical_gate_order(name))}


# -- Keras ------------------------------------------------------------------------
def to_keras(cell, params) -> dict:
    """Keras weights ``{"kernel", "recurrent_kernel", "bias"}`` (NumPy arrays) for canonical ``params``.

    In the order of ``layer.get_weights()``; pass ``list(result.values())`` to
    ``layer.set_weights``.  ``"gru"`` is a Keras ``GRU(reset_after=True)``
    (bias ``(2, 3H)``: input row ``b``, recurrent row zero except ``b_hn`` in
    the ``h`` block); ``"gru-reset-before"`` is ``GRU(reset_after=False)``
    (bias ``(3H,)``).  The gates must be Keras's ``recurrent_activation="sigmoid"``
    (the Keras 2.x/3.x default) and the activation ``tanh``; ``rnn-*`` is a
    ``SimpleRNN`` with ``activation`` tanh, relu or sigmoid.
    """
    name, gates = _gates(cell, KERAS_GATES, "Keras")
    p, D, H = _read_params(name, gates, params)
    dtype = np.result_type(*p.values())
    kernel = np.concatenate([p[_block("U", g)].T for g in gates], axis=1).astype(dtype)
    recurrent = np.concatenate([p[_block("W", g)].T for g in gates], axis=1).astype(dtype)
    bias = np.concatenate([p[_block("b", g)] for g in gates]).astype(dtype, copy=False)
    if name in _RESET_AFTER:
        rec = [np.zeros(H, dtype=dtype) for _ in gates]
        rec[gates.index("n")] = p["b_hn"]
        bias = np.stack([bias, np.concatenate(rec)]).astype(dtype, copy=False)
    return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}


def from_keras(cell, weights) -> dict:
    """Canonical params from Keras weights: a dict with ``kernel``,
    ``recurrent_kernel``, ``bias`` or the list ``layer.get_weights()`` in that order.
    A layer built with ``use_bias=False`` has no ``bias`` (taken as zero)."""
    name, gates = _gates(cell, KERAS_GATES, "Keras")
    if isinstance(weights, (list, tuple)):
        if len(weights) not in (2, 3):
            raise ParameterError(f"Keras weights list has {len(weights)} arrays; expected "
                                 f"[kernel, recurrent_kernel, bias] (or 2 without bias).")
        weights = dict(zip(_KERAS_KEYS, weights))
    if not hasattr(weights, "keys"):
        raise ParameterError(f"weights must be a dict or a list of arrays, got {type(weights).__name__}.")
    missing = [k for k in _KERAS_KEYS[:2] if k not in weights]
    extra = [k for k in weights if k not in _KERAS_KEYS]
    if missing or extra:
        raise ParameterError(f"Keras weights: missing {missing}, unexpected {extra}; expected {list(_KERAS_KEYS)}.")
    G = len(gates)
    recurrent = _array(weights["recurrent_kernel"], "recurrent_kernel")
    if recurrent.ndim != 2 or recurrent.shape[1] != G * recurrent.shape[0]:
        raise ShapeError(f"recurrent_kernel has shape {recurrent.shape}; expected (H, {G}*H) for cell {name!r}.")
    H = recurrent.shape[0]
    kernel = _array(weights["kernel"], "kernel")
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ShapeError(f"kernel has shape {kernel.shape}; expected (D, {G * H}) = (D, {G}*H) with H={H}.")
    dtype = np.result_type(kernel, recurrent)
    reset_after = name in _RESET_AFTER
    bias_shape = (2, G * H) if reset_after else (G * H,)
    if "bias" in weights and weights["bias"] is not None:
        bias = _array(weights["bias"], "bias")
        meaning = ("(2, 3*H): input and recurrent bias rows of GRU(reset_after=True)" if reset_after
                   else f"({G}*H,) with H={H}")
        _check_shape(bias, bias_shape, "bias", meaning)
    else:
        bias = np.zeros(bias_shape, dtype=dtype)
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, None)
    U = np.split(kernel, G, axis=1)
    W = np.split(recurrent, G, axis=1)
    b_in_blocks = np.split(b_in, G)
    b_rec_blocks = np.split(b_rec, G) if b_rec is not None else None
    params = {}
    for k, g in enumerate(gates):
        params[_block("U", g)] = np.ascontiguousarray(U[k].T)
    for k, g in enumerate(gates):
        params[_block("W", g)] = np.ascontiguousarray(W[k].T)
    for k, g in enumerate(gates):
        b = b_in_blocks[k].copy()
        if b_rec_blocks is not None and g != "n":
            b = b + b_rec_blocks[k]
        params[_block("b", g)] = b
    if reset_after:
        params["b_hn"] = b_rec_blocks[gates.index("n")].copy()
    # the canonical order of the model's parameter dict (gates as in symrnn.cells)
    order = _canonical_names(name, _canonical_gate_order(name))
    return {k: params[k] for k in order}


def _canonical_gate_order(name) -> tuple:
    if not isinstance(name, str):  # a Cell: its own gates
        return cell_gates(name)
    if name.startswith("rnn"):
        return ("",)
    return ("i", "f", "g", "o") if name == "lstm" else ("r", "z", "n")


def cell_gates(cell) -> tuple:
    """The gates of a :class:`~symrnn.Cell` as a layout stacks them: ``("",)`` for a cell with
    parameters ``U``, ``W``, ``b``; else the names ``g`` of its ``U_g``, ``W_g``, ``b_g`` triples in
    the cell's order (the LSTM's ``i f g o``, a minimal gated unit's ``f n``), whatever they are
    called; a reset-after GRU's ``b_hn`` is the recurrent candidate bias."""
    names = list(cell.params)
    if {"U", "W", "b"} <= set(names):
        gates, used = ("",), {"U", "W", "b"}
    else:
        gates = tuple(n[2:] for n in names if n.startswith("U_") and f"W_{n[2:]}" in names and f"b_{n[2:]}" in names)
        used = {f"{k}_{g}" for g in gates for k in ("U", "W", "b")} | {"b_hn"}
    other = [n for n in names if n not in used]
    if not gates or other:
        raise UnknownNameError(
            f"A layout stacks a cell's weights gate by gate, as U_<gate> (input), W_<gate> (recurrent) and "
            f"b_<gate> (bias) per gate, or U, W, b for one gate; cell {cell.name!r} has the parameters {names}"
            + (f" ({other} fit no gate)" if other and gates else "")
            + ": name them so, or convert the parameters yourself and verify with layout='symrnn'-style names.")
    return gates


def _reset_after(cell) -> bool:
    """The GRU's recurrent candidate bias ``b_hn`` is a parameter of its own."""
    return "b_hn" in cell.params if not isinstance(cell, str) else cell in _RESET_AFTER


# -- declarative layouts of hand-written code ------------------------------------------
_ROLES = ("Wx", "Wh", "W", "b", "b_hh", "V", "V_b")
_STACKED_ROLES = ("Wx", "Wh", "W", "b", "b_hh")  # a tuple of names: one array per gate, in gate_order


@dataclass(frozen=True)
class Layout:
    """How a hand-written implementation lays out a cell's parameters, inputs and states.

    Parameters
    ----------
    name : str
        For messages (``"cs231n"``).
    names : dict
        The user's name for each role: ``"Wx"`` (input weights), ``"Wh"`` (recurrent
        weights), or ``"W"`` (one matrix over ``[x, h]`` or ``[h, x]``), ``"b"``,
        ``"b_hh"`` (a second bias), ``"V"``, ``"V_b"`` (readout weights and bias: symrnn's
        ``V`` and ``c``).
    gate_order : tuple of str
        The user's stacking order of symrnn's gate names (LSTM ``i f g o``, GRU
        ``r z n``), e.g. ``("i", "f", "o", "g")`` for CS231n; ``()`` for a plain RNN.
    convention : ``"column"`` or ``"row"``
        ``W x`` with ``W`` shaped ``(G*H, D)`` (PyTorch), or ``x W`` with ``W``
        shaped ``(D, G*H)`` (Keras, CS231n).
    stacking : ``"separate"``, ``"xh"`` or ``"hx"``
        Input and recurrent weights apart, or one matrix acting on the
        concatenation ``[x, h]`` / ``[h, x]``.
    bias_shape : ``"flat"``, ``"row"`` or ``"column"``
        ``(G*H,)``, ``(1, G*H)`` or ``(G*H, 1)`` (and the same for the readout bias).
    vectors : ``"rows"`` or ``"columns"``
        States and inputs of a batch as rows ``(N, H)`` or as columns ``(H, N)``
        (min-char-rnn's column vectors).
    batch_major : bool
        Sequences as ``(N, T, D)`` instead of symrnn's ``(T, N, D)``.
    forget_bias : float
        A constant added to the forget gate's bias at run time and not stored
        (TF1's ``forget_bias=1.0``): symrnn's ``b_f`` is the stored one plus it.

    A layout converts both ways, for parameters and for gradients (a gradient
    dict with the input and initial states in it converts too); an array that
    does not fit is refused with the shape expected and the shape given.
    """

    name: str
    names: dict
    gate_order: tuple = ()
    convention: str = "column"
    stacking: str = "separate"
    bias_shape: str = "flat"
    vectors: str = "rows"
    batch_major: bool = False
    forget_bias: float = 0.0

    def __post_init__(self):
        for field_name, allowed in (("convention", ("column", "row")), ("stacking", ("separate", "xh", "hx")),
                                    ("bias_shape", ("flat", "row", "column")), ("vectors", ("rows", "columns"))):
            if getattr(self, field_name) not in allowed:
                raise UnknownNameError(f"Layout {self.name!r}: {field_name}={getattr(self, field_name)!r}; "
                                       f"expected one of {allowed}.")
        for role, name in self.names.items():
            if isinstance(name, tuple) and role not in _STACKED_ROLES:
                raise UnknownNameError(f"Layout {self.name!r}: names[{role!r}] is a tuple; only {_STACKED_ROLES} may "
                                       f"be given gate by gate.")
        unknown = set(self.names) - set(_ROLES)
        if unknown:
            raise UnknownNameError(f"Layout {self.name!r}: unknown roles {sorted(unknown)}; roles are {_ROLES}.")

    # -- gates ------------------------------------------------------------------------
    def gates(self, cell_name) -> tuple:
        canonical = _canonical_gate_order(cell_name)
        if canonical == ("",):
            return canonical
        if sorted(self.gate_order) != sorted(canonical):
            raise UnknownNameError(
                f"Layout {self.name!r} stacks the gates {self.gate_order}, but cell "
                f"{cell_name if isinstance(cell_name, str) else cell_name.name!r} has the gates "
                f"{canonical}; give gate_order as an ordering of {canonical}.")
        return tuple(self.gate_order)

    # -- parameters -------------------------------------------------------------------
    def _bias(self, vector):
        return {"flat": vector, "row": vector[None, :], "column": vector[:, None]}[self.bias_shape]

    def _matrix(self, blocks):
        """Canonical (rows, in) blocks stacked along the gate axis in the user's convention."""
        stacked = np.concatenate(blocks, axis=0)
        return stacked if self.convention == "column" else stacked.T

    def to_user(self, cell_name, params, *, gradients=False) -> dict:
        """Canonical ``params`` (or gradients, with ``gradients=True``) in this layout's names and shapes."""
        gates = self.gates(cell_name)
        out = {}
        U = [params[_block("U", g)] for g in gates]
        W = [params[_block("W", g)] for g in gates]
        if self.stacking == "separate":
            out[self.names["Wx"]] = self._matrix(U)
            out[self.names["Wh"]] = self._matrix(W)
        else:
            pairs = [np.concatenate((u, w) if self.stacking == "xh" else (w, u), axis=1) for u, w in zip(U, W)]
            out[self.names["W"]] = self._matrix(pairs)
        b = [np.array(params[_block("b", g)], copy=True) for g in gates]
        if not gradients and self.forget_bias and "f" in gates:
            b[gates.index("f")] = b[gates.index("f")] - self.forget_bias
        reset_after = _reset_after(cell_name)
        if "b_hh" in self.names:
            b_hh = [np.array(params["b_hn"]) if g == "n" and reset_after else
                    (np.array(params[_block("b", g)]) if gradients else np.zeros_like(params[_block("b", g)]))
                    for g in gates]
            out[self.names["b_hh"]] = self._bias(np.concatenate(b_hh))
        elif reset_after:
            raise UnknownNameError(
                f"Cell {getattr(cell_name, 'name', cell_name)!r} has a recurrent candidate bias b_hn; layout {self.name!r} has one bias. "
                f"Give the layout a second bias (names['b_hh']) or use a reset-before GRU.")
        out[self.names["b"]] = self._bias(np.concatenate(b))
        if "V" in params and "V" in self.names:
            out[self.names["V"]] = params["V"] if self.convention == "column" else params["V"].T
            out[self.names["V_b"]] = self._bias(params["c"])
        for role, name in self.names.items():  # one array per gate
            if isinstance(name, tuple) and name in out:
                out.update(zip(name, np.split(out.pop(name), len(name), axis=self._gate_axis(role))))
        return out

    def _gate_axis(self, role):
        """The axis along which the gates' blocks of a stacked array follow each other."""
        if role in ("b", "b_hh"):
            return 1 if self.bias_shape == "row" else 0
        return 0 if self.convention == "column" else 1

    def from_user(self, cell_name, user, sizes, *, gradients=False) -> dict:
        """Canonical parameters (or gradients) from this layout's; shapes checked against ``sizes``."""
        gates = self.gates(cell_name)
        G, D, H = len(gates), sizes["D"], sizes["H"]
        names = [n for role, n in self.names.items() if role not in ("V", "V_b") or sizes.get("K")]
        names = [m for n in names for m in (n if isinstance(n, tuple) else (n,))]
        missing = [n for n in names if n not in user]
        if not missing:
            user = dict(user)
            for role, name in self.names.items():  # one array per gate: stacked as the layout stacks them
                if isinstance(name, tuple):
                    parts = [_array(user[n], n) for n in name]
                    try:
                        user[name] = np.concatenate(parts, axis=self._gate_axis(role))
                    except ValueError:
                        raise ShapeError(f"Layout {self.name!r}: {', '.join(name)} have the shapes "
                                         f"{[p.shape for p in parts]}; one array per gate of the same shape "
                                         f"expected.") from None
        if missing:
            raise ParameterError(f"Layout {self.name!r}: missing {missing}; expected the arrays {names}.")

        def matrix(name, cols):
            expected = (G * H, cols) if self.convention == "column" else (cols, G * H)
            a = _array(user[name], f"{name}")
            _check_shape(a, expected, f"{name}", f"{self.name} layout, {self.convention} convention, "
                                                 + (f"gates {gates}, " if gates != ("",) else "")
                                                 + f"D={D}, H={H}")
            return a if self.convention == "column" else a.T

        def bias(name, size):
            expected = {"flat": (size,), "row": (1, size), "column": (size, 1)}[self.bias_shape]
            a = _array(user[name], f"{name}")
            _check_shape(a, expected, f"{name}", f"{self.name} layout, {self.bias_shape} bias")
            return a.reshape(size)

        out = {}
        if self.stacking == "separate":
            U, W = matrix(self.names["Wx"], D), matrix(self.names["Wh"], H)
        else:
            both = matrix(self.names["W"], D + H)
            U, W = (both[:, :D], both[:, D:]) if self.stacking == "xh" else (both[:, H:], both[:, :H])
        b = bias(self.names["b"], G * H)
        b_hh = bias(self.names["b_hh"], G * H) if "b_hh" in self.names else None
        reset_after = _reset_after(cell_name)
        for k, g in enumerate(gates):
            rows = slice(k * H, (k + 1) * H)
            out[_block("U", g)], out[_block("W", g)] = U[rows].copy(), W[rows].copy()
            bk = b[rows].copy()
            if b_hh is not None and not (g == "n" and reset_after):
                bk = bk if gradients else bk + b_hh[rows]
            if g == "f" and self.forget_bias and not gradients:
                bk = bk + self.forget_bias
            out[_block("b", g)] = bk
            if g == "n" and reset_after:
                out["b_hn"] = b_hh[rows].copy()
        order = _canonical_names(cell_name, _canonical_gate_order(cell_name))
        out = {k: out[k] for k in order}
        if sizes.get("K") and "V" in self.names:
            K = sizes["K"]
            V = _array(user[self.names["V"]], self.names["V"])
            _check_shape(V, (K, H) if self.convention == "column" else (H, K), self.names["V"],
                         f"{self.name} layout readout, K={K}, H={H}")
            out["V"] = V if self.convention == "column" else V.T
            out["c"] = bias(self.names["V_b"], K)
        return out

    # -- sequences and states ---------------------------------------------------------------
    def sequence_to_user(self, X):
        """(T, N, F) -> the user's sequence layout."""
        if self.vectors == "columns":
            X = X.transpose(0, 2, 1)  # (T, F, N)
            return X.transpose(2, 0, 1) if self.batch_major else X
        return X.transpose(1, 0, 2) if self.batch_major else X

    def sequence_from_user(self, X, what, expected):
        """The user's sequence -> (T, N, F); ``expected`` is (T, N, F)."""
        X = _array(X, what)
        shape = tuple(np.asarray(self.sequence_to_user(np.empty(expected))).shape)
        _check_shape(X, shape, what, f"{self.name} layout: " + ("batch-major" if self.batch_major else "time-major")
                     + f", vectors as {self.vectors}, (T, N, F) = {tuple(expected)}")
        if self.vectors == "columns":
            X = X.transpose(1, 2, 0) if self.batch_major else X.transpose(0, 2, 1)
            return X
        return X.transpose(1, 0, 2) if self.batch_major else X

    def state_to_user(self, S):
        """(N, H) -> (N, H) or (H, N)."""
        return S.T if self.vectors == "columns" else S

    def state_from_user(self, S, what, expected):
        S = _array(S, what)
        shape = expected[::-1] if self.vectors == "columns" else expected
        _check_shape(S, shape, what, f"{self.name} layout, vectors as {self.vectors}, (N, H) = {tuple(expected)}")
        return S.T if self.vectors == "columns" else S


#: Layouts of the systems users come from (see ``CONVENTIONS.md`` in the project's notes).
LAYOUTS = {
    "pytorch": Layout("pytorch", {"Wx": "weight_ih", "Wh": "weight_hh", "b": "bias_ih", "b_hh": "bias_hh",
                                  "V": "weight", "V_b": "bias"},
                      gate_order=("i", "f", "g", "o"), convention="column"),
    "keras": Layout("keras", {"Wx": "kernel", "Wh": "recurrent_kernel", "b": "bias", "V": "dense_kernel",
                              "V_b": "dense_bias"},
                    gate_order=("i", "f", "g", "o"), convention="row", batch_major=True),
    "cs231n": Layout("cs231n", {"Wx": "Wx", "Wh": "Wh", "b": "b", "V": "W_vocab", "V_b": "b_vocab"},
                     gate_order=("i", "f", "o", "g"), convention="row", batch_major=True),
    "minchar": Layout("minchar", {"Wx": "Wxh", "Wh": "Whh", "b": "bh", "V": "Why", "V_b": "by"},
                      convention="column", bias_shape="column", vectors="columns"),
    "dlfs2": Layout("dlfs2", {"Wx": "Wx", "Wh": "Wh", "b": "b", "V": "W", "V_b": "b_out"},
                    gate_order=("f", "g", "i", "o"), convention="row", batch_major=True),
}

#: Gate orders that differ by cell: a GRU in these layouts.
_GRU_ORDERS = {"pytorch": ("r", "z", "n"), "keras": ("z", "r", "n"), "dlfs2": ("z", "r", "n"),
               "cs231n": ("r", "z", "n"), "minchar": ("r", "z", "n")}


#: other spellings of the presets' names (the README and the projects call min-char-rnn so)
LAYOUT_ALIASES = {"min-char-rnn": "minchar", "min_char_rnn": "minchar", "minchar-rnn": "minchar",
                  "torch": "pytorch", "deep-learning-from-scratch-2": "dlfs2"}


def preset_name(layout):
    """The preset a layout name means (aliases resolved), or the name unchanged."""
    if isinstance(layout, str):
        key = layout.strip().lower()
        return LAYOUT_ALIASES.get(key, key)
    return layout


_BUILTIN_GATES = ("rnn-tanh", "rnn-relu", "rnn-sigmoid", "lstm", "gru", "gru-chung", "gru-reset-before",
                  "gru-reset-before-chung")


def layout_for(layout, cell_name) -> Layout:
    """A preset by name (or a :class:`Layout`), with the gate order of ``cell_name``'s family (a
    built-in cell's name, or a :class:`~symrnn.Cell`: a user's cell keeps its own gates, in its
    order)."""
    if isinstance(layout, Layout):
        return layout
    if not isinstance(layout, str):
        raise UnknownNameError(f"layout must be a preset name or a symrnn.layouts.Layout, got "
                               f"{type(layout).__name__}.")
    layout = preset_name(layout)
    if layout not in LAYOUTS:
        raise UnknownNameError(f"Unknown layout {layout!r}; presets: {sorted(LAYOUTS)} (also spelled "
                               f"{sorted(LAYOUT_ALIASES)}), or a symrnn.layouts.Layout.")
    preset = LAYOUTS[layout]
    name = cell_name if isinstance(cell_name, str) else cell_name.name
    if not isinstance(cell_name, str) and name not in _BUILTIN_GATES:  # a user's cell: its own gates, in its order
        gates = cell_gates(cell_name)
        return replace(preset, gate_order=() if gates == ("",) else gates)
    if name.startswith("gru"):
        return replace(preset, gate_order=_GRU_ORDERS[layout])
    return preset


__all__ = ["TORCH_GATES", "KERAS_GATES", "to_torch", "from_torch", "to_keras", "from_keras",
           "Layout", "LAYOUTS", "layout_for"]


# -- stacked and bidirectional models (symrnn.wiring.StackedModel) ------------------------------------
def _stack_layers(params) -> dict:
    """``{(layer, direction): {name: array}}`` from ``l<k>.<fwd|bwd>.<name>`` keys (readout V, c ignored)."""
    import re

    if not isinstance(params, dict):
        raise ParameterError(f"params must be a dict of arrays, got {type(params).__name__}.")
    found = {}
    for key, value in params.items():
        match = re.match(r"^l(\d+)\.(fwd|bwd)\.(.+)$", str(key))
        if match is None:
            if key in ("V", "c"):
                continue
            raise ParameterError(f"params key {key!r} is not a StackedModel key 'l<layer>.<fwd|bwd>.<name>' "
                                 f"(or the readout V, c).")
        found.setdefault((int(match.group(1)), match.group(2)), {})[match.group(3)] = value
    layers = sorted({k for k, _ in found})
    if not layers or layers != list(range(len(layers))):
        raise ParameterError(f"params hold layers {layers}; expected layers 0, 1, ... without gaps.")
    return found


def to_torch_stack(cell, params, *, prefix="") -> dict:
    """A whole ``nn.RNN/LSTM/GRU(num_layers=k, bidirectional=...)`` ``state_dict`` (NumPy arrays)
    from :class:`~symrnn.wiring.StackedModel` parameters: ``l<k>.fwd.*`` become ``weight_ih_l<k>``...,
    ``l<k>.bwd.*`` become ``weight_ih_l<k>_reverse``...  (PyTorch's merge is concat.)"""
    out = {}
    for (layer, direction), p in sorted(_stack_layers(params).items()):
        out.update(to_torch(cell, p, layer=layer, reverse=direction == "bwd", prefix=prefix))
    return out


def from_torch_stack(cell, state_dict, num_layers, bidirectional, *, prefix="") -> dict:
    """:class:`~symrnn.wiring.StackedModel` parameters (``l<k>.<fwd|bwd>.<name>``) from the ``state_dict``
    of ``nn.RNN/LSTM/GRU(num_layers=num_layers, bidirectional=bidirectional)``.  A ``state_dict`` with
    more or fewer layers, or with (or without) ``_reverse`` weights the model does not have, is refused."""
    if not hasattr(state_dict, "keys"):
        raise ParameterError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}.")
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
        raise ShapeError(f"num_layers must be an integer >= 1, got {num_layers!r}.")
    import re

    present = set()
    for key in state_dict:
        match = re.match(rf"^{re.escape(prefix)}weight_ih_l(\d+)(_reverse)?$", str(key))
        if match:
            present.add((int(match.group(1)), bool(match.group(2))))
    layers = sorted({k for k, _ in present})
    if layers != list(range(num_layers)):
        raise ParameterError(
            f"state_dict holds weights of layer(s) {layers} but num_layers={num_layers}: it is a "
            f"{len(layers)}-layer module; build the model with num_layers={len(layers)} (or pass the matching "
            f"state_dict).")
    reverse = {k for k, r in present if r}
    if bidirectional and reverse != set(layers):
        raise ParameterError(f"bidirectional=True but state_dict has _reverse weights only for layers "
                             f"{sorted(reverse)}; it comes from a module built with bidirectional=False?")
    if not bidirectional and reverse:
        raise ParameterError(f"bidirectional=False but state_dict has _reverse weights for layers {sorted(reverse)}; "
                             f"build the model with bidirectional=True.")
    out = {}
    for layer in range(num_layers):
        for direction in (("fwd", "bwd") if bidirectional else ("fwd",)):
            p = from_torch(cell, state_dict, layer=layer, reverse=direction == "bwd", prefix=prefix)
            out.update({f"l{layer}.{direction}.{k}": v for k, v in p.items()})
    return out


def to_keras_bidirectional(cell, params, *, layer=0) -> list:
    """The weights of a Keras ``Bidirectional(RNN layer)`` for layer ``layer`` of a bidirectional
    :class:`~symrnn.wiring.StackedModel`: ``layer.get_weights()`` order, the forward layer's
    ``[kernel, recurrent_kernel, bias]`` then the backward layer's (pass to ``set_weights``)."""
    found = _stack_layers(params)
    if (layer, "bwd") not in found or (layer, "fwd") not in found:
        raise ParameterError(f"params have no bidirectional layer {layer} (l{layer}.fwd.* and l{layer}.bwd.*).")
    return [w for d in ("fwd", "bwd") for w in to_keras(cell, found[layer, d]).values()]


def from_keras_bidirectional(cell, weights, *, layer=0) -> dict:
    """``l<layer>.fwd.*`` and ``l<layer>.bwd.*`` parameters from a Keras ``Bidirectional`` layer's
    ``get_weights()`` (6 arrays, or 4 without biases: forward layer first, then backward)."""
    if not isinstance(weights, (list, tuple)) or len(weights) not in (4, 6):
        n = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise ParameterError(f"Keras Bidirectional weights must be the list get_weights() returns: 6 arrays "
                             f"(forward kernel, recurrent_kernel, bias, then backward), or 4 without bias; got {n}.")
    half = len(weights) // 2
    out = {}
    for d, part in (("fwd", weights[:half]), ("bwd", weights[half:])):
        out.update({f"l{layer}.{d}.{k}": v for k, v in from_keras(cell, list(part)).items()})
    return out

__all__ += ["to_torch_stack", "from_torch_stack", "to_keras_bidirectional", "from_keras_bidirectional"]
