"""Products of lets that read only the input (``u_t = W_u x_t + b_u``) are done for all steps at once
outside the loops (:mod:`symrnn.engine.hoist`): the generated code has no per-step product of them,
and the gradients still agree with the scalar oracle (an independent route) and with the same cell
written so that nothing is hoisted."""
import re

import numpy as np
import pytest

import symrnn as sr
from symrnn.engine.cells_matrix import s6
from symrnn.engine.functions import sigmoid, tanh
from symrnn.oracles import ScalarOracle


def cell(hoistable=True):
    """Two input lets (u with a bias, w without) read by stacked products, u also elementwise; with
    ``hoistable=False`` u reads the state too, through Z and Z2 (zero in the tests: the same function), so nothing is
    hoisted."""
    c = sr.Cell("hoisty" if hoistable else "not-hoisty", "input lets read by products")
    x = c.input(role="input")
    h = c.state("h", role="hidden state")
    u = c.param("W_u", "H", "D", role="u weights") @ x + c.param("b_u", "H", role="u bias")
    if not hoistable:
        u = u + c.param("Z", "H", "H", role="zero") @ h
    u = c.let("u", u, role="input projection")
    w = c.param("W_w", "H", "D", role="w weights") @ x
    if not hoistable:
        w = w + c.param("Z2", "H", "H", role="zero") @ h
    w = c.let("w", w, role="second projection")
    a = c.let("a", c.param("A1", "H", "H", role="A1") @ u + c.param("A2", "H", "H", role="A2") @ u
              + c.param("V", "H", "H", role="V") @ w + c.param("W", "H", "H", role="recurrent") @ h, role="pre")
    c.update(h, tanh(a) + sigmoid(u) * h)
    return c.validate()


def problem(c, T=4, D=3, H=2, seed=0):
    m = sr.Model(c, D=D, H=H, loss="upstream")
    rng = np.random.default_rng(seed)
    return m, m.init_params(seed=seed, scale=0.7), rng.normal(size=(T, 2, D)), rng.normal(size=(T, 2, H)), \
        {"h": rng.normal(size=(2, H))}


def test_the_products_of_input_lets_leave_the_loops():
    m = problem(cell())[0]
    code = m.cell_code
    assert code.let_hoisted == {code.groups[sr.engine.symbols.tsym("u")].index,
                                code.groups[sr.engine.symbols.tsym("w")].index}
    forward_loop = code.forward_source.split("for t in range(T):")[1]
    backward_loop = code.backward_source.split("for t in range(T - 1, -1, -1):")[1].split("grads = {}")[0]
    assert "np.matmul(u__t" not in forward_loop and "np.matmul(w__t" not in forward_loop
    assert backward_loop.count("@ G") == 1  # the recurrent product W^T dL/da alone
    assert problem(cell(False))[0].cell_code.let_hoisted == set()


@pytest.mark.parametrize("T", [1, 4])
def test_hoisted_gradients_agree_with_the_scalar_oracle_and_the_unhoisted_cell(T):
    m, p, x, G, h0 = problem(cell(), T=T)
    ours = m.loss_and_grads(p, x, G, h0=h0)
    oracle = ScalarOracle(m, T, T).loss_and_grads(p, x, G, h0=h0)
    plain = problem(cell(False), T=T)[0].loss_and_grads({**p, "Z": np.zeros((2, 2)), "Z2": np.zeros((2, 2))}, x, G, h0=h0)
    for theirs, tol in ((oracle, 1e-12), (plain, 1e-13)):
        assert abs(ours[0] - theirs[0]) <= tol * max(1.0, abs(theirs[0]))
        for k, g in theirs[1].items():
            if k in ("Z", "Z2"):
                continue
            assert np.abs(ours[1][k] - g).max() <= tol * max(1.0, np.abs(g).max()), k


def test_s6_runs_no_product_with_a_trained_matrix_inside_its_loops():
    """S6's step-size, B and C projections read u = W_u x only: one product each over all steps."""
    code = sr.Model(s6(4), D=3, H=4, loss="upstream").cell_code
    forward_loop = code.forward_source.split("for t in range(T):")[1]
    backward_loop = code.backward_source.split("for t in range(T - 1, -1, -1):")[1].split("grads = {}")[0]
    assert not re.search(r"np\.matmul\(.*G\d", forward_loop) and "@" not in backward_loop
    # (a batched product with the state, C_t^T s_t, is no product with a trained matrix)
    assert "np.matmul((s__t).reshape(-1, H, 4), (C__t).reshape(-1, 4, 1))" in forward_loop


def test_the_fused_backend_agrees_on_hoisted_products():
    """The Numba writer leaves the hoisted products to the same lines outside its loops."""
    pytest.importorskip("numba")
    out = {}
    for backend in ("numpy", "numba"):
        with sr.using_backend(backend):
            m, p, x, G, h0 = problem(cell(), T=6, H=4)
            out[backend] = m.loss_and_grads(p, x, G, h0=h0), m.cell_code.backend
    (ours, _), (fused, used) = out["numpy"], out["numba"]
    assert used == "numba"
    for k, g in ours[1].items():
        assert np.abs(fused[1][k] - g).max() <= 1e-13 * max(1.0, np.abs(g).max()), k
