"""Keras's stacked layout (``SimpleRNN``, ``LSTM``, ``GRU``): ``kernel`` ``(D, G*H)``,
``recurrent_kernel`` ``(H, G*H)``, ``bias``; see :mod:`symrnn.models.layouts`."""
from __future__ import annotations

import numpy as np

from ...errors import ParameterError, ShapeError
from .gates import (KERAS_GATES, RESET_AFTER, as_array, block_name, canonical_gate_order, canonical_names,
                    check_shape, framework_gates, read_params)

_KERAS_KEYS = ("kernel", "recurrent_kernel", "bias")


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
    name, gates = framework_gates(cell, KERAS_GATES, "Keras")
    p, D, H = read_params(name, gates, params)
    dtype = np.result_type(*p.values())
    kernel = np.concatenate([p[block_name("U", g)].T for g in gates], axis=1).astype(dtype)
    recurrent = np.concatenate([p[block_name("W", g)].T for g in gates], axis=1).astype(dtype)
    bias = np.concatenate([p[block_name("b", g)] for g in gates]).astype(dtype, copy=False)
    if name in RESET_AFTER:
        rec = [np.zeros(H, dtype=dtype) for _ in gates]
        rec[gates.index("n")] = p["b_hn"]
        bias = np.stack([bias, np.concatenate(rec)]).astype(dtype, copy=False)
    return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}


def from_keras(cell, weights) -> dict:
    """Canonical params from Keras weights: a dict with ``kernel``,
    ``recurrent_kernel``, ``bias`` or the list ``layer.get_weights()`` in that order.
    A layer built with ``use_bias=False`` has no ``bias`` (taken as zero)."""
    name, gates = framework_gates(cell, KERAS_GATES, "Keras")
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
    recurrent = as_array(weights["recurrent_kernel"], "recurrent_kernel")
    if recurrent.ndim != 2 or recurrent.shape[1] != G * recurrent.shape[0]:
        raise ShapeError(f"recurrent_kernel has shape {recurrent.shape}; expected (H, {G}*H) for cell {name!r}.")
    H = recurrent.shape[0]
    kernel = as_array(weights["kernel"], "kernel")
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ShapeError(f"kernel has shape {kernel.shape}; expected (D, {G * H}) = (D, {G}*H) with H={H}.")
    dtype = np.result_type(kernel, recurrent)
    reset_after = name in RESET_AFTER
    bias_shape = (2, G * H) if reset_after else (G * H,)
    if "bias" in weights and weights["bias"] is not None:
        bias = as_array(weights["bias"], "bias")
        meaning = ("(2, 3*H): input and recurrent bias rows of GRU(reset_after=True)" if reset_after
                   else f"({G}*H,) with H={H}")
        check_shape(bias, bias_shape, "bias", meaning)
    else:
        bias = np.zeros(bias_shape, dtype=dtype)
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
    U, W = np.split(kernel, G, axis=1), np.split(recurrent, G, axis=1)
    b_in, b_rec = np.split(b_in, G), np.split(b_rec, G)
    params = {"b_hn": b_rec[gates.index("n")].copy()} if reset_after else {}
    for k, g in enumerate(gates):
        params[block_name("U", g)] = np.ascontiguousarray(U[k].T)
        params[block_name("W", g)] = np.ascontiguousarray(W[k].T)
        params[block_name("b", g)] = b_in[k].copy() if g == "n" else b_in[k] + b_rec[k]
    # the canonical order of the model's parameter dict (gates as in symrnn.engine.cells)
    return {k: params[k] for k in canonical_names(name, canonical_gate_order(name))}

