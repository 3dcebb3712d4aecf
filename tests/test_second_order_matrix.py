"""RTRL, H v and G v of cells with matrix-valued states (mLSTM with heads, S6, a user's fast-weight cell).

Their fixed spreads and folds are filled in as for the gradient and have no direction: they are
not keys of ``v``, of the products or of RTRL's gradients, and the generated tangent code reads
them as constants.  Checked against independent routes:

* RTRL equals BPTT (``loss_and_grads``) to 1e-12 relative per key, many-to-many and many-to-one,
  with a mask, with the upstream loss and random initial states;
* ``H v`` equals torch's double backward of the torch loops of ``tests/test_matrix_cells.py``
  (written from the papers: states as ``(N, heads, d, d)`` tensors, outer products by broadcasting),
  with the cross-entropy readout and with the upstream loss, to 1e-12 relative;
* ``G v`` equals ``J^T H_L J v`` with ``J`` by ``torch.func.jacrev`` of the same loops;
* ``verify_hvp`` passes torch's product of mLSTM and catches one block off by 1e-9;
* the decay study's sharpness (power iteration on ``H v``) runs on them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import symrnn as sr
from symrnn.verify import verify_hvp

from test_matrix_cells import CASES, model as matrix_model, torch_states
from test_rtrl import assert_rtrl_equals_bptt
from test_second_order import assert_close, torch_hvp

MATRIX = ["mlstm", "s6", "mlstm-d3-exp", "s6-n3-zoh-channels"]  # mlstm: H = 4 in 2 heads of size 2


def fast_weights():
    """A user's cell with a matrix state: ``C_t = lambda C_{t-1} + v k^T`` and ``h_t = tanh(C_t q)`` (one
    head, ``lambda = sigmoid(b_l)`` per entry), written with its own spreads and fold."""
    cell = sr.Cell("fast-weights", "linear attention with decay (a user's matrix cell)")
    cell.input()
    x, h = cell.input_symbol, cell.state("h")
    cell.size("HH", sp.Symbol("H") ** 2)
    C = cell.state("C", "HH")
    rows, cols = cell.spread("E_r", "HH", "H", "H"), cell.spread("E_c", "HH", "H", "H", "H")
    fold = cell.fold("F_r", "H", "HH", "H")
    q, k, v = (cell.let(n, cell.param(f"W_{n}", "H", cell.sizes[x]) @ x) for n in "qkv")
    lam = cell.let("lam", sr.sigmoid(cell.param("b_l", "HH")))
    C_t = cell.update(C, lam * C + (rows @ v) * (cols @ k))
    cell.update(h, sr.tanh(fold @ (C_t * (cols @ q))))
    cell.output("h")
    return cell.validate()


def torch_fast_weights(torch, P, X, s):
    N, H = X.shape[1], P["W_q"].shape[0]
    C, lam, out = s["C"].reshape(N, H, H), torch.sigmoid(P["b_l"]).reshape(H, H), []
    for x in X:
        q, k, v = x @ P["W_q"].T, x @ P["W_k"].T, x @ P["W_v"].T
        C = lam * C + v[:, :, None] * k[:, None, :]
        out.append(torch.tanh(torch.einsum("nab,nb->na", C, q)))
    return torch.stack(out)


def states_of(case):
    return (lambda torch, P, X, s: torch_fast_weights(torch, P, X, s)) if case == "fast-weights" else \
        (lambda torch, P, X, s: torch_states(torch, case, P, X, s))


def make(case, loss="cross-entropy", architecture="many-to-many"):
    if case == "fast-weights":
        return sr.Model(fast_weights(), D=2, H=3, K=3, loss=loss, architecture=architecture)
    _, D, H, _ = CASES[case]
    return sr.Model(CASES[case][0](), D=D, H=H, K=None if loss == "upstream" else 3, loss=loss,
                    architecture=architecture)


def data(m, T, seed, loss="cross-entropy", N=2):
    rng = np.random.default_rng(seed)
    params = m.init_params(seed=seed, scale=0.7)
    x = rng.normal(size=(T, N, m.sizes["D"]))
    if loss == "cross-entropy":
        y = rng.integers(0, 3, size=(T if m.architecture.name == "many-to-many" else 1, N))
    else:
        y = rng.normal(size=(T, N, m.sizes["H"]))
    h0 = {s: 0.5 * rng.normal(size=(N, m.state_size(s))) for s in m.state_names}
    v = {k: rng.normal(size=p.shape) for k, p in params.items()}
    return params, x, y, h0, v


# -- RTRL -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", MATRIX + ["fast-weights"])
@pytest.mark.parametrize("architecture", ["many-to-many", "many-to-one"])
def test_rtrl_equals_bptt(case, architecture):
    m = make(case, architecture=architecture)
    params, x, y, h0, _ = data(m, 20 if case in ("mlstm", "s6") else 7, 1)
    assert_rtrl_equals_bptt(m, params, x, y, h0)
    _, grads = m.rtrl_grads(params, x, y, h0=h0)
    assert not set(m.cell.fixed_params) & set(grads)  # the fixed spreads and folds have no gradient


@pytest.mark.parametrize("case", ["mlstm", "s6"])
def test_rtrl_with_a_mask_and_the_upstream_loss(case):
    m = sr.Model(CASES[case][0](), D=CASES[case][1], H=CASES[case][2], K=3, reduction="token-mean")
    params, x, y, h0, _ = data(m, 9, 2)
    mask = np.random.default_rng(3).random(y.shape) > 0.3
    assert_rtrl_equals_bptt(m, params, x, y, h0, mask=mask)
    up = matrix_model(case)
    params, x, y, h0, _ = data(up, 9, 4, loss="upstream")
    assert_rtrl_equals_bptt(up, params, x, y, h0)


# -- H v against torch's double backward ------------------------------------------------------------
@pytest.mark.parametrize("case", MATRIX + ["fast-weights"])
@pytest.mark.parametrize("loss", ["cross-entropy", "upstream"])
def test_hvp_against_torch_double_backward(torch64, case, loss):
    torch = torch64.torch
    m = make(case, loss)
    params, x, y, h0, v = data(m, 8, 5, loss)
    loss_value, grads, hv = m.hessian_vector_product(params, v, x, y, h0=h0)
    assert set(hv) == set(params) == set(grads) and not set(m.cell.fixed_params) & set(hv)
    forward, X, S = states_of(case), torch64.tensor(x), {s: torch64.tensor(a) for s, a in h0.items()}

    def torch_loss(P):
        hs = forward(torch, P, X, S)
        if loss == "upstream":
            return (hs * torch64.tensor(y)).sum()
        logits = hs @ P["V"].T + P["c"]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 3), torch.as_tensor(y).reshape(-1), reduction="sum")

    P = {k: torch64.tensor(a, grad=True) for k, a in params.items()}
    assert abs(loss_value - torch_loss(P).item()) <= 1e-12 * max(1.0, abs(loss_value))
    assert_close(hv, torch_hvp(torch_loss, P, {k: torch64.tensor(a) for k, a in v.items()}, torch), what=f"H v ({case})")
    assert_close(grads, m.loss_and_grads(params, x, y, h0=h0)[1], what="grads")


def test_fixed_maps_are_refused_as_directions():
    m = make("s6")
    params, x, y, _, v = data(m, 3, 0)
    with pytest.raises(sr.ParameterError, match="fixed spreads and folds"):
        m.hessian_vector_product(params, {**v, "E_s": np.zeros((6, 3))}, x, y)


# -- G v against an independent Jacobian -------------------------------------------------------------
@pytest.mark.parametrize("case", ["mlstm", "s6", "fast-weights"])
def test_gauss_newton_against_jacrev(torch64, case):
    """``G v = J^T H_L J v``, ``J`` the Jacobian of the logits by ``torch.func.jacrev`` of the torch loop,
    ``H_L`` the softmax cross-entropy's Hessian per token, ``diag(p) - p p^T``."""
    torch = torch64.torch
    m = make(case)
    params, x, y, h0, v = data(m, 5, 6)
    gv = m.hessian_vector_product(params, v, x, y, h0=h0, gauss_newton=True)[2]
    forward, X, S = states_of(case), torch64.tensor(x), {s: torch64.tensor(a) for s, a in h0.items()}
    P = {k: torch64.tensor(a) for k, a in params.items()}

    def logits(Q):
        return forward(torch, Q, X, S) @ Q["V"].T + Q["c"]

    J = torch.func.jacrev(logits)(P)  # key -> (T, N, K) + shape
    o = logits(P)
    Jv = sum((J[k] * torch64.tensor(v[k])).reshape(o.shape + (-1,)).sum(-1) for k in P)
    p = torch.softmax(o, -1)
    HJv = p * Jv - p * (p * Jv).sum(-1, keepdim=True)
    ref = {k: torch.einsum("tnk,tnk...->...", HJv, J[k]).numpy() for k in P}
    assert_close(gv, ref, what=f"G v ({case})")


# -- the agreement row and the reports -------------------------------------------------------------------
@pytest.mark.parametrize("case", ["mlstm", "s6"])
def test_agreement_row_and_sensitivity_section(case):
    from symrnn.checks import random_problem, rtrl_row
    from symrnn.engine.tangent import Tangent
    from symrnn.report.sensitivities import TITLE, sensitivity_equations

    m = make(case)
    params, x, y, h0 = random_problem(m, T_in=3, N=2, seed=0)
    name, err, _, tol = rtrl_row(m, params, x, y, h0, m.loss_and_grads(params, x, y, h0=h0)[1])
    assert "does not apply" not in name and err <= tol
    dotted = {a.args[0].name for e in sensitivity_equations(m.cell) for a in e.rhs.atoms(Tangent)
              if hasattr(a.args[0], "name")}
    assert not dotted & set(m.cell.fixed_params) and {"W_B" if case == "s6" else "W_q"} <= dotted
    stored = Path(__file__).parent.parent / "derivations" / f"{case}_many-to-many.md"  # kept current by test_reports
    assert TITLE in stored.read_text() and r"\dot{E" not in stored.read_text() and r"\dot{F" not in stored.read_text()


# -- the verifier and the decay study -----------------------------------------------------------------
def mlstm_torch_hvp(torch64, factor=None):
    """``fn(params, x, y, v)``: torch's H v of mLSTM (summed cross-entropy from zero states); ``factor``:
    one block (``W_k``) multiplied by it."""
    torch = torch64.torch

    def fn(p, x, y, v):
        P = {k: torch64.tensor(a, grad=True) for k, a in p.items()}
        X, S = torch64.tensor(x), {s: torch.zeros(x.shape[1], matrix_model("mlstm").state_size(s)) for s in CASES["mlstm"][3]}

        def loss(Q):
            logits = torch_states(torch, "mlstm", Q, X, S) @ Q["V"].T + Q["c"]
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.as_tensor(y).reshape(-1),
                                                     reduction="sum")

        hv = torch_hvp(loss, P, {k: torch64.tensor(a) for k, a in v.items()}, torch)
        return {k: h * factor if k == "W_k" and factor else h for k, h in hv.items()}
    return fn


def test_verify_hvp_judges_a_matrix_cell(torch64):
    options = dict(D=3, H=4, K=3, T=5, N=2, lengths=(2,))
    right = verify_hvp(mlstm_torch_hvp(torch64), "mlstm", **options)
    assert right.ok, str(right)
    off = verify_hvp(mlstm_torch_hvp(torch64, 1 + 1e-9), "mlstm", **options)
    assert not off.ok and {r for r, _ in off.blocks} == {"W_k"}, str(off)


@pytest.mark.parametrize("case", ["mlstm", "s6"])
def test_sharpness_runs_on_matrix_cells(case):
    from symrnn.decay.sharpness import sharpness_by_length

    m = make(case)
    rows = sharpness_by_length(m, m.init_params(seed=0), [2, 6], N=2)
    assert [T for T, _ in rows] == [2, 6] and all(r.converged and np.isfinite(r.value) for _, r in rows)
