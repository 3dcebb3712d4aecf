"""Gradient decay: the facts of CONVENTIONS.md ("Gradient decay: facts a test can check") as oracles."""
import numpy as np
import pytest

import symrnn as sr
from symrnn.decay import decay_profile, pascanu_bound
from symrnn.decay.weights import make_params
from symrnn.engine.jacobians import step_jacobians


def _sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def linear_cell():
    """A user-defined linear RNN: h_t = W h_{t-1} + U x_t + b (its Jacobian is W whatever the input)."""
    cell = sr.Cell("linear")
    x = cell.input()
    h = cell.state("h")
    U, W, b = cell.param("U", "H", "D"), cell.param("W", "H", "H"), cell.param("b", "H")
    cell.update(h, W @ h + U @ x + b)
    return cell


def _orthogonal(H, seed=0):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((H, H)))
    return q * np.sign(np.diagonal(r))


def _zero_input_tanh(W):
    H = W.shape[0]
    model = sr.Model("rnn-tanh", D=1, H=H, loss="upstream")
    return model, dict(U=np.zeros((H, 1)), W=W, b=np.zeros(H))


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.0, 1.2])
def test_linear_rnn_rho_q_gives_rho_to_the_k_and_every_exponent_ln_rho(rho):
    H, T = 5, 60
    model = sr.Model(linear_cell(), D=2, H=H, loss="upstream")
    params = dict(U=np.ones((H, 2)), W=rho * _orthogonal(H), b=np.ones(H))
    p = decay_profile(model, params, T, k=H, inputs="random", h0="random")
    lags = p.lags
    assert np.allclose(p.log_spectral, lags * np.log(rho), atol=1e-12)
    assert np.allclose(p.log_frobenius, lags * np.log(rho) + 0.5 * np.log(H), atol=1e-12)
    assert np.allclose(p.exponents, np.log(rho), atol=1e-12)
    assert p.units == "natural log per step"


@pytest.mark.parametrize("rho", [0.8, 1.25])
def test_zero_input_tanh_from_zero_is_the_linear_case(rho):
    H, T = 4, 40
    model, params = _zero_input_tanh(rho * _orthogonal(H, 1))
    p = decay_profile(model, params, T, k=H, inputs="zero")
    assert np.allclose(p.log_spectral, p.lags * np.log(rho), atol=1e-12)
    assert np.allclose(p.exponents, np.log(rho), atol=1e-12)
    # the bound is attained: gamma = 1, sigma_max(W) = rho
    assert p.gamma == 1.0 and p.sigma_max == pytest.approx(rho, rel=1e-14)
    assert np.allclose(p.log_bound, p.log_spectral, atol=1e-12)


def test_irnn_jacobian_is_the_identity():
    H, T = 6, 200
    model = sr.Model("rnn-relu", D=2, H=H, loss="upstream")
    params = make_params(model, init="identity", scale=1.0)
    assert np.array_equal(params["W"], np.eye(H))
    p = decay_profile(model, params, T, k=H, inputs="zero", h0={"h": np.full(H, 0.5)})
    assert np.all(p.log_spectral == 0.0)
    assert np.allclose(p.log_frobenius, 0.5 * np.log(H), atol=1e-14)
    assert np.all(np.abs(p.exponents) < 1e-15)  # a random orthonormal frame: |R_ii| = 1 up to rounding
    J = step_jacobians(model, params, np.zeros((5, 1, 2)), h0={"h": np.full((1, H), 0.5)})[("h", "h")]
    assert np.array_equal(J, np.broadcast_to(np.eye(H), J.shape))


def test_transient_growth_matrix_norms():
    """W = [[0.5, 10], [0, 0.5]]: radius 0.5, yet ||W^k|| = 10.02, 10.01, 7.50, 3.13, 0.195, 3.8e-4."""
    model, params = _zero_input_tanh(np.array([[0.5, 10.0], [0.0, 0.5]]))
    p = decay_profile(model, params, 20, k=2, inputs="zero")
    norms = dict(zip(p.lags, np.exp(p.log_spectral)))
    for k, v in {1: 10.02, 2: 10.01, 3: 7.50, 5: 3.13, 10: 0.195, 20: 3.8e-4}.items():
        assert norms[k] == pytest.approx(v, rel=5e-3)
    W = params["W"]
    for k in (1, 2, 3, 5, 10, 20):
        assert np.log(norms[k]) == pytest.approx(np.log(np.linalg.norm(np.linalg.matrix_power(W, k), 2)), abs=1e-12)


@pytest.mark.parametrize("b_f, expected", [(0.0, 9.77e-4), (1.0, 0.0436)])
def test_lstm_zero_recurrent_weights_cell_path_is_prod_f(b_f, expected):
    H, T = 3, 10
    model = sr.Model("lstm", D=2, H=H, loss="upstream")
    params = make_params(model, "pytorch", scale=0.0, seed=1)  # every W_* zero
    params.update(U_f=np.zeros((H, 2)), b_f=np.full(H, b_f))
    p = decay_profile(model, params, T, k=0, inputs="random")
    cc = np.exp(p.blocks["c<-c"][0])
    direct = np.exp(p.direct["c"][0])
    assert direct[-1] == pytest.approx(_sigmoid(b_f) ** T, rel=1e-13)
    assert direct[-1] == pytest.approx(expected, rel=2e-3)
    assert np.allclose(cc, direct, rtol=1e-13)
    assert np.allclose(p.direct["c"][0], p.lags * np.log(_sigmoid(b_f)), atol=1e-13)


def test_lstm_cell_path_with_varying_gates_is_prod_f():
    """With input-driven forget gates, dc_T/dc_0 = diag(prod_k f_k): norms from the forward's own gates."""
    H, T = 3, 25
    model = sr.Model("lstm", D=2, H=H, loss="upstream")
    params = make_params(model, "pytorch", scale=0.0, seed=2)
    params["U_f"] = np.random.default_rng(0).normal(size=(H, 2))
    x = np.random.default_rng(1).normal(size=(T, 1, 2))
    p = decay_profile(model, params, T, k=0, inputs=x)
    _, _, cache = model.run_cell(params, x)
    logf = np.cumsum(np.log(cache["C_f"][:, 0]), axis=0)  # (T, H)
    assert np.allclose(p.direct["c"][0], logf.max(axis=1), atol=1e-12)
    assert np.allclose(p.blocks["c<-c"][0], logf.max(axis=1), atol=1e-12)


@pytest.mark.parametrize("cell, expected", [("gru", 0.2810), ("gru-chung", 5.79e-10)])
def test_gru_zero_recurrent_weights_is_prod_z(cell, expected):
    H, T = 3, 10
    model = sr.Model(cell, D=2, H=H, loss="upstream")
    params = make_params(model, "pytorch", scale=0.0, seed=1)
    params.update(U_z=np.zeros((H, 2)), b_z=np.full(H, 2.0))
    p = decay_profile(model, params, T, k=H, inputs="random")
    z = _sigmoid(2.0)
    per_step = z if cell == "gru" else 1 - z
    assert np.exp(p.log_spectral[-1]) == pytest.approx(per_step ** T, rel=1e-12)
    assert np.exp(p.log_spectral[-1]) == pytest.approx(expected, rel=2e-3)
    assert np.allclose(p.direct["h"][0], p.log_spectral, atol=1e-12)
    assert np.allclose(p.exponents, np.log(per_step), atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-sigmoid", "rnn-relu"])
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 4.0])
def test_measured_norm_never_exceeds_the_pascanu_bound(cell, scale):
    model = sr.Model(cell, D=3, H=6, loss="upstream")
    gamma = {"rnn-tanh": 1.0, "rnn-sigmoid": 0.25, "rnn-relu": 1.0}[cell]
    assert pascanu_bound(model).gamma == pytest.approx(gamma, rel=1e-9)
    for seed in range(3):
        params = make_params(model, "xavier", scale, seed=seed)
        p = decay_profile(model, params, 80, k=1, inputs="random", seed=seed, h0="random")
        assert np.all(p.log_spectral <= p.log_bound + 1e-12)
        assert np.all(p.log_spectral <= p.log_step_bound + 1e-12)  # prod ||J_t|| bounds it too


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru-reset-before"])
def test_gated_cells_measured_norm_under_the_step_norm_bound(cell):
    model = sr.Model(cell, D=3, H=5, loss="upstream")
    assert pascanu_bound(model) is None
    params = make_params(model, "orthogonal", 1.5, seed=3)
    p = decay_profile(model, params, 80, k=1, inputs="random")
    assert np.all(p.log_spectral <= p.log_step_bound + 1e-12)
    assert p.log_bound is None


def test_circular_law_for_random_tanh_at_the_fixed_point():
    """W = g N(0,1)/sqrt(H), g < 1, zero input, h = 0: J = W, the exponents are ln|eigenvalues|, and the
    fraction below s is e^{2s}/g^2 (s <= ln g).

    Tolerance from H: the eigenvalues are H points; the distance between their empirical distribution
    and the law is of order 1/sqrt(H) (Kolmogorov-Smirnov's 95% constant 1.36 for H independent points,
    a conservative bound for repelling eigenvalues), plus 1/H for one point's step, plus the finite-H
    edge (the disk's radius fluctuates by O(H^{-1/2}) as well, counted by 1/sqrt(H) once more).
    """
    H, g, T = 64, 0.7, 1500
    W = g * np.random.default_rng(5).standard_normal((H, H)) / np.sqrt(H)
    model, params = _zero_input_tanh(W)
    p = decay_profile(model, params, T, k=H, inputs="zero", curve=False)
    log_eig = np.sort(np.log(np.abs(np.linalg.eigvals(W))))[::-1]
    assert np.allclose(p.exponents, log_eig, atol=2e-2)  # QR exponents of a constant product converge to these
    assert p.exponents[0] == pytest.approx(np.log(g), abs=3 / np.sqrt(H))
    tol = (1.36 + 1.0) / np.sqrt(H) + 1.0 / H
    s = np.linspace(np.log(g) - 3, np.log(g), 200)
    empirical = (p.exponents[None, :] < s[:, None]).mean(axis=1)
    law = np.exp(2 * s) / g ** 2
    assert np.max(np.abs(empirical - law)) <= tol


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru", "gru-reset-before-chung"])
def test_log_space_agrees_with_direct_float64_products(cell):
    H, T = 4, 120
    model = sr.Model(cell, D=2, H=H, loss="upstream")
    params = make_params(model, "xavier", 1.3, seed=4)
    x = np.random.default_rng(2).normal(size=(T, 1, 2))
    p = decay_profile(model, params, T, k=0, inputs=x)
    J = step_jacobians(model, params, x)
    names = model.state_names
    S = H * len(names)
    M = np.eye(S)
    g_rng = np.random.default_rng([0, 11])
    g = np.zeros(S)
    out = slice(names.index(model.out) * H, names.index(model.out) * H + H)
    g[out] = g_rng.standard_normal(H)
    g /= np.linalg.norm(g)
    checked = 0
    for t in range(T):
        F = np.zeros((S, S))
        for i, s in enumerate(names):
            for j, q in enumerate(names):
                F[i * H:(i + 1) * H, j * H:(j + 1) * H] = J[(s, q)][t, 0]
        M = F @ M  # no rescaling: a direct product
        n2 = np.linalg.norm(M, 2)
        if n2 > 1e-250:
            checked += 1
            assert np.log(n2) == pytest.approx(p.log_spectral[t], abs=1e-11)
            assert np.log(np.linalg.norm(M)) == pytest.approx(p.log_frobenius[t], abs=1e-11)
            assert np.log(np.linalg.norm(M.T @ g)) == pytest.approx(p.log_grad[t], abs=1e-9)
    assert checked > 20


def test_user_defined_cell_streams_its_own_jacobians():
    """The minimal gated unit of the README: Jacobians from its derivation, equal to step_jacobians."""
    cell = sr.Cell("mgu")
    x = cell.input()
    h = cell.state("h")
    U_f, W_f, b_f = cell.param("U_f", "H", "D"), cell.param("W_f", "H", "H"), cell.param("b_f", "H")
    U_n, W_n, b_n = cell.param("U_n", "H", "D"), cell.param("W_n", "H", "H"), cell.param("b_n", "H")
    f = cell.let("f", sr.sigmoid(U_f @ x + W_f @ h + b_f))
    n = cell.let("n", sr.tanh(U_n @ x + W_n @ (f * h) + b_n))
    cell.update(h, (1 - f) * h + f * n)
    model = sr.Model(cell, D=2, H=3, loss="upstream")
    params = make_params(model, "orthogonal", 1.0, seed=0)
    x = np.random.default_rng(0).normal(size=(50, 1, 2))
    p = decay_profile(model, params, 50, k=3, inputs=x)
    J = step_jacobians(model, params, x)[("h", "h")][:, 0]
    M = np.eye(3)
    for t in range(50):
        M = J[t] @ M
    assert np.log(np.linalg.norm(M, 2)) == pytest.approx(p.log_spectral[-1], abs=1e-11)
    assert "h" in p.direct  # (1 - f) h: the direct path
