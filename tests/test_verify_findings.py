"""A new user's verifier findings (tryout 4): F3's fallback (a local mistake at a middle step placed
at its step where the message probe cannot run: loss mode; wired models in test_verify_seq2seq.py), F8 (NumPy code in symrnn's
own names verified from the CLI, with several states), F10a (a cell-state carry passed on as zero is
named ``c-path-dropped``) and F10b (a forward that is not finite is described, not guessed at)."""
import os
import sys
import textwrap

import numpy as np
import pytest

import symrnn as sr
import symrnn.verify as V
from symrnn import cli

TESTS = os.path.dirname(os.path.abspath(__file__))


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


# -- F3: loss mode (no message probe) ------------------------------------------------------------
def rnn_loss_with(local_at=None, message_at=None, no_dx_at=None):
    """A CS231n-layout RNN with a squared-error readout returning dx and dh0: tanh' left out at step
    index ``local_at``, the message step index ``message_at`` sends back scaled by 1.01, or dx of step
    index ``no_dx_at`` left at 0 (indices from 0)."""
    def rnn_loss(params, x, h0, y, mask=None):
        Wx, Wh, b, Wy, by = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
        hs, h = [], h0
        for t in range(x.shape[1]):
            h = np.tanh(x[:, t] @ Wx + h @ Wh + b)
            hs.append(h)
        hs = np.stack(hs, 1)
        out = hs @ Wy + by
        dout = 2 * (out - y)
        grads = {"W_vocab": np.einsum("nth,ntk->hk", hs, dout), "b_vocab": dout.sum(axis=(0, 1))}
        dhs = dout @ Wy.T
        dx, dWx, dWh, db, carry = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b), 0 * h0
        for t in reversed(range(x.shape[1])):
            g = dhs[:, t] + carry
            da = g if t == local_at else g * (1 - hs[:, t] ** 2)
            dx[:, t] = 0.0 if t == no_dx_at else da @ Wx.T
            dWx, dWh, db = dWx + x[:, t].T @ da, dWh + (h0 if t == 0 else hs[:, t - 1]).T @ da, db + da.sum(0)
            carry = da @ Wh.T * (1.01 if t == message_at else 1.0)
        grads.update(Wx=dWx, Wh=dWh, b=db, dx=dx, dh0=carry)
        return float(np.sum((out - y) ** 2)), grads
    return rnn_loss


def test_loss_mode_correct_code_passes():
    assert V.verify_loss(rnn_loss_with(), "rnn-tanh", "cs231n", loss="mse").ok


def test_loss_mode_local_derivative_at_step_4_is_placed_at_step_4():
    """tanh' left out at step 4 (index 3): was "step 5 ... dL/dh from t=5 to t=4 is the first wrong
    backward message"; the smallest failing prefix ends at t=4 and is wrong at its last step."""
    result = V.verify_loss(rnn_loss_with(local_at=3), "rnn-tanh", "cs231n", loss="mse")
    loc = result.localisation
    assert not result.ok and loc["step"] == 4 and result.minimal["T"] == 4, str(result)
    assert "a local derivative at t=4 is wrong, not a message" in loc["message"], loc
    assert "first wrong backward message" not in result.summary()
    assert result.verdict().endswith("step 4"), result.verdict()


def test_loss_mode_dx_dropped_at_one_step_is_local():
    result = V.verify_loss(rnn_loss_with(no_dx_at=4), "rnn-tanh", "cs231n", loss="mse")
    loc = result.localisation
    assert [g.name for g in result.wrong] == ["dx"] and loc["step"] == 5, str(result)
    assert "a local derivative at t=5 is wrong, not a message" in loc["message"], loc


def test_loss_mode_wrong_message_is_still_the_message():
    result = V.verify_loss(rnn_loss_with(message_at=4), "rnn-tanh", "cs231n", loss="mse")
    loc = result.localisation
    assert not result.ok and loc["step"] == 5, str(result)
    assert "dL/dh from t=5 to t=4 is the first wrong backward message" in loc["message"], loc
    assert "local derivative" not in loc["message"]


def test_without_the_shortest_prefix_both_are_said():
    """The evidence rules: no prefix, no lone step, every block wrong: both, never one asserted."""
    from symrnn.verify.diagnose import place_first_wrong

    step, words = place_first_wrong([0, 1, 2, 3], 8)
    assert step == 5 and "at step 5: the backward message (dL/dh) from t=5 to t=4, or else a local derivative at " \
        "t=4" in words
    assert place_first_wrong([0, 1, 2, 3], 8, shortest=(4, 3))[1].startswith("a local derivative at t=4 is wrong")
    assert "first wrong backward message" in place_first_wrong([0, 1, 2, 3], 8, shortest=(5, 3))[1]
    assert place_first_wrong([3], 8, starts_right=True)[0] == 4
    assert "cannot tell" in place_first_wrong([3], 8, starts_right=False)[1]  # dh0 wrong: not a lone step
    assert place_first_wrong([0, 1, 2, 3], 8, partial_blocks=True)[0] == 4
    assert place_first_wrong([0], 8, partial_blocks=True)[0] == 2  # at t=1 a c message reaches i, f, g only


# -- F8: code in symrnn's own names from the CLI ----------------------------------------------------
def _layer_file(tmp_path, cell, bug=None, name="layer.py"):
    """A file whose functions are the corpus layer ``cell`` (with ``bug``), as a user would write it."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {TESTS!r})
        from corpus_parallel import make
        {cell.replace('-', '_')}_forward, {cell.replace('-', '_')}_backward = make({cell!r}, "sequential" if
            {cell!r} == "lru" else "associative", {bug!r})
        """))
    return path


def _verify_cli(tmp_path, monkeypatch, capsys, *argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    code = cli.main(["verify", *argv, "--save-to", str(tmp_path / "case.npz")])
    return code, capsys.readouterr()


@pytest.mark.parametrize("layout", [["--layout", "symrnn"], []])
def test_cli_verifies_a_numpy_lru_with_several_states(tmp_path, monkeypatch, capsys, layout):
    """forward(x, s0, p) -> (y, states, cache), backward(dy, cache) -> (dx, ds0, grads): the signature
    is read from the code; with --cell alone the params dict says the layout."""
    _layer_file(tmp_path, "lru", name="lru_ok.py")
    code, out = _verify_cli(tmp_path, monkeypatch, capsys, "lru_ok.py:lru_backward", "--cell", "lru", *layout)
    assert code == 0 and out.out.startswith("RIGHT: lru layer code"), out.out + out.err
    assert "dh_re0" in out.out and "dh_im0" in out.out  # the initial states' gradients (ds0) are judged


def test_cli_catches_and_places_a_planted_lru_bug(tmp_path, monkeypatch, capsys):
    _layer_file(tmp_path, "lru", "gamma-path-dropped", "lru_bug.py")
    code, out = _verify_cli(tmp_path, monkeypatch, capsys, "lru_bug.py:lru_backward", "--cell", "lru",
                            "--layout", "symrnn")
    assert code == 1 and out.out.startswith("WRONG: dnu (lru layer code)"), out.out + out.err


def test_cli_verifies_a_numpy_min_gru_and_catches_its_bug(tmp_path, monkeypatch, capsys):
    _layer_file(tmp_path, "min-gru", name="mg_ok.py")
    code, out = _verify_cli(tmp_path, monkeypatch, capsys, "mg_ok.py:min_gru_backward", "--cell", "min-gru",
                            "--layout", "symrnn")
    assert code == 0 and out.out.startswith("RIGHT: min-gru layer code"), out.out + out.err
    _layer_file(tmp_path, "min-gru", "h0-decay-missing", "mg_bug.py")
    code, out = _verify_cli(tmp_path, monkeypatch, capsys, "mg_bug.py:min_gru_backward", "--cell", "min-gru",
                            "--layout", "symrnn")
    assert code == 1 and out.out.startswith("WRONG: dh0 (min-gru layer code)"), out.out + out.err


def test_the_native_layout_without_a_cell_says_to_declare_it(tmp_path, monkeypatch, capsys):
    _layer_file(tmp_path, "lru", name="lru_nocell.py")
    code, out = _verify_cli(tmp_path, monkeypatch, capsys, "lru_nocell.py:lru_backward", "--layout", "symrnn")
    assert code == 2 and "needs the cell declared" in out.err, out.err
    code, out = _verify_cli(tmp_path, monkeypatch, capsys, "lru_nocell.py:lru_backward")
    assert code == 2 and "--cell NAME (and --layout symrnn)" in out.err, out.err


# -- F10a: a carry zeroed into the initial state is c-path-dropped -----------------------------------
def lstm_forward(x, h0, c0, Wx, Wh, b):
    """CS231n's LSTM layer (gates i, f, o, g) that takes c0."""
    H = h0.shape[1]
    hs, h, c, steps = [], h0, c0, []
    for t in range(x.shape[1]):
        a = x[:, t] @ Wx + h @ Wh + b
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
        steps.append((x[:, t], h, c, i, f, o, g))
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        steps[-1] += (c,)
    return np.stack(hs, 1), (steps, Wx, Wh)


def lstm_backward_no_cell_path(dh, cache):
    """dc = 0 passed on to the step before (and so into dc0): the cell-state carry dropped."""
    steps, Wx, Wh = cache
    dx = np.zeros(dh.shape[:2] + (Wx.shape[0],))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wx.shape[1])
    dh_next, dc_next = np.zeros_like(dh[:, 0]), np.zeros_like(dh[:, 0])
    for t in reversed(range(dh.shape[1])):
        x, h_prev, c_prev, i, f, o, g, c = steps[t]
        dh_t = dh[:, t] + dh_next
        dc = dc_next + dh_t * o * (1 - np.tanh(c) ** 2)
        da = np.hstack((dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dh_t * np.tanh(c) * o * (1 - o),
                        dc * i * (1 - g ** 2)))
        dx[:, t], dWx, dWh, db = da @ Wx.T, dWx + x.T @ da, dWh + h_prev.T @ da, db + da.sum(0)
        dh_next, dc_next = da @ Wh.T, np.zeros_like(dc)
    return dx, dh_next, dc_next, dWx, dWh, db


def test_numpy_lstm_with_the_cell_path_zeroed_is_named():
    signature = V.Signature(("x", "h0", "c0", "Wx", "Wh", "b"), ("h", "cache"), ("dh", "cache"),
                            ("dx", "dh0", "dc0", "Wx", "Wh", "b"))
    result = V.verify_layer(lstm_forward, lstm_backward_no_cell_path, "lstm", "cs231n", signature=signature)
    assert not result.ok and "dc0" in [g.name for g in result.wrong], str(result)
    assert result.fingerprint is not None and result.fingerprint.name == "c-path-dropped", str(result)
    assert result.localisation["path"] == "c"


def test_torch_lstm_function_with_the_cell_path_zeroed_is_named():
    pytest.importorskip("torch")
    sys.path.insert(0, TESTS)
    from corpus_torch import lstm as torch_lstm

    result = V.verify_framework(torch_lstm.make("cell-path-dropped"), "lstm")
    assert not result.ok and result.fingerprint is not None, str(result)
    assert result.fingerprint.name == "c-path-dropped" and result.localisation["path"] == "c", str(result)


# -- F10b: a forward that is not finite --------------------------------------------------------------
def mingru_cumprod_forward(x, h0, params):
    """minGRU by a cumprod scan: h_t = A_t (h0 + sum_k z_k ht_k / A_k), A_t = prod (1 - z_k); at T = 300
    the product underflows and the division overflows."""
    z = sigmoid(x @ params["U_z"].T + params["b_z"])
    ht = x @ params["U_h"].T + params["b_h"]
    A = np.cumprod(1 - z, axis=0)
    with np.errstate(all="ignore"):
        h = A * (h0 + np.cumsum(z * ht / A, axis=0))
    return h, (x, h0, params)


def zero_backward(dh, cache):
    """Gradients of the right shapes: the forward is judged first."""
    x, h0, params = cache
    return np.zeros_like(x), np.zeros_like(h0), {k: np.zeros_like(v) for k, v in params.items()}


def test_a_forward_that_overflows_is_described_not_guessed():
    signature = V.Signature(("x", "h0", "params"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "grads"))
    result = V.verify_layer(mingru_cumprod_forward, zero_backward, sr.builtin_cell("min-gru"), "symrnn",
                            signature=signature, T=300, scale=2.0, seed=4, lengths=())
    assert not result.ok and not result.forward.ok, str(result)
    message = result.forward.message
    assert "tanh or sigmoid through exp?" not in message
    assert "is -inf at step" in message or "is inf at step" in message or "is nan at step" in message, message
    assert "every earlier step is finite" in message and "cumprod" in message, message
