"""Cells with matrix-valued states (mLSTM of xLSTM, Mamba's S6) against independent routes.

The torch side is written here from the papers (Beck et al. 2024, mLSTM; Gu and Dao 2023, S6)
with the states as real tensors of shape ``(N, heads, d, d)`` and ``(N, H, N_state)``, outer
products by broadcasting and products with the memory by ``einsum``: none of symrnn's spreads,
folds or equations.  Every parameter, the input and every initial state are compared at
T = 1, 17 and 200 to ``1e-12`` relative per array (``max|ours - torch| / max|torch|``).  Small
sizes go against the unrolled scalar oracle (float64 and 40 digits), whose spreads and folds are
exact 0/1 sums; mLSTM's stabilised cell against the paper's unstabilised one.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import pytest

import symrnn as sr
from symrnn.engine.cells_matrix import mlstm, s6
from symrnn.engine.structure import structural_matrix
from symrnn.oracles import ScalarOracle
from test_modern_cells import torch_grads as modern_torch_grads

TOL = 1e-12
#: name -> (cell factory, D, H, states)
CASES = {
    "mlstm": (lambda: mlstm(), 3, 4, ("h", "C", "n", "m")),
    "mlstm-d3-exp": (lambda: mlstm(3, "exp"), 2, 6, ("h", "C", "n", "m")),
    "mlstm-d1": (lambda: mlstm(1), 3, 2, ("h", "C", "n", "m")),
    "s6": (lambda: s6(), 2, 3, ("s", "h")),
    "s6-n3-zoh-channels": (lambda: s6(3, "zoh", projection=False), 2, 2, ("s", "h")),
}


# -- the torch loops, from the papers ------------------------------------------------------------
def lin(x, W, b=None):
    return x @ W.T + (0 if b is None else b)


def mlstm_head_size(case):
    return {"mlstm": 2, "mlstm-d3-exp": 3, "mlstm-d1": 1}[case]


def torch_mlstm(torch, case, P, X, s, stabilised=True):
    """xLSTM's mLSTM (Beck et al. 2024, Sec. 2.3 and App. A): per head ``C = f C + i v k^T``,
    ``n = f n + i k``, ``h = o * C q / max(|n^T q|, 1)``; stabilised with ``m`` (the bound becomes
    exp(-m)), or the paper's unstabilised form from the initial states scaled back by exp(m0)."""
    d = mlstm_head_size(case)
    N, H = X.shape[1], P["W_q"].shape[0]
    heads = H // d
    C, n, m = s["C"].reshape(N, heads, d, d), s["n"].reshape(N, heads, d), s["m"]
    if not stabilised:
        C, n = C * torch.exp(m)[..., None, None], n * torch.exp(m)[..., None]
    out = []
    for x in X:
        q = lin(x, P["W_q"], P["b_q"]).reshape(N, heads, d)
        k = (lin(x, P["W_k"]) / d ** 0.5 + P["b_k"]).reshape(N, heads, d)
        v = lin(x, P["W_v"], P["b_v"]).reshape(N, heads, d)
        it, ft = lin(x, P["W_i"], P["b_i"]), lin(x, P["W_f"], P["b_f"])
        o = torch.sigmoid(lin(x, P["W_o"], P["b_o"]))
        log_f = torch.nn.functional.logsigmoid(ft) if case != "mlstm-d3-exp" else ft
        if stabilised:
            m_new = torch.maximum(log_f + m, it)
            i, f, bound = torch.exp(it - m_new), torch.exp(log_f + m - m_new), torch.exp(-m_new)
            m = m_new
        else:
            i, f, bound = torch.exp(it), torch.exp(log_f), torch.ones_like(it)
        C = f[..., None, None] * C + i[..., None, None] * v[..., :, None] * k[..., None, :]
        n = f[..., None] * n + i[..., None] * k
        Cq = torch.einsum("zhab,zhb->zha", C, q)
        den = torch.maximum(torch.abs((n * q).sum(-1)), bound)
        out.append(o * (Cq / den[..., None]).reshape(N, H))
    return torch.stack(out)


def torch_s6(torch, case, P, X, s):
    """Mamba's S6 (Gu and Dao 2023, Alg. 2 with zero-order hold, Sec. 2 eqs. 2a, 2b, 4): per channel,
    ``s = exp(Delta A) s + Bbar x``, ``y = C s + d x``; ``Bbar = Delta B`` or the exact
    ``(Delta A)^{-1} (exp(Delta A) - 1) Delta B``."""
    N, H = X.shape[1], P["d"].shape[0]
    A = -torch.exp(P["A_log"]).reshape(H, -1)
    state = s["s"].reshape(N, H, -1)
    out = []
    for x in X:
        x = lin(x, P["W_u"]) if "W_u" in P else x  # the Mamba block's input projection, or the channels as given
        delta = torch.logaddexp(torch.zeros_like(x), lin(x, P["W_dt"], P["b_dt"]))  # softplus, exact
        B, C = lin(x, P["W_B"]), lin(x, P["W_C"])
        dA = delta[..., None] * A
        if case == "s6":
            Bbar = delta[..., None] * B[:, None, :]
        else:
            Bbar = (torch.exp(dA) - 1) / dA * delta[..., None] * B[:, None, :]
        state = torch.exp(dA) * state + Bbar * x[..., None]
        out.append((state * C[:, None, :]).sum(-1) + P["d"] * x)
    return torch.stack(out)


def torch_states(torch, case, P, X, s):
    return torch_s6(torch, case, P, X, s) if case.startswith("s6") else torch_mlstm(torch, case, P, X, s)


# -- the problems -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def model(case, loss="upstream", K=None):
    make, D, H, _ = CASES[case]
    return sr.Model(make(), D=D, H=H, K=K, loss=loss)


def problem(case, T, seed, N=2, scale=0.6):
    m = model(case)
    rng = np.random.default_rng(seed)
    params = m.init_params(seed=seed, scale=scale)
    x = rng.normal(size=(T, N, m.sizes["D"]))
    G = rng.normal(size=(T, N, m.sizes["H"]))
    h0 = {s: rng.normal(size=(N, m.state_size(s))) for s in CASES[case][3]}
    return m, params, x, G, h0


def torch_grads(T64, case, params, x, G, h0, states=torch_states):
    """The loss and every gradient by torch autograd of ``states`` (test_modern_cells's driver)."""
    return modern_torch_grads(T64, case, params, x, G, h0, states=states)


def assert_close(ours, theirs, label, tol=TOL):
    loss, grads = ours
    t_loss, t_grads = theirs
    assert abs(loss - t_loss) <= tol * max(1.0, abs(t_loss)), f"{label}: loss {loss!r} vs {t_loss!r}"
    assert sorted(grads) == sorted(t_grads), f"{label}: names {sorted(grads)} vs {sorted(t_grads)}"
    for k in grads:
        a, b = np.asarray(grads[k], dtype=float), np.asarray(t_grads[k], dtype=float)
        assert a.shape == b.shape, f"{label}: {k} shape {a.shape} vs {b.shape}"
        scale = np.max(np.abs(b)) if b.size else 0.0
        err = np.max(np.abs(a - b)) if b.size else 0.0
        assert err <= (tol * scale if scale >= 1e-3 else 1e-15), f"{label}: d{k} off by {err:.3g} (scale {scale:.3g})"


# -- the tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 17, 200])
@pytest.mark.parametrize("case", list(CASES))
def test_every_gradient_matches_torch_loop_from_the_paper(torch64, case, T):
    m, params, x, G, h0 = problem(case, T, seed=T)
    ours = m.loss_and_grads(params, x, G, h0=h0)
    assert_close(ours, torch_grads(torch64, case, params, x, G, h0), f"{case} T={T}")


@pytest.mark.parametrize("case", ["mlstm", "mlstm-d3-exp"])
def test_stabilised_mlstm_is_the_unstabilised_one(torch64, case):
    """C and n are the paper's times exp(-m): with the bound exp(-m) the stabilised cell is the paper's
    h = o C q / max(|n^T q|, 1) in value and every gradient (m0 included, read through exp(m0))."""
    m, params, x, G, h0 = problem(case, 25, 3, scale=0.4)
    ours = m.loss_and_grads(params, x, G, h0=h0)
    unstabilised = functools.partial(torch_mlstm, stabilised=False)
    assert_close(ours, torch_grads(torch64, case, params, x, G, h0, states=unstabilised),
                 f"{case} vs the unstabilised equations", tol=1e-11)


def test_mlstm_is_stable_where_the_unstabilised_form_overflows(torch64):
    m, params, x, G, h0 = problem("mlstm", 6, 4)
    params["b_i"] = np.full_like(params["b_i"], 800.0)
    loss, grads = m.loss_and_grads(params, x, G, h0=h0)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())
    assert_close((loss, grads), torch_grads(torch64, "mlstm", params, x, G, h0), "mlstm with b_i = 800")


@pytest.mark.parametrize("case", list(CASES))
def test_every_gradient_matches_the_scalar_oracle(case):
    m, params, x, G, h0 = problem(case, 3, seed=11, scale=0.8)
    ours = m.loss_and_grads(params, x, G, h0=h0)
    oracle = ScalarOracle(m, 3, 3)
    assert_close(ours, oracle.loss_and_grads(params, x, G, h0=h0), f"{case} vs the scalar oracle")
    assert_close(ours, oracle.loss_and_grads(params, x, G, h0=h0, precision=40), f"{case} vs 40 digits")


@pytest.mark.parametrize("case", ["mlstm", "s6"])
def test_readout_loss_from_zero_states_matches_torch(torch64, case):
    m = model(case, "cross-entropy", 3)
    torch = torch64.torch
    rng = np.random.default_rng(5)
    params = m.init_params(seed=5)
    x, y = rng.normal(size=(9, 2, m.sizes["D"])), rng.integers(0, 3, size=(9, 2))
    loss, grads = m.loss_and_grads(params, x, y)
    P = {k: torch64.tensor(v, grad=True) for k, v in params.items()}
    X = torch64.tensor(x, grad=True)
    S = {s: torch64.zeros(2, m.state_size(s)) for s in CASES[case][3]}
    logits = torch_states(torch, case, P, X, S) @ P["V"].T + P["c"]
    t_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), torch.from_numpy(y.reshape(-1)), reduction="sum")
    t_loss.backward()
    theirs = {k: torch64.numpy(v.grad) for k, v in P.items()}
    theirs["x"] = torch64.numpy(X.grad)
    assert_close((loss, {k: v for k, v in grads.items() if k in theirs}), (t_loss.item(), theirs), f"{case} readout")


def test_a_wrong_outer_product_is_caught(torch64):
    """The comparison can fail: a torch loop with k v^T in place of v k^T is another function."""
    def transposed(torch, case, P, X, s):
        P = dict(P)
        P["W_k"], P["W_v"] = P["W_v"] * 2 ** 0.5, P["W_k"] / 2 ** 0.5
        P["b_k"], P["b_v"] = P["b_v"], P["b_k"]
        return torch_mlstm(torch, case, P, X, s)

    m, params, x, G, h0 = problem("mlstm", 5, 2)
    with pytest.raises(AssertionError):
        assert_close(m.loss_and_grads(params, x, G, h0=h0), torch_grads(torch64, "mlstm", params, x, G, h0,
                                                                        states=transposed), "transposed")


def test_spreads_and_folds_are_the_textbook_operations():
    rng = np.random.default_rng(0)
    v, k, q = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)
    rows, cols = structural_matrix("spread", 9, 3, 3, 1), structural_matrix("spread", 9, 3, 3, 3)
    outer = (rows @ v) * (cols @ k)
    assert np.array_equal(outer, np.outer(v, k).ravel())
    assert np.allclose(structural_matrix("fold", 3, 9, 3, 1) @ (outer * (cols @ q)), np.outer(v, k) @ q, 1e-15)
    assert np.array_equal(structural_matrix("fold", 3, 9, 3, 1), rows.T)


def test_heads_must_divide_the_hidden_size():
    with pytest.raises(sr.ShapeError, match="HM|NH"):
        sr.Model(mlstm(2), D=3, H=5, loss="upstream")


def test_fixed_maps_are_not_parameters():
    m = model("mlstm")
    assert not set(m.param_shapes) & {"E_h", "E_m", "E_r", "E_c", "F_r", "F_h"}
    assert not set(m.derive().gradients) & set(m.cell.fixed_params)


@pytest.mark.parametrize("name, words", [("mlstm", "Beck et al. 2024"), ("s6", "Gu and Dao 2023")])
def test_symrnn_cells_names_the_papers(capsys, name, words):
    from symrnn.cli import main
    main(["cells"])
    out = capsys.readouterr().out
    assert any(name in line and words in line for line in out.splitlines()), out


@pytest.mark.parametrize("case", ["mlstm", "s6", "s6-n3-zoh-channels"])
def test_numba_backend_agrees_with_numpy(case):
    """Under SYMRNN_BACKEND=numba a matrix cell runs fused (the spreads and folds as dense products inside
    the kernels; S6's softplus has a scalar source, and its hoisted products stay outside the kernels), and
    every gradient is the NumPy one to rounding."""
    pytest.importorskip("numba")
    _, D, H, _ = CASES[case]
    rng = np.random.default_rng(2)
    x, G = rng.normal(size=(6, 2, D)), rng.normal(size=(6, 2, H))
    out = {}
    for backend in ("numpy", "numba"):
        with sr.using_backend(backend):
            m = sr.Model(CASES[case][0](), D=D, H=H, loss="upstream")
            out[backend] = (m.loss_and_grads(m.init_params(seed=2), x, G), m.cell_code.backend)
    assert (out["numpy"][1], out["numba"][1]) == ("numpy", "numba")
    assert_close(out["numba"][0], out["numpy"][0], f"{case} numba vs numpy", tol=1e-13)


@pytest.mark.parametrize("case", ["mlstm", "s6"])
def test_the_fused_driver_copies_and_sums_in_place_of_products_with_spreads(case):
    """Under Numba the spreads and folds are the driver's copies and sums too, not dense 0/1 products."""
    pytest.importorskip("numba")
    _, D, H, _ = CASES[case]
    with sr.using_backend("numba"):
        code = sr.Model(CASES[case][0](), D=D, H=H, loss="upstream").cell_code
    texts = code.fused.texts
    assert "spread__fn(" in texts["forward"] and "fold__fn(" in texts["backward"]
    fixed = [g.index for g in code.groups.values() if code._fixed_group(g)]
    assert fixed and not any(f"G{i}, out=" in texts[k] or f"@ G{i}" in texts[k] for i in fixed
                             for k in ("forward", "backward"))


def test_generated_code_copies_and_sums_in_place_of_products_with_spreads():
    source = model("mlstm").cell_code.forward_source
    assert "spread__fn(" in source and "fold__fn(" in source
    assert "np.matmul(k__t" not in source and "np.matmul(Cw__t" not in source
    assert "E_r" not in model("mlstm").cell_code.backward_source.split("grads = {}")[1]  # no gradient of a spread


def test_bad_options_and_sizes_are_refused_with_a_message():
    with pytest.raises(sr.UnknownNameError, match="head_size"):
        mlstm(0)
    with pytest.raises(sr.UnknownNameError, match="b_bar"):
        s6(2, "rk4")
    cell = sr.Cell("bad")
    cell.input()
    with pytest.raises(sr.CellDefinitionError, match="2 or 3 capital letters"):
        cell.size("N", sp.Symbol("H") * 2)
    with pytest.raises(sr.CellDefinitionError, match="reads"):
        cell.size("HX", sp.Symbol("Q") * 2)
    with pytest.raises(sr.CellDefinitionError, match="notation"):
        cell.spread("E", "H", "H", 1, notation="diagonal")
    with pytest.raises(sr.ShapeError, match="channels|D must equal"):
        sr.Model(s6(projection=False), D=3, H=4, loss="upstream")


def test_stacked_and_seq2seq_models_refuse_matrix_states_clearly():
    with pytest.raises(sr.CellDefinitionError, match="matrix-valued states.*symrnn.Model"):
        sr.StackedModel("mlstm", D=3, H=4, K=2, num_layers=2)
    with pytest.raises(sr.CellDefinitionError, match="matrix-valued states"):
        sr.Seq2Seq("gru", decoder_cell="s6", src_vocab=5, tgt_vocab=5, E=3, H=4)


def test_rtrl_runs_matrix_states():
    """RTRL and H v run these cells now (their fixed spreads and folds are constants of the tangent);
    the full checks against BPTT and torch are in test_second_order_matrix.py."""
    from symrnn.engine.rtrl import rtrl_loss_and_grads
    m, params, x, G, h0 = problem("mlstm", 3, 0)
    loss, grads = rtrl_loss_and_grads(m, params, x, G, h0)
    bptt_loss, bptt = m.loss_and_grads(params, x, G, h0=h0)
    assert set(grads) == set(bptt) - {"x"}  # every parameter and initial state, no spread or fold
    assert_close((loss, grads), (bptt_loss, {k: bptt[k] for k in grads}), "mlstm RTRL")
