"""Any name, any input: each case found by trying names and inputs a user might pick
(issue "any cell a user can write works or is refused clearly") is exact or a clear error.

Exactness is judged against the torch oracle (lambdify of the cell's equations, torch's own
autograd) and the scalar oracle, which share no code with the generated gradients."""
import re
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symrnn as sr
from symrnn.checks import max_error
from symrnn.oracles import ScalarOracle
from symrnn.oracles.torch_autograd import torch_loss_and_grads

N, T, D, H, K = 2, 3, 2, 3, 2


def raises(cls, pattern):
    return pytest.raises(cls, match=pattern)


def elman(names, bias_name="b", extra=None):
    """An Elman cell whose quantity names are given: names = (input, state, pre-activation)."""
    x_name, h_name, a_name = names
    cell = sr.Cell("elman-" + "-".join(names))
    x = cell.input(x_name)
    h = cell.state(h_name)
    U, W, b = cell.param("U", "H", "D"), cell.param("W", "H", "H"), cell.param(bias_name, "H")
    a = cell.let(a_name, U @ x + W @ h + b)
    cell.update(h, sr.tanh(a) if extra is None else extra(a, h))
    return cell


def exact(model, loss_kind="cross-entropy", tol=1e-12, tiny=True):
    """Loss and gradients agree with torch autograd and (tiny sizes) the scalar oracle."""
    rng = np.random.default_rng(0)
    params = model.init_params(1, scale=0.7)
    x = rng.normal(size=(T, N, D))
    if loss_kind == "cross-entropy":
        y = rng.integers(0, K, size=(T, N))
    else:
        y = rng.normal(size=(T, N, K if loss_kind == "mse" else model.state_size(model.out)))
    h0 = {s: rng.normal(size=(N, model.state_size(s))) for s in model.state_names}
    loss, grads = model.loss_and_grads(params, x, y, h0=h0)
    assert sorted(grads) == sorted(model.gradient_keys)
    ref_loss, ref = torch_loss_and_grads(model, params, x, y, h0=h0)
    assert abs(loss - ref_loss) <= tol * max(1, abs(ref_loss))
    err, where = max_error(grads, ref)
    assert err <= tol, f"{where}: {err:.2e} from torch"
    if tiny:
        s_loss, s_ref = ScalarOracle(model, T, T).loss_and_grads(params, x, y, h0=h0)
        assert abs(loss - s_loss) <= tol * max(1, abs(s_loss))
        err, where = max_error(grads, s_ref)
        assert err <= tol, f"{where}: {err:.2e} from the scalar oracle"
    return grads


# -- names that collided with the generated code's own variables ------------------------------
@pytest.mark.parametrize("bias", ["t", "p0", "m0", "h_prev", "T", "N", "X", "H", "np", "tanh", "range",
                                  "dtype", "cache", "EXT", "dS", "G0", "P0", "S0", "k0", "q0", "w0", "Q0",
                                  "lambda", "class", "None", "True", "params", "grads", "sizes", "empty"])
def test_any_bias_name_is_exact(torch64, bias):
    exact(sr.Model(elman(("x", "h", "a"), bias_name=bias), D=D, H=H, K=K))


@pytest.mark.parametrize("names", [("x", "h", "m0"), ("x", "h", "m1"), ("t", "T", "N"), ("inp", "None", "lambda"),
                                   ("α", "β", "γ"), ("X", "S_h", "C_a"), ("h_prev", "d_a", "carry_h")])
def test_any_quantity_name_is_exact(torch64, names):
    exact(sr.Model(elman(names), D=D, H=H, K=K))


@pytest.mark.parametrize("bias", ["y", "L", "lse", "scale", "values", "program", "math", "d__L", "x__1_0"])
def test_scalar_oracle_is_exact_for_its_own_names(torch64, bias):
    exact(sr.Model(elman(("x", "h", "a"), bias_name=bias), D=D, H=H, K=K))


def test_reserved_and_unusable_names_are_refused():
    cell = sr.Cell("names")
    for bad in ["_a", "__class__", "1a", "a b", "", "a-b", 3, None]:
        with raises(sr.CellDefinitionError, r"is not a usable name: use a Python identifier that does not start"):
            cell.param(bad, "H")
    with raises(sr.CellDefinitionError, r"not in Unicode normal form NFKC, so Python would read it as 'fi'"):
        cell.param("\ufb01", "H")  # the ligature 'fi'


# -- result keys ---------------------------------------------------------------------------------
def test_initial_state_key_clashing_with_a_parameter_is_refused_either_way():
    cell = sr.Cell("keys")
    cell.input()
    cell.state("w1")
    with raises(sr.CellDefinitionError, r"The param name 'w10' is the key of the initial-state gradient of state "
                                        r"'w1' \(grads\['w10'\]\)"):
        cell.param("w10", "H")
    cell = sr.Cell("keys")
    cell.input()
    cell.param("h0", "H")
    with raises(sr.CellDefinitionError, r"A state named 'h' has its initial-state gradient under grads\['h0'\], "
                                        r"which is already the name of a parameter"):
        cell.state("h")


def test_input_gradient_is_keyed_by_the_input_name(torch64):
    grads = exact(sr.Model(elman(("inp", "h", "a")), D=D, H=H, K=K))
    assert "x" not in grads and grads["inp"].shape == (T, N, D)
    cell = elman(("inp", "h", "a"), bias_name="x")  # a parameter may be called x when the input is not
    grads = exact(sr.Model(cell, D=D, H=H, K=K))
    assert grads["x"].shape == (H,)


def test_input_named_like_a_readout_parameter_is_refused():
    with raises(sr.CellDefinitionError, r"an input named \['c'\].*names of the readout"):
        sr.Model(elman(("c", "h", "a")), D=D, H=H, K=K)
    sr.Model(elman(("c", "h", "a")), D=D, H=H, loss="upstream")  # no readout, no clash


@pytest.mark.parametrize("state", ["c", "V"])
def test_output_state_may_share_a_name_with_the_readout(torch64, state):
    exact(sr.Model(elman(("x", state, "a")), D=D, H=H, K=K))


# -- functions and constants -------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    lambda a, h: sp.sqrt(1 + a ** 2) - 1,
    lambda a, h: sp.pi * sr.tanh(a) / 4 + sp.E * a / 10,
    lambda a, h: sp.Rational(1, 3) * a + a ** 3 / 7,
    lambda a, h: sp.Abs(a) * sp.sign(a) / 2,
    lambda a, h: sp.Max(a, h) - sp.Min(a, 0),
    lambda a, h: sp.Max(a, h, 0) + sp.Min(a, h, -a),
    lambda a, h: sp.sin(a) * sp.cos(h),
    lambda a, h: 2 ** sr.tanh(a) - 1,
])
def test_sympy_constructs_are_exact(torch64, body):
    exact(sr.Model(elman(("x", "h", "a"), extra=body), D=D, H=H, K=K))


class softsign(sp.Function):
    def fdiff(self, argindex=1):
        return 1 / (1 + sp.Abs(self.args[0])) ** 2  # its derivative uses Abs: rewritten too


def test_registered_functions_work_end_to_end(torch64):
    import torch

    sr.register_function(softsign, lambda a: a / (1 + np.abs(a)), torch=lambda a: a / (1 + torch.abs(a)),
                         mpmath=lambda a: a / (1 + abs(a)))
    sr.register_function(sp.sin, np.sin)  # the same class again: allowed
    exact(sr.Model(elman(("x", "h", "a"), extra=lambda a, h: softsign(a) + sp.sin(h) / 3), D=D, H=H, K=K))


def test_a_class_named_like_a_builtin_is_a_function_of_its_own(torch64):
    import torch

    class tanh(sp.Function):  # the user's own "tanh": a softer one
        def fdiff(self, argindex=1):
            return sp.sech(self.args[0] / 2) ** 2 / 2

    sp_sech = sp.sech  # its derivative uses sech, which needs a rule too
    sr.register_function(sp_sech, lambda a: 1 / np.cosh(a), torch=lambda a: 1 / torch.cosh(a),
                         mpmath=lambda a: 1 / __import__("mpmath").cosh(a))
    sr.register_function(tanh, lambda a: np.tanh(a / 2), torch=lambda a: torch.tanh(a / 2),
                         mpmath=lambda a: __import__("mpmath").tanh(a / 2))
    model = sr.Model(elman(("x", "h", "a"), extra=lambda a, h: tanh(a) + sr.tanh(h) / 2), D=D, H=H, K=K)
    exact(model)
    assert "tanh_2__fn(" in model.cell_code.forward_source


def test_unsupported_constructs_are_refused_at_definition():
    cell = sr.Cell("bad")
    x = cell.input()
    h = cell.state("h")
    cases = [(sp.floor(h), r"the function floor has no NumPy implementation; register one"),
             (sp.I * h, r"imaginary unit"), (h + sp.oo, r"not finite"), (h * sp.zoo, r"not finite"),
             (sp.Piecewise((h, h > 0), (0, True)), r"the function Piecewise has no NumPy implementation"),
             (sp.Matrix([h]), r"ImmutableDenseMatrix.*is not part of the cell language"), (h > 0, r"is not a scalar expression"),
             (sp.Heaviside(h, 1), r"Heaviside.*1/2 at 0")]
    for expr, pattern in cases:
        with raises(sr.CellDefinitionError, pattern):
            cell.let("a", expr)


def test_max_tie_splits_the_gradient_and_abs_has_zero_slope_at_zero():
    """At an exact tie (where finite differences mean nothing) the documented convention holds."""
    cell = sr.Cell("tie")
    x = cell.input()
    h = cell.state("h")
    U = cell.param("U", "H", "D")
    a = cell.let("a", U @ x)
    cell.update(h, sp.Max(a, h) + sp.Abs(a))
    model = sr.Model(cell, D=1, H=1, loss="upstream")
    params = {"U": np.array([[1.0]])}
    x = np.array([[[0.5]]])
    _, grads = model.loss_and_grads(params, x, np.ones((1, 1, 1)), h0={"h": np.array([[0.5]])})
    assert grads["h0"][0, 0] == 0.5 and grads["U"][0, 0] == (0.5 + 1.0) * 0.5
    _, grads = model.loss_and_grads(params, 0 * x, np.ones((1, 1, 1)), h0={"h": np.array([[0.0]])})
    assert grads["h0"][0, 0] == 0.5 and grads["x"][0, 0, 0] == 0.5  # abs'(0) = 0, max splits


# -- text pasted into generated source ---------------------------------------------------------
def test_cell_names_are_never_pasted_into_source(tmp_path, torch64):
    marker = tmp_path / "ran"
    name = f'x"""\n__import__("pathlib").Path({str(marker)!r}).touch()\n"""'
    cell = elman(("x", "h", "a"))
    cell.name = name
    model = sr.Model(cell, D=D, H=H, K=K)
    exact(model)
    assert not marker.exists()
    assert name not in model.cell_code.forward_source + model.cell_code.backward_source
    assert repr(name) in model.cell_code.forward.__doc__


# -- crashes and unclear messages ----------------------------------------------------------------
@pytest.fixture
def rnn():
    model = sr.Model("rnn-tanh", D=D, H=H, K=K)
    rng = np.random.default_rng(0)
    return model, model.init_params(0), rng.normal(size=(T, N, D)), rng.integers(0, K, size=(T, N))


def test_empty_batch(rnn):
    m, p, x, y = rnn
    with raises(sr.ShapeError, r"inputs has shape \(3, 0, 2\); expected \(T, N, D\).*N >= 1"):
        m.loss_and_grads(p, x[:, :0], y[:, :0])


def test_cell_that_never_reads_its_state_gives_zero_arrays(torch64):
    cell = sr.Cell("memoryless")
    x = cell.input()
    h = cell.state("h")
    U = cell.param("U", "H", "D")
    cell.update(h, sr.tanh(U @ x))
    grads = exact(sr.Model(cell, D=D, H=H, K=K))
    assert isinstance(grads["h0"], np.ndarray) and grads["h0"].shape == (N, H) and not grads["h0"].any()


@pytest.mark.parametrize("spec, pattern", [
    ("raise RuntimeError('boom')\n", r"Importing .*user_cell.py raised RuntimeError: boom"),
    ("def f(:\n", r"user_cell.py has a syntax error at line 1"),
    ("def f(n):\n    return n\n", r"Calling f\(\) from .* failed: .*missing 1 required positional argument"),
    ("def f():\n    raise KeyError('k')\n", r"f\(\) from .* raised KeyError"),
])
def test_cli_reports_errors_in_user_files(tmp_path, spec, pattern):
    path = tmp_path / "user_cell.py"
    path.write_text(spec)
    run = subprocess.run([sys.executable, "-m", "symrnn.cli", "derive", f"{path}:f", "-o", str(tmp_path / "o.tex")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert re.search(pattern, run.stderr), run.stderr


def test_size_K_needed_by_the_cell_under_the_upstream_loss():
    cell = sr.Cell("k-sized")
    x = cell.input()
    h = cell.state("h")
    U, Z = cell.param("U", "H", "D"), cell.param("Z", "H", "K")
    e = cell.let("e", sr.tanh(U @ x))
    cell.update(h, sr.tanh(e + h))
    with raises(sr.ShapeError, r"cell 'k-sized' has quantities or parameters of size K: give the size K"):
        sr.Model(cell, D=D, H=H, loss="upstream")


@pytest.mark.parametrize("value", [True, 2.0, 0, -1, None])
def test_sizes_must_be_positive_integers(value):
    with raises(sr.ShapeError, r"H must be a positive integer, got"):
        sr.Model("rnn-tanh", D=2, H=value if value is not None else "4", K=2)


@pytest.mark.parametrize("bad, pattern", [
    (lambda y: y.astype(float), r"targets are float64 of shape \(T_out, N\).*class indices must be integers"),
    (lambda y: y.astype(bool), r"targets has dtype bool; expected integer class indices"),
])
def test_target_dtypes(rnn, bad, pattern):
    m, p, x, y = rnn
    with raises(sr.ShapeError, pattern):
        m.loss_and_grads(p, x, bad(y))


def test_none_parameter(rnn):
    m, p, x, y = rnn
    with raises(sr.ShapeError, r"params\['W'\] is None; expected an array of real numbers"):
        m.loss_and_grads({**p, "W": None}, x, y)


def test_mixed_dtypes_name_every_parameter(rnn):
    m, p, x, y = rnn
    with raises(sr.ShapeError, r"params mix dtypes \(float64: \['U', 'W', 'b', 'V'\]; float32: \['c'\]\)"):
        m.loss_and_grads({**p, "c": p["c"].astype(np.float32)}, x, y)


def test_complex_arrays_are_refused(rnn):
    m, p, x, y = rnn
    with raises(sr.ShapeError, r"params\['W'\] holds complex numbers"):
        m.loss_and_grads({**p, "W": p["W"] + 0j}, x, y)
    with raises(sr.ShapeError, r"inputs holds complex numbers"):
        m.loss_and_grads(p, x + 1j, y)


def test_batch_major_inputs_are_explained(rnn):
    m, p, x, y = rnn
    batch_major = np.zeros((N, T, D + 1))
    with raises(sr.ShapeError, r"inputs are time-major \(for batch-major arrays \(N, T, D\) pass "
                               r"x.transpose\(1, 0, 2\)\)"):
        m.loss_and_grads(p, batch_major, y)


@pytest.mark.parametrize("scale", [-1, float("nan"), "big"])
def test_init_params_scale(scale):
    with raises(sr.ParameterError, r"scale must be a finite number >= 0, got"):
        sr.Model("rnn-tanh", D=2, H=3, K=2).init_params(0, scale=scale)



@pytest.mark.parametrize("kw, words", [(dict(seed="a"), r"seed must be a non-negative integer.*got 'a'"),
                                       (dict(seed=-1), r"seed must be .*got -1"),
                                       (dict(dtype="float16"), r"dtype must be np.float64 or np.float32"),
                                       (dict(dtype="no-such-type"), r"dtype must be .*got 'no-such-type'")])
def test_init_params_seed_and_dtype(kw, words):
    with raises(sr.ParameterError, words):
        sr.Model("rnn-tanh", D=2, H=3, K=2).init_params(**kw)

def test_non_finite_results_are_named():
    cell = sr.Cell("log-of-negative")
    x = cell.input()
    h = cell.state("h")
    U = cell.param("U", "H", "D")
    cell.update(h, sr.log(U @ x))
    model = sr.Model(cell, D=1, H=1, K=2)
    with raises(sr.NonFiniteError, r"The loss of Model\('log-of-negative'.* is nan.*domain of a function"):
        model.loss_and_grads({"U": np.ones((1, 1)), "V": np.ones((2, 1)), "c": np.zeros(2)},
                             -np.ones((2, 1, 1)), np.zeros((2, 1), dtype=int))
