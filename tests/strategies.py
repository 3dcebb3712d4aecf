"""Hypothesis strategies for models and problems, shared by the property tests."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import symrnn as sr
from symrnn.engine.examples import minimal_gated_unit, peephole_lstm

CELLS = sorted(sr.BUILTIN_CELLS) + ["peephole-lstm", "mgu"]
ARCHITECTURES = ["many-to-many", "many-to-one", "one-to-many", "one-to-one", "many-to-many-delayed"]
LOSSES = [("cross-entropy", "sum"), ("cross-entropy", "mean"), ("mse", "sum"), ("mse", "mean"),
          ("half-mse", "sum"), ("upstream", "sum")]
SCALES = [0.01, 0.1, 0.5, 1.0, 2.0, 3.0]  # small to saturating

_MODELS = {}


def make_cell(name):
    return {"peephole-lstm": peephole_lstm, "mgu": minimal_gated_unit}.get(name, lambda: sr.builtin_cell(name))()


def model(cell, D, H, K, architecture, loss, reduction):
    """Models are cached: deriving and compiling is done once per configuration."""
    key = (cell, D, H, K, architecture, loss, reduction)
    if key not in _MODELS:
        _MODELS[key] = sr.Model(make_cell(cell), D=D, H=H, K=K, architecture=architecture,
                                loss=loss, reduction=reduction)
    return _MODELS[key]


def lengths(architecture, T):
    """(T_in, T_out) for an architecture and a length T >= 1."""
    return {"many-to-many": (T, T), "many-to-one": (T, 1), "one-to-many": (1, T), "one-to-one": (1, 1),
            "many-to-many-delayed": ((T + 1) // 2, max(1, T // 2))}[architecture]


@st.composite
def problems(draw, cells=CELLS, max_T=20, max_size=6, architectures=ARCHITECTURES, losses=LOSSES):
    cell = draw(st.sampled_from(cells))
    architecture = draw(st.sampled_from(architectures))
    loss, reduction = draw(st.sampled_from(losses))
    T = draw(st.integers(1, max_T))
    N, D, H, K = (draw(st.integers(1, max_size)) for _ in range(4))
    H += H % 2 if cell == "mlstm" else 0  # heads of size 2
    scale = draw(st.sampled_from(SCALES))
    seed = draw(st.integers(0, 2**32 - 1))
    m = model(cell, D, H, K, architecture, loss, reduction)
    T_in, T_out = lengths(architecture, T)
    rng = np.random.default_rng(seed)
    params = m.init_params(seed, scale=scale)
    x = rng.normal(size=(T_in, N, D))
    if loss == "cross-entropy":
        y = rng.integers(0, K, size=(T_out, N))
    else:
        y = rng.normal(size=(T_out, N, K if loss in ("mse", "half-mse") else m.state_size(m.out)))  # LRU's out: D
    h0 = {s: rng.normal(size=(N, m.state_size(s))) for s in m.state_names}
    if m.cell.name.startswith("slstm"):  # the normaliser starts positive and stays so (the paper starts it at 0)
        h0["n"] = np.abs(h0["n"]) + 0.5
    return m, params, x, y, h0
