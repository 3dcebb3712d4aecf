"""Exact Hessian-vector and Gauss-Newton products (:mod:`symrnn.engine.second_order`).

* ``H v`` equals torch's double backward (``torch.autograd.grad`` with ``create_graph``) to
  1e-12 relative for every built-in cell, whose torch forward passes are written here from the
  cells' equations (not from symrnn's code), and for fuzzed user cells (the torch forward of
  ``tests/fuzz_recipes.py``, built from the recipe alone), and for stacks of unidirectional layers;
* ``H v`` agrees with central differences of gradients on random problems of every cell,
  architecture, loss and reduction (``tests/strategies.py``), and is symmetric (``u.Hv = v.Hu``);
* ``G v`` equals ``J^T H_L J v`` with ``J`` and ``H_L`` computed by
  ``torch.autograd.functional.jacobian`` / ``hessian`` on small sizes;
* the losses' ``hessian_vector`` rules equal torch's.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import symrnn as sr

from fuzz_recipes import _torch_loss, to_torch, cells_and_recipes
from strategies import CELLS, problems

MATRIX_CELLS = ("mlstm", "s6")  # matrix-valued states: tests/test_second_order_matrix.py
VECTOR_CELLS = [c for c in CELLS if c not in MATRIX_CELLS]
from test_modern_cells import CELLS as MODERN, torch_step

TOL = 1e-12


# -- torch forward passes written from the equations --------------------------------------------

def torch_cell(name, torch, P, x, s):
    """One step of a built-in cell (column convention, PyTorch's equations; the cells of today from
    their papers, as tests/test_modern_cells.py writes them)."""
    sig, tanh = torch.sigmoid, torch.tanh
    if name in MODERN:
        return torch_step(torch, name, P, x, s)
    if name == "lru":  # Orvieto et al. 2023 in complex arithmetic, as tests/test_lru.py writes it
        lam = torch.exp(torch.complex(-torch.exp(P["nu"]), torch.exp(P["theta"])))
        B, C = torch.complex(P["B_re"], P["B_im"]), torch.complex(P["C_re"], P["C_im"])
        state = lam * torch.complex(s["h_re"], s["h_im"]) + torch.sqrt(1 - torch.abs(lam) ** 2) * (
            x.to(torch.complex128) @ B.T)
        return {"h_re": state.real, "h_im": state.imag, "out": (state @ C.T).real + P["d"] * x}

    def aff(g, inp, h):
        return inp @ P[f"U_{g}"].T + h @ P[f"W_{g}"].T + P[f"b_{g}"]

    if name.startswith("rnn-"):
        f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[name[4:]]
        return {"h": f(x @ P["U"].T + s["h"] @ P["W"].T + P["b"])}
    if name == "lstm":
        i, f, g, o = sig(aff("i", x, s["h"])), sig(aff("f", x, s["h"])), tanh(aff("g", x, s["h"])), sig(aff("o", x, s["h"]))
        c = f * s["c"] + i * g
        return {"h": o * tanh(c), "c": c}
    h = s["h"]
    r, z = sig(aff("r", x, h)), sig(aff("z", x, h))
    if "reset-before" in name:
        n = tanh(x @ P["U_n"].T + (r * h) @ P["W_n"].T + P["b_n"])
    else:
        n = tanh(x @ P["U_n"].T + P["b_n"] + r * (h @ P["W_n"].T + P["b_hn"]))
    return {"h": (1 - z) * h + z * n if name.endswith("chung") else (1 - z) * n + z * h}


def torch_loss(name, loss, torch, P, x, y, h0):
    s = dict(h0)
    hs = []
    for t in range(x.shape[0]):
        s = torch_cell(name, torch, P, x[t], s)
        hs.append(s["out" if name == "lru" else "h"])
    hs = torch.stack(hs)
    if loss == "upstream":
        return (hs * y).sum()
    o = hs @ P["V"].T + P["c"]
    if loss == "cross-entropy":
        return -torch.log_softmax(o, -1).gather(-1, y[..., None]).sum() / y.numel()  # reduction "mean"
    return ((o - y) ** 2).sum()


def torch_hvp(loss_fn, P, v, torch):
    leaves = list(P)
    value = loss_fn(P)
    if not value.requires_grad:  # the loss reads no parameter
        return {k: np.zeros(tuple(P[k].shape)) for k in leaves}
    grads = torch.autograd.grad(value, [P[k] for k in leaves], create_graph=True, allow_unused=True)
    inner = sum((g * v[k]).sum() for g, k in zip(grads, leaves) if g is not None)
    if not torch.is_tensor(inner) or not inner.requires_grad:  # the loss is linear in the parameters
        return {k: np.zeros(tuple(P[k].shape)) for k in leaves}
    hv = torch.autograd.grad(inner, [P[k] for k in leaves], allow_unused=True)
    return {k: (h.detach().numpy() if h is not None else np.zeros(tuple(P[k].shape))) for k, h in zip(leaves, hv)}


def assert_close(ours, ref, tol=TOL, what="H v", floor=0.0):
    """``ours`` equals ``ref`` to ``tol`` relative to the largest entry of ``ref``, or to ``floor`` when
    that is larger: the size of the first-order terms whose exact cancellation makes ``H v`` zero (there
    the rounding of an exact computation leaves ~1e-17 of them, not 0)."""
    scale = max(max((np.abs(ref[k]).max(initial=0) for k in ours), default=0.0), floor)
    for key in ours:
        err = np.abs(ours[key] - ref[key]).max(initial=0)
        assert err <= tol * scale or err == 0.0, f"{what}[{key!r}] differs by {err:.2e} (scale {scale:.2e})"


@pytest.mark.parametrize("cell", sorted(set(sr.BUILTIN_CELLS) - set(MATRIX_CELLS)))
@pytest.mark.parametrize("loss, reduction", [("cross-entropy", "mean"), ("mse", "sum"), ("upstream", "sum")])
def test_builtin_cells_against_torch_double_backward(torch64, cell, loss, reduction):
    torch = torch64.torch
    model = sr.Model(cell, D=3, H=4, K=3, loss=loss, reduction=reduction)
    rng = np.random.default_rng(11)
    params = model.init_params(seed=2, scale=0.9)
    v = {k: rng.normal(size=p.shape) for k, p in params.items()}
    x = rng.normal(size=(5, 2, 3))
    out_size = model.state_size(model.out)  # H, or LRU's output of size D
    y = rng.integers(0, 3, size=(5, 2)) if loss == "cross-entropy" else rng.normal(size=(5, 2, 3 if loss == "mse" else out_size))
    h0 = {s: rng.normal(size=(2, model.state_size(s))) for s in model.state_names}
    if "n" in h0:  # sLSTM's normaliser stays positive
        h0["n"] = np.abs(h0["n"]) + 0.5
    _, grads, hv = model.hessian_vector_product(params, v, x, y, h0=h0)
    P = {k: torch64.tensor(p, grad=True) for k, p in params.items()}
    ty = torch.as_tensor(y) if loss == "cross-entropy" else torch64.tensor(y)
    th0 = {s: torch64.tensor(a) for s, a in h0.items()}
    ref = torch_hvp(lambda Q: torch_loss(cell, loss, torch, Q, torch64.tensor(x), ty, th0), P,
                    {k: torch64.tensor(a) for k, a in v.items()}, torch)
    assert_close(hv, ref)
    assert_close(grads, model.loss_and_grads(params, x, y, h0=h0)[1], what="grads")


def test_gauss_newton_against_jacobians(torch64):
    """``G v = J^T H_L J v`` with the Jacobian of the logits and the loss's Hessian from torch."""
    torch = torch64.torch
    for cell, loss in (("lstm", "cross-entropy"), ("gru-reset-before", "mse"), ("rnn-tanh", "cross-entropy")):
        model = sr.Model(cell, D=2, H=3, K=3, loss=loss, reduction="mean" if loss == "cross-entropy" else "sum")
        rng = np.random.default_rng(5)
        params = model.init_params(seed=4, scale=1.0)
        v = {k: rng.normal(size=p.shape) for k, p in params.items()}
        x = rng.normal(size=(4, 2, 2))
        y = rng.integers(0, 3, size=(4, 2)) if loss == "cross-entropy" else rng.normal(size=(4, 2, 3))
        gv = model.hessian_vector_product(params, v, x, y, gauss_newton=True)[2]
        keys = list(params)
        sizes = [params[k].size for k in keys]
        theta = torch64.tensor(np.concatenate([params[k].ravel() for k in keys]))
        tx = torch64.tensor(x)
        ty = torch.as_tensor(y) if loss == "cross-entropy" else torch64.tensor(y)

        def logits(flat):
            P = {k: p.reshape(params[k].shape) for k, p in zip(keys, torch.split(flat, sizes))}
            s = {st: torch.zeros(2, 3) for st in model.state_names}
            out = []
            for t in range(4):
                s = torch_cell(cell, torch, P, tx[t], s)
                out.append(s["h"] @ P["V"].T + P["c"])
            return torch.stack(out)

        def loss_of(o):
            if loss == "cross-entropy":
                return -torch.log_softmax(o, -1).gather(-1, ty[..., None]).sum() / ty.numel()
            return ((o - ty) ** 2).sum()

        J = torch.autograd.functional.jacobian(logits, theta).reshape(-1, theta.numel())
        o = logits(theta).detach()
        HL = torch.autograd.functional.hessian(lambda q: loss_of(q.reshape(o.shape)), o.reshape(-1))
        flat_v = torch64.tensor(np.concatenate([v[k].ravel() for k in keys]))
        ref_flat = (J.T @ (HL @ (J @ flat_v))).numpy()
        ref = dict(zip(keys, (r.reshape(params[k].shape) for k, r in zip(keys, np.split(ref_flat, np.cumsum(sizes)[:-1])))))
        assert_close(gv, ref, what=f"G v ({cell})")


def test_gauss_newton_of_a_linear_loss_is_zero():
    model = sr.Model("gru", D=2, H=3, loss="upstream")
    params = model.init_params(seed=0)
    rng = np.random.default_rng(0)
    v = {k: rng.normal(size=p.shape) for k, p in params.items()}
    gv = model.hessian_vector_product(params, v, rng.normal(size=(3, 1, 2)), rng.normal(size=(3, 1, 3)),
                                      gauss_newton=True)[2]
    assert all(not g.any() for g in gv.values())


@settings(max_examples=25, deadline=None)
@given(problem=problems(cells=VECTOR_CELLS, max_T=5, max_size=3))
def test_random_problems_against_differences_of_gradients(problem):
    model, params, x, y, h0 = problem
    rng = np.random.default_rng(0)
    v = {k: rng.normal(size=p.shape) for k, p in params.items()}
    u = {k: rng.normal(size=p.shape) for k, p in params.items()}
    _, grads, hv = model.hessian_vector_product(params, v, x, y, h0=h0)
    eps = 1e-5
    up = model.loss_and_grads({k: params[k] + eps * v[k] for k in params}, x, y, h0=h0)[1]
    down = model.loss_and_grads({k: params[k] - eps * v[k] for k in params}, x, y, h0=h0)[1]
    fd = {k: (up[k] - down[k]) / (2 * eps) for k in params}
    scale = max(1.0, max(np.abs(f).max() for f in fd.values()))
    for k in params:
        assert np.abs(hv[k] - fd[k]).max() <= 1e-5 * scale, k
    hu = model.hessian_vector_product(params, u, x, y, h0=h0)[2]  # symmetry: u.Hv = v.Hu
    a, b = sum((u[k] * hv[k]).sum() for k in params), sum((v[k] * hu[k]).sum() for k in params)
    assert abs(a - b) <= 1e-11 * max(1.0, abs(a))


@settings(max_examples=25, deadline=None)
@given(case=cells_and_recipes())
def test_fuzzed_user_cells_against_torch_double_backward(torch64, case):
    try:
        model = case.build_model()
    except sr.SymRNNError:
        return
    torch, r, p = torch64.torch, case.recipe, case.problem
    data = case.data()
    rng = np.random.default_rng(p.seed % 1000)
    v = {k: rng.normal(size=a.shape) for k, a in data.params.items()}
    _, grads, hv = model.hessian_vector_product(data.params, v, data.x, data.y, h0=data.h0)
    x = torch64.tensor(data.x)
    given_h0 = data.h0 or {}
    width = {"H": p.H, "D": p.D}

    def loss_fn(P):
        state = {s: torch64.tensor(given_h0[s]) if s in given_h0 else torch.zeros(p.N, p.H) for s in r.states}
        outputs = []
        for t in range(p.T):
            values = {("input",): x[t]}
            values.update({("prev", s): val for s, val in state.items()})
            values.update({("param", k): val for k, val in P.items()})
            for eq in r.equations:
                value = to_torch(eq.expr, values, torch) + torch.zeros(p.N, width[eq.size])
                values[("let" if eq.kind == "let" else "new", eq.name)] = value
            state = {s: values[("new", s)] for s in r.states}
            outputs.append(state[r.output_state])
        hs = torch.stack(outputs)[p.T - p.T_out:]
        y = data.y if p.loss == "cross-entropy" else torch64.tensor(data.y)
        return _torch_loss(p, hs, P, y, torch)

    P = {k: torch64.tensor(a, grad=True) for k, a in data.params.items()}
    ref = torch_hvp(loss_fn, P, {k: torch64.tensor(a) for k, a in v.items()}, torch)
    first_order = max(np.abs(g).max(initial=0) for g in grads.values()) * max(np.abs(a).max() for a in v.values())
    assert_close(hv, ref, floor=first_order)


@pytest.mark.parametrize("loss, reduction", [("cross-entropy", "mean"), ("cross-entropy", "batch-mean"),
                                             ("mse", "mean"), ("half-mse", "sum")])
def test_loss_hessian_rules(torch64, loss, reduction):
    torch = torch64.torch
    rule = sr.Model("rnn-tanh", D=1, H=2, K=4, loss=loss, reduction=reduction).loss_rule
    rng = np.random.default_rng(1)
    O, dO = rng.normal(size=(3, 2, 4)), rng.normal(size=(3, 2, 4))
    Y = rng.integers(0, 4, size=(3, 2)) if loss == "cross-entropy" else rng.normal(size=(3, 2, 4))
    mask = np.array([[1, 1], [0, 1], [1, 0]], dtype=bool)
    tO = torch64.tensor(O, grad=True)
    value, _ = rule.value_and_grad(O, Y, reduction, mask)
    # the loss written again in torch
    m = torch.as_tensor(mask)
    if loss == "cross-entropy":
        per = -torch.log_softmax(tO, -1).gather(-1, torch.as_tensor(Y)[..., None])[..., 0]
        total = (per * m).sum()
        L = total / (m.sum() if reduction == "mean" else 2)
    else:
        w = 1.0 if loss == "mse" else 0.5
        total = w * (((tO - torch64.tensor(Y)) ** 2).sum(-1) * m).sum()
        L = total / (m.sum() * 4) if reduction == "mean" else total
    assert abs(L.item() - value) <= 1e-12 * abs(value)
    (g,) = torch.autograd.grad(L, tO, create_graph=True)
    (hv,) = torch.autograd.grad((g * torch64.tensor(dO)).sum(), tO)
    ours = rule.hessian_vector(O, Y, dO, reduction, mask)
    assert np.abs(ours - hv.numpy()).max() <= 1e-12 * np.abs(hv.numpy()).max()


def test_bad_direction_refused():
    model = sr.Model("rnn-tanh", D=2, H=3, K=2)
    params = model.init_params()
    bad = dict(params, W=np.zeros((2, 2)))
    with pytest.raises(sr.ShapeError, match="vector\\['W'\\]"):
        model.hessian_vector_product(params, bad, np.zeros((2, 1, 2)), np.zeros((2, 1), dtype=int))
    with pytest.raises(sr.SymRNNError):
        model.hessian_vector_product(params, {"W": params["W"]}, np.zeros((2, 1, 2)), np.zeros((2, 1), dtype=int))


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru"])
@pytest.mark.parametrize("residual", [False, True])
def test_stacked_layers_against_torch_double_backward(torch64, cell, residual):
    """Three unidirectional layers (layer l reads layer l - 1's h, plus its input when residual)."""
    from symrnn.engine.second_order import hessian_vector_product
    torch = torch64.torch
    model = sr.StackedModel(cell, D=3, H=3, K=2, num_layers=3, residual=residual, loss="cross-entropy",
                            reduction="mean")
    rng = np.random.default_rng(8)
    params = model.init_params(seed=5, scale=1.0)
    v = {k: rng.normal(size=p.shape) for k, p in params.items()}
    x, y = rng.normal(size=(4, 2, 3)), rng.integers(0, 2, size=(4, 2))
    h0 = {s: rng.normal(size=(3, 2, 3)) for s in model.state_names}
    _, _, hv = hessian_vector_product(model, params, v, x, y, h0=h0)

    def loss_fn(P):
        inp = torch64.tensor(x)
        for l in range(3):
            Pl = {k.split(".", 2)[2]: a for k, a in P.items() if k.startswith(f"l{l}.")}
            s = {st: torch64.tensor(h0[st][l]) for st in model.state_names}
            hs = []
            for t in range(4):
                s = torch_cell(cell, torch, Pl, inp[t], s)
                hs.append(s["h"])
            out = torch.stack(hs)
            inp = out + inp if residual and l > 0 else out
        o = inp @ P["V"].T + P["c"]
        ty = torch.as_tensor(y)
        return -torch.log_softmax(o, -1).gather(-1, ty[..., None]).sum() / ty.numel()

    P = {k: torch64.tensor(a, grad=True) for k, a in params.items()}
    ref = torch_hvp(loss_fn, P, {k: torch64.tensor(a) for k, a in v.items()}, torch)
    assert_close(hv, ref)


def test_reused_arrays_keep_results_apart():
    """``H v`` keeps its working arrays from call to call, one set per thread (as the gradient does):
    what a call returned is not overwritten by later calls, a repeated call gives the same bits, and
    two threads running different problems at once get what each gets alone."""
    from concurrent.futures import ThreadPoolExecutor
    model = sr.StackedModel("lstm", D=3, H=4, K=2, num_layers=2, residual=True, loss="cross-entropy",
                            reduction="mean")
    rng = np.random.default_rng(3)
    problems = []
    for seed in range(2):
        params = model.init_params(seed=seed, scale=0.9)
        v = {k: rng.normal(size=p.shape) for k, p in params.items()}
        problems.append((params, v, rng.normal(size=(6, 2, 3)), rng.integers(0, 2, size=(6, 2))))
    first = model.hessian_vector_product(*problems[0])
    kept = (first[0], {k: a.copy() for k, a in first[1].items()}, {k: a.copy() for k, a in first[2].items()})
    alone = [first, model.hessian_vector_product(*problems[1])]
    again = model.hessian_vector_product(*problems[0])
    for got in (first, again):
        assert got[0] == kept[0]
        for k in kept[2]:
            assert np.array_equal(got[1][k], kept[1][k]) and np.array_equal(got[2][k], kept[2][k]), k
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            both = list(pool.map(lambda p: model.hessian_vector_product(*p), problems))
            for got, ref in zip(both, alone):
                for k in ref[2]:
                    assert np.array_equal(got[2][k], ref[2][k]), k


def test_reused_arrays_are_those_of_the_last_problem():
    """The arrays kept between calls are those of the last problem's shape only: a sweep over sequence
    lengths (as ``sharpness_by_length`` does) does not pile up one set per length."""
    model = sr.Model("gru", D=3, H=4, K=2)
    params = model.init_params(seed=0)
    v = {k: np.ones_like(p) for k, p in params.items()}
    rng = np.random.default_rng(0)

    def kept():
        return sum(a.nbytes for ws in model._threads.hvp_spaces.values() for a in ws.arrays.values())

    sizes = {}
    for T in (9, 3, 9):
        model.hessian_vector_product(params, v, rng.normal(size=(T, 2, 3)), rng.integers(0, 2, size=(T, 2)))
        sizes.setdefault(T, []).append(kept())
    assert sizes[9][0] == sizes[9][1] > sizes[3][0] > 0
