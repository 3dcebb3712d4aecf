"""tryout6's rough edges left by vfix and vfix2 (notes/tryout6.md, 9e, 9g, 9h, 9b): a gradient that
is not finite is shown and said to be so, step mode names its own gradients, a bidirectional
backward direction whose dx is not reversed in time is named, and a forget bias added inside the
forward is found by the search of conventions."""
import numpy as np
import pytest

import symrnn.verify as V


def poisoned_rnn(poison=None):
    """CS231n's tanh RNN (the corpus's) whose backward returns NaN in every gradient where a step's
    upstream gradient is all zero (as a per-step clip g / ||g|| does: 0 / 0), or ``poison="inf"``: inf
    in db[1]."""
    from corpus import cs231n_rnn

    def rnn_backward(dh, cache):
        dx, dh0, dWx, dWh, db = cs231n_rnn.rnn_backward(dh, cache)
        if poison == "nan" and not np.all(np.any(dh != 0, axis=(0, 2))):
            dx, dh0, dWx, dWh, db = (a * np.nan for a in (dx, dh0, dWx, dWh, db))
        if poison == "inf":
            db = db.copy()
            db[1] = np.inf
        return dx, dh0, dWx, dWh, db
    return cs231n_rnn.rnn_forward, rnn_backward


def test_nan_gradients_are_shown_as_nan_and_said_not_finite():
    result = V.verify_layer(*poisoned_rnn("nan"), "rnn-tanh", "cs231n")
    assert not result.ok
    bad = [g for g in result.gradients if g.name == "dWx"][0]
    assert np.isnan(bad.user_norm), "a NaN gradient's norm was shown as a number"
    assert bad.not_finite > 0 and bad.first_not_finite == (0, 0)
    report = str(result)
    assert "0.0000e+00" not in report.split("\n\n")[1].split("\n")[2], report
    assert "dWx (not finite)" in result.verdict()
    summary = result.summary()
    assert "not finite" in summary and "dWx (NaN in" in summary and "first at dWx[0, 0]" in summary, summary
    assert result.to_json()["gradients"][0]["not_finite"] > 0


def test_an_inf_gradient_is_shown_as_inf_with_its_entry():
    result = V.verify_layer(*poisoned_rnn("inf"), "rnn-tanh", "cs231n")
    assert not result.ok
    db = [g for g in result.gradients if g.name == "db"][0]
    assert db.user_norm == np.inf and db.not_finite == 1 and db.first_not_finite == (1,)
    assert [g.name for g in result.wrong] == ["db"]
    assert "db (inf in 1 of 4 entries" in result.summary() and "first at db[1]" in result.summary(), result.summary()


def test_a_forward_that_is_not_finite_is_said_so_in_the_verdict():
    forward, backward = poisoned_rnn()

    def nan_forward(x, h0, Wx, Wh, b):
        h, cache = forward(x, h0, Wx, Wh, b)
        h = h.copy()
        h[:, 3:] = np.nan
        return h, cache
    result = V.verify_layer(nan_forward, backward, "rnn-tanh", "cs231n")
    assert not result.ok and not result.forward.ok
    assert result.verdict().startswith("FORWARD DIFFERS: rnn-tanh layer code's forward is not finite (h at step 4)"), \
        result.verdict()


def test_step_mode_names_the_steps_own_gradients():
    from corpus import cs231n_lstm

    right = V.verify_step(cs231n_lstm.lstm_step_forward, cs231n_lstm.make().lstm_step_backward, "lstm", "cs231n")
    assert right.ok and {"dx", "dprev_h", "dprev_c"} <= {g.name for g in right.gradients}, str(right)
    wrong = cs231n_lstm.make("cell_path_dropped")
    found = V.verify_step(wrong.lstm_step_forward, wrong.lstm_step_backward, cell=None, layout=None)
    assert not found.ok and "dprev_c" in found.verdict() and "dc0" not in str(found), str(found)


def bigru_loss(dx="right"):
    """A bidirectional GRU (merge sum) + nn.Linear + summed cross-entropy, written with one nn.GRU per
    direction, the backward one reading x reversed; returns dL/dx and dL/dh0 too. ``dx``: ``"right"``,
    ``"bwd-not-reversed"`` (the backward direction's dx left in its own time order), ``"fwd-reversed"``,
    ``"scaled"`` (the backward direction's dx 1% too large: no time order explains it)."""
    import torch

    def loss(params, x, h0, y):
        D, H = x.shape[2], h0.shape[2]
        leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        xs = [torch.tensor(x, requires_grad=True), torch.tensor(x[::-1].copy(), requires_grad=True)]
        h0t = torch.tensor(h0, requires_grad=True)
        outs = []
        for d, suffix in enumerate(("", "_reverse")):
            gru = torch.nn.GRU(D, H).double()
            own = {k: leaves[k + "_l0" + suffix] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            own = {k + "_l0": v for k, v in own.items()}
            outs.append(torch.func.functional_call(gru, own, (xs[d], h0t[d:d + 1]))[0])
        logits = (outs[0] + outs[1].flip(0)) @ leaves["weight"].T + leaves["bias"]
        value = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.tensor(y).reshape(-1),
                                                  reduction="sum")
        value.backward()
        grads = {k: v.grad.numpy().copy() for k, v in leaves.items()}
        fwd, bwd = xs[0].grad.numpy(), xs[1].grad.numpy()
        grads["x"] = {"right": fwd + bwd[::-1], "bwd-not-reversed": fwd + bwd, "fwd-reversed": fwd[::-1] + bwd[::-1],
                      "scaled": fwd + 1.01 * bwd[::-1]}[dx]
        grads["h0"] = h0t.grad.numpy().copy()
        return float(value.detach()), grads
    return loss


@pytest.mark.parametrize("dx", ["right", "bwd-not-reversed", "fwd-reversed", "scaled"])
def test_a_direction_whose_dx_is_in_the_wrong_time_order_is_named(dx):
    result = V.verify_loss(bigru_loss(dx), "gru", "pytorch", bidirectional=True, merge="sum")
    assert result.ok == (dx == "right"), str(result)
    if dx == "right":
        return
    assert [g.name for g in result.wrong] == ["dx"], str(result)
    named = result.fingerprint.name if result.fingerprint is not None else None
    expected = {"bwd-not-reversed": "backward-direction-dx-not-reversed",
                "fwd-reversed": "forward-direction-dx-reversed", "scaled": None}[dx]
    assert named == expected, str(result)
    if expected:
        assert "time" in result.summary() and "local derivative" not in str(result), str(result)


def forget_biased_forward(bias=1.0):
    """CS231n's LSTM forward (gates i, f, o, g) computing ``f = sigmoid(a_f + bias)`` (TF1, Jozefowicz)."""
    from corpus import cs231n_lstm

    def lstm_forward(x, h0, Wx, Wh, b):
        H = h0.shape[1]
        return cs231n_lstm.lstm_forward(x, h0, Wx, Wh, b + np.r_[np.zeros(H), np.full(H, bias), np.zeros(2 * H)])
    return lstm_forward


@pytest.mark.parametrize("bug", [None, "sigmoid_deriv_missing_gate"])
def test_a_forget_bias_added_inside_the_forward_is_found(bug):
    from corpus import cs231n_lstm

    result = V.verify_layer(forget_biased_forward(), cs231n_lstm.make(bug).lstm_backward, cell=None, layout=None)
    assert "a forget bias 1 added" in result.found, result.found
    assert result.ok == (bug is None), str(result)


def test_a_forget_bias_the_search_does_not_try_is_not_claimed():
    from corpus import cs231n_lstm

    with pytest.raises(Exception, match="no built-in cell"):
        V.verify_layer(forget_biased_forward(0.3), cs231n_lstm.make().lstm_backward, cell=None, layout=None)


def per_gate_mingru(bug=None):
    """minGRU in CS231n's style with one array per gate: ``z = sigmoid(x Wz + bz)``, the candidate
    ``x Wh + bh`` (``Wh`` is an input weight here: minGRU has no recurrent one); ``bug="dbz"``: the
    bias gradient of z without sigmoid'."""
    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    def mingru_forward(x, h0, Wz, bz, Wh, bh):
        hs, h = [], h0
        for t in range(x.shape[1]):
            z, cand = sigmoid(x[:, t] @ Wz + bz), x[:, t] @ Wh + bh
            h = (1 - z) * h + z * cand
            hs.append(h)
        return np.stack(hs, 1), (x, h0, Wz, bz, Wh, bh, np.stack(hs, 1))

    def mingru_backward(dh, cache):
        x, h0, Wz, bz, Wh, bh, hs = cache
        grads = [np.zeros_like(a) for a in (Wz, bz, Wh, bh)]
        dx, carry = np.zeros_like(x), np.zeros_like(h0)
        for t in reversed(range(x.shape[1])):
            prev = hs[:, t - 1] if t > 0 else h0
            z, cand = sigmoid(x[:, t] @ Wz + bz), x[:, t] @ Wh + bh
            g = dh[:, t] + carry
            daz = g * (cand - prev) * (z * (1 - z) if bug != "dbz" else 1)
            dcand = g * z
            dx[:, t] = daz @ Wz.T + dcand @ Wh.T
            for k, v in enumerate((x[:, t].T @ daz, daz.sum(0), x[:, t].T @ dcand, dcand.sum(0))):
                grads[k] += v
            carry = g * (1 - z)
        return (dx, carry, *grads)
    return mingru_forward, mingru_backward


@pytest.mark.parametrize("bug", [None, "dbz"])
def test_a_mingru_with_one_array_per_gate_is_found(bug):
    result = V.verify_layer(*per_gate_mingru(bug), cell=None, layout=None)
    assert "min-gru" in result.found and "one array per gate" in result.found, result.found
    assert result.ok == (bug is None), str(result)
    if bug:
        assert "dWz" in result.verdict() and "dWh" not in result.verdict(), str(result)


def test_a_step_taking_one_array_per_gate_is_told_to_go_through_its_layer():
    from symrnn.errors import UnknownNameError

    def mingru_step_forward(x, prev_h, Wz, bz, Wh, bh):
        z = 1 / (1 + np.exp(-(x @ Wz + bz)))
        h = (1 - z) * prev_h + z * (x @ Wh + bh)
        return h, (x, prev_h, z)

    with pytest.raises(UnknownNameError, match="one array per gate"):
        V.verify_step(mingru_step_forward, lambda dh, cache: None, cell=None, layout=None)
