"""The rough edges tryout7 left (notes/tryout7.md, section 7): ``cell=None`` finds a cell with two stacked
gate blocks (traced) and an LSTM with one weight over ``[h, x]`` whose column bias is shaped against its
row vectors; a bias gradient assigned in the backward loop instead of accumulated is named with its
step; a mask forgotten in a loss-mode backward is named as such."""
import numpy as np
import pytest
import scipy.special
from scipy.special import expit

import symrnn.verify as V
from test_verify_gaps import mgu_backward, mgu_forward


# -- 1a. two stacked gate blocks, CS231n names: a minimal gated unit, traced --------------------------------
def _sigmoid(z):
    return np.exp(-np.logaddexp(0, -z))


def mgu_expit_step_forward(x, prev_h, Wx, Wh, b):
    """test_verify_gaps' minimal gated unit, one step, with SciPy's expit bound by name in this module."""
    H = prev_h.shape[1]
    f = expit(x @ Wx[:, :H] + prev_h @ Wh[:, :H] + b[:H])
    n = np.tanh(x @ Wx[:, H:] + (f * prev_h) @ Wh[:, H:] + b[H:])
    return (1 - f) * prev_h + f * n, (x, prev_h, f, n)


def mgu_expit_forward(x, h0, Wx, Wh, b):
    h, hs, steps = h0, [], []
    for t in range(x.shape[1]):
        h, step = mgu_expit_step_forward(x[:, t], h, Wx, Wh, b)
        hs.append(h)
        steps.append(step)
    return np.stack(hs, 1), (steps, Wx, Wh)


def test_a_two_block_cell_in_cs231n_names_is_found_by_tracing():
    result = V.verify_layer(mgu_forward, mgu_backward, cell=None)
    assert result.ok, str(result)
    assert "gates g0 g1" in result.found and "traced" in result.found


def test_a_two_block_cell_with_scipy_s_expit_is_traced_and_expit_put_back():
    result = V.verify_layer(mgu_expit_forward, mgu_backward, cell=None)
    assert result.ok and "sigmoid" in result.found, str(result)
    assert globals()["expit"] is scipy.special.expit and isinstance(scipy.special.expit, np.ufunc)


def test_a_two_block_cell_s_planted_bugs_are_named():
    wrong = V.verify_layer(mgu_forward, lambda dh, cache: mgu_backward(dh, cache, "sigmoid-as-output"), cell=None)
    assert not wrong.ok and wrong.fingerprint.name == "sigmoid-derivative-as-output", str(wrong)
    assert wrong.localisation["block"] == "g0", wrong.localisation

    def one_block_off(dh, cache):
        dx, dh0, dWx, dWh, db = mgu_backward(dh, cache)
        dWh = dWh.copy()
        dWh[:, :dh.shape[2]] *= 1.01
        return dx, dh0, dWx, dWh, db
    wrong = V.verify_layer(mgu_expit_forward, one_block_off, cell=None)
    assert not wrong.ok and [g.name for g in wrong.wrong] == ["dWh"] and wrong.localisation["block"] == "g0", \
        str(wrong)


def test_a_forward_that_computes_no_two_block_cell_is_refused():
    """A forward that branches on a value is traced in no layout: a clear refusal, not a RIGHT."""
    def forward(x, h0, Wx, Wh, b):
        hs, caches = mgu_forward(x, h0, Wx, Wh, b)
        return np.where(hs > 0.1, hs, 0.5 * hs), caches
    with pytest.raises(Exception) as info:
        V.verify_layer(forward, mgu_backward, cell=None)
    assert "does not reproduce" in str(info.value) or "tracing" in str(info.value), str(info.value)


# -- 1b. an LSTM with one W over [h, x], column convention, gates g o f i, a (4H, 1) bias ----------------
def _lstm_hx_step(z, cp, W, b, H):
    a = (W @ z.T + b).T
    g, o, f, i = np.tanh(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
    c = f * cp + i * g
    return o * np.tanh(c), c, (g, o, f, i)


def lstm_hx_forward(x, h0, W, b):
    return lstm_hx_c0_forward(x, h0, np.zeros_like(h0), W, b)


def lstm_hx_c0_forward(x, h0, c0, W, b):
    H = h0.shape[1]
    hp, cp, hs, cache = h0, c0, [], []
    for t in range(x.shape[0]):
        z = np.concatenate([hp, x[t]], 1)
        hp, c, gates = _lstm_hx_step(z, cp, W, b, H)
        cache.append((z, cp, c) + gates)
        cp = c
        hs.append(hp)
    return np.stack(hs), (cache, W)


def lstm_hx_backward(dh, cache, decay_carry=True):
    steps, W = cache
    T, N, H = dh.shape
    dW, db, dxs = np.zeros_like(W), np.zeros((4 * H, 1)), []
    dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        z, cp, c, g, o, f, i = steps[t]
        tc = np.tanh(c)
        dht = dh[t] + dh_next
        dc = dc_next + dht * o * (1 - tc * tc)
        da = np.concatenate([dc * i * (1 - g * g), dht * tc * o * (1 - o), dc * cp * f * (1 - f),
                             dc * g * i * (1 - i)], 1)
        dW += da.T @ z
        db += da.sum(0)[:, None]
        dz = da @ W
        dh_next, dc_next = dz[:, :H], dc * f if decay_carry else dc
        dxs.append(dz[:, H:])
    return np.stack(dxs[::-1]), dh_next, dW, db, dc_next


def test_an_lstm_over_h_x_with_a_column_bias_is_found():
    result = V.verify_layer(lstm_hx_forward, lambda dh, cache: lstm_hx_backward(dh, cache)[:4], cell=None)
    assert result.ok, str(result)
    text = result.found
    assert "'lstm'" in text and "gates g o f i" in text and "one W over [h, x]" in text and "column bias" in text


def test_an_lstm_over_h_x_with_its_carry_not_decayed_is_wrong():
    result = V.verify_layer(lstm_hx_forward, lambda dh, cache: lstm_hx_backward(dh, cache, False)[:4], cell=None)
    assert not result.ok and "dW" in result.verdict(), str(result)


# -- 2. a bias gradient assigned in the backward loop instead of accumulated -----------------------------
def rnn_forward(x, h0, Wx, Wh, b):
    h, prev = np.zeros((x.shape[0], x.shape[1], h0.shape[1])), h0
    for t in range(x.shape[1]):
        prev = h[:, t] = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache, assign=(), forward_loop=False):
    """CS231n's backward; the gradients named in ``assign`` are assigned (``=``) instead of accumulated, in
    the reversed loop or, with ``forward_loop``, in a second loop forward over time over the stored terms."""
    x, h0, Wx, Wh, h = cache
    N, T, H = dh.shape
    dx, carry, das = np.zeros_like(x), np.zeros((N, H)), [None] * T
    for t in reversed(range(T)):
        das[t] = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        dx[:, t] = das[t] @ Wx.T
        carry = das[t] @ Wh.T
    grads = {"dWx": np.zeros_like(Wx), "dWh": np.zeros_like(Wh), "db": np.zeros(H)}
    for t in (range(T) if forward_loop else reversed(range(T))):
        terms = {"dWx": x[:, t].T @ das[t], "dWh": (h0 if t == 0 else h[:, t - 1]).T @ das[t], "db": das[t].sum(0)}
        for k, term in terms.items():
            grads[k] = term if k in assign else grads[k] + term
    return dx, carry, grads["dWx"], grads["dWh"], grads["db"]


@pytest.mark.parametrize("assign, forward_loop, name", [
    (("db",), False, "bias-assigned-first-step"), (("db",), True, "bias-assigned-last-step"),
    (("dWx", "dWh", "db"), False, "gradients-assigned-first-step")])
def test_a_gradient_assigned_in_the_loop_is_named_with_its_step(assign, forward_loop, name):
    result = V.verify_layer(rnn_forward, lambda dh, cache: rnn_backward(dh, cache, assign, forward_loop), cell=None)
    assert not result.ok and result.fingerprint is not None and result.fingerprint.name == name, str(result)
    step = "step T's term" if forward_loop else "step 1's term"
    assert f"holds only {step}" in str(result), str(result)


def test_the_same_loops_accumulating_are_right():
    for forward_loop in (False, True):
        result = V.verify_layer(rnn_forward, lambda dh, cache: rnn_backward(dh, cache, (), forward_loop), cell=None)
        assert result.ok, str(result)


def test_only_dwx_assigned_is_wrong_but_no_bias_mistake():
    """Assigning dWx alone matches no catalogued group (the bias and every gradient): WRONG dWx, not named
    as a bias mistake."""
    result = V.verify_layer(rnn_forward, lambda dh, cache: rnn_backward(dh, cache, ("dWx",)), cell=None)
    assert not result.ok and "dWx" in result.verdict()
    assert result.fingerprint is None or "assigned" not in result.fingerprint.name, str(result)


@pytest.mark.parametrize("cell, biases", [("lstm", {"b_i", "b_f", "b_g", "b_o"}), ("indrnn", {"b"}),
                                           ("gru", {"b_r", "b_z", "b_n", "b_hn"}), ("sru", {"b_f", "b_r"})])
def test_the_biases_are_the_vector_parameters_only_added(cell, biases):
    """IndRNN's w and SRU's v_f multiply a state: not biases; GRU's b_hn, added inside the reset, is one."""
    import symrnn as sr
    from symrnn.verify.mutants import mutations_for

    model = sr.Model(sr.builtin_cell(cell), D=3, H=2, loss="upstream")
    found = {m.name: m for m in mutations_for(model, 8)}
    assert set(found["bias-assigned-first-step"].only_for) == biases
    assert "gradients-assigned-last-step" in found


# -- 3. loss mode: a mask forgotten in the backward ----------------------------------------------------
def masked_rnn_loss(params, x, h0, y, mask, reduction="mean", bug=None):
    """CS231n's rnn-tanh loss with a softmax readout over the masked steps; ``bug``: ``"mask"`` leaves the
    mask out of the backward (the loss keeps it), ``"carry"`` drops the recurrent message,
    ``"message-halved"`` halves the message each step sends back (to h0 too)."""
    Wx, Wh, b, Wv, bv = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    N, T, _ = x.shape
    mask = np.ones((N, T)) if mask is None else mask
    h, prev = np.zeros((N, T, len(b))), h0
    for t in range(T):
        prev = h[:, t] = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
    s = h @ Wv + bv
    p = np.exp(s - s.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    n, k = np.indices((N, T))
    denom = {"mean": mask.sum(), "sum": 1.0, "batch-mean": N}[reduction]
    loss = -(np.log(p[n, k, y]) * mask).sum() / denom
    ds = p.copy()
    ds[n, k, y] -= 1
    ds *= (1.0 if bug == "mask" else mask[..., None]) / denom
    g = {"W_vocab": np.einsum("ntk,ntv->kv", h, ds), "b_vocab": ds.sum(axis=(0, 1)), "Wx": 0, "Wh": 0, "b": 0}
    dh, carry = ds @ Wv.T, np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + (0 if bug == "carry" else carry)) * (1 - h[:, t] ** 2)
        g["Wx"] = g["Wx"] + x[:, t].T @ da
        g["Wh"] = g["Wh"] + (h0 if t == 0 else h[:, t - 1]).T @ da
        g["b"] = g["b"] + da.sum(axis=0)
        carry = (0.5 if bug == "message-halved" else 1.0) * da @ Wh.T
    g["h0"] = carry
    return loss, g


def _loss_fn(reduction, bug):
    def loss(params, x, h0, y, mask):
        return masked_rnn_loss(params, x, h0, y, mask, reduction, bug)
    return loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "batch-mean"])
def test_a_mask_left_out_of_a_loss_backward_is_named(reduction):
    result = V.verify_loss(_loss_fn(reduction, "mask"), "rnn-tanh", "cs231n", reduction=reduction, mask=True)
    assert not result.ok and result.fingerprint is not None, str(result)
    assert result.fingerprint.name == "mask-left-out-of-backward", str(result)
    text = str(result)
    assert "the mask is left out of the backward" in text and "what reaches step" not in text, text
    assert result.localisation.get("path") == "mask" and result.localisation.get("step") is None


@pytest.mark.parametrize("reduction", ["mean", "batch-mean"])
def test_the_masked_loss_is_right_and_another_bug_is_not_called_the_mask(reduction):
    right = V.verify_loss(_loss_fn(reduction, None), "rnn-tanh", "cs231n", reduction=reduction, mask=True)
    assert right.ok, str(right)
    wrong = V.verify_loss(_loss_fn(reduction, "carry"), "rnn-tanh", "cs231n", reduction=reduction, mask=True)
    assert not wrong.ok and "mask" not in wrong.verdict(), str(wrong)
    assert wrong.fingerprint is None or wrong.fingerprint.name != "mask-left-out-of-backward"


def test_without_padding_no_mask_is_blamed():
    """Declared without masks, the mask-free backward is the right one: RIGHT, whatever it does with a mask."""
    result = V.verify_loss(_loss_fn("mean", "mask"), "rnn-tanh", "cs231n", reduction="mean", mask=False)
    assert result.ok, str(result)


# -- 4. mLSTM's carry not decayed: the one-step case tells the message from a local derivative -------------
def _lstm_c0_backward(decay_carry):
    def backward(dh, cache):
        dx, dh0, dW, db, dc0 = lstm_hx_backward(dh, cache, decay_carry)
        return dx, dh0, dc0, dW, db
    return backward


def test_a_probe_that_placed_the_message_keeps_its_words():
    """The cell state's message not times f in a layer: the message probe places it; the one-step case's
    evidence (only dc0 wrong at T = 1) adds nothing to a placed message."""
    assert V.verify_layer(lstm_hx_c0_forward, _lstm_c0_backward(True), cell=None).ok
    result = V.verify_layer(lstm_hx_c0_forward, _lstm_c0_backward(False), cell=None)
    loc = result.localisation
    assert not result.ok and loc["path"] == "c", loc
    assert loc["message"].startswith("dL/dc from t=8 to t=7 is the first wrong backward message"), loc
    assert "one-step case" not in loc["message"], loc


def test_a_message_wrong_at_every_step_is_named_from_the_one_step_case_in_loss_mode():
    """Loss mode has no message probe: the one-step case (only dh0 wrong, the step's own gradients right)
    says the message each step sends back is wrong, not a local derivative (tryout7's mLSTM case had the
    probe undecided; the same evidence resolves it)."""
    result = V.verify_loss(_loss_fn("sum", "message-halved"), "rnn-tanh", "cs231n", reduction="sum")
    loc = result.localisation
    assert not result.ok and loc["path"] == "h", str(result)
    assert loc["message"].startswith("the backward message (dL/dh) a step sends to the one before is wrong, not a "
                                     "local derivative: in the one-step case only the initial states' gradients "
                                     "(dh0) are wrong"), loc


def test_a_one_step_mistake_in_the_initial_gradient_alone_is_not_called_a_message():
    """dh0 wrong at every T (returned halved) and nothing else: no longer case is wrong elsewhere, so the
    probe's words stay."""
    def backward(dh, cache):
        out = list(rnn_backward(dh, cache))
        out[1] = out[1] * 0.5
        return tuple(out)
    result = V.verify_layer(rnn_forward, backward, cell=None)
    assert not result.ok and [g.name for g in result.wrong] == ["dh0"], str(result)
    assert "in the one-step case only" not in str(result)
