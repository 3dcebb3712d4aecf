"""No false alarm on correct code written with other-but-equal floating-point formulas (issue 19).

Every implementation of tests/corpus_alt (each proven correct by tests/test_corpus_alt.py, against
PyTorch autograd and central differences) is run through symrnn.verify at weight scales from tiny
to saturating, lengths T = 1 to 200, with and without ``search=``, and must come out right.  The
same corpus, with one backward message scaled by 1.01 or 1.001, must still be caught.

These tests document the verifier's false alarms: where one fails, the verifier's error model does
not cover a legitimate formulation.  Do not loosen them to make them pass.
"""
import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import symrnn.verify as V
from corpus_alt import IMPLEMENTATIONS, NAMES

SCALES = (0.01, 0.1, 1.0, 2.0, 3.0, 4.0)
LENGTHS = (1, 8, 50)
LONG = 200
# T = 200 for one implementation of each kind (cell, mode, dtype) and every hand-written activation
LONG_NAMES = ("rnn_exp_clip", "rnn_sigmoid2", "rnn_exp_stable_cosh", "rnn_fsum", "rnn_loss_exp_logsumexp",
              "rnn32_plain", "rnn32_exp_stable", "lstm_logaddexp", "lstm_stable_branches_preact", "lstm_concat_xh",
              "lstm_loss_sigtanh", "lstm32_plain", "lstm_torch_layout", "gru_torch_exp_preact", "gru_keras_concat",
              "gru_torch32", "gru_keras32")
SEARCH_NAMES = ("rnn_exp_clip", "rnn_sigmoid2", "rnn_exp_stable_cosh", "lstm_logaddexp", "lstm_stable_branches_preact",
                "rnn_loss_concat_einsum", "rnn32_exp_stable", "gru_torch_exp_preact")


def verify(name, *, T=8, scale=None, seed=0, search=0, backward=None):
    """symrnn.verify on implementation `name`, driven by the constants it declares."""
    mod = IMPLEMENTATIONS[name]
    signature = V.Signature(*mod.SIGNATURE) if mod.SIGNATURE else None
    common = dict(scale=scale, seed=seed, signature=signature)
    if mod.MODE == "step":  # one step: no length, no search
        return V.verify_step(getattr(mod, mod.FORWARD), getattr(mod, mod.BACKWARD), mod.CELL, mod.LAYOUT, **common)
    lengths = () if T <= 3 else (1, 2, 3)
    if mod.MODE == "loss":
        return V.verify_loss(getattr(mod, mod.LOSS), mod.CELL, mod.LAYOUT, T=T, lengths=lengths, search=search,
                             **mod.LOSS_OPTIONS, **common)
    return V.verify_layer(getattr(mod, mod.FORWARD), backward or getattr(mod, mod.BACKWARD), mod.CELL, mod.LAYOUT,
                          T=T, lengths=lengths, search=search, **common)


def false_alarm(name, result, **settings_):
    """The assertion message: which gradient, by how much past its tolerance, and the report."""
    wrong = ", ".join(f"{g.name} (error/tolerance {g.max_abs_error / g.tolerance:.3g})" for g in result.wrong)
    return f"FALSE ALARM on correct code {name} {settings_}: {wrong or 'forward'}\n{result}"


def _layer_like(name):
    return IMPLEMENTATIONS[name].MODE != "step"


# -- the grid: every implementation, every scale, T = 1, 8, 50 (step mode: one case per scale) ------------
GRID = [(name, scale, T) for name in NAMES for scale in SCALES
        for T in (LENGTHS if _layer_like(name) else (1,))]


@pytest.mark.parametrize("name, scale, T", GRID)
def test_no_false_alarm(name, scale, T):
    result = verify(name, T=T, scale=scale)
    assert result.ok, false_alarm(name, result, scale=scale, T=T)


@pytest.mark.parametrize("name, scale", [(n, s) for n in LONG_NAMES for s in SCALES])
def test_no_false_alarm_long(name, scale):
    result = verify(name, T=LONG, scale=scale)
    assert result.ok, false_alarm(name, result, scale=scale, T=LONG)


@pytest.mark.parametrize("name, scale, T", [(n, s, T) for n in SEARCH_NAMES for s, T in ((None, 8), (0.1, 30), (3.0, 30))])
def test_no_false_alarm_with_search(name, scale, T):
    result = verify(name, T=T, scale=scale, search=20)
    assert result.ok, false_alarm(name, result, T=T, scale=scale, search=20)


@pytest.mark.parametrize("name", ["rnn_exp_clip", "rnn_sigmoid2"])
def test_the_issue_19_cases(name):
    """The two reports of issue 19: tanh by exp with search=50, 2*sigmoid(2a)-1 at scale 3."""
    result = verify(name, search=50) if name == "rnn_exp_clip" else verify(name, scale=3.0)
    assert result.ok, false_alarm(name, result)


# -- Hypothesis: any implementation, scale, length and seed ------------------------------------------------
LAYER_LIKE = [n for n in NAMES if _layer_like(n)]


# Each example is a whole verifier run (which shrinks its own failing case); Hypothesis's shrinking
# would rerun it hundreds of times, so it is skipped: the first failing example is reported as drawn.
@settings(phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(LAYER_LIKE), scale=st.floats(0.01, 4.0), T=st.integers(1, 200),
       seed=st.integers(0, 2**31 - 1))
def test_no_false_alarm_anywhere(name, scale, T, seed):
    result = verify(name, T=T, scale=scale, seed=seed)
    assert result.ok, false_alarm(name, result, scale=scale, T=T, seed=seed)


@settings(phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from([n for n in NAMES if not _layer_like(n)]), scale=st.floats(0.01, 4.0),
       seed=st.integers(0, 2**31 - 1))
def test_no_false_alarm_anywhere_step(name, scale, seed):
    result = verify(name, scale=scale, seed=seed)
    assert result.ok, false_alarm(name, result, scale=scale, seed=seed)


# -- and the verifier still catches small errors -------------------------------------------------------
def planted(name, step, factor):
    """The correct backward with the dL/dh message from step `step` to `step` - 1 scaled by `factor`."""
    mod = IMPLEMENTATIONS[name]
    return functools.partial(getattr(mod, mod.BACKWARD), plant=(step, factor))


@pytest.mark.parametrize("name, T, step, factor", [
    ("rnn_exp_clip", 40, 20, 1.01), ("rnn_exp_clip", 50, 25, 1.001),
    ("lstm_sigmoid_via_tanh", 40, 20, 1.01), ("lstm_sigmoid_via_tanh", 50, 25, 1.001),
    ("rnn32_plain", 40, 20, 1.01), ("lstm32_plain", 40, 20, 1.01),
])
def test_a_small_error_in_one_message_is_caught(name, T, step, factor):
    right = verify(name, T=T)
    wrong = verify(name, T=T, backward=planted(name, step, factor))
    assert right.ok, false_alarm(name, right, T=T)
    assert not wrong.ok and wrong.forward.ok, f"{name}: the message {step}->{step - 1} x {factor} passed:\n{wrong}"
    assert {"dWh", "dh0"} & {g.name for g in wrong.wrong}, str(wrong)
