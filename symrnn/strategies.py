"""Hypothesis strategies for recurrent-network problems, for users' property tests and the verifier.

Each strategy shrinks the way a failure is best read: fewer steps first, then
smaller sizes, then simpler values (zeros and small integers), because
Hypothesis shrinks integers towards their lower bound and floats towards 0::

    from hypothesis import given
    import symrnn.strategies as sst

    @given(case=sst.problems(model, max_T=12))
    def test_my_backward(case):
        dx, dh0, dW = my_backward(case.x, case.h0["h"], case.params, case.targets)
        ...

A drawn :class:`~symrnn.verify.problems.Problem` holds the parameters (by
symrnn's names), time-major inputs ``x`` (T, N, D), initial states ``h0`` and
``targets``: upstream gradients ``dL/dh_t`` (T, N, H) for a layer, class
indices or real targets for a model with a loss.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays as _arrays

from .verify.problems import Problem, in_domain

#: Weight scales from tiny (nearly linear) to saturating (tanh and sigmoid flat).
WEIGHT_SCALES = (1e-3, 0.05, 0.3, 1.0, 2.0, 4.0)


def sequence_lengths(min_T=1, max_T=20):
    """Sequence lengths, shrinking towards ``min_T``."""
    return st.integers(min_T, max_T)


def sizes(max_D=5, max_H=5, max_N=4):
    """``{"D": ..., "H": ..., "N": ...}``, shrinking towards 1."""
    return st.fixed_dictionaries({"D": st.integers(1, max_D), "H": st.integers(1, max_H),
                                  "N": st.integers(1, max_N)})


def weight_scales():
    """A scale from :data:`WEIGHT_SCALES` (shrinks towards the tiniest)."""
    return st.sampled_from(WEIGHT_SCALES)


def values(shape, scale=1.0):
    """Float64 arrays of ``shape`` with entries in ``[-scale, scale]`` (shrinking towards 0)."""
    return _arrays(np.float64, shape, elements=st.floats(-1.0, 1.0, allow_nan=False, width=64)).map(
        lambda a: a * scale)


def weights(model, scale=None):
    """Every parameter of ``model``, by name, at one scale (drawn from :func:`weight_scales`)."""
    @st.composite
    def draw_weights(draw):
        s = draw(weight_scales()) if scale is None else scale
        return {k: draw(values(shape, s)) for k, shape in model.param_shapes.items()}
    return draw_weights()


def inputs(T, N, D, scale=2.0):
    """Time-major inputs ``(T, N, D)``."""
    return values((T, N, D), scale)


def upstream_gradients(T, N, H):
    """``dL/dh_t`` ``(T, N, H)``: dense, or arriving at one step only (the probe that shows the
    first wrong backward message)."""
    @st.composite
    def draw_upstream(draw):
        g = draw(values((T, N, H), 1.0))
        step = draw(st.none() | st.integers(0, T - 1))
        if step is not None:
            keep = np.zeros((T, 1, 1))
            keep[step] = 1
            g = g * keep
        return g
    return draw_upstream()


def problems(model, min_T=1, max_T=12, max_N=3):
    """A :class:`~symrnn.verify.problems.Problem` for ``model``: its sizes, a length, weights,
    inputs, initial states and targets (upstream gradients for a layer model)."""
    @st.composite
    def draw_problem(draw):
        T = draw(sequence_lengths(min_T, max_T))
        N = draw(st.integers(1, max_N))
        D, K = model.sizes["D"], model.sizes["K"]
        params = draw(weights(model))
        x = draw(inputs(T, N, D))
        h0 = {s: draw(values((N, model.state_size(s)), 1.0)) for s in model.state_names}
        h0 = in_domain(model, h0) if hasattr(model, "cell") else h0  # a state the cell divides by: positive
        T_out = {"many-to-one": 1, "one-to-one": 1}.get(model.architecture.name, T)
        if model.loss_rule.name == "upstream":
            targets = draw(upstream_gradients(T_out, N, model.state_size(model.out)))
        elif model.loss_rule.name == "cross-entropy":
            targets = draw(_arrays(np.int64, (T_out, N), elements=st.integers(0, K - 1)))
        else:
            targets = draw(values((T_out, N, K), 1.0))
        return Problem(f"T={T}, N={N} (drawn by symrnn.strategies)", params, x, h0, targets)
    return draw_problem()
