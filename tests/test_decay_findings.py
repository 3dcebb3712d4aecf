"""Findings of a new user in the decay study (issue 22, F7): the slope of a product that became exactly
zero, and the papers' initialisations of the LRU (Orvieto et al. 2023) and S6 (Gu and Dao 2023),
judged by their exponents' closed forms (``ln|lambda|``; S6: the time averages of ``Delta_t A``)."""
from __future__ import annotations

import numpy as np
import pytest

import symrnn as sr
from symrnn.decay import decay_profile, make_params
from symrnn.decay.weights import LRU_MAX_PHASE, LRU_RING, S6_DT


def test_a_product_that_becomes_zero_has_slope_minus_inf():
    """IndRNN with relu units that each turn off at some step: the product is exactly zero, lambda_1 is
    -inf and the norm curve's slope is -inf too (it was nan)."""
    from symrnn.decay import sweep
    from symrnn.decay.report import rates_table

    result = sweep(["indrnn"], [1.0], seeds=[0], H=4, T=500, grad_T=0, max_workers=1, progress=False)
    (row,) = rates_table(result)
    assert row["top_exponent_mean"] == -np.inf and row["norm_slope"] == -np.inf
    (_, profile, _), = result.rows()
    assert profile.log_spectral[-1] == -np.inf


def test_lru_paper_init_puts_lambda_on_the_ring():
    model = sr.Model("lru", D=3, H=500, loss="upstream")
    p = make_params(model, "paper", seed=0)
    r, phase = np.exp(-np.exp(p["nu"])), np.exp(p["theta"])
    assert LRU_RING[0] <= r.min() and r.max() <= LRU_RING[1] and 0 <= phase.min() and phase.max() <= LRU_MAX_PHASE
    # uniform on the ring's area: |lambda|^2 uniform between the radii squared (mean in the middle)
    assert np.mean(r ** 2) == pytest.approx(0.5 * (LRU_RING[0] ** 2 + LRU_RING[1] ** 2), abs=0.01)
    assert np.std(p["B_re"]) == pytest.approx(1 / np.sqrt(2 * 3), rel=0.1)


def test_lru_paper_init_exponents_are_log_abs_lambda():
    """Readout C = 0: the exponents are ln|lambda_k| twice (a 2x2 block |lambda| times a rotation), to
    rounding once the frame has met the blocks (radii 0.968 and 0.997: a gap of 0.03 over the 1000
    uncounted steps)."""
    model = sr.Model("lru", D=2, H=2, loss="upstream")
    p = make_params(model, "paper", seed=0)
    p["C_re"][:], p["C_im"][:] = 0.0, 0.0
    prof = decay_profile(model, p, 20000, k=4, curve=False)
    expected = np.sort(np.repeat(np.log(np.exp(-np.exp(p["nu"]))), 2))[::-1]
    assert np.allclose(prof.exponents, expected, rtol=1e-12, atol=0), (prof.exponents, expected)


def test_s6_paper_init():
    model = sr.Model("s6", D=3, H=400, loss="upstream")  # N = 2 states per channel
    p = make_params(model, "paper", seed=0)
    assert np.array_equal(p["A_log"].reshape(400, 2), np.tile(np.log([1.0, 2.0]), (400, 1)))
    dt = np.logaddexp(0.0, p["b_dt"])
    assert S6_DT[0] <= dt.min() and dt.max() <= S6_DT[1]
    assert np.mean(np.log(dt)) == pytest.approx(np.mean(np.log(S6_DT)), abs=0.15)  # log-uniform


def test_s6_paper_init_exponents_are_the_averages_of_delta_a():
    """``W_C = 0``: ``J_t = diag(exp(Delta_t A))``, the exponents the sorted time averages of
    ``Delta_{t,c} A_{c,n}`` with ``A = -(1, 2)`` in both channels (the frame meets the axes at the
    smallest gap, 0.0096 here: 1e-11 after 20000 steps)."""
    T = 20000
    model = sr.Model("s6", D=2, H=2, loss="upstream")
    p = make_params(model, "paper", seed=2)
    p["W_C"][:] = 0.0
    x = np.random.default_rng(2).normal(size=(T, 1, 2))
    prof = decay_profile(model, p, T, k=4, inputs=x, curve=False)
    delta = np.logaddexp(0.0, (x[:, 0] @ p["W_u"].T) @ p["W_dt"].T + p["b_dt"])
    log_a = (delta[..., None] * -np.arange(1.0, 3.0)).reshape(T, -1)
    expected = np.sort(log_a[T - prof.exponent_steps:].mean(axis=0))[::-1]
    assert np.allclose(prof.exponents, expected, rtol=1e-10, atol=0), (prof.exponents, expected)


def test_paper_init_of_a_cell_without_one_warns():
    model = sr.Model("lstm", D=2, H=3, loss="upstream")
    with pytest.warns(RuntimeWarning, match="no paper initialisation"):
        p = make_params(model, "paper", seed=0)
    assert all(np.array_equal(p[n], v) for n, v in make_params(model, "pytorch", seed=0).items())


@pytest.mark.parametrize("cell, unread", [("sru", "h"), ("lru", "out")])
def test_states_never_read_have_exponents_minus_inf(cell, unread):
    """SRU's ``h`` and the LRU's ``out`` are never read by the update: their directions are a null space
    of every step Jacobian and their exponents are -inf (they came out near ln(1e-16) = -37, F6); the
    finite exponents are the frame's, as before, and a note says why."""
    model = sr.Model(cell, D=3, H=3, loss="upstream")
    p = make_params(model, "pytorch", seed=0)
    prof = decay_profile(model, p, 600, k=None, curve=False)
    n = model.sizes[model.cell.states[unread]]
    S = prof.state_size
    assert np.all(prof.exponents[S - n:] == -np.inf)
    assert np.all(np.isfinite(prof.exponents[:S - n])) and prof.exponents[S - n - 1] > -20
    assert any("never reads" in note for note in prof.notes)


def test_the_command_line_takes_the_paper_initialisation(tmp_path):
    """``symrnn decay --init paper`` (the CLI's choices lacked it), at ``D != H``: the LRU's exponent is on
    its ring (the sweep counted every state as H wide and the gradient by lag sized its upstream by H,
    so the LRU's output of size D was refused)."""
    import json

    from symrnn import cli

    assert cli.main(["decay", "--cells", "lru", "--init", "paper", "--H", "4", "--D", "2", "--T", "100",
                     "--seeds", "1", "--scales", "1", "--out", str(tmp_path)]) == 0
    rates = json.loads((tmp_path / "summary.json").read_text())["rates"]
    assert rates[0]["state_size"] == 2 * 4 + 2
    assert np.log(0.999) >= rates[0]["top_exponent_mean"] >= np.log(0.9)
