"""``symrnn verify`` is never silent: one exit code per outcome, and user code that exits is reported.

0 right, 1 wrong gradients, 2 usage error, 3 the user's code failed (raised or exited, at import or in
a call), 4 the forward differs from the cell.  Each runs in a real process: ``os._exit`` would end it.
"""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

import symrnn.verify as V
from symrnn.errors import UserCodeError, UserCodeExit

RNN = textwrap.dedent('''
    import numpy as np

    def rnn_forward(x, h0, Wx, Wh, b):
        N, T, _ = x.shape
        h, prev, cache = np.zeros((N, T, h0.shape[1])), h0, []
        for t in range(T):
            nxt = ACTIVATION(x[:, t] @ Wx + prev @ Wh + b)
            cache.append((x[:, t], prev, nxt))
            h[:, t] = prev = nxt
        return h, (cache, Wx, Wh)

    def rnn_backward(dh, cache):
        steps, Wx, Wh = cache
        N, T, H = dh.shape
        dx, dWx, dWh, db = np.zeros((N, T, Wx.shape[0])), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
        carry = np.zeros((N, H))
        for t in reversed(range(T)):
            x, prev, h = steps[t]
            da = (dh[:, t] + carry) * (1 - h ** 2)
            dx[:, t] = da @ Wx.T
            dWx += x.T @ da
            dWh += prev.T @ da
            db += da.sum(0)
            carry = da @ TRANSPOSED
        RETURN
    ''')


def source(activation="np.tanh", transposed="Wh.T", ending="return dx, carry, dWx, dWh, db", top=""):
    return top + RNN.replace("ACTIVATION", activation).replace("TRANSPOSED", transposed).replace("RETURN", ending)


def verify(tmp_path, text, *options):
    path = tmp_path / "student.py"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "student.py:rnn_backward", *options],
                          capture_output=True, text=True, cwd=tmp_path)


def test_exit_0_right(tmp_path):
    out = verify(tmp_path, source())
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("RIGHT: rnn-tanh layer code")


def test_exit_1_wrong_gradients(tmp_path):
    out = verify(tmp_path, source(transposed="Wh"))
    assert out.returncode == 1, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("WRONG: dh0") and len(first) <= 100


def test_exit_2_usage(tmp_path):
    out = verify(tmp_path, source(), "--layout", "no-such-layout")
    assert out.returncode == 2 and "symrnn: error:" in out.stderr
    assert subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "missing.py:f"], capture_output=True,
                          text=True, cwd=tmp_path).returncode == 2


def test_a_misspelt_cell_is_a_usage_error_not_a_forward_that_differs(tmp_path):
    out = verify(tmp_path, source(), "--cell", "lstmm")
    assert out.returncode == 2 and "lstmm" in out.stderr and "rnn-tanh" in out.stderr


@pytest.mark.parametrize("layout", ["pytorch", "keras"])
def test_a_weights_only_preset_with_cell_finds_the_calling_convention(tmp_path, layout):
    """`--help` offers pytorch and keras; in layer mode they name weights, not a calling convention,
    so the convention is found from the forward instead of refused."""
    out = verify(tmp_path, source(), "--cell", "rnn-tanh", "--layout", layout)
    assert out.returncode == 0 and out.stdout.startswith("RIGHT"), out.stderr


def test_dtype_is_refused_for_numpy_code_not_ignored(tmp_path):
    out = verify(tmp_path, source(), "--dtype", "float32")
    assert out.returncode == 2 and "--dtype float32 applies to PyTorch or JAX code" in out.stderr
    assert "NumPy code" in out.stderr and out.stdout == ""


@pytest.mark.parametrize("ending, said", [
    ("exit()", "called exit() at student.py:"),
    ("quit()", "called exit() at student.py:"),
    ("import sys; sys.exit(0)", "called sys.exit(0) at student.py:"),
    ("import sys; sys.exit(7)", "called sys.exit(7) at student.py:"),
    ("import os; os._exit(0)", "called os._exit(0) at student.py:"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt at student.py:"),
    ("raise ValueError('my bug')", "raised ValueError: my bug"),
])
def test_exit_3_the_code_did_not_run_to_the_end(tmp_path, ending, said):
    out = verify(tmp_path, source(ending=ending))
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert said in out.stderr and "(in rnn_backward)" in out.stderr or "ValueError" in said
    assert out.stdout == ""


@pytest.mark.parametrize("top, said", [
    ("exit()\n", "Importing student.py did not run to the end: it called exit() at student.py:1"),
    ("import sys\nsys.exit(0)\n", "called sys.exit(0) at student.py:2 (in <module>)"),
    ("import os\nos._exit(0)\n", "called os._exit(0) at student.py:2"),
    ("raise RuntimeError('at import')\n", "raised RuntimeError: at import"),
])
def test_exit_3_at_import(tmp_path, top, said):
    out = verify(tmp_path, source(top=top))
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert said in out.stderr


def test_exit_4_forward_differs(tmp_path):
    out = verify(tmp_path, source(activation="np.sin"), "--cell", "rnn-tanh", "--layout", "cs231n")
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert out.stdout.startswith("FORWARD DIFFERS: rnn-tanh layer code computes another function (h at step 1)")
    alone = verify(tmp_path, source(activation="np.sin"), "--cell", "rnn-tanh")  # its layout searched for
    assert alone.returncode == 4 and "computes no 'rnn-tanh' in any layout tried" in alone.stderr, alone.stderr


def test_exit_4_forward_differs_from_every_cell_tried(tmp_path):
    """No --cell: no built-in cell matches and the code cannot be traced (it branches on a value)."""
    out = verify(tmp_path, source(activation="(lambda a: a / (1 + np.abs(a)) if float(a.flat[0]) < 1e9 else a)"))
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert "computes no built-in cell" in out.stderr and "student.py" in out.stderr



@pytest.mark.parametrize("options", [(), ("--cell", "rnn-tanh")])
def test_exit_4_a_forward_that_returns_nan_is_named_as_such(tmp_path, options):
    """A NaN from the forward on finite inputs is its own mistake, not a cell computed differently."""
    out = verify(tmp_path, source(activation="(lambda a: np.sqrt(-a ** 2 - 1))"), *options)
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert "The forward returned nan for h at step 1 of 4, example 0, unit 0" in out.stderr, out.stderr
    assert "computed differently" not in out.stderr and "Traceback" not in out.stderr

def test_a_traced_cell_is_verified_without_cell(tmp_path):
    """No --cell, a sin activation: the cell is traced from the code and the backward judged against it."""
    out = verify(tmp_path, source(activation="np.sin"))
    assert out.returncode == 1 and "traced from the code" in out.stdout and "sin(" in out.stdout, out.stdout


def test_help_says_the_file_runs_and_lists_the_exit_codes():
    out = subprocess.run([sys.executable, "-m", "symrnn.cli", "verify", "--help"], capture_output=True, text=True)
    assert "top-level code runs" in out.stdout
    for line in ("0  the gradients are right", "3  the code under test failed", "4  the forward differs"):
        assert line in out.stdout


def student(tmp_path, text):
    path = tmp_path / "student_module.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("student_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_api_raises_user_code_exit(tmp_path):
    module = student(tmp_path, source(ending="import sys; sys.exit(0)"))
    with pytest.raises(UserCodeExit, match=r"did not run to the end: it called sys.exit\(0\)") as info:
        V.verify_layer(module.rnn_forward, module.rnn_backward, "rnn-tanh", "cs231n")
    assert isinstance(info.value, UserCodeError) and "student_module.py" in info.value.where


def test_os_exit_is_restored_after_the_user_code(tmp_path):
    before = os._exit
    module = student(tmp_path, source(ending="import os; os._exit(3)"))
    with pytest.raises(UserCodeExit, match=r"os._exit\(3\)"):
        V.verify_layer(module.rnn_forward, module.rnn_backward, "rnn-tanh", "cs231n")
    assert os._exit is before


def _put_one(queue):
    queue.put(1)


def test_a_child_the_code_forks_still_ends(tmp_path):
    """multiprocessing ends a forked child with os._exit: that child ends; only the verifier's process refuses it."""
    import multiprocessing

    from symrnn import example_backprop as example

    def rnn_backward(dh, cache):
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_put_one, args=(queue,))
        child.start()
        child.join()
        assert child.exitcode == 0 and queue.get(timeout=10) == 1
        return example.rnn_backward(dh, cache)

    result = V.verify_layer(example.rnn_forward, rnn_backward, "rnn-tanh", "cs231n", T=3, lengths=())
    assert result.ok, str(result)
