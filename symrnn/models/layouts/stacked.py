"""Whole stacked and bidirectional networks (:class:`~symrnn.models.wiring.StackedModel`, keys
``l<k>.<fwd|bwd>.<name>``) to and from PyTorch's ``state_dict`` and Keras's ``Bidirectional``."""
from __future__ import annotations

import re

import numpy as np

from ...errors import ParameterError, ShapeError
from .keras import from_keras, to_keras
from .pytorch import from_torch, to_torch


def _stack_layers(params) -> dict:
    """``{(layer, direction): {name: array}}`` from ``l<k>.<fwd|bwd>.<name>`` keys (readout V, c ignored)."""
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
    from :class:`~symrnn.models.wiring.StackedModel` parameters: ``l<k>.fwd.*`` become ``weight_ih_l<k>``...,
    ``l<k>.bwd.*`` become ``weight_ih_l<k>_reverse``...  (PyTorch's merge is concat.)"""
    return {k: v for (layer, direction), p in sorted(_stack_layers(params).items())
            for k, v in to_torch(cell, p, layer=layer, reverse=direction == "bwd", prefix=prefix).items()}


def from_torch_stack(cell, state_dict, num_layers, bidirectional, *, prefix="") -> dict:
    """:class:`~symrnn.models.wiring.StackedModel` parameters (``l<k>.<fwd|bwd>.<name>``) from the ``state_dict``
    of ``nn.RNN/LSTM/GRU(num_layers=num_layers, bidirectional=bidirectional)``.  A ``state_dict`` with
    more or fewer layers, or with (or without) ``_reverse`` weights the model does not have, is refused."""
    if not hasattr(state_dict, "keys"):
        raise ParameterError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}.")
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
        raise ShapeError(f"num_layers must be an integer >= 1, got {num_layers!r}.")
    weights_ih = re.compile(rf"^{re.escape(prefix)}weight_ih_l(\d+)(_reverse)?$")
    present = {(int(m.group(1)), bool(m.group(2))) for m in map(weights_ih.match, map(str, state_dict)) if m}
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
    return {f"l{layer}.{direction}.{k}": v for layer in range(num_layers)
            for direction in (("fwd", "bwd") if bidirectional else ("fwd",))
            for k, v in from_torch(cell, state_dict, layer=layer, reverse=direction == "bwd", prefix=prefix).items()}


def to_keras_bidirectional(cell, params, *, layer=0) -> list:
    """The weights of a Keras ``Bidirectional(RNN layer)`` for layer ``layer`` of a bidirectional
    :class:`~symrnn.models.wiring.StackedModel`: ``layer.get_weights()`` order, the forward layer's
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
    return {f"l{layer}.{d}.{k}": v for d, part in (("fwd", weights[:half]), ("bwd", weights[half:]))
            for k, v in from_keras(cell, list(part)).items()}
