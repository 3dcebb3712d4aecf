"""What the generated NumPy code keeps per step (:mod:`symrnn.engine.transient`): S6's spreads and folds
are never stored, its let of parameters ``A = -exp(A_log)`` is computed once (a read-only view over all
steps in the cache), and the gradients equal those of the layout that stores everything (the fused
writer's, compiled here as NumPy code) and of the scalar oracle, an independent route."""
import numpy as np
import pytest

import symrnn as sr
from symrnn.engine.backward_code import BackwardWriter
from symrnn.engine.cells_matrix import mlstm, s6
from symrnn.engine.structure import contraction_code, fold_values, spread_values, structural_matrix
from symrnn.oracles import ScalarOracle


def problem(cell, T=5, N=3, D=2, H=4, seed=0):
    m = sr.Model(cell, D=D, H=H, loss="upstream").compile()
    rng = np.random.default_rng(seed)
    X, G = rng.normal(size=(T, N, D)), rng.normal(size=(T, N, m.state_size(m.out)))
    return m, m.init_params(seed=seed, scale=0.7), X, G


def stored_everywhere(code):
    """The block's forward and backward with every let and product stored per step (``lean=False``)."""
    return (code._compile(code._forward_source(lean=False), "forward"),
            code._compile(BackwardWriter(code, lean=False).source(), "backward"))


@pytest.mark.parametrize("cell", [s6(3), s6(2, "zoh"), mlstm(2)], ids=["s6", "s6-zoh", "mlstm"])
def test_lean_code_equals_the_stored_layout(cell):
    m, params, X, G = problem(cell)
    code = m.cell_code
    lean = m.loss_and_grads(params, X, G)
    code.forward, code.backward = stored_everywhere(code)
    full = m.loss_and_grads(params, X, G)
    assert abs(lean[0] - full[0]) <= 1e-12 * max(1.0, abs(full[0]))
    for k, g in full[1].items():
        assert np.abs(lean[1][k] - g).max() <= 1e-12 * max(1.0, np.abs(g).max()), k


def test_s6_stores_no_spread_and_computes_A_once():
    m, params, X, G = problem(s6(3))
    code = m.cell_code
    spreads = {f"P{g.index}" for g in code.groups.values() if code._fixed_group(g)}
    assert spreads and code.transient == {int(p[1:]) for p in spreads}
    _p, _X, cache = m.run_cell(params, X)
    assert not spreads & set(cache)
    A = cache["C_A"]
    assert A.shape == (5, 3, m.sizes["HN"]) and not A.flags.writeable and A.strides[:2] == (0, 0)
    np.testing.assert_array_equal(A[2, 1], -np.exp(params["A_log"]))
    assert "exp__fn(A_log__p)" in code.forward_source.split("for t in range(T):")[0]  # before the loop
    for p in spreads:
        assert f"empty('{p}', (T," not in code.forward_source
        assert f"cache['{p}']" not in code.backward_source


def test_s6_agrees_with_the_scalar_oracle():
    m, params, X, G = problem(s6(2), T=3, N=2, D=2, H=2)
    loss, grads = m.loss_and_grads(params, X, G)
    ref_loss, ref = ScalarOracle(m, 3, 3).loss_and_grads(params, X, G)
    assert abs(loss - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    for k, g in ref.items():
        assert np.abs(grads[k] - g).max() <= 1e-12 * max(1.0, np.abs(g).max()), k


@pytest.mark.parametrize("heads, repeat, block", [(3, 4, 1), (1, 5, 3), (2, 3, 4), (4, 1, 2), (1, 6, 1)])
def test_spreads_and_folds_are_the_products_with_their_matrices(heads, repeat, block):
    rng = np.random.default_rng(1)
    small, big = heads * block, heads * repeat * block
    v, y = rng.normal(size=(7, small)), rng.normal(size=(7, big))
    np.testing.assert_array_equal(spread_values(v, repeat, block),
                                  v @ structural_matrix("spread", big, small, repeat, block).T)
    np.testing.assert_allclose(fold_values(y, repeat, block),
                               y @ structural_matrix("fold", small, big, repeat, block).T, rtol=1e-13, atol=1e-13)


def test_the_fused_writer_keeps_the_stored_layout():
    """The fused writer reads the forward's header for its per-step arrays: it gets the stored layout."""
    m, _params, _X, _G = problem(s6(3))
    source = m.cell_code._forward_source(lean=False)
    assert all(f"empty('P{i}', (T," in source for i in m.cell_code.transient)


@pytest.mark.parametrize("first, second", [
    ((3, 4, 1), (1, 3, 4)),    # C q with one head: E copies every entry 4 times, E' tiles w of 4
    ((6, 2, 1), (3, 2, 2)),    # C q per head (3 heads of 2 x 2)
    ((1, 5, 3), (5, 3, 1)),    # w^T X: E' copies w 3 times, E sums over the 5 rows
    ((2, 3, 4), (6, 4, 1)),    # w^T X per head
])
def test_a_sum_of_a_product_with_a_copy_is_one_batched_product(first, second):
    """``E^T (X * (E' w))`` from :func:`contraction_code` against the products with the 0/1 matrices."""
    rng = np.random.default_rng(2)
    (A, R, B), (A2, R2, B2) = first, second
    big = A * R * B
    assert big == A2 * R2 * B2
    E = structural_matrix("spread", big, A * B, R, B)
    E2 = structural_matrix("spread", big, A2 * B2, R2, B2)
    N, X, w = 3, rng.normal(size=(3, big)), rng.normal(size=(3, A2 * B2))
    code = contraction_code(("spread", R, B), ("spread", R2, B2), "X", "w")
    assert code is not None
    np.testing.assert_allclose(eval(code, {"np": np, "N": N, "X": X, "w": w}), (X * (w @ E2.T)) @ E,
                               rtol=1e-13, atol=1e-13)


def test_no_batched_product_where_the_shapes_do_not_allow_it():
    assert contraction_code(("spread", 4, 1), ("spread", 4, 1), "X", "w") is None  # the same copy twice
    assert contraction_code(("spread", 3, 2), ("spread", 2, 3), "X", "w") is None
    assert contraction_code(("fold", 4, 1), ("spread", 3, 4), "X", "w") is None


def test_s6_and_mlstm_backwards_use_the_batched_products():
    """S6: dutilde, dB and dC without copying B or utilde over the state or multiplying the state by the
    copy of dCs (the adjoint of a fold); A's gradient multiplied once."""
    backward = sr.Model(s6(16), D=3, H=4, loss="upstream").cell_code.backward_source
    loop, after = backward.split("for t in range(T - 1, -1, -1):")[1].split("grads = {}")
    assert loop.count("np.matmul(") == 3 and "fold__fn(" not in loop.split("a2 = ")[1].split("\n")[0]
    assert "spread__fn(B__t" not in loop and "spread__fn(utilde__t" not in loop
    assert "+= A__bar_t" in loop and "* (A__C[0, 0])" in after
    mbackward = sr.Model(mlstm(2), D=3, H=4, loss="upstream").cell_code.backward_source
    assert mbackward.count("np.matmul(") >= 2  # dv and dk of v k^T


def test_an_expression_computed_into_its_target_equals_the_expression():
    """:meth:`StepPrinter.into`: sums, differences, products and functions applied in place."""
    import sympy as sp
    from symrnn.engine.codegen import StepPrinter
    from symrnn.engine.functions import RULES, sigmoid, softplus

    a, b, c = sp.symbols("a b c")
    rng = np.random.default_rng(3)
    values = {"a": rng.normal(size=(4, 5)), "b": rng.normal(size=(4, 5)), "c": rng.normal(size=5)}
    namespace = {"np": np, **{f"{n}__fn": r.numpy for n, r in RULES.items()}, **values}
    printer = StepPrinter({a: "a", b: "b", c: "c"})
    for expr in (a + b + c, 1 - a * b, a * b * c - 2 * c, sigmoid(a * b + c), sp.tanh(1 - a), softplus(-a) * b,
                 sp.exp(a) + sigmoid(b), -a * b, a * (b + c)):
        expected = eval(printer.doprint(expr), dict(namespace))
        scope = dict(namespace, out=np.full((4, 5), np.nan))
        exec("\n".join(printer.into("out", expr)), scope)
        np.testing.assert_allclose(scope["out"], expected, rtol=1e-14, atol=1e-15, err_msg=str(expr))


def fast_weights(read_back=False):
    """A user's matrix cell ``C_t = C_{t-1} / 2 + v k^T``, ``h_t = tanh(C_t q)``, the product with the state
    written as the let ``y = C_t * (1 q^T)`` and its row sums; ``read_back``: ``y`` also read elementwise
    (``h_t = tanh(C_t q) + tanh(F (y * y))``), so the backward reads its value."""
    import sympy as sp
    cell = sr.Cell("fast-weights-y" + ("-read" if read_back else ""), "a user's matrix cell")
    x = cell.input()
    h = cell.state("h")
    cell.size("HH", sp.Symbol("H") ** 2)
    C = cell.state("C", "HH")
    rows, cols = cell.spread("E_r", "HH", "H", "H"), cell.spread("E_c", "HH", "H", "H", "H")
    fold = cell.fold("F_r", "H", "HH", "H")
    q, k, v = (cell.let(n, cell.param(f"W_{n}", "H", "D") @ x) for n in "qkv")
    C_t = cell.update(C, C / 2 + (rows @ v) * (cols @ k))
    y = cell.let("y", C_t * (cols @ q))
    out = sr.tanh(cell.let("r", fold @ y))
    if read_back:
        out = out + sr.tanh(cell.let("r2", fold @ cell.let("yy", y * y)))
    cell.update(h, out)
    cell.output("h")
    return cell.validate()


@pytest.mark.parametrize("cell, let", [(s6(3), "sw"), (fast_weights(), "y"), (fast_weights(True), None)],
                         ids=["s6", "user-cell", "user-cell-read-back"])
def test_a_let_read_only_through_a_fold_is_never_made(cell, let):
    """``y = X * (E' w)`` read only as ``F y`` and never by the backward: the forward computes ``F y`` as one
    batched product and neither makes nor stores ``y``; the cache computes ``y`` at every step when asked
    (the decay study's Jacobians read it), equal to the stored layout's, as are the gradients."""
    from symrnn.engine.jacobians import step_jacobians
    from symrnn.engine.symbols import tsym
    m, params, X, G = problem(cell)
    code = m.cell_code
    assert set(code.contracted_lets) == ({tsym(let)} if let else set())
    lean_cache = m.run_cell(params, X)[2]
    lean = m.loss_and_grads(params, X, G)
    jac = step_jacobians(m, params, X)
    code.forward, code.backward = stored_everywhere(code)
    full_cache = m.run_cell(params, X)[2]
    full = m.loss_and_grads(params, X, G)
    assert abs(lean[0] - full[0]) <= 1e-12 * max(1.0, abs(full[0]))
    for k, g in full[1].items():
        assert np.abs(lean[1][k] - g).max() <= 1e-12 * max(1.0, np.abs(g).max()), k
    for k, J in step_jacobians(m, params, X).items():
        np.testing.assert_allclose(jac[k], J, rtol=1e-13, atol=1e-14)
    for b in code.lets:
        key = f"C_{b}"
        assert (key in dict.keys(lean_cache)) == (b != let), key  # stored unless contracted
        np.testing.assert_allclose(lean_cache[key], full_cache[key], rtol=1e-14, atol=0, err_msg=key)
    if let:
        assert f"empty('C_{let}'" not in code.forward_source and f"cache['C_{let}']" not in code.backward_source
        loop = code.forward_source.split("for t in range(T):")[1]
        assert f"{let}__t" not in loop and "np.matmul(" in loop
    ref_loss, ref = ScalarOracle(m, 5, 5).loss_and_grads(params, X, G)  # an independent route
    assert abs(lean[0] - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    for k, g in ref.items():
        assert np.abs(lean[1][k] - g).max() <= 1e-12 * max(1.0, np.abs(g).max()), k
