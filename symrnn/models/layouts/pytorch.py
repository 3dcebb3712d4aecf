"""PyTorch's stacked layout (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``): ``weight_ih_l0`` ``(G*H, D)``,
``weight_hh_l0`` ``(G*H, H)``, two biases; see :mod:`symrnn.models.layouts`."""
from __future__ import annotations

import numpy as np

from ...errors import ParameterError, ShapeError
from .gates import (RESET_AFTER, TORCH_GATES, as_array, block_name, canonical_gate_order, canonical_names,
                    check_shape, framework_gates, read_params)

_TORCH_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


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
    name, gates = framework_gates(cell, TORCH_GATES, "PyTorch")
    p, D, H = read_params(name, gates, params)
    keys = _torch_keys(prefix, layer, reverse)
    dtype = np.result_type(*p.values())
    bias_hh = [np.zeros(H, dtype=dtype) for _ in gates]
    if name in RESET_AFTER:
        bias_hh[gates.index("n")] = p["b_hn"]
    return {
        keys["weight_ih"]: np.concatenate([p[block_name("U", g)] for g in gates], axis=0).astype(dtype, copy=False),
        keys["weight_hh"]: np.concatenate([p[block_name("W", g)] for g in gates], axis=0).astype(dtype, copy=False),
        keys["bias_ih"]: np.concatenate([p[block_name("b", g)] for g in gates]).astype(dtype, copy=False),
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
    name, gates = framework_gates(cell, TORCH_GATES, "PyTorch")
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
    w_ih = as_array(state_dict[keys["weight_ih"]], keys["weight_ih"])
    w_hh = as_array(state_dict[keys["weight_hh"]], keys["weight_hh"])
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
            biases[kind] = as_array(state_dict[keys[kind]], keys[kind])
            check_shape(biases[kind], (G * H,), keys[kind], f"({G}*H,) with H={H}")
        else:
            biases[kind] = np.zeros(G * H, dtype=dtype)
    U, W = np.split(w_ih, G, axis=0), np.split(w_hh, G, axis=0)
    b_ih, b_hh = np.split(biases["bias_ih"], G), np.split(biases["bias_hh"], G)
    params = {"b_hn": b_hh[gates.index("n")].copy()} if name in RESET_AFTER else {}
    for k, g in enumerate(gates):
        params[block_name("U", g)], params[block_name("W", g)] = U[k].copy(), W[k].copy()
        params[block_name("b", g)] = b_ih[k].copy() if (name in RESET_AFTER and g == "n") else b_ih[k] + b_hh[k]
    return {k: params[k] for k in canonical_names(name, canonical_gate_order(name))}

