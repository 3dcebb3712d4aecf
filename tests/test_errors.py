"""Bad input gives a clear error that names what was expected.

Every error symrnn raises on purpose is a :class:`symrnn.SymRNNError` and a
``ValueError`` (``TypeError`` for wrong kinds of objects); the messages name
the argument, the expected shape or the allowed names, and for cell
definitions the equation at fault.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp

import symrnn as sr
from symrnn.engine import functions as sr_functions
from symrnn.models.layouts import from_keras, from_torch, to_keras, to_torch

T, N, D, H, K = 6, 2, 3, 4, 5


def raises(kind, match):
    """pytest.raises for a symrnn error, also checking the ValueError contract."""
    assert issubclass(kind, sr.SymRNNError) and issubclass(kind, ValueError)
    return pytest.raises(kind, match=match)


@pytest.fixture(scope="module")
def lstm():
    m = sr.Model("lstm", D=D, H=H, K=K)
    rng = np.random.default_rng(0)
    return m, m.init_params(0), rng.normal(size=(T, N, D)), rng.integers(0, K, size=(T, N))


@pytest.mark.parametrize("kind", [sr.ShapeError, sr.NonFiniteError, sr.UnknownNameError, sr.ParameterError,
                                  sr.CellDefinitionError, sr.DerivationTooLargeError])
def test_error_hierarchy(kind):
    assert issubclass(kind, sr.SymRNNError) and issubclass(kind, ValueError)


def test_missing_rule_error_is_a_type_error():
    assert issubclass(sr.MissingRuleError, sr.SymRNNError) and issubclass(sr.MissingRuleError, TypeError)


# -- shapes -------------------------------------------------------------------------
def test_inputs_with_wrong_rank(lstm):
    m, p, x, y = lstm
    with raises(sr.ShapeError, r"inputs has shape \(2, 3\); expected \(T, N, D\) = \(steps, batch, 3\).*time-major"):
        m.loss_and_grads(p, x[0], y)


def test_inputs_with_wrong_feature_size(lstm):
    m, p, x, y = lstm
    with raises(sr.ShapeError, re.escape("inputs has shape (6, 2, 2); expected (T, N, D) = (steps, batch, 3)")):
        m.loss_and_grads(p, x[..., :2], y)


def test_zero_steps(lstm):
    m, p, x, y = lstm
    with raises(sr.ShapeError, r"T >= 1"):
        m.loss_and_grads(p, x[:0], y[:0])
    with raises(sr.ShapeError, r"T_out >= 1"):
        m.loss_and_grads(p, x, y[:0])


@pytest.mark.parametrize("bad, match", [
    (lambda y: y[:, :1], re.escape("targets has shape (6, 1); expected (6, 2) (class indices (T_out, N))")),
    (lambda y: y[:5], r"many-to-many.*equal length.*T_in=6, T_out=5"),
    (lambda y: y + K, r"class indices in \[5, 9\]; expected 0\.\.4"),
    (lambda y: y.astype(float), r"targets are float64 of shape \(T_out, N\) = \(6, 2\): class indices must be "
                                r"integers \(use targets.astype\(int\)\); probabilities have shape \(T_out, N, K\)"),
    (lambda y: y.astype(float)[..., None].repeat(4, -1), r"expected \(6, 2, 5\).*probabilities \(T_out, N, K\)"),
    (lambda y: y > 2, r"targets has dtype bool; expected integer class indices"),
    (lambda y: np.int64(3), r"targets has shape \(\); expected a leading time axis"),
])
def test_cross_entropy_targets(lstm, bad, match):
    m, p, x, y = lstm
    with raises(sr.ShapeError, match):
        m.loss_and_grads(p, x, bad(y))


def test_mse_and_upstream_targets():
    x = np.zeros((T, N, D))
    mse = sr.Model("rnn-tanh", D=D, H=H, K=K, loss="mse")
    with raises(sr.ShapeError, re.escape("targets has shape (6, 2); expected (6, 2, 5) ((T_out, N, K))")):
        mse.loss_and_grads(mse.init_params(0), x, np.zeros((T, N), dtype=int))
    up = sr.Model("rnn-tanh", D=D, H=H, loss="upstream")
    with raises(sr.ShapeError, re.escape("targets has shape (6, 2, 5); expected (6, 2, 4) ((T_out, N, H))")):
        up.loss_and_grads(up.init_params(0), x, np.zeros((T, N, K)))


@pytest.mark.parametrize("arch, x_steps, y_steps, match", [
    ("many-to-one", 6, 2, r"'many-to-one' needs targets with one step.*T_out=2"),
    ("one-to-many", 2, 6, r"'one-to-many' needs inputs with one step.*T_in=2"),
    ("one-to-one", 1, 2, r"'one-to-one' needs one input and one target step.*T_out=2"),
])
def test_architecture_lengths(arch, x_steps, y_steps, match):
    m = sr.Model("gru", D=D, H=H, K=K, architecture=arch)
    with raises(sr.ShapeError, match):
        m.loss_and_grads(m.init_params(0), np.zeros((x_steps, N, D)), np.zeros((y_steps, N), dtype=int))


def test_initial_state_shapes_and_names(lstm):
    m, p, x, y = lstm
    with raises(sr.ShapeError, re.escape("initial state h has shape (2, 3); expected (2, 4) ((N, H))")):
        m.loss_and_grads(p, x, y, h0=np.zeros((N, 3)))
    with raises(sr.ShapeError, re.escape("initial state c has shape (3, 4); expected (2, 4)")):
        m.loss_and_grads(p, x, y, h0={"c": np.zeros((3, H))})
    with raises(sr.ShapeError, r"h0 names unknown states \['q'\]; states are \['h', 'c'\]"):
        m.loss_and_grads(p, x, y, h0={"q": np.zeros((N, H))})


def test_parameter_shape(lstm):
    m, p, x, y = lstm
    with raises(sr.ShapeError, re.escape("params['U_i'] has shape (4, 2); expected (4, 3)")):
        m.loss_and_grads({**p, "U_i": p["U_i"][:, :2]}, x, y)
    with raises(sr.ShapeError, re.escape("params['c'] has shape (4,); expected (5,)")):
        m.loss_and_grads({**p, "c": np.zeros(H)}, x, y)


def test_missing_and_extra_parameters(lstm):
    m, p, x, y = lstm
    with raises(sr.ParameterError, r"missing \['W_f'\], unexpected \[\].*init_params"):
        m.loss_and_grads({k: v for k, v in p.items() if k != "W_f"}, x, y)
    with raises(sr.ParameterError, r"missing \[\], unexpected \['W_x'\]"):
        m.loss_and_grads({**p, "W_x": np.zeros((H, H))}, x, y)
    with raises(sr.ParameterError, r"params must be a dict of arrays, got list"):
        m.loss_and_grads(list(p.values()), x, y)


def test_parameter_dtype(lstm):
    m, p, x, y = lstm
    with raises(sr.ShapeError, r"float64 or float32, got float16"):
        m.loss_and_grads({k: v.astype(np.float16) for k, v in p.items()}, x, y)
    with raises(sr.ShapeError, r"params mix dtypes \(float64: \['U_i', .*\]; float32: \['b_o'\]\); give every "
                               r"parameter one dtype"):
        m.loss_and_grads({**p, "b_o": p["b_o"].astype(np.float32)}, x, y)


def test_non_numeric_parameter_is_named(lstm):
    m, p, x, y = lstm
    with raises(sr.ShapeError, r"params\['U_i'\] has dtype <U3; expected an array of real numbers"):
        m.loss_and_grads({**p, "U_i": np.full((H, D), "abc")}, x, y)


# -- non-finite values --------------------------------------------------------------
@pytest.mark.parametrize("where", ["inputs", "params", "targets", "h0", "c0"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(lstm, where, value):
    m, p, x, y = lstm
    h0 = {"h": np.zeros((N, H)), "c": np.zeros((N, H))}
    probs = np.full((T, N, K), 1.0 / K)  # float targets can hold NaN
    if where == "inputs":
        x = x.copy()
        x[2, 1, 0] = value
        name, index = "inputs", "(2, 1, 0)"
    elif where == "params":
        p = {**p, "b_o": p["b_o"].copy()}
        p["b_o"][1] = value
        name, index = r"params\['b_o'\]", r"\(1,\)"
    elif where == "targets":
        probs[0, 1, 2] = value
        name, index = "targets", "(0, 1, 2)"
    else:
        h0[where[0]][1, 3] = value
        name, index = f"initial state {where[0]}", "(1, 3)"
    index = index if index.startswith("\\") else re.escape(index)
    with raises(sr.NonFiniteError, rf"{name} contains NaN or infinity \(first at index {index}"):
        m.loss_and_grads(p, x, probs, h0=h0)


def test_non_finite_h0_array():
    m = sr.Model("gru", D=D, H=H, K=K, loss="mse")
    h0 = np.zeros((N, H))
    h0[0, 0] = np.nan
    with raises(sr.NonFiniteError, r"initial state h contains NaN"):
        m.loss_and_grads(m.init_params(0), np.zeros((T, N, D)), np.zeros((T, N, K)), h0=h0)


# -- names --------------------------------------------------------------------------
def test_unknown_activation():
    with raises(sr.UnknownNameError, r"Unknown activation 'bogus'; expected one of \['relu', 'sigmoid', 'tanh'\]"):
        sr.rnn("bogus")


@pytest.mark.parametrize("kwargs, match", [
    (dict(architecture="many-to-few"), r"Unknown architecture 'many-to-few'; expected one of .*'many-to-many-delayed'"),
    (dict(loss="hinge"), r"Unknown loss 'hinge'; expected one of \['cross-entropy', 'half-mse', 'mse', 'upstream'\]"),
    (dict(reduction="avg"), r"Unknown reduction 'avg'; expected one of \('sum', 'mean', 'batch-mean', 'token-mean'\)"),
    (dict(cell="transformer"), r"Unknown cell 'transformer'; expected one of .*'gru-reset-before-chung'"),
])
def test_unknown_names(kwargs, match):
    kwargs = {"cell": "gru", **kwargs}
    with raises(sr.UnknownNameError, match):
        sr.Model(kwargs.pop("cell"), D=D, H=H, K=K, **kwargs)


def test_unknown_gru_convention():
    with raises(sr.UnknownNameError, r"update_convention 'bogus'; expected one of \('pytorch', 'chung'\)"):
        sr.gru(True, "bogus")


def test_model_sizes():
    with raises(sr.ShapeError, r"loss 'cross-entropy' has a readout: give the output size K"):
        sr.Model("gru", D=D, H=H)
    with raises(sr.ShapeError, r"H must be a positive integer, got 0"):
        sr.Model("gru", D=D, H=0, K=K)
    with raises(sr.ShapeError, r"D must be a positive integer, got 1\.5"):
        sr.Model("gru", D=1.5, H=H, K=K)
    with pytest.raises(TypeError, match=r"cell must be a Cell or a built-in cell name, got int"):
        sr.Model(3, D=D, H=H, K=K)


# -- cell definitions (refused when written) ------------------------------------------
def new_cell(name="c"):
    cell = sr.Cell(name)
    x, h = cell.input(), cell.state("h")
    return cell, x, h, cell.param("U", "H", "D"), cell.param("W", "H", "H")


def test_undefined_symbol_names_the_equation():
    cell, x, h, U, W = new_cell()
    with raises(sr.CellDefinitionError, r"In h\[t\] = tanh\(.*zz.*\): the symbol zz is not defined in cell 'c'"):
        cell.update(h, sr.tanh(U @ x + sp.Symbol("zz")))


def test_non_conforming_product():
    cell, x, h, U, W = new_cell()
    with raises(sr.CellDefinitionError, r"In a\[t\]: U has shape \('H', 'D'\) but h\[t-1\] has size H; "
                                        r"the shapes do not conform"):
        cell.let("a", U @ h)


def test_elementwise_size_mismatch():
    cell, x, h, U, W = new_cell()
    with raises(sr.CellDefinitionError, r"In h\[t\] = \.\.\.: the term .* mixes vectors of sizes \['D', 'H'\]"):
        cell.update(h, x * h)


def test_matrix_used_elementwise():
    cell, x, h, U, W = new_cell()
    with raises(sr.CellDefinitionError, r"In h\[t\] = tanh\(W\*h\[t-1\]\): the matrix W is used elementwise"):
        cell.update(h, sr.tanh(W * h))


def test_vector_on_the_left_of_a_product():
    cell, x, h, U, W = new_cell()
    b = cell.param("b", "H")
    with raises(sr.CellDefinitionError, r"In h\[t\]: b @ \.\.\. needs a matrix parameter on the left"):
        cell.update(h, b @ h)


@pytest.mark.parametrize("function", [sp.Function("q"), sp.erf])
def test_function_without_numpy_implementation(function):
    cell, x, h, U, W = new_cell()
    a = cell.let("a", U @ x)
    name = function.__name__
    with raises(sr.CellDefinitionError, rf"In h\[t\] = {name}\(a\[t\]\): the function {name} has no NumPy "
                                        r"implementation; register one with symrnn.register_function"):
        cell.update(h, function(a))


def test_function_sympy_cannot_differentiate(monkeypatch):
    class nodiff(sp.Function):  # no fdiff: sympy leaves Derivative(nodiff(a), a)
        nargs = 1

    rule = sr_functions.FunctionRule(nodiff, np.abs)
    monkeypatch.setitem(sr_functions.RULES, "nodiff", rule)
    monkeypatch.setitem(sr_functions._BY_CLASS, nodiff, rule)
    cell, x, h, U, W = new_cell()
    a = cell.let("a", U @ x)
    with raises(sr.CellDefinitionError, r"In h\[t\] = nodiff\(a\[t\]\): SymPy cannot differentiate it with "
                                        r"respect to a\[t\].*give the function an fdiff method"):
        cell.update(h, nodiff(a))


def test_state_never_updated():
    cell, x, h, U, W = new_cell("half")
    cell.state("g")
    cell.update(h, sr.tanh(U @ x + W @ h))
    with raises(sr.CellDefinitionError, r"Cell 'half': state\(s\) \['g'\] are never updated; "
                                        r"add cell.update\('g', expression\)"):
        cell.validate()
    with raises(sr.CellDefinitionError, r"\['g'\] are never updated"):
        sr.Model(cell, D=D, H=H, K=K)  # the model validates too


def test_cell_without_input_or_state():
    cell = sr.Cell("empty")
    with raises(sr.CellDefinitionError, r"Cell 'empty' has no input; call cell.input\(\)"):
        cell.validate()
    cell.input()
    with raises(sr.CellDefinitionError, r"Cell 'empty' has no state; call cell.state\('h'\)"):
        cell.validate()


def test_other_declaration_mistakes():
    cell, x, h, U, W = new_cell("d")
    with raises(sr.CellDefinitionError, r"State 'h' of cell 'd' is updated twice"):
        cell.update(h, sr.tanh(W @ h))
        cell.update(h, h)
    with raises(sr.CellDefinitionError, r"The name 'U' is already used in cell 'd'"):
        cell.param("U", "H")
    with raises(sr.CellDefinitionError, r"'1x' is not a usable name"):
        cell.param("1x", "H")
    with raises(sr.CellDefinitionError, r"parameter 'Q' has size 'Z'; expected one of \('D', 'H', 'K'\)"):
        cell.param("Q", "H", "Z")
    with raises(sr.CellDefinitionError, r"update\(g, \.\.\.\): g is not a declared state of cell 'd'"):
        cell.update("g", x)
    with raises(sr.CellDefinitionError, r"not a SymPy expression"):
        cell.let("e", "h[t-1] + ")
    with raises(sr.CellDefinitionError, r"output\('zz'\): not a state of 'd'"):
        cell.output("zz")


def test_cell_parameter_clashing_with_readout_is_refused():
    cell, x, h, U, W = new_cell("clash")
    c = cell.param("c", "H")
    cell.update(h, sr.tanh(U @ x + W @ h + c))
    with raises(sr.CellDefinitionError, r"parameter\(s\) or an input named \['c'\].*names of the readout"):
        m = sr.Model(cell, D=D, H=H, K=K)
        m.loss_and_grads(m.init_params(0), np.zeros((T, N, D)), np.zeros((T, N), dtype=int))


# -- layouts -------------------------------------------------------------------------
@pytest.mark.parametrize("cell, why", [
    ("rnn-sigmoid", r"nonlinearity='tanh' or 'relu'"),
    ("gru-reset-before", r"reset gate after the recurrent product"),
    ("gru-chung", r"not Chung's"),
    ("gru-reset-before-chung", r"resets after the product"),
])
def test_torch_layout_refuses_cells_torch_lacks(cell, why):
    params = sr.Model(cell, D=D, H=H, K=K).init_params(0)
    with raises(sr.UnknownNameError, rf"Cell '{cell}' has no PyTorch layout: .*{why}"):
        to_torch(cell, params)
    with raises(sr.UnknownNameError, rf"Cell '{cell}' has no PyTorch layout"):
        from_torch(cell, {})


def test_layouts_refuse_unknown_cells():
    with raises(sr.UnknownNameError, r"Unknown cell 'lstmx'; cells with a PyTorch layout: \['gru', 'lstm'"):
        to_torch("lstmx", {})
    with raises(sr.UnknownNameError, r"Cell 'gru-chung' has no Keras layout: Keras has no Chung"):
        to_keras("gru-chung", {})


def test_torch_layout_shapes():
    params = sr.Model("lstm", D=D, H=H, K=K).init_params(0)
    with raises(sr.ShapeError, re.escape("params['W_g'] has shape (4, 3); expected (4, 4)")):
        to_torch("lstm", {**params, "W_g": np.zeros((H, D))})
    with raises(sr.ParameterError, r"missing \['b_hn'\]"):
        to_torch("gru", {k: v for k, v in sr.Model("gru", D=D, H=H, K=K).init_params(0).items() if k != "b_hn"})
    sd = to_torch("lstm", params)
    with raises(sr.ShapeError, r"weight_hh_l0 has shape \(12, 4\); expected \(4\*H, H\)"):
        from_torch("lstm", {**sd, "weight_hh_l0": sd["weight_hh_l0"][:12]})
    with raises(sr.ShapeError, r"weight_ih_l0 has shape \(15, 3\); expected \(16, D\)"):
        from_torch("lstm", {**sd, "weight_ih_l0": sd["weight_ih_l0"][:15]})
    with raises(sr.ShapeError, r"bias_hh_l0 has shape \(8,\); expected \(16,\)"):
        from_torch("lstm", {**sd, "bias_hh_l0": np.zeros(8)})
    with raises(sr.ParameterError, r"no 'weight_ih_l1'"):
        from_torch("lstm", sd, layer=1)
    with raises(sr.ShapeError, r"projection"):
        from_torch("lstm", {**sd, "weight_hr_l0": np.zeros((2, H))})


def test_keras_layout_shapes():
    params = sr.Model("gru", D=D, H=H, K=K).init_params(0)
    k = to_keras("gru", params)
    with raises(sr.ShapeError, r"bias has shape \(12,\); expected \(2, 12\)"):
        from_keras("gru", {**k, "bias": k["bias"][0]})
    with raises(sr.ShapeError, r"kernel has shape \(3, 9\); expected \(D, 12\)"):
        from_keras("gru", {**k, "kernel": k["kernel"][:, :9]})
    with raises(sr.ParameterError, r"missing \['recurrent_kernel'\]"):
        from_keras("gru", {"kernel": k["kernel"]})


def test_upstream_loss_has_no_mean_reduction():
    with raises(sr.UnknownNameError, r"no reduction.*reduction='sum'"):
        sr.Model("rnn-tanh", D=D, H=H, loss="upstream", reduction="mean")


def test_a_vector_on_the_left_of_a_product_and_a_size_as_text_are_explained():
    """``h @ W`` and ``cell.size("HM", "H*H")`` (tryout8): messages that say what to write."""
    import symrnn as sr
    from symrnn.errors import CellDefinitionError

    c = sr.Cell("c")
    c.input()
    h, W = c.state("h"), c.param("W", "H", "H")
    with pytest.raises(CellDefinitionError, match=r"h @ W: .* matrix on the left; write W @ h"):
        h @ W
    with pytest.raises(CellDefinitionError, match=r"text is not parsed.*cell.size\('HM', sympy.Symbol\('H'\) \*\* 2\)"):
        c.size("HM", "H*H")


def test_a_mask_that_scores_no_step_is_warned_about():
    """All steps masked out, or every label -1 (tryout8): loss 0.0 (not -0.0), zero gradients, and a warning."""
    import numpy as np
    import symrnn as sr

    m = sr.Model("rnn-tanh", D=2, H=3, K=2)
    p, x = m.init_params(), np.ones((3, 2, 2))
    for kwargs in (dict(targets=np.zeros((3, 2), dtype=int), mask=np.zeros((3, 2), dtype=bool)),
                   dict(targets=-np.ones((3, 2), dtype=int))):
        with pytest.warns(UserWarning, match="scores no step"):
            loss, grads = m.loss_and_grads(p, x, **kwargs)
        assert loss == 0.0 and str(loss) == "0.0" and all(not np.any(g) for g in grads.values())
