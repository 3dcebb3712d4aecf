"""Gaps a new user hit (issue 19, item 5): the data roles ``c0`` and ``ignored`` in loss mode, zero
initial states in layer mode, layout names spelled as the projects spell them, and three more
catalogued mistakes (a bias averaged over the batch alone, a backward over the last k steps only,
a local derivative missing at one step only)."""
import numpy as np
import pytest

import symrnn.verify as V
from corpus import cs231n_lstm
from symrnn.errors import UnknownNameError


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_loss(params, x, h0, c0, y, ignored=None):
    """A CS231n-layout LSTM (gates i, f, o, g) with a squared-error readout, taking c0; returns dc0 too."""
    Wx, Wh, b, V_, c_ = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    N, T, _ = x.shape
    H = h0.shape[1]
    hs, cs, gates, prev_h, prev_c = [], [], [], h0, c0
    for t in range(T):
        a = x[:, t] @ Wx + prev_h @ Wh + b
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
        c = f * prev_c + i * g
        h = o * np.tanh(c)
        gates.append((i, f, o, g))
        hs.append(h)
        cs.append(c)
        prev_h, prev_c = h, c
    hs = np.stack(hs, 1)
    out = hs @ V_ + c_
    loss = float(np.sum((out - y) ** 2))
    dout = 2 * (out - y)
    grads = {"W_vocab": np.einsum("nth,ntk->hk", hs, dout), "b_vocab": dout.sum(axis=(0, 1))}
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)
    dhs = dout @ V_.T
    for t in reversed(range(T)):
        i, f, o, g = gates[t]
        c, c_prev = cs[t], (cs[t - 1] if t else c0)
        h_prev = hs[:, t - 1] if t else h0
        dh = dhs[:, t] + dh_next
        tc = np.tanh(c)
        dc = dc_next + dh * o * (1 - tc ** 2)
        da = np.hstack((dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dh * tc * o * (1 - o), dc * i * (1 - g ** 2)))
        dWx += x[:, t].T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        dh_next, dc_next = da @ Wh.T, dc * f
    grads.update(Wx=dWx, Wh=dWh, b=db)
    return loss, grads, dc_next


LOSS_SIGNATURE = V.Signature(("params", "x", "h0", "c0", "y", "ignored"), ("loss", "grads", "dc0"))


def test_loss_mode_takes_c0_and_ignored_and_judges_dc0():
    result = V.verify_loss(lstm_loss, "lstm", "cs231n", loss="mse", signature=LOSS_SIGNATURE)
    assert result.ok, str(result)
    assert "dc0" in [g.name for g in result.gradients]


def test_loss_mode_dc0_wrong_is_caught():
    def wrong(*args):
        loss, grads, dc0 = lstm_loss(*args)
        return loss, grads, 0.5 * dc0
    result = V.verify_loss(wrong, "lstm", "cs231n", loss="mse", signature=LOSS_SIGNATURE)
    assert not result.ok and [g.name for g in result.wrong] == ["dc0"], str(result)


def test_c0_for_a_cell_without_c_is_refused():
    with pytest.raises(UnknownNameError, match="has no state 'c'"):
        V.verify_loss(lstm_loss, "rnn-tanh", "cs231n", loss="mse", signature=LOSS_SIGNATURE)


def lstm_forward_from_zero(x, Wx, Wh, b):
    """A layer that starts from h0 = c0 = 0: it takes no initial state."""
    N, _, _ = x.shape
    H = Wh.shape[0]
    return cs231n_lstm.lstm_forward(x, np.zeros((N, H)), Wx, Wh, b)


def test_layer_mode_declares_a_zero_h0():
    backward = cs231n_lstm.make().lstm_backward
    signature = V.Signature(("x", "Wx", "Wh", "b"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "dWx", "dWh", "db"))
    result = V.verify_layer(lstm_forward_from_zero, backward, "lstm", "cs231n", signature=signature)
    assert result.ok, str(result)
    explicit = V.verify_layer(cs231n_lstm.lstm_forward, backward, "lstm", "cs231n", zero_states=("h0",))
    assert explicit.ok, str(explicit)
    with pytest.raises(UnknownNameError, match="name no initial state"):
        V.verify_layer(cs231n_lstm.lstm_forward, backward, "lstm", "cs231n", zero_states=("q0",))


@pytest.mark.parametrize("spelling", ["min-char-rnn", "minchar", "MIN-CHAR-RNN"])
def test_min_char_rnn_is_accepted_under_both_names(spelling):
    from corpus import minchar_rnn
    result = V.verify_loss(minchar_rnn.lossFun, "rnn-tanh", spelling, H=5, K=4, module=minchar_rnn)
    assert result.ok and result.layout == "minchar", str(result)


def test_an_unknown_layout_is_refused_with_the_list():
    with pytest.raises(UnknownNameError, match=r"Unknown layout 'tensorflow-2'; presets: \['cs231n'"):
        V.verify_loss(lstm_loss, "lstm", "tensorflow-2", signature=LOSS_SIGNATURE)
    with pytest.raises(UnknownNameError, match="Unknown layout 'nope'"):
        V.verify_layer(cs231n_lstm.lstm_forward, cs231n_lstm.lstm_backward, "lstm", "nope")


# -- three more fingerprints ---------------------------------------------------------------------
def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, prev, steps = np.zeros((N, T, h0.shape[1])), h0, []
    for t in range(T):
        nxt = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        steps.append((x[:, t], prev, nxt))
        h[:, t] = prev = nxt
    return h, (steps, Wx, Wh)


def rnn_backward_with(mistake):
    def rnn_backward(dh, cache):
        steps, Wx, Wh = cache
        N, T, H = dh.shape
        dx, dWx, dWh, db = np.zeros((N, T, Wx.shape[0])), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
        carry = np.zeros((N, H))
        loop = range(T - 3, T) if mistake == "last-3" and T > 3 else range(T)
        for t in reversed(loop):
            x, prev, h = steps[t]
            local = 1.0 if mistake == "skip-last" and t == T - 1 else 1 - h ** 2
            da = (dh[:, t] + carry) * local
            dx[:, t] = da @ Wx.T
            dWx += x.T @ da
            dWh += prev.T @ da
            db += da.sum(axis=0)
            carry = da @ Wh.T
        return dx, carry, dWx, dWh, db / N if mistake == "bias-mean" else db
    return rnn_backward


@pytest.mark.parametrize("mistake, name, wrong", [
    ("bias-mean", "bias-averaged-over-batch", ["db"]),
    ("last-3", "backward-over-last-3-steps", None),
    ("skip-last", "tanh-derivative-missing-at-last-step", None),
])
def test_new_fingerprints(mistake, name, wrong):
    result = V.verify_layer(rnn_forward, rnn_backward_with(mistake), "rnn-tanh", "cs231n")
    assert not result.ok and result.fingerprint is not None and result.fingerprint.name == name, str(result)
    if wrong is not None:
        assert [g.name for g in result.wrong] == wrong
    assert name in result.verdict() and len(result.verdict()) <= 100


def test_the_correct_backward_matches_no_new_fingerprint():
    assert V.verify_layer(rnn_forward, rnn_backward_with(None), "rnn-tanh", "cs231n").ok


# -- a user's cell with its own gate names, under a preset or a declared layout ----------------------------
def minimal_gated_unit():
    import symrnn as sr

    cell = sr.Cell("mgu")
    x, h = cell.input(), cell.state("h")
    U_f, W_f, b_f = cell.param("U_f", "H", "D"), cell.param("W_f", "H", "H"), cell.param("b_f", "H")
    U_n, W_n, b_n = cell.param("U_n", "H", "D"), cell.param("W_n", "H", "H"), cell.param("b_n", "H")
    f = cell.let("f", sr.sigmoid(U_f @ x + W_f @ h + b_f))
    n = cell.let("n", sr.tanh(U_n @ x + W_n @ (f * h) + b_n))
    cell.update(h, (1 - f) * h + f * n)
    return cell


def mgu_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    H = h0.shape[1]
    h, hs, steps = h0, [], []
    for t in range(T):
        ax = x[:, t] @ Wx
        f = sigmoid(ax[:, :H] + h @ Wh[:, :H] + b[:H])
        n = np.tanh(ax[:, H:] + (f * h) @ Wh[:, H:] + b[H:])
        steps.append((x[:, t], h, f, n))
        h = (1 - f) * h + f * n
        hs.append(h)
    return np.stack(hs, 1), (steps, Wx, Wh)


def mgu_backward(dh, cache, mistake=None):
    steps, Wx, Wh = cache
    N, T, H = dh.shape
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(2 * H)
    dx, carry = np.zeros((N, T, Wx.shape[0])), np.zeros((N, H))
    for t in reversed(range(T)):
        x, hp, f, n = steps[t]
        g = dh[:, t] + carry
        dn = g * f * (1 - n ** 2)
        dfh = dn @ Wh[:, H:].T
        df = (g * (n - hp) + dfh * hp) * (f if mistake == "sigmoid-as-output" else f * (1 - f))
        da = np.hstack([df, dn])
        dWx += x.T @ da
        dWh[:, :H] += hp.T @ df
        dWh[:, H:] += (f * hp).T @ dn
        db += da.sum(axis=0)
        dx[:, t] = da @ Wx.T
        carry = g * (1 - f) + dfh * f + df @ Wh[:, :H].T
    return dx, carry, dWx, dWh, db


def test_a_user_cell_with_its_own_gate_names_works_with_any_layout():
    from symrnn.models.layouts import Layout

    cell = minimal_gated_unit()
    mine = Layout("mine", {"Wx": "Wx", "Wh": "Wh", "b": "b"}, gate_order=("f", "n"), convention="row",
                  batch_major=True)
    for layout in (mine, "cs231n"):  # a preset takes the cell's own gates, in its order
        result = V.verify_layer(mgu_forward, mgu_backward, cell, layout)
        assert result.ok, str(result)
    wrong = V.verify_layer(mgu_forward, lambda dh, cache: mgu_backward(dh, cache, "sigmoid-as-output"), cell, mine)
    assert not wrong.ok and wrong.fingerprint is not None and wrong.fingerprint.name == "sigmoid-derivative-as-output"
    assert wrong.localisation["block"] == "f", str(wrong)
    with pytest.raises(UnknownNameError, match=r"stacks the gates \('n', 'f', 'x'\)"):
        V.verify_layer(mgu_forward, mgu_backward, cell, Layout("bad", mine.names, gate_order=("n", "f", "x"),
                                                               convention="row", batch_major=True))


def token_mean_rnn_loss(params, x, h0, y, mask, gradient_divisor=None):
    """A CS231n-style RNN loss with a token-mean reduction; ``gradient_divisor(N, T, mask)`` other than
    the number of scored tokens normalises the gradients differently from the loss."""
    Wx, Wh, b, Wv, bv = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    N, T, _ = x.shape
    h, prev = np.zeros((N, T, Wh.shape[0])), h0
    for t in range(T):
        prev = h[:, t] = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
    s = h @ Wv + bv
    p = np.exp(s - s.max(2, keepdims=True))
    p /= p.sum(2, keepdims=True)
    n, tt = np.indices((N, T))
    loss = -(np.log(p[n, tt, y]) * mask).sum() / mask.sum()
    ds = p.copy()
    ds[n, tt, y] -= 1
    ds *= mask[..., None] / (gradient_divisor(N, T, mask) if gradient_divisor else mask.sum())
    grads = {"W_vocab": np.einsum("nth,ntk->hk", h, ds), "b_vocab": ds.sum((0, 1))}
    dh = ds @ Wv.T
    dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        dWx += x[:, t].T @ da
        dWh += (h0 if t == 0 else h[:, t - 1]).T @ da
        db += da.sum(0)
        carry = da @ Wh.T
    grads.update(Wx=dWx, Wh=dWh, b=db, h0=carry)
    return loss, grads


def test_gradients_normalised_otherwise_than_the_loss_are_not_blamed_on_a_step():
    """Found by a new user: gradients divided by N*T where the loss divides by the scored tokens are
    all off by one factor per case; the report says so and points at no step."""
    common = dict(reduction="token-mean", mask=True, D=3, H=5, K=4)
    assert V.verify_loss(token_mean_rnn_loss, "rnn-tanh", "cs231n", **common).ok
    wrong = V.verify_loss(lambda *a: token_mean_rnn_loss(*a, gradient_divisor=lambda N, T, m: N * T),
                          "rnn-tanh", "cs231n", **common)
    assert not wrong.ok and "times one factor" in str(wrong), str(wrong)
    assert "step" not in wrong.verdict() and "step" not in wrong.localisation, wrong.verdict()
