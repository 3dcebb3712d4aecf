"""The alternative-formulation corpus (tests/corpus_alt) is correct, proven without symrnn:
every implementation against PyTorch autograd in float64 and (float64 code) against central
finite differences, on random sizes and weights from moderate to saturating.  float32 code is
compared with float64 autograd at a float32 tolerance."""
import numpy as np
import pytest

from corpus_alt import IMPLEMENTATIONS, NAMES

torch = pytest.importorskip("torch")

TRIALS = 6
AUTOGRAD_RTOL = {"float64": 1e-10, "float32": 2e-4}   # max error / max |exact| per gradient
FD_RTOL = 1e-6


# -- PyTorch forwards, one per (cell, layout, mode): float64 tensors, the user's layout ----------------
def _sig(u):
    return torch.sigmoid(u)


def _lstm_cs231n_step(x, h, c, Wx, Wh, b):
    H = h.shape[1]
    a = x @ Wx + h @ Wh + b
    i, f, o, g = _sig(a[:, :H]), _sig(a[:, H:2 * H]), _sig(a[:, 2 * H:3 * H]), torch.tanh(a[:, 3 * H:])
    c = f * c + i * g
    return o * torch.tanh(c), c


def _rnn_cs231n_step(x, h, Wx, Wh, b):
    return (torch.tanh(x @ Wx + h @ Wh + b),)


def _unroll_cs231n(step, x, h0, params, cell_state):
    state, hs = (h0, torch.zeros_like(h0)) if cell_state else (h0,), []
    for t in range(x.shape[1]):
        state = step(x[:, t], *state, *params)
        hs.append(state[0])
    return torch.stack(hs, dim=1)


def rnn_cs231n_layer(x, h0, Wx, Wh, b):
    return (_unroll_cs231n(_rnn_cs231n_step, x, h0, (Wx, Wh, b), False),)


def lstm_cs231n_layer(x, h0, Wx, Wh, b):
    return (_unroll_cs231n(_lstm_cs231n_step, x, h0, (Wx, Wh, b), True),)


def _torch_module(kind, x, h0, w_ih, w_hh, b_ih, b_hh):
    """nn.LSTM / nn.GRU itself, called with the given weights (time-major)."""
    D, H = x.shape[2], h0.shape[1]
    module = getattr(torch.nn, kind)(D, H).double()
    weights = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    state = (h0[None], torch.zeros_like(h0)[None]) if kind == "LSTM" else h0[None]
    return (torch.func.functional_call(module, weights, (x, state))[0],)


def lstm_pytorch_layer(*args):
    return _torch_module("LSTM", *args)


def gru_pytorch_layer(*args):
    return _torch_module("GRU", *args)


def gru_keras_layer(x, h0, K, R, b):
    """Keras GRU(reset_after=False): gates z, r, h; h' = z h + (1 - z) tanh(x K_h + (r h) R_h + b_h)."""
    H, h, hs = h0.shape[1], h0, []
    for t in range(x.shape[1]):
        z = _sig(x[:, t] @ K[:, :H] + h @ R[:, :H] + b[:H])
        r = _sig(x[:, t] @ K[:, H:2 * H] + h @ R[:, H:2 * H] + b[H:2 * H])
        hh = torch.tanh(x[:, t] @ K[:, 2 * H:] + (r * h) @ R[:, 2 * H:] + b[2 * H:])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return (torch.stack(hs, dim=1),)


def cs231n_loss(cell_state):
    def loss(params, x, h0, y, mask):
        step = _lstm_cs231n_step if cell_state else _rnn_cs231n_step
        h = _unroll_cs231n(step, x, h0, (params["Wx"], params["Wh"], params["b"]), cell_state)
        logp = torch.log_softmax(h @ params["W_vocab"] + params["b_vocab"], dim=2)
        picked = torch.gather(logp, 2, torch.tensor(y)[..., None])[..., 0]
        return -(picked * torch.tensor(mask, dtype=torch.float64)).sum() / x.shape[0]
    return loss


TORCH = {
    ("rnn-tanh", "cs231n", "layer"): rnn_cs231n_layer,
    ("lstm", "cs231n", "layer"): lstm_cs231n_layer,
    ("rnn-tanh", "cs231n", "step"): _rnn_cs231n_step,
    ("lstm", "cs231n", "step"): _lstm_cs231n_step,
    ("lstm", "pytorch", "layer"): lstm_pytorch_layer,
    ("gru", "pytorch", "layer"): gru_pytorch_layer,
    ("gru-reset-before", "keras", "layer"): gru_keras_layer,
    ("rnn-tanh", "cs231n", "loss"): cs231n_loss(False),
    ("lstm", "cs231n", "loss"): cs231n_loss(True),
}
GATES = {"rnn-tanh": 1, "lstm": 4, "gru": 3, "gru-reset-before": 3}


# -- data in each convention ----------------------------------------------------------------------
def draw(mod, rng, scale):
    """(forward arguments, upstream gradients) for layer/step mode, or (params, x, h0, y, mask)."""
    N, T, D, H, V = (int(rng.integers(1, k)) for k in (5, 8, 5, 5, 6))
    G = GATES[mod.CELL] * H
    w = lambda *shape: rng.uniform(-scale, scale, shape)  # noqa: E731
    x_shape = (T, N, D) if mod.LAYOUT == "pytorch" else (N, T, D)
    h_shape = (T, N, H) if mod.LAYOUT == "pytorch" else (N, T, H)
    x, h0 = rng.normal(size=x_shape), rng.normal(size=(N, H)) * 0.5
    if mod.MODE == "loss":
        params = {"Wx": w(D, G), "Wh": w(H, G), "b": w(G), "W_vocab": w(H, V + 1), "b_vocab": w(V + 1)}
        y = rng.integers(0, V + 1, (N, T))
        mask = rng.random((N, T)) < 0.8
        return params, x, h0, y, mask
    if mod.LAYOUT == "pytorch":
        weights = [w(G, D), w(G, H), w(G), w(G)]
    else:
        weights = [w(D, G), w(H, G), w(G)]
    if mod.MODE == "step":
        args = [x[:, 0], h0] + ([rng.normal(size=(N, H))] if mod.CELL == "lstm" else []) + weights
        upstream = [rng.normal(size=(N, H)) for _ in range(2 if mod.CELL == "lstm" else 1)]
        return args, upstream
    return [x, h0, *weights], [rng.normal(size=h_shape)]


def run_user(mod, data):
    """The implementation's objective value and gradients, as a dict keyed by argument position or name."""
    if mod.MODE == "loss":
        value, grads = getattr(mod, mod.LOSS)(*data)
        return float(value), {k: np.asarray(v) for k, v in grads.items()}
    args, upstream = data
    *outs, cache = getattr(mod, mod.FORWARD)(*args)
    value = sum(float(np.sum(np.asarray(o, np.float64) * u)) for o, u in zip(outs, upstream))
    grads = getattr(mod, mod.BACKWARD)(*upstream, cache)
    return value, {k: np.asarray(g) for k, g in enumerate(grads)}


def run_torch(mod, data):
    fn = TORCH[mod.CELL, mod.LAYOUT, mod.MODE]
    if mod.MODE == "loss":
        params, x, h0, y, mask = data
        leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        value = fn(leaves, torch.tensor(x), torch.tensor(h0), y, mask)
        value.backward()
        return float(value.detach()), {k: v.grad.numpy() for k, v in leaves.items()}
    args, upstream = data
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
    outs = fn(*leaves)
    value = sum((o * torch.tensor(u)).sum() for o, u in zip(outs, upstream))
    grads = torch.autograd.grad(value, leaves)
    return float(value.detach()), {k: g.numpy() for k, g in enumerate(grads)}


def worst_relative_error(got, want):
    worst = 0.0
    for key, expected in want.items():
        actual = got[key]
        assert actual.shape == expected.shape, f"gradient {key}: shape {actual.shape}, expected {expected.shape}"
        scale = np.abs(expected).max()
        error = np.abs(actual.astype(np.float64) - expected).max()
        worst = max(worst, error / scale if scale > 0 else error)
    return worst


def _perturbed(mod, data, which, index, delta):
    """A copy of the data with one entry of argument (or parameter) `which` moved by delta."""
    if mod.MODE == "loss":
        params = {k: v.copy() for k, v in data[0].items()}
        params[which][index] += delta
        return (params, *data[1:])
    args = [a.copy() for a in data[0]]
    args[which][index] += delta
    return args, data[1]


def central_differences(mod, data, rng, entries=3, eps=1e-6):
    """{(key, index): (finite difference, index)} for a few random entries of every differentiable input."""
    keys = list(data[0]) if mod.MODE == "loss" else range(len(data[0]))
    out = {}
    for key in keys:
        array = data[0][key]
        for _ in range(entries):
            index = tuple(int(rng.integers(0, n)) for n in array.shape)
            up = run_user(mod, _perturbed(mod, data, key, index, eps))[0]
            down = run_user(mod, _perturbed(mod, data, key, index, -eps))[0]
            out[key, index] = (up - down) / (2 * eps)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_implementation_matches_autograd(name, torch64):
    mod = IMPLEMENTATIONS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    for trial in range(TRIALS):
        data = draw(mod, rng, scale=(0.5, 1.0, 3.0)[trial % 3])
        value, grads = run_user(mod, data)
        want_value, want = run_torch(mod, data)
        if mod.DTYPE == "float32":
            assert all(g.dtype == np.float32 for g in grads.values()), f"{name} declares float32"
        error = worst_relative_error(grads, want)
        assert error < AUTOGRAD_RTOL[mod.DTYPE], f"{name} trial {trial}: relative error {error:.3g} vs autograd"
        assert value == pytest.approx(want_value, rel=AUTOGRAD_RTOL[mod.DTYPE], abs=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if IMPLEMENTATIONS[n].DTYPE == "float64"])
def test_implementation_matches_central_differences(name):
    mod = IMPLEMENTATIONS[name]
    rng = np.random.default_rng(1 + sum(map(ord, name)))
    for trial in range(3):
        data = draw(mod, rng, scale=(0.5, 1.0, 2.0)[trial])
        _, grads = run_user(mod, data)
        for (key, index), fd in central_differences(mod, data, rng).items():
            scale = max(1.0, np.abs(grads[key]).max())
            assert abs(grads[key][index] - fd) <= FD_RTOL * scale, (
                f"{name} trial {trial}: d/d{key}{list(index)} is {grads[key][index]!r}, finite differences {fd!r}")


@pytest.mark.parametrize("name", [n for n in NAMES if IMPLEMENTATIONS[n].DTYPE == "float64"])
def test_float64_matches_autograd_to_rounding(name, torch64):
    """Tighter than the sweep above: moderate weights, where both routes agree to ~1e-13."""
    mod = IMPLEMENTATIONS[name]
    rng = np.random.default_rng(2 + sum(map(ord, name)))
    data = draw(mod, rng, scale=0.3)
    assert worst_relative_error(run_user(mod, data)[1], run_torch(mod, data)[1]) < 1e-12
