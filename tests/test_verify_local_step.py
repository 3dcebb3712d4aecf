"""A mistake in one middle step's local derivative is placed at that step, as a local derivative (with
its gate block), while a wrong backward message at a middle step is still placed as that message
(tryout 4, F3: the message probe used to report the local mistake one step later, as a message)."""
import numpy as np

import symrnn.verify as V


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def rnn_forward(x, h0, Wx, Wh, b):
    hs, h = [], h0
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ Wx + h @ Wh + b)
        hs.append(h)
    hs = np.stack(hs, 1)
    return hs, (x, h0, Wx, Wh, hs)


def rnn_backward_with(local_at=None, message_at=None, arriving_at=None, no_dx_at=None):
    """A CS231n rnn_backward; tanh' left out at step index ``local_at``, the message that step index
    ``message_at`` sends back scaled by 1.01, or all that arrives at step index ``arriving_at`` (the
    message and the upstream gradient) scaled by 1.01, or dx of step index ``no_dx_at`` left at 0
    (indices from 0)."""
    def rnn_backward(dh, cache):
        x, h0, Wx, Wh, hs = cache
        dx, dWx, dWh, db = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0])
        carry = np.zeros_like(h0)
        for t in reversed(range(dh.shape[1])):
            g = (dh[:, t] + carry) * (1.01 if t == arriving_at else 1.0)
            da = g if t == local_at else g * (1 - hs[:, t] ** 2)
            hp = h0 if t == 0 else hs[:, t - 1]
            dx[:, t], dWx, dWh, db = da @ Wx.T, dWx + x[:, t].T @ da, dWh + hp.T @ da, db + da.sum(0)
            dx[:, t] *= 0.0 if t == no_dx_at else 1.0
            carry = da @ Wh.T * (1.01 if t == message_at else 1.0)
        return dx, carry, dWx, dWh, db
    return rnn_backward


def test_rnn_adjoint_scaled_as_a_whole_at_a_middle_step_is_the_message_into_it():
    """Upstream plus message scaled at step index 4: not a gate's local derivative (every block at t=5
    is 1.01 times the exact one), reported as the message into t=5, as the framework corpora expect."""
    result = V.verify_layer(rnn_forward, rnn_backward_with(arriving_at=4), "rnn-tanh", "cs231n")
    loc = result.localisation
    assert not result.ok and loc["step"] == 6 and loc["path"] == "h", str(result)
    assert "dL/dh from t=6 to t=5 is the first wrong backward message" in loc["message"], loc
    assert "every gate block at t=5 is 1.01 times the exact one" in loc["message"], loc


def test_rnn_input_gradient_dropped_at_a_middle_step_is_local_there():
    """dx of step index 4 left at 0 (the message it sends back is right): every block at t=5 is 0 times
    the exact one, but the steps before are right, so not an adjoint dropped as a whole."""
    result = V.verify_layer(rnn_forward, rnn_backward_with(no_dx_at=4), "rnn-tanh", "cs231n")
    loc = result.localisation
    assert not result.ok and [g.name for g in result.wrong] == ["dx"] and loc["step"] == 5, str(result)
    assert "a local derivative at t=5 is wrong, not a message" in loc["message"], loc


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    hs, c, prev, steps = np.zeros((N, T, H)), np.zeros((N, H)), h0, []
    for t in range(T):
        a = x[:, t] @ Wx + prev @ Wh + b
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
        c_prev, c = c, f * c + i * g
        prev = o * np.tanh(c)
        hs[:, t] = prev
        steps.append((x[:, t], hs[:, t - 1] if t else h0, c_prev, c, i, f, o, g))
    return hs, (steps, Wx, Wh)


def lstm_backward_with(local_at=None, message_at=None):
    """A CS231n lstm_backward; the forget gate's sigmoid' left out at step index ``local_at``, or the
    cell-state message that step index ``message_at`` sends back scaled by 1.01."""
    def lstm_backward(dh, cache):
        steps, Wx, Wh = cache
        N, T, H = dh.shape
        dx, dWx, dWh, db = np.zeros((N, T, Wx.shape[0])), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
        dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
        for t in reversed(range(T)):
            x, h_prev, c_prev, c, i, f, o, g = steps[t]
            dh_t = dh[:, t] + dh_next
            dc = dc_next + dh_t * o * (1 - np.tanh(c) ** 2)
            df = dc * c_prev * (1.0 if t == local_at else f * (1 - f))
            da = np.hstack((dc * g * i * (1 - i), df, dh_t * np.tanh(c) * o * (1 - o), dc * i * (1 - g ** 2)))
            dx[:, t], dWx, dWh, db = da @ Wx.T, dWx + x.T @ da, dWh + h_prev.T @ da, db + da.sum(axis=0)
            dh_next, dc_next = da @ Wh.T, dc * f * (1.01 if t == message_at else 1.0)
        return dx, dh_next, dWx, dWh, db
    return lstm_backward


def test_the_correct_layers_pass():
    assert V.verify_layer(rnn_forward, rnn_backward_with(), "rnn-tanh", "cs231n").ok
    assert V.verify_layer(lstm_forward, lstm_backward_with(), "lstm", "cs231n").ok


def test_rnn_tanh_derivative_left_out_at_step_4_only_is_local_at_step_4():
    result = V.verify_layer(rnn_forward, rnn_backward_with(local_at=3), "rnn-tanh", "cs231n")
    loc = result.localisation
    assert not result.ok and loc["step"] == 4, str(result)
    assert "a local derivative at t=4 is wrong, not a message" in loc["message"], loc
    assert "first wrong backward message" not in result.summary(), str(result)
    assert result.minimal["T"] == 4  # the smallest failing case ends at the step named


def test_rnn_message_scaled_at_a_middle_step_is_still_that_message():
    """Step index 4 sends back 1.01 times the exact message: dL/dh from t=5 to t=4 counting from 1."""
    result = V.verify_layer(rnn_forward, rnn_backward_with(message_at=4), "rnn-tanh", "cs231n")
    loc = result.localisation
    assert not result.ok and loc["step"] == 5 and loc["path"] == "h", str(result)
    assert "dL/dh from t=5 to t=4 is the first wrong backward message" in loc["message"], loc
    assert "local derivative" not in loc["message"]


def test_lstm_forget_gate_derivative_wrong_at_step_5_only_is_local_in_gate_f():
    result = V.verify_layer(lstm_forward, lstm_backward_with(local_at=4), "lstm", "cs231n")
    loc = result.localisation
    assert not result.ok and loc["step"] == 5 and loc["block"] == "f" and loc["path"] is None, str(result)
    assert "a local derivative at t=5 is wrong, not a message" in loc["message"], loc
    assert "at t=5 the gate block(s) f receive a wrong gradient, i, g, o a right one" in loc["message"], loc


def test_lstm_cell_state_message_scaled_at_a_middle_step_is_still_that_message():
    result = V.verify_layer(lstm_forward, lstm_backward_with(message_at=4), "lstm", "cs231n")
    loc = result.localisation
    assert not result.ok and loc["step"] == 5 and loc["path"] == "c" and loc["block"] == "i,f,g", str(result)
    assert "dL/dc from t=5 to t=4 is the first wrong backward message; dL/dh is right" in loc["message"], loc
