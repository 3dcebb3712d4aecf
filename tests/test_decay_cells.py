"""The decay study on every cell the model accepts: exponents and norms against an independent route.

The independent route is written here: the step Jacobians by hand (NumPy) for the named cells, by
PyTorch autograd of a forward built from the recipe alone for the fuzzed user cells
(``fuzz_recipes.py``), then a plain QR at every step from the same initial frame
(``decay_profile``'s documented seed ``[seed, 13]``), and running products for the norms.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import sympy as sp
from hypothesis import event, given, note, settings

import symrnn as sr
from symrnn.decay import decay_profile, gradient_by_lag, make_params, sweep, write_report
from symrnn.decay.accumulators import ACCURACY

from fuzz_recipes import build_cell, cells_and_recipes, to_torch

DECAY_FUZZ_EXAMPLES = int(os.environ.get("SYMRNN_DECAY_FUZZ_EXAMPLES", "260"))


def qr_exponents(jacobians, k, seed=0):
    """Exponents by a QR at every step from the frame ``decay_profile`` starts from."""
    S = jacobians[0].shape[0]
    Q = np.linalg.qr(np.random.default_rng([seed, 13]).standard_normal((S, k)))[0]
    total = np.zeros(k)
    with np.errstate(divide="ignore"):
        for J in jacobians:
            Q, R = np.linalg.qr(J @ Q)
            total += np.log(np.abs(np.diagonal(R)))
    return np.sort(total / len(jacobians))[::-1]


def qr_columns(jacobians, k, seed=0):
    """The exponent of each column of the frame (unsorted), and each column's smallest ``|R_ii| / max_j |R_jj|``
    over the steps."""
    S = jacobians[0].shape[0]
    Q = np.linalg.qr(np.random.default_rng([seed, 13]).standard_normal((S, k)))[0]
    total, ratio = np.zeros(k), np.ones(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        for J in jacobians:
            Q, R = np.linalg.qr(J @ Q)
            d = np.abs(np.diagonal(R))
            total += np.log(d)
            ratio = np.minimum(ratio, np.nan_to_num(d / d.max(), nan=0.0))
    return total / len(jacobians), ratio


def log_norms(jacobians):
    """``ln ||J_k ... J_1||_2`` for k = 1 .. T, by plain products rescaled by their largest entry
    (a product keeps the relative accuracy of every entry; the scale is kept as a log)."""
    M, scale, out = np.eye(jacobians[0].shape[0]), 0.0, []
    with np.errstate(divide="ignore"):
        for J in jacobians:
            M = J @ M
            m = np.max(np.abs(M))
            if m > 0:
                M, scale = M / m, scale + np.log(m)
            out.append(scale + np.log(np.linalg.norm(M, 2)))
    return np.array(out)


def plain_cell(name, update):
    """A one-state cell ``h[t] = update(h, U x, W h, b)``."""
    cell = sr.Cell(name)
    x, h = cell.input("x"), cell.state("h")
    U, W, b = cell.param("U", "H", "D"), cell.param("W", "H", "H"), cell.param("b", "H")
    cell.update(h, update(h, U @ x, W @ h, b))
    return cell


LEAKY = (lambda h, Ux, Wh, b: sp.Rational(1, 2) * h + sp.Rational(1, 2) * sp.tanh(Ux + Wh + b),
         lambda p, x, h: (0.5 * h + 0.5 * np.tanh(p["U"] @ x + p["W"] @ h + p["b"]),
                          0.5 * np.eye(len(h)) + 0.5 * (1 - np.tanh(p["U"] @ x + p["W"] @ h + p["b"]) ** 2)[:, None]
                          * p["W"]))
DOUBLED = (lambda h, Ux, Wh, b: sp.tanh(Ux + 2 * Wh + b),
           lambda p, x, h: (np.tanh(p["U"] @ x + 2 * p["W"] @ h + p["b"]),
                            2 * (1 - np.tanh(p["U"] @ x + 2 * p["W"] @ h + p["b"]) ** 2)[:, None] * p["W"]))
SCALED_STATE = (lambda h, Ux, Wh, b: sp.tanh(Ux + b) * 3 - h / 4,
                lambda p, x, h: (3 * np.tanh(p["U"] @ x + p["b"]) - h / 4, -np.eye(len(h)) / 4))


def test_a_matrix_applied_twice():
    """``W @ (W @ h)``: the step Jacobian holds ``W**2`` (SymPy's power of a noncommutative symbol)."""
    cell = sr.Cell("twice")
    x, h = cell.input("x"), cell.state("h")
    U, W = cell.param("U", "H", "D"), cell.param("W", "H", "H")
    cell.update(h, sp.tanh(U @ x + W @ (W @ h)))
    model = sr.Model(cell, D=2, H=3, loss="upstream")
    params = make_params(model, init="normal", seed=0)
    x_ = np.random.default_rng(1).normal(size=(30, 1, 2))
    p = decay_profile(model, params, 30, k=3, inputs=x_, transient=0, lags=range(1, 31))
    states = model.run_cell(params, x_)[2]["S_h"][1:, 0]
    jacobians = [(1 - h ** 2)[:, None] * (params["W"] @ params["W"]) for h in states]
    np.testing.assert_allclose(p.exponents, qr_exponents(jacobians, 3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.log_spectral, log_norms(jacobians), rtol=0, atol=1e-11)
    from symrnn.engine.jacobians import step_jacobians

    J = step_jacobians(model, params, x_)[("h", "h")][:, 0]
    np.testing.assert_allclose(J, np.array(jacobians), rtol=0, atol=1e-14)


@pytest.mark.parametrize("name, cell", [("leaky", LEAKY), ("doubled", DOUBLED), ("scaled_state", SCALED_STATE)])
def test_cells_with_constant_factors(name, cell):
    """0.5 h + 0.5 tanh(.), tanh(U x + 2 W h + b), 3 tanh(.) - h/4: exponents and norms as by hand."""
    update, by_hand = cell
    H, D, T = 5, 3, 60
    model = sr.Model(plain_cell(name, update), D=D, H=H, loss="upstream")
    params = make_params(model, init="normal", scale=1.5, seed=1)
    x = np.random.default_rng(2).normal(size=(T, 1, D))
    h = np.random.default_rng(3).uniform(-1, 1, H)
    p = decay_profile(model, params, T, k=H, inputs=x, h0={"h": h}, transient=0, lags=range(1, T + 1))
    jacobians = []
    for t in range(T):
        h, J = by_hand(params, x[t, 0], h)
        jacobians.append(J)
    np.testing.assert_allclose(p.exponents, qr_exponents(jacobians, H), rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.log_spectral, log_norms(jacobians), rtol=0, atol=1e-11)
    assert p.accuracy["met"] and p.accuracy["sum_identity_error"] < 1e-12


def stateless_cell():
    cell = sr.Cell("stateless")
    x, h = cell.input("x"), cell.state("h")
    U, b = cell.param("U", "H", "D"), cell.param("b", "H")
    cell.update(h, sp.tanh(U @ x + b))
    return cell


def test_stateless_cell_has_a_zero_jacobian_and_says_so(tmp_path):
    model = sr.Model(stateless_cell(), D=2, H=3, loss="upstream")
    params = make_params(model, seed=0)
    p = decay_profile(model, params, 40, k=3)
    assert np.all(p.exponents == -np.inf) and np.all(p.log_spectral == -np.inf)
    assert p.meta["zero_jacobian"] and "never reads the previous state" in p.notes[0]
    g = gradient_by_lag(model, params, np.random.default_rng(0).normal(size=(6, 1, 2)))
    assert np.all(g.gates["h"][1:] == 0) and g.gates["h"][0] > 0  # only the last step reads b and U
    result = sweep([stateless_cell()], [1.0], seeds=[0, 1], H=3, D=2, T=40, grad_T=6, max_workers=1,
                   progress=False)
    text = write_report(result, tmp_path / "r")["markdown"].read_text()
    assert "exact (zero Jacobian)" in text and "never reads the previous state" in text


def test_overflowing_forward_stops_at_its_step_and_the_sweep_goes_on():
    """rnn-relu with normal weights at gain 2: the state grows until it overflows.  The step is the one
    where a plain NumPy forward of the same weights overflows; the data are not blamed."""
    model = sr.Model("rnn-relu", D=4, H=16, loss="upstream")
    params = make_params(model, init="normal", scale=2, seed=0)
    p = decay_profile(model, params, 2000, k=4)
    from symrnn.decay import InputSource

    x = InputSource("random", 2000, 1, 4, seed=0).chunk(0, 2000)
    h = np.zeros(16)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, 2001):
            h = np.maximum(params["U"] @ x[t - 1, 0] + params["W"] @ h + params["b"], 0)
            if not np.isfinite(h).all():
                break
    assert p.overflow == dict(step=t, kind="state", state="h", steps_run=t - 1)
    assert "not a problem of the data" in p.notes[0] and f"at step {t}" in p.notes[0]
    assert np.isfinite(p.exponents).all() and p.exponents[0] > 0  # the last finite estimate
    assert np.isnan(p.log_spectral[p.lags >= t]).all() and np.isfinite(p.log_spectral[p.lags < t - 1]).all()
    result = sweep(["rnn-relu"], [1.0, 2.0], seeds=[0], H=16, D=4, T=2000, k=4, init="normal", grad_T=0,
                   max_workers=1, progress=False)
    from symrnn.decay.report import rates_table

    regimes = {r["scale"]: r for r in rates_table(result)}
    assert regimes[2.0]["regime"] == "exploding (the forward overflowed)" and regimes[2.0]["overflow_steps"] == [t]
    assert regimes[1.0]["overflow_steps"] is None


def test_default_qr_meets_its_accuracy_on_saturated_tanh():
    """tanh with g = 3 (units saturate): the adaptive default against a QR at every step written here,
    and the sum identity checked while it runs."""
    H, D, T = 16, 4, 2000
    model = sr.Model("rnn-tanh", D=D, H=H, loss="upstream")
    params = make_params(model, init="normal", scale=3, seed=0)
    p = decay_profile(model, params, T, k=H, curve=False, transient=0)
    from symrnn.decay import InputSource

    x = InputSource("random", T, 1, D, seed=0).chunk(0, T)
    # g = 3 is chaotic (lambda_1 > 0): a forward of our own would part from the study's after a few hundred
    # steps by rounding alone, so the trajectory is the engine's; the Jacobians and the QR are ours
    states = model.run_cell(params, x)[2]["S_h"][1:, 0]
    jacobians = [(1 - h ** 2)[:, None] * params["W"] for h in states]
    reference = qr_exponents(jacobians, H)
    np.testing.assert_allclose(p.exponents, reference, rtol=0, atol=1e-10)
    assert p.accuracy["met"] and p.accuracy["sum_identity_error"] <= ACCURACY
    assert p.accuracy["intervals_redone"] > 0  # the saturated steps were caught
    logdet = np.mean([np.linalg.slogdet(J)[1] for J in jacobians])
    assert abs(reference.sum() - logdet) < 1e-9  # the identity the accuracy is measured by


# -- fuzzed user cells ---------------------------------------------------------------------------

def torch_jacobians(recipe, model, params, x, h0, torch64):
    """The whole state's step Jacobians by autograd of the recipe's own forward (N = 1)."""
    torch = torch64.torch
    names = list(model.cell.states)
    H = model.sizes["H"]
    P = {k: torch64.tensor(v) for k, v in params.items()}
    width = {"H": H, "D": model.sizes["D"]}

    def step(flat, xt):
        values = {("input",): xt}
        values.update({("prev", s): flat[i * H:(i + 1) * H].reshape(1, H) for i, s in enumerate(names)})
        values.update({("param", k): v for k, v in P.items()})
        for eq in recipe.equations:
            value = to_torch(eq.expr, values, torch) + torch64.zeros(1, width[eq.size])
            values[("let" if eq.kind == "let" else "new", eq.name)] = value
        return torch.cat([values[("new", s)].reshape(-1) for s in names])

    state = torch64.tensor(np.concatenate([h0[s] for s in names]))
    out = []
    for t in range(x.shape[0]):
        xt = torch64.tensor(x[t])
        out.append(torch64.numpy(torch.autograd.functional.jacobian(lambda s: step(s, xt), state)))
        state = step(state, xt).detach()
    return out


@settings(max_examples=DECAY_FUZZ_EXAMPLES, deadline=None)  # about 200 of 260 drawn cells are accepted
@given(case=cells_and_recipes())
def test_fuzzed_user_cells_through_the_decay_study(torch64, case):
    """Every accepted random user cell runs through decay_profile; its whole spectrum and its norms
    equal an independent QR of PyTorch's step Jacobians of the same recipe."""
    note(case.recipe.source())
    pr = case.problem
    try:
        model = sr.Model(build_cell(case.recipe), D=pr.D, H=pr.H, loss="upstream")
    except sr.SymRNNError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("accepted")
    rng = np.random.default_rng(pr.seed)
    sizes = {"D": pr.D, "H": pr.H}
    params = {d.name: rng.uniform(-pr.scale, pr.scale, size=tuple(sizes[s] for s in d.shape))
              for d in case.recipe.params}
    T = 8
    x = rng.normal(size=(T, 1, pr.D))
    h0 = {s: rng.uniform(-1, 1, pr.H) for s in model.cell.states}
    S = len(h0) * pr.H
    p = decay_profile(model, params, T, k=S, inputs=x, h0=h0, transient=0, lags=range(1, T + 1))
    jacobians = torch_jacobians(case.recipe, model, params, x, h0, torch64)
    if p.overflow is not None:  # a derivative infinite at its argument (sqrt at 0, ...): the torch route agrees
        event("stopped: Jacobian not finite")
        assert not np.isfinite(jacobians[p.overflow["step"] - 1]).all()
        return
    assert all(np.isfinite(J).all() for J in jacobians)
    if p.meta.get("zero_jacobian"):
        event("zero Jacobian")
        assert all(not J.any() for J in jacobians)
        return
    columns, ratio = qr_columns(jacobians, S)
    # Column i of the frame is determined in float64 while its R_ii stays well above rounding relative to
    # R_11 at every step (a QR's relative error in R_ii is about eps R_11 / R_ii, in either route); the leading
    # columns that are, are compared (with no such column, the norms below are the check)
    determined = int(np.argmin(np.append(ratio > 1e-6, False)))
    event(f"determined exponents: {'all' if determined == S else 'some' if determined else 'none'}")
    for i in range(determined):
        # the two routes' Jacobians differ by the rounding of differently written derivatives (1e-10, as in
        # test_fuzz_cells), and a QR adds eps R_11 / R_ii
        tol = 1e-9 + 1e-14 / ratio[i]
        assert np.min(np.abs(p.exponents - columns[i])) <= tol, (i, columns[i], p.exponents, tol)
    logdet = np.mean([np.linalg.slogdet(J)[1] for J in jacobians])
    if np.isfinite(logdet) and determined == S:  # the identity the reported accuracy is measured by
        assert abs(np.sum(p.exponents) - logdet) <= 1e-10 * max(1.0, abs(logdet))
    norms = log_norms(jacobians)
    assert np.array_equal(np.isfinite(norms), np.isfinite(p.log_spectral))
    np.testing.assert_allclose(p.log_spectral[np.isfinite(norms)], norms[np.isfinite(norms)], rtol=0, atol=1e-10)


def test_diagonal_recurrent_weights_are_scaled_and_a_cell_without_any_is_warned():
    """Found by a new user: IndRNN's recurrent weight is a vector (a diagonal matrix); the scale and
    the inits apply to it (identity gives w = 1, the IRNN way), and minGRU, which has no recurrent
    weight, says the scale changes nothing instead of giving the same row at every scale."""
    import warnings

    from symrnn.decay.weights import make_params, recurrent_names

    indrnn = sr.Model("indrnn", D=3, H=4, loss="upstream")
    assert recurrent_names(indrnn) == ["w"]
    assert np.array_equal(make_params(indrnn, init="identity", scale=0.7)["w"], np.full(4, 0.7))
    assert np.allclose(make_params(indrnn, scale=2.0)["w"], 2 * make_params(indrnn, scale=1.0)["w"])
    assert np.max(np.abs(make_params(indrnn, init="normal", scale=1.5, scale_by="radius")["w"])) == 1.5
    assert set(recurrent_names(sr.Model("sru", D=3, H=4, loss="upstream"))) == {"v_f", "v_r"}
    with pytest.warns(RuntimeWarning, match="no effect on the cell 'min-gru'"):
        make_params(sr.Model("min-gru", D=3, H=4, loss="upstream"), scale=2.0)
    # an (H, H) matrix of the input's path is not recurrent: S6's W_dt maps the channels to the step sizes
    s6 = sr.Model("s6", D=3, H=4, loss="upstream")
    assert recurrent_names(s6) == []
    with pytest.warns(RuntimeWarning, match="no effect on the cell 's6'"):
        make_params(s6, scale=3.0)
    for cell, names in (("lstm", {"W_i", "W_f", "W_g", "W_o"}), ("gru-reset-before", {"W_r", "W_z", "W_n"})):
        assert set(recurrent_names(sr.Model(cell, D=3, H=4, loss="upstream"))) == names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_params(sr.Model("min-gru", D=3, H=4, loss="upstream"), scale=1.0)  # nothing to say at scale 1
