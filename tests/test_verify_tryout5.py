"""A new user's verifier findings (tryout 5), each reproduced in the user's style: relu'(0) = 1 named
as a convention at the kink (not a missing derivative), float32 work inside float64 code, a transposed
square gradient, the sLSTM's n-path localisation, a gradient that is not an array, warnings of the
verifier's own arithmetic, the table's error and tolerance at one entry, half-precision PyTorch code
found, np.logaddexp traced, and the layout advice for a minGRU in the x @ W layout."""
import warnings

import numpy as np
import pytest

import symrnn.verify as V
from symrnn.errors import UserCodeError


# -- 1: relu'(0) = 1 is a convention at the kink ---------------------------------------------------
def simple_rnn(act=np.tanh, local=lambda a, s: 1 - s ** 2, returns=lambda *grads: grads, cast=None,
               forward_cast=None, message=1.0, leak=0.0):
    """A CS231n-style RNN ``h_t = leak h_{t-1} + (1 - leak) act(x_t Wx + h_{t-1} Wh + b)`` whose backward
    multiplies by ``local(a, act(a))``, act's derivative; ``returns`` rearranges what the backward
    returns ``(dx, dh0, dWx, dWh, db)``; ``cast`` (a function of an array) is applied to the backward's
    local gradient and ``forward_cast`` to the forward's pre-activation (float32 work inside float64
    code); the message sent back from the last step is scaled by ``message``."""
    def rnn_forward(x, h0, Wx, Wh, b):
        h, cache, prev = np.zeros((x.shape[0], x.shape[1], h0.shape[1])), [], h0
        for t in range(x.shape[1]):
            a = x[:, t] @ Wx + prev @ Wh + b
            a = a if forward_cast is None else forward_cast(a)
            s = act(a)
            cache.append((x[:, t], prev, a, s))
            prev = h[:, t] = leak * prev + (1 - leak) * s if leak else s
        return h, (cache, Wx, Wh)

    def rnn_backward(dh, cache):
        steps, Wx, Wh = cache
        dx = np.zeros(dh.shape[:2] + (Wx.shape[0],))
        dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0]), np.zeros_like(dh[:, 0])
        for t in reversed(range(dh.shape[1])):
            x, prev, a, s = steps[t]
            g = dh[:, t] + carry
            da = (1 - leak) * g * local(a, s)
            da = da if cast is None else cast(da)
            dx[:, t] = da @ Wx.T
            dWx, dWh, db = dWx + x.T @ da, dWh + prev.T @ da, db + da.sum(0)
            carry = (leak * g + da @ Wh.T) * (message if t == dh.shape[1] - 1 else 1.0)
        return returns(dx, carry, dWx, dWh, db)
    return rnn_forward, rnn_backward


def relu_rnn(mask):
    """A relu RNN whose backward multiplies by ``mask(a)``: relu's derivative."""
    return simple_rnn(lambda a: np.maximum(a, 0), lambda a, h: mask(a))


@pytest.mark.parametrize("mask, value", [(lambda a: a >= 0, "1"), (lambda a: np.heaviside(a, 0.5), "1/2")])
def test_relu_derivative_one_at_zero_is_a_kink_convention(mask, value):
    """The search draws an all-zero case, where relu' = 1 at 0 differs from symrnn's 0: it was named
    'relu-derivative-missing'; it is another convention at a point where relu has no derivative."""
    result = V.verify_layer(*relu_rnn(mask), cell="rnn-relu", layout="cs231n", search=200)
    assert not result.ok and result.fingerprint is None, str(result)
    assert result.verdict().startswith(f"DIFFERS ONLY AT A KINK: relu'(0) = {value} in h[t]"), result.verdict()
    summary = result.summary()
    assert "symrnn takes relu'(0) = 0" in summary and "exactly 0" in summary and "(a > 0)" in summary, summary
    assert result.to_json()["explanation"]["kind"] == "kink"
    assert "relu-derivative-missing" not in str(result)


def test_relu_missing_derivative_is_still_named():
    result = V.verify_layer(*relu_rnn(lambda a: 1.0), cell="rnn-relu", layout="cs231n", search=200)
    assert result.explanation is None and result.fingerprint.name == "relu-derivative-missing", str(result)


def test_relu_mask_as_pytorch_passes_the_search():
    assert V.verify_layer(*relu_rnn(lambda a: a > 0), cell="rnn-relu", layout="cs231n", search=200).ok


# -- 8: a gradient that is not an array ------------------------------------------------------------
@pytest.mark.parametrize("returns, said", [
    (lambda dx, dh0, dWx, dWh, db: (dx, dh0, dWx, dWh, "db"), "The gradient db returned by rnn_backward(...) is a "
                                                              "str ('db'), not an array of numbers; expected a "
                                                              "floating-point array of shape (4,)"),
    (lambda dx, dh0, dWx, dWh, db: (dx, None, dWx, dWh, db), "The gradient dh0 returned by rnn_backward(...) is None, "
                                                             "not an array of numbers; expected a floating-point array "
                                                             "of shape (3, 4)"),
    (lambda dx, dh0, dWx, dWh, db: (dx, dh0, {"W": dWx}, dWh, db), "The gradient dWx returned by rnn_backward(...) is "
                                                                   "a dict, not an array of numbers; expected a "
                                                                   "floating-point array of shape (3, 4)"),
    (lambda dx, dh0, dWx, dWh, db: (dx, dh0, dWx, dWh, np.array(["b"] * 4)), "The gradient db returned by "
                                                                             "rnn_backward(...) is an array of <U1, "
                                                                             "not an array of numbers")])
def test_a_gradient_that_is_not_an_array_is_said_so(returns, said):
    """Was "A gradient the user's code returned has the wrong shape: b has dtype <U2"."""
    with pytest.raises(UserCodeError) as info:
        V.verify_layer(*simple_rnn(returns=returns), cell="rnn-tanh", layout="cs231n")
    assert said in str(info.value) and "wrong shape" not in str(info.value), str(info.value)


# -- 3: float32 work inside float64 code -----------------------------------------------------------
def through_float32(a):
    return a.astype(np.float32).astype(np.float64)


def test_a_float64_backward_computing_in_float32_is_said_to_be_float32_rounding():
    """The forward is exact to float64, the backward rounds its local derivative to float32: was
    "WRONG ... dL/dh from t=6 to t=5 is the first wrong backward message"."""
    result = V.verify_layer(*simple_rnn(cast=through_float32), cell="rnn-tanh", layout="cs231n")
    assert not result.ok and result.fingerprint is None, str(result)
    assert result.verdict().startswith("DIFFERS ONLY BY float32 ROUNDING"), result.verdict()
    assert "errors are at float32 level" in result.summary() and "computes in float32" in result.summary()
    assert result.localisation.get("step") is None and "message" not in str(result.localisation), str(result)
    assert result.to_json()["explanation"]["kind"] == "precision"


def test_a_wrong_message_in_float32_code_is_not_called_rounding():
    result = V.verify_layer(*simple_rnn(cast=through_float32, message=1.01), cell="rnn-tanh", layout="cs231n")
    assert not result.ok and result.explanation is None, str(result)


def test_float64_arrays_computed_in_float32_are_right_to_float32_only():
    """Forward and backward round to float32 and return float64 arrays: judged as float32 code (as
    before), and the verdict now says so instead of a plain RIGHT."""
    result = V.verify_layer(*simple_rnn(cast=through_float32, forward_cast=through_float32), cell="rnn-tanh",
                            layout="cs231n")
    assert result.ok and result.dtype_model.computed_in == "float32", str(result)
    assert result.verdict().startswith("RIGHT TO float32 ONLY: rnn-tanh layer code computes in float32"), \
        result.verdict()
    assert "right to float32 precision only" in result.summary()


# -- 6: a square gradient returned transposed ------------------------------------------------------
def test_a_transposed_square_gradient_is_named():
    """dWh.T for an H x H recurrent weight: was "WRONG: dWh" with no name."""
    transposed = simple_rnn(returns=lambda dx, dh0, dWx, dWh, db: (dx, dh0, dWx, dWh.T, db))
    result = V.verify_layer(*transposed, cell=None)
    assert not result.ok and result.fingerprint.name == "gradient-transposed", str(result)
    assert "the gradient of Wh is transposed" in result.summary() and "dWh.T" in result.summary()
    assert [g.name for g in result.wrong] == ["dWh"]


def test_a_wrong_square_gradient_that_is_not_its_transpose_is_not_called_transposed():
    scaled = simple_rnn(returns=lambda dx, dh0, dWx, dWh, db: (dx, dh0, dWx, dWh.T * 1.01, db))
    result = V.verify_layer(*scaled, cell=None)
    assert not result.ok and (result.fingerprint is None or result.fingerprint.name != "gradient-transposed")


# -- 2: the sLSTM's n message dropped at one step ---------------------------------------------------
def test_an_slstm_n_message_dropped_at_one_step_is_placed_and_named():
    """Was "dL/d(state) from t=6 to t=5 ...; at t=8 the gate block(s) ibar, fbar receive a wrong
    gradient": n and m's messages reach the same gates, so the state was not named, and the step of
    the blocks was the probe's last."""
    torch = pytest.importorskip("torch")
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from corpus_torch import slstm

    from symrnn.verify import verify_framework

    torch.manual_seed(0)
    result = verify_framework(slstm.make("n-message-zeroed-at-6"), None)
    loc = result.localisation
    assert not result.ok and loc["path"] == "n" and loc["step"] == 6, str(result)
    assert "dL/dn from t=6 to t=5 is the first wrong backward message;" in loc["message"]
    assert "it arrives as zero (dropped at that step)" in loc["message"]
    assert "at t=5 the gate block(s) itilde, ftilde receive a wrong gradient" in loc["message"], loc["message"]
    assert "(state)" not in str(result)


# -- 10: the table's error and tolerance are those of one entry -----------------------------------
def test_the_error_shown_beside_a_tolerance_is_that_entrys():
    """The table showed the largest error of any entry beside the tolerance of the worst entry (largest
    error/tolerance): two entries on one row."""
    from symrnn.verify import judge as J

    exact = np.array([1.0, 1e-6])
    g = J.judge_array("db", exact + [1e-3, 1e-9], exact, np.array([1.0, 1e-12]))
    assert g.worst_index == (1,) and g.tolerance == 1e-12 and not g.ok
    assert np.isclose(g.worst_error, 1e-9) and g.max_abs_error == pytest.approx(1e-3)
    off = simple_rnn(returns=lambda dx, dh0, dWx, dWh, db: (dx, dh0, dWx, dWh, db + [1e-3, 0, 0, 1e-9]))
    result = V.verify_layer(*off, cell="rnn-tanh", layout="cs231n")
    row = next(line for line in str(result).splitlines() if line.strip().startswith("db "))
    db = next(g for g in result.gradients if g.name == "db")
    assert f"{db.worst_error:11.3e} {db.tolerance:11.3e}" in row, row
    assert db.worst_error == pytest.approx(abs(db.user_value - db.exact_value))
    assert "error and tolerance at each gradient's worst entry" in str(result)


# -- 4: PyTorch code in half precision is found without --cell --------------------------------------
@pytest.mark.parametrize("module, name, cell", [("rnn", "RNNFunction", "rnn-tanh"), ("gru", "GRUFunction", "gru"),
                                                ("lstm", "LSTMFunction", "lstm")])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_autograd_functions_are_found_without_a_cell(module, name, cell, dtype):
    """Was "computes no built-in cell, and tracing its graph of one step failed": the forward was
    matched to 1e-4, which half precision does not reach."""
    pytest.importorskip("torch")
    import importlib
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from symrnn.verify import verify_framework

    code = getattr(importlib.import_module(f"corpus_torch.{module}"), name)
    result = verify_framework(code, None, dtype=dtype)
    assert result.ok and result.cell == cell and result.dtype_model.name == dtype, str(result)


def test_a_gross_mistake_in_half_precision_is_still_caught_once_found():
    pytest.importorskip("torch")
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from corpus_torch import gru

    from symrnn.verify import verify_framework

    result = verify_framework(gru.make("update-sigmoid-derivative-missing"), None, dtype="float16")
    assert not result.ok and result.cell == "gru" and result.forward.ok, str(result)


# -- 9: the verifier's own arithmetic does not warn -------------------------------------------------
def test_only_the_users_code_warns():
    """tanh' taken at the pre-activation, T=300, weights up to 3: the user's backward overflows, and so
    do the catalogue's sweeps tried against it; the user saw RuntimeWarnings from
    symrnn/verify/mutants.py beside their own."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from corpus import cs231n_rnn

    ns = cs231n_rnn.make("act_deriv_at_preact")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = V.verify_layer(ns.rnn_forward, ns.rnn_backward, "rnn-tanh", "cs231n", T=300, scale=3.0)
    assert not result.ok, str(result)
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if os.sep + "symrnn" + os.sep in w.filename]
    assert not ours, ours
    assert any("cs231n_rnn" in w.filename for w in caught)  # the user's own warnings are left alone


# -- 5: np.logaddexp is traced ----------------------------------------------------------------------
def leaky_sigmoid_rnn(local=lambda a, s: s * (1 - s)):
    """``h_t = h_{t-1}/2 + sigmoid(x_t Wx + h_{t-1} Wh + b)/2``, no built-in cell, with sigmoid written
    stably as ``exp(-logaddexp(0, -u))``; ``local`` is sigmoid's derivative from its output."""
    return simple_rnn(lambda a: np.exp(-np.logaddexp(0, -a)), local, leak=0.5)


def test_a_sigmoid_written_with_logaddexp_is_traced():
    """Was "could not be run on symbols: TypeError: ufunc 'logaddexp' not supported"."""
    result = V.verify_layer(*leaky_sigmoid_rnn(), cell=None)
    assert result.ok and result.cell == "traced" and "softplus" in result.found, str(result)
    wrong = V.verify_layer(*leaky_sigmoid_rnn(lambda a, s: s), cell=None)
    assert not wrong.ok and wrong.forward.ok, str(wrong)


# -- 7: a CS231n-style minGRU (x @ Wx, no recurrent weight) ---------------------------------------
def cs231n_mingru(local=lambda z: z * (1 - z)):
    """minGRU (Feng et al. 2024) as CS231n writes layers: ``a = x_t @ Wx + b`` with ``Wx`` ``(D, 2H)``
    stacking the gates z and h~, ``h_t = (1 - z) h_{t-1} + z h~``; ``local`` is sigmoid's derivative."""
    def mingru_forward(x, h0, Wx, b):
        H = h0.shape[1]
        h, cache, prev = np.zeros((x.shape[0], x.shape[1], H)), [], h0
        for t in range(x.shape[1]):
            a = x[:, t] @ Wx + b
            z, ht = 1 / (1 + np.exp(-a[:, :H])), a[:, H:]
            cache.append((x[:, t], prev, z, ht))
            prev = h[:, t] = (1 - z) * prev + z * ht
        return h, (cache, Wx)

    def mingru_backward(dh, cache):
        steps, Wx = cache
        dx, dWx, db = np.zeros(dh.shape[:2] + (Wx.shape[0],)), np.zeros_like(Wx), np.zeros(Wx.shape[1])
        carry = np.zeros_like(dh[:, 0])
        for t in reversed(range(dh.shape[1])):
            x, prev, z, ht = steps[t]
            g = dh[:, t] + carry
            da = np.concatenate([g * (ht - prev) * local(z), g * z], axis=1)
            dx[:, t] = da @ Wx.T
            dWx, db = dWx + x.T @ da, db + da.sum(0)
            carry = g * (1 - z)
        return dx, carry, dWx, db
    return mingru_forward, mingru_backward


def test_a_cs231n_style_mingru_is_found_and_verified():
    """Was "are not input weights, recurrent weights and a bias (Wx, Wh, b or W, b): give --cell and
    --layout", and with --cell min-gru --layout cs231n "A layout stacks a cell's weights gate by gate
    ... name them so, or convert the parameters yourself": each piece of advice led to the other."""
    for cell, layout in ((None, None), ("min-gru", None), ("min-gru", "cs231n")):
        result = V.verify_layer(*cs231n_mingru(), cell=cell, layout=layout)
        assert result.ok and result.cell == "min-gru" and "x W (row convention), gates z h" in result.found, \
            (cell, layout, str(result))
    wrong = V.verify_layer(*cs231n_mingru(lambda z: z), cell=None)
    assert not wrong.ok and wrong.fingerprint.name == "sigmoid-derivative-as-output", str(wrong)


def test_a_mingru_declared_as_a_cell_with_a_recurrent_weight_is_told_so():
    from symrnn.verify.trace import TracingError

    with pytest.raises(TracingError, match="takes no recurrent weight .* but 'lstm' has one: leave out --cell"):
        V.verify_layer(*cs231n_mingru(), cell="lstm", layout="auto")  # the CLI's --cell lstm
    with pytest.raises(TracingError, match="as layout 'pytorch' lays them out .column convention"):
        V.verify_layer(*cs231n_mingru(), cell="min-gru", layout="pytorch")
