"""Bad input, as a new user gives it: a table of (input, expected exception type, expected words).

Every row must raise a ``SymRNNError`` subclass (Python rows) or exit with code 2 and no traceback
(CLI rows), with a message that holds the expected words.  Add a row for every new refusal: the
count can only grow.
"""
from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import sympy as sp

import symrnn as sr
from symrnn.cli import main
from symrnn.decay import decay_profile, make_params, sweep, write_report
from symrnn.report import write_report as derivation_report
from symrnn.verify.shrink import load_case

LSTM = sr.Model("lstm", D=2, H=3, loss="upstream")
RNN = sr.Model("rnn-tanh", D=2, H=3, loss="upstream")


def case_file(tmp, **change):
    """A replay file as symrnn verify saves it, with entries changed (None removes one)."""
    meta = dict(label="case", states=["h"], final_states=[], truncation=None, clip=None, loss="cross-entropy",
                reduction="sum", architecture="many-to-many")
    arrays = dict(meta=np.array(json.dumps(meta)), x=np.zeros((3, 2, 2)), targets=np.zeros((3, 2), dtype=int),
                  state0_h=np.zeros((2, 4)), param_W=np.zeros((4, 4)))
    for k, v in change.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    path = tmp / "case.npz"
    np.savez(path, **arrays)
    return path


def meta_json(**change):
    meta = dict(label="case", states=["h"], final_states=[], truncation=None, clip=None)
    meta.update(change)
    return np.array(json.dumps({k: v for k, v in meta.items() if v != "DROP"}))


def heaviside_cell(value):
    cell = sr.Cell("hv")
    x, h = cell.input("x"), cell.state("h")
    U, W = cell.param("U", "H", "D"), cell.param("W", "H", "H")
    cell.update(h, sp.tanh(U @ x + W @ h) * sp.Heaviside(U @ x, value))
    return sr.Model(cell, D=2, H=3, loss="upstream")


def not_npz(tmp):
    path = tmp / "w.npz"
    path.write_text("these are not weights")
    return str(path)


def pickled_npz(tmp):
    path = tmp / "w.npz"
    np.savez(path, weight_ih_l0=np.array([{"a": 1}], dtype=object))
    return str(path)


def wrong_names_npz(tmp):
    path = tmp / "w.npz"
    np.savez(path, kernel=np.zeros((2, 12)))
    return str(path)


PYTHON = [  # (id, call(tmp), exception, words)
    ("replay: not an npz", lambda tmp: load_case(not_npz(tmp)), sr.SymRNNError, "not an .npz archive"),
    ("replay: no file", lambda tmp: load_case(tmp / "none.npz"), sr.SymRNNError, "no such file"),
    ("replay: no meta", lambda tmp: load_case(case_file(tmp, meta=None)), sr.SymRNNError, "no 'meta' entry"),
    ("replay: meta not JSON", lambda tmp: load_case(case_file(tmp, meta=np.array("{oops"))), sr.SymRNNError,
     "not JSON"),
    ("replay: meta a list", lambda tmp: load_case(case_file(tmp, meta=np.array("[1, 2]"))), sr.SymRNNError,
     "not an object"),
    ("replay: meta key missing", lambda tmp: load_case(case_file(tmp, meta=meta_json(states="DROP"))),
     sr.SymRNNError, "lacks 'states'"),
    ("replay: meta of the wrong kind", lambda tmp: load_case(case_file(tmp, meta=meta_json(states="h"))),
     sr.SymRNNError, "wrong kind"),
    ("replay: array x missing", lambda tmp: load_case(case_file(tmp, x=None)), sr.SymRNNError, "lacks the arrays 'x'"),
    ("replay: initial state missing", lambda tmp: load_case(case_file(tmp, state0_h=None)), sr.SymRNNError,
     "'state0_h'"),
    ("replay: x not 3-D", lambda tmp: load_case(case_file(tmp, x=np.zeros((3, 2)))), sr.SymRNNError,
     "malformed"),
    ("replay: targets of another batch", lambda tmp: load_case(case_file(tmp, targets=np.zeros((3, 5), dtype=int))),
     sr.SymRNNError, "not your code"),
    ("replay: state of another batch", lambda tmp: load_case(case_file(tmp, state0_h=np.zeros((5, 4)))),
     sr.SymRNNError, "'state0_h' (5, 4)"),
    ("replay: a bad truncation", lambda tmp: load_case(case_file(tmp, meta=meta_json(truncation=[0, -1]))),
     sr.SymRNNError, "truncation"),
    ("weights: not an npz", lambda tmp: sr.decay.load_params(RNN, not_npz(tmp)), sr.SymRNNError, "np.savez"),
    ("weights: pickled npz", lambda tmp: sr.decay.load_params(RNN, pickled_npz(tmp)), sr.SymRNNError,
     "plain arrays"),
    ("weights: names missing", lambda tmp: sr.decay.weights.sizes_of("rnn-tanh", {"kernel": np.zeros((2, 3))}),
     sr.SymRNNError, "weight_ih_l0"),
    ("weights: no file", lambda tmp: sr.decay.load_params(RNN, tmp / "none.npz"), sr.SymRNNError, "No weights file"),
    ("weights: not a dict", lambda tmp: sr.decay.load_params(RNN, [1, 2]), sr.SymRNNError, "give a dict"),
    ("decay: h0 of the wrong shape", lambda tmp: decay_profile(RNN, make_params(RNN), 5, h0={"h": np.zeros(4)}),
     sr.ShapeError, "has shape (4,)"),
    ("decay: h0 array of the wrong shape", lambda tmp: decay_profile(RNN, make_params(RNN), 5, h0=np.zeros((2, 2))),
     sr.ShapeError, "size 3"),
    ("decay: LSTM h0 as a tuple", lambda tmp: decay_profile(LSTM, make_params(LSTM), 5,
                                                            h0=(np.zeros(3), np.zeros(3))),
     sr.ShapeError, "pass a dict"),
    ("decay: h0 names no state", lambda tmp: decay_profile(LSTM, make_params(LSTM), 5, h0={"q": np.zeros(3)}),
     sr.ShapeError, "not states"),
    ("decay: h0 unknown word", lambda tmp: decay_profile(RNN, make_params(RNN), 5, h0="ones"), sr.ParameterError,
     "'zero', 'random'"),
    ("decay: inputs unknown word", lambda tmp: decay_profile(RNN, make_params(RNN), 5, inputs="zeros"),
     sr.UnknownNameError, "inputs='zeros'"),
    ("decay: inputs not numbers", lambda tmp: decay_profile(RNN, make_params(RNN), 5, inputs=[["a"]]),
     sr.ShapeError, "not an array of numbers"),
    ("decay: inputs of the wrong shape", lambda tmp: decay_profile(RNN, make_params(RNN), 5,
                                                                   inputs=np.zeros((5, 1, 7))),
     sr.ShapeError, "expected (T, 1, D)"),
    ("decay: qr_every 0", lambda tmp: decay_profile(RNN, make_params(RNN), 5, qr_every=0), sr.ShapeError,
     "qr_every"),
    ("decay: k too large", lambda tmp: decay_profile(RNN, make_params(RNN), 5, k=9), sr.ShapeError, "0 <= k <= 3"),
    ("decay: T not an integer", lambda tmp: decay_profile(RNN, make_params(RNN), 2.5), sr.ShapeError, "T must be"),
    ("decay: forget bias without b_f", lambda tmp: make_params(RNN, forget_bias=1.0), sr.ParameterError,
     "no forget-gate bias"),
    ("decay: forget bias not a number", lambda tmp: make_params(LSTM, forget_bias="1"), sr.ParameterError,
     "finite number"),
    ("decay: unknown init", lambda tmp: make_params(RNN, init="he"), sr.UnknownNameError, "initialisation"),
    ("decay: negative scale", lambda tmp: make_params(RNN, scale=-1), sr.ParameterError, ">= 0"),
    ("decay report: no result", lambda tmp: write_report(None, tmp / "r"), sr.ParameterError, "SweepResult"),
    ("derivation report: no model", lambda tmp: derivation_report(None, "tex", tmp / "r.tex"), sr.ParameterError,
     "needs a symrnn.Model"),
    ("decay report: a folder that is a file", lambda tmp: write_report(
        sweep(["rnn-tanh"], [1.0], H=2, D=1, T=5, grad_T=0, max_workers=1, progress=False),
        (tmp / "f").write_text("") or tmp / "f"), sr.SymRNNError, "is a file"),
    ("sweep: unknown cell", lambda tmp: sweep(["rnn-tahn"], [1.0], max_workers=1, progress=False),
     sr.UnknownNameError, "Unknown cell"),
    ("Heaviside with another value at 0", lambda tmp: heaviside_cell(sp.Rational(1, 3)), sr.CellDefinitionError,
     "1/2 at 0"),
]


@pytest.mark.parametrize("call, exception, words", [r[1:] for r in PYTHON], ids=[r[0] for r in PYTHON])
def test_python_refusals(tmp_path, call, exception, words):
    with pytest.raises(exception) as info:
        call(tmp_path)
    assert isinstance(info.value, sr.SymRNNError)
    assert words in str(info.value), str(info.value)


@pytest.mark.parametrize("value, kind", [(None, "tie_step"), (sp.S.Half, "tie_step"), (0, "step")])
def test_heaviside_is_accepted_with_its_value_at_zero(value, kind):
    """``sp.Heaviside(u)`` (SymPy stores H0 = 1/2) is the tie step; ``Heaviside(u, 0)`` is ``sr.step``; the
    gradients match central differences away from the jump."""
    cell = sr.Cell("hv")
    x, h = cell.input("x"), cell.state("h")
    U, W = cell.param("U", "H", "D"), cell.param("W", "H", "H")
    u = U @ x
    cell.update(h, sp.tanh(u + W @ h) * (sp.Heaviside(u) if value is None else sp.Heaviside(u, value)))
    model = sr.Model(cell, D=2, H=3, loss="upstream")
    assert kind in {type(f).__name__ for f in model.cell.equations[0].rhs.atoms(sp.Function)}
    rng = np.random.default_rng(0)
    params = {"U": rng.normal(size=(3, 2)), "W": rng.normal(size=(3, 3))}
    x_, y = rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 2, 3))
    loss, grads = model.loss_and_grads(params, x_, y)
    e = np.zeros_like(params["W"])
    e[1, 2] = 1e-6
    up = model.loss_and_grads({**params, "W": params["W"] + e}, x_, y)[0]
    down = model.loss_and_grads({**params, "W": params["W"] - e}, x_, y)[0]
    assert abs((up - down) / 2e-6 - grads["W"][1, 2]) < 1e-7


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def blocked_dir(tmp):
    """A folder that cannot be made (its parent is a file): refused as a read-only one is, also for root."""
    (tmp / "file").write_text("")
    return tmp / "file" / "out"


def user_code(tmp):
    path = tmp / "code.py"
    path.write_text("def rnn_forward(*args):\n    pass\n\n\ndef rnn_backward(*args):\n    pass\n")
    return f"{path}:rnn_backward"


CLI = [  # (id, argv(tmp), words)
    ("decay weights not npz", lambda tmp: ["decay", "--cells", "rnn-tanh", "--weights", not_npz(tmp), "--out",
                                           str(tmp / "o")], "np.savez"),
    ("decay weights pickled", lambda tmp: ["decay", "--cells", "rnn-tanh", "--weights", pickled_npz(tmp), "--out",
                                           str(tmp / "o")], "plain arrays"),
    ("decay weights wrong names", lambda tmp: ["decay", "--cells", "rnn-tanh", "--weights", wrong_names_npz(tmp),
                                               "--out", str(tmp / "o")], "weight_ih_l0"),
    ("decay weights missing", lambda tmp: ["decay", "--cells", "rnn-tanh", "--weights", str(tmp / "no.npz"),
                                           "--out", str(tmp / "o")], "no such file"),
    ("decay forget bias without LSTM", lambda tmp: ["decay", "--cells", "gru", "--forget-bias", "1", "--out",
                                                    str(tmp / "o"), "--no-progress"], "forget-gate bias"),
    ("decay out is a file", lambda tmp: ["decay", "--out", str((tmp / "f").write_text("") or tmp / "f")],
     "is a file"),
    ("derive-all into a folder that cannot be made", lambda tmp: ["derive-all", "--out", str(blocked_dir(tmp))],
     "Cannot make the output folder"),
    ("demo into a folder that cannot be made", lambda tmp: ["demo", "--out", str(blocked_dir(tmp))],
     "Cannot make the output folder"),
    ("verify replay of a malformed case", lambda tmp: ["verify", user_code(tmp), "--replay",
                                                       str(case_file(tmp, meta=np.array("{")))], "not JSON"),
    ("verify replay of a case without arrays", lambda tmp: ["verify", user_code(tmp), "--replay",
                                                            str(case_file(tmp, x=None))], "lacks the arrays"),
    ("verify --search negative", lambda tmp: ["verify", user_code(tmp), "--search", "-1"], "--search -1"),
    ("verify --seed negative", lambda tmp: ["verify", user_code(tmp), "--seed", "-1"], "--seed -1"),
    ("verify --T 0", lambda tmp: ["verify", user_code(tmp), "--T", "0"], "T must be a positive integer"),
    ("verify unknown layout", lambda tmp: ["verify", user_code(tmp), "--layout", "tensorflow-9"],
     "Unknown layout 'tensorflow-9'"),
    ("verify missing file", lambda tmp: ["verify", str(tmp / "nope.py") + ":rnn_backward"], "No file"),
    ("verify no forward", lambda tmp: ["verify", user_code(tmp).rpartition(":")[0] + ":rnn_forward", "--cell", "rnn-tanh",
                                       "--layout", "cs231n"], "No forward"),
]


@pytest.mark.parametrize("argv, words", [r[1:] for r in CLI], ids=[r[0] for r in CLI])
def test_cli_refusals_exit_2_without_a_traceback(tmp_path, argv, words):
    code, out, err = cli(argv(tmp_path))
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and words in err, err


def test_read_only_folder_is_refused_before_any_work(tmp_path):
    """derive-all and demo into a folder without write permission (skipped as root, who may write anywhere)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: a read-only folder is writable")
        for argv in (["derive-all", "--out", str(ro)], ["demo", "--out", str(ro)]):
            code, out, err = cli(argv)
            assert code == 2 and "Traceback" not in err and "writable" in err, err
    finally:
        ro.chmod(0o700)
