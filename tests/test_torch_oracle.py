"""symrnn's loss and every gradient against PyTorch autograd in float64.

The oracles:

* ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with weights copied by
  :func:`symrnn.models.layouts.to_torch`, for the cells PyTorch has (rnn-tanh,
  rnn-relu, lstm, gru);
* a Python loop of torch operations written here from the cell conventions
  (not from symrnn's equations), for every cell, and the only oracle for
  rnn-sigmoid, gru-reset-before and the Chung update variants.  The loop is
  itself checked against the torch modules and, for the Chung update,
  against ``nn.GRU`` through the identity ``sigmoid(-a) = 1 - sigmoid(a)``.

Architectures are rebuilt on the torch side independently: steps that read no
input read zeros, and only the output steps are scored.

Tolerance: ``max|ours - torch| / max(1, max|torch|) <= 1e-12`` per array.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import symrnn as sr
from symrnn.models.layouts import from_keras, from_torch, to_keras, to_torch
from exactness import assert_as_exact_as_float64_allows

TOL = 1e-12
CELLS = ["rnn-tanh", "rnn-relu", "rnn-sigmoid", "lstm", "gru", "gru-reset-before", "gru-chung",
         "gru-reset-before-chung"]
TORCH_CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
ARCHITECTURES = ["many-to-many", "many-to-one", "one-to-many", "one-to-one", "many-to-many-delayed"]
# PyTorch's stacking order of the gate blocks (torch.nn.LSTM / torch.nn.GRU documentation).
TORCH_ORDER = {"rnn-tanh": [""], "rnn-relu": [""], "lstm": ["i", "f", "g", "o"], "gru": ["r", "z", "n"]}


# -- the problem ------------------------------------------------------------------
@st.composite
def problems(draw, cell, arch, loss=None):
    """Sizes, loss options, weight scale and a seed for the arrays."""
    loss = loss or draw(st.sampled_from(["cross-entropy", "mse", "half-mse", "upstream"]))
    if arch == "many-to-many-delayed":  # T_in + T_out steps in all
        T_in, T_out = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    else:
        T = 1 if arch == "one-to-one" else draw(st.integers(1, 20))
        T_in = 1 if arch == "one-to-many" else T
        T_out = 1 if arch == "many-to-one" else T
    reduction = "sum" if loss == "upstream" else draw(st.sampled_from(["sum", "mean"]))
    targets = draw(st.sampled_from(["index", "probs"])) if loss == "cross-entropy" else "dense"
    states = ["none", "array", "dict"] + (["dict-hc"] if cell == "lstm" else [])
    return dict(
        cell=cell, loss=loss, arch=arch, T_in=T_in, T_out=T_out, reduction=reduction, targets=targets,
        N=draw(st.integers(1, 6)), D=draw(st.integers(1, 6)), H=draw(st.integers(1, 6)),
        K=draw(st.integers(1, 6)),
        scale=draw(st.one_of(st.sampled_from([0.01, 3.0]), st.floats(0.01, 3.0))),
        h0=draw(st.sampled_from(states)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@functools.lru_cache(maxsize=None)
def model(cell, D, H, K, arch, loss, reduction):
    """Models are reused across examples (one model, many inputs: also part of the contract)."""
    return sr.Model(cell, D=D, H=H, K=K, architecture=arch, loss=loss, reduction=reduction)


def make_arrays(p):
    """Model, params, inputs, targets and the h0 argument for a drawn problem."""
    m = model(p["cell"], p["D"], p["H"], None if p["loss"] == "upstream" else p["K"], p["arch"], p["loss"],
              p["reduction"])
    params = m.init_params(seed=p["seed"], scale=p["scale"])
    rng = np.random.default_rng(p["seed"] + 1)
    N, H, K = p["N"], p["H"], p["K"]
    x = rng.normal(size=(p["T_in"], N, p["D"]))
    if p["targets"] == "index":
        y = rng.integers(0, K, size=(p["T_out"], N))
    elif p["targets"] == "probs":
        y = rng.dirichlet(np.ones(K), size=(p["T_out"], N))
    else:
        y = rng.normal(size=(p["T_out"], N, K if p["loss"] in ("mse", "half-mse") else H))
    h, c = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    h0 = {"none": None, "array": h, "dict": {"h": h}, "dict-hc": {"h": h, "c": c}}[p["h0"]]
    return m, params, x, y, h0


# -- torch side ---------------------------------------------------------------------
def steps_and_outputs(arch, T_in, T_out):
    """(total steps, slice of scored steps), rebuilt from the architecture's meaning."""
    if arch in ("many-to-many", "one-to-one"):
        return T_in, slice(0, T_in)
    if arch == "many-to-one":
        return T_in, slice(T_in - 1, T_in)
    if arch == "one-to-many":
        return T_out, slice(0, T_out)
    return T_in + T_out, slice(T_in, T_in + T_out)


def manual_states(T, cell, P, X, h, c):
    """h_1..h_T from a loop of torch operations; row convention, x @ U.T."""
    torch = T.torch
    hs = []
    for x in X:
        if cell.startswith("rnn"):
            act = {"rnn-tanh": torch.tanh, "rnn-relu": torch.relu, "rnn-sigmoid": torch.sigmoid}[cell]
            h = act(x @ P["U"].T + h @ P["W"].T + P["b"])
        elif cell == "lstm":
            i = torch.sigmoid(x @ P["U_i"].T + h @ P["W_i"].T + P["b_i"])
            f = torch.sigmoid(x @ P["U_f"].T + h @ P["W_f"].T + P["b_f"])
            g = torch.tanh(x @ P["U_g"].T + h @ P["W_g"].T + P["b_g"])
            o = torch.sigmoid(x @ P["U_o"].T + h @ P["W_o"].T + P["b_o"])
            c = f * c + i * g
            h = o * torch.tanh(c)
        else:
            r = torch.sigmoid(x @ P["U_r"].T + h @ P["W_r"].T + P["b_r"])
            z = torch.sigmoid(x @ P["U_z"].T + h @ P["W_z"].T + P["b_z"])
            if "reset-before" in cell:  # Cho et al.: reset the state, then multiply
                n = torch.tanh(x @ P["U_n"].T + (r * h) @ P["W_n"].T + P["b_n"])
            else:  # PyTorch: reset the recurrent product and its bias
                n = torch.tanh(x @ P["U_n"].T + P["b_n"] + r * (h @ P["W_n"].T + P["b_hn"]))
            h = (1 - z) * h + z * n if cell.endswith("chung") else (1 - z) * n + z * h
        hs.append(h)
    return torch.stack(hs)


def torch_module(T, cell, params):
    torch = T.torch
    D, H = params["U" if cell.startswith("rnn") else ("U_i" if cell == "lstm" else "U_r")].shape[::-1]
    if cell == "lstm":
        module = torch.nn.LSTM(D, H)
    elif cell == "gru":
        module = torch.nn.GRU(D, H)
    else:
        module = torch.nn.RNN(D, H, nonlinearity=cell.split("-")[1])
    module = module.double()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in to_torch(cell, params).items()})
    return module


def torch_loss_and_grads(T, p, params, x, y, h0, oracle):
    """Loss and gradients (named as symrnn names them) from torch autograd."""
    torch = T.torch
    F = torch.nn.functional
    cell, N, H = p["cell"], p["N"], p["H"]
    steps, scored = steps_and_outputs(p["arch"], p["T_in"], p["T_out"])
    x_t = T.tensor(x, grad=True)
    X = torch.cat([x_t, T.zeros(steps - p["T_in"], N, p["D"])]) if steps > p["T_in"] else x_t
    given = {} if h0 is None else (h0 if isinstance(h0, dict) else {"h": h0})
    h0_t = T.tensor(given.get("h", np.zeros((N, H))), grad=True)
    c0_t = T.tensor(given.get("c", np.zeros((N, H))), grad=True)
    cell_params = {k: v for k, v in params.items() if k not in ("V", "c")}
    if oracle == "module":
        module = torch_module(T, cell, cell_params)
        state = (h0_t[None], c0_t[None]) if cell == "lstm" else h0_t[None]
        hs, _ = module(X, state)
    else:
        P = {k: T.tensor(v, grad=True) for k, v in cell_params.items()}
        hs = manual_states(T, cell, P, X, h0_t, c0_t)
    hs = hs[scored]
    leaves = {}
    if p["loss"] == "upstream":
        loss = (hs * T.tensor(y)).sum()
    else:
        V, c = T.tensor(params["V"], grad=True), T.tensor(params["c"], grad=True)
        leaves.update(V=V, c=c)
        o = hs @ V.T + c
        if p["loss"] in ("mse", "half-mse"):
            loss = F.mse_loss(o, T.tensor(y), reduction=p["reduction"]) * (0.5 if p["loss"] == "half-mse" else 1)
        else:
            target = torch.from_numpy(y.reshape(-1)) if p["targets"] == "index" else T.tensor(y.reshape(-1, p["K"]))
            loss = F.cross_entropy(o.reshape(-1, p["K"]), target, reduction=p["reduction"])
    loss.backward()
    grads = {}
    if oracle == "module":
        order = TORCH_ORDER[cell]
        blocks = {kind: getattr(module, f"{kind}_l0").grad.split(H) for kind in
                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        for k, g in enumerate(order):
            sfx = f"_{g}" if g else ""
            grads["U" + sfx] = blocks["weight_ih"][k]
            grads["W" + sfx] = blocks["weight_hh"][k]
            grads["b" + sfx] = blocks["bias_ih"][k]  # our b enters where bias_ih does
        if cell == "gru":
            grads["b_hn"] = blocks["bias_hh"][order.index("n")]
    else:
        grads.update({k: v.grad for k, v in P.items()})
    grads.update({k: v.grad for k, v in leaves.items()})
    grads["x"], grads["h0"] = x_t.grad, h0_t.grad
    if cell == "lstm":
        grads["c0"] = c0_t.grad
    return loss.item(), {k: T.numpy(v) for k, v in grads.items()}


def assert_matches(ours, theirs, label):
    loss, grads = ours
    t_loss, t_grads = theirs
    assert abs(loss - t_loss) / max(1.0, abs(t_loss)) <= TOL, f"{label}: loss {loss!r} vs torch {t_loss!r}"
    assert sorted(grads) == sorted(t_grads), f"{label}: gradient names {sorted(grads)} vs {sorted(t_grads)}"
    for k, g in t_grads.items():
        assert grads[k].shape == g.shape, f"{label}: grads[{k!r}] shape {grads[k].shape} vs torch {g.shape}"
        assert grads[k].dtype == np.float64, f"{label}: grads[{k!r}] is {grads[k].dtype}"
        err = np.max(np.abs(grads[k] - g), initial=0.0) / max(1.0, np.max(np.abs(g), initial=0.0))
        assert err <= TOL, f"{label}: grads[{k!r}] relative error {err:.3e} > {TOL:g}"


# -- the properties -----------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_loss_and_every_gradient_match_torch(torch64, cell, arch, data):
    p = data.draw(problems(cell, arch), label="problem")
    for key in ("loss", "reduction", "targets", "h0"):
        event(f"{key}={p[key]}")
    m, params, x, y, h0 = make_arrays(p)
    ours = m.loss_and_grads(params, x, y, h0=h0)
    oracle = "module" if cell in TORCH_CELLS else "manual"
    theirs = torch_loss_and_grads(torch64, p, params, x, y, h0, oracle)
    try:
        assert_matches(ours, theirs, f"{cell} vs torch {oracle}")
    except AssertionError:
        event("arbitrated by the 40-digit scalar oracle")
        assert_as_exact_as_float64_allows(m, params, x, y, h0, ours[1], {f"torch {oracle}": theirs[1]})


@pytest.mark.parametrize("cell", TORCH_CELLS)
@settings(max_examples=10)
@given(data=st.data())
def test_manual_torch_loop_matches_torch_modules(torch64, cell, data):
    """The hand-written oracle loop is right where torch has a module."""
    p = data.draw(problems(cell, data.draw(st.sampled_from(ARCHITECTURES))))
    _, params, x, y, h0 = make_arrays(p)
    module = torch_loss_and_grads(torch64, p, params, x, y, h0, "module")
    manual = torch_loss_and_grads(torch64, p, params, x, y, h0, "manual")
    assert_matches(manual, module, f"{cell}: manual loop vs torch module")


@pytest.mark.parametrize("reset", ["", "-reset-before"])
@settings(max_examples=10)
@given(data=st.data())
def test_chung_update_is_pytorch_update_with_negated_z(torch64, reset, data):
    """sigmoid(-a) = 1 - sigmoid(a): the Chung GRU with z-parameters negated is the
    PyTorch-convention GRU; its z-gradients are negated, all others equal.  Checks
    symrnn on the Chung cells against nn.GRU itself (reset after) and the manual loop."""
    p = data.draw(problems("gru" + reset, data.draw(st.sampled_from(ARCHITECTURES))))
    m, params, x, y, h0 = make_arrays(p)
    chung = model("gru" + reset + "-chung", p["D"], p["H"], m.sizes["K"], p["arch"], p["loss"], p["reduction"])
    flipped = {k: (-v if k in ("U_z", "W_z", "b_z") else v) for k, v in params.items()}
    loss, grads = chung.loss_and_grads(flipped, x, y, h0=h0)
    grads = {k: (-g if k in ("U_z", "W_z", "b_z") else g) for k, g in grads.items()}
    oracle = "manual" if reset else "module"
    assert_matches((loss, grads), torch_loss_and_grads(torch64, p, params, x, y, h0, oracle),
                   f"gru{reset}-chung (z negated) vs torch {oracle}")


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_bias_gradients_are_equal_and_ours_equals_them(torch64, cell):
    """In PyTorch, bias_ih and bias_hh enter as a sum (except GRU's n block), so
    dL/dbias_ih == dL/dbias_hh there, and symrnn's single bias has that gradient.
    In GRU's n block dL/dbias_hh = r * dL/dbias_ih per sample: they differ, and
    symrnn's b_n, b_hn match them separately."""
    torch = torch64.torch
    D, H, N, T = 3, 4, 5, 6
    m = sr.Model(cell, D=D, H=H, K=3, architecture="many-to-many", loss="cross-entropy")
    params = m.init_params(seed=7, scale=0.8)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(T, N, D)), rng.integers(0, 3, size=(T, N))
    sd = to_torch(cell, params)
    sd["bias_hh_l0"] = rng.normal(size=sd["bias_hh_l0"].shape)  # torch with both biases in use
    params = {**from_torch(cell, sd), "V": params["V"], "c": params["c"]}
    module = torch_module(torch64, cell, params).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    hs, _ = module(torch64.tensor(x))
    o = hs @ torch64.tensor(params["V"]).T + torch64.tensor(params["c"])
    torch.nn.functional.cross_entropy(o.reshape(-1, 3), torch.from_numpy(y.reshape(-1)), reduction="sum").backward()
    g_ih = module.bias_ih_l0.grad.split(H)
    g_hh = module.bias_hh_l0.grad.split(H)
    _, grads = m.loss_and_grads(params, x, y)
    for k, gate in enumerate(TORCH_ORDER[cell]):
        name = f"b_{gate}" if gate else "b"
        a, b = torch64.numpy(g_ih[k]), torch64.numpy(g_hh[k])
        assert np.max(np.abs(grads[name] - a)) <= TOL * max(1, np.max(np.abs(a)))
        if gate == "n":
            assert np.max(np.abs(a - b)) > 1e-3  # r * (...) makes them differ
            assert np.max(np.abs(grads["b_hn"] - b)) <= TOL * max(1, np.max(np.abs(b)))
        else:
            assert np.array_equal(a, b) or np.max(np.abs(a - b)) <= 1e-15 * max(1, np.max(np.abs(a)))
            assert np.max(np.abs(grads[name] - b)) <= TOL * max(1, np.max(np.abs(b)))


# -- layouts ------------------------------------------------------------------------
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_layout_round_trips(torch64, cell):
    torch = torch64.torch
    params = sr.Model(cell, D=3, H=5, K=2).init_params(seed=1)
    cell_params = {k: v for k, v in params.items() if k not in ("V", "c")}
    back = from_torch(cell, to_torch(cell, params))
    assert list(back) == list(cell_params)
    assert all(np.array_equal(back[k], cell_params[k]) for k in back)
    # torch -> symrnn -> torch keeps the function (biases are merged, not kept)
    torch.manual_seed(0)
    module = torch_module(torch64, cell, cell_params)
    with torch.no_grad():
        for prm in module.parameters():
            prm.uniform_(-0.5, 0.5)
    x = torch64.tensor(np.random.default_rng(0).normal(size=(7, 2, 3)))
    expected, _ = module(x)
    sd = {k: v.numpy().copy() for k, v in module.state_dict().items()}
    module.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch(cell, from_torch(cell, sd)).items()})
    got, _ = module(x)
    assert torch.allclose(got, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_initialized_module_equals_symrnn_loss(torch64, cell):
    """A module as torch initializes it (both biases random) gives symrnn's loss after from_torch."""
    torch = torch64.torch
    torch.manual_seed(1)
    D, H = 4, 3
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)(
        D, H, **({"nonlinearity": cell[4:]} if cell.startswith("rnn") else {})).double()
    x = np.random.default_rng(2).normal(size=(5, 3, D))
    G = np.random.default_rng(3).normal(size=(5, 3, H))
    hs, _ = module(torch64.tensor(x))
    expected = (hs * torch64.tensor(G)).sum().item()
    m = sr.Model(cell, D=D, H=H, loss="upstream")
    got = m.loss(from_torch(cell, module.state_dict()), x, G)
    assert abs(got - expected) <= TOL * max(1, abs(expected))


def test_torch_layout_other_layer_prefix_and_no_bias(torch64):
    torch = torch64.torch
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.GRU(3, 4, num_layers=2, bias=False))
    sd = net.state_dict()
    p1 = from_torch("gru", sd, layer=1, prefix="0.")
    assert p1["U_r"].shape == (4, 4)  # layer 1 reads layer 0's h
    assert np.array_equal(p1["U_z"], sd["0.weight_ih_l1"][4:8].numpy())
    assert all(np.array_equal(p1[k], np.zeros(4)) for k in ("b_r", "b_z", "b_n", "b_hn"))
    keys = to_torch("gru", p1, layer=1, reverse=True, prefix="rnn.")
    assert sorted(keys) == ["rnn.bias_hh_l1_reverse", "rnn.bias_ih_l1_reverse", "rnn.weight_hh_l1_reverse",
                            "rnn.weight_ih_l1_reverse"]


def keras_states(cell, k, X, h, c):
    """h_1..h_T in NumPy, written from Keras's row-convention equations and its weights."""
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    H = k["recurrent_kernel"].shape[0]
    cols = lambda M, j: M[..., j * H:(j + 1) * H]  # noqa: E731
    hs = []
    for x in X:
        if cell.startswith("rnn"):
            act = {"rnn-tanh": np.tanh, "rnn-relu": lambda a: np.maximum(a, 0), "rnn-sigmoid": sig}[cell]
            h = act(x @ k["kernel"] + h @ k["recurrent_kernel"] + k["bias"])
        elif cell == "lstm":  # blocks i, f, c, o
            zz = x @ k["kernel"] + h @ k["recurrent_kernel"] + k["bias"]
            i, f, g, o = sig(cols(zz, 0)), sig(cols(zz, 1)), np.tanh(cols(zz, 2)), sig(cols(zz, 3))
            c = f * c + i * g
            h = o * np.tanh(c)
        else:  # blocks z, r, h; reset_after has a (2, 3H) bias: input row, recurrent row
            after = k["bias"].ndim == 2
            b_in, b_rec = (k["bias"][0], k["bias"][1]) if after else (k["bias"], np.zeros_like(k["bias"]))
            xk = x @ k["kernel"] + b_in
            hk = h @ k["recurrent_kernel"] + b_rec
            z = sig(cols(xk, 0) + cols(hk, 0))
            r = sig(cols(xk, 1) + cols(hk, 1))
            if after:
                hh = np.tanh(cols(xk, 2) + r * cols(hk, 2))
            else:
                hh = np.tanh(cols(xk, 2) + (r * h) @ cols(k["recurrent_kernel"], 2))
            h = z * h + (1 - z) * hh
        hs.append(h)
    return np.stack(hs)


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "rnn-sigmoid", "lstm", "gru", "gru-reset-before"])
def test_keras_layout_round_trips_and_computes_the_same_states(cell):
    D, H, N, T = 3, 4, 2, 6
    m = sr.Model(cell, D=D, H=H, loss="upstream")
    params = m.init_params(seed=5, scale=0.9)
    k = to_keras(cell, params)
    G = 3 if cell.startswith("gru") else (4 if cell == "lstm" else 1)
    assert k["kernel"].shape == (D, G * H) and k["recurrent_kernel"].shape == (H, G * H)
    assert k["bias"].shape == ((2, 3 * H) if cell == "gru" else (G * H,))
    back = from_keras(cell, list(k.values()))
    assert list(back) == list(params) and all(np.array_equal(back[n], params[n]) for n in back)
    rng = np.random.default_rng(0)
    x, Gup, h0 = rng.normal(size=(T, N, D)), rng.normal(size=(T, N, H)), rng.normal(size=(N, H))
    hs = keras_states(cell, k, x, h0, np.zeros((N, H)))
    assert abs(m.loss(params, x, Gup, h0=h0) - (hs * Gup).sum()) <= 1e-12
