"""The verifier on hand-written NumPy layers of the recurrent cells of today (tests/corpus_today),
written in symrnn's names (layout ``NATIVE``, parameters and gradients as dicts): correct code
passes, every planted mistake (a dropped normaliser path, a missing stabiliser subtraction, a
dropped decay or peephole path, a wrong gate derivative) is caught and localised to a gate block
or a backward message and a step, and a backward written another correct way (sLSTM with its
stabiliser detached) raises no false alarm."""
import numpy as np
import pytest

import symrnn as sr
import symrnn.verify as V
from corpus_today import BUGS, CORRECT_VARIANTS, make
from symrnn.errors import ParameterError, UserCodeError
from symrnn.models.layouts import NATIVE

SIGNATURE = V.Signature(("x", "h0", "params"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "grads"))
WITH_C = V.Signature(("x", "h0", "c0", "params"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "dc0", "grads"))

#: where each planted mistake must be localised: (gate blocks named, or the backward message's path)
WHERE = {
    ("min-gru", "gate-derivative-as-output"): ("block", "z"),
    ("min-gru", "decay-path-dropped"): ("path", "h"),
    ("min-lstm", "normalisation-dropped"): ("block", "f,i"),
    ("indrnn", "recurrent-weight-missing"): ("path", "h"),
    ("indrnn", "recurrent-vector-summed-over-units"): ("gradient", "dw"),
    ("sru", "highway-gate-sign"): ("block", "r"),
    ("sru", "c-to-gate-path-dropped"): ("path", "c"),
    ("slstm", "normaliser-path-dropped"): ("block", "itilde,ftilde"),
    ("slstm", "stabiliser-subtraction-missing"): ("block", "itilde"),
}


def verify(cell, bug=None, **options):
    forward, backward = make(cell, bug)
    return V.verify_layer(forward, backward, sr.builtin_cell(cell), NATIVE,
                          signature=WITH_C if cell == "sru" else SIGNATURE, **options)


@pytest.mark.parametrize("cell", sorted(BUGS))
def test_correct_layers_pass(cell):
    result = verify(cell)
    assert result.ok, str(result)


@pytest.mark.parametrize("cell, bug", [(c, b) for c, bugs in CORRECT_VARIANTS.items() for b in bugs])
def test_correct_variants_raise_no_false_alarm(cell, bug):
    """sLSTM's h_t does not depend on m_t (t >= 1): a backward that detaches the stabiliser is exact."""
    for scale in (None, 0.3, 1.0):
        result = verify(cell, bug, scale=scale, seed=3)
        assert result.ok, str(result)


def test_detached_stabiliser_at_large_weights_is_judged_exact():
    """With c0 = n0 = 0 the exact dL/db_i is 0 (a common shift of every ibar cancels in c_t / n_t); the
    detached backward sums larger terms that cancel and returns 4e-16 of rounding there. The error
    model's scale of cancelling sums adds each step's chain-rule terms by their absolute values, so
    this is no false alarm (it was one, with a tolerance of 1.7e-17)."""
    result = verify("slstm", "m-detached", scale=2.0, seed=3)
    assert result.ok, str(result)


@pytest.mark.parametrize("cell, bug", sorted(WHERE))
def test_every_planted_bug_is_caught_and_localised(cell, bug):
    result = verify(cell, bug)
    assert not result.ok and result.forward.ok, f"{cell} with {bug} passed:\n{result}"
    assert result.wrong and all(g.max_abs_error > g.tolerance for g in result.wrong)
    key, value = WHERE[cell, bug]
    assert result.localisation[key] == value, str(result)
    if key != "gradient":
        assert result.localisation["step"] == 8, str(result)  # the last step of T=8: the first one the sweep meets


def test_the_planted_bugs_are_the_catalogued_ones():
    assert {(c, b) for c, bugs in BUGS.items() for b in bugs} == set(WHERE)


def test_the_sigmoid_derivative_mistake_is_named():
    result = verify("min-gru", "gate-derivative-as-output")
    assert result.fingerprint is not None and result.fingerprint.name == "sigmoid-derivative-as-output"
    assert "z[t] (the update gate)" in str(result)


def test_a_wrong_stabiliser_in_the_forward_is_a_forward_mistake():
    """Forgetting to subtract m_t in i'_t changes h_t: the forward check says so."""
    forward, backward = make("slstm")

    def forward_without_subtraction(x, h0, p):
        h = h0
        c = n = m = np.zeros_like(h0)
        hs = []
        for xt in x:
            pre = {k: xt @ p[f"U_{k}"].T + p[f"b_{k}"] + h @ p[f"W_{k}"].T for k in "zifo"}
            logf = -np.logaddexp(0.0, -pre["f"])
            m_new = np.maximum(logf + m, pre["i"])
            ip, fp = np.exp(pre["i"]), np.exp(logf + m - m_new)  # the mistake: exp(ibar), not exp(ibar - m)
            c, n, m = fp * c + ip * np.tanh(pre["z"]), fp * n + ip, m_new
            h = (0.5 * np.tanh(0.5 * pre["o"]) + 0.5) * c / n
            hs.append(h)
        return np.stack(hs), forward(x, h0, p)[1]
    result = V.verify_layer(forward_without_subtraction, backward, sr.builtin_cell("slstm"), NATIVE,
                            signature=SIGNATURE)
    assert not result.ok and not result.forward.ok, str(result)


def test_native_layout_refuses_missing_and_misshapen_gradients():
    forward, backward = make("indrnn")

    def drops_w(dh, cache):
        dx, dh0, g = backward(dh, cache)
        return dx, dh0, {k: v for k, v in g.items() if k != "w"}

    def transposes_u(dh, cache):
        dx, dh0, g = backward(dh, cache)
        return dx, dh0, {**g, "U": g["U"].T}
    cell = sr.builtin_cell("indrnn")
    with pytest.raises(UserCodeError, match=r"missing \['w'\]"):
        V.verify_layer(forward, drops_w, cell, NATIVE, signature=SIGNATURE, D=3, H=4)
    with pytest.raises(UserCodeError, match=r"U has shape \(3, 4\); expected \(4, 3\)"):
        V.verify_layer(forward, transposes_u, cell, NATIVE, signature=SIGNATURE, D=3, H=4)
    with pytest.raises(ParameterError, match="expected a dict keyed by symrnn's names"):
        NATIVE.from_user(cell, [1, 2], {"D": 3, "H": 4, "K": None})
