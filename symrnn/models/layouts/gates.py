"""What every layout shares: the gate tables of PyTorch and Keras, the canonical parameter names
of a cell (``U_g``, ``W_g``, ``b_g`` per gate, ``b_hn``), and the checks of the arrays given."""
from __future__ import annotations

import numpy as np

from ...errors import ParameterError, ShapeError, UnknownNameError
from ...validation import check_shape

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
RESET_AFTER = {"gru", "gru-chung"}

_WHY_NOT = {
    "rnn-sigmoid": "torch.nn.RNN offers only nonlinearity='tanh' or 'relu'",
    "gru-reset-before": "torch.nn.GRU applies the reset gate after the recurrent product (use 'gru')",
    "gru-chung": "torch.nn.GRU updates h = (1 - z) n + z h_prev, not Chung's (1 - z) h_prev + z n (use 'gru')",
    "gru-reset-before-chung": "torch.nn.GRU resets after the product and uses the update "
                              "h = (1 - z) n + z h_prev (use 'gru')",
}

# -- helpers --------------------------------------------------------------------
def _cell_name(cell) -> str:
    name = getattr(cell, "name", cell)
    if not isinstance(name, str):
        raise TypeError(f"cell must be a built-in cell name such as 'lstm', got {type(cell).__name__}.")
    return name


def framework_gates(cell, table, framework) -> tuple:
    name = _cell_name(cell)
    if name in table:
        return name, table[name]
    from ...engine.cells import BUILTIN_CELLS

    if name in BUILTIN_CELLS:
        why = _WHY_NOT.get(name, "") if framework == "PyTorch" else \
            "Keras has no Chung update convention (h = (1 - z) h_prev + z n)"
        raise UnknownNameError(
            f"Cell {name!r} has no {framework} layout: {why}. Cells with a {framework} layout: {sorted(table)}."
        )
    raise UnknownNameError(f"Unknown cell {name!r}; cells with a {framework} layout: {sorted(table)}.")


def as_array(value, what) -> np.ndarray:
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
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16"):  # ml_dtypes' bfloat16
        raise ShapeError(f"{what} has dtype {array.dtype}; expected floating-point numbers.")
    return array


def block_name(name, gate) -> str:
    return f"{name}_{gate}" if gate else name


def canonical_names(cell_name, gates) -> list:
    """Parameter names in the order of :mod:`symrnn.engine.cells` (gate by gate: U, W, b)."""
    names = [block_name(k, g) for g in gates for k in ("U", "W", "b")]
    if resets_after(cell_name):
        names.append("b_hn")
    return names


def read_params(cell_name, gates, params) -> tuple:
    """Canonical params as arrays, with every shape checked; returns (arrays, D, H)."""
    if not isinstance(params, dict):
        raise ParameterError(f"params must be a dict of arrays, got {type(params).__name__}.")
    expected = canonical_names(cell_name, canonical_gate_order(cell_name))
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected and k not in ("V", "c")]
    if missing or extra:
        raise ParameterError(
            f"params do not match cell {cell_name!r}: missing {missing}, unexpected {extra}; "
            f"expected {expected} (the readout V, c may also be present and is ignored)."
        )
    arrays = {k: as_array(params[k], f"params[{k!r}]") for k in expected}
    first = arrays[block_name("U", gates[0])]
    if first.ndim != 2:
        raise ShapeError(f"params[{block_name('U', gates[0])!r}] has shape {first.shape}; expected (H, D).")
    H, D = first.shape
    for k, a in arrays.items():
        shape, meaning = {"U": ((H, D), "(H, D)"), "W": ((H, H), "(H, H)"), "b": ((H,), "(H,)")}[k[0]]
        check_shape(a, shape, f"params[{k!r}]", f"{meaning} with H={H}, D={D} from "
                                                  f"params[{block_name('U', gates[0])!r}]")
    return arrays, D, H


def canonical_gate_order(name) -> tuple:
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


def resets_after(cell) -> bool:
    """The GRU's recurrent candidate bias ``b_hn`` is a parameter of its own."""
    return "b_hn" in cell.params if not isinstance(cell, str) else cell in RESET_AFTER

