"""Closed forms of gradient decay for the recurrent cells of today, where they hold exactly.

* minGRU: ``dh_t/dh_{t-1} = diag(1 - z_t)`` for any input (the gate reads only ``x_t``); with a
  constant input the Lyapunov exponents are ``ln(1 - z_k)`` and ``ln ||dh_{t0+k}/dh_{t0}||_2 =
  k ln max_j(1 - z_j)``.
* minLSTM: ``dh_t/dh_{t-1} = diag(f_t / (f_t + i_t))``.
* IndRNN: ``diag(w * step(a_t))``; with zero input, ``b > 0``, ``0 < w < 1`` and ``h0 >= 0`` every
  unit stays active and the exponents are ``ln w_k``.
* SRU with ``v_f = v_r = 0``: the ``c <- c`` block is ``diag(f_t)``.
* The diagonal linear recurrences ``h_t = a_t * h_{t-1} + b_t``: the exponents are the sorted time
  averages of ``ln|a_{t,k}|`` (minGRU's ``ln(1 - z_t)`` along a random-input trajectory; LRU's
  ``ln|lambda_k| = -exp(nu_k)``, twice each: the real and imaginary directions; S6's ``Delta_t A`` per
  channel and state entry, with the readout ``W_C = 0``).
"""
import numpy as np

import symrnn as sr
from symrnn.decay import decay_profile
from symrnn.engine.jacobians import step_jacobians

H, D = 4, 3


def sig(a):
    return 1 / (1 + np.exp(-a))


def diagonal(J):
    """The diagonal of each (H, H) Jacobian, after checking that everything else is exactly 0."""
    off = J * (1 - np.eye(J.shape[-1]))
    assert np.all(off == 0)
    return np.diagonal(J, axis1=-2, axis2=-1)


def test_min_gru_step_jacobian_is_one_minus_z():
    m = sr.Model("min-gru", D=D, H=H, loss="upstream")
    p = m.init_params(seed=1, scale=1.5)
    x = np.random.default_rng(1).normal(size=(20, 2, D))
    J = step_jacobians(m, p, x, h0=np.random.default_rng(2).normal(size=(2, H)))[("h", "h")]
    z = sig(x @ p["U_z"].T + p["b_z"])
    assert np.allclose(diagonal(J), 1 - z, rtol=1e-15, atol=0)


def test_min_lstm_step_jacobian_is_the_normalised_forget_gate():
    m = sr.Model("min-lstm", D=D, H=H, loss="upstream")
    p = m.init_params(seed=2, scale=1.5)
    x = np.random.default_rng(3).normal(size=(20, 2, D))
    J = step_jacobians(m, p, x)[("h", "h")]
    f, i = sig(x @ p["U_f"].T + p["b_f"]), sig(x @ p["U_i"].T + p["b_i"])
    assert np.allclose(diagonal(J), f / (f + i), rtol=1e-15, atol=0)


def test_min_gru_exponents_are_log_one_minus_z_for_a_constant_input():
    m = sr.Model("min-gru", D=D, H=H, loss="upstream")
    p = m.init_params(seed=0, scale=1.0)
    x = np.random.default_rng(0).normal(size=(1, 1, D))
    z = sig(p["U_z"] @ x[0, 0] + p["b_z"])
    prof = decay_profile(m, p, 3000, k=H, inputs=np.repeat(x, 3000, axis=0), h0="random")
    expected = np.sort(np.log1p(-z))[::-1]
    assert np.allclose(prof.exponents, expected, rtol=1e-12, atol=0), (prof.exponents, expected)
    assert np.allclose(prof.log_spectral, prof.lags * expected[0], rtol=1e-12, atol=0)
    log_frobenius = 0.5 * np.logaddexp.reduce(2 * prof.lags[:, None] * np.log1p(-z)[None], axis=1)
    assert np.allclose(prof.log_frobenius, log_frobenius, rtol=1e-12, atol=0)


def test_indrnn_exponents_are_log_w():
    m = sr.Model("indrnn", D=D, H=H, loss="upstream")
    p = m.init_params(seed=4)
    p["w"] = np.array([0.95, 0.5, 0.8, 0.2])
    p["b"] = np.full(H, 0.3)
    prof = decay_profile(m, p, 2000, k=H, inputs="zero", h0=np.abs(np.random.default_rng(4).normal(size=H)))
    assert np.allclose(prof.exponents, np.log(np.sort(p["w"])[::-1]), rtol=1e-12, atol=0), prof.exponents
    assert np.allclose(prof.log_spectral, prof.lags * np.log(0.95), rtol=1e-12, atol=0)


def test_indrnn_step_jacobian_is_w_on_active_units():
    m = sr.Model("indrnn", D=D, H=H, loss="upstream")
    p = m.init_params(seed=5, scale=1.0)
    x = np.random.default_rng(5).normal(size=(15, 3, D))
    J = step_jacobians(m, p, x)[("h", "h")]
    h, a = np.zeros((3, H)), []
    for xt in x:  # the pre-activations, by a loop of the paper's equation
        a.append(xt @ p["U"].T + p["w"] * h + p["b"])
        h = np.maximum(a[-1], 0)
    a = np.stack(a)
    assert np.any(a <= 0) and np.any(a > 0)  # both kinds of unit are met
    assert np.array_equal(diagonal(J), p["w"] * (a > 0))


def test_sru_cell_block_is_the_forget_gate_without_peepholes():
    m = sr.Model("sru", D=D, H=H, loss="upstream")
    p = m.init_params(seed=6, scale=1.0)
    p["v_f"][:] = 0.0
    p["v_r"][:] = 0.0
    x = np.random.default_rng(6).normal(size=(12, 2, D))
    jac = step_jacobians(m, p, x)
    f = sig(x @ p["U_f"].T + p["b_f"])
    assert np.allclose(diagonal(jac[("c", "c")]), f, rtol=1e-15, atol=0)
    assert np.all(jac[("h", "h")] == 0)  # h_{t-1} is never read


# -- the linear diagonal recurrences h_t = a_t * h_{t-1} + b_t: exponents are time averages of log|a| --
def test_min_gru_exponents_are_the_time_averages_of_log_one_minus_z_along_the_trajectory():
    """With random inputs 1 - z_t changes every step; the step Jacobian stays diag(1 - z_t), so QR
    keeps Q = I and each ln|R_kk| is ln(1 - z_{t,k}): the exponents are the sorted averages of
    ln(1 - z_{t,k}) over the counted steps (the last ``exponent_steps``), to rounding."""
    T = 3000
    m = sr.Model("min-gru", D=D, H=H, loss="upstream")
    p = m.init_params(seed=0, scale=1.0)
    x = np.random.default_rng(0).normal(size=(T, 1, D))
    prof = decay_profile(m, p, T, k=H, inputs=x, h0="random", curve=False)
    log_a = np.log1p(-sig(x[:, 0] @ p["U_z"].T + p["b_z"]))
    expected = np.sort(log_a[T - prof.exponent_steps:].mean(axis=0))[::-1]
    assert np.allclose(prof.exponents, expected, rtol=1e-12, atol=0), (prof.exponents, expected)
    shifted = np.sort(log_a[T - prof.exponent_steps - 1:-1].mean(axis=0))[::-1]
    assert not np.allclose(prof.exponents, shifted, rtol=1e-6, atol=0)  # the steps counted matter


def _lru(r, phase, seed=1):
    """An LRU with |lambda| = r and arg(lambda) = phase; D = H (the decay study's blocks are H x H)."""
    m = sr.Model("lru", D=len(r), H=len(r), loss="upstream")
    p = m.init_params(seed=seed, scale=0.5)
    p["nu"], p["theta"] = np.log(-np.log(r)), np.log(phase)
    return m, p


def test_lru_step_jacobian_is_the_rotation_scaled_by_the_modulus():
    """d(h_re, h_im)_t / d(h_re, h_im)_{t-1} = [[r cos, -r sin], [r sin, r cos]] per unit: lambda as a 2x2 real block."""
    r, phase = np.array([0.9, 0.5, 0.99]), np.array([0.3, 2.0, 1.0])
    m, p = _lru(r, phase)
    jac = step_jacobians(m, p, np.random.default_rng(7).normal(size=(5, 2, 3)))
    lam = r * np.exp(1j * phase)
    assert np.allclose(diagonal(jac[("h_re", "h_re")]), lam.real, rtol=1e-15, atol=0)
    assert np.allclose(diagonal(jac[("h_im", "h_im")]), lam.real, rtol=1e-15, atol=0)
    assert np.allclose(diagonal(jac[("h_re", "h_im")]), -lam.imag, rtol=1e-15, atol=0)
    assert np.allclose(diagonal(jac[("h_im", "h_re")]), lam.imag, rtol=1e-15, atol=0)
    assert all(np.all(jac[(s, "out")] == 0) for s in ("h_re", "h_im", "out"))  # out_{t-1} is never read


def test_lru_exponents_are_log_abs_lambda_twice():
    """Each unit's 2x2 block is |lambda_k| times a rotation: both its exponents are ln|lambda_k| = -exp(nu_k).
    With the readout C = 0 the output rows vanish, QR sees exactly r_k per step and the agreement is to
    rounding; the norm curve is lag * ln max|lambda|."""
    r, phase = np.array([0.9, 0.5, 0.99]), np.array([0.3, 2.0, 1.0])
    m, p = _lru(r, phase)
    p["C_re"][:], p["C_im"][:] = 0.0, 0.0
    prof = decay_profile(m, p, 2000, k=6, inputs="random", h0="random")
    expected = np.sort(np.repeat(-np.exp(p["nu"]), 2))[::-1]
    assert np.allclose(prof.exponents, expected, rtol=1e-12, atol=0), (prof.exponents, expected)
    assert np.allclose(prof.log_spectral, prof.lags * np.log(0.99), rtol=1e-12, atol=1e-15)


def test_lru_exponents_with_a_readout_converge_to_the_same_values():
    """With C != 0 the state includes out_t = Re(C s_t) + d x_t, whose rows tilt the QR frames: the finite-T
    estimates differ from ln|lambda_k| by O(1/T) (3e-4 relative at T = 2000), the limit is the same."""
    r, phase = np.array([0.9, 0.5, 0.99]), np.array([0.3, 2.0, 1.0])
    m, p = _lru(r, phase)
    prof = decay_profile(m, p, 2000, k=6, inputs="random", h0="random")
    expected = np.sort(np.repeat(np.log(r), 2))[::-1]
    error = np.max(np.abs(prof.exponents - expected) / np.abs(expected))
    assert 1e-8 < error < 2e-3, error


def _s6_log_abar(m, p, x):
    """``Delta_t A`` per channel and state entry (T, H*N), from the paper's equations: ``ln Abar_t``."""
    u = x[:, 0] @ p["W_u"].T
    delta = np.logaddexp(0.0, u @ p["W_dt"].T + p["b_dt"])
    A = -np.exp(p["A_log"]).reshape(u.shape[1], -1)
    return (delta[..., None] * A).reshape(len(x), -1)


def test_s6_exponents_are_the_time_averages_of_delta_a():
    """S6's flattened state is (s, h): ``ds_t/ds_{t-1} = diag(exp(Delta_t A))`` (one entry per channel and
    state), ``dh_t/ds_{t-1} = C_t``'s rows times that, and ``h_{t-1}`` is never read (zero columns).  With
    ``W_C = 0`` the readout rows vanish, ``J_t = diag(Abar_t) (+) 0``; after the transient QR's frame is
    the coordinate axes, each ``ln|R_ii|`` is one ``Delta_{t,c} A_{c,n}``, and the H*N exponents equal the
    sorted averages of ``Delta_{t,c} A_{c,n}`` over the counted steps, to rounding (``Delta`` changes every
    step with the input; ``exp`` of it is never formed on this route).  The frame reaches the axes at the
    rate of the smallest gap between exponents: 0.13 here, so after the 300 uncounted steps it is there to
    rounding (with gaps of 0.03 it is not yet, and the agreement is 3e-11)."""
    T, H, N = 3000, 3, 2
    m = sr.Model("s6", D=D, H=H, loss="upstream")
    p = m.init_params(seed=2, scale=1.0)
    p["W_C"][:] = 0.0
    p["A_log"] = np.log(np.array([0.2, 1.5, 0.6, 3.0, 1.0, 5.0]))  # gaps of 0.13 or more after Delta_c
    x = np.random.default_rng(2).normal(size=(T, 1, D))
    prof = decay_profile(m, p, T, k=H * N, inputs=x, h0="random", curve=False)
    log_a = _s6_log_abar(m, p, x)
    expected = np.sort(log_a[T - prof.exponent_steps:].mean(axis=0))[::-1]
    assert np.allclose(prof.exponents, expected, rtol=1e-12, atol=0), (prof.exponents, expected)
    shifted = np.sort(log_a[T - prof.exponent_steps - 1:-1].mean(axis=0))[::-1]
    assert not np.allclose(prof.exponents, shifted, rtol=1e-6, atol=0)  # the steps counted matter
    whole = decay_profile(m, p, 300, k=H * N + H, inputs=x[:300], h0="random", curve=False)
    assert np.all(whole.exponents[H * N:] == -np.inf)  # h_{t-1} is never read: H exponents are -inf


def test_s6_exponents_with_a_readout_tilt_only_at_finite_t():
    """With ``W_C != 0`` the rows of ``h_t = C_t^T s_t + d u_t`` tilt QR's frame, as LRU's readout does:
    a frame vector ``(e, C_t e)`` is sent to ``(Abar e, C_{t+1} Abar e)`` (the ``h`` part is never read), so
    each step's ``ln|R_ii|`` gains the growth of ``sqrt(1 + |C e|^2)`` from one step to the next, a sum that
    telescopes: the estimates differ from the time averages of ``Delta_t A`` by O(1/T) (9e-4 relative at
    T = 3000), not by rounding, and the limit is the same."""
    T, H = 3000, 3
    m = sr.Model("s6", D=D, H=H, loss="upstream")
    p = m.init_params(seed=2, scale=1.0)
    p["A_log"] = np.log(np.array([0.2, 1.5, 0.6, 3.0, 1.0, 5.0]))
    x = np.random.default_rng(2).normal(size=(T, 1, D))
    prof = decay_profile(m, p, T, k=2 * H, inputs=x, h0="random", curve=False)
    expected = np.sort(_s6_log_abar(m, p, x)[T - prof.exponent_steps:].mean(axis=0))[::-1]
    error = np.max(np.abs(prof.exponents - expected) / np.abs(expected))
    assert 1e-12 < error < 2e-3, error
