"""Bidirectional and stacked models (symrnn.models.wiring) against PyTorch autograd, and their small rules.

* ``torch.nn.RNN/LSTM/GRU(num_layers=k, bidirectional=...)`` with weights copied by
  ``symrnn.models.layouts.to_torch_stack``: PyTorch's own stacking and concat merge, its h_0/h_n layout.
* For the other merges and residual links, one torch module per layer, merged and linked by torch
  operations written here, and torch's autograd through all of it.
* The merge Jacobians (concat [I 0; 0 I], sum [I I], ave [I/2 I/2], mul [diag b, diag f], max masks)
  and the tie rule of max, by hand-computed values (finite differences mean nothing at a tie).
* Bad input: clear errors.

Tolerance against torch: ``max|ours - torch| / max(1, max|torch|) <= 1e-12`` per array.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symrnn as sr
from symrnn.engine.functions import lambdify_numpy
from symrnn.errors import ParameterError, ShapeError, UnknownNameError
from symrnn.models.layouts import (from_keras_bidirectional, from_torch_stack, to_keras, to_keras_bidirectional,
                            to_torch, to_torch_stack)
from symrnn.models.wiring import MERGES, get_merge

TOL = 1e-12
TORCH_CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]


@functools.lru_cache(maxsize=None)
def stacked(cell, D, H, K, num_layers, bidirectional, merge="concat", residual=False,
            architecture="many-to-many", loss="cross-entropy", reduction="sum"):
    return sr.StackedModel(cell, D=D, H=H, K=K, num_layers=num_layers, bidirectional=bidirectional, merge=merge,
                           residual=residual, architecture=architecture, loss=loss, reduction=reduction)


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b), initial=0.0) / max(1.0, np.max(np.abs(b), initial=0.0)))


# -- the torch side ------------------------------------------------------------------------------------
def torch_module(T, cell, D, H, num_layers, bidirectional):
    nn = T.torch.nn
    if cell == "lstm":
        return nn.LSTM(D, H, num_layers=num_layers, bidirectional=bidirectional).double()
    if cell == "gru":
        return nn.GRU(D, H, num_layers=num_layers, bidirectional=bidirectional).double()
    return nn.RNN(D, H, num_layers=num_layers, bidirectional=bidirectional,
                  nonlinearity=cell.split("-")[1]).double()


def torch_merge(torch, name, f, b):
    """The merges written with torch operations (max: torch.maximum, which splits a tie half and half)."""
    return {"concat": lambda: torch.cat([f, b], dim=-1), "sum": lambda: f + b, "ave": lambda: (f + b) / 2,
            "mul": lambda: f * b, "max": lambda: torch.maximum(f, b)}[name]()


def torch_stack_forward(T, m, params, x_t, h0_t, c0_t):
    """Top-layer outputs from torch modules: one module for PyTorch's own stacking (concat, no residual),
    else one module per layer merged and linked here."""
    torch = T.torch
    cell, D, H = m.cell.name, m.sizes["D"], m.sizes["H"]
    bidi = m.bidirectional
    modules = []
    if m.merge.name == "concat" and not m.residual and len(set(bidi)) == 1:
        module = torch_module(T, cell, D, H, m.num_layers, bidi[0])
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in to_torch_stack(cell, params).items()})
        out, _ = module(x_t, (h0_t, c0_t) if cell == "lstm" else h0_t)
        return out, [module]
    inp, row = x_t, 0
    for layer in m.layers:
        n = 2 if layer.bidirectional else 1
        module = torch_module(T, cell, layer.input_width, H, 1, layer.bidirectional)
        sd = {}
        for k, d in enumerate(layer.directions):
            sd.update(to_torch(cell, m.direction_params(params, layer.index, d), layer=0, reverse=k == 1))
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})
        h, c = h0_t[row:row + n], (c0_t[row:row + n] if c0_t is not None else None)
        out, _ = module(inp, (h, c) if cell == "lstm" else h)
        y = torch_merge(torch, m.merge.name, out[..., :H], out[..., H:]) if layer.bidirectional else out
        if layer.residual:
            y = y + inp
        modules.append((module, layer))
        inp, row = y, row + n
    return inp, modules


def torch_grads(m, modules):
    """Torch's parameter gradients under symrnn's keys.  ``bias_ih`` and ``bias_hh`` both receive dL/db
    where they are added; the ``bias_hh`` gradients are zeroed there (GRU: all but the n block, b_hn)
    before ``from_torch`` adds the pair."""
    from symrnn.models.layouts import from_torch
    cell, H = m.cell.name, m.sizes["H"]
    if not isinstance(modules[0], tuple):  # one torch module for the whole stack
        sd = {k: p.grad.numpy().copy() for k, p in modules[0].named_parameters()}
    else:
        sd = {k.replace("_l0", f"_l{layer.index}"): p.grad.numpy().copy()
              for module, layer in modules for k, p in module.named_parameters()}
    for k in sd:
        if k.startswith("bias_hh"):
            sd[k][:2 * H if cell == "gru" else None] = 0
    grads = {}
    for layer in m.layers:
        for d in layer.directions:
            g = from_torch(cell, sd, layer=layer.index, reverse=d == "bwd")
            grads.update({m.key(layer.index, d, k): v for k, v in g.items()})
    return grads


@st.composite
def problems(draw):
    cell = draw(st.sampled_from(TORCH_CELLS))
    num_layers = draw(st.integers(1, 3))
    bidirectional = draw(st.booleans())
    merge = draw(st.sampled_from(sorted(MERGES))) if bidirectional else "concat"
    archs = ["many-to-many", "many-to-one", "one-to-one"] + ([] if bidirectional else
                                                             ["one-to-many", "many-to-many-delayed"])
    architecture = draw(st.sampled_from(archs))
    loss, reduction = draw(st.sampled_from([("cross-entropy", "sum"), ("cross-entropy", "mean"), ("mse", "sum"),
                                            ("mse", "mean"), ("upstream", "sum")]))
    H = draw(st.integers(1, 4))
    D = draw(st.integers(1, 4))
    width = H * (2 if bidirectional and merge == "concat" else 1)
    D = width if draw(st.booleans()) else D
    residual = num_layers > 1 and width == H and draw(st.booleans())  # layers >= 1: equal widths
    T = 1 if architecture == "one-to-one" else draw(st.integers(1, 7))
    return dict(cell=cell, num_layers=num_layers, bidirectional=bidirectional, merge=merge,
                architecture=architecture, loss=loss, reduction=reduction, D=D, H=H,
                K=draw(st.integers(1, 4)), N=draw(st.integers(1, 3)), T=T, residual=residual,
                scale=draw(st.sampled_from([0.1, 0.5, 1.0, 1.5])), seed=draw(st.integers(0, 2**32 - 1)))


def lengths(arch, T):
    return {"many-to-many": (T, T), "many-to-one": (T, 1), "one-to-one": (1, 1), "one-to-many": (1, T),
            "many-to-many-delayed": (T, T)}[arch]


@given(problems())
@settings(max_examples=60)  # one draw covers one of many (cell, layers, merge, architecture, loss) combinations
def test_stacked_and_bidirectional_gradients_match_torch_autograd(torch64, p):
    assert_matches_torch(torch64, p)


@pytest.mark.parametrize("merge", sorted(MERGES))
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_every_torch_cell_and_merge_in_a_bidirectional_stack(torch64, cell, merge):
    p = dict(cell=cell, num_layers=3 if merge != "concat" else 2, bidirectional=True, merge=merge,
             architecture="many-to-many", loss="cross-entropy", reduction="mean", D=3, H=3, K=4, N=2, T=5,
             residual=merge != "concat", scale=1.0, seed=sorted(MERGES).index(merge))
    assert_matches_torch(torch64, p)


def test_uneven_stacks_match_torch(torch64):
    """Layer 0 bidirectional (concat: 2H wide), layer 1 unidirectional, every architecture of the stack."""
    for architecture in ("many-to-many", "many-to-one", "one-to-one"):
        p = dict(cell="lstm", num_layers=2, bidirectional=(True, False), merge="concat", architecture=architecture,
                 loss="mse", reduction="sum", D=2, H=3, K=2, N=2, T=1 if architecture == "one-to-one" else 4,
                 residual=False, scale=1.0, seed=3)
        assert_matches_torch(torch64, p)


def assert_matches_torch(T, p):
    torch = T.torch
    residual = p["residual"]
    K = None if p["loss"] == "upstream" else p["K"]
    m = stacked(p["cell"], p["D"], p["H"], K, p["num_layers"], p["bidirectional"], p["merge"], residual,
                p["architecture"], p["loss"], p["reduction"])
    params = m.init_params(seed=p["seed"] % 1000, scale=p["scale"])
    rng = np.random.default_rng(p["seed"])
    T_in, T_out = lengths(p["architecture"], p["T"])
    N, H = p["N"], p["H"]
    x = rng.normal(size=(T_in, N, p["D"]))
    rows = len(m.rows())
    h0, c0 = rng.normal(size=(rows, N, H)), rng.normal(size=(rows, N, H))
    if p["loss"] == "cross-entropy":
        y = rng.integers(0, p["K"], size=(T_out, N))
    else:
        y = rng.normal(size=(T_out, N, p["K"] if p["loss"] == "mse" else m.width))
    state = {"h": h0, "c": c0} if p["cell"] == "lstm" else h0
    loss, grads = m.loss_and_grads(params, x, y, h0=state)

    # torch: the same network from torch modules, the readout and the loss from torch operations
    sched = m.architecture.schedule(T_in, T_out)
    x_t = T.tensor(x, grad=True)
    X = torch.cat([x_t, T.zeros(sched.T - T_in, N, p["D"])]) if sched.T > T_in else x_t
    h0_t, c0_t = T.tensor(h0, grad=True), (T.tensor(c0, grad=True) if p["cell"] == "lstm" else None)
    top, modules = torch_stack_forward(T, m, params, X, h0_t, c0_t)
    out = top[sched.output_steps.start:sched.output_steps.stop]
    if p["loss"] == "upstream":
        loss_t = (out * T.tensor(y)).sum()
    else:
        V, c = T.tensor(params["V"], grad=True), T.tensor(params["c"], grad=True)
        O = out @ V.T + c
        if p["loss"] == "cross-entropy":
            loss_t = torch.nn.functional.cross_entropy(O.reshape(-1, p["K"]), torch.tensor(y.reshape(-1)),
                                                       reduction=p["reduction"])
        else:
            loss_t = torch.nn.functional.mse_loss(O, T.tensor(y), reduction=p["reduction"])
    loss_t.backward()
    theirs = torch_grads(m, modules)
    theirs["x"] = x_t.grad.numpy()
    theirs["h0"] = h0_t.grad.numpy()
    if c0_t is not None:
        theirs["c0"] = c0_t.grad.numpy()
    if p["loss"] != "upstream":
        theirs["V"], theirs["c"] = V.grad.numpy(), c.grad.numpy()
    assert abs(loss - loss_t.item()) <= TOL * max(1.0, abs(loss_t.item()))
    assert sorted(theirs) == sorted(grads)
    for k in grads:
        err = rel(grads[k], theirs[k])
        assert err <= TOL, f"{m}: grads[{k!r}] differs from torch by {err:.2e}"


# -- final states: PyTorch's h_n layout -----------------------------------------------------------------
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_final_states_are_laid_out_as_pytorch(torch64, cell):
    T = torch64
    m = stacked(cell, 3, 4, None, 2, True, loss="upstream")
    params = m.init_params(seed=5, scale=0.8)
    x = np.random.default_rng(2).normal(size=(6, 2, 3))
    out, finals = m.forward(params, x)
    module = torch_module(T, cell, 3, 4, 2, True)
    module.load_state_dict({k: T.torch.from_numpy(v.copy()) for k, v in to_torch_stack(cell, params).items()})
    out_t, hn = module(T.tensor(x))
    hn = hn[0] if cell == "lstm" else hn
    assert rel(out, T.numpy(out_t)) <= TOL and rel(finals["h"], T.numpy(hn)) <= TOL
    H = 4
    assert np.array_equal(finals["h"][3], out[0, :, H:])  # h_n[-1] (top layer, backward) is output[0], not [-1]
    assert np.array_equal(finals["h"][2], out[-1, :, :H])
    assert not np.allclose(finals["h"][3], out[-1, :, H:])


def test_final_grads_enter_as_dL_dh_n():
    m = stacked("lstm", 2, 3, None, 2, True, loss="upstream")
    params = m.init_params(seed=1)
    rng = np.random.default_rng(0)
    x, G = rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 2, 6))
    gh, gc = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    loss, grads = m.loss_and_grads(params, x, G, final_grads={"h": gh, "c": gc})
    out, finals = m.forward(params, x)
    assert loss == pytest.approx((out * G).sum() + (finals["h"] * gh).sum() + (finals["c"] * gc).sum(), rel=1e-13)
    eps, k = 1e-6, "l0.bwd.W_f"
    up, down = ({**params, k: params[k] + s * eps * np.eye(3)} for s in (1, -1))
    numeric = (m.loss_and_grads(up, x, G, final_grads={"h": gh, "c": gc})[0]
               - m.loss_and_grads(down, x, G, final_grads={"h": gh, "c": gc})[0]) / (2 * eps)
    assert np.trace(grads[k]) == pytest.approx(numeric, rel=1e-6)


# -- merge Jacobians and the tie rule --------------------------------------------------------------------
def jacobian(merge, F, B):
    """[d merged / d F, d merged / d B] as a matrix, from the merge's backward rule (one unit adjoint per row)."""
    width = merge.forward(F, B).shape[-1]
    rows = []
    for i in range(width):
        G = np.zeros(width)
        G[i] = 1.0
        dF, dB = merge.backward(G, F, B)
        rows.append(np.concatenate([dF, dB]))
    return np.array(rows)


F0, B0 = np.array([0.5, -1.0, 2.0]), np.array([-0.25, 3.0, 1.5])
I3 = np.eye(3)


@pytest.mark.parametrize("name, expected", [
    ("concat", np.block([[I3, 0 * I3], [0 * I3, I3]])),
    ("sum", np.hstack([I3, I3])),
    ("ave", np.hstack([I3 / 2, I3 / 2])),
    ("mul", np.hstack([np.diag(B0), np.diag(F0)])),
    ("max", np.hstack([np.diag([1.0, 0.0, 1.0]), np.diag([0.0, 1.0, 0.0])])),
])
def test_merge_jacobians(name, expected):
    assert np.array_equal(jacobian(MERGES[name], F0, B0), expected)


@pytest.mark.parametrize("name", ["sum", "ave", "mul", "max"])
def test_merge_rules_are_the_derivatives_of_their_symbolic_form(name):
    merge = MERGES[name]
    f, b = sp.symbols("f b")
    expr = merge.symbolic(f, b)
    for F, B in zip(F0, B0):  # away from ties
        rf, rb = merge.backward(np.array([1.0]), np.array([F]), np.array([B]))
        df = lambdify_numpy([f, b], sp.diff(expr, f))(F, B)
        db = lambdify_numpy([f, b], sp.diff(expr, b))(F, B)
        assert (rf[0], rb[0]) == pytest.approx((float(df), float(db)), rel=1e-15)
        assert float(lambdify_numpy([f, b], expr)(F, B)) == merge.forward(np.array([F]), np.array([B]))[0]


def test_max_merge_tie_rule_splits_the_gradient_half_and_half():
    merge = MERGES["max"]
    F, B = np.array([1.0, 2.0, 3.0, -0.5]), np.array([1.0, 5.0, 0.0, -0.5])  # ties at 0 and 3
    G = np.array([4.0, 4.0, 4.0, -6.0])
    dF, dB = merge.backward(G, F, B)
    assert dF.tolist() == [2.0, 0.0, 4.0, -3.0]
    assert dB.tolist() == [2.0, 4.0, 0.0, -3.0]
    assert merge.forward(F, B).tolist() == [1.0, 5.0, 3.0, -0.5]


def test_max_merge_tie_rule_end_to_end():
    """T = 1, both directions with the same weights and initial state: every output is an exact tie, so
    each direction gets half the gradient of the merged output (as torch.maximum, and symrnn's Max)."""
    m = stacked("lstm", 2, 3, 2, 1, True, merge="max", loss="mse")
    uni = stacked("lstm", 2, 3, 2, 1, False, loss="mse")
    p = uni.init_params(seed=4, scale=1.0)
    params = {**{k.replace("fwd", d): v for k, v in p.items() if k.startswith("l0") for d in ("fwd", "bwd")},
              "V": p["V"], "c": p["c"]}
    params.update({k.replace("fwd", "bwd"): v for k, v in p.items() if k.startswith("l0")})
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1, 2, 2)), rng.normal(size=(1, 2, 2))
    loss, grads = m.loss_and_grads(params, x, y)
    loss_u, grads_u = uni.loss_and_grads(p, x, y)
    assert loss == loss_u
    for name in m.cell.params:
        assert np.array_equal(grads[f"l0.fwd.{name}"], grads[f"l0.bwd.{name}"])
        np.testing.assert_allclose(grads[f"l0.fwd.{name}"], grads_u[f"l0.fwd.{name}"] / 2, rtol=1e-14, atol=1e-17)
    np.testing.assert_allclose(grads["x"], grads_u["x"], rtol=1e-14, atol=1e-17)


def test_merge_aliases_and_names():
    assert get_merge("average") is MERGES["ave"] and get_merge("multiply") is MERGES["mul"]
    assert sorted(MERGES) == ["ave", "concat", "max", "mul", "sum"]


# -- layouts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_stack_round_trip_and_reverse_names(torch64, cell):
    m = stacked(cell, 3, 2, 4, 3, True)
    params = m.init_params(seed=0)
    sd = to_torch_stack(cell, params)
    module = torch_module(torch64, cell, 3, 2, 3, True)
    assert sorted(sd) == sorted(k for k, _ in module.named_parameters())  # weight_ih_l2_reverse ...
    module.load_state_dict({k: torch64.torch.from_numpy(v) for k, v in sd.items()})
    back = from_torch_stack(cell, module.state_dict(), num_layers=3, bidirectional=True)
    assert sorted(back) == sorted(k for k in params if k not in ("V", "c"))
    assert all(np.array_equal(back[k], params[k]) for k in back)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_keras_bidirectional_weights(cell):
    m = stacked(cell, 3, 2, 4, 2, True)
    params = m.init_params(seed=0)
    weights = to_keras_bidirectional(cell, params, layer=1)
    assert len(weights) == 6
    fwd = to_keras(cell, m.direction_params(params, 1, "fwd"))
    assert all(np.array_equal(a, b) for a, b in zip(weights[:3], fwd.values()))
    assert weights[0].shape[0] == 2 * 2  # layer 1 reads the 2H-wide concat output
    back = from_keras_bidirectional(cell, weights, layer=1)
    assert sorted(back) == sorted(k for k in params if k.startswith("l1."))
    assert all(np.allclose(back[k], params[k], rtol=0, atol=0) for k in back)


# -- bad input ---------------------------------------------------------------------------------------------
def test_unknown_merge_mode():
    with pytest.raises(UnknownNameError, match=r"Unknown merge mode 'concatenation'.*'ave', 'concat', 'max'"):
        sr.StackedModel("lstm", D=2, H=3, K=2, bidirectional=True, merge="concatenation")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_num_layers_must_be_positive(bad):
    with pytest.raises(ShapeError, match=r"num_layers must be an integer >= 1"):
        sr.StackedModel("rnn-tanh", D=2, H=3, K=2, num_layers=bad)


@pytest.mark.parametrize("arch", ["one-to-many", "many-to-many-delayed"])
def test_bidirectional_generation_architectures_are_refused(arch):
    with pytest.raises(UnknownNameError, match=r"not defined for a bidirectional layer.*future"):
        sr.StackedModel("gru", D=2, H=3, K=2, bidirectional=True, architecture=arch)
    sr.StackedModel("gru", D=2, H=3, K=2, num_layers=2, bidirectional=False, architecture=arch)  # defined


def test_params_for_the_wrong_number_of_layers():
    m2 = stacked("lstm", 2, 3, 2, 2, True)
    m3 = stacked("lstm", 2, 3, 2, 3, True)
    x, y = np.zeros((3, 1, 2)), np.zeros((3, 1), dtype=int)
    with pytest.raises(ParameterError, match=r"layer\(s\) \[0, 1, 2\], but the model has num_layers=2"):
        m2.loss_and_grads(m3.init_params(0), x, y)
    with pytest.raises(ParameterError, match=r"layer\(s\) \[0, 1\], but the model has num_layers=3"):
        m3.loss_and_grads(m2.init_params(0), x, y)
    uni = stacked("lstm", 2, 3, 2, 2, False)
    with pytest.raises(ParameterError, match=r"l0\.bwd\.\*, but layer 0 is unidirectional"):
        uni.loss_and_grads(m2.init_params(0), x, y)
    sd = to_torch_stack("lstm", m3.init_params(0))
    with pytest.raises(ParameterError, match=r"layer\(s\) \[0, 1, 2\] but num_layers=2"):
        from_torch_stack("lstm", sd, num_layers=2, bidirectional=True)
    with pytest.raises(ParameterError, match=r"bidirectional=False but state_dict has _reverse"):
        from_torch_stack("lstm", sd, num_layers=3, bidirectional=False)


def test_other_bad_inputs():
    with pytest.raises(ShapeError, match=r"residual=True .* must be equal"):
        sr.StackedModel("rnn-tanh", D=2, H=3, K=2, num_layers=2, bidirectional=[True, False], residual=True)
    m = stacked("lstm", 2, 3, 2, 2, True)
    x, y = np.zeros((3, 1, 2)), np.zeros((3, 1), dtype=int)
    with pytest.raises(ShapeError, match=r"h0\['h'\] has shape \(2, 1, 3\); expected \(4, 1, 3\)"):
        m.loss_and_grads(m.init_params(0), x, y, h0=np.zeros((2, 1, 3)))
    with pytest.raises(ShapeError, match=r"bidirectional must be a bool or one bool per layer"):
        sr.StackedModel("lstm", D=2, H=3, K=2, num_layers=2, bidirectional=[True])
    up = stacked("lstm", 2, 3, None, 1, True, loss="upstream")
    with pytest.raises(ShapeError, match=r"targets has shape \(3, 1, 3\); expected \(3, 1, 6\)"):
        up.loss_and_grads(up.init_params(0), x, np.zeros((3, 1, 3)))


def test_bidirectional_model_is_one_bidirectional_layer():
    m = sr.BidirectionalModel("gru", D=2, H=3, K=2, merge="ave")
    assert m.num_layers == 1 and m.bidirectional == [True] and m.merge.name == "ave" and m.width == 3
    assert sorted(k for k in m.init_params(0) if k.endswith(".W_r")) == ["l0.bwd.W_r", "l0.fwd.W_r"]
