"""The findings of tryout7 (notes/tryout7.md): initial states under the ``s0`` role are nonzero and in
the cell's domain, so a forward that ignores them or a backward that drops their gradients is caught;
a backward that returns other gradients on a second call on the same inputs is not RIGHT; a custom
cell's output state under the ``h0`` role; explanations that name the right quantity."""
import numpy as np
import pytest

import symrnn as sr
import symrnn.verify as V
from symrnn.models.layouts import NATIVE

S0_SIGNATURE = V.Signature(("x", "s0", "params"), ("h", "cache"), ("dh", "cache"), ("dx", "ds0", "grads"))


def model_layer(cell_name, seen=None, ignore_s0=False, zero_ds0=()):
    """A layer in symrnn's names whose forward and backward are symrnn's exact model (a stand-in for a
    hand-written layer that reads every initial state through ``s0``); ``seen`` receives each ``s0``;
    ``ignore_s0`` plants a forward that starts from zeros; ``zero_ds0`` a backward returning zero there."""
    cell = sr.builtin_cell(cell_name)
    out = cell.output_state

    def forward(x, s0, params):
        if seen is not None:
            seen.append({k: np.array(v) for k, v in s0.items()})
        model = sr.Model(cell, D=x.shape[-1], H=s0[cell.state_names[0]].shape[-1], loss="upstream")
        start = {k: np.zeros_like(v) for k, v in s0.items()} if ignore_s0 else s0
        states = model.forward(params, x, h0=start, every_step=True)[1]
        return states[out], (model, params, x, start)

    def backward(dh, cache):
        model, params, x, s0 = cache
        grads = model.loss_and_grads(params, x, dh, h0=s0)[1]
        ds0 = {s: np.zeros_like(s0[s]) if s in zero_ds0 else grads[f"{s}0"] for s in model.state_names}
        return grads[model.input_name], ds0, {k: grads[k] for k in model.param_shapes}
    return forward, backward


# -- 1. initial states under the s0 role ----------------------------------------------------------
@pytest.mark.parametrize("cell", ["slstm", "mlstm", "lru"])
def test_s0_states_are_drawn_nonzero_and_valid(cell):
    seen = []
    result = V.verify_layer(*model_layer(cell, seen), cell, NATIVE, signature=S0_SIGNATURE)
    assert result.ok, str(result)
    for s0 in seen:
        assert all(np.abs(v).max() > 0 for v in s0.values()), {k: np.abs(v).max() for k, v in s0.items()}
        if cell == "slstm":  # h_t = o c_t / n_t: the normaliser starts positive and stays so
            assert s0["n"].min() > 0


def test_s0_states_in_searched_cases_are_valid():
    seen = []
    result = V.verify_layer(*model_layer("slstm", seen), "slstm", NATIVE, signature=S0_SIGNATURE, search=10)
    assert result.ok, str(result)
    assert len(seen) > 14 and all(s0["n"].min() > 0 for s0 in seen)
    assert max(np.abs(s0["m"]).max() for s0 in seen[14:]) > 0


@pytest.mark.parametrize("cell", ["slstm", "mlstm", "lru"])
def test_a_forward_ignoring_s0_differs(cell):
    result = V.verify_layer(*model_layer(cell, ignore_s0=True), cell, NATIVE, signature=S0_SIGNATURE)
    assert not result.ok and not result.forward.ok, str(result)


@pytest.mark.parametrize("cell, state", [("slstm", "m"), ("slstm", "n"), ("mlstm", "C"), ("mlstm", "m"),
                                         ("lru", "h_im")])
def test_a_zero_initial_state_gradient_is_named(cell, state):
    result = V.verify_layer(*model_layer(cell, zero_ds0=(state,)), cell, NATIVE, signature=S0_SIGNATURE)
    assert not result.ok and result.forward.ok, str(result)
    assert [g.name for g in result.wrong] == [f"d{state}0"], str(result)
    assert f"d{state}0" in result.verdict()


def test_zero_states_still_declares_a_state_zero():
    seen = []
    result = V.verify_layer(*model_layer("slstm", seen), "slstm", NATIVE, signature=S0_SIGNATURE,
                            zero_states=("m0",))
    assert result.ok, str(result)
    assert all(not s0["m"].any() and s0["c"].any() for s0 in seen)


# -- 2. a backward that returns other gradients on another call on the same inputs -----------------
def flaky_backward(parity, amount=1e-3):
    """The shipped correct RNN backward with ``db`` off by ``amount`` on every other call (``amount``
    None: by one unit in the last place, rounding-level nondeterminism)."""
    from symrnn.example_backprop import rnn_backward
    calls = [0]

    def backward(dh, cache):
        calls[0] += 1
        dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
        if calls[0] % 2 == parity:
            db = db + (np.spacing(db) if amount is None else amount)
        return dx, dh0, dWx, dWh, db
    return backward


@pytest.mark.parametrize("parity", [0, 1])
def test_a_backward_wrong_on_every_other_call_is_nondeterministic(parity):
    from symrnn.example_backprop import rnn_forward
    result = V.verify_layer(rnn_forward, flaky_backward(parity), "rnn-tanh", "cs231n")
    assert not result.ok and result.forward.ok
    assert result.verdict().startswith("NONDETERMINISTIC: db (rnn-tanh layer code)"), result.verdict()
    assert [g.name for g in result.wrong] == ["db"]
    record = result.nondeterministic[0]
    assert record["names"] == ["db"] and record["wrong_call"] in ("first", "second")
    assert "two calls on the same inputs returned different db" in result.summary()
    assert result.to_json()["nondeterministic"] == result.nondeterministic
    assert result.fingerprint is None and not result.minimal  # nothing to localise in one call's numbers


def test_rounding_level_nondeterminism_stays_right_with_a_warning():
    from symrnn.example_backprop import rnn_forward
    result = V.verify_layer(rnn_forward, flaky_backward(1, amount=None), "rnn-tanh", "cs231n")
    assert result.ok, str(result)
    assert not result.nondeterministic and any(f.kind == "nondeterminism" for f in result.hygiene)


def test_the_cli_exits_1_on_a_nondeterministic_backward(tmp_path):
    import subprocess
    import sys
    (tmp_path / "flaky.py").write_text(
        "from symrnn.example_backprop import rnn_forward, rnn_backward as _b\n"
        "calls = [0]\n"
        "def flaky_backward(dh, cache):\n"
        "    calls[0] += 1\n"
        "    dx, dh0, dWx, dWh, db = _b(dh, cache)\n"
        "    return dx, dh0, dWx, dWh, db + (1e-3 if calls[0] % 2 else 0.0)\n")
    out = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "flaky.py:flaky_backward", "--forward",
                          "rnn_forward", "--cell", "rnn-tanh", "--layout", "cs231n"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("NONDETERMINISTIC: db"), out.stdout


# -- 3. a custom cell whose state is not named h, under the h0 role --------------------------------
H0_SIGNATURE = V.Signature(("x", "h0", "params"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "grads"))


def leaky_cell():
    """One state ``E`` (not ``h``), input ``I``."""
    cell = sr.Cell("leaky-e")
    inp, E = cell.input("I"), cell.state("E")
    S, N, lam = cell.param("S", "H", "D"), cell.param("N", "H", "H"), cell.param("lam", "H")
    cell.update(E, sr.tanh(S @ inp + N @ E) + sr.sigmoid(lam) * E)
    return cell


def leaky_layer(ignore_h0=False):
    def forward(x, h0, params):
        S, N, lam = params["S"], params["N"], params["lam"]
        E, Es, keep = np.zeros_like(h0) if ignore_h0 else h0, [], 1 / (1 + np.exp(-lam))
        for xt in x:
            prev, E = E, np.tanh(xt @ S.T + E @ N.T) + keep * E
            Es.append((prev, E - keep * prev))
        return np.stack([e + keep * p for p, e in Es]), (x, Es, params)

    def backward(dh, cache):
        x, Es, p = cache
        keep = 1 / (1 + np.exp(-p["lam"]))
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dx, carry = np.zeros_like(x), np.zeros_like(dh[0])
        for t in reversed(range(len(Es))):
            prev, a = Es[t]
            dE = dh[t] + carry
            da = dE * (1 - a ** 2)
            g["S"] += da.T @ x[t]
            g["N"] += da.T @ prev
            g["lam"] += (dE * prev * keep * (1 - keep)).sum(0)
            dx[t] = da @ p["S"]
            carry = da @ p["N"] + dE * keep
        return dx, carry, g
    return forward, backward


def test_h0_is_the_output_state_of_a_cell_without_h():
    result = V.verify_layer(*leaky_layer(), leaky_cell(), NATIVE, signature=H0_SIGNATURE)
    assert result.ok, str(result)
    assert "dE0" in {g.name for g in result.gradients} or "dh0" in {g.name for g in result.gradients}
    result = V.verify_layer(*leaky_layer(ignore_h0=True), leaky_cell(), NATIVE, signature=H0_SIGNATURE)
    assert not result.forward.ok, str(result)


def test_roles_naming_no_state_of_the_cell_are_refused_clearly():
    from symrnn.errors import UnknownNameError
    forward, backward = leaky_layer()
    with_c = V.Signature(("x", "h0", "c0", "params"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "dc0", "grads"))
    with pytest.raises(UnknownNameError, match=r"'c0'.*no state 'c'.*E"):
        V.verify_layer(lambda x, h0, c0, params: forward(x, h0, params), backward, leaky_cell(), NATIVE,
                       signature=with_c)
    with pytest.raises(UnknownNameError, match=r"never reads.*s0"):  # LRU's output state out is never read back
        V.verify_layer(*model_layer("lru"), "lru", NATIVE, signature=H0_SIGNATURE)


def indrnn_function(names="pytorch", bug=None):
    """IndRNN as a torch.autograd.Function, ``h_t = relu(x_t W^T + w * h_{t-1} + b)`` with ``w`` a
    vector; its weights named as PyTorch's (``weight_ih``, ``weight_hh``, ``bias_ih``) or as symrnn's
    (``U``, ``w``, ``b``); ``bug="dw-without-h"`` sums ``da`` for ``dw``."""
    torch = pytest.importorskip("torch")

    def forward(ctx, x, h0, W, w, b):
        h, hs, pre = h0, [], []
        for t in range(x.shape[0]):
            a = x[t] @ W.T + w * h + b
            h = torch.relu(a)
            hs.append(h)
            pre.append(a)
        hs = torch.stack(hs)
        ctx.save_for_backward(x, h0, W, w, hs, torch.stack(pre))
        return hs

    def backward(ctx, dhs):
        x, h0, W, w, hs, pre = ctx.saved_tensors
        dh, dW, dw, db, dx = (torch.zeros_like(h0), torch.zeros_like(W), torch.zeros_like(w), torch.zeros_like(w),
                              torch.zeros_like(x))
        for t in reversed(range(x.shape[0])):
            da = (dh + dhs[t]) * (pre[t] > 0)
            prev = h0 if t == 0 else hs[t - 1]
            dW += da.T @ x[t]
            dw += da.sum(0) if bug == "dw-without-h" else (da * prev).sum(0)
            db += da.sum(0)
            dx[t] = da @ W
            dh = da * w
        return dx, dh, dW, dw, db

    class InPyTorchNames(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih):
            return forward(ctx, x, h0, weight_ih, weight_hh, bias_ih)

    class InSymrnnNames(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, U, w, b):
            return forward(ctx, x, h0, U, w, b)
    chosen = InPyTorchNames if names == "pytorch" else InSymrnnNames
    chosen.backward = staticmethod(backward)
    return chosen


@pytest.mark.parametrize("cell", [None, "indrnn"])
def test_an_indrnn_function_in_pytorch_names_is_verified(cell):
    result = V.verify_framework(indrnn_function(), cell=cell)
    assert result.ok and result.cell == "indrnn", str(result)
    wrong = V.verify_framework(indrnn_function(bug="dw-without-h"), cell=cell)
    assert not wrong.ok and [g.name for g in wrong.wrong] == ["dweight_hh"], str(wrong)


def test_an_indrnn_function_in_symrnn_names_is_verified_with_layout_symrnn():
    for layout in ("symrnn", NATIVE):
        result = V.verify_framework(indrnn_function("symrnn"), cell="indrnn", layout=layout)
        assert result.ok, str(result)


def test_layout_symrnn_refuses_arguments_not_named_as_the_cell_s_parameters():
    from symrnn.errors import UnknownNameError
    with pytest.raises(UnknownNameError, match=r"symrnn's names.*\['U', 'w', 'b'\]"):
        V.verify_framework(indrnn_function(), cell="indrnn", layout="symrnn")


# -- 4. explanations that name the right quantity -------------------------------------------------
LSTM_SIGNATURE = V.Signature(("x", "h0", "Wx", "Wh", "b", "b_hh"), ("h", "cache"), ("dh", "cache"),
                             ("dx", "dh0", "Wx", "Wh", "b", "b_hh"))


def lstm_layer(b_hh_factor=1.0):
    """An LSTM in PyTorch's layout (gates i, f, g, o; ``weight_ih`` (4H, D); time-major), its ``b_hh``
    gradient returned times ``b_hh_factor`` (0: a missing bias_hh gradient)."""
    def sig(a):
        return 0.5 * np.tanh(0.5 * a) + 0.5

    def forward(x, h0, Wx, Wh, b, b_hh):
        H, h, c, steps, hs = h0.shape[1], h0, np.zeros_like(h0), [], []
        for xt in x:
            a = xt @ Wx.T + h @ Wh.T + b + b_hh
            i, f, g, o = sig(a[:, :H]), sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sig(a[:, 3 * H:])
            steps.append((xt, h, c, i, f, g, o))
            c = f * c + i * g
            h = o * np.tanh(c)
            hs.append(h)
        return np.stack(hs), (steps, Wx, Wh)

    def backward(dh, cache):
        steps, Wx, Wh = cache
        dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wx.shape[0])
        dx, dnext, dc = [], np.zeros_like(dh[0]), np.zeros_like(dh[0])
        for t in reversed(range(len(steps))):
            xt, hp, cp, i, f, g, o = steps[t]
            c = f * cp + i * g
            dht = dh[t] + dnext
            dc = dc + dht * o * (1 - np.tanh(c) ** 2)
            da = np.concatenate([dc * g * i * (1 - i), dc * cp * f * (1 - f), dc * i * (1 - g ** 2),
                                 dht * np.tanh(c) * o * (1 - o)], axis=1)
            dWx += da.T @ xt
            dWh += da.T @ hp
            db += da.sum(0)
            dx.append(da @ Wx)
            dnext, dc = da @ Wh, dc * f
        return np.stack(dx[::-1]), dnext, dWx, dWh, db, db * b_hh_factor
    return forward, backward


def test_the_lstm_layer_is_right():
    result = V.verify_layer(*lstm_layer(), "lstm", "pytorch", signature=LSTM_SIGNATURE)
    assert result.ok, str(result)


@pytest.mark.parametrize("factor", [0.0, 0.5])
def test_a_wrong_b_hh_gradient_is_no_kink_in_a_cell_without_relu(factor):
    result = V.verify_layer(*lstm_layer(factor), "lstm", "pytorch", signature=LSTM_SIGNATURE)
    assert not result.ok and result.explanation is None, str(result)
    assert result.verdict().startswith("WRONG: dbias_hh (lstm layer code)"), result.verdict()
    assert result.fingerprint is None and "step" not in result.verdict(), result.verdict()
    assert "kink" not in str(result).lower()
    assert "the exact dbias_hh equals dbias_ih" in result.localisation["message"], result.localisation


def test_an_mlstm_carry_not_decayed_names_the_messages_mlstm_has_and_one_step():
    """mLSTM never reads h[t-1]: a wrong message is one of C, n, m; the step said is the step the text
    places the first wrong thing at, in the case the text names."""
    import sys
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from corpus_today.matrix_layers import make_mlstm
    result = V.verify_layer(*make_mlstm("carry-not-decayed"), "mlstm", NATIVE, signature=H0_SIGNATURE)
    assert not result.ok and result.forward.ok, str(result)
    loc = result.localisation
    assert "dL/dh" not in loc["message"] and "dL/dC" in loc["message"], loc
    assert f"at step {loc['step']}: the backward message (dL/dC, dL/dn or dL/dm) from t={loc['step']}" in \
        loc["message"] and "in the case 'T=8" in loc["message"], loc
    assert f"step {loc['step']}" in result.verdict()


# -- 5. rough edges ---------------------------------------------------------------------------------
def test_a_keyboardinterrupt_raised_in_the_backward_gets_advice_that_fits():
    from symrnn.errors import UserCodeExit
    from symrnn.example_backprop import rnn_forward

    def rnn_backward(dh, cache):
        raise KeyboardInterrupt
    with pytest.raises(UserCodeExit, match="raised KeyboardInterrupt") as caught:
        V.verify_layer(rnn_forward, rnn_backward, "rnn-tanh", "cs231n")
    assert "remove the raise" in str(caught.value) and "__main__" not in str(caught.value)


def test_same_shape_gradients_returned_in_each_other_s_place_are_named():
    from symrnn.example_backprop import rnn_backward, rnn_forward

    def swapped(dh, cache):
        dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
        return dx, dh0, dWh, dWx, db
    result = V.verify_layer(rnn_forward, swapped, "rnn-tanh", "cs231n", D=4, H=4)
    assert not result.ok and result.fingerprint is not None and result.fingerprint.name == "gradients-swapped"
    assert "the returned dWh is the exact dWx, the returned dWx the exact dWh" in str(result) or \
        "the returned dWx is the exact dWh, the returned dWh the exact dWx" in str(result), str(result)
