"""The decay study on matrix-state cells (mLSTM, S6): the step Jacobian of the flattened state
(every block, rectangular where the sizes differ) against central differences of the forward, the
blocks a paper states exactly, and the Lyapunov/decay profile running on them."""
import numpy as np
import pytest

import symrnn as sr
from symrnn.decay import decay_profile
from symrnn.engine.jacobians import step_jacobians

SIZES = {"mlstm": (3, 4), "s6": (3, 3)}


def problem(name, T=5):
    D, H = SIZES[name]
    m = sr.Model(name, D=D, H=H, loss="upstream")
    p = m.init_params(seed=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(T, 1, D))
    h0 = {s: rng.normal(size=(1, m.state_size(s))) for s in m.state_names}
    return m, p, x, h0


@pytest.mark.parametrize("name", list(SIZES))
def test_flattened_state_jacobian_matches_central_differences(name):
    m, p, x, h0 = problem(name)
    J = step_jacobians(m, p, x, h0)
    names = m.state_names

    def step(flat):
        st, i = {}, 0
        for s in names:
            st[s] = flat[i:i + m.state_size(s)][None]
            i += m.state_size(s)
        cache = m.run_cell(p, x[:1], st)[2]
        return np.concatenate([cache[f"S_{s}"][1, 0] for s in names])
    flat0 = np.concatenate([h0[s][0] for s in names])
    eps = 1e-6
    numeric = np.stack([(step(flat0 + e) - step(flat0 - e)) / (2 * eps) for e in np.eye(flat0.size) * eps], axis=1)
    full = np.block([[J[(s, q)][0, 0] for q in names] for s in names])
    assert full.shape == (flat0.size, flat0.size)
    assert np.abs(numeric - full).max() <= 1e-8 * max(1.0, np.abs(full).max())


def test_s6_state_block_is_exp_delta_a():
    m, p, x, h0 = problem("s6")
    J = step_jacobians(m, p, x, h0)[("s", "s")]
    u = x[:, 0] @ p["W_u"].T  # the channels
    delta = np.logaddexp(0, u @ p["W_dt"].T + p["b_dt"])  # (T, H)
    A = -np.exp(p["A_log"]).reshape(3, -1)
    want = np.exp(delta[..., None] * A).reshape(len(x), -1)
    assert np.all(J[:, 0] * (1 - np.eye(6)) == 0)
    assert np.allclose(np.diagonal(J[:, 0], axis1=-2, axis2=-1), want, rtol=1e-15, atol=0)


def test_mlstm_memory_block_is_the_stabilised_forget_gate_of_each_head():
    m, p, x, h0 = problem("mlstm")
    J = step_jacobians(m, p, x, h0)[("C", "C")][:, 0]
    assert np.all(J * (1 - np.eye(8)) == 0)
    fbar = x[:, 0] @ p["W_f"].T + p["b_f"]
    ibar = x[:, 0] @ p["W_i"].T + p["b_i"]
    m_prev, f_s = h0["m"][0], []
    for t in range(len(x)):
        logf = -np.logaddexp(0, -fbar[t])
        m_new = np.maximum(logf + m_prev, ibar[t])
        f_s.append(np.exp(logf + m_prev - m_new))
        m_prev = m_new
    want = np.repeat(np.array(f_s), 4, axis=1)  # each head's gate over its 2 x 2 memory
    assert np.allclose(np.diagonal(J, axis1=-2, axis2=-1), want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", list(SIZES))
def test_decay_profile_runs_on_matrix_states(name):
    m, p, _, _ = problem(name)
    prof = decay_profile(m, params=p, T=60, seed=0)
    assert prof.state_size == sum(m.state_size(s) for s in m.state_names)
    assert len(prof.log_grad) == len(prof.lags) and np.all(np.isfinite(prof.exponents))
    assert prof.exponents.max() <= 1e-9  # gated, stabilised or with A < 0: nothing grows


def test_s6_decay_stream_compiles_under_numba_and_agrees():
    """The compiled whole-loop forward of the decay study takes S6 (its softplus has a scalar source in
    the kernels: Numba cannot compile NumPy's logaddexp called with out=, which raised before)."""
    pytest.importorskip("numba")
    from symrnn.decay import JacobianStream

    m, p, _, _ = problem("s6")
    with sr.using_backend("numba"):
        stream = JacobianStream(m)
    assert stream.compiled is not None
    ref = decay_profile(m, p, 300, k=4, seed=3)
    got = decay_profile(m, p, 300, k=4, seed=3, stream=stream)
    assert np.allclose(got.exponents, ref.exponents, rtol=1e-12, atol=0)
    assert np.allclose(got.log_spectral, ref.log_spectral, rtol=1e-12, atol=1e-15)
