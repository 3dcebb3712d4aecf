"""LRU (Orvieto et al. 2023) against a complex PyTorch loop written from the paper, and the scalar oracle.

The torch side computes with ``torch.complex128``: ``lambda = exp(-exp(nu) + i exp(theta))``,
``gamma = sqrt(1 - |lambda|^2)``, ``s_t = lambda s_{t-1} + gamma (B x_t)`` with ``B = B_re + i B_im``,
``y_t = Re(C s_t) + D x_t`` (symrnn's state ``out``, ``D = diag(d)``); autograd differentiates it through the complex numbers.  symrnn's cell
holds the complex state as two real states (``h_re``, ``h_im``), so the two routes share no
arithmetic.  Every parameter, the input and every initial state agree to ``1e-12`` relative per
array at T = 1, 13 and 200.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import symrnn as sr
from symrnn.oracles import ScalarOracle
from test_modern_cells import torch_grads as modern_torch_grads

TOL = 1e-12


@functools.lru_cache(maxsize=None)
def model(D, H, K=None, loss="upstream"):
    return sr.Model(sr.builtin_cell("lru"), D=D, H=H, K=K, loss=loss)


def lru_params(m, seed, r_min=0.4, r_max=0.99, max_phase=2 * np.pi):
    """The paper's initialisation: |lambda| uniform on the ring [r_min, r_max], the phase uniform on [0, max_phase]."""
    rng = np.random.default_rng(seed + 1000)
    params = m.init_params(seed=seed, scale=0.5)
    H = m.sizes["H"]
    r = np.sqrt(rng.uniform(r_min ** 2, r_max ** 2, size=H))
    params["nu"] = np.log(-np.log(r))
    params["theta"] = np.log(rng.uniform(0.05, max_phase, size=H))
    return params


def problem(T, seed, N=2, D=3, H=4, **ring):
    m = model(D, H)
    params = lru_params(m, seed, **ring)
    rng = np.random.default_rng(seed)
    x, G = rng.normal(size=(T, N, D)), rng.normal(size=(T, N, D))
    h0 = {"h_re": rng.normal(size=(N, H)), "h_im": rng.normal(size=(N, H)), "out": rng.normal(size=(N, D))}
    return m, params, x, G, h0


def torch_outputs(torch, P, X, S):
    """The paper's recurrence in complex arithmetic (row convention); returns y at every step."""
    lam = torch.exp(torch.complex(-torch.exp(P["nu"]), torch.exp(P["theta"])))
    gamma = torch.sqrt(1 - torch.abs(lam) ** 2)
    B = torch.complex(P["B_re"], P["B_im"])
    C = torch.complex(P["C_re"], P["C_im"])
    s = torch.complex(S["h_re"], S["h_im"])
    out = []
    for x in X:
        s = lam * s + gamma * (x.to(torch.complex128) @ B.T)
        out.append((s @ C.T).real + P["d"] * x)
    return torch.stack(out)


def torch_grads(T64, params, x, G, h0, outputs=torch_outputs):
    """The loss and every gradient by torch autograd of ``outputs`` (test_modern_cells's driver)."""
    return modern_torch_grads(T64, "lru", params, x, G, h0, states=lambda torch, _, P, X, S: outputs(torch, P, X, S))


def assert_close(ours, theirs, label, tol=TOL):
    loss, grads = ours
    t_loss, t_grads = theirs
    assert abs(loss - t_loss) <= tol * max(1.0, abs(t_loss)), f"{label}: loss {loss!r} vs {t_loss!r}"
    assert sorted(grads) == sorted(t_grads), f"{label}: names {sorted(grads)} vs {sorted(t_grads)}"
    for k, g in t_grads.items():
        mine = np.asarray(grads[k], dtype=float)
        assert mine.shape == g.shape, f"{label}: grads[{k!r}] shape {mine.shape} vs {g.shape}"
        scale = np.max(np.abs(g), initial=0.0)
        err = np.max(np.abs(mine - g), initial=0.0)
        if k == "out0":  # never read: exactly zero on both routes
            assert err == 0.0 and scale == 0.0, f"{label}: grads['out0'] should be exactly 0"
            continue
        assert err <= tol * scale, f"{label}: grads[{k!r}] off by {err:.3e}, largest entry {scale:.3e}"


@pytest.mark.parametrize("T", [1, 13, 200])
def test_every_gradient_matches_the_complex_torch_loop(torch64, T):
    for seed in (0, 1):
        m, params, x, G, h0 = problem(T, seed)
        ours = m.loss_and_grads(params, x, G, h0=h0)
        assert_close(ours, torch_grads(torch64, params, x, G, h0), f"lru T={T} seed={seed}")


def test_near_the_unit_circle_and_with_other_sizes(torch64):
    """|lambda| up to 0.9999 (long memory, gamma small), a state larger than the input."""
    m, params, x, G, h0 = problem(150, 7, N=3, D=2, H=5, r_min=0.99, r_max=0.9999, max_phase=0.5)
    assert_close(m.loss_and_grads(params, x, G, h0=h0), torch_grads(torch64, params, x, G, h0), "lru near |z|=1")


def test_zero_state_and_readout_loss_match_torch(torch64):
    torch = torch64.torch
    D, H, K, T, N = 3, 4, 3, 9, 2
    m = model(D, H, K, "cross-entropy")
    params = lru_params(m, 5)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(T, N, D)), rng.integers(0, K, size=(T, N))
    ours_loss, ours = m.loss_and_grads(params, x, y)
    P = {k: torch64.tensor(v, grad=True) for k, v in params.items()}
    X = torch64.tensor(x, grad=True)
    zeros = {"h_re": torch64.zeros(N, H), "h_im": torch64.zeros(N, H)}
    logits = torch_outputs(torch, P, X, zeros) @ P["V"].T + P["c"]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, K), torch.from_numpy(y.reshape(-1)), reduction="sum")
    loss.backward()
    theirs = {k: torch64.numpy(v.grad) for k, v in P.items()}
    theirs["x"] = torch64.numpy(X.grad)
    assert_close((ours_loss, {k: v for k, v in ours.items() if k in theirs}), (loss.item(), theirs), "lru readout")


def test_every_gradient_matches_the_scalar_oracle():
    m, params, x, G, h0 = problem(4, 11, N=2, D=2, H=2)
    ours = m.loss_and_grads(params, x, G, h0=h0)
    oracle = ScalarOracle(m, 4, 4)
    assert_close(ours, oracle.loss_and_grads(params, x, G, h0=h0), "lru vs the scalar oracle")
    assert_close(ours, oracle.loss_and_grads(params, x, G, h0=h0, precision=40), "lru vs the 40-digit oracle")


def test_the_state_is_the_complex_recurrence_and_gamma_normalises():
    """The states are Re and Im of the complex state: one unit with |lambda| = r, B x = 1 at every
    step and a zero start gives the geometric sum s_t = gamma (1 - lambda^t) / (1 - lambda)."""
    m = model(1, 1)
    r, phase = 0.9, 0.3
    params = {"nu": np.array([np.log(-np.log(r))]), "theta": np.array([np.log(phase)]),
              "B_re": np.ones((1, 1)), "B_im": np.zeros((1, 1)), "C_re": np.ones((1, 1)),
              "C_im": np.zeros((1, 1)), "d": np.zeros(1)}
    T = 400
    states = m.run_cell(params, np.ones((T, 1, 1)))[2]
    lam = r * np.exp(1j * phase)
    s = np.sqrt(1 - r ** 2) * (1 - lam ** np.arange(1, T + 1)) / (1 - lam)
    assert np.allclose(states["S_h_re"][1:, 0, 0], s.real, rtol=0, atol=1e-14)
    assert np.allclose(states["S_h_im"][1:, 0, 0], s.imag, rtol=0, atol=1e-14)
    assert np.allclose(states["S_out"][1:, 0, 0], s.real, rtol=0, atol=1e-14)


def test_a_conjugated_torch_loop_is_caught(torch64):
    """The comparison can fail: lambda conjugated (exp(-exp(nu) - i exp(theta))) is another function."""
    def conjugated(torch, P, X, S):
        lam = torch.exp(torch.complex(-torch.exp(P["nu"]), -torch.exp(P["theta"])))
        gamma = torch.sqrt(1 - torch.abs(lam) ** 2)
        B, C = torch.complex(P["B_re"], P["B_im"]), torch.complex(P["C_re"], P["C_im"])
        s, out = torch.complex(S["h_re"], S["h_im"]), []
        for x in X:
            s = lam * s + gamma * (x.to(torch.complex128) @ B.T)
            out.append((s @ C.T).real + P["d"] * x)
        return torch.stack(out)
    m, params, x, G, h0 = problem(6, 0)
    with pytest.raises(AssertionError, match="loss"):
        assert_close(m.loss_and_grads(params, x, G, h0=h0), torch_grads(torch64, params, x, G, h0, conjugated), "x")


def test_symrnn_cells_names_the_paper(capsys):
    from symrnn.cli import main

    assert main(["cells"]) == 0
    out = capsys.readouterr().out
    assert any(line.strip().startswith("lru ") and "Orvieto et al. 2023" in line for line in out.splitlines())


def test_wirings_that_need_an_output_of_the_hidden_size_refuse_lru():
    """LRU's output is as wide as its input: stacks keep the width D (a concat of two directions would
    change it), and a seq2seq decoder's attention and readout read H_dec wide outputs."""
    with pytest.raises(sr.ShapeError, match="every layer of a stack must read width D=3, but layer 1 reads 6"):
        sr.StackedModel("lru", D=3, H=4, K=2, num_layers=2, bidirectional=True)
    sr.StackedModel("lru", D=3, H=4, K=2, num_layers=2, bidirectional=True, merge="sum")
    with pytest.raises(sr.ShapeError, match="use this cell as the encoder"):
        sr.Seq2Seq(encoder_cell="gru", decoder_cell="lru", src_vocab=3, tgt_vocab=3, E=2, H=2)


def test_a_stack_of_lru_layers_matches_the_complex_torch_loop(torch64):
    """Two LRU layers (the second reads the first's output) against the torch loop applied twice."""
    torch = torch64.torch
    m = sr.StackedModel("lru", D=3, H=4, num_layers=2, loss="upstream")
    params = m.init_params(seed=4, scale=0.5)
    rng = np.random.default_rng(4)
    x, G = rng.normal(size=(7, 2, 3)), rng.normal(size=(7, 2, 3))
    ours_loss, ours = m.loss_and_grads(params, x, G)
    P = {k: torch64.tensor(v, grad=True) for k, v in params.items()}
    zeros = {"h_re": torch64.zeros(2, 4), "h_im": torch64.zeros(2, 4)}
    layer = {l: {k.rsplit(".", 1)[1]: v for k, v in P.items() if k.startswith(f"l{l}.fwd.")} for l in (0, 1)}
    y = torch_outputs(torch, layer[1], torch_outputs(torch, layer[0], torch64.tensor(x), zeros), zeros)
    loss = (y * torch64.tensor(G)).sum()
    loss.backward()
    assert abs(ours_loss - loss.item()) <= TOL * abs(loss.item())
    for k, v in P.items():
        err = np.max(np.abs(ours[k] - torch64.numpy(v.grad)))
        assert err <= TOL * np.max(np.abs(torch64.numpy(v.grad))), k
