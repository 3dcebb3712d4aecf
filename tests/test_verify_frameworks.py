"""symrnn.verify.frameworks: PyTorch autograd Functions, custom operators and modules, and JAX
custom_vjp functions, verified as NumPy layers (tests/corpus_torch, tests/corpus_jax).

Every planted bug is caught and localised (the gradient, the gate block, the first wrong step or
message, the named mistake, or the hygiene finding); the correct code passes in float64 and
float32, and a 1% error in one step's message at T = 40 is caught in float32 at that step."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
from corpus_torch import gru as torch_gru, lstm as torch_lstm, rnn as torch_rnn, wrapped

from symrnn.verify import verify_framework
from symrnn.verify.frameworks import framework_of

CELLS = {"rnn-tanh": torch_rnn, "lstm": torch_lstm, "gru": torch_gru}
T, CHUNK = 8, 3


def check_localised(result, expected, T=T, chunk=CHUNK):
    """The report says what ``expected`` (a corpus BUGS entry) says the bug is."""
    assert not result.ok
    loc = result.localisation
    if "hygiene" in expected:
        assert expected["hygiene"] in [f.kind for f in result.hygiene], result.hygiene
        assert all(f.severity == "error" for f in result.hygiene if f.kind == expected["hygiene"])
        return
    assert loc["gradient"] == expected["gradient"], loc
    if "block" in expected:
        assert loc["block"] == expected["block"], loc
    if "fingerprint" in expected:
        assert result.fingerprint is not None and result.fingerprint.name == expected["fingerprint"]
    if "path" in expected:
        assert loc["path"] == expected["path"], loc
    step = expected.get("step")
    if step == "mid":  # the 1% scales dL/dh at step T//2 + 1: the message from T//2 + 2 to T//2 + 1
        assert loc["step"] == T // 2 + 2, loc
    elif step == "chunk":  # the first wrong message leaves the last chunk's first step
        assert loc["step"] == (T - 1) // chunk * chunk + 1, loc
    elif step is not None:
        assert loc["step"] == step, loc


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_torch_functions_pass(cell, dtype):
    result = verify_framework(CELLS[cell].make(), cell, dtype=dtype)
    assert result.ok, str(result)
    assert result.dtype_model.name == dtype
    assert f"{dtype} on cpu" in result.found


@pytest.mark.parametrize("cell,bug", [(c, b) for c in sorted(CELLS) for b in CELLS[c].BUGS])
def test_every_planted_torch_bug_is_caught_and_localised(cell, bug):
    result = verify_framework(CELLS[cell].make(bug), cell)
    check_localised(result, CELLS[cell].BUGS[bug])


T40 = dict(dtype="float32", T=40, N=2, lengths=())


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_float32_at_T40_no_false_alarm(cell):
    right = verify_framework(CELLS[cell].make(), cell, **T40)
    assert right.ok and right.dtype_model.name == "float32", str(right)


@pytest.mark.slow  # ~20 s: the catalogue's truncation mutants are swept at T = 40 before the bug is placed
def test_float32_at_T40_a_one_percent_message_error_is_caught_at_its_step():
    wrong = verify_framework(torch_lstm.make("message-1pct"), "lstm", **T40)
    check_localised(wrong, torch_lstm.BUGS["message-1pct"], T=40)


def test_the_cell_and_the_layout_are_found_from_the_forward():
    result = verify_framework(torch_gru.make(), None)
    assert result.ok and result.cell == "gru" and "gates r z n" in result.found
    wrong = verify_framework(torch_lstm.make("gates-i-f-swapped"), None)
    assert wrong.cell == "lstm" and wrong.localisation["block"] == "i,f"


def test_a_module_batch_first_with_pytorch_names_and_its_weights_put_back():
    module = wrapped.LSTMModule(3, 4)
    weight = module.weight_ih_l0
    result = verify_framework(module, None, dtype="float32")
    assert result.ok, str(result)
    assert "batch-first" in result.found and result.dtype_model.name == "float32"
    assert module.weight_ih_l0 is weight and weight.dtype == torch.float64 and weight.shape == (16, 3)
    wrong = verify_framework(wrapped.LSTMModule(3, 4, bug="gates-i-f-swapped"), "lstm")
    assert wrong.localisation["gradient"] == "dweight_ih_l0" and wrong.localisation["block"] == "i,f"


def test_a_saved_tensor_modified_after_the_function_returned_is_hygiene():
    result = verify_framework(wrapped.ScaledAfterForward(3, 4), "lstm")
    assert not result.ok  # the values did not change, but the saved output's version counter did
    assert [f.kind for f in result.hygiene] == ["saved-tensor-modified"]
    assert "argument 6 of ctx.save_for_backward" in result.hygiene[0].message
    assert "saved-tensor-modified" in str(result)


def test_a_torch_library_custom_operator():
    assert verify_framework(wrapped.rnn_op, None).ok
    wrong = verify_framework(wrapped.rnn_op_buggy, "rnn-tanh")
    assert wrong.fingerprint.name == "h-t-for-h-prev" and wrong.localisation["gradient"] == "dweight_hh"


def test_the_exact_route_agrees_with_torch_autograd_of_the_same_equations():
    """An independent route: torch.autograd through the plain forward (no custom backward) passes."""
    class Plain(torch.nn.Module):
        def forward(self, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, hs = h0, []
            for t in range(x.shape[0]):
                h = torch.tanh(x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
                hs.append(h)
            return torch.stack(hs)

    def plain(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        return Plain()(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)

    class Through(torch.autograd.Function):  # autograd of the plain forward, as a Function
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
            return plain(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)

        @staticmethod
        def backward(ctx, dh):
            with torch.enable_grad():
                inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
                return torch.autograd.grad(plain(*inputs), inputs, dh)

    result = verify_framework(Through, "rnn-tanh", scale=1.5)
    assert result.ok, str(result)
    assert max(g.max_abs_error / max(g.exact_norm, 1e-300) for g in result.gradients) < 1e-12


def test_unknown_targets_and_dtypes_are_refused():
    assert framework_of(np.tanh) is None and framework_of(torch_lstm.LSTMFunction) == "torch"
    with pytest.raises(ValueError, match="verify_layer"):
        verify_framework(np.tanh)
    with pytest.raises(ValueError, match="float64"):
        verify_framework(torch_lstm.LSTMFunction, "lstm", dtype="int8")

    class Unnamed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a

    with pytest.raises(ValueError, match="roles"):
        verify_framework(Unnamed)


def test_the_command_line_and_the_pytest_fixture(capsys, symrnn_verify):
    from symrnn.cli import main

    path = os.path.join(os.path.dirname(__file__), "corpus_torch", "lstm.py")
    assert main(["verify", f"{path}:LSTMFunction", "--dtype", "float32"]) == 0
    assert "float32 on cpu" in capsys.readouterr().out
    assert main(["verify", f"{path}:LSTMFunction", "--cell", "lstm"]) == 0
    assert symrnn_verify.framework(torch_rnn.RNNFunction, cell="rnn-tanh").ok


def test_numpy_verification_works_without_torch_and_jax():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['jax'] = None\n"
            "import symrnn.verify as V\n"
            "from symrnn import example_backprop as ex\n"
            "from symrnn.verify.frameworks import framework_of\n"
            "assert V.verify_layer(ex.rnn_forward, ex.rnn_backward, cell='rnn-tanh', layout='cs231n').ok\n"
            "assert framework_of(ex.rnn_backward) is None\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


@pytest.mark.slow  # half precision: ~10-30 s each on a busy machine
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_no_false_alarm_and_a_gross_bug_caught(dtype):
    pytest.importorskip("ml_dtypes")
    for cell in ("rnn-tanh", "lstm"):
        right = verify_framework(CELLS[cell].make(), cell, dtype=dtype, lengths=(2,))
        assert right.ok and right.dtype_model.name == dtype, str(right)
    wrong = verify_framework(torch_lstm.make("forget-sigmoid-derivative-as-output"), "lstm", dtype=dtype, lengths=(2,))
    assert not wrong.ok and wrong.localisation["gradient"] == "dweight_ih"


def test_a_cell_that_cannot_be_traced_asks_to_be_declared():
    """(A cell that is no built-in one is traced from torch.export's graph: tests/test_verify_frameworks_traced.py.)"""
    from symrnn.verify.trace import TracingError

    class Leaky(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, hs = h0, []
            for t in range(x.shape[0]):
                a = x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
                h = torch.where(a > 0, torch.tanh(a), 0.5 * h)  # a branch on values
                hs.append(h)
            return torch.stack(hs)

    with pytest.raises(TracingError, match="Declare the cell instead"):
        verify_framework(Leaky, None)


# -- nn.LSTM's own signature: forward(input, hx=None), hx = (h_0, c_0) -----------------------------
@pytest.mark.parametrize("batch_first,layer_axis", [(False, True), (True, True), (False, False)])
def test_a_module_with_nn_lstm_signature_gets_h0_and_c0_in_its_hx(batch_first, layer_axis):
    for dtype in ("float64", "float32"):
        module = wrapped.LSTMStateModule(3, 4, batch_first=batch_first, layer_axis=layer_axis)
        weight = module.weight_ih_l0
        result = verify_framework(module, None, dtype=dtype)
        assert result.ok and result.cell == "lstm" and result.dtype_model.name == dtype, str(result)
        shape = "(1, N, H)" if layer_axis else "(N, H)"
        assert f"(state hx = (h0, c0), each {shape})" in result.found
        assert ("batch-first" in result.found) == batch_first
        assert module.weight_ih_l0 is weight and not hasattr(module, "inner")  # its own weights put back


def test_a_bug_behind_nn_lstm_signature_is_caught_and_localised():
    bug = "cell-path-dropped"  # the dc0 the module's hx tuple carries back
    check_localised(verify_framework(wrapped.LSTMStateModule(3, 4, bug=bug), None), torch_lstm.BUGS[bug])


def test_torch_nn_lstm_and_gru_themselves_at_their_own_sizes():
    """torch's own modules (autograd's backward): the state forms hx = (h_0, c_0) and hx, (1, N, H)."""
    torch.manual_seed(0)
    lstm_module, gru_module = torch.nn.LSTM(3, 4).double(), torch.nn.GRU(3, 4, batch_first=True).double()
    weight = lstm_module.weight_hh_l0
    result = verify_framework(lstm_module, "lstm", lengths=())
    assert result.ok and "(state hx = (h0, c0), each (1, N, H))" in result.found, str(result)
    assert lstm_module.weight_hh_l0 is weight and lstm_module._flat_weights[1] is weight
    result = verify_framework(gru_module, "gru", lengths=())
    assert result.ok and "(state hx (1, N, H))" in result.found and "batch-first" in result.found, str(result)


# -- the replay line of a command-line run ---------------------------------------------------------
@pytest.mark.parametrize("source,options,expected", [
    ("from corpus_torch import lstm\nWrong = lstm.make('message-1pct')\n", ["--dtype", "float32"], "dweight_ih"),
    ("from corpus_torch import heads\nWrong = heads.make('weight-summed-over-heads')\n", ["--heads", "2"],
     "heads-reduced")])
def test_the_command_line_prints_a_command_line_that_replays_the_case(tmp_path, monkeypatch, capsys, source,
                                                                     options, expected):
    import shlex

    from symrnn.cli import main

    tests = os.path.dirname(os.path.abspath(__file__))
    (tmp_path / "wrong.py").write_text(f"import sys\nsys.path.insert(0, {tests!r})\n{source}")
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "wrong.py:Wrong", *options, "--save-to", "case.npz"]) == 1
    out = capsys.readouterr().out
    replay = next(line for line in out.splitlines() if line.startswith("replay: "))
    assert replay == f"replay: symrnn verify wrong.py:Wrong {' '.join(options)} --replay case.npz", replay
    assert main(shlex.split(replay.removeprefix("replay: "))[1:]) == 1  # the line, run: the same case, wrong
    again = capsys.readouterr().out
    assert "replayed minimal case" in again and expected in again.splitlines()[0], again
    assert main(["verify", "symrnn.example_backprop:rnn_backward", "--heads", "2"]) == 2
    assert "--heads applies to PyTorch or JAX code" in capsys.readouterr().err
