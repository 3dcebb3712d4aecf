"""Conversions between symrnn's canonical parameters and stacked framework layouts.

symrnn names every block of a cell separately (``U_i``, ``W_f``, ``b_o`` ...;
see :mod:`symrnn.engine.cells`).  Frameworks stack the blocks of all gates into one
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
>>> from symrnn.models.layouts import to_torch, from_torch
>>> params = sr.Model("gru", D=2, H=3, K=4).init_params(0)
>>> sd = to_torch("gru", params)
>>> sd["weight_ih_l0"].shape, sd["bias_hh_l0"].shape
((9, 2), (9,))
>>> back = from_torch("gru", sd)
>>> all(np.array_equal(back[k], params[k]) for k in back)
True

Only the cell's own parameters are converted; the readout ``V``, ``c`` of a
:class:`~symrnn.models.model.Model` corresponds to an ``nn.Linear`` / ``Dense`` layer
(``weight = V``, ``bias = c`` in PyTorch; ``kernel = V.T`` in Keras) and is
ignored here.  Only NumPy is needed: framework tensors are accepted on input
(anything with ``.detach()`` / ``.numpy()``) and NumPy arrays are returned.
"""
from __future__ import annotations
from .declared import LAYOUT_ALIASES, LAYOUTS, Layout, layout_for, preset_name
from .native import NATIVE, NativeLayout
from .gates import KERAS_GATES, TORCH_GATES, cell_gates
from .keras import from_keras, to_keras
from .pytorch import from_torch, to_torch
from .stacked import from_keras_bidirectional, from_torch_stack, to_keras_bidirectional, to_torch_stack

__all__ = ["TORCH_GATES", "KERAS_GATES", "to_torch", "from_torch", "to_keras", "from_keras",
           "Layout", "LAYOUTS", "layout_for", "to_torch_stack", "from_torch_stack", "to_keras_bidirectional",
           "from_keras_bidirectional", "cell_gates", "preset_name", "LAYOUT_ALIASES", "NATIVE", "NativeLayout"]
