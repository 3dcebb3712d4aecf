"""The recurrent cells of today (minGRU, minLSTM, IndRNN, SRU, sLSTM) against independent routes.

The torch side is a plain loop of torch operations written here from each paper's equations
(Feng et al. 2024; Li et al. 2018; Lei et al. 2018; Beck et al. 2024), not from symrnn's
equations; autograd differentiates it.  Every parameter, the input and every initial state are
compared, at T = 1, 13 and 200, to ``1e-12`` relative per array (``max|ours - torch| / max|torch|``;
an array whose largest entry is below 1e-3 is judged at 1e-15 absolute: some gradients are exactly 0
in exact arithmetic and both routes return rounding noise, e.g. sLSTM's ``b_i`` from zero states,
where a common shift of every ``ibar`` cancels in ``c_t / n_t``).  Small sizes also go against the unrolled
scalar oracle, and the sLSTM's stabilised loop against the paper's unstabilised one (the same
function: the stabiliser cancels in ``c_t / n_t``).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import symrnn as sr
from symrnn.engine.cells import sru
from symrnn.oracles import ScalarOracle

TOL = 1e-12
CELLS = ["min-gru", "min-lstm", "indrnn", "sru", "sru-identity", "slstm", "slstm-exp"]
STATES = {"min-gru": ["h"], "min-lstm": ["h"], "indrnn": ["h"], "sru": ["h", "c"], "sru-identity": ["h", "c"],
          "slstm": ["h", "c", "n", "m"], "slstm-exp": ["h", "c", "n", "m"]}


# -- the torch loops, from the papers ------------------------------------------------------
def lin(torch, x, U, b=None):
    return x @ U.T + (0 if b is None else b)


def torch_step(torch, cell, P, x, s):
    """One step from the papers: the states after ``x`` from the states ``s`` (row convention)."""
    sig = torch.sigmoid
    h, c, n, m = s["h"], s.get("c"), s.get("n"), s.get("m")
    if cell == "min-gru":  # Feng et al. 2024, Sec. 3.1: z = sigma(Linear(x)), h~ = Linear(x)
        z = sig(lin(torch, x, P["U_z"], P["b_z"]))
        return {"h": (1 - z) * h + z * lin(torch, x, P["U_h"], P["b_h"])}
    if cell == "min-lstm":  # Feng et al. 2024, Sec. 3.2: normalised f' = f / (f + i), i' = i / (f + i)
        f, i = sig(lin(torch, x, P["U_f"], P["b_f"])), sig(lin(torch, x, P["U_i"], P["b_i"]))
        return {"h": f / (f + i) * h + i / (f + i) * lin(torch, x, P["U_h"], P["b_h"])}
    if cell == "indrnn":  # Li et al. 2018: h = relu(W x + u (.) h + b)
        return {"h": torch.relu(lin(torch, x, P["U"], P["b"]) + P["w"] * h)}
    if cell.startswith("sru"):  # Lei et al. 2018, eqs. (3)-(6); the highway input projected or not
        f = sig(lin(torch, x, P["U_f"], P["b_f"]) + P["v_f"] * c)
        r = sig(lin(torch, x, P["U_r"], P["b_r"]) + P["v_r"] * c)
        c = f * c + (1 - f) * lin(torch, x, P["U"])
        return {"h": r * c + (1 - r) * (x if cell == "sru-identity" else lin(torch, x, P["U_x"])), "c": c}
    # Beck et al. 2024, sLSTM with the stabiliser state (their eqs. for m_t, i'_t, f'_t)
    pre = {g: lin(torch, x, P[f"U_{g}"], P[f"b_{g}"]) + lin(torch, h, P[f"W_{g}"]) for g in "zifo"}
    log_f = torch.nn.functional.logsigmoid(pre["f"]) if cell == "slstm" else pre["f"]
    m_new = torch.maximum(log_f + m, pre["i"])
    i_s, f_s = torch.exp(pre["i"] - m_new), torch.exp(log_f + m - m_new)
    c = f_s * c + i_s * torch.tanh(pre["z"])
    n = f_s * n + i_s
    return {"h": sig(pre["o"]) * c / n, "c": c, "n": n, "m": m_new}


def torch_states(torch, cell, P, X, s):
    """The output state at every step; ``s`` holds the initial states (row convention)."""
    out = []
    for x in X:
        s = torch_step(torch, cell, P, x, s)
        out.append(s["h"])
    return torch.stack(out)


def torch_slstm_unstabilised(torch, cell, P, X, s):
    """The paper's sLSTM before stabilisation: i = exp(ibar), f = sigmoid(fbar) or exp(fbar); the
    initial states are the stabilised ones scaled back by exp(m0)."""
    h, C, N = s["h"], s["c"] * torch.exp(s["m"]), s["n"] * torch.exp(s["m"])
    out = []
    for x in X:
        pre = {g: lin(torch, x, P[f"U_{g}"], P[f"b_{g}"]) + lin(torch, h, P[f"W_{g}"]) for g in "zifo"}
        f = torch.sigmoid(pre["f"]) if cell == "slstm" else torch.exp(pre["f"])
        i = torch.exp(pre["i"])
        C = f * C + i * torch.tanh(pre["z"])
        N = f * N + i
        h = torch.sigmoid(pre["o"]) * C / N
        out.append(h)
    return torch.stack(out)


# -- the problems -----------------------------------------------------------------------------
def make_cell(name):
    return sru("identity") if name == "sru-identity" else sr.builtin_cell(name)


@functools.lru_cache(maxsize=None)
def model(cell, D, H, K=None, loss="upstream"):
    return sr.Model(make_cell(cell), D=D, H=H, K=K, loss=loss)


def problem(cell, T, seed, N=2, D=3, H=4, scale=0.6):
    D = H if cell == "sru-identity" else D
    m = model(cell, D, H)
    rng = np.random.default_rng(seed)
    params = m.init_params(seed=seed, scale=scale)
    if cell == "indrnn":  # the paper keeps |w| <= 1 for long sequences; bias positive so units stay on
        params["w"] = rng.uniform(-1, 1, size=H)
        params["b"] = np.abs(params["b"]) + 0.1
    x = rng.normal(size=(T, N, D))
    G = rng.normal(size=(T, N, H))
    h0 = {s: rng.normal(size=(N, H)) for s in STATES[cell]}
    if "n" in h0:  # a normaliser that starts positive stays positive
        h0["n"] = np.abs(h0["n"]) + 0.5
    return m, params, x, G, h0


def torch_grads(T64, cell, params, x, G, h0, states=torch_states):
    torch = T64.torch
    P = {k: T64.tensor(v, grad=True) for k, v in params.items()}
    X = T64.tensor(x, grad=True)
    S = {k: T64.tensor(v, grad=True) for k, v in h0.items()}
    loss = (states(torch, cell, P, X, S) * T64.tensor(G)).sum()
    loss.backward()
    grads = {k: T64.numpy(v.grad) for k, v in P.items()}
    grads["x"] = T64.numpy(X.grad)
    grads.update({f"{k}0": (T64.numpy(v.grad) if v.grad is not None else np.zeros_like(h0[k])) for k, v in S.items()})
    return loss.item(), grads


def assert_close(ours, theirs, label, tol=TOL):
    loss, grads = ours
    t_loss, t_grads = theirs
    assert abs(loss - t_loss) <= tol * max(1.0, abs(t_loss)), f"{label}: loss {loss!r} vs {t_loss!r}"
    assert sorted(grads) == sorted(t_grads), f"{label}: names {sorted(grads)} vs {sorted(t_grads)}"
    for k, g in t_grads.items():
        g, mine = np.asarray(g, dtype=float), np.asarray(grads[k], dtype=float)
        assert mine.shape == g.shape, f"{label}: grads[{k!r}] shape {mine.shape} vs {g.shape}"
        scale = np.max(np.abs(g), initial=0.0)
        err = np.max(np.abs(mine - g), initial=0.0)
        assert err <= tol * max(scale, 1e-3), \
            f"{label}: grads[{k!r}] off by {err:.3e} where the largest entry is {scale:.3e} (tolerance {tol:g} relative)"


# -- the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 13, 200])
@pytest.mark.parametrize("cell", CELLS)
def test_every_gradient_matches_torch_loop_from_the_paper(torch64, cell, T):
    for seed in (0, 1):
        m, params, x, G, h0 = problem(cell, T, seed)
        ours = m.loss_and_grads(params, x, G, h0=h0)
        assert_close(ours, torch_grads(torch64, cell, params, x, G, h0), f"{cell} T={T} seed={seed}")


@pytest.mark.parametrize("cell", CELLS)
def test_default_initial_state_and_readout_loss_match_torch(torch64, cell):
    """The zero initial state (the paper's start) with a cross-entropy readout on top."""
    torch = torch64.torch
    D, H, K, T, N = (4 if cell == "sru-identity" else 3), 4, 3, 9, 2
    m = model(cell, D, H, K, "cross-entropy")
    params = m.init_params(seed=5, scale=0.7)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(T, N, D)), rng.integers(0, K, size=(T, N))
    ours_loss, ours = m.loss_and_grads(params, x, y)
    P = {k: torch64.tensor(v, grad=True) for k, v in params.items()}
    X = torch64.tensor(x, grad=True)
    S = {s: torch64.zeros(N, H) for s in STATES[cell]}
    hs = torch_states(torch, cell, P, X, S)
    logits = hs @ P["V"].T + P["c"]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, K), torch.from_numpy(y.reshape(-1)), reduction="sum")
    loss.backward()
    theirs = {k: torch64.numpy(v.grad) for k, v in P.items()}
    theirs["x"] = torch64.numpy(X.grad)
    ours = {k: v for k, v in ours.items() if k in theirs}
    assert_close((ours_loss, ours), (loss.item(), theirs), f"{cell} with a readout")


@pytest.mark.parametrize("cell", ["slstm", "slstm-exp"])
def test_stabilised_slstm_is_the_unstabilised_one(torch64, cell):
    """The stabiliser cancels in c_t / n_t: symrnn's sLSTM equals the paper's unstabilised equations
    in value and in every gradient except m0's (which the unstabilised route reads through exp(m0)
    as well, so that one agrees too)."""
    m, params, x, G, h0 = problem(cell, 30, 3, scale=0.4)
    ours = m.loss_and_grads(params, x, G, h0=h0)
    theirs = torch_grads(torch64, cell, params, x, G, h0, states=torch_slstm_unstabilised)
    assert_close(ours, theirs, f"{cell} vs the unstabilised equations", tol=1e-11)


def test_slstm_is_stable_where_the_unstabilised_form_overflows(torch64):
    """A large input-gate bias overflows exp(ibar) in float64; the stabilised cell stays finite."""
    m, params, x, G, h0 = problem("slstm", 5, 4)
    params["b_i"] = np.full_like(params["b_i"], 800.0)
    loss, grads = m.loss_and_grads(params, x, G, h0=h0)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())
    assert_close((loss, grads), torch_grads(torch64, "slstm", params, x, G, h0), "slstm with b_i = 800")


@pytest.mark.parametrize("cell", CELLS)
def test_every_gradient_matches_the_scalar_oracle(cell):
    H = 2
    D = H if cell == "sru-identity" else 2
    m = model(cell, D, H)
    rng = np.random.default_rng(11)
    params = m.init_params(seed=11, scale=0.8)
    x, G = rng.normal(size=(4, 2, D)), rng.normal(size=(4, 2, H))
    h0 = {s: rng.normal(size=(2, H)) for s in STATES[cell]}
    if "n" in h0:
        h0["n"] = np.abs(h0["n"]) + 0.5
    ours = m.loss_and_grads(params, x, G, h0=h0)
    oracle = ScalarOracle(m, 4, 4)
    assert_close(ours, oracle.loss_and_grads(params, x, G, h0=h0), f"{cell} vs the scalar oracle")
    exact = oracle.loss_and_grads(params, x, G, h0=h0, precision=40)
    assert_close(ours, exact, f"{cell} vs the 40-digit scalar oracle")


def test_a_wrong_torch_loop_is_caught(torch64):
    """The comparison can fail: minLSTM without its gate normalisation is another function."""
    def unnormalised(torch, cell, P, X, s):
        h, out = s["h"], []
        for x in X:
            f, i = torch.sigmoid(lin(torch, x, P["U_f"], P["b_f"])), torch.sigmoid(lin(torch, x, P["U_i"], P["b_i"]))
            h = f * h + i * lin(torch, x, P["U_h"], P["b_h"])
            out.append(h)
        return torch.stack(out)
    m, params, x, G, h0 = problem("min-lstm", 6, 0)
    with pytest.raises(AssertionError, match="loss"):
        assert_close(m.loss_and_grads(params, x, G, h0=h0), torch_grads(torch64, "min-lstm", params, x, G, h0,
                                                                          states=unnormalised), "x")


def test_sru_identity_refuses_an_input_size_other_than_the_hidden_size():
    with pytest.raises(sr.ShapeError, match="D must equal H: got D=3, H=4; give D=4"):
        sr.Model(sru("identity"), D=3, H=4, K=2)
    with pytest.raises(sr.UnknownNameError, match="Unknown SRU highway 'none'"):
        sru("none")


def test_sru_projection_at_the_identity_is_the_papers_highway():
    m, params, x, G, h0 = problem("sru-identity", 8, 2)
    params_p = {**params, "U_x": np.eye(4)}
    ours_p = model("sru", 4, 4).loss_and_grads(params_p, x, G, h0=h0)
    ours_i = m.loss_and_grads(params, x, G, h0=h0)
    assert abs(ours_p[0] - ours_i[0]) <= 1e-13 * abs(ours_i[0])
    for k, g in ours_i[1].items():
        assert np.allclose(ours_p[1][k], g, rtol=1e-13, atol=1e-15), k


@pytest.mark.parametrize("name,words", [("min-gru", "Feng et al. 2024"), ("min-lstm", "Feng et al. 2024"),
                                        ("indrnn", "Li et al. 2018"), ("sru", "Lei et al. 2018"),
                                        ("slstm", "Beck et al. 2024")])
def test_symrnn_cells_names_the_papers(capsys, name, words):
    from symrnn.cli import main

    assert main(["cells"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith(name + " "))
    assert words in line


def test_new_functions_agree_on_every_route(torch64):
    """softplus and log_sigmoid: NumPy, float, mpmath and torch agree, in the tails too, and their
    derivative rules are the sigmoid and 1 - sigmoid."""
    import mpmath
    import sympy as sp
    from symrnn.engine.functions import rule_of

    u = sp.Symbol("u")
    points = np.array([-800.0, -40.0, -3.0, -1e-8, 0.0, 2.5, 30.0, 700.0])
    for fn, exact in ((sr.softplus, lambda a: mpmath.log1p(mpmath.exp(a))),
                      (sr.log_sigmoid, lambda a: -mpmath.log1p(mpmath.exp(-a)))):
        rule = rule_of(fn)
        with mpmath.workdps(50):
            want = np.array([float(exact(mpmath.mpf(a))) for a in points])
        for got in (rule.numpy(points), np.array([rule.scalar_implementation()(a) for a in points]),
                    np.array([float(rule.mpmath_implementation()(mpmath.mpf(a))) for a in points]),
                    torch64.numpy(rule.torch_implementation(torch64.torch)(torch64.tensor(points)))):
            assert np.all(np.abs(got - want) <= 4e-16 * np.abs(want)), (fn, got, want)
        out = np.empty_like(points)
        assert rule.numpy(points, out=out) is out and np.array_equal(out, rule.numpy(points))
    assert sp.diff(sr.softplus(u), u) == sr.sigmoid(u)
    assert sp.simplify((sp.diff(sr.log_sigmoid(u), u) - (1 - sr.sigmoid(u))).rewrite(sp.exp)) == 0
    assert sp.latex(sr.softplus(u)) == r"\operatorname{softplus}\left(u\right)"
    assert sp.latex(sr.log_sigmoid(u)) == r"\log\sigma\left(u\right)"


def test_the_sigmoid_rule_is_exact_in_both_tails_and_in_place():
    """``sigmoid``'s NumPy rule: ``1 / (1 + exp(-a))`` within 2 ulp of the value (mpmath at 50 digits), the
    exact-tail formula once some ``a < -700`` (denormal values kept, no overflow warning), NaN carried,
    ``out`` may be ``a`` itself."""
    import warnings

    import mpmath
    from symrnn.engine.functions import rule_of

    rule = rule_of(sr.sigmoid)
    rng = np.random.default_rng(5)
    for points in (np.concatenate([np.linspace(-700, 40, 3001), rng.normal(size=500) * 8]),
                   np.array([-745.0, -720.0, -709.9, -30.0, -1e-9, 0.0, 3.0, 800.0])):
        with mpmath.workdps(50):
            want = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(a)))) for a in points])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow in exp
            got = rule.numpy(points)
            inplace = points.copy()
            assert rule.numpy(inplace, out=inplace) is inplace
        normal = want > np.finfo(float).tiny
        assert np.all(np.abs(got - want)[normal] <= 2.3e-16 * want[normal]), np.max(np.abs(got - want) / want)
        assert np.all(np.abs(got - want)[~normal] <= 5e-324) and np.array_equal(inplace, got)
    assert np.isnan(rule.numpy(np.array([np.nan, 1.0])))[0]


@pytest.mark.parametrize("cell, recurrent", [("lru", "'h_re': ..., 'h_im': ..."), ("sru", "'c': ..."), ("s6", "'s': ...")])
def test_an_h0_array_for_an_output_state_never_read_back_is_warned_about(cell, recurrent):
    """``h0=array`` sets the output state's initial value; where the cell never reads that state back it
    changes nothing, and the user is told which states to pass instead (a zero array, or an LSTM's h0, no)."""
    import warnings

    m = sr.Model(cell, D=3, H=4, K=2)
    p, x, y = m.init_params(seed=0), np.ones((3, 2, 3)), np.zeros((3, 2), dtype=int)
    size = m.state_size(m.out)
    with pytest.warns(UserWarning, match=rf"never reads back .* h0=\{{{recurrent}\}}") as caught:
        loss = m.loss_and_grads(p, x, y, h0=np.ones((2, size)))[0]
    assert caught[0].filename == __file__  # the user's line
    assert loss == m.loss_and_grads(p, x, y)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.loss_and_grads(p, x, y, h0=np.zeros((2, size)))
        lstm = sr.Model("lstm", D=3, H=4, K=2)
        lstm.loss_and_grads(lstm.init_params(), x, y, h0=np.ones((2, 4)))
