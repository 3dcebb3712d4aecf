"""Where and what (issue: verifier II): every planted mistake named in layer and loss mode, clipping
and truncation understood, truncated BPTT verified exactly, failures shrunk and replayed, and no
false fingerprints.  The corpus (tests/corpus) plants one mistake per copy."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import symrnn.strategies as sst
import symrnn.verify as V
from corpus import cs231n_rnn, minchar_rnn, tbptt_rnn
from symrnn import Model
from symrnn.errors import ShapeError, UnknownNameError, UserCodeError
from symrnn.models.truncated import Truncation, truncated_loss_and_grads
from test_verify import BUGS, EXPECTED_FINGERPRINT, IMPLEMENTATIONS, seq_to_one

NAMED = {**EXPECTED_FINGERPRINT, "clip_inside": "clipped-inside-backward"}
SWAPPED = {"cs231n_lstm": "gate-blocks-i-f-swapped", "dlfs2_lstm": "gate-blocks-i-f-swapped",
           "dlfs2_gru": "gate-blocks-r-z-swapped"}
GATE = {"cs231n_lstm": "f", "dlfs2_lstm": "f", "dlfs2_gru": "z"}  # the gate of sigmoid_deriv_missing_gate


def expected_name(name, bug):
    return SWAPPED[name] if bug == "swap_gate_blocks" else NAMED.get(bug)


@pytest.mark.parametrize("name, bug", [(n, b) for n in IMPLEMENTATIONS for b in BUGS[n] if expected_name(n, b)])
def test_every_catalogued_mistake_is_named_in_every_mode(name, bug):
    """Layer mode (CS231n, DLFS2: two layouts, three cells) and loss mode (CS231n's loss with masks)."""
    result = IMPLEMENTATIONS[name](bug)
    assert result.fingerprint is not None and result.fingerprint.name == expected_name(name, bug), str(result)
    data = result.to_json()
    assert data["fingerprint"]["exact_line"]["latex"] and data["fingerprint"]["exact_line"]["code"]
    loc = data["localisation"]
    assert loc["gradient"] in [g.name for g in result.wrong]
    if bug in ("sigmoid_deriv_missing_gate", "swap_gate_blocks"):
        assert loc["block"] == (GATE[name] if bug == "sigmoid_deriv_missing_gate"
                                else ",".join(SWAPPED[name].split("-")[2:4]))
    if bug == "missing_first_term":
        assert loc["step"] == 1
    if bug == "truncate_k":  # right for T <= 3: the fourth step is the first a truncation after 3 misses
        assert result.minimal["T"] == 4


def test_the_exact_line_is_the_one_the_mistake_changes():
    result = IMPLEMENTATIONS["cs231n_rnn"]("drop_recurrent")
    line = result.exact_line
    assert line["latex"] == r"\bar{h}_{t} = g_{t} + W^{\top} \bar{a}_{t+1}"
    assert line["code"] == ["h__bar_t = EXT['h'][t] + h__carry"]
    assert "in LaTeX: " + line["latex"] in str(result)


def test_sensitivity_seq_to_one_T40_in_loss_mode():
    """PyTorch's default initialisation (uniform 1/sqrt(H)), T = 40, squared error on the last step."""
    kwargs = dict(cell="rnn-tanh", layout="cs231n", loss="mse", architecture="many-to-one", T=40, H=4, D=3, K=2,
                  signature=V.Signature(("params", "x", "h0", "y"), ("loss", "grads")))
    wrong = V.verify_loss(seq_to_one("message_1pct"), **kwargs)
    # the message from step index 2 to 1 (t = 3 -> 2 counting from 1) is first used by a sequence of 3 steps
    assert not wrong.ok and wrong.fingerprint is None and wrong.localisation["shortest_failing_T"] == 3, str(wrong)
    named = V.verify_loss(seq_to_one("missing_first_term"), **kwargs)
    assert named.fingerprint.name == "h0-term-missing" and named.localisation["step"] == 1, str(named)
    assert named.localisation["gradient"] == "dWh" and "outer product with h_0" in named.summary()


# -- clipping and truncation ------------------------------------------------------------------------
def test_min_char_rnn_clipping_is_explained_and_verified_when_declared():
    clipped = V.verify_loss(minchar_rnn.lossFun_clipped, "rnn-tanh", "minchar", H=5, K=6, T=12, scale=3.0)
    assert not clipped.ok and clipped.fingerprint is None
    assert clipped.explanation.kind == "value" and clipped.explanation.threshold == pytest.approx(5.0)
    assert "not a backprop mistake" in clipped.summary() and "clip=('value', 5)" in clipped.summary()
    assert clipped.to_json()["explanation"]["kind"] == "value"
    declared = V.verify_loss(minchar_rnn.lossFun_clipped, "rnn-tanh", "minchar", H=5, K=6, T=12, scale=3.0,
                             clip=("value", 5.0))
    assert declared.ok, str(declared)


@pytest.mark.parametrize("kind", ["global-norm", "norm"])
def test_norm_clipping_is_explained(kind):
    def clipped(params, x, h0, y, mask):
        loss, grads = cs231n_rnn.temporal_affine_softmax_loss(params, x, h0, y, mask)
        names = list(grads)  # every parameter, as torch.nn.utils.clip_grad_norm_(model.parameters())
        if kind == "global-norm":
            norm = np.sqrt(sum(np.sum(grads[k] ** 2) for k in names))
            for k in names:
                grads[k] = grads[k] * min(1.0, 0.5 / norm)
        else:
            for k in names:
                grads[k] = grads[k] * min(1.0, 0.5 / max(np.linalg.norm(grads[k]), 1e-300))
        return loss, grads

    result = V.verify_loss(clipped, "rnn-tanh", "cs231n", reduction="batch-mean", mask=True, scale=1.0)
    assert result.explanation is not None and result.explanation.kind == kind, str(result)
    assert result.explanation.threshold == pytest.approx(0.5)


TBPTT_SIGNATURE = V.Signature(("x", "y", "h0", "params", "k"), ("grads",))
TBPTT = dict(cell="rnn-tanh", layout="minchar", loss="half-mse", T=12, signature=TBPTT_SIGNATURE)


def tbptt_variant(kind):
    def grads(x, y, h0, params, k):
        if kind == "reset":  # every chunk starts from h0 again
            out = {name: np.zeros_like(v) for name, v in params.items()}
            for start in range(0, len(x), k):
                chunk = slice(start, start + k)
                hs, errors = tbptt_rnn.chunk_forward(x[chunk], y[chunk], h0, params)
                tbptt_rnn.chunk_backward(x[chunk], hs, errors, params, out)
            return out
        return tbptt_rnn.tbptt_grads(x, y, h0, params, k + {"long": 1, "short": -1}.get(kind, 0))
    return grads


def test_truncated_bptt_is_verified_exactly():
    result = V.verify_loss(tbptt_variant("correct"), truncation=5, **TBPTT)
    assert result.ok, str(result)
    full = V.verify_loss(tbptt_variant("correct"), truncation=12, **TBPTT)  # k >= T: full BPTT
    assert full.ok


@pytest.mark.parametrize("kind, name", [("reset", "carried-state-reset"), ("long", "truncation-off-by-one-long"),
                                        ("short", "truncation-off-by-one-short")])
def test_truncation_mistakes_are_named(kind, name):
    result = V.verify_loss(tbptt_variant(kind), truncation=5, **TBPTT)
    assert not result.ok and result.fingerprint.name == name, str(result)


def test_undeclared_chunked_truncation_is_named():
    sig = V.Signature(("x", "y", "h0", "params"), ("grads",))
    result = V.verify_loss(lambda x, y, h0, params: tbptt_rnn.tbptt_grads(x, y, h0, params, 5),
                           **{**TBPTT, "signature": sig})
    assert result.fingerprint.name == "chunks-of-5" and "declare truncation=5 to verify it exactly" in result.summary()
    assert result.to_json()["explanation"] == {"kind": "truncation", "k1": 5, "k2": 5, "declare": "truncation=5",
                                                "text": "truncated BPTT, TBPTT(k1=5, k2=5)"}


@settings(max_examples=10)
@given(case=sst.problems(Model("rnn-tanh", D=2, H=3, K=2, loss="mse"), min_T=1, max_T=9))
def test_truncated_gradient_matches_torch_with_detach(case):
    """A second route: torch autograd with h.detach() k2 steps back, every k1 steps."""
    model = Model("rnn-tanh", D=2, H=3, K=2, loss="mse")
    for k1, k2 in ((1, 1), (2, 3), (3, 3), (2, 5)):
        _, ours = truncated_loss_and_grads(model, case.params, case.x, case.targets, (k1, k2), case.h0)
        P = {k: torch.tensor(v, requires_grad=True) for k, v in case.params.items()}
        x, y = torch.tensor(case.x), torch.tensor(case.targets)
        hs = [torch.tensor(case.h0["h"])]
        for t in range(case.T):
            hs.append(torch.tanh(x[t] @ P["U"].T + hs[-1] @ P["W"].T + P["b"]))
        total = 0
        for start, first, end in Truncation(k1, k2).updates(case.T):
            h = hs[start].detach()
            for t in range(start, end):
                h = torch.tanh(x[t] @ P["U"].T + h @ P["W"].T + P["b"])
                if t >= first:
                    total = total + ((h @ P["V"].T + P["c"] - y[t]) ** 2).sum()
        total.backward()
        for k, v in P.items():
            ref = v.grad.numpy()
            assert np.abs(ours[k] - ref).max() <= 1e-12 * max(1.0, np.abs(ref).max()), (k1, k2, k)


def test_truncation_bad_input():
    with pytest.raises(ShapeError, match=r"k2 < k1"):
        Truncation(5, 3)
    with pytest.raises(ShapeError, match=r"positive integers, got k1=0"):
        Truncation(0, 3)
    with pytest.raises(ShapeError, match="many-to-many"):
        truncated_loss_and_grads(Model("rnn-tanh", D=1, H=1, K=2, architecture="many-to-one", loss="mse"),
                                 Model("rnn-tanh", D=1, H=1, K=2).init_params(0), np.zeros((3, 1, 1)),
                                 np.zeros((1, 1, 2)), 2)
    with pytest.raises(UnknownNameError, match="Unknown clipping 'elementwise'"):
        V.verify_loss(tbptt_variant("correct"), truncation=5, clip=("elementwise", 5), **TBPTT)


# -- shrink, save, replay ---------------------------------------------------------------------------
RNN_TEMPLATE = '''
import numpy as np

def rnn_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1]))
    prev = h0
    for t in range(T):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        h[:, t] = prev
    return h, (x, h0, Wx, Wh, h)

def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, H = dh.shape
    dx, dWx, dWh, db = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
    carry = np.zeros((N, H))
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * DERIVATIVE
        prev = h0 if t == 0 else h[:, t - 1]
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += prev.T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T * MESSAGE
    return dx, carry, dWx, dWh, db
'''
# the message from the third step to the second doubled: wrong for T >= 3 only
BUG_FROM_T3 = RNN_TEMPLATE.replace("DERIVATIVE", "(1 - h[:, t] ** 2)").replace("MESSAGE", "(2 if t == 2 else 1)")
# a "numerically safe" tanh derivative, max(1 - h**2, 1e-3): wrong only where tanh saturates
SATURATION_GUARDED = RNN_TEMPLATE.replace("DERIVATIVE", "np.maximum(1 - h[:, t] ** 2, 1e-3)").replace("MESSAGE", "1")


def _load_module(tmp_path, name, source):
    (tmp_path / f"{name}.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_bug_from_T3_on_shrinks_to_T3_and_replays(tmp_path):
    rnn_bug = _load_module(tmp_path, "rnn_bug", BUG_FROM_T3)
    path = tmp_path / "rnn_bug.py"
    case = tmp_path / "case.npz"
    result = V.verify_layer(rnn_bug.rnn_forward, rnn_bug.rnn_backward, "rnn-tanh", "cs231n", save_to=case)
    assert not result.ok and result.minimal["T"] == 3 and result.minimal["N"] == 1, str(result)
    assert result.minimal["D"] == 1 and result.minimal["H"] == 1 and case.exists()
    assert "--replay" in result.minimal["command"] and str(case) in str(result)
    again = V.verify_layer(rnn_bug.rnn_forward, rnn_bug.rnn_backward, "rnn-tanh", "cs231n", replay=case)
    assert not again.ok and [c.T for c in again.cases] == [3] and again.wrong
    assert [g.name for g in again.wrong] == [g.name for g in V.verify_layer(
        rnn_bug.rnn_forward, rnn_bug.rnn_backward, "rnn-tanh", "cs231n", replay=case).wrong]
    cli = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", f"{path}:rnn_backward", "--replay", str(case)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 1 and cli.stdout.startswith("WRONG: "), cli.stdout + cli.stderr
    with pytest.raises(UnknownNameError, match="cell='rnn-tanh'"):
        V.verify_layer(rnn_bug.rnn_forward, rnn_bug.rnn_backward, "rnn-relu", "cs231n", replay=case)
    (tmp_path / "junk.npz").write_bytes(b"not a case")
    with pytest.raises(ShapeError, match="Cannot read the case file"):
        V.verify_layer(rnn_bug.rnn_forward, rnn_bug.rnn_backward, "rnn-tanh", "cs231n", replay=tmp_path / "junk.npz")


def test_search_finds_a_bug_the_fixed_cases_miss(tmp_path):
    """At PyTorch's initialisation scale the fixed cases never saturate tanh that far; the search's
    weights from tiny to saturating do."""
    guarded = _load_module(tmp_path, "rnn_guarded", SATURATION_GUARDED)
    assert V.verify_layer(guarded.rnn_forward, guarded.rnn_backward, "rnn-tanh", "cs231n").ok
    found = V.verify_layer(guarded.rnn_forward, guarded.rnn_backward, "rnn-tanh", "cs231n", search=60)
    assert not found.ok and found.cases[-1].label.endswith("found by search (symrnn.strategies)"), str(found)
    assert found.minimal["T"] == 1 and found.fingerprint is None


@pytest.mark.parametrize("mistake", ["nan", "scaled", "raises"])
def test_the_search_judges_the_forward_of_what_it_draws(mistake):
    """A forward that is not finite, computes another function or raises on a drawn case only (one
    sequence, T = 6 or more) is found by the search and reported, never passed (a new user's finding:
    the search judged only the gradients, and a searched case whose forward was NaN counted as right)."""
    def rnn_forward(x, h0, Wx, Wh, b):
        h, cache = cs231n_rnn.rnn_forward(x, h0, Wx, Wh, b)
        if x.shape[0] == 1 and x.shape[1] >= 6:
            if mistake == "raises":
                raise IndexError("only in the drawn case")
            h = h * (np.nan if mistake == "nan" else 1.5)
        return h, cache

    assert V.verify_layer(rnn_forward, cs231n_rnn.rnn_backward, "rnn-tanh", "cs231n").ok
    if mistake == "raises":
        with pytest.raises(UserCodeError, match="IndexError"):
            V.verify_layer(rnn_forward, cs231n_rnn.rnn_backward, "rnn-tanh", "cs231n", search=60)
        return
    found = V.verify_layer(rnn_forward, cs231n_rnn.rnn_backward, "rnn-tanh", "cs231n", search=60)
    assert not found.ok and not found.forward.ok and not found.searched, str(found)
    assert found.cases[-1].label.endswith("found by search (symrnn.strategies)"), str(found)


def test_the_search_runs_in_loss_mode_with_padding_masks():
    """A masked loss is searched with masked drawn cases (the search was skipped, with only a note)."""
    correct = cs231n_rnn.make().temporal_affine_softmax_loss

    def wrong_for_two_sequences(params, x, h0, y, mask=None):
        loss, grads = correct(params, x, h0, y, mask)
        if x.shape[0] == 2 and x.shape[1] >= 5:
            grads = dict(grads, Wh=grads["Wh"] * 1.01)
        return loss, grads

    kwargs = dict(reduction="batch-mean", mask=True, search=25)
    right = V.verify_loss(correct, "rnn-tanh", "cs231n", **kwargs)
    assert right.ok and right.searched == 25 and not right.notes, str(right)
    found = V.verify_loss(wrong_for_two_sequences, "rnn-tanh", "cs231n", **kwargs)
    assert not found.ok and [g.name for g in found.wrong] == ["dWh"], str(found)
    assert found.cases[-1].label.endswith("found by search (symrnn.strategies)"), str(found)


@pytest.mark.parametrize("name", ["cs231n_rnn", "cs231n_lstm", "dlfs2_gru"])
def test_correct_code_searched_by_hypothesis_gets_no_fingerprint(name):
    kwargs = {} if name.startswith("dlfs2") else {"search": 25}
    result = IMPLEMENTATIONS[name](None, **kwargs)
    assert result.ok and result.fingerprint is None and result.explanation is None and not result.minimal


def test_strategies_shrink_towards_short_simple_cases():
    from hypothesis import find

    model = Model("lstm", D=2, H=3, loss="upstream")
    found = find(sst.problems(model, max_T=10), lambda p: p.T >= 4)
    assert found.T == 4 and found.N == 1
    assert all(not np.any(v) for v in found.params.values())


def test_a_sum_where_a_mean_was_declared_is_named():
    """The loss is divided by T (a mean over every step, PyTorch's), its gradient is not: T times
    too large, readout included."""
    def loss_fn(params, x, h0, y, mask):
        loss, grads = cs231n_rnn.make(None).temporal_affine_softmax_loss(params, x, h0, y, mask)  # sum over time / N
        return loss / x.shape[1], grads

    result = V.verify_loss(loss_fn, cell="rnn-tanh", layout="cs231n", reduction="mean")
    assert not result.ok and result.fingerprint is not None, str(result)
    assert result.fingerprint.name == "multiplied-by-T" and result.fingerprint.readout_too, str(result)


def test_the_readme_lstm_mistake_is_named(tmp_path):
    """The README's example: the forget gate's derivative written as f where f (1 - f) belongs."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "catalogued mistake 'sigmoid-derivative-as-output'" in readme
    source = MY_LSTM
    (tmp_path / "my_lstm.py").write_text(source)
    cli = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "my_lstm.py:lstm_backward", "--cell", "lstm",
                          "--layout", "cs231n"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 1
    first = cli.stdout.splitlines()[0]
    assert first.startswith("WRONG: ") and "sigmoid-derivative-as-output, gate f" in first and len(first) <= 100
    assert "f[t] (the forget gate) is written as the gate itself" in cli.stdout
    assert "smallest failing case T=2, N=1, D=1, H=1" in cli.stdout
    replay = re.search(r"^replay: (.*)$", cli.stdout, re.M).group(1).split()
    again = subprocess.run([sys.executable, "-m", "symrnn.cli", *replay[1:]], capture_output=True, text=True,
                           cwd=tmp_path)
    assert again.returncode == 1 and "sigmoid-derivative-as-output" in again.stdout.splitlines()[0], again.stdout


MY_LSTM = '''
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    H = h0.shape[1]
    h, c = np.zeros((N, T, H)), np.zeros((N, H))
    prev, cache = h0, []
    for t in range(T):
        a = x[:, t] @ Wx + prev @ Wh + b
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
        c_prev, c = c, f * c + i * g
        prev = o * np.tanh(c)
        h[:, t] = prev
        cache.append((x[:, t], h[:, t - 1] if t else h0, c_prev, c, i, f, o, g))
    return h, (cache, Wx, Wh)


def lstm_backward(dh, cache):
    steps, Wx, Wh = cache
    N, T, H = dh.shape
    dx = np.zeros((N, T, Wx.shape[0]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
    dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        x, h_prev, c_prev, c, i, f, o, g = steps[t]
        dh_t = dh[:, t] + dh_next
        dc = dc_next + dh_t * o * (1 - np.tanh(c) ** 2)
        da = np.hstack((dc * g * i * (1 - i), dc * c_prev * f,  # forget gate: f * (1 - f) forgotten
                        dh_t * np.tanh(c) * o * (1 - o), dc * i * (1 - g ** 2)))
        dx[:, t] = da @ Wx.T
        dWx += x.T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        dh_next, dc_next = da @ Wh.T, dc * f
    return dx, dh_next, dWx, dWh, db
'''


def test_a_one_percent_error_in_the_cell_state_message_is_localised_to_it(tmp_path):
    """dL/dc from t=3 to t=2 scaled by 1.01 (counting from 1): the message probe names the c path,
    the step, and the gate blocks the message reaches (i, f, g; not o)."""
    source = MY_LSTM.replace("dc * c_prev * f,  # forget gate: f * (1 - f) forgotten",
                             "dc * c_prev * f * (1 - f),")
    source = source.replace("dh_next, dc_next = da @ Wh.T, dc * f",
                            "dh_next, dc_next = da @ Wh.T, dc * f * (1.01 if t == 2 else 1.0)")
    correct = _load_module(tmp_path, "lstm_right", MY_LSTM.replace("dc * c_prev * f,  # forget gate", "dc * c_prev * f * (1 - f),  #"))
    assert V.verify_layer(correct.lstm_forward, correct.lstm_backward, "lstm", "cs231n").ok
    wrong = _load_module(tmp_path, "lstm_c_message", source)
    result = V.verify_layer(wrong.lstm_forward, wrong.lstm_backward, "lstm", "cs231n")
    loc = result.to_json()["localisation"]
    assert not result.ok and result.fingerprint is None, str(result)
    assert loc["path"] == "c" and loc["step"] == 3 and loc["block"] == "i,f,g", str(result)
    assert "dL/dc from t=3 to t=2 is the first wrong backward message; dL/dh is right" in result.summary()


@pytest.mark.parametrize("name", ["cs231n_lstm", "dlfs2_lstm"])
def test_a_dropped_cell_path_is_localised_to_the_c_path(name):
    result = IMPLEMENTATIONS[name]("cell_path_dropped")
    assert result.localisation["path"] == "c" and result.localisation["step"] == 8
    assert "dL/dc from t=8 to t=7 is the first wrong backward message; dL/dh is right" in result.summary()


# -- from a new user's trial of the above -----------------------------------------------------------
ALIASES = RNN_TEMPLATE.replace("DERIVATIVE", "(1 - h[:, t] ** 2)").replace("MESSAGE", "1") + '''

def doubled_forward(x, h0, Wx, Wh, b):
    h, cache = rnn_forward(x, h0, Wx, Wh, b)
    return 2 * h, cache

doubled_backward = rnn_backward

def nan_backward(dh, cache):
    dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
    dWh = dWh.copy()
    dWh[0, 0] = np.nan
    return dx, dh0, dWx, dWh, db

nan_forward = rnn_forward

def postclip_backward(dh, cache):
    dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
    return dx, dh0, np.clip(dWx, -0.3, 0.3), np.clip(dWh, -0.3, 0.3), np.clip(db, -0.3, 0.3)

postclip_forward = rnn_forward
'''


def test_cli_finds_the_forward_of_the_name_typed(tmp_path):
    """``doubled_backward = rnn_backward`` has __name__ 'rnn_backward'; its forward is doubled_forward."""
    _load_module(tmp_path, "aliases", ALIASES)
    cli = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "aliases.py:doubled_backward", "--cell",
                          "rnn-tanh", "--layout", "cs231n"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 4 and cli.stdout.startswith("FORWARD DIFFERS: "), cli.stdout


def test_a_nan_gradient_is_reported_not_a_crash(tmp_path):
    m = _load_module(tmp_path, "aliases_nan", ALIASES)
    result = V.verify_layer(m.nan_forward, m.nan_backward, "rnn-tanh", "cs231n")
    assert not result.ok and [g.name for g in result.wrong] == ["dWh"] and result.explanation is None


def test_clipping_after_the_backward_is_explained_even_at_T1(tmp_path):
    m = _load_module(tmp_path, "aliases_clip", ALIASES)
    result = V.verify_layer(m.postclip_forward, m.postclip_backward, "rnn-tanh", "cs231n", T=1, lengths=(),
                            scale=2.0)
    assert result.fingerprint is None and result.explanation.kind == "value", str(result)


def test_a_backward_loop_that_stops_before_step_one_is_named(tmp_path):
    source = BUG_FROM_T3.replace("(2 if t == 2 else 1)", "1").replace("for t in reversed(range(T)):",
                                                                       "for t in range(T - 1, 0, -1):")
    m = _load_module(tmp_path, "rnn_off_by_one", source)
    result = V.verify_layer(m.rnn_forward, m.rnn_backward, "rnn-tanh", "cs231n")
    assert result.fingerprint is not None and result.fingerprint.name == "first-step-skipped", str(result)


def test_case_files_that_are_not_cases_are_refused(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ShapeError, match="not an .npz archive that symrnn verify saved"):
        V.verify_layer(cs231n_rnn.rnn_forward, cs231n_rnn.rnn_backward, replay=broken)
    cli = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "x.py:f", "--clip", "value=-1"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 2 and "positive number" in cli.stderr


def test_the_headline_names_gradients_wrong_in_other_cases_than_the_one_shown(tmp_path):
    """An untransposed recurrent matrix: at T=1 (the case shown) only dh0 is wrong; the headline
    must still say that dWx, dWh, db and dx are wrong in the longer cases."""
    rnn = _load_module(tmp_path, "rnn_untransposed", UNTRANSPOSED)
    result = V.verify_layer(rnn.rnn_forward, rnn.rnn_backward, "rnn-tanh", "cs231n")
    headline = result.summary()
    assert not result.ok and "matrix-not-transposed" in headline
    shown = {g.name for g in result.wrong}
    others = {name for c in result.cases for name in c.wrong} - shown
    assert others, "the case shown hides no wrong gradient here: the test does not test the headline"
    assert "also wrong in other cases" in headline and all(name in headline for name in others), headline


UNTRANSPOSED = '''
import numpy as np

def rnn_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1])); prev = h0; steps = []
    for t in range(T):
        nxt = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        steps.append((x[:, t], prev, nxt)); h[:, t] = nxt; prev = nxt
    return h, (steps, Wx, Wh)

def rnn_backward(dh, cache):
    steps, Wx, Wh = cache
    N, T, H = dh.shape
    dx = np.zeros((N, T, Wx.shape[0])); dWx = np.zeros_like(Wx); dWh = np.zeros_like(Wh); db = np.zeros(H)
    dnext = np.zeros((N, H))
    for t in reversed(range(T)):
        x, prev, nxt = steps[t]
        da = (dh[:, t] + dnext) * (1 - nxt ** 2)
        dx[:, t] = da @ Wx.T; dWx += x.T @ da; dWh += prev.T @ da; db += da.sum(0)
        dnext = da @ Wh  # the mistake: Wh where Wh.T belongs
    return dx, dnext, dWx, dWh, db
'''
