"""sLSTM with heads (``symrnn.engine.cells.slstm(forget_gate, heads)``): block-diagonal recurrent weights.

xLSTM's sLSTM (Beck et al. 2024, Sec. 2.2) mixes memory within a head and not across heads: each gate's
recurrent matrix is block diagonal, one ``d x d`` block per head.  The torch side is written here from the
paper with the recurrent weights as per-head matrices ``R_g`` of shape ``(heads, d, d)`` and the hidden
state split into heads, ``einsum("ard,nad->nar")``; a second torch loop builds the full matrix with
``torch.block_diag`` instead.  Neither uses symrnn's spreads, folds or equations.  Every parameter, the input
and every initial state are compared at T = 1, 13 and 200 to 1e-12 relative per array; small sizes go
against the scalar oracle (float64 and 40 digits); and the headed cell equals the one-head cell whose full
``W_g`` is block diagonal, whose gradient's diagonal blocks are the headed cell's gradient.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import symrnn as sr
from symrnn.engine.cells import slstm
from symrnn.errors import ShapeError, UnknownNameError
from symrnn.oracles import ScalarOracle
from test_modern_cells import assert_close, torch_grads

#: name -> (forget gate, heads, D, H)
CASES = {"heads2": ("sigmoid", 2, 3, 4), "heads3-exp": ("exp", 3, 2, 6), "heads4-d1": ("sigmoid", 4, 3, 4)}


@functools.lru_cache(maxsize=None)
def model(case, loss="upstream", K=None):
    forget_gate, heads, D, H = CASES[case]
    return sr.Model(slstm(forget_gate, heads), D=D, H=H, K=K, loss=loss)


def problem(case, T, seed, N=2, scale=0.6):
    forget_gate, heads, D, H = CASES[case]
    m = model(case)
    rng = np.random.default_rng(seed)
    params = m.init_params(seed=seed, scale=scale)
    x, G = rng.normal(size=(T, N, D)), rng.normal(size=(T, N, H))
    h0 = {s: rng.normal(size=(N, H)) for s in "hcnm"}
    h0["n"] = np.abs(h0["n"]) + 0.5  # a normaliser that starts positive stays positive
    return m, params, x, G, h0


# -- the torch loops, from the paper ----------------------------------------------------------------
def torch_headed_states(heads, forget_gate, block_diag=False):
    """Beck et al. 2024's sLSTM with per-head recurrent matrices: ``zbar = W_z x + R_z h + b_z`` with
    ``R_z h`` computed head by head (or, ``block_diag=True``, as the full block-diagonal matrix)."""
    def states(torch, cell, P, X, s):
        N, H = s["h"].shape
        d = H // heads
        R = {g: P[f"W_{g}"].reshape(heads, d, d) for g in "zifo"}  # the paper's R_g, one d x d block per head

        def recurrent(g, h):
            if block_diag:
                return h @ torch.block_diag(*R[g].unbind(0)).T
            return torch.einsum("ard,nad->nar", R[g], h.reshape(N, heads, d)).reshape(N, H)
        h, c, n, m, out = s["h"], s["c"], s["n"], s["m"], []
        for x in X:
            pre = {g: x @ P[f"U_{g}"].T + recurrent(g, h) + P[f"b_{g}"] for g in "zifo"}
            log_f = torch.nn.functional.logsigmoid(pre["f"]) if forget_gate == "sigmoid" else pre["f"]
            m_new = torch.maximum(log_f + m, pre["i"])  # the stabiliser
            i_s, f_s = torch.exp(pre["i"] - m_new), torch.exp(log_f + m - m_new)
            c = f_s * c + i_s * torch.tanh(pre["z"])
            n = f_s * n + i_s
            h = torch.sigmoid(pre["o"]) * c / n
            m = m_new
            out.append(h)
        return torch.stack(out)
    return states


def theirs(torch64, case, params, x, G, h0, block_diag=False):
    forget_gate, heads, _, _ = CASES[case]
    return torch_grads(torch64, case, params, x, G, h0, states=torch_headed_states(heads, forget_gate, block_diag))


# -- the tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 13, 200])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_gradient_matches_a_torch_loop_with_per_head_matrices(torch64, case, T):
    for seed in (0, 1):
        m, params, x, G, h0 = problem(case, T, seed)
        ours = m.loss_and_grads(params, x, G, h0=h0)
        assert_close(ours, theirs(torch64, case, params, x, G, h0), f"{case} T={T} seed={seed}")


def test_the_full_block_diagonal_matrix_gives_the_same(torch64):
    m, params, x, G, h0 = problem("heads3-exp", 40, 2)
    assert_close(m.loss_and_grads(params, x, G, h0=h0), theirs(torch64, "heads3-exp", params, x, G, h0, True),
                 "heads3-exp against torch.block_diag")


def test_a_loop_that_mixes_the_heads_is_caught(torch64):
    """The comparison can fail: reading the blocks transposed (R_g^T per head) is another cell."""
    m, params, x, G, h0 = problem("heads2", 6, 3)
    swapped = {k: (v.reshape(2, 2, 2).transpose(0, 2, 1).ravel() if k.startswith("W_") else v)
               for k, v in params.items()}
    with pytest.raises(AssertionError, match="swapped: (loss|grads)"):
        assert_close(m.loss_and_grads(params, x, G, h0=h0), theirs(torch64, "heads2", swapped, x, G, h0), "swapped")


@pytest.mark.parametrize("case", ["heads2", "heads4-d1"])
def test_every_gradient_matches_the_scalar_oracle(case):
    m, params, x, G, h0 = problem(case, 3, 11, scale=0.8)
    ours = m.loss_and_grads(params, x, G, h0=h0)
    oracle = ScalarOracle(m, 3, 3)
    assert_close(ours, oracle.loss_and_grads(params, x, G, h0=h0), f"{case} vs the scalar oracle")
    assert_close(ours, oracle.loss_and_grads(params, x, G, h0=h0, precision=40), f"{case} vs 40 digits")


def test_heads_equal_the_one_head_cell_with_block_diagonal_weights():
    """symrnn's own full-matrix sLSTM, given W_g = blockdiag(blocks): the same loss, and its dW_g restricted
    to the diagonal blocks is the headed cell's gradient (the other gradients agree as they are)."""
    m, params, x, G, h0 = problem("heads2", 30, 5)
    full = sr.Model("slstm", D=3, H=4, loss="upstream")
    dense = {k: (_block_diagonal(v, 2) if k.startswith("W_") else v)
             for k, v in params.items()}
    loss, grads = m.loss_and_grads(params, x, G, h0=h0)
    f_loss, f_grads = full.loss_and_grads(dense, x, G, h0=h0)
    assert abs(loss - f_loss) <= 1e-13 * abs(f_loss)
    for k, g in grads.items():
        want = _blocks_of(f_grads[k], 2) if k.startswith("W_") else f_grads[k]
        assert np.allclose(g, want, rtol=1e-12, atol=1e-14), k


def _block_diagonal(flat, heads):
    d = int(round((flat.size // heads) ** 0.5))
    out = np.zeros((heads * d, heads * d))
    for a, block in enumerate(flat.reshape(heads, d, d)):
        out[a * d:(a + 1) * d, a * d:(a + 1) * d] = block
    return out


def _blocks_of(W, heads):
    d = W.shape[0] // heads
    return np.stack([W[a * d:(a + 1) * d, a * d:(a + 1) * d] for a in range(heads)]).ravel()


def test_a_readout_from_zero_states_matches_torch(torch64):
    torch = torch64.torch
    m = model("heads2", "cross-entropy", 3)
    params = m.init_params(seed=4, scale=0.7)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 2, 3)), rng.integers(0, 3, size=(9, 2))
    loss, grads = m.loss_and_grads(params, x, y)
    P = {k: torch64.tensor(v, grad=True) for k, v in params.items()}
    hs = torch_headed_states(2, "sigmoid")(torch, None, P, torch64.tensor(x), {s: torch64.zeros(2, 4) for s in "hcnm"})
    t_loss = torch.nn.functional.cross_entropy((hs @ P["V"].T + P["c"]).reshape(-1, 3),
                                               torch.from_numpy(y.reshape(-1)), reduction="sum")
    t_loss.backward()
    assert_close((loss, {k: grads[k] for k in P}), (t_loss.item(), {k: torch64.numpy(v.grad) for k, v in P.items()}),
                 "heads2 with a readout")


def test_one_head_is_the_builtin_cell_and_bad_heads_are_refused():
    assert repr(slstm(heads=1)) == repr(sr.builtin_cell("slstm")) and slstm("exp", 1).name == "slstm-exp"
    assert slstm("exp", 3).name == "slstm-exp-heads3"
    for bad in (0, -2, 2.0, "2", True):
        with pytest.raises(UnknownNameError, match="sLSTM heads must be a positive int"):
            slstm(heads=bad)
    with pytest.raises(ShapeError, match="HD = H/3"):
        sr.Model(slstm(heads=3), D=2, H=4, loss="upstream")


def test_symrnn_cells_names_the_heads_option(capsys):
    from symrnn.cli import main

    assert main(["cells"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("slstm "))
    assert "Beck et al. 2024" in line and "slstm(forget_gate, heads)" in line and "block-diagonal" in line


def test_the_graph_figure_draws_the_heads_without_a_label_for_the_spread():
    """The previous hidden state reaches the gates through the spread E_c: its bus tap has no parameter to
    name (it printed ``None`` and crashed the report before), the recurrent weights are named on the lets."""
    import re
    from symrnn.report.tikz import layout, tikz_picture

    m = sr.Model(slstm(heads=2), D=2, H=2, K=2)
    tikz = tikz_picture(layout(m), lambda base, t=None: base if t is None else f"{base}_{t}")
    printed = re.findall(r"node\[(?:param|tap)\](?: at \([^)]*\))? \{\$([^$]*)\$\}", tikz)
    names = {name for text in printed for name in text.split(", ")}
    assert "None" not in tikz and "" not in names and names <= set(m.init_params(seed=0))
