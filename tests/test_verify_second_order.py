"""The verifier of hand-written second-order code (:mod:`symrnn.verify.second_order`).

A Hessian-vector product of the vanilla tanh RNN written by hand here, in NumPy, from the
equations (forward over reverse), is judged exact; the same code with one term dropped (the
tangent of the recurrent weights in the carried adjoint, ``dot W^T bar a[t+1]``) is caught,
and localised: T = 1 passes and T = 2 fails, the wrong blocks are in the column ``W`` only.
A Gauss-Newton product written by hand is judged too, with a planted bug in the loss's Hessian.
"""
from __future__ import annotations

import numpy as np
import pytest

import symrnn as sr
from symrnn.verify import verify_hvp


def softmax(o):
    e = np.exp(o - o.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def rnn_hvp(p, x, y, v, drop_recurrent_tangent=False, gauss_newton=False, wrong_loss_hessian=False):
    """H v of sum_t CE(V h_t + c, y_t), h_t = tanh(U x_t + W h_{t-1} + b), h_0 = 0, by hand."""
    U, W, b, V, c = (p[k] for k in "UWbVc")
    dU, dW, db, dV, dc = (v[k] for k in "UWbVc")
    T, N, _ = x.shape
    H = W.shape[0]
    hs, dhs = [np.zeros((N, H))], [np.zeros((N, H))]
    for t in range(T):  # forward and tangent
        hs.append(np.tanh(x[t] @ U.T + hs[-1] @ W.T + b))
        da = x[t] @ dU.T + hs[-2] @ dW.T + dhs[-1] @ W.T + db
        dhs.append((1 - hs[-1] ** 2) * da)
    out = {k: np.zeros_like(p[k]) for k in "UWbVc"}
    a_bar, a_til = np.zeros((N, H)), np.zeros((N, H))
    for t in range(T - 1, -1, -1):
        h, dh, h_prev, dh_prev = hs[t + 1], dhs[t + 1], hs[t], dhs[t]
        o = h @ V.T + c
        do = dh @ V.T + h @ dV.T + dc
        P = softmax(o)
        o_bar = P.copy()
        o_bar[np.arange(N), y[t]] -= 1
        o_til = P * do - P * (P * do).sum(-1, keepdims=True)
        if wrong_loss_hessian:
            o_til = P * do
        if gauss_newton:
            o_bar = np.zeros_like(o_bar)
        h_bar = o_bar @ V + a_bar @ W
        h_til = o_bar @ dV + o_til @ V + a_til @ W
        if not drop_recurrent_tangent:
            h_til = h_til + a_bar @ dW
        out["V"] += o_til.T @ h + o_bar.T @ dh
        out["c"] += o_til.sum(0)
        a_bar, a_til = (1 - h ** 2) * h_bar, (1 - h ** 2) * h_til - 2 * h * dh * h_bar
        out["U"] += a_til.T @ x[t]
        out["W"] += a_til.T @ h_prev + a_bar.T @ dh_prev
        out["b"] += a_til.sum(0)
    return out


def test_hand_written_hvp_is_exact():
    result = verify_hvp(rnn_hvp, "rnn-tanh", D=3, H=4, K=3, T=5, N=2)
    assert result.ok, str(result)
    assert result.symmetry < 1e-12
    assert "OK" in result.summary()


def test_planted_bug_caught_and_localised():
    result = verify_hvp(lambda *a: rnn_hvp(*a, drop_recurrent_tangent=True), "rnn-tanh", D=3, H=4, K=3, T=5, N=2)
    assert not result.ok
    assert result.first_T == 2  # T = 1 has no step before: the carried term is not used there
    assert {c for _, c in result.blocks} == {"W"}  # only directions along W
    # at T = 2 the dropped term changes tilde a[1], which reaches U and b (W reads h_0 = 0 there)
    assert {r for r, _ in result.blocks} == {"U", "b"}
    assert result.worst["direction"] in ("W", "random") and result.worst["T"] == 2
    text = str(result)
    assert "T = 1 passes and T = 2 fails" in text and "block H[U, W] is wrong" in text
    assert ("W", "W") in result.all_blocks and "and at longer lengths: H[W, W]" in text
    assert '"first_T": 2' in result.to_json()


def test_gauss_newton_judged():
    gn = verify_hvp(lambda *a: rnn_hvp(*a, gauss_newton=True), "rnn-tanh", D=2, H=3, K=3, T=4, gauss_newton=True)
    assert gn.ok, str(gn)
    bad = verify_hvp(lambda *a: rnn_hvp(*a, gauss_newton=True, wrong_loss_hessian=True), "rnn-tanh", D=2, H=3,
                     K=3, T=4, gauss_newton=True)
    assert not bad.ok and bad.first_T == 1
    assert {r for r, _ in bad.blocks} == {"U", "b", "V", "c"}  # at T = 1, W meets h_0 = 0
    assert {r for r, _ in bad.all_blocks} == {"U", "W", "b", "V", "c"}
    # the Hessian-vector product is not the Gauss-Newton product: judged against H v, it fails
    assert not verify_hvp(lambda *a: rnn_hvp(*a, gauss_newton=True), "rnn-tanh", D=2, H=3, K=3, T=4).ok


def test_bad_user_functions_refused():
    with pytest.raises(sr.UserCodeError, match="returned no value for"):
        verify_hvp(lambda p, x, y, v: {"W": v["W"]})
    with pytest.raises(sr.UserCodeError, match="has shape"):
        verify_hvp(lambda p, x, y, v: {k: np.zeros(3) for k in p})
    with pytest.raises(sr.UserCodeError, match="raised ZeroDivisionError"):
        verify_hvp(lambda p, x, y, v: 1 / 0)
    with pytest.raises(sr.ShapeError):
        verify_hvp(rnn_hvp, T=0)


# -- the error model: correct products written otherwise pass, approximate ones do not ------------

def torch_products(torch, cell, dtype, route):
    """``fn(params, x, y, v)``: H v of ``sum_t CE(V h_t + c, y_t)`` by torch, in ``dtype``, by double
    backward (``route="reverse"``) or forward over reverse (``torch.func.jvp`` of ``torch.func.grad``):
    correct products whose rounding differs from symrnn's."""
    from test_second_order import torch_cell

    shape = sr.Model(cell, D=1, H=1, K=1)
    states, out = shape.state_names, shape.out

    def loss(P, x, y):
        H = P["V"].shape[1] if cell != "lru" else P["nu"].shape[0]  # LRU's readout reads out (size D)
        sizes = sr.Model(cell, D=x.shape[2], H=H, K=P["V"].shape[0])
        s = {k: torch.zeros(x.shape[1], sizes.state_size(k), dtype=dtype) for k in states}
        hs = []
        for t in range(x.shape[0]):
            s = torch_cell(cell, torch, P, x[t], s)
            hs.append(s[out])
        o = torch.stack(hs) @ P["V"].T + P["c"]
        return -torch.log_softmax(o, -1).gather(-1, y[..., None]).sum()

    def fn(p, x, y, v):
        P = {k: torch.tensor(a, dtype=dtype) for k, a in p.items()}
        V = {k: torch.tensor(a, dtype=dtype) for k, a in v.items()}
        X, Y = torch.tensor(x, dtype=dtype), torch.tensor(y)
        if route == "forward":
            hv = torch.func.jvp(torch.func.grad(lambda Q: loss(Q, X, Y)), (P,), (V,))[1]
            return {k: hv[k].numpy() for k in p}
        for a in P.values():
            a.requires_grad_(True)
        g = torch.autograd.grad(loss(P, X, Y), list(P.values()), create_graph=True)
        hv = torch.autograd.grad(sum((gi * V[k]).sum() for gi, k in zip(g, P)), list(P.values()))
        return {k: h.detach().numpy() for k, h in zip(P, hv)}
    return fn


@pytest.mark.parametrize("cell, route, dtype", [
    ("rnn-tanh", "reverse", "float64"), ("rnn-tanh", "forward", "float64"), ("rnn-tanh", "reverse", "float32"),
    ("gru", "forward", "float64"), ("gru", "reverse", "float32"), ("lstm", "reverse", "float64")])
@pytest.mark.parametrize("scale", [0.05, 4.0])
def test_correct_products_computed_otherwise_are_right(torch64, cell, route, dtype, scale):
    """torch's products round differently from symrnn's (another grouping, a saturated softmax at
    scale 4, float32): never a false alarm."""
    fn = torch_products(torch64.torch, cell, getattr(torch64.torch, dtype), route)
    result = verify_hvp(fn, cell, D=3, H=4, K=3, T=9, N=2, scale=scale)
    assert result.ok, str(result)
    assert "right on" in result.summary() and result.worst_ratio <= 1



@pytest.mark.parametrize("cell, seed, dtype", [("lru", 0, "float64"), ("lru", 3, "float64"),
                                               ("slstm-exp", 7, "float64"), ("slstm", 0, "float32")])
def test_an_invariance_of_the_model_is_no_false_alarm(torch64, cell, seed, dtype):
    """Whole blocks of H are exactly 0 by an invariance (LRU's phase at T = 1; sLSTM's b_i from zero
    states, where c and n both scale by exp(b_i)); torch reaches them along routes that cancel only up
    to rounding (1e-18 in float64): judged against the scale of the products, not against 0."""
    fn = torch_products(torch64.torch, cell, getattr(torch64.torch, dtype), "reverse")
    result = verify_hvp(fn, cell, H=4, seed=seed)
    assert result.ok, str(result)

def test_approximate_products_are_wrong():
    """Central differences of gradients, and one block off by one part in a billion, are not
    exact: the tolerance is rounding, not a fixed relative 1e-8."""
    model = sr.Model("rnn-tanh", D=2, H=5, K=4)

    def differences(p, x, y, v, eps):
        up = model.loss_and_grads({k: p[k] + eps * v[k] for k in p}, x, y)[1]
        down = model.loss_and_grads({k: p[k] - eps * v[k] for k in p}, x, y)[1]
        return {k: (up[k] - down[k]) / (2 * eps) for k in p}

    def exact(p, x, y, v):
        return model.hessian_vector_product(p, v, x, y)[2]

    for eps in (1e-5, 1e-7):
        assert not verify_hvp(lambda *a: differences(*a, eps), "rnn-tanh", D=2, H=5, K=4, T=7).ok
    off = verify_hvp(lambda *a: {k: h * (1 + 1e-9) if k == "W" else h for k, h in exact(*a).items()},
                     "rnn-tanh", D=2, H=5, K=4, T=7)
    assert not off.ok and {r for r, _ in off.blocks} == {"W"}, str(off)
    assert verify_hvp(exact, "rnn-tanh", D=2, H=5, K=4, T=7).ok
