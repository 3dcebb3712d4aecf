"""The generated gradients against the unrolled scalar SymPy program (1e-12 relative)."""
import numpy as np
import pytest
from hypothesis import event, given, settings

import symrnn as sr
from symrnn.checks import max_error
from symrnn.errors import DerivationTooLargeError
from symrnn.oracles import ScalarOracle
from exactness import assert_as_exact_as_float64_allows
from strategies import problems

_ORACLES = {}


def oracle_for(model, T_in, T_out):
    key = (id(model), T_in, T_out)
    if key not in _ORACLES:
        _ORACLES[key] = ScalarOracle(model, T_in, T_out)
    return _ORACLES[key]


@settings(max_examples=60)
@given(problems())
def test_generated_gradients_match_scalar_oracle(problem):
    model, params, x, y, h0 = problem
    loss, grads = model.loss_and_grads(params, x, y, h0=h0)
    oracle = oracle_for(model, x.shape[0], y.shape[0])
    ref_loss, ref = oracle.loss_and_grads(params, x, y, h0=h0)
    assert abs(loss - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    assert set(grads) == set(ref)
    err, where = max_error(grads, ref)
    if err > 1e-12:  # float64 cannot settle it on an ill-conditioned problem: the exact gradient does
        event("arbitrated by the 40-digit scalar oracle")
        assert_as_exact_as_float64_allows(model, params, x, y, h0, grads, {}, oracle=oracle)


def test_oracle_catches_a_planted_error():
    """The comparison fails when one gradient is off by a little (the test can fail)."""
    model = sr.Model("rnn-tanh", D=2, H=3, K=2)
    params = model.init_params(0)
    x = np.random.default_rng(0).normal(size=(12, 1, 2))
    y = np.zeros((12, 1), dtype=int)
    _, grads = model.loss_and_grads(params, x, y)
    _, ref = ScalarOracle(model, 12, 12).loss_and_grads(params, x, y)
    grads["W"][0, 0] *= 1 + 1e-9
    assert max_error(grads, ref)[0] > 1e-12


def test_budget_refuses_clearly():
    model = sr.Model("lstm", D=6, H=6, K=6)
    with pytest.raises(DerivationTooLargeError, match="over the budget.*smaller T or H"):
        ScalarOracle(model, 5000, 5000)


def test_expanded_loss_agrees_with_program():
    model = sr.Model("gru", D=1, H=1, K=2)
    oracle = ScalarOracle(model, 2, 2)
    params = model.init_params(3, scale=1.0)
    x = np.array([[[0.3]], [[-0.7]]])
    y = np.array([[1], [0]])
    expanded = oracle.expanded_loss()
    values = {f"{k}__w{'_'.join(map(str, i))}": v for k, a in params.items() for i, v in np.ndenumerate(a)}
    values.update({"x__1_0": 0.3, "x__2_0": -0.7, "h__0_0": 0.0, "_y__0_0": 0, "_y__0_1": 1,
                   "_y__1_0": 1, "_y__1_1": 0, "_scale": 1.0})
    value = float(expanded.subs({s: values[s.name] for s in expanded.free_symbols}))
    assert value == pytest.approx(model.loss(params, x, y), rel=1e-13)


def test_expanded_loss_refuses_large_models():
    oracle = ScalarOracle(sr.Model("lstm", D=2, H=3, K=2), 6, 6)
    with pytest.raises(DerivationTooLargeError, match="tiny models"):
        oracle.expanded_loss(max_ops=2000)
